using System.Diagnostics;
using System.Text;

namespace Pearl2.Tests.Integration;

public sealed record ProcessResult(int ExitCode, string Stdout, string Stderr, bool TimedOut);

/// <summary>Runs the real peers (ffprobe, ffmpeg, gst-launch) and the real pearl2d binary.</summary>
public static class Peers
{
    public static string RepoRoot { get; } = FindRoot();

    static string FindRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Pearl2.Firmware.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }

    /// <summary>The published NativeAOT binary (make publish), or $PEARL2D.</summary>
    public static string Pearl2d
    {
        get
        {
            var p = Environment.GetEnvironmentVariable("PEARL2D") ?? Path.Combine(RepoRoot, "out", "linux-x64", "pearl2d");
            if (!File.Exists(p)) throw new FileNotFoundException($"pearl2d binary not found at {p}: run 'make publish' first (make test does)");
            return p;
        }
    }

    public static string Require(string tool)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
        {
            var p = Path.Combine(dir, tool);
            if (File.Exists(p)) return p;
        }
        throw new InvalidOperationException($"peer '{tool}' is not installed: run 'make deps' (make test does)");
    }

    public static async Task<ProcessResult> RunAsync(string file, IEnumerable<string> args, TimeSpan timeout, Dictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(Require(file)) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (name, value) in env ?? []) psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        bool timedOut = false;
        using (var cts = new CancellationTokenSource(timeout))
        {
            try { await p.WaitForExitAsync(cts.Token); }
            catch (OperationCanceledException) { timedOut = true; try { p.Kill(true); } catch (InvalidOperationException) { } await p.WaitForExitAsync(); }
        }
        return new ProcessResult(p.ExitCode, await stdout, await stderr, timedOut);
    }

    /// <summary>Whether something accepts TCP connections on 127.0.0.1:<paramref name="port"/>.</summary>
    public static bool TcpListening(int port, System.Net.IPAddress? address = null)
    {
        try { using var c = new System.Net.Sockets.TcpClient(address?.AddressFamily ?? System.Net.Sockets.AddressFamily.InterNetwork); c.Connect(address ?? System.Net.IPAddress.Loopback, port); return true; }
        catch (System.Net.Sockets.SocketException) { return false; }
    }

    /// <summary>An even UDP port with <paramref name="count"/> free ports from it.</summary>
    public static int FreeUdpPortBase(int count)
    {
        for (int attempt = 0; attempt < 50; attempt++)
        {
            int start = Random.Shared.Next(10000, 30000) * 2;
            var sockets = new List<System.Net.Sockets.Socket>();
            try
            {
                for (int i = 0; i < count; i++)
                {
                    var u = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetworkV6, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp) { DualMode = true };
                    sockets.Add(u);
                    u.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.IPv6Any, start + i));
                }
                return start;
            }
            catch (System.Net.Sockets.SocketException) { }
            finally { foreach (var u in sockets) u.Dispose(); }
        }
        throw new InvalidOperationException("no free UDP port block");
    }

    /// <summary>A --port-offset under which every port pearl2d opens for <paramref name="channels"/> channels is free and below 65536.</summary>
    public static int FreeOffset(int channels)
    {
        for (int attempt = 0; attempt < 100; attempt++)
        {
            int off = Random.Shared.Next(7500, 28500) * 2;
            if (TcpFree(554 + off, channels) && TcpFree(8000 + off, channels) && UdpFree(6970 + off, 4 * channels) && TcpFree(80 + off, 1) && TcpFree(443 + off, 1)) return off;
        }
        throw new InvalidOperationException("no free port offset");
    }

    static bool TcpFree(int start, int count)
    {
        for (int i = 0; i < count; i++)
        {
            try { var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Any, start + i); l.Start(); l.Stop(); }
            catch (System.Net.Sockets.SocketException) { return false; }
        }
        return true;
    }

    static bool UdpFree(int start, int count)
    {
        for (int i = 0; i < count; i++)
        {
            try { using var u = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp); u.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Any, start + i)); }
            catch (System.Net.Sockets.SocketException) { return false; }
        }
        return true;
    }

    public static int FreePortBase(int count)
    {
        // A block of consecutive free TCP ports, found by binding each.
        for (int attempt = 0; attempt < 50; attempt++)
        {
            int start = Random.Shared.Next(20000, 60000);
            bool ok = true;
            for (int i = 0; i < count && ok; i++)
            {
                try
                {
                    var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Any, start + i);
                    l.Start(); l.Stop();
                }
                catch (System.Net.Sockets.SocketException) { ok = false; }
            }
            if (ok) return start;
        }
        throw new InvalidOperationException("no free port block");
    }
}

