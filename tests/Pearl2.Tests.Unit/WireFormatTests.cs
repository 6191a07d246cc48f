using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Pearl2.Formats.Ext4;
using Pearl2.Formats.Http;
using Pearl2.Formats.Recording;
using Pearl2.Formats.Rtsp;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>Wire formats that moved out of the services, checked on bytes laid out by hand from their specifications.</summary>
public class WireFormatTests
{
    /// <summary>A superblock with the fields the kernel's ext4 documentation places at these offsets.</summary>
    static byte[] Superblock(uint blocksLo, uint logBlockSize, bool sixtyFourBit = false, uint blocksHi = 0, ushort magic = 0xEF53)
    {
        var sb = new byte[Ext4Superblock.Size];
        BinaryPrimitives.WriteUInt32LittleEndian(sb.AsSpan(0x04), blocksLo);       // s_blocks_count_lo
        BinaryPrimitives.WriteUInt32LittleEndian(sb.AsSpan(0x18), logBlockSize);   // s_log_block_size: block = 1024 << n
        BinaryPrimitives.WriteUInt16LittleEndian(sb.AsSpan(0x38), magic);          // s_magic
        if (sixtyFourBit) BinaryPrimitives.WriteUInt32LittleEndian(sb.AsSpan(0x60), 0x80 | 0x40 | 0x2);   // INCOMPAT_64BIT | EXTENTS | FILETYPE
        BinaryPrimitives.WriteUInt32LittleEndian(sb.AsSpan(0x150), blocksHi);     // s_blocks_count_hi (only read when 64-bit)
        return sb;
    }

    [Fact]
    public void Ext4SuperblockGivesTheFileSystemSize()
    {
        Assert.Equal(20L << 20, Ext4Superblock.FileSystemBytes(Superblock(5120, 2)));                       // 5120 blocks of 4 KiB
        Assert.Equal(8L << 20, Ext4Superblock.FileSystemBytes(Superblock(8192, 0)));                         // 1 KiB blocks
        Assert.Equal(((1L << 32) + 16) << 12, Ext4Superblock.FileSystemBytes(Superblock(16, 2, sixtyFourBit: true, blocksHi: 1)));
        Assert.Equal(16L << 12, Ext4Superblock.FileSystemBytes(Superblock(16, 2, blocksHi: 1)));             // hi ignored without 64BIT
        Assert.Null(Ext4Superblock.FileSystemBytes(Superblock(5120, 2, magic: 0x1234)));                     // not ext
        Assert.Null(Ext4Superblock.FileSystemBytes(Superblock(5120, 7)));                                    // 128 KiB blocks: out of range
        Assert.Null(Ext4Superblock.FileSystemBytes(Superblock(0, 2)));
        Assert.Null(Ext4Superblock.FileSystemBytes(Superblock(5120, 2).AsSpan(0, 1023)));                    // cut short
    }

    static ReadAt Over(byte[] file) => (offset, into) =>
    {
        if (offset >= file.Length) return 0;
        int n = (int)Math.Min(into.Length, file.Length - offset);
        file.AsSpan((int)offset, n).CopyTo(into);
        return n;
    };

    /// <summary>One 188-byte TS packet: sync, payload_unit_start_indicator as given, the PID, payload only.</summary>
    static byte[] Packet(int pid, bool start) =>
        [0x47, (byte)((start ? 0x40 : 0) | (pid >> 8)), (byte)pid, 0x10, .. new byte[184]];

    [Fact]
    public void TsPlaysUpToTheLastVideoAccessUnitAndItsTables()
    {
        const int Video = 0x100;
        byte[][] packets =
        [
            Packet(0, true), Packet(0x1000, true), Packet(Video, true), Packet(Video, false),   // PAT, PMT, access unit 1
            Packet(0, true), Packet(0x1000, true), Packet(Video, true), Packet(Video, false),   // tables, access unit 2
            Packet(Video, true), Packet(Video, false),                                          // access unit 3 (may be cut)
        ];
        var file = packets.SelectMany(p => p).ToArray();
        var scratch = new byte[188 * 3];   // smaller than the file: the walk reads in batches
        Assert.Equal(8 * 188, PlayablePrefix.Ts(Over(file), file.Length, scratch));
        Assert.Equal(4 * 188, PlayablePrefix.Ts(Over(file), 8 * 188 + 100, scratch));       // a torn packet after unit 2: unit 2 may be short too
        Assert.Equal(0, PlayablePrefix.Ts(Over(file), 4 * 188, scratch));                   // one access unit: nothing known complete
        file[7 * 188] = 0x00;                                                               // sync lost inside unit 2: unit 1 is what plays
        Assert.Equal(4 * 188, PlayablePrefix.Ts(Over(file), file.Length, scratch));
    }

