using System.Diagnostics;
using System.Globalization;
using Pearl2.Tests.Integration;

/// <summary>
/// make bench (--publish): the CPU one destination costs. One pearl2d with one 1080p30 4 Mbit/s channel with AAC and 8
/// RTMP destinations (nginx-rtmp on loopback) and 8 SRT destinations (callers to 8 FFmpeg SRT listeners), none started.
/// In turn, 10 s windows: none, the 8 RTMP ones (started and stopped through the Pearl API), none, the 8 SRT ones, and
/// so on, twice; a destination's cost is its window's CPU above the mean of the quiet windows around it, over 8. In the
/// same run FFmpeg pushes the same stream with <c>-c copy</c> (reading pearl2d's RTSP) to the same nginx and to the same
/// kind of SRT listener, 8 processes at a time, twice: one process's CPU. The ratio is of the medians.
/// </summary>
static class PublishBench
{
    const int Destinations = 8, WindowSeconds = 10, Rounds = 2;
    const string Password = "bench admin pw";

    public static async Task<int> RunAsync()
    {
        var root = FanOutBench.FindRoot();
        var pearl2d = Environment.GetEnvironmentVariable("PEARL2D") ?? Path.Combine(root, "out/linux-x64/pearl2d");
        var work = Directory.CreateTempSubdirectory("pearl2-pubbench").FullName;
        await using var nginx = await NginxRtmpPeer.StartAsync();
        var srtPorts = new HashSet<int>();
        while (srtPorts.Count < Destinations) srtPorts.Add(Peers.FreeUdpPortBase(1));
        // FFmpeg's SRT listener takes one caller and ends with it: fresh ones for each SRT window.
        var sinks = new List<Process>();
        async Task FreshSinksAsync()
        {
            foreach (var s in sinks) s.Kill(true);
            sinks = srtPorts.Select(p => FanOutBench.Start("/usr/bin/ffmpeg", ["-v", "error", "-i", $"srt://127.0.0.1:{p}?mode=listener", "-c", "copy", "-f", "mpegts", "-y", "/dev/null"], _ => { })).ToList();
            await Task.Delay(1000);
        }

        string publishers = string.Join(",", Enumerable.Range(0, Destinations).Select(i => $$"""{ "name": "r{{i}}", "url": "rtmp://127.0.0.1:{{nginx.Port}}/live/ours{{i}}", "enabled": false }""")
            .Concat(srtPorts.Select((p, i) => $$"""{ "name": "s{{i}}", "type": "srt", "mode": "caller", "host": "127.0.0.1", "port": {{p}}, "enabled": false }""")));
        int rtsp = FanOutBench.FreePort(), http = FanOutBench.FreePort(), admin = FanOutBench.FreePort();
        File.WriteAllText(Path.Combine(work, "config.json"), $$"""
            { "channels": [ { "name": "Bench", "video": { "width": 1920, "height": 1080, "fps": 30, "bitrateKbps": 4000, "rateControl": "cbr", "keyFrameIntervalFrames": 60 },
                              "publishers": [ {{publishers}} ] } ],
              "rtsp": { "port": {{rtsp}}, "udpPortBase": 0 }, "http": { "port": {{http}} }, "admin": { "port": {{admin}}, "httpsPort": 0 } }
            """);
        int started = 0;
        var device = FanOutBench.Start(pearl2d, ["--config", Path.Combine(work, "config.json"), "--data-dir", Path.Combine(work, "data")], l => { if (l.Contains("publish.started")) Interlocked.Increment(ref started); });
        await Task.Delay(3000);
        using var anon = new AdminClient("127.0.0.1", admin);
        await anon.PostAsync("/api/v2.0/x-pearl2/setup", $$"""{ "username": "admin", "password": "{{Password}}" }""");
        using var api = anon.As("admin", Password);

        async Task SetAsync(int first, bool start)
        {
            for (int i = first; i < first + Destinations; i++) await api.PostAsync($"/api/v2.0/channels/1/publishers/{i}/control/{(start ? "start" : "stop")}");
        }
        async Task<double> WindowAsync() => await CpuPercentAsync([device]);

        var quiet = new List<double>();
        var rtmp = new List<double>();
        var srt = new List<double>();
        await Task.Delay(2000);
        quiet.Add(await WindowAsync());
        for (int round = 0; round < Rounds; round++)
        {
            foreach (var (first, into) in new[] { (0, rtmp), (Destinations, srt) })
            {
                if (into == srt) await FreshSinksAsync();
                int before = Volatile.Read(ref started);
                await SetAsync(first, true);
                var sw = Stopwatch.StartNew();
                while (Volatile.Read(ref started) < before + Destinations && sw.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(100);
                if (Volatile.Read(ref started) < before + Destinations) throw new InvalidOperationException("not every destination started");
                await Task.Delay(2000);
                double busy = await WindowAsync();
                await SetAsync(first, false);
                await Task.Delay(2000);
                double after = await WindowAsync();
                into.Add((busy - (quiet[^1] + after) / 2) / Destinations);
                quiet.Add(after);
            }
        }

        // The references: FFmpeg -c copy from pearl2d's RTSP, 8 at a time, to nginx and to the SRT listeners.
        string input = $"rtsp://127.0.0.1:{rtsp}/stream.sdp";
        var refRtmp = new List<double>();
        var refSrt = new List<double>();
        for (int round = 0; round < Rounds; round++)
        {
            foreach (var (srtOut, into) in new[] { (false, refRtmp), (true, refSrt) })
            {
                if (srtOut) await FreshSinksAsync();
                var pushers = Enumerable.Range(0, Destinations).Select(i => FanOutBench.Start("/usr/bin/ffmpeg",
                    ["-v", "error", "-rtsp_transport", "tcp", "-i", input, "-c", "copy", .. srtOut ? new[] { "-f", "mpegts", $"srt://127.0.0.1:{srtPorts.ElementAt(i)}?mode=caller" } : ["-f", "flv", $"rtmp://127.0.0.1:{nginx.Port}/live/ffmpeg{i}"]], _ => { })).ToList();
                await Task.Delay(4000);
                into.Add(await CpuPercentAsync(pushers) / Destinations);
                foreach (var x in pushers) x.Kill(true);
                await Task.Delay(1000);
            }
        }
        device.Kill(true);
        foreach (var s in sinks) s.Kill(true);

        static double Median(List<double> v) { var o = v.Order().ToList(); return o.Count % 2 == 1 ? o[o.Count / 2] : (o[o.Count / 2 - 1] + o[o.Count / 2]) / 2; }
        static string All(List<double> v) => string.Join(", ", v.Select(x => x.ToString("F2", CultureInfo.InvariantCulture)));
        Console.WriteLine($"publishing one 1080p30 4 Mbit/s channel with AAC ({FanOutBench.Machine()}); CPU in % of one core, {WindowSeconds} s windows, {Destinations} destinations at a time, {Rounds} rounds");
        Console.WriteLine("| destination | pearl2d CPU % per destination (above its quiet windows) | ffmpeg -c copy CPU % per process | pearl2d / ffmpeg (medians) |");
        Console.WriteLine("|---|---|---|---|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| RTMP → nginx-rtmp | {Median(rtmp):F2} ({All(rtmp)}) | {Median(refRtmp):F2} ({All(refRtmp)}) | **{Median(rtmp) / Median(refRtmp):F2}** |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| SRT → ffmpeg listener | {Median(srt):F2} ({All(srt)}) | {Median(refSrt):F2} ({All(refSrt)}) | **{Median(srt) / Median(refSrt):F2}** |"));
        Console.WriteLine($"pearl2d with no destination sending: {All(quiet)} %");
        Directory.Delete(work, true);
        return 0;
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
