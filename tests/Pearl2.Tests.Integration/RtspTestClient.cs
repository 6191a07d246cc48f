using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Pearl2.Tests.Integration;

/// <summary>
/// A minimal, light RTSP/TCP viewer for tests and the load benchmark: DESCRIBE, SETUP both tracks, PLAY,
/// then counts what arrives — video frames (marker bits), sequence gaps — without allocating per packet.
/// It checks what the wire carried; decoding is left to the real players.
/// </summary>
public sealed class RtspTestClient : IAsyncDisposable
{
    readonly TcpClient _tcp;

    RtspTestClient(System.Net.IPAddress? local = null) => _tcp = local is null ? new TcpClient() : new TcpClient(new System.Net.IPEndPoint(local, 0));
    NetworkStream _stream = null!;
    readonly byte[] _buf = new byte[256 * 1024];
    int _start, _end, _cseq;
    string? _session;

    public long VideoFrames, VideoPackets, AudioPackets, SequenceGaps, Bytes; // read by other threads with Interlocked.Read
    public int? FirstVideoSequence;
    ushort _lastVideoSeq, _lastAudioSeq;
    bool _haveVideo, _haveAudio;
    public string? LastPlayResponse;
    public long FirstFrameTicks;
    /// <summary>RTCP sender reports received per track (interleaved channel 1: video, 3: audio), and the problems seen in them.</summary>
    public readonly int[] SenderReports = new int[2];
    public readonly List<string> SenderReportProblems = new();
    readonly uint[] _lastReportedPackets = new uint[2];

    /// <param name="local">The address to connect from (another loopback address is another host to the device).</param>
    public static async Task<RtspTestClient> ConnectAsync(string host, int port, System.Net.IPAddress? local = null)
    {
        var c = new RtspTestClient(local);
        await c._tcp.ConnectAsync(host, port);
        c._tcp.NoDelay = true;
        c._stream = c._tcp.GetStream();
        return c;
    }

    public async Task<string> RequestAsync(string method, string url, params string[] headers)
    {
        var sb = new StringBuilder();
        sb.Append(method).Append(' ').Append(url).Append(" RTSP/1.0\r\nCSeq: ").Append(++_cseq).Append("\r\n");
        if (_session is not null) sb.Append("Session: ").Append(_session).Append("\r\n");
        foreach (var h in headers) sb.Append(h).Append("\r\n");
        sb.Append("\r\n");
        await SendRawAsync(Encoding.ASCII.GetBytes(sb.ToString()));
        return await ReadResponseAsync();
    }

    public Task SendRawAsync(byte[] bytes) => _stream.WriteAsync(bytes).AsTask();

