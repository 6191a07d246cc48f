using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Pearl2.Formats.Flv;
using Pearl2.Formats.Http;
using Pearl2.Formats.Rtsp;
using Pearl2.Formats.Upnp;
using Pearl2.Media;

namespace Pearl2.Services.HttpLive;

/// <summary>One channel as the HTTP live server sees it.</summary>
public sealed class HttpLiveChannel(ChannelHub hub, int port, bool audio, int sampleRate, int channels)
{
    public ChannelHub Hub { get; } = hub;
    public int Port { get; } = port;

    /// <summary>A viewer's hold on the FLV or the TS packaging of the channel (made on the first viewer, dropped after the last).</summary>
    public FormatLease Acquire(bool flv) => flv
        ? Hub.Acquire("flv", () => new FlvPackager(sampleRate))
        : Hub.Acquire("ts", () => new TsPackager(audio, sampleRate, channels));
    public bool StreamingEnabled { get; set; } = true;
    public PreviewCache? Preview { get; set; }
    /// <summary>The channel's viewer login, the same as RTSP's; null serves everyone.</summary>
    public ViewerCredentials? Credentials { get; set; }
    /// <summary>The channel's RTSP port, for the channel page.</summary>
    public int RtspPort { get; set; }
    /// <summary>The channel's name, for the channel page.</summary>
    public string Name => Hub.Name;
    /// <summary>Stream bytes sent to this channel's HTTP viewers, for the metrics.</summary>
    public long BytesSent;
}

/// <summary>
/// HTTP live streams on port 8000+i: GET/HEAD /stream.flv and /stream.ts, long-lived and close-delimited,
/// with CORS so web players elsewhere can read them. Each format is muxed once per channel (a packager);
/// every viewer is sent the same bytes from its own bounded, key-frame-aware queue, one write per unit.
/// </summary>
public sealed class HttpLiveServer
{
    readonly ILoggerFactory loggers;
    readonly int viewerQueueUnits;
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly TimeSpan _stallTimeout;
    readonly object _viewersLock = new();
    Viewer[] _viewers = [];
    readonly ITimer _heartbeat;

    /// <summary>A playing viewer as the heartbeat sees it: when its current write began (0: none in flight).</summary>
    sealed class Viewer(ConnectionContext connection, string who, int channel, HttpLiveChannel live, PeerAddress peer)
    {
        public readonly ConnectionContext Connection = connection;
        public readonly string Who = who;
        public readonly int Channel = channel;
        public readonly HttpLiveChannel Live = live;
        public readonly PeerAddress Peer = peer;
        /// <summary>The login the request passed (null: none was asked), and whether by Basic: a changed login cuts it.</summary>
        public ViewerCredentials? AdmittedUnder;
        public bool AdmittedByBasic;
        public long SendStartedAt;
        /// <summary>Set once the stream started (a preview, page or refusal is no viewer).</summary>
        public volatile bool Playing;
        /// <summary>When the connection opened, until its request has arrived (0 after).</summary>
        public long WaitingSince;
    }

    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(10);

    readonly ViewerAuth _auth;

