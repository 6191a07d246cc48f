using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Pearl2.Media.V4l2;

/// <summary>
/// The V4L2 user-space ABI (linux/videodev2.h) that capture and mem2mem need: the structures, laid out as the
/// kernel lays them out on 64-bit Linux (x86_64 and arm64 agree), and the ioctl request numbers built from them.
/// A unit test compiles offsetof/sizeof against linux-libc-dev for both architectures and compares.
/// </summary>
public static class V4l2Abi
{
    // _IOC encoding of asm-generic/ioctl.h: dir in bits 30-31, size in 16-29, type in 8-15, number in 0-7.
    const uint Write = 1, Read = 2;
    static uint Ioc(uint dir, int nr, int size) => (dir << 30) | ((uint)size << 16) | ((uint)'V' << 8) | (uint)nr;

    public static readonly uint QueryCap = Ioc(Read, 0, Unsafe.SizeOf<Capability>());
    public static readonly uint EnumFmt = Ioc(Read | Write, 2, Unsafe.SizeOf<FmtDesc>());
    public static readonly uint GetFmt = Ioc(Read | Write, 4, Unsafe.SizeOf<Format>());
    public static readonly uint SetFmt = Ioc(Read | Write, 5, Unsafe.SizeOf<Format>());
    public static readonly uint ReqBufs = Ioc(Read | Write, 8, Unsafe.SizeOf<RequestBuffers>());
    public static readonly uint QueryBuf = Ioc(Read | Write, 9, Unsafe.SizeOf<Buffer>());
    public static readonly uint QBuf = Ioc(Read | Write, 15, Unsafe.SizeOf<Buffer>());
    public static readonly uint ExpBuf = Ioc(Read | Write, 16, Unsafe.SizeOf<ExportBuffer>());
    public static readonly uint DqBuf = Ioc(Read | Write, 17, Unsafe.SizeOf<Buffer>());
    public static readonly uint StreamOn = Ioc(Write, 18, sizeof(int));
    public static readonly uint StreamOff = Ioc(Write, 19, sizeof(int));
    public static readonly uint SetParm = Ioc(Read | Write, 22, Unsafe.SizeOf<StreamParm>());
    public static readonly uint SetCtrl = Ioc(Read | Write, 28, Unsafe.SizeOf<Control>());
    public static readonly uint SetExtCtrls = Ioc(Read | Write, 72, Unsafe.SizeOf<ExtControls>());
    public static readonly uint EncoderCmd = Ioc(Read | Write, 77, Unsafe.SizeOf<EncoderCommand>());
    public static readonly uint SetDvTimings = Ioc(Read | Write, 87, Unsafe.SizeOf<DvTimings>());
    public static readonly uint GetDvTimings = Ioc(Read | Write, 88, Unsafe.SizeOf<DvTimings>());
    public static readonly uint DqEvent = Ioc(Read, 89, Unsafe.SizeOf<Event>());
    public static readonly uint SubscribeEvent = Ioc(Write, 90, Unsafe.SizeOf<EventSubscription>());
    public static readonly uint QueryDvTimings = Ioc(Read, 99, Unsafe.SizeOf<DvTimings>());

