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
            if (s.Versions.TryGetValue(failed, out var v) && !s.Bad.Contains(v)) s.Bad.Add(v);
            s.Trying = null;
            s.TryBooted = false;
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

    public BootState Read()
    {
        if (!File.Exists(StatePath)) return new BootState();
        try { return JsonSerializer.Deserialize(File.ReadAllBytes(StatePath), BootStateJson.Default.BootState) ?? new BootState(); }
        catch (JsonException) { return new BootState(); }   // unreadable: boot the default slot
    }

    public void Write(BootState s) => DurableFile.Write(StatePath, JsonSerializer.SerializeToUtf8Bytes(s, BootStateJson.Default.BootState));

    public void MarkTryOnce(string slot, FirmwareVersion version)
    {
        var s = Read();
        s.Versions[slot] = version.ToString();
        s.Trying = slot;
        s.TryBooted = false;
        Write(s);
    }

    public void Confirm()
    {
        var s = Read();
        if (s.Trying != booted) return;
        s.Active = booted;
        s.Trying = null;
        s.TryBooted = false;
        Write(s);
    }

    public void ClearTry()
    {
        var s = Read();
        s.Trying = null;
        s.TryBooted = false;
        Write(s);
    }

    public void Reboot() => reboot();
}
