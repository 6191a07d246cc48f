using System.Diagnostics;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// Switching streaming off, or turning a login on or changing it, ends at once the sessions of viewers on other hosts
/// that the new setting no longer lets in (RTSP over TCP, UDP and the HTTP tunnel, HTTP-TS), while viewers on the
/// device itself and viewers that still pass the new login play on. The other host is a second network namespace.
/// </summary>
public sealed class RevocationTests(ITestOutputHelper output) : IAsyncLifetime
{
    const string Password = "Pa55-word";
    NetworkPair _net = null!;

    public async Task InitializeAsync() => _net = await NetworkPair.CreateAsync();
    public async Task DisposeAsync() => await _net.DisposeAsync();

    /// <summary>How long each viewer would play if nobody cut it.</summary>
    const int PlaySeconds = 40;
    static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(PlaySeconds + 40);

    /// <summary>A player from a peer process, with when it ended on a clock started with it.</summary>
    sealed class Viewer
    {
        public required string Name { get; init; }
        public required Stopwatch Clock { get; init; }
        public Task<ProcessResult> Run { get; set; } = null!;
        public TimeSpan Ended { get; set; }
    }

    static Viewer Start(string name, Task<ProcessResult> run)
    {
        var v = new Viewer { Name = name, Clock = Stopwatch.StartNew() };
        v.Run = Timed();
        return v;

        async Task<ProcessResult> Timed()
        {
            var r = await run;
            v.Ended = v.Clock.Elapsed;
            return r;
        }
    }

    static Task<ProcessResult> Probe(string ns, string url, params string[] extra) => NetworkPair.RunInAsync(ns, "ffprobe", ["-v", "error", .. extra,
        "-count_frames", "-read_intervals", $"%+{PlaySeconds}", "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-of", "json", url], PeerTimeout);

    static int Frames(ProcessResult r)
    {
        try
        {
            return JsonDocument.Parse(r.Stdout).RootElement.GetProperty("streams").EnumerateArray()
                .Select(s => int.TryParse(s.GetProperty("nb_read_frames").GetString(), out int n) ? n : 0).DefaultIfEmpty(0).Max();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException) { return 0; }
    }

    static string Channel(string name, string? auth, bool streaming = true) =>
        $$"""{ "name": "{{name}}", "streaming": {{(streaming ? "true" : "false")}}, "video": { "width": 320, "height": 240, "bitrateKbps": 300 }{{(auth is null ? "" : ", \"auth\": " + auth)}} }""";

    static string Config(params string[] channels) => $$"""{ "channels": [ {{string.Join(", ", channels)}} ], "rtsp": { "port": 554 } }""";

