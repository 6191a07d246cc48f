using System.Globalization;

namespace Pearl2.Services.Admin;

/// <summary>
/// The machine's condition as /system/status reports it: uptime from /proc/uptime, CPU load as the busy share of
/// /proc/stat's ticks since the previous reading (at most one new reading a second), the SoC temperature from the
/// first thermal zone when the kernel has one.
/// </summary>
public sealed class SystemMeter(TimeProvider time)
{
    readonly object _lock = new();
    long _lastIdle, _lastTotal, _readAt;
    int _load;

    public static long UptimeSeconds()
    {
        try
        {
            var text = File.ReadAllText("/proc/uptime");
            return (long)double.Parse(text.AsSpan(0, text.IndexOf(' ')), CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or FormatException or ArgumentException) { return 0; }
    }

    /// <summary>Percent of all cores busy since the last reading.</summary>
    public int CpuLoad()
    {
        lock (_lock)
        {
            if (_readAt != 0 && time.GetElapsedTime(_readAt) < TimeSpan.FromSeconds(1)) return _load;
            if (!ReadStat(out long idle, out long total)) return _load;
            if (_readAt == 0)
            {
                // The first reading: over a short moment, so the first answer is not the average since boot.
                Thread.Sleep(100);
                (_lastIdle, _lastTotal) = (idle, total);
                if (!ReadStat(out idle, out total)) return 0;
            }
            long dTotal = total - _lastTotal, dIdle = idle - _lastIdle;
            if (dTotal > 0) _load = (int)Math.Clamp(Math.Round(100.0 * (dTotal - dIdle) / dTotal), 0, 100);
            (_lastIdle, _lastTotal, _readAt) = (idle, total, time.GetTimestamp());
            return _load;
        }
    }

    static bool ReadStat(out long idle, out long total)
    {
        idle = total = 0;
        try
        {
            using var r = new StreamReader("/proc/stat");
            var line = r.ReadLine();
            if (line is null || !line.StartsWith("cpu ", StringComparison.Ordinal)) return false;
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            for (int i = 1; i < f.Length && i <= 8; i++)
            {
                long v = long.Parse(f[i], CultureInfo.InvariantCulture);
                total += v;
                if (i is 4 or 5) idle += v;   // idle and iowait
            }
            return true;
        }
        catch (Exception e) when (e is IOException or FormatException) { return false; }
    }

    /// <summary>The SoC temperature in °C, or null on a machine that does not say.</summary>
    public static int? CpuTemperature()
    {
        try { return int.Parse(File.ReadAllText("/sys/class/thermal/thermal_zone0/temp").Trim(), CultureInfo.InvariantCulture) / 1000; }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException) { return null; }
    }
}
