// Usage: node console.mjs <scenario> <json arguments>
// Drives the node's web console and player pages in headless Chromium (Debian's, or $CHROMIUM)
// the way a person would: clicks, forms, file inputs. Prints one JSON line with what it saw
// and exits 0; on a failure prints the error and the page's state and exits 1. Screenshots of
// every view it visits go to args.shots (a directory).
//
// Scenarios (args in JSON):
//   streams   {base, stream, shots}                 the stream list shows the stream; its preview plays
//   player    {base, stream, protocol, seconds}     the player page plays the stream
//   offline   {base, stream}                        the player page says a missing stream is offline
//   proxied   {base, stream, token}                 through a reverse proxy at a sub-path: the console
//                                                   lists and previews the stream, the player page plays WHEP
//   embed     {iframe, script, shots}               both embed snippets, pasted into a page that a server of
//                                                   this script's serves (another origin), play
//   snippets  {base, stream}                        the console's embed snippets for the stream
//   publish   {base, stream, shots}                 the WHIP page publishes the fake camera; the list shows it
//   wizard    {base, file, stream, url, key, shots} the virtual live wizard uploads, adds a restream, starts
//   recordings {base, stream, shots}                the recordings view shows coverage; its clip plays
//   kick      {base, client, token, shots}          the streams view's Kick disconnects that client
//   login     {base, token}                         the console asks for credentials and works with them
//   views     {base, token, shots}                  opened with #token=, every view renders without an error
// With `token`, the other scenarios run signed in (the API's token or the console token).
import { launch } from './launch.mjs';
import path from 'node:path';
import fs from 'node:fs';
import http from 'node:http';

