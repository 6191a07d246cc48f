using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Pearl2.Services.Configuration;
using Pearl2.Services.Recording;

namespace Pearl2.Services.Upload;

/// <summary>What the uploader is doing: the target's state, the queue, the file in flight, the last error.</summary>
public sealed record UploadStatus(string State, string Protocol, int QueuedFiles, long QueuedBytes, string? File, long FileBytes, long FileSize,
    double BytesPerSecond, string? LastError, long Uploaded, long Failed);

/// <summary>One transfer of one file to the server; how it ends says whether to go on, retry later, or stop.</summary>
public interface IUploadTransport : IAsyncDisposable
{
    /// <summary>The size of a remote file, or null when there is none.</summary>
    Task<long?> SizeAsync(string path, CancellationToken ct);
    Task MakeDirectoriesAsync(string dir, CancellationToken ct);
    /// <summary>Sends the local file from <paramref name="offset"/> on (the server's partial file is that long).</summary>
    Task UploadAsync(Stream local, string path, long offset, Func<long, Task> progress, CancellationToken ct);
    Task RenameAsync(string from, string to, CancellationToken ct);
    Task DeleteAsync(string path, CancellationToken ct);
}

/// <summary>
/// Automatic file upload: every recording the library reports finished is queued (journal + the file's
/// <c>.upload-pending</c> marker, so space making never deletes it) and sent to the configured server, once, in order.
/// Each file goes under a temporary name (<c>NAME.part</c>) in its folder (made as needed), resuming from the server's
/// partial file when there is one; when the server's size equals ours it is renamed, and only then counted done (and,
/// if set, deleted here). A file already there whole under its final name counts as done (the upload before a power
/// cut had finished). Failures are retried with exponential backoff (2 s doubling to 5 min, ±20 % jitter); a refused
/// login or certificate stops the target with that error until the settings change.
/// </summary>
public sealed class Uploader : IAsyncDisposable
{
    readonly RecordingLibrary _library;
    readonly UploadQueue _queue;
    readonly string _serial;
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly Func<UploadConfig, CancellationToken, Task<IUploadTransport>> _connect;
    readonly string _transferLog;
    readonly object _lock = new();
    UploadConfig _config;
    CancellationTokenSource _run = new();
    Task _worker = Task.CompletedTask;
    readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    string _state = "idle";
    string? _file, _lastError;
    long _fileBytes, _fileSize, _uploaded, _failed;
    double _rate;

    public Uploader(UploadConfig config, RecordingLibrary library, string dataDir, string serial, ILogger log, TimeProvider time,
        Func<UploadConfig, CancellationToken, Task<IUploadTransport>>? connect = null)
    {
        _config = config; _library = library; _serial = serial; _log = log; _time = time;
        _connect = connect ?? ((c, ct) => UploadTransports.ConnectAsync(c, dataDir,
            pinned => log.LogWarning("upload.host_key_pinned host_key=\"{Key}\" reason=\"first connection to this server: its key is trusted from now on\"", pinned), ct));
        string dir = Path.Combine(dataDir, "upload");
        _queue = new UploadQueue(dir);
        _transferLog = Path.Combine(dir, "transfers.log");
        library.FileFinished += OnFileFinished;
    }

    public UploadQueue Queue => _queue;

    public void Start()
    {
        // Files queued before a restart: those still on disk go on; a marker without a queue entry (the journal lost,
        // or queued by an older firmware) is queued again.
        foreach (var name in _queue.Pending)
            if (_library.PathOf(name) is not { } p || !File.Exists(p)) { _queue.Remove(name); _log.LogWarning("upload.dropped file={File} reason=\"no longer on disk\"", name); }
        foreach (var e in _library.List())
            if (e.FileState == RecordingFileState.UploadPending) _queue.Add(e.Name);
        _log.LogInformation("upload.started enabled={Enabled} protocol={Protocol} host={Host} queued={Queued}", _config.Enabled, _config.Protocol, _config.Host, _queue.Count);
        StartWorker();
    }

    void StartWorker()
    {
        _run = new CancellationTokenSource();
        var ct = _run.Token;
        _worker = Task.Run(() => WorkAsync(ct));
    }

    /// <summary>New settings: the transfer in flight stops (it resumes under the new ones), a stopped target starts again.</summary>
    public async Task ReconfigureAsync(UploadConfig next)
    {
        _run.Cancel();
        try { await _worker; } catch (OperationCanceledException) { }
        lock (_lock) { _config = next; _state = next.Enabled ? "idle" : "disabled"; _lastError = null; }
        _log.LogInformation("upload.reconfigured enabled={Enabled} protocol={Protocol} host={Host}", next.Enabled, next.Protocol, next.Host);
        StartWorker();
        _wake.Release();
    }

