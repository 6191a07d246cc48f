using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// Being found on the LAN, as the real browsers and players find it, in two network namespaces joined by a veth pair
/// (multicast routed on it): avahi-daemon and python-zeroconf for mDNS/DNS-SD, gssdp-discover for SSDP, a GUPnP control
/// point for the media server, minidlna serving the same recordings as the reference for its answers.
/// </summary>
public sealed class DiscoveryTests(ITestOutputHelper output) : IAsyncLifetime
{
    NetworkPair _net = null!;

    public async Task InitializeAsync() => _net = await NetworkPair.CreateAsync();
    public async Task DisposeAsync() => await _net.DisposeAsync();

    static string PeerScript(string name) => Path.Combine(Peers.RepoRoot, "tests", "peers", name);

    static List<string[]> AvahiLines(string stdout, char kind) =>
        stdout.Split('\n').Where(l => l.Length > 2 && l[0] == kind && l[1] == ';').Select(l => l.Split(';')).ToList();

    /// <summary>
    /// avahi owns the name first, so pearl2d must rename itself; then avahi-browse, avahi-resolve, python-zeroconf and a
    /// legacy unicast querier all find it under the new name; the Stream button withdraws the channels (goodbyes) and
    /// brings them back; stopping pearl2d says goodbye to everything.
    /// </summary>
    [Fact]
    public async Task AvahiAndZeroconfFindTheDeviceAndItsChannelsUnderTheNameItWonAndSeeItsGoodbyes()
    {
        await using var avahi = await AvahiPeer.StartAsync(_net.External, _net.ExternalLink, "pearl2-clash");
        await using var device = await Pearl2dProcess.StartInAsync(_net.Device, """
            { "discovery": { "hostName": "pearl2-clash", "upnp": false },
              "channels": [ { "name": "Hall", "video": { "width": 320, "height": 180, "bitrateKbps": 300 } },
                            { "name": "Stage", "video": { "width": 320, "height": 180, "bitrateKbps": 300 } } ] }
            """, channels: 2);
        int admin = JsonNode.Parse(File.ReadAllText(device.ConfigPath))!["admin"]!["port"]!.GetValue<int>();
        await device.WaitForLogAsync("mdns.announce host=pearl2-clash-2.local", TimeSpan.FromSeconds(15));
        await device.WaitForLogAsync("mdns.conflict name=pearl2-clash.local renamed=pearl2-clash-2.local", Pearl2dProcess.LogLag);

        // avahi: every channel as _rtsp._tcp with its port and path, the panel as _http._tcp, the name resolved.
        var rtsp = await avahi.RunAsync("avahi-browse", ["-rtp", "_rtsp._tcp"]);
        output.WriteLine(rtsp.Stdout);
        var resolved = AvahiLines(rtsp.Stdout, '=');
        foreach (var (name, port) in new[] { ("Hall", device.RtspBase), ("Stage", device.RtspBase + 1) })
        {
            var line = Assert.Single(resolved, l => l[3] == name);
            Assert.Equal(("pearl2-clash-2.local", NetworkPair.DeviceAddress, port.ToString()), (line[6], line[7], line[8]));
            Assert.Contains("\"path=/stream.sdp\"", line[9]);
        }
        var http = await avahi.RunAsync("avahi-browse", ["-rtp", "_http._tcp"]);
        var panel = Assert.Single(AvahiLines(http.Stdout, '='), l => l[3] == "Pearl2");
        Assert.Equal((NetworkPair.DeviceAddress, admin.ToString()), (panel[7], panel[8]));
        Assert.Contains("\"model=Pearl2\"", panel[9]);
        var byName = await avahi.RunAsync("avahi-resolve", ["-4", "-n", "pearl2-clash-2.local"]);
        Assert.Equal($"pearl2-clash-2.local\t{NetworkPair.DeviceAddress}", byName.Stdout.Trim());
        // avahi keeps its own name: the other responder was the one to move.
        Assert.Equal($"pearl2-clash.local\t{NetworkPair.ExternalAddress}", (await avahi.RunAsync("avahi-resolve", ["-4", "-n", "pearl2-clash.local"])).Stdout.Trim());

        // python-zeroconf resolves the same services.
        var zc = await NetworkPair.RunInAsync(_net.External, "/usr/bin/python3", [PeerScript("zeroconf-browse.py"), NetworkPair.ExternalAddress, "3", "_rtsp._tcp.local.", "_http._tcp.local."], TimeSpan.FromSeconds(60));
        output.WriteLine(zc.Stdout + zc.Stderr);
        var services = JsonNode.Parse(zc.Stdout)!.AsArray();
        foreach (var (name, port) in new[] { ("Hall._rtsp._tcp.local.", device.RtspBase), ("Stage._rtsp._tcp.local.", device.RtspBase + 1), ("Pearl2._http._tcp.local.", admin) })
        {
            var s = Assert.Single(services, x => x!["name"]!.GetValue<string>() == name)!;
            Assert.Equal(port, s["port"]!.GetValue<int>());
            Assert.Contains(NetworkPair.DeviceAddress, s["addresses"]!.AsArray().Select(a => a!.GetValue<string>()));
            Assert.Equal("pearl2-clash-2.local.", s["server"]!.GetValue<string>());
        }

        // A legacy unicast querier (source port not 5353): the answer comes to it, with its id, short TTLs, no cache-flush bit.
        var legacy = JsonNode.Parse((await NetworkPair.RunInAsync(_net.External, "/usr/bin/python3", [PeerScript("mdns-query.py"), NetworkPair.ExternalAddress, "pearl2-clash-2.local", "A"], TimeSpan.FromSeconds(20))).Stdout)!;
        output.WriteLine(legacy.ToJsonString());
        Assert.True(legacy["reply"]!.GetValue<bool>());
        Assert.Equal(0x4242, legacy["id"]!.GetValue<int>());
        Assert.Equal("pearl2-clash-2.local", legacy["questions"]![0]!["name"]!.GetValue<string>());
        var a = Assert.Single(legacy["answers"]!.AsArray(), x => x!["type"]!.GetValue<string>() == "A")!;
        Assert.Equal(NetworkPair.DeviceAddress, a["data"]!.GetValue<string>());
        Assert.True(a["ttl"]!.GetValue<int>() <= 10);
        Assert.False(a["flush"]!.GetValue<bool>());
        // Known-answer suppression: a querier that already has Hall hears only of Stage.
        var ka = JsonNode.Parse((await NetworkPair.RunInAsync(_net.External, "/usr/bin/python3",
            [PeerScript("mdns-query.py"), NetworkPair.ExternalAddress, "_rtsp._tcp.local", "PTR", "Hall._rtsp._tcp.local"], TimeSpan.FromSeconds(20))).Stdout)!;
        var ptrs = ka["answers"]!.AsArray().Where(x => x!["section"]!.GetValue<string>() == "answer").Select(x => x!["data"]!.GetValue<string>()).ToList();
        Assert.Equal(["Stage._rtsp._tcp.local"], ptrs);

        // A new address on the interface is answered at once (and announced); when it goes, a goodbye withdraws it.
        await NetworkPair.RunInAsync(_net.Device, "ip", ["addr", "add", "192.0.2.11/24", "dev", _net.DeviceLink], TimeSpan.FromSeconds(10));
        await device.WaitForLogAsync("mdns.address_change link=" + _net.DeviceLink + " added=192.0.2.11", TimeSpan.FromSeconds(10));
        var two = JsonNode.Parse((await NetworkPair.RunInAsync(_net.External, "/usr/bin/python3", [PeerScript("mdns-query.py"), NetworkPair.ExternalAddress, "pearl2-clash-2.local", "A"], TimeSpan.FromSeconds(20))).Stdout)!;
        Assert.Equal(["192.0.2.1", "192.0.2.11"], two["answers"]!.AsArray().Where(x => x!["type"]!.GetValue<string>() == "A").Select(x => x!["data"]!.GetValue<string>()).Order());
        await NetworkPair.RunInAsync(_net.Device, "ip", ["addr", "del", "192.0.2.11/24", "dev", _net.DeviceLink], TimeSpan.FromSeconds(10));
        await device.WaitForLogAsync("removed=192.0.2.11", TimeSpan.FromSeconds(10));

        // The Stream button: no channel streams to other hosts, so none is announced (goodbyes); pressed again, back they come.
        var watch = avahi.Start("avahi-browse", ["-rp", "_rtsp._tcp"]);
        await watch.WaitForAsync(o => AvahiLines(o, '=').Count >= 2, TimeSpan.FromSeconds(10));
        await device.ControlAsync("panel", "press", "stream");
        await watch.WaitForAsync(o => AvahiLines(o, '-').Count >= 2, TimeSpan.FromSeconds(10));
        await device.ControlAsync("panel", "press", "stream");
        await watch.WaitForAsync(o => AvahiLines(o, '+').Count >= 4, TimeSpan.FromSeconds(10));
        // Stopping pearl2d: goodbyes for every record, which avahi sees as the services going away.
        int before = AvahiLines(watch.Output, '-').Count;
        Assert.Equal(0, await device.StopAsync());
        await device.WaitForLogAsync("mdns.stopped goodbyes=", Pearl2dProcess.LogLag);
        await watch.WaitForAsync(o => AvahiLines(o, '-').Count >= before + 2, TimeSpan.FromSeconds(10));
        output.WriteLine(watch.Output);
    }

