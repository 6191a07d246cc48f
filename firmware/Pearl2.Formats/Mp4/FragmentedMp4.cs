using System.Buffers.Binary;
using Pearl2.Formats.Codecs;

namespace Pearl2.Formats.Mp4;

/// <summary>Writes ISO BMFF boxes into a span: <see cref="Begin"/> opens a box, <see cref="End"/> fills in its size.</summary>
public ref struct BoxWriter(Span<byte> dest)
{
    readonly Span<byte> _d = dest;
    int _pos;

    public int Position => _pos;

    public int Begin(ReadOnlySpan<byte> type)
    {
        int start = _pos;
        U32(0);
        Bytes(type);
        return start;
    }

    /// <summary>A FullBox (§4.2): version and 24 bits of flags after the type.</summary>
    public int BeginFull(ReadOnlySpan<byte> type, byte version, uint flags)
    {
        int start = Begin(type);
        U32(((uint)version << 24) | flags);
        return start;
    }

    public void End(int start) => BinaryPrimitives.WriteUInt32BigEndian(_d[start..], (uint)(_pos - start));

    public void U8(int v) => _d[_pos++] = (byte)v;
    public void U16(int v) { BinaryPrimitives.WriteUInt16BigEndian(_d[_pos..], (ushort)v); _pos += 2; }
    public void U24(int v) { _d[_pos] = (byte)(v >> 16); _d[_pos + 1] = (byte)(v >> 8); _d[_pos + 2] = (byte)v; _pos += 3; }
    public void U32(uint v) { BinaryPrimitives.WriteUInt32BigEndian(_d[_pos..], v); _pos += 4; }
    public void U64(ulong v) { BinaryPrimitives.WriteUInt64BigEndian(_d[_pos..], v); _pos += 8; }
    public void Bytes(ReadOnlySpan<byte> b) { b.CopyTo(_d[_pos..]); _pos += b.Length; }
    public void Zeros(int n) { _d.Slice(_pos, n).Clear(); _pos += n; }
    public Span<byte> Reserve(int n) { var s = _d.Slice(_pos, n); _pos += n; return s; }
}

public readonly record struct Mp4VideoTrack(int Width, int Height, byte[] Sps, byte[] Pps);
public readonly record struct Mp4AudioTrack(int SampleRate, int Channels, byte[] AudioSpecificConfig);

/// <summary>One sample of a fragment: its size in the mdat, its duration in the track's timescale, and whether it is a sync sample.</summary>
public readonly record struct Mp4Sample(int Size, uint Duration, bool Sync);

/// <summary>Where <see cref="FragmentedMp4.WriteInit"/> left room for what is only known when the file is finished.</summary>
public readonly record struct Mp4InitLayout(int MvhdDurationOffset, int MehdSlotOffset, int Length);

/// <summary>
/// Fragmented MP4 (ISO/IEC 14496-12 §8.8): ftyp and moov up front, then self-contained moof+mdat fragments, so a
/// file cut after any fragment plays up to it. A finished file gets its duration filled in and an mfra index
/// of its sync samples at the end. Video is track 1 (90 kHz), audio track 2 (its sample rate). Pure: no I/O.
/// </summary>
public static class FragmentedMp4
{
    public const uint VideoTrackId = 1, AudioTrackId = 2;
    public const int VideoTimescale = 90000;
    const int MovieTimescale = 1000;
    /// <summary>A 'free' box in mvex the size of a version-1 mehd, overwritten with the fragment duration when the file is finished.</summary>
    public const int MehdSize = 20;
    const uint SyncFlags = 0x02000000;    // sample_depends_on = 2 (I picture), is_non_sync = 0
    const uint NonSyncFlags = 0x01010000; // sample_depends_on = 1, sample_is_non_sync_sample = 1

    public static int MaxInitSize(Mp4VideoTrack v, Mp4AudioTrack? a) => 2048 + v.Sps.Length + v.Pps.Length + (a?.AudioSpecificConfig.Length ?? 0);

