using System.Net.Sockets;
using Pearl2.Media;
using Pearl2.Media.Sources;
using Pearl2.Services.Configuration;

namespace Pearl2.Services.Channels;

/// <summary>A channel's port could not be bound; the message names the channel and the port.</summary>
public sealed class PortBindException(string message, Exception inner) : IOException(message, inner);

/// <summary>What every per-channel service gets of a running channel: its hub, encoder, ports and number.</summary>
public sealed class ChannelContext
{
    public required int Index { get; init; }
    public required ChannelHub Hub { get; init; }
    public required EncodePipeline Pipeline { get; init; }
    /// <summary>The device's port plan when the channel started: <c>Ports.RtspPort(Index)</c> and the like.</summary>
    public required PortPlan Ports { get; init; }
    public int Number => Index + 1;

    /// <summary>Binds one of the channel's ports; a failure names the channel and the port, whatever layer threw it.</summary>
    public async Task<T> BindAsync<T>(string what, Func<Task<T>> bind)
    {
        try { return await bind(); }
        catch (Exception e) when (e is SocketException or Microsoft.AspNetCore.Connections.AddressInUseException or IOException and not PortBindException)
        {
            bool inUse = e is Microsoft.AspNetCore.Connections.AddressInUseException || e is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse };
            bool denied = e is SocketException { SocketErrorCode: SocketError.AccessDenied } || e.InnerException is SocketException { SocketErrorCode: SocketError.AccessDenied };
            throw new PortBindException($"channel {Number}: {what}: " + (inUse ? "already in use by another program" : denied ? "needs privileges (use --port-offset N or auto)" : e.Message), e);
        }
    }
}

/// <summary>Who may watch a channel now: its streaming switch (after the Stream button) and its login (null: anyone).</summary>
public readonly record struct ChannelAccess(bool Streaming, ViewerCredentials? Credentials);

/// <summary>
/// A service that attaches to every channel (RTSP, HTTP live, the recorder; publishing and upload to come). The device
/// attaches each registered service, in order, when a channel starts, and disposes the attachments in reverse order
/// when it stops or its pictures change; a config change that keeps the pictures is handed to <see cref="IChannelAttachment.Apply"/>.
/// </summary>
public interface IChannelService
{
    /// <summary>The service's word in logs and status ("rtsp", "http", "recorder").</summary>
    string Name { get; }

    /// <summary>Attaches to a channel that is about to start encoding; binding failures throw <see cref="PortBindException"/>.</summary>
    Task<IChannelAttachment> AttachAsync(ChannelContext channel, ChannelConfig config, ChannelAccess access);
}

/// <summary>One service on one channel.</summary>
public interface IChannelAttachment : IAsyncDisposable
{
    /// <summary>A new config for the channel with the same pictures and sound (name, streaming, login): returns the viewers it had to end.</summary>
    int Apply(ChannelConfig config, ChannelAccess access);

    /// <summary>Adds what this service knows to the channel's status (viewers, recorder state).</summary>
    void Report(ChannelStatusBuilder status);
}

/// <summary>A channel's status as its services fill it in.</summary>
public sealed class ChannelStatusBuilder
{
    public Dictionary<string, int> Viewers { get; } = new(StringComparer.Ordinal);
    /// <summary>Bytes sent to viewers since the channel started, per door.</summary>
    public Dictionary<string, long> BytesSent { get; } = new(StringComparer.Ordinal);
    public RecorderStatus? Recorder { get; set; }
    /// <summary>Each destination the channel is pushed to, in the order of its config.</summary>
    public List<Publishing.PublisherStatus> Publishers { get; } = new();
}
