using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Pearl2.Media;
using Pearl2.Media.Encoders;
using Pearl2.Media.Sources;
using Pearl2.Services.Channels;
using Pearl2.Services.Configuration;
using Pearl2.Services.FrontPanel;
using Pearl2.Services.HttpLive;
using Pearl2.Services.Recording;
using Pearl2.Services.Rtsp;
using Pearl2.Services.Update;

namespace Pearl2.Services;

/// <summary>
/// The running appliance: per configured channel one hub and encode pipeline, with every registered
/// <see cref="IChannelService"/> attached to it (RTSP, HTTP live, the recorder, in that order). A config version
/// adds, removes or restarts channels one by one; the others never notice. It carries out every operator command
/// (<see cref="IDeviceControl"/>) and the panel's buttons, and builds the <see cref="DeviceStatus"/> they show.
/// </summary>
public sealed class Device : IAsyncDisposable, IPanelActions, IDeviceControl
{
    /// <summary>A channel that runs: its config, hub, encoder, and one attachment per service (in service order).</summary>
    sealed record RunningChannel(ChannelConfig Config, ChannelHub Hub, EncodePipeline Pipeline, IChannelAttachment[] Attachments)
    {
        public T? Get<T>() where T : class => Attachments.OfType<T>().FirstOrDefault();
        public Recorder? Recorder => Get<RecorderChannelService.Attachment>()?.Recorder;
    }

    readonly ConfigStore _store;
    readonly BoardProfile _board;
    readonly IChannelService[] _services;
    readonly ILoggerFactory _loggers;
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly List<RunningChannel> _channels = new();
    /// <summary>The channels as the panel, the control doors and status readers see them (replaced after every change).</summary>
    volatile RunningChannel[] _view = [];

    void Publish() => _view = _channels.ToArray();
    FirmwareConfig _config;
    readonly FirmwareConfig _started;

    public Device(ConfigStore store, BoardProfile board, IEnumerable<IChannelService> services, ILoggerFactory loggers, TimeProvider time)
    {
        _store = store; _board = board; _services = services.ToArray(); _loggers = loggers; _time = time;
        _config = _started = store.Current;
        _log = loggers.CreateLogger("pearl2d");
        store.SetApplier(ApplyAsync);
    }

    /// <summary>
    /// The appliance as it ships: one viewer login for every door, the recording library under the data directory,
    /// and RTSP, HTTP live and the recorder on every channel. A new per-channel service is one more line here.
    /// </summary>
    public static Device Create(ConfigStore store, BoardProfile board, string dataDir, ILoggerFactory loggers, TimeProvider time)
    {
        var config = store.Current;
        var auth = new ViewerAuth(time, ViewerAuth.DefaultNonceLifetime, new LoginThrottle(time, loggers.CreateLogger("Pearl2.Auth")));
        var rec = config.Recording;
        var library = new RecordingLibrary(new RecordingOptions
        {
            Directory = Path.GetFullPath(rec.Directory, dataDir),
            Format = rec.Format,
            RotateAfter = TimeSpan.FromSeconds(rec.RotateSeconds),
            RotateBytes = (long)rec.RotateMegabytes << 20,
            SpaceLimitBytes = (long)rec.SpaceLimitMegabytes << 20,
            MinFreeBytes = (long)rec.MinFreeMegabytes << 20,
        }, loggers.CreateLogger("Pearl2.Recording"), time);
        var limits = new ConnectionLimits(config.Rtsp.MaxConnectionsPerPort, config.Rtsp.MaxConnectionsPerHost);
        var rtsp = new RtspServer(new RtspOptions
        {
            SessionTimeoutSeconds = config.Rtsp.SessionTimeoutSeconds,
            StallTimeoutSeconds = config.Rtsp.StallTimeoutSeconds,
            MaxRtpPayload = config.Rtsp.MaxRtpPayload,
            ViewerQueueUnits = config.Rtsp.ViewerQueueUnits,
            StatsIntervalSeconds = config.Rtsp.StatsIntervalSeconds,
            Limits = limits,
        }, time, loggers.CreateLogger("Pearl2.Rtsp"), auth);
        var http = new HttpLiveServer(loggers, time, config.Rtsp.ViewerQueueUnits, config.Rtsp.StallTimeoutSeconds, auth) { Limits = limits };
        return new Device(store, board, [
            new RtspChannelService(rtsp, loggers),
            new HttpLiveChannelService(http, time),
            new RecorderChannelService(library, time, loggers),
            new Publishing.PublishChannelService(loggers, time),
        ], loggers, time) { Library = library, Auth = auth, OnDispose = rtsp.DisposeAsync };
    }

