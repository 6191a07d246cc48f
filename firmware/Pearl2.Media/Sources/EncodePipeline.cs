using Microsoft.Extensions.Logging;
using Pearl2.Media.Encoders;

namespace Pearl2.Media.Sources;

/// <summary>
/// A pipeline's settings; <paramref name="CaptureDevice"/> (a V4L2 node) replaces the test picture and
/// <paramref name="AudioDevice"/> (an ALSA PCM name) the test tone when set.
/// </summary>
public sealed record PipelineOptions(H264EncoderOptions Video, bool Audio, int AudioSampleRate, int AudioChannels, long AudioBitrate,
    string? CaptureDevice = null, string? AudioDevice = null);

/// <summary>
/// Source (test picture, or a V4L2 capture device with a "No signal" picture while it has none) → encoders → hub
/// for one channel, on two dedicated threads (picture+H.264, tone+AAC), each
/// paced to the wall clock. When the machine cannot keep up, source frames are skipped, never queued, so
/// timestamps stay real time.
/// </summary>
public sealed class EncodePipeline : IEncodedSink, IDisposable
{
    readonly ChannelHub _hub;
    readonly PipelineOptions _o;
    readonly TimeProvider _time;
    readonly ILogger _log;
    readonly CancellationTokenSource _stop = new();
    Thread? _video, _audio;
    long _startTimestamp;
    volatile bool _keyFrameRequested;

    public EncodePipeline(ChannelHub hub, PipelineOptions options, TimeProvider time, ILogger log)
    {
        _hub = hub; _o = options; _time = time; _log = log;
        Preview = new PreviewFrames(time);
    }

    /// <summary>The latest raw picture, for JPEG previews.</summary>
    public PreviewFrames Preview { get; private set; } = null!;
    public long FramesEncoded { get; private set; }
    public long FramesSkipped { get; private set; }

    // The sound's peak per channel (as float bits), falling by about 40 dB a second after a peak: the panel's level meter.
    int _peakLeft, _peakRight;

    /// <summary>The recent peak of channel 0 (left) or 1 (right), from 0 to 1 (full scale).</summary>
    public float AudioPeak(int channel) => BitConverter.Int32BitsToSingle(Volatile.Read(ref channel == 0 ? ref _peakLeft : ref _peakRight));

    static void Meter(ref int slot, ReadOnlySpan<float> samples)
    {
        float peak = 0;
        foreach (float v in samples) peak = MathF.Max(peak, MathF.Abs(v));
        float held = BitConverter.Int32BitsToSingle(slot) * 0.9f;   // one AAC frame (21 ms at 48 kHz): about -0.9 dB
        Volatile.Write(ref slot, BitConverter.SingleToInt32Bits(MathF.Max(peak, held)));
    }
    public Exception? Fault { get; private set; }

    /// <summary>The ALSA device the audio comes from, or null for the test tone.</summary>
    public string? AudioDevice => _o.AudioDevice;

    public void RequestKeyFrame() => _keyFrameRequested = true;

    public void Start()
    {
        // Open both encoders here so a bad encoder name or option fails the start, not a thread; the video encoder's
        // own worker threads (libx264's) start at the encoder workers' priority, below the lanes and capture.
        var video = MediaThreads.Raised(MediaThreads.EncoderWorkersNice, OpenVideoEncoder);
        _log.LogInformation("encoder.opened channel={Channel} encoder=\"{Encoder}\" video={W}x{H}@{Fps}", _hub.Index + 1, video.Description, _o.Video.Width, _o.Video.Height, _o.Video.Fps);
        var audio = _o.Audio ? new AacEncoder(_o.AudioSampleRate, _o.AudioChannels, _o.AudioBitrate) : null;
        _startTimestamp = _time.GetTimestamp();
        var wall = _time.GetUtcNow();
        _hub.Describe(new StreamInfo(_o.Video.Width, _o.Video.Height, _o.Video.Fps, [], [], _o.AudioSampleRate, _o.AudioChannels, audio?.AudioSpecificConfig, wall));
        _video = new Thread(() => Run("video", () => VideoLoop(video))) { IsBackground = true, Name = $"video-ch{_hub.Index + 1}" };
        _video.Start();
        if (audio is not null)
        {
            _audio = new Thread(() => Run("audio", () => AudioLoop(audio))) { IsBackground = true, Name = $"audio-ch{_hub.Index + 1}" };
            _audio.Start();
        }
    }

    void Run(string what, Action loop)
    {
        if (!MediaThreads.Raise() && what == "video")
            _log.LogInformation("pipeline.nice channel={Channel} nice=0 reason=\"{Reason}\"", _hub.Index + 1,
                MediaThreads.Enabled ? "not allowed to raise the media threads to nice -10 (needs CAP_SYS_NICE or LimitNICE=-10)" : "PEARL2_MEDIA_NICE=0");
        try { loop(); }
        catch (Exception e)
        {
            Fault = e;
            _log.LogError("pipeline.fault channel={Channel} stage={Stage} error=\"{Error}\"", _hub.Index + 1, what, e.Message);
        }
    }

