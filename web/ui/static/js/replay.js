// Replay of a stored recording over /ws/replay. The page never holds the
// whole recording: it asks for the next stretch of events as playback
// approaches it, and a seek asks the broker for the screen at that instant
// (built from the nearest keyframe) and continues from there.
import { api, el, section, fmtDuration, fmtTime, b64bytes, b64text, printable, wsURL, notice } from './lib.js';
import { createTerminal } from './term.js';
import { statementView } from './pgview.js';

const LOOKAHEAD_MS = 15000;

export async function render(root) {
  const id = decodeURIComponent(location.pathname.split('/').pop());
  const s = await api('GET', '/api/v1/sessions/' + encodeURIComponent(id));
  root.append(el('h1', null, `${s.protocol === 'postgres' ? 'Statements' : 'Replay'}: ${s.user}@${s.target}`),
    el('p', { class: 'muted' }, `${s.id} · ${s.role} · started ${fmtTime(s.started_at)} · ${fmtDuration(s.duration_ms)} · ${s.state}`,
      s.end_reason ? ` (${s.end_reason})` : '', ' · ', el('a', { href: '/ui/verify/' + encodeURIComponent(id) }, 'Verify')));
  const ws = new WebSocket(wsURL('/ws/replay?session=' + encodeURIComponent(id)));
  if (s.protocol === 'postgres') return pgReplay(root, ws);
  return terminalReplay(root, ws, s);
}

function pgReplay(root, ws) {
  const box = el('div', { id: 'pg' });
  root.append(section('Statement timeline', box));
  const view = statementView(box);
  const status = el('p', { class: 'muted', id: 'pg-status' }, 'Loading…');
  box.prepend(status);
  let n = 0;
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === 'meta') ws.send(JSON.stringify({ op: 'next', id: 0, until: 1e15 }));
    if (msg.type === 'events') {
      view.add(msg.events);
      n += msg.events.length;
      if (!msg.done) ws.send(JSON.stringify({ op: 'next', id: 0, until: 1e15 }));
      else { status.textContent = `${n} events loaded.`; box.dataset.loaded = 'yes'; }
    }
    if (msg.type === 'error') notice(root, 'error', msg.message);
  };
}

