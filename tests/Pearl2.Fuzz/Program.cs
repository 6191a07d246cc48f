using System.Diagnostics;
using System.Security.Cryptography;
using Pearl2.Fuzz;

// pearl2-fuzz campaign [--inputs N] [--target NAME] [--corpus DIR] [--out DIR]   in-process mutation campaign (make fuzz)
// pearl2-fuzz afl TARGET                                                          one target under afl-fuzz (SharpFuzz, coverage-guided)
if (args.Length >= 2 && args[0] == "afl")
{
    var target = FuzzTargets.All[args[1]];
    SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
    {
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        target(ms.ToArray());
    });
    return 0;
}

long inputs = 1_000_000;
string? only = null, corpus = null, outDir = "out/fuzz";
for (int i = 1; i < args.Length; i++)
    switch (args[i])
    {
        case "--inputs": inputs = long.Parse(args[++i]); break;
        case "--target": only = args[++i]; break;
        case "--corpus": corpus = args[++i]; break;
        case "--out": outDir = args[++i]; break;
        default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
    }
if (args.Length == 0 || args[0] != "campaign") { Console.Error.WriteLine("usage: pearl2-fuzz campaign [--inputs N] [--target NAME] | afl TARGET"); return 2; }
corpus ??= Path.Combine(AppContext.BaseDirectory, "corpus");

int crashes = 0;
foreach (var (name, target) in FuzzTargets.All)
{
    if (only is not null && name != only) continue;
    var seeds = Directory.Exists(Path.Combine(corpus, name))
        ? Directory.GetFiles(Path.Combine(corpus, name)).Select(File.ReadAllBytes).ToList()
        : new List<byte[]>();
    if (seeds.Count == 0) seeds.Add("x"u8.ToArray());
    var mutator = new Mutator(seeds, name.GetHashCode() & 0x7fffffff);
    var sw = Stopwatch.StartNew();
    long slowest = 0, found = 0;
    for (long n = 0; n < inputs; n++)
    {
        var input = mutator.Next();
        long t0 = Stopwatch.GetTimestamp();
        try { target(input); }
        catch (Exception e)
        {
            found++;
            Save(outDir!, name, input, e.GetType().Name + ": " + e.Message);
        }
        long took = Stopwatch.GetTimestamp() - t0;
        if (took > slowest) slowest = took;
        if (Stopwatch.GetElapsedTime(t0).TotalSeconds > 1) { found++; Save(outDir!, name, input, "hang: over 1 s for one input"); }
    }
    crashes += (int)found;
    Console.WriteLine($"fuzz target={name} inputs={inputs} crashes={found} seconds={sw.Elapsed.TotalSeconds:F1} rate={inputs / sw.Elapsed.TotalSeconds:F0}/s slowest_ms={slowest * 1000.0 / Stopwatch.Frequency:F2} seeds={seeds.Count}");
}
Console.WriteLine(crashes == 0 ? "fuzz: no crash, no hang" : $"fuzz: {crashes} crashes saved under {outDir}");
return crashes == 0 ? 0 : 1;

static void Save(string dir, string target, byte[] input, string why)
{
    var d = Path.Combine(dir, "crashes", target);
    Directory.CreateDirectory(d);
    var file = Path.Combine(d, Convert.ToHexString(SHA256.HashData(input))[..16] + ".bin");
    File.WriteAllBytes(file, input);
    Console.WriteLine($"fuzz crash target={target} file={file} why=\"{why}\"");
}

/// <summary>Havoc-style mutations of the seed corpus (flips, interesting values, protocol tokens, splices), deterministic per target.</summary>
sealed class Mutator(List<byte[]> seeds, int seed)
{
    readonly Random _r = new(seed);
    static readonly byte[][] Tokens =
    [
        "\r\n"u8.ToArray(), "\r\n\r\n"u8.ToArray(), ";"u8.ToArray(), "="u8.ToArray(), "-"u8.ToArray(), ","u8.ToArray(), ":"u8.ToArray(), "\""u8.ToArray(),
        "$"u8.ToArray(), "RTSP/1.0"u8.ToArray(), "HTTP/1.0"u8.ToArray(), "CSeq: "u8.ToArray(), "Content-Length: "u8.ToArray(), "Transport: "u8.ToArray(),
        "interleaved="u8.ToArray(), "client_port="u8.ToArray(), "65535"u8.ToArray(), "65536"u8.ToArray(), "4294967296"u8.ToArray(), "-1"u8.ToArray(),
        "99999999999999999999"u8.ToArray(), "npt="u8.ToArray(), "m=video 0 RTP/AVP 96"u8.ToArray(), "a=control:"u8.ToArray(), "=="u8.ToArray(),
        "Digest "u8.ToArray(), "Basic "u8.ToArray(), "\\"u8.ToArray(), [0, 0, 0, 1], [0, 0, 1], [0x67], [0xff, 0xff],
    ];

    public byte[] Next()
    {
        var data = new List<byte>(seeds[_r.Next(seeds.Count)]);
        int rounds = 1 << _r.Next(4);
        for (int i = 0; i < rounds; i++)
        {
            int at = data.Count == 0 ? 0 : _r.Next(data.Count);
            switch (_r.Next(8))
            {
                case 0 when data.Count > 0: data[at] ^= (byte)(1 << _r.Next(8)); break;
                case 1 when data.Count > 0: data[at] = (byte)_r.Next(256); break;
                case 2: data.InsertRange(at, Tokens[_r.Next(Tokens.Length)]); break;
                case 3 when data.Count > 0: data.RemoveRange(at, Math.Min(data.Count - at, 1 + _r.Next(16))); break;
                case 4 when data.Count > 0:
                    int len = Math.Min(data.Count - at, 1 + _r.Next(32));
                    data.InsertRange(_r.Next(data.Count), data.GetRange(at, len)); break;
                case 5:
                    var other = seeds[_r.Next(seeds.Count)];
                    if (other.Length > 0) { int from = _r.Next(other.Length); data.InsertRange(at, other.AsSpan(from, Math.Min(other.Length - from, 1 + _r.Next(64))).ToArray()); }
                    break;
                case 6: data.Insert(at, (byte)_r.Next(256)); break;
                default: if (data.Count > 1) data.RemoveRange(at, data.Count - at); break;
            }
            if (data.Count > 16384) data.RemoveRange(16384, data.Count - 16384);
        }
        return data.ToArray();
    }
}
