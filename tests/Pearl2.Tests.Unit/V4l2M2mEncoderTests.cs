using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Pearl2.Media;
using Pearl2.Media.Encoders;
using Pearl2.Media.V4l2;
using Xunit;
using Buffer = Pearl2.Media.V4l2.V4l2Abi.Buffer;
using static Pearl2.Media.V4l2.V4l2Abi;

namespace Pearl2.Tests.Unit;

/// <summary>
/// A stateful mem2mem H.264 encoder as a driver behaves (no such device exists under qemu or on this host): it
/// negotiates formats, pads lines, keeps controls, owns mmap'd buffers on both queues and "encodes" each queued
/// picture into a small access unit whose slice carries the picture's first Y, U and V samples, so a test can tell
/// the picture reached the hardware's buffer. Like bcm2835-codec by default, it sends SPS/PPS with the first IDR only
/// unless asked to repeat them, and here it refuses to be asked.
/// </summary>
sealed unsafe class FakeM2mDevice : IV4l2Device
{
    public bool Mplane = true;
    public bool OffersH264 = true;
    public uint[] OutputFormats = [PixYuv420, PixNv12];
    public int StrideExtra = 32, HeightPadding = 16;
    public HashSet<uint> Refuses = [CidMpegVideoRepeatSeqHeader, CidMpegVideoPrependSpsPpsToIdr];
    public readonly Dictionary<uint, int> Controls = new();
    public readonly List<uint> Calls = new();
    public (uint Num, uint Den) FrameInterval;
    public uint Width, Height, Stride, SizeImage, InputFormat;
    public int Mapped, Unmapped, Encoded;
    public bool StopCommanded, StreamingOut, StreamingCap;
    public int OutputCount, CaptureCount;
    readonly Dictionary<long, nint> _memory = new();   // (type << 16 | index) → buffer
    readonly Queue<uint> _capFree = new(), _outDone = new();
    readonly Queue<(uint Index, uint Bytes, uint Flags, long Sec, long Usec)> _capDone = new();
    bool _forceNext, _lastSent;

    public string Path => "/dev/fake-m2m";
    const int CapSize = 4096;

