using System.Buffers;
using System.Text;

namespace Pearl2.Formats.Rtsp;

public enum RtspParseStatus { Incomplete, Complete, Malformed, TooLarge }

/// <summary>One parsed RTSP/1.0 request (RFC 2326 §6). Control plane: strings are fine here.</summary>
public sealed class RtspRequest : IRequestHead
{
    public required string Method { get; init; }
    public required string Uri { get; init; }
    public required string Version { get; init; }
    /// <summary>-1 when the request had no (valid) CSeq header.</summary>
    public int CSeq { get; init; } = -1;
    public required IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; }
    public ReadOnlyMemory<byte> Body { get; init; }

    public string? this[string name]
    {
        get
        {
            foreach (var h in Headers)
                if (string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)) return h.Value;
            return null;
        }
    }

    /// <summary>The path of the request URI: "rtsp://host:554/stream.sdp/trackID=0" → "/stream.sdp/trackID=0".</summary>
    public string Path => RtspUri.PathOf(Uri);

    /// <summary>A query parameter of the request URI ("/stream.ts?token=abc" → "abc" for "token"), percent-decoded; null when absent.</summary>
    public string? Query(string name) => RtspUri.QueryValue(Uri, name);
}

public static class RtspUri
{
    public static string PathOf(string uri)
    {
        if (uri == "*") return "*";
        int scheme = uri.IndexOf("://", StringComparison.Ordinal);
        if (scheme < 0) return uri.StartsWith('/') ? StripQuery(uri) : "/" + StripQuery(uri);
        int slash = uri.IndexOf('/', scheme + 3);
        return slash < 0 ? "/" : StripQuery(uri[slash..]);
    }

    public static string? QueryValue(string uri, string name)
    {
        int q = uri.IndexOf('?');
        if (q < 0) return null;
        foreach (var pair in uri.AsSpan(q + 1).Split('&'))
        {
            var part = uri.AsSpan(q + 1)[pair];
            int eq = part.IndexOf('=');
            var key = eq < 0 ? part : part[..eq];
            if (key.SequenceEqual(name)) return eq < 0 ? "" : System.Uri.UnescapeDataString(part[(eq + 1)..].ToString());
        }
        return null;
    }

    static string StripQuery(string p)
    {
        int q = p.IndexOf('?');
        return q < 0 ? p : p[..q];
    }
}

/// <summary>Parses RTSP requests out of a byte stream; bounded by <see cref="MaxHeaderBytes"/> and <see cref="MaxBodyBytes"/>.</summary>
public static class RtspRequestParser
{
    public const int MaxHeaderBytes = 8192;
    public const int MaxBodyBytes = 65536;
    public const int MaxHeaders = 64;
    static ReadOnlySpan<byte> HeaderEnd => "\r\n\r\n"u8;

    /// <summary>
    /// Parses one request from the start of <paramref name="buffer"/>. On Complete, <paramref name="consumed"/>
    /// is the number of bytes the request occupied. On Malformed, <paramref name="consumed"/> covers the bad
    /// header block so the caller can answer 400 and carry on with the next request.
    /// </summary>
    public static RtspParseStatus TryParse(ReadOnlySequence<byte> buffer, out RtspRequest? request, out long consumed, out string? error)
        => TryParse(buffer, false, out request, out consumed, out error);

