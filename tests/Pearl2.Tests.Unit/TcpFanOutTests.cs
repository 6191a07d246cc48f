using Microsoft.Extensions.Logging.Abstractions;
using Pearl2.Media;
using Pearl2.Services.Rtsp;
using Xunit;

namespace Pearl2.Tests.Unit;

public class TcpFanOutTests
{
    /// <summary>A viewer that notes which lane wrote to it, and counts a packet of 100 bytes in the stripe it was given.</summary>
    sealed class Member : TcpFanOut.IMember
    {
        public volatile string? Lane;
        public int Pumps;
        /// <summary>Units published since it joined.</summary>
        public int Published;

        public void Pump(SentTotals? lane)
        {
            Lane = Thread.CurrentThread.Name;
            lane?.AddOwn(1, 100);
            Interlocked.Increment(ref Pumps);
        }

        public void Abort(string reason) => throw new InvalidOperationException(reason);
    }

    /// <summary>One unit, and waits until the lanes have written to every viewer once for each unit since it joined.</summary>
    static void PublishAndWait(ChannelHub hub, List<Member> members, long pts)
    {
        foreach (var m in members) m.Published++;
        hub.Publish(hub.Pool.Rent(TrackKind.Video, true, pts, default, [0, 0, 1, 0x65, 1]));
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (members.Any(m => Volatile.Read(ref m.Pumps) < m.Published) && DateTime.UtcNow < until) Thread.Sleep(5);
        Assert.All(members, m => Assert.True(m.Pumps >= m.Published, $"a viewer was written to {m.Pumps} times, not {m.Published}"));
    }

    [Fact]
    public void AFewViewersShareOneLaneThenTheLanesFillEvenlyAndEachLaneCountsWhatItSentInItsOwnStripe()
    {
        var hub = new ChannelHub(0, "t");
        using var fanOut = new TcpFanOut(hub, NullLogger.Instance, lanes: 2);
        var members = new List<Member>();
        void Join(int n) { for (int i = 0; i < n; i++) { var m = new Member(); members.Add(m); fanOut.Join(m); } }

        // Up to FanOutLanes.Fill viewers: one lane, so one wake-up per unit.
        Join(FanOutLanes.Fill);
        PublishAndWait(hub, members, 0);
        Assert.All(members, m => Assert.Equal("rtsp-tcp-1.0", m.Lane));

        // The next viewers start the second lane and fill it before the first takes more.
        Join(4);
        PublishAndWait(hub, members, 1);
        Assert.All(members.Skip(FanOutLanes.Fill), m => Assert.Equal("rtsp-tcp-1.1", m.Lane));

        // Past both lanes' fill, viewers go to the less loaded lane: an even split.
        Join(3 * FanOutLanes.Fill - 4);
        PublishAndWait(hub, members, 2);
        var perLane = members.GroupBy(m => m.Lane).ToDictionary(g => g.Key!, g => g.Count());
        Assert.Equal(new Dictionary<string, int> { ["rtsp-tcp-1.0"] = 2 * FanOutLanes.Fill, ["rtsp-tcp-1.1"] = 2 * FanOutLanes.Fill }, perLane);

        // Each pump counted one packet of 100 bytes in its lane's stripe; the fan-out's total adds the stripes.
        long pumps = members.Sum(m => (long)m.Pumps);
        Assert.Equal(pumps, fanOut.Sent(static t => t.Packets));
        Assert.Equal(pumps * 100, fanOut.Sent(static t => t.Bytes));

        foreach (var m in members) fanOut.Leave(m);
        Assert.Equal(0, fanOut.ViewerCount);
    }

    /// <summary>The rule both fan-outs (TCP and UDP) use to place a new viewer.</summary>
    [Theory]
    [InlineData(new int[] { 0, 0 }, 0)]            // all idle: the first
    [InlineData(new int[] { 5, 0 }, 0)]            // a running lane with room, not an idle one
    [InlineData(new int[] { 0, 15 }, 1)]
    [InlineData(new int[] { 16, 0 }, 1)]           // the running lane is full: start the next
    [InlineData(new int[] { 16, 3, 0, 0 }, 1)]     // fill that one before a third
    [InlineData(new int[] { 16, 9, 4, 0 }, 2)]     // of the running lanes with room, the least loaded
    [InlineData(new int[] { 16, 16 }, 0)]          // every lane full: the least loaded, an even split from here
    [InlineData(new int[] { 17, 16 }, 1)]
    [InlineData(new int[] { 20, 18, 16, 16 }, 2)]
    public void ANewViewerFillsARunningLaneFirstThenTheLeastLoaded(int[] viewers, int chosen)
    {
        Assert.Equal(chosen, FanOutLanes.Choose(viewers));
    }
}
