using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Pearl2.Services.Rtsp;

/// <summary>
/// One channel's RTSP port on Kestrel's socket transport (System.IO.Pipelines, the socket feature), bound
/// and unbound on its own so channels come and go without touching each other's listeners.
/// </summary>
public sealed class RtspListener : IAsyncDisposable
{
    readonly IConnectionListener _listener;
    readonly Task _acceptLoop;
    readonly ILogger _log;

    RtspListener(IConnectionListener listener, RtspServer server, RtspChannel channel, ILogger log)
    {
        _listener = listener;
        _log = log;
        _acceptLoop = AcceptLoopAsync(server, channel);
    }

    public static async Task<RtspListener> BindAsync(RtspServer server, RtspChannel channel, ILoggerFactory loggers)
    {
        var factory = new SocketTransportFactory(Options.Create(new SocketTransportOptions { NoDelay = true }), loggers);
        var listener = await factory.BindAsync(new IPEndPoint(IPAddress.IPv6Any, channel.Port));
        return new RtspListener(listener, server, channel, loggers.CreateLogger("Pearl2.Rtsp"));
    }

    async Task AcceptLoopAsync(RtspServer server, RtspChannel channel)
    {
        var backoff = new AcceptBackoff(_log, $"rtsp:{channel.Port}");
        while (true)
        {
            ConnectionContext? connection;
            try { connection = await _listener.AcceptAsync(); }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException) { return; }
            catch (Exception e) { await backoff.FailedAsync(e); continue; } // out of descriptors: wait, never spin or stop
            if (connection is null) return; // unbound
            backoff.Accepted();
            _ = ServeAsync(server, channel, connection);
        }
    }

    static async Task ServeAsync(RtspServer server, RtspChannel channel, ConnectionContext connection)
    {
        try { await server.HandleAsync(connection, channel); }
        finally { await connection.DisposeAsync(); }
    }

    public async ValueTask DisposeAsync()
    {
        await _listener.UnbindAsync();
        await _listener.DisposeAsync();
        await _acceptLoop;
    }
}
