using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Pearl2.Formats.Rtmp;

/// <summary>An AMF0 value as read from a server's command (AMF0 spec §2): the kinds RTMP commands carry.</summary>
public abstract record AmfValue
{
    public sealed record Number(double Value) : AmfValue { public override string ToString() => Value.ToString(CultureInfo.InvariantCulture); }
    public sealed record Boolean(bool Value) : AmfValue { public override string ToString() => Value ? "true" : "false"; }
    public sealed record String(string Value) : AmfValue { public override string ToString() => Value; }
    /// <summary>An anonymous object or an ECMA array: properties in their order.</summary>
    public sealed record Object(IReadOnlyList<KeyValuePair<string, AmfValue>> Properties) : AmfValue
    {
        public AmfValue? this[string key] => Properties.FirstOrDefault(p => p.Key == key).Value;
        public override string ToString() => "{" + string.Join(", ", Properties.Select(p => p.Key + ": " + p.Value)) + "}";
    }
    public sealed record Array(IReadOnlyList<AmfValue> Items) : AmfValue { public override string ToString() => "[" + string.Join(", ", Items) + "]"; }
    public sealed record Null : AmfValue { public override string ToString() => "null"; }

    public static readonly Null NullValue = new();
}

/// <summary>
/// AMF0 (Action Message Format, AMF0 specification, 2006): the encoding of RTMP's command and data messages. The reader
/// takes what servers send (numbers, booleans, strings and long strings, objects, ECMA and strict arrays, null,
/// undefined, dates) and refuses the rest; nesting is bounded. The writer writes what our commands need.
/// </summary>
public static class Amf0
{
    public const byte NumberMarker = 0, BooleanMarker = 1, StringMarker = 2, ObjectMarker = 3, NullMarker = 5, UndefinedMarker = 6,
        EcmaArrayMarker = 8, ObjectEndMarker = 9, StrictArrayMarker = 10, DateMarker = 11, LongStringMarker = 12;
    const int MaxDepth = 16, MaxItems = 4096;

    /// <summary>Reads every value in a command or data message body; a malformed body throws <see cref="FormatException"/>.</summary>
    public static List<AmfValue> ReadAll(ReadOnlySpan<byte> body)
    {
        var values = new List<AmfValue>();
        int at = 0;
        while (at < body.Length) values.Add(Read(body, ref at, 0));
        return values;
    }

    static AmfValue Read(ReadOnlySpan<byte> b, ref int at, int depth)
    {
        if (depth > MaxDepth) throw new FormatException("AMF0: nested too deep");
        byte marker = Take(b, ref at, 1)[0];
        switch (marker)
        {
            case NumberMarker: return new AmfValue.Number(BinaryPrimitives.ReadDoubleBigEndian(Take(b, ref at, 8)));
            case BooleanMarker: return new AmfValue.Boolean(Take(b, ref at, 1)[0] != 0);
            case StringMarker: return new AmfValue.String(ReadUtf8(b, ref at, BinaryPrimitives.ReadUInt16BigEndian(Take(b, ref at, 2))));
            case LongStringMarker: return new AmfValue.String(ReadUtf8(b, ref at, checked((int)BinaryPrimitives.ReadUInt32BigEndian(Take(b, ref at, 4)))));
            case NullMarker: case UndefinedMarker: return AmfValue.NullValue;
            case DateMarker: { double ms = BinaryPrimitives.ReadDoubleBigEndian(Take(b, ref at, 8)); Take(b, ref at, 2); return new AmfValue.Number(ms); }
            case ObjectMarker: return ReadProperties(b, ref at, depth);
            case EcmaArrayMarker: Take(b, ref at, 4); return ReadProperties(b, ref at, depth);   // the count is a hint; the end marker ends it
            case StrictArrayMarker:
            {
                uint count = BinaryPrimitives.ReadUInt32BigEndian(Take(b, ref at, 4));
                if (count > MaxItems) throw new FormatException($"AMF0: a strict array of {count} items");
                var items = new List<AmfValue>((int)count);
                for (int i = 0; i < count; i++) items.Add(Read(b, ref at, depth + 1));
                return new AmfValue.Array(items);
            }
            default: throw new FormatException($"AMF0: type marker {marker} is not one RTMP commands use");
        }
    }

    static AmfValue.Object ReadProperties(ReadOnlySpan<byte> b, ref int at, int depth)
    {
        var props = new List<KeyValuePair<string, AmfValue>>();
        while (true)
        {
            int len = BinaryPrimitives.ReadUInt16BigEndian(Take(b, ref at, 2));
            if (len == 0)
            {
                if (Take(b, ref at, 1)[0] != ObjectEndMarker) throw new FormatException("AMF0: an empty property name not followed by the object end");
                return new AmfValue.Object(props);
            }
            if (props.Count == MaxItems) throw new FormatException("AMF0: an object with too many properties");
            string key = ReadUtf8(b, ref at, len);
            props.Add(new(key, Read(b, ref at, depth + 1)));
        }
    }

    static ReadOnlySpan<byte> Take(ReadOnlySpan<byte> b, ref int at, int n)
    {
        if (n < 0 || at + n > b.Length) throw new FormatException("AMF0: the value runs past the end of the message");
        var s = b.Slice(at, n);
        at += n;
        return s;
    }

    static string ReadUtf8(ReadOnlySpan<byte> b, ref int at, int n) => Encoding.UTF8.GetString(Take(b, ref at, n));

    // ---- writing ----

    public static int WriteNumber(Span<byte> d, double v) { d[0] = NumberMarker; BinaryPrimitives.WriteDoubleBigEndian(d[1..], v); return 9; }
    public static int WriteBoolean(Span<byte> d, bool v) { d[0] = BooleanMarker; d[1] = (byte)(v ? 1 : 0); return 2; }
    public static int WriteNull(Span<byte> d) { d[0] = NullMarker; return 1; }

    public static int WriteString(Span<byte> d, string v)
    {
        int n = Encoding.UTF8.GetByteCount(v);
        if (n > ushort.MaxValue) throw new ArgumentException("AMF0: a string longer than 65535 bytes");
        d[0] = StringMarker;
        BinaryPrimitives.WriteUInt16BigEndian(d[1..], (ushort)n);
        Encoding.UTF8.GetBytes(v, d[3..]);
        return 3 + n;
    }

    /// <summary>A property name (no marker): 16-bit length and UTF-8.</summary>
    public static int WriteKey(Span<byte> d, string key)
    {
        int n = Encoding.UTF8.GetBytes(key, d[2..]);
        BinaryPrimitives.WriteUInt16BigEndian(d, (ushort)n);
        return 2 + n;
    }

    /// <summary>An anonymous object (or, with <paramref name="ecmaArray"/>, an ECMA array) of strings, numbers and booleans.</summary>
    public static int WriteObject(Span<byte> d, IReadOnlyList<KeyValuePair<string, object>> properties, bool ecmaArray = false)
    {
        int at = 0;
        d[at++] = ecmaArray ? EcmaArrayMarker : ObjectMarker;
        if (ecmaArray) { BinaryPrimitives.WriteUInt32BigEndian(d[at..], (uint)properties.Count); at += 4; }
        foreach (var (key, value) in properties)
        {
            at += WriteKey(d[at..], key);
            at += value switch
            {
                string s => WriteString(d[at..], s),
                bool v => WriteBoolean(d[at..], v),
                null => WriteNull(d[at..]),
                _ => WriteNumber(d[at..], Convert.ToDouble(value, CultureInfo.InvariantCulture)),
            };
        }
        d[at++] = 0; d[at++] = 0; d[at++] = ObjectEndMarker;
        return at;
    }
}
