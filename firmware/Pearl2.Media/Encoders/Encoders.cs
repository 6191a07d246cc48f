using Pearl2.Formats.Codecs;
using Pearl2.Media.FFmpeg;
using static Pearl2.Media.FFmpeg.LibAv;

namespace Pearl2.Media.Encoders;

public sealed class EncoderException(string message) : Exception(message);

/// <summary>Receives encoded access units; <paramref name="prefix"/> is parameter sets to put in front, or empty.</summary>
public interface IEncodedSink
{
    void OnEncoded(TrackKind track, ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> data, long pts, bool keyFrame);
}

/// <summary>An H.264 encoder the video loop draws into: libavcodec (<see cref="H264Encoder"/>) or a V4L2 mem2mem device.</summary>
public interface IVideoEncoder : IDisposable
{
    H264EncoderOptions Options { get; }
    /// <summary>What the encoder is, for the log (name, device, input format).</summary>
    string Description { get; }
    /// <summary>The picture to draw the next frame into.</summary>
    PicturePlanes BeginFrame();
    /// <summary>Encodes the picture drawn since <see cref="BeginFrame"/>; frameIndex counts frames.</summary>
    void Encode(long frameIndex, bool forceKeyFrame, IEncodedSink sink);
}

/// <summary>
/// Keeps the last SPS and PPS an encoder produced, so every IDR can leave with them in front: late joiners
/// need them, and hardware encoders (h264_v4l2m2m, bcm2835-codec) often send them only once.
/// </summary>
public sealed class ParameterSets
{
    byte[] _sets = [];
    int _length;

    /// <summary>Scans an access unit; returns the parameter sets to put in front of it (empty when none are needed).</summary>
    public ReadOnlySpan<byte> PrefixFor(ReadOnlySpan<byte> accessUnit, bool keyFrame)
    {
        bool hasSps = false, hasPps = false;
        int psEnd = 0;
        var reader = new AnnexBReader(accessUnit);
        while (reader.TryNext(out int start, out int length))
        {
            if (length == 0) continue;
            int type = accessUnit[start] & 0x1f;
            if (type == NalType.Sps) hasSps = true;
            else if (type == NalType.Pps) { hasPps = true; psEnd = start + length; }
        }
        if (hasSps && hasPps)
        {
            // Remember them with their start codes (they lead the access unit).
            if (_sets.Length < psEnd) _sets = new byte[psEnd];
            accessUnit[..psEnd].CopyTo(_sets);
            _length = psEnd;
            return ReadOnlySpan<byte>.Empty;
        }
        return keyFrame ? _sets.AsSpan(0, _length) : ReadOnlySpan<byte>.Empty;
    }
}

public sealed record H264EncoderOptions(string Encoder, int Width, int Height, int Fps, long Bitrate, int KeyFrameInterval, string Preset, string Tune, bool ConstantBitrate = false);

/// <summary>One open libavcodec encoder context and its reusable frame and packet.</summary>
public abstract unsafe partial class AvEncoder : IDisposable
{
    protected nint Context, Frame, Packet;

    protected AvEncoder(string codecName)
    {
        FFmpegLibraries.EnsureAvailable();
        Codec = avcodec_find_encoder_by_name(codecName);
        if (Codec == 0) throw new EncoderException($"encoder '{codecName}' is not in this libavcodec build");
        Context = avcodec_alloc_context3(Codec);
        Frame = av_frame_alloc();
        Packet = av_packet_alloc();
        if (Context == 0 || Frame == 0 || Packet == 0) throw new OutOfMemoryException("libavcodec allocation failed");
    }

    protected nint Codec { get; }

    protected void Set(string name, string value)
    {
        int r = av_opt_set(Context, name, value, AV_OPT_SEARCH_CHILDREN);
        if (r < 0) throw new EncoderException($"encoder option {name}={value}: {ErrorText(r)}");
    }

    protected void SetInt(string name, long value)
    {
        int r = av_opt_set_int(Context, name, value, AV_OPT_SEARCH_CHILDREN);
        if (r < 0) throw new EncoderException($"encoder option {name}={value}: {ErrorText(r)}");
    }

