using System.Text.RegularExpressions;

namespace Pearl2.Services.Update;

/// <summary>
/// A/B on a board whose boot loader reads its choice from files on the FAT boot partition (extlinux.conf for
/// U-Boot on qemu-virt, config.txt/tryboot.txt for the Raspberry Pi firmware). The try-once rule is split in two:
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
public abstract class BootPartitionControl(string bootDirectory, string booted, string rebootRequest) : IBootControl
{
    public string Booted => booted;
    protected string BootDirectory => bootDirectory;
    string StatePath => Path.Combine(bootDirectory, "pearl2-boot.json");

    /// <summary>Makes the boot loader boot <paramref name="slot"/> from now on.</summary>
    protected abstract void BootFromNowOn(string slot);
    /// <summary>Makes the next boot (and only that one, where the boot loader can) boot <paramref name="slot"/>.</summary>
    protected abstract void BootNextOnce(string slot);
    /// <summary>What the root reboot unit is asked for (a tryboot, or a plain reboot).</summary>
    protected virtual string RebootKind => "reboot";

    /// <summary>The slot the kernel command line says was booted (<c>pearl2.slot=a|b</c>), or null.</summary>
    public static string? BootedSlot(string cmdline) => Regex.Match(cmdline, @"(?:^|\s)pearl2\.slot=([ab])(?:\s|$)") is { Success: true } m ? m.Groups[1].Value : null;

    public BootState Read() => BootState.Load(StatePath);

    void Write(BootState s, string defaultSlot, bool once = false)
    {
        s.Save(StatePath);
        if (once) BootNextOnce(defaultSlot); else BootFromNowOn(defaultSlot);
    }

    /// <summary>Replaces the first line matching <paramref name="pattern"/> in a boot file, when it changes.</summary>
    protected void Rewrite(string file, string pattern, string replacement)
    {
        var path = Path.Combine(bootDirectory, file);
        var text = File.ReadAllText(path);
        var next = Regex.Replace(text, pattern, replacement);
        if (next != text) DurableFile.Write(path, System.Text.Encoding.UTF8.GetBytes(next));
    }

    public void MarkTryOnce(string slot, Formats.Update.FirmwareVersion version)
    {
        var s = Read();
        s.MarkTry(slot, version);
        Write(s, slot, once: true);
    }

    public void Confirm()
    {
        var s = Read();
        if (s.ConfirmTry(booted)) Write(s, booted);
    }

    public void ClearTry()
    {
        var s = Read();
        s.ClearTry();
        Write(s, s.Active);
    }

    public void Reboot()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(rebootRequest)!);
        File.WriteAllText(rebootRequest, RebootKind + "\n");
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
            if (s.TryBooted) s.MarkBad(v);
            what = s.TryBooted ? $"slot {failed} ({v}) was booted once and never confirmed: back on slot {booted}, {v} recorded bad" : $"slot {failed} was never booted; the try is dropped";
            s.ClearTry();
            Write(s, s.Active);
        }
        else if (s.Trying == booted)
        {
            // Booted the try a second time without a confirm (the fallback could not be armed): take it back now.
            var v = s.Versions.GetValueOrDefault(booted, "?");
            s.MarkBad(v);
            s.ClearTry();
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

/// <summary>
/// qemu-virt: U-Boot reads <c>extlinux/extlinux.conf</c> and keeps no state of its own, so a try is "default
/// slot-b" until the boot-select step of that boot points it back at the active slot.
/// </summary>
public sealed class ExtlinuxBootControl(string bootDirectory, string booted, string rebootRequest) : BootPartitionControl(bootDirectory, booted, rebootRequest)
{
    protected override void BootFromNowOn(string slot) => Rewrite(Path.Combine("extlinux", "extlinux.conf"), @"(?m)^default slot-[ab][ \t]*$", $"default slot-{slot}");
    protected override void BootNextOnce(string slot) => BootFromNowOn(slot);
}

/// <summary>
/// The Raspberry Pi: its firmware boots <c>config.txt</c>, or <c>tryboot.txt</c> once after <c>reboot '0 tryboot'</c>,
/// and falls back to config.txt by itself at the next boot. Each names its slot's kernel command line
/// (<c>cmdline=cmdline-a.txt</c>); a confirm makes config.txt name the new slot and tryboot.txt the other.
/// </summary>
public sealed class TrybootBootControl(string bootDirectory, string booted, string rebootRequest) : BootPartitionControl(bootDirectory, booted, rebootRequest)
{
    const string Cmdline = @"(?m)^cmdline=cmdline-[ab]\.txt[ \t]*$";
    protected override string RebootKind => "tryboot";

    protected override void BootFromNowOn(string slot)
    {
        Rewrite("config.txt", Cmdline, $"cmdline=cmdline-{slot}.txt");
        Rewrite("tryboot.txt", Cmdline, $"cmdline=cmdline-{BootLoader.Other(slot)}.txt");
    }

    protected override void BootNextOnce(string slot) => Rewrite("tryboot.txt", Cmdline, $"cmdline=cmdline-{slot}.txt");
}
