using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Pearl2.Formats.Ftp;

namespace Pearl2.Services.Upload;

/// <summary>Where and how to log in to an FTP server; <see cref="Tls"/> is explicit FTPS (RFC 4217: AUTH TLS on the control port).</summary>
public sealed record FtpEndpoint(string Host, int Port, string User, string Password, bool Tls, string? PinnedSha256, TimeSpan Timeout);

/// <summary>The server refused our login (530) or our certificate check failed: retrying will not help until the settings change.</summary>
public sealed class UploadRefusedException(string message) : Exception(message);

/// <summary>Any other failure of one step (a reply we did not want, a timeout, a dropped connection): worth another try later.</summary>
public sealed class UploadFailedException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Our own small FTP client (RFC 959, 2228/4217 for explicit TLS, 2428 for EPSV, 3659 for SIZE and REST STREAM): one
/// control connection, binary type, passive data connections (EPSV, PASV when the server does not know it), every step
/// bounded by the endpoint's timeout. With TLS the data connections are protected too (PBSZ 0, PROT P) and resume the
/// control connection's TLS session, as vsftpd's require_ssl_reuse asks.
/// </summary>
public sealed class FtpClient : IAsyncDisposable
{
    readonly FtpEndpoint _ep;
    readonly TcpClient _tcp;
    Stream _control = Stream.Null;   // the socket's stream once connected, then the TLS stream over it
    readonly byte[] _buffer = new byte[16 * 1024];
    int _buffered;
    bool _epsvRefused;
    SslClientAuthenticationOptions? _tls;

    FtpClient(FtpEndpoint ep, TcpClient tcp)
    {
        _ep = ep; _tcp = tcp;
    }

    /// <summary>Connects, reads the greeting, secures the connection when asked, logs in and sets binary type.</summary>
    public static async Task<FtpClient> ConnectAsync(FtpEndpoint ep, CancellationToken ct)
    {
        var tcp = new TcpClient { NoDelay = true };
        var client = new FtpClient(ep, tcp);
        try
        {
            using (var t = client.Step(ct)) await tcp.ConnectAsync(ep.Host, ep.Port, t.Token);
            client._control = tcp.GetStream();
            client.Expect(await client.ReadReplyAsync(ct), 220, "greeting");
            if (ep.Tls)
            {
                client.Expect(await client.CommandAsync("AUTH", "TLS", ct), 234, "AUTH TLS");
                client._tls = new SslClientAuthenticationOptions
                {
                    // .NET keeps TLS sessions for resumption by target host, and not for an IP address (there is no SNI
                    // for one). vsftpd refuses data connections that do not resume the control connection's session,
                    // so a server given by address gets a stand-in name here; the certificate is still checked against
                    // the address (CheckCertificate).
                    TargetHost = IPAddress.TryParse(ep.Host, out _) ? "ftps-" + ep.Host.Replace('.', '-').Replace(':', '-') + ".invalid" : ep.Host,
                    EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                    RemoteCertificateValidationCallback = client.CheckCertificate,
                    AllowTlsResume = true,
                };
                var ssl = new SslStream(client._control, leaveInnerStreamOpen: false);
                using (var t = client.Step(ct)) await ssl.AuthenticateAsClientAsync(client._tls, t.Token);
                client._control = ssl;
            }
            var user = await client.CommandAsync("USER", ep.User, ct);
            if (user.Code == 331) user = await client.CommandAsync("PASS", ep.Password, ct);
            if (user.Code is 530 or 532) throw new UploadRefusedException($"login refused: {user}");
            client.Expect(user, 230, "login");
            if (ep.Tls)
            {
                client.Expect(await client.CommandAsync("PBSZ", "0", ct), 200, "PBSZ 0");
                client.Expect(await client.CommandAsync("PROT", "P", ct), 200, "PROT P");
            }
            client.Expect(await client.CommandAsync("TYPE", "I", ct), 200, "TYPE I");
            return client;
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or AuthenticationException)
        {
            await client.DisposeAsync();
            if (e is AuthenticationException) throw new UploadRefusedException(client._certificateRefused ?? $"TLS: {e.Message}");
            if (e is OperationCanceledException && ct.IsCancellationRequested) throw;
            throw new UploadFailedException($"{ep.Host}:{ep.Port}: {e.Message}{(e.InnerException is { } inner ? " (" + inner.Message + ")" : "")}", e);
        }
        catch { await client.DisposeAsync(); throw; }
    }

