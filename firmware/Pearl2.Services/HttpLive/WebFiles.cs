using System.IO.Compression;
using System.Text;

namespace Pearl2.Services.HttpLive;

/// <summary>The files the HTTP stream ports serve besides the streams: the channel page and mpegts.js, built into the binary.</summary>
public static class WebFiles
{
    static byte[] Resource(string name)
    {
        using var s = typeof(WebFiles).Assembly.GetManifestResourceStream("Pearl2.Services.www." + name)
            ?? throw new InvalidOperationException($"resource {name} is missing from the build");
        var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }

    static readonly Lazy<string> Index = new(() => Encoding.UTF8.GetString(Resource("index.html")));
    static readonly Lazy<byte[]> Mpegts = new(() => Resource("mpegts.js"));
    static readonly Lazy<byte[]> MpegtsGz = new(() =>
    {
        var m = new MemoryStream();
        using (var gz = new GZipStream(m, CompressionLevel.SmallestSize, leaveOpen: true)) gz.Write(Mpegts.Value);
        return m.ToArray();
    });

    public static string IndexHtml => Index.Value;
    public static byte[] MpegtsJs => Mpegts.Value;
    /// <summary>Compressed once, on first use (about 62 KB instead of 275 KB).</summary>
    public static byte[] MpegtsJsGzip => MpegtsGz.Value;
}
