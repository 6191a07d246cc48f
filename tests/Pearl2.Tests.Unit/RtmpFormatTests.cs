using System.Buffers.Binary;
using Pearl2.Formats.Rtmp;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>RTMP's chunk stream (Adobe RTMP 1.0 §5.3, its examples in §5.3.2) and AMF0 (AMF0 spec §2) as bytes.</summary>
public class RtmpFormatTests
{
    static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", ""));

    static byte[] Payload(int n) => Enumerable.Range(0, n).Select(i => (byte)i).ToArray();

    [Fact]
    public void AVideoMessageLongerThanAChunkIsOneType0HeaderAndType3Continuations()
    {
        // RTMP 1.0 §5.3.2.2: a 307-byte video message with 128-byte chunks: a type-0 chunk, then two type-3 chunks.
        var payload = Payload(307);
        var buf = new byte[RtmpChunkWriter.MaxSize(307, 128)];
        int n = RtmpChunkWriter.Write(buf, 4, 1000, RtmpType.Video, 12346, payload, 128);
        Assert.Equal(12 + 128 + 1 + 128 + 1 + 51, n);
        // fmt 0 | csid 4; timestamp 1000; length 307; type 9; stream id 12346 little-endian.
        Assert.Equal(Hex("04 0003e8 000133 09 3a300000"), buf[..12]);
        Assert.Equal(payload[..128], buf[12..140]);
        Assert.Equal(0xc4, buf[140]);   // fmt 3 | csid 4
        Assert.Equal(payload[128..256], buf[141..269]);
        Assert.Equal(0xc4, buf[269]);
        Assert.Equal(payload[256..], buf[270..n]);
        Assert.True(n <= buf.Length);
    }

    [Fact]
    public void ATimestampPastTwentyFourBitsGoesInTheExtendedFieldAfterEveryChunkHeader()
    {
        var buf = new byte[RtmpChunkWriter.MaxSize(200, 128)];
        int n = RtmpChunkWriter.Write(buf, 6, 0x01020304, RtmpType.Audio, 1, Payload(200), 128);
        Assert.Equal(Hex("06 ffffff 0000c8 08 01000000 01020304"), buf[..16]);
        Assert.Equal(Hex("c6 01020304"), buf[144..149]);
        Assert.Equal(16 + 128 + 5 + 72, n);
        var reader = new RtmpChunkReader();
        Assert.True(reader.TryReadChunk(buf.AsSpan(0, n), out int c1, out var m1));
        Assert.Null(m1);
        Assert.True(reader.TryReadChunk(buf.AsSpan(c1, n - c1), out int c2, out var m2));
        Assert.Equal(n, c1 + c2);
        Assert.Equal(0x01020304u, m2!.Timestamp);
        Assert.Equal(Payload(200), m2.Payload);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(319)]
    [InlineData(320)]
    [InlineData(65599)]
    public void ChunkStreamIdsTakeOneTwoOrThreeBytesAndReadBack(int csid)
    {
        var buf = new byte[RtmpChunkWriter.MaxSize(10, 128, csid)];
        int n = RtmpChunkWriter.Write(buf, csid, 5, RtmpType.CommandAmf0, 0, Payload(10), 128);
        Assert.Equal((csid < 64 ? 1 : csid < 320 ? 2 : 3) + 11 + 10, n);
        if (csid is >= 64 and < 320) Assert.Equal(Hex($"00{csid - 64:x2}"), buf[..2]);
        var reader = new RtmpChunkReader();
        Assert.True(reader.TryReadChunk(buf.AsSpan(0, n), out int consumed, out var m));
        Assert.Equal(n, consumed);
        Assert.Equal(Payload(10), m!.Payload);
    }

