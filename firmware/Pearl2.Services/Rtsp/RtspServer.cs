using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;
using System.Buffers;
using System.Net.Sockets;
using Pearl2.Formats.Rtp;
using Pearl2.Media;

namespace Pearl2.Services.Rtsp;

public sealed record RtspOptions
{
    public int SessionTimeoutSeconds { get; init; } = 60;
    /// <summary>A viewer whose socket accepts nothing for this long is disconnected.</summary>
    public int StallTimeoutSeconds { get; init; } = 10;
    public int MaxRtpPayload { get; init; } = 1400;
    /// <summary>Units (video frames and audio frames) a viewer may have queued before it loses a GOP.</summary>
    public int ViewerQueueUnits { get; init; } = 512;
    public int StatsIntervalSeconds { get; init; } = 10;
    public int SocketSendBufferBytes { get; init; } = 512 * 1024;
    public int NonceLifetimeSeconds { get; init; } = 60;
    /// <summary>Connections per channel port, in all and from one host.</summary>
    public ConnectionLimits Limits { get; init; } = new();
    /// <summary>A connection that has sent no request (or tunnel command) for this long is closed.</summary>
    public int FirstRequestSeconds { get; init; } = 10;
}

/// <summary>One channel as the RTSP server sees it: its hub, its RTP packaging and its viewers' latency.</summary>
public sealed class RtspChannel
{
    public RtspChannel(ChannelHub hub, int port, RtpPackager packager, UdpTrackPorts?[] udp)
    {
        Hub = hub; Port = port; Packager = packager; Udp = udp;
    }

    /// <summary>
    /// A viewer's hold on the channel's RTP packaging: the hub packages units as RTP only while someone plays. The
    /// packager itself lives as long as the channel, so SSRCs and sequence numbers go on across idle spells.
    /// </summary>
    public FormatLease AcquireRtp() => Hub.Acquire("rtp", () => Packager);

    /// <summary>Server port pairs for UDP viewers, per track (null when UDP is off).</summary>
    public UdpTrackPorts?[] Udp { get; }
    /// <summary>The one loop that feeds every UDP-only viewer of the channel.</summary>
    public UdpFanOut? FanOut { get; set; }
    /// <summary>The lanes that write to the channel's TCP viewers while they keep up.</summary>
    public TcpFanOut? TcpFanOut { get; set; }

    public ChannelHub Hub { get; }
    public int Port { get; }
    public RtpPackager Packager { get; }
    public LatencyHistogram Latency { get; set; } = new();
    /// <summary>The same for key frames alone: the biggest units, so they set the tail.</summary>
    public LatencyHistogram KeyFrameLatency { get; set; } = new();
    /// <summary>Viewer login for this channel; null serves everyone.</summary>
    public ViewerCredentials? Credentials { get; set; }
    /// <summary>Whether viewers from other hosts are served (loopback always is).</summary>
    public bool StreamingEnabled { get; set; } = true;
    /// <summary>RTP packets and bytes sent by everyone but the TCP fan-out's lanes (Interlocked adds).</summary>
    internal SentTotals Sent = new();
    /// <summary>RTP packets handed to viewers' sockets.</summary>
    public long PacketsSent => Sent.Packets + (TcpFanOut?.Sent(static t => t.Packets) ?? 0);
    /// <summary>Bytes handed to viewers' sockets (RTP over TCP with its framing, or UDP datagrams), for the metrics.</summary>
    public long BytesSent => Sent.Bytes + (TcpFanOut?.Sent(static t => t.Bytes) ?? 0);
    /// <summary>PacketsSent at the last stats line: a channel that sent nothing since and has no viewer logs no line.</summary>
    internal long PacketsAtLastStats = -1;
    public long UdpDatagramsDropped;

    /// <summary>Hub entry → written to a viewer's socket, for the stats line; key frames also on their own.</summary>
    public void RecordLatency(MediaUnit unit, long now, TimeProvider time)
    {
        long microseconds = (long)time.GetElapsedTime(unit.HubTimestamp, now).TotalMicroseconds;
        Latency.Record(microseconds);
        if (unit.IsKeyFrame && unit.Track == TrackKind.Video) KeyFrameLatency.Record(microseconds);
    }

