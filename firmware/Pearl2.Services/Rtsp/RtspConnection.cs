using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Rtp;
using Pearl2.Formats.Rtsp;
using Pearl2.Formats.Sdp;
using Pearl2.Media;

namespace Pearl2.Services.Rtsp;

/// <summary>
/// One RTSP control connection and (at most) one session on it. Requests are parsed from Kestrel's input
/// pipe; everything we send (responses, interleaved RTP, RTCP) goes straight to the socket, one write per
/// access unit, serialized by a send lock. Over TCP, the channel's <see cref="TcpFanOut"/> writes the units while
/// the viewer keeps up; the connection's own loop takes over for what the socket could not take at once, the
/// sender reports, and the GOP a new viewer starts with.
/// </summary>
public sealed class RtspConnection : IRtcpReceiver, TcpFanOut.IMember
{
    const string Public = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";
    static readonly TimeSpan SenderReportInterval = TimeSpan.FromSeconds(5);
    /// <summary>SETUPs one session may make: two tracks, with room for a player that changes its mind a few times.</summary>
    public const int MaxSetupsPerSession = 16;

    readonly RtspServer _server;
    readonly RtspChannel _channel;
    readonly ConnectionContext _context;
    readonly Socket _socket;
    readonly ILogger _log;
    readonly SemaphoreSlim _sendLock = new(1, 1);
    readonly PeerAddress _peer;
    readonly string _remote;
    /// <summary>This connection as the login sees it (a nonce answered here without qop opens only this connection).</summary>
    readonly long _connectionId = AuthPeer.NewConnection();
    bool _blocked;
    /// <summary>The login this connection last passed (null: none was asked), and whether by Basic: a changed login cuts it.</summary>
    ViewerCredentials? _admittedUnder;
    bool _admittedByBasic;
    readonly byte[] _rtcpBuffer = new byte[128];
    byte[] _rewriteBuffer = [];

    long _lastActivity;
    long _sendStartedAt; // 0 when no send is in flight
    string? _sessionId;
    int _setups;
    readonly TrackTransport?[] _tracks = new TrackTransport?[2];

    /// <summary>How one track reaches this viewer: interleaved on the RTSP connection, or UDP to its ports.</summary>
    sealed class TrackTransport
    {
        public byte Rtp, Rtcp;                 // interleaved channels (TCP)
        public UdpTrackPorts? Udp;             // server ports (UDP)
        public SocketAddress? RtpDestination, RtcpDestination;
        public bool IsUdp => Udp is not null;
    }
    HubReader? _reader;
    /// <summary>Our hold on the channel's RTP packaging while we play over TCP, and its slot in each unit.</summary>
    FormatLease? _rtp;
    int _slot;
    UdpFanOut.Viewer? _udpViewer;
    Task? _playLoop;
    /// <summary>The channel's TCP fan-out while we play over TCP, and whether it writes to us now (else our own loop does).</summary>
    TcpFanOut? _tcpFanOut;
    volatile bool _direct;
    readonly PulseSignal _ownLoopWake = new();
    /// <summary>
    /// A unit the fan-out handed back: not yet written (offset -1), or written up to the offset of these bytes; with no
    /// unit, a sender report the fan-out wrote up to the offset.
    /// </summary>
    MediaUnit? _pendingUnit;
    ReadOnlyMemory<byte> _pendingBytes;
    int _pendingOffset = -1;
    long _nextSenderReport;
    readonly uint[] _packetCount = new uint[2], _octetCount = new uint[2];
    readonly long[] _lastPts = new long[2];
    volatile bool _closing;

    readonly PipeReader? _input;

    internal RtspConnection(RtspServer server, RtspChannel channel, ConnectionContext context, Socket socket, ILogger log, PipeReader? input = null)
    {
        _input = input;
        _server = server; _channel = channel; _context = context; _socket = socket; _log = log;
        _peer = PeerAddress.Of(context.RemoteEndPoint);
        _remote = _peer.ToString();
        _lastActivity = server.Time.GetTimestamp();
    }

    public RtspChannel Channel => _channel;

    /// <summary>Playing over TCP (its own queue on the hub) or over UDP (a member of the channel's fan-out).</summary>
    public bool IsPlaying => _reader is not null || _udpViewer is not null;

    int ChannelNumber => _channel.Hub.Index + 1;

