using System.Diagnostics;
using System.Text;

/// <summary>
/// make bench (--record): what recording one channel costs, pearl2d's recorder (the CPU pearl2d uses above its
/// own idle, with fdatasync every fragment) beside ffmpeg recording the same stream from RTSP with -c copy into
/// fragmented MP4 (the CPU of the ffmpeg process), in the same run. The picture is 640×360 so the encoder's own
/// CPU (the noise under "above idle") stays small; CBR with filler makes the bitrate, which is what recording costs.
/// </summary>
static class RecordBench
{
    const double Window = 20;

    public static async Task<int> RunAsync()
    {
        var root = FanOutBench.FindRoot();
        var pearl2d = Environment.GetEnvironmentVariable("PEARL2D") ?? Path.Combine(root, "out/linux-x64/pearl2d");
        var rows = new List<string>();
        foreach (int kbps in new[] { 4000, 20000 })
        {
            var dir = Directory.CreateTempSubdirectory("pearl2-recbench").FullName;
            int port = FanOutBench.FreePort(), http = FanOutBench.FreePort();
            File.WriteAllText(Path.Combine(dir, "bench.json"), $$"""
                {
                  "channels": [ { "name": "Bench", "video": { "width": 640, "height": 360, "fps": 30, "bitrateKbps": {{kbps}}, "rateControl": "cbr", "keyFrameIntervalFrames": 60 } } ],
                  "rtsp": { "port": {{port}}, "udpPortBase": 0 }, "http": { "port": {{http}} },
                  "recording": { "directory": "{{dir}}/ours" }
                }
                """);
            var data = Path.Combine(dir, "data");
            var server = FanOutBench.Start(pearl2d, ["--config", Path.Combine(dir, "bench.json"), "--data-dir", data], _ => { });
            await Task.Delay(4000);

            // Idle and recording windows alternate twice, so a drift in the encoder's own CPU does not land on one side.
            double idle = 0, recording = 0;
            long ours = 0, rss0 = FanOutBench.RssKb(server.Id), rss1 = 0;
            for (int round = 0; round < 2; round++)
            {
                idle += (await CpuOverAsync(server.Id, null)).Server / 2;
                await Control(pearl2d, data, "panel", "press", "record");
                await Task.Delay(2000);
                long before = DirBytes(Path.Combine(dir, "ours"));
                recording += (await CpuOverAsync(server.Id, null)).Server / 2;
                ours += (DirBytes(Path.Combine(dir, "ours")) - before) / 2;
                rss1 = Math.Max(rss1, FanOutBench.RssKb(server.Id));
                await Control(pearl2d, data, "panel", "press", "record");
                await Task.Delay(1000);
            }

            var peerOut = Path.Combine(dir, "ffmpeg.mp4");
            var ffmpeg = FanOutBench.Start("/usr/bin/ffmpeg", ["-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", $"rtsp://127.0.0.1:{port}/stream.sdp",
                "-c", "copy", "-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof", peerOut], _ => { });
            await Task.Delay(3000);
            long peerBefore = new FileInfo(peerOut).Length;
            var (serving, peer) = await CpuOverAsync(server.Id, ffmpeg.Id);
            long peerBytes = new FileInfo(peerOut).Length - peerBefore;
            ffmpeg.Kill(); server.Kill(true);

            double ourCost = recording - idle;
            string row = $"| {kbps / 1000} Mbit/s + AAC | {ourCost:F2} % | {peer:F2} % | **{ourCost / peer:F2}** | {ours / Window / 1e6:F2} / {peerBytes / Window / 1e6:F2} MB/s | {rss1 - rss0:+#;-#;0} KiB | {serving - idle:F2} % |";
            Console.WriteLine(row);
            rows.Add(row);
            Directory.Delete(dir, true);
        }

        var sb = new StringBuilder();
        sb.AppendLine($"Machine: {FanOutBench.Machine()}. Command: `make bench` (--record). Windows of {Window} s; CPU in % of one core.");
        sb.AppendLine();
        sb.AppendLine("| stream | pearl2d recorder (pearl2d CPU above idle) | ffmpeg -c copy to fMP4 from RTSP | ratio | written (ours / ffmpeg) | pearl2d RSS growth (peak while recording) | pearl2d serving ffmpeg's RTSP |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var r in rows) sb.AppendLine(r);
        Console.WriteLine();
        Console.WriteLine(sb);
        return 0;
    }

    static async Task<(double Server, double Peer)> CpuOverAsync(int server, int? peer)
    {
        double s0 = FanOutBench.CpuSeconds(server), p0 = peer is { } p ? FanOutBench.CpuSeconds(p) : 0;
        var sw = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(Window));
        double secs = sw.Elapsed.TotalSeconds;
        return (100 * (FanOutBench.CpuSeconds(server) - s0) / secs, peer is { } q ? 100 * (FanOutBench.CpuSeconds(q) - p0) / secs : 0);
    }

    static long DirBytes(string dir) => Directory.Exists(dir) ? new DirectoryInfo(dir).EnumerateFiles().Sum(f => f.Length) : 0;

    static async Task Control(string pearl2d, string data, params string[] words)
    {
        using var p = Process.Start(new ProcessStartInfo(pearl2d, [.. words, "--data-dir", data]) { RedirectStandardOutput = true })!;
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
    }
}
