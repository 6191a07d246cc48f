using System.Security.Cryptography;
using System.Text;

namespace Pearl2.Formats.Rtsp;

public enum AuthScheme { None, Basic, Digest }

/// <summary>An Authorization header (RFC 7617 Basic, RFC 7616 Digest) as the client sent it.</summary>
public sealed record AuthorizationHeader(AuthScheme Scheme, IReadOnlyDictionary<string, string> Params, string? BasicUser = null, string? BasicPassword = null)
{
    public string? this[string name] => Params.TryGetValue(name, out var v) ? v : null;

    public static bool TryParse(string value, out AuthorizationHeader header)
    {
        header = new AuthorizationHeader(AuthScheme.None, new Dictionary<string, string>());
        value = value.Trim();
        if (value.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                var text = Encoding.UTF8.GetString(Convert.FromBase64String(value[6..].Trim()));
                int colon = text.IndexOf(':');
                if (colon < 0) return false;
                header = new AuthorizationHeader(AuthScheme.Basic, new Dictionary<string, string>(), text[..colon], text[(colon + 1)..]);
                return true;
            }
            catch (FormatException) { return false; }
        }
        if (!value.StartsWith("Digest ", StringComparison.OrdinalIgnoreCase)) return false;
        var p = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var s = value.AsSpan(7);
        while (true)
        {
            s = s.TrimStart(" \t,");
            if (s.IsEmpty) break;
            int eq = s.IndexOf('=');
            if (eq <= 0 || p.Count > 32) return false;
            var key = s[..eq].Trim().ToString();
            s = s[(eq + 1)..].TrimStart();
            string val;
            if (!s.IsEmpty && s[0] == '"')
            {
                var sb = new StringBuilder();
                int i = 1;
                for (; i < s.Length && s[i] != '"'; i++)
                {
                    if (s[i] == '\\' && i + 1 < s.Length) i++;
                    sb.Append(s[i]);
                }
                if (i >= s.Length) return false;
                val = sb.ToString();
                s = s[(i + 1)..];
            }
            else
            {
                int end = s.IndexOf(',');
                val = (end < 0 ? s : s[..end]).Trim().ToString();
                s = end < 0 ? default : s[end..];
            }
            p[key] = val;
        }
        header = new AuthorizationHeader(AuthScheme.Digest, p);
        return true;
    }
}

/// <summary>Digest computations (RFC 7616 §3.4.1, and RFC 2069 without qop, which RTSP players still use).</summary>
public static class DigestAuth
{
    public static string Hash(string algorithm, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        return Convert.ToHexString(algorithm.StartsWith("SHA-256", StringComparison.OrdinalIgnoreCase) ? SHA256.HashData(bytes) : MD5.HashData(bytes)).ToLowerInvariant();
    }

    /// <summary>The response a client knowing <paramref name="password"/> sends for these parameters.</summary>
    public static string ExpectedResponse(string algorithm, string user, string realm, string password, string method, string uri, string nonce, string? qop, string? nc, string? cnonce)
    {
        string ha1 = Hash(algorithm, $"{user}:{realm}:{password}");
        if (algorithm.EndsWith("-sess", StringComparison.OrdinalIgnoreCase)) ha1 = Hash(algorithm, $"{ha1}:{nonce}:{cnonce}");
        string ha2 = Hash(algorithm, $"{method}:{uri}");
        return string.IsNullOrEmpty(qop)
            ? Hash(algorithm, $"{ha1}:{nonce}:{ha2}")
            : Hash(algorithm, $"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}");
    }

    public static string Challenge(string realm, string nonce, string algorithm, bool stale) =>
        $"Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={algorithm}" + (stale ? ", stale=true" : "");
}
