using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Update;

namespace Pearl2.Services.Update;

public sealed class UpdateException(string message) : Exception(message);

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
    /// <summary>Before a download from the first byte: a file slot is emptied (a partition is simply overwritten).</summary>
    void Reset();
}

/// <summary>A slot that is a file or a block device node.</summary>
public sealed class FileSlot(string name, string path, long capacity) : ISlot
{
    public string Name => name;
    public string Path => path;
    public long Capacity => capacity;
    public Stream OpenWrite() => new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read, 1, FileOptions.None);
    public Stream OpenRead() => new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 16, FileOptions.SequentialScan);

    public void Reset()
    {
        if (File.Exists(path) && !path.StartsWith("/dev/", StringComparison.Ordinal)) File.WriteAllBytes(path, []);
    }
}

/// <summary>Where a download stands: bytes in the slot, the rate of this run, and the time left at that rate.</summary>
public readonly record struct DownloadProgress(long Bytes, long Total, double BytesPerSecond, TimeSpan? Remaining)
{
    public double Percent => Total == 0 ? 0 : 100.0 * Bytes / Total;
}

/// <summary>
/// Streams an update image straight into a slot over HTTP. A cut connection or a stall (no byte for
/// <see cref="StallTimeout"/>) is resumed with a Range request from the last byte made durable; durable points are
/// reported to <c>checkpoint</c> (fsync'd first) so a resume also survives a power cut. A server that ignores
/// Range is read again from the start; one that sends more or other bytes than the manifest says is refused. The
/// SHA-256 is not trusted from the stream: <see cref="VerifyAsync"/> reads the slot back.
/// </summary>
public sealed class SlotDownloader(HttpClient http, TimeProvider time, ILogger log)
{
    public TimeSpan StallTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Requests per download before it is given up (each cut or stall takes one).</summary>
    public int MaxAttempts { get; init; } = 30;
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>Bytes between fsyncs (durable resume points).</summary>
    public long CheckpointBytes { get; init; } = 4 << 20;

    public async Task DownloadAsync(UpdateManifest m, ISlot slot, long resumeFrom, Func<long, ValueTask> checkpoint,
        Action<DownloadProgress>? progress, CancellationToken ct)
    {
        if (m.Size > slot.Capacity) throw new UpdateException($"the image ({m.Size} bytes) is larger than slot {slot.Name} ({slot.Capacity} bytes)");
        long offset = Math.Clamp(resumeFrom, 0, m.Size);
        var buffer = new byte[1 << 16];
        await using var output = slot.OpenWrite();
        long runStart = time.GetTimestamp(), runStartBytes = offset, lastReport = 0;
        for (int attempt = 1; offset < m.Size; attempt++)
        {
            if (attempt > MaxAttempts) throw new UpdateException($"gave up after {MaxAttempts} requests at byte {offset} of {m.Size}");
            string? cut = null;
            using var request = new HttpRequestMessage(HttpMethod.Get, m.Image);
            if (offset > 0) request.Headers.Range = new RangeHeaderValue(offset, null);
            using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
            stall.CancelAfter(StallTimeout);
            try
            {
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, stall.Token);
                if (response.StatusCode == HttpStatusCode.PartialContent)
                {
                    var range = response.Content.Headers.ContentRange;
                    if (range?.From != offset || (range.Length is { } total && total != m.Size))
                        throw new UpdateException($"the server answered bytes {range?.From}-/{range?.Length} to a request for {offset}-/{m.Size}");
                }
                else if (response.StatusCode == HttpStatusCode.OK)
                {
                    if (offset > 0) log.LogInformation("update.resume_ignored offset={Offset} effect=\"the server sent the whole image: written again from the start\"", offset);
                    offset = 0;
                    if (response.Content.Headers.ContentLength is { } length && length != m.Size)
                        throw new UpdateException($"the server's image is {length} bytes, the signed manifest says {m.Size}");
                }
                else throw new UpdateException($"the server answered {(int)response.StatusCode} {response.ReasonPhrase} for {m.Image}");

                await using var body = await response.Content.ReadAsStreamAsync(stall.Token);
                output.Position = offset;
                long sinceCheckpoint = 0;
                while (offset < m.Size)
                {
                    stall.CancelAfter(StallTimeout);
                    int n = await body.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, m.Size - offset)), stall.Token);
                    if (n == 0) { cut = $"the connection ended at byte {offset}"; break; }
                    await output.WriteAsync(buffer.AsMemory(0, n), ct);
                    offset += n;
                    sinceCheckpoint += n;
                    if (sinceCheckpoint >= CheckpointBytes) { await Durable(output, offset, checkpoint); sinceCheckpoint = 0; }
                    long now = time.GetTimestamp();
                    if (progress is not null && (time.GetElapsedTime(lastReport, now) >= TimeSpan.FromSeconds(1) || offset == m.Size))
                    {
                        lastReport = now;
                        double seconds = time.GetElapsedTime(runStart, now).TotalSeconds;
                        double rate = seconds > 0 ? (offset - runStartBytes) / seconds : 0;
                        progress(new DownloadProgress(offset, m.Size, rate, rate > 0 ? TimeSpan.FromSeconds((m.Size - offset) / rate) : null));
                    }
                }
                if (offset == m.Size && await body.ReadAsync(buffer.AsMemory(0, 1), stall.Token) > 0)
                    throw new UpdateException($"the server sent more than the signed {m.Size} bytes");
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested) { cut = $"no byte for {StallTimeout.TotalSeconds:F0} s at byte {offset}"; }
            catch (HttpRequestException e) { cut = $"{e.Message} at byte {offset}"; }
            catch (IOException e) { cut = $"{e.Message} at byte {offset}"; }
            await Durable(output, offset, checkpoint);
            if (cut is not null && offset < m.Size)
            {
                log.LogWarning("update.download_cut attempt={Attempt} bytes={Bytes} total={Total} reason=\"{Reason}\" effect=\"resuming from byte {Bytes}\"",
                    attempt, offset, m.Size, cut, offset);
                await Task.Delay(RetryDelay, time, ct);
            }
        }
    }

    static async ValueTask Durable(Stream output, long offset, Func<long, ValueTask> checkpoint)
    {
        await output.FlushAsync();
        if (output is FileStream f) f.Flush(flushToDisk: true);
        await checkpoint(offset);
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
