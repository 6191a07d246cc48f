using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Pearl2.Media;
using Pearl2.Media.Encoders;
using Pearl2.Media.Sources;
using Pearl2.Services;
using Pearl2.Services.FrontPanel;
using Pearl2.Services.HttpLive;
using Pearl2.Services.Recording;
using Pearl2.Services.Rtsp;

namespace Pearl2.Host;

/// <summary>
/// The running appliance: one hub, encode pipeline, RTSP channel and listener, HTTP channel and recorder per
/// configured channel. A reload adds, removes or restarts channels one by one; the others never notice.
/// </summary>
/// <summary>A channel's port could not be bound; the message names the channel and the port.</summary>
public sealed class PortBindException(string message, Exception inner) : IOException(message, inner);

public sealed class Device : IAsyncDisposable, IPanelActions
{
    sealed record RunningChannel(ChannelConfig Config, ChannelHub Hub, EncodePipeline Pipeline, RtspChannel Rtsp, RtspListener Listener, HttpLiveChannel Live, ViewerPort LiveListener, Recorder Recorder);

    readonly BoardProfile _board;
    readonly int _offset;
    readonly ILoggerFactory _loggers;
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly List<RunningChannel> _channels = new();
    /// <summary>The channels as the panel, the control socket and status readers see them (replaced after every change).</summary>
    volatile RunningChannel[] _view = [];

    void Publish() => _view = _channels.ToArray();
    FirmwareConfig _config;
    readonly RecordingConfig _startedRecording;
    readonly UpdateConfig _startedUpdate;

    public Device(FirmwareConfig config, BoardProfile board, int portOffset, string dataDir, ILoggerFactory loggers, TimeProvider time)
    {
        _config = config; _board = board; _offset = portOffset; _loggers = loggers; _time = time;
        _startedRecording = config.Recording; _startedUpdate = config.Update;
        Auth = new ViewerAuth(time, ViewerAuth.DefaultNonceLifetime, new LoginThrottle(time, loggers.CreateLogger("Pearl2.Auth")));
        _log = loggers.CreateLogger("pearl2d");
        var rec = config.Recording;
        Library = new RecordingLibrary(new RecordingOptions
        {
            Directory = Path.GetFullPath(rec.Directory, dataDir),
            Format = rec.Format,
            RotateAfter = TimeSpan.FromSeconds(rec.RotateSeconds),
            RotateBytes = (long)rec.RotateMegabytes << 20,
            SpaceLimitBytes = (long)rec.SpaceLimitMegabytes << 20,
            MinFreeBytes = (long)rec.MinFreeMegabytes << 20,
        }, loggers.CreateLogger("Pearl2.Recording"), time);
        var limits = new ConnectionLimits(config.Rtsp.MaxConnectionsPerPort, config.Rtsp.MaxConnectionsPerHost);
        Rtsp = new RtspServer(new RtspOptions
        {
            SessionTimeoutSeconds = config.Rtsp.SessionTimeoutSeconds,
            StallTimeoutSeconds = config.Rtsp.StallTimeoutSeconds,
            MaxRtpPayload = config.Rtsp.MaxRtpPayload,
            ViewerQueueUnits = config.Rtsp.ViewerQueueUnits,
            StatsIntervalSeconds = config.Rtsp.StatsIntervalSeconds,
            UdpPortBase = config.Rtsp.UdpPortBase == 0 ? 0 : config.Rtsp.UdpPortBase + portOffset,
            Limits = limits,
        }, time, loggers.CreateLogger("Pearl2.Rtsp"), Auth);
        _http = new HttpLiveServer(loggers, time, config.Rtsp.ViewerQueueUnits, config.Rtsp.StallTimeoutSeconds, Auth) { Limits = limits };
    }

    public RtspServer Rtsp { get; }
    /// <summary>The one viewer login of every door (RTSP, HTTP): one nonce and token key.</summary>
    public ViewerAuth Auth { get; }
    public RecordingLibrary Library { get; }
    readonly HttpLiveServer _http;
    /// <summary>Set by the Stream button: null follows each channel's config, false stops and true starts streaming on all.</summary>
    bool? _streamingOverride;

