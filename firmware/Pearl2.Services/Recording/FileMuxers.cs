using System.Runtime.InteropServices;
using Pearl2.Formats.Codecs;
using Pearl2.Formats.Mp4;
using Pearl2.Formats.Ts;
using Pearl2.Media;

namespace Pearl2.Services.Recording;

/// <summary>
/// Turns a recorder's samples into one file's bytes: a header, then fragments the writer appends whole, then a
/// trailer. Times are the file's own: video in 90 kHz ticks and audio in samples, both from 0 at the first key frame.
/// </summary>
abstract class FileMuxer
{
    public abstract string Extension { get; }
    public abstract void WriteHeader(WriteOp op, StreamInfo info);
    public abstract void AddVideo(MediaUnit unit, long time, long duration);
    public abstract void AddAudio(MediaUnit unit, long time, long duration);
    public abstract bool HasFragment { get; }
    /// <summary>Video ticks in the fragment being built.</summary>
    public abstract long FragmentVideoTicks { get; }
    /// <summary>Bytes of media in the fragment being built (what it will add to the file, near enough).</summary>
    public abstract long FragmentBytes { get; }
    /// <summary>Appends the fragment to <paramref name="op"/> and starts the next; <paramref name="fileOffset"/> is where it lands in the file.</summary>
    public abstract void TakeFragment(WriteOp op, long fileOffset);
    /// <summary>What finishes the file: trailer bytes in <paramref name="op"/> and in-place patches.</summary>
    public abstract void Finish(WriteOp op, long videoTicks);
    /// <summary>Gives the muxer's buffers back to the pool.</summary>
    public abstract void Release();

    public static FileMuxer For(string format, StreamInfo info) =>
        format == "ts" ? new TsFileMuxer(info) : new Mp4FileMuxer(info);
}

sealed class Mp4FileMuxer(StreamInfo info) : FileMuxer
{
    readonly List<Mp4Sample> _video = new(128), _audio = new(128);
    readonly List<(ulong Time, ulong MoofOffset)> _sync = new(64);
    byte[] _videoData = BufferPool.Rent(256 << 10), _audioData = BufferPool.Rent(32 << 10);
    int _videoLength, _audioLength;
    long _videoStart = -1, _audioStart = -1, _videoTicks;
    uint _sequence;
    Mp4InitLayout _layout;

    public override string Extension => "mp4";

    public override void WriteHeader(WriteOp op, StreamInfo s)
    {
        var v = new Mp4VideoTrack(s.Width, s.Height, s.Sps, s.Pps);
        Mp4AudioTrack? a = s.HasAudio ? new Mp4AudioTrack(s.AudioSampleRate, s.AudioChannels, s.AudioSpecificConfig!) : null;
        op.Length += FragmentedMp4.WriteInit(op.Room(FragmentedMp4.MaxInitSize(v, a)), v, a, out _layout);
    }

    public override void AddVideo(MediaUnit unit, long time, long duration)
    {
        Pooled.Grow(ref _videoData, _videoLength, _videoLength + Avcc.MaxSize(unit.Length));
        int n = Avcc.FromAnnexB(_videoData.AsSpan(_videoLength), unit.Span);
        _videoLength += n;
        if (_videoStart < 0) _videoStart = time;
        _video.Add(new Mp4Sample(n, (uint)duration, unit.IsKeyFrame));
        _videoTicks += duration;
    }

    public override void AddAudio(MediaUnit unit, long time, long duration)
    {
        if (!info.HasAudio) return;
        Pooled.Grow(ref _audioData, _audioLength, _audioLength + unit.Length);
        unit.Span.CopyTo(_audioData.AsSpan(_audioLength));
        _audioLength += unit.Length;
        if (_audioStart < 0) _audioStart = time;
        _audio.Add(new Mp4Sample(unit.Length, (uint)duration, true));
    }

    public override bool HasFragment => _video.Count > 0 || _audio.Count > 0;
    public override long FragmentVideoTicks => _videoTicks;
    public override long FragmentBytes => _videoLength + _audioLength;

