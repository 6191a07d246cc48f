using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Pearl2.Services.Configuration;
using Pearl2.Services.Recording;

namespace Pearl2.Services.Upload;

/// <summary>
/// What one upload target is doing: its state, the queue, the file in flight, the last error, and each file it knows of
/// (in flight, queued, and the last ones done or failed). <paramref name="Id"/> is "0" for the device's target and the
/// channel's number for a channel's own; <paramref name="Channel"/> names that channel.
/// </summary>
public sealed record UploadStatus(string Id, string? Channel, string State, string Protocol, string Host, int QueuedFiles, long QueuedBytes, string? File, long FileBytes,
    long FileSize, double BytesPerSecond, string? LastError, long Uploaded, long Failed, IReadOnlyList<UploadFileStatus> Files);

/// <summary>
/// One file as the upload sees it: "uploading" (<paramref name="Bytes"/> of <paramref name="Size"/> on the server),
/// "queued" (with the reason of its last failed try, if any), "done" or "failed" (given up: the target refused us).
/// </summary>
public sealed record UploadFileStatus(string Name, string State, long Bytes, long Size, double BytesPerSecond, string? Detail, DateTimeOffset? At);

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
/// One upload target: the files routed to it (<see cref="UploadService"/>) are queued (journal + the file's
/// <c>.upload-pending</c> marker, so space making never deletes it) and sent to its server, once, in order.
/// Each file goes under a temporary name (<c>NAME.part</c>) in its folder (made as needed), resuming from the server's
/// partial file when there is one; when the server's size equals ours it is renamed, and only then counted done (and,
/// if set, deleted here). A file already there whole under its final name counts as done (the upload before a power
/// cut had finished). Failures are retried with exponential backoff (2 s doubling to 1 min, ±20 % jitter); a refused
/// login or certificate stops the target with that error until the settings change.
/// </summary>
public sealed class Uploader : IAsyncDisposable
{
    /// <summary>How many finished files the status keeps (done or failed), newest first.</summary>
    const int RecentFiles = 20;
    readonly RecordingLibrary _library;
    readonly UploadQueue _queue;
    readonly LinkedList<UploadFileStatus> _recent = new();
    readonly Dictionary<string, string> _lastFailure = new();
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

    /// <param name="directory">Where its queue journal and transfer log live (DATA/upload for the device's target).</param>
    public Uploader(string id, string? channel, UploadConfig config, RecordingLibrary library, string directory, string dataDir, string serial, ILogger log, TimeProvider time,
        Func<UploadConfig, CancellationToken, Task<IUploadTransport>>? connect = null)
    {
        Id = id; Channel = channel;
        _config = config; _library = library; _serial = serial; _log = log; _time = time;
        _connect = connect ?? ((c, ct) => UploadTransports.ConnectAsync(c, dataDir,
            pinned => log.LogWarning("upload.host_key_pinned target={Target} host_key=\"{Key}\" reason=\"first connection to this server: its key is trusted from now on\"", id, pinned), ct));
        _queue = new UploadQueue(directory);
        _transferLog = Path.Combine(directory, "transfers.log");
    }

    /// <summary>"0" for the device's target, the channel's number for a channel's own.</summary>
    public string Id { get; set; }
    /// <summary>The channel whose files this target takes alone; null for the device's target (every other channel).</summary>
    public string? Channel { get; }
    public UploadQueue Queue => _queue;
    public UploadConfig Config { get { lock (_lock) return _config; } }

    /// <summary>Drops from the queue the files no longer on disk, logs the target, and starts sending.</summary>
    public void Start()
    {
        foreach (var name in _queue.Pending)
            if (_library.PathOf(name) is not { } p || !File.Exists(p)) { _queue.Remove(name); _log.LogWarning("upload.dropped target={Target} file={File} reason=\"no longer on disk\"", Id, name); }
        _log.LogInformation("upload.started target={Target} channel={Channel} enabled={Enabled} protocol={Protocol} host={Host} queued={Queued}",
            Id, Channel ?? "*", _config.Enabled, _config.Protocol, _config.Host, _queue.Count);
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
        _log.LogInformation("upload.reconfigured target={Target} enabled={Enabled} protocol={Protocol} host={Host}", Id, next.Enabled, next.Protocol, next.Host);
        StartWorker();
        _wake.Release();
    }

    /// <summary>Queues a finished file (when this target is on); false when it is off and the file is not for upload.</summary>
    public bool Enqueue(string path, long bytes)
    {
        UploadConfig config;
        lock (_lock) config = _config;
        if (!config.Enabled) return false;
        string name = Path.GetFileName(path);
        try
        {
            // The marker first: from now on space making leaves the file alone.
            File.WriteAllText(path + RecordingLibrary.UploadPendingSuffix, "");
            if (_queue.Add(name)) _log.LogInformation("upload.queued target={Target} file={File} bytes={Bytes} queued={Queued}", Id, name, bytes, _queue.Count);
            _wake.Release();
        }
        catch (IOException e) { _log.LogError("upload.queue_failed target={Target} file={File} error=\"{Error}\"", Id, name, e.Message); }
        return true;
    }

    /// <summary>Queues files that already carry their marker (another target's, or a queue lost), saying why.</summary>
    public void Adopt(IEnumerable<string> names, string reason)
    {
        foreach (var name in names)
            if (_queue.Add(name)) _log.LogInformation("upload.queued target={Target} file={File} reason=\"{Reason}\"", Id, name, reason);
        _wake.Release();
    }

