using System.Buffers.Binary;
using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Pearl2.Formats.Flv;
using Pearl2.Formats.Rtmp;
using Pearl2.Media;
using Pearl2.Services.Channels;
using Pearl2.Services.Configuration;
using Pearl2.Services.HttpLive;

namespace Pearl2.Services.Publishing;

/// <summary>
/// Pushes a channel to an RTMP server (rtmp://, or rtmps:// over TLS with the server's certificate checked against the
/// system's store), as an encoder such as OBS or FFmpeg does: handshake, <c>connect</c>, <c>releaseStream</c>,
/// <c>FCPublish</c>, <c>createStream</c>, <c>publish</c> (live), <c>@setDataFrame onMetaData</c>, the AVC and AAC
/// sequence headers, then every unit as the channel's FLV packager already made it for the HTTP viewers (no second
/// encode; the tag's body is the RTMP message), timestamps counted from the key frame it starts at. What the server
/// says is read beside the sending: its chunk size, acknowledgement window (acknowledged as it asks), pings (answered)
/// and statuses (an error ends the connection, and it is tried again).
/// </summary>
public sealed class RtmpPublisher : Publisher
{
    const int OurChunkSize = 4096, StepSeconds = 10;
    const int VideoCsid = 6, AudioCsid = 4, CommandCsid = 3, DataCsid = 5;
    readonly string _scheme, _host, _app, _key;
    uint _streamId;
    readonly int _port;

    readonly int _videoKbps;

    public RtmpPublisher(string id, PublisherConfig config, ChannelContext channel, int videoKbps, ILogger log, TimeProvider time) : base(id, config, channel, log, time)
    {
        _videoKbps = videoKbps;
        var u = new Uri(config.Url);
        _scheme = u.Scheme;
        _host = u.DnsSafeHost;
        _port = u.Port > 0 ? u.Port : _scheme == "rtmps" ? 443 : 1935;
        string path = u.AbsolutePath.Trim('/');
        if (config.StreamKey.Length > 0) { _app = path; _key = config.StreamKey; }
        else
        {
            int cut = path.LastIndexOf('/');
            _app = cut > 0 ? path[..cut] : path;
            _key = (cut > 0 ? path[(cut + 1)..] : "") + u.Query;
        }
    }

    public override string Target => $"{_scheme}://{(_host.Contains(':') ? "[" + _host + "]" : _host)}:{_port}/{_app}";

    /// <summary>One connection to the server, its reader of what the server says, and its writes (one at a time).</summary>
    sealed class Session(Stream stream, ILogger log) : IAsyncDisposable
    {
        public readonly Stream Stream = stream;
        public readonly SemaphoreSlim WriteTurn = new(1, 1);
        public readonly Dictionary<double, TaskCompletionSource<RtmpCommand>> Pending = new();
        public TaskCompletionSource<RtmpCommand> PublishStatus = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly CancellationTokenSource Failed = new();
        public Exception? Error;
        public readonly byte[] Control = new byte[64];
        long _received, _acked;
        uint _window = 2_500_000;

        /// <summary>One write at a time (the sender and the reader's answers); pooled, so a frame's write allocates nothing.</summary>
        [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
        public async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken ct)
        {
            await WriteTurn.WaitAsync(ct);
            try { await Stream.WriteAsync(bytes, ct); }
            finally { WriteTurn.Release(); }
        }

        public void Fail(Exception e)
        {
            Error ??= e;
            lock (Pending) foreach (var p in Pending.Values) p.TrySetException(e);
            PublishStatus.TrySetException(e);
            Failed.Cancel();
        }

        /// <summary>Reads the server's messages until the connection ends; every one is answered or handed to whoever waits for it.</summary>
        public async Task ReadAsync(CancellationToken ct)
        {
            var reader = new RtmpChunkReader();
            var buf = new byte[64 * 1024];
            int have = 0;
            try
            {
                while (true)
                {
                    if (have == buf.Length) throw new FormatException("RTMP: a chunk larger than 64 KiB from the server");
                    int n = await Stream.ReadAsync(buf.AsMemory(have), ct);
                    if (n == 0) throw new IOException("the server closed the connection");
                    have += n;
                    _received += n;
                    int at = 0;
                    while (reader.TryReadChunk(buf.AsSpan(at, have - at), out int used, out var message))
                    {
                        at += used;
                        if (message is not null) await HandleAsync(message, ct);
                    }
                    Buffer.BlockCopy(buf, at, buf, 0, have - at);
                    have -= at;
                    if (_received - _acked >= _window)
                    {
                        _acked = _received;
                        int len = RtmpChunkWriter.WriteControl(Control, RtmpType.Acknowledgement, (uint)_received);
                        await WriteAsync(Control.AsMemory(0, len).ToArray(), ct);
                    }
                }
            }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested) { Fail(e); }
        }

