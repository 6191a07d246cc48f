using System.Globalization;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>What ffprobe and ffmpeg make of a recording.</summary>
public sealed record ProbedFile(string Path, double VideoDuration, int VideoFrames, bool FirstFrameKey, string DecodeErrors);

public static class Recordings
{
    /// <summary>One channel, small picture, so several recording tests fit the CI budget.</summary>
    public static string Config(string format = "mp4", int rotateSeconds = 1800, int keyFrameInterval = 60, string extraRecording = "", string video = "", int bitrateKbps = 800) => $$"""
        {
          "channels": [ { "name": "Channel 1", "video": { "width": 640, "height": 360, "bitrateKbps": {{bitrateKbps}}, "keyFrameIntervalFrames": {{keyFrameInterval}} {{video}} } } ],
          "recording": { "format": "{{format}}", "rotateSeconds": {{rotateSeconds}} {{extraRecording}} }
        }
        """;

    public static string Dir(Pearl2dProcess d) => Path.Combine(d.DataDir, "recordings");

    /// <summary>Frames pearl2d said it skipped at the source because the machine was behind (video.behind lines).</summary>
    public static int SkippedFrames(string log) =>
        System.Text.RegularExpressions.Regex.Matches(log, @"video\.behind channel=\d+ skipped_frames=(\d+)").Sum(m => int.Parse(m.Groups[1].Value));

    public static string[] Files(string dir) =>
        Directory.GetFiles(dir).Where(f => f.EndsWith(".mp4") || f.EndsWith(".ts")).Order(StringComparer.Ordinal).ToArray();

    public static async Task<ProbedFile> ProbeAsync(string path)
    {
        var count = await Peers.RunAsync("ffprobe", ["-v", "error", "-select_streams", "v", "-count_packets", "-show_entries", "stream=duration,nb_read_packets", "-of", "default=nw=1", path], TimeSpan.FromSeconds(60));
        var kv = count.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('=', 2)).Where(p => p.Length == 2).GroupBy(p => p[0]).ToDictionary(g => g.Key, g => g.First()[1]);
        int frames = int.Parse(kv.GetValueOrDefault("nb_read_packets", "0"), CultureInfo.InvariantCulture);
        double duration = double.TryParse(kv.GetValueOrDefault("duration", ""), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : double.NaN;
        if (double.IsNaN(duration))
        {
            // MPEG-TS streams carry no duration: take the format's.
            var f = await Peers.RunAsync("ffprobe", ["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", path], TimeSpan.FromSeconds(60));
            duration = double.Parse(f.Stdout.Trim(), CultureInfo.InvariantCulture);
        }
        var first = await Peers.RunAsync("ffprobe", ["-v", "error", "-select_streams", "v", "-read_intervals", "%+#1", "-show_entries", "packet=flags", "-of", "default=nw=1:nk=1", path], TimeSpan.FromSeconds(60));
        var decode = await Peers.RunAsync("ffmpeg", ["-nostdin", "-v", "error", "-i", path, "-f", "null", "-"], TimeSpan.FromSeconds(120));
        return new ProbedFile(path, duration, frames, first.Stdout.Trim().StartsWith('K'), decode.Stderr.Trim() + (decode.ExitCode != 0 ? $" (exit {decode.ExitCode})" : ""));
    }

    /// <summary>The recorder's own count of recorded video time, from its recording.stopped line.</summary>
    public static double RecordedSeconds(string log) =>
        double.Parse(Regex.Match(log, @"recording\.stopped .*recorded_s=([\d.]+)").Groups[1].Value, CultureInfo.InvariantCulture);

    public static async Task<List<ProbedFile>> ProbeAllAsync(string[] files)
    {
        var probed = new List<ProbedFile>();
        foreach (var f in files) probed.Add(await ProbeAsync(f));
        return probed;
    }

    public static DateTime LogTime(string log, string marker, bool last = false)
    {
        var matching = log.Split('\n').Where(l => l.Contains(marker, StringComparison.Ordinal));
        var line = last ? matching.Last() : matching.First();
        return DateTime.Parse(line[..24], CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal);
    }
}

