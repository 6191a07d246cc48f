using System.Net;
using System.Text;
using Pearl2.Formats.Dns;
using Pearl2.Formats.Ssdp;
using Pearl2.Formats.Upnp;
using Pearl2.Services.Discovery;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>The discovery wire formats as bytes: DNS messages (RFC 1035 §4.1, RFC 6762), SSDP (UDA 1.1 §1), SOAP and DIDL-Lite.</summary>
public class DiscoveryFormatTests
{
    static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "").Replace("\n", ""));

    // ---- DNS ----

    [Fact]
    public void AnARecordIsWrittenAsRfc1035AndRfc6762SayByteForByte()
    {
        var m = new DnsMessage
        {
            Flags = DnsMessage.ResponseFlag | DnsMessage.AuthoritativeFlag,
            Answers = [DnsRecord.A(DnsName.Parse("pearl2-1.local"), IPAddress.Parse("192.0.2.1"), 120)],
        };
        Assert.Equal(Hex("""
            0000 8400 0000 0001 0000 0000
            08 706561726c322d31 05 6c6f63616c 00
            0001 8001 00000078 0004 c0000201
            """), m.ToArray());
    }

    [Fact]
    public void ASecondRecordOfTheSameNamePointsBackToTheFirst()
    {
        var host = DnsName.Parse("pearl2-1.local");
        var m = new DnsMessage
        {
            Flags = DnsMessage.ResponseFlag,
            Answers = [DnsRecord.A(host, IPAddress.Parse("192.0.2.1"), 120), DnsRecord.A(host, IPAddress.Parse("2001:db8::1"), 120)],
        };
        var bytes = m.ToArray();
        // Header 12, name 16, type/class/ttl/len 10, address 4 = 42: then the pointer c00c to offset 12, then AAAA.
        Assert.Equal(Hex("c00c 001c 8001 00000078 0010"), bytes[42..54]);
        Assert.True(DnsMessage.TryParse(bytes, out var back));
        Assert.Equal(IPAddress.Parse("2001:db8::1"), back!.Answers[1].Address);
        Assert.True(back.Answers[1].Name.Equals(host));
        Assert.True(back.Answers[1].CacheFlush);
    }

    /// <summary>PTR, SRV and TXT with compressed names inside their data, and an NSEC listing A and AAAA (RFC 6762 §6.1).</summary>
    [Fact]
    public void ADnsSdResponseWithCompressedRdataParsesToItsRecords()
    {
        var bytes = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "fuzz-corpus", "dns", "response"));
        Assert.True(DnsMessage.TryParse(bytes, out var m));
        Assert.True(m!.IsResponse);
        Assert.Equal([DnsType.Ptr, DnsType.Srv, DnsType.Txt, DnsType.A, DnsType.Nsec], m.Answers.Select(a => a.Type));
        Assert.Equal("Hall._rtsp._tcp.local.", m.Answers[0].Target!.ToString());
        Assert.Equal("Hall._rtsp._tcp.local.", m.Answers[1].Name.ToString());
        Assert.Equal(554, m.Answers[1].Port);
        Assert.Equal("pearl2-1.local.", m.Answers[1].Target!.ToString());
        Assert.Equal(["path=/stream.sdp"], m.Answers[2].Text!);
        Assert.Equal([DnsType.A, DnsType.Aaaa], m.Answers[4].Types!);
        // And back: the same records, whatever compression we choose.
        Assert.True(DnsMessage.TryParse(new DnsMessage { Flags = m.Flags, Answers = m.Answers }.ToArray(), out var again));
        Assert.True(again!.Answers.Zip(m.Answers).All(p => p.First.SameData(p.Second)));
    }

    [Theory]
    [InlineData("0000 0000 0001 0000 0000 0000 c00c 0001 0001", "a pointer to itself")]
    [InlineData("0000 0000 0001 0000 0000 0000 c00e 0001 0001 00", "a pointer forwards")]
    [InlineData("0000 0000 0001 0000 0000 0000 40 00 0001 0001", "a label length with the reserved bits 01")]
    [InlineData("0000 0000 00ff 0000 0000 0000 00 0001 0001", "255 questions in a 17-byte datagram")]
    [InlineData("0000 8400 0000 0001 0000 0000 00 0001 0001 00000078 0005 c0000201", "an A record of 5 bytes")]
    [InlineData("0000 8400 0000 0001 0000 0000 00 0001 0001 00000078 0010 c0000201", "RDATA past the end")]
    [InlineData("0000 0000 0001", "a header cut short")]
    public void MalformedMessagesAreRefusedWhole(string hex, string what)
    {
        Assert.False(DnsMessage.TryParse(Hex(hex), out var m), what);
        Assert.Null(m);
    }

    [Fact]
    public void TheUnicastResponseBitIsReadFromTheQuestionClass()
    {
        var probe = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "fuzz-corpus", "dns", "probe"));
        Assert.True(DnsMessage.TryParse(probe, out var m));
        Assert.True(m!.IsProbe);
        Assert.True(m.Questions[0].UnicastResponse);
        Assert.Equal(DnsType.Any, m.Questions[0].Type);
        Assert.True(m.Questions[0].Matches(DnsName.Parse("PEARL2-1.local"), DnsType.A));   // names compare without case
    }

    [Fact]
    public void AnEmptyTxtIsOneEmptyStringAndLongNamesAreRefused()
    {
        var m = new DnsMessage { Answers = [DnsRecord.Txt(DnsName.Parse("a.local"), [], 10)] };
        Assert.Equal(Hex("0001 00"), m.ToArray()[^3..]);   // rdlength 1, one zero-length string
        Assert.Throws<ArgumentException>(() => new DnsName(new string('x', 64)));
        Assert.Throws<ArgumentException>(() => new DnsName(Enumerable.Repeat(new string('x', 63), 4).ToArray()));
    }

    // ---- SSDP ----

    [Fact]
    public void AnMSearchIsParsedAndAnsweredForTheTargetsItNames()
    {
        var bytes = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "fuzz-corpus", "ssdp", "m-search"));
        Assert.True(SsdpSearch.TryParse(bytes, multicast: true, out var s, out var error), error);
        Assert.Equal("urn:schemas-upnp-org:device:MediaServer:1", s!.SearchTarget);
        Assert.Equal(2, s.MaxWaitSeconds);
        var ours = new SsdpAdvertiser("u", _ => "", "s", 1, 1, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, TimeProvider.System).Targets;
        Assert.Equal(5, SsdpWriter.Matching(ours, "ssdp:all").Count());
        Assert.Equal(["uuid:u::urn:schemas-upnp-org:device:MediaServer:1"], SsdpWriter.Matching(ours, s.SearchTarget).Select(t => t.Usn));
        Assert.Single(SsdpWriter.Matching(ours, "upnp:rootdevice"));
        Assert.Single(SsdpWriter.Matching(ours, "uuid:u"));
        Assert.Single(SsdpWriter.Matching(ours, "urn:schemas-upnp-org:service:ContentDirectory:1"));
        Assert.Empty(SsdpWriter.Matching(ours, "urn:schemas-upnp-org:device:MediaServer:2"));   // a later version than ours
        Assert.Empty(SsdpWriter.Matching(ours, "urn:schemas-upnp-org:device:MediaRenderer:1"));
    }

    [Theory]
    [InlineData("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\nMX: 1\r\n\r\n", true, "MAN")]
    [InlineData("M-SEARCH * HTTP/1.1\r\nMAN: ssdp:discover\r\nST: ssdp:all\r\nMX: 1\r\n\r\n", true, "MAN")]   // unquoted
    [InlineData("M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n", true, "MX")]
    [InlineData("M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\nMX: -1\r\n\r\n", true, "MX")]
    [InlineData("M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n\r\n", true, "ST")]
    [InlineData("NOTIFY * HTTP/1.1\r\nNTS: ssdp:alive\r\n\r\n", true, "M-SEARCH")]
    [InlineData("M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\nMX: 1\r\n", true, "HTTP head")]
    public void BadSearchesAreRefusedWithTheReason(string text, bool multicast, string reason)
    {
        Assert.False(SsdpSearch.TryParse(Encoding.ASCII.GetBytes(text), multicast, out _, out var error));
        Assert.Contains(reason, error);
    }

    [Fact]
    public void MxIsCappedAtFiveAndAUnicastSearchNeedsNone()
    {
        Assert.True(SsdpSearch.TryParse("M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\nMX: 120\r\n\r\n"u8, true, out var s, out _));
        Assert.Equal(5, s!.MaxWaitSeconds);
        Assert.True(SsdpSearch.TryParse("M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: upnp:rootdevice\r\n\r\n"u8, false, out s, out _));
        Assert.Equal(0, s!.MaxWaitSeconds);
    }

    [Fact]
    public void NotifyAndSearchAnswersCarryEveryFieldUda11Asks()
    {
        var t = new SsdpTarget("upnp:rootdevice", "uuid:u::upnp:rootdevice");
        string alive = Encoding.ASCII.GetString(SsdpWriter.Alive(t, "http://192.0.2.1:50001/upnp/description.xml", 1800, "Linux/6.1 UPnP/1.1 Pearl2/0.1.0", 7, 9));
        Assert.Equal("NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\nLOCATION: http://192.0.2.1:50001/upnp/description.xml\r\n" +
            "NT: upnp:rootdevice\r\nNTS: ssdp:alive\r\nSERVER: Linux/6.1 UPnP/1.1 Pearl2/0.1.0\r\nUSN: uuid:u::upnp:rootdevice\r\nBOOTID.UPNP.ORG: 7\r\nCONFIGID.UPNP.ORG: 9\r\n\r\n", alive);
        string bye = Encoding.ASCII.GetString(SsdpWriter.ByeBye(t, 7, 9));
        Assert.Contains("NTS: ssdp:byebye\r\n", bye);
        Assert.DoesNotContain("LOCATION", bye);
        string update = Encoding.ASCII.GetString(SsdpWriter.Update(t, "http://x/", 7, 9, 8));
        Assert.Contains("NTS: ssdp:update\r\n", update);
        Assert.Contains("NEXTBOOTID.UPNP.ORG: 8\r\n", update);
        string answer = Encoding.ASCII.GetString(SsdpWriter.SearchResponse(t, "http://x/", 1800, "s", 7, 9, new DateTimeOffset(2026, 12, 6, 10, 0, 0, TimeSpan.Zero)));
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", answer);
        Assert.Contains("DATE: Sun, 06 Dec 2026 10:00:00 GMT\r\nEXT:\r\n", answer);
        Assert.Contains("ST: upnp:rootdevice\r\n", answer);
    }

    // ---- SOAP and DIDL-Lite ----

    [Fact]
    public void ABrowseActionIsParsedAndCheckedAgainstItsSoapActionHeader()
    {
        var body = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "fuzz-corpus", "soap", "browse"));
        Assert.True(SoapAction.TryParse(body, "\"urn:schemas-upnp-org:service:ContentDirectory:1#Browse\"", out var a, out var error), error);
        Assert.Equal("Browse", a!.Name);
        Assert.Equal("0", a["ObjectID"]);
        Assert.Equal("+dc:title", a["SortCriteria"]);
        Assert.False(SoapAction.TryParse(body, "urn:schemas-upnp-org:service:ContentDirectory:1#Search", out _, out error));
        Assert.Contains("is not the SOAPACTION", error);
        Assert.False(SoapAction.TryParse(body, null, out _, out _));
    }

    [Fact]
    public void DtdsAndEntitiesAreRefused()
    {
        var evil = """
            <?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
            <s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:Browse xmlns:u="urn:x:1"><ObjectID>&b;</ObjectID></u:Browse></s:Body></s:Envelope>
            """u8.ToArray();
        Assert.False(SoapAction.TryParse(evil, "urn:x:1#Browse", out _, out var error));
        Assert.Contains("malformed XML", error);
    }

    [Fact]
    public void AnswersAndFaultsAreSoapEnvelopesWithEscapedValues()
    {
        string r = SoapAction.Response("urn:schemas-upnp-org:service:ContentDirectory:1", "Browse", ("Result", "<DIDL-Lite a=\"1\">&</DIDL-Lite>"), ("NumberReturned", "1"));
        Assert.Contains("<u:BrowseResponse xmlns:u=\"urn:schemas-upnp-org:service:ContentDirectory:1\"><Result>&lt;DIDL-Lite a=&quot;1&quot;&gt;&amp;&lt;/DIDL-Lite&gt;</Result><NumberReturned>1</NumberReturned></u:BrowseResponse>", r);
        string f = SoapAction.Fault(701, "no object x");
        Assert.Contains("<errorCode>701</errorCode><errorDescription>no object x</errorDescription>", f);
    }

    static readonly DidlObject Item = new("rec/1/Hall_1.mp4", "rec/1", "Hall & Stage", "object.item.videoItem")
    {
        Date = new DateTimeOffset(2026, 12, 6, 10, 0, 0, TimeSpan.Zero),
        AlbumArtUrl = "http://h/upnp/thumb/1.jpg",
        Resources = [new DidlResource("http://h/upnp/media/Hall_1.mp4", "http-get:*:video/mp4:DLNA.ORG_OP=01")
        {
            Size = 293613, Duration = TimeSpan.FromMilliseconds(8166), Resolution = (320, 180), BytesPerSecond = 35955, SampleFrequency = 48000, AudioChannels = 2,
        }],
    };

    [Fact]
    public void DidlLiteCarriesEveryPropertyUnderStarAndOnlyTheRequiredOnesAndThoseNamedOtherwise()
    {
        string all = DidlWriter.Write([Item], "*");
        Assert.Contains("<item id=\"rec/1/Hall_1.mp4\" parentID=\"rec/1\" restricted=\"1\"><dc:title>Hall &amp; Stage</dc:title><upnp:class>object.item.videoItem</upnp:class>" +
            "<dc:date>2026-12-06T10:00:00</dc:date><upnp:albumArtURI dlna:profileID=\"JPEG_TN\">http://h/upnp/thumb/1.jpg</upnp:albumArtURI>" +
            "<res protocolInfo=\"http-get:*:video/mp4:DLNA.ORG_OP=01\" size=\"293613\" duration=\"0:00:08.166\" resolution=\"320x180\" bitrate=\"35955\" sampleFrequency=\"48000\" nrAudioChannels=\"2\">http://h/upnp/media/Hall_1.mp4</res></item>", all);
        string bare = DidlWriter.Write([Item], "dc:title");
        Assert.DoesNotContain("<res", bare);
        Assert.DoesNotContain("dc:date", bare);
        string sizeOnly = DidlWriter.Write([Item], "res@size");
        Assert.Contains("<res protocolInfo=\"http-get:*:video/mp4:DLNA.ORG_OP=01\" size=\"293613\">", sizeOnly);
        var folder = new DidlObject("rec", "0", "Recordings", "object.container.storageFolder") { ChildCount = 3 };
        Assert.Contains("childCount=\"3\"", DidlWriter.Write([folder], "*"));
        Assert.DoesNotContain("childCount", DidlWriter.Write([folder], "dc:title"));
    }

    [Fact]
    public void DlnaFeaturesSayWhatAPlayerMayDo()
    {
        Assert.Equal("DLNA.ORG_PN=AVC_MP4_BL_CIF30_AAC_940;DLNA.ORG_OP=01;DLNA.ORG_CI=0;DLNA.ORG_FLAGS=01700000000000000000000000000000",
            DlnaInfo.FileFeatures(DlnaInfo.Profile("mp4", 320, 180)));
        Assert.Equal("DLNA.ORG_PN=AVC_TS_MP_HD_AAC_MULT5_ISO;DLNA.ORG_OP=00;DLNA.ORG_CI=0;DLNA.ORG_FLAGS=01100000000000000000000000000000",
            DlnaInfo.LiveFeatures(DlnaInfo.Profile("ts", 1920, 1080)));
        Assert.Equal("0:01:05.000", DidlWriter.Duration(TimeSpan.FromSeconds(65)));
    }

    [Fact]
    public void TheUpnpUuidIsStableAndWellFormedAndTheIconIsAPng()
    {
        string a = DeviceIdentity.UuidFrom("123456");
        Assert.Equal(a, DeviceIdentity.UuidFrom("123456"));
        Assert.NotEqual(a, DeviceIdentity.UuidFrom("123457"));
        Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", a);
        Assert.Equal("pearl2-123456", new DeviceIdentity("123456").HostName);
    }
}
