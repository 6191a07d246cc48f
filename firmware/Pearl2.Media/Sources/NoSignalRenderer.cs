using Pearl2.Media.Encoders;

namespace Pearl2.Media.Sources;

/// <summary>
/// What a channel shows while its capture input has no signal (as the Pearl does): a dark grey picture with
/// "NO SIGNAL" across the middle and the input's name under it, so viewers and recordings carry on.
/// </summary>
public sealed unsafe class NoSignalRenderer(int width, int height, string input)
{
    readonly int _scale = Math.Max(1, Math.Min(width / (9 * Font5x7.Advance + 4), height / 40));

    public void Render(in PicturePlanes p)
    {
        for (int row = 0; row < height; row++) new Span<byte>(p.Y + row * p.YStride, width).Fill(40);
        for (int row = 0; row < height / 2; row++)
        {
            new Span<byte>(p.U + row * p.CStride, width / 2).Fill(128);
            new Span<byte>(p.V + row * p.CStride, width / 2).Fill(128);
        }
        Text(p, "NO SIGNAL", _scale, height / 2 - 4 * _scale, 235);
        int small = Math.Max(1, _scale / 3);
        Text(p, input, small, height / 2 + 6 * _scale, 160);
    }

    void Text(in PicturePlanes p, string text, int scale, int top, byte luma)
    {
        int x0 = (width - text.Length * Font5x7.Advance * scale) / 2;
        for (int i = 0; i < text.Length; i++)
        {
            var g = Font5x7.Glyph(text[i]);
            for (int col = 0; col < 5; col++)
                for (int row = 0; row < 7; row++)
                {
                    if ((g[col] & (1 << row)) == 0) continue;
                    int x = x0 + (i * Font5x7.Advance + col) * scale, y = top + row * scale;
                    for (int dy = 0; dy < scale; dy++)
                    {
                        if ((uint)(y + dy) >= (uint)height) continue;
                        for (int dx = 0; dx < scale; dx++)
                            if ((uint)(x + dx) < (uint)width) p.Y[(y + dy) * p.YStride + x + dx] = luma;
                    }
                }
        }
    }
}
