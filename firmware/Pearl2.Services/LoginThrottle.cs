using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Pearl2.Services;

/// <summary>
/// Failed logins per address, shared by every door (RTSP on all transports, HTTP streams, preview, page, token).
/// The first <see cref="FreeFailures"/> failures cost nothing (typos, a player trying schemes); each further one is
/// answered only after a delay that doubles up to <see cref="MaxDelay"/>; at <see cref="FailuresToBlock"/> the address
/// is blocked for <see cref="BlockFor"/> (doubling for each block in a row, up to <see cref="MaxBlock"/>): every
/// request from it, right password or not, gets 429 (HTTP) or 503 (RTSP) and its connection is closed. A success
/// clears the address; a quiet <see cref="Window"/> forgets it. IPv6 addresses count by their /64, which one host
/// can fill. One warning line when a block starts, one info line when it ends, with what it refused.
/// </summary>
public sealed class LoginThrottle(TimeProvider time, ILogger? log = null)
{
    public const int FreeFailures = 3;
    public const int FailuresToBlock = 10;
    public const int MaxTrackedAddresses = 4096;
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(10);
    public static readonly TimeSpan BlockFor = TimeSpan.FromSeconds(60);
    public static readonly TimeSpan MaxBlock = TimeSpan.FromMinutes(15);
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(4);

    readonly ILogger _log = log ?? NullLogger.Instance;

    sealed class Entry
    {
        public int Failures;
        public DateTimeOffset LastFailure;
        public DateTimeOffset BlockedUntil;
        public int Blocks;
        public long RefusedWhileBlocked;
    }

    readonly Dictionary<IPAddress, Entry> _entries = [];

    static IPAddress Key(IPAddress address) => PeerAddress.HostKey(address);

    /// <summary>Throttled while the address is blocked (whatever <paramref name="outcome"/> was); else the outcome, with a failure counted.</summary>
    public AuthOutcome Record(IPAddress? address, AuthOutcome outcome)
    {
        if (address is null) return outcome;
        var key = Key(address);
        var now = time.GetUtcNow();
        lock (_entries)
        {
            _entries.TryGetValue(key, out var e);
            if (e is not null && e.BlockedUntil > now) { e.RefusedWhileBlocked++; return AuthOutcome.Throttled; }
            if (e is not null && e.BlockedUntil != default)
            {
                _log.LogInformation("auth.unblocked remote={Remote} refused_while_blocked={Refused}", key, e.RefusedWhileBlocked);
                e.BlockedUntil = default; e.RefusedWhileBlocked = 0;
            }
            if (outcome == AuthOutcome.Accepted) { if (e is not null) _entries.Remove(key); return outcome; }
            if (outcome != AuthOutcome.Refused) return outcome;
            if (e is null)
            {
                if (_entries.Count >= MaxTrackedAddresses) Sweep(now);
                if (_entries.Count >= MaxTrackedAddresses) return outcome; // full of live attackers: count no more, still refused
                _entries[key] = e = new Entry();
            }
            if (now - e.LastFailure > Window) { e.Failures = 0; e.Blocks = 0; }
            e.Failures++;
            e.LastFailure = now;
            if (e.Failures >= FailuresToBlock)
            {
                var length = TimeSpan.FromTicks(Math.Min(MaxBlock.Ticks, BlockFor.Ticks << Math.Min(e.Blocks, 10)));
                e.Blocks++;
                e.Failures = 0;
                e.BlockedUntil = now + length;
                _log.LogWarning("auth.blocked remote={Remote} failures={Failures} seconds={Seconds} reason=\"too many failed logins\"", key, FailuresToBlock, (int)length.TotalSeconds);
            }
            return outcome;
        }
    }

    /// <summary>How long to wait before answering a refusal from <paramref name="address"/> (zero for the first few).</summary>
    public TimeSpan DelayFor(IPAddress? address)
    {
        if (address is null) return TimeSpan.Zero;
        lock (_entries)
        {
            if (!_entries.TryGetValue(Key(address), out var e) || e.Failures <= FreeFailures) return TimeSpan.Zero;
            return TimeSpan.FromTicks(Math.Min(MaxDelay.Ticks, TimeSpan.FromMilliseconds(250).Ticks << Math.Min(e.Failures - FreeFailures, 8)));
        }
    }

    /// <summary>Seconds until <paramref name="address"/> may try again (for Retry-After), 0 when it is not blocked.</summary>
    public int RetryAfterSeconds(IPAddress? address)
    {
        if (address is null) return 0;
        lock (_entries)
            return _entries.TryGetValue(Key(address), out var e) && e.BlockedUntil > time.GetUtcNow()
                ? Math.Max(1, (int)Math.Ceiling((e.BlockedUntil - time.GetUtcNow()).TotalSeconds)) : 0;
    }

    void Sweep(DateTimeOffset now)
    {
        foreach (var (key, e) in _entries)
            if (e.BlockedUntil <= now && now - e.LastFailure > Window) _entries.Remove(key);
    }
}
