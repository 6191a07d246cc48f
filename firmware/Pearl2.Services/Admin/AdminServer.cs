using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Pearl2.Services.Configuration;
using Pearl2.Services.Recording;

namespace Pearl2.Services.Admin;

/// <summary>Who may call an endpoint: the lowest role, or null for everyone (setup, login, the panel's files).</summary>
public sealed record AdminAccess(AdminRole? Role);

/// <summary>Who is calling: the user, the role, and how they proved it (a panel session, or Basic as Pearl clients send it).</summary>
public sealed record AdminCaller(string User, AdminRole Role, AdminSession? Session)
{
    public string By => $"api:{User}";
}

/// <summary>Everything the admin doors reach: the device's commands and status, the config store, the recordings, the users.</summary>
public sealed class AdminContext
{
    public required IDeviceControl Device { get; init; }
    public required ConfigStore Store { get; init; }
    public RecordingLibrary? Library { get; init; }
    public required AdminUsers Users { get; init; }
    public required AdminSessions Sessions { get; init; }
    public required LoginThrottle Throttle { get; init; }
    public required AuditLog Audit { get; init; }
    public AdminCertificate? Certificate { get; init; }
    public RecentLog? RecentLog { get; init; }
    public required TimeProvider Time { get; init; }
    public required string DataDir { get; init; }
    /// <summary>The host name and the address other hosts reach the device at (for URLs the panel shows).</summary>
    public required Func<string> HostAddress { get; init; }
    /// <summary>mDNS, SSDP and the UPnP media server (null when discovery is kept off by the environment).</summary>
    public Discovery.DiscoveryService? Discovery { get; init; }
}

/// <summary>
/// The admin web panel and the REST API on ports 80 and 443 (plus the port offset): one Kestrel server (minimal
/// routing over request delegates, no reflection, NativeAOT-clean). The Pearl REST API v2.0 is answered under
/// <c>/api/v2.0</c> and <c>/api</c>; our own additions under <c>/api/v2.0/x-pearl2</c>. Every request is authenticated
/// here, before its endpoint runs: a panel session cookie (changes must carry its CSRF token) or HTTP Basic (Pearl
/// clients); failures are throttled per address (429 when blocked); bodies are capped (413).
/// </summary>
public sealed class AdminServer : IAsyncDisposable
{
    public const long MaxBodyBytes = 1 << 20;
    public const string PanelHeader = "X-Pearl2-Panel";

    readonly WebApplication _app;
    readonly AdminContext _c;
    readonly ILogger _log;

    AdminServer(WebApplication app, AdminContext c, ILogger log) { _app = app; _c = c; _log = log; }

    /// <summary>No admin yet: the panel offers only its setup page.</summary>
    public bool SetupPending => _c.Users.SetupPending;
    public int HttpPort { get; private init; }
    public int HttpsPort { get; private init; }

