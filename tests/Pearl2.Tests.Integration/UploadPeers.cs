using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// A real vsftpd (plain FTP and explicit FTPS on one port, TLS session reuse required on data connections, as vsftpd
/// ships) on 127.0.0.1, logging every command. Its test user exists only inside a private mount namespace: a copy of
/// /etc/passwd, shadow and group with the user added is bind-mounted there, so nothing on the machine changes.
/// </summary>
public sealed class VsftpdPeer : IAsyncDisposable
{
    public const string User = "pearl2up", Password = "up pw 1";
    readonly Process _p;
    public string Dir { get; }
    public int Port { get; }
    /// <summary>Where uploads land: the user's home (the login directory).</summary>
    public string Home => Path.Combine(Dir, "home");
    public string CertificateSha256 { get; }
    public string Log => File.Exists(Path.Combine(Dir, "vsftpd.log")) ? File.ReadAllText(Path.Combine(Dir, "vsftpd.log")) : "";

    VsftpdPeer(Process p, string dir, int port, string sha) { _p = p; Dir = dir; Port = port; CertificateSha256 = sha; }

    /// <param name="homeKb">When set, the home is a tmpfs of that size inside the server's namespace: a disk that fills up.</param>
    /// <param name="ipv6">Listen on ::1 only (no IPv4 at all), as an IPv6-only server would.</param>
    public static async Task<VsftpdPeer> StartAsync(int? port = null, string? dir = null, string extraConfig = "", int? homeKb = null, bool ipv6 = false)
    {
        Peers.Require("vsftpd");
        dir ??= Directory.CreateTempSubdirectory("pearl2-vsftpd").FullName;
        // The test user must reach its home below it (a temporary directory is made 0700).
        await Peers.RunAsync("chmod", ["755", dir], TimeSpan.FromSeconds(10));
        int p = port ?? Peers.FreePortBase(1);
        int pasv = Peers.FreePortBase(20);
        Directory.CreateDirectory(Path.Combine(dir, "home"));
        Directory.CreateDirectory(Path.Combine(dir, "etc"));
        if (!File.Exists(Path.Combine(dir, "cert.pem")))
        {
            var r = await Peers.RunAsync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", Path.Combine(dir, "key.pem"),
                "-out", Path.Combine(dir, "cert.pem"), "-days", "30", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"], TimeSpan.FromSeconds(30));
            if (r.ExitCode != 0) throw new InvalidOperationException("openssl: " + r.Stderr);
            await TestUser.WriteAsync(dir, User, Password);
        }
        File.WriteAllText(Path.Combine(dir, "vsftpd.conf"), $"""
            {(ipv6 ? "listen=NO\nlisten_ipv6=YES\nlisten_address6=::1" : "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1")}
            listen_port={p}
            background=NO
            anonymous_enable=NO
            local_enable=YES
            write_enable=YES
            local_umask=022
            pasv_enable=YES
            pasv_min_port={pasv}
            pasv_max_port={pasv + 19}
            seccomp_sandbox=NO
            secure_chroot_dir=/run/vsftpd/empty
            pam_service_name=vsftpd
            ssl_enable=YES
            allow_anon_ssl=NO
            force_local_data_ssl=NO
            force_local_logins_ssl=NO
            require_ssl_reuse=YES
            rsa_cert_file={dir}/cert.pem
            rsa_private_key_file={dir}/key.pem
            vsftpd_log_file={dir}/vsftpd.log
            xferlog_enable=YES
            log_ftp_protocol=YES
            {extraConfig}
            """);
        File.WriteAllText(Path.Combine(dir, "run.sh"), $"""
            set -e
            mount -t tmpfs tmpfs /run
            mkdir -p /run/vsftpd/empty
            {TestUser.Mounts(dir)}
            {(homeKb is { } kb ? $"mount -t tmpfs -o size={kb}k,mode=755,uid=4242,gid=4242 tmpfs {dir}/home" : "")}
            exec vsftpd {dir}/vsftpd.conf
            """);
        var psi = new ProcessStartInfo("setsid", ["unshare", "-m", "--propagation", "private", "bash", Path.Combine(dir, "run.sh")]) { RedirectStandardOutput = true, RedirectStandardError = true };
        var proc = Process.Start(psi)!;
        _ = proc.StandardOutput.ReadToEndAsync();
        _ = proc.StandardError.ReadToEndAsync();
        var cert = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(dir, "cert.pem")));
        var peer = new VsftpdPeer(proc, dir, p, Convert.ToHexStringLower(SHA256.HashData(cert.RawData)));
        var at = ipv6 ? System.Net.IPAddress.IPv6Loopback : System.Net.IPAddress.Loopback;
        for (int i = 0; i < 100 && !Peers.TcpListening(p, at); i++) await Task.Delay(50);
        if (!Peers.TcpListening(p, at)) { await peer.DisposeAsync(); throw new InvalidOperationException("vsftpd did not start"); }
        return peer;
    }

    /// <summary>The home as the server sees it (its own tmpfs when it has one), from outside its namespace.</summary>
    public string ServerHome => $"/proc/{_p.Id}/root{Home}";

    /// <summary>Successful logins and STORs per path, from the protocol log.</summary>
    public int Logins => Regex.Matches(Log, @"OK LOGIN").Count;
    public int FailedLogins => Regex.Matches(Log, @"FAIL LOGIN").Count;

    /// <summary>Stops the server (the files stay); <see cref="StartAsync"/> with the same dir and port brings it back.</summary>
    public async ValueTask DisposeAsync()
    {
        // The listener and every session process it forked (they outlive a TERM to the listener and finish their transfer):
        // the server goes away at once, mid-transfer too.
        await Peers.RunAsync("pkill", ["-KILL", "-f", $"vsftpd {Dir}/vsftpd.conf"], TimeSpan.FromSeconds(10));
        await Peers.RunAsync("kill", ["-TERM", "--", $"-{_p.Id}"], TimeSpan.FromSeconds(10));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try { await _p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { await Peers.RunAsync("kill", ["-KILL", "--", $"-{_p.Id}"], TimeSpan.FromSeconds(10)); }
    }
}

