using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Xml.Linq;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>
/// The import direction, read from the compiled assemblies' references and the project files: formats import
/// nothing of ours (and no ASP.NET Core or logging); media imports only formats and no ASP.NET Core; services import
/// formats and media; nothing imports the host. A break names the assembly and what it reached for.
/// </summary>
public sealed class ArchitectureTests
{
    static readonly string[] Layers = ["Pearl2.Formats", "Pearl2.Media", "Pearl2.Services", "pearl2d"];

    /// <summary>What each layer may reference among ours, and which foreign assembly prefixes it must not.</summary>
    static readonly Dictionary<string, (string[] Ours, string[] Forbidden)> Rules = new()
    {
        ["Pearl2.Formats"] = ([], ["Microsoft.AspNetCore", "Microsoft.Extensions", "System.Net.Sockets"]),
        ["Pearl2.Media"] = (["Pearl2.Formats"], ["Microsoft.AspNetCore"]),
        ["Pearl2.Services"] = (["Pearl2.Formats", "Pearl2.Media"], []),
        ["pearl2d"] = (["Pearl2.Formats", "Pearl2.Media", "Pearl2.Services"], []),
    };

    /// <summary>The assembly references compiled into <paramref name="name"/>.dll beside the tests (what it really imports).</summary>
    static List<AssemblyName> ReferencesOf(string name)
    {
        using var pe = new PEReader(File.OpenRead(Path.Combine(AppContext.BaseDirectory, name + ".dll")));
        var md = pe.GetMetadataReader();
        return md.AssemblyReferences.Select(h => new AssemblyName(md.GetString(md.GetAssemblyReference(h).Name))).ToList();
    }

    public static List<string> Violations(string layer, IEnumerable<AssemblyName> references)
    {
        var (ours, forbidden) = Rules[layer];
        var found = new List<string>();
        foreach (var r in references.Select(r => r.Name!))
        {
            if (Layers.Contains(r) && !ours.Contains(r)) found.Add($"{layer} references {r} (allowed of ours: {(ours.Length == 0 ? "none" : string.Join(", ", ours))})");
            if (forbidden.FirstOrDefault(f => r.StartsWith(f, StringComparison.Ordinal)) is { } f) found.Add($"{layer} references {r} ({f}.* is not for this layer)");
        }
        return found;
    }

    [Fact]
    public void EveryAssemblyReferencesOnlyTheLayersBelowIt()
    {
        var found = Layers.SelectMany(l => Violations(l, ReferencesOf(l))).ToList();
        Assert.True(found.Count == 0, "the import direction is broken:\n" + string.Join("\n", found));
    }

    [Fact]
    public void TheProjectFilesAgreeNoLowerLayerTakesTheAspNetCoreFramework()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Pearl2.Firmware.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("no Pearl2.Firmware.sln above the test");
        var found = new List<string>();
        foreach (var (project, layer) in new[] { ("Pearl2.Formats", "Pearl2.Formats"), ("Pearl2.Media", "Pearl2.Media"), ("Pearl2.Services", "Pearl2.Services"), ("Pearl2.Host", "pearl2d") })
        {
            var xml = XDocument.Load(Path.Combine(root, "firmware", project, project + ".csproj"));
            var refs = xml.Descendants("ProjectReference").Select(p => Path.GetFileNameWithoutExtension(p.Attribute("Include")!.Value))
                .Select(n => n == "Pearl2.Host" ? "pearl2d" : n)
                .Concat(xml.Descendants("FrameworkReference").Select(f => f.Attribute("Include")!.Value))
                .Select(n => new AssemblyName(n));
            found.AddRange(Violations(layer, refs).Select(v => $"{project}.csproj: {v}"));
        }
        Assert.True(found.Count == 0, "the import direction is broken:\n" + string.Join("\n", found));
    }

    [Fact]
    public void ABrokenRuleIsNamed()
    {
        // What the two tests above print when a layer reaches up or across.
        Assert.Equal(["Pearl2.Media references Pearl2.Services (allowed of ours: Pearl2.Formats)", "Pearl2.Media references Microsoft.AspNetCore.Http (Microsoft.AspNetCore.* is not for this layer)"],
            Violations("Pearl2.Media", [new("Pearl2.Services"), new("Microsoft.AspNetCore.Http"), new("System.Runtime")]));
        Assert.Equal(["Pearl2.Services references pearl2d (allowed of ours: Pearl2.Formats, Pearl2.Media)"], Violations("Pearl2.Services", [new("pearl2d")]));
    }
}
