using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Ext4;
using Pearl2.Formats.Update;

namespace Pearl2.Services.Update;

public class UpdateException(string message) : Exception(message);

/// <summary>What the server holds is not what was signed: retrying cannot help, the update is refused.</summary>
public sealed class UpdateRefusedException(string message) : UpdateException(message);

/// <summary>
/// The inactive root file system slot an update is written to: a partition (/dev/mmcblk0p3) on a board, a file in
/// the host simulation. Writes go to the slot directly; nothing of the image is held in memory.
/// </summary>
public interface ISlot
{
    string Name { get; }
    long Capacity { get; }
    Stream OpenWrite();
    Stream OpenRead();
}

/// <summary>A slot that is a file or a block device node.</summary>
public sealed class FileSlot(string name, string path, long capacity) : ISlot
{
    public string Name => name;
    public string Path => path;
    public long Capacity => capacity;
    public Stream OpenWrite() => new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read, 1, FileOptions.None);
    public Stream OpenRead() => new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 16, FileOptions.SequentialScan);
}

/// <summary>
/// Where an update stands: bytes of the slot image in place (fetched, or found already there), of how many, the rate
/// of the network, and the time the rest of the network part should take at that rate.
/// </summary>
public readonly record struct DownloadProgress(long Bytes, long Total, double BytesPerSecond, TimeSpan? Remaining)
{
    public double Percent => Total == 0 ? 0 : 100.0 * Bytes / Total;
}

/// <summary>What an update took: chunks found already in the slot, copied from the running slot, written as zeros, fetched.</summary>
public readonly record struct DownloadSummary(int Kept, int Seeded, int Zero, int Fetched, long WireBytes, long PayloadBytes);

/// <summary>
/// Puts an update's slot image into a slot, chunk by chunk (<see cref="ChunkIndex"/>). Each chunk already right in the
/// slot (a download cut by a power loss, a retry) is kept; a chunk of zeros is written without a byte of network; a chunk
/// the running slot holds anywhere (at any 4 KiB block, found by a sliding window hash) is copied from there; only the
/// rest is fetched, with one HTTP Range request per run of adjacent chunks. A cut connection or a stall (no byte for <see cref="StallTimeout"/>) is resumed at the
/// chunk it cut; a chunk that does not inflate to its hash is refused before it is written. Nothing needs to be
/// remembered between runs: the next run finds what is already in place by its hash. Memory: one compressed and one
/// plain chunk. <see cref="VerifyAsync"/> then reads the whole slot back against the signed SHA-256.
/// </summary>
public sealed class SlotDownloader(HttpClient http, TimeProvider time, ILogger log)
{
    public TimeSpan StallTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Cuts and stalls one download survives; the next one gives it up (the next check resumes it).</summary>
    public int MaxCuts { get; init; } = 30;
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>Bytes written between fsyncs, so a power cut loses at most this much of the work.</summary>
    public long CheckpointBytes { get; init; } = 8 << 20;