/// <summary>
/// A login that exists only in a test server's private mount namespace: copies of /etc/passwd, shadow and group with
/// the user added (home DIR/home, uid 4242), bind-mounted over the real ones inside the namespace only.
/// </summary>
static class TestUser
{
    public static async Task WriteAsync(string dir, string user, string password)
    {
        Directory.CreateDirectory(Path.Combine(dir, "etc"));
        Directory.CreateDirectory(Path.Combine(dir, "home"));
        string hash = (await Peers.RunAsync("openssl", ["passwd", "-6", password], TimeSpan.FromSeconds(10))).Stdout.Trim();
        File.WriteAllText(Path.Combine(dir, "etc", "passwd"), File.ReadAllText("/etc/passwd") + $"{user}:x:4242:4242::{dir}/home:/bin/sh\n");
        File.WriteAllText(Path.Combine(dir, "etc", "shadow"), File.ReadAllText("/etc/shadow") + $"{user}:{hash}:19000:0:99999:7:::\n");
        File.WriteAllText(Path.Combine(dir, "etc", "group"), File.ReadAllText("/etc/group") + $"{user}:x:4242:\n");
        await Peers.RunAsync("chown", ["4242:4242", Path.Combine(dir, "home")], TimeSpan.FromSeconds(10));
        // The user must reach its home below the test directory (a temporary directory is made 0700).
        await Peers.RunAsync("chmod", ["755", dir], TimeSpan.FromSeconds(10));
    }

    public static string Mounts(string dir) => $"for f in passwd shadow group; do mount --bind {dir}/etc/$f /etc/$f; done";
}

/// <summary>
/// A real OpenSSH sshd with its SFTP subsystem on 127.0.0.1, in a private mount namespace (a tmpfs on /run for
/// /run/sshd, the test user as <see cref="TestUser"/>), with a throwaway host key: <see cref="RekeyAsync"/> makes a new
/// one, as a re-installed server would have.
/// </summary>
public sealed class SshdPeer : IAsyncDisposable
{
    public const string User = "pearl2up", Password = "up pw 1";
    Process _p;
    public string Dir { get; }
    public int Port { get; }
    public string Home => Path.Combine(Dir, "home");
    public string Log => File.Exists(Path.Combine(Dir, "sshd.log")) ? File.ReadAllText(Path.Combine(Dir, "sshd.log")) : "";

    SshdPeer(Process p, string dir, int port) { _p = p; Dir = dir; Port = port; }

