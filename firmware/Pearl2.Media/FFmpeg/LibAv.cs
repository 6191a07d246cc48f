using System.Runtime.InteropServices;

namespace Pearl2.Media.FFmpeg;

/// <summary>
/// The few libavcodec / libavutil entry points we use, bound by soname so that only Debian 12's runtime
/// packages (libavcodec59, libavutil57, libavformat59, libswscale6) are needed, not the -dev ones.
/// </summary>
internal static unsafe partial class LibAv
{
    public const string AvCodec = "libavcodec.so.59";
    public const string AvUtil = "libavutil.so.57";
    public const string AvFormat = "libavformat.so.59";
    public const string SwScale = "libswscale.so.6";

    public const int AVERROR_EAGAIN = -11;
    public const int AVERROR_EOF = -('E' | ('O' << 8) | ('F' << 16) | (' ' << 24));
    public const int AV_OPT_SEARCH_CHILDREN = 1;
    public const int AV_PIX_FMT_YUV420P = 0;
    public const int AV_SAMPLE_FMT_FLTP = 8;
    public const int AV_PICTURE_TYPE_I = 1;
    public const int AV_PKT_FLAG_KEY = 1;

    [StructLayout(LayoutKind.Sequential)]
    public struct AVRational { public int Num; public int Den; }

    [LibraryImport(AvCodec)] public static partial uint avcodec_version();
    [LibraryImport(AvCodec, StringMarshalling = StringMarshalling.Utf8)] public static partial nint avcodec_find_encoder_by_name(string name);
    [LibraryImport(AvCodec)] public static partial nint avcodec_alloc_context3(nint codec);
    [LibraryImport(AvCodec)] public static partial void avcodec_free_context(nint* ctx);
    [LibraryImport(AvCodec)] public static partial int avcodec_open2(nint ctx, nint codec, nint* options);
    [LibraryImport(AvCodec)] public static partial int avcodec_send_frame(nint ctx, nint frame);
    [LibraryImport(AvCodec)] public static partial int avcodec_receive_packet(nint ctx, nint packet);
    [LibraryImport(AvCodec)] public static partial nint av_packet_alloc();
    [LibraryImport(AvCodec)] public static partial void av_packet_free(nint* packet);
    [LibraryImport(AvCodec)] public static partial void av_packet_unref(nint packet);

    [LibraryImport(AvUtil)] public static partial uint avutil_version();
    [LibraryImport(AvUtil)] public static partial nint av_frame_alloc();
    [LibraryImport(AvUtil)] public static partial void av_frame_free(nint* frame);
    [LibraryImport(AvUtil)] public static partial int av_frame_get_buffer(nint frame, int align);
    [LibraryImport(AvUtil)] public static partial int av_frame_make_writable(nint frame);
    [LibraryImport(AvUtil, StringMarshalling = StringMarshalling.Utf8)] public static partial int av_opt_set(nint obj, string name, string value, int searchFlags);
    [LibraryImport(AvUtil, StringMarshalling = StringMarshalling.Utf8)] public static partial int av_opt_set_int(nint obj, string name, long value, int searchFlags);
    [LibraryImport(AvUtil, StringMarshalling = StringMarshalling.Utf8)] public static partial int av_opt_set_q(nint obj, string name, AVRational value, int searchFlags);
    [LibraryImport(AvUtil)] public static partial void av_channel_layout_default(nint layout, int channels);   // void in FFmpeg: an int here read garbage on arm64
    [LibraryImport(AvUtil)] public static partial int av_strerror(int errnum, byte* buf, nuint size);
    [LibraryImport(AvUtil)] public static partial void av_log_set_level(int level);

    [LibraryImport(AvFormat)] public static partial uint avformat_version();
    [LibraryImport(SwScale)] public static partial uint swscale_version();
    [LibraryImport(SwScale)] public static partial nint sws_getContext(int srcW, int srcH, int srcFormat, int dstW, int dstH, int dstFormat, int flags, nint srcFilter, nint dstFilter, nint param);
    [LibraryImport(SwScale)] public static partial int sws_scale(nint ctx, byte** srcSlice, int* srcStride, int srcSliceY, int srcSliceH, byte** dst, int* dstStride);
    [LibraryImport(SwScale)] public static partial void sws_freeContext(nint ctx);
    public const int SWS_BILINEAR = 2;

    public static string ErrorText(int err)
    {
        byte* buf = stackalloc byte[128];
        return av_strerror(err, buf, 128) == 0 ? Marshal.PtrToStringUTF8((nint)buf) ?? $"error {err}" : $"error {err}";
    }
}

/// <summary>
/// Field offsets into FFmpeg 5.1's structs (x86_64 and aarch64 agree: LP64). Pinned by a test that compiles
/// a C offsetof program against Debian's headers; a different FFmpeg major version is refused at start.
/// </summary>
internal static class AvLayout
{
    public const int FrameData = 0;          // uint8_t *data[8]
    public const int FrameLinesize = 64;     // int linesize[8]
    public const int FrameWidth = 104;
    public const int FrameHeight = 108;
    public const int FrameNbSamples = 112;
    public const int FrameFormat = 116;
    public const int FramePictType = 124;
    public const int FramePts = 136;
    public const int FrameSampleRate = 208;
    public const int FrameChLayout = 448;    // AVChannelLayout ch_layout

    public const int PacketPts = 8;
    public const int PacketDts = 16;
    public const int PacketData = 24;
    public const int PacketSize = 32;
    public const int PacketFlags = 40;

    public const int CodecContextSampleFmt = 360; // not reachable through AVOptions in 5.1
}
