using System.Net;

namespace Pearl2.Services;

/// <summary>A connection's peer as the product talks about it: IPv4 peers of our dual-stack listeners as plain IPv4.</summary>
public readonly record struct PeerAddress(IPAddress? Address, int Port)
{
    public static PeerAddress Of(EndPoint? endPoint) => endPoint is IPEndPoint ep
        ? new PeerAddress(ep.Address.IsIPv4MappedToIPv6 ? ep.Address.MapToIPv4() : ep.Address, ep.Port)
        : new PeerAddress(null, 0);

    /// <summary>The device itself: served even when streaming is off for other hosts.</summary>
    public bool IsLoopback => Address is not null && IPAddress.IsLoopback(Address);

    /// <summary>
    /// One host as limits count it: an IPv4 address, or an IPv6 address by its /64 (which one host can fill with
    /// addresses of its own).
    /// </summary>
    public static IPAddress HostKey(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) return address.MapToIPv4();
        if (address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6) return address;
        Span<byte> b = stackalloc byte[16];
        address.TryWriteBytes(b, out _);
        b[8..].Clear();
        return new IPAddress(b);
    }

    public override string ToString() => Address is null ? "?" : new IPEndPoint(Address, Port).ToString();
}