    /// <summary>Reads until one whole RTSP response (headers and body) is buffered, skipping interleaved frames.</summary>
    public async Task<string> ReadResponseAsync(CancellationToken ct = default)
    {
        while (true)
        {
            while (_end - _start >= 4 && _buf[_start] == (byte)'$')
            {
                int len = _buf[_start + 2] << 8 | _buf[_start + 3];
                if (_end - _start < 4 + len) break;
                Count(_buf.AsSpan(_start + 4, len), _buf[_start + 1]);
                _start += 4 + len;
            }
            if (_end - _start > 0 && _buf[_start] != (byte)'$')
            {
                var span = _buf.AsSpan(_start, _end - _start);
                int head = span.IndexOf("\r\n\r\n"u8);
                if (head >= 0)
                {
                    var text = Encoding.ASCII.GetString(span[..(head + 4)]);
                    int body = 0;
                    foreach (var line in text.Split("\r\n"))
                        if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase)) body = int.Parse(line[15..].Trim());
                    if (span.Length >= head + 4 + body)
                    {
                        var all = Encoding.UTF8.GetString(span[..(head + 4 + body)]);
                        _start += head + 4 + body;
                        return all;
                    }
                }
            }
            if (!await FillAsync(ct)) throw new IOException("connection closed by server");
        }
    }

    async Task<bool> FillAsync(CancellationToken ct)
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buf, _start, _buf, 0, _end - _start);
            _end -= _start; _start = 0;
        }
        if (_end == _buf.Length) throw new InvalidOperationException("frame larger than client buffer");
        int n = await _stream.ReadAsync(_buf.AsMemory(_end), ct);
        if (n == 0) return false;
        _end += n;
        Bytes += n;
        return true;
    }

    public static int Status(string response) => int.Parse(response.AsSpan(9, 3));

    public static string? Header(string response, string name)
    {
        foreach (var line in response.Split("\r\n"))
            if (line.StartsWith(name + ":", StringComparison.OrdinalIgnoreCase)) return line[(name.Length + 1)..].Trim();
        return null;
    }

    /// <summary>DESCRIBE, SETUP video (and audio when offered) over TCP with the SDP's control URLs, PLAY.</summary>
    System.Net.Sockets.Socket? _udpRtp, _udpRtcp;

    /// <summary>The server's RTCP port for the video track when it plays over UDP.</summary>
    public int? ServerRtcpPort { get; private set; }

    /// <summary>Sends an empty RTCP receiver report (RFC 3550 6.4.2) from this viewer's RTCP port to the server's.</summary>
    public async Task SendReceiverReportAsync(string host = "127.0.0.1")
    {
        byte[] rr = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78]; // V=2, RC=0, PT=RR, length 1 word, our SSRC
        await _udpRtcp!.SendToAsync(rr, System.Net.Sockets.SocketFlags.None, new System.Net.IPEndPoint(System.Net.IPAddress.Parse(host), ServerRtcpPort!.Value));
    }

    /// <summary>The viewer's RTP port when it plays over UDP.</summary>
    public int? UdpPort => (_udpRtp?.LocalEndPoint as System.Net.IPEndPoint)?.Port;

    static (System.Net.Sockets.Socket Rtp, System.Net.Sockets.Socket Rtcp) BindUdpPair()
    {
        for (int attempt = 0; attempt < 100; attempt++)
        {
            int port = Random.Shared.Next(20000, 32000) * 2;
            var rtp = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            var rtcp = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            try
            {
                rtp.ReceiveBufferSize = 1 << 20;
                rtp.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port));
                rtcp.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port + 1));
                return (rtp, rtcp);
            }
            catch (System.Net.Sockets.SocketException) { rtp.Dispose(); rtcp.Dispose(); }
        }
        throw new InvalidOperationException("no free UDP port pair");
    }

    /// <summary>As <see cref="PlayAsync(string)"/> with the video over UDP to a port pair of this client (audio is not set up).</summary>
    public async Task PlayUdpAsync(string url)
    {
        (_udpRtp, _udpRtcp) = BindUdpPair();
        int port = UdpPort!.Value;
        await PlayAsync(url, $"Transport: RTP/AVP;unicast;client_port={port}-{port + 1}", audio: false);
    }

    public Task PlayAsync(string url) => PlayAsync(url, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1", audio: true);

    async Task PlayAsync(string url, string videoTransport, bool audio)
    {
        var describe = await RequestAsync("DESCRIBE", url, "Accept: application/sdp");
        if (Status(describe) != 200) throw new InvalidOperationException("DESCRIBE failed: " + describe);
        var baseUrl = Header(describe, "Content-Base") ?? url;
        var controls = new Dictionary<string, string>();
        string? media = null;
        foreach (var line in describe[(describe.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..].Split("\r\n"))
        {
            if (line.StartsWith("m=")) media = line[2..line.IndexOf(' ')];
            else if (line.StartsWith("a=control:") && media is not null) controls[media] = line[10..];
        }
        string Control(string c) => c.StartsWith("rtsp://") ? c : baseUrl.TrimEnd('/') + "/" + c;
        var video = await RequestAsync("SETUP", Control(controls["video"]), videoTransport);
        if (Status(video) != 200) throw new InvalidOperationException("SETUP failed: " + video);
        _session = Header(video, "Session")!.Split(';')[0];
        var serverPort = System.Text.RegularExpressions.Regex.Match(Header(video, "Transport") ?? "", @"server_port=(\d+)-(\d+)");
        if (serverPort.Success) ServerRtcpPort = int.Parse(serverPort.Groups[2].Value);
        if (audio && controls.TryGetValue("audio", out var audioControl))
        {
            var audioReply = await RequestAsync("SETUP", Control(audioControl), "Transport: RTP/AVP/TCP;unicast;interleaved=2-3");
            if (Status(audioReply) != 200) throw new InvalidOperationException("SETUP audio failed: " + audioReply);
        }
        LastPlayResponse = await RequestAsync("PLAY", url, "Range: npt=0.000-");
        if (Status(LastPlayResponse) != 200) throw new InvalidOperationException("PLAY failed: " + LastPlayResponse);
    }

    /// <summary>Reads and counts media until <paramref name="ct"/> fires or the server closes.</summary>
    public async Task ReceiveAsync(CancellationToken ct)
    {
        if (_udpRtp is not null) { await ReceiveUdpAsync(ct); return; }
        try
        {
            while (!ct.IsCancellationRequested)
            {
                while (_end - _start >= 4)
                {
                    if (_buf[_start] != (byte)'$')
                    {
                        // An RTSP response in the stream (keep-alive answers): skip to the end of its header.
                        int head = _buf.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8);
                        if (head < 0) break;
                        _start += head + 4;
                        continue;
                    }
                    int len = _buf[_start + 2] << 8 | _buf[_start + 3];
                    if (_end - _start < 4 + len) break;
                    Count(_buf.AsSpan(_start + 4, len), _buf[_start + 1]);
                    _start += 4 + len;
                }
                if (!await FillAsync(ct)) return;
            }
        }
        catch (OperationCanceledException) { }
    }

    async Task ReceiveUdpAsync(CancellationToken ct)
    {
        var packet = new byte[2048];
        try
        {
            while (!ct.IsCancellationRequested)
            {
                int n = await _udpRtp!.ReceiveAsync(packet, System.Net.Sockets.SocketFlags.None, ct);
                Bytes += n;
                Count(packet.AsSpan(0, n), 0);
            }
        }
        catch (OperationCanceledException) { }
    }

    void Count(ReadOnlySpan<byte> packet, byte channel)
    {
        if ((channel & 1) == 1)
        {
            // RTCP: a sender report (PT 200) counts the packets sent before it, so it never counts more than arrived,
            // and never fewer than the last one did.
            if (channel > 3 || packet.Length < 28 || packet[1] != 200) return;
            int t = channel / 2;
            uint sent = BinaryPrimitives.ReadUInt32BigEndian(packet[20..]);
            long arrived = t == 0 ? VideoPackets : AudioPackets;
            if (sent > arrived) SenderReportProblems.Add($"track {t}: the report counts {sent} packets, {arrived} arrived");
            if (sent < _lastReportedPackets[t]) SenderReportProblems.Add($"track {t}: the report counts {sent} packets, the one before {_lastReportedPackets[t]}");
            _lastReportedPackets[t] = sent;
            SenderReports[t]++;
            return;
        }
        if (packet.Length < 12) return;
        ushort seq = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
        bool marker = (packet[1] & 0x80) != 0;
        if (channel == 0)
        {
            FirstVideoSequence ??= seq;
            if (_haveVideo && seq != (ushort)(_lastVideoSeq + 1)) SequenceGaps++;
            _lastVideoSeq = seq; _haveVideo = true;
            VideoPackets++;
            if (marker)
            {
                if (VideoFrames == 0) FirstFrameTicks = Environment.TickCount64;
                VideoFrames++;
            }
        }
        else
        {
            if (_haveAudio && seq != (ushort)(_lastAudioSeq + 1)) SequenceGaps++;
            _lastAudioSeq = seq; _haveAudio = true;
            AudioPackets++;
        }
    }

    /// <summary>Stops reading without closing: the server sees a viewer whose window fills up.</summary>
    public ValueTask DisposeAsync()
    {
        _tcp.Dispose();
        _udpRtp?.Dispose();
        _udpRtcp?.Dispose();
        return ValueTask.CompletedTask;
    }
}
