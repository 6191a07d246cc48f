using System.Runtime.InteropServices;

namespace Pearl2.Media;

/// <summary>
/// The media path's threads run at nice -10: capture and encode (with the encoder's own workers), the recording
/// writer and the RTSP fan-out lanes. A unit then goes out as soon as it is published, whatever the admin panel,
/// uploads or log writing do at nice 0; and being equal among themselves, a thousand viewers' lanes cannot starve the
/// capture or the recording. Linux keeps a nice value per thread and a new thread inherits its creator's. Raising
/// needs CAP_SYS_NICE or an RLIMIT_NICE that allows it (the firmware's unit sets LimitNICE=-10); where neither is
/// there the threads stay at 0, as before. PEARL2_MEDIA_NICE=0 leaves them at 0 for measuring.
/// </summary>
public static partial class MediaThreads
{
    public const int Nice = -10;
    const int PrioProcess = 0;   // with a thread id, setpriority(2) sets that one thread
    /// <summary>False when PEARL2_MEDIA_NICE=0 asks the media threads to stay at nice 0.</summary>
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("PEARL2_MEDIA_NICE") != "0";

    /// <summary>Raises the calling thread to <see cref="Nice"/>; false where the process may not.</summary>
    public static bool Raise() => Enabled && setpriority(PrioProcess, gettid(), Nice) == 0;

    /// <summary>
    /// Runs <paramref name="open"/> raised and puts the caller back after: threads it starts (libx264's workers,
    /// started when the encoder opens) keep the raised value.
    /// </summary>
    public static T Raised<T>(Func<T> open)
    {
        int tid = gettid();
        int before = getpriority(PrioProcess, tid);
        bool raised = Raise();
        try { return open(); }
        finally { if (raised) setpriority(PrioProcess, tid, before); }
    }

    [LibraryImport("libc")] private static partial int gettid();
    [LibraryImport("libc")] private static partial int setpriority(int which, int who, int prio);
    [LibraryImport("libc")] private static partial int getpriority(int which, int who);
}