    /// <summary>
    /// SSDP and the media server as a DLNA player meets them: gssdp-discover finds it, a GUPnP control point browses Live and
    /// Recordings (in pages of one), a recording downloads byte-identical (whole and by Range), ffprobe plays a live item,
    /// the viewer login and the streaming switch hold on this door too, minidlna's answers for the same file carry no field
    /// ours lack, the byebye is seen at stop and the port is another at the next start, as the ports table says.
    /// </summary>
    [Fact]
    public async Task TheMediaServerIsFoundBrowsedAndServesRecordingsAndLiveBehindTheChannelsLogin()
    {
        var device = await Pearl2dProcess.StartInAsync(_net.Device, """
            { "discovery": { "mdns": false },
              "channels": [ { "name": "Hall", "video": { "width": 320, "height": 180, "bitrateKbps": 300 } },
                            { "name": "Stage", "video": { "width": 320, "height": 180, "bitrateKbps": 300 },
                              "auth": { "username": "view", "password": "secret1", "allowBasic": true } } ] }
            """, channels: 2);
        try
        {
            await device.ControlAsync("panel", "press", "record");
            await Task.Delay(4000);
            await device.ControlAsync("panel", "press", "record");
            var files = Directory.GetFiles(Path.Combine(device.DataDir, "recordings"), "*.mp4").OrderBy(f => f).ToArray();
            Assert.Equal(2, files.Length);
            string hallFile = files.Single(f => Path.GetFileName(f).StartsWith("Hall_")), stageFile = files.Single(f => Path.GetFileName(f).StartsWith("Stage_"));
            int port = UpnpPort(device.Log);
            Assert.InRange(port, 50000, 65000);

            // SSDP: gssdp-discover finds the MediaServer and where its description is.
            var discover = await NetworkPair.RunInAsync(_net.External, "gssdp-discover", ["-i", _net.ExternalLink, "-t", "urn:schemas-upnp-org:device:MediaServer:1", "-n", "3"], TimeSpan.FromSeconds(20));
            output.WriteLine(discover.Stdout);
            Assert.Contains("resource available", discover.Stdout);
            Assert.Contains($"Location: http://{NetworkPair.DeviceAddress}:{port}/upnp/description.xml", discover.Stdout);

            // The GUPnP control point walks the whole tree, one object per Browse page.
            var tree = await BrowseAsync($"{NetworkPair.DeviceAddress}:{port}", page: 1);
            var objects = tree["objects"]!.AsObject();
            Assert.Equal("Pearl2", tree["device"]!["name"]!.GetValue<string>());
            Assert.Equal(["live", "rec"], Children(objects, "0"));
            Assert.Equal(["live/1", "live/2"], Children(objects, "live"));
            Assert.Equal(["rec/1", "rec/2"], Children(objects, "rec"));
            var item = objects[$"rec/1/{Path.GetFileName(hallFile)}"]!;
            var res = item["res"]![0]!;
            Assert.Equal(Path.GetFileNameWithoutExtension(hallFile), item["fields"]!["dc:title"]!.GetValue<string>());
            Assert.Equal(new FileInfo(hallFile).Length.ToString(), res["size"]!.GetValue<string>());
            Assert.Equal("320x180", res["resolution"]!.GetValue<string>());
            Assert.StartsWith("http-get:*:video/mp4:DLNA.ORG_PN=", res["protocolInfo"]!.GetValue<string>());
            Assert.Contains("DLNA.ORG_OP=01", res["protocolInfo"]!.GetValue<string>());
            Assert.True(tree["update_id"]!.GetValue<int>() >= 1);

            // The recording, whole and by range, byte for byte; time seeking refused; the DLNA headers when asked.
            string url = res["url"]!.GetValue<string>();
            string whole = Path.Combine(Path.GetTempPath(), $"pearl2-upnp-{Environment.ProcessId}.mp4");
            try
            {
                Assert.Equal("200", await CurlCodeAsync(["-o", whole, url]));
                Assert.Equal(SHA256.HashData(File.ReadAllBytes(hallFile)), SHA256.HashData(File.ReadAllBytes(whole)));
                Assert.Equal("206", await CurlCodeAsync(["-o", whole, "-r", "100-199", url]));
                Assert.Equal(File.ReadAllBytes(hallFile)[100..200], File.ReadAllBytes(whole));
            }
            finally { File.Delete(whole); }
            Assert.Equal("406", await CurlCodeAsync(["-o", "/dev/null", "-H", "TimeSeekRange.dlna.org: npt=10-", url]));
            var head = await NetworkPair.RunInAsync(_net.External, "curl", ["-sS", "-I", "-H", "getcontentFeatures.dlna.org: 1", url], TimeSpan.FromSeconds(20));
            Assert.Contains("contentFeatures.dlna.org: DLNA.ORG_PN=", head.Stdout);
            Assert.Contains("transferMode.dlna.org: Streaming", head.Stdout);
            Assert.Contains($"Content-Length: {new FileInfo(hallFile).Length}", head.Stdout);

            // The live item plays (h264 + aac from the channel's own HTTP TS door).
            string live = objects["live/1"]!["res"]![0]!["url"]!.GetValue<string>();
            var probe = await NetworkPair.RunInAsync(_net.External, "ffprobe", ["-v", "error", "-read_intervals", "%+2", "-show_entries", "stream=codec_name", "-of", "csv=p=0", live], TimeSpan.FromSeconds(30));
            Assert.Equal(["aac", "h264"], probe.Stdout.Split("\n", StringSplitOptions.RemoveEmptyEntries).Select(s => s.Trim()).Distinct().Order());

            // Stage has a viewer login: its live item, its recording and its thumbnail want it here too.
            string stageLive = objects["live/2"]!["res"]![0]!["url"]!.GetValue<string>();
            string stageRec = objects[$"rec/2/{Path.GetFileName(stageFile)}"]!["res"]![0]!["url"]!.GetValue<string>();
            string stageThumb = objects["live/2"]!["fields"]!["upnp:albumArtURI"]!.GetValue<string>();
            foreach (var u in new[] { stageLive, stageRec, stageThumb })
            {
                Assert.Equal("401", await CurlCodeAsync(["-o", "/dev/null", "--max-time", "5", u]));
                Assert.Equal("401", await CurlCodeAsync(["-o", "/dev/null", "--max-time", "5", "-u", "view:wrong", "--digest", u]));
            }
            Assert.Equal("200", await CurlCodeAsync(["-o", "/dev/null", "-u", "view:secret1", "--digest", stageRec]));
            Assert.Equal("200", await CurlCodeAsync(["-o", "/dev/null", "-u", "view:secret1", "--basic", stageThumb]));
            Assert.Equal("200", await CurlCodeAsync(["-o", "/dev/null", objects["live/1"]!["fields"]!["upnp:albumArtURI"]!.GetValue<string>()]));

            // A flood of searches from one host is answered up to the limit, not one for one.
            var flood = await NetworkPair.RunInAsync(_net.External, "/usr/bin/python3", ["-c", SsdpFloodScript, NetworkPair.ExternalAddress, "300"], TimeSpan.FromSeconds(30));
            output.WriteLine($"SSDP flood: {flood.Stdout}{flood.Stderr}");
            int answers = int.Parse(flood.Stdout.Trim());
            Assert.InRange(answers, 5, 45 * 5);   // at most 40 searches answered in a 5 s window (5 lines each), plus a window that turned
            await device.WaitForLogAsync("ssdp.rate_limited from=192.0.2.2", TimeSpan.FromSeconds(5));

            // minidlna serving the same folder: every field it gives an item, ours gives too.
            await CompareWithMinidlnaAsync(device, objects, hallFile);

            // The streaming switch: Hall's live item and thumbnail are refused to other hosts while streaming is off.
            await device.ControlAsync("panel", "press", "stream");
            Assert.Equal("403", await CurlCodeAsync(["-o", "/dev/null", "--max-time", "5", live]));
            Assert.Equal("403", await CurlCodeAsync(["-o", "/dev/null", objects["live/1"]!["fields"]!["upnp:albumArtURI"]!.GetValue<string>()]));
            await device.ControlAsync("panel", "press", "stream");

            // A byebye at stop, which gssdp-discover reports; the next start takes another port, and the ports table shows it.
            var psi = new ProcessStartInfo("ip", ["netns", "exec", _net.External, Peers.Require("gssdp-discover"), "-i", _net.ExternalLink, "-t", "urn:schemas-upnp-org:device:MediaServer:1", "-m", "all", "-r", "2", "-n", "30"])
            { RedirectStandardOutput = true, RedirectStandardError = true };
            using (var gssdp = Process.Start(psi)!)
            {
                var watch = new RunningPeer(gssdp);
                try
                {
                    try { await watch.WaitForAsync(o => o.Contains("resource available"), TimeSpan.FromSeconds(15)); }
                    catch (TimeoutException) { output.WriteLine(string.Join('\n', device.Log.Split('\n').Where(l => l.Contains("ssdp") || l.Contains("upnp")))); throw; }
                    Assert.Equal(0, await device.StopAsync());
                    Assert.True(device.Log.Contains("ssdp.stopped byebye=5"), "no byebye at stop:\n" + string.Join('\n', device.Log.Split('\n').TakeLast(15)));
                    await watch.WaitForAsync(o => o.Contains("resource unavailable"), TimeSpan.FromSeconds(10));
                    output.WriteLine(watch.Output);
                }
                finally { try { gssdp.Kill(true); } catch (InvalidOperationException) { } }
            }
            device = await device.RestartAsync();
            int next = UpnpPort(device.Log);
            Assert.InRange(next, 50000, 65000);
            Assert.NotEqual(port, next);
            await AssertPortsTableAsync(device, next);
        }
        finally { await device.DisposeAsync(); }
    }

