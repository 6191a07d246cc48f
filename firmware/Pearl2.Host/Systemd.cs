using System.Net.Sockets;
using System.Text;

namespace Pearl2.Host;

/// <summary>
/// The sd_notify protocol (systemd.service Type=notify): one datagram per state to the socket named by
/// NOTIFY_SOCKET ("READY=1", "STOPPING=1", "STATUS=…", "WATCHDOG=1"). Without NOTIFY_SOCKET (not under
/// systemd) every call does nothing. When WATCHDOG_USEC is set for this process, <see cref="StartWatchdog"/>
/// feeds the watchdog at half its interval while <paramref name="healthy"/> says so; a wedged firmware stops
/// feeding it and systemd restarts the service.
/// </summary>
internal sealed class SystemdNotifier : IDisposable
{
    readonly Socket? _socket;
    readonly UnixDomainSocketEndPoint? _endPoint;
    ITimer? _watchdog;

    public SystemdNotifier()
    {
        var path = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        if (string.IsNullOrEmpty(path) || (path[0] != '/' && path[0] != '@')) return;
        // A leading '@' names a socket in the abstract namespace, which the endpoint spells with a NUL.
        _endPoint = new UnixDomainSocketEndPoint(path[0] == '@' ? "\0" + path[1..] : path);
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    }

    /// <summary>Whether the process runs under systemd with a notify socket.</summary>
    public bool Enabled => _socket is not null;

    /// <summary>The watchdog interval systemd set for this process, or null.</summary>
    public static TimeSpan? WatchdogInterval()
    {
        if (!long.TryParse(Environment.GetEnvironmentVariable("WATCHDOG_USEC"), out long usec) || usec <= 0) return null;
        // WATCHDOG_PID, when present, must be ours: a child started with our environment must not feed it.
        var pid = Environment.GetEnvironmentVariable("WATCHDOG_PID");
        if (pid is not null && pid != Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)) return null;
        return TimeSpan.FromMicroseconds(usec);
    }

    public void Notify(string state)
    {
        if (_socket is null) return;
        try { _socket.SendTo(Encoding.UTF8.GetBytes(state), _endPoint!); }
        catch (SocketException) { }   // systemd gone (shutdown): nothing to tell
    }

    public void StartWatchdog(Func<bool> healthy, TimeProvider time)
    {
        if (_socket is null || WatchdogInterval() is not { } interval) return;
        var period = interval / 2;
        _watchdog = time.CreateTimer(_ => { if (healthy()) Notify("WATCHDOG=1"); }, null, TimeSpan.Zero, period);
    }

    public void Dispose()
    {
        _watchdog?.Dispose();
        _socket?.Dispose();
    }
}
