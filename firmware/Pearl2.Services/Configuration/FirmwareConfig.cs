using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using System.Text.Json.Serialization;

namespace Pearl2.Services.Configuration;

/// <summary>The one configuration file (JSON). Every field has a default; see README "Configuration".</summary>
public sealed class FirmwareConfig
{
    public DeviceConfig Device { get; set; } = new();
    public List<ChannelConfig> Channels { get; set; } =
    [
        new() { Name = "Channel 1" },
        new() { Name = "Channel 2", Video = new VideoConfig { Width = 640, Height = 360, BitrateKbps = 800 }, Audio = new AudioConfig { BitrateKbps = 96 } },
    ];
    public RtspConfig Rtsp { get; set; } = new();
    public HttpConfig Http { get; set; } = new();
    public RecordingConfig Recording { get; set; } = new();
    public UpdateConfig Update { get; set; } = new();
    public AdminConfig Admin { get; set; } = new();
    public DiscoveryConfig Discovery { get; set; } = new();
    public UploadConfig Upload { get; set; } = new();

    /// <summary>Every error of the whole config, each "path: reason"; each section checks its own fields.</summary>
    public List<string> Validate()
    {
        var e = new ConfigErrors();
        if (Device is null) e.Add("device: must be an object"); else Device.Validate(e, "device");
        if (Update is null) e.Add("update: must be an object"); else Update.Validate(e, "update");
        if (Channels is null || Channels.Count is < 1 or > 8) { e.Add("channels: must list 1 to 8 channels"); return e.List; }
        for (int i = 0; i < Channels.Count; i++)
            if (Channels[i] is null) e.Add($"channels[{i}]: must be an object"); else Channels[i].Validate(e, $"channels[{i}]");
        if (Rtsp is null) e.Add("rtsp: must be an object"); else Rtsp.Validate(e, "rtsp", Channels.Count);
        if (Http is null) e.Add("http: must be an object"); else Http.Validate(e, "http", Channels.Count);
        if (Recording is null) e.Add("recording: must be an object"); else Recording.Validate(e, "recording");
        if (Admin is null) e.Add("admin: must be an object"); else Admin.Validate(e, "admin");
        if (Discovery is null) e.Add("discovery: must be an object"); else Discovery.Validate(e, "discovery");
        if (Upload is null) e.Add("upload: must be an object"); else Upload.Validate(e, "upload");
        // Ports of different sections may not meet: checked once, over every listener (the port offset applies at start).
        if (e.List.Count == 0) e.List.AddRange(PortPlan.Of(this, 0).Errors);
        return e.List;
    }
}

/// <summary>Firmware updates, polled over plain HTTP (port 80 unless the URL says otherwise).</summary>
public sealed class UpdateConfig
{
    /// <summary>The update server's base URL; the manifest is at &lt;url&gt;&lt;board&gt;/manifest.json. Null: no updates.</summary>
    public string? Url { get; set; }
    /// <summary>The PEM public key (ECDSA P-256) manifests must be signed with; built into the image.</summary>
    public string PublicKey { get; set; } = "/etc/pearl2/update-key.pem";
    public int IntervalSeconds { get; set; } = 3600;
    /// <summary>How long a new version has to become healthy before it is abandoned.</summary>
    public int ConfirmSeconds { get; set; } = 180;

    internal void Validate(ConfigErrors e, string p)
    {
        e.Check(Url is null || (Uri.TryCreate(Url, UriKind.Absolute, out var url) && url.Scheme is "http" or "https" && Url.EndsWith('/')),
            $"{p}.url", $"'{Url}' is not an http(s) URL ending in /");
        e.Check(!string.IsNullOrEmpty(PublicKey), $"{p}.publicKey", "must name the PEM file of the signing key");
        e.Check(IntervalSeconds is >= 10 and <= 7 * 86400, $"{p}.intervalSeconds", $"{IntervalSeconds} is not from 10 s to a week");
        e.Check(ConfirmSeconds is >= 10 and <= 3600, $"{p}.confirmSeconds", $"{ConfirmSeconds} is not from 10 to 3600");
    }
}