    public static async Task<SshdPeer> StartAsync()
    {
        Peers.Require("sshd");
        string dir = Directory.CreateTempSubdirectory("pearl2-sshd").FullName;
        await TestUser.WriteAsync(dir, User, Password);
        int port = Peers.FreePortBase(1);
        await NewHostKeyAsync(dir);
        File.WriteAllText(Path.Combine(dir, "sshd_config"), $"""
            Port {port}
            ListenAddress 127.0.0.1
            HostKey {dir}/host_key
            PidFile none
            UsePAM no
            PasswordAuthentication yes
            KbdInteractiveAuthentication no
            PermitRootLogin no
            StrictModes no
            AllowUsers {User}
            Subsystem sftp internal-sftp
            LogLevel VERBOSE
            """);
        File.WriteAllText(Path.Combine(dir, "run.sh"), $"""
            set -e
            mount -t tmpfs tmpfs /run
            mkdir -p /run/sshd
            {TestUser.Mounts(dir)}
            exec /usr/sbin/sshd -D -e -f {dir}/sshd_config 2>>{dir}/sshd.log
            """);
        var peer = new SshdPeer(Start(dir), dir, port);
        await peer.WaitAsync();
        return peer;
    }

    static Process Start(string dir)
    {
        var psi = new ProcessStartInfo("setsid", ["unshare", "-m", "--propagation", "private", "bash", Path.Combine(dir, "run.sh")]) { RedirectStandardOutput = true, RedirectStandardError = true };
        var p = Process.Start(psi)!;
        _ = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
        return p;
    }

    async Task WaitAsync()
    {
        for (int i = 0; i < 100 && !Peers.TcpListening(Port); i++) await Task.Delay(50);
        if (!Peers.TcpListening(Port)) throw new InvalidOperationException("sshd did not start: " + Log);
    }

    static async Task NewHostKeyAsync(string dir)
    {
        File.Delete(Path.Combine(dir, "host_key"));
        File.Delete(Path.Combine(dir, "host_key.pub"));
        var r = await Peers.RunAsync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", Path.Combine(dir, "host_key")], TimeSpan.FromSeconds(20));
        if (r.ExitCode != 0) throw new InvalidOperationException("ssh-keygen: " + r.Stderr);
    }

    /// <summary>Lets the test user in with a key as well: the public key goes to its authorized_keys.</summary>
    public async Task AuthorizeAsync(string publicKeyFile)
    {
        string ssh = Path.Combine(Home, ".ssh");
        Directory.CreateDirectory(ssh);
        File.WriteAllText(Path.Combine(ssh, "authorized_keys"), File.ReadAllText(publicKeyFile));
        await Peers.RunAsync("chown", ["-R", "4242:4242", ssh], TimeSpan.FromSeconds(10));
    }

    /// <summary>The server again on the same port, with a new host key.</summary>
    public async Task RekeyAsync()
    {
        await StopAsync();
        await NewHostKeyAsync(Dir);
        _p = Start(Dir);
        await WaitAsync();
    }

    /// <summary>The server again on the same port with the same key, after <see cref="StopAsync"/>.</summary>
    public async Task StartAgainAsync()
    {
        _p = Start(Dir);
        await WaitAsync();
    }

    /// <summary>Kills the server and every session it forked (a transfer in flight dies with it); the files stay.</summary>
    public async Task StopAsync()
    {
        // The sessions too: each runs in a session of its own (sshd calls setsid), so neither the process group nor the
        // listener's command line finds them; they share the server's private mount namespace.
        string? ns = MountNamespaceOf(_p.Id);
        string ours = MountNamespaceOf(Environment.ProcessId) ?? "";
        if (ns is not null && ns != ours)
            foreach (var proc in Directory.GetDirectories("/proc").Select(Path.GetFileName).Where(n => n!.All(char.IsAsciiDigit)))
                if (MountNamespaceOf(int.Parse(proc!)) == ns)
                    try { Process.GetProcessById(int.Parse(proc!)).Kill(); } catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception) { }
        await Peers.RunAsync("pkill", ["-KILL", "-f", $"sshd -D -e -f {Dir}/sshd_config"], TimeSpan.FromSeconds(10));
        await Peers.RunAsync("kill", ["-KILL", "--", $"-{_p.Id}"], TimeSpan.FromSeconds(10));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try { await _p.WaitForExitAsync(cts.Token); } catch (OperationCanceledException) { }
    }

    static string? MountNamespaceOf(int pid)
    {
        try { return new FileInfo($"/proc/{pid}/ns/mnt").LinkTarget; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    public async ValueTask DisposeAsync() => await StopAsync();
}