    public async Task RunAsync()
    {
        _log.LogInformation("rtsp.connect channel={Channel} remote={Remote}", ChannelNumber, _remote);
        var input = _input ?? _context.Transport.Input; // a tunnel's requests come decoded from its POSTs
        string reason = "client closed";
        try
        {
            while (!_closing)
            {
                var result = await input.ReadAsync(_context.ConnectionClosed);
                var buffer = result.Buffer;
                bool close = false;
                while (!buffer.IsEmpty && !close)
                {
                    if (buffer.FirstSpan[0] == (byte)'$')
                    {
                        // Interleaved data from the client: RTCP receiver reports. They prove the viewer is alive.
                        if (buffer.Length < InterleavedFrame.HeaderSize) break;
                        int len = InterleavedLength(buffer);
                        if (buffer.Length < InterleavedFrame.HeaderSize + len) break;
                        buffer = buffer.Slice(InterleavedFrame.HeaderSize + len);
                        Touch();
                        continue;
                    }
                    var status = RtspRequestParser.TryParse(buffer, out var request, out long consumed, out var error);
                    if (status == RtspParseStatus.Incomplete) break;
                    if (status == RtspParseStatus.TooLarge)
                    {
                        _log.LogWarning("rtsp.bad_request channel={Channel} remote={Remote} status=413 reason=\"{Reason}\"", ChannelNumber, _remote, error);
                        await SendResponseAsync(new RtspResponse(413));
                        reason = "request too large";
                        close = true;
                        break;
                    }
                    if (status == RtspParseStatus.Malformed)
                    {
                        _log.LogWarning("rtsp.bad_request channel={Channel} remote={Remote} status=400 reason=\"{Reason}\"", ChannelNumber, _remote, error);
                        await SendResponseAsync(new RtspResponse(400));
                        buffer = buffer.Slice(consumed);
                        continue;
                    }
                    buffer = buffer.Slice(consumed);
                    Touch();
                    var response = await HandleAsync(request!);
                    await SendResponseAsync(response);
                    if (response.StatusCode == 403) { reason = "streaming disabled for external viewers"; close = true; }
                    if (_blocked) { reason = "too many failed logins"; close = true; }
                    if (request!.Method == "PLAY" && response.StatusCode == 200) StartPlaying();
                }
                input.AdvanceTo(buffer.Start, buffer.End);
                if (close || result.IsCompleted) break;
            }
        }
        catch (OperationCanceledException) { reason = _closing ? "closed by server" : "connection aborted"; }
        catch (ConnectionResetException) { reason = "connection reset"; }
        catch (IOException) { reason = "connection reset"; }
        catch (SocketException) { reason = "connection reset"; }
        catch (Exception e)
        {
            // A bug of ours must cost this one connection, never the server or the other viewers.
            reason = "internal error";
            _log.LogError("rtsp.internal_error channel={Channel} remote={Remote} error=\"{Error}\" type={Type}", ChannelNumber, _remote, e.Message, e.GetType().Name);
        }
        finally
        {
            await StopPlayingAsync();
            ReleaseTracks();
            _log.LogInformation("rtsp.disconnect channel={Channel} remote={Remote} session={Session} reason=\"{Reason}\"", ChannelNumber, _remote, _sessionId ?? "-", reason);
            input.Complete();
        }
    }

    static int InterleavedLength(ReadOnlySequence<byte> buffer)
    {
        Span<byte> head = stackalloc byte[InterleavedFrame.HeaderSize];
        buffer.Slice(0, InterleavedFrame.HeaderSize).CopyTo(head);
        InterleavedFrame.TryReadHeader(head, out _, out int len);
        return len;
    }

    void Touch() => Volatile.Write(ref _lastActivity, _server.Time.GetTimestamp());

    internal void OnHeartbeat(long now)
    {
        var o = _server.Options;
        long sendStarted = Volatile.Read(ref _sendStartedAt);
        if (sendStarted != 0 && _server.Time.GetElapsedTime(sendStarted, now).TotalSeconds > o.StallTimeoutSeconds)
        {
            Abort("viewer stopped reading");
            return;
        }
        // A TCP viewer that is playing proves itself by taking what we send; a UDP one by RTCP or RTSP keep-alives.
        bool playingOverTcp = _reader is not null && !(_tracks[0]?.IsUdp ?? false) && !(_tracks[1]?.IsUdp ?? false);
        if (!playingOverTcp && _server.Time.GetElapsedTime(Volatile.Read(ref _lastActivity), now).TotalSeconds > o.SessionTimeoutSeconds)
            Abort(_sessionId is null ? "idle connection" : "session timeout");
    }