    /// <summary>COUNT M-SEARCH ssdp:all (MX 1) sent at once from one socket; prints how many answers came back in 3 s.</summary>
    const string SsdpFloodScript = """
        import socket, sys, time
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
        s.bind((sys.argv[1], 0))
        msg = b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n'
        for i in range(int(sys.argv[2])):
            s.sendto(msg, ("239.255.255.250", 1900))
        s.settimeout(0.2)
        n, end = 0, time.time() + 3
        while time.time() < end:
            try:
                if s.recv(4096).startswith(b"HTTP/1.1 200"):
                    n += 1
            except socket.timeout:
                pass
        print(n)
        """;

    static int UpnpPort(string log)
    {
        var m = System.Text.RegularExpressions.Regex.Matches(log, @"upnp\.started port=(\d+)");
        Assert.NotEmpty(m);
        return int.Parse(m[^1].Groups[1].Value);
    }

    static List<string> Children(JsonObject objects, string id) => objects[id]!["children"]!.AsArray().Select(c => c!.GetValue<string>()).ToList();

    async Task<JsonNode> BrowseAsync(string match, int page)
    {
        var r = await NetworkPair.RunInAsync(_net.External, "/usr/bin/python3", [PeerScript("upnp-browse.py"), _net.ExternalLink, match, page.ToString(), "", "20"], TimeSpan.FromSeconds(60));
        var tree = JsonNode.Parse(r.Stdout)!;
        Assert.True(tree["found"]!.GetValue<bool>(), $"the control point found no MediaServer at {match}: {r.Stderr}");
        return tree;
    }

