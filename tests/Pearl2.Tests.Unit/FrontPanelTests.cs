using System.Device.Gpio;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Pearl2.Services;
using Pearl2.Services.FrontPanel;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>The front panel over the simulated GPIO driver, on a fake clock: no test here sleeps.</summary>
public class FrontPanelTests
{
    const int RecordButton = 0, StreamButton = 1, RecordLed = 2, StreamLed = 3, StatusLed = 4;

    sealed class Actions : IPanelActions
    {
        public int RecordToggles, StreamToggles, Splits;
        public bool Recording, Fault, Streaming = true;
        public DeviceState State = DeviceState.Ready;
        public PanelStatus Status => new(State, Recording, Fault, Streaming);
        public Task ToggleRecordingAsync(string by) { RecordToggles++; Recording = !Recording; return Task.CompletedTask; }
        public void ToggleStreaming(string by) { StreamToggles++; Streaming = !Streaming; }
        public void SplitRecording(string by) => Splits++;
    }

    sealed class Rig : IAsyncDisposable
    {
        public readonly FakeTimeProvider Time = new(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
        public readonly SimulatedGpioDriver Gpio = new();
        public readonly Actions Actions = new();
        public readonly FrontPanel Panel;

        public Rig()
        {
            var controller = new GpioController(Gpio);
            Panel = new FrontPanel(controller, new PanelWiring(new(RecordButton, true), new(StreamButton, true), new(RecordLed, false), new(StreamLed, false), new(StatusLed, false)),
                Actions, Time, NullLogger.Instance);
            Time.Advance(TimeSpan.FromMilliseconds(1));
        }

        public void Advance(double ms)
        {
            // In steps no longer than a panel tick, so every timer fires when it is due.
            for (double left = ms; left > 0; left -= 10) Time.Advance(TimeSpan.FromMilliseconds(Math.Min(10, left)));
        }

        public void Line(int pin, bool pressed) => Gpio.SetInput(pin, pressed ? PinValue.Low : PinValue.High); // active low

        public bool Lit(int led) => Gpio.Level(led) == PinValue.High;

        public async Task SettleAsync() => await Panel.Idle;

        public ValueTask DisposeAsync() => Panel.DisposeAsync();
    }

    [Fact]
    public void AChipLabelThatIsNotThereIsAnErrorNamingTheChipsThereAre()
    {
        var empty = Directory.CreateTempSubdirectory("pearl2-dev").FullName;
        try { Assert.Equal("no GPIO chip labelled 'pearl2-panel' (there are: none)", Assert.Throws<IOException>(() => GpioChips.FindByLabel("pearl2-panel", empty)).Message); }
        finally { Directory.Delete(empty); }
    }

    [Fact]
    public async Task RecordPress_TogglesWithin100ms_AndLightsTheRecordLed()
    {
        await using var rig = new Rig();
        Assert.False(rig.Lit(RecordLed));
        rig.Line(RecordButton, true);
        rig.Advance(80);
        Assert.Equal(0, rig.Actions.RecordToggles); // acts on release
        rig.Line(RecordButton, false);
        rig.Advance(FrontPanel.Debounce.TotalMilliseconds);
        await rig.SettleAsync();
        // 30 ms after the release (the debounce window) the recording runs and the LED is lit: under 100 ms.
        Assert.Equal(1, rig.Actions.RecordToggles);
        Assert.True(rig.Lit(RecordLed));
        Assert.Equal(LedPattern.On, rig.Panel.Pattern("record"));

        rig.Line(RecordButton, true); rig.Advance(120); rig.Line(RecordButton, false); rig.Advance(40);
        await rig.SettleAsync();
        Assert.Equal(2, rig.Actions.RecordToggles);
        Assert.False(rig.Lit(RecordLed));
    }

    [Fact]
    public async Task ContactBounce_TenEdgesInFiveMilliseconds_MakeExactlyOneToggle()
    {
        await using var rig = new Rig();
        bool pressed = false;
        for (int i = 0; i < 10; i++)
        {
            pressed = !pressed;
            rig.Line(RecordButton, pressed);
            rig.Time.Advance(TimeSpan.FromMilliseconds(0.5));
        }
        rig.Advance(200);
        await rig.SettleAsync();
        Assert.Equal(1, rig.Actions.RecordToggles);
    }

