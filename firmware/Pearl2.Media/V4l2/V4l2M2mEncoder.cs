using System.Runtime.InteropServices;
using Buffer = Pearl2.Media.V4l2.V4l2Abi.Buffer;
using Pearl2.Media.Encoders;
using static Pearl2.Media.V4l2.V4l2Abi;

namespace Pearl2.Media.V4l2;

/// <summary>
/// H.264 through a stateful V4L2 mem2mem encoder (the Raspberry Pi's bcm2835-codec, or any driver that takes raw
/// pictures on its OUTPUT queue and gives H.264 on its CAPTURE queue), by ioctl, without libavcodec.
/// <list type="bullet">
/// <item>Pictures are drawn straight into the OUTPUT queue's mmap'd buffers in YU12 (I420), so nothing is copied
/// between the renderer or the capture scaler and the hardware. A driver that only takes NV12 gets the chroma
/// interleaved from a staging picture (one copy of the chroma).</item>
/// <item>Bitrate and its mode, the GOP (H.264 I period), no B frames and SPS/PPS before every IDR are asked for with
/// codec controls; a driver that refuses one keeps its default, and the parameter sets are put back in front of
/// IDRs that lack them anyway (<see cref="ParameterSets"/>).</item>
/// <item>A forced key frame (a new viewer) is V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME before the picture is queued.</item>
/// <item>Closing drains the encoder (V4L2_ENC_CMD_STOP until a buffer flagged LAST) before the streams stop.</item>
/// </list>
/// Timestamps carry the frame index through the driver, so an access unit keeps its picture's time.
/// </summary>
public sealed unsafe class V4l2M2mEncoder : IVideoEncoder
{
    const int OutputBuffers = 4, CaptureBuffers = 4;

    readonly IV4l2Device _dev;
    readonly H264EncoderOptions _o;
    readonly ParameterSets _parameterSets = new();
    readonly bool _mplane;
    readonly uint _outType, _capType;
    readonly uint _inputFormat;
    readonly int _stride, _sizeImage;
    readonly (nint Address, int Length)[] _out = new (nint, int)[OutputBuffers];
    readonly (nint Address, int Length)[] _cap = new (nint, int)[CaptureBuffers];
    readonly Queue<int> _freeOutput = new();
    readonly byte* _staging;   // I420 for a driver that only takes NV12 (native: the planes outlive BeginFrame)
    readonly List<string> _refused = new();
    int _current = -1;
    bool _disposed;

    /// <summary>The controls the driver refused (their names), for the log and the tests.</summary>
    public IReadOnlyList<string> RefusedControls => _refused;
    public H264EncoderOptions Options => _o;
    public string Description { get; }

    /// <summary>Scans /dev/video0…63 for a mem2mem device whose CAPTURE queue offers H.264; null when there is none.</summary>
    public static string? FindDevice(Func<string, IV4l2Device?> open)
    {
        for (int i = 0; i < 64; i++)
        {
            var path = $"/dev/video{i}";
            using var dev = open(path);
            if (dev is not null && IsH264Encoder(dev, out _)) return path;
        }
        return null;
    }

    static bool IsH264Encoder(IV4l2Device dev, out bool mplane)
    {
        mplane = false;
        var cap = new Capability();
        if (dev.Ioctl(QueryCap, ref cap) != 0) return false;
        uint caps = (cap.Capabilities & CapDeviceCaps) != 0 ? cap.DeviceCaps : cap.Capabilities;
        if ((caps & (CapVideoM2m | CapVideoM2mMplane)) == 0 || (caps & CapStreaming) == 0) return false;
        mplane = (caps & CapVideoM2mMplane) != 0;
        return Offers(dev, mplane ? BufTypeVideoCaptureMplane : BufTypeVideoCapture, PixH264);
    }

    static bool Offers(IV4l2Device dev, uint type, uint fourcc)
    {
        for (uint i = 0; i < 64; i++)
        {
            var d = new FmtDesc { Index = i, Type = type };
            if (dev.Ioctl(EnumFmt, ref d) != 0) return false;
            if (d.PixelFormat == fourcc) return true;
        }
        return false;
    }

