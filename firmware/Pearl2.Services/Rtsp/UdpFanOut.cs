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
/// All UDP viewers of a channel, split over a few lanes (one per core, up to four; a viewer joins as
/// <see cref="FanOutLanes.Choose"/> says: up to 16 share the first lane, then the lanes fill evenly). Each lane has a
/// hub reader and a thread of its own (<see cref="LaneThread"/>), which the hub wakes once per unit: it sends each
/// access unit to every viewer of the lane with batched sendmmsg(2) calls (viewers mixed), so the cost per viewer is
/// the kernel's and nothing else: no queue, wake-up or thread hop per viewer, and past one lane's fill a frame's fan-out
/// runs on every core at once instead of growing with N on one thread. UDP never waits: a full socket buffer drops
/// datagrams (counted). A joining viewer first gets the GOP since the last key frame, from its lane's cache, so it
/// starts on a picture and in step with everyone else.
/// Where the kernel has UDP GSO (UDP_SEGMENT, Linux 4.18), a run of same-size packets of a unit (a NAL unit's FU-A
/// fragments, the last one shorter) goes to a viewer as one message that the kernel cuts into the datagrams, so the
/// stack is walked once per run instead of once per datagram; the viewer receives the same datagrams either way.
/// </summary>
public sealed class UdpFanOut : IPublishListener, IDisposable
{
    readonly Lane[] _lanes;
    readonly ChannelHub _hub;
    readonly object _lock = new();
    bool _listening;

    public UdpFanOut(RtspChannel channel, TimeProvider time, ILogger log, int lanes = 0)
    {
        int n = FanOutLanes.Count(lanes);
        var gso = new GsoState(channel.Udp[0] is { } ports && Lane.GsoAvailable(ports.Rtp));
        _hub = channel.Hub;
        _lanes = new Lane[n];
        for (int i = 0; i < n; i++) _lanes[i] = new Lane(channel, time, log, gso, $"rtsp-udp-{channel.Hub.Index + 1}.{i}");
    }

    public int ViewerCount => _lanes.Sum(l => l.ViewerCount);

    /// <summary>Adds a viewer to the lane with the fewest: sends it the cached GOP and returns RTP-Info of what it got first (seq and rtptime per track).</summary>
    public List<(int Track, ushort Seq, uint RtpTime)> Join(Viewer viewer)
    {
        Lane lane;
        lock (_lock)
        {
            if (viewer.Lane is null)
            {
                Span<int> viewers = stackalloc int[_lanes.Length];
                for (int i = 0; i < _lanes.Length; i++) viewers[i] = _lanes[i].ViewerCount;
                viewer.Lane = _lanes[FanOutLanes.Choose(viewers)];
            }
            lane = viewer.Lane;
            // Told once per unit after every lane's reader has it (never removed: an idle lane costs one read per unit).
            if (!_listening) { _hub.AddListener(this); _listening = true; }
        }
        return lane.Join(viewer);
    }

    /// <summary>On the publishing thread: wakes each lane that has viewers.</summary>
    public void OnPublished()
    {
        foreach (var lane in _lanes) lane.Wake();
    }

    /// <summary>Removes a viewer (again is harmless); a lane left with none leaves the hub, so an idle channel feeds nothing.</summary>
    public void Leave(Viewer viewer) => viewer.Lane?.Leave(viewer);

    public void Dispose()
    {
        lock (_lock)
            if (_listening) { _hub.RemoveListener(this); _listening = false; }
        foreach (var lane in _lanes) lane.Dispose();
    }

    /// <summary>One viewer's destinations per track (pinned sockaddr copies) and its RTCP counters.</summary>
    public sealed class Viewer(RtspConnection connection)
    {
        public RtspConnection Connection { get; } = connection;
        public readonly byte[]?[] Rtp = new byte[2][];
        public readonly SocketAddress?[] Rtcp = new SocketAddress?[2];
        public readonly uint[] Packets = new uint[2], Octets = new uint[2];
        public readonly long[] LastPts = new long[2];
        public long NextReport;
        internal Lane? Lane;

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

    /// <summary>Whether the channel's lanes send with UDP GSO: on where the kernel has it, off for good once it refuses.</summary>
    internal sealed class GsoState(bool on)
    {
        public volatile bool On = on;
        int _logged;
        public bool TurnOff() { On = false; return Interlocked.Exchange(ref _logged, 1) == 0; }
    }

    /// <summary>The viewers of one lane, its hub reader, GOP cache and sendmmsg buffers.</summary>
    internal sealed class Lane : IDisposable
    {
        const int Batch = 1024;
        /// <summary>A flush once this many datagrams are queued: the viewers in it are timed when it returns, and the first ones need not wait for the last.</summary>
        const int FlushDatagrams = 256;
        const int SolUdp = 17, UdpSegment = 103, EINVAL = 22, EIO = 5;
        /// <summary>Segments per GSO message: the kernel takes up to 64, and a message stays under 64 KiB.</summary>
        const int MaxSegments = 64, MaxGsoBytes = 65000;
        /// <summary>CMSG_SPACE(sizeof(ushort)) on LP64: the cmsghdr (16 bytes) and the segment size, padded to 8.</summary>
        const int CmsgSpace = 24;

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
        readonly GsoState _gso;
        Viewer[] _viewers = [];
        HubReader? _reader;
        /// <summary>The loop's hold on RTP packaging while it has viewers, and the slot it reads.</summary>
        FormatLease? _rtp;
        int _slot;
        readonly string _name;
        LaneThread? _thread;
        readonly byte[] _rtcp = new byte[128];