    /// <summary>The one viewer login every door to the channels' pictures asks (null on a device built without one).</summary>
    public ViewerAuth? Auth { get; init; }
    /// <summary>The recordings (null on a device built without a recorder service).</summary>
    public RecordingLibrary? Library { get; init; }
    /// <summary>What else stops with the device (the RTSP server's heartbeat), after the channels.</summary>
    Func<ValueTask>? OnDispose { get; init; }

    /// <summary>The address other hosts reach this device at, for the stream.url lines.</summary>
    public Func<string> HostAddress { get; set; } = () => "127.0.0.1";
    public string FirmwareVersion { get; set; } = "0.0.0";
    public string? Slot { get; set; }
    /// <summary>The updater, when updates are on (set once it started).</summary>
    public Updater? Updater { get; set; }
    /// <summary>The front panel's LEDs and display, when there is a panel.</summary>
    public Func<PanelView>? PanelView { get; set; }
    /// <summary>The automatic file upload's targets (the device's first), when there is an upload service.</summary>
    public Func<IReadOnlyList<Upload.UploadStatus>>? UploadView { get; set; }
    /// <summary>True while the upload target refuses us (the Status LED asks for attention); read on every panel tick.</summary>
    public Func<bool>? UploadFailing { get; set; }
    /// <summary>How this device restarts (the composition root knows: exec the boot loader, or ask the board's reboot unit).</summary>
    public Action<string>? RebootHandler { get; set; }

    /// <summary>Set by the Stream button: null follows each channel's config, false stops and true starts streaming on all.</summary>
    bool? _streamingOverride;

    /// <summary>One line per channel with every URL a viewer can open: at start, and again whenever the channel started or changed.</summary>
    void LogStreamUrl(int i)
    {
        var cc = _channels[i].Config;
        string host = HostAddress();
        int port = _store.Ports.RtspPort(i), http = _store.Ports.HttpPort(i);
        _log.LogInformation("stream.url channel={Channel} name=\"{Name}\" rtsp=rtsp://{Host}:{Port}/stream.sdp flv=http://{Host}:{HttpPort}/stream.flv ts=http://{Host}:{HttpPort}/stream.ts preview=http://{Host}:{HttpPort}/preview.jpg page=http://{Host}:{HttpPort}/ local=rtsp://127.0.0.1:{Port}/stream.sdp streaming={Streaming} login={Login} video={W}x{H}@{Fps} bitrate_kbps={Kbps}",
            i + 1, cc.Name, host, port, host, http, host, http, host, http, host, http, port, cc.Streaming ? "on" : "off", cc.Auth is null ? "none" : "required", cc.Video.Width, cc.Video.Height, cc.Video.Fps, cc.Video.BitrateKbps);
    }

