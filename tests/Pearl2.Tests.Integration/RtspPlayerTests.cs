using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>One pearl2d with two small channels, shared by the player tests.</summary>
public sealed class TwoChannelDevice : IAsyncLifetime
{
    public const string Config = """
        {
          "device": { "name": "pearl2-test" },
          "channels": [
            { "name": "Test 1", "video": { "width": 640, "height": 360, "fps": 30, "bitrateKbps": 1000, "keyFrameIntervalFrames": 60 } },
            { "name": "Test 2", "video": { "width": 320, "height": 240, "fps": 30, "bitrateKbps": 400, "keyFrameIntervalFrames": 30 }, "audio": { "bitrateKbps": 64 } }
          ],
          "rtsp": { "port": 554, "statsIntervalSeconds": 5 }
        }
        """;

    public Pearl2dProcess Device { get; private set; } = null!;
    public async Task InitializeAsync() => Device = await Pearl2dProcess.StartAsync(Config);
    public async Task DisposeAsync() => await Device.DisposeAsync();
}

[CollectionDefinition("device")]
public sealed class DeviceCollection : ICollectionFixture<TwoChannelDevice>;

[Collection("device")]
public sealed class RtspPlayerTests(TwoChannelDevice fixture, ITestOutputHelper output)
{
    readonly Pearl2dProcess _device = fixture.Device;

    static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(60);

