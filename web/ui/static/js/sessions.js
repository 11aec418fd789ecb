import { api, el, table, fmtBytes, fmtDuration, fmtTime, section, notice, explain } from './lib.js';

function verifyCell(v) {
  const labels = { intact: '✔ intact', failed: '✘ FAILED', pending: '… checking', live: '● live', unavailable: 'n/a' };
  return el('span', { class: 'verify-' + v.status, title: v.verdict || '' }, labels[v.status] || v.status);
}

export async function render(root) {
  const q = new URLSearchParams(location.search);
  const field = (name, attrs) => el('input', { name, id: 'f-' + name, value: q.get(name) || '', ...attrs });
  const select = (name, options) => {
    const s = el('select', { name, id: 'f-' + name }, options.map(([v, t]) => el('option', { value: v }, t)));
    s.value = q.get(name) || '';
    return s;
  };
  const form = el('form', { class: 'inline filters', id: 'filters' },
    el('label', null, 'Search ', field('q', { placeholder: 'commands, SQL, file paths', size: 28, type: 'search' })),
    el('label', null, 'User ', field('user', { size: 10 })),
    el('label', null, 'Target ', field('target', { size: 12 })),
    el('label', null, 'Protocol ', select('protocol', [['', 'any'], ['ssh', 'ssh'], ['postgres', 'postgres']])),
    el('label', null, 'State ', select('state', [['', 'any'], ['live', 'live'], ['closed', 'closed'], ['terminated', 'terminated'], ['interrupted', 'interrupted']])),
    el('label', null, 'From ', field('since', { type: 'datetime-local' })),
    el('label', null, 'To ', field('until', { type: 'datetime-local' })),
    el('button', { type: 'submit', class: 'primary' }, 'Filter'));
  const box = el('div', { id: 'sessions' });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
    history.replaceState(null, '', '?' + p.toString());
    load(p, 0);
  });
  root.append(el('h1', null, 'Sessions'), section('Find sessions', form), box);

  let timer = null;
  async function load(p, round) {
    clearTimeout(timer);
    let rows;
    try {
      rows = await api('GET', '/api/v1/sessions?' + p.toString());
    } catch (e) { notice(root, 'error', explain(e)); return; }
    box.replaceChildren(table(
      ['Started (UTC)', 'User', 'Target', 'Role', 'Protocol', 'State', 'Duration', 'Bytes', 'Statements', 'Verify', ''],
      rows.map((s) => el('tr', { dataset: { session: s.id } },
        el('td', null, fmtTime(s.started_at)), el('td', null, s.user), el('td', null, s.target), el('td', null, s.role),
        el('td', null, s.protocol), el('td', { class: 'state-' + s.state }, s.state + (s.end_reason ? ` (${s.end_reason})` : '')),
        el('td', { class: 'num' }, fmtDuration(s.duration_ms)), el('td', { class: 'num' }, fmtBytes(s.bytes)),
        el('td', { class: 'num' }, String(s.statements)), el('td', null, verifyCell(s.verify)),
        el('td', { class: 'actions' },
          s.state === 'live'
            ? (s.watchable ? el('a', { href: '/ui/live/' + encodeURIComponent(s.id) }, 'Watch') : 'live elsewhere')
            : [el('a', { href: '/ui/sessions/' + encodeURIComponent(s.id) }, 'Replay'), ' ',
               el('a', { href: '/ui/verify/' + encodeURIComponent(s.id) }, 'Verify')]))),
      { empty: [...p.keys()].length ? 'No sessions match these filters: widen the time range or clear a filter.'
        : 'No recorded sessions yet. A session appears here once someone with an active grant connects through the SSH or PostgreSQL proxy.' }));
    if (rows.some((s) => s.verify.status === 'pending') && round < 20) {
      timer = setTimeout(() => load(p, round + 1), 2000);
    }
  }
  load(q, 0);
}
