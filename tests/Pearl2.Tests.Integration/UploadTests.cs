using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// Automatic file upload to real servers on loopback: vsftpd (FTP and explicit FTPS, TLS session reuse required on
/// the data connections). Each file is checked on the server by its SHA-256, and the server's own log says how often
/// each arrived and how many logins it saw.
/// </summary>
public sealed class UploadTests(ITestOutputHelper output)
{
    static string Config(string protocol, int port, string? pin, string remotePath = "{serial}/{channel}/{date}/{file}", string extra = "") => $$"""
        { "channels": [ { "name": "Hall", "video": { "width": 160, "height": 90, "bitrateKbps": 200 } },
                        { "name": "Stage", "video": { "width": 160, "height": 90, "bitrateKbps": 200 } } ],
          "upload": { "enabled": true, "protocol": "{{protocol}}", "host": "127.0.0.1", "port": {{port}}, "username": "{{VsftpdPeer.User}}",
                      "password": "{{VsftpdPeer.Password}}", "remotePath": "{{remotePath}}", "timeoutSeconds": 5
                      {{(pin is null ? "" : $", \"tlsPinSha256\": \"{pin}\"")}} {{extra}} } }
        """;

    /// <summary>Record / stop <paramref name="cycles"/> times: each cycle closes one file per channel.</summary>
    static async Task RecordCyclesAsync(Pearl2dProcess device, int cycles, TimeSpan? length = null)
    {
        for (int i = 0; i < cycles; i++)
        {
            await device.ControlAsync("panel", "press", "record");
            await Task.Delay(length ?? TimeSpan.FromMilliseconds(700));
            await device.ControlAsync("panel", "press", "record");
            await Task.Delay(150);
        }
    }

    static async Task<string> WaitForQueueEmptyAsync(Pearl2dProcess device, int uploaded, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        string status = "";
        while (DateTime.UtcNow < until)
        {
            status = await device.ControlAsync("status");
            var line = status.Split('\n').FirstOrDefault(l => l.StartsWith("upload ", StringComparison.Ordinal)) ?? "";
            if (line.Contains(" queued=0 ") && line.Contains($" uploaded={uploaded}")) return line;
            await Task.Delay(300);
        }
        throw new TimeoutException($"the upload queue did not empty with {uploaded} uploaded:\n{status}");
    }