    public override void TakeFragment(WriteOp op, long fileOffset)
    {
        if (_video.Count > 0 && _video[0].Sync) _sync.Add(((ulong)_videoStart, (ulong)(fileOffset + op.Length)));
        var moof = op.Room(FragmentedMp4.MaxMoofSize(_video.Count, _audio.Count));
        op.Length += FragmentedMp4.WriteMoof(moof, ++_sequence, (ulong)Math.Max(0, _videoStart), CollectionsMarshal.AsSpan(_video),
            (ulong)Math.Max(0, _audioStart), CollectionsMarshal.AsSpan(_audio));
        _videoData.AsSpan(0, _videoLength).CopyTo(op.Room(_videoLength));
        op.Length += _videoLength;
        _audioData.AsSpan(0, _audioLength).CopyTo(op.Room(_audioLength));
        op.Length += _audioLength;
        _video.Clear(); _audio.Clear();
        _videoLength = _audioLength = 0;
        _videoStart = _audioStart = -1;
        _videoTicks = 0;
    }

    public override void Finish(WriteOp op, long videoTicks)
    {
        var sync = CollectionsMarshal.AsSpan(_sync);
        op.Length += FragmentedMp4.WriteMfra(op.Room(FragmentedMp4.MfraSize(sync.Length)), sync);
        var mvhd = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(mvhd, (uint)FragmentedMp4.MovieDuration((ulong)videoTicks));
        var mehd = new byte[FragmentedMp4.MehdSize];
        FragmentedMp4.WriteMehd(mehd, FragmentedMp4.MovieDuration((ulong)videoTicks));
        op.Patches = [(_layout.MvhdDurationOffset, mvhd), (_layout.MehdSlotOffset, mehd)];
    }

    public override void Release()
    {
        BufferPool.Return(_videoData); _videoData = [];
        BufferPool.Return(_audioData); _audioData = [];
    }
}

/// <summary>MPEG-TS files: PAT and PMT before every key frame, timestamps from one second so nothing starts below zero.</summary>
sealed class TsFileMuxer(StreamInfo info) : FileMuxer
{
    const long Offset = 90000;
    readonly TsMuxer _mux = new(info.HasAudio);
    byte[] _data = BufferPool.Rent(256 << 10);
    int _length;
    long _videoTicks;

    public override string Extension => "ts";
    public override void WriteHeader(WriteOp op, StreamInfo s) { }

    Span<byte> Room(int size)
    {
        Pooled.Grow(ref _data, _length, _length + size);
        return _data.AsSpan(_length);
    }

    public override void AddVideo(MediaUnit unit, long time, long duration)
    {
        var dest = Room(TsMuxer.MaxPesOutput(unit.Length + 16) + 2 * TsMuxer.PacketSize);
        int n = unit.IsKeyFrame ? _mux.WriteTables(dest) : 0;
        n += _mux.WriteVideo(dest[n..], unit.Span, time + Offset, time + Offset, unit.IsKeyFrame);
        _length += n;
        _videoTicks += duration;
    }

    public override void AddAudio(MediaUnit unit, long time, long duration)
    {
        if (!info.HasAudio) return;
        var dest = Room(TsMuxer.MaxPesOutput(unit.Length + 16));
        _length += _mux.WriteAudio(dest, unit.Span, time * 90000 / info.AudioSampleRate + Offset, info.AudioSampleRate, info.AudioChannels);
    }

    public override bool HasFragment => _length > 0;
    public override long FragmentVideoTicks => _videoTicks;
    public override long FragmentBytes => _length;

    public override void TakeFragment(WriteOp op, long fileOffset)
    {
        _data.AsSpan(0, _length).CopyTo(op.Room(_length));
        op.Length += _length;
        _length = 0;
        _videoTicks = 0;
    }

    public override void Finish(WriteOp op, long videoTicks) { }

    public override void Release() { BufferPool.Return(_data); _data = []; }
}
