using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Pearl2.Services.Update;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// A static update server (Python's http.server, started by the test on loopback) holding a manifest signed with
/// openssl, as a release would be, by a key made for this test; pearl2d runs through the host boot loader with its
/// slots as files, so the whole cycle runs: check, download, switch, reboot (an exec), confirm or fall back.
/// </summary>
public sealed class UpdateCycle : IAsyncDisposable
{
    Process _server = null!;
    public string Dir { get; } = Directory.CreateTempSubdirectory("pearl2-update").FullName;
    public string Www => Path.Combine(Dir, "www");
    public string Slots => Path.Combine(Dir, "slots");
    public string PublicKey => Path.Combine(Dir, "update-key.pem");
    public int Port { get; }

    UpdateCycle(int port) { Port = port; }

    public static async Task<UpdateCycle> StartAsync()
    {
        var cycle = new UpdateCycle(Peers.FreePortBase(1));
        Directory.CreateDirectory(Path.Combine(cycle.Www, "host"));
        var psi = new ProcessStartInfo(Peers.Require("python3")) { WorkingDirectory = cycle.Www, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-m", "http.server", cycle.Port.ToString(), "--bind", "127.0.0.1" }) psi.ArgumentList.Add(a);
        cycle._server = Process.Start(psi)!;
        cycle._server.OutputDataReceived += (_, _) => { };   // drained, so its request log never fills the pipe
        cycle._server.ErrorDataReceived += (_, _) => { };
        cycle._server.BeginOutputReadLine();
        cycle._server.BeginErrorReadLine();
        int port = cycle.Port;
        var key = Path.Combine(cycle.Dir, "update-key.private.pem");   // throwaway, outside the repository
        Assert.Equal(0, (await Peers.RunAsync("openssl", ["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", key], TimeSpan.FromSeconds(20))).ExitCode);
        Assert.Equal(0, (await Peers.RunAsync("openssl", ["ec", "-in", key, "-pubout", "-out", cycle.PublicKey], TimeSpan.FromSeconds(20))).ExitCode);
        for (int i = 0; i < 50 && !Peers.TcpListening(port); i++) await Task.Delay(100);
        return cycle;
    }

    /// <summary>
    /// Puts <paramref name="image"/> on the server as version <paramref name="version"/> for board "host", as a release
    /// does: scripts/update-bundle.sh packs it into chunks (pearl2d pack) and signs the manifest with the test key.
    /// </summary>
    public async Task PublishAsync(string version, byte[] image)
    {
        var file = Path.Combine(Dir, $"image-{version}");
        File.WriteAllBytes(file, image);
        var bundle = await Peers.RunAsync(Path.Combine(Peers.RepoRoot, "scripts", "update-bundle.sh"),
            ["host", version, Path.Combine(Dir, "update-key.private.pem"), Www, file], TimeSpan.FromMinutes(1), env: new() { ["PEARL2D"] = Peers.Pearl2d });
        Assert.True(bundle.ExitCode == 0, bundle.Stdout + bundle.Stderr);
    }

    /// <summary>
    /// A release for the host board: this firmware binary (the manifest gives it its version) with
    /// <paramref name="extraBytes"/> of random bytes after its end, which the loader ignores. Those are what the
    /// running slot (the same binary) does not have: the chunks the device must fetch.
    /// </summary>
    public static byte[] Release(int extraBytes) => [.. File.ReadAllBytes(Peers.Pearl2d), .. RandomNumberGenerator.GetBytes(extraBytes)];

    public string Config => $$"""
        { "channels": [ { "name": "Cam", "video": { "width": 320, "height": 240, "fps": 15, "bitrateKbps": 300 } } ],
          "update": { "url": "http://127.0.0.1:{{Port}}/", "publicKey": "{{PublicKey}}", "intervalSeconds": 3600, "confirmSeconds": 30 } }
        """;

    public BootState Boot => JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(Slots, "boot.json")), BootStateJson.Default.BootState)!;

    public async ValueTask DisposeAsync()
    {
        try { _server.Kill(true); } catch (InvalidOperationException) { }
        await _server.WaitForExitAsync();
        Directory.Delete(Dir, true);
    }
}