    /// <summary>
    /// "v4l2m2m" is the hardware encoder by ioctl (the first mem2mem device offering H.264); on a board without
    /// one, or one that refuses the picture size, libx264 takes over and the log says why. Any other name is a
    /// libavcodec encoder.
    /// </summary>
    IVideoEncoder OpenVideoEncoder()
    {
        if (_o.Video.Encoder != "v4l2m2m") return new H264Encoder(_o.Video);
        string reason = "no V4L2 mem2mem H.264 encoder in /dev/video*";
        if (V4l2.V4l2M2mEncoder.FindDevice(TryOpen) is { } path)
        {
            V4l2.V4l2Device? device = null;
            try
            {
                device = V4l2.V4l2Device.Open(path);
                return new V4l2.V4l2M2mEncoder(device, _o.Video);
            }
            catch (Exception e) when (e is EncoderException or IOException)
            {
                device?.Dispose();
                reason = e.Message;
            }
        }
        _log.LogWarning("encoder.fallback channel={Channel} wanted=v4l2m2m using=libx264 reason=\"{Reason}\"", _hub.Index + 1, reason);
        return new H264Encoder(_o.Video with { Encoder = "libx264" });

        static V4l2.IV4l2Device? TryOpen(string path)
        {
            if (!File.Exists(path)) return null;
            try { return V4l2.V4l2Device.Open(path); }
            catch (IOException) { return null; }
            catch (UnauthorizedAccessException) { return null; }
        }
    }

    void VideoLoop(IVideoEncoder enc)
    {
        using var _ = enc;
        using var capture = _o.CaptureDevice is { } device ? new V4l2.CaptureSource(device, _o.Video.Width, _o.Video.Height, _time, _log) : null;
        var noSignal = _o.CaptureDevice is { } input ? new NoSignalRenderer(_o.Video.Width, _o.Video.Height, input) : null;
        var renderer = capture is null ? new TestPatternRenderer(_o.Video.Width, _o.Video.Height, _o.Video.Fps) : null;
        long frame = 0, unreported = 0, lastReport = 0;
        int fps = _o.Video.Fps;
        while (!_stop.IsCancellationRequested)
        {
            long due = _startTimestamp + frame * _time.TimestampFrequency / fps;
            long now = _time.GetTimestamp();
            if (now < due) { WaitUntil(due); }
            else if (now - due > 2 * _time.TimestampFrequency / fps)
            {
                // Behind by more than two frames: skip to the present instead of building a backlog.
                long target = (now - _startTimestamp) * fps / _time.TimestampFrequency;
                FramesSkipped += target - frame;
                unreported += target - frame;
                frame = target;
            }
            if (unreported > 0 && now - lastReport >= _time.TimestampFrequency)
            {
                // At most one line a second, with what was skipped since the last one.
                _log.LogWarning("video.behind channel={Channel} skipped_frames={Skipped} total_skipped={Total} effect=\"frames dropped at the source, timestamps stay real time\"",
                    _hub.Index + 1, unreported, FramesSkipped);
                unreported = 0;
                lastReport = now;
            }
            var planes = enc.BeginFrame();
            if (capture is null) renderer!.Render(planes, frame, _time.GetUtcNow());
            else if (!capture.TryFill(planes)) noSignal!.Render(planes);
            Preview.Offer(planes, frame);
            bool key = _keyFrameRequested;
            _keyFrameRequested = false;
            enc.Encode(frame, key, this);
            FramesEncoded++;
            frame++;
        }
    }

    /// <summary>
    /// The tone, or an ALSA device whose own clock paces the loop; while the device gives nothing (unplugged,
    /// stalled) silence goes out on the wall clock, so the stream's audio track never stops.
    /// </summary>
    void AudioLoop(AacEncoder enc)
    {
        using var _ = enc;
        var tone = _o.AudioDevice is null ? new TestToneGenerator(_o.AudioSampleRate) : null;
        using var input = _o.AudioDevice is { } device ? new Alsa.AlsaCapture(device, _o.AudioSampleRate, _o.AudioChannels, AacEncoder.FrameSamples, _time, _log) : null;
        int frameMs = AacEncoder.FrameSamples * 1000 / _o.AudioSampleRate;
        long sample = 0;
        while (!_stop.IsCancellationRequested)
        {
            var left = enc.BeginFrame(0);
            var right = _o.AudioChannels > 1 ? enc.BeginFrame(1) : default;
            if (input is null || !input.TryRead(left, right, 2 * frameMs))
            {
                long due = _startTimestamp + sample * _time.TimestampFrequency / _o.AudioSampleRate;
                if (_time.GetTimestamp() < due) WaitUntil(due);
                if (tone is not null) tone.Render(left, right, sample);
                else { left.Clear(); right.Clear(); }
            }
            Meter(ref _peakLeft, left);
            Meter(ref _peakRight, _o.AudioChannels > 1 ? right : left);
            enc.Encode(sample, this);
            sample += AacEncoder.FrameSamples;
        }
    }

    /// <summary>These are dedicated real-time threads: sleeping is the point, nothing else waits on them.</summary>
    void WaitUntil(long timestamp)
    {
        var remaining = _time.GetElapsedTime(_time.GetTimestamp(), timestamp);
        if (remaining > TimeSpan.Zero) _stop.Token.WaitHandle.WaitOne(remaining);
    }

    public void OnEncoded(TrackKind track, ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> data, long pts, bool keyFrame)
        => _hub.Publish(_hub.Pool.Rent(track, keyFrame, pts, prefix, data));

    public void Dispose()
    {
        _stop.Cancel();
        _video?.Join(2000);
        _audio?.Join(2000);
    }
}
