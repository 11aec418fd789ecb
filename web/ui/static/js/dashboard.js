// Dashboard: the key risk indicators as tiles (value, status against the
// configured limits), each opening the list of records behind it, each
// record linking to its own page (request, session replay or
// verification, audit record); and the open actions limit crossings
// raised, each closed with a comment. ?indicator=NAME opens that list.
// Security staff and auditors only: the API refuses everyone else.
import { api, el, section, table, fmtTime, explain, notice } from './lib.js';
import { unmaskedPanel } from './unmasked.js';

// fmtValue shows a value in its unit.
function fmtValue(ind) {
  if (ind.value === null || ind.value === undefined) return 'no data';
  const v = ind.value;
  if (ind.unit === 'ratio') return (v * 100).toFixed(v < 0.1 && v > 0 ? 1 : 0) + ' %';
  if (ind.unit === 'seconds') {
    if (v < 90) return Math.round(v) + ' s';
    if (v < 5400) return Math.round(v / 60) + ' min';
    return (v / 3600).toFixed(1) + ' h';
  }
  return String(Math.round(v * 100) / 100);
}

const statusText = { ok: 'within limits', crossed: 'LIMIT CROSSED', no_data: 'no data yet' };

function tile(ind, open) {
  const b = el('button', { type: 'button', class: 'tile status-' + ind.status, id: 'tile-' + ind.name,
    dataset: { indicator: ind.name, status: ind.status }, title: ind.source },
  el('span', { class: 'tile-title' }, ind.title),
  el('span', { class: 'tile-value', dataset: { value: ind.value === null ? '' : String(ind.value) } }, fmtValue(ind)),
  el('span', { class: 'tile-status' }, ind.status === 'crossed' ? `${statusText.crossed}: ${ind.crossed.join(', ')}`
    : ind.status === 'ok' && !(ind.limits && ind.limits.length) ? 'no limit set' : statusText[ind.status] || ind.status),
  ind.limits && ind.limits.length ? el('span', { class: 'tile-limits muted' }, 'limit ' + ind.limits.join(', ')) : null);
  b.addEventListener('click', () => open(ind.name));
  return b;
}

function recordLink(r) {
  const label = r.kind === 'audit' ? `#${r.seq}` : r.id;
  return r.link ? el('a', { href: r.link, dataset: { record: r.id } }, label) : el('span', null, label);
}

async function showRecords(box, name) {
  box.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  const ind = await api('GET', '/api/v1/indicators/' + encodeURIComponent(name));
  const parts = [el('p', null, el('strong', null, fmtValue(ind)), ' — ', ind.source),
    el('p', { class: 'muted' }, `Computed ${fmtTime(ind.at)}. ${ind.record_count} record(s)` + (ind.record_count > ind.records.length ? `, first ${ind.records.length} shown.` : '.'))];
  if (ind.breakdown && ind.breakdown.length) {
    parts.push(table(['Key', 'Count', 'Duration (h)'], ind.breakdown.map((r) => [r.key, String(r.count), r.seconds ? (r.seconds / 3600).toFixed(2) : ''])));
  }
  parts.push(el('div', { class: 'scroll' }, table(['Kind', 'Record', 'User', 'Target', 'Time (UTC)', 'Why'],
    ind.records.map((r) => el('tr', { dataset: { kind: r.kind } }, [r.kind, recordLink(r), r.user || '', r.target || '', fmtTime(r.at), r.detail || ''].map((c) => el('td', null, c)))),
    { empty: ind.value === null ? 'No data yet for this indicator.' : 'Nothing behind this number: no record causes it.' })));
  box.replaceChildren(section(ind.title, ...parts));
  box.dataset.indicator = name;
}

function actionsSection(root, actions, reload) {
  if (!actions.length) return section('Open actions', el('p', { class: 'muted', id: 'no-actions' }, 'No open actions: no limit crossing is waiting for follow-up.'));
  const rows = actions.map((a) => {
    const comment = el('input', { name: 'comment', placeholder: 'what was done', size: 28, required: true, 'aria-label': 'Comment for ' + a.id });
    const form = el('form', { class: 'inline' }, comment, el('button', { type: 'submit' }, 'Close'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        await api('POST', `/api/v1/indicators/actions/${encodeURIComponent(a.id)}/close`, { comment: comment.value });
        await reload();
      } catch (e) { notice(root, 'error', explain(e)); }
    });
    return el('tr', { dataset: { action: a.id } }, [fmtTime(a.opened_at), a.limit, String(a.value), a.owner,
      el('a', { href: a.link }, 'records'), el('a', { href: `/ui/audit?after=${a.audit_seq - 1}&limit=1` }, '#' + a.audit_seq), form].map((c) => el('td', null, c)));
  });
  return section('Open actions', el('div', { class: 'scroll', id: 'actions' },
    table(['Opened (UTC)', 'Limit', 'Value', 'Owner', 'Records', 'Audit', 'Close with a comment'], rows)));
}

export async function render(root) {
  const box = el('div', { id: 'records' });
  const actionsBox = el('div', { id: 'actions-box' });
  const tiles = el('div', { class: 'tiles', id: 'tiles' });
  const open = async (name) => {
    history.replaceState(null, '', '/ui/dashboard?indicator=' + encodeURIComponent(name));
    try { await showRecords(box, name); } catch (e) { notice(root, 'error', explain(e)); }
    box.scrollIntoView({ block: 'start' });
  };
  const load = async () => {
    const d = await api('GET', '/api/v1/indicators');
    tiles.replaceChildren(...d.indicators.map((i) => tile(i, open)));
    actionsBox.replaceChildren(actionsSection(root, d.actions, load));
  };
  root.append(el('h1', null, 'Dashboard'),
    el('p', { class: 'muted' }, 'Key risk indicators computed from the state store and the audit log. Click a tile for the records behind it.'),
    actionsBox, tiles, box, unmaskedPanel());
  await load();
  const want = new URLSearchParams(location.search).get('indicator');
  if (want) await showRecords(box, want);
}