    public int Ioctl<T>(uint request, ref T arg) where T : unmanaged
    {
        Calls.Add(request);
        if (request == QueryCap)
        {
            ref var c = ref Unsafe.As<T, Capability>(ref arg);
            c.Capabilities = CapDeviceCaps | CapStreaming | (Mplane ? CapVideoM2mMplane : CapVideoM2m);
            c.DeviceCaps = c.Capabilities & ~CapDeviceCaps;
            return 0;
        }
        if (request == EnumFmt)
        {
            ref var d = ref Unsafe.As<T, FmtDesc>(ref arg);
            uint[] list = d.Type == OutType ? OutputFormats : d.Type == CapType && OffersH264 ? [PixH264] : [];
            if (d.Index >= list.Length) return Errno.EINVAL;
            d.PixelFormat = list[d.Index];
            return 0;
        }
        if (request == SetFmt)
        {
            ref var f = ref Unsafe.As<T, Format>(ref arg);
            if (f.Type == OutType)
            {
                Width = Mplane ? f.PixMp.Width : f.Pix.Width;
                Height = Mplane ? f.PixMp.Height : f.Pix.Height;
                InputFormat = Mplane ? f.PixMp.PixelFormat : f.Pix.PixelFormat;
                if (!OutputFormats.Contains(InputFormat)) InputFormat = OutputFormats[0];
                Stride = Width + (uint)StrideExtra;
                SizeImage = Stride * (Height + (uint)HeightPadding) * 3 / 2;   // the driver lays out a taller picture
                if (Mplane) { f.PixMp.PixelFormat = InputFormat; f.PixMp.NumPlanes = 1; f.PixMp.Plane(0).BytesPerLine = Stride; f.PixMp.Plane(0).SizeImage = SizeImage; }
                else { f.Pix.PixelFormat = InputFormat; f.Pix.BytesPerLine = Stride; f.Pix.SizeImage = SizeImage; }
                return 0;
            }
            return f.Type == CapType ? 0 : Errno.EINVAL;
        }
        if (request == SetParm)
        {
            ref var p = ref Unsafe.As<T, StreamParm>(ref arg);
            FrameInterval = (p.TimePerFrameNumerator, p.TimePerFrameDenominator);
            return 0;
        }
        if (request == SetExtCtrls)
        {
            ref var batch = ref Unsafe.As<T, ExtControls>(ref arg);
            Assert.Equal(CtrlClassCodec, batch.Which);
            var ctrls = new ReadOnlySpan<ExtControl>((void*)batch.Controls, (int)batch.Count);
            foreach (var c in ctrls) if (Refuses.Contains(c.Id)) return Errno.EINVAL;
            foreach (var c in ctrls) Controls[c.Id] = c.Value;
            return 0;
        }
        if (request == SetCtrl)
        {
            ref var c = ref Unsafe.As<T, Control>(ref arg);
            if (c.Id == CidMpegVideoForceKeyFrame) _forceNext = true;
            return 0;
        }
        if (request == ReqBufs)
        {
            ref var r = ref Unsafe.As<T, RequestBuffers>(ref arg);
            Assert.Equal(MemoryMmap, r.Memory);
            if (r.Type == OutType) OutputCount = (int)r.Count; else CaptureCount = (int)r.Count;
            return 0;
        }
        if (request == QueryBuf)
        {
            ref var b = ref Unsafe.As<T, Buffer>(ref arg);
            uint length = b.Type == OutType ? SizeImage : CapSize;
            uint offset = (b.Type << 16) | b.Index;
            if (Mplane) { var p = (Plane*)b.Planes; p->Length = length; p->MemOffset = offset; }
            else { b.Length = length; b.Offset = offset; }
            return 0;
        }
        if (request == QBuf)
        {
            ref var b = ref Unsafe.As<T, Buffer>(ref arg);
            if (b.Type == CapType) { _capFree.Enqueue(b.Index); return 0; }
            uint used = Mplane ? ((Plane*)b.Planes)->BytesUsed : b.BytesUsed;
            Assert.Equal(SizeImage, used);
            EncodeOne(b.Index, b.TimestampSec, b.TimestampUsec);
            return 0;
        }
        if (request == DqBuf)
        {
            ref var b = ref Unsafe.As<T, Buffer>(ref arg);
            if (b.Type == OutType)
            {
                if (_outDone.Count == 0) return Errno.EAGAIN;
                b.Index = _outDone.Dequeue();
                return 0;
            }
            if (_capDone.Count == 0)
            {
                if (!StopCommanded) return Errno.EAGAIN;
                if (_lastSent) return Errno.EPIPE;
                if (_capFree.Count == 0) return Errno.EAGAIN;
                _lastSent = true;
                b.Index = _capFree.Dequeue(); b.Flags = BufFlagLast;
                if (Mplane) ((Plane*)b.Planes)->BytesUsed = 0; else b.BytesUsed = 0;
                return 0;
            }
            var done = _capDone.Dequeue();
            b.Index = done.Index; b.Flags = done.Flags; b.TimestampSec = done.Sec; b.TimestampUsec = done.Usec;
            if (Mplane) { ((Plane*)b.Planes)->BytesUsed = done.Bytes; ((Plane*)b.Planes)->DataOffset = 0; } else b.BytesUsed = done.Bytes;
            return 0;
        }
        if (request == StreamOn || request == StreamOff)
        {
            int type = Unsafe.As<T, int>(ref arg);
            if ((uint)type == OutType) StreamingOut = request == StreamOn; else StreamingCap = request == StreamOn;
            return 0;
        }
        if (request == EncoderCmd)
        {
            StopCommanded = Unsafe.As<T, EncoderCommand>(ref arg).Cmd == EncCmdStop;
            return 0;
        }
        return Errno.ENOTTY;
    }

    uint OutType => Mplane ? BufTypeVideoOutputMplane : BufTypeVideoOutput;
    uint CapType => Mplane ? BufTypeVideoCaptureMplane : BufTypeVideoCapture;