        public unsafe Lane(RtspChannel channel, TimeProvider time, ILogger log, GsoState gso, string name)
        {
            _channel = channel; _time = time; _log = log; _gso = gso; _name = name;
            _msgs = (SendMmsg.MMsgHdr*)NativeMemory.AllocZeroed(Batch, (nuint)sizeof(SendMmsg.MMsgHdr));
            _segments = (int*)NativeMemory.Alloc(Batch, sizeof(int));
            AllocatePlan();
        }

        /// <summary>Whether the kernel knows UDP_SEGMENT (reading it fails with ENOPROTOOPT where it does not).</summary>
        internal static bool GsoAvailable(Socket socket)
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
                    _reader = _channel.Hub.Subscribe("udp fan-out", 1024);
                    _thread ??= new LaneThread(_name, Drain,
                        e => _log.LogError("rtsp.lane_error channel={Channel} transport=udp error=\"{Error}\"", _channel.Hub.Index + 1, e.GetType().Name + ": " + e.Message));
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
                    SendUnit(unit, [viewer], timed: false);
                }
                _viewers = [.. _viewers, viewer];
            }
            _thread?.Set(); // what the hub cached for the new reader goes out now, not with the next unit
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

        /// <summary>On the publishing thread: wakes the lane's thread when it has viewers.</summary>
        public void Wake()
        {
            if (Volatile.Read(ref _viewers).Length > 0) _thread?.Set();
        }

        /// <summary>On the lane's thread: sends every unit the lane's reader has.</summary>
        void Drain()
        {
            if (Volatile.Read(ref _reader) is not { } reader) return;
            while (reader.TryRead(out var unit))
            {
                try
                {
                    lock (_lock)
                    {
                        if (reader != _reader) continue; // left the hub while this unit was on its way
                        _gop.Add(unit);
                        var viewers = _viewers;
                        if (viewers.Length > 0)
                        {
                            int t = (int)unit.Track;
                            foreach (var v in viewers)
                                if (v.Rtp[t] is not null && v.Packets[t] == 0) { v.LastPts[t] = unit.Pts; SendReport(v, t); }
                            SendUnit(unit, viewers, timed: true);
                            long now = _time.GetTimestamp();
                            foreach (var v in viewers)
                            {
                                if (v.Rtp[t] is null) continue;
                                if (now >= v.NextReport)
                                {
                                    for (int k = 0; k < 2; k++) if (v.Packets[k] > 0) SendReport(v, k);
                                    v.NextReport = now + 5 * _time.TimestampFrequency;
                                }
                            }
                        }
                    }
                }
                finally { unit.Release(); }
            }
        }

        /// <summary>
        /// Every packet of the unit to every viewer that has its track, in as few sendmmsg calls as fit. When
        /// <paramref name="timed"/>, each viewer's added latency is taken when the call that carried its last message returns.
        /// </summary>
        unsafe void SendUnit(MediaUnit unit, Viewer[] viewers, bool timed)
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
                int queued = 0, datagrams = 0, ready = 0;
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
                        datagrams += count;
                        if (queued == Batch)
                        {
                            Flush(socket, queued, ref sent, ref wanted);
                            if (timed) Timed(unit, ready);
                            queued = datagrams = ready = 0;
                        }
                    }
                    v.Packets[t] += (uint)n;
                    v.Octets[t] += (uint)payloadBytes;
                    v.LastPts[t] = unit.Pts;
                    ready++;
                    if (datagrams >= FlushDatagrams)
                    {
                        Flush(socket, queued, ref sent, ref wanted);
                        if (timed) Timed(unit, ready);
                        queued = datagrams = ready = 0;
                    }
                }
                if (queued > 0) Flush(socket, queued, ref sent, ref wanted);
                if (timed) Timed(unit, ready);
                _channel.Sent.Add(sent, n > 0 ? sent * (bytes.Length - n * InterleavedFrame.HeaderSize) / n : 0);
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
                if (_gso.On)
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
            if (_gso.On && refused is EINVAL or EIO && _gso.TurnOff())
            {
                _log.LogWarning("rtsp.udp_gso_off channel={Channel} errno={Errno} reason=\"the kernel refused UDP_SEGMENT; one datagram per message from now on\"", _channel.Hub.Index + 1, refused);
            }
        }

        /// <summary>The added latency of the <paramref name="viewers"/> whose last message of the unit has just gone.</summary>
        void Timed(MediaUnit unit, int viewers)
        {
            if (viewers == 0) return;
            long now = _time.GetTimestamp();
            for (int i = 0; i < viewers; i++) _channel.RecordLatency(unit, now, _time);
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
            _thread?.Dispose();
            NativeMemory.Free(_msgs);
            NativeMemory.Free(_segments);
            FreePlan();
        }
    }
}
