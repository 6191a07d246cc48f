using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Pearl2.Services.Discovery;

/// <summary>A datagram as it came in: its bytes (in the caller's buffer), the sender, the link, and whether it was sent to the group.</summary>
readonly record struct LinkDatagram(int Length, IPEndPoint From, LanLink Link, bool ToGroup);

/// <summary>
/// One IPv4 UDP socket on a multicast protocol's port (mDNS 5353, SSDP 1900), shared with other programs on the machine
/// (SO_REUSEADDR), joined to the group on every LAN link and kept so as links come, go and change address (polled).
/// Sends go out on one chosen link (IP_MULTICAST_IF by interface index) or to one host; each datagram received says
/// which link it came in on (IP_PKTINFO), so answers use that link's own addresses.
/// </summary>
sealed class MulticastLinks : IDisposable
{
    readonly string _name;
    readonly IPAddress _group;
    readonly int _port;
    readonly ILogger _log;
    readonly Func<IReadOnlyList<LanLink>> _links;
    readonly SemaphoreSlim _sendLock = new(1, 1);
    Dictionary<int, LanLink> _joined = new();
    Socket? _socket;

    public MulticastLinks(string name, IPAddress group, int port, int ttl, bool loopback, ILogger log, Func<IReadOnlyList<LanLink>>? links = null)
    {
        _name = name; _group = group; _port = port; _log = log; _links = links ?? LanLinks.Current;
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            s.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.PacketInformation, true);
            s.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastTimeToLive, ttl);
            s.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastLoopback, loopback);
            s.Bind(new IPEndPoint(IPAddress.Any, port));
        }
        catch { s.Dispose(); throw; }
        _socket = s;
    }

    /// <summary>The links joined now (a snapshot).</summary>
    public IReadOnlyCollection<LanLink> Joined => _joined.Values;
    public bool TryGet(int index, out LanLink link) => _joined.TryGetValue(index, out link!);

    /// <summary>What changed at a poll: a link joined (<c>Old</c> null) or a joined link whose addresses changed.</summary>
    public readonly record struct Change(LanLink Link, LanLink? Old);

    /// <summary>Joins the group on links that came up, leaves those gone; the changes, for the protocol to announce.</summary>
    public List<Change> Update()
    {
        var changes = new List<Change>();
        IReadOnlyList<LanLink> now;
        try { now = _links(); }
        catch (Exception e) when (e is System.Net.NetworkInformation.NetworkInformationException or IOException) { return changes; }
        var next = now.ToDictionary(l => l.Index);
        foreach (var link in now)
        {
            if (_joined.TryGetValue(link.Index, out var old))
            {
                if (!old.SameAddresses(link)) changes.Add(new Change(link, old));
                continue;
            }
            try
            {
                _socket!.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.AddMembership, new MulticastOption(_group, link.Index));
                _log.LogInformation("{Name}.link_up link={Link} index={Index} addresses={Addresses}", _name, link.Name, link.Index, string.Join(',', link.All));
                changes.Add(new Change(link, null));
            }
            catch (SocketException e)
            {
                _log.LogWarning("{Name}.join_failed link={Link} error=\"{Error}\"", _name, link.Name, e.Message);
                next.Remove(link.Index);
            }
        }
        foreach (var gone in _joined.Keys.Except(next.Keys))
        {
            try { _socket!.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.DropMembership, new MulticastOption(_group, gone)); }
            catch (SocketException) { }   // the interface went away with its membership
            _log.LogInformation("{Name}.link_down link={Link}", _name, _joined[gone].Name);
        }
        _joined = next;
        return changes;
    }

    /// <summary>
    /// Polls the links every <paramref name="poll"/> until cancelled, telling <paramref name="changed"/> of each link that
    /// joined (old null) or changed address (the link before the change).
    /// </summary>
    public async Task WatchAsync(TimeSpan poll, TimeProvider time, Func<LanLink, LanLink?, Task> changed, CancellationToken ct)
    {
        try
        {
            while (!ct.IsCancellationRequested)
            {
                await Task.Delay(poll, time, ct);
                foreach (var c in Update()) await changed(c.Link, c.Old);
            }
        }
        catch (OperationCanceledException) { }
    }

    /// <summary>The next datagram that came in on a joined link (others are dropped); null once closed.</summary>
    public async Task<LinkDatagram?> ReceiveAsync(Memory<byte> buffer, CancellationToken ct)
    {
        EndPoint any = new IPEndPoint(IPAddress.Any, 0);
        while (true)
        {
            SocketReceiveMessageFromResult r;
            try { r = await _socket!.ReceiveMessageFromAsync(buffer, SocketFlags.None, any, ct); }
            catch (OperationCanceledException) { return null; }
            catch (ObjectDisposedException) { return null; }
            catch (NullReferenceException) { return null; }
            catch (SocketException) { continue; }   // an ICMP error for an earlier unicast answer
            if (_joined.TryGetValue(r.PacketInformation.Interface, out var link))
                return new LinkDatagram(r.ReceivedBytes, (IPEndPoint)r.RemoteEndPoint, link, r.PacketInformation.Address.Equals(_group));
        }
    }

    /// <summary>To the group on one link, or to one host; a failed send is logged, never thrown.</summary>
    public async Task SendAsync(LanLink link, ReadOnlyMemory<byte> bytes, IPEndPoint? to)
    {
        var s = _socket;
        if (s is null) return;
        await _sendLock.WaitAsync();
        try
        {
            if (to is null) s.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastInterface, IPAddress.HostToNetworkOrder(link.Index));
            await s.SendToAsync(bytes, SocketFlags.None, to ?? new IPEndPoint(_group, _port));
        }
        catch (SocketException e) { _log.LogWarning("{Name}.send_failed link={Link} to={To} error=\"{Error}\"", _name, link.Name, to?.ToString() ?? "multicast", e.Message); }
        catch (ObjectDisposedException) { }
        finally { _sendLock.Release(); }
    }

    public void Dispose()
    {
        _socket?.Dispose();
        _socket = null;
    }
}
