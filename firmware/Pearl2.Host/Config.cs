using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using System.Text.Json.Serialization;

namespace Pearl2.Host;

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
}

public sealed class HttpConfig
{
    /// <summary>HTTP live streams (FLV, MPEG-TS): channel i listens on Port + i (plus the --port-offset).</summary>
    public int Port { get; set; } = 8000;
}

public sealed class DeviceConfig
{
    public string Name { get; set; } = "Pearl2";
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
}

public sealed class AuthConfig
{
    public string Username { get; set; } = "";
    public string Password { get; set; } = "";
    /// <summary>Also accept Basic (the password travels in clear); Digest is always offered.</summary>
    public bool AllowBasic { get; set; }
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
}

public sealed class AudioConfig
{
    public bool Enabled { get; set; } = true;
    public int SampleRate { get; set; } = 48000;
    public int Channels { get; set; } = 2;
    public int BitrateKbps { get; set; } = 128;
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
    public int MaxConnectionsPerPort { get; set; } = Pearl2.Services.ConnectionLimits.DefaultPerPort;
    /// <summary>Connections one host (IPv6: one /64) may hold on one channel port; the device itself (loopback) is not limited.</summary>
    public int MaxConnectionsPerHost { get; set; } = Pearl2.Services.ConnectionLimits.DefaultPerHost;
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

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true, UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(FirmwareConfig))]
[JsonSerializable(typeof(BoardProfile))]
[JsonSerializable(typeof(RtspConfig))]
[JsonSerializable(typeof(HttpConfig))]
[JsonSerializable(typeof(VideoConfig))]
[JsonSerializable(typeof(AudioConfig))]
[JsonSerializable(typeof(RecordingConfig))]
[JsonSerializable(typeof(UpdateConfig))]
[JsonSerializable(typeof(SlotsProfile))]
internal sealed partial class ConfigJson : JsonSerializerContext;

public sealed class ConfigException(IReadOnlyList<string> errors) : Exception(string.Join("; ", errors))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}

public static class ConfigLoader
{
    public static FirmwareConfig Load(string? path)
    {
        var errors = new List<string>();
        var config = path is null ? new FirmwareConfig() : Parse(ReadText(path), ConfigJson.Default.FirmwareConfig, path, errors);
        errors.AddRange(Validate(config));
        if (errors.Count > 0) throw new ConfigException(errors);
        // A relative key path means the working directory's, fixed now so a reload or a reboot reads the same file.
        config.Update.PublicKey = Path.GetFullPath(config.Update.PublicKey);
        return config;
    }

