using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Pearl2.Tests.Integration;

// make bench: RTSP/TCP fan-out of one 1080p30 ~4 Mbit/s channel, pearl2d against gst-rtsp-server (shared
// media relaying the same encoded stream), N viewers per step, in one run on this machine.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
// Every pearl2d the bench starts runs on this machine's own network: nothing announced on the LAN (mDNS, SSDP).
Environment.SetEnvironmentVariable("PEARL2_DISCOVERY", "off");
if (args is ["--update", ..]) return await UpdateBench.RunAsync();
if (args is ["--upload", ..]) { try { return await UploadBench.RunAsync(); } finally { FanOutBench.KillAll(); } }
if (args is ["--admin", ..]) { try { return await AdminBench.RunAsync(); } finally { FanOutBench.KillAll(); } }
if (args is ["--publish", ..]) { try { return await PublishBench.RunAsync(); } finally { FanOutBench.KillAll(); } }
if (args is ["--record", ..]) { try { return await RecordBench.RunAsync(); } finally { FanOutBench.KillAll(); } }
var opts = BenchOptions.Parse(args);
var bench = new FanOutBench(opts);
Console.CancelKeyPress += (_, _) => FanOutBench.KillAll();
try { return await bench.RunAsync(); }
finally { FanOutBench.KillAll(); }

sealed record BenchOptions(int[] Ladder, double Warmup, double Window, bool OnlyOurs, string[] Transports, bool HttpTs, int BitrateKbps, bool Audio = true, bool Relay = false)
{
    public static BenchOptions Parse(string[] args)
    {
        int[] ladder = [0, 1, 10, 50, 100, 200, 300, 400, 500, 600, 800, 1000];
        double warmup = 3, window = 8;
        bool onlyOurs = false;
        string[] transports = ["tcp", "udp"];
        bool httpTs = false;
        int bitrate = 4000;
        bool audio = true, relay = false;
        for (int i = 0; i < args.Length; i++)
            switch (args[i])
            {
                case "--ladder": ladder = args[++i].Split(',').Select(int.Parse).ToArray(); break;
                case "--warmup": warmup = double.Parse(args[++i]); break;
                case "--window": window = double.Parse(args[++i]); break;
                case "--only-pearl2d": onlyOurs = true; break;
                case "--transport": transports = args[++i].Split(','); break;
                case "--http-ts": httpTs = true; break;
                case "--bitrate-kbps": bitrate = int.Parse(args[++i]); break;
                case "--no-audio": audio = false; break;
                case "--relay": relay = true; break;
                default: throw new ArgumentException($"unknown argument {args[i]} (--ladder 1,10,50 --warmup S --window S --only-pearl2d --no-audio --relay)");
            }
        return new BenchOptions(ladder, warmup, window, onlyOurs, transports, httpTs, bitrate, audio, relay);
    }
}

sealed record Step(string Server, string Transport, int N, double FramesMin, double FramesAvg, double Expected, long Gaps, int LossyViewers, double CpuPct, long RssKb,
    double LoadCpuPct, string P50, string P99, string AllocPerPacket, double Mbps, string KeyP50 = "n/a", string KeyP99 = "n/a", double IdleCpuPct = double.NaN,
    double EncodeCpuPct = 0, double IdleEncodeCpuPct = 0)
{
    public bool Lossless => LossyViewers == 0;
}

sealed class FanOutBench(BenchOptions o)
{
    const int Fps = 30;
    readonly List<Step> _steps = new();
    readonly List<(DateTime At, string Line)> _stats = new();
    readonly Dictionary<int, (double P50Us, double P99Us)> _bare = new();
    /// <summary>Whether the idle step about to run is the one before a small step (it gets the small step's longer window).</summary>
    bool _nextSmall;
    int _keyFrameBytes;

