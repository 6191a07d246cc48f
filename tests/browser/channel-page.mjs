// node channel-page.mjs PAGE_URL USER PASSWORD
// Opens a channel's own page (GET / on its HTTP port) in headless Chromium (/usr/bin/chromium): once without the
// login, once with it (the browser answers the Digest challenge), and prints JSON: the status of each, how far the
// page's <video> advanced in 4 s, the picture's size, the stream URLs the page fetched, player errors.
import { chromium } from 'playwright-core';

const [url, username, password] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--no-first-run', '--disable-quic', '--autoplay-policy=no-user-gesture-required'],
});
const result = { errors: [], requests: [] };
try {
  // Without the login: Chromium gets the 401 and its challenges (Playwright turns a challenge nobody answers into an error).
  const anonymous = await browser.newContext();
  try { result.withoutLogin = (await (await anonymous.newPage()).goto(url)).status(); }
  catch (e) { result.withoutLogin = /ERR_INVALID_AUTH_CREDENTIALS/.test(String(e)) ? 401 : String(e); }
  await anonymous.close();

  const context = await browser.newContext({ httpCredentials: { username, password }, viewport: { width: 1000, height: 800 } });
  const page = await context.newPage();
  page.on('pageerror', e => result.errors.push('page: ' + e.message));
  page.on('request', r => { const p = new URL(r.url()).pathname; if (p !== '/') result.requests.push(p + new URL(r.url()).search.replace(/token=[0-9a-f]+/, 'token=T')); });
  result.withLogin = (await page.goto(url)).status();
  result.title = await page.title();
  await page.waitForFunction(() => document.getElementById('v').currentTime > 0.2, null, { timeout: 20000 });
  const t0 = await page.evaluate(() => document.getElementById('v').currentTime);
  await page.waitForTimeout(4000);
  result.advanced = await page.evaluate(() => document.getElementById('v').currentTime) - t0;
  Object.assign(result, await page.evaluate(() => ({ width: document.getElementById('v').videoWidth, height: document.getElementById('v').videoHeight })));
  result.errors.push(...await page.evaluate(() => window.playerErrors));
} catch (e) {
  result.errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
