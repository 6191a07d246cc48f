using System.Buffers.Binary;
using System.Text;

namespace Pearl2.Formats.Rtp;

/// <summary>
/// A compound RTCP packet of a sender report with no report blocks (RFC 3550 §6.4.1) and an SDES with
/// the CNAME (§6.5), which every compound packet must carry.
/// </summary>
public readonly record struct RtcpSenderReport(uint Ssrc, ulong NtpTimestamp, uint RtpTimestamp, uint PacketCount, uint OctetCount, string Cname)
{
    public const int SenderReportSize = 28;

    public int Size => SenderReportSize + SdesSize;

    int SdesSize => (4 + 4 + 2 + Encoding.ASCII.GetByteCount(Cname) + 1 + 3) & ~3; // header, SSRC, item, END, pad to 32 bits

    public int WriteTo(Span<byte> dest)
    {
        dest[0] = 0x80; // V=2, P=0, RC=0
        dest[1] = 200;  // SR
        BinaryPrimitives.WriteUInt16BigEndian(dest[2..], SenderReportSize / 4 - 1);
        BinaryPrimitives.WriteUInt32BigEndian(dest[4..], Ssrc);
        BinaryPrimitives.WriteUInt64BigEndian(dest[8..], NtpTimestamp);
        BinaryPrimitives.WriteUInt32BigEndian(dest[16..], RtpTimestamp);
        BinaryPrimitives.WriteUInt32BigEndian(dest[20..], PacketCount);
        BinaryPrimitives.WriteUInt32BigEndian(dest[24..], OctetCount);

        var s = dest[SenderReportSize..];
        int sdes = SdesSize;
        s[..sdes].Clear();
        s[0] = 0x81; // V=2, SC=1
        s[1] = 202;  // SDES
        BinaryPrimitives.WriteUInt16BigEndian(s[2..], (ushort)(sdes / 4 - 1));
        BinaryPrimitives.WriteUInt32BigEndian(s[4..], Ssrc);
        s[8] = 1; // CNAME
        int n = Encoding.ASCII.GetBytes(Cname, s[10..]);
        s[9] = (byte)n;
        return SenderReportSize + sdes;
    }

    /// <summary>NTP format (RFC 5905): seconds since 1900 in the high 32 bits, fraction in the low 32.</summary>
    public static ulong ToNtp(DateTimeOffset time)
    {
        long ticks = time.UtcTicks - new DateTime(1900, 1, 1, 0, 0, 0, DateTimeKind.Utc).Ticks;
        ulong seconds = (ulong)(ticks / TimeSpan.TicksPerSecond);
        ulong fraction = (ulong)((ticks % TimeSpan.TicksPerSecond) * (1L << 32) / TimeSpan.TicksPerSecond);
        return (seconds << 32) | fraction;
    }
}
