using System.Text.Json.Nodes;
using Microsoft.Playwright;
using Xunit;
using Xunit.Abstractions;

namespace Pearl2.Tests.Integration;

/// <summary>
/// The admin panel as a user meets it, in Debian's Chromium driven by Playwright for .NET: the first visit sets the
/// admin password, the dashboard shows live previews, Record makes a file that ffprobe plays, a changed size in the
/// settings reaches RTSP without a restart, a bad value is shown under its field, a viewer login set there makes RTSP
/// ask for it; an operator cannot open settings, users or firmware, a viewer sees previews only. A screenshot of each
/// page goes to out/test-artifacts/.
/// </summary>
public sealed class AdminPanelTests(ITestOutputHelper output)
{
    static readonly string Artifacts = Path.Combine(Peers.RepoRoot, "out", "test-artifacts");

    static async Task<IBrowser> LaunchAsync(IPlaywright playwright) => await playwright.Chromium.LaunchAsync(new()
    {
        ExecutablePath = "/usr/bin/chromium",
        Headless = true,
        Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
    });

    async Task ShotAsync(IPage page, string name)
    {
        Directory.CreateDirectory(Artifacts);
        var path = Path.Combine(Artifacts, $"admin-{name}.png");
        await page.ScreenshotAsync(new() { Path = path, FullPage = true });
        output.WriteLine($"screenshot: {path}");
    }

