using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using Pearl2.Formats.Update;
using Pearl2.Services.Update;

/// <summary>
/// make bench (--update): what a firmware update costs on the wire, pearl2d's chunked update (SlotDownloader: keep,
/// copy from the running slot, fetch the rest with Range) beside casync (content-defined chunks, the store RAUC's
/// adaptive updates use) and zsync (rolling checksums over HTTP Range), all three against the same nginx, from the
/// same running slot, in one run. The running slot is slot A of the qemu-virt image (make test-images); the new
/// versions are its next version as make test-images builds it (only the release file differs), a rebuild with a
/// changed pearl2d (every 64 KiB of the binary altered and 300 KB added, as a real code change would), and one with a
/// small file fewer in /etc (so most files move), both built here.
/// Bytes are what nginx logged as sent; time is the client's wall clock, including its read-back or hashing.
/// </summary>
static class UpdateBench
{
    public static async Task<int> RunAsync()
    {
        var root = FanOutBench.FindRoot();
        var pearl2d = Environment.GetEnvironmentVariable("PEARL2D") ?? Path.Combine(root, "out/linux-x64/pearl2d");
        var version = System.Text.RegularExpressions.Regex.Match(File.ReadAllText(Path.Combine(root, "firmware", "Pearl2.Host", "Pearl2.Host.csproj")), "<Version>([^<]+)</Version>").Groups[1].Value;
        var v = version.Split('.');
        string next = $"{v[0]}.{v[1]}.{int.Parse(v[2]) + 1}", rebuilt = $"{v[0]}.{v[1]}.{int.Parse(v[2]) + 2}", moved = $"{v[0]}.{v[1]}.{int.Parse(v[2]) + 3}";
        var image = Path.Combine(root, "out", $"pearl2-qemu-virt-{version}.img");
        var nextSlot = Path.Combine(root, "out", $"pearl2-qemu-virt-{next}.slot");
        if (!File.Exists(image) || !File.Exists(nextSlot))
        {
            Console.WriteLine($"update bench skipped: {image} or {nextSlot} is missing (make test-images builds them when the Debian base is cached)");
            return 0;
        }
        foreach (var tool in new[] { "/usr/sbin/nginx", "/usr/bin/casync", "/usr/bin/zsync", "/usr/bin/zsyncmake" })
            if (!File.Exists(tool)) { Console.WriteLine($"update bench skipped: {tool} is missing (make deps-bench installs it)"); return 1; }

        var dir = Directory.CreateTempSubdirectory("pearl2-updbench").FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(dir, (UnixFileMode)0b111_101_101);   // nginx's workers read it as another user
        try
        {
            // The running slot: partition 2 of the card.
            var slotA = Path.Combine(dir, "slot-a");
            var table = await Run("sfdisk", ["-J", image]);
            var start = System.Text.Json.JsonDocument.Parse(table).RootElement.GetProperty("partitiontable").GetProperty("partitions")[1];
            await Run("dd", [$"if={image}", $"of={slotA}", "bs=1M", $"skip={start.GetProperty("start").GetInt64() / 2048}", $"count={start.GetProperty("size").GetInt64() / 2048}", "conv=sparse", "status=none"]);

            // The rebuilt release: pearl2d changed throughout and grown, in an image built the way make image does.
            var changed = Path.Combine(dir, "pearl2d-changed");
            var binary = File.ReadAllBytes(Path.Combine(root, "out", "linux-arm64", "pearl2d"));
            for (int i = 4096; i < binary.Length; i += 64 << 10) binary[i] ^= 0x5a;
            File.WriteAllBytes(changed, [.. binary, .. RandomNumberGenerator.GetBytes(300_000)]);
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(changed, (UnixFileMode)0b111_101_101);
            // The same inputs as make test-images gave slot A (its test key among them), but for the changed binary.
            var build = await RunResult(Path.Combine(root, "image", "build-image.sh"), ["qemu-virt", rebuilt, changed, dir],
                new() { ["PEARL2_SLOT_ONLY"] = "1", ["PEARL2_UPDATE_KEY"] = Path.Combine(root, "out", "test-keys", "update-key.pem") });
            if (build.ExitCode != 0) { Console.WriteLine($"update bench: building {rebuilt} failed:\n{build.Output}"); return 1; }
            // A release without the update key file in /etc/pearl2: one small file fewer early in the tree moves almost
            // every file after it in the file system (the case fixed places cannot follow).
            build = await RunResult(Path.Combine(root, "image", "build-image.sh"), ["qemu-virt", moved, Path.Combine(root, "out", "linux-arm64", "pearl2d"), dir],
                new() { ["PEARL2_SLOT_ONLY"] = "1" });
            if (build.ExitCode != 0) { Console.WriteLine($"update bench: building {moved} failed:\n{build.Output}"); return 1; }

            Console.WriteLine($"# update bench: {FanOutBench.Machine()}");
            Console.WriteLine("| update | image | pearl2d: payload / sent / time | casync: store / sent / time | zsync: sent / time | sent, ours ÷ casync | ours ÷ zsync | time, ours ÷ casync |");
            Console.WriteLine("|---|---|---|---|---|---|---|---|");
            foreach (var (name, slot) in new[] { ($"{version} → {next} (release file only)", nextSlot), ($"{version} → {rebuilt} (pearl2d rebuilt)", Path.Combine(dir, $"pearl2-qemu-virt-{rebuilt}.slot")),
                         ($"{version} → {moved} (one file fewer in /etc: the rest moved)", Path.Combine(dir, $"pearl2-qemu-virt-{moved}.slot")) })
                Console.WriteLine(await CompareAsync(dir, pearl2d, slotA, slot, name));
            return 0;
        }
        finally { Directory.Delete(dir, true); }
    }

