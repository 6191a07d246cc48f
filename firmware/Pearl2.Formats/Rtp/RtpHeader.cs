using System.Buffers.Binary;

namespace Pearl2.Formats.Rtp;

/// <summary>The fixed 12-byte RTP header (RFC 3550 §5.1); we never send CSRCs or extensions.</summary>
public readonly record struct RtpHeader(bool Marker, byte PayloadType, ushort SequenceNumber, uint Timestamp, uint Ssrc)
{
    public const int Size = 12;

    public int WriteTo(Span<byte> dest)
    {
        dest[0] = 0x80; // V=2, P=0, X=0, CC=0
        dest[1] = (byte)((Marker ? 0x80 : 0) | (PayloadType & 0x7f));
        BinaryPrimitives.WriteUInt16BigEndian(dest[2..], SequenceNumber);
        BinaryPrimitives.WriteUInt32BigEndian(dest[4..], Timestamp);
        BinaryPrimitives.WriteUInt32BigEndian(dest[8..], Ssrc);
        return Size;
    }

    /// <summary>Parses the header and skips CSRCs and the extension; <paramref name="consumed"/> is where the payload starts.</summary>
    public static bool TryParse(ReadOnlySpan<byte> src, out RtpHeader header, out int consumed)
    {
        header = default; consumed = 0;
        if (src.Length < Size || (src[0] >> 6) != 2) return false;
        int cc = src[0] & 0x0f;
        int len = Size + cc * 4;
        if (src.Length < len) return false;
        if ((src[0] & 0x10) != 0)
        {
            if (src.Length < len + 4) return false;
            len += 4 + BinaryPrimitives.ReadUInt16BigEndian(src[(len + 2)..]) * 4;
            if (src.Length < len) return false;
        }
        header = new RtpHeader((src[1] & 0x80) != 0, (byte)(src[1] & 0x7f),
            BinaryPrimitives.ReadUInt16BigEndian(src[2..]), BinaryPrimitives.ReadUInt32BigEndian(src[4..]),
            BinaryPrimitives.ReadUInt32BigEndian(src[8..]));
        consumed = len;
        return true;
    }
}

/// <summary>
/// Writes RTP packets back to back into one buffer, each optionally framed for RTSP interleaving
/// ('$' channel length). Keeps the track's sequence number running.
/// </summary>
public ref struct RtpPacketWriter
{
    readonly Span<byte> _dest;
    readonly bool _interleaved;
    readonly byte _channel;
    readonly byte _payloadType;
    readonly uint _ssrc;
    readonly uint _timestamp;
    int _pos;
    int _packetStart;
    bool _marker;

    public ushort NextSequence { get; private set; }
    public int Written => _pos;
    public int Packets { get; private set; }

    public RtpPacketWriter(Span<byte> dest, bool interleaved, byte channel, byte payloadType, uint ssrc, ushort firstSequence, uint timestamp)
    {
        _dest = dest; _interleaved = interleaved; _channel = channel; _payloadType = payloadType;
        _ssrc = ssrc; NextSequence = firstSequence; _timestamp = timestamp;
    }

    public static int Overhead(bool interleaved) => RtpHeader.Size + (interleaved ? 4 : 0);

    /// <summary>Starts a packet and returns the space for its payload; finish with <see cref="End"/>.</summary>
    public Span<byte> Begin(bool marker)
    {
        _packetStart = _pos;
        _marker = marker;
        _pos += Overhead(_interleaved);
        return _dest[_pos..];
    }

    public void End(int payloadLength)
    {
        int headerAt = _packetStart + (_interleaved ? 4 : 0);
        new RtpHeader(_marker, _payloadType, NextSequence, _timestamp, _ssrc).WriteTo(_dest[headerAt..]);
        if (_interleaved) Rtsp.InterleavedFrame.WriteHeader(_dest[_packetStart..], _channel, RtpHeader.Size + payloadLength);
        _pos = headerAt + RtpHeader.Size + payloadLength;
        NextSequence++;
        Packets++;
    }
}
