using Microsoft.Extensions.Logging.Abstractions;
using Pearl2.Services;
using Pearl2.Services.Channels;
using Pearl2.Services.Configuration;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>
/// The device with fake channel services (and real, small encoders): which services attach to which channel, in what
/// order, what a config version hands each of them, and what a refused version leaves alone.
/// </summary>
public sealed class DeviceTests : IAsyncLifetime
{
    readonly List<string> _events = new();

    sealed class FakeService(string name, List<string> events, int viewers = 0, int failOnChannel = 0) : IChannelService
    {
        public string Name => name;

        public Task<IChannelAttachment> AttachAsync(ChannelContext channel, ChannelConfig config, ChannelAccess access)
        {
            if (channel.Number == failOnChannel)
                return channel.BindAsync<IChannelAttachment>($"{name} port {channel.Ports.RtspPort(channel.Index)}",
                    () => throw new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.AddressAlreadyInUse));
            lock (events) events.Add($"attach {name} {channel.Number} streaming={access.Streaming} login={access.Credentials is not null}");
            return Task.FromResult<IChannelAttachment>(new Attachment(name, channel.Number, events, viewers));
        }

        sealed class Attachment(string name, int channel, List<string> events, int viewers) : IChannelAttachment
        {
            public int Apply(ChannelConfig config, ChannelAccess access)
            {
                lock (events) events.Add($"apply {name} {channel} streaming={access.Streaming} login={access.Credentials is not null}");
                return 0;
            }

            public void Report(ChannelStatusBuilder status) => status.Viewers[name] = viewers;