    /// <summary>
    /// The RTCP sender report of one viewer's track: the NTP time of <paramref name="lastPts"/> (the stream's wall clock
    /// at pts 0 plus the pts) beside its RTP timestamp, so players put both tracks on one clock. Null before the SPS is known.
    /// </summary>
    public RtcpSenderReport? SenderReport(TrackKind track, long lastPts, uint packets, uint octets)
    {
        if (Hub.Info is not { } info) return null;
        int clock = track == TrackKind.Video ? 90000 : info.AudioSampleRate;
        var wall = info.WallClockAtPtsZero + TimeSpan.FromSeconds((double)lastPts / clock);
        return new RtcpSenderReport(track == TrackKind.Video ? Packager.VideoSsrc : Packager.AudioSsrc,
            RtcpSenderReport.ToNtp(wall), Packager.RtpTimestamp(track, lastPts), packets, octets, "pearl2d");
    }

    /// <summary>Closes what the channel holds of its own: the UDP loop and port pairs.</summary>
    public void ReleasePorts()
    {
        FanOut?.Dispose();
        TcpFanOut?.Dispose();
        foreach (var u in Udp) u?.Dispose();
    }
}

/// <summary>
/// RTSP/1.0 (RFC 2326) on one port per channel, riding Kestrel's socket transport through a connection
/// callback. One heartbeat drives every timeout; one stats line per channel per interval.
/// </summary>
public sealed class RtspServer : IAsyncDisposable
{
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly object _connectionsLock = new();
    RtspConnection[] _connections = []; // copy on write: the heartbeat walks it without allocating
    readonly List<RtspChannel> _channels = new(); // changed only by the host's start and reload, never concurrently
    readonly ITimer _heartbeat;
    readonly RtspTunnels _tunnels;
    long _lastStats, _lastAllocated, _lastPackets;

