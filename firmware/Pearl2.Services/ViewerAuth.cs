using Pearl2.Formats;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Pearl2.Formats.Rtsp;

namespace Pearl2.Services;

/// <summary>A channel's viewer login. Basic is accepted only when the operator allowed it (it sends the password in clear).</summary>
public sealed record ViewerCredentials(string Username, string Password, bool AllowBasic = false);

public enum AuthOutcome { Accepted, Missing, Refused, Stale, Throttled }

/// <summary>Who asks: the connection (a nonce without qop opens only the connection that first used it) and its address (failures are counted per address).</summary>
public readonly record struct AuthPeer(long Connection, System.Net.IPAddress? Address)
{
    static long _next;
    /// <summary>A number for a new connection, unique for the life of the process.</summary>
    public static long NewConnection() => Interlocked.Increment(ref _next);
}

/// <summary>
/// The viewer login of every door to a channel's pictures (RTSP, HTTP FLV/TS/preview, the stream page): Digest
/// (RFC 7616) with SHA-256 and MD5, Basic only if configured, and short-lived signed view tokens for browser players,
/// which cannot answer a Digest challenge from fetch. Nonces and tokens are stateless, sealed with an HMAC under a
/// key made at start; a token also names its channel and the login it was issued under, so a changed password voids it.
/// </summary>
public sealed class ViewerAuth(TimeProvider time, TimeSpan nonceLifetime, LoginThrottle? throttle = null)
{
    /// <summary>How long a new nonce may be first answered with (a connection that used it keeps it for its life).</summary>
    public static readonly TimeSpan DefaultNonceLifetime = TimeSpan.FromSeconds(60);
    /// <summary>Failed logins per address, across every door that uses this login.</summary>
    public LoginThrottle Throttle { get; } = throttle ?? new LoginThrottle(time);
    public const string Realm = "Pearl2";
    /// <summary>How long a view token lets a player start a stream (a stream that started plays on).</summary>
    public static readonly TimeSpan TokenLifetime = TimeSpan.FromMinutes(2);
    readonly byte[] _key = RandomNumberGenerator.GetBytes(32);

    /// <summary>
    /// A view token for <paramref name="channel"/> (1-based) under <paramref name="creds"/>: 8 bytes of expiry (Unix ms),
    /// then 16 bytes of HMAC-SHA256 over "view", the expiry, the channel and a hash of the login, as lower-case hex.
    /// </summary>
    public string IssueToken(int channel, ViewerCredentials? creds, out DateTimeOffset expires)
    {
        expires = time.GetUtcNow() + TokenLifetime;
        Span<byte> t = stackalloc byte[24];
        BinaryPrimitives.WriteInt64BigEndian(t, expires.ToUnixTimeMilliseconds());
        TokenMac(t[..8], channel, creds).CopyTo(t[8..]);
        return Convert.ToHexStringLower(t);
    }

    byte[] TokenMac(ReadOnlySpan<byte> expiry, int channel, ViewerCredentials? creds)
    {
        var login = SHA256.HashData(Encoding.UTF8.GetBytes(creds is null ? "" : creds.Username + ":" + creds.Password));
        var input = new byte[4 + 8 + 4 + login.Length];
        "view"u8.CopyTo(input);
        expiry.CopyTo(input.AsSpan(4));
        BinaryPrimitives.WriteInt32BigEndian(input.AsSpan(12), channel);
        login.CopyTo(input, 16);
        return HMACSHA256.HashData(_key, input).AsSpan(0, 16).ToArray();
    }

    /// <summary>Accepted for a token this device issued for this channel and login that has not expired; Refused (with why) otherwise.</summary>
    public AuthOutcome CheckToken(string token, int channel, ViewerCredentials? creds, out string? reason)
    {
        reason = null;
        Span<byte> t = stackalloc byte[24];
        if (token.Length != 48 || Convert.FromHexString(token, t, out _, out int written) != System.Buffers.OperationStatus.Done || written != 24)
        { reason = "malformed token"; return AuthOutcome.Refused; }
        if (!CryptographicOperations.FixedTimeEquals(TokenMac(t[..8], channel, creds), t[8..])) { reason = "token not issued for this channel and login"; return AuthOutcome.Refused; }
        if (time.GetUtcNow().ToUnixTimeMilliseconds() > BinaryPrimitives.ReadInt64BigEndian(t)) { reason = "token expired"; return AuthOutcome.Refused; }
        return AuthOutcome.Accepted;
    }

    /// <summary>
    /// The check every door makes: a <c>token=</c> query parameter when there is one (web players), else the
    /// Authorization header (Digest, or Basic when allowed).
    /// </summary>
    public AuthOutcome Authorize(IRequestHead req, int channel, ViewerCredentials creds, AuthPeer peer, out string? user, out string? reason)
    {
        if (req.Query("token") is { } token)
        {
            user = "(token)";
            return Throttle.Record(peer.Address, CheckToken(token, channel, creds, out reason));
        }
        return Check(req, creds, peer, out user, out reason);
    }

