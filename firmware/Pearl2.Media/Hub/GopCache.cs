namespace Pearl2.Media;

/// <summary>
/// The units since the last video key frame (holding a reference to each), so a new reader starts on a
/// picture. Bounded: past <paramref name="maxUnits"/> without a key frame it stops caching until the next one.
/// Not thread-safe: its owner serialises.
/// </summary>
public sealed class GopCache(int maxUnits)
{
    readonly List<MediaUnit> _units = new(512);

    public IReadOnlyList<MediaUnit> Units => _units;

    public void Add(MediaUnit unit)
    {
        bool key = unit.Track == TrackKind.Video && unit.IsKeyFrame;
        if (key) Clear();
        if (_units.Count == 0 && !key) return;
        if (_units.Count == maxUnits) { Clear(); return; }
        unit.AddRef();
        _units.Add(unit);
    }

    public void Clear()
    {
        foreach (var u in _units) u.Release();
        _units.Clear();
    }
}
