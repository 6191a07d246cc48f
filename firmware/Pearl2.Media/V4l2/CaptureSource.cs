using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Pearl2.Media.Encoders;
using static Pearl2.Media.FFmpeg.LibAv;

namespace Pearl2.Media.V4l2;

/// <summary>
/// A channel's picture from a capture device, at the channel's own size whatever the input's: the newest
/// captured picture, scaled with libswscale when the sizes differ. A lost signal, an unplugged device or a new
/// input resolution restarts the capture (retried once a second); meanwhile <see cref="TryFill"/> says false
/// and the pipeline shows its "No signal" picture, so the stream never stops.
/// </summary>
public sealed unsafe class CaptureSource : IDisposable
{
    static readonly TimeSpan Retry = TimeSpan.FromSeconds(1), Stale = TimeSpan.FromSeconds(1);

    readonly string _path;
    readonly int _width, _height;
    readonly TimeProvider _time;
    readonly ILogger _log;
    readonly Func<string, IV4l2Device> _open;
    IV4l2Device? _dev;
    V4l2Capture? _capture;
    byte* _y, _u, _v;
    int _cw, _ch;
    nint _scaler;
    long _nextAttempt, _lastFrame;
    bool _haveFrame;
    string _state = "";

    public CaptureSource(string path, int width, int height, TimeProvider time, ILogger log, Func<string, IV4l2Device>? open = null)
    {
        _path = path; _width = width; _height = height; _time = time; _log = log;
        _open = open ?? (p => V4l2Device.Open(p));
    }

    public CaptureFormat? Format => _capture?.Format;

    /// <summary>Fills <paramref name="dst"/> (the channel's size) with the newest picture; false when there is none to show.</summary>
    public bool TryFill(in PicturePlanes dst)
    {
        long now = _time.GetTimestamp();
        if (_capture is null)
        {
            if (now < _nextAttempt) return false;
            _nextAttempt = now + (long)(Retry.TotalSeconds * _time.TimestampFrequency);
            if (!TryStart()) return false;
        }
        bool fresh = false;
        for (int i = 0; i < V4l2Capture.BufferCount; i++) // no more can be waiting than there are buffers
        {
            // Take every picture that is ready and keep the newest: the channel's frame rate sets the pace.
            CaptureStatus status;
            try { status = _capture!.ReadInto(0, new PicturePlanes(_y, _u, _v, _cw, _cw / 2, _cw, _ch)); }
            catch (IOException e)
            {
                // The device went away (unplugged, driver reset): open it again on the next attempt.
                Report("failed", e.Message);
                StopCapture();
                _dev?.Dispose();
                _dev = null;
                return false;
            }
            if (status == CaptureStatus.Frame) { fresh = true; continue; }
            if (status == CaptureStatus.Timeout) break;
            Report(status == CaptureStatus.SourceChanged ? "input_changed" : "no_signal", "restarting the capture");
            StopCapture();
            return false;
        }
        if (fresh) { _lastFrame = now; _haveFrame = true; }
        if (!_haveFrame || _time.GetElapsedTime(_lastFrame, now) > Stale) return false;
        Scale(dst);
        return true;
    }

    bool TryStart()
    {
        try
        {
            _dev ??= _open(_path);
            var status = V4l2Capture.Start(_dev, _width, _height, out var capture);
            if (status == CaptureStatus.NoSignal) { Report("no_signal", "the input has no signal"); return false; }
            _capture = capture!;
            var f = _capture.Format;
            if (f.Width != _cw || f.Height != _ch) Allocate(f.Width, f.Height);
            _haveFrame = false;
            Report("capturing", $"{_capture.Card}: {f}" + (f.Width != _width || f.Height != _height ? $", scaled to {_width}x{_height}" : ""));
            return true;
        }
        catch (IOException e)
        {
            Report("failed", e.Message);
            _dev?.Dispose();
            _dev = null;
            return false;
        }
    }

    void Report(string state, string detail)
    {
        if (state == _state) return; // one line per change, not one per retry
        _state = state;
        if (state == "capturing") _log.LogInformation("capture.state device={Device} state={State} detail=\"{Detail}\"", _path, state, detail);
        else _log.LogWarning("capture.state device={Device} state={State} detail=\"{Detail}\" effect=\"No signal picture until it comes back\"", _path, state, detail);
    }

    void Allocate(int w, int h)
    {
        FreeBuffers();
        _cw = w; _ch = h;
        _y = (byte*)NativeMemory.AllocZeroed((nuint)(w * h));
        _u = (byte*)NativeMemory.AllocZeroed((nuint)(w * h / 4));
        _v = (byte*)NativeMemory.AllocZeroed((nuint)(w * h / 4));
        if (w != _width || h != _height)
        {
            _scaler = sws_getContext(w, h, AV_PIX_FMT_YUV420P, _width, _height, AV_PIX_FMT_YUV420P, SWS_BILINEAR, 0, 0, 0);
            if (_scaler == 0) throw new IOException($"libswscale cannot scale {w}x{h} to {_width}x{_height}");
        }
    }

    void Scale(in PicturePlanes dst)
    {
        if (_scaler == 0)
        {
            for (int row = 0; row < _ch; row++) new ReadOnlySpan<byte>(_y + row * _cw, _cw).CopyTo(new Span<byte>(dst.Y + row * dst.YStride, _cw));
            for (int row = 0; row < _ch / 2; row++)
            {
                new ReadOnlySpan<byte>(_u + row * _cw / 2, _cw / 2).CopyTo(new Span<byte>(dst.U + row * dst.CStride, _cw / 2));
                new ReadOnlySpan<byte>(_v + row * _cw / 2, _cw / 2).CopyTo(new Span<byte>(dst.V + row * dst.CStride, _cw / 2));
            }
            return;
        }
        byte** src = stackalloc byte*[4] { _y, _u, _v, null };
        int* srcStride = stackalloc int[4] { _cw, _cw / 2, _cw / 2, 0 };
        byte** d = stackalloc byte*[4] { dst.Y, dst.U, dst.V, null };
        int* dStride = stackalloc int[4] { dst.YStride, dst.CStride, dst.CStride, 0 };
        sws_scale(_scaler, src, srcStride, 0, _ch, d, dStride);
    }

    void StopCapture()
    {
        _capture?.Dispose();
        _capture = null;
        _haveFrame = false;
    }

    void FreeBuffers()
    {
        if (_scaler != 0) { sws_freeContext(_scaler); _scaler = 0; }
        NativeMemory.Free(_y); NativeMemory.Free(_u); NativeMemory.Free(_v);
        _y = _u = _v = null;
        _cw = _ch = 0;
    }

    public void Dispose()
    {
        StopCapture();
        _dev?.Dispose();
        _dev = null;
        FreeBuffers();
    }
}
