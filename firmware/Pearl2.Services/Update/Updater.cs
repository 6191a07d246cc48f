using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Update;

namespace Pearl2.Services.Update;

/// <param name="UpSince">How long the system has been up when the updater starts: the confirm deadline runs from the
/// boot, so a firmware restarted by its watchdog during a try does not get a fresh deadline.</param>
public sealed record UpdaterOptions(Uri BaseUrl, string Board, FirmwareVersion Running, ECDsa PublicKey, TimeSpan Interval, TimeSpan ConfirmDeadline, string StateDirectory,
    TimeSpan UpSince = default);

public enum UpdatePhase { Idle, Checking, Downloading, Verifying, Switching, Confirming }

/// <summary>What the status command and the panel show.</summary>
public readonly record struct UpdateStatus(UpdatePhase Phase, string? Version, DownloadProgress? Progress, string? LastResult);

/// <summary>
/// The firmware updater: polls <c>&lt;base&gt;/&lt;board&gt;/manifest.json</c> (and its <c>.sig</c>) at the configured interval
/// with up to a tenth of it as random jitter, or at once on "check now"; refuses anything unsigned, for another board,
/// not newer, or known bad; fetches the signed chunk index and puts the image into the inactive slot chunk by chunk,
/// fetching only what the device does not have (<see cref="SlotDownloader"/>); reads it back against the signed
/// SHA-256; marks the slot to try once and reboots. On a boot into a try it waits for the firmware to be healthy
/// within the deadline and confirms, or reboots so the boot loader falls back. Each step is one log line; a refusal
/// or a failure leaves the running version as it is.
/// </summary>
public sealed class Updater : IAsyncDisposable
{
    readonly UpdaterOptions _o;
    readonly IBootControl _boot;
    readonly Func<string, ISlot> _slot;
    readonly HttpClient _http;
    readonly SlotDownloader _downloader;
    readonly TimeProvider _time;
    readonly ILogger _log;
    readonly SemaphoreSlim _one = new(1, 1);
    readonly CancellationTokenSource _stop = new();
    Task? _loop;
    volatile StatusBox _status = new(new UpdateStatus(UpdatePhase.Idle, null, null, null));
    sealed record StatusBox(UpdateStatus Value);

    public Updater(UpdaterOptions options, IBootControl boot, Func<string, ISlot> slot, HttpClient http, SlotDownloader downloader, TimeProvider time, ILogger log)
    {
        _o = options; _boot = boot; _slot = slot; _http = http; _downloader = downloader; _time = time; _log = log;
        Directory.CreateDirectory(options.StateDirectory);
    }

    public UpdateStatus Status => _status.Value;
    /// <summary>An index of 1 MiB chunks this large describes 29 GB: more than any slot.</summary>
    const int MaxIndexBytes = 1 << 20;

    /// <summary>Raised when the phase changes (the Status LED blinks fast while an update is under way).</summary>
    public event Action<UpdatePhase>? PhaseChanged;

    void Set(UpdatePhase phase, string? version = null, DownloadProgress? progress = null, string? result = null)
    {
        var before = _status.Value.Phase;
        _status = new(new UpdateStatus(phase, version, progress, result ?? _status.Value.LastResult));
        if (phase != before) PhaseChanged?.Invoke(phase);
    }

    /// <summary>Starts the poll loop (and, on a boot into a try, the confirmation).</summary>
    public void Start(Func<bool> healthy) => _loop = RunAsync(healthy);