const [scenario, json = '{}'] = process.argv.slice(2);
const args = JSON.parse(json);
const browser = await launch([
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection',
]);
const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
// A node with API credentials: the console is signed in as a person would be after the login
// dialog (the login scenario goes through the dialog itself).
if (args.token && !['login', 'views', 'proxied'].includes(scenario)) await context.addInitScript((token) => sessionStorage.setItem('estuary-auth', `Bearer ${token}`), args.token);
const consoleErrors = [];
const open = async (url) => {
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  page.on('dialog', (d) => d.accept());
  await page.goto(url);
  return page;
};
const shot = async (page, name) => {
  if (!args.shots) return;
  fs.mkdirSync(args.shots, { recursive: true });
  await page.screenshot({ path: path.join(args.shots, `${name}.png`), fullPage: true });
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// How far a <video> (in `frame`, a page or an iframe) gets: waits for playback to start, then
// for `seconds` more, and reports currentTime advanced and decoded frames.
async function watch(frame, selector, seconds = 4) {
  await frame.waitForFunction((sel) => { const v = document.querySelector(sel); return v && v.currentTime > 0; }, selector, { timeout: 45_000, polling: 200 });
  const read = () => frame.evaluate((sel) => {
    const v = document.querySelector(sel);
    return { time: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames, width: v.videoWidth, height: v.videoHeight };
  }, selector);
  const first = await read();
  await frame.waitForFunction(([sel, target]) => document.querySelector(sel).currentTime > target, [selector, first.time + seconds], { timeout: 45_000, polling: 250 });
  const last = await read();
  return { advanced: last.time - first.time, frames_start: first.frames, frames_end: last.frames, width: last.width, height: last.height };
}
const view = async (page, hash) => {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.waitForFunction(() => document.getElementById('view').childElementCount > 0, null, { timeout: 10_000 });
};

const scenarios = {
  async streams() {
    const page = await open(`${args.base}/console/#/streams`);
    const row = page.locator(`#streams tr[data-stream="${args.stream}"]`);
    await row.waitFor({ timeout: 20_000 });
    const listed = { codec: await row.locator('.codec').innerText(), audio: await row.locator('.audio').innerText(), resolution: await row.locator('.resolution').innerText() };
    await row.locator('button[data-preview]').click();
    const frame = page.frameLocator('#preview-frame');
    await frame.locator('video').waitFor();
    const preview = await watch(page.frames().find((f) => f.url().includes('/players/')), '#video');
    await shot(page, 'streams');
    return { listed, preview };
  },

  async player() {
    const page = await open(`${args.base}/players/?stream=${encodeURIComponent(args.stream)}&protocol=${args.protocol}`);
    const played = await watch(page, '#video', args.seconds || 4);
    if (args.shots) await shot(page, `player-${args.protocol}`);
    return { protocol: args.protocol, ...played, status: await page.evaluate(() => window.playerStatus) };
  },

  async offline() {
    const page = await open(`${args.base}/players/?stream=${encodeURIComponent(args.stream)}&protocol=flv`);
    await page.waitForFunction(() => window.playerStatus.state === 'offline', null, { timeout: 20_000 });
    return { status: await page.evaluate(() => window.playerStatus), text: await page.locator('#status').innerText() };
  },

  async snippets() {
    const page = await open(`${args.base}/console/#/play?stream=${encodeURIComponent(args.stream)}`);
    await page.locator('#embed-iframe').waitFor({ timeout: 10_000 });
    await page.selectOption('#embed-protocol', 'hls');
    const urls = await page.locator('#urls tr').evaluateAll((rows) => rows.map((r) => [r.cells[0].innerText, r.cells[1].innerText]));
    await page.locator('#play-frame').waitFor();
    const player = await watch(page.frames().find((f) => f.url().includes('/players/')), '#video', 1);
    if (args.shots) await shot(page, 'play-and-embed');
    return { iframe: await page.locator('#embed-iframe').innerText(), script: await page.locator('#embed-script').innerText(), urls, player };
  },

  async proxied() {
    // A reverse proxy that serves the node at /video/ of another port (as nginx's
    // `location /video/ { proxy_pass http://node:8080/; }` does), for HTTP and WHEP alike.
    const target = new URL(args.base);
    const proxy = http.createServer((req, res) => {
      if (!req.url.startsWith('/video/')) { res.writeHead(404); res.end('not proxied\n'); return; }
      const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url.slice('/video'.length), headers: { ...req.headers, host: target.host } }, (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      });
      upstream.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
      req.pipe(upstream);
    });
    await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const front = `http://127.0.0.1:${proxy.address().port}/video/`;
    const page = await open(`${front}#token=${encodeURIComponent(args.token)}`);
    await page.waitForURL(/\/video\/console\//);
    await view(page, '#/streams');
    const row = page.locator(`#streams tr[data-stream="${args.stream}"]`);
    await row.waitFor({ timeout: 20_000 });
    await row.locator('button[data-preview]').click();
    await page.locator('#preview-frame').waitFor();
    const preview = await watch(page.frames().find((f) => f.url().includes('/players/')), '#video', 2);
    const whep = await open(`${front}players/?stream=${encodeURIComponent(args.stream)}&protocol=webrtc`);
    const webrtc = await watch(whep, '#video', 2);
    await shot(page, 'proxied');
    proxy.close();
    return { console_url: page.url(), preview, webrtc };
  },

  async embed() {
    // A site of its own: another port is another origin for the browser.
    const site = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html><head><title>A blog</title></head><body><h1>A blog with live video</h1>\n${args.iframe}\n<hr>\n${args.script}\n</body></html>`);
    });
    await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
    const page = await open(`http://127.0.0.1:${site.address().port}/post.html`);
    await page.waitForFunction(() => [...document.querySelectorAll('iframe')].length > 0, null, { timeout: 10_000 });
    await page.frameLocator('iframe').locator('#video').waitFor({ timeout: 20_000 });
    const frame = page.frames().find((f) => f.url().includes('/players/'));
    if (!frame) throw new Error('the iframe snippet did not load the player page');
    const iframe = await watch(frame, '#video');
    const script = await watch(page, 'video');
    await shot(page, 'embed');
    site.close();
    return { page_origin: new URL(page.url()).origin, player_origin: new URL(frame.url()).origin, iframe, script };
  },

  async publish() {
    const page = await open(`${args.base}/console/publish.html?stream=${encodeURIComponent(args.stream)}`);
    await page.selectOption('#size', '640x360');
    await page.click('#start');
    await page.waitForFunction(() => /WebRTC connected/.test(window.publishState || ''), null, { timeout: 20_000 });
    await shot(page, 'publish');
    const list = await open(`${args.base}/console/#/streams`);
    const row = list.locator(`#streams tr[data-stream="${args.stream}"]`);
    await row.waitFor({ timeout: 20_000 });
    await list.waitForFunction((s) => { const r = document.querySelector(`#streams tr[data-stream="${s}"] .resolution`); return r && r.innerText !== '-'; }, args.stream, { timeout: 20_000 });
    const listed = { codec: await row.locator('.codec').innerText(), resolution: await row.locator('.resolution').innerText() };
    const player = await open(`${args.base}/players/?stream=${encodeURIComponent(args.stream)}&protocol=hls`);
    const played = await watch(player, '#video', 3);
    return { state: await page.evaluate(() => window.publishState), listed, hls: played };
  },

  async wizard() {
    const page = await open(`${args.base}/console/#/virtual-live`);
    await page.locator('#vl-file').waitFor();
    await page.setInputFiles('#vl-file', args.file);
    await page.click('#vl-upload');
    await page.waitForFunction(() => /Uploaded|refused|cut off/.test(document.getElementById('vl-upload-state').innerText), null, { timeout: 60_000 });
    const uploaded = await page.locator('#vl-upload-state').innerText();
    await page.waitForFunction(() => document.getElementById('vl-source').value !== '', null, { timeout: 10_000 });
    await page.fill('#vl-stream', args.stream);
    await page.fill('.vl-url', args.url);
    await page.fill('.vl-key', args.key);
    await page.click('#vl-start');
    await page.waitForFunction(() => /Started|Not started/.test(document.getElementById('vl-status').innerText), null, { timeout: 20_000 });
    const started = await page.locator('#vl-status').innerText();
    await page.locator(`#channels tr[data-stream="${args.stream}"]`).waitFor({ timeout: 20_000 });
    await page.waitForFunction((s) => /live/.test(document.querySelector(`#channels tr[data-stream="${s}"]`).innerText), args.stream, { timeout: 30_000 });
    await shot(page, 'virtual-live');
    return { uploaded, started, channel: await page.locator(`#channels tr[data-stream="${args.stream}"]`).innerText() };
  },

  async recordings() {
    const page = await open(`${args.base}/console/#/recordings?stream=${encodeURIComponent(args.stream)}`);
    await page.locator('#rec-timeline rect.covered').first().waitFor({ timeout: 20_000 });
    const covered = await page.locator('#rec-timeline rect.covered').count();
    const range = { start: await page.inputValue('#rec-start'), end: await page.inputValue('#rec-end'), download: await page.getAttribute('#rec-download', 'href') };
    await page.click('#rec-play');
    const played = await watch(page, '#rec-video', 2);
    await shot(page, 'recordings');
    return { covered, summary: await page.locator('#rec-summary').innerText(), range, played };
  },

  async kick() {
    // (the result is what the test checks afterwards: the player's connection ended)
    const page = await open(`${args.base}/console/#/streams`);
    const row = page.locator(`#clients tr[data-client="${args.client}"]`);
    await row.waitFor({ timeout: 20_000 });
    await shot(page, 'clients');
    await row.locator('button.kick').click();
    await row.waitFor({ state: 'detached', timeout: 20_000 });
    return {};
  },

  async login() {
    const page = await open(`${args.base}/console/#/streams`);
    await page.locator('#login[open]').waitFor({ timeout: 10_000 });
    const asked = true;
    await page.fill('#login-token', 'wrong-token');
    await page.click('#login-submit');
    await page.waitForFunction(() => /refused/.test(document.getElementById('login-error').innerText) && document.getElementById('login').open, null, { timeout: 10_000 });
    await page.fill('#login-token', args.token);
    await page.click('#login-submit');
    await page.locator('#streams tr[data-stream]').first().waitFor({ timeout: 10_000 });
    await page.waitForFunction(() => !document.getElementById('login').open && !document.getElementById('view-error'), null, { timeout: 10_000 });
    return { asked, listed: await page.locator('#streams tr[data-stream]').evaluateAll((rows) => rows.map((r) => r.dataset.stream)) };
  },

  async views() {
    // As the node's log tells a person to: the console's address with #token=.
    const page = await open(`${args.base}/console/#token=${encodeURIComponent(args.token)}`);
    const seen = {};
    for (const name of ['dashboard', 'streams', 'play', 'virtual-live', 'jobs', 'recordings', 'gb28181', 'cluster']) {
      await view(page, `#/${name}`);
      await sleep(name === 'dashboard' ? 5000 : 1500);
      seen[name] = { error: await page.evaluate(() => { const e = document.getElementById('view-error'); return e ? e.innerText : null; }), text: (await page.locator('#view').innerText()).slice(0, 200) };
      await shot(page, `view-${name}`);
    }
    return seen;
  },
};

let code = 0;
try {
  if (!scenarios[scenario]) throw new Error(`unknown scenario ${scenario}`);
  const result = await scenarios[scenario]();
  console.log(JSON.stringify({ scenario, ...result, console_errors: consoleErrors }));
} catch (error) {
  code = 1;
  const pages = context.pages();
  const states = await Promise.all(pages.map((p) => p.evaluate(() => ({ url: location.href, view: document.body.innerText.slice(0, 1500) })).catch(() => null)));
  if (args.shots) await Promise.all(pages.map((p, i) => shot(p, `failed-${scenario}-${i}`).catch(() => {})));
  console.error(`${scenario} failed: ${error.message}`);
  console.error(JSON.stringify({ pages: states, console_errors: consoleErrors }));
} finally {
  await browser.close();
}
process.exit(code);
