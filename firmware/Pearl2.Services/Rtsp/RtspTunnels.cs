using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Rtsp;

namespace Pearl2.Services.Rtsp;

/// <summary>
/// RTSP over HTTP (the QuickTime tunnelling scheme, as ffmpeg's "-rtsp_transport http" and GStreamer's
/// rtsph:// speak it) on the channel's RTSP port: a GET with an x-sessioncookie becomes the way out
/// (responses and interleaved RTP), and POSTs with the same cookie carry base64 RTSP requests in.
/// </summary>
public sealed class RtspTunnels(RtspServer server, ILogger log)
{
    /// <summary>Open tunnels one channel holds, and one host (IPv6: one /64) on one channel.</summary>
    public const int MaxPerChannel = 256, MaxPerHost = 16;
    /// <summary>Tunnels by channel and x-sessioncookie: a cookie names a tunnel on its own port only.</summary>
    readonly Dictionary<(RtspChannel, string), Tunnel> _byCookie = new();
    readonly Dictionary<RtspChannel, int> _perChannel = new();
    readonly Dictionary<(RtspChannel, IPAddress), int> _perHost = new();

    sealed class Tunnel(IPAddress? owner)
    {
        /// <summary>The GET's peer: only POSTs from the same address feed this tunnel.</summary>
        public readonly IPAddress? Owner = owner;
        public readonly Pipe Requests = new(new PipeOptions(pauseWriterThreshold: 256 * 1024, resumeWriterThreshold: 128 * 1024, useSynchronizationContext: false));
        public readonly SemaphoreSlim PostLock = new(1, 1);
        public Base64Stream Decoder = new();
        public RtspConnection? Connection;
    }

    static ReadOnlySpan<byte> Http(int status, string reason) => Encoding.ASCII.GetBytes(
        $"HTTP/1.0 {status} {reason}\r\nServer: pearl2d\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");

    internal async Task HandleAsync(ConnectionContext context, Socket socket, RtspChannel channel, RtspServer.Pending pending)
    {
        var peer = PeerAddress.Of(context.RemoteEndPoint);
        string who = peer.ToString();
        var (status, request, error) = await RequestHead.ReadAsync(context);
        if (status != RtspParseStatus.Complete)
        {
            log.LogWarning("rtsp.tunnel_refused channel={Channel} remote={Remote} status=400 reason=\"{Reason}\"", channel.Hub.Index + 1, who, error);
            await SocketSend.AllAsync(socket, Http(status == RtspParseStatus.TooLarge ? 431 : 400, status == RtspParseStatus.TooLarge ? "Request Header Fields Too Large" : "Bad Request").ToArray());
            return;
        }

        var cookie = request!["x-sessioncookie"];
        if (string.IsNullOrEmpty(cookie) || cookie.Length > 128 || request.Method is not ("GET" or "POST"))
        {
            log.LogWarning("rtsp.tunnel_refused channel={Channel} remote={Remote} status=400 reason=\"no x-sessioncookie\"", channel.Hub.Index + 1, who);
            await SocketSend.AllAsync(socket, Http(400, "Bad Request").ToArray());
            return;
        }
        if (!channel.StreamingEnabled && !peer.IsLoopback)
        {
            log.LogWarning("rtsp.tunnel_refused channel={Channel} remote={Remote} status=403 reason=\"streaming disabled for external viewers\"", channel.Hub.Index + 1, who);
            await SocketSend.AllAsync(socket, Http(403, "Forbidden").ToArray());
            return;
        }

        if (request.Method == "GET")
        {
            server.Settle(pending); // from here on the tunnel's RtspConnection answers to the heartbeat
            await RunGetAsync(context, socket, channel, cookie, peer);
        }
        else await RunPostAsync(context, socket, channel, cookie, peer, pending);
    }

