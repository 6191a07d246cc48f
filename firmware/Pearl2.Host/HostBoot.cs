using System.Runtime.InteropServices;
using Pearl2.Services.Update;

namespace Pearl2.Host;

/// <summary>
/// The host simulation of a board's boot loader: <c>pearl2d boot --slots DIR [-- ARGS…]</c>. The slots are files
/// (<c>DIR/slot-a</c>, <c>DIR/slot-b</c>, each a firmware executable) and the A/B state is <c>DIR/boot.json</c>.
/// It applies the try-once rule (<see cref="BootLoader.Decide"/>), writes the state back, and execs the chosen
/// slot with ARGS plus <c>--slots DIR --booted-slot X</c>, so the process (and its PID) carries on as the booted
/// firmware. On the first boot it installs itself as slot a. A "reboot" of the running firmware is an exec of
/// this boot loader again.
/// </summary>
internal static partial class HostBoot
{
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int execv(string path, string?[] argv);

    public static int Run(string[] args, string ownVersion)
    {
        string? dir = null;
        var pass = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--slots" && i + 1 < args.Length) dir = Path.GetFullPath(args[++i]);
            else if (args[i] == "--") { pass.AddRange(args[(i + 1)..]); break; }
            else { Console.Error.WriteLine($"pearl2d boot: unknown argument '{args[i]}'\nusage: pearl2d boot --slots DIR [-- FIRMWARE-ARGS…]"); return 2; }
        }
        if (dir is null) { Console.Error.WriteLine("usage: pearl2d boot --slots DIR [-- FIRMWARE-ARGS…]"); return 2; }
        Directory.CreateDirectory(dir);
        var control = new FileBootControl(dir, "-", () => { });
        var state = control.Read();
        string slotA = SlotPath(dir, "a");
        if (!File.Exists(slotA))
        {
            // First boot: this binary becomes slot a.
            File.Copy(Environment.ProcessPath ?? "/proc/self/exe", slotA + ".tmp", overwrite: true);
            File.Move(slotA + ".tmp", slotA, overwrite: true);
            state.Versions["a"] = ownVersion;
        }
        var decision = BootLoader.Decide(state);
        var path = SlotPath(dir, decision.Slot);
        if (!File.Exists(path))
        {
            Log($"boot.missing slot={decision.Slot} effect=\"booting slot {state.Active}\"");
            state.ClearTry();
            decision = new BootDecision(state.Active, false, decision.Slot, "the slot to try is empty");
            path = SlotPath(dir, decision.Slot);
        }
        control.Write(state);
        Log($"boot.decision slot={decision.Slot} version={state.Versions.GetValueOrDefault(decision.Slot, "?")} try={(decision.IsTry ? "yes" : "no")} reason=\"{decision.Reason}\"" +
            (decision.FellBackFrom is { } f ? $" bad={state.Versions.GetValueOrDefault(f, "?")}" : ""));
        if (OperatingSystem.IsLinux()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
        Exec(path, [.. pass, "--slots", dir, "--booted-slot", decision.Slot]);
        return 1;
    }

    static string SlotPath(string dir, string slot) => Path.Combine(dir, "slot-" + slot);

    static void Log(string line) => Console.WriteLine($"{TimeProvider.System.GetUtcNow():yyyy-MM-ddTHH:mm:ss.fffZ} info: pearl2d.boot {line}");

    /// <summary>Replaces this process with <paramref name="path"/>; returns only if that fails (after logging why).</summary>
    public static void Exec(string path, IReadOnlyList<string> args)
    {
        Console.Out.Flush();
        var argv = new string?[args.Count + 2];
        argv[0] = path;
        for (int i = 0; i < args.Count; i++) argv[i + 1] = args[i];
        execv(path, argv);
        Console.Error.WriteLine($"pearl2d: exec of {path} failed: {Marshal.GetLastPInvokeErrorMessage()}");
    }

    /// <summary>The simulated reboot: exec the boot loader (this binary) with the firmware's own arguments.</summary>
    public static void Reboot(string slotsDir, IReadOnlyList<string> firmwareArgs) =>
        Exec(Environment.ProcessPath ?? "/proc/self/exe", ["boot", "--slots", slotsDir, "--", .. firmwareArgs]);
}