    [Fact]
    public async Task BounceOnCloseAndOnOpen_AroundAHeldPress_MakesOneToggle_AndTheHeldButtonNeverReadsReleased()
    {
        await using var rig = new Rig();
        bool pressed = false;
        for (int i = 0; i < 9; i++) { pressed = !pressed; rig.Line(RecordButton, pressed); rig.Time.Advance(TimeSpan.FromMilliseconds(0.5)); }
        Assert.True(pressed);
        rig.Advance(300);
        await rig.SettleAsync();
        Assert.Equal(0, rig.Actions.RecordToggles); // still held
        for (int i = 0; i < 9; i++) { pressed = !pressed; rig.Line(RecordButton, pressed); rig.Time.Advance(TimeSpan.FromMilliseconds(0.5)); }
        Assert.False(pressed);
        rig.Advance(200);
        await rig.SettleAsync();
        Assert.Equal(1, rig.Actions.RecordToggles);
    }

    [Fact]
    public async Task HoldingRecordWhileRecording_SplitsTheFile_AndDoesNotStop()
    {
        await using var rig = new Rig();
        rig.Actions.Recording = true;
        rig.Line(RecordButton, true);
        rig.Advance(FrontPanel.HoldTime.TotalMilliseconds + 500);
        rig.Line(RecordButton, false);
        rig.Advance(100);
        await rig.SettleAsync();
        Assert.Equal(1, rig.Actions.Splits);
        Assert.Equal(0, rig.Actions.RecordToggles);
        Assert.True(rig.Actions.Recording);
    }

    [Fact]
    public async Task HoldingAnyButtonWhenNothingRecords_DoesNothing()
    {
        await using var rig = new Rig();
        rig.Line(StreamButton, true);
        rig.Line(RecordButton, true);
        rig.Advance(10_000);
        rig.Line(StreamButton, false);
        rig.Line(RecordButton, false);
        rig.Advance(100);
        await rig.SettleAsync();
        Assert.Equal((0, 0, 0), (rig.Actions.RecordToggles, rig.Actions.StreamToggles, rig.Actions.Splits));
    }

    [Fact]
    public async Task StreamPress_TogglesStreaming_AndTheStreamLed()
    {
        await using var rig = new Rig();
        rig.Advance(60);
        Assert.True(rig.Lit(StreamLed));
        rig.Line(StreamButton, true); rig.Advance(60); rig.Line(StreamButton, false); rig.Advance(60);
        await rig.SettleAsync();
        Assert.Equal(1, rig.Actions.StreamToggles);
        Assert.False(rig.Lit(StreamLed));
    }

    /// <summary>Samples a LED every 50 ms for <paramref name="ms"/> as a string of 1 (lit) and 0.</summary>
    static string Trace(Rig rig, int led, int ms)
    {
        var s = new System.Text.StringBuilder();
        for (int t = 0; t < ms; t += 50) { s.Append(rig.Lit(led) ? '1' : '0'); rig.Advance(50); }
        return s.ToString();
    }

    [Fact]
    public async Task LedPatterns_OnAFakeClock()
    {
        await using var rig = new Rig();
        rig.Actions.State = DeviceState.Starting;
        rig.Advance(50);
        // Starting: 1 Hz blink, half on, half off.
        Assert.Equal("1111111111000000000011111111110000000000", Trace(rig, StatusLed, 2000));
        rig.Actions.State = DeviceState.Ready;
        rig.Advance(50);
        Assert.Equal("11111111111111111111", Trace(rig, StatusLed, 1000));
        rig.Actions.State = DeviceState.Updating;
        rig.Advance(50);
        // Updating: fast, 4 Hz (125 ms on, 125 ms off; sampled every 50 ms).
        Assert.Equal("11100111001110011100", Trace(rig, StatusLed, 1000));
        rig.Actions.State = DeviceState.Fatal;
        rig.Advance(50);
        // Fatal: three short flashes and a pause, every 2 s.
        Assert.Equal("1110001110001110000000000000000000000000" + "111000111000111", Trace(rig, StatusLed, 2750));
        // A recording fault (disk full) blinks the Record LED.
        rig.Actions.Fault = true;
        rig.Advance(50);
        Assert.Equal(LedPattern.Blink, rig.Panel.Pattern("record"));
        Assert.Equal("11111111110000000000", Trace(rig, RecordLed, 1000));
    }

    [Fact]
    public void PatternTable()
    {
        Assert.True(LedPatterns.IsLit(LedPattern.On, 12345));
        Assert.False(LedPatterns.IsLit(LedPattern.Off, 0));
        Assert.Equal(new[] { true, false, true }, new long[] { 0, 500, 1000 }.Select(t => LedPatterns.IsLit(LedPattern.Blink, t)));
        Assert.Equal(new[] { true, false, true, false }, new long[] { 0, 125, 250, 375 }.Select(t => LedPatterns.IsLit(LedPattern.FastBlink, t)));
        Assert.Equal(new[] { true, false, true, false, true, false, false }, new long[] { 0, 150, 300, 450, 600, 750, 1999 }.Select(t => LedPatterns.IsLit(LedPattern.Fault, t)));
    }
}
