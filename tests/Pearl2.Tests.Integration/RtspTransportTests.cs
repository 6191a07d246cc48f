using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>The compatibility matrix: every transport with real players, on the shared two-channel device.</summary>
[Collection("device")]
public sealed class RtspTransportTests(TwoChannelDevice fixture, ITestOutputHelper output)
{
    readonly Pearl2dProcess _device = fixture.Device;
    static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(60);

    async Task<int> FfmpegFramesAsync(string transport, string url, int seconds, params string[] extra)
    {
        var r = await Peers.RunAsync("ffmpeg", ["-nostdin", "-v", "error", "-rtsp_transport", transport, .. extra, "-i", url, "-t", seconds.ToString(), "-f", "null", "-progress", "pipe:1", "-"], PeerTimeout);
        output.WriteLine($"{transport}: exit {r.ExitCode} {r.Stderr}");
        Assert.True(r.ExitCode == 0 && !r.TimedOut, $"ffmpeg over {transport}: exit {r.ExitCode}: {r.Stderr}");
        Assert.True(r.Stderr.Trim().Length == 0, $"ffmpeg over {transport} reported errors: {r.Stderr}");
        return r.Stdout.Split('\n').Where(l => l.StartsWith("frame=")).Select(l => int.Parse(l[6..])).DefaultIfEmpty(0).Last();
    }

    [Fact]
    public async Task FfmpegOverUdpUsesThePinnedClientPorts()
    {
        int min = Peers.FreeUdpPortBase(20), max = min + 19;
        int frames = await FfmpegFramesAsync("udp", _device.Url(1), 4, "-min_port", min.ToString(), "-max_port", max.ToString());
        Assert.True(frames >= 90, $"{frames} frames over UDP");
        // The SETUP exchange, as the server answered it: the client's pinned ports and our server ports.
        var setups = Regex.Matches(_device.Log, @"rtsp\.setup channel=1 .*transport=""RTP/AVP;unicast;client_port=(\d+)-(\d+);server_port=(\d+)-(\d+)");
        Assert.Contains(setups, m => int.Parse(m.Groups[1].Value) >= min && int.Parse(m.Groups[2].Value) <= max);
    }

