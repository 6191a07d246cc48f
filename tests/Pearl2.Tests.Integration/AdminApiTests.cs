using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// The admin API as Pearl control tools and the panel meet it: first-run setup, roles, Basic and sessions with CSRF,
/// the limits (401, 403, 413, 429, 404 for paths out of the recordings), every Pearl path checked against Epiphan's
/// reference OpenAPI by an independent validator, recordings through the API, HTTPS with the device's certificate.
/// </summary>
public sealed class AdminApiTests(ITestOutputHelper output)
{
    public const string AdminPassword = "first admin pw";
    const string Api = "/api/v2.0";

    internal static async Task<(Pearl2dProcess Device, AdminClient Admin, int HttpsPort)> StartAsync(string? channels = null, string? netns = null)
    {
        channels ??= """
            [ { "name": "Hall", "video": { "width": 320, "height": 240, "bitrateKbps": 400 } },
              { "name": "Stage", "video": { "width": 640, "height": 360, "bitrateKbps": 600 } } ]
            """;
        var device = await Pearl2dProcess.StartInAsync(netns, $$"""{ "channels": {{channels}}, "rtsp": { "port": 554 } }""", channels: 2);
        var admin = JsonNode.Parse(File.ReadAllText(device.ConfigPath))!["admin"]!;
        return (device, new AdminClient("127.0.0.1", admin["port"]!.GetValue<int>()), admin["httpsPort"]!.GetValue<int>());
    }

    internal static async Task SetupAsync(AdminClient anon)
    {
        var setup = await anon.PostAsync($"{Api}/x-pearl2/setup", $$"""{ "username": "admin", "password": "{{AdminPassword}}" }""");
        Assert.Equal(HttpStatusCode.OK, setup.Status);
    }

    static string Ok(JsonNode? j) => j?["status"]?.GetValue<string>() ?? "(no JSON)";

    [Fact]
    public async Task FirstRunSetupThenRolesSessionsCsrfAndLimits()
    {
        var (device, anon, _) = await StartAsync();
        await using var _d = device;
        using var _a = anon;

        // Before setup: nobody is let in, and the answer says why.
        var before = await anon.GetAsync($"{Api}/system/status");
        Assert.Equal(HttpStatusCode.Unauthorized, before.Status);
        Assert.Contains("Basic realm=", before.Response.Headers.WwwAuthenticate.ToString());
        Assert.Contains("setup pending", before.Json!["message"]!.GetValue<string>());
        Assert.True((await anon.GetAsync($"{Api}/x-pearl2/setup")).Json!["result"]!["pending"]!.GetValue<bool>());
        // The status display says so (it is redrawn about once a second).
        string display = "";
        for (int i = 0; i < 50 && !display.Contains("display: SETUP: OPEN IP IN WEB"); i++) { await Task.Delay(100); display = await device.ControlAsync("status"); }
        Assert.Contains("display: SETUP: OPEN IP IN WEB", display);

        // Setup refuses a short password, takes a good one once, then is closed.
        var weak = await anon.PostAsync($"{Api}/x-pearl2/setup", """{ "password": "short" }""");
        Assert.Equal(HttpStatusCode.BadRequest, weak.Status);
        Assert.Equal("password: must be at least 8 characters", weak.Json!["message"]!.GetValue<string>());
        await SetupAsync(anon);
        Assert.Equal(HttpStatusCode.Conflict, (await anon.PostAsync($"{Api}/x-pearl2/setup", """{ "password": "another password" }""")).Status);
        var users = JsonNode.Parse(File.ReadAllText(Path.Combine(device.DataDir, "users.json")))!["users"]!.AsArray();
        Assert.Single(users);
        Assert.Equal(600000, users[0]!["iterations"]!.GetValue<int>());
        Assert.DoesNotContain(AdminPassword, File.ReadAllText(Path.Combine(device.DataDir, "users.json")));
        if (OperatingSystem.IsLinux()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(device.DataDir, "users.json")));

