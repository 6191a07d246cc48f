using Pearl2.Media.Encoders;

namespace Pearl2.Media.V4l2;

public enum CaptureStatus { Frame, Timeout, NoSignal, SourceChanged }

/// <summary>The format a capture device agreed to.</summary>
public readonly record struct CaptureFormat(uint FourCc, int Width, int Height, int Stride, long MilliFps)
{
    public override string ToString() => $"{PixelConvert.FourCcText(FourCc)} {Width}x{Height} stride {Stride}" + (MilliFps > 0 ? $" {MilliFps / 1000.0:0.##} fps" : "");
}

/// <summary>
/// Video capture from a V4L2 device, single- or multi-planar: QUERYCAP, DV timings for HDMI bridges (a lost
/// signal is reported, not thrown), ENUM_FMT and S_FMT with the first format both sides know (NV12, YU12, YUYV,
/// UYVY), MMAP buffers, and source-change events so a new input resolution restarts the capture instead of
/// failing it. <see cref="ReadInto"/> waits for a picture, converts it into the encoder's frame and gives the
/// buffer straight back to the driver.
/// </summary>
public sealed unsafe class V4l2Capture : IDisposable
{
    public const int BufferCount = 4;
    static readonly uint[] Preference = [V4l2Abi.PixNv12, V4l2Abi.PixYuv420, V4l2Abi.PixYuyv, V4l2Abi.PixUyvy];

    readonly IV4l2Device _dev;
    readonly (nint Address, int Length)[] _buffers = new (nint, int)[BufferCount];
    int _bufferCount;
    uint _type;
    bool _mplane, _streaming;

    V4l2Capture(IV4l2Device dev) => _dev = dev;

    public CaptureFormat Format { get; private set; }
    public string Card { get; private set; } = "";
    public bool Multiplanar => _mplane;
    public long Frames { get; private set; }

