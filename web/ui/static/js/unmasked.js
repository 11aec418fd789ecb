// The dashboard's "Who saw which fields unmasked" panel: the sessions of
// time-boxed unmask grants (GET /api/v1/unmasked, from the audit log),
// each with its user, role, the classifications the grant unmasked, the
// columns the session actually returned in clear and when, who approved
// the grant, and a link to the session's statement timeline.
import { api, el, section, table, fmtTime, explain } from './lib.js';

function columnsCell(s) {
  if (!s.columns.length) return el('span', { class: 'muted' }, 'none returned in clear');
  return el('ul', { class: 'plain' }, s.columns.map((c) =>
    el('li', { dataset: { column: c.column } }, `${c.classification}: ${c.column}`, el('span', { class: 'muted' }, ' first ' + fmtTime(c.first_at)))));
}

function row(s) {
  const window = fmtTime(s.started_at) + (s.ended_at ? ' – ' + fmtTime(s.ended_at) : ' (live)');
  return el('tr', { dataset: { session: s.session_id } }, [
    window, s.user, s.role, s.target, s.unmasked.join(', '), columnsCell(s),
    s.approvers.join(', ') || '—', el('a', { href: s.link }, s.session_id),
  ].map((c) => el('td', null, c)));
}

// unmaskedPanel returns the panel; it fills itself in.
export function unmaskedPanel() {
  const box = el('div', { class: 'scroll', id: 'unmasked' }, el('p', { class: 'muted' }, 'Loading…'));
  (async () => {
    try {
      const d = await api('GET', '/api/v1/unmasked');
      box.replaceChildren(
        el('p', { class: 'muted' }, `Sessions of unmask grants started ${fmtTime(d.since)} – ${fmtTime(d.until)}` +
          (d.truncated ? `, newest ${d.sessions.length} shown.` : '.')),
        table(['Session (UTC)', 'User', 'Role', 'Target', 'Unmasked', 'Columns returned in clear', 'Approved by', 'Timeline'],
          d.sessions.map(row), { empty: 'No session of an unmask grant in this period.' }));
    } catch (e) {
      box.replaceChildren(el('p', { class: 'muted' }, explain(e)));
    }
  })();
  return section('Who saw which fields unmasked', box);
}