    /// <summary>A pinned SHA-256 of the server's certificate, when set, is the whole check; otherwise the system's trust store and the host name.</summary>
    bool CheckCertificate(object sender, X509Certificate? cert, X509Chain? chain, SslPolicyErrors errors)
    {
        if (cert is null) { _certificateRefused = "TLS: the server sent no certificate"; return false; }
        string sha = Convert.ToHexStringLower(SHA256.HashData(cert.GetRawCertData()));
        if (_ep.PinnedSha256 is { } pin)
        {
            if (string.Equals(sha, pin.Replace(":", "").ToLowerInvariant(), StringComparison.Ordinal)) return true;
            _certificateRefused = $"TLS: the server's certificate (SHA-256 {sha}) is not the pinned one";
            return false;
        }
        // The chain must hold; the name is checked here against what the operator typed (an address too).
        if ((errors & ~SslPolicyErrors.RemoteCertificateNameMismatch) != SslPolicyErrors.None)
        {
            string why = chain?.ChainStatus.FirstOrDefault(st => st.Status != X509ChainStatusFlags.NoError).StatusInformation?.Trim() is { Length: > 0 } info ? info : errors.ToString();
            _certificateRefused = $"TLS: the server's certificate ({cert.Subject}, SHA-256 {sha}) is not trusted by the system's store: {why}; add its CA to the store or pin it (tlsPinSha256)";
            return false;
        }
        var c2 = cert as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(cert.GetRawCertData());
        if (c2.MatchesHostname(_ep.Host)) return true;
        _certificateRefused = $"TLS: the server's certificate ({cert.Subject}) does not name {_ep.Host}";
        return false;
    }

    /// <summary>Why the last certificate was refused, in the operator's words.</summary>
    string? _certificateRefused;

    /// <summary>The SHA-256 of a certificate as <see cref="FtpEndpoint.PinnedSha256"/> takes it.</summary>
    public static string Fingerprint(X509Certificate cert) => Convert.ToHexStringLower(SHA256.HashData(cert.GetRawCertData()));

    CancellationTokenSource Step(CancellationToken ct)
    {
        var t = CancellationTokenSource.CreateLinkedTokenSource(ct);
        t.CancelAfter(_ep.Timeout);
        return t;
    }

    void Expect(FtpReply r, int code, string what)
    {
        if (r.Code != code) throw new UploadFailedException($"{what}: {r}");
    }

    public async Task<FtpReply> CommandAsync(string verb, string? argument, CancellationToken ct)
    {
        using (var t = Step(ct)) await _control.WriteAsync(FtpCommand.Write(verb, argument), t.Token);
        return await ReadReplyAsync(ct);
    }

    /// <summary>The next reply on the control connection, within the timeout.</summary>
    async Task<FtpReply> ReadReplyAsync(CancellationToken ct)
    {
        using var t = Step(ct);
        while (true)
        {
            var status = FtpReply.TryParse(_buffer.AsSpan(0, _buffered), out var reply, out int consumed, out var error);
            if (status == FtpParseStatus.Complete)
            {
                Buffer.BlockCopy(_buffer, consumed, _buffer, 0, _buffered - consumed);
                _buffered -= consumed;
                return reply!;
            }
            if (status == FtpParseStatus.Malformed) throw new UploadFailedException($"the server's reply is not FTP: {error}");
            if (_buffered == _buffer.Length) throw new UploadFailedException("a reply larger than 16 KiB");
            int n = await _control.ReadAsync(_buffer.AsMemory(_buffered), t.Token);
            if (n == 0) throw new UploadFailedException("the server closed the control connection");
            _buffered += n;
        }
    }

    /// <summary>The size of a remote file (SIZE), or null when it is not there.</summary>
    public async Task<long?> SizeAsync(string path, CancellationToken ct)
    {
        var r = await CommandAsync("SIZE", path, ct);
        if (r.Code == 213 && FtpReply.TryParseSize(r.Text, out long size)) return size;
        if (r.Code is 550 or 450) return null;
        throw new UploadFailedException($"SIZE {path}: {r}");
    }

    /// <summary>Makes every folder of <paramref name="dir"/> ("a/b/c") that is missing, from the login directory.</summary>
    public async Task MakeDirectoriesAsync(string dir, CancellationToken ct)
    {
        string sofar = "";
        foreach (var part in dir.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            sofar = sofar.Length == 0 ? part : sofar + "/" + part;
            var r = await CommandAsync("MKD", sofar, ct);
            if (r.Code == 257) continue;
            // 550 when it exists (or cannot be made: the upload that follows says which).
            if (r.Code != 550) throw new UploadFailedException($"MKD {sofar}: {r}");
        }
    }

