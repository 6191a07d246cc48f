using System.Globalization;
using System.Text;

namespace Pearl2.Formats.Rtsp;

public enum RtpLowerTransport { Udp, Tcp }

/// <summary>One transport-spec of an RTSP Transport header (RFC 2326 §12.39).</summary>
public sealed record TransportSpec
{
    public string Profile { get; init; } = "RTP/AVP";
    public RtpLowerTransport Lower { get; init; } = RtpLowerTransport.Udp;
    public bool Multicast { get; init; }
    public (int First, int Second)? Interleaved { get; init; }
    public (int First, int Second)? ClientPort { get; init; }
    public (int First, int Second)? ServerPort { get; init; }
    public uint? Ssrc { get; init; }
    public string? Mode { get; init; }

    public override string ToString()
    {
        var sb = new StringBuilder(64);
        sb.Append(Profile);
        if (Lower == RtpLowerTransport.Tcp) sb.Append("/TCP");
        sb.Append(Multicast ? ";multicast" : ";unicast");
        if (Interleaved is { } i) sb.Append(";interleaved=").Append(i.First).Append('-').Append(i.Second);
        if (ClientPort is { } c) sb.Append(";client_port=").Append(c.First).Append('-').Append(c.Second);
        if (ServerPort is { } s) sb.Append(";server_port=").Append(s.First).Append('-').Append(s.Second);
        if (Ssrc is { } ssrc) sb.Append(";ssrc=").Append(ssrc.ToString("X8", CultureInfo.InvariantCulture));
        if (Mode is { } m) sb.Append(";mode=").Append(m);
        return sb.ToString();
    }
}

public static class TransportHeader
{
    /// <summary>Parses a Transport header value: one or more comma-separated transport-specs, in the client's order of preference.</summary>
    public static bool TryParse(string value, out List<TransportSpec> specs, out string? error)
    {
        specs = new List<TransportSpec>(2);
        error = null;
        foreach (var raw in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!TryParseSpec(raw, out var spec, out error)) return false;
            specs.Add(spec!);
        }
        if (specs.Count == 0) { error = "empty Transport header"; return false; }
        return true;
    }

    static bool TryParseSpec(string raw, out TransportSpec? spec, out string? error)
    {
        spec = null; error = null;
        var parts = raw.Split(';', StringSplitOptions.TrimEntries);
        var proto = parts[0].Split('/');
        if (proto.Length < 2 || !proto[0].Equals("RTP", StringComparison.OrdinalIgnoreCase))
        { error = $"unsupported transport protocol '{parts[0]}'"; return false; }
        var lower = RtpLowerTransport.Udp;
        if (proto.Length >= 3)
        {
            if (proto[2].Equals("TCP", StringComparison.OrdinalIgnoreCase)) lower = RtpLowerTransport.Tcp;
            else if (!proto[2].Equals("UDP", StringComparison.OrdinalIgnoreCase)) { error = $"unsupported lower transport '{proto[2]}'"; return false; }
        }
        var s = new TransportSpec { Profile = proto[0].ToUpperInvariant() + "/" + proto[1].ToUpperInvariant(), Lower = lower };
        for (int i = 1; i < parts.Length; i++)
        {
            var p = parts[i];
            if (p.Length == 0) continue;
            int eq = p.IndexOf('=');
            var key = eq < 0 ? p : p[..eq];
            var val = eq < 0 ? "" : p[(eq + 1)..];
            switch (key.ToLowerInvariant())
            {
                case "unicast": s = s with { Multicast = false }; break;
                case "multicast": s = s with { Multicast = true }; break;
                case "interleaved":
                    if (!TryRange(val, 255, out var il)) { error = $"bad interleaved '{val}'"; return false; }
                    s = s with { Interleaved = il }; break;
                case "client_port":
                    if (!TryRange(val, 65535, out var cp)) { error = $"bad client_port '{val}'"; return false; }
                    s = s with { ClientPort = cp }; break;
                case "server_port":
                    if (!TryRange(val, 65535, out var spr)) { error = $"bad server_port '{val}'"; return false; }
                    s = s with { ServerPort = spr }; break;
                case "ssrc":
                    if (!uint.TryParse(val, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var ssrc)) { error = $"bad ssrc '{val}'"; return false; }
                    s = s with { Ssrc = ssrc }; break;
                case "mode": s = s with { Mode = val.Trim('"') }; break;
                default: break; // destination, source, ttl, layers, append: not used by a unicast server; ignored
            }
        }
        spec = s;
        return true;
    }

    /// <summary>"a-b" or "a" (then b = a + 1).</summary>
    static bool TryRange(string v, int max, out (int, int) range)
    {
        range = default;
        int dash = v.IndexOf('-');
        var a = dash < 0 ? v : v[..dash];
        if (!int.TryParse(a, NumberStyles.None, CultureInfo.InvariantCulture, out int first) || first > max) return false;
        int second = first + 1;
        if (dash >= 0 && (!int.TryParse(v[(dash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out second) || second > max)) return false;
        if (second > max) return false;
        range = (first, second);
        return true;
    }
}

/// <summary>The RTSP Session header (RFC 2326 §12.37): "id[;timeout=seconds]".</summary>
public readonly record struct SessionHeader(string Id, int? TimeoutSeconds)
{
    public static bool TryParse(string value, out SessionHeader header)
    {
        header = default;
        var parts = value.Split(';', StringSplitOptions.TrimEntries);
        var id = parts[0];
        if (id.Length == 0 || id.Length > 128) return false;
        foreach (char c in id)
            if (!(char.IsAsciiLetterOrDigit(c) || "$-_.+".Contains(c))) return false;
        int? timeout = null;
        for (int i = 1; i < parts.Length; i++)
            if (parts[i].StartsWith("timeout=", StringComparison.OrdinalIgnoreCase))
            {
                if (!int.TryParse(parts[i].AsSpan(8), NumberStyles.None, CultureInfo.InvariantCulture, out int t)) return false;
                timeout = t;
            }
        header = new SessionHeader(id, timeout);
        return true;
    }

    public override string ToString() => TimeoutSeconds is { } t ? $"{Id};timeout={t}" : Id;
}