public sealed class PanelRecordingTests(ITestOutputHelper output)
{
    [Fact]
    public async Task FilesCutAtOneMomentOnSeveralChannelsShareTheirTimeStamp()
    {
        await using var d = await Pearl2dProcess.StartAsync("""
            { "channels": [ { "name": "A", "video": { "width": 320, "height": 240, "keyFrameIntervalFrames": 45 } }, { "name": "B", "video": { "width": 320, "height": 240, "keyFrameIntervalFrames": 70 } },
                            { "name": "C", "video": { "width": 320, "height": 240, "keyFrameIntervalFrames": 25 } } ] }
            """, channels: 3);
        await d.WaitForLogAsync("panel.led led=status pattern=on", TimeSpan.FromSeconds(10));
        var pressed = await d.ControlAsync("panel", "press", "record");
        Assert.Contains("display: CH   1 2 3\n", pressed);
        Assert.Contains("display: REC  R R R\n", pressed);
        Assert.Contains("display: LIVE Y Y Y\n", pressed);
        for (int i = 0; i < 100 && d.CountInLog("recording.file_started") < 3; i++) await Task.Delay(100);
        await Task.Delay(1500);
        await d.ControlAsync("panel", "press", "record", "--hold", "3.2"); // hold: split every channel now
        for (int i = 0; i < 100 && d.CountInLog("recording.file_started") < 6; i++) await Task.Delay(100);
        await d.ControlAsync("panel", "press", "record");
        var names = Recordings.Files(Recordings.Dir(d)).Select(Path.GetFileName).ToList();
        output.WriteLine(string.Join(", ", names));
        Assert.Equal(6, names.Count);
        // Each channel's key frames come at other times, but each cut names its files with the one moment of the press.
        var stamps = names.GroupBy(n => n![2..]).ToList();
        Assert.Equal(2, stamps.Count);
        Assert.All(stamps, g => Assert.Equal(new[] { "A", "B", "C" }, g.Select(n => n![..1]).OrderBy(x => x)));
    }