    [Fact]
    public void Type2AndType3HeadersCarryTheStreamsStateAsTheSpecsFirstExampleSays()
    {
        // RTMP 1.0 §5.3.2.1: four 32-byte audio messages on one chunk stream, 20 ms apart: type 0, type 2, type 3, type 3.
        var bytes = new List<byte>();
        bytes.AddRange(Hex("03 0003e8 000020 08 39300000")); bytes.AddRange(Payload(32));
        bytes.AddRange(Hex("83 000014")); bytes.AddRange(Payload(32));
        bytes.Add(0xc3); bytes.AddRange(Payload(32));
        bytes.Add(0xc3); bytes.AddRange(Payload(32));
        var reader = new RtmpChunkReader();
        var data = bytes.ToArray();
        var stamps = new List<uint>();
        int at = 0;
        while (at < data.Length)
        {
            Assert.True(reader.TryReadChunk(data.AsSpan(at), out int consumed, out var m));
            at += consumed;
            Assert.Equal(RtmpType.Audio, m!.Type);
            Assert.Equal(12345u, m.StreamId);
            stamps.Add(m.Timestamp);
        }
        Assert.Equal([1000u, 1020u, 1040u, 1060u], stamps);
    }

    [Fact]
    public void MessagesInterleavedOnTwoChunkStreamsAreReassembledEachOnItsOwn()
    {
        var a = new byte[400]; int na = RtmpChunkWriter.Write(a, 4, 0, RtmpType.Audio, 1, Payload(200), 128);
        var v = new byte[400]; int nv = RtmpChunkWriter.Write(v, 6, 0, RtmpType.Video, 1, Payload(150).Reverse().ToArray(), 128);
        // audio chunk 1, video chunk 1, audio chunk 2, video chunk 2
        var data = a[..140].Concat(v[..140]).Concat(a[140..na]).Concat(v[140..nv]).ToArray();
        var reader = new RtmpChunkReader();
        var got = new List<RtmpMessage>();
        int at = 0;
        while (at < data.Length)
        {
            Assert.True(reader.TryReadChunk(data.AsSpan(at), out int consumed, out var m));
            at += consumed;
            if (m is not null) got.Add(m);
        }
        Assert.Equal(2, got.Count);
        Assert.Equal(Payload(200), got.Single(m => m.Type == RtmpType.Audio).Payload);
        Assert.Equal(Payload(150).Reverse(), got.Single(m => m.Type == RtmpType.Video).Payload);
    }

    [Fact]
    public void ASetChunkSizeFromTheServerAppliesToItsNextChunks()
    {
        var buf = new byte[64];
        int n = RtmpChunkWriter.WriteControl(buf, RtmpType.SetChunkSize, 4096);
        Assert.Equal(Hex("02 000000 000004 01 00000000 00001000"), buf[..n]);
        var reader = new RtmpChunkReader();
        Assert.True(reader.TryReadChunk(buf.AsSpan(0, n), out _, out var m));
        Assert.Equal(RtmpType.SetChunkSize, m!.Type);
        Assert.Equal(4096, reader.ChunkSize);
        // A 1000-byte message now comes in one chunk.
        var big = new byte[1100];
        int nb = RtmpChunkWriter.Write(big, 3, 0, RtmpType.CommandAmf0, 0, Payload(1000), 4096);
        Assert.True(reader.TryReadChunk(big.AsSpan(0, nb), out int consumed, out var whole));
        Assert.Equal(nb, consumed);
        Assert.Equal(1000, whole!.Payload.Length);
    }

    [Fact]
    public void AChunkCutShortWaitsForMoreAndConsumesNothing()
    {
        var buf = new byte[400];
        int n = RtmpChunkWriter.Write(buf, 4, 0, RtmpType.Video, 1, Payload(100), 128);
        var reader = new RtmpChunkReader();
        for (int cut = 0; cut < n; cut++)
        {
            Assert.False(reader.TryReadChunk(buf.AsSpan(0, cut), out int consumed, out var m));
            Assert.Equal(0, consumed);
            Assert.Null(m);
        }
        Assert.True(reader.TryReadChunk(buf.AsSpan(0, n), out _, out var whole));
        Assert.Equal(100, whole!.Payload.Length);
    }

