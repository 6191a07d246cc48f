using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Pearl2.Media.Encoders;
using Pearl2.Media.V4l2;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>
/// A V4L2 capture driver in memory, answering the ioctls the way the kernel documents them (the driver picks the
/// buffer, adjusts the format, reports DV timings or ENOLINK, queues a source-change event), so the capture's
/// state machine is tested here; the real driver (vivid) runs in the qemu image test.
/// </summary>
sealed unsafe class FakeCaptureDevice : IV4l2Device
{
    public bool Mplane;
    public uint[] Formats = [V4l2Abi.PixYuyv];
    public (uint W, uint H)? DvTimings;
    public int DvError; // 0: timings as above; else the errno of QUERY_DV_TIMINGS
    public int StrideExtra = 64;
    public uint FourCc, Width, Height, Stride;
    public readonly List<uint> Calls = new();
    public readonly Queue<uint> Queued = new();
    public bool EventPending, Streaming;
    public int Buffers;
    readonly Dictionary<uint, nint> _memory = new(); // buffer index → its mapping (the offset QUERYBUF gave, as a driver does)
    public Func<int, byte>? Pixel; // byte at an offset of the picture

    public string Path => "/dev/fake-video";

    public int Ioctl<T>(uint request, ref T arg) where T : unmanaged
    {
        Calls.Add(request);
        if (request == V4l2Abi.QueryCap)
        {
            ref var c = ref Unsafe.As<T, V4l2Abi.Capability>(ref arg);
            c.Capabilities = V4l2Abi.CapDeviceCaps | V4l2Abi.CapStreaming | (Mplane ? V4l2Abi.CapVideoCaptureMplane : V4l2Abi.CapVideoCapture);
            c.DeviceCaps = c.Capabilities & ~V4l2Abi.CapDeviceCaps;
            fixed (byte* card = c.Card) "fake HDMI bridge"u8.CopyTo(new Span<byte>(card, 32));
            return 0;
        }
        if (request == V4l2Abi.QueryDvTimings)
        {
            if (DvTimings is null) return DvError == 0 ? Errno.ENOTTY : DvError;
            ref var t = ref Unsafe.As<T, V4l2Abi.DvTimings>(ref arg);
            t.Width = DvTimings.Value.W; t.Height = DvTimings.Value.H;
            t.PixelClock = 74_250_000; t.HFrontPorch = 110; t.HSync = 40; t.HBackPorch = 220; t.VFrontPorch = 5; t.VSync = 5; t.VBackPorch = 20; // 1280x720p60
            return 0;
        }
        if (request == V4l2Abi.SetDvTimings) return 0;
        if (request == V4l2Abi.EnumFmt)
        {
            ref var d = ref Unsafe.As<T, V4l2Abi.FmtDesc>(ref arg);
            if (d.Type != (Mplane ? V4l2Abi.BufTypeVideoCaptureMplane : V4l2Abi.BufTypeVideoCapture) || d.Index >= Formats.Length) return Errno.EINVAL;
            d.PixelFormat = Formats[d.Index];
            return 0;
        }
        if (request == V4l2Abi.SetFmt)
        {
            ref var f = ref Unsafe.As<T, V4l2Abi.Format>(ref arg);
            // The driver rounds the width to 16 and pads each line.
            if (Mplane) { Width = f.PixMp.Width & ~15u; Height = f.PixMp.Height; FourCc = f.PixMp.PixelFormat; }
            else { Width = f.Pix.Width & ~15u; Height = f.Pix.Height; FourCc = f.Pix.PixelFormat; }
            if (!Formats.Contains(FourCc)) FourCc = Formats[0];
            Stride = (FourCc == V4l2Abi.PixYuyv || FourCc == V4l2Abi.PixUyvy ? Width * 2 : Width) + (uint)StrideExtra;
            if (Mplane)
            {
                f.PixMp.Width = Width; f.PixMp.Height = Height; f.PixMp.PixelFormat = FourCc; f.PixMp.NumPlanes = 1;
                f.PixMp.Plane(0).BytesPerLine = Stride;
                f.PixMp.Plane(0).SizeImage = (uint)PixelConvert.FrameBytes(FourCc, (int)Stride, (int)Height);
            }
            else { f.Pix.Width = Width; f.Pix.Height = Height; f.Pix.PixelFormat = FourCc; f.Pix.BytesPerLine = Stride; }
            return 0;
        }
        if (request == V4l2Abi.ReqBufs)
        {
            ref var r = ref Unsafe.As<T, V4l2Abi.RequestBuffers>(ref arg);
            Buffers = (int)Math.Min(r.Count, 3); // fewer than asked, as drivers may give
            r.Count = (uint)Buffers;
            return 0;
        }
        if (request == V4l2Abi.QueryBuf || request == V4l2Abi.QBuf || request == V4l2Abi.DqBuf)
        {
            ref var b = ref Unsafe.As<T, V4l2Abi.Buffer>(ref arg);
            if (Mplane && (b.Length != 1 || b.Planes == 0)) return Errno.EINVAL;
            int size = PixelConvert.FrameBytes(FourCc, (int)Stride, (int)Height);
            if (request == V4l2Abi.QueryBuf)
            {
                if (Mplane) { var p = (V4l2Abi.Plane*)b.Planes; p->Length = (uint)size; p->MemOffset = b.Index * 0x100000; }
                else { b.Length = (uint)size; b.Offset = b.Index * 0x100000; }
                return 0;
            }
            if (request == V4l2Abi.QBuf) { if (Queued.Contains(b.Index)) return Errno.EINVAL; Queued.Enqueue(b.Index); return 0; }
            if (!Streaming || Queued.Count == 0) return Errno.EAGAIN;
            b.Index = Queued.Dequeue();
            var mem = (byte*)_memory[b.Index];
            for (int i = 0; i < size; i++) mem[i] = Pixel?.Invoke(i) ?? 0;
            if (Mplane) ((V4l2Abi.Plane*)b.Planes)->BytesUsed = (uint)size; else b.BytesUsed = (uint)size;
            return 0;
        }
        if (request == V4l2Abi.SubscribeEvent) return 0;
        if (request == V4l2Abi.DqEvent)
        {
            if (!EventPending) return Errno.ENOENT;
            EventPending = false;
            ref var e = ref Unsafe.As<T, V4l2Abi.Event>(ref arg);
            e.Type = V4l2Abi.EventSourceChange; e.SourceChanges = V4l2Abi.SourceChangeResolution;
            return 0;
        }
        if (request == V4l2Abi.StreamOn) { Streaming = true; return 0; }
        if (request == V4l2Abi.StreamOff) { Streaming = false; Queued.Clear(); return 0; }
        return Errno.ENOTTY;
    }