    public static int WriteInit(Span<byte> dest, Mp4VideoTrack v, Mp4AudioTrack? a, out Mp4InitLayout layout)
    {
        var w = new BoxWriter(dest);
        int ftyp = w.Begin("ftyp"u8);
        w.Bytes("isom"u8); w.U32(0x200);
        w.Bytes("isom"u8); w.Bytes("iso6"u8); w.Bytes("mp41"u8); w.Bytes("avc1"u8);
        w.End(ftyp);

        int moov = w.Begin("moov"u8);
        int mvhd = w.BeginFull("mvhd"u8, 0, 0);
        w.U32(0); w.U32(0);                       // creation, modification time
        w.U32(MovieTimescale);
        int mvhdDuration = w.Position;
        w.U32(0);                                 // duration: filled in when the file is finished
        w.U32(0x00010000); w.U16(0x0100); w.Zeros(10);
        Matrix(ref w);
        w.Zeros(24);                              // pre_defined
        w.U32(a is null ? 2u : 3u);               // next_track_ID
        w.End(mvhd);

        VideoTrak(ref w, v);
        if (a is { } audio) AudioTrak(ref w, audio);

        int mvex = w.Begin("mvex"u8);
        int mehdSlot = w.Position;
        int free = w.Begin("free"u8);
        w.Zeros(MehdSize - 8);
        w.End(free);
        Trex(ref w, VideoTrackId, NonSyncFlags);
        if (a is not null) Trex(ref w, AudioTrackId, SyncFlags);
        w.End(mvex);
        w.End(moov);
        layout = new Mp4InitLayout(mvhdDuration, mehdSlot, w.Position);
        return w.Position;
    }

    static void Matrix(ref BoxWriter w)
    {
        w.U32(0x00010000); w.U32(0); w.U32(0);
        w.U32(0); w.U32(0x00010000); w.U32(0);
        w.U32(0); w.U32(0); w.U32(0x40000000);
    }

    static void Tkhd(ref BoxWriter w, uint id, bool audio, int width, int height)
    {
        int tkhd = w.BeginFull("tkhd"u8, 0, 3); // enabled, in movie
        w.U32(0); w.U32(0); w.U32(id); w.U32(0);
        w.U32(0);                                 // duration
        w.Zeros(8);
        w.U16(0); w.U16(0);                       // layer, alternate_group
        w.U16(audio ? 0x0100 : 0); w.U16(0);
        Matrix(ref w);
        w.U32((uint)width << 16); w.U32((uint)height << 16);
        w.End(tkhd);
    }

    static void MdhdHdlr(ref BoxWriter w, int timescale, ReadOnlySpan<byte> handler, ReadOnlySpan<byte> name)
    {
        int mdhd = w.BeginFull("mdhd"u8, 0, 0);
        w.U32(0); w.U32(0); w.U32((uint)timescale); w.U32(0);
        w.U16(0x55c4); w.U16(0);                  // language "und"
        w.End(mdhd);
        int hdlr = w.BeginFull("hdlr"u8, 0, 0);
        w.U32(0); w.Bytes(handler); w.Zeros(12); w.Bytes(name); w.U8(0);
        w.End(hdlr);
    }

    static void Dinf(ref BoxWriter w)
    {
        int dinf = w.Begin("dinf"u8);
        int dref = w.BeginFull("dref"u8, 0, 0);
        w.U32(1);
        int url = w.BeginFull("url "u8, 0, 1); // media in this file
        w.End(url);
        w.End(dref);
        w.End(dinf);
    }

    /// <summary>Empty sample tables: the samples are in the fragments.</summary>
    static void EmptyTables(ref BoxWriter w)
    {
        int b = w.BeginFull("stts"u8, 0, 0); w.U32(0); w.End(b);
        b = w.BeginFull("stsc"u8, 0, 0); w.U32(0); w.End(b);
        b = w.BeginFull("stsz"u8, 0, 0); w.U32(0); w.U32(0); w.End(b);
        b = w.BeginFull("stco"u8, 0, 0); w.U32(0); w.End(b);
    }

    readonly record struct TrakBoxes(int Trak, int Mdia, int Minf, int Stbl, int Stsd);