async function terminalReplay(root, ws, s) {
  const player = el('div', { class: 'player', id: 'player' });
  const screenBox = el('div', { class: 'screen' });
  const inputPane = el('pre', { class: 'input-pane', id: 'input-pane', hidden: true });
  const play = el('button', { id: 'play', class: 'primary' }, '▶ Play');
  const speed = el('select', { id: 'speed' }, [0.5, 1, 2, 4, 8].map((x) => el('option', { value: String(x) }, x + '×')));
  speed.value = '1';
  const skipIdle = el('input', { type: 'checkbox', id: 'skip-idle' });
  const showInput = el('input', { type: 'checkbox', id: 'show-input' });
  const timeline = el('input', { type: 'range', id: 'timeline', min: '0', max: '0', step: '100', value: '0', 'aria-label': 'timeline' });
  const clock = el('span', { id: 'clock', class: 'num' }, '0:00');
  const markersBar = el('div', { class: 'markers', id: 'markers' });
  const markerList = el('ol', { class: 'marker-list', id: 'marker-list' });
  player.append(
    el('div', { class: 'controls' }, play, el('label', null, 'Speed ', speed), el('label', null, skipIdle, ' Skip idle'),
      el('label', null, showInput, ' Show input'), clock),
    el('div', { class: 'timeline' }, timeline, markersBar),
    el('div', { class: 'screen-row' }, screenBox, inputPane));
  root.append(section('Terminal', player), section('Commands and file transfers', markerList));

  const st = { id: 0, playing: false, t: 0, queue: [], fetched: 0, done: false, waiting: false, duration: 0, last: 0, ready: false };
  let term = null;
  let channel = 0;

  const send = (o) => ws.readyState === 1 && ws.send(JSON.stringify(o));
  const seek = (t) => {
    st.id++;
    st.queue = [];
    st.waiting = true;
    st.ready = false;
    player.dataset.state = 'seeking';
    player.dataset.seekStarted = String(performance.now());
    send({ op: 'seek', id: st.id, t: Math.max(0, Math.min(t, st.duration)) });
  };
  const requestMore = () => {
    if (st.done || st.waiting) return;
    st.waiting = true;
    send({ op: 'next', id: st.id, until: st.fetched + LOOKAHEAD_MS * Number(speed.value) });
  };
  const setPlaying = (on) => {
    st.playing = on;
    play.textContent = on ? '❚❚ Pause' : '▶ Play';
    player.dataset.playing = on ? 'yes' : 'no';
    st.last = performance.now();
  };
  play.addEventListener('click', () => {
    if (!st.playing && st.done && st.queue.length === 0 && st.t >= st.duration - 1) seek(0);
    setPlaying(!st.playing);
  });
  showInput.addEventListener('change', () => { inputPane.hidden = !showInput.checked; });
  timeline.addEventListener('change', () => seek(Number(timeline.value)));

  const apply = (e) => {
    switch (e.k) {
      case 'output': case 'stderr':
        if (e.ch === channel) term.write(b64bytes(e.d));
        break;
      case 'input':
        if (e.ch === channel) {
          inputPane.textContent = (inputPane.textContent + printable(b64text(e.d))).slice(-4000);
          inputPane.scrollTop = inputPane.scrollHeight;
        }
        break;
      case 'resize':
        if (e.ch === channel) term.resize(e.cols, e.rows);
        break;
    }
  };

  const tick = (now) => {
    if (st.playing && st.ready) {
      const dt = (now - st.last) * Number(speed.value);
      let next = st.t + dt;
      if (skipIdle.checked && st.queue.length && st.queue[0].t - st.t > 1000) next = Math.max(next, st.queue[0].t - 250);
      if (!st.done && next > st.fetched) next = st.fetched; // wait for data
      st.t = Math.min(next, st.duration);
      while (st.queue.length && st.queue[0].t <= st.t) apply(st.queue.shift());
      if (st.done && st.queue.length === 0 && st.t >= st.duration) setPlaying(false);
    }
    st.last = now;
    if (st.ready && !st.done && st.fetched - st.t < LOOKAHEAD_MS * Number(speed.value) / 2) requestMore();
    if (document.activeElement !== timeline) timeline.value = String(Math.round(st.t));
    clock.textContent = `${fmtDuration(st.t)} / ${fmtDuration(st.duration)}`;
    player.dataset.t = String(Math.round(st.t));
    requestAnimationFrame(tick);
  };

  ws.onmessage = async (m) => {
    const msg = JSON.parse(m.data);
    switch (msg.type) {
      case 'meta':
        st.duration = msg.duration_ms;
        channel = msg.channel;
        timeline.max = String(msg.duration_ms);
        term = await createTerminal(screenBox, msg.cols || 80, msg.rows || 24);
        player.dataset.renderer = term.kind;
        seek(0);
        requestAnimationFrame(tick);
        break;
      case 'index':
        markersBar.replaceChildren();
        markerList.replaceChildren();
        for (const mk of msg.markers) {
          const pos = st.duration ? (mk.t / st.duration) * 100 : 0;
          const tickEl = el('button', { class: 'marker marker-' + mk.kind, title: `${fmtDuration(mk.t)} ${mk.kind}: ${mk.label}`, 'aria-label': mk.kind + ' ' + mk.label });
          tickEl.style.left = pos + '%';
          tickEl.addEventListener('click', () => seek(mk.t));
          markersBar.append(tickEl);
          const go = el('button', { class: 'link' }, fmtDuration(mk.t));
          go.addEventListener('click', () => seek(mk.t));
          markerList.append(el('li', { class: 'marker-' + mk.kind }, go, ' ', el('span', { class: 'kind' }, mk.kind), ' ', el('code', null, mk.label)));
        }
        if (!msg.markers.length) markerList.append(el('li', { class: 'muted' }, 'No commands or file transfers recorded.'));
        player.dataset.indexed = 'yes';
        break;
      case 'frame':
        if (msg.id !== st.id) return;
        term.reset(msg.cols, msg.rows, msg.data, msg.text);
        st.t = msg.t;
        st.fetched = msg.t;
        st.done = false;
        st.waiting = false;
        st.ready = true;
        player.dataset.state = 'ready';
        player.dataset.frameT = String(msg.t);
        player.dataset.seekMs = String(Math.round(performance.now() - Number(player.dataset.seekStarted)));
        player.dataset.serverSeekMs = String(msg.took_ms);
        requestMore();
        break;
      case 'events':
        if (msg.id !== st.id) return;
        st.queue.push(...msg.events);
        st.fetched = msg.more && msg.events.length ? msg.events[msg.events.length - 1].t : msg.until;
        st.done = msg.done;
        st.waiting = false;
        if (msg.more) requestMore();
        break;
      case 'error':
        notice(root, 'error', msg.message);
        break;
    }
  };
  ws.onclose = () => { player.dataset.closed = 'yes'; };
}