    public nint Map(int length, long offset)
    {
        var m = (nint)NativeMemory.AllocZeroed((nuint)length);
        _memory[(uint)(offset / 0x100000)] = m;
        return m;
    }

    public int Unmapped;
    public IReadOnlyCollection<nint> Mapped => _memory.Values;
    public void Unmap(nint address, int length)
    {
        foreach (var (index, m) in _memory.ToArray()) if (m == address) _memory.Remove(index);
        NativeMemory.Free((void*)address);
        Unmapped++;
    }

    public bool Wait(int timeoutMs, out bool readable, out bool eventPending)
    {
        readable = Streaming && Queued.Count > 0;
        eventPending = EventPending;
        return readable || eventPending;
    }

    public void Dispose() { }
}


public unsafe class V4l2CaptureTests
{
    sealed class Picture : IDisposable
    {
        public readonly byte[] Y, U, V;
        readonly GCHandle _y, _u, _v;
        public readonly int W, H;
        public Picture(int w, int h)
        {
            W = w; H = h;
            Y = new byte[w * h]; U = new byte[w * h / 4]; V = new byte[w * h / 4];
            _y = GCHandle.Alloc(Y, GCHandleType.Pinned); _u = GCHandle.Alloc(U, GCHandleType.Pinned); _v = GCHandle.Alloc(V, GCHandleType.Pinned);
        }
        public PicturePlanes Planes => new((byte*)_y.AddrOfPinnedObject(), (byte*)_u.AddrOfPinnedObject(), (byte*)_v.AddrOfPinnedObject(), W, W / 2, W, H);
        public void Dispose() { _y.Free(); _u.Free(); _v.Free(); }
    }

