using Pearl2.Formats.Codecs;
using Pearl2.Formats.Rtp;
using Pearl2.Formats.Sdp;
using Xunit;

namespace Pearl2.Tests.Unit;

public class RtpTests
{
    static readonly byte[] Sps = [0x67, 0xf4, 0x00, 0x28, 0x91, 0x96, 0x80, 0x78, 0x02, 0x27, 0xe2, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x8f, 0x18, 0x32, 0xa0];
    static readonly byte[] Pps = [0x68, 0xce, 0x0f, 0x19, 0x20];

    [Fact]
    public void HeaderBytes()
    {
        var b = new byte[12];
        Assert.Equal(12, new RtpHeader(true, 96, 0x1234, 0xdeadbeef, 0x01020304).WriteTo(b));
        Assert.Equal(new byte[] { 0x80, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04 }, b);
        Assert.True(RtpHeader.TryParse(b, out var h, out int n));
        Assert.Equal((true, (byte)96, (ushort)0x1234, 0xdeadbeefu, 0x01020304u, 12), (h.Marker, h.PayloadType, h.SequenceNumber, h.Timestamp, h.Ssrc, n));
    }

    [Fact]
    public void HeaderParseSkipsCsrcAndExtension()
    {
        byte[] b = [0x91, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, /*csrc*/ 9, 9, 9, 9, /*ext*/ 0xbe, 0xde, 0, 1, 1, 2, 3, 4, /*payload*/ 0xaa];
        Assert.True(RtpHeader.TryParse(b, out var h, out int n));
        Assert.Equal(24, n);
        Assert.False(h.Marker);
        Assert.False(RtpHeader.TryParse(b.AsSpan(0, 20), out _, out _));
    }

    static byte[] AnnexB(params byte[][] nals) => nals.SelectMany(n => new byte[] { 0, 0, 0, 1 }.Concat(n)).ToArray();

    static List<byte[]> Packets(byte[] buffer, int written, bool interleaved)
    {
        var list = new List<byte[]>();
        int at = 0;
        while (at < written)
        {
            Assert.True(interleaved);
            Assert.Equal((byte)'$', buffer[at]);
            int len = buffer[at + 2] << 8 | buffer[at + 3];
            list.Add(buffer.AsSpan(at + 4, len).ToArray());
            at += 4 + len;
        }
        Assert.Equal(written, at);
        return list;
    }

    [Fact]
    public void StapAThenFuA()
    {
        var idr = new byte[300];
        idr[0] = 0x65;
        for (int i = 1; i < idr.Length; i++) idr[i] = (byte)i;
        var au = AnnexB([0x09, 0xf0], Sps, Pps, idr); // the AUD is dropped
        var buf = new byte[H264Packetizer.MaxOutputSize(au.Length, 100, true)];
        var w = new RtpPacketWriter(buf, true, 0, 96, 0x11223344, 65534, 9000);
        H264Packetizer.Packetize(au, 100, ref w);
        var packets = Packets(buf, w.Written, true);
        Assert.Equal(5, packets.Count);
        Assert.Equal(5, w.Packets);
        Assert.Equal((ushort)3, w.NextSequence); // wrapped past 65535

        // STAP-A (RFC 6184 §5.7.1): F|NRI(max)|24, then 16-bit size + NAL for SPS and PPS; no marker.
        var stap = packets[0];
        Assert.Equal(new byte[] { 0x80, 96, 0xff, 0xfe, 0, 0, 0x23, 0x28, 0x11, 0x22, 0x33, 0x44 }, stap[..12]);
        byte[] stapPayload = [0x78, 0, (byte)Sps.Length, .. Sps, 0, (byte)Pps.Length, .. Pps];
        Assert.Equal(stapPayload, stap[12..]);

        // FU-A (§5.8): indicator 0x7C (NRI 3, type 28), header S=0x85 … E=0x45; 98 + 98 + 98 + 5 bytes.
        Assert.Equal(new byte[] { 0x7c, 0x85 }, packets[1][12..14]);
        Assert.Equal(idr[1..99], packets[1][14..]);
        Assert.Equal(new byte[] { 0x7c, 0x05 }, packets[2][12..14]);
        Assert.Equal(idr[99..197], packets[2][14..]);
        Assert.Equal(new byte[] { 0x7c, 0x05 }, packets[3][12..14]);
        Assert.Equal(new byte[] { 0x7c, 0x45 }, packets[4][12..14]);
        Assert.Equal(idr[295..], packets[4][14..]);
        Assert.All(packets.Take(4), p => Assert.Equal(0, p[1] & 0x80));
        Assert.Equal(0x80, packets[4][1] & 0x80); // marker on the last packet of the access unit
        Assert.Equal(new ushort[] { 65534, 65535, 0, 1, 2 }, packets.Select(p => (ushort)(p[2] << 8 | p[3])).ToArray());
    }

    [Fact]
    public void SmallNalAloneIsASingleNalUnitPacketWithMarker()
    {
        byte[] slice = [0x41, 0x9a, 0x02, 0x03];
        var au = AnnexB(slice);
        var buf = new byte[H264Packetizer.MaxOutputSize(au.Length, 1400, true)];
        var w = new RtpPacketWriter(buf, true, 0, 96, 1, 10, 0);
        H264Packetizer.Packetize(au, 1400, ref w);
        var p = Assert.Single(Packets(buf, w.Written, true));
        Assert.Equal(0x80 | 96, p[1]);
        Assert.Equal(slice, p[12..]);
    }

