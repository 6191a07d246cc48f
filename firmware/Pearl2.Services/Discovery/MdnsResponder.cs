using System.Net;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Dns;

namespace Pearl2.Services.Discovery;

/// <summary>A DNS-SD service this device offers: the instance name (the channel's name), its type ("_rtsp._tcp"), port and TXT.</summary>
public sealed record MdnsService(string Instance, string Type, int Port, IReadOnlyList<string> Txt)
{
    public bool Equals(MdnsService? other) =>
        other is not null && Instance == other.Instance && Type == other.Type && Port == other.Port && Txt.SequenceEqual(other.Txt);

    public override int GetHashCode() => HashCode.Combine(Instance, Type, Port, Txt.Count);
}

/// <summary>
/// Our own mDNS responder (RFC 6762) with DNS-SD (RFC 6763) over IPv4, on every LAN interface: the host name's A and
/// AAAA records (each interface's own addresses), and for each service the PTR, SRV and TXT records. Unique names are
/// probed before they are used (three probes 250 ms apart) and renamed on a conflict (<c>pearl2-123456-2</c>,
/// <c>Hall (2)</c>), also when another responder claims them later; then announced twice a second apart. It answers QM
/// questions by multicast (shared records after 20–120 ms), QU questions and legacy unicast queriers (source port other
/// than 5353) by unicast, leaves out answers the querier already knows (known-answer suppression), multicasts a record
/// at most once a second per link, follows address changes (goodbye for an address gone, announcement for a new one)
/// and says goodbye (TTL 0) for a service that goes and for everything at stop.
/// </summary>
public sealed class MdnsResponder : IAsyncDisposable
{
    public static readonly IPAddress Group = IPAddress.Parse("224.0.0.251");
    public const int Port = 5353;
    const uint HostTtl = 120, ServiceTtl = 4500;
    static readonly DnsName Local = new("local"), ServicesMeta = DnsName.Parse("_services._dns-sd._udp.local");

    sealed class Entry(MdnsService wanted)
    {
        public MdnsService Wanted = wanted;
        public int Suffix = 1;
        public bool Confirmed;
        public string Instance => Suffix == 1 ? Wanted.Instance : $"{Wanted.Instance} ({Suffix})";
        public DnsName TypeName => DnsName.Parse(Wanted.Type + ".local");
        public DnsName Name => TypeName.Prepend(Instance);
    }

    readonly string _hostBase;
    int _hostSuffix = 1;
    bool _hostConfirmed;
    readonly List<Entry> _services = new();
    readonly object _lock = new();
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly Func<IReadOnlyList<LanLink>> _links;
    readonly TimeSpan _linkPoll;
    MulticastLinks? _net;
    readonly CancellationTokenSource _stop = new();
    readonly SemaphoreSlim _probeWanted = new(0, 1);
    /// <summary>Names a probe in progress found taken: renamed when the round ends.</summary>
    readonly HashSet<DnsName> _conflicts = new();
    /// <summary>A probe of ours lost a tie-break: wait a second and probe again (RFC 6762 §8.2).</summary>
    bool _lostTieBreak;
    readonly Dictionary<(int Link, string Record), long> _lastMulticast = new();
    int _pendingReplies;
    Task _tasks = Task.CompletedTask;

    public MdnsResponder(string hostName, ILogger log, TimeProvider time, Func<IReadOnlyList<LanLink>>? links = null, TimeSpan? linkPoll = null)
    {
        _hostBase = hostName; _log = log; _time = time; _links = links ?? LanLinks.Current; _linkPoll = linkPoll ?? TimeSpan.FromSeconds(3);
    }

    /// <summary>The host label in use (after any rename), without ".local".</summary>
    public string HostName { get { lock (_lock) return HostLabel; } }
    string HostLabel => _hostSuffix == 1 ? _hostBase : $"{_hostBase}-{_hostSuffix}";
    DnsName HostDns => new(HostLabel, "local");

