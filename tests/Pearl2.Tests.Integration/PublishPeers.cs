using System.Diagnostics;

namespace Pearl2.Tests.Integration;

/// <summary>
/// nginx with Debian's RTMP module, started by a test with a config of its own: an RTMP server on a loopback port
/// (application "live", live on, every stream recorded as FLV), and in front of it an nginx stream TLS proxy (RTMPS)
/// with a test certificate for "localhost". In a network namespace when given one.
/// </summary>
public sealed class NginxRtmpPeer : IAsyncDisposable
{
    Process _p;
    public string Dir { get; }
    public int Port { get; }
    public int TlsPort { get; }
    public string Address { get; }
    public string Records => Path.Combine(Dir, "rec");
    public string CertificateFile => Path.Combine(Dir, "cert.pem");
    public string ErrorLog => File.Exists(Path.Combine(Dir, "error.log")) ? File.ReadAllText(Path.Combine(Dir, "error.log")) : "";
    readonly string? _netns;

    NginxRtmpPeer(Process p, string dir, int port, int tlsPort, string address, string? netns) { _p = p; Dir = dir; Port = port; TlsPort = tlsPort; Address = address; _netns = netns; }

    public string Live(string key) => $"rtmp://{Address}:{Port}/live/{key}";

    public static async Task<NginxRtmpPeer> StartAsync(string? netns = null, string address = "127.0.0.1")
    {
        Peers.Require("nginx");
        if (!File.Exists("/usr/lib/nginx/modules/ngx_rtmp_module.so")) throw new InvalidOperationException("nginx's RTMP module is not installed (libnginx-mod-rtmp; make deps-test installs it)");
        string dir = Directory.CreateTempSubdirectory("pearl2-nginx-rtmp").FullName;
        Directory.CreateDirectory(Path.Combine(dir, "rec"));
        int port = Peers.FreePortBase(1), tls = Peers.FreePortBase(1);
        while (tls == port) tls = Peers.FreePortBase(1);
        var r = await Peers.RunAsync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", Path.Combine(dir, "key.pem"),
            "-out", Path.Combine(dir, "cert.pem"), "-days", "30", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], TimeSpan.FromSeconds(30));
        if (r.ExitCode != 0) throw new InvalidOperationException("openssl: " + r.Stderr);
        File.WriteAllText(Path.Combine(dir, "nginx.conf"), $$"""
            load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
            load_module /usr/lib/nginx/modules/ngx_stream_module.so;
            daemon off;
            user root;
            worker_processes 1;
            pid {{dir}}/nginx.pid;
            error_log {{dir}}/error.log info;
            events { worker_connections 256; }
            rtmp {
                server {
                    listen {{address}}:{{port}};
                    chunk_size 4096;
                    application live {
                        live on;
                        record all;
                        record_path {{dir}}/rec;
                        record_unique on;
                    }
                }
            }
            stream {
                server {
                    listen {{address}}:{{tls}} ssl;
                    ssl_certificate {{dir}}/cert.pem;
                    ssl_certificate_key {{dir}}/key.pem;
                    proxy_pass {{address}}:{{port}};
                }
            }
            """);
        var peer = new NginxRtmpPeer(Start(dir, netns), dir, port, tls, address, netns);
        await peer.WaitAsync();
        return peer;
    }

    static Process Start(string dir, string? netns)
    {
        var args = new List<string> { "-p", dir, "-e", Path.Combine(dir, "error.log"), "-c", Path.Combine(dir, "nginx.conf") };
        // In a session (and process group) of its own: stopping it kills the group, master and worker alike.
        var psi = netns is null ? new ProcessStartInfo("setsid", ["/usr/sbin/nginx", .. args]) : new ProcessStartInfo("/usr/sbin/ip", ["netns", "exec", netns, "setsid", "/usr/sbin/nginx", .. args]);
        psi.RedirectStandardOutput = true; psi.RedirectStandardError = true;
        var p = Process.Start(psi)!;
        _ = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
        return p;
    }

    async Task WaitAsync()
    {
        for (int i = 0; i < 100; i++)
        {
            if (ErrorLog.Contains("[emerg]")) throw new InvalidOperationException("nginx did not start: " + ErrorLog);
            if (_netns is null ? Peers.TcpListening(Port) : (await Peers.RunAsync("ip", ["netns", "exec", _netns, "ss", "-ltn"], TimeSpan.FromSeconds(5))).Stdout.Contains($":{Port} ")) return;
            await Task.Delay(50);
        }
        throw new InvalidOperationException("nginx did not start: " + ErrorLog);
    }

    /// <summary>Stops nginx at once (every connection through it drops); <see cref="StartAgainAsync"/> brings it back on the same ports.</summary>
    public async Task StopAsync()
    {
        // The master and its worker (which holds the connections): the worker first, so nothing is left serving.
        if (File.Exists(Path.Combine(Dir, "nginx.pid")) && int.TryParse(File.ReadAllText(Path.Combine(Dir, "nginx.pid")).Trim(), out int master))
        {
            await Peers.RunAsync("pkill", ["-KILL", "-P", master.ToString()], TimeSpan.FromSeconds(5));
            await Peers.RunAsync("kill", ["-KILL", master.ToString()], TimeSpan.FromSeconds(5));
        }
        await Peers.RunAsync("kill", ["-KILL", "--", $"-{_p.Id}"], TimeSpan.FromSeconds(5));
        try { _p.Kill(true); } catch (InvalidOperationException) { }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try { await _p.WaitForExitAsync(cts.Token); } catch (OperationCanceledException) { }
        File.Delete(Path.Combine(Dir, "nginx.pid"));
    }

    public async Task StartAgainAsync()
    {
        _p = Start(Dir, _netns);
        await WaitAsync();
    }

    public async ValueTask DisposeAsync() => await StopAsync();
}