    void OnFileFinished(RecordingFinished f)
    {
        UploadConfig config;
        lock (_lock) config = _config;
        if (!config.Enabled) return;
        try
        {
            // The marker first: from now on space making leaves the file alone.
            File.WriteAllText(f.Path + RecordingLibrary.UploadPendingSuffix, "");
            if (_queue.Add(f.Name)) _log.LogInformation("upload.queued file={File} bytes={Bytes} queued={Queued}", f.Name, f.Bytes, _queue.Count);
            _wake.Release();
        }
        catch (IOException e) { _log.LogError("upload.queue_failed file={File} error=\"{Error}\"", f.Name, e.Message); }
    }

    /// <summary>The target refused our login or certificate: nothing moves until the settings change.</summary>
    public bool Failing { get { lock (_lock) return _config.Enabled && _state == "failed"; } }

    public UploadStatus Status()
    {
        var pending = _queue.Pending;
        long bytes = pending.Sum(n => _library.PathOf(n) is { } p && File.Exists(p) ? new FileInfo(p).Length : 0);
        lock (_lock)
            return new UploadStatus(_config.Enabled ? _state : "disabled", _config.Protocol, pending.Count, bytes, _file, _fileBytes, _fileSize, _rate, _lastError, _uploaded, _failed);
    }

