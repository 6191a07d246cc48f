using System.Device.I2c;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Images;

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
            var g = PanelFont.Glyph(c);
            for (int col = 0; col < 5; col++)
                for (int row = 0; row < 7; row++)
                    if ((g[col] & (1 << row)) != 0) Set(x + col, y + row, true);
            x += PanelFont.Advance;
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

/// <summary>
/// A 5×7 font for the status display: capitals (small letters are drawn as capitals), digits and the punctuation
/// the panel needs. Each glyph is written as seven rows of five pixels.
/// </summary>
public static class PanelFont
{
    public const int Advance = 6, LineHeight = 8;

    static readonly string[] Source =
    [
        "  .....|.....|.....|.....|.....|.....|.....",
        "0 .###.|#...#|#..##|#.#.#|##..#|#...#|.###.",
        "1 ..#..|.##..|..#..|..#..|..#..|..#..|.###.",
        "2 .###.|#...#|....#|...#.|..#..|.#...|#####",
        "3 #####|...#.|..#..|...#.|....#|#...#|.###.",
        "4 ...#.|..##.|.#.#.|#..#.|#####|...#.|...#.",
        "5 #####|#....|####.|....#|....#|#...#|.###.",
        "6 ..##.|.#...|#....|####.|#...#|#...#|.###.",
        "7 #####|....#|...#.|..#..|.#...|.#...|.#...",
        "8 .###.|#...#|#...#|.###.|#...#|#...#|.###.",
        "9 .###.|#...#|#...#|.####|....#|...#.|.##..",
        "A .###.|#...#|#...#|#####|#...#|#...#|#...#",
        "B ####.|#...#|#...#|####.|#...#|#...#|####.",
        "C .###.|#...#|#....|#....|#....|#...#|.###.",
        "D ###..|#..#.|#...#|#...#|#...#|#..#.|###..",
        "E #####|#....|#....|####.|#....|#....|#####",
        "F #####|#....|#....|####.|#....|#....|#....",
        "G .###.|#...#|#....|#.###|#...#|#...#|.####",
        "H #...#|#...#|#...#|#####|#...#|#...#|#...#",
        "I .###.|..#..|..#..|..#..|..#..|..#..|.###.",
        "J ..###|...#.|...#.|...#.|...#.|#..#.|.##..",
        "K #...#|#..#.|#.#..|##...|#.#..|#..#.|#...#",
        "L #....|#....|#....|#....|#....|#....|#####",
        "M #...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#",
        "N #...#|#...#|##..#|#.#.#|#..##|#...#|#...#",
        "O .###.|#...#|#...#|#...#|#...#|#...#|.###.",
        "P ####.|#...#|#...#|####.|#....|#....|#....",
        "Q .###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#",
        "R ####.|#...#|#...#|####.|#.#..|#..#.|#...#",
        "S .####|#....|#....|.###.|....#|....#|####.",
        "T #####|..#..|..#..|..#..|..#..|..#..|..#..",
        "U #...#|#...#|#...#|#...#|#...#|#...#|.###.",
        "V #...#|#...#|#...#|#...#|#...#|.#.#.|..#..",
        "W #...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#.",
        "X #...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#",
        "Y #...#|#...#|.#.#.|..#..|..#..|..#..|..#..",
        "Z #####|....#|...#.|..#..|.#...|#....|#####",
        ". .....|.....|.....|.....|.....|.##..|.##..",
        ", .....|.....|.....|.....|.##..|..#..|.#...",
        ": .....|.##..|.##..|.....|.##..|.##..|.....",
        "- .....|.....|.....|#####|.....|.....|.....",
        "_ .....|.....|.....|.....|.....|.....|#####",
        "/ .....|....#|...#.|..#..|.#...|#....|.....",
        "% ##...|##..#|...#.|..#..|.#...|#..##|...##",
        "( ...#.|..#..|.#...|.#...|.#...|..#..|...#.",
        ") .#...|..#..|...#.|...#.|...#.|..#..|.#...",
        "! ..#..|..#..|..#..|..#..|..#..|.....|..#..",
        "? .###.|#...#|....#|...#.|..#..|.....|..#..",
        "+ .....|..#..|..#..|#####|..#..|..#..|.....",
        "= .....|.....|#####|.....|#####|.....|.....",
        "# .#.#.|.#.#.|#####|.#.#.|#####|.#.#.|.#.#.",
        "* .....|#.#.#|.###.|#####|.###.|#.#.#|.....",
        "> .#...|..#..|...#.|....#|...#.|..#..|.#...",
        "< ...#.|..#..|.#...|#....|.#...|..#..|...#.",
        "' ..#..|..#..|.#...|.....|.....|.....|.....",
        "@ .###.|#...#|#.###|#.#.#|#.###|#....|.###.",
    ];

    static readonly Dictionary<char, byte[]> Glyphs = Build();
    static readonly byte[] Unknown = [0x7f, 0x41, 0x41, 0x41, 0x7f]; // a box

    /// <summary>Each glyph as five column bytes, bit 0 the top row.</summary>
    static Dictionary<char, byte[]> Build()
    {
        var d = new Dictionary<char, byte[]>();
        foreach (var s in Source)
        {
            var rows = s[2..].Split('|');
            var cols = new byte[5];
            for (int r = 0; r < 7; r++)
                for (int c = 0; c < 5; c++)
                    if (rows[r][c] == '#') cols[c] |= (byte)(1 << r);
            d[s[0]] = cols;
        }
        return d;
    }

    public static byte[] Glyph(char c) => Glyphs.TryGetValue(char.ToUpperInvariant(c), out var g) ? g : Unknown;
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

    public static string[] Compose(string device, string ip, PanelStatus s, TimeSpan? recordingFor, IEnumerable<(int Channel, bool Recording)> channels)
    {
        string rec = s.RecordingFault ? "REC ERROR: DISK FULL"
            : s.Recording ? $"REC {(recordingFor ?? TimeSpan.Zero).ToString(@"hh\:mm\:ss", CultureInfo.InvariantCulture)}"
            : "REC OFF";
        string state = s.State switch { DeviceState.Starting => "STARTING", DeviceState.Updating => "UPDATING", DeviceState.Fatal => "FAULT", _ => "READY" };
        return
        [
            device.ToUpperInvariant(),
            $"IP {ip}",
            rec,
            $"LIVE {(s.Streaming ? "ON" : "OFF")}",
            string.Join(" ", channels.Select(c => $"CH{c.Channel}:{(c.Recording ? "REC" : "--")}")),
            state,
        ];
    }

    public void Show(string[] lines)
    {
        if (lines.AsSpan().SequenceEqual(_shown)) return;
        _shown = lines;
        _frame.Clear();
        for (int i = 0; i < lines.Length && (i + 1) * PanelFont.LineHeight <= _frame.Height; i++)
            _frame.Text(1, i * PanelFont.LineHeight + 1 + (i > 0 ? 2 : 0), lines[i]);
        try { _sink.Show(_frame); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.LogWarning("panel.display_failed error=\"{Error}\"", e.Message);
        }
    }

    public void Dispose() => _sink.Dispose();
}