    [Fact]
    public void SinglePlanarYuyv_PicksTheFormat_CyclesEveryBuffer_AndConverts()
    {
        var dev = new FakeCaptureDevice { Formats = [V4l2Abi.FourCc("MJPG"), V4l2Abi.PixYuyv] };
        Assert.Equal(CaptureStatus.Frame, V4l2Capture.Start(dev, 650, 480, out var cap));
        Assert.NotNull(cap);
        using var _ = cap;
        Assert.Equal(new CaptureFormat(V4l2Abi.PixYuyv, 640, 480, 640 * 2 + 64, 0), cap.Format); // width as the driver rounded it, its stride
        Assert.Equal("fake HDMI bridge", cap.Card);
        Assert.Equal(3, dev.Queued.Count);                 // every buffer the driver gave is queued
        int stride = (int)dev.Stride;
        // YUYV: Y0 U Y1 V; give Y = column, U = 100 + row, V = 200 - row.
        dev.Pixel = i =>
        {
            int row = i / stride, col = i % stride;
            if (col >= 1280) return 0;
            return (col % 4) switch { 0 or 2 => (byte)(col / 2), 1 => (byte)(100 + row), _ => (byte)(200 - row % 100) };
        };
        using var pic = new Picture(640, 480);
        for (int frame = 0; frame < 10; frame++) Assert.Equal(CaptureStatus.Frame, cap.ReadInto(100, pic.Planes));
        Assert.Equal(3, dev.Queued.Count);                 // each one went straight back
        Assert.Equal(10, cap.Frames);
        Assert.Equal((byte)5, pic.Y[10 * 640 + 5]);
        Assert.Equal((byte)(100 + 20), pic.U[10 * 320 + 7]);  // chroma row 10 comes from picture row 20
        Assert.Equal((byte)(200 - 20), pic.V[10 * 320 + 7]);
    }

    [Fact]
    public void MultiplanarNv12_IsPreferred_AndTheDvTimingsSetTheSize()
    {
        var dev = new FakeCaptureDevice { Mplane = true, Formats = [V4l2Abi.PixYuyv, V4l2Abi.PixNv12], DvTimings = (1280, 720), StrideExtra = 0 };
        Assert.Equal(CaptureStatus.Frame, V4l2Capture.Start(dev, 1920, 1080, out var cap));
        Assert.NotNull(cap);
        using var _ = cap;
        Assert.True(cap.Multiplanar);
        Assert.Equal(V4l2Abi.PixNv12, cap.Format.FourCc);
        Assert.Equal((1280, 720), (cap.Format.Width, cap.Format.Height));
        Assert.Equal(60000, cap.Format.MilliFps);
        Assert.Contains(V4l2Abi.SetDvTimings, dev.Calls);
        // NV12: Y plane then interleaved U V.
        dev.Pixel = i => i < 1280 * 720 ? (byte)7 : (byte)((i - 1280 * 720) % 2 == 0 ? 60 : 190);
        using var pic = new Picture(1280, 720);
        Assert.Equal(CaptureStatus.Frame, cap.ReadInto(100, pic.Planes));
        Assert.All(pic.Y, y => Assert.Equal(7, y));
        Assert.All(pic.U, u => Assert.Equal(60, u));
        Assert.All(pic.V, v => Assert.Equal(190, v));
    }

    [Theory]
    [InlineData(Errno.ENOLINK)]
    [InlineData(Errno.ENOLCK)]
    [InlineData(Errno.ERANGE)]
    public void NoSignalOnTheBridge_IsReported_NotThrown(int errno)
    {
        var dev = new FakeCaptureDevice { DvError = errno };
        Assert.Equal(CaptureStatus.NoSignal, V4l2Capture.Start(dev, 1280, 720, out var cap));
        Assert.Null(cap);
        Assert.DoesNotContain(V4l2Abi.StreamOn, dev.Calls);
    }

    [Fact]
    public void SourceChangeEvent_IsReported_AndDisposeReleasesEverything()
    {
        var dev = new FakeCaptureDevice { DvTimings = (1280, 720) };
        Assert.Equal(CaptureStatus.Frame, V4l2Capture.Start(dev, 0, 0, out var cap));
        using var pic = new Picture(1280, 720);
        Assert.Equal(CaptureStatus.Frame, cap!.ReadInto(100, pic.Planes));
        dev.EventPending = true;
        Assert.Equal(CaptureStatus.SourceChanged, cap.ReadInto(100, pic.Planes));
        cap.Dispose();
        Assert.False(dev.Streaming);
        Assert.Equal(3, dev.Unmapped);
        Assert.Empty(dev.Mapped);
    }

