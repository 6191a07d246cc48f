using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace Pearl2.Formats.Dns;

/// <summary>The record types an mDNS responder meets (RFC 1035, 2782, 3596, 4034, 6763).</summary>
public enum DnsType : ushort { A = 1, Ptr = 12, Txt = 16, Aaaa = 28, Srv = 33, Nsec = 47, Any = 255 }

/// <summary>
/// A domain name as a list of labels. Labels are kept as given (a DNS-SD instance name such as "Hall. Cam 1" is one
/// label, dots and spaces included); names compare without regard to ASCII case (RFC 1035 §2.3.3, RFC 6762 §16).
/// </summary>
public sealed class DnsName : IEquatable<DnsName>
{
    public const int MaxLength = 255;
    public IReadOnlyList<string> Labels { get; }

    public DnsName(params string[] labels)
    {
        foreach (var l in labels)
            if (l.Length == 0 || Encoding.UTF8.GetByteCount(l) > 63) throw new ArgumentException($"a DNS label must be 1 to 63 bytes: '{l}'");
        Labels = labels;
        if (WireLength > MaxLength) throw new ArgumentException("a DNS name must be at most 255 bytes");
    }

    /// <summary>A name written with dots between labels ("pearl2-1.local", "_rtsp._tcp.local"); no label may contain a dot.</summary>
    public static DnsName Parse(string dotted) => new(dotted.TrimEnd('.').Split('.'));

    /// <summary>One label in front of this name (a service instance before its type).</summary>
    public DnsName Prepend(string label) => new([label, .. Labels]);

    public int WireLength => Labels.Sum(l => 1 + Encoding.UTF8.GetByteCount(l)) + 1;

    public bool Equals(DnsName? other)
    {
        if (other is null || other.Labels.Count != Labels.Count) return false;
        for (int i = 0; i < Labels.Count; i++)
            if (!string.Equals(Labels[i], other.Labels[i], StringComparison.OrdinalIgnoreCase)) return false;
        return true;
    }

    public override bool Equals(object? obj) => Equals(obj as DnsName);
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var l in Labels) h.Add(l, StringComparer.OrdinalIgnoreCase);
        return h.ToHashCode();
    }

    public override string ToString() => string.Join('.', Labels) + ".";
}

/// <summary>A question: name, type, and the mDNS "unicast response" bit (the top bit of the class, RFC 6762 §5.4).</summary>
public sealed record DnsQuestion(DnsName Name, DnsType Type, bool UnicastResponse = false)
{
    /// <summary>Whether a record of <paramref name="name"/> and <paramref name="type"/> answers it.</summary>
    public bool Matches(DnsName name, DnsType type) => Name.Equals(name) && (Type == DnsType.Any || Type == type);
}

/// <summary>
/// A resource record of class IN. The data is typed for the records mDNS uses (address, target, SRV fields, TXT
/// strings, NSEC type list); any other type keeps its RDATA as bytes. CacheFlush is the top bit of the class
/// (RFC 6762 §10.2).
/// </summary>
public sealed record DnsRecord(DnsName Name, DnsType Type, uint Ttl, bool CacheFlush = false)
{
    public IPAddress? Address { get; init; }
    /// <summary>PTR target, SRV target, NSEC next name.</summary>
    public DnsName? Target { get; init; }
    public ushort Priority { get; init; }
    public ushort Weight { get; init; }
    public ushort Port { get; init; }
    public IReadOnlyList<string>? Text { get; init; }
    public IReadOnlyList<DnsType>? Types { get; init; }
    public byte[]? Raw { get; init; }

    public static DnsRecord A(DnsName name, IPAddress address, uint ttl, bool flush = true) =>
        new(name, address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? DnsType.A : DnsType.Aaaa, ttl, flush) { Address = address };
    public static DnsRecord Ptr(DnsName name, DnsName target, uint ttl) => new(name, DnsType.Ptr, ttl) { Target = target };
    public static DnsRecord Srv(DnsName name, DnsName target, ushort port, uint ttl) => new(name, DnsType.Srv, ttl, true) { Target = target, Port = port };
    public static DnsRecord Txt(DnsName name, IReadOnlyList<string> text, uint ttl) => new(name, DnsType.Txt, ttl, true) { Text = text };
    public static DnsRecord Nsec(DnsName name, IReadOnlyList<DnsType> types, uint ttl) => new(name, DnsType.Nsec, ttl, true) { Target = name, Types = types };

