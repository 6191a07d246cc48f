using Microsoft.Extensions.Logging;
using Pearl2.Services.Channels;
using Pearl2.Services.Configuration;

namespace Pearl2.Services.Rtsp;

/// <summary>RTSP on every channel: its TCP port (554+i) and its UDP server ports, from the port plan.</summary>
public sealed class RtspChannelService(RtspServer server, ILoggerFactory loggers) : IChannelService
{
    public string Name => "rtsp";
    public RtspServer Server => server;

    public async Task<IChannelAttachment> AttachAsync(ChannelContext ctx, ChannelConfig config, ChannelAccess access)
    {
        int port = ctx.Ports.RtspPort(ctx.Index), udp = ctx.Ports.UdpPort(ctx.Index);
        var channel = await ctx.BindAsync($"RTSP/UDP ports {udp}-{udp + 3}", () => Task.FromResult(server.AddChannel(ctx.Hub, port, udp)));
        var attachment = new Attachment(server, channel);
        attachment.Apply(config, access);
        try { attachment.Listener = await ctx.BindAsync($"RTSP port {port}", () => RtspListener.BindAsync(server, channel, loggers)); }
        catch
        {
            server.RemoveChannel(channel);
            throw;
        }
        return attachment;
    }

    public sealed class Attachment(RtspServer server, RtspChannel channel) : IChannelAttachment
    {
        internal RtspListener? Listener;
        public RtspChannel Channel => channel;

        public int Apply(ChannelConfig config, ChannelAccess access)
        {
            channel.StreamingEnabled = access.Streaming;
            channel.Credentials = access.Credentials;
            return server.Revoke(channel);
        }

        public void Report(ChannelStatusBuilder status)
        {
            status.Viewers["rtsp"] = server.ViewerCount(channel);
            status.BytesSent["rtsp"] = channel.BytesSent;
        }

        public async ValueTask DisposeAsync()
        {
            if (Listener is not null) await Listener.DisposeAsync();
            server.RemoveChannel(channel);
        }
    }
}
