import { api, el, table, section, notice, fmtTime, explain } from './lib.js';

const hints = { target: 'target name', at: '2026-11-23T14:00', person: 'user name' };

export async function render(root) {
  const [views, chain] = await Promise.all([api('GET', '/api/v1/audit/views'), api('GET', '/api/v1/audit/verify')]);
  root.append(el('h1', null, 'Audit log'),
    el('p', { id: 'chain', class: chain.ok ? 'verdict ok' : 'verdict bad' },
      chain.ok ? `✔ Hash chain intact: ${chain.records} records, head ${chain.head.slice(0, 16)}…`
        : `✘ Hash chain BROKEN at record ${chain.first_bad}: ${chain.problem}`));

  // Saved views.
  const vsel = el('select', { id: 'view' }, views.map((v) => el('option', { value: v.name }, v.title)));
  const params = el('span', { class: 'inline' });
  const since = el('input', { type: 'datetime-local', id: 'v-since' });
  const until = el('input', { type: 'datetime-local', id: 'v-until' });
  const out = el('div', { id: 'view-result' });
  const csv = el('a', { class: 'button', id: 'export-csv', href: '#' }, 'Export CSV');
  const json = el('a', { class: 'button', id: 'export-json', href: '#' }, 'Export JSON');
  const inputs = new Map();
  const fillParams = () => {
    const v = views.find((x) => x.name === vsel.value);
    inputs.clear();
    params.replaceChildren(...v.params.map((p) => {
      const i = el('input', { id: 'v-' + p, name: p, placeholder: hints[p] || p, size: 18 });
      inputs.set(p, i);
      return el('label', null, p + ' ', i);
    }));
  };
  vsel.addEventListener('change', fillParams);
  fillParams();
  const query = () => {
    const q = new URLSearchParams();
    for (const [k, i] of inputs) q.set(k, i.value);
    if (since.value) q.set('since', since.value);
    if (until.value) q.set('until', until.value);
    return q;
  };
  const run = async (ev) => {
    if (ev) ev.preventDefault();
    const q = query();
    const base = '/api/v1/audit/views/' + encodeURIComponent(vsel.value) + '?';
    csv.setAttribute('href', base + q.toString() + '&format=csv');
    json.setAttribute('href', base + q.toString() + '&format=json&download=1');
    out.dataset.rows = '';
    try {
      const t = await api('GET', base + q.toString());
      out.replaceChildren(el('p', { class: 'muted' }, `${t.rows.length} rows`), el('div', { class: 'scroll' }, table(t.columns, t.rows, { empty: 'No rows: nothing in the log matches. Widen the time range, check the parameters, or pick another view.' })));
      out.dataset.rows = String(t.rows.length);
    } catch (e) { notice(root, 'error', explain(e)); }
  };
  const form = el('form', { class: 'inline', id: 'view-form' }, el('label', null, 'View ', vsel), params,
    el('label', null, 'From ', since), el('label', null, 'To ', until), el('button', { type: 'submit', class: 'primary' }, 'Run'), csv, json);
  form.addEventListener('submit', run);
  root.append(section('Saved views', form, out));

  // The raw log.
  const f = {};
  const fields = ['actor', 'action', 'target'].map((n) => { f[n] = el('input', { id: 'a-' + n, placeholder: n === 'action' ? 'prefix, e.g. grant.' : n, size: 14 }); return el('label', null, n + ' ', f[n]); });
  // Links from other pages (the dashboard's records) open the log
  // filtered: ?actor=, ?action=, ?target=, or one record with ?after=&limit=.
  const given = new URLSearchParams(location.search);
  for (const [k, i] of Object.entries(f)) if (given.get(k)) i.value = given.get(k);
  let at = given.get('after') ? { after: given.get('after'), limit: given.get('limit') || '200' } : null;
  const logBox = el('div', { id: 'log' });
  const logForm = el('form', { class: 'inline' }, fields, el('button', { type: 'submit' }, 'Show'));
  const loadLog = async (ev) => {
    if (ev) ev.preventDefault();
    const q = new URLSearchParams({ limit: '200' });
    for (const [k, i] of Object.entries(f)) if (i.value) q.set(k, i.value);
    if (at) { q.set('after', at.after); q.set('limit', at.limit); at = null; }
    let recs;
    try {
      recs = await api('GET', '/api/v1/audit?' + q.toString());
    } catch (e) { notice(root, 'error', explain(e)); return; }
    const filtered = [...q.keys()].length > 1;
    logBox.replaceChildren(el('div', { class: 'scroll' }, table(['Seq', 'Time (UTC)', 'Actor', 'Action', 'Target', 'Outcome', 'Reason', 'Details'],
      recs.map((r) => [String(r.seq), fmtTime(r.time), r.actor, r.action, r.target || '', r.outcome, r.reason || '', r.details ? JSON.stringify(r.details) : '']),
      { empty: filtered ? 'No record matches: clear a field, or use an action prefix such as grant.' : 'The audit log is empty: every sign-in, request, approval and session is recorded here as it happens.' })));
  };
  logForm.addEventListener('submit', loadLog);
  root.append(section('Log', logForm, logBox));
  await loadLog();
}