    /// <summary>
    /// The threads that must run the moment they are woken (capture and encode calls, the fan-out lanes, the recording
    /// writer) at nice -10; libx264's workers, which hold whole cores per frame, at -5 below them (beside them, a woken
    /// lane waited for the end of their slice); the rest (log writer, thread pool) at 0.
    /// </summary>
    [Fact]
    public async Task TheMediaThreadsOutrankTheEncodersWorkersAndBothOutrankTheRest()
    {
        int frames = await FfmpegFramesAsync("tcp", _device.Url(1), 2);   // so that channel 1 has its TCP lane
        Assert.True(frames >= 30, $"{frames} frames over TCP");
        var threads = new List<(string Name, int Nice)>();
        foreach (var task in Directory.GetDirectories($"/proc/{_device.Pid}/task"))
        {
            try
            {
                string stat = File.ReadAllText(Path.Combine(task, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');   // after "pid (comm) ": state is field 3
                threads.Add((File.ReadAllText(Path.Combine(task, "comm")).Trim(), int.Parse(fields[16])));   // field 19: nice
            }
            catch (IOException) { }   // a thread that ended while we walked them
        }
        output.WriteLine(string.Join('\n', threads.GroupBy(t => t).Select(g => $"{g.Key.Name} {g.Key.Nice} ×{g.Count()}")));
        Assert.Contains(("video-ch1", -10), threads);
        Assert.Contains(("audio-ch1", -10), threads);
        Assert.Contains(("rtsp-tcp-1.0", -10), threads);
        Assert.Contains(("log-writer", 0), threads);
        string[] raised = ["video-ch", "audio-ch", "rtsp-tcp-", "rtsp-udp-", "rec-ch"];
        Assert.All(threads.Where(t => t.Nice == -10), t => Assert.Contains(raised, r => t.Name.StartsWith(r, StringComparison.Ordinal)));
        Assert.True(threads.Count(t => t.Nice == -5) >= 1, "no libx264 worker at nice -5");
    }

    [Fact]
    public async Task FfmpegOverHttpTunnel()
    {
        int frames = await FfmpegFramesAsync("http", _device.Url(1), 4);
        Assert.True(frames >= 90, $"{frames} frames over the HTTP tunnel");
        Assert.Contains("rtsp.tunnel_open channel=1", _device.Log);
    }

    async Task GstAsync(string location, params string[] props)
    {
        var r = await Peers.RunAsync("gst-launch-1.0", ["-m", "rtspsrc", $"location={location}", .. props, "!", "rtph264depay", "!", "h264parse", "!",
            "avdec_h264", "!", "fakesink", "num-buffers=50"], PeerTimeout);
        // On a failure, what the server said of this player's connections (why it closed one, if it did).
        string ServerSide() => string.Join("\n", _device.Log.Split('\n').Where(l => l.Contains("rtsp.") && (l.Contains("disconnect") || l.Contains("abort") || l.Contains("internal") || l.Contains("teardown"))).TakeLast(8));
        Assert.False(r.TimedOut, "gst-launch timed out: " + r.Stderr + "\nserver: " + ServerSide());
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr + "\nserver: " + ServerSide());
        Assert.Contains("Got EOS from element \"pipeline0\"", r.Stdout);
    }

    [Fact]
    public async Task GStreamerOverUdpWithPortRange()
    {
        int min = Peers.FreeUdpPortBase(10);
        await GstAsync(_device.Url(2), "protocols=udp", $"port-range={min}-{min + 9}");
        Assert.Matches($@"rtsp\.setup channel=2 .*client_port=({min}|{min + 2}|{min + 4}|{min + 6}|{min + 8})-", _device.Log);
    }

    [Fact]
    public async Task GStreamerOverHttpTunnel() => await GstAsync(_device.Url(2).Replace("rtsp://", "rtsph://"));

    [Fact]
    public async Task AllThreeTransportsAtOnceOnOneChannel()
    {
        int min = Peers.FreeUdpPortBase(10);
        var tcp = FfmpegFramesAsync("tcp", _device.Url(1), 6);
        var udp = FfmpegFramesAsync("udp", _device.Url(1), 6, "-min_port", min.ToString(), "-max_port", (min + 9).ToString());
        var http = FfmpegFramesAsync("http", _device.Url(1), 6);
        var frames = await Task.WhenAll(tcp, udp, http);
        // Each transport gets 5 s worth of frames, less what the encoder skipped at the source while this shared
        // machine was too busy to encode 1080p30 (logged as video.behind; that is no transport's loss).
        int skipped = Recordings.SkippedFrames(_device.Log);
        Assert.All(frames, f => Assert.True(f >= 150 - skipped, $"frames per transport: {string.Join(", ", frames)}; skipped at the source: {skipped}"));
    }

    [Fact]
    public async Task TcpViewerGetsASenderReportPerTrackEveryFiveSeconds()
    {
        // Once a TCP viewer keeps up, the channel's fan-out lanes write to it, sender reports included.
        await using var viewer = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase + 1);
        await viewer.PlayAsync(_device.Url(2));
        using var window = new CancellationTokenSource(TimeSpan.FromSeconds(12));
        await viewer.ReceiveAsync(window.Token);
        output.WriteLine($"sender reports: video {viewer.SenderReports[0]}, audio {viewer.SenderReports[1]}; packets: video {viewer.VideoPackets}, audio {viewer.AudioPackets}");
        // One before each track's first packet, then one every 5 s: 3 each in 12 s.
        Assert.True(viewer.SenderReports[0] >= 3 && viewer.SenderReports[1] >= 3, $"sender reports: video {viewer.SenderReports[0]}, audio {viewer.SenderReports[1]}");
        Assert.Empty(viewer.SenderReportProblems);
        Assert.Equal(0, viewer.SequenceGaps);
        Assert.True(viewer.VideoFrames >= 300, $"{viewer.VideoFrames} frames in 12 s");
    }

