using Pearl2.Media.Encoders;
using Pearl2.Media.Sources;

namespace Pearl2.Services.HttpLive;

/// <summary>
/// JPEG previews of a channel: a picture is encoded at most once per raw picture copied (4 a second at
/// most) and per width, however many ask; everyone else gets the cached bytes. Widths snap to a short ladder
/// (<see cref="Widths"/>), so a client asking for thousands of sizes makes at most that many encoders; up to four are
/// kept, the least recently used freed with its scaler.
/// </summary>
public sealed class PreviewCache(PreviewFrames frames, TimeProvider time)
{
    const int MaxWidths = 4;
    readonly SemaphoreSlim _gate = new(1, 1);
    readonly Dictionary<int, Entry> _byWidth = new();

    sealed class Entry
    {
        public JpegEncoder? Encoder;
        public byte[] Jpeg = [];
        public long Frame = -1;
        public long UsedAt;
    }

    public long Encodes { get; private set; }

    /// <summary>The widths a preview comes in: the largest that is not wider than asked (and than the source).</summary>
    public static readonly int[] Widths = [64, 96, 128, 160, 192, 240, 320, 384, 480, 640, 720, 960, 1280, 1600, 1920];

    public static int ClampWidth(int? requested, int sourceWidth)
    {
        int limit = Math.Clamp(Math.Min(requested ?? 320, sourceWidth), 64, 1920);
        int w = 64;
        foreach (int step in Widths) if (step <= limit) w = step;
        return w & ~15;
    }

    /// <summary>The latest picture as a JPEG <paramref name="width"/> wide, or null when the channel shows nothing yet.</summary>
    public async Task<(byte[] Jpeg, long Frame)?> GetAsync(int? width)
    {
        frames.Want();
        for (int i = 0; i < 40 && (frames.Frame < 0 || time.GetElapsedTime(frames.CopiedAt) > TimeSpan.FromSeconds(1)); i++)
            await Task.Delay(TimeSpan.FromMilliseconds(25), time);
        if (frames.Frame < 0) return null;
        await _gate.WaitAsync();
        try
        {
            int w = ClampWidth(width, frames.Width);
            int h = Math.Max(16, (int)Math.Round((double)w * frames.Height / frames.Width) & ~1);
            if (!_byWidth.TryGetValue(w, out var e))
            {
                if (_byWidth.Count == MaxWidths)
                {
                    var oldest = _byWidth.MinBy(kv => kv.Value.UsedAt);
                    oldest.Value.Encoder?.Dispose();
                    _byWidth.Remove(oldest.Key);
                }
                _byWidth[w] = e = new Entry();
            }
            e.UsedAt = time.GetTimestamp();
            if (e.Frame != frames.Frame || e.Jpeg.Length == 0)
            {
                e.Encoder ??= new JpegEncoder(w, h);
                var encoder = e.Encoder;
                (e.Jpeg, e.Frame) = frames.Use((p, f) => (encoder.Encode(p, f), f));
                Encodes++;
            }
            return (e.Jpeg, e.Frame);
        }
        finally { _gate.Release(); }
    }
}
