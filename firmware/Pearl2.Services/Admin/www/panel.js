// The Pearl2 admin panel: one page over the device's REST API (/api/v2.0 and /api/v2.0/x-pearl2), with a session
// cookie and the session's CSRF token on every change. Everything shown is set with textContent: names never become markup.
'use strict';

const API = '/api/v2.0';
const X = API + '/x-pearl2';
const RANK = { viewer: 1, operator: 2, admin: 3 };
let session = null;        // { user, role, csrf }
let timers = [];           // what the current page polls; stopped when the page changes
let lastStatus = null;

const $ = (sel, root = document) => root.querySelector(sel);

/** Makes an element: el('p', { class: 'x', text: 'hi' }, child, …). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'checked' || k === 'value' || k === 'disabled') e[k] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function call(method, path, body) {
  const headers = { 'X-Pearl2-Panel': '1' };
  if (session && session.csrf && method !== 'GET') headers['X-CSRF-Token'] = session.csrf;
  let payload;
  if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = typeof body === 'string' ? body : JSON.stringify(body); }
  const r = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  let json = null;
  try { json = await r.json(); } catch { /* not JSON */ }
  if (r.status === 401 && session && path !== X + '/session') { session = null; start(); }
  return { ok: r.ok, status: r.status, json, result: json && json.result, message: json && json.message, errors: (json && json.errors) || [] };
}

function can(role) { return session && RANK[session.role] >= RANK[role]; }

function stopTimers() { timers.forEach(clearInterval); timers = []; }
function every(ms, f) { f(); timers.push(setInterval(f, ms)); }

function show(...nodes) {
  const app = $('#app');
  app.replaceChildren(...nodes);
}

function notice(text, kind = 'error') { return el('p', { class: 'notice ' + kind, role: kind === 'error' ? 'alert' : 'status', text }); }

function bytes(n) {
  if (n < 1024) return n + ' B';
  const u = ['KiB', 'MiB', 'GiB', 'TiB']; let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(n < 10 ? 1 : 0) + ' ' + u[i];
}
function clock(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  return (h ? h + ':' : '') + String(m).padStart(h ? 2 : 1, '0') + ':' + String(sec).padStart(2, '0');
}

// ---- first run and login ----

async function start() {
  stopTimers();
  const s = await call('GET', X + '/session');
  if (s.ok) { session = s.result; return enter(); }
  session = null;
  $('#nav').hidden = true;
  const setup = await call('GET', X + '/setup');
  if (setup.ok && setup.result.pending) return showSetup();
  showLogin();
}

function showSetup() {
  const error = el('div');
  const user = el('input', { id: 'setup-user', name: 'username', value: 'admin', autocomplete: 'username', required: true });
  const pass = el('input', { id: 'setup-password', name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const again = el('input', { id: 'setup-again', name: 'again', type: 'password', autocomplete: 'new-password', required: true });
  const form = el('form', { class: 'card narrow', onsubmit: async e => {
    e.preventDefault();
    if (pass.value !== again.value) { error.replaceChildren(notice('The two passwords differ.')); return; }
    const r = await call('POST', X + '/setup', { username: user.value, password: pass.value });
    if (!r.ok) { error.replaceChildren(notice(r.message || 'Setup failed')); return; }
    session = r.result; enter();
  } },
    el('h1', { text: 'Welcome' }),
    el('p', { text: 'This device has no admin password yet. Choose one: it is the only way in.' }),
    el('label', { for: 'setup-user', text: 'Admin user name' }), user,
    el('label', { for: 'setup-password', text: 'Password (at least 8 characters)' }), pass,
    el('label', { for: 'setup-again', text: 'Password again' }), again,
    error,
    el('button', { type: 'submit', id: 'setup-submit', text: 'Create the admin password' }));
  show(form);
}

function showLogin() {
  const error = el('div');
  const user = el('input', { id: 'login-user', name: 'username', autocomplete: 'username', required: true });
  const pass = el('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  show(el('form', { class: 'card narrow', onsubmit: async e => {
    e.preventDefault();
    const r = await call('POST', X + '/login', { username: user.value, password: pass.value });
    if (!r.ok) { error.replaceChildren(notice(r.status === 429 ? 'Too many failed logins: wait a minute.' : (r.message || 'Login failed'))); return; }
    session = r.result; enter();
  } },
    el('h1', { text: 'Log in' }),
    el('label', { for: 'login-user', text: 'User name' }), user,
    el('label', { for: 'login-password', text: 'Password' }), pass,
    error,
    el('button', { type: 'submit', id: 'login-submit', text: 'Log in' })));
}

