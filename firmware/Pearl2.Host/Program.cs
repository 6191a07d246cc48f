using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Pearl2.Host;
using Pearl2.Media.Encoders;
using Pearl2.Media.FFmpeg;
using Pearl2.Formats.Update;
using Pearl2.Services;
using Pearl2.Services.Admin;
using Pearl2.Services.Discovery;
using Pearl2.Services.Upload;
using Pearl2.Services.Configuration;
using Pearl2.Services.Update;
using System.Security.Cryptography;

return await Pearl2d.MainAsync(args);

namespace Pearl2.Host
{
    internal static class Pearl2d
    {
        /// <summary>Exit code of a second instance on a data directory that another pearl2d holds.</summary>
        const int ExitDataDirectoryInUse = 6;

        const string Usage = """
            usage: pearl2d [OPTIONS]                 run the firmware
                   pearl2d COMMAND [ARGS] [--data-dir DIR | --control SOCKET]   talk to the running one

            options:
              --config FILE            the config file (JSON); without it, the built-in defaults (--print-default-config)
              --board FILE             the board profile; default /etc/pearl2/board.json, else the host profile
              --data-dir DIR           recordings, the control socket, the lock and state files (default ./data)
              --port-offset N|auto     add N to every listening port; auto: 10000 when ports below 1024 cannot be bound
              --check-config           check the config, board and ports as a start would, then exit (0: good, 2: bad)
              --print-default-config   print the default config as JSON
              --version                print the firmware version
              -h, --help               this text (also: pearl2d help)

            commands (to the pearl2d running with the same --data-dir, over DATA-DIR/pearl2d.sock):
              panel press record|stream [--hold SECONDS]   press a front-panel button (as on the device)
              status                   states, LEDs, the display, viewers per channel, the firmware and update state
              recordings               the recordings: name, start, duration, size, state
              update check             check the update server now (exit 1 when the check failed or was refused)

            other commands:
              boot --slots DIR [-- ARGS]   the host simulation of the A/B boot loader
              boot-select [--board FILE]   early boot on a board, as root: the try-once rule
              pack IMAGE PAYLOAD INDEX     release tooling: a slot image into update chunks and their index

            exit codes: 2 bad arguments or config, 3 FFmpeg libraries missing, 4 encoder cannot open,
                        5 a port cannot be bound, 6 another pearl2d runs with this data directory
            """;

