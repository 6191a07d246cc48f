using System.Text;

namespace Pearl2.Formats.Sdp;

/// <summary>A media section of our SDP offer (RFC 8866), for one RTP track.</summary>
public sealed record SdpMedia(string Kind, int PayloadType, string RtpMap, string Fmtp, string Control);

/// <summary>Writes the SDP a DESCRIBE answers with (RFC 2326 Appendix C): session level, then one section per track.</summary>
public static class SessionDescription
{
    public static string Write(ulong sessionId, string originAddress, string sessionName, IReadOnlyList<SdpMedia> media)
    {
        var ip6 = originAddress.Contains(':');
        var sb = new StringBuilder(512);
        sb.Append("v=0\r\n");
        sb.Append("o=- ").Append(sessionId).Append(" 1 IN ").Append(ip6 ? "IP6 " : "IP4 ").Append(originAddress).Append("\r\n");
        sb.Append("s=").Append(sessionName).Append("\r\n");
        sb.Append("c=IN ").Append(ip6 ? "IP6 ::" : "IP4 0.0.0.0").Append("\r\n");
        sb.Append("t=0 0\r\n");
        sb.Append("a=tool:pearl2d\r\n");
        sb.Append("a=range:npt=now-\r\n");
        sb.Append("a=control:*\r\n");
        foreach (var m in media)
        {
            sb.Append("m=").Append(m.Kind).Append(" 0 RTP/AVP ").Append(m.PayloadType).Append("\r\n");
            sb.Append("a=rtpmap:").Append(m.PayloadType).Append(' ').Append(m.RtpMap).Append("\r\n");
            sb.Append("a=fmtp:").Append(m.PayloadType).Append(' ').Append(m.Fmtp).Append("\r\n");
            sb.Append("a=control:").Append(m.Control).Append("\r\n");
        }
        return sb.ToString();
    }

    /// <summary>The H.264 section (RFC 6184 §8.2.1): packetization-mode 1, profile-level-id and sprop-parameter-sets from the SPS/PPS.</summary>
    public static SdpMedia H264(int payloadType, ReadOnlySpan<byte> sps, ReadOnlySpan<byte> pps, string control)
    {
        string pli = sps.Length >= 4 ? Convert.ToHexString(sps.Slice(1, 3)) : "42E01F";
        var fmtp = $"packetization-mode=1;profile-level-id={pli};sprop-parameter-sets={Convert.ToBase64String(sps)},{Convert.ToBase64String(pps)}";
        return new SdpMedia("video", payloadType, "H264/90000", fmtp, control);
    }

    /// <summary>The AAC section (RFC 3640 §4.1, mode AAC-hbr) with the AudioSpecificConfig in hex.</summary>
    public static SdpMedia Aac(int payloadType, int sampleRate, int channels, ReadOnlySpan<byte> audioSpecificConfig, string control)
    {
        var fmtp = $"profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={Convert.ToHexString(audioSpecificConfig).ToLowerInvariant()}";
        return new SdpMedia("audio", payloadType, $"mpeg4-generic/{sampleRate}/{channels}", fmtp, control);
    }
}