    [Fact]
    public async Task RecordPressStartsRecordingAndLightsTheLed_SecondPressGivesAFileOfThatLength_DisplayShowsIt()
    {
        await using var d = await Pearl2dProcess.StartAsync(Recordings.Config(), channels: 1);
        await d.WaitForLogAsync("panel.led led=status pattern=on", TimeSpan.FromSeconds(10));
        Assert.Equal($"no recordings in {Recordings.Dir(d)}\n", await d.ControlAsync("recordings"));
        await Task.Delay(2500); // a GOP in the hub, as on a device that has been up a while

        var on = await d.ControlAsync("panel", "press", "record");
        Assert.Contains("recording=on", on);
        Assert.Contains("led_record=on", on);
        Assert.Contains("display: REC  R\n", on); // the answer shows the display after the press
        var pressed = Recordings.LogTime(d.Log, "panel.press button=record");
        var lit = Recordings.LogTime(d.Log, "panel.led led=record pattern=on");
        var started = Recordings.LogTime(d.Log, "recording.file_started");
        output.WriteLine($"press → file started {(started - pressed).TotalMilliseconds:0} ms, press → Record LED {(lit - pressed).TotalMilliseconds:0} ms (the 100 ms bound is asserted on a fake clock in FrontPanelTests)");

        await Task.Delay(6000);
        // The display (a PNG on the simulated panel) shows the address and the recording; ffmpeg decodes the PNG.
        var status = await d.ControlAsync("status");
        output.WriteLine(status);
        var lines = status.Split('\n').Where(l => l.StartsWith("display: ")).Select(l => l["display: ".Length..]).ToArray();
        Assert.Matches(@"^IP \d+\.\d+\.\d+\.\d+$", lines[1]);
        Assert.Matches(@"^REC 00:00:0[5-9]$", lines[2]);
        Assert.Equal("CH   1", lines[3]);
        Assert.Equal("REC  R", lines[4]);
        await DisplayAssert.ShowsAsync(Path.Combine(d.DataDir, "status-display.png"), lines);

        var off = await d.ControlAsync("panel", "press", "record");
        Assert.Contains("recording=off", off);
        Assert.Contains("led_record=off", off);
        var stopped = Recordings.LogTime(d.Log, "panel.press button=record held_ms", last: true);

        var files = Recordings.Files(Recordings.Dir(d));
        var file = Assert.Single(files);
        Assert.EndsWith(".mp4", file);
        Assert.Matches(@"/Channel_1_\d{8}-\d{6}\.mp4$", file);
        var p = await Recordings.ProbeAsync(file);
        double pressedFor = (stopped - pressed).TotalSeconds;
        output.WriteLine($"pressed for {pressedFor:0.000} s; ffprobe: {p.VideoDuration:0.000} s, {p.VideoFrames} frames, first key={p.FirstFrameKey}");
        Assert.Equal("", p.DecodeErrors);
        Assert.True(p.FirstFrameKey);
        // The file starts at the key frame before the press (at most one key-frame interval, 2 s, earlier).
        Assert.InRange(p.VideoDuration, pressedFor - 0.2, pressedFor + 2.0 + 0.2);
        // Frames fill the duration, but for frames the encoder skipped at the source when the machine was too busy (logged).
        int skipped = Recordings.SkippedFrames(d.Log);
        Assert.InRange(p.VideoFrames / 30.0, p.VideoDuration - (1 + skipped) / 30.0 - 0.001, p.VideoDuration + 1 / 30.0 + 0.001);
        var listed = await d.ControlAsync("recordings");
        output.WriteLine(listed);
        Assert.StartsWith("NAME\tSTARTED\tDURATION\tBYTES\tSTATE\n", listed);
        var row = listed.Split('\n').Single(l => l.StartsWith(Path.GetFileName(file) + "\t")).Split('\t');
        var stamp = System.Text.RegularExpressions.Regex.Match(Path.GetFileName(file), @"_(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})\.mp4$").Groups;
        Assert.Equal($"{stamp[1]}-{stamp[2]}-{stamp[3]} {stamp[4]}:{stamp[5]}:{stamp[6]}", row[1]);
        var minSec = row[2].Split(':');
        Assert.InRange(int.Parse(minSec[0]) * 60 + int.Parse(minSec[1]), (int)p.VideoDuration - 1, (int)p.VideoDuration + 1); // from the file's mvhd
        Assert.Equal(new FileInfo(file).Length.ToString(), row[3]);
        Assert.Equal("complete", row[4]);
        Assert.Contains("1 recording(s)", listed);
        Assert.Empty(Directory.GetFiles(Path.Combine(Recordings.Dir(d), ".open")));
    }
}

public static class DisplayAssert
{
    /// <summary>
    /// Decodes the PNG with ffmpeg and checks that it holds exactly the panel font's pixels for the text lines,
    /// except line <paramref name="skipLine"/> (the recording clock, which may have ticked since the lines were read).
    /// </summary>
    public static async Task ShowsAsync(string png, string[] lines, int skipLine = 2)
    {
        const int Scale = 4, W = 128, H = 64;
        var raw = Path.Combine(Path.GetDirectoryName(png)!, "display-test.gray");
        var r2 = await Peers.RunAsync("ffmpeg", ["-nostdin", "-y", "-v", "error", "-i", png, "-f", "rawvideo", "-pix_fmt", "gray", raw], TimeSpan.FromSeconds(30));
        Assert.Equal(0, r2.ExitCode);
        var px = await File.ReadAllBytesAsync(raw);
        Assert.Equal(W * Scale * H * Scale, px.Length);
        var expected = new Pearl2.Services.FrontPanel.MonoFrame(W, H);
        Pearl2.Services.FrontPanel.StatusDisplay.Draw(expected, lines);
        int lit = 0, skipTop = Pearl2.Services.FrontPanel.StatusDisplay.LineTop(skipLine), skipBottom = skipTop + 8;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
            {
                if (y >= skipTop && y < skipBottom) continue;
                bool on = px[(y * Scale + Scale / 2) * W * Scale + x * Scale + Scale / 2] > 127;
                Assert.True(on == expected[x, y], $"pixel ({x},{y}) is {(on ? "lit" : "dark")} on the display PNG, the text model says otherwise");
                if (on) lit++;
            }
        Assert.True(lit > 200, $"only {lit} pixels lit");
    }
}