            public ValueTask DisposeAsync()
            {
                lock (events) events.Add($"dispose {name} {channel}");
                return ValueTask.CompletedTask;
            }
        }
    }

    static FirmwareConfig Config(int channels, Action<FirmwareConfig>? change = null)
    {
        var c = new FirmwareConfig
        {
            Channels = Enumerable.Range(1, channels).Select(i => new ChannelConfig
            {
                Name = $"C{i}",
                Video = new VideoConfig { Width = 160, Height = 96, BitrateKbps = 200 },
                Audio = new AudioConfig { Enabled = false },
            }).ToList(),
        };
        change?.Invoke(c);
        return c;
    }

    ConfigStore _store = null!;
    Device _device = null!;

    public async Task InitializeAsync()
    {
        _store = new ConfigStore(Config(2), null, 0, NullLogger.Instance);
        _device = new Device(_store, new BoardProfile(), [new FakeService("a", _events, viewers: 3), new FakeService("b", _events, viewers: 1)], NullLoggerFactory.Instance, TimeProvider.System);
        await _device.StartAsync();
    }

    public async Task DisposeAsync() => await _device.DisposeAsync();

    string[] Take()
    {
        lock (_events) { var e = _events.ToArray(); _events.Clear(); return e; }
    }

    [Fact]
    public void EveryServiceAttachesToEveryChannelInOrderAndReportsIntoTheStatus()
    {
        Assert.Equal(["attach a 1 streaming=True login=False", "attach b 1 streaming=True login=False", "attach a 2 streaming=True login=False", "attach b 2 streaming=True login=False"], Take());
        var status = _device.Status();
        Assert.Equal(DeviceState.Ready, status.State);
        Assert.Equal([1, 2], status.Channels.Select(c => c.Number));
        Assert.All(status.Channels, c => Assert.Equal((3, 1), (c.ViewersOf("a"), c.ViewersOf("b"))));
        Assert.Equal(554, status.Channels[0].RtspPort);
        Assert.Equal(8001, status.Channels[1].HttpPort);
        Assert.Equal(1, status.ConfigVersion);
    }

    [Fact]
    public async Task AVersionThatKeepsThePicturesIsAppliedInPlaceAndOneThatChangesThemRestartsOnlyThatChannel()
    {
        Take();
        var change = await _store.ApplyAsync(Config(2, c => c.Channels[1].Auth = new AuthConfig { Username = "u", Password = "secret" }));
        Assert.True(change.Applied);
        Assert.Equal(2, change.Version);
        Assert.Equal(["apply a 1 streaming=True login=False", "apply b 1 streaming=True login=False", "apply a 2 streaming=True login=True", "apply b 2 streaming=True login=True"], Take());

        change = await _store.ApplyAsync(Config(2, c => c.Channels[0].Video.BitrateKbps = 300));
        Assert.True(change.Applied);
        // Channel 1 restarts alone, its services leaving in reverse order; channel 2 only gets the new version.
        Assert.Equal(["dispose b 1", "dispose a 1", "attach a 1 streaming=True login=False", "attach b 1 streaming=True login=False", "apply a 2 streaming=True login=False", "apply b 2 streaming=True login=False"], Take());
        Assert.Equal(300, _device.Status().Channels[0].BitrateKbps);
    }

    [Fact]
    public async Task ChannelsAreAddedAndRemovedAtTheEndOfTheList()
    {
        Take();
        Assert.True((await _store.ApplyAsync(Config(3))).Applied);
        Assert.Contains("attach a 3 streaming=True login=False", Take());
        Assert.Equal(3, _device.Status().Channels.Count);
        Assert.True((await _store.ApplyAsync(Config(1))).Applied);
        Assert.Equal(["dispose b 3", "dispose a 3", "dispose b 2", "dispose a 2", "apply a 1 streaming=True login=False", "apply b 1 streaming=True login=False"], Take());
        Assert.Single(_device.Status().Channels);
    }

    [Fact]
    public async Task ARefusedVersionChangesNothingAndSaysEveryReason()
    {
        Take();
        var change = await _store.ApplyAsync(Config(2, c => { c.Channels[0].Video.Width = 321; c.Http.Port = 555; }));
        Assert.False(change.Applied);
        Assert.Equal(1, change.Version);
        Assert.Contains("channels[0].video.width: 321 is not an even number from 64 to 4096", change.Errors);
        Assert.Empty(Take());
        Assert.Equal(160, _store.Current.Channels[0].Video.Width);

        // Ports are checked over every listener at once: HTTP on top of channel 2's RTSP port is named with both owners.
        change = await _store.ApplyAsync(Config(2, c => c.Http.Port = 555));
        Assert.False(change.Applied);
        Assert.Equal(["http.port: port 555/tcp is taken twice: channel 1 HTTP streams and channel 2 RTSP"], change.Errors);
        Assert.Empty(Take());
    }

    [Fact]
    public void TheStreamingSwitchReachesEveryServiceOfEveryChannel()
    {
        Take();
        _device.SetStreaming(false, "test");
        Assert.Equal(["apply a 1 streaming=False login=False", "apply b 1 streaming=False login=False", "apply a 2 streaming=False login=False", "apply b 2 streaming=False login=False"], Take());
        Assert.False(_device.Status().Streaming);
        _device.ToggleStreaming("test");
        Assert.True(_device.Status().Streaming);
    }

    [Fact]
    public async Task AServiceThatCannotBindStopsTheStartAndWhatAttachedLeaves()
    {
        var events = new List<string>();
        var store = new ConfigStore(Config(2), null, 0, NullLogger.Instance);
        var device = new Device(store, new BoardProfile(), [new FakeService("a", events), new FakeService("b", events, failOnChannel: 2)], NullLoggerFactory.Instance, TimeProvider.System);
        var e = await Assert.ThrowsAsync<PortBindException>(device.StartAsync);
        Assert.Equal("channel 2: b port 555: already in use by another program", e.Message);
        Assert.Equal(["attach a 1 streaming=True login=False", "attach b 1 streaming=True login=False", "attach a 2 streaming=True login=False", "dispose a 2", "dispose b 1", "dispose a 1"], events);
    }
}

