namespace Pearl2.Formats.Rtp;

/// <summary>
/// MPEG-4 audio in RTP, mode AAC-hbr (RFC 3640 §3.3.6): a 16-bit AU-headers-length, one 16-bit AU-header
/// (13-bit size, 3-bit index), then the access unit. An access unit too big for one packet is fragmented
/// (§3.2.3): every fragment repeats the AU-header with the whole size; the marker is on the last.
/// </summary>
public static class AacPacketizer
{
    public const int AuHeaderSectionSize = 4;
    public const int SizeLength = 13, IndexLength = 3, IndexDeltaLength = 3;

    public static int MaxOutputSize(int auLength, int maxPayload, bool interleaved)
    {
        int packets = auLength / (maxPayload - AuHeaderSectionSize) + 1;
        return auLength + packets * (RtpPacketWriter.Overhead(interleaved) + AuHeaderSectionSize);
    }

    public static void Packetize(ReadOnlySpan<byte> au, int maxPayload, ref RtpPacketWriter writer)
    {
        if (au.Length >= 1 << SizeLength) throw new ArgumentException("AAC access unit larger than 8191 bytes", nameof(au));
        var rest = au;
        do
        {
            int n = Math.Min(maxPayload - AuHeaderSectionSize, rest.Length);
            bool end = n == rest.Length;
            var p = writer.Begin(end);
            WriteAuHeaderSection(p, au.Length);
            rest[..n].CopyTo(p[AuHeaderSectionSize..]);
            writer.End(AuHeaderSectionSize + n);
            rest = rest[n..];
        } while (!rest.IsEmpty);
    }

    public static void WriteAuHeaderSection(Span<byte> dest, int auSize)
    {
        dest[0] = 0; dest[1] = 16;                 // AU-headers-length in bits: one 16-bit header
        dest[2] = (byte)(auSize >> 5);             // AU-size (13 bits) ...
        dest[3] = (byte)((auSize & 0x1f) << 3);    // ... then AU-Index = 0 (3 bits)
    }
}