    /// <summary>As above; with <paramref name="allowHttp"/> an HTTP/1.x request line is accepted too (the tunnel's GET and POST).</summary>
    public static RtspParseStatus TryParse(ReadOnlySequence<byte> buffer, bool allowHttp, out RtspRequest? request, out long consumed, out string? error)
    {
        request = null; consumed = 0; error = null;
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryReadTo(out ReadOnlySequence<byte> head, HeaderEnd, advancePastDelimiter: true))
        {
            if (buffer.Length > MaxHeaderBytes) { error = "request header larger than 8192 bytes"; return RtspParseStatus.TooLarge; }
            return RtspParseStatus.Incomplete;
        }
        if (head.Length > MaxHeaderBytes) { error = "request header larger than 8192 bytes"; return RtspParseStatus.TooLarge; }
        long headLen = reader.Consumed;
        Span<byte> tmp = stackalloc byte[(int)head.Length];
        head.CopyTo(tmp);
        var status = ParseHead(tmp, allowHttp, out var method, out var uri, out var version, out var headers, out var cseq, out int contentLength, out error);
        if (status != RtspParseStatus.Complete)
        {
            consumed = headLen;
            return status;
        }
        if (allowHttp && version!.StartsWith("HTTP/", StringComparison.Ordinal))
        {
            // A tunnel's POST announces a huge body that never ends: the caller reads the body itself.
            consumed = headLen;
            request = new RtspRequest { Method = method!, Uri = uri!, Version = version, Headers = headers!, CSeq = cseq };
            return RtspParseStatus.Complete;
        }
        if (contentLength > MaxBodyBytes) { error = "body larger than 65536 bytes"; return RtspParseStatus.TooLarge; }
        if (buffer.Length - headLen < contentLength) return RtspParseStatus.Incomplete;
        var body = contentLength == 0 ? ReadOnlyMemory<byte>.Empty : buffer.Slice(headLen, contentLength).ToArray();
        consumed = headLen + contentLength;
        request = new RtspRequest { Method = method!, Uri = uri!, Version = version!, Headers = headers!, CSeq = cseq, Body = body };
        return RtspParseStatus.Complete;
    }

    static RtspParseStatus ParseHead(ReadOnlySpan<byte> head, bool allowHttp, out string? method, out string? uri, out string? version,
        out List<KeyValuePair<string, string>>? headers, out int cseq, out int contentLength, out string? error) =>
        ParseHead(head, v => v.StartsWith("RTSP/"u8) || (allowHttp && v.StartsWith("HTTP/1."u8)), "protocol is not RTSP", "request line is not 'METHOD URI RTSP/1.0'",
            out method, out uri, out version, out headers, out cseq, out contentLength, out error);

    internal delegate bool VersionCheck(ReadOnlySpan<byte> version);

    /// <summary>The request line and header fields shared by RTSP and HTTP (the tokens of RFC 9110 §5.6.2, no obs-fold).</summary>
    internal static RtspParseStatus ParseHead(ReadOnlySpan<byte> head, VersionCheck versionOk, string badVersion, string badLine, out string? method, out string? uri, out string? version,
        out List<KeyValuePair<string, string>>? headers, out int cseq, out int contentLength, out string? error)
    {
        method = uri = version = null; headers = null; cseq = -1; contentLength = 0; error = null;
        int eol = head.IndexOf("\r\n"u8);
        var line = eol < 0 ? head : head[..eol];
        var rest = eol < 0 ? ReadOnlySpan<byte>.Empty : head[(eol + 2)..];

        int sp1 = line.IndexOf((byte)' ');
        int sp2 = sp1 < 0 ? -1 : line[(sp1 + 1)..].IndexOf((byte)' ');
        if (sp1 <= 0 || sp2 <= 0) { error = badLine; return RtspParseStatus.Malformed; }
        sp2 += sp1 + 1;
        var m = line[..sp1];
        var u = line[(sp1 + 1)..sp2];
        var v = line[(sp2 + 1)..];
        if (!IsToken(m)) { error = "method is not a token"; return RtspParseStatus.Malformed; }
        if (!versionOk(v)) { error = badVersion; return RtspParseStatus.Malformed; }
        if (u.Length == 0 || u.ContainsAnyInRange((byte)0, (byte)0x20) || u.Contains((byte)0x7f)) { error = "bad request URI"; return RtspParseStatus.Malformed; }
        method = Encoding.ASCII.GetString(m);
        uri = Encoding.UTF8.GetString(u);
        version = Encoding.ASCII.GetString(v);

        headers = new List<KeyValuePair<string, string>>(12);
        while (!rest.IsEmpty)
        {
            int e = rest.IndexOf("\r\n"u8);
            var h = e < 0 ? rest : rest[..e];
            rest = e < 0 ? ReadOnlySpan<byte>.Empty : rest[(e + 2)..];
            if (h.IsEmpty) continue;
            int colon = h.IndexOf((byte)':');
            if (colon <= 0 || !IsToken(h[..colon])) { error = "malformed header line"; return RtspParseStatus.Malformed; }
            if (headers.Count == MaxHeaders) { error = "more than 64 headers"; return RtspParseStatus.TooLarge; }
            var name = Encoding.ASCII.GetString(h[..colon]);
            var value = Encoding.UTF8.GetString(h[(colon + 1)..].Trim((byte)' ').Trim((byte)'\t'));
            headers.Add(new(name, value));
            if (name.Equals("CSeq", StringComparison.OrdinalIgnoreCase))
            {
                if (!int.TryParse(value, System.Globalization.NumberStyles.None, null, out cseq)) { cseq = -1; error = "CSeq is not a number"; }
            }
            else if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                if (!int.TryParse(value, System.Globalization.NumberStyles.None, null, out contentLength) || contentLength < 0)
                { error = "Content-Length is not a number"; return RtspParseStatus.Malformed; }
            }
        }
        return RtspParseStatus.Complete;
    }

    internal static bool IsToken(ReadOnlySpan<byte> s)
    {
        if (s.IsEmpty) return false;
        foreach (byte b in s)
            if (b <= 0x20 || b >= 0x7f || "()<>@,;:\\\"/[]?={}"u8.Contains(b)) return false;
        return true;
    }
}

/// <summary>An interleaved binary frame on the RTSP connection (RFC 2326 §10.12): '$', channel, 16-bit length, data.</summary>
public static class InterleavedFrame
{
    public const int HeaderSize = 4;

    public static void WriteHeader(Span<byte> dest, byte channel, int length)
    {
        dest[0] = (byte)'$';
        dest[1] = channel;
        dest[2] = (byte)(length >> 8);
        dest[3] = (byte)length;
    }

    /// <summary>True when a whole frame header is present; <paramref name="length"/> is the payload length after the header.</summary>
    public static bool TryReadHeader(ReadOnlySpan<byte> src, out byte channel, out int length)
    {
        channel = 0; length = 0;
        if (src.Length < HeaderSize || src[0] != (byte)'$') return false;
        channel = src[1];
        length = (src[2] << 8) | src[3];
        return true;
    }
}