public sealed class RecordingConfig
{
    /// <summary>Where recordings go; relative paths are under the data directory.</summary>
    public string Directory { get; set; } = "recordings";
    /// <summary>"mp4" (fragmented while written, finished on stop) or "ts".</summary>
    public string Format { get; set; } = "mp4";
    /// <summary>A new file starts at the first key frame after this many seconds …</summary>
    public int RotateSeconds { get; set; } = 1800;
    /// <summary>… or this many megabytes, whichever comes first.</summary>
    public int RotateMegabytes { get; set; } = 500;
    /// <summary>Most space all recordings may take; 0 = no limit but the free-space floor.</summary>
    public int SpaceLimitMegabytes { get; set; }
    /// <summary>Free space always left on the filesystem; the oldest recordings not waiting for upload make room.</summary>
    public int MinFreeMegabytes { get; set; } = 100;

    internal void Validate(ConfigErrors e, string p)
    {
        e.Check(!string.IsNullOrWhiteSpace(Directory) && !Directory.Any(char.IsControl), $"{p}.directory", "must be a path");
        e.Check(Format is "mp4" or "ts", $"{p}.format", $"'{Format}' is not mp4 or ts");
        e.Check(RotateSeconds is >= 5 and <= 86400, $"{p}.rotateSeconds", $"{RotateSeconds} is not from 5 to 86400");
        e.Check(RotateMegabytes is >= 1 and <= 65536, $"{p}.rotateMegabytes", $"{RotateMegabytes} is not from 1 to 65536");
        e.Check(SpaceLimitMegabytes is 0 or >= 16, $"{p}.spaceLimitMegabytes", $"{SpaceLimitMegabytes} is not 0 (no limit) or at least 16");
        e.Check(MinFreeMegabytes is >= 0 and <= 1048576, $"{p}.minFreeMegabytes", $"{MinFreeMegabytes} is not from 0 to 1048576");
    }
}

public sealed class HttpConfig
{
    /// <summary>HTTP live streams (FLV, MPEG-TS): channel i listens on Port + i (plus the --port-offset).</summary>
    public int Port { get; set; } = 8000;

    internal void Validate(ConfigErrors e, string p, int channels) =>
        e.Check(Port is >= 1 and <= 65535 && Port + channels - 1 <= 65535, $"{p}.port", $"{Port} (+ one port per channel) is not a TCP port");
}

/// <summary>The device's identity, as the admin panel and the Pearl API's /system/ident show and set it.</summary>
public sealed class DeviceConfig
{
    public string Name { get; set; } = "Pearl2";
    public string Location { get; set; } = "";
    public string Description { get; set; } = "";

    /// <summary>What Pearl clients accept in a device name (the Pearl API's DeviceIdentity pattern).</summary>
    public static bool IsPearlName(string name) => name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or ' ' or '\'' or '(' or ')' or '[' or ']' or '_');

    internal void Validate(ConfigErrors e, string p)
    {
        e.Check(!string.IsNullOrWhiteSpace(Name) && Name.Length <= 50 && IsPearlName(Name), $"{p}.name",
            "must be 1 to 50 characters of letters, digits, space and - ' ( ) [ ] _");
        e.Check(Location is not null && Location.Length <= 50 && !Location.Any(char.IsControl), $"{p}.location", "must be at most 50 printable characters");
        e.Check(Description is not null && Description.Length <= 50 && !Description.Any(char.IsControl), $"{p}.description", "must be at most 50 printable characters");
    }
}

