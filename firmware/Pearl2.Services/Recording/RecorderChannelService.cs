using Microsoft.Extensions.Logging;
using Pearl2.Services.Channels;
using Pearl2.Services.Configuration;

namespace Pearl2.Services.Recording;

/// <summary>A recorder on every channel, writing into the device's one recording library.</summary>
public sealed class RecorderChannelService(RecordingLibrary library, TimeProvider time, ILoggerFactory loggers) : IChannelService
{
    public string Name => "recorder";
    public RecordingLibrary Library => library;

    public Task<IChannelAttachment> AttachAsync(ChannelContext ctx, ChannelConfig config, ChannelAccess access) =>
        Task.FromResult<IChannelAttachment>(new Attachment(new Recorder(ctx.Hub, library, time, loggers.CreateLogger("Pearl2.Recording")), config));

    public sealed class Attachment(Recorder recorder, ChannelConfig config) : IChannelAttachment
    {
        public Recorder Recorder => recorder;
        /// <summary>Whether Record starts this channel (its config's <c>record</c>).</summary>
        public bool RecordOnPress { get; private set; } = config.Record;

        public int Apply(ChannelConfig config, ChannelAccess access) { RecordOnPress = config.Record; return 0; }

        public void Report(ChannelStatusBuilder status) =>
            status.Recorder = new RecorderStatus(recorder.State, recorder.CurrentFile, recorder.StartedAt, recorder.LastError);

        public async ValueTask DisposeAsync() => await recorder.StopAsync();
    }
}