public sealed class PowerLossTests(ITestOutputHelper output)
{
    /// <summary>kill -9 20 s into a recording: the file plays as it is, holds ≥ 19 s, and the next start keeps and lists it.</summary>
    [Theory]
    [InlineData("mp4")]
    [InlineData("ts")]
    public async Task KilledMidRecording_FilePlaysAndIsRecoveredAtTheNextStart(string format)
    {
        var d = await Pearl2dProcess.StartAsync(Recordings.Config(format), channels: 1);
        Pearl2dProcess? again = null;
        try
        {
            await d.WaitForLogAsync("panel.led led=status pattern=on", TimeSpan.FromSeconds(10));
            Assert.Contains("recording=on", await d.ControlAsync("panel", "press", "record"));
            var started = Recordings.LogTime(d.Log, "recording.file_started");
            await Task.Delay(TimeSpan.FromSeconds(20) - (DateTime.UtcNow - started));
            await d.KillAsync();

            var file = Assert.Single(Recordings.Files(Recordings.Dir(d)));
            Assert.EndsWith("." + format, file);
            Assert.True(File.Exists(Path.Combine(Recordings.Dir(d), ".open", Path.GetFileName(file))), "the open marker a crash leaves behind");
            var cut = await Recordings.ProbeAsync(file);
            output.WriteLine($"after kill -9: {new FileInfo(file).Length} bytes, {cut.VideoFrames} frames, {cut.VideoDuration:0.000} s, errors: '{cut.DecodeErrors}'");
            Assert.Equal("", cut.DecodeErrors);
            Assert.True(cut.FirstFrameKey);
            Assert.True(cut.VideoFrames >= 19 * 30, $"{cut.VideoFrames} frames is less than 19 s");

            again = await d.RestartAsync();
            await again.WaitForLogAsync($"recording.recovered file={Path.GetFileName(file)}", Pearl2dProcess.LogLag);
            var listed = await again.ControlAsync("recordings");
            output.WriteLine(listed);
            Assert.Contains($"{Path.GetFileName(file)}\t", listed);
            Assert.Contains("\trecovered", listed);
            Assert.Empty(Directory.GetFiles(Path.Combine(Recordings.Dir(d), ".open")));
            var kept = await Recordings.ProbeAsync(file);
            output.WriteLine($"after recovery: {new FileInfo(file).Length} bytes, {kept.VideoFrames} frames, {kept.VideoDuration:0.000} s");
            Assert.Equal("", kept.DecodeErrors);
            Assert.True(kept.VideoFrames >= 19 * 30, $"{kept.VideoFrames} frames is less than 19 s after recovery");
        }
        finally
        {
            if (again is not null) await again.DisposeAsync();
            await d.DisposeAsync();
        }
    }
}

public sealed class RotationTests(ITestOutputHelper output)
{
    /// <summary>A 10 s limit and 35 s of recording: 4 files, each starting on a key frame, their durations adding up to the recording.</summary>
    [Fact]
    public async Task TenSecondRotation_ThirtyFiveSeconds_FourFilesWithoutGapOrOverlap()
    {
        await using var d = await Pearl2dProcess.StartAsync(Recordings.Config(rotateSeconds: 10, keyFrameInterval: 30), channels: 1);
        await d.WaitForLogAsync("panel.led led=status pattern=on", TimeSpan.FromSeconds(10));
        await Task.Delay(1500);
        await d.ControlAsync("panel", "press", "record");
        var started = Recordings.LogTime(d.Log, "recording.file_started");
        await Task.Delay(TimeSpan.FromSeconds(35) - (DateTime.UtcNow - started));
        await d.ControlAsync("panel", "press", "record");
        await d.WaitForLogAsync("recording.stopped", TimeSpan.FromSeconds(10));
        var recorded = Recordings.RecordedSeconds(d.Log);

        var files = Recordings.Files(Recordings.Dir(d));
        var probed = await Recordings.ProbeAllAsync(files);
        foreach (var p in probed) output.WriteLine($"{Path.GetFileName(p.Path)}: {p.VideoDuration:0.000} s, {p.VideoFrames} frames, first key={p.FirstFrameKey}, errors='{p.DecodeErrors}'");
        output.WriteLine($"recorded_s={recorded}");

        Assert.Equal(4, files.Length);
        double frame = 1 / 30.0;
        int skipped = Recordings.SkippedFrames(d.Log);   // dropped at the source under load (logged), so never in a file
        foreach (var p in probed)
        {
            Assert.True(p.FirstFrameKey, $"{p.Path} does not start with a key frame");
            Assert.Equal("", p.DecodeErrors);
            // Each sample lasts until the next: a file's frames fill its duration exactly (no hole, nothing twice).
            Assert.InRange(p.VideoFrames * frame, p.VideoDuration - frame / 2 - skipped * frame, p.VideoDuration + frame / 2);
        }
        foreach (var p in probed.Take(3)) Assert.InRange(p.VideoDuration, 10.0 - frame / 2, 11.0 + frame / 2);
        Assert.InRange(probed.Sum(p => p.VideoDuration), recorded - frame, recorded + frame);
        Assert.InRange(probed.Sum(p => p.VideoFrames) * frame, recorded - frame - skipped * frame, recorded + frame);
    }
}

