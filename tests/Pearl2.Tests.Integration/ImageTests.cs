using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// The SD-card images that <c>make image BOARD=…</c> wrote to out/. Building one needs the cached Debian base
/// (image/build-base.sh, 30 min cold), so <c>make test</c> builds the images only when that cache exists; the
/// tests here are skipped, saying why, when an image is not there.
/// </summary>
public static class Images
{
    public static string Version { get; } = ReadVersion();

    static string ReadVersion()
    {
        var csproj = File.ReadAllText(Path.Combine(Peers.RepoRoot, "firmware", "Pearl2.Host", "Pearl2.Host.csproj"));
        return Regex.Match(csproj, "<Version>([^<]+)</Version>").Groups[1].Value;
    }

    public static string PathOf(string board) =>
        Path.Combine(Environment.GetEnvironmentVariable("PEARL2_IMAGE_DIR") ?? Path.Combine(Peers.RepoRoot, "out"), $"pearl2-{board}-{Version}.img");

    public static string? MissingReason(string board) => File.Exists(PathOf(board)) ? null
        : $"no image at {PathOf(board)}: run 'make image BOARD={board}' (make test builds it when the Debian base rootfs is cached; a cold base build takes about 30 min)";

    public sealed record Partition(long Start, long Sectors, string Type, bool Bootable);

    public static async Task<(string LabelId, Partition[] Parts)> ReadTableAsync(string image)
    {
        var r = await Peers.RunAsync("sfdisk", ["-J", image], TimeSpan.FromSeconds(30));
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var table = doc.RootElement.GetProperty("partitiontable");
        Assert.Equal("dos", table.GetProperty("label").GetString());
        var parts = table.GetProperty("partitions").EnumerateArray().Select(p => new Partition(
            p.GetProperty("start").GetInt64(), p.GetProperty("size").GetInt64(), p.GetProperty("type").GetString()!,
            p.TryGetProperty("bootable", out var b) && b.GetBoolean())).ToArray();
        return (table.GetProperty("id").GetString()!, parts);
    }

    /// <summary>Copies one partition out of an image (sparse) so debugfs and e2label can read it.</summary>
    public static async Task<string> ExtractAsync(string image, Partition p, string dir, string name)
    {
        var file = Path.Combine(dir, name);
        var r = await Peers.RunAsync("dd", [$"if={image}", $"of={file}", "bs=1M", $"skip={p.Start / 2048}", $"count={p.Sectors / 2048}", "conv=sparse", "status=none"], TimeSpan.FromMinutes(3));
        Assert.Equal(0, r.ExitCode);
        return file;
    }

    public static async Task<string> DebugFsAsync(string ext4, string request)
    {
        var r = await Peers.RunAsync("debugfs", ["-R", request, ext4], TimeSpan.FromSeconds(60));
        Assert.Equal(0, r.ExitCode);
        return r.Stdout;
    }

    public static async Task<string> LabelAsync(string ext4) => (await Peers.RunAsync("e2label", [ext4], TimeSpan.FromSeconds(20))).Stdout.Trim();

    public static async Task<string> FatTypeAsync(string image, Partition boot, string path)
    {
        var r = await Peers.RunAsync("mtype", ["-i", $"{image}@@{boot.Start * 512}", "::/" + path], TimeSpan.FromSeconds(20));
        Assert.True(r.ExitCode == 0, $"mtype {path}: {r.Stderr}");
        return r.Stdout;
    }

    public static async Task<string[]> FatListAsync(string image, Partition boot)
    {
        var r = await Peers.RunAsync("mdir", ["-i", $"{image}@@{boot.Start * 512}", "-b", "-/", "::/"], TimeSpan.FromSeconds(20));
        Assert.Equal(0, r.ExitCode);
        return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(l => l.Replace("::/", "")).ToArray();
    }
}

/// <summary>xunit 2 has no runtime skip: the attribute skips, with the reason, when the board's image is missing.</summary>
public sealed class ImageFactAttribute : FactAttribute
{
    public ImageFactAttribute(string board) { if (Images.MissingReason(board) is { } why) Skip = why; }
}

public sealed class ImageLayoutTests(ITestOutputHelper output)
{
    [ImageFact("qemu-virt")]
    public Task QemuVirtImageHasTheLayoutAndFiles() => CheckAsync("qemu-virt");

    [ImageFact("rpi4-hdmi")]
    public Task Rpi4HdmiImageHasTheLayoutAndFiles() => CheckAsync("rpi4-hdmi");

