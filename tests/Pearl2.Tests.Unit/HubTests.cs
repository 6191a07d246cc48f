using Pearl2.Media;
using Xunit;

namespace Pearl2.Tests.Unit;

public class HubTests
{
    static void Video(ChannelHub hub, bool key, long pts) => hub.Publish(hub.Pool.Rent(TrackKind.Video, key, pts, default, [0, 0, 1, (byte)(key ? 0x65 : 0x41), 1]));
    static void Audio(ChannelHub hub, long pts) => hub.Publish(hub.Pool.Rent(TrackKind.Audio, true, pts, default, [1, 2, 3]));

    static List<(TrackKind, bool, long)> Drain(HubReader r)
    {
        var list = new List<(TrackKind, bool, long)>();
        while (r.TryRead(out var u)) { list.Add((u.Track, u.IsKeyFrame, u.Pts)); u.Release(); }
        return list;
    }

    sealed class CountingListener(HubReader[] readers) : IPublishListener
    {
        public readonly List<int> QueuedAtEachCall = new();
        public void OnPublished() => QueuedAtEachCall.Add(readers.Min(r => r.Queued));
    }

    [Fact]
    public void APublishListenerIsToldOncePerUnitAfterEveryReaderHasIt()
    {
        var hub = new ChannelHub(0, "t");
        var a = hub.Subscribe("a", 8);
        var b = hub.Subscribe("b", 8);
        var listener = new CountingListener([a, b]);
        hub.AddListener(listener);
        Video(hub, true, 0);
        Audio(hub, 0);
        Video(hub, false, 1);
        Assert.Equal([1, 2, 3], listener.QueuedAtEachCall);   // both readers held the unit before each call
        hub.RemoveListener(listener);
        Video(hub, false, 2);
        Assert.Equal(3, listener.QueuedAtEachCall.Count);
        Drain(a); Drain(b);
    }

    [Fact]
    public void NewReaderStartsAtTheCachedKeyFrame()
    {
        var hub = new ChannelHub(0, "t");
        Video(hub, false, 0);            // before any key frame: not cached
        Video(hub, true, 1);
        Audio(hub, 1);
        Video(hub, false, 2);
        var r = hub.Subscribe("late", 16);
        Video(hub, false, 3);
        Assert.Equal([(TrackKind.Video, true, 1L), (TrackKind.Audio, true, 1L), (TrackKind.Video, false, 2L), (TrackKind.Video, false, 3L)], Drain(r));
    }

    [Fact]
    public void FullQueueLosesWholeGopAndResumesAtNextKeyFrame()
    {
        var hub = new ChannelHub(0, "t");
        var slow = hub.Subscribe("slow", 4);
        var fast = hub.Subscribe("fast", 64);
        Video(hub, true, 0);
        for (int i = 1; i <= 6; i++) Video(hub, false, i); // overflows at the 5th unit
        Audio(hub, 7);
        Video(hub, true, 8);
        Video(hub, false, 9);

        Assert.Equal([(TrackKind.Video, true, 8L), (TrackKind.Video, false, 9L)], Drain(slow));
        Assert.Equal(7, slow.DroppedFrames);
        Assert.Equal(1, slow.Overflows);
        Assert.Equal(10, Drain(fast).Count);  // the fast reader lost nothing
        Assert.Equal(0, fast.DroppedFrames);
    }

    [Fact]
    public void UnitsAreSharedNotCopiedAndReturnToThePool()
    {
        var hub = new ChannelHub(0, "t");
        var a = hub.Subscribe("a", 8);
        var b = hub.Subscribe("b", 8);
        Video(hub, true, 0);
        Assert.True(a.TryRead(out var ua));
        Assert.True(b.TryRead(out var ub));
        Assert.Same(ua, ub);
        ua.Release(); ub.Release();
        a.Dispose(); b.Dispose();
        Video(hub, true, 1); // replaces the cached GOP: the first unit goes back to the pool
        var again = hub.Pool.Rent(TrackKind.Audio, true, 0, default, [1]);
        Assert.Same(ua, again);
        again.Release();
    }

    [Fact]
    public async Task WaitCompletesWhenAUnitArrivesAndOnDispose()
    {
        var hub = new ChannelHub(0, "t");
        var r = hub.Subscribe("w", 8);
        var wait = r.WaitAsync();
        Assert.False(wait.IsCompleted);
        Video(hub, true, 0);
        await wait.AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Single(Drain(r));
        var second = r.WaitAsync();
        r.Dispose();
        await second.AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(0, hub.ReaderCount);
    }

