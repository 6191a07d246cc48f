namespace Pearl2.Formats;

/// <summary>
/// What RTSP/1.0 (RFC 2326 §6) and HTTP/1.1 (RFC 9112 §3) requests have in common: a request line and header fields.
/// The viewer login reads requests of both doors through it.
/// </summary>
public interface IRequestHead
{
    string Method { get; }
    /// <summary>The request target as sent: "rtsp://host/stream.sdp", "/stream.ts?token=…".</summary>
    string Uri { get; }
    string Version { get; }
    IReadOnlyList<KeyValuePair<string, string>> Headers { get; }
    /// <summary>The first header of that name (case-insensitive), or null.</summary>
    string? this[string name] { get; }
    /// <summary>The path of the target without its query.</summary>
    string Path { get; }
    /// <summary>A query parameter of the target, percent-decoded; null when absent.</summary>
    string? Query(string name);
}