    static Dictionary<string, string> Hashes(string dir, string pattern = "*") =>
        Directory.GetFiles(dir, pattern, SearchOption.AllDirectories).ToDictionary(f => Path.GetFileName(f), f => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f))));

    /// <summary>
    /// Twenty recordings of two channels reach the server, each once and byte-identical, with no temporary name left:
    /// vsftpd over plain FTP and over explicit FTPS (TLS session reuse required), OpenSSH's sshd over SFTP.
    /// </summary>
    [Theory]
    [InlineData("ftp")]
    [InlineData("ftps")]
    [InlineData("sftp")]
    public async Task TwentyRecordingsOfTwoChannelsArriveOnceWithTheirHashes(string protocol)
    {
        await using var ftp = protocol == "sftp" ? null : await VsftpdPeer.StartAsync();
        await using var ssh = protocol == "sftp" ? await SshdPeer.StartAsync() : null;
        string home = ftp?.Home ?? ssh!.Home;
        await using var device = await Pearl2dProcess.StartAsync(Config(protocol, ftp?.Port ?? ssh!.Port, protocol == "ftps" ? ftp!.CertificateSha256 : null), channels: 2);
        await RecordCyclesAsync(device, 10);
        string line = await WaitForQueueEmptyAsync(device, 20, TimeSpan.FromSeconds(90));
        output.WriteLine(line);
        var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
        Assert.Equal(20, local.Count);
        var remote = Hashes(home);
        Assert.Equal(local.OrderBy(k => k.Key), remote.OrderBy(k => k.Key));
        Assert.Empty(Directory.GetFiles(home, "*.part", SearchOption.AllDirectories));
        // The path template: serial/channel/date/file.
        string serial = File.ReadAllText(Path.Combine(device.DataDir, "serial")).Trim();
        var first = local.Keys.Order().First();
        string stamp = first[(first.IndexOf('_') + 1)..];
        Assert.True(File.Exists(Path.Combine(home, serial, first[..first.IndexOf('_')], $"{stamp[..4]}-{stamp[4..6]}-{stamp[6..8]}", first)));
        Assert.Empty(Directory.GetFiles(Path.Combine(device.DataDir, "recordings"), "*.upload-pending"));
        Assert.Contains(" uploaded=20", line);
        if (ftp is not null)
        {
            // Each file stored once (vsftpd logs every STOR and RENAME); FTPS over TLS throughout.
            foreach (var name in local.Keys)
            {
                Assert.Single(System.Text.RegularExpressions.Regex.Matches(ftp.Log, $"OK UPLOAD: .*{System.Text.RegularExpressions.Regex.Escape(name)}\\.part"));
                Assert.Single(System.Text.RegularExpressions.Regex.Matches(ftp.Log, $"OK RENAME: .*{System.Text.RegularExpressions.Regex.Escape(name)}\\.part "));
            }
            Assert.Equal(protocol == "ftps", ftp.Log.Contains("AUTH TLS"));
            Assert.DoesNotContain("FAIL UPLOAD", ftp.Log);
        }
    }

    /// <summary>
    /// A power cut mid-recording (SIGKILL) with uploads on: at the next start the file is recovered (made playable up to
    /// its last whole fragment) and sent like any finished recording. vsftpd gets the recovered bytes exactly, once, and
    /// the copy on the server plays without an error.
    /// </summary>
    [Fact]
    public async Task ARecordingCutByAPowerLossIsRecoveredAtTheNextStartAndUploadedOnce()
    {
        await using var ftp = await VsftpdPeer.StartAsync();
        var device = await Pearl2dProcess.StartAsync(Config("ftp", ftp.Port, null, remotePath: "{file}"), channels: 2);
        try
        {
            await device.WaitForLogAsync("panel.led led=status pattern=on", TimeSpan.FromSeconds(10));
            Assert.Contains("recording=on", await device.ControlAsync("panel", "press", "record"));
            await device.WaitForLogAsync("recording.file_started", Pearl2dProcess.LogLag);
            await Task.Delay(TimeSpan.FromSeconds(4));
            await device.KillAsync();
            var cut = Recordings.Files(Path.Combine(device.DataDir, "recordings"));
            Assert.Equal(2, cut.Length);   // one per channel, both left open
            Assert.Empty(Directory.GetFiles(ftp.Home, "*", SearchOption.AllDirectories));

            device = await device.RestartAsync();
            foreach (var f in cut) await device.WaitForLogAsync($"recording.recovered file={Path.GetFileName(f)}", Pearl2dProcess.LogLag);
            output.WriteLine(await WaitForQueueEmptyAsync(device, 2, TimeSpan.FromSeconds(60)));
            var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
            Assert.Equal(2, local.Count);
            Assert.Equal(local.OrderBy(k => k.Key), Hashes(ftp.Home).OrderBy(k => k.Key));   // the recovered bytes, as they are on the device
            foreach (var name in local.Keys)
            {
                Assert.Single(System.Text.RegularExpressions.Regex.Matches(ftp.Log, $"OK RENAME: .*{System.Text.RegularExpressions.Regex.Escape(name)}\\.part "));
                var remote = await Recordings.ProbeAsync(Path.Combine(ftp.Home, name));
                output.WriteLine($"{name} on the server: {remote.VideoFrames} frames, {remote.VideoDuration:0.00} s, errors '{remote.DecodeErrors}'");
                Assert.Equal("", remote.DecodeErrors);
                Assert.True(remote.FirstFrameKey);
                Assert.True(remote.VideoFrames >= 2 * 30, $"{remote.VideoFrames} frames of about 4 s recorded");
            }
        }
        finally { await device.DisposeAsync(); }
    }

    /// <summary>Waits until the status line of a channel's own target says it is idle with <paramref name="uploaded"/> done.</summary>
    static async Task<string> WaitForChannelTargetAsync(Pearl2dProcess device, string channel, int uploaded, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        string status = "";
        while (DateTime.UtcNow < until)
        {
            status = await device.ControlAsync("status");
            var line = status.Split('\n').FirstOrDefault(l => l.StartsWith($"upload channel={channel} ", StringComparison.Ordinal)) ?? "";
            if (line.Contains(" queued=0 ") && line.Contains($" uploaded={uploaded}")) return line;
            await Task.Delay(300);
        }
        throw new TimeoutException($"{channel}'s own upload target did not empty with {uploaded} uploaded:\n{status}");
    }

    /// <summary>
    /// A channel with its own target: Hall's recordings go to the device's target (vsftpd), Stage's to its own (sshd),
    /// none to the other. Every file is listed as done, with where it went, in `pearl2d status`, the own API and the
    /// dashboard; the Pearl API lists both AFUs in the reference's shape. Then Stage's server goes away while a file
    /// waits for it, its own target is removed through the config API, and the waiting file goes to the device's
    /// target instead and arrives there. A bad value in a channel's target is refused with its field name.
    /// </summary>
    [Fact]
    public async Task EachChannelsFilesGoToItsOwnTargetAndEveryFileIsListedWithItsState()
    {
        await using var ftp = await VsftpdPeer.StartAsync();
        var ssh = await SshdPeer.StartAsync();
        // Stage logs in with a key (OpenSSH format, with a passphrase), not a password.
        string key = Path.Combine(ssh.Dir, "client_key");
        await Peers.RunAsync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "key phrase", "-f", key], TimeSpan.FromSeconds(20));
        await ssh.AuthorizeAsync(key + ".pub");
        try
        {
            await using var device = await Pearl2dProcess.StartAsync($$"""
                { "channels": [ { "name": "Hall", "video": { "width": 160, "height": 90, "bitrateKbps": 200 } },
                                { "name": "Stage", "video": { "width": 160, "height": 90, "bitrateKbps": 200 },
                                  "upload": { "enabled": true, "protocol": "sftp", "host": "127.0.0.1", "port": {{ssh.Port}}, "username": "{{SshdPeer.User}}",
                                              "privateKeyFile": "{{key}}", "password": "key phrase", "remotePath": "stage/{file}", "timeoutSeconds": 5 } } ],
                  "upload": { "enabled": true, "protocol": "ftp", "host": "127.0.0.1", "port": {{ftp.Port}}, "username": "{{VsftpdPeer.User}}",
                              "password": "{{VsftpdPeer.Password}}", "remotePath": "{channel}/{file}", "timeoutSeconds": 5 } }
                """, channels: 2);
            await RecordCyclesAsync(device, 2);
            output.WriteLine(await WaitForQueueEmptyAsync(device, 2, TimeSpan.FromSeconds(60)));
            output.WriteLine(await WaitForChannelTargetAsync(device, "Stage", 2, TimeSpan.FromSeconds(60)));
            var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
            Assert.Equal(4, local.Count);
            Assert.Equal(local.Where(f => f.Key.StartsWith("Hall_")).OrderBy(k => k.Key), Hashes(ftp.Home).OrderBy(k => k.Key));
            Assert.Equal(local.Where(f => f.Key.StartsWith("Stage_")).OrderBy(k => k.Key), Hashes(ssh.Home, "*.mp4").OrderBy(k => k.Key));
            Assert.True(File.Exists(Path.Combine(ssh.Home, "stage", local.Keys.First(k => k.StartsWith("Stage_")))));
            Assert.Contains("Accepted publickey for " + SshdPeer.User, ssh.Log);
            Assert.DoesNotContain("Accepted password", ssh.Log);

            // Every file, with its state and where it went.
            var status = await device.ControlAsync("status");
            output.WriteLine(status);
            foreach (var name in local.Keys)
                Assert.Matches($"upload_file target={(name.StartsWith("Hall_") ? "0" : "2")} file={System.Text.RegularExpressions.Regex.Escape(name)} state=done bytes=(\\d+)/\\1 at=\\S+ remote=\"{(name.StartsWith("Hall_") ? "Hall/" : "stage/")}", status);

            // The Pearl API: two AFUs in the reference's shape; an unknown one is 404.
            var cfg = JsonNode.Parse(File.ReadAllText(device.ConfigPath))!["admin"]!;
            using var anon = new AdminClient("127.0.0.1", cfg["port"]!.GetValue<int>());
            await AdminApiTests.SetupAsync(anon);
            using var admin = anon.As("admin", AdminApiTests.AdminPassword);
            var afu = await admin.GetAsync("/api/v2.0/afu");
            Assert.Equal(["0", "2"], afu.Json!["result"]!.AsArray().Select(a => a!["id"]!.GetValue<string>()));
            var afu2 = (await admin.GetAsync("/api/v2.0/afu/2/status")).Json!["result"]!;
            Assert.Equal("sftp", afu2["protocol"]!.GetValue<string>());
            Assert.Equal("idle", afu2["state"]!.GetValue<string>());
            Assert.Equal(0, afu2["queue"]!["files"]!.GetValue<int>());
            var all = (await admin.GetAsync("/api/v2.0/afu/status")).Json!["result"]!.AsArray();
            Assert.Equal("ftp", all.Single(a => a!["id"]!.GetValue<string>() == "0")!["status"]!["protocol"]!.GetValue<string>());
            Assert.Equal(System.Net.HttpStatusCode.NotFound, (await admin.GetAsync("/api/v2.0/afu/7/status")).Status);
            var own = (await admin.GetAsync("/api/v2.0/x-pearl2/status")).Json!["result"]!["uploads"]!.AsArray();
            Assert.Equal("Stage", own[1]!["channel"]!.GetValue<string>());
            Assert.Equal(2, own[1]!["files"]!.AsArray().Count(f => f!["state"]!.GetValue<string>() == "done"));

            // The dashboard in Chromium: both targets, each with its files done.
            using (var playwright = await Microsoft.Playwright.Playwright.CreateAsync())
            {
                await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = "/usr/bin/chromium", Headless = true, Args = ["--no-sandbox", "--disable-gpu"] });
                var page = await browser.NewPageAsync();
                await page.GotoAsync(anon.Base + "/");
                await page.FillAsync("#login-user", "admin");
                await page.FillAsync("#login-password", AdminApiTests.AdminPassword);
                await page.ClickAsync("#login-submit");
                await page.WaitForFunctionAsync("() => document.querySelectorAll('#upload [data-target] tr[data-state=done]').length === 4", null, new() { Timeout = 15000 });
                Assert.Contains("Stage", await page.TextContentAsync("#upload [data-target='2'] h2"));
                Assert.Contains("Hall_", await page.TextContentAsync("#upload [data-target='0'] table"));
            }

            // A bad value in a channel's target is refused by its field; nothing changes.
            var config = (await admin.GetAsync("/api/v2.0/x-pearl2/config")).Json!["result"]!["config"]!;
            var bad = JsonNode.Parse(config.ToJsonString())!;
            bad["channels"]![1]!["upload"]!["protocol"] = "gopher";
            var refused = await admin.PutAsync("/api/v2.0/x-pearl2/config", bad.ToJsonString());
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, refused.Status);
            Assert.Contains("channels[1].upload.protocol", refused.Json!.ToJsonString());

            // Stage's server goes away with a file waiting for it; its own target is removed; the file goes to the device's.
            await ssh.DisposeAsync();
            await RecordCyclesAsync(device, 1);
            await device.WaitForLogAsync("upload.retry target=2", TimeSpan.FromSeconds(20));
            output.WriteLine(await WaitForQueueEmptyAsync(device, 3, TimeSpan.FromSeconds(30)));
            var waiting = Directory.GetFiles(Path.Combine(device.DataDir, "recordings"), "Stage_*.upload-pending").Single()[..^".upload-pending".Length];
            config["channels"]![1]!.AsObject().Remove("upload");
            var applied = await admin.PutAsync("/api/v2.0/x-pearl2/config", config.ToJsonString());
            Assert.Equal(System.Net.HttpStatusCode.OK, applied.Status);
            await device.WaitForLogAsync("upload.target_removed target=2", TimeSpan.FromSeconds(20));
            output.WriteLine(await WaitForQueueEmptyAsync(device, 4, TimeSpan.FromSeconds(60)));
            Assert.Equal(SHA256.HashData(File.ReadAllBytes(waiting)), SHA256.HashData(File.ReadAllBytes(Path.Combine(ftp.Home, "Stage", Path.GetFileName(waiting)))));
            Assert.DoesNotContain("upload channel=Stage", await device.ControlAsync("status"));
            Assert.Equal(["0"], (await admin.GetAsync("/api/v2.0/afu")).Json!["result"]!.AsArray().Select(a => a!["id"]!.GetValue<string>()));
        }
        finally { await ssh.DisposeAsync(); }
    }

    /// <summary>
    /// An IPv6-only server: vsftpd listening on ::1 alone, the target given as "::1". The files go over EPSV (the data
    /// connection to the control connection's address) and arrive whole; vsftpd logs the client as ::1.
    /// </summary>
    [Fact]
    public async Task AnIpv6OnlyServerGetsEveryFileOverEpsv()
    {
        await using var ftp = await VsftpdPeer.StartAsync(ipv6: true);
        await using var device = await Pearl2dProcess.StartAsync(Config("ftp", ftp.Port, null).Replace("\"127.0.0.1\"", "\"::1\""), channels: 2);
        await RecordCyclesAsync(device, 1);
        output.WriteLine(await WaitForQueueEmptyAsync(device, 2, TimeSpan.FromSeconds(60)));
        var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
        Assert.Equal(2, local.Count);
        Assert.Equal(local.OrderBy(k => k.Key), Hashes(ftp.Home, "*.mp4").OrderBy(k => k.Key));
        Assert.Contains("Client \"::1\", \"EPSV\"", ftp.Log);
        Assert.DoesNotContain("127.0.0.1", ftp.Log);
    }

    /// <summary>
    /// FTPS with no pinned certificate trusts the system's store and checks the host name. The server's certificate
    /// (self-signed, for "localhost") is first not in the store: the target stops with that reason, naming the
    /// certificate, before any file is sent. With the certificate in the store (SSL_CERT_FILE, as a CA added to the
    /// system would be) the waiting files go, over TLS, and (deleteAfterUpload) are deleted here once the server has them.
    /// </summary>
    [Fact]
    public async Task FtpsWithoutAPinTrustsOnlyTheSystemStore()
    {
        await using var ftp = await VsftpdPeer.StartAsync();
        var device = await Pearl2dProcess.StartAsync(Config("ftps", ftp.Port, null, extra: ", \"deleteAfterUpload\": true").Replace("\"127.0.0.1\"", "\"localhost\""), channels: 2);
        try
        {
            await RecordCyclesAsync(device, 1);
            await device.WaitForLogAsync("upload.refused", TimeSpan.FromSeconds(20));
            var status = await device.ControlAsync("status");
            output.WriteLine(status);
            Assert.Matches("upload state=failed .*error=\"TLS: the server's certificate \\(CN=localhost, SHA-256 " + ftp.CertificateSha256 + "\\) is not trusted by the system's store", status);
            Assert.Contains("led_status=attention", status);
            Assert.DoesNotContain("STOR", ftp.Log);
            Assert.DoesNotContain("OK LOGIN", ftp.Log);

            // The files wait, whole; then, trusted, they go and (deleteAfterUpload) leave the device once the server has them.
            var waiting = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
            Assert.Equal(2, waiting.Count);
            await device.KillAsync();
            device = await device.RestartAsync(new() { ["SSL_CERT_FILE"] = Path.Combine(ftp.Dir, "cert.pem") });
            output.WriteLine(await WaitForQueueEmptyAsync(device, 2, TimeSpan.FromSeconds(60)));
            Assert.Equal(waiting.OrderBy(k => k.Key), Hashes(ftp.Home, "*.mp4").OrderBy(k => k.Key));
            Assert.Contains("AUTH TLS", ftp.Log);
            Assert.Empty(Directory.GetFiles(Path.Combine(device.DataDir, "recordings"), "*.mp4*"));
            Assert.Equal(2, device.Log.Split('\n').Count(l => l.Contains("upload.deleted_local")));
        }
        finally { await device.DisposeAsync(); }
    }

    static (long Bytes, long Size)? InFlight(string status)
    {
        var m = System.Text.RegularExpressions.Regex.Match(status, @"^upload .* bytes=(\d+)/(\d+)", System.Text.RegularExpressions.RegexOptions.Multiline);
        return m.Success ? (long.Parse(m.Groups[1].Value), long.Parse(m.Groups[2].Value)) : null;
    }

    /// <summary>Waits until the file in flight is partly on the server (a few hundred KB sent, well short of its end).</summary>
    static async Task WaitForMidFileAsync(Pearl2dProcess device)
    {
        var until = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < until)
        {
            if (InFlight(await device.ControlAsync("status")) is { } f && f.Bytes > 300_000 && f.Bytes < f.Size - 300_000) return;
            await Task.Delay(100);
        }
        throw new TimeoutException("no upload in flight mid-file");
    }

    /// <summary>
    /// The faults, one after another on plain FTP with large files sent at a limited rate: a wrong password stops the
    /// target after one login (the server counts them) and lights the Status LED's attention pattern, and a corrected
    /// one (SIGHUP) starts it again; the server going away mid-file for two minutes and coming back, and pearl2d killed
    /// with SIGKILL mid-file and started again, both resume from the server's partial file. Every file arrives once,
    /// byte-identical.
    /// </summary>
    [Fact]
    public async Task AWrongPasswordStopsAfterOneLoginAndCutsMidFileResumeUntilEveryFileArrivesOnce()
    {
        var ftp = await VsftpdPeer.StartAsync();
        string dir = ftp.Dir;
        int port = ftp.Port;
        // 4 Mbit/s of constant bitrate for 3 s per file, sent at 4 Mbit/s: about 1.5 MB and 3 s on the wire each.
        string config = $$"""
            { "channels": [ { "name": "Hall", "audio": { "enabled": false }, "video": { "width": 320, "height": 180, "bitrateKbps": 4000, "rateControl": "cbr" } } ],
              "upload": { "enabled": true, "protocol": "ftp", "host": "127.0.0.1", "port": {{port}}, "username": "{{VsftpdPeer.User}}",
                          "password": "not the password", "remotePath": "{file}", "timeoutSeconds": 5, "bandwidthKbps": 4000 } }
            """;
        var device = await Pearl2dProcess.StartAsync(config, channels: 1);
        try
        {
            // A wrong password: one login, a clear error, no storm; the Status LED asks for attention.
            await RecordCyclesAsync(device, 1, TimeSpan.FromSeconds(3));
            await device.WaitForLogAsync("upload.refused", TimeSpan.FromSeconds(20));
            await Task.Delay(6000);
            var status = await device.ControlAsync("status");
            output.WriteLine(status);
            Assert.Equal(1, ftp.FailedLogins);
            Assert.Contains("upload state=failed", status);
            Assert.Contains("led_status=attention", status);
            Assert.Contains("login refused: 530", status);

            // Corrected and reloaded: the same file goes. The server stops mid-file for two minutes, while another
            // recording is made; the tries back off (2 s doubling to 1 min: no storm), and when the server is back both
            // files arrive, the first resumed from its partial file.
            File.WriteAllText(device.ConfigPath, File.ReadAllText(device.ConfigPath).Replace("not the password", VsftpdPeer.Password));
            device.Signal(1);
            await device.WaitForLogAsync("upload.reconfigured", TimeSpan.FromSeconds(10));
            await WaitForMidFileAsync(device);
            await ftp.DisposeAsync();
            var down = DateTime.UtcNow;
            int retriesBefore = device.Log.Split('\n').Count(l => l.Contains("upload.retry"));
            await device.WaitForLogAsync("upload.retry", TimeSpan.FromSeconds(20));
            await RecordCyclesAsync(device, 1, TimeSpan.FromSeconds(3));
            var queuedWhileDown = await device.ControlAsync("status");
            output.WriteLine(queuedWhileDown);
            Assert.Matches("upload state=(retrying|connecting) .*queued=2 ", queuedWhileDown);
            Assert.Matches("upload_file target=0 file=Hall_\\S+ state=queued .*reason=", queuedWhileDown);
            await Task.Delay(TimeSpan.FromMinutes(2) - (DateTime.UtcNow - down));
            int retries = device.Log.Split('\n').Count(l => l.Contains("upload.retry")) - retriesBefore;
            output.WriteLine($"{retries} tries in the 2 minutes the server was down");
            Assert.InRange(retries, 4, 9);
            ftp = await VsftpdPeer.StartAsync(port, dir);
            var back = DateTime.UtcNow;
            await device.WaitForLogAsync("upload.resume", TimeSpan.FromSeconds(90));
            await WaitForQueueEmptyAsync(device, 2, TimeSpan.FromSeconds(90));
            output.WriteLine($"both files there {(DateTime.UtcNow - back).TotalSeconds:F0} s after the server came back");
            Assert.Contains("led_status=on", await device.ControlAsync("status"));

            // pearl2d killed mid-file: after the restart the journal still has the file, and the upload resumes.
            await RecordCyclesAsync(device, 1, TimeSpan.FromSeconds(3));
            await WaitForMidFileAsync(device);
            await device.KillAsync();
            device = await device.RestartAsync();
            await device.WaitForLogAsync("upload.resume", TimeSpan.FromSeconds(30));
            await WaitForQueueEmptyAsync(device, 1, TimeSpan.FromSeconds(60));

            var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
            Assert.Equal(3, local.Count);
            Assert.Equal(local.OrderBy(k => k.Key), Hashes(ftp.Home).OrderBy(k => k.Key));
            foreach (var name in local.Keys)
                Assert.Single(System.Text.RegularExpressions.Regex.Matches(File.ReadAllText(Path.Combine(dir, "vsftpd.log")), $"OK RENAME: .*{System.Text.RegularExpressions.Regex.Escape(name)}\\.part "));
            Assert.Empty(Directory.GetFiles(ftp.Home, "*.part", SearchOption.AllDirectories));
        }
        finally
        {
            await device.DisposeAsync();
            await ftp.DisposeAsync();
        }
    }

    /// <summary>
    /// SFTP to OpenSSH's sshd: the host key is pinned at the first connection (logged with its fingerprint), the
    /// recordings arrive byte-identical; then the server comes back with another host key, and the next file is refused
    /// with that reason before anything is sent (no new file, no temporary name on the server), the Status LED asking for
    /// attention.
    /// </summary>
    [Fact]
    public async Task SftpPinsTheHostKeyOnFirstUseDeliversAndRefusesAChangedKeyBeforeSendingAnything()
    {
        await using var ssh = await SshdPeer.StartAsync();
        await using var device = await Pearl2dProcess.StartAsync($$"""
            { "channels": [ { "name": "Hall", "video": { "width": 160, "height": 90, "bitrateKbps": 200 } },
                            { "name": "Stage", "video": { "width": 160, "height": 90, "bitrateKbps": 200 } } ],
              "upload": { "enabled": true, "protocol": "sftp", "host": "127.0.0.1", "port": {{ssh.Port}}, "username": "{{SshdPeer.User}}",
                          "password": "{{SshdPeer.Password}}", "remotePath": "pearl2/{channel}/{file}", "timeoutSeconds": 5 } }
            """, channels: 2);
        await RecordCyclesAsync(device, 2);
        output.WriteLine(await WaitForQueueEmptyAsync(device, 4, TimeSpan.FromSeconds(60)));
        await device.WaitForLogAsync("upload.host_key_pinned", TimeSpan.FromSeconds(1));
        string fingerprint = (await Peers.RunAsync("ssh-keygen", ["-l", "-E", "sha256", "-f", Path.Combine(ssh.Dir, "host_key.pub")], TimeSpan.FromSeconds(10))).Stdout.Split(' ')[1];
        Assert.Contains(fingerprint, device.Log);   // the operator can compare it with the server's own
        var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
        Assert.Equal(4, local.Count);
        Assert.Equal(local.OrderBy(k => k.Key), Hashes(Path.Combine(ssh.Home, "pearl2")).OrderBy(k => k.Key));
        Assert.True(Directory.Exists(Path.Combine(ssh.Home, "pearl2", "Hall")));

        await ssh.RekeyAsync();
        await RecordCyclesAsync(device, 1);
        await device.WaitForLogAsync("upload.refused", TimeSpan.FromSeconds(20));
        var status = await device.ControlAsync("status");
        output.WriteLine(status);
        Assert.Contains("host key of 127.0.0.1:" + ssh.Port + " changed", status);
        Assert.Contains("led_status=attention", status);
        Assert.Equal(4, Directory.GetFiles(ssh.Home, "*", SearchOption.AllDirectories).Length);   // nothing new, not even a .part
        Assert.DoesNotContain("Accepted password", ssh.Log.Split("Server listening").Last());      // no login after the re-key
    }

    /// <summary>
    /// SFTP resume: sshd dies mid-file (killed with every session) and comes back with the same key; the next try
    /// writes into the server's partial file at its length, and the file arrives once, byte-identical.
    /// </summary>
    [Fact]
    public async Task SftpResumesIntoThePartialFileAfterTheServerDiesMidFile()
    {
        await using var ssh = await SshdPeer.StartAsync();
        await using var device = await Pearl2dProcess.StartAsync($$"""
            { "channels": [ { "name": "Hall", "audio": { "enabled": false }, "video": { "width": 320, "height": 180, "bitrateKbps": 4000, "rateControl": "cbr" } } ],
              "upload": { "enabled": true, "protocol": "sftp", "host": "127.0.0.1", "port": {{ssh.Port}}, "username": "{{SshdPeer.User}}",
                          "password": "{{SshdPeer.Password}}", "remotePath": "{file}", "timeoutSeconds": 5, "bandwidthKbps": 4000 } }
            """, channels: 1);
        await RecordCyclesAsync(device, 1, TimeSpan.FromSeconds(3));
        await WaitForMidFileAsync(device);
        await ssh.StopAsync();
        await device.WaitForLogAsync("upload.retry", TimeSpan.FromSeconds(20));
        var part = Directory.GetFiles(ssh.Home, "*.part").Single();
        long partial = new FileInfo(part).Length;
        await ssh.StartAgainAsync();
        await device.WaitForLogAsync("upload.resume", TimeSpan.FromSeconds(30));
        await WaitForQueueEmptyAsync(device, 1, TimeSpan.FromSeconds(60));
        output.WriteLine(string.Join('\n', device.Log.Split('\n').Where(l => l.Contains("upload."))));
        var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
        Assert.Equal(local.OrderBy(k => k.Key), Hashes(ssh.Home).OrderBy(k => k.Key));
        long resumedFrom = long.Parse(System.Text.RegularExpressions.Regex.Match(device.Log, @"upload\.resume .* from=(\d+)").Groups[1].Value);
        Assert.Equal(partial, resumedFrom);
        Assert.InRange(resumedFrom, 1, new FileInfo(Directory.GetFiles(Path.Combine(device.DataDir, "recordings"), "*.mp4").Single()).Length - 1);
    }

    /// <summary>
    /// The server's disk fills up mid-file (vsftpd answers 451/552): the upload is retried with backoff and the file
    /// waits, then arrives whole once space is freed on the server.
    /// </summary>
    [Fact]
    public async Task AFullServerDiskMakesTheFileWaitUntilSpaceIsFreed()
    {
        await using var ftp = await VsftpdPeer.StartAsync(homeKb: 600);
        string filler = Path.Combine(ftp.ServerHome, "filler");
        await File.WriteAllBytesAsync(filler, new byte[560 * 1024]);
        await using var device = await Pearl2dProcess.StartAsync($$"""
            { "channels": [ { "name": "Hall", "audio": { "enabled": false }, "video": { "width": 320, "height": 180, "bitrateKbps": 1000, "rateControl": "cbr" } } ],
              "upload": { "enabled": true, "protocol": "ftp", "host": "127.0.0.1", "port": {{ftp.Port}}, "username": "{{VsftpdPeer.User}}",
                          "password": "{{VsftpdPeer.Password}}", "remotePath": "{file}", "timeoutSeconds": 5 } }
            """, channels: 1);
        await RecordCyclesAsync(device, 1, TimeSpan.FromSeconds(2));
        var queued = Directory.GetFiles(Path.Combine(device.DataDir, "recordings"), "*.mp4").Single();
        await device.WaitForLogAsync("upload.retry", TimeSpan.FromSeconds(20));
        output.WriteLine(string.Join('\n', device.Log.Split('\n').Where(l => l.Contains("upload."))));
        // vsftpd says 451 on the control connection, or (when the write fails first) resets the data connection.
        Assert.Matches("upload.retry .*(451|552|Connection reset by peer)", device.Log);
        Assert.True(File.Exists(queued + ".upload-pending"));

        File.Delete(filler);
        await WaitForQueueEmptyAsync(device, 1, TimeSpan.FromSeconds(60));
        Assert.Equal(SHA256.HashData(File.ReadAllBytes(queued)), SHA256.HashData(File.ReadAllBytes(Path.Combine(ftp.ServerHome, Path.GetFileName(queued)))));
    }

    /// <summary>
    /// The device's own recording space fills up while a file waits for a server that now refuses us: recording goes
    /// on, the recordings already uploaded make room, and the queued file is never deleted.
    /// </summary>
    [Fact]
    public async Task AFullLocalDiskNeverDeletesAQueuedFileAndRecordingGoesOn()
    {
        await using var ftp = await VsftpdPeer.StartAsync();
        await using var device = await Pearl2dProcess.StartAsync($$"""
            { "channels": [ { "name": "Hall", "audio": { "enabled": false }, "video": { "width": 320, "height": 180, "bitrateKbps": 8000, "rateControl": "cbr" } } ],
              "recording": { "spaceLimitMegabytes": 16, "rotateSeconds": 30 },
              "upload": { "enabled": true, "protocol": "ftp", "host": "127.0.0.1", "port": {{ftp.Port}}, "username": "{{VsftpdPeer.User}}",
                          "password": "{{VsftpdPeer.Password}}", "remotePath": "{file}", "timeoutSeconds": 5 } }
            """, channels: 1);
        // Three recordings (about 2 MB each) go up and are no longer waiting: they may make room later.
        await RecordCyclesAsync(device, 3, TimeSpan.FromSeconds(2));
        await WaitForQueueEmptyAsync(device, 3, TimeSpan.FromSeconds(30));
        // Now the server refuses us; the next recording waits.
        File.WriteAllText(device.ConfigPath, File.ReadAllText(device.ConfigPath).Replace(VsftpdPeer.Password, "wrong"));
        device.Signal(1);
        await device.WaitForLogAsync("upload.reconfigured", TimeSpan.FromSeconds(10));
        await RecordCyclesAsync(device, 1, TimeSpan.FromSeconds(2));
        await device.WaitForLogAsync("upload.refused", TimeSpan.FromSeconds(20));
        var recordings = Path.Combine(device.DataDir, "recordings");
        var queued = Directory.GetFiles(recordings, "*.mp4.upload-pending").Single()[..^".upload-pending".Length];
        // About 8 MB of room left at 1 MB/s: the limit is met within seconds, and room must be made.
        await device.ControlAsync("panel", "press", "record");
        await device.WaitForLogAsync("recording.deleted", TimeSpan.FromSeconds(30));
        var status = await device.ControlAsync("status");
        await device.ControlAsync("panel", "press", "record");
        output.WriteLine(string.Join('\n', device.Log.Split('\n').Where(l => l.Contains("recording.") || l.Contains("upload."))));
        Assert.Contains("recorder=recording", status);
        Assert.True(File.Exists(queued), "the queued file was deleted to make room");
        Assert.True(File.Exists(queued + ".upload-pending"));
        Assert.DoesNotContain($"recording.deleted file={Path.GetFileName(queued)}", device.Log);
        Assert.Matches("upload state=failed .*queued=1 ", status);
    }

    /// <summary>
    /// A connection cut in the middle of a file by a proxy between pearl2d and vsftpd: the control connection (closed),
    /// or the data connection alone (reset, the proxy carrying it by rewriting the server's EPSV reply). The try fails,
    /// the next one finds the server's partial (or whole) temporary file and finishes from there, and the file arrives once.
    /// </summary>
    [Theory]
    [InlineData("control")]
    [InlineData("data")]
    public async Task AConnectionCutMidFileByAProxyIsRetriedAndTheFileArrivesOnce(string which)
    {
        await using var ftp = await VsftpdPeer.StartAsync();
        await using var proxy = new CuttingProxy(ftp.Port, ftp: which == "data");
        await using var device = await Pearl2dProcess.StartAsync($$"""
            { "channels": [ { "name": "Hall", "audio": { "enabled": false }, "video": { "width": 320, "height": 180, "bitrateKbps": 4000, "rateControl": "cbr" } } ],
              "upload": { "enabled": true, "protocol": "ftp", "host": "127.0.0.1", "port": {{proxy.Port}}, "username": "{{VsftpdPeer.User}}",
                          "password": "{{VsftpdPeer.Password}}", "remotePath": "{file}", "timeoutSeconds": 5, "bandwidthKbps": 4000 } }
            """, channels: 1);
        await RecordCyclesAsync(device, 1, TimeSpan.FromSeconds(3));
        await WaitForMidFileAsync(device);
        if (which == "data") proxy.CutData(); else proxy.Cut();
        await device.WaitForLogAsync("upload.retry", TimeSpan.FromSeconds(30));
        await WaitForQueueEmptyAsync(device, 1, TimeSpan.FromSeconds(60));
        output.WriteLine(string.Join('\n', device.Log.Split('\n').Where(l => l.Contains("upload."))));
        var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
        Assert.Equal(local.OrderBy(k => k.Key), Hashes(ftp.Home).OrderBy(k => k.Key));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(ftp.Log, "OK RENAME: "));
        Assert.True(proxy.Connections >= 2, "the upload did not come back through the proxy after the cut");
        if (which == "data")
        {
            // vsftpd takes the reset data connection for the end of the file ("OK UPLOAD" with part of it): only the
            // size check before the rename tells it is short. The next try went on from exactly what the server had.
            Assert.True(proxy.DataConnections >= 2, $"{proxy.DataConnections} data connection(s) through the proxy");
            long size = new FileInfo(Directory.GetFiles(Path.Combine(device.DataDir, "recordings"), "*.mp4").Single()).Length;
            var first = System.Text.RegularExpressions.Regex.Match(ftp.Log, @"OK UPLOAD: .*\.part"", (\d+) bytes");
            Assert.True(first.Success && long.Parse(first.Groups[1].Value) < size, "the first try was not cut short: " + first.Value);
            Assert.Contains($"\"REST {first.Groups[1].Value}\"", ftp.Log);
            await device.WaitForLogAsync("upload.resume", Pearl2dProcess.LogLag);
        }
    }
}

