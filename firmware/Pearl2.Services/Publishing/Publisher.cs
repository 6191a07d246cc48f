using Microsoft.Extensions.Logging;
using Pearl2.Media;
using Pearl2.Services.Channels;
using Pearl2.Services.Configuration;

namespace Pearl2.Services.Publishing;

/// <summary>
/// One destination's state as the operator sees it: "stopped", "starting" (connecting, or waiting to try again after a
/// drop: <see cref="LastError"/> says why), "listening" (an SRT listener waiting for its caller), "started" (sending).
/// </summary>
public sealed record PublisherStatus(string Id, string Name, string Type, string Target, string State, bool Started, DateTimeOffset? Since,
    long BitsPerSecond, long BytesSent, long DroppedGops, long DroppedFrames, int Reconnections, string? LastError)
{
    /// <summary>SRT's own figures while connected: round trip (ms), packets lost and retransmitted (sender side).</summary>
    public SrtStats? Srt { get; init; }
}

public sealed record SrtStats(double RttMs, long PacketsLost, long PacketsRetransmitted, long PacketsDropped, double BandwidthMbps)
{
    public long PacketsSent { get; init; }
    public long BytesSent { get; init; }
}

/// <summary>
/// A destination's life: started, it connects and sends until it is stopped; any drop (the server gone, a refused
/// publish, a broken connection) is logged, counted, and tried again after a wait (0.5 s doubling to 10 s, ±20 %; back
/// to 0.5 s after a minute of sending), each time from a key frame. The channel's pictures come from the hub through a
/// reader of its own with a bounded queue: a slow uplink overflows it, and the hub drops the whole backlog and restarts
/// the reader at the next key frame (a dropped GOP, counted), never holding up the encoder, the other destinations or
/// the LAN viewers.
/// </summary>
public abstract class Publisher : IAsyncDisposable
{
    protected readonly ChannelContext Channel;
    protected readonly ILogger Log;
    protected readonly TimeProvider Time;
    readonly object _lock = new();
    CancellationTokenSource? _run;
    Task _loop = Task.CompletedTask;
    string _state = "stopped";
    string? _lastError;
    DateTimeOffset? _since;
    int _reconnections;
    long _bytes, _windowBytes, _bps, _droppedGops, _droppedFrames;
    long _windowStart;

    protected Publisher(string id, PublisherConfig config, ChannelContext channel, ILogger log, TimeProvider time)
    {
        Id = id; Config = config; Channel = channel; Log = log; Time = time;
    }

    public string Id { get; }
    public PublisherConfig Config { get; }
    public bool Running { get { lock (_lock) return _run is not null; } }
    /// <summary>Where it sends, for logs and status, without the stream key.</summary>
    public abstract string Target { get; }

    /// <summary>Units a destination may fall behind by before its backlog is dropped: about two seconds of video and audio.</summary>
    protected int QueueUnits(StreamInfo info) => Math.Clamp(info.Fps * 2 + (info.HasAudio ? 100 : 0), 32, 1024);

    public void Start(string by)
    {
        lock (_lock)
        {
            if (_run is not null) return;
            _run = new CancellationTokenSource();
            _state = "starting"; _lastError = null; _reconnections = 0;
            var ct = _run.Token;
            _loop = Task.Run(() => LoopAsync(ct));
        }
        Log.LogInformation("publish.start channel={Channel} publisher={Id} name=\"{Name}\" type={Type} target={Target} by={By}", Channel.Number, Id, Config.Name, Config.Type, Target, by);
    }

    public async Task StopAsync(string by)
    {
        Task loop;
        lock (_lock)
        {
            if (_run is null) return;
            _run.Cancel();
            _run = null;
            loop = _loop;
        }
        try { await loop; } catch (OperationCanceledException) { }
        lock (_lock) { _state = "stopped"; _since = null; _bps = 0; }
        Log.LogInformation("publish.stop channel={Channel} publisher={Id} name=\"{Name}\" by={By} sent_bytes={Bytes} dropped_gops={Gops}", Channel.Number, Id, Config.Name, by, _bytes, _droppedGops);
    }

