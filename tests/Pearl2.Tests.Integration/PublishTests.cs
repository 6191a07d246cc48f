using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// Publishing to real servers: nginx with Debian's RTMP module (and an nginx stream TLS proxy for RTMPS), FFmpeg's SRT
/// listener and caller. What arrived is judged by ffprobe and ffmpeg on the server's side, never by our own counters.
/// </summary>
public sealed class PublishTests(ITestOutputHelper output)
{
    const string Api = "/api/v2.0";

    static async Task<string> ProbeAsync(string url, params string[] extra)
    {
        var r = await Peers.RunAsync("ffprobe", [.. extra, "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "compact=p=0:nk=1", url], TimeSpan.FromSeconds(30));
        return r.Stdout.Trim() + (r.ExitCode != 0 ? $" (ffprobe exit {r.ExitCode}: {r.Stderr.Trim()})" : "");
    }

    static async Task<AdminClient> AdminAsync(Pearl2dProcess device)
    {
        var cfg = JsonNode.Parse(File.ReadAllText(device.ConfigPath))!["admin"]!;
        using var anon = new AdminClient("127.0.0.1", cfg["port"]!.GetValue<int>());
        await AdminApiTests.SetupAsync(anon);
        return anon.As("admin", AdminApiTests.AdminPassword);
    }

    static async Task WaitForStartedAsync(Pearl2dProcess device, int count, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until)
        {
            if (Regex.Matches(device.Log, "publish.started ").Count >= count) return;
            await Task.Delay(100);
        }
        throw new TimeoutException($"fewer than {count} publish.started lines:\n{string.Join('\n', device.Log.Split('\n').Where(l => l.Contains("publish.")))}");
    }

    /// <summary>
    /// One channel pushed to three destinations at once: RTMP with the key in its own field, RTMP with the key at the end
    /// of the URL, and RTMPS through nginx's TLS proxy (the test certificate trusted through the system store). ffprobe
    /// on nginx's live application sees H.264 and AAC at the channel's size on each. The Pearl API lists and stops one;
    /// nginx's own recording of it then plays through ffmpeg without a single error; the others go on.
    /// </summary>
    [Fact]
    public async Task ThreeDestinationsAtOnceArriveAsH264AndAacAndNginxsRecordingPlaysClean()
    {
        await using var nginx = await NginxRtmpPeer.StartAsync();
        await using var device = await Pearl2dProcess.StartWithEnvAsync($$"""
            { "channels": [ { "name": "Hall", "video": { "width": 320, "height": 180, "bitrateKbps": 600, "keyFrameIntervalFrames": 30 },
                              "publishers": [
                                { "name": "key in a field", "url": "rtmp://127.0.0.1:{{nginx.Port}}/live", "streamKey": "one" },
                                { "name": "key in the URL", "url": "rtmp://127.0.0.1:{{nginx.Port}}/live/two" },
                                { "name": "over TLS", "url": "rtmps://localhost:{{nginx.TlsPort}}/live", "streamKey": "three" } ] } ] }
            """, 1, new() { ["SSL_CERT_FILE"] = nginx.CertificateFile });
        await WaitForStartedAsync(device, 3, TimeSpan.FromSeconds(30));
        foreach (var key in new[] { "one", "two", "three" })
        {
            string probe = await ProbeAsync(nginx.Live(key));
            output.WriteLine($"{key}: {probe}");
            Assert.Contains("h264|320|180", probe);
            Assert.Contains("aac", probe);
        }

        using var admin = await AdminAsync(device);
        var list = (await admin.GetAsync($"{Api}/channels/1/publishers")).Json!["result"]!.AsArray();
        Assert.Equal(["0", "1", "2"], list.Select(p => p!["id"]!.GetValue<string>()));
        Assert.All(list, p => Assert.Equal("rtmp", p!["type"]!.GetValue<string>()));
        var status = (await admin.GetAsync($"{Api}/channels/1/publishers/status")).Json!["result"]!.AsArray();
        Assert.All(status, p => Assert.Equal("started", p!["status"]!["state"]!.GetValue<string>()));

        // Stopped through the API: nginx closes its recording of "one", which then plays through without an error.
        Assert.Equal(System.Net.HttpStatusCode.OK, (await admin.PostAsync($"{Api}/channels/1/publishers/0/control/stop")).Status);
        var stopped = (await admin.GetAsync($"{Api}/channels/1/publishers/0/status")).Json!["result"]!;
        Assert.Equal("stopped", stopped["state"]!.GetValue<string>());
        Assert.False(stopped["started"]!.GetValue<bool>());
        string? record = null;
        for (int i = 0; i < 50 && record is null; i++)
        {
            record = Directory.GetFiles(nginx.Records, "one*.flv").FirstOrDefault();
            await Task.Delay(100);
        }
        Assert.NotNull(record);
        await Task.Delay(500);   // nginx finishes the file when the publisher leaves
        var play = await Peers.RunAsync("ffmpeg", ["-v", "error", "-i", record!, "-f", "null", "-"], TimeSpan.FromSeconds(60));
        output.WriteLine($"ffmpeg on {Path.GetFileName(record)}: exit {play.ExitCode} '{play.Stderr.Trim()}'");
        Assert.Equal(0, play.ExitCode);
        Assert.Equal("", play.Stderr.Trim());
        var frames = await Peers.RunAsync("ffprobe", ["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=nb_read_frames,codec_name", "-of", "csv=p=0", record!], TimeSpan.FromSeconds(60));
        output.WriteLine("recorded: " + frames.Stdout.Trim());
        Assert.StartsWith("h264,", frames.Stdout.Trim());
        Assert.True(int.Parse(frames.Stdout.Trim().Split(',')[1]) > 30, "the recording holds less than a second of video");

        // The others go on, and `pearl2d status` says so.
        Assert.Contains("h264|320|180", await ProbeAsync(nginx.Live("three")));
        var text = await device.ControlAsync("status");
        output.WriteLine(text);
        Assert.Matches(@"publisher channel=1 id=0 name=""key in a field"" type=rtmp target=rtmp://127\.0\.0\.1:\d+/live state=stopped", text);
        Assert.Matches(@"publisher channel=1 id=2 name=""over TLS"" type=rtmp target=rtmps://localhost:\d+/live state=started rate_kbps=[1-9]", text);
        Assert.DoesNotContain("three", Regex.Match(text, "publisher channel=1 id=2 .*").Value);   // the stream key is not shown

        // Started again through the API.
        Assert.Equal(System.Net.HttpStatusCode.OK, (await admin.PostAsync($"{Api}/channels/1/publishers/0/control/start")).Status);
        await WaitForStartedAsync(device, 4, TimeSpan.FromSeconds(20));
        Assert.Contains("h264|320|180", await ProbeAsync(nginx.Live("one")));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await admin.PostAsync($"{Api}/channels/1/publishers/7/control/start")).Status);

