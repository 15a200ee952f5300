// Usage: node seek.mjs <mp4-url>
// Plays <url> in a <video> element in headless Chromium (Debian's, or $CHROMIUM), seeks to
// the middle, and exits 0 once currentTime has moved on from there by at least a second;
// exits 1 with the element's state otherwise. Prints one JSON line with what it saw.
import { launch } from './launch.mjs';

const [url] = process.argv.slice(2);
if (!url) {
  console.error('usage: node seek.mjs <mp4-url>');
  process.exit(2);
}
const browser = await launch();
let code = 0;
const state = () => page.evaluate(() => {
  const v = document.getElementById('video');
  return { currentTime: v.currentTime, duration: v.duration, readyState: v.readyState, networkState: v.networkState, error: v.error && v.error.message, width: v.videoWidth, events: window.events };
});
let page;
try {
  page = await browser.newPage();
  await page.setContent(`<video id="video" muted playsinline preload="auto"></video>
    <script>
      window.events = [];
      const v = document.getElementById('video');
      for (const e of ['error', 'stalled', 'abort']) v.addEventListener(e, () => window.events.push(e));
      v.src = ${JSON.stringify(url)};
    </script>`);
  await page.waitForFunction(() => document.getElementById('video').readyState >= 1 && isFinite(document.getElementById('video').duration), null, { timeout: 60_000, polling: 100 });
  const duration = await page.evaluate(() => document.getElementById('video').duration);
  const middle = duration / 2;
  await page.evaluate((t) => new Promise((resolve) => {
    const v = document.getElementById('video');
    v.addEventListener('seeked', resolve, { once: true });
    v.currentTime = t;
  }), middle);
  const landed = await page.evaluate(() => document.getElementById('video').currentTime);
  await page.evaluate(() => document.getElementById('video').play());
  await page.waitForFunction((t) => document.getElementById('video').currentTime > t + 1, landed, { timeout: 60_000, polling: 100 });
  console.log(JSON.stringify({ duration, middle, landed, ...(await state()) }));
} catch (error) {
  code = 1;
  console.error(`seek test failed: ${error.message}`);
  console.error(JSON.stringify(page ? await state().catch(() => null) : null));
} finally {
  await browser.close();
}
process.exit(code);