    [Theory]
    [InlineData("43 000014 000020 08", "a type-1 header on a chunk stream that never had a type 0")]
    [InlineData("03 000000 200000 14 00000000", "a message of 2 MiB")]
    [InlineData("02 000000 000004 01 00000000 00000000", "a chunk size of 0")]
    [InlineData("02 000000 000002 01 00000000 0000", "a Set Chunk Size of 2 bytes")]
    public void MalformedChunkStreamsAreRefused(string hex, string what)
    {
        var reader = new RtmpChunkReader();
        var data = Hex(hex);
        Assert.Throws<FormatException>(() => reader.TryReadChunk(data, out _, out _));
        _ = what;
    }

    [Fact]
    public void TheConnectCommandIsWrittenAsAmf0SaysByteForByte()
    {
        var buf = new byte[256];
        int n = RtmpCommand.Write(buf, "connect", 1, new List<KeyValuePair<string, object>> { new("app", "live"), new("fpad", false), new("audioCodecs", 3191) });
        Assert.Equal(Hex(
            "02 0007 636f6e6e656374" +                  // "connect"
            "00 3ff0000000000000" +                     // 1.0
            "03 0003 617070 02 0004 6c697665" +         // { app: "live"
            "0004 66706164 01 00" +                     //   fpad: false
            "000b 617564696f436f64656373 00 40a8ee0000000000" + // audioCodecs: 3191 }
            "000009"), buf[..n]);
        var back = RtmpCommand.Parse(buf.AsSpan(0, n));
        Assert.Equal("connect", back.Name);
        Assert.Equal(1, back.Transaction);
        var o = Assert.IsType<AmfValue.Object>(back.Args[0]);
        Assert.Equal("live", ((AmfValue.String)o["app"]!).Value);
        Assert.Equal(3191, ((AmfValue.Number)o["audioCodecs"]!).Value);
    }

    [Fact]
    public void AServersResultAndAnErrorStatusAreReadWithTheirCodes()
    {
        // _result(1, {fmsVer…}, {level: "status", code: "NetConnection.Connect.Success"}) as nginx-rtmp sends it.
        var buf = new byte[512];
        int n = RtmpCommand.Write(buf, "_result", 1, new List<KeyValuePair<string, object>> { new("fmsVer", "FMS/3,0,1,123"), new("capabilities", 31) },
            new List<KeyValuePair<string, object>> { new("level", "status"), new("code", "NetConnection.Connect.Success"), new("description", "Connection succeeded."), new("objectEncoding", 0) });
        var ok = RtmpCommand.Parse(buf.AsSpan(0, n));
        Assert.Equal("NetConnection.Connect.Success", ok.Code);
        Assert.Equal("status", ok.Level);
        n = RtmpCommand.Write(buf, "onStatus", 0, null, new List<KeyValuePair<string, object>> { new("level", "error"), new("code", "NetStream.Publish.BadName"), new("description", "Already publishing") });
        var bad = RtmpCommand.Parse(buf.AsSpan(0, n));
        Assert.Equal("onStatus NetStream.Publish.BadName: Already publishing", bad.Explain());
        Assert.Same(AmfValue.NullValue, bad.Args[0]);
    }

    [Fact]
    public void EcmaArraysStrictArraysLongStringsDatesAndUndefinedAreRead()
    {
        var body = Hex(
            "08 00000001 0001 61 00 4000000000000000 000009" +   // ECMA array { a: 2 }
            "0a 00000002 01 01 05" +                             // strict array [true, null]
            "0c 00000003 616263" +                               // long string "abc"
            "0b 4000000000000000 0000" +                         // date 2.0 ms, time zone 0
            "06");                                               // undefined
        var v = Amf0.ReadAll(body);
        Assert.Equal(2, ((AmfValue.Number)((AmfValue.Object)v[0])["a"]!).Value);
        Assert.Equal(2, ((AmfValue.Array)v[1]).Items.Count);
        Assert.Equal("abc", ((AmfValue.String)v[2]).Value);
        Assert.Equal(2, ((AmfValue.Number)v[3]).Value);
        Assert.Same(AmfValue.NullValue, v[4]);
    }

