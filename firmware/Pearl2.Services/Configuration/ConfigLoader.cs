using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using System.Text.Json.Serialization;

namespace Pearl2.Services.Configuration;

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true, UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(FirmwareConfig))]
[JsonSerializable(typeof(BoardProfile))]
[JsonSerializable(typeof(RtspConfig))]
[JsonSerializable(typeof(HttpConfig))]
[JsonSerializable(typeof(VideoConfig))]
[JsonSerializable(typeof(AudioConfig))]
[JsonSerializable(typeof(RecordingConfig))]
[JsonSerializable(typeof(UpdateConfig))]
[JsonSerializable(typeof(AdminConfig))]
[JsonSerializable(typeof(DiscoveryConfig))]
[JsonSerializable(typeof(PublisherConfig))]
[JsonSerializable(typeof(UploadConfig))]
[JsonSerializable(typeof(DeviceConfig))]
[JsonSerializable(typeof(SlotsProfile))]
internal sealed partial class ConfigJson : JsonSerializerContext;

public sealed class ConfigException(IReadOnlyList<string> errors) : Exception(string.Join("; ", errors))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}

public static class ConfigLoader
{
    public static FirmwareConfig Load(string? path)
    {
        var errors = new List<string>();
        var config = path is null ? new FirmwareConfig() : Parse(ReadText(path), ConfigJson.Default.FirmwareConfig, path, errors);
        errors.AddRange(Validate(config));
        if (errors.Count > 0) throw new ConfigException(errors);
        // A relative key path means the working directory's, fixed now so a reload or a reboot reads the same file.
        config.Update.PublicKey = Path.GetFullPath(config.Update.PublicKey);
        return config;
    }