/// <summary>A running pearl2d with its log captured; killed on dispose.</summary>
public sealed class Pearl2dProcess : IAsyncDisposable
{
    readonly Process _p;
    readonly StringBuilder _log = new();
    readonly object _lock = new();
    readonly ProcessStartInfo _start;

    public int RtspBase { get; }
    public string ConfigPath { get; }
    public int Pid => _p.Id;
    /// <summary>The --data-dir: recordings/, the control socket and the simulated status display are here.</summary>
    public string DataDir { get; }

    Pearl2dProcess(ProcessStartInfo start, int rtspBase, string configPath, string dataDir)
    {
        _start = start;
        // On the host's own network nothing may be announced (mDNS, SSDP): discovery runs only in the tests' own namespaces.
        if (start.FileName == Peers.Pearl2d) start.Environment["PEARL2_DISCOVERY"] = "off";
        var p = Process.Start(start)!;
        _p = p; RtspBase = rtspBase; ConfigPath = configPath; DataDir = dataDir;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_lock) _log.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_lock) _log.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
    }

    public string Log { get { lock (_lock) return _log.ToString(); } }
    public bool HasExited => _p.HasExited;

    public string Url(int channel = 1, string path = "/stream.sdp") => $"rtsp://127.0.0.1:{RtspBase + channel - 1}{path}";

    /// <summary>Starts pearl2d with <paramref name="configJson"/> (the rtsp port is chosen free) and waits for "pearl2d.ready".</summary>
    public static Task<Pearl2dProcess> StartAsync(string? configJson, int channels = 2, params string[] extraArgs)
        => StartInAsync(null, configJson, channels, extraArgs);

    /// <summary>As <see cref="StartAsync"/>, inside network namespace <paramref name="netns"/> when given.</summary>
    public static Task<Pearl2dProcess> StartInAsync(string? netns, string? configJson, int channels = 2, params string[] extraArgs)
        => StartInAsync(netns, configJson, channels, null, extraArgs);

    /// <summary>
    /// As <see cref="StartAsync"/>; with <paramref name="slotsDir"/>, through the host boot loader
    /// (<c>pearl2d boot --slots DIR -- …</c>), which execs the slot's binary in the same process.
    /// </summary>
    public static Task<Pearl2dProcess> StartInAsync(string? netns, string? configJson, int channels, string? slotsDir, params string[] extraArgs)
        => StartCoreAsync(netns, configJson, channels, slotsDir, null, extraArgs);

    /// <summary>As <see cref="StartInAsync(string?, string?, int, string[])"/>, with <paramref name="env"/> added to its environment.</summary>
    public static Task<Pearl2dProcess> StartWithEnvAsync(string configJson, int channels, Dictionary<string, string> env, string? netns = null)
        => StartCoreAsync(netns, configJson, channels, null, env, []);

    static async Task<Pearl2dProcess> StartCoreAsync(string? netns, string? configJson, int channels, string? slotsDir, Dictionary<string, string>? env, string[] extraArgs)
    {
        int port = Peers.FreePortBase(channels);
        int udp = Peers.FreeUdpPortBase(4 * channels);
        var dir = Directory.CreateTempSubdirectory("pearl2d-test").FullName;
        var args = new List<string> { "--data-dir", Path.Combine(dir, "data") };
        string configPath = "";
        if (configJson is not null)
        {
            // Free ports for everything the test did not pin itself.
            var json = System.Text.Json.Nodes.JsonNode.Parse(configJson)!.AsObject();
            var rtsp = (json["rtsp"] ??= new System.Text.Json.Nodes.JsonObject()).AsObject();
            rtsp["port"] = port;
            rtsp["udpPortBase"] ??= udp;
            // Each free port is found by binding and letting go, so two draws can return the same one: every TCP port
            // drawn here must also differ from those drawn before it (a clash once refused a config in CI).
            var taken = new HashSet<int>(Enumerable.Range(port, channels));
            int Draw(int count)
            {
                while (true)
                {
                    int p = Peers.FreePortBase(count);
                    if (Enumerable.Range(p, count).Any(taken.Contains)) continue;
                    foreach (int q in Enumerable.Range(p, count)) taken.Add(q);
                    return p;
                }
            }
            var http = (json["http"] ??= new System.Text.Json.Nodes.JsonObject()).AsObject();
            if (http["port"] is null) http["port"] = Draw(channels);
            else foreach (int q in Enumerable.Range(http["port"]!.GetValue<int>(), channels)) taken.Add(q);
            // The admin panel too (80 and 443 would clash between tests run side by side).
            var admin = (json["admin"] ??= new System.Text.Json.Nodes.JsonObject()).AsObject();
            if (admin["port"] is null) admin["port"] = Draw(1);
            if (admin["httpsPort"] is null) admin["httpsPort"] = Draw(1);
            configPath = Path.Combine(dir, "config.json");
            File.WriteAllText(configPath, json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
            args.AddRange(["--config", configPath]);
        }
        else
        {
            int offset = Peers.FreeOffset(channels);
            port = 554 + offset;
            args.AddRange(["--port-offset", offset.ToString()]);
        }
        args.AddRange(extraArgs);
        if (slotsDir is not null) args = ["boot", "--slots", slotsDir, "--", .. args];
        var psi = new ProcessStartInfo(netns is null ? Peers.Pearl2d : "/usr/sbin/ip") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir };
        if (netns is not null) foreach (var a in new[] { "netns", "exec", netns, Peers.Pearl2d }) psi.ArgumentList.Add(a); // ip execs it: same pid
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (name, value) in env ?? []) psi.Environment[name] = value;
        var proc = new Pearl2dProcess(psi, port, configPath, Path.Combine(dir, "data"));
        await proc.WaitForLogAsync("pearl2d.ready", TimeSpan.FromSeconds(30));
        return proc;
    }

    /// <summary>
    /// Starts pearl2d exactly as given: <paramref name="args"/> untouched (relative paths stay relative) in
    /// <paramref name="workDir"/>; <paramref name="dataDir"/> and <paramref name="rtspBase"/> are what those arguments mean.
    /// </summary>
    public static async Task<Pearl2dProcess> StartRawAsync(string workDir, string dataDir, int rtspBase, params string[] args)
    {
        var psi = new ProcessStartInfo(Peers.Pearl2d) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workDir };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var proc = new Pearl2dProcess(psi, rtspBase, "", dataDir);
        await proc.WaitForLogAsync("pearl2d.ready", TimeSpan.FromSeconds(30));
        return proc;
    }

    /// <summary>Waits for the process to exit on its own; its exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _p.WaitForExitAsync(cts.Token);
        return _p.ExitCode;
    }

    /// <summary>Starts pearl2d again with the same arguments, config and data directory (after this one died or was killed).</summary>
    /// <param name="env">Variables added to its environment from this start on.</param>
    public async Task<Pearl2dProcess> RestartAsync(Dictionary<string, string>? env = null)
    {
        if (!_p.HasExited) throw new InvalidOperationException("pearl2d still runs");
        foreach (var (name, value) in env ?? []) _start.Environment[name] = value;
        var proc = new Pearl2dProcess(_start, RtspBase, ConfigPath, DataDir);
        await proc.WaitForLogAsync("pearl2d.ready", TimeSpan.FromSeconds(30));
        return proc;
    }

    /// <summary>Runs the control command (<c>pearl2d panel press record</c>, <c>status</c>, <c>recordings</c>) against this pearl2d.</summary>
    public async Task<string> ControlAsync(params string[] words)
    {
        var r = await Peers.RunAsync(Peers.Pearl2d, [.. words, "--data-dir", DataDir], TimeSpan.FromSeconds(60));
        if (r.ExitCode != 0 || r.TimedOut) throw new InvalidOperationException($"pearl2d {string.Join(' ', words)} failed ({r.ExitCode}): {r.Stdout}{r.Stderr}");
        return r.Stdout;
    }

    /// <summary>Runs a control command and returns what it printed and its exit code, failing or not.</summary>
    public Task<ProcessResult> ControlResultAsync(params string[] words) => Peers.RunAsync(Peers.Pearl2d, [.. words, "--data-dir", DataDir], TimeSpan.FromSeconds(60));

    /// <summary><c>pearl2d update check</c> that must fail: asserts exit code 1 and returns the answer after "error: update ".</summary>
    public async Task<string> FailedUpdateCheckAsync()
    {
        var r = await ControlResultAsync("update", "check");
        if (r.ExitCode != 1 || !r.Stdout.StartsWith("error: update ", StringComparison.Ordinal))
            throw new InvalidOperationException($"pearl2d update check should have failed with exit 1 and 'error: update …', got {r.ExitCode}: {r.Stdout}{r.Stderr}");
        return r.Stdout["error: update ".Length..];
    }

    /// <summary>Stops pearl2d as systemd does (SIGTERM) and waits for it to exit; its exit code.</summary>
    public async Task<int> StopAsync()
    {
        Signal(15);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await _p.WaitForExitAsync(cts.Token);
        _p.WaitForExit();   // this overload also waits for the last lines of output to be read
        return _p.ExitCode;
    }

    public async Task KillAsync()
    {
        Signal(9);
        await _p.WaitForExitAsync();
    }

    public void Signal(int signal) => Process.Start("/bin/kill", $"-{signal} {_p.Id}")!.WaitForExit();

    public long RssKb => File.ReadLines($"/proc/{_p.Id}/status").Where(l => l.StartsWith("VmRSS:")).Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1])).First();

    public int CountInLog(string text)
    {
        var log = Log;
        int n = 0, at = 0;
        while ((at = log.IndexOf(text, at, StringComparison.Ordinal)) >= 0) { n++; at += text.Length; }
        return n;
    }

    /// <summary>
    /// How long a test gives pearl2d to write a line it expects. pearl2d writes its log from a queue on a thread of its
    /// own (below the media threads), so a peer can see what was done (a cut, a refusal) before the line saying so is out:
    /// a test waits for the line rather than reading the log the moment its peer returns.
    /// </summary>
    public static readonly TimeSpan LogLag = TimeSpan.FromSeconds(10);

    public async Task WaitForLogAsync(string text, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (!Log.Contains(text, StringComparison.Ordinal))
        {
            if (_p.HasExited)
            {
                // What it wrote before it ended may still be on its way through the pipe: WaitForExit() reads it all.
                await _p.WaitForExitAsync();
                if (Log.Contains(text, StringComparison.Ordinal)) return;
                throw new InvalidOperationException($"pearl2d exited ({_p.ExitCode}) before '{text}':\n{Log}");
            }
            if (DateTime.UtcNow > until) throw new TimeoutException($"no '{text}' from pearl2d in {timeout}:\n{Log}");
            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_p.HasExited)
        {
            _p.Kill(entireProcessTree: true);
            await _p.WaitForExitAsync();
        }
        _p.Dispose();
    }
}

