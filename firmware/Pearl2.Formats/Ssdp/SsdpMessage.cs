using System.Buffers;
using System.Globalization;
using System.Text;
using Pearl2.Formats.Http;
using Pearl2.Formats.Rtsp;

namespace Pearl2.Formats.Ssdp;

/// <summary>
/// An SSDP search (UPnP Device Architecture 1.1 §1.3.2): <c>M-SEARCH * HTTP/1.1</c> with <c>MAN: "ssdp:discover"</c>,
/// the search target ST and, when multicast, MX (seconds the answer may be delayed; UDA says 1 to 5, larger is read as
/// 5). A unicast search may leave MX out and is answered at once.
/// </summary>
public sealed record SsdpSearch(string SearchTarget, int MaxWaitSeconds, string? UserAgent)
{
    public const int MaxMx = 5;

    /// <summary>Parses one datagram; false with the reason for anything that is not a valid M-SEARCH.</summary>
    public static bool TryParse(ReadOnlySpan<byte> datagram, bool multicast, out SsdpSearch? search, out string? error)
    {
        search = null;
        var status = HttpRequestParser.TryParse(new ReadOnlySequence<byte>(datagram.ToArray()), out var head, out _, out error);
        if (status != RtspParseStatus.Complete) { error ??= "not a whole HTTP head"; return false; }
        if (head!.Method != "M-SEARCH" || head.Uri != "*") { error = $"not an M-SEARCH * request ({head.Method} {head.Uri})"; return false; }
        if (head["MAN"] is not { } man || man.Trim() != "\"ssdp:discover\"") { error = "MAN is not \"ssdp:discover\""; return false; }
        if (head["ST"] is not { Length: > 0 } st) { error = "no ST"; return false; }
        int mx = 0;
        if (head["MX"] is { } mxText)
        {
            if (!int.TryParse(mxText.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out mx) || mx < 0) { error = $"MX '{mxText}' is not a number of seconds"; return false; }
            mx = Math.Min(mx, MaxMx);
        }
        else if (multicast) { error = "a multicast M-SEARCH needs MX"; return false; }
        search = new SsdpSearch(st.Trim(), mx, head["USER-AGENT"]);
        return true;
    }
}

/// <summary>What an SSDP announcement or search answer says about one of our targets (one line of the NT/ST table).</summary>
public sealed record SsdpTarget(string Type, string Usn);

/// <summary>
/// The messages a UPnP device sends (UDA 1.1 §1.2.2, §1.2.3, §1.2.4, §1.3.3): NOTIFY ssdp:alive, ssdp:byebye,
/// ssdp:update, and the answer to a search. Pure text; the caller sends the bytes.
/// </summary>
public static class SsdpWriter
{
    public const string MulticastAddress = "239.255.255.250";
    public const int Port = 1900;

    static string Host => $"HOST: {MulticastAddress}:{Port}\r\n";

    public static byte[] Alive(SsdpTarget t, string location, int maxAge, string server, int bootId, int configId) => Ascii(
        "NOTIFY * HTTP/1.1\r\n" + Host +
        $"CACHE-CONTROL: max-age={maxAge}\r\nLOCATION: {location}\r\nNT: {t.Type}\r\nNTS: ssdp:alive\r\nSERVER: {server}\r\nUSN: {t.Usn}\r\n" +
        $"BOOTID.UPNP.ORG: {bootId}\r\nCONFIGID.UPNP.ORG: {configId}\r\n\r\n");

    public static byte[] ByeBye(SsdpTarget t, int bootId, int configId) => Ascii(
        "NOTIFY * HTTP/1.1\r\n" + Host +
        $"NT: {t.Type}\r\nNTS: ssdp:byebye\r\nUSN: {t.Usn}\r\nBOOTID.UPNP.ORG: {bootId}\r\nCONFIGID.UPNP.ORG: {configId}\r\n\r\n");

    public static byte[] Update(SsdpTarget t, string location, int bootId, int configId, int nextBootId) => Ascii(
        "NOTIFY * HTTP/1.1\r\n" + Host +
        $"LOCATION: {location}\r\nNT: {t.Type}\r\nNTS: ssdp:update\r\nUSN: {t.Usn}\r\n" +
        $"BOOTID.UPNP.ORG: {bootId}\r\nCONFIGID.UPNP.ORG: {configId}\r\nNEXTBOOTID.UPNP.ORG: {nextBootId}\r\n\r\n");

    public static byte[] SearchResponse(SsdpTarget t, string location, int maxAge, string server, int bootId, int configId, DateTimeOffset now) => Ascii(
        "HTTP/1.1 200 OK\r\n" +
        $"CACHE-CONTROL: max-age={maxAge}\r\nDATE: {now.UtcDateTime.ToString("r", CultureInfo.InvariantCulture)}\r\nEXT:\r\nLOCATION: {location}\r\n" +
        $"SERVER: {server}\r\nST: {t.Type}\r\nUSN: {t.Usn}\r\nBOOTID.UPNP.ORG: {bootId}\r\nCONFIGID.UPNP.ORG: {configId}\r\n\r\n");

    /// <summary>
    /// Which of our targets answer a search (UDA 1.1 §1.3.2): ssdp:all → every one; upnp:rootdevice, uuid:…, a device or
    /// service type → that one. A type asked at a lower version than ours is answered with our version's line.
    /// </summary>
    public static IEnumerable<SsdpTarget> Matching(IReadOnlyList<SsdpTarget> ours, string searchTarget)
    {
        if (searchTarget == "ssdp:all") return ours;
        return ours.Where(t => t.Type == searchTarget || SameTypeLowerVersion(t.Type, searchTarget));
    }

    static bool SameTypeLowerVersion(string ours, string asked)
    {
        int a = ours.LastIndexOf(':'), b = asked.LastIndexOf(':');
        if (!ours.StartsWith("urn:", StringComparison.Ordinal) || a < 0 || b < 0 || ours[..a] != asked[..b]) return false;
        return int.TryParse(ours[(a + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int have)
               && int.TryParse(asked[(b + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int want) && want >= 1 && want <= have;
    }

    static byte[] Ascii(string s) => Encoding.ASCII.GetBytes(s);
}
