using Pearl2.Services.Configuration;
using Xunit;

namespace Pearl2.Tests.Unit;

public class ConfigTests
{
    [Fact]
    public void DefaultsAreValidAndTwoChannels()
    {
        var c = ConfigLoader.ParseText("{}");
        Assert.Equal(2, c.Channels.Count);
        Assert.Equal((1920, 1080, 30), (c.Channels[0].Video.Width, c.Channels[0].Video.Height, c.Channels[0].Video.Fps));
        Assert.Equal(554, c.Rtsp.Port);
        Assert.Empty(ConfigLoader.Validate(new FirmwareConfig()));
    }

    [Theory]
    [InlineData("""{"channels":[{"name":"a","video":{"width":641}}]}""", "channels[0].video.width: 641 is not an even number from 64 to 4096")]
    [InlineData("""{"channels":[{"name":"a"},{"name":"b","video":{"fps":0}}]}""", "channels[1].video.fps: 0 is not from 1 to 60")]
    [InlineData("""{"channels":[]}""", "channels: must list 1 to 8 channels")]
    [InlineData("""{"rtsp":{"port":70000}}""", "rtsp.port: 70000 (+ one port per channel) is not a TCP port")]
    [InlineData("""{"channels":[{"name":"a","source":"hdmi9"}]}""", "channels[0].source: 'hdmi9' is not a known source (known: testpattern, capture (the board's capture device), /dev/videoN)")]
    [InlineData("""{"channels":[{"name":"a","audio":{"channels":6}}]}""", "channels[0].audio.channels: 6 is not 1 or 2")]
    [InlineData("""{"rtsp":{"maxConnectionsPerPort":8}}""", "rtsp.maxConnectionsPerPort: 8 is not from 16 to 100000")]
    [InlineData("""{"rtsp":{"maxConnectionsPerPort":100,"maxConnectionsPerHost":200}}""", "rtsp.maxConnectionsPerHost: 200 is not from 1 to rtsp.maxConnectionsPerPort (100)")]
    [InlineData("""{"recording":{"format":"mkv"}}""", "recording.format: 'mkv' is not mp4 or ts")]
    [InlineData("""{"recording":{"rotateSeconds":2}}""", "recording.rotateSeconds: 2 is not from 5 to 86400")]
    [InlineData("""{"recording":{"spaceLimitMegabytes":3}}""", "recording.spaceLimitMegabytes: 3 is not 0 (no limit) or at least 16")]
    [InlineData("""{"recording":{"directory":""}}""", "recording.directory: must be a path")]
    [InlineData("""{"channels":[{"name":"a","auth":{"username":null,"password":"secret1"}}]}""", "channels[0].auth.username: must be text (in quotes), not null")]
    [InlineData("""{"channels":[{"name":"a","auth":{"username":"v","password":null}}]}""", "channels[0].auth.password: must be text (in quotes), not null")]
    [InlineData("""{"recording":null}""", "recording: must be an object ({ … }), not null")]
    [InlineData("""{"channels":[{"name":null}]}""", "channels[0].name: must be text (in quotes), not null")]
    public void BadValuesAreRefusedWithFieldPathAndReason(string json, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.ParseText(json));
        Assert.Contains(expected, e.Errors);
    }

    [Fact]
    public void AllErrorsAreReportedTogether()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.ParseText("""{"channels":[{"name":"","video":{"height":1}}],"rtsp":{"sessionTimeoutSeconds":1}}"""));
        Assert.Equal(3, e.Errors.Count);
    }

    [Theory]
    [InlineData("""{"rtsp":{"port":"abc"}}""", "rtsp.port")]
    [InlineData("""{"rtsp":{"portt":1}}""", "rtsp")]
    [InlineData("""{"channels":[{"name":"a","video":{"width":1.5}}]}""", "channels[0].video.width")]
    public void TypeErrorsNameTheField(string json, string field)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.ParseText(json));
        var err = Assert.Single(e.Errors);
        Assert.StartsWith(field, err);
    }

    [Fact]
    public void EveryShapeErrorIsReportedAtOnceInTheConfigsWordsWithTheRangeErrors()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.ParseText("""
            { "channels": [ { "name": "a", "colour": "red", "video": { "width": "wide", "fps": 0, "bitrateKbps": 1.5 }, "audio": { "enabled": "yes" } } ],
              "rtsp": { "portt": 1, "port": null }, "recording": [] }
            """));
        Assert.Equal([
            "channels[0].colour: unknown field (known here: name, streaming, source, video, audio, auth, record, upload, publishers)",
            "channels[0].video.width: \"wide\" is not a whole number",
            "channels[0].video.bitrateKbps: 1.5 is not a whole number",
            "channels[0].audio.enabled: \"yes\" is not true or false",
            "rtsp.portt: unknown field (known here: port, sessionTimeoutSeconds, stallTimeoutSeconds, maxRtpPayload, viewerQueueUnits, statsIntervalSeconds, udpPortBase, maxConnectionsPerPort, maxConnectionsPerHost)",
            "rtsp.port: must be a whole number, not null",
            "recording: a list is not an object ({ … })",
            "channels[0].video.fps: 0 is not from 1 to 60",
        ], e.Errors);
        Assert.All(e.Errors, err => Assert.DoesNotContain("System.", err));
        Assert.All(e.Errors, err => Assert.DoesNotContain("Pearl2.", err));
    }

    [Fact]
    public void AConfigPathThatIsADirectoryOrMissingIsRefusedByName()
    {
        var dir = Directory.CreateTempSubdirectory("pearl2-config-").FullName;
        Assert.Equal($"{dir}: is a directory, not a config file", Assert.Throws<ConfigException>(() => ConfigLoader.Load(dir)).Errors.Single());
        Assert.Equal($"{dir}/none.json: cannot be read (no such file)", Assert.Throws<ConfigException>(() => ConfigLoader.Load($"{dir}/none.json")).Errors.Single());
        // An auth whose login is absent altogether ("auth": null) is a channel without a login, as before.
        Assert.Null(ConfigLoader.ParseText("""{"channels":[{"name":"a","auth":null}]}""").Channels[0].Auth);
    }

    [Fact]
    public void AFieldGivenTwiceIsRefused()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.ParseText("""{"channels":[{"name":"a","video":{"width":640,"width":320}}],"rtsp":{"port":1,"port":2}}"""));
        Assert.Equal(["channels[0].video.width: given twice in the same object", "rtsp.port: given twice in the same object"], e.Errors);
    }

    [Theory]
    [InlineData("{\n  \"device\": { \"name\": \"x\" }\n  \"rtsp\": {}\n}", "config: line 3, column 3: ")]
    [InlineData("{ \"device\": ", "config: line 1, column 13: ")]
    [InlineData("{ \"rtsp\": { \"port\": 554, } , }", null)] // trailing commas are allowed
    public void BrokenJsonGivesTheLineAndColumn(string json, string? expected)
    {
        if (expected is null) { Assert.Equal(554, ConfigLoader.ParseText(json).Rtsp.Port); return; }
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.ParseText(json));
        var err = Assert.Single(e.Errors);
        Assert.StartsWith(expected, err);
        Assert.EndsWith("(the file is not valid JSON)", err);
    }

    [Fact]
    public void BoardProfiles_InTheRepository_AreValid()
    {
        var boards = Directory.GetDirectories(Path.Combine(RepoRoot(), "board"));
        Assert.NotEmpty(boards);
        foreach (var dir in boards)
        {
            var b = ConfigLoader.LoadBoard(Path.Combine(dir, "board.json"));
            Assert.Equal(Path.GetFileName(dir), b.Name);
            Assert.Empty(ConfigLoader.ValidateBoard(b));
        }
    }

    [Fact]
    public void BadPanelWiring_IsRefusedWithTheField()
    {
        var b = new BoardProfile();
        b.Panel.Driver = "sysfs";
        b.Panel.StatusLed.Line = b.Panel.Record.Line;
        b.Panel.Display!.Address = 0x90;
        var e = ConfigLoader.ValidateBoard(b);
        Assert.Contains("board.panel.driver: 'sysfs' is not simulated or libgpiod", e);
        Assert.Contains("board.panel: line 0 is used by record and statusLed", e);
        Assert.Contains("board.panel.display.address: 144 is not a 7-bit I2C address", e);
    }

    static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Pearl2.Firmware.sln"))) d = d.Parent;
        return d!.FullName;
    }

    [Fact]
    public void BadDestinationsAreRefusedByFieldWithTheirReasons()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.ParseText("""
            { "channels": [ { "name": "Hall", "publishers": [
                { "name": "a", "url": "http://example.org/live" },
                { "name": "a", "url": "rtmp://example.org/" },
                { "name": "s", "type": "srt", "mode": "sideways", "port": 0, "passphrase": "short", "keyLength": 20, "latencyMs": 5 },
                { "name": "x", "type": "webrtc" } ] } ] }
            """));
        Assert.Contains("channels[0].publishers[0].url: 'http://example.org/live' is not rtmp://host[:port]/app or rtmps://…", e.Errors);
        Assert.Contains("channels[0].publishers[1].url: 'rtmp://example.org/' is not rtmp://host[:port]/app or rtmps://…", e.Errors);
        Assert.Contains("channels[0].publishers[1].name: 'a' is used twice on this channel", e.Errors);
        Assert.Contains("channels[0].publishers[2].mode: 'sideways' is not caller, listener or rendezvous", e.Errors);
        Assert.Contains("channels[0].publishers[2].port: 0 is not a UDP port", e.Errors);
        Assert.Contains("channels[0].publishers[2].passphrase: must be empty or 10 to 79 characters (SRT's rule)", e.Errors);
        Assert.Contains("channels[0].publishers[2].keyLength: 20 is not 0, 16, 24 or 32", e.Errors);
        Assert.Contains("channels[0].publishers[2].latencyMs: 5 is not from 20 to 8000", e.Errors);
        Assert.Contains("channels[0].publishers[3].type: 'webrtc' is not rtmp or srt", e.Errors);
    }
}
