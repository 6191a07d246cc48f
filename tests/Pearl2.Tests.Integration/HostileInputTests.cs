using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// A running pearl2d attacked from loopback as a hostile LAN host would (127.0.0.2 and 127.0.0.3 are other hosts to
/// the device): captured Digest answers played again, passwords guessed in a loop. Each attack is bounded in count
/// and time; what is asserted is what the attacker and an honest viewer saw on the wire.
/// </summary>
[Collection(Quiet.Name)]
public sealed partial class HostileInputTests(ITestOutputHelper output) : IAsyncLifetime
{
    const string Password = "Pa55-word";
    Pearl2dProcess _device = null!;
    int _http;

    public async Task InitializeAsync()
    {
        _http = Peers.FreePortBase(1);
        _device = await Pearl2dProcess.StartAsync($$"""
            { "channels": [ { "name": "Guarded", "video": { "width": 320, "height": 240, "bitrateKbps": 300 }, "auth": { "username": "viewer", "password": "{{Password}}" } } ],
              "http": { "port": {{_http}} } }
            """, channels: 1);
    }

    public async Task DisposeAsync() => await _device.DisposeAsync();

    static string Md5(string s) => Convert.ToHexStringLower(MD5.HashData(Encoding.UTF8.GetBytes(s)));

    [GeneratedRegex("nonce=\"([0-9a-f]+)\"")] private static partial Regex NonceRegex();

    /// <summary>The Authorization an RFC 2069 client (no qop, as RTSP players send it) or an RFC 7616 one (qop=auth, nc) makes.</summary>
    static string Digest(string method, string uri, string nonce, string password, string? nc = null, string digestUri = "")
    {
        if (digestUri == "") digestUri = uri;
        string ha1 = Md5($"viewer:Pearl2:{password}"), ha2 = Md5($"{method}:{digestUri}");
        return nc is null
            ? $"Authorization: Digest username=\"viewer\", realm=\"Pearl2\", nonce=\"{nonce}\", uri=\"{digestUri}\", response=\"{Md5($"{ha1}:{nonce}:{ha2}")}\""
            : $"Authorization: Digest username=\"viewer\", realm=\"Pearl2\", nonce=\"{nonce}\", uri=\"{digestUri}\", qop=auth, nc={nc}, cnonce=\"abc123\", response=\"{Md5($"{ha1}:{nonce}:{nc}:abc123:auth:{ha2}")}\"";
    }

    static async Task<string> NonceAsync(RtspTestClient c, string url)
    {
        var challenge = await c.RequestAsync("DESCRIBE", url);
        Assert.Equal(401, RtspTestClient.Status(challenge));
        Assert.Contains("qop=\"auth\"", challenge);
        return NonceRegex().Match(challenge).Groups[1].Value;
    }

    static byte[] Post(string cookie, string body) =>
        Encoding.ASCII.GetBytes($"POST /stream.sdp HTTP/1.0\r\nx-sessioncookie: {cookie}\r\nContent-Type: application/x-rtsp-tunnelled\r\nContent-Length: 32767\r\n\r\n{body}");

    static async Task<RtspTestClient> TunnelGetAsync(int port, string cookie, IPAddress from)
    {
        var get = await RtspTestClient.ConnectAsync("127.0.0.1", port, from);
        await get.SendRawAsync(Encoding.ASCII.GetBytes($"GET /stream.sdp HTTP/1.0\r\nx-sessioncookie: {cookie}\r\nAccept: application/x-rtsp-tunnelled\r\n\r\n"));
        return get;
    }

