using Pearl2.Media.FFmpeg;
using static Pearl2.Media.FFmpeg.LibAv;

namespace Pearl2.Media.Encoders;

/// <summary>
/// Still pictures for previews: scales a YUV 4:2:0 picture with libswscale and encodes it with libavcodec's
/// 'mjpeg' (full-range yuvj420p). One instance per output size; not thread-safe (the caller serialises).
/// </summary>
public sealed unsafe partial class JpegEncoder : AvEncoder
{
    const int AV_PIX_FMT_YUVJ420P = 12;
    readonly int _width, _height;
    nint _scaler;
    int _srcW, _srcH;
    byte[] _last = [];

    public JpegEncoder(int width, int height) : base("mjpeg")
    {
        _width = width; _height = height;
        Set("video_size", $"{width}x{height}");
        Set("pixel_format", "yuvj420p");
        SetRational("time_base", 1, 25);
        SetInt("qmin", 2);
        SetInt("qmax", 6);
        Open($"JPEG encoder {width}x{height}");
        Field<int>(Frame, AvLayout.FrameWidth) = width;
        Field<int>(Frame, AvLayout.FrameHeight) = height;
        Field<int>(Frame, AvLayout.FrameFormat) = AV_PIX_FMT_YUVJ420P;
        Check(av_frame_get_buffer(Frame, 32), "av_frame_get_buffer(jpeg)");
    }

    /// <summary>Scales <paramref name="src"/> (yuv420p) to this encoder's size and returns the JPEG file's bytes.</summary>
    public byte[] Encode(in PicturePlanes src, long pts)
    {
        if (_scaler == 0 || _srcW != src.Width || _srcH != src.Height)
        {
            if (_scaler != 0) sws_freeContext(_scaler);
            _scaler = sws_getContext(src.Width, src.Height, AV_PIX_FMT_YUV420P, _width, _height, AV_PIX_FMT_YUVJ420P, SWS_BILINEAR, 0, 0, 0);
            if (_scaler == 0) throw new EncoderException("sws_getContext failed");
            _srcW = src.Width; _srcH = src.Height;
        }
        Check(av_frame_make_writable(Frame), "av_frame_make_writable(jpeg)");
        var srcData = stackalloc byte*[4] { src.Y, src.U, src.V, null };
        var srcStride = stackalloc int[4] { src.YStride, src.CStride, src.CStride, 0 };
        sws_scale(_scaler, srcData, srcStride, 0, src.Height, (byte**)(Frame + AvLayout.FrameData), (int*)(Frame + AvLayout.FrameLinesize));
        Field<long>(Frame, AvLayout.FramePts) = pts;
        _last = [];
        SendAndDrain(false, TrackKind.Video, NullSink.Instance);
        return _last;
    }

    protected override void OnDispose()
    {
        if (_scaler != 0) sws_freeContext(_scaler);
        _scaler = 0;
    }

    protected override void OnPacket(TrackKind track, ReadOnlySpan<byte> data, long pts, bool key, IEncodedSink sink) => _last = data.ToArray();

    sealed class NullSink : IEncodedSink
    {
        public static readonly NullSink Instance = new();
        public void OnEncoded(TrackKind track, ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> data, long pts, bool keyFrame) { }
    }

}
