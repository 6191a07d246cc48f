using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using Pearl2.Media;

namespace Pearl2.Services.Recording;

enum WriteKind { Create, Append, Finish }

/// <summary>One step for the writer thread; its buffer is reused from fragment to fragment.</summary>
sealed class WriteOp
{
    public WriteKind Kind;
    public string Path = "";
    public byte[] Buffer = BufferPool.Rent(256 << 10);
    public int Length;
    public (long Offset, byte[] Bytes)[] Patches = [];
    public TimeSpan Duration;
    public TaskCompletionSource? Done;

    public Span<byte> Room(int size)
    {
        Pooled.Grow(ref Buffer, Length, Length + size);
        return Buffer.AsSpan(Length);
    }
}

/// <summary>The recorder's growing buffers come from and go back to the media buffer pool, so files and sessions reuse them.</summary>
static class Pooled
{
    public static void Grow(ref byte[] buffer, int used, int need)
    {
        if (buffer.Length >= need) return;
        var next = BufferPool.Rent(Math.Max(buffer.Length * 2, need));
        buffer.AsSpan(0, used).CopyTo(next);
        BufferPool.Return(buffer);
        buffer = next;
    }
}

/// <summary>
/// Writes one recorder's files on its own thread, so disk latency never reaches the hub: every fragment is one
/// write then fdatasync (a power cut loses at most the fragment in flight), after the library has made room for it.
/// When room cannot be made, or a write fails, the file is cut back to its last whole fragment and closed, and
/// <see cref="Failure"/> says why.
/// </summary>
sealed class RecordingWriter : IDisposable
{
    /// <summary>A fragment on its way to disk, one queued, one being filled: memory stays at about three fragments (3 s).</summary>
    const int Slots = 3;
    readonly RecordingLibrary _library;
    readonly ILogger _log;
    readonly BlockingCollection<WriteOp> _work = new(Slots + 1);
    readonly ConcurrentQueue<WriteOp> _free = new();
    readonly SemaphoreSlim _slots = new(Slots, Slots);
    readonly Thread _thread;
    SafeFileHandle? _file;
    string _path = "";
    long _length, _mediaBytes;

    readonly int _channel;

    public RecordingWriter(RecordingLibrary library, int channel, ILogger log)
    {
        _library = library; _log = log; _channel = channel;
        for (int i = 0; i < Slots; i++) _free.Enqueue(new WriteOp());
        _thread = new Thread(Run) { IsBackground = true, Name = $"rec-ch{channel}" };
        _thread.Start();
    }

    /// <summary>Why the writer gave up ("disk_full", "write_failed"); null while all is well.</summary>
    public volatile string? Failure;
    public long BytesWritten;

    /// <summary>A free op; waits (without blocking a thread) while all are queued for a slow disk.</summary>
    public async ValueTask<WriteOp> RentAsync(WriteKind kind)
    {
        await _slots.WaitAsync();
        _free.TryDequeue(out var op);
        op!.Kind = kind; op.Length = 0; op.Patches = []; op.Done = null;
        return op;
    }

    public void Submit(WriteOp op) => _work.Add(op);

    void Run()
    {
        MediaThreads.Raise();   // viewers' fan-out lanes run raised too: they must not hold up the recording
        foreach (var op in _work.GetConsumingEnumerable())
        {
            // Whatever goes wrong, the thread lives on and frees the slot, so the recorder never waits forever.
            try { Execute(op); }
            catch (Exception e)
            {
                Fail("write_failed", e.Message);
            }
            finally
            {
                op.Done?.TrySetResult();
                _free.Enqueue(op);
                _slots.Release();
            }
        }
    }

    void Execute(WriteOp op)
    {
        switch (op.Kind)
        {
            case WriteKind.Create:
                if (Failure is not null || !_library.Reserve(op.Length, op.Path))
                {
                    _library.Closed(op.Path); // never created: no marker may outlive it
                    Failure ??= "disk_full";
                    return;
                }
                _path = op.Path;
                _file = File.OpenHandle(_path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read);
                _length = 0;
                _mediaBytes = 0;
                _log.LogInformation("recording.file_started channel={Channel} file={File}", _channel, Path.GetFileName(_path));
                Append(op);
                break;
            case WriteKind.Append:
                if (_file is null || Failure is not null) return;
                if (!_library.Reserve(op.Length, _path)) { Fail("disk_full", null); return; }
                Append(op);
                _mediaBytes += op.Length;
                break;
            case WriteKind.Finish:
                if (_file is null) return;
                if (op.Length > 0 && _library.Reserve(op.Length, _path)) Append(op);
                if (_file is null) return; // the trailer's write failed: the file was cut back and closed
                foreach (var (offset, bytes) in op.Patches) RandomAccess.Write(_file, bytes, offset);
                RandomAccess.FlushToDisk(_file);
                Close("finished", op.Duration);
                break;
        }
    }

    void Append(WriteOp op)
    {
        try
        {
            RandomAccess.Write(_file!, op.Buffer.AsSpan(0, op.Length), _length);
            RandomAccess.FlushToDisk(_file!);
            _length += op.Length;
            Interlocked.Add(ref BytesWritten, op.Length);
        }
        catch (IOException e)
        {
            _library.Released(op.Length);
            Fail("write_failed", e.Message);
        }
    }

    /// <summary>Cuts the file back to its last whole fragment (what a failed write may have left beyond it) and closes it.</summary>
    void Fail(string why, string? error)
    {
        Failure ??= why;
        if (_file is null) return;
        try
        {
            if (RandomAccess.GetLength(_file) > _length) RandomAccess.SetLength(_file, _length);
            RandomAccess.FlushToDisk(_file);
        }
        catch (IOException) { }
        if (error is not null) _log.LogError("recording.write_failed file={File} error=\"{Error}\"", Path.GetFileName(_path), error);
        Close(why);
    }

    void Close(string how, TimeSpan? duration = null)
    {
        _file!.Dispose();
        _file = null;
        _library.Closed(_path, stoppedForSpace: how == "disk_full");
        if (_mediaBytes == 0)
        {
            // Nothing but a header: not a recording anyone could play.
            try { File.Delete(_path); } catch (IOException) { }
            _library.Released(_length);
            _log.LogWarning("recording.file_dropped file={File} reason=\"no media written ({How})\"", Path.GetFileName(_path), how);
        }
        else
        {
            _log.LogInformation("recording.file_closed file={File} bytes={Bytes} duration_s={Duration} how={How}", Path.GetFileName(_path), _length,
                duration is { } d ? d.TotalSeconds.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture) : "unknown", how);
            var end = how switch { "finished" => RecordingEnd.Finished, "disk_full" => RecordingEnd.DiskFull, "stopped" => RecordingEnd.Stopped, _ => RecordingEnd.WriteFailed };
            _library.Finished(new RecordingFinished(_path, _channel, RecordingLibrary.StartOf(Path.GetFileName(_path)), duration, _length, end));
        }
        _path = "";
    }

    public void Dispose()
    {
        _work.CompleteAdding();
        _thread.Join();
        if (_file is not null) Close("stopped");
        while (_free.TryDequeue(out var op)) { BufferPool.Return(op.Buffer); op.Buffer = []; }
    }
}