    async Task CheckAsync(string board)
    {
        var image = Images.PathOf(board);
        var (id, parts) = await Images.ReadTableAsync(image);
        Assert.Equal("0x50524c32", id);
        Assert.Equal(4, parts.Length);
        Assert.Equal(("c", true), (parts[0].Type, parts[0].Bootable));
        Assert.All(parts.Skip(1), p => Assert.Equal(("83", false), (p.Type, p.Bootable)));
        Assert.Equal(parts[1].Sectors, parts[2].Sectors);   // A and B hold the same image
        for (int i = 1; i < 4; i++) Assert.Equal(parts[i - 1].Start + parts[i - 1].Sectors, parts[i].Start);
        Assert.All(parts, p => Assert.Equal(0, p.Start % 2048));   // MiB-aligned for SD erase blocks
        Assert.Equal((parts[3].Start + parts[3].Sectors) * 512, new FileInfo(image).Length);
        output.WriteLine($"{board}: " + string.Join(", ", parts.Select(p => $"{p.Type}{(p.Bootable ? "*" : "")} {p.Sectors / 2048} MiB at {p.Start / 2048} MiB")));

        // The boot partition: what this board's boot loader reads, and the kernel command line of each slot.
        var files = await Images.FatListAsync(image, parts[0]);
        output.WriteLine("boot: " + string.Join(" ", files));
        Assert.Contains("initrd.img", files);
        Assert.Contains($"version={Images.Version}", await Images.FatTypeAsync(image, parts[0], "pearl2-slots.txt"));
        if (board == "qemu-virt")
        {
            Assert.Contains("Image", files);
            var extlinux = await Images.FatTypeAsync(image, parts[0], "extlinux/extlinux.conf");
            Assert.Contains("default slot-a", extlinux);
            Assert.Matches(@"label slot-a\s+kernel /Image\s+initrd /initrd.img\s+append root=PARTUUID=50524c32-02 ro ", extlinux);
            Assert.Matches(@"label slot-b\s+kernel /Image\s+initrd /initrd.img\s+append root=PARTUUID=50524c32-03 ro ", extlinux);
        }
        else
        {
            foreach (var f in new[] { "start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb", "vmlinuz", "config.txt", "tryboot.txt", "cmdline-a.txt", "cmdline-b.txt" })
                Assert.Contains(f, files);
            var config = await Images.FatTypeAsync(image, parts[0], "config.txt");
            Assert.Contains("arm_64bit=1", config);
            Assert.Contains("cmdline=cmdline-a.txt", config);
            Assert.Contains("dtoverlay=tc358743", config);
            Assert.Contains("cmdline=cmdline-b.txt", await Images.FatTypeAsync(image, parts[0], "tryboot.txt"));
            Assert.StartsWith("root=PARTUUID=50524c32-02 ro ", await Images.FatTypeAsync(image, parts[0], "cmdline-a.txt"));
            Assert.StartsWith("root=PARTUUID=50524c32-03 ro ", await Images.FatTypeAsync(image, parts[0], "cmdline-b.txt"));
        }

        var dir = Directory.CreateTempSubdirectory("pearl2-image-").FullName;
        try
        {
            var rootA = await Images.ExtractAsync(image, parts[1], dir, "rootfs-a");
            var rootB = await Images.ExtractAsync(image, parts[2], dir, "rootfs-b");
            var data = await Images.ExtractAsync(image, parts[3], dir, "data");
            Assert.Equal([$"pearl2-{Images.Version}", "pearl2-empty", "pearl2-data"], [await Images.LabelAsync(rootA), await Images.LabelAsync(rootB), await Images.LabelAsync(data)]);

            // Slot A: the firmware (an aarch64 executable), its service, its board and the read-only layout.
            await Images.DebugFsAsync(rootA, $"dump /usr/lib/pearl2/pearl2d {dir}/pearl2d");
            var elf = File.ReadAllBytes(Path.Combine(dir, "pearl2d"));
            Assert.Equal("\x7f" + "ELF", Encoding.ASCII.GetString(elf, 0, 4));
            Assert.Equal(183, BitConverter.ToUInt16(elf, 18));   // e_machine EM_AARCH64
            Assert.Contains($"version={Images.Version}\nboard={board}", await Images.DebugFsAsync(rootA, "cat /etc/pearl2/release"));
            var boardJson = await Images.DebugFsAsync(rootA, "cat /etc/pearl2/board.json");
            Assert.Equal(File.ReadAllText(Path.Combine(Peers.RepoRoot, "board", board, "board.json")), boardJson);
            var unit = await Images.DebugFsAsync(rootA, "cat /etc/systemd/system/pearl2d.service");
            foreach (var line in new[] { "Type=notify", "User=pearl2", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "WatchdogSec=", "Restart=always" })
                Assert.Contains(line, unit);
            Assert.Contains("/etc/systemd/system/pearl2d.service", await Images.DebugFsAsync(rootA, "stat /etc/systemd/system/multi-user.target.wants/pearl2d.service"));
            Assert.Matches(@"(?m)^pearl2:x:992:992:.*:/usr/sbin/nologin$", await Images.DebugFsAsync(rootA, "cat /etc/passwd"));
            Assert.Matches(@"(?m)^root:\*:", await Images.DebugFsAsync(rootA, "cat /etc/shadow"));   // no password login
            Assert.Matches(@"(?m)^LABEL=pearl2-data\s+/data\s+ext4", await Images.DebugFsAsync(rootA, "cat /etc/fstab"));
            var sbin = await Images.DebugFsAsync(rootA, "ls -l /usr/sbin");
            Assert.DoesNotContain("sshd", sbin);
            Assert.Equal("", (await Images.DebugFsAsync(rootA, "cat /etc/machine-id")).Trim());
            Assert.Contains("\"../run/pearl2/resolv.conf\"", await Images.DebugFsAsync(rootA, "stat /etc/resolv.conf"));   // the lease's, by pearl2-resolv
            var libs = await Images.DebugFsAsync(rootA, "ls /usr/lib/aarch64-linux-gnu");
            foreach (var lib in new[] { "libavcodec.so.59", "libswscale.so.6", "libgpiod.so.2", "libssl.so.3", "libasound.so.2" })
                Assert.Contains(lib, libs);
            var kver = Regex.Match(await Images.DebugFsAsync(rootA, "ls /usr/lib/modules"), @"\d+\.\d+\.\d+-\d+-arm64").Value;
            var modulesDep = await Images.DebugFsAsync(rootA, $"cat /usr/lib/modules/{kver}/modules.dep");
            Assert.Contains("kernel/drivers/media/test-drivers/vivid/vivid.ko:", modulesDep);
            if (board == "qemu-virt")   // built from Debian's kernel source, and known to modprobe
                Assert.Matches(@"(?m)^updates/gpio-sim-pearl2\.ko: .*configfs\.ko", modulesDep);

            // Slot B is empty until an update writes it; the data partition holds pearl2's directory only.
            Assert.DoesNotContain("usr", await Images.DebugFsAsync(rootB, "ls /"));
            Assert.Matches(@"User:\s+992\s+Group:\s+992", await Images.DebugFsAsync(data, "stat /pearl2"));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>
    /// The next version's update payload (made by make test-images from the same commit) is built the way slot A was:
    /// all but a few of its 1 MiB chunks are the bytes at the same place in slot A, so an update copies them from the
    /// running slot instead of fetching them. Guards the deterministic root file system (size steps, UUID, hash seed).
    /// </summary>
    [ImageFact("qemu-virt")]
    public async Task TheNextVersionsPayloadIsSlotAButForAFewChunks()
    {
        var image = Images.PathOf("qemu-virt");
        var (_, parts) = await Images.ReadTableAsync(image);
        var v = Images.Version.Split('.');
        var next = Path.Combine(Path.GetDirectoryName(image)!, $"pearl2-qemu-virt-{v[0]}.{v[1]}.{int.Parse(v[2]) + 1}.slot");
        Assert.True(File.Exists(next), $"{next} is missing: run make test-images");
        await using var a = new FileStream(image, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        await using var b = new FileStream(next, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        a.Position = parts[1].Start * 512;
        var ca = new byte[1 << 20];
        var cb = new byte[1 << 20];
        int chunks = 0, same = 0, zero = 0;
        while (await b.ReadAtLeastAsync(cb, cb.Length, throwOnEndOfStream: false) is var n && n > 0)
        {
            await a.ReadAtLeastAsync(ca.AsMemory(0, n), n, throwOnEndOfStream: false);
            chunks++;
            if (!cb.AsSpan(0, n).ContainsAnyExcept((byte)0)) zero++;
            else if (ca.AsSpan(0, n).SequenceEqual(cb.AsSpan(0, n))) same++;
        }
        output.WriteLine($"payload {new FileInfo(next).Length >> 20} MiB: {chunks} chunks, {zero} zeros, {same} as in slot A, {chunks - zero - same} to fetch");
        Assert.True(chunks - zero - same <= (chunks - zero) / 20, $"{chunks - zero - same} of {chunks - zero} chunks differ from slot A");
        Assert.Equal(0, new FileInfo(next).Length % (128 << 20));   // sized in 128 MiB steps
    }

    /// <summary>
    /// Flashing with bmaptool writes only the mapped blocks (and checks their hashes from the .bmap), and the
    /// card then hashes to the published .sha256 of the whole image.
    /// </summary>
    [ImageFact("qemu-virt")]
    public async Task BmaptoolFlashesTheImageAndTheChecksumHolds()
    {
        var image = Images.PathOf("qemu-virt");
        var published = File.ReadAllText(image + ".sha256").Split(' ')[0];
        Assert.Matches("^[0-9a-f]{64}$", published);
        var dir = Directory.CreateTempSubdirectory("pearl2-flash-").FullName;
        try
        {
            var card = Path.Combine(dir, "card.img");
            var copy = await Peers.RunAsync("bmaptool", ["copy", "--bmap", image + ".bmap", image, card], TimeSpan.FromMinutes(5));
            Assert.True(copy.ExitCode == 0, copy.Stderr);
            output.WriteLine(copy.Stderr.Trim());
            var sum = await Peers.RunAsync("sha256sum", [card], TimeSpan.FromMinutes(5));
            Assert.Equal(published, sum.Stdout.Split(' ')[0]);
        }
        finally { Directory.Delete(dir, true); }
    }
}