    static async Task<string> ProbeSizeAsync(string url) =>
        (await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v", "-show_entries", "stream=width,height", "-of", "csv=p=0", url], TimeSpan.FromSeconds(30))).Stdout.Trim();

    static async Task LogInAsync(IPage page, string user, string password)
    {
        await page.FillAsync("#login-user", user);
        await page.FillAsync("#login-password", password);
        await page.ClickAsync("#login-submit");
        await page.WaitForSelectorAsync("#tile-1");
    }

    [Fact]
    public async Task FirstRunDashboardRecordSettingsAndRolesInChromium()
    {
        var (device, api, _) = await AdminApiTests.StartAsync();
        await using var _d = device;
        using var _a = api;
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await LaunchAsync(playwright);
        var context = await browser.NewContextAsync(new() { ViewportSize = new() { Width = 1100, Height = 900 } });
        var page = await context.NewPageAsync();
        // Script errors, and answers the page did not expect (the 400/401/403 it shows are part of the test).
        var pageErrors = new List<string>();
        page.PageError += (_, e) => pageErrors.Add(e);
        page.Response += (_, r) => { if (r.Status is 404 or >= 500) pageErrors.Add($"{r.Status} {r.Url}"); };

        // First visit: the setup form, and nothing else.
        await page.GotoAsync(api.Base + "/");
        await page.WaitForSelectorAsync("#setup-password");
        Assert.True(await page.IsHiddenAsync("#nav"));
        await ShotAsync(page, "1-setup");
        await page.FillAsync("#setup-password", AdminApiTests.AdminPassword);
        await page.FillAsync("#setup-again", AdminApiTests.AdminPassword);
        await page.ClickAsync("#setup-submit");

        // The dashboard: a tile per channel, with a live preview.
        await page.WaitForSelectorAsync("#tile-2");
        await page.WaitForFunctionAsync("() => ['preview-1', 'preview-2'].every(id => document.getElementById(id)?.naturalWidth > 0)", null, new() { Timeout = 20000 });
        Assert.Equal(320, await page.EvalOnSelectorAsync<int>("#preview-1", "i => i.naturalWidth"));
        Assert.Contains("Hall", await page.TextContentAsync("#tile-1 h2"));
        Assert.Contains($"rtsp://", await page.TextContentAsync("#tile-1 .urls"));
        // Previews keep coming: the picture changes (the test pattern's counter runs).
        string first = await page.GetAttributeAsync("#preview-1", "src") ?? "";
        await page.WaitForFunctionAsync($"() => (document.getElementById('preview-1')?.src ?? '{first}') !== '{first}'", null, new() { Timeout = 10000 });
        // The audio meter moves with the test tone (-20 dBFS, beeps at -6).
        await page.WaitForFunctionAsync("() => { const d = document.getElementById('meter-1')?.dataset.dbfs; return d && Number(d.split(',')[0]) > -25; }", null, new() { Timeout = 10000 });
        await ShotAsync(page, "2-dashboard");
        // On a phone: the tiles stack and nothing is wider than the screen.
        await page.SetViewportSizeAsync(390, 844);
        Assert.True(await page.EvaluateAsync<bool>("() => document.documentElement.scrollWidth <= 390"), "the dashboard is wider than a phone");
        await ShotAsync(page, "2-dashboard-phone");
        await page.SetViewportSizeAsync(1100, 900);

        // Record from the dashboard: the tile shows it, and the file plays.
        await page.ClickAsync("#record-1");
        await page.WaitForFunctionAsync("() => document.querySelector('#tile-1 .rec')?.textContent.startsWith('● Recording')", null, new() { Timeout = 10000 });
        await Task.Delay(3000);
        await ShotAsync(page, "3-recording");
        await page.ClickAsync("#record-1");
        await page.WaitForFunctionAsync("() => (e => e && !e.textContent.startsWith('●'))(document.querySelector('#tile-1 .rec'))", null, new() { Timeout = 10000 });
        var file = Directory.GetFiles(Path.Combine(device.DataDir, "recordings"), "Hall_*.mp4").Single();
        var probe = await Peers.RunAsync("ffprobe", ["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0", file], TimeSpan.FromSeconds(30));
        output.WriteLine($"{Path.GetFileName(file)}: {probe.Stdout.Trim()}");
        Assert.StartsWith("h264,", probe.Stdout.Trim());
        Assert.True(int.Parse(probe.Stdout.Trim().Split(',')[1]) >= 45, probe.Stdout);

        // The recordings page lists it with its size and duration.
        await page.GotoAsync(api.Base + "/#recordings");
        await page.WaitForSelectorAsync($"tr[data-file='{Path.GetFileName(file)}']");
        await ShotAsync(page, "4-recordings");

        // Settings: a bad value is shown under its field and nothing changes; then channel 2 at a new size, live.
        await page.GotoAsync(api.Base + "/#settings");
        await page.WaitForSelectorAsync("#f-channels-1--video-width");
        await page.FillAsync("#f-channels-1--video-width", "641");
        await page.ClickAsync("#settings-save");
        var error = page.Locator("[data-error-for='channels[1].video.width']");
        await error.WaitForAsync();
        await page.WaitForFunctionAsync("() => document.querySelector(\"[data-error-for='channels[1].video.width']\")?.textContent.length > 0");
        Assert.Contains("641 is not an even number", await error.TextContentAsync());
        await ShotAsync(page, "5-settings-error");
        Assert.Equal("640,360", await ProbeSizeAsync(device.Url(2)));
        await page.FillAsync("#f-channels-1--video-width", "480");
        await page.FillAsync("#f-channels-1--video-height", "270");
        await page.ClickAsync("#settings-save");
        await page.WaitForFunctionAsync("() => document.getElementById('settings-result')?.textContent.startsWith('Applied')", null, new() { Timeout = 20000 });
        Assert.Equal("480,270", await ProbeSizeAsync(device.Url(2)));
        Assert.Equal(1, device.CountInLog("pearl2d.start "));   // no restart

        // A viewer login on channel 1 from the settings: RTSP asks for it at once.
        await page.CheckAsync("#f-login-0");
        await page.FillAsync("#f-channels-0--auth-username", "viewer");
        await page.FillAsync("#f-channels-0--auth-password", "door-pw-1");
        await page.ClickAsync("#settings-save");
        await page.WaitForFunctionAsync("() => document.getElementById('settings-result')?.textContent.startsWith('Applied (config version 3')", null, new() { Timeout = 20000 });
        var denied = await Peers.RunAsync("ffprobe", ["-v", "error", "-rtsp_transport", "tcp", device.Url(1)], TimeSpan.FromSeconds(30));
        Assert.Contains("401", denied.Stderr);
        Assert.Equal("320,240", await ProbeSizeAsync(device.Url(1).Replace("rtsp://", "rtsp://viewer:door-pw-1@")));

        // Users: an operator and a viewer, added in the settings.
        foreach (var (name, role, password) in new[] { ("op", "operator", "operator pw"), ("watch", "viewer", "viewer pw 3") })
        {
            await page.FillAsync("#user-name", name);
            await page.SelectOptionAsync("#user-role", role);
            await page.FillAsync("#user-password", password);
            await page.ClickAsync("#user-save");
            await page.WaitForSelectorAsync($"#users td:text-is('{name}')");
        }
        await ShotAsync(page, "6-settings");

        // The firmware and system pages.
        await page.GotoAsync(api.Base + "/#firmware");
        await page.WaitForSelectorAsync("#firmware-info dd");
        Assert.Contains("0.1.0 (Pearl API: 4.25.0)", await page.TextContentAsync("#firmware-info"));
        await ShotAsync(page, "7-firmware");
        await page.GotoAsync(api.Base + "/#system");
        await page.WaitForFunctionAsync("() => document.getElementById('log')?.textContent.includes('audit.')", null, new() { Timeout = 10000 });
        Assert.Contains("admin panel HTTP", await page.TextContentAsync("#ports"));
        await ShotAsync(page, "8-system");

        // An operator: no settings, users or firmware, in the page and behind it.
        await page.ClickAsync("#logout");
        await page.WaitForSelectorAsync("#login-user");
        await LogInAsync(page, "op", "operator pw");
        Assert.False(await page.IsVisibleAsync("#nav a[href='#settings']"));
        Assert.False(await page.IsVisibleAsync("#nav a[href='#firmware']"));
        Assert.True(await page.IsVisibleAsync("#record-1"));
        await page.GotoAsync(api.Base + "/#settings");
        await page.WaitForSelectorAsync("text=cannot open this page");
        Assert.Equal(403, await page.EvaluateAsync<int>("async () => (await fetch('/api/v2.0/x-pearl2/config', { headers: { 'X-Pearl2-Panel': '1' } })).status"));
        Assert.Equal(403, await page.EvaluateAsync<int>("async () => (await fetch('/api/v2.0/x-pearl2/users', { headers: { 'X-Pearl2-Panel': '1' } })).status"));
        Assert.Equal(403, await page.EvaluateAsync<int>("async () => (await fetch('/api/v2.0/x-pearl2/firmware', { headers: { 'X-Pearl2-Panel': '1' } })).status"));
        await ShotAsync(page, "9-operator");

        // A viewer: previews, no buttons.
        await page.GotoAsync(api.Base + "/#dashboard");
        await page.ClickAsync("#logout");
        await page.WaitForSelectorAsync("#login-user");
        await LogInAsync(page, "watch", "viewer pw 3");
        await page.WaitForFunctionAsync("() => document.getElementById('preview-2')?.naturalWidth > 0", null, new() { Timeout = 20000 });
        Assert.False(await page.IsVisibleAsync("#record-1"));
        Assert.False(await page.IsVisibleAsync("#streaming-toggle"));
        Assert.False(await page.IsVisibleAsync("#nav a[href='#recordings']"));
        // Channel 1 has its own viewer login now, so a panel viewer gets no picture of it.
        Assert.Equal(403, await page.EvaluateAsync<int>("async () => (await fetch('/api/v2.0/channels/1/preview', { headers: { 'X-Pearl2-Panel': '1' } })).status"));
        Assert.Equal(403, await page.EvaluateAsync<int>("async () => (await fetch('/api/v2.0/recorders/1/control/start', { method: 'POST', headers: { 'X-Pearl2-Panel': '1' } })).status"));
        await ShotAsync(page, "10-viewer");

        Assert.Empty(pageErrors);
    }

    /// <summary>
    /// The firmware page through a real update (the update tests' signed release on a slow server, pearl2d under the
    /// host boot loader): "Check now" shows the download's progress bar moving, then the device reboots into 0.2.0,
    /// which the page shows with the last result after logging in again (sessions do not outlive a restart).
    /// </summary>
    [Fact]
    public async Task TheFirmwarePageShowsARealUpdatesProgressAndTheNewVersion()
    {
        await using var cycle = await UpdateCycle.StartAsync();
        await cycle.PublishAsync("0.2.0", UpdateCycle.Release(6 << 20));   // 6 MiB to fetch at 1.5 MB/s: a few seconds of progress
        await using var slow = new SlowFileServer(cycle.Www, 1_500_000);
        // Updates off at the start: the update server is set in the settings page, which applies it without a restart.
        var device = await Pearl2dProcess.StartInAsync(null, cycle.Config.Replace($"\"http://127.0.0.1:{cycle.Port}/\"", "null"), 1, cycle.Slots);
        await using var _d = device;
        var api = new AdminClient("127.0.0.1", JsonNode.Parse(File.ReadAllText(device.ConfigPath))!["admin"]!["port"]!.GetValue<int>());
        await AdminApiTests.SetupAsync(api);

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await LaunchAsync(playwright);
        var page = await (await browser.NewContextAsync(new() { ViewportSize = new() { Width = 1000, Height = 700 } })).NewPageAsync();
        await page.GotoAsync(api.Base + "/#settings");
        await page.FillAsync("#login-user", "admin");
        await page.FillAsync("#login-password", AdminApiTests.AdminPassword);
        await page.ClickAsync("#login-submit");
        await page.WaitForSelectorAsync("#f-update-url");
        await page.FillAsync("#f-update-url", $"http://127.0.0.1:{slow.Port}/");
        await page.ClickAsync("#settings-save");
        await page.WaitForFunctionAsync("() => document.getElementById('settings-result')?.textContent.startsWith('Applied')", null, new() { Timeout = 20000 });
        await device.WaitForLogAsync($"update.reconfigured url=http://127.0.0.1:{slow.Port}/ running=yes", TimeSpan.FromSeconds(10));
        await page.GotoAsync(api.Base + "/#firmware");
        await page.WaitForSelectorAsync("#firmware-check");
        // The page draws its facts after its first fetch, which a loaded machine may answer after the button is there.
        await page.WaitForFunctionAsync("() => (document.getElementById('firmware-info') || {}).textContent?.includes('(Pearl API:')", null, new() { Timeout = 20000 });
        Assert.Contains("0.1.0 (Pearl API: 4.25.0)", await page.TextContentAsync("#firmware-info"));
        await page.ClickAsync("#firmware-check");

        // The bar appears and moves while the chunks arrive.
        await page.WaitForFunctionAsync("() => { const p = document.getElementById('firmware-progress'); return p && !p.hidden && p.value > 0; }", null, new() { Timeout = 30000 });
        double early = await page.EvalOnSelectorAsync<double>("#firmware-progress", "p => p.value");
        Assert.Contains("downloading 0.2.0", await page.TextContentAsync("#firmware-phase"));
        await ShotAsync(page, "11-firmware-progress");
        await page.WaitForFunctionAsync($"() => (document.getElementById('firmware-progress')?.value ?? 0) > {early.ToString(System.Globalization.CultureInfo.InvariantCulture)}", null, new() { Timeout = 30000 });

        // The device reboots (an exec under the host boot loader) into 0.2.0, which confirms itself.
        var until = DateTime.UtcNow.AddSeconds(90);
        while (device.CountInLog("update.confirmed version=0.2.0") == 0 && DateTime.UtcNow < until) await Task.Delay(200);
        await device.WaitForLogAsync("update.confirmed version=0.2.0", Pearl2dProcess.LogLag);
        await page.WaitForSelectorAsync("#login-user", new() { Timeout = 30000 });
        await page.FillAsync("#login-user", "admin");
        await page.FillAsync("#login-password", AdminApiTests.AdminPassword);
        await page.ClickAsync("#login-submit");
        await page.GotoAsync(api.Base + "/#firmware");
        await page.WaitForFunctionAsync("() => (document.getElementById('firmware-info') || {}).textContent?.includes('0.2.0 (Pearl API: 4.26.0)')", null, new() { Timeout = 20000 });
        Assert.Contains("b", await page.TextContentAsync("#firmware-info"));
        await ShotAsync(page, "12-firmware-updated");
    }
}
