using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Pearl2.Services.Configuration;
using Pearl2.Services.Recording;

namespace Pearl2.Services.Upload;

/// <summary>
/// Automatic file upload, every target: the device's (<c>upload</c> in the config, id "0") takes the files of every
/// channel without a target of its own; a channel with <c>upload</c> set (<c>channels[i].upload</c>) sends its files
/// there alone (or nowhere, when that target is off). Each finished recording goes to the target that covers its
/// channel at the moment it finished; the file is known by its channel's safe name, which starts its file name, so
/// files recovered after a crash find their target too. Each target keeps its own queue journal: DATA/upload for the
/// device's, DATA/upload/channel-NAME for a channel's. New settings apply at once: a changed target restarts its
/// transfer, a new one starts, and the files queued for a removed one go to the target that covers their channel now.
/// </summary>
public sealed class UploadService : IAsyncDisposable
{
    readonly RecordingLibrary _library;
    readonly string _dataDir, _serial;
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly Func<UploadConfig, CancellationToken, Task<IUploadTransport>>? _connect;
    readonly SemaphoreSlim _turn = new(1, 1);
    readonly object _lock = new();
    /// <summary>By channel safe name; "" is the device's target.</summary>
    Dictionary<string, Uploader> _targets = new(StringComparer.Ordinal);

    public UploadService(FirmwareConfig config, RecordingLibrary library, string dataDir, string serial, ILogger log, TimeProvider time,
        Func<UploadConfig, CancellationToken, Task<IUploadTransport>>? connect = null)
    {
        _library = library; _dataDir = dataDir; _serial = serial; _log = log; _time = time; _connect = connect;
        foreach (var (key, id, target) in Wanted(config)) _targets[key] = New(key, id, target);
        // Subscribed before the library recovers files a crash left open, so that those are queued like any other.
        library.FileFinished += OnFileFinished;
    }

    /// <summary>The targets a config asks for: the device's, then each channel's own (keyed by its safe name).</summary>
    static IEnumerable<(string Key, string Id, UploadConfig Config)> Wanted(FirmwareConfig config)
    {
        yield return ("", "0", config.Upload);
        for (int i = 0; i < config.Channels.Count; i++)
            if (config.Channels[i].Upload is { } own)
                yield return (RecordingLibrary.SafeName(config.Channels[i].Name), (i + 1).ToString(CultureInfo.InvariantCulture), own);
    }

    Uploader New(string key, string id, UploadConfig config) => new(id, key.Length == 0 ? null : key, config, _library,
        key.Length == 0 ? Path.Combine(_dataDir, "upload") : Path.Combine(_dataDir, "upload", "channel-" + key), _dataDir, _serial, _log, _time, _connect);

    /// <summary>The target that takes a file now: its channel's own, else the device's.</summary>
    Uploader TargetOf(string name)
    {
        int cut = name.LastIndexOf('_');
        string channel = cut > 0 ? name[..cut] : "";
        lock (_lock) return channel.Length > 0 && _targets.TryGetValue(channel, out var own) ? own : _targets[""];
    }

    /// <summary>
    /// Starts every target. A file with a marker that no queue holds (a journal lost, or written by an older firmware)
    /// is queued again with the target that covers it now.
    /// </summary>
    public void Start()
    {
        List<Uploader> targets;
        lock (_lock) targets = _targets.Values.ToList();
        var queued = targets.SelectMany(t => t.Queue.Pending).ToHashSet(StringComparer.Ordinal);
        foreach (var e in _library.List())
            if (e.FileState == RecordingFileState.UploadPending && !queued.Contains(e.Name)) TargetOf(e.Name).Adopt([e.Name], "marked for upload but in no queue (a journal lost)");
        foreach (var t in targets) t.Start();
    }

    void OnFileFinished(RecordingFinished f)
    {
        var target = TargetOf(f.Name);
        if (!target.Enqueue(f.Path, f.Bytes))
            _log.LogDebug("upload.skipped target={Target} file={File} reason=\"that target is off\"", target.Id, f.Name);
    }

    /// <summary>Every target's state and files, the device's first.</summary>
    public IReadOnlyList<UploadStatus> Status()
    {
        List<Uploader> targets;
        lock (_lock) targets = _targets.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => t.Value).ToList();
        return targets.Select(t => t.Status()).ToList();
    }

    /// <summary>Some target refuses our login, key or certificate: the Status LED asks for attention.</summary>
    public bool Failing { get { lock (_lock) return _targets.Values.Any(t => t.Failing); } }

    /// <summary>New settings: each target whose settings changed restarts, new ones start, removed ones hand their files on.</summary>
    public async Task ReconfigureAsync(FirmwareConfig next)
    {
        await _turn.WaitAsync();
        try
        {
            var wanted = Wanted(next).ToList();
            Dictionary<string, Uploader> before;
            lock (_lock) before = new Dictionary<string, Uploader>(_targets, StringComparer.Ordinal);
            var after = new Dictionary<string, Uploader>(StringComparer.Ordinal);
            var changed = new List<(Uploader Target, UploadConfig Config)>();
            var started = new List<Uploader>();
            foreach (var (key, id, config) in wanted)
            {
                if (before.TryGetValue(key, out var t))
                {
                    t.Id = id;
                    if (Json(t.Config) != Json(config)) changed.Add((t, config));
                    after[key] = t;
                }
                else { after[key] = New(key, id, config); started.Add(after[key]); }
            }
            var removed = before.Where(b => !after.ContainsKey(b.Key)).Select(b => b.Value).ToList();
            lock (_lock) _targets = after;
            foreach (var t in started) t.Start();
            foreach (var (t, config) in changed) await t.ReconfigureAsync(config);
            foreach (var t in removed)
            {
                // Stopped first (no transfer of these files in flight), queued with their new target, then taken off the
                // old journal: a cut in between leaves a file queued twice, never lost.
                await t.StopAsync();
                var files = t.Queue.Pending;
                foreach (var group in files.GroupBy(TargetOf)) group.Key.Adopt(group, $"the own target of its channel (AFU {t.Id}) was removed");
                foreach (var name in files) t.Queue.Remove(name);
                await t.DisposeAsync();
                _log.LogInformation("upload.target_removed target={Target} channel={Channel} handed_on={Files}", t.Id, t.Channel, files.Count);
            }
        }
        finally { _turn.Release(); }
    }

    static string Json(UploadConfig c) => JsonSerializer.Serialize(c, ConfigJson.Default.UploadConfig);

    public async ValueTask DisposeAsync()
    {
        _library.FileFinished -= OnFileFinished;
        List<Uploader> targets;
        lock (_lock) targets = _targets.Values.ToList();
        foreach (var t in targets) await t.DisposeAsync();
    }
}
