using System.Buffers;
using System.Text;
using Pearl2.Formats.Rtsp;
using Pearl2.Services;
using Pearl2.Services.Rtsp;
using Xunit;

namespace Pearl2.Tests.Unit;

public class AuthAndTunnelTests
{
    const string Rfc7616Header = "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", algorithm=MD5, " +
        "nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, " +
        "response=\"8ca523f5e9506fed4657c9700eebdbec\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

    [Fact]
    public void ParsesTheRfc7616DigestExample()
    {
        Assert.True(AuthorizationHeader.TryParse(Rfc7616Header, out var h));
        Assert.Equal(AuthScheme.Digest, h.Scheme);
        Assert.Equal("Mufasa", h["username"]);
        Assert.Equal("00000001", h["nc"]);
        Assert.Equal("auth", h["qop"]);
        Assert.Equal("8ca523f5e9506fed4657c9700eebdbec", h["response"]);
    }

    [Theory]
    [InlineData("MD5", "8ca523f5e9506fed4657c9700eebdbec")]
    [InlineData("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")]
    public void DigestResponsesOfRfc7616Section391(string algorithm, string expected) =>
        Assert.Equal(expected, DigestAuth.ExpectedResponse(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "auth", "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"));

    [Fact]
    public void BasicHeader()
    {
        Assert.True(AuthorizationHeader.TryParse("Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("viewer:pa:ss")), out var h));
        Assert.Equal((AuthScheme.Basic, "viewer", "pa:ss"), (h.Scheme, h.BasicUser, h.BasicPassword));
        Assert.False(AuthorizationHeader.TryParse("Basic !!!", out _));
        Assert.False(AuthorizationHeader.TryParse("Bearer x", out _));
        Assert.False(AuthorizationHeader.TryParse("Digest username=\"unterminated", out _));
    }

    sealed class ManualTime : TimeProvider
    {
        public DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
        public override DateTimeOffset GetUtcNow() => Now;
    }

    static RtspRequest Describe(string? authorization)
    {
        var text = "DESCRIBE rtsp://d/stream.sdp RTSP/1.0\r\nCSeq: 2\r\n" + (authorization is null ? "" : $"Authorization: {authorization}\r\n") + "\r\n";
        RtspRequestParser.TryParse(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(text)), out var req, out _, out _);
        return req!;
    }

    static string Answer(ViewerAuth auth, string nonce, string algorithm, string password) =>
        $"Digest username=\"viewer\", realm=\"{ViewerAuth.Realm}\", nonce=\"{nonce}\", uri=\"rtsp://d/stream.sdp\", algorithm={algorithm}, response=\"" +
        DigestAuth.ExpectedResponse(algorithm, "viewer", ViewerAuth.Realm, password, "DESCRIBE", "rtsp://d/stream.sdp", nonce, null, null, null) + "\"";

    [Theory]
    [InlineData("MD5")]
    [InlineData("SHA-256")]
    public void DigestAcceptsTheRightPasswordRefusesAWrongOneAndExpiresNonces(string algorithm)
    {
        var time = new ManualTime();
        var auth = new ViewerAuth(time, TimeSpan.FromMinutes(5));
        var creds = new ViewerCredentials("viewer", "right-one");
        var nonce = auth.NewNonce();

        Assert.Equal(AuthOutcome.Missing, auth.Check(Describe(null), creds, out _, out _));
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(Answer(auth, nonce, algorithm, "right-one")), creds, out _, out _));
        Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(Answer(auth, nonce, algorithm, "wrong-one")), creds, out var user, out var why));
        Assert.Equal(("viewer", "wrong user name or password"), (user, why));
        Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(Answer(auth, nonce[..10] + (nonce[10] == '0' ? '1' : '0') + nonce[11..], algorithm, "right-one")), creds, out _, out why));
        Assert.Equal("nonce not issued by this device", why);

        time.Now += TimeSpan.FromMinutes(6);
        Assert.Equal(AuthOutcome.Stale, auth.Check(Describe(Answer(auth, nonce, algorithm, "right-one")), creds, out _, out _));
        var challenge = Encoding.ASCII.GetString(auth.Challenge(2, creds, stale: true).ToArray());
        Assert.Contains("WWW-Authenticate: Digest realm=\"Pearl2\"", challenge);
        Assert.Contains("algorithm=SHA-256, stale=true", challenge);
        Assert.True(challenge.IndexOf("SHA-256", StringComparison.Ordinal) < challenge.IndexOf("algorithm=MD5", StringComparison.Ordinal));
        Assert.DoesNotContain("Basic", challenge);
    }

    static RtspRequest HttpGet(string uri)
    {
        RtspRequestParser.TryParse(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes($"GET {uri} HTTP/1.1\r\nHost: d\r\n\r\n")), allowHttp: true, out var req, out _, out _);
        return req!;
    }

    [Fact]
    public void ViewTokensOpenOneChannelUnderOneLoginUntilTheyExpire()
    {
        var time = new ManualTime();
        var auth = new ViewerAuth(time, TimeSpan.FromMinutes(5));
        var creds = new ViewerCredentials("viewer", "right-one");
        var token = auth.IssueToken(1, creds, out var expires);
        Assert.Equal(time.Now + ViewerAuth.TokenLifetime, expires);
        Assert.Matches("^[0-9a-f]{48}$", token);

        Assert.Equal(AuthOutcome.Accepted, auth.Authorize(HttpGet($"/stream.ts?token={token}"), 1, creds, out _, out _));
        Assert.Equal(AuthOutcome.Accepted, auth.Authorize(HttpGet($"/preview.jpg?width=320&token={token}"), 1, creds, out _, out _));
        // Another channel, another login (a changed password), another device's key, a flipped bit, garbage: refused.
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet($"/stream.ts?token={token}"), 2, creds, out _, out var why));
        Assert.Equal("token not issued for this channel and login", why);
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet($"/stream.ts?token={token}"), 1, creds with { Password = "new-one" }, out _, out _));
        Assert.Equal(AuthOutcome.Refused, new ViewerAuth(time, TimeSpan.FromMinutes(5)).Authorize(HttpGet($"/stream.ts?token={token}"), 1, creds, out _, out _));
        var forged = token[..47] + (token[47] == '0' ? '1' : '0');
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet($"/stream.ts?token={forged}"), 1, creds, out _, out _));
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet("/stream.ts?token=zz"), 1, creds, out _, out why));
        Assert.Equal("malformed token", why);
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet("/stream.ts?token="), 1, creds, out _, out _));

        time.Now += ViewerAuth.TokenLifetime + TimeSpan.FromSeconds(1);
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet($"/stream.ts?token={token}"), 1, creds, out _, out why));
        Assert.Equal("token expired", why);
        // Without a token the request is judged by its Authorization header, as on RTSP.
        Assert.Equal(AuthOutcome.Missing, auth.Authorize(HttpGet("/stream.ts"), 1, creds, out _, out _));
    }

    [Theory]
    [InlineData("/stream.ts?token=abc", "token", "abc")]
    [InlineData("/preview.jpg?width=480&token=a%2Fb", "token", "a/b")]
    [InlineData("/preview.jpg?width=480&tokens=x", "token", null)]
    [InlineData("rtsp://h:554/stream.sdp?token", "token", "")]
    [InlineData("/stream.ts", "token", null)]
    public void QueryValues(string uri, string name, string? value) => Assert.Equal(value, RtspUri.QueryValue(uri, name));

    [Fact]
    public void BasicOnlyWhenAllowed()
    {
        var auth = new ViewerAuth(TimeProvider.System, TimeSpan.FromMinutes(5));
        var basic = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("viewer:right-one"));
        Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(basic), new ViewerCredentials("viewer", "right-one"), out _, out _));
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(basic), new ViewerCredentials("viewer", "right-one", AllowBasic: true), out _, out _));
        Assert.Contains("Basic realm", Encoding.ASCII.GetString(auth.Challenge(1, new ViewerCredentials("v", "pppp", true), false).ToArray()));
    }

    [Fact]
    public void Base64StreamDecodesCommandsSplitAnywhere()
    {
        var commands = "OPTIONS rtsp://h/ RTSP/1.0\r\nCSeq: 1\r\n\r\n" + "DESCRIBE rtsp://h/ RTSP/1.0\r\nCSeq: 2\r\n\r\n";
        // Each command base64-encoded on its own, with its padding, as QuickTime-style clients send them.
        var wire = Encoding.ASCII.GetBytes(Convert.ToBase64String(Encoding.ASCII.GetBytes(commands[..40])) + "\r\n" + Convert.ToBase64String(Encoding.ASCII.GetBytes(commands[40..])));
        for (int cut1 = 0; cut1 < wire.Length; cut1 += 3)
            for (int cut2 = cut1; cut2 < wire.Length; cut2 += 7)
            {
                var decoder = new Base64Stream();
                var output = new byte[wire.Length];
                int n = decoder.Decode(wire.AsSpan(0, cut1), output);
                n += decoder.Decode(wire.AsSpan(cut1, cut2 - cut1), output.AsSpan(n));
                n += decoder.Decode(wire.AsSpan(cut2), output.AsSpan(n));
                Assert.True(decoder.Valid);
                Assert.Equal(commands, Encoding.ASCII.GetString(output, 0, n));
            }
    }

    [Fact]
    public void Base64StreamRefusesWhatIsNotBase64()
    {
        var decoder = new Base64Stream();
        decoder.Decode("T1BU*"u8, new byte[16]);
        Assert.False(decoder.Valid);
    }

    [Fact]
    public void HttpRequestLineOnlyWhenAllowed()
    {
        var get = new ReadOnlySequence<byte>("GET /stream.sdp HTTP/1.0\r\nx-sessioncookie: abc\r\n\r\n"u8.ToArray());
        Assert.Equal(RtspParseStatus.Malformed, RtspRequestParser.TryParse(get, out _, out _, out _));
        Assert.Equal(RtspParseStatus.Complete, RtspRequestParser.TryParse(get, allowHttp: true, out var req, out _, out _));
        Assert.Equal("abc", req!["x-sessioncookie"]);
        var post = new ReadOnlySequence<byte>("POST /stream.sdp HTTP/1.0\r\nx-sessioncookie: abc\r\nContent-Length: 32767\r\n\r\nT1BU"u8.ToArray());
        Assert.Equal(RtspParseStatus.Complete, RtspRequestParser.TryParse(post, allowHttp: true, out _, out long consumed, out _));
        Assert.Equal(post.Length - 4, consumed); // the body is the tunnel's, not the request's
    }
}
