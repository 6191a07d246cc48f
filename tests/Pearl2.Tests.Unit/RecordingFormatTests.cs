using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.Extensions.Logging.Abstractions;
using Pearl2.Formats.Codecs;
using Pearl2.Formats.Images;
using Pearl2.Formats.Mp4;
using Pearl2.Formats.Ts;
using Pearl2.Services;
using Pearl2.Services.FrontPanel;
using Pearl2.Services.Recording;
using Xunit;

namespace Pearl2.Tests.Unit;

public class FragmentedMp4Tests
{
    static readonly byte[] Sps = [0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80];
    static readonly byte[] Pps = [0x68, 0xce, 0x3c, 0x80];
    static readonly byte[] Asc = [0x11, 0x90]; // AAC-LC, 48 kHz, stereo

    static byte[] B(string hex) => Convert.FromHexString(hex.Replace(" ", ""));

    [Fact]
    public void MoofWithTwoVideoSamplesAndOneAudioSample()
    {
        var buf = new byte[FragmentedMp4.MaxMoofSize(2, 1)];
        int n = FragmentedMp4.WriteMoof(buf, 7, 3000, [new(100, 3000, true), new(50, 3000, false)], 1024, [new(20, 1024, true)]);
        // ISO/IEC 14496-12: mfhd (§8.8.5), tfhd with default-base-is-moof (§8.8.7), tfdt v1 (§8.8.12), trun (§8.8.8).
        var expected = B(
            "000000B8 6D6F6F66" +
            "00000010 6D666864 00000000 00000007" +
            "00000058 74726166" +
              "00000010 74666864 00020000 00000001" +
              "00000014 74666474 01000000 0000000000000BB8" +
              "0000002C 7472756E 00000701 00000002 000000C0" +   // data offset 192 = moof (184) + mdat header (8)
                "00000BB8 00000064 02000000" +                   // sync: depends on no other
                "00000BB8 00000032 01010000" +                   // non-sync
            "00000048 74726166" +
              "00000010 74666864 00020000 00000002" +
              "00000014 74666474 01000000 0000000000000400" +
              "0000001C 7472756E 00000301 00000001 00000156" +   // audio after 150 bytes of video: 342
                "00000400 00000014" +
            "000000B2 6D646174");                                // mdat: 8 + 170
        Assert.Equal(expected, buf[..n]);
    }

    [Fact]
    public void EsdsCarriesTheAudioSpecificConfig()
    {
        var buf = new byte[64];
        var w = new BoxWriter(buf);
        FragmentedMp4.WriteEsds(ref w, Asc);
        // ISO/IEC 14496-1 §7.2.6: ES_Descriptor(3) → DecoderConfigDescriptor(4, MPEG-4 audio 0x40, audio stream) → DecoderSpecificInfo(5) → SLConfig(6, predefined 2)
        Assert.Equal(B("00000027 65736473 00000000 03 19 0000 00 04 11 40 15 000000 00000000 00000000 05 02 1190 06 01 02"), buf[..w.Position]);
    }

    [Fact]
    public void MehdAndMfra()
    {
        var mehd = new byte[FragmentedMp4.MehdSize];
        FragmentedMp4.WriteMehd(mehd, 35767);
        Assert.Equal(B("00000014 6D656864 01000000 0000000000008BB7"), mehd);

        var mfra = new byte[FragmentedMp4.MfraSize(1)];
        Assert.Equal(67, FragmentedMp4.WriteMfra(mfra, [(90000UL, 1234UL)]));
        Assert.Equal(B("00000043 6D667261" +
            "0000002B 74667261 01000000 00000001 00000000 00000001 0000000000015F90 00000000000004D2 010101" +
            "00000010 6D66726F 00000000 00000043"), mfra);
    }

    /// <summary>Box types in file order, children indented by their depth, for the containers we write.</summary>
    static List<string> Walk(ReadOnlySpan<byte> b, int depth = 0)
    {
        var list = new List<string>();
        string[] containers = ["moov", "trak", "mdia", "minf", "stbl", "mvex", "dinf"];
        for (int at = 0; at < b.Length;)
        {
            int size = (int)BinaryPrimitives.ReadUInt32BigEndian(b[at..]);
            string type = System.Text.Encoding.ASCII.GetString(b.Slice(at + 4, 4));
            Assert.InRange(size, 8, b.Length - at);
            list.Add(new string(' ', depth) + type);
            if (containers.Contains(type)) list.AddRange(Walk(b.Slice(at + 8, size - 8), depth + 1));
            else if (type == "stsd") list.AddRange(Walk(b.Slice(at + 16, size - 16), depth + 1));
            at += size;
        }
        return list;
    }