    /// <summary>Starts every channel; any failure stops what started and is thrown (nothing runs half-configured).</summary>
    public async Task StartAsync()
    {
        Library?.Recover();
        try
        {
            for (int i = 0; i < _config.Channels.Count; i++) _channels.Add(await StartChannelAsync(i, _config.Channels[i]));
            Publish();
            for (int i = 0; i < _channels.Count; i++) LogStreamUrl(i);
            State = DeviceState.Ready;
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    ChannelAccess AccessOf(ChannelConfig cc) =>
        new(_streamingOverride ?? cc.Streaming, cc.Auth is { } a ? new ViewerCredentials(a.Username, a.Password, a.AllowBasic) : null);

    async Task<RunningChannel> StartChannelAsync(int index, ChannelConfig cc)
    {
        var hub = new ChannelHub(index, cc.Name, _time);
        var v = cc.Video;
        string? capture = cc.Source switch { "testpattern" => null, "capture" => _board.Capture == "testpattern" ? null : _board.Capture, var node => node };
        if (cc.Source == "capture" && capture is null)
            _log.LogWarning("channel.no_capture channel={Channel} board={Board} effect=\"test picture instead\"", index + 1, _board.Name);
        var pipeline = new EncodePipeline(hub, new PipelineOptions(
            new H264EncoderOptions(v.Encoder ?? _board.H264Encoder, v.Width, v.Height, v.Fps, v.BitrateKbps * 1000L, v.KeyFrameIntervalFrames, v.Preset, v.Tune, v.RateControl == "cbr"),
            cc.Audio.Enabled, cc.Audio.SampleRate, cc.Audio.Channels, cc.Audio.BitrateKbps * 1000L, capture,
            // The board's audio input goes with its capture device; the test picture keeps the test tone.
            cc.Source == "capture" && capture is not null && _board.Audio != "tone" ? _board.Audio : null), _time, _loggers.CreateLogger("Pearl2.Media"));
        var ctx = new ChannelContext { Index = index, Hub = hub, Pipeline = pipeline, Ports = _store.Ports };
        var attached = new List<IChannelAttachment>(_services.Length);
        try
        {
            var access = AccessOf(cc);
            foreach (var service in _services) attached.Add(await service.AttachAsync(ctx, cc, access));
            pipeline.Start();
            _log.LogInformation("channel.started channel={Channel} name=\"{Name}\" rtsp_port={Port} video={W}x{H}@{Fps} bitrate_kbps={Kbps} encoder={Encoder} source={Source} audio={Audio}",
                index + 1, cc.Name, _store.Ports.RtspPort(index), v.Width, v.Height, v.Fps, v.BitrateKbps, v.Encoder ?? _board.H264Encoder, capture ?? "testpattern",
                !cc.Audio.Enabled ? "off" : pipeline.AudioDevice ?? "tone");
            return new RunningChannel(cc, hub, pipeline, attached.ToArray());
        }
        catch
        {
            for (int k = attached.Count - 1; k >= 0; k--) await attached[k].DisposeAsync();
            pipeline.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Hands a channel's streaming switch and login to every service, which ends at once the sessions they no longer let
    /// in (viewers from other hosts when streaming goes off; those not under the new login when it changes).
    /// </summary>
    void Apply(RunningChannel rc, ChannelConfig cc)
    {
        var access = AccessOf(cc);
        var cut = new List<string>();
        int total = 0;
        for (int k = 0; k < rc.Attachments.Length; k++)
        {
            int n = rc.Attachments[k].Apply(cc, access);
            total += n;
            if (_services[k] is RtspChannelService or HttpLiveChannelService || n > 0) cut.Add($"{_services[k].Name}={n}");
        }
        if (total > 0)
            _log.LogInformation("viewers.revoked channel={Channel} {Cut} streaming={Streaming} login={Login}",
                rc.Hub.Index + 1, string.Join(' ', cut), access.Streaming ? "on" : "off", access.Credentials is null ? "none" : "required");
    }

    async Task StopChannelAsync(RunningChannel rc, string why)
    {
        // The recorder first (it finishes its file from the hub), the doors after it, the encoder last.
        for (int k = rc.Attachments.Length - 1; k >= 0; k--) await rc.Attachments[k].DisposeAsync();
        rc.Pipeline.Dispose();
        _log.LogInformation("channel.stopped channel={Channel} reason=\"{Reason}\"", rc.Hub.Index + 1, why);
    }

    /// <summary>
    /// Applies a new (validated) config, called by the config store: streaming and logins at once; a channel whose
    /// picture or sound changed is restarted alone; channels are added or removed at the end of the list.
    /// </summary>
    async Task ApplyAsync(FirmwareConfig next)
    {
        // What is read once at start says so on every reload that changes it, against what is running, not the last file.
        var started = _started.Recording;
        foreach (var (field, was, now) in new (string, object, object)[]
                 {
                     ("recording.directory", started.Directory, next.Recording.Directory), ("recording.format", started.Format, next.Recording.Format),
                     ("recording.rotateSeconds", started.RotateSeconds, next.Recording.RotateSeconds), ("recording.rotateMegabytes", started.RotateMegabytes, next.Recording.RotateMegabytes),
                     ("recording.spaceLimitMegabytes", started.SpaceLimitMegabytes, next.Recording.SpaceLimitMegabytes), ("recording.minFreeMegabytes", started.MinFreeMegabytes, next.Recording.MinFreeMegabytes),
                 })
            if (!was.Equals(now)) _log.LogWarning("config.needs_restart field={Field} running={Running} new={New} reason=\"recording settings apply at the next start\"", field, was, now);
        if (JsonSerializer.Serialize(next.Rtsp, ConfigJson.Default.RtspConfig) != JsonSerializer.Serialize(_config.Rtsp, ConfigJson.Default.RtspConfig))
            _log.LogWarning("config.needs_restart field=rtsp reason=\"RTSP ports and limits change at the next start\"");
        if (next.Http.Port != _config.Http.Port)
            _log.LogWarning("config.needs_restart field=http.port reason=\"HTTP ports change at the next start\"");
        if ((next.Admin.Enabled, next.Admin.Port, next.Admin.HttpsPort, next.Admin.SessionIdleMinutes, next.Admin.SessionMaxHours)
            != (_started.Admin.Enabled, _started.Admin.Port, _started.Admin.HttpsPort, _started.Admin.SessionIdleMinutes, _started.Admin.SessionMaxHours))
            _log.LogWarning("config.needs_restart field=admin reason=\"the admin panel's ports and session lengths change at the next start\"");
        while (_channels.Count > next.Channels.Count)
        {
            await StopChannelAsync(_channels[^1], "removed from the config");
            _channels.RemoveAt(_channels.Count - 1);
            Publish();
        }
        for (int i = 0; i < next.Channels.Count; i++)
        {
            try
            {
                var nc = next.Channels[i];
                if (i >= _channels.Count) { _channels.Add(await StartChannelAsync(i, nc)); Publish(); LogStreamUrl(i); continue; }
                var rc = _channels[i];
                if (MediaOf(rc.Config) != MediaOf(nc))
                {
                    bool recording = rc.Recorder?.IsRecording ?? false;
                    await StopChannelAsync(rc, "picture or sound settings changed");
                    _channels[i] = await StartChannelAsync(i, nc);
                    Publish();
                    if (recording && nc.Record) _channels[i].Recorder?.Start();
                    LogStreamUrl(i);
                }
                else
                {
                    bool changed = JsonSerializer.Serialize(nc, ConfigJson.Default.ChannelConfig) != JsonSerializer.Serialize(rc.Config, ConfigJson.Default.ChannelConfig);
                    Apply(rc, nc);
                    _channels[i] = rc with { Config = nc };
                    Publish();
                    if (changed) LogStreamUrl(i);
                }
                _log.LogInformation("config.applied channel={Channel} streaming={Streaming} auth={Auth}", i + 1, nc.Streaming, nc.Auth is not null);
            }
            catch (Exception e) when (e is EncoderException or SocketException or IOException)
            {
                _log.LogError("config.channel_failed channel={Channel} error=\"{Error}\"", i + 1, e.Message);
                if (i >= _channels.Count) break;
            }
        }
        _config = next;
    }

    static string MediaOf(ChannelConfig c) => c.Source + "|" + c.Name + "|" +
        JsonSerializer.Serialize(c.Video, ConfigJson.Default.VideoConfig) + JsonSerializer.Serialize(c.Audio, ConfigJson.Default.AudioConfig);

    public bool IsRecording => _view.Any(c => c.Recorder?.IsRecording ?? false);
    public bool RecordingFault => !IsRecording && _view.Any(c => c.Recorder?.State is RecorderState.DiskFull or RecorderState.Failed);
    public bool IsStreaming => _view.Any(c => AccessOf(c.Config).Streaming);

    /// <summary>Starting until every channel runs; a channel whose encoder died makes it Fatal; the updater adds Updating.</summary>
    public DeviceState State { get; set; } = DeviceState.Starting;

    long[] _watchdogFrames = [];

    /// <summary>
    /// The service watchdog's question, asked every half interval: did every channel encode a frame since the
    /// last call? (A lost signal still encodes the No signal picture; a wedged encoder or capture loop does not.)
    /// </summary>
    public bool ProducingFrames()
    {
        var now = _view.Select(c => c.Pipeline.FramesEncoded).ToArray();
        bool ok = now.Length != _watchdogFrames.Length || now.Zip(_watchdogFrames).All(p => p.First > p.Second);
        _watchdogFrames = now;
        return ok;
    }

    /// <summary>Whether the firmware is up and well enough to confirm an update: every channel runs and has encoded a second of frames.</summary>
    public bool Healthy => State == DeviceState.Ready && _view.Length > 0 && _view.All(c => c.Pipeline.Fault is null && c.Pipeline.FramesEncoded >= c.Config.Video.Fps);

    DeviceState EffectiveState => _view.Any(c => c.Pipeline.Fault is not null) ? DeviceState.Fatal : State;

    PanelStatus IPanelActions.Status => new(EffectiveState, IsRecording, RecordingFault, IsStreaming, SetupPending?.Invoke() ?? false,
        UploadFailing?.Invoke() ?? false);

    /// <summary>True while the admin panel waits for its first password (the display says so).</summary>
    public Func<bool>? SetupPending { get; set; }

    public int ChannelCount => _view.Length;

    /// <summary>When the longest-running recording started (the display's clock), or null.</summary>
    public DateTimeOffset? RecordingSince => _view.Select(c => c.Recorder?.StartedAt).Where(t => t is not null).Min();

    public DeviceStatus Status()
    {
        var view = _view;
        var channels = new ChannelStatus[view.Length];
        for (int i = 0; i < view.Length; i++)
        {
            var c = view[i];
            var b = new ChannelStatusBuilder();
            foreach (var a in c.Attachments) a.Report(b);
            var access = AccessOf(c.Config);
            var v = c.Config.Video;
            channels[i] = new ChannelStatus(i + 1, c.Config.Name, access.Streaming, access.Credentials is not null, _store.Ports.RtspPort(i), _store.Ports.HttpPort(i),
                v.Width, v.Height, v.Fps, v.BitrateKbps, c.Pipeline.FramesEncoded, b.Viewers, b.Recorder)
            {
                FramesSkipped = c.Pipeline.FramesSkipped, BytesSent = b.BytesSent, Publishers = b.Publishers,
                AudioPeak = c.Config.Audio.Enabled ? (c.Pipeline.AudioPeak(0), c.Pipeline.AudioPeak(1)) : (0f, 0f),
            };
        }
        DiskStatus? disk = null;
        if (Library is { } lib)
        {
            try
            {
                var drive = new DriveInfo(lib.Options.Directory);
                disk = new DiskStatus(lib.Options.Directory, drive.TotalSize, drive.AvailableFreeSpace, lib.List().Sum(e => e.Bytes));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { }
        }
        return new DeviceStatus(EffectiveState, IsRecording, RecordingFault, IsStreaming, channels, disk, FirmwareVersion, Slot,
            Updater?.Status, PanelView?.Invoke(), _store.Version) { Uploads = UploadView?.Invoke() ?? [] };
    }

    IEnumerable<RunningChannel> Selected(int? channel)
    {
        var view = _view;
        if (channel is null) return view;
        if (channel < 1 || channel > view.Length) throw new ArgumentException($"there is no channel {channel} (1 to {view.Length})");
        return [view[channel.Value - 1]];
    }

    public Task StartRecordingAsync(int? channel, string by)
    {
        var chosen = Selected(channel).ToList();
        _log.LogInformation("recording.toggle action=start by={By}{Channel}", by, channel is { } n ? $" channel={n}" : "");
        var stamp = _time.GetLocalNow();   // one moment for every channel's first file name
        // All channels: those set to record; one channel by number: that one, as asked.
        foreach (var c in chosen) if (channel is not null || c.Config.Record) c.Recorder?.Start(stamp);
        return Task.CompletedTask;
    }

    public async Task StopRecordingAsync(int? channel, string by)
    {
        var chosen = Selected(channel).ToList();
        _log.LogInformation("recording.toggle action=stop by={By}{Channel}", by, channel is { } n ? $" channel={n}" : "");
        await Task.WhenAll(chosen.Select(c => c.Recorder?.StopAsync() ?? Task.CompletedTask));
    }

    /// <summary>
    /// Starts or stops a channel's destinations (one by id, or all of them when <paramref name="publisher"/> is null);
    /// their statuses after the change. Throws <see cref="ArgumentException"/> for a channel or destination that is not there.
    /// </summary>
    public async Task<IReadOnlyList<Publishing.PublisherStatus>> ControlPublishersAsync(int channel, string? publisher, bool start, string by)
    {
        var c = Selected(channel).Single();
        var all = c.Get<Publishing.PublishChannelService.Attachment>()?.Publishers ?? [];
        var chosen = publisher is null ? all : all.Where(p => p.Id == publisher).ToList();
        if (publisher is not null && chosen.Count == 0)
            throw new ArgumentException($"channel {channel} has no publisher {publisher}{(all.Count == 0 ? " (it has none)" : $" (it has {string.Join(", ", all.Select(p => p.Id))})")}");
        foreach (var p in chosen)
            if (start) p.Start(by); else await p.StopAsync(by);
        return chosen.Select(p => p.Status()).ToList();
    }

    /// <summary>Record pressed: stops every recording if any runs, else starts every channel set to record.</summary>
    public Task ToggleRecordingAsync(string by) => IsRecording ? StopRecordingAsync(null, by) : StartRecordingAsync(null, by);

    /// <summary>Live streaming to other hosts on or off on every channel, until the next Stream press or command.</summary>
    public void SetStreaming(bool on, string by)
    {
        _streamingOverride = on;
        foreach (var c in _view) Apply(c, c.Config);
        _log.LogInformation("streaming.toggle streaming={Streaming} by={By}", _streamingOverride, by);
    }

    /// <summary>Stream pressed: live streaming to other hosts goes off on every channel if any streams, else on for all.</summary>
    public void ToggleStreaming(string by) => SetStreaming(!IsStreaming, by);

    public void SplitRecording(string by)
    {
        _log.LogInformation("recording.split by={By}", by);
        var stamp = _time.GetLocalNow();
        foreach (var c in _view) c.Recorder?.Split(stamp);
    }

    public async Task<string> CheckForUpdateAsync(CancellationToken ct)
    {
        if (Updater is not { } u) throw new InvalidOperationException("updates are off (no update.url in the config, or no A/B boot control)");
        var result = await u.CheckAsync(ct);
        // A failed or refused check is an error answer, so the command exits non-zero.
        return (Updater.Failed(result) ? "error: update " : "") + result;
    }

    public void Reboot(string by)
    {
        if (RebootHandler is not { } reboot) throw new InvalidOperationException("this device cannot restart itself (no boot control)");
        _log.LogInformation("device.reboot by={By}", by);
        reboot(by);
    }

    /// <summary>How this device switches off (the composition root knows).</summary>
    public Action<string>? ShutdownHandler { get; set; }

    public void Shutdown(string by)
    {
        if (ShutdownHandler is not { } off) throw new InvalidOperationException("this device cannot switch itself off");
        _log.LogInformation("device.shutdown by={By}", by);
        off(by);
    }

    public async Task<byte[]?> PreviewAsync(int channel, int? width)
    {
        var c = Selected(channel).Single();
        if (c.Get<HttpLiveChannelService.Attachment>()?.Channel.Preview is not { } preview) return null;
        return (await preview.GetAsync(width))?.Jpeg;
    }

    public Task<ConfigChange> ApplyConfigAsync(FirmwareConfig next, string by)
    {
        _log.LogInformation("config.change by={By}", by);
        return _store.ApplyAsync(next);
    }

    /// <summary>Each channel as the status display shows it.</summary>
    public IEnumerable<StatusDisplay.ChannelGlance> Glances => _view.Select((c, i) => new StatusDisplay.ChannelGlance(i + 1, c.Recorder?.IsRecording ?? false,
        c.Recorder?.State is RecorderState.DiskFull or RecorderState.Failed, AccessOf(c.Config).Streaming, c.Config.Auth is not null));

    public async ValueTask DisposeAsync()
    {
        for (int i = _channels.Count - 1; i >= 0; i--) await StopChannelAsync(_channels[i], "stopping");
        _channels.Clear();
        Publish();
        if (OnDispose is { } d) await d();
    }
}