    public V4l2M2mEncoder(IV4l2Device dev, H264EncoderOptions o)
    {
        _dev = dev;
        _o = o;
        if (!IsH264Encoder(dev, out _mplane)) throw new EncoderException($"{dev.Path} is not a V4L2 mem2mem H.264 encoder");
        _outType = _mplane ? BufTypeVideoOutputMplane : BufTypeVideoOutput;
        _capType = _mplane ? BufTypeVideoCaptureMplane : BufTypeVideoCapture;
        _inputFormat = Offers(dev, _outType, PixYuv420) ? PixYuv420 : Offers(dev, _outType, PixNv12) ? PixNv12
            : throw new EncoderException($"{dev.Path} takes neither YU12 nor NV12 pictures");

        // The raw side: the driver may pad lines (bytesperline) and round the height; we draw into what it says.
        var f = new Format { Type = _outType };
        if (_mplane) { f.PixMp.Width = (uint)o.Width; f.PixMp.Height = (uint)o.Height; f.PixMp.PixelFormat = _inputFormat; f.PixMp.NumPlanes = 1; f.PixMp.Field = FieldNone; }
        else { f.Pix.Width = (uint)o.Width; f.Pix.Height = (uint)o.Height; f.Pix.PixelFormat = _inputFormat; f.Pix.Field = FieldNone; }
        Check(dev.Ioctl(SetFmt, ref f), "S_FMT (pictures)");
        uint w = _mplane ? f.PixMp.Width : f.Pix.Width, h = _mplane ? f.PixMp.Height : f.Pix.Height;
        uint got = _mplane ? f.PixMp.PixelFormat : f.Pix.PixelFormat;
        if (w != o.Width || h < o.Height || got != _inputFormat || (_mplane && f.PixMp.NumPlanes != 1))
            throw new EncoderException($"{dev.Path} would not take {o.Width}x{o.Height} {FourCcName(_inputFormat)} pictures in one plane (it offered {w}x{h} {FourCcName(got)})");
        _stride = (int)(_mplane ? f.PixMp.Plane(0).BytesPerLine : f.Pix.BytesPerLine);
        _sizeImage = (int)(_mplane ? f.PixMp.Plane(0).SizeImage : f.Pix.SizeImage);
        if (_stride < o.Width || _sizeImage < _stride * o.Height * 3 / 2) throw new EncoderException($"{dev.Path} gave an unusable picture layout (stride {_stride}, size {_sizeImage})");

        // The coded side: room for the largest access unit a frame at this bitrate could need.
        var c = new Format { Type = _capType };
        uint codedSize = (uint)Math.Max(512 * 1024, o.Width * o.Height);
        if (_mplane) { c.PixMp.Width = (uint)o.Width; c.PixMp.Height = (uint)o.Height; c.PixMp.PixelFormat = PixH264; c.PixMp.NumPlanes = 1; c.PixMp.Plane(0).SizeImage = codedSize; }
        else { c.Pix.Width = (uint)o.Width; c.Pix.Height = (uint)o.Height; c.Pix.PixelFormat = PixH264; c.Pix.SizeImage = codedSize; }
        Check(dev.Ioctl(SetFmt, ref c), "S_FMT (H.264)");

        var parm = new StreamParm { Type = _outType, TimePerFrameNumerator = 1, TimePerFrameDenominator = (uint)o.Fps };
        if (dev.Ioctl(SetParm, ref parm) != 0) _refused.Add("frame rate");

        SetControl(CidMpegVideoBitrateMode, o.ConstantBitrate ? BitrateModeCbr : BitrateModeVbr, "bitrate mode");
        SetControl(CidMpegVideoBitrate, (int)Math.Min(o.Bitrate, int.MaxValue), "bitrate");
        SetControl(CidMpegVideoGopSize, o.KeyFrameInterval, "GOP size");
        SetControl(CidMpegVideoH264IPeriod, o.KeyFrameInterval, "H.264 I period");
        SetControl(CidMpegVideoBFrames, 0, "B frames");
        SetControl(CidMpegVideoRepeatSeqHeader, 1, "repeat sequence header");
        SetControl(CidMpegVideoPrependSpsPpsToIdr, 1, "SPS/PPS before IDR");
        SetControl(CidMpegVideoH264Profile, H264ProfileHigh, "H.264 profile");

        MapQueue(_outType, _out, enqueue: false);
        MapQueue(_capType, _cap, enqueue: true);
        for (int i = 0; i < OutputBuffers; i++) _freeOutput.Enqueue(i);
        if (_inputFormat == PixNv12) _staging = (byte*)NativeMemory.AllocZeroed((nuint)(o.Width * o.Height * 3 / 2));
        int on = (int)_outType;
        Check(dev.Ioctl(StreamOn, ref on), "STREAMON (pictures)");
        on = (int)_capType;
        Check(dev.Ioctl(StreamOn, ref on), "STREAMON (H.264)");
        Description = $"V4L2 mem2mem {dev.Path} ({FourCcName(_inputFormat)} in, stride {_stride}" +
            (_refused.Count > 0 ? $", driver defaults for: {string.Join(", ", _refused)})" : ")");
    }

