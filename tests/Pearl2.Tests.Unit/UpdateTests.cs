using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Pearl2.Formats.Update;
using Pearl2.Services.Update;
using Xunit;

namespace Pearl2.Tests.Unit;

public sealed class UpdateManifestTests
{
    static readonly Uri Base = new("http://updates.example/qemu-virt/manifest.json");
    static readonly string Sha = new('a', 64);

    static string Json(string version = "0.2.0", string board = "qemu-virt", string payload = "pearl2-qemu-virt-0.2.0.chunks", string size = "1000", string? sha = null) =>
        $"{{\"version\":\"{version}\",\"board\":\"{board}\",\"size\":{size},\"sha256\":\"{sha ?? Sha}\",\"payload\":\"{payload}\"," +
        $"\"index\":\"/index/pearl2-qemu-virt-0.2.0.index\",\"indexSha256\":\"{new string('b', 64)}\",\"notes\":\"Fixes.\"}}";

    [Fact]
    public void ParsesAManifestAndResolvesThePayloadAndIndexAgainstItsUrl()
    {
        var m = UpdateManifest.Parse(Encoding.UTF8.GetBytes(Json()), Base);
        Assert.Equal(new FirmwareVersion(0, 2, 0), m.Version);
        Assert.Equal("qemu-virt", m.Board);
        Assert.Equal("http://updates.example/qemu-virt/pearl2-qemu-virt-0.2.0.chunks", m.Payload.ToString());
        Assert.Equal("http://updates.example/index/pearl2-qemu-virt-0.2.0.index", m.Index.ToString());
        Assert.Equal(Convert.FromHexString(new string('b', 64)), m.IndexSha256);
        Assert.Equal(1000, m.Size);
        Assert.Equal(Convert.FromHexString(Sha), m.Sha256);
        Assert.Equal("Fixes.", m.Notes);
    }

    [Theory]
    [InlineData("{\"board\":\"x\"}", "manifest.version: missing")]
    [InlineData("[1]", "manifest: not a JSON object")]
    [InlineData("{", "manifest: not JSON")]
    public void RefusesMalformedManifests(string json, string reason) =>
        Assert.StartsWith(reason, Assert.Throws<ManifestException>(() => UpdateManifest.Parse(Encoding.UTF8.GetBytes(json), Base)).Message);

    [Theory]
    [InlineData("1.2", null, null, null, null, "manifest.version")]
    [InlineData("1.02.3", null, null, null, null, "manifest.version")]
    [InlineData("0.2.0", "", null, null, null, "manifest.board")]
    [InlineData("0.2.0", null, "ftp://x/y", null, null, "manifest.payload")]
    [InlineData("0.2.0", null, null, "0", null, "manifest.size")]
    [InlineData("0.2.0", null, null, "-5", null, "manifest.size")]
    [InlineData("0.2.0", null, null, "1.5", null, "manifest.size")]
    [InlineData("0.2.0", null, null, null, "ABCD", "manifest.sha256")]
    public void RefusalsNameTheField(string version, string? board, string? payload, string? size, string? sha, string field)
    {
        var json = Json(version, board ?? "qemu-virt", payload ?? "a.chunks", size ?? "1000", sha);
        Assert.StartsWith(field + ":", Assert.Throws<ManifestException>(() => UpdateManifest.Parse(Encoding.UTF8.GetBytes(json), Base)).Message);
    }

    [Fact]
    public void VersionsOrderNumerically()
    {
        Assert.True(FirmwareVersion.TryParse("0.10.0", out var ten));
        Assert.True(FirmwareVersion.TryParse("0.9.9", out var nine));
        Assert.True(ten > nine);
        foreach (var bad in new[] { "", "1", "1.2.3.4", "a.b.c", "1.-2.3", " 1.2.3", "1.2.3-rc1" })
            Assert.False(FirmwareVersion.TryParse(bad, out _), bad);
    }

    [Fact]
    public void OnlyTheKeysOwnSignatureOfTheExactBytesIsValid()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);   // a throwaway key; no private key is ever committed
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var manifest = Encoding.UTF8.GetBytes(Json());
        var sig = key.SignData(manifest, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        using var publicOnly = ECDsa.Create();
        publicOnly.ImportSubjectPublicKeyInfo(key.ExportSubjectPublicKeyInfo(), out _);
        Assert.True(UpdateManifest.SignatureIsValid(manifest, sig, publicOnly));
        var flipped = (byte[])manifest.Clone();
        flipped[20] ^= 1;
        Assert.False(UpdateManifest.SignatureIsValid(flipped, sig, publicOnly));
        Assert.False(UpdateManifest.SignatureIsValid(manifest, other.SignData(manifest, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence), publicOnly));
        Assert.False(UpdateManifest.SignatureIsValid(manifest, [], publicOnly));
        Assert.False(UpdateManifest.SignatureIsValid(manifest, sig[..^3], publicOnly));
    }

    [Fact]
    public void RefusesAnotherBoardAnOlderOrSameVersionAndAKnownBadOne()
    {
        var m = UpdateManifest.Parse(Encoding.UTF8.GetBytes(Json("0.2.0")), Base);
        Assert.Null(m.RefusalFor("qemu-virt", new(0, 1, 9), []));
        Assert.Contains("for board 'qemu-virt', this is 'rpi4-hdmi'", m.RefusalFor("rpi4-hdmi", new(0, 1, 0), []));
        Assert.Contains("not newer than the running 0.2.0", m.RefusalFor("qemu-virt", new(0, 2, 0), []));
        Assert.Contains("not newer than the running 0.3.0", m.RefusalFor("qemu-virt", new(0, 3, 0), []));
        Assert.Contains("failed its health check", m.RefusalFor("qemu-virt", new(0, 1, 0), [new(0, 2, 0)]));
    }
}

