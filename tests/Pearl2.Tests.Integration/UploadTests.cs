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
    /// one (SIGHUP) starts it again; the server going away mid-file and coming back, and pearl2d killed with SIGKILL
    /// mid-file and started again, both resume from the server's partial file. Every file arrives once, byte-identical.
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

            // Corrected and reloaded: the same file goes; the server stops mid-file and comes back: it resumes.
            File.WriteAllText(device.ConfigPath, File.ReadAllText(device.ConfigPath).Replace("not the password", VsftpdPeer.Password));
            device.Signal(1);
            await device.WaitForLogAsync("upload.reconfigured", TimeSpan.FromSeconds(10));
            await WaitForMidFileAsync(device);
            await ftp.DisposeAsync();
            await device.WaitForLogAsync("upload.retry", TimeSpan.FromSeconds(20));
            ftp = await VsftpdPeer.StartAsync(port, dir);
            await device.WaitForLogAsync("upload.resume", TimeSpan.FromSeconds(60));
            await WaitForQueueEmptyAsync(device, 1, TimeSpan.FromSeconds(60));
            Assert.Contains("led_status=on", await device.ControlAsync("status"));

            // pearl2d killed mid-file: after the restart the journal still has the file, and the upload resumes.
            await RecordCyclesAsync(device, 1, TimeSpan.FromSeconds(3));
            await WaitForMidFileAsync(device);
            await device.KillAsync();
            device = await device.RestartAsync();
            await device.WaitForLogAsync("upload.resume", TimeSpan.FromSeconds(30));
            await WaitForQueueEmptyAsync(device, 1, TimeSpan.FromSeconds(60));

            var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
            Assert.Equal(2, local.Count);
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
    /// The control connection cut in the middle of a file by a proxy between pearl2d and vsftpd: the try fails, the next
    /// one finds the server's partial (or whole) temporary file and finishes from there, and the file arrives once.
    /// </summary>
    [Fact]
    public async Task AControlConnectionCutMidFileByAProxyIsRetriedAndTheFileArrivesOnce()
    {
        await using var ftp = await VsftpdPeer.StartAsync();
        await using var proxy = new CuttingProxy(ftp.Port);
        await using var device = await Pearl2dProcess.StartAsync($$"""
            { "channels": [ { "name": "Hall", "audio": { "enabled": false }, "video": { "width": 320, "height": 180, "bitrateKbps": 4000, "rateControl": "cbr" } } ],
              "upload": { "enabled": true, "protocol": "ftp", "host": "127.0.0.1", "port": {{proxy.Port}}, "username": "{{VsftpdPeer.User}}",
                          "password": "{{VsftpdPeer.Password}}", "remotePath": "{file}", "timeoutSeconds": 5, "bandwidthKbps": 4000 } }
            """, channels: 1);
        await RecordCyclesAsync(device, 1, TimeSpan.FromSeconds(3));
        await WaitForMidFileAsync(device);
        proxy.Cut();
        await device.WaitForLogAsync("upload.retry", TimeSpan.FromSeconds(30));
        await WaitForQueueEmptyAsync(device, 1, TimeSpan.FromSeconds(60));
        output.WriteLine(string.Join('\n', device.Log.Split('\n').Where(l => l.Contains("upload."))));
        var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
        Assert.Equal(local.OrderBy(k => k.Key), Hashes(ftp.Home).OrderBy(k => k.Key));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(ftp.Log, "OK RENAME: "));
        Assert.True(proxy.Connections >= 2, "the upload did not come back through the proxy after the cut");
    }
}

/// <summary>A TCP proxy on loopback to one port that can cut every connection through it at once (both ways, RST-free close).</summary>
sealed class CuttingProxy : IAsyncDisposable
{
    readonly System.Net.Sockets.TcpListener _listener = new(System.Net.IPAddress.Loopback, 0);
    readonly int _target;
    readonly List<System.Net.Sockets.TcpClient> _open = new();
    readonly CancellationTokenSource _stop = new();
    readonly Task _accept;
    int _connections;

    public CuttingProxy(int target)
    {
        _target = target;
        _listener.Start();
        _accept = AcceptAsync();
    }

    public int Port => ((System.Net.IPEndPoint)_listener.LocalEndpoint).Port;
    public int Connections => Volatile.Read(ref _connections);

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
                lock (_open) { _open.Add(client); _open.Add(server); }
                _ = PumpAsync(client.GetStream(), server.GetStream());
                _ = PumpAsync(server.GetStream(), client.GetStream());
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

    /// <summary>Closes every connection through the proxy now; new ones are still let through.</summary>
    public void Cut()
    {
        lock (_open)
        {
            foreach (var c in _open) c.Dispose();
            _open.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        Cut();
        await _accept;
    }
}
