using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Pearl2.Services.Update;

namespace Pearl2.Services.Admin;

/// <summary>What a panel user may do, as Pearl has it: each role can do all that the ones below it can.</summary>
public enum AdminRole
{
    /// <summary>Previews and streams only.</summary>
    Viewer = 1,
    /// <summary>Record, stream, recordings; no settings, users or updates.</summary>
    Operator = 2,
    /// <summary>Everything.</summary>
    Admin = 3,
}

public static class AdminRoles
{
    public static string Name(AdminRole role) => role switch { AdminRole.Admin => "admin", AdminRole.Operator => "operator", _ => "viewer" };

    public static bool TryParse(string? text, out AdminRole role)
    {
        role = text switch { "admin" => AdminRole.Admin, "operator" => AdminRole.Operator, "viewer" => AdminRole.Viewer, _ => 0 };
        return role != 0;
    }
}

/// <summary>A stored password: PBKDF2-HMAC-SHA256 with its own salt and iteration count.</summary>
public sealed class StoredUser
{
    public string Name { get; set; } = "";
    public string Role { get; set; } = "viewer";
    public string Salt { get; set; } = "";
    public string Hash { get; set; } = "";
    public int Iterations { get; set; }
}

public sealed class StoredUsers
{
    public List<StoredUser> Users { get; set; } = [];
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(StoredUsers))]
internal sealed partial class UsersJson : JsonSerializerContext;

/// <summary>
/// The admin panel's users, in <c>DATA/users.json</c> (mode 0600, written durably). Passwords are PBKDF2-HMAC-SHA256
/// at OWASP's 600,000 iterations, compared in constant time; an unknown name costs the same work as a wrong password.
/// Pearl clients send Basic with every request, so a verified name and password are remembered for a few minutes
/// under a keyed hash (a per-process key: the password itself is never kept), and forgotten when any user changes.
/// There is no default password: until the first admin is made (<see cref="SetupAsync"/>), nobody can log in.
/// </summary>
public sealed class AdminUsers
{
    public const int Iterations = 600_000;
    public const int MinPasswordLength = 8;
    static readonly TimeSpan RememberFor = TimeSpan.FromMinutes(5);
    const int MaxRemembered = 256;

    readonly string _path;
    readonly ILogger _audit;
    readonly TimeProvider _time;
    readonly object _lock = new();
    readonly byte[] _cacheKey = RandomNumberGenerator.GetBytes(32);
    readonly Dictionary<string, (string User, AdminRole Role, long At)> _remembered = new(StringComparer.Ordinal);
    readonly SemaphoreSlim _hashing = new(1, 1);
    List<StoredUser> _users;
    /// <summary>What an unknown name is checked against, so that it takes as long as a wrong password.</summary>
    readonly StoredUser _decoy;

    public AdminUsers(string path, ILogger audit, TimeProvider time)
    {
        _path = path; _audit = audit; _time = time;
        _users = Load(path);
        _decoy = Make("-", AdminRole.Viewer, Convert.ToBase64String(RandomNumberGenerator.GetBytes(12)));
    }

    static List<StoredUser> Load(string path)
    {
        if (!File.Exists(path)) return [];
        try { return JsonSerializer.Deserialize(File.ReadAllBytes(path), UsersJson.Default.StoredUsers)?.Users ?? []; }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not a users file ({e.Message.Split(" Path:")[0]})", e); }
    }

    /// <summary>True until the first admin exists: the panel then offers only the setup page.</summary>
    public bool SetupPending { get { lock (_lock) return _users.Count == 0; } }

    public IReadOnlyList<(string Name, AdminRole Role)> List()
    {
        lock (_lock) return _users.Select(u => (u.Name, Role(u))).ToList();
    }

    static AdminRole Role(StoredUser u) => AdminRoles.TryParse(u.Role, out var r) ? r : AdminRole.Viewer;

    /// <summary>The reason a name cannot be a user name, or null.</summary>
    public static string? CheckName(string? name) =>
        name is null || name.Length is < 1 or > 32 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')
            ? "must be 1 to 32 letters, digits, '-', '_' or '.'" : null;

    /// <summary>The reason a password is refused, or null.</summary>
    public static string? CheckPassword(string? password) =>
        password is null || password.Length < MinPasswordLength ? $"must be at least {MinPasswordLength} characters"
        : password.Length > 256 ? "must be at most 256 characters"
        : password.Any(char.IsControl) ? "must not contain control characters" : null;

