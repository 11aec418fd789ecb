// Access reviews: whether one is overdue, every review, and one review's
// diff against the last attested review. Reviewers attest or flag each
// line (a flag needs a comment) and sign the attestation with a meaning,
// their password and authenticator code or a passkey. /ui/reviews/<id> opens that
// review. The broker decides who may do what; refusals are shown as they
// come.
import { api, el, section, table, fmtTime, explain, emptyState } from './lib.js';
import { passkeyChoice, passkeySignature } from './esign.js';

let seq = 0;

function field(label, attrs) {
  const id = 'rv-f' + (++seq);
  return el('span', null, el('label', { for: id }, label + ' '), el('input', { id, ...attrs }));
}

// form runs fn on submit and shows a refusal under it.
function form(action, children, buttonText, fn) {
  const msg = el('p', { class: 'notice', role: 'status', hidden: true });
  const btn = el('button', { type: 'submit' }, buttonText);
  const f = el('form', { class: 'inline rv-action', dataset: { action } }, children, btn, msg);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    btn.disabled = true;
    msg.hidden = true;
    try {
      await fn(f);
    } catch (e) {
      msg.className = 'notice error';
      msg.setAttribute('role', 'alert');
      msg.replaceChildren(e.code ? `Refused (${e.code}): ${e.message}` : explain(e));
      msg.hidden = false;
    } finally {
      for (const p of f.querySelectorAll('input[type=password], input[name=totp]')) p.value = '';
      btn.disabled = false;
    }
  });
  return f;
}

const opClass = { '+': 'state-approved', '-': 'state-denied', '~': 'state-pending' };

function marks(l) {
  return (l.marks || []).map((m) => el('div', { class: m.verdict === 'flag' ? 'state-denied' : 'muted', dataset: { verdict: m.verdict } },
    `${m.verdict === 'flag' ? '⚑ flagged' : '✓ attested'} by ${m.by} ${fmtTime(m.at)}${m.comment ? ': ' + m.comment : ''}`));
}

function lineRow(r, l, reload) {
  const cells = [el('td', null, String(l.n)), el('td', { class: opClass[l.op] || '' }, el('code', null, l.text)), el('td', null, marks(l))];
  if (r.state === 'open') {
    // One comment box serves both verdicts; a flag needs it.
    const comment = field('Comment', { name: 'comment', size: 24 });
    const mark = (verdict) => async () => {
      await api('POST', `/api/v1/reviews/${encodeURIComponent(r.id)}/lines/${l.n}`,
        { verdict, comment: comment.querySelector('input').value });
      await reload();
    };
    cells.push(el('td', null, comment, form('attest-line', [], 'Attest', mark('attest')), form('flag-line', [], 'Flag', mark('flag'))));
  }
  return el('tr', { dataset: { line: String(l.n), op: l.op } }, cells);
}