    protected void SetRational(string name, int num, int den)
    {
        int r = av_opt_set_q(Context, name, new AVRational { Num = num, Den = den }, 0);
        if (r < 0) throw new EncoderException($"encoder option {name}={num}/{den}: {ErrorText(r)}");
    }

    protected void Open(string what)
    {
        int r = avcodec_open2(Context, Codec, null);
        if (r < 0) throw new EncoderException($"{what}: avcodec_open2 failed: {ErrorText(r)}");
    }

    protected static void Check(int r, string what)
    {
        if (r < 0) throw new EncoderException($"{what}: {ErrorText(r)}");
    }

    protected static ref T Field<T>(nint p, int offset) where T : unmanaged => ref *(T*)(p + offset);

    /// <summary>Sends the frame (or flush when null) and hands every packet that comes out to <paramref name="onPacket"/>.</summary>
    protected void SendAndDrain(bool flush, TrackKind track, IEncodedSink sink)
    {
        Check(avcodec_send_frame(Context, flush ? 0 : Frame), "avcodec_send_frame");
        while (true)
        {
            int r = avcodec_receive_packet(Context, Packet);
            if (r == AVERROR_EAGAIN || r == AVERROR_EOF) return;
            Check(r, "avcodec_receive_packet");
            try
            {
                var data = new ReadOnlySpan<byte>((void*)Field<nint>(Packet, AvLayout.PacketData), Field<int>(Packet, AvLayout.PacketSize));
                OnPacket(track, data, Field<long>(Packet, AvLayout.PacketPts), (Field<int>(Packet, AvLayout.PacketFlags) & AV_PKT_FLAG_KEY) != 0, sink);
            }
            finally { av_packet_unref(Packet); }
        }
    }

    protected abstract void OnPacket(TrackKind track, ReadOnlySpan<byte> data, long pts, bool key, IEncodedSink sink);

    /// <summary>Frees what a subclass holds beside the codec (a scaler); called once, from <see cref="Dispose"/>.</summary>
    protected virtual void OnDispose() { }

    public void Dispose()
    {
        if (Context != 0) OnDispose();
        var c = Context; var f = Frame; var p = Packet;
        if (c != 0) avcodec_free_context(&c);
        if (f != 0) av_frame_free(&f);
        if (p != 0) av_packet_free(&p);
        Context = Frame = Packet = 0;
        GC.SuppressFinalize(this);
    }

    ~AvEncoder() { Dispose(); }
}

/// <summary>Planes of a writable YUV 4:2:0 picture.</summary>
public readonly unsafe struct PicturePlanes(byte* y, byte* u, byte* v, int yStride, int cStride, int width, int height)
{
    public byte* Y { get; } = y;
    public byte* U { get; } = u;
    public byte* V { get; } = v;
    public int YStride { get; } = yStride;
    public int CStride { get; } = cStride;
    public int Width { get; } = width;
    public int Height { get; } = height;
}

/// <summary>
/// H.264 through libavcodec (libx264 on a host, h264_v4l2m2m on a board). Every IDR leaves with SPS and PPS in
/// front of it: when the encoder does not repeat them (h264_v4l2m2m), the last ones seen are put back.
/// </summary>
public sealed unsafe class H264Encoder : AvEncoder, IVideoEncoder
{
    readonly H264EncoderOptions _o;
    readonly ParameterSets _parameterSets = new();

    public H264Encoder(H264EncoderOptions o) : base(o.Encoder)
    {
        _o = o;
        Set("video_size", $"{o.Width}x{o.Height}");
        Set("pixel_format", "yuv420p");
        SetRational("time_base", 1, o.Fps);
        SetInt("b", o.Bitrate);
        SetInt("g", o.KeyFrameInterval);
        SetInt("keyint_min", o.KeyFrameInterval);
        if (o.Encoder == "libx264")
        {
            Set("preset", o.Preset);
            if (o.Tune.Length > 0) Set("tune", o.Tune);
            Set("forced-idr", "1");
            // Steady bitrate for live viewers: VBV of one second, no scene-cut IDRs between the planned ones.
            Set("x264-params", $"scenecut=0:vbv-maxrate={o.Bitrate / 1000}:vbv-bufsize={o.Bitrate / 1000}:repeat-headers=1" + (o.ConstantBitrate ? ":nal-hrd=cbr" : ""));
        }
        Open($"H.264 encoder {o.Encoder} {o.Width}x{o.Height}@{o.Fps}");

        Field<int>(Frame, AvLayout.FrameWidth) = o.Width;
        Field<int>(Frame, AvLayout.FrameHeight) = o.Height;
        Field<int>(Frame, AvLayout.FrameFormat) = AV_PIX_FMT_YUV420P;
        Check(av_frame_get_buffer(Frame, 32), "av_frame_get_buffer(video)");
    }