    // Buffer types, memory kinds, capabilities, events.
    public const uint BufTypeVideoCapture = 1, BufTypeVideoOutput = 2, BufTypeVideoCaptureMplane = 9, BufTypeVideoOutputMplane = 10;
    public const uint MemoryMmap = 1, MemoryDmabuf = 4;
    public const uint CapVideoCapture = 0x00000001, CapVideoCaptureMplane = 0x00001000, CapVideoM2m = 0x00008000, CapVideoM2mMplane = 0x00004000,
        CapStreaming = 0x04000000, CapDeviceCaps = 0x80000000;
    public const uint FieldNone = 1;
    public const uint EventSourceChange = 5, SourceChangeResolution = 1;
    public const uint DvBt656_1120 = 0;
    // Codec controls: V4L2_CID_CODEC_BASE (the codec class 0x00990000 | 0x900) + n, from linux/v4l2-controls.h.
    public const uint CtrlClassCodec = 0x00990000;
    const uint CodecBase = 0x00990900;
    public const uint CidMpegVideoBFrames = CodecBase + 202, CidMpegVideoGopSize = CodecBase + 203, CidMpegVideoBitrateMode = CodecBase + 206,
        CidMpegVideoBitrate = CodecBase + 207, CidMpegVideoRepeatSeqHeader = CodecBase + 226, CidMpegVideoForceKeyFrame = CodecBase + 229,
        CidMpegVideoH264IPeriod = CodecBase + 358, CidMpegVideoH264Profile = CodecBase + 363, CidMpegVideoPrependSpsPpsToIdr = CodecBase + 644;
    public const int BitrateModeVbr = 0, BitrateModeCbr = 1, H264ProfileHigh = 4;
    public const uint EncCmdStop = 1;
    public const uint BufFlagKeyFrame = 0x00000008, BufFlagLast = 0x00100000;