    async Task RunGetAsync(ConnectionContext context, Socket socket, RtspChannel channel, string cookie, PeerAddress peer)
    {
        string who = peer.ToString();
        var host = peer.Address is null ? null : PeerAddress.HostKey(peer.Address);
        var tunnel = new Tunnel(peer.Address);
        string? refused;
        lock (_byCookie)
        {
            int onChannel = _perChannel.GetValueOrDefault(channel), fromHost = host is null ? 0 : _perHost.GetValueOrDefault((channel, host));
            refused = _byCookie.ContainsKey((channel, cookie)) ? "x-sessioncookie already in use"
                : onChannel >= MaxPerChannel ? $"{onChannel} tunnels open on this channel (limit {MaxPerChannel})"
                : fromHost >= MaxPerHost ? $"{fromHost} tunnels open from this host (limit {MaxPerHost})"
                : null;
            if (refused is null)
            {
                _byCookie[(channel, cookie)] = tunnel;
                _perChannel[channel] = onChannel + 1;
                if (host is not null) _perHost[(channel, host)] = fromHost + 1;
            }
        }
        if (refused is not null)
        {
            log.LogWarning("rtsp.tunnel_refused channel={Channel} remote={Remote} status=503 reason=\"{Reason}\"", channel.Hub.Index + 1, who, refused);
            await SocketSend.AllAsync(socket, Http(503, "Service Unavailable").ToArray());
            return;
        }
        try
        {
            await SocketSend.AllAsync(socket, Encoding.ASCII.GetBytes(
                "HTTP/1.0 200 OK\r\nServer: pearl2d\r\nConnection: close\r\nCache-Control: no-store\r\nPragma: no-cache\r\nContent-Type: application/x-rtsp-tunnelled\r\n\r\n"));
            log.LogInformation("rtsp.tunnel_open channel={Channel} remote={Remote}", channel.Hub.Index + 1, who);
            var conn = new RtspConnection(server, channel, context, socket, log, tunnel.Requests.Reader);
            tunnel.Connection = conn;
            // The GET carries nothing more from the client; its end is the tunnel's end.
            var watch = ConnectionEnd.WaitAsync(context).ContinueWith(_ => conn.Abort("tunnel GET closed"), TaskScheduler.Default);
            await server.RunConnectionAsync(conn);
            await watch;
        }
        finally
        {
            lock (_byCookie)
            {
                _byCookie.Remove((channel, cookie));
                if (_perChannel[channel] <= 1) _perChannel.Remove(channel); else _perChannel[channel]--;
                if (host is not null) { if (_perHost[(channel, host)] <= 1) _perHost.Remove((channel, host)); else _perHost[(channel, host)]--; }
            }
            await tunnel.Requests.Writer.CompleteAsync();
        }
    }

    async Task RunPostAsync(ConnectionContext context, Socket socket, RtspChannel channel, string cookie, PeerAddress peer, RtspServer.Pending pending)
    {
        string who = peer.ToString();
        Tunnel? tunnel;
        lock (_byCookie) _byCookie.TryGetValue((channel, cookie), out tunnel);
        // A POST feeds only the tunnel its own host opened: another host that learnt the cookie is told nothing more
        // than for a cookie that does not exist.
        if (tunnel is null || !Equals(tunnel.Owner, peer.Address))
        {
            log.LogWarning("rtsp.tunnel_refused channel={Channel} remote={Remote} status=404 reason=\"{Reason}\"", channel.Hub.Index + 1, who,
                tunnel is null ? "POST for an unknown x-sessioncookie" : "POST from another host than the tunnel's GET");
            await SocketSend.AllAsync(socket, Http(404, "Not Found").ToArray());
            return;
        }
        pending.LimitSeconds = server.Options.SessionTimeoutSeconds; // a POST may rest between commands as long as a session
        var input = context.Transport.Input;
        await tunnel.PostLock.WaitAsync();
        try
        {
            while (true)
            {
                var read = await input.ReadAsync(context.ConnectionClosed);
                pending.Touch(server.Time);
                tunnel.Connection?.OnReceiverReport(); // a command through the tunnel keeps the session alive too
                foreach (var segment in read.Buffer)
                {
                    var dest = tunnel.Requests.Writer.GetSpan(Base64Stream.MaxOutput(segment.Length));
                    int n = tunnel.Decoder.Decode(segment.Span, dest);
                    tunnel.Requests.Writer.Advance(n);
                    if (!tunnel.Decoder.Valid) break;
                }
                input.AdvanceTo(read.Buffer.End);
                if (!tunnel.Decoder.Valid)
                {
                    log.LogWarning("rtsp.tunnel_refused channel={Channel} remote={Remote} status=400 reason=\"POST body is not base64\"", channel.Hub.Index + 1, who);
                    tunnel.Connection?.Abort("tunnel POST body is not base64");
                    return;
                }
                var flush = await tunnel.Requests.Writer.FlushAsync();
                if (read.IsCompleted || flush.IsCompleted) return;
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ConnectionResetException or SocketException) { }
        finally { tunnel.PostLock.Release(); }
    }
}