    [Theory]
    [InlineData("00 3ff00000", "a number cut short")]
    [InlineData("02 0010 6162", "a string longer than the message")]
    [InlineData("0d", "an unsupported type (AMF3 switch)")]
    [InlineData("03 0001 61 02 0001 62", "an object without its end")]
    [InlineData("0a ffffffff", "a strict array of 4 billion items")]
    [InlineData("03 0000 05", "an empty key not followed by the object end")]
    public void MalformedAmf0IsRefused(string hex, string what)
    {
        Assert.Throws<FormatException>(() => Amf0.ReadAll(Hex(hex)));
        _ = what;
    }

    [Fact]
    public void NestingPastSixteenLevelsIsRefused()
    {
        var body = new List<byte>();
        for (int i = 0; i < 20; i++) body.AddRange(Hex("03 0001 61"));
        Assert.Throws<FormatException>(() => Amf0.ReadAll(body.ToArray()));
    }

    [Fact]
    public void TheHandshakeSendsVersion3AndATimeAndRefusesAnotherVersion()
    {
        var c = new byte[1 + RtmpHandshake.Size];
        RtmpHandshake.WriteC0C1(c, 1234, new Random(1));
        Assert.Equal(3, c[0]);
        Assert.Equal(1234u, BinaryPrimitives.ReadUInt32BigEndian(c.AsSpan(1)));
        Assert.Equal(new byte[4], c[5..9]);
        RtmpHandshake.CheckS0(3);
        Assert.Contains("rtmps", Assert.Throws<FormatException>(() => RtmpHandshake.CheckS0(6)).Message);
        Assert.Throws<FormatException>(() => RtmpHandshake.CheckS0((byte)'H'));   // an HTTP server answering
    }

    /// <summary>The seeds of the fuzzer's rtmp and amf0 corpora: what nginx-rtmp sends after the handshake.</summary>
    [Fact]
    public void TheFuzzSeedsAreAServersFirstMessages()
    {
        var buf = new byte[2048];
        int n = 0;
        n += RtmpChunkWriter.WriteControl(buf.AsSpan(n), RtmpType.WindowAckSize, 5000000);
        n += RtmpChunkWriter.WriteControl(buf.AsSpan(n), RtmpType.SetChunkSize, 4096);
        var body = new byte[512];
        int b = RtmpCommand.Write(body, "_result", 1, new List<KeyValuePair<string, object>> { new("fmsVer", "FMS/3,0,1,123") },
            new List<KeyValuePair<string, object>> { new("level", "status"), new("code", "NetConnection.Connect.Success") });
        n += RtmpChunkWriter.Write(buf.AsSpan(n), 3, 0, RtmpType.CommandAmf0, 0, body.AsSpan(0, b), 4096);
        n += RtmpChunkWriter.WriteUserControl(buf.AsSpan(n), 6, 77);
        var seed = buf[..n];
        var reader = new RtmpChunkReader();
        int at = 0, messages = 0;
        while (at < seed.Length) { Assert.True(reader.TryReadChunk(seed.AsSpan(at), out int c, out var m)); at += c; if (m is not null) messages++; }
        Assert.Equal(4, messages);
        string corpus = Path.Combine(AppContext.BaseDirectory, "fuzz-corpus");
        Assert.Equal(seed, File.ReadAllBytes(Path.Combine(corpus, "rtmp", "nginx-connect")));
        Assert.Equal(body[..b], File.ReadAllBytes(Path.Combine(corpus, "amf0", "connect-result")));
    }
}