    /// <summary>trak down to stsd, the same for both tracks but for the handler and media header; the sample entry follows.</summary>
    static TrakBoxes BeginTrak(ref BoxWriter w, uint id, bool audio, int width, int height, int timescale)
    {
        int trak = w.Begin("trak"u8);
        Tkhd(ref w, id, audio, width, height);
        int mdia = w.Begin("mdia"u8);
        if (audio) MdhdHdlr(ref w, timescale, "soun"u8, "SoundHandler"u8);
        else MdhdHdlr(ref w, timescale, "vide"u8, "VideoHandler"u8);
        int minf = w.Begin("minf"u8);
        if (audio) { int smhd = w.BeginFull("smhd"u8, 0, 0); w.U32(0); w.End(smhd); }
        else { int vmhd = w.BeginFull("vmhd"u8, 0, 1); w.Zeros(8); w.End(vmhd); }
        Dinf(ref w);
        int stbl = w.Begin("stbl"u8);
        int stsd = w.BeginFull("stsd"u8, 0, 0);
        w.U32(1);
        return new TrakBoxes(trak, mdia, minf, stbl, stsd);
    }

    static void EndTrak(ref BoxWriter w, TrakBoxes t)
    {
        w.End(t.Stsd);
        EmptyTables(ref w);
        w.End(t.Stbl);
        w.End(t.Minf);
        w.End(t.Mdia);
        w.End(t.Trak);
    }

    static void VideoTrak(ref BoxWriter w, Mp4VideoTrack v)
    {
        var t = BeginTrak(ref w, VideoTrackId, false, v.Width, v.Height, VideoTimescale);
        int avc1 = w.Begin("avc1"u8);
        w.Zeros(6); w.U16(1);                     // data_reference_index
        w.Zeros(16);
        w.U16(v.Width); w.U16(v.Height);
        w.U32(0x00480000); w.U32(0x00480000);    // 72 dpi
        w.U32(0); w.U16(1);                       // frame_count
        w.Zeros(32);                              // compressorname
        w.U16(0x0018); w.U16(0xffff);
        int avcC = w.Begin("avcC"u8);
        var rec = w.Reserve(AvcDecoderConfig.Size(v.Sps.Length, v.Pps.Length));
        AvcDecoderConfig.Write(rec, v.Sps, v.Pps);
        w.End(avcC);
        w.End(avc1);
        EndTrak(ref w, t);
    }

    static void AudioTrak(ref BoxWriter w, Mp4AudioTrack a)
    {
        var t = BeginTrak(ref w, AudioTrackId, true, 0, 0, a.SampleRate);
        int mp4a = w.Begin("mp4a"u8);
        w.Zeros(6); w.U16(1);
        w.Zeros(8);
        w.U16(a.Channels); w.U16(16);
        w.U16(0); w.U16(0);
        w.U32((uint)a.SampleRate << 16);
        WriteEsds(ref w, a.AudioSpecificConfig);
        w.End(mp4a);
        EndTrak(ref w, t);
    }

    /// <summary>esds (ISO/IEC 14496-1 §7.2.6.5): ES_Descriptor → DecoderConfigDescriptor (AAC, audio stream) → DecoderSpecificInfo, then SLConfig 2.</summary>
    public static void WriteEsds(ref BoxWriter w, ReadOnlySpan<byte> asc)
    {
        int esds = w.BeginFull("esds"u8, 0, 0);
        int dsi = 2 + asc.Length;
        int dcd = 2 + 13 + dsi;
        int es = 3 + dcd + 3;
        w.U8(0x03); w.U8(es); w.U16(0); w.U8(0);           // ES_ID 0, no flags
        w.U8(0x04); w.U8(dcd - 2);
        w.U8(0x40); w.U8(0x15);                             // MPEG-4 audio; streamType 5 (audio) << 2 | 1
        w.U24(0); w.U32(0); w.U32(0);                       // bufferSizeDB, max and average bitrate unknown
        w.U8(0x05); w.U8(asc.Length); w.Bytes(asc);
        w.U8(0x06); w.U8(1); w.U8(0x02);
        w.End(esds);
    }

    static void Trex(ref BoxWriter w, uint id, uint defaultFlags)
    {
        int trex = w.BeginFull("trex"u8, 0, 0);
        w.U32(id); w.U32(1); w.U32(0); w.U32(0); w.U32(defaultFlags);
        w.End(trex);
    }

    /// <summary>Upper bound of <see cref="WriteMoof"/>'s output (the moof and the mdat header) for this many samples.</summary>
    public static int MaxMoofSize(int videoSamples, int audioSamples) => 8 + 16 + 2 * (8 + 16 + 20 + 20) + videoSamples * 12 + audioSamples * 8 + 8;

