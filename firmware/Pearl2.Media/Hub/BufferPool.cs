namespace Pearl2.Media;

/// <summary>
/// Byte arrays in power-of-two size classes for encoded units and their packaged forms. Unlike
/// ArrayPool.Shared it keeps what a burst returns (a whole GOP leaves the cache at every key frame), so the
/// streaming path allocates nothing in steady state; each class is bounded.
/// </summary>
public static class BufferPool
{
    const int MinShift = 10, MaxShift = 24, PerClass = 1024; // 1 KiB … 16 MiB
    static readonly Stack<byte[]>[] Classes = Enumerable.Range(0, MaxShift - MinShift + 1).Select(_ => new Stack<byte[]>()).ToArray();

    static int ClassOf(int size)
    {
        int shift = Math.Max(MinShift, 32 - int.LeadingZeroCount(Math.Max(1, size) - 1));
        return shift - MinShift;
    }

    public static byte[] Rent(int size)
    {
        int c = ClassOf(size);
        if (c >= Classes.Length) return new byte[size];
        var stack = Classes[c];
        lock (stack)
            if (stack.TryPop(out var b)) return b;
        return new byte[1 << (c + MinShift)];
    }

    public static void Return(byte[] buffer)
    {
        if (buffer.Length == 0 || (buffer.Length & (buffer.Length - 1)) != 0) return;
        int c = ClassOf(buffer.Length);
        if (c >= Classes.Length) return;
        var stack = Classes[c];
        lock (stack)
            if (stack.Count < PerClass) stack.Push(buffer);
    }
}
