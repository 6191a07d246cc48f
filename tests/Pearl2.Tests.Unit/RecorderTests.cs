using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Pearl2.Formats.Mp4;
using Pearl2.Media;
using Pearl2.Services.Recording;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>
/// The recorder fed by a hub with made-up frames on a fake clock: rotation follows the media's own time, and every
/// file it completes is announced once, with what is on disk. No wall-clock sleeps: the test waits on conditions only.
/// </summary>
public sealed class RecorderTests : IDisposable
{
    static readonly byte[] Sps = [0x67, 0x42, 0xc0, 0x0c, 0xda, 0x0f, 0x0a, 0x68, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0xa3, 0xc5, 0x0a, 0xa8];
    static readonly byte[] Pps = [0x68, 0xce, 0x0f, 0x2c, 0x80];
    const int Fps = 10;
    readonly string _dir = Directory.CreateTempSubdirectory("pearl2-recorder").FullName;
    readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 4, 10, 0, 0, TimeSpan.Zero));

    public void Dispose() => Directory.Delete(_dir, true);

    static byte[] Frame(bool key) => key
        ? [0, 0, 0, 1, .. Sps, 0, 0, 0, 1, .. Pps, 0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x33]
        : [0, 0, 0, 1, 0x41, 0x9a, 0x02, 0x04];

    static void Until(Func<bool> condition)
    {
        var spin = new SpinWait();
        for (long i = 0; !condition(); i++)
        {
            Assert.True(i < 50_000_000, "the condition never came true");
            spin.SpinOnce();
        }
    }

    [Fact]
    public async Task FilesRotateOnTheMediasTimeAndEachCompleteFileIsAnnouncedOnce()
    {
        var hub = new ChannelHub(0, "Cam", _time);
        hub.Describe(new StreamInfo(160, 96, Fps, [], [], 0, 0, null, _time.GetUtcNow()));
        var library = new RecordingLibrary(new RecordingOptions { Directory = _dir, Format = "mp4", RotateAfter = TimeSpan.FromSeconds(5), MinFreeBytes = 0 }, NullLogger.Instance, _time);
        var finished = new List<RecordingFinished>();
        library.FileFinished += f => { lock (finished) finished.Add(f); };
        var recorder = new Recorder(hub, library, _time, NullLogger.Instance);

        long pts = 0;
        void Publish(int frames)
        {
            for (int i = 0; i < frames; i++, pts += 90000 / Fps)
            {
                bool key = pts % 90000 == 0;   // a key frame every second
                hub.Publish(hub.Pool.Rent(TrackKind.Video, key, pts, default, Frame(key)));
            }
        }

        Publish(1);                                          // the hub is ready at its first key frame
        Assert.True(recorder.Start());
        Until(() => hub.ReaderCount == 1);                   // the recorder reads from the cached GOP on
        Publish(12 * Fps - 1);                               // 12 s of pictures
        Until(() => { lock (finished) return finished.Count == 2; });
        Until(() => hub.Readers.All(r => r.Queued == 0));    // every picture read (a stop drops what is still queued)
        await recorder.StopAsync();

        Assert.Equal(3, finished.Count);
        Assert.Equal([RecordingEnd.Finished, RecordingEnd.Finished, RecordingEnd.Finished], finished.Select(f => f.How));
        Assert.Equal([5.0, 5.0, 2.0], finished.Select(f => Math.Round(f.Duration!.Value.TotalSeconds, 1)));
        Assert.Equal(["Cam_20261204-100000.mp4", "Cam_20261204-100000-2.mp4", "Cam_20261204-100000-3.mp4"], finished.Select(f => f.Name));
        foreach (var f in finished)
        {
            Assert.Equal(1, f.Channel);
            Assert.Equal(new FileInfo(f.Path).Length, f.Bytes);
            var head = File.ReadAllBytes(f.Path);
            Assert.True(FragmentedMp4.TryReadDuration(head, out var onDisk));
            Assert.Equal(f.Duration, onDisk);
        }
        Assert.All(library.List(), e => Assert.Equal(RecordingFileState.Complete, e.FileState));
    }

    [Fact]
    public void AFileACrashLeftOpenIsAnnouncedAsRecoveredAtTheNextStart()
    {
        // What a crash leaves: a file with its open marker, three whole fragments and half a write after them.
        var library = new RecordingLibrary(new RecordingOptions { Directory = _dir, MinFreeBytes = 0 }, NullLogger.Instance, _time);
        string path = library.Create("Cam", _time.GetLocalNow(), "mp4");
        var (mp4, ends) = RecordingRepairTests.Mp4File();
        File.WriteAllBytes(path, [.. mp4, .. new byte[1000]]);

        var next = new RecordingLibrary(new RecordingOptions { Directory = _dir, MinFreeBytes = 0 }, NullLogger.Instance, _time);
        var finished = new List<RecordingFinished>();
        next.FileFinished += finished.Add;
        next.Recover();
        var file = Assert.Single(finished);
        Assert.Equal((RecordingEnd.Recovered, (int?)null, ends[^1]), (file.How, file.Channel, file.Bytes));
        Assert.Equal(ends[^1], new FileInfo(path).Length);
        Assert.Equal(RecordingFileState.Recovered, Assert.Single(next.List()).FileState);
    }
}