function enter() {
  $('#nav').hidden = false;
  for (const a of document.querySelectorAll('#nav [data-role]')) a.hidden = !can(a.dataset.role);
  $('#device-name').textContent = 'Pearl2 · ' + session.user + ' (' + session.role + ')';
  route();
}

$('#logout').addEventListener('click', async () => { await call('POST', X + '/logout'); session = null; location.hash = ''; start(); });
window.addEventListener('hashchange', () => { if (session) route(); });

function route() {
  stopTimers();
  const page = (location.hash || '#dashboard').slice(1);
  const pages = { dashboard: [showDashboard, 'viewer'], recordings: [showRecordings, 'operator'], settings: [showSettings, 'admin'],
    firmware: [showFirmware, 'admin'], system: [showSystem, 'viewer'] };
  const [f, role] = pages[page] || pages.dashboard;
  if (!can(role)) { show(notice('Your role (' + session.role + ') cannot open this page.')); return; }
  f();
}

// ---- dashboard ----

function showDashboard() {
  const grid = el('div', { class: 'tiles', id: 'tiles' });
  const banner = el('div');
  const streaming = el('button', { id: 'streaming-toggle', type: 'button', hidden: !can('operator'), onclick: async () => {
    const on = lastStatus && lastStatus.streaming;
    const r = await call('POST', X + '/streaming/' + (on ? 'stop' : 'start'));
    if (!r.ok) banner.replaceChildren(notice(r.message));
  } });
  const upload = el('div', { class: 'card', id: 'upload', hidden: true });
  show(el('section', {}, el('div', { class: 'row' }, el('h1', { text: 'Dashboard' }), streaming), banner, grid, upload));
  const tiles = new Map();
  every(2000, async () => {
    const r = await call('GET', X + '/status');
    if (!r.ok) return;
    const s = lastStatus = r.result;
    $('#device-name').textContent = s.name + ' · ' + session.user + ' (' + session.role + ')';
    streaming.textContent = s.streaming ? 'Stop streaming' : 'Start streaming';
    streaming.className = s.streaming ? 'on' : '';
    for (const ch of s.channels) {
      let t = tiles.get(ch.id);
      if (!t) { t = tile(ch, banner); tiles.set(ch.id, t); grid.append(t.root); }
      t.update(ch);
    }
    // A channel removed from the config takes its tile with it.
    for (const [id, t] of tiles) if (!s.channels.some(ch => ch.id === id)) { t.root.remove(); tiles.delete(id); }
    // Automatic upload, each target: the queue, the file in flight with a progress bar, the last error, then its files.
    const targets = (s.uploads || []).filter(u => u.state !== 'disabled');
    upload.hidden = targets.length === 0;
    upload.replaceChildren(...targets.map(u => {
      const card = el('div', { class: 'upload-target', 'data-target': u.id },
        el('h2', { text: 'Upload' + (u.channel ? ' of ' + u.channel : '') + ' to ' + u.host + ' (' + u.protocol + '): ' + u.state }),
        el('p', { class: 'upload-queue', id: u.id === '0' ? 'upload-queue' : null, text: u.queued_files + ' file(s) waiting, ' + bytes(u.queued_bytes) + ' · ' + u.uploaded + ' uploaded since start' }));
      if (u.file) card.append(el('p', { text: u.file + ' · ' + bytes(u.file_bytes) + ' of ' + bytes(u.file_size) + ' · ' + bytes(u.bytes_per_second) + '/s' }),
        el('progress', { id: u.id === '0' ? 'upload-progress' : null, max: u.file_size || 1, value: u.file_bytes }));
      if (u.error) card.append(notice(u.error, u.state === 'failed' ? 'error' : 'ok'));
      const rows = u.files.slice(0, 12).map(f => el('tr', { 'data-file': f.name, 'data-state': f.state },
        el('td', { text: f.name }), el('td', { text: f.state }),
        el('td', {}, f.state === 'uploading' ? el('progress', { max: f.size || 1, value: f.bytes }) : null,
          el('span', { text: f.state === 'uploading' ? ' ' + bytes(f.bytes) + ' of ' + bytes(f.size) : bytes(f.size) })),
        el('td', { text: f.reason || f.remote || '' })));
      if (rows.length) card.append(el('table', { class: 'upload-files' }, el('tbody', {}, ...rows)));
      return card;
    }));
  });
  // Previews: a few frames a second, each tile fetching its next picture when the last one arrived.
  every(350, () => { for (const t of tiles.values()) t.refresh(); });
  // Audio meters: the levels of every channel in one small answer, four times a second.
  let levelsBusy = false;
  every(250, async () => {
    if (levelsBusy || document.hidden) return;
    levelsBusy = true;
    try {
      const r = await call('GET', X + '/levels');
      if (r.ok) for (const l of r.result) { const t = tiles.get(l.id); if (t) t.level(l.audio_dbfs); }
    } finally { levelsBusy = false; }
  });
}