    static async Task<string> CompareAsync(string dir, string pearl2d, string slotA, string slot, string name)
    {
        var www = Path.Combine(dir, "www");
        if (Directory.Exists(www)) Directory.Delete(www, true);
        Directory.CreateDirectory(www);
        long imageBytes = new FileInfo(slot).Length;

        // Ours: pearl2d pack, then the device's own downloader against nginx, seeded from slot A.
        await Run(pearl2d, ["pack", slot, Path.Combine(www, "u.chunks"), Path.Combine(www, "u.index")]);
        // casync: its defaults (content-defined chunks of about 64 KiB, compressed), the store beside ours.
        await Run("casync", ["make", $"--store={www}/store", Path.Combine(www, "u.caibx"), slot]);
        // zsync: its defaults over the image as it is.
        File.Copy(slot, Path.Combine(www, "u.slot"));
        await RunIn(www, "zsyncmake", ["-u", "u.slot", "-o", "u.zsync", "u.slot"]);
        long storeBytes = DirBytes(Path.Combine(www, "store"));
        long payloadBytes = new FileInfo(Path.Combine(www, "u.chunks")).Length;

        await using var nginx = await Nginx.StartAsync(dir, www);
        var index = ChunkIndex.Parse(File.ReadAllBytes(Path.Combine(www, "u.index")));
        var manifest = new UpdateManifest(new(9, 9, 9), "qemu-virt", nginx.Url("u.chunks"), nginx.Url("u.index"), [], imageBytes, [], "");
        var target = Path.Combine(dir, "ours-b");
        var clock = Stopwatch.StartNew();
        using (var http = new HttpClient())
            await new SlotDownloader(http, TimeProvider.System, NullLogger.Instance).DownloadAsync(manifest, index, new FileSlot("b", target, 2L << 30), new FileSlot("a", slotA, 2L << 30), null, default);
        bool ok = await SlotDownloader.VerifyAsync(new FileSlot("b", target, 2L << 30), imageBytes, SHA256.HashData(File.ReadAllBytes(slot)), default);
        double oursSeconds = clock.Elapsed.TotalSeconds;
        long oursSent = nginx.SentSince(0, "/u.chunks");
        if (!ok) throw new InvalidOperationException("pearl2d's slot does not hash to the image");
        File.Delete(target);

        int mark = nginx.Lines;
        clock.Restart();
        await Run("casync", ["extract", $"--store={nginx.Url("store")}", $"--seed={slotA}", nginx.Url("u.caibx").ToString(), Path.Combine(dir, "casync-b")]);
        double casyncSeconds = clock.Elapsed.TotalSeconds;
        long casyncSent = nginx.SentSince(mark, "/store/");
        Same(slot, Path.Combine(dir, "casync-b"));

        mark = nginx.Lines;
        clock.Restart();
        await RunIn(dir, "zsync", ["-q", "-i", slotA, "-o", Path.Combine(dir, "zsync-b"), nginx.Url("u.zsync").ToString()]);
        double zsyncSeconds = clock.Elapsed.TotalSeconds;
        long zsyncSent = nginx.SentSince(mark, "/u.slot");
        Same(slot, Path.Combine(dir, "zsync-b"));
        foreach (var f in new[] { "casync-b", "zsync-b", "zsync-b.part" }) File.Delete(Path.Combine(dir, f));

        static string MB(long b) => $"{b / 1e6:F1} MB";
        return $"| {name} | {MB(imageBytes)} | {MB(payloadBytes)} / **{MB(oursSent)}** / {oursSeconds:F1} s | {MB(storeBytes)} / {MB(casyncSent)} / {casyncSeconds:F1} s | " +
            $"{MB(zsyncSent)} / {zsyncSeconds:F1} s | **{Ratio(oursSent, casyncSent)}** | **{Ratio(oursSent, zsyncSent)}** | {oursSeconds / casyncSeconds:F2} |";
    }