    /// <param name="auth">The login shared with the channels' other doors (HTTP), so nonces and tokens are one device's; a new one when null.</param>
    public RtspServer(RtspOptions options, TimeProvider time, ILogger log, ViewerAuth? auth = null)
    {
        Options = options;
        _time = time;
        _log = log;
        _lastStats = time.GetTimestamp();
        _lastAllocated = GC.GetTotalAllocatedBytes();
        _tunnels = new RtspTunnels(this, log);
        Auth = auth ?? new ViewerAuth(time, TimeSpan.FromSeconds(options.NonceLifetimeSeconds), new LoginThrottle(time, log));
        _heartbeat = time.CreateTimer(_ => Heartbeat(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    public RtspOptions Options { get; }
    public ViewerAuth Auth { get; }
    public TimeProvider Time => _time;
    public IReadOnlyList<RtspChannel> Channels => _channels;
    public int ConnectionCount => Volatile.Read(ref _connections).Length;

    /// <summary>Takes a channel away: its viewers are disconnected, its UDP ports closed (its listener is the caller's).</summary>
    public void RemoveChannel(RtspChannel channel)
    {
        _channels.Remove(channel);
        foreach (var c in Volatile.Read(ref _connections))
            if (c.Channel == channel) c.Abort("channel removed");
        channel.ReleasePorts();
    }

    /// <param name="udpPort">The first of the channel's four RTSP/UDP server ports (video RTP/RTCP, audio RTP/RTCP); 0: no UDP.</param>
    public RtspChannel AddChannel(ChannelHub hub, int port, int udpPort)
    {
        var packager = new RtpPackager(Options.MaxRtpPayload);
        var udp = new UdpTrackPorts?[2];
        if (udpPort > 0)
        {
            try { for (int t = 0; t < 2; t++) udp[t] = new UdpTrackPorts(udpPort + 2 * t, _log); }
            catch
            {
                udp[0]?.Dispose();   // the video pair bound, the audio pair did not: give the first back
                throw;
            }
        }
        var ch = new RtspChannel(hub, port, packager, udp);
        if (udp[0] is not null) ch.FanOut = new UdpFanOut(ch, _time, _log);
        ch.TcpFanOut = new TcpFanOut(hub, _log);
        _channels.Add(ch);
        return ch;
    }

    /// <summary>
    /// A connection that is not (yet) an RTSP session: one that has sent nothing, or a tunnel's POST. The heartbeat
    /// closes it once it has been quiet for the session timeout.
    /// </summary>
    internal sealed class Pending(ConnectionContext connection, int channel, long now)
    {
        public readonly ConnectionContext Connection = connection;
        public readonly int Channel = channel;
        public long LastActivity = now;
        /// <summary>Quiet for longer than this and it is closed: the first-request limit, then a tunnel POST's session timeout.</summary>
        public int LimitSeconds;
        public void Touch(TimeProvider time) => Volatile.Write(ref LastActivity, time.GetTimestamp());
    }

    Pending[] _pending = [];

    internal void Settle(Pending p)
    {
        lock (_connectionsLock) _pending = Array.FindAll(_pending, x => x != p);
    }

    /// <summary>Kestrel's connection callback for a channel's port: RTSP, or an HTTP GET/POST of a tunnel.</summary>
    public async Task HandleAsync(ConnectionContext context, RtspChannel channel)
    {
        var socket = context.Features.Get<IConnectionSocketFeature>()?.Socket
            ?? throw new InvalidOperationException("RTSP needs Kestrel's socket transport (IConnectionSocketFeature)");
        var pending = new Pending(context, channel.Hub.Index + 1, _time.GetTimestamp()) { LimitSeconds = Options.FirstRequestSeconds };
        lock (_connectionsLock) _pending = [.. _pending, pending];
        try
        {
            bool http = await StartsWithHttpAsync(context);
            if (http) await _tunnels.HandleAsync(context, socket, channel, pending);
            else
            {
                Settle(pending);
                await RunConnectionAsync(new RtspConnection(this, channel, context, socket, _log));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ConnectionResetException or SocketException or ConnectionAbortedException) { }
        finally { Settle(pending); }
    }

    /// <summary>Looks at the first bytes without consuming them: RTSP methods never start like HTTP's GET or POST.</summary>
    static async Task<bool> StartsWithHttpAsync(ConnectionContext context)
    {
        var input = context.Transport.Input;
        while (true)
        {
            var r = await input.ReadAsync(context.ConnectionClosed);
            var b = r.Buffer;
            if (b.Length >= 5 || r.IsCompleted)
            {
                Span<byte> head = stackalloc byte[5];
                int n = (int)Math.Min(5, b.Length);
                b.Slice(0, n).CopyTo(head);
                input.AdvanceTo(b.Start);
                return head[..n].StartsWith("GET "u8) || head[..n].StartsWith("POST "u8);
            }
            input.AdvanceTo(b.Start, b.End);
        }
    }

    internal async Task RunConnectionAsync(RtspConnection conn)
    {
        lock (_connectionsLock) _connections = [.. _connections, conn];
        try { await conn.RunAsync(); }
        finally { lock (_connectionsLock) _connections = Array.FindAll(_connections, c => c != conn); }
    }

    int _inHeartbeat;

    void Heartbeat()
    {
        // One heartbeat at a time: under a flood a late one must not walk (and close, and log) the same connections again.
        if (Interlocked.Exchange(ref _inHeartbeat, 1) == 1) return;
        try
        {
            long now = _time.GetTimestamp();
            foreach (var c in Volatile.Read(ref _connections)) c.OnHeartbeat(now);
            var idle = Array.FindAll(Volatile.Read(ref _pending),
                p => _time.GetElapsedTime(Volatile.Read(ref p.LastActivity), now).TotalSeconds > p.LimitSeconds);
            if (idle.Length > 0)
            {
                var closing = new HashSet<Pending>(idle);
                lock (_connectionsLock) _pending = Array.FindAll(_pending, x => !closing.Contains(x));
                foreach (var p in idle) p.Connection.Abort(new ConnectionAbortedException("idle connection"));
                // A few are logged one by one; a flood of them as one line per channel.
                if (idle.Length <= 3)
                    foreach (var p in idle)
                        _log.LogInformation("rtsp.abort channel={Channel} remote={Remote} reason=\"idle connection\"", p.Channel, p.Connection.RemoteEndPoint);
                else
                    foreach (var g in idle.GroupBy(p => p.Channel))
                        _log.LogWarning("rtsp.idle_closed channel={Channel} count={Count} first_remote={Remote} reason=\"no request in time\"",
                            g.Key, g.Count(), g.First().Connection.RemoteEndPoint);
            }
            if (_time.GetElapsedTime(_lastStats, now).TotalSeconds >= Options.StatsIntervalSeconds) LogStats(now);
        }
        catch (Exception e) { _log.LogError("rtsp.heartbeat_failed error=\"{Error}\"", e.Message); }
        finally { Volatile.Write(ref _inHeartbeat, 0); }
    }

    static int ViewerCount(RtspChannel ch, RtspConnection[] connections)
    {
        int n = 0;
        foreach (var c in connections) if (c.Channel == ch && c.IsPlaying) n++;
        return n;
    }

    /// <summary>
    /// Ends at once every session of <paramref name="ch"/> that its new streaming switch or login no longer lets in
    /// (TCP, UDP and tunnelled alike); returns how many.
    /// </summary>
    public int Revoke(RtspChannel ch)
    {
        int n = 0;
        foreach (var c in Volatile.Read(ref _connections))
            if (c.Channel == ch && c.RevokedBecause() is { } why) { c.Abort(why); n++; }
        return n;
    }

    /// <summary>RTSP viewers playing on the channel now (TCP, UDP and tunnelled).</summary>
    public int ViewerCount(RtspChannel ch) => ViewerCount(ch, Volatile.Read(ref _connections));

    void LogStats(long now)
    {
        long allocated = GC.GetTotalAllocatedBytes(precise: true);
        long packets = 0;
        foreach (var ch in _channels) packets += ch.PacketsSent;
        long dPackets = packets - _lastPackets;
        double perPacket = dPackets > 0 ? (double)(allocated - _lastAllocated) / dPackets : 0;
        var connections = Volatile.Read(ref _connections);
        foreach (var ch in _channels)
        {
            int viewers = ViewerCount(ch, connections);
            long sent = ch.PacketsSent;
            if (viewers == 0 && sent == ch.PacketsAtLastStats) continue; // idle: nothing to say
            ch.PacketsAtLastStats = sent;
            var hist = ch.Latency;
            var keyHist = ch.KeyFrameLatency;
            ch.Latency = new LatencyHistogram();
            ch.KeyFrameLatency = new LatencyHistogram();
            long dropped = 0;
            foreach (var r in ch.Hub.Readers) dropped += r.DroppedFrames;
            _log.LogInformation(
                "rtsp.stats channel={Channel} port={Port} connections={Connections} viewers={Viewers} hub_readers={Readers} packets_sent={Packets} dropped_frames={Dropped} udp_datagrams_dropped={UdpDropped} latency_p50_us={P50} latency_p99_us={P99} keyframe_latency_p50_us={KP50} keyframe_latency_p99_us={KP99} alloc_bytes_per_packet={Alloc:F1}",
                ch.Hub.Index + 1, ch.Port, connections.Count(c => c.Channel == ch), viewers, ch.Hub.ReaderCount, sent, dropped, Interlocked.Read(ref ch.UdpDatagramsDropped),
                hist.Quantile(0.5), hist.Quantile(0.99), keyHist.Quantile(0.5), keyHist.Quantile(0.99), perPacket);
        }
        _lastStats = now;
        _lastAllocated = GC.GetTotalAllocatedBytes(precise: true); // the log lines above are not the streaming path's
        _lastPackets = packets;
    }

    public async ValueTask DisposeAsync()
    {
        await _heartbeat.DisposeAsync();
        foreach (var c in Volatile.Read(ref _connections)) c.Abort("server stopping");
        foreach (var ch in _channels) ch.ReleasePorts();
    }
}

/// <summary>
/// Packets and bytes sent, as one stripe of a channel's totals. The shared stripe takes Interlocked adds from anyone; a
/// TCP fan-out lane has a stripe of its own that only its thread writes (plain adds), so a lane's sends share no cache
/// line with the other cores'. Readers add the stripes up; a 64-bit read is whole on the boards and the host.
/// </summary>
internal sealed class SentTotals
{
    long _packets, _bytes;
#pragma warning disable CS0169 // padding: the next object's fields (another lane's stripe) stay off this cache line
    readonly long _pad0, _pad1, _pad2, _pad3, _pad4, _pad5;
#pragma warning restore CS0169

    public long Packets => Volatile.Read(ref _packets);
    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>From any thread.</summary>
    public void Add(long packets, long bytes)
    {
        Interlocked.Add(ref _packets, packets);
        Interlocked.Add(ref _bytes, bytes);
    }

    /// <summary>From the stripe's one writer.</summary>
    public void AddOwn(long packets, long bytes)
    {
        Volatile.Write(ref _packets, _packets + packets);
        Volatile.Write(ref _bytes, _bytes + bytes);
    }
}
