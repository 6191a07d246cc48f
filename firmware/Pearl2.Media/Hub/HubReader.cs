using System.Threading.Tasks.Sources;

namespace Pearl2.Media;

/// <summary>
/// A reader's bounded, key-frame-aware queue. When it is full the reader loses everything queued and
/// skips until the next video key frame, so it always resumes on a decodable picture and never holds up
/// the hub. Waiting is allocation-free (a reusable value-task source).
/// </summary>
public sealed class HubReader : IValueTaskSource, IDisposable
{
    readonly ChannelHub _hub;
    readonly MediaUnit?[] _ring;
    readonly object _lock = new();
    ManualResetValueTaskSourceCore<bool> _signal = new() { RunContinuationsAsynchronously = true };
    int _head, _count;
    bool _waiting, _skipToKey, _disposed;

    internal HubReader(ChannelHub hub, string name, int capacity)
    {
        _hub = hub;
        Name = name;
        _ring = new MediaUnit?[capacity];
    }

    public string Name { get; }
    public ChannelHub Hub => _hub;
    public int Capacity => _ring.Length;
    /// <summary>Units handed to this reader's sender.</summary>
    public long Taken { get; private set; }
    /// <summary>Video frames this reader lost to a full queue (and the audio units with them).</summary>
    public long DroppedFrames { get; private set; }
    public long DroppedUnits { get; private set; }
    public int Overflows { get; private set; }
    public int Queued { get { lock (_lock) return _count; } }

    internal void Offer(MediaUnit unit)
    {
        bool wake = false;
        lock (_lock)
        {
            if (_disposed) return;
            bool key = unit.Track == TrackKind.Video && unit.IsKeyFrame;
            if (_skipToKey && !key) { CountDrop(unit); return; }
            if (_count == _ring.Length)
            {
                // Full: drop the whole backlog, wait for the next key frame (this one, if it is one).
                Overflows++;
                while (_count > 0)
                {
                    var old = _ring[_head]!;
                    _ring[_head] = null;
                    _head = (_head + 1) % _ring.Length;
                    _count--;
                    CountDrop(old);
                    old.Release();
                }
                if (!key) { _skipToKey = true; CountDrop(unit); return; }
            }
            _skipToKey = false;
            unit.AddRef();
            _ring[(_head + _count) % _ring.Length] = unit;
            _count++;
            if (_waiting) { _waiting = false; wake = true; }
        }
        if (wake) _signal.SetResult(true);
    }

    void CountDrop(MediaUnit u)
    {
        DroppedUnits++;
        if (u.Track == TrackKind.Video) DroppedFrames++;
    }

    /// <summary>Takes the next unit; the caller owns one reference and must <see cref="MediaUnit.Release"/> it.</summary>
    public bool TryRead(out MediaUnit unit)
    {
        lock (_lock)
        {
            if (_count == 0) { unit = null!; return false; }
            unit = _ring[_head]!;
            _ring[_head] = null;
            _head = (_head + 1) % _ring.Length;
            _count--;
            Taken++;
            return true;
        }
    }

    /// <summary>Looks at queued units without taking them (e.g. for RTP-Info of the first packet the reader will send).</summary>
    public MediaUnit? PeekFirst(TrackKind track)
    {
        lock (_lock)
        {
            for (int i = 0; i < _count; i++)
            {
                var u = _ring[(_head + i) % _ring.Length]!;
                if (u.Track == track) return u;
            }
            return null;
        }
    }

    /// <summary>Completes when a unit is queued (at once if one is) or the reader is disposed.</summary>
    public ValueTask WaitAsync()
    {
        lock (_lock)
        {
            if (_count > 0 || _disposed) return ValueTask.CompletedTask;
            _signal.Reset();
            _waiting = true;
            return new ValueTask(this, _signal.Version);
        }
    }

    public void Dispose()
    {
        bool wake;
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            while (_count > 0)
            {
                _ring[_head]!.Release();
                _ring[_head] = null;
                _head = (_head + 1) % _ring.Length;
                _count--;
            }
            wake = _waiting;
            _waiting = false;
        }
        _hub.Unsubscribe(this);
        if (wake) _signal.SetResult(true);
    }

    public bool IsDisposed { get { lock (_lock) return _disposed; } }

    void IValueTaskSource.GetResult(short token) => _signal.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _signal.GetStatus(token);
    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _signal.OnCompleted(continuation, state, token, flags);
}
