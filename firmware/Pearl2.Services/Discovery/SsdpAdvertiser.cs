using System.Net;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Ssdp;

namespace Pearl2.Services.Discovery;

/// <summary>
/// SSDP for the UPnP media server (UPnP Device Architecture 1.1 §1), over IPv4 on every LAN interface: ssdp:alive for
/// each of our five targets at start (twice) and again well within max-age, ssdp:byebye at stop, ssdp:update when an
/// interface's address changes (then alive with the next BOOTID), and answers to M-SEARCH after a random part of MX,
/// unicast to the searcher, at most <see cref="AnswersPerWindow"/> searches per address in 5 s (a control point sends a few
/// at a time; a flood is not answered) and
/// <see cref="MaxPending"/> waiting in all. LOCATION names the address of the interface the search came in on.
/// </summary>
public sealed class SsdpAdvertiser : IAsyncDisposable
{
    public const int MaxAge = 1800, AnswersPerWindow = 40, MaxPending = 64;
    static readonly TimeSpan Window = TimeSpan.FromSeconds(5);
    static readonly IPAddress Group = IPAddress.Parse(SsdpWriter.MulticastAddress);

    readonly string _uuid;
    readonly Func<IPAddress, string> _location;
    readonly string _server;
    readonly int _configId;
    int _bootId;
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly Func<IReadOnlyList<LanLink>> _links;
    readonly TimeSpan _linkPoll;
    MulticastLinks? _net;
    readonly CancellationTokenSource _stop = new();
    readonly Dictionary<IPAddress, (long WindowStart, int Count)> _perAddress = new();
    int _pending;
    long _searches, _answered, _refused;
    Task _tasks = Task.CompletedTask;

    /// <param name="location">The description URL for an interface address.</param>
    /// <param name="bootId">BOOTID.UPNP.ORG: one more at every start (kept by the caller).</param>
    public SsdpAdvertiser(string uuid, Func<IPAddress, string> location, string server, int bootId, int configId, ILogger log, TimeProvider time,
        Func<IReadOnlyList<LanLink>>? links = null, TimeSpan? linkPoll = null)
    {
        _uuid = uuid; _location = location; _server = server; _bootId = bootId; _configId = configId & 0xffffff; _log = log; _time = time;
        _links = links ?? LanLinks.Current; _linkPoll = linkPoll ?? TimeSpan.FromSeconds(3);
        Targets =
        [
            new("upnp:rootdevice", $"uuid:{uuid}::upnp:rootdevice"),
            new($"uuid:{uuid}", $"uuid:{uuid}"),
            new(UpnpMediaServer.DeviceType, $"uuid:{uuid}::{UpnpMediaServer.DeviceType}"),
            new(UpnpMediaServer.ContentDirectoryType, $"uuid:{uuid}::{UpnpMediaServer.ContentDirectoryType}"),
            new(UpnpMediaServer.ConnectionManagerType, $"uuid:{uuid}::{UpnpMediaServer.ConnectionManagerType}"),
        ];
    }

    public IReadOnlyList<SsdpTarget> Targets { get; }
    public int BootId => Volatile.Read(ref _bootId);
    public long Searches => Interlocked.Read(ref _searches);
    public long Answered => Interlocked.Read(ref _answered);

    IReadOnlyCollection<LanLink> Joined => _net?.Joined ?? [];

    public void Start()
    {
        // UDA 1.1 §1.1.2: TTL 2 by default.
        _net = new MulticastLinks("ssdp", Group, SsdpWriter.Port, ttl: 2, loopback: false, _log, _links);
        _net.Update();
        _log.LogInformation("ssdp.started uuid={Uuid} boot_id={BootId} config_id={ConfigId} links={Links}", _uuid, _bootId, _configId, string.Join(',', Joined.Select(l => l.Name)));
        _tasks = Task.WhenAll(Task.Run(ReceiveLoopAsync), Task.Run(AliveLoopAsync), Task.Run(() => _net.WatchAsync(_linkPoll, _time, LinkChangedAsync, _stop.Token)));
    }

