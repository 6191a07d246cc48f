using System.Text;

namespace Pearl2.Formats.Rtsp;

/// <summary>An RTSP/1.0 response (RFC 2326 §7). Built on the control plane, written once.</summary>
public sealed class RtspResponse
{
    public int StatusCode { get; }
    public string Reason { get; }
    public int CSeq { get; init; } = -1;
    public List<KeyValuePair<string, string>> Headers { get; } = new();
    public byte[] Body { get; private set; } = [];

    public RtspResponse(int statusCode, string? reason = null)
    {
        StatusCode = statusCode;
        Reason = reason ?? ReasonPhrase(statusCode);
    }

    public RtspResponse Add(string name, string value) { Headers.Add(new(name, value)); return this; }

    public RtspResponse WithBody(string contentType, string body)
    {
        Body = Encoding.UTF8.GetBytes(body);
        Headers.Add(new("Content-Type", contentType));
        return this;
    }

    string Head()
    {
        var sb = new StringBuilder(256);
        sb.Append("RTSP/1.0 ").Append(StatusCode).Append(' ').Append(Reason).Append("\r\n");
        if (CSeq >= 0) sb.Append("CSeq: ").Append(CSeq).Append("\r\n");
        foreach (var h in Headers) sb.Append(h.Key).Append(": ").Append(h.Value).Append("\r\n");
        if (Body.Length > 0) sb.Append("Content-Length: ").Append(Body.Length).Append("\r\n");
        sb.Append("\r\n");
        return sb.ToString();
    }

    public int Size => Encoding.UTF8.GetByteCount(Head()) + Body.Length;

    public int WriteTo(Span<byte> dest)
    {
        int n = Encoding.UTF8.GetBytes(Head(), dest);
        Body.CopyTo(dest[n..]);
        return n + Body.Length;
    }

    public byte[] ToArray()
    {
        var b = new byte[Size];
        WriteTo(b);
        return b;
    }

    public static string ReasonPhrase(int code) => code switch
    {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        431 => "Request Header Fields Too Large",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        457 => "Invalid Range",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        _ => "Unknown",
    };
}