    [Fact]
    public async Task TunnelWithoutCookieAndPostForUnknownCookieAreRefused()
    {
        await using var c = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase);
        await c.SendRawAsync("GET /stream.sdp HTTP/1.0\r\nAccept: application/x-rtsp-tunnelled\r\n\r\n"u8.ToArray());
        Assert.StartsWith("HTTP/1.0 400", await c.ReadResponseAsync(new CancellationTokenSource(5000).Token));
        await using var p = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase);
        await p.SendRawAsync("POST /stream.sdp HTTP/1.0\r\nx-sessioncookie: nosuchcookie\r\nContent-Length: 32767\r\n\r\nT1BUSU9OUyAqIFJUU1AvMS4wDQpDU2VxOiAxDQoNCg=="u8.ToArray());
        Assert.StartsWith("HTTP/1.0 404", await p.ReadResponseAsync(new CancellationTokenSource(5000).Token));
    }
}

/// <summary>A channel with a viewer login: the right password plays in both players, a wrong one gets 401.</summary>
public sealed class RtspAuthTests(ITestOutputHelper output) : IAsyncLifetime
{
    const string Password = "s3cret-Pa55";
    Pearl2dProcess _device = null!;

    public async Task InitializeAsync() => _device = await Pearl2dProcess.StartAsync($$"""
        { "channels": [ { "name": "Locked", "video": { "width": 320, "height": 240 }, "auth": { "username": "viewer", "password": "{{Password}}" } } ],
          "rtsp": { "port": 554 } }
        """, channels: 1);

    public async Task DisposeAsync() => await _device.DisposeAsync();

    [Fact]
    public async Task RightPasswordPlaysWrongOneGets401AndIsLoggedWithoutThePassword()
    {
        var good = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-count_frames", "-read_intervals", "%+2", "-select_streams", "v",
            "-show_entries", "stream=nb_read_frames", "-of", "json", $"rtsp://viewer:{Password}@127.0.0.1:{_device.RtspBase}/stream.sdp"], TimeSpan.FromSeconds(60));
        output.WriteLine(good.Stdout + good.Stderr);
        Assert.True(good.ExitCode == 0, good.Stderr);
        Assert.True(int.Parse(JsonDocument.Parse(good.Stdout).RootElement.GetProperty("streams")[0].GetProperty("nb_read_frames").GetString()!) >= 30);

        var bad = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", $"rtsp://viewer:not-it@127.0.0.1:{_device.RtspBase}/stream.sdp"], TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("401", bad.Stderr);

        var none = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", $"rtsp://127.0.0.1:{_device.RtspBase}/stream.sdp"], TimeSpan.FromSeconds(60));
        Assert.Contains("401", none.Stderr);

        var gst = await Peers.RunAsync("gst-launch-1.0", ["-m", "rtspsrc", $"location=rtsp://127.0.0.1:{_device.RtspBase}/stream.sdp", "user-id=viewer", $"user-pw={Password}",
            "protocols=tcp", "!", "rtph264depay", "!", "h264parse", "!", "avdec_h264", "!", "fakesink", "num-buffers=30"], TimeSpan.FromSeconds(60));
        Assert.Contains("Got EOS from element \"pipeline0\"", gst.Stdout);

        var gstBad = await Peers.RunAsync("gst-launch-1.0", ["-m", "rtspsrc", $"location=rtsp://127.0.0.1:{_device.RtspBase}/stream.sdp", "user-id=viewer", "user-pw=nope",
            "protocols=tcp", "!", "rtph264depay", "!", "fakesink", "num-buffers=30"], TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, gstBad.ExitCode);
        Assert.Contains("Unauthorized", gstBad.Stdout + gstBad.Stderr);

        Assert.Contains("rtsp.auth_failed", _device.Log);
        Assert.Contains("user=\"viewer\" reason=\"wrong user name or password\"", _device.Log);
        Assert.DoesNotContain("not-it", _device.Log);
        Assert.DoesNotContain(Password, _device.Log);
    }
}

/// <summary>
/// "Open but refuse external": two network namespaces joined by a veth pair (192.0.2.1 device, 192.0.2.2 viewer),
/// made and removed by the test. Needs root (make test runs as root; apt-get needs it anyway).
/// </summary>
public sealed class StreamingDisabledAcrossNetworkTests(ITestOutputHelper output) : IAsyncLifetime
{
    NetworkPair _net = null!;
    string _dev = "", _ext = "";

