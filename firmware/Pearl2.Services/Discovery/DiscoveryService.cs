using System.Net;
using Microsoft.Extensions.Logging;
using Pearl2.Services.Configuration;
using Pearl2.Services.Recording;

namespace Pearl2.Services.Discovery;

/// <summary>What discovery is doing now, for the admin API and panel.</summary>
public sealed record DiscoveryStatus(bool Mdns, string? HostName, IReadOnlyList<MdnsService> Services, bool Upnp, int UpnpPort, string Uuid, string Serial, int BootId);

/// <summary>
/// Being found on the LAN: the mDNS responder, and the UPnP media server with its SSDP advertiser. Each is switched by
/// the config's discovery section, at once (the config store's change event); what they announce follows the device:
/// every channel that streams to other hosts as <c>_rtsp._tcp</c> (checked every 2 s, so the Stream button withdraws
/// them too), the admin panel as <c>_http._tcp</c>/<c>_https._tcp</c>, and the device itself as <c>_device-info._tcp</c>.
/// </summary>
public sealed class DiscoveryService : IAsyncDisposable
{
    readonly ConfigStore _store;
    readonly IDeviceControl _device;
    readonly RecordingLibrary? _library;
    readonly ViewerAuth _auth;
    readonly DeviceIdentity _identity;
    readonly string _version;
    readonly string _dataDir;
    readonly ILoggerFactory _loggers;
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly SemaphoreSlim _turn = new(1, 1);
    readonly CancellationTokenSource _stop = new();
    MdnsResponder? _mdns;
    UpnpMediaServer? _upnp;
    SsdpAdvertiser? _ssdp;
    DiscoveryConfig _running = new() { Mdns = false, Upnp = false };
    Task _watch = Task.CompletedTask;

    public DiscoveryService(ConfigStore store, IDeviceControl device, RecordingLibrary? library, ViewerAuth auth, DeviceIdentity identity, string version,
        string dataDir, ILoggerFactory loggers, TimeProvider time)
    {
        _store = store; _device = device; _library = library; _auth = auth; _identity = identity; _version = version; _dataDir = dataDir;
        _loggers = loggers; _log = loggers.CreateLogger("Pearl2.Discovery"); _time = time;
    }

    /// <summary>The media server's port while it runs, else 0 (for the ports table).</summary>
    public int UpnpPort => _upnp?.Port ?? 0;

    public DiscoveryStatus Status()
    {
        var m = _mdns;
        return new DiscoveryStatus(m is not null, m?.HostName, m?.Services ?? [], _upnp is not null, UpnpPort, _identity.Uuid, _identity.Serial, _ssdp?.BootId ?? 0);
    }

    public async Task StartAsync()
    {
        await ApplyAsync(_store.Current.Discovery);
        _store.Changed += (next, version) => _ = Task.Run(() => ApplyAsync(next.Discovery));
        _watch = Task.Run(WatchAsync);
    }

