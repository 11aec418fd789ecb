// Shared helpers. Rule for every page: text from the server (and above all
// from recordings) is only ever set as text: el() builds nodes with
// createTextNode and attributes through setAttribute on an allow-list.
// No page ever parses a string as markup.

let meCache = null;

const allowedAttrs = new Set(['id', 'name', 'type', 'value', 'placeholder', 'for', 'size', 'href', 'download', 'title',
  'colspan', 'role', 'min', 'max', 'step', 'inputmode', 'autocomplete', 'required', 'hidden', 'aria-label', 'disabled', 'checked']);

export function el(tag, props, ...children) {
  const n = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') n.className = v;
      else if (k === 'text') n.textContent = String(v);
      else if (k === 'on') for (const [ev, f] of Object.entries(v)) n.addEventListener(ev, f);
      else if (k === 'dataset') Object.assign(n.dataset, v);
      else if (!allowedAttrs.has(k)) throw new Error('el: refusing attribute ' + k);
      else if (k === 'href' && !/^(\/|#|\?)/.test(String(v))) throw new Error('el: only local links');
      else n.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

export function clear(n) {
  while (n.firstChild) n.removeChild(n.firstChild);
  return n;
}

export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    if (meCache) headers['X-CSRF-Token'] = meCache.csrf;
  }
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  const ct = res.headers.get('Content-Type') || '';
  if (ct.includes('application/json')) data = await res.json();
  if (!res.ok) {
    const e = (data && data.error) || { code: 'http_' + res.status, message: res.statusText };
    // Only a lost sign-in sends the user back to the sign-in page; a
    // refused second factor (also 401) is shown where it was given.
    if (res.status === 401 && e.code === 'unauthenticated' && document.body.dataset.page !== 'login') {
      location.assign('/ui/login?next=' + encodeURIComponent(location.pathname + location.search));
    }
    throw new APIError(res.status, e.code, e.message);
  }
  return data;
}

export async function me() {
  if (!meCache) meCache = await api('GET', '/api/v1/whoami');
  return meCache;
}

export function setMe(m) { meCache = m; }

export function fmtDuration(msTotal) {
  if (msTotal === undefined || msTotal === null || isNaN(msTotal)) return '';
  let s = Math.max(0, Math.floor(msTotal / 1000));
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const pad = (x) => String(x).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

export function fmtBytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + u[i];
}

export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function table(columns, rows, opts = {}) {
  const t = el('table', { class: opts.class || 'grid' });
  t.append(el('thead', null, el('tr', null, columns.map((c) => el('th', null, c)))));
  const tb = el('tbody');
  if (rows.length === 0) {
    tb.append(el('tr', null, el('td', { class: 'muted', colspan: columns.length }, opts.empty || 'Nothing to show.')));
  }
  for (const r of rows) tb.append(r instanceof Node ? r : el('tr', null, r.map((c) => el('td', null, c))));
  t.append(tb);
  return t;
}

export function notice(parent, kind, text) {
  const n = el('p', { class: 'notice ' + kind, role: kind === 'error' ? 'alert' : 'status' }, text);
  parent.prepend(n);
  setTimeout(() => n.remove(), 8000);
  return n;
}

// advice says what the reader can do about an API error, by its code
// (docs/api.md lists them); codes not here show the broker's message.
const advice = {
  not_configured: 'This broker has nothing of this kind configured yet. An operator adds it to custos.yaml and restarts or reloads the broker (see docs/operator-guide.md).',
  forbidden: 'Your account may not see this. Ask a security admin if you need it.',
  not_found: 'It does not exist, or no longer does: check the link, or go back to the list.',
  no_view: 'There is no such saved view: pick one from the list.',
  not_live: 'That session is not running any more: find its recording under Sessions.',
  recording_unavailable: 'The recording store did not answer. Try again in a minute; if it persists, operators find the cause in the broker log.',
  internal: 'The broker hit an internal problem. Try again; if it persists, operators find the cause in the broker log.',
  network: 'The broker did not answer. Check that it is running (make up in development) and reload the page.',
};

// explain is a sentence for a failed call: the broker's message and what
// to do about it.
export function explain(e) {
  if (e instanceof TypeError) return advice.network;
  const msg = e && e.message ? e.message : String(e);
  const hint = e && (advice[e.code] || (e.status >= 500 ? advice.internal : ''));
  if (!hint) return msg;
  return msg && e.code !== 'not_configured' ? `${msg.replace(/\.?$/, '.')} ${hint}` : hint;
}

// emptyState is a panel for a page or section with nothing to show: what
// it is and what to do, with optional commands shown as code.
export function emptyState(id, text, ...commands) {
  return el('div', { class: 'empty-state', id, role: 'status' }, el('p', null, text),
    commands.length ? el('ul', null, commands.map((c) => el('li', null, el('code', null, c)))) : null);
}

export function section(title, ...children) {
  return el('section', { class: 'card' }, el('h2', null, title), ...children);
}

export function b64bytes(s) {
  const bin = atob(s || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });
export function b64text(s) { return utf8.decode(b64bytes(s)); }

// printable shows control characters of typed input as symbols.
export function printable(s) {
  return s.replace(/\r\n|\r|\n/g, '⏎\n').replace(/\x1b\[[0-9;]*[A-Za-z~]|\x1bO[A-Za-z]/g, (m) => {
    const names = { '\x1b[A': '↑', '\x1b[B': '↓', '\x1b[C': '→', '\x1b[D': '←', '\x1bOA': '↑', '\x1bOB': '↓', '\x1bOC': '→', '\x1bOD': '←' };
    return names[m] || '⎋';
  }).replace(/\x7f/g, '⌫').replace(/\t/g, '⇥').replace(/[\x00-\x08\x0b-\x1f]/g, (c) => '^' + String.fromCharCode(c.charCodeAt(0) + 64));
}

export function wsURL(path) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return proto + '//' + location.host + path;
}
