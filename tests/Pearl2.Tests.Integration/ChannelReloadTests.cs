using System.Net.Sockets;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>Channels come and go with the config (SIGHUP) while a viewer of channel 1 loses nothing.</summary>
public sealed class ChannelReloadTests(ITestOutputHelper output)
{
    static string Config(int channels, string extra = "") =>
        "{ \"channels\": [" + string.Join(",", Enumerable.Range(1, channels).Select(i =>
            $"{{ \"name\": \"Ch {i}\", \"video\": {{ \"width\": {160 + 160 * i}, \"height\": {120 + 120 * i} }}, \"audio\": {{ \"enabled\": false }} }}")) +
        "], \"rtsp\": { \"port\": 554" + extra + " } }";

    [Fact]
    public async Task AddingAndRemovingChannelsLeavesTheOthersUndisturbed()
    {
        await using var device = await Pearl2dProcess.StartAsync(Config(1), channels: 3);
        var started = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(device.ConfigPath))!; // holds the ports chosen for the test
        string Rewrite(int channels)
        {
            var next = started.DeepClone();
            next["channels"] = System.Text.Json.Nodes.JsonNode.Parse(Config(channels))!["channels"]!.DeepClone();
            return next.ToJsonString();
        }

        await using var viewer = await RtspTestClient.ConnectAsync("127.0.0.1", device.RtspBase);
        await viewer.PlayAsync(device.Url(1));
        using var stop = new CancellationTokenSource();
        var receiving = Task.Run(() => viewer.ReceiveAsync(stop.Token));

        // Grow to three channels.
        File.WriteAllText(device.ConfigPath, Rewrite(3));
        device.Signal(1);
        await device.WaitForLogAsync("channel.started channel=3", TimeSpan.FromSeconds(20));
        // Every channel that started gets its stream.url line, with the preview and page; the untouched one does not.
        await device.WaitForLogAsync("stream.url channel=3", TimeSpan.FromSeconds(20));
        Assert.Matches(@"stream\.url channel=2 name=""Ch 2"" rtsp=rtsp://\S+:\d+/stream\.sdp flv=\S+ ts=\S+ preview=http://\S+/preview\.jpg page=http://\S+/ ", device.Log);
        Assert.Equal(1, device.CountInLog("stream.url channel=1 "));
        foreach (var (ch, w) in new[] { (2, 480), (3, 640) })
        {
            var r = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v", "-count_frames", "-read_intervals", "%+2",
                "-show_entries", "stream=width,nb_read_frames", "-of", "json", device.Url(ch)], TimeSpan.FromSeconds(60));
            Assert.True(r.ExitCode == 0, r.Stderr);
            var s = JsonDocument.Parse(r.Stdout).RootElement.GetProperty("streams")[0];
            Assert.Equal(w, s.GetProperty("width").GetInt32());
        }

        // A bad file is refused whole; everything keeps running.
        File.WriteAllText(device.ConfigPath, Rewrite(3).Replace("\"width\":320", "\"width\":321"));
        device.Signal(1);
        await device.WaitForLogAsync("config.reload_refused error=\"channels[0].video.width: 321", TimeSpan.FromSeconds(10));

        // A changed name restarts channel 2 alone and prints its URLs again; a changed login prints them too.
        File.WriteAllText(device.ConfigPath, Rewrite(3).Replace("\"Ch 2\"", "\"Renamed\"").Replace("\"name\":\"Ch 3\"", "\"name\":\"Ch 3\",\"auth\":{\"username\":\"v\",\"password\":\"pass1\"}"));
        device.Signal(1);
        await device.WaitForLogAsync("stream.url channel=2 name=\"Renamed\"", TimeSpan.FromSeconds(20));
        await device.WaitForLogAsync("login=required", TimeSpan.FromSeconds(20));
        Assert.Equal(1, device.CountInLog("stream.url channel=1 "));

        // Back to one channel: ports 2 and 3 close.
        File.WriteAllText(device.ConfigPath, Rewrite(1));
        device.Signal(1);
        await device.WaitForLogAsync("channel.stopped channel=2", TimeSpan.FromSeconds(20));
        await device.WaitForLogAsync("channel.stopped channel=3", TimeSpan.FromSeconds(20));
        using (var probe = new TcpClient())
            await Assert.ThrowsAnyAsync<SocketException>(() => probe.ConnectAsync("127.0.0.1", device.RtspBase + 1));

        await Task.Delay(1000);
        stop.Cancel();
        await receiving;
        output.WriteLine($"channel 1 viewer: {viewer.VideoFrames} frames, {viewer.SequenceGaps} gaps");
        Assert.Equal(0, viewer.SequenceGaps);
        Assert.True(viewer.VideoFrames > 60);
        Assert.DoesNotContain("channel.stopped channel=1", device.Log);
    }
}

