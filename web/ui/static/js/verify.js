import { api, me, el, section, fmtTime, table, notice, explain } from './lib.js';
import { stepUp } from './webauthn.js';

const chainChecks = new Set(['manifest order', 'manifest chain', 'present', 'sha256', 'frame', 'seq', 'session', 'chain', 'events', 'chain head', 'manifest', 'manifest hash', 'header hash', 'header', 'prefix']);

function verdictLine(ok, label, detail) {
  return el('li', { class: ok ? 'ok' : 'bad' }, el('strong', null, (ok ? '✔ ' : '✘ ') + label), detail ? ' — ' + detail : '');
}

export async function render(root) {
  const id = decodeURIComponent(location.pathname.split('/').pop());
  root.append(el('h1', null, 'Verify session ', el('code', null, id)));
  const [s, rep] = await Promise.all([api('GET', '/api/v1/sessions/' + encodeURIComponent(id)), api('GET', '/api/v1/sessions/' + encodeURIComponent(id) + '/verify')]);
  const problems = rep.problems || [];
  const chainBad = problems.filter((p) => chainChecks.has(p.check));
  const sigBad = problems.filter((p) => p.check === 'signature');
  const retBad = problems.filter((p) => p.check === 'retention' || p.check === 'legal hold');
  const ret = rep.retention || {};
  const verdict = el('div', { id: 'verdict', class: rep.intact ? 'verdict ok' : 'verdict bad' },
    el('p', { class: 'big' }, rep.intact ? '✔ Recording intact' : '✘ Verification FAILED'),
    el('p', null, rep.verdict),
    el('ul', { class: 'checks' },
      verdictLine(chainBad.length === 0, 'Chain', chainBad.length ? chainBad.map((p) => `chunk ${p.chunk || '-'}: ${p.check}: ${p.detail}`).join('; ')
        : `${rep.chunks} chunks, ${rep.events} events hashed and linked from the header to the chain head`),
      verdictLine(sigBad.length === 0 && !!rep.signed_by, 'Signature', sigBad.length ? sigBad[0].detail : `Ed25519, key ${rep.signed_by}`),
      verdictLine(retBad.length === 0, 'Retention', ret.mode
        ? `Object Lock ${ret.mode} until ${fmtTime(ret.until)}${ret.legal_hold ? ', legal hold' : ''}` + (retBad.length ? ' — ' + retBad[0].detail : '')
        : `no Object Lock on this store (${rep.store || 'unknown'}); retention until ${fmtTime(ret.until)} by policy`)));
  const facts = table(['', ''], [
    ['Session', s.id], ['User', s.user], ['Target / role', `${s.target} / ${s.role}`], ['Protocol', s.protocol],
    ['Started', fmtTime(s.started_at)], ['Ended', fmtTime(s.ended_at)], ['State', rep.state || s.state],
    ['Manifest', rep.manifest_key || ''], ['Manifest SHA-256', rep.manifest_sha256 || ''],
    ['Grant', s.grant ? `${s.grant.id}, approved by ${(s.grant.approvers || []).join(', ')}` : ''],
    ['Reason', s.grant ? `${s.grant.reason || ''} ${s.grant.ticket || ''}` : '']], { class: 'facts' });
  const download = el('a', { href: '/api/v1/sessions/' + encodeURIComponent(id) + '/evidence', id: 'evidence', class: 'button primary', download: `custos-evidence-${id}.zip` }, 'Download evidence bundle');
  if (s.evidence_step_up) {
    // identity.step_up.export_evidence: confirm with a passkey bound to
    // this session, then download with the proof in a header.
    download.addEventListener('click', async (ev) => {
      ev.preventDefault();
      try {
        const proof = await stepUp('session.evidence', id);
        const res = await fetch(download.getAttribute('href'), { credentials: 'same-origin', headers: { 'X-Custos-Step-Up': JSON.stringify(proof) } });
        if (!res.ok) {
          const body = await res.json().catch(() => ({}));
          throw Object.assign(new Error((body.error && body.error.message) || res.statusText), { status: res.status, code: body.error && body.error.code });
        }
        const url = URL.createObjectURL(await res.blob());
        const a = document.createElement('a');
        a.href = url;
        a.download = `custos-evidence-${id}.zip`;
        a.click();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      } catch (e) { notice(root, 'error', explain(e)); }
    });
  }
  const tampering = (rep.tampering || []).map((t) => [t.key, t.detail, t.version_id || '', fmtTime(t.last_modified)]);
  root.append(...[
    section('Verdict', verdict,
      el('p', null, download,
        ' ', el('a', { href: '/ui/sessions/' + encodeURIComponent(id), class: 'button' }, 'Replay'),
        (await me()).admin ? [' ', shareButton(id)] : null)),
    section('Session', facts),
    section('Checks performed', el('ol', null, (rep.checks || []).map((c) => el('li', null, c)))),
    tampering.length ? section('Tampering attempts detected', table(['Key', 'What', 'Version', 'When'], tampering)) : null,
    problems.length ? section('Problems', table(['Chunk', 'Key', 'Check', 'Detail'], problems.map((p) => [String(p.chunk || ''), p.key || '', p.check, p.detail]))) : null].filter(Boolean));
}

// shareButton gives an inspector a 72-hour, read-only link to this
// recording (security only); the URL is shown once.
function shareButton(id) {
  const out = el('span', { id: 'share-out' });
  const b = el('button', { type: 'button', id: 'share' }, 'Create share link (72h)');
  b.addEventListener('click', async () => {
    out.replaceChildren();
    try {
      const l = await api('POST', '/api/v1/shares', { kind: 'session', session_id: id, ttl: '72h' });
      out.append(' ', el('code', { id: 'share-url' }, l.url));
    } catch (e) {
      notice(out, 'error', e.message);
    }
  });
  return el('span', null, b, out);
}