    /// <summary>Turns each part on or off as the config says; a new host name restarts mDNS under it.</summary>
    async Task ApplyAsync(DiscoveryConfig want)
    {
        await _turn.WaitAsync();
        try
        {
            if (_stop.IsCancellationRequested) return;
            bool hostChanged = want.HostName != _running.HostName;
            if (_mdns is not null && (!want.Mdns || hostChanged))
            {
                await _mdns.DisposeAsync();
                _mdns = null;
            }
            if (want.Mdns && _mdns is null)
            {
                var mdns = new MdnsResponder(want.HostName.Length > 0 ? want.HostName : _identity.HostName, _loggers.CreateLogger("Pearl2.Mdns"), _time);
                try { mdns.Start(Services()); _mdns = mdns; }
                catch (System.Net.Sockets.SocketException e) { _log.LogError("mdns.failed error=\"{Error}\" effect=\"not found by name on the LAN\"", e.Message); }
            }
            if (!want.Upnp && _upnp is not null)
            {
                await _ssdp!.DisposeAsync();
                await _upnp.DisposeAsync();
                _ssdp = null; _upnp = null;
            }
            if (want.Upnp && _upnp is null)
            {
                try
                {
                    // A new port at each start, as Pearl-2 has it: never the last one (kept in DATA/upnp-port).
                    string portFile = Path.Combine(_dataDir, "upnp-port");
                    int last = 0;
                    try { int.TryParse(File.ReadAllText(portFile).Trim(), out last); }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
                    _upnp = await UpnpMediaServer.StartAsync(new UpnpContext
                    {
                        Device = _device, Store = _store, Library = _library, Identity = _identity, FirmwareVersion = _version, Auth = _auth, Time = _time,
                    }, _loggers, last);
                    try { File.WriteAllText(portFile, _upnp.Port + "\n"); }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
                    var upnp = _upnp;
                    _ssdp = new SsdpAdvertiser(_identity.Uuid, upnp.DescriptionUrl, UpnpMediaServer.Server(_version), NextBootId(), upnp.ConfigId,
                        _loggers.CreateLogger("Pearl2.Ssdp"), _time);
                    _ssdp.Start();
                }
                catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
                {
                    _log.LogError("upnp.failed error=\"{Error}\" effect=\"not found by UPnP/DLNA players\"", e.Message);
                    if (_upnp is not null) await _upnp.DisposeAsync();
                    _upnp = null; _ssdp = null;
                }
            }
            _running = new DiscoveryConfig { Mdns = want.Mdns, Upnp = want.Upnp, HostName = want.HostName };
            _mdns?.SetServices(Services());
        }
        finally { _turn.Release(); }
    }

    /// <summary>BOOTID.UPNP.ORG: one more than at the last start (kept in DATA/ssdp-bootid).</summary>
    int NextBootId()
    {
        string path = Path.Combine(_dataDir, "ssdp-bootid");
        int id = 1;
        try { if (int.TryParse(File.ReadAllText(path).Trim(), out int last) && last is > 0 and < int.MaxValue) id = last + 1; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        try { File.WriteAllText(path, id + "\n"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return id;
    }

    /// <summary>What mDNS announces now: the panel, the device, and each channel other hosts may watch.</summary>
    IReadOnlyList<MdnsService> Services()
    {
        var config = _store.Current;
        var ports = _store.Ports;
        var list = new List<MdnsService>();
        string name = config.Device.Name;
        string[] device = ["model=Pearl2", $"serial={_identity.Serial}", $"version={_version}"];
        if (ports.AdminPort != 0) list.Add(new MdnsService(name, "_http._tcp", ports.AdminPort, ["path=/", .. device]));
        if (ports.AdminHttpsPort != 0) list.Add(new MdnsService(name, "_https._tcp", ports.AdminHttpsPort, ["path=/", .. device]));
        list.Add(new MdnsService(name, "_device-info._tcp", ports.AdminPort, device));
        foreach (var ch in _device.Status().Channels)
            if (ch.Streaming)
                list.Add(new MdnsService(ch.Name, "_rtsp._tcp", ch.RtspPort, ["path=/stream.sdp", $"channel={ch.Number}", $"login={(ch.LoginRequired ? "required" : "none")}"]));
        return list;
    }

    async Task WatchAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromSeconds(2), _time, _stop.Token);
                await _turn.WaitAsync(_stop.Token);
                try { _mdns?.SetServices(Services()); }
                finally { _turn.Release(); }
            }
        }
        catch (OperationCanceledException) { }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        try { await _watch; } catch (OperationCanceledException) { }
        await _turn.WaitAsync();
        try
        {
            if (_mdns is not null) await _mdns.DisposeAsync();
            if (_ssdp is not null) await _ssdp.DisposeAsync();
            if (_upnp is not null) await _upnp.DisposeAsync();
            _mdns = null; _ssdp = null; _upnp = null;
        }
        finally { _turn.Release(); }
    }
}
