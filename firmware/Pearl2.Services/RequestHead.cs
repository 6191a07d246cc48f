using System.Buffers;
using Microsoft.AspNetCore.Connections;
using Pearl2.Formats.Http;
using Pearl2.Formats.Rtsp;

namespace Pearl2.Services;

/// <summary>Reads one request head (at most 8 KiB) off a connection: the I/O around the parsers in Pearl2.Formats.</summary>
public static class RequestHead
{
    delegate RtspParseStatus Parser<T>(ReadOnlySequence<byte> buffer, out T? request, out long consumed, out string? error);

    /// <summary>
    /// An RTSP request, or an HTTP/1.x one (a tunnel's GET or POST on an RTSP port). Complete with the request (its head
    /// consumed, a body left in the pipe); Malformed or TooLarge with the parser's reason; Incomplete when the client
    /// closed before a whole head arrived.
    /// </summary>
    public static Task<(RtspParseStatus Status, RtspRequest? Request, string? Error)> ReadAsync(ConnectionContext connection) =>
        ReadAsync<RtspRequest>(connection, (ReadOnlySequence<byte> b, out RtspRequest? r, out long c, out string? e) => RtspRequestParser.TryParse(b, allowHttp: true, out r, out c, out e));

    /// <summary>An HTTP/1.x request head, as <see cref="ReadAsync(ConnectionContext)"/> reads an RTSP one.</summary>
    public static Task<(RtspParseStatus Status, HttpRequestHead? Request, string? Error)> ReadHttpAsync(ConnectionContext connection) =>
        ReadAsync<HttpRequestHead>(connection, HttpRequestParser.TryParse);

    static async Task<(RtspParseStatus Status, T? Request, string? Error)> ReadAsync<T>(ConnectionContext connection, Parser<T> parse) where T : class
    {
        var input = connection.Transport.Input;
        while (true)
        {
            var read = await input.ReadAsync(connection.ConnectionClosed);
            var status = parse(read.Buffer, out var request, out long consumed, out var error);
            if (status == RtspParseStatus.Complete)
            {
                input.AdvanceTo(read.Buffer.GetPosition(consumed));
                return (status, request, null);
            }
            if (status != RtspParseStatus.Incomplete || read.IsCompleted)
            {
                input.AdvanceTo(read.Buffer.Start, read.Buffer.End);
                return (status, null, error ?? "incomplete request");
            }
            input.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        }
    }
}
