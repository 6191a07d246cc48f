using Pearl2.Formats.Flv;
using Pearl2.Formats.Ts;
using Pearl2.Media;

namespace Pearl2.Services.HttpLive;

/// <summary>Each unit as one FLV tag, once per channel: every FLV viewer gets the same bytes.</summary>
public sealed class FlvPackager(int audioSampleRate) : IUnitPackager
{
    public static uint TimestampMs(MediaUnit unit, int sampleRate) =>
        (uint)(unit.Track == TrackKind.Video ? unit.Pts / 90 : unit.Pts * 1000 / sampleRate);

    public void Package(MediaUnit unit, int slot)
    {
        if (unit.Track == TrackKind.Video)
        {
            var dest = unit.RentSlot(slot, FlvWriter.MaxAvcFrameSize(unit.Length));
            unit.CommitSlot(slot, FlvWriter.WriteAvcFrame(dest, unit.Span, unit.IsKeyFrame, TimestampMs(unit, audioSampleRate)), 0);
        }
        else
        {
            var dest = unit.RentSlot(slot, FlvWriter.TagHeaderSize + 2 + unit.Length + FlvWriter.TagTrailerSize);
            unit.CommitSlot(slot, FlvWriter.WriteAac(dest, unit.Span, false, TimestampMs(unit, audioSampleRate)), 0);
        }
    }
}

/// <summary>
/// Each unit as MPEG-TS packets, once per channel, PAT and PMT in front of every key frame (where every TS
/// viewer starts). Timestamps are the hub's 90 kHz clock, offset so they never go negative.
/// </summary>
public sealed class TsPackager(bool audio, int audioSampleRate, int audioChannels) : IUnitPackager
{
    const long Offset = 90000; // one second of headroom for the AAC encoder's priming (negative first pts)
    readonly TsMuxer _mux = new(audio);

    public void Package(MediaUnit unit, int slot)
    {
        bool key = unit.Track == TrackKind.Video && unit.IsKeyFrame;
        var dest = unit.RentSlot(slot, TsMuxer.MaxPesOutput(unit.Length + 16) + (key ? 2 * TsMuxer.PacketSize : 0));
        int n = key ? _mux.WriteTables(dest) : 0;
        if (unit.Track == TrackKind.Video)
            n += _mux.WriteVideo(dest[n..], unit.Span, unit.Pts + Offset, unit.Pts + Offset, unit.IsKeyFrame);
        else
            n += _mux.WriteAudio(dest[n..], unit.Span, unit.Pts * 90000 / audioSampleRate + Offset, audioSampleRate, audioChannels);
        unit.CommitSlot(slot, n, 0);
    }
}
