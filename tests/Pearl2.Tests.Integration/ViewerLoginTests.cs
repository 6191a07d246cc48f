using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// Every door to a channel's pictures asks for the same viewer login: RTSP over TCP, UDP and the HTTP tunnel,
/// HTTP FLV, TS and the preview (Digest as ffmpeg and curl send it, Basic where allowed), the channel page and its
/// view tokens. Each door with and without the login, from the device itself and from another host (a second
/// network namespace).
/// </summary>
public sealed class ViewerLoginTests(ITestOutputHelper output) : IAsyncLifetime
{
    const string Password = "Pa55-word";
    NetworkPair _net = null!;
    Pearl2dProcess _device = null!;
    int _http;

    public async Task InitializeAsync()
    {
        _net = await NetworkPair.CreateAsync();
        _http = Peers.FreePortBase(2);
        _device = await Pearl2dProcess.StartInAsync(_net.Device, $$"""
            { "channels": [
                { "name": "Digest only", "video": { "width": 320, "height": 240, "bitrateKbps": 400 }, "auth": { "username": "viewer", "password": "{{Password}}" } },
                { "name": "Basic too", "video": { "width": 320, "height": 240, "bitrateKbps": 400 }, "auth": { "username": "viewer", "password": "{{Password}}", "allowBasic": true } } ],
              "rtsp": { "port": 554 }, "http": { "port": {{_http}} } }
            """, channels: 2);
    }

    public async Task DisposeAsync()
    {
        await _device.DisposeAsync();
        await _net.DisposeAsync();
    }

    static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(60);

    static int Frames(ProcessResult r) => r.ExitCode == 0
        ? JsonDocument.Parse(r.Stdout).RootElement.GetProperty("streams").EnumerateArray().Select(s => int.Parse(s.GetProperty("nb_read_frames").GetString()!)).DefaultIfEmpty(0).Max() : 0;

    Task<ProcessResult> Probe(string ns, string url, params string[] extra) => NetworkPair.RunInAsync(ns, "ffprobe", ["-v", "error", .. extra,
        "-count_frames", "-read_intervals", "%+2", "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-of", "json", url], PeerTimeout);

    Task<ProcessResult> Curl(string ns, string url, params string[] extra) =>
        NetworkPair.RunInAsync(ns, "curl", ["-s", "-o", "/dev/stdout", "-w", "\n%{http_code}", "--max-time", "20", .. extra, url], PeerTimeout);

    static int Status(ProcessResult curl) => int.Parse(curl.Stdout.TrimEnd()[^3..]);

