// node play.mjs STREAM_URL flv|mpegts SCREENSHOT.png
// Serves page.html and mpegts.js from another origin, plays the stream in headless Chromium (/usr/bin/chromium),
// and prints JSON: how far <video>.currentTime advanced in 6 s, the picture's size and colours, player errors.
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const [src, type, shot] = process.argv.slice(2);
const here = path.dirname(new URL(import.meta.url).pathname);
const files = { '/page.html': ['text/html', path.join(here, 'page.html')],
                '/mpegts.js': ['text/javascript', path.join(here, 'node_modules/mpegts.js/dist/mpegts.js')] };
const server = http.createServer((req, res) => {
  const f = files[new URL(req.url, 'http://x').pathname];
  if (!f) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'Content-Type': f[0] });
  fs.createReadStream(f[1]).pipe(res);
});
await new Promise(r => server.listen(0, '127.0.0.1', r));
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--no-first-run', '--disable-quic', '--autoplay-policy=no-user-gesture-required'], // Playwright gives it a fresh temporary profile
});
const result = { errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 640, height: 360 } });
  page.on('pageerror', e => result.errors.push('page: ' + e.message));
  await page.goto(`http://127.0.0.1:${server.address().port}/page.html?type=${type}&src=${encodeURIComponent(src)}`);
  result.mseH264 = await page.evaluate(() => window.mseH264);
  await page.waitForFunction(() => document.getElementById('v').currentTime > 0.2, null, { timeout: 20000 });
  const t0 = await page.evaluate(() => document.getElementById('v').currentTime);
  await page.waitForTimeout(6000);
  const t1 = await page.evaluate(() => document.getElementById('v').currentTime);
  result.advanced = t1 - t0;
  result.paused = await page.evaluate(() => document.getElementById('v').paused);
  Object.assign(result, await page.evaluate(() => window.frameStats()));
  result.errors.push(...await page.evaluate(() => window.playerErrors));
  await page.locator('#v').screenshot({ path: shot });
} catch (e) {
  result.errors.push(String(e));
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(result));
