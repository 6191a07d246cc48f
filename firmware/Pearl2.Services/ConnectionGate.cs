using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;

namespace Pearl2.Services;

/// <summary>How many connections one viewer port holds: in all, and from one host (IPv6 by its /64; loopback, the device itself, is not counted per host).</summary>
public sealed record ConnectionLimits(int PerPort = ConnectionLimits.DefaultPerPort, int PerHost = ConnectionLimits.DefaultPerHost)
{
    public const int DefaultPerPort = 2048, DefaultPerHost = 128;
}

/// <summary>
/// Admission for one listening port. A connection past a limit is closed as soon as it is accepted, before anything
/// is read or logged for it, so a flood of connections costs an accept and a close each and the viewers already
/// playing carry on. A flood is logged as two lines: one when refusing starts (with the first host and the reason)
/// and one when it has been quiet for <see cref="Quiet"/> (with the count, how long, and the host that sent most).
/// </summary>
public sealed class ConnectionGate(string listener, ILogger log, TimeProvider? time = null)
{
    public static readonly TimeSpan Quiet = TimeSpan.FromSeconds(10);
    readonly TimeProvider _time = time ?? TimeProvider.System;
    readonly object _lock = new();
    readonly Dictionary<IPAddress, int> _perHost = [];
    int _open;
    // The flood being refused now: 0 refusals when there is none.
    long _refused, _floodStarted, _lastRefused;
    readonly Dictionary<IPAddress, long> _refusedPerHost = [];

    public ConnectionLimits Limits { get; set; } = new();
    public int Open { get { lock (_lock) return _open; } }
    public long RefusedTotal { get; private set; }

    /// <summary>True when the connection may be served (then <see cref="Left"/> must follow); false when it is to be closed at once.</summary>
    public bool TryAdmit(IPAddress? address)
    {
        var key = address is null || IPAddress.IsLoopback(address) ? null : PeerAddress.HostKey(address);
        var limits = Limits;
        lock (_lock)
        {
            int fromHost = key is null ? 0 : _perHost.GetValueOrDefault(key);
            string? why = _open >= limits.PerPort ? $"{_open} connections on this port (limit {limits.PerPort})"
                : key is not null && fromHost >= limits.PerHost ? $"{fromHost} connections from this host (limit {limits.PerHost})"
                : null;
            if (why is null)
            {
                _open++;
                if (key is not null) _perHost[key] = fromHost + 1;
                return true;
            }
            long now = _time.GetTimestamp();
            if (_refused == 0)
            {
                _floodStarted = now;
                log.LogWarning("connections.refusing listener={Listener} remote={Remote} reason=\"{Reason}\" open={Open}",
                    listener, address?.ToString() ?? "?", why, _open);
            }
            _refused++;
            RefusedTotal++;
            _lastRefused = now;
            if (address is not null && (_refusedPerHost.Count < 1024 || _refusedPerHost.ContainsKey(key ?? address)))
                _refusedPerHost[key ?? address] = _refusedPerHost.GetValueOrDefault(key ?? address) + 1;
            return false;
        }
    }

    /// <summary>An admitted connection closed.</summary>
    public void Left(IPAddress? address)
    {
        var key = address is null || IPAddress.IsLoopback(address) ? null : PeerAddress.HostKey(address);
        lock (_lock)
        {
            _open--;
            if (key is not null && _perHost.TryGetValue(key, out int n))
            {
                if (n <= 1) _perHost.Remove(key);
                else _perHost[key] = n - 1;
            }
        }
    }

    /// <summary>Once a second or so: ends a flood that has been quiet for <see cref="Quiet"/>, with its one summary line.</summary>
    public void Tick()
    {
        lock (_lock)
        {
            if (_refused == 0) return;
            long now = _time.GetTimestamp();
            if (_time.GetElapsedTime(_lastRefused, now) < Quiet) return;
            var top = _refusedPerHost.OrderByDescending(kv => kv.Value).FirstOrDefault();
            log.LogWarning("connections.flood_ended listener={Listener} refused={Refused} seconds={Seconds} hosts={Hosts} top_host={Top} top_refused={TopRefused} open={Open}",
                listener, _refused, _time.GetElapsedTime(_floodStarted, _lastRefused).TotalSeconds.ToString("F1", CultureInfo.InvariantCulture),
                _refusedPerHost.Count, top.Key?.ToString() ?? "?", top.Value, _open);
            _refused = 0;
            _refusedPerHost.Clear();
        }
    }
}
