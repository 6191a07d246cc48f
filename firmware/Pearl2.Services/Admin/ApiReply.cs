using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Pearl2.Services.Admin;

/// <summary>
/// The Pearl API's envelope: <c>{"status":"ok","result":…}</c> for answers, <c>{"status":"error"|"notfound"|…,"message":…}</c>
/// for refusals. Written with <see cref="Utf8JsonWriter"/> field by field, so the names on the wire are Pearl's exactly
/// and nothing is reflected at run time.
/// </summary>
public static class ApiReply
{
    static readonly JsonWriterOptions Options = new() { Indented = false };

    static async Task WriteAsync(HttpContext ctx, int status, Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer, Options)) body(w);
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        ctx.Response.Headers.CacheControl = "no-store";
        ctx.Response.ContentLength = buffer.WrittenCount;
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory);
    }

    /// <summary><c>{"status":"ok","result":…}</c>, the result written by <paramref name="result"/> (after its property name).</summary>
    public static Task Ok(HttpContext ctx, Action<Utf8JsonWriter> result) => WriteAsync(ctx, 200, w =>
    {
        w.WriteStartObject();
        w.WriteString("status", "ok");
        w.WritePropertyName("result");
        result(w);
        w.WriteEndObject();
    });

    /// <summary><c>{"status":"ok"}</c>: done, nothing to return.</summary>
    public static Task Ok(HttpContext ctx) => WriteAsync(ctx, 200, w =>
    {
        w.WriteStartObject();
        w.WriteString("status", "ok");
        w.WriteEndObject();
    });

    public static Task OkString(HttpContext ctx, string value) => Ok(ctx, w => w.WriteStringValue(value));

    /// <summary>A refusal: the HTTP status, Pearl's status word ("error", "notfound", "badrequest", …), and what is wrong.</summary>
    public static Task Error(HttpContext ctx, int status, string word, string message, IReadOnlyList<string>? errors = null) => WriteAsync(ctx, status, w =>
    {
        w.WriteStartObject();
        w.WriteString("status", word);
        w.WriteString("message", message);
        if (errors is { Count: > 0 })
        {
            w.WriteStartArray("errors");
            foreach (var e in errors) w.WriteStringValue(e);
            w.WriteEndArray();
        }
        w.WriteEndObject();
    });

    public static Task NotFound(HttpContext ctx, string message) => Error(ctx, 404, "notfound", message);
    public static Task BadRequest(HttpContext ctx, string message, IReadOnlyList<string>? errors = null) => Error(ctx, 400, "badrequest", message, errors);

    /// <summary>A Pearl boolean query flag: yes, true, 1 or on.</summary>
    public static bool Flag(HttpContext ctx, string name) =>
        ctx.Request.Query[name].ToString().ToLowerInvariant() is "yes" or "true" or "1" or "on";

    /// <summary>The <c>ids=1,2</c> filter: null for all, else the ids as given.</summary>
    public static HashSet<string>? Ids(HttpContext ctx)
    {
        var raw = ctx.Request.Query["ids"].ToString();
        return string.IsNullOrWhiteSpace(raw) ? null : raw.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
    }

    public static string Route(HttpContext ctx, string name) => ctx.Request.RouteValues[name]?.ToString() ?? "";
}