    [Fact]
    public async Task EveryDoorAsksForTheLoginFromLoopbackAndFromAnotherHost()
    {
        foreach (var (ns, host) in new[] { (_net.Device, "127.0.0.1"), (_net.External, NetworkPair.DeviceAddress) })
        {
            string rtsp = $"rtsp://{host}:{_device.RtspBase}/stream.sdp", login = $"rtsp://viewer:{Password}@{host}:{_device.RtspBase}/stream.sdp";
            string http = $"http://{host}:{_http}", httpLogin = $"http://viewer:{Password}@{host}:{_http}";
            int udpMin = Peers.FreeUdpPortBase(20);
            // The doors with the login and without, all at once (each is its own player).
            var withLogin = new Dictionary<string, Task<ProcessResult>>
            {
                ["rtsp tcp"] = Probe(ns, login, "-rtsp_transport", "tcp"),
                ["rtsp udp"] = Probe(ns, login, "-rtsp_transport", "udp", "-min_port", udpMin.ToString(), "-max_port", (udpMin + 9).ToString()),
                ["rtsp http"] = Probe(ns, login, "-rtsp_transport", "http"),
                ["flv"] = Probe(ns, httpLogin + "/stream.flv"),
                ["ts"] = Probe(ns, httpLogin + "/stream.ts"),
            };
            var withoutLogin = new Dictionary<string, Task<ProcessResult>>
            {
                ["rtsp tcp"] = Probe(ns, rtsp, "-rtsp_transport", "tcp"),
                ["rtsp udp"] = Probe(ns, rtsp, "-rtsp_transport", "udp", "-min_port", (udpMin + 10).ToString(), "-max_port", (udpMin + 19).ToString()),
                ["rtsp http"] = Probe(ns, rtsp, "-rtsp_transport", "http"),
                ["flv"] = Probe(ns, http + "/stream.flv"),
                ["ts"] = Probe(ns, http + "/stream.ts"),
                ["wrong password"] = Probe(ns, $"http://viewer:wrong-one@{host}:{_http}/stream.ts"),
            };
            await Task.WhenAll(withLogin.Values.Concat(withoutLogin.Values));
            foreach (var (door, r) in withLogin)
            {
                output.WriteLine($"{host} {door} with the login: exit {r.Result.ExitCode} {r.Result.Stderr.Trim()}");
                Assert.True(Frames(r.Result) >= 30, $"{door} from {host} with the login: {r.Result.Stderr}");
            }
            foreach (var (door, r) in withoutLogin)
            {
                output.WriteLine($"{host} {door} without the login: exit {r.Result.ExitCode} {r.Result.Stderr.Trim()}");
                Assert.NotEqual(0, r.Result.ExitCode);
                Assert.Equal(0, Frames(r.Result));
                if (door != "rtsp http") Assert.Contains("401", r.Result.Stderr); // ffmpeg names a tunnel's refusal only as an I/O error
            }

            // The preview and the page: curl without, with Digest, with Basic (refused where Basic is not allowed).
            Assert.Equal(401, Status(await Curl(ns, http + "/preview.jpg")));
            var jpeg = await NetworkPair.RunInAsync(ns, "curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{content_type} %{size_download}", "--max-time", "20",
                "--digest", "-u", $"viewer:{Password}", http + "/preview.jpg?width=160"], PeerTimeout);
            Assert.Matches(@"^200 image/jpeg [1-9]\d{2,}$", jpeg.Stdout);
            Assert.Equal(401, Status(await Curl(ns, http + "/preview.jpg", "--basic", "-u", $"viewer:{Password}")));
            Assert.Equal(200, Status(await Curl(ns, $"http://{host}:{_http + 1}/preview.jpg", "--basic", "-u", $"viewer:{Password}")));
            Assert.Equal(401, Status(await Curl(ns, $"http://{host}:{_http + 1}/preview.jpg", "--basic", "-u", "viewer:wrong-one")));
            Assert.Equal(401, Status(await Curl(ns, http + "/")));
            var page = await Curl(ns, http + "/", "--digest", "-u", $"viewer:{Password}");
            Assert.Equal(200, Status(page));
            Assert.Contains("<h1>Digest only</h1>", page.Stdout);

            // View tokens: /token wants the login; its token plays the streams, on its own channel only; forged ones are refused.
            Assert.Equal(401, Status(await Curl(ns, http + "/token")));
            var issued = await Curl(ns, http + "/token", "--digest", "-u", $"viewer:{Password}");
            Assert.Equal(200, Status(issued));
            var json = JsonDocument.Parse(issued.Stdout[..issued.Stdout.LastIndexOf('\n')]).RootElement;
            string token = json.GetProperty("token").GetString()!;
            Assert.Equal(120, json.GetProperty("expiresInSeconds").GetInt32());
            Assert.True(Frames(await Probe(ns, http + json.GetProperty("ts").GetString()!)) >= 30, "a view token must play the TS stream");
            Assert.True(Frames(await Probe(ns, $"{http}/stream.flv?token={token}")) >= 30, "a view token must play the FLV stream");
            Assert.Equal(200, Status(await Curl(ns, $"{http}/preview.jpg?token={token}")));
            Assert.Equal(401, Status(await Curl(ns, $"http://{host}:{_http + 1}/stream.ts?token={token}")));
            var forged = token[..47] + (token[47] == 'a' ? 'b' : 'a');
            Assert.Equal(401, Status(await Curl(ns, $"{http}/stream.ts?token={forged}")));
            Assert.Equal(401, Status(await Curl(ns, $"{http}/?token={token}"))); // a token opens streams, not the page
        }
        Assert.Contains("http.auth_failed channel=1 remote=192.0.2.2", _device.Log);
        Assert.Contains("reason=\"token not issued for this channel and login\"", _device.Log);
        Assert.DoesNotContain(Password, _device.Log);
        // A player's first request without a login gets the challenge: the normal start of a session, not a warning.
        Assert.DoesNotContain(_device.Log.Split('\n'), l => l.Contains("warn:") && l.Contains("status=401") && !l.Contains("auth_failed"));
        Assert.DoesNotContain("[0]", _device.Log); // one line per event, without .NET's event ids
        Assert.DoesNotContain("wrong-one", _device.Log);
    }
}
