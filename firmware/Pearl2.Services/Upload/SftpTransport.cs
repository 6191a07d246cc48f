using Renci.SshNet;
using Renci.SshNet.Common;
using Pearl2.Services.Configuration;

namespace Pearl2.Services.Upload;

/// <summary>
/// SFTP through SSH.NET: password or private key; the server's host key is pinned on first use (its SHA-256 kept in
/// DATA/upload/known_hosts per host and port, and logged), and a different key later is refused before anything is
/// sent. Resume writes into the server's partial file at its length.
/// </summary>
public sealed class SftpTransport : IUploadTransport
{
    readonly SftpClient _client;

    SftpTransport(SftpClient client) => _client = client;

    /// <summary>What the pinned and the offered host keys were when a connection was refused for a changed key.</summary>
    public static string KnownHostsPath(string dataDir) => Path.Combine(dataDir, "upload", "known_hosts");

    public static async Task<IUploadTransport> ConnectAsync(UploadConfig c, string dataDir, Action<string> pinned, CancellationToken ct)
    {
        var methods = new List<AuthenticationMethod>();
        if (c.PrivateKeyFile is { Length: > 0 } keyFile)
        {
            string path = Path.GetFullPath(keyFile, dataDir);
            try { methods.Add(new PrivateKeyAuthenticationMethod(c.Username, new PrivateKeyFile(path, c.Password.Length > 0 ? c.Password : null))); }
            catch (Exception e) when (e is IOException or SshException or UnauthorizedAccessException)
            {
                throw new UploadRefusedException($"the private key {path} cannot be read: {e.Message}");
            }
        }
        if (c.Password.Length > 0 && methods.Count == 0) methods.Add(new PasswordAuthenticationMethod(c.Username, c.Password));
        var info = new ConnectionInfo(c.Host, c.EffectivePort, c.Username, methods.ToArray()) { Timeout = TimeSpan.FromSeconds(c.TimeoutSeconds) };
        var client = new SftpClient(info) { OperationTimeout = TimeSpan.FromSeconds(c.TimeoutSeconds) };
        string hostsFile = KnownHostsPath(dataDir), key = $"{c.Host}:{c.EffectivePort}";
        string? refused = null;
        client.HostKeyReceived += (_, e) =>
        {
            string offered = "SHA256:" + e.FingerPrintSHA256;
            var known = ReadKnown(hostsFile);
            if (known.TryGetValue(key, out var pin))
            {
                e.CanTrust = pin == offered;
                if (!e.CanTrust) refused = $"the host key of {key} changed: pinned {pin}, offered {offered} (remove its line from {hostsFile} if the server was really re-keyed)";
                return;
            }
            // First use: pinned from now on.
            Directory.CreateDirectory(Path.GetDirectoryName(hostsFile)!);
            File.AppendAllText(hostsFile, $"{key} {offered}\n");
            pinned($"{key} {e.HostKeyName} {offered}");
            e.CanTrust = true;
        };
        try
        {
            await client.ConnectAsync(ct);
            return new SftpTransport(client);
        }
        catch (Exception e) when (e is SshException or System.Net.Sockets.SocketException or IOException or OperationCanceledException or TimeoutException)
        {
            client.Dispose();
            if (e is OperationCanceledException && ct.IsCancellationRequested) throw;
            if (refused is not null) throw new UploadRefusedException(refused);
            if (e is SshAuthenticationException) throw new UploadRefusedException($"login refused: {e.Message}");
            throw new UploadFailedException($"{key}: {e.Message}", e);
        }
    }

    static Dictionary<string, string> ReadKnown(string path)
    {
        var d = new Dictionary<string, string>();
        if (!File.Exists(path)) return d;
        foreach (var line in File.ReadAllLines(path))
            if (line.Split(' ', 2) is [var k, var v]) d[k] = v.Trim();
        return d;
    }

    static async Task<T> Guard<T>(Func<Task<T>> step, string what)
    {
        try { return await step(); }
        catch (Exception e) when (e is SshException or System.Net.Sockets.SocketException or IOException or TimeoutException)
        {
            throw new UploadFailedException($"{what}: {e.Message}", e);
        }
    }

    public Task<long?> SizeAsync(string path, CancellationToken ct) => Guard<long?>(async () =>
    {
        try { return (await _client.GetAttributesAsync(path, ct)).Size; }
        catch (SftpPathNotFoundException) { return null; }
    }, $"stat {path}");

    public Task MakeDirectoriesAsync(string dir, CancellationToken ct) => Guard(async () =>
    {
        string sofar = "";
        foreach (var part in dir.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            sofar = sofar.Length == 0 ? part : sofar + "/" + part;
            if (!await _client.ExistsAsync(sofar, ct)) await _client.CreateDirectoryAsync(sofar, ct);
        }
        return true;
    }, $"mkdir {dir}");

    public Task UploadAsync(Stream local, string path, long offset, Func<long, Task> progress, CancellationToken ct) => Guard(async () =>
    {
        if (offset == 0)
        {
            // A whole file: SSH.NET's own upload keeps many write requests in flight (a plain stream waits for each).
            local.Seek(0, SeekOrigin.Begin);
            await _client.UploadFileAsync(new ProgressStream(local, progress), path, ct);
            return true;
        }
        // Into the partial file at its length (SFTP writes at an offset).
        await using var remote = await _client.OpenAsync(path, offset > 0 ? FileMode.OpenOrCreate : FileMode.Create, FileAccess.Write, ct);
        remote.Seek(offset, SeekOrigin.Begin);
        local.Seek(offset, SeekOrigin.Begin);
        var buf = new byte[128 * 1024];
        long sent = offset;
        int n;
        while ((n = await local.ReadAsync(buf, ct)) > 0)
        {
            await remote.WriteAsync(buf.AsMemory(0, n), ct);
            sent += n;
            await progress(sent);
        }
        await remote.FlushAsync(ct);
        return true;
    }, $"write {path}");

    public Task RenameAsync(string from, string to, CancellationToken ct) => Guard(async () => { await _client.RenameFileAsync(from, to, ct); return true; }, $"rename {from}");

    public Task DeleteAsync(string path, CancellationToken ct) => Guard(async () =>
    {
        try { await _client.DeleteFileAsync(path, ct); }
        catch (SftpPathNotFoundException) { }
        return true;
    }, $"delete {path}");

    public ValueTask DisposeAsync()
    {
        try { if (_client.IsConnected) _client.Disconnect(); }
        catch (Exception e) when (e is SshException or IOException or System.Net.Sockets.SocketException or ObjectDisposedException) { }
        _client.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>Reads the local file for SSH.NET's upload, telling the uploader how far it got (which also paces it for the bandwidth limit).</summary>
sealed class ProgressStream(Stream inner, Func<long, Task> progress) : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => inner.Length;
    public override long Position { get => inner.Position; set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        int n = await inner.ReadAsync(buffer, ct);
        await progress(inner.Position);
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        int n = inner.Read(buffer, offset, count);
        progress(inner.Position).GetAwaiter().GetResult();
        return n;
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