    static string Ratio(long a, long b) => b == 0 ? "n/a" : $"{(double)a / b:F2}";

    static void Same(string expected, string actual)
    {
        using var a = File.OpenRead(expected);
        using var b = File.OpenRead(actual);
        if (!SHA256.HashData(a).AsSpan().SequenceEqual(SHA256.HashData(b))) throw new InvalidOperationException($"{actual} is not {expected}");
    }

    static long DirBytes(string d) => Directory.EnumerateFiles(d, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);

    static Task<string> Run(string file, string[] args) => RunIn(null, file, args);

    static async Task<string> RunIn(string? cwd, string file, string[] args)
    {
        var r = await RunResult(file, args, null, cwd);
        if (r.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({r.ExitCode}):\n{r.Output}");
        return r.Output;
    }

    static async Task<(int ExitCode, string Output)> RunResult(string file, string[] args, Dictionary<string, string>? env, string? cwd = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = cwd ?? "" };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, val) in env ?? []) psi.Environment[k] = val;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await stdout + await stderr);
    }

    /// <summary>nginx serving a directory on a loopback port, logging the bytes of every body it sends.</summary>
    sealed class Nginx : IAsyncDisposable
    {
        readonly Process _p;
        readonly string _log;
        readonly int _port;

        Nginx(Process p, string log, int port) { _p = p; _log = log; _port = port; }

        public Uri Url(string path) => new($"http://127.0.0.1:{_port}/{path}");
        public int Lines => File.Exists(_log) ? File.ReadAllLines(_log).Length : 0;

        /// <summary>Body bytes sent for paths starting with <paramref name="prefix"/>, in the log lines after <paramref name="mark"/>.</summary>
        public long SentSince(int mark, string prefix) => File.ReadAllLines(_log).Skip(mark)
            .Select(l => l.Split(' ')).Where(f => f.Length == 3 && f[0].StartsWith(prefix, StringComparison.Ordinal)).Sum(f => long.Parse(f[2]));

        public static async Task<Nginx> StartAsync(string dir, string www)
        {
            int port = FanOutBench.FreePort();
            var prefix = Path.Combine(dir, "nginx");
            Directory.CreateDirectory(prefix);
            var log = Path.Combine(prefix, "sent.log");
            File.WriteAllText(Path.Combine(prefix, "nginx.conf"), $$"""
                daemon off;
                worker_processes 1;
                pid {{prefix}}/nginx.pid;
                error_log {{prefix}}/error.log;
                events { worker_connections 256; }
                http {
                  access_log off;
                  client_body_temp_path {{prefix}}/body; proxy_temp_path {{prefix}}/proxy; fastcgi_temp_path {{prefix}}/fcgi;
                  uwsgi_temp_path {{prefix}}/uwsgi; scgi_temp_path {{prefix}}/scgi;
                  log_format sent '$uri $status $body_bytes_sent';
                  server {
                    listen 127.0.0.1:{{port}};
                    root {{www}};
                    access_log {{log}} sent;
                  }
                }
                """);
            var psi = new ProcessStartInfo("/usr/sbin/nginx") { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in new[] { "-p", prefix, "-c", Path.Combine(prefix, "nginx.conf") }) psi.ArgumentList.Add(a);
            var p = Process.Start(psi)!;
            for (int i = 0; i < 50 && !Listening(port); i++) await Task.Delay(100);
            return new Nginx(p, log, port);
        }

        static bool Listening(int port)
        {
            try { using var c = new System.Net.Sockets.TcpClient(); c.Connect(System.Net.IPAddress.Loopback, port); return true; }
            catch (System.Net.Sockets.SocketException) { return false; }
        }

        public async ValueTask DisposeAsync()
        {
            try { _p.Kill(); } catch (InvalidOperationException) { }
            await _p.WaitForExitAsync();
        }
    }
}
