using System.Buffers;
using System.Text;
using Pearl2.Formats.Codecs;
using Pearl2.Formats.Dns;
using Pearl2.Formats.Ext4;
using Pearl2.Formats.Ftp;
using Pearl2.Formats.Http;
using Pearl2.Formats.Rtmp;
using Pearl2.Formats.Rtp;
using Pearl2.Formats.Rtsp;
using Pearl2.Formats.Sdp;
using Pearl2.Formats.Ssdp;
using Pearl2.Formats.Upnp;

namespace Pearl2.Fuzz;

/// <summary>
/// One entry per parser that reads bytes from the network. A target must never throw or hang, whatever
/// the input: any exception is a crash. Shared by the fuzzer and by the unit tests that replay the corpus.
/// </summary>
public static class FuzzTargets
{
    public static readonly IReadOnlyDictionary<string, Action<byte[]>> All = new Dictionary<string, Action<byte[]>>
    {
        ["rtsp-request"] = RtspRequests,
        ["transport"] = b => TransportHeader.TryParse(Text(b), out _, out _),
        ["session"] = b => SessionHeader.TryParse(Text(b), out _),
        ["range"] = b => RangeHeader.TryParse(Text(b), out _),
        ["sdp"] = b => SdpParser.TryParse(Text(b), out _, out _),
        ["tunnel-base64"] = TunnelBase64,
        ["authorization"] = b => AuthorizationHeader.TryParse(Text(b), out _),
        ["h264"] = H264,
        ["rtp"] = b => RtpHeader.TryParse(b, out _, out _),
        ["http-request"] = HttpRequests,
        ["ext4-superblock"] = b => Ext4Superblock.FileSystemBytes(b),
        ["dns"] = Dns,
        ["ssdp"] = b => { SsdpSearch.TryParse(b, true, out _, out _); SsdpSearch.TryParse(b, false, out _, out _); },
        ["soap"] = b => SoapAction.TryParse(b, "urn:schemas-upnp-org:service:ContentDirectory:1#Browse", out _, out _),
        ["ftp-reply"] = FtpReplies,
        ["rtmp"] = Rtmp,
        ["amf0"] = b => { try { Amf0.ReadAll(b); } catch (FormatException) { } },
    };

    /// <summary>As the upload's FTP client reads its control connection: one reply after another.</summary>
    static void FtpReplies(byte[] data)
    {
        int at = 0;
        for (int guard = 0; guard < 1024 && at < data.Length; guard++)
        {
            if (FtpReply.TryParse(data.AsSpan(at), out var reply, out int consumed, out _) != FtpParseStatus.Complete || consumed == 0) return;
            _ = reply!.Text;
            at += consumed;
        }
    }

    /// <summary>
    /// As the RTMP publisher reads what a server sends after the handshake: chunks, whole messages, commands parsed.
    /// A malformed stream ends with <see cref="FormatException"/> (the publisher drops that connection); nothing else may escape.
    /// </summary>
    static void Rtmp(byte[] data)
    {
        var reader = new RtmpChunkReader();
        int at = 0;
        try
        {
            for (int guard = 0; guard < 100_000 && at < data.Length; guard++)
            {
                if (!reader.TryReadChunk(data.AsSpan(at), out int consumed, out var message) || consumed == 0) return;
                at += consumed;
                if (message is { Type: RtmpType.CommandAmf0 or RtmpType.DataAmf0 })
                {
                    var command = RtmpCommand.Parse(message.Payload);
                    _ = command.Explain();
                }
            }
        }
        catch (FormatException) { }
    }

