using Microsoft.Extensions.Logging;

namespace Pearl2.Services.Rtsp;

/// <summary>
/// One channel's RTSP port (a <see cref="ViewerPort"/>: our accept loop, its connection limits, Kestrel's socket
/// transport), bound and unbound on its own so channels come and go without touching each other's listeners.
/// </summary>
public sealed class RtspListener : IAsyncDisposable
{
    readonly ViewerPort _port;

    RtspListener(ViewerPort port) => _port = port;

    /// <summary>The port's connection limits; a new value applies to the next connections.</summary>
    public ConnectionLimits Limits { get => _port.Gate.Limits; set => _port.Gate.Limits = value; }
    public ConnectionGate Gate => _port.Gate;

    public static Task<RtspListener> BindAsync(RtspServer server, RtspChannel channel, ILoggerFactory loggers)
    {
        var port = ViewerPort.Bind(channel.Port, $"rtsp:{channel.Port}", server.Options.Limits, c => server.HandleAsync(c, channel), loggers, server.Time);
        return Task.FromResult(new RtspListener(port));
    }

    public ValueTask DisposeAsync() => _port.DisposeAsync();
}
