using System.Buffers;
using System.Text;
using Pearl2.Formats.Rtsp;
using Xunit;

namespace Pearl2.Tests.Unit;

public class RtspMessageTests
{
    static ReadOnlySequence<byte> Seq(string s) => new(Encoding.ASCII.GetBytes(s));

    [Fact]
    public void ParsesRequestFromRfc2326Example()
    {
        // RFC 2326 §10.2 DESCRIBE example (C->M).
        var text = "DESCRIBE rtsp://server.example.com/fizzle/foo RTSP/1.0\r\nCSeq: 312\r\nAccept: application/sdp, application/rtsl, application/mheg\r\n\r\n";
        var status = RtspRequestParser.TryParse(Seq(text + "OPTIONS"), out var req, out long consumed, out _);
        Assert.Equal(RtspParseStatus.Complete, status);
        Assert.Equal(text.Length, consumed);
        Assert.Equal("DESCRIBE", req!.Method);
        Assert.Equal("rtsp://server.example.com/fizzle/foo", req.Uri);
        Assert.Equal("/fizzle/foo", req.Path);
        Assert.Equal("RTSP/1.0", req.Version);
        Assert.Equal(312, req.CSeq);
        Assert.Equal("application/sdp, application/rtsl, application/mheg", req["accept"]);
    }

    [Fact]
    public void ReadsBodyByContentLength()
    {
        var text = "SET_PARAMETER rtsp://h/ RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 5\r\n\r\nab";
        Assert.Equal(RtspParseStatus.Incomplete, RtspRequestParser.TryParse(Seq(text), out _, out _, out _));
        Assert.Equal(RtspParseStatus.Complete, RtspRequestParser.TryParse(Seq(text + "cde"), out var req, out long consumed, out _));
        Assert.Equal("abcde", Encoding.ASCII.GetString(req!.Body.Span));
        Assert.Equal(text.Length + 3, consumed);
    }

    [Fact]
    public void SplitAnywhereIsIncompleteUntilTheEnd()
    {
        var text = "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n";
        for (int i = 0; i < text.Length; i++)
            Assert.Equal(RtspParseStatus.Incomplete, RtspRequestParser.TryParse(Seq(text[..i]), out _, out _, out _));
    }

    [Fact]
    public void MissingCSeqParsesWithMinusOne()
    {
        Assert.Equal(RtspParseStatus.Complete, RtspRequestParser.TryParse(Seq("OPTIONS * RTSP/1.0\r\nUser-Agent: x\r\n\r\n"), out var req, out _, out _));
        Assert.Equal(-1, req!.CSeq);
    }

    [Theory]
    [InlineData("hello\r\n\r\n")]
    [InlineData("OPTIONS\r\n\r\n")]
    [InlineData("OPTIONS * HTTP/1.1\r\nCSeq: 1\r\n\r\n")]
    [InlineData("OPTIONS * RTSP/1.0\r\nno colon here\r\n\r\n")]
    [InlineData("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: -4\r\n\r\n")]
    [InlineData("OPT(ONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")]
    public void GarbageIsMalformedAndConsumed(string text)
    {
        Assert.Equal(RtspParseStatus.Malformed, RtspRequestParser.TryParse(Seq(text + "OPTIONS * RTSP/1.0\r\n"), out _, out long consumed, out var error));
        Assert.Equal(text.Length, consumed);
        Assert.False(string.IsNullOrEmpty(error));
    }

    [Fact]
    public void HeadersOver8KiBAreTooLarge()
    {
        var big = "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Big: " + new string('a', 9000);
        Assert.Equal(RtspParseStatus.TooLarge, RtspRequestParser.TryParse(Seq(big), out _, out _, out _));
        Assert.Equal(RtspParseStatus.TooLarge, RtspRequestParser.TryParse(Seq(big + "\r\n\r\n"), out _, out _, out _));
    }