public sealed class SizeRotationTests(ITestOutputHelper output)
{
    /// <summary>A 1 MB limit at 8 Mbit/s: a new file at the first key frame past each megabyte, each playable from a key frame, none missing a frame.</summary>
    [Fact]
    public async Task OneMegabyteRotation_FilesSplitAtKeyFramesPastTheSize()
    {
        await using var d = await Pearl2dProcess.StartAsync(Recordings.Config(keyFrameInterval: 30, extraRecording: ", \"rotateMegabytes\": 1",
            bitrateKbps: 8000, video: ", \"rateControl\": \"cbr\""), channels: 1);
        await d.WaitForLogAsync("panel.led led=status pattern=on", TimeSpan.FromSeconds(10));
        await d.ControlAsync("panel", "press", "record");
        await Task.Delay(6500);
        await d.ControlAsync("panel", "press", "record");
        await d.WaitForLogAsync("recording.stopped", TimeSpan.FromSeconds(10));
        var recorded = Recordings.RecordedSeconds(d.Log);
        var files = Recordings.Files(Recordings.Dir(d));
        var probed = await Recordings.ProbeAllAsync(files);
        foreach (var p in probed) output.WriteLine($"{Path.GetFileName(p.Path)}: {new FileInfo(p.Path).Length} bytes, {p.VideoDuration:0.000} s, {p.VideoFrames} frames, first key={p.FirstFrameKey}");
        Assert.True(files.Length >= 3, $"{files.Length} files from {recorded} s at 8 Mbit/s with a 1 MB limit");
        foreach (var p in probed.SkipLast(1))
        {
            long size = new FileInfo(p.Path).Length;
            // Past 1 MiB, then at most one more key-frame interval (1 s at 8 Mbit/s = 1 MB) before the cut.
            Assert.InRange(size, 1L << 20, (1L << 20) + 1_150_000);
        }
        foreach (var p in probed)
        {
            Assert.True(p.FirstFrameKey);
            Assert.Equal("", p.DecodeErrors);
            Assert.InRange(p.VideoFrames / 30.0, p.VideoDuration - 1 / 60.0, p.VideoDuration + 1 / 60.0);
        }
        Assert.InRange(probed.Sum(p => p.VideoFrames) / 30.0, recorded - 1 / 30.0, recorded + 1 / 30.0);
    }
}

