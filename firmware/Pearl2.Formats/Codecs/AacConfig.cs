namespace Pearl2.Formats.Codecs;

/// <summary>MPEG-4 AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) for AAC-LC: 5-bit object type, 4-bit frequency index, 4-bit channels.</summary>
public static class AacConfig
{
    public const int AacLc = 2;
    static readonly int[] Rates = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

    public static int FrequencyIndex(int sampleRate)
    {
        int i = Array.IndexOf(Rates, sampleRate);
        if (i < 0) throw new ArgumentOutOfRangeException(nameof(sampleRate), sampleRate, "not an MPEG-4 audio sampling frequency");
        return i;
    }

    public static byte[] AudioSpecificConfig(int sampleRate, int channels, int objectType = AacLc)
    {
        int fi = FrequencyIndex(sampleRate);
        return [(byte)((objectType << 3) | (fi >> 1)), (byte)(((fi & 1) << 7) | (channels << 3))];
    }
}
