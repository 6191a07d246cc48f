using Pearl2.Media;

namespace Pearl2.Services.Rtsp;

/// <summary>
/// A thread of its own for one fan-out lane: it sleeps until signalled, then runs the lane's work once; signals that
/// come while it works are kept (as one). A lane is woken on every unit, so it is not left to the thread pool, where
/// the wake-up would wait behind whatever else is queued; and it runs with the media path's raised priority
/// (<see cref="MediaThreads"/>), so a unit goes out as soon as it is published.
/// </summary>
internal sealed class LaneThread : IDisposable
{
    readonly object _lock = new();
    readonly Action _work;
    readonly Action<Exception> _failed;
    readonly Thread _thread;
    bool _set, _closed;

    /// <param name="failed">Told of an exception the work let out (a bug of ours); the lane goes on with the next signal.</param>
    public LaneThread(string name, Action work, Action<Exception> failed)
    {
        _work = work;
        _failed = failed;
        _thread = new Thread(Run, 256 * 1024) { IsBackground = true, Name = name };
        _thread.Start();
    }

    public void Set()
    {
        lock (_lock)
        {
            if (_set) return;
            _set = true;
            Monitor.Pulse(_lock);
        }
    }

    void Run()
    {
        MediaThreads.Raise();
        while (true)
        {
            lock (_lock)
            {
                while (!_set && !_closed) Monitor.Wait(_lock);
                if (_closed) return;
                _set = false;
            }
            try { _work(); }
            catch (Exception e) { _failed(e); }   // a thread of our own: an exception left out would end the process
        }
    }

    /// <summary>Stops the thread after the work it is doing, if any.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _closed = true;
            Monitor.Pulse(_lock);
        }
        if (Thread.CurrentThread != _thread) _thread.Join(2000);
    }
}
