using System.Device.Gpio;
using Microsoft.Extensions.Logging;

namespace Pearl2.Services.FrontPanel;

public enum PanelButton { Record, Stream }

public enum LedPattern { Off, On, Blink, FastBlink, Fault, Attention }

/// <summary>What the buttons do, carried out by the device.</summary>
public interface IPanelActions
{
    PanelStatus Status { get; }
    Task ToggleRecordingAsync(string by);
    void ToggleStreaming(string by);
    /// <summary>Closes the current recording files and goes on in new ones (from the next key frame).</summary>
    void SplitRecording(string by);
}

public readonly record struct PanelLine(int Line, bool ActiveLow);

public sealed record PanelWiring(PanelLine Record, PanelLine Stream, PanelLine RecordLed, PanelLine StreamLed, PanelLine StatusLed);

public static class LedPatterns
{
    /// <summary>
    /// Whether a LED with this pattern is lit <paramref name="ms"/> after the pattern began: Blink is 1 Hz, FastBlink
    /// 4 Hz, and Fault three short flashes then a pause (2 s), which no other state looks like. Attention is on but for two
    /// short gaps every 2 s: the device works, something needs a look (an upload target that refuses us).
    /// </summary>
    public static bool IsLit(LedPattern p, long ms) => p switch
    {
        LedPattern.On => true,
        LedPattern.Blink => ms % 1000 < 500,
        LedPattern.FastBlink => ms % 250 < 125,
        LedPattern.Fault => (ms % 2000) is < 150 or (>= 300 and < 450) or (>= 600 and < 750),
        LedPattern.Attention => (ms % 2000) is not (< 150 or (>= 300 and < 450)),
        _ => false,
    };
}

/// <summary>
/// The front panel: two buttons and three LEDs on GPIO lines, all timing on a <see cref="TimeProvider"/>.
/// Contact bounce makes one press and a held button stays held (see <see cref="Button"/>; Iot.Device.Bindings'
/// GpioButton drops the edge a bounce settles on, so a held button could read as released). A press acts when
/// released; holding Record for <see cref="HoldTime"/> while
/// recording splits the files instead, and a longer hold (or a stuck button) does nothing more: no single press
/// can lose a recording, because stopping always finishes the file.
/// </summary>
public sealed class FrontPanel : IAsyncDisposable
{
    public static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(30);
    public static readonly TimeSpan HoldTime = TimeSpan.FromSeconds(3);
    public static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(50);

    readonly GpioController _gpio;
    readonly PanelWiring _wiring;
    readonly IPanelActions _actions;
    readonly TimeProvider _time;
    readonly ILogger _log;
    readonly Button[] _buttons;
    readonly Led[] _leds;
    readonly ITimer _ticker;
    readonly object _lock = new();
    Task _pending = Task.CompletedTask;
    bool _disposed;

    public FrontPanel(GpioController gpio, PanelWiring wiring, IPanelActions actions, TimeProvider time, ILogger log)
    {
        _gpio = gpio; _wiring = wiring; _actions = actions; _time = time; _log = log;
        _leds = [new Led(this, "record", wiring.RecordLed), new Led(this, "stream", wiring.StreamLed), new Led(this, "status", wiring.StatusLed)];
        _buttons = [new Button(this, PanelButton.Record, wiring.Record), new Button(this, PanelButton.Stream, wiring.Stream)];
        _ticker = time.CreateTimer(_ => Refresh(), null, TimeSpan.Zero, Tick);
    }

    /// <summary>Called on every tick after the LEDs (the status display hangs here).</summary>
    public event Action<PanelStatus>? Ticked;

    public LedPattern Pattern(string led) => _leds.First(l => l.Name == led).Pattern;

    /// <summary>Completes when the actions started by presses so far have finished (tests and the control command wait on it).</summary>
    public Task Idle { get { lock (_lock) return _pending; } }

    void Refresh()
    {
        if (ShowStatus() is { } s)
        {
            try { Ticked?.Invoke(s); }
            catch (Exception e) { _log.LogError("panel.tick_failed error=\"{Error}\"", e.Message); } // the panel must never take the device down
        }
    }

    /// <summary>
    /// Sets the LEDs for the device's state now, without waiting for the next tick: a status reader that asks for the
    /// LEDs right after the state changed sees them agree with it.
    /// </summary>
    public PanelStatus? ShowStatus()
    {
        PanelStatus s;
        lock (_lock)
        {
            if (_disposed) return null;
            s = _actions.Status;
            _leds[0].Show(s.RecordingFault ? LedPattern.Blink : s.Recording ? LedPattern.On : LedPattern.Off);
            _leds[1].Show(s.Streaming ? LedPattern.On : LedPattern.Off);
            _leds[2].Show(s.State switch
            {
                DeviceState.Starting => LedPattern.Blink,
                DeviceState.Ready => s.UploadFailing ? LedPattern.Attention : LedPattern.On,
                DeviceState.Updating => LedPattern.FastBlink,
                _ => LedPattern.Fault,
            });
        }
        return s;
    }