    /// <summary>The file's text, or a ConfigException that names it and says why it cannot be read (a directory, no permission, gone).</summary>
    static string ReadText(string path)
    {
        if (Directory.Exists(path)) throw new ConfigException([$"{path}: is a directory, not a config file"]);
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new ConfigException([$"{path}: cannot be read ({(e is FileNotFoundException ? "no such file" : e.Message)})"]); }
    }

    public static BoardProfile LoadBoard(string? path)
    {
        if (path is null) return new BoardProfile();
        var errors = new List<string>();
        var board = Parse(ReadText(path), ConfigJson.Default.BoardProfile, path, errors, "board.");
        if (errors.Count > 0) throw new ConfigException(errors);
        return board;
    }

    public static List<string> ValidateBoard(BoardProfile b)
    {
        var e = new List<string>();
        void Check(bool ok, string field, string reason) { if (!ok) e.Add($"board.{field}: {reason}"); }
        Check(b.Capture == "testpattern" || b.Capture.StartsWith("/dev/video", StringComparison.Ordinal), "capture", $"'{b.Capture}' is not testpattern or a /dev/videoN node");
        Check(b.Audio == "tone" || (b.Audio.Length is > 0 and < 128 && b.Audio.All(c => char.IsAsciiLetterOrDigit(c) || c is ':' or ',' or '=' or '_' or '-' or '.')),
            "audio", $"'{b.Audio}' is not tone or an ALSA PCM name such as plughw:CARD=Loopback,DEV=1");
        if (b.Slots is not { } sl) e.Add("board.slots: must be an object");
        else
        {
            Check(sl.Kind is "none" or "extlinux" or "tryboot", "slots.kind", $"'{sl.Kind}' is not none, extlinux or tryboot");
            if (sl.Kind != "none")
            {
                Check(sl.A.StartsWith("/dev/", StringComparison.Ordinal) && sl.B.StartsWith("/dev/", StringComparison.Ordinal) && sl.A != sl.B, "slots.a", "slots a and b must be two /dev/ partitions");
                Check(sl.BootDirectory.StartsWith('/'), "slots.bootDirectory", "must be an absolute path");
            }
        }
        var p = b.Panel;
        if (p is null) { e.Add("board.panel: must be an object"); return e; }
        Check(p.Driver is "simulated" or "libgpiod", "panel.driver", $"'{p.Driver}' is not simulated or libgpiod");
        Check(p.Chip is >= 0 and <= 63, "panel.chip", $"{p.Chip} is not a gpiochip number from 0 to 63");
        Check(p.ChipLabel is null || p.ChipLabel.Length is > 0 and <= 31, "panel.chipLabel", "must be 1 to 31 characters (a gpiochip label)");
        var lines = new (string Name, GpioLine? Line)[] { ("record", p.Record), ("stream", p.Stream), ("recordLed", p.RecordLed), ("streamLed", p.StreamLed), ("statusLed", p.StatusLed) };
        foreach (var (name, line) in lines)
            Check(line is not null && line.Line is >= 0 and <= 511, $"panel.{name}.line", line is null ? "is missing" : $"{line.Line} is not a line from 0 to 511");
        foreach (var dup in lines.Where(l => l.Line is not null).GroupBy(l => l.Line!.Line).Where(g => g.Count() > 1))
            e.Add($"board.panel: line {dup.Key} is used by {string.Join(" and ", dup.Select(d => d.Name))}");
        if (p.Display is { } d)
        {
            Check(d.Kind == "ssd1306", "panel.display.kind", $"'{d.Kind}' is not ssd1306");
            Check(d.Address is >= 0x03 and <= 0x77, "panel.display.address", $"{d.Address} is not a 7-bit I2C address");
            Check(d.Width is 128 && d.Height is 32 or 64, "panel.display.width", $"{d.Width}x{d.Height} is not 128x64 or 128x32");
            Check(d.I2cBus is >= 0 and <= 63, "panel.display.i2cBus", $"{d.I2cBus} is not an I2C bus number");
        }
        return e;
    }

    public static FirmwareConfig ParseText(string json)
    {
        var errors = new List<string>();
        var config = Parse(json, ConfigJson.Default.FirmwareConfig, "config", errors);
        errors.AddRange(Validate(config));
        if (errors.Count > 0) throw new ConfigException(errors);
        return config;
    }

    static readonly JsonDocumentOptions DocumentOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    /// <summary>
    /// Reads a config document. Broken JSON is refused at once with its line and column. Otherwise every field the
    /// document has is checked against the config's shape: each unknown field and each value of the wrong kind is one
    /// error in <paramref name="errors"/> (path: reason, in the config's words), left out, and the rest is read, so
    /// that the range checks after it can report their errors in the same go.
    /// </summary>
    static T Parse<T>(string json, JsonTypeInfo<T> type, string source, List<string> errors, string prefix = "")
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json, documentOptions: DocumentOptions); }
        catch (JsonException e)
        {
            var reason = e.Message;
            int cut = reason.IndexOf(" Path:", StringComparison.Ordinal);
            if (cut < 0) cut = reason.IndexOf(" LineNumber:", StringComparison.Ordinal);
            if (cut > 0) reason = reason[..cut];
            throw new ConfigException([$"{source}: line {(e.LineNumber ?? 0) + 1}, column {(e.BytePositionInLine ?? 0) + 1}: {reason.TrimEnd('.')} (the file is not valid JSON)"]);
        }
        if (root is not JsonObject) throw new ConfigException([$"{source}: must be a JSON object ({{ … }})"]);
        using (var doc = JsonDocument.Parse(json, DocumentOptions))
        {
            var twice = new List<string>();
            FindDuplicates(doc.RootElement, prefix, twice);
            if (twice.Count > 0) throw new ConfigException(twice);
        }
        CheckShape(root, type, prefix, errors);
        try { return root.Deserialize(type) ?? throw new ConfigException([$"{source}: empty document"]); }
        catch (JsonException e) { throw new ConfigException([$"{prefix}{(e.Path ?? "$").TrimStart('$', '.')}: cannot be read ({e.Message.Split(" Path:")[0]})"]); }
    }

    /// <summary>A field given twice in one object is an error (which one was meant?); JSON itself does not forbid it.</summary>
    static void FindDuplicates(JsonElement e, string path, List<string> errors)
    {
        if (e.ValueKind == JsonValueKind.Object)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in e.EnumerateObject())
            {
                string at = path.Length == 0 || path.EndsWith('.') ? path + p.Name : $"{path}.{p.Name}";
                if (!seen.Add(p.Name)) errors.Add($"{at}: given twice in the same object");
                FindDuplicates(p.Value, at, errors);
            }
        }
        else if (e.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var item in e.EnumerateArray()) FindDuplicates(item, $"{path}[{i++}]", errors);
        }
    }

    static void CheckShape(JsonNode node, JsonTypeInfo type, string path, List<string> errors)
    {
        if (type.Kind == JsonTypeInfoKind.Object && node is JsonObject obj)
        {
            foreach (var (name, child) in obj.ToList())
            {
                var field = type.Properties.FirstOrDefault(p => p.Name == name);
                string at = path.Length == 0 || path.EndsWith('.') ? path + name : $"{path}.{name}";
                if (field is null)
                {
                    errors.Add($"{at}: unknown field (known here: {string.Join(", ", type.Properties.Select(p => p.Name))})");
                    obj.Remove(name);
                    continue;
                }
                if (!CheckValue(child, field.PropertyType, at, errors, field.IsSetNullable)) obj.Remove(name);
            }
        }
        else if (type.Kind == JsonTypeInfoKind.Enumerable && node is JsonArray array && type.ElementType is { } element)
        {
            for (int i = 0; i < array.Count; i++)
                if (!CheckValue(array[i], element, $"{path}[{i}]", errors)) array[i] = null;
        }
    }

    /// <summary>False (and one error) when <paramref name="value"/> is not of the kind <paramref name="t"/> needs.</summary>
    static bool CheckValue(JsonNode? value, Type t, string at, List<string> errors, bool nullAllowed = false)
    {
        var nullable = Nullable.GetUnderlyingType(t);
        if (value is null)
        {
            // null only where the field may be absent (a nullable one); elsewhere it would reach the code as a hole.
            if ((t.IsValueType && nullable is null) || (!t.IsValueType && !nullAllowed)) { errors.Add($"{at}: must be {Kind(t)}, not null"); return false; }
            return true;
        }
        var under = nullable ?? t;
        var kind = value.GetValueKind();
        string shown = kind is JsonValueKind.Object ? "an object" : kind is JsonValueKind.Array ? "a list" : value.ToJsonString();
        bool ok = under == typeof(string) ? kind == JsonValueKind.String
            : under == typeof(bool) ? kind is JsonValueKind.True or JsonValueKind.False
            : under == typeof(int) ? kind == JsonValueKind.Number && value.AsValue().TryGetValue<int>(out _)
            : under == typeof(long) ? kind == JsonValueKind.Number && value.AsValue().TryGetValue<long>(out _)
            : under == typeof(double) ? kind == JsonValueKind.Number
            : true;
        if (!ok) { errors.Add($"{at}: {shown} is not {Kind(under)}"); return false; }
        if (under.IsPrimitive || under == typeof(string)) return true;
        var info = ConfigJson.Default.GetTypeInfo(under);
        if (info is null) return true;
        if (info.Kind == JsonTypeInfoKind.Object && kind != JsonValueKind.Object) { errors.Add($"{at}: {shown} is not an object ({{ … }})"); return false; }
        if (info.Kind == JsonTypeInfoKind.Enumerable && kind != JsonValueKind.Array) { errors.Add($"{at}: {shown} is not a list ([ … ])"); return false; }
        CheckShape(value, info, at, errors);
        return true;
    }

    static string Kind(Type t) => t == typeof(string) ? "text (in quotes)" : t == typeof(bool) ? "true or false"
        : t == typeof(int) || t == typeof(long) ? "a whole number" : t == typeof(double) ? "a number"
        : ConfigJson.Default.GetTypeInfo(t)?.Kind switch { JsonTypeInfoKind.Object => "an object ({ … })", JsonTypeInfoKind.Enumerable => "a list ([ … ])", _ => "a value" };

    public static List<string> Validate(FirmwareConfig c)
    {
        var e = new List<string>();
        void Check(bool ok, string field, string reason) { if (!ok) e.Add($"{field}: {reason}"); }

        Check(c.Device is not null && !string.IsNullOrWhiteSpace(c.Device.Name) && c.Device.Name.Length <= 63, "device.name", "must be 1 to 63 characters");
        if (c.Update is { } u)
        {
            Check(u.Url is null || (Uri.TryCreate(u.Url, UriKind.Absolute, out var url) && url.Scheme is "http" or "https" && u.Url.EndsWith('/')),
                "update.url", $"'{u.Url}' is not an http(s) URL ending in /");
            Check(!string.IsNullOrEmpty(u.PublicKey), "update.publicKey", "must name the PEM file of the signing key");
            Check(u.IntervalSeconds is >= 10 and <= 7 * 86400, "update.intervalSeconds", $"{u.IntervalSeconds} is not from 10 s to a week");
            Check(u.ConfirmSeconds is >= 10 and <= 3600, "update.confirmSeconds", $"{u.ConfirmSeconds} is not from 10 to 3600");
        }
        else e.Add("update: must be an object");
        if (c.Channels is null || c.Channels.Count is < 1 or > 8) { e.Add("channels: must list 1 to 8 channels"); return e; }
        for (int i = 0; i < c.Channels.Count; i++)
        {
            var ch = c.Channels[i];
            var p = $"channels[{i}]";
            if (ch is null) { e.Add($"{p}: must be an object"); continue; }
            Check(!string.IsNullOrWhiteSpace(ch.Name) && ch.Name.Length <= 63 && !ch.Name.Any(char.IsControl), $"{p}.name", "must be 1 to 63 printable characters");
            Check(ch.Source is "testpattern" or "capture" || (ch.Source is not null && ch.Source.StartsWith("/dev/video", StringComparison.Ordinal) && !ch.Source.Contains("..")),
                $"{p}.source", $"'{ch.Source}' is not a known source (known: testpattern, capture (the board's capture device), /dev/videoN)");
            var v = ch.Video;
            if (v is null) e.Add($"{p}.video: must be an object");
            else
            {
                Check(v.Width is >= 64 and <= 4096 && v.Width % 2 == 0, $"{p}.video.width", $"{v.Width} is not an even number from 64 to 4096");
                Check(v.Height is >= 64 and <= 2160 && v.Height % 2 == 0, $"{p}.video.height", $"{v.Height} is not an even number from 64 to 2160");
                Check(v.Fps is >= 1 and <= 60, $"{p}.video.fps", $"{v.Fps} is not from 1 to 60");
                Check(v.BitrateKbps is >= 100 and <= 50000, $"{p}.video.bitrateKbps", $"{v.BitrateKbps} is not from 100 to 50000");
                Check(v.KeyFrameIntervalFrames is >= 1 and <= 600, $"{p}.video.keyFrameIntervalFrames", $"{v.KeyFrameIntervalFrames} is not from 1 to 600");
                Check(v.Encoder is null || (v.Encoder.Length > 0 && v.Encoder.All(ch => char.IsAsciiLetterOrDigit(ch) || ch == '_')), $"{p}.video.encoder", "must be a libavcodec encoder name");
                Check(v.RateControl is "abr" or "cbr", $"{p}.video.rateControl", $"'{v.RateControl}' is not abr or cbr");
                Check(v.Preset is "ultrafast" or "superfast" or "veryfast" or "faster" or "fast" or "medium", $"{p}.video.preset", $"'{v.Preset}' is not one of ultrafast, superfast, veryfast, faster, fast, medium");
                Check(v.Tune is "" or "zerolatency" or "film" or "animation" or "stillimage", $"{p}.video.tune", $"'{v.Tune}' is not one of zerolatency, film, animation, stillimage or empty");
            }
            if (ch.Auth is { } auth)
            {
                Check(auth.Username.Length is >= 1 and <= 64 && !auth.Username.Any(c => char.IsControl(c) || c == ':' || c == '"'), $"{p}.auth.username", "must be 1 to 64 characters without ':', '\"' or control characters");
                Check(auth.Password.Length is >= 4 and <= 128 && !auth.Password.Any(char.IsControl), $"{p}.auth.password", "must be 4 to 128 characters without control characters");
            }
            var a = ch.Audio;
            if (a is null) e.Add($"{p}.audio: must be an object");
            else if (a.Enabled)
            {
                Check(a.SampleRate is 48000 or 44100 or 32000, $"{p}.audio.sampleRate", $"{a.SampleRate} is not 48000, 44100 or 32000");
                Check(a.Channels is 1 or 2, $"{p}.audio.channels", $"{a.Channels} is not 1 or 2");
                Check(a.BitrateKbps is >= 32 and <= 320, $"{p}.audio.bitrateKbps", $"{a.BitrateKbps} is not from 32 to 320");
            }
        }
        var r = c.Rtsp;
        if (r is null) e.Add("rtsp: must be an object");
        else
        {
            Check(r.Port is >= 1 and <= 65535 && r.Port + c.Channels.Count - 1 <= 65535, "rtsp.port", $"{r.Port} (+ one port per channel) is not a TCP port");
            Check(r.SessionTimeoutSeconds is >= 5 and <= 3600, "rtsp.sessionTimeoutSeconds", $"{r.SessionTimeoutSeconds} is not from 5 to 3600");
            Check(r.StallTimeoutSeconds is >= 1 and <= 600, "rtsp.stallTimeoutSeconds", $"{r.StallTimeoutSeconds} is not from 1 to 600");
            Check(r.MaxRtpPayload is >= 200 and <= 8960, "rtsp.maxRtpPayload", $"{r.MaxRtpPayload} is not from 200 to 8960");
            Check(r.ViewerQueueUnits is >= 16 and <= 8192, "rtsp.viewerQueueUnits", $"{r.ViewerQueueUnits} is not from 16 to 8192");
            Check(r.UdpPortBase == 0 || (r.UdpPortBase is >= 1024 && r.UdpPortBase % 2 == 0 && r.UdpPortBase + 4 * c.Channels.Count <= 65535), "rtsp.udpPortBase",
                $"{r.UdpPortBase} is not 0 or an even UDP port from 1024 with room for 4 ports per channel");
            Check(r.StatsIntervalSeconds is >= 1 and <= 3600, "rtsp.statsIntervalSeconds", $"{r.StatsIntervalSeconds} is not from 1 to 3600");
            Check(r.MaxConnectionsPerPort is >= 16 and <= 100000, "rtsp.maxConnectionsPerPort", $"{r.MaxConnectionsPerPort} is not from 16 to 100000");
            Check(r.MaxConnectionsPerHost >= 1 && r.MaxConnectionsPerHost <= r.MaxConnectionsPerPort, "rtsp.maxConnectionsPerHost", $"{r.MaxConnectionsPerHost} is not from 1 to rtsp.maxConnectionsPerPort ({r.MaxConnectionsPerPort})");
        }
        if (c.Http is null) e.Add("http: must be an object");
        else
        {
            Check(c.Http.Port is >= 1 and <= 65535 && c.Http.Port + c.Channels.Count - 1 <= 65535, "http.port", $"{c.Http.Port} (+ one port per channel) is not a TCP port");
            if (r is not null && c.Http.Port < r.Port + c.Channels.Count && r.Port < c.Http.Port + c.Channels.Count)
                e.Add($"http.port: {c.Http.Port} overlaps the RTSP ports from {r.Port}");
        }
        var rec = c.Recording;
        if (rec is null) e.Add("recording: must be an object");
        else
        {
            Check(!string.IsNullOrWhiteSpace(rec.Directory) && !rec.Directory.Any(char.IsControl), "recording.directory", "must be a path");
            Check(rec.Format is "mp4" or "ts", "recording.format", $"'{rec.Format}' is not mp4 or ts");
            Check(rec.RotateSeconds is >= 5 and <= 86400, "recording.rotateSeconds", $"{rec.RotateSeconds} is not from 5 to 86400");
            Check(rec.RotateMegabytes is >= 1 and <= 65536, "recording.rotateMegabytes", $"{rec.RotateMegabytes} is not from 1 to 65536");
            Check(rec.SpaceLimitMegabytes is 0 or >= 16, "recording.spaceLimitMegabytes", $"{rec.SpaceLimitMegabytes} is not 0 (no limit) or at least 16");
            Check(rec.MinFreeMegabytes is >= 0 and <= 1048576, "recording.minFreeMegabytes", $"{rec.MinFreeMegabytes} is not from 0 to 1048576");
        }
        return e;
    }

    public static string ToJson(FirmwareConfig c) => JsonSerializer.Serialize(c, ConfigJson.Default.FirmwareConfig);
}
