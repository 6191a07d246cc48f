using System.Text;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// RTSP/UDP SETUP abused (issue 13 item 9): thousands of SETUPs on one connection, and a second connection that names a
/// playing viewer's client ports from the same address. What is asserted is what the attacker's and the viewer's
/// sockets saw, and the log.
/// </summary>
public sealed class UdpSetupAbuseTests(ITestOutputHelper output)
{
    const int Setups = 3000;
    const int Cap = 16; // RtspConnection.MaxSetupsPerSession

    [Fact]
    public async Task ThousandsOfSetupsOnOneConnectionAreCappedAndTheConnectionStillAnswers()
    {
        await using var device = await Pearl2dProcess.StartAsync("""
            { "channels": [ { "name": "T", "video": { "width": 320, "height": 240 }, "audio": { "enabled": false } } ] }
            """, channels: 1);
        await using var attacker = await RtspTestClient.ConnectAsync("127.0.0.1", device.RtspBase);
        string setupUrl = device.Url(1) + "/trackID=0";
        var sb = new StringBuilder();
        for (int i = 0; i < Setups; i++)
            sb.Append("SETUP ").Append(setupUrl).Append(" RTSP/1.0\r\nCSeq: ").Append(i + 1)
              .Append("\r\nTransport: RTP/AVP;unicast;client_port=").Append(20000 + 2 * i).Append('-').Append(20001 + 2 * i).Append("\r\n\r\n");
        var sending = attacker.SendRawAsync(Encoding.ASCII.GetBytes(sb.ToString())); // pipelined: read while it is written
        int ok = 0, refused = 0, other = 0;
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        for (int i = 0; i < Setups; i++)
        {
            switch (RtspTestClient.Status(await attacker.ReadResponseAsync(deadline.Token)))
            {
                case 200: ok++; break;
                case 455: refused++; break;
                default: other++; break;
            }
        }
        await sending;
        output.WriteLine($"200: {ok}, 455: {refused}, other: {other}");
        Assert.Equal(Cap, ok);
        Assert.Equal(Setups - Cap, refused);
        Assert.Equal(0, other);
        Assert.Equal(200, RtspTestClient.Status(await attacker.RequestAsync("OPTIONS", device.Url(1))));

        // An honest viewer is served beside it, and the flood cost a bounded number of log lines.
        await using var viewer = await RtspTestClient.ConnectAsync("127.0.0.1", device.RtspBase);
        await viewer.PlayUdpAsync(device.Url(1));
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        await viewer.ReceiveAsync(stop.Token);
        Assert.True(viewer.VideoFrames > 30, $"the viewer got {viewer.VideoFrames} frames in 3 s");
        await device.WaitForLogAsync("rtsp.setup_limit channel=1", TimeSpan.FromSeconds(10));
        Assert.Equal(1, device.CountInLog("rtsp.setup_limit"));
        Assert.InRange(device.CountInLog("rtsp.setup channel=1"), Cap + 1, Cap + 1); // the attacker's 16 and the viewer's one
    }

    [Fact]
    public async Task ASecondConnectionNamingTheSamePortsDoesNotTakeTheFirstViewersReceiverReports()
    {
        await using var device = await Pearl2dProcess.StartAsync("""
            { "channels": [ { "name": "T", "video": { "width": 320, "height": 240 }, "audio": { "enabled": false } } ], "rtsp": { "port": 554, "sessionTimeoutSeconds": 5 } }
            """, channels: 1);
        await using var viewer = await RtspTestClient.ConnectAsync("127.0.0.1", device.RtspBase);
        await viewer.PlayUdpAsync(device.Url(1));
        int port = viewer.UdpPort!.Value;

        // Another connection from the same address sets up the very same client ports, then goes away.
        await using (var intruder = await RtspTestClient.ConnectAsync("127.0.0.1", device.RtspBase))
        {
            var reply = await intruder.RequestAsync("SETUP", device.Url(1) + "/trackID=0", $"Transport: RTP/AVP;unicast;client_port={port}-{port + 1}");
            Assert.Equal(200, RtspTestClient.Status(reply));
            await viewer.SendReceiverReportAsync();
            await Task.Delay(1500);
        }
        await device.WaitForLogAsync("rtsp.disconnect channel=1", TimeSpan.FromSeconds(10));

        // The viewer keeps its session alive with receiver reports only (no RTSP request) for well past the timeout.
        using var stop = new CancellationTokenSource();
        var receiving = Task.Run(() => viewer.ReceiveAsync(stop.Token));
        for (int i = 0; i < 10; i++)
        {
            await viewer.SendReceiverReportAsync();
            await Task.Delay(1000);
        }
        long before = Interlocked.Read(ref viewer.VideoFrames);
        await Task.Delay(1500);
        long after = Interlocked.Read(ref viewer.VideoFrames);
        stop.Cancel();
        await receiving;
        output.WriteLine($"frames: {after}, in the last 1.5 s: {after - before}");
        Assert.Equal(0, device.CountInLog("reason=\"session timeout\""));
        Assert.True(after - before > 15, $"the viewer got {after - before} frames in its last 1.5 s");
    }
}