    void Pressed(PanelButton b, TimeSpan held)
    {
        _log.LogInformation("panel.press button={Button} held_ms={Held}", Name(b), (long)held.TotalMilliseconds);
        Run(b == PanelButton.Record ? () => _actions.ToggleRecordingAsync("panel") : () => { _actions.ToggleStreaming("panel"); return Task.CompletedTask; });
    }

    void Held(PanelButton b)
    {
        if (b == PanelButton.Record && _actions.Status.Recording)
        {
            _log.LogInformation("panel.hold button=record action=split");
            Run(() => { _actions.SplitRecording("panel"); return Task.CompletedTask; });
        }
        else _log.LogInformation("panel.hold button={Button} action=none", Name(b));
    }

    /// <summary>Runs presses one after another, off the GPIO and timer threads.</summary>
    void Run(Func<Task> action)
    {
        lock (_lock)
        {
            _pending = _pending.ContinueWith(async _ =>
            {
                try { await action(); }
                catch (Exception e) { _log.LogError("panel.action_failed error=\"{Error}\"", e.Message); }
                Refresh();
            }, TaskScheduler.Default).Unwrap();
        }
    }

    static string Name(PanelButton b) => b == PanelButton.Record ? "record" : "stream";

    public async ValueTask DisposeAsync()
    {
        lock (_lock) _disposed = true;
        await _ticker.DisposeAsync();
        foreach (var b in _buttons) b.Dispose();
        await Idle;
        foreach (var l in _leds) l.Show(LedPattern.Off);
    }

    /// <summary>
    /// A button line. The first edge from rest is the press (nothing is lost to a slow debounce); edges for the next
    /// <see cref="Debounce"/> are contact bounce and ignored; then the line's level decides: back at rest means the
    /// press has ended (a short tap, or chatter), still active means held. A release counts once the line has
    /// stayed at rest for the debounce time, so a held button never reads as released because it bounced.
    /// </summary>
    sealed class Button : IDisposable
    {
        readonly FrontPanel _p;
        readonly PanelButton _which;
        readonly PanelLine _line;
        readonly ITimer _window, _hold;
        readonly object _lock = new();
        bool _down, _inWindow, _heldFired;
        long _downAt;

        public Button(FrontPanel p, PanelButton which, PanelLine line)
        {
            _p = p; _which = which; _line = line;
            _window = p._time.CreateTimer(_ => WindowEnded(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _hold = p._time.CreateTimer(_ => HoldReached(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            p._gpio.OpenPin(line.Line, line.ActiveLow ? PinMode.InputPullUp : PinMode.InputPullDown);
            p._gpio.RegisterCallbackForPinValueChangedEvent(line.Line, PinEventTypes.Rising | PinEventTypes.Falling, Edge);
        }

        bool Active => (_p._gpio.Read(_line.Line) == PinValue.Low) == _line.ActiveLow;

        void Edge(object sender, PinValueChangedEventArgs e)
        {
            lock (_lock)
            {
                if (_inWindow) return;
                _inWindow = true;
                _window.Change(Debounce, Timeout.InfiniteTimeSpan);
                if (_down) return;          // a release is confirmed when the window ends
                _down = true;
                _heldFired = false;
                _downAt = _p._time.GetTimestamp();
                _hold.Change(HoldTime, Timeout.InfiniteTimeSpan);
            }
        }

        void WindowEnded()
        {
            TimeSpan held;
            lock (_lock)
            {
                _inWindow = false;
                if (!_down || Active) return;
                _down = false;
                _hold.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                held = _p._time.GetElapsedTime(_downAt);
                if (_heldFired) return;
            }
            _p.Pressed(_which, held);
        }

        void HoldReached()
        {
            lock (_lock)
            {
                if (!_down || _heldFired) return;
                _heldFired = true;
            }
            _p.Held(_which);
        }

        public void Dispose()
        {
            _window.Dispose();
            _hold.Dispose();
            _p._gpio.UnregisterCallbackForPinValueChangedEvent(_line.Line, Edge);
            _p._gpio.ClosePin(_line.Line);
        }
    }

    sealed class Led
    {
        readonly FrontPanel _p;
        readonly PanelLine _line;
        long _since;
        bool? _lit;

        public Led(FrontPanel p, string name, PanelLine line)
        {
            _p = p; Name = name; _line = line;
            p._gpio.OpenPin(line.Line, PinMode.Output);
        }

        public string Name { get; }
        public LedPattern Pattern { get; private set; } = (LedPattern)(-1);

        public void Show(LedPattern pattern)
        {
            long now = _p._time.GetTimestamp();
            if (pattern != Pattern)
            {
                Pattern = pattern;
                _since = now;
                _p._log.LogInformation("panel.led led={Led} pattern={Pattern}", Name, pattern.ToString().ToLowerInvariant());
            }
            bool lit = LedPatterns.IsLit(pattern, (long)_p._time.GetElapsedTime(_since, now).TotalMilliseconds);
            if (lit == _lit) return;
            _lit = lit;
            _p._gpio.Write(_line.Line, lit != _line.ActiveLow ? PinValue.High : PinValue.Low);
        }
    }
}