public sealed class UpdateTests(ITestOutputHelper output)
{
    static async Task WaitForCountAsync(Pearl2dProcess p, string text, int count, TimeSpan timeout)
    {
        var since = Stopwatch.StartNew();
        while (p.CountInLog(text) < count)
        {
            if (since.Elapsed > timeout) throw new TimeoutException($"'{text}' seen {p.CountInLog(text)} times, not {count}:\n{p.Log}");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task AGoodUpdateDownloadsSwitchesRebootsIntoTheNewVersionWhichConfirmsItself()
    {
        await using var cycle = await UpdateCycle.StartAsync();
        // The new release's image is a firmware binary (this one, grown by 2 MiB; the manifest gives it version 0.2.0).
        await cycle.PublishAsync("0.2.0", UpdateCycle.Release(2 << 20));
        await using var device = await Pearl2dProcess.StartInAsync(null, cycle.Config, 1, cycle.Slots);
        Assert.Contains("firmware version=0.1.0 slot=a update=idle", await device.ControlAsync("status"));
        int pid = device.Pid;

        Assert.Equal("installed 0.2.0 in slot b; rebooting\n", await device.ControlAsync("update", "check"));
        await WaitForCountAsync(device, "update.confirmed version=0.2.0 slot=b", 1, TimeSpan.FromSeconds(60));
        Assert.Equal(pid, device.Pid);   // the reboot was an exec: the same process went on as slot b
        var status = await device.ControlAsync("status");
        output.WriteLine(status);
        Assert.Contains("firmware version=0.2.0 slot=b", status);
        Assert.Equal(("b", (string?)null), (cycle.Boot.Active, cycle.Boot.Trying));
        Assert.Matches(@"update\.progress version=0\.2\.0 percent=100 bytes=\d+ total=\d+ rate_kbps=\d+ remaining_s=0", device.Log);
        await device.WaitForLogAsync("boot.decision slot=b version=0.2.0 try=yes", Pearl2dProcess.LogLag);
        // The binary's chunks came from the running slot, the 2 MiB tail from the server (http.server ignores Range,
        // so the whole payload came and the chunks already in place were skipped).
        var took = System.Text.RegularExpressions.Regex.Match(device.Log, @"update\.downloaded version=0\.2\.0 slot=b kept=0 seeded=(\d+) zero=\d+ fetched=(\d+) ");
        output.WriteLine(took.Value);
        int tail = (2 << 20) / Pearl2.Formats.Update.ChunkIndex.DefaultChunkSize;   // chunks the tail fills, and one it may share with the binary
        Assert.True(took.Success && int.Parse(took.Groups[1].Value) > 0 && int.Parse(took.Groups[2].Value) >= tail && int.Parse(took.Groups[2].Value) <= tail + 1, device.Log);

        // The new version streams, and the same release is not installed twice.
        var probe = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v", "-count_frames", "-read_intervals", "%+2",
            "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", device.Url()], TimeSpan.FromSeconds(30));
        Assert.True(int.Parse(probe.Stdout.Trim()) >= 15, probe.Stdout + probe.Stderr);
        Assert.Equal("up to date (0.2.0)\n", await device.ControlAsync("update", "check"));
    }

    [Fact]
    public async Task ANewVersionThatNeverBecomesHealthyIsRolledBackAndNeverRetried()
    {
        await using var cycle = await UpdateCycle.StartAsync();
        // A release that boots but never comes up: it never confirms.
        await cycle.PublishAsync("0.3.0", Encoding.ASCII.GetBytes("#!/bin/sh\necho 'broken release: never healthy'\nexec sleep 600\n"));
        var device = await Pearl2dProcess.StartInAsync(null, cycle.Config, 1, cycle.Slots);
        try
        {
            Assert.Equal("installed 0.3.0 in slot b; rebooting\n", await device.ControlAsync("update", "check"));
            await WaitForCountAsync(device, "broken release: never healthy", 1, TimeSpan.FromSeconds(30));
            Assert.Equal(("b", true), (cycle.Boot.Trying, cycle.Boot.TryBooted));
            // Its watchdog (here: the test) power-cycles the board; the boot loader goes back to slot a.
            await device.KillAsync();
            device = await device.RestartAsync();
            Assert.Contains("boot.decision slot=a version=0.1.0 try=no reason=\"slot b was booted once and never confirmed: back to slot a\" bad=0.3.0", device.Log);
            Assert.Contains("firmware version=0.1.0 slot=a", await device.ControlAsync("status"));
            Assert.Equal(["0.3.0"], cycle.Boot.Bad);
            Assert.Equal("refused: version 0.3.0 failed its health check on this device before\n", await device.FailedUpdateCheckAsync());
        }
        finally { await device.DisposeAsync(); }
    }

