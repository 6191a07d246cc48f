using System.Text.Json;
using System.Text.RegularExpressions;

namespace Pearl2.Services.Update;

/// <summary>
/// A/B on a board that boots U-Boot's extlinux.conf from its FAT boot partition (qemu-virt). U-Boot keeps no
/// state of its own here, so the try-once rule is split in two:
/// <list type="bullet">
/// <item>the updater (<see cref="MarkTryOnce"/>) records the try in <c>pearl2-boot.json</c> and points extlinux's
/// <c>default</c> at the new slot;</item>
/// <item>early in the next boot, as root, <see cref="SelectAtBoot"/> (<c>pearl2d boot-select</c>) sees it booted the
/// try, marks it booted and points <c>default</c> back at the active slot at once, so any later boot without a
/// confirm (a crash, a hang, a power cut) comes back to the old slot; the boot after such a failure records the
/// version bad.</item>
/// </list>
/// A confirm points <c>default</c> at the new slot for good. Every file is written to a temporary name, flushed and
/// renamed. The reboot is asked of a root path unit (pearl2d runs unprivileged) by creating a request file.
/// </summary>
public sealed class ExtlinuxBootControl(string bootDirectory, string booted, string rebootRequest) : IBootControl
{
    public string Booted => booted;
    string StatePath => Path.Combine(bootDirectory, "pearl2-boot.json");
    string ExtlinuxPath => Path.Combine(bootDirectory, "extlinux", "extlinux.conf");

    /// <summary>The slot the kernel command line says was booted (<c>pearl2.slot=a|b</c>), or null.</summary>
    public static string? BootedSlot(string cmdline) => Regex.Match(cmdline, @"(?:^|\s)pearl2\.slot=([ab])(?:\s|$)") is { Success: true } m ? m.Groups[1].Value : null;

    public BootState Read()
    {
        try { return File.Exists(StatePath) ? JsonSerializer.Deserialize(File.ReadAllBytes(StatePath), BootStateJson.Default.BootState) ?? new BootState() : new BootState(); }
        catch (JsonException) { return new BootState(); }
    }

    void Write(BootState s, string defaultSlot)
    {
        WriteAtomically(StatePath, JsonSerializer.SerializeToUtf8Bytes(s, BootStateJson.Default.BootState));
        var conf = File.ReadAllText(ExtlinuxPath);
        var next = Regex.Replace(conf, @"(?m)^default slot-[ab]\s*$", $"default slot-{defaultSlot}");
        if (next != conf) WriteAtomically(ExtlinuxPath, System.Text.Encoding.UTF8.GetBytes(next));
    }

    static void WriteAtomically(string path, byte[] bytes)
    {
        var tmp = path + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            f.Write(bytes);
            f.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }

    public void MarkTryOnce(string slot, Formats.Update.FirmwareVersion version)
    {
        var s = Read();
        s.Versions[slot] = version.ToString();
        s.Trying = slot;
        s.TryBooted = false;
        Write(s, slot);
    }

    public void Confirm()
    {
        var s = Read();
        if (s.Trying != booted) return;
        s.Active = booted;
        s.Trying = null;
        s.TryBooted = false;
        Write(s, booted);
    }

    public void ClearTry()
    {
        var s = Read();
        s.Trying = null;
        s.TryBooted = false;
        Write(s, s.Active);
    }

    public void Reboot()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(rebootRequest)!);
        File.WriteAllText(rebootRequest, "firmware update\n");
    }

    /// <summary>
    /// Early in every boot (root, before pearl2d): arms the fallback when this boot is a try, and records a try
    /// that did not come back confirmed as bad. Returns what it did, for the journal.
    /// </summary>
    public string SelectAtBoot(string? firstVersion)
    {
        var s = Read();
        if (firstVersion is not null && !s.Versions.ContainsKey("a")) s.Versions["a"] = firstVersion;
        string what;
        if (s.Trying == booted && !s.TryBooted)
        {
            s.TryBooted = true;
            what = $"trying slot {booted} ({s.Versions.GetValueOrDefault(booted, "?")}) once; the next boot goes back to slot {s.Active} unless it confirms";
            Write(s, s.Active);
        }
        else if (s.Trying is { } failed && failed != booted)
        {
            var v = s.Versions.GetValueOrDefault(failed, "?");
            if (s.TryBooted && !s.Bad.Contains(v)) s.Bad.Add(v);
            what = s.TryBooted ? $"slot {failed} ({v}) was booted once and never confirmed: back on slot {booted}, {v} recorded bad" : $"slot {failed} was never booted; the try is dropped";
            s.Trying = null;
            s.TryBooted = false;
            Write(s, s.Active);
        }
        else if (s.Trying == booted)
        {
            // Booted the try a second time without a confirm (the fallback could not be armed): take it back now.
            var v = s.Versions.GetValueOrDefault(booted, "?");
            if (!s.Bad.Contains(v)) s.Bad.Add(v);
            s.Trying = null;
            s.TryBooted = false;
            Write(s, s.Active);
            what = $"slot {booted} ({v}) was booted twice without a confirm: recorded bad, the next boot is slot {s.Active}";
        }
        else
        {
            what = $"slot {booted} ({s.Versions.GetValueOrDefault(booted, "?")}), active {s.Active}";
            if (!File.Exists(StatePath)) Write(s, s.Active);
        }
        return what;
    }
}
