using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Pearl2.Host;

/// <summary>
/// One pearl2d per data directory: an exclusive flock(2) on <c>DATA-DIR/pearl2d.lock</c>, held for the life of the
/// process (the kernel drops it when the process dies, so a crash leaves nothing to clean up). The file holds the
/// owner's PID so that a refused second instance can say who has it.
/// </summary>
public sealed partial class DataDirectoryLock : IDisposable
{
    public const string FileName = "pearl2d.lock";
    const int LOCK_EX = 2, LOCK_NB = 4, EWOULDBLOCK = 11;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(SafeFileHandle fd, int operation);

    readonly FileStream _file;

    DataDirectoryLock(FileStream file) => _file = file;

    /// <summary>Takes the lock, or returns null with the PID of the process that holds it (0 when unknown).</summary>
    public static DataDirectoryLock? TryTake(string dataDir, out int holder)
    {
        holder = 0;
        var path = Path.Combine(dataDir, FileName);
        FileStream file;
        // .NET itself takes a shared flock on every FileStream it opens; a holder's exclusive one makes that fail.
        try { file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete); }
        catch (IOException) when (File.Exists(path))
        {
            holder = Holder(path);
            return null;
        }
        if (flock(file.SafeFileHandle, LOCK_EX | LOCK_NB) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            file.Dispose();
            holder = Holder(path);
            if (errno != EWOULDBLOCK) throw new IOException($"cannot lock {path}: errno {errno}");
            return null;
        }
        file.SetLength(0);
        var pid = System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId + "\n");
        file.Write(pid);
        file.Flush();
        return new DataDirectoryLock(file);
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint read(int fd, Span<byte> buffer, nint count);

    [LibraryImport("libc")]
    private static partial int close(int fd);

    /// <summary>The holder's PID, read with plain open(2): a FileStream would take a shared flock and be refused.</summary>
    static int Holder(string path)
    {
        int fd = open(path, 0);
        if (fd < 0) return 0;
        Span<byte> buf = stackalloc byte[32];
        nint n = read(fd, buf, buf.Length);
        close(fd);
        return n > 0 && int.TryParse(buf[..(int)n].Trim((byte)'\n'), out int pid) ? pid : 0;
    }

    public void Dispose() => _file.Dispose();
}