    /// <summary>As the mDNS responder reads a datagram; what parses must write back and parse again to the same records.</summary>
    static void Dns(byte[] data)
    {
        if (!DnsMessage.TryParse(data, out var m)) return;
        var buf = new byte[DnsMessage.MaxSize * 2];
        int n = m!.WriteTo(buf);
        if (n < 0) return;   // a record this codec keeps as written cannot always be re-encoded smaller (e.g. a 255-byte name near the limit)
        if (!DnsMessage.TryParse(buf.AsSpan(0, n), out var again)) throw new InvalidOperationException("a message we wrote does not parse");
        if (again!.Questions.Count != m.Questions.Count || again.Answers.Count != m.Answers.Count
            || !again.Answers.Zip(m.Answers).All(p => p.First.SameData(p.Second)))
            throw new InvalidOperationException("a written message parses to other records: " + string.Join(" | ", m.Answers) + " became " + string.Join(" | ", again.Answers));
    }

    /// <summary>As the HTTP stream ports read them: one head after another, each parse passing over what it read.</summary>
    static void HttpRequests(byte[] data)
    {
        var seq = new ReadOnlySequence<byte>(data);
        for (int guard = 0; guard < 256 && !seq.IsEmpty; guard++)
        {
            var status = HttpRequestParser.TryParse(seq, out var head, out long consumed, out _);
            if (status == RtspParseStatus.Complete) { _ = head!.Path; _ = head.Query("token"); _ = head["Authorization"]; }
            if (consumed == 0) break;
            seq = seq.Slice(consumed);
        }
    }

    static string Text(byte[] b) => Encoding.Latin1.GetString(b);

    /// <summary>As the connection does it: requests and interleaved frames back to back, each parse consuming what it read.</summary>
    static void RtspRequests(byte[] data)
    {
        Span<byte> head = stackalloc byte[4];
        foreach (bool http in new[] { false, true })
        {
            var seq = new ReadOnlySequence<byte>(data);
            for (int guard = 0; guard < 256 && !seq.IsEmpty; guard++)
            {
                if (seq.FirstSpan[0] == (byte)'$')
                {
                    if (seq.Length < 4) break;
                    seq.Slice(0, 4).CopyTo(head);
                    InterleavedFrame.TryReadHeader(head, out _, out int len);
                    if (seq.Length < 4 + len) break;
                    seq = seq.Slice(4 + len);
                    continue;
                }
                var status = RtspRequestParser.TryParse(seq, http, out var req, out long consumed, out _);
                if (status is RtspParseStatus.Incomplete or RtspParseStatus.TooLarge) break;
                if (consumed <= 0 || consumed > seq.Length) throw new InvalidOperationException($"parser consumed {consumed} of {seq.Length}");
                if (req is not null) { _ = req.Path; _ = req["Session"]; if (req["Transport"] is { } t) TransportHeader.TryParse(t, out _, out _); }
                seq = seq.Slice(consumed);
            }
        }
    }

    static void TunnelBase64(byte[] data)
    {
        // The same bytes cut at two points must decode to the same output as in one piece.
        var whole = new Base64Stream();
        var a = new byte[Base64Stream.MaxOutput(data.Length) + 3];
        int n = whole.Decode(data, a);
        if (data.Length < 2) return;
        int cut = data[0] % data.Length;
        var split = new Base64Stream();
        var b = new byte[a.Length + 3];
        int m = split.Decode(data.AsSpan(0, cut), b);
        m += split.Decode(data.AsSpan(cut), b.AsSpan(m));
        if (whole.Valid && split.Valid && !a.AsSpan(0, n).SequenceEqual(b.AsSpan(0, m))) throw new InvalidOperationException("split decode differs");
    }

    static void H264(byte[] data)
    {
        foreach (var nal in new AnnexBReader(data))
            if (!nal.IsEmpty) H264Sps.TryParse(nal, out _);
        H264Sps.TryParse(data, out _);
        if (data.Length < 8192)
        {
            // Packetize as the server does; the output bound must hold.
            var buf = new byte[H264Packetizer.MaxOutputSize(data.Length, 1400, true)];
            var w = new RtpPacketWriter(buf, true, 0, 96, 1, 0, 0);
            try { H264Packetizer.Packetize(data, 1400, ref w); }
            catch (ArgumentException) { } // more than 128 NAL units: the documented refusal
        }
    }
}
