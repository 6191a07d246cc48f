using System.Globalization;
using Microsoft.Extensions.Logging;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Pearl2.Services.Configuration;
using Pearl2.Services.Publishing;
using Pearl2.Services.Recording;
using Pearl2.Services.Upload;

namespace Pearl2.Services.Admin;

/// <summary>
/// Our firmware version as Pearl clients read it. They parse <c>major.minor.patch</c> and expect a Pearl firmware
/// of at least 4.24 (the first with REST API v2.0), so version a.b.c of pearl2d is answered as
/// <c>4.(24 + 100·a + b).c</c>: 0.1.0 → 4.25.0, 0.2.3 → 4.26.3, 1.0.0 → 4.124.0. It grows with ours, so "newer than"
/// checks stay true; the real version is in <c>revision</c> ("pearl2-0.1.0") and in /x-pearl2/firmware.
/// </summary>
public static class PearlVersion
{
    public static string Of(string ours)
    {
        var p = ours.Split('.');
        int Part(int i) => i < p.Length && int.TryParse(p[i], NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : 0;
        return $"4.{24 + 100 * Part(0) + Part(1)}.{Part(2)}";
    }

    public static string Revision(string ours) => $"pearl2-{ours}";
    /// <summary>Pearl clients switch on the product id for model quirks; 0 is no Epiphan model.</summary>
    public const int ProductId = 0;
    public const string ProductName = "Pearl2";
}

/// <summary>
/// The Pearl REST API v2.0 (shared/refs/pearl-rest-api-v2.0.openapi.yml): the paths, envelopes and field names that
/// tools written for Pearl devices call. A channel is a Pearl channel (id "1".."8") with one layout ("Default"); its
/// recorder has the same id; its capture source is an input; its publishers are the destinations of its config (id from
/// 0); AFU 0 is the device's upload target and a channel's own target has the channel's id. Viewers may read, operators may record and manage recordings, admins change settings and power.
/// </summary>
public static class PearlApi
{
    static readonly AdminAccess ViewerRole = new(AdminRole.Viewer), OperatorRole = new(AdminRole.Operator), AdminOnly = new(AdminRole.Admin);

