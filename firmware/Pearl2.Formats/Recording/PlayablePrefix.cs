using Pearl2.Formats.Mp4;
using Pearl2.Formats.Ts;

namespace Pearl2.Formats.Recording;

/// <summary>Reads up to <c>into.Length</c> bytes at <paramref name="offset"/> of a file; returns how many it read.</summary>
public delegate int ReadAt(long offset, Span<byte> into);

/// <summary>
/// How much of an interrupted recording plays: the walk over its boxes or packets, apart from the file it reads
/// (the caller gives a <see cref="ReadAt"/>, so this is bytes in, a length out).
/// </summary>
public static class PlayablePrefix
{
    /// <summary>End of the last complete moof+mdat pair after ftyp and moov (or of an mfra after them); 0 if there is none.</summary>
    public static long Mp4(ReadAt read, long length)
    {
        Span<byte> head = stackalloc byte[16];
        uint ftyp = FragmentedMp4.Type("ftyp"u8), moov = FragmentedMp4.Type("moov"u8), moof = FragmentedMp4.Type("moof"u8),
            mdat = FragmentedMp4.Type("mdat"u8), free = FragmentedMp4.Type("free"u8), mfra = FragmentedMp4.Type("mfra"u8);
        long at = 0, good = 0;
        bool haveMoov = false, inFragment = false;
        while (at < length)
        {
            int n = read(at, head);
            if (!FragmentedMp4.TryReadBoxHeader(head[..n], length - at, out long size, out uint type, out _) || at + size > length) break;
            if (at == 0 && type != ftyp) return 0;
            if (type == moov) haveMoov = true;
            else if (type == moof && haveMoov) inFragment = true;
            else if (type == mdat && inFragment) { inFragment = false; good = at + size; }
            else if (type == mfra && !inFragment) { good = at + size; break; }
            else if (type != ftyp && type != free) break;
            at += size;
        }
        return good;
    }

    /// <summary>
    /// Whole packets up to the start of the last video access unit (and the PAT/PMT just before it): its PES has no
    /// length, so nothing tells whether it is complete. 0 when no complete access unit is left.
    /// </summary>
    public static long Ts(ReadAt read, long length, Span<byte> scratch)
    {
        const int P = TsMuxer.PacketSize;
        int batch = Math.Max(1, scratch.Length / P);
        long packets = length / P;
        long cut = 0, tables = -1;
        int videoStarts = 0;
        for (long p = 0; p < packets;)
        {
            int want = (int)Math.Min(batch, packets - p) * P;
            int n = read(p * P, scratch[..want]);
            for (int i = 0; i + P <= n; i += P, p++)
            {
                if (scratch[i] != 0x47) return videoStarts >= 2 ? cut : 0;   // no sync byte: not TS from here on
                int pid = ((scratch[i + 1] & 0x1f) << 8) | scratch[i + 2];
                if ((scratch[i + 1] & 0x40) == 0) continue;   // not the start of a payload unit
                if (pid == 0) tables = p * P;
                else if (pid == TsMuxer.VideoPid)
                {
                    cut = tables >= 0 && tables >= (p - 2) * P ? tables : p * P;
                    tables = -1;
                    videoStarts++;
                }
            }
            if (n < want) break;
        }
        return videoStarts >= 2 ? cut : 0;
    }
}
