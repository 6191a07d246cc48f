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

    /// <summary>One connection from a LAN host.</summary>
    static readonly AuthPeer Peer = new(1, System.Net.IPAddress.Parse("192.0.2.7"));

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

        Assert.Equal(AuthOutcome.Missing, auth.Check(Describe(null), creds, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(Answer(auth, nonce, algorithm, "right-one")), creds, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(Answer(auth, nonce, algorithm, "wrong-one")), creds, Peer, out var user, out var why));
        Assert.Equal(("viewer", "wrong user name or password"), (user, why));
        Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(Answer(auth, nonce[..10] + (nonce[10] == '0' ? '1' : '0') + nonce[11..], algorithm, "right-one")), creds, Peer, out _, out why));
        Assert.Equal("nonce not issued by this device", why);

        time.Now += TimeSpan.FromMinutes(6);
        // The connection that used the nonce keeps it; another connection (a replay, or the client reconnecting) is told it is stale.
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(Answer(auth, nonce, algorithm, "right-one")), creds, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Stale, auth.Check(Describe(Answer(auth, nonce, algorithm, "right-one")), creds, Peer with { Connection = 2 }, out _, out _));
        var unused = auth.NewNonce();
        time.Now += TimeSpan.FromMinutes(6);
        Assert.Equal(AuthOutcome.Stale, auth.Check(Describe(Answer(auth, unused, algorithm, "right-one")), creds, Peer, out _, out why));
        Assert.Equal("nonce expired", why);
        var challenge = Encoding.ASCII.GetString(auth.Challenge(2, creds, stale: true).ToArray());
        Assert.Contains("WWW-Authenticate: Digest realm=\"Pearl2\"", challenge);
        Assert.Contains("algorithm=SHA-256, stale=true, qop=\"auth\"", challenge);
        Assert.True(challenge.IndexOf("SHA-256", StringComparison.Ordinal) < challenge.IndexOf("algorithm=MD5", StringComparison.Ordinal));
        Assert.DoesNotContain("Basic", challenge);
    }

    static string AnswerQop(string nonce, string nc, string password, string uri = "rtsp://d/stream.sdp", string requestUri = "rtsp://d/stream.sdp") =>
        $"Digest username=\"viewer\", realm=\"{ViewerAuth.Realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"c0ffee\", response=\"" +
        DigestAuth.ExpectedResponse("MD5", "viewer", ViewerAuth.Realm, password, "DESCRIBE", uri, nonce, "auth", nc, "c0ffee") + "\"";

    [Fact]
    public void ACapturedAuthorizationCannotBePlayedAgain()
    {
        var time = new ManualTime();
        var auth = new ViewerAuth(time, ViewerAuth.DefaultNonceLifetime);
        var creds = new ViewerCredentials("viewer", "right-one");
        var other = Peer with { Connection = 99, Address = System.Net.IPAddress.Parse("192.0.2.66") };

        // Without qop (RTSP players): the nonce belongs to the first connection that answered with it.
        var nonce = auth.NewNonce();
        var header = Answer(auth, nonce, "MD5", "right-one");
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(header), creds, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(header), creds, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Stale, auth.Check(Describe(header), creds, other, out _, out var why));
        Assert.Equal("nonce used on another connection", why);

        // With qop (browsers, ffmpeg's HTTP): every request counts higher, on any connection; a count seen before is refused.
        var n2 = auth.NewNonce();
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(AnswerQop(n2, "00000001", "right-one")), creds, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Stale, auth.Check(Describe(AnswerQop(n2, "00000001", "right-one")), creds, other, out _, out why));
        Assert.Equal("nonce count reused (replayed request)", why);
        Assert.Equal(AuthOutcome.Stale, auth.Check(Describe(AnswerQop(n2, "00000001", "right-one")), creds, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(AnswerQop(n2, "00000002", "right-one")), creds, Peer with { Connection = 3 }, out _, out _));
        Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(AnswerQop(n2, "zz", "right-one")), creds, Peer, out _, out why));

        // uri= must name the request's own target (an answer made for another URL is not a key to this one).
        var n3 = auth.NewNonce();
        Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(AnswerQop(n3, "00000001", "right-one", uri: "rtsp://d/other")), creds, Peer, out _, out why));
        Assert.Equal("uri does not match the request", why);
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(AnswerQop(n3, "00000001", "right-one", uri: "/stream.sdp")), creds, Peer, out _, out _));

        // A nonce not yet used goes stale after a minute; the connection that used one keeps it (keep-alives of a long session).
        var n4 = auth.NewNonce();
        time.Now += ViewerAuth.DefaultNonceLifetime + TimeSpan.FromSeconds(1);
        Assert.Equal(AuthOutcome.Stale, auth.Check(Describe(Answer(auth, n4, "MD5", "right-one")), creds, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(header), creds, Peer, out _, out _));
        // Stale is only ever said to the right password: a wrong one with an old nonce is refused.
        Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(Answer(auth, n4, "MD5", "wrong")), creds, Peer, out _, out _));
    }

    [Theory]
    [InlineData("rtsp://d/stream.sdp", "rtsp://d/stream.sdp", true)]
    [InlineData("/stream.sdp", "rtsp://192.0.2.1:554/stream.sdp", true)]
    [InlineData("rtsp://other-name/stream.sdp/trackID=0", "rtsp://d/stream.sdp/trackID=0", true)]
    [InlineData("/stream.ts?token=1", "/stream.ts", false)]
    [InlineData("rtsp://d/", "rtsp://d/stream.sdp", false)]
    [InlineData("rtsp://d", "rtsp://d/", true)]
    public void DigestUriNamesTheRequestTarget(string digestUri, string requestUri, bool same) => Assert.Equal(same, ViewerAuth.SameTarget(digestUri, requestUri));

    [Fact]
    public void FailedLoginsFromOneAddressAreSlowedThenBlocked()
    {
        var time = new ManualTime();
        var throttle = new LoginThrottle(time);
        var auth = new ViewerAuth(time, ViewerAuth.DefaultNonceLifetime, throttle);
        var creds = new ViewerCredentials("viewer", "right-one");
        var guesser = Peer with { Address = System.Net.IPAddress.Parse("2001:db8:1:2::10") };
        var neighbour = Peer with { Address = System.Net.IPAddress.Parse("2001:db8:1:2::99") }; // the same /64: the same host, to us
        var elsewhere = Peer with { Address = System.Net.IPAddress.Parse("192.0.2.8") };
        var delays = new List<TimeSpan>();
        for (int i = 1; i < LoginThrottle.FailuresToBlock; i++)
        {
            Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(Answer(auth, auth.NewNonce(), "MD5", $"guess{i}")), creds, i % 2 == 0 ? guesser : neighbour, out _, out _));
            delays.Add(throttle.DelayFor(guesser.Address));
        }
        Assert.All(delays.Take(LoginThrottle.FreeFailures), d => Assert.Equal(TimeSpan.Zero, d));
        Assert.True(delays[^1] > delays[LoginThrottle.FreeFailures], "later guesses wait longer");
        Assert.True(delays[^1] <= LoginThrottle.MaxDelay);
        Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(Answer(auth, auth.NewNonce(), "MD5", "last-guess")), creds, guesser, out _, out _));
        // Blocked: even the right password is not judged, on any door (tokens too), while others are served.
        Assert.Equal(AuthOutcome.Throttled, auth.Check(Describe(Answer(auth, auth.NewNonce(), "MD5", "right-one")), creds, guesser, out _, out _));
        Assert.Equal(AuthOutcome.Throttled, auth.Authorize(HttpGet($"/stream.ts?token={auth.IssueToken(1, creds, out _)}"), 1, creds, neighbour, out _, out _));
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(Answer(auth, auth.NewNonce(), "MD5", "right-one")), creds, elsewhere, out _, out _));
        Assert.Equal((int)LoginThrottle.BlockFor.TotalSeconds, throttle.RetryAfterSeconds(guesser.Address));
        time.Now += LoginThrottle.BlockFor + TimeSpan.FromSeconds(1);
        Assert.Equal(0, throttle.RetryAfterSeconds(guesser.Address));
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(Answer(auth, auth.NewNonce(), "MD5", "right-one")), creds, guesser, out _, out _));
        // A success forgets the address; a challenge asked for (no header) is no failure.
        Assert.Equal(TimeSpan.Zero, throttle.DelayFor(guesser.Address));
        for (int i = 0; i < 50; i++) Assert.Equal(AuthOutcome.Missing, auth.Check(Describe(null), creds, guesser, out _, out _));
        Assert.Equal(0, throttle.RetryAfterSeconds(guesser.Address));
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

        Assert.Equal(AuthOutcome.Accepted, auth.Authorize(HttpGet($"/stream.ts?token={token}"), 1, creds, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Accepted, auth.Authorize(HttpGet($"/preview.jpg?width=320&token={token}"), 1, creds, Peer, out _, out _));
        // Another channel, another login (a changed password), another device's key, a flipped bit, garbage: refused.
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet($"/stream.ts?token={token}"), 2, creds, Peer, out _, out var why));
        Assert.Equal("token not issued for this channel and login", why);
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet($"/stream.ts?token={token}"), 1, creds with { Password = "new-one" }, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Refused, new ViewerAuth(time, TimeSpan.FromMinutes(5)).Authorize(HttpGet($"/stream.ts?token={token}"), 1, creds, Peer, out _, out _));
        var forged = token[..47] + (token[47] == '0' ? '1' : '0');
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet($"/stream.ts?token={forged}"), 1, creds, Peer, out _, out _));
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet("/stream.ts?token=zz"), 1, creds, Peer, out _, out why));
        Assert.Equal("malformed token", why);
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet("/stream.ts?token="), 1, creds, Peer, out _, out _));

        time.Now += ViewerAuth.TokenLifetime + TimeSpan.FromSeconds(1);
        Assert.Equal(AuthOutcome.Refused, auth.Authorize(HttpGet($"/stream.ts?token={token}"), 1, creds, Peer, out _, out why));
        Assert.Equal("token expired", why);
        // Without a token the request is judged by its Authorization header, as on RTSP.
        Assert.Equal(AuthOutcome.Missing, auth.Authorize(HttpGet("/stream.ts"), 1, creds, Peer, out _, out _));
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
        Assert.Equal(AuthOutcome.Refused, auth.Check(Describe(basic), new ViewerCredentials("viewer", "right-one"), Peer, out _, out _));
        Assert.Equal(AuthOutcome.Accepted, auth.Check(Describe(basic), new ViewerCredentials("viewer", "right-one", AllowBasic: true), Peer, out _, out _));
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
