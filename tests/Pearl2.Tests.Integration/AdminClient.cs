using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Pearl2.Tests.Integration;

/// <summary>A real HTTP client on the admin port: Basic as Pearl clients send it, or a panel session with its CSRF token.</summary>
public sealed class AdminClient : IDisposable
{
    readonly HttpClient _http;
    public string Base { get; }
    public string? User { get; set; }
    public string? Password { get; set; }
    public string? Cookie { get; set; }
    public string? Csrf { get; set; }

    /// <param name="timeout">How long one request may take (60 s unless given: the emulated board wants longer).</param>
    public AdminClient(string host, int port, TimeSpan? timeout = null)
    {
        Base = $"http://{host}:{port}";
        _http = new HttpClient(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false }) { Timeout = timeout ?? TimeSpan.FromSeconds(60) };
    }

    public AdminClient As(string? user, string? password) => new AdminClient(new Uri(Base).Host, new Uri(Base).Port, _http.Timeout) { User = user, Password = password };

    public async Task<(HttpStatusCode Status, JsonNode? Json, HttpResponseMessage Response)> SendAsync(HttpMethod method, string path, string? json = null, Action<HttpRequestMessage>? tweak = null)
    {
        // The path exactly as given (no ../ folding), as a hostile client would send it.
        var uri = new Uri(Base + path, new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true });
        using var req = new HttpRequestMessage(method, uri);
        if (User is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{User}:{Password}")));
        if (Cookie is not null) req.Headers.Add("Cookie", Cookie);
        if (Csrf is not null) req.Headers.Add("X-CSRF-Token", Csrf);
        if (json is not null) req.Content = new StringContent(json, Encoding.UTF8, "application/json");
        tweak?.Invoke(req);
        var resp = await _http.SendAsync(req);
        var text = await resp.Content.ReadAsStringAsync();
        JsonNode? node = null;
        if (resp.Content.Headers.ContentType?.MediaType == "application/json") node = JsonNode.Parse(text);
        return (resp.StatusCode, node, resp);
    }

    public Task<(HttpStatusCode Status, JsonNode? Json, HttpResponseMessage Response)> GetAsync(string path) => SendAsync(HttpMethod.Get, path);
    public Task<(HttpStatusCode Status, JsonNode? Json, HttpResponseMessage Response)> PostAsync(string path, string? json = null) => SendAsync(HttpMethod.Post, path, json);
    public Task<(HttpStatusCode Status, JsonNode? Json, HttpResponseMessage Response)> PutAsync(string path, string? json = null) => SendAsync(HttpMethod.Put, path, json);
    public Task<(HttpStatusCode Status, JsonNode? Json, HttpResponseMessage Response)> DeleteAsync(string path) => SendAsync(HttpMethod.Delete, path);

    public async Task<byte[]> BytesAsync(string path, RangeHeaderValue? range = null)
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, Base + path);
        req.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{User}:{Password}")));
        req.Headers.Range = range;
        var resp = await _http.SendAsync(req);
        var want = range is null ? HttpStatusCode.OK : HttpStatusCode.PartialContent;
        if (resp.StatusCode != want) throw new InvalidOperationException($"GET {path}: {(int)resp.StatusCode}, not {(int)want}");
        return await resp.Content.ReadAsByteArrayAsync();
    }

    public void Dispose() => _http.Dispose();
}