    void EncodeOne(uint index, long sec, long usec)
    {
        Assert.True(StreamingOut && StreamingCap, "a picture was queued before both queues streamed");
        byte* pic = (byte*)_memory[((long)OutType << 16) | index];
        uint lumaLines = SizeImage * 2 / 3 / Stride;
        byte y = pic[0], u, v;
        if (InputFormat == PixNv12) { u = pic[Stride * lumaLines]; v = pic[Stride * lumaLines + 1]; }
        else { u = pic[Stride * lumaLines]; v = pic[Stride * lumaLines + Stride / 2 * (lumaLines / 2)]; }
        int gop = Controls.TryGetValue(CidMpegVideoGopSize, out var g) ? g : 30;
        bool key = Encoded % gop == 0 || _forceNext;
        _forceNext = false;
        bool repeat = Controls.GetValueOrDefault(CidMpegVideoRepeatSeqHeader) == 1;
        var au = new List<byte>();
        if (key && (Encoded == 0 || repeat)) au.AddRange([0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac, 0, 0, 0, 1, 0x68, 0xee, 0x3c, 0x80]);
        au.AddRange([0, 0, 0, 1, (byte)(key ? 0x65 : 0x41), 0x88, y, u, v]);
        uint cap = _capFree.Dequeue();
        au.ToArray().CopyTo(new Span<byte>((void*)_memory[((long)CapType << 16) | cap], CapSize));
        _capDone.Enqueue((cap, (uint)au.Count, key ? BufFlagKeyFrame : 0, sec, usec));
        _outDone.Enqueue(index);
        Encoded++;
    }

    public nint Map(int length, long offset)
    {
        Mapped++;
        return _memory[offset] = (nint)NativeMemory.AllocZeroed((nuint)length);
    }

    public void Unmap(nint address, int length)
    {
        Unmapped++;
        NativeMemory.Free((void*)address);
    }

    public bool Wait(int timeoutMs, out bool readable, out bool eventPending)
    {
        readable = _capDone.Count > 0;
        eventPending = false;
        return readable;
    }

    public bool Disposed;
    public void Dispose() => Disposed = true;
}

sealed class CollectingSink : IEncodedSink
{
    public readonly List<(byte[] Prefix, byte[] Data, long Pts, bool Key)> Units = new();
    public void OnEncoded(TrackKind track, ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> data, long pts, bool keyFrame)
    {
        Assert.Equal(TrackKind.Video, track);
        Units.Add((prefix.ToArray(), data.ToArray(), pts, keyFrame));
    }
}

public sealed unsafe class V4l2M2mEncoderTests
{
    static readonly H264EncoderOptions Options = new("v4l2m2m", 320, 240, 15, 600_000, 15, "", "");

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void NegotiatesThePictureAndAsksForTheStreamSettings(bool mplane)
    {
        var dev = new FakeM2mDevice { Mplane = mplane };
        using (var enc = new V4l2M2mEncoder(dev, Options))
        {
            Assert.Equal((320u, 240u, PixYuv420), (dev.Width, dev.Height, dev.InputFormat));
            Assert.Equal((1u, 15u), dev.FrameInterval);
            Assert.Equal(600_000, dev.Controls[CidMpegVideoBitrate]);
            Assert.Equal(BitrateModeVbr, dev.Controls[CidMpegVideoBitrateMode]);
            Assert.Equal(15, dev.Controls[CidMpegVideoGopSize]);
            Assert.Equal(15, dev.Controls[CidMpegVideoH264IPeriod]);
            Assert.Equal(0, dev.Controls[CidMpegVideoBFrames]);
            Assert.Equal(["repeat sequence header", "SPS/PPS before IDR"], enc.RefusedControls);
            Assert.Contains("driver defaults for: repeat sequence header, SPS/PPS before IDR", enc.Description);
            Assert.Equal((4, 4), (dev.OutputCount, dev.CaptureCount));
            Assert.True(dev.StreamingOut && dev.StreamingCap);
        }
        Assert.Equal(8, dev.Mapped);
    }

    [Theory]
    [InlineData(true, new[] { PixYuv420Value })]
    [InlineData(false, new[] { PixNv12Value })]
    public void ThePictureIsDrawnIntoTheHardwareBuffer(bool mplane, uint[] formats)
    {
        var dev = new FakeM2mDevice { Mplane = mplane, OutputFormats = formats };
        var sink = new CollectingSink();
        using (var enc = new V4l2M2mEncoder(dev, Options))
        {
            for (int f = 0; f < 20; f++)
            {
                var p = enc.BeginFrame();
                p.Y[0] = (byte)(10 + f); p.U[0] = (byte)(100 + f); p.V[0] = (byte)(200 + f);
                enc.Encode(f, false, sink);
            }
        }
        Assert.Equal(20, sink.Units.Count);
        for (int f = 0; f < 20; f++)
        {
            var slice = sink.Units[f].Data[^3..];
            Assert.Equal(new byte[] { (byte)(10 + f), (byte)(100 + f), (byte)(200 + f) }, slice);
            Assert.Equal(f * 90000L / 15, sink.Units[f].Pts);   // the frame index went through the driver's timestamp
        }
    }

