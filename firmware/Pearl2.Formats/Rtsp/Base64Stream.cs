namespace Pearl2.Formats.Rtsp;

/// <summary>
/// Decodes the base64 body of an RTSP-over-HTTP tunnel's POST (the QuickTime tunnelling scheme): commands
/// may arrive split anywhere, even inside a 4-character group, each may end with its own padding, and
/// line breaks are ignored.
/// </summary>
public struct Base64Stream
{
    int _bits, _count;

    /// <summary>False once a byte that is not base64 arrived; the tunnel is then broken.</summary>
    public bool Valid { get; private set; } = true;

    public Base64Stream() { }

    public static int MaxOutput(int inputLength) => inputLength / 4 * 3 + 3;

    /// <summary>Decodes what <paramref name="input"/> completes into <paramref name="output"/> (at least <see cref="MaxOutput"/> bytes).</summary>
    public int Decode(ReadOnlySpan<byte> input, Span<byte> output)
    {
        int n = 0;
        foreach (byte c in input)
        {
            int v;
            if (c is >= (byte)'A' and <= (byte)'Z') v = c - 'A';
            else if (c is >= (byte)'a' and <= (byte)'z') v = c - 'a' + 26;
            else if (c is >= (byte)'0' and <= (byte)'9') v = c - '0' + 52;
            else if (c == '+') v = 62;
            else if (c == '/') v = 63;
            else if (c is (byte)'\r' or (byte)'\n' or (byte)' ' or (byte)'\t') continue;
            else if (c == '=')
            {
                // Padding closes the group: 2 characters carry one byte, 3 carry two.
                if (_count == 2) output[n++] = (byte)(_bits >> 4);
                else if (_count == 3) { output[n++] = (byte)(_bits >> 10); output[n++] = (byte)(_bits >> 2); }
                else if (_count == 1) { Valid = false; return n; }
                _bits = 0; _count = 0;
                continue;
            }
            else { Valid = false; return n; }
            _bits = (_bits << 6) | v;
            if (++_count == 4)
            {
                output[n++] = (byte)(_bits >> 16);
                output[n++] = (byte)(_bits >> 8);
                output[n++] = (byte)_bits;
                _bits = 0; _count = 0;
            }
        }
        return n;
    }
}
