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
    public static string Config(string format = "mp4", int rotateSeconds = 1800, int keyFrameInterval = 60, string extraRecording = "", string video = "") => $$"""
        {
          "channels": [ { "name": "Channel 1", "video": { "width": 640, "height": 360, "bitrateKbps": 800, "keyFrameIntervalFrames": {{keyFrameInterval}} {{video}} } } ],
          "recording": { "format": "{{format}}", "rotateSeconds": {{rotateSeconds}} {{extraRecording}} }
        }
        """;

    public static string Dir(Pearl2dProcess d) => Path.Combine(d.DataDir, "recordings");

    public static string[] Files(string dir) =>
        Directory.GetFiles(dir).Where(f => f.EndsWith(".mp4") || f.EndsWith(".ts")).Order(StringComparer.Ordinal).ToArray();

    public static async Task<ProbedFile> ProbeAsync(string path)
    {
        var count = await Peers.RunAsync("ffprobe", ["-v", "error", "-select_streams", "v", "-count_packets", "-show_entries", "stream=duration,nb_read_packets", "-of", "default=nw=1", path], TimeSpan.FromSeconds(60));
        var kv = count.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1]);
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
    public async Task RecordPressStartsRecordingAndLightsTheLed_SecondPressGivesAFileOfThatLength_DisplayShowsIt()
    {
        await using var d = await Pearl2dProcess.StartAsync(Recordings.Config(), channels: 1);
        await d.WaitForLogAsync("panel.led led=status pattern=on", TimeSpan.FromSeconds(10));
        await Task.Delay(2500); // a GOP in the hub, as on a device that has been up a while

        var on = await d.ControlAsync("panel", "press", "record");
        Assert.Contains("recording=on", on);
        Assert.Contains("led_record=on", on);
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
        Assert.Equal("CH1:REC", lines[4]);
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
        Assert.InRange(p.VideoFrames / 30.0, p.VideoDuration - 1 / 30.0 - 0.001, p.VideoDuration + 1 / 30.0 + 0.001);
        var listed = await d.ControlAsync("recordings");
        Assert.Contains($"{Path.GetFileName(file)}\t{new FileInfo(file).Length}\t", listed);
        Assert.Contains("\tcomplete", listed);
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
        for (int i = 0; i < lines.Length; i++) expected.Text(1, i * 8 + 1 + (i > 0 ? 2 : 0), lines[i]);
        int lit = 0, skipTop = skipLine * 8 + 3, skipBottom = skipTop + 8;
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