    const uint PixYuv420Value = 0x32315559, PixNv12Value = 0x3231564e;

    [Fact]
    public void EveryKeyFrameLeavesWithSpsAndPps_AndAForcedOneComesAtOnce()
    {
        var dev = new FakeM2mDevice();
        var sink = new CollectingSink();
        using (var enc = new V4l2M2mEncoder(dev, Options))
            for (int f = 0; f < 40; f++) { enc.BeginFrame(); enc.Encode(f, forceKeyFrame: f == 7, sink); }
        var keys = sink.Units.Select((u, i) => (u, i)).Where(x => x.u.Key).Select(x => x.i).ToArray();
        Assert.Equal([0, 7, 15, 30], keys);   // the GOP of 15 the encoder asked for, and the forced one
        foreach (var (prefix, data, _, key) in sink.Units)
        {
            var whole = prefix.Concat(data).ToArray();
            var types = NalTypes(whole);
            if (key) Assert.Equal([7, 8, 5], types);   // SPS, PPS, IDR: a viewer joining here can decode
            else { Assert.Empty(prefix); Assert.Equal([1], types); }
        }
        // The driver sent the parameter sets once; the encoder put them back in front of the three later IDRs.
        Assert.Equal(3, sink.Units.Count(u => u.Prefix.Length > 0));
    }

    [Fact]
    public void ClosingDrainsTheEncoderAndReleasesEveryBuffer()
    {
        var dev = new FakeM2mDevice();
        var enc = new V4l2M2mEncoder(dev, Options);
        var sink = new CollectingSink();
        for (int f = 0; f < 5; f++) { enc.BeginFrame(); enc.Encode(f, false, sink); }
        enc.Dispose();
        Assert.True(dev.StopCommanded);
        Assert.False(dev.StreamingOut || dev.StreamingCap);
        Assert.Equal(dev.Mapped, dev.Unmapped);
        Assert.Equal((0, 0), (dev.OutputCount, dev.CaptureCount));
        Assert.True(dev.Disposed);
        enc.Dispose();   // twice is harmless
    }

    [Fact]
    public void RefusesADeviceThatIsNotAnH264Encoder()
    {
        Assert.Contains("not a V4L2 mem2mem H.264 encoder", Assert.Throws<EncoderException>(() => new V4l2M2mEncoder(new FakeCaptureDevice(), Options)).Message);
        Assert.Throws<EncoderException>(() => new V4l2M2mEncoder(new FakeM2mDevice { OffersH264 = false }, Options));
        Assert.Contains("neither YU12 nor NV12", Assert.Throws<EncoderException>(() => new V4l2M2mEncoder(new FakeM2mDevice { OutputFormats = [PixYuyv] }, Options)).Message);
    }

    [Fact]
    public void FindsTheFirstMem2MemH264Device()
    {
        IV4l2Device? Open(string path) => path switch
        {
            "/dev/video0" => new FakeCaptureDevice(),
            "/dev/video10" => new FakeM2mDevice { OffersH264 = false },   // a decoder
            "/dev/video11" => new FakeM2mDevice(),
            _ => null,
        };
        Assert.Equal("/dev/video11", V4l2M2mEncoder.FindDevice(Open));
        Assert.Null(V4l2M2mEncoder.FindDevice(p => p == "/dev/video0" ? new FakeCaptureDevice() : null));
    }

    static int[] NalTypes(byte[] annexB)
    {
        var types = new List<int>();
        for (int i = 0; i + 3 < annexB.Length; i++)
            if (annexB[i] == 0 && annexB[i + 1] == 0 && annexB[i + 2] == 1) { types.Add(annexB[i + 3] & 0x1f); i += 3; }
        return types.ToArray();
    }
}