    /// <summary>The target refused our login or certificate: nothing moves until the settings change.</summary>
    public bool Failing { get { lock (_lock) return _config.Enabled && _state == "failed"; } }

    public UploadStatus Status()
    {
        var pending = _queue.Pending;
        var sizes = pending.Select(n => _library.PathOf(n) is { } p && File.Exists(p) ? new FileInfo(p).Length : 0).ToList();
        lock (_lock)
        {
            var files = new List<UploadFileStatus>(pending.Count + _recent.Count);
            for (int i = 0; i < pending.Count; i++)
                files.Add(pending[i] == _file && _state == "uploading"
                    ? new UploadFileStatus(pending[i], "uploading", _fileBytes, _fileSize, _rate, null, null)
                    : new UploadFileStatus(pending[i], _state == "failed" && _lastFailure.ContainsKey(pending[i]) ? "failed" : "queued", 0, sizes[i], 0,
                        _lastFailure.GetValueOrDefault(pending[i]), null));
            files.AddRange(_recent);
            return new UploadStatus(Id, Channel, _config.Enabled ? _state : "disabled", _config.Protocol, _config.Host, pending.Count, sizes.Sum(), _file, _fileBytes, _fileSize,
                _rate, _lastError, _uploaded, _failed, files);
        }
    }

    /// <summary>A file left the queue, done or given up: it heads the recent list.</summary>
    void Finished(UploadFileStatus file)
    {
        lock (_lock)
        {
            _lastFailure.Remove(file.Name);
            _recent.AddFirst(file);
            while (_recent.Count > RecentFiles) _recent.RemoveLast();
        }
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
                    lock (_lock) { _state = "failed"; _lastError = e.Message; _failed++; _lastFailure[next] = e.Message; }
                    _log.LogError("upload.refused target={Target} host={Host} error=\"{Error}\" effect=\"uploads stop until the upload settings change\"", Id, config.Host, e.Message);
                    Transfer(next, "refused", e.Message);
                    await Task.Delay(Timeout.Infinite, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // Whatever went wrong with this try (a reply we did not expect, a dropped connection, a local read
                    // error, a bug): logged, and tried again later; the worker itself never dies of it.
                    attempt++;
                    var wait = Backoff(attempt);
                    lock (_lock) { _state = "retrying"; _lastError = e.Message; _lastFailure[next] = e.Message; }
                    _log.LogWarning("upload.retry target={Target} file={File} attempt={Attempt} in_s={Seconds:F1} error=\"{Error}\"", Id, next, attempt, wait.TotalSeconds,
                        e is UploadFailedException or IOException ? e.Message : $"{e.GetType().Name}: {e.Message}");
                    Transfer(next, "failed", e.Message);
                    await Task.Delay(wait, _time, ct);
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    /// <summary>
    /// 2 s, doubling to 1 minute, ±20 % so that many devices cut off together do not come back in step. One try a minute
    /// is no load on any server, and a server back from an outage gets the files within a minute.
    /// </summary>
    public static TimeSpan Backoff(int attempt)
    {
        double s = Math.Min(60, 2 * Math.Pow(2, Math.Min(attempt - 1, 10)));
        return TimeSpan.FromSeconds(s * (0.8 + 0.4 * Random.Shared.NextDouble()));
    }

    void Set(string state) { lock (_lock) { _state = state; _file = null; _rate = 0; } }

    async Task UploadOneAsync(UploadConfig config, string name, CancellationToken ct)
    {
        if (_library.PathOf(name) is not { } path || !File.Exists(path))
        {
            _queue.Remove(name);
            _log.LogWarning("upload.dropped target={Target} file={File} reason=\"no longer on disk\"", Id, name);
            Finished(new UploadFileStatus(name, "failed", 0, 0, 0, "deleted here before it was uploaded", _time.GetUtcNow()));
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
            _log.LogInformation("upload.already_there target={Target} file={File} remote={Remote} bytes={Bytes}", Id, name, remote, size);
            Done(config, name, path, remote, size, 0, TimeSpan.Zero);
            return;
        }
        long offset = await t.SizeAsync(part, ct) is { } have && have <= size ? have : 0;
        if (offset > 0) _log.LogInformation("upload.resume target={Target} file={File} from={Offset} of={Size}", Id, name, offset, size);
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
        double rate = took.TotalSeconds > 0 ? sent / took.TotalSeconds : 0;
        lock (_lock) { _uploaded++; _file = null; _lastError = null; }
        Finished(new UploadFileStatus(name, "done", size, size, rate, remote, _time.GetUtcNow()));
        _log.LogInformation("upload.done target={Target} file={File} remote={Remote} bytes={Bytes} sent={Sent} seconds={Seconds:F2} rate_kbps={Kbps:F0}", Id, name, remote, size, sent,
            took.TotalSeconds, rate * 8 / 1000);
        Transfer(name, "done", $"{remote} {size} bytes");
        if (config.DeleteAfterUpload && _library.Delete(name)) _log.LogInformation("upload.deleted_local target={Target} file={File} reason=\"uploaded and its size checked\"", Id, name);
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

    /// <summary>Stops sending (a transfer in flight ends; its .part stays for whoever sends the file next).</summary>
    public async Task StopAsync()
    {
        _run.Cancel();
        try { await _worker; } catch (OperationCanceledException) { }
    }

    public async ValueTask DisposeAsync()
    {
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
