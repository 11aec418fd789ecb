// The PostgreSQL statement timeline: assembles recorded protocol events
// into statements (time, duration, tag, rows, error, parameters as
// recorded, result evidence: columns, row and byte counts and the SHA-256
// of what was returned, and the recorded sample rows as the user received
// them, masked for masked roles) with transaction boundaries and notes
// (masking and unmask in effect, refused COPY), and renders a filterable
// table.
import { el, fmtDuration } from './lib.js';

export class Statements {
  constructor() {
    this.rows = [];
    this.prepared = new Map();
    this.portals = new Map();
    this.cur = null;
    this.tx = 0;
    this.inTx = false;
  }

  open(t, kind, sql, params) {
    this.cur = { type: 'stmt', t, end: null, kind, sql: sql || '', params: params || [], tags: [], rows: 0, error: '', tx: this.inTx ? this.tx : 0, copy: '', result: [], sample: [] };
    this.rows.push(this.cur);
  }

  add(e) {
    switch (e.k) {
      case 'pg_query':
        this.open(e.t, e.op === 'function_call' ? 'function call ' + (e.name || '') : 'simple', e.text, e.args);
        break;
      case 'pg_parse':
        this.prepared.set(e.name || '', e.text || '');
        break;
      case 'pg_bind':
        this.portals.set(e.name || '', { sql: this.prepared.get(e.text || '') || '', params: e.args || [] });
        break;
      case 'pg_execute': {
        const p = this.portals.get(e.name || '') || { sql: '', params: [] };
        this.open(e.t, 'extended', p.sql, p.params);
        break;
      }
      case 'pg_complete':
        if (this.cur) { this.cur.tags.push(e.text || e.op || ''); this.cur.rows += e.n || 0; this.cur.end = e.t; }
        break;
      case 'pg_error':
        if (this.cur) { this.cur.error = `${e.op || ''} ${e.name || ''}: ${e.text || ''}`.trim(); this.cur.end = e.t; }
        else this.rows.push({ type: 'note', t: e.t, text: `error ${e.op || ''}: ${e.text || ''}` });
        break;
      case 'pg_copy':
        if (this.cur) this.cur.copy = `COPY ${e.op} ${e.text || ''} ${e.n || ''}`.trim();
        break;
      case 'pg_result':
        if (this.cur) this.cur.result.push(resultText(e));
        break;
      case 'pg_row':
        if (this.cur) this.cur.sample.push((e.args || []).join(' | '));
        break;
      case 'pg_tx':
        if (e.op === 'begin') { this.tx++; this.inTx = true; }
        if (e.op === 'commit' || e.op === 'rollback') this.inTx = false;
        this.rows.push({ type: 'tx', t: e.t, op: e.op, tx: this.tx });
        break;
      case 'note':
        this.rows.push({ type: 'note', t: e.t, text: `${e.op}: ${e.text || ''}` });
        break;
      case 'end':
        this.rows.push({ type: 'note', t: e.t, text: `session ${e.op}${e.name ? ' by ' + e.name : ''}${e.text ? ': ' + e.text : ''}` });
        break;
    }
  }
}

// resultText renders a pg_result: the columns (name and type OID), the
// row and byte counts and the digest of the returned bytes.
export function resultText(e) {
  const cols = (e.args || []).map((c) => {
    const i = c.indexOf(':');
    return i < 0 ? c : `${c.slice(i + 1)} (${c.slice(0, i)})`;
  });
  const what = e.op === 'rows' ? 'rows' : e.op.replace('_', ' ');
  const head = cols.length ? cols.join(', ') + '\n' : '';
  return `${head}${e.op === 'copy_in' ? '' : (e.n || 0) + ' '}${what} · ${e.bytes || 0} B · sha256 ${e.text || ''}`;
}

function stamp(t) {
  const ms = Math.floor(t % 1000);
  return fmtDuration(t) + '.' + String(ms).padStart(3, '0');
}

export function statementTable(st, filter, errorsOnly) {
  const f = (filter || '').toLowerCase();
  const body = el('tbody');
  let shown = 0;
  for (const r of st.rows) {
    if (r.type === 'stmt') {
      const hay = (r.sql + ' ' + r.tags.join(' ') + ' ' + r.error + ' ' + r.params.join(' ')).toLowerCase();
      if (f && !hay.includes(f)) continue;
      if (errorsOnly && !r.error) continue;
      shown++;
      body.append(el('tr', { class: (r.error ? 'err ' : '') + (r.tx ? 'in-tx' : ''), dataset: { t: String(r.t) } },
        el('td', { class: 'num' }, stamp(r.t)),
        el('td', { class: 'num' }, r.end !== null ? (r.end - r.t).toFixed(1) + ' ms' : '…'),
        el('td', null, r.tags.join(', ') || (r.error ? 'ERROR' : '')),
        el('td', { class: 'num' }, r.tags.length ? String(r.rows) : ''),
        el('td', { class: 'error' }, r.error),
        el('td', null, el('pre', { class: 'sql' }, r.sql + (r.copy ? '\n' + r.copy : ''))),
        el('td', null, r.params.length ? el('pre', { class: 'params' }, r.params.map((p, i) => `$${i + 1} = ${p}`).join('\n')) : ''),
        el('td', null, r.result.length || r.sample.length ? el('pre', { class: 'result' },
          r.result.concat(r.sample.length ? ['sample rows as received:'].concat(r.sample) : []).join('\n')) : ''),
        el('td', { class: 'muted' }, r.kind + (r.tx ? ` · tx ${r.tx}` : ''))));
    } else if (!f && !errorsOnly) {
      body.append(el('tr', { class: r.type === 'tx' ? 'tx tx-' + r.op : 'note' },
        el('td', { class: 'num' }, stamp(r.t)),
        el('td', { colspan: 8 }, r.type === 'tx' ? `── transaction ${r.tx}: ${r.op.toUpperCase()} ──` : r.text)));
    }
  }
  const t = el('table', { class: 'grid statements', id: 'statements' },
    el('thead', null, el('tr', null, ['Time', 'Duration', 'Tag', 'Rows', 'Error', 'SQL', 'Parameters (as recorded)', 'Result (columns · rows · SHA-256)', ''].map((c) => el('th', null, c)))), body);
  t.dataset.shown = String(shown);
  return t;
}

export function statementView(container) {
  const st = new Statements();
  const filter = el('input', { type: 'search', id: 'stmt-filter', placeholder: 'filter SQL, tags, errors, parameters', size: 36 });
  const errs = el('input', { type: 'checkbox', id: 'stmt-errors' });
  const count = el('span', { class: 'muted', id: 'stmt-count' });
  const box = el('div', { class: 'scroll' });
  let pending = false;
  const redraw = () => {
    pending = false;
    box.replaceChildren(statementTable(st, filter.value, errs.checked));
    count.textContent = `${st.rows.filter((r) => r.type === 'stmt').length} statements`;
  };
  const schedule = () => { if (!pending) { pending = true; requestAnimationFrame(redraw); } };
  filter.addEventListener('input', schedule);
  errs.addEventListener('change', schedule);
  container.append(el('div', { class: 'inline' }, el('label', null, 'Filter ', filter), el('label', null, errs, ' errors only'), count), box);
  return { add(events) { for (const e of events) st.add(e); schedule(); }, statements: st };
}
