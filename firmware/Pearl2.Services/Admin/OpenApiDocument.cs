using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Pearl2.Services.Admin;

/// <summary>
/// <c>/api/v2.0/openapi.json</c>: an OpenAPI 3.0 description of every path this device answers under /api/v2.0, built
/// from the live route table (so it cannot list a path we do not serve, or miss one), with each operation's method,
/// path parameters, the role it needs, and whether it is Pearl's (shared/refs) or ours (x-pearl2).
/// </summary>
public static class OpenApiDocument
{
    const string Prefix = "/api/v2.0";

    public static async Task WriteAsync(HttpContext ctx)
    {
        var sources = ctx.RequestServices.GetRequiredService<EndpointDataSource>();
        var operations = new SortedDictionary<string, SortedDictionary<string, AdminAccess?>>(StringComparer.Ordinal);
        foreach (var e in sources.Endpoints.OfType<RouteEndpoint>())
        {
            string? raw = e.RoutePattern.RawText;
            if (raw is null || !raw.StartsWith(Prefix + "/", StringComparison.Ordinal)) continue;
            string path = raw[Prefix.Length..].Replace("{**rest}", "{rest}");
            if (path == "/openapi.json") continue;
            var methods = e.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? ["GET"];
            if (!operations.TryGetValue(path, out var byMethod)) operations[path] = byMethod = new(StringComparer.Ordinal);
            foreach (var m in methods) byMethod[m.ToLowerInvariant()] = e.Metadata.GetMetadata<AdminAccess>();
        }

        var buffer = new ArrayBufferWriter<byte>(16 * 1024);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("openapi", "3.0.3");
            w.WriteStartObject("info");
            w.WriteString("title", "Pearl2 device REST API");
            w.WriteString("version", "v2.0");
            w.WriteString("description", "The Pearl REST API v2.0 paths this device answers (same envelope, fields and Basic authentication as Epiphan's), and its own under /x-pearl2.");
            w.WriteEndObject();
            w.WriteStartArray("servers"); w.WriteStartObject(); w.WriteString("url", Prefix); w.WriteEndObject(); w.WriteEndArray();
            w.WriteStartObject("paths");
            foreach (var (path, byMethod) in operations)
            {
                w.WriteStartObject(path);
                foreach (var (method, access) in byMethod)
                {
                    w.WriteStartObject(method);
                    w.WriteString("operationId", $"{method}{path.Replace('/', '_').Replace("{", "").Replace("}", "")}");
                    w.WriteStartArray("tags"); w.WriteStringValue(path.StartsWith("/x-pearl2", StringComparison.Ordinal) ? "Pearl2" : "Pearl"); w.WriteEndArray();
                    w.WriteString("x-pearl2-role", access is { Role: { } r } ? AdminRoles.Name(r) : access is null ? "admin" : "anyone");
                    if (access is { Role: null }) { w.WriteStartArray("security"); w.WriteEndArray(); }
                    var names = path.Split('/').Where(s => s.StartsWith('{')).Select(s => s.Trim('{', '}')).ToList();
                    if (names.Count > 0)
                    {
                        w.WriteStartArray("parameters");
                        foreach (var n in names)
                        {
                            w.WriteStartObject();
                            w.WriteString("name", n); w.WriteString("in", "path"); w.WriteBoolean("required", true);
                            w.WriteStartObject("schema"); w.WriteString("type", "string"); w.WriteEndObject();
                            w.WriteEndObject();
                        }
                        w.WriteEndArray();
                    }
                    w.WriteStartObject("responses");
                    WriteResponse(w, "200", "{\"status\":\"ok\",\"result\":…}", "OkResponse");
                    WriteResponse(w, "default", "{\"status\":\"error\"|\"notfound\"|\"badrequest\",\"message\":…}", "ErrorResponse");
                    w.WriteEndObject();
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteStartObject("components");
            w.WriteStartObject("schemas");
            w.WriteStartObject("OkResponse");
            w.WriteString("type", "object");
            w.WriteStartArray("required"); w.WriteStringValue("status"); w.WriteEndArray();
            w.WriteStartObject("properties");
            w.WriteStartObject("status"); w.WriteString("type", "string"); w.WriteStartArray("enum"); w.WriteStringValue("ok"); w.WriteEndArray(); w.WriteEndObject();
            w.WriteStartObject("result"); w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject("ErrorResponse");
            w.WriteString("type", "object");
            w.WriteStartArray("required"); w.WriteStringValue("status"); w.WriteStringValue("message"); w.WriteEndArray();
            w.WriteStartObject("properties");
            w.WriteStartObject("status"); w.WriteString("type", "string"); w.WriteEndObject();
            w.WriteStartObject("message"); w.WriteString("type", "string"); w.WriteEndObject();
            w.WriteStartObject("errors"); w.WriteString("type", "array"); w.WriteStartObject("items"); w.WriteString("type", "string"); w.WriteEndObject(); w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject("securitySchemes");
            w.WriteStartObject("BasicAuth"); w.WriteString("type", "http"); w.WriteString("scheme", "basic"); w.WriteEndObject();
            w.WriteStartObject("PanelSession");
            w.WriteString("type", "apiKey"); w.WriteString("in", "cookie"); w.WriteString("name", AdminSessions.Cookie);
            w.WriteString("description", $"From POST /x-pearl2/login; changes also need the {AdminSessions.CsrfHeader} header with the session's csrf value.");
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartArray("security");
            w.WriteStartObject(); w.WriteStartArray("BasicAuth"); w.WriteEndArray(); w.WriteEndObject();
            w.WriteStartObject(); w.WriteStartArray("PanelSession"); w.WriteEndArray(); w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
        }
        ctx.Response.ContentType = "application/json; charset=utf-8";
        ctx.Response.ContentLength = buffer.WrittenCount;
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory);
    }

    static void WriteResponse(Utf8JsonWriter w, string code, string description, string schema)
    {
        w.WriteStartObject(code);
        w.WriteString("description", description);
        w.WriteStartObject("content");
        w.WriteStartObject("application/json");
        w.WriteStartObject("schema"); w.WriteString("$ref", $"#/components/schemas/{schema}"); w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