    public async Task<int> RunAsync()
    {
        var root = FindRoot();
        var pearl2d = Environment.GetEnvironmentVariable("PEARL2D") ?? Path.Combine(root, "out/linux-x64/pearl2d");
        var dir = Directory.CreateTempSubdirectory("pearl2-bench").FullName;
        int port = FreePort(), httpPort = FreePort();
        File.WriteAllText(Path.Combine(dir, "bench.json"), $$"""
            {
              "channels": [ { "name": "Bench", "video": { "width": 1920, "height": 1080, "fps": {{Fps}}, "bitrateKbps": {{o.BitrateKbps}}, "rateControl": "cbr", "keyFrameIntervalFrames": 60 }, "audio": { "enabled": {{(o.Audio ? "true" : "false")}} } } ],
              "rtsp": { "port": {{port}}, "statsIntervalSeconds": 2, "viewerQueueUnits": 512 },
              "http": { "port": {{httpPort}} }
            }
            """);
        Console.WriteLine($"# pearl2d fan-out bench: {Machine()}");
        var server = Start(pearl2d, ["--config", Path.Combine(dir, "bench.json"), "--data-dir", Path.Combine(dir, "data")], line =>
        {
            if (line.Contains("rtsp.stats")) lock (_stats) _stats.Add((DateTime.UtcNow, line));
        });
        await Task.Delay(3000);
        if (o.HttpTs)
        {
            await RunHttpTsAsync(server, httpPort);
            return 0;
        }
        string ours = $"rtsp://127.0.0.1:{port}/stream.sdp";
        {
            // One viewer on pearl2d for the whole ladder too, as on the reference (which needs it, below): both servers'
            // idle then includes packaging the stream for one viewer, and N counts the viewers beyond it on both.
            await using var keeper = await RtspTestClient.ConnectAsync("127.0.0.1", port);
            await keeper.PlayAsync(ours);
            using var keep = new CancellationTokenSource();
            var keeping = Task.Run(() => keeper.ReceiveAsync(keep.Token));
            await Task.Delay(2000);
            foreach (var t in o.Transports) await RunLadderAsync("pearl2d", t, server, ours);
            keep.Cancel();
            try { await keeping; } catch (Exception) { }
        }

        // A clip of what pearl2d sends: the reference serves it, and its key frames size the bare sender's writes.
        string clip = Path.Combine(dir, "clip");
        var rec = await Peers.RunAsync("ffmpeg", ["-v", "error", "-rtsp_transport", "tcp", "-t", "20", "-i", ours, "-map", "0:v", "-c:v", "copy", "-bsf:v", "h264_metadata=aud=insert", "-f", "h264", "-y", clip + ".h264",
            .. o.Audio ? new[] { "-map", "0:a", "-c:a", "copy", "-f", "adts", "-y", clip + ".aac" } : []], TimeSpan.FromSeconds(60));
        if (rec.ExitCode != 0) throw new InvalidOperationException("recording the reference clip: " + rec.Stderr);
        if (o.Transports.Contains("tcp"))
        {
            _keyFrameBytes = await BareSender.KeyFrameBytesAsync(clip + ".h264");
            foreach (int n in o.Ladder.Where(n => n > 0))
            {
                var bare = await BareSender.MeasureAsync(n, _keyFrameBytes);
                _bare[n] = bare;
                Console.WriteLine($"bare sender: a {_keyFrameBytes}-byte key frame to {n} loopback TCP sockets: p50 {bare.P50Us:F0} us, p99 {bare.P99Us:F0} us");
            }
        }

        if (!o.OnlyOurs)
        {
            // The reference: gst-rtsp-server serving a clip pearl2d encoded (the same bitrate, GOP and audio) from a shared
            // media fed by appsrc, so that its cost is fan-out only. With --relay, also the older reference that relays
            // pearl2d's live stream through rtspsrc (it depayloads and payloads again).
            var servers = new List<(string Name, string Script, string Args)>
            {
                ("gst-rtsp-server (clip)", "gst-rtsp-clip.py", $"{clip}.h264 {(o.Audio ? clip + ".aac" : "-")} {Fps}"),
            };
            if (o.Relay) servers.Add(("gst-rtsp-server (relay)", "gst-rtsp-relay.py", ours));
            foreach (var (name, script, args) in servers)
            {
                int gstPort = FreePort();
                var gst = Start("/bin/bash", ["-c", $"ulimit -n 65536; exec /usr/bin/python3 {Path.Combine(AppContext.BaseDirectory, script)} {gstPort} {args}"], _ => { });
                for (int i = 0; i < 100 && !PortOpen(gstPort); i++) await Task.Delay(100);
                string reference = $"rtsp://127.0.0.1:{gstPort}/stream.sdp";
                // Prepare the shared media once so that step 1 does not pay for it, and keep one viewer on it for the whole
                // ladder: gst-rtsp-server tears a shared media down when its last viewer leaves, and the appsrc one then
                // answers 503 to the next UDP viewers. The reference thus always serves one viewer more than N.
                await using var keeper = await RtspTestClient.ConnectAsync("127.0.0.1", gstPort);
                await keeper.PlayAsync(reference);
                using var keep = new CancellationTokenSource();
                var keeping = Task.Run(() => keeper.ReceiveAsync(keep.Token));
                await Task.Delay(2000);
                foreach (var t in o.Transports) await RunLadderAsync(name, t, gst, reference);
                keep.Cancel();
                try { await keeping; } catch (Exception) { }
                gst.Kill(true);
            }
        }

        Report();
        return 0;
    }

