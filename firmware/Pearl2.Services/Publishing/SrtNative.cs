using System.Net;
using System.Runtime.InteropServices;

namespace Pearl2.Services.Publishing;

/// <summary>
/// Debian's libsrt (libsrt1.5-gnutls: libsrt-gnutls.so.1.5), as far as a live MPEG-TS sender needs it. The option
/// numbers are SRT_SOCKOPT's (srt.h); the statistics are read from SRT_TRACEBSTATS (CBytePerfMon, srt.h of 1.5) at
/// the offsets of the fields we show, checked against a live connection by the unit tests.
/// </summary>
public static partial class SrtNative
{
    const string Lib = "libsrt-gnutls.so.1.5";
    public const int Error = -1;
    public const int SndSyn = 1, RcvSyn = 2, SndTimeo = 13, Sender = 21, Latency = 23, Passphrase = 26, PbKeyLen = 27, ConnTimeo = 36,
        StreamId = 46, TransType = 50, PeerIdleTimeo = 55;
    public const int TransTypeLive = 0;
    /// <summary>SRT_SOCKSTATUS: connected, broken, closed and the like.</summary>
    public const int StateConnected = 5, StateBroken = 6, StateClosing = 7, StateClosed = 8, StateNonexist = 9;
    /// <summary>SRT_EASYNCSND: the send buffer is full (non-blocking send).</summary>
    public const int ErrAsyncSend = 6001, ErrConnRejected = 1002, ErrNoServer = 1001;
    /// <summary>The largest payload of one live-mode message: 7 TS packets.</summary>
    public const int LivePayload = 1316;

    // Offsets in SRT_TRACEBSTATS (LP64).
    public const int StatsSize = 1024, OffPktSentTotal = 8, OffPktSndLossTotal = 24, OffPktRetransTotal = 32, OffPktSndDropTotal = 64,
        OffByteSentTotal = 80, OffMsRtt = 328, OffMbpsBandwidth = 336;

    [LibraryImport(Lib, EntryPoint = "srt_startup")] public static partial int Startup();
    [LibraryImport(Lib, EntryPoint = "srt_create_socket")] public static partial int CreateSocket();
    [LibraryImport(Lib, EntryPoint = "srt_setsockflag")] public static unsafe partial int SetFlag(int s, int opt, void* value, int len);
    [LibraryImport(Lib, EntryPoint = "srt_getsockflag")] public static unsafe partial int GetFlag(int s, int opt, void* value, int* len);
    [LibraryImport(Lib, EntryPoint = "srt_connect")] public static unsafe partial int Connect(int s, byte* addr, int len);
    [LibraryImport(Lib, EntryPoint = "srt_rendezvous")] public static unsafe partial int Rendezvous(int s, byte* local, int localLen, byte* remote, int remoteLen);
    [LibraryImport(Lib, EntryPoint = "srt_bind")] public static unsafe partial int Bind(int s, byte* addr, int len);
    [LibraryImport(Lib, EntryPoint = "srt_listen")] public static partial int Listen(int s, int backlog);
    [LibraryImport(Lib, EntryPoint = "srt_accept")] public static unsafe partial int Accept(int s, byte* addr, int* len);
    [LibraryImport(Lib, EntryPoint = "srt_sendmsg2")] public static unsafe partial int SendMsg2(int s, byte* buf, int len, void* ctrl);
    [LibraryImport(Lib, EntryPoint = "srt_recvmsg")] public static unsafe partial int RecvMsg(int s, byte* buf, int len);
    [LibraryImport(Lib, EntryPoint = "srt_bstats")] public static unsafe partial int BStats(int s, byte* stats, int clear);
    [LibraryImport(Lib, EntryPoint = "srt_getsockstate")] public static partial int State(int s);
    [LibraryImport(Lib, EntryPoint = "srt_close")] public static partial int Close(int s);
    [LibraryImport(Lib, EntryPoint = "srt_getlasterror")] public static unsafe partial int LastError(int* errno);
    [LibraryImport(Lib, EntryPoint = "srt_getlasterror_str")] private static partial nint LastErrorStr();
    [LibraryImport(Lib, EntryPoint = "srt_getrejectreason")] public static partial int RejectReason(int s);
    [LibraryImport(Lib, EntryPoint = "srt_setloglevel")] private static partial void SetLogLevel(int level);
    /// <summary>SRT_REJECT_REASON: the receiver's passphrase differs, or it wants one (or none).</summary>
    public const int RejectBadSecret = 10, RejectUnsecure = 11, RejectTimeout = 16;

    static int _started;

    /// <summary>srt_startup once per process (it starts libsrt's threads); false when the library is not there.</summary>
    public static bool EnsureStarted(out string? why)
    {
        why = null;
        if (Volatile.Read(ref _started) == 1) return true;
        try
        {
            if (Startup() < 0) { why = "srt_startup failed: " + LastErrorText(); return false; }
            // libsrt's own log goes to stderr unstructured: only its critical lines; what matters reaches our log through the errors.
            SetLogLevel(2);
            Volatile.Write(ref _started, 1);
            return true;
        }
        catch (DllNotFoundException) { why = $"libsrt is not installed ({Lib}: apt-get install libsrt1.5-gnutls)"; return false; }
    }

    public static string LastErrorText() => Marshal.PtrToStringUTF8(LastErrorStr()) ?? "unknown SRT error";

    public static unsafe int LastErrorCode() => LastError(null);

    public static unsafe void SetInt(int s, int opt, int value, string name)
    {
        if (SetFlag(s, opt, &value, sizeof(int)) < 0) throw new IOException($"SRT option {name}={value}: {LastErrorText()}");
    }

    public static unsafe void SetBool(int s, int opt, bool value, string name)
    {
        byte b = (byte)(value ? 1 : 0);
        if (SetFlag(s, opt, &b, 1) < 0) throw new IOException($"SRT option {name}={value}: {LastErrorText()}");
    }

    public static unsafe void SetString(int s, int opt, string value, string name)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(value);
        fixed (byte* p = bytes)
            if (SetFlag(s, opt, p, bytes.Length) < 0) throw new IOException($"SRT option {name}: {LastErrorText()}");
    }

    public static unsafe int GetInt(int s, int opt)
    {
        int v = 0, len = sizeof(int);
        return GetFlag(s, opt, &v, &len) < 0 ? -1 : v;
    }

    /// <summary>A sockaddr_in or sockaddr_in6 for an endpoint, as libsrt takes it.</summary>
    public static byte[] SockAddr(IPEndPoint ep)
    {
        var sa = ep.Serialize();
        var bytes = new byte[sa.Size];
        for (int i = 0; i < sa.Size; i++) bytes[i] = sa[i];
        return bytes;
    }

    /// <summary>Sender figures of a connected socket: RTT, lost, retransmitted and dropped packets, the estimated bandwidth.</summary>
    public static unsafe SrtStats? Stats(int s)
    {
        byte* buf = stackalloc byte[StatsSize];
        new Span<byte>(buf, StatsSize).Clear();
        if (BStats(s, buf, 0) < 0) return null;
        return new SrtStats(*(double*)(buf + OffMsRtt), *(int*)(buf + OffPktSndLossTotal), *(int*)(buf + OffPktRetransTotal),
            *(int*)(buf + OffPktSndDropTotal), *(double*)(buf + OffMbpsBandwidth)) { PacketsSent = *(long*)(buf + OffPktSentTotal), BytesSent = *(long*)(buf + OffByteSentTotal) };
    }
}
