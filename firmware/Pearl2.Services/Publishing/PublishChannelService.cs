using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Pearl2.Services.Channels;
using Pearl2.Services.Configuration;

namespace Pearl2.Services.Publishing;

/// <summary>
/// Publishing on every channel: each destination in the channel's <c>publishers</c> (id: its place in that list, from
/// 0 as Pearl counts them), started with the channel when <c>enabled</c>, by the panel or the API at any time, and by the Stream button when
/// <c>streamButton</c> says so (it follows the channel's streaming switch). A config change keeps the destinations whose
/// settings did not change running, restarts the changed ones and stops the removed ones.
/// </summary>
public sealed class PublishChannelService(ILoggerFactory loggers, TimeProvider time) : IChannelService
{
    public string Name => "publish";

    public Task<IChannelAttachment> AttachAsync(ChannelContext ctx, ChannelConfig config, ChannelAccess access)
    {
        var a = new Attachment(ctx, loggers.CreateLogger("Pearl2.Publish"), time);
        a.Apply(config, access);
        return Task.FromResult<IChannelAttachment>(a);
    }

    public sealed class Attachment(ChannelContext ctx, ILogger log, TimeProvider time) : IChannelAttachment
    {
        readonly object _lock = new();
        List<(string Settings, Publisher Publisher)> _publishers = new();
        bool _streaming;

        public IReadOnlyList<Publisher> Publishers { get { lock (_lock) return _publishers.Select(p => p.Publisher).ToList(); } }

        static string Settings(PublisherConfig c) => JsonSerializer.Serialize(c, ConfigJson.Default.PublisherConfig);

        Publisher Create(string id, PublisherConfig c, ChannelConfig channel) => c.Type switch
        {
            "srt" => new SrtPublisher(id, c, ctx, log, time),
            _ => new RtmpPublisher(id, c, ctx, channel.Video.BitrateKbps, log, time),
        };

        public int Apply(ChannelConfig config, ChannelAccess access)
        {
            List<Publisher> removed = new(), stop = new(), start = new();
            lock (_lock)
            {
                var next = new List<(string, Publisher)>();
                var old = _publishers.ToList();
                for (int i = 0; i < config.Publishers.Count; i++)
                {
                    var c = config.Publishers[i];
                    string id = i.ToString(CultureInfo.InvariantCulture), settings = Settings(c);
                    int same = old.FindIndex(o => o.Settings == settings && o.Publisher.Id == id);
                    if (same >= 0) { next.Add(old[same]); old.RemoveAt(same); continue; }
                    var p = Create(id, c, config);
                    next.Add((settings, p));
                    if (c.Enabled || c.StreamButton && access.Streaming) start.Add(p);
                }
                removed.AddRange(old.Select(o => o.Publisher));
                // The Stream button: destinations that follow it start and stop with the channel's streaming switch.
                if (access.Streaming != _streaming)
                    foreach (var (_, p) in next.Where(n => n.Item2.Config.StreamButton && !start.Contains(n.Item2)))
                        if (access.Streaming) start.Add(p); else stop.Add(p);
                _streaming = access.Streaming;
                _publishers = next;
            }
            foreach (var p in removed) _ = p.StopAsync("config (removed or changed)");
            foreach (var p in stop) _ = p.StopAsync("stream button");
            foreach (var p in start) p.Start(p.Config.Enabled ? "config" : "stream button");
            return 0;
        }

        public void Report(ChannelStatusBuilder status)
        {
            foreach (var p in Publishers) status.Publishers.Add(p.Status());
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var p in Publishers) await p.DisposeAsync();
        }
    }
}