    /// <param name="seed">The running slot, read for chunks that did not change; null or unreadable: none.</param>
    public async Task<DownloadSummary> DownloadAsync(UpdateManifest m, ChunkIndex index, ISlot target, ISlot? seed,
        Action<DownloadProgress>? progress, CancellationToken ct)
    {
        if (index.ImageSize != m.Size) throw new UpdateException($"the index describes {index.ImageSize} bytes, the signed manifest {m.Size}");
        if (m.Size > target.Capacity) throw new UpdateException($"the image ({m.Size} bytes) is larger than slot {target.Name} ({target.Capacity} bytes)");
        var plain = new byte[index.ChunkSize];
        var packed = new byte[ChunkIndex.MaxCompressedLength(index.ChunkSize)];
        await using var output = target.OpenWrite();
        await using var existing = target.OpenRead();
        Stream? running = null;
        try { running = seed?.OpenRead(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log.LogWarning("update.seed_unreadable slot={Slot} reason=\"{Reason}\" effect=\"every changed chunk is fetched\"", seed!.Name, e.Message);
        }
        await using var _ = running;

        long done = 0, unsynced = 0, wire = 0, wireLeft = 0;
        long runStart = time.GetTimestamp(), lastReport = 0;
        int kept = 0, seeded = 0, zero = 0, fetched = 0;
        void Report(bool force = false)
        {
            long now = time.GetTimestamp();
            if (progress is null || (!force && time.GetElapsedTime(lastReport, now) < TimeSpan.FromSeconds(1))) return;
            lastReport = now;
            double seconds = time.GetElapsedTime(runStart, now).TotalSeconds;
            double rate = seconds > 0 ? wire / seconds : 0;
            progress(new DownloadProgress(done, m.Size, rate, rate > 0 ? TimeSpan.FromSeconds(wireLeft / rate) : wireLeft == 0 ? TimeSpan.Zero : null));
        }
        async ValueTask Put(int i, ReadOnlyMemory<byte> data)
        {
            output.Position = index.ImageOffset(i);
            await output.WriteAsync(data, ct);
            unsynced += data.Length;
            if (unsynced >= CheckpointBytes) { Sync(output); unsynced = 0; }
        }

        // What is in place already, or can be had without the network.
        var needed = new List<int>();
        for (int i = 0; i < index.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            int length = index.Length(i);
            if (await ReadChunkAsync(existing, index.ImageOffset(i), plain, length, ct) && index.Matches(i, plain.AsSpan(0, length))) kept++;
            else if (index.IsZero(i)) { Array.Clear(plain, 0, length); await Put(i, plain.AsMemory(0, length)); zero++; }
            else { needed.Add(i); continue; }
            done += length;
            Report();
        }
        if (running is not null && needed.Count > 0)
        {
            // The running slot, every block-aligned place of it: a file that moved because one before it grew is still found.
            var found = await FindInRunningSlotAsync(index, running, needed, plain, async (i, data) =>
            {
                await Put(i, data);
                seeded++;
                done += data.Length;
                Report();
            }, ct);
            needed.RemoveAll(found.Contains);
        }
        foreach (int i in needed) wireLeft += index.CompressedLength(i);
        log.LogInformation("update.plan version={Version} slot={Slot} chunks={Count} kept={Kept} seeded={Seeded} zero={Zero} to_fetch={Fetch} fetch_bytes={FetchBytes}",
            m.Version, target.Name, index.Count, kept, seeded, zero, needed.Count, wireLeft);

        // The rest from the server: a Range request from the first chunk still missing to the end of its run.
        int next = 0, cuts = 0;
        while (next < needed.Count)
        {
            int last = next;
            while (last + 1 < needed.Count && index.PayloadOffset(needed[last + 1]) == index.PayloadOffset(needed[last]) + index.CompressedLength(needed[last])) last++;
            long from = index.PayloadOffset(needed[next]), to = index.PayloadOffset(needed[last]) + index.CompressedLength(needed[last]) - 1;
            string? cut = null;
            using var request = new HttpRequestMessage(HttpMethod.Get, m.Payload);
            request.Headers.Range = new RangeHeaderValue(from, to);
            using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
            stall.CancelAfter(StallTimeout);
            try
            {
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, stall.Token);
                long at;   // the payload offset the body starts at
                if (response.StatusCode == HttpStatusCode.PartialContent)
                {
                    var range = response.Content.Headers.ContentRange;
                    if (range?.From != from || range.To != to || (range.Length is { } total && total != index.PayloadSize))
                        throw new UpdateException($"the server answered bytes {range?.From}-{range?.To}/{range?.Length} to a request for {from}-{to}/{index.PayloadSize}");
                    at = from;
                }
                else if (response.StatusCode == HttpStatusCode.OK)
                {
                    // No Range support: the whole payload comes, and every chunk still missing is taken from it.
                    if (response.Content.Headers.ContentLength is { } length && length != index.PayloadSize)
                        throw new UpdateException($"the server's payload is {length} bytes, the signed index says {index.PayloadSize}");
                    at = 0;
                    last = needed.Count - 1;
                }
                else throw new UpdateException($"the server answered {(int)response.StatusCode} {response.ReasonPhrase} for {m.Payload}");

                await using var body = await response.Content.ReadAsStreamAsync(stall.Token);
                for (; next <= last; next++)
                {
                    int i = needed[next], length = index.CompressedLength(i);
                    for (long skip = index.PayloadOffset(i) - at; skip > 0;)
                    {
                        stall.CancelAfter(StallTimeout);
                        int n = await body.ReadAsync(packed.AsMemory(0, (int)Math.Min(packed.Length, skip)), stall.Token);
                        if (n == 0) break;
                        skip -= n; at += n; wire += n;
                    }
                    int got = 0;
                    while (got < length)
                    {
                        stall.CancelAfter(StallTimeout);
                        int n = await body.ReadAsync(packed.AsMemory(got, length - got), stall.Token);
                        if (n == 0) break;
                        got += n; wire += n;
                    }
                    at += got;
                    if (got < length) { cut = $"the connection ended in chunk {i} at payload byte {at}"; break; }
                    if (!index.TryInflate(i, packed, plain))
                        throw new UpdateRefusedException($"chunk {i} (payload bytes {index.PayloadOffset(i)}-{index.PayloadOffset(i) + length - 1}) does not inflate to its signed hash");
                    await Put(i, plain.AsMemory(0, index.Length(i)));
                    fetched++;
                    done += index.Length(i);
                    wireLeft -= length;
                    Report();
                }
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested) { cut = $"no byte for {StallTimeout.TotalSeconds:F0} s in chunk {needed[next]}"; }
            catch (HttpRequestException e) { cut = $"{e.Message} in chunk {needed[Math.Min(next, needed.Count - 1)]}"; }
            catch (IOException e) { cut = $"{e.Message} in chunk {needed[Math.Min(next, needed.Count - 1)]}"; }
            if (cut is not null)
            {
                Sync(output);
                if (++cuts > MaxCuts) throw new UpdateException($"gave up after {cuts} cuts, with {needed.Count - next} of {index.Count} chunks still to fetch");
                log.LogWarning("update.download_cut attempt={Attempt} bytes={Bytes} total={Total} reason=\"{Reason}\" effect=\"resuming at chunk {Chunk}\"",
                    cuts, done, m.Size, cut, needed[next]);
                await Task.Delay(RetryDelay, time, ct);
            }
        }
        Sync(output);
        Report(force: true);
        return new DownloadSummary(kept, seeded, zero, fetched, wire, index.PayloadSize);
    }