    /// <summary>The same name, type and data (TTL and cache-flush aside): the identity RFC 6762 §7.1 and §9 compare.</summary>
    public bool SameData(DnsRecord o)
    {
        if (!Name.Equals(o.Name) || Type != o.Type) return false;
        return Type switch
        {
            DnsType.A or DnsType.Aaaa => Equals(Address, o.Address),
            DnsType.Ptr => Target!.Equals(o.Target),
            DnsType.Srv => Target!.Equals(o.Target) && Port == o.Port && Priority == o.Priority && Weight == o.Weight,
            DnsType.Txt => Text!.SequenceEqual(o.Text!),
            DnsType.Nsec => Target!.Equals(o.Target) && Types!.Distinct().Order().SequenceEqual(o.Types!.Distinct().Order()),
            _ => Raw.AsSpan().SequenceEqual(o.Raw),
        };
    }

    /// <summary>The RDATA as it goes on the wire without compression: what RFC 6762 §8.2 compares in a probe tie-break.</summary>
    public byte[] RdataBytes()
    {
        var w = new DnsWriter(new byte[1024], compress: false);
        w.WriteRdata(this);
        return w.Written.ToArray();
    }

    public override string ToString() => $"{Name} {Type} ttl={Ttl}" + Type switch
    {
        DnsType.A or DnsType.Aaaa => $" {Address}",
        DnsType.Ptr => $" {Target}",
        DnsType.Srv => $" {Priority} {Weight} {Port} {Target}",
        DnsType.Txt => " " + string.Join(' ', Text!.Select(t => $"\"{t}\"")),
        DnsType.Nsec => " " + string.Join(' ', Types!),
        _ => $" ({Raw?.Length ?? 0} bytes)",
    };
}

/// <summary>
/// One DNS message (RFC 1035 §4.1) as mDNS uses it: header, questions, answers, authority (a probe's proposed records)
/// and additional records. Parsing is bounded: names at most 255 bytes, compression pointers only backwards (no
/// loops), counts limited by what the datagram can hold; anything else is refused, never half-read.
/// </summary>
public sealed class DnsMessage
{
    public const ushort ResponseFlag = 0x8000, AuthoritativeFlag = 0x0400, TruncatedFlag = 0x0200;
    /// <summary>The largest message a responder sends on a link with a 1500-byte MTU (RFC 6762 §17).</summary>
    public const int MaxSize = 9000;

    public ushort Id { get; init; }
    public ushort Flags { get; init; }
    public List<DnsQuestion> Questions { get; init; } = new();
    public List<DnsRecord> Answers { get; init; } = new();
    public List<DnsRecord> Authorities { get; init; } = new();
    public List<DnsRecord> Additionals { get; init; } = new();

    public bool IsResponse => (Flags & ResponseFlag) != 0;
    /// <summary>A query with proposed records in its authority section: a probe (RFC 6762 §8.1).</summary>
    public bool IsProbe => !IsResponse && Authorities.Count > 0;

    /// <summary>Parses a whole message; false (and null) when any part of it is malformed.</summary>
    public static bool TryParse(ReadOnlySpan<byte> data, out DnsMessage? message)
    {
        message = null;
        if (data.Length < 12) return false;
        var r = new DnsReader(data);
        ushort id = r.U16(), flags = r.U16(), qd = r.U16(), an = r.U16(), ns = r.U16(), ar = r.U16();
        // Each question takes at least 5 bytes, each record at least 11: a count the datagram cannot hold is a lie.
        if (qd * 5 + (an + ns + ar) * 11 > data.Length - 12) return false;
        var m = new DnsMessage { Id = id, Flags = flags };
        for (int i = 0; i < qd; i++)
        {
            if (!r.Name(out var name) || r.Remaining < 4) return false;
            ushort type = r.U16(), cls = r.U16();
            if ((cls & 0x7fff) is not (1 or 255)) continue;
            m.Questions.Add(new DnsQuestion(name!, (DnsType)type, (cls & 0x8000) != 0));
        }
        foreach (var (count, list) in new[] { (an, m.Answers), (ns, m.Authorities), (ar, m.Additionals) })
            for (int i = 0; i < count; i++)
            {
                if (!r.Record(out var rec)) return false;
                if (rec is not null) list.Add(rec);
            }
        message = m;
        return true;
    }

    /// <summary>Writes the message with name compression; the count of bytes, or -1 when it does not fit.</summary>
    public int WriteTo(Span<byte> buffer)
    {
        var w = new DnsWriter(buffer, compress: true);
        try
        {
            w.U16(Id); w.U16(Flags);
            w.U16((ushort)Questions.Count); w.U16((ushort)Answers.Count); w.U16((ushort)Authorities.Count); w.U16((ushort)Additionals.Count);
            foreach (var q in Questions)
            {
                w.Name(q.Name);
                w.U16((ushort)q.Type);
                w.U16((ushort)(1 | (q.UnicastResponse ? 0x8000 : 0)));
            }
            foreach (var rec in Answers.Concat(Authorities).Concat(Additionals)) w.Record(rec);
            return w.Position;
        }
        catch (IndexOutOfRangeException) { return -1; }
        catch (ArgumentOutOfRangeException) { return -1; }
    }