function tile(ch, banner) {
  const img = el('img', { class: 'preview', alt: 'Channel ' + ch.id + ' preview', id: 'preview-' + ch.id });
  const name = el('h2');
  const info = el('p', { class: 'info' });
  const rec = el('p', { class: 'rec' });
  const urls = el('dl', { class: 'urls' });
  const recordButton = el('button', { type: 'button', id: 'record-' + ch.id, hidden: !can('operator') });
  const bars = [el('span', { class: 'bar' }), el('span', { class: 'bar' })];
  const meter = el('div', { class: 'meter', id: 'meter-' + ch.id, role: 'meter', 'aria-label': 'Audio level, left and right', title: '' }, ...bars);
  let busy = false, recording = false, refused = false;
  recordButton.addEventListener('click', async () => {
    const r = await call('POST', API + '/recorders/' + ch.id + '/control/' + (recording ? 'stop' : 'start'));
    if (!r.ok) banner.replaceChildren(notice(r.message));
  });
  const pubs = el('ul', { class: 'publishers', id: 'publishers-' + ch.id });
  const root = el('article', { class: 'card tile', id: 'tile-' + ch.id }, img, meter, name, info, rec, recordButton, pubs, urls);
  let lastUrl = null;
  return {
    root,
    async refresh() {
      if (busy || refused || document.hidden) return;
      busy = true;
      try {
        const r = await fetch(API + '/channels/' + ch.id + '/preview?resolution=320', { credentials: 'same-origin', headers: { 'X-Pearl2-Panel': '1' } });
        if (r.status === 403) {
          // Not for this user (a private channel, or one with its own viewer login): say why, once, and stop asking.
          refused = true;
          const j = await r.json().catch(() => null);
          img.replaceWith(el('p', { class: 'preview nopreview', id: 'preview-' + ch.id, text: (j && j.message) || 'No preview for you' }));
        } else if (r.ok && (r.headers.get('content-type') || '').startsWith('image/')) {
          const url = URL.createObjectURL(await r.blob());
          img.src = url;
          if (lastUrl) URL.revokeObjectURL(lastUrl);
          lastUrl = url;
        }
      } catch { /* the next one */ } finally { busy = false; }
    },
    level(dbfs) {
      // -60 dBFS empty, 0 dBFS full; the number is in the title and in data-dbfs.
      dbfs.forEach((d, i) => { bars[i].style.width = Math.max(0, Math.min(100, (d + 60) / 60 * 100)) + '%'; bars[i].className = 'bar' + (d > -3 ? ' hot' : ''); });
      meter.dataset.dbfs = dbfs.join(',');
      meter.title = 'L ' + dbfs[0] + ' dBFS, R ' + dbfs[1] + ' dBFS';
    },
    update(c) {
      name.textContent = c.id + ' · ' + c.name;
      const viewers = Object.entries(c.viewers).map(([k, v]) => k + ' ' + v).join(', ');
      info.textContent = c.width + '×' + c.height + ' @ ' + c.fps + ' fps · ' + c.bitrate_kbps + ' kbit/s · viewers: ' + (viewers || '0')
        + (c.streaming ? '' : ' · streaming off') + (c.login_required ? ' · viewer login' : '');
      recording = c.recorder.state === 'recording';
      const since = c.recorder.since ? (Date.now() - Date.parse(c.recorder.since)) / 1000 : 0;
      rec.textContent = recording ? '● Recording ' + clock(since) + (c.recorder.file ? ' · ' + c.recorder.file : '')
        : c.recorder.state === 'none' ? '' : 'Recorder ' + c.recorder.state + (c.recorder.error ? ': ' + c.recorder.error : '');
      rec.className = 'rec ' + (recording ? 'on' : '');
      recordButton.textContent = recording ? 'Stop recording' : 'Record';
      recordButton.className = recording ? 'on' : '';
      // Each streaming server the channel is pushed to: its state, rate and drops, and a Start/Stop button.
      pubs.replaceChildren(...(c.publishers || []).map(p => el('li', { 'data-publisher': p.id, 'data-state': p.state },
        el('span', { class: 'pub-name', text: p.name + ' (' + p.type + ')' }),
        el('span', { class: 'pub-state ' + (p.state === 'started' ? 'on' : ''), text: ' ' + p.state
          + (p.state === 'started' ? ' · ' + Math.round(p.bits_per_second / 1000) + ' kbit/s' : '')
          + (p.dropped_gops ? ' · ' + p.dropped_gops + ' GOPs dropped' : '') + (p.rtt_ms !== undefined ? ' · RTT ' + p.rtt_ms + ' ms' : '')
          + (p.error && p.state !== 'started' ? ' · ' + p.error : '') }),
        can('operator') ? el('button', { type: 'button', class: 'pub-toggle', text: p.started ? 'Stop' : 'Start', onclick: async () => {
          const r = await call('POST', API + '/channels/' + ch.id + '/publishers/' + p.id + '/control/' + (p.started ? 'stop' : 'start'));
          if (!r.ok) banner.replaceChildren(notice(r.message));
        } }) : null)));
      urls.replaceChildren(...Object.entries(c.urls).flatMap(([k, v]) => [el('dt', { text: k }),
        el('dd', {}, el('code', { text: v }), el('button', { type: 'button', class: 'copy', text: 'Copy', onclick: () => navigator.clipboard && navigator.clipboard.writeText(v) }))]));
    },
  };
}

