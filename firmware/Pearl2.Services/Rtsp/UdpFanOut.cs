using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Rtp;
using Pearl2.Formats.Rtsp;
using Pearl2.Media;

namespace Pearl2.Services.Rtsp;

/// <summary>
/// All UDP viewers of a channel fed by one loop: each access unit is sent to every viewer with batched
/// sendmmsg(2) calls (up to 1024 datagrams per call, viewers mixed), so the cost per viewer is the
/// kernel's and nothing else: no queue, wake-up or thread hop per viewer. UDP never waits: a full socket
/// buffer drops datagrams (counted). A joining viewer first gets the GOP since the last key frame, from
/// the loop's own cache, so it starts on a picture and in step with everyone else.
/// Where the kernel has UDP GSO (UDP_SEGMENT, Linux 4.18), a run of same-size packets of a unit (a NAL unit's FU-A
/// fragments, the last one shorter) goes to a viewer as one message that the kernel cuts into the datagrams, so the
/// stack is walked once per run instead of once per datagram; the viewer receives the same datagrams either way.
/// </summary>
public sealed class UdpFanOut : IDisposable
{
    const int Batch = 1024;
    const int SolUdp = 17, UdpSegment = 103, EINVAL = 22, EIO = 5;
    /// <summary>Segments per GSO message: the kernel takes up to 64, and a message stays under 64 KiB.</summary>
    const int MaxSegments = 64, MaxGsoBytes = 65000;
    /// <summary>CMSG_SPACE(sizeof(ushort)) on LP64: the cmsghdr (16 bytes) and the segment size, padded to 8.</summary>
    const int CmsgSpace = 24;

    /// <summary>One viewer's destinations per track (pinned sockaddr copies) and its RTCP counters.</summary>
    public sealed class Viewer(RtspConnection connection)
    {
        public RtspConnection Connection { get; } = connection;
        public readonly byte[]?[] Rtp = new byte[2][];
        public readonly SocketAddress?[] Rtcp = new SocketAddress?[2];
        public readonly uint[] Packets = new uint[2], Octets = new uint[2];
        public readonly long[] LastPts = new long[2];
        public long NextReport;

        public void SetTrack(int track, SocketAddress rtp, SocketAddress rtcp)
        {
            Rtp[track] = Pinned(rtp);
            Rtcp[track] = rtcp;
        }

        static byte[] Pinned(SocketAddress a)
        {
            var b = GC.AllocateArray<byte>(a.Size, pinned: true);
            a.Buffer.Span[..a.Size].CopyTo(b);
            return b;
        }
    }

    readonly RtspChannel _channel;
    readonly TimeProvider _time;
    readonly ILogger _log;
    readonly object _lock = new();
    readonly GopCache _gop = new(4096);
    readonly unsafe SendMmsg.MMsgHdr* _msgs;
    unsafe SendMmsg.IoVec* _iov;
    int _iovCapacity = 512;
    /// <summary>A unit's messages (per viewer the same): first packet, packet count, GSO control (null: one datagram).</summary>
    unsafe int* _groupStart, _groupCount;
    unsafe byte* _control;
    readonly unsafe int* _segments;   // datagrams per queued message
    bool _gso;
    Viewer[] _viewers = [];
    HubReader? _reader;
    /// <summary>The loop's hold on RTP packaging while it has viewers, and the slot it reads.</summary>
    FormatLease? _rtp;
    int _slot;
    Task? _loop;
    readonly byte[] _rtcp = new byte[128];

    public unsafe UdpFanOut(RtspChannel channel, TimeProvider time, ILogger log)
    {
        _channel = channel; _time = time; _log = log;
        _msgs = (SendMmsg.MMsgHdr*)NativeMemory.AllocZeroed(Batch, (nuint)sizeof(SendMmsg.MMsgHdr));
        _segments = (int*)NativeMemory.Alloc(Batch, sizeof(int));
        AllocatePlan();
        _gso = channel.Udp[0] is { } ports && GsoAvailable(ports.Rtp);
    }

    /// <summary>Whether the kernel knows UDP_SEGMENT (reading it fails with ENOPROTOOPT where it does not).</summary>
    static bool GsoAvailable(Socket socket)
    {
        if (Environment.GetEnvironmentVariable("PEARL2_UDP_GSO") == "0") return false;
        Span<byte> value = stackalloc byte[4];
        try { socket.GetRawSocketOption(SolUdp, UdpSegment, value); return true; }
        catch (SocketException) { return false; }
    }

