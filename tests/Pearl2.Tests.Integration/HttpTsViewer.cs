using System.Net;
using System.Net.Sockets;

namespace Pearl2.Tests.Integration;

/// <summary>A light HTTP-TS viewer: reads /stream.ts, counts video PES starts (frames) and continuity-counter gaps (loss).</summary>
public sealed class HttpTsViewer : IAsyncDisposable
{
    readonly TcpClient _tcp = new();
    public long Frames, Gaps, Bytes;
    int _lastCc = -1;

    public static async Task<HttpTsViewer> OpenAsync(int port)
    {
        var v = new HttpTsViewer();
        await v._tcp.ConnectAsync(IPAddress.Loopback, port);
        await v._tcp.GetStream().WriteAsync("GET /stream.ts HTTP/1.1\r\nHost: bench\r\n\r\n"u8.ToArray());
        return v;
    }

    public async Task ReceiveAsync(CancellationToken ct)
    {
        var s = _tcp.GetStream();
        var buf = new byte[256 * 1024];
        int have = 0;
        bool headerDone = false;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                int n = await s.ReadAsync(buf.AsMemory(have), ct);
                if (n == 0) return;
                Bytes += n;
                have += n;
                int at = 0;
                if (!headerDone)
                {
                    int end = buf.AsSpan(0, have).IndexOf("\r\n\r\n"u8);
                    if (end < 0) continue;
                    at = end + 4;
                    headerDone = true;
                }
                for (; at + 188 <= have; at += 188)
                {
                    if (buf[at] != 0x47) { Gaps++; continue; }
                    int pid = (buf[at + 1] & 0x1f) << 8 | buf[at + 2];
                    if (pid != 0x100) continue;
                    int cc = buf[at + 3] & 0x0f;
                    if (_lastCc >= 0 && cc != ((_lastCc + 1) & 0x0f)) Gaps++;
                    _lastCc = cc;
                    if ((buf[at + 1] & 0x40) != 0) Frames++;
                }
                Buffer.BlockCopy(buf, at, buf, 0, have - at);
                have -= at;
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException) { }
    }

    public ValueTask DisposeAsync() { _tcp.Dispose(); return ValueTask.CompletedTask; }
}