    public byte[] ToArray()
    {
        var buf = new byte[MaxSize];
        int n = WriteTo(buf);
        if (n < 0) throw new InvalidOperationException("the DNS message is larger than " + MaxSize + " bytes");
        return buf.AsSpan(0, n).ToArray();
    }
}

/// <summary>Reads names (with compression pointers) and records from a whole message.</summary>
ref struct DnsReader(ReadOnlySpan<byte> data)
{
    readonly ReadOnlySpan<byte> _data = data;
    int _pos;

    public readonly int Remaining => _data.Length - _pos;
    public ushort U16() { var v = BinaryPrimitives.ReadUInt16BigEndian(_data[_pos..]); _pos += 2; return v; }
    uint U32() { var v = BinaryPrimitives.ReadUInt32BigEndian(_data[_pos..]); _pos += 4; return v; }

    /// <summary>A name at the current position; pointers must point before the label that holds them (no loops).</summary>
    public bool Name(out DnsName? name) => NameAt(ref _pos, out name);

    readonly bool NameAt(ref int pos, out DnsName? name)
    {
        name = null;
        var labels = new List<string>(4);
        int p = pos, length = 1, end = -1;
        while (true)
        {
            if (p >= _data.Length) return false;
            byte len = _data[p];
            if (len == 0) { p++; break; }
            if ((len & 0xc0) == 0xc0)
            {
                if (p + 1 >= _data.Length) return false;
                int target = ((len & 0x3f) << 8) | _data[p + 1];
                if (target >= p) return false;   // forward or self: could loop
                if (end < 0) end = p + 2;
                p = target;
                continue;
            }
            if ((len & 0xc0) != 0 || p + 1 + len > _data.Length) return false;
            length += 1 + len;
            if (length > DnsName.MaxLength) return false;
            labels.Add(Encoding.UTF8.GetString(_data.Slice(p + 1, len)));
            p += 1 + len;
        }
        pos = end >= 0 ? end : p;
        try { name = new DnsName(labels.ToArray()); }
        catch (ArgumentException) { return false; }   // a label that is not valid UTF-8 grew past 63 bytes when decoded
        return true;
    }

    /// <summary>One record; true with null for a record of another class (skipped whole).</summary>
    public bool Record(out DnsRecord? record)
    {
        record = null;
        if (!Name(out var name) || Remaining < 10) return false;
        var type = (DnsType)U16();
        ushort cls = U16();
        uint ttl = U32();
        int rdlength = U16();
        if (rdlength > Remaining) return false;
        int start = _pos, stop = _pos + rdlength;
        _pos = stop;
        if ((cls & 0x7fff) != 1) return true;
        bool flush = (cls & 0x8000) != 0;
        var rdata = _data[start..stop];
        int p = start;
        switch (type)
        {
            case DnsType.A when rdlength == 4:
            case DnsType.Aaaa when rdlength == 16:
                record = new DnsRecord(name!, type, ttl, flush) { Address = new IPAddress(rdata) };
                return true;
            case DnsType.A or DnsType.Aaaa:
                return false;
            case DnsType.Ptr:
                if (!NameAt(ref p, out var target) || p != stop) return false;
                record = new DnsRecord(name!, type, ttl, flush) { Target = target };
                return true;
            case DnsType.Srv:
                if (rdlength < 7) return false;
                ushort prio = BinaryPrimitives.ReadUInt16BigEndian(rdata), weight = BinaryPrimitives.ReadUInt16BigEndian(rdata[2..]), port = BinaryPrimitives.ReadUInt16BigEndian(rdata[4..]);
                p += 6;
                if (!NameAt(ref p, out var srvTarget) || p != stop) return false;
                record = new DnsRecord(name!, type, ttl, flush) { Priority = prio, Weight = weight, Port = port, Target = srvTarget };
                return true;
            case DnsType.Txt:
                var text = new List<string>();
                for (int i = 0; i < rdata.Length;)
                {
                    int n = rdata[i];
                    if (i + 1 + n > rdata.Length) return false;
                    if (n > 0) text.Add(Encoding.UTF8.GetString(rdata.Slice(i + 1, n)));
                    i += 1 + n;
                }
                record = new DnsRecord(name!, type, ttl, flush) { Text = text };
                return true;
            case DnsType.Nsec:
                if (!NameAt(ref p, out var next)) return false;
                var types = new List<DnsType>();
                while (p < stop)
                {
                    if (p + 2 > stop) return false;
                    int window = _data[p], blen = _data[p + 1];
                    if (blen is < 1 or > 32 || p + 2 + blen > stop) return false;
                    for (int b = 0; b < blen; b++)
                        for (int bit = 0; bit < 8; bit++)
                            if ((_data[p + 2 + b] & (0x80 >> bit)) != 0) types.Add((DnsType)(window * 256 + b * 8 + bit));
                    p += 2 + blen;
                }
                record = new DnsRecord(name!, type, ttl, flush) { Target = next, Types = types };
                return true;
            default:
                record = new DnsRecord(name!, type, ttl, flush) { Raw = rdata.ToArray() };
                return true;
        }
    }
}