    async Task<string> CurlCodeAsync(string[] args)
    {
        var r = await NetworkPair.RunInAsync(_net.External, "curl", ["-sS", "-w", "%{http_code}", .. args], TimeSpan.FromSeconds(30));
        return r.Stdout.Trim()[^3..];
    }

    /// <summary>minidlna in the device's namespace on the same recordings folder; the same Browse walk; its item's fields against ours.</summary>
    async Task CompareWithMinidlnaAsync(Pearl2dProcess device, JsonObject ours, string file)
    {
        string dir = Directory.CreateTempSubdirectory("pearl2-minidlna").FullName;
        File.WriteAllText(Path.Combine(dir, "minidlna.conf"), $"""
            media_dir=V,{Path.Combine(device.DataDir, "recordings")}
            db_dir={dir}/db
            log_dir={dir}
            port=8200
            network_interface={_net.DeviceLink}
            friendly_name=minidlna-reference
            inotify=no
            notify_interval=5
            """);
        var psi = new ProcessStartInfo("ip", ["netns", "exec", _net.Device, Peers.Require("minidlnad"), "-f", Path.Combine(dir, "minidlna.conf"), "-d", "-R", "-P", Path.Combine(dir, "pid")])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var minidlna = Process.Start(psi)!;
        _ = minidlna.StandardOutput.ReadToEndAsync();
        _ = minidlna.StandardError.ReadToEndAsync();
        try
        {
            string title = Path.GetFileNameWithoutExtension(file);
            JsonNode? theirs = null;
            for (int attempt = 0; attempt < 10 && theirs is null; attempt++)
            {
                var tree = await BrowseAsync($"{NetworkPair.DeviceAddress}:8200/", page: 50);
                theirs = tree["objects"]!.AsObject().Select(kv => kv.Value!).FirstOrDefault(o => o["kind"]!.GetValue<string>() == "item" && o["fields"]!["dc:title"]?.GetValue<string>() == title);
                if (theirs is null) await Task.Delay(1000);   // still scanning
            }
            Assert.NotNull(theirs);
            var mine = ours[$"rec/1/{Path.GetFileName(file)}"]!;
            output.WriteLine($"minidlna: {theirs!.ToJsonString()}\npearl2d:  {mine.ToJsonString()}");
            var theirFields = theirs["fields"]!.AsObject().Select(kv => kv.Key).ToHashSet();
            var ourFields = mine["fields"]!.AsObject().Select(kv => kv.Key).ToHashSet();
            Assert.Subset(ourFields, theirFields);
            Assert.Equal(theirs["fields"]!["upnp:class"]!.GetValue<string>(), mine["fields"]!["upnp:class"]!.GetValue<string>());
            var theirRes = theirs["res"]![0]!.AsObject();
            var ourRes = mine["res"]![0]!.AsObject();
            Assert.Subset(ourRes.Select(kv => kv.Key).ToHashSet(), theirRes.Select(kv => kv.Key).ToHashSet());
            foreach (var same in new[] { "size", "resolution", "sampleFrequency", "nrAudioChannels" })
                Assert.Equal(theirRes[same]!.GetValue<string>(), ourRes[same]!.GetValue<string>());
            static double Seconds(string d) => TimeSpan.Parse(d, System.Globalization.CultureInfo.InvariantCulture).TotalSeconds;
            Assert.InRange(Seconds(ourRes["duration"]!.GetValue<string>()), Seconds(theirRes["duration"]!.GetValue<string>()) - 0.2, Seconds(theirRes["duration"]!.GetValue<string>()) + 0.2);
            double bitrate = double.Parse(theirRes["bitrate"]!.GetValue<string>());
            Assert.InRange(double.Parse(ourRes["bitrate"]!.GetValue<string>()), bitrate * 0.9, bitrate * 1.1);
            string Pn(JsonObject r) => r["protocolInfo"]!.GetValue<string>().Split(':')[3];
            output.WriteLine($"DLNA profile and flags: minidlna {Pn(theirRes)}; pearl2d {Pn(ourRes)}");
        }
        finally
        {
            try { minidlna.Kill(true); } catch (InvalidOperationException) { }
            await minidlna.WaitForExitAsync();
            Directory.Delete(dir, true);
        }
    }