    static string FourCcName(uint f) => new([(char)(f & 0xff), (char)((f >> 8) & 0xff), (char)((f >> 16) & 0xff), (char)(f >> 24)]);

    void Check(int errno, string what)
    {
        if (errno != 0) throw new EncoderException($"{_dev.Path}: {what} failed (errno {errno})");
    }

    void SetControl(uint id, int value, string name)
    {
        // One control per call: a driver refuses a whole batch for one unknown control.
        var ctrl = new ExtControl { Id = id, Value = value };
        var batch = new ExtControls { Which = CtrlClassCodec, Count = 1, Controls = (nint)(&ctrl) };
        if (_dev.Ioctl(SetExtCtrls, ref batch) != 0) _refused.Add(name);
    }

    void MapQueue(uint type, (nint Address, int Length)[] buffers, bool enqueue)
    {
        var req = new RequestBuffers { Count = (uint)buffers.Length, Type = type, Memory = MemoryMmap };
        Check(_dev.Ioctl(ReqBufs, ref req), "REQBUFS");
        if (req.Count < buffers.Length) throw new EncoderException($"{_dev.Path}: the driver gave {req.Count} buffers, {buffers.Length} are needed");
        for (int i = 0; i < buffers.Length; i++)
        {
            var plane = new Plane();
            var b = NewBuffer(type, i, &plane);
            Check(_dev.Ioctl(QueryBuf, ref b), "QUERYBUF");
            int length = (int)(_mplane ? plane.Length : b.Length);
            long offset = _mplane ? plane.MemOffset : b.Offset;
            buffers[i] = (_dev.Map(length, offset), length);
            if (enqueue) Check(_dev.Ioctl(QBuf, ref b), "QBUF (H.264)");
        }
    }

    Buffer NewBuffer(uint type, int index, Plane* plane)
    {
        var b = new Buffer { Type = type, Index = (uint)index, Memory = MemoryMmap };
        if (_mplane) { b.Planes = (nint)plane; b.Length = 1; }
        return b;
    }

    public PicturePlanes BeginFrame()
    {
        if (_current < 0)
        {
            // Wait for the hardware to give a picture buffer back (it holds at most all of them for a moment).
            for (int tries = 0; _freeOutput.Count == 0; tries++)
            {
                if (tries == 200) throw new EncoderException($"{_dev.Path} has kept every picture buffer for 2 s");
                ReclaimOutput();
                if (_freeOutput.Count == 0) _dev.Wait(10, out _, out _);
            }
            _current = _freeOutput.Dequeue();
        }
        int w = _o.Width, h = _o.Height;
        if (_staging != null)
            return new PicturePlanes(_staging, _staging + w * h, _staging + w * h + w * h / 4, w, w / 2, w, h);
        byte* y = (byte*)_out[_current].Address;
        // YU12 in one plane: Y lines of stride bytes, then U and V lines of stride/2.
        byte* u = y + _stride * PaddedHeight(), v = u + (_stride / 2) * (PaddedHeight() / 2);
        return new PicturePlanes(y, u, v, _stride, _stride / 2, w, h);
    }

    /// <summary>The luma height the driver laid out: its image size over the stride, at least the picture's height.</summary>
    int PaddedHeight() => Math.Max(_o.Height, (int)(_sizeImage * 2L / 3 / _stride) & ~1);