    public static uint FourCc(string s) => (uint)(s[0] | (s[1] << 8) | (s[2] << 16) | (s[3] << 24));
    public static readonly uint PixYuyv = FourCc("YUYV"), PixUyvy = FourCc("UYVY"), PixNv12 = FourCc("NV12"), PixYuv420 = FourCc("YU12"), PixH264 = FourCc("H264");

    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct Capability
    {
        public fixed byte Driver[16];
        public fixed byte Card[32];
        public fixed byte BusInfo[32];
        public uint Version;
        public uint Capabilities;
        public uint DeviceCaps;
        public fixed uint Reserved[3];
    }

    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct FmtDesc
    {
        public uint Index;
        public uint Type;
        public uint Flags;
        public fixed byte Description[32];
        public uint PixelFormat;
        public uint MbusCode;
        public fixed uint Reserved[3];
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct PixFormat
    {
        public uint Width, Height, PixelFormat, Field, BytesPerLine, SizeImage, Colorspace, Priv, Flags, YcbcrEnc, Quantization, XferFunc;
    }

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public unsafe struct PlanePixFormat
    {
        public uint SizeImage;
        public uint BytesPerLine;
        public fixed ushort Reserved[6];
    }

    [StructLayout(LayoutKind.Explicit, Size = 192)]
    public unsafe struct PixFormatMplane
    {
        [FieldOffset(0)] public uint Width;
        [FieldOffset(4)] public uint Height;
        [FieldOffset(8)] public uint PixelFormat;
        [FieldOffset(12)] public uint Field;
        [FieldOffset(16)] public uint Colorspace;
        [FieldOffset(20)] public fixed byte PlaneFmt[8 * 20];
        [FieldOffset(180)] public byte NumPlanes;
        [FieldOffset(181)] public byte Flags;

        public ref PlanePixFormat Plane(int i) => ref Unsafe.As<byte, PlanePixFormat>(ref PlaneFmt[i * 20]);
    }

    /// <summary>v4l2_format: the union holds a v4l2_window with pointers, so it starts 8-aligned, 200 bytes.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 208)]
    public struct Format
    {
        [FieldOffset(0)] public uint Type;
        [FieldOffset(8)] public PixFormat Pix;
        [FieldOffset(8)] public PixFormatMplane PixMp;
    }

    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct RequestBuffers
    {
        public uint Count, Type, Memory, Capabilities;
        public byte Flags;
        public fixed byte Reserved[3];
    }

    [StructLayout(LayoutKind.Explicit, Size = 64)]
    public struct Plane
    {
        [FieldOffset(0)] public uint BytesUsed;
        [FieldOffset(4)] public uint Length;
        [FieldOffset(8)] public uint MemOffset;
        [FieldOffset(8)] public int Fd;
        [FieldOffset(16)] public uint DataOffset;
    }

    [StructLayout(LayoutKind.Explicit, Size = 88)]
    public struct Buffer
    {
        [FieldOffset(0)] public uint Index;
        [FieldOffset(4)] public uint Type;
        [FieldOffset(8)] public uint BytesUsed;
        [FieldOffset(12)] public uint Flags;
        [FieldOffset(16)] public uint Field;
        [FieldOffset(24)] public long TimestampSec;
        [FieldOffset(32)] public long TimestampUsec;
        [FieldOffset(56)] public uint Sequence;
        [FieldOffset(60)] public uint Memory;
        [FieldOffset(64)] public uint Offset;
        [FieldOffset(64)] public nint Planes;
        [FieldOffset(64)] public int Fd;
        [FieldOffset(72)] public uint Length;
        [FieldOffset(80)] public int RequestFd;
    }

    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct ExportBuffer
    {
        public uint Type, Index, Plane, Flags;
        public int Fd;
        public fixed uint Reserved[11];
    }

    /// <summary>v4l2_ext_control (packed): one control of a VIDIOC_S_EXT_CTRLS batch.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 20)]
    public struct ExtControl
    {
        [FieldOffset(0)] public uint Id;
        [FieldOffset(4)] public uint Size;
        [FieldOffset(12)] public int Value;
        [FieldOffset(12)] public long Value64;
    }

    [StructLayout(LayoutKind.Explicit, Size = 32)]
    public struct ExtControls
    {
        [FieldOffset(0)] public uint Which;   // ctrl_class
        [FieldOffset(4)] public uint Count;
        [FieldOffset(8)] public uint ErrorIdx;
        [FieldOffset(12)] public int RequestFd;
        [FieldOffset(24)] public nint Controls;
    }

    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct EncoderCommand
    {
        public uint Cmd, Flags;
        public fixed uint Data[8];
    }

    /// <summary>v4l2_streamparm for an OUTPUT queue: v4l2_outputparm's timeperframe is the frame interval.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 204)]
    public struct StreamParm
    {
        [FieldOffset(0)] public uint Type;
        [FieldOffset(4)] public uint Capability;
        [FieldOffset(8)] public uint OutputMode;
        [FieldOffset(12)] public uint TimePerFrameNumerator;
        [FieldOffset(16)] public uint TimePerFrameDenominator;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Control
    {
        public uint Id;
        public int Value;
    }

    /// <summary>v4l2_dv_timings with its v4l2_bt_timings (both packed).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 132)]
    public struct DvTimings
    {
        [FieldOffset(0)] public uint Type;
        [FieldOffset(4)] public uint Width;
        [FieldOffset(8)] public uint Height;
        [FieldOffset(12)] public uint Interlaced;
        [FieldOffset(16)] public uint Polarities;
        [FieldOffset(20)] public ulong PixelClock;
        [FieldOffset(28)] public uint HFrontPorch;
        [FieldOffset(32)] public uint HSync;
        [FieldOffset(36)] public uint HBackPorch;
        [FieldOffset(40)] public uint VFrontPorch;
        [FieldOffset(44)] public uint VSync;
        [FieldOffset(48)] public uint VBackPorch;

        /// <summary>Frames per second ×1000 from the pixel clock and the total raster (0 when unknown).</summary>
        public readonly long MilliFps
        {
            get
            {
                ulong total = (ulong)(Width + HFrontPorch + HSync + HBackPorch) * (Height + VFrontPorch + VSync + VBackPorch);
                return total == 0 ? 0 : (long)(PixelClock * 1000 / total);
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct EventSubscription
    {
        public uint Type, Id, Flags;
        public fixed uint Reserved[5];
    }

    [StructLayout(LayoutKind.Explicit, Size = 136)]
    public struct Event
    {
        [FieldOffset(0)] public uint Type;
        [FieldOffset(8)] public uint SourceChanges; // u.src_change.changes
        [FieldOffset(72)] public uint Pending;
        [FieldOffset(76)] public uint Sequence;
        [FieldOffset(96)] public uint Id;
    }
}
