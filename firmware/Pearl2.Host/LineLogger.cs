using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Pearl2.Host;

/// <summary>
/// The log as an operator reads it in journalctl: one line per event, "TIME LEVEL: CATEGORY EVENT key=value …", an
/// exception folded into the same line. Lines go through a bounded queue to one writer thread, so a slow terminal or
/// journal never blocks the caller; when the queue is full, lines are dropped and the count is logged once it drains.
/// </summary>
public sealed class LineLoggerProvider : ILoggerProvider
{
    readonly Channel<string> _lines = Channel.CreateBounded<string>(new BoundedChannelOptions(8192) { SingleReader = true, FullMode = BoundedChannelFullMode.DropWrite });
    readonly Thread _writer;
    readonly TextWriter _out;
    readonly TimeProvider _time;
    readonly LogLevel _min;
    long _dropped;

    public LineLoggerProvider(TextWriter output, TimeProvider time, LogLevel minimum)
    {
        _out = output; _time = time; _min = minimum;
        _writer = new Thread(Write) { IsBackground = true, Name = "log-writer" };
        _writer.Start();
    }

    void Write()
    {
        var reader = _lines.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            while (reader.TryRead(out var line)) _out.Write(line);
            long dropped = Interlocked.Exchange(ref _dropped, 0);
            if (dropped > 0) _out.Write(Format(LogLevel.Warning, "pearl2d", $"log.dropped lines={dropped} reason=\"the log output could not keep up\""));
            _out.Flush();
        }
    }

    string Format(LogLevel level, string category, string message) =>
        $"{_time.GetUtcNow():yyyy-MM-ddTHH:mm:ss.fffZ} {Level(level)}: {category} {message}\n";

    static string Level(LogLevel l) => l switch
    {
        LogLevel.Trace => "trce", LogLevel.Debug => "dbug", LogLevel.Information => "info",
        LogLevel.Warning => "warn", LogLevel.Error => "fail", _ => "crit",
    };

    /// <summary>Also keeps the last lines for the admin panel's live log, when set.</summary>
    public Pearl2.Services.RecentLog? Recent { get; init; }

    internal void Add(LogLevel level, string category, string message)
    {
        var line = Format(level, category, message);
        Recent?.Add(line.TrimEnd('\n'));
        if (!_lines.Writer.TryWrite(line)) Interlocked.Increment(ref _dropped);
    }

    internal bool Enabled(LogLevel level, string category) =>
        level >= _min && level != LogLevel.None && !(category.StartsWith("Microsoft", StringComparison.Ordinal) && level < LogLevel.Warning);

    public ILogger CreateLogger(string categoryName) => new LineLogger(this, categoryName);

    /// <summary>Writes out what is queued, then stops.</summary>
    public void Dispose()
    {
        _lines.Writer.TryComplete();
        _writer.Join(TimeSpan.FromSeconds(2));
    }

    sealed class LineLogger(LineLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => provider.Enabled(logLevel, category);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            var message = formatter(state, exception);
            if (exception is not null)
                message += $" exception=\"{exception.GetType().Name}: {exception.Message.ReplaceLineEndings(" ")}\" at=\"{(exception.StackTrace ?? "").ReplaceLineEndings(" | ").Trim()}\"";
            provider.Add(logLevel, category, message.ReplaceLineEndings(" "));
        }
    }
}