// ---- recordings ----

async function showRecordings() {
  const list = el('div');
  const player = el('div');
  show(el('section', {}, el('h1', { text: 'Recordings' }), player, list));
  const r = await call('GET', X + '/recordings');
  if (!r.ok) { list.replaceChildren(notice(r.message)); return; }
  const byRecorder = new Map();
  for (const f of r.result) { const k = f.recorder || '-'; if (!byRecorder.has(k)) byRecorder.set(k, []); byRecorder.get(k).push(f); }
  if (r.result.length === 0) list.append(el('p', { text: 'No recordings yet.' }));
  for (const [rid, files] of byRecorder) {
    const rows = files.map(f => {
      const url = API + '/recorders/' + rid + '/archive/files/' + encodeURIComponent(f.id);
      return el('tr', { 'data-file': f.id },
        el('td', { text: f.id }), el('td', { text: new Date(f.created).toLocaleString() }), el('td', { text: clock(f.duration) }),
        el('td', { text: bytes(f.size) }), el('td', { text: f.recording ? 'recording' : '' }),
        el('td', {},
          rid === '-' ? null : el('button', { type: 'button', text: 'Play', onclick: () => player.replaceChildren(el('video', { src: url, controls: true, autoplay: true, class: 'player' })) }),
          rid === '-' ? null : el('a', { href: url, download: f.id, text: 'Download' }),
          rid === '-' || f.recording ? null : el('button', { type: 'button', class: 'danger', text: 'Delete', onclick: async () => {
            if (!confirm('Delete ' + f.id + '?')) return;
            const d = await call('DELETE', url);
            if (d.ok) showRecordings(); else list.prepend(notice(d.message));
          } })));
    });
    list.append(el('h2', { text: rid === '-' ? 'Other files' : 'Recorder ' + rid }),
      el('table', {}, el('thead', {}, el('tr', {}, ...['File', 'Started', 'Duration', 'Size', '', ''].map(h => el('th', { text: h })))), el('tbody', {}, ...rows)));
  }
}

