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
    static async Task RecordCyclesAsync(Pearl2dProcess device, int cycles)
    {
        for (int i = 0; i < cycles; i++)
        {
            await device.ControlAsync("panel", "press", "record");
            await Task.Delay(1100);
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

    /// <summary>Twenty recordings of two channels reach vsftpd over explicit FTPS, each once, byte-identical, no temporary names left.</summary>
    [Fact]
    public async Task TwentyRecordingsOfTwoChannelsArriveOnceOverFtpsWithTheirHashes()
    {
        await using var ftp = await VsftpdPeer.StartAsync();
        await using var device = await Pearl2dProcess.StartAsync(Config("ftps", ftp.Port, ftp.CertificateSha256), channels: 2);
        await RecordCyclesAsync(device, 10);
        string line = await WaitForQueueEmptyAsync(device, 20, TimeSpan.FromSeconds(60));
        output.WriteLine(line);
        var local = Hashes(Path.Combine(device.DataDir, "recordings"), "*.mp4");
        Assert.Equal(20, local.Count);
        var remote = Hashes(ftp.Home);
        Assert.Equal(local.OrderBy(k => k.Key), remote.OrderBy(k => k.Key));
        Assert.Empty(Directory.GetFiles(ftp.Home, "*.part", SearchOption.AllDirectories));
        // The path template: serial/channel/date/file.
        string serial = File.ReadAllText(Path.Combine(device.DataDir, "serial")).Trim();
        var first = local.Keys.Order().First();
        Assert.True(File.Exists(Path.Combine(ftp.Home, serial, first[..first.IndexOf('_')], $"{first[(first.IndexOf('_') + 1)..][..4]}-{first[(first.IndexOf('_') + 5)..][..2]}-{first[(first.IndexOf('_') + 7)..][..2]}", first)));
        // Each file stored once (vsftpd logs every STOR), all over TLS, and no pending markers left on the device.
        foreach (var name in local.Keys) Assert.Single(System.Text.RegularExpressions.Regex.Matches(ftp.Log, $"OK UPLOAD: .*{System.Text.RegularExpressions.Regex.Escape(name)}\\.part"));
        Assert.Empty(Directory.GetFiles(Path.Combine(device.DataDir, "recordings"), "*.upload-pending"));
        Assert.Contains("AUTH TLS", ftp.Log);
        Assert.DoesNotContain("FAIL UPLOAD", ftp.Log);
    }
}
