using System.Buffers;
using Pearl2.Formats.Rtsp;

namespace Pearl2.Formats.Http;

/// <summary>One HTTP/1.0 or HTTP/1.1 request head (RFC 9112 §2–§5): the request line and the header fields. No body is read.</summary>
public sealed class HttpRequestHead : IRequestHead
{
    public required string Method { get; init; }
    public required string Uri { get; init; }
    public required string Version { get; init; }
    public required IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; }

    public string? this[string name]
    {
        get
        {
            foreach (var h in Headers)
                if (string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)) return h.Value;
            return null;
        }
    }

    /// <summary>The path of the origin-form or absolute-form target: "/stream.ts?x=1" and "http://d:8000/stream.ts" → "/stream.ts".</summary>
    public string Path => RtspUri.PathOf(Uri);

    public string? Query(string name) => RtspUri.QueryValue(Uri, name);
}

/// <summary>Parses HTTP/1.x request heads out of a byte stream; bounded like RTSP's (8 KiB, 64 fields).</summary>
public static class HttpRequestParser
{
    public const int MaxHeaderBytes = RtspRequestParser.MaxHeaderBytes;
    static ReadOnlySpan<byte> HeaderEnd => "\r\n\r\n"u8;

    /// <summary>
    /// Parses one request head from the start of <paramref name="buffer"/>; on Complete <paramref name="consumed"/> is its
    /// length (a body, if any, follows and is the caller's). A field line with whitespace before its colon, or an
    /// obs-fold continuation, is Malformed (RFC 9112 §5.1, §5.2), as is any version but HTTP/1.0 and HTTP/1.1.
    /// </summary>
    public static RtspParseStatus TryParse(ReadOnlySequence<byte> buffer, out HttpRequestHead? request, out long consumed, out string? error)
    {
        request = null; consumed = 0; error = null;
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryReadTo(out ReadOnlySequence<byte> head, HeaderEnd, advancePastDelimiter: true))
        {
            if (buffer.Length > MaxHeaderBytes) { error = "request header larger than 8192 bytes"; return RtspParseStatus.TooLarge; }
            return RtspParseStatus.Incomplete;
        }
        if (head.Length > MaxHeaderBytes) { error = "request header larger than 8192 bytes"; return RtspParseStatus.TooLarge; }
        consumed = reader.Consumed;
        Span<byte> tmp = stackalloc byte[(int)head.Length];
        head.CopyTo(tmp);
        var status = RtspRequestParser.ParseHead(tmp, v => v.SequenceEqual("HTTP/1.1"u8) || v.SequenceEqual("HTTP/1.0"u8), "protocol is not HTTP/1.0 or HTTP/1.1",
            "request line is not 'METHOD TARGET HTTP/1.1'", out var method, out var uri, out var version, out var headers, out _, out _, out error);
        if (status != RtspParseStatus.Complete) return status;
        request = new HttpRequestHead { Method = method!, Uri = uri!, Version = version!, Headers = headers! };
        return RtspParseStatus.Complete;
    }
}