/// <summary>
/// An HTTP/1.1 server on loopback for one update payload, which answers Range requests ("bytes=a-b", "bytes=a-") and
/// misbehaves on request: cuts the connection at given payload offsets (one per request), stalls, answers 500, ignores
/// Range, flips a byte, or says the payload is longer than it is.
/// </summary>
sealed class FaultyImageServer : IAsyncDisposable
{
    readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    readonly byte[] _payload;
    readonly CancellationTokenSource _stop = new();
    readonly Task _loop;
    public readonly Queue<long> CutAt = new();
    public long? StallAt;
    public bool Fail500, IgnoreRange, WrongLength;
    public long? FlipAt;
    public readonly List<string> Ranges = new();
    /// <summary>Other files by path (the manifest, its signature, the index), served plainly.</summary>
    public readonly Dictionary<string, byte[]> Files = new();
    public int PayloadRequests;

    public FaultyImageServer(byte[] payload)
    {
        _payload = payload;
        _listener.Start();
        _loop = AcceptAsync();
    }

    public Uri Url => new($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/qemu-virt/image.chunks");
    public Uri IndexUrl => new(Url, "image.index");

    async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient c;
            try { c = await _listener.AcceptTcpClientAsync(_stop.Token); } catch (OperationCanceledException) { return; }
            _ = ServeAsync(c);
        }
    }

    async Task ServeAsync(TcpClient client)
    {
        using var _ = client;
        var s = client.GetStream();
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal) && await s.ReadAsync(one) == 1) head.Append((char)one[0]);
        var lines = head.ToString().Split("\r\n");
        var path = lines[0].Split(' ') is { Length: >= 2 } requestLine ? requestLine[1] : "";
        var range = lines.FirstOrDefault(l => l.StartsWith("Range:", StringComparison.OrdinalIgnoreCase));
        try
        {
            if (Fail500) { await s.WriteAsync("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray()); return; }
            if (path != Url.AbsolutePath)
            {
                byte[]? file;
                lock (Files) Files.TryGetValue(path, out file);
                var answer = file is null ? "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray()
                    : [.. Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {file.Length}\r\nConnection: close\r\n\r\n"), .. file];
                await s.WriteAsync(answer);
                return;
            }
            Interlocked.Increment(ref PayloadRequests);
            lock (Ranges) Ranges.Add(range ?? "");
            long from = 0, to = _payload.Length - 1;
            bool partial = range is not null && !IgnoreRange;
            if (partial)
            {
                var spec = range!.Split('=')[1].Trim().Split('-');
                from = long.Parse(spec[0]);
                if (spec[1].Length > 0) to = Math.Min(to, long.Parse(spec[1]));
            }
            var body = _payload.AsSpan((int)from, (int)(to - from + 1)).ToArray();
            if (FlipAt is { } f && f >= from && f <= to) body[f - from] ^= 0x40;
            string status = partial ? $"206 Partial Content\r\nContent-Range: bytes {from}-{to}/{_payload.Length}" : "200 OK";
            await s.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: {body.Length + (WrongLength ? 3 : 0)}\r\nConnection: close\r\n\r\n"));
            long end = to + 1;   // the payload offset the body stops at
            lock (CutAt) if (CutAt.Count > 0 && CutAt.Peek() < end) end = Math.Max(from, CutAt.Dequeue());
            if (StallAt is { } st && st >= from && st < end) end = st;
            await s.WriteAsync(body.AsMemory(0, (int)(end - from)));
            if (StallAt is not null && end == StallAt) await Task.Delay(Timeout.Infinite, _stop.Token);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException) { }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        try { await _loop; } catch (OperationCanceledException) { }
    }
}

/// <summary>An update packed as the release tooling packs it: the image, its chunk payload and index.</summary>
sealed record Packed(byte[] Image, byte[] Payload, byte[] IndexBytes, ChunkIndex Index)
{
    /// <summary>Random chunks with runs of zeros among them (the free space of a file system), cut in chunks of 64 KiB.</summary>
    public static Packed Of(byte[] image, int chunkSize = 64 << 10)
    {
        var payload = new MemoryStream();
        var index = ChunkIndex.Build(new MemoryStream(image), payload, chunkSize);
        return new Packed(image, payload.ToArray(), index, ChunkIndex.Parse(index));
    }

    public static byte[] SomeImage(int bytes)
    {
        var image = RandomNumberGenerator.GetBytes(bytes);
        Array.Clear(image, 5 * (64 << 10), 4 * (64 << 10));          // chunks 5..8 are zeros
        Array.Clear(image, bytes - (64 << 10) - 100, (64 << 10));    // and most of the one before last
        return image;
    }

    public int ChunkAt(long payloadOffset) => Enumerable.Range(0, Index.Count).Last(i => Index.PayloadOffset(i) <= payloadOffset && !Index.IsZero(i));
    public string RangeFrom(int chunk) => $"Range: bytes={Index.PayloadOffset(chunk)}-{Index.PayloadSize - 1}";
}

public sealed class ChunkIndexTests
{
    [Fact]
    public void TheIndexOfTwoChunksOfZerosIsItsHeaderAndTwoEntriesByteForByte()
    {
        var payload = new MemoryStream();
        var index = ChunkIndex.Build(new MemoryStream(new byte[8192]), payload, chunkSize: 4096);
        var zeroPage = "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7";   // SHA-256 of 4096 zero bytes
        var zeroWindow = "93d76fe148c689ba";   // one block's window is its XXH3-64 (xxhsum -H3 of 4096 zero bytes)
        Assert.Equal("50324349" + "01" + "01" + "0000" + "00001000" + "0000000000002000" + "00000002" +
                     "00000000" + zeroPage + zeroWindow + "00000000" + zeroPage + zeroWindow, Convert.ToHexStringLower(index));
        Assert.Equal(0, payload.Length);   // zeros travel as nothing
    }

    [Fact]
    public void ChunksInflateToTheImageAndZerosAreNotStored()
    {
        var p = Packed.Of(Packed.SomeImage((1 << 20) + 12345));
        Assert.Equal(17, p.Index.Count);                       // 16 whole chunks and a short one
        Assert.Equal(12345, p.Index.Length(16));
        Assert.Equal([5, 6, 7, 8], Enumerable.Range(0, 17).Where(p.Index.IsZero));
        Assert.Equal(p.Payload.Length, p.Index.PayloadSize);
        var output = new byte[p.Index.ChunkSize];
        var rebuilt = new MemoryStream();
        for (int i = 0; i < p.Index.Count; i++)
        {
            if (p.Index.IsZero(i)) { rebuilt.Write(new byte[p.Index.Length(i)]); continue; }
            var packed = p.Payload.AsSpan((int)p.Index.PayloadOffset(i), p.Index.CompressedLength(i)).ToArray();
            Assert.True(p.Index.TryInflate(i, packed, output), $"chunk {i}");
            rebuilt.Write(output, 0, p.Index.Length(i));
        }
        Assert.Equal(p.Image, rebuilt.ToArray());
        // One flipped bit anywhere in a chunk is caught, whether deflate notices or only the hash does.
        var bad = p.Payload.AsSpan((int)p.Index.PayloadOffset(3), p.Index.CompressedLength(3)).ToArray();
        bad[bad.Length / 2] ^= 0x10;
        Assert.False(p.Index.TryInflate(3, bad, output));
        Assert.False(p.Index.TryInflate(4, bad, output));       // another chunk's bytes
    }

    [Fact]
    public void TheWindowHashSlidesOneBlockAtATimeToTheWindowOfTheLastBlocks()
    {
        Assert.Equal(unchecked(0x93d76fe148c689baUL * ChunkIndex.WindowPrime + 0x93d76fe148c689baUL), ChunkIndex.WindowOf(new byte[8192]));
        Assert.Equal(0UL, ChunkIndex.WindowOf(new byte[5000]));   // not whole blocks
        var data = RandomNumberGenerator.GetBytes(10 * 4096);
        var window = new ChunkIndex.SlidingWindow(3);
        for (int b = 0; b < 10; b++)
        {
            window.Push(ChunkIndex.BlockHash(data.AsSpan(b * 4096, 4096)));
            Assert.Equal(b >= 2, window.Full);
            if (window.Full) Assert.Equal(ChunkIndex.WindowOf(data.AsSpan((b - 2) * 4096, 3 * 4096)), window.Value);
        }
    }

    [Theory]
    [InlineData(0, 0x51, "index: not a Pearl2 chunk index")]
    [InlineData(4, 2, "index: version 2 is not 1")]
    [InlineData(5, 3, "index: codec 3 is not 1")]
    [InlineData(23, 7, "index: 7 chunks of 65536 bytes do not make an image of")]
    [InlineData(24, 0x7f, "index: chunk 0 is")]                 // a compressed length no chunk can need
    public void MalformedIndexesAreRefusedWithTheReason(int at, byte value, string reason)
    {
        var p = Packed.Of(Packed.SomeImage(1 << 20));
        var bytes = (byte[])p.IndexBytes.Clone();
        bytes[at] = value;
        Assert.StartsWith(reason, Assert.Throws<ManifestException>(() => ChunkIndex.Parse(bytes)).Message);
        Assert.StartsWith("index: ", Assert.Throws<ManifestException>(() => ChunkIndex.Parse(p.IndexBytes.AsSpan(0, p.IndexBytes.Length - 1))).Message);
    }
}

public sealed class SlotDownloaderTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pearl2-slot").FullName;
    readonly Packed _p = Packed.Of(Packed.SomeImage(3 << 20));
    readonly ListLogger _log = new();
    static readonly HttpClient Http = new();

    public void Dispose() => Directory.Delete(_dir, true);

    UpdateManifest Manifest(FaultyImageServer server) =>
        new(new(0, 2, 0), "qemu-virt", server.Url, server.IndexUrl, SHA256.HashData(_p.IndexBytes), _p.Image.Length, SHA256.HashData(_p.Image), "");

    SlotDownloader Downloader(int cuts = 30, double stallSeconds = 5) =>
        new(Http, TimeProvider.System, _log) { MaxCuts = cuts, RetryDelay = TimeSpan.FromMilliseconds(20), StallTimeout = TimeSpan.FromSeconds(stallSeconds), CheckpointBytes = 256 << 10 };

    FileSlot Slot(string name = "b") => new(name, Path.Combine(_dir, "slot-" + name), 8 << 20);
    Task<bool> SlotIsTheImage(ISlot slot) => SlotDownloader.VerifyAsync(slot, _p.Image.Length, SHA256.HashData(_p.Image), default);
    int Zeros => Enumerable.Range(0, _p.Index.Count).Count(_p.Index.IsZero);

    [Fact]
    public async Task AGoodDownloadFetchesEveryStoredChunkInOneRequestWritesTheZerosAndReportsProgress()
    {
        await using var server = new FaultyImageServer(_p.Payload);
        var slot = Slot();
        var reports = new List<DownloadProgress>();
        var took = await Downloader().DownloadAsync(Manifest(server), _p.Index, slot, null, reports.Add, default);
        Assert.True(await SlotIsTheImage(slot));
        Assert.Equal(new DownloadSummary(0, 0, Zeros, _p.Index.Count - Zeros, _p.Payload.Length, _p.Payload.Length), took);
        Assert.True(_p.Payload.Length < _p.Image.Length);
        Assert.Equal(100, reports[^1].Percent);
        Assert.Equal([_p.RangeFrom(0)], server.Ranges);
    }

    [Fact]
    public async Task TenCutsAtRandomPointsAreResumedAtTheirChunkAndTheHashMatches()
    {
        await using var server = new FaultyImageServer(_p.Payload);
        var cuts = Enumerable.Range(0, 10).Select(_ => (long)Random.Shared.Next(1, _p.Payload.Length)).Order().ToArray();
        foreach (var c in cuts) server.CutAt.Enqueue(c);
        var slot = Slot();
        await Downloader().DownloadAsync(Manifest(server), _p.Index, slot, null, null, default);
        Assert.True(await SlotIsTheImage(slot));
        Assert.Equal(11, server.Ranges.Count);
        Assert.Equal(cuts.Select(c => _p.RangeFrom(_p.ChunkAt(c))), server.Ranges.Skip(1));   // each resume starts at the chunk it cut
        Assert.Equal(10, _log.Lines.Count(l => l.StartsWith("update.download_cut", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task AfterAPowerCutTheNextRunKeepsTheChunksInPlaceAndFetchesOnlyTheRest()
    {
        await using var server = new FaultyImageServer(_p.Payload);
        server.CutAt.Enqueue(1_000_000);
        var slot = Slot();
        // The first run survives no cut: it ends there, as if the power went.
        Assert.Contains("gave up after 1 cuts", (await Assert.ThrowsAsync<UpdateException>(() => Downloader(cuts: 0).DownloadAsync(Manifest(server), _p.Index, slot, null, null, default))).Message);
        int cutChunk = _p.ChunkAt(1_000_000);
        var took = await Downloader().DownloadAsync(Manifest(server), _p.Index, slot, null, null, default);
        Assert.Equal(_p.RangeFrom(cutChunk), server.Ranges[^1]);
        Assert.Equal(_p.Payload.Length - _p.Index.PayloadOffset(cutChunk), took.WireBytes);
        // Kept: every chunk before the cut, and the zero chunks after it (the first run wrote them before fetching).
        Assert.Equal(Enumerable.Range(0, _p.Index.Count).Count(i => i < cutChunk || _p.Index.IsZero(i)), took.Kept);
        Assert.True(await SlotIsTheImage(slot));

        // A third run finds everything in place and asks the server for nothing.
        int before = server.PayloadRequests;
        took = await Downloader().DownloadAsync(Manifest(server), _p.Index, slot, null, null, default);
        Assert.Equal((_p.Index.Count, 0L, before), (took.Kept, took.WireBytes, server.PayloadRequests));
    }

    [Fact]
    public async Task OnlyTheChunksThatChangedSinceTheRunningVersionAreFetched()
    {
        // The running slot holds the previous version: the same image but for chunks 2 and 30..31.
        var previous = (byte[])_p.Image.Clone();
        previous[2 * (64 << 10) + 7] ^= 1;
        RandomNumberGenerator.Fill(previous.AsSpan(30 * (64 << 10), 2 * (64 << 10)));
        File.WriteAllBytes(Path.Combine(_dir, "slot-a"), previous);
        await using var server = new FaultyImageServer(_p.Payload);
        var slot = Slot();
        var took = await Downloader().DownloadAsync(Manifest(server), _p.Index, slot, Slot("a"), null, default);
        Assert.True(await SlotIsTheImage(slot));
        Assert.Equal((0, _p.Index.Count - Zeros - 3, 3), (took.Kept, took.Seeded, took.Fetched));
        Assert.Equal([$"Range: bytes={_p.Index.PayloadOffset(2)}-{_p.Index.PayloadOffset(3) - 1}", $"Range: bytes={_p.Index.PayloadOffset(30)}-{_p.Index.PayloadOffset(32) - 1}"], server.Ranges);
        Assert.Equal(_p.Index.CompressedLength(2) + _p.Index.CompressedLength(30) + _p.Index.CompressedLength(31), took.WireBytes);
    }

    [Fact]
    public async Task ChunksThatMovedInTheRunningSlotAreFoundThereToo()
    {
        // The running slot is the image with 12 KiB more in the middle of chunk 10 (a file that grew): every chunk
        // after it sits 3 blocks later there. All are still found; only chunk 10 itself has to come from the server.
        var previous = new byte[_p.Image.Length + 12288];
        int at = 10 * (64 << 10) + 5000;
        _p.Image.AsSpan(0, at).CopyTo(previous);
        RandomNumberGenerator.Fill(previous.AsSpan(at, 12288));
        _p.Image.AsSpan(at).CopyTo(previous.AsSpan(at + 12288));
        File.WriteAllBytes(Path.Combine(_dir, "slot-a"), previous);
        await using var server = new FaultyImageServer(_p.Payload);
        var slot = Slot();
        var took = await Downloader().DownloadAsync(Manifest(server), _p.Index, slot, Slot("a"), null, default);
        Assert.True(await SlotIsTheImage(slot));
        Assert.Equal((0, _p.Index.Count - Zeros - 1, 1), (took.Kept, took.Seeded, took.Fetched));
        Assert.Equal([$"Range: bytes={_p.Index.PayloadOffset(10)}-{_p.Index.PayloadOffset(11) - 1}"], server.Ranges);
    }

    [Fact]
    public async Task TheRunningSlotIsReadOnlyAsFarAsItsFileSystemGoes()
    {
        // A real ext4 superblock says how big its file system is; random bytes have none.
        var fs = Path.Combine(_dir, "fs.img");
        NativeProgram.Run("mkfs.ext4", $"-q -F -b 4096 {fs} 20M", _dir);
        await using (var f = File.OpenRead(fs)) Assert.Equal(20L << 20, await SlotDownloader.FileSystemBytesAsync(f, new byte[4096], default));
        await using (var r = new MemoryStream(RandomNumberGenerator.GetBytes(8192))) Assert.Null(await SlotDownloader.FileSystemBytesAsync(r, new byte[4096], default));

        // A running slot that is the image, but whose chunk 0 carries a superblock of a 1 MiB file system:
        // chunks 1-15 are found, the ones past 1 MiB (stale space of the partition) are not looked for.
        var previous = (byte[])_p.Image.Clone();
        var sb = previous.AsSpan(1024, 1024);
        sb.Clear();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(sb[0x38..], 0xEF53);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(sb[0x04..], 256);   // blocks
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(sb[0x18..], 2);     // of 4096 bytes
        File.WriteAllBytes(Path.Combine(_dir, "slot-a"), previous);
        await using var server = new FaultyImageServer(_p.Payload);
        var slot = Slot();
        var took = await Downloader().DownloadAsync(Manifest(server), _p.Index, slot, Slot("a"), null, default);
        Assert.True(await SlotIsTheImage(slot));
        Assert.Equal((15 - Zeros, 1 + _p.Index.Count - 16), (took.Seeded, took.Fetched));
    }

    [Fact]
    public async Task AStallTimesOutAndIsResumed_AStallThatNeverEndsGivesUp()
    {
        await using var server = new FaultyImageServer(_p.Payload);
        server.StallAt = 500_000;
        var slot = Slot();
        // A second without a byte is the stall (0.3 s was too short on a loaded machine: the first answer itself came later).
        var e = await Assert.ThrowsAsync<UpdateException>(() => Downloader(cuts: 1, stallSeconds: 1).DownloadAsync(Manifest(server), _p.Index, slot, null, null, default));
        Assert.Contains("gave up after 2 cuts", e.Message);
        Assert.True(_log.Lines.Any(l => l.Contains($"reason=\"no byte for 1 s in chunk {_p.ChunkAt(500_000)}\"")), string.Join("\n", _log.Lines));
        server.StallAt = null;
        await Downloader().DownloadAsync(Manifest(server), _p.Index, slot, null, null, default);
        Assert.True(await SlotIsTheImage(slot));
        Assert.Equal(_p.RangeFrom(_p.ChunkAt(500_000)), server.Ranges[^1]);
    }

    [Fact]
    public async Task ServerErrorsAndLiesAreRefused()
    {
        await using var server = new FaultyImageServer(_p.Payload);
        server.Fail500 = true;
        Assert.Contains("answered 500", (await Assert.ThrowsAsync<UpdateException>(() => Downloader().DownloadAsync(Manifest(server), _p.Index, Slot(), null, null, default))).Message);
        server.Fail500 = false;
        server.IgnoreRange = server.WrongLength = true;
        Assert.Contains("the signed index says", (await Assert.ThrowsAsync<UpdateException>(() => Downloader().DownloadAsync(Manifest(server), _p.Index, Slot(), null, null, default))).Message);
        var big = Manifest(server) with { Size = 9 << 20 };
        Assert.Contains("the index describes", (await Assert.ThrowsAsync<UpdateException>(() => Downloader().DownloadAsync(big, _p.Index, Slot(), null, null, default))).Message);
        var small = new FileSlot("b", Path.Combine(_dir, "small"), 1 << 20);
        Assert.Contains("larger than slot b", (await Assert.ThrowsAsync<UpdateException>(() => Downloader().DownloadAsync(Manifest(server), _p.Index, small, null, null, default))).Message);
    }

    [Fact]
    public async Task AFlippedByteIsRefusedBeforeItsChunkIsWritten()
    {
        await using var server = new FaultyImageServer(_p.Payload);
        server.FlipAt = 2_000_001;
        var slot = Slot();
        var e = await Assert.ThrowsAsync<UpdateRefusedException>(() => Downloader().DownloadAsync(Manifest(server), _p.Index, slot, null, null, default));
        int bad = _p.ChunkAt(2_000_001);
        Assert.StartsWith($"chunk {bad} (payload bytes {_p.Index.PayloadOffset(bad)}-", e.Message);
        var written = File.ReadAllBytes(slot.Path);   // the chunks before it, and the zero chunks, are in place; it is not
        Assert.Equal(_p.Image.AsSpan(0, (int)_p.Index.ImageOffset(bad)).ToArray(), written.AsSpan(0, (int)_p.Index.ImageOffset(bad)).ToArray());
        var where = written.AsSpan((int)Math.Min(written.Length, _p.Index.ImageOffset(bad)));
        Assert.False(where[..Math.Min(where.Length, _p.Index.Length(bad))].ContainsAnyExcept((byte)0));
    }

    [Fact]
    public async Task AServerThatIgnoresRangeIsReadFromTheStartAndTheMissingChunksTakenFromIt()
    {
        await using var server = new FaultyImageServer(_p.Payload) { IgnoreRange = true };
        server.CutAt.Enqueue(1_500_000);
        var slot = Slot();
        var took = await Downloader().DownloadAsync(Manifest(server), _p.Index, slot, null, null, default);
        Assert.True(await SlotIsTheImage(slot));
        Assert.Equal(2, server.Ranges.Count);
        Assert.Equal(1_500_000 + _p.Payload.Length, took.WireBytes);   // the start again, then the rest
    }
}

sealed class FakeBootControl(string booted) : IBootControl
{
    public BootState State = new();
    public int Reboots;
    public string Booted => booted;
    public BootState Read() => State;
    public void MarkTryOnce(string slot, FirmwareVersion version) => State.MarkTry(slot, version);
    public void Confirm() => State.ConfirmTry(booted);
    public void ClearTry() => State.ClearTry();
    public void Reboot() => Reboots++;
}

public sealed class UpdaterTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pearl2-updater").FullName;
    readonly Packed _p = Packed.Of(Packed.SomeImage(1 << 20));
    readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);   // throwaway signing key
    readonly ListLogger _log = new();
    static readonly HttpClient Http = new();

    public void Dispose() { _key.Dispose(); Directory.Delete(_dir, true); }

    /// <summary>Publishes a manifest for the server's payload and index, signed by <paramref name="signer"/> (the device's key by default).</summary>
    void Publish(FaultyImageServer server, string version = "0.2.0", string board = "qemu-virt", ECDsa? signer = null, byte[]? sha = null, byte[]? index = null, bool indexSigned = false)
    {
        var json = Encoding.UTF8.GetBytes($"{{\"version\":\"{version}\",\"board\":\"{board}\",\"size\":{_p.Image.Length},\"sha256\":\"{Convert.ToHexStringLower(sha ?? SHA256.HashData(_p.Image))}\"," +
            $"\"payload\":\"{server.Url}\",\"index\":\"{server.IndexUrl}\",\"indexSha256\":\"{Convert.ToHexStringLower(SHA256.HashData(indexSigned ? index! : _p.IndexBytes))}\",\"notes\":\"test\"}}");
        lock (server.Files)
        {
            server.Files[server.IndexUrl.AbsolutePath] = index ?? _p.IndexBytes;
            server.Files["/updates/qemu-virt/manifest.json"] = json;
            server.Files["/updates/qemu-virt/manifest.json.sig"] = (signer ?? _key).SignData(json, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        }
    }

    Updater NewUpdater(FaultyImageServer server, FakeBootControl boot, int cuts = 30, double confirmSeconds = 5, double upSeconds = 0)
    {
        var publicKey = ECDsa.Create();
        publicKey.ImportSubjectPublicKeyInfo(_key.ExportSubjectPublicKeyInfo(), out _);
        var o = new UpdaterOptions(new Uri(server.Url, "/updates/"), "qemu-virt", new(0, 1, 0), publicKey, TimeSpan.FromHours(1), TimeSpan.FromSeconds(confirmSeconds), Path.Combine(_dir, "state"), TimeSpan.FromSeconds(upSeconds));
        var downloader = new SlotDownloader(Http, TimeProvider.System, _log) { MaxCuts = cuts, RetryDelay = TimeSpan.FromMilliseconds(10), CheckpointBytes = 64 << 10 };
        return new Updater(o, boot, slot => new FileSlot(slot, Path.Combine(_dir, "slot-" + slot), 4 << 20), Http, downloader, TimeProvider.System, _log);
    }

    string SlotB => Path.Combine(_dir, "slot-b");

    [Fact]
    public async Task AGoodUpdateIsWrittenToTheOtherSlotMarkedToTryOnceAndRebootsWithProgressLogged()
    {
        await using var server = new FaultyImageServer(_p.Payload);
        Publish(server);
        var boot = new FakeBootControl("a");
        await using var updater = NewUpdater(server, boot);
        Assert.Equal("installed 0.2.0 in slot b; rebooting", await updater.CheckAsync(default));
        Assert.Equal(_p.Image, File.ReadAllBytes(SlotB).AsSpan(0, _p.Image.Length).ToArray());
        Assert.Equal(("b", false, "0.2.0", 1), (boot.State.Trying, boot.State.TryBooted, boot.State.Versions["b"], boot.Reboots));
        Assert.Contains(_log.Lines, l => l.StartsWith("update.progress version=0.2.0 percent=100 ", StringComparison.Ordinal));
        Assert.Contains(_log.Lines, l => l.StartsWith("update.switching version=0.2.0 slot=b running=0.1.0", StringComparison.Ordinal));
        Assert.Contains(_log.Lines, l => l.StartsWith($"update.downloaded version=0.2.0 slot=b kept=0 seeded=0 zero=4 fetched={_p.Index.Count - 4} wire_bytes={_p.Payload.Length} ", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("signature", "the manifest's signature does not verify")]
    [InlineData("older", "refused: version 0.0.9 is not newer than the running 0.1.0")]
    [InlineData("same", "up to date (0.1.0)")]
    [InlineData("board", "the image is for board 'rpi4-hdmi'")]
    [InlineData("bad", "failed its health check on this device before")]
    [InlineData("hash", "refused: slot b does not hash to the signed SHA-256")]
    [InlineData("flip", "does not inflate to its signed hash")]
    [InlineData("index", "refused: the chunk index http://")]
    [InlineData("torn-index", "refused: index: ")]
    public async Task RefusalsLeaveTheRunningVersionAlone(string fault, string result)
    {
        await using var server = new FaultyImageServer(_p.Payload);
        using var stranger = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var boot = new FakeBootControl("a");
        switch (fault)
        {
            case "signature": Publish(server, signer: stranger); break;
            case "older": Publish(server, version: "0.0.9"); break;
            case "same": Publish(server, version: "0.1.0"); break;
            case "board": Publish(server, board: "rpi4-hdmi"); break;
            case "bad": Publish(server); boot.State.Bad.Add("0.2.0"); break;
            case "hash": Publish(server, sha: new byte[32]); break;
            case "flip": Publish(server); server.FlipAt = 12345; break;
            case "index": Publish(server, index: [.. _p.IndexBytes[..^1], (byte)(_p.IndexBytes[^1] ^ 1)]); break;
            case "torn-index": Publish(server, index: _p.IndexBytes[..^1], indexSigned: true); break;   // signed, but malformed
        }
        await using var updater = NewUpdater(server, boot);
        Assert.Contains(result, await updater.CheckAsync(default));
        Assert.Equal((null, 0), (boot.State.Trying, boot.Reboots));
        Assert.Equal(UpdatePhase.Idle, updater.Status.Phase);
        if (fault is not ("hash" or "flip")) Assert.False(File.Exists(SlotB));   // nothing was downloaded
    }

    [Fact]
    public async Task ServerDownAndServerErrorsAreReportedAndChangeNothing()
    {
        var server = new FaultyImageServer(_p.Payload);
        Publish(server);
        server.Fail500 = true;
        var boot = new FakeBootControl("a");
        await using (var updater = NewUpdater(server, boot))
            Assert.Contains("answered 500", await updater.CheckAsync(default));
        var url = server.Url;
        await server.DisposeAsync();   // nothing listens on the port any more
        await using (var updater = NewUpdater(server, boot))
            Assert.StartsWith("check failed:", await updater.CheckAsync(default));
        Assert.Equal((null, 0), (boot.State.Trying, boot.Reboots));
        Assert.Equal(2, _log.Lines.Count(l => l.StartsWith("update.check_failed", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task AnInterruptedDownloadResumesAtTheNextCheckFromTheChunkItCut()
    {
        await using var server = new FaultyImageServer(_p.Payload);
        Publish(server);
        server.CutAt.Enqueue(700_000);
        var boot = new FakeBootControl("a");
        await using (var first = NewUpdater(server, boot, cuts: 0))
            Assert.StartsWith("download of 0.2.0 failed", await first.CheckAsync(default));
        Assert.Equal(0, boot.Reboots);
        // A new process (as after a power cut) picks the saved state up.
        await using (var second = NewUpdater(server, boot))
            Assert.Equal("installed 0.2.0 in slot b; rebooting", await second.CheckAsync(default));
        Assert.Equal(_p.RangeFrom(_p.ChunkAt(700_000)), server.Ranges[^1]);
        Assert.Equal(1, boot.Reboots);
    }

    [Fact]
    public async Task ATryConfirmsWhenHealthyAndRebootsBackWhenNot()
    {
        await using var server = new FaultyImageServer(_p.Payload);
        var healthyBoot = new FakeBootControl("b") { State = new BootState { Active = "a", Trying = "b", TryBooted = true } };
        await using (var u = NewUpdater(server, healthyBoot))
            await u.ConfirmIfTryingAsync(() => true, default);
        Assert.Equal(("b", (string?)null, 0), (healthyBoot.State.Active, healthyBoot.State.Trying, healthyBoot.Reboots));

        var sickBoot = new FakeBootControl("b") { State = new BootState { Active = "a", Trying = "b", TryBooted = true } };
        await using (var u = NewUpdater(server, sickBoot, confirmSeconds: 1.5))
            await u.ConfirmIfTryingAsync(() => false, default);
        Assert.Equal(("a", "b", 1), (sickBoot.State.Active, sickBoot.State.Trying, sickBoot.Reboots));
        Assert.Contains(_log.Lines, l => l.StartsWith("update.unhealthy version=0.1.0 slot=b", StringComparison.Ordinal));

        // The deadline runs from the boot: a firmware restarted late in its try (its watchdog) gets only what is left.
        var lateBoot = new FakeBootControl("b") { State = new BootState { Active = "a", Trying = "b", TryBooted = true } };
        int asked = 0;
        await using (var u = NewUpdater(server, lateBoot, confirmSeconds: 30, upSeconds: 30))
            await u.ConfirmIfTryingAsync(() => { asked++; return false; }, default);
        Assert.Equal((1, 0), (lateBoot.Reboots, asked));   // no time was left to wait for health
    }
}

public sealed class BootLoaderTests
{
    [Fact]
    public void ATryIsBootedOnceThenConfirmedOrAbandonedAndRememberedBad()
    {
        var s = new BootState();
        Assert.Equal(new BootDecision("a", false, null, "slot a"), BootLoader.Decide(s));
        s.Versions["b"] = "0.2.0"; s.Trying = "b";
        Assert.Equal(("b", true), (BootLoader.Decide(s) is var d ? (d.Slot, d.IsTry) : default));
        Assert.True(s.TryBooted);
        // Rebooted without a confirm (it crashed, hung or was unhealthy): back to a, and 0.2.0 is never tried again.
        var back = BootLoader.Decide(s);
        Assert.Equal(("a", false, "b"), (back.Slot, back.IsTry, back.FellBackFrom));
        Assert.Equal(["0.2.0"], s.Bad);
        Assert.Null(s.Trying);
        Assert.Equal("a", BootLoader.Decide(s).Slot);
    }

    [Fact]
    public void TheHostStateFileSurvivesAndAConfirmMakesTheTryActive()
    {
        var dir = Directory.CreateTempSubdirectory("pearl2-boot").FullName;
        try
        {
            var before = new FileBootControl(dir, "a", () => { });
            before.MarkTryOnce("b", new(0, 2, 0));
            var s = before.Read();
            BootLoader.Decide(s);
            before.Write(s);
            var after = new FileBootControl(dir, "b", () => { });
            after.Confirm();
            var final = after.Read();
            Assert.Equal(("b", (string?)null, "0.2.0"), (final.Active, final.Trying, final.Versions["b"]));
            Assert.False(File.Exists(Path.Combine(dir, "boot.json.tmp")));
        }
        finally { Directory.Delete(dir, true); }
    }
}

/// <summary>The U-Boot extlinux A/B control, on a directory laid out as the boot partition is.</summary>
public sealed class ExtlinuxBootControlTests : IDisposable
{
    readonly string _boot = Directory.CreateTempSubdirectory("pearl2-extlinux").FullName;

    public ExtlinuxBootControlTests()
    {
        Directory.CreateDirectory(Path.Combine(_boot, "extlinux"));
        File.WriteAllText(Path.Combine(_boot, "extlinux", "extlinux.conf"),
            "default slot-a\ntimeout 1\n\nlabel slot-a\n  kernel /Image\n  append root=PARTUUID=50524c32-02 ro pearl2.slot=a\n\nlabel slot-b\n  kernel /Image\n  append root=PARTUUID=50524c32-03 ro pearl2.slot=b\n");
    }

    public void Dispose() => Directory.Delete(_boot, true);

    string Default => File.ReadAllLines(Path.Combine(_boot, "extlinux", "extlinux.conf"))[0];
    ExtlinuxBootControl On(string slot) => new(_boot, slot, Path.Combine(_boot, "reboot-request"));

    [Fact]
    public void TheSlotComesFromTheKernelCommandLine()
    {
        Assert.Equal("b", ExtlinuxBootControl.BootedSlot("root=PARTUUID=50524c32-03 ro rootwait console=ttyAMA0 quiet pearl2.slot=b"));
        Assert.Equal("a", ExtlinuxBootControl.BootedSlot("pearl2.slot=a ro"));
        Assert.Null(ExtlinuxBootControl.BootedSlot("ro xpearl2.slot=b"));
        Assert.Null(ExtlinuxBootControl.BootedSlot("ro pearl2.slot=c"));
    }

    [Fact]
    public void ATryBootsOnceAndIsConfirmed()
    {
        Assert.Contains("slot a (0.1.0), active a", On("a").SelectAtBoot("0.1.0"));   // first boot writes the state
        On("a").MarkTryOnce("b", new(0, 1, 1));
        Assert.Equal("default slot-b", Default);                                       // U-Boot boots b next
        Assert.Contains("trying slot b (0.1.1) once", On("b").SelectAtBoot("0.1.1"));
        Assert.Equal("default slot-a", Default);                                       // armed: any later boot is a again
        var b = On("b");
        Assert.Equal(("b", true), (b.Read().Trying, b.Read().TryBooted));
        b.Confirm();
        Assert.Equal("default slot-b", Default);
        Assert.Equal(("b", (string?)null), (b.Read().Active, b.Read().Trying));
        Assert.Contains("slot b (0.1.1), active b", On("b").SelectAtBoot("0.1.1"));
    }

    [Fact]
    public void ATryThatNeverConfirmsFallsBackAndIsRecordedBad()
    {
        On("a").SelectAtBoot("0.1.0");
        On("a").MarkTryOnce("b", new(0, 1, 1));
        On("b").SelectAtBoot("0.1.1");          // booted the try; it hangs, the watchdog reboots, U-Boot boots a
        Assert.Contains("slot b (0.1.1) was booted once and never confirmed: back on slot a, 0.1.1 recorded bad", On("a").SelectAtBoot("0.1.0"));
        var s = On("a").Read();
        Assert.Equal(("a", (string?)null), (s.Active, s.Trying));
        Assert.Equal(["0.1.1"], s.Bad);
        Assert.Equal("default slot-a", Default);
    }

    [Fact]
    public void RebootIsARequestFileAndWritesLeaveNoTemporaries()
    {
        var c = On("a");
        c.SelectAtBoot("0.1.0");
        c.MarkTryOnce("b", new(0, 1, 1));
        c.ClearTry();
        Assert.Equal("default slot-a", Default);
        c.Reboot();
        Assert.Equal("reboot\n", File.ReadAllText(Path.Combine(_boot, "reboot-request")));   // a plain reboot: U-Boot reads extlinux.conf
        Assert.Empty(Directory.GetFiles(_boot, "*.tmp", SearchOption.AllDirectories));
    }
}

/// <summary>The Raspberry Pi tryboot A/B control, on a directory laid out as the Pi's boot partition is (the image's own config.txt and tryboot.txt).</summary>
public sealed class TrybootBootControlTests : IDisposable
{
    readonly string _boot = Directory.CreateTempSubdirectory("pearl2-tryboot").FullName;

    public TrybootBootControlTests()
    {
        foreach (var f in new[] { "config.txt", "tryboot.txt" })
            File.Copy(Path.Combine(RepoRoot(), "board", "rpi4-hdmi", "boot", f), Path.Combine(_boot, f));
    }

    static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(d!.FullName, "Pearl2.Firmware.sln"))) d = d.Parent;
        return d.FullName;
    }

    public void Dispose() => Directory.Delete(_boot, true);

    string CmdlineOf(string file) => File.ReadAllLines(Path.Combine(_boot, file)).Single(l => l.StartsWith("cmdline=", StringComparison.Ordinal));
    TrybootBootControl On(string slot) => new(_boot, slot, Path.Combine(_boot, "reboot-request"));

    [Fact]
    public void ATryIsATrybootOfTheOtherSlotAndAConfirmMakesItTheDefault()
    {
        Assert.Equal(("cmdline=cmdline-a.txt", "cmdline=cmdline-b.txt"), (CmdlineOf("config.txt"), CmdlineOf("tryboot.txt")));
        On("a").SelectAtBoot("0.1.0");
        On("a").MarkTryOnce("b", new(0, 1, 1));
        On("a").Reboot();
        Assert.Equal("tryboot\n", File.ReadAllText(Path.Combine(_boot, "reboot-request")));   // reboot '0 tryboot'
        Assert.Equal(("cmdline=cmdline-a.txt", "cmdline=cmdline-b.txt"), (CmdlineOf("config.txt"), CmdlineOf("tryboot.txt")));   // a plain boot is still a
        Assert.Contains("trying slot b (0.1.1) once", On("b").SelectAtBoot("0.1.1"));
        Assert.Equal("cmdline=cmdline-a.txt", CmdlineOf("config.txt"));
        On("b").Confirm();
        Assert.Equal(("cmdline=cmdline-b.txt", "cmdline=cmdline-a.txt"), (CmdlineOf("config.txt"), CmdlineOf("tryboot.txt")));
        Assert.Equal("b", On("b").Read().Active);
        // Every other line of the Pi's config is left as it was.
        Assert.Contains("dtoverlay=tc358743", File.ReadAllText(Path.Combine(_boot, "config.txt")));
    }

    [Fact]
    public void ATryThatNeverConfirmsIsGoneAtThePlainBootAfterItAndRecordedBad()
    {
        On("a").SelectAtBoot("0.1.0");
        On("a").MarkTryOnce("b", new(0, 1, 1));
        On("b").SelectAtBoot("0.1.1");   // the firmware booted tryboot.txt once; it hangs; the next boot reads config.txt
        Assert.Contains("never confirmed: back on slot a, 0.1.1 recorded bad", On("a").SelectAtBoot("0.1.0"));
        Assert.Equal(["0.1.1"], On("a").Read().Bad);
        Assert.Equal("cmdline=cmdline-a.txt", CmdlineOf("config.txt"));
    }
}
