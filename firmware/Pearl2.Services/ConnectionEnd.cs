using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;

namespace Pearl2.Services;

/// <summary>For connections whose client sends nothing more once it plays (HTTP streams, a tunnel's GET): its closing is how we learn it left.</summary>
public static class ConnectionEnd
{
    /// <summary>Reads and discards whatever the client sends until it closes or the connection is aborted.</summary>
    public static async Task WaitAsync(ConnectionContext connection)
    {
        var input = connection.Transport.Input;
        try
        {
            while (true)
            {
                var r = await input.ReadAsync(connection.ConnectionClosed);
                input.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted) return;
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ConnectionResetException or SocketException or ObjectDisposedException) { }
    }
}