        // The panel in Chromium: each destination with its state; Stop on one; a fourth added in the settings goes live.
        using var playwright = await Microsoft.Playwright.Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = "/usr/bin/chromium", Headless = true, Args = ["--no-sandbox", "--disable-gpu"] });
        var page = await browser.NewPageAsync();
        await page.GotoAsync(admin.Base + "/");
        await page.FillAsync("#login-user", "admin");
        await page.FillAsync("#login-password", AdminApiTests.AdminPassword);
        await page.ClickAsync("#login-submit");
        await page.WaitForSelectorAsync("#publishers-1 li[data-publisher='2'][data-state='started']");
        Assert.Contains("over TLS (rtmp)", await page.TextContentAsync("#publishers-1 li[data-publisher='2']"));
        await page.ClickAsync("#publishers-1 li[data-publisher='1'] .pub-toggle");
        await page.WaitForSelectorAsync("#publishers-1 li[data-publisher='1'][data-state='stopped']", new() { Timeout = 10000 });
        Assert.Equal("stopped", (await admin.GetAsync($"{Api}/channels/1/publishers/1/status")).Json!["result"]!["state"]!.GetValue<string>());
        await page.GotoAsync(admin.Base + "/#settings");
        await page.WaitForSelectorAsync("#channel-1 .publishers-settings");
        Assert.Equal(3, await page.Locator("#channel-1 fieldset.publisher").CountAsync());
        await page.ClickAsync("#channel-1 .publishers-settings button:text('Add RTMP server')");
        await page.FillAsync("#f-channels-0--publishers-3--name", "added in the panel");
        await page.FillAsync("#f-channels-0--publishers-3--url", $"rtmp://127.0.0.1:{nginx.Port}/live/four");
        await page.CheckAsync("#f-channels-0--publishers-3--enabled");
        await page.ClickAsync("#settings-save");
        await page.WaitForFunctionAsync("() => document.getElementById('settings-result')?.textContent.startsWith('Applied')", null, new() { Timeout = 20000 });
        await WaitForStartedAsync(device, 5, TimeSpan.FromSeconds(20));
        Assert.Contains("h264|320|180", await ProbeAsync(nginx.Live("four")));
        // The unchanged destinations kept running through that config change (no new start for "two" or "three").
        Assert.Single(Regex.Matches(device.Log, @"publish\.start channel=1 publisher=2 "));
    }

    /// <summary>
    /// A destination set to follow the Stream button (and not to start on its own): it runs while the channel streams,
    /// the front panel's Stream press stops it (nginx no longer has the stream), a second press starts it again.
    /// </summary>
    [Fact]
    public async Task TheStreamButtonStopsAndStartsTheDestinationsThatFollowIt()
    {
        await using var nginx = await NginxRtmpPeer.StartAsync();
        await using var device = await Pearl2dProcess.StartAsync($$"""
            { "channels": [ { "name": "Hall", "video": { "width": 320, "height": 180, "bitrateKbps": 400, "keyFrameIntervalFrames": 30 },
                              "publishers": [ { "name": "button", "url": "rtmp://127.0.0.1:{{nginx.Port}}/live/button", "enabled": false, "streamButton": true },
                                              { "name": "manual", "url": "rtmp://127.0.0.1:{{nginx.Port}}/live/manual", "enabled": false } ] } ] }
            """, 1);
        await WaitForStartedAsync(device, 1, TimeSpan.FromSeconds(20));
        Assert.Contains("h264|320|180", await ProbeAsync(nginx.Live("button")));
        Assert.Matches(@"publisher channel=1 id=1 name=""manual"" .*state=stopped", await device.ControlAsync("status"));

        await device.ControlAsync("panel", "press", "stream");
        await device.WaitForLogAsync("publish.stop channel=1 publisher=0", TimeSpan.FromSeconds(10));
        Assert.Matches(@"publisher channel=1 id=0 name=""button"" .*state=stopped", await device.ControlAsync("status"));
        var gone = await Peers.RunAsync("ffprobe", ["-v", "error", "-rw_timeout", "3000000", "-show_entries", "stream=codec_name", "-of", "csv=p=0", nginx.Live("button")], TimeSpan.FromSeconds(20));
        Assert.DoesNotContain("h264", gone.Stdout);

        await device.ControlAsync("panel", "press", "stream");
        await WaitForStartedAsync(device, 2, TimeSpan.FromSeconds(20));
        Assert.Contains("h264|320|180", await ProbeAsync(nginx.Live("button")));
        Assert.Matches(@"publisher channel=1 id=1 name=""manual"" .*state=stopped", await device.ControlAsync("status"));
    }
}