    async Task WorkAsync(CancellationToken ct)
    {
        int attempt = 0;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                UploadConfig config;
                lock (_lock) config = _config;
                var next = config.Enabled ? _queue.Pending.FirstOrDefault() : null;
                if (next is null)
                {
                    Set("idle");
                    await _wake.WaitAsync(ct);
                    continue;
                }
                try
                {
                    await UploadOneAsync(config, next, ct);
                    attempt = 0;
                }
                catch (UploadRefusedException e)
                {
                    lock (_lock) { _state = "failed"; _lastError = e.Message; _failed++; }
                    _log.LogError("upload.refused host={Host} error=\"{Error}\" effect=\"uploads stop until the upload settings change\"", config.Host, e.Message);
                    Transfer(next, "refused", e.Message);
                    await Task.Delay(Timeout.Infinite, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // Whatever went wrong with this try (a reply we did not expect, a dropped connection, a local read
                    // error, a bug): logged, and tried again later; the worker itself never dies of it.
                    attempt++;
                    var wait = Backoff(attempt);
                    lock (_lock) { _state = "retrying"; _lastError = e.Message; }
                    _log.LogWarning("upload.retry file={File} attempt={Attempt} in_s={Seconds:F1} error=\"{Error}\"", next, attempt, wait.TotalSeconds,
                        e is UploadFailedException or IOException ? e.Message : $"{e.GetType().Name}: {e.Message}");
                    Transfer(next, "failed", e.Message);
                    await Task.Delay(wait, _time, ct);
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    /// <summary>2 s, doubling to 5 minutes, ±20 % so that many devices cut off together do not come back in step.</summary>
    public static TimeSpan Backoff(int attempt)
    {
        double s = Math.Min(300, 2 * Math.Pow(2, Math.Min(attempt - 1, 10)));
        return TimeSpan.FromSeconds(s * (0.8 + 0.4 * Random.Shared.NextDouble()));
    }

    void Set(string state) { lock (_lock) { _state = state; _file = null; _rate = 0; } }

    async Task UploadOneAsync(UploadConfig config, string name, CancellationToken ct)
    {
        if (_library.PathOf(name) is not { } path || !File.Exists(path))
        {
            _queue.Remove(name);
            _log.LogWarning("upload.dropped file={File} reason=\"no longer on disk\"", name);
            return;
        }
        string remote = RemotePathOf(config, name, _serial, RecordingLibrary.StartOf(name) ?? new DateTimeOffset(File.GetLastWriteTime(path)));
        string dir = remote.Contains('/') ? remote[..remote.LastIndexOf('/')] : "";
        string part = remote + ".part";
        await using var local = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
        long size = local.Length;
        lock (_lock) { _state = "connecting"; _file = name; _fileBytes = 0; _fileSize = size; _rate = 0; }
        await using var t = await _connect(config, ct);
        if (dir.Length > 0) await t.MakeDirectoriesAsync(dir, ct);
        // Already there whole (an upload that finished before a restart could say so): done, not sent twice.
        if (await t.SizeAsync(remote, ct) == size)
        {
            _log.LogInformation("upload.already_there file={File} remote={Remote} bytes={Bytes}", name, remote, size);
            Done(config, name, path, remote, size, 0, TimeSpan.Zero);
            return;
        }
        long offset = await t.SizeAsync(part, ct) is { } have && have <= size ? have : 0;
        if (offset > 0) _log.LogInformation("upload.resume file={File} from={Offset} of={Size}", name, offset, size);
        lock (_lock) { _state = "uploading"; _fileBytes = offset; }
        var started = _time.GetTimestamp();
        long limit = config.BandwidthKbps * 1000L / 8;
        await t.UploadAsync(local, part, offset, async sent =>
        {
            var elapsed = _time.GetElapsedTime(started);
            lock (_lock) { _fileBytes = sent; _rate = elapsed.TotalSeconds > 0 ? (sent - offset) / elapsed.TotalSeconds : 0; }
            if (limit > 0)
            {
                // Hold back until the bytes sent fit the limit.
                var due = TimeSpan.FromSeconds((double)(sent - offset) / limit) - elapsed;
                if (due > TimeSpan.FromMilliseconds(5)) await Task.Delay(due, _time, ct);
            }
        }, ct);
        // The server's size first, then the rename: a cut before this leaves a .part that the next try resumes or replaces.
        long? arrived = await t.SizeAsync(part, ct);
        if (arrived != size) throw new UploadFailedException($"{part}: the server has {arrived?.ToString(CultureInfo.InvariantCulture) ?? "no file"} bytes, not {size}");
        await t.RenameAsync(part, remote, ct);
        Done(config, name, path, remote, size, size - offset, _time.GetElapsedTime(started));
    }

    void Done(UploadConfig config, string name, string path, string remote, long size, long sent, TimeSpan took)
    {
        _queue.Remove(name);
        try { File.Delete(path + RecordingLibrary.UploadPendingSuffix); } catch (IOException) { }
        lock (_lock) { _uploaded++; _file = null; _lastError = null; }
        _log.LogInformation("upload.done file={File} remote={Remote} bytes={Bytes} sent={Sent} seconds={Seconds:F1} rate_kbps={Kbps:F0}", name, remote, size, sent,
            took.TotalSeconds, took.TotalSeconds > 0 ? sent * 8 / 1000.0 / took.TotalSeconds : 0);
        Transfer(name, "done", $"{remote} {size} bytes");
        if (config.DeleteAfterUpload && _library.Delete(name)) _log.LogInformation("upload.deleted_local file={File} reason=\"uploaded and its size checked\"", name);
    }

    /// <summary>The transfer log (DATA/upload/transfers.log): one line per outcome, kept below 1 MB (the older half dropped).</summary>
    void Transfer(string name, string outcome, string detail)
    {
        try
        {
            var fi = new FileInfo(_transferLog);
            if (fi.Exists && fi.Length > 1 << 20)
            {
                var lines = File.ReadAllLines(_transferLog);
                File.WriteAllLines(_transferLog, lines[(lines.Length / 2)..]);
            }
            File.AppendAllText(_transferLog, $"{_time.GetUtcNow():yyyy-MM-ddTHH:mm:ssZ} {outcome} {name} {detail.Replace('\n', ' ')}\n");
        }
        catch (IOException) { }
    }

    /// <summary>The remote path of a file: the template's fields filled in ({channel} is the part of the name before the date).</summary>
    public static string RemotePathOf(UploadConfig config, string name, string serial, DateTimeOffset start)
    {
        int cut = name.LastIndexOf('_');
        string channel = cut > 0 ? name[..cut] : "recordings";
        return config.RemotePath
            .Replace("{channel}", channel, StringComparison.Ordinal).Replace("{serial}", serial, StringComparison.Ordinal)
            .Replace("{date}", start.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("{yyyy}", start.ToString("yyyy", CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("{MM}", start.ToString("MM", CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("{dd}", start.ToString("dd", CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("{HH}", start.ToString("HH", CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("{file}", name, StringComparison.Ordinal).TrimStart('/');
    }

    public async ValueTask DisposeAsync()
    {
        _library.FileFinished -= OnFileFinished;
        _run.Cancel();
        try { await _worker; } catch (OperationCanceledException) { }
        _queue.Dispose();
    }
}

/// <summary>The transports by protocol.</summary>
public static class UploadTransports
{
    public static async Task<IUploadTransport> ConnectAsync(UploadConfig c, string dataDir, Action<string> hostKeyPinned, CancellationToken ct) => c.Protocol switch
    {
        "ftp" or "ftps" => new FtpTransport(await FtpClient.ConnectAsync(
            new FtpEndpoint(c.Host, c.EffectivePort, c.Username, c.Password, c.Protocol == "ftps", c.TlsPinSha256, TimeSpan.FromSeconds(c.TimeoutSeconds)), ct)),
        "sftp" => await SftpTransport.ConnectAsync(c, dataDir, hostKeyPinned, ct),
        _ => throw new UploadRefusedException($"protocol {c.Protocol} is not supported"),
    };

    sealed class FtpTransport(FtpClient ftp) : IUploadTransport
    {
        public Task<long?> SizeAsync(string path, CancellationToken ct) => ftp.SizeAsync(path, ct);
        public Task MakeDirectoriesAsync(string dir, CancellationToken ct) => ftp.MakeDirectoriesAsync(dir, ct);
        public Task UploadAsync(Stream local, string path, long offset, Func<long, Task> progress, CancellationToken ct) => ftp.UploadAsync(local, path, offset, progress, ct);
        public Task RenameAsync(string from, string to, CancellationToken ct) => ftp.RenameAsync(from, to, ct);
        public Task DeleteAsync(string path, CancellationToken ct) => ftp.DeleteAsync(path, ct);
        public ValueTask DisposeAsync() => ftp.DisposeAsync();
    }
}
