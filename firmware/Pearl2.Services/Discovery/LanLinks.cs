using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace Pearl2.Services.Discovery;

/// <summary>One interface discovery answers on: up, multicast-capable, not loopback, with its addresses.</summary>
public sealed record LanLink(int Index, string Name, IReadOnlyList<IPAddress> V4, IReadOnlyList<IPAddress> V6)
{
    public IEnumerable<IPAddress> All => V4.Concat(V6);
    public bool SameAddresses(LanLink o) => V4.SequenceEqual(o.V4) && V6.SequenceEqual(o.V6);
}

/// <summary>The interfaces mDNS and SSDP work on, read from the kernel each time (a link that comes up or changes address is seen at the next poll).</summary>
public static class LanLinks
{
    public static IReadOnlyList<LanLink> Current()
    {
        var links = new List<LanLink>();
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            if (nic.OperationalStatus is not (OperationalStatus.Up or OperationalStatus.Unknown) || nic.NetworkInterfaceType == NetworkInterfaceType.Loopback
                || !nic.SupportsMulticast) continue;
            IPInterfaceProperties props;
            int index;
            try { props = nic.GetIPProperties(); index = props.GetIPv4Properties().Index; }
            catch (NetworkInformationException) { continue; }
            var v4 = props.UnicastAddresses.Select(a => a.Address).Where(a => a.AddressFamily == AddressFamily.InterNetwork).OrderBy(a => a.ToString()).ToList();
            var v6 = props.UnicastAddresses.Select(a => a.Address).Where(a => a.AddressFamily == AddressFamily.InterNetworkV6).OrderBy(a => a.ToString()).ToList();
            // An interface still without IPv4 (DHCP not done) is taken up at the next poll; mDNS and SSDP here run over IPv4.
            if (v4.Count > 0) links.Add(new LanLink(index, nic.Name, v4, v6));
        }
        return links;
    }
}
