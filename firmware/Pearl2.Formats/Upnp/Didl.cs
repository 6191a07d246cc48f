using System.Globalization;
using System.Text;

namespace Pearl2.Formats.Upnp;

/// <summary>One <c>res</c> of an item (ContentDirectory:1 §2.8.2, DLNA 7.3.30): the URL and what a player needs to pick it.</summary>
public sealed record DidlResource(string Url, string ProtocolInfo)
{
    public long? Size { get; init; }
    public TimeSpan? Duration { get; init; }
    public (int Width, int Height)? Resolution { get; init; }
    /// <summary>Bytes per second, as ContentDirectory:1 defines <c>res@bitrate</c>.</summary>
    public long? BytesPerSecond { get; init; }
    public int? SampleFrequency { get; init; }
    public int? AudioChannels { get; init; }
}

/// <summary>A container or item of a DIDL-Lite result.</summary>
public sealed record DidlObject(string Id, string ParentId, string Title, string Class)
{
    public bool IsContainer => Class.StartsWith("object.container", StringComparison.Ordinal);
    public int ChildCount { get; init; }
    public DateTimeOffset? Date { get; init; }
    public string? AlbumArtUrl { get; init; }
    public IReadOnlyList<DidlResource> Resources { get; init; } = [];
}

/// <summary>
/// Writes DIDL-Lite (ContentDirectory:1 §2.8, DLNA guidelines 7.3) for Browse results. The Browse <c>Filter</c> is
/// honoured: "*" gives every property; otherwise the required ones (id, parentID, restricted, dc:title, upnp:class)
/// and those named ("res", "res@size", "upnp:albumArtURI", "@childCount", "dc:date" …).
/// </summary>
public static class DidlWriter
{
    public static string Write(IEnumerable<DidlObject> objects, string filter)
    {
        var f = new Filter(filter);
        var sb = new StringBuilder(1024);
        sb.Append("<DIDL-Lite xmlns=\"urn:schemas-upnp-org:metadata-1-0/DIDL-Lite/\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"")
          .Append(" xmlns:upnp=\"urn:schemas-upnp-org:metadata-1-0/upnp/\" xmlns:dlna=\"urn:schemas-dlna-org:metadata-1-0/\">");
        foreach (var o in objects)
        {
            string tag = o.IsContainer ? "container" : "item";
            sb.Append('<').Append(tag).Append(" id=\"").Append(Xml.Escape(o.Id)).Append("\" parentID=\"").Append(Xml.Escape(o.ParentId)).Append("\" restricted=\"1\"");
            if (o.IsContainer)
            {
                if (f.Has("@childCount") || f.Has("container@childCount")) sb.Append(" childCount=\"").Append(o.ChildCount.ToString(CultureInfo.InvariantCulture)).Append('"');
                if (f.Has("@searchable") || f.Has("container@searchable")) sb.Append(" searchable=\"0\"");
            }
            sb.Append("><dc:title>").Append(Xml.Escape(o.Title)).Append("</dc:title><upnp:class>").Append(o.Class).Append("</upnp:class>");
            if (o.Date is { } d && f.Has("dc:date")) sb.Append("<dc:date>").Append(d.ToString("yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture)).Append("</dc:date>");
            if (o.AlbumArtUrl is { } art && f.Has("upnp:albumArtURI"))
                sb.Append("<upnp:albumArtURI dlna:profileID=\"JPEG_TN\">").Append(Xml.Escape(art)).Append("</upnp:albumArtURI>");
            if (f.Has("res"))
                foreach (var r in o.Resources)
                {
                    sb.Append("<res protocolInfo=\"").Append(Xml.Escape(r.ProtocolInfo)).Append('"');
                    if (r.Size is { } size && f.Has("res@size")) sb.Append(" size=\"").Append(size.ToString(CultureInfo.InvariantCulture)).Append('"');
                    if (r.Duration is { } dur && f.Has("res@duration")) sb.Append(" duration=\"").Append(Duration(dur)).Append('"');
                    if (r.Resolution is { } res && f.Has("res@resolution"))
                        sb.Append(" resolution=\"").Append(res.Width.ToString(CultureInfo.InvariantCulture)).Append('x').Append(res.Height.ToString(CultureInfo.InvariantCulture)).Append('"');
                    if (r.BytesPerSecond is { } bps && f.Has("res@bitrate")) sb.Append(" bitrate=\"").Append(bps.ToString(CultureInfo.InvariantCulture)).Append('"');
                    if (r.SampleFrequency is { } hz && f.Has("res@sampleFrequency")) sb.Append(" sampleFrequency=\"").Append(hz.ToString(CultureInfo.InvariantCulture)).Append('"');
                    if (r.AudioChannels is { } ac && f.Has("res@nrAudioChannels")) sb.Append(" nrAudioChannels=\"").Append(ac.ToString(CultureInfo.InvariantCulture)).Append('"');
                    sb.Append('>').Append(Xml.Escape(r.Url)).Append("</res>");
                }
            sb.Append("</").Append(tag).Append('>');
        }
        return sb.Append("</DIDL-Lite>").ToString();
    }

    /// <summary>res@duration: H+:MM:SS.FFF (ContentDirectory:1 §2.8.2).</summary>
    public static string Duration(TimeSpan d) =>
        string.Create(CultureInfo.InvariantCulture, $"{(int)d.TotalHours}:{d.Minutes:00}:{d.Seconds:00}.{d.Milliseconds:000}");

    readonly struct Filter(string filter)
    {
        readonly string[] _names = filter.Trim() == "*" ? ["*"] : filter.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

        public bool Has(string property)
        {
            if (_names.Length == 1 && _names[0] == "*") return true;
            foreach (var n in _names)
            {
                if (n == property) return true;
                // "res@size" implies "res"; asking for the element brings none of its optional attributes.
                if (property == "res" && n.StartsWith("res@", StringComparison.Ordinal)) return true;
                if (property.StartsWith('@') && n.EndsWith(property, StringComparison.Ordinal)) return true;
            }
            return false;
        }
    }
}

/// <summary>DLNA protocolInfo strings (DLNA guidelines 7.4.1.3.17): the 4th field with the profile and the flags.</summary>
public static class DlnaInfo
{
    // DLNA.ORG_FLAGS bits: 24 streaming transfer mode, 22 background transfer mode, 21 HTTP connection stalling, 20 DLNA 1.5.
    const uint Streaming = 1u << 24, Background = 1u << 22, Stalling = 1u << 21, Dlna15 = 1u << 20;

    /// <summary>A whole file: byte seeking (OP=01, Range), streaming and background transfer, pausable (the connection may stall).</summary>
    public static string FileFeatures(string? profile) =>
        (profile is null ? "" : $"DLNA.ORG_PN={profile};") + "DLNA.ORG_OP=01;DLNA.ORG_CI=0;DLNA.ORG_FLAGS=" + Flags(Streaming | Background | Stalling | Dlna15);

    /// <summary>A live stream: no seeking of any kind (OP=00), streaming transfer only, not pausable.</summary>
    public static string LiveFeatures(string? profile) =>
        (profile is null ? "" : $"DLNA.ORG_PN={profile};") + "DLNA.ORG_OP=00;DLNA.ORG_CI=0;DLNA.ORG_FLAGS=" + Flags(Streaming | Dlna15);

    static string Flags(uint primary) => primary.ToString("X8", CultureInfo.InvariantCulture) + "000000000000000000000000";

    public static string ProtocolInfo(string mime, string features) => $"http-get:*:{mime}:{features}";

    /// <summary>
    /// The DLNA profile (DLNA guidelines 7.3.2, the AVC profiles) of an H.264/AAC stream by container and picture size:
    /// CIF and smaller as baseline CIF (our encoder's ultrafast output is constrained baseline), SD and HD as main profile.
    /// Null for an unknown container.
    /// </summary>
    public static string? Profile(string container, int width, int height)
    {
        long pixels = (long)width * height;
        return container switch
        {
            "ts" => pixels <= 720 * 576 ? "AVC_TS_MP_SD_AAC_MULT5_ISO" : "AVC_TS_MP_HD_AAC_MULT5_ISO",
            "mp4" => pixels <= 352 * 288 ? "AVC_MP4_BL_CIF30_AAC_940" : pixels <= 720 * 576 ? "AVC_MP4_MP_SD_AAC_MULT5"
                : pixels <= 1280 * 720 ? "AVC_MP4_MP_HD_720p_AAC" : "AVC_MP4_MP_HD_1080i_AAC",
            _ => null,
        };
    }
}
