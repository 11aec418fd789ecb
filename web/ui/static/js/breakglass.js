// Break-glass: the accounts a custodian (or security admin) may see, their
// state and drill standing, and the steps a custodian takes: request an
// unseal, confirm one with a fresh second factor, close an open account.
// /ui/breakglass/unseals/<id> (the link in Slack notices) puts that
// unseal's account first. The broker decides who may do what; refusals
// are shown as they come.
import { api, me, el, section, table, fmtTime, explain, emptyState } from './lib.js';
import { meanings, meaningSelect, manifestation, unsealSigned, passkeyChoice, passkeySignature } from './esign.js';
import { stepUp } from './webauthn.js';

const stateLabels = {
  sealed: 'Sealed', unseal_requested: 'Unseal requested', open: 'Open', rotating: 'Rotating',
  'compromised-until-rotated': 'Compromised until rotated',
};

// rel says how far t is from now, e.g. "in 14 min" or "3 days ago".
function rel(iso) {
  const ms = new Date(iso) - Date.now();
  if (!iso || isNaN(ms)) return '';
  const a = Math.abs(ms) / 1000;
  const n = a < 90 ? [Math.round(a), 's'] : a < 5400 ? [Math.round(a / 60), ' min'] : a < 172800 ? [Math.round(a / 3600), ' h'] : [Math.round(a / 86400), ' days'];
  return ms >= 0 ? `in ${n[0]}${n[1]}` : `${n[0]}${n[1]} ago`;
}

// goDuration shortens a Go duration: 1h0m0s is 1h.
const goDuration = (d) => String(d || '').replace(/([hm])0s$/, '$1').replace(/h0m$/, 'h');

const when = (iso) => (iso ? `${fmtTime(iso)} (${rel(iso)})` : '');

function badge(state) {
  return el('span', { class: 'badge bg-' + state, dataset: { state } }, stateLabels[state] || state);
}

function confirmations(u) {
  const c = u.confirmations || [];
  return `${c.length} of ${u.required}` + (c.length ? ' — ' + c.map((x) => (x.signature ? manifestation(x.signature) + ` (${x.via})`
    : `${x.custodian} (${x.via}, ${x.second_factor}, ${fmtTime(x.at)})`)).join('; ') : '');
}

// drillLine is an account's drill standing in one line.
function drillLine(a) {
  const d = a.drill || {};
  if (d.overdue) return el('span', { class: 'overdue', dataset: { overdue: 'yes' } }, `⚠ OVERDUE: was due ${when(d.next_due)}`);
  return el('span', { dataset: { overdue: 'no' } }, d.next_due ? `next due ${when(d.next_due)}` : 'not scheduled');
}

function lastDrill(a) {
  const last = a.drills && a.drills.last;
  const running = a.drills && a.drills.running;
  const parts = [];
  if (running) parts.push(el('span', { class: 'state-pending' }, `running: ${running.id} since ${fmtTime(running.started_at)}`));
  if (last) {
    parts.push(el('span', { class: last.outcome === 'passed' ? 'state-approved' : 'state-denied', dataset: { drillOutcome: last.outcome } },
      `${last.outcome}: ${last.id}, ${fmtTime(last.finished_at || last.started_at)}${last.reason ? ' — ' + last.reason : ''}`));
  }
  if (!parts.length) parts.push(el('span', { class: 'muted' }, 'no drill yet'));
  return parts;
}

let seq = 0;

// field is a labelled input.
function field(label, attrs) {
  const id = 'bg-f' + (++seq);
  return [el('input', { id, ...attrs }), el('label', { for: id }, label + ' ')];
}

