using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;
using Pearl2.Host;
using Pearl2.Media;
using Pearl2.Media.Encoders;
using Pearl2.Media.FFmpeg;
using Pearl2.Media.Sources;
using Pearl2.Services.Rtsp;

return await Pearl2d.MainAsync(args);

namespace Pearl2.Host
{
    internal static class Pearl2d
    {
        const string Usage = "usage: pearl2d [--config FILE] [--board FILE] [--data-dir DIR] [--port-offset N|auto] [--check-config] [--print-default-config] [--version]";

        public static async Task<int> MainAsync(string[] args)
        {
            string? configPath = null, boardPath = null, dataDir = null, offsetArg = null;
            bool checkOnly = false;
            for (int i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                try
                {
                    switch (args[i])
                    {
                        case "--config": configPath = Next(); break;
                        case "--board": boardPath = Next(); break;
                        case "--data-dir": dataDir = Next(); break;
                        case "--port-offset": offsetArg = Next(); break;
                        case "--check-config": checkOnly = true; break;
                        case "--print-default-config": Console.WriteLine(ConfigLoader.ToJson(new FirmwareConfig())); return 0;
                        case "--version": Console.WriteLine($"pearl2d {Version}"); return 0;
                        case "-h" or "--help": Console.WriteLine(Usage); return 0;
                        default: throw new ArgumentException($"unknown argument '{args[i]}'");
                    }
                }
                catch (ArgumentException e) { Console.Error.WriteLine($"pearl2d: {e.Message}\n{Usage}"); return 2; }
            }

            FirmwareConfig config;
            BoardProfile board;
            try
            {
                board = ConfigLoader.LoadBoard(boardPath ?? (File.Exists("/etc/pearl2/board.json") ? "/etc/pearl2/board.json" : null));
                config = ConfigLoader.Load(configPath);
            }
            catch (ConfigException e)
            {
                foreach (var err in e.Errors) Console.Error.WriteLine($"pearl2d: config refused: {err}");
                return 2;
            }
            catch (IOException e) { Console.Error.WriteLine($"pearl2d: cannot read config: {e.Message}"); return 2; }
            if (checkOnly) { Console.WriteLine("config ok"); return 0; }

            int offset;
            if (offsetArg is null or "0") offset = 0;
            else if (offsetArg == "auto") offset = CanBind(config.Rtsp.Port) ? 0 : 10000;
            else if (!int.TryParse(offsetArg, out offset) || offset < 0 || config.Rtsp.Port + offset + config.Channels.Count > 65535
                || config.Rtsp.UdpPortBase + offset + 4 * config.Channels.Count > 65535)
            { Console.Error.WriteLine($"pearl2d: --port-offset '{offsetArg}' is not a usable offset"); return 2; }

            try { FFmpegLibraries.EnsureAvailable(); }
            catch (FFmpegMissingException e) { Console.Error.WriteLine($"pearl2d: {e.Message}"); return 3; }

            dataDir ??= Path.Combine(Environment.CurrentDirectory, "data");
            Directory.CreateDirectory(dataDir);

            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
            builder.Logging.ClearProviders();
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                o.IncludeScopes = false;
            });
            builder.Logging.SetMinimumLevel(LogLevel.Information);
            builder.Logging.AddFilter("Microsoft", LogLevel.Warning);

            var time = TimeProvider.System;
            RtspServer? rtsp = null;
            var pipelines = new List<EncodePipeline>();
            var channels = new List<(RtspChannel Rtsp, ChannelConfig Config)>();

            builder.WebHost.ConfigureKestrel(k =>
            {
                k.AddServerHeader = false;
                for (int i = 0; i < config.Channels.Count; i++)
                {
                    int index = i; // the channels are made after Build(); connections arrive after StartAsync()
                    k.ListenAnyIP(config.Rtsp.Port + offset + i, lo => lo.Run(ctx => rtsp!.HandleAsync(ctx, channels[index].Rtsp)));
                }
            });

            var app = builder.Build();
            var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("pearl2d");
            log.LogInformation("pearl2d.start version={Version} board={Board} channels={Channels} port_offset={Offset} data_dir={DataDir} {Libs}",
                Version, board.Name, config.Channels.Count, offset, dataDir, FFmpegLibraries.Versions());

