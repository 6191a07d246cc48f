using Pearl2.Fuzz;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>Every input in the fuzz corpus — seeds and any crash the fuzzer ever saved there — goes through every parser without an exception.</summary>
public class FuzzCorpusTests
{
    public static IEnumerable<object[]> Inputs() =>
        Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "fuzz-corpus"), "*", SearchOption.AllDirectories)
            .Select(f => new object[] { Path.GetRelativePath(Path.Combine(AppContext.BaseDirectory, "fuzz-corpus"), f) });

    [Theory]
    [MemberData(nameof(Inputs))]
    public void CorpusInputIsHandledByEveryParser(string file)
    {
        var data = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "fuzz-corpus", file));
        foreach (var (_, target) in FuzzTargets.All) target(data);
    }

    [Fact]
    public void CorpusIsThere() => Assert.True(Inputs().Count() >= 9);
}