    /// <summary>
    /// Sends <paramref name="local"/> from <paramref name="offset"/> to <paramref name="path"/> (REST then STOR: the
    /// server appends at that offset), calling <paramref name="progress"/> with the bytes sent so far. The upload is
    /// done when the server says 226 after the data connection closed.
    /// </summary>
    public async Task UploadAsync(Stream local, string path, long offset, Func<long, Task> progress, CancellationToken ct)
    {
        var (host, port) = await PassiveAsync(ct);
        if (offset > 0)
        {
            var rest = await CommandAsync("REST", offset.ToString(System.Globalization.CultureInfo.InvariantCulture), ct);
            if (rest.Code != 350) throw new UploadFailedException($"REST {offset}: {rest}");
        }
        var data = new TcpClient { NoDelay = false };
        try
        {
            using (var t = Step(ct)) await data.ConnectAsync(host, port, t.Token);
            using (var t = Step(ct)) await _control.WriteAsync(FtpCommand.Write("STOR", path), t.Token);
            var start = await ReadReplyAsync(ct);
            if (start.Code is 552 or 452) throw new UploadFailedException($"the server has no room: {start}");
            if (start.Code is not (150 or 125)) throw new UploadFailedException($"STOR {path}: {start}");
            Stream stream = data.GetStream();
            if (_tls is not null)
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                using (var t = Step(ct)) await ssl.AuthenticateAsClientAsync(_tls, t.Token);
                stream = ssl;
            }
            local.Seek(offset, SeekOrigin.Begin);
            var buf = new byte[128 * 1024];
            long sent = offset;
            while (true)
            {
                int n = await local.ReadAsync(buf, ct);
                if (n == 0) break;
                using (var t = Step(ct)) await stream.WriteAsync(buf.AsMemory(0, n), t.Token);
                sent += n;
                await progress(sent);
            }
            if (stream is SslStream s) { using var t = Step(ct); await s.ShutdownAsync(); }
            await stream.DisposeAsync();
            var done = await ReadReplyAsync(ct);
            if (done.Code is 552 or 452) throw new UploadFailedException($"the server has no room: {done}");
            if (done.Code != 226) throw new UploadFailedException($"STOR {path} ended with {done}");
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or AuthenticationException)
        {
            if (e is OperationCanceledException && ct.IsCancellationRequested) throw;
            throw new UploadFailedException($"STOR {path}: {e.Message}{(e.InnerException is { } inner ? " (" + inner.Message + ")" : "")}", e);
        }
        finally { data.Dispose(); }
    }

    /// <summary>EPSV (the control connection's host) or, where the server does not know it, PASV.</summary>
    async Task<(string Host, int Port)> PassiveAsync(CancellationToken ct)
    {
        if (!_epsvRefused)
        {
            var r = await CommandAsync("EPSV", null, ct);
            if (r.Code == 229 && FtpReply.TryParseEpsv(r.Text, out int port)) return (_ep.Host, port);
            if (r.Code is not (500 or 501 or 502)) throw new UploadFailedException($"EPSV: {r}");
            _epsvRefused = true;
        }
        var p = await CommandAsync("PASV", null, ct);
        if (p.Code != 227 || !FtpReply.TryParsePasv(p.Text, out var address, out int pasvPort)) throw new UploadFailedException($"PASV: {p}");
        // The address in a PASV reply is ignored (a server behind NAT names its private one): the control connection's host it is.
        _ = address;
        return (_ep.Host, pasvPort);
    }

    public async Task RenameAsync(string from, string to, CancellationToken ct)
    {
        var a = await CommandAsync("RNFR", from, ct);
        if (a.Code != 350) throw new UploadFailedException($"RNFR {from}: {a}");
        var b = await CommandAsync("RNTO", to, ct);
        if (b.Code != 250) throw new UploadFailedException($"RNTO {to}: {b}");
    }

    public async Task DeleteAsync(string path, CancellationToken ct)
    {
        var r = await CommandAsync("DELE", path, ct);
        if (r.Code is not (250 or 550)) throw new UploadFailedException($"DELE {path}: {r}");
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_tcp.Connected)
            {
                using var t = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await _control.WriteAsync(FtpCommand.Write("QUIT"), t.Token);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException) { }
        await _control.DisposeAsync();
        _tcp.Dispose();
    }
}
