using System.Globalization;

namespace Pearl2.Formats.Rtsp;

/// <summary>
/// The Range header (RFC 2326 §12.29, §3.6): "npt=start-[end]" with "now" or seconds (or h:m:s), also
/// "clock=" and "smpte=" forms, which a live server accepts and ignores.
/// </summary>
public readonly record struct RangeHeader(string Unit, double? Start, double? End, bool StartsNow)
{
    public static bool TryParse(string value, out RangeHeader range)
    {
        range = default;
        var spec = value.Split(';')[0].Trim();
        int eq = spec.IndexOf('=');
        if (eq <= 0) return false;
        var unit = spec[..eq].Trim().ToLowerInvariant();
        var times = spec[(eq + 1)..].Trim();
        int dash = times.IndexOf('-');
        if (dash < 0) return false;
        var a = times[..dash].Trim();
        var b = times[(dash + 1)..].Trim();
        switch (unit)
        {
            case "npt":
                bool now = a == "now";
                double? start = null, end = null;
                if (!now && a.Length > 0) { if (!TryNpt(a, out var s)) return false; start = s; }
                if (b.Length > 0) { if (!TryNpt(b, out var e)) return false; end = e; }
                if (start is null && !now && end is null) return false;
                if (start is { } s1 && end is { } e1 && e1 < s1) return false;
                range = new RangeHeader(unit, start, end, now);
                return true;
            case "clock":
            case "smpte" or "smpte-30-drop" or "smpte-25":
                if (a.Length == 0 || a.Length > 64 || b.Length > 64) return false;
                range = new RangeHeader(unit, null, null, false);
                return true;
            default:
                return false;
        }
    }

    /// <summary>npt-sec ("12.5") or npt-hhmmss ("1:02:03.5").</summary>
    static bool TryNpt(string s, out double seconds)
    {
        seconds = 0;
        if (s.Length > 32) return false;
        var parts = s.Split(':');
        if (parts.Length == 1)
            return double.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out seconds) && double.IsFinite(seconds);
        if (parts.Length != 3) return false;
        if (!int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int h) ||
            !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int m) || m > 59 ||
            !double.TryParse(parts[2], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double sec) || sec >= 60)
            return false;
        seconds = h * 3600.0 + m * 60 + sec;
        return true;
    }
}