    [Fact]
    public async Task RefusedAndFailedChecksKeepTheRunningVersion()
    {
        await using var cycle = await UpdateCycle.StartAsync();
        await using var device = await Pearl2dProcess.StartInAsync(null, cycle.Config, 1, cycle.Slots);
        // Nothing published yet: the server answers 404.
        Assert.StartsWith("check failed: ", await device.FailedUpdateCheckAsync());
        // A tampered manifest: signed, then one byte changed.
        await cycle.PublishAsync("0.2.0", File.ReadAllBytes(Peers.Pearl2d));
        var manifest = Path.Combine(cycle.Www, "host", "manifest.json");
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("0.2.0", "0.2.1"));
        Assert.Equal("refused: the manifest's signature does not verify with this device's key\n", await device.FailedUpdateCheckAsync());
        // A signed release whose payload was changed on the server afterwards (http.server ignores Range: the whole
        // payload comes, and the changed chunk is refused before it is written).
        await cycle.PublishAsync("0.2.0", RandomNumberGenerator.GetBytes(3 << 20));   // nothing of it is in slot a
        var payload = Path.Combine(cycle.Www, "host", "pearl2-host-0.2.0.chunks");
        var bytes = File.ReadAllBytes(payload);
        // Inside a chunk's data, not on a block header's padding bits (a flip there changes nothing the image holds).
        bytes[bytes.Length / 2 + 1000] ^= 0x20;
        File.WriteAllBytes(payload, bytes);
        Assert.Matches(@"^refused: chunk \d+ \(payload bytes \d+-\d+\) does not inflate to its signed hash\n$", await device.FailedUpdateCheckAsync());
        // A signed manifest whose chunk index was swapped.
        await cycle.PublishAsync("0.2.0", File.ReadAllBytes(Peers.Pearl2d));
        var index = Path.Combine(cycle.Www, "host", "pearl2-host-0.2.0.index");
        bytes = File.ReadAllBytes(index);
        bytes[^1] ^= 1;
        File.WriteAllBytes(index, bytes);
        Assert.StartsWith("refused: the chunk index http://", await device.FailedUpdateCheckAsync());
        // An older version.
        await cycle.PublishAsync("0.0.9", File.ReadAllBytes(Peers.Pearl2d));
        Assert.Equal("refused: version 0.0.9 is not newer than the running 0.1.0\n", await device.FailedUpdateCheckAsync());

        Assert.Contains("firmware version=0.1.0 slot=a", await device.ControlAsync("status"));
        Assert.Equal(("a", (string?)null), (cycle.Boot.Active, cycle.Boot.Trying));
        Assert.Equal(4, device.CountInLog("update.refused"));
        Assert.Equal(1, device.CountInLog("pearl2d.start"));   // never restarted
    }
}

/// <summary>
/// A static server for the update files that honours Range requests, as nginx or a CDN does, and can pace bodies to a
/// bytes-per-second rate so a test can look at a download in flight and kill pearl2d in the middle of it (0: as fast
/// as it goes). Python's http.server ignores Range.
/// </summary>
public sealed class SlowFileServer : IAsyncDisposable
{
    readonly System.Net.Sockets.TcpListener _listener = new(System.Net.IPAddress.Loopback, 0);
    readonly string _root;
    readonly int _bytesPerSecond;
    readonly CancellationTokenSource _stop = new();
    readonly Task _loop;
    public readonly List<string> Requests = new();
    long _bodyBytes;
    /// <summary>Bytes of file bodies sent, over every request.</summary>
    public long BodyBytes => Interlocked.Read(ref _bodyBytes);