async function showReview(box, id, status, reloadAll) {
  const r = await api('GET', '/api/v1/reviews/' + encodeURIComponent(id));
  const reload = () => showReview(box, id, status, reloadAll);
  const head = el('p', null, `${r.name} — ${r.state}, started ${fmtTime(r.started_at)} by ${r.started_by}. `,
    r.base ? `Changes since review ${r.base} (the last attested one).` : 'First review: every line is new.',
    ' ', el('a', { href: `/api/v1/reviews/${encodeURIComponent(r.id)}/export`, download: `review-${r.id}.json`, id: 'rv-export' }, 'Export (JSON)'));
  const hash = el('p', { class: 'muted' }, `Snapshot: ${(r.snapshot || []).length} entries, hash ${r.snapshot_hash}` + (r.prev_hash ? `, previous ${r.prev_hash}` : ''));
  const cols = ['#', 'Change', 'Marks'];
  if (r.state === 'open') cols.push('Your verdict');
  const lines = table(cols, (r.lines || []).map((l) => lineRow(r, l, reload)), { empty: 'No changes since the last attested review.' });
  lines.id = 'rv-lines';
  const parts = [head, hash, lines];
  if (r.attestation) {
    const s = r.attestation.signature;
    parts.push(el('p', { id: 'rv-signature', class: 'notice ok' },
      `Signed by ${s.printed_name} at ${fmtTime(s.time)} — "${s.meaning}" (${s.method}); ${r.attestation.flagged} line(s) flagged; result hash ${r.attestation.result_hash}`));
  } else if (r.state === 'open') {
    const meaning = el('select', { id: 'rv-meaning', name: 'meaning' }, (status.meanings || []).map((m) => el('option', { value: m }, m)));
    const key = passkeyChoice('sign review ' + r.id + ' with a passkey');
    parts.push(el('h3', null, 'Attest this review'),
      el('p', { class: 'muted' }, 'Your attestation is an electronic signature: your password and authenticator code, or a passkey, confirm it is you, and the meaning says what you sign.'),
      form('attest', [el('span', null, el('label', { for: 'rv-meaning' }, 'Meaning '), meaning),
        field('Password', { type: 'password', name: 'password', autocomplete: 'current-password', size: 16 }),
        field('Authenticator code', { name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', size: 7 }),
        el('label', null, key, ' with a passkey instead')], 'Sign attestation',
      async (f) => {
        const body = { meaning: meaning.value };
        if (key.checked) body.passkey = await passkeySignature('review', r.id);
        else Object.assign(body, { password: f.elements.password.value, totp: f.elements.totp.value });
        await api('POST', `/api/v1/reviews/${encodeURIComponent(r.id)}/attest`, body);
        await reloadAll(r.id);
      }));
  }
  box.replaceChildren(section('Review ' + r.id, ...parts));
}

export async function render(root) {
  const m = location.pathname.match(/^\/ui\/reviews\/([^/]+)$/);
  const statusBox = el('div', { id: 'rv-status' });
  const listBox = el('div', { id: 'rv-list' });
  const detail = el('div', { id: 'rv-detail' });
  root.append(el('h1', null, 'Access reviews'), statusBox, section('Reviews', listBox), detail);

  const load = async (focus) => {
    const data = await api('GET', '/api/v1/reviews');
    const st = data.status;
    const due = st.overdue
      ? el('p', { class: 'notice error', dataset: { overdue: 'yes' } }, st.last_attested ? `⚠ OVERDUE: a review was due ${fmtTime(st.due_at)} (every ${st.every}).` : '⚠ OVERDUE: no access review has been attested yet.')
      : el('p', { class: 'notice ok', dataset: { overdue: 'no' } }, `Next review due ${fmtTime(st.due_at)} (every ${st.every}).`);
    const start = form('start', [field('Name', { name: 'name', placeholder: 'e.g. Q4-2026', size: 12 })], 'Start review', async (f) => {
      const r = await api('POST', '/api/v1/reviews', { name: f.elements.name.value });
      history.replaceState(null, '', '/ui/reviews/' + encodeURIComponent(r.id));
      await load(r.id);
    });
    statusBox.replaceChildren(due, st.current ? el('p', null, `Open review: ${st.current.name} (${st.current.id}).`) : start);
    const rows = data.reviews.map((s) => el('tr', { dataset: { review: s.id } },
      el('td', null, el('a', { href: '/ui/reviews/' + encodeURIComponent(s.id) }, s.name)), el('td', null, s.state),
      el('td', null, fmtTime(s.started_at)), el('td', null, fmtTime(s.attested_at)), el('td', null, String(s.lines)), el('td', null, String(s.flagged))));
    listBox.replaceChildren(data.reviews.length ? table(['Name', 'State', 'Started', 'Attested', 'Lines', 'Flagged'], rows)
      : emptyState('rv-empty', 'No access review yet. Start one above, or from the CLI:', 'custos review start --name Q4-2026'));
    const id = focus || (st.current && st.current.id);
    if (id) await showReview(detail, id, st, load);
    else detail.replaceChildren();
  };
  await load(m ? decodeURIComponent(m[1]) : '');
}
