using System.Runtime.InteropServices;

namespace Pearl2.Media.FFmpeg;

/// <summary>Thrown at start when Debian 12's FFmpeg runtime libraries are missing or of another major version.</summary>
public sealed class FFmpegMissingException(string message) : Exception(message);

public static class FFmpegLibraries
{
    static readonly (string Soname, string Package, uint Major, Func<uint> Version)[] Required =
    [
        (LibAv.AvUtil, "libavutil57", 57, LibAv.avutil_version),
        (LibAv.AvCodec, "libavcodec59", 59, LibAv.avcodec_version),
        (LibAv.AvFormat, "libavformat59", 59, LibAv.avformat_version),
        (LibAv.SwScale, "libswscale6", 6, LibAv.swscale_version),
    ];

    static bool _checked;

    /// <summary>Loads each library and checks its major version; throws with the Debian package to install.</summary>
    public static void EnsureAvailable()
    {
        if (_checked) return;
        foreach (var lib in Required) Check(lib.Soname, lib.Package, lib.Major, lib.Version);
        LibAv.av_log_set_level(16); // AV_LOG_ERROR: keep libav's chatter out of the journal
        _checked = true;
    }

    /// <summary>Loads one library by soname and checks its major version.</summary>
    internal static void Check(string soname, string package, uint major, Func<uint> version)
    {
        if (!NativeLibrary.TryLoad(soname, out _))
            throw new FFmpegMissingException($"FFmpeg library {soname} not found: install the Debian 12 package '{package}' (apt-get install {package})");
        uint v = version();
        if (v >> 16 != major)
            throw new FFmpegMissingException($"{soname} reports version {v >> 16}.{(v >> 8) & 0xff}.{v & 0xff}, expected major {major} (Debian 12 '{package}')");
    }

    public static string Versions()
    {
        EnsureAvailable();
        static string V(uint v) => $"{v >> 16}.{(v >> 8) & 0xff}.{v & 0xff}";
        return $"avcodec={V(LibAv.avcodec_version())} avutil={V(LibAv.avutil_version())} avformat={V(LibAv.avformat_version())} swscale={V(LibAv.swscale_version())}";
    }
}
