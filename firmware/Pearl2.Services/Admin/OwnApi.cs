using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Pearl2.Services.Configuration;
using Pearl2.Services.Recording;

namespace Pearl2.Services.Admin;

/// <summary>
/// What the device does that the Pearl API has no path for, under <c>/api/v2.0/x-pearl2</c> in the same envelope:
/// first-run setup, panel login sessions, the whole config with per-field errors, users, firmware update state and
/// "check now", the streaming switch, the port plan, the live log, the HTTPS certificate, and every recording.
/// </summary>
public static class OwnApi
{
    static readonly AdminAccess Open = new(null), ViewerRole = new(AdminRole.Viewer), OperatorRole = new(AdminRole.Operator), AdminOnly = new(AdminRole.Admin);

    public static void Map(IEndpointRouteBuilder x, AdminContext c)
    {
        x.MapGet("/setup", ctx => ApiReply.Ok(ctx, w => { w.WriteStartObject(); w.WriteBoolean("pending", c.Users.SetupPending); w.WriteEndObject(); })).WithMetadata(Open);
        x.MapPost("/setup", ctx => SetupAsync(ctx, c)).WithMetadata(Open);
        x.MapPost("/login", ctx => LoginAsync(ctx, c)).WithMetadata(Open);
        x.MapPost("/logout", ctx => LogoutAsync(ctx, c)).WithMetadata(Open);
        x.MapGet("/session", ctx => AdminServer.MaybeCaller(ctx) is { } who
            ? ApiReply.Ok(ctx, w => WriteSession(w, who))
            : ApiReply.Error(ctx, 401, "error", c.Users.SetupPending ? "setup pending" : "not logged in")).WithMetadata(Open);
        x.MapGet("/status", ctx => StatusAsync(ctx, c)).WithMetadata(ViewerRole);
        x.MapGet("/levels", ctx => LevelsAsync(ctx, c)).WithMetadata(ViewerRole);
        x.MapGet("/network", ctx => NetworkAsync(ctx)).WithMetadata(ViewerRole);
        x.MapGet("/config", ctx => ApiReply.Ok(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("version", c.Store.Version);
            w.WritePropertyName("config");
            w.WriteRawValue(ConfigLoader.ToJson(c.Store.Current));
            w.WriteEndObject();
        })).WithMetadata(AdminOnly);
        x.MapPut("/config", ctx => PutConfigAsync(ctx, c)).WithMetadata(AdminOnly);
        x.MapGet("/users", ctx => ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            foreach (var (name, role) in c.Users.List()) { w.WriteStartObject(); w.WriteString("name", name); w.WriteString("role", AdminRoles.Name(role)); w.WriteEndObject(); }
            w.WriteEndArray();
        })).WithMetadata(AdminOnly);
        x.MapPut("/users/{name}", ctx => PutUserAsync(ctx, c)).WithMetadata(AdminOnly);
        x.MapDelete("/users/{name}", ctx => DeleteUserAsync(ctx, c)).WithMetadata(AdminOnly);
        x.MapPut("/password", ctx => PasswordAsync(ctx, c)).WithMetadata(ViewerRole);
        x.MapGet("/firmware", ctx => FirmwareAsync(ctx, c)).WithMetadata(AdminOnly);
        x.MapPost("/firmware/check", ctx => CheckAsync(ctx, c)).WithMetadata(AdminOnly);
        x.MapPost("/streaming/start", ctx => StreamingAsync(ctx, c, true)).WithMetadata(OperatorRole);
        x.MapPost("/streaming/stop", ctx => StreamingAsync(ctx, c, false)).WithMetadata(OperatorRole);
        x.MapGet("/ports", ctx => ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            foreach (var p in c.Store.Ports.Ports)
            {
                w.WriteStartObject();
                w.WriteNumber("port", p.Port);
                w.WriteString("protocol", p.Protocol == PortProtocol.Tcp ? "tcp" : "udp");
                w.WriteString("owner", p.Owner);
                w.WriteString("field", p.Field);
                w.WriteEndObject();
            }
            // The media server's port is drawn at each start: known only while it runs.
            if (c.Discovery?.UpnpPort is > 0 and var upnp)
            {
                w.WriteStartObject();
                w.WriteNumber("port", upnp);
                w.WriteString("protocol", "tcp");
                w.WriteString("owner", "UPnP media server (random at each start)");
                w.WriteString("field", "discovery.upnp");
                w.WriteEndObject();
            }
            w.WriteEndArray();
        })).WithMetadata(ViewerRole);
        x.MapGet("/discovery", ctx => DiscoveryAsync(ctx, c)).WithMetadata(ViewerRole);
        x.MapPut("/discovery", ctx => PutDiscoveryAsync(ctx, c)).WithMetadata(AdminOnly);
        x.MapGet("/log", ctx => LogAsync(ctx, c)).WithMetadata(AdminOnly);
        x.MapGet("/audit", ctx => ApiReply.Ok(ctx, w => { w.WriteStartArray(); foreach (var l in c.Audit.Tail(200)) w.WriteStringValue(l); w.WriteEndArray(); })).WithMetadata(AdminOnly);
        x.MapGet("/certificate", ctx => CertificateAsync(ctx, c)).WithMetadata(ViewerRole);
        x.MapPut("/certificate", ctx => PutCertificateAsync(ctx, c)).WithMetadata(AdminOnly);
        x.MapGet("/recordings", ctx => RecordingsAsync(ctx, c)).WithMetadata(OperatorRole);
    }

    /// <summary>mDNS and UPnP: switched on or off, the name and services announced, the media server's port.</summary>
    static Task DiscoveryAsync(HttpContext ctx, AdminContext c)
    {
        var config = c.Store.Current.Discovery;
        var s = c.Discovery?.Status();
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteBoolean("mdns", config.Mdns);
            w.WriteBoolean("upnp", config.Upnp);
            w.WriteString("host_name", config.HostName);
            w.WriteBoolean("available", c.Discovery is not null);
            if (s is not null)
            {
                w.WriteBoolean("mdns_running", s.Mdns);
                if (s.HostName is { } host) w.WriteString("mdns_host", host + ".local");
                w.WriteStartArray("mdns_services");
                foreach (var svc in s.Services)
                {
                    w.WriteStartObject();
                    w.WriteString("name", svc.Instance); w.WriteString("type", svc.Type); w.WriteNumber("port", svc.Port);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteBoolean("upnp_running", s.Upnp);
                w.WriteNumber("upnp_port", s.UpnpPort);
                w.WriteString("uuid", s.Uuid);
                w.WriteString("serial", s.Serial);
            }
            w.WriteEndObject();
        });
    }

    /// <summary>Switches mDNS or UPnP (either field may be left out) and sets the host name: a config change, applied at once and saved.</summary>
    static async Task PutDiscoveryAsync(HttpContext ctx, AdminContext c)
    {
        using var body = await ReadJsonAsync(ctx);
        if (body is null) return;
        if (body.RootElement.ValueKind != JsonValueKind.Object) { await ApiReply.BadRequest(ctx, "the body must be a JSON object"); return; }
        var next = PearlApi.Copy(c.Store.Current);
        foreach (var p in body.RootElement.EnumerateObject())
        {
            switch (p.Name)
            {
                case "mdns" or "upnp" when p.Value.ValueKind is JsonValueKind.True or JsonValueKind.False:
                    if (p.Name == "mdns") next.Discovery.Mdns = p.Value.GetBoolean(); else next.Discovery.Upnp = p.Value.GetBoolean();
                    break;
                case "host_name" when p.Value.ValueKind == JsonValueKind.String:
                    next.Discovery.HostName = p.Value.GetString()!;
                    break;
                case "mdns" or "upnp" or "host_name":
                    await ApiReply.BadRequest(ctx, $"discovery.{p.Name}: must be {(p.Name == "host_name" ? "a string" : "true or false")}");
                    return;
                default:
                    await ApiReply.BadRequest(ctx, $"discovery.{p.Name}: unknown field (known: mdns, upnp, host_name)");
                    return;
            }
        }
        if (await ApplyAsync(ctx, c, next, "discovery")) await DiscoveryAsync(ctx, c);
    }

    /// <summary>The request's JSON body, or null after answering 400 (not JSON) or 413 (too large).</summary>
    internal static async Task<JsonDocument?> ReadJsonAsync(HttpContext ctx)
    {
        try { return await JsonDocument.ParseAsync(ctx.Request.Body, new JsonDocumentOptions { MaxDepth = 32 }, ctx.RequestAborted); }
        catch (JsonException e) { await ApiReply.BadRequest(ctx, $"the body is not JSON: {e.Message.Split(" Path:")[0]}"); return null; }
    }

    static string? Str(JsonDocument d, string name) =>
        d.RootElement.ValueKind == JsonValueKind.Object && d.RootElement.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    /// <summary>Applies <paramref name="next"/> through the config store; false after answering 400 with every "path: reason".</summary>
    internal static async Task<bool> ApplyAsync(HttpContext ctx, AdminContext c, FirmwareConfig next, string what)
    {
        var caller = AdminServer.Caller(ctx);
        var change = await c.Device.ApplyConfigAsync(next, caller.By);
        if (!change.Applied)
        {
            await ApiReply.BadRequest(ctx, $"refused: {string.Join("; ", change.Errors)}", change.Errors);
            return false;
        }
        c.Audit.LogWarning("audit.config_changed what=\"{What}\" version={Version} user={User} from={From}", what, change.Version, caller.User, AdminServer.FromOf(ctx));
        return true;
    }

    static void WriteSession(Utf8JsonWriter w, AdminCaller who)
    {
        w.WriteStartObject();
        w.WriteString("user", who.User);
        w.WriteString("role", AdminRoles.Name(who.Role));
        if (who.Session is { } s) w.WriteString("csrf", s.Csrf);
        w.WriteEndObject();
    }

    static async Task SetupAsync(HttpContext ctx, AdminContext c)
    {
        if (!c.Users.SetupPending) { await ApiReply.Error(ctx, 409, "error", "setup is done: log in"); return; }
        using var body = await ReadJsonAsync(ctx);
        if (body is null) return;
        string user = Str(body, "username") ?? "admin", password = Str(body, "password") ?? "";
        if (AdminUsers.CheckName(user) is { } badName) { await ApiReply.BadRequest(ctx, $"username: {badName}"); return; }
        if (AdminUsers.CheckPassword(password) is { } badPassword) { await ApiReply.BadRequest(ctx, $"password: {badPassword}"); return; }
        if (!await Task.Run(() => c.Users.Setup(user, password, AdminServer.FromOf(ctx)))) { await ApiReply.Error(ctx, 409, "error", "setup is done: log in"); return; }
        var session = await AdminServer.LoginAsync(ctx, c, user, password);
        await ApiReply.Ok(ctx, w => WriteSession(w, new AdminCaller(user, AdminRole.Admin, session)));
    }

    static async Task LoginAsync(HttpContext ctx, AdminContext c)
    {
        if (AdminServer.IsThrottled(ctx, c))
        {
            ctx.Response.Headers.RetryAfter = "60";
            await ApiReply.Error(ctx, 429, "error", "too many failed logins from this address: try again later");
            return;
        }
        using var body = await ReadJsonAsync(ctx);
        if (body is null) return;
        string user = Str(body, "username") ?? "", password = Str(body, "password") ?? "";
        var session = await AdminServer.LoginAsync(ctx, c, user, password);
        if (session is null)
        {
            if (AdminServer.IsThrottled(ctx, c)) { ctx.Response.Headers.RetryAfter = "60"; await ApiReply.Error(ctx, 429, "error", "too many failed logins from this address: try again later"); }
            else await ApiReply.Error(ctx, 401, "error", "wrong user name or password");
            return;
        }
        await ApiReply.Ok(ctx, w => WriteSession(w, new AdminCaller(session.User, session.Role, session)));
    }

    static Task LogoutAsync(HttpContext ctx, AdminContext c)
    {
        if (ctx.Request.Cookies[AdminSessions.Cookie] is { } id && c.Sessions.Find(id) is { } s)
        {
            // Only with the session's CSRF token: another site must not log the user out either.
            if (!AdminSessions.CsrfMatches(s, ctx.Request.Headers[AdminSessions.CsrfHeader])) return ApiReply.Error(ctx, 403, "error", $"the {AdminSessions.CsrfHeader} header is missing or wrong");
            c.Sessions.End(id);
            c.Audit.LogInformation("audit.logout user={User} from={From}", s.User, AdminServer.FromOf(ctx));
        }
        ctx.Response.Cookies.Delete(AdminSessions.Cookie, new CookieOptions { Path = "/" });
        return ApiReply.Ok(ctx);
    }

    static Task StatusAsync(HttpContext ctx, AdminContext c)
    {
        var s = c.Device.Status();
        var ports = c.Store.Ports;
        string host = c.HostAddress();
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteString("name", c.Store.Current.Device.Name);
            w.WriteString("state", s.State.ToString().ToLowerInvariant());
            w.WriteBoolean("recording", s.Recording);
            w.WriteBoolean("recording_fault", s.RecordingFault);
            w.WriteBoolean("streaming", s.Streaming);
            w.WriteString("firmware", s.FirmwareVersion);
            w.WriteNumber("config_version", s.ConfigVersion);
            w.WriteBoolean("setup_pending", c.Users.SetupPending);
            w.WriteStartArray("channels");
            foreach (var ch in s.Channels)
            {
                w.WriteStartObject();
                w.WriteNumber("id", ch.Number);
                w.WriteString("name", ch.Name);
                w.WriteBoolean("streaming", ch.Streaming);
                w.WriteBoolean("login_required", ch.LoginRequired);
                w.WriteNumber("width", ch.Width);
                w.WriteNumber("height", ch.Height);
                w.WriteNumber("fps", ch.Fps);
                w.WriteNumber("bitrate_kbps", ch.BitrateKbps);
                w.WriteNumber("frames", ch.FramesEncoded);
                w.WriteStartObject("viewers");
                foreach (var (door, n) in ch.Viewers) w.WriteNumber(door, n);
                w.WriteEndObject();
                w.WriteStartObject("urls");
                w.WriteString("rtsp", $"rtsp://{host}:{ch.RtspPort}/stream.sdp");
                w.WriteString("flv", $"http://{host}:{ch.HttpPort}/stream.flv");
                w.WriteString("ts", $"http://{host}:{ch.HttpPort}/stream.ts");
                w.WriteString("page", $"http://{host}:{ch.HttpPort}/");
                w.WriteEndObject();
                w.WriteStartObject("recorder");
                var r = ch.Recorder;
                w.WriteString("state", r?.State.ToString().ToLowerInvariant() ?? "none");
                if (r?.CurrentFile is { } file) w.WriteString("file", Path.GetFileName(file));
                if (r?.StartedAt is { } since) w.WriteString("since", since.ToString("O", CultureInfo.InvariantCulture));
                if (r?.LastError is { } err) w.WriteString("error", err);
                w.WriteEndObject();
                w.WriteStartArray("publishers");
                foreach (var pub in ch.Publishers)
                {
                    w.WriteStartObject();
                    w.WriteString("id", pub.Id); w.WriteString("name", pub.Name); w.WriteString("type", pub.Type); w.WriteString("target", pub.Target);
                    w.WriteString("state", pub.State); w.WriteBoolean("started", pub.Started);
                    w.WriteNumber("bits_per_second", pub.BitsPerSecond); w.WriteNumber("bytes_sent", pub.BytesSent);
                    w.WriteNumber("dropped_gops", pub.DroppedGops); w.WriteNumber("reconnections", pub.Reconnections);
                    if (pub.Since is { } ps) w.WriteString("since", ps.ToString("O", CultureInfo.InvariantCulture));
                    if (pub.Srt is { } srt) { w.WriteNumber("rtt_ms", Math.Round(srt.RttMs, 2)); w.WriteNumber("packets_lost", srt.PacketsLost); w.WriteNumber("packets_retransmitted", srt.PacketsRetransmitted); }
                    if (pub.LastError is { } pe) w.WriteString("error", pe);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (s.Disk is { } d)
            {
                w.WriteStartObject("disk");
                w.WriteNumber("total", d.TotalBytes); w.WriteNumber("free", d.FreeBytes); w.WriteNumber("recordings", d.RecordingBytes);
                w.WriteEndObject();
            }
            if (s.Panel is { } p)
            {
                w.WriteStartObject("panel");
                w.WriteString("record_led", p.RecordLed); w.WriteString("stream_led", p.StreamLed); w.WriteString("status_led", p.StatusLed);
                w.WriteStartArray("display"); foreach (var l in p.DisplayLines) w.WriteStringValue(l); w.WriteEndArray();
                w.WriteEndObject();
            }
            // "upload": the device's target, as before; "uploads": every target with its files (the panel's upload card).
            if (s.Upload is { } du) { w.WritePropertyName("upload"); WriteUpload(w, du, files: false); }
            w.WriteStartArray("uploads");
            foreach (var u in s.Uploads) WriteUpload(w, u, files: true);
            w.WriteEndArray();
            w.WriteStartObject("ports");
            w.WriteNumber("admin_http", ports.AdminPort);
            w.WriteNumber("admin_https", ports.AdminHttpsPort);
            w.WriteEndObject();
            w.WriteEndObject();
        });
    }

    static void WriteUpload(Utf8JsonWriter w, Upload.UploadStatus u, bool files)
    {
        w.WriteStartObject();
        w.WriteString("id", u.Id);
        if (u.Channel is { } ch) w.WriteString("channel", ch);
        w.WriteString("state", u.State); w.WriteString("protocol", u.Protocol); w.WriteString("host", u.Host);
        w.WriteNumber("queued_files", u.QueuedFiles); w.WriteNumber("queued_bytes", u.QueuedBytes);
        w.WriteNumber("uploaded", u.Uploaded);
        if (u.File is { } f) { w.WriteString("file", f); w.WriteNumber("file_bytes", u.FileBytes); w.WriteNumber("file_size", u.FileSize); w.WriteNumber("bytes_per_second", Math.Round(u.BytesPerSecond)); }
        if (u.LastError is { } e) w.WriteString("error", e);
        if (files)
        {
            w.WriteStartArray("files");
            foreach (var file in u.Files)
            {
                w.WriteStartObject();
                w.WriteString("name", file.Name); w.WriteString("state", file.State);
                w.WriteNumber("bytes", file.Bytes); w.WriteNumber("size", file.Size);
                if (file.State == "uploading") w.WriteNumber("bytes_per_second", Math.Round(file.BytesPerSecond));
                if (file.Detail is { } d) w.WriteString(file.State == "done" ? "remote" : "reason", d);
                if (file.At is { } at) w.WriteString("at", at);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        w.WriteEndObject();
    }

    /// <summary>dBFS of a peak (0 to 1), -100 for silence.</summary>
    static double Dbfs(float peak) => peak <= 1e-5f ? -100 : Math.Round(20 * Math.Log10(peak), 1);

    /// <summary>The sound's level per channel, left and right in dBFS: what the dashboard's meters poll a few times a second.</summary>
    static Task LevelsAsync(HttpContext ctx, AdminContext c)
    {
        var s = c.Device.Status();
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            foreach (var ch in s.Channels)
            {
                w.WriteStartObject();
                w.WriteNumber("id", ch.Number);
                w.WriteStartArray("audio_dbfs");
                w.WriteNumberValue(Dbfs(ch.AudioPeak.Left));
                w.WriteNumberValue(Dbfs(ch.AudioPeak.Right));
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }

    /// <summary>The device's network as it is now: host name and every interface with its state, MAC and addresses.</summary>
    static Task NetworkAsync(HttpContext ctx) => ApiReply.Ok(ctx, w =>
    {
        w.WriteStartObject();
        w.WriteString("hostname", Environment.MachineName);
        w.WriteStartArray("interfaces");
        foreach (var nic in System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces())
        {
            w.WriteStartObject();
            w.WriteString("name", nic.Name);
            w.WriteString("state", nic.OperationalStatus.ToString().ToLowerInvariant());
            var mac = nic.GetPhysicalAddress().GetAddressBytes();
            if (mac.Length > 0) w.WriteString("mac", string.Join(':', mac.Select(b => b.ToString("x2", CultureInfo.InvariantCulture))));
            w.WriteStartArray("addresses");
            foreach (var a in nic.GetIPProperties().UnicastAddresses) w.WriteStringValue($"{a.Address}/{a.PrefixLength}");
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });

    static async Task PutConfigAsync(HttpContext ctx, AdminContext c)
    {
        string text;
        using (var reader = new StreamReader(ctx.Request.Body)) text = await reader.ReadToEndAsync(ctx.RequestAborted);
        FirmwareConfig next;
        try { next = ConfigLoader.ParseText(text); }
        catch (ConfigException e) { await ApiReply.BadRequest(ctx, $"refused: {string.Join("; ", e.Errors)}", e.Errors); return; }
        next.Update.PublicKey = Path.GetFullPath(next.Update.PublicKey);
        if (await ApplyAsync(ctx, c, next, "config")) await ApiReply.Ok(ctx, w => { w.WriteStartObject(); w.WriteNumber("version", c.Store.Version); w.WriteEndObject(); });
    }

    static async Task PutUserAsync(HttpContext ctx, AdminContext c)
    {
        string name = ApiReply.Route(ctx, "name");
        if (AdminUsers.CheckName(name) is { } badName) { await ApiReply.BadRequest(ctx, $"name: {badName}"); return; }
        using var body = await ReadJsonAsync(ctx);
        if (body is null) return;
        if (!AdminRoles.TryParse(Str(body, "role"), out var role)) { await ApiReply.BadRequest(ctx, "role: must be admin, operator or viewer"); return; }
        string? password = Str(body, "password");
        if (password is not null && AdminUsers.CheckPassword(password) is { } bad) { await ApiReply.BadRequest(ctx, $"password: {bad}"); return; }
        var caller = AdminServer.Caller(ctx);
        try
        {
            await Task.Run(() => c.Users.Set(name, role, password, caller.User, AdminServer.FromOf(ctx)));
            c.Sessions.EndAllOf(name);
            await ApiReply.Ok(ctx, w => { w.WriteStartObject(); w.WriteString("name", name); w.WriteString("role", AdminRoles.Name(role)); w.WriteEndObject(); });
        }
        catch (ArgumentException e) { await ApiReply.BadRequest(ctx, $"password: {e.Message}"); }
        catch (InvalidOperationException e) { await ApiReply.Error(ctx, 409, "error", e.Message); }
    }

    static async Task DeleteUserAsync(HttpContext ctx, AdminContext c)
    {
        string name = ApiReply.Route(ctx, "name");
        try
        {
            if (!c.Users.Remove(name, AdminServer.Caller(ctx).User, AdminServer.FromOf(ctx))) { await ApiReply.NotFound(ctx, $"user {name} not found"); return; }
            c.Sessions.EndAllOf(name);
            await ApiReply.Ok(ctx);
        }
        catch (InvalidOperationException e) { await ApiReply.Error(ctx, 409, "error", e.Message); }
    }

    /// <summary>Any user changes their own password, giving the old one.</summary>
    static async Task PasswordAsync(HttpContext ctx, AdminContext c)
    {
        var caller = AdminServer.Caller(ctx);
        using var body = await ReadJsonAsync(ctx);
        if (body is null) return;
        string old = Str(body, "old") ?? "", password = Str(body, "password") ?? "";
        if (AdminUsers.CheckPassword(password) is { } bad) { await ApiReply.BadRequest(ctx, $"password: {bad}"); return; }
        if (await Task.Run(() => c.Users.Verify(caller.User, old)) is not { } role) { await ApiReply.Error(ctx, 403, "error", "old: the current password is wrong"); return; }
        await Task.Run(() => c.Users.Set(caller.User, role, password, caller.User, AdminServer.FromOf(ctx)));
        c.Sessions.EndAllOf(caller.User);
        await ApiReply.Ok(ctx);
    }

    static Task FirmwareAsync(HttpContext ctx, AdminContext c)
    {
        var s = c.Device.Status();
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteString("version", s.FirmwareVersion);
            w.WriteString("pearl_version", PearlVersion.Of(s.FirmwareVersion));
            if (s.Slot is { } slot) w.WriteString("slot", slot);
            w.WriteString("update_url", c.Store.Current.Update.Url);
            if (s.Update is { } u)
            {
                w.WriteStartObject("update");
                w.WriteString("phase", u.Phase.ToString().ToLowerInvariant());
                if (u.Version is { } v) w.WriteString("version", v);
                if (u.Progress is { } p)
                {
                    w.WriteNumber("bytes", p.Bytes);
                    w.WriteNumber("total", p.Total);
                    w.WriteNumber("percent", p.Total > 0 ? Math.Round(100.0 * p.Bytes / p.Total, 1) : 0);
                    w.WriteNumber("bytes_per_second", Math.Round(p.BytesPerSecond));
                }
                if (u.LastResult is { } r) w.WriteString("last_result", r);
                w.WriteEndObject();
            }
            else w.WriteNull("update");
            w.WriteEndObject();
        });
    }

    static async Task CheckAsync(HttpContext ctx, AdminContext c)
    {
        var caller = AdminServer.Caller(ctx);
        c.Audit.LogInformation("audit.update_check user={User} from={From}", caller.User, AdminServer.FromOf(ctx));
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
            cts.CancelAfter(TimeSpan.FromSeconds(30));
            var result = await c.Device.CheckForUpdateAsync(cts.Token);
            await ApiReply.OkString(ctx, result);
        }
        catch (InvalidOperationException e) { await ApiReply.Error(ctx, 409, "error", e.Message); }
        catch (OperationCanceledException) { await ApiReply.Error(ctx, 504, "error", "the update server did not answer in 30 s (the check goes on)"); }
    }

    static Task StreamingAsync(HttpContext ctx, AdminContext c, bool on)
    {
        var caller = AdminServer.Caller(ctx);
        c.Device.SetStreaming(on, caller.By);
        c.Audit.LogInformation("audit.streaming on={On} user={User} from={From}", on, caller.User, AdminServer.FromOf(ctx));
        return ApiReply.Ok(ctx);
    }

    static Task LogAsync(HttpContext ctx, AdminContext c)
    {
        long after = long.TryParse(ctx.Request.Query["after"], NumberStyles.None, CultureInfo.InvariantCulture, out long a) ? a : 0;
        var (lines, last) = c.RecentLog?.Since(after) ?? ([], 0);
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("last", last);
            w.WriteStartArray("lines");
            foreach (var l in lines) w.WriteStringValue(l);
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    static Task CertificateAsync(HttpContext ctx, AdminContext c)
    {
        if (c.Certificate is not { } cert) return ApiReply.NotFound(ctx, "HTTPS is off (admin.httpsPort is 0)");
        if (ctx.Request.Query["format"] == "pem")
        {
            ctx.Response.ContentType = "application/x-pem-file";
            return ctx.Response.WriteAsync(cert.Current.ExportCertificatePem() + "\n");
        }
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartObject();
            w.WriteString("subject", cert.Current.Subject);
            w.WriteString("issuer", cert.Current.Issuer);
            w.WriteString("not_after", cert.Current.NotAfter.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture));
            w.WriteString("sha256", cert.Fingerprint);
            w.WriteEndObject();
        });
    }

    static async Task PutCertificateAsync(HttpContext ctx, AdminContext c)
    {
        if (c.Certificate is not { } cert) { await ApiReply.NotFound(ctx, "HTTPS is off (admin.httpsPort is 0)"); return; }
        using var body = await ReadJsonAsync(ctx);
        if (body is null) return;
        string? pem = Str(body, "certificate"), key = Str(body, "key");
        if (pem is null || key is null) { await ApiReply.BadRequest(ctx, "certificate and key: both are needed, as PEM text"); return; }
        if (cert.Replace(pem, key) is { } why) { await ApiReply.BadRequest(ctx, $"certificate: {why}"); return; }
        c.Audit.LogWarning("audit.certificate_replaced sha256={Fingerprint} user={User} from={From}", cert.Fingerprint, AdminServer.Caller(ctx).User, AdminServer.FromOf(ctx));
        await CertificateAsync(ctx, c);
    }

    /// <summary>Every recording (also those of channels renamed or removed since), with the recorder it belongs to now.</summary>
    static Task RecordingsAsync(HttpContext ctx, AdminContext c)
    {
        var entries = c.Library?.List() ?? [];
        var channels = c.Device.Status().Channels;
        return ApiReply.Ok(ctx, w =>
        {
            w.WriteStartArray();
            foreach (var e in entries)
            {
                var owner = channels.FirstOrDefault(ch => e.Name.StartsWith(RecordingLibrary.SafeName(ch.Name) + "_", StringComparison.Ordinal));
                PearlApi.WriteArchiveFile(w, e, owner?.Number.ToString(CultureInfo.InvariantCulture) ?? "");
            }
            w.WriteEndArray();
        });
    }
}