    public static void Map(IEndpointRouteBuilder api, AdminContext c)
    {
        var meter = new SystemMeter(c.Time);
        // System
        api.MapGet("/system/status", ctx => ApiReply.Ok(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteString("date", c.Time.GetLocalNow().ToString("yyyy-MM-dd'T'HH:mm:sszzz", CultureInfo.InvariantCulture));
            w.WriteNumber("uptime", SystemMeter.UptimeSeconds());
            int load = meter.CpuLoad();
            w.WriteNumber("cpuload", load);
            w.WriteBoolean("cpuload_high", load >= 90);
            if (SystemMeter.CpuTemperature() is { } temp) w.WriteNumber("cputemp", temp);
            w.WriteNumber("cputemp_threshold", 80);
            w.WriteEndObject();
        })).WithMetadata(ViewerRole);
        api.MapGet("/system/firmware", ctx =>
        {
            var v = c.Device.Status().FirmwareVersion;
            return ApiReply.Ok(ctx, w =>
            {
                w.WriteStartObject();
                w.WriteString("version", PearlVersion.Of(v));
                w.WriteString("revision", PearlVersion.Revision(v));
                w.WriteNumber("product_id", PearlVersion.ProductId);
                w.WriteString("product_name", PearlVersion.ProductName);
                w.WriteEndObject();
            });
        }).WithMetadata(ViewerRole);
        api.MapGet("/system/firmware/version", ctx => ApiReply.OkString(ctx, PearlVersion.Of(c.Device.Status().FirmwareVersion))).WithMetadata(ViewerRole);
        api.MapGet("/system/firmware/revision", ctx => ApiReply.OkString(ctx, PearlVersion.Revision(c.Device.Status().FirmwareVersion))).WithMetadata(ViewerRole);
        api.MapGet("/system/firmware/product_id", ctx => ApiReply.Ok(ctx, w => w.WriteNumberValue(PearlVersion.ProductId))).WithMetadata(ViewerRole);
        api.MapGet("/system/firmware/product_name", ctx => ApiReply.OkString(ctx, PearlVersion.ProductName)).WithMetadata(ViewerRole);
        api.MapGet("/system/ident", ctx => WriteIdent(ctx, c.Store.Current.Device)).WithMetadata(ViewerRole);
        api.MapPut("/system/ident", ctx => PutIdentAsync(ctx, c)).WithMetadata(AdminOnly);
        api.MapPost("/system/control/reboot", ctx => PowerAsync(ctx, c, reboot: true)).WithMetadata(AdminOnly);
        api.MapPost("/system/control/shutdown", ctx => PowerAsync(ctx, c, reboot: false)).WithMetadata(AdminOnly);
        api.MapGet("/system/storages", ctx => ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            w.WriteStartObject(); w.WriteString("id", "main"); w.WriteEndObject();
            w.WriteEndArray();
        })).WithMetadata(ViewerRole);
        api.MapGet("/system/storages/{stid}/status", ctx => StorageStatusAsync(ctx, c)).WithMetadata(ViewerRole);

        // Channels, layouts, publishers
        api.MapGet("/channels", ctx => ChannelsAsync(ctx, c)).WithMetadata(ViewerRole);
        api.MapGet("/channels/status", ctx => ChannelsStatusAsync(ctx, c)).WithMetadata(ViewerRole);
        api.MapGet("/channels/{cid}/name", ctx => WithChannel(ctx, c, ch => ApiReply.OkString(ctx, ch.Name))).WithMetadata(ViewerRole);
        api.MapPut("/channels/{cid}/name", ctx => WithChannel(ctx, c, ch => RenameChannelAsync(ctx, c, ch))).WithMetadata(AdminOnly);
        api.MapGet("/channels/{cid}/preview", ctx => WithChannel(ctx, c, ch => PreviewAsync(ctx, c, ch))).WithMetadata(ViewerRole);
        api.MapGet("/channels/{cid}/layouts", ctx => WithChannel(ctx, c, _ => ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            w.WriteStartObject(); w.WriteString("id", "1"); w.WriteString("name", "Default"); w.WriteBoolean("active", true); w.WriteEndObject();
            w.WriteEndArray();
        }))).WithMetadata(ViewerRole);
        api.MapGet("/channels/{cid}/layouts/active", ctx => WithChannel(ctx, c, _ => ApiReply.Ok(ctx, w =>
        {
            w.WriteStartObject(); w.WriteString("id", "1"); w.WriteString("name", "Default"); w.WriteEndObject();
        }))).WithMetadata(ViewerRole);
        api.MapPut("/channels/{cid}/layouts/active", ctx => WithChannel(ctx, c, _ =>
            ctx.Request.Query["id"].ToString() is "" or "1" ? ApiReply.Ok(ctx) : ApiReply.NotFound(ctx, $"layout {ctx.Request.Query["id"]} not found: channel {ApiReply.Route(ctx, "cid")} has one layout, 1 (Default)")))
            .WithMetadata(OperatorRole);
        // Publishers: each destination of the channel's config (id: its place, from 0), started and stopped here.
        api.MapGet("/channels/{cid}/publishers", ctx => WithChannel(ctx, c, ch => ApiReply.Ok(ctx, w => WritePublisherList(w, ch)))).WithMetadata(ViewerRole);
        api.MapGet("/channels/{cid}/publishers/type", ctx => WithChannel(ctx, c, ch => ApiReply.Ok(ctx, w => WritePublisherList(w, ch)))).WithMetadata(ViewerRole);
        api.MapGet("/channels/{cid}/publishers/status", ctx => WithChannel(ctx, c, ch => ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            foreach (var p in ch.Publishers)
            {
                w.WriteStartObject(); w.WriteString("id", p.Id); w.WriteString("type", p.Type); w.WritePropertyName("status"); WritePublisherStatus(w, p); w.WriteEndObject();
            }
            w.WriteEndArray();
        }))).WithMetadata(ViewerRole);
        foreach (bool start in new[] { true, false })
        {
            string verb = start ? "start" : "stop";
            api.MapPost($"/channels/{{cid}}/publishers/control/{verb}", ctx => WithChannel(ctx, c, async ch =>
            {
                await c.Device.ControlPublishersAsync(ch.Number, null, start, AdminServer.Caller(ctx).User);
                await ApiReply.Ok(ctx);
            })).WithMetadata(OperatorRole);
            api.MapPost($"/channels/{{cid}}/publishers/{{pid}}/control/{verb}", ctx => WithPublisher(ctx, c, async (ch, p) =>
            {
                await c.Device.ControlPublishersAsync(ch.Number, p.Id, start, AdminServer.Caller(ctx).User);
                await ApiReply.Ok(ctx);
            })).WithMetadata(OperatorRole);
        }
        api.MapGet("/channels/{cid}/publishers/{pid}/status", ctx => WithPublisher(ctx, c, (_, p) => ApiReply.Ok(ctx, w => WritePublisherStatus(w, p)))).WithMetadata(ViewerRole);
        api.MapGet("/channels/{cid}/publishers/{pid}/type", ctx => WithPublisher(ctx, c, (_, p) => ApiReply.OkString(ctx, p.Type))).WithMetadata(ViewerRole);
        api.MapGet("/channels/{cid}/publishers/{pid}/name", ctx => WithPublisher(ctx, c, (_, p) => ApiReply.OkString(ctx, p.Name))).WithMetadata(ViewerRole);
        api.MapMethods("/channels/{cid}/publishers/{pid}/{**rest}", ["GET", "PUT", "POST", "DELETE"], ctx => WithPublisher(ctx, c, (_, p) =>
            ApiReply.Error(ctx, 405, "error", $"publisher {p.Id}: its settings are the channel's config here (channels[i].publishers, PUT /api/v2.0/x-pearl2/config or the panel)")))
            .WithMetadata(OperatorRole);

        // Recorders: one per channel, with the channel's id and name
        api.MapGet("/recorders", ctx => RecordersAsync(ctx, c, status: false)).WithMetadata(ViewerRole);
        api.MapGet("/recorders/status", ctx => RecordersAsync(ctx, c, status: true)).WithMetadata(ViewerRole);
        api.MapPost("/recorders/control/start", ctx => RecordControlAsync(ctx, c, start: true, ApiReply.Ids(ctx))).WithMetadata(OperatorRole);
        api.MapPost("/recorders/control/stop", ctx => RecordControlAsync(ctx, c, start: false, ApiReply.Ids(ctx))).WithMetadata(OperatorRole);
        api.MapGet("/recorders/{rid}/status", ctx => WithRecorder(ctx, c, ch => ApiReply.Ok(ctx, w => WriteRecorderStatus(w, ch)))).WithMetadata(ViewerRole);
        api.MapPost("/recorders/{rid}/control/start", ctx => WithRecorder(ctx, c, ch => RecordControlAsync(ctx, c, start: true, [ch.Number.ToString(CultureInfo.InvariantCulture)]))).WithMetadata(OperatorRole);
        api.MapPost("/recorders/{rid}/control/stop", ctx => WithRecorder(ctx, c, ch => RecordControlAsync(ctx, c, start: false, [ch.Number.ToString(CultureInfo.InvariantCulture)]))).WithMetadata(OperatorRole);
        api.MapGet("/recorders/{rid}/archive/files", ctx => WithRecorder(ctx, c, ch => ArchiveAsync(ctx, c, ch))).WithMetadata(OperatorRole);
        api.MapMethods("/recorders/{rid}/archive/files/{fid}", ["GET", "HEAD"], ctx => WithRecorder(ctx, c, ch => DownloadAsync(ctx, c, ch))).WithMetadata(OperatorRole);
        api.MapDelete("/recorders/{rid}/archive/files/{fid}", ctx => WithRecorder(ctx, c, ch => DeleteFileAsync(ctx, c, ch))).WithMetadata(OperatorRole);

        // Automatic file upload: AFU 0 is the device's target, each channel with its own target adds one (its channel's number).
        api.MapGet("/afu", ctx => ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            foreach (var u in c.Device.Status().Uploads) { w.WriteStartObject(); w.WriteString("id", u.Id); w.WriteEndObject(); }
            w.WriteEndArray();
        })).WithMetadata(ViewerRole);
        api.MapGet("/afu/status", ctx => ApiReply.Ok(ctx, w =>
        {
            var status = c.Device.Status();
            w.WriteStartArray();
            foreach (var u in status.Uploads) { w.WriteStartObject(); w.WriteString("id", u.Id); w.WritePropertyName("status"); WriteAfuStatus(w, status, u); w.WriteEndObject(); }
            w.WriteEndArray();
        })).WithMetadata(ViewerRole);
        api.MapGet("/afu/{aid}/status", ctx =>
        {
            var status = c.Device.Status();
            string aid = ApiReply.Route(ctx, "aid");
            return status.Uploads.FirstOrDefault(u => u.Id == aid) is { } u
                ? ApiReply.Ok(ctx, w => WriteAfuStatus(w, status, u))
                : ApiReply.NotFound(ctx, $"AFU destination '{aid}' not found (there are: {string.Join(", ", status.Uploads.Select(x => x.Id))})");
        }).WithMetadata(ViewerRole);

        // Inputs: each channel's capture source
        api.MapGet("/inputs", ctx => InputsAsync(ctx, c)).WithMetadata(ViewerRole);
    }

    static Task EmptyList(HttpContext ctx) => ApiReply.Ok(ctx, w => { w.WriteStartArray(); w.WriteEndArray(); });

    /// <summary>
    /// One upload target as Pearl's AfuStatus: state idle/uploading/error/disabled (connecting is "uploading", retrying and
    /// failed are "error"), the protocol (ftps is ftp there), the queue, the file in flight and the last error.
    /// </summary>
    static void WriteAfuStatus(Utf8JsonWriter w, DeviceStatus status, UploadStatus u)
    {
        w.WriteStartObject();
        w.WriteString("state", u.State switch { "idle" => "idle", "disabled" => "disabled", "failed" or "retrying" => "error", _ => "uploading" });
        w.WriteString("protocol", u.Protocol == "sftp" ? "sftp" : "ftp");
        w.WriteStartObject("queue"); w.WriteNumber("files", u.QueuedFiles); w.WriteNumber("size", u.QueuedBytes); w.WriteEndObject();
        if (u.File is { } file)
        {
            w.WriteStartObject("file");
            int cut = file.LastIndexOf('_');
            string channel = cut > 0 ? file[..cut] : "";
            var number = status.Channels.FirstOrDefault(ch => RecordingLibrary.SafeName(ch.Name) == channel)?.Number;
            w.WriteString("recorder", number?.ToString(CultureInfo.InvariantCulture) ?? "");
            w.WriteString("id", file);
            w.WriteNumber("uploaded", u.FileBytes);
            w.WriteNumber("size", u.FileSize);
            w.WriteEndObject();
        }
        if (u.LastError is { } error) { w.WriteStartObject("error"); w.WriteString("message", error); w.WriteEndObject(); }
        w.WriteEndObject();
    }

    static Task WriteIdent(HttpContext ctx, DeviceConfig d) => ApiReply.Ok(ctx, w =>
    {
        w.WriteStartObject();
        w.WriteString("name", d.Name);
        w.WriteString("location", d.Location);
        w.WriteString("description", d.Description);
        w.WriteEndObject();
    });

    /// <summary>The config as JSON text, copied so that a change never touches the running one.</summary>
    internal static FirmwareConfig Copy(FirmwareConfig config) => ConfigLoader.ParseText(ConfigLoader.ToJson(config));

    static async Task PutIdentAsync(HttpContext ctx, AdminContext c)
    {
        // Fields from a JSON body or from the query (as Pearl's PUT parameters), each optional.
        string? name = ctx.Request.Query["name"], location = ctx.Request.Query["location"], description = ctx.Request.Query["description"];
        if (ctx.Request.HasJsonContentType())
        {
            var body = await OwnApi.ReadJsonAsync(ctx);
            if (body is null) return;
            if (body.RootElement.ValueKind != JsonValueKind.Object) { await ApiReply.BadRequest(ctx, "the body must be a JSON object"); return; }
            string? Field(string n) => body.RootElement.TryGetProperty(n, out var v) ? v.ValueKind == JsonValueKind.String ? v.GetString() : "\0not a string" : null;
            name = Field("name") ?? name; location = Field("location") ?? location; description = Field("description") ?? description;
        }
        var next = Copy(c.Store.Current);
        if (name is not null) next.Device.Name = name;
        if (location is not null) next.Device.Location = location;
        if (description is not null) next.Device.Description = description;
        if (await OwnApi.ApplyAsync(ctx, c, next, "ident")) await WriteIdent(ctx, c.Store.Current.Device);
    }

    static async Task PowerAsync(HttpContext ctx, AdminContext c, bool reboot)
    {
        var caller = AdminServer.Caller(ctx);
        try
        {
            c.Audit.LogWarning("audit.power action={Action} user={User} from={From}", reboot ? "reboot" : "shutdown", caller.User, AdminServer.FromOf(ctx));
            // Answered first; the device goes down a moment later.
            await ApiReply.Ok(ctx);
            await ctx.Response.CompleteAsync();
            if (reboot) c.Device.Reboot(caller.By); else c.Device.Shutdown(caller.By);
        }
        catch (InvalidOperationException e) when (!ctx.Response.HasStarted) { await ApiReply.Error(ctx, 503, "error", e.Message); }
    }

    static Task StorageStatusAsync(HttpContext ctx, AdminContext c)
    {
        string id = ApiReply.Route(ctx, "stid");
        if (id is "external" or "maintenance") return ApiReply.Ok(ctx, w => { w.WriteStartObject(); w.WriteString("state", "nodev"); w.WriteEndObject(); });
        if (id != "main") return ApiReply.NotFound(ctx, $"storage {id} not found (main, external, maintenance)");
        var disk = c.Device.Status().Disk;
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteString("state", disk is null ? "nodev" : "ready");
            if (disk is not null) { w.WriteNumber("total", disk.TotalBytes); w.WriteNumber("free", disk.FreeBytes); }
            w.WriteEndObject();
        });
    }

    /// <summary>Runs <paramref name="then"/> with channel {cid}, or answers Pearl's 404.</summary>
    static Task WithChannel(HttpContext ctx, AdminContext c, Func<ChannelStatus, Task> then)
    {
        string id = ApiReply.Route(ctx, "cid");
        var channels = c.Device.Status().Channels;
        return int.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1 && n <= channels.Count
            ? then(channels[n - 1])
            : ApiReply.NotFound(ctx, $"channel {id} not found (1 to {channels.Count})");
    }

    static Task WithPublisher(HttpContext ctx, AdminContext c, Func<ChannelStatus, PublisherStatus, Task> then) => WithChannel(ctx, c, ch =>
    {
        string pid = ApiReply.Route(ctx, "pid");
        return ch.Publishers.FirstOrDefault(p => p.Id == pid) is { } p ? then(ch, p)
            : ApiReply.NotFound(ctx, $"publisher {pid} not found: channel {ch.Number} has {(ch.Publishers.Count == 0 ? "no publishers" : "publishers " + string.Join(", ", ch.Publishers.Select(x => x.Id)))}");
    });

    static void WritePublisherList(Utf8JsonWriter w, ChannelStatus ch)
    {
        w.WriteStartArray();
        foreach (var p in ch.Publishers) { w.WriteStartObject(); w.WriteString("id", p.Id); w.WriteString("type", p.Type); w.WriteString("name", p.Name); w.WriteEndObject(); }
        w.WriteEndArray();
    }

    /// <summary>A destination as Pearl's PublisherStatus, with SRT's figures and ours (bit rate, dropped GOPs) under statistics.</summary>
    static void WritePublisherStatus(Utf8JsonWriter w, PublisherStatus p)
    {
        w.WriteStartObject();
        w.WriteBoolean("is_configured", true);
        w.WriteBoolean("started", p.Started);
        w.WriteString("state", p.State);
        if (p.Since is { } since)
        {
            w.WriteNumber("duration", (long)Math.Max(0, (DateTimeOffset.UtcNow - since).TotalSeconds));
            w.WriteNumber("since", since.ToUnixTimeSeconds());
        }
        if (p.LastError is { } e) w.WriteString("description", e);
        w.WriteStartObject("statistics");
        w.WriteStartObject("total");
        w.WriteNumber("byte_sent", p.BytesSent);
        w.WriteNumber("dropped_gops", p.DroppedGops);
        w.WriteNumber("dropped_frames", p.DroppedFrames);
        if (p.Srt is { } srt)
        {
            w.WriteNumber("pkt_sent", srt.PacketsSent); w.WriteNumber("pkt_loss", srt.PacketsLost);
            w.WriteNumber("pkt_retrans", srt.PacketsRetransmitted); w.WriteNumber("pkt_drop", srt.PacketsDropped);
        }
        w.WriteEndObject();
        w.WriteStartObject("current");
        w.WriteNumber("send_rate", Math.Round(p.BitsPerSecond / 1e6, 3));
        if (p.Srt is { } s2) { w.WriteNumber("rtt", Math.Round(s2.RttMs, 3)); w.WriteNumber("estimated_bandwidth", Math.Round(s2.BandwidthMbps, 3)); }
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteNumber("reconnections", p.Reconnections);
        w.WriteEndObject();
    }

    static Task WithRecorder(HttpContext ctx, AdminContext c, Func<ChannelStatus, Task> then)
    {
        string id = ApiReply.Route(ctx, "rid");
        var channels = c.Device.Status().Channels;
        return int.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1 && n <= channels.Count
            ? then(channels[n - 1])
            : ApiReply.NotFound(ctx, $"recorder {id} not found (1 to {channels.Count})");
    }

    /// <summary>
    /// A list of channels (or their recorders) as Pearl answers it: those named by <c>ids=</c> (all without it), each an
    /// object with its id and name, then what <paramref name="rest"/> writes.
    /// </summary>
    static Task EachChannel(HttpContext ctx, IReadOnlyList<ChannelStatus> channels, Action<Utf8JsonWriter, ChannelStatus> rest)
    {
        var ids = ApiReply.Ids(ctx);
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            foreach (var ch in channels)
            {
                string id = ch.Number.ToString(CultureInfo.InvariantCulture);
                if (ids is not null && !ids.Contains(id)) continue;
                w.WriteStartObject();
                w.WriteString("id", id);
                w.WriteString("name", ch.Name);
                rest(w, ch);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }

    static Task ChannelsAsync(HttpContext ctx, AdminContext c)
    {
        bool publishers = ApiReply.Flag(ctx, "publishers"), encoders = ApiReply.Flag(ctx, "encoders"), layout = ApiReply.Flag(ctx, "active_layout");
        var config = c.Store.Current;
        return EachChannel(ctx, c.Device.Status().Channels, (w, ch) =>
        {
            var cc = ch.Number <= config.Channels.Count ? config.Channels[ch.Number - 1] : null;
            if (publishers)
            {
                w.WriteStartArray("publishers");
                bool withStatus = ApiReply.Flag(ctx, "publishers-status");
                foreach (var p in ch.Publishers)
                {
                    w.WriteStartObject(); w.WriteString("id", p.Id); w.WriteString("type", p.Type); w.WriteString("name", p.Name);
                    if (withStatus) { w.WritePropertyName("status"); WritePublisherStatus(w, p); }
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            if (encoders)
            {
                w.WriteStartArray("encoders");
                w.WriteStartObject();
                w.WriteString("id", "video");
                w.WriteString("type", "video");
                w.WriteString("name", "H.264");
                w.WriteString("resolution", $"{ch.Width}x{ch.Height}");
                w.WriteNumber("framerate", Math.Clamp(ch.Fps, 1, 99));
                w.WriteNumber("bitrate", Math.Clamp(ch.BitrateKbps, 1, 50000));
                w.WriteEndObject();
                if (cc?.Audio is { Enabled: true } audio)
                {
                    w.WriteStartObject();
                    w.WriteString("id", "audio");
                    w.WriteString("type", "audio");
                    w.WriteString("name", "AAC");
                    w.WriteNumber("bitrate", audio.BitrateKbps);
                    w.WriteNumber("channels", Math.Clamp(audio.Channels, 1, 2));
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            if (layout)
            {
                w.WriteStartObject("active_layout");
                w.WriteString("id", "1");
                w.WriteString("name", "Default");
                w.WriteStartObject("sources");
                w.WriteStartArray("video");
                w.WriteStartObject(); w.WriteString("id", InputId(ch.Number, cc)); w.WriteString("name", InputName(ch.Number, cc)); w.WriteEndObject();
                w.WriteEndArray();
                w.WriteEndObject();
                w.WriteEndObject();
            }
        });
    }

    /// <summary>Not in the reference: each channel's live state (what /channels does not carry) in the Pearl style.</summary>
    static Task ChannelsStatusAsync(HttpContext ctx, AdminContext c) =>
        EachChannel(ctx, c.Device.Status().Channels, (w, ch) =>
        {
            w.WriteStartObject("status");
            w.WriteString("state", ch.FramesEncoded > 0 ? "started" : "starting");
            w.WriteBoolean("streaming", ch.Streaming);
            w.WriteBoolean("login_required", ch.LoginRequired);
            w.WriteString("video", $"{ch.Width}x{ch.Height}@{ch.Fps}");
            w.WriteNumber("bitrate", ch.BitrateKbps);
            w.WriteNumber("frames", ch.FramesEncoded);
            w.WriteStartObject("viewers");
            foreach (var (door, n) in ch.Viewers) w.WriteNumber(door, n);
            w.WriteEndObject();
            w.WriteString("recorder", RecorderWord(ch.Recorder));
            w.WriteEndObject();
        });

    static async Task RenameChannelAsync(HttpContext ctx, AdminContext c, ChannelStatus ch)
    {
        string? name = ctx.Request.Query["name"];
        if (name is null && ctx.Request.HasJsonContentType())
        {
            var body = await OwnApi.ReadJsonAsync(ctx);
            if (body is null) return;
            if (body.RootElement.ValueKind == JsonValueKind.Object && body.RootElement.TryGetProperty("name", out var v) && v.ValueKind == JsonValueKind.String) name = v.GetString();
        }
        if (string.IsNullOrEmpty(name)) { await ApiReply.BadRequest(ctx, "name: the new name is missing (?name=…)"); return; }
        var next = Copy(c.Store.Current);
        next.Channels[ch.Number - 1].Name = name;
        if (await OwnApi.ApplyAsync(ctx, c, next, $"channel {ch.Number} name")) await ApiReply.OkString(ctx, name);
    }

    /// <summary>
    /// Why a caller may not see channel <paramref name="ch"/>'s pictures through the admin doors, or null. The channel's
    /// own switches hold here too: for users of the viewer role, a private channel (streaming off) is shown only to the
    /// device itself and a channel with a viewer login not at all (its login is its own, not a panel user's: they open
    /// its stream page). Operators and admins, who can flip both switches, see every channel.
    /// </summary>
    internal static string? PicturesRefused(HttpContext ctx, ChannelStatus ch)
    {
        if (AdminServer.Caller(ctx).Role >= AdminRole.Operator) return null;
        var peer = ctx.Connection.RemoteIpAddress;
        bool loopback = peer is not null && System.Net.IPAddress.IsLoopback(peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer);
        if (!ch.Streaming && !loopback) return $"streaming is off for channel {ch.Number}";
        if (ch.LoginRequired) return $"channel {ch.Number} has its own viewer login: open its stream page (port {ch.HttpPort})";
        return null;
    }

    static async Task PreviewAsync(HttpContext ctx, AdminContext c, ChannelStatus ch)
    {
        if (PicturesRefused(ctx, ch) is { } why) { await ApiReply.Error(ctx, 403, "error", why); return; }
        // resolution: auto, W or WxH (kept inside that box: previews always keep the picture's aspect ratio).
        string resolution = ctx.Request.Query["resolution"].ToString();
        string format = ctx.Request.Query["format"].ToString();
        if (format is not ("" or "jpg" or "jpeg")) { await ApiReply.BadRequest(ctx, $"format: '{format}' is not supported here (jpg)"); return; }
        int? width = null;
        if (resolution is not ("" or "auto"))
        {
            var parts = resolution.Split('x');
            if (parts.Length is < 1 or > 2 || !parts.All(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v is > 0 and <= 8192))
            { await ApiReply.BadRequest(ctx, $"resolution: '{resolution}' is not auto, a width or WIDTHxHEIGHT"); return; }
            width = int.Parse(parts[0], CultureInfo.InvariantCulture);
            if (parts.Length == 2) width = Math.Min(width.Value, (int)((long)int.Parse(parts[1], CultureInfo.InvariantCulture) * ch.Width / Math.Max(1, ch.Height)));
        }
        else width = Math.Min(ch.Width, 640);
        var jpeg = await c.Device.PreviewAsync(ch.Number, width);
        if (jpeg is null) { await ApiReply.Error(ctx, 503, "error", $"channel {ch.Number} has no picture yet"); return; }
        ctx.Response.ContentType = "image/jpeg";
        ctx.Response.Headers.CacheControl = "no-store";
        ctx.Response.ContentLength = jpeg.Length;
        await ctx.Response.Body.WriteAsync(jpeg);
    }

    static string RecorderWord(RecorderStatus? r) => r?.State switch
    {
        RecorderState.Recording => "started",
        RecorderState.DiskFull or RecorderState.Failed => "error",
        null => "disabled",
        _ => "stopped",
    };

    static void WriteRecorderStatus(Utf8JsonWriter w, ChannelStatus ch)
    {
        var r = ch.Recorder;
        w.WriteStartObject();
        w.WriteString("state", RecorderWord(r));
        if (r?.State is RecorderState.DiskFull or RecorderState.Failed)
            w.WriteString("description", r.LastError ?? (r.State == RecorderState.DiskFull ? "the disk is full" : "recording failed"));
        if (r is { State: RecorderState.Recording, StartedAt: { } since })
        {
            w.WriteNumber("duration", Math.Max(0, (long)(DateTimeOffset.Now - since).TotalSeconds));
            w.WriteString("active", "1");
            w.WriteString("total", "1");
        }
        w.WriteEndObject();
    }

    static Task RecordersAsync(HttpContext ctx, AdminContext c, bool status) =>
        EachChannel(ctx, c.Device.Status().Channels, (w, ch) =>
        {
            if (status) { w.WritePropertyName("status"); WriteRecorderStatus(w, ch); }
            else w.WriteBoolean("multisource", false);
        });

    static async Task RecordControlAsync(HttpContext ctx, AdminContext c, bool start, IReadOnlyCollection<string>? ids)
    {
        var caller = AdminServer.Caller(ctx);
        var channels = c.Device.Status().Channels;
        var chosen = new List<int>();
        foreach (var id in ids ?? channels.Select(ch => ch.Number.ToString(CultureInfo.InvariantCulture)))
        {
            if (!int.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1 || n > channels.Count)
            { await ApiReply.NotFound(ctx, $"recorder {id} not found (1 to {channels.Count})"); return; }
            chosen.Add(n);
        }
        c.Audit.LogInformation("audit.record action={Action} recorders={Recorders} user={User} from={From}", start ? "start" : "stop",
            ids is null ? "all" : string.Join(',', chosen), caller.User, AdminServer.FromOf(ctx));
        // Pearl's control calls do not wait for the recorders; the stop (which finishes files) goes on after the answer.
        if (ids is null) _ = start ? c.Device.StartRecordingAsync(null, caller.By) : c.Device.StopRecordingAsync(null, caller.By);
        else foreach (int n in chosen) _ = start ? c.Device.StartRecordingAsync(n, caller.By) : c.Device.StopRecordingAsync(n, caller.By);
        await ApiReply.Ok(ctx);
    }

    /// <summary>Recorder {rid}'s files: the recordings whose names start with its channel's name.</summary>
    internal static List<RecordingEntry> FilesOf(AdminContext c, ChannelStatus ch)
    {
        if (c.Library is not { } lib) return [];
        string prefix = RecordingLibrary.SafeName(ch.Name) + "_";
        return lib.List().Where(e => e.Name.StartsWith(prefix, StringComparison.Ordinal)
            && RecordingLibrary.StartOf(e.Name) is not null && e.Name.Length > prefix.Length
            && char.IsAsciiDigit(e.Name[prefix.Length])).ToList();
    }

    static Task ArchiveAsync(HttpContext ctx, AdminContext c, ChannelStatus ch)
    {
        int from = int.TryParse(ctx.Request.Query["from"], NumberStyles.None, CultureInfo.InvariantCulture, out int f) ? f : 0;
        int limit = int.TryParse(ctx.Request.Query["limit"], NumberStyles.None, CultureInfo.InvariantCulture, out int l) && l > 0 ? l : int.MaxValue;
        var files = FilesOf(c, ch);
        string rid = ch.Number.ToString(CultureInfo.InvariantCulture);
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            foreach (var e in files.Skip(from).Take(limit)) WriteArchiveFile(w, e, rid);
            w.WriteEndArray();
        });
    }

    internal static void WriteArchiveFile(Utf8JsonWriter w, RecordingEntry e, string rid)
    {
        w.WriteStartObject();
        w.WriteString("id", e.Name);
        w.WriteString("name", Path.GetFileNameWithoutExtension(e.Name));
        w.WriteString("extension", Path.GetExtension(e.Name).TrimStart('.'));
        w.WriteBoolean("recording", e.FileState == RecordingFileState.Recording);
        w.WriteBoolean("downloaded", false);
        var created = e.Started ?? new DateTimeOffset(e.Modified, TimeSpan.Zero);
        w.WriteString("created", created.ToString("yyyy-MM-dd'T'HH:mm:sszzz", CultureInfo.InvariantCulture));
        w.WriteNumber("duration", (long)(e.Duration?.TotalSeconds ?? 0));
        w.WriteNumber("size", e.Bytes);
        w.WriteString("recorder", rid);
        w.WriteBoolean("uploading", false);
        w.WriteString("event_id", "");
        w.WriteEndObject();
    }

    /// <summary>The file {fid} of recorder {rid}: only a name in its listing (never a path) is found.</summary>
    static RecordingEntry? FileOf(HttpContext ctx, AdminContext c, ChannelStatus ch)
    {
        string fid = ApiReply.Route(ctx, "fid");
        return FilesOf(c, ch).FirstOrDefault(e => e.Name == fid);
    }

    static async Task DownloadAsync(HttpContext ctx, AdminContext c, ChannelStatus ch)
    {
        if (FileOf(ctx, c, ch) is not { } e || c.Library?.PathOf(e.Name) is not { } path)
        { await ApiReply.NotFound(ctx, $"file {ApiReply.Route(ctx, "fid")} not found in recorder {ch.Number}"); return; }
        string type = e.Name.EndsWith(".mp4", StringComparison.Ordinal) ? "video/mp4" : "video/mp2t";
        ctx.Response.Headers.ContentDisposition = $"attachment; filename=\"{e.Name}\"";
        // Range requests (resume, seeking players), ETag and Last-Modified as a static file server answers them.
        await Results.File(path, type, enableRangeProcessing: true, lastModified: e.Modified).ExecuteAsync(ctx);
    }

    static async Task DeleteFileAsync(HttpContext ctx, AdminContext c, ChannelStatus ch)
    {
        if (FileOf(ctx, c, ch) is not { } e || c.Library is not { } lib)
        { await ApiReply.NotFound(ctx, $"file {ApiReply.Route(ctx, "fid")} not found in recorder {ch.Number}"); return; }
        try
        {
            lib.Delete(e.Name);
            c.Audit.LogWarning("audit.recording_deleted file={File} user={User} from={From}", e.Name, AdminServer.Caller(ctx).User, AdminServer.FromOf(ctx));
            await ApiReply.Ok(ctx);
        }
        catch (InvalidOperationException x) { await ApiReply.Error(ctx, 409, "error", x.Message); }
        catch (IOException x) { await ApiReply.Error(ctx, 500, "error", $"{e.Name} could not be deleted: {x.Message}"); }
    }

    static string InputId(int channel, ChannelConfig? cc) => cc?.Source switch
    {
        "testpattern" or null => $"testpattern{channel}",
        "capture" => "capture",
        var dev => Path.GetFileName(dev),
    };

    static string InputName(int channel, ChannelConfig? cc) => cc?.Source switch
    {
        "testpattern" or null => $"Test pattern {channel}",
        "capture" => "Capture",
        var dev => dev,
    };

    static Task InputsAsync(HttpContext ctx, AdminContext c)
    {
        var ids = ApiReply.Ids(ctx);
        var types = ctx.Request.Query["types"].ToString();
        var config = c.Store.Current;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            for (int i = 0; i < config.Channels.Count; i++)
            {
                var cc = config.Channels[i];
                string id = InputId(i + 1, cc);
                if (!seen.Add(id) || (ids is not null && !ids.Contains(id))) continue;
                // A test pattern is built in; a V4L2 device is on the board (HDMI bridge) or USB: both count as embedded here.
                if (types.Length > 0 && !types.Split(',').Contains("embedded")) continue;
                w.WriteStartObject();
                w.WriteString("id", id);
                w.WriteString("name", InputName(i + 1, cc));
                w.WriteString("real_device_name", cc.Source == "testpattern" ? "Test pattern and tone" : cc.Source);
                w.WriteBoolean("audio", cc.Audio.Enabled);
                w.WriteBoolean("video", true);
                w.WriteString("type", "embedded");
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }
}