    public PublisherStatus Status()
    {
        lock (_lock)
        {
            // The bit rate of the last whole second (0 when nothing went out for two).
            long now = Time.GetTimestamp();
            long bps = Time.GetElapsedTime(_windowStart, now) > TimeSpan.FromSeconds(2) ? 0 : _bps;
            return new PublisherStatus(Id, Config.Name, Config.Type, Target, _state, _run is not null, _since, bps, _bytes, _droppedGops, _droppedFrames, _reconnections, _lastError)
            { Srt = SrtStatistics() };
        }
    }

    protected virtual SrtStats? SrtStatistics() => null;

    async Task LoopAsync(CancellationToken ct)
    {
        int failures = 0;
        while (!ct.IsCancellationRequested)
        {
            var began = Time.GetTimestamp();
            try
            {
                await SessionAsync(ct);
                failures = 0;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { return; }
            catch (Exception e)
            {
                // A minute of sending counts as a success: the next wait starts short again.
                if (Time.GetElapsedTime(began) > TimeSpan.FromMinutes(1)) failures = 0;
                failures++;
                var wait = TimeSpan.FromSeconds(Math.Min(10, 0.5 * Math.Pow(2, Math.Min(failures - 1, 6))) * (0.8 + 0.4 * Random.Shared.NextDouble()));
                string reason = e is IOException or System.Net.Sockets.SocketException or FormatException or PublishRefusedException or TimeoutException ? e.Message : $"{e.GetType().Name}: {e.Message}";
                bool wasSending;
                lock (_lock) { wasSending = _state == "started"; _state = "starting"; _lastError = reason; _since = null; _bps = 0; _reconnections++; }
                Log.LogWarning("publish.retry channel={Channel} publisher={Id} name=\"{Name}\" target={Target} was_sending={Was} attempt={Attempt} in_s={Wait:F1} error=\"{Error}\"",
                    Channel.Number, Id, Config.Name, Target, wasSending ? "yes" : "no", failures, wait.TotalSeconds, reason);
                try { await Task.Delay(wait, Time, ct); } catch (OperationCanceledException) { return; }
            }
        }
    }

    /// <summary>One connection: connect, announce, send until it drops (throws) or <paramref name="ct"/> ends it.</summary>
    protected abstract Task SessionAsync(CancellationToken ct);

    protected void SetListening() { lock (_lock) _state = "listening"; }

    protected void SetStarted()
    {
        lock (_lock) { _state = "started"; _since = Time.GetUtcNow(); _lastError = null; _windowStart = Time.GetTimestamp(); _windowBytes = 0; }
        Log.LogInformation("publish.started channel={Channel} publisher={Id} name=\"{Name}\" target={Target}", Channel.Number, Id, Config.Name, Target);
    }

    protected void CountSent(int bytes)
    {
        lock (_lock)
        {
            _bytes += bytes;
            _windowBytes += bytes;
            long now = Time.GetTimestamp();
            var elapsed = Time.GetElapsedTime(_windowStart, now);
            if (elapsed >= TimeSpan.FromSeconds(1))
            {
                _bps = (long)(_windowBytes * 8 / elapsed.TotalSeconds);
                _windowBytes = 0;
                _windowStart = now;
            }
        }
    }

    /// <summary>Counts what the reader lost since the last look: its backlog dropped whole (a GOP) and the frames in it.</summary>
    protected void CountDrops(HubReader reader, ref int overflowsSeen, ref long framesSeen)
    {
        if (reader.Overflows == overflowsSeen) return;
        int gops = reader.Overflows - overflowsSeen;
        long frames = reader.DroppedFrames - framesSeen;
        overflowsSeen = reader.Overflows;
        framesSeen = reader.DroppedFrames;
        long total;
        lock (_lock) { _droppedGops += gops; _droppedFrames += frames; total = _droppedGops; }
        Log.LogWarning("publish.dropped channel={Channel} publisher={Id} name=\"{Name}\" gops={Gops} frames={Frames} gops_total={Total} reason=\"the destination takes less than the channel's bitrate\"",
            Channel.Number, Id, Config.Name, gops, frames, total);
    }

    /// <summary>A GOP dropped by the sender itself (its own buffer full), beside those the hub's reader drops.</summary>
    protected void AddDroppedGop() { lock (_lock) _droppedGops++; }

    public async ValueTask DisposeAsync() => await StopAsync("channel stopped");
}

/// <summary>The server refused what we asked (a connect, a publish): its own words.</summary>
public sealed class PublishRefusedException(string message) : Exception(message);