    [Fact]
    public void InitSegmentLayout_AndTheSlotsFilledWhenFinished()
    {
        var v = new Mp4VideoTrack(640, 360, Sps, Pps);
        var a = new Mp4AudioTrack(48000, 2, Asc);
        var buf = new byte[FragmentedMp4.MaxInitSize(v, a)];
        int n = FragmentedMp4.WriteInit(buf, v, a, out var layout);
        Assert.Equal(n, layout.Length);
        Assert.Equal(
            ["ftyp", "moov", " mvhd",
             " trak", "  tkhd", "  mdia", "   mdhd", "   hdlr", "   minf", "    vmhd", "    dinf", "     dref", "    stbl", "     stsd", "      avc1", "     stts", "     stsc", "     stsz", "     stco",
             " trak", "  tkhd", "  mdia", "   mdhd", "   hdlr", "   minf", "    smhd", "    dinf", "     dref", "    stbl", "     stsd", "      mp4a", "     stts", "     stsc", "     stsz", "     stco",
             " mvex", "  free", "  trex", "  trex"],
            Walk(buf.AsSpan(0, n)));
        // The avcC inside avc1 is the decoder configuration record.
        var avcc = new byte[AvcDecoderConfig.Size(Sps.Length, Pps.Length)];
        AvcDecoderConfig.Write(avcc, Sps, Pps);
        Assert.True(buf.AsSpan(0, n).IndexOf([.. "avcC"u8, .. avcc]) > 0);
        Assert.Equal("free"u8.ToArray(), buf[(layout.MehdSlotOffset + 4)..(layout.MehdSlotOffset + 8)]);
        Assert.Equal((uint)FragmentedMp4.MehdSize, BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(layout.MehdSlotOffset)));
        Assert.Equal(1000u, BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(layout.MvhdDurationOffset - 4))); // timescale before duration
    }
}

public class RecordingRepairTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pearl2-repair").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>Init segment and three fragments; returns the file and the offsets where each fragment ends.</summary>
    internal static (byte[] File, long[] FragmentEnds) Mp4File()
    {
        var ms = new MemoryStream();
        var v = new Mp4VideoTrack(64, 64, [0x67, 0x42, 0xc0, 0x1e], [0x68, 0xce]);
        var init = new byte[FragmentedMp4.MaxInitSize(v, null)];
        ms.Write(init, 0, FragmentedMp4.WriteInit(init, v, null, out _));
        var ends = new List<long>();
        for (uint f = 1; f <= 3; f++)
        {
            var moof = new byte[FragmentedMp4.MaxMoofSize(2, 0)];
            int n = FragmentedMp4.WriteMoof(moof, f, f * 6000, [new(40, 3000, true), new(30, 3000, false)], 0, []);
            ms.Write(moof, 0, n);
            ms.Write(new byte[70].Select((_, i) => (byte)(i + f)).ToArray());
            ends.Add(ms.Length);
        }
        return (ms.ToArray(), ends.ToArray());
    }

    [Fact]
    public void Mp4CutAtEveryByte_KeepsEveryWholeFragmentAndNothingElse()
    {
        var (file, ends) = Mp4File();
        var path = Path.Combine(_dir, "cut.mp4");
        for (int cut = 0; cut <= file.Length; cut++)
        {
            File.WriteAllBytes(path, file[..cut]);
            long expected = ends.Where(e => e <= cut).DefaultIfEmpty(0).Max();
            Assert.Equal(expected, RecordingRepair.Repair(path));
            Assert.Equal(expected, new FileInfo(path).Length);
        }
    }

    [Fact]
    public void Mp4WithGarbageAfterTheLastFragment_IsCutBackToIt()
    {
        var (file, ends) = Mp4File();
        var path = Path.Combine(_dir, "garbage.mp4");
        File.WriteAllBytes(path, [.. file, .. new byte[4096]]); // zeros where a power cut left unwritten blocks
        Assert.Equal(ends[^1], RecordingRepair.Repair(path));
    }

    [Fact]
    public void TsCut_KeepsWholePacketsUpToTheLastVideoAccessUnit()
    {
        var mux = new TsMuxer(audio: false);
        var ms = new MemoryStream();
        var buf = new byte[64 * 1024];
        var starts = new List<long>();
        for (int i = 0; i < 5; i++)
        {
            starts.Add(ms.Length);
            int n = i == 0 ? mux.WriteTables(buf) : 0;
            var au = new byte[1000 + i * 300];
            au[2] = 1; au[3] = 0x65;
            n += mux.WriteVideo(buf.AsSpan(n), au, 90000 + i * 3000, 90000 + i * 3000, i == 0);
            ms.Write(buf, 0, n);
        }
        var file = ms.ToArray();
        var path = Path.Combine(_dir, "cut.ts");
        foreach (int cut in new[] { file.Length, file.Length - 1, file.Length - 188, (int)starts[3] + 200, (int)starts[2] + 188, (int)starts[1] + 5 })
        {
            File.WriteAllBytes(path, file[..cut]);
            long kept = RecordingRepair.Repair(path);
            long end = cut / TsMuxer.PacketSize * TsMuxer.PacketSize;
            long expected = starts.Where(s => s < end).Max(); // the last access unit with a packet left is dropped whole
            if (expected == starts[0]) expected = 0;        // … and if it was the only one, nothing plays
            Assert.Equal(expected, kept);
            Assert.Equal(0, kept % TsMuxer.PacketSize);
        }
    }
}