    /// <summary>After the channel's streaming switch or login changed: why this session must end now, or null.</summary>
    internal string? RevokedBecause() => _sessionId is null ? null
        : ViewerAuth.Revoked(_channel.StreamingEnabled, _channel.Credentials, _peer, _admittedUnder, _admittedByBasic);

    public void Abort(string reason)
    {
        if (_closing) return;
        _closing = true;
        _log.LogInformation("rtsp.abort channel={Channel} remote={Remote} reason=\"{Reason}\"", ChannelNumber, _remote, reason);
        _reader?.Dispose();
        if (_udpViewer is { } viewer) _channel.FanOut?.Leave(viewer);
        _context.Abort(new ConnectionAbortedException(reason));
    }

    async Task<RtspResponse> HandleAsync(RtspRequest req)
    {
        var response = await DecideAsync(req);
        if (response.StatusCode == 401 && req["Authorization"] is null)
            // The challenge before a player's first login is the normal start of a session, not a fault.
            _log.LogDebug("rtsp.challenge channel={Channel} remote={Remote} method={Method} uri={Uri} status=401", ChannelNumber, _remote, req.Method, req.Uri);
        else if (response.StatusCode >= 400)
            _log.LogWarning("rtsp.request_refused channel={Channel} remote={Remote} method={Method} uri={Uri} status={Status}", ChannelNumber, _remote, req.Method, req.Uri, response.StatusCode);
        else
            _log.LogDebug("rtsp.request channel={Channel} remote={Remote} method={Method} uri={Uri} status={Status}", ChannelNumber, _remote, req.Method, req.Uri, response.StatusCode);
        return response;
    }

    async Task<RtspResponse> DecideAsync(RtspRequest req)
    {
        if (req.CSeq < 0) return new RtspResponse(400) { };
        if (req.Version != "RTSP/1.0") return new RtspResponse(505) { CSeq = req.CSeq };
        if (!_channel.StreamingEnabled && !_peer.IsLoopback) return new RtspResponse(403) { CSeq = req.CSeq };
        if (_channel.Credentials is { } creds && req.Method != "OPTIONS")
        {
            var outcome = _server.Auth.Check(req, creds, new AuthPeer(_connectionId, _peer.Address), out var user, out var why);
            if (outcome == AuthOutcome.Throttled)
            {
                // Blocked for failed logins (logged once by the throttle): the answer says when to come back, and the connection ends.
                _blocked = true;
                return new RtspResponse(503) { CSeq = req.CSeq }.Add("Retry-After", _server.Auth.Throttle.RetryAfterSeconds(_peer.Address).ToString(CultureInfo.InvariantCulture));
            }
            if (outcome != AuthOutcome.Accepted)
            {
                if (outcome == AuthOutcome.Refused)
                {
                    _log.LogWarning("rtsp.auth_failed channel={Channel} remote={Remote} method={Method} user=\"{User}\" reason=\"{Reason}\"", ChannelNumber, _remote, req.Method, user ?? "", why);
                    // Each guess past the first few waits longer (this connection only; the others carry on).
                    if (_server.Auth.Throttle.DelayFor(_peer.Address) is { } delay && delay > TimeSpan.Zero) await Task.Delay(delay, _server.Time);
                }
                else if (outcome == AuthOutcome.Stale)
                    _log.LogDebug("rtsp.auth_stale channel={Channel} remote={Remote} method={Method} reason=\"{Reason}\"", ChannelNumber, _remote, req.Method, why);
                return _server.Auth.Challenge(req.CSeq, creds, outcome == AuthOutcome.Stale);
            }
            _admittedUnder = creds;
            _admittedByBasic = ViewerAuth.IsBasic(req);
        }

        var response = req.Method switch
        {
            "OPTIONS" => new RtspResponse(200) { CSeq = req.CSeq }.Add("Public", Public),
            "DESCRIBE" => await DescribeAsync(req),
            "SETUP" => Setup(req),
            "PLAY" => Play(req),
            "PAUSE" => await PauseAsync(req),
            "TEARDOWN" => await TeardownAsync(req),
            "GET_PARAMETER" or "SET_PARAMETER" => CheckSession(req) ?? new RtspResponse(200) { CSeq = req.CSeq },
            _ => new RtspResponse(405) { CSeq = req.CSeq }.Add("Allow", Public),
        };
        return response;
    }

    static bool IsStreamPath(string path) => path is "/" or "/stream.sdp" or "/stream.sdp/";