    public SlowFileServer(string root, int bytesPerSecond)
    {
        _root = root; _bytesPerSecond = bytesPerSecond;
        _listener.Start();
        _loop = AcceptAsync();
    }

    public int Port => ((System.Net.IPEndPoint)_listener.LocalEndpoint).Port;

    async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            System.Net.Sockets.TcpClient c;
            try { c = await _listener.AcceptTcpClientAsync(_stop.Token); } catch (OperationCanceledException) { return; }
            _ = ServeAsync(c);
        }
    }

    async Task ServeAsync(System.Net.Sockets.TcpClient client)
    {
        using var _ = client;
        try
        {
            var s = client.GetStream();
            var head = new StringBuilder();
            var one = new byte[1];
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal) && await s.ReadAsync(one, _stop.Token) == 1) head.Append((char)one[0]);
            var lines = head.ToString().Split("\r\n");
            var path = Path.Combine(_root, Uri.UnescapeDataString(lines[0].Split(' ')[1].TrimStart('/')));
            var range = lines.FirstOrDefault(l => l.StartsWith("Range: bytes=", StringComparison.OrdinalIgnoreCase));
            lock (Requests) Requests.Add($"{lines[0]} {range}");
            if (!File.Exists(path)) { await s.WriteAsync("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray(), _stop.Token); return; }
            await using var data = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
            long from = 0, end = data.Length;   // end: one past the last byte sent
            if (range is not null)
            {
                var spec = range["Range: bytes=".Length..].Split('-');
                from = long.Parse(spec[0]);
                if (spec[1].Length > 0) end = Math.Min(end, long.Parse(spec[1]) + 1);
            }
            var status = range is not null ? $"206 Partial Content\r\nContent-Range: bytes {from}-{end - 1}/{data.Length}" : "200 OK";
            await s.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: {end - from}\r\nConnection: close\r\n\r\n"), _stop.Token);
            var buffer = new byte[_bytesPerSecond > 0 ? Math.Max(1, _bytesPerSecond / 20) : 1 << 16];
            data.Position = from;
            for (long at = from; at < end;)
            {
                int n = await data.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, end - at)), _stop.Token);
                if (n == 0) break;
                await s.WriteAsync(buffer.AsMemory(0, n), _stop.Token);
                Interlocked.Add(ref _bodyBytes, n);
                at += n;
                if (_bytesPerSecond > 0 && path.EndsWith(".chunks", StringComparison.Ordinal)) await Task.Delay(50, _stop.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or System.Net.Sockets.SocketException) { }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _loop;
    }
}

