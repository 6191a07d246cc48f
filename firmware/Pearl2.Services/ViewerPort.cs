using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;

namespace Pearl2.Services;

/// <summary>
/// One viewer port (a channel's RTSP or HTTP port): a dual-stack TCP listener with our own accept loop, each
/// accepted socket handed to Kestrel's socket transport (pipelines, the socket feature) as a connection.
/// Our own loop because Kestrel's accept retries at once when accept fails for want of file descriptors, spinning
/// a core; ours backs off (<see cref="AcceptBackoff"/>). Every connection passes the port's <see cref="ConnectionGate"/>
/// first; one past a limit is reset at once, before anything is read or logged for it.
/// </summary>
public sealed class ViewerPort : IAsyncDisposable
{
    readonly Socket _listen;
    readonly SocketConnectionContextFactory _contexts;
    readonly Func<ConnectionContext, Task> _serve;
    readonly ILogger _log;
    readonly AcceptBackoff _backoff;
    readonly CancellationTokenSource _stop = new();
    readonly ITimer _tick;
    readonly Task _loop;
    /// <summary>Connections being served, plus one for the port while it is open: the transport's pools go when it reaches 0.</summary>
    int _users = 1;

    public ConnectionGate Gate { get; }
    public int Port { get; }

    ViewerPort(Socket listen, int port, string name, ConnectionLimits limits, Func<ConnectionContext, Task> serve, ILoggerFactory loggers, TimeProvider time)
    {
        _listen = listen; Port = port; _serve = serve;
        _log = loggers.CreateLogger("Pearl2.Net");
        _contexts = new SocketConnectionContextFactory(new SocketConnectionFactoryOptions(), loggers.CreateLogger("Pearl2.Net.Transport"));
        _backoff = new AcceptBackoff(_log, name, time);
        Gate = new ConnectionGate(name, _log, time) { Limits = limits };
        _tick = time.CreateTimer(_ => Gate.Tick(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        _loop = AcceptLoopAsync();
    }

    /// <summary>Binds [::]:<paramref name="port"/> (IPv4 too) and starts accepting; <paramref name="serve"/> runs once per admitted connection.</summary>
    /// <exception cref="SocketException">The port is taken (AddressAlreadyInUse) or needs privileges (AccessDenied).</exception>
    public static ViewerPort Bind(int port, string name, ConnectionLimits limits, Func<ConnectionContext, Task> serve, ILoggerFactory loggers, TimeProvider? time = null)
    {
        var listen = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = true };
        try
        {
            listen.Bind(new IPEndPoint(IPAddress.IPv6Any, port));
            listen.Listen(1024);
        }
        catch
        {
            listen.Dispose();
            throw;
        }
        return new ViewerPort(listen, port, name, limits, serve, loggers, time ?? TimeProvider.System);
    }

    async Task AcceptLoopAsync()
    {
        await Task.Yield();
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try { socket = await _listen.AcceptAsync(_stop.Token); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || _stop.IsCancellationRequested) { return; }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset) { continue; } // gone while in the backlog
            catch (SocketException e)
            {
                // Out of descriptors (EMFILE, ENFILE) or memory: wait and try again, never spin, never stop.
                try { await _backoff.FailedAsync(e, _stop.Token); } catch (OperationCanceledException) { return; }
                continue;
            }
            _backoff.Accepted();
            var address = (socket.RemoteEndPoint as IPEndPoint)?.Address is { } a && a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : (socket.RemoteEndPoint as IPEndPoint)?.Address;
            if (!Gate.TryAdmit(address))
            {
                // A reset, not a close: no FIN handshake or TIME_WAIT is kept for a connection we never served.
                try { socket.LingerState = new LingerOption(true, 0); } catch (SocketException) { }
                socket.Dispose();
                continue;
            }
            _ = ServeAsync(socket, address);
        }
    }

    async Task ServeAsync(Socket socket, IPAddress? address)
    {
        Interlocked.Increment(ref _users);
        try
        {
            socket.NoDelay = true;
            var connection = _contexts.Create(socket);
            try { await _serve(connection); }
            catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ConnectionResetException or ConnectionAbortedException or ObjectDisposedException) { }
            catch (Exception e) { _log.LogError("net.connection_failed port={Port} remote={Remote} error=\"{Error}\"", Port, address, e.Message); }
            finally { await connection.DisposeAsync(); }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { socket.Dispose(); } // gone before it was served
        finally
        {
            Gate.Left(address);
            Release();
        }
    }

    void Release()
    {
        if (Interlocked.Decrement(ref _users) == 0) _contexts.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listen.Dispose();
        await _loop;
        await _tick.DisposeAsync();
        Release(); // the connections still open keep the transport until they end

    }
}
