namespace Pearl2.Services.Rtsp;

/// <summary>How many lanes a channel's fan-out has, and which one a new viewer joins: the same rule for TCP and UDP.</summary>
internal static class FanOutLanes
{
    /// <summary>
    /// Viewers a lane takes before the next lane is started: a few viewers cost less on one thread (one wake-up, and for
    /// UDP one hub reader and one sendmmsg batch, per unit) than spread over all; from here on a frame's fan-out is
    /// spread over the cores.
    /// </summary>
    internal const int Fill = 16;

    /// <summary>One lane per core, up to four (<paramref name="requested"/> when positive).</summary>
    public static int Count(int requested) => requested > 0 ? requested : Math.Clamp(Environment.ProcessorCount, 1, 4);

    /// <summary>
    /// The lane a new viewer joins, given each lane's viewers: the least loaded lane already running while it has room
    /// (fewer than <see cref="Fill"/>); else the least loaded of all, an idle one first.
    /// </summary>
    public static int Choose(ReadOnlySpan<int> viewers)
    {
        int best = -1;
        for (int i = 0; i < viewers.Length; i++)
            if (viewers[i] is > 0 and < Fill && (best < 0 || viewers[i] < viewers[best])) best = i;
        if (best >= 0) return best;
        best = 0;
        for (int i = 1; i < viewers.Length; i++)
            if (viewers[i] < viewers[best]) best = i;
        return best;
    }
}
