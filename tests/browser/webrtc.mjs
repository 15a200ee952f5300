// Usage: node webrtc.mjs <api base, e.g. http://127.0.0.1:1985> <app> <stream> [seconds] [publish codec]
// Headless Chromium publishes its fake camera and microphone over WHIP from one page in
// <publish codec> (a MIME type, video/H264 by default; `none` plays a stream published
// otherwise) and plays the stream over WHEP in another, offering every codec it decodes;
// prints one JSON line with both HTTP statuses, the played video's decoded frame counts at
// the start and after <seconds> and the codec it received, and exits 0 if the count
// advanced. Both pages are opened on the API's own origin (127.0.0.1 is a secure context, so
// getUserMedia works).
import { launch } from './launch.mjs';

const [api, app, stream, seconds = '5', publishCodec = 'video/H264'] = process.argv.slice(2);
if (!api || !app || !stream) {
  console.error('usage: node webrtc.mjs <api base> <app> <stream> [seconds]');
  process.exit(2);
}
const query = `?app=${encodeURIComponent(app)}&stream=${encodeURIComponent(stream)}`;
const browser = await launch([
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection',
]);
const result = {};
let code = 1;
try {
  if (publishCodec !== 'none') {
    const publisher = await browser.newPage();
    publisher.on('console', (m) => { if (m.type() === 'error') console.error(`publisher console: ${m.text()}`); });
    await publisher.goto(`${api}/api/v1/versions`);
    result.publish = await publisher.evaluate(async ([url, codec]) => {
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
      const pc = new RTCPeerConnection();
      window.pc = pc;
      const video = pc.addTransceiver(media.getVideoTracks()[0], { direction: 'sendonly' });
      video.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === codec));
      pc.addTransceiver(media.getAudioTracks()[0], { direction: 'sendonly' });
      await pc.setLocalDescription(await pc.createOffer());
      const response = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      const body = await response.text();
      if (response.status !== 201) return { status: response.status, body };
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
      for (let i = 0; i < 150 && pc.connectionState !== 'connected'; i++) await new Promise((r) => setTimeout(r, 100));
      return { status: response.status, state: pc.connectionState, location: response.headers.get('Location') };
    }, [`${api}/rtc/v1/whip/${query}`, publishCodec]);
    if (result.publish.state !== 'connected') throw new Error('publisher not connected');
  }

  const player = await browser.newPage();
  player.on('console', (m) => { if (m.type() === 'error') console.error(`player console: ${m.text()}`); });
  await player.goto(`${api}/api/v1/versions`);
  result.play = await player.evaluate(async ([url, seconds]) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const element = document.createElement('video');
    element.muted = true;
    element.autoplay = true;
    document.body.appendChild(element);
    pc.ontrack = (event) => { if (event.track.kind === 'video') element.srcObject = new MediaStream([event.track]); };
    await pc.setLocalDescription(await pc.createOffer());
    const response = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    const body = await response.text();
    if (response.status !== 201) return { status: response.status, body };
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    const frames = () => element.getVideoPlaybackQuality().totalVideoFrames;
    for (let i = 0; i < 200 && frames() === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const start = frames();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const end = frames();
    let codec = null;
    const stats = await pc.getStats();
    stats.forEach((report) => {
      if (report.type === 'inbound-rtp' && report.kind === 'video' && report.codecId && stats.get(report.codecId)) codec = stats.get(report.codecId).mimeType;
    });
    return { status: response.status, state: pc.connectionState, frames_start: start, frames_end: end, width: element.videoWidth, height: element.videoHeight, codec };
  }, [`${api}/rtc/v1/whep/${query}`, Number(seconds)]);
  code = result.play.frames_end > result.play.frames_start ? 0 : 1;
} catch (error) {
  result.error = error.message;
} finally {
  console.log(JSON.stringify(result));
  await browser.close();
}
process.exit(code);