    /// <param name="auth">The login shared with RTSP (one nonce and token key per device); a new one when null.</param>
    public HttpLiveServer(ILoggerFactory loggers, TimeProvider time, int viewerQueueUnits = 512, int stallTimeoutSeconds = 10, ViewerAuth? auth = null)
    {
        _auth = auth ?? new ViewerAuth(time, ViewerAuth.DefaultNonceLifetime);
        this.loggers = loggers;
        this.viewerQueueUnits = viewerQueueUnits;
        _log = loggers.CreateLogger("Pearl2.Http");
        _time = time;
        _stallTimeout = TimeSpan.FromSeconds(stallTimeoutSeconds);
        // One heartbeat for every viewer's stall check, no timer per connection.
        _heartbeat = time.CreateTimer(_ => Heartbeat(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    int _inHeartbeat;

    void Heartbeat()
    {
        // One heartbeat at a time: under a flood a late one must not walk (and close, and log) the same connections again.
        if (Interlocked.Exchange(ref _inHeartbeat, 1) == 1) return;
        try { CheckViewers(); }
        catch (Exception e) { _log.LogError("http.heartbeat_failed error=\"{Error}\"", e.Message); }
        finally { Volatile.Write(ref _inHeartbeat, 0); }
    }

    void CheckViewers()
    {
        long now = _time.GetTimestamp();
        int idle = 0;
        Viewer? firstIdle = null;
        foreach (var v in Volatile.Read(ref _viewers))
        {
            long waiting = Volatile.Read(ref v.WaitingSince);
            if (waiting != 0 && _time.GetElapsedTime(waiting, now) > RequestTimeout)
            {
                Volatile.Write(ref v.WaitingSince, 0);
                // A few are logged one by one; a flood of them as one line.
                if (++idle <= 3) _log.LogInformation("http.abort channel={Channel} remote={Remote} reason=\"no request\"", v.Channel, v.Who);
                firstIdle ??= v;
                v.Connection.Abort(new ConnectionAbortedException("no request"));
                continue;
            }
            long started = Volatile.Read(ref v.SendStartedAt);
            if (started != 0 && _time.GetElapsedTime(started, now) > _stallTimeout)
            {
                Volatile.Write(ref v.SendStartedAt, 0);
                _log.LogInformation("http.abort channel={Channel} remote={Remote} reason=\"viewer stopped reading\"", v.Channel, v.Who);
                v.Connection.Abort(new ConnectionAbortedException("viewer stopped reading"));
            }
        }
        if (idle > 3)
            _log.LogWarning("http.idle_closed count={Count} more_than_logged={More} first_remote={Remote} reason=\"no request in {Seconds} s\"", idle, idle - 3, firstIdle!.Who, RequestTimeout.TotalSeconds);
    }

    /// <summary>Ends at once every stream of <paramref name="channel"/> that its new streaming switch or login no longer lets in; returns how many.</summary>
    public int Revoke(HttpLiveChannel channel)
    {
        int n = 0;
        foreach (var v in Volatile.Read(ref _viewers))
        {
            if (v.Live != channel || !v.Playing) continue;
            if (ViewerAuth.Revoked(channel.StreamingEnabled, channel.Credentials, v.Peer, v.AdmittedUnder, v.AdmittedByBasic) is not { } why) continue;
            _log.LogInformation("http.abort channel={Channel} remote={Remote} reason=\"{Reason}\"", v.Channel, v.Who, why);
            v.Connection.Abort(new ConnectionAbortedException(why));
            n++;
        }
        return n;
    }

    /// <summary>HTTP viewers playing channel <paramref name="channel"/> (1-based) now.</summary>
    public int ViewerCount(int channel) => Volatile.Read(ref _viewers).Count(v => v.Channel == channel && v.Playing);

    public static HttpLiveChannel AddChannel(ChannelHub hub, int port, bool audio, int sampleRate, int channels) => new(hub, port, audio, sampleRate, channels);

    /// <summary>Connections per channel port, in all and from one host (the ports bound from now on).</summary>
    public ConnectionLimits Limits { get; set; } = new();

    /// <summary>Binds the channel's port (a <see cref="ViewerPort"/>); disposing it unbinds.</summary>
    public Task<ViewerPort> ListenAsync(HttpLiveChannel channel) =>
        Task.FromResult(ViewerPort.Bind(channel.Port, $"http:{channel.Port}", Limits, c => ServeAsync(c, channel), loggers, _time));

    static ReadOnlySpan<byte> Cors => "Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, HEAD, OPTIONS\r\nAccess-Control-Allow-Headers: *\r\nAccess-Control-Expose-Headers: Content-Type\r\n"u8;

    async Task ServeAsync(ConnectionContext connection, HttpLiveChannel channel)
    {
        var socket = connection.Features.Get<IConnectionSocketFeature>()!.Socket;
        var peer = PeerAddress.Of(connection.RemoteEndPoint);
        string who = peer.ToString();
        int ch = channel.Hub.Index + 1;
        // Every connection answers to the heartbeat from the start: one that never sends a request is closed.
        var viewer = new Viewer(connection, who, ch, channel, peer) { WaitingSince = _time.GetTimestamp() };
        lock (_viewersLock) _viewers = [.. _viewers, viewer];
        try
        {
            var (status, request, _) = await RequestHead.ReadHttpAsync(connection);
            if (status != RtspParseStatus.Complete || !request!.Version.StartsWith("HTTP/1.", StringComparison.Ordinal))
            {
                if (status != RtspParseStatus.Incomplete) await Reply(socket, status == RtspParseStatus.TooLarge ? "431 Request Header Fields Too Large" : "400 Bad Request");
                return;
            }
            Volatile.Write(ref viewer.WaitingSince, 0);
            if (!channel.StreamingEnabled && !peer.IsLoopback)
            {
                _log.LogWarning("http.refused channel={Channel} remote={Remote} path={Path} status=403 reason=\"streaming disabled for external viewers\"", ch, who, request.Path);
                await Reply(socket, "403 Forbidden");
                return;
            }
            if (request.Method == "OPTIONS") { await Reply(socket, "204 No Content"); return; }
            if (request.Method is not ("GET" or "HEAD")) { await Reply(socket, "405 Method Not Allowed"); return; }
            var path = request.Path;
            if (path == "/mpegts.js") { await StaticAsync(socket, request, "text/javascript; charset=utf-8", WebFiles.MpegtsJs, WebFiles.MpegtsJsGzip); return; }
            bool flv = path == "/stream.flv", ts = path == "/stream.ts";
            if (!(flv || ts || path is "/" or "/index.html" or "/preview.jpg" or "/token")) { await Reply(socket, "404 Not Found"); return; }
            // Every other door here shows the channel's pictures (or hands out a key to them): the viewer login first.
            // A token opens the streams and the preview; the page and /token itself want the login.
            if (channel.Credentials is { } creds)
            {
                if (!await AuthorizeAsync(socket, request, channel, creds, peer, tokenAllowed: flv || ts || path == "/preview.jpg")) return;
                viewer.AdmittedUnder = creds;
                viewer.AdmittedByBasic = ViewerAuth.IsBasic(request);
            }
            if (path is "/" or "/index.html") { await PageAsync(socket, request, channel, connection); return; }
            if (path == "/token") { await TokenAsync(socket, request, channel); return; }
            if (path == "/preview.jpg") { await PreviewAsync(socket, channel, request); return; }
            var ready = channel.Hub.Ready;
            if (await Task.WhenAny(ready, Task.Delay(5000)) != ready) { await Reply(socket, "503 Service Unavailable"); return; }
            var info = ready.Result;

            // DLNA players (the UPnP media server's live items point here): a live stream has no time seek, and says what it is.
            if (ts && request["TimeSeekRange.dlna.org"] is not null) { await Reply(socket, "406 Not Acceptable"); return; }
            string dlna = ts ? $"transferMode.dlna.org: Streaming\r\ncontentFeatures.dlna.org: {DlnaInfo.LiveFeatures(DlnaInfo.Profile("ts", info.Width, info.Height))}\r\n" : "";
            var head = Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nServer: pearl2d\r\nContent-Type: {(flv ? "video/x-flv" : "video/mp2t")}\r\nCache-Control: no-cache, no-store\r\n{dlna}Connection: close\r\n")
                .Concat(Cors.ToArray()).Concat("\r\n"u8.ToArray()).ToArray();
            await SocketSend.AllAsync(socket, head);
            if (request.Method == "HEAD") return;
            if (flv) await SocketSend.AllAsync(socket, FlvPreamble(info, channel));

            try { socket.SendBufferSize = 512 * 1024; } catch (SocketException) { } // bounds what a stalled viewer holds in the kernel
            using var format = channel.Acquire(flv);   // declared first: let go after the reader and the last read
            using var reader = channel.Hub.Subscribe($"http {who}", viewerQueueUnits);
            viewer.Playing = true;
            _log.LogInformation("http.play channel={Channel} remote={Remote} format={Format} queued={Queued}", ch, who, flv ? "flv" : "ts", reader.Queued);
            int slot = format.Slot;
            // The client sends nothing more; its closing is how we learn it left.
            var closed = ConnectionEnd.WaitAsync(connection).ContinueWith(_ => reader.Dispose(), TaskScheduler.Default);
            await PlayAsync(socket, reader, slot, info.HasAudio, viewer);
            await closed;
            _log.LogInformation("http.disconnect channel={Channel} remote={Remote} sent={Sent} dropped_frames={Dropped}", ch, who, reader.Taken, reader.DroppedFrames);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ConnectionResetException or ObjectDisposedException or ConnectionAbortedException) { }
        finally
        {
            lock (_viewersLock) _viewers = Array.FindAll(_viewers, v => v != viewer);
            await connection.DisposeAsync();
        }
    }

    async Task PlayAsync(Socket socket, HubReader reader, int slot, bool audio, Viewer viewer)
    {
        try
        {
            while (!reader.IsDisposed)
            {
                await reader.WaitAsync();
                while (reader.TryRead(out var unit))
                {
                    try
                    {
                        if (unit.Track == TrackKind.Audio && !audio) continue;
                        Volatile.Write(ref viewer.SendStartedAt, _time.GetTimestamp());
                        var payload = unit.Slot(slot);
                        await SocketSend.AllAsync(socket, payload);
                        Interlocked.Add(ref viewer.Live.BytesSent, payload.Length);
                        Volatile.Write(ref viewer.SendStartedAt, 0);
                    }
                    finally { unit.Release(); }
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or ConnectionAbortedException) { reader.Dispose(); }
    }

    static byte[] FlvPreamble(StreamInfo info, HttpLiveChannel channel)
    {
        var buf = new byte[4096];
        int n = FlvWriter.WriteHeader(buf, info.HasAudio, true);
        var meta = new List<KeyValuePair<string, object>>
        {
            new("width", info.Width), new("height", info.Height), new("framerate", info.Fps), new("videocodecid", 7),
        };
        if (info.HasAudio) { meta.Add(new("audiocodecid", 10)); meta.Add(new("audiosamplerate", info.AudioSampleRate)); meta.Add(new("stereo", info.AudioChannels == 2)); }
        n += FlvWriter.WriteMetaData(buf.AsSpan(n), meta);
        n += FlvWriter.WriteAvcSequenceHeader(buf.AsSpan(n), info.Sps, info.Pps);
        if (info.HasAudio) n += FlvWriter.WriteAac(buf.AsSpan(n), info.AudioSpecificConfig, true, 0);
        return buf[..n];
    }

    async Task PreviewAsync(Socket socket, HttpLiveChannel channel, HttpRequestHead request)
    {
        if (channel.Preview is null) { await Reply(socket, "404 Not Found"); return; }
        int? width = null;
        int q = request.Uri.IndexOf("width=", StringComparison.Ordinal);
        if (q >= 0)
        {
            var digits = new string(request.Uri.AsSpan(q + 6).ToArray().TakeWhile(char.IsAsciiDigit).Take(5).ToArray());
            if (!int.TryParse(digits, out int w)) { await Reply(socket, "400 Bad Request"); return; }
            width = w;
        }
        var picture = await channel.Preview.GetAsync(width);
        if (picture is not { } p) { await Reply(socket, "503 Service Unavailable"); return; }
        var head = Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nServer: pearl2d\r\nContent-Type: image/jpeg\r\nContent-Length: {p.Jpeg.Length}\r\nCache-Control: no-cache, no-store\r\nX-Pearl2-Frame: {p.Frame}\r\nConnection: close\r\n")
            .Concat(Cors.ToArray()).Concat("\r\n"u8.ToArray()).ToArray();
        await SocketSend.AllAsync(socket, head);
        if (request.Method == "GET") await SocketSend.AllAsync(socket, p.Jpeg);
    }

    /// <summary>True when the request may go on; otherwise the 401 (challenges, or the token's refusal) has been sent.</summary>
    async Task<bool> AuthorizeAsync(Socket socket, HttpRequestHead request, HttpLiveChannel channel, ViewerCredentials creds, PeerAddress peer, bool tokenAllowed)
    {
        int ch = channel.Hub.Index + 1;
        string who = peer.ToString();
        // One request per connection here: the connection number only tells a nonce's first use from a replay.
        var asker = new AuthPeer(AuthPeer.NewConnection(), peer.Address);
        var outcome = tokenAllowed
            ? _auth.Authorize(request, ch, creds, asker, out var user, out var why)
            : _auth.Check(request, creds, asker, out user, out why);
        if (outcome == AuthOutcome.Accepted) return true;
        if (outcome == AuthOutcome.Throttled)
        {
            // Blocked for failed logins (the throttle logs the block once): no challenge, no guess is judged.
            int retry = _auth.Throttle.RetryAfterSeconds(peer.Address);
            await SocketSend.AllAsync(socket, Join(Encoding.ASCII.GetBytes($"HTTP/1.1 429 Too Many Requests\r\nServer: pearl2d\r\nRetry-After: {retry}\r\nContent-Length: 0\r\nConnection: close\r\n"), Cors.ToArray(), "\r\n"u8.ToArray()));
            return false;
        }
        if (outcome == AuthOutcome.Missing)
            _log.LogDebug("http.challenge channel={Channel} remote={Remote} path={Path} status=401", ch, who, request.Path);
        else if (outcome == AuthOutcome.Stale)
            _log.LogDebug("http.auth_stale channel={Channel} remote={Remote} path={Path} reason=\"{Reason}\" status=401", ch, who, request.Path, why);
        else
        {
            _log.LogWarning("http.auth_failed channel={Channel} remote={Remote} path={Path} user=\"{User}\" reason=\"{Reason}\" status=401", ch, who, request.Path, user ?? "", why);
            if (_auth.Throttle.DelayFor(peer.Address) is { } delay && delay > TimeSpan.Zero) await Task.Delay(delay, _time);
        }
        var head = new StringBuilder("HTTP/1.1 401 Unauthorized\r\nServer: pearl2d\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\n");
        foreach (var challenge in _auth.Challenges(creds, outcome == AuthOutcome.Stale)) head.Append("WWW-Authenticate: ").Append(challenge).Append("\r\n");
        var body = Encoding.UTF8.GetBytes($"channel {ch} needs the viewer login{(why is null ? "" : ": " + why)}\n");
        head.Append("Content-Length: ").Append(body.Length).Append("\r\n");
        await SocketSend.AllAsync(socket, Join(Encoding.ASCII.GetBytes(head.ToString()), Cors.ToArray(), "\r\n"u8.ToArray(), request.Method == "GET" ? body : []));
        return false;
    }

    /// <summary>GET /token: a short-lived view token for this channel's streams and preview, as JSON (the login was checked).</summary>
    async Task TokenAsync(Socket socket, HttpRequestHead request, HttpLiveChannel channel)
    {
        int ch = channel.Hub.Index + 1;
        var token = _auth.IssueToken(ch, channel.Credentials, out var expires);
        var json = Encoding.UTF8.GetBytes(
            $"{{\"channel\":{ch},\"token\":\"{token}\",\"expires\":\"{expires.UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}\",\"expiresInSeconds\":{(int)ViewerAuth.TokenLifetime.TotalSeconds}," +
            $"\"flv\":\"/stream.flv?token={token}\",\"ts\":\"/stream.ts?token={token}\",\"preview\":\"/preview.jpg?token={token}\"}}\n");
        _log.LogInformation("http.token_issued channel={Channel} expires={Expires:yyyy-MM-ddTHH:mm:ssZ}", ch, expires.UtcDateTime);
        await Ok(socket, request, "application/json", json);
    }

    /// <summary>GET /: a small page that names the channel, links its streams and plays it with the device's own mpegts.js.</summary>
    async Task PageAsync(Socket socket, HttpRequestHead request, HttpLiveChannel channel, ConnectionContext connection)
    {
        var local = PeerAddress.Of(connection.LocalEndPoint).Address?.ToString() ?? "HOST";
        var html = WebFiles.IndexHtml
            .Replace("{{name}}", System.Net.WebUtility.HtmlEncode(channel.Name))
            .Replace("{{channel}}", (channel.Hub.Index + 1).ToString(System.Globalization.CultureInfo.InvariantCulture))
            .Replace("{{host}}", local.Contains(':') ? $"[{local}]" : local)
            .Replace("{{rtspPort}}", channel.RtspPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await Ok(socket, request, "text/html; charset=utf-8", Encoding.UTF8.GetBytes(html));
    }

    static async Task StaticAsync(Socket socket, HttpRequestHead request, string type, byte[] plain, byte[] gzip)
    {
        bool gz = request["Accept-Encoding"]?.Contains("gzip", StringComparison.OrdinalIgnoreCase) == true;
        await Ok(socket, request, type, gz ? gzip : plain, gz ? "Content-Encoding: gzip\r\nCache-Control: max-age=86400\r\n" : "Cache-Control: max-age=86400\r\n");
    }

    static Task Ok(Socket socket, HttpRequestHead request, string type, byte[] body, string? extra = null)
    {
        var head = Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nServer: pearl2d\r\nContent-Type: {type}\r\nContent-Length: {body.Length}\r\n{extra ?? "Cache-Control: no-store\r\n"}Connection: close\r\n");
        return SocketSend.AllAsync(socket, Join(head, Cors.ToArray(), "\r\n"u8.ToArray(), request.Method == "GET" ? body : [])).AsTask();
    }

    static byte[] Join(params byte[][] parts)
    {
        var all = new byte[parts.Sum(p => p.Length)];
        int at = 0;
        foreach (var p in parts) { p.CopyTo(all, at); at += p.Length; }
        return all;
    }

    static Task Reply(Socket socket, string status) =>
        SocketSend.AllAsync(socket, Join(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nServer: pearl2d\r\nContent-Length: 0\r\nConnection: close\r\n"), Cors.ToArray(), "\r\n"u8.ToArray())).AsTask();
}