    unsafe void AllocatePlan()
    {
        _iov = (SendMmsg.IoVec*)NativeMemory.Alloc((nuint)_iovCapacity, (nuint)sizeof(SendMmsg.IoVec));
        _groupStart = (int*)NativeMemory.Alloc((nuint)_iovCapacity, sizeof(int));
        _groupCount = (int*)NativeMemory.Alloc((nuint)_iovCapacity, sizeof(int));
        _control = (byte*)NativeMemory.AllocZeroed((nuint)_iovCapacity, CmsgSpace);
    }

    unsafe void FreePlan()
    {
        NativeMemory.Free(_iov);
        NativeMemory.Free(_groupStart);
        NativeMemory.Free(_groupCount);
        NativeMemory.Free(_control);
    }

    public int ViewerCount => Volatile.Read(ref _viewers).Length;

    /// <summary>Adds a viewer: sends it the cached GOP and returns RTP-Info of what it got first (seq and rtptime per track).</summary>
    public List<(int Track, ushort Seq, uint RtpTime)> Join(Viewer viewer)
    {
        var first = new List<(int, ushort, uint)>(2);
        lock (_lock)
        {
            if (_reader is null)
            {
                // The first viewer subscribes the loop to the hub (from its cached key frame); the last one to leave unsubscribes it.
                _rtp = _channel.AcquireRtp();
                _slot = _rtp.Slot;
                var reader = _channel.Hub.Subscribe("udp fan-out", 1024);
                _reader = reader;
                _loop = Task.Run(() => LoopAsync(reader));
            }
            viewer.NextReport = _time.GetTimestamp();
            foreach (var unit in _gop.Units)
            {
                int t = (int)unit.Track;
                if (viewer.Rtp[t] is null) continue;
                if (viewer.Packets[t] == 0)
                {
                    long tag = unit.SlotTag(_slot);
                    first.Add((t, RtpPackager.TagSequence(tag), RtpPackager.TagTimestamp(tag)));
                    viewer.LastPts[t] = unit.Pts;
                    SendReport(viewer, t);
                }
                SendUnit(unit, [viewer]);
            }
            _viewers = [.. _viewers, viewer];
        }
        return first;
    }

    /// <summary>Removes a viewer (again is harmless); when none is left the loop leaves the hub, so an idle channel feeds nothing.</summary>
    public void Leave(Viewer viewer)
    {
        lock (_lock)
        {
            _viewers = Array.FindAll(_viewers, v => v != viewer);
            if (_viewers.Length == 0 && _reader is { } reader)
            {
                reader.Dispose();
                _reader = null;
                _gop.Clear();
                // The loop reads slots only under this lock and checks the reader first: nothing reads the slot after this.
                _rtp?.Dispose();
                _rtp = null;
            }
        }
    }

    async Task LoopAsync(HubReader reader)
    {
        while (!reader.IsDisposed)
        {
            await reader.WaitAsync();
            while (reader.TryRead(out var unit))
            {
                lock (_lock)
                {
                    if (reader != _reader) { unit.Release(); continue; } // left the hub while this unit was on its way
                    _gop.Add(unit);
                    var viewers = _viewers;
                    if (viewers.Length > 0)
                    {
                        int t = (int)unit.Track;
                        foreach (var v in viewers)
                            if (v.Rtp[t] is not null && v.Packets[t] == 0) { v.LastPts[t] = unit.Pts; SendReport(v, t); }
                        SendUnit(unit, viewers);
                        long now = _time.GetTimestamp();
                        foreach (var v in viewers)
                        {
                            if (v.Rtp[t] is null) continue;
                            _channel.RecordLatency(unit, now, _time);
                            if (now >= v.NextReport)
                            {
                                for (int k = 0; k < 2; k++) if (v.Packets[k] > 0) SendReport(v, k);
                                v.NextReport = now + 5 * _time.TimestampFrequency;
                            }
                        }
                    }
                }
                unit.Release();
            }
        }
    }

