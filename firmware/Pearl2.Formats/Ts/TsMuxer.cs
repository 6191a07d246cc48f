using Pearl2.Formats.Codecs;

namespace Pearl2.Formats.Ts;

/// <summary>MPEG-2 CRC-32 of PSI sections (ISO/IEC 13818-1 Annex A): polynomial 0x04C11DB7, initial 0xFFFFFFFF, no reflection.</summary>
public static class Crc32Mpeg
{
    static readonly uint[] Table = Build();

    static uint[] Build()
    {
        var t = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i << 24;
            for (int k = 0; k < 8; k++) c = (c & 0x80000000) != 0 ? (c << 1) ^ 0x04C11DB7 : c << 1;
            t[i] = c;
        }
        return t;
    }

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint crc = 0xffffffff;
        foreach (byte b in data) crc = (crc << 8) ^ Table[(crc >> 24) ^ b];
        return crc;
    }
}

/// <summary>
/// MPEG-2 transport stream for one program (ISO/IEC 13818-1): PAT and PMT, H.264 (stream type 0x1B) with an
/// access unit delimiter in each PES and the PCR on its PID, AAC in ADTS (0x0F). Keeps the continuity
/// counters; writes whole 188-byte packets into the caller's span and never allocates.
/// </summary>
public sealed class TsMuxer
{
    public const int PacketSize = 188;
    public const ushort PmtPid = 0x1000, VideoPid = 0x100, AudioPid = 0x101;
    static ReadOnlySpan<byte> Aud => [0, 0, 0, 1, 0x09, 0xf0];

    readonly bool _audio;
    byte _ccPat, _ccPmt, _ccVideo, _ccAudio;

    public TsMuxer(bool audio) => _audio = audio;

    /// <summary>Bytes the muxer may write for a PES carrying <paramref name="payloadLength"/> bytes.</summary>
    public static int MaxPesOutput(int payloadLength) => ((payloadLength + 32) / 176 + 2) * PacketSize;

    /// <summary>PAT then PMT, two packets.</summary>
    public int WriteTables(Span<byte> dest)
    {
        // PAT: one program, number 1, its PMT on PmtPid.
        Span<byte> pat = stackalloc byte[12];
        pat[0] = 0x00; pat[1] = 0xb0; pat[2] = 13;           // table 0, syntax 1, length 13
        pat[3] = 0; pat[4] = 1;                               // transport_stream_id 1
        pat[5] = 0xc1; pat[6] = 0; pat[7] = 0;                // version 0, current, section 0 of 0
        pat[8] = 0; pat[9] = 1;                               // program 1
        pat[10] = (byte)(0xe0 | (PmtPid >> 8)); pat[11] = PmtPid & 0xff;
        int n = WriteSection(dest, 0, ref _ccPat, pat);

        int streams = _audio ? 2 : 1;
        int length = 9 + 5 * streams + 4;
        Span<byte> pmt = stackalloc byte[3 + length - 4];
        pmt[0] = 0x02; pmt[1] = (byte)(0xb0 | (length >> 8)); pmt[2] = (byte)length;
        pmt[3] = 0; pmt[4] = 1;                               // program 1
        pmt[5] = 0xc1; pmt[6] = 0; pmt[7] = 0;
        pmt[8] = (byte)(0xe0 | (VideoPid >> 8)); pmt[9] = VideoPid & 0xff;   // PCR on the video PID
        pmt[10] = 0xf0; pmt[11] = 0;                          // no program descriptors
        int at = 12;
        at = Stream(pmt, at, 0x1b, VideoPid);
        if (_audio) at = Stream(pmt, at, 0x0f, AudioPid);
        n += WriteSection(dest[n..], PmtPid, ref _ccPmt, pmt[..at]);
        return n;
    }

    static int Stream(Span<byte> s, int at, byte type, ushort pid)
    {
        s[at] = type; s[at + 1] = (byte)(0xe0 | (pid >> 8)); s[at + 2] = (byte)pid; s[at + 3] = 0xf0; s[at + 4] = 0;
        return at + 5;
    }

    static int WriteSection(Span<byte> dest, ushort pid, ref byte cc, ReadOnlySpan<byte> section)
    {
        var p = dest[..PacketSize];
        p.Fill(0xff);
        WritePacketHeader(p, pid, start: true, adaptation: false, ref cc);
        p[4] = 0; // pointer_field
        section.CopyTo(p[5..]);
        uint crc = Crc32Mpeg.Compute(section);
        int end = 5 + section.Length;
        p[end] = (byte)(crc >> 24); p[end + 1] = (byte)(crc >> 16); p[end + 2] = (byte)(crc >> 8); p[end + 3] = (byte)crc;
        return PacketSize;
    }

    static void WritePacketHeader(Span<byte> p, ushort pid, bool start, bool adaptation, ref byte cc)
    {
        p[0] = 0x47;
        p[1] = (byte)((start ? 0x40 : 0) | (pid >> 8));
        p[2] = (byte)pid;
        p[3] = (byte)((adaptation ? 0x30 : 0x10) | cc);
        cc = (byte)((cc + 1) & 0x0f);
    }