    /// <summary>"/stream.sdp/trackID=N" (or "/trackID=N") → N; -1 when the path names no track of ours.</summary>
    static int TrackOf(string path)
    {
        int i = path.LastIndexOf("trackID=", StringComparison.Ordinal);
        if (i < 0) return -1;
        var prefix = path[..i];
        if (prefix is not ("/" or "/stream.sdp/")) return -1;
        return int.TryParse(path.AsSpan(i + 8), NumberStyles.None, CultureInfo.InvariantCulture, out int t) && t is 0 or 1 ? t : -1;
    }

    async Task<RtspResponse> DescribeAsync(RtspRequest req)
    {
        if (!IsStreamPath(req.Path)) return new RtspResponse(404) { CSeq = req.CSeq };
        var ready = _channel.Hub.Ready;
        if (await Task.WhenAny(ready, Task.Delay(TimeSpan.FromSeconds(5), _server.Time)) != ready)
            return new RtspResponse(503) { CSeq = req.CSeq }.Add("Retry-After", "1");
        var info = ready.Result;
        var media = new List<SdpMedia> { SessionDescription.H264(RtpPackager.VideoPayloadType, info.Sps, info.Pps, "trackID=0") };
        if (info.HasAudio)
            media.Add(SessionDescription.Aac(RtpPackager.AudioPayloadType, info.AudioSampleRate, info.AudioChannels, info.AudioSpecificConfig, "trackID=1"));
        var local = PeerAddress.Of(_context.LocalEndPoint).Address ?? IPAddress.Any;
        var sdp = SessionDescription.Write((ulong)info.WallClockAtPtsZero.ToUnixTimeSeconds(), local.ToString(), _channel.Hub.Name, media);
        var baseUri = req.Uri.EndsWith('/') ? req.Uri : req.Uri + "/";
        return new RtspResponse(200) { CSeq = req.CSeq }.Add("Content-Base", baseUri).WithBody("application/sdp", sdp);
    }

    RtspResponse? CheckSession(RtspRequest req)
    {
        var h = req["Session"];
        if (h is null) return null;
        if (!SessionHeader.TryParse(h, out var s) || s.Id != _sessionId) return new RtspResponse(454) { CSeq = req.CSeq };
        return null;
    }

