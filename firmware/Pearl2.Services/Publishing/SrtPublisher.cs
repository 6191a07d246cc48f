using System.Net;
using Microsoft.Extensions.Logging;
using Pearl2.Media;
using Pearl2.Services.Channels;
using Pearl2.Services.Configuration;
using Pearl2.Services.HttpLive;

namespace Pearl2.Services.Publishing;

/// <summary>
/// Sends a channel as MPEG-TS over SRT (libsrt, live mode): the TS packaging the HTTP viewers already get, 7 packets to
/// a message. As a caller it connects to <c>host:port</c>; as a listener it waits on <c>port</c> for one caller at a
/// time; in rendezvous mode both ends call each other from their own ports. Latency, passphrase (AES, key length), and
/// stream id are SRT's own options. TS packets go 7 to a message, a picture's last ones at once. Sends never block: when libsrt's
/// send buffer is full the rest of that GOP is dropped (counted) and sending goes on at the next key frame. A wrong
/// passphrase is the receiver's rejection, said as such.
/// </summary>
public sealed class SrtPublisher(string id, PublisherConfig config, ChannelContext channel, ILogger log, TimeProvider time) : Publisher(id, config, channel, log, time)
{
    readonly object _sock = new();
    int _socket = -1;

    public override string Target => Config.Mode switch
    {
        "listener" => $"srt://0.0.0.0:{Config.Port} (listener)",
        "rendezvous" => $"srt://{Config.Host}:{Config.Port} (rendezvous from {(Config.LocalPort != 0 ? Config.LocalPort : Config.Port)})",
        _ => $"srt://{Config.Host}:{Config.Port}",
    };

    protected override SrtStats? SrtStatistics()
    {
        lock (_sock) return _socket >= 0 ? SrtNative.Stats(_socket) : null;
    }

    void Configure(int s)
    {
        SrtNative.SetInt(s, SrtNative.TransType, SrtNative.TransTypeLive, "transtype");
        SrtNative.SetBool(s, SrtNative.Sender, true, "sender");
        SrtNative.SetInt(s, SrtNative.Latency, Config.LatencyMs, "latency");
        SrtNative.SetInt(s, SrtNative.ConnTimeo, 5000, "conntimeo");
        if (Config.Passphrase.Length > 0)
        {
            SrtNative.SetString(s, SrtNative.Passphrase, Config.Passphrase, "passphrase");
            if (Config.KeyLength > 0) SrtNative.SetInt(s, SrtNative.PbKeyLen, Config.KeyLength, "pbkeylen");
        }
        if (Config.StreamId.Length > 0) SrtNative.SetString(s, SrtNative.StreamId, Config.StreamId, "streamid");
    }

    /// <summary>Why a connect or accept failed, in the operator's words.</summary>
    static string Why(int s)
    {
        int reason = s >= 0 ? SrtNative.RejectReason(s) : 0;
        return reason switch
        {
            SrtNative.RejectBadSecret => "the receiver refused the passphrase",
            SrtNative.RejectUnsecure => "the receiver and we disagree on encryption (one has a passphrase, the other none)",
            SrtNative.RejectTimeout => "no answer from the receiver",
            _ => SrtNative.LastErrorText(),
        };
    }

    protected override async Task SessionAsync(CancellationToken ct)
    {
        if (!SrtNative.EnsureStarted(out var why)) throw new PublishRefusedException(why!);
        var info = await Channel.Hub.Ready.WaitAsync(ct);
        int s = Config.Mode == "listener" ? await AcceptAsync(ct) : await ConnectAsync(ct);
        lock (_sock) _socket = s;
        try
        {
            SrtNative.SetBool(s, SrtNative.SndSyn, false, "sndsyn");   // from now on a full buffer is an answer, not a wait
            SetStarted();
            await PumpAsync(s, info, ct);
        }
        finally
        {
            lock (_sock) _socket = -1;
            SrtNative.Close(s);
        }
    }