    async Task RunLadderAsync(string name, string transport, Process server, string url)
    {
        foreach (int n in o.Ladder)
        {
            // Each step's idle is measured just before it: the server's own CPU (pearl2d's encode above all) drifts by a
            // point or so over minutes, as much as ten viewers cost, so an idle taken once at the start is not good enough.
            _nextSmall = n < 50;
            var idle = n == 0 ? null : await RunStepAsync(name, transport, server, url, 0);
            var step = await RunStepAsync(name, transport, server, url, n) with { IdleCpuPct = idle?.CpuPct ?? double.NaN, IdleEncodeCpuPct = idle?.EncodeCpuPct ?? 0 };
            _steps.Add(step);
            Console.WriteLine($"{name} {transport} N={n}: frames/viewer min {step.FramesMin:F0} avg {step.FramesAvg:F1} of {step.Expected:F0}, lossy viewers {step.LossyViewers}, server CPU {step.CpuPct:F1}%, RSS {step.RssKb / 1024} MiB, load client CPU {step.LoadCpuPct:F1}%, p50/p99 {step.P50}/{step.P99} us (key frames {step.KeyP50}/{step.KeyP99}), alloc/packet {step.AllocPerPacket}, {step.Mbps:F0} Mbit/s");
            if (!step.Lossless) break;
            await Task.Delay(1500);
        }
    }