/// <summary>A UDP viewer that sends neither RTCP nor RTSP keep-alives is timed out by the heartbeat; one that keeps alive stays.</summary>
public sealed class UdpSessionTimeoutTests
{
    [Fact]
    public async Task SilentUdpViewerTimesOutKeptAliveOneStays()
    {
        await using var device = await Pearl2dProcess.StartAsync("""
            { "channels": [ { "name": "T", "video": { "width": 320, "height": 240 }, "audio": { "enabled": false } } ], "rtsp": { "port": 554, "sessionTimeoutSeconds": 5 } }
            """, channels: 1);
        await using var silent = await RtspTestClient.ConnectAsync("127.0.0.1", device.RtspBase);
        await silent.PlayUdpAsync(device.Url(1));
        await using var alive = await RtspTestClient.ConnectAsync("127.0.0.1", device.RtspBase);
        await alive.PlayUdpAsync(device.Url(1));
        using var stop = new CancellationTokenSource();
        var receiving = Task.Run(() => alive.ReceiveAsync(stop.Token));
        for (int i = 0; i < 9; i++)
        {
            await Task.Delay(1000);
            Assert.Equal(200, RtspTestClient.Status(await alive.RequestAsync("GET_PARAMETER", device.Url(1))));
        }
        stop.Cancel();
        await receiving;
        Assert.Equal(1, device.CountInLog("reason=\"session timeout\""));
        await device.WaitForLogAsync($"rtsp.abort channel=1 remote=127.0.0.1:", Pearl2dProcess.LogLag);
        Assert.True(alive.VideoFrames > 200, $"the kept-alive UDP viewer got {alive.VideoFrames} frames");
    }
}

/// <summary>Connections that never send a request are closed by the heartbeats, on the RTSP and the HTTP port alike.</summary>
public sealed class IdleConnectionTests
{
    [Fact]
    public async Task SilentConnectionsAreClosed()
    {
        int http = Peers.FreePortBase(1);
        await using var device = await Pearl2dProcess.StartAsync($$"""
            { "channels": [ { "name": "T", "video": { "width": 320, "height": 240 }, "audio": { "enabled": false } } ],
              "rtsp": { "port": 554, "sessionTimeoutSeconds": 5 }, "http": { "port": {{http}} } }
            """, channels: 1);
        var silent = new List<System.Net.Sockets.TcpClient>();
        foreach (var port in new[] { device.RtspBase, device.RtspBase, http, http })
        {
            var c = new System.Net.Sockets.TcpClient();
            await c.ConnectAsync("127.0.0.1", port);
            silent.Add(c);
        }
        var partial = new System.Net.Sockets.TcpClient(); // half a request line, then nothing
        await partial.ConnectAsync("127.0.0.1", device.RtspBase);
        await partial.GetStream().WriteAsync("OPTIONS * RT"u8.ToArray());
        silent.Add(partial);

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(25));
        foreach (var c in silent)
        {
            var buf = new byte[16];
            int n;
            try { n = await c.GetStream().ReadAsync(buf, deadline.Token); }
            catch (IOException) { n = 0; } // reset by the server: closed too
            Assert.Equal(0, n);
            c.Dispose();
        }
        // The server's log lines travel through its asynchronous console logger: give them a moment after the sockets closed.
        for (int i = 0; i < 50 && (device.CountInLog("reason=\"idle connection\"") < 3 || device.CountInLog("reason=\"no request\"") < 2); i++) await Task.Delay(100);
        Assert.Equal(3, device.CountInLog("reason=\"idle connection\""));
        Assert.Equal(2, device.CountInLog("reason=\"no request\""));
    }
}
