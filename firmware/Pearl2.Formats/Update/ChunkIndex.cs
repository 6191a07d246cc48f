using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using System.Security.Cryptography;

namespace Pearl2.Formats.Update;

/// <summary>
/// How an update's slot image travels: cut into chunks of <see cref="ChunkSize"/> bytes (the last may be shorter), each
/// compressed on its own with raw deflate and stored one after the other in the payload; a chunk of zeros (free space
/// of the file system) is not stored at all. Because every chunk stands alone, a cut download resumes at a chunk, a
/// chunk the device already has (in the slot being written, or anywhere in the running slot) is not fetched again,
/// and a corrupt chunk is caught by its own hash before it is written.
/// <para>The index, whose SHA-256 the signed manifest carries, is big-endian:</para>
/// <code>
/// "P2CI"  u8 version = 1  u8 codec = 1 (raw deflate)  u16 0  u32 chunk size  u64 image size  u32 count
/// count × ( u32 compressed length, 0 for a chunk of zeros   [32] SHA-256 of the chunk's image bytes
///           u64 window hash, 0 for a chunk shorter than the chunk size )
/// </code>
/// The window hash finds a chunk in the running slot wherever a file system put it: the chunk's 4 KiB blocks, each
/// hashed with XXH3-64, combined as Σ h[j]·P^(n−1−j) mod 2^64 (P = 0x100000001B3, n blocks per chunk). That sum slides
/// one block at a time in O(1), so one pass over the running slot tries every block-aligned place (<see cref="SlidingWindow"/>);
/// the SHA-256 then confirms a candidate.
/// </summary>
public sealed class ChunkIndex
{
    public const int HeaderBytes = 24, EntryBytes = 44;
    /// <summary>The file system's block: chunks start on, and are found at, multiples of it.</summary>
    public const int BlockSize = 4096;
    public const ulong WindowPrime = 0x100000001B3;
    public const int DefaultChunkSize = 256 << 10;
    /// <summary>The largest chunk a device accepts (it holds one compressed and one plain chunk in memory).</summary>
    public const int MaxChunkSize = 16 << 20;
    static ReadOnlySpan<byte> Magic => "P2CI"u8;

    public int ChunkSize { get; }
    public long ImageSize { get; }
    readonly int[] _compressed;
    readonly long[] _offset;
    readonly byte[] _hashes;
    readonly ulong[] _windows;

    ChunkIndex(int chunkSize, long imageSize, int[] compressed, byte[] hashes, ulong[] windows)
    {
        ChunkSize = chunkSize; ImageSize = imageSize; _compressed = compressed; _hashes = hashes; _windows = windows;
        _offset = new long[compressed.Length + 1];
        for (int i = 0; i < compressed.Length; i++) _offset[i + 1] = _offset[i] + compressed[i];
    }

    public int Count => _compressed.Length;
    /// <summary>Bytes of the payload file: every stored chunk.</summary>
    public long PayloadSize => _offset[^1];
    public int CompressedLength(int i) => _compressed[i];
    public bool IsZero(int i) => _compressed[i] == 0;
    /// <summary>Where chunk <paramref name="i"/> starts in the payload.</summary>
    public long PayloadOffset(int i) => _offset[i];
    public long ImageOffset(int i) => (long)i * ChunkSize;
    public int Length(int i) => (int)Math.Min(ChunkSize, ImageSize - ImageOffset(i));
    public ReadOnlySpan<byte> Hash(int i) => _hashes.AsSpan(i * 32, 32);
    /// <summary>The chunk's window hash (0: none, a short last chunk).</summary>
    public ulong Window(int i) => _windows[i];
    public int BlocksPerChunk => ChunkSize / BlockSize;

    public static ulong BlockHash(ReadOnlySpan<byte> block) => XxHash3.HashToUInt64(block);

    /// <summary>The window hash of whole blocks (0 for a length that is not a whole number of them).</summary>
    public static ulong WindowOf(ReadOnlySpan<byte> data)
    {
        if (data.Length == 0 || data.Length % BlockSize != 0) return 0;
        ulong w = 0;
        for (int at = 0; at < data.Length; at += BlockSize) w = unchecked(w * WindowPrime + BlockHash(data.Slice(at, BlockSize)));
        return w;
    }

