using Microsoft.Extensions.Logging;

namespace Pearl2.Services;

/// <summary>
/// What an accept loop does when accept fails (out of file descriptors, EMFILE/ENFILE, or any other error that is
/// not the listener closing): wait, 50 ms doubling to 2 s, and try again, so the loop neither dies nor spins. One
/// warning when a run of failures starts and one line when accepting works again, with the count.
/// </summary>
public sealed class AcceptBackoff(ILogger log, string what, TimeProvider? time = null)
{
    static readonly TimeSpan First = TimeSpan.FromMilliseconds(50), Longest = TimeSpan.FromSeconds(2);
    readonly TimeProvider _time = time ?? TimeProvider.System;
    TimeSpan _delay = First;
    long _failures;

    public async Task FailedAsync(Exception e, CancellationToken stop = default)
    {
        if (_failures++ == 0)
            log.LogWarning("accept.failing listener={Listener} error=\"{Error}\" retry=backoff", what, e.Message);
        await Task.Delay(_delay, _time, stop);
        _delay = TimeSpan.FromTicks(Math.Min(Longest.Ticks, _delay.Ticks * 2));
    }

    public void Accepted()
    {
        if (_failures == 0) return;
        log.LogInformation("accept.recovered listener={Listener} failures={Failures}", what, _failures);
        _failures = 0;
        _delay = First;
    }
}
