using System.Runtime.InteropServices;
using System.Text;

namespace Pearl2.Services.FrontPanel;

/// <summary>
/// The GPIO character devices (/dev/gpiochipN) and their labels, read with GPIO_GET_CHIPINFO_IOCTL. A board names its
/// panel's chip by label ("pearl2-panel", "pinctrl-bcm2711"), because numbers follow probe order and change when
/// another GPIO driver comes up first.
/// </summary>
public static unsafe partial class GpioChips
{
    /// <summary>struct gpiochip_info from linux/gpio.h.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ChipInfo
    {
        public fixed byte Name[32];
        public fixed byte Label[32];
        public uint Lines;
    }

    /// <summary>_IOR(0xB4, 0x01, struct gpiochip_info): the same number on every architecture we build for.</summary>
    public const uint GetChipInfo = 0x8044B401;

    /// <summary>Every chip under <paramref name="dev"/>: its number, name and label, in number order.</summary>
    public static List<(int Number, string Name, string Label, int Lines)> List(string dev = "/dev")
    {
        var chips = new List<(int, string, string, int)>();
        foreach (var path in Directory.Exists(dev) ? Directory.EnumerateFileSystemEntries(dev, "gpiochip*") : [])
        {
            if (!int.TryParse(Path.GetFileName(path)["gpiochip".Length..], out int number)) continue;
            int fd = open(path, 0x80000 /* O_RDONLY | O_CLOEXEC */);
            if (fd < 0) continue;
            try
            {
                ChipInfo info;
                if (ioctl(fd, GetChipInfo, &info) != 0) continue;
                chips.Add((number, CString(info.Name), CString(info.Label), (int)info.Lines));
            }
            finally { close(fd); }
        }
        chips.Sort((a, b) => a.Item1.CompareTo(b.Item1));
        return chips;
    }

    /// <summary>The number of the chip labelled <paramref name="label"/>; the error names the chips there are.</summary>
    public static int FindByLabel(string label, string dev = "/dev")
    {
        var chips = List(dev);
        foreach (var c in chips) if (c.Label == label) return c.Number;
        throw new IOException($"no GPIO chip labelled '{label}' (there are: {(chips.Count == 0 ? "none" : string.Join(", ", chips.Select(c => $"{c.Name} '{c.Label}'")))})");
    }

    static string CString(byte* s) => Encoding.ASCII.GetString(s, new ReadOnlySpan<byte>(s, 32).IndexOf((byte)0) is var n and >= 0 ? n : 32);

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)] private static partial int open(string path, int flags);
    [LibraryImport("libc", SetLastError = true)] private static partial int ioctl(int fd, nuint request, void* arg);
    [LibraryImport("libc")] private static partial int close(int fd);
}
