using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// Thousands of idle TCP connections from another host (a second network namespace) to a channel's RTSP and HTTP
/// ports: the viewer that was playing before decodes cleanly through the flood, the device takes at most its
/// per-host limit from that host, closes the idle ones once, and the log grows by a handful of lines.
/// </summary>
[Collection(Quiet.Name)]
public sealed class FloodTests(ITestOutputHelper output) : IAsyncLifetime
{
    NetworkPair _net = null!;

    public async Task InitializeAsync() => _net = await NetworkPair.CreateAsync();
    public async Task DisposeAsync() => await _net.DisposeAsync();

    /// <summary>
    /// Opens COUNT connections to HOST:PORT as fast as it can (non-blocking connects), holds them HOLD seconds
    /// sending nothing, then prints how many it opened and how many the server had closed by then.
    /// </summary>
    const string FloodScript = """
        import errno, resource, select, socket, sys, time
        host, port, count, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        resource.setrlimit(resource.RLIMIT_NOFILE, (count + 100, count + 100))
        socks, failed = [], 0
        for i in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect((host, port))
            except BlockingIOError:
                pass
            except OSError:
                failed += 1
                s.close()
                continue
            socks.append(s)
        time.sleep(hold)
        closed = 0
        for s in socks:
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        print(len(socks), failed, closed)
        """;

    static int Threads(int pid) =>
        int.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("Threads:", StringComparison.Ordinal))[8..].Trim());

    [Fact]
    public async Task AFloodOfIdleConnectionsIsCappedAndClosedOnceWhileAPlayingViewerDecodesThrough()
    {
        await using var device = await Pearl2dProcess.StartInAsync(_net.Device, """
            { "channels": [ { "name": "Stage", "video": { "width": 320, "height": 240, "bitrateKbps": 300 } } ] }
            """, channels: 1);
        int http = JsonDocument.Parse(File.ReadAllText(device.ConfigPath)).RootElement.GetProperty("http").GetProperty("port").GetInt32();
        string script = Path.Combine(Path.GetTempPath(), $"pearl2-flood-{Environment.ProcessId}.py");
        File.WriteAllText(script, FloodScript);
        try
        {
            // The viewer plays from the flooding host itself, before and through the flood.
            const int seconds = 30;
            var viewer = NetworkPair.RunInAsync(_net.External, "ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-count_frames", "-read_intervals", $"%+{seconds}",
                "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-of", "json", $"rtsp://{NetworkPair.DeviceAddress}:{device.RtspBase}/stream.sdp"], TimeSpan.FromSeconds(seconds + 60));
            await device.WaitForLogAsync("rtsp.play", TimeSpan.FromSeconds(20));
            int threadsBefore = Threads(device.Pid), linesBefore = device.Log.Split('\n').Length;

            var rtspFlood = NetworkPair.RunInAsync(_net.External, "python3", [script, NetworkPair.DeviceAddress, device.RtspBase.ToString(), "5000", "15"], TimeSpan.FromSeconds(90));
            var httpFlood = NetworkPair.RunInAsync(_net.External, "python3", [script, NetworkPair.DeviceAddress, http.ToString(), "3000", "15"], TimeSpan.FromSeconds(90));
            int threadsMost = threadsBefore;
            while (!(rtspFlood.IsCompleted && httpFlood.IsCompleted))
            {
                threadsMost = Math.Max(threadsMost, Threads(device.Pid));
                await Task.Delay(500);
            }
            foreach (var (door, f) in new[] { ("rtsp", rtspFlood.Result), ("http", httpFlood.Result) })
            {
                output.WriteLine($"{door} flood: opened, failed, closed by the device = {f.Stdout.Trim()} {f.Stderr.Trim()}");
                Assert.Equal(0, f.ExitCode);
                var n = f.Stdout.Trim().Split(' ').Select(int.Parse).ToArray();
                // All but the per-host limit were reset at once; the ones taken were closed for sending nothing.
                Assert.True(n[2] >= n[0] - 5, $"{door}: the device kept {n[0] - n[2]} idle connections from one host past 15 s");
            }

            var played = await viewer;
            output.WriteLine($"viewer: exit {played.ExitCode} {played.Stdout.Trim()} {played.Stderr.Trim()}");
            Assert.Equal(0, played.ExitCode);
            Assert.Equal("", played.Stderr.Trim()); // decoded cleanly: no error from the decoder or the demuxer
            int frames = int.Parse(JsonDocument.Parse(played.Stdout).RootElement.GetProperty("streams")[0].GetProperty("nb_read_frames").GetString()!);
            Assert.True(frames >= seconds * 25, $"the viewer decoded {frames} frames in {seconds} s");

            // Quiet for 10 s: each flood is summed up in one line.
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (device.CountInLog("connections.flood_ended") < 2 && DateTime.UtcNow < until) await Task.Delay(250);
            var added = device.Log.Split('\n').Skip(linesBefore - 1).Where(l => l.Length > 0).ToArray();
            output.WriteLine($"threads {threadsBefore} → at most {threadsMost}; {added.Length} log lines during the flood:\n{string.Join('\n', added.Where(l => !l.Contains("rtsp.stats")))}");
            Assert.Equal(1, device.CountInLog($"connections.refusing listener=rtsp:{device.RtspBase}"));
            Assert.Equal(1, device.CountInLog($"connections.refusing listener=http:{http}"));
            Assert.Equal(2, device.CountInLog("connections.flood_ended"));
            Assert.True(added.Length < 40, $"{added.Length} log lines for two floods");
        }
        finally { File.Delete(script); }
    }
}
