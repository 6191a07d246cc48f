using System.Globalization;

namespace Pearl2.Formats.Rtmp;

/// <summary>
/// An AMF0 command (RTMP 1.0 §7.2): its name, transaction id and arguments (the command object first, null when there
/// is none). What a server answers: <c>_result</c> and <c>_error</c> with the transaction of the call they answer,
/// <c>onStatus</c> with an info object (level, code, description), <c>onBWDone</c> and the like.
/// </summary>
public sealed record RtmpCommand(string Name, double Transaction, IReadOnlyList<AmfValue> Args)
{
    /// <summary>An info object's "code" (NetConnection.Connect.Success, NetStream.Publish.Start, …), if the command carries one.</summary>
    public string? Code => Args.OfType<AmfValue.Object>().Select(o => (o["code"] as AmfValue.String)?.Value).FirstOrDefault(c => c is not null);
    public string? Level => Args.OfType<AmfValue.Object>().Select(o => (o["level"] as AmfValue.String)?.Value).FirstOrDefault(c => c is not null);
    public string? Description => Args.OfType<AmfValue.Object>().Select(o => (o["description"] as AmfValue.String)?.Value).FirstOrDefault(c => c is not null);

    /// <summary>An error from the server in the operator's words: its code and description.</summary>
    public string Explain() => $"{Name} {Code ?? "(no code)"}{(Description is { Length: > 0 } d ? ": " + d : "")}";

    /// <summary>Parses a command message body; a malformed one throws <see cref="FormatException"/>.</summary>
    public static RtmpCommand Parse(ReadOnlySpan<byte> body)
    {
        var values = Amf0.ReadAll(body);
        if (values.Count < 2 || values[0] is not AmfValue.String name || values[1] is not AmfValue.Number txn)
            throw new FormatException("RTMP: a command must start with its name (a string) and a transaction id (a number)");
        return new RtmpCommand(name.Value, txn.Value, values.Skip(2).ToList());
    }

    /// <summary>Writes a command body: name, transaction id, then each argument (a string, number, bool, null, or properties as an object).</summary>
    public static int Write(Span<byte> d, string name, double transaction, params object?[] args)
    {
        int at = Amf0.WriteString(d, name);
        at += Amf0.WriteNumber(d[at..], transaction);
        foreach (var a in args)
            at += a switch
            {
                null => Amf0.WriteNull(d[at..]),
                string s => Amf0.WriteString(d[at..], s),
                bool b => Amf0.WriteBoolean(d[at..], b),
                IReadOnlyList<KeyValuePair<string, object>> o => Amf0.WriteObject(d[at..], o),
                _ => Amf0.WriteNumber(d[at..], Convert.ToDouble(a, CultureInfo.InvariantCulture)),
            };
        return at;
    }
}

/// <summary>
/// The RTMP handshake (RTMP 1.0 §5.2), the plain form every server takes from a publisher: C0 (version 3) and C1 (time,
/// four zero bytes, 1528 random bytes); the server's S0 must say version 3; C2 echoes S1.
/// </summary>
public static class RtmpHandshake
{
    public const int Size = 1536;
    public const byte Version = 3;

    /// <summary>C0 and C1 together (1 + 1536 bytes).</summary>
    public static void WriteC0C1(Span<byte> d, uint time, Random random)
    {
        d[0] = Version;
        var c1 = d.Slice(1, Size);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(c1, time);
        c1.Slice(4, 4).Clear();
        random.NextBytes(c1[8..]);
    }

    /// <summary>Checks S0 (the first byte of the server's 1 + 1536 + 1536); C2 is S1 as it came.</summary>
    public static void CheckS0(byte s0)
    {
        if (s0 != Version) throw new FormatException(s0 is 6 or 8 or 9 ? $"RTMP: the server asks for an encrypted handshake (version {s0}); use rtmps://" : $"RTMP: the server answered version {s0}, not 3 (is this an RTMP server?)");
    }
}
