using System.Device.Gpio;
using Microsoft.Extensions.Logging;
using Pearl2.Services;
using Pearl2.Services.Configuration;
using Pearl2.Services.FrontPanel;

namespace Pearl2.Host;

/// <summary>
/// The front panel as the board profile wires it: GPIO driver, buttons and LEDs, and the status display. On the
/// simulated driver a "press" drives the button's line like a finger would (down, hold, up), so the same debounce
/// and actions run as on the board.
/// </summary>
public sealed class Panel : IAsyncDisposable
{
    readonly GpioController _gpio;
    readonly SimulatedGpioDriver? _simulated;
    readonly PanelProfile _profile;
    readonly StatusDisplay? _display;
    readonly Device _device;
    readonly Func<string> _address;
    readonly string _deviceName;
    readonly TimeProvider _time;
    int _displayTick;
    string _shownAddress = "";

    public Panel(PanelProfile profile, Device device, string deviceName, string dataDir, Func<string> address, TimeProvider time, ILoggerFactory loggers)
    {
        _profile = profile; _device = device; _deviceName = deviceName; _address = address; _time = time;
        var log = loggers.CreateLogger("Pearl2.Panel");
        if (profile.Driver == "simulated")
        {
            _simulated = new SimulatedGpioDriver();
            _gpio = new GpioController(_simulated);
        }
        else
        {
            int chip = profile.ChipLabel is { } label ? GpioChips.FindByLabel(label) : profile.Chip;
            log.LogInformation("panel.chip chip=gpiochip{Chip} label={Label}", chip, profile.ChipLabel ?? "-");
            _gpio = new GpioController(new System.Device.Gpio.Drivers.LibGpiodDriver(chip));
        }
        static PanelLine L(GpioLine g) => new(g.Line, g.ActiveLow);
        Front = new FrontPanel(_gpio, new PanelWiring(L(profile.Record), L(profile.Stream), L(profile.RecordLed), L(profile.StreamLed), L(profile.StatusLed)), device, time, log);
        if (profile.Display is { } d)
        {
            IDisplaySink sink = _simulated is not null
                ? new PngDisplaySink(Path.Combine(dataDir, "status-display.png"))
                : new Ssd1306Sink(d.I2cBus, d.Address, d.Width, d.Height);
            _display = new StatusDisplay(sink, d.Width, d.Height, log);
            Front.Ticked += UpdateDisplay;
        }
        log.LogInformation("panel.started driver={Driver} display={Display}", profile.Driver, profile.Display is null ? "none" : _simulated is not null ? "png" : profile.Display.Kind);
    }

    public FrontPanel Front { get; }
    public bool Simulated => _simulated is not null;
    public IReadOnlyList<string> DisplayLines => _display?.Lines ?? [];

    /// <summary>The LEDs and the display as the device status shows them.</summary>
    public PanelView View
    {
        get
        {
            Front.ShowStatus();   // the LEDs as they are for the state now, not as of the last tick
            return new(Led("record"), Led("stream"), Led("status"), DisplayLines);
        }
    }

    string Led(string name) => Front.Pattern(name).ToString().ToLowerInvariant();

    void UpdateDisplay(PanelStatus s)
    {
        // The text changes at most once a second (the recording clock): compose it every fifth tick, look up the address every 5 s.
        int tick = Interlocked.Increment(ref _displayTick);
        if (tick % 5 != 1) return;
        if (tick % 100 == 1) _shownAddress = _address();
        Redraw(s);
    }

    /// <summary>Composes and shows the display now (after a press, so the answer to it shows the new state).</summary>
    void Redraw(PanelStatus s)
    {
        if (_display is null) return;
        if (_shownAddress.Length == 0) _shownAddress = _address();
        TimeSpan? recordingFor = _device.RecordingSince is { } t ? _time.GetLocalNow() - t : null;
        _display.Show(StatusDisplay.Compose(_deviceName, _shownAddress, s, recordingFor, _device.Glances));
    }

    /// <summary>Presses a button on the simulated panel: the line goes active for <paramref name="hold"/>, then back, then the action runs.</summary>
    public async Task PressAsync(PanelButton button, TimeSpan hold)
    {
        if (_simulated is null)
            throw new InvalidOperationException("this board's panel has real buttons; 'panel press' drives only the simulated panel");
        var line = button == PanelButton.Record ? _profile.Record : _profile.Stream;
        _simulated.SetInput(line.Line, line.ActiveLow ? PinValue.Low : PinValue.High);
        await Task.Delay(hold);
        _simulated.SetInput(line.Line, line.ActiveLow ? PinValue.High : PinValue.Low);
        await Task.Delay(FrontPanel.Debounce * 3);
        await Front.Idle;
        Redraw(((IPanelActions)_device).Status);
    }

    public async ValueTask DisposeAsync()
    {
        await Front.DisposeAsync();
        _display?.Dispose();
        _gpio.Dispose();
    }
}
