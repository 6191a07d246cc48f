using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace Pearl2.Services;

/// <summary>The addresses other hosts reach this device at (for the stream URLs, the display and discovery).</summary>
public static class HostAddresses
{
    /// <summary>The first IPv4 address of the first interface that is up and not loopback, or 127.0.0.1.</summary>
    public static string Primary()
    {
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            if (nic.OperationalStatus != OperationalStatus.Up || nic.NetworkInterfaceType == NetworkInterfaceType.Loopback) continue;
            foreach (var a in nic.GetIPProperties().UnicastAddresses)
                if (a.Address.AddressFamily == AddressFamily.InterNetwork) return a.Address.ToString();
        }
        return "127.0.0.1";
    }

    /// <summary>Every address of every interface that is up (IPv6 link-local ones left out), for the HTTPS certificate.</summary>
    public static IReadOnlyList<System.Net.IPAddress> All()
    {
        var list = new List<System.Net.IPAddress>();
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            if (nic.OperationalStatus != OperationalStatus.Up) continue;
            foreach (var a in nic.GetIPProperties().UnicastAddresses)
                if (!a.Address.IsIPv6LinkLocal) list.Add(a.Address);
        }
        return list;
    }
}