/// <summary>The admin web panel and the REST API (Pearl API v2.0) on ports 80 and 443 (plus the --port-offset).</summary>
public sealed class AdminConfig
{
    public bool Enabled { get; set; } = true;
    public int Port { get; set; } = 80;
    /// <summary>HTTPS with the device's certificate (self-signed at first start unless one was uploaded); 0 turns HTTPS off.</summary>
    public int HttpsPort { get; set; } = 443;
    /// <summary>Send browsers on plain HTTP to HTTPS (the API still answers on HTTP, as Pearl clients expect).</summary>
    public bool RedirectToHttps { get; set; }
    /// <summary>Strict-Transport-Security on HTTPS answers (a year); only once the certificate is one browsers trust.</summary>
    public bool Hsts { get; set; }
    /// <summary>Minutes a panel session lives without a request, and at most in all.</summary>
    public int SessionIdleMinutes { get; set; } = 30;
    public int SessionMaxHours { get; set; } = 12;
    /// <summary>Prometheus metrics at /metrics: "login" (any panel user), "token" (Authorization: Bearer metricsToken) or "open".</summary>
    public string Metrics { get; set; } = "login";
    public string? MetricsToken { get; set; }

    internal void Validate(ConfigErrors e, string p)
    {
        e.Check(Port is >= 1 and <= 65535, $"{p}.port", $"{Port} is not a TCP port");
        e.Check(HttpsPort is >= 0 and <= 65535, $"{p}.httpsPort", $"{HttpsPort} is not 0 (no HTTPS) or a TCP port");
        e.Check(!RedirectToHttps || HttpsPort != 0, $"{p}.redirectToHttps", "needs admin.httpsPort");
        e.Check(SessionIdleMinutes is >= 1 and <= 1440, $"{p}.sessionIdleMinutes", $"{SessionIdleMinutes} is not from 1 to 1440");
        e.Check(SessionMaxHours is >= 1 and <= 720, $"{p}.sessionMaxHours", $"{SessionMaxHours} is not from 1 to 720");
        e.Check(Metrics is "login" or "token" or "open", $"{p}.metrics", $"'{Metrics}' is not login, token or open");
        e.Check(Metrics != "token" || MetricsToken is { Length: >= 16 and <= 256 }, $"{p}.metricsToken", "must be 16 to 256 characters when admin.metrics is token");
    }
}

/// <summary>
/// Being found on the LAN: mDNS/DNS-SD on UDP 5353 (the host name, the admin panel, each channel's RTSP) and UPnP (SSDP on
/// UDP 1900 with a DLNA media server on a random TCP port from 50000 to 65000). Both apply at once when changed.
/// </summary>
public sealed class DiscoveryConfig
{
    public bool Mdns { get; set; } = true;
    public bool Upnp { get; set; } = true;
    /// <summary>The mDNS host name without ".local"; empty: pearl2-&lt;serial&gt;.</summary>
    public string HostName { get; set; } = "";

    internal void Validate(ConfigErrors e, string p) =>
        e.Check(HostName is not null && (HostName.Length == 0 || (HostName.Length <= 63 && HostName.All(c => char.IsAsciiLetterOrDigit(c) || c == '-')
            && HostName[0] != '-' && HostName[^1] != '-')), $"{p}.hostName", $"'{HostName}' is not empty or a host name label (letters, digits and '-', at most 63, not starting or ending with '-')");
}

/// <summary>
/// Automatic file upload (AFU): every finished recording goes to one server once, over FTP, explicit FTPS or SFTP,
/// through a queue on the data partition. Applies at once when changed.
/// </summary>
public sealed class UploadConfig
{
    public bool Enabled { get; set; }
    /// <summary>"ftp", "ftps" (explicit: AUTH TLS on the FTP port) or "sftp".</summary>
    public string Protocol { get; set; } = "ftp";
    public string Host { get; set; } = "";
    /// <summary>0: the protocol's own (21 for FTP and FTPS, 22 for SFTP).</summary>
    public int Port { get; set; }
    public string Username { get; set; } = "";
    public string Password { get; set; } = "";
    /// <summary>SFTP: a private key file (OpenSSH format) instead of, or besides, the password; relative to the data directory.</summary>
    public string? PrivateKeyFile { get; set; }
    /// <summary>Where each file goes: {channel}, {serial}, {yyyy}, {MM}, {dd}, {HH}, {date} (yyyy-MM-dd) and {file}, which must be last.</summary>
    public string RemotePath { get; set; } = "{channel}/{date}/{file}";
    /// <summary>Delete the local file once the server has it whole (its size checked first).</summary>
    public bool DeleteAfterUpload { get; set; }
    /// <summary>At most this rate (0: no limit).</summary>
    public int BandwidthKbps { get; set; }
    /// <summary>FTPS: the server certificate's SHA-256 (hex); null trusts the system's store and checks the host name.</summary>
    public string? TlsPinSha256 { get; set; }
    /// <summary>Each step (connect, a reply, a write) must finish within this.</summary>
    public int TimeoutSeconds { get; set; } = 30;