    RtspResponse Setup(RtspRequest req)
    {
        int track = TrackOf(req.Path);
        if (track < 0 && IsStreamPath(req.Path)) track = 0; // a client that SETUPs the aggregate URL gets the video
        if (track < 0) return new RtspResponse(404) { CSeq = req.CSeq };
        if (track == 1 && _channel.Hub.Info is { HasAudio: false }) return new RtspResponse(404) { CSeq = req.CSeq };
        var sessionHeader = req["Session"];
        if (sessionHeader is not null && (!SessionHeader.TryParse(sessionHeader, out var sh) || sh.Id != _sessionId))
            return new RtspResponse(454) { CSeq = req.CSeq };
        if (IsPlaying) return new RtspResponse(455) { CSeq = req.CSeq }.Add("Allow", "PLAY, PAUSE, TEARDOWN, GET_PARAMETER");
        if (_setups >= MaxSetupsPerSession)
        {
            if (_setups++ == MaxSetupsPerSession)
                _log.LogWarning("rtsp.setup_limit channel={Channel} remote={Remote} session={Session} limit={Limit}", ChannelNumber, _remote, _sessionId, MaxSetupsPerSession);
            return new RtspResponse(455) { CSeq = req.CSeq }.Add("Allow", "PLAY, PAUSE, TEARDOWN, GET_PARAMETER");
        }
        var transport = req["Transport"];
        if (transport is null || !TransportHeader.TryParse(transport, out var specs, out _))
            return new RtspResponse(461) { CSeq = req.CSeq };
        // The first transport of the client's list that we serve: interleaved TCP, or unicast UDP to its own address.
        var udpPorts = _channel.Udp[track];
        var spec = specs.FirstOrDefault(s => s.Profile == "RTP/AVP" && !s.Multicast &&
            (s.Lower == RtpLowerTransport.Tcp || (s.ClientPort is not null && udpPorts is not null && _context.RemoteEndPoint is IPEndPoint)));
        if (spec is null) return new RtspResponse(461) { CSeq = req.CSeq };

        _setups++;
        TransportSpec reply;
        var ssrc = track == 0 ? _channel.Packager.VideoSsrc : _channel.Packager.AudioSsrc;
        if (spec.Lower == RtpLowerTransport.Tcp)
        {
            var interleaved = spec.Interleaved ?? (track * 2, track * 2 + 1);
            for (int t = 0; t < _tracks.Length; t++)
                if (t != track && _tracks[t] is { IsUdp: false } other && (other.Rtp == interleaved.First || other.Rtcp == interleaved.First || other.Rtp == interleaved.Second))
                    return new RtspResponse(461) { CSeq = req.CSeq };
            ReleaseTrack(track);
            _tracks[track] = new TrackTransport { Rtp = (byte)interleaved.First, Rtcp = (byte)interleaved.Second };
            reply = spec with { Interleaved = interleaved, ClientPort = null, ServerPort = null, Mode = null, Ssrc = ssrc };
        }
        else
        {
            // Datagrams go only to the peer that set the session up, whatever "destination" it names.
            var peer = ((IPEndPoint)_context.RemoteEndPoint!).Address;
            var (rtpPort, rtcpPort) = spec.ClientPort!.Value;
            ReleaseTrack(track);
            _tracks[track] = new TrackTransport
            {
                Udp = udpPorts,
                RtpDestination = UdpTrackPorts.Destination(peer, rtpPort),
                RtcpDestination = UdpTrackPorts.Destination(peer, rtcpPort),
            };
            udpPorts!.Register(_tracks[track]!.RtcpDestination!, this);
            reply = new TransportSpec { Lower = RtpLowerTransport.Udp, ClientPort = (rtpPort, rtcpPort), ServerPort = (udpPorts.RtpPort, udpPorts.RtcpPort), Ssrc = ssrc };
        }
        _sessionId ??= Convert.ToHexString(BitConverter.GetBytes(Random.Shared.NextInt64())).ToLowerInvariant();
        _log.LogInformation("rtsp.setup channel={Channel} remote={Remote} session={Session} track={Track} transport=\"{Transport}\"", ChannelNumber, _remote, _sessionId, track, reply.ToString());
        return new RtspResponse(200) { CSeq = req.CSeq }
            .Add("Transport", reply.ToString())
            .Add("Session", new SessionHeader(_sessionId, _server.Options.SessionTimeoutSeconds).ToString());
    }

    RtspResponse Play(RtspRequest req)
    {
        if (req["Session"] is null || CheckSession(req) is { } bad) return new RtspResponse(454) { CSeq = req.CSeq };
        if (_tracks[0] is null && _tracks[1] is null) return new RtspResponse(455) { CSeq = req.CSeq };
        if (req["Range"] is { } range && !RangeHeader.TryParse(range, out _)) return new RtspResponse(457) { CSeq = req.CSeq }; // a live stream plays from now whatever the range
        var response = new RtspResponse(200) { CSeq = req.CSeq }.Add("Session", _sessionId!).Add("Range", "npt=now-");
        if (_reader is not null || _udpViewer is not null) return response; // already playing: a repeated PLAY is a keep-alive

        var baseUrl = req.Uri.TrimEnd('/');
        if (_channel.FanOut is { } fanOut && _tracks.All(t => t is null || t.IsUdp))
        {
            // UDP only: join the channel's shared UDP loop instead of a queue of our own.
            var viewer = new UdpFanOut.Viewer(this);
            for (int t = 0; t < 2; t++)
                if (_tracks[t] is { } tr) viewer.SetTrack(t, tr.RtpDestination!, tr.RtcpDestination!);
            var firsts = fanOut.Join(viewer);
            _udpViewer = viewer;
            if (firsts.Count > 0)
                response.Add("RTP-Info", string.Join(",", firsts.Select(f => $"url={baseUrl}/trackID={f.Track};seq={f.Seq};rtptime={f.RtpTime}")));
            _log.LogInformation("rtsp.play channel={Channel} remote={Remote} session={Session} transport=udp", ChannelNumber, _remote, _sessionId);
            return response;
        }

        _rtp = _channel.AcquireRtp();
        _slot = _rtp.Slot;
        _reader = _channel.Hub.Subscribe($"rtsp {_remote}", _server.Options.ViewerQueueUnits);
        var info = new List<string>(2);
        var baseUri = baseUrl;
        for (int t = 0; t < 2; t++)
        {
            if (_tracks[t] is null) continue;
            var first = _reader.PeekFirst((TrackKind)t);
            if (first is null) continue;
            long tag = first.SlotTag(_slot);
            info.Add($"url={baseUri}/trackID={t};seq={RtpPackager.TagSequence(tag)};rtptime={RtpPackager.TagTimestamp(tag)}");
        }
        if (info.Count > 0) response.Add("RTP-Info", string.Join(",", info));
        _log.LogInformation("rtsp.play channel={Channel} remote={Remote} session={Session} queued={Queued}", ChannelNumber, _remote, _sessionId, _reader.Queued);
        return response;
    }

