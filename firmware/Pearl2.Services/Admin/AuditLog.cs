using System.Text;
using Microsoft.Extensions.Logging;

namespace Pearl2.Services.Admin;

/// <summary>
/// Every login, failed login and change made through the admin doors: one line each in the device log, and appended
/// to <c>DATA/audit.log</c> on the data partition, which outlives the journal (kept in RAM on the board). The file is
/// capped: past 1 MiB it becomes audit.log.1 and a new one starts.
/// </summary>
public sealed class AuditLog(string path, ILogger log, TimeProvider time) : ILogger
{
    const long MaxBytes = 1 << 20;
    readonly object _lock = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        log.Log(logLevel, eventId, state, exception, formatter);
        string line = $"{time.GetUtcNow():yyyy-MM-ddTHH:mm:ss.fffZ} {formatter(state, exception)}\n";
        lock (_lock)
        {
            try
            {
                var info = new FileInfo(path);
                if (info.Exists && info.Length > MaxBytes) File.Move(path, path + ".1", overwrite: true);
                using var f = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
                f.Write(Encoding.UTF8.GetBytes(line));
                f.Flush(flushToDisk: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                log.LogError("audit.write_failed path={Path} error=\"{Error}\"", path, e.Message);
            }
        }
    }

    /// <summary>The last <paramref name="count"/> lines (newest last), for the panel.</summary>
    public IReadOnlyList<string> Tail(int count)
    {
        lock (_lock)
        {
            try { return File.Exists(path) ? File.ReadLines(path).TakeLast(count).ToList() : []; }
            catch (IOException) { return []; }
        }
    }
}
