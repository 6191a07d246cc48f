namespace Pearl2.Media;

public enum TrackKind : byte { Video = 0, Audio = 1 }

/// <summary>
/// One encoded access unit, shared by reference count between every reader of a channel. Its bytes live in
/// a pooled array; formats that package it once per channel (RTP, FLV, TS) keep their bytes in its slots.
/// </summary>
public sealed class MediaUnit
{
    public const int MaxSlots = 4;

    readonly MediaUnitPool _pool;
    readonly byte[]?[] _slotBuffers = new byte[MaxSlots][];
    readonly int[] _slotLengths = new int[MaxSlots];
    readonly long[] _slotTags = new long[MaxSlots];
    byte[] _buffer = [];
    int _refs;

    internal MediaUnit(MediaUnitPool pool) => _pool = pool;

    public TrackKind Track { get; private set; }
    public bool IsKeyFrame { get; private set; }
    /// <summary>Presentation time in the track's clock (90 kHz for video, the sample rate for audio).</summary>
    public long Pts { get; private set; }
    /// <summary><see cref="TimeProvider.GetTimestamp"/> when the unit entered the hub.</summary>
    public long HubTimestamp { get; internal set; }
    public int Length { get; private set; }
    public ReadOnlyMemory<byte> Data => _buffer.AsMemory(0, Length);
    public ReadOnlySpan<byte> Span => _buffer.AsSpan(0, Length);

    internal void Init(TrackKind track, bool key, long pts, ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> data)
    {
        Track = track; IsKeyFrame = key; Pts = pts;
        Length = prefix.Length + data.Length;
        _buffer = BufferPool.Rent(Length);
        prefix.CopyTo(_buffer);
        data.CopyTo(_buffer.AsSpan(prefix.Length));
        _refs = 1;
    }

    /// <summary>Gives a packager room for its bytes in slot <paramref name="slot"/>.</summary>
    public Span<byte> RentSlot(int slot, int size)
    {
        var b = _slotBuffers[slot];
        if (b is null || b.Length < size)
        {
            if (b is not null) BufferPool.Return(b);
            _slotBuffers[slot] = b = BufferPool.Rent(size);
        }
        return b;
    }

    public void CommitSlot(int slot, int length, long tag)
    {
        _slotLengths[slot] = length;
        _slotTags[slot] = tag;
    }

    public ReadOnlyMemory<byte> Slot(int slot) => _slotBuffers[slot] is { } b ? b.AsMemory(0, _slotLengths[slot]) : default;
    public long SlotTag(int slot) => _slotTags[slot];

    public void AddRef() => Interlocked.Increment(ref _refs);

    public void Release()
    {
        int r = Interlocked.Decrement(ref _refs);
        if (r > 0) return;
        if (r < 0) throw new InvalidOperationException("MediaUnit released more often than referenced");
        BufferPool.Return(_buffer);
        _buffer = [];
        for (int i = 0; i < MaxSlots; i++)
        {
            if (_slotBuffers[i] is { } b) BufferPool.Return(b);
            _slotBuffers[i] = null;
            _slotLengths[i] = 0;
        }
        _pool.Return(this);
    }
}

/// <summary>Keeps released units (and their slot arrays) for reuse: no allocation per frame in steady state.</summary>
public sealed class MediaUnitPool
{
    readonly Stack<MediaUnit> _free = new(256);

    public MediaUnit Rent(TrackKind track, bool key, long pts, ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> data)
    {
        MediaUnit? u;
        lock (_free) _free.TryPop(out u);
        u ??= new MediaUnit(this);
        u.Init(track, key, pts, prefix, data);
        return u;
    }

    internal void Return(MediaUnit u)
    {
        lock (_free) if (_free.Count < 4096) _free.Push(u);
    }
}