// ---- settings ----

/** An input bound to a config path ("channels[0].video.width"); errors for that path appear under it. */
function field(config, path, label, type = 'text', extra = {}) {
  const get = () => path.split(/\.|\[|\]\.?/).filter(Boolean).reduce((o, k) => (o == null ? undefined : o[k]), config);
  const set = v => {
    const keys = path.split(/\.|\[|\]\.?/).filter(Boolean);
    let o = config;
    for (const k of keys.slice(0, -1)) o = o[k];
    o[keys[keys.length - 1]] = v;
  };
  const id = 'f-' + path.replace(/[^a-zA-Z0-9]/g, '-');
  const input = type === 'checkbox' ? el('input', { id, type, checked: !!get(), 'data-path': path })
    : type === 'select' ? el('select', { id, 'data-path': path }, ...extra.options.map(o => el('option', { value: o, text: o })))
    : el('input', { id, type, value: get() ?? '', 'data-path': path, ...extra });
  if (type === 'select') input.value = get();
  input.addEventListener('change', () => set(type === 'checkbox' ? input.checked : type === 'number' ? Number(input.value) : (input.value === '' && extra.nullable ? null : input.value)));
  return el('div', { class: 'field' }, el('label', { for: id, text: label }), input, el('span', { class: 'field-error', 'data-error-for': path }));
}

/** A channel's streaming servers: each one's fields, a Remove button, and buttons to add an RTMP or an SRT destination. */
function publisherFields(config, c, p) {
  const box = el('div', { class: 'sub publishers-settings' });
  const draw = () => {
    c.publishers = c.publishers || [];
    box.replaceChildren(el('h3', { text: 'Streaming servers' }), ...c.publishers.map((d, j) => {
      const q = p + '.publishers[' + j + ']';
      const common = [field(config, q + '.name', 'Name'), field(config, q + '.enabled', 'Start with the channel', 'checkbox'),
        field(config, q + '.streamButton', 'Start and stop with the Stream button', 'checkbox'), field(config, q + '.disableAudio', 'Video only', 'checkbox')];
      const own = d.type === 'srt'
        ? [field(config, q + '.mode', 'Mode', 'select', { options: ['caller', 'listener'] }), field(config, q + '.host', 'Host (caller)'),
           field(config, q + '.port', 'UDP port', 'number'), field(config, q + '.latencyMs', 'Latency (ms)', 'number'),
           field(config, q + '.passphrase', 'Passphrase (10–79 characters, empty: none)', 'password'),
           field(config, q + '.keyLength', 'Key length (0, 16, 24, 32)', 'number'), field(config, q + '.streamId', 'Stream id')]
        : [field(config, q + '.url', 'URL (rtmp:// or rtmps://host/app)'), field(config, q + '.streamKey', 'Stream key', 'password')];
      return el('fieldset', { class: 'publisher', 'data-publisher': String(j) }, el('legend', { text: (d.type || 'rtmp').toUpperCase() + ' ' + j }),
        ...common, ...own, el('button', { type: 'button', class: 'danger', text: 'Remove', onclick: () => { c.publishers.splice(j, 1); draw(); } }));
    }), el('button', { type: 'button', text: 'Add RTMP server', onclick: () => { c.publishers.push({ name: 'RTMP ' + c.publishers.length, type: 'rtmp', enabled: false, url: 'rtmp://', streamKey: '' }); draw(); } }),
      el('button', { type: 'button', text: 'Add SRT destination', onclick: () => { c.publishers.push({ name: 'SRT ' + c.publishers.length, type: 'srt', enabled: false, mode: 'caller', host: '', port: 9000, latencyMs: 120 }); draw(); } }));
  };
  draw();
  return box;
}

