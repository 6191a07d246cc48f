using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using Pearl2.Tests.Integration;

/// <summary>
/// make bench, the admin panel: the RSS the admin service adds to a 1080p30 channel idle and with 10 panel pages open
/// in Chromium (each polling the status and showing live previews, as a person leaves them open), and the requests a
/// second /api/v2.0/channels/status answers under 100 RTSP viewers (wrk, Basic as Pearl clients send it) beside nginx
/// serving the same bytes as a static file, in the same run.
/// </summary>
static class AdminBench
{
    const string Password = "bench admin pw";

    static string Config(int rtsp, int http, int admin, bool enabled) => $$"""
        {
          "channels": [ { "name": "Bench", "video": { "width": 1920, "height": 1080, "fps": 30, "bitrateKbps": 4000, "rateControl": "cbr", "keyFrameIntervalFrames": 60 }, "audio": { "enabled": true } } ],
          "rtsp": { "port": {{rtsp}}, "udpPortBase": 0 }, "http": { "port": {{http}} },
          "admin": { "enabled": {{(enabled ? "true" : "false")}}, "port": {{admin}}, "httpsPort": {{admin + 1}} }
        }
        """;

    /// <summary>The RSS averaged over 5 readings a second apart, after <paramref name="settle"/>.</summary>
    static async Task<long> SteadyRssKbAsync(int pid, TimeSpan settle)
    {
        await Task.Delay(settle);
        long sum = 0;
        for (int i = 0; i < 5; i++) { sum += FanOutBench.RssKb(pid); await Task.Delay(1000); }
        return sum / 5;
    }

    static async Task<(double Rps, string P99, string Body)> WrkAsync(string url, string? basic)
    {
        var args = new List<string> { "-t2", "-c8", "-d10s", "--latency" };
        if (basic is not null) args.AddRange(["-H", $"Authorization: Basic {basic}"]);
        args.Add(url);
        var psi = new ProcessStartInfo("wrk") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        double rps = double.Parse(Regex.Match(output, @"Requests/sec:\s+([\d.]+)").Groups[1].Value);
        string p99 = Regex.Match(output, @"99%\s+(\S+)").Groups[1].Value;
        var non2xx = Regex.Match(output, @"Non-2xx or 3xx responses: (\d+)");
        if (non2xx.Success) throw new InvalidOperationException($"wrk saw {non2xx.Groups[1].Value} failed answers from {url}:\n{output}");
        return (rps, p99, output);
    }

