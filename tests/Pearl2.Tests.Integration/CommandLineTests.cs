using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>The command line as a new user meets it: relative paths, a second instance, help and usage, clear failures.</summary>
public sealed class CommandLineTests(ITestOutputHelper output)
{
    static readonly TimeSpan Quick = TimeSpan.FromSeconds(30);

    static string NewWorkDir() => Directory.CreateTempSubdirectory("pearl2d-cli").FullName;

    static int ProbedFrames(ProcessResult r) => r.ExitCode == 0
        ? int.Parse(JsonDocument.Parse(r.Stdout).RootElement.GetProperty("streams")[0].GetProperty("nb_read_frames").GetString()!) : 0;

    static Task<ProcessResult> ProbeAsync(string url) => Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-count_frames", "-read_intervals", "%+2",
        "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-of", "json", url], TimeSpan.FromSeconds(60));

    [Fact]
    public async Task RelativePathsResolveAgainstTheWorkingDirectory()
    {
        // As make run does it: a relative --data-dir (and here a relative --config and --board too), nothing absolute.
        var work = NewWorkDir();
        int rtsp = Peers.FreePortBase(1), http = Peers.FreePortBase(1), udp = Peers.FreeUdpPortBase(4), admin = Peers.FreePortBase(2);
        Directory.CreateDirectory(Path.Combine(work, "etc"));
        File.WriteAllText(Path.Combine(work, "etc", "config.json"), $$"""
            { "channels": [ { "name": "Rel", "video": { "width": 320, "height": 240 } } ],
              "rtsp": { "port": {{rtsp}}, "udpPortBase": {{udp}} }, "http": { "port": {{http}} }, "recording": { "directory": "recs" },
              "admin": { "port": {{admin}}, "httpsPort": {{admin + 1}} } }
            """);
        File.Copy(Path.Combine(Peers.RepoRoot, "board", "qemu-virt", "board.json"), Path.Combine(work, "etc", "board.json"));
        // The board's capture device is not on this host: the channel plays the test pattern (source stays testpattern).
        await using var device = await Pearl2dProcess.StartRawAsync(work, Path.Combine(work, "data"), rtsp,
            "--data-dir", "data", "--config", "etc/config.json");
        Assert.True(File.Exists(Path.Combine(work, "data", "pearl2d.sock")), "the control socket must be in ./data of the working directory");
        Assert.Contains($"data_dir={Path.Combine(work, "data")}", device.Log);
        Assert.True(ProbedFrames(await ProbeAsync($"rtsp://127.0.0.1:{rtsp}/stream.sdp")) >= 30, device.Log);

        // The control command with the same relative --data-dir, from the same working directory.
        var status = await Peers.RunAsync("/bin/sh", ["-c", $"cd '{work}' && '{Peers.Pearl2d}' status --data-dir data"], Quick);
        Assert.True(status.ExitCode == 0, status.Stderr);
        Assert.Contains("state=ready", status.Stdout);
        await device.ControlAsync("panel", "press", "record");
        await device.WaitForLogAsync("recording.file_started", TimeSpan.FromSeconds(20));
        Assert.Single(Directory.GetFiles(Path.Combine(work, "data", "recs"), "Rel_*.mp4"));

        var board = await Peers.RunAsync("/bin/sh", ["-c", $"cd '{work}' && '{Peers.Pearl2d}' --check-config --config etc/config.json --board etc/board.json"], Quick);
        Assert.True(board.ExitCode == 0, board.Stdout + board.Stderr);
        device.Signal(15);
        Assert.Equal(0, await device.WaitForExitAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task ASecondInstanceOnTheSameDataDirectoryIsRefusedAndTouchesNothing()
    {
        var work = NewWorkDir();
        int offset = Peers.FreeOffset(2);
        await using var first = await Pearl2dProcess.StartRawAsync(work, Path.Combine(work, "data"), 554 + offset, "--data-dir", "data", "--port-offset", offset.ToString());
        var socket = Path.Combine(work, "data", "pearl2d.sock");
        var before = File.GetLastWriteTimeUtc(socket);
        // The first is recording: its files in progress are marked in .open/, which crash recovery would act on.
        await first.ControlAsync("panel", "press", "record");
        var markers = Path.Combine(work, "data", "recordings", ".open");
        for (int i = 0; i < 100 && !(Directory.Exists(markers) && Directory.GetFiles(markers).Length > 0); i++) await Task.Delay(100);
        var openBefore = Directory.GetFiles(markers).Order().ToArray();
        Assert.NotEmpty(openBefore);

        // Another offset, so that only the data directory is shared.
        int other = Peers.FreeOffset(2);
        var second = await Peers.RunAsync("/bin/sh", ["-c", $"cd '{work}' && exec '{Peers.Pearl2d}' --data-dir data --port-offset {other}"], Quick);
        output.WriteLine(second.Stderr);
        Assert.Equal(6, second.ExitCode);
        Assert.Contains($"another pearl2d (pid {first.Pid}) is running with data directory {Path.Combine(work, "data")}", second.Stderr);
        Assert.False(Peers.TcpListening(554 + other), "the refused instance must not open its ports");

        Assert.True(File.Exists(socket), "the first instance's control socket must stay");
        // No crash recovery ran on the first one's live files: their markers are all still there.
        Assert.Equal(openBefore, Directory.GetFiles(markers).Order().Where(openBefore.Contains).ToArray());
        Assert.DoesNotContain("recording.recovered", second.Stderr + second.Stdout);
        Assert.Equal(before, File.GetLastWriteTimeUtc(socket));
        Assert.Contains("state=ready", await first.ControlAsync("status"));
        Assert.False(first.HasExited);
    }

    [Fact]
    public async Task HelpListsEveryOptionAndCommandAndUsageErrorsSayWhatToType()
    {
        var help = await Peers.RunAsync(Peers.Pearl2d, ["--help"], Quick);
        Assert.Equal(0, help.ExitCode);
        foreach (var word in new[] { "--config", "--board", "--data-dir", "--port-offset", "--check-config", "--print-default-config", "--version",
                     "panel press", "status", "recordings", "update check", "boot --slots", "boot-select", "pack IMAGE" })
            Assert.Contains(word, help.Stdout);
        Assert.Equal(help.Stdout, (await Peers.RunAsync(Peers.Pearl2d, ["help"], Quick)).Stdout);

        var panel = await Peers.RunAsync(Peers.Pearl2d, ["panel"], Quick);
        Assert.Equal(2, panel.ExitCode);
        Assert.Contains("usage: pearl2d panel press record|stream", panel.Stderr);

        var work = NewWorkDir();
        var missing = await Peers.RunAsync("/bin/sh", ["-c", $"cd '{work}' && exec '{Peers.Pearl2d}' status --data-dir nowhere"], Quick);
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains($"pearl2d is not running with data directory {Path.Combine(work, "nowhere")}", missing.Stderr);
        Assert.DoesNotContain("Cannot assign", missing.Stderr);

        var badOffset = await Peers.RunAsync(Peers.Pearl2d, ["--check-config", "--port-offset", "65000"], Quick);
        Assert.Equal(2, badOffset.ExitCode);
        Assert.Contains("--port-offset: 65000 moves rtsp.port", badOffset.Stderr);
    }

    [Fact]
    public async Task APortClashNamesThePortAndTheChannel()
    {
        int offset = Peers.FreeOffset(2);
        // Something else holds channel 2's HTTP port.
        var squatter = new System.Net.Sockets.TcpListener(System.Net.IPAddress.IPv6Any, 8001 + offset);
        squatter.Server.DualMode = true;
        squatter.Start();
        try
        {
            var r = await Peers.RunAsync(Peers.Pearl2d, ["--port-offset", offset.ToString(), "--data-dir", Path.Combine(NewWorkDir(), "data")], TimeSpan.FromSeconds(60));
            output.WriteLine(r.Stdout + r.Stderr);
            Assert.Equal(5, r.ExitCode);
            Assert.Contains($"channel 2: HTTP port {8001 + offset}: already in use by another program", r.Stdout + r.Stderr);
            Assert.DoesNotContain("Unhandled exception", r.Stdout + r.Stderr);
        }
        finally { squatter.Stop(); }
    }

    [Fact]
    public async Task MakeImageRefusesAnImageThatCouldNeverUpdateUntilAReleaseKeyIsMade()
    {
        var keyDir = NewWorkDir();
        string key = Path.Combine(keyDir, "keys", "release");
        // check-update-key is what make image runs first, before anything is built.
        var refused = await Peers.RunAsync("make", ["-s", "-C", Peers.RepoRoot, "check-update-key", $"RELEASE_KEY={key}"], Quick);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains($"no update key at {key}.pem", refused.Stdout);
        Assert.Contains("make release-key", refused.Stdout);

        var made = await Peers.RunAsync("make", ["-s", "-C", Peers.RepoRoot, "release-key", $"RELEASE_KEY={key}"], Quick);
        Assert.True(made.ExitCode == 0, made.Stdout + made.Stderr);
        Assert.Contains("keep it safe", made.Stdout);
        if (OperatingSystem.IsLinux()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key + ".private.pem"));
        // openssl agrees the two halves are one P-256 key.
        var pub = await Peers.RunAsync("openssl", ["ec", "-in", key + ".private.pem", "-pubout"], Quick);
        Assert.Equal(File.ReadAllText(key + ".pem").Trim(), pub.Stdout.Trim());
        var again = await Peers.RunAsync("make", ["-s", "-C", Peers.RepoRoot, "release-key", $"RELEASE_KEY={key}"], Quick);
        Assert.Contains("exists; kept", again.Stdout);
        Assert.Equal(0, (await Peers.RunAsync("make", ["-s", "-C", Peers.RepoRoot, "check-update-key", $"RELEASE_KEY={key}"], Quick)).ExitCode);
        var none = await Peers.RunAsync("make", ["-s", "-C", Peers.RepoRoot, "check-update-key", $"RELEASE_KEY={key}x", "NO_UPDATES=1"], Quick);
        Assert.Equal(0, none.ExitCode);
        Assert.Contains("will never take a firmware update", none.Stdout);
    }
}