    async Task<JsonElement[]> ProbeStreamsAsync(string url, double seconds, params string[] extra)
    {
        var r = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", .. extra, "-count_frames", "-read_intervals", $"%+{seconds}",
            "-show_entries", "stream=codec_name,codec_type,width,height,sample_rate,channels,nb_read_frames", "-of", "json", url], PeerTimeout);
        output.WriteLine(r.Stdout);
        Assert.False(r.TimedOut, "ffprobe timed out");
        Assert.True(r.ExitCode == 0, $"ffprobe exit {r.ExitCode}: {r.Stderr}");
        Assert.True(r.Stderr.Trim().Length == 0, "ffprobe reported errors: " + r.Stderr);
        return JsonDocument.Parse(r.Stdout).RootElement.GetProperty("streams").EnumerateArray().ToArray();
    }

    static JsonElement Stream(JsonElement[] streams, string type) => streams.Single(s => s.GetProperty("codec_type").GetString() == type);
    static int Int(JsonElement s, string name) => int.Parse(s.GetProperty(name).ToString());

    [Fact]
    public async Task FfprobeDecodesH264AtTheConfiguredSizeAndAac48kStereo()
    {
        var streams = await ProbeStreamsAsync(_device.Url(1), 4);
        var v = Stream(streams, "video");
        Assert.Equal("h264", v.GetProperty("codec_name").GetString());
        Assert.Equal((640, 360), (Int(v, "width"), Int(v, "height")));
        Assert.True(Int(v, "nb_read_frames") >= 90, $"only {Int(v, "nb_read_frames")} video frames decoded");
        var a = Stream(streams, "audio");
        Assert.Equal("aac", a.GetProperty("codec_name").GetString());
        Assert.Equal((48000, 2), (Int(a, "sample_rate"), Int(a, "channels")));
        Assert.True(Int(a, "nb_read_frames") * 1024 >= 2 * 48000, $"only {Int(a, "nb_read_frames")} AAC frames (< 2 s)");
    }

    [Fact]
    public async Task FfmpegDecodesWithoutErrorsAtRootUrlToo()
    {
        var r = await Peers.RunAsync("ffmpeg", ["-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", _device.Url(1, "/"), "-t", "4", "-f", "null", "-progress", "pipe:1", "-"], PeerTimeout);
        Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Stderr);
        Assert.Equal("", r.Stderr.Trim());
        Assert.True(LastFrameCount(r.Stdout) >= 90, r.Stdout);
    }

    static int LastFrameCount(string progress) =>
        progress.Split('\n').Where(l => l.StartsWith("frame=")).Select(l => int.Parse(l[6..])).DefaultIfEmpty(0).Last();

    [Fact]
    public async Task GStreamerRtspsrcTcpDecodes50Frames()
    {
        var r = await Peers.RunAsync("gst-launch-1.0", ["-m", "rtspsrc", $"location={_device.Url(1)}", "protocols=tcp", "!", "rtph264depay", "!", "h264parse", "!",
            "avdec_h264", "!", "fakesink", "num-buffers=50"], PeerTimeout);
        output.WriteLine(r.Stdout[^Math.Min(2000, r.Stdout.Length)..]);
        Assert.False(r.TimedOut, "gst-launch timed out: " + r.Stderr);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("Got EOS from element \"pipeline0\"", r.Stdout); // fakesink posts EOS after its 50th decoded buffer
        Assert.DoesNotContain("ERROR", r.Stdout + r.Stderr);
    }

    [Fact]
    public async Task ViewerJoiningMidGopStartsOnAKeyFrame()
    {
        // Channel 1 has a 2 s GOP; join at a moment that is not a GOP boundary (the server's log shows the backlog it replayed).
        await Task.Delay(700 + Random.Shared.Next(600));
        var r = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v", "-show_frames", "-read_intervals", "%+#5",
            "-show_entries", "frame=key_frame,pict_type", "-of", "json", _device.Url(1)], PeerTimeout);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("", r.Stderr.Trim());
        var frames = JsonDocument.Parse(r.Stdout).RootElement.GetProperty("frames").EnumerateArray().ToArray();
        Assert.NotEmpty(frames);
        Assert.Equal(1, frames[0].GetProperty("key_frame").GetInt32());
        Assert.Equal("I", frames[0].GetProperty("pict_type").GetString());
        Assert.Matches(@"rtsp\.play channel=1 .* queued=([2-9]|\d\d+)", _device.Log);
    }

    [Fact]
    public async Task Channel2OnTheNextPortServesItsOwnStream()
    {
        var streams = await ProbeStreamsAsync(_device.Url(2), 3);
        var v = Stream(streams, "video");
        Assert.Equal((320, 240), (Int(v, "width"), Int(v, "height")));
        Assert.True(Int(v, "nb_read_frames") >= 60);
        Assert.Equal("aac", Stream(streams, "audio").GetProperty("codec_name").GetString());
    }

    [Fact]
    public async Task TwentyConcurrentFfmpegViewersDecodeWithoutErrors()
    {
        var viewers = Enumerable.Range(0, 20).Select(_ => Peers.RunAsync("ffmpeg",
            ["-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", _device.Url(1), "-t", "10", "-f", "null", "-progress", "pipe:1", "-"], PeerTimeout)).ToArray();
        var results = await Task.WhenAll(viewers);
        for (int i = 0; i < results.Length; i++)
        {
            var r = results[i];
            Assert.True(r.ExitCode == 0 && !r.TimedOut, $"viewer {i}: exit {r.ExitCode}: {r.Stderr}");
            Assert.True(r.Stderr.Trim().Length == 0, $"viewer {i} reported errors: {r.Stderr}");
            Assert.True(LastFrameCount(r.Stdout) >= 270, $"viewer {i} decoded only {LastFrameCount(r.Stdout)} frames in 10 s");
        }
    }

    [Fact]
    public async Task BadRequestsGetTheRightErrorWhileAViewerKeepsEveryFrame()
    {
        await using var viewer = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase);
        await viewer.PlayAsync(_device.Url(1));
        using var stop = new CancellationTokenSource();
        var receiving = viewer.ReceiveAsync(stop.Token);
        var ffmpeg = Peers.RunAsync("ffmpeg", ["-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", _device.Url(1), "-t", "8", "-f", "null", "-progress", "pipe:1", "-"], PeerTimeout);
        await Task.Delay(1000);

        async Task<string> Raw(string request, bool expectClose = false)
        {
            await using var c = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase);
            await c.SendRawAsync(Encoding.ASCII.GetBytes(request));
            var response = await c.ReadResponseAsync(new CancellationTokenSource(10000).Token);
            if (expectClose)
                await Assert.ThrowsAnyAsync<Exception>(() => c.ReadResponseAsync(new CancellationTokenSource(10000).Token));
            else
            {
                // The connection carries on: a good request on it still works.
                await c.SendRawAsync(Encoding.ASCII.GetBytes("OPTIONS * RTSP/1.0\r\nCSeq: 99\r\n\r\n"));
                Assert.Equal(200, RtspTestClient.Status(await c.ReadResponseAsync(new CancellationTokenSource(10000).Token)));
            }
            return response;
        }

        Assert.StartsWith("RTSP/1.0 400 ", await Raw("\u0001\u0002garbage\r\n\r\n"));
        Assert.StartsWith("RTSP/1.0 400 ", await Raw($"OPTIONS {_device.Url(1)} RTSP/1.0\r\nUser-Agent: no-cseq\r\n\r\n"));
        Assert.StartsWith("RTSP/1.0 405 ", await Raw($"FROB {_device.Url(1)} RTSP/1.0\r\nCSeq: 3\r\n\r\n"));
        Assert.StartsWith("RTSP/1.0 404 ", await Raw($"DESCRIBE {_device.Url(1, "/no/such/stream")} RTSP/1.0\r\nCSeq: 4\r\n\r\n"));
        Assert.StartsWith("RTSP/1.0 454 ", await Raw($"PLAY {_device.Url(1)} RTSP/1.0\r\nCSeq: 5\r\nSession: nosuchsession\r\n\r\n"));
        Assert.StartsWith("RTSP/1.0 461 ", await Raw($"SETUP {_device.Url(1)}/trackID=0 RTSP/1.0\r\nCSeq: 6\r\nTransport: RAW/RAW/UDP;unicast\r\n\r\n"));
        Assert.StartsWith("RTSP/1.0 505 ", await Raw($"OPTIONS * RTSP/2.0\r\nCSeq: 7\r\n\r\n"));
        Assert.StartsWith("RTSP/1.0 413 ", await Raw($"OPTIONS * RTSP/1.0\r\nCSeq: 8\r\nX-Big: {new string('x', 9000)}\r\n\r\n", expectClose: true));
        var binary = new byte[20000];
        Random.Shared.NextBytes(binary);
        binary[0] = (byte)'A';
        await using (var c = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase))
        {
            await c.SendRawAsync(binary); // random bytes: answered and/or closed, never a crash
            try { await c.ReadResponseAsync(new CancellationTokenSource(5000).Token); } catch (Exception) { }
        }

        var r = await ffmpeg;
        stop.Cancel();
        await receiving;
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("", r.Stderr.Trim());
        Assert.True(LastFrameCount(r.Stdout) >= 230, $"ffmpeg viewer decoded {LastFrameCount(r.Stdout)} frames in 8 s");
        Assert.Equal(0, viewer.SequenceGaps);
        Assert.True(viewer.VideoFrames >= 230, $"raw viewer got {viewer.VideoFrames} frames");
        Assert.False(_device.HasExited);
        Assert.Contains("rtsp.bad_request", _device.Log);
    }

    [Fact]
    public async Task PlayAnswersRtpInfoMatchingTheFirstPacket()
    {
        await using var viewer = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase + 1);
        await viewer.PlayAsync(_device.Url(2));
        var rtpInfo = RtspTestClient.Header(viewer.LastPlayResponse!, "RTP-Info");
        Assert.NotNull(rtpInfo);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        await viewer.ReceiveAsync(stop.Token);
        var seq = System.Text.RegularExpressions.Regex.Match(rtpInfo!, @"trackID=0;seq=(\d+)").Groups[1].Value;
        Assert.Equal(int.Parse(seq), viewer.FirstVideoSequence);
        Assert.True(viewer.VideoFrames > 30);
        Assert.Equal(0, viewer.SequenceGaps);
    }

    [Fact]
    public async Task TeardownEndsTheSessionAndTheConnectionCanStartAgain()
    {
        await using var viewer = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase + 1);
        await viewer.PlayAsync(_device.Url(2));
        var teardown = await viewer.RequestAsync("TEARDOWN", _device.Url(2));
        Assert.Equal(200, RtspTestClient.Status(teardown));
        var get = await viewer.RequestAsync("GET_PARAMETER", _device.Url(2));
        Assert.Equal(454, RtspTestClient.Status(get)); // the old session id is gone
    }
}

