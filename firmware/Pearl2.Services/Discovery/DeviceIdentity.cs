using System.Security.Cryptography;
using System.Text;

namespace Pearl2.Services.Discovery;

/// <summary>
/// Who this device is on the LAN: its serial, the mDNS host name made from it (<c>pearl2-&lt;serial&gt;</c>) and its
/// UPnP UUID (name-based from the serial, so the same at every start). The serial is the board's own
/// (<c>/proc/device-tree/serial-number</c>, its last 6 characters) or, on boards without one and in the host
/// simulation, 6 random digits kept in DATA/serial: one device, one serial, whatever its addresses.
/// </summary>
public sealed record DeviceIdentity(string Serial)
{
    public const string FileName = "serial";
    public string HostName => "pearl2-" + Serial;
    public string Uuid => UuidFrom(Serial);

    public static DeviceIdentity Load(string dataDir, string boardSerialPath = "/proc/device-tree/serial-number")
    {
        string path = Path.Combine(dataDir, FileName);
        if (Read(path) is { } kept) return new DeviceIdentity(kept);
        string? board = Read(boardSerialPath);
        string serial = board is { Length: >= 6 } ? board[^6..] : RandomNumberGenerator.GetInt32(100000, 1000000).ToString(System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            File.WriteAllText(path + ".tmp", serial + "\n");
            File.Move(path + ".tmp", path, overwrite: true);
        }
        catch (IOException) { }   // a read-only data directory: this start's serial only
        return new DeviceIdentity(serial);
    }

    static string? Read(string path)
    {
        try
        {
            string s = new(File.ReadAllText(path).Where(char.IsAsciiLetterOrDigit).ToArray());
            return s.Length > 0 ? s.ToLowerInvariant() : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>A version-5-style UUID (RFC 9562 §5.5, SHA-256 in place of SHA-1) of the serial in our own namespace.</summary>
    public static string UuidFrom(string serial)
    {
        var h = SHA256.HashData(Encoding.UTF8.GetBytes("pearl2-upnp-device:" + serial));
        h[6] = (byte)((h[6] & 0x0f) | 0x50);
        h[8] = (byte)((h[8] & 0x3f) | 0x80);
        string x = Convert.ToHexStringLower(h.AsSpan(0, 16));
        return $"{x[..8]}-{x[8..12]}-{x[12..16]}-{x[16..20]}-{x[20..32]}";
    }
}