    /// <summary>The admin panel's ports table, read from the other host with Basic as Pearl clients send it.</summary>
    async Task AssertPortsTableAsync(Pearl2dProcess device, int upnp)
    {
        int admin = JsonNode.Parse(File.ReadAllText(device.ConfigPath))!["admin"]!["port"]!.GetValue<int>();
        string api = $"http://{NetworkPair.DeviceAddress}:{admin}/api/v2.0";
        var setup = await NetworkPair.RunInAsync(_net.External, "curl", ["-sS", "-H", "Content-Type: application/json", "-d", """{ "username": "admin", "password": "discovery admin pw" }""", $"{api}/x-pearl2/setup"], TimeSpan.FromSeconds(30));
        Assert.Contains("\"ok\"", setup.Stdout);
        var ports = await NetworkPair.RunInAsync(_net.External, "curl", ["-sS", "-u", "admin:discovery admin pw", $"{api}/x-pearl2/ports"], TimeSpan.FromSeconds(30));
        var row = Assert.Single(JsonNode.Parse(ports.Stdout)!["result"]!.AsArray(), p => p!["owner"]!.GetValue<string>().StartsWith("UPnP media server"))!;
        Assert.Equal(upnp, row["port"]!.GetValue<int>());
        Assert.Contains(JsonNode.Parse(ports.Stdout)!["result"]!.AsArray(), p => p!["port"]!.GetValue<int>() == 1900 && p["protocol"]!.GetValue<string>() == "udp");
        var disc = await NetworkPair.RunInAsync(_net.External, "curl", ["-sS", "-u", "admin:discovery admin pw", $"{api}/x-pearl2/discovery"], TimeSpan.FromSeconds(30));
        Assert.Equal(upnp, JsonNode.Parse(disc.Stdout)!["result"]!["upnp_port"]!.GetValue<int>());

        // Switched off from the API: the media server goes at once (its description no longer answers), and the config says so.
        var off = await NetworkPair.RunInAsync(_net.External, "curl", ["-sS", "-u", "admin:discovery admin pw", "-X", "PUT", "-H", "Content-Type: application/json",
            "-d", """{ "upnp": false }""", $"{api}/x-pearl2/discovery"], TimeSpan.FromSeconds(30));
        output.WriteLine(off.Stdout);
        Assert.False(JsonNode.Parse(off.Stdout)!["result"]!["upnp"]!.GetValue<bool>());
        await device.WaitForLogAsync($"upnp.stopped port={upnp}", TimeSpan.FromSeconds(10));
        await device.WaitForLogAsync("ssdp.stopped byebye=5", Pearl2dProcess.LogLag);
        Assert.Equal("000", await CurlCodeAsync(["-o", "/dev/null", "--max-time", "3", $"http://{NetworkPair.DeviceAddress}:{upnp}/upnp/description.xml"]));
        Assert.False(JsonNode.Parse(File.ReadAllText(device.ConfigPath))!["discovery"]!["upnp"]!.GetValue<bool>());
        var bad = await NetworkPair.RunInAsync(_net.External, "curl", ["-sS", "-u", "admin:discovery admin pw", "-X", "PUT", "-H", "Content-Type: application/json",
            "-d", """{ "host_name": "-bad-" }""", $"{api}/x-pearl2/discovery"], TimeSpan.FromSeconds(30));
        Assert.Contains("discovery.hostName", bad.Stdout);
    }
}