    public static async Task<int> RunAsync()
    {
        var root = FanOutBench.FindRoot();
        var pearl2d = Environment.GetEnvironmentVariable("PEARL2D") ?? Path.Combine(root, "out/linux-x64/pearl2d");
        var dir = Directory.CreateTempSubdirectory("pearl2-admin-bench").FullName;
        // nginx's worker runs as www-data when started by root: it must be able to read the file it serves.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        int rtsp = FanOutBench.FreePort(), http = FanOutBench.FreePort(), admin = FanOutBench.FreePort();
        Console.WriteLine($"# admin panel bench: {FanOutBench.Machine()}");

        // 1. The same channel without the admin service, then with it (idle, set up, nobody connected).
        File.WriteAllText(Path.Combine(dir, "off.json"), Config(rtsp, http, admin, false));
        var off = FanOutBench.Start(pearl2d, ["--config", Path.Combine(dir, "off.json"), "--data-dir", Path.Combine(dir, "data-off")], _ => { });
        long rssOff = await SteadyRssKbAsync(off.Id, TimeSpan.FromSeconds(8));
        off.Kill(true); await off.WaitForExitAsync();
        File.WriteAllText(Path.Combine(dir, "on.json"), Config(rtsp, http, admin, true));
        var on = FanOutBench.Start(pearl2d, ["--config", Path.Combine(dir, "on.json"), "--data-dir", Path.Combine(dir, "data-on")], _ => { });
        for (int i = 0; i < 100 && !PortOpen(admin); i++) await Task.Delay(100);
        using var api = new AdminClient("127.0.0.1", admin);
        var setup = await api.PostAsync("/api/v2.0/x-pearl2/setup", $$"""{ "username": "admin", "password": "{{Password}}" }""");
        if (setup.Status != System.Net.HttpStatusCode.OK) throw new InvalidOperationException("setup failed: " + setup.Json);
        long rssIdle = await SteadyRssKbAsync(on.Id, TimeSpan.FromSeconds(8));
        Console.WriteLine($"RSS: admin off {rssOff / 1024.0:F1} MiB, admin on and idle {rssIdle / 1024.0:F1} MiB: +{(rssIdle - rssOff) / 1024.0:F1} MiB");

        // 2. Ten panel pages on the dashboard, each polling and showing the live preview.
        double cpu0 = FanOutBench.CpuSeconds(on.Id);
        var sw = Stopwatch.StartNew();
        long rssPages;
        using (var playwright = await Playwright.CreateAsync())
        {
            await using var browser = await playwright.Chromium.LaunchAsync(new()
            {
                ExecutablePath = "/usr/bin/chromium", Headless = true,
                Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
            });
            for (int i = 0; i < 10; i++)
            {
                var page = await (await browser.NewContextAsync()).NewPageAsync();
                await page.GotoAsync($"http://127.0.0.1:{admin}/");
                await page.FillAsync("#login-user", "admin");
                await page.FillAsync("#login-password", Password);
                await page.ClickAsync("#login-submit");
                await page.WaitForFunctionAsync("() => (document.getElementById('preview-1') || {}).naturalWidth > 0", null, new() { Timeout = 30000 });
            }
            cpu0 = FanOutBench.CpuSeconds(on.Id); sw.Restart();
            rssPages = await SteadyRssKbAsync(on.Id, TimeSpan.FromSeconds(10));
        }
        double pagesCpu = 100 * (FanOutBench.CpuSeconds(on.Id) - cpu0) / sw.Elapsed.TotalSeconds;
        Console.WriteLine($"RSS with 10 panel pages open: {rssPages / 1024.0:F1} MiB: +{(rssPages - rssOff) / 1024.0:F1} MiB over admin off; pearl2d CPU {pagesCpu:F1} %");

        // 3. /channels/status under 100 RTSP viewers, beside nginx serving the same answer as a file.
        var viewers = new List<RtspTestClient>();
        using var stop = new CancellationTokenSource();
        var loops = new List<Task>();
        for (int i = 0; i < 100; i++)
        {
            var c = await RtspTestClient.ConnectAsync("127.0.0.1", rtsp);
            await c.PlayAsync($"rtsp://127.0.0.1:{rtsp}/stream.sdp");
            viewers.Add(c);
            loops.Add(Task.Run(() => c.ReceiveAsync(stop.Token)));
        }
        await Task.Delay(3000);
        string basic = Convert.ToBase64String(Encoding.UTF8.GetBytes($"admin:{Password}"));
        string statusUrl = $"http://127.0.0.1:{admin}/api/v2.0/channels/status";
        using (var hc = new HttpClient())
        {
            var req = new HttpRequestMessage(HttpMethod.Get, statusUrl);
            req.Headers.Authorization = new AuthenticationHeaderValue("Basic", basic);
            File.WriteAllText(Path.Combine(dir, "status.json"), await (await hc.SendAsync(req)).Content.ReadAsStringAsync());
        }
        long frames0 = viewers.Sum(v => Interlocked.Read(ref v.VideoFrames)), gaps0 = viewers.Sum(v => Interlocked.Read(ref v.SequenceGaps));
        var ours = await WrkAsync(statusUrl, basic);
        long frames = viewers.Sum(v => Interlocked.Read(ref v.VideoFrames)) - frames0, gaps = viewers.Sum(v => Interlocked.Read(ref v.SequenceGaps)) - gaps0;
        stop.Cancel();
        foreach (var v in viewers) await v.DisposeAsync();
        try { await Task.WhenAll(loops); } catch (Exception) { }
        Console.WriteLine($"pearl2d /api/v2.0/channels/status under 100 RTSP viewers: {ours.Rps:F0} requests/s, p99 {ours.P99}; the viewers got {frames / 100.0 / 10:F1} frames/s each, {gaps} sequence gaps");

        int nginxPort = FanOutBench.FreePort();
        File.WriteAllText(Path.Combine(dir, "nginx.conf"), $$"""
            daemon off; worker_processes 1; error_log {{dir}}/nginx-error.log; pid {{dir}}/nginx.pid;
            events { worker_connections 256; }
            http { access_log off; server { listen 127.0.0.1:{{nginxPort}}; root {{dir}}; location / { default_type application/json; } } }
            """);
        var nginx = FanOutBench.Start("/usr/sbin/nginx", ["-c", Path.Combine(dir, "nginx.conf"), "-p", dir], _ => { });
        for (int i = 0; i < 100 && !PortOpen(nginxPort); i++) await Task.Delay(100);
        var theirs = await WrkAsync($"http://127.0.0.1:{nginxPort}/status.json", null);
        Console.WriteLine($"nginx, the same bytes as a static file (1 worker): {theirs.Rps:F0} requests/s, p99 {theirs.P99}; ratio pearl2d/nginx {ours.Rps / theirs.Rps:F2}");
        nginx.Kill(true);
        on.Kill(true);

        Console.WriteLine();
        Console.WriteLine("| measure | pearl2d | reference | ratio |");
        Console.WriteLine("|---|---|---|---|");
        Console.WriteLine($"| RSS added by the admin service, idle | +{(rssIdle - rssOff) / 1024.0:F1} MiB (of {rssIdle / 1024.0:F1}) | admin off: {rssOff / 1024.0:F1} MiB | {(double)rssIdle / rssOff:F2} |");
        Console.WriteLine($"| RSS added with 10 panel pages open | +{(rssPages - rssOff) / 1024.0:F1} MiB, CPU {pagesCpu:F1} % | admin off: {rssOff / 1024.0:F1} MiB | {(double)rssPages / rssOff:F2} |");
        Console.WriteLine($"| /api/v2.0/channels/status under 100 RTSP viewers (wrk -t2 -c8) | {ours.Rps:F0} req/s, p99 {ours.P99} | nginx static file: {theirs.Rps:F0} req/s, p99 {theirs.P99} | {ours.Rps / theirs.Rps:F2} |");
        return 0;
    }

    static bool PortOpen(int port)
    {
        try { using var c = new System.Net.Sockets.TcpClient(); c.Connect("127.0.0.1", port); return true; }
        catch (System.Net.Sockets.SocketException) { return false; }
    }
}