public class RecordingLibraryTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pearl2-library").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    void Old(string name, int mb, int hour, bool pending = false)
    {
        var p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, new byte[mb << 20]);
        File.SetLastWriteTimeUtc(p, new DateTime(2020, 1, 1, hour, 0, 0, DateTimeKind.Utc));
        if (pending) File.WriteAllBytes(p + RecordingLibrary.UploadPendingSuffix, []);
    }

    static void Grow(string path, int megabytes) { using var f = File.OpenWrite(path); f.Seek(0, SeekOrigin.End); f.Write(new byte[megabytes << 20]); }

    [Fact]
    public void Reserve_DeletesOldestFirst_NeverWhatWaitsForUploadOrIsBeingWritten_ThenRefuses()
    {
        Old("a_20200101-000000.mp4", 3, 0);
        Old("b_20200101-010000.mp4", 3, 1, pending: true);
        Old("c_20200101-020000.ts", 3, 2);
        var lib = new RecordingLibrary(new RecordingOptions { Directory = _dir, SpaceLimitBytes = 10L << 20, MinFreeBytes = 0 }, NullLogger.Instance);
        lib.Recover();
        string open = lib.Create("Channel 1", new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero), "mp4");
        Assert.EndsWith("Channel_1_20261125-120000.mp4", open);
        File.WriteAllBytes(open, new byte[1 << 20]);

        Assert.True(lib.Reserve(2L << 20));   // 9 + 2 > 10: a goes
        Grow(open, 2);                        // what was reserved is written, as the writer does
        Assert.False(File.Exists(Path.Combine(_dir, "a_20200101-000000.mp4")));
        Assert.True(lib.Reserve(3L << 20));   // c goes (b waits for upload)
        Grow(open, 3);
        Assert.False(File.Exists(Path.Combine(_dir, "c_20200101-020000.ts")));
        Assert.False(lib.Reserve(6L << 20));  // only b and the open file are left
        Assert.True(File.Exists(Path.Combine(_dir, "b_20200101-010000.mp4")));
        Assert.True(File.Exists(open));

        var list = lib.List();
        Assert.Equal(["recording", "upload-pending"], list.Select(e => e.State)); // Channel_1_… sorts before b_…
        lib.Closed(open);
        Assert.Equal("complete", lib.List().Single(e => e.Name.StartsWith("Channel_1")).State);
    }

    sealed class SteppedTime : TimeProvider
    {
        public long Ticks = 1;
        public override long GetTimestamp() => Ticks;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
    }

    [Fact]
    public void Reserve_NeverDeletesAFileJustClosedOrTheEndOfARecordingStoppedForSpace()
    {
        Old("old_20200101-000000.mp4", 3, 0);
        var time = new SteppedTime();
        var lib = new RecordingLibrary(new RecordingOptions { Directory = _dir, SpaceLimitBytes = 10L << 20, MinFreeBytes = 0 }, NullLogger.Instance, time);
        lib.Recover();
        // Channel 1 stops at disk-full with what it has; channel 2 then needs room 9 ms later (as it was seen).
        string one = lib.Create("Channel 1", new DateTimeOffset(2026, 12, 3, 8, 0, 0, TimeSpan.Zero), "mp4");
        File.WriteAllBytes(one, new byte[3 << 20]);
        Assert.True(lib.Reserve(3L << 20));
        lib.Closed(one, stoppedForSpace: true);
        string two = lib.Create("Channel 2", new DateTimeOffset(2026, 12, 3, 8, 0, 0, TimeSpan.Zero), "mp4");
        File.WriteAllBytes(two, new byte[3 << 20]);
        Assert.True(lib.Reserve(3L << 20));
        Assert.True(lib.Reserve(2L << 20));                   // 9 + 2 > 10: the old file goes, never channel 1's
        Assert.False(File.Exists(Path.Combine(_dir, "old_20200101-000000.mp4")));
        Assert.False(lib.Reserve(5L << 20));                  // nothing else may go
        Assert.True(File.Exists(one));
        time.Ticks += (long)TimeSpan.FromMinutes(10).TotalSeconds * TimeSpan.TicksPerSecond;
        Assert.False(lib.Reserve(5L << 20));                  // kept for good, not only for a minute
        Assert.True(File.Exists(one));

        // A file closed the ordinary way is spared from other channels for a minute, then it is the oldest and may go.
        lib.Closed(two);
        string three = lib.Create("Channel 3", new DateTimeOffset(2026, 12, 3, 8, 0, 1, TimeSpan.Zero), "mp4");
        Assert.False(lib.Reserve(5L << 20, three));
        Assert.True(File.Exists(two));
        time.Ticks += (long)(RecordingLibrary.JustClosed.TotalSeconds + 1) * TimeSpan.TicksPerSecond;
        Assert.True(lib.Reserve(5L << 20, three));
        Assert.False(File.Exists(two));
    }

    [Fact]
    public void Reserve_LoopRecordingMayTakeItsOwnChannelsJustClosedFile()
    {
        var lib = new RecordingLibrary(new RecordingOptions { Directory = _dir, SpaceLimitBytes = 10L << 20, MinFreeBytes = 0 }, NullLogger.Instance, new SteppedTime());
        lib.Recover();
        string first = lib.Create("Channel 1", new DateTimeOffset(2026, 12, 3, 8, 0, 0, TimeSpan.Zero), "mp4");
        File.WriteAllBytes(first, new byte[6 << 20]);
        Assert.True(lib.Reserve(6L << 20, first));
        lib.Closed(first);                                      // rotated a moment ago
        string next = lib.Create("Channel 1", new DateTimeOffset(2026, 12, 3, 8, 0, 5, TimeSpan.Zero), "mp4");
        string other = lib.Create("Channel 2", new DateTimeOffset(2026, 12, 3, 8, 0, 5, TimeSpan.Zero), "mp4");
        Assert.False(lib.Reserve(5L << 20, other));             // channel 2 may not take channel 1's new file
        Assert.True(File.Exists(first));
        Assert.True(lib.Reserve(5L << 20, next));               // channel 1's own loop recording may
        Assert.False(File.Exists(first));
    }

    [Fact]
    public void Reserve_MeasuresWhenTheCountSaysFull_SoFilesRemovedByHandAreSeen()
    {
        Old("a_20200101-000000.mp4", 4, 0, pending: true);
        Old("b_20200101-010000.mp4", 4, 1, pending: true);
        var lib = new RecordingLibrary(new RecordingOptions { Directory = _dir, SpaceLimitBytes = 10L << 20, MinFreeBytes = 0 }, NullLogger.Instance);
        lib.Recover();
        Assert.False(lib.Reserve(3L << 20));                  // 8 + 3 > 10 and both wait for upload
        File.Delete(Path.Combine(_dir, "a_20200101-000000.mp4")); // the operator makes room by hand
        Assert.True(lib.Reserve(3L << 20));                   // 4 + 3 <= 10, measured
        Assert.True(File.Exists(Path.Combine(_dir, "b_20200101-010000.mp4")));
    }

    [Fact]
    public void Create_MakesNamesUnique_AndMarksTheFileOpenUntilClosed()
    {
        var lib = new RecordingLibrary(new RecordingOptions { Directory = _dir }, NullLogger.Instance);
        var t = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
        var a = lib.Create("Lecture Hall/2", t, "ts");
        var b = lib.Create("Lecture Hall/2", t, "ts");
        Assert.EndsWith("Lecture_Hall_2_20260102-030405.ts", a);
        Assert.EndsWith("Lecture_Hall_2_20260102-030405-2.ts", b);
        Assert.True(File.Exists(Path.Combine(_dir, ".open", Path.GetFileName(a))));
        lib.Closed(a);
        Assert.False(File.Exists(Path.Combine(_dir, ".open", Path.GetFileName(a))));
    }
}

