// Estuary's web console: one page over the node's HTTP API (served on this same port under
// ../api/, so every URL here is relative and the console works behind a reverse proxy at a
// sub-path). Views are chosen by the URL's fragment (#/streams, #/play?stream=live/x, ...).
(function () {
  'use strict';
  const root = new URL('..', location.href); // the node's HTTP root, as this browser reaches it
  const view = document.getElementById('view');
  let info = null; // GET /api/v1/console
  let timers = [];

  // ---- small helpers ----------------------------------------------------------------------
  // h('tr', { class: 'x', onclick: f }, 'text', child...): elements without innerHTML, so
  // names coming from publishers can never become markup.
  function h(tag, attrs, ...children) {
    const element = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
      else if (key === 'value') element.value = value;
      else element.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      element.append(child instanceof Node ? child : String(child));
    }
    return element;
  }
  const svgNs = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const element = document.createElementNS(svgNs, tag);
    for (const [key, value] of Object.entries(attrs || {})) element.setAttribute(key, value);
    for (const child of children.flat()) if (child !== null && child !== undefined) element.append(child instanceof Node ? child : String(child));
    return element;
  }
  const bytes = (n) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(0)} KiB` : `${n} B`);
  const kbps = (n) => (n >= 10000 ? `${(n / 1000).toFixed(1)} Mbit/s` : `${Math.round(n)} kbit/s`);
  function duration(ms) {
    const t = Math.floor(ms / 1000);
    const [d, hh, mm, ss] = [Math.floor(t / 86400), Math.floor(t / 3600) % 24, Math.floor(t / 60) % 60, t % 60];
    return d ? `${d}d ${hh}h` : hh ? `${hh}h ${mm}m` : mm ? `${mm}m ${ss}s` : `${ss}s`;
  }
  const iso = (ms) => new Date(ms).toISOString().replace('.000Z', 'Z');
  // A string as a JavaScript literal that is safe inside an HTML <script> element.
  const js = (value) => JSON.stringify(value).replace(/</g, '\\u003c');
  const pill = (state) => h('span', { class: `pill ${state}` }, state);
  // Runs f now and every ms while the view is shown (a tick is skipped while the last one is
  // still waiting for the API); a refresh that fails shows why in the view.
  function every(ms, f) {
    let busy = false;
    const run = () => {
      if (busy) return;
      busy = true;
      Promise.resolve().then(f).then(() => { const e = document.getElementById('view-error'); if (e) e.remove(); }).catch(showError).finally(() => { busy = false; });
    };
    run();
    timers.push(setInterval(run, ms));
  }
  // A stream name as the node accepts it (app/name, each part of letters, digits and -_.~@+=!,),
  // so nothing taken from the address bar ends up in a URL or a snippet as something else.
  const validStream = (name) => /^[\p{L}\p{N}_.~@+=!,-]+(\/[\p{L}\p{N}_.~@+=!,-]+)+$/u.test(name || '') && !name.split('/').some((p) => p === '.' || p === '..');
  async function copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      const area = h('textarea', {}, text);
      document.body.append(area);
      area.select();
      document.execCommand('copy');
      area.remove();
    }
    const label = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = label; }, 1200);
  }
  const copyButton = (text) => h('button', { class: 'copy', onclick: (e) => copy(typeof text === 'function' ? text() : text, e.target) }, 'Copy');

  // ---- the API, with the API's own credentials ---------------------------------------------
  let signingIn = null;
  // The console opened as <url>#token=<console token> (the node logs where the token is): signed in.
  const linked = location.hash.match(/(?:^#|[?&])token=([^&]+)/);
  if (linked) {
    sessionStorage.setItem('estuary-auth', `Bearer ${decodeURIComponent(linked[1])}`);
    history.replaceState(null, '', location.pathname + location.search + '#/dashboard');
  }
  function credentials() {
    return sessionStorage.getItem('estuary-auth') || '';
  }
  function signIn() {
    if (!signingIn) {
      signingIn = new Promise((resolve) => {
        const dialog = document.getElementById('login');
        // Nothing works without signing in: Escape does not close the dialog.
        dialog.oncancel = (event) => event.preventDefault();
        document.getElementById('login-form').onsubmit = () => {
          const token = document.getElementById('login-token').value.trim();
          const user = document.getElementById('login-user').value;
          const password = document.getElementById('login-password').value;
          const pair = String.fromCharCode(...new TextEncoder().encode(`${user}:${password}`));
          sessionStorage.setItem('estuary-auth', token ? `Bearer ${token}` : `Basic ${btoa(pair)}`);
          signingIn = null;
          resolve();
        };
        if (!dialog.open) dialog.showModal();
      });
    }
    return signingIn;
  }
  // JSON in and out. Changes are sent as application/json (the API refuses other bodies from
  // pages); a 401 asks for credentials and tries again.
  async function api(path, options = {}) {
    for (let attempt = 0; attempt < 5; attempt++) {
      const headers = { 'Content-Type': 'application/json', ...(options.headers || {}) };
      if (credentials()) headers.Authorization = credentials();
      const response = await fetch(new URL(`api/v1/${path}`, root), { ...options, headers });
      if (response.status === 401) {
        document.getElementById('login-error').textContent = credentials() ? 'Those credentials were refused.' : '';
        await signIn();
        continue;
      }
      const body = await response.json().catch(() => ({ code: response.status, message: response.statusText }));
      if (!response.ok || (body.code && body.code !== 0)) throw new Error(body.message || `HTTP ${response.status}`);
      return body;
    }
    throw new Error('not signed in');
  }
  const post = (path, body) => api(path, { method: 'POST', body: JSON.stringify(body || {}) });
  const remove = (path) => api(path, { method: 'DELETE' });

  // ---- play URLs -----------------------------------------------------------------------------
  function playUrls(stream) {
    const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
    const [app, name] = [stream.slice(0, stream.lastIndexOf('/')), stream.slice(stream.lastIndexOf('/') + 1)];
    const http = (ext) => new URL(`${stream}.${ext}`, root).href;
    const urls = [];
    if (info.ports.rtmp) urls.push(['RTMP', `rtmp://${host}:${info.ports.rtmp}/${stream}`]);
    if (info.ports.srt) urls.push(['SRT', `srt://${host}:${info.ports.srt}?streamid=#!::r=${stream},m=request`]);
    urls.push(['HTTP-FLV', http('flv')], ['HTTP-TS', http('ts')]);
    if (info.hls) urls.push(['HLS', http('m3u8')]);
    if (info.dash) urls.push(['DASH', http('mpd')]);
    if (info.ports.rtc) urls.push(['WebRTC (WHEP)', new URL(`rtc/v1/whep/?app=${encodeURIComponent(app)}&stream=${encodeURIComponent(name)}`, root).href]);
    return urls;
  }
  const playerUrl = (stream, protocol, extra = '') => new URL(`players/?stream=${encodeURIComponent(stream)}&protocol=${protocol}${extra}`, root).href;
  const bestProtocol = () => (info.hls ? 'hls' : 'flv');

  // ---- views ---------------------------------------------------------------------------------
  const views = {};

  // Dashboard: the node's summary and two charts over the last five minutes.
  const samples = { bandwidth: [], viewers: [], last: null };
  function chart(series, colors, unit) {
    const [w, hgt, pad] = [600, 180, 34];
    const all = series.flatMap((points) => points.map((p) => p.v));
    // Counts get whole-number grid lines (a multiple of 3 as the top); rates 15 % headroom.
    const max = unit === 'n' ? Math.max(3, Math.ceil((Math.max(0, ...all) * 1.15) / 3) * 3) : Math.max(1, ...all) * 1.15;
    const now = Date.now();
    const x = (t) => pad + ((t - (now - 300000)) / 300000) * (w - pad - 6);
    const y = (v) => hgt - 18 - (v / max) * (hgt - 28);
    const svg = s('svg', { class: 'chart', viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none' });
    for (let i = 0; i <= 3; i++) {
      const v = (max / 3) * i;
      svg.append(s('line', { class: 'grid', x1: pad, x2: w, y1: y(v), y2: y(v) }), s('text', { x: 2, y: y(v) + 4 }, unit === 'kbps' ? (v >= 1000 ? `${(v / 1000).toFixed(1)}M` : `${Math.round(v)}k`) : Math.round(v)));
    }
    svg.append(s('text', { x: pad, y: hgt - 2 }, '-5 min'), s('text', { x: w - 30, y: hgt - 2 }, 'now'));
    series.forEach((points, i) => {
      if (points.length > 1) svg.append(s('polyline', { fill: 'none', stroke: colors[i], 'stroke-width': 2, points: points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ') }));
    });
    return svg;
  }
  views.dashboard = () => {
    const cards = h('div', { class: 'cards', id: 'summary' });
    const charts = h('div', { class: 'charts' });
    view.append(h('h1', {}, 'Dashboard'), cards, charts);
    every(2000, async () => {
      const [summary, streams] = await Promise.all([api('summaries'), api('streams?count=1000')]);
      const d = summary.data;
      const now = Date.now();
      let [inKbps, outKbps] = [0, 0];
      if (samples.last && now > samples.last.t) {
        const dt = (now - samples.last.t) / 1000;
        inKbps = Math.max(0, ((d.network.recv_bytes - samples.last.recv) * 8) / 1000 / dt);
        outKbps = Math.max(0, ((d.network.send_bytes - samples.last.send) * 8) / 1000 / dt);
        samples.bandwidth.push({ t: now, in: inKbps, out: outKbps });
      }
      samples.last = { t: now, recv: d.network.recv_bytes, send: d.network.send_bytes };
      const live = streams.streams.filter((x) => x.publish.active);
      const viewers = live.reduce((n, x) => n + x.players, 0);
      samples.viewers.push({ t: now, v: viewers });
      for (const list of [samples.bandwidth, samples.viewers]) while (list.length && list[0].t < now - 300000) list.shift();
      const stat = (label, value) => h('div', { class: 'stat' }, h('span', {}, label), h('b', {}, value));
      cards.replaceChildren(
        stat('Uptime', duration(d.self.uptime_ms)),
        stat('CPU', `${(d.self.cpu_percent || 0).toFixed(1)} %`),
        stat('Memory', bytes(d.self.mem_kbyte * 1024)),
        stat('In', kbps(inKbps)),
        stat('Out', kbps(outKbps)),
        stat('Clients', d.clients),
        stat('Live streams', live.length),
        stat('Viewers', viewers),
      );
      charts.replaceChildren(
        h('div', { class: 'card' }, h('h2', {}, 'Bandwidth'), h('div', { class: 'legend' }, h('span', {}, h('i', { style: 'background:#1f6feb' }), 'in'), h('span', {}, h('i', { style: 'background:#e36209' }), 'out')),
          chart([samples.bandwidth.map((p) => ({ t: p.t, v: p.in })), samples.bandwidth.map((p) => ({ t: p.t, v: p.out }))], ['#1f6feb', '#e36209'], 'kbps')),
        h('div', { class: 'card' }, h('h2', {}, 'Viewers'), chart([samples.viewers], ['#1a7f37'], 'n')),
      );
    });
  };

  // Streams: every live stream, its tracks, rates and clients; preview; kick.
  function tracks(x) {
    const v = x.video ? `${x.video.codec}${x.video.profile ? ` ${x.video.profile}` : ''}` : 'no video';
    const a = x.audio ? `${x.audio.codec}${x.audio.sample_rate ? ` ${x.audio.sample_rate / 1000} kHz` : ''}` : 'no audio';
    return [v, a];
  }
  views.streams = () => {
    const body = h('tbody');
    const clientsBody = h('tbody');
    const previewBox = h('div', { id: 'preview-box' });
    const empty = h('p', { class: 'muted', id: 'streams-empty' });
    let previewing = null;
    view.append(
      h('h1', {}, 'Streams'),
      h('div', { class: 'card' }, h('table', { id: 'streams' },
        h('thead', {}, h('tr', {}, ['Stream', 'Video', 'Audio', 'Resolution', 'Bitrate', 'Players', 'Drops', 'Uptime', 'Publisher', ''].map((t) => h('th', {}, t)))), body),
        empty),
      previewBox,
      h('div', { class: 'card' }, h('h2', {}, 'Clients'), h('table', { id: 'clients' },
        h('thead', {}, h('tr', {}, ['Id', 'Stream', 'Role', 'Protocol', 'Address', 'Rate', 'Connected', ''].map((t) => h('th', {}, t)))), clientsBody)),
    );
    function preview(stream) {
      previewing = stream;
      previewBox.replaceChildren(h('div', { class: 'card' }, h('h2', {}, `Preview: ${stream}`),
        h('iframe', { class: 'preview', id: 'preview-frame', src: playerUrl(stream, bestProtocol()), allow: 'autoplay; fullscreen' }),
        h('p', {}, h('a', { href: `#/play?stream=${encodeURIComponent(stream)}` }, 'All play URLs and the embed code'), ' ', h('button', { onclick: () => { previewing = null; previewBox.replaceChildren(); } }, 'Close'))));
    }
    async function kick(id, what) {
      if (!confirm(`Disconnect ${what}?`)) return;
      try {
        await remove(`clients/${encodeURIComponent(id)}`);
      } catch (e) {
        alert(`Not disconnected: ${e.message}`);
      }
    }
    every(2000, async () => {
      const [streams, clients] = await Promise.all([api('streams?count=1000'), api('clients?count=1000')]);
      const live = streams.streams.filter((x) => x.publish.active);
      empty.textContent = live.length ? '' : 'Nothing is live. Publish with: ffmpeg -re -i video.mp4 -c copy -f flv rtmp://host/live/livestream';
      body.replaceChildren(...live.map((x) => {
        const name = `${x.app}/${x.name}`;
        const [v, a] = tracks(x);
        return h('tr', { 'data-stream': name },
          h('td', {}, h('b', {}, name), x.vhost !== '__defaultVhost__' ? h('div', { class: 'muted' }, x.vhost) : null),
          h('td', { class: 'codec' }, v), h('td', { class: 'audio' }, a),
          h('td', { class: 'resolution' }, x.video ? `${x.video.width}x${x.video.height}` : '-'),
          h('td', { class: 'num' }, kbps(x.kbps.recv_30s)), h('td', { class: 'num players' }, x.players),
          h('td', { class: 'num' }, x.frames_dropped + x.publish_dropped), h('td', {}, duration(x.live_ms)),
          h('td', {}, x.publish.protocol || ''),
          h('td', {}, h('button', { 'data-preview': name, onclick: () => preview(name) }, 'Preview'), ' ',
            h('a', { class: 'button', href: `#/play?stream=${encodeURIComponent(name)}` }, 'Play & embed'), ' ',
            x.publish.cid ? h('button', { class: 'danger', 'data-kick-publisher': name, onclick: () => kick(x.publish.cid, `the publisher of ${name}`) }, 'Kick publisher') : null));
      }));
      if (previewing && !live.some((x) => `${x.app}/${x.name}` === previewing)) previewBox.querySelector('h2').textContent = `Preview: ${previewing} (offline)`;
      clientsBody.replaceChildren(...clients.clients.map((c) => h('tr', { 'data-client': c.id, 'data-stream': c.stream || '' },
        h('td', { class: 'muted' }, c.id), h('td', {}, c.stream || '-'), h('td', {}, c.publish ? 'publisher' : c.type || '-'),
        h('td', {}, c.protocol), h('td', {}, c.ip), h('td', { class: 'num' }, kbps(c.publish ? c.kbps.recv_30s : c.kbps.send_30s)),
        h('td', {}, duration(c.alive * 1000)),
        h('td', {}, h('button', { class: 'danger kick', onclick: () => kick(c.id, `${c.protocol} client ${c.id} (${c.ip})`) }, 'Kick')))));
    });
  };

  // Play and embed: every URL of a stream, a player, and embed snippets.
  views.play = (params) => {
    const picker = h('select', { id: 'play-stream', onchange: (e) => { location.hash = `#/play?stream=${encodeURIComponent(e.target.value)}`; } });
    view.append(h('h1', {}, 'Play and embed'), h('div', { class: 'row' }, h('label', {}, 'Stream', picker)));
    const content = h('div');
    view.append(content);
    api('streams?count=1000').then((list) => {
      const names = list.streams.filter((x) => x.publish.active).map((x) => `${x.app}/${x.name}`);
      const stream = params.get('stream') || names[0];
      if (stream && !validStream(stream)) {
        content.append(h('p', { class: 'error' }, 'That is not a stream name (app/name, e.g. live/livestream).'));
        return;
      }
      if (stream && !names.includes(stream)) names.unshift(stream);
      picker.replaceChildren(...names.map((n) => h('option', { value: n, selected: n === stream }, n)));
      if (!stream) {
        content.append(h('p', { class: 'muted' }, 'Nothing is live yet. Type a stream to prepare its URLs: '), h('input', { placeholder: 'live/livestream', onchange: (e) => { location.hash = `#/play?stream=${encodeURIComponent(e.target.value)}`; } }));
        return;
      }
      const urls = h('tbody');
      for (const [label, url] of playUrls(stream)) urls.append(h('tr', {}, h('td', {}, label), h('td', {}, h('code', {}, url)), h('td', {}, copyButton(url))));
      const protocol = h('select', { id: 'embed-protocol' }, [['hls', 'HLS'], ['flv', 'HTTP-FLV'], ['ts', 'HTTP-TS'], ['dash', 'DASH'], ['webrtc', 'WebRTC']]
        .filter(([p]) => (p !== 'hls' || info.hls) && (p !== 'dash' || info.dash) && (p !== 'webrtc' || info.ports.rtc)).map(([p, l]) => h('option', { value: p }, l)));
      const autoplay = h('input', { type: 'checkbox', id: 'embed-autoplay', checked: true });
      const muted = h('input', { type: 'checkbox', id: 'embed-muted', checked: true });
      const iframeCode = h('pre', { id: 'embed-iframe' });
      const scriptCode = h('pre', { id: 'embed-script' });
      const frame = h('iframe', { class: 'preview', id: 'play-frame', allow: 'autoplay; fullscreen' });
      const id = `estuary-${stream.replace(/[^A-Za-z0-9]/g, '-')}`;
      function render() {
        const flags = `&autoplay=${autoplay.checked ? 1 : 0}&muted=${muted.checked ? 1 : 0}`;
        const src = playerUrl(stream, protocol.value, flags);
        iframeCode.textContent = `<iframe src="${src}" width="640" height="360" frameborder="0" allow="autoplay; fullscreen; picture-in-picture" allowfullscreen></iframe>`;
        scriptCode.textContent = `<video id="${id}" controls playsinline${autoplay.checked ? ' autoplay' : ''}${muted.checked ? ' muted' : ''} style="width:100%;max-width:960px;background:#000"></video>\n`
          + `<script src="${new URL('console/player.js', root).href}"></script>\n`
          + `<script>EstuaryPlayer.attach(document.getElementById(${js(id)}), { stream: ${js(stream)}, protocol: ${js(protocol.value)}, autoplay: ${autoplay.checked} });</script>`;
        if (frame.getAttribute('src') !== src) frame.setAttribute('src', src);
      }
      for (const input of [protocol, autoplay, muted]) input.addEventListener('change', render);
      render();
      content.append(
        h('div', { class: 'card' }, h('h2', {}, 'Play URLs'), h('table', { class: 'urls', id: 'urls' }, urls),
          h('p', { class: 'muted' }, 'Publish to it: ', h('code', {}, info.ports.rtmp ? `ffmpeg -re -i video.mp4 -c copy -f flv rtmp://${location.hostname}:${info.ports.rtmp}/${stream}` : ''))),
        h('div', { class: 'card' }, h('h2', {}, 'Player'), h('div', { class: 'row' }, h('label', {}, 'Protocol', protocol), h('label', {}, 'Autoplay', autoplay), h('label', {}, 'Muted', muted)), frame),
        h('div', { class: 'card' }, h('h2', {}, 'Embed'),
          h('p', { class: 'muted' }, 'An iframe of the player page (works on any site):'), iframeCode, copyButton(() => iframeCode.textContent),
          h('p', { class: 'muted' }, 'Or a plain <video> with the player script (for site builders such as WordPress; the page\'s own styles apply):'), scriptCode, copyButton(() => scriptCode.textContent)),
      );
    }).catch(showError);
  };

  // Virtual live: upload a file, pick a stream name, add restream destinations, start.
  views['virtual-live'] = () => {
    const file = h('input', { type: 'file', id: 'vl-file', accept: 'video/mp4,video/x-flv,video/mp2t,.mp4,.m4v,.mov,.flv,.ts' });
    const bar = h('div');
    const uploadState = h('span', { id: 'vl-upload-state', class: 'muted' });
    const source = h('select', { id: 'vl-source' });
    const stream = h('input', { id: 'vl-stream', value: 'live/channel1', size: 24 });
    const destinations = h('div', { id: 'vl-destinations' });
    const startState = h('p', { id: 'vl-status', class: 'muted' });
    const channels = h('tbody');
    function destinationRow() {
      const row = h('div', { class: 'row dest' },
        h('label', {}, 'Platform URL', h('input', { class: 'vl-url', size: 40, placeholder: 'rtmp://a.rtmp.youtube.com/live2' })),
        h('label', {}, 'Stream key', h('input', { class: 'vl-key', size: 24, placeholder: 'xxxx-xxxx-xxxx' })),
        h('button', { type: 'button', onclick: () => row.remove() }, 'Remove'));
      destinations.append(row);
    }
    async function loadUploads(select) {
      const list = await api('uploads');
      source.replaceChildren(...list.uploads.map((u) => h('option', { value: u.file, selected: u.name === select }, `${u.name} (${bytes(u.bytes)})`)));
    }
    function upload() {
      const chosen = file.files[0];
      if (!chosen) { uploadState.textContent = 'Choose a file first.'; return; }
      if (chosen.size > info.uploads.max_bytes) { uploadState.textContent = `The file is larger than this node accepts (${bytes(info.uploads.max_bytes)}).`; return; }
      const xhr = new XMLHttpRequest();
      xhr.open('POST', new URL(`api/v1/uploads?name=${encodeURIComponent(chosen.name)}`, root));
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      if (credentials()) xhr.setRequestHeader('Authorization', credentials());
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.style.width = `${(100 * e.loaded) / e.total}%`; uploadState.textContent = `Uploading ${bytes(e.loaded)} of ${bytes(e.total)}`; };
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status === 401) { signIn().then(upload); return; }
        if (xhr.status !== 200) { uploadState.textContent = `Upload refused: ${body.message || xhr.status}`; uploadState.className = 'error'; return; }
        uploadState.className = 'ok';
        uploadState.textContent = `Uploaded ${body.name}: ${bytes(body.bytes)}, ${duration(body.duration_ms)}${body.video ? `, ${body.video.codec} ${body.video.width}x${body.video.height}` : ''}`;
        loadUploads(body.name);
      };
      xhr.onerror = () => { uploadState.textContent = 'The upload was cut off.'; uploadState.className = 'error'; };
      xhr.send(chosen);
    }
    async function start() {
      const name = stream.value.trim();
      const at = name.lastIndexOf('/');
      if (!source.value) { startState.textContent = 'Upload or choose a file first.'; return; }
      if (at <= 0) { startState.textContent = 'The stream must be app/name, e.g. live/channel1.'; return; }
      const [app, streamName] = [name.slice(0, at), name.slice(at + 1)];
      try {
        await post('ingests', { app, stream: streamName, source: source.value, looped: true });
        for (const row of destinations.querySelectorAll('.dest')) {
          const url = row.querySelector('.vl-url').value.trim();
          const key = row.querySelector('.vl-key').value.trim();
          if (url) await post('forwards', { app, stream: streamName, url: key ? `${url.replace(/\/+$/, '')}/${key}` : url });
        }
        startState.className = 'ok';
        startState.textContent = `Started ${name}.`;
      } catch (e) {
        startState.className = 'error';
        startState.textContent = `Not started: ${e.message}`;
      }
    }
    view.append(h('h1', {}, 'Virtual live'),
      h('div', { class: 'card' }, h('h2', {}, '1. The video'),
        h('div', { class: 'row' }, file, h('button', { id: 'vl-upload', onclick: upload }, 'Upload'), h('div', { class: 'progress' }, bar), uploadState),
        h('div', { class: 'row' }, h('label', {}, `Files on the node (${info.uploads.media_dir})`, source))),
      h('div', { class: 'card' }, h('h2', {}, '2. The channel'), h('div', { class: 'row' }, h('label', {}, 'Stream (app/name)', stream)),
        h('h2', {}, '3. Restream to'), destinations, h('button', { id: 'vl-add-dest', onclick: destinationRow }, 'Add a destination'),
        h('p', {}, h('button', { class: 'primary', id: 'vl-start', onclick: start }, 'Start the channel')), startState),
      h('div', { class: 'card' }, h('h2', {}, 'Channels'), h('table', { id: 'channels' },
        h('thead', {}, h('tr', {}, ['Stream', 'File', 'State', 'Loops', 'Restreams', 'Last error', ''].map((t) => h('th', {}, t)))), channels)));
    destinationRow();
    loadUploads().catch(showError);
    every(2000, async () => {
      const [ingests, forwards] = await Promise.all([api('ingests'), api('forwards')]);
      channels.replaceChildren(...ingests.ingests.map((i) => h('tr', { 'data-stream': i.stream },
        h('td', {}, i.stream), h('td', { class: 'muted' }, i.source.split('/').pop()), h('td', {}, pill(i.state)), h('td', { class: 'num' }, i.loops),
        h('td', {}, forwards.forwards.filter((f) => f.stream === i.stream).map((f) => h('div', {}, pill(f.state), ' ', f.url, f.last_error ? h('span', { class: 'error' }, ` ${f.last_error}`) : null))),
        h('td', { class: 'error' }, i.last_error || ''),
        h('td', {}, h('button', { class: 'danger', onclick: () => remove(`ingests/${i.id}`).catch(showError) }, 'Stop')))));
    });
  };

  // Restreams, ingests and transcodes: list, add, remove.
  views.jobs = () => {
    const tables = {};
    const section = (title, id, columns, form) => {
      tables[id] = h('tbody');
      view.append(h('div', { class: 'card' }, h('h2', {}, title), form, h('table', { id }, h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))), tables[id])));
    };
    const field = (label, attrs) => h('label', {}, label, h('input', attrs));
    const submit = (build, path) => async (e) => {
      e.preventDefault();
      try {
        await post(path, build(new FormData(e.target)));
        e.target.reset();
      } catch (error) {
        alert(`Refused: ${error.message}`);
      }
    };
    const split = (name) => [name.slice(0, name.lastIndexOf('/')), name.slice(name.lastIndexOf('/') + 1)];
    view.append(h('h1', {}, 'Restreams, ingests and transcodes'));
    section('Restreams (forwards)', 'forwards', ['Stream', 'Destination', 'State', 'Sent', 'Retries', 'Last error', ''],
      h('form', { class: 'row', onsubmit: submit((f) => { const [app, stream] = split(f.get('stream')); return { app, stream, url: f.get('url') }; }, 'forwards') },
        field('Stream', { name: 'stream', placeholder: 'live/livestream', required: true }), field('Destination URL', { name: 'url', size: 48, placeholder: 'rtmp://a.rtmp.youtube.com/live2/<key>', required: true }), h('button', {}, 'Add')));
    section('Ingests (virtual live and pulls)', 'ingests', ['Stream', 'Source', 'State', 'Loops', 'Last error', ''],
      h('form', { class: 'row', onsubmit: submit((f) => { const [app, stream] = split(f.get('stream')); return { app, stream, source: f.get('source'), looped: true }; }, 'ingests') },
        field('Stream', { name: 'stream', placeholder: 'live/channel1', required: true }), field('Source (file on the node, or rtmp/srt/http URL)', { name: 'source', size: 48, required: true }), h('button', {}, 'Add')));
    section('Transcodes', 'transcodes', ['Source', 'Output', 'State', 'fps', 'Restarts', 'Last error', ''],
      h('form', { class: 'row', onsubmit: submit((f) => { const [app, stream] = split(f.get('stream')); return { app, stream, renditions: [{ suffix: f.get('suffix'), height: Number(f.get('height')), video_kbps: Number(f.get('kbps')), codec: f.get('codec') || 'h264' }] }; }, 'transcodes') },
        field('Live stream', { name: 'stream', placeholder: 'live/livestream', required: true }), field('Suffix', { name: 'suffix', value: '_720p', size: 8 }),
        field('Height', { name: 'height', value: '720', size: 5 }), field('Video kbit/s', { name: 'kbps', value: '2500', size: 6 }),
        h('label', {}, 'Codec', h('select', { name: 'codec' }, h('option', { value: 'h264' }, 'H.264'), h('option', { value: 'h265' }, 'H.265'))), h('button', {}, 'Add')));
    const stop = (path) => h('button', { class: 'danger', onclick: () => remove(path).catch(showError) }, 'Remove');
    every(2000, async () => {
      const [f, i, t] = await Promise.all([api('forwards'), api('ingests'), api('transcodes')]);
      tables.forwards.replaceChildren(...f.forwards.map((x) => h('tr', {}, h('td', {}, x.stream), h('td', {}, x.url), h('td', {}, pill(x.state)), h('td', { class: 'num' }, bytes(x.bytes_sent)), h('td', { class: 'num' }, x.retries), h('td', { class: 'error' }, x.last_error || ''), h('td', {}, stop(`forwards/${x.id}`)))));
      tables.ingests.replaceChildren(...i.ingests.map((x) => h('tr', {}, h('td', {}, x.stream), h('td', {}, x.source), h('td', {}, pill(x.state)), h('td', { class: 'num' }, x.loops), h('td', { class: 'error' }, x.last_error || ''), h('td', {}, stop(`ingests/${x.id}`)))));
      tables.transcodes.replaceChildren(...t.transcodes.map((x) => h('tr', {}, h('td', {}, x.source), h('td', {}, x.output), h('td', {}, pill(x.state)), h('td', { class: 'num' }, x.fps), h('td', { class: 'num' }, x.restarts), h('td', { class: 'error' }, x.last_error || ''), h('td', {}, stop(`transcodes/${x.id}`)))));
    });
  };

  // Recordings: coverage of a stream on a timeline; a range played or downloaded as MP4.
  views.recordings = (params) => {
    const picker = h('select', { id: 'rec-stream' });
    const timeline = h('div', { id: 'rec-timeline' });
    const start = h('input', { id: 'rec-start', size: 24 });
    const end = h('input', { id: 'rec-end', size: 24 });
    const player = h('div', { class: 'clip' });
    const download = h('a', { class: 'button', id: 'rec-download', download: '' }, 'Download MP4');
    const summary = h('p', { class: 'muted', id: 'rec-summary' });
    view.append(h('h1', {}, 'Recordings'),
      h('div', { class: 'card' }, h('div', { class: 'row' }, h('label', {}, 'Stream', picker)), summary, timeline,
        h('p', { class: 'muted' }, 'Click the timeline twice to choose a range, or type the times (UTC).'),
        h('div', { class: 'row' }, h('label', {}, 'From', start), h('label', {}, 'To', end), h('button', { class: 'primary', id: 'rec-play', onclick: play }, 'Play'), download)),
      h('div', { class: 'card' }, h('h2', {}, 'Clip'), player));
    let selection = null;
    let span = null;
    function clipUrl() {
      const [a, b] = [Date.parse(start.value), Date.parse(end.value)];
      if (!(a < b)) return null;
      return new URL(`dvr/${picker.value}.mp4?start=${a}&end=${b}`, root).href;
    }
    function updateDownload() {
      const url = clipUrl();
      if (url) download.setAttribute('href', url); else download.removeAttribute('href');
    }
    for (const input of [start, end]) input.addEventListener('change', () => { updateDownload(); draw(); });
    function play() {
      const url = clipUrl();
      if (!url) { player.replaceChildren(h('p', { class: 'error' }, 'Choose a range: From must be before To.')); return; }
      player.replaceChildren(h('video', { id: 'rec-video', controls: true, autoplay: true, muted: true, playsinline: true, src: url }));
    }
    let data = null;
    function draw() {
      if (!data || !span) return;
      const [w, hgt] = [1000, 56];
      const x = (t) => ((t - span[0]) / (span[1] - span[0])) * w;
      const svg = s('svg', { class: 'timeline', viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none' });
      svg.append(s('rect', { x: 0, y: 8, width: w, height: 30, fill: '#eef1f4' }));
      for (const c of data.coverage) svg.append(s('rect', { class: 'covered', x: x(c.start_ms), y: 8, width: Math.max(1, x(c.end_ms) - x(c.start_ms)), height: 30 }, s('title', {}, `${iso(c.start_ms)} - ${iso(c.end_ms)}`)));
      for (const g of data.gaps) svg.append(s('rect', { class: 'gap', x: x(g.start_ms), y: 8, width: Math.max(1, x(g.end_ms) - x(g.start_ms)), height: 30 }, s('title', {}, `gap ${duration(g.duration_ms)}${g.reason ? `: ${g.reason}` : ''}`)));
      const [a, b] = [Date.parse(start.value), Date.parse(end.value)];
      if (a < b) svg.append(s('rect', { class: 'selection', x: x(a), y: 4, width: Math.max(2, x(b) - x(a)), height: 38 }));
      svg.append(s('text', { x: 2, y: 53, 'font-size': 11, fill: '#667085' }, iso(span[0])), s('text', { x: w - 2, y: 53, 'font-size': 11, fill: '#667085', 'text-anchor': 'end' }, iso(span[1])));
      svg.addEventListener('click', (e) => {
        const box = svg.getBoundingClientRect();
        const t = Math.round(span[0] + ((e.clientX - box.left) / box.width) * (span[1] - span[0]));
        if (!selection) { selection = t; start.value = iso(t); end.value = ''; } else { [start.value, end.value] = [iso(Math.min(selection, t)), iso(Math.max(selection, t))]; selection = null; }
        updateDownload();
        draw();
      });
      timeline.replaceChildren(svg);
    }
    async function load() {
      if (!picker.value) return;
      const [app, stream] = [picker.value.slice(0, picker.value.lastIndexOf('/')), picker.value.slice(picker.value.lastIndexOf('/') + 1)];
      data = await api(`recordings?app=${encodeURIComponent(app)}&stream=${encodeURIComponent(stream)}`);
      if (!data.coverage.length) { timeline.replaceChildren(); summary.textContent = 'No recordings of this stream.'; return; }
      const total = data.coverage.reduce((n, c) => n + c.duration_ms, 0);
      summary.textContent = `${data.total} recording file(s), ${duration(total)} recorded, ${data.gaps.length} gap(s)`;
      span = [data.coverage[0].start_ms, data.coverage[data.coverage.length - 1].end_ms];
      if (!start.value) {
        const last = data.coverage[data.coverage.length - 1];
        start.value = iso(last.start_ms);
        end.value = iso(last.end_ms);
        updateDownload();
      }
      draw();
    }
    picker.addEventListener('change', () => { start.value = ''; end.value = ''; load().catch(showError); });
    api('recordings').then((list) => {
      const names = [...new Set(list.recordings.map((r) => `${r.app}/${r.stream}`))].sort();
      if (!names.length) { summary.textContent = 'Nothing has been recorded. Recording is switched on by dvr.enabled, or per stream with POST /api/v1/dvr?app=..&stream=..&action=start.'; return; }
      const wanted = params.get('stream');
      picker.replaceChildren(...names.map((n) => h('option', { value: n, selected: n === wanted }, n)));
      return load();
    }).catch(showError);
  };

  // GB28181 devices: online state, channels, invite and bye, play.
  views.gb28181 = () => {
    const body = h('tbody');
    view.append(h('h1', {}, 'GB28181 devices'), h('div', { class: 'card' }, h('table', { id: 'devices' },
      h('thead', {}, h('tr', {}, ['Device', 'Address', 'State', 'Last seen', 'Channel', 'Session', ''].map((t) => h('th', {}, t)))), body)));
    if (!info.gb28181) { view.append(h('p', { class: 'muted' }, 'GB28181 is off on this node (gb28181.enabled = false).')); return; }
    const act = (device, channel, action) => post(`gb28181/devices/${encodeURIComponent(device)}/channels/${encodeURIComponent(channel)}/${action}`).catch(showError);
    every(3000, async () => {
      const list = await api('gb28181/devices');
      body.replaceChildren(...list.devices.flatMap((d) => (d.channels.length ? d.channels : [null]).map((c, i) => h('tr', {},
        h('td', {}, i ? '' : d.id), h('td', {}, i ? '' : d.address), h('td', {}, i ? '' : pill(d.online ? 'online' : 'offline')), h('td', {}, i ? '' : `${d.last_seen_s}s ago`),
        h('td', {}, c ? `${c.id} ${c.name}` : h('span', { class: 'muted' }, 'no catalog yet')), h('td', {}, c ? pill(c.session) : ''),
        h('td', {}, c ? [h('button', { onclick: () => act(d.id, c.id, 'invite') }, 'Invite'), ' ', h('button', { onclick: () => act(d.id, c.id, 'bye') }, 'Bye'), ' ',
          c.stream ? h('a', { class: 'button', href: `#/play?stream=${encodeURIComponent(c.stream)}` }, 'Play') : null] : null)))));
    });
  };

  // Cluster: nodes and which node owns which stream.
  views.cluster = () => {
    const box = h('div');
    view.append(h('h1', {}, 'Cluster'), box);
    every(3000, async () => {
      const c = await api('cluster');
      if (c.mode === 'standalone') { box.replaceChildren(h('p', { class: 'card muted' }, 'This node is standalone (no cluster.redis_url).')); return; }
      const nodes = (c.nodes || []).map((n) => h('tr', {}, h('td', {}, n.id), h('td', {}, n.role), h('td', {}, n.rtmp || ''), h('td', {}, n.http || ''),
        h('td', { class: 'num' }, n.streams ?? ''), h('td', { class: 'num' }, n.clients ?? ''), h('td', { class: 'num' }, n.cpu_percent !== undefined ? `${n.cpu_percent} %` : ''),
        h('td', {}, n.heartbeat_ms ? `${Math.max(0, Math.round((Date.now() - n.heartbeat_ms) / 1000))}s ago` : '')));
      const streams = (c.streams || []).map((x) => h('tr', {}, h('td', {}, x.stream), h('td', {}, x.owner)));
      box.replaceChildren(
        h('div', { class: 'card' }, h('p', {}, `This node: ${c.node_id} (${c.mode}); registry ${c.registry.url}: `, c.registry.reachable ? pill('online') : pill('offline'))),
        h('div', { class: 'card' }, h('h2', {}, 'Nodes'), h('table', { id: 'cluster-nodes' }, h('thead', {}, h('tr', {}, ['Node', 'Role', 'RTMP', 'HTTP', 'Streams', 'Clients', 'CPU', 'Heartbeat'].map((t) => h('th', {}, t)))), h('tbody', {}, nodes))),
        h('div', { class: 'card' }, h('h2', {}, 'Stream owners'), h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Stream'), h('th', {}, 'Owner'))), h('tbody', {}, streams))));
    });
  };

  function showError(error) {
    const box = document.getElementById('view-error') || view.insertBefore(h('p', { id: 'view-error', class: 'error' }), view.firstChild);
    box.textContent = error.message || String(error);
  }

  async function route() {
    timers.forEach(clearInterval);
    timers = [];
    const [path, query] = (location.hash.replace(/^#\/?/, '') || 'dashboard').split('?');
    const name = views[path] ? path : 'dashboard';
    for (const link of document.querySelectorAll('#nav a')) link.classList.toggle('active', link.getAttribute('href') === `#/${name}`);
    view.replaceChildren();
    view.dataset.view = name;
    try {
      if (!info) {
        info = await api('console');
        document.getElementById('node').textContent = `${location.host} - Estuary ${info.version}`;
      }
      await views[name](new URLSearchParams(query || ''));
    } catch (error) {
      showError(error);
    }
  }
  window.addEventListener('hashchange', route);
  route();
})();
