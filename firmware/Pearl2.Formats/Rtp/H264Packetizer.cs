using Pearl2.Formats.Codecs;

namespace Pearl2.Formats.Rtp;

/// <summary>
/// H.264 RTP payload format, packetization-mode 1 (RFC 6184 §5.6–5.8): consecutive small NAL units that
/// fit together go in one STAP-A, a NAL unit that fits alone goes as a single NAL unit packet, a larger
/// one is split into FU-A fragments. The last packet of the access unit carries the marker bit.
/// </summary>
public static class H264Packetizer
{
    public const byte StapA = 24;
    public const byte FuA = 28;
    const int MaxNals = 128;

    /// <summary>Upper bound of the bytes <see cref="Packetize"/> writes for an access unit of <paramref name="auLength"/> bytes.</summary>
    public static int MaxOutputSize(int auLength, int maxPayload, bool interleaved)
    {
        int packets = auLength / (maxPayload - 2) + auLength / 4 + 2;
        return auLength + packets * RtpPacketWriter.Overhead(interleaved);
    }

    /// <summary>Packetizes one Annex-B access unit. Access unit delimiters are dropped (RFC 6184 allows it).</summary>
    public static void Packetize(ReadOnlySpan<byte> annexB, int maxPayload, ref RtpPacketWriter writer)
    {
        Span<int> starts = stackalloc int[MaxNals];
        Span<int> lengths = stackalloc int[MaxNals];
        int count = 0;
        var reader = new AnnexBReader(annexB);
        while (reader.TryNext(out int start, out int length))
        {
            if (length == 0 || (annexB[start] & 0x1f) == NalType.AccessUnitDelimiter) continue;
            if (count == MaxNals) throw new ArgumentException("access unit has more than 128 NAL units", nameof(annexB));
            starts[count] = start; lengths[count] = length; count++;
        }

        int i = 0;
        while (i < count)
        {
            // Greedy STAP-A: as many following NAL units as fit in one packet, at least two.
            int size = 1, j = i;
            while (j < count && size + 2 + lengths[j] <= maxPayload) { size += 2 + lengths[j]; j++; }
            if (j - i >= 2)
            {
                var p = writer.Begin(marker: j == count);
                int nri = 0, at = 1;
                for (int k = i; k < j; k++)
                {
                    var nal = annexB.Slice(starts[k], lengths[k]);
                    nri = Math.Max(nri, nal[0] & 0x60);
                    p[at] = (byte)(nal.Length >> 8);
                    p[at + 1] = (byte)nal.Length;
                    nal.CopyTo(p[(at + 2)..]);
                    at += 2 + nal.Length;
                }
                p[0] = (byte)(nri | StapA);
                writer.End(at);
                i = j;
                continue;
            }

            var unit = annexB.Slice(starts[i], lengths[i]);
            bool last = i == count - 1;
            if (unit.Length <= maxPayload)
            {
                var p = writer.Begin(last);
                unit.CopyTo(p);
                writer.End(unit.Length);
            }
            else
            {
                // FU-A: indicator (F|NRI|28), header (S|E|R|type), then the NAL unit without its header byte.
                byte indicator = (byte)((unit[0] & 0xe0) | FuA);
                byte type = (byte)(unit[0] & 0x1f);
                var rest = unit[1..];
                bool first = true;
                while (!rest.IsEmpty)
                {
                    int n = Math.Min(maxPayload - 2, rest.Length);
                    bool end = n == rest.Length;
                    var p = writer.Begin(last && end);
                    p[0] = indicator;
                    p[1] = (byte)((first ? 0x80 : 0) | (end ? 0x40 : 0) | type);
                    rest[..n].CopyTo(p[2..]);
                    writer.End(n + 2);
                    rest = rest[n..];
                    first = false;
                }
            }
            i++;
        }
    }
}
