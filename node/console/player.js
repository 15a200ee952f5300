// Estuary's player: plays one stream of an Estuary node in a <video> element over HTTP-FLV,
// HTTP-TS (mpegts.js), HLS (hls.js, or the browser's own where it has one), DASH (dash.js),
// WebRTC (WHEP, plain browser APIs) or a recorded range as HTTP-MP4. A live stream that is
// offline, ends, or stalls is retried every few seconds; the page is told through onStatus.
//
//   EstuaryPlayer.attach(video, { stream: 'live/livestream', protocol: 'hls',
//     server: 'https://example.com:8080/', token: '', start: '', end: '',
//     onStatus: (state, message) => {} })   // state: loading | playing | offline | error
//
// `server` defaults to the node this script was loaded from. The libraries are loaded from the
// same place when first needed.
(function (global) {
  'use strict';
  const here = document.currentScript ? new URL('.', document.currentScript.src) : new URL('.', location.href);
  const libraries = { flv: 'vendor/mpegts.js', ts: 'vendor/mpegts.js', hls: 'vendor/hls.light.min.js', dash: 'vendor/dash.mediaplayer.min.js' };
  const loading = {};
  const PROTOCOLS = ['flv', 'ts', 'hls', 'dash', 'webrtc', 'mp4'];
  const RETRY_MS = 3000;
  const STALL_MS = 12000;

  function load(path) {
    if (!loading[path]) {
      loading[path] = new Promise((resolve, reject) => {
        const script = document.createElement('script');
        script.src = new URL(path, here).href;
        script.onload = resolve;
        script.onerror = () => { delete loading[path]; reject(new Error('cannot load ' + script.src)); };
        document.head.appendChild(script);
      });
    }
    return loading[path];
  }

  // app/name as the node accepts names (parts of letters, digits and -_.~@+=!,), so a page
  // address cannot make the player fetch from anywhere else.
  function split(stream) {
    const text = String(stream || '');
    const parts = text.split('/');
    if (parts.length < 2 || parts.some((p) => !/^[\p{L}\p{N}_.~@+=!,-]+$/u.test(p) || p === '.' || p === '..')) {
      throw new Error('stream must be app/name, e.g. live/livestream');
    }
    const at = text.lastIndexOf('/');
    return [text.slice(0, at), text.slice(at + 1)];
  }

  // The URL of `stream` over `protocol` on the node at `server` (a URL ending in '/').
  function urlOf(server, stream, protocol, options = {}) {
    const [app, name] = split(stream);
    const path = `${app.split('/').map(encodeURIComponent).join('/')}/${encodeURIComponent(name)}`;
    const query = new URLSearchParams();
    if (options.token) query.set('token', options.token);
    let relative;
    switch (protocol) {
      case 'flv': relative = `${path}.flv`; break;
      case 'ts': relative = `${path}.ts`; break;
      case 'hls': relative = `${path}.m3u8`; break;
      case 'dash': relative = `${path}.mpd`; break;
      case 'mp4':
        if (options.start) query.set('start', options.start);
        if (options.end) query.set('end', options.end);
        relative = `dvr/${path}.mp4`;
        break;
      case 'webrtc':
        query.set('app', app);
        query.set('stream', name);
        relative = 'rtc/v1/whep/';
        break;
      default: throw new Error(`unknown protocol ${protocol} (one of ${PROTOCOLS.join(', ')})`);
    }
    const text = query.toString();
    const url = new URL(relative + (text ? `?${text}` : ''), server);
    if (url.origin !== new URL(server).origin) throw new Error('the stream URL leaves the server');
    return url.href;
  }

  function attach(video, options) {
    const protocol = options.protocol || 'hls';
    const server = new URL(options.server || new URL('..', here).href, location.href).href;
    const status = options.onStatus || (() => {});
    let url;
    try {
      url = urlOf(server, options.stream, protocol, options);
    } catch (error) {
      status('error', error.message);
      return { url: null, stop() {} };
    }
    const live = protocol !== 'mp4';
    let engine = null; // what stop() tears down for the current attempt
    let retry = null;
    let watchdog = null;
    let stopped = false;
    let attempt = 0;

    function teardown() {
      const current = engine;
      engine = null;
      if (current) {
        try { current(); } catch (e) { /* already gone */ }
      }
    }

    function offline(message) {
      if (stopped) return;
      teardown();
      status('offline', message);
      clearTimeout(retry);
      retry = setTimeout(start, RETRY_MS);
    }

    async function start() {
      if (stopped) return;
      attempt += 1;
      const mine = attempt;
      status('loading', `connecting (${protocol})`);
      try {
        await play();
      } catch (error) {
        if (mine === attempt) (live ? offline : fail)(error.message || String(error));
      }
    }

    function fail(message) {
      teardown();
      status('error', message);
    }

    async function play() {
      const mine = attempt;
      // Stopped, or a newer attempt began, while a library was loading.
      const gone = () => stopped || mine !== attempt;
      if (protocol === 'flv' || protocol === 'ts') {
        await load(libraries[protocol]);
        if (gone()) return;
        const mpegts = global.mpegts;
        if (!mpegts.getFeatureList().mseLivePlayback) throw new Error('this browser cannot play FLV or TS (no Media Source Extensions)');
        const player = mpegts.createPlayer({ type: protocol === 'flv' ? 'flv' : 'mpegts', isLive: true, url },
          { enableStashBuffer: false, liveBufferLatencyChasing: true, autoCleanupSourceBuffer: true });
        engine = () => { player.pause(); player.unload(); player.detachMediaElement(); player.destroy(); };
        player.on(mpegts.Events.ERROR, (type, detail, data) => offline(data && data.code === 404 ? 'the stream is not live' : `${type}: ${detail}`));
        player.on(mpegts.Events.LOADING_COMPLETE, () => offline('the stream ended'));
        player.attachMediaElement(video);
        player.load();
        video.play().catch(() => {});
      } else if (protocol === 'hls') {
        await load(libraries.hls);
        if (gone()) return;
        const Hls = global.Hls;
        if (Hls.isSupported()) {
          const hls = new Hls({ liveSyncDurationCount: 3, manifestLoadingMaxRetry: 1, levelLoadingMaxRetry: 2 });
          engine = () => hls.destroy();
          hls.on(Hls.Events.ERROR, (event, data) => { if (data.fatal) offline(data.response && data.response.code === 404 ? 'the stream is not live' : `${data.type}: ${data.details}`); });
          hls.loadSource(url);
          hls.attachMedia(video);
          hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
        } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
          native();
        } else {
          throw new Error('this browser cannot play HLS');
        }
      } else if (protocol === 'dash') {
        await load(libraries.dash);
        if (gone()) return;
        const player = global.dashjs.MediaPlayer().create();
        engine = () => player.reset();
        player.updateSettings({ debug: { logLevel: 1 } });
        player.on('error', (e) => offline(`DASH: ${e.error && (e.error.message || e.error.code) || 'error'}`));
        player.initialize(video, url, true);
      } else if (protocol === 'webrtc') {
        await whep();
      } else {
        native();
      }
    }

    function native() {
      const onError = () => (live ? offline : fail)(video.error ? `media error ${video.error.code}: ${video.error.message || ''}` : 'media error');
      video.addEventListener('error', onError);
      engine = () => { video.removeEventListener('error', onError); video.removeAttribute('src'); video.load(); };
      video.src = url;
      video.play().catch(() => {});
    }

    async function whep() {
      const pc = new RTCPeerConnection();
      let resource = null;
      engine = () => {
        pc.close();
        video.srcObject = null;
        if (resource) fetch(resource, { method: 'DELETE' }).catch(() => {});
      };
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const media = new MediaStream();
      pc.ontrack = (event) => { media.addTrack(event.track); video.srcObject = media; video.play().catch(() => {}); };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'failed' || pc.connectionState === 'closed') offline(`WebRTC ${pc.connectionState}`);
      };
      await pc.setLocalDescription(await pc.createOffer());
      const response = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      const body = await response.text();
      if (response.status !== 201) throw new Error(response.status === 404 ? 'the stream is not live' : `WHEP answered ${response.status}: ${body.slice(0, 200)}`);
      const location_ = response.headers.get('Location');
      // The node names the resource from its root (/rtc/...); resolved against the root this
      // page reached it by, it still works behind a reverse proxy at a sub-path.
      if (location_) resource = new URL(location_.replace(/^\//, ''), server).href;
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
    }

    // Live playback that stops advancing (the publisher went away, a network hole) is retried.
    // WebRTC's clock runs on without media, so there progress is decoded frames.
    let last = { time: -1, at: Date.now() };
    const progress = () => (protocol === 'webrtc' && video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().totalVideoFrames : video.currentTime);
    function watch() {
      if (stopped || !engine) return;
      const now = progress();
      if (now !== last.time || video.paused) {
        if (now > last.time && video.currentTime > 0) status('playing', `${protocol} ${video.videoWidth}x${video.videoHeight}`);
        last = { time: now, at: Date.now() };
      } else if (live && Date.now() - last.at > STALL_MS) {
        last = { time: -1, at: Date.now() };
        offline('playback stalled');
      }
    }
    if (options.autoplay !== false) video.autoplay = true;
    watchdog = setInterval(watch, 1000);
    start();
    return {
      url,
      stop() {
        stopped = true;
        clearTimeout(retry);
        clearInterval(watchdog);
        teardown();
      },
    };
  }

  global.EstuaryPlayer = { attach, urlOf, PROTOCOLS };
})(window);
