using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Pearl2.Tests.Integration;

/// <summary>
/// make bench (--upload): one 500 MB recording uploaded by pearl2d to vsftpd (plain FTP) and to OpenSSH's sshd (SFTP)
/// on loopback, side by side in the same run with curl (FTP) and OpenSSH's sftp to the same servers: throughput as a
/// ratio to the peer, and the CPU seconds each side spent (pearl2d's above its own idle with one small channel).
/// </summary>
static class UploadBench
{
    const long Size = 500L << 20;

    public static async Task<int> RunAsync()
    {
        var root = FanOutBench.FindRoot();
        var pearl2d = Environment.GetEnvironmentVariable("PEARL2D") ?? Path.Combine(root, "out/linux-x64/pearl2d");
        var work = Directory.CreateTempSubdirectory("pearl2-upbench").FullName;
        string file = Path.Combine(work, "payload.bin");
        using (var f = File.Create(file))
        {
            var buf = new byte[1 << 20];
            for (long i = 0; i < Size; i += buf.Length) { Random.Shared.NextBytes(buf); f.Write(buf); }
        }
        string key = Path.Combine(work, "client_key");
        await Peers.RunAsync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key], TimeSpan.FromSeconds(20));

        var rows = new List<string>();
        string streaming;
        await using (var ftp = await VsftpdPeer.StartAsync())
        {
            string curl = $"curl -sS -T {file} 'ftp://{VsftpdPeer.User}:{Uri.EscapeDataString(VsftpdPeer.Password)}@127.0.0.1:{ftp.Port}/curl.bin'";
            var ((ours, ourCpu), (peer, peerCpu)) = await MedianOfAsync(ftp.Home,
                () => OursAsync(pearl2d, work, file, $$""" "protocol": "ftp", "port": {{ftp.Port}}, "password": "{{VsftpdPeer.Password}}" """), () => TimedAsync(curl));
            rows.Add(Row("FTP → vsftpd", "curl", ours, ourCpu, peer, peerCpu));
            // The same file at 400 Mbit/s: curl limited alike, beside pearl2d uploading while it streams to 50 viewers.
            var (_, curlLimitedCpu) = await TimedAsync(curl.Replace("curl -sS", $"curl -sS --limit-rate {LimitKbps * 1000L / 8}"));
            streaming = await StreamingAsync(pearl2d, work, file, $$""" "protocol": "ftp", "port": {{ftp.Port}}, "password": "{{VsftpdPeer.Password}}" """, ours, curlLimitedCpu);
        }
        await using (var ssh = await SshdPeer.StartAsync())
        {
            await ssh.AuthorizeAsync(key + ".pub");
            File.WriteAllText(Path.Combine(work, "batch"), $"put {file} sftp.bin\n");
            var ((ours, ourCpu), (peer, peerCpu)) = await MedianOfAsync(ssh.Home,
                () => OursAsync(pearl2d, work, file, $$""" "protocol": "sftp", "port": {{ssh.Port}}, "privateKeyFile": "{{key}}" """),
                () => TimedAsync($"sftp -q -i {key} -P {ssh.Port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -b {work}/batch {SshdPeer.User}@127.0.0.1"));
            rows.Add(Row("SFTP → sshd", "OpenSSH sftp", ours, ourCpu, peer, peerCpu));
        }
        Directory.Delete(work, true);

        Console.WriteLine($"upload of one {Size >> 20} MB file on loopback ({FanOutBench.Machine()}); seconds are wall time (the median of {Runs} runs each, taken in turn), CPU is user+system seconds of the uploading process");
        Console.WriteLine("| transfer | peer | pearl2d s | peer s | throughput pearl2d / peer | pearl2d CPU s (above idle) | peer CPU s |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var r in rows) Console.WriteLine(r);
        Console.WriteLine();
        Console.WriteLine(streaming);
        return 0;
    }

    /// <summary>An uplink of 400 Mbit/s for the upload: 10 s for the file, long enough to measure its CPU beside the viewers'.</summary>
    const int Viewers = 50, Fps = 30, LimitKbps = 400_000;

    /// <summary>
    /// What an upload takes from a streaming device: one 1080p30 4 Mbit/s channel with AAC and 50 RTSP/TCP viewers, 10 s
    /// without upload, then the same 500 MB file to vsftpd while they watch, at most 400 Mbit/s (bandwidthKbps). pearl2d's CPU in both windows, the frames and
    /// RTP sequence gaps every viewer saw in each, and the upload's time beside the same upload on a quiet device.
    /// </summary>
    static async Task<string> StreamingAsync(string pearl2d, string work, string file, string target, double aloneSeconds, double curlCpu)
    {
        string dir = Directory.CreateDirectory(Path.Combine(work, "streaming-" + Guid.NewGuid().ToString("N")[..8])).FullName;
        string recordings = Path.Combine(dir, "data", "recordings");
        Directory.CreateDirectory(recordings);
        string name = "Bench_20260101-100000.mp4";   // not a name the quiet runs left on the server
        await Peers.RunAsync("ln", [file, Path.Combine(recordings, name)], TimeSpan.FromSeconds(10));   // a hard link: no copy to write back
        File.WriteAllText(Path.Combine(recordings, name + ".upload-pending"), "");
        int port = FanOutBench.FreePort(), http = FanOutBench.FreePort(), admin = FanOutBench.FreePort();
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""
            { "channels": [ { "name": "Bench", "video": { "width": 1920, "height": 1080, "fps": {{Fps}}, "bitrateKbps": 4000, "rateControl": "cbr", "keyFrameIntervalFrames": 60 } } ],
              "rtsp": { "port": {{port}}, "udpPortBase": 0, "viewerQueueUnits": 512 }, "http": { "port": {{http}} }, "admin": { "port": {{admin}}, "httpsPort": 0 },
              "upload": { "enabled": false, "host": "127.0.0.1", "username": "{{VsftpdPeer.User}}", "remotePath": "{file}", "bandwidthKbps": {{LimitKbps}}, {{target}} } }
            """);
        var lines = new List<string>();
        var p = FanOutBench.Start(pearl2d, ["--config", Path.Combine(dir, "config.json"), "--data-dir", Path.Combine(dir, "data")], l => { lock (lines) lines.Add(l); });
        await Task.Delay(4000);
        string url = $"rtsp://127.0.0.1:{port}/stream.sdp";
        var clients = new RtspTestClient[Viewers];
        for (int i = 0; i < Viewers; i++) { clients[i] = await RtspTestClient.ConnectAsync("127.0.0.1", port); await clients[i].PlayAsync(url); }
        using var stop = new CancellationTokenSource();
        var loops = clients.Select(c => Task.Run(() => c.ReceiveAsync(stop.Token))).ToArray();
        await Task.Delay(3000);

        // One window: pearl2d's CPU % of a core, the fewest frames a viewer got of those expected, and the gaps.
        (double CpuPct, double Seconds, long MinFrames, double Expected, long Gaps) Window(double cpu0, long[] f0, long[] g0, Stopwatch sw)
        {
            double secs = sw.Elapsed.TotalSeconds;
            return (100 * (FanOutBench.CpuSeconds(p.Id) - cpu0) / secs, secs,
                clients.Select((c, i) => Interlocked.Read(ref c.VideoFrames) - f0[i]).Min(), Fps * secs,
                clients.Select((c, i) => Interlocked.Read(ref c.SequenceGaps) - g0[i]).Sum());
        }
        long[] Frames() => clients.Select(c => Interlocked.Read(ref c.VideoFrames)).ToArray();
        long[] Gaps() => clients.Select(c => Interlocked.Read(ref c.SequenceGaps)).ToArray();

        var (cpuA, fA, gA, swA) = (FanOutBench.CpuSeconds(p.Id), Frames(), Gaps(), Stopwatch.StartNew());
        await Task.Delay(10_000);
        var quiet = Window(cpuA, fA, gA, swA);

        File.WriteAllText(Path.Combine(dir, "config.json"), File.ReadAllText(Path.Combine(dir, "config.json")).Replace("\"enabled\": false, \"host\"", "\"enabled\": true, \"host\""));
        var (cpuB, fB, gB, swB) = (FanOutBench.CpuSeconds(p.Id), Frames(), Gaps(), Stopwatch.StartNew());
        Process.Start("kill", ["-HUP", p.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
        string? done = null;
        while (done is null && swB.Elapsed < TimeSpan.FromMinutes(5))
        {
            await Task.Delay(50);
            lock (lines) done = lines.FirstOrDefault(l => l.Contains("upload.done"));
        }
        var busy = Window(cpuB, fB, gB, swB);
        stop.Cancel();
        foreach (var c in clients) await c.DisposeAsync();
        try { await Task.WhenAll(loops); } catch (Exception) { }
        p.Kill(true);
        if (done is null) throw new InvalidOperationException("pearl2d did not finish the upload while streaming:\n" + string.Join('\n', lines.Where(l => l.Contains("upload"))));
        double seconds = double.Parse(Regex.Match(done, @"seconds=([\d.]+)").Groups[1].Value, CultureInfo.InvariantCulture);
        double uploadCpu = (busy.CpuPct - quiet.CpuPct) / 100 * busy.Seconds;
        return string.Create(CultureInfo.InvariantCulture, $"""
            upload while streaming: one 1080p30 4 Mbit/s channel with AAC, {Viewers} RTSP/TCP viewers (pearl2d's CPU in % of one core)
            | window | seconds | pearl2d CPU % | fewest frames a viewer got (expected) | RTP sequence gaps, all viewers |
            |---|---|---|---|---|
            | {Viewers} viewers, no upload | {quiet.Seconds:F1} | {quiet.CpuPct:F1} | {quiet.MinFrames} ({quiet.Expected:F0}) | {quiet.Gaps} |
            | {Viewers} viewers + 500 MB to vsftpd | {busy.Seconds:F1} | {busy.CpuPct:F1} | {busy.MinFrames} ({busy.Expected:F0}) | {busy.Gaps} |

            - the upload ran at {Size * 8 / seconds / 1e6:F0} Mbit/s under a limit of {LimitKbps / 1000} Mbit/s (**{Size * 8 / seconds / 1e3 / LimitKbps:F2}x** the limit) while streaming; unlimited on a quiet device it took {aloneSeconds:F2} s
            - the upload's CPU on the streaming device: {uploadCpu:F2} s above streaming alone, {uploadCpu / (Size / 1e9):F2} s per GB; curl's for the same file at the same limit (--limit-rate): {curlCpu:F2} s: **{uploadCpu / curlCpu:F2}x** curl
            """);
    }

    const int Runs = 3;

    /// <summary>
    /// Ours and the peer's, taken in turn <see cref="Runs"/> times (a shared machine is noisy): each side's median run by
    /// time. Before each run the server's files are deleted and the page cache's dirty pages written out (sync), so
    /// that no run pays for the disk writeback of the ones before it.
    /// </summary>
    static async Task<((double, double) Ours, (double, double) Peer)> MedianOfAsync(string serverHome, Func<Task<(double Seconds, double Cpu)>> ours, Func<Task<(double Seconds, double Cpu)>> peer)
    {
        async Task SettleAsync()
        {
            foreach (var f in Directory.GetFiles(serverHome, "*.bin").Concat(Directory.GetFiles(serverHome, "*.mp4*"))) File.Delete(f);
            await Peers.RunAsync("sync", [], TimeSpan.FromMinutes(2));
        }
        var a = new List<(double Seconds, double Cpu)>();
        var b = new List<(double Seconds, double Cpu)>();
        for (int i = 0; i < Runs; i++)
        {
            await SettleAsync(); a.Add(await ours());
            await SettleAsync(); b.Add(await peer());
        }
        return (a.OrderBy(x => x.Seconds).ElementAt(Runs / 2), b.OrderBy(x => x.Seconds).ElementAt(Runs / 2));
    }

    static string Row(string what, string peerName, double ours, double ourCpu, double peer, double peerCpu) => string.Create(CultureInfo.InvariantCulture,
        $"| {what} | {peerName} | {ours:F2} ({Size / ours / 1e6:F0} MB/s) | {peer:F2} ({Size / peer / 1e6:F0} MB/s) | **{peer / ours:F2}** | {ourCpu:F2} | {peerCpu:F2} |");

    /// <summary>pearl2d with the file already waiting (a recording with its marker): seconds from its upload.done line, CPU above idle.</summary>
    static int _run;

    static async Task<(double Seconds, double Cpu)> OursAsync(string pearl2d, string work, string file, string target)
    {
        string dir = Directory.CreateDirectory(Path.Combine(work, "device-" + Guid.NewGuid().ToString("N")[..8])).FullName;
        string recordings = Path.Combine(dir, "data", "recordings");
        Directory.CreateDirectory(recordings);
        // A name of its own per run: the server keeps the last run's file, which would count as already there.
        string name = $"Bench_20260101-{Interlocked.Increment(ref _run):D6}.mp4";
        await Peers.RunAsync("ln", [file, Path.Combine(recordings, name)], TimeSpan.FromSeconds(10));   // a hard link: no copy to write back
        File.WriteAllText(Path.Combine(recordings, name + ".upload-pending"), "");
        int port = FanOutBench.FreePort(), http = FanOutBench.FreePort(), admin = FanOutBench.FreePort();
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""
            { "channels": [ { "name": "Bench", "audio": { "enabled": false }, "video": { "width": 160, "height": 90, "bitrateKbps": 200 } } ],
              "rtsp": { "port": {{port}}, "udpPortBase": 0 }, "http": { "port": {{http}} }, "admin": { "port": {{admin}}, "httpsPort": 0 },
              "upload": { "enabled": false, "host": "127.0.0.1", "username": "{{VsftpdPeer.User}}", "remotePath": "{file}", {{target}} } }
            """);
        var lines = new List<string>();
        var p = FanOutBench.Start(pearl2d, ["--config", Path.Combine(dir, "config.json"), "--data-dir", Path.Combine(dir, "data")], l => { lock (lines) lines.Add(l); });
        await Task.Delay(3000);
        // Idle first, then the upload switched on (SIGHUP after the config says so): the CPU in between is the upload's.
        double idle0 = FanOutBench.CpuSeconds(p.Id);
        await Task.Delay(2000);
        double idlePerSecond = (FanOutBench.CpuSeconds(p.Id) - idle0) / 2;
        File.WriteAllText(Path.Combine(dir, "config.json"), File.ReadAllText(Path.Combine(dir, "config.json")).Replace("\"enabled\": false, \"host\"", "\"enabled\": true, \"host\""));
        double cpu0 = FanOutBench.CpuSeconds(p.Id);
        var sw = Stopwatch.StartNew();
        Process.Start("kill", ["-HUP", p.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
        string? done = null;
        while (done is null && sw.Elapsed < TimeSpan.FromMinutes(5))
        {
            await Task.Delay(50);
            lock (lines) done = lines.FirstOrDefault(l => l.Contains("upload.done"));
        }
        double cpu = FanOutBench.CpuSeconds(p.Id) - cpu0 - idlePerSecond * sw.Elapsed.TotalSeconds;
        p.Kill(true);
        await p.WaitForExitAsync();
        Directory.Delete(dir, true);
        if (done is null) throw new InvalidOperationException("pearl2d did not finish the upload:\n" + string.Join('\n', lines.Where(l => l.Contains("upload"))));
        double seconds = double.Parse(Regex.Match(done, @"seconds=([\d.]+)").Groups[1].Value, CultureInfo.InvariantCulture);
        return (seconds, cpu);
    }

    /// <summary>A peer command's wall and CPU seconds, by bash's own time.</summary>
    static async Task<(double Seconds, double Cpu)> TimedAsync(string command)
    {
        // The command's own output goes to a file; bash's timing line comes on stdout.
        string errors = Path.GetTempFileName();
        var r = await Peers.RunAsync("bash", ["-c", $"TIMEFORMAT='%R %U %S'; {{ time ( {command} >/dev/null 2>{errors} ) ; }} 2>&1"], TimeSpan.FromMinutes(5));
        string said = File.ReadAllText(errors);
        File.Delete(errors);
        if (r.ExitCode != 0) throw new InvalidOperationException($"{command}: exit {r.ExitCode}: {said}");
        var t = r.Stdout.Trim().Split('\n').Last().Split(' ').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        return (t[0], t[1] + t[2]);
    }
}
