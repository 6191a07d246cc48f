using System.Security.Cryptography;

namespace Pearl2.Services.Admin;

/// <summary>A logged-in panel user: who, with what role, and the CSRF token every change from the page must carry.</summary>
public sealed record AdminSession(string Id, string User, AdminRole Role, string Csrf, long Created)
{
    public long LastSeen;
}

/// <summary>
/// The panel's cookie sessions, in memory (a restart logs everybody out): a random 256-bit id in an HttpOnly,
/// SameSite=Strict cookie, an idle and an absolute expiry, and a CSRF token per session. Bounded: past
/// <see cref="MaxSessions"/> the least recently used one goes. Changing or removing a user ends that user's sessions.
/// </summary>
public sealed class AdminSessions(TimeProvider time, TimeSpan idle, TimeSpan absolute)
{
    public const string Cookie = "pearl2_session";
    public const string CsrfHeader = "X-CSRF-Token";
    const int MaxSessions = 256;

    readonly Dictionary<string, AdminSession> _sessions = new(StringComparer.Ordinal);

    public TimeSpan Idle { get; } = idle;
    public TimeSpan Absolute { get; } = absolute;

    public AdminSession Start(string user, AdminRole role)
    {
        long now = time.GetTimestamp();
        var s = new AdminSession(Token(), user, role, Token(), now) { LastSeen = now };
        lock (_sessions)
        {
            Sweep(now);
            if (_sessions.Count >= MaxSessions) _sessions.Remove(_sessions.Values.MinBy(x => x.LastSeen)!.Id);
            _sessions[s.Id] = s;
        }
        return s;
    }

    static string Token() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    /// <summary>The live session with this id (its idle clock restarted), or null.</summary>
    public AdminSession? Find(string? id)
    {
        if (string.IsNullOrEmpty(id)) return null;
        long now = time.GetTimestamp();
        lock (_sessions)
        {
            if (!_sessions.TryGetValue(id, out var s)) return null;
            if (Expired(s, now)) { _sessions.Remove(id); return null; }
            s.LastSeen = now;
            return s;
        }
    }

    bool Expired(AdminSession s, long now) => time.GetElapsedTime(s.LastSeen, now) > Idle || time.GetElapsedTime(s.Created, now) > Absolute;

    void Sweep(long now)
    {
        foreach (var s in _sessions.Values.Where(s => Expired(s, now)).ToList()) _sessions.Remove(s.Id);
    }

    public void End(string id) { lock (_sessions) _sessions.Remove(id); }

    /// <summary>Ends every session of <paramref name="user"/> (its password or role changed, or it was removed).</summary>
    public void EndAllOf(string user)
    {
        lock (_sessions) foreach (var s in _sessions.Values.Where(s => s.User == user).ToList()) _sessions.Remove(s.Id);
    }

    public int Count { get { lock (_sessions) return _sessions.Count; } }

    /// <summary>Constant-time check of the CSRF token a request carried.</summary>
    public static bool CsrfMatches(AdminSession s, string? sent) =>
        sent is not null && sent.Length == s.Csrf.Length
        && CryptographicOperations.FixedTimeEquals(System.Text.Encoding.ASCII.GetBytes(sent), System.Text.Encoding.ASCII.GetBytes(s.Csrf));
}