    public static async Task<AdminServer> StartAsync(AdminContext c, int httpPort, int httpsPort, ILoggerFactory loggers)
    {
        var log = loggers.CreateLogger("Pearl2.Admin");
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "pearl2d" });
        builder.Services.AddLogging();
        builder.Services.Replace(ServiceDescriptor.Singleton(loggers));
        builder.Services.AddRoutingCore();
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = MaxBodyBytes;
            k.Limits.MaxRequestHeadersTotalSize = 32 * 1024;
            k.Limits.MaxConcurrentConnections = 256;
            k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(15);
            k.ListenAnyIP(httpPort);
            if (httpsPort != 0 && c.Certificate is { } cert)
                k.ListenAnyIP(httpsPort, l => l.UseHttps(new HttpsConnectionAdapterOptions { ServerCertificateSelector = (_, _) => cert.Current }));
        });
        var app = builder.Build();
        var server = new AdminServer(app, c, log) { HttpPort = httpPort, HttpsPort = httpsPort };
        app.Use(server.GuardAsync);
        app.UseRouting();
        app.Use(server.AuthenticateAsync);
        foreach (var prefix in new[] { "/api/v2.0", "/api" })
        {
            var api = app.MapGroup(prefix);
            PearlApi.Map(api, c);
            OwnApi.Map(api.MapGroup("/x-pearl2"), c);
        }
        app.MapGet("/api/v2.0/openapi.json", ctx => OpenApiDocument.WriteAsync(ctx)).WithMetadata(new AdminAccess(null));
        AdminPanel.Map(app, c);
        Metrics.Map(app, c);
        await app.StartAsync();
        string host = c.HostAddress();
        log.LogInformation("admin.url panel=http://{Host}:{Http}/ https={Https} api=http://{Host}:{Http}/api/v2.0/ setup={Setup}", host, httpPort,
            httpsPort == 0 ? "off" : $"https://{host}:{httpsPort}/", host, httpPort,
            c.Users.SetupPending ? "pending (open the panel to create the admin password)" : "done");
        return server;
    }

    /// <summary>Before routing: the body cap, security headers, HSTS and the HTTP-to-HTTPS redirect.</summary>
    async Task GuardAsync(HttpContext ctx, RequestDelegate next)
    {
        var h = ctx.Response.Headers;
        h["X-Content-Type-Options"] = "nosniff";
        h["X-Frame-Options"] = "DENY";
        h["Referrer-Policy"] = "no-referrer";
        var admin = _c.Store.Current.Admin;
        if (ctx.Request.IsHttps && admin.Hsts) h["Strict-Transport-Security"] = "max-age=31536000";
        if (!ctx.Request.IsHttps && admin.RedirectToHttps && HttpsPort != 0 && !ctx.Request.Path.StartsWithSegments("/api")
            && ctx.Request.Method is "GET" or "HEAD")
        {
            string host = ctx.Request.Host.Host;
            ctx.Response.Redirect($"https://{(host.Contains(':') ? $"[{host}]" : host)}:{HttpsPort}{ctx.Request.Path}{ctx.Request.QueryString}");
            return;
        }
        if (ctx.Request.ContentLength > MaxBodyBytes)
        {
            ctx.Response.Headers.Connection = "close";
            await ApiReply.Error(ctx, 413, "error", $"the body is larger than {MaxBodyBytes} bytes");
            return;
        }
        try { await next(ctx); }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException e) when (!ctx.Response.HasStarted)
        {
            // A chunked body past the cap, or one that stopped arriving.
            await ApiReply.Error(ctx, e.StatusCode, "error", e.StatusCode == 413 ? $"the body is larger than {MaxBodyBytes} bytes" : e.Message);
        }
    }

    static string From(HttpContext ctx) => PeerAddress.Of(ctx.Connection.RemoteIpAddress is { } a ? new IPEndPoint(a, ctx.Connection.RemotePort) : null).ToString();

    /// <summary>After routing: who calls, and whether their role, CSRF token and origin let them call this endpoint.</summary>
    async Task AuthenticateAsync(HttpContext ctx, RequestDelegate next)
    {
        var endpoint = ctx.GetEndpoint();
        if (endpoint is null) { await next(ctx); return; }
        var need = endpoint.Metadata.GetMetadata<AdminAccess>()?.Role ?? AdminRole.Admin;   // an endpoint that says nothing is for admins
        bool open = endpoint.Metadata.GetMetadata<AdminAccess>() is { Role: null };
        var address = ctx.Connection.RemoteIpAddress is { } ip && ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ctx.Connection.RemoteIpAddress;
        bool changes = !HttpMethods.IsGet(ctx.Request.Method) && !HttpMethods.IsHead(ctx.Request.Method) && !HttpMethods.IsOptions(ctx.Request.Method);

        AdminCaller? caller = null;
        var session = _c.Sessions.Find(ctx.Request.Cookies[AdminSessions.Cookie]);
        if (session is not null) caller = new AdminCaller(session.User, session.Role, session);
        else if (Pearl2.Formats.Rtsp.AuthorizationHeader.TryParse(ctx.Request.Headers.Authorization.ToString(), out var basic)
            && basic is { Scheme: Pearl2.Formats.Rtsp.AuthScheme.Basic, BasicUser: { Length: > 0 } user, BasicPassword: { } password })
        {
            if (_c.Throttle.Record(address, AuthOutcome.Missing) == AuthOutcome.Throttled) { await TooManyAsync(ctx, address); return; }
            var role = await Task.Run(() => _c.Users.Verify(user, password));
            if (role is null && open)
            {
                // A stale login a browser keeps sending must not lock anyone out of the login page itself: anonymous here.
                ctx.Items[typeof(AdminCaller)] = null;
                await next(ctx);
                return;
            }
            if (role is null)
            {
                var outcome = _c.Throttle.Record(address, AuthOutcome.Refused);
                _c.Audit.LogWarning("audit.login_failed user=\"{User}\" from={From} how=basic path={Path}", Sanitize(user), From(ctx), ctx.Request.Path.Value);
                if (outcome == AuthOutcome.Throttled) { await TooManyAsync(ctx, address); return; }
                var delay = _c.Throttle.DelayFor(address);
                if (delay > TimeSpan.Zero) await Task.Delay(delay, _c.Time);
                await UnauthorizedAsync(ctx, "wrong user name or password");
                return;
            }
            _c.Throttle.Record(address, AuthOutcome.Accepted);
            caller = new AdminCaller(user, role.Value, null);
        }
        if (open) { ctx.Items[typeof(AdminCaller)] = caller; await next(ctx); return; }
        if (caller is null)
        {
            await UnauthorizedAsync(ctx, _c.Users.SetupPending
                ? "setup pending: open the admin panel and create the admin password first"
                : "log in: a panel session or HTTP Basic with a user of this device");
            return;
        }
        if (caller.Role < need)
        {
            await ApiReply.Error(ctx, 403, "error", $"the {AdminRoles.Name(need)} role is needed (user {caller.User} is {AdminRoles.Name(caller.Role)})");
            return;
        }
        if (changes && caller.Session is { } s && !AdminSessions.CsrfMatches(s, ctx.Request.Headers[AdminSessions.CsrfHeader]))
        {
            _log.LogWarning("admin.csrf_refused user={User} from={From} path={Path}", caller.User, From(ctx), ctx.Request.Path.Value);
            await ApiReply.Error(ctx, 403, "error", $"the {AdminSessions.CsrfHeader} header of the session is missing or wrong");
            return;
        }
        // A browser that remembers Basic credentials sends them to cross-site forms too: a change must come from our own origin.
        if (changes && caller.Session is null && ctx.Request.Headers.Origin is { Count: > 0 } origin && !SameOrigin(origin.ToString(), ctx.Request))
        {
            await ApiReply.Error(ctx, 403, "error", "a change from another site's page is refused");
            return;
        }
        ctx.Items[typeof(AdminCaller)] = caller;
        await next(ctx);
    }

    static bool SameOrigin(string origin, HttpRequest request) =>
        Uri.TryCreate(origin, UriKind.Absolute, out var o) && string.Equals(o.Authority, request.Host.Value, StringComparison.OrdinalIgnoreCase);

    public static AdminCaller Caller(HttpContext ctx) => (AdminCaller)ctx.Items[typeof(AdminCaller)]!;
    public static AdminCaller? MaybeCaller(HttpContext ctx) => ctx.Items.TryGetValue(typeof(AdminCaller), out var c) ? c as AdminCaller : null;

    static string Sanitize(string s) => s.Length > 64 ? s[..64] : s.Replace("\"", "'").ReplaceLineEndings(" ");

    static Task UnauthorizedAsync(HttpContext ctx, string message)
    {
        // The panel's own requests get no challenge, or the browser would pop up its Basic dialog over the page.
        if (!ctx.Request.Headers.ContainsKey(PanelHeader)) ctx.Response.Headers.WWWAuthenticate = "Basic realm=\"Pearl2\", charset=\"UTF-8\"";
        return ApiReply.Error(ctx, 401, "error", message);
    }

    Task TooManyAsync(HttpContext ctx, IPAddress? address)
    {
        ctx.Response.Headers.RetryAfter = Math.Max(1, _c.Throttle.RetryAfterSeconds(address)).ToString();
        ctx.Response.Headers.Connection = "close";
        return ApiReply.Error(ctx, 429, "error", "too many failed logins from this address: try again later");
    }

    /// <summary>Logs a user in from the panel's login form; the session cookie is set on the answer.</summary>
    internal static async Task<AdminSession?> LoginAsync(HttpContext ctx, AdminContext c, string user, string password)
    {
        var address = ctx.Connection.RemoteIpAddress is { } ip && ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ctx.Connection.RemoteIpAddress;
        if (c.Throttle.Record(address, AuthOutcome.Missing) == AuthOutcome.Throttled) return null;
        var role = await Task.Run(() => c.Users.Verify(user, password));
        if (role is null)
        {
            c.Throttle.Record(address, AuthOutcome.Refused);
            c.Audit.LogWarning("audit.login_failed user=\"{User}\" from={From} how=panel", Sanitize(user), From(ctx));
            var delay = c.Throttle.DelayFor(address);
            if (delay > TimeSpan.Zero) await Task.Delay(delay, c.Time);
            return null;
        }
        c.Throttle.Record(address, AuthOutcome.Accepted);
        var session = c.Sessions.Start(user, role.Value);
        ctx.Response.Cookies.Append(AdminSessions.Cookie, session.Id, new CookieOptions
        {
            HttpOnly = true, Secure = ctx.Request.IsHttps, SameSite = SameSiteMode.Strict, Path = "/",
            MaxAge = c.Sessions.Absolute,
        });
        c.Audit.LogInformation("audit.login user={User} role={Role} from={From} how=panel", user, AdminRoles.Name(role.Value), From(ctx));
        return session;
    }

    internal static bool IsThrottled(HttpContext ctx, AdminContext c)
    {
        var address = ctx.Connection.RemoteIpAddress is { } ip && ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ctx.Connection.RemoteIpAddress;
        return c.Throttle.RetryAfterSeconds(address) > 0;
    }

    internal Task TooMany(HttpContext ctx) => TooManyAsync(ctx, ctx.Connection.RemoteIpAddress);

    internal static string FromOf(HttpContext ctx) => From(ctx);

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        try { await _app.StopAsync(cts.Token); }
        catch (OperationCanceledException) { }
        await _app.DisposeAsync();
    }
}