/** The fields of one upload target: the device's ("upload") or a channel's own ("channels[i].upload"). */
function uploadTargetFields(config, p) {
  return [field(config, p + '.enabled', 'Upload every finished recording', 'checkbox'),
    field(config, p + '.protocol', 'Protocol', 'select', { options: ['ftp', 'ftps', 'sftp'] }),
    field(config, p + '.host', 'Server'), field(config, p + '.port', 'Port (0: the protocol\'s own)', 'number'),
    field(config, p + '.username', 'User name'), field(config, p + '.password', 'Password', 'password'),
    field(config, p + '.remotePath', 'Remote path ({channel} {serial} {date} {yyyy} {MM} {dd} {HH} {file})'),
    field(config, p + '.deleteAfterUpload', 'Delete here once uploaded', 'checkbox'),
    field(config, p + '.bandwidthKbps', 'Bandwidth limit (kbit/s, 0: none)', 'number'),
    field(config, p + '.tlsPinSha256', 'FTPS: server certificate SHA-256 (empty: the system\'s trust)', 'text', { nullable: true })];
}

async function showSettings() {
  const r = await call('GET', X + '/config');
  if (!r.ok) { show(notice(r.message)); return; }
  const config = r.result.config;
  const result = el('div', { id: 'settings-result' });
  const sections = [];
  sections.push(el('fieldset', {}, el('legend', { text: 'Device' }),
    field(config, 'device.name', 'Name'), field(config, 'device.location', 'Location'), field(config, 'device.description', 'Description')));
  config.channels.forEach((c, i) => {
    const p = 'channels[' + i + ']';
    const login = el('input', { id: 'f-login-' + i, type: 'checkbox', checked: !!c.auth });
    const loginFields = el('div', { class: 'sub' });
    const drawLogin = () => {
      loginFields.replaceChildren();
      if (c.auth) loginFields.append(field(config, p + '.auth.username', 'Viewer user name'), field(config, p + '.auth.password', 'Viewer password', 'password'));
    };
    login.addEventListener('change', () => { c.auth = login.checked ? { username: 'viewer', password: '', allowBasic: false } : null; drawLogin(); });
    drawLogin();
    // A channel's own upload target: its files go there instead of to the device's.
    const ownUpload = el('input', { id: 'f-own-upload-' + i, type: 'checkbox', checked: !!c.upload });
    const uploadFields = el('div', { class: 'sub' });
    const drawUpload = () => { uploadFields.replaceChildren(...(c.upload ? uploadTargetFields(config, p + '.upload') : [])); };
    ownUpload.addEventListener('change', () => {
      c.upload = ownUpload.checked ? { enabled: true, protocol: 'ftp', host: '', port: 0, username: '', password: '', remotePath: '{channel}/{date}/{file}', deleteAfterUpload: false, bandwidthKbps: 0, tlsPinSha256: null, timeoutSeconds: 30 } : null;
      drawUpload();
    });
    drawUpload();
    sections.push(el('fieldset', { id: 'channel-' + (i + 1) }, el('legend', { text: 'Channel ' + (i + 1) }),
      field(config, p + '.name', 'Name'), field(config, p + '.source', 'Source'),
      field(config, p + '.video.width', 'Width', 'number'), field(config, p + '.video.height', 'Height', 'number'),
      field(config, p + '.video.fps', 'Frame rate', 'number'), field(config, p + '.video.bitrateKbps', 'Bitrate (kbit/s)', 'number'),
      field(config, p + '.video.keyFrameIntervalFrames', 'Key frame every (frames)', 'number'),
      field(config, p + '.audio.enabled', 'Audio', 'checkbox'), field(config, p + '.streaming', 'Streaming', 'checkbox'),
      field(config, p + '.record', 'Record with the Record button', 'checkbox'),
      el('div', { class: 'field' }, el('label', { for: 'f-login-' + i, text: 'Viewer login' }), login), loginFields,
      el('div', { class: 'field' }, el('label', { for: 'f-own-upload-' + i, text: 'Upload to its own server' }), ownUpload), uploadFields,
      publisherFields(config, c, p)));
  });
  sections.push(el('fieldset', {}, el('legend', { text: 'Recording' }),
    field(config, 'recording.format', 'Format', 'select', { options: ['mp4', 'ts'] }),
    field(config, 'recording.rotateSeconds', 'New file every (s)', 'number'), field(config, 'recording.rotateMegabytes', 'or every (MB)', 'number'),
    field(config, 'recording.spaceLimitMegabytes', 'Space limit (MB, 0: none)', 'number'), field(config, 'recording.minFreeMegabytes', 'Keep free (MB)', 'number')));
  sections.push(el('fieldset', { id: 'upload-settings' }, el('legend', { text: 'Automatic upload of recordings' }), ...uploadTargetFields(config, 'upload')));
  sections.push(el('fieldset', { id: 'discovery' }, el('legend', { text: 'Discovery on the LAN' }),
    field(config, 'discovery.mdns', 'mDNS / Bonjour (name.local, the channels as RTSP services)', 'checkbox'),
    field(config, 'discovery.upnp', 'UPnP / DLNA media server (smart TVs, VLC, Kodi)', 'checkbox'),
    field(config, 'discovery.hostName', 'Host name (empty: pearl2-<serial>)')));
  sections.push(el('fieldset', {}, el('legend', { text: 'Firmware updates' }),
    field(config, 'update.url', 'Update server URL (empty: no updates)', 'url', { nullable: true }),
    field(config, 'update.intervalSeconds', 'Check every (s)', 'number')));
  const save = el('button', { type: 'submit', id: 'settings-save', text: 'Apply' });
  const form = el('form', { class: 'card', onsubmit: async e => {
    e.preventDefault();
    for (const s of form.querySelectorAll('.field-error')) s.textContent = '';
    const put = await call('PUT', X + '/config', JSON.stringify(config));
    if (put.ok) { result.replaceChildren(notice('Applied (config version ' + put.result.version + ').', 'ok')); return; }
    const unplaced = [];
    for (const err of put.errors) {
      const path = err.split(':')[0];
      const slot = form.querySelector('[data-error-for="' + CSS.escape(path) + '"]');
      if (slot) slot.textContent = err.slice(path.length + 1).trim(); else unplaced.push(err);
    }
    result.replaceChildren(notice('Not applied: ' + (put.errors.length ? put.errors.length + ' error(s)' : put.message)), ...unplaced.map(u => notice(u)));
  } }, ...sections, result, save);
  show(el('section', {}, el('h1', { text: 'Settings' }), form, await usersCard(), await certificateCard()));
}