    async Task ReloadAsync(Pearl2dProcess device, string config)
    {
        int before = device.CountInLog("config.applied");
        // The same ports as at the start (the test chose them free): only the channels change.
        var now = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(device.ConfigPath))!.AsObject();
        now["channels"] = System.Text.Json.Nodes.JsonNode.Parse(config)!["channels"]!.DeepClone();
        File.WriteAllText(device.ConfigPath, now.ToJsonString());
        device.Signal(1);
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (device.CountInLog("config.applied") == before && DateTime.UtcNow < until) await Task.Delay(100);
        Assert.True(device.CountInLog("config.applied") > before, "the reload was not applied:\n" + device.Log);
    }

    static async Task WaitForAsync(Pearl2dProcess device, string text, int count)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (device.CountInLog(text) < count && DateTime.UtcNow < until) await Task.Delay(100);
        Assert.True(device.CountInLog(text) >= count, $"{count} × {text} expected:\n{device.Log}");
    }

    /// <summary>Ended by the device soon after <paramref name="at"/> (it would have played <see cref="PlaySeconds"/> otherwise).</summary>
    void AssertCutSoonAfter(Viewer v, TimeSpan at)
    {
        output.WriteLine($"{v.Name}: ended at {v.Ended.TotalSeconds:F1} s (change at {at.TotalSeconds:F1} s), {Frames(v.Run.Result)} frames, exit {v.Run.Result.ExitCode}");
        Assert.True(v.Ended > at, $"{v.Name} ended before the change: {v.Run.Result.Stderr}");
        Assert.True(v.Ended < at + TimeSpan.FromSeconds(12), $"{v.Name} was not cut when the change came (ended {v.Ended.TotalSeconds:F1} s, change {at.TotalSeconds:F1} s)");
    }

    void AssertPlayedThrough(Viewer v)
    {
        int frames = Frames(v.Run.Result);
        output.WriteLine($"{v.Name}: ended at {v.Ended.TotalSeconds:F1} s, {frames} frames, exit {v.Run.Result.ExitCode} {v.Run.Result.Stderr.Trim()}");
        Assert.Equal(0, v.Run.Result.ExitCode);
        Assert.True(frames >= PlaySeconds * 20, $"{v.Name} decoded {frames} frames in what should have been {PlaySeconds} s");
    }

    [Fact]
    public async Task StreamingOffCutsEveryDoorFromOtherHostsAtOnceAndTheDeviceItselfPlaysOn()
    {
        await using var device = await Pearl2dProcess.StartInAsync(_net.Device, Config(Channel("Stage", null)), channels: 1);
        string host = $"{NetworkPair.DeviceAddress}:{device.RtspBase}";
        var http = JsonDocument.Parse(File.ReadAllText(device.ConfigPath)).RootElement.GetProperty("http").GetProperty("port").GetInt32();
        int udp = Peers.FreeUdpPortBase(10);
        var external = new[]
        {
            Start("tcp", Probe(_net.External, $"rtsp://{host}/stream.sdp", "-rtsp_transport", "tcp")),
            Start("udp", Probe(_net.External, $"rtsp://{host}/stream.sdp", "-rtsp_transport", "udp", "-min_port", udp.ToString(), "-max_port", (udp + 9).ToString())),
            Start("tunnel", Probe(_net.External, $"rtsp://{host}/stream.sdp", "-rtsp_transport", "http")),
            Start("ts", Probe(_net.External, $"http://{NetworkPair.DeviceAddress}:{http}/stream.ts")),
        };
        var local = Start("loopback tcp", Probe(_net.Device, $"rtsp://127.0.0.1:{device.RtspBase}/stream.sdp", "-rtsp_transport", "tcp"));
        await WaitForAsync(device, "rtsp.play", 4);
        await WaitForAsync(device, "http.play", 1);
        await Task.Delay(2000);

        var change = external[0].Clock.Elapsed;
        await ReloadAsync(device, Config(Channel("Stage", null, streaming: false)));
        await Task.WhenAll(external.Select(v => v.Run));
        foreach (var v in external) AssertCutSoonAfter(v, change);
        await local.Run;
        AssertPlayedThrough(local);
        await device.WaitForLogAsync("viewers.revoked channel=1 rtsp=3 http=1 streaming=off", Pearl2dProcess.LogLag);
        // The device goes on serving (a new external viewer is refused, as before).
        var late = await Probe(_net.External, $"rtsp://{host}/stream.sdp", "-rtsp_transport", "tcp");
        Assert.Contains("403", late.Stderr);
    }

    [Fact]
    public async Task ALoginTurnedOnOrChangedCutsViewersNotUnderItAndKeepsThoseThatStillPass()
    {
        string login = $$"""{ "username": "viewer", "password": "{{Password}}" }""";
        string loginBasic = $$"""{ "username": "viewer", "password": "{{Password}}", "allowBasic": true }""";
        string changed = """{ "username": "viewer", "password": "another-one" }""";
        await using var device = await Pearl2dProcess.StartInAsync(_net.Device, Config(Channel("Open", null), Channel("Locked", loginBasic)), channels: 2);
        int ch1 = device.RtspBase, ch2 = device.RtspBase + 1;
        var http = JsonDocument.Parse(File.ReadAllText(device.ConfigPath)).RootElement.GetProperty("http").GetProperty("port").GetInt32() + 1;
        var open = Start("channel 1 without a login", Probe(_net.External, $"rtsp://{NetworkPair.DeviceAddress}:{ch1}/stream.sdp", "-rtsp_transport", "tcp"));
        var local = Start("channel 1 from the device itself", Probe(_net.Device, $"rtsp://127.0.0.1:{ch1}/stream.sdp", "-rtsp_transport", "tcp"));
        var digest = Start("channel 2 by Digest", Probe(_net.External, $"rtsp://viewer:{Password}@{NetworkPair.DeviceAddress}:{ch2}/stream.sdp", "-rtsp_transport", "tcp"));
        var basic = Start("channel 2 by Basic", NetworkPair.RunInAsync(_net.External, "curl", ["-s", "-o", "/dev/null", "-w", "%{size_download}", "--basic", "-u", $"viewer:{Password}",
            "--max-time", PlaySeconds.ToString(), $"http://{NetworkPair.DeviceAddress}:{http}/stream.ts"], PeerTimeout));
        await WaitForAsync(device, "rtsp.play", 3);
        await WaitForAsync(device, "http.play", 1);
        await Task.Delay(2000);

        // Channel 1 gets a login; channel 2 stops taking Basic: the viewer without a login and the Basic one go.
        // Each viewer's times are on its own clock (they started one after another): take the change on both.
        var first = open.Clock.Elapsed;
        var firstBasic = basic.Clock.Elapsed;
        await ReloadAsync(device, Config(Channel("Open", login), Channel("Locked", login)));
        await Task.WhenAll(open.Run, basic.Run);
        AssertCutSoonAfter(open, first);
        output.WriteLine($"basic: {basic.Run.Result.Stdout} bytes, exit {basic.Run.Result.ExitCode}, ended {basic.Ended.TotalSeconds:F1} s (change at {firstBasic.TotalSeconds:F1} s)");
        Assert.True(basic.Ended > firstBasic && basic.Ended < firstBasic + TimeSpan.FromSeconds(12), $"the Basic viewer was not cut: ended {basic.Ended.TotalSeconds:F1} s");
        Assert.NotEqual(28, basic.Run.Result.ExitCode); // 28: curl's own --max-time, the stream went on to the end
        await device.WaitForLogAsync("viewers.revoked channel=1 rtsp=1 http=0", Pearl2dProcess.LogLag);
        await device.WaitForLogAsync("viewers.revoked channel=2 rtsp=0 http=1", Pearl2dProcess.LogLag);
        Assert.False(digest.Run.IsCompleted, "the Digest viewer, still under the same login, was cut");

        // The password changes: the Digest viewer goes too.
        await Task.Delay(3000);
        var second = digest.Clock.Elapsed;
        await ReloadAsync(device, Config(Channel("Open", login), Channel("Locked", changed)));
        await digest.Run;
        AssertCutSoonAfter(digest, second);
        await device.WaitForLogAsync("viewers.revoked channel=2 rtsp=1 http=0", Pearl2dProcess.LogLag);

        await local.Run;
        AssertPlayedThrough(local);
    }
}
