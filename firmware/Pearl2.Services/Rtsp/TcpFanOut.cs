using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using Microsoft.Extensions.Logging;
using Pearl2.Media;

namespace Pearl2.Services.Rtsp;

/// <summary>
/// The TCP viewers of a channel that keep up, written to by a few lanes (one per core, up to four) instead of one
/// woken loop per viewer. After each unit reaches every viewer's queue the hub tells the fan-out once; each lane then
/// walks its viewers and writes what each has queued straight to its socket, without waiting (MSG_DONTWAIT). A viewer
/// whose socket cannot take a unit whole goes back to its own loop (<see cref="RtspConnection"/>), which writes the rest
/// as the viewer reads and hands the viewer back once its queue is empty. So a viewer that keeps up costs one send(2)
/// per unit and nothing else (no wake-up, task or lock wait of its own), and past one lane's fill
/// (<see cref="FanOutLanes.Choose"/>) one frame's fan-out is spread over the cores.
/// </summary>
public sealed class TcpFanOut : IPublishListener, IDisposable
{
    /// <summary>A viewer a lane writes to.</summary>
    internal interface IMember
    {
        /// <summary>
        /// Writes what the viewer has queued, without waiting; leaves the rest to the viewer's own loop. What goes is
        /// counted in <paramref name="lane"/> (the calling lane's own stripe), or in the channel's shared one when null.
        /// </summary>
        void Pump(SentTotals? lane);

        /// <summary>Ends the viewer's connection (a bug of ours met while writing to it must cost that viewer only).</summary>
        void Abort(string reason);
    }

    sealed class Lane
    {
        public IMember[] Members = [];
        public LaneThread? Thread;
        /// <summary>What this lane sent (its thread alone writes it).</summary>
        public readonly SentTotals Sent = new();
    }

    readonly ChannelHub _hub;
    readonly ILogger _log;
    readonly Lane[] _lanes;
    readonly object _lock = new();
    bool _listening, _disposed;

    public TcpFanOut(ChannelHub hub, ILogger log, int lanes = 0)
    {
        _hub = hub;
        _log = log;
        int n = FanOutLanes.Count(lanes);
        _lanes = new Lane[n];
        for (int i = 0; i < n; i++) _lanes[i] = new Lane();
    }

    public int ViewerCount { get { lock (_lock) return _lanes.Sum(l => l.Members.Length); } }

    /// <summary>A total over the lanes' stripes (<see cref="SentTotals.Packets"/> or <see cref="SentTotals.Bytes"/>).</summary>
    internal long Sent(Func<SentTotals, long> field)
    {
        long n = 0;
        foreach (var lane in _lanes) n += field(lane.Sent);
        return n;
    }

    internal void Join(IMember member)
    {
        lock (_lock)
        {
            if (_disposed) return;
            Span<int> viewers = stackalloc int[_lanes.Length];
            for (int i = 0; i < _lanes.Length; i++) viewers[i] = _lanes[i].Members.Length;
            var lane = _lanes[FanOutLanes.Choose(viewers)];
            Volatile.Write(ref lane.Members, [.. lane.Members, member]);
            lane.Thread ??= new LaneThread($"rtsp-tcp-{_hub.Index + 1}.{Array.IndexOf(_lanes, lane)}", () => Run(lane),
                e => _log.LogError("rtsp.lane_error channel={Channel} transport=tcp error=\"{Error}\"", _hub.Index + 1, e.GetType().Name + ": " + e.Message));
            if (!_listening) { _hub.AddListener(this); _listening = true; }
        }
    }

    internal void Leave(IMember member)
    {
        lock (_lock)
        {
            foreach (var lane in _lanes)
                if (Array.IndexOf(lane.Members, member) >= 0) Volatile.Write(ref lane.Members, Array.FindAll(lane.Members, m => m != member));
            if (_listening && _lanes.All(l => l.Members.Length == 0)) { _hub.RemoveListener(this); _listening = false; }
        }
    }

    /// <summary>On the publishing thread: wakes each lane that has viewers (a lane still busy with the last unit runs again).</summary>
    public void OnPublished()
    {
        foreach (var lane in _lanes)
            if (Volatile.Read(ref lane.Members).Length > 0) lane.Thread?.Set();
    }

    static void Run(Lane lane)
    {
        foreach (var m in Volatile.Read(ref lane.Members))
        {
            try { m.Pump(lane.Sent); }
            catch (Exception e) { m.Abort("internal error: " + e.GetType().Name); }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            if (_listening) _hub.RemoveListener(this);
            _listening = false;
            foreach (var lane in _lanes) lane.Members = [];
        }
        foreach (var lane in _lanes) lane.Thread?.Dispose();
    }
}

/// <summary>An auto-reset, allocation-free signal for one waiter: sets while nobody waits are kept (as one).</summary>
internal sealed class PulseSignal : IValueTaskSource<bool>
{
    ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    readonly object _lock = new();
    bool _set, _waiting, _closed;

    public void Set()
    {
        lock (_lock)
        {
            if (!_waiting) { _set = true; return; }
            _waiting = false;
        }
        _core.SetResult(true);
    }

    public void Close()
    {
        lock (_lock)
        {
            _closed = true;
            if (!_waiting) return;
            _waiting = false;
        }
        _core.SetResult(false);
    }

    /// <summary>True after a set; false once closed.</summary>
    public ValueTask<bool> WaitAsync()
    {
        lock (_lock)
        {
            if (_closed) return ValueTask.FromResult(false);
            if (_set) { _set = false; return ValueTask.FromResult(true); }
            _core.Reset();
            _waiting = true;
            return new ValueTask<bool>(this, _core.Version);
        }
    }

    bool IValueTaskSource<bool>.GetResult(short token) => _core.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _core.GetStatus(token);
    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _core.OnCompleted(continuation, state, token, flags);
}

/// <summary>send(2) on a stream socket that never waits: what the kernel takes now, or nothing.</summary>
internal static unsafe partial class NonBlockingSend
{
    const int MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000, EINTR = 4, EAGAIN = 11;

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint send(nint fd, byte* buffer, nuint length, int flags);

    /// <summary>
    /// The bytes the kernel took (0 when the socket buffer is full); -1 when the connection is gone. The socket's handle
    /// is held for the call, so a socket closed meanwhile is never confused with a new one on the same descriptor.
    /// </summary>
    public static int Send(Socket socket, ReadOnlySpan<byte> bytes)
    {
        bool added = false;
        try { socket.SafeHandle.DangerousAddRef(ref added); }
        catch (ObjectDisposedException) { return -1; }
        try
        {
            nint fd = socket.SafeHandle.DangerousGetHandle();
            fixed (byte* p = bytes)
            {
                while (true)
                {
                    nint r = send(fd, p, (nuint)bytes.Length, MSG_DONTWAIT | MSG_NOSIGNAL);
                    if (r >= 0) return (int)r;
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR) continue;
                    return errno == EAGAIN ? 0 : -1;
                }
            }
        }
        finally { if (added) socket.SafeHandle.DangerousRelease(); }
    }
}
