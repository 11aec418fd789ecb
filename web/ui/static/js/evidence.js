// Evidence for a target and a period (security and auditors): download the
// bundle the API builds (one ZIP: index.html that opens offline, one page
// per session, evidence.json), and give an inspector a time-boxed,
// read-only share link to it; list and revoke share links.
import { api, el, section, fmtTime, table, notice } from './lib.js';

function isoDay(d) { return d.toISOString().slice(0, 10); }

export async function render(root) {
  root.append(el('h1', null, 'Evidence'));
  const targets = await api('GET', '/api/v1/targets');
  const now = new Date();
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
  const last = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  // A text field: security staff need not be requesters of a target, and
  // a retired target's evidence is still in the store.
  const target = el('input', { id: 'ev-target', name: 'target', type: 'text', required: true, placeholder: 'target name',
    value: targets.length ? targets[0].name : '', 'aria-label': 'Target' });
  const from = el('input', { id: 'ev-from', name: 'from', type: 'date', value: isoDay(first), required: true });
  const to = el('input', { id: 'ev-to', name: 'to', type: 'date', value: isoDay(last), required: true });
  const ttl = el('select', { id: 'ev-ttl', name: 'ttl' }, ['24h', '72h', '168h', '720h'].map((v) => el('option', { value: v }, v)));
  ttl.value = '72h';
  const download = el('a', { id: 'ev-download', class: 'button primary', href: '#' }, 'Download evidence bundle');
  const shareOut = el('div', { id: 'ev-share-out' });
  const query = () => '?' + new URLSearchParams({ target: target.value, from: from.value, to: to.value }).toString();
  const sync = () => {
    download.setAttribute('href', '/api/v1/evidence' + query());
    download.setAttribute('download', `custos-evidence-${target.value}-${from.value}-${to.value}.zip`);
  };
  for (const i of [target, from, to]) { i.addEventListener('change', sync); i.addEventListener('input', sync); }
  sync();
  const shareBtn = el('button', { type: 'button', id: 'ev-share' }, 'Create share link');
  shareBtn.addEventListener('click', async () => {
    shareOut.replaceChildren();
    try {
      const l = await api('POST', '/api/v1/shares', { kind: 'evidence', target: target.value, from: from.value, to: to.value, ttl: ttl.value });
      shareOut.append(el('p', null, 'Share link (shown only now; works without an account until ', fmtTime(l.expires_at), '):'),
        el('p', null, el('code', { id: 'ev-share-url' }, l.url)));
      await listShares(listBox);
    } catch (e) {
      notice(shareOut, 'error', e.message);
    }
  });
  const listBox = el('div', { id: 'ev-shares' });
  root.append(
    section('Bundle', el('p', { class: 'muted' }, 'Grants, requests and approvals, sessions with their verdicts and commands, break-glass events, access reviews and the audit chain segment for the period (end excluded, UTC).'),
      el('div', { class: 'filters' }, el('label', null, 'Target ', target), el('label', null, 'From ', from), el('label', null, 'To ', to)),
      el('p', null, download, ' ', el('label', null, 'Link valid for ', ttl), ' ', shareBtn), shareOut),
    section('Share links', listBox));
  await listShares(listBox);
}

async function listShares(box) {
  const links = await api('GET', '/api/v1/shares');
  if (!links.length) {
    box.replaceChildren(el('p', { class: 'muted' }, 'No share links.'));
    return;
  }
  box.replaceChildren(table(['Link', 'Shares', 'By', 'Expires', 'Uses', 'State', ''], links.map((l) => {
    const what = l.kind === 'session' ? 'session ' + l.session_id : `${l.target} ${fmtTime(l.from)} to ${fmtTime(l.to)}`;
    let action = '';
    if (l.state === 'active') {
      action = el('button', { type: 'button', class: 'link', dataset: { revoke: l.id } }, 'Revoke');
      action.addEventListener('click', async () => {
        await api('DELETE', '/api/v1/shares/' + encodeURIComponent(l.id));
        await listShares(box);
      });
    }
    return [l.id, what, l.created_by, fmtTime(l.expires_at), String(l.uses), l.state, action];
  })));
}
