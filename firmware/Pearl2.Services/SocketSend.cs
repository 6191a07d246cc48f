using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Pearl2.Services;

public static class SocketSend
{
    /// <summary>Writes all of <paramref name="bytes"/> to a stream socket (allocation-free: pooled async builder).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask AllAsync(Socket socket, ReadOnlyMemory<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            int n = await socket.SendAsync(bytes, SocketFlags.None);
            if (n <= 0) throw new IOException("socket closed");
            bytes = bytes[n..];
        }
    }
}
