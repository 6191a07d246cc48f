using Pearl2.Services.Configuration;
using Pearl2.Services.Recording;
using Pearl2.Services.Update;

namespace Pearl2.Services;

public enum DeviceState { Starting, Ready, Updating, Fatal }

/// <summary>What the panel shows; read on every tick, so any part of the device can change it without events.</summary>
public readonly record struct PanelStatus(DeviceState State, bool Recording, bool RecordingFault, bool Streaming, bool SetupPending = false, bool UploadFailing = false);

/// <summary>A channel's recorder: its state, the file it writes, and why it stopped when it failed.</summary>
public sealed record RecorderStatus(RecorderState State, string? CurrentFile, DateTimeOffset? StartedAt, string? LastError);

/// <summary>One channel in a <see cref="DeviceStatus"/>.</summary>
public sealed record ChannelStatus(int Number, string Name, bool Streaming, bool LoginRequired, int RtspPort, int HttpPort,
    int Width, int Height, int Fps, int BitrateKbps, long FramesEncoded, IReadOnlyDictionary<string, int> Viewers, RecorderStatus? Recorder)
{
    /// <summary>Frames the encoder could not keep up with, and bytes sent to viewers per door (for the metrics).</summary>
    public long FramesSkipped { get; init; }
    /// <summary>The sound's recent peak, left and right, from 0 to 1 (both 0 without audio).</summary>
    public (float Left, float Right) AudioPeak { get; init; }
    public IReadOnlyDictionary<string, long> BytesSent { get; init; } = new Dictionary<string, long>();
    /// <summary>The streaming servers it is pushed to (RTMP, SRT), in the order of its config.</summary>
    public IReadOnlyList<Publishing.PublisherStatus> Publishers { get; init; } = [];

    public int ViewersOf(string door) => Viewers.GetValueOrDefault(door);
}

/// <summary>The recordings' filesystem.</summary>
public sealed record DiskStatus(string Directory, long TotalBytes, long FreeBytes, long RecordingBytes);

/// <summary>The front panel's LEDs (pattern names, "none" without a panel) and the status display's lines.</summary>
public sealed record PanelView(string RecordLed, string StreamLed, string StatusLed, IReadOnlyList<string> DisplayLines);

/// <summary>
/// The whole device at one moment, as every control door shows it (the control socket, the admin API, discovery):
/// built fresh by <see cref="IDeviceControl.Status"/>, never updated in place.
/// </summary>
public sealed record DeviceStatus(DeviceState State, bool Recording, bool RecordingFault, bool Streaming, IReadOnlyList<ChannelStatus> Channels,
    DiskStatus? Disk, string FirmwareVersion, string? Slot, UpdateStatus? Update, PanelView? Panel, long ConfigVersion)
{
    /// <summary>Every upload target, the device's ("0") first; empty when the device records nothing.</summary>
    public IReadOnlyList<Upload.UploadStatus> Uploads { get; init; } = [];
    /// <summary>The device's own upload target.</summary>
    public Upload.UploadStatus? Upload => Uploads.FirstOrDefault(u => u.Id == "0");
}

/// <summary>
/// Everything an operator can ask of the device, whichever door it comes through. Channel numbers are 1-based;
/// null means every channel. <c>by</c> says who asked, for the log ("panel", "control", "api").
/// </summary>
public interface IDeviceControl
{
    DeviceStatus Status();
    Task StartRecordingAsync(int? channel, string by);
    Task StopRecordingAsync(int? channel, string by);
    void SetStreaming(bool on, string by);
    /// <summary>Starts or stops a channel's destinations (one, or all when <paramref name="publisher"/> is null); their statuses after.</summary>
    Task<IReadOnlyList<Publishing.PublisherStatus>> ControlPublishersAsync(int channel, string? publisher, bool start, string by);
    /// <summary>Checks the update server now; the answer is the updater's one-line result. Throws when updates are off.</summary>
    Task<string> CheckForUpdateAsync(CancellationToken ct);
    /// <summary>Restarts the device (the host simulation: the boot loader runs again).</summary>
    void Reboot(string by);
    /// <summary>Switches the device off (the host simulation: pearl2d stops).</summary>
    void Shutdown(string by);
    /// <summary>Validates, saves and applies a whole new config; refused whole with every reason.</summary>
    Task<ConfigChange> ApplyConfigAsync(FirmwareConfig next, string by);
    /// <summary>The channel's latest picture as a JPEG about <paramref name="width"/> wide; null while it shows nothing yet.</summary>
    Task<byte[]?> PreviewAsync(int channel, int? width);
}
