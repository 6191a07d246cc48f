using Microsoft.Extensions.Logging;
using Pearl2.Media;

namespace Pearl2.Services.Recording;

public enum RecorderState { Idle, Recording, DiskFull, Failed }

/// <summary>
/// Records one channel: reads the hub like any viewer (its own deep queue, starting on the cached key frame), cuts
/// fragments at every key frame and at least once a second, and rotates files at the first key frame past the time
/// or size limit, so each file starts with a picture and the next one continues it with no gap and no overlap.
/// Each sample's duration is the distance to the next one; only the very last sample gets the nominal duration.
/// </summary>
public sealed class Recorder
{
    readonly ChannelHub _hub;
    readonly RecordingLibrary _library;
    readonly ILogger _log;
    readonly TimeProvider _time;
    readonly object _lock = new();
    Session? _session;

    public Recorder(ChannelHub hub, RecordingLibrary library, TimeProvider time, ILogger log)
    {
        _hub = hub; _library = library; _time = time; _log = log;
    }

    public RecorderState State { get; private set; }
    public string? CurrentFile => _session?.CurrentFile;
    public DateTimeOffset? StartedAt => _session?.StartedAt;
    public string? LastError { get; private set; }
    public bool IsRecording => State == RecorderState.Recording;

    /// <summary>
    /// Starts recording (the first file opens at the first picture); false when it already runs. <paramref name="stamp"/>
    /// names the first file: the device gives every channel the moment of the press, so files cut together share it.
    /// </summary>
    public bool Start(DateTimeOffset? stamp = null)
    {
        lock (_lock)
        {
            if (_session is not null) return false;
            var s = new Session(this) { NextStamp = stamp };
            _session = s;
            State = RecorderState.Recording;
            LastError = null;
            _log.LogInformation("recording.started channel={Channel} format={Format} rotate_s={Rotate} rotate_mb={RotateMb}",
                _hub.Index + 1, _library.Options.Format, (int)_library.Options.RotateAfter.TotalSeconds, _library.Options.RotateBytes >> 20);
            s.Run = Task.Run(s.RunAsync);
            return true;
        }
    }

    /// <summary>Stops and finishes the file (duration, index); completes when it is on disk.</summary>
    public async Task StopAsync()
    {
        Session? s;
        lock (_lock) s = _session;
        if (s is null) return;
        s.Stop();
        await s.Run!;
    }

    /// <summary>Closes the current file and goes on in a new one from the next key frame.</summary>
    public void Split(DateTimeOffset? stamp = null)
    {
        lock (_lock) if (_session is { } s) { s.NextStamp = stamp; s.SplitRequested = true; }
    }

    void Ended(Session s, string? failure)
    {
        lock (_lock)
        {
            if (_session != s) return;
            _session = null;
            State = failure switch { null => RecorderState.Idle, "disk_full" => RecorderState.DiskFull, _ => RecorderState.Failed };
            LastError = failure;
        }
        string recorded = (s.RecordedTicks / 90000.0).ToString("0.000", System.Globalization.CultureInfo.InvariantCulture);
        if (failure is null)
            _log.LogInformation("recording.stopped channel={Channel} files={Files} bytes={Bytes} recorded_s={Recorded}", _hub.Index + 1, s.Files, s.Writer.BytesWritten, recorded);
        else
            _log.LogError("recording.stopped channel={Channel} files={Files} bytes={Bytes} recorded_s={Recorded} error={Error} hint=\"{Hint}\"", _hub.Index + 1, s.Files, s.Writer.BytesWritten, recorded, failure,
                failure == "disk_full" ? "free space: delete or upload recordings, or raise recording.spaceLimitMegabytes" : "see recording.write_failed above");
    }

    sealed class Session(Recorder r)
    {
        public readonly RecordingWriter Writer = new(r._library, r._hub.Index + 1, r._log);
        readonly long _rotateTicks = (long)(r._library.Options.RotateAfter.TotalSeconds * 90000);
        readonly CancellationTokenSource _stop = new();
        const long NominalAudio = 1024;
        volatile bool _stopping;
        public volatile bool SplitRequested;
        /// <summary>The time in the next file's name, when a press or split set it for all channels at once.</summary>
        public DateTimeOffset? NextStamp;
        HubReader? _reader;
        StreamInfo _info = null!;
        long _nominalVideo;
        FileMuxer? _mux;
        MediaUnit? _pendingVideo, _pendingAudio;
        long _v0, _a0, _fileTicks, _fileBytes;
        public Task? Run;
        public string? CurrentFile;
        public int Files;
        /// <summary>Video time from the first key frame to the end of the last frame, over every file of this recording.</summary>
        public long RecordedTicks;
        public readonly DateTimeOffset StartedAt = r._time.GetLocalNow();

        public void Stop()
        {
            _stopping = true;
            _stop.Cancel();
            lock (_stop) _reader?.Dispose();
        }