public sealed class TornFileRecoveryTests(ITestOutputHelper output)
{
    /// <summary>
    /// A power cut can leave a file cut at any byte. Copies of a real recording cut at random points, each with the
    /// open marker a crash leaves, are found at the next start, cut back to what plays, and decode without an error.
    /// </summary>
    [Theory]
    [InlineData("mp4")]
    [InlineData("ts")]
    public async Task FilesCutAtRandomBytes_AreRepairedAtStartAndPlay(string format)
    {
        var d = await Pearl2dProcess.StartAsync(Recordings.Config(format, keyFrameInterval: 30), channels: 1);
        Pearl2dProcess? again = null;
        try
        {
            await d.WaitForLogAsync("panel.led led=status pattern=on", TimeSpan.FromSeconds(10));
            await d.ControlAsync("panel", "press", "record");
            await Task.Delay(6000);
            await d.ControlAsync("panel", "press", "record");
            await d.KillAsync();
            var dir = Recordings.Dir(d);
            var source = Assert.Single(Recordings.Files(dir));
            var bytes = await File.ReadAllBytesAsync(source);
            var rng = new Random(format.Length);
            var cuts = Enumerable.Range(0, 8).Select(_ => rng.Next(bytes.Length / 8, bytes.Length)).Order().ToArray();
            var names = new List<string>();
            for (int i = 0; i < cuts.Length; i++)
            {
                var name = $"Cut_{i}_20990101-00000{i}.{format}";
                await File.WriteAllBytesAsync(Path.Combine(dir, name), bytes.AsSpan(0, cuts[i]).ToArray());
                await File.WriteAllBytesAsync(Path.Combine(dir, ".open", name), []);
                names.Add(name);
            }

            again = await d.RestartAsync();
            for (int i = 0; i < names.Count; i++)
            {
                await again.WaitForLogAsync($"recording.recovered file={names[i]}", Pearl2dProcess.LogLag);
                var p = await Recordings.ProbeAsync(Path.Combine(dir, names[i]));
                output.WriteLine($"cut at {cuts[i]} of {bytes.Length}: kept {new FileInfo(Path.Combine(dir, names[i])).Length} bytes, {p.VideoFrames} frames, errors='{p.DecodeErrors}'");
                Assert.Equal("", p.DecodeErrors);
                Assert.True(p.FirstFrameKey);
                Assert.True(p.VideoFrames > 0);
            }
            Assert.Empty(Directory.GetFiles(Path.Combine(dir, ".open")));
        }
        finally
        {
            if (again is not null) await again.DisposeAsync();
            await d.DisposeAsync();
        }
    }
}

/// <summary>
/// Disk full, on a size-limited tmpfs the test mounts (root, like the network-namespace tests): the oldest
/// recordings that do not wait for upload make room; when nothing may go, recording stops cleanly.
/// </summary>
public sealed class DiskFullTests(ITestOutputHelper output)
{
    sealed class Tmpfs : IAsyncDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("pearl2-tmpfs").FullName;

        public static async Task<Tmpfs> MountAsync(int megabytes)
        {
            var t = new Tmpfs();
            var r = await Peers.RunAsync("mount", ["-t", "tmpfs", "-o", $"size={megabytes}m", "pearl2-test", t.Path], TimeSpan.FromSeconds(10));
            if (r.ExitCode != 0) throw new InvalidOperationException($"mount tmpfs failed (this test needs root): {r.Stderr}");
            return t;
        }