    /// <summary>The file's text, or a ConfigException that names it and says why it cannot be read (a directory, no permission, gone).</summary>
    static string ReadText(string path)
    {
        if (Directory.Exists(path)) throw new ConfigException([$"{path}: is a directory, not a config file"]);
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new ConfigException([$"{path}: cannot be read ({(e is FileNotFoundException ? "no such file" : e.Message)})"]); }
    }

    public static BoardProfile LoadBoard(string? path)
    {
        if (path is null) return new BoardProfile();
        var errors = new List<string>();
        var board = Parse(ReadText(path), ConfigJson.Default.BoardProfile, path, errors, "board.");
        if (errors.Count > 0) throw new ConfigException(errors);
        return board;
    }

    public static List<string> ValidateBoard(BoardProfile b)
    {
        var e = new List<string>();
        void Check(bool ok, string field, string reason) { if (!ok) e.Add($"board.{field}: {reason}"); }
        Check(b.Capture == "testpattern" || b.Capture.StartsWith("/dev/video", StringComparison.Ordinal), "capture", $"'{b.Capture}' is not testpattern or a /dev/videoN node");
        Check(b.Audio == "tone" || (b.Audio.Length is > 0 and < 128 && b.Audio.All(c => char.IsAsciiLetterOrDigit(c) || c is ':' or ',' or '=' or '_' or '-' or '.')),
            "audio", $"'{b.Audio}' is not tone or an ALSA PCM name such as plughw:CARD=Loopback,DEV=1");
        if (b.Slots is not { } sl) e.Add("board.slots: must be an object");
        else
        {
            Check(sl.Kind is "none" or "extlinux" or "tryboot", "slots.kind", $"'{sl.Kind}' is not none, extlinux or tryboot");
            if (sl.Kind != "none")
            {
                Check(sl.A.StartsWith("/dev/", StringComparison.Ordinal) && sl.B.StartsWith("/dev/", StringComparison.Ordinal) && sl.A != sl.B, "slots.a", "slots a and b must be two /dev/ partitions");
                Check(sl.BootDirectory.StartsWith('/'), "slots.bootDirectory", "must be an absolute path");
            }
        }
        var p = b.Panel;
        if (p is null) { e.Add("board.panel: must be an object"); return e; }
        Check(p.Driver is "simulated" or "libgpiod", "panel.driver", $"'{p.Driver}' is not simulated or libgpiod");
        Check(p.Chip is >= 0 and <= 63, "panel.chip", $"{p.Chip} is not a gpiochip number from 0 to 63");
        Check(p.ChipLabel is null || p.ChipLabel.Length is > 0 and <= 31, "panel.chipLabel", "must be 1 to 31 characters (a gpiochip label)");
        var lines = new (string Name, GpioLine? Line)[] { ("record", p.Record), ("stream", p.Stream), ("recordLed", p.RecordLed), ("streamLed", p.StreamLed), ("statusLed", p.StatusLed) };
        foreach (var (name, line) in lines)
            Check(line is not null && line.Line is >= 0 and <= 511, $"panel.{name}.line", line is null ? "is missing" : $"{line.Line} is not a line from 0 to 511");
        foreach (var dup in lines.Where(l => l.Line is not null).GroupBy(l => l.Line!.Line).Where(g => g.Count() > 1))
            e.Add($"board.panel: line {dup.Key} is used by {string.Join(" and ", dup.Select(d => d.Name))}");
        if (p.Display is { } d)
        {
            Check(d.Kind == "ssd1306", "panel.display.kind", $"'{d.Kind}' is not ssd1306");
            Check(d.Address is >= 0x03 and <= 0x77, "panel.display.address", $"{d.Address} is not a 7-bit I2C address");
            Check(d.Width is 128 && d.Height is 32 or 64, "panel.display.width", $"{d.Width}x{d.Height} is not 128x64 or 128x32");
            Check(d.I2cBus is >= 0 and <= 63, "panel.display.i2cBus", $"{d.I2cBus} is not an I2C bus number");
        }
        return e;
    }

    public static FirmwareConfig ParseText(string json)
    {
        var errors = new List<string>();
        var config = Parse(json, ConfigJson.Default.FirmwareConfig, "config", errors);
        errors.AddRange(Validate(config));
        if (errors.Count > 0) throw new ConfigException(errors);
        return config;
    }

    static readonly JsonDocumentOptions DocumentOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    /// <summary>
    /// Reads a config document. Broken JSON is refused at once with its line and column. Otherwise every field the
    /// document has is checked against the config's shape: each unknown field and each value of the wrong kind is one
    /// error in <paramref name="errors"/> (path: reason, in the config's words), left out, and the rest is read, so
    /// that the range checks after it can report their errors in the same go.
    /// </summary>
    static T Parse<T>(string json, JsonTypeInfo<T> type, string source, List<string> errors, string prefix = "")
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json, documentOptions: DocumentOptions); }
        catch (JsonException e)
        {
            var reason = e.Message;
            int cut = reason.IndexOf(" Path:", StringComparison.Ordinal);
            if (cut < 0) cut = reason.IndexOf(" LineNumber:", StringComparison.Ordinal);
            if (cut > 0) reason = reason[..cut];
            throw new ConfigException([$"{source}: line {(e.LineNumber ?? 0) + 1}, column {(e.BytePositionInLine ?? 0) + 1}: {reason.TrimEnd('.')} (the file is not valid JSON)"]);
        }
        if (root is not JsonObject) throw new ConfigException([$"{source}: must be a JSON object ({{ … }})"]);
        using (var doc = JsonDocument.Parse(json, DocumentOptions))
        {
            var twice = new List<string>();
            FindDuplicates(doc.RootElement, prefix, twice);
            if (twice.Count > 0) throw new ConfigException(twice);
        }
        CheckShape(root, type, prefix, errors);
        try { return root.Deserialize(type) ?? throw new ConfigException([$"{source}: empty document"]); }
        catch (JsonException e) { throw new ConfigException([$"{prefix}{(e.Path ?? "$").TrimStart('$', '.')}: cannot be read ({e.Message.Split(" Path:")[0]})"]); }
    }

    /// <summary>A field given twice in one object is an error (which one was meant?); JSON itself does not forbid it.</summary>
    static void FindDuplicates(JsonElement e, string path, List<string> errors)
    {
        if (e.ValueKind == JsonValueKind.Object)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in e.EnumerateObject())
            {
                string at = path.Length == 0 || path.EndsWith('.') ? path + p.Name : $"{path}.{p.Name}";
                if (!seen.Add(p.Name)) errors.Add($"{at}: given twice in the same object");
                FindDuplicates(p.Value, at, errors);
            }
        }
        else if (e.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var item in e.EnumerateArray()) FindDuplicates(item, $"{path}[{i++}]", errors);
        }
    }

    static void CheckShape(JsonNode node, JsonTypeInfo type, string path, List<string> errors)
    {
        if (type.Kind == JsonTypeInfoKind.Object && node is JsonObject obj)
        {
            foreach (var (name, child) in obj.ToList())
            {
                var field = type.Properties.FirstOrDefault(p => p.Name == name);
                string at = path.Length == 0 || path.EndsWith('.') ? path + name : $"{path}.{name}";
                if (field is null)
                {
                    errors.Add($"{at}: unknown field (known here: {string.Join(", ", type.Properties.Select(p => p.Name))})");
                    obj.Remove(name);
                    continue;
                }
                if (!CheckValue(child, field.PropertyType, at, errors, field.IsSetNullable)) obj.Remove(name);
            }
        }
        else if (type.Kind == JsonTypeInfoKind.Enumerable && node is JsonArray array && type.ElementType is { } element)
        {
            for (int i = 0; i < array.Count; i++)
                if (!CheckValue(array[i], element, $"{path}[{i}]", errors)) array[i] = null;
        }
    }

    /// <summary>False (and one error) when <paramref name="value"/> is not of the kind <paramref name="t"/> needs.</summary>
    static bool CheckValue(JsonNode? value, Type t, string at, List<string> errors, bool nullAllowed = false)
    {
        var nullable = Nullable.GetUnderlyingType(t);
        if (value is null)
        {
            // null only where the field may be absent (a nullable one); elsewhere it would reach the code as a hole.
            if ((t.IsValueType && nullable is null) || (!t.IsValueType && !nullAllowed)) { errors.Add($"{at}: must be {Kind(t)}, not null"); return false; }
            return true;
        }
        var under = nullable ?? t;
        var kind = value.GetValueKind();
        string shown = kind is JsonValueKind.Object ? "an object" : kind is JsonValueKind.Array ? "a list" : value.ToJsonString();
        bool ok = under == typeof(string) ? kind == JsonValueKind.String
            : under == typeof(bool) ? kind is JsonValueKind.True or JsonValueKind.False
            : under == typeof(int) ? kind == JsonValueKind.Number && value.AsValue().TryGetValue<int>(out _)
            : under == typeof(long) ? kind == JsonValueKind.Number && value.AsValue().TryGetValue<long>(out _)
            : under == typeof(double) ? kind == JsonValueKind.Number
            : true;
        if (!ok) { errors.Add($"{at}: {shown} is not {Kind(under)}"); return false; }
        if (under.IsPrimitive || under == typeof(string)) return true;
        var info = ConfigJson.Default.GetTypeInfo(under);
        if (info is null) return true;
        if (info.Kind == JsonTypeInfoKind.Object && kind != JsonValueKind.Object) { errors.Add($"{at}: {shown} is not an object ({{ … }})"); return false; }
        if (info.Kind == JsonTypeInfoKind.Enumerable && kind != JsonValueKind.Array) { errors.Add($"{at}: {shown} is not a list ([ … ])"); return false; }
        CheckShape(value, info, at, errors);
        return true;
    }

    static string Kind(Type t) => t == typeof(string) ? "text (in quotes)" : t == typeof(bool) ? "true or false"
        : t == typeof(int) || t == typeof(long) ? "a whole number" : t == typeof(double) ? "a number"
        : ConfigJson.Default.GetTypeInfo(t)?.Kind switch { JsonTypeInfoKind.Object => "an object ({ … })", JsonTypeInfoKind.Enumerable => "a list ([ … ])", _ => "a value" };

    public static List<string> Validate(FirmwareConfig c) => c.Validate();

    public static string ToJson(FirmwareConfig c) => JsonSerializer.Serialize(c, ConfigJson.Default.FirmwareConfig);
}
