using Pearl2.Media.Encoders;

namespace Pearl2.Media.Sources;

/// <summary>
/// The latest raw picture of a channel, for previews: the video thread copies one in at most every
/// <see cref="Interval"/>, and only while someone has asked in the last few seconds, so an unwatched
/// preview costs nothing.
/// </summary>
public sealed class PreviewFrames(TimeProvider time)
{
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(250);
    static readonly TimeSpan Demand = TimeSpan.FromSeconds(5);

    readonly object _lock = new();
    byte[] _y = [], _u = [], _v = [];
    long _lastWanted = long.MinValue / 2, _lastCopy = long.MinValue / 2;

    public int Width { get; private set; }
    public int Height { get; private set; }
    /// <summary>Frame number of the picture held; -1 until the first copy.</summary>
    public long Frame { get; private set; } = -1;
    public long CopiedAt => Volatile.Read(ref _lastCopy);

    public void Want() => Volatile.Write(ref _lastWanted, time.GetTimestamp());

    /// <summary>Called by the video thread after drawing each frame.</summary>
    public unsafe void Offer(in PicturePlanes p, long frame)
    {
        long now = time.GetTimestamp();
        if (time.GetElapsedTime(Volatile.Read(ref _lastWanted), now) > Demand || time.GetElapsedTime(_lastCopy, now) < Interval) return;
        lock (_lock)
        {
            int cw = p.Width / 2, ch = p.Height / 2;
            if (_y.Length != p.Width * p.Height) { _y = new byte[p.Width * p.Height]; _u = new byte[cw * ch]; _v = new byte[cw * ch]; }
            for (int r = 0; r < p.Height; r++) new ReadOnlySpan<byte>(p.Y + r * p.YStride, p.Width).CopyTo(_y.AsSpan(r * p.Width));
            for (int r = 0; r < ch; r++)
            {
                new ReadOnlySpan<byte>(p.U + r * p.CStride, cw).CopyTo(_u.AsSpan(r * cw));
                new ReadOnlySpan<byte>(p.V + r * p.CStride, cw).CopyTo(_v.AsSpan(r * cw));
            }
            Width = p.Width; Height = p.Height; Frame = frame;
            Volatile.Write(ref _lastCopy, now);
        }
    }

    /// <summary>Runs <paramref name="use"/> with the held picture (under the lock: keep it short).</summary>
    public unsafe T Use<T>(Func<PicturePlanes, long, T> use)
    {
        lock (_lock)
        {
            fixed (byte* y = _y, u = _u, v = _v)
                return use(new PicturePlanes(y, u, v, Width, Width / 2, Width, Height), Frame);
        }
    }
}