    async Task<int> ConnectAsync(CancellationToken ct)
    {
        var addresses = await Dns.GetHostAddressesAsync(Config.Host, ct);
        if (addresses.Length == 0) throw new IOException($"{Config.Host}: no address");
        var ep = new IPEndPoint(addresses[0], Config.Port);
        int s = SrtNative.CreateSocket();
        if (s < 0) throw new IOException("SRT socket: " + SrtNative.LastErrorText());
        try
        {
            Configure(s);
            var addr = SrtNative.SockAddr(ep);
            using var abort = ct.Register(() => SrtNative.Close(s));
            // Rendezvous: both ends send from their own port to the other's at once (libsrt binds the local one).
            var local = SrtNative.SockAddr(new IPEndPoint(ep.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any,
                Config.LocalPort != 0 ? Config.LocalPort : Config.Port));
            bool rendezvous = Config.Mode == "rendezvous";
            int r = await Task.Factory.StartNew(() =>
            {
                unsafe
                {
                    fixed (byte* a = addr)
                    fixed (byte* l = local)
                        return rendezvous ? SrtNative.Rendezvous(s, l, local.Length, a, addr.Length) : SrtNative.Connect(s, a, addr.Length);
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            ct.ThrowIfCancellationRequested();
            if (r < 0) throw new PublishRefusedException($"{Target}: {Why(s)}");
            return s;
        }
        catch { SrtNative.Close(s); throw; }
    }

    async Task<int> AcceptAsync(CancellationToken ct)
    {
        int l = SrtNative.CreateSocket();
        if (l < 0) throw new IOException("SRT socket: " + SrtNative.LastErrorText());
        try
        {
            Configure(l);
            var addr = SrtNative.SockAddr(new IPEndPoint(IPAddress.Any, Config.Port));
            unsafe { fixed (byte* a = addr) if (SrtNative.Bind(l, a, addr.Length) < 0) throw new IOException($"SRT listener on UDP port {Config.Port}: {SrtNative.LastErrorText()}"); }
            if (SrtNative.Listen(l, 1) < 0) throw new IOException($"SRT listen: {SrtNative.LastErrorText()}");
            SetListening();
            Log.LogInformation("publish.listening channel={Channel} publisher={Id} name=\"{Name}\" port={Port}", Channel.Number, Id, Config.Name, Config.Port);
            using var abort = ct.Register(() => SrtNative.Close(l));
            int s = await Task.Factory.StartNew(() => { unsafe { return SrtNative.Accept(l, null, null); } },
                CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            ct.ThrowIfCancellationRequested();
            if (s < 0) throw new IOException($"SRT accept: {SrtNative.LastErrorText()}");
            return s;
        }
        finally { SrtNative.Close(l); }
    }

    async Task PumpAsync(int s, StreamInfo info, CancellationToken ct)
    {
        bool audio = info.HasAudio && !Config.DisableAudio;
        using var lease = Channel.Hub.Acquire("ts", () => new TsPackager(info.HasAudio, info.AudioSampleRate, info.AudioChannels));
        using var reader = Channel.Hub.Subscribe($"publish {Channel.Number}/{Id}", QueueUnits(info));
        using var wake = ct.Register(reader.Dispose);
        using var check = new PeriodicTimer(TimeSpan.FromSeconds(1), Time);
        int slot = lease.Slot, overflows = 0;
        long dropped = 0, lastCheck = Time.GetTimestamp();
        bool skipToKey = false;
        _messageLength = 0;
        while (true)
        {
            await reader.WaitAsync();
            if (reader.IsDisposed) { ct.ThrowIfCancellationRequested(); return; }
            CountDrops(reader, ref overflows, ref dropped);
            while (reader.TryRead(out var unit))
            {
                try
                {
                    if (unit.Track == TrackKind.Audio && !audio) continue;
                    bool key = unit.Track == TrackKind.Video && unit.IsKeyFrame;
                    if (skipToKey && !key) continue;
                    skipToKey = false;
                    int sent = Send(s, unit.Slot(slot).Span, unit.Track == TrackKind.Video);
                    if (sent < 0) { skipToKey = true; CountBufferFull(); }
                    else CountSent(sent);
                }
                finally { unit.Release(); }
            }
            // A receiver that went away shows in the socket's state (a non-blocking send may not fail at once).
            if (Time.GetElapsedTime(lastCheck) > TimeSpan.FromSeconds(1))
            {
                lastCheck = Time.GetTimestamp();
                int state = SrtNative.State(s);
                if (state >= SrtNative.StateBroken) throw new IOException($"{Target}: the connection broke (SRT state {state})");
            }
        }
    }

    // TS packets wait here until 7 fill a message (as FFmpeg's own SRT output does), so that an audio unit of two or
    // three packets does not cost a message of its own; a video unit's end sends what is there, so no picture waits.
    readonly byte[] _message = new byte[SrtNative.LivePayload];
    int _messageLength;

    /// <summary>
    /// Sends one unit's TS packets in messages of 7; the bytes handed to libsrt, or -1 when its buffer is full (the unit is
    /// dropped from there on, and what waited with it).
    /// </summary>
    unsafe int Send(int s, ReadOnlySpan<byte> ts, bool endOfPicture)
    {
        int sent = 0, at = 0;
        while (at < ts.Length)
        {
            int n = Math.Min(SrtNative.LivePayload - _messageLength, ts.Length - at);
            ts.Slice(at, n).CopyTo(_message.AsSpan(_messageLength));
            _messageLength += n; at += n;
            if (_messageLength == SrtNative.LivePayload || (at == ts.Length && endOfPicture))
            {
                int r = Flush(s);
                if (r < 0) return -1;
                sent += r;
            }
        }
        return sent;
    }

    unsafe int Flush(int s)
    {
        int n = _messageLength;
        _messageLength = 0;
        if (n == 0) return 0;
        fixed (byte* p = _message)
            if (SrtNative.SendMsg2(s, p, n, null) < 0)
            {
                if (SrtNative.LastErrorCode() == SrtNative.ErrAsyncSend) return -1;
                throw new IOException($"SRT send: {SrtNative.LastErrorText()}");
            }
        return n;
    }

    long _bufferFull;

    void CountBufferFull()
    {
        long n = Interlocked.Increment(ref _bufferFull);
        Log.LogWarning("publish.dropped channel={Channel} publisher={Id} name=\"{Name}\" gops=1 buffer_full_total={Total} reason=\"libsrt's send buffer is full: the link takes less than the channel's bitrate\"",
            Channel.Number, Id, Config.Name, n);
        AddDroppedGop();
    }
}