    /// <summary>
    /// Opens the capture at the input's own size when it reports DV timings (an HDMI bridge), else at the size asked
    /// for (the driver may adjust it). Returns NoSignal, and no capture, when the bridge sees no input.
    /// </summary>
    public static CaptureStatus Start(IV4l2Device dev, int width, int height, out V4l2Capture? capture)
    {
        var c = new V4l2Capture(dev);
        capture = null;
        try
        {
            var status = c.Setup(width, height);
            if (status != CaptureStatus.Frame) { c.Dispose(); return status; }
            capture = c;
            return CaptureStatus.Frame;
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    void Check(int err, string what)
    {
        if (err != 0) throw new IOException($"{_dev.Path}: {what} failed (errno {err})");
    }

    CaptureStatus Setup(int width, int height)
    {
        var cap = new V4l2Abi.Capability();
        Check(_dev.Ioctl(V4l2Abi.QueryCap, ref cap), "VIDIOC_QUERYCAP");
        uint caps = (cap.Capabilities & V4l2Abi.CapDeviceCaps) != 0 ? cap.DeviceCaps : cap.Capabilities;
        Card = Text(cap.Card, 32);
        if ((caps & V4l2Abi.CapStreaming) == 0) throw new IOException($"{_dev.Path} ({Card}) cannot stream");
        if ((caps & V4l2Abi.CapVideoCapture) != 0) { _mplane = false; _type = V4l2Abi.BufTypeVideoCapture; }
        else if ((caps & V4l2Abi.CapVideoCaptureMplane) != 0) { _mplane = true; _type = V4l2Abi.BufTypeVideoCaptureMplane; }
        else throw new IOException($"{_dev.Path} ({Card}) is not a video capture device");

        long milliFps = 0;
        var timings = new V4l2Abi.DvTimings();
        int err = _dev.Ioctl(V4l2Abi.QueryDvTimings, ref timings);
        if (err == 0)
        {
            Check(_dev.Ioctl(V4l2Abi.SetDvTimings, ref timings), "VIDIOC_S_DV_TIMINGS");
            width = (int)timings.Width; height = (int)timings.Height;
            milliFps = timings.MilliFps;
        }
        else if (err is Errno.ENOLINK or Errno.ENOLCK or Errno.ERANGE) return CaptureStatus.NoSignal; // no signal, unstable, or out of range
        // ENOTTY / ENODATA / EINVAL: the input has no DV timings (a camera, vivid's webcam input): use the size asked for.

        uint fourcc = ChooseFormat();
        var f = new V4l2Abi.Format { Type = _type };
        if (_mplane)
        {
            f.PixMp.Width = (uint)width; f.PixMp.Height = (uint)height; f.PixMp.PixelFormat = fourcc; f.PixMp.Field = V4l2Abi.FieldNone; f.PixMp.NumPlanes = 1;
        }
        else
        {
            f.Pix.Width = (uint)width; f.Pix.Height = (uint)height; f.Pix.PixelFormat = fourcc; f.Pix.Field = V4l2Abi.FieldNone;
        }
        Check(_dev.Ioctl(V4l2Abi.SetFmt, ref f), "VIDIOC_S_FMT");
        Format = _mplane
            ? new CaptureFormat(f.PixMp.PixelFormat, (int)f.PixMp.Width, (int)f.PixMp.Height, (int)f.PixMp.Plane(0).BytesPerLine, milliFps)
            : new CaptureFormat(f.Pix.PixelFormat, (int)f.Pix.Width, (int)f.Pix.Height, (int)f.Pix.BytesPerLine, milliFps);
        if (!PixelConvert.Supports(Format.FourCc)) throw new IOException($"{_dev.Path} answered S_FMT with {PixelConvert.FourCcText(Format.FourCc)}, which is not converted");
        if (_mplane && f.PixMp.NumPlanes != 1) throw new IOException($"{_dev.Path} wants {f.PixMp.NumPlanes} planes for {PixelConvert.FourCcText(Format.FourCc)}; only single-plane formats are taken");

        var req = new V4l2Abi.RequestBuffers { Count = BufferCount, Type = _type, Memory = V4l2Abi.MemoryMmap };
        Check(_dev.Ioctl(V4l2Abi.ReqBufs, ref req), "VIDIOC_REQBUFS");
        if (req.Count < 2) throw new IOException($"{_dev.Path} gave {req.Count} buffers");
        _bufferCount = (int)Math.Min(req.Count, BufferCount);
        for (uint i = 0; i < _bufferCount; i++)
        {
            var plane = new V4l2Abi.Plane();
            var b = NewBuffer(i, &plane);
            Check(_dev.Ioctl(V4l2Abi.QueryBuf, ref b), "VIDIOC_QUERYBUF");
            int length = (int)(_mplane ? plane.Length : b.Length);
            long offset = _mplane ? plane.MemOffset : b.Offset;
            _buffers[i] = (_dev.Map(length, offset), length);
            b = NewBuffer(i, &plane);
            Check(_dev.Ioctl(V4l2Abi.QBuf, ref b), "VIDIOC_QBUF");
        }

        var sub = new V4l2Abi.EventSubscription { Type = V4l2Abi.EventSourceChange };
        _dev.Ioctl(V4l2Abi.SubscribeEvent, ref sub); // not every driver has source-change events; capture works without
        int type = (int)_type;
        Check(_dev.Ioctl(V4l2Abi.StreamOn, ref type), "VIDIOC_STREAMON");
        _streaming = true;
        return CaptureStatus.Frame;
    }

    uint ChooseFormat()
    {
        var offered = new List<uint>();
        for (uint i = 0; i < 64; i++)
        {
            var d = new V4l2Abi.FmtDesc { Index = i, Type = _type };
            if (_dev.Ioctl(V4l2Abi.EnumFmt, ref d) != 0) break;
            offered.Add(d.PixelFormat);
        }
        foreach (var p in Preference) if (offered.Contains(p)) return p;
        throw new IOException($"{_dev.Path} offers {string.Join(", ", offered.Select(PixelConvert.FourCcText))}; none of NV12, YU12, YUYV, UYVY");
    }

    V4l2Abi.Buffer NewBuffer(uint index, V4l2Abi.Plane* plane)
    {
        var b = new V4l2Abi.Buffer { Index = index, Type = _type, Memory = V4l2Abi.MemoryMmap };
        if (_mplane) { b.Planes = (nint)plane; b.Length = 1; }
        return b;
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> for a picture and converts it into <paramref name="dst"/> (same size as <see cref="Format"/>).</summary>
    public CaptureStatus ReadInto(int timeoutMs, in PicturePlanes dst)
    {
        if (!_dev.Wait(timeoutMs, out bool readable, out bool eventPending)) return CaptureStatus.Timeout;
        if (eventPending)
        {
            var ev = new V4l2Abi.Event();
            if (_dev.Ioctl(V4l2Abi.DqEvent, ref ev) == 0 && ev.Type == V4l2Abi.EventSourceChange && (ev.SourceChanges & V4l2Abi.SourceChangeResolution) != 0)
                return CaptureStatus.SourceChanged;
        }
        if (!readable) return CaptureStatus.Timeout;
        var plane = new V4l2Abi.Plane();
        var b = NewBuffer(0, &plane);
        int err = _dev.Ioctl(V4l2Abi.DqBuf, ref b);
        if (err == Errno.EAGAIN) return CaptureStatus.Timeout;
        if (err is Errno.ENOLINK or Errno.EIO) return CaptureStatus.NoSignal;
        Check(err, "VIDIOC_DQBUF");
        try
        {
            var (address, length) = _buffers[b.Index];
            int used = (int)(_mplane ? plane.BytesUsed : b.BytesUsed);
            if (used == 0) used = length;
            var f = Format;
            PixelConvert.ToI420(f.FourCc, new ReadOnlySpan<byte>((void*)address, Math.Min(used, length)), f.Stride, f.Width, f.Height, dst);
            Frames++;
            return CaptureStatus.Frame;
        }
        finally
        {
            uint index = b.Index;
            b = NewBuffer(index, &plane);
            Check(_dev.Ioctl(V4l2Abi.QBuf, ref b), "VIDIOC_QBUF");
        }
    }

    static string Text(byte* s, int max)
    {
        int n = 0;
        while (n < max && s[n] != 0) n++;
        return System.Text.Encoding.UTF8.GetString(s, n);
    }

    public void Dispose()
    {
        if (_streaming)
        {
            int type = (int)_type;
            _dev.Ioctl(V4l2Abi.StreamOff, ref type);
            _streaming = false;
        }
        for (int i = 0; i < _bufferCount; i++) if (_buffers[i].Address != 0) _dev.Unmap(_buffers[i].Address, _buffers[i].Length);
        _bufferCount = 0;
        if (_type != 0)
        {
            var req = new V4l2Abi.RequestBuffers { Count = 0, Type = _type, Memory = V4l2Abi.MemoryMmap };
            _dev.Ioctl(V4l2Abi.ReqBufs, ref req);
        }
    }
}