    /// <summary>
    /// moof for one fragment followed by the mdat header; the mdat payload (video samples, then audio samples) follows
    /// directly. Each traf's base is the moof (default-base-is-moof) and tfdt gives its first decode time.
    /// </summary>
    public static int WriteMoof(Span<byte> dest, uint sequence, ulong videoDecodeTime, ReadOnlySpan<Mp4Sample> video,
        ulong audioDecodeTime, ReadOnlySpan<Mp4Sample> audio)
    {
        var w = new BoxWriter(dest);
        int moof = w.Begin("moof"u8);
        int mfhd = w.BeginFull("mfhd"u8, 0, 0); w.U32(sequence); w.End(mfhd);
        int videoOffsetAt = video.IsEmpty ? -1 : Traf(ref w, VideoTrackId, videoDecodeTime, video, perSampleFlags: true);
        int audioOffsetAt = audio.IsEmpty ? -1 : Traf(ref w, AudioTrackId, audioDecodeTime, audio, perSampleFlags: false);
        w.End(moof);
        int moofSize = w.Position;
        long videoBytes = 0, audioBytes = 0;
        foreach (var s in video) videoBytes += s.Size;
        foreach (var s in audio) audioBytes += s.Size;
        if (videoOffsetAt >= 0) BinaryPrimitives.WriteInt32BigEndian(dest[videoOffsetAt..], moofSize + 8);
        if (audioOffsetAt >= 0) BinaryPrimitives.WriteInt32BigEndian(dest[audioOffsetAt..], (int)(moofSize + 8 + videoBytes));
        w.U32((uint)(8 + videoBytes + audioBytes));
        w.Bytes("mdat"u8);
        return w.Position;
    }

    /// <summary>Returns where trun's data_offset goes, to be filled in once the moof's size is known.</summary>
    static int Traf(ref BoxWriter w, uint id, ulong decodeTime, ReadOnlySpan<Mp4Sample> samples, bool perSampleFlags)
    {
        int traf = w.Begin("traf"u8);
        int tfhd = w.BeginFull("tfhd"u8, 0, 0x020000); w.U32(id); w.End(tfhd);   // default-base-is-moof
        int tfdt = w.BeginFull("tfdt"u8, 1, 0); w.U64(decodeTime); w.End(tfdt);
        // data-offset, sample-duration, sample-size, and (video) sample-flags present
        int trun = w.BeginFull("trun"u8, 0, perSampleFlags ? 0x701u : 0x301u);
        w.U32((uint)samples.Length);
        int offsetAt = w.Position;
        w.U32(0);
        foreach (var s in samples)
        {
            w.U32(s.Duration);
            w.U32((uint)s.Size);
            if (perSampleFlags) w.U32(s.Sync ? SyncFlags : NonSyncFlags);
        }
        w.End(trun);
        w.End(traf);
        return offsetAt;
    }

    /// <summary>The version-1 mehd (§8.8.2) that replaces the free box left in mvex: the whole duration in the movie timescale.</summary>
    public static void WriteMehd(Span<byte> dest, ulong durationMs)
    {
        var w = new BoxWriter(dest);
        int mehd = w.BeginFull("mehd"u8, 1, 0);
        w.U64(durationMs);
        w.End(mehd);
    }

    public static ulong MovieDuration(ulong videoTicks) => videoTicks * MovieTimescale / VideoTimescale;

    public static int MfraSize(int entries) => 8 + (12 + 4 + 4 + 4 + entries * 19) + 16;

    /// <summary>mfra (§8.8.9): a tfra listing each video sync sample's time and its moof's file offset, then mfro with the mfra's size.</summary>
    public static int WriteMfra(Span<byte> dest, ReadOnlySpan<(ulong Time, ulong MoofOffset)> syncSamples)
    {
        var w = new BoxWriter(dest);
        int mfra = w.Begin("mfra"u8);
        int tfra = w.BeginFull("tfra"u8, 1, 0);
        w.U32(VideoTrackId);
        w.U32(0);                                 // traf, trun and sample numbers are 1 byte each
        w.U32((uint)syncSamples.Length);
        foreach (var (time, offset) in syncSamples)
        {
            w.U64(time); w.U64(offset);
            w.U8(1); w.U8(1); w.U8(1);
        }
        w.End(tfra);
        int mfro = w.BeginFull("mfro"u8, 0, 0);
        w.U32((uint)(w.Position - mfra + 4));
        w.End(mfro);
        w.End(mfra);
        return w.Position;
    }

