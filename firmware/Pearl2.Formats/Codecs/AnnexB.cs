namespace Pearl2.Formats.Codecs;

public static class NalType
{
    public const int NonIdrSlice = 1, IdrSlice = 5, Sei = 6, Sps = 7, Pps = 8, AccessUnitDelimiter = 9;
}

/// <summary>Walks the NAL units of an Annex-B byte stream (ITU-T H.264 Annex B): start codes 00 00 01 or 00 00 00 01.</summary>
public ref struct AnnexBReader
{
    readonly ReadOnlySpan<byte> _data;
    int _pos;

    public AnnexBReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _pos = FindStart(data, 0, out int sc) is var s && s < 0 ? data.Length : s + sc;
    }

    /// <summary>The next NAL unit as an offset and length into the data (trailing zero bytes trimmed).</summary>
    public bool TryNext(out int start, out int length)
    {
        start = _pos; length = 0;
        if (_pos >= _data.Length) return false;
        int next = FindStart(_data, _pos, out int sc);
        int end = next < 0 ? _data.Length : next;
        _pos = next < 0 ? _data.Length : next + sc;
        while (end > start && _data[end - 1] == 0) end--;
        length = end - start;
        return true;
    }

    public AnnexBReader GetEnumerator() => this;
    public ReadOnlySpan<byte> Current { get; private set; }
    public bool MoveNext()
    {
        if (!TryNext(out int s, out int l)) return false;
        Current = _data.Slice(s, l);
        return true;
    }

    /// <summary>Index of the next 00 00 01 at or after <paramref name="from"/> (a preceding 00 counts as a 4-byte code).</summary>
    static int FindStart(ReadOnlySpan<byte> d, int from, out int startCodeLength)
    {
        startCodeLength = 3;
        int i = from;
        while (i + 2 < d.Length)
        {
            int k = d[i..].IndexOf((byte)1);
            if (k < 0) return -1;
            int one = i + k;
            if (one >= from + 2 && d[one - 1] == 0 && d[one - 2] == 0)
            {
                int s = one - 2;
                if (s > from && d[s - 1] == 0) { startCodeLength = 4; return s - 1; }
                return s;
            }
            i = one + 1;
        }
        return -1;
    }

    public static bool ContainsNal(ReadOnlySpan<byte> annexB, int type)
    {
        foreach (var nal in new AnnexBReader(annexB))
            if (nal.Length > 0 && (nal[0] & 0x1f) == type) return true;
        return false;
    }
}

/// <summary>Just enough of an H.264 SPS (§7.3.2.1.1) for SDP and sanity checks.</summary>
public readonly record struct H264Sps(byte ProfileIdc, byte Constraints, byte LevelIdc, int Width, int Height)
{
    /// <summary>profile-level-id for SDP (RFC 6184 §8.1): the three bytes after the NAL header, in hex.</summary>
    public string ProfileLevelId => $"{ProfileIdc:X2}{Constraints:X2}{LevelIdc:X2}";

    public static bool TryParse(ReadOnlySpan<byte> nal, out H264Sps sps)
    {
        sps = default;
        if (nal.Length < 4 || (nal[0] & 0x1f) != NalType.Sps) return false;
        Span<byte> rbsp = stackalloc byte[Math.Min(nal.Length, 256)];
        int n = Unescape(nal[1..Math.Min(nal.Length, 256)], rbsp);
        var r = new BitReader(rbsp[..n]);
        try
        {
            byte profile = (byte)r.Bits(8), constraints = (byte)r.Bits(8), level = (byte)r.Bits(8);
            r.Ue(); // seq_parameter_set_id
            int chroma = 1;
            if (profile is 100 or 110 or 122 or 244 or 44 or 83 or 86 or 118 or 128 or 138 or 139 or 134 or 135)
            {
                chroma = (int)r.Ue();
                if (chroma == 3) r.Bits(1);
                r.Ue(); r.Ue(); r.Bits(1);
                if (r.Bits(1) == 1)
                    for (int i = 0; i < (chroma != 3 ? 8 : 12); i++)
                        if (r.Bits(1) == 1) SkipScalingList(ref r, i < 6 ? 16 : 64);
            }
            r.Ue(); // log2_max_frame_num_minus4
            uint pocType = r.Ue();
            if (pocType == 0) r.Ue();
            else if (pocType == 1)
            {
                r.Bits(1); r.Se(); r.Se();
                uint cycle = r.Ue();
                for (uint i = 0; i < cycle && i < 256; i++) r.Se();
            }
            r.Ue(); r.Bits(1); // max_num_ref_frames, gaps
            int wMbs = (int)r.Ue() + 1, hMapUnits = (int)r.Ue() + 1;
            int frameMbsOnly = (int)r.Bits(1);
            if (frameMbsOnly == 0) r.Bits(1);
            r.Bits(1); // direct_8x8_inference
            int width = wMbs * 16, height = (2 - frameMbsOnly) * hMapUnits * 16;
            if (r.Bits(1) == 1)
            {
                int cl = (int)r.Ue(), cr = (int)r.Ue(), ct = (int)r.Ue(), cb = (int)r.Ue();
                int subW = chroma is 1 or 2 ? 2 : 1, subH = chroma == 1 ? 2 : 1;
                width -= (cl + cr) * subW;
                height -= (ct + cb) * subH * (2 - frameMbsOnly);
            }
            sps = new H264Sps(profile, constraints, level, width, height);
            return true;
        }
        catch (IndexOutOfRangeException) { return false; }
    }

    static void SkipScalingList(ref BitReader r, int size)
    {
        int last = 8, next = 8;
        for (int j = 0; j < size; j++)
        {
            if (next != 0) next = (last + r.Se() + 256) % 256;
            last = next == 0 ? last : next;
        }
    }

    /// <summary>Removes emulation-prevention bytes (00 00 03 → 00 00).</summary>
    public static int Unescape(ReadOnlySpan<byte> src, Span<byte> dest)
    {
        int n = 0, zeros = 0;
        foreach (byte b in src)
        {
            if (zeros >= 2 && b == 3) { zeros = 0; continue; }
            dest[n++] = b;
            zeros = b == 0 ? zeros + 1 : 0;
        }
        return n;
    }

    ref struct BitReader(ReadOnlySpan<byte> data)
    {
        readonly ReadOnlySpan<byte> _d = data;
        int _bit;

        public uint Bits(int n)
        {
            uint v = 0;
            for (int i = 0; i < n; i++, _bit++)
                v = (v << 1) | (uint)((_d[_bit >> 3] >> (7 - (_bit & 7))) & 1);
            return v;
        }

        public uint Ue()
        {
            int zeros = 0;
            while (Bits(1) == 0) if (++zeros > 31) throw new IndexOutOfRangeException();
            return (uint)((1L << zeros) - 1 + Bits(zeros));
        }

        public int Se()
        {
            uint k = Ue();
            return (k & 1) == 1 ? (int)((k + 1) / 2) : -(int)(k / 2);
        }
    }
}