        async Task HandleAsync(RtmpMessage m, CancellationToken ct)
        {
            switch (m.Type)
            {
                case RtmpType.WindowAckSize when m.Payload.Length >= 4:
                    _window = Math.Max(1, BinaryPrimitives.ReadUInt32BigEndian(m.Payload));
                    break;
                case RtmpType.UserControl when m.Payload.Length >= 6 && BinaryPrimitives.ReadUInt16BigEndian(m.Payload) == 6:
                    // Ping request: the same timestamp back as a ping response.
                    var pong = new byte[32];
                    int n = RtmpChunkWriter.WriteUserControl(pong, 7, BinaryPrimitives.ReadUInt32BigEndian(m.Payload.AsSpan(2)));
                    await WriteAsync(pong.AsMemory(0, n), ct);
                    break;
                case RtmpType.CommandAmf0:
                    var command = RtmpCommand.Parse(m.Payload);
                    if (command.Name is "_result" or "_error")
                    {
                        TaskCompletionSource<RtmpCommand>? waiter;
                        lock (Pending) Pending.Remove(command.Transaction, out waiter);
                        waiter?.TrySetResult(command);
                    }
                    else if (command.Name == "onStatus")
                    {
                        if (!PublishStatus.TrySetResult(command) && command.Level == "error")
                            throw new PublishRefusedException($"the server ended the publish: {command.Explain()}");
                        log.LogDebug("publish.rtmp_status {Status}", command.Explain());
                    }
                    else if (command.Name == "close") throw new IOException("the server closed the stream (close)");
                    break;
            }
        }

