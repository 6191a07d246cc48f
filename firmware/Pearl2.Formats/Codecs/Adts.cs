namespace Pearl2.Formats.Codecs;

/// <summary>The 7-byte ADTS header (ISO/IEC 13818-7 §6.2 / 14496-3 §1.A.2) in front of a raw AAC-LC frame, no CRC.</summary>
public static class Adts
{
    public const int HeaderSize = 7;

    public static void WriteHeader(Span<byte> dest, int rawLength, int sampleRate, int channels)
    {
        int fi = AacConfig.FrequencyIndex(sampleRate);
        int frame = rawLength + HeaderSize;
        dest[0] = 0xff;
        dest[1] = 0xf1;                                               // MPEG-4, layer 0, no CRC
        dest[2] = (byte)(((AacConfig.AacLc - 1) << 6) | (fi << 2) | (channels >> 2));
        dest[3] = (byte)(((channels & 3) << 6) | (frame >> 11));
        dest[4] = (byte)(frame >> 3);
        dest[5] = (byte)(((frame & 7) << 5) | 0x1f);                  // buffer fullness 0x7FF (VBR)
        dest[6] = 0xfc;                                               // ... and one raw data block
    }
}