    public H264EncoderOptions Options => _o;
    public string Description => $"{_o.Encoder} (libavcodec)";

    /// <summary>The frame to draw the next picture into (made writable: the encoder may still hold the last one).</summary>
    public PicturePlanes BeginFrame()
    {
        Check(av_frame_make_writable(Frame), "av_frame_make_writable");
        var data = (byte**)(Frame + AvLayout.FrameData);
        var lines = (int*)(Frame + AvLayout.FrameLinesize);
        return new PicturePlanes(data[0], data[1], data[2], lines[0], lines[1], _o.Width, _o.Height);
    }

    /// <summary>Encodes the frame drawn since <see cref="BeginFrame"/>; pts counts frames.</summary>
    public void Encode(long frameIndex, bool forceKeyFrame, IEncodedSink sink)
    {
        Field<long>(Frame, AvLayout.FramePts) = frameIndex;
        Field<int>(Frame, AvLayout.FramePictType) = forceKeyFrame ? AV_PICTURE_TYPE_I : 0;
        SendAndDrain(false, TrackKind.Video, sink);
    }

    protected override void OnPacket(TrackKind track, ReadOnlySpan<byte> data, long pts, bool key, IEncodedSink sink)
    {
        var prefix = _parameterSets.PrefixFor(data, key);
        sink.OnEncoded(TrackKind.Video, prefix, data, pts * 90000 / _o.Fps, key);
    }
}

/// <summary>AAC-LC through FFmpeg's native 'aac' encoder: planar float in, raw AAC frames (no ADTS) out.</summary>
public sealed unsafe class AacEncoder : AvEncoder
{
    public const int FrameSamples = 1024;
    public int SampleRate { get; }
    public int Channels { get; }

    public AacEncoder(int sampleRate, int channels, long bitrate) : base("aac")
    {
        SampleRate = sampleRate;
        Channels = channels;
        Field<int>(Context, AvLayout.CodecContextSampleFmt) = AV_SAMPLE_FMT_FLTP;
        SetInt("ar", sampleRate);
        Set("ch_layout", channels == 1 ? "mono" : "stereo");
        SetRational("time_base", 1, sampleRate);
        SetInt("b", bitrate);
        Open($"AAC encoder {sampleRate} Hz {channels} ch");

        Field<int>(Frame, AvLayout.FrameNbSamples) = FrameSamples;
        Field<int>(Frame, AvLayout.FrameFormat) = AV_SAMPLE_FMT_FLTP;
        Field<int>(Frame, AvLayout.FrameSampleRate) = sampleRate;
        av_channel_layout_default(Frame + AvLayout.FrameChLayout, channels);
        Check(av_frame_get_buffer(Frame, 0), "av_frame_get_buffer(audio)");
    }

    public byte[] AudioSpecificConfig => AacConfig.AudioSpecificConfig(SampleRate, Channels);

    /// <summary>The plane of one channel for the next 1024 samples.</summary>
    public Span<float> BeginFrame(int channel)
    {
        if (channel == 0) Check(av_frame_make_writable(Frame), "av_frame_make_writable");
        var data = (float**)(Frame + AvLayout.FrameData);
        return new Span<float>(data[channel], FrameSamples);
    }

    public void Encode(long firstSample, IEncodedSink sink)
    {
        Field<long>(Frame, AvLayout.FramePts) = firstSample;
        SendAndDrain(false, TrackKind.Audio, sink);
    }

    protected override void OnPacket(TrackKind track, ReadOnlySpan<byte> data, long pts, bool key, IEncodedSink sink)
        => sink.OnEncoded(TrackKind.Audio, default, data, pts, true);
}