public sealed class ConfigStoreTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pearl2-store-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task AnAppliedVersionIsNumberedSavedWholeAndAnnounced()
    {
        string path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, """{ "device": { "name": "Before" } }""");
        var store = ConfigStore.Load(path, 0, NullLogger.Instance);
        FirmwareConfig? announced = null;
        long announcedVersion = 0;
        store.Changed += (c, v) => { announced = c; announcedVersion = v; };
        var applied = new List<string>();
        store.SetApplier(c => { applied.Add(c.Device.Name); return Task.CompletedTask; });

        var next = ConfigLoader.ParseText("""{ "device": { "name": "After" } }""");
        var change = await store.ApplyAsync(next);
        Assert.Equal((true, 2L), (change.Applied, change.Version));
        Assert.Equal(["After"], applied);
        Assert.Equal(("After", 2L), (announced?.Device.Name, announcedVersion));
        Assert.Equal("After", ConfigLoader.Load(path).Device.Name);   // what the next start reads
        Assert.False(File.Exists(path + ".tmp"));

        // A refused one leaves the file, the version and the applier alone.
        next = ConfigLoader.ParseText("""{ "device": { "name": "After" } }""");
        next.Rtsp.Port = 8000;
        change = await store.ApplyAsync(next);
        Assert.False(change.Applied);
        Assert.Equal(2, store.Version);
        Assert.Single(applied);
        Assert.Equal(8000, ConfigLoader.Load(path).Http.Port);
        Assert.Equal(554, ConfigLoader.Load(path).Rtsp.Port);
    }

    [Fact]
    public async Task AReloadReadsTheFileAndABrokenFileIsRefused()
    {
        string path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, "{}");
        var store = ConfigStore.Load(path, 0, NullLogger.Instance);
        File.WriteAllText(path, """{ "channels": [ { "name": "Only" } ] }""");
        Assert.True((await store.ReloadAsync()).Applied);
        Assert.Equal("Only", Assert.Single(store.Current.Channels).Name);
        File.WriteAllText(path, """{ "channels": [ { "name": "Only", "video": { "fps": 0 } } ] }""");
        var refused = await store.ReloadAsync();
        Assert.False(refused.Applied);
        Assert.Equal(["channels[0].video.fps: 0 is not from 1 to 60"], refused.Errors);
        Assert.Equal(2, store.Version);
    }

    [Fact]
    public void ThePortPlanPutsEveryListenerInOnePlaceWithTheOffset()
    {
        var plan = PortPlan.Of(new FirmwareConfig(), 10000);
        Assert.Empty(plan.Errors);
        Assert.Equal((10554, 10555, 18000, 18001, 16970, 16974), (plan.RtspPort(0), plan.RtspPort(1), plan.HttpPort(0), plan.HttpPort(1), plan.UdpPort(0), plan.UdpPort(1)));
        // Per channel RTSP, HTTP and 4 UDP ports; for the device the admin panel's HTTP and HTTPS ports, mDNS and SSDP.
        Assert.Equal(2 * (1 + 1 + 4) + 2 + 2, plan.Ports.Count);
        // Discovery's ports are the protocols' own: the offset does not move them.
        Assert.Contains(plan.Ports, p => p.ToString() == "5353/udp (mDNS / DNS-SD)");
        Assert.Contains(plan.Ports, p => p.ToString() == "1900/udp (SSDP (UPnP discovery))");
        var onSsdp = new FirmwareConfig();
        onSsdp.Rtsp.UdpPortBase = 1896;   // channel 2's video RTP would be 1900
        Assert.Contains("rtsp.udpPortBase: port 1900/udp is taken twice: channel 2 RTSP/UDP video RTP and SSDP (UPnP discovery)", PortPlan.Of(onSsdp, 0).Errors);
        onSsdp.Discovery.Upnp = false;
        Assert.Empty(PortPlan.Of(onSsdp, 0).Errors);
        Assert.Equal((10080, 10443), (plan.AdminPort, plan.AdminHttpsPort));
        Assert.Contains(plan.Ports, p => p.ToString() == "10443/tcp (admin panel HTTPS)");
        Assert.Contains(plan.Ports, p => p.ToString() == "16977/udp (channel 2 RTSP/UDP audio RTCP)");

        var far = PortPlan.Of(new FirmwareConfig(), 65000);
        Assert.Contains("--port-offset: 65000 moves rtsp.port (554, 2 port(s)) past 65535", far.Errors);
        Assert.Contains("--port-offset: 65000 moves http.port (8000, 2 port(s)) past 65535", far.Errors);

        var udpOnRtsp = new FirmwareConfig();   // UDP and TCP ports may share numbers: only the same protocol clashes
        udpOnRtsp.Rtsp.UdpPortBase = 8000;
        Assert.Empty(PortPlan.Of(udpOnRtsp, 0).Errors);
        Assert.Equal(0, PortPlan.Of(new FirmwareConfig { Rtsp = new RtspConfig { UdpPortBase = 0 } }, 0).UdpPort(1));
    }
}