    /// <summary>The services as announced (instance names after renames); only confirmed ones.</summary>
    public IReadOnlyList<MdnsService> Services
    {
        get { lock (_lock) return _services.Where(e => e.Confirmed).Select(e => e.Wanted with { Instance = e.Instance }).ToList(); }
    }

    public bool Running => _net is not null;

    IReadOnlyCollection<LanLink> Joined => _net?.Joined ?? [];

    public void Start(IReadOnlyList<MdnsService> services)
    {
        // TTL 255 (RFC 6762 §11); our own datagrams come back (loopback) so that another responder on this machine hears us.
        _net = new MulticastLinks("mdns", Group, Port, ttl: 255, loopback: true, _log, _links);
        lock (_lock) foreach (var svc in services) _services.Add(new Entry(svc));
        _net.Update();
        _log.LogInformation("mdns.started host={Host}.local services={Services} links={Links}", HostName, services.Count, string.Join(',', Joined.Select(l => l.Name)));
        _tasks = Task.WhenAll(Task.Run(ReceiveLoopAsync), Task.Run(ProbeLoopAsync), Task.Run(() => _net.WatchAsync(_linkPoll, _time, LinkChangedAsync, _stop.Token)));
        WantProbe();
    }

    /// <summary>A new set of services (a channel added, renamed or removed, the panel switched): goodbye for those gone, probes for new ones.</summary>
    public void SetServices(IReadOnlyList<MdnsService> services)
    {
        List<DnsRecord> gone = new();
        bool added = false;
        lock (_lock)
        {
            foreach (var e in _services.ToList())
                if (!services.Contains(e.Wanted))
                {
                    if (e.Confirmed) gone.AddRange(ServiceRecords(e));
                    _services.Remove(e);
                }
            foreach (var svc in services)
                if (!_services.Any(e => e.Wanted == svc)) { _services.Add(new Entry(svc)); added = true; }
        }
        if (gone.Count > 0)
        {
            _log.LogInformation("mdns.goodbye records={Records} reason=\"service removed\"", gone.Count);
            _ = SendEverywhereAsync(gone.Select(r => r with { Ttl = 0 }).ToList());
        }
        if (added) WantProbe();
    }

    void WantProbe() { try { _probeWanted.Release(); } catch (SemaphoreFullException) { } }

    // ---- the records ----

    IEnumerable<DnsRecord> HostRecords(LanLink link)
    {
        var host = HostDns;
        foreach (var a in link.V4) yield return DnsRecord.A(host, a, HostTtl);
        foreach (var a in link.V6) yield return DnsRecord.A(host, a, HostTtl);
    }

    DnsRecord HostNsec(LanLink link) =>
        DnsRecord.Nsec(HostDns, link.V6.Count > 0 ? [DnsType.A, DnsType.Aaaa] : [DnsType.A], HostTtl);

    IEnumerable<DnsRecord> ServiceRecords(Entry e)
    {
        var type = e.TypeName;
        yield return DnsRecord.Ptr(ServicesMeta, type, ServiceTtl);
        yield return DnsRecord.Ptr(type, e.Name, ServiceTtl);
        yield return DnsRecord.Srv(e.Name, HostDns, (ushort)e.Wanted.Port, HostTtl);
        yield return DnsRecord.Txt(e.Name, e.Wanted.Txt, ServiceTtl);
    }

    /// <summary>Every record this device answers with on <paramref name="link"/> (confirmed names only).</summary>
    List<DnsRecord> RecordsFor(LanLink link)
    {
        var list = new List<DnsRecord>();
        if (!_hostConfirmed) return list;
        list.AddRange(HostRecords(link));
        foreach (var e in _services.Where(e => e.Confirmed)) list.AddRange(ServiceRecords(e));
        return list;
    }

    // ---- probing and announcing ----