    /// <summary>
    /// A window hash that moves along a stream one block at a time: <see cref="Push"/> a block's hash, and once
    /// <see cref="Full"/>, <see cref="Value"/> is the window hash of the last n blocks.
    /// </summary>
    public sealed class SlidingWindow
    {
        readonly ulong[] _ring;
        readonly ulong _top;   // P^(n-1)
        long _pushed;
        public SlidingWindow(int blocks)
        {
            _ring = new ulong[blocks];
            _top = 1;
            for (int k = 1; k < blocks; k++) _top = unchecked(_top * WindowPrime);
        }
        public ulong Value { get; private set; }
        public bool Full => _pushed >= _ring.Length;
        public void Push(ulong blockHash)
        {
            int slot = (int)(_pushed % _ring.Length);
            ulong leaving = Full ? _ring[slot] : 0;
            Value = unchecked((Value - leaving * _top) * WindowPrime + blockHash);
            _ring[slot] = blockHash;
            _pushed++;
        }
    }

    /// <summary>Reads an index; every refusal says what is wrong.</summary>
    public static ChunkIndex Parse(ReadOnlySpan<byte> b)
    {
        if (b.Length < HeaderBytes || !b[..4].SequenceEqual(Magic)) throw new ManifestException("index: not a Pearl2 chunk index (no P2CI)");
        if (b[4] != 1) throw new ManifestException($"index: version {b[4]} is not 1");
        if (b[5] != 1) throw new ManifestException($"index: codec {b[5]} is not 1 (raw deflate)");
        int chunkSize = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(b[8..]), int.MaxValue);
        long imageSize = (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(b[12..]), long.MaxValue);
        uint count = BinaryPrimitives.ReadUInt32BigEndian(b[20..]);
        if (chunkSize is < BlockSize or > MaxChunkSize || chunkSize % BlockSize != 0) throw new ManifestException($"index: chunk size {chunkSize} is not a multiple of {BlockSize} up to {MaxChunkSize}");
        if (imageSize <= 0 || (imageSize + chunkSize - 1) / chunkSize != count)
            throw new ManifestException($"index: {count} chunks of {chunkSize} bytes do not make an image of {imageSize} bytes");
        if (b.Length != HeaderBytes + (long)count * EntryBytes) throw new ManifestException($"index: {b.Length} bytes, {HeaderBytes + (long)count * EntryBytes} expected for {count} chunks");
        var compressed = new int[count];
        var hashes = new byte[count * 32];
        var windows = new ulong[count];
        for (int i = 0; i < count; i++)
        {
            var e = b.Slice(HeaderBytes + i * EntryBytes, EntryBytes);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(e);
            // Deflate's stored blocks add 5 bytes per 64 KiB: a chunk never needs much more room than it takes plain.
            if (length > MaxCompressedLength(chunkSize)) throw new ManifestException($"index: chunk {i} is {length} bytes compressed, more than a chunk of {chunkSize} can need");
            compressed[i] = (int)length;
            e.Slice(4, 32).CopyTo(hashes.AsSpan(i * 32));
            windows[i] = BinaryPrimitives.ReadUInt64BigEndian(e[36..]);
        }
        return new ChunkIndex(chunkSize, imageSize, compressed, hashes, windows);
    }

    public static int MaxCompressedLength(int chunkSize) => chunkSize + chunkSize / 1024 + 1024;

    /// <summary>
    /// Whether <paramref name="data"/> is chunk <paramref name="i"/> exactly (its length and its SHA-256).
    /// <paramref name="windowKnown"/>: the caller already found its window hash equal (the sliding search).
    /// </summary>
    public bool Matches(int i, ReadOnlySpan<byte> data, bool windowKnown = false)
    {
        if (data.Length != Length(i)) return false;
        if (!windowKnown && _windows[i] != 0 && WindowOf(data) != _windows[i]) return false;   // XXH3 rules out most at a fraction of SHA-256's cost
        Span<byte> h = stackalloc byte[32];
        SHA256.HashData(data, h);
        return h.SequenceEqual(Hash(i));
    }

    /// <summary>
    /// Inflates chunk <paramref name="i"/> from its compressed bytes into <paramref name="output"/> (at least
    /// <see cref="Length"/> long) and checks it against its hash; false when it is corrupt (wrong size, bad deflate,
    /// wrong hash).
    /// </summary>
    public bool TryInflate(int i, byte[] compressed, byte[] output)
    {
        int length = Length(i);
        try
        {
            using var source = new MemoryStream(compressed, 0, _compressed[i], writable: false);
            using var inflate = new DeflateStream(source, CompressionMode.Decompress);
            int got = 0, n;
            while (got < length && (n = inflate.Read(output, got, length - got)) > 0) got += n;
            Span<byte> more = stackalloc byte[1];
            if (got != length || inflate.Read(more) > 0) return false;   // short, or longer than the chunk
        }
        catch (InvalidDataException) { return false; }
        return Matches(i, output.AsSpan(0, length));
    }

    /// <summary>
    /// Cuts <paramref name="image"/> into chunks, compresses them (on every core) into <paramref name="payload"/>, and
    /// returns the index's bytes. What the release tooling runs (<c>pearl2d pack</c>).
    /// </summary>
    public static byte[] Build(Stream image, Stream payload, int chunkSize = DefaultChunkSize)
    {
        if (chunkSize is < BlockSize or > MaxChunkSize || chunkSize % BlockSize != 0) throw new ArgumentOutOfRangeException(nameof(chunkSize));
        var entries = new MemoryStream();
        long imageSize = 0;
        int count = 0;
        // A batch of chunks at a time: read in order, compress in parallel, write in order.
        int batch = Math.Max(2, Environment.ProcessorCount * 2);
        var plain = new byte[batch][];
        var packed = new byte[batch][];
        var lengths = new int[batch];
        for (int k = 0; k < batch; k++) plain[k] = new byte[chunkSize];
        var entry = new byte[EntryBytes];
        while (true)
        {
            int filled = 0;
            for (; filled < batch; filled++)
            {
                int got = image.ReadAtLeast(plain[filled], chunkSize, throwOnEndOfStream: false);
                if (got == 0) break;
                lengths[filled] = got;
                imageSize += got;
                if (got < chunkSize) { filled++; break; }
            }
            if (filled == 0) break;
            Parallel.For(0, filled, k => packed[k] = Compress(plain[k].AsSpan(0, lengths[k])));
            for (int k = 0; k < filled; k++)
            {
                BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)packed[k].Length);
                SHA256.HashData(plain[k].AsSpan(0, lengths[k]), entry.AsSpan(4));
                BinaryPrimitives.WriteUInt64BigEndian(entry.AsSpan(36), lengths[k] == chunkSize ? WindowOf(plain[k].AsSpan(0, chunkSize)) : 0);
                entries.Write(entry);
                payload.Write(packed[k]);
                count++;
            }
            if (lengths[filled - 1] < chunkSize) break;
        }
        if (imageSize == 0) throw new ArgumentException("the image is empty", nameof(image));
        var index = new byte[HeaderBytes + entries.Length];
        Magic.CopyTo(index);
        index[4] = 1; index[5] = 1;
        BinaryPrimitives.WriteUInt32BigEndian(index.AsSpan(8), (uint)chunkSize);
        BinaryPrimitives.WriteUInt64BigEndian(index.AsSpan(12), (ulong)imageSize);
        BinaryPrimitives.WriteUInt32BigEndian(index.AsSpan(20), (uint)count);
        entries.ToArray().CopyTo(index, HeaderBytes);
        return index;
    }

    /// <summary>A chunk compressed alone: nothing for zeros (the index records length 0).</summary>
    static byte[] Compress(ReadOnlySpan<byte> chunk)
    {
        if (!chunk.ContainsAnyExcept((byte)0)) return [];
        var output = new MemoryStream(chunk.Length / 2);
        using (var deflate = new DeflateStream(output, CompressionLevel.SmallestSize, leaveOpen: true)) deflate.Write(chunk);
        return output.ToArray();
    }
}