    /// <summary>A new nonce: 8 bytes of issue time (Unix ms) and 8 random bytes, sealed by 16 bytes of HMAC-SHA256, as hex.</summary>
    public string NewNonce()
    {
        Span<byte> n = stackalloc byte[32];
        BinaryPrimitives.WriteInt64BigEndian(n, time.GetUtcNow().ToUnixTimeMilliseconds());
        RandomNumberGenerator.Fill(n[8..16]);
        HMACSHA256.HashData(_key, n[..16]).AsSpan(0, 16).CopyTo(n[16..]);
        return Convert.ToHexStringLower(n);
    }

    /// <summary>True when we made the nonce; <paramref name="stale"/> when it is ours but too old for a first use.</summary>
    public bool CheckNonce(string nonce, out bool stale)
    {
        stale = false;
        if (nonce.Length != 64) return false;
        Span<byte> n = stackalloc byte[32];
        if (Convert.FromHexString(nonce, n, out _, out int written) != System.Buffers.OperationStatus.Done || written != 32) return false;
        if (!CryptographicOperations.FixedTimeEquals(HMACSHA256.HashData(_key, n[..16]).AsSpan(0, 16), n[16..])) return false;
        var age = time.GetUtcNow() - DateTimeOffset.FromUnixTimeMilliseconds(BinaryPrimitives.ReadInt64BigEndian(n));
        stale = age > nonceLifetime || age < TimeSpan.FromMinutes(-1);
        return true;
    }

    /// <summary>
    /// How a nonce has been used: the connection that first answered with it, and the highest nonce count seen.
    /// Without qop (RFC 2069, which RTSP players use) a nonce then only opens that connection; with qop each request
    /// must count higher. Either way one captured Authorization header cannot be played again.
    /// </summary>
    sealed class NonceUse(long connection, DateTimeOffset firstUsed)
    {
        public readonly long Connection = connection;
        public readonly DateTimeOffset FirstUsed = firstUsed;
        public ulong LastCount;
    }
    /// <summary>At most this many nonces are tracked; when full, the oldest go (their connections then get stale=true and a new nonce).</summary>
    public const int MaxTrackedNonces = 8192;
    readonly Dictionary<string, NonceUse> _nonces = new(StringComparer.Ordinal);
    readonly Queue<string> _nonceOrder = new();

    /// <summary>Accepted, Stale (the client should answer a new nonce) or Refused for a right password's use of <paramref name="nonce"/>.</summary>
    AuthOutcome UseNonce(string nonce, bool stale, long connection, string? qop, string? nc, out string? reason)
    {
        reason = null;
        ulong count = 0;
        if (!string.IsNullOrEmpty(qop) && (nc is null || !ulong.TryParse(nc, System.Globalization.NumberStyles.AllowHexSpecifier, null, out count) || count == 0))
        { reason = "malformed nonce count"; return AuthOutcome.Refused; }
        var now = time.GetUtcNow();
        lock (_nonces)
        {
            if (_nonces.TryGetValue(nonce, out var use))
            {
                if (string.IsNullOrEmpty(qop))
                {
                    // A nonce without a count belongs to the connection that first used it, for as long as that connection lives.
                    if (use.Connection != connection) { reason = "nonce used on another connection"; return AuthOutcome.Stale; }
                    return AuthOutcome.Accepted;
                }
                if (count <= use.LastCount) { reason = "nonce count reused (replayed request)"; return AuthOutcome.Stale; }
                if (use.Connection != connection && stale) { reason = "nonce expired"; return AuthOutcome.Stale; }
                use.LastCount = count;
                return AuthOutcome.Accepted;
            }
            if (stale) { reason = "nonce expired"; return AuthOutcome.Stale; }
            while (_nonces.Count >= MaxTrackedNonces && _nonceOrder.TryDequeue(out var old)) _nonces.Remove(old);
            _nonces[nonce] = new NonceUse(connection, now) { LastCount = count };
            _nonceOrder.Enqueue(nonce);
            return AuthOutcome.Accepted;
        }
    }

    /// <summary>
    /// The Authorization header of <paramref name="req"/> against <paramref name="creds"/>, for a request that came on
    /// <paramref name="peer"/>'s connection. Failures count against the peer's address (<see cref="LoginThrottle"/>).
    /// </summary>
    public AuthOutcome Check(IRequestHead req, ViewerCredentials creds, AuthPeer peer, out string? user, out string? reason)
    {
        var outcome = CheckHeader(req, creds, peer.Connection, out user, out reason);
        return Throttle.Record(peer.Address, outcome);
    }

