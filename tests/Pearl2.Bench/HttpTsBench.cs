using Pearl2.Tests.Integration;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

static class LoopbackLimit
{
    /// <summary>Raw loopback TCP throughput of this machine (bit/s): four streams, 1 MiB writes, nothing else of ours, 3 s.</summary>
    public static async Task<double> MeasureAsync()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        long received = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        var tasks = new List<Task>();
        for (int i = 0; i < 4; i++)
        {
            var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port);
            var server = await listener.AcceptTcpClientAsync();
            tasks.Add(Task.Run(async () =>
            {
                var data = new byte[1 << 20];
                try { while (!stop.IsCancellationRequested) await client.GetStream().WriteAsync(data, stop.Token); }
                catch (Exception) { }
                client.Dispose();
            }));
            tasks.Add(Task.Run(async () =>
            {
                var data = new byte[1 << 20];
                try { int n; while ((n = await server.GetStream().ReadAsync(data, stop.Token)) > 0) Interlocked.Add(ref received, n); }
                catch (Exception) { }
                server.Dispose();
            }));
        }
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(tasks);
        listener.Stop();
        return received * 8 / sw.Elapsed.TotalSeconds;
    }
}
