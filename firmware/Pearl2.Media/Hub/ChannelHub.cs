using Pearl2.Formats.Codecs;

namespace Pearl2.Media;

/// <summary>What a reader needs to describe the channel's stream (SDP, FLV headers …).</summary>
public sealed record StreamInfo(int Width, int Height, int Fps, byte[] Sps, byte[] Pps, int AudioSampleRate, int AudioChannels, byte[]? AudioSpecificConfig, DateTimeOffset WallClockAtPtsZero)
{
    public bool HasAudio => AudioSpecificConfig is not null;
}

/// <summary>Packages each unit once per channel for one wire format (RTP, FLV …); runs on the publishing thread.</summary>
public interface IUnitPackager
{
    void Package(MediaUnit unit, int slot);
}

/// <summary>Told once per published unit, after every reader has it; runs on the publishing thread, so it only signals.</summary>
public interface IPublishListener
{
    void OnPublished();
}

/// <summary>
/// A reader's hold on one format of a channel: while any is held the hub packages every unit in that format, into
/// <see cref="Slot"/>. Take it before subscribing and let it go after the last read.
/// </summary>
public sealed class FormatLease : IDisposable
{
    readonly ChannelHub _hub;
    int _disposed;

    internal FormatLease(ChannelHub hub, string format, int slot) { _hub = hub; Format = format; Slot = slot; }

    public string Format { get; }
    public int Slot { get; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _hub.Release(Format);
    }
}

/// <summary>
/// One channel's fan-out point. Keeps the units since the last key frame so a new reader starts with a
/// picture, packages each unit once for every format someone reads (formats are registered by name when their first
/// reader arrives and dropped when the last one leaves), and offers it to every reader's bounded queue.
/// Publishing never waits on a reader.
/// </summary>
public sealed class ChannelHub
{
    const int MaxCachedUnits = 2048;

    readonly object _lock = new();
    readonly GopCache _gop = new(MaxCachedUnits);
    HubReader[] _readers = [];
    IPublishListener[] _listeners = [];
    IUnitPackager?[] _packagers = [];   // by slot; a dropped format leaves a hole the next one takes

    sealed class Registration(IUnitPackager packager, int slot)
    {
        public readonly IUnitPackager Packager = packager;
        public readonly int Slot = slot;
        public int Users;
    }

    readonly Dictionary<string, Registration> _formats = new(StringComparer.Ordinal);
    readonly TaskCompletionSource<StreamInfo> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly TimeProvider _time;
    StreamInfo? _pendingInfo;

    public ChannelHub(int index, string name, TimeProvider? time = null)
    {
        Index = index;
        Name = name;
        _time = time ?? TimeProvider.System;
        Pool = new MediaUnitPool();
    }

    public int Index { get; }
    public string Name { get; }
    public MediaUnitPool Pool { get; }
    public TimeProvider Time => _time;
    public long UnitsPublished { get; private set; }
    public int ReaderCount => Volatile.Read(ref _readers).Length;

    /// <summary>Completes once the first key frame has shown the SPS/PPS.</summary>
    public Task<StreamInfo> Ready => _ready.Task;
    public StreamInfo? Info => _ready.Task.IsCompletedSuccessfully ? _ready.Task.Result : null;

    /// <summary>Set by the pipeline before publishing; SPS and PPS are filled in from the first key frame.</summary>
    public void Describe(StreamInfo partial) => _pendingInfo = partial;

    /// <summary>
    /// Holds <paramref name="format"/> for one reader: the first hold registers the packager <paramref name="create"/>
    /// gives (and packages the cached GOP with it, which a new reader starts from), later ones share it.
    /// </summary>
    public FormatLease Acquire(string format, Func<IUnitPackager> create)
    {
        lock (_lock)
        {
            if (!_formats.TryGetValue(format, out var r))
            {
                int slot = Array.IndexOf(_packagers, null);
                if (slot < 0)
                {
                    slot = _packagers.Length;
                    var grown = new IUnitPackager?[slot + 1];
                    _packagers.CopyTo(grown, 0);
                    _packagers = grown;
                }
                r = new Registration(create(), slot);
                _packagers[slot] = r.Packager;
                _formats[format] = r;
                foreach (var u in _gop.Units) r.Packager.Package(u, slot);
            }
            r.Users++;
            return new FormatLease(this, format, r.Slot);
        }
    }

    internal void Release(string format)
    {
        lock (_lock)
        {
            if (!_formats.TryGetValue(format, out var r) || --r.Users > 0) return;
            _formats.Remove(format);
            _packagers[r.Slot] = null;
        }
    }

    /// <summary>The formats packaged now (someone reads each).</summary>
    public IReadOnlyList<string> Formats { get { lock (_lock) return _formats.Keys.Order(StringComparer.Ordinal).ToList(); } }

    /// <summary>Publishes a unit; the hub takes over the caller's reference.</summary>
    public void Publish(MediaUnit unit)
    {
        lock (_lock)
        {
            unit.HubTimestamp = _time.GetTimestamp();
            if (unit.Track == TrackKind.Video && unit.IsKeyFrame && !_ready.Task.IsCompleted) LearnParameterSets(unit);
            for (int i = 0; i < _packagers.Length; i++) _packagers[i]?.Package(unit, i);

            _gop.Add(unit);
            foreach (var r in _readers) r.Offer(unit);
            foreach (var l in _listeners) l.OnPublished();
            UnitsPublished++;
        }
        unit.Release();
    }

    /// <summary>Adds a listener told after each unit has reached every reader (a fan-out that drains many readers at once).</summary>
    public void AddListener(IPublishListener listener)
    {
        lock (_lock) _listeners = [.. _listeners, listener];
    }

    public void RemoveListener(IPublishListener listener)
    {
        lock (_lock) _listeners = Array.FindAll(_listeners, l => l != listener);
    }

    void LearnParameterSets(MediaUnit unit)
    {
        byte[]? sps = null, pps = null;
        foreach (var nal in new AnnexBReader(unit.Span))
        {
            if (nal.IsEmpty) continue;
            int t = nal[0] & 0x1f;
            if (t == NalType.Sps) sps ??= nal.ToArray();
            else if (t == NalType.Pps) pps ??= nal.ToArray();
        }
        if (sps is null || pps is null || _pendingInfo is null) return;
        H264Sps.TryParse(sps, out var parsed);
        _ready.TrySetResult(_pendingInfo with { Sps = sps, Pps = pps, Width = parsed.Width > 0 ? parsed.Width : _pendingInfo.Width, Height = parsed.Height > 0 ? parsed.Height : _pendingInfo.Height });
    }

    /// <summary>A new reader, its queue already holding the cached GOP so it starts on a key frame.</summary>
    public HubReader Subscribe(string name, int capacity)
    {
        var r = new HubReader(this, name, capacity);
        lock (_lock)
        {
            foreach (var u in _gop.Units) r.Offer(u);
            var list = new HubReader[_readers.Length + 1];
            _readers.CopyTo(list, 0);
            list[^1] = r;
            Volatile.Write(ref _readers, list);
        }
        return r;
    }

    internal void Unsubscribe(HubReader reader)
    {
        lock (_lock)
        {
            int i = Array.IndexOf(_readers, reader);
            if (i < 0) return;
            var list = new HubReader[_readers.Length - 1];
            Array.Copy(_readers, 0, list, 0, i);
            Array.Copy(_readers, i + 1, list, i, _readers.Length - i - 1);
            Volatile.Write(ref _readers, list);
        }
    }

    public HubReader[] Readers => Volatile.Read(ref _readers);
}