    public int HttpPort(int index) => _config.Http.Port + _offset + index;

    public int RtspPort(int index) => _config.Rtsp.Port + _offset + index;

    /// <summary>The address other hosts reach this device at, for the stream.url lines.</summary>
    public Func<string> HostAddress { get; init; } = () => "127.0.0.1";

    /// <summary>One line per channel with every URL a viewer can open: at start, and again whenever the channel started or changed.</summary>
    void LogStreamUrl(int i)
    {
        var rc = _channels[i];
        var cc = rc.Config;
        string host = HostAddress();
        int port = rc.Rtsp.Port, http = rc.Live.Port;
        _log.LogInformation("stream.url channel={Channel} name=\"{Name}\" rtsp=rtsp://{Host}:{Port}/stream.sdp flv=http://{Host}:{HttpPort}/stream.flv ts=http://{Host}:{HttpPort}/stream.ts preview=http://{Host}:{HttpPort}/preview.jpg page=http://{Host}:{HttpPort}/ local=rtsp://127.0.0.1:{Port}/stream.sdp streaming={Streaming} login={Login} video={W}x{H}@{Fps} bitrate_kbps={Kbps}",
            i + 1, cc.Name, host, port, host, http, host, http, host, http, host, http, port, cc.Streaming ? "on" : "off", cc.Auth is null ? "none" : "required", cc.Video.Width, cc.Video.Height, cc.Video.Fps, cc.Video.BitrateKbps);
    }

    /// <summary>Starts every channel; any failure stops what started and is thrown (nothing runs half-configured).</summary>
    public async Task StartAsync()
    {
        Library.Recover();
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
        RtspChannel? rtsp = null;
        RtspListener? listener = null;
        try
        {
            rtsp = await Binding(index, $"RTSP/UDP ports {Rtsp.Options.UdpPortBase + 4 * index}-{Rtsp.Options.UdpPortBase + 4 * index + 3}", () => Task.FromResult(Rtsp.AddChannel(hub, RtspPort(index))));
            var live = HttpLiveServer.AddChannel(hub, HttpPort(index), cc.Audio.Enabled, cc.Audio.SampleRate, cc.Audio.Channels);
            live.Preview = new PreviewCache(pipeline.Preview, _time);
            live.RtspPort = RtspPort(index);
            Apply(rtsp, live, cc, _streamingOverride);
            pipeline.Start();
            listener = await Binding(index, $"RTSP port {RtspPort(index)}", () => RtspListener.BindAsync(Rtsp, rtsp, _loggers));
            var liveListener = await Binding(index, $"HTTP port {HttpPort(index)}", () => _http.ListenAsync(live));
            _log.LogInformation("channel.started channel={Channel} name=\"{Name}\" rtsp_port={Port} video={W}x{H}@{Fps} bitrate_kbps={Kbps} encoder={Encoder} source={Source} audio={Audio}",
                index + 1, cc.Name, rtsp.Port, v.Width, v.Height, v.Fps, v.BitrateKbps, v.Encoder ?? _board.H264Encoder, capture ?? "testpattern",
                !cc.Audio.Enabled ? "off" : pipeline.AudioDevice ?? "tone");
            var recorder = new Recorder(hub, Library, _time, _loggers.CreateLogger("Pearl2.Recording"));
            return new RunningChannel(cc, hub, pipeline, rtsp, listener, live, liveListener, recorder);
        }
        catch
        {
            if (listener is not null) await listener.DisposeAsync();
            if (rtsp is not null) Rtsp.RemoveChannel(rtsp);
            pipeline.Dispose();
            throw;
        }
    }

