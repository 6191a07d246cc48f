using Microsoft.AspNetCore.Connections;
using Pearl2.Formats.Rtsp;

namespace Pearl2.Services;

/// <summary>Reads one request head (RTSP or HTTP/1.x request line and headers, at most 8 KiB) off a connection.</summary>
public static class RequestHead
{
    /// <summary>
    /// Complete with the request (its head consumed, a body left in the pipe); Malformed or TooLarge with the
    /// parser's reason; Incomplete when the client closed before a whole head arrived.
    /// </summary>
    public static async Task<(RtspParseStatus Status, RtspRequest? Request, string? Error)> ReadAsync(ConnectionContext connection)
    {
        var input = connection.Transport.Input;
        while (true)
        {
            var read = await input.ReadAsync(connection.ConnectionClosed);
            var status = RtspRequestParser.TryParse(read.Buffer, allowHttp: true, out var request, out long consumed, out var error);
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