/// <summary>
/// Two network namespaces joined by a veth pair: the device side at 192.0.2.1, an "other host" at 192.0.2.2
/// (documentation addresses), made by the test and deleted on dispose. Needs root, as make test runs.
/// </summary>
public sealed class NetworkPair : IAsyncDisposable
{
    static int _count;
    public string Device { get; }
    public string External { get; }
    public const string DeviceAddress = "192.0.2.1";
    public const string ExternalAddress = "192.0.2.2";
    readonly string _vethDev, _vethExt;
    /// <summary>The pair's interface in the device's namespace, and in the other host's.</summary>
    public string DeviceLink => _vethDev;
    public string ExternalLink => _vethExt;

    NetworkPair(string tag)
    {
        Device = $"p2d{tag}"; External = $"p2x{tag}";
        _vethDev = $"p2vd{tag}"; _vethExt = $"p2vx{tag}";
    }

    static async Task Ip(params string[] args)
    {
        var r = await Peers.RunAsync("ip", args, TimeSpan.FromSeconds(20));
        if (r.ExitCode != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)} failed (this test needs root to make network namespaces): {r.Stderr}");
    }

    public static async Task<NetworkPair> CreateAsync()
    {
        var n = new NetworkPair($"{Environment.ProcessId % 100000}n{Interlocked.Increment(ref _count)}");
        await n.DisposeAsync();
        await Ip("netns", "add", n.Device);
        await Ip("netns", "add", n.External);
        await Ip("link", "add", n._vethDev, "type", "veth", "peer", "name", n._vethExt);
        await Ip("link", "set", n._vethDev, "netns", n.Device);
        await Ip("link", "set", n._vethExt, "netns", n.External);
        await Ip("-n", n.Device, "addr", "add", DeviceAddress + "/24", "dev", n._vethDev);
        await Ip("-n", n.External, "addr", "add", "192.0.2.2/24", "dev", n._vethExt);
        foreach (var (ns, link) in new[] { (n.Device, n._vethDev), (n.External, n._vethExt) })
        {
            await Ip("-n", ns, "link", "set", link, "up");
            await Ip("-n", ns, "link", "set", "lo", "up");
            // Multicast (mDNS, SSDP) goes out on the pair: a namespace has no default route for it.
            await Ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", link);
        }
        return n;
    }

    /// <summary>Runs a peer inside namespace <paramref name="ns"/>.</summary>
    public static Task<ProcessResult> RunInAsync(string ns, string tool, IEnumerable<string> args, TimeSpan timeout) =>
        Peers.RunAsync("ip", ["netns", "exec", ns, Peers.Require(tool), .. args], timeout);

    public async ValueTask DisposeAsync()
    {
        await Peers.RunAsync("ip", ["netns", "del", Device], TimeSpan.FromSeconds(20));
        await Peers.RunAsync("ip", ["netns", "del", External], TimeSpan.FromSeconds(20));
    }
}
