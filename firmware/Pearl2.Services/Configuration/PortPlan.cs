namespace Pearl2.Services.Configuration;

public enum PortProtocol { Tcp, Udp }

/// <summary>One port the device listens on: which protocol, the number (port offset included), who owns it, and the config field that sets it.</summary>
public readonly record struct PlannedPort(PortProtocol Protocol, int Port, string Owner, string Field)
{
    public override string ToString() => $"{Port}/{(Protocol == PortProtocol.Tcp ? "tcp" : "udp")} ({Owner})";
}

/// <summary>
/// Every port the device listens on, computed in one place from the config and the port offset: channel i's RTSP port,
/// its RTSP/UDP server ports (video RTP/RTCP, audio RTP/RTCP) and its HTTP stream port. The services take their ports
/// from here, never from the config; a new listener (the admin panel, SSDP, mDNS) is one more line in <see cref="Of"/>.
/// Overlaps and ports past 65535 are checked once, over all of them, each error naming the port and its owners.
/// </summary>
public sealed class PortPlan
{
    readonly FirmwareConfig _config;

    PortPlan(FirmwareConfig config, int offset, List<PlannedPort> ports, List<string> errors)
    {
        _config = config; Offset = offset; Ports = ports; Errors = errors;
    }

    public int Offset { get; }
    public IReadOnlyList<PlannedPort> Ports { get; }
    /// <summary>Empty when every port is below 65536 and no two listeners of one protocol share a port.</summary>
    public IReadOnlyList<string> Errors { get; }

    public int RtspPort(int index) => _config.Rtsp.Port + Offset + index;
    public int HttpPort(int index) => _config.Http.Port + Offset + index;
    /// <summary>The first RTSP/UDP server port of channel 0 (channel i uses 4 from UdpPortBase + 4i), or 0: UDP is off.</summary>
    public int UdpPortBase => _config.Rtsp.UdpPortBase == 0 ? 0 : _config.Rtsp.UdpPortBase + Offset;
    public int UdpPort(int index) => UdpPortBase == 0 ? 0 : UdpPortBase + 4 * index;
    /// <summary>The admin panel's HTTP port, or 0 when the panel is off.</summary>
    public int AdminPort => _config.Admin is { Enabled: true } a ? a.Port + Offset : 0;
    /// <summary>The admin panel's HTTPS port, or 0 when the panel or HTTPS is off.</summary>
    public int AdminHttpsPort => _config.Admin is { Enabled: true, HttpsPort: > 0 } a ? a.HttpsPort + Offset : 0;

    static readonly string[] FieldOrder = ["discovery.mdns", "discovery.upnp", "rtsp.port", "rtsp.udpPortBase", "http.port", "admin.port", "admin.httpsPort"];

    public static PortPlan Of(FirmwareConfig config, int offset)
    {
        var ports = new List<PlannedPort>();
        int n = config.Channels.Count;
        for (int i = 0; i < n; i++)
        {
            ports.Add(new(PortProtocol.Tcp, config.Rtsp.Port + offset + i, $"channel {i + 1} RTSP", "rtsp.port"));
            ports.Add(new(PortProtocol.Tcp, config.Http.Port + offset + i, $"channel {i + 1} HTTP streams", "http.port"));
            if (config.Rtsp.UdpPortBase != 0)
                for (int k = 0; k < 4; k++)
                    ports.Add(new(PortProtocol.Udp, config.Rtsp.UdpPortBase + offset + 4 * i + k,
                        $"channel {i + 1} RTSP/UDP {(k < 2 ? "video" : "audio")} {(k % 2 == 0 ? "RTP" : "RTCP")}", "rtsp.udpPortBase"));
        }

        if (config.Admin is { Enabled: true } admin)
        {
            ports.Add(new(PortProtocol.Tcp, admin.Port + offset, "admin panel HTTP", "admin.port"));
            if (admin.HttpsPort != 0) ports.Add(new(PortProtocol.Tcp, admin.HttpsPort + offset, "admin panel HTTPS", "admin.httpsPort"));
        }

        // Discovery's ports are the protocols' own: the port offset does not move them, and other responders share them (SO_REUSEADDR).
        if (config.Discovery is { Mdns: true }) ports.Add(new(PortProtocol.Udp, 5353, "mDNS / DNS-SD", "discovery.mdns"));
        if (config.Discovery is { Upnp: true }) ports.Add(new(PortProtocol.Udp, 1900, "SSDP (UPnP discovery)", "discovery.upnp"));

        var errors = new List<string>();
        // Past 65535: one error per field, as the operator set it (the offset is what usually moved it there).
        foreach (var field in ports.Where(p => p.Port > 65535).GroupBy(p => p.Field))
        {
            var first = ports.First(p => p.Field == field.Key);
            errors.Add(offset == 0
                ? $"{field.Key}: port {field.First().Port} ({field.First().Owner}) is past 65535"
                : $"--port-offset: {offset} moves {field.Key} ({first.Port - offset}, {ports.Count(p => p.Field == field.Key)} port(s)) past 65535");
        }
        foreach (var clash in ports.GroupBy(p => (p.Protocol, p.Port)).Where(g => g.Count() > 1))
        {
            var owners = clash.ToList();
            // Named by the field set later in the file (http.port after rtsp.port): the one to move.
            string field = owners.Select(o => o.Field).MaxBy(f => Array.IndexOf(FieldOrder, f))!;
            errors.Add($"{field}: port {clash.Key.Port}/{(clash.Key.Protocol == PortProtocol.Tcp ? "tcp" : "udp")} is taken twice: {string.Join(" and ", owners.Select(o => o.Owner))}");
        }
        return new PortPlan(config, offset, ports, errors);
    }
}
