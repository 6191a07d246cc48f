using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using Pearl2.Formats.Mp4;
using Pearl2.Formats.Recording;
using Pearl2.Formats.Ts;

namespace Pearl2.Services.Recording;

public sealed class RecordingOptions
{
    public required string Directory { get; init; }
    public string Format { get; init; } = "mp4";
    public TimeSpan RotateAfter { get; init; } = TimeSpan.FromMinutes(30);
    public long RotateBytes { get; init; } = 500L << 20;
    /// <summary>Most bytes all recordings may take together; 0 = only the filesystem's free space limits them.</summary>
    public long SpaceLimitBytes { get; init; }
    /// <summary>Free space always left on the filesystem.</summary>
    public long MinFreeBytes { get; init; } = 100L << 20;
    /// <summary>How far a recorder may fall behind the encoder (a stalled card) before it skips to the next key frame.</summary>
    public TimeSpan QueueTime { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>Where a recording file is in its life.</summary>
public enum RecordingFileState { Recording, UploadPending, Recovered, Complete }

/// <summary>How a file's recording ended: its last write went out as planned, or something ended it early.</summary>
public enum RecordingEnd { Finished, DiskFull, WriteFailed, Stopped, Recovered }

/// <summary>
/// A recording file is complete and will not change again: raised once per file, when its recorder closed it (rotation,
/// stop, disk full, a failed write) or, for a file a crash left open, when the next start repaired it. The upload queue
/// subscribes to it. <paramref name="Channel"/> is null for recovered files (the crash took that knowledge with it).
/// </summary>
public sealed record RecordingFinished(string Path, int? Channel, DateTimeOffset? Start, TimeSpan? Duration, long Bytes, RecordingEnd How)
{
    public string Name => System.IO.Path.GetFileName(Path);
}

/// <summary>A recording as the operator sees it: <paramref name="Started"/> from its name, <paramref name="Duration"/> when known.</summary>
public sealed record RecordingEntry(string Name, long Bytes, DateTime Modified, RecordingFileState FileState, DateTimeOffset? Started = null, TimeSpan? Duration = null)
{
    /// <summary>The state in the operator's words ("recording", "upload-pending", "recovered", "complete").</summary>
    public string State => FileState switch
    {
        RecordingFileState.Recording => "recording",
        RecordingFileState.UploadPending => "upload-pending",
        RecordingFileState.Recovered => "recovered",
        _ => "complete",
    };
}

/// <summary>
/// The recordings directory: names, the space policy and crash recovery. A file being written has a marker in
/// <c>.open/</c> until it is finished, so after a crash or a power cut the next start finds it and cuts it back to
/// its last whole fragment. A file with a <c>&lt;name&gt;.upload-pending</c> marker beside it waits for upload and is
/// never deleted to make room.
/// </summary>
public sealed class RecordingLibrary
{
    public const string UploadPendingSuffix = ".upload-pending";
    readonly object _lock = new();
    readonly ILogger _log;
    readonly HashSet<string> _open = new(StringComparer.Ordinal);
    readonly HashSet<string> _recovered = new(StringComparer.Ordinal);
    /// <summary>When each file of this run was closed: one another channel closed just now is never deleted to make room.</summary>
    readonly Dictionary<string, long> _closedAt = new(StringComparer.Ordinal);
    /// <summary>The channel that made each file of this run: a channel's own loop recording may take its own latest file.</summary>
    readonly Dictionary<string, string> _ownerOf = new(StringComparer.Ordinal);
    /// <summary>Files whose recorder stopped because the disk was full: what is left of that recording, kept.</summary>
    readonly HashSet<string> _keep = new(StringComparer.Ordinal);
    /// <summary>A file another channel closed less than this long ago is not deleted to make room.</summary>
    public static readonly TimeSpan JustClosed = TimeSpan.FromSeconds(60);
    readonly string _markers;
    long _total;

    readonly TimeProvider _time;

    public RecordingLibrary(RecordingOptions options, ILogger log, TimeProvider? time = null)
    {
        Options = options;
        _log = log;
        _time = time ?? TimeProvider.System;
        Directory.CreateDirectory(options.Directory);
        _markers = Path.Combine(options.Directory, ".open");
        Directory.CreateDirectory(_markers);
    }

    public RecordingOptions Options { get; }
    public string DirectoryPath => Options.Directory;

    public static bool IsRecording(string name) =>
        name.EndsWith(".mp4", StringComparison.Ordinal) || name.EndsWith(".ts", StringComparison.Ordinal);

    /// <summary>Finds files a crash left open, makes each playable, and counts the space recordings use.</summary>
    public void Recover()
    {
        foreach (var marker in Directory.GetFiles(_markers))
        {
            string name = Path.GetFileName(marker);
            string path = Path.Combine(Options.Directory, name);
            try
            {
                if (!File.Exists(path)) { File.Delete(marker); continue; }
                long before = new FileInfo(path).Length;
                long kept = RecordingRepair.Repair(path);
                if (kept == 0)
                {
                    File.Delete(path);
                    _log.LogWarning("recording.recovery_dropped file={File} bytes={Bytes} reason=\"no complete fragment\"", name, before);
                }
                else
                {
                    lock (_lock) _recovered.Add(name);
                    _log.LogWarning("recording.recovered file={File} bytes={Bytes} cut_bytes={Cut} reason=\"not finished before the last stop (crash or power cut)\"", name, kept, before - kept);
                    TimeSpan? duration;
                    lock (_lock) duration = DurationOf(new FileInfo(path));
                    Finished(new RecordingFinished(path, null, StartOf(name), duration, kept, RecordingEnd.Recovered));
                }
                File.Delete(marker);
            }
            catch (IOException e) { _log.LogError("recording.recovery_failed file={File} error=\"{Error}\"", name, e.Message); }
        }
        lock (_lock) _total = List().Sum(e => e.Bytes);
    }

    /// <summary>A new file's path, <c>&lt;channel&gt;_&lt;YYYYMMDD-HHMMSS&gt;.&lt;ext&gt;</c>, made unique; its open marker is written first.</summary>
    public string Create(string channel, DateTimeOffset now, string extension)
    {
        var safe = SafeName(channel);
        string stem = $"{safe}_{now:yyyyMMdd-HHmmss}";
        lock (_lock)
        {
            string name = $"{stem}.{extension}";
            for (int i = 2; File.Exists(Path.Combine(Options.Directory, name)) || _open.Contains(name); i++) name = $"{stem}-{i}.{extension}";
            _open.Add(name);
            _ownerOf[name] = channel;
            File.WriteAllBytes(Path.Combine(_markers, name), []);
            return Path.Combine(Options.Directory, name);
        }
    }

    /// <summary>A channel's name as its files start (<c>&lt;safe&gt;_</c>): letters, digits and '-', anything else '_'.</summary>
    public static string SafeName(string channel) => new(channel.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' ? c : '_').ToArray());

    /// <summary>The full path of recording <paramref name="name"/> when it is one of the listed recordings, else null (no other path can be named).</summary>
    public string? PathOf(string name) =>
        List().Any(e => e.Name == name) ? Path.Combine(Options.Directory, name) : null;

    /// <summary>Deletes a finished recording (an operator's choice): false when there is no such recording; refused while it is written.</summary>
    public bool Delete(string name)
    {
        lock (_lock)
        {
            var entry = List().FirstOrDefault(e => e.Name == name);
            if (entry is null) return false;
            if (entry.FileState == RecordingFileState.Recording) throw new InvalidOperationException($"{name} is being recorded: stop the recorder first");
            File.Delete(Path.Combine(Options.Directory, name));
            File.Delete(Path.Combine(Options.Directory, name) + UploadPendingSuffix);
            _recovered.Remove(name);
            _closedAt.Remove(name);
            _ownerOf.Remove(name);
            _keep.Remove(name);
            _total -= entry.Bytes;
        }
        _log.LogWarning("recording.deleted file={File} reason=\"deleted by an operator\"", name);
        return true;
    }

    /// <summary>
    /// The file is finished (or given up): it no longer needs recovery. <paramref name="stoppedForSpace"/>: its recorder
    /// stopped because the disk was full, so it is the end of a recording and is never deleted to make room.
    /// </summary>
    public void Closed(string path, bool stoppedForSpace = false)
    {
        string name = Path.GetFileName(path);
        lock (_lock)
        {
            _open.Remove(name);
            _closedAt[name] = _time.GetTimestamp();
            if (stoppedForSpace) _keep.Add(name);
        }
        try { File.Delete(Path.Combine(_markers, name)); }
        catch (IOException e) { _log.LogError("recording.marker_failed file={File} error=\"{Error}\"", name, e.Message); }
    }

    /// <summary>Raised once per complete file (see <see cref="RecordingFinished"/>); handlers run on the writer's thread and must be quick.</summary>
    public event Action<RecordingFinished>? FileFinished;

    internal void Finished(RecordingFinished file)
    {
        try { FileFinished?.Invoke(file); }
        catch (Exception e) { _log.LogError("recording.finished_handler_failed file={File} error=\"{Error}\"", file.Name, e.Message); }
    }

    /// <summary>The file was given back in part (cut after a failed write).</summary>
    public void Released(long bytes) { lock (_lock) _total -= bytes; }

    /// <summary>
    /// Makes room for <paramref name="bytes"/> more: while the space limit or the free-space floor would be crossed,
    /// deletes the oldest finished recording that does not wait for upload. False when nothing more may go.
    /// <paramref name="forFile"/> is the file the room is for: its channel's own files may go however recent (loop
    /// recording), another channel's only once closed for <see cref="JustClosed"/>.
    /// </summary>
    public bool Reserve(long bytes, string? forFile = null)
    {
        lock (_lock)
        {
            string? owner = forFile is null ? null : _ownerOf.GetValueOrDefault(Path.GetFileName(forFile));
            while (true)
            {
                long free = FreeBytes();
                bool underLimit = Options.SpaceLimitBytes == 0 || _total + bytes <= Options.SpaceLimitBytes;
                if (!underLimit)
                {
                    // The count is only a count: files removed by hand are not in it. Measure before deleting or refusing.
                    // (What is reserved but not yet written is at most one write per recorder.)
                    long measured = List().Sum(e => e.Bytes);
                    if (measured < _total) _total = measured;
                    underLimit = _total + bytes <= Options.SpaceLimitBytes;
                }
                bool enoughFree = free - bytes >= Options.MinFreeBytes;
                if (underLimit && enoughFree) { _total += bytes; return true; }
                long now = _time.GetTimestamp();
                var victim = List().Where(e => e.FileState is RecordingFileState.Complete or RecordingFileState.Recovered && !_keep.Contains(e.Name)
                        && !(_closedAt.TryGetValue(e.Name, out long closed) && _time.GetElapsedTime(closed, now) < JustClosed
                             && (owner is null || _ownerOf.GetValueOrDefault(e.Name) != owner)))
                    .OrderBy(e => e.Modified).FirstOrDefault();
                if (victim is null)
                {
                    _log.LogError("recording.no_space need_bytes={Need} free_bytes={Free} used_bytes={Used} limit_bytes={Limit} reason=\"{Reason}; nothing left that may be deleted (the rest is being written, was just finished, ended a recording at disk-full or waits for upload)\"",
                        bytes, free, _total, Options.SpaceLimitBytes, underLimit ? "filesystem nearly full" : "recording space limit reached");
                    return false;
                }
                try
                {
                    File.Delete(Path.Combine(Options.Directory, victim.Name));
                    _recovered.Remove(victim.Name);
                    _closedAt.Remove(victim.Name);
                    _ownerOf.Remove(victim.Name);
                    _total -= victim.Bytes;
                    _log.LogWarning("recording.deleted file={File} bytes={Bytes} reason=\"{Reason}\"", victim.Name, victim.Bytes,
                        underLimit ? "free space below the floor" : "recording space limit");
                }
                catch (IOException e)
                {
                    _log.LogError("recording.delete_failed file={File} error=\"{Error}\"", victim.Name, e.Message);
                    return false;
                }
            }
        }
    }

    long FreeBytes()
    {
        try { return new DriveInfo(Options.Directory).AvailableFreeSpace; }
        catch (IOException) { return long.MaxValue; }
    }

    /// <summary>The local time in a recording's name (<c>…_YYYYMMDD-HHMMSS[-N].ext</c>), as pearl2d named it.</summary>
    public static DateTimeOffset? StartOf(string name)
    {
        var m = System.Text.RegularExpressions.Regex.Match(name, @"_(\d{8}-\d{6})(-\d+)?\.[a-z0-9]+$");
        return m.Success && DateTime.TryParseExact(m.Groups[1].Value, "yyyyMMdd-HHmmss", System.Globalization.CultureInfo.InvariantCulture,
            System.Globalization.DateTimeStyles.AssumeLocal, out var t) ? new DateTimeOffset(t) : null;
    }

    readonly Dictionary<string, (long Length, TimeSpan? Duration)> _durations = new();

    /// <summary>A finished MP4's duration from its mvhd (read once per file size); unknown for TS and unfinished files.</summary>
    TimeSpan? DurationOf(FileInfo f)
    {
        if (!f.Name.EndsWith(".mp4", StringComparison.Ordinal)) return null;
        if (_durations.TryGetValue(f.Name, out var known) && known.Length == f.Length) return known.Duration;
        TimeSpan? d = null;
        try
        {
            using var s = f.OpenRead();
            var head = new byte[(int)Math.Min(f.Length, 64 * 1024)];
            s.ReadExactly(head);
            if (Pearl2.Formats.Mp4.FragmentedMp4.TryReadDuration(head, out var t)) d = t;
        }
        catch (IOException) { }
        _durations[f.Name] = (f.Length, d);
        return d;
    }

    public IReadOnlyList<RecordingEntry> List()
    {
        var list = new List<RecordingEntry>();
        lock (_lock)
        {
            foreach (var f in new DirectoryInfo(Options.Directory).EnumerateFiles())
            {
                if (!IsRecording(f.Name)) continue;
                var state = _open.Contains(f.Name) ? RecordingFileState.Recording
                    : File.Exists(f.FullName + UploadPendingSuffix) ? RecordingFileState.UploadPending
                    : _recovered.Contains(f.Name) ? RecordingFileState.Recovered : RecordingFileState.Complete;
                var started = StartOf(f.Name);
                TimeSpan? duration = state == RecordingFileState.Recording && started is { } st ? _time.GetLocalNow() - st : DurationOf(f);
                list.Add(new RecordingEntry(f.Name, f.Length, f.LastWriteTimeUtc, state, started, duration));
            }
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return list;
    }
}

/// <summary>Cuts an interrupted recording back to what plays: the last whole fMP4 fragment, or the last whole TS access unit.</summary>
public static class RecordingRepair
{
    /// <summary>Returns the bytes kept (0 when nothing playable is left).</summary>
    public static long Repair(string path)
    {
        using var h = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        long length = RandomAccess.GetLength(h);
        long keep = path.EndsWith(".ts", StringComparison.Ordinal) ? TsEnd(h, length) : Mp4End(h, length);
        if (keep < length) RandomAccess.SetLength(h, keep);
        RandomAccess.FlushToDisk(h);
        return keep;
    }

    // The walks themselves are wire formats (Pearl2.Formats.Recording); here is only the file they read.
    static long Mp4End(SafeFileHandle h, long length) => PlayablePrefix.Mp4((offset, into) => RandomAccess.Read(h, into, offset), length);

    static long TsEnd(SafeFileHandle h, long length) =>
        PlayablePrefix.Ts((offset, into) => RandomAccess.Read(h, into, offset), length, new byte[TsMuxer.PacketSize * 1024]);
}
