using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Pearl2.Services.Recording;

namespace Pearl2.Services.Admin;

/// <summary>
/// <c>/metrics</c> in Prometheus' text format (0.0.4): viewers per channel and transport, bytes sent, frames encoded
/// and skipped, recorder state, disk, update phase. Who may read it is the config's <c>admin.metrics</c>: any panel
/// user ("login", Basic as a scraper sends it), a bearer token ("token"), or anyone ("open").
/// </summary>
public static class Metrics
{
    public static void Map(IEndpointRouteBuilder app, AdminContext c) =>
        app.MapGet("/metrics", ctx => ServeAsync(ctx, c)).WithMetadata(new AdminAccess(null));

    static async Task ServeAsync(HttpContext ctx, AdminContext c)
    {
        var settings = c.Store.Current.Admin;
        if (settings.Metrics == "login" && AdminServer.MaybeCaller(ctx) is null)
        {
            ctx.Response.Headers.WWWAuthenticate = "Basic realm=\"Pearl2\", charset=\"UTF-8\"";
            await ApiReply.Error(ctx, 401, "error", "the metrics need a panel login (admin.metrics is login)");
            return;
        }
        if (settings.Metrics == "token")
        {
            string sent = ctx.Request.Headers.Authorization.ToString();
            string want = "Bearer " + settings.MetricsToken;
            if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(sent), Encoding.UTF8.GetBytes(want)))
            {
                ctx.Response.Headers.WWWAuthenticate = "Bearer realm=\"Pearl2\"";
                await ApiReply.Error(ctx, 401, "error", "the metrics need the bearer token (admin.metrics is token)");
                return;
            }
        }
        var text = Render(c.Device.Status(), c.Sessions.Count);
        ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        ctx.Response.Headers.CacheControl = "no-store";
        await ctx.Response.WriteAsync(text);
    }

    static string Label(string value) => value.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");

    public static string Render(DeviceStatus s, int sessions)
    {
        var b = new StringBuilder(4096);
        var inv = CultureInfo.InvariantCulture;
        void Family(string name, string type, string help)
        {
            b.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            b.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        }
        void Sample(string name, string labels, double value) =>
            b.Append(name).Append(labels.Length > 0 ? "{" + labels + "}" : "").Append(' ').Append(value.ToString(inv)).Append('\n');

        Family("pearl2_info", "gauge", "The firmware that runs (always 1).");
        Sample("pearl2_info", $"version=\"{Label(s.FirmwareVersion)}\",slot=\"{Label(s.Slot ?? "")}\"", 1);
        Family("pearl2_streaming", "gauge", "1 when live streaming to other hosts is on for any channel.");
        Sample("pearl2_streaming", "", s.Streaming ? 1 : 0);
        Family("pearl2_config_version", "gauge", "The number of the running config version.");
        Sample("pearl2_config_version", "", s.ConfigVersion);
        Family("pearl2_admin_sessions", "gauge", "Admin panel sessions open now.");
        Sample("pearl2_admin_sessions", "", sessions);

        Family("pearl2_viewers", "gauge", "Viewers playing now, per channel and transport.");
        foreach (var ch in s.Channels)
            foreach (var (door, n) in ch.Viewers) Sample("pearl2_viewers", $"channel=\"{ch.Number}\",transport=\"{Label(door)}\"", n);
        Family("pearl2_sent_bytes_total", "counter", "Bytes sent to viewers since the channel started, per channel and transport.");
        foreach (var ch in s.Channels)
            foreach (var (door, n) in ch.BytesSent) Sample("pearl2_sent_bytes_total", $"channel=\"{ch.Number}\",transport=\"{Label(door)}\"", n);
        Family("pearl2_frames_encoded_total", "counter", "Video frames encoded since the channel started.");
        foreach (var ch in s.Channels) Sample("pearl2_frames_encoded_total", $"channel=\"{ch.Number}\"", ch.FramesEncoded);
        Family("pearl2_frames_skipped_total", "counter", "Video frames the encoder could not keep up with.");
        foreach (var ch in s.Channels) Sample("pearl2_frames_skipped_total", $"channel=\"{ch.Number}\"", ch.FramesSkipped);
        Family("pearl2_recorder_state", "gauge", "The recorder's state per channel: 1 for the state it is in.");
        foreach (var ch in s.Channels)
            foreach (var state in Enum.GetValues<RecorderState>())
                Sample("pearl2_recorder_state", $"channel=\"{ch.Number}\",state=\"{state.ToString().ToLowerInvariant()}\"", ch.Recorder?.State == state ? 1 : 0);
        if (s.Disk is { } d)
        {
            Family("pearl2_disk_total_bytes", "gauge", "Size of the recordings' file system.");
            Sample("pearl2_disk_total_bytes", "", d.TotalBytes);
            Family("pearl2_disk_free_bytes", "gauge", "Free space on the recordings' file system.");
            Sample("pearl2_disk_free_bytes", "", d.FreeBytes);
            Family("pearl2_recordings_bytes", "gauge", "Bytes the recordings take.");
            Sample("pearl2_recordings_bytes", "", d.RecordingBytes);
        }
        Family("pearl2_update_phase", "gauge", "The firmware updater's phase: 1 for the phase it is in (none when updates are off).");
        foreach (var phase in Enum.GetValues<Update.UpdatePhase>())
            Sample("pearl2_update_phase", $"phase=\"{phase.ToString().ToLowerInvariant()}\"", s.Update?.Phase == phase ? 1 : 0);
        return b.ToString();
    }
}
