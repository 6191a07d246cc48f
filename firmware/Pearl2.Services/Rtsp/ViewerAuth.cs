using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Pearl2.Formats.Rtsp;

namespace Pearl2.Services.Rtsp;

/// <summary>A channel's viewer login. Basic is accepted only when the operator allowed it (it sends the password in clear).</summary>
public sealed record ViewerCredentials(string Username, string Password, bool AllowBasic = false);

public enum AuthOutcome { Accepted, Missing, Refused, Stale }

/// <summary>
/// RTSP viewer authentication: Digest (RFC 7616) with SHA-256 and MD5, Basic only if configured. Nonces are
/// stateless — a timestamp sealed with an HMAC under a key made at start — and expire after a lifetime.
/// </summary>
public sealed class ViewerAuth(TimeProvider time, TimeSpan nonceLifetime)
{
    public const string Realm = "Pearl2";
    readonly byte[] _key = RandomNumberGenerator.GetBytes(32);

    public string NewNonce()
    {
        Span<byte> n = stackalloc byte[24];
        BinaryPrimitives.WriteInt64BigEndian(n, time.GetUtcNow().ToUnixTimeMilliseconds());
        HMACSHA256.HashData(_key, n[..8]).AsSpan(0, 16).CopyTo(n[8..]);
        return Convert.ToHexString(n).ToLowerInvariant();
    }

    /// <summary>True when we made the nonce; <paramref name="stale"/> when it is ours but too old.</summary>
    public bool CheckNonce(string nonce, out bool stale)
    {
        stale = false;
        if (nonce.Length != 48) return false;
        Span<byte> n = stackalloc byte[24];
        try { Convert.FromHexString(nonce, n, out _, out _); } catch (FormatException) { return false; }
        if (!CryptographicOperations.FixedTimeEquals(HMACSHA256.HashData(_key, n[..8]).AsSpan(0, 16), n[8..])) return false;
        var age = time.GetUtcNow() - DateTimeOffset.FromUnixTimeMilliseconds(BinaryPrimitives.ReadInt64BigEndian(n));
        stale = age > nonceLifetime || age < TimeSpan.FromMinutes(-1);
        return true;
    }

    public AuthOutcome Check(RtspRequest req, ViewerCredentials creds, out string? user, out string? reason)
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
        string? nonce = h["nonce"], response = h["response"], uri = h["uri"], realm = h["realm"];
        string algorithm = h["algorithm"] ?? "MD5";
        if (user is null || nonce is null || response is null || uri is null || realm != Realm) { reason = "incomplete Digest parameters"; return AuthOutcome.Refused; }
        if (algorithm is not ("MD5" or "SHA-256" or "MD5-sess" or "SHA-256-sess")) { reason = $"unsupported algorithm {algorithm}"; return AuthOutcome.Refused; }
        if (!CheckNonce(nonce, out bool stale)) { reason = "nonce not issued by this device"; return AuthOutcome.Refused; }
        var expected = DigestAuth.ExpectedResponse(algorithm, creds.Username, Realm, creds.Password, req.Method, uri, nonce, h["qop"], h["nc"], h["cnonce"]);
        if (!(Same(user, creds.Username) & Same(response.ToLowerInvariant(), expected))) { reason = "wrong user name or password"; return AuthOutcome.Refused; }
        if (stale) { reason = "nonce expired"; return AuthOutcome.Stale; }
        return AuthOutcome.Accepted;
    }

    /// <summary>The 401 with one challenge per scheme: SHA-256 first (preferred), MD5 last (what most RTSP players take).</summary>
    public RtspResponse Challenge(int cseq, ViewerCredentials creds, bool stale)
    {
        var nonce = NewNonce();
        var r = new RtspResponse(401) { CSeq = cseq }
            .Add("WWW-Authenticate", DigestAuth.Challenge(Realm, nonce, "SHA-256", stale))
            .Add("WWW-Authenticate", DigestAuth.Challenge(Realm, nonce, "MD5", stale));
        if (creds.AllowBasic) r.Add("WWW-Authenticate", $"Basic realm=\"{Realm}\"");
        return r;
    }

    static bool Same(string a, string b) => CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(a), Encoding.UTF8.GetBytes(b));
}
