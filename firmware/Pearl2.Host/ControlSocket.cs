using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Pearl2.Services;
using Pearl2.Services.FrontPanel;
using Pearl2.Services.Recording;

namespace Pearl2.Host;

/// <summary>
/// The local control command: a Unix socket (owner-only) taking one line and answering in text, then closing.
/// <c>pearl2d panel press record</c>, <c>pearl2d status</c> and <c>pearl2d recordings</c> are its client. A thin
/// adapter: the commands are <see cref="IDeviceControl"/>'s, the status text is a <see cref="DeviceStatus"/> printed.
/// </summary>
public sealed class ControlSocket : IAsyncDisposable
{
    public const string FileName = "pearl2d.sock";
    readonly Socket _listen;
    readonly string _path;
    readonly IDeviceControl _device;
    readonly RecordingLibrary? _library;
    readonly Panel? _panel;
    readonly ILogger _log;
    readonly Task _accepting;
    readonly CancellationTokenSource _stop = new();

    public ControlSocket(string path, IDeviceControl device, RecordingLibrary? library, Panel? panel, ILogger log)
    {
        _path = path; _device = device; _library = library; _panel = panel; _log = log;
        if (File.Exists(path)) File.Delete(path); // a socket file left by a crash
        _listen = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listen.Bind(new UnixDomainSocketEndPoint(path));
        if (OperatingSystem.IsLinux()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _listen.Listen(8);
        _accepting = AcceptAsync();
    }

    async Task AcceptAsync()
    {
        var backoff = new Pearl2.Services.AcceptBackoff(_log, "control");
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try { s = await _listen.AcceptAsync(_stop.Token); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException) { return; }
            catch (SocketException e)
            {
                // Out of descriptors (EMFILE) must not end the control socket for good: wait and accept again.
                try { await backoff.FailedAsync(e, _stop.Token); } catch (OperationCanceledException) { return; }
                continue;
            }
            backoff.Accepted();
            _ = ServeAsync(s);
        }
    }