            rtsp = new RtspServer(new RtspOptions
            {
                SessionTimeoutSeconds = config.Rtsp.SessionTimeoutSeconds,
                StallTimeoutSeconds = config.Rtsp.StallTimeoutSeconds,
                MaxRtpPayload = config.Rtsp.MaxRtpPayload,
                ViewerQueueUnits = config.Rtsp.ViewerQueueUnits,
                StatsIntervalSeconds = config.Rtsp.StatsIntervalSeconds,
                UdpPortBase = config.Rtsp.UdpPortBase == 0 ? 0 : config.Rtsp.UdpPortBase + offset,
            }, time, app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Pearl2.Rtsp"));

            try
            {
                for (int i = 0; i < config.Channels.Count; i++)
                {
                    var cc = config.Channels[i];
                    var hub = new ChannelHub(i, cc.Name, time);
                    var ch = rtsp.AddChannel(hub, config.Rtsp.Port + offset + i);
                    ch.StreamingEnabled = cc.Streaming;
                    ch.Credentials = cc.Auth is { } a ? new ViewerCredentials(a.Username, a.Password, a.AllowBasic) : null;
                    channels.Add((ch, cc));
                    var v = cc.Video;
                    var pipeline = new EncodePipeline(hub, new PipelineOptions(
                        new H264EncoderOptions(v.Encoder ?? board.H264Encoder, v.Width, v.Height, v.Fps, v.BitrateKbps * 1000L, v.KeyFrameIntervalFrames, v.Preset, v.Tune, v.RateControl == "cbr"),
                        cc.Audio.Enabled, cc.Audio.SampleRate, cc.Audio.Channels, cc.Audio.BitrateKbps * 1000L),
                        time, app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Pearl2.Media"));
                    pipeline.Start();
                    pipelines.Add(pipeline);
                }
            }
            catch (EncoderException e)
            {
                log.LogCritical("pearl2d.encoder_failed error=\"{Error}\"", e.Message);
                foreach (var p in pipelines) p.Dispose();
                await app.DisposeAsync(); // flushes the log before the exit code
                return 4;
            }

            try { await app.StartAsync(); }
            catch (IOException e)
            {
                log.LogCritical("pearl2d.listen_failed error=\"{Error}\" hint=\"use --port-offset N (or auto) when ports below 1024 need privileges\"", e.Message);
                foreach (var p in pipelines) p.Dispose();
                await app.DisposeAsync();
                return 5;
            }

            var host = HostAddress();
            foreach (var (ch, cc) in channels)
                log.LogInformation("stream.url channel={Channel} name=\"{Name}\" rtsp=rtsp://{Host}:{Port}/stream.sdp local=rtsp://127.0.0.1:{Port}/stream.sdp streaming={Streaming} video={W}x{H}@{Fps} bitrate_kbps={Kbps}",
                    ch.Hub.Index + 1, cc.Name, host, ch.Port, ch.Port, cc.Streaming, cc.Video.Width, cc.Video.Height, cc.Video.Fps, cc.Video.BitrateKbps);
            log.LogInformation("pearl2d.ready");

            // SIGHUP re-reads the config: streaming on/off and viewer logins apply at once; the rest needs a restart.
            using var reload = configPath is null ? null : PosixSignalRegistration.Create(PosixSignal.SIGHUP, ctx =>
            {
                ctx.Cancel = true;
                try
                {
                    var next = ConfigLoader.Load(configPath);
                    if (next.Channels.Count != channels.Count)
                        log.LogWarning("config.reload_partial reason=\"the number of channels changes only at restart\" running={Running} file={File}", channels.Count, next.Channels.Count);
                    for (int i = 0; i < Math.Min(next.Channels.Count, channels.Count); i++)
                    {
                        var (ch, _) = channels[i];
                        var nc = next.Channels[i];
                        ch.StreamingEnabled = nc.Streaming;
                        ch.Credentials = nc.Auth is { } a ? new ViewerCredentials(a.Username, a.Password, a.AllowBasic) : null;
                        log.LogInformation("config.applied channel={Channel} streaming={Streaming} auth={Auth}", i + 1, nc.Streaming, nc.Auth is not null);
                    }
                }
                catch (ConfigException e)
                {
                    foreach (var err in e.Errors) log.LogError("config.reload_refused error=\"{Error}\" running=unchanged", err);
                }
                catch (IOException e) { log.LogError("config.reload_refused error=\"{Error}\" running=unchanged", e.Message); }
            });

            await app.WaitForShutdownAsync();
            log.LogInformation("pearl2d.stopping");
            await rtsp.DisposeAsync();
            foreach (var p in pipelines) p.Dispose();
            await app.StopAsync();
            await app.DisposeAsync();
            return 0;
        }

        static string Version => typeof(Pearl2d).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

        static bool CanBind(int port)
        {
            try
            {
                using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                s.Bind(new IPEndPoint(IPAddress.Loopback, port));
                return true;
            }
            catch (SocketException e) { return e.SocketErrorCode != SocketError.AccessDenied; }
        }

        static string HostAddress()
        {
            foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
            {
                if (nic.OperationalStatus != OperationalStatus.Up || nic.NetworkInterfaceType == NetworkInterfaceType.Loopback) continue;
                foreach (var a in nic.GetIPProperties().UnicastAddresses)
                    if (a.Address.AddressFamily == AddressFamily.InterNetwork) return a.Address.ToString();
            }
            return "127.0.0.1";
        }
    }
}
