using System.Globalization;
using System.Net;
using System.Text;

namespace Pearl2.Formats.Ftp;

public enum FtpParseStatus { Complete, Incomplete, Malformed }

/// <summary>
/// One FTP reply (RFC 959 §4.2): a three-digit code and its text. A single line is <c>"227 text\r\n"</c>; a multi-line
/// reply opens with <c>"211-text"</c> and ends at the first line that starts with the same code and a space
/// (lines between may be anything, RFC 959 §4.2 and RFC 2389's FEAT listing). Bounded: lines of at most 4 KiB, at
/// most 1000 lines per reply.
/// </summary>
public sealed record FtpReply(int Code, IReadOnlyList<string> Lines)
{
    public const int MaxLineBytes = 4096, MaxLines = 1000;

    /// <summary>The text of the last line, after the code (what the single-line replies carry).</summary>
    public string Text => Lines.Count == 0 ? "" : Lines[^1].Length > 4 ? Lines[^1][4..] : "";
    public bool IsPreliminary => Code is >= 100 and < 200;
    public bool IsPositive => Code is >= 200 and < 400;
    public bool IsTransientError => Code is >= 400 and < 500;
    public bool IsPermanentError => Code >= 500;

    public override string ToString() => string.Join(" / ", Lines);

    /// <summary>
    /// Parses one reply from the start of <paramref name="buffer"/>; on Complete <paramref name="consumed"/> is its length.
    /// Lines may end in CRLF or a bare LF (some servers send that). Malformed: a first line that does not start with a
    /// code of 1xx–5xx followed by a space or a hyphen, an over-long line, too many lines.
    /// </summary>
    public static FtpParseStatus TryParse(ReadOnlySpan<byte> buffer, out FtpReply? reply, out int consumed, out string? error)
    {
        reply = null; consumed = 0; error = null;
        var lines = new List<string>();
        int at = 0, code = 0;
        while (true)
        {
            int nl = buffer[at..].IndexOf((byte)'\n');
            if (nl < 0)
            {
                if (buffer.Length - at > MaxLineBytes) { error = $"a reply line longer than {MaxLineBytes} bytes"; return FtpParseStatus.Malformed; }
                return FtpParseStatus.Incomplete;
            }
            if (nl > MaxLineBytes) { error = $"a reply line longer than {MaxLineBytes} bytes"; return FtpParseStatus.Malformed; }
            var raw = buffer.Slice(at, nl);
            if (raw.Length > 0 && raw[^1] == '\r') raw = raw[..^1];
            at += nl + 1;
            string line = Encoding.UTF8.GetString(raw);
            if (lines.Count == 0)
            {
                if (!CodeOf(raw, out code) || (raw.Length > 3 && raw[3] is not ((byte)' ' or (byte)'-')))
                {
                    error = $"'{Printable(line)}' does not start with a reply code";
                    return FtpParseStatus.Malformed;
                }
                lines.Add(line);
                if (raw.Length == 3 || raw[3] == ' ') break;
                continue;
            }
            if (lines.Count >= MaxLines) { error = $"a reply of more than {MaxLines} lines"; return FtpParseStatus.Malformed; }
            lines.Add(line);
            if (raw.Length >= 4 && CodeOf(raw, out int c) && c == code && raw[3] == ' ') break;
            if (raw.Length == 3 && CodeOf(raw, out c) && c == code) break;
        }
        reply = new FtpReply(code, lines);
        consumed = at;
        return FtpParseStatus.Complete;
    }

    static bool CodeOf(ReadOnlySpan<byte> line, out int code)
    {
        code = 0;
        if (line.Length < 3 || line[0] is < (byte)'1' or > (byte)'5' || !char.IsAsciiDigit((char)line[1]) || !char.IsAsciiDigit((char)line[2])) return false;
        code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        return true;
    }

    static string Printable(string s) => new(s.Take(80).Select(c => char.IsControl(c) ? '?' : c).ToArray());

    /// <summary>227 (RFC 959): "Entering Passive Mode (h1,h2,h3,h4,p1,p2)", the numbers anywhere in the text.</summary>
    public static bool TryParsePasv(string text, out IPAddress? address, out int port)
    {
        address = null; port = 0;
        // In parentheses as RFC 959 shows it, or (some servers) as the last word of the text.
        int open = text.IndexOf('(');
        string inner = open >= 0 && text.IndexOf(')', open) is var close and > 0 ? text[(open + 1)..close]
            : text.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault(w => w.Count(c => c == ',') == 5)?.TrimEnd('.') ?? "";
        var parts = inner.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 6) return false;
        var b = new byte[6];
        for (int i = 0; i < 6; i++)
            if (!byte.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out b[i])) return false;
        address = new IPAddress(b.AsSpan(0, 4));
        port = b[4] << 8 | b[5];
        return port > 0;
    }

    /// <summary>229 (RFC 2428 §3): "Entering Extended Passive Mode (|||port|)", any delimiter character.</summary>
    public static bool TryParseEpsv(string text, out int port)
    {
        port = 0;
        int open = text.IndexOf('(');
        if (open < 0 || open + 1 >= text.Length) return false;
        char d = text[open + 1];
        int close = text.IndexOf(')', open);
        if (close < 0) return false;
        var parts = text[(open + 1)..close].Split(d);
        // "|||6446|" splits into "", "", "", "6446", "".
        return parts.Length == 5 && parts[1].Length == 0 && parts[2].Length == 0
            && int.TryParse(parts[3], NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is > 0 and <= 65535;
    }

    /// <summary>257 (RFC 959 §7): the quoted path, with doubled quotes inside it standing for one.</summary>
    public static bool TryParsePath(string text, out string? path)
    {
        path = null;
        int q = text.IndexOf('"');
        if (q < 0) return false;
        var sb = new StringBuilder();
        for (int i = q + 1; i < text.Length; i++)
        {
            if (text[i] != '"') { sb.Append(text[i]); continue; }
            if (i + 1 < text.Length && text[i + 1] == '"') { sb.Append('"'); i++; continue; }
            path = sb.ToString();
            return true;
        }
        return false;
    }

    /// <summary>213 to SIZE (RFC 3659 §4): the size in bytes.</summary>
    public static bool TryParseSize(string text, out long size) =>
        long.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out size);
}

/// <summary>FTP commands as bytes; an argument with CR or LF (a second command smuggled in) is refused.</summary>
public static class FtpCommand
{
    public static byte[] Write(string verb, string? argument = null)
    {
        if (argument is not null && (argument.Contains('\r') || argument.Contains('\n') || argument.Contains('\0')))
            throw new ArgumentException($"an FTP argument may not contain CR, LF or NUL: {verb}");
        return Encoding.UTF8.GetBytes(argument is null ? verb + "\r\n" : verb + " " + argument + "\r\n");
    }
}