    /// <summary>
    /// One pass over the running slot, block by block, with the window hash sliding along: where it equals a needed
    /// chunk's, the bytes there are read and checked against the chunk's SHA-256 and handed to <paramref name="put"/>.
    /// A chunk shorter than the chunk size (the last) has no window hash and is looked for at its own place only.
    /// </summary>
    static async Task<HashSet<int>> FindInRunningSlotAsync(ChunkIndex index, Stream running, List<int> needed, byte[] candidate,
        Func<int, ReadOnlyMemory<byte>, ValueTask> put, CancellationToken ct)
    {
        var found = new HashSet<int>();
        var wanted = new Dictionary<ulong, List<int>>();
        foreach (int i in needed)
        {
            if (index.Window(i) != 0) { if (!wanted.TryGetValue(index.Window(i), out var list)) wanted[index.Window(i)] = list = []; list.Add(i); }
            else if (await ReadChunkAsync(running, index.ImageOffset(i), candidate, index.Length(i), ct) && index.Matches(i, candidate.AsSpan(0, index.Length(i))))
            { await put(i, candidate.AsMemory(0, index.Length(i))); found.Add(i); }
        }
        if (wanted.Count == 0) return found;
        var window = new ChunkIndex.SlidingWindow(index.BlocksPerChunk);
        var buffer = new byte[1 << 20];
        long block = 0;   // blocks read so far
        long end = await FileSystemBytesAsync(running, buffer, ct) ?? long.MaxValue;   // past its file system a partition holds nothing of it
        running.Position = 0;
        while (wanted.Count > 0 && block * ChunkIndex.BlockSize < end)
        {
            int got = await running.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, ct);
            int blocks = got / ChunkIndex.BlockSize;
            for (int b = 0; b < blocks; b++, block++)
            {
                window.Push(ChunkIndex.BlockHash(buffer.AsSpan(b * ChunkIndex.BlockSize, ChunkIndex.BlockSize)));
                if (!window.Full || !wanted.TryGetValue(window.Value, out var chunks)) continue;
                long start = (block + 1 - index.BlocksPerChunk) * ChunkIndex.BlockSize, resume = running.Position;
                if (await ReadChunkAsync(running, start, candidate, index.ChunkSize, ct))
                    foreach (int i in chunks.ToArray())
                        if (index.Matches(i, candidate.AsSpan(0, index.ChunkSize), windowKnown: true)) { await put(i, candidate.AsMemory(0, index.ChunkSize)); found.Add(i); chunks.Remove(i); }
                if (chunks.Count == 0) wanted.Remove(window.Value);
                running.Position = resume;
            }
            if (got < buffer.Length) break;
        }
        return found;
    }

    /// <summary>The size of the ext2/3/4 file system at the start of <paramref name="slot"/> (its superblock), or null.</summary>
    public static async ValueTask<long?> FileSystemBytesAsync(Stream slot, byte[] scratch, CancellationToken ct)
    {
        slot.Position = Ext4Superblock.Offset;
        if (await slot.ReadAtLeastAsync(scratch.AsMemory(0, Ext4Superblock.Size), Ext4Superblock.Size, throwOnEndOfStream: false, ct) < Ext4Superblock.Size) return null;
        return Ext4Superblock.FileSystemBytes(scratch.AsSpan(0, Ext4Superblock.Size));
    }

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="offset"/>; false when the slot ends before.</summary>
    static async ValueTask<bool> ReadChunkAsync(Stream slot, long offset, byte[] buffer, int length, CancellationToken ct)
    {
        if (slot.CanSeek && offset + length > slot.Length && slot.Length > 0) return false;
        slot.Position = offset;
        return await slot.ReadAtLeastAsync(buffer.AsMemory(0, length), length, throwOnEndOfStream: false, ct) == length;
    }

    static void Sync(Stream output)
    {
        output.Flush();
        if (output is FileStream f) f.Flush(flushToDisk: true);
    }

    /// <summary>Reads the slot back and compares its first <paramref name="size"/> bytes with the signed SHA-256.</summary>
    public static async Task<bool> VerifyAsync(ISlot slot, long size, byte[] sha256, CancellationToken ct)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 16];
        await using var input = slot.OpenRead();
        long left = size;
        while (left > 0)
        {
            int n = await input.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, left)), ct);
            if (n == 0) return false;
            hash.AppendData(buffer, 0, n);
            left -= n;
        }
        return CryptographicOperations.FixedTimeEquals(hash.GetHashAndReset(), sha256);
    }
}
