using Pearl2.Services.Channels;
using Pearl2.Services.Configuration;

namespace Pearl2.Services.HttpLive;

/// <summary>HTTP live streams on every channel (FLV, MPEG-TS, the preview and the channel page) on its port 8000+i.</summary>
public sealed class HttpLiveChannelService(HttpLiveServer server, TimeProvider time) : IChannelService
{
    public string Name => "http";

    public async Task<IChannelAttachment> AttachAsync(ChannelContext ctx, ChannelConfig config, ChannelAccess access)
    {
        int port = ctx.Ports.HttpPort(ctx.Index);
        var live = HttpLiveServer.AddChannel(ctx.Hub, port, config.Audio.Enabled, config.Audio.SampleRate, config.Audio.Channels);
        live.Preview = new PreviewCache(ctx.Pipeline.Preview, time);
        live.RtspPort = ctx.Ports.RtspPort(ctx.Index);
        var attachment = new Attachment(server, live);
        attachment.Apply(config, access);
        attachment.Listener = await ctx.BindAsync($"HTTP port {port}", () => server.ListenAsync(live));
        return attachment;
    }

    public sealed class Attachment(HttpLiveServer server, HttpLiveChannel live) : IChannelAttachment
    {
        internal ViewerPort? Listener;
        public HttpLiveChannel Channel => live;

        public int Apply(ChannelConfig config, ChannelAccess access)
        {
            live.StreamingEnabled = access.Streaming;
            live.Credentials = access.Credentials;
            return server.Revoke(live);
        }

        public void Report(ChannelStatusBuilder status)
        {
            status.Viewers["http"] = server.ViewerCount(live.Hub.Index + 1);
            status.BytesSent["http"] = Interlocked.Read(ref live.BytesSent);
        }

        public async ValueTask DisposeAsync()
        {
            if (Listener is not null) await Listener.DisposeAsync();
        }
    }
}