async function usersCard() {
  const r = await call('GET', X + '/users');
  const out = el('div');
  const rows = (r.result || []).map(u => el('tr', {}, el('td', { text: u.name }), el('td', { text: u.role }),
    el('td', {}, el('button', { type: 'button', class: 'danger', text: 'Remove', onclick: async () => {
      const d = await call('DELETE', X + '/users/' + encodeURIComponent(u.name));
      if (d.ok) route(); else out.replaceChildren(notice(d.message));
    } }))));
  const name = el('input', { id: 'user-name', required: true });
  const role = el('select', { id: 'user-role' }, ...['viewer', 'operator', 'admin'].map(o => el('option', { value: o, text: o })));
  const pass = el('input', { id: 'user-password', type: 'password', autocomplete: 'new-password' });
  return el('form', { class: 'card', id: 'users', onsubmit: async e => {
    e.preventDefault();
    const body = { role: role.value };
    if (pass.value) body.password = pass.value;
    const p = await call('PUT', X + '/users/' + encodeURIComponent(name.value), body);
    if (p.ok) route(); else out.replaceChildren(notice(p.message));
  } }, el('h2', { text: 'Users' }),
    el('table', {}, el('tbody', {}, ...rows)),
    el('div', { class: 'field' }, el('label', { for: 'user-name', text: 'User name' }), name),
    el('div', { class: 'field' }, el('label', { for: 'user-role', text: 'Role' }), role),
    el('div', { class: 'field' }, el('label', { for: 'user-password', text: 'Password (empty: keep)' }), pass),
    out, el('button', { type: 'submit', id: 'user-save', text: 'Add or change user' }));
}

