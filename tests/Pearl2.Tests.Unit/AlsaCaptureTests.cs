using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Pearl2.Media.Alsa;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>Log lines, for asserting what an operator would read.</summary>
sealed class ListLogger : ILogger
{
    public readonly List<string> Lines = new();
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    { lock (Lines) Lines.Add(formatter(state, exception)); }
}

/// <summary>
/// The real libasound2 in this process: a PCM of ALSA's own "file" plugin whose capture side reads a raw S16 stereo
/// file (a 750 Hz tone, the right channel inverted) stands in for a sound card, which this host does not have.
/// The qemu image test captures from snd-aloop in a real kernel.
/// </summary>
public sealed partial class AlsaCaptureTests
{
    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);

    static readonly string Dir = MakeConfig();

    static string MakeConfig()
    {
        var dir = Directory.CreateTempSubdirectory("pearl2-alsa").FullName;
        using (var f = File.Create(Path.Combine(dir, "tone.raw")))
        using (var w = new BinaryWriter(f))
            for (int i = 0; i < 48000 * 2; i++)
            {
                short v = (short)(12000 * Math.Sin(2 * Math.PI * 750 * i / 48000));
                w.Write(v); w.Write((short)-v);
            }
        File.WriteAllText(Path.Combine(dir, "asound.conf"),
            $"</usr/share/alsa/alsa.conf>\npcm.pearl2test {{\n  type file\n  slave.pcm null\n  file \"/dev/null\"\n  infile \"{dir}/tone.raw\"\n  format \"raw\"\n}}\n");
        // libasound reads the native environment, which Environment.SetEnvironmentVariable does not change.
        setenv("ALSA_CONFIG_PATH", Path.Combine(dir, "asound.conf"), 1);
        return dir;
    }

    [Fact]
    public void ReadsInterleavedS16AsPlanarFloat()
    {
        Assert.NotNull(Dir);
        var log = new ListLogger();
        using var alsa = new AlsaCapture("pearl2test", 48000, 2, 1024, TimeProvider.System, log);
        float[] left = new float[1024], right = new float[1024];
        var all = new List<float>();
        for (int frame = 0; frame < 10; frame++)
        {
            Assert.True(alsa.TryRead(left, right, 500), string.Join("\n", log.Lines));
            for (int i = 0; i < 1024; i++) Assert.Equal(-left[i], right[i], 1e-3f);
            all.AddRange(left);
        }
        Assert.Contains(log.Lines, l => l.Contains("audio.state device=pearl2test state=capturing detail=\"48000 Hz 2 ch\""));
        // The samples are the file's, in order: the first is sin(0), the peak is 12000/32768.
        for (int i = 0; i < all.Count; i++)
            Assert.Equal(12000 * Math.Sin(2 * Math.PI * 750 * i / 48000) / 32768, all[i], 1e-3);
    }

    [Fact]
    public void AMissingCardIsReportedOnceAndRetriedAtMostEverySecond()
    {
        Assert.NotNull(Dir);
        var log = new ListLogger();
        var time = new FakeTimeProvider();
        using var alsa = new AlsaCapture("plughw:CARD=NoSuchCard,DEV=0", 48000, 2, 1024, time, log);
        float[] left = new float[1024], right = new float[1024];
        for (int i = 0; i < 5; i++) Assert.False(alsa.TryRead(left, right, 10));
        time.Advance(TimeSpan.FromSeconds(1.1));
        Assert.False(alsa.TryRead(left, right, 10));
        var lines = log.Lines.Where(l => l.StartsWith("audio.state", StringComparison.Ordinal)).ToArray();
        Assert.Single(lines);   // one line per change of state, not one per try
        Assert.Matches(@"audio\.state device=plughw:CARD=NoSuchCard,DEV=0 state=missing detail=""\w", lines[0]);
        Assert.False(alsa.Capturing);
    }
}
