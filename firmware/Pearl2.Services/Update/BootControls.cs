using Pearl2.Services.Configuration;

namespace Pearl2.Services.Update;

/// <summary>How this device boots its A/B slots, and how to reach each slot: what the updater needs of the board.</summary>
public sealed record BootSetup(IBootControl Boot, Func<string, ISlot> SlotOf, TimeSpan UpSince);

/// <summary>The one place that picks the boot control: the host simulation's slot files, or the board's boot partition.</summary>
public static class BootControls
{
    /// <summary>The boot-partition control of a board whose slots are switched by files there (extlinux, tryboot).</summary>
    public static BootPartitionControl ForBootPartition(SlotsProfile slots, string booted, string rebootRequest) => slots.Kind == "tryboot"
        ? new TrybootBootControl(slots.BootDirectory, booted, rebootRequest)
        : new ExtlinuxBootControl(slots.BootDirectory, booted, rebootRequest);

    /// <summary>
    /// The host simulation when <paramref name="slotsDir"/> and <paramref name="simulatedSlot"/> are given (pearl2d boot
    /// --slots DIR); else the board's boot partition when the kernel command line named the booted slot
    /// (<paramref name="cmdlineSlot"/>); else null: this board cannot update.
    /// </summary>
    public static BootSetup? For(SlotsProfile slots, string? slotsDir, string? simulatedSlot, string? cmdlineSlot, string dataDir, Action reboot)
    {
        if (slotsDir is not null && simulatedSlot is not null)
            // The host simulation's "boot" is the exec that started this process.
            return new BootSetup(new FileBootControl(slotsDir, simulatedSlot, reboot), slot => new FileSlot(slot, Path.Combine(slotsDir, "slot-" + slot), 1L << 30), TimeSpan.Zero);
        if (cmdlineSlot is { } booted)
            // The running firmware asks a root path unit to reboot (DATA-DIR/update/reboot-request); up since the kernel booted.
            return new BootSetup(ForBootPartition(slots, booted, Path.Combine(dataDir, "update", "reboot-request")),
                slot => new FileSlot(slot, slot == "a" ? slots.A : slots.B, PartitionBytes(slot == "a" ? slots.A : slots.B)),
                TimeSpan.FromMilliseconds(Environment.TickCount64));
        return null;
    }

    /// <summary>
    /// On a board, pearl2d runs unprivileged: it asks the root path unit pearl2-reboot for a reboot or a power-off by
    /// writing the request file (DATA-DIR/update/reboot-request: "reboot", "tryboot" or "poweroff").
    /// </summary>
    public static void RequestPower(string dataDir, string kind)
    {
        var path = Path.Combine(dataDir, "update", "reboot-request");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        DurableFile.Write(path, System.Text.Encoding.ASCII.GetBytes(kind));
    }

    /// <summary>A partition's size from sysfs (/dev/vda3 → /sys/class/block/vda3/size, in 512-byte sectors).</summary>
    static long PartitionBytes(string node)
    {
        try { return long.Parse(File.ReadAllText($"/sys/class/block/{Path.GetFileName(node)}/size").Trim(), System.Globalization.CultureInfo.InvariantCulture) * 512; }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException) { return 0; }
    }
}