    public int EffectivePort => Port != 0 ? Port : Protocol == "sftp" ? 22 : 21;

    internal void Validate(ConfigErrors e, string p)
    {
        e.Check(Protocol is "ftp" or "ftps" or "sftp", $"{p}.protocol", $"'{Protocol}' is not ftp, ftps or sftp");
        e.Check(!Enabled || (Host is { Length: > 0 and <= 253 } && !Host.Any(c => char.IsControl(c) || c is ' ' or '/')), $"{p}.host", "must name the server (a host name or address)");
        e.Check(Port is >= 0 and <= 65535, $"{p}.port", $"{Port} is not 0 (the protocol's own) or a TCP port");
        e.Check(!Enabled || Username is { Length: > 0 and <= 128 } && !Username.Any(char.IsControl), $"{p}.username", "must be 1 to 128 printable characters");
        e.Check(Password is not null && Password.Length <= 256 && !Password.Any(char.IsControl), $"{p}.password", "must be at most 256 printable characters");
        e.Check(RemotePath is not null && RemotePath.EndsWith("{file}", StringComparison.Ordinal) && !RemotePath.Split('/').Contains("..") && !RemotePath.Any(char.IsControl),
            $"{p}.remotePath", $"'{RemotePath}' must end with {{file}} and have no '..' or control characters");
        e.Check(BandwidthKbps is >= 0 and <= 10_000_000, $"{p}.bandwidthKbps", $"{BandwidthKbps} is not from 0 (no limit) to 10000000");
        e.Check(TlsPinSha256 is null || (TlsPinSha256.Replace(":", "").Length == 64 && TlsPinSha256.Replace(":", "").All(char.IsAsciiHexDigit)), $"{p}.tlsPinSha256", "must be a SHA-256 in hex (64 digits, colons allowed)");
        e.Check(TimeoutSeconds is >= 3 and <= 600, $"{p}.timeoutSeconds", $"{TimeoutSeconds} is not from 3 to 600");
    }
}

public sealed class ChannelConfig
{
    public string Name { get; set; } = "";
    /// <summary>Serve viewers on other hosts; when false the ports stay open but refuse them (loopback is still served).</summary>
    public bool Streaming { get; set; } = true;
    /// <summary>"testpattern", "capture" (the board profile's capture device) or a V4L2 device node such as "/dev/video0".</summary>
    public string Source { get; set; } = "testpattern";
    public VideoConfig Video { get; set; } = new();
    public AudioConfig Audio { get; set; } = new();
    /// <summary>Viewer login for RTSP; null (the default) lets every viewer in.</summary>
    public AuthConfig? Auth { get; set; }
    /// <summary>Recorded when Record is pressed (front panel or control command).</summary>
    public bool Record { get; set; } = true;
    /// <summary>This channel's own upload target (its files go there, not to the device's); null: the device's target.</summary>
    public UploadConfig? Upload { get; set; }
    /// <summary>Streaming servers this channel is pushed to (RTMP/RTMPS, SRT), each started and stopped on its own.</summary>
    public List<PublisherConfig> Publishers { get; set; } = new();

