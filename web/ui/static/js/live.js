import { api, el, table, fmtDuration, fmtTime, fmtBytes, section } from './lib.js';

export async function render(root) {
  const box = el('div', { id: 'live' });
  root.append(el('h1', null, 'Live sessions'), section('Running now', box));
  const load = async () => {
    const rows = await api('GET', '/api/v1/sessions?state=live&limit=500');
    box.replaceChildren(table(['Started (UTC)', 'User', 'Target', 'Role', 'Protocol', 'Running for', 'Bytes', 'Statements', ''],
      rows.map((s) => el('tr', { dataset: { session: s.id } }, el('td', null, fmtTime(s.started_at)), el('td', null, s.user),
        el('td', null, s.target), el('td', null, s.role), el('td', null, s.protocol), el('td', { class: 'num' }, fmtDuration(s.duration_ms)),
        el('td', { class: 'num' }, fmtBytes(s.bytes)), el('td', { class: 'num' }, String(s.statements)),
        el('td', { class: 'actions' }, s.watchable ? el('a', { href: '/ui/live/' + encodeURIComponent(s.id), class: 'button primary' }, 'Watch') : 'on another broker'))),
      { empty: 'No session is running. Sessions show here while someone is connected through the proxies; past ones are under Sessions.' }));
  };
  await load();
  setInterval(() => load().catch(() => {}), 3000);
}