/// <summary>A destination on another host (network namespaces joined by a veth pair): restarts and a throttled link.</summary>
[Collection(Quiet.Name)]
public sealed class PublishResilienceTests(ITestOutputHelper output)
{
    /// <summary>
    /// nginx on the other host is killed and started again mid-publish: the destination reconnects by itself within
    /// 5 s of nginx being back, from a key frame, and the drop is counted (reconnections, was_sending=yes). Then the link
    /// to it is throttled to half the channel's bitrate (tc tbf): the destination drops whole GOPs (counted and logged)
    /// while an RTSP viewer of the same channel on the device decodes every frame without an error.
    /// </summary>
    [Fact]
    public async Task ARestartedServerIsRejoinedWithin5sAndASlowLinkDropsGopsWhileAViewerLosesNothing()
    {
        await using var net = await NetworkPair.CreateAsync();
        await using var nginx = await NginxRtmpPeer.StartAsync(net.External, NetworkPair.ExternalAddress);
        await using var device = await Pearl2dProcess.StartInAsync(net.Device, $$"""
            { "channels": [ { "name": "Hall", "video": { "width": 640, "height": 360, "bitrateKbps": 1200, "rateControl": "cbr", "keyFrameIntervalFrames": 30 },
                              "publishers": [ { "name": "cdn", "url": "rtmp://{{NetworkPair.ExternalAddress}}:{{nginx.Port}}/live/hall" } ] } ] }
            """, 1);
        await device.WaitForLogAsync("publish.started", TimeSpan.FromSeconds(30));
        string url = $"rtmp://{NetworkPair.ExternalAddress}:{nginx.Port}/live/hall";
        var probe = await NetworkPair.RunInAsync(net.External, "ffprobe", ["-v", "error", "-show_entries", "stream=codec_name,width", "-of", "csv=p=0", url], TimeSpan.FromSeconds(30));
        Assert.Contains("h264,640", probe.Stdout);

        // nginx killed and back: publishing resumes by itself.
        await nginx.StopAsync();
        await device.WaitForLogAsync("publish.retry", TimeSpan.FromSeconds(20));
        await nginx.StartAgainAsync();
        var back = DateTime.UtcNow;
        while (System.Text.RegularExpressions.Regex.Matches(device.Log, "publish.started ").Count < 2 && DateTime.UtcNow - back < TimeSpan.FromSeconds(30)) await Task.Delay(50);
        var resumed = DateTime.UtcNow - back;
        output.WriteLine($"publishing resumed {resumed.TotalSeconds:F1} s after nginx was back");
        Assert.True(resumed <= TimeSpan.FromSeconds(5), $"publishing resumed {resumed.TotalSeconds:F1} s after nginx was back");
        await device.WaitForLogAsync("was_sending=yes", Pearl2dProcess.LogLag);
        Assert.Contains("reconnections=1", await device.ControlAsync("status"));
        probe = await NetworkPair.RunInAsync(net.External, "ffprobe", ["-v", "error", "-show_entries", "stream=codec_name,width", "-of", "csv=p=0", url], TimeSpan.FromSeconds(30));
        Assert.Contains("h264,640", probe.Stdout);

        // The link to nginx at half the channel's bitrate; an RTSP viewer on the device itself watches 20 s meanwhile.
        var tc = await Peers.RunAsync("ip", ["netns", "exec", net.Device, "tc", "qdisc", "add", "dev", net.DeviceLink, "root", "tbf", "rate", "600kbit", "burst", "16kb", "latency", "300ms"], TimeSpan.FromSeconds(10));
        Assert.True(tc.ExitCode == 0, "tc: " + tc.Stderr);
        var viewer = NetworkPair.RunInAsync(net.Device, "ffmpeg", ["-v", "error", "-rtsp_transport", "tcp", "-i", device.Url(), "-t", "20", "-map", "0:v", "-f", "framecrc", "-"], TimeSpan.FromSeconds(60));
        await device.WaitForLogAsync("publish.dropped", TimeSpan.FromSeconds(40));
        var seen = await viewer;
        int frames = seen.Stdout.Split('\n').Count(l => l.StartsWith("0,", StringComparison.Ordinal));
        var status = await device.ControlAsync("status");
        output.WriteLine(status);
        output.WriteLine($"RTSP viewer on the device: {frames} frames in 20 s, stderr '{seen.Stderr.Trim()}'");
        Assert.Equal("", seen.Stderr.Trim());
        Assert.InRange(frames, 20 * 30 - 15, 20 * 30 + 30);
        Assert.Matches(@"publisher channel=1 id=0 .* dropped_gops=[1-9]", status);
        Assert.Contains("reason=\"the destination takes less than the channel's bitrate\"", device.Log);
    }
}

