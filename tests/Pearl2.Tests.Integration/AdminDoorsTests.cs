using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// The admin panel is a door to the channels' pictures too (the preview), so the channel's own switches hold there:
/// without a panel login nothing; a panel viewer sees an open channel, not a private one (streaming off) unless on the
/// device itself, and never one with its own viewer login; operators and admins see all. From another host (a second
/// network namespace) and from loopback, with and without credentials.
/// </summary>
public sealed class AdminDoorsTests(ITestOutputHelper output)
{
    static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task PreviewsThroughTheAdminApiFollowTheChannelsStreamingSwitchAndLogin()
    {
        await using var net = await NetworkPair.CreateAsync();
        var (device, _, _) = await AdminApiTests.StartAsync("""
            [ { "name": "Open", "video": { "width": 320, "height": 240, "bitrateKbps": 300 } },
              { "name": "Private", "streaming": false, "video": { "width": 320, "height": 240, "bitrateKbps": 300 } },
              { "name": "Guarded", "video": { "width": 320, "height": 240, "bitrateKbps": 300 }, "auth": { "username": "v", "password": "channel-pw" } } ]
            """, net.Device);
        await using var _d = device;
        int port = JsonNode.Parse(File.ReadAllText(device.ConfigPath))!["admin"]!["port"]!.GetValue<int>();

        async Task<int> Curl(string ns, string host, string path, string? user, string method = "GET", string? body = null)
        {
            var args = new List<string> { "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "-X", method };
            if (user is not null) args.AddRange(["-u", user]);
            if (body is not null) args.AddRange(["-H", "Content-Type: application/json", "-d", body]);
            args.Add($"http://{host}:{port}{path}");
            var r = await NetworkPair.RunInAsync(ns, "curl", args, PeerTimeout);
            return int.Parse(r.Stdout.Trim());
        }
        Assert.Equal(200, await Curl(net.Device, "127.0.0.1", "/api/v2.0/x-pearl2/setup", null, "POST", $$"""{ "password": "{{AdminApiTests.AdminPassword}}" }"""));
        string admin = $"admin:{AdminApiTests.AdminPassword}";
        Assert.Equal(200, await Curl(net.Device, "127.0.0.1", "/api/v2.0/x-pearl2/users/watch", admin, "PUT", """{ "role": "viewer", "password": "viewer pw 2" }"""));
        Assert.Equal(200, await Curl(net.Device, "127.0.0.1", "/api/v2.0/x-pearl2/users/op", admin, "PUT", """{ "role": "operator", "password": "operator pw" }"""));

        var seen = new List<string>();
        foreach (var (ns, host, where) in new[] { (net.External, NetworkPair.DeviceAddress, "other host"), (net.Device, "127.0.0.1", "loopback") })
        {
            foreach (var (user, who) in new (string?, string)[] { (null, "nobody"), ("watch:viewer pw 2", "viewer"), ("op:operator pw", "operator"), ("v:channel-pw", "channel login") })
            {
                var codes = new List<int>();
                for (int ch = 1; ch <= 3; ch++) codes.Add(await Curl(ns, host, $"/api/v2.0/channels/{ch}/preview?resolution=160", user));
                seen.Add($"{where} {who}: {string.Join(' ', codes)}");
            }
        }
        output.WriteLine(string.Join("\n", seen));
        Assert.Equal([
            "other host nobody: 401 401 401",
            "other host viewer: 200 403 403",      // private and guarded channels stay closed to a panel viewer
            "other host operator: 200 200 200",
            "other host channel login: 401 401 401",   // a channel's viewer login is not a panel user
            "loopback nobody: 401 401 401",
            "loopback viewer: 200 200 403",        // the device itself sees a private channel, as on the stream ports
            "loopback operator: 200 200 200",
            "loopback channel login: 401 401 401",
        ], seen);
        // The panel's page itself is open (it shows the login form), the API behind it is not.
        Assert.Equal(200, await Curl(net.External, NetworkPair.DeviceAddress, "/", null));
        Assert.Equal(401, await Curl(net.External, NetworkPair.DeviceAddress, "/api/v2.0/x-pearl2/status", null));
    }
}