    [Fact]
    public void ReadyCompletesWithParameterSetsFromFirstKeyFrame()
    {
        var hub = new ChannelHub(0, "t");
        hub.Describe(new StreamInfo(640, 360, 30, [], [], 48000, 2, [0x11, 0x90], DateTimeOffset.UnixEpoch));
        Video(hub, false, 0);
        Assert.False(hub.Ready.IsCompleted);
        hub.Publish(hub.Pool.Rent(TrackKind.Video, true, 1, default, [0, 0, 0, 1, 0x67, 0x42, 0, 0x1e, 0, 0, 0, 1, 0x68, 0xce, 0x38, 0x80, 0, 0, 0, 1, 0x65, 0x88]));
        Assert.True(hub.Ready.IsCompletedSuccessfully);
        Assert.Equal(new byte[] { 0x67, 0x42, 0, 0x1e }, hub.Ready.Result.Sps);
        Assert.Equal(new byte[] { 0x68, 0xce, 0x38, 0x80 }, hub.Ready.Result.Pps);
    }

    /// <summary>A format that writes the unit's pts and a per-format mark, counting what it packaged.</summary>
    sealed class MarkPackager(byte mark) : IUnitPackager
    {
        public int Packaged;

        public void Package(MediaUnit unit, int slot)
        {
            var d = unit.RentSlot(slot, 2);
            d[0] = mark; d[1] = (byte)unit.Pts;
            unit.CommitSlot(slot, 2, unit.Pts);
            Packaged++;
        }
    }

    [Fact]
    public void FormatsArePackagedOnlyWhileSomeoneHoldsThemStartingWithTheCachedGop()
    {
        var hub = new ChannelHub(0, "t");
        var rtp = new MarkPackager(1);
        Video(hub, true, 1);
        Video(hub, false, 2);                                   // nobody reads a format yet: nothing is packaged
        Assert.Empty(hub.Formats);

        var first = hub.Acquire("rtp", () => rtp);              // the first reader: the cached GOP is packaged at once
        Assert.Equal(2, rtp.Packaged);
        var reader = hub.Subscribe("r", 16);
        Video(hub, false, 3);
        var second = hub.Acquire("rtp", () => throw new InvalidOperationException("shared, not made again"));
        Assert.Equal(first.Slot, second.Slot);
        var units = new List<(byte, byte)>();
        while (reader.TryRead(out var u)) { var b = u.Slot(first.Slot).Span; units.Add((b[0], b[1])); u.Release(); }
        Assert.Equal([((byte)1, (byte)1), ((byte)1, (byte)2), ((byte)1, (byte)3)], units);
        Assert.Equal(["rtp"], hub.Formats);

        first.Dispose();
        first.Dispose();                                        // twice is once
        Video(hub, false, 4);
        Assert.Equal(4, rtp.Packaged);                          // still held by the second
        second.Dispose();
        Video(hub, false, 5);
        Assert.Equal(4, rtp.Packaged);                          // the last left: no more packaging
        Assert.Empty(hub.Formats);
        reader.Dispose();
    }

    [Fact]
    public void ThereIsNoCapOnFormatsAndADroppedFormatsSlotIsTakenAgain()
    {
        var hub = new ChannelHub(0, "t");
        Video(hub, true, 1);
        var leases = Enumerable.Range(0, 12).Select(i => hub.Acquire($"f{i}", () => new MarkPackager((byte)i))).ToList();
        Assert.Equal(Enumerable.Range(0, 12), leases.Select(l => l.Slot));
        var r = hub.Subscribe("r", 8);
        Video(hub, false, 2);
        Assert.True(r.TryRead(out var cached));
        Assert.True(r.TryRead(out var fresh));
        foreach (var l in leases)
        {
            Assert.Equal((byte)l.Slot, cached.Slot(l.Slot).Span[0]);
            Assert.Equal((byte)2, fresh.Slot(l.Slot).Span[1]);
        }
        cached.Release(); fresh.Release();
        leases[3].Dispose();
        using var again = hub.Acquire("other", () => new MarkPackager(99));
        Assert.Equal(3, again.Slot);
        foreach (var l in leases) l.Dispose();
        r.Dispose();
    }
}
