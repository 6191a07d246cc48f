using System.IO.Compression;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Pearl2.Services.Admin;

/// <summary>
/// The admin web panel: one page and its script and style, built into the binary (nothing from a CDN, nothing fetched
/// at run time), gzip-served with an ETag. The page itself is open (it shows the setup or login form); everything it
/// shows comes from the API with the session cookie.
/// </summary>
public static class AdminPanel
{
    sealed record WebFile(string Type, byte[] Gzip, byte[] Plain, string ETag);

    static readonly Dictionary<string, WebFile> Files = new(StringComparer.Ordinal);

    static WebFile Load(string name, string type)
    {
        lock (Files)
        {
            if (Files.TryGetValue(name, out var f)) return f;
            using var s = typeof(AdminPanel).Assembly.GetManifestResourceStream("Pearl2.Services.admin." + name)
                ?? throw new InvalidOperationException($"resource admin/{name} is missing from the build");
            var plain = new MemoryStream();
            s.CopyTo(plain);
            var gz = new MemoryStream();
            using (var z = new GZipStream(gz, CompressionLevel.SmallestSize, leaveOpen: true)) z.Write(plain.ToArray());
            f = new WebFile(type, gz.ToArray(), plain.ToArray(), $"\"{Convert.ToHexStringLower(SHA256.HashData(plain.ToArray()))[..16]}\"");
            Files[name] = f;
            return f;
        }
    }

    public static void Map(IEndpointRouteBuilder app, AdminContext c)
    {
        var open = new AdminAccess(null);
        app.MapMethods("/", ["GET", "HEAD"], ctx => ServeAsync(ctx, "index.html", "text/html; charset=utf-8")).WithMetadata(open);
        app.MapMethods("/panel.js", ["GET", "HEAD"], ctx => ServeAsync(ctx, "panel.js", "text/javascript; charset=utf-8")).WithMetadata(open);
        app.MapMethods("/panel.css", ["GET", "HEAD"], ctx => ServeAsync(ctx, "panel.css", "text/css; charset=utf-8")).WithMetadata(open);
    }

    static async Task ServeAsync(HttpContext ctx, string name, string type)
    {
        var f = Load(name, type);
        var h = ctx.Response.Headers;
        h.ContentType = f.Type;
        h.ETag = f.ETag;
        h.CacheControl = "no-cache";
        h.Vary = "Accept-Encoding";
        if (name == "index.html")
            h.ContentSecurityPolicy = "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";
        if (ctx.Request.Headers.IfNoneMatch == f.ETag) { ctx.Response.StatusCode = 304; return; }
        bool gzip = ctx.Request.Headers.AcceptEncoding.ToString().Contains("gzip", StringComparison.Ordinal);
        var body = gzip ? f.Gzip : f.Plain;
        if (gzip) h.ContentEncoding = "gzip";
        ctx.Response.ContentLength = body.Length;
        if (!HttpMethods.IsHead(ctx.Request.Method)) await ctx.Response.Body.WriteAsync(body);
    }
}
