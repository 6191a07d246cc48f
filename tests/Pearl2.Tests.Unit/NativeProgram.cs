using System.Diagnostics;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>Runs a compiler or a program it built (the ABI tests check our layouts against C headers this way).</summary>
static class NativeProgram
{
    public static string Run(string file, string args, string dir)
    {
        var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir })!;
        var stdout = p.StandardOutput.ReadToEnd();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {args} failed: {stderr}");
        return stdout.Trim();
    }
}