        public async ValueTask DisposeAsync()
        {
            await Peers.RunAsync("umount", ["-l", Path], TimeSpan.FromSeconds(10));
            Directory.Delete(Path, true);
        }
    }

    static string Config(string dir, string space) =>
        Recordings.Config(rotateSeconds: 5, keyFrameInterval: 30, extraRecording: $", \"directory\": \"{dir}\" {space}", bitrateKbps: 8000, video: ", \"rateControl\": \"cbr\"");

    static void OldFile(string dir, string name, int megabytes, bool uploadPending, DateTime modified)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, new byte[megabytes << 20]);
        File.SetLastWriteTimeUtc(path, modified);
        if (uploadPending) File.WriteAllBytes(path + ".upload-pending", []);
    }

    [Fact]
    public async Task SpaceLimitReached_OldestRecordingsNotWaitingForUploadAreDeleted_RecordingGoesOn()
    {
        await using var fs = await Tmpfs.MountAsync(64);
        OldFile(fs.Path, "Channel_1_20200101-000000.mp4", 4, uploadPending: true, new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        OldFile(fs.Path, "Channel_1_20200101-010000.mp4", 4, uploadPending: false, new DateTime(2020, 1, 1, 1, 0, 0, DateTimeKind.Utc));
        await using var d = await Pearl2dProcess.StartAsync(Config(fs.Path, ", \"spaceLimitMegabytes\": 16, \"minFreeMegabytes\": 1"), channels: 1);
        await d.WaitForLogAsync("panel.led led=status pattern=on", TimeSpan.FromSeconds(10));
        await d.ControlAsync("panel", "press", "record");
        await Task.Delay(TimeSpan.FromSeconds(22)); // 8 Mbit/s: about 22 MB against a 16 MB limit
        var status = await d.ControlAsync("status");
        output.WriteLine(status);
        Assert.Contains("recording=on", status);
        await d.ControlAsync("panel", "press", "record");

        output.WriteLine(string.Join('\n', d.Log.Split('\n').Where(l => l.Contains("recording."))));
        await d.WaitForLogAsync("recording.deleted file=Channel_1_20200101-010000.mp4", Pearl2dProcess.LogLag);
        Assert.True(File.Exists(Path.Combine(fs.Path, "Channel_1_20200101-000000.mp4")), "a recording waiting for upload was deleted");
        Assert.False(File.Exists(Path.Combine(fs.Path, "Channel_1_20200101-010000.mp4")));
        // The oldest of this session's own files went too (loop recording), the newest are kept and play.
        Assert.True(d.CountInLog("recording.deleted") >= 2, "only the old file was deleted: the limit was never reached again");
        var ours = Recordings.Files(fs.Path).Where(f => !Path.GetFileName(f).StartsWith("Channel_1_2020")).ToArray();
        Assert.NotEmpty(ours);
        long total = Recordings.Files(fs.Path).Sum(f => new FileInfo(f).Length);
        output.WriteLine($"recordings now take {total / 1048576.0:0.0} MB (limit 16 MB)");
        Assert.True(total <= 16L << 20, $"{total} bytes of recordings exceed the 16 MB limit");
        foreach (var f in ours)
        {
            var p = await Recordings.ProbeAsync(f);
            Assert.Equal("", p.DecodeErrors);
            Assert.True(p.FirstFrameKey);
        }
    }

    [Fact]
    public async Task FilesystemFull_NothingDeletable_RecordingStopsWithAPlayableFileAndABlinkingLed()
    {
        await using var fs = await Tmpfs.MountAsync(12);
        OldFile(fs.Path, "Channel_1_20200101-000000.mp4", 7, uploadPending: true, new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        await using var d = await Pearl2dProcess.StartAsync(Config(fs.Path, ", \"minFreeMegabytes\": 1"), channels: 1);
        await d.WaitForLogAsync("panel.led led=status pattern=on", TimeSpan.FromSeconds(10));
        await d.ControlAsync("panel", "press", "record");
        await d.WaitForLogAsync("recording.stopped", TimeSpan.FromSeconds(30));
        await Task.Delay(200);
        var status = await d.ControlAsync("status");
        output.WriteLine(status);
        output.WriteLine(string.Join('\n', d.Log.Split('\n').Where(l => l.Contains("recording."))));
        await d.WaitForLogAsync("recording.no_space", Pearl2dProcess.LogLag);
        await d.WaitForLogAsync("error=disk_full", Pearl2dProcess.LogLag);
        Assert.Contains("recording=off", status);
        Assert.Contains("recorder=diskfull", status);
        Assert.Contains("led_record=blink", status);
        Assert.Contains("REC ERROR: DISK FULL", status);
        Assert.True(File.Exists(Path.Combine(fs.Path, "Channel_1_20200101-000000.mp4")), "a recording waiting for upload was deleted");
        Assert.Empty(Directory.GetFiles(Path.Combine(fs.Path, ".open")));
        var ours = Assert.Single(Recordings.Files(fs.Path), f => !Path.GetFileName(f).StartsWith("Channel_1_2020"));
        var p = await Recordings.ProbeAsync(ours);
        output.WriteLine($"{Path.GetFileName(ours)}: {new FileInfo(ours).Length} bytes, {p.VideoDuration:0.000} s, errors='{p.DecodeErrors}'");
        Assert.Equal("", p.DecodeErrors);
        Assert.True(p.VideoDuration >= 1, "the file written before the disk filled was lost");

        // Pressing Record again while the disk is still full refuses at once and keeps the error showing.
        await d.ControlAsync("panel", "press", "record");
        for (int i = 0; i < 100 && d.CountInLog("recording.stopped") < 2; i++) await Task.Delay(100);
        await Task.Delay(200);
        status = await d.ControlAsync("status");
        output.WriteLine(status);
        Assert.Contains("led_record=blink", status);
        Assert.Single(Recordings.Files(fs.Path), f => !Path.GetFileName(f).StartsWith("Channel_1_2020"));
    }
}
