namespace Pearl2.Services.Rtsp;

/// <summary>
/// Lock-free latency histogram: 1 µs buckets to 1 ms, then 100 µs buckets to 100 ms. Shared by a channel's
/// viewers (Interlocked adds); swapped out whole at each stats interval.
/// </summary>
public sealed class LatencyHistogram
{
    const int Fine = 1000, Coarse = 990;
    readonly long[] _buckets = new long[Fine + Coarse + 1];

    public void Record(long microseconds)
    {
        int i = microseconds < Fine ? (int)Math.Max(0, microseconds)
            : microseconds < 100_000 ? Fine + (int)((microseconds - Fine) / 100)
            : Fine + Coarse;
        Interlocked.Increment(ref _buckets[i]);
    }

    public long Count
    {
        get { long n = 0; foreach (var b in _buckets) n += Volatile.Read(in b); return n; }
    }

    /// <summary>The value (µs) at quantile q in 0..1, or -1 when empty.</summary>
    public long Quantile(double q)
    {
        long total = Count;
        if (total == 0) return -1;
        long target = (long)Math.Ceiling(q * total), seen = 0;
        for (int i = 0; i < _buckets.Length; i++)
        {
            seen += _buckets[i];
            if (seen >= Math.Max(1, target)) return i < Fine ? i : Fine + (long)(i - Fine) * 100;
        }
        return 100_000;
    }
}
