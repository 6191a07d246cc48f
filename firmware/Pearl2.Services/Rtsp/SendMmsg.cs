using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Pearl2.Services.Rtsp;

/// <summary>sendmmsg(2) (Linux, LP64 layouts): many datagrams, each with its own destination, in one system call, never blocking.</summary>
internal static unsafe partial class SendMmsg
{
    const int MSG_DONTWAIT = 0x40, EINTR = 4, EAGAIN = 11;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec { public byte* Base; public nuint Length; }

    [StructLayout(LayoutKind.Explicit, Size = 64)]
    public struct MMsgHdr
    {
        [FieldOffset(0)] public void* Name;
        [FieldOffset(8)] public uint NameLength;
        [FieldOffset(16)] public IoVec* Iov;
        [FieldOffset(24)] public nuint IovLength;
        [FieldOffset(32)] public void* Control;
        [FieldOffset(40)] public nuint ControlLength;
        [FieldOffset(48)] public int Flags;
        [FieldOffset(56)] public uint Length;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sendmmsg(nint fd, MMsgHdr* msgvec, uint vlen, int flags);

    /// <summary>
    /// Sends <paramref name="count"/> messages; returns how many the kernel took. A full socket buffer (EAGAIN) ends
    /// the batch (UDP loses the rest); an error that belongs to one destination (ICMP unreachable) skips that datagram.
    /// </summary>
    public static int Send(Socket socket, MMsgHdr* msgs, int count) => Send(socket, msgs, count, out _);

    /// <summary>The same, with the errno of the last message the kernel refused (0 if none).</summary>
    public static int Send(Socket socket, MMsgHdr* msgs, int count, out int refused)
    {
        refused = 0;
        bool added = false;
        socket.SafeHandle.DangerousAddRef(ref added);
        try
        {
            nint fd = socket.SafeHandle.DangerousGetHandle();
            int done = 0, skipped = 0;
            while (done < count)
            {
                int r = sendmmsg(fd, msgs + done, (uint)(count - done), MSG_DONTWAIT);
                if (r > 0) { done += r; continue; }
                int errno = Marshal.GetLastPInvokeError();
                if (errno == EINTR) continue;
                if (errno == EAGAIN) break;
                refused = errno;
                done++; skipped++;
            }
            return done - skipped;
        }
        finally { if (added) socket.SafeHandle.DangerousRelease(); }
    }
}
