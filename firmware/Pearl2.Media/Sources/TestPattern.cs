using Pearl2.Media.Encoders;

namespace Pearl2.Media.Sources;

/// <summary>
/// The embedded test picture: 75 % colour bars, a box that moves one step per frame, the frame counter and
/// the UTC wall-clock time burned in (latency can be read off a decoded frame), and a white band on the
/// first frames of every second, when the test tone beeps (A/V sync can be checked).
/// </summary>
public sealed unsafe class TestPatternRenderer
{
    static readonly (byte Y, byte U, byte V)[] Bars =
        [(180, 128, 128), (168, 44, 136), (145, 147, 44), (133, 63, 52), (63, 193, 204), (51, 109, 212), (28, 212, 120)];

    readonly int _w, _h, _fps, _scale, _bandTop;
    readonly byte[] _y, _u, _v;

    public TestPatternRenderer(int width, int height, int fps)
    {
        _w = width; _h = height; _fps = fps;
        _scale = Math.Max(1, height / 180);
        _bandTop = height * 2 / 3 & ~1;
        _y = new byte[width * height];
        _u = new byte[width / 2 * (height / 2)];
        _v = new byte[width / 2 * (height / 2)];
        for (int row = 0; row < height; row++)
            for (int x = 0; x < width; x++)
            {
                var c = row < _bandTop ? Bars[x * Bars.Length / width] : ((byte)32, (byte)128, (byte)128);
                _y[row * width + x] = c.Item1;
                if ((row & 1) == 0 && (x & 1) == 0)
                {
                    _u[row / 2 * (width / 2) + x / 2] = c.Item2;
                    _v[row / 2 * (width / 2) + x / 2] = c.Item3;
                }
            }
    }

    /// <summary>Frames of each second that show the flash (the beep lasts as long: 100 ms).</summary>
    public int FlashFrames => Math.Max(1, _fps / 10);

    public void Render(in PicturePlanes p, long frame, DateTimeOffset wallClock)
    {
        int cw = _w / 2, ch = _h / 2;
        for (int row = 0; row < _h; row++) _y.AsSpan(row * _w, _w).CopyTo(new Span<byte>(p.Y + row * p.YStride, _w));
        for (int row = 0; row < ch; row++)
        {
            _u.AsSpan(row * cw, cw).CopyTo(new Span<byte>(p.U + row * p.CStride, cw));
            _v.AsSpan(row * cw, cw).CopyTo(new Span<byte>(p.V + row * p.CStride, cw));
        }

        if (frame % _fps < FlashFrames) Fill(p, 0, _bandTop, _w, _h - _bandTop, 235, 128, 128);

        int box = (_h - _bandTop) / 2 & ~1;
        int travel = _w - box;
        int pos = (int)(frame * (_w / 120 + 2) % (2 * travel));
        int bx = (pos < travel ? pos : 2 * travel - pos) & ~1;
        Fill(p, bx, _bandTop + box / 2 & ~1, box, box, 81, 90, 240);

        Span<char> text = stackalloc char[32];
        int n = 0;
        text[n++] = '#';
        frame.TryFormat(text[n..], out int w, "D6");
        n += w;
        text[n++] = ' ';
        wallClock.UtcDateTime.TryFormat(text[n..], out w, "HH:mm:ss.fff");
        n += w;
        DrawText(p, text[..n], 2 * _scale, 2 * _scale);
    }

    static void Fill(in PicturePlanes p, int x, int y, int w, int h, byte yv, byte uv, byte vv)
    {
        x &= ~1; y &= ~1;
        w = Math.Min(w, p.Width - x) & ~1; h = Math.Min(h, p.Height - y) & ~1;
        if (w <= 0 || h <= 0) return;
        for (int r = y; r < y + h; r++) new Span<byte>(p.Y + r * p.YStride + x, w).Fill(yv);
        for (int r = y / 2; r < (y + h) / 2; r++)
        {
            new Span<byte>(p.U + r * p.CStride + x / 2, w / 2).Fill(uv);
            new Span<byte>(p.V + r * p.CStride + x / 2, w / 2).Fill(vv);
        }
    }

    void DrawText(in PicturePlanes p, ReadOnlySpan<char> text, int x, int y)
    {
        int s = _scale, cell = 6 * s;
        Fill(p, x - s, y - s, text.Length * cell + 2 * s, 9 * s, 16, 128, 128);
        for (int i = 0; i < text.Length; i++)
        {
            var glyph = Glyph(text[i]);
            for (int gy = 0; gy < 7; gy++)
                for (int gx = 0; gx < 5; gx++)
                    if ((glyph[gy] >> (4 - gx) & 1) != 0)
                        for (int dy = 0; dy < s; dy++)
                        {
                            int py = y + gy * s + dy, px = x + i * cell + gx * s;
                            if (py < p.Height && px + s <= p.Width) new Span<byte>(p.Y + py * p.YStride + px, s).Fill(235);
                        }
        }
    }

    static ReadOnlySpan<byte> Glyph(char c) => c switch
    {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        _ => [0, 0, 0, 0, 0, 0, 0],
    };
}

/// <summary>The test sound: a quiet 440 Hz tone with a 1 kHz beep for the first 100 ms of every second.</summary>
public sealed class TestToneGenerator(int sampleRate)
{
    public int BeepSamples => sampleRate / 10;

    public void Render(Span<float> left, Span<float> right, long firstSample)
    {
        for (int i = 0; i < left.Length; i++)
        {
            long s = firstSample + i;
            bool beep = s % sampleRate < BeepSamples;
            double f = beep ? 1000 : 440, a = beep ? 0.5 : 0.1;
            double phase = (double)(s * (long)f % sampleRate) / sampleRate;
            float v = (float)(a * Math.Sin(2 * Math.PI * phase));
            left[i] = v;
            if (!right.IsEmpty) right[i] = v;
        }
    }
}