// secondFactor are the password and, when the account needs it, the
// authenticator code a custodian gives again for this one step.
function secondFactor(a) {
  const [pw, pwl] = field('Password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, size: 16 });
  const parts = [el('span', null, pwl, pw)];
  let totp = null;
  if (a.totp_required) {
    let tl;
    [totp, tl] = field('Authenticator code', { name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', required: true, size: 7 });
    parts.push(el('span', null, tl, totp));
  }
  return { parts, value: () => ({ password: pw.value, totp: totp ? totp.value : '' }), clear: () => { pw.value = ''; if (totp) totp.value = ''; } };
}

// actionForm runs fn on submit and shows its outcome (or refusal) under
// the form; the second factor is cleared whatever happens.
function actionForm(action, children, button, fn, after, sf) {
  const msg = el('p', { class: 'notice', role: 'status', hidden: true });
  const btn = el('button', { type: 'submit', class: button.class }, button.text);
  const form = el('form', { class: 'inline bg-action', dataset: { action } }, children.flat(), btn, msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    btn.disabled = true;
    msg.hidden = true;
    try {
      const res = await fn();
      await after(res);
    } catch (e) {
      msg.className = 'notice error';
      msg.setAttribute('role', 'alert');
      msg.replaceChildren(e.code ? `Refused (${e.code}): ${e.message}` : explain(e));
      msg.hidden = false;
    } finally {
      if (sf) sf.clear();
      btn.disabled = false;
    }
  });
  return form;
}

export async function render(root) {
  const m = location.pathname.match(/^\/ui\/breakglass\/unseals\/([^/]+)$/);
  const focus = m ? decodeURIComponent(m[1]) : '';
  const who = await me();
  const signed = await unsealSigned();
  const signMeanings = signed ? await meanings() : {};
  const status = el('div', { id: 'bg-status' });
  const focusBox = el('div', { id: 'bg-focus' });
  const accountsBox = el('div', { id: 'bg-accounts' });
  const drillsBox = el('div', { id: 'bg-drills' });
  const refresh = el('button', { type: 'button', id: 'bg-refresh' }, 'Refresh');
  root.append(...[el('h1', null, 'Break-glass ', refresh), status,
    focus ? section('Unseal request ' + focus, focusBox) : null,
    section('Accounts', accountsBox), section('Drills', drillsBox)].filter(Boolean));

  // done shows what an action did above everything, then reloads.
  const done = async (text, link) => {
    await load();
    status.prepend(el('p', { class: 'notice ok', role: 'status' }, text, link ? [' ', el('a', { href: link }, link)] : null));
  };

  // passkeyFor is the passkey field of an unseal or confirmation whose
  // "with a passkey" box is checked: the signature's (signatures.unseal)
  // or the step-up's (identity.step_up.breakglass_confirm), bound to the
  // unseal, or for an ask to the account.
  const passkeyFor = async (box, a, u) => {
    if (!box.checked) return {};
    if (signed) return { passkey: await passkeySignature('unseal', u ? u.id : 'account/' + a.name) };
    const proof = u ? await stepUp('breakglass.confirm', u.id) : await stepUp('breakglass.unseal', a.name);
    return { passkey: proof.assertion };
  };

  const actions = (a) => {
    const out = [];
    const u = a.unseal;
    if (a.state === 'sealed') {
      const [reason, rl] = field('Reason', { name: 'reason', placeholder: 'what is broken', size: 28, required: true });
      const [incident, il] = field('Incident', { name: 'incident', placeholder: 'INC-…', size: 10, required: true });
      const sf = secondFactor(a);
      const meaning = signed ? meaningSelect(signMeanings, 'unseal', 'meaning of the unseal of ' + a.name) : null;
      const key = passkeyChoice('unseal ' + a.name + ' with a passkey');
      out.push(actionForm('unseal', [el('span', null, rl, reason), el('span', null, il, incident),
        meaning ? el('label', null, 'Meaning (electronic signature) ', meaning) : null, sf.parts, el('label', null, key, ' with a passkey')],
        { text: 'Request unseal', class: 'danger' },
        async () => api('POST', `/api/v1/breakglass/${encodeURIComponent(a.name)}/unseal`,
          { reason: reason.value, incident: incident.value, ...sf.value(), ...(meaning ? { meaning: meaning.value } : {}), ...(await passkeyFor(key, a, null)) }),
        (res) => (res.outcome === 'opened'
          ? done(`${a.name} is open until ${fmtTime(res.open_until)} (single custodian).`)
          : done(`Unseal ${res.id} of ${a.name} requested: ${res.confirmations.length} of ${res.required} confirmations. Another custodian confirms at`,
            '/ui/breakglass/unseals/' + encodeURIComponent(res.id))), sf));
    }
    if (a.state === 'unseal_requested' && u && !(u.confirmations || []).some((c) => c.custodian === who.user)) {
      const sf = secondFactor(a);
      // With signatures.unseal: required the confirmation is an electronic
      // signature: the custodian also chooses its meaning.
      const meaning = signed ? meaningSelect(signMeanings, 'unseal', 'meaning of the confirmation of ' + u.id) : null;
      const key = passkeyChoice('confirm ' + u.id + ' with a passkey');
      out.push(actionForm('confirm', [el('span', { class: 'muted' }, signed ? 'Sign the confirmation (electronic signature): ' : 'Confirm with a fresh second factor: '),
        meaning ? el('label', null, 'Meaning ', meaning) : null, sf.parts, el('label', null, key, ' with a passkey')],
        { text: 'Confirm unseal', class: 'danger' },
        async () => api('POST', `/api/v1/breakglass/unseals/${encodeURIComponent(u.id)}/confirm`,
          { ...sf.value(), ...(meaning ? { meaning: meaning.value } : {}), ...(await passkeyFor(key, a, u)) }),
        (res) => done(res.outcome === 'opened'
          ? `Confirmed: ${res.confirmations.length} of ${res.required}. ${a.name} is open for ${res.requested_by} until ${fmtTime(res.open_until)}.`
          : `Confirmed: ${res.confirmations.length} of ${res.required} confirmations.`), sf));
    } else if (a.state === 'unseal_requested') {
      out.push(el('p', { class: 'muted' }, 'You confirmed this unseal; it waits for other custodians.'));
    }
    if (a.state === 'unseal_requested' || a.state === 'open' || a.state === 'compromised-until-rotated') {
      const verb = { unseal_requested: 'Cancel request', open: 'Close and reseal', 'compromised-until-rotated': 'Retry rotation' }[a.state];
      const [reason, rl] = field('Reason', { name: 'close-reason', placeholder: 'optional', size: 24 });
      out.push(actionForm('close', [el('span', null, rl, reason)], { text: verb },
        () => api('POST', `/api/v1/breakglass/${encodeURIComponent(a.name)}/close`, { reason: reason.value }),
        (res) => done(`${a.name}: ${stateLabels[res.state] || res.state}.`)));
    }
    return out;
  };

  const card = (a) => {
    const u = a.unseal;
    const rows = [
      ['Target / role', `${a.target} / ${a.role} (${a.credential})`],
      ['Custodians', `${(a.custodians || []).join(', ')} — ${a.required} must confirm${a.single_custodian ? ' (single custodian allowed)' : ''}`],
      ['Stays open', `at most ${goDuration(a.max_open)}`],
      ['Drill', [drillLine(a), ` · schedule ${(a.drill && a.drill.schedule) || ''}`]],
      ['Last drill', lastDrill(a)],
    ];
    if (u) {
      rows.push(['Unseal', `${u.id}${u.drill ? ' (drill ' + u.drill + ')' : ''}, requested by ${u.requested_by} ${when(u.requested_at)}`]);
      rows.push(['Reason', `${u.reason} [incident ${u.incident}]`]);
      rows.push(['Confirmations', confirmations(u)]);
      if (a.state === 'unseal_requested') rows.push(['Expires', when(u.expires_at)]);
      if (u.open_until) rows.push(['Open until', `${when(u.open_until)}${u.grant_id ? ', grant ' + u.grant_id + ' for ' + u.requested_by : ''}`]);
    }
    if (a.state === 'compromised-until-rotated') {
      rows.push(['Compromised since', when(a.compromised_since)]);
      rows.push(['Rotation error', a.last_rotation_error || '']);
    }
    if (a.state === 'rotating') rows.push(['Rotating', a.rotate_reason || '']);
    if (a.last_rotation) rows.push(['Last rotation', when(a.last_rotation)]);
    const lu = a.last_unseal;
    if (lu) rows.push(['Last unseal', `${lu.id}: ${lu.outcome} ${fmtTime(lu.closed_at || lu.opened_at || lu.requested_at)}${lu.closed_by ? ' by ' + lu.closed_by : ''}`]);
    return el('article', { class: 'card bg-account' + (a.drill && a.drill.overdue ? ' has-overdue' : ''), dataset: { account: a.name, state: a.state } },
      el('h2', null, a.name, ' ', badge(a.state), a.drill && a.drill.overdue ? el('span', { class: 'badge bg-overdue' }, 'Drill overdue') : null),
      el('table', { class: 'grid facts' }, el('tbody', null, rows.map(([k, v]) => el('tr', null, el('td', null, k), el('td', null, v))))),
      actions(a));
  };

  // restoreRows are the rows of drills the broker files under no account
  // (restore drills, "(restore)"), which only security admins are shown.
  async function restoreRows(accts) {
    let all = [];
    try {
      all = await api('GET', '/api/v1/drills');
    } catch (e) {
      if (e.code !== 'not_configured') throw e;
    }
    const names = new Set(accts.map((a) => a.name));
    return (all || []).filter((d) => !names.has(d.account)).map((d) => ({
      name: d.account, target: d.target, drill: d.due, drills: { last: d.last, running: d.running, last_ok: d.last_ok },
    }));
  }

  const drillRows = (accts) => accts.map((a) => el('tr', { dataset: { account: a.name, overdue: a.drill && a.drill.overdue ? 'yes' : 'no' }, class: a.drill && a.drill.overdue ? 'overdue-row' : null },
    el('td', null, a.name), el('td', null, a.target), el('td', null, (a.drill && a.drill.schedule) || ''),
    el('td', null, when(a.drill && a.drill.next_due)),
    el('td', null, a.drill && a.drill.overdue ? el('strong', { class: 'overdue' }, '⚠ OVERDUE') : 'on schedule'),
    el('td', null, lastDrill(a)), el('td', null, a.drills && a.drills.last_ok ? fmtTime(a.drills.last_ok) : 'never')));
  const drillHead = ['Account', 'Target', 'Schedule', 'Next due', 'Standing', 'Last drill', 'Last passed'];

  async function load() {
    let data;
    try {
      data = await api('GET', '/api/v1/breakglass');
    } catch (e) {
      if (e.code !== 'not_configured') throw e;
      // No account on this broker: say how to add one, not "Error".
      status.replaceChildren();
      accountsBox.replaceChildren(emptyState('bg-none',
        'No break-glass account is configured on this broker. A break-glass account is a sealed emergency login that ' +
        'named custodians open together, each with a password and an authenticator code. An operator adds one under ' +
        'breakglass: in custos.yaml (docs/breakglass.md); the development stack (make up) has pg-admin.'));
      const others = await restoreRows([]);
      drillsBox.replaceChildren(others.length ? table(drillHead, drillRows(others))
        : el('p', { class: 'muted' }, 'Drills are scheduled per break-glass account; there is none yet.'));
      return;
    }
    const accts = data.accounts || [];
    status.replaceChildren();
    if ((data.overdue || []).length) {
      status.append(el('p', { class: 'notice warn', role: 'alert', id: 'bg-overdue' },
        `⚠ Drill overdue: ${data.overdue.join(', ')}. A custodian runs it with: `,
        data.overdue.flatMap((n, i) => [i ? ', ' : '', el('code', null, 'custos drill run ' + n)])));
    }
    let focused = null;
    if (focus) {
      focused = accts.find((a) => (a.unseal && a.unseal.id === focus) || (a.last_unseal && a.last_unseal.id === focus));
      if (!focused) {
        focusBox.replaceChildren(el('p', { class: 'notice error', role: 'alert' },
          `Unseal ${focus} is not on any break-glass account you may see (you are not a custodian, or it is long closed).`));
      } else {
        const pending = focused.unseal && focused.unseal.id === focus && focused.state === 'unseal_requested';
        const lu = focused.last_unseal;
        focusBox.replaceChildren(...[
          pending ? null : focused.state === 'open' && focused.unseal && focused.unseal.id === focus
            ? el('p', { class: 'notice ok', role: 'status' }, `This unseal has its confirmations: ${focused.name} is open until ${fmtTime(focused.unseal.open_until)}.`)
            : el('p', { class: 'notice warn', role: 'status' }, focused.unseal && focused.unseal.id === focus
              ? `This unseal is no longer pending: ${focused.name} is ${stateLabels[focused.state] || focused.state}.`
              : `This unseal is no longer pending: ${lu.outcome}${lu.close_reason ? ' (' + lu.close_reason + ')' : ''}.`),
          card(focused)].filter(Boolean));
      }
    }
    const rest = accts.filter((a) => a !== focused);
    accountsBox.replaceChildren(...(rest.length ? rest.map(card)
      : [focused ? el('p', { class: 'muted' }, 'No other account.')
        : emptyState('bg-none', 'You are not a custodian of any break-glass account, so there is nothing for you here. ' +
          'Custodians are named per account in custos.yaml; security admins see every account.')]));
    const others = await restoreRows(accts);
    drillsBox.replaceChildren(table(drillHead, drillRows(accts.concat(others)),
      { empty: 'No drill to show: drills belong to the accounts you are custodian of.' }));
  }

  refresh.addEventListener('click', () => load().catch((e) => status.prepend(el('p', { class: 'notice error', role: 'alert' }, explain(e)))));
  await load();
  if (focus) document.getElementById('bg-focus').scrollIntoView();
}
