using System.Buffers.Binary;

namespace Pearl2.Formats.Codecs;

/// <summary>AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.2.4.1): 4-byte NAL lengths, one SPS, one PPS. FLV and MP4 carry the same bytes.</summary>
public static class AvcDecoderConfig
{
    public static int Size(int spsLength, int ppsLength) => 11 + spsLength + ppsLength;

    public static int Write(Span<byte> dest, ReadOnlySpan<byte> sps, ReadOnlySpan<byte> pps)
    {
        dest[0] = 1;
        dest[1] = sps[1]; dest[2] = sps[2]; dest[3] = sps[3];
        dest[4] = 0xff;                      // reserved 6 bits + lengthSizeMinusOne = 3
        dest[5] = 0xe1;                      // reserved 3 bits + one SPS
        BinaryPrimitives.WriteUInt16BigEndian(dest[6..], (ushort)sps.Length);
        sps.CopyTo(dest[8..]);
        int at = 8 + sps.Length;
        dest[at] = 1;                        // one PPS
        BinaryPrimitives.WriteUInt16BigEndian(dest[(at + 1)..], (ushort)pps.Length);
        pps.CopyTo(dest[(at + 3)..]);
        return at + 3 + pps.Length;
    }
}

/// <summary>Access units in the length-prefixed form of ISO/IEC 14496-15 (what FLV and MP4 samples hold).</summary>
public static class Avcc
{
    /// <summary>Upper bound of <see cref="FromAnnexB"/>'s output: a 3-byte start code can become a 4-byte length.</summary>
    public static int MaxSize(int annexBLength) => annexBLength + annexBLength / 3 + 8;

    /// <summary>Start codes become 4-byte lengths; AUDs, SPS and PPS are left out (the container's decoder configuration has them).</summary>
    public static int FromAnnexB(Span<byte> dest, ReadOnlySpan<byte> annexB)
    {
        int at = 0;
        foreach (var nal in new AnnexBReader(annexB))
        {
            if (nal.IsEmpty) continue;
            int type = nal[0] & 0x1f;
            if (type is NalType.AccessUnitDelimiter or NalType.Sps or NalType.Pps) continue;
            BinaryPrimitives.WriteUInt32BigEndian(dest[at..], (uint)nal.Length);
            nal.CopyTo(dest[(at + 4)..]);
            at += 4 + nal.Length;
        }
        return at;
    }
}
