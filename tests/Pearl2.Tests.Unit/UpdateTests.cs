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

    static string Json(string version = "0.2.0", string board = "qemu-virt", string image = "pearl2-qemu-virt-0.2.0.slot", string size = "1000", string? sha = null) =>
        $"{{\"version\":\"{version}\",\"board\":\"{board}\",\"image\":\"{image}\",\"size\":{size},\"sha256\":\"{sha ?? Sha}\",\"notes\":\"Fixes.\"}}";

    [Fact]
    public void ParsesAManifestAndResolvesTheImageAgainstItsUrl()
    {
        var m = UpdateManifest.Parse(Encoding.UTF8.GetBytes(Json()), Base);
        Assert.Equal(new FirmwareVersion(0, 2, 0), m.Version);
        Assert.Equal("qemu-virt", m.Board);
        Assert.Equal("http://updates.example/qemu-virt/pearl2-qemu-virt-0.2.0.slot", m.Image.ToString());
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
    [InlineData("0.2.0", null, "ftp://x/y", null, null, "manifest.image")]
    [InlineData("0.2.0", null, null, "0", null, "manifest.size")]
    [InlineData("0.2.0", null, null, "-5", null, "manifest.size")]
    [InlineData("0.2.0", null, null, "1.5", null, "manifest.size")]
    [InlineData("0.2.0", null, null, null, "ABCD", "manifest.sha256")]
    public void RefusalsNameTheField(string version, string? board, string? image, string? size, string? sha, string field)
    {
        var json = Json(version, board ?? "qemu-virt", image ?? "a.slot", size ?? "1000", sha);
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
/// An HTTP/1.1 server on loopback for one image, which misbehaves on request: cuts the connection at given byte
/// offsets (one per request), stalls, answers 500, ignores Range, flips a byte, or sends more than it says.
/// </summary>
sealed class FaultyImageServer : IAsyncDisposable
{
    readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    readonly byte[] _image;
    readonly CancellationTokenSource _stop = new();
    readonly Task _loop;
    public readonly Queue<long> CutAt = new();
    public long? StallAt;
    public bool Fail500, IgnoreRange, ExtraBytes;
    public long? FlipAt;
    public readonly List<string> Ranges = new();
    /// <summary>Other files by path (the manifest and its signature), served plainly.</summary>
    public readonly Dictionary<string, byte[]> Files = new();
    public int Requests;

    public FaultyImageServer(byte[] image)
    {
        _image = image;
        _listener.Start();
        _loop = AcceptAsync();
    }

    public Uri Url => new($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/qemu-virt/image.slot");

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
        Interlocked.Increment(ref Requests);
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
            lock (Ranges) Ranges.Add(range ?? "");
            long from = range is not null && !IgnoreRange ? long.Parse(range.Split('=')[1].TrimEnd('-')) : 0;
            var body = _image.AsSpan((int)from).ToArray();
            if (FlipAt is { } f && f >= from) body[f - from] ^= 0x40;
            if (ExtraBytes) body = [.. body, 1, 2, 3];
            string status = from > 0 ? $"206 Partial Content\r\nContent-Range: bytes {from}-{_image.Length - 1}/{_image.Length}" : "200 OK";
            await s.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: {(ExtraBytes ? body.Length : _image.Length - from)}\r\nConnection: close\r\n\r\n"));
            long end = _image.Length;
            lock (CutAt) if (CutAt.Count > 0) end = CutAt.Dequeue();
            if (StallAt is { } st && st >= from) end = Math.Min(end, st);
            await s.WriteAsync(body.AsMemory(0, (int)Math.Max(0, Math.Min(end - from, body.Length))));
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

public sealed class SlotDownloaderTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pearl2-slot").FullName;
    readonly byte[] _image = RandomNumberGenerator.GetBytes(3 << 20);
    readonly ListLogger _log = new();
    static readonly HttpClient Http = new();

    public void Dispose() => Directory.Delete(_dir, true);

    UpdateManifest Manifest(Uri url) => new(new(0, 2, 0), "qemu-virt", url, _image.Length, SHA256.HashData(_image), "");

    SlotDownloader Downloader(int attempts = 30, double stallSeconds = 5) =>
        new(Http, TimeProvider.System, _log) { MaxAttempts = attempts, RetryDelay = TimeSpan.FromMilliseconds(20), StallTimeout = TimeSpan.FromSeconds(stallSeconds), CheckpointBytes = 256 << 10 };

    FileSlot Slot() => new("b", Path.Combine(_dir, "slot-b"), 8 << 20);

    [Fact]
    public async Task AGoodDownloadFillsTheSlotAndReportsProgress()
    {
        await using var server = new FaultyImageServer(_image);
        var slot = Slot();
        var reports = new List<DownloadProgress>();
        long durable = 0;
        await Downloader().DownloadAsync(Manifest(server.Url), slot, 0, b => { durable = b; return ValueTask.CompletedTask; }, reports.Add, default);
        Assert.True(await SlotDownloader.VerifyAsync(slot, _image.Length, SHA256.HashData(_image), default));
        Assert.Equal(_image.Length, durable);
        Assert.Equal(100, reports[^1].Percent);
        Assert.Equal([""], server.Ranges);
    }

    [Fact]
    public async Task TenCutsAtRandomPointsAreResumedWithRangeAndTheHashMatches()
    {
        await using var server = new FaultyImageServer(_image);
        var cuts = Enumerable.Range(0, 10).Select(_ => (long)Random.Shared.Next(1, _image.Length)).Order().ToArray();
        foreach (var c in cuts) server.CutAt.Enqueue(c);
        var slot = Slot();
        await Downloader().DownloadAsync(Manifest(server.Url), slot, 0, _ => ValueTask.CompletedTask, null, default);
        Assert.True(await SlotDownloader.VerifyAsync(slot, _image.Length, SHA256.HashData(_image), default));
        Assert.Equal(11, server.Ranges.Count);
        Assert.Equal(cuts.Select(c => $"Range: bytes={c}-"), server.Ranges.Skip(1));   // each resume starts where the cut was
        Assert.Equal(10, _log.Lines.Count(l => l.StartsWith("update.download_cut", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task AResumeAfterAPowerCutStartsAtTheLastDurableByte()
    {
        await using var server = new FaultyImageServer(_image);
        server.CutAt.Enqueue(1_000_000);
        var slot = Slot();
        long durable = 0;
        // The first run is given one request only: it ends at the cut, as if the power went.
        await Assert.ThrowsAsync<UpdateException>(() => Downloader(attempts: 1).DownloadAsync(Manifest(server.Url), slot, 0, b => { durable = b; return ValueTask.CompletedTask; }, null, default));
        Assert.Equal(1_000_000, durable);
        await Downloader().DownloadAsync(Manifest(server.Url), slot, durable, _ => ValueTask.CompletedTask, null, default);
        Assert.Equal("Range: bytes=1000000-", server.Ranges[^1]);
        Assert.True(await SlotDownloader.VerifyAsync(slot, _image.Length, SHA256.HashData(_image), default));
    }

    [Fact]
    public async Task AStallTimesOutAndIsResumed_AStallThatNeverEndsGivesUp()
    {
        await using var server = new FaultyImageServer(_image);
        server.StallAt = 500_000;
        var slot = Slot();
        var e = await Assert.ThrowsAsync<UpdateException>(() => Downloader(attempts: 2, stallSeconds: 0.3).DownloadAsync(Manifest(server.Url), slot, 0, _ => ValueTask.CompletedTask, null, default));
        Assert.Contains("gave up after 2 requests at byte 500000", e.Message);
        Assert.Contains(_log.Lines, l => l.Contains("no byte for 0 s at byte 500000") || l.Contains("reason=\"no byte for"));
        server.StallAt = null;
        await Downloader().DownloadAsync(Manifest(server.Url), slot, 500_000, _ => ValueTask.CompletedTask, null, default);
        Assert.True(await SlotDownloader.VerifyAsync(slot, _image.Length, SHA256.HashData(_image), default));
    }

    [Fact]
    public async Task ServerErrorsAndLiesAreRefused()
    {
        await using var server = new FaultyImageServer(_image);
        server.Fail500 = true;
        Assert.Contains("answered 500", (await Assert.ThrowsAsync<UpdateException>(() => Downloader().DownloadAsync(Manifest(server.Url), Slot(), 0, _ => ValueTask.CompletedTask, null, default))).Message);
        server.Fail500 = false;
        server.ExtraBytes = true;
        Assert.Contains("the signed manifest says", (await Assert.ThrowsAsync<UpdateException>(() => Downloader().DownloadAsync(Manifest(server.Url), Slot(), 0, _ => ValueTask.CompletedTask, null, default))).Message);
        var big = Manifest(server.Url) with { Size = 9 << 20 };
        Assert.Contains("larger than slot b", (await Assert.ThrowsAsync<UpdateException>(() => Downloader().DownloadAsync(big, Slot(), 0, _ => ValueTask.CompletedTask, null, default))).Message);
    }

    [Fact]
    public async Task AFlippedByteIsFoundByReadingTheSlotBack()
    {
        await using var server = new FaultyImageServer(_image);
        server.FlipAt = 2_000_001;
        var slot = Slot();
        await Downloader().DownloadAsync(Manifest(server.Url), slot, 0, _ => ValueTask.CompletedTask, null, default);
        Assert.False(await SlotDownloader.VerifyAsync(slot, _image.Length, SHA256.HashData(_image), default));
    }

    [Fact]
    public async Task AServerThatIgnoresRangeIsReadAgainFromTheStart()
    {
        await using var server = new FaultyImageServer(_image) { IgnoreRange = true };
        server.CutAt.Enqueue(1_500_000);
        var slot = Slot();
        await Downloader().DownloadAsync(Manifest(server.Url), slot, 0, _ => ValueTask.CompletedTask, null, default);
        Assert.True(await SlotDownloader.VerifyAsync(slot, _image.Length, SHA256.HashData(_image), default));
        Assert.Contains(_log.Lines, l => l.StartsWith("update.resume_ignored offset=1500000", StringComparison.Ordinal));
    }
}

sealed class FakeBootControl(string booted) : IBootControl
{
    public BootState State = new();
    public int Reboots;
    public string Booted => booted;
    public BootState Read() => State;
    public void MarkTryOnce(string slot, FirmwareVersion version) { State.Versions[slot] = version.ToString(); State.Trying = slot; State.TryBooted = false; }
    public void Confirm() { State.Active = booted; State.Trying = null; State.TryBooted = false; }
    public void ClearTry() { State.Trying = null; State.TryBooted = false; }
    public void Reboot() => Reboots++;
}

public sealed class UpdaterTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pearl2-updater").FullName;
    readonly byte[] _image = RandomNumberGenerator.GetBytes(1 << 20);
    readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);   // throwaway signing key
    readonly ListLogger _log = new();
    static readonly HttpClient Http = new();

    public void Dispose() { _key.Dispose(); Directory.Delete(_dir, true); }

    /// <summary>Publishes a manifest for the server's image, signed by <paramref name="signer"/> (the device's key by default).</summary>
    void Publish(FaultyImageServer server, string version = "0.2.0", string board = "qemu-virt", ECDsa? signer = null, byte[]? sha = null)
    {
        var json = Encoding.UTF8.GetBytes($"{{\"version\":\"{version}\",\"board\":\"{board}\",\"image\":\"{server.Url}\",\"size\":{_image.Length},\"sha256\":\"{Convert.ToHexStringLower(sha ?? SHA256.HashData(_image))}\",\"notes\":\"test\"}}");
        lock (server.Files)
        {
            server.Files["/updates/qemu-virt/manifest.json"] = json;
            server.Files["/updates/qemu-virt/manifest.json.sig"] = (signer ?? _key).SignData(json, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        }
    }

    Updater NewUpdater(FaultyImageServer server, FakeBootControl boot, int attempts = 30, double confirmSeconds = 5, double upSeconds = 0)
    {
        var publicKey = ECDsa.Create();
        publicKey.ImportSubjectPublicKeyInfo(_key.ExportSubjectPublicKeyInfo(), out _);
        var o = new UpdaterOptions(new Uri(server.Url, "/updates/"), "qemu-virt", new(0, 1, 0), publicKey, TimeSpan.FromHours(1), TimeSpan.FromSeconds(confirmSeconds), Path.Combine(_dir, "state"), TimeSpan.FromSeconds(upSeconds));
        var downloader = new SlotDownloader(Http, TimeProvider.System, _log) { MaxAttempts = attempts, RetryDelay = TimeSpan.FromMilliseconds(10), CheckpointBytes = 64 << 10 };
        return new Updater(o, boot, slot => new FileSlot(slot, Path.Combine(_dir, "slot-" + slot), 4 << 20), Http, downloader, TimeProvider.System, _log);
    }

    string SlotB => Path.Combine(_dir, "slot-b");

    [Fact]
    public async Task AGoodUpdateIsWrittenToTheOtherSlotMarkedToTryOnceAndRebootsWithProgressLogged()
    {
        await using var server = new FaultyImageServer(_image);
        Publish(server);
        var boot = new FakeBootControl("a");
        await using var updater = NewUpdater(server, boot);
        Assert.Equal("installed 0.2.0 in slot b; rebooting", await updater.CheckAsync(default));
        Assert.Equal(_image, File.ReadAllBytes(SlotB).AsSpan(0, _image.Length).ToArray());
        Assert.Equal(("b", false, "0.2.0", 1), (boot.State.Trying, boot.State.TryBooted, boot.State.Versions["b"], boot.Reboots));
        Assert.Contains(_log.Lines, l => l.StartsWith("update.progress version=0.2.0 percent=100 ", StringComparison.Ordinal));
        Assert.Contains(_log.Lines, l => l.StartsWith("update.switching version=0.2.0 slot=b running=0.1.0", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("signature", "the manifest's signature does not verify")]
    [InlineData("older", "refused: version 0.0.9 is not newer than the running 0.1.0")]
    [InlineData("same", "up to date (0.1.0)")]
    [InlineData("board", "the image is for board 'rpi4-hdmi'")]
    [InlineData("bad", "failed its health check on this device before")]
    [InlineData("hash", "does not hash to the signed SHA-256")]
    public async Task RefusalsLeaveTheRunningVersionAlone(string fault, string result)
    {
        await using var server = new FaultyImageServer(_image);
        using var stranger = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var boot = new FakeBootControl("a");
        switch (fault)
        {
            case "signature": Publish(server, signer: stranger); break;
            case "older": Publish(server, version: "0.0.9"); break;
            case "same": Publish(server, version: "0.1.0"); break;
            case "board": Publish(server, board: "rpi4-hdmi"); break;
            case "bad": Publish(server); boot.State.Bad.Add("0.2.0"); break;
            case "hash": Publish(server); server.FlipAt = 12345; break;
        }
        await using var updater = NewUpdater(server, boot);
        Assert.Contains(result, await updater.CheckAsync(default));
        Assert.Equal((null, 0), (boot.State.Trying, boot.Reboots));
        Assert.Equal(UpdatePhase.Idle, updater.Status.Phase);
        if (fault != "hash") Assert.False(File.Exists(SlotB));   // nothing was downloaded
    }

    [Fact]
    public async Task ServerDownAndServerErrorsAreReportedAndChangeNothing()
    {
        var server = new FaultyImageServer(_image);
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
    public async Task AnInterruptedDownloadResumesAtTheNextCheckFromItsSavedState()
    {
        await using var server = new FaultyImageServer(_image);
        Publish(server);
        server.CutAt.Enqueue(700_000);
        var boot = new FakeBootControl("a");
        await using (var first = NewUpdater(server, boot, attempts: 1))
            Assert.StartsWith("download of 0.2.0 failed", await first.CheckAsync(default));
        Assert.Equal(0, boot.Reboots);
        // A new process (as after a power cut) picks the saved state up.
        await using (var second = NewUpdater(server, boot))
            Assert.Equal("installed 0.2.0 in slot b; rebooting", await second.CheckAsync(default));
        Assert.Equal("Range: bytes=700000-", server.Ranges[^1]);
        Assert.Equal(1, boot.Reboots);
    }

    [Fact]
    public async Task ATryConfirmsWhenHealthyAndRebootsBackWhenNot()
    {
        await using var server = new FaultyImageServer(_image);
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