    [Fact]
    public void AacAuHeaderSection()
    {
        // RFC 3640 §3.2.1: AU-headers-length = 16 bits; AU-size 341 in 13 bits, AU-Index 0 in 3 bits.
        var au = Enumerable.Range(0, 341).Select(i => (byte)i).ToArray();
        var buf = new byte[AacPacketizer.MaxOutputSize(au.Length, 1400, true)];
        var w = new RtpPacketWriter(buf, true, 2, 97, 5, 7, 1024);
        AacPacketizer.Packetize(au, 1400, ref w);
        var p = Assert.Single(Packets(buf, w.Written, true));
        Assert.Equal(new byte[] { 0x80, 0x80 | 97, 0, 7, 0, 0, 4, 0, 0, 0, 0, 5 }, p[..12]);
        Assert.Equal(new byte[] { 0x00, 0x10, 0x0a, 0xa8 }, p[12..16]);
        Assert.Equal(au, p[16..]);
        Assert.Equal(2, buf[1]); // interleaved channel
    }

    [Fact]
    public void AacFragmentsCarryTheWholeSizeAndMarkerOnTheLast()
    {
        var au = new byte[500];
        var buf = new byte[AacPacketizer.MaxOutputSize(au.Length, 204, true)];
        var w = new RtpPacketWriter(buf, true, 2, 97, 5, 0, 0);
        AacPacketizer.Packetize(au, 204, ref w);
        var ps = Packets(buf, w.Written, true);
        Assert.Equal(3, ps.Count);
        Assert.All(ps, p => Assert.Equal(new byte[] { 0x00, 0x10, 0x0f, 0xa0 }, p[12..16]));
        Assert.Equal(new[] { 0, 0, 0x80 }, ps.Select(p => p[1] & 0x80));
        Assert.Equal(500, ps.Sum(p => p.Length - 16));
    }

    [Fact]
    public void AudioSpecificConfigForAacLc48kStereo() => Assert.Equal(new byte[] { 0x11, 0x90 }, AacConfig.AudioSpecificConfig(48000, 2));

    [Fact]
    public void SenderReportBytes()
    {
        var sr = new RtcpSenderReport(0x01020304, 0x0102030405060708, 0x0a0b0c0d, 5, 1000, "ab");
        var b = new byte[sr.Size];
        Assert.Equal(44, sr.WriteTo(b));
        Assert.Equal(new byte[]
        {
            0x80, 200, 0, 6, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 5, 0, 0, 0x03, 0xe8,
            0x81, 202, 0, 3, 1, 2, 3, 4, 1, 2, (byte)'a', (byte)'b', 0, 0, 0, 0,
        }, b);
    }

    [Fact]
    public void NtpTimestamps()
    {
        Assert.Equal(0x83aa7e80UL << 32, RtcpSenderReport.ToNtp(DateTimeOffset.UnixEpoch));
        Assert.Equal((0x83aa7e80UL << 32) + 0x80000000UL, RtcpSenderReport.ToNtp(DateTimeOffset.UnixEpoch.AddMilliseconds(500)));
    }

    [Fact]
    public void SpsGivesSizeAndProfileLevelId()
    {
        Assert.True(H264Sps.TryParse(Sps, out var sps));
        Assert.Equal((1920, 1080), (sps.Width, sps.Height));
        Assert.Equal("F40028", sps.ProfileLevelId);
        Assert.False(H264Sps.TryParse(Pps, out _));
        Assert.False(H264Sps.TryParse([0x67, 0x42], out _));
    }

    [Fact]
    public void AnnexBReaderFindsThreeAndFourByteStartCodes()
    {
        byte[] data = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 0, 0, 2, 9];
        var nals = new List<byte[]>();
        foreach (var n in new AnnexBReader(data)) nals.Add(n.ToArray());
        Assert.Equal(3, nals.Count);
        Assert.Equal(new byte[] { 0x67, 1, 2 }, nals[0]);
        Assert.Equal(new byte[] { 0x68, 3 }, nals[1]);
        Assert.Equal(new byte[] { 0x65, 0, 0, 2, 9 }, nals[2]);
    }

    [Fact]
    public void SdpForH264AndAac()
    {
        var sdp = SessionDescription.Write(42, "192.0.2.1", "Channel 1",
        [
            SessionDescription.H264(96, Sps, Pps, "trackID=0"),
            SessionDescription.Aac(97, 48000, 2, AacConfig.AudioSpecificConfig(48000, 2), "trackID=1"),
        ]);
        Assert.Equal(
            "v=0\r\no=- 42 1 IN IP4 192.0.2.1\r\ns=Channel 1\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=tool:pearl2d\r\na=range:npt=now-\r\na=control:*\r\n" +
            "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" +
            "a=fmtp:96 packetization-mode=1;profile-level-id=F40028;sprop-parameter-sets=Z/QAKJGWgHgCJ+JwEQAAAwABAAADADyPGDKg,aM4PGSA=\r\n" +
            "a=control:trackID=0\r\n" +
            "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 mpeg4-generic/48000/2\r\n" +
            "a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\n" +
            "a=control:trackID=1\r\n", sdp);
    }
}
