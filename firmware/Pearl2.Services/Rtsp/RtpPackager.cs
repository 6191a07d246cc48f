using Pearl2.Formats.Rtp;
using Pearl2.Media;

namespace Pearl2.Services.Rtsp;

/// <summary>
/// RTP-encodes each unit of a channel once, as RTSP interleaved frames (video on channel 0, audio on 2),
/// so every TCP viewer is sent the very same bytes with one write per access unit.
/// </summary>
public sealed class RtpPackager : IUnitPackager
{
    public const byte VideoPayloadType = 96, AudioPayloadType = 97;
    public const byte VideoInterleaved = 0, AudioInterleaved = 2;

    readonly int _maxPayload;
    ushort _videoSeq, _audioSeq;

    public RtpPackager(int maxPayload)
    {
        _maxPayload = maxPayload;
        VideoSsrc = (uint)Random.Shared.Next() | 1;
        AudioSsrc = (uint)Random.Shared.Next() | 2;
        _videoSeq = (ushort)Random.Shared.Next();
        _audioSeq = (ushort)Random.Shared.Next();
        VideoTimestampOffset = (uint)Random.Shared.Next();
        AudioTimestampOffset = (uint)Random.Shared.Next();
    }

    public uint VideoSsrc { get; }
    public uint AudioSsrc { get; }
    public uint VideoTimestampOffset { get; }
    public uint AudioTimestampOffset { get; }

    public uint RtpTimestamp(TrackKind track, long pts) =>
        (track == TrackKind.Video ? VideoTimestampOffset : AudioTimestampOffset) + (uint)pts;

    public void Package(MediaUnit unit, int slot)
    {
        bool video = unit.Track == TrackKind.Video;
        int size = video ? H264Packetizer.MaxOutputSize(unit.Length, _maxPayload, true) : AacPacketizer.MaxOutputSize(unit.Length, _maxPayload, true);
        var dest = unit.RentSlot(slot, size);
        uint ts = RtpTimestamp(unit.Track, unit.Pts);
        ushort first = video ? _videoSeq : _audioSeq;
        var w = new RtpPacketWriter(dest, true, video ? VideoInterleaved : AudioInterleaved,
            video ? VideoPayloadType : AudioPayloadType, video ? VideoSsrc : AudioSsrc, first, ts);
        if (video) H264Packetizer.Packetize(unit.Span, _maxPayload, ref w);
        else AacPacketizer.Packetize(unit.Span, _maxPayload, ref w);
        if (video) _videoSeq = w.NextSequence; else _audioSeq = w.NextSequence;
        unit.CommitSlot(slot, w.Written, PackTag(first, ts, w.Packets));
    }

    /// <summary>First sequence number, RTP timestamp and packet count of a unit's packets, in one long.</summary>
    public static long PackTag(ushort firstSeq, uint timestamp, int packets) => firstSeq | (long)timestamp << 16 | (long)(ushort)packets << 48;
    public static ushort TagSequence(long tag) => (ushort)tag;
    public static uint TagTimestamp(long tag) => (uint)(tag >> 16);
    public static int TagPackets(long tag) => (ushort)(tag >> 48);
}
