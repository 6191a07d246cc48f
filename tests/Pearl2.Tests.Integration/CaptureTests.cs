using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// A channel whose capture device is missing (this host has no V4L2 device; the qemu image test has vivid) keeps
/// streaming a "No signal" picture, as the Pearl does, and logs why once.
/// </summary>
public sealed class CaptureTests(ITestOutputHelper output)
{
    [Fact]
    public async Task MissingCaptureDevice_StreamsTheNoSignalPicture()
    {
        await using var d = await Pearl2dProcess.StartAsync("""
            { "channels": [ { "name": "HDMI", "source": "/dev/video97", "video": { "width": 320, "height": 180 } } ] }
            """, channels: 1);
        await d.WaitForLogAsync("capture.state device=/dev/video97 state=failed", TimeSpan.FromSeconds(10));
        var dir = Directory.CreateTempSubdirectory("pearl2-nosignal").FullName;
        var raw = Path.Combine(dir, "frames.gray");
        var r = await Peers.RunAsync("ffmpeg", ["-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", d.Url(), "-frames:v", "30", "-f", "rawvideo", "-pix_fmt", "gray", raw], TimeSpan.FromSeconds(60));
        Assert.True(r.ExitCode == 0, r.Stderr);
        var px = await File.ReadAllBytesAsync(raw);
        Assert.Equal(30 * 320 * 180, px.Length);
        var last = px.AsSpan(29 * 320 * 180, 320 * 180).ToArray();
        // ffmpeg turns limited-range luma 40 into full-range grey about 28.
        double grey = last.Count(b => b is >= 20 and <= 36) / (double)last.Length, bright = last.Count(b => b > 200) / (double)last.Length;
        output.WriteLine($"grey {grey:P0}, letters {bright:P1}");
        Assert.True(grey > 0.8, $"only {grey:P0} of the picture is the no-signal grey");
        Assert.True(bright > 0.01, "no letters on the no-signal picture");
        Assert.Equal(1, d.CountInLog("capture.state device=/dev/video97 state=failed")); // once, not once per retry
        await d.WaitForLogAsync("source=/dev/video97", Pearl2dProcess.LogLag);
    }
}