/// <summary>
/// A TCP proxy on loopback to one port that can cut every connection through it at once. As an FTP proxy it also
/// carries the passive data connections: each EPSV (229) or PASV (227) reply from the server is rewritten to a port of
/// its own that forwards to the server's, so that the data connections can be cut on their own, mid-file.
/// </summary>
sealed class CuttingProxy : IAsyncDisposable
{
    readonly System.Net.Sockets.TcpListener _listener = new(System.Net.IPAddress.Loopback, 0);
    readonly int _target;
    readonly bool _ftp;
    readonly List<System.Net.Sockets.TcpClient> _control = new(), _data = new();
    readonly List<System.Net.Sockets.TcpListener> _dataListeners = new();
    readonly CancellationTokenSource _stop = new();
    readonly Task _accept;
    int _connections, _dataConnections;

    public CuttingProxy(int target, bool ftp = false)
    {
        _target = target; _ftp = ftp;
        _listener.Start();
        _accept = AcceptAsync();
    }

    public int Port => ((System.Net.IPEndPoint)_listener.LocalEndpoint).Port;
    public int Connections => Volatile.Read(ref _connections);
    public int DataConnections => Volatile.Read(ref _dataConnections);

    async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                var server = new System.Net.Sockets.TcpClient();
                await server.ConnectAsync(System.Net.IPAddress.Loopback, _target);
                Interlocked.Increment(ref _connections);
                lock (_control) { _control.Add(client); _control.Add(server); }
                _ = PumpAsync(client.GetStream(), server.GetStream());
                _ = _ftp ? PumpRepliesAsync(server.GetStream(), client.GetStream()) : PumpAsync(server.GetStream(), client.GetStream());
            }
        }
        catch (Exception e) when (e is OperationCanceledException or System.Net.Sockets.SocketException or ObjectDisposedException) { }
    }

    static async Task PumpAsync(Stream from, Stream to)
    {
        try { await from.CopyToAsync(to); }
        catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException) { }
        try { to.Close(); } catch (Exception e) when (e is IOException or ObjectDisposedException) { }
    }

    /// <summary>The server's replies, line by line, with each passive port replaced by one of ours.</summary>
    async Task PumpRepliesAsync(Stream from, Stream to)
    {
        try
        {
            var reader = new StreamReader(from, System.Text.Encoding.Latin1);
            while (await reader.ReadLineAsync() is { } line)
            {
                var epsv = System.Text.RegularExpressions.Regex.Match(line, @"^229 .*\(\|\|\|(\d+)\|\)");
                var pasv = System.Text.RegularExpressions.Regex.Match(line, @"^227 .*\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)");
                if (epsv.Success)
                    line = $"229 Entering Extended Passive Mode (|||{RelayData(int.Parse(epsv.Groups[1].Value))}|)";
                else if (pasv.Success)
                {
                    int ours = RelayData(int.Parse(pasv.Groups[5].Value) * 256 + int.Parse(pasv.Groups[6].Value));
                    line = $"227 Entering Passive Mode (127,0,0,1,{ours / 256},{ours % 256}).";
                }
                var bytes = System.Text.Encoding.Latin1.GetBytes(line + "\r\n");
                await to.WriteAsync(bytes);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException) { }
        try { to.Close(); } catch (Exception e) when (e is IOException or ObjectDisposedException) { }
    }

    /// <summary>A one-shot listener of ours that joins the next connection to it with the server's passive port.</summary>
    int RelayData(int serverPort)
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        lock (_data) _dataListeners.Add(listener);
        _ = Task.Run(async () =>
        {
            try
            {
                var client = await listener.AcceptTcpClientAsync(_stop.Token);
                listener.Stop();
                var server = new System.Net.Sockets.TcpClient();
                await server.ConnectAsync(System.Net.IPAddress.Loopback, serverPort);
                Interlocked.Increment(ref _dataConnections);
                lock (_data) { _data.Add(client); _data.Add(server); }
                _ = PumpAsync(client.GetStream(), server.GetStream());
                _ = PumpAsync(server.GetStream(), client.GetStream());
            }
            catch (Exception e) when (e is OperationCanceledException or System.Net.Sockets.SocketException or ObjectDisposedException) { }
        });
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Closes every control connection through the proxy now; new ones are still let through.</summary>
    public void Cut() => Close(_control, reset: false);

    /// <summary>Resets every data connection now (a file in flight is cut mid-way); the control connections stay.</summary>
    public void CutData() => Close(_data, reset: true);

    static void Close(List<System.Net.Sockets.TcpClient> open, bool reset)
    {
        lock (open)
        {
            foreach (var c in open)
            {
                // A reset, as a middlebox or a dying link gives it: no orderly end of the stream.
                if (reset) try { c.Client.LingerState = new System.Net.Sockets.LingerOption(true, 0); } catch (Exception e) when (e is System.Net.Sockets.SocketException or ObjectDisposedException) { }
                c.Dispose();
            }
            open.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        lock (_data) foreach (var l in _dataListeners) l.Stop();
        Cut();
        CutData();
        await _accept;
    }
}