    static byte[] Box(string type, int payload) => [.. BitConverter.GetBytes(BinaryPrimitives.ReverseEndianness(8 + payload)), .. System.Text.Encoding.ASCII.GetBytes(type), .. new byte[payload]];

    [Fact]
    public void Mp4PlaysUpToTheLastWholeFragment()
    {
        byte[] file = [.. Box("ftyp", 8), .. Box("moov", 20), .. Box("moof", 12), .. Box("mdat", 30), .. Box("moof", 12), .. Box("mdat", 30)];
        int one = 16 + 28 + 20 + 38;
        Assert.Equal(file.Length, PlayablePrefix.Mp4(Over(file), file.Length));
        Assert.Equal(one, PlayablePrefix.Mp4(Over(file), file.Length - 1));                  // the second mdat is cut
        Assert.Equal(one, PlayablePrefix.Mp4(Over(file), one + 20));                         // a moof without its mdat
        Assert.Equal(0, PlayablePrefix.Mp4(Over([.. Box("moov", 20), .. Box("moof", 12)]), 48)); // no ftyp first: not ours
        byte[] finished = [.. file, .. Box("mfra", 16)];
        Assert.Equal(finished.Length, PlayablePrefix.Mp4(Over(finished), finished.Length));
    }

    static (RtspParseStatus Status, HttpRequestHead? Head, long Consumed, string? Error) Http(string text)
    {
        var status = HttpRequestParser.TryParse(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(text)), out var head, out long consumed, out var error);
        return (status, head, consumed, error);
    }

    [Fact]
    public void HttpRequestHeadsAsRfc9112WritesThem()
    {
        // RFC 9112 §3.2's example request, as curl sends it.
        const string Example = "GET /hello.txt HTTP/1.1\r\nUser-Agent: curl/7.64.1\r\nHost: www.example.com\r\nAccept-Language: en, mi\r\n\r\n";
        var (status, head, consumed, _) = Http(Example + "body bytes are the caller's");
        Assert.Equal(RtspParseStatus.Complete, status);
        Assert.Equal(Example.Length, consumed);
        Assert.Equal(("GET", "/hello.txt", "HTTP/1.1", "/hello.txt"), (head!.Method, head.Uri, head.Version, head.Path));
        Assert.Equal("www.example.com", head["host"]);
        Assert.Equal("en, mi", head["Accept-Language"]);
        Assert.Equal(3, head.Headers.Count);

        // Absolute-form (RFC 9112 §3.2.2), a query, HTTP/1.0.
        (status, head, _, _) = Http("HEAD http://192.0.2.1:8000/stream.ts?token=a%2Bb&x HTTP/1.0\r\n\r\n");
        Assert.Equal(RtspParseStatus.Complete, status);
        Assert.Equal(("/stream.ts", "a+b", "", (string?)null), (head!.Path, head.Query("token"), head.Query("x"), head.Query("y")));

        Assert.Equal(RtspParseStatus.Incomplete, Http("GET / HTTP/1.1\r\nHost: d\r\n").Status);
        Assert.Equal(RtspParseStatus.TooLarge, Http("GET / HTTP/1.1\r\nX: " + new string('a', 9000)).Status);
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\nHost : d\r\n\r\n", "malformed header line")]               // whitespace before the colon (§5.1)
    [InlineData("GET / HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n", "malformed header line")]     // obs-fold (§5.2)
    [InlineData("GET / HTTP/2.0\r\n\r\n", "protocol is not HTTP/1.0 or HTTP/1.1")]
    [InlineData("DESCRIBE / RTSP/1.0\r\nCSeq: 1\r\n\r\n", "protocol is not HTTP/1.0 or HTTP/1.1")] // RTSP is not HTTP
    [InlineData("GET /\r\n\r\n", "request line is not 'METHOD TARGET HTTP/1.1'")]
    [InlineData("G(T / HTTP/1.1\r\n\r\n", "method is not a token")]
    [InlineData("GET /a b HTTP/1.1\r\n\r\n", "protocol is not HTTP/1.0 or HTTP/1.1")]
    public void MalformedHttpHeadsAreRefusedWithTheReason(string text, string reason)
    {
        var (status, _, consumed, error) = Http(text);
        Assert.Equal(RtspParseStatus.Malformed, status);
        Assert.Equal(reason, error);
        Assert.Equal(text.Length, consumed);   // the bad head is passed over whole
    }
}
