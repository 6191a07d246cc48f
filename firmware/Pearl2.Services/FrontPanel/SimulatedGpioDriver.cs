using System.Device.Gpio;

namespace Pearl2.Services.FrontPanel;

/// <summary>
/// GPIO lines in memory, for hosts and tests: outputs keep what was written (the LEDs), inputs are driven by
/// <see cref="SetInput"/> (a button's contact, bounce included) and raise edge events like a real chip.
/// </summary>
public sealed class SimulatedGpioDriver : GpioDriver
{
    readonly object _lock = new();
    readonly Dictionary<int, (PinMode Mode, PinValue Value)> _pins = new();
    readonly Dictionary<int, List<(PinEventTypes Types, PinChangeEventHandler Handler)>> _handlers = new();

    public SimulatedGpioDriver(int pinCount = 64) => PinCount = pinCount;

    protected override int PinCount { get; }

    /// <summary>Raised after an output line changes (what a LED would show).</summary>
    public event Action<int, PinValue>? OutputChanged;

    public PinValue Level(int pin) { lock (_lock) return _pins.TryGetValue(pin, out var p) ? p.Value : PinValue.Low; }

    /// <summary>Drives an input line, as a button's contact would; an edge calls the registered handlers synchronously.</summary>
    public void SetInput(int pin, PinValue value)
    {
        PinEventTypes edge;
        PinChangeEventHandler[] handlers;
        lock (_lock)
        {
            var old = _pins.TryGetValue(pin, out var p) ? p.Value : PinValue.Low;
            _pins[pin] = (p.Mode, value);
            if (old == value) return;
            edge = value == PinValue.High ? PinEventTypes.Rising : PinEventTypes.Falling;
            handlers = _handlers.TryGetValue(pin, out var list) ? list.Where(h => (h.Types & edge) != 0).Select(h => h.Handler).ToArray() : [];
        }
        foreach (var h in handlers) h(this, new PinValueChangedEventArgs(edge, pin));
    }

    protected override void OpenPin(int pinNumber) { lock (_lock) _pins.TryAdd(pinNumber, (PinMode.Input, PinValue.Low)); }
    protected override void ClosePin(int pinNumber) { lock (_lock) _handlers.Remove(pinNumber); }

    protected override void SetPinMode(int pinNumber, PinMode mode)
    {
        lock (_lock)
        {
            var p = _pins.GetValueOrDefault(pinNumber);
            // A pull-up holds an idle input high, a pull-down low, as on the board.
            var value = mode == PinMode.InputPullUp ? PinValue.High : mode == PinMode.InputPullDown ? PinValue.Low : p.Value;
            _pins[pinNumber] = (mode, value);
        }
    }

    protected override PinMode GetPinMode(int pinNumber) { lock (_lock) return _pins.GetValueOrDefault(pinNumber).Mode; }
    protected override bool IsPinModeSupported(int pinNumber, PinMode mode) => true;
    protected override PinValue Read(int pinNumber) => Level(pinNumber);

    protected override void Write(int pinNumber, PinValue value)
    {
        lock (_lock)
        {
            var p = _pins.GetValueOrDefault(pinNumber);
            if (p.Value == value && _pins.ContainsKey(pinNumber)) return;
            _pins[pinNumber] = (p.Mode, value);
        }
        OutputChanged?.Invoke(pinNumber, value);
    }

    protected override WaitForEventResult WaitForEvent(int pinNumber, PinEventTypes eventTypes, CancellationToken cancellationToken) =>
        throw new NotSupportedException("the simulated driver reports edges through callbacks only");

    protected override void AddCallbackForPinValueChangedEvent(int pinNumber, PinEventTypes eventTypes, PinChangeEventHandler callback)
    {
        lock (_lock)
        {
            if (!_handlers.TryGetValue(pinNumber, out var list)) _handlers[pinNumber] = list = new();
            list.Add((eventTypes, callback));
        }
    }

    protected override void RemoveCallbackForPinValueChangedEvent(int pinNumber, PinChangeEventHandler callback)
    {
        lock (_lock) if (_handlers.TryGetValue(pinNumber, out var list)) list.RemoveAll(h => h.Handler == callback);
    }

    public override GpioChipInfo GetChipInfo() => new(0, "pearl2-sim", "simulated front panel", PinCount);
}
