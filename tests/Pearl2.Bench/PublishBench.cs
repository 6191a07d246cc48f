using System.Diagnostics;
using System.Globalization;
using Pearl2.Tests.Integration;

/// <summary>
/// make bench (--publish): the CPU one destination costs. One 1080p30 4 Mbit/s channel with AAC; pearl2d runs with no
/// destination, then with 4 RTMP destinations (nginx-rtmp on loopback), then with 4 SRT destinations (callers to 4
/// FFmpeg SRT listeners). Beside it in the same run, FFmpeg pushes the same stream with <c>-c copy</c> (reading
/// pearl2d's RTSP) to the same nginx and to the same kind of SRT listener, 4 processes at a time. Per destination: the
/// CPU above pearl2d's idle divided by 4, against one FFmpeg process's CPU.
/// </summary>
static class PublishBench
{
    const int Destinations = 4, WindowSeconds = 15;

    public static async Task<int> RunAsync()
    {
        var root = FanOutBench.FindRoot();
        var pearl2d = Environment.GetEnvironmentVariable("PEARL2D") ?? Path.Combine(root, "out/linux-x64/pearl2d");
        var work = Directory.CreateTempSubdirectory("pearl2-pubbench").FullName;
        await using var nginx = await NginxRtmpPeer.StartAsync();
        int[] srtPorts = Enumerable.Range(0, Destinations).Select(_ => Peers.FreeUdpPortBase(1)).Distinct().ToArray();

        string rtmp = string.Join(",", Enumerable.Range(0, Destinations).Select(i => $$"""{ "name": "r{{i}}", "url": "rtmp://127.0.0.1:{{nginx.Port}}/live/ours{{i}}" }"""));
        string srt = string.Join(",", srtPorts.Select((p, i) => $$"""{ "name": "s{{i}}", "type": "srt", "mode": "caller", "host": "127.0.0.1", "port": {{p}} }"""));

        var (idle, _) = await OursAsync(pearl2d, work, "", null);
        var (withRtmp, rtmpUrl) = await OursAsync(pearl2d, work, rtmp, null);
        var (withSrt, _) = await OursAsync(pearl2d, work, srt, srtPorts);
        // The references read pearl2d's RTSP (a pearl2d with no destination) and push with -c copy.
        var (refRtmp, refSrt) = await FfmpegAsync(pearl2d, work, nginx.Port, srtPorts);

        double perRtmp = (withRtmp - idle) / Destinations, perSrt = (withSrt - idle) / Destinations;
        Console.WriteLine($"publishing one 1080p30 4 Mbit/s channel with AAC ({FanOutBench.Machine()}); CPU in % of one core over {WindowSeconds} s, {Destinations} destinations at a time");
        Console.WriteLine("| destination | pearl2d CPU % per destination (above its idle) | ffmpeg -c copy CPU % per process | pearl2d / ffmpeg |");
        Console.WriteLine("|---|---|---|---|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| RTMP → nginx-rtmp | {perRtmp:F2} | {refRtmp:F2} | **{perRtmp / refRtmp:F2}** |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| SRT → ffmpeg listener | {perSrt:F2} | {refSrt:F2} | **{perSrt / refSrt:F2}** |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pearl2d idle (the channel encoding, no destination): {idle:F1} %; with {Destinations} RTMP: {withRtmp:F1} %; with {Destinations} SRT: {withSrt:F1} %"));
        _ = rtmpUrl;
        Directory.Delete(work, true);
        return 0;
    }

    static string Config(int rtsp, int http, int admin, string publishers) => $$"""
        { "channels": [ { "name": "Bench", "video": { "width": 1920, "height": 1080, "fps": 30, "bitrateKbps": 4000, "rateControl": "cbr", "keyFrameIntervalFrames": 60 },
                          "publishers": [ {{publishers}} ] } ],
          "rtsp": { "port": {{rtsp}}, "udpPortBase": 0 }, "http": { "port": {{http}} }, "admin": { "port": {{admin}}, "httpsPort": 0 } }
        """;

    /// <summary>pearl2d with these destinations (SRT listeners started first when given): its CPU % over the window once all are sending.</summary>
    static async Task<(double Cpu, string Rtsp)> OursAsync(string pearl2d, string work, string publishers, int[]? srtListeners)
    {
        var sinks = (srtListeners ?? []).Select(p => FanOutBench.Start("/usr/bin/ffmpeg", ["-v", "error", "-i", $"srt://127.0.0.1:{p}?mode=listener", "-c", "copy", "-f", "mpegts", "-y", "/dev/null"], _ => { })).ToList();
        string dir = Directory.CreateDirectory(Path.Combine(work, "d" + Guid.NewGuid().ToString("N")[..6])).FullName;
        int rtsp = FanOutBench.FreePort(), http = FanOutBench.FreePort(), admin = FanOutBench.FreePort();
        File.WriteAllText(Path.Combine(dir, "config.json"), Config(rtsp, http, admin, publishers));
        int started = 0;
        var p = FanOutBench.Start(pearl2d, ["--config", Path.Combine(dir, "config.json"), "--data-dir", Path.Combine(dir, "data")], l => { if (l.Contains("publish.started")) Interlocked.Increment(ref started); });
        int want = publishers.Length == 0 ? 0 : Destinations;
        var sw = Stopwatch.StartNew();
        while (Volatile.Read(ref started) < want && sw.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(100);
        if (Volatile.Read(ref started) < want) throw new InvalidOperationException($"only {started} of {want} destinations started");
        await Task.Delay(4000);
        double cpu = await CpuPercentAsync([p]);
        p.Kill(true);
        foreach (var s in sinks) s.Kill(true);
        return (cpu, $"rtsp://127.0.0.1:{rtsp}/stream.sdp");
    }

    /// <summary>FFmpeg -c copy from pearl2d's RTSP to nginx, then to SRT listeners: one process's CPU % (the average of 4).</summary>
    static async Task<(double Rtmp, double Srt)> FfmpegAsync(string pearl2d, string work, int nginxPort, int[] srtPorts)
    {
        string dir = Directory.CreateDirectory(Path.Combine(work, "ref")).FullName;
        int rtsp = FanOutBench.FreePort(), http = FanOutBench.FreePort(), admin = FanOutBench.FreePort();
        File.WriteAllText(Path.Combine(dir, "config.json"), Config(rtsp, http, admin, ""));
        var device = FanOutBench.Start(pearl2d, ["--config", Path.Combine(dir, "config.json"), "--data-dir", Path.Combine(dir, "data")], _ => { });
        await Task.Delay(3000);
        string input = $"rtsp://127.0.0.1:{rtsp}/stream.sdp";
        var pushers = Enumerable.Range(0, Destinations).Select(i => FanOutBench.Start("/usr/bin/ffmpeg",
            ["-v", "error", "-rtsp_transport", "tcp", "-i", input, "-c", "copy", "-f", "flv", $"rtmp://127.0.0.1:{nginxPort}/live/ffmpeg{i}"], _ => { })).ToList();
        await Task.Delay(5000);
        double rtmp = await CpuPercentAsync(pushers) / Destinations;
        foreach (var x in pushers) x.Kill(true);
        var sinks = srtPorts.Select(p => FanOutBench.Start("/usr/bin/ffmpeg", ["-v", "error", "-i", $"srt://127.0.0.1:{p}?mode=listener", "-c", "copy", "-f", "mpegts", "-y", "/dev/null"], _ => { })).ToList();
        await Task.Delay(500);
        pushers = srtPorts.Select(p => FanOutBench.Start("/usr/bin/ffmpeg",
            ["-v", "error", "-rtsp_transport", "tcp", "-i", input, "-c", "copy", "-f", "mpegts", $"srt://127.0.0.1:{p}?mode=caller"], _ => { })).ToList();
        await Task.Delay(5000);
        double srt = await CpuPercentAsync(pushers) / Destinations;
        foreach (var x in pushers.Concat(sinks)) x.Kill(true);
        device.Kill(true);
        return (rtmp, srt);
    }

    static async Task<double> CpuPercentAsync(IReadOnlyList<Process> processes)
    {
        double before = processes.Sum(p => FanOutBench.CpuSeconds(p.Id));
        var sw = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(WindowSeconds));
        foreach (var p in processes) if (p.HasExited) throw new InvalidOperationException($"{p.StartInfo.FileName} {string.Join(' ', p.StartInfo.ArgumentList)} exited during the window");
        return 100 * (processes.Sum(p => FanOutBench.CpuSeconds(p.Id)) - before) / sw.Elapsed.TotalSeconds;
    }
}