    async Task AliveLoopAsync()
    {
        try
        {
            // Twice at start (UDP may lose one), then every third of max-age with some jitter (UDA: "well within" it).
            foreach (var link in Joined.ToList()) await AliveAsync(link);
            await Task.Delay(TimeSpan.FromMilliseconds(300), _time, _stop.Token);
            foreach (var link in Joined.ToList()) await AliveAsync(link);
            while (!_stop.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromSeconds(MaxAge / 3 - Random.Shared.Next(0, 60)), _time, _stop.Token);
                foreach (var link in Joined.ToList()) await AliveAsync(link);
            }
        }
        catch (OperationCanceledException) { }
    }

    async Task AliveAsync(LanLink link)
    {
        string location = _location(link.V4[0]);
        foreach (var t in Targets) await SendAsync(link, SsdpWriter.Alive(t, location, MaxAge, _server, BootId, _configId), null);
    }

    /// <summary>A link that came up hears alive; a new address is announced by ssdp:update with the next BOOTID, then alive under it (UDA 1.1 §1.2.4).</summary>
    async Task LinkChangedAsync(LanLink link, LanLink? old)
    {
        if (old is null) { await AliveAsync(link); return; }
        if (old.V4.SequenceEqual(link.V4)) return;
        int next = Interlocked.Increment(ref _bootId);
        _log.LogInformation("ssdp.address_change link={Link} address={Address} boot_id={BootId}", link.Name, link.V4[0], next);
        await UpdateThenAliveAsync(link, next - 1, next);
    }

    async Task UpdateThenAliveAsync(LanLink link, int bootId, int nextBootId)
    {
        string location = _location(link.V4[0]);
        foreach (var t in Targets) await SendAsync(link, SsdpWriter.Update(t, location, bootId, _configId, nextBootId), null);
        await AliveAsync(link);
    }

    async Task ReceiveLoopAsync()
    {
        var buffer = new byte[8192];
        while (await _net!.ReceiveAsync(buffer, _stop.Token) is { } d)
        {
            var data = buffer.AsSpan(0, d.Length);
            if (!data.StartsWith("M-SEARCH "u8)) continue;   // NOTIFYs of other devices: not ours to answer
            Interlocked.Increment(ref _searches);
            if (!SsdpSearch.TryParse(data, d.ToGroup, out var search, out var error))
            {
                _log.LogDebug("ssdp.bad_search from={From} error=\"{Error}\"", d.From, error);
                continue;
            }
            var answers = SsdpWriter.Matching(Targets, search!.SearchTarget).ToList();
            if (answers.Count == 0) continue;
            if (!Admit(d.From.Address)) continue;
            if (Interlocked.Increment(ref _pending) > MaxPending) { Interlocked.Decrement(ref _pending); Interlocked.Increment(ref _refused); continue; }
            _ = AnswerAsync(d.Link, d.From, search, answers);
        }
    }

    /// <summary>At most <see cref="AnswersPerWindow"/> searches answered per address in 5 s: SSDP must not be an amplifier.</summary>
    bool Admit(IPAddress from)
    {
        lock (_perAddress)
        {
            long now = _time.GetTimestamp();
            if (_perAddress.Count > 1024) _perAddress.Clear();
            var (start, count) = _perAddress.GetValueOrDefault(from, (now, 0));
            if (_time.GetElapsedTime(start, now) > Window) (start, count) = (now, 0);
            _perAddress[from] = (start, count + 1);
            if (count + 1 == AnswersPerWindow + 1)
                _log.LogWarning("ssdp.rate_limited from={From} answers_per_5s={Limit}", from, AnswersPerWindow);
            if (count + 1 > AnswersPerWindow) { Interlocked.Increment(ref _refused); return false; }
            return true;
        }
    }

    async Task AnswerAsync(LanLink link, IPEndPoint to, SsdpSearch search, List<SsdpTarget> answers)
    {
        try
        {
            // A random moment within MX (UDA 1.1 §1.3.3), so that every device on the LAN does not answer at once.
            if (search.MaxWaitSeconds > 0) await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.Next(0, search.MaxWaitSeconds * 1000)), _time, _stop.Token);
            string location = _location(link.V4[0]);
            foreach (var t in answers)
                await SendAsync(link, SsdpWriter.SearchResponse(t, location, MaxAge, _server, BootId, _configId, _time.GetUtcNow()), to);
            Interlocked.Increment(ref _answered);
        }
        catch (OperationCanceledException) { }
        finally { Interlocked.Decrement(ref _pending); }
    }

    Task SendAsync(LanLink link, byte[] bytes, IPEndPoint? to) => _net?.SendAsync(link, bytes, to) ?? Task.CompletedTask;

    /// <summary>ssdp:byebye for every target on every link, then closes.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_net is null) return;
        _stop.Cancel();
        var links = Joined.ToList();
        foreach (var link in links)
            foreach (var t in Targets) await SendAsync(link, SsdpWriter.ByeBye(t, BootId, _configId), null);
        _log.LogInformation("ssdp.stopped byebye={Count} searches={Searches} answered={Answered} refused={Refused}", links.Count * Targets.Count, Searches, Answered, Interlocked.Read(ref _refused));
        _net.Dispose();
        try { await _tasks; } catch (OperationCanceledException) { }
        _net = null;
    }
}
