using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

/// <summary>
/// What a bare sender's added latency looks like on this machine, beside pearl2d's: one buffer the size of a key frame
/// written with blocking sends to N loopback sockets from as many threads as pearl2d has lanes (at its lanes' priority),
/// with nothing else of ours running (no encoder, hub, RTSP or packaging), while N readers drain the other ends as the
/// load client does. Each socket's time is from the round's start to the return of its write. Not a hard floor (a
/// blocking send can wait where pearl2d's never do), but it shows how much of a tail this machine's scheduling alone
/// puts on a fan-out to N loopback sockets.
/// </summary>
static class BareSender
{
    public static async Task<(double P50Us, double P99Us)> MeasureAsync(int n, int bytes, int rounds = 40)
    {
        int lanes = Math.Clamp(Environment.ProcessorCount, 1, 4);
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var senders = new Socket[n];
        var readers = new List<Task>();
        using var stop = new CancellationTokenSource();
        var receivers = new List<Socket>();
        for (int i = 0; i < n; i++)
        {
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(IPAddress.Loopback, port);
            senders[i] = await listener.AcceptSocketAsync();
            senders[i].NoDelay = true;
            senders[i].SendBufferSize = 512 * 1024;   // pearl2d's default for a viewer
            receivers.Add(client);
            readers.Add(Task.Run(async () =>
            {
                var buffer = new byte[64 * 1024];
                try { while (await client.ReceiveAsync(buffer, SocketFlags.None, stop.Token) > 0) { } }
                catch (Exception) { }
            }));
        }
        listener.Stop();
        var data = new byte[bytes];
        Random.Shared.NextBytes(data);
        var times = new double[rounds * n];
        long start = 0;
        using var go = new Barrier(lanes + 1);
        var threads = Enumerable.Range(0, lanes).Select(lane => new Thread(() =>
        {
            setpriority(0, gettid(), -10);   // as pearl2d's lanes run
            for (int r = 0; r < rounds; r++)
            {
                go.SignalAndWait();   // the round starts
                for (int i = lane; i < n; i += lanes)
                {
                    senders[i].Send(data);
                    times[r * n + i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
                }
                go.SignalAndWait();   // the round is over
            }
        }) { IsBackground = true }).ToList();
        foreach (var t in threads) t.Start();
        for (int r = 0; r < rounds; r++)
        {
            await Task.Delay(100);    // the readers drain the last round, as viewers would between key frames
            start = Stopwatch.GetTimestamp();
            go.SignalAndWait();
            go.SignalAndWait();
        }
        foreach (var t in threads) t.Join();
        stop.Cancel();
        foreach (var s in senders) s.Dispose();
        foreach (var c in receivers) c.Dispose();
        await Task.WhenAll(readers);
        Array.Sort(times);
        return (times[times.Length / 2], times[(int)(times.Length * 0.99)]);
    }

    [DllImport("libc")] static extern int gettid();
    [DllImport("libc")] static extern int setpriority(int which, int who, int prio);

    /// <summary>The median key frame's size (bytes) of an H.264 elementary stream, by ffprobe.</summary>
    public static async Task<int> KeyFrameBytesAsync(string h264)
    {
        var r = await Pearl2.Tests.Integration.Peers.RunAsync("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=size,flags", "-of", "csv=p=0", h264], TimeSpan.FromSeconds(60));
        var sizes = r.Stdout.Split('\n').Select(l => l.Split(',')).Where(f => f.Length >= 2 && f[1].StartsWith('K')).Select(f => int.Parse(f[0])).Order().ToList();
        return sizes.Count > 0 ? sizes[sizes.Count / 2] : 0;
    }
}
