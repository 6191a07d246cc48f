using System.Net;
using System.Text;
using Pearl2.Formats.Ftp;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>FTP replies as bytes (RFC 959 §4.2, RFC 2428, RFC 3659), and commands that cannot smuggle a second one.</summary>
public class FtpReplyTests
{
    static FtpParseStatus Parse(string text, out FtpReply? reply, out int consumed) =>
        FtpReply.TryParse(Encoding.UTF8.GetBytes(text), out reply, out consumed, out _);

    [Fact]
    public void ASingleLineReplyIsItsCodeAndText()
    {
        Assert.Equal(FtpParseStatus.Complete, Parse("220 (vsFTPd 3.0.3)\r\n331 Please specify the password.\r\n", out var r, out int n));
        Assert.Equal(220, r!.Code);
        Assert.Equal("(vsFTPd 3.0.3)", r.Text);
        Assert.Equal(20, n);   // the next reply stays in the buffer
        Assert.True(r.IsPositive);
    }

    [Fact]
    public void AMultiLineReplyEndsAtItsCodeFollowedByASpace()
    {
        const string feat = "211-Features:\r\n EPRT\r\n EPSV\r\n211 nothing here\r\n MDTM\r\n211 End\r\n";
        // RFC 959: lines inside may even start with the code, as long as a hyphen or no space follows.
        Assert.Equal(FtpParseStatus.Complete, Parse("211-Features:\r\n EPSV\r\n211-still going\r\n211 End\r\n", out var r, out int n));
        Assert.Equal(4, r!.Lines.Count);
        Assert.Equal("End", r.Text);
        Assert.Equal(FtpParseStatus.Complete, Parse(feat, out r, out n));
        Assert.Equal(4, r!.Lines.Count);
        Assert.Equal("nothing here", r.Text);
        Assert.Equal(feat.IndexOf(" MDTM", StringComparison.Ordinal), n);
    }

    [Theory]
    [InlineData("220 ready")]
    [InlineData("211-Features:\r\n EPSV\r\n")]
    [InlineData("")]
    public void AReplyCutShortIsIncomplete(string text) => Assert.Equal(FtpParseStatus.Incomplete, Parse(text, out _, out _));

    [Theory]
    [InlineData("HTTP/1.1 400 Bad Request\r\n")]
    [InlineData("620 no such class\r\n")]
    [InlineData("22 short\r\n")]
    [InlineData("220x\r\n")]
    public void AReplyThatIsNotFtpIsMalformed(string text) => Assert.Equal(FtpParseStatus.Malformed, Parse(text, out _, out _));

    [Fact]
    public void LongLinesAndEndlessRepliesAreRefused()
    {
        Assert.Equal(FtpParseStatus.Malformed, Parse("220 " + new string('x', 5000) + "\r\n", out _, out _));
        Assert.Equal(FtpParseStatus.Malformed, Parse("220 " + new string('x', 5000), out _, out _));
        Assert.Equal(FtpParseStatus.Malformed, Parse("211-x\r\n" + string.Concat(Enumerable.Repeat(" line\r\n", 1200)), out _, out _));
    }

    [Fact]
    public void BareLineFeedsAreAccepted()
    {
        Assert.Equal(FtpParseStatus.Complete, Parse("230 Login successful.\n", out var r, out int n));
        Assert.Equal((230, 22), (r!.Code, n));
    }

    [Theory]
    [InlineData("Entering Passive Mode (192,0,2,1,195,80).", "192.0.2.1", 50000)]
    [InlineData("Entering Passive Mode 10,0,0,7,4,1", "10.0.0.7", 1025)]
    public void PasvGivesAnAddressAndPort(string text, string address, int port)
    {
        Assert.True(FtpReply.TryParsePasv(text, out var a, out int p));
        Assert.Equal((IPAddress.Parse(address), port), (a, p));
    }

    [Theory]
    [InlineData("Entering Extended Passive Mode (|||6446|)", 6446)]
    [InlineData("Entering Extended Passive Mode (!!!50001!)", 50001)]
    public void EpsvGivesAPort(string text, int port)
    {
        Assert.True(FtpReply.TryParseEpsv(text, out int p));
        Assert.Equal(port, p);
    }

    [Theory]
    [InlineData("Entering Passive Mode (192,0,2,1,300,80).")]
    [InlineData("Entering Passive Mode (192,0,2,1,0,0).")]
    [InlineData("no numbers")]
    public void BadPasvRepliesAreRefused(string text) => Assert.False(FtpReply.TryParsePasv(text, out _, out _));

    [Theory]
    [InlineData("Entering Extended Passive Mode (|1|192.0.2.1|6446|)")]
    [InlineData("Entering Extended Passive Mode (|||70000|)")]
    [InlineData("Entering Extended Passive Mode |||6446|")]
    public void BadEpsvRepliesAreRefused(string text) => Assert.False(FtpReply.TryParseEpsv(text, out _));

    [Fact]
    public void PathsAndSizesAreRead()
    {
        Assert.True(FtpReply.TryParsePath("\"/upload/say \"\"hi\"\"\" is the current directory", out var path));
        Assert.Equal("/upload/say \"hi\"", path);
        Assert.True(FtpReply.TryParseSize("184323243", out long size));
        Assert.Equal(184323243, size);
        Assert.False(FtpReply.TryParseSize("-1", out _));
    }

    [Fact]
    public void CommandsAreOneLineAndRefuseASecond()
    {
        Assert.Equal("STOR a b.mp4\r\n"u8.ToArray(), FtpCommand.Write("STOR", "a b.mp4"));
        Assert.Equal("PASV\r\n"u8.ToArray(), FtpCommand.Write("PASV"));
        Assert.Throws<ArgumentException>(() => FtpCommand.Write("STOR", "x.mp4\r\nDELE y"));
    }
}