    async Task ServeAsync(Socket s)
    {
        using var _ = s;
        try
        {
            var buf = new byte[512];
            int n = 0;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            while (n < buf.Length && Array.IndexOf(buf, (byte)'\n', 0, n) < 0)
            {
                int r = await s.ReceiveAsync(buf.AsMemory(n), timeout.Token);
                if (r == 0) break;
                n += r;
            }
            string line = Encoding.UTF8.GetString(buf, 0, n).Split('\n')[0].Trim();
            string reply;
            try { reply = await ExecuteAsync(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)); }
            catch (Exception e) { reply = "error: " + e.Message + "\n"; } // a bad command, or a fault while carrying it out
            await s.SendAsync(Encoding.UTF8.GetBytes(reply));
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException) { }
    }

    async Task<string> ExecuteAsync(string[] w)
    {
        switch (w)
        {
            case ["panel", "press", var button, .. var rest]:
                var b = button switch { "record" => PanelButton.Record, "stream" => PanelButton.Stream, _ => throw new ArgumentException($"unknown button '{button}' (record, stream)") };
                double seconds = rest is ["--hold", var h] ? double.Parse(h, CultureInfo.InvariantCulture) : 0.08;
                if (seconds is < 0 or > 30) throw new ArgumentException("--hold must be from 0 to 30 seconds");
                _log.LogInformation("control.panel_press button={Button} hold_s={Hold}", button, seconds);
                if (_panel is null) throw new InvalidOperationException("the front panel did not start (see panel.failed in the log)");
                await _panel.PressAsync(b, TimeSpan.FromSeconds(seconds));
                return Status();
            case ["status"]:
                return Status();
            case ["update", "check"]:
                _log.LogInformation("control.update_check");
                return await _device.CheckForUpdateAsync(_stop.Token) + "\n";
            case ["recordings"]:
                if (_library is null) throw new InvalidOperationException("this device does not record");
                var list = _library.List();
                if (list.Count == 0) return $"no recordings in {_library.Options.Directory}\n";
                var sb = new StringBuilder();
                sb.Append("NAME\tSTARTED\tDURATION\tBYTES\tSTATE\n");
                foreach (var e in list)
                    sb.Append(CultureInfo.InvariantCulture, $"{e.Name}\t{(e.Started is { } st ? st.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) : "-")}\t{(e.Duration is { } d ? FormatDuration(d) : "-")}\t{e.Bytes}\t{e.State}\n");
                sb.Append(CultureInfo.InvariantCulture, $"{list.Count} recording(s), {list.Sum(e => e.Bytes) / 1e6:F1} MB in {_library.Options.Directory}\n");
                return sb.ToString();
            default:
                throw new ArgumentException($"unknown command '{string.Join(' ', w)}' (panel press record|stream [--hold S], status, recordings, update check)");
        }
    }

    string Status()
    {
        var s = _device.Status();
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"state={s.State.ToString().ToLowerInvariant()} recording={(s.Recording ? "on" : "off")} streaming={(s.Streaming ? "on" : "off")}");
        sb.Append(CultureInfo.InvariantCulture, $" led_record={s.Panel?.RecordLed ?? "none"} led_stream={s.Panel?.StreamLed ?? "none"} led_status={s.Panel?.StatusLed ?? "none"}\n");
        foreach (var c in s.Channels)
        {
            var r = c.Recorder;
            sb.Append(CultureInfo.InvariantCulture, $"channel={c.Number} viewers_rtsp={c.ViewersOf("rtsp")} viewers_http={c.ViewersOf("http")} recorder={(r?.State.ToString().ToLowerInvariant() ?? "none")} file={(r?.CurrentFile is { } f ? Path.GetFileName(f) : "-")}{(r?.LastError is { } e ? " error=" + e : "")}\n");
            // Each destination the channel is pushed to: its state, rate, what it dropped, how often it reconnected, why it last failed.
            foreach (var p in c.Publishers)
            {
                sb.Append(CultureInfo.InvariantCulture, $"publisher channel={c.Number} id={p.Id} name=\"{p.Name}\" type={p.Type} target={p.Target} state={p.State} rate_kbps={p.BitsPerSecond / 1000} sent_bytes={p.BytesSent} dropped_gops={p.DroppedGops} dropped_frames={p.DroppedFrames} reconnections={p.Reconnections}");
                if (p.Since is { } since) sb.Append(CultureInfo.InvariantCulture, $" since={since:yyyy-MM-ddTHH:mm:ssZ}");
                if (p.Srt is { } srt) sb.Append(CultureInfo.InvariantCulture, $" rtt_ms={srt.RttMs:F2} pkt_sent={srt.PacketsSent} pkt_lost={srt.PacketsLost} pkt_retrans={srt.PacketsRetransmitted} pkt_dropped={srt.PacketsDropped}");
                if (p.LastError is { } le) sb.Append($" error=\"{le}\"");
                sb.Append('\n');
            }
        }
        foreach (var l in s.Panel?.DisplayLines ?? []) sb.Append("display: ").Append(l).Append('\n');
        sb.Append(CultureInfo.InvariantCulture, $"firmware version={s.FirmwareVersion} slot={s.Slot ?? "-"}");
        if (s.Update is { } u)
        {
            sb.Append(CultureInfo.InvariantCulture, $" update={u.Phase.ToString().ToLowerInvariant()}{(u.Version is { } v ? " update_version=" + v : "")}");
            if (u.Progress is { } p)
                sb.Append(CultureInfo.InvariantCulture, $" progress={p.Percent:F0}% bytes={p.Bytes}/{p.Total} rate_kbps={p.BytesPerSecond * 8 / 1000:F0} remaining_s={(p.Remaining?.TotalSeconds ?? -1):F0}");
            if (u.LastResult is { } r) sb.Append(CultureInfo.InvariantCulture, $" last=\"{r}\"");
        }
        sb.Append('\n');
        // Each upload target (the device's first, then each channel's own), then its files: in flight, queued, the last done.
        foreach (var up in s.Uploads)
        {
            sb.Append(up.Channel is { } ch ? $"upload channel={ch} target={up.Id} " : "upload ")
              .Append(CultureInfo.InvariantCulture, $"state={up.State} protocol={up.Protocol} queued={up.QueuedFiles} queued_bytes={up.QueuedBytes} uploaded={up.Uploaded}")
              .Append(up.File is { } f ? string.Create(CultureInfo.InvariantCulture, $" file={f} bytes={up.FileBytes}/{up.FileSize} rate_kbps={up.BytesPerSecond * 8 / 1000:F0}") : "")
              .Append(up.LastError is { } err ? $" error=\"{err}\"" : "").Append('\n');
            const int Shown = 30;
            foreach (var file in up.Files.Take(Shown))
                sb.Append(CultureInfo.InvariantCulture, $"upload_file target={up.Id} file={file.Name} state={file.State} bytes={file.Bytes}/{file.Size}")
                  .Append(file.State == "uploading" ? string.Create(CultureInfo.InvariantCulture, $" rate_kbps={file.BytesPerSecond * 8 / 1000:F0}") : "")
                  .Append(file.At is { } at ? string.Create(CultureInfo.InvariantCulture, $" at={at:yyyy-MM-ddTHH:mm:ssZ}") : "")
                  .Append(file.Detail is { } d ? $" {(file.State == "done" ? "remote" : "reason")}=\"{d}\"" : "").Append('\n');
            if (up.Files.Count > Shown) sb.Append(CultureInfo.InvariantCulture, $"upload_file target={up.Id} more={up.Files.Count - Shown}\n");
        }
        return sb.ToString();
    }

    static string FormatDuration(TimeSpan d) => d.TotalHours >= 1 ? $"{(int)d.TotalHours}:{d:mm\\:ss}" : d.ToString(@"m\:ss", CultureInfo.InvariantCulture);

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listen.Dispose();
        await _accepting;
        try { File.Delete(_path); } catch (IOException) { }
    }

    /// <summary>
    /// How long the client waits for an answer. An update check downloads and writes a whole slot (minutes on a slow
    /// link or card; the downloader gives up by itself on a stalled server), so it waits an hour; the rest is local.
    /// </summary>
    public static TimeSpan ClientTimeout(string command) => command.StartsWith("update", StringComparison.Ordinal) ? TimeSpan.FromHours(1) : TimeSpan.FromSeconds(15);

    /// <summary>The client side: sends one command line, prints the answer; exit code 1 on an error answer or no answer in time.</summary>
    public static async Task<int> ClientAsync(string path, string command, string notRunning, TimeSpan? timeout = null)
    {
        var limit = timeout ?? ClientTimeout(command);
        var connectLimit = limit < TimeSpan.FromSeconds(15) ? limit : TimeSpan.FromSeconds(15);
        using var cts = new CancellationTokenSource(limit);
        using var connecting = new CancellationTokenSource(connectLimit);
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { await s.ConnectAsync(new UnixDomainSocketEndPoint(path), connecting.Token); }
        catch (SocketException e)
        {
            // No socket file, or one a crash left behind with nobody listening.
            Console.Error.WriteLine(!File.Exists(path) || e.SocketErrorCode == SocketError.ConnectionRefused
                ? $"pearl2d: {notRunning}"
                : $"pearl2d: cannot reach the running pearl2d at {path}: {e.Message}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"pearl2d: the running pearl2d at {path} did not take the connection within {connectLimit.TotalSeconds:0} s (is it overloaded or out of file descriptors?)");
            return 1;
        }
        var answer = new MemoryStream();
        try
        {
            await s.SendAsync(Encoding.UTF8.GetBytes(command + "\n"), cts.Token);
            var buf = new byte[4096];
            int n;
            while ((n = await s.ReceiveAsync(buf, cts.Token)) > 0) answer.Write(buf, 0, n);
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"pearl2d: no answer from the running pearl2d at {path} within {limit.TotalSeconds:0} s (is it overloaded or out of file descriptors?)");
            return 1;
        }
        catch (SocketException e)
        {
            Console.Error.WriteLine($"pearl2d: the running pearl2d at {path} closed the connection: {e.Message}");
            return 1;
        }
        string text = Encoding.UTF8.GetString(answer.ToArray());
        Console.Write(text);
        return text.StartsWith("error:", StringComparison.Ordinal) ? 1 : 0;
    }
}