public class StatusDisplayTests
{
    [Fact]
    public void PngChunkCrc_IsTheIso3309Crc()
    {
        Assert.Equal(0xAE426082u, Png.Crc32("IEND"u8));              // every PNG ends with these bytes
        Assert.Equal(0xCBF43926u, Png.Crc32("123456789"u8));         // the CRC-32 check value
    }

    [Fact]
    public void Png_DecodesBackToThePixels()
    {
        var px = new byte[16 * 4];
        for (int i = 0; i < px.Length; i++) px[i] = (byte)(i * 4);
        var png = Png.EncodeGray(px, 16, 4);
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a }, png[..8]);
        Assert.Equal("IHDR"u8.ToArray(), png[12..16]);
        Assert.Equal(16u, BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(16)));
        int idat = png.AsSpan().IndexOf("IDAT"u8);
        int len = (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(idat - 4));
        using var z = new ZLibStream(new MemoryStream(png, idat + 4, len), CompressionMode.Decompress);
        var rows = new MemoryStream();
        z.CopyTo(rows);
        var raw = rows.ToArray();
        Assert.Equal(4 * 17, raw.Length);
        for (int y = 0; y < 4; y++)
        {
            Assert.Equal(0, raw[y * 17]); // filter: none
            Assert.Equal(px.AsSpan(y * 16, 16).ToArray(), raw.AsSpan(y * 17 + 1, 16).ToArray());
        }
    }

    [Fact]
    public void Font_DrawsTheGlyphAtItsPlace_InControllerPageOrder()
    {
        var f = new MonoFrame(128, 64);
        f.Text(0, 0, "1");
        // "1": ..#.. / .##.. / ..#.. ×4 / .###.  → column 2 lit on every row, column 1 on rows 1 and 6, column 3 on row 6.
        Assert.Equal([0x00, 0x42, 0x7f, 0x40, 0x00], f.Pages[..5]);
        Assert.True(f[2, 0]);
        Assert.False(f[0, 0]);
        f.Text(0, 8, "a");
        Assert.Equal(Pearl2.Media.Sources.Font5x7.Glyph('A'), f.Pages[128..133]); // small letters drawn as capitals, on page 1
    }

    [Fact]
    public void TextModel_ShowsNameAddressRecordingAndChannels()
    {
        var lines = StatusDisplay.Compose("Pearl2 lab", "192.168.1.20", new PanelStatus(DeviceState.Ready, true, false, true), TimeSpan.FromSeconds(83),
            [new(1, true), new(2, false, Live: false), new(3, true, Login: true)]);
        Assert.Equal(["PEARL2 LAB", "IP 192.168.1.20", "REC 00:01:23", "CH   1 2 3", "REC  R - R", "LIVE Y - L", "READY"], lines);
        var full = StatusDisplay.Compose("x", "10.0.0.1", new PanelStatus(DeviceState.Ready, false, true, false), null, [new(1, false, Fault: true, Live: false)]);
        Assert.Equal("REC ERROR: DISK FULL", full[2]);
        Assert.Equal("REC  !", full[4]);
        Assert.Equal("LIVE -", full[5]);
        // Eight channels fit the 128-pixel line (21 characters), and seven lines the 64-pixel display.
        var eight = StatusDisplay.Compose("a very long device name indeed", "192.168.100.200", new PanelStatus(DeviceState.Ready, true, false, true), TimeSpan.Zero,
            Enumerable.Range(1, 8).Select(i => new StatusDisplay.ChannelGlance(i, i % 2 == 0)));
        Assert.Equal("CH   1 2 3 4 5 6 7 8", eight[3]);
        Assert.Equal("REC  - R - R - R - R", eight[4]);
        Assert.All(eight, l => Assert.True(l.Length <= 21, l));
        var frame = new MonoFrame(128, 64);
        StatusDisplay.Draw(frame, eight);
        Assert.True(StatusDisplay.LineTop(eight.Length - 1) + 7 <= 64);
    }
}