    [Fact]
    public async Task ATunnelPostFromAnotherHostIsRefusedAndItsGarbageCannotBreakTheTunnel()
    {
        string url = $"rtsp://127.0.0.1:{_device.RtspBase}/stream.sdp";
        string Options(int cseq) => Convert.ToBase64String(Encoding.ASCII.GetBytes($"OPTIONS {url} RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n"));
        var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20)).Token;
        await using var get = await TunnelGetAsync(_device.RtspBase, "victim-cookie-7", IPAddress.Parse("127.0.0.2"));
        Assert.StartsWith("HTTP/1.0 200", await get.ReadResponseAsync(timeout));

        // Another host that learnt the cookie: told 404, as for a cookie that does not exist, and nothing reaches the GET.
        foreach (var body in new[] { Options(1), "!!!! not base64 at all ~~~~" })
        {
            await using var attacker = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase, IPAddress.Parse("127.0.0.3"));
            await attacker.SendRawAsync(Post("victim-cookie-7", body));
            Assert.StartsWith("HTTP/1.0 404", await attacker.ReadResponseAsync(timeout));
        }
        // The victim's own POST still works, and the first answer on its GET is for its own request.
        await using var post = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase, IPAddress.Parse("127.0.0.2"));
        await post.SendRawAsync(Post("victim-cookie-7", Options(5)));
        var answer = await get.ReadResponseAsync(timeout);
        output.WriteLine(answer);
        Assert.StartsWith("RTSP/1.0 200", answer);
        Assert.Equal("5", RtspTestClient.Header(answer, "CSeq"));
        Assert.Contains("reason=\"POST from another host than the tunnel's GET\"", _device.Log);
    }

    [Fact]
    public async Task OneHostFillingTheTunnelTableLocksOutOnlyItself()
    {
        var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;
        var mine = new List<RtspTestClient>();
        try
        {
            int ok = 0, busy = 0;
            for (int i = 0; i < 24; i++)
            {
                var c = await TunnelGetAsync(_device.RtspBase, $"flood-{i}", IPAddress.Parse("127.0.0.4"));
                mine.Add(c);
                var r = await c.ReadResponseAsync(timeout);
                if (r.StartsWith("HTTP/1.0 200")) ok++;
                else if (r.StartsWith("HTTP/1.0 503")) busy++;
            }
            output.WriteLine($"one host: {ok} tunnels, {busy} refused");
            Assert.Equal(16, ok);
            Assert.Equal(8, busy);
            // Another host still gets its tunnel on the same channel.
            await using var other = await TunnelGetAsync(_device.RtspBase, "honest-1", IPAddress.Parse("127.0.0.5"));
            Assert.StartsWith("HTTP/1.0 200", await other.ReadResponseAsync(timeout));
        }
        finally { foreach (var c in mine) await c.DisposeAsync(); }
    }

    [Fact]
    public async Task ACapturedDigestAnswerOpensNothingOnAnotherConnection()
    {
        string url = _device.Url();
        await using var victim = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase);
        var nonce = await NonceAsync(victim, url);
        // The victim's player logs in without qop (as RTSP players do) and again with qop: both work on its connection.
        var plain = Digest("DESCRIBE", url, nonce, Password);
        Assert.Equal(200, RtspTestClient.Status(await victim.RequestAsync("DESCRIBE", url, plain)));
        Assert.Equal(200, RtspTestClient.Status(await victim.RequestAsync("DESCRIBE", url, plain)));
        var counted = Digest("DESCRIBE", url, await NonceAsync(victim, url), Password, nc: "00000001");
        Assert.Equal(200, RtspTestClient.Status(await victim.RequestAsync("DESCRIBE", url, counted)));

        // The attacker replays both captured headers from another host, on new connections: told the nonce is stale.
        foreach (var header in new[] { plain, counted })
        {
            await using var attacker = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase, IPAddress.Parse("127.0.0.2"));
            var replay = await attacker.RequestAsync("DESCRIBE", url, header);
            output.WriteLine(replay);
            Assert.Equal(401, RtspTestClient.Status(replay));
            Assert.Contains("stale=true", replay);
            Assert.DoesNotContain("v=0", replay);
        }
        // An answer made for another URL does not open this one.
        await using var other = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase, IPAddress.Parse("127.0.0.2"));
        var n = await NonceAsync(other, url);
        var wrongUri = await other.RequestAsync("DESCRIBE", url, Digest("DESCRIBE", url, n, Password, digestUri: url.Replace("/stream.sdp", "/other")));
        Assert.Equal(401, RtspTestClient.Status(wrongUri));
        Assert.DoesNotContain("stale=true", wrongUri);
        await _device.WaitForLogAsync("reason=\"uri does not match the request\"", TimeSpan.FromSeconds(10));
        // The victim's connection carries on.
        Assert.Equal(200, RtspTestClient.Status(await victim.RequestAsync("DESCRIBE", url, plain)));
    }

    [Fact]
    public async Task GuessingPasswordsOnOneConnectionIsSlowedThenCutOffAndLoggedOnce()
    {
        string url = _device.Url();
        var guesser = IPAddress.Parse("127.0.0.3");
        await using var c = await RtspTestClient.ConnectAsync("127.0.0.1", _device.RtspBase, guesser);
        int guesses = 0;
        string last = "";
        var started = DateTime.UtcNow;
        while (guesses < 100)
        {
            var nonce = NonceRegex().Match(last).Groups[1].Value;
            if (nonce == "") nonce = await NonceAsync(c, url);
            try { last = await c.RequestAsync("DESCRIBE", url, Digest("DESCRIBE", url, nonce, $"guess-{guesses}")); }
            catch (Exception e) when (e is IOException or InvalidOperationException) { last = "closed"; break; }
            guesses++;
            if (RtspTestClient.Status(last) != 401) break;
        }
        var took = DateTime.UtcNow - started;
        output.WriteLine($"{guesses} guesses in {took.TotalSeconds:F1} s; last answer:\n{last}");
        // Blocked after a handful of guesses (not thousands a second): 503 with Retry-After, then the connection ends.
        Assert.Equal(503, RtspTestClient.Status(last));
        Assert.True(int.Parse(RtspTestClient.Header(last, "Retry-After")!) > 0);
        Assert.InRange(guesses, 5, 12);
        await Assert.ThrowsAnyAsync<IOException>(() => c.RequestAsync("OPTIONS", url)); // closed by the server

        // The block covers every door from that host, the right password included: HTTP says 429.
        var curl = await Peers.RunAsync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.3", "--digest", "-u", $"viewer:{Password}",
            "--max-time", "10", $"http://127.0.0.1:{_http}/preview.jpg"], TimeSpan.FromSeconds(30));
        Assert.Equal("429", curl.Stdout.Trim());
        // Another host still plays, over RTSP and HTTP.
        var probe = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
            $"rtsp://viewer:{Password}@127.0.0.1:{_device.RtspBase}/stream.sdp"], TimeSpan.FromSeconds(60));
        Assert.Contains("h264", probe.Stdout);
        var honest = await Peers.RunAsync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.2", "--digest", "-u", $"viewer:{Password}",
            "--max-time", "10", $"http://127.0.0.1:{_http}/preview.jpg"], TimeSpan.FromSeconds(30));
        Assert.Equal("200", honest.Stdout.Trim());
        // One line for the block, not one per refused request; each judged guess logged once.
        await _device.WaitForLogAsync("auth.blocked remote=127.0.0.3", TimeSpan.FromSeconds(10));
        await Task.Delay(500);
        Assert.Equal(1, _device.CountInLog("auth.blocked remote=127.0.0.3"));
        Assert.InRange(_device.CountInLog("rtsp.auth_failed"), guesses - 1, guesses);
    }

    [Fact]
    public async Task ANullLoginOrADirectoryIsRefusedByFieldAndReloadsSayWhatWaitsForARestart()
    {
        string good = File.ReadAllText(_device.ConfigPath);
        var json = System.Text.Json.Nodes.JsonNode.Parse(good)!;
        json["channels"]![0]!["auth"]!["username"] = null;
        var nullUser = json.ToJsonString();
        json["channels"]![0]!["auth"]!["username"] = "viewer";
        json["recording"] = System.Text.Json.Nodes.JsonNode.Parse("""{ "format": "ts", "minFreeMegabytes": 200 }""");
        var newRecording = json.ToJsonString();
        var file = Path.Combine(Path.GetDirectoryName(_device.ConfigPath)!, "null-user.json");
        File.WriteAllText(file, nullUser);
        foreach (var path in new[] { file, Path.GetDirectoryName(_device.ConfigPath)! })
        {
            var check = await Peers.RunAsync(Peers.Pearl2d, ["--check-config", "--config", path], TimeSpan.FromSeconds(30));
            output.WriteLine(check.Stderr);
            Assert.Equal(2, check.ExitCode);
            Assert.Contains("pearl2d: config refused: ", check.Stderr);
            Assert.DoesNotContain("Exception", check.Stderr);
        }

        // The same file given to the running device: refused whole, by field, and the device carries on.
        File.WriteAllText(_device.ConfigPath, nullUser);
        _device.Signal(1);
        await _device.WaitForLogAsync("config.reload_refused error=\"channels[0].auth.username: must be text (in quotes), not null\"", TimeSpan.FromSeconds(20));
        Assert.Contains("state=ready", await _device.ControlAsync("status"));

        // Recording settings are read at start: a reload that changes them says so instead of claiming them applied.
        File.WriteAllText(_device.ConfigPath, newRecording);
        _device.Signal(1);
        await _device.WaitForLogAsync("config.needs_restart field=recording.format running=mp4 new=ts", TimeSpan.FromSeconds(20));
        await _device.WaitForLogAsync("config.needs_restart field=recording.minFreeMegabytes", TimeSpan.FromSeconds(5));
        Assert.False(_device.HasExited);
    }

    [Fact]
    public async Task RunningOutOfFileDescriptorsNeitherKillsTheControlSocketNorAPlayingViewer()
    {
        var viewer = Peers.RunAsync("ffmpeg", ["-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", $"rtsp://viewer:{Password}@127.0.0.1:{_device.RtspBase}/stream.sdp",
            "-t", "14", "-f", "null", "-"], TimeSpan.FromSeconds(90));
        await _device.WaitForLogAsync("rtsp.play", TimeSpan.FromSeconds(30));
        int linesBefore = _device.Log.Split('\n').Length;

        // Lower the device's descriptor limit to a little above what it uses, then fill the rest with connections.
        int inUse = Directory.GetFiles($"/proc/{_device.Pid}/fd").Length;
        var limit = await Peers.RunAsync("prlimit", ["--pid", _device.Pid.ToString(), $"--nofile={inUse + 40}:{inUse + 40}"], TimeSpan.FromSeconds(10));
        Assert.Equal(0, limit.ExitCode);
        var flood = new List<System.Net.Sockets.TcpClient>();
        using var stopKeepAlive = new CancellationTokenSource();
        Task? keepAlive = null;
        try
        {
            // RTSP connections that send OPTIONS every two seconds: the device keeps every one it accepted (none is idle, so
            // none is closed to free its descriptor), and the rest wait in the listen queue. Descriptors stay used up
            // for as long as the test wants, not until the next idle close frees a few and the backlog takes them again.
            for (int i = 0; i < 200; i++)
            {
                var t = new System.Net.Sockets.TcpClient();
                await t.ConnectAsync("127.0.0.1", _device.RtspBase);
                flood.Add(t);
            }
            keepAlive = Task.Run(async () =>
            {
                var options = Encoding.ASCII.GetBytes($"OPTIONS rtsp://127.0.0.1:{_device.RtspBase}/stream.sdp RTSP/1.0\r\nCSeq: 1\r\n\r\n");
                while (!stopKeepAlive.IsCancellationRequested)
                {
                    foreach (var t in flood)
                        try { t.Client.Send(options); } catch (System.Net.Sockets.SocketException) { }
                    try { await Task.Delay(2000, stopKeepAlive.Token); } catch (OperationCanceledException) { }
                }
            });
            await _device.WaitForLogAsync("Too many open files", TimeSpan.FromSeconds(20));
            // While out of descriptors the control client answers within its time limit, never hangs.
            var during = await Peers.RunAsync(Peers.Pearl2d, ["status", "--data-dir", _device.DataDir], TimeSpan.FromSeconds(40));
            output.WriteLine($"status while out of descriptors: exit {during.ExitCode} {during.Stderr.Trim()}");
            Assert.Equal(1, during.ExitCode);
            Assert.Contains("no answer from the running pearl2d", during.Stderr);
            await _device.WaitForLogAsync("accept.failing listener=control", TimeSpan.FromSeconds(10));
        }
        finally
        {
            stopKeepAlive.Cancel();
            if (keepAlive is not null) await keepAlive;
            foreach (var t in flood) t.Dispose();
            await Peers.RunAsync("prlimit", ["--pid", _device.Pid.ToString(), "--nofile=65536:65536"], TimeSpan.FromSeconds(10));
        }
        // Descriptors back: the control socket and the ports accept again.
        string status = "";
        for (int i = 0; i < 50 && !status.Contains("state=ready"); i++)
        {
            var r = await Peers.RunAsync(Peers.Pearl2d, ["status", "--data-dir", _device.DataDir], TimeSpan.FromSeconds(30));
            status = r.Stdout;
            if (!status.Contains("state=ready")) await Task.Delay(200);
        }
        Assert.Contains("state=ready", status);
        var probe = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
            $"rtsp://viewer:{Password}@127.0.0.1:{_device.RtspBase}/stream.sdp"], TimeSpan.FromSeconds(60));
        Assert.Contains("h264", probe.Stdout);

        // The viewer that was playing decoded cleanly through it all.
        var played = await viewer;
        output.WriteLine($"viewer: exit {played.ExitCode} {played.Stderr.Trim()}");
        Assert.Equal(0, played.ExitCode);
        Assert.Equal("", played.Stderr.Trim());
        // A bounded log: a line when accepting starts failing and one when it recovers per listener, not one per try.
        int added = _device.Log.Split('\n').Length - linesBefore;
        output.WriteLine($"log lines during the episode: {added}");
        foreach (var line in _device.Log.Split('\n').Where(l => l.Contains("accept."))) output.WriteLine(line);
        Assert.InRange(_device.CountInLog("accept.failing"), 1, 6);
        await _device.WaitForLogAsync("accept.recovered listener=control", TimeSpan.FromSeconds(10));
        Assert.True(added < 600, $"{added} log lines");
    }
}
