using System.Runtime.InteropServices;

namespace Pearl2.Media;

/// <summary>
/// The media path's threads run above nice 0, so a unit goes out as soon as it is published whatever the admin panel,
/// uploads or log writing do. Two tiers:
/// <list type="bullet">
/// <item>nice -10 for the threads that work in short bursts and must run the moment they are woken: capture and the
/// encoder's calls (<c>video-chN</c>, <c>audio-chN</c>), the recording writer and the RTSP fan-out lanes. Being equal
/// among themselves, a thousand viewers' lanes cannot starve capture or the recording.</item>
/// <item>nice -5 for a software encoder's own workers (libx264's, started when the encoder opens), which hold whole
/// cores for milliseconds per frame. At the lanes' nice they made a woken lane wait for the end of their slice: on this
/// machine's 6.18 kernel a woken thread waited p99 1.2 ms beside two busy threads of its own nice, 40 µs beside two of
/// a lower one. Still above everything at 0. (Lowering the video and audio threads to -5 as well, though perf sched
/// once caught a lane waiting 1.7 ms behind the test tone's AAC encode, did not improve the bench's latency in A/B
/// runs; nor did having each lane wake the next instead of the publisher waking them all, which added a wake-up to
/// the second lane's viewers: p50 at 100 TCP viewers 0.54–0.59 ms against 0.35–0.41.)</item>
/// </list>
/// Linux keeps a nice value per thread and a new thread inherits its creator's. Raising needs CAP_SYS_NICE or an
/// RLIMIT_NICE that allows it (the firmware's unit sets LimitNICE=-10); where neither is there the threads stay at 0,
/// as before. PEARL2_MEDIA_NICE=0 leaves them at 0 for measuring.
/// </summary>
public static partial class MediaThreads
{
    public const int Nice = -10;
    /// <summary>A software encoder's workers: below the bursts of <see cref="Nice"/>, above nice 0.</summary>
    public const int EncoderWorkersNice = -5;
    const int PrioProcess = 0;   // with a thread id, setpriority(2) sets that one thread
    /// <summary>False when PEARL2_MEDIA_NICE=0 asks the media threads to stay at nice 0.</summary>
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("PEARL2_MEDIA_NICE") != "0";

    /// <summary>Raises the calling thread to <paramref name="nice"/>; false where the process may not.</summary>
    public static bool Raise(int nice = Nice) => Enabled && setpriority(PrioProcess, gettid(), nice) == 0;

    /// <summary>
    /// Runs <paramref name="open"/> at <paramref name="nice"/> and puts the caller back after: threads it starts
    /// (libx264's workers, started when the encoder opens) keep that value.
    /// </summary>
    public static T Raised<T>(int nice, Func<T> open)
    {
        int tid = gettid();
        int before = getpriority(PrioProcess, tid);
        bool raised = Raise(nice);
        try { return open(); }
        finally { if (raised) setpriority(PrioProcess, tid, before); }
    }

    [LibraryImport("libc")] private static partial int gettid();
    [LibraryImport("libc")] private static partial int setpriority(int which, int who, int prio);
    [LibraryImport("libc")] private static partial int getpriority(int which, int who);
}