    internal void Validate(ConfigErrors e, string p)
    {
        e.Check(!string.IsNullOrWhiteSpace(Name) && Name.Length <= 63 && !Name.Any(char.IsControl), $"{p}.name", "must be 1 to 63 printable characters");
        e.Check(Source is "testpattern" or "capture" || (Source is not null && Source.StartsWith("/dev/video", StringComparison.Ordinal) && !Source.Contains("..")),
            $"{p}.source", $"'{Source}' is not a known source (known: testpattern, capture (the board's capture device), /dev/videoN)");
        if (Video is null) e.Add($"{p}.video: must be an object"); else Video.Validate(e, $"{p}.video");
        Auth?.Validate(e, $"{p}.auth");
        Upload?.Validate(e, $"{p}.upload");
        if (Publishers is null) e.Add($"{p}.publishers: must be a list");
        else
        {
            e.Check(Publishers.Count <= 16, $"{p}.publishers", $"{Publishers.Count} destinations (at most 16 per channel)");
            for (int i = 0; i < Publishers.Count; i++)
            {
                if (Publishers[i] is null) { e.Add($"{p}.publishers[{i}]: must be an object"); continue; }
                Publishers[i].Validate(e, $"{p}.publishers[{i}]");
                if (Publishers.Take(i).Any(o => o?.Name == Publishers[i].Name)) e.Add($"{p}.publishers[{i}].name: '{Publishers[i].Name}' is used twice on this channel");
            }
        }
        if (Audio is null) e.Add($"{p}.audio: must be an object"); else Audio.Validate(e, $"{p}.audio");
    }
}

/// <summary>
/// One destination a channel is pushed to. RTMP: <c>url</c> (rtmp:// or rtmps://host[:port]/app) and the stream key
/// (<c>streamKey</c>, or the last part of the URL when that is empty). SRT: caller (to <c>host</c>:<c>port</c>) or
/// listener (on <c>port</c>), MPEG-TS inside, with latency, passphrase and key length, and a stream id.
/// </summary>
public sealed class PublisherConfig
{
    public string Name { get; set; } = "";
    /// <summary>"rtmp" (rtmp:// and rtmps://) or "srt".</summary>
    public string Type { get; set; } = "rtmp";
    /// <summary>Started when the channel starts (else only when asked: panel, API, or the Stream button with <see cref="StreamButton"/>).</summary>
    public bool Enabled { get; set; } = true;
    /// <summary>The front panel's Stream button starts and stops this destination with the channel's streaming.</summary>
    public bool StreamButton { get; set; }
    public string Url { get; set; } = "";
    public string StreamKey { get; set; } = "";
    /// <summary>Video only.</summary>
    public bool DisableAudio { get; set; }
    /// <summary>SRT: "caller", "listener" or "rendezvous" (both ends call each other: through firewalls that let replies in).</summary>
    public string Mode { get; set; } = "caller";
    public string Host { get; set; } = "";
    public int Port { get; set; }
    /// <summary>SRT rendezvous: the local UDP port (0: the same as <see cref="Port"/>, as two devices on different hosts use it).</summary>
    public int LocalPort { get; set; }
    public int LatencyMs { get; set; } = 120;
    public string Passphrase { get; set; } = "";
    /// <summary>SRT: AES key length in bytes (16, 24 or 32); 0 leaves it to libsrt (16 when there is a passphrase).</summary>
    public int KeyLength { get; set; }
    public string StreamId { get; set; } = "";

