using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Pearl2.Formats;
using Pearl2.Formats.Upnp;
using Pearl2.Services.Configuration;
using Pearl2.Services.Recording;

namespace Pearl2.Services.Discovery;

/// <summary>What the media server serves from: the device's channels and status, the config, the recordings, the viewer login.</summary>
public sealed class UpnpContext
{
    public required IDeviceControl Device { get; init; }
    public required ConfigStore Store { get; init; }
    public RecordingLibrary? Library { get; init; }
    public required DeviceIdentity Identity { get; init; }
    public required string FirmwareVersion { get; init; }
    public required ViewerAuth Auth { get; init; }
    public required TimeProvider Time { get; init; }
}

/// <summary>
/// The UPnP MediaServer:1 (ContentDirectory:1, ConnectionManager:1) on a random TCP port from 50000 to 65000, new at
/// each start, as Pearl-2 has it. "Live" holds each channel's live MPEG-TS (the HTTP stream port's own /stream.ts, from
/// the same hub readers, with its viewer login and streaming switch); "Recordings" holds one container per channel.
/// Recordings and thumbnails are served here, with Range and HEAD and the DLNA headers; a channel's viewer login guards
/// its recordings and thumbnail too (Basic when the channel allows it, else Digest), and its streaming switch its
/// thumbnail. Eventing (GENA) tells subscribers when SystemUpdateID changes (recordings came or went).
/// </summary>
public sealed class UpnpMediaServer : IAsyncDisposable
{
    public const string DeviceType = "urn:schemas-upnp-org:device:MediaServer:1";
    public const string ContentDirectoryType = "urn:schemas-upnp-org:service:ContentDirectory:1";
    public const string ConnectionManagerType = "urn:schemas-upnp-org:service:ConnectionManager:1";
    public const int FirstPort = 50000, LastPort = 65000;
    const string SortCaps = "dc:title,dc:date";

    readonly WebApplication _app;
    readonly UpnpContext _c;
    readonly ILogger _log;
    readonly Eventing _events;
    readonly byte[] _icon48 = UpnpDocuments.Icon(48), _icon120 = UpnpDocuments.Icon(120);
    uint _systemUpdateId = 1;
    string _listing = "";
    readonly Dictionary<string, (long Length, int Width, int Height)> _sizes = new();

    UpnpMediaServer(WebApplication app, UpnpContext c, ILogger log, int port)
    {
        _app = app; _c = c; _log = log; Port = port;
        _events = new Eventing(log, c.Time);
    }

