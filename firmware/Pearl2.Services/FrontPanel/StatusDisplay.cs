using System.Device.I2c;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Images;
using Pearl2.Media.Sources;

namespace Pearl2.Services.FrontPanel;

/// <summary>
/// A monochrome picture in SSD1306 memory order: one byte per column per 8-row page, bit 0 the top row, so the
/// buffer goes to the controller as is.
/// </summary>
public sealed class MonoFrame(int width, int height)
{
    public int Width { get; } = width;
    public int Height { get; } = height;
    public byte[] Pages { get; } = new byte[width * height / 8];

    public bool this[int x, int y] => (Pages[(y / 8) * Width + x] & (1 << (y % 8))) != 0;

    public void Set(int x, int y, bool on)
    {
        if ((uint)x >= Width || (uint)y >= Height) return;
        ref byte b = ref Pages[(y / 8) * Width + x];
        b = on ? (byte)(b | (1 << (y % 8))) : (byte)(b & ~(1 << (y % 8)));
    }

    public void Clear() => Array.Clear(Pages);

    /// <summary>Text in the 5×7 panel font, 6 pixels per character, the top at <paramref name="y"/>.</summary>
    public void Text(int x, int y, string text)
    {
        foreach (char c in text)
        {
            var g = Font5x7.Glyph(c);
            for (int col = 0; col < 5; col++)
                for (int row = 0; row < 7; row++)
                    if ((g[col] & (1 << row)) != 0) Set(x + col, y + row, true);
            x += Font5x7.Advance;
        }
    }

    /// <summary>8-bit grey, scaled up by <paramref name="scale"/> so the PNG is readable on a monitor.</summary>
    public byte[] ToPng(int scale)
    {
        int w = Width * scale, h = Height * scale;
        var px = new byte[w * h];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                px[y * w + x] = this[x / scale, y / scale] ? (byte)255 : (byte)0;
        return Png.EncodeGray(px, w, h);
    }
}

/// <summary>Where the status picture goes: an SSD1306 on I2C, or a PNG file for the simulated panel.</summary>
public interface IDisplaySink : IDisposable
{
    void Show(MonoFrame frame);
}

public sealed class PngDisplaySink(string path, int scale = 4) : IDisplaySink
{
    public void Show(MonoFrame frame)
    {
        // Written beside and renamed, so a reader never sees half a picture.
        var tmp = path + ".tmp";
        File.WriteAllBytes(tmp, frame.ToPng(scale));
        File.Move(tmp, path, overwrite: true);
    }

    public void Dispose() { }
}

/// <summary>An SSD1306 over I2C through Iot.Device.Bindings: its initialisation, then our page buffer as display data.</summary>
public sealed class Ssd1306Sink : IDisplaySink
{
    readonly Iot.Device.Ssd13xx.Ssd1306 _display;

    public Ssd1306Sink(int bus, int address, int width, int height)
    {
        _display = new Iot.Device.Ssd13xx.Ssd1306(I2cDevice.Create(new I2cConnectionSettings(bus, address)), width, height);
    }

    public void Show(MonoFrame frame) => _display.SendData(frame.Pages);

    public void Dispose() => _display.Dispose();
}

/// <summary>
/// The status display's text model (device name, IP address, recording and streaming state, recording time) and
/// its rendering; redrawn only when the text changes.
/// </summary>
public sealed class StatusDisplay : IDisposable
{
    readonly IDisplaySink _sink;
    readonly MonoFrame _frame;
    readonly ILogger _log;
    string[] _shown = [];

    public StatusDisplay(IDisplaySink sink, int width, int height, ILogger log)
    {
        _sink = sink; _log = log;
        _frame = new MonoFrame(width, height);
    }

    public IReadOnlyList<string> Lines => _shown;
    public MonoFrame Frame => _frame;

    /// <summary>What the display shows of one channel: recording (or failed), and how it is live on the LAN.</summary>
    public readonly record struct ChannelGlance(int Channel, bool Recording, bool Fault = false, bool Live = true, bool Login = false);

    /// <summary>
    /// The text, 21 characters a line at most (128 px): name, address, the recording clock, then a grid of up to 8
    /// channels — one column each, a REC row (R recording, ! failed, - not) and a LIVE row (Y open to the LAN,
    /// L open with the viewer login, - private) — and the device state.
    /// </summary>
    public static string[] Compose(string device, string ip, PanelStatus s, TimeSpan? recordingFor, IEnumerable<ChannelGlance> channels)
    {
        string rec = s.RecordingFault ? "REC ERROR: DISK FULL"
            : s.Recording ? $"REC {(recordingFor ?? TimeSpan.Zero).ToString(@"hh\:mm\:ss", CultureInfo.InvariantCulture)}"
            : "REC OFF";
        string state = s.State switch { DeviceState.Starting => "STARTING", DeviceState.Updating => "UPDATING", DeviceState.Fatal => "FAULT", _ => s.SetupPending ? "SETUP: OPEN IP IN WEB" : "READY" };
        var list = channels.Take(8).ToList();
        return
        [
            Fit(device.ToUpperInvariant()),
            Fit($"IP {ip}"),
            rec,
            "CH  " + string.Concat(list.Select(c => $" {c.Channel}")),
            "REC " + string.Concat(list.Select(c => c.Fault ? " !" : c.Recording ? " R" : " -")),
            "LIVE" + string.Concat(list.Select(c => !c.Live ? " -" : c.Login ? " L" : " Y")),
            state,
        ];
    }

    /// <summary>A line cut to the display's 21 characters.</summary>
    static string Fit(string line) => line.Length <= 21 ? line : line[..21];

    /// <summary>Top row of text line <paramref name="i"/>: the first line (the device name) stands apart from the rest.</summary>
    public static int LineTop(int i) => i * Font5x7.LineHeight + 1 + (i > 0 ? 2 : 0);

    /// <summary>The picture of these lines, as the display shows it.</summary>
    public static void Draw(MonoFrame frame, IReadOnlyList<string> lines)
    {
        frame.Clear();
        for (int i = 0; i < lines.Count && (i + 1) * Font5x7.LineHeight <= frame.Height; i++) frame.Text(1, LineTop(i), lines[i]);
    }

    public void Show(string[] lines)
    {
        if (lines.AsSpan().SequenceEqual(_shown)) return;
        _shown = lines;
        Draw(_frame, lines);
        try { _sink.Show(_frame); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.LogWarning("panel.display_failed error=\"{Error}\"", e.Message);
        }
    }

    public void Dispose() => _sink.Dispose();
}