/// <summary>Writes names (compressed against earlier ones, RFC 1035 §4.1.4) and records.</summary>
ref struct DnsWriter(Span<byte> buffer, bool compress)
{
    readonly Span<byte> _buf = buffer;
    readonly bool _compress = compress;
    /// <summary>Every name suffix written so far and where it starts (lower-cased dotted form).</summary>
    Dictionary<string, int>? _suffixes;
    public int Position;

    public readonly ReadOnlySpan<byte> Written => _buf[..Position];

    public void U8(byte v) => _buf[Position++] = v;
    public void U16(ushort v) { BinaryPrimitives.WriteUInt16BigEndian(_buf[Position..], v); Position += 2; }
    void U32(uint v) { BinaryPrimitives.WriteUInt32BigEndian(_buf[Position..], v); Position += 4; }

    public void Name(DnsName name)
    {
        var labels = name.Labels;
        for (int i = 0; i < labels.Count; i++)
        {
            string key = string.Join('\u0001', labels.Skip(i)).ToLowerInvariant();
            if (_compress)
            {
                _suffixes ??= new Dictionary<string, int>();
                if (_suffixes.TryGetValue(key, out int at)) { U16((ushort)(0xc000 | at)); return; }
                if (Position < 0x3fff) _suffixes[key] = Position;
            }
            int n = Encoding.UTF8.GetBytes(labels[i], _buf[(Position + 1)..]);
            _buf[Position] = (byte)n;
            Position += 1 + n;
        }
        U8(0);
    }

    public void Record(DnsRecord r)
    {
        Name(r.Name);
        U16((ushort)r.Type);
        U16((ushort)(1 | (r.CacheFlush ? 0x8000 : 0)));
        U32(r.Ttl);
        int lengthAt = Position;
        Position += 2;
        WriteRdata(r);
        BinaryPrimitives.WriteUInt16BigEndian(_buf[lengthAt..], (ushort)(Position - lengthAt - 2));
    }

    public void WriteRdata(DnsRecord r)
    {
        switch (r.Type)
        {
            case DnsType.A or DnsType.Aaaa:
                if (!r.Address!.TryWriteBytes(_buf[Position..], out int n)) throw new IndexOutOfRangeException();
                Position += n;
                break;
            case DnsType.Ptr: Name(r.Target!); break;
            case DnsType.Srv:
                U16(r.Priority); U16(r.Weight); U16(r.Port);
                // RFC 6762 §18.14: SRV targets may be compressed in mDNS; avahi and Bonjour read them.
                Name(r.Target!);
                break;
            case DnsType.Txt:
                if (r.Text!.Count == 0) { U8(0); break; }   // RFC 6763 §6.1: an empty TXT is one empty string
                foreach (var s in r.Text)
                {
                    int len = Encoding.UTF8.GetBytes(s, _buf[(Position + 1)..]);
                    if (len > 255) throw new ArgumentOutOfRangeException(nameof(r), "a TXT string is at most 255 bytes");
                    _buf[Position] = (byte)len;
                    Position += 1 + len;
                }
                break;
            case DnsType.Nsec:
            {
                // RFC 6762 §6.1: the next name is the record's own name, uncompressed; one window of types below 256.
                NameUncompressed(r.Target!);
                // One bitmap per window of 256 types, in window order (RFC 4034 §4.1.2).
                foreach (var window in r.Types!.Select(t => (int)t).Distinct().GroupBy(t => t >> 8).OrderBy(g => g.Key))
                {
                    int blen = window.Max(t => t & 0xff) / 8 + 1;
                    U8((byte)window.Key); U8((byte)blen);
                    _buf.Slice(Position, blen).Clear();
                    foreach (int t in window) _buf[Position + (t & 0xff) / 8] |= (byte)(0x80 >> (t % 8));
                    Position += blen;
                }
                break;
            }
            default:
                r.Raw.AsSpan().CopyTo(_buf[Position..]);
                Position += r.Raw?.Length ?? 0;
                break;
        }
    }

    void NameUncompressed(DnsName name)
    {
        foreach (var l in name.Labels)
        {
            int n = Encoding.UTF8.GetBytes(l, _buf[(Position + 1)..]);
            _buf[Position] = (byte)n;
            Position += 1 + n;
        }
        U8(0);
    }
}
