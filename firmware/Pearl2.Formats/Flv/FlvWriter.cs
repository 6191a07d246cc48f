using System.Buffers.Binary;
using System.Text;
using Pearl2.Formats.Codecs;

namespace Pearl2.Formats.Flv;

/// <summary>
/// FLV (Adobe Flash Video File Format Specification v10.1, E.2–E.4): the file header, tags with their
/// PreviousTagSize, AVC video (codec 7) and AAC audio (sound format 10) with their sequence headers, and
/// an onMetaData script tag. Pure code: every method writes into a span and returns the bytes written.
/// </summary>
public static class FlvWriter
{
    public const int HeaderSize = 9 + 4;          // header + PreviousTagSize0
    public const int TagHeaderSize = 11, TagTrailerSize = 4;
    public const byte AudioTag = 8, VideoTag = 9, ScriptTag = 18;

    /// <summary>"FLV", version 1, audio/video flags, header size 9, then PreviousTagSize0 = 0.</summary>
    public static int WriteHeader(Span<byte> dest, bool audio, bool video)
    {
        "FLV"u8.CopyTo(dest);
        dest[3] = 1;
        dest[4] = (byte)((audio ? 4 : 0) | (video ? 1 : 0));
        BinaryPrimitives.WriteUInt32BigEndian(dest[5..], 9);
        BinaryPrimitives.WriteUInt32BigEndian(dest[9..], 0);
        return HeaderSize;
    }

    /// <summary>Tag header: type, 24-bit data size, 24-bit timestamp + 8-bit extension (ms), stream id 0.</summary>
    public static void WriteTagHeader(Span<byte> dest, byte type, int dataSize, uint timestampMs)
    {
        dest[0] = type;
        dest[1] = (byte)(dataSize >> 16); dest[2] = (byte)(dataSize >> 8); dest[3] = (byte)dataSize;
        dest[4] = (byte)(timestampMs >> 16); dest[5] = (byte)(timestampMs >> 8); dest[6] = (byte)timestampMs;
        dest[7] = (byte)(timestampMs >> 24);
        dest[8] = dest[9] = dest[10] = 0;
    }

    /// <summary>Writes a whole tag around a body the caller has already put at dest[11..11+dataSize]; returns the tag's full size.</summary>
    public static int CloseTag(Span<byte> dest, byte type, int dataSize, uint timestampMs)
    {
        WriteTagHeader(dest, type, dataSize, timestampMs);
        BinaryPrimitives.WriteUInt32BigEndian(dest[(TagHeaderSize + dataSize)..], (uint)(TagHeaderSize + dataSize));
        return TagHeaderSize + dataSize + TagTrailerSize;
    }

    /// <summary>The AVC sequence header tag (frame type 1, codec 7, AVCPacketType 0).</summary>
    public static int WriteAvcSequenceHeader(Span<byte> dest, ReadOnlySpan<byte> sps, ReadOnlySpan<byte> pps)
    {
        var body = dest[TagHeaderSize..];
        body[0] = 0x17; body[1] = 0; body[2] = body[3] = body[4] = 0;
        int n = 5 + AvcDecoderConfig.Write(body[5..], sps, pps);
        return CloseTag(dest, VideoTag, n, 0);
    }

    /// <summary>Upper bound of <see cref="WriteAvcFrame"/>'s output for an Annex-B access unit of this length.</summary>
    public static int MaxAvcFrameSize(int annexBLength) => TagHeaderSize + 5 + annexBLength + annexBLength / 3 + 16 + TagTrailerSize;

    /// <summary>One access unit as an AVC NALU tag: Annex-B start codes become 4-byte lengths; AUDs, SPS and PPS are left out (they are in the sequence header).</summary>
    public static int WriteAvcFrame(Span<byte> dest, ReadOnlySpan<byte> annexB, bool keyFrame, uint timestampMs, int compositionMs = 0)
    {
        var body = dest[TagHeaderSize..];
        body[0] = (byte)((keyFrame ? 0x10 : 0x20) | 7);
        body[1] = 1;
        body[2] = (byte)(compositionMs >> 16); body[3] = (byte)(compositionMs >> 8); body[4] = (byte)compositionMs;
        int at = 5 + Avcc.FromAnnexB(body[5..], annexB);
        return CloseTag(dest, VideoTag, at, timestampMs);
    }

    /// <summary>AAC audio tag: 0xAF (AAC, 44 kHz flag, 16 bit, stereo: fixed for AAC by the spec), AACPacketType 0 = config, 1 = raw.</summary>
    public static int WriteAac(Span<byte> dest, ReadOnlySpan<byte> payload, bool config, uint timestampMs)
    {
        var body = dest[TagHeaderSize..];
        body[0] = 0xaf;
        body[1] = (byte)(config ? 0 : 1);
        payload.CopyTo(body[2..]);
        return CloseTag(dest, AudioTag, 2 + payload.Length, timestampMs);
    }

    /// <summary>onMetaData (E.5, AMF0): a string and an ECMA array of numbers and booleans.</summary>
    public static int WriteMetaData(Span<byte> dest, IReadOnlyList<KeyValuePair<string, object>> properties)
    {
        var body = dest[TagHeaderSize..];
        int at = 0;
        at += AmfString(body[at..], "onMetaData");
        body[at++] = 8; // ECMA array
        BinaryPrimitives.WriteUInt32BigEndian(body[at..], (uint)properties.Count);
        at += 4;
        foreach (var (key, value) in properties)
        {
            at += AmfKey(body[at..], key);
            switch (value)
            {
                case bool b: body[at++] = 1; body[at++] = (byte)(b ? 1 : 0); break;
                case string s: at += AmfString(body[at..], s); break;
                default:
                    body[at++] = 0;
                    BinaryPrimitives.WriteDoubleBigEndian(body[at..], Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture));
                    at += 8;
                    break;
            }
        }
        body[at++] = 0; body[at++] = 0; body[at++] = 9; // object end
        return CloseTag(dest, ScriptTag, at, 0);
    }

    static int AmfKey(Span<byte> dest, string key)
    {
        int n = Encoding.UTF8.GetBytes(key, dest[2..]);
        BinaryPrimitives.WriteUInt16BigEndian(dest, (ushort)n);
        return 2 + n;
    }

    static int AmfString(Span<byte> dest, string s)
    {
        dest[0] = 2;
        return 1 + AmfKey(dest[1..], s);
    }
}