    [Fact]
    public void ResponseBytes()
    {
        var r = new RtspResponse(200) { CSeq = 312 }.Add("Session", "47112344");
        Assert.Equal("RTSP/1.0 200 OK\r\nCSeq: 312\r\nSession: 47112344\r\n\r\n", Encoding.ASCII.GetString(r.ToArray()));
        var withBody = new RtspResponse(404) { CSeq = 3 }.WithBody("text/plain", "no");
        Assert.Equal("RTSP/1.0 404 Not Found\r\nCSeq: 3\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nno", Encoding.ASCII.GetString(withBody.ToArray()));
        Assert.Equal(withBody.Size, withBody.ToArray().Length);
    }

    [Theory]
    [InlineData("RTP/AVP/TCP;unicast;interleaved=0-1", "RTP/AVP/TCP;unicast;interleaved=0-1")]
    [InlineData("RTP/AVP;unicast;client_port=3456-3457;mode=play", "RTP/AVP;unicast;client_port=3456-3457;mode=play")]
    [InlineData("RTP/AVP/UDP;unicast;client_port=5000-5001", "RTP/AVP;unicast;client_port=5000-5001")]
    [InlineData("rtp/avp/tcp;interleaved=4", "RTP/AVP/TCP;unicast;interleaved=4-5")]
    [InlineData("RTP/AVP;multicast;ttl=127;mode=\"PLAY\"", "RTP/AVP;multicast;mode=PLAY")]
    [InlineData("RTP/AVP;unicast;client_port=1-2;server_port=3-4;ssrc=0000ABCD", "RTP/AVP;unicast;client_port=1-2;server_port=3-4;ssrc=0000ABCD")]
    public void TransportRoundTrips(string input, string written)
    {
        Assert.True(TransportHeader.TryParse(input, out var specs, out var error), error);
        Assert.Equal(written, Assert.Single(specs).ToString());
    }

    [Fact]
    public void TransportListKeepsPreferenceOrder()
    {
        Assert.True(TransportHeader.TryParse("RTP/AVP/UDP;unicast;client_port=5000-5001, RTP/AVP/TCP;unicast;interleaved=0-1", out var specs, out _));
        Assert.Equal(2, specs.Count);
        Assert.Equal(RtpLowerTransport.Udp, specs[0].Lower);
        Assert.Equal((5000, 5001), specs[0].ClientPort);
        Assert.Equal(RtpLowerTransport.Tcp, specs[1].Lower);
        Assert.Equal((0, 1), specs[1].Interleaved);
    }

    [Theory]
    [InlineData("")]
    [InlineData("RAW/RAW/UDP;unicast")]
    [InlineData("RTP/AVP/SCTP;unicast")]
    [InlineData("RTP/AVP/TCP;interleaved=300-301")]
    [InlineData("RTP/AVP;client_port=70000-70001")]
    [InlineData("RTP/AVP;client_port=a-b")]
    [InlineData("RTP/AVP;ssrc=XYZ")]
    public void BadTransportsAreRefused(string input) => Assert.False(TransportHeader.TryParse(input, out _, out _));

    [Theory]
    [InlineData("47112344", "47112344", null)]
    [InlineData("47112344;timeout=60", "47112344", 60)]
    [InlineData(" abc$-_.+ ; timeout=5 ", "abc$-_.+", 5)]
    public void SessionHeaderParses(string input, string id, int? timeout)
    {
        Assert.True(SessionHeader.TryParse(input, out var s));
        Assert.Equal(id, s.Id);
        Assert.Equal(timeout, s.TimeoutSeconds);
    }

    [Theory]
    [InlineData("")]
    [InlineData("a b")]
    [InlineData("id;timeout=x")]
    public void BadSessionHeadersAreRefused(string input) => Assert.False(SessionHeader.TryParse(input, out _));

    [Fact]
    public void SessionHeaderWrites() => Assert.Equal("abc;timeout=60", new SessionHeader("abc", 60).ToString());

    [Fact]
    public void InterleavedHeader()
    {
        var b = new byte[4];
        InterleavedFrame.WriteHeader(b, 2, 0x1234);
        Assert.Equal(new byte[] { 0x24, 0x02, 0x12, 0x34 }, b);
        Assert.True(InterleavedFrame.TryReadHeader(b, out var ch, out var len));
        Assert.Equal((2, 0x1234), (ch, len));
    }
}