    internal void Validate(ConfigErrors e, string p)
    {
        e.Check(Name is { Length: >= 1 and <= 128 } && !Name.Any(char.IsControl), $"{p}.name", "must be 1 to 128 printable characters");
        e.Check(Type is "rtmp" or "srt", $"{p}.type", $"'{Type}' is not rtmp or srt");
        if (Type == "rtmp")
        {
            bool ok = Uri.TryCreate(Url, UriKind.Absolute, out var u) && u.Scheme is "rtmp" or "rtmps" && u.Host.Length > 0 && u.AbsolutePath.Trim('/').Length > 0;
            e.Check(ok && Url.Length <= 500, $"{p}.url", $"'{Url}' is not rtmp://host[:port]/app or rtmps://…");
            e.Check(StreamKey is not null && StreamKey.Length <= 500 && !StreamKey.Any(char.IsControl), $"{p}.streamKey", "must be at most 500 printable characters");
        }
        else if (Type == "srt")
        {
            e.Check(Mode is "caller" or "listener" or "rendezvous", $"{p}.mode", $"'{Mode}' is not caller, listener or rendezvous");
            e.Check(LocalPort is >= 0 and <= 65535, $"{p}.localPort", $"{LocalPort} is not 0 (the same as port) or a UDP port");
            e.Check(Mode == "listener" || Host is { Length: > 0 and <= 253 } && !Host.Any(c => char.IsControl(c) || c is ' ' or '/'), $"{p}.host", "must name the receiver (a host name or address)");
            e.Check(Port is >= 1 and <= 65535, $"{p}.port", $"{Port} is not a UDP port");
            e.Check(LatencyMs is >= 20 and <= 8000, $"{p}.latencyMs", $"{LatencyMs} is not from 20 to 8000");
            e.Check(Passphrase is not null && (Passphrase.Length == 0 || Passphrase.Length is >= 10 and <= 79), $"{p}.passphrase", "must be empty or 10 to 79 characters (SRT's rule)");
            e.Check(KeyLength is 0 or 16 or 24 or 32, $"{p}.keyLength", $"{KeyLength} is not 0, 16, 24 or 32");
            e.Check(StreamId is not null && StreamId.Length <= 512, $"{p}.streamId", "must be at most 512 characters");
        }
    }
}

public sealed class AuthConfig
{
    public string Username { get; set; } = "";
    public string Password { get; set; } = "";
    /// <summary>Also accept Basic (the password travels in clear); Digest is always offered.</summary>
    public bool AllowBasic { get; set; }

    internal void Validate(ConfigErrors e, string p)
    {
        e.Check(Username.Length is >= 1 and <= 64 && !Username.Any(c => char.IsControl(c) || c == ':' || c == '"'), $"{p}.username", "must be 1 to 64 characters without ':', '\"' or control characters");
        e.Check(Password.Length is >= 4 and <= 128 && !Password.Any(char.IsControl), $"{p}.password", "must be 4 to 128 characters without control characters");
    }
}

public sealed class VideoConfig
{
    public int Width { get; set; } = 1920;
    public int Height { get; set; } = 1080;
    public int Fps { get; set; } = 30;
    public int BitrateKbps { get; set; } = 4000;
    public int KeyFrameIntervalFrames { get; set; } = 60;
    /// <summary>libavcodec encoder name, or v4l2m2m (the hardware encoder by ioctl, libx264 when there is none); null takes the board's.</summary>
    public string? Encoder { get; set; }
    /// <summary>"abr": average bitrate, capped by a one-second VBV (the test pattern needs far less than the cap); "cbr": constant, padded with filler data.</summary>
    public string RateControl { get; set; } = "abr";
    public string Preset { get; set; } = "ultrafast";
    public string Tune { get; set; } = "zerolatency";

    internal void Validate(ConfigErrors e, string p)
    {
        e.Check(Width is >= 64 and <= 4096 && Width % 2 == 0, $"{p}.width", $"{Width} is not an even number from 64 to 4096");
        e.Check(Height is >= 64 and <= 2160 && Height % 2 == 0, $"{p}.height", $"{Height} is not an even number from 64 to 2160");
        e.Check(Fps is >= 1 and <= 60, $"{p}.fps", $"{Fps} is not from 1 to 60");
        e.Check(BitrateKbps is >= 100 and <= 50000, $"{p}.bitrateKbps", $"{BitrateKbps} is not from 100 to 50000");
        e.Check(KeyFrameIntervalFrames is >= 1 and <= 600, $"{p}.keyFrameIntervalFrames", $"{KeyFrameIntervalFrames} is not from 1 to 600");
        e.Check(Encoder is null || (Encoder.Length > 0 && Encoder.All(ch => char.IsAsciiLetterOrDigit(ch) || ch == '_')), $"{p}.encoder", "must be a libavcodec encoder name");
        e.Check(RateControl is "abr" or "cbr", $"{p}.rateControl", $"'{RateControl}' is not abr or cbr");
        e.Check(Preset is "ultrafast" or "superfast" or "veryfast" or "faster" or "fast" or "medium", $"{p}.preset", $"'{Preset}' is not one of ultrafast, superfast, veryfast, faster, fast, medium");
        e.Check(Tune is "" or "zerolatency" or "film" or "animation" or "stillimage", $"{p}.tune", $"'{Tune}' is not one of zerolatency, film, animation, stillimage or empty");
    }
}

