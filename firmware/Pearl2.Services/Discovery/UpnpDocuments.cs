using Pearl2.Formats.Upnp;

namespace Pearl2.Services.Discovery;

/// <summary>The media server's fixed XML: its device description and the two service descriptions (SCPD).</summary>
static class UpnpDocuments
{
    public static string Description(string uuid, string friendlyName, string serial, string version, string? presentationUrl) =>
        $"""
        <?xml version="1.0" encoding="utf-8"?>
        <root xmlns="urn:schemas-upnp-org:device-1-0" xmlns:dlna="urn:schemas-dlna-org:device-1-0">
        <specVersion><major>1</major><minor>1</minor></specVersion>
        <device>
        <deviceType>{UpnpMediaServer.DeviceType}</deviceType>
        <dlna:X_DLNADOC>DMS-1.50</dlna:X_DLNADOC>
        <friendlyName>{Xml.Escape(friendlyName)}</friendlyName>
        <manufacturer>Pearl2 firmware</manufacturer>
        <manufacturerURL>https://github.com/pearl2</manufacturerURL>
        <modelDescription>Video capture, streaming and recording appliance</modelDescription>
        <modelName>Pearl2</modelName>
        <modelNumber>{Xml.Escape(version)}</modelNumber>
        <serialNumber>{Xml.Escape(serial)}</serialNumber>
        <UDN>uuid:{uuid}</UDN>
        <iconList>
        <icon><mimetype>image/png</mimetype><width>48</width><height>48</height><depth>24</depth><url>/upnp/icon-48.png</url></icon>
        <icon><mimetype>image/png</mimetype><width>120</width><height>120</height><depth>24</depth><url>/upnp/icon-120.png</url></icon>
        </iconList>
        <serviceList>
        <service><serviceType>{UpnpMediaServer.ContentDirectoryType}</serviceType><serviceId>urn:upnp-org:serviceId:ContentDirectory</serviceId><SCPDURL>/upnp/ContentDirectory.xml</SCPDURL><controlURL>/upnp/control/ContentDirectory</controlURL><eventSubURL>/upnp/event/ContentDirectory</eventSubURL></service>
        <service><serviceType>{UpnpMediaServer.ConnectionManagerType}</serviceType><serviceId>urn:upnp-org:serviceId:ConnectionManager</serviceId><SCPDURL>/upnp/ConnectionManager.xml</SCPDURL><controlURL>/upnp/control/ConnectionManager</controlURL><eventSubURL>/upnp/event/ConnectionManager</eventSubURL></service>
        </serviceList>
        {(presentationUrl is null ? "" : $"<presentationURL>{Xml.Escape(presentationUrl)}</presentationURL>")}
        </device>
        </root>

        """;

    static string Arg(string name, string direction, string variable) =>
        $"<argument><name>{name}</name><direction>{direction}</direction><relatedStateVariable>{variable}</relatedStateVariable></argument>";

    static string Action(string name, params string[] args) => $"<action><name>{name}</name><argumentList>{string.Concat(args)}</argumentList></action>";

    static string Variable(string name, string type, bool events = false, params string[] allowed) =>
        $"<stateVariable sendEvents=\"{(events ? "yes" : "no")}\"><name>{name}</name><dataType>{type}</dataType>" +
        (allowed.Length > 0 ? "<allowedValueList>" + string.Concat(allowed.Select(a => $"<allowedValue>{a}</allowedValue>")) + "</allowedValueList>" : "") + "</stateVariable>";

    static string Scpd(string actions, string variables) =>
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<scpd xmlns=\"urn:schemas-upnp-org:service-1-0\"><specVersion><major>1</major><minor>0</minor></specVersion>" +
        $"<actionList>{actions}</actionList><serviceStateTable>{variables}</serviceStateTable></scpd>\n";

    public static readonly string ContentDirectory = Scpd(
        Action("GetSearchCapabilities", Arg("SearchCaps", "out", "SearchCapabilities")) +
        Action("GetSortCapabilities", Arg("SortCaps", "out", "SortCapabilities")) +
        Action("GetSystemUpdateID", Arg("Id", "out", "SystemUpdateID")) +
        Action("Browse", Arg("ObjectID", "in", "A_ARG_TYPE_ObjectID"), Arg("BrowseFlag", "in", "A_ARG_TYPE_BrowseFlag"), Arg("Filter", "in", "A_ARG_TYPE_Filter"),
            Arg("StartingIndex", "in", "A_ARG_TYPE_Index"), Arg("RequestedCount", "in", "A_ARG_TYPE_Count"), Arg("SortCriteria", "in", "A_ARG_TYPE_SortCriteria"),
            Arg("Result", "out", "A_ARG_TYPE_Result"), Arg("NumberReturned", "out", "A_ARG_TYPE_Count"), Arg("TotalMatches", "out", "A_ARG_TYPE_Count"),
            Arg("UpdateID", "out", "A_ARG_TYPE_UpdateID")),
        Variable("SearchCapabilities", "string") + Variable("SortCapabilities", "string") + Variable("SystemUpdateID", "ui4", events: true) +
        Variable("ContainerUpdateIDs", "string", events: true) +
        Variable("A_ARG_TYPE_ObjectID", "string") + Variable("A_ARG_TYPE_Result", "string") + Variable("A_ARG_TYPE_SearchCriteria", "string") +
        Variable("A_ARG_TYPE_BrowseFlag", "string", false, "BrowseMetadata", "BrowseDirectChildren") + Variable("A_ARG_TYPE_Filter", "string") +
        Variable("A_ARG_TYPE_SortCriteria", "string") + Variable("A_ARG_TYPE_Index", "ui4") + Variable("A_ARG_TYPE_Count", "ui4") + Variable("A_ARG_TYPE_UpdateID", "ui4"));