    public void Encode(long frameIndex, bool forceKeyFrame, IEncodedSink sink)
    {
        if (_current < 0) BeginFrame();
        if (_staging != null) InterleaveChroma();
        if (forceKeyFrame)
        {
            var ctrl = new Control { Id = CidMpegVideoForceKeyFrame, Value = 1 };
            _dev.Ioctl(SetCtrl, ref ctrl);
        }
        var plane = new Plane { BytesUsed = (uint)_sizeImage, Length = (uint)_out[_current].Length };
        var b = NewBuffer(_outType, _current, &plane);
        b.BytesUsed = (uint)_sizeImage;
        b.Field = FieldNone;
        b.TimestampSec = frameIndex / 1_000_000;
        b.TimestampUsec = frameIndex % 1_000_000;
        Check(_dev.Ioctl(QBuf, ref b), "QBUF (picture)");
        _current = -1;
        // Give the hardware up to half a frame to finish this picture, then take whatever is done.
        _dev.Wait(Math.Max(1, 500 / _o.Fps), out _, out _);
        DrainCapture(sink);
        ReclaimOutput();
    }

    void InterleaveChroma()
    {
        int w = _o.Width, h = _o.Height;
        byte* dst = (byte*)_out[_current].Address, s = _staging;
        {
            for (int y = 0; y < h; y++) new ReadOnlySpan<byte>(s + y * w, w).CopyTo(new Span<byte>(dst + y * _stride, w));
            byte* u = s + w * h, v = u + w * h / 4, uv = dst + _stride * PaddedHeight();
            for (int y = 0; y < h / 2; y++)
                for (int x = 0; x < w / 2; x++)
                {
                    uv[y * _stride + 2 * x] = u[y * (w / 2) + x];
                    uv[y * _stride + 2 * x + 1] = v[y * (w / 2) + x];
                }
        }
    }

    void ReclaimOutput()
    {
        while (true)
        {
            var plane = new Plane();
            var b = NewBuffer(_outType, 0, &plane);
            if (_dev.Ioctl(DqBuf, ref b) != 0) return;
            _freeOutput.Enqueue((int)b.Index);
        }
    }

    /// <returns>Whether a buffer flagged LAST came (the end of a drain).</returns>
    bool DrainCapture(IEncodedSink? sink)
    {
        while (true)
        {
            var plane = new Plane();
            var b = NewBuffer(_capType, 0, &plane);
            int e = _dev.Ioctl(DqBuf, ref b);
            if (e == Errno.EPIPE) return true;   // already drained
            if (e != 0) return false;
            int used = (int)(_mplane ? plane.BytesUsed - plane.DataOffset : b.BytesUsed);
            int start = _mplane ? (int)plane.DataOffset : 0;
            bool last = (b.Flags & BufFlagLast) != 0;
            if (used > 0 && sink is not null)
            {
                var au = new ReadOnlySpan<byte>((byte*)_cap[b.Index].Address + start, used);
                bool key = (b.Flags & BufFlagKeyFrame) != 0;
                long frame = b.TimestampSec * 1_000_000 + b.TimestampUsec;
                sink.OnEncoded(TrackKind.Video, _parameterSets.PrefixFor(au, key), au, frame * 90000 / _o.Fps, key);
            }
            var again = NewBuffer(_capType, (int)b.Index, &plane);
            if (!last) Check(_dev.Ioctl(QBuf, ref again), "QBUF (H.264)");
            if (last) return true;
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // Drain what the hardware still holds, for at most half a second, then stop both queues.
        var stop = new EncoderCommand { Cmd = EncCmdStop };
        if (_dev.Ioctl(EncoderCmd, ref stop) == 0)
            for (int i = 0; i < 50 && !DrainCapture(null); i++) _dev.Wait(10, out _, out _);
        int type = (int)_outType;
        _dev.Ioctl(StreamOff, ref type);
        type = (int)_capType;
        _dev.Ioctl(StreamOff, ref type);
        foreach (var (address, length) in _out) if (address != 0) _dev.Unmap(address, length);
        foreach (var (address, length) in _cap) if (address != 0) _dev.Unmap(address, length);
        var release = new RequestBuffers { Count = 0, Type = _outType, Memory = MemoryMmap };
        _dev.Ioctl(ReqBufs, ref release);
        release = new RequestBuffers { Count = 0, Type = _capType, Memory = MemoryMmap };
        _dev.Ioctl(ReqBufs, ref release);
        if (_staging != null) NativeMemory.Free(_staging);
        _dev.Dispose();
    }
}