public sealed class AudioConfig
{
    public bool Enabled { get; set; } = true;
    public int SampleRate { get; set; } = 48000;
    public int Channels { get; set; } = 2;
    public int BitrateKbps { get; set; } = 128;

    internal void Validate(ConfigErrors e, string p)
    {
        if (!Enabled) return;
        e.Check(SampleRate is 48000 or 44100 or 32000, $"{p}.sampleRate", $"{SampleRate} is not 48000, 44100 or 32000");
        e.Check(Channels is 1 or 2, $"{p}.channels", $"{Channels} is not 1 or 2");
        e.Check(BitrateKbps is >= 32 and <= 320, $"{p}.bitrateKbps", $"{BitrateKbps} is not from 32 to 320");
    }
}

public sealed class RtspConfig
{
    /// <summary>Channel i listens on Port + i (plus the --port-offset).</summary>
    public int Port { get; set; } = 554;
    public int SessionTimeoutSeconds { get; set; } = 60;
    public int StallTimeoutSeconds { get; set; } = 10;
    public int MaxRtpPayload { get; set; } = 1400;
    public int ViewerQueueUnits { get; set; } = 512;
    public int StatsIntervalSeconds { get; set; } = 10;
    /// <summary>RTSP/UDP server ports: channel i uses udpPortBase + 4i … + 4i + 3 (video RTP/RTCP, audio RTP/RTCP); 0 turns UDP off.</summary>
    public int UdpPortBase { get; set; } = 6970;
    /// <summary>Connections one channel port (RTSP, and HTTP alike) holds in all; more are reset at once.</summary>
    public int MaxConnectionsPerPort { get; set; } = ConnectionLimits.DefaultPerPort;
    /// <summary>Connections one host (IPv6: one /64) may hold on one channel port; the device itself (loopback) is not limited.</summary>
    public int MaxConnectionsPerHost { get; set; } = ConnectionLimits.DefaultPerHost;

    internal void Validate(ConfigErrors e, string p, int channels)
    {
        e.Check(Port is >= 1 and <= 65535 && Port + channels - 1 <= 65535, $"{p}.port", $"{Port} (+ one port per channel) is not a TCP port");
        e.Check(SessionTimeoutSeconds is >= 5 and <= 3600, $"{p}.sessionTimeoutSeconds", $"{SessionTimeoutSeconds} is not from 5 to 3600");
        e.Check(StallTimeoutSeconds is >= 1 and <= 600, $"{p}.stallTimeoutSeconds", $"{StallTimeoutSeconds} is not from 1 to 600");
        e.Check(MaxRtpPayload is >= 200 and <= 8960, $"{p}.maxRtpPayload", $"{MaxRtpPayload} is not from 200 to 8960");
        e.Check(ViewerQueueUnits is >= 16 and <= 8192, $"{p}.viewerQueueUnits", $"{ViewerQueueUnits} is not from 16 to 8192");
        e.Check(UdpPortBase == 0 || (UdpPortBase is >= 1024 && UdpPortBase % 2 == 0 && UdpPortBase + 4 * channels <= 65535), $"{p}.udpPortBase",
            $"{UdpPortBase} is not 0 or an even UDP port from 1024 with room for 4 ports per channel");
        e.Check(StatsIntervalSeconds is >= 1 and <= 3600, $"{p}.statsIntervalSeconds", $"{StatsIntervalSeconds} is not from 1 to 3600");
        e.Check(MaxConnectionsPerPort is >= 16 and <= 100000, $"{p}.maxConnectionsPerPort", $"{MaxConnectionsPerPort} is not from 16 to 100000");
        e.Check(MaxConnectionsPerHost >= 1 && MaxConnectionsPerHost <= MaxConnectionsPerPort, $"{p}.maxConnectionsPerHost", $"{MaxConnectionsPerHost} is not from 1 to rtsp.maxConnectionsPerPort ({MaxConnectionsPerPort})");
    }
}

