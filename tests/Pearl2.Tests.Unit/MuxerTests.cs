using System.Buffers.Binary;
using Pearl2.Formats.Codecs;
using Pearl2.Formats.Flv;
using Pearl2.Formats.Ts;
using Xunit;

namespace Pearl2.Tests.Unit;

public class MuxerTests
{
    static readonly byte[] Sps = [0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80];
    static readonly byte[] Pps = [0x68, 0xce, 0x3c, 0x80];

    [Fact]
    public void FlvHeader()
    {
        var b = new byte[13];
        Assert.Equal(13, FlvWriter.WriteHeader(b, audio: true, video: true));
        Assert.Equal(new byte[] { 0x46, 0x4c, 0x56, 1, 5, 0, 0, 0, 9, 0, 0, 0, 0 }, b);
    }

    [Fact]
    public void FlvTagHeaderWithExtendedTimestampAndPreviousTagSize()
    {
        var b = new byte[11 + 2 + 4];
        b[11] = 0xaf; b[12] = 1;
        Assert.Equal(17, FlvWriter.CloseTag(b, FlvWriter.AudioTag, 2, 0x12345678));
        Assert.Equal(new byte[] { 8, 0, 0, 2, 0x34, 0x56, 0x78, 0x12, 0, 0, 0, 0xaf, 1, 0, 0, 0, 13 }, b);
    }

    [Fact]
    public void AvcDecoderConfigurationRecord()
    {
        var b = new byte[AvcDecoderConfig.Size(Sps.Length, Pps.Length)];
        Assert.Equal(b.Length, AvcDecoderConfig.Write(b, Sps, Pps));
        byte[] expected = [1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 7, .. Sps, 1, 0, 4, .. Pps];
        Assert.Equal(expected, b);
    }

    [Fact]
    public void AvcFrameTagUsesFourByteLengthsAndDropsParameterSets()
    {
        byte[] au = [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, .. Sps, 0, 0, 0, 1, .. Pps, 0, 0, 1, 0x65, 0x88, 0x84];
        var b = new byte[FlvWriter.MaxAvcFrameSize(au.Length)];
        int n = FlvWriter.WriteAvcFrame(b, au, keyFrame: true, timestampMs: 1000);
        Assert.Equal(new byte[] { 9, 0, 0, 12, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84, 0, 0, 0, 23 }, b[..n]);
    }

    [Fact]
    public void AacSequenceHeaderTag()
    {
        var b = new byte[32];
        int n = FlvWriter.WriteAac(b, AacConfig.AudioSpecificConfig(48000, 2), true, 0);
        Assert.Equal(new byte[] { 8, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0xaf, 0, 0x11, 0x90, 0, 0, 0, 15 }, b[..n]);
    }

    [Fact]
    public void MetaDataIsAmf0()
    {
        var b = new byte[256];
        int n = FlvWriter.WriteMetaData(b, [new("width", 1920), new("stereo", true)]);
        var body = b[11..(n - 4)];
        byte[] expected = [2, 0, 10, .. "onMetaData"u8.ToArray(), 8, 0, 0, 0, 2, 0, 5, .. "width"u8.ToArray(), 0, 0x40, 0x9e, 0, 0, 0, 0, 0, 0,
            0, 6, .. "stereo"u8.ToArray(), 1, 1, 0, 0, 9];
        Assert.Equal(expected, body);
    }

    [Fact]
    public void Crc32OfMpegPsi()
    {
        // The CRC of a section, appended to it, makes the CRC of the whole zero (the check decoders run).
        byte[] pat = [0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00];
        uint crc = Crc32Mpeg.Compute(pat);
        Assert.Equal(0x2ab104b2u, crc);
        Assert.Equal(0u, Crc32Mpeg.Compute([.. pat, (byte)(crc >> 24), (byte)(crc >> 16), (byte)(crc >> 8), (byte)crc]));
    }

    [Fact]
    public void PatAndPmtPackets()
    {
        var mux = new TsMuxer(audio: true);
        var b = new byte[2 * 188];
        Assert.Equal(376, mux.WriteTables(b));
        Assert.Equal(new byte[] { 0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x2a, 0xb1, 0x04, 0xb2 }, b[..21]);
        Assert.All(b[21..188], x => Assert.Equal(0xff, x));
        var pmt = b[188..];
        Assert.Equal(new byte[] { 0x47, 0x50, 0x00, 0x10, 0x00, 0x02, 0xb0, 0x17, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1, 0x00, 0xf0, 0x00, 0x1b, 0xe1, 0x00, 0xf0, 0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x00 }, pmt[..27]);
        Assert.Equal(0u, Crc32Mpeg.Compute(pmt[5..(5 + 3 + 0x17)]));
        mux.WriteTables(b);
        Assert.Equal(0x11, b[3]); // continuity counter advanced
    }

    [Fact]
    public void PesTimestampAndPcrEncoding()
    {
        var t = new byte[5];
        TsMuxer.WriteTimestamp(t, 2, 0x1_2345_6789);
        Assert.Equal(Expected(0x1_2345_6789, 2), t);
        var pcr = new byte[6];
        TsMuxer.WritePcr(pcr, 0x1_0000_0001);
        Assert.Equal(new byte[] { 0x80, 0x00, 0x00, 0x00, 0xfe, 0x00 }, pcr);
    }

    static byte[] Expected(long ts, int prefix) =>
    [
        (byte)((prefix << 4) | (int)(((ts >> 30) & 7) << 1) | 1),
        (byte)((ts >> 22) & 0xff),
        (byte)((((ts >> 15) & 0x7f) << 1) | 1),
        (byte)((ts >> 7) & 0xff),
        (byte)(((ts & 0x7f) << 1) | 1),
    ];

    [Fact]
    public void VideoPesStartsWithPcrAndRandomAccessAndAud()
    {
        var mux = new TsMuxer(audio: false);
        var au = new byte[500];
        au[0] = 0; au[1] = 0; au[2] = 0; au[3] = 1; au[4] = 0x65;
        var b = new byte[TsMuxer.MaxPesOutput(au.Length)];
        int n = mux.WriteVideo(b, au, pts90k: 90000, dts90k: 90000, keyFrame: true);
        Assert.Equal(0, n % 188);
        Assert.Equal(new byte[] { 0x47, 0x41, 0x00, 0x30, 7, 0x50 }, b[..6]);           // PUSI, PID 0x100, adaptation: RAI + PCR
        Assert.Equal(new byte[] { 0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5 }, b[12..21]);       // PES header, PTS only
        Assert.Equal(new byte[] { 0, 0, 0, 1, 0x09, 0xf0 }, b[26..32]);                 // AUD in front
        Assert.Equal(1, b[188 + 3] & 0x0f);                                              // next packet: continuity counter 1
        // Every packet is whole: the last one is padded with adaptation stuffing, never with payload garbage.
        for (int p = 0; p < n; p += 188) Assert.Equal(0x47, b[p]);
        int payloadBytes = 0;
        for (int p = 0; p < n; p += 188)
        {
            int afc = (b[p + 3] >> 4) & 3;
            int start = afc == 3 ? 5 + b[p + 4] : 4;
            payloadBytes += 188 - start;
        }
        Assert.Equal(14 + 6 + au.Length, payloadBytes);
    }

    [Fact]
    public void AdtsHeader()
    {
        var h = new byte[7];
        Adts.WriteHeader(h, 371, 48000, 2);
        Assert.Equal(new byte[] { 0xff, 0xf1, 0x4c, 0x80, 0x2f, 0x5f, 0xfc }, h);
    }
}
