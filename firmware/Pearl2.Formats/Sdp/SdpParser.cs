namespace Pearl2.Formats.Sdp;

/// <summary>A parsed SDP (RFC 8866): what an RTSP peer needs of it — media sections with their payload types and attributes.</summary>
public sealed record SdpDocument(string? SessionName, string? Origin, IReadOnlyList<string> SessionAttributes, IReadOnlyList<SdpSection> Media);

public sealed record SdpSection(string Kind, int Port, string Protocol, IReadOnlyList<int> PayloadTypes, IReadOnlyList<string> Attributes)
{
    public string? Attribute(string name)
    {
        foreach (var a in Attributes)
            if (a.StartsWith(name, StringComparison.Ordinal) && (a.Length == name.Length || a[name.Length] == ':'))
                return a.Length == name.Length ? "" : a[(name.Length + 1)..];
        return null;
    }
}

public static class SdpParser
{
    public const int MaxBytes = 64 * 1024, MaxMedia = 16, MaxAttributes = 256;

    public static bool TryParse(string text, out SdpDocument? sdp, out string? error)
    {
        sdp = null; error = null;
        if (text.Length > MaxBytes) { error = "SDP larger than 64 KiB"; return false; }
        string? name = null, origin = null;
        var sessionAttrs = new List<string>();
        var media = new List<SdpSection>();
        List<string>? attrs = null;
        (string Kind, int Port, string Proto, List<int> Pts)? current = null;
        bool sawVersion = false;
        int count = 0;

        void Close()
        {
            if (current is { } c) media.Add(new SdpSection(c.Kind, c.Port, c.Proto, c.Pts, attrs!));
        }

        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0) continue;
            if (line.Length < 2 || line[1] != '=' || !char.IsAsciiLetterLower(line[0])) { error = $"line is not 'x=value': '{Cut(line)}'"; return false; }
            if (++count > MaxAttributes * 2) { error = "too many lines"; return false; }
            var value = line[2..];
            if (!sawVersion)
            {
                if (line != "v=0") { error = "SDP must start with v=0"; return false; }
                sawVersion = true;
                continue;
            }
            switch (line[0])
            {
                case 's' when current is null: name = value; break;
                case 'o' when current is null: origin = value; break;
                case 'm':
                    Close();
                    if (media.Count == MaxMedia) { error = "too many media sections"; return false; }
                    var f = value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (f.Length < 4) { error = $"bad m= line '{Cut(line)}'"; return false; }
                    var portText = f[1].Split('/')[0];
                    if (!int.TryParse(portText, out int port) || port is < 0 or > 65535) { error = $"bad port in '{Cut(line)}'"; return false; }
                    var pts = new List<int>();
                    foreach (var pt in f.Skip(3))
                        if (int.TryParse(pt, out int p) && p is >= 0 and <= 127) pts.Add(p);
                        else if (f[2].StartsWith("RTP/", StringComparison.Ordinal)) { error = $"bad payload type '{Cut(pt)}'"; return false; }
                    current = (f[0], port, f[2], pts);
                    attrs = new List<string>();
                    break;
                case 'a':
                    var list = attrs ?? sessionAttrs;
                    if (list.Count == MaxAttributes) { error = "too many attributes"; return false; }
                    list.Add(value);
                    break;
                default: break; // c=, t=, b=, i=, u=, e=, p=, k=, r=, z=: carried but not needed here
            }
        }
        if (!sawVersion) { error = "empty SDP"; return false; }
        Close();
        sdp = new SdpDocument(name, origin, sessionAttrs, media);
        return true;
    }

    static string Cut(string s) => s.Length > 40 ? s[..40] + "…" : s;
}