    public int Port { get; }
    public uint SystemUpdateId { get { Refresh(); return Volatile.Read(ref _systemUpdateId); } }
    /// <summary>The description URL on an interface address (for SSDP's LOCATION).</summary>
    public string DescriptionUrl(IPAddress address) => $"http://{address}:{Port}/upnp/description.xml";
    /// <summary>A number that changes when the description does (CONFIGID.UPNP.ORG).</summary>
    public int ConfigId => (int)(BitConverter.ToUInt32(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(Describe(null)))) & 0xffffff);

    /// <summary>Starts on a random free port in 50000–65000 other than <paramref name="avoid"/> (the last start's), up to 50 tries.</summary>
    public static async Task<UpnpMediaServer> StartAsync(UpnpContext c, ILoggerFactory loggers, int avoid = 0)
    {
        var log = loggers.CreateLogger("Pearl2.Upnp");
        IOException? last = null;
        for (int attempt = 0; attempt < 50; attempt++)
        {
            int port = Random.Shared.Next(FirstPort, LastPort + 1);
            if (port == avoid) continue;
            var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "pearl2d" });
            builder.Services.AddLogging();
            builder.Services.Replace(ServiceDescriptor.Singleton(loggers));
            builder.Services.AddRoutingCore();
            // Switched off while a player downloads: the download is cut after 2 s, the config change does not wait for it.
            builder.WebHost.UseShutdownTimeout(TimeSpan.FromSeconds(2));
            builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
            {
                k.AddServerHeader = false;
                k.Limits.MaxRequestBodySize = SoapAction.MaxBytes;
                k.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
                k.Limits.MaxConcurrentConnections = 128;
                k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(15);
                k.ListenAnyIP(port);
            });
            var app = builder.Build();
            var server = new UpnpMediaServer(app, c, log, port);
            server.Map(app);
            try
            {
                await app.StartAsync();
                log.LogInformation("upnp.started port={Port} description=http://{Host}:{Port}/upnp/description.xml uuid={Uuid}", port, HostAddresses.Primary(), port, c.Identity.Uuid);
                server._events.Start(() => server.SystemUpdateId);
                return server;
            }
            catch (Exception e) when (e is IOException or Microsoft.AspNetCore.Connections.AddressInUseException or SocketException)
            {
                // Taken by another program: another random port.
                last = e as IOException ?? new IOException(e.Message, e);
                await app.DisposeAsync();
            }
        }
        throw new IOException($"UPnP media server: no free TCP port in {FirstPort}-{LastPort}", last);
    }

    void Map(WebApplication app)
    {
        app.Use(async (ctx, next) =>
        {
            ctx.Response.Headers["Server"] = Server(_c.FirmwareVersion);
            await next(ctx);
        });
        app.UseRouting();
        app.MapMethods("/upnp/description.xml", ["GET", "HEAD"], ctx => XmlAsync(ctx, Describe(LocalBase(ctx))));
        app.MapMethods("/upnp/ContentDirectory.xml", ["GET", "HEAD"], ctx => XmlAsync(ctx, UpnpDocuments.ContentDirectory));
        app.MapMethods("/upnp/ConnectionManager.xml", ["GET", "HEAD"], ctx => XmlAsync(ctx, UpnpDocuments.ConnectionManager));
        app.MapMethods("/upnp/icon-48.png", ["GET", "HEAD"], ctx => BytesAsync(ctx, "image/png", _icon48));
        app.MapMethods("/upnp/icon-120.png", ["GET", "HEAD"], ctx => BytesAsync(ctx, "image/png", _icon120));
        app.MapPost("/upnp/control/ContentDirectory", ctx => ControlAsync(ctx, ContentDirectoryType, ContentDirectoryAsync));
        app.MapPost("/upnp/control/ConnectionManager", ctx => ControlAsync(ctx, ConnectionManagerType, ConnectionManagerAsync));
        app.MapMethods("/upnp/event/ContentDirectory", ["SUBSCRIBE", "UNSUBSCRIBE"], ctx => _events.HandleAsync(ctx, "ContentDirectory"));
        app.MapMethods("/upnp/event/ConnectionManager", ["SUBSCRIBE", "UNSUBSCRIBE"], ctx => _events.HandleAsync(ctx, "ConnectionManager"));
        app.MapMethods("/upnp/media/{name}", ["GET", "HEAD"], MediaAsync);
        app.MapMethods("/upnp/thumb/{channel}.jpg", ["GET", "HEAD"], ThumbAsync);
    }

    public static string Server(string version) => $"Linux/{Environment.OSVersion.Version.ToString(2)} UPnP/1.1 Pearl2/{version}";

    string Describe(string? baseUrl)
    {
        var admin = _c.Store.Ports.AdminPort;
        return UpnpDocuments.Description(_c.Identity.Uuid, _c.Store.Current.Device.Name, _c.Identity.Serial, _c.FirmwareVersion,
            baseUrl is not null && admin != 0 ? $"http://{new Uri(baseUrl).Host}:{admin}/" : null);
    }

    /// <summary>Our URL as the asker reached it: the local address of its connection (never its Host header).</summary>
    string LocalBase(HttpContext ctx) => $"http://{LocalHost(ctx)}:{Port}";

    static string LocalHost(HttpContext ctx)
    {
        var a = ctx.Connection.LocalIpAddress ?? IPAddress.Loopback;
        if (a.IsIPv4MappedToIPv6) a = a.MapToIPv4();
        return a.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{a}]" : a.ToString();
    }

    static Task XmlAsync(HttpContext ctx, string xml) => BytesAsync(ctx, "text/xml; charset=\"utf-8\"", Encoding.UTF8.GetBytes(xml));

    static async Task BytesAsync(HttpContext ctx, string type, byte[] body)
    {
        ctx.Response.ContentType = type;
        ctx.Response.ContentLength = body.Length;
        if (ctx.Request.Method != "HEAD") await ctx.Response.Body.WriteAsync(body);
    }

    // ---- control ----

    delegate Task<(string Xml, int Error, string Why)> ActionHandler(HttpContext ctx, SoapAction action);

    async Task ControlAsync(HttpContext ctx, string serviceType, ActionHandler handle)
    {
        byte[] body;
        try
        {
            using var ms = new MemoryStream();
            await ctx.Request.Body.CopyToAsync(ms, ctx.RequestAborted);
            body = ms.ToArray();
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException)
        {
            await FaultAsync(ctx, UpnpError.InvalidAction, $"body larger than {SoapAction.MaxBytes} bytes", 413);
            return;
        }
        if (!SoapAction.TryParse(body, ctx.Request.Headers["SOAPACTION"].FirstOrDefault(), out var action, out var error))
        {
            _log.LogWarning("upnp.bad_request from={From} error=\"{Error}\"", ctx.Connection.RemoteIpAddress, error);
            await FaultAsync(ctx, UpnpError.InvalidAction, error!);
            return;
        }
        if (action!.ServiceType != serviceType) { await FaultAsync(ctx, UpnpError.InvalidAction, $"{action.ServiceType} is not served here"); return; }
        var (xml, code, why) = await handle(ctx, action);
        if (code != 0) { await FaultAsync(ctx, code, why); return; }
        await XmlAsync(ctx, xml);
    }

    static Task FaultAsync(HttpContext ctx, int code, string description, int status = 500)
    {
        ctx.Response.StatusCode = status;
        return XmlAsync(ctx, SoapAction.Fault(code, description));
    }

    static (string, int, string) Error(int code, string why) => ("", code, why);

    Task<(string Xml, int Error, string Why)> ConnectionManagerAsync(HttpContext ctx, SoapAction a)
    {
        string Reply(params (string, string)[] args) => SoapAction.Response(ConnectionManagerType, a.Name, args);
        return Task.FromResult<(string, int, string)>(a.Name switch
        {
            "GetProtocolInfo" => (Reply(("Source", string.Join(',', SourceProtocolInfo())), ("Sink", "")), 0, ""),
            "GetCurrentConnectionIDs" => (Reply(("ConnectionIDs", "0")), 0, ""),
            "GetCurrentConnectionInfo" when a["ConnectionID"] == "0" => (Reply(("RcsID", "-1"), ("AVTransportID", "-1"), ("ProtocolInfo", ""),
                ("PeerConnectionManager", ""), ("PeerConnectionID", "-1"), ("Direction", "Output"), ("Status", "OK")), 0, ""),
            "GetCurrentConnectionInfo" => Error(UpnpError.InvalidConnectionReference, $"no connection {a["ConnectionID"]}"),
            _ => Error(UpnpError.InvalidAction, $"no action {a.Name}"),
        });
    }

    static IEnumerable<string> SourceProtocolInfo()
    {
        foreach (var container in new[] { "ts", "mp4" })
            foreach (var (w, h) in new[] { (1920, 1080), (640, 360) })
                yield return DlnaInfo.ProtocolInfo(container == "ts" ? "video/mp2t" : "video/mp4", "DLNA.ORG_PN=" + DlnaInfo.Profile(container, w, h));
        yield return "http-get:*:video/mp2t:*";
        yield return "http-get:*:video/mp4:*";
        yield return "http-get:*:image/jpeg:DLNA.ORG_PN=JPEG_TN";
    }

    Task<(string Xml, int Error, string Why)> ContentDirectoryAsync(HttpContext ctx, SoapAction a)
    {
        string Reply(params (string, string)[] args) => SoapAction.Response(ContentDirectoryType, a.Name, args);
        (string, int, string) result = a.Name switch
        {
            "GetSearchCapabilities" => (Reply(("SearchCaps", "")), 0, ""),
            "GetSortCapabilities" => (Reply(("SortCaps", SortCaps)), 0, ""),
            "GetSystemUpdateID" => (Reply(("Id", SystemUpdateId.ToString(CultureInfo.InvariantCulture))), 0, ""),
            "Browse" => Browse(ctx, a),
            _ => Error(UpnpError.InvalidAction, $"no action {a.Name}"),
        };
        return Task.FromResult(result);
    }

    (string, int, string) Browse(HttpContext ctx, SoapAction a)
    {
        string? id = a["ObjectID"], flag = a["BrowseFlag"];
        string filter = a["Filter"] ?? "*", sort = a["SortCriteria"] ?? "";
        if (id is null || flag is null) return Error(UpnpError.InvalidArgs, "ObjectID and BrowseFlag are required");
        if (!uint.TryParse(a["StartingIndex"] ?? "0", NumberStyles.None, CultureInfo.InvariantCulture, out uint start)
            || !uint.TryParse(a["RequestedCount"] ?? "0", NumberStyles.None, CultureInfo.InvariantCulture, out uint count))
            return Error(UpnpError.InvalidArgs, "StartingIndex and RequestedCount must be unsigned numbers");
        var tree = Tree(ctx);
        if (!tree.TryGetValue(id, out var node)) return Error(UpnpError.NoSuchObject, $"no object {id}");
        List<DidlObject> page;
        int total;
        if (flag == "BrowseMetadata")
        {
            if (start != 0) return Error(UpnpError.InvalidArgs, "StartingIndex must be 0 with BrowseMetadata");
            page = [node.Object];
            total = 1;
        }
        else if (flag == "BrowseDirectChildren")
        {
            if (!node.Object.IsContainer) return Error(UpnpError.NoSuchContainer, $"{id} is not a container");
            IEnumerable<DidlObject> children = node.Children.Select(k => tree[k].Object);
            if (!TrySort(ref children, sort, out var why)) return Error(UpnpError.UnsupportedSortCriteria, why!);
            var all = children.ToList();
            total = all.Count;
            page = all.Skip((int)Math.Min(start, int.MaxValue)).Take(count == 0 ? int.MaxValue : (int)Math.Min(count, int.MaxValue)).ToList();
        }
        else return Error(UpnpError.InvalidArgs, $"BrowseFlag '{flag}' is not BrowseMetadata or BrowseDirectChildren");
        string didl = DidlWriter.Write(page, filter);
        string reply = SoapAction.Response(ContentDirectoryType, "Browse", ("Result", didl), ("NumberReturned", page.Count.ToString(CultureInfo.InvariantCulture)),
            ("TotalMatches", total.ToString(CultureInfo.InvariantCulture)), ("UpdateID", SystemUpdateId.ToString(CultureInfo.InvariantCulture)));
        return (reply, 0, "");
    }

    /// <summary>SortCriteria: "+dc:title,-dc:date" (ContentDirectory:1 §2.5.8); only the properties in GetSortCapabilities.</summary>
    static bool TrySort(ref IEnumerable<DidlObject> items, string criteria, out string? error)
    {
        error = null;
        IOrderedEnumerable<DidlObject>? sorted = null;
        foreach (var raw in criteria.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            bool desc = raw[0] == '-';
            string prop = raw.TrimStart('+', '-');
            Func<DidlObject, string> key = prop switch
            {
                "dc:title" => o => o.Title,
                "dc:date" => o => o.Date?.ToString("o", CultureInfo.InvariantCulture) ?? "",
                _ => null!,
            };
            if (key is null) { error = $"cannot sort by {prop} (sort capabilities: {SortCaps})"; return false; }
            sorted = sorted is null
                ? (desc ? items.OrderByDescending(key, StringComparer.OrdinalIgnoreCase) : items.OrderBy(key, StringComparer.OrdinalIgnoreCase))
                : (desc ? sorted.ThenByDescending(key, StringComparer.OrdinalIgnoreCase) : sorted.ThenBy(key, StringComparer.OrdinalIgnoreCase));
        }
        if (sorted is not null) items = sorted;
        return true;
    }

    sealed record Node(DidlObject Object, List<string> Children);

    /// <summary>The whole tree, built per request from the channels and the recordings folder (URLs on the asker's interface).</summary>
    Dictionary<string, Node> Tree(HttpContext ctx)
    {
        string host = LocalHost(ctx), media = LocalBase(ctx);
        var status = _c.Device.Status();
        var config = _c.Store.Current;
        var tree = new Dictionary<string, Node>();
        void Add(DidlObject o) { tree[o.Id] = new Node(o, new()); if (tree.TryGetValue(o.ParentId, out var p) && o.Id != "0") p.Children.Add(o.Id); }

        Add(new DidlObject("0", "-1", config.Device.Name, "object.container.storageFolder"));
        Add(new DidlObject("live", "0", "Live", "object.container.storageFolder"));
        Add(new DidlObject("rec", "0", "Recordings", "object.container.storageFolder"));
        foreach (var ch in status.Channels)
        {
            string profile = DlnaInfo.Profile("ts", ch.Width, ch.Height) ?? "";
            var liveAudio = ch.Number <= config.Channels.Count ? config.Channels[ch.Number - 1].Audio : null;
            Add(new DidlObject($"live/{ch.Number}", "live", ch.Name, "object.item.videoItem")
            {
                AlbumArtUrl = $"{media}/upnp/thumb/{ch.Number}.jpg",
                Resources = [new DidlResource($"http://{host}:{ch.HttpPort}/stream.ts", DlnaInfo.ProtocolInfo("video/mp2t", DlnaInfo.LiveFeatures(profile)))
                {
                    Resolution = (ch.Width, ch.Height), BytesPerSecond = ch.BitrateKbps * 1000L / 8,
                    SampleFrequency = liveAudio is { Enabled: true } ? liveAudio.SampleRate : null, AudioChannels = liveAudio is { Enabled: true } ? liveAudio.Channels : null,
                }],
            });
            Add(new DidlObject($"rec/{ch.Number}", "rec", ch.Name, "object.container.storageFolder"));
        }
        if (_c.Library is { } lib)
        {
            var prefixes = status.Channels.Select(ch => (ch.Number, Prefix: RecordingLibrary.SafeName(ch.Name) + "_")).OrderByDescending(p => p.Prefix.Length).ToList();
            foreach (var e in lib.List())
            {
                if (e.FileState == RecordingFileState.Recording) continue;   // a file still being written is not offered until it is finished
                var owner = prefixes.FirstOrDefault(p => e.Name.StartsWith(p.Prefix, StringComparison.Ordinal));
                string parent = owner.Prefix is null ? "rec/other" : $"rec/{owner.Number}";
                if (!tree.ContainsKey(parent)) Add(new DidlObject(parent, "rec", "Other recordings", "object.container.storageFolder"));
                bool ts = e.Name.EndsWith(".ts", StringComparison.Ordinal);
                var audio = owner.Prefix is null || owner.Number > config.Channels.Count ? null : config.Channels[owner.Number - 1].Audio;
                var (w, h) = SizeOf(e, owner.Prefix is null ? null : status.Channels[owner.Number - 1]);
                long? bps = e.Duration is { TotalSeconds: > 0 } d ? (long)(e.Bytes / d.TotalSeconds) : null;
                Add(new DidlObject($"{parent}/{e.Name}", parent, Path.GetFileNameWithoutExtension(e.Name), "object.item.videoItem")
                {
                    Date = e.Started ?? new DateTimeOffset(e.Modified, TimeSpan.Zero),
                    AlbumArtUrl = owner.Prefix is null ? null : $"{media}/upnp/thumb/{owner.Number}.jpg",
                    Resources = [new DidlResource($"{media}/upnp/media/{Uri.EscapeDataString(e.Name)}",
                        DlnaInfo.ProtocolInfo(ts ? "video/mp2t" : "video/mp4", DlnaInfo.FileFeatures(w > 0 ? DlnaInfo.Profile(ts ? "ts" : "mp4", w, h) : null)))
                    {
                        Size = e.Bytes, Duration = e.Duration, Resolution = w > 0 ? (w, h) : null, BytesPerSecond = bps,
                        // The sound as the channel records it (a file of no current channel: unknown, left out).
                        SampleFrequency = audio is { Enabled: true } ? audio.SampleRate : null, AudioChannels = audio is { Enabled: true } ? audio.Channels : null,
                    }],
                });
            }
        }
        foreach (var n in tree.Values.Where(n => n.Object.IsContainer).ToList())
            tree[n.Object.Id] = n with { Object = n.Object with { ChildCount = n.Children.Count } };
        return tree;
    }

    /// <summary>An MP4's picture size from its track header (read once per file length); a TS file's from its channel's settings.</summary>
    (int W, int H) SizeOf(RecordingEntry e, ChannelStatus? channel)
    {
        if (e.Name.EndsWith(".mp4", StringComparison.Ordinal) && _c.Library?.PathOf(e.Name) is { } path)
        {
            lock (_sizes)
                if (_sizes.TryGetValue(e.Name, out var known) && known.Length == e.Bytes) return (known.Width, known.Height);
            int w = 0, h = 0;
            try
            {
                using var f = File.OpenRead(path);
                var head = new byte[(int)Math.Min(f.Length, 64 * 1024)];
                f.ReadExactly(head);
                Pearl2.Formats.Mp4.FragmentedMp4.TryReadVideoSize(head, out w, out h);
            }
            catch (IOException) { }
            lock (_sizes) _sizes[e.Name] = (e.Bytes, w, h);
            if (w > 0) return (w, h);
        }
        return channel is null ? (0, 0) : (channel.Width, channel.Height);
    }

    /// <summary>Bumps SystemUpdateID when the set of finished recordings changed since the last look.</summary>
    void Refresh()
    {
        if (_c.Library is not { } lib) return;
        string listing;
        try { listing = string.Join('\n', lib.List().Where(e => e.FileState != RecordingFileState.Recording).Select(e => e.Name)); }
        catch (IOException) { return; }
        lock (_sizes)
        {
            if (listing == _listing) return;
            bool first = _listing.Length == 0 && _systemUpdateId == 1;
            _listing = listing;
            if (!first) _systemUpdateId++;
        }
    }

    // ---- media ----

    /// <summary>The channel a recording belongs to (by its name), or null for files of no current channel.</summary>
    ChannelConfig? ChannelOfFile(string name, out int number)
    {
        var channels = _c.Store.Current.Channels;
        number = 0;
        int best = -1;
        for (int i = 0; i < channels.Count; i++)
        {
            string prefix = RecordingLibrary.SafeName(channels[i].Name) + "_";
            if (name.StartsWith(prefix, StringComparison.Ordinal) && prefix.Length > best) { best = prefix.Length; number = i + 1; }
        }
        return number == 0 ? null : channels[number - 1];
    }

    async Task MediaAsync(HttpContext ctx)
    {
        string name = (string)ctx.Request.RouteValues["name"]!;
        if (_c.Library?.PathOf(name) is not { } path || !File.Exists(path)) { ctx.Response.StatusCode = 404; return; }
        var channel = ChannelOfFile(name, out int number);
        if (channel?.Auth is { } a && !await AuthorizeAsync(ctx, number, new ViewerCredentials(a.Username, a.Password, a.AllowBasic))) return;
        // Byte ranges yes (DLNA.ORG_OP=01); time seeking no: refused as DLNA says (406), never ignored.
        if (ctx.Request.Headers.ContainsKey("TimeSeekRange.dlna.org")) { ctx.Response.StatusCode = 406; return; }
        bool ts = name.EndsWith(".ts", StringComparison.Ordinal);
        var h = ctx.Response.Headers;
        string? mode = ctx.Request.Headers["transferMode.dlna.org"].FirstOrDefault();
        h["transferMode.dlna.org"] = mode is "Interactive" or "Background" ? mode : "Streaming";
        if (ctx.Request.Headers["getcontentFeatures.dlna.org"].FirstOrDefault() == "1")
        {
            var entry = _c.Library.List().FirstOrDefault(e => e.Name == name);
            var (w, hh) = entry is null ? (0, 0) : SizeOf(entry, null);
            h["contentFeatures.dlna.org"] = DlnaInfo.FileFeatures(w > 0 ? DlnaInfo.Profile(ts ? "ts" : "mp4", w, hh) : null);
        }
        _log.LogInformation("upnp.media from={From} file={File} range={Range}", ctx.Connection.RemoteIpAddress, name, ctx.Request.Headers.Range.FirstOrDefault() ?? "-");
        await Results.File(path, ts ? "video/mp2t" : "video/mp4", enableRangeProcessing: true, lastModified: File.GetLastWriteTimeUtc(path)).ExecuteAsync(ctx);
    }

    async Task ThumbAsync(HttpContext ctx)
    {
        if (!int.TryParse((string)ctx.Request.RouteValues["channel"]!, NumberStyles.None, CultureInfo.InvariantCulture, out int n)
            || n < 1 || n > _c.Store.Current.Channels.Count) { ctx.Response.StatusCode = 404; return; }
        var cc = _c.Store.Current.Channels[n - 1];
        var status = _c.Device.Status();
        bool loopback = ctx.Connection.RemoteIpAddress is { } ip && IPAddress.IsLoopback(ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip);
        if (n <= status.Channels.Count && !status.Channels[n - 1].Streaming && !loopback) { ctx.Response.StatusCode = 403; return; }
        if (cc.Auth is { } a && !await AuthorizeAsync(ctx, n, new ViewerCredentials(a.Username, a.Password, a.AllowBasic))) return;
        byte[]? jpeg;
        try { jpeg = await _c.Device.PreviewAsync(n, 160); }
        catch (ArgumentException) { ctx.Response.StatusCode = 404; return; }   // the channel went away in between
        if (jpeg is null) { ctx.Response.StatusCode = 503; return; }
        ctx.Response.Headers.CacheControl = "no-cache";
        await BytesAsync(ctx, "image/jpeg", jpeg);
    }

    /// <summary>The channel's viewer login, as the RTSP and HTTP doors ask it (Digest, Basic when allowed, a view token); 401 or 429 when it fails.</summary>
    async Task<bool> AuthorizeAsync(HttpContext ctx, int channel, ViewerCredentials creds)
    {
        var ip = ctx.Connection.RemoteIpAddress is { } r && r.IsIPv4MappedToIPv6 ? r.MapToIPv4() : ctx.Connection.RemoteIpAddress;
        var head = new KestrelRequestHead(ctx);
        var peer = new AuthPeer(ConnectionNumber(ctx), ip);
        var outcome = _c.Auth.Authorize(head, channel, creds, peer, out var user, out var why);
        if (outcome == AuthOutcome.Accepted) return true;
        if (outcome == AuthOutcome.Throttled)
        {
            ctx.Response.StatusCode = 429;
            ctx.Response.Headers.RetryAfter = _c.Auth.Throttle.RetryAfterSeconds(ip).ToString(CultureInfo.InvariantCulture);
            return false;
        }
        if (outcome == AuthOutcome.Refused) _log.LogWarning("upnp.auth_failed channel={Channel} from={From} user={User} reason=\"{Reason}\"", channel, ip, user ?? "-", why);
        ctx.Response.StatusCode = 401;
        foreach (var c in _c.Auth.Challenges(creds, outcome == AuthOutcome.Stale)) ctx.Response.Headers.Append("WWW-Authenticate", c);
        return false;
    }

    static long ConnectionNumber(HttpContext ctx)
    {
        var items = ctx.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionItemsFeature>()?.Items;
        if (items is null) return AuthPeer.NewConnection();
        if (items.TryGetValue("pearl2.auth", out var n) && n is long known) return known;
        long fresh = AuthPeer.NewConnection();
        items["pearl2.auth"] = fresh;
        return fresh;
    }

    /// <summary>A Kestrel request as the viewer login reads it.</summary>
    sealed class KestrelRequestHead(HttpContext ctx) : IRequestHead
    {
        public string Method => ctx.Request.Method;
        public string Uri => ctx.Request.Path.Value + ctx.Request.QueryString.Value;
        public string Version => ctx.Request.Protocol;
        public IReadOnlyList<KeyValuePair<string, string>> Headers =>
            ctx.Request.Headers.SelectMany(h => h.Value.Select(v => new KeyValuePair<string, string>(h.Key, v ?? ""))).ToList();
        public string? this[string name] => ctx.Request.Headers.TryGetValue(name, out var v) ? v.FirstOrDefault() : null;
        public string Path => ctx.Request.Path.Value ?? "/";
        public string? Query(string name) => ctx.Request.Query.TryGetValue(name, out var v) ? v.FirstOrDefault() : null;
    }

    public async ValueTask DisposeAsync()
    {
        await _events.DisposeAsync();
        await _app.StopAsync();
        await _app.DisposeAsync();
        _log.LogInformation("upnp.stopped port={Port}", Port);
    }

    /// <summary>
    /// GENA eventing (UDA 1.1 §4): SUBSCRIBE with a CALLBACK on the subscriber's own address (never another host: we
    /// must not be made to send to third parties), renewals by SID, UNSUBSCRIBE; an initial event at once and another
    /// whenever SystemUpdateID changes (checked every 2 s). At most 32 subscriptions, each at most 30 minutes.
    /// </summary>
    sealed class Eventing(ILogger log, TimeProvider time) : IAsyncDisposable
    {
        sealed class Subscription
        {
            public required string Sid, Service;
            public required Uri Callback;
            public DateTimeOffset Expires;
            public uint Seq;
        }

        const int MaxSubscriptions = 32, TimeoutSeconds = 1800;
        readonly Dictionary<string, Subscription> _subs = new();
        readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(5) };
        readonly CancellationTokenSource _stop = new();
        Func<uint>? _updateId;
        Task _loop = Task.CompletedTask;

        public void Start(Func<uint> updateId)
        {
            _updateId = updateId;
            _loop = Task.Run(async () =>
            {
                uint last = updateId();
                try
                {
                    while (!_stop.IsCancellationRequested)
                    {
                        await Task.Delay(TimeSpan.FromSeconds(2), time, _stop.Token);
                        uint now = updateId();
                        if (now == last) continue;
                        last = now;
                        List<Subscription> subs;
                        lock (_subs)
                        {
                            foreach (var gone in _subs.Values.Where(s => s.Expires < time.GetUtcNow()).ToList()) _subs.Remove(gone.Sid);
                            subs = _subs.Values.Where(s => s.Service == "ContentDirectory").ToList();
                        }
                        foreach (var s in subs) await NotifyAsync(s);
                    }
                }
                catch (OperationCanceledException) { }
            });
        }

        public async Task HandleAsync(HttpContext ctx, string service)
        {
            var req = ctx.Request;
            string? sid = req.Headers["SID"].FirstOrDefault();
            if (req.Method == "UNSUBSCRIBE")
            {
                bool removed;
                lock (_subs) removed = sid is not null && _subs.Remove(sid);
                ctx.Response.StatusCode = removed ? 200 : 412;
                return;
            }
            if (sid is not null)
            {
                // A renewal: SID only, no CALLBACK or NT (UDA 1.1 §4.1.2).
                if (req.Headers.ContainsKey("CALLBACK") || req.Headers.ContainsKey("NT")) { ctx.Response.StatusCode = 400; return; }
                lock (_subs)
                {
                    if (!_subs.TryGetValue(sid, out var s) || s.Service != service) { ctx.Response.StatusCode = 412; return; }
                    s.Expires = time.GetUtcNow().AddSeconds(TimeoutSeconds);
                }
                Accept(ctx, sid);
                return;
            }
            if (req.Headers["NT"].FirstOrDefault() != "upnp:event") { ctx.Response.StatusCode = 412; return; }
            string callback = req.Headers["CALLBACK"].FirstOrDefault() ?? "";
            var from = ctx.Connection.RemoteIpAddress is { } f && f.IsIPv4MappedToIPv6 ? f.MapToIPv4() : ctx.Connection.RemoteIpAddress;
            Uri? url = null;
            foreach (var part in callback.Split('>', StringSplitOptions.RemoveEmptyEntries))
                if (System.Uri.TryCreate(part.Trim().TrimStart('<'), UriKind.Absolute, out var u) && u.Scheme == "http"
                    && IPAddress.TryParse(u.Host.Trim('[', ']'), out var host) && host.Equals(from)) { url = u; break; }
            if (url is null) { ctx.Response.StatusCode = 412; return; }
            var sub = new Subscription { Sid = "uuid:" + Guid.NewGuid().ToString("D"), Service = service, Callback = url, Expires = time.GetUtcNow().AddSeconds(TimeoutSeconds) };
            lock (_subs)
            {
                foreach (var gone in _subs.Values.Where(s => s.Expires < time.GetUtcNow()).ToList()) _subs.Remove(gone.Sid);
                if (_subs.Count >= MaxSubscriptions) { ctx.Response.StatusCode = 503; return; }
                _subs[sub.Sid] = sub;
            }
            Accept(ctx, sub.Sid);
            log.LogInformation("upnp.subscribed service={Service} from={From} sid={Sid}", service, from, sub.Sid);
            // The initial event comes after the answer (UDA: the subscriber must know the SID first).
            await ctx.Response.CompleteAsync();
            await NotifyAsync(sub);
        }

        static void Accept(HttpContext ctx, string sid)
        {
            ctx.Response.StatusCode = 200;
            ctx.Response.Headers["SID"] = sid;
            ctx.Response.Headers["TIMEOUT"] = $"Second-{TimeoutSeconds}";
            ctx.Response.ContentLength = 0;
        }

        async Task NotifyAsync(Subscription s)
        {
            string vars = s.Service == "ContentDirectory"
                ? $"<e:property><SystemUpdateID>{_updateId!()}</SystemUpdateID></e:property><e:property><ContainerUpdateIDs></ContainerUpdateIDs></e:property>"
                : $"<e:property><SourceProtocolInfo>{Xml.Escape(string.Join(',', SourceProtocolInfo()))}</SourceProtocolInfo></e:property><e:property><SinkProtocolInfo></SinkProtocolInfo></e:property><e:property><CurrentConnectionIDs>0</CurrentConnectionIDs></e:property>";
            var body = $"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<e:propertyset xmlns:e=\"urn:schemas-upnp-org:event-1-0\">{vars}</e:propertyset>\n";
            using var msg = new HttpRequestMessage(new HttpMethod("NOTIFY"), s.Callback) { Content = new StringContent(body, Encoding.UTF8, "text/xml") };
            msg.Headers.TryAddWithoutValidation("NT", "upnp:event");
            msg.Headers.TryAddWithoutValidation("NTS", "upnp:propchange");
            msg.Headers.TryAddWithoutValidation("SID", s.Sid);
            msg.Headers.TryAddWithoutValidation("SEQ", s.Seq++.ToString(CultureInfo.InvariantCulture));
            try
            {
                using var r = await _http.SendAsync(msg, _stop.Token);
                if (!r.IsSuccessStatusCode) log.LogDebug("upnp.notify_refused sid={Sid} status={Status}", s.Sid, (int)r.StatusCode);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // Gone subscriber: it expires on its own.
                log.LogDebug("upnp.notify_failed sid={Sid} error=\"{Error}\"", s.Sid, e.Message);
            }
        }

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            try { await _loop; } catch (OperationCanceledException) { }
            _http.Dispose();
        }
    }
}
