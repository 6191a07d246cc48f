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

    /// <summary>Puts <paramref name="image"/> on the server as version <paramref name="version"/> for board "host", signed with the test key.</summary>
    public async Task PublishAsync(string version, byte[] image)
    {
        var name = $"pearl2-host-{version}.slot";
        File.WriteAllBytes(Path.Combine(Www, "host", name), image);
        var manifest = Path.Combine(Www, "host", "manifest.json");
        File.WriteAllText(manifest, new System.Text.Json.Nodes.JsonObject
        {
            ["version"] = version, ["board"] = "host", ["image"] = name, ["size"] = image.Length,
            ["sha256"] = Convert.ToHexStringLower(SHA256.HashData(image)), ["notes"] = $"test release {version}",
        }.ToJsonString());
        var sign = await Peers.RunAsync("openssl", ["dgst", "-sha256", "-sign", Path.Combine(Dir, "update-key.private.pem"), "-out", manifest + ".sig", manifest], TimeSpan.FromSeconds(20));
        Assert.True(sign.ExitCode == 0, sign.Stderr);
    }

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
        // The new release's image is a firmware binary (this one; the manifest gives it version 0.2.0).
        await cycle.PublishAsync("0.2.0", File.ReadAllBytes(Peers.Pearl2d));
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
        Assert.Contains("boot.decision slot=b version=0.2.0 try=yes", device.Log);

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
            Assert.Equal("refused: version 0.3.0 failed its health check on this device before\n", await device.ControlAsync("update", "check"));
        }
        finally { await device.DisposeAsync(); }
    }

    [Fact]
    public async Task RefusedAndFailedChecksKeepTheRunningVersion()
    {
        await using var cycle = await UpdateCycle.StartAsync();
        await using var device = await Pearl2dProcess.StartInAsync(null, cycle.Config, 1, cycle.Slots);
        // Nothing published yet: the server answers 404.
        Assert.StartsWith("check failed: ", await device.ControlAsync("update", "check"));
        // A tampered manifest: signed, then one byte changed.
        await cycle.PublishAsync("0.2.0", File.ReadAllBytes(Peers.Pearl2d));
        var manifest = Path.Combine(cycle.Www, "host", "manifest.json");
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("0.2.0", "0.2.1"));
        Assert.Equal("refused: the manifest's signature does not verify with this device's key\n", await device.ControlAsync("update", "check"));
        // A signed manifest whose image was swapped on the server afterwards.
        await cycle.PublishAsync("0.2.0", File.ReadAllBytes(Peers.Pearl2d));
        var image = Path.Combine(cycle.Www, "host", "pearl2-host-0.2.0.slot");
        var bytes = File.ReadAllBytes(image);
        bytes[bytes.Length / 2] ^= 0x20;
        File.WriteAllBytes(image, bytes);
        Assert.Equal("refused: slot b does not hash to the signed SHA-256 after writing\n", await device.ControlAsync("update", "check"));
        // An older version.
        await cycle.PublishAsync("0.0.9", File.ReadAllBytes(Peers.Pearl2d));
        Assert.Equal("refused: version 0.0.9 is not newer than the running 0.1.0\n", await device.ControlAsync("update", "check"));

        Assert.Contains("firmware version=0.1.0 slot=a", await device.ControlAsync("status"));
        Assert.Equal(("a", (string?)null), (cycle.Boot.Active, cycle.Boot.Trying));
        Assert.Equal(3, device.CountInLog("update.refused"));
        Assert.Equal(1, device.CountInLog("pearl2d.start"));   // never restarted
    }
}
