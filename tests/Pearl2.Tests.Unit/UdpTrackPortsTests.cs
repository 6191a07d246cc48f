using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Pearl2.Services.Rtsp;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>
/// The RTCP side of a track's UDP ports, with real datagrams on loopback: a receiver report counts for every session
/// that registered its sender's address, and only for those.
/// </summary>
public sealed class UdpTrackPortsTests : IDisposable
{
    sealed class Counter : IRtcpReceiver
    {
        int _reports;
        public int Reports => Volatile.Read(ref _reports);
        public void OnReceiverReport() => Interlocked.Increment(ref _reports);
    }

    readonly UdpTrackPorts _ports;
    readonly Socket _client = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    readonly SocketAddress _clientAddress;

    public UdpTrackPortsTests()
    {
        _ports = BindSomewhere();
        _client.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _clientAddress = UdpTrackPorts.Destination(IPAddress.Loopback, ((IPEndPoint)_client.LocalEndPoint!).Port);
    }

    static UdpTrackPorts BindSomewhere()
    {
        for (int attempt = 0; ; attempt++)
        {
            try { return new UdpTrackPorts(Random.Shared.Next(20000, 30000) * 2, NullLogger.Instance); }
            catch (SocketException) when (attempt < 50) { }
        }
    }

    public void Dispose() { _ports.Dispose(); _client.Dispose(); }

    void Report(int length = 8) => _client.SendTo(new byte[length], new IPEndPoint(IPAddress.Loopback, _ports.RtcpPort));

    static void WaitFor(Func<bool> condition)
    {
        var until = DateTime.UtcNow.AddSeconds(10);
        while (!condition()) { Assert.True(DateTime.UtcNow < until, "timed out waiting for a report to be counted"); Thread.Sleep(5); }
    }

    [Fact]
    public void AReportCountsForEverySessionOnItsAddressAndSurvivesTheOtherLeaving()
    {
        Counter first = new(), second = new(), elsewhere = new();
        _ports.Register(_clientAddress, first);
        _ports.Register(_clientAddress, second);            // another session names the same client ports
        _ports.Register(_clientAddress, second);            // registering twice is once
        _ports.Register(UdpTrackPorts.Destination(IPAddress.Loopback, 9), elsewhere);
        Report();
        WaitFor(() => first.Reports == 1 && second.Reports == 1);

        _ports.Unregister(_clientAddress, second);          // the newcomer goes away: the first one still counts
        Report();
        WaitFor(() => first.Reports == 2);
        Report(4);                                          // too short to be RTCP: ignored
        Report();
        WaitFor(() => first.Reports == 3);
        Assert.Equal(1, second.Reports);
        Assert.Equal(0, elsewhere.Reports);
        Assert.Equal(2, _ports.AddressCount);
    }

    [Fact]
    public void RegisteringManyAddressesAndLeavingThemLeavesNothingBehind()
    {
        var viewer = new Counter();
        for (int port = 1024; port < 1024 + 20_000; port++)
        {
            var a = UdpTrackPorts.Destination(IPAddress.Parse("192.0.2.7"), port);
            _ports.Register(a, viewer);
            _ports.Unregister(a, viewer);
        }
        _ports.Register(_clientAddress, viewer);
        Assert.Equal(1, _ports.AddressCount);
        Report();
        WaitFor(() => viewer.Reports == 1);
        _ports.Unregister(_clientAddress, viewer);
        Assert.Equal(0, _ports.AddressCount);
    }

    [Fact]
    public void APairThatCannotBindWholeGivesBackTheHalfItBound()
    {
        // Hold an odd port, then ask for the pair below it: the RTP half binds, the RTCP half cannot.
        using var holder = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp) { DualMode = true };
        int rtp = 0;
        for (int attempt = 0; attempt < 50 && rtp == 0; attempt++)
        {
            int even = Random.Shared.Next(15000, 19000) * 2;
            try { holder.Bind(new IPEndPoint(IPAddress.IPv6Any, even + 1)); rtp = even; } catch (SocketException) { }
        }
        Assert.NotEqual(0, rtp);
        Assert.Throws<SocketException>(() => new UdpTrackPorts(rtp, NullLogger.Instance));
        using var again = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp) { DualMode = true };
        again.Bind(new IPEndPoint(IPAddress.IPv6Any, rtp));   // the RTP port was given back
    }
}