public sealed class DeviceStartTests(ITestOutputHelper output)
{
    [Fact]
    public async Task DefaultConfigStreams1080pOnBothChannels()
    {
        await using var device = await Pearl2dProcess.StartAsync(null);
        var r = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v", "-count_frames", "-read_intervals", "%+4",
            "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json", device.Url(1)], TimeSpan.FromSeconds(60));
        output.WriteLine(r.Stdout + r.Stderr);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var s = JsonDocument.Parse(r.Stdout).RootElement.GetProperty("streams")[0];
        Assert.Equal((1920, 1080), (s.GetProperty("width").GetInt32(), s.GetProperty("height").GetInt32()));
        Assert.True(int.Parse(s.GetProperty("nb_read_frames").GetString()!) >= 90);
        await device.WaitForLogAsync($"local=rtsp://127.0.0.1:{device.RtspBase + 1}/stream.sdp", Pearl2dProcess.LogLag);
    }

    [Theory]
    [InlineData("""{"channels":[{"name":"a","video":{"width":641}}]}""", "channels[0].video.width: 641 is not an even number")]
    [InlineData("""{"rtsp":{"sessionTimeoutSeconds":"long"}}""", "rtsp.sessionTimeoutSeconds:")]
    [InlineData("""{"channels":[{"name":"a","video":{"encoder":"h264_nonexistent"}}]}""", "encoder 'h264_nonexistent' is not in this libavcodec build")]
    public async Task BadConfigIsRefusedWithFieldAndReasonAndNothingStarts(string json, string expected)
    {
        var dir = Directory.CreateTempSubdirectory("pearl2d-bad").FullName;
        var path = Path.Combine(dir, "config.json");
        File.WriteAllText(path, json);
        int offset = Peers.FreeOffset(2), port = 554 + offset;
        var r = await Peers.RunAsync(Peers.Pearl2d, ["--config", path, "--port-offset", offset.ToString(), "--data-dir", Path.Combine(dir, "data")], TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains(expected, r.Stdout + r.Stderr);
        // Nothing half-started: the RTSP port was never opened.
        using var probe = new TcpClient();
        await Assert.ThrowsAnyAsync<SocketException>(() => probe.ConnectAsync("127.0.0.1", port));
    }
}