    [Fact]
    public void NoFormatInCommon_NamesWhatTheDeviceOffers()
    {
        var dev = new FakeCaptureDevice { Formats = [V4l2Abi.FourCc("MJPG"), V4l2Abi.FourCc("RGB3")] };
        var e = Assert.Throws<IOException>(() => V4l2Capture.Start(dev, 640, 480, out _));
        Assert.Contains("offers MJPG, RGB3", e.Message);
    }

    [Theory]
    [InlineData("UYVY")]
    [InlineData("YU12")]
    public void OtherFormats_Convert(string fourcc)
    {
        uint f = V4l2Abi.FourCc(fourcc);
        int w = 16, h = 4, stride = f == V4l2Abi.PixUyvy ? 32 : 16;
        var src = new byte[PixelConvert.FrameBytes(f, stride, h)];
        if (f == V4l2Abi.PixUyvy)
            for (int i = 0; i < src.Length; i++) src[i] = (byte)((i % 4) switch { 0 => 10, 2 => 20, _ => 30 + i / stride }); // U V, Y = 30 + row
        else
        {
            src.AsSpan(0, w * h).Fill(30);
            src.AsSpan(w * h, w * h / 4).Fill(10);
            src.AsSpan(w * h * 5 / 4).Fill(20);
        }
        using var pic = new Picture(w, h);
        PixelConvert.ToI420(f, src, stride, w, h, pic.Planes);
        Assert.Equal((byte)10, pic.U[3]);
        Assert.Equal((byte)20, pic.V[3]);
        Assert.Equal(f == V4l2Abi.PixUyvy ? (byte)(30 + 2) : (byte)30, pic.Y[2 * w + 5]);
    }
}

public unsafe class CaptureSourceTests
{
    [Fact]
    public void ScalesTheInputToTheChannel_ReportsNoSignal_AndRestartsAfterASourceChange()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var dev = new FakeCaptureDevice { Mplane = true, Formats = [V4l2Abi.PixNv12], DvTimings = (1280, 720), StrideExtra = 0, Pixel = i => i < 1280 * 720 ? (byte)200 : (byte)128 };
        int opened = 0;
        using var source = new CaptureSource("/dev/fake-video", 640, 360, time, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, _ => { opened++; return dev; });
        var y = new byte[640 * 360]; var u = new byte[320 * 180]; var v = new byte[320 * 180];
        fixed (byte* py = y, pu = u, pv = v)
        {
            var planes = new PicturePlanes(py, pu, pv, 640, 320, 640, 360);
            Assert.True(source.TryFill(planes));
            Assert.Equal((1280, 720), (source.Format!.Value.Width, source.Format.Value.Height));
            Assert.All(y, b => Assert.Equal(200, b));             // scaled by libswscale to the channel's 640x360

            dev.EventPending = true;                             // the input changed resolution
            Assert.False(source.TryFill(planes));
            Assert.Null(source.Format);
            time.Advance(TimeSpan.FromSeconds(1.1));
            dev.DvTimings = (1920, 1080);
            Assert.True(source.TryFill(planes));
            Assert.Equal(1920, source.Format!.Value.Width);
            Assert.Equal(1, opened);                             // the same device node, opened once

            dev.DvTimings = null; dev.DvError = Errno.ENOLINK;  // cable pulled: the next restart finds no signal
            dev.EventPending = true;
            Assert.False(source.TryFill(planes));
            time.Advance(TimeSpan.FromSeconds(1.1));
            Assert.False(source.TryFill(planes));
        }
    }

    [Fact]
    public void NoSignalPicture_HasTheWordsOnGrey()
    {
        int w = 320, h = 180;
        var y = new byte[w * h]; var u = new byte[w * h / 4]; var v = new byte[w * h / 4];
        fixed (byte* py = y, pu = u, pv = v)
            new Pearl2.Media.Sources.NoSignalRenderer(w, h, "/dev/video0").Render(new PicturePlanes(py, pu, pv, w, w / 2, w, h));
        Assert.Equal(40, y[0]);
        Assert.Contains((byte)235, y);                          // the big letters
        Assert.Contains((byte)160, y);                          // the input's name
        Assert.All(u, b => Assert.Equal(128, b));
        int lit = y.Count(b => b == 235);
        Assert.InRange(lit, 500, w * h / 4);
    }
}