    /// <summary>Reads a top-level box header: size (32- or 64-bit, 0 = to the end of the file) and type.</summary>
    public static bool TryReadBoxHeader(ReadOnlySpan<byte> b, long remaining, out long size, out uint type, out int headerLength)
    {
        size = 0; type = 0; headerLength = 8;
        if (b.Length < 8) return false;
        size = BinaryPrimitives.ReadUInt32BigEndian(b);
        type = BinaryPrimitives.ReadUInt32BigEndian(b[4..]);
        if (size == 1)
        {
            if (b.Length < 16) return false;
            size = (long)BinaryPrimitives.ReadUInt64BigEndian(b[8..]);
            headerLength = 16;
        }
        else if (size == 0) size = remaining;
        return size >= headerLength;
    }

    public static uint Type(ReadOnlySpan<byte> fourcc) => BinaryPrimitives.ReadUInt32BigEndian(fourcc);

    /// <summary>
    /// The movie's duration from the head of a file (ftyp, moov/mvhd, version 0 or 1). False when the boxes are not in
    /// <paramref name="head"/> or the duration is 0, as in a file that is still being written or was never finished.
    /// </summary>
    /// <summary>The picture size of the first track with one (tkhd's 16.16 width and height, its last 8 bytes), from a file's head.</summary>
    public static bool TryReadVideoSize(ReadOnlySpan<byte> head, out int width, out int height)
    {
        width = height = 0;
        int at = 0;
        while (TryReadBoxHeader(head[at..], head.Length - at, out long size, out uint type, out int hl) && at + size <= head.Length)
        {
            if (type == Type("moov"u8))
            {
                var moov = head.Slice(at + hl, (int)size - hl);
                for (int m = 0; TryReadBoxHeader(moov[m..], moov.Length - m, out long bs, out uint bt, out int bh) && m + bs <= moov.Length; m += (int)bs)
                {
                    if (bt != Type("trak"u8)) continue;
                    var trak = moov.Slice(m + bh, (int)bs - bh);
                    if (!TryReadBoxHeader(trak, trak.Length, out long ts, out uint tt, out int th) || tt != Type("tkhd"u8) || ts > trak.Length || ts < th + 8) continue;
                    var tkhd = trak.Slice(th, (int)ts - th);
                    width = (int)(BinaryPrimitives.ReadUInt32BigEndian(tkhd[^8..]) >> 16);
                    height = (int)(BinaryPrimitives.ReadUInt32BigEndian(tkhd[^4..]) >> 16);
                    if (width > 0 && height > 0) return true;
                }
                return false;
            }
            at += (int)size;
        }
        return false;
    }

    public static bool TryReadDuration(ReadOnlySpan<byte> head, out TimeSpan duration)
    {
        duration = default;
        int at = 0;
        while (TryReadBoxHeader(head[at..], head.Length - at, out long size, out uint type, out int hl) && at + size <= head.Length)
        {
            if (type == Type("moov"u8))
            {
                var moov = head.Slice(at + hl, (int)size - hl);
                int m = 0;
                while (TryReadBoxHeader(moov[m..], moov.Length - m, out long bs, out uint bt, out int bh) && m + bs <= moov.Length)
                {
                    if (bt == Type("mvhd"u8))
                    {
                        var b = moov.Slice(m + bh, (int)bs - bh);
                        bool v1 = b.Length > 0 && b[0] == 1;
                        if (b.Length < (v1 ? 32 : 20)) return false;
                        uint scale = BinaryPrimitives.ReadUInt32BigEndian(b[(v1 ? 20 : 12)..]);
                        ulong d = v1 ? BinaryPrimitives.ReadUInt64BigEndian(b[24..]) : BinaryPrimitives.ReadUInt32BigEndian(b[16..]);
                        if (scale == 0 || d == 0 || d == uint.MaxValue) return false;
                        duration = TimeSpan.FromSeconds((double)d / scale);
                        return true;
                    }
                    m += (int)bs;
                }
                return false;
            }
            at += (int)size;
        }
        return false;
    }
}
