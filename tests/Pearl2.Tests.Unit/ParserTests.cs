using Pearl2.Formats.Codecs;
using Pearl2.Formats.Rtsp;
using Pearl2.Formats.Sdp;
using Xunit;

namespace Pearl2.Tests.Unit;

public class ParserTests
{
    [Theory]
    [InlineData("npt=now-", null, null, true)]
    [InlineData("npt=0.000-", 0.0, null, false)]
    [InlineData("npt=10-15.5", 10.0, 15.5, false)]
    [InlineData("npt=1:02:03.5-", 3723.5, null, false)]
    [InlineData("npt=-20", null, 20.0, false)]
    public void NptRanges(string value, double? start, double? end, bool now)
    {
        Assert.True(RangeHeader.TryParse(value, out var r));
        Assert.Equal(("npt", start, end, now), (r.Unit, r.Start, r.End, r.StartsNow));
    }

    [Fact]
    public void ClockAndSmpteAreAccepted()
    {
        Assert.True(RangeHeader.TryParse("clock=19961108T142300Z-19961108T143520Z", out var c));
        Assert.Equal("clock", c.Unit);
        Assert.True(RangeHeader.TryParse("smpte=10:07:00-10:07:33:05.01", out _));
    }

    [Theory]
    [InlineData("")]
    [InlineData("npt")]
    [InlineData("npt=abc-")]
    [InlineData("npt=5-2")]
    [InlineData("npt=-")]
    [InlineData("npt=1:99:00-")]
    [InlineData("bytes=0-100")]
    public void BadRangesAreRefused(string value) => Assert.False(RangeHeader.TryParse(value, out _));

    [Fact]
    public void SdpParserReadsWhatTheWriterWrites()
    {
        byte[] sps = [0x67, 0x42, 0xc0, 0x1e, 0xda], pps = [0x68, 0xce, 0x3c, 0x80];
        var text = SessionDescription.Write(7, "192.0.2.1", "Channel 1",
            [SessionDescription.H264(96, sps, pps, "trackID=0"), SessionDescription.Aac(97, 48000, 2, AacConfig.AudioSpecificConfig(48000, 2), "trackID=1")]);
        Assert.True(SdpParser.TryParse(text, out var sdp, out var error), error);
        Assert.Equal("Channel 1", sdp!.SessionName);
        Assert.Contains("control:*", sdp.SessionAttributes);
        Assert.Equal(2, sdp.Media.Count);
        Assert.Equal(("video", 96), (sdp.Media[0].Kind, sdp.Media[0].PayloadTypes[0]));
        Assert.Equal("trackID=1", sdp.Media[1].Attribute("control"));
        Assert.Equal("97 mpeg4-generic/48000/2", sdp.Media[1].Attribute("rtpmap"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("v=1\r\n")]
    [InlineData("v=0\r\nm=video\r\n")]
    [InlineData("v=0\r\nm=video 99999 RTP/AVP 96\r\n")]
    [InlineData("v=0\r\nm=video 0 RTP/AVP 300\r\n")]
    [InlineData("v=0\r\nnot a line\r\n")]
    public void BadSdpIsRefused(string text) => Assert.False(SdpParser.TryParse(text, out _, out _));
}