    /// <summary>Every packet of the unit to every viewer that has its track, in as few sendmmsg calls as fit.</summary>
    unsafe void SendUnit(MediaUnit unit, Viewer[] viewers)
    {
        int t = (int)unit.Track;
        var bytes = unit.Slot(_slot).Span;
        int packets = RtpPackager.TagPackets(unit.SlotTag(_slot));
        int payloadBytes = bytes.Length - packets * (RtpHeader.Size + InterleavedFrame.HeaderSize);
        if (packets > _iovCapacity)
        {
            FreePlan();
            _iovCapacity = Math.Max(packets, _iovCapacity * 2);
            AllocatePlan();
        }
        var socket = _channel.Udp[t]!.Rtp;
        fixed (byte* data = bytes)
        {
            int at = 0, n = 0;
            while (at + InterleavedFrame.HeaderSize <= bytes.Length && n < packets)
            {
                int len = (bytes[at + 2] << 8) | bytes[at + 3];
                _iov[n++] = new SendMmsg.IoVec { Base = data + at + InterleavedFrame.HeaderSize, Length = (nuint)len };
                at += InterleavedFrame.HeaderSize + len;
            }
            int groups = Plan(n);
            int queued = 0;
            long sent = 0, wanted = 0;
            foreach (var v in viewers)
            {
                var dest = v.Rtp[t];
                if (dest is null) continue;
                void* name = Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(dest)); // pinned at creation
                for (int g = 0; g < groups; g++)
                {
                    int count = _groupCount[g];
                    _msgs[queued] = new SendMmsg.MMsgHdr
                    {
                        Name = name, NameLength = (uint)dest.Length, Iov = _iov + _groupStart[g], IovLength = (nuint)count,
                        Control = count > 1 ? _control + g * CmsgSpace : null, ControlLength = count > 1 ? (nuint)CmsgSpace : 0,
                    };
                    _segments[queued++] = count;
                    if (queued == Batch) { Flush(socket, queued, ref sent, ref wanted); queued = 0; }
                }
                v.Packets[t] += (uint)n;
                v.Octets[t] += (uint)payloadBytes;
                v.LastPts[t] = unit.Pts;
            }
            if (queued > 0) Flush(socket, queued, ref sent, ref wanted);
            Interlocked.Add(ref _channel.PacketsSent, sent);
            if (n > 0) Interlocked.Add(ref _channel.BytesSent, sent * (bytes.Length - n * InterleavedFrame.HeaderSize) / n);
            if (sent < wanted) Interlocked.Add(ref _channel.UdpDatagramsDropped, wanted - sent);
        }
    }

    /// <summary>
    /// Cuts the unit's <paramref name="n"/> packets into messages: with GSO, each run of packets of one size (and a
    /// shorter last one) becomes one message whose control data carries that size; without, each packet is its own.
    /// </summary>
    unsafe int Plan(int n)
    {
        int groups = 0, k = 0;
        while (k < n)
        {
            int start = k, size = (int)_iov[k].Length;
            k++;
            if (_gso)
            {
                int max = Math.Min(MaxSegments, MaxGsoBytes / Math.Max(size, 1));
                while (k < n && k - start < max && (int)_iov[k].Length == size) k++;
                if (k < n && k - start < max && (int)_iov[k].Length < size) k++;   // the run's shorter last packet
            }
            _groupStart[groups] = start;
            _groupCount[groups] = k - start;
            if (k - start > 1)
            {
                byte* c = _control + groups * CmsgSpace;
                *(nuint*)c = 16 + sizeof(ushort);            // cmsg_len = CMSG_LEN(2)
                *(int*)(c + 8) = SolUdp;                      // cmsg_level
                *(int*)(c + 12) = UdpSegment;                 // cmsg_type
                *(ushort*)(c + 16) = (ushort)size;            // the datagram size the kernel cuts at
            }
            groups++;
        }
        return groups;
    }

    /// <summary>Sends the queued messages; counts datagrams. A kernel that refuses GSO after all turns it off for good.</summary>
    unsafe void Flush(Socket socket, int queued, ref long sent, ref long wanted)
    {
        int messages = SendMmsg.Send(socket, _msgs, queued, out int refused);
        for (int i = 0; i < queued; i++)
        {
            wanted += _segments[i];
            if (i < messages) sent += _segments[i];
        }
        if (_gso && refused is EINVAL or EIO)
        {
            _gso = false;
            _log.LogWarning("rtsp.udp_gso_off channel={Channel} errno={Errno} reason=\"the kernel refused UDP_SEGMENT; one datagram per message from now on\"", _channel.Hub.Index + 1, refused);
        }
    }

    void SendReport(Viewer v, int t)
    {
        if (v.Rtcp[t] is not { } dest || _channel.SenderReport((TrackKind)t, v.LastPts[t], v.Packets[t], v.Octets[t]) is not { } sr) return;
        int n = sr.WriteTo(_rtcp);
        try { _channel.Udp[t]!.Rtcp.SendTo(_rtcp.AsSpan(0, n), SocketFlags.None, dest); }
        catch (SocketException) { } // a lost sender report is not worth a viewer
    }

    public unsafe void Dispose()
    {
        lock (_lock)
        {
            _reader?.Dispose();
            _gop.Clear();
            _viewers = [];
            _rtp?.Dispose();
            _rtp = null;
        }
        try { _loop?.Wait(2000); } catch (AggregateException) { }
        NativeMemory.Free(_msgs);
        NativeMemory.Free(_segments);
        FreePlan();
    }
}
