// Usage: node play.mjs <hls|dash> <url> <seconds> [ll-seconds]
// Opens player.html in headless Chromium (Debian's, or $CHROMIUM), plays <url>, and exits 0
// once the video's currentTime has advanced past <seconds>; exits 1 with the page's state
// and events otherwise. Chromium runs with background networking off, so it only talks to
// the URL under test. With [ll-seconds], the player runs in its low-latency mode and, once
// <seconds> have played, samples how far behind live it is every 500 ms for [ll-seconds]
// (`latencies`, seconds) and counts stalls.
import { launch } from './launch.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [kind, url, seconds = '5', measure = ''] = process.argv.slice(2);
if (!['hls', 'dash'].includes(kind) || !url) {
  console.error('usage: node play.mjs <hls|dash> <url> [seconds]');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const page_url = `file://${path.join(here, 'player.html')}?kind=${kind}&url=${encodeURIComponent(url)}${measure ? '&ll=1' : ''}`;
const browser = await launch(['--allow-file-access-from-files']);
let code = 0;
try {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error(`page console: ${m.text()}`); });
  await page.goto(page_url);
  // Live playback starts wherever the live edge is; measure how far it advances from there.
  await page.waitForFunction(() => document.getElementById('video').currentTime > 0, null, { timeout: 60_000, polling: 100 });
  const started = await page.evaluate(() => document.getElementById('video').currentTime);
  await page.waitForFunction((target) => document.getElementById('video').currentTime > target, started + Number(seconds), { timeout: 60_000, polling: 250 });
  const latencies = [];
  let stalls_before = 0;
  if (measure) {
    stalls_before = await page.evaluate(() => window.stalls);
    const until = Date.now() + Number(measure) * 1000;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 500));
      const l = await page.evaluate(() => window.latency());
      if (l !== null) latencies.push(l);
    }
  }
  const stalls = measure ? (await page.evaluate(() => window.stalls)) - stalls_before : null;
  const state = await page.evaluate(() => {
    const v = document.getElementById('video');
    // Where the player could seek: a rewind playlist starts near the beginning of it, a live
    // one near its end.
    const seekable = v.seekable.length ? [v.seekable.start(0), v.seekable.end(v.seekable.length - 1)] : null;
    return { currentTime: v.currentTime, width: v.videoWidth, height: v.videoHeight, seekable, events: window.events };
  });
  console.log(JSON.stringify({ kind, started, advanced: state.currentTime - started, latencies, stalls, ...state }));
} catch (error) {
  code = 1;
  const pages = browser.contexts().flatMap((c) => c.pages());
  const state = pages.length ? await pages[0].evaluate(() => {
    const v = document.getElementById('video');
    return { currentTime: v.currentTime, readyState: v.readyState, networkState: v.networkState, events: window.events };
  }).catch(() => null) : null;
  console.error(`playback did not advance past ${seconds}s: ${error.message}`);
  console.error(JSON.stringify(state));
} finally {
  await browser.close();
}
process.exit(code);