        // Basic as Pearl clients send it.
        using var admin = anon.As("admin", AdminPassword);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync($"{Api}/system/firmware")).Status);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync("/api/system/firmware")).Status);   // the older prefix
        Assert.Equal(HttpStatusCode.Unauthorized, (await anon.As("admin", "not the password").GetAsync($"{Api}/system/firmware")).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anon.GetAsync($"{Api}/channels")).Status);
        // A stale login that a browser keeps sending does not lock anyone out of the page with the login form.
        Assert.Equal(HttpStatusCode.OK, (await anon.As("admin", "an old password").GetAsync("/")).Status);

        // Roles: an operator records but changes no settings, users or firmware; a viewer only looks.
        Assert.Equal(HttpStatusCode.OK, (await admin.PutAsync($"{Api}/x-pearl2/users/op", """{ "role": "operator", "password": "operator pw" }""")).Status);
        Assert.Equal(HttpStatusCode.OK, (await admin.PutAsync($"{Api}/x-pearl2/users/watcher", """{ "role": "viewer", "password": "viewer pw 1" }""")).Status);
        using var op = anon.As("op", "operator pw");
        using var viewer = anon.As("watcher", "viewer pw 1");
        foreach (var path in new[] { "/x-pearl2/config", "/x-pearl2/users", "/x-pearl2/firmware" })
        {
            var refused = await op.GetAsync(Api + path);
            Assert.Equal(HttpStatusCode.Forbidden, refused.Status);
            Assert.Equal("the admin role is needed (user op is operator)", refused.Json!["message"]!.GetValue<string>());
        }
        Assert.Equal(HttpStatusCode.Forbidden, (await op.PutAsync($"{Api}/channels/1/name?name=Mine")).Status);
        Assert.Equal(HttpStatusCode.OK, (await op.PostAsync($"{Api}/recorders/1/control/start")).Status);
        Assert.Equal(HttpStatusCode.OK, (await op.PostAsync($"{Api}/recorders/1/control/stop")).Status);
        Assert.Equal(HttpStatusCode.OK, (await viewer.GetAsync($"{Api}/channels/status")).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await viewer.PostAsync($"{Api}/recorders/1/control/start")).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await viewer.GetAsync($"{Api}/recorders/1/archive/files")).Status);
        Assert.Equal("image/jpeg", (await viewer.GetAsync($"{Api}/channels/1/preview")).Response.Content.Headers.ContentType?.MediaType);

        // A panel session: the cookie is HttpOnly and SameSite=Strict; a change without the session's CSRF token is refused.
        var login = await anon.PostAsync($"{Api}/x-pearl2/login", $$"""{ "username": "admin", "password": "{{AdminPassword}}" }""");
        Assert.Equal(HttpStatusCode.OK, login.Status);
        var setCookie = login.Response.Headers.GetValues("Set-Cookie").Single();
        output.WriteLine(setCookie);
        Assert.Contains("httponly", setCookie.ToLowerInvariant());
        Assert.Contains("samesite=strict", setCookie.ToLowerInvariant());
        using var panel = anon.As(null, null);
        panel.Cookie = setCookie.Split(';')[0];
        Assert.Equal(HttpStatusCode.OK, (await panel.GetAsync($"{Api}/x-pearl2/config")).Status);
        var noCsrf = await panel.PostAsync($"{Api}/x-pearl2/streaming/stop");
        Assert.Equal(HttpStatusCode.Forbidden, noCsrf.Status);
        Assert.Contains("X-CSRF-Token", noCsrf.Json!["message"]!.GetValue<string>());
        panel.Csrf = "0" + login.Json!["result"]!["csrf"]!.GetValue<string>()[1..];
        Assert.Equal(HttpStatusCode.Forbidden, (await panel.PostAsync($"{Api}/x-pearl2/streaming/stop")).Status);
        panel.Csrf = login.Json!["result"]!["csrf"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.OK, (await panel.PostAsync($"{Api}/x-pearl2/streaming/stop")).Status);
        Assert.Equal(HttpStatusCode.OK, (await panel.PostAsync($"{Api}/x-pearl2/streaming/start")).Status);
        // A change sent with remembered Basic credentials from another site's page is refused too.
        var crossSite = await admin.SendAsync(HttpMethod.Post, $"{Api}/x-pearl2/streaming/stop", tweak: r => r.Headers.Add("Origin", "http://evil.example"));
        Assert.Equal(HttpStatusCode.Forbidden, crossSite.Status);
        // Logging out ends the session.
        Assert.Equal(HttpStatusCode.OK, (await panel.PostAsync($"{Api}/x-pearl2/logout")).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await panel.GetAsync($"{Api}/x-pearl2/config")).Status);

        // A huge body is refused before it is read: a client that asks first (Expect: 100-continue, as curl does for
        // large bodies) gets the 413 instead of "100 Continue" and never sends it.
        var huge = await admin.SendAsync(HttpMethod.Put, $"{Api}/x-pearl2/config", new string(' ', 2 << 20), r => r.Headers.ExpectContinue = true);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, huge.Status);
        Assert.Equal("error", Ok(huge.Json));

        // File ids cannot leave the recordings: traversal in every spelling is a 404, and nothing outside is served.
        foreach (var id in new[] { "../pearl2d.lock", "..%2Fpearl2d.lock", "%2e%2e%2fusers.json", "..%2f..%2fusers.json", "/etc/passwd", "..", "%2E%2E" })
        {
            var r = await admin.GetAsync($"{Api}/recorders/1/archive/files/{id}");
            output.WriteLine($"{id}: {(int)r.Status}");
            Assert.Equal(HttpStatusCode.NotFound, r.Status);
            Assert.DoesNotContain("pbkdf2", r.Json?.ToJsonString() ?? "", StringComparison.OrdinalIgnoreCase);
        }

        // Names with markup come back as data, never as markup: the JSON escapes them and the panel sets them as text.
        var renamed = await admin.PutAsync($"{Api}/channels/2/name?name=" + Uri.EscapeDataString("<b>Stage</b>"));
        Assert.Equal(HttpStatusCode.OK, renamed.Status);
        Assert.Contains("\\u003Cb\\u003E", (await admin.SendAsync(HttpMethod.Get, $"{Api}/channels/2/name")).Response.Content.ReadAsStringAsync().Result);

        // Every login, failure and change is in the audit log on the data partition.
        var audit = File.ReadAllText(Path.Combine(device.DataDir, "audit.log"));
        foreach (var line in new[] { "audit.setup user=admin", "audit.user_changed user=op role=operator", "audit.login user=admin role=admin", "audit.login_failed user=\"admin\"",
                     "audit.record action=start recorders=1 user=op", "audit.streaming on=False user=admin", "audit.config_changed what=\"channel 2 name\"", "audit.logout user=admin" })
            Assert.Contains(line, audit);
        Assert.DoesNotContain(AdminPassword, audit);
        Assert.DoesNotContain(AdminPassword, device.Log);
    }

    [Fact]
    public async Task RepeatedFailedLoginsGet429EvenWithTheRightPasswordUntilTheBlockEnds()
    {
        var (device, anon, _) = await StartAsync();
        await using var _d = device;
        using var _a = anon;
        await SetupAsync(anon);
        var codes = new List<int>();
        for (int i = 0; i < 12; i++) codes.Add((int)(await anon.As("admin", $"guess {i}").GetAsync($"{Api}/system/status")).Status);
        output.WriteLine(string.Join(' ', codes));
        Assert.Equal(Enumerable.Repeat(401, 9), codes.Take(9));
        Assert.Equal(429, codes[^1]);
        var blocked = await anon.As("admin", AdminPassword).GetAsync($"{Api}/system/status");
        Assert.Equal(HttpStatusCode.TooManyRequests, blocked.Status);
        Assert.True(blocked.Response.Headers.RetryAfter?.Delta > TimeSpan.Zero, "a 429 says when to try again");
        // The panel's login form is held off the same way.
        Assert.Equal(HttpStatusCode.TooManyRequests, (await anon.PostAsync($"{Api}/x-pearl2/login", $$"""{ "username": "admin", "password": "{{AdminPassword}}" }""")).Status);
        Assert.Equal(1, device.CountInLog("auth.blocked"));
    }

    [Fact]
    public async Task EveryPearlPathAnswersAsTheReferenceSaysAndOurOwnDocumentIsValidOpenApi()
    {
        var (device, anon, _) = await StartAsync();
        await using var _d = device;
        await SetupAsync(anon);
        using var admin = anon.As("admin", AdminPassword);
        // A recording, so that the archive has a file to describe.
        Assert.Equal(HttpStatusCode.OK, (await admin.PostAsync($"{Api}/recorders/control/start")).Status);
        await Task.Delay(2500);
        var answers = new JsonArray();
        async Task Check(string method, string path, string template, int expected)
        {
            var r = await admin.SendAsync(new HttpMethod(method), Api + path);
            Assert.True((int)r.Status == expected, $"{method} {path}: {(int)r.Status}, expected {expected}: {r.Json?.ToJsonString()}");
            answers.Add((JsonNode)new JsonObject { ["method"] = method, ["path"] = template, ["status"] = (int)r.Status, ["body"] = r.Json?.DeepClone() });
        }
        foreach (var p in new[] { "/system/status", "/system/firmware", "/system/firmware/version", "/system/firmware/revision", "/system/firmware/product_id",
                     "/system/firmware/product_name", "/system/ident", "/system/storages", "/channels", "/recorders", "/recorders/status", "/afu", "/afu/status", "/inputs" })
            await Check("GET", p, p, 200);
        await Check("GET", "/channels?publishers=yes&encoders=yes&active_layout=yes&publishers-status=yes", "/channels", 200);
        await Check("GET", "/channels?ids=2&encoders=yes", "/channels", 200);
        await Check("GET", "/recorders/status?ids=1", "/recorders/status", 200);
        await Check("GET", "/inputs?types=embedded", "/inputs", 200);
        await Check("GET", "/system/storages/main/status", "/system/storages/{stid}/status", 200);
        await Check("GET", "/system/storages/external/status", "/system/storages/{stid}/status", 200);
        await Check("GET", "/channels/1/name", "/channels/{cid}/name", 200);
        await Check("GET", "/channels/7/name", "/channels/{cid}/name", 404);
        await Check("PUT", "/channels/2/name?name=Stage%20left", "/channels/{cid}/name", 200);
        await Check("PUT", "/channels/1/layouts/active?id=1", "/channels/{cid}/layouts/active", 200);
        await Check("PUT", "/channels/1/layouts/active?id=5", "/channels/{cid}/layouts/active", 404);
        await Check("GET", "/channels/1/publishers", "/channels/{cid}/publishers", 200);
        await Check("GET", "/channels/1/publishers/status", "/channels/{cid}/publishers/status", 200);
        await Check("GET", "/channels/1/publishers/type", "/channels/{cid}/publishers/type", 200);
        await Check("POST", "/channels/1/publishers/control/start", "/channels/{cid}/publishers/control/start", 200);
        await Check("POST", "/channels/1/publishers/control/stop", "/channels/{cid}/publishers/control/stop", 200);
        await Check("GET", "/channels/1/publishers/3/status", "/channels/{cid}/publishers/{pid}/status", 404);
        await Check("GET", "/recorders/1/status", "/recorders/{rid}/status", 200);
        await Check("GET", "/recorders/2/status", "/recorders/{rid}/status", 200);
        await Check("GET", "/recorders/9/status", "/recorders/{rid}/status", 404);
        await Check("GET", "/recorders/1/archive/files", "/recorders/{rid}/archive/files", 200);
        await Check("GET", "/recorders/1/archive/files?from=0&limit=1", "/recorders/{rid}/archive/files", 200);
        await Check("GET", "/recorders/9/archive/files", "/recorders/{rid}/archive/files", 404);
        await Check("GET", "/recorders/1/archive/files/nothing.mp4", "/recorders/{rid}/archive/files/{fid}", 404);
        await Check("GET", "/afu/0/status", "/afu/{aid}/status", 200);
        await Check("GET", "/afu/4/status", "/afu/{aid}/status", 404);
        await Check("POST", "/recorders/1/control/stop", "/recorders/{rid}/control/stop", 200);
        await Check("POST", "/recorders/1/control/start", "/recorders/{rid}/control/start", 200);
        await Check("POST", "/recorders/control/stop?ids=1", "/recorders/control/stop", 200);
        await Check("POST", "/recorders/control/start", "/recorders/control/start", 200);
        await Check("POST", "/recorders/control/stop", "/recorders/control/stop", 200);
        await Check("POST", "/recorders/9/control/start", "/recorders/{rid}/control/start", 404);

        var dir = Directory.CreateTempSubdirectory("pearl2-api").FullName;
        File.WriteAllText(Path.Combine(dir, "answers.json"), answers.ToJsonString());
        var doc = await anon.GetAsync($"{Api}/openapi.json");
        Assert.Equal(HttpStatusCode.OK, doc.Status);
        File.WriteAllText(Path.Combine(dir, "own.json"), doc.Json!.ToJsonString());
        var r = await Peers.RunAsync("node", [Path.Combine(Peers.RepoRoot, "tests", "browser", "validate-api.mjs"),
            Path.Combine(Peers.RepoRoot, "tests", "refs", "pearl-rest-api-v2.0.openapi.yml"),
            Path.Combine(dir, "answers.json"), Path.Combine(dir, "own.json")], TimeSpan.FromSeconds(60));
        output.WriteLine(r.Stdout + r.Stderr);
        Assert.Equal(0, r.ExitCode);
        var result = JsonNode.Parse(r.Stdout)!;
        Assert.Equal(answers.Count, result["validated"]!.GetValue<int>());
        Assert.Empty(result["unknown"]!.AsArray());
        Assert.Empty(result["errors"]!.AsArray());
        Assert.True(result["document"]!["valid"]!.GetValue<bool>(), result["document"]!.ToJsonString());
        // Our document lists what we answer: the Pearl paths and our own.
        var paths = doc.Json!["paths"]!.AsObject();
        foreach (var p in new[] { "/system/status", "/recorders/{rid}/archive/files/{fid}", "/x-pearl2/config", "/x-pearl2/setup" }) Assert.True(paths.ContainsKey(p), p);
        Assert.Equal("admin", paths["/x-pearl2/config"]!["put"]!["x-pearl2-role"]!.GetValue<string>());
    }

    [Fact]
    public async Task ARecordingMadeThroughTheApiDownloadsInRangesThatPlayAndIsDeletedButNotWhileRecording()
    {
        var (device, anon, _) = await StartAsync();
        await using var _d = device;
        await SetupAsync(anon);
        using var op = anon.As("admin", AdminPassword);
        Assert.Equal(HttpStatusCode.OK, (await op.PostAsync($"{Api}/recorders/1/control/start")).Status);
        await Task.Delay(3000);
        var status = (await op.GetAsync($"{Api}/recorders/1/status")).Json!["result"]!;
        Assert.Equal("started", status["state"]!.GetValue<string>());
        var recording = (await op.GetAsync($"{Api}/recorders/1/archive/files")).Json!["result"]!.AsArray().Single()!;
        Assert.True(recording["recording"]!.GetValue<bool>());
        string id = recording["id"]!.GetValue<string>();
        var whileRecording = await op.DeleteAsync($"{Api}/recorders/1/archive/files/{id}");
        Assert.Equal(HttpStatusCode.Conflict, whileRecording.Status);
        Assert.Contains("is being recorded", whileRecording.Json!["message"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, (await op.PostAsync($"{Api}/recorders/1/control/stop")).Status);
        for (int i = 0; i < 50 && (await op.GetAsync($"{Api}/recorders/1/archive/files")).Json!["result"]![0]!["recording"]!.GetValue<bool>(); i++) await Task.Delay(100);
        var file = (await op.GetAsync($"{Api}/recorders/1/archive/files")).Json!["result"]![0]!;
        long size = file["size"]!.GetValue<long>();
        Assert.True(file["duration"]!.GetValue<long>() >= 2, file.ToJsonString());
        Assert.Empty((await op.GetAsync($"{Api}/recorders/2/archive/files")).Json!["result"]!.AsArray());   // channel 2 was not recorded

        // Downloaded in two ranges (as a resuming client does), the halves make the file, and it plays to the end.
        long half = size / 2;
        var first = await op.BytesAsync($"{Api}/recorders/1/archive/files/{id}", new RangeHeaderValue(0, half - 1));
        var second = await op.BytesAsync($"{Api}/recorders/1/archive/files/{id}", new RangeHeaderValue(half, null));
        Assert.Equal(size, first.Length + second.Length);
        var whole = await op.BytesAsync($"{Api}/recorders/1/archive/files/{id}");
        Assert.Equal(whole, first.Concat(second).ToArray());
        var path = Path.Combine(Directory.CreateTempSubdirectory("pearl2-dl").FullName, id);
        File.WriteAllBytes(path, first.Concat(second).ToArray());
        var probe = await Peers.RunAsync("ffprobe", ["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", path], TimeSpan.FromSeconds(60));
        output.WriteLine(probe.Stdout + probe.Stderr);
        var fields = probe.Stdout.Trim().Split(',');
        Assert.Equal(["h264", "320", "240"], fields[..3]);
        Assert.True(int.Parse(fields[3]) >= 45, probe.Stdout);
        Assert.Equal("", (await Peers.RunAsync("ffmpeg", ["-v", "error", "-i", path, "-f", "null", "-"], TimeSpan.FromSeconds(60))).Stderr);

        Assert.Equal(HttpStatusCode.OK, (await op.DeleteAsync($"{Api}/recorders/1/archive/files/{id}")).Status);
        Assert.False(File.Exists(Path.Combine(device.DataDir, "recordings", id)));
        Assert.Equal(HttpStatusCode.NotFound, (await op.GetAsync($"{Api}/recorders/1/archive/files/{id}")).Status);
        Assert.Contains("no recordings in", await device.ControlAsync("recordings"));
    }

    [Fact]
    public async Task HttpsAnswersWithTheDevicesOwnCertificateWhichSurvivesARestart()
    {
        var (device, anon, httpsPort) = await StartAsync();
        await SetupAsync(anon);
        using var admin = anon.As("admin", AdminPassword);
        var cert = Path.Combine(device.DataDir, "admin-cert.pem");
        var fingerprint = (await admin.GetAsync($"{Api}/x-pearl2/certificate")).Json!["result"]!["sha256"]!.GetValue<string>();
        async Task<string> Curl(string host) => (await Peers.RunAsync("curl", ["-sS", "--cacert", cert, "-u", $"admin:{AdminPassword}", "-w", " %{http_code}",
            $"https://{host}:{httpsPort}/api/v2.0/system/firmware/version"], TimeSpan.FromSeconds(30))) is var r && r.ExitCode == 0 ? r.Stdout : $"curl failed ({r.ExitCode}): {r.Stderr}";
        foreach (var host in new[] { "localhost", "127.0.0.1" })
        {
            var answer = await Curl(host);
            output.WriteLine($"{host}: {answer}");
            Assert.EndsWith(" 200", answer);
            Assert.Contains("\"result\":\"4.25.0\"", answer);
        }
        var x509 = await Peers.RunAsync("openssl", ["x509", "-in", cert, "-noout", "-ext", "subjectAltName"], TimeSpan.FromSeconds(10));
        output.WriteLine(x509.Stdout);
        Assert.Contains("DNS:localhost", x509.Stdout);
        Assert.Contains($"DNS:{Environment.MachineName}.local", x509.Stdout);
        Assert.Contains("IP Address:127.0.0.1", x509.Stdout);

        File.Copy(cert, cert + ".old");
        await device.KillAsync();
        await using var again = await device.RestartAsync();
        Assert.Equal(fingerprint, (await admin.GetAsync($"{Api}/x-pearl2/certificate")).Json!["result"]!["sha256"]!.GetValue<string>());
        Assert.EndsWith(" 200", await Curl("localhost"));
        await again.WaitForLogAsync("admin.certificate source=kept", Pearl2dProcess.LogLag);
        // The users survive too: setup is not offered again.
        Assert.False((await anon.GetAsync($"{Api}/x-pearl2/setup")).Json!["result"]!["pending"]!.GetValue<bool>());

        // An uploaded certificate replaces it at once; garbage is refused and changes nothing.
        var work = Directory.CreateTempSubdirectory("pearl2-cert").FullName;
        var made = await Peers.RunAsync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=uploaded",
            "-addext", "subjectAltName=DNS:localhost", "-days", "30", "-keyout", Path.Combine(work, "key.pem"), "-out", Path.Combine(work, "cert.pem")], TimeSpan.FromSeconds(30));
        Assert.True(made.ExitCode == 0, made.Stderr);
        var bad = await admin.PutAsync($"{Api}/x-pearl2/certificate", """{ "certificate": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----", "key": "x" }""");
        Assert.Equal(HttpStatusCode.BadRequest, bad.Status);
        Assert.StartsWith("certificate: not a PEM certificate with its private key", bad.Json!["message"]!.GetValue<string>());
        var upload = new JsonObject { ["certificate"] = File.ReadAllText(Path.Combine(work, "cert.pem")), ["key"] = File.ReadAllText(Path.Combine(work, "key.pem")) };
        var replaced = await admin.PutAsync($"{Api}/x-pearl2/certificate", upload.ToJsonString());
        Assert.Equal(HttpStatusCode.OK, replaced.Status);
        Assert.Equal("CN=uploaded", replaced.Json!["result"]!["subject"]!.GetValue<string>());
        var withNew = await Peers.RunAsync("curl", ["-sS", "--cacert", Path.Combine(work, "cert.pem"), "-u", $"admin:{AdminPassword}", "-o", "/dev/null", "-w", "%{http_code}",
            $"https://localhost:{httpsPort}/api/v2.0/system/ident"], TimeSpan.FromSeconds(30));
        Assert.Equal("200", withNew.Stdout);
        var withOld = await Peers.RunAsync("curl", ["-sS", "--cacert", cert + ".old", "-o", "/dev/null", $"https://localhost:{httpsPort}/"], TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, withOld.ExitCode);   // the old self-signed one no longer identifies the device
        Assert.Contains("audit.certificate_replaced", File.ReadAllText(Path.Combine(again.DataDir, "audit.log")));

        // Browsers on plain HTTP can be sent to HTTPS, with HSTS there; the API stays on HTTP for Pearl clients.
        var config = (await admin.GetAsync($"{Api}/x-pearl2/config")).Json!["result"]!["config"]!;
        config["admin"]!["redirectToHttps"] = true;
        config["admin"]!["hsts"] = true;
        Assert.Equal(HttpStatusCode.OK, (await admin.PutAsync($"{Api}/x-pearl2/config", config.ToJsonString())).Status);
        var page = await anon.GetAsync("/");
        Assert.Equal(HttpStatusCode.Redirect, page.Status);
        Assert.Equal($"https://127.0.0.1:{httpsPort}/", page.Response.Headers.Location?.ToString());
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync($"{Api}/system/ident")).Status);
        var hsts = await Peers.RunAsync("curl", ["-sS", "-D", "-", "-o", "/dev/null", "--cacert", Path.Combine(work, "cert.pem"), $"https://localhost:{httpsPort}/"], TimeSpan.FromSeconds(30));
        Assert.Contains("strict-transport-security: max-age=31536000", hsts.Stdout.ToLowerInvariant());
    }

    [Fact]
    public async Task ConfigChangesApplyLiveAndABadOneIsRefusedByFieldWithTheRunningConfigKept()
    {
        var (device, anon, _) = await StartAsync();
        await using var _d = device;
        await SetupAsync(anon);
        using var admin = anon.As("admin", AdminPassword);
        var current = (await admin.GetAsync($"{Api}/x-pearl2/config")).Json!["result"]!;
        long version = current["version"]!.GetValue<long>();
        var config = current["config"]!;

        var bad = config.DeepClone();
        bad["channels"]![1]!["video"]!["width"] = 641;
        bad["device"]!["name"] = "<script>";
        var refused = await admin.PutAsync($"{Api}/x-pearl2/config", bad.ToJsonString());
        Assert.Equal(HttpStatusCode.BadRequest, refused.Status);
        var errors = refused.Json!["errors"]!.AsArray().Select(e => e!.GetValue<string>()).ToList();
        output.WriteLine(string.Join("\n", errors));
        Assert.Contains(errors, e => e.StartsWith("channels[1].video.width: 641 is not an even number", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("device.name: ", StringComparison.Ordinal));
        Assert.Equal(version, (await admin.GetAsync($"{Api}/x-pearl2/config")).Json!["result"]!["version"]!.GetValue<long>());
        var unknown = await admin.PutAsync($"{Api}/x-pearl2/config", """{ "channels": [ { "name": "x", "colour": "red" } ] }""");
        Assert.Contains("channels[0].colour: unknown field", unknown.Json!["message"]!.GetValue<string>());

        // Channel 2 at a new size, applied without a restart: RTSP shows it at once, channel 1 never stopped.
        var next = config.DeepClone();
        next["channels"]![1]!["video"]!["width"] = 480;
        next["channels"]![1]!["video"]!["height"] = 270;
        next["device"]!["location"] = "Room 101";
        var applied = await admin.PutAsync($"{Api}/x-pearl2/config", next.ToJsonString());
        Assert.Equal(HttpStatusCode.OK, applied.Status);
        Assert.Equal(version + 1, applied.Json!["result"]!["version"]!.GetValue<long>());
        var probe = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v", "-show_entries", "stream=width,height", "-of", "csv=p=0", device.Url(2)], TimeSpan.FromSeconds(30));
        Assert.Equal("480,270", probe.Stdout.Trim());
        Assert.Equal(1, device.CountInLog("pearl2d.start "));
        Assert.Equal("Room 101", (await admin.GetAsync($"{Api}/system/ident")).Json!["result"]!["location"]!.GetValue<string>());
        // Persisted: the file the device starts from has the change.
        Assert.Equal(480, JsonNode.Parse(File.ReadAllText(device.ConfigPath))!["channels"]![1]!["video"]!["width"]!.GetValue<int>());

        // The ident as Pearl clients set it, checked by field.
        Assert.Equal(HttpStatusCode.OK, (await admin.PutAsync($"{Api}/system/ident", """{ "name": "Lecture Hall (A)", "description": "front" }""")).Status);
        Assert.Equal("Lecture Hall (A)", (await admin.GetAsync($"{Api}/system/ident")).Json!["result"]!["name"]!.GetValue<string>());
        var badName = await admin.PutAsync($"{Api}/system/ident", """{ "name": "a/b" }""");
        Assert.Equal(HttpStatusCode.BadRequest, badName.Status);
        Assert.StartsWith("device.name: ", badName.Json!["errors"]![0]!.GetValue<string>());

        // A viewer login set through the API: RTSP asks for it at once.
        var login = next.DeepClone();
        login["channels"]![0]!["auth"] = JsonNode.Parse("""{ "username": "viewer", "password": "letmein" }""");
        Assert.Equal(HttpStatusCode.OK, (await admin.PutAsync($"{Api}/x-pearl2/config", login.ToJsonString())).Status);
        var denied = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", device.Url(1)], TimeSpan.FromSeconds(30));
        Assert.Contains("401", denied.Stderr);
        var allowed = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
            device.Url(1).Replace("rtsp://", "rtsp://viewer:letmein@")], TimeSpan.FromSeconds(30));
        Assert.Contains("h264", allowed.Stdout);
    }

    [Fact]
    public async Task MetricsArePrometheusTextThatPromtoolAcceptsBehindTheLogin()
    {
        var (device, anon, _) = await StartAsync();
        await using var _d = device;
        await SetupAsync(anon);
        using var admin = anon.As("admin", AdminPassword);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anon.GetAsync("/metrics")).Status);
        // A viewer over RTSP and one over HTTP-TS, so that there are bytes to count.
        var rtsp = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-count_frames", "-read_intervals", "%+1", "-show_entries", "stream=nb_read_frames", device.Url(1)], TimeSpan.FromSeconds(30));
        Assert.Equal(0, rtsp.ExitCode);
        var r = await admin.SendAsync(HttpMethod.Get, "/metrics");
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.StartsWith("text/plain", r.Response.Content.Headers.ContentType!.MediaType);
        string text = await r.Response.Content.ReadAsStringAsync();
        output.WriteLine(text);
        var file = Path.Combine(Directory.CreateTempSubdirectory("pearl2-metrics").FullName, "metrics.txt");
        File.WriteAllText(file, text);
        var check = await Peers.RunAsync("/bin/sh", ["-c", $"promtool check metrics < '{file}'"], TimeSpan.FromSeconds(30));
        output.WriteLine(check.Stdout + check.Stderr);
        Assert.Equal(0, check.ExitCode);
        var sent = text.Split('\n').Single(l => l.StartsWith("pearl2_sent_bytes_total{channel=\"1\",transport=\"rtsp\"}", StringComparison.Ordinal));
        Assert.True(long.Parse(sent.Split(' ')[1]) > 10_000, sent);
        Assert.Contains("pearl2_recorder_state{channel=\"2\",state=\"idle\"} 1", text);
        Assert.Contains("pearl2_viewers{channel=\"1\",transport=\"http\"} 0", text);
        Assert.Matches(@"pearl2_frames_encoded_total\{channel=""2""\} [1-9]", text);
    }

    [Fact]
    public async Task TheLevelMetersReadTheTestTonesLevelsAndTheNetworkIsListed()
    {
        // Channel 1 carries the test tone (440 Hz at -20 dBFS, a 1 kHz beep at -6 dBFS for 100 ms every second); channel 2 has no audio.
        var (device, anon, _) = await StartAsync("""
            [ { "name": "Tone", "video": { "width": 320, "height": 240, "bitrateKbps": 300 } },
              { "name": "Mute", "video": { "width": 320, "height": 240, "bitrateKbps": 300 }, "audio": { "enabled": false } } ]
            """);
        await using var _d = device;
        await SetupAsync(anon);
        using var viewer = anon.As("admin", AdminPassword);
        var left = new List<double>();
        for (int i = 0; i < 40; i++)
        {
            var levels = (await viewer.GetAsync($"{Api}/x-pearl2/levels")).Json!["result"]!.AsArray();
            left.Add(levels[0]!["audio_dbfs"]![0]!.GetValue<double>());
            Assert.Equal([-100.0, -100.0], levels[1]!["audio_dbfs"]!.AsArray().Select(v => v!.GetValue<double>()));
            await Task.Delay(50);
        }
        output.WriteLine(string.Join(' ', left));
        Assert.InRange(left.Min(), -21.0, -19.0);   // the tone between beeps
        Assert.InRange(left.Max(), -10.0, -5.5);    // a beep, falling back
        var net = (await viewer.GetAsync($"{Api}/x-pearl2/network")).Json!["result"]!;
        Assert.Equal(Environment.MachineName, net["hostname"]!.GetValue<string>());
        Assert.Contains(net["interfaces"]!.AsArray(), i => i!["addresses"]!.AsArray().Any(a => a!.GetValue<string>() == "127.0.0.1/8"));
    }

    [Fact]
    public async Task ADamagedUsersFileKeepsThePanelOffAndNeverReopensSetupWhileTheChannelsRunOn()
    {
        var (device, anon, _) = await StartAsync();
        await SetupAsync(anon);
        await device.KillAsync();
        File.WriteAllText(Path.Combine(device.DataDir, "users.json"), "{ \"users\": [ { \"name\": \"admin\", ");   // torn
        await using var again = await device.RestartAsync();
        await again.WaitForLogAsync("admin.off error=", Pearl2dProcess.LogLag);
        Assert.False(Peers.TcpListening(new Uri(anon.Base).Port), "the admin port must stay closed, not offer setup again");
        var probe = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v", "-show_entries", "stream=codec_name", "-of", "csv=p=0", again.Url(1)], TimeSpan.FromSeconds(30));
        Assert.Equal("h264", probe.Stdout.Trim());
    }
}
