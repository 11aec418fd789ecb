// Watching a running session over /ws/live: the screen as it is now, then
// every recorded event as it happens (well under a second behind).
import { api, el, section, fmtTime, b64bytes, b64text, printable, wsURL, notice } from './lib.js';
import { createTerminal } from './term.js';
import { stepUp } from './webauthn.js';
import { statementView } from './pgview.js';

export async function render(root) {
  const id = decodeURIComponent(location.pathname.split('/').pop());
  const s = await api('GET', '/api/v1/sessions/' + encodeURIComponent(id));
  const status = el('p', { id: 'live-status', class: 'live-status' }, '● connecting…');
  const body = el('div', { id: 'watch' });
  const reason = el('input', { id: 'terminate-reason', placeholder: 'reason (required)', size: 30 });
  const kill = el('button', { id: 'terminate', class: 'danger' }, 'Terminate session');
  const killBox = el('div', { class: 'inline', hidden: !s.can_terminate }, reason, kill);
  kill.addEventListener('click', async () => {
    if (!reason.value.trim()) { notice(root, 'error', 'Give a reason for terminating the session.'); reason.focus(); return; }
    kill.disabled = true;
    try {
      const body = { reason: reason.value.trim() };
      try {
        await api('POST', `/api/v1/sessions/${encodeURIComponent(id)}/kill`, body);
      } catch (e) {
        // identity.step_up.terminate_session: confirm with a passkey
        // bound to this session, then try once more.
        if (e.code !== 'step_up_required') throw e;
        body.step_up = await stepUp('session.terminate', id);
        await api('POST', `/api/v1/sessions/${encodeURIComponent(id)}/kill`, body);
      }
      notice(root, 'ok', 'Session terminated.');
    } catch (e) { notice(root, 'error', e.message); kill.disabled = false; }
  });
  root.append(el('h1', null, `Live: ${s.user}@${s.target}`),
    el('p', { class: 'muted' }, `${s.id} · ${s.role} · ${s.protocol} · started ${fmtTime(s.started_at)}`), status, killBox, body);

  let term = null;
  let channel = 0;
  let stmts = null;
  const inputPane = el('pre', { class: 'input-pane', id: 'input-pane' });
  const connect = () => {
    const ws = new WebSocket(wsURL('/ws/live?session=' + encodeURIComponent(id)));
    ws.onmessage = async (m) => {
      const msg = JSON.parse(m.data);
      switch (msg.type) {
        case 'meta':
          status.textContent = '● live';
          status.className = 'live-status on';
          body.replaceChildren();
          if (msg.terminal) {
            const screen = el('div', { class: 'screen' });
            body.append(section('Terminal', el('div', { class: 'screen-row' }, screen, inputPane)));
            term = await createTerminal(screen, msg.cols || 80, msg.rows || 24);
            body.dataset.renderer = term.kind;
            term.reset(msg.cols || 80, msg.rows || 24, msg.data, msg.text);
            channel = msg.channel;
          } else {
            const box = el('div');
            body.append(section('Statements', box));
            stmts = statementView(box);
            stmts.add(msg.recent || []);
          }
          body.dataset.ready = 'yes';
          break;
        case 'events':
          for (const e of msg.events) {
            if (stmts) { stmts.add([e]); continue; }
            if (!term || e.ch !== channel) continue;
            if (e.k === 'output' || e.k === 'stderr') term.write(b64bytes(e.d));
            else if (e.k === 'input') inputPane.textContent = (inputPane.textContent + printable(b64text(e.d))).slice(-4000);
            else if (e.k === 'resize') term.resize(e.cols, e.rows);
          }
          body.dataset.events = String(Number(body.dataset.events || 0) + msg.events.length);
          break;
        case 'end':
          status.textContent = `■ session ${msg.state}` + (msg.by ? ` by ${msg.by}` : '') + (msg.reason ? `: ${msg.reason}` : '');
          status.className = 'live-status off';
          status.dataset.ended = msg.state;
          killBox.hidden = true;
          break;
        case 'lagged':
          ws.close();
          setTimeout(connect, 200);
          break;
        case 'error':
          notice(root, 'error', msg.message);
          break;
      }
    };
    ws.onclose = (ev) => {
      if (!status.dataset.ended && ev.code !== 1000) status.textContent = '● disconnected';
    };
  };
  connect();
}