    async Task ProbeLoopAsync()
    {
        var ct = _stop.Token;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                await _probeWanted.WaitAsync(ct);
                // Up to 250 ms of random wait before the first probe (RFC 6762 §8.1), so that devices powered on together do not probe in step.
                await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.Next(0, 250)), _time, ct);
                while (true)
                {
                    List<DnsName> names;
                    List<DnsRecord> proposed;
                    lock (_lock)
                    {
                        _conflicts.Clear();
                        _lostTieBreak = false;
                        names = new();
                        proposed = new();
                        var any = Joined.FirstOrDefault();
                        if (!_hostConfirmed) { names.Add(HostDns); if (any is not null) proposed.AddRange(HostRecords(any)); }
                        foreach (var e in _services.Where(e => !e.Confirmed))
                        {
                            names.Add(e.Name);
                            proposed.AddRange(ServiceRecords(e).Where(r => r.Type is DnsType.Srv or DnsType.Txt));
                        }
                    }
                    if (names.Count == 0) break;
                    for (int i = 0; i < 3; i++)
                    {
                        var probe = new DnsMessage
                        {
                            Questions = names.Select((n, k) => new DnsQuestion(n, DnsType.Any, UnicastResponse: i == 0)).ToList(),
                            Authorities = proposed,
                        };
                        await SendEverywhereAsync(probe);
                        await Task.Delay(TimeSpan.FromMilliseconds(250), _time, ct);
                        lock (_lock) if (_conflicts.Count > 0 || _lostTieBreak) break;
                    }
                    bool again;
                    lock (_lock)
                    {
                        again = _conflicts.Count > 0 || _lostTieBreak;
                        foreach (var n in _conflicts) Rename(n);
                        if (!again)
                        {
                            if (names.Contains(HostDns)) _hostConfirmed = true;
                            foreach (var e in _services.Where(e => names.Contains(e.Name))) e.Confirmed = true;
                        }
                    }
                    if (again)
                    {
                        // Lost a tie-break, or too many conflicts in a row: a second before trying again (RFC 6762 §8.1, §8.2).
                        await Task.Delay(TimeSpan.FromSeconds(1), _time, ct);
                        continue;
                    }
                    _log.LogInformation("mdns.announce host={Host}.local services=\"{Services}\"", HostName, string.Join("; ", Services.Select(s => $"{s.Instance}.{s.Type}:{s.Port}")));
                    for (int k = 0; k < 2; k++)
                    {
                        foreach (var link in Joined.ToList()) await SendAnnouncementAsync(link);
                        if (k == 0) await Task.Delay(TimeSpan.FromSeconds(1), _time, ct);
                    }
                    break;
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    /// <summary>Renames a name found taken: the host gets -2, -3 …; a service instance " (2)", " (3)" ….</summary>
    void Rename(DnsName taken)
    {
        if (taken.Equals(HostDns))
        {
            string was = HostLabel;
            _hostSuffix++;
            _hostConfirmed = false;
            foreach (var e in _services) e.Confirmed = false;   // their SRV records name the host
            _log.LogWarning("mdns.conflict name={Name}.local renamed={New}.local", was, HostLabel);
            return;
        }
        foreach (var e in _services.Where(e => e.Name.Equals(taken)))
        {
            string was = e.Instance;
            e.Suffix++;
            e.Confirmed = false;
            _log.LogWarning("mdns.conflict name=\"{Name}.{Type}.local\" renamed=\"{New}\"", was, e.Wanted.Type, e.Instance);
        }
    }

    Task SendAnnouncementAsync(LanLink link)
    {
        List<DnsRecord> host;
        List<List<DnsRecord>> services;
        lock (_lock)
        {
            if (!_hostConfirmed) return Task.CompletedTask;
            host = HostRecords(link).ToList();
            services = _services.Where(e => e.Confirmed).Select(e => ServiceRecords(e).ToList()).ToList();
        }
        return SendAnnouncementAsync(link, host, services);
    }

    async Task SendAnnouncementAsync(LanLink link, List<DnsRecord> host, List<List<DnsRecord>> services)
    {
        // One message for the host, one per service: each stays far below one Ethernet frame.
        await SendAsync(link, new DnsMessage { Flags = DnsMessage.ResponseFlag | DnsMessage.AuthoritativeFlag, Answers = host }, null);
        foreach (var s in services)
            await SendAsync(link, new DnsMessage { Flags = DnsMessage.ResponseFlag | DnsMessage.AuthoritativeFlag, Answers = s }, null);
        lock (_lock)
        {
            long now = _time.GetTimestamp();
            foreach (var r in host.Concat(services.SelectMany(s => s))) _lastMulticast[(link.Index, Key(r))] = now;
        }
    }

    // ---- links ----

    /// <summary>A link that came up is announced on; an address change says goodbye for the addresses gone and announces the new set.</summary>
    async Task LinkChangedAsync(LanLink link, LanLink? old)
    {
        if (old is not null)
        {
            var gone = old.All.Except(link.All).ToList();
            _log.LogInformation("mdns.address_change link={Link} added={Added} removed={Removed}", link.Name,
                string.Join(',', link.All.Except(old.All)), string.Join(',', gone));
            List<DnsRecord>? bye = null;
            lock (_lock) if (_hostConfirmed && gone.Count > 0) bye = gone.Select(a => DnsRecord.A(HostDns, a, 0)).ToList();
            if (bye is not null) await SendAsync(link, new DnsMessage { Flags = DnsMessage.ResponseFlag | DnsMessage.AuthoritativeFlag, Answers = bye }, null);
        }
        await SendAnnouncementAsync(link);
    }

    // ---- receiving and answering ----

    async Task ReceiveLoopAsync()
    {
        var buffer = new byte[DnsMessage.MaxSize];
        while (await _net!.ReceiveAsync(buffer, _stop.Token) is { } d)
        {
            // Our own multicast comes back to us (loopback on): not a conflict, not a question.
            if (d.Link.All.Contains(d.From.Address) && d.From.Port == Port) continue;
            if (!DnsMessage.TryParse(buffer.AsSpan(0, d.Length), out var m)) continue;
            try
            {
                if (m!.IsResponse) CheckConflicts(m);
                else Answer(m, d.From, d.Link);
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException)
            {
                _log.LogWarning("mdns.bad_message from={From} error=\"{Error}\"", d.From, e.Message);
            }
        }
    }

    /// <summary>A response naming one of our unique names with other data: taken (while probing), or a conflict to resolve (RFC 6762 §9).</summary>
    void CheckConflicts(DnsMessage m)
    {
        bool reprobe = false;
        lock (_lock)
        {
            var ours = Joined.SelectMany(l => HostRecords(l)).Concat(_services.SelectMany(ServiceRecords)).Where(r => r.CacheFlush).ToList();
            foreach (var rec in m.Answers.Concat(m.Additionals))
            {
                if (rec.Type is not (DnsType.A or DnsType.Aaaa or DnsType.Srv or DnsType.Txt) || rec.Ttl == 0) continue;
                bool hostName = rec.Name.Equals(HostDns);
                var entry = _services.FirstOrDefault(e => e.Name.Equals(rec.Name));
                if (!hostName && entry is null) continue;
                if (ours.Any(o => o.SameData(rec))) continue;   // another responder saying the same thing is no conflict
                // A host name with an address that is not ours; a service name with an SRV/TXT that is not ours.
                if (hostName && rec.Type is not (DnsType.A or DnsType.Aaaa)) continue;
                bool confirmed = hostName ? _hostConfirmed : entry!.Confirmed;
                _conflicts.Add(rec.Name);
                if (confirmed) { Rename(rec.Name); reprobe = true; }
            }
        }
        if (reprobe) WantProbe();
    }

    void Answer(DnsMessage query, IPEndPoint from, LanLink link)
    {
        bool legacy = from.Port != Port;
        List<DnsRecord> answers = new(), additionals = new();
        bool shared = false;
        // QU questions only (RFC 6762 §5.4): the answer goes to the querier alone.
        bool unicast = legacy || (query.Questions.Count > 0 && query.Questions.All(q => q.UnicastResponse));
        lock (_lock)
        {
            // A probe for a name we are probing too: the tie-break (RFC 6762 §8.2), on the lexicographically later data.
            if (query.IsProbe)
                foreach (var q in query.Questions)
                {
                    var mine = ProbingRecords().Where(r => r.Name.Equals(q.Name)).ToList();
                    var theirs = query.Authorities.Where(r => r.Name.Equals(q.Name)).ToList();
                    if (mine.Count > 0 && theirs.Count > 0 && CompareSets(mine, theirs) < 0) _lostTieBreak = true;
                }
            var records = RecordsFor(link);
            var nsec = _hostConfirmed ? HostNsec(link) : null;
            foreach (var q in query.Questions)
            {
                var matched = records.Where(r => q.Matches(r.Name, r.Type)).ToList();
                if (matched.Count == 0 && nsec is not null && q.Name.Equals(HostDns) && q.Type is not (DnsType.A or DnsType.Aaaa or DnsType.Any))
                    additionals.Add(nsec);   // a negative answer: the host has no record of that type (RFC 6762 §6.1)
                if (matched.Count == 0 && nsec is not null && q.Name.Equals(HostDns) && q.Type == DnsType.Aaaa && link.V6.Count == 0)
                    answers.Add(nsec);
                foreach (var r in matched)
                {
                    // Known-answer suppression (RFC 6762 §7.1): the querier has it with at least half its TTL left.
                    if (query.Answers.Any(k => k.SameData(r) && k.Ttl >= r.Ttl / 2)) continue;
                    if (answers.Any(a => a.SameData(r))) continue;
                    answers.Add(r);
                    shared |= !r.CacheFlush;
                }
            }
            if (answers.Count == 0) return;
            // DNS-SD additional records (RFC 6763 §12): SRV and TXT with a PTR, the addresses with an SRV.
            foreach (var a in answers.ToList())
            {
                if (a.Type == DnsType.Ptr)
                    additionals.AddRange(records.Where(r => r.Name.Equals(a.Target) && r.Type is DnsType.Srv or DnsType.Txt));
                if (a.Type == DnsType.Ptr || a.Type == DnsType.Srv)
                    additionals.AddRange(records.Where(r => r.Type is DnsType.A or DnsType.Aaaa));
            }
            additionals = additionals.Where(x => !answers.Any(a => a.SameData(x))).DistinctBy(Key).ToList();
            if (!unicast)
            {
                // At most one multicast of a record a second per link (RFC 6762 §6); a probe's question is answered regardless.
                long now = _time.GetTimestamp();
                answers = answers.Where(a => query.IsProbe || !_lastMulticast.TryGetValue((link.Index, Key(a)), out long at) || _time.GetElapsedTime(at, now) >= TimeSpan.FromSeconds(1)).ToList();
                if (answers.Count == 0) return;
                foreach (var a in answers) _lastMulticast[(link.Index, Key(a))] = now;
            }
        }
        if (Interlocked.Increment(ref _pendingReplies) > 64) { Interlocked.Decrement(ref _pendingReplies); return; }   // a query storm: answers are dropped, not queued without end
        _ = ReplyAsync(query, from, link, answers, additionals, legacy, unicast, shared);
    }

    async Task ReplyAsync(DnsMessage query, IPEndPoint from, LanLink link, List<DnsRecord> answers, List<DnsRecord> additionals, bool legacy, bool unicast, bool shared)
    {
        try
        {
            // Shared records (PTR) wait 20–120 ms so that many responders' answers spread out (RFC 6762 §6); unique ones go at once.
            if (shared && !unicast) await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.Next(20, 121)), _time, _stop.Token);
            if (legacy)
            {
                // Legacy unicast (RFC 6762 §6.7): the query's id and questions, no cache-flush bits, TTLs of at most 10 s.
                static DnsRecord Plain(DnsRecord r) => r with { CacheFlush = false, Ttl = Math.Min(r.Ttl, 10) };
                await SendAsync(link, new DnsMessage
                {
                    Id = query.Id, Flags = DnsMessage.ResponseFlag | DnsMessage.AuthoritativeFlag, Questions = query.Questions,
                    Answers = answers.Select(Plain).ToList(), Additionals = additionals.Select(Plain).ToList(),
                }, from);
                return;
            }
            var reply = new DnsMessage { Flags = DnsMessage.ResponseFlag | DnsMessage.AuthoritativeFlag, Answers = answers, Additionals = additionals };
            await SendAsync(link, reply, unicast ? from : null);
        }
        catch (OperationCanceledException) { }
        finally { Interlocked.Decrement(ref _pendingReplies); }
    }

    IEnumerable<DnsRecord> ProbingRecords()
    {
        var any = Joined.FirstOrDefault();
        if (!_hostConfirmed && any is not null) foreach (var r in HostRecords(any)) yield return r;
        foreach (var e in _services.Where(e => !e.Confirmed))
            foreach (var r in ServiceRecords(e).Where(r => r.Type is DnsType.Srv or DnsType.Txt)) yield return r;
    }

    /// <summary>RFC 6762 §8.2: sort each set, compare record by record (class, type, then RDATA bytes); the longer set wins a tie.</summary>
    static int CompareSets(List<DnsRecord> mine, List<DnsRecord> theirs)
    {
        static List<byte[]> Sorted(List<DnsRecord> set) => set.Select(r => (byte[])[(byte)((int)r.Type >> 8), (byte)r.Type, .. r.RdataBytes()])
            .OrderBy(b => b, Comparer<byte[]>.Create((x, y) => x.AsSpan().SequenceCompareTo(y))).ToList();
        var a = Sorted(mine);
        var b = Sorted(theirs);
        for (int i = 0; i < Math.Min(a.Count, b.Count); i++)
        {
            int c = a[i].AsSpan().SequenceCompareTo(b[i]);
            if (c != 0) return c;
        }
        return a.Count.CompareTo(b.Count);
    }

    static string Key(DnsRecord r) => r.ToString().Replace($"ttl={r.Ttl}", "", StringComparison.Ordinal);

    // ---- sending ----

    async Task SendEverywhereAsync(DnsMessage m)
    {
        foreach (var link in Joined.ToList()) await SendAsync(link, m, null);
    }

    Task SendEverywhereAsync(List<DnsRecord> records) =>
        SendEverywhereAsync(new DnsMessage { Flags = DnsMessage.ResponseFlag | DnsMessage.AuthoritativeFlag, Answers = records });

    /// <summary>Multicast on one link (or unicast to <paramref name="to"/>).</summary>
    async Task SendAsync(LanLink link, DnsMessage m, IPEndPoint? to)
    {
        if (_net is not { } net) return;
        byte[] bytes;
        try { bytes = m.ToArray(); }
        catch (InvalidOperationException e) { _log.LogWarning("mdns.too_large error=\"{Error}\"", e.Message); return; }
        await net.SendAsync(link, bytes, to);
    }

    /// <summary>Goodbye for every record on every link (TTL 0, RFC 6762 §10.1), then closes.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_net is null) return;
        List<(LanLink Link, List<DnsRecord> Records)> bye;
        lock (_lock) bye = Joined.Select(l => (l, RecordsFor(l).Select(r => r with { Ttl = 0 }).ToList())).ToList();
        foreach (var (link, records) in bye)
            foreach (var part in records.Chunk(12))
                await SendAsync(link, new DnsMessage { Flags = DnsMessage.ResponseFlag | DnsMessage.AuthoritativeFlag, Answers = part.ToList() }, null);
        _log.LogInformation("mdns.stopped goodbyes={Records}", bye.Sum(b => b.Records.Count));
        _stop.Cancel();
        _net.Dispose();
        try { await _tasks; } catch (OperationCanceledException) { }
        _net = null;
    }
}