    async Task<Step> RunStepAsync(string name, string transport, Process server, string url, int n)
    {
        var uri = new Uri(url);
        var clients = new RtspTestClient[n];
        var loops = new Task[n];
        using var stop = new CancellationTokenSource();
        using var gate = new SemaphoreSlim(32);
        await Task.WhenAll(Enumerable.Range(0, n).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                // gst-rtsp-server answers 503 while its shared media is still being torn down after the last step's
                // viewers left: such a viewer tries again on a new connection, for up to 10 s.
                for (int attempt = 0; ; attempt++)
                {
                    clients[i] = await RtspTestClient.ConnectAsync(uri.Host, uri.Port);
                    try
                    {
                        if (transport == "udp") await clients[i].PlayUdpAsync(url); else await clients[i].PlayAsync(url);
                        break;
                    }
                    catch (InvalidOperationException e) when (e.Message.Contains(" 503 ") && attempt < 50)
                    {
                        await clients[i].DisposeAsync();
                        await Task.Delay(200);
                    }
                }
                loops[i] = Task.Run(() => clients[i].ReceiveAsync(stop.Token));
            }
            finally { gate.Release(); }
        }));
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
        // Ten viewers add well under a point of a core, less than the idle figure wobbles in a short window: small steps
        // (and the idle measured before them) get four windows' time.
        var window = TimeSpan.FromSeconds(n is > 0 and < 50 || (n == 0 && _nextSmall) ? 4 * o.Window : o.Window);

        var frames0 = clients.Select(c => Interlocked.Read(ref c.VideoFrames)).ToArray();
        var gaps0 = clients.Select(c => Interlocked.Read(ref c.SequenceGaps)).ToArray();
        long bytes0 = clients.Sum(c => Interlocked.Read(ref c.Bytes));
        double cpu0 = CpuSeconds(server.Id), load0 = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        double encode0 = name == "pearl2d" ? EncodeCpuSeconds(server.Id) : 0;
        var t0 = Stopwatch.GetTimestamp();
        var windowStart = DateTime.UtcNow;
        await Task.Delay(window);
        double elapsed = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        double cpu1 = CpuSeconds(server.Id), load1 = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        double encode1 = name == "pearl2d" ? EncodeCpuSeconds(server.Id) : 0;
        long rss = RssKb(server.Id);
        var frames = clients.Select((c, i) => (double)(Interlocked.Read(ref c.VideoFrames) - frames0[i])).ToArray();
        var gaps = clients.Select((c, i) => Interlocked.Read(ref c.SequenceGaps) - gaps0[i]).ToArray();
        long bytes = clients.Sum(c => Interlocked.Read(ref c.Bytes)) - bytes0;
        var windowEnd = DateTime.UtcNow;

        stop.Cancel();
        foreach (var c in clients) await c.DisposeAsync();
        try { await Task.WhenAll(loops.Where(l => l is not null)); } catch (Exception) { }

        double expected = Fps * elapsed;
        int lossy = frames.Where((f, i) => gaps[i] > 0 || f < 0.95 * expected).Count();
        if (n == 0) frames = [0];
        string p50 = "n/a", p99 = "n/a", alloc = "n/a", kp50 = "n/a", kp99 = "n/a";
        if (name == "pearl2d")
        {
            List<string> lines;
            lock (_stats) lines = _stats.Where(s => s.At > windowStart.AddSeconds(1) && s.At <= windowEnd).Select(s => s.Line).ToList();
            var p50s = lines.Select(l => Field(l, "latency_p50_us")).Where(v => v >= 0).ToList();
            var p99s = lines.Select(l => Field(l, "latency_p99_us")).Where(v => v >= 0).ToList();
            var allocs = lines.Select(l => Field(l, "alloc_bytes_per_packet")).ToList();
            if (p50s.Count > 0) { p50 = p50s.OrderBy(v => v).ElementAt(p50s.Count / 2).ToString("F0"); p99 = p99s.Max().ToString("F0"); }
            var kp50s = lines.Select(l => Field(l, "keyframe_latency_p50_us")).Where(v => v >= 0).ToList();
            var kp99s = lines.Select(l => Field(l, "keyframe_latency_p99_us")).Where(v => v >= 0).ToList();
            if (kp50s.Count > 0) { kp50 = kp50s.OrderBy(v => v).ElementAt(kp50s.Count / 2).ToString("F0"); kp99 = kp99s.Max().ToString("F0"); }
            if (allocs.Count > 0) alloc = allocs.Average().ToString("F2");
        }
        return new Step(name, transport, n, frames.Min(), frames.Average(), expected, gaps.Sum(), lossy, 100 * (cpu1 - cpu0) / elapsed, rss,
            100 * (load1 - load0) / elapsed, p50, p99, alloc, bytes * 8 / elapsed / 1e6, kp50, kp99, EncodeCpuPct: 100 * (encode1 - encode0) / elapsed);
    }

    /// <summary>HTTP-TS viewers: raise N until loss begins; the throughput at the last clean step against raw loopback TCP.</summary>
    async Task RunHttpTsAsync(Process server, int httpPort)
    {
        double limit = await LoopbackLimit.MeasureAsync();
        Console.WriteLine($"raw loopback TCP (4 streams, this machine, now): {limit / 1e9:F2} Gbit/s");
        var rows = new List<string>();
        (int N, double Mbps, double Cpu)? clean = null;
        foreach (int n in o.Ladder.Where(x => x > 0))
        {
            var viewers = new HttpTsViewer[n];
            for (int i = 0; i < n; i++) viewers[i] = await HttpTsViewer.OpenAsync(httpPort);
            using var stop = new CancellationTokenSource();
            var loops = viewers.Select(v => Task.Run(() => v.ReceiveAsync(stop.Token))).ToArray();
            await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
            var f0 = viewers.Select(v => Interlocked.Read(ref v.Frames)).ToArray();
            var g0 = viewers.Select(v => Interlocked.Read(ref v.Gaps)).ToArray();
            long b0 = viewers.Sum(v => Interlocked.Read(ref v.Bytes));
            double cpu0 = CpuSeconds(server.Id), load0 = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
            var sw = Stopwatch.StartNew();
            await Task.Delay(TimeSpan.FromSeconds(o.Window));
            double secs = sw.Elapsed.TotalSeconds;
            double cpu = 100 * (CpuSeconds(server.Id) - cpu0) / secs, load = 100 * (Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - load0) / secs;
            var frames = viewers.Select((v, i) => Interlocked.Read(ref v.Frames) - f0[i]).ToArray();
            long gaps = viewers.Select((v, i) => Interlocked.Read(ref v.Gaps) - g0[i]).Sum();
            double mbps = (viewers.Sum(v => Interlocked.Read(ref v.Bytes)) - b0) * 8 / secs / 1e6;
            stop.Cancel();
            foreach (var v in viewers) await v.DisposeAsync();
            await Task.WhenAll(loops);
            int lossy = frames.Where((f, i) => f < 0.95 * Fps * secs).Count() + (gaps > 0 ? 1 : 0);
            var row = $"| {n} | {frames.Min()} / {frames.Average():F1} ({Fps * secs:F0}) | {gaps} | {lossy} | {cpu:F1} | {RssKb(server.Id) / 1024} | {mbps:F0} | {100 * mbps * 1e6 / limit:F1} % | {load:F1} |";
            Console.WriteLine(row);
            rows.Add(row);
            if (lossy > 0) break;
            clean = (n, mbps, cpu);
            await Task.Delay(1000);
        }
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine($"## HTTP-TS fan-out, one 1080p30 {o.BitrateKbps / 1000.0:F0} Mbit/s channel — {DateTime.UtcNow:yyyy-MM-dd}");
        sb.AppendLine();
        sb.AppendLine($"Machine: {Machine()}. Command: `make bench` (HTTP-TS: --http-ts --bitrate-kbps {o.BitrateKbps}, ladder {string.Join(",", o.Ladder)}, window {o.Window} s). Raw loopback TCP, 4 streams, same run: {limit / 1e9:F2} Gbit/s.");
        sb.AppendLine();
        sb.AppendLine("| N | frames/viewer min / avg (expected) | CC gaps | lossy viewers | server CPU % | RSS MiB | delivered Mbit/s | of raw loopback | load client CPU % |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rows) sb.AppendLine(r);
        sb.AppendLine();
        sb.AppendLine(clean is { } c
            ? $"- zero-loss up to {c.N} viewers: {c.Mbps:F0} Mbit/s delivered = {100 * c.Mbps * 1e6 / limit:F1} % of raw loopback TCP, server CPU {c.Cpu:F1} %"
            : "- loss from the first step");
        Console.WriteLine(sb.ToString());
        Directory.CreateDirectory(Path.Combine(FindRoot(), "out"));
        File.WriteAllText(Path.Combine(FindRoot(), "out", "bench-http-ts-latest.md"), sb.ToString());
    }

    static double Field(string line, string name)
    {
        var m = Regex.Match(line, name + @"=(-?[\d.]+)");
        return m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : -1;
    }

    void Report()
    {
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine($"## Fan-out, RTSP over {string.Join(" and ", o.Transports.Select(t => t.ToUpperInvariant()))}, one 1080p30 ~4 Mbit/s channel{(o.Audio ? " with 128 kbit/s AAC" : ", no audio")} — {DateTime.UtcNow:yyyy-MM-dd}");
        sb.AppendLine();
        sb.AppendLine($"Machine: {Machine()}. Command: `make bench` (ladder {string.Join(",", o.Ladder)}, warm-up {o.Warmup} s, window {o.Window} s, {4 * o.Window} s below 50 viewers; each step after an idle window of its own length).");
        sb.AppendLine();
        sb.AppendLine("| server | transport | N | frames/viewer min / avg (expected) | lossy viewers | server CPU % (idle just before) | CPU per extra viewer % | without capture and encode | RSS MiB | added latency p50 / p99 µs | key frames p50 / p99 µs | alloc B/packet | delivered Mbit/s | load client CPU % |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var s in _steps)
        {
            string perViewer = s.N > 0 ? PerViewer(s).ToString("F3") : "–";
            string fanOut = s.N > 0 && s.Server == "pearl2d" ? PerViewerFanOut(s).ToString("F3") : s.N > 0 ? perViewer : "–";
            string idle = s.N > 0 ? $" ({s.IdleCpuPct:F1})" : "";
            sb.AppendLine($"| {s.Server} | {s.Transport} | {s.N} | {s.FramesMin:F0} / {s.FramesAvg:F1} ({s.Expected:F0}) | {s.LossyViewers} | {s.CpuPct:F1}{idle} | {perViewer} | {fanOut} | {s.RssKb / 1024} | {s.P50} / {s.P99} | {s.KeyP50} / {s.KeyP99} | {s.AllocPerPacket} | {s.Mbps:F0} | {s.LoadCpuPct:F1} |");
        }
        sb.AppendLine();
        foreach (var g in _steps.GroupBy(s => s.Server + " " + s.Transport.ToUpperInvariant()))
        {
            var clean = g.Where(s => s.Lossless).Select(s => s.N).DefaultIfEmpty(0).Max();
            var firstLoss = g.FirstOrDefault(s => !s.Lossless);
            sb.AppendLine($"- {g.Key}: zero-loss up to {clean} viewers" + (firstLoss is null ? " (no loss on the whole ladder)" : $"; loss began at {firstLoss.N}"));
        }
        static double PerViewer(Step s) => (s.CpuPct - s.IdleCpuPct) / s.N;
        // The same without pearl2d's capture and encode threads, whose CPU time grows with whatever else loads the
        // machine (the load client above all) though they do no more work: the reference has no encoder to inflate.
        static double PerViewerFanOut(Step s) => (s.CpuPct - s.EncodeCpuPct - (s.IdleCpuPct - s.IdleEncodeCpuPct)) / s.N;
        if (_bare.Count > 0)
            sb.AppendLine($"- TCP added latency of a bare sender on this machine, nothing of ours running (a {_keyFrameBytes}-byte key frame, the clip's median, written by blocking sends to N loopback sockets from {Math.Clamp(Environment.ProcessorCount, 1, 4)} threads at nice -10 while readers drain them), p50 / p99 µs: " +
                string.Join(", ", _bare.Select(f => $"N={f.Key}: {f.Value.P50Us:F0} / {f.Value.P99Us:F0}")));
        foreach (var reference in _steps.Select(s => s.Server).Where(n => n != "pearl2d").Distinct())
            foreach (var transport in o.Transports)
            {
                var ours = _steps.Where(s => s.Server == "pearl2d" && s.Transport == transport).ToDictionary(s => s.N);
                var theirs = _steps.Where(s => s.Server == reference && s.Transport == transport).ToDictionary(s => s.N);
                if (theirs.Count == 0) continue;
                var T = transport.ToUpperInvariant();
                sb.AppendLine($"- {T}: total server CPU, pearl2d / {reference} at the same N (pearl2d's includes its own 1080p30 encode): " +
                    string.Join(", ", ours.Keys.Where(n => n > 0 && theirs.ContainsKey(n)).Select(n => $"N={n}: {ours[n].CpuPct / Math.Max(0.1, theirs[n].CpuPct):F2}")));
                sb.AppendLine($"- {T}: CPU per viewer above each server's own idle CPU (measured just before the step), pearl2d / {reference}: " +
                    string.Join(", ", ours.Keys.Where(n => n > 0 && theirs.ContainsKey(n)).Select(n => $"N={n}: {PerViewer(ours[n]) / Math.Max(1e-6, PerViewer(theirs[n])):F2}")));
                sb.AppendLine($"- {T}: the same without pearl2d's capture and encode threads, pearl2d / {reference}: " +
                    string.Join(", ", ours.Keys.Where(n => n > 0 && theirs.ContainsKey(n)).Select(n => $"N={n}: {PerViewerFanOut(ours[n]) / Math.Max(1e-6, PerViewer(theirs[n])):F2}")));
            }
        Console.WriteLine(sb.ToString());
        var outDir = Path.Combine(FindRoot(), "out");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "bench-latest.md"), sb.ToString());
        Console.WriteLine($"(written to out/bench-latest.md; copy what matters into BENCHMARKS.md)");
    }

    static readonly List<Process> Started = new();

    /// <summary>Every server this run started is killed when it ends, however it ends.</summary>
    public static void KillAll()
    {
        foreach (var p in Started) { try { if (!p.HasExited) { p.Kill(true); p.WaitForExit(5000); } } catch (Exception) { } }
    }

    internal static Process Start(string file, string[] args, Action<string> onLine)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) onLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) onLine(e.Data); };
        p.BeginOutputReadLine(); p.BeginErrorReadLine();
        Started.Add(p);
        return p;
    }

    internal static double CpuSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0; // utime + stime in USER_HZ
    }

    /// <summary>
    /// CPU seconds of pearl2d's capture and encode threads: the test pattern and AAC tone with their encoders (video-chN,
    /// audio-chN) and libx264's workers (native threads named after the process). The hub's packaging and queueing run on
    /// the first two as well, so taking these out leaves the fan-out's cost a little short, never long.
    /// </summary>
    internal static double EncodeCpuSeconds(int pid)
    {
        long ticks = 0;
        foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
        {
            try
            {
                var stat = File.ReadAllText(Path.Combine(task, "stat"));
                string comm = stat[(stat.IndexOf('(') + 1)..stat.LastIndexOf(')')];
                bool main = Path.GetFileName(task) == pid.ToString();
                if (!(comm.StartsWith("video-ch") || comm.StartsWith("audio-ch") || (comm == "pearl2d" && !main))) continue;
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                ticks += long.Parse(fields[11]) + long.Parse(fields[12]);
            }
            catch (IOException) { } // the thread ended meanwhile
        }
        return ticks / 100.0;
    }

    internal static long RssKb(int pid) =>
        File.ReadLines($"/proc/{pid}/status").Where(l => l.StartsWith("VmRSS:")).Select(l => long.Parse(Regex.Match(l, @"\d+").Value)).FirstOrDefault();

    internal static string Machine()
    {
        var cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':')[1].Trim() ?? "?";
        var mem = File.ReadLines("/proc/meminfo").First().Split(':')[1].Trim();
        return $"{Environment.ProcessorCount} × {cpu}, {mem} RAM, Linux {Environment.OSVersion.Version}";
    }

    static bool PortOpen(int port)
    {
        try { using var c = new System.Net.Sockets.TcpClient(); c.Connect("127.0.0.1", port); return true; }
        catch (System.Net.Sockets.SocketException) { return false; }
    }

    internal static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        int p = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return p;
    }

    internal static string FindRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Pearl2.Firmware.sln"))) d = d.Parent;
        return d?.FullName ?? Environment.CurrentDirectory;
    }
}