/// <summary>Board profile data (board/&lt;name&gt;/board.json): what differs between boards, with no board names in code.</summary>
public sealed class BoardProfile
{
    public string Name { get; set; } = "host";
    public string H264Encoder { get; set; } = "libx264";
    /// <summary>The V4L2 capture node that channels with source "capture" use, or "testpattern" on a board without one.</summary>
    public string Capture { get; set; } = "testpattern";
    /// <summary>The ALSA capture PCM (e.g. "plughw:CARD=Loopback,DEV=1") that channels capturing from the board's device use, or "tone".</summary>
    public string Audio { get; set; } = "tone";
    public PanelProfile Panel { get; set; } = new();
    public SlotsProfile Slots { get; set; } = new();
}

/// <summary>The A/B root file system slots and how the board boots them, for firmware updates.</summary>
public sealed class SlotsProfile
{
    /// <summary>"none" (updates only in the host simulation, pearl2d boot --slots), "extlinux" (U-Boot, extlinux.conf on the boot partition) or "tryboot" (Raspberry Pi).</summary>
    public string Kind { get; set; } = "none";
    public string A { get; set; } = "";
    public string B { get; set; } = "";
    /// <summary>Where the boot partition is mounted (read-write for the firmware's user).</summary>
    public string BootDirectory { get; set; } = "/boot/firmware";
}

/// <summary>Front-panel wiring: which GPIO line is which button or LED, and the optional status display.</summary>
public sealed class PanelProfile
{
    /// <summary>"simulated" (host and tests: buttons from the terminal and the control command) or "libgpiod".</summary>
    public string Driver { get; set; } = "simulated";
    /// <summary>GPIO chip for libgpiod (number of /dev/gpiochipN), when <see cref="ChipLabel"/> is not given.</summary>
    public int Chip { get; set; }
    /// <summary>The label of the GPIO chip for libgpiod ("pearl2-panel"); found at start, whatever number it got.</summary>
    public string? ChipLabel { get; set; }
    public GpioLine Record { get; set; } = new() { Line = 0, ActiveLow = true };
    public GpioLine Stream { get; set; } = new() { Line = 1, ActiveLow = true };
    public GpioLine RecordLed { get; set; } = new() { Line = 2 };
    public GpioLine StreamLed { get; set; } = new() { Line = 3 };
    public GpioLine StatusLed { get; set; } = new() { Line = 4 };
    public DisplayProfile? Display { get; set; } = new();
}

public sealed class GpioLine
{
    public int Line { get; set; }
    /// <summary>True when the line reads (button) or must be driven (LED) low for "on".</summary>
    public bool ActiveLow { get; set; }
}

public sealed class DisplayProfile
{
    /// <summary>"ssd1306" on I2C; the simulated panel renders it to status-display.png in the data directory.</summary>
    public string Kind { get; set; } = "ssd1306";
    public int I2cBus { get; set; } = 1;
    public int Address { get; set; } = 0x3c;
    public int Width { get; set; } = 128;
    public int Height { get; set; } = 64;
}


/// <summary>The errors of one validation, each "path: reason".</summary>
public sealed class ConfigErrors
{
    public List<string> List { get; } = new();
    public void Add(string error) => List.Add(error);
    public void Check(bool ok, string field, string reason) { if (!ok) List.Add($"{field}: {reason}"); }
}