    async Task RunAsync(Func<bool> healthy)
    {
        try
        {
            await ConfirmIfTryingAsync(healthy, _stop.Token);
            while (!_stop.IsCancellationRequested)
            {
                var jitter = TimeSpan.FromSeconds(Random.Shared.NextDouble() * _o.Interval.TotalSeconds / 10);
                await Task.Delay(_o.Interval + jitter, _time, _stop.Token);
                await CheckAsync(_stop.Token);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested) { }
    }

    /// <summary>On a boot into a try: confirm once healthy, or reboot (the boot loader then falls back) at the deadline.</summary>
    public async Task ConfirmIfTryingAsync(Func<bool> healthy, CancellationToken ct)
    {
        var s = _boot.Read();
        if (s.Trying != _boot.Booted || !s.TryBooted) return;
        Set(UpdatePhase.Confirming, _o.Running.ToString());
        _log.LogInformation("update.confirming version={Version} slot={Slot} deadline_s={Deadline}", _o.Running, _boot.Booted, _o.ConfirmDeadline.TotalSeconds);
        long start = _time.GetTimestamp();
        var deadline = _o.ConfirmDeadline - _o.UpSince;
        while (_time.GetElapsedTime(start) < deadline)
        {
            if (healthy())
            {
                _boot.Confirm();
                Set(UpdatePhase.Idle, _o.Running.ToString(), null, $"updated to {_o.Running}");
                _log.LogInformation("update.confirmed version={Version} slot={Slot} after_s={Seconds:F1}", _o.Running, _boot.Booted, (_o.UpSince + _time.GetElapsedTime(start)).TotalSeconds);
                return;
            }
            await Task.Delay(TimeSpan.FromSeconds(1), _time, ct);
        }
        _log.LogError("update.unhealthy version={Version} slot={Slot} deadline_s={Deadline} effect=\"rebooting; the boot loader goes back to slot {Active}\"",
            _o.Running, _boot.Booted, _o.ConfirmDeadline.TotalSeconds, s.Active);
        _boot.Reboot();
    }

    /// <summary>One check, now (the control command's "update check"); a check already running is waited for.</summary>
    /// <summary>Whether a check's answer is a failure (unreachable server, refusal, failed download) rather than "up to date" or an install.</summary>
    public static bool Failed(string result) =>
        result.StartsWith("check failed", StringComparison.Ordinal) || result.StartsWith("refused", StringComparison.Ordinal)
        || (result.StartsWith("download of", StringComparison.Ordinal) && result.Contains(" failed", StringComparison.Ordinal));

    public async Task<string> CheckAsync(CancellationToken ct)
    {
        await _one.WaitAsync(ct);
        try
        {
            var result = await CheckOnceAsync(ct);
            Set(UpdatePhase.Idle, result: result);
            return result;
        }
        finally { _one.Release(); }
    }

    async Task<string> CheckOnceAsync(CancellationToken ct)
    {
        Set(UpdatePhase.Checking);
        var url = new Uri(_o.BaseUrl, $"{_o.Board}/manifest.json");
        byte[] manifestBytes, signature;
        try
        {
            manifestBytes = await GetSmallAsync(url, UpdateManifest.MaxBytes, ct);
            signature = await GetSmallAsync(new Uri(url + ".sig"), 1024, ct);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or UpdateException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            _log.LogWarning("update.check_failed url={Url} reason=\"{Reason}\" running={Running}", url, e.Message, _o.Running);
            return $"check failed: {e.Message}";
        }
        if (!UpdateManifest.SignatureIsValid(manifestBytes, signature, _o.PublicKey))
            return Refuse("the manifest's signature does not verify with this device's key", null);
        UpdateManifest m;
        try { m = UpdateManifest.Parse(manifestBytes, url); }
        catch (ManifestException e) { return Refuse(e.Message, null); }
        var boot = _boot.Read();
        var bad = boot.Bad.Select(b => FirmwareVersion.TryParse(b, out var v) ? v : default).ToArray();
        if (m.Board == _o.Board && m.Version.CompareTo(_o.Running) == 0)
        {
            _log.LogInformation("update.none running={Running} offered={Offered}", _o.Running, m.Version);
            return $"up to date ({_o.Running})";
        }
        if (m.RefusalFor(_o.Board, _o.Running, bad) is { } why) return Refuse(why, m.Version);

        ChunkIndex index;
        try
        {
            var indexBytes = await GetSmallAsync(m.Index, MaxIndexBytes, ct);
            if (!CryptographicOperations.FixedTimeEquals(SHA256.HashData(indexBytes), m.IndexSha256))
                return Refuse($"the chunk index {m.Index} does not hash to the signed indexSha256", m.Version);
            index = ChunkIndex.Parse(indexBytes);
        }
        catch (ManifestException e) { return Refuse(e.Message, m.Version); }
        catch (Exception e) when (e is HttpRequestException or IOException or UpdateException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            _log.LogWarning("update.check_failed url={Url} reason=\"{Reason}\" running={Running}", m.Index, e.Message, _o.Running);
            return $"check failed: {e.Message}";
        }

        var target = BootLoader.Other(_boot.Booted);
        var slot = _slot(target);
        if (boot.Trying == target) _boot.ClearTry();   // the slot is about to change under a pending try
        Set(UpdatePhase.Downloading, m.Version.ToString());
        _log.LogInformation("update.downloading version={Version} slot={Slot} bytes={Size} payload_bytes={Payload} url={Url} notes=\"{Notes}\"",
            m.Version, target, m.Size, index.PayloadSize, m.Payload, m.Notes.ReplaceLineEndings(" "));
        int lastTenth = -1;
        long started = _time.GetTimestamp();
        try
        {
            var took = await _downloader.DownloadAsync(m, index, slot, _slot(_boot.Booted),
                p =>
                {
                    Set(UpdatePhase.Downloading, m.Version.ToString(), p);
                    if ((int)(p.Percent / 10) != lastTenth || p.Bytes == p.Total)
                    {
                        lastTenth = (int)(p.Percent / 10);
                        _log.LogInformation("update.progress version={Version} percent={Percent:F0} bytes={Bytes} total={Total} rate_kbps={Rate:F0} remaining_s={Remaining:F0}",
                            m.Version, p.Percent, p.Bytes, p.Total, p.BytesPerSecond * 8 / 1000, p.Remaining?.TotalSeconds ?? -1);
                    }
                }, ct);
            _log.LogInformation("update.downloaded version={Version} slot={Slot} kept={Kept} seeded={Seeded} zero={Zero} fetched={Fetched} wire_bytes={Wire} payload_bytes={Payload} image_bytes={Size} seconds={Seconds:F1}",
                m.Version, target, took.Kept, took.Seeded, took.Zero, took.Fetched, took.WireBytes, took.PayloadBytes, m.Size, _time.GetElapsedTime(started).TotalSeconds);
        }
        catch (UpdateRefusedException e) { return Refuse(e.Message, m.Version); }
        catch (Exception e) when (e is UpdateException or IOException or HttpRequestException)
        {
            _log.LogWarning("update.download_failed version={Version} reason=\"{Reason}\" running={Running} effect=\"what is in place is kept; the next check fetches the rest\"", m.Version, e.Message, _o.Running);
            return $"download of {m.Version} failed: {e.Message}";
        }

        Set(UpdatePhase.Verifying, m.Version.ToString());
        if (!await SlotDownloader.VerifyAsync(slot, m.Size, m.Sha256, ct))   // every chunk hashed: only a torn write gets here
            return Refuse($"slot {target} does not hash to the signed SHA-256 after writing", m.Version);
        Set(UpdatePhase.Switching, m.Version.ToString());
        _boot.MarkTryOnce(target, m.Version);
        _log.LogInformation("update.switching version={Version} slot={Slot} running={Running} effect=\"rebooting into slot {Slot} once\"", m.Version, target, _o.Running, target);
        _boot.Reboot();
        return $"installed {m.Version} in slot {target}; rebooting";
    }

    string Refuse(string reason, FirmwareVersion? version)
    {
        _log.LogWarning("update.refused version={Version} reason=\"{Reason}\" running={Running}", version?.ToString() ?? "-", reason, _o.Running);
        return $"refused: {reason}";
    }

    async Task<byte[]> GetSmallAsync(Uri url, int limit, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        using var response = await _http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        if (!response.IsSuccessStatusCode) throw new UpdateException($"{url} answered {(int)response.StatusCode} {response.ReasonPhrase}");
        if (response.Content.Headers.ContentLength > limit) throw new UpdateException($"{url} is larger than {limit} bytes");
        await using var body = await response.Content.ReadAsStreamAsync(timeout.Token);
        var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int n;
        while ((n = await body.ReadAsync(chunk, timeout.Token)) > 0)
        {
            if (buffer.Length + n > limit) throw new UpdateException($"{url} is larger than {limit} bytes");
            buffer.Write(chunk, 0, n);
        }
        return buffer.ToArray();
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_loop is not null) await _loop;
        _stop.Dispose();
    }
}
