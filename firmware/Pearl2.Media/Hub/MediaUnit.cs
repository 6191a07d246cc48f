namespace Pearl2.Media;

public enum TrackKind : byte { Video = 0, Audio = 1 }

/// <summary>
/// One encoded access unit, shared by reference count between every reader of a channel. Its bytes live in
/// a pooled array; formats that package it once per channel (RTP, FLV, TS) keep their bytes in its slots, one
/// per format the hub has registered (as many as there are formats: the slot table grows, it has no cap).
/// </summary>
public sealed class MediaUnit
{
    /// <summary>One format's bytes of this unit.</summary>
    struct SlotData
    {
        public byte[]? Buffer;
        public int Length;
        public long Tag;
    }

    readonly MediaUnitPool _pool;
    // Written only under the hub's lock (packaging); read by any reader. Growing copies the table and publishes the new
    // one: a reader still holding the old table sees the same bytes for the slot it reads (each slot is written once).
    SlotData[] _slots = new SlotData[4];
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
        var slots = _slots;
        if (slot >= slots.Length)
        {
            var grown = new SlotData[Math.Max(slot + 1, slots.Length * 2)];
            slots.CopyTo(grown, 0);
            Volatile.Write(ref _slots, slots = grown);
        }
        var b = slots[slot].Buffer;
        if (b is null || b.Length < size)
        {
            if (b is not null) BufferPool.Return(b);
            slots[slot].Buffer = b = BufferPool.Rent(size);
        }
        return b;
    }

    public void CommitSlot(int slot, int length, long tag)
    {
        var slots = _slots;
        slots[slot].Length = length;
        slots[slot].Tag = tag;
    }

    public ReadOnlyMemory<byte> Slot(int slot)
    {
        var slots = Volatile.Read(ref _slots);
        return slot < slots.Length && slots[slot].Buffer is { } b ? b.AsMemory(0, slots[slot].Length) : default;
    }

    public long SlotTag(int slot)
    {
        var slots = Volatile.Read(ref _slots);
        return slot < slots.Length ? slots[slot].Tag : 0;
    }

    public void AddRef() => Interlocked.Increment(ref _refs);

    public void Release()
    {
        int r = Interlocked.Decrement(ref _refs);
        if (r > 0) return;
        if (r < 0) throw new InvalidOperationException("MediaUnit released more often than referenced");
        BufferPool.Return(_buffer);
        _buffer = [];
        var slots = _slots;
        for (int i = 0; i < slots.Length; i++)
        {
            if (slots[i].Buffer is { } b) BufferPool.Return(b);
            slots[i] = default;
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