    public async Task InitializeAsync()
    {
        _net = await NetworkPair.CreateAsync();
        (_dev, _ext) = (_net.Device, _net.External);
    }

    public async Task DisposeAsync() => await _net.DisposeAsync();

    Task<ProcessResult> ProbeIn(string ns, string url, string transport) => Peers.RunAsync("ip", ["netns", "exec", ns, "ffprobe", "-v", "error", "-rtsp_transport", transport,
        "-count_frames", "-read_intervals", "%+2", "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-of", "json", url], TimeSpan.FromSeconds(60));

    Task<ProcessResult> HttpProbeIn(string ns, string url) => Peers.RunAsync("ip", ["netns", "exec", ns, "ffprobe", "-v", "error",
        "-count_frames", "-read_intervals", "%+2", "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-of", "json", url], TimeSpan.FromSeconds(60));

    static int Frames(ProcessResult r) => r.ExitCode == 0 ? int.Parse(JsonDocument.Parse(r.Stdout).RootElement.GetProperty("streams")[0].GetProperty("nb_read_frames").GetString()!) : 0;

    [Fact]
    public async Task ExternalViewerRefusedWhileOffServedOnceOnLoopbackAlways()
    {
        int http = Peers.FreePortBase(1);
        string config = """
            { "channels": [ { "name": "Private", "streaming": false, "video": { "width": 320, "height": 240 } } ], "rtsp": { "port": 554 }, "http": { "port": HTTP } }
            """.Replace("HTTP", http.ToString());
        await using var device = await Pearl2dProcess.StartInAsync(_dev, config, channels: 1);
        string external = $"rtsp://192.0.2.1:{device.RtspBase}/stream.sdp", local = $"rtsp://127.0.0.1:{device.RtspBase}/stream.sdp";
        foreach (var file in new[] { "stream.flv", "stream.ts", "preview.jpg" })
        {
            var refused = await HttpProbeIn(_ext, $"http://192.0.2.1:{http}/{file}");
            Assert.NotEqual(0, refused.ExitCode);
            Assert.Contains("403", refused.Stderr);
            Assert.True(Frames(await HttpProbeIn(_dev, $"http://127.0.0.1:{http}/{file}")) >= (file == "preview.jpg" ? 1 : 30), $"the device itself must get {file} while streaming is off");
        }

        foreach (var transport in new[] { "tcp", "http", "udp" })
        {
            var refused = await ProbeIn(_ext, external, transport);
            output.WriteLine($"external {transport} while off: {refused.ExitCode} {refused.Stderr}");
            Assert.NotEqual(0, refused.ExitCode);
            if (transport == "http")
                // ffmpeg reports a refused tunnel GET only as an I/O error; the server's answer is in its log.
                Assert.Matches(@"rtsp\.tunnel_refused channel=1 remote=192\.0\.2\.2:\d+ status=403", device.Log);
            else
                Assert.Contains("403 Forbidden", refused.Stderr);
        }
        Assert.True(Frames(await ProbeIn(_dev, local, "tcp")) >= 30, "the device itself must be served while streaming is off");

        File.WriteAllText(device.ConfigPath, File.ReadAllText(device.ConfigPath).Replace("\"streaming\": false", "\"streaming\": true"));
        device.Signal(1); // SIGHUP: re-read the config, no restart
        await device.WaitForLogAsync("config.applied channel=1 streaming=True", TimeSpan.FromSeconds(10));

        foreach (var transport in new[] { "tcp", "http", "udp" })
        {
            var served = await ProbeIn(_ext, external, transport);
            output.WriteLine($"external {transport} while on: {served.ExitCode} {served.Stderr}");
            Assert.True(Frames(served) >= 30, $"external viewer over {transport} not served after streaming was enabled: {served.Stderr}");
        }
        Assert.True(Frames(await ProbeIn(_dev, local, "tcp")) >= 30);
        foreach (var file in new[] { "stream.flv", "stream.ts", "preview.jpg" })
            Assert.True(Frames(await HttpProbeIn(_ext, $"http://192.0.2.1:{http}/{file}")) >= (file == "preview.jpg" ? 1 : 30), $"external {file} not served after streaming was enabled");
        await device.WaitForLogAsync("http.refused channel=1 remote=192.0.2.2", Pearl2dProcess.LogLag);
        await device.WaitForLogAsync("rtsp.request_refused channel=1 remote=192.0.2.2", Pearl2dProcess.LogLag);
        await device.WaitForLogAsync("status=403", Pearl2dProcess.LogLag);

        // The front panel's Stream button does the same, at once: off for other hosts, loopback still served; again: on.
        Assert.Contains("streaming=off", await device.ControlAsync("panel", "press", "stream"));
        var offByPanel = await ProbeIn(_ext, external, "tcp");
        Assert.Contains("403 Forbidden", offByPanel.Stderr);
        Assert.True(Frames(await ProbeIn(_dev, local, "tcp")) >= 30, "the device itself must be served after Stream was pressed");
        Assert.Contains("led_stream=on", await device.ControlAsync("panel", "press", "stream"));
        Assert.True(Frames(await ProbeIn(_ext, external, "tcp")) >= 30, "external viewer not served after Stream was pressed again");
    }
}