/// <summary>SRT to and from Debian's FFmpeg (its srt protocol is libsrt's): caller, listener, passphrase.</summary>
public sealed class SrtPublishTests(ITestOutputHelper output)
{
    /// <summary>
    /// Four SRT destinations on one channel. Our caller reaches an FFmpeg listener with the same passphrase (AES-128),
    /// and FFmpeg's recording of it holds H.264 and AAC at the channel's size; our listener serves an FFmpeg caller the
    /// same, and our rendezvous end meets srt-live-transmit's. A caller with another passphrase is refused by the receiver, said so in the status, and never delivers.
    /// While connected, the status carries SRT's own figures (RTT, packets sent).
    /// </summary>
    [Fact]
    public async Task OurCallerAndOurListenerReachFfmpegAndAWrongPassphraseIsRefused()
    {
        string dir = Directory.CreateTempSubdirectory("pearl2-srt").FullName;
        int toListener = Peers.FreeUdpPortBase(1), ours = Peers.FreeUdpPortBase(1), wrong = Peers.FreeUdpPortBase(1);
        while (ours == toListener) ours = Peers.FreeUdpPortBase(1);
        while (wrong == toListener || wrong == ours) wrong = Peers.FreeUdpPortBase(1);
        int rdvOurs = Peers.FreeUdpPortBase(1), rdvTheirs = Peers.FreeUdpPortBase(1);
        while (new[] { toListener, ours, wrong }.Contains(rdvOurs)) rdvOurs = Peers.FreeUdpPortBase(1);
        while (new[] { toListener, ours, wrong, rdvOurs }.Contains(rdvTheirs)) rdvTheirs = Peers.FreeUdpPortBase(1);
        // FFmpeg listens first: for us (right passphrase) and for the one with the wrong passphrase.
        var received = Peers.RunAsync("ffmpeg", ["-v", "error", "-i", $"srt://127.0.0.1:{toListener}?mode=listener&passphrase=correcthorse1&pbkeylen=16", "-t", "6", "-c", "copy", "-f", "mpegts", "-y", Path.Combine(dir, "caller.ts")], TimeSpan.FromSeconds(90));
        var refused = Peers.RunAsync("ffmpeg", ["-v", "error", "-i", $"srt://127.0.0.1:{wrong}?mode=listener&passphrase=correcthorse1&listen_timeout=25000000", "-t", "3", "-c", "copy", "-f", "mpegts", "-y", Path.Combine(dir, "wrong.ts")], TimeSpan.FromSeconds(90));
        await Task.Delay(500);
        await using var device = await Pearl2dProcess.StartAsync($$"""
            { "channels": [ { "name": "Hall", "video": { "width": 320, "height": 180, "bitrateKbps": 600, "keyFrameIntervalFrames": 30 },
                              "publishers": [
                                { "name": "to a listener", "type": "srt", "mode": "caller", "host": "127.0.0.1", "port": {{toListener}}, "passphrase": "correcthorse1", "keyLength": 16, "latencyMs": 200 },
                                { "name": "our listener", "type": "srt", "mode": "listener", "port": {{ours}}, "latencyMs": 200 },
                                { "name": "wrong secret", "type": "srt", "mode": "caller", "host": "127.0.0.1", "port": {{wrong}}, "passphrase": "notthesecret1" },
                                { "name": "rendezvous", "type": "srt", "mode": "rendezvous", "host": "127.0.0.1", "port": {{rdvTheirs}}, "localPort": {{rdvOurs}} } ] } ] }
            """, 1);
        await device.WaitForLogAsync("publish.listening", TimeSpan.FromSeconds(20));
        var caller = Peers.RunAsync("ffmpeg", ["-v", "error", "-i", $"srt://127.0.0.1:{ours}?mode=caller&latency=200000", "-t", "6", "-c", "copy", "-f", "mpegts", "-y", Path.Combine(dir, "listener.ts")], TimeSpan.FromSeconds(90));
        // Rendezvous with libsrt's own srt-live-transmit (FFmpeg 5.1 binds its rendezvous socket to the peer's address,
        // so it cannot meet another end): it calls us from its port while we call it from ours, and writes what it gets.
        var rendezvous = Peers.RunAsync("bash", ["-c", $"timeout 8 srt-live-transmit -q 'srt://127.0.0.1:{rdvOurs}?mode=rendezvous&port={rdvTheirs}' file://con > {Path.Combine(dir, "rendezvous.ts")}"], TimeSpan.FromSeconds(30));
        await device.WaitForLogAsync("publish.started", TimeSpan.FromSeconds(30));
        await Task.Delay(2000);
        var status = await device.ControlAsync("status");
        output.WriteLine(status);
        Assert.Matches(@"publisher channel=1 id=0 name=""to a listener"" type=srt target=srt://127\.0\.0\.1:\d+ state=started .* rtt_ms=\d+\.\d+ pkt_sent=[1-9]", status);

        var r1 = await received;
        var r2 = await caller;
        var r4 = await rendezvous;
        output.WriteLine($"srt-live-transmit rendezvous: exit {r4.ExitCode} '{r4.Stderr.Trim()}'");
        output.WriteLine($"ffmpeg listener: exit {r1.ExitCode} '{r1.Stderr.Trim()}'; ffmpeg caller: exit {r2.ExitCode} '{r2.Stderr.Trim()}'");
        foreach (var file in new[] { "caller.ts", "listener.ts", "rendezvous.ts" })
        {
            var probe = await Peers.RunAsync("ffprobe", ["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "compact=p=0:nk=1", Path.Combine(dir, file)], TimeSpan.FromSeconds(30));
            output.WriteLine($"{file}: {probe.Stdout.Trim()}");
            Assert.Contains("h264|320|180", probe.Stdout);
            Assert.Contains("aac", probe.Stdout);
        }

        // The wrong passphrase: refused by the receiver, in those words, and nothing arrived there.
        var until = DateTime.UtcNow.AddSeconds(20);
        while (!device.Log.Contains("the receiver refused the passphrase") && DateTime.UtcNow < until) await Task.Delay(200);
        status = await device.ControlAsync("status");
        output.WriteLine(status);
        Assert.Matches(@"publisher channel=1 id=2 name=""wrong secret"" .*state=starting .*error="".*the receiver refused the passphrase", status);
        var r3 = await refused;
        Assert.False(File.Exists(Path.Combine(dir, "wrong.ts")) && new FileInfo(Path.Combine(dir, "wrong.ts")).Length > 0, "the receiver with another passphrase got a stream");
        Directory.Delete(dir, true);
        _ = r3;
    }
}
