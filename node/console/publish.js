// The WHIP publish page: sends this browser's camera and microphone (or a screen share) to the
// node as a live stream, with the video codec the user picks among those the browser offers.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  if (query.get('stream')) $('stream').value = query.get('stream');
  const state = (text) => { $('state').textContent = text; window.publishState = text; };
  let session = null;

  // Codec choice: one entry per video codec the browser can send (H.264 first, as every output
  // can carry it).
  const codecs = (RTCRtpSender.getCapabilities && RTCRtpSender.getCapabilities('video')) ? RTCRtpSender.getCapabilities('video').codecs : [];
  const names = [...new Set(codecs.map((c) => c.mimeType).filter((m) => !/rtx|red|ulpfec|flexfec/i.test(m)))];
  names.sort((a, b) => (b === 'video/H264') - (a === 'video/H264'));
  for (const name of names) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = name.replace('video/', '') + (name === 'video/H264' ? ' (plays everywhere)' : '');
    $('codec').appendChild(option);
  }

  async function start(event) {
    event.preventDefault();
    const stream = $('stream').value.trim();
    const at = stream.lastIndexOf('/');
    if (at <= 0) { state('The stream must be app/name, e.g. live/browser.'); return; }
    const [width, height] = $('size').value.split('x').map(Number);
    $('start').disabled = true;
    try {
      const media = $('source').value === 'screen'
        ? await navigator.mediaDevices.getDisplayMedia({ video: { width, height }, audio: true })
        : await navigator.mediaDevices.getUserMedia({ video: { width, height }, audio: true });
      $('preview').srcObject = media;
      const pc = new RTCPeerConnection();
      session = { pc, media, resource: null };
      for (const track of media.getTracks()) {
        const transceiver = pc.addTransceiver(track, { direction: 'sendonly' });
        if (track.kind === 'video' && transceiver.setCodecPreferences) {
          const chosen = codecs.filter((c) => c.mimeType === $('codec').value);
          if (chosen.length) transceiver.setCodecPreferences([...chosen, ...codecs.filter((c) => c.mimeType !== $('codec').value)]);
        }
      }
      pc.onconnectionstatechange = () => state(`WebRTC ${pc.connectionState}: ${stream}`);
      await pc.setLocalDescription(await pc.createOffer());
      const params = new URLSearchParams({ app: stream.slice(0, at), stream: stream.slice(at + 1) });
      if ($('token').value) params.set('token', $('token').value);
      const url = new URL(`../rtc/v1/whip/?${params}`, location.href).href;
      const response = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      const body = await response.text();
      if (response.status !== 201) throw new Error(`the node answered ${response.status}: ${body.slice(0, 300)}`);
      const location_ = response.headers.get('Location');
      // From the node's root (/rtc/...), which is ../ of this page (also behind a proxy's sub-path).
      if (location_) session.resource = new URL(`../${location_.replace(/^\//, '')}`, location.href).href;
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
      state(`Publishing ${stream} (connecting)`);
      $('stop').disabled = false;
    } catch (error) {
      stop();
      state(`Cannot publish: ${error.message || error}`);
    }
  }

  function stop() {
    if (session) {
      session.pc.close();
      session.media.getTracks().forEach((t) => t.stop());
      if (session.resource) fetch(session.resource, { method: 'DELETE' }).catch(() => {});
      session = null;
      state('Stopped.');
    }
    $('preview').srcObject = null;
    $('start').disabled = false;
    $('stop').disabled = true;
  }

  $('form').addEventListener('submit', start);
  $('stop').addEventListener('click', stop);
})();