        public async Task RunAsync()
        {
            string? failure = null;
            try
            {
                _info = await r._hub.Ready.WaitAsync(_stop.Token);
                _nominalVideo = 90000 / Math.Max(1, _info.Fps);
                // Bounded by time, not by a unit count: video and audio frames for QueueTime. (A cached GOP larger than
                // that overflows it at once, and the recording starts at the next key frame instead.)
                int units = Math.Max(512, (int)(r._library.Options.QueueTime.TotalSeconds * (_info.Fps + (_info.HasAudio ? _info.AudioSampleRate / 1024.0 : 0))));
                lock (_stop) _reader = _stopping ? null : r._hub.Subscribe("recorder", units);
                while (_reader is not null && !_stopping)
                {
                    await _reader.WaitAsync();
                    while (_reader.TryRead(out var unit))
                    {
                        try { await HandleAsync(unit); }
                        finally { unit.Release(); }
                        if (Writer.Failure is not null) break;
                    }
                    if (Writer.Failure is not null) break;
                }
                if (Writer.Failure is null) await FinishFileAsync(last: true);
            }
            catch (OperationCanceledException) when (_stopping) { }
            catch (Exception e)
            {
                failure = "failed: " + e.Message;
            }
            finally
            {
                _reader?.Dispose();
                _pendingVideo?.Release(); _pendingVideo = null;
                _pendingAudio?.Release(); _pendingAudio = null;
                Writer.Dispose();
                _mux?.Release();
                r.Ended(this, Writer.Failure ?? failure);
            }
        }

        async ValueTask HandleAsync(MediaUnit u)
        {
            if (u.Track == TrackKind.Video)
            {
                if (_mux is null)
                {
                    if (u.IsKeyFrame) await OpenFileAsync(u);
                    return;
                }
                CommitVideo(u.Pts > _pendingVideo!.Pts ? u.Pts - _pendingVideo.Pts : _nominalVideo);
                if (u.IsKeyFrame && (_fileTicks >= _rotateTicks || _fileBytes + _mux.FragmentBytes >= r._library.Options.RotateBytes || SplitRequested))
                {
                    SplitRequested = false;
                    // Audio that starts before the cut still belongs to this file, trimmed to end at it.
                    if (_pendingAudio is { } a && a.Pts < AudioTime(u.Pts)) CommitAudio(Math.Clamp(AudioTime(u.Pts) - a.Pts, 1, NominalAudio));
                    await FinishFileAsync(last: false);
                    await OpenFileAsync(u);
                    return;
                }
                if (u.IsKeyFrame || _mux.FragmentVideoTicks >= 90000) await EmitAsync();
                u.AddRef();
                _pendingVideo = u;
            }
            else
            {
                if (_mux is null || u.Pts < _a0) return;
                if (_pendingAudio is { } a) CommitAudio(u.Pts > a.Pts ? u.Pts - a.Pts : NominalAudio);
                u.AddRef();
                _pendingAudio = u;
            }
        }

        /// <summary>The held-back video frame goes into the fragment, now that its duration is known.</summary>
        void CommitVideo(long duration)
        {
            var v = _pendingVideo!;
            _mux!.AddVideo(v, v.Pts - _v0, duration);
            _fileTicks += duration;
            RecordedTicks += duration;
            v.Release();
            _pendingVideo = null;
        }

        void CommitAudio(long duration)
        {
            var a = _pendingAudio!;
            _mux!.AddAudio(a, a.Pts - _a0, duration);
            a.Release();
            _pendingAudio = null;
        }

        long AudioTime(long videoPts) => _info.AudioSampleRate == 0 ? 0 : videoPts * _info.AudioSampleRate / 90000;

        async ValueTask OpenFileAsync(MediaUnit key)
        {
            _mux = FileMuxer.For(r._library.Options.Format, _info);
            _v0 = key.Pts;
            _a0 = AudioTime(key.Pts);
            if (_pendingAudio is { } a && a.Pts < _a0) { a.Release(); _pendingAudio = null; }
            _fileTicks = 0; _fileBytes = 0;
            DateTimeOffset stamp;
            lock (r._lock) { stamp = NextStamp ?? r._time.GetLocalNow(); NextStamp = null; }
            CurrentFile = r._library.Create(r._hub.Name, stamp, _mux.Extension);
            var op = await Writer.RentAsync(WriteKind.Create);
            op.Path = CurrentFile;
            _mux.WriteHeader(op, _info);
            _fileBytes += op.Length;
            Writer.Submit(op);
            Files++;
            key.AddRef();
            _pendingVideo = key;
        }

        async ValueTask EmitAsync()
        {
            if (!_mux!.HasFragment) return;
            var op = await Writer.RentAsync(WriteKind.Append);
            _mux.TakeFragment(op, _fileBytes);
            _fileBytes += op.Length;
            Writer.Submit(op);
        }

        async ValueTask FinishFileAsync(bool last)
        {
            if (_mux is null) return;
            if (last)
            {
                if (_pendingVideo is not null) CommitVideo(_nominalVideo);
                if (_pendingAudio is not null) CommitAudio(NominalAudio);
            }
            await EmitAsync();
            var op = await Writer.RentAsync(WriteKind.Finish);
            _mux.Finish(op, _fileTicks);
            op.Duration = TimeSpan.FromSeconds(_fileTicks / 90000.0);
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            op.Done = done;
            Writer.Submit(op);
            if (last) await done.Task;
            _mux.Release();
            _mux = null;
            CurrentFile = null;
        }
    }
}