/// <summary>Slow viewers never slow anyone else: stalled ones are dropped after the stall timeout; memory stays bounded.</summary>
[Collection(Quiet.Name)]
public sealed class SlowViewerTests(ITestOutputHelper output) : IAsyncLifetime
{
    Pearl2dProcess _device = null!;

    public async Task InitializeAsync() => _device = await Pearl2dProcess.StartAsync("""
        { "channels": [ { "name": "Busy", "video": { "width": 640, "height": 360, "bitrateKbps": 1500, "rateControl": "cbr" } } ],
          "rtsp": { "port": 554, "stallTimeoutSeconds": 5, "statsIntervalSeconds": 5 } }
        """, channels: 1);

    public async Task DisposeAsync() => await _device.DisposeAsync();

    [Fact]
    public async Task TwoHundredIdleTenStalledTenNormalViewersFor30Seconds()
    {
        long rssBefore = _device.RssKb;
        var idle = new List<System.Net.Sockets.TcpClient>();
        for (int i = 0; i < 200; i++)
        {
            var c = new System.Net.Sockets.TcpClient();
            await c.ConnectAsync("127.0.0.1", _device.RtspBase);
            idle.Add(c);
        }
        var stalled = new List<RtspTestClient>();
        for (int i = 0; i < 10; i++)
        {
            var c = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase);
            await c.PlayAsync(_device.Url(1));
            stalled.Add(c); // never read again
        }
        var normal = new List<RtspTestClient>();
        using var stop = new CancellationTokenSource();
        var loops = new List<Task>();
        for (int i = 0; i < 10; i++)
        {
            var c = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase);
            await c.PlayAsync(_device.Url(1));
            normal.Add(c);
            loops.Add(Task.Run(() => c.ReceiveAsync(stop.Token)));
        }
        var watch = Stopwatch.StartNew();
        long peakRss = 0;
        while (watch.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(1000);
            peakRss = Math.Max(peakRss, _device.RssKb);
        }
        stop.Cancel();
        await Task.WhenAll(loops);
        output.WriteLine($"RSS before {rssBefore / 1024} MiB, peak {peakRss / 1024} MiB; normal viewers' frames: {string.Join(", ", normal.Select(n => n.VideoFrames))}");

        foreach (var n in normal)
        {
            Assert.Equal(0, n.SequenceGaps);
            Assert.True(n.VideoFrames >= 30 * 30 * 0.97, $"a normal viewer got {n.VideoFrames} frames in 30 s");
        }
        Assert.Equal(10, _device.CountInLog("reason=\"viewer stopped reading\""));
        Assert.True(peakRss < rssBefore + 150 * 1024, $"RSS grew from {rssBefore / 1024} to {peakRss / 1024} MiB");

        foreach (var c in idle) c.Dispose();
        foreach (var c in stalled.Concat(normal)) await c.DisposeAsync();
    }
}