    void StartPlaying()
    {
        if (_playLoop is not null || _reader is null) return;
        // Room for a few key frames in the kernel, so a write completes at once instead of waiting for the
        // viewer to read; this is also the bound on what a stalled viewer can hold in the kernel.
        try { _socket.SendBufferSize = _server.Options.SocketSendBufferBytes; } catch (SocketException) { }
        _nextSenderReport = _server.Time.GetTimestamp();
        if (_channel.TcpFanOut is { } fanOut && _tracks.All(t => t is null || !t.IsUdp))
        {
            // Our own loop sends the GOP this viewer starts with, then hands it to the fan-out.
            _tcpFanOut = fanOut;
            fanOut.Join(this);
        }
        _playLoop = PlayLoopAsync(_reader);
    }

    void ReleaseTracks()
    {
        for (int t = 0; t < _tracks.Length; t++) ReleaseTrack(t);
    }

    /// <summary>Forgets how a track reached this viewer (a new SETUP of the track replaces it).</summary>
    void ReleaseTrack(int t)
    {
        if (_tracks[t] is { Udp: { } ports, RtcpDestination: { } rtcp }) ports.Unregister(rtcp, this);
        _tracks[t] = null;
    }

    /// <summary>A receiver report from this viewer's RTCP address, or a command through its tunnel: it is still there.</summary>
    public void OnReceiverReport() => Touch();

    async Task StopPlayingAsync()
    {
        if (_udpViewer is { } viewer)
        {
            _channel.FanOut?.Leave(viewer);
            _udpViewer = null;
        }
        var reader = _reader;
        _reader = null;
        reader?.Dispose();
        if (_tcpFanOut is { } fanOut)
        {
            fanOut.Leave(this);
            _tcpFanOut = null;
            // A lane may be writing to us right now: it holds the send lock; after it, none writes again.
            await _sendLock.WaitAsync();
            _direct = false;
            _sendLock.Release();
        }
        _ownLoopWake.Set();
        var loop = _playLoop;
        _playLoop = null;
        if (loop is not null) await loop;
        if (_pendingUnit is { } pending) { _pendingUnit = null; pending.Release(); }
        _rtp?.Dispose();   // after the last read of its slot
        _rtp = null;
    }

    async Task<RtspResponse> PauseAsync(RtspRequest req)
    {
        if (req["Session"] is null || CheckSession(req) is not null) return new RtspResponse(454) { CSeq = req.CSeq };
        await StopPlayingAsync();
        return new RtspResponse(200) { CSeq = req.CSeq }.Add("Session", _sessionId!);
    }

    async Task<RtspResponse> TeardownAsync(RtspRequest req)
    {
        if (req["Session"] is null || CheckSession(req) is not null) return new RtspResponse(454) { CSeq = req.CSeq };
        await StopPlayingAsync();
        var id = _sessionId!;
        _log.LogInformation("rtsp.teardown channel={Channel} remote={Remote} session={Session}", ChannelNumber, _remote, id);
        _sessionId = null;
        _setups = 0;
        ReleaseTracks();
        return new RtspResponse(200) { CSeq = req.CSeq }.Add("Session", id);
    }