    AuthOutcome CheckHeader(IRequestHead req, ViewerCredentials creds, long connection, out string? user, out string? reason)
    {
        user = null; reason = null;
        var value = req["Authorization"];
        if (value is null) return AuthOutcome.Missing;
        if (!AuthorizationHeader.TryParse(value, out var h)) { reason = "malformed Authorization header"; return AuthOutcome.Refused; }
        if (h.Scheme == AuthScheme.Basic)
        {
            user = h.BasicUser;
            if (!creds.AllowBasic) { reason = "Basic is not allowed on this channel"; return AuthOutcome.Refused; }
            bool ok = Same(h.BasicUser!, creds.Username) & Same(h.BasicPassword!, creds.Password);
            reason = ok ? null : "wrong user name or password";
            return ok ? AuthOutcome.Accepted : AuthOutcome.Refused;
        }
        user = h["username"];
        string? nonce = h["nonce"], response = h["response"], uri = h["uri"], realm = h["realm"], qop = h["qop"];
        string algorithm = h["algorithm"] ?? "MD5";
        if (user is null || nonce is null || response is null || uri is null || realm != Realm) { reason = "incomplete Digest parameters"; return AuthOutcome.Refused; }
        if (algorithm is not ("MD5" or "SHA-256" or "MD5-sess" or "SHA-256-sess")) { reason = $"unsupported algorithm {algorithm}"; return AuthOutcome.Refused; }
        if (!string.IsNullOrEmpty(qop) && qop != "auth") { reason = $"unsupported qop {qop}"; return AuthOutcome.Refused; }
        if (!SameTarget(uri, req.Uri)) { reason = "uri does not match the request"; return AuthOutcome.Refused; }
        if (!CheckNonce(nonce, out bool stale)) { reason = "nonce not issued by this device"; return AuthOutcome.Refused; }
        var expected = DigestAuth.ExpectedResponse(algorithm, creds.Username, Realm, creds.Password, req.Method, uri, nonce, qop, h["nc"], h["cnonce"]);
        if (!(Same(user, creds.Username) & Same(response.ToLowerInvariant(), expected))) { reason = "wrong user name or password"; return AuthOutcome.Refused; }
        return UseNonce(nonce, stale, connection, qop, h["nc"], out reason);
    }

    /// <summary>
    /// The Digest uri= names the request's own target: the same text, or the same path and query when one side is an
    /// absolute URI and the other is not (clients differ in which they send; the host is not what is protected).
    /// </summary>
    public static bool SameTarget(string digestUri, string requestUri)
    {
        if (digestUri == requestUri) return true;
        return PathAndQuery(digestUri) == PathAndQuery(requestUri);
        static string PathAndQuery(string uri)
        {
            int scheme = uri.IndexOf("://", StringComparison.Ordinal);
            if (scheme < 0) return uri;
            int path = uri.IndexOf('/', scheme + 3);
            return path < 0 ? "/" : uri[path..];
        }
    }

    /// <summary>One challenge per scheme: SHA-256 first (preferred), MD5 last (what most RTSP players and ffmpeg's HTTP take), Basic when allowed.</summary>
    public IEnumerable<string> Challenges(ViewerCredentials creds, bool stale)
    {
        var nonce = NewNonce();
        yield return DigestAuth.Challenge(Realm, nonce, "SHA-256", stale) + ", qop=\"auth\"";
        yield return DigestAuth.Challenge(Realm, nonce, "MD5", stale) + ", qop=\"auth\"";
        if (creds.AllowBasic) yield return $"Basic realm=\"{Realm}\"";
    }

    /// <summary>The RTSP 401 with <see cref="Challenges"/>.</summary>
    public RtspResponse Challenge(int cseq, ViewerCredentials creds, bool stale)
    {
        var r = new RtspResponse(401) { CSeq = cseq };
        foreach (var c in Challenges(creds, stale)) r.Add("WWW-Authenticate", c);
        return r;
    }

    /// <summary>
    /// Why a viewer playing a channel must stop now that its streaming switch or login changed; null while it may go on.
    /// Viewers on loopback (the device's own) always may; others need streaming on and, when the channel has a login,
    /// to have come in under that same login (by Basic only while Basic is still allowed).
    /// </summary>
    /// <param name="admitted">The login the viewer passed when it started (null: the channel had none then).</param>
    public static string? Revoked(bool streaming, ViewerCredentials? login, PeerAddress peer, ViewerCredentials? admitted, bool byBasic)
    {
        if (peer.IsLoopback) return null;
        if (!streaming) return "streaming switched off";
        if (login is null) return null;
        bool still = admitted is not null && admitted.Username == login.Username && admitted.Password == login.Password && (!byBasic || login.AllowBasic);
        return still ? null : "the channel's viewer login changed";
    }

    /// <summary>Whether the Authorization of <paramref name="req"/> (the one just accepted) is Basic.</summary>
    public static bool IsBasic(IRequestHead req) =>
        req.Query("token") is null && req["Authorization"] is { } a && a.TrimStart().StartsWith("Basic", StringComparison.OrdinalIgnoreCase);

    static bool Same(string a, string b) => CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(a), Encoding.UTF8.GetBytes(b));
}
