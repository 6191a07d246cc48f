using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Rtsp;

namespace Pearl2.Services.Rtsp;

/// <summary>What the RTCP port tells a UDP viewer: a receiver report from its address arrived.</summary>
public interface IRtcpReceiver
{
    void OnReceiverReport();
}

/// <summary>
/// One track's server port pair for RTSP/UDP (RTP on the even port, RTCP on the odd one), shared by every UDP
/// viewer of the track. Datagrams go only to the address of the peer that set the session up; RTCP receiver
/// reports that arrive on the odd port keep that viewer's session alive.
/// </summary>
public sealed class UdpTrackPorts : IDisposable
{
    readonly ILogger _log;
    readonly CancellationTokenSource _stop = new();
    readonly object _lock = new();
    // Keyed by the viewer's RTCP address. Several sessions may name the same client ports from one address (a
    // player that set up again, or two behind one NAT): a report from there counts for every one of them, so a
    // newcomer cannot take the first one's keep-alives away. Readers look up without a lock; writers take it.
    readonly ConcurrentDictionary<ViewerAddress, IRtcpReceiver[]> _viewers = new();

    public UdpTrackPorts(int rtpPort, ILogger log)
    {
        _log = log;
        RtpPort = rtpPort;
        Rtp = Bind(rtpPort);
        try { Rtcp = Bind(rtpPort + 1); }
        catch
        {
            Rtp.Dispose();   // the pair binds whole or not at all
            throw;
        }
        new Thread(() => Drain(Rtp, false), 64 * 1024) { IsBackground = true, Name = $"udp-{rtpPort}" }.Start();
        new Thread(() => Drain(Rtcp, true), 64 * 1024) { IsBackground = true, Name = $"udp-{rtpPort + 1}" }.Start();
    }

    public int RtpPort { get; }
    public int RtcpPort => RtpPort + 1;
    public Socket Rtp { get; }
    public Socket Rtcp { get; }

    /// <summary>Distinct viewer addresses registered (for tests and status).</summary>
    public int AddressCount => _viewers.Count;

    static Socket Bind(int port)
    {
        var s = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp) { DualMode = true };
        s.SendBufferSize = 1 << 20;
        s.Bind(new IPEndPoint(IPAddress.IPv6Any, port));
        return s;
    }

    /// <summary>A viewer's address as the dual-mode sockets see it (IPv4 peers as IPv4-mapped IPv6).</summary>
    public static SocketAddress Destination(IPAddress address, int port) =>
        new IPEndPoint(address.AddressFamily == AddressFamily.InterNetwork ? address.MapToIPv6() : address, port).Serialize();

    /// <summary>A socket address reduced to what identifies a sender: its IPv6 (or mapped IPv4) address and port.</summary>
    readonly record struct ViewerAddress(UInt128 Address, ushort Port)
    {
        public static ViewerAddress Of(SocketAddress a) => Of(a.Buffer.Span[..a.Size]);

        public static ViewerAddress Of(ReadOnlySpan<byte> sockaddr)
        {
            if (sockaddr.Length < 8) return default;
            ushort port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]);
            if (sockaddr.Length >= 24) return new(BinaryPrimitives.ReadUInt128BigEndian(sockaddr[8..24]), port); // sockaddr_in6
            return new(((UInt128)0xFFFF << 32) | BinaryPrimitives.ReadUInt32BigEndian(sockaddr[4..8]), port);    // sockaddr_in, as mapped
        }
    }

    public void Register(SocketAddress rtcpDestination, IRtcpReceiver viewer)
    {
        var key = ViewerAddress.Of(rtcpDestination);
        lock (_lock)
        {
            var current = _viewers.TryGetValue(key, out var list) ? list : [];
            if (Array.IndexOf(current, viewer) >= 0) return;
            _viewers[key] = [.. current, viewer];
        }
    }

    public void Unregister(SocketAddress rtcpDestination, IRtcpReceiver viewer)
    {
        var key = ViewerAddress.Of(rtcpDestination);
        lock (_lock)
        {
            if (!_viewers.TryGetValue(key, out var list) || Array.IndexOf(list, viewer) < 0) return;
            if (list.Length == 1) _viewers.TryRemove(key, out _);
            else _viewers[key] = Array.FindAll(list, v => v != viewer);
        }
    }

    /// <summary>What a datagram from <paramref name="from"/> to the RTCP port does: keeps its viewers alive.</summary>
    internal void OnRtcp(ReadOnlySpan<byte> from, int length)
    {
        if (length < 8 || !_viewers.TryGetValue(ViewerAddress.Of(from), out var list)) return;
        foreach (var v in list) v.OnReceiverReport();
    }

    /// <summary>
    /// Reads what viewers send to our ports on a plain blocking thread. The sockets must never see an async
    /// operation: that would put them in .NET's epoll engine, and every datagram we send would then wake it
    /// (the kernel signals write space as each sent buffer is freed) — most of the CPU of a UDP fan-out.
    /// </summary>
    void Drain(Socket socket, bool rtcp)
    {
        var buffer = new byte[2048];
        var from = new SocketAddress(AddressFamily.InterNetworkV6);
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                int n = socket.ReceiveFrom(buffer, SocketFlags.None, from);
                if (rtcp) OnRtcp(from.Buffer.Span[..from.Size], n);
            }
            catch (ObjectDisposedException) { return; }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionRefused) { }
            catch (SocketException e)
            {
                if (_stop.IsCancellationRequested) return;
                _log.LogWarning("rtsp.udp_receive_failed port={Port} error=\"{Error}\"", ((IPEndPoint)socket.LocalEndPoint!).Port, e.Message);
                _stop.Token.WaitHandle.WaitOne(100);
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        Rtp.Dispose();
        Rtcp.Dispose();
    }
}

/// <summary>
/// Sends an access unit's RTP packets (stored as RTSP interleaved frames) to one UDP viewer with a single
/// sendmmsg(2): for sessions that mix TCP and UDP tracks (UDP-only viewers share <see cref="UdpFanOut"/>).
/// </summary>
public static unsafe class UdpBatchSender
{
    const int MaxBatch = 256;

    /// <summary>Sends every frame's payload as one datagram; returns the datagrams the kernel took (the rest are dropped).</summary>
    public static int Send(Socket socket, SocketAddress destination, ReadOnlySpan<byte> interleavedFrames, out int bytes)
    {
        bytes = 0;
        var iov = stackalloc SendMmsg.IoVec[MaxBatch];
        var msgs = stackalloc SendMmsg.MMsgHdr[MaxBatch];
        int count = 0, sent = 0;
        fixed (byte* data = interleavedFrames)
        fixed (byte* name = destination.Buffer.Span)
        {
            int at = 0;
            while (at + InterleavedFrame.HeaderSize <= interleavedFrames.Length)
            {
                int len = (interleavedFrames[at + 2] << 8) | interleavedFrames[at + 3];
                iov[count] = new SendMmsg.IoVec { Base = data + at + InterleavedFrame.HeaderSize, Length = (nuint)len };
                msgs[count] = new SendMmsg.MMsgHdr { Name = name, NameLength = (uint)destination.Size, Iov = iov + count, IovLength = 1 };
                bytes += len;
                at += InterleavedFrame.HeaderSize + len;
                if (++count == MaxBatch) { sent += SendMmsg.Send(socket, msgs, count); count = 0; }
            }
            if (count > 0) sent += SendMmsg.Send(socket, msgs, count);
        }
        return sent;
    }
}