        public async ValueTask DisposeAsync()
        {
            Failed.Cancel();
            await Stream.DisposeAsync();
        }
    }

    protected override async Task SessionAsync(CancellationToken ct)
    {
        var info = await Channel.Hub.Ready.WaitAsync(ct);
        using var step = CancellationTokenSource.CreateLinkedTokenSource(ct);
        step.CancelAfter(TimeSpan.FromSeconds(StepSeconds * 3));
        var tcp = new TcpClient { NoDelay = true };
        Stream stream;
        try
        {
            try { await tcp.ConnectAsync(_host, _port, step.Token); }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested) { throw new TimeoutException($"{Target}: no connection within {StepSeconds * 3} s"); }
            catch (SocketException e) { throw new IOException($"{Target}: {e.Message}", e); }
            // A bounded send buffer: on a slow uplink the backlog shows in the hub reader's queue (whole GOPs dropped
            // there) within seconds, instead of megabytes of stale pictures waiting in the kernel.
            tcp.SendBufferSize = 256 * 1024;
            stream = tcp.GetStream();
            if (_scheme == "rtmps")
            {
                var tls = new SslStream(stream, leaveInnerStreamOpen: false);
                try { await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = _host }, step.Token); }
                catch (System.Security.Authentication.AuthenticationException e) { throw new PublishRefusedException($"TLS: {e.Message}"); }
                stream = tls;
            }
        }
        catch { tcp.Dispose(); throw; }

        await using var session = new Session(stream, Log);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, session.Failed.Token);
        await HandshakeAsync(stream, step.Token);
        var reading = session.ReadAsync(linked.Token);
        try
        {
            // Our chunk size first, then connect.
            var buf = new byte[8192];
            int n = RtmpChunkWriter.WriteControl(buf, RtmpType.SetChunkSize, OurChunkSize);
            await session.WriteAsync(buf.AsMemory(0, n).ToArray(), step.Token);
            string tcUrl = $"{_scheme}://{(_host.Contains(':') ? "[" + _host + "]" : _host)}:{_port}/{_app}";
            var connect = await CallAsync(session, 1, "connect", step.Token, new List<KeyValuePair<string, object>>
            {
                new("app", _app), new("type", "nonprivate"), new("flashVer", "FMLE/3.0 (compatible; pearl2d)"), new("tcUrl", tcUrl),
            });
            if (connect.Name != "_result") throw new PublishRefusedException($"connect refused: {connect.Explain()}");
            n = RtmpChunkWriter.WriteControl(buf, RtmpType.WindowAckSize, 2_500_000);
            await session.WriteAsync(buf.AsMemory(0, n).ToArray(), step.Token);
            await SendCommandAsync(session, 2, "releaseStream", 0, step.Token, null, _key);
            await SendCommandAsync(session, 3, "FCPublish", 0, step.Token, null, _key);
            var created = await CallAsync(session, 4, "createStream", step.Token, new object?[] { null });
            if (created.Name != "_result" || created.Args.Count < 2 || created.Args[1] is not AmfValue.Number { Value: >= 0 and < uint.MaxValue } sid)
                throw new PublishRefusedException($"createStream refused: {created.Explain()}");
            uint streamId = _streamId = (uint)sid.Value;
            await SendCommandAsync(session, 5, "publish", streamId, step.Token, null, _key, "live");
            var status = await session.PublishStatus.Task.WaitAsync(step.Token);
            if (status.Code != "NetStream.Publish.Start") throw new PublishRefusedException($"publish refused: {status.Explain()}");

            await SendHeadersAsync(session, info, streamId, step.Token);
            SetStarted();
            await PumpAsync(session, info, streamId, linked.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            if (session.Error is { } e) throw e is FormatException or PublishRefusedException ? e : new IOException(e.Message, e);
            throw new TimeoutException($"{Target}: the server did not answer within {StepSeconds * 3} s");
        }
        catch (Exception) when (session.Error is { } e && !ct.IsCancellationRequested)
        {
            throw e is FormatException or PublishRefusedException ? e : new IOException(e.Message, e);
        }
        finally
        {
            if (ct.IsCancellationRequested) await GoodbyeAsync(session, _streamId);
            session.Failed.Cancel();
            await session.Stream.DisposeAsync();
            try { await reading; } catch (Exception) { }
        }
    }

    /// <summary>C0+C1, then S0+S1+S2, then C2 (S1 back).</summary>
    static async Task HandshakeAsync(Stream stream, CancellationToken ct)
    {
        var c = new byte[1 + RtmpHandshake.Size];
        RtmpHandshake.WriteC0C1(c, 0, Random.Shared);
        await stream.WriteAsync(c, ct);
        var s = new byte[1 + 2 * RtmpHandshake.Size];
        await stream.ReadExactlyAsync(s.AsMemory(0, 1), ct);
        RtmpHandshake.CheckS0(s[0]);
        await stream.ReadExactlyAsync(s.AsMemory(1), ct);
        await stream.WriteAsync(s.AsMemory(1, RtmpHandshake.Size), ct);
    }

    static async Task SendCommandAsync(Session s, double txn, string name, uint streamId, CancellationToken ct, params object?[] args)
    {
        var body = new byte[2048];
        int b = RtmpCommand.Write(body, name, txn, args);
        var buf = new byte[RtmpChunkWriter.MaxSize(b, OurChunkSize)];
        int n = RtmpChunkWriter.Write(buf, streamId == 0 ? CommandCsid : DataCsid, 0, RtmpType.CommandAmf0, streamId, body.AsSpan(0, b), OurChunkSize);
        await s.WriteAsync(buf.AsMemory(0, n), ct);
    }

    static async Task<RtmpCommand> CallAsync(Session s, double txn, string name, CancellationToken ct, params object?[] args)
    {
        var answer = new TaskCompletionSource<RtmpCommand>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (s.Pending) s.Pending[txn] = answer;
        await SendCommandAsync(s, txn, name, 0, ct, args);
        return await answer.Task.WaitAsync(ct);
    }

    /// <summary>onMetaData, then the AVC and AAC sequence headers, all at timestamp 0.</summary>
    async Task SendHeadersAsync(Session s, StreamInfo info, uint streamId, CancellationToken ct)
    {
        bool audio = info.HasAudio && !Config.DisableAudio;
        var props = new List<KeyValuePair<string, object>>
        {
            new("width", info.Width), new("height", info.Height), new("framerate", info.Fps), new("videocodecid", 7),
            new("videodatarate", _videoKbps), new("encoder", "pearl2d"),
        };
        if (audio) { props.Add(new("audiocodecid", 10)); props.Add(new("audiosamplerate", info.AudioSampleRate)); props.Add(new("audiochannels", info.AudioChannels)); props.Add(new("stereo", info.AudioChannels == 2)); }
        var body = new byte[4096];
        int b = Amf0.WriteString(body, "@setDataFrame");
        b += Amf0.WriteString(body.AsSpan(b), "onMetaData");
        b += Amf0.WriteObject(body.AsSpan(b), props, ecmaArray: true);
        var buf = new byte[16384];
        int n = RtmpChunkWriter.Write(buf, DataCsid, 0, RtmpType.DataAmf0, streamId, body.AsSpan(0, b), OurChunkSize);
        var tag = new byte[4096];
        int t = FlvWriter.WriteAvcSequenceHeader(tag, info.Sps, info.Pps);
        n += RtmpChunkWriter.Write(buf.AsSpan(n), VideoCsid, 0, RtmpType.Video, streamId, tag.AsSpan(FlvWriter.TagHeaderSize, t - FlvWriter.TagHeaderSize - FlvWriter.TagTrailerSize), OurChunkSize);
        if (audio)
        {
            t = FlvWriter.WriteAac(tag, info.AudioSpecificConfig, true, 0);
            n += RtmpChunkWriter.Write(buf.AsSpan(n), AudioCsid, 0, RtmpType.Audio, streamId, tag.AsSpan(FlvWriter.TagHeaderSize, t - FlvWriter.TagHeaderSize - FlvWriter.TagTrailerSize), OurChunkSize);
        }
        await s.WriteAsync(buf.AsMemory(0, n), ct);
        CountSent(n);
    }

    /// <summary>The channel's FLV tags as RTMP messages, from the key frame the reader starts at, until the connection or <paramref name="ct"/> ends.</summary>
    async Task PumpAsync(Session s, StreamInfo info, uint streamId, CancellationToken ct)
    {
        bool audio = info.HasAudio && !Config.DisableAudio;
        using var lease = Channel.Hub.Acquire("flv", () => new FlvPackager(info.AudioSampleRate));
        using var reader = Channel.Hub.Subscribe($"publish {Channel.Number}/{Id}", QueueUnits(info));
        using var wake = ct.Register(reader.Dispose);
        int slot = lease.Slot, overflows = 0;
        long dropped = 0;
        long? origin = null;
        var buf = new byte[RtmpChunkWriter.MaxSize(256 * 1024, OurChunkSize)];
        while (true)
        {
            await reader.WaitAsync();
            if (reader.IsDisposed) { ct.ThrowIfCancellationRequested(); return; }
            CountDrops(reader, ref overflows, ref dropped);
            while (reader.TryRead(out var unit))
            {
                int n;
                try
                {
                    if (unit.Track == TrackKind.Audio && !audio) continue;
                    var tag = unit.Slot(slot).Span;
                    if (tag.Length < FlvWriter.TagHeaderSize + FlvWriter.TagTrailerSize) continue;
                    int size = tag[1] << 16 | tag[2] << 8 | tag[3];
                    long ts = (uint)(tag[4] << 16 | tag[5] << 8 | tag[6] | tag[7] << 24);
                    // Timestamps count from the key frame this connection starts at; what came before it (the AAC
                    // encoder's priming, audio ahead of the first picture) is left out.
                    if (origin is null)
                    {
                        if (unit.Track != TrackKind.Video || !unit.IsKeyFrame) continue;
                        origin = ts;
                    }
                    long rel = ts - origin.Value;
                    if (rel is < 0 or > uint.MaxValue / 2) continue;
                    int need = RtmpChunkWriter.MaxSize(size, OurChunkSize);
                    if (need > buf.Length) buf = new byte[need];   // a key frame larger than any before: grows once
                    n = RtmpChunkWriter.Write(buf, unit.Track == TrackKind.Video ? VideoCsid : AudioCsid, (uint)rel, tag[0], streamId,
                        tag.Slice(FlvWriter.TagHeaderSize, size), OurChunkSize);
                }
                finally { unit.Release(); }
                await s.WriteAsync(buf.AsMemory(0, n), ct);
                CountSent(n);
            }
        }
    }

    /// <summary>Stopped on purpose: FCUnpublish and deleteStream, so that the server ends the stream at once (best effort, briefly).</summary>
    async Task GoodbyeAsync(Session s, uint streamId)
    {
        using var t = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        try
        {
            await SendCommandAsync(s, 6, "FCUnpublish", 0, t.Token, null, _key);
            await SendCommandAsync(s, 7, "deleteStream", 0, t.Token, null, streamId);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or SocketException) { }
    }
}