    /// <summary>Binds a channel's port; a failure names the channel and the port, whatever layer threw it.</summary>
    static async Task<T> Binding<T>(int index, string what, Func<Task<T>> bind)
    {
        try { return await bind(); }
        catch (Exception e) when (e is SocketException or Microsoft.AspNetCore.Connections.AddressInUseException or IOException)
        {
            bool inUse = e is Microsoft.AspNetCore.Connections.AddressInUseException || e is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse };
            bool denied = e is SocketException { SocketErrorCode: SocketError.AccessDenied } || e.InnerException is SocketException { SocketErrorCode: SocketError.AccessDenied };
            throw new PortBindException($"channel {index + 1}: {what}: " + (inUse ? "already in use by another program" : denied ? "needs privileges (use --port-offset N or auto)" : e.Message), e);
        }
    }

    /// <summary>
    /// Sets a channel's streaming switch and login on every door, then ends at once the sessions they no longer let in
    /// (viewers from other hosts when streaming goes off; those not under the new login when it changes).
    /// </summary>
    void Apply(RtspChannel rtsp, HttpLiveChannel live, ChannelConfig cc, bool? streamingOverride)
    {
        rtsp.StreamingEnabled = streamingOverride ?? cc.Streaming;
        live.StreamingEnabled = streamingOverride ?? cc.Streaming;
        var creds = cc.Auth is { } a ? new ViewerCredentials(a.Username, a.Password, a.AllowBasic) : null;
        rtsp.Credentials = creds;
        live.Credentials = creds;
        int cutRtsp = Rtsp.Revoke(rtsp), cutHttp = _http.Revoke(live);
        if (cutRtsp + cutHttp > 0)
            _log.LogInformation("viewers.revoked channel={Channel} rtsp={Rtsp} http={Http} streaming={Streaming} login={Login}",
                rtsp.Hub.Index + 1, cutRtsp, cutHttp, rtsp.StreamingEnabled ? "on" : "off", creds is null ? "none" : "required");
    }

    async Task StopChannelAsync(RunningChannel rc, string why)
    {
        await rc.Recorder.StopAsync();
        await rc.Listener.DisposeAsync();
        await rc.LiveListener.DisposeAsync();
        Rtsp.RemoveChannel(rc.Rtsp);
        rc.Pipeline.Dispose();
        _log.LogInformation("channel.stopped channel={Channel} reason=\"{Reason}\"", rc.Hub.Index + 1, why);
    }

    /// <summary>
    /// Applies a new (validated) config: streaming and logins at once; a channel whose picture or sound
    /// changed is restarted alone; channels are added or removed at the end of the list.
    /// </summary>
    public async Task ApplyAsync(FirmwareConfig next)
    {
        // What is read once at start says so on every reload that changes it, against what is running, not the last file.
        var started = _startedRecording;
        foreach (var (field, was, now) in new (string, object, object)[]
                 {
                     ("recording.directory", started.Directory, next.Recording.Directory), ("recording.format", started.Format, next.Recording.Format),
                     ("recording.rotateSeconds", started.RotateSeconds, next.Recording.RotateSeconds), ("recording.rotateMegabytes", started.RotateMegabytes, next.Recording.RotateMegabytes),
                     ("recording.spaceLimitMegabytes", started.SpaceLimitMegabytes, next.Recording.SpaceLimitMegabytes), ("recording.minFreeMegabytes", started.MinFreeMegabytes, next.Recording.MinFreeMegabytes),
                 })
            if (!was.Equals(now)) _log.LogWarning("config.needs_restart field={Field} running={Running} new={New} reason=\"recording settings apply at the next start\"", field, was, now);
        if (JsonSerializer.Serialize(next.Update, ConfigJson.Default.UpdateConfig) != JsonSerializer.Serialize(_startedUpdate, ConfigJson.Default.UpdateConfig))
            _log.LogWarning("config.needs_restart field=update reason=\"the update settings apply at the next start\"");
        if (JsonSerializer.Serialize(next.Rtsp, ConfigJson.Default.RtspConfig) != JsonSerializer.Serialize(_config.Rtsp, ConfigJson.Default.RtspConfig))
            _log.LogWarning("config.needs_restart field=rtsp reason=\"RTSP ports and limits change at the next start\"");
        if (next.Http.Port != _config.Http.Port)
            _log.LogWarning("config.needs_restart field=http.port reason=\"HTTP ports change at the next start\"");
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
                    bool recording = rc.Recorder.IsRecording;
                    await StopChannelAsync(rc, "picture or sound settings changed");
                    _channels[i] = await StartChannelAsync(i, nc);
                    Publish();
                    if (recording && nc.Record) _channels[i].Recorder.Start();
                    LogStreamUrl(i);
                }
                else
                {
                    bool changed = JsonSerializer.Serialize(nc, ConfigJson.Default.ChannelConfig) != JsonSerializer.Serialize(rc.Config, ConfigJson.Default.ChannelConfig);
                    Apply(rc.Rtsp, rc.Live, nc, _streamingOverride);
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

    public bool IsRecording => _view.Any(c => c.Recorder.IsRecording);
    public bool RecordingFault => !IsRecording && _view.Any(c => c.Recorder.State is RecorderState.DiskFull or RecorderState.Failed);
    public bool IsStreaming => _view.Any(c => c.Rtsp.StreamingEnabled);

    /// <summary>Starting until every channel runs; a channel whose encoder died makes it Fatal; the updater will add Updating.</summary>
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

    public PanelStatus Status => new(_view.Any(c => c.Pipeline.Fault is not null) ? DeviceState.Fatal : State, IsRecording, RecordingFault, IsStreaming);

    /// <summary>Record pressed: stops every recording if any runs, else starts every channel set to record.</summary>
    public async Task ToggleRecordingAsync(string by)
    {
        if (IsRecording)
        {
            _log.LogInformation("recording.toggle action=stop by={By}", by);
            await Task.WhenAll(_view.Select(c => c.Recorder.StopAsync()));
            return;
        }
        _log.LogInformation("recording.toggle action=start by={By}", by);
        var stamp = _time.GetLocalNow();   // one moment for every channel's first file name
        foreach (var c in _view) if (c.Config.Record) c.Recorder.Start(stamp);
    }

    /// <summary>Stream pressed: live streaming to other hosts goes off on every channel if any streams, else on for all.</summary>
    public void ToggleStreaming(string by)
    {
        _streamingOverride = !IsStreaming;
        foreach (var c in _view) Apply(c.Rtsp, c.Live, c.Config, _streamingOverride);
        _log.LogInformation("streaming.toggle streaming={Streaming} by={By}", _streamingOverride, by);
    }

    public void SplitRecording(string by)
    {
        _log.LogInformation("recording.split by={By}", by);
        var stamp = _time.GetLocalNow();
        foreach (var c in _view) c.Recorder.Split(stamp);
    }

    /// <summary>Each channel as the status display shows it.</summary>
    public IEnumerable<StatusDisplay.ChannelGlance> Glances => _view.Select((c, i) => new StatusDisplay.ChannelGlance(i + 1, c.Recorder.IsRecording,
        c.Recorder.State is RecorderState.DiskFull or RecorderState.Failed, c.Rtsp.StreamingEnabled, c.Rtsp.Credentials is not null));

    /// <summary>Who watches each channel now: RTSP (TCP, UDP, tunnel) and HTTP (FLV, TS) viewers.</summary>
    public IEnumerable<(int Index, int Rtsp, int Http)> Viewers => _view.Select((c, i) => (i, Rtsp.ViewerCount(c.Rtsp), _http.ViewerCount(i + 1)));

    public IEnumerable<(int Index, string Name, Recorder Recorder)> Recorders => _view.Select((c, i) => (i, c.Config.Name, c.Recorder));

    public IEnumerable<(int Index, ChannelConfig Config, int Port, int HttpPort)> Channels => _channels.Select((c, i) => (i, c.Config, c.Rtsp.Port, c.Live.Port));

    public async ValueTask DisposeAsync()
    {
        for (int i = _channels.Count - 1; i >= 0; i--) await StopChannelAsync(_channels[i], "stopping");
        _channels.Clear();
        Publish();
        await Rtsp.DisposeAsync();
    }
}
