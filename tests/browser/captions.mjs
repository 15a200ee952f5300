// Usage: node captions.mjs <url> <seconds> [hls|dash]
// Plays the HLS master playlist <url> with hls.js in low-latency mode, its caption rendition
// switched on (or, with `dash`, the MPD <url> with dash.js, its text representation on), and
// for <seconds> once playback has started collects the WebVTT cue texts the player put on the
// caption text track ("Captions" for hls.js, dash.js's own track), how far each cue's start
// was from the playhead when the cue first appeared (`offsets`, seconds), and the ID3 timed
// metadata hls.js parsed (from emsg boxes in fMP4, or from TS). Prints one JSON line:
// { cues, offsets, id3, currentTime, events, ... }.
import { launch } from './launch.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, seconds = '10', kind = 'hls'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node captions.mjs <url> [seconds]');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const page_url = `file://${path.join(here, 'player.html')}?kind=${kind}&url=${encodeURIComponent(url)}&ll=1&captions=1`;
const label = kind === 'hls' ? 'Captions' : null;
const browser = await launch(['--allow-file-access-from-files']);
let code = 0;
try {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error(`page console: ${m.text()}`); });
  await page.goto(page_url);
  await page.waitForFunction(() => document.getElementById('video').currentTime > 0, null, { timeout: 60_000, polling: 100 });
  // Captions switched on as a viewer would, once playing.
  if (kind === 'hls') await page.evaluate(() => { window.hls.subtitleDisplay = true; window.hls.subtitleTrack = 0; });
  const cues = new Map();
  const id3 = new Set();
  const until = Date.now() + Number(seconds) * 1000;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 250));
    const seen = await page.evaluate((label) => ({ cues: window.cueTexts(label), id3: window.id3 || [], now: document.getElementById('video').currentTime }), label);
    for (const [text, start] of seen.cues) if (!cues.has(text)) cues.set(text, start - seen.now);
    seen.id3.forEach((t) => id3.add(t));
  }
  const state = await page.evaluate(() => ({
    currentTime: document.getElementById('video').currentTime,
    events: window.events,
    subtitle_tracks: window.hls ? window.hls.subtitleTracks.length : null,
    subtitle_track: window.hls ? window.hls.subtitleTrack : null,
    text_tracks: [...document.getElementById('video').textTracks].map((t) => ({ kind: t.kind, label: t.label, mode: t.mode, cues: t.cues ? t.cues.length : null })),
  }));
  console.log(JSON.stringify({ cues: [...cues.keys()], offsets: [...cues.values()], id3: [...id3], ...state }));
} catch (error) {
  code = 1;
  console.error(`captions playback failed: ${error.message}`);
} finally {
  await browser.close();
}
process.exit(code);
