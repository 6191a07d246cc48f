using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Pearl2.Media.V4l2;

/// <summary>What capture and mem2mem need of a V4L2 device node: ioctls, buffer mapping and waiting. A fake one stands in for tests.</summary>
public interface IV4l2Device : IDisposable
{
    string Path { get; }
    /// <summary>Issues one ioctl; returns 0 or the errno.</summary>
    int Ioctl<T>(uint request, ref T arg) where T : unmanaged;
    nint Map(int length, long offset);
    void Unmap(nint address, int length);
    /// <summary>Waits for a buffer (readable) or an event (priority); false on timeout.</summary>
    bool Wait(int timeoutMs, out bool readable, out bool eventPending);
}

public static class Errno
{
    public const int ENOENT = 2, EINTR = 4, EIO = 5, EAGAIN = 11, EBUSY = 16, EINVAL = 22, ENOTTY = 25, EPIPE = 32, ENODATA = 61, ENOLINK = 67, ERANGE = 34, ENOLCK = 37;
}

/// <summary>A V4L2 device node through libc (open, ioctl, mmap, poll), bound with [LibraryImport].</summary>
public sealed unsafe partial class V4l2Device : IV4l2Device
{
    const int O_RDWR = 2, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
    const int PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1;
    const short POLLIN = 1, POLLPRI = 2;

    readonly SafeFileHandle _fd;

    V4l2Device(string path, SafeFileHandle fd) { Path = path; _fd = fd; }

    public string Path { get; }

    public static V4l2Device Open(string path)
    {
        int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) throw new IOException($"cannot open {path}: {Marshal.GetLastPInvokeErrorMessage()}");
        return new V4l2Device(path, new SafeFileHandle(fd, ownsHandle: true));
    }

    public int Ioctl<T>(uint request, ref T arg) where T : unmanaged
    {
        fixed (T* p = &arg)
        {
            while (true)
            {
                if (ioctl((int)_fd.DangerousGetHandle(), request, p) == 0) return 0;
                int e = Marshal.GetLastPInvokeError();
                if (e != Errno.EINTR) return e;
            }
        }
    }

    public nint Map(int length, long offset)
    {
        nint a = mmap(0, (nuint)length, PROT_READ | PROT_WRITE, MAP_SHARED, (int)_fd.DangerousGetHandle(), offset);
        if (a == -1) throw new IOException($"mmap of {Path} failed: {Marshal.GetLastPInvokeErrorMessage()}");
        return a;
    }

    public void Unmap(nint address, int length) => munmap(address, (nuint)length);

    public bool Wait(int timeoutMs, out bool readable, out bool eventPending)
    {
        var p = new PollFd { Fd = (int)_fd.DangerousGetHandle(), Events = POLLIN | POLLPRI };
        int n = poll(&p, 1, timeoutMs);
        readable = (p.Revents & POLLIN) != 0;
        eventPending = (p.Revents & POLLPRI) != 0;
        return n > 0;
    }

    public void Dispose() => _fd.Dispose();

    [StructLayout(LayoutKind.Sequential)]
    struct PollFd { public int Fd; public short Events; public short Revents; }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)] private static partial int open(string path, int flags);
    [LibraryImport("libc", SetLastError = true)] private static partial int ioctl(int fd, nuint request, void* arg);
    [LibraryImport("libc", SetLastError = true)] private static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);
    [LibraryImport("libc")] private static partial int munmap(nint addr, nuint length);
    [LibraryImport("libc", SetLastError = true)] private static partial int poll(PollFd* fds, nuint count, int timeoutMs);
}