    static StoredUser Make(string name, AdminRole role, string password)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, Iterations, HashAlgorithmName.SHA256, 32);
        return new StoredUser { Name = name, Role = AdminRoles.Name(role), Salt = Convert.ToBase64String(salt), Hash = Convert.ToBase64String(hash), Iterations = Iterations };
    }

    /// <summary>The first admin, once: false when users already exist (setup is over).</summary>
    public bool Setup(string name, string password, string from)
    {
        var user = Make(name, AdminRole.Admin, password);   // the slow part, outside the lock
        lock (_lock)
        {
            if (_users.Count > 0) return false;
            Save([user]);
        }
        _audit.LogWarning("audit.setup user={User} role=admin from={From}", name, from);
        return true;
    }

    /// <summary>Adds a user or sets an existing one's role and password; null password keeps the old one.</summary>
    public void Set(string name, AdminRole role, string? password, string by, string from)
    {
        var made = password is null ? null : Make(name, role, password);
        lock (_lock)
        {
            var users = _users.Select(u => u).ToList();
            int at = users.FindIndex(u => u.Name == name);
            if (at < 0 && made is null) throw new ArgumentException($"user {name}: a new user needs a password");
            if (at >= 0 && Role(users[at]) == AdminRole.Admin && role != AdminRole.Admin && users.Count(u => Role(u) == AdminRole.Admin) == 1)
                throw new InvalidOperationException($"user {name}: the last admin cannot lose the admin role");
            var next = made ?? new StoredUser { Name = name, Salt = users[at].Salt, Hash = users[at].Hash, Iterations = users[at].Iterations };
            next.Role = AdminRoles.Name(role);
            if (at < 0) users.Add(next); else users[at] = next;
            Save(users);
        }
        _audit.LogWarning("audit.user_changed user={User} role={Role} password={Password} by={By} from={From}", name, AdminRoles.Name(role), password is null ? "kept" : "set", by, from);
    }

    public bool Remove(string name, string by, string from)
    {
        lock (_lock)
        {
            var user = _users.FirstOrDefault(u => u.Name == name);
            if (user is null) return false;
            if (Role(user) == AdminRole.Admin && _users.Count(u => Role(u) == AdminRole.Admin) == 1)
                throw new InvalidOperationException($"user {name}: the last admin cannot be removed");
            Save(_users.Where(u => u != user).ToList());
        }
        _audit.LogWarning("audit.user_removed user={User} by={By} from={From}", name, by, from);
        return true;
    }

    void Save(List<StoredUser> users)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(new StoredUsers { Users = users }, UsersJson.Default.StoredUsers);
        DurableFile.Write(_path, bytes);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _users = users;
        _remembered.Clear();
    }

    /// <summary>The user's role when the password is right, else null. Slow (PBKDF2) unless verified a moment ago.</summary>
    public AdminRole? Verify(string name, string password)
    {
        string key = Convert.ToHexString(HMACSHA256.HashData(_cacheKey, Encoding.UTF8.GetBytes(name + "\0" + password)));
        StoredUser? user;
        lock (_lock)
        {
            if (_remembered.TryGetValue(key, out var known) && _time.GetElapsedTime(known.At) < RememberFor) return known.Role;
            user = _users.FirstOrDefault(u => u.Name == name);
        }
        var stored = user ?? _decoy;
        byte[] salt, expected;
        try { salt = Convert.FromBase64String(stored.Salt); expected = Convert.FromBase64String(stored.Hash); }
        catch (FormatException) { return null; }
        // One PBKDF2 at a time: a crowd of wrong passwords from many addresses queues here instead of taking every core from the streams.
        byte[] actual;
        _hashing.Wait();
        try { actual = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, Math.Max(1, stored.Iterations), HashAlgorithmName.SHA256, expected.Length); }
        finally { _hashing.Release(); }
        if (!CryptographicOperations.FixedTimeEquals(actual, expected) || user is null) return null;
        var role = Role(user);
        lock (_lock)
        {
            // Still the same user (not changed while we hashed)?
            if (!_users.Contains(user)) return null;
            if (_remembered.Count >= MaxRemembered) _remembered.Clear();
            _remembered[key] = (name, role, _time.GetTimestamp());
        }
        return role;
    }
}