        public static async Task<int> MainAsync(string[] args)
        {
            if (args is ["help", ..]) { Console.WriteLine(Usage); return 0; }
            if (args.Length > 0 && args[0] is "panel" or "status" or "recordings" or "update") return await ControlClientAsync(args);
            if (args.Length > 0 && args[0] == "boot") return HostBoot.Run(args[1..], Version);
            if (args.Length > 0 && args[0] == "boot-select") return BootSelect(args[1..]);
            if (args.Length > 0 && args[0] == "pack") return Pack(args[1..]);
            string? configPath = null, boardPath = null, dataDir = null, offsetArg = null, slotsDir = null, bootedSlot = null;
            var firmwareArgs = new List<string>();   // what a simulated reboot passes on
            bool checkOnly = false;
            for (int i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                try
                {
                    switch (args[i])
                    {
                        // Paths are made absolute once, here, against the working directory (a reboot passes them on as they are now).
                        case "--config": configPath = FullPath(Next()); firmwareArgs.AddRange(["--config", configPath]); break;
                        case "--board": boardPath = FullPath(Next()); firmwareArgs.AddRange(["--board", boardPath]); break;
                        case "--data-dir": dataDir = FullPath(Next()); firmwareArgs.AddRange(["--data-dir", dataDir]); break;
                        case "--port-offset": offsetArg = Next(); firmwareArgs.AddRange(["--port-offset", offsetArg]); break;
                        case "--slots": slotsDir = FullPath(Next()); break;
                        case "--booted-slot": bootedSlot = Next(); break;
                        case "--check-config": checkOnly = true; break;
                        case "--print-default-config": Console.WriteLine(ConfigLoader.ToJson(new FirmwareConfig())); return 0;
                        case "--version": Console.WriteLine($"pearl2d {Version}"); return 0;   // the binary's; a slot's is in its boot state
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
                var boardErrors = ConfigLoader.ValidateBoard(board);
                if (boardErrors.Count > 0) throw new ConfigException(boardErrors);
                config = ConfigLoader.Load(configPath);
            }
            catch (ConfigException e)
            {
                foreach (var err in e.Errors) Console.Error.WriteLine($"pearl2d: config refused: {err}");
                return 2;
            }
            catch (IOException e) { Console.Error.WriteLine($"pearl2d: cannot read config: {e.Message}"); return 2; }

            int offset;
            if (offsetArg is null) offset = 0;
            else if (offsetArg == "auto") offset = CanBind(config.Rtsp.Port) && CanBind(config.Http.Port) && (!config.Admin.Enabled || CanBind(config.Admin.Port)) ? 0 : 10000;
            else if (!int.TryParse(offsetArg, out offset) || offset < 0) { Console.Error.WriteLine($"pearl2d: --port-offset: '{offsetArg}' is not a number from 0 (or auto)"); return 2; }
            // Every listener, the offset included, from one plan: a port past 65535 or taken twice is refused here.
            var ports = PortPlan.Of(config, offset);
            if (ports.Errors.Count > 0)
            {
                foreach (var err in ports.Errors) Console.Error.WriteLine($"pearl2d: {err}");
                return 2;
            }
            int n = config.Channels.Count;
            if (checkOnly) { Console.WriteLine($"config ok: {n} channel(s), rtsp ports {ports.RtspPort(0)}-{ports.RtspPort(n - 1)}, http ports {ports.HttpPort(0)}-{ports.HttpPort(n - 1)}"); return 0; }

            try { FFmpegLibraries.EnsureAvailable(); }
            catch (FFmpegMissingException e) { Console.Error.WriteLine($"pearl2d: {e.Message}"); return 3; }

            dataDir ??= Path.Combine(Environment.CurrentDirectory, "data");
            Directory.CreateDirectory(dataDir);
            // Before anything in the data directory is touched: a second instance must change nothing of the first's.
            using var dataLock = DataDirectoryLock.TryTake(dataDir, out int holder);
            if (dataLock is null)
            {
                Console.Error.WriteLine($"pearl2d: another pearl2d{(holder > 0 ? $" (pid {holder})" : "")} is running with data directory {dataDir}; stop it first, or give this one another --data-dir");
                return ExitDataDirectoryInUse;
            }

            // One line per event, without event ids: what journalctl shows an operator.
            var recentLog = new RecentLog();
            using var logOutput = new LineLoggerProvider(Console.Out, TimeProvider.System, LogLevel.Information) { Recent = recentLog };   // disposed last: flushes the final lines
            using var loggers = LoggerFactory.Create(b => b.AddProvider(logOutput).SetMinimumLevel(LogLevel.Information));
            var log = loggers.CreateLogger("pearl2d");
            var slots = slotsDir is not null && bootedSlot is not null ? new FileBootControl(slotsDir, bootedSlot, () => { }) : null;
            string running = RunningVersion(slots);
            log.LogInformation("pearl2d.start version={Version} board={Board} slot={Slot} channels={Channels} port_offset={Offset} data_dir={DataDir} {Libs}",
                running, board.Name, bootedSlot ?? "-", config.Channels.Count, offset, dataDir, FFmpegLibraries.Versions());

            // The slot the board booted, read once from the kernel command line (the host simulation names it itself).
            string? cmdlineSlot = board.Slots.Kind is "extlinux" or "tryboot" && File.Exists("/proc/cmdline") ? BootPartitionControl.BootedSlot(File.ReadAllText("/proc/cmdline")) : null;
            var store = new ConfigStore(config, configPath, offset, loggers.CreateLogger("Pearl2.Config"));
            var device = Device.Create(store, board, dataDir, loggers, TimeProvider.System);
            device.HostAddress = HostAddresses.Primary;
            device.FirmwareVersion = running;
            device.Slot = bootedSlot ?? cmdlineSlot;
            // The panel comes up first so the Status LED blinks while the channels start; a panel that
            // cannot start (no GPIO chip, no display) is logged and the device goes on without it.
            Panel? panel = null;
            try { panel = new Panel(board.Panel, device, config.Device.Name, dataDir, HostAddresses.Primary, TimeProvider.System, loggers); }
            catch (Exception e) { log.LogError("panel.failed driver={Driver} error=\"{Error}\" effect=\"no buttons, LEDs or display\"", board.Panel.Driver, e.Message); }
            if (panel is not null) device.PanelView = () => panel.View;
            // Automatic file upload to every configured target: made before the channels start so that the files a crash
            // left open, repaired as they start, are queued like any other; it sends once everything is up.
            var identity = DeviceIdentity.Load(dataDir);
            UploadService? uploads = device.Library is { } library
                ? new UploadService(config, library, dataDir, identity.Serial, loggers.CreateLogger("Pearl2.Upload"), TimeProvider.System) : null;
            try { await device.StartAsync(); }
            catch (EncoderException e)
            {
                log.LogCritical("pearl2d.encoder_failed error=\"{Error}\"", e.Message);
                if (uploads is not null) await uploads.DisposeAsync();
                if (panel is not null) await panel.DisposeAsync();
                return 4;
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
                log.LogCritical("pearl2d.listen_failed error=\"{Error}\"", e.Message);
                if (uploads is not null) await uploads.DisposeAsync();
                if (panel is not null) await panel.DisposeAsync();
                return 5;
            }

            var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            bool reboot = false;
            void Reboot()
            {
                // Let the control command's answer go out, then stop in order and exec the boot loader.
                reboot = true;
                _ = Task.Delay(500).ContinueWith(_ => stop.TrySetResult(), TaskScheduler.Default);
            }
            // Restarting and switching off: on a board, the root unit pearl2-reboot does it when asked; in the host
            // simulation a reboot is the boot loader's exec, and switching off stops pearl2d.
            bool onBoard = slotsDir is null && board.Slots.Kind != "none";
            if (slotsDir is not null) device.RebootHandler = _ => Reboot();
            else if (onBoard) device.RebootHandler = _ => BootControls.RequestPower(dataDir, "reboot");
            device.ShutdownHandler = onBoard
                ? _ => BootControls.RequestPower(dataDir, "poweroff")
                : _ => Task.Delay(500).ContinueWith(_ => stop.TrySetResult(), TaskScheduler.Default);
            var updater = StartUpdater(config.Update, board, running, slotsDir, bootedSlot, cmdlineSlot, dataDir, device, loggers, log, Reboot);
            device.Updater = updater;
            // A new update server, key or interval (the admin panel, SIGHUP) applies at once: the updater starts again with it.
            var updaterTurn = new SemaphoreSlim(1, 1);
            var updateSettings = ConfigLoader.ToJson(new FirmwareConfig { Update = config.Update });
            store.Changed += (next, version) =>
            {
                var settings = ConfigLoader.ToJson(new FirmwareConfig { Update = next.Update });
                if (settings == updateSettings) return;
                updateSettings = settings;
                _ = Task.Run(async () =>
                {
                    await updaterTurn.WaitAsync();
                    try
                    {
                        if (updater is not null) await updater.DisposeAsync();
                        updater = StartUpdater(next.Update, board, running, slotsDir, bootedSlot, cmdlineSlot, dataDir, device, loggers, log, Reboot);
                        device.Updater = updater;
                        log.LogInformation("update.reconfigured url={Url} running={Running}", next.Update.Url ?? "none", updater is null ? "no" : "yes");
                    }
                    finally { updaterTurn.Release(); }
                });
            };
            // Discovery (mDNS, SSDP and the UPnP media server). PEARL2_DISCOVERY=off keeps it silent whatever the config says:
            // for a developer's machine, and for the tests that run pearl2d on the host's own network.
            DiscoveryService? discovery = null;
            if (Environment.GetEnvironmentVariable("PEARL2_DISCOVERY") == "off")
                log.LogInformation("discovery.off reason=\"PEARL2_DISCOVERY=off in the environment\"");
            else
                discovery = new DiscoveryService(store, device, device.Library, device.Auth!, identity, running, dataDir, loggers, TimeProvider.System);
            if (uploads is not null)
            {
                uploads.Start();
                device.UploadView = uploads.Status;
                device.UploadFailing = () => uploads.Failing;
                store.Changed += (next, version) => _ = Task.Run(() => uploads.ReconfigureAsync(next));
            }
            AdminServer? admin = null;
            if (store.Ports.AdminPort != 0)
            {
                try
                {
                    admin = await StartAdminAsync(store, device, dataDir, recentLog, loggers, discovery);
                    device.SetupPending = () => admin.SetupPending;
                }
                catch (InvalidDataException e)
                {
                    // A damaged users file must not reopen first-run setup to the whole LAN: the panel stays off, the rest runs.
                    log.LogCritical("admin.off error=\"{Error}\" effect=\"the admin panel and API stay off; restore or remove users.json (removing it reopens first-run setup)\"", e.Message);
                }
                catch (IOException e)
                {
                    log.LogCritical("pearl2d.listen_failed error=\"{Error}\"", e.Message);
                    if (uploads is not null) await uploads.DisposeAsync();
                    if (updater is not null) await updater.DisposeAsync();
                    if (panel is not null) await panel.DisposeAsync();
                    await device.DisposeAsync();
                    return 5;
                }
            }
            if (discovery is not null) await discovery.StartAsync();
            var control = new ControlSocket(Path.Combine(dataDir, ControlSocket.FileName), device, device.Library, panel, loggers.CreateLogger("Pearl2.Control"));
            log.LogInformation("pearl2d.ready control={Control}", Path.Combine(dataDir, ControlSocket.FileName));
            using var systemd = new SystemdNotifier();
            systemd.Notify($"READY=1\nSTATUS=streaming {device.ChannelCount} channel(s)");
            systemd.StartWatchdog(device.ProducingFrames, TimeProvider.System);
            if (systemd.Enabled) log.LogInformation("systemd.notified ready=1 watchdog_s={Watchdog}", SystemdNotifier.WatchdogInterval()?.TotalSeconds ?? 0);
            if (!Console.IsInputRedirected && panel is { Simulated: true }) StartKeys(panel, log);

            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
            using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
            // SIGHUP re-reads the config file through the store: a bad file is refused whole and the running config stays.
            using var hangup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
            {
                c.Cancel = true;
                _ = Task.Run(store.ReloadAsync);
            });

            await stop.Task;
            log.LogInformation("pearl2d.stopping");
            systemd.Notify("STOPPING=1");
            await store.QuiesceAsync();
            await control.DisposeAsync();
            if (discovery is not null) await discovery.DisposeAsync();   // goodbyes first, while the addresses still answer
            if (uploads is not null) await uploads.DisposeAsync();   // a transfer in flight stops; its .part resumes at the next start
            if (admin is not null) await admin.DisposeAsync();
            await updaterTurn.WaitAsync();
            if (updater is not null) await updater.DisposeAsync();
            if (panel is not null) await panel.DisposeAsync();
            await device.DisposeAsync();
            log.LogInformation("pearl2d.stopped reboot={Reboot}", reboot ? "yes" : "no");
            if (reboot && slotsDir is not null) HostBoot.Reboot(slotsDir, firmwareArgs);
            return 0;
        }

        /// <summary>Front-panel keys for <c>make run</c> on a terminal: r = Record, s = Stream, h = hold Record 3.5 s.</summary>
        static void StartKeys(Panel panel, ILogger log)
        {
            log.LogInformation("panel.keys record=r stream=s hold_record=h");
            var t = new Thread(() =>
            {
                while (true)
                {
                    var k = Console.ReadKey(intercept: true).KeyChar;
                    Task? press = k switch
                    {
                        'r' or 'R' => panel.PressAsync(Services.FrontPanel.PanelButton.Record, TimeSpan.FromMilliseconds(80)),
                        's' or 'S' => panel.PressAsync(Services.FrontPanel.PanelButton.Stream, TimeSpan.FromMilliseconds(80)),
                        'h' or 'H' => panel.PressAsync(Services.FrontPanel.PanelButton.Record, TimeSpan.FromSeconds(3.5)),
                        _ => null,
                    };
                    press?.Wait();
                }
            }) { IsBackground = true, Name = "panel-keys" };
            t.Start();
        }

        static async Task<int> ControlClientAsync(string[] args)
        {
            string? dataDir = null, socket = null;
            var words = new List<string>();
            for (int i = 0; i < args.Length; i++)
            {
                if (args[i] is "--data-dir" or "--control" && i + 1 < args.Length)
                {
                    if (args[i] == "--data-dir") dataDir = Path.GetFullPath(args[++i]); else socket = Path.GetFullPath(args[++i]);
                }
                else words.Add(args[i]);
            }
            // Usage errors are answered here, without a running pearl2d.
            string? usage = words switch
            {
                ["panel", "press", "record" or "stream"] or ["panel", "press", "record" or "stream", "--hold", _] => null,
                ["panel", ..] => "usage: pearl2d panel press record|stream [--hold SECONDS]",
                ["status"] or ["recordings"] or ["update", "check"] => null,
                ["update", ..] => "usage: pearl2d update check",
                _ => $"usage: pearl2d {words[0]} (see pearl2d --help)",
            };
            if (usage is not null) { Console.Error.WriteLine("pearl2d: " + usage); return 2; }
            dataDir ??= Path.Combine(Environment.CurrentDirectory, "data");
            return await ControlSocket.ClientAsync(socket ?? Path.Combine(dataDir, ControlSocket.FileName), string.Join(' ', words),
                socket is null ? $"pearl2d is not running with data directory {dataDir}" : $"pearl2d is not running with control socket {socket}");
        }

        /// <summary><c>pearl2d pack IMAGE PAYLOAD INDEX</c>: what scripts/update-bundle.sh publishes (see <see cref="ChunkIndex"/>).</summary>
        static int Pack(string[] args)
        {
            if (args is not [var image, var payload, var indexPath]) { Console.Error.WriteLine($"pearl2d: pack needs IMAGE PAYLOAD INDEX\n{Usage}"); return 2; }
            byte[] index;
            using (var input = new FileStream(image, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20))
            using (var output = new FileStream(payload + ".tmp", FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
                index = ChunkIndex.Build(input, output);
            File.WriteAllBytes(indexPath + ".tmp", index);
            File.Move(payload + ".tmp", payload, overwrite: true);
            File.Move(indexPath + ".tmp", indexPath, overwrite: true);
            var parsed = ChunkIndex.Parse(index);
            int zero = Enumerable.Range(0, parsed.Count).Count(parsed.IsZero);
            Console.WriteLine($"pack: image_bytes={parsed.ImageSize} chunks={parsed.Count} zero_chunks={zero} payload_bytes={parsed.PayloadSize} index_sha256={Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(index))}");
            return 0;
        }

        /// <summary>A path from the command line, absolute against the working directory; an empty one is refused.</summary>
        internal static string FullPath(string path) =>
            string.IsNullOrWhiteSpace(path) ? throw new ArgumentException("an empty path was given") : Path.GetFullPath(path);

        static string Version => typeof(Pearl2d).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

        /// <summary>
        /// <c>pearl2d boot-select --board FILE</c>: early in every boot, as root, before pearl2d starts (pearl2-boot-select.service),
        /// on boards whose slots are switched by files on the boot partition (extlinux, tryboot):
        /// arms the fallback of a boot into a try, and records a try that did not confirm as bad.
        /// </summary>
        static int BootSelect(string[] args)
        {
            string? boardPath = args is ["--board", var b] ? b : null;
            var board = ConfigLoader.LoadBoard(boardPath ?? "/etc/pearl2/board.json");
            if (board.Slots.Kind is not ("extlinux" or "tryboot")) { Console.WriteLine($"pearl2: boot-select: slots are '{board.Slots.Kind}', nothing to do"); return 0; }
            var booted = BootPartitionControl.BootedSlot(File.ReadAllText("/proc/cmdline"));
            if (booted is null) { Console.WriteLine("pearl2: boot-select: no pearl2.slot= on the kernel command line"); return 0; }
            var control = BootControls.ForBootPartition(board.Slots, booted, "/dev/null");
            Console.WriteLine("pearl2: boot-select: " + control.SelectAtBoot(RunningVersion(null)));
            return 0;
        }

        /// <summary>The version of what booted: the slot's recorded version (host simulation), the image's release file, or this binary's.</summary>
        static string RunningVersion(FileBootControl? slots)
        {
            if (slots is not null && slots.Read().Versions.TryGetValue(slots.Booted, out var v)) return v;
            const string release = "/etc/pearl2/release";
            if (File.Exists(release) && File.ReadLines(release).FirstOrDefault(l => l.StartsWith("version=", StringComparison.Ordinal)) is { } line) return line["version=".Length..];
            return Version;
        }

        static Updater? StartUpdater(UpdateConfig c, BoardProfile board, string running, string? slotsDir, string? bootedSlot, string? cmdlineSlot, string dataDir,
            Device device, ILoggerFactory loggers, ILogger log, Action reboot)
        {
            if (c.Url is null) return null;
            if (BootControls.For(board.Slots, slotsDir, bootedSlot, cmdlineSlot, dataDir, reboot) is not { } setup)
            {
                log.LogWarning("update.unsupported board={Board} slots={Kind} reason=\"no A/B boot control for this board (the host simulation runs with pearl2d boot --slots DIR)\"", board.Name, board.Slots.Kind);
                return null;
            }
            var key = ECDsa.Create();
            try { key.ImportFromPem(File.ReadAllText(c.PublicKey)); }
            catch (Exception e) when (e is IOException or ArgumentException or CryptographicException or UnauthorizedAccessException)
            {
                log.LogError("update.disabled reason=\"the public key {Path} cannot be read: {Error}\"", c.PublicKey, e.Message);
                return null;
            }
            if (!FirmwareVersion.TryParse(running, out var version)) version = new FirmwareVersion(0, 0, 0);
            var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };   // the downloader times stalls itself
            var updateLog = loggers.CreateLogger("Pearl2.Update");
            var updater = new Updater(new UpdaterOptions(new Uri(c.Url), board.Name, version, key, TimeSpan.FromSeconds(c.IntervalSeconds), TimeSpan.FromSeconds(c.ConfirmSeconds),
                    Path.Combine(dataDir, "update"), setup.UpSince),
                setup.Boot, setup.SlotOf, http,
                new SlotDownloader(http, TimeProvider.System, updateLog), TimeProvider.System, updateLog);
            updater.PhaseChanged += phase => device.State = phase is UpdatePhase.Idle or UpdatePhase.Checking or UpdatePhase.Confirming
                ? (device.State == DeviceState.Updating ? DeviceState.Ready : device.State) : DeviceState.Updating;
            updater.Start(() => device.Healthy);
            log.LogInformation("update.started url={Url} board={Board} running={Running} slot={Slot} interval_s={Interval}", c.Url, board.Name, running, setup.Boot.Booted, c.IntervalSeconds);
            return updater;
        }

        /// <summary>The admin panel and REST API on the port plan's admin ports; a port that cannot be bound is an IOException naming it.</summary>
        static async Task<AdminServer> StartAdminAsync(ConfigStore store, Device device, string dataDir, RecentLog recentLog, ILoggerFactory loggers, DiscoveryService? discovery)
        {
            var time = TimeProvider.System;
            var adminLog = loggers.CreateLogger("Pearl2.Admin");
            var audit = new AuditLog(Path.Combine(dataDir, "audit.log"), loggers.CreateLogger("Pearl2.Audit"), time);
            var settings = store.Current.Admin;
            int http = store.Ports.AdminPort, https = store.Ports.AdminHttpsPort;
            var context = new AdminContext
            {
                Device = device,
                Store = store,
                Library = device.Library,
                Users = new AdminUsers(Path.Combine(dataDir, "users.json"), audit, time),
                Sessions = new AdminSessions(time, TimeSpan.FromMinutes(settings.SessionIdleMinutes), TimeSpan.FromHours(settings.SessionMaxHours)),
                Throttle = new LoginThrottle(time, adminLog),
                Audit = audit,
                Certificate = https != 0 ? new AdminCertificate(dataDir, Environment.MachineName, HostAddresses.All(), adminLog) : null,
                RecentLog = recentLog,
                Time = time,
                DataDir = dataDir,
                HostAddress = HostAddresses.Primary,
                Discovery = discovery,
            };
            try { return await AdminServer.StartAsync(context, http, https, loggers); }
            catch (Exception e) when (e is IOException or SocketException or Microsoft.AspNetCore.Connections.AddressInUseException)
            {
                bool inUse = e is Microsoft.AspNetCore.Connections.AddressInUseException || e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException
                    || e is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse };
                bool denied = e is SocketException { SocketErrorCode: SocketError.AccessDenied } || e.InnerException is SocketException { SocketErrorCode: SocketError.AccessDenied };
                throw new IOException($"admin panel: port {http}{(https != 0 ? $" or {https}" : "")}: " + (inUse ? "already in use by another program" : denied ? "needs privileges (use --port-offset N or auto)" : e.Message), e);
            }
        }

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

    }
}
