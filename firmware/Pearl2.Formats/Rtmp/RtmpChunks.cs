using System.Buffers.Binary;

namespace Pearl2.Formats.Rtmp;

/// <summary>RTMP message type ids (Adobe RTMP specification 1.0, §5.4 and §7.1).</summary>
public static class RtmpType
{
    public const byte SetChunkSize = 1, Abort = 2, Acknowledgement = 3, UserControl = 4, WindowAckSize = 5, SetPeerBandwidth = 6,
        Audio = 8, Video = 9, DataAmf3 = 15, CommandAmf3 = 17, DataAmf0 = 18, CommandAmf0 = 20;
}

/// <summary>One whole message from the chunk stream: its type, stream id, timestamp (ms) and payload.</summary>
public sealed record RtmpMessage(byte Type, uint StreamId, uint Timestamp, byte[] Payload);

/// <summary>
/// Writes messages as chunks (RTMP 1.0 §5.3): the first chunk with a type-0 header (absolute timestamp, length, type,
/// stream id), the rest with type-3 headers; a timestamp of 0xFFFFFF or more goes in the extended timestamp field, which
/// then follows every chunk header of the message (as Flash and FFmpeg write it). Type-0 on every message costs 11 bytes
/// per message and keeps no state that a lost write could get out of step with.
/// </summary>
public static class RtmpChunkWriter
{
    public const int DefaultChunkSize = 128, MaxChunkSize = 0x7fffffff;

    static int BasicHeaderSize(int csid) => csid < 64 ? 1 : csid < 320 ? 2 : 3;

    /// <summary>The most bytes <see cref="Write"/> can produce for a payload of this length.</summary>
    public static int MaxSize(int payloadLength, int chunkSize, int csid = 63)
    {
        int chunks = Math.Max(1, (payloadLength + chunkSize - 1) / chunkSize);
        return BasicHeaderSize(csid) + 11 + 4 + payloadLength + (chunks - 1) * (BasicHeaderSize(csid) + 4);
    }

    static int WriteBasicHeader(Span<byte> d, int fmt, int csid)
    {
        if (csid is < 2 or > 65599) throw new ArgumentOutOfRangeException(nameof(csid), "chunk stream ids run from 2 to 65599");
        if (csid < 64) { d[0] = (byte)(fmt << 6 | csid); return 1; }
        if (csid < 320) { d[0] = (byte)(fmt << 6); d[1] = (byte)(csid - 64); return 2; }
        d[0] = (byte)(fmt << 6 | 1);
        d[1] = (byte)((csid - 64) & 0xff); d[2] = (byte)((csid - 64) >> 8);
        return 3;
    }

    /// <summary>Writes one message as chunks of <paramref name="chunkSize"/>; returns the bytes written.</summary>
    public static int Write(Span<byte> d, int csid, uint timestamp, byte type, uint streamId, ReadOnlySpan<byte> payload, int chunkSize)
    {
        bool extended = timestamp >= 0xffffff;
        int at = WriteBasicHeader(d, 0, csid);
        uint ts = extended ? 0xffffff : timestamp;
        d[at] = (byte)(ts >> 16); d[at + 1] = (byte)(ts >> 8); d[at + 2] = (byte)ts;
        d[at + 3] = (byte)(payload.Length >> 16); d[at + 4] = (byte)(payload.Length >> 8); d[at + 5] = (byte)payload.Length;
        d[at + 6] = type;
        BinaryPrimitives.WriteUInt32LittleEndian(d[(at + 7)..], streamId);   // the one little-endian field of RTMP
        at += 11;
        if (extended) { BinaryPrimitives.WriteUInt32BigEndian(d[at..], timestamp); at += 4; }
        int sent = 0;
        while (true)
        {
            int n = Math.Min(chunkSize, payload.Length - sent);
            payload.Slice(sent, n).CopyTo(d[at..]);
            at += n; sent += n;
            if (sent == payload.Length) return at;
            at += WriteBasicHeader(d[at..], 3, csid);
            if (extended) { BinaryPrimitives.WriteUInt32BigEndian(d[at..], timestamp); at += 4; }
        }
    }

    /// <summary>A protocol control message (chunk stream 2, message stream 0) with a 4-byte big-endian value: Set Chunk Size, Acknowledgement, Window Acknowledgement Size.</summary>
    public static int WriteControl(Span<byte> d, byte type, uint value)
    {
        Span<byte> body = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(body, value);
        return Write(d, 2, 0, type, 0, body, DefaultChunkSize);
    }

    /// <summary>User Control (type 4, §7.1.7): an event type and its 4-byte data (a ping's timestamp, a stream id).</summary>
    public static int WriteUserControl(Span<byte> d, ushort eventType, uint data)
    {
        Span<byte> body = stackalloc byte[6];
        BinaryPrimitives.WriteUInt16BigEndian(body, eventType);
        BinaryPrimitives.WriteUInt32BigEndian(body[2..], data);
        return Write(d, 2, 0, RtmpType.UserControl, 0, body, DefaultChunkSize);
    }
}

