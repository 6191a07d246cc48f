using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace Pearl2.Media.Alsa;

/// <summary>
/// Audio capture from an ALSA PCM (libasound2 through [LibraryImport]): the HDMI bridge's I2S input, a USB audio
/// device, or snd-aloop on the qemu board. A "plughw:" device name lets ALSA's plug layer convert whatever the
/// hardware gives to the channel's rate, channel count and S16 samples, so the encoder always gets 48 kHz stereo.
/// The PCM is opened non-blocking and waited on with a timeout: a device that stops producing, or vanishes (a USB
/// device pulled), makes <see cref="TryRead"/> return false, and the pipeline fills silence until it is back; it is
/// reopened at most once a second. Buffers are allocated once.
/// </summary>
public sealed unsafe partial class AlsaCapture : IDisposable
{
    const string Lib = "libasound.so.2";
    const int StreamCapture = 1, FormatS16Le = 2, AccessRwInterleaved = 3, NonBlock = 1;
    const int EAGAIN = 11;

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] private static partial int snd_pcm_open(out nint pcm, string name, int stream, int mode);
    [LibraryImport(Lib)] private static partial int snd_pcm_set_params(nint pcm, int format, int access, uint channels, uint rate, int softResample, uint latencyUs);
    [LibraryImport(Lib)] private static partial int snd_pcm_start(nint pcm);
    [LibraryImport(Lib)] private static partial int snd_pcm_wait(nint pcm, int timeoutMs);
    [LibraryImport(Lib)] private static partial nint snd_pcm_readi(nint pcm, short* buffer, nuint frames);
    [LibraryImport(Lib)] private static partial int snd_pcm_recover(nint pcm, int err, int silent);
    [LibraryImport(Lib)] private static partial int snd_pcm_close(nint pcm);
    [LibraryImport(Lib)] private static partial nint snd_strerror(int errnum);

    readonly string _device;
    readonly int _rate, _channels, _frames;
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly short* _buffer;
    nint _pcm;
    int _filled;
    long _nextOpen;
    string _state = "";

    public AlsaCapture(string device, int rate, int channels, int frames, TimeProvider time, ILogger log)
    {
        _device = device; _rate = rate; _channels = channels; _frames = frames; _time = time; _log = log;
        _buffer = (short*)NativeMemory.AllocZeroed((nuint)(frames * channels * sizeof(short)));
    }

    public string Device => _device;

    /// <summary>Whether the PCM is open and delivering.</summary>
    public bool Capturing => _pcm != 0;

    static string Error(int e) => Marshal.PtrToStringUTF8(snd_strerror(e)) ?? $"error {e}";

    void State(string state, string detail)
    {
        if (state == _state) return;
        _state = state;
        _log.LogInformation("audio.state device={Device} state={State} detail=\"{Detail}\"", _device, state, detail);
    }

    bool TryOpen()
    {
        long now = _time.GetTimestamp();
        if (now < _nextOpen) return false;
        _nextOpen = now + _time.TimestampFrequency;
        int e;
        try { e = snd_pcm_open(out _pcm, _device, StreamCapture, NonBlock); }
        catch (DllNotFoundException) { State("missing", "libasound.so.2 is not installed"); _nextOpen = long.MaxValue; return false; }
        if (e < 0) { _pcm = 0; State("missing", Error(e)); return false; }
        // 100 ms of buffering: enough for a loaded board, little enough for lip sync.
        e = snd_pcm_set_params(_pcm, FormatS16Le, AccessRwInterleaved, (uint)_channels, (uint)_rate, 1, 100_000);
        if (e >= 0) e = snd_pcm_start(_pcm);
        if (e < 0) { Close(); State("refused", $"{_rate} Hz {_channels} ch S16: {Error(e)}"); return false; }
        _filled = 0;
        State("capturing", $"{_rate} Hz {_channels} ch");
        return true;
    }

    void Close()
    {
        if (_pcm != 0) snd_pcm_close(_pcm);
        _pcm = 0;
    }

    /// <summary>
    /// Fills one frame of planar float samples (right may be empty for mono); false when the device has not given
    /// a whole frame within <paramref name="timeoutMs"/> or is not there (the caller sends silence).
    /// </summary>
    public bool TryRead(Span<float> left, Span<float> right, int timeoutMs)
    {
        if (_pcm == 0 && !TryOpen()) return false;
        while (_filled < _frames)
        {
            int ready = snd_pcm_wait(_pcm, timeoutMs);
            if (ready == 0) return false;   // nothing in time: keep what is buffered, the caller fills silence
            nint n = ready < 0 ? ready : snd_pcm_readi(_pcm, _buffer + _filled * _channels, (nuint)(_frames - _filled));
            if (n == -EAGAIN) continue;
            if (n < 0)
            {
                // An overrun (the board was busy) is recovered in place; anything else closes the device.
                if (snd_pcm_recover(_pcm, (int)n, 1) >= 0) { snd_pcm_start(_pcm); continue; }
                Close();
                State("lost", Error((int)n));
                return false;
            }
            _filled += (int)n;
        }
        const float scale = 1f / 32768;
        for (int i = 0; i < _frames; i++)
        {
            left[i] = _buffer[i * _channels] * scale;
            if (!right.IsEmpty) right[i] = _buffer[i * _channels + (_channels > 1 ? 1 : 0)] * scale;
        }
        _filled = 0;
        return true;
    }

    bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Close();
        NativeMemory.Free(_buffer);
    }
}