    public static readonly string ConnectionManager = Scpd(
        Action("GetProtocolInfo", Arg("Source", "out", "SourceProtocolInfo"), Arg("Sink", "out", "SinkProtocolInfo")) +
        Action("GetCurrentConnectionIDs", Arg("ConnectionIDs", "out", "CurrentConnectionIDs")) +
        Action("GetCurrentConnectionInfo", Arg("ConnectionID", "in", "A_ARG_TYPE_ConnectionID"), Arg("RcsID", "out", "A_ARG_TYPE_RcsID"),
            Arg("AVTransportID", "out", "A_ARG_TYPE_AVTransportID"), Arg("ProtocolInfo", "out", "A_ARG_TYPE_ProtocolInfo"),
            Arg("PeerConnectionManager", "out", "A_ARG_TYPE_ConnectionManager"), Arg("PeerConnectionID", "out", "A_ARG_TYPE_ConnectionID"),
            Arg("Direction", "out", "A_ARG_TYPE_Direction"), Arg("Status", "out", "A_ARG_TYPE_ConnectionStatus")),
        Variable("SourceProtocolInfo", "string", events: true) + Variable("SinkProtocolInfo", "string", events: true) + Variable("CurrentConnectionIDs", "string", events: true) +
        Variable("A_ARG_TYPE_ConnectionStatus", "string", false, "OK", "ContentFormatMismatch", "InsufficientBandwidth", "UnreliableChannel", "Unknown") +
        Variable("A_ARG_TYPE_ConnectionManager", "string") + Variable("A_ARG_TYPE_Direction", "string", false, "Input", "Output") +
        Variable("A_ARG_TYPE_ProtocolInfo", "string") + Variable("A_ARG_TYPE_ConnectionID", "i4") + Variable("A_ARG_TYPE_AVTransportID", "i4") + Variable("A_ARG_TYPE_RcsID", "i4"));

    /// <summary>A square PNG icon (a pearl on dark blue), made once per size: 8-bit RGB, no external image needed.</summary>
    public static byte[] Icon(int size)
    {
        var raw = new byte[size * (1 + 3 * size)];
        double c = (size - 1) / 2.0, r = size * 0.36;
        for (int y = 0; y < size; y++)
        {
            int row = y * (1 + 3 * size);
            for (int x = 0; x < size; x++)
            {
                double dx = x - c, dy = y - c, d = Math.Sqrt(dx * dx + dy * dy);
                // Inside the pearl: a soft highlight towards the top left.
                double light = d <= r ? 1 - Math.Sqrt((dx + r * 0.35) * (dx + r * 0.35) + (dy + r * 0.35) * (dy + r * 0.35)) / (r * 2.2) : 0;
                var (R, G, B) = d <= r ? ((byte)(200 + 55 * light), (byte)(200 + 55 * light), (byte)(215 + 40 * light)) : ((byte)20, (byte)40, (byte)80);
                raw[row + 1 + 3 * x] = R; raw[row + 2 + 3 * x] = G; raw[row + 3 + 3 * x] = B;
            }
        }
        using var png = new MemoryStream();
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0d, 0x0a, 0x1a, 0x0a]);
        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, size);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), size);
        ihdr[8] = 8; ihdr[9] = 2;   // 8 bits, RGB
        Chunk(png, "IHDR", ihdr);
        using (var z = new MemoryStream())
        {
            using (var zs = new System.IO.Compression.ZLibStream(z, System.IO.Compression.CompressionLevel.Optimal, leaveOpen: true)) zs.Write(raw);
            Chunk(png, "IDAT", z.ToArray());
        }
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    static void Chunk(Stream s, string type, byte[] data)
    {
        Span<byte> n = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(n, data.Length);
        s.Write(n);
        var typed = new byte[4 + data.Length];
        System.Text.Encoding.ASCII.GetBytes(type, typed);
        data.CopyTo(typed, 4);
        s.Write(typed);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(n, Crc32(typed));
        s.Write(n);
    }

    static uint Crc32(byte[] data)
    {
        uint crc = 0xffffffff;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xedb88320 : crc >> 1;
        }
        return ~crc;
    }
}
