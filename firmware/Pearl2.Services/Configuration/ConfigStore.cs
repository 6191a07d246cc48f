using Microsoft.Extensions.Logging;
using Pearl2.Services.Update;

namespace Pearl2.Services.Configuration;

/// <summary>What became of a proposed config: applied as <see cref="Version"/>, or refused with every reason ("path: reason").</summary>
public sealed record ConfigChange(bool Applied, long Version, IReadOnlyList<string> Errors)
{
    public static ConfigChange Refused(long running, IReadOnlyList<string> errors) => new(false, running, errors);
}

/// <summary>
/// The one owner of the config: it loads the file, validates every proposed change whole (each section its own
/// fields, then the port plan under the running port offset), persists it atomically (written aside, fsync'd,
/// renamed), numbers the versions and tells who listens. The device applies a version live through the applier it
/// registers; one change runs at a time, and a refused change leaves the running config and the file as they were.
/// SIGHUP (the file edited by hand) and the admin API (a config sent over the network) are two callers of it.
/// </summary>
public sealed class ConfigStore
{
    readonly ILogger _log;
    readonly SemaphoreSlim _changing = new(1, 1);
    Func<FirmwareConfig, Task>? _apply;
    FirmwareConfig _current;
    long _version = 1;

    public ConfigStore(FirmwareConfig initial, string? path, int portOffset, ILogger log)
    {
        _current = initial; Path = path; PortOffset = portOffset; _log = log;
        Ports = PortPlan.Of(initial, portOffset);
    }

    /// <summary>Loads and validates <paramref name="path"/> (null: the built-in defaults); a ConfigException lists every error.</summary>
    public static ConfigStore Load(string? path, int portOffset, ILogger log)
    {
        var config = ConfigLoader.Load(path);
        var store = new ConfigStore(config, path, portOffset, log);
        if (store.Ports.Errors.Count > 0) throw new ConfigException(store.Ports.Errors);
        return store;
    }

    /// <summary>The config file, or null when the device runs on the built-in defaults (changes are then not kept).</summary>
    public string? Path { get; }
    public int PortOffset { get; }
    public FirmwareConfig Current => Volatile.Read(ref _current);
    public long Version => Interlocked.Read(ref _version);
    /// <summary>Where every listener is, for the running config.</summary>
    public PortPlan Ports { get; private set; }

    /// <summary>Raised after a version was applied (the new config and its number).</summary>
    public event Action<FirmwareConfig, long>? Changed;

    /// <summary>The device's "apply this version live" (restarting only what changed); set once at start.</summary>
    public void SetApplier(Func<FirmwareConfig, Task> apply) => _apply = apply;

    /// <summary>Every error of <paramref name="next"/> as this device would start it.</summary>
    public List<string> Validate(FirmwareConfig next)
    {
        var errors = next.Validate();
        if (errors.Count == 0) errors.AddRange(PortPlan.Of(next, PortOffset).Errors);
        return errors;
    }

    /// <summary>SIGHUP: reads the file again and applies it; a bad file is refused whole (logged) and the running config stays.</summary>
    public async Task<ConfigChange> ReloadAsync()
    {
        if (Path is null)
        {
            _log.LogWarning("config.reload_ignored reason=\"running the built-in defaults (no --config)\"");
            return ConfigChange.Refused(Version, ["running the built-in defaults (no --config)"]);
        }
        FirmwareConfig next;
        try { next = ConfigLoader.Load(Path); }
        catch (ConfigException e) { return Refuse(e.Errors); }
        catch (IOException e) { return Refuse([e.Message]); }
        return await ChangeAsync(next, persist: false);
    }

    /// <summary>A whole new config from elsewhere (the admin API): validated, written to the file, then applied.</summary>
    public Task<ConfigChange> ApplyAsync(FirmwareConfig next) => ChangeAsync(next, persist: true);

    async Task<ConfigChange> ChangeAsync(FirmwareConfig next, bool persist)
    {
        await _changing.WaitAsync();
        try
        {
            var errors = Validate(next);
            if (errors.Count > 0) return Refuse(errors);
            if (persist && Path is not null)
            {
                try { DurableFile.Write(Path, System.Text.Encoding.UTF8.GetBytes(ConfigLoader.ToJson(next))); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return Refuse([$"{Path}: cannot be written ({e.Message})"]); }
            }
            else if (persist) _log.LogWarning("config.not_saved reason=\"running the built-in defaults (no --config): the change lasts until the next start\"");
            if (_apply is { } apply) await apply(next);
            Volatile.Write(ref _current, next);
            Ports = PortPlan.Of(next, PortOffset);
            long version = Interlocked.Increment(ref _version);
            Changed?.Invoke(next, version);
            return new ConfigChange(true, version, []);
        }
        finally { _changing.Release(); }
    }

    ConfigChange Refuse(IReadOnlyList<string> errors)
    {
        foreach (var err in errors) _log.LogError("config.reload_refused error=\"{Error}\" running=unchanged", err);
        return ConfigChange.Refused(Version, errors);
    }

    /// <summary>Waits for a change in progress to finish and holds further ones off (at shutdown).</summary>
    public Task QuiesceAsync() => _changing.WaitAsync();
}
