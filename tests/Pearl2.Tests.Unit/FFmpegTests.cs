using Pearl2.Formats.Codecs;
using Pearl2.Media;
using Pearl2.Media.Encoders;
using Pearl2.Media.FFmpeg;
using Xunit;

namespace Pearl2.Tests.Unit;

public class FFmpegTests
{
    /// <summary>Compiles offsetof() against Debian's FFmpeg headers and compares with the offsets the bindings use.</summary>
    [Fact]
    public void StructOffsetsMatchTheInstalledHeaders()
    {
        var dir = Directory.CreateTempSubdirectory("pearl2-offsets").FullName;
        File.WriteAllText(Path.Combine(dir, "o.c"), """
            #include <stdio.h>
            #include <stddef.h>
            #include <libavcodec/avcodec.h>
            int main(void) {
              printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu %zu ", offsetof(AVFrame,data), offsetof(AVFrame,linesize), offsetof(AVFrame,width), offsetof(AVFrame,height),
                offsetof(AVFrame,nb_samples), offsetof(AVFrame,format), offsetof(AVFrame,pict_type), offsetof(AVFrame,pts), offsetof(AVFrame,sample_rate), offsetof(AVFrame,ch_layout));
              printf("%zu %zu %zu %zu %zu %zu", offsetof(AVPacket,pts), offsetof(AVPacket,dts), offsetof(AVPacket,data), offsetof(AVPacket,size), offsetof(AVPacket,flags),
                offsetof(AVCodecContext,sample_fmt));
              return 0; }
            """);
        NativeProgram.Run("gcc", $"-I/usr/include/{Arch()} -o {dir}/o {dir}/o.c", dir);
        var output = NativeProgram.Run($"{dir}/o", "", dir).Split(' ').Select(int.Parse).ToArray();
        int[] ours =
        [
            AvLayout.FrameData, AvLayout.FrameLinesize, AvLayout.FrameWidth, AvLayout.FrameHeight, AvLayout.FrameNbSamples, AvLayout.FrameFormat,
            AvLayout.FramePictType, AvLayout.FramePts, AvLayout.FrameSampleRate, AvLayout.FrameChLayout,
            AvLayout.PacketPts, AvLayout.PacketDts, AvLayout.PacketData, AvLayout.PacketSize, AvLayout.PacketFlags, AvLayout.CodecContextSampleFmt,
        ];
        Assert.Equal(ours, output);
    }

    static string Arch() => System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.Arm64 ? "aarch64-linux-gnu" : "x86_64-linux-gnu";

    sealed class Collect : IEncodedSink
    {
        public readonly List<(TrackKind Track, byte[] Data, long Pts, bool Key)> Units = new();
        public void OnEncoded(TrackKind track, ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> data, long pts, bool keyFrame)
            => Units.Add((track, [.. prefix, .. data], pts, keyFrame));
    }

    [Fact]
    public void MissingLibraryNamesTheDebianPackage()
    {
        var e = Assert.Throws<FFmpegMissingException>(() => FFmpegLibraries.Check("libavcodec.so.9999", "libavcodec59", 59, () => 59u << 16));
        Assert.Contains("apt-get install libavcodec59", e.Message);
    }

    [Fact]
    public void OtherMajorVersionIsRefused()
    {
        var e = Assert.Throws<FFmpegMissingException>(() => FFmpegLibraries.Check("libavutil.so.57", "libavutil57", 57, () => 58u << 16 | 2u << 8));
        Assert.Contains("reports version 58.2.0, expected major 57", e.Message);
    }

    [Fact]
    public void LibraryVersionsAreDebian12s() => Assert.Contains("avcodec=59.", FFmpegLibraries.Versions());

    [Fact]
    public void H264EncoderPutsParameterSetsBeforeEveryIdr()
    {
        using var enc = new H264Encoder(new H264EncoderOptions("libx264", 320, 240, 30, 500_000, 10, "ultrafast", "zerolatency"));
        var renderer = new Pearl2.Media.Sources.TestPatternRenderer(320, 240, 30);
        var sink = new Collect();
        for (int i = 0; i < 25; i++)
        {
            renderer.Render(enc.BeginFrame(), i, DateTimeOffset.UnixEpoch);
            enc.Encode(i, forceKeyFrame: i == 15, sink);
        }
        Assert.Equal(25, sink.Units.Count);
        var keys = sink.Units.Where(u => u.Key).ToList();
        Assert.Subset(keys.Select(k => k.Pts).ToHashSet(), new HashSet<long> { 0, 10 * 3000, 15 * 3000 });
        Assert.All(keys, k =>
        {
            Assert.True(AnnexBReader.ContainsNal(k.Data, NalType.Sps));
            Assert.True(AnnexBReader.ContainsNal(k.Data, NalType.Pps));
            Assert.True(AnnexBReader.ContainsNal(k.Data, NalType.IdrSlice));
        });
        Assert.Equal(Enumerable.Range(0, 25).Select(i => i * 3000L), sink.Units.Select(u => u.Pts)); // 90 kHz, no reordering
        foreach (var nal in new AnnexBReader(keys[0].Data))
            if ((nal[0] & 0x1f) == NalType.Sps)
            {
                Assert.True(H264Sps.TryParse(nal, out var sps));
                Assert.Equal((320, 240), (sps.Width, sps.Height));
            }
    }

    [Fact]
    public void AacEncoderMakesOneUnitPer1024Samples()
    {
        using var enc = new AacEncoder(48000, 2, 128_000);
        var tone = new Pearl2.Media.Sources.TestToneGenerator(48000);
        var sink = new Collect();
        for (int i = 0; i < 20; i++)
        {
            tone.Render(enc.BeginFrame(0), enc.BeginFrame(1), i * 1024L);
            enc.Encode(i * 1024L, sink);
        }
        Assert.InRange(sink.Units.Count, 17, 20); // the encoder holds a frame or two of look-ahead
        Assert.All(sink.Units, u => Assert.Equal(TrackKind.Audio, u.Track));
        Assert.All(sink.Units.Skip(1), u => Assert.InRange(u.Data.Length, 20, 2000));
        Assert.Equal(new byte[] { 0x11, 0x90 }, enc.AudioSpecificConfig);
    }

    [Fact]
    public void UnknownEncoderIsAClearError()
    {
        var e = Assert.Throws<EncoderException>(() => new H264Encoder(new H264EncoderOptions("no_such_encoder", 320, 240, 30, 500_000, 10, "ultrafast", "")));
        Assert.Contains("no_such_encoder", e.Message);
    }
}