    /// <summary>PTS/DTS as the 5-byte PES field (§2.4.3.7): a 4-bit prefix, then 33 bits in 3/15/15 with marker bits.</summary>
    public static void WriteTimestamp(Span<byte> d, int prefix, long ts)
    {
        ts &= 0x1ffffffffL;
        d[0] = (byte)((prefix << 4) | (int)((ts >> 29) & 0x0e) | 1);
        d[1] = (byte)(ts >> 22);
        d[2] = (byte)(((ts >> 14) & 0xfe) | 1);
        d[3] = (byte)(ts >> 7);
        d[4] = (byte)(((ts << 1) & 0xfe) | 1);
    }

    /// <summary>PCR (§2.4.3.5): 33-bit base at 90 kHz, 6 reserved bits, 9-bit extension (0).</summary>
    public static void WritePcr(Span<byte> d, long base90k)
    {
        base90k &= 0x1ffffffffL;
        d[0] = (byte)(base90k >> 25);
        d[1] = (byte)(base90k >> 17);
        d[2] = (byte)(base90k >> 9);
        d[3] = (byte)(base90k >> 1);
        d[4] = (byte)(((base90k & 1) << 7) | 0x7e);
        d[5] = 0;
    }

    /// <summary>One H.264 access unit as a PES (stream 0xE0, unbounded length), an AUD in front, the PCR in its first packet.</summary>
    public int WriteVideo(Span<byte> dest, ReadOnlySpan<byte> annexB, long pts90k, long dts90k, bool keyFrame)
    {
        bool hasAud = annexB.Length > 4 && AnnexBReader.ContainsNal(annexB[..Math.Min(annexB.Length, 6)], NalType.AccessUnitDelimiter);
        Span<byte> head = stackalloc byte[19];
        head[0] = 0; head[1] = 0; head[2] = 1; head[3] = 0xe0;
        head[4] = 0; head[5] = 0;                             // PES_packet_length 0: unbounded, allowed for video
        head[6] = 0x80;
        bool withDts = dts90k != pts90k;
        head[7] = (byte)(withDts ? 0xc0 : 0x80);
        head[8] = (byte)(withDts ? 10 : 5);
        WriteTimestamp(head[9..], withDts ? 3 : 2, pts90k);
        if (withDts) WriteTimestamp(head[14..], 1, dts90k);
        int headLength = withDts ? 19 : 14;
        return WritePes(dest, VideoPid, ref _ccVideo, head[..headLength], hasAud ? default : Aud, annexB, pcr: dts90k, randomAccess: keyFrame);
    }

    /// <summary>One AAC frame as a PES (stream 0xC0) with an ADTS header.</summary>
    public int WriteAudio(Span<byte> dest, ReadOnlySpan<byte> rawAac, long pts90k, int sampleRate, int channels)
    {
        Span<byte> head = stackalloc byte[14 + Adts.HeaderSize];
        int pesLength = 3 + 5 + Adts.HeaderSize + rawAac.Length;
        head[0] = 0; head[1] = 0; head[2] = 1; head[3] = 0xc0;
        head[4] = (byte)(pesLength >> 8); head[5] = (byte)pesLength;
        head[6] = 0x80; head[7] = 0x80; head[8] = 5;
        WriteTimestamp(head[9..], 2, pts90k);
        Adts.WriteHeader(head[14..], rawAac.Length, sampleRate, channels);
        return WritePes(dest, AudioPid, ref _ccAudio, head, default, rawAac, pcr: -1, randomAccess: true);
    }

    /// <summary>Splits header + prefix + payload over packets; the first carries PCR / random access, the last is padded by adaptation stuffing.</summary>
    static int WritePes(Span<byte> dest, ushort pid, ref byte cc, ReadOnlySpan<byte> header, ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> payload, long pcr, bool randomAccess)
    {
        int total = header.Length + prefix.Length + payload.Length;
        int written = 0, taken = 0;
        bool first = true;
        while (taken < total)
        {
            var p = dest.Slice(written, PacketSize);
            int adaptation = 0; // adaptation field bytes including its length byte
            bool flags = first && (pcr >= 0 || randomAccess);
            if (flags) adaptation = 2 + (pcr >= 0 ? 6 : 0);
            int room = PacketSize - 4 - adaptation;
            int remaining = total - taken;
            if (remaining < room)
            {
                // Pad with adaptation stuffing so the payload ends exactly at the packet's end.
                int stuffing = room - remaining;
                adaptation += stuffing;
                room = remaining;
            }
            WritePacketHeader(p, pid, first, adaptation > 0, ref cc);
            int at = 4;
            if (adaptation > 0)
            {
                p[4] = (byte)(adaptation - 1);
                at = 5;
                if (adaptation > 1)
                {
                    p[5] = (byte)((flags && randomAccess ? 0x40 : 0) | (flags && pcr >= 0 ? 0x10 : 0));
                    at = 6;
                    if (flags && pcr >= 0) { WritePcr(p[6..], pcr); at = 12; }
                    p[at..(4 + adaptation)].Fill(0xff);
                    at = 4 + adaptation;
                }
            }
            // Copy `room` bytes of the concatenation header|prefix|payload starting at `taken`.
            int need = room;
            while (need > 0)
            {
                ReadOnlySpan<byte> src;
                int offset = taken;
                if (offset < header.Length) src = header[offset..];
                else if ((offset -= header.Length) < prefix.Length) src = prefix[offset..];
                else src = payload[(offset - prefix.Length)..];
                int k = Math.Min(need, src.Length);
                src[..k].CopyTo(p[at..]);
                at += k; taken += k; need -= k;
            }
            written += PacketSize;
            first = false;
        }
        return written;
    }
}