/// <summary>
/// Reads the chunk stream a server sends (RTMP 1.0 §5.3): basic headers of 1 to 3 bytes, message headers of type 0 to
/// 3 with the state each chunk stream carries over, extended timestamps, messages interleaved across chunk streams, and
/// the server's Set Chunk Size applied as it arrives. Bounded: a message of more than <see cref="MaxMessageSize"/>
/// bytes, a chunk size outside 1 to 16 MiB, more than 64 chunk streams in use, or a type-1/2/3 header on a chunk stream
/// that never had a type 0 is malformed and throws <see cref="FormatException"/>.
/// </summary>
public sealed class RtmpChunkReader
{
    public const int MaxMessageSize = 1 << 20, MaxChunkStreams = 64;

    sealed class Stream
    {
        public uint Timestamp, Delta, Length, StreamId;
        public byte Type;
        public bool Extended, Started;
        public byte[]? Buffer;
        public int Filled;
    }

    readonly Dictionary<int, Stream> _streams = new();

    /// <summary>The size of the chunks the peer sends (its Set Chunk Size changes it).</summary>
    public int ChunkSize { get; private set; } = RtmpChunkWriter.DefaultChunkSize;

    /// <summary>
    /// Takes one chunk from the start of <paramref name="buffer"/> when it is all there: <paramref name="consumed"/> is
    /// its length (0: more bytes are needed), and <paramref name="message"/> is set when it completed a message.
    /// </summary>
    public bool TryReadChunk(ReadOnlySpan<byte> buffer, out int consumed, out RtmpMessage? message)
    {
        consumed = 0; message = null;
        if (buffer.Length < 1) return false;
        int fmt = buffer[0] >> 6, csid = buffer[0] & 0x3f, at = 1;
        if (csid == 0) { if (buffer.Length < 2) return false; csid = 64 + buffer[1]; at = 2; }
        else if (csid == 1) { if (buffer.Length < 3) return false; csid = 64 + buffer[1] + buffer[2] * 256; at = 3; }
        int headerSize = fmt switch { 0 => 11, 1 => 7, 2 => 3, _ => 0 };
        if (buffer.Length < at + headerSize) return false;
        if (!_streams.TryGetValue(csid, out var s))
        {
            if (_streams.Count == MaxChunkStreams) throw new FormatException($"RTMP: more than {MaxChunkStreams} chunk streams");
            s = new Stream();
        }
        if (fmt != 0 && !s.Started) throw new FormatException($"RTMP: a type-{fmt} chunk header on chunk stream {csid}, which has had no type 0");
        var h = buffer.Slice(at, headerSize);
        uint field = headerSize > 0 ? (uint)(h[0] << 16 | h[1] << 8 | h[2]) : 0;
        bool extended = fmt == 3 ? s.Extended : field == 0xffffff;
        int extra = extended ? 4 : 0;
        // A type-3 chunk that starts a new message repeats the last one's header; one that continues a message goes on.
        bool startsMessage = fmt != 3 || s.Buffer is null;
        uint length = fmt <= 1 ? (uint)(h[3] << 16 | h[4] << 8 | h[5]) : s.Length;
        if (length > MaxMessageSize) throw new FormatException($"RTMP: a message of {length} bytes (at most {MaxMessageSize})");
        int filled = startsMessage ? 0 : s.Filled;
        int payload = (int)Math.Min(ChunkSize, length - filled);
        int total = at + headerSize + extra + payload;
        if (buffer.Length < total) return false;

        // The whole chunk is here: the stream's state moves on.
        uint ext = extended ? BinaryPrimitives.ReadUInt32BigEndian(buffer[(at + headerSize)..]) : 0;
        if (!_streams.ContainsKey(csid)) _streams[csid] = s;
        if (startsMessage)
        {
            switch (fmt)
            {
                case 0:
                    s.Timestamp = extended ? ext : field; s.Delta = 0;
                    s.Length = length; s.Type = h[6]; s.StreamId = BinaryPrimitives.ReadUInt32LittleEndian(h[7..]);
                    break;
                case 1: s.Delta = extended ? ext : field; s.Timestamp += s.Delta; s.Length = length; s.Type = h[6]; break;
                case 2: s.Delta = extended ? ext : field; s.Timestamp += s.Delta; break;
                default: s.Timestamp += s.Delta; break;
            }
            s.Extended = extended;
            s.Started = true;
            s.Buffer = new byte[s.Length];
            s.Filled = 0;
        }
        buffer.Slice(at + headerSize + extra, payload).CopyTo(s.Buffer.AsSpan(s.Filled));
        s.Filled += payload;
        consumed = total;
        if (s.Filled == s.Length)
        {
            message = new RtmpMessage(s.Type, s.StreamId, s.Timestamp, s.Buffer!);
            s.Buffer = null;
            if (message.Type == RtmpType.SetChunkSize)
            {
                if (message.Payload.Length < 4) throw new FormatException("RTMP: a Set Chunk Size shorter than 4 bytes");
                uint size = BinaryPrimitives.ReadUInt32BigEndian(message.Payload) & 0x7fffffff;
                if (size is < 1 or > 1 << 24) throw new FormatException($"RTMP: a chunk size of {size}");
                ChunkSize = (int)size;
            }
        }
        return true;
    }
}
