namespace Pearl2.Services;

/// <summary>The last lines of the device log, for the admin panel's live log (the host's logger writes every line here too).</summary>
public sealed class RecentLog(int capacity = 500)
{
    readonly string[] _lines = new string[capacity];
    long _count;

    public void Add(string line)
    {
        lock (_lines) _lines[_count++ % _lines.Length] = line;
    }

    /// <summary>Lines after number <paramref name="after"/> (0: all kept), oldest first, and the number of the last one.</summary>
    public (IReadOnlyList<string> Lines, long Last) Since(long after)
    {
        lock (_lines)
        {
            long first = Math.Max(after, _count - _lines.Length);
            var list = new List<string>((int)Math.Max(0, _count - first));
            for (long i = first; i < _count; i++) list.Add(_lines[i % _lines.Length]);
            return (list, _count);
        }
    }
}