/// <summary>UDP sessions leave nothing behind: after 50 ffmpeg viewers tore down, the viewer count, the hub's readers, the UDP sockets and the fds are back where they were.</summary>
public sealed class UdpTeardownTests(ITestOutputHelper output)
{
    static int Fds(int pid) => Directory.GetFiles($"/proc/{pid}/fd").Length;

    /// <summary>The process's UDP sockets: its socket fds whose inodes are in /proc/net/udp or udp6.</summary>
    static int UdpSockets(int pid)
    {
        var inodes = new HashSet<string>();
        foreach (var table in new[] { $"/proc/{pid}/net/udp", $"/proc/{pid}/net/udp6" })
            foreach (var line in File.ReadLines(table).Skip(1))
                inodes.Add(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[9]);
        int n = 0;
        foreach (var fd in Directory.GetFiles($"/proc/{pid}/fd"))
        {
            try { if (new FileInfo(fd).LinkTarget is { } t && t.StartsWith("socket:[") && inodes.Contains(t[8..^1])) n++; }
            catch (IOException) { } // closed while we looked
        }
        return n;
    }

    [Fact]
    public async Task FiftyUdpSessionsTornDownLeaveNoViewerPortOrFd()
    {
        await using var device = await Pearl2dProcess.StartAsync("""
            { "channels": [ { "name": "Udp", "video": { "width": 320, "height": 240, "bitrateKbps": 400 } } ], "rtsp": { "port": 554, "statsIntervalSeconds": 1 } }
            """, channels: 1);
        async Task<ProcessResult> Viewer(int min) => await Peers.RunAsync("ffmpeg", ["-nostdin", "-v", "error", "-rtsp_transport", "udp", "-min_port", min.ToString(), "-max_port", (min + 3).ToString(),
            "-i", device.Url(1), "-t", "1", "-f", "null", "-"], TimeSpan.FromSeconds(60));
        Assert.Equal(0, (await Viewer(Peers.FreeUdpPortBase(4))).ExitCode); // warm up: threads, pools and lazily opened files
        await Task.Delay(1500);
        int fds = Fds(device.Pid), udp = UdpSockets(device.Pid);
        output.WriteLine($"idle after one viewer: fds={fds} udp_sockets={udp}");

        for (int round = 0; round < 5; round++)
        {
            int min = Peers.FreeUdpPortBase(40);
            var viewers = await Task.WhenAll(Enumerable.Range(0, 10).Select(k => Viewer(min + 4 * k)));
            Assert.All(viewers, v => Assert.True(v.ExitCode == 0 && !v.TimedOut, v.Stderr));
            if (round == 0) Assert.Contains("viewers_rtsp=0", await device.ControlAsync("status"));
        }
        // ffmpeg sends its TEARDOWN without waiting for the answer and exits, so the last ones may still be on their way.
        // A session whose TEARDOWN was lost to the client's close ends as a disconnect that still names its session.
        int Ended() => device.CountInLog("rtsp.teardown channel=1")
            + device.Log.Split('\n').Count(l => l.Contains("rtsp.disconnect channel=1") && !l.Contains("session=-"));
        for (int i = 0; i < 100 && Ended() < 51; i++) await Task.Delay(100);
        Assert.Equal(51, Ended());
        // The next stats line after the last viewer left says nobody watches and the UDP loop left the hub.
        int lines = device.CountInLog("rtsp.stats channel=1");
        for (int i = 0; i < 50 && device.CountInLog("rtsp.stats channel=1") == lines; i++) await Task.Delay(100);
        await Task.Delay(1200);
        var last = device.Log.Split('\n').Last(l => l.Contains("rtsp.stats channel=1"));
        output.WriteLine(last);
        Assert.Contains("viewers=0 hub_readers=0", last);
        Assert.Contains("channel=1 viewers_rtsp=0 viewers_http=0", await device.ControlAsync("status"));
        Assert.Equal(udp, UdpSockets(device.Pid));
        Assert.True(Fds(device.Pid) <= fds + 2, $"fds grew from {fds} to {Fds(device.Pid)} after 50 sessions");
        // Idle, the channel stops logging stats lines.
        int idleLines = device.CountInLog("rtsp.stats channel=1");
        await Task.Delay(3000);
        Assert.Equal(idleLines, device.CountInLog("rtsp.stats channel=1"));
    }
}