    /// <summary>
    /// Drains the viewer's queue onto the socket: one write per access unit, RTCP SR every 5 s. With the TCP fan-out it
    /// runs only while the fan-out cannot write to this viewer at once: it finishes what was handed back, drains the
    /// queue, sends the sender reports that are due, and hands the viewer back.
    /// </summary>
    async Task PlayLoopAsync(HubReader reader)
    {
        await Task.Yield();
        var time = _server.Time;
        try
        {
            while (!reader.IsDisposed)
            {
                if (_direct)
                {
                    if (!await _ownLoopWake.WaitAsync()) break;
                    continue;
                }
                if (_pendingUnit is { } pending)
                {
                    _pendingUnit = null;
                    int offset = _pendingOffset;
                    _pendingOffset = -1;
                    try
                    {
                        if (offset >= 0) await SendAsync(_pendingBytes[offset..]);
                        else await WriteUnitAsync(pending);
                    }
                    finally { pending.Release(); }
                }
                else if (_pendingOffset >= 0)
                {
                    // The rest of a sender report the fan-out could not write whole.
                    var rest = _pendingBytes[_pendingOffset..];
                    _pendingOffset = -1;
                    await SendAsync(rest);
                }
                while (reader.TryRead(out var unit))
                {
                    try { await WriteUnitAsync(unit); }
                    finally { unit.Release(); }
                }
                if (_tcpFanOut is not null)
                {
                    long now = time.GetTimestamp();
                    if (now >= _nextSenderReport)
                    {
                        await SendSenderReportsAsync();
                        _nextSenderReport = now + (long)(SenderReportInterval.TotalSeconds * time.TimestampFrequency);
                    }
                    // Caught up: the fan-out writes from here on (and at once, should a unit have come meanwhile).
                    _direct = true;
                    ((TcpFanOut.IMember)this).Pump(null);
                    continue;
                }
                await reader.WaitAsync();
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException or OperationCanceledException)
        {
            Abort("send failed: " + e.Message);
        }
    }

    /// <summary>One unit to this viewer, the sender reports first when they are due.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    async ValueTask WriteUnitAsync(MediaUnit unit)
    {
        var time = _server.Time;
        int t = (int)unit.Track;
        if (_tracks[t] is not { } ch) return;
        var bytes = unit.Slot(_slot);
        long tag = unit.SlotTag(_slot);
        if (_packetCount[t] == 0)
        {
            // A sender report before a track's first packet lets the player place both tracks on one clock from the start.
            _lastPts[t] = unit.Pts;
            await SendSenderReportAsync(t);
        }
        int packets = RtpPackager.TagPackets(tag);
        if (ch.IsUdp)
        {
            int sent = UdpBatchSender.Send(ch.Udp!.Rtp, ch.RtpDestination!, bytes.Span, out _);
            if (sent < packets) Interlocked.Add(ref _channel.UdpDatagramsDropped, packets - sent);
        }
        else
        {
            byte expected = t == 0 ? RtpPackager.VideoInterleaved : RtpPackager.AudioInterleaved;
            if (ch.Rtp != expected) bytes = Renumber(bytes, ch.Rtp);
            await SendAsync(bytes);
        }
        Account(t, unit, bytes, packets, ch.IsUdp);
        long now = time.GetTimestamp();
        _channel.RecordLatency(unit, now, time);
        if (now >= _nextSenderReport)
        {
            await SendSenderReportsAsync();
            _nextSenderReport = now + (long)(SenderReportInterval.TotalSeconds * time.TimestampFrequency);
        }
    }

    /// <summary>The track's sender-report counts, and the channel's totals (<paramref name="lane"/>: the fan-out lane's own stripe).</summary>
    void Account(int t, MediaUnit unit, ReadOnlyMemory<byte> bytes, int packets, bool udp, SentTotals? lane = null)
    {
        _packetCount[t] += (uint)packets;
        _octetCount[t] += (uint)(bytes.Length - packets * (RtpHeader.Size + InterleavedFrame.HeaderSize));
        _lastPts[t] = unit.Pts;
        long sent = udp ? bytes.Length - packets * InterleavedFrame.HeaderSize : bytes.Length;
        if (lane is not null) lane.AddOwn(packets, sent);
        else _channel.Sent.Add(packets, sent);
    }

    /// <summary>
    /// The fan-out's write (on one of its lanes): the sender reports when due, then every queued unit, straight to the
    /// socket without waiting. Whatever cannot go at once (a full socket buffer, a track's first unit) goes back to our
    /// own loop.
    /// </summary>
    void TcpFanOut.IMember.Pump(SentTotals? lane)
    {
        if (!_direct || !_sendLock.Wait(0)) return;
        try
        {
            if (!_direct || _reader is not { } reader) return;
            var time = _server.Time;
            long now = time.GetTimestamp();
            if (now >= _nextSenderReport)
            {
                for (int t = 0; t < 2; t++)
                {
                    if (_packetCount[t] == 0 || _tracks[t] is not { } track
                        || _channel.SenderReport((TrackKind)t, _lastPts[t], _packetCount[t], _octetCount[t]) is not { } sr) continue;
                    int length = InterleavedFrame.HeaderSize + sr.WriteTo(_rtcpBuffer.AsSpan(InterleavedFrame.HeaderSize));
                    InterleavedFrame.WriteHeader(_rtcpBuffer, track.Rtcp, length - InterleavedFrame.HeaderSize);
                    int sent = NonBlockingSend.Send(_socket, _rtcpBuffer.AsSpan(0, length));
                    // Not taken at once: our own loop sends the reports (again, which does no harm) as the viewer reads.
                    if (sent <= 0) { HandBack(); return; }
                    if (sent < length) { HandBack(null, _rtcpBuffer.AsMemory(0, length), sent); return; }
                }
                _nextSenderReport = now + (long)(SenderReportInterval.TotalSeconds * time.TimestampFrequency);
            }
            while (reader.TryRead(out var unit))
            {
                int t = (int)unit.Track;
                if (_tracks[t] is not { } ch) { unit.Release(); continue; }
                if (_packetCount[t] == 0) { HandBack(unit, default, -1); return; }
                var bytes = unit.Slot(_slot);
                byte expected = t == 0 ? RtpPackager.VideoInterleaved : RtpPackager.AudioInterleaved;
                if (ch.Rtp != expected) bytes = Renumber(bytes, ch.Rtp);
                int n = NonBlockingSend.Send(_socket, bytes.Span);
                if (n < 0) { HandBack(unit, default, -1); return; }   // our own loop's write fails and says why
                Account(t, unit, bytes, RtpPackager.TagPackets(unit.SlotTag(_slot)), udp: false, lane);
                _channel.RecordLatency(unit, time.GetTimestamp(), time);
                if (n < bytes.Length) { HandBack(unit, bytes, n); return; }
                unit.Release();
            }
        }
        finally { _sendLock.Release(); }
    }

    /// <summary>Under the send lock: our own loop takes over (with the unit the fan-out could not finish, if any).</summary>
    void HandBack(MediaUnit? unit = null, ReadOnlyMemory<byte> bytes = default, int offset = -1)
    {
        _pendingUnit = unit;
        _pendingBytes = bytes;
        _pendingOffset = offset;
        _direct = false;
        _ownLoopWake.Set();
    }

    /// <summary>Rare path: a client chose other interleaved channels than ours, so the bytes get its numbers in a private copy.</summary>
    ReadOnlyMemory<byte> Renumber(ReadOnlyMemory<byte> shared, byte channel)
    {
        if (_rewriteBuffer.Length < shared.Length) _rewriteBuffer = new byte[Math.Max(shared.Length, _rewriteBuffer.Length * 2)];
        shared.Span.CopyTo(_rewriteBuffer);
        int at = 0;
        while (at + InterleavedFrame.HeaderSize <= shared.Length)
        {
            _rewriteBuffer[at + 1] = channel;
            at += InterleavedFrame.HeaderSize + ((_rewriteBuffer[at + 2] << 8) | _rewriteBuffer[at + 3]);
        }
        return _rewriteBuffer.AsMemory(0, shared.Length);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    async ValueTask SendSenderReportsAsync()
    {
        for (int t = 0; t < 2; t++)
            if (_packetCount[t] > 0) await SendSenderReportAsync(t);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    async ValueTask SendSenderReportAsync(int t)
    {
        if (_tracks[t] is not { } ch || _channel.SenderReport((TrackKind)t, _lastPts[t], _packetCount[t], _octetCount[t]) is not { } sr) return;
        int n = sr.WriteTo(_rtcpBuffer.AsSpan(InterleavedFrame.HeaderSize));
        if (ch.IsUdp)
        {
            try { ch.Udp!.Rtcp.SendTo(_rtcpBuffer.AsSpan(InterleavedFrame.HeaderSize, n), SocketFlags.None, ch.RtcpDestination!); }
            catch (SocketException) { } // a lost sender report is not worth a viewer
            return;
        }
        InterleavedFrame.WriteHeader(_rtcpBuffer, ch.Rtcp, n);
        await SendAsync(_rtcpBuffer.AsMemory(0, InterleavedFrame.HeaderSize + n));
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    async ValueTask SendAsync(ReadOnlyMemory<byte> bytes)
    {
        await _sendLock.WaitAsync();
        try
        {
            Volatile.Write(ref _sendStartedAt, _server.Time.GetTimestamp());
            await SocketSend.AllAsync(_socket, bytes);
        }
        finally
        {
            Volatile.Write(ref _sendStartedAt, 0);
            _sendLock.Release();
        }
    }

    async ValueTask SendResponseAsync(RtspResponse response)
    {
        try { await SendAsync(response.ToArray()); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException) { }
    }
}