/// <summary>
/// avahi-daemon with its own system D-Bus, in a network namespace and a private mount namespace (a tmpfs on /run), as
/// PEERS.md says; its tools run in the same namespaces through nsenter. The whole group is killed on dispose.
/// </summary>
sealed class AvahiPeer : IAsyncDisposable
{
    readonly Process _p;
    readonly string _dir;
    readonly List<Process> _started = new();

    AvahiPeer(Process p, string dir) { _p = p; _dir = dir; }

    public static async Task<AvahiPeer> StartAsync(string netns, string link, string hostName)
    {
        string dir = Directory.CreateTempSubdirectory("pearl2-avahi").FullName;
        File.WriteAllText(Path.Combine(dir, "avahi.conf"), $"""
            [server]
            host-name={hostName}
            use-ipv4=yes
            use-ipv6=no
            allow-interfaces={link}
            enable-dbus=yes
            ratelimit-interval-usec=1000000
            ratelimit-burst=1000
            [wide-area]
            enable-wide-area=no
            [publish]
            publish-hinfo=no
            publish-workstation=no
            """);
        File.WriteAllText(Path.Combine(dir, "run.sh"), $"""
            set -e
            mount -t tmpfs tmpfs /run
            mkdir -p /run/dbus /run/avahi-daemon
            dbus-daemon --system --nofork --nopidfile &
            for i in $(seq 100); do [ -S /run/dbus/system_bus_socket ] && break; sleep 0.05; done
            avahi-daemon --no-chroot --no-rlimits --no-drop-root -f {dir}/avahi.conf &
            wait
            """);
        Peers.Require("avahi-daemon");
        Peers.Require("dbus-daemon");
        var psi = new ProcessStartInfo("setsid", ["ip", "netns", "exec", netns, "unshare", "-m", "--propagation", "private", "bash", Path.Combine(dir, "run.sh")])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        var p = Process.Start(psi)!;
        var peer = new AvahiPeer(p, dir);
        _ = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
        var until = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            var r = await peer.RunAsync("avahi-resolve", ["-4", "-n", hostName + ".local"]);
            if (r.ExitCode == 0 && r.Stdout.Contains(hostName)) return peer;   // up, and done probing its own name
            if (DateTime.UtcNow > until) { await peer.DisposeAsync(); throw new InvalidOperationException($"avahi-daemon did not come up: {r.Stderr}"); }
            await Task.Delay(300);
        }
    }

    public Task<ProcessResult> RunAsync(string tool, string[] args) =>
        Peers.RunAsync("nsenter", ["-t", _p.Id.ToString(), "-m", "-n", Peers.Require(tool), .. args], TimeSpan.FromSeconds(30));

    /// <summary>A tool that runs until disposed (avahi-browse without -t), its output collected.</summary>
    public RunningPeer Start(string tool, string[] args)
    {
        var psi = new ProcessStartInfo("nsenter", ["-t", _p.Id.ToString(), "-m", "-n", Peers.Require(tool), .. args]) { RedirectStandardOutput = true, RedirectStandardError = true };
        var p = Process.Start(psi)!;
        _started.Add(p);
        return new RunningPeer(p);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _started) { try { p.Kill(true); } catch (InvalidOperationException) { } }
        // The whole session: bash, dbus-daemon and avahi-daemon (setsid made it its own group).
        await Peers.RunAsync("kill", ["-TERM", "--", $"-{_p.Id}"], TimeSpan.FromSeconds(10));
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            try { await _p.WaitForExitAsync(cts.Token); }
            catch (OperationCanceledException) { await Peers.RunAsync("kill", ["-KILL", "--", $"-{_p.Id}"], TimeSpan.FromSeconds(10)); }
        }
        Directory.Delete(_dir, true);
    }
}

/// <summary>A peer process whose output is read as it comes.</summary>
sealed class RunningPeer
{
    readonly StringBuilder _out = new();

    public RunningPeer(Process p)
    {
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
    }

    public string Output { get { lock (_out) return _out.ToString(); } }

    public async Task WaitForAsync(Func<string, bool> seen, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (!seen(Output))
        {
            if (DateTime.UtcNow > until) throw new TimeoutException($"not seen in {timeout.TotalSeconds} s; output so far:\n{Output}");
            await Task.Delay(100);
        }
    }
}