public sealed class UpdateKillTests(ITestOutputHelper output)
{
    /// <summary>
    /// kill -9 while the image is downloading: the next start finds the chunks already in the slot by their hashes and
    /// fetches only the rest (a Range request from the first chunk missing), the slot hashes right, and the new
    /// version boots and confirms. Progress is in the status command and the log while it runs.
    /// </summary>
    [Fact]
    public async Task KilledDuringTheDownload_TheNextStartResumesItAndTheUpdateCompletes()
    {
        await using var cycle = await UpdateCycle.StartAsync();
        var image = UpdateCycle.Release(4 << 20);   // 4 MiB to fetch, at 1 MB/s
        await cycle.PublishAsync("0.2.0", image);
        await using var slow = new SlowFileServer(cycle.Www, 1_000_000);   // a few seconds for the binary's chunks
        var device = await Pearl2dProcess.StartInAsync(null, cycle.Config.Replace($":{cycle.Port}/", $":{slow.Port}/"), 1, cycle.Slots);
        try
        {
            var check = device.ControlAsync("update", "check");   // runs until the kill
            const string Fetching = @"update=downloading update_version=0\.2\.0 progress=\d+% bytes=\d+/\d+ rate_kbps=\d+ remaining_s=\d+";
            string status = "";
            for (int i = 0; i < 100 && !System.Text.RegularExpressions.Regex.IsMatch(status = await device.ControlAsync("status"), Fetching); i++) await Task.Delay(100);
            output.WriteLine(status);
            Assert.Matches(Fetching, status);
            Assert.Contains("led_status=fastblink", status);   // the Status LED says an update is under way
            await Task.Delay(800);
            var firstPlan = System.Text.RegularExpressions.Regex.Match(device.Log, @"update\.plan version=0\.2\.0 slot=b .* to_fetch=(\d+)");
            await device.KillAsync();
            // The check never answered: the process died under it (an empty answer, or the client's own error).
            try { Assert.Equal("", await check); } catch (InvalidOperationException) { }
            Assert.Equal(("a", (string?)null), (cycle.Boot.Active, cycle.Boot.Trying));   // nothing switched

            device = await device.RestartAsync();
            Assert.Contains("firmware version=0.1.0 slot=a", await device.ControlAsync("status"));
            Assert.Equal("installed 0.2.0 in slot b; rebooting\n", await device.ControlAsync("update", "check"));
            // The second run kept what the first had written, and fetched fewer chunks than the first set out to.
            var plan = System.Text.RegularExpressions.Regex.Match(device.Log, @"update\.plan version=0\.2\.0 slot=b chunks=(\d+) kept=(\d+) .* to_fetch=(\d+)");
            output.WriteLine(firstPlan.Value + "\n" + plan.Value);
            Assert.InRange(int.Parse(plan.Groups[2].Value), 1, int.Parse(plan.Groups[1].Value) - 1);
            Assert.InRange(int.Parse(plan.Groups[3].Value), 1, int.Parse(firstPlan.Groups[1].Value) - 1);
            Assert.Matches(@"\.chunks HTTP/1\.1 Range: bytes=[1-9]\d*-\d+$", slow.Requests[^1]);
            var took = System.Text.RegularExpressions.Regex.Match(device.Log, @"update\.downloaded .* wire_bytes=(\d+) payload_bytes=(\d+)");
            Assert.InRange(long.Parse(took.Groups[1].Value), 1, long.Parse(took.Groups[2].Value) - 1);
            await device.WaitForLogAsync("update.confirmed version=0.2.0 slot=b", TimeSpan.FromSeconds(60));
            Assert.Contains("firmware version=0.2.0 slot=b", await device.ControlAsync("status"));
        }
        finally { await device.DisposeAsync(); }
    }

    /// <summary>
    /// kill -9 after the image is written but before the switch (the state a kill there leaves: the slot whole,
    /// boot.json untouched, and a half-written boot.json.tmp from a switch that never finished): the next check
    /// finds every chunk in place, fetches nothing, verifies the slot and switches.
    /// </summary>
    [Fact]
    public async Task KilledAfterTheWriteOrDuringTheSwitch_TheNextCheckVerifiesAndSwitches()
    {
        await using var cycle = await UpdateCycle.StartAsync();
        var image = UpdateCycle.Release(1 << 20);
        await cycle.PublishAsync("0.2.0", image);
        await using var slow = new SlowFileServer(cycle.Www, 50_000_000);
        var config = cycle.Config.Replace($":{cycle.Port}/", $":{slow.Port}/");
        await using (var first = await Pearl2dProcess.StartInAsync(null, config, 1, cycle.Slots))
        {
            File.WriteAllBytes(Path.Combine(cycle.Slots, "slot-b"), image);
            File.WriteAllText(Path.Combine(cycle.Slots, "boot.json.tmp"), "{\"active\":\"b\",\"tryi");   // a switch cut short
            int before = slow.Requests.Count;
            Assert.Equal("installed 0.2.0 in slot b; rebooting\n", await first.ControlAsync("update", "check"));
            Assert.DoesNotContain(slow.Requests.Skip(before), r => r.Contains(".chunks"));   // nothing downloaded again
            Assert.Matches(@"update\.plan version=0\.2\.0 slot=b chunks=(\d+) kept=\1 seeded=0 zero=0 to_fetch=0 fetch_bytes=0", first.Log);
            await first.WaitForLogAsync("update.confirmed version=0.2.0 slot=b", TimeSpan.FromSeconds(60));
        }
    }
}
