using System.Text;

namespace Pearl2.Services.Upload;

/// <summary>
/// The files waiting for upload, in order, kept as an append-only journal on the data partition (DATA/upload/queue):
/// a line <c>+ NAME</c> when a file is queued, <c>- NAME</c> when it arrived (or was given up). Each line is written
/// and fsynced before the call returns, so a power cut loses nothing that was acknowledged; a torn last line (the
/// cut came mid-write) is ignored at replay. At start the journal is replayed and rewritten with only what is still
/// pending (written beside it, fsynced, renamed over it).
/// </summary>
public sealed class UploadQueue : IDisposable
{
    public const string FileName = "queue";
    readonly string _path;
    readonly List<string> _pending = new();
    readonly object _lock = new();
    FileStream _journal;

    public UploadQueue(string directory)
    {
        Directory.CreateDirectory(directory);
        _path = Path.Combine(directory, FileName);
        foreach (var name in Replay(_path)) _pending.Add(name);
        // Compact: only what is pending, written whole before it replaces the old journal.
        string tmp = _path + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            var text = Encoding.UTF8.GetBytes(string.Concat(_pending.Select(n => "+ " + n + "\n")));
            f.Write(text);
            f.Flush(flushToDisk: true);
        }
        File.Move(tmp, _path, overwrite: true);
        _journal = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.Read);
    }

    /// <summary>What a journal says is still pending, in the order queued.</summary>
    public static List<string> Replay(string path)
    {
        var pending = new List<string>();
        if (!File.Exists(path)) return pending;
        var text = File.ReadAllText(path);
        int end = text.LastIndexOf('\n');
        foreach (var line in (end < 0 ? "" : text[..end]).Split('\n'))
        {
            if (line.Length < 3 || line[1] != ' ') continue;
            string name = line[2..];
            if (line[0] == '+' && !pending.Contains(name)) pending.Add(name);
            else if (line[0] == '-') pending.Remove(name);
        }
        return pending;
    }

    public IReadOnlyList<string> Pending { get { lock (_lock) return _pending.ToList(); } }

    public int Count { get { lock (_lock) return _pending.Count; } }

    /// <summary>Queues a file (once: a name already queued stays where it is).</summary>
    public bool Add(string name)
    {
        Check(name);
        lock (_lock)
        {
            if (_pending.Contains(name)) return false;
            Append("+ " + name + "\n");
            _pending.Add(name);
            return true;
        }
    }

    /// <summary>Takes a file off the queue: it arrived, or it is gone from the disk.</summary>
    public void Remove(string name)
    {
        lock (_lock)
        {
            if (!_pending.Remove(name)) return;
            Append("- " + name + "\n");
        }
    }

    void Append(string line)
    {
        _journal.Write(Encoding.UTF8.GetBytes(line));
        _journal.Flush(flushToDisk: true);
    }

    static void Check(string name)
    {
        if (name.Length == 0 || name.Any(c => char.IsControl(c)) || name.Contains('/'))
            throw new ArgumentException($"not a recording name: '{name}'");
    }

    public void Dispose() => _journal.Dispose();
}