async function certificateCard() {
  const r = await call('GET', X + '/certificate');
  const out = el('div');
  const cert = el('textarea', { id: 'cert-pem', rows: 4, placeholder: '-----BEGIN CERTIFICATE-----' });
  const key = el('textarea', { id: 'cert-key', rows: 4, placeholder: '-----BEGIN PRIVATE KEY-----' });
  return el('form', { class: 'card', onsubmit: async e => {
    e.preventDefault();
    const p = await call('PUT', X + '/certificate', { certificate: cert.value, key: key.value });
    out.replaceChildren(p.ok ? notice('Certificate replaced.', 'ok') : notice(p.message));
  } }, el('h2', { text: 'HTTPS certificate' }),
    el('p', { text: r.ok ? r.result.subject + ' · SHA-256 ' + r.result.sha256 + ' · until ' + r.result.not_after.slice(0, 10) : (r.message || '') }),
    el('label', { for: 'cert-pem', text: 'New certificate (PEM)' }), cert, el('label', { for: 'cert-key', text: 'Its private key (PEM)' }), key,
    out, el('button', { type: 'submit', text: 'Upload' }));
}

// ---- firmware ----

function showFirmware() {
  const info = el('dl', { id: 'firmware-info' });
  const bar = el('progress', { id: 'firmware-progress', max: 100, value: 0, hidden: true });
  const phase = el('p', { id: 'firmware-phase' });
  const out = el('div');
  const check = el('button', { type: 'button', id: 'firmware-check', text: 'Check now', onclick: async () => {
    check.disabled = true;
    out.replaceChildren(notice('Checking…', 'ok'));
    const r = await call('POST', X + '/firmware/check');
    check.disabled = false;
    out.replaceChildren(r.ok ? notice(r.result, r.result.startsWith('error') ? 'error' : 'ok') : notice(r.message));
  } });
  show(el('section', { class: 'card' }, el('h1', { text: 'Firmware' }), info, phase, bar, check, out));
  every(1000, async () => {
    const r = await call('GET', X + '/firmware');
    if (!r.ok) return;
    const f = r.result;
    info.replaceChildren(el('dt', { text: 'Version' }), el('dd', { text: f.version + ' (Pearl API: ' + f.pearl_version + ')' }),
      el('dt', { text: 'Slot' }), el('dd', { text: f.slot || '-' }),
      el('dt', { text: 'Update server' }), el('dd', { text: f.update_url || 'none' }),
      el('dt', { text: 'Last result' }), el('dd', { id: 'firmware-last', text: (f.update && f.update.last_result) || '-' }));
    const u = f.update;
    phase.textContent = u ? 'Update: ' + u.phase + (u.version ? ' ' + u.version : '') + (u.total ? ' · ' + bytes(u.bytes) + ' of ' + bytes(u.total) : '') : 'Updates are off.';
    bar.hidden = !(u && u.total);
    if (u && u.total) bar.value = u.percent;
  });
}

// ---- system: ports and the live log ----

async function showSystem() {
  const ports = await call('GET', X + '/ports');
  const log = el('pre', { id: 'log', class: 'log' });
  show(el('section', {}, el('h1', { text: 'System' }),
    el('div', { class: 'card' }, el('h2', { text: 'Ports' }), el('table', { id: 'ports' },
      el('thead', {}, el('tr', {}, ...['Port', 'Protocol', 'What', 'Set by'].map(h => el('th', { text: h })))),
      el('tbody', {}, ...(ports.result || []).map(p => el('tr', {}, el('td', { text: String(p.port) }), el('td', { text: p.protocol }), el('td', { text: p.owner }), el('td', { text: p.field })))))),
    can('admin') ? el('div', { class: 'card' }, el('h2', { text: 'Log' }), log) : null));
  if (!can('admin')) return;
  let after = 0;
  every(2000, async () => {
    const r = await call('GET', X + '/log?after=' + after);
    if (!r.ok) return;
    after = r.result.last;
    if (r.result.lines.length) {
      log.append(r.result.lines.join('\n') + '\n');
      while (log.childNodes.length > 50) log.removeChild(log.firstChild);
      log.scrollTop = log.scrollHeight;
    }
  });
}

start();
