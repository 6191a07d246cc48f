using System.Text.Json;
using System.Text.Json.Serialization;
using Pearl2.Formats.Update;

namespace Pearl2.Services.Update;

/// <summary>
/// The A/B boot state the boot loader acts on. <see cref="Trying"/> is a slot to boot once; the boot loader
/// clears it as it boots it (so a second boot without a confirm falls back), and a confirmed try becomes
/// <see cref="Active"/>. What each slot holds is recorded when it is written, so a failed try can be named.
/// </summary>
public sealed class BootState
{
    public string Active { get; set; } = "a";
    /// <summary>The slot to boot once, or null.</summary>
    public string? Trying { get; set; }
    /// <summary>Whether the try has been booted (set by the boot loader as it boots it).</summary>
    public bool TryBooted { get; set; }
    public Dictionary<string, string> Versions { get; set; } = new();
    /// <summary>Versions that failed their health check here and are never installed again.</summary>
    public List<string> Bad { get; set; } = new();

    /// <summary>Records what <paramref name="slot"/> now holds and makes it the try, not yet booted.</summary>
    public void MarkTry(string slot, FirmwareVersion version)
    {
        Versions[slot] = version.ToString();
        Trying = slot;
        TryBooted = false;
    }

    /// <summary>Makes the try the active slot when it is <paramref name="booted"/>; false (and no change) otherwise.</summary>
    public bool ConfirmTry(string booted)
    {
        if (Trying != booted) return false;
        Active = booted;
        ClearTry();
        return true;
    }

    public void ClearTry()
    {
        Trying = null;
        TryBooted = false;
    }

    public void MarkBad(string version)
    {
        if (!Bad.Contains(version)) Bad.Add(version);
    }

    /// <summary>The state in <paramref name="path"/>; a missing or unreadable file is the default state (slot a).</summary>
    public static BootState Load(string path)
    {
        try { return File.Exists(path) ? JsonSerializer.Deserialize(File.ReadAllBytes(path), BootStateJson.Default.BootState) ?? new BootState() : new BootState(); }
        catch (JsonException) { return new BootState(); }
    }

    public void Save(string path) => DurableFile.Write(path, JsonSerializer.SerializeToUtf8Bytes(this, BootStateJson.Default.BootState));
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(BootState))]
public sealed partial class BootStateJson : JsonSerializerContext;

/// <summary>What the boot loader does with a <see cref="BootState"/>: which slot it boots, and why.</summary>
public readonly record struct BootDecision(string Slot, bool IsTry, string? FellBackFrom, string Reason);

/// <summary>State files that a kill or a power cut leaves whole: written to a temporary name, fsync'd, renamed.</summary>
public static class DurableFile
{
    public static void Write(string path, byte[] bytes)
    {
        var tmp = path + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            f.Write(bytes);
            f.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }
}

public static class BootLoader
{
    public static string Other(string slot) => slot == "a" ? "b" : "a";

    /// <summary>
    /// The try-once rule every board's boot loader follows (U-Boot script, the Pi's tryboot flag, the host
    /// simulation): a try not yet booted is booted once and marked booted; a try already booted and still
    /// unconfirmed is abandoned (its version recorded bad) and the active slot boots.
    /// </summary>
    public static BootDecision Decide(BootState s)
    {
        if (s.Trying is { } t && !s.TryBooted)
        {
            s.TryBooted = true;
            return new(t, true, null, $"trying slot {t} once");
        }
        if (s.Trying is { } failed)
        {
            if (s.Versions.TryGetValue(failed, out var v)) s.MarkBad(v);
            s.ClearTry();
            return new(s.Active, false, failed, $"slot {failed} was booted once and never confirmed: back to slot {s.Active}");
        }
        return new(s.Active, false, null, $"slot {s.Active}");
    }
}

/// <summary>
/// A board's boot control: where the A/B state lives and how the machine reboots. The updater marks the written
/// slot to try once and reboots; the new version confirms itself when healthy.
/// </summary>
public interface IBootControl
{
    /// <summary>The slot this system booted from.</summary>
    string Booted { get; }
    BootState Read();
    /// <summary>Records what the slot now holds and boots it once at the next boot.</summary>
    void MarkTryOnce(string slot, FirmwareVersion version);
    /// <summary>Makes the booted try slot the active one.</summary>
    void Confirm();
    /// <summary>Forgets a pending try (the slot is about to be written again).</summary>
    void ClearTry();
    void Reboot();
}

/// <summary>
/// The host simulation: the state is a JSON file beside the slot files (written to a temporary file, fsync'd,
/// renamed, so a kill at any point leaves the old or the new state), and a reboot is a re-exec into the boot
/// loader (<c>pearl2d boot</c>), which picks the slot and execs its binary.
/// </summary>
public sealed class FileBootControl(string directory, string booted, Action reboot) : IBootControl
{
    public string StatePath => Path.Combine(directory, "boot.json");
    public string Booted => booted;

    public BootState Read() => BootState.Load(StatePath);

    public void Write(BootState s) => s.Save(StatePath);

    public void MarkTryOnce(string slot, FirmwareVersion version) => Update(s => { s.MarkTry(slot, version); return true; });
    public void Confirm() => Update(s => s.ConfirmTry(booted));
    public void ClearTry() => Update(s => { s.ClearTry(); return true; });

    void Update(Func<BootState, bool> change)
    {
        var s = Read();
        if (change(s)) Write(s);
    }

    public void Reboot() => reboot();
}
