import { api, me, el, table, notice, section, fmtTime, explain, emptyState } from './lib.js';
import { meanings, signingFields, signatures } from './esign.js';
import { stepUp } from './webauthn.js';

function approvals(r) {
  const names = (r.approvals || []).map((d) => d.by).join(', ');
  return `${(r.approvals || []).length}/${r.required}` + (names ? ` (${names})` : '');
}

// endingSoon: the broker marks active grants within
// notify.grant_ending_before of their end.
function endingSoon(g) { return g.state === 'active' && !!g.ending_soon; }

export async function render(root) {
  const who = await me();
  const targets = await api('GET', '/api/v1/targets');
  const pendingBox = el('div', { id: 'pending' });
  const mineBox = el('div', { id: 'mine' });
  const grantsBox = el('div', { id: 'grants' });
  const allBox = el('div', { id: 'all' });
  const soonBox = el('div', { id: 'ending-soon' });
  const holdsBox = el('div', { id: 'holds' });

  // New request form.
  const tsel = el('select', { id: 'req-target', name: 'target' }, targets.map((t) => el('option', { value: t.name }, `${t.name} (${t.kind})`)));
  const rsel = el('select', { id: 'req-role', name: 'role' });
  const fillRoles = () => {
    const t = targets.find((x) => x.name === tsel.value);
    rsel.replaceChildren(...(t ? t.roles : []).map((r) => el('option', { value: r.name },
      `${r.name} · ${r.approvals} approval${r.approvals === 1 ? '' : 's'}${r.max_duration ? ' · max ' + r.max_duration : ''}`)));
  };
  tsel.addEventListener('change', fillRoles);
  fillRoles();
  const dur = el('input', { id: 'req-duration', name: 'duration', value: '1h', size: 6 });
  const reason = el('input', { id: 'req-reason', name: 'reason', placeholder: 'why, e.g. INC-123 fix replication', size: 40 });
  const ticket = el('input', { id: 'req-ticket', name: 'ticket', placeholder: 'ticket', size: 12 });
  const form = el('form', { class: 'inline', id: 'request-form' },
    el('label', null, 'Target ', tsel), el('label', null, 'Role ', rsel), el('label', null, 'For ', dur),
    el('label', null, 'Reason ', reason), el('label', null, 'Ticket ', ticket),
    el('button', { type: 'submit', class: 'primary' }, 'Request access'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('POST', '/api/v1/requests', { target: tsel.value, role: rsel.value, duration: dur.value, reason: reason.value, ticket: ticket.value });
      notice(root, 'ok', `Request ${r.id} created: waiting for ${r.required} approval(s).`);
      reason.value = '';
      await load();
    } catch (e) { notice(root, 'error', explain(e)); }
  });

  // forText is a request's duration; an extension says which grant it
  // extends and to when.
  const forText = (r) => r.extends
    ? `+${r.duration} on ${r.extends} (extension to ${fmtTime(new Date(new Date(r.grant_ends_at).getTime() + r.duration_ns / 1e6).toISOString())})`
    : r.duration;

  const decideRow = (r) => {
    const comment = el('input', { placeholder: 'comment (required to deny)', size: 24, 'aria-label': 'comment for ' + r.id });
    const approve = el('button', { class: 'primary', dataset: { action: 'approve', id: r.id } }, 'Approve');
    const deny = el('button', { class: 'danger', dataset: { action: 'deny', id: r.id } }, 'Deny');
    // A role whose decisions are electronic signatures asks for a meaning
    // and a fresh password and code with the click. A role whose policy
    // asks for a step-up refuses a plain approval (step_up_required); the
    // button then confirms with a passkey bound to this request.
    const sign = r.signature_required ? signingFields(r, signingMeanings) : null;
    let withPasskey = false;
    const act = (what) => async () => {
      try {
        const body = { comment: comment.value };
        if (sign) body.signature = await sign.body(what);
        if (what === 'approve' && withPasskey) body.step_up = await stepUp('request.approve', r.id);
        const res = await api('POST', `/api/v1/requests/${encodeURIComponent(r.id)}/${what}`, body);
        notice(root, 'ok', what === 'approve'
          ? (res.grant && res.request.extends ? `Extended: grant ${res.grant.id} now ends ${fmtTime(res.grant.ends_at)}.`
            : res.grant ? `Approved: grant ${res.grant.id} is active until ${fmtTime(res.grant.ends_at)}.` : `Approved: ${approvals(res.request)}.`)
          : `Denied request ${r.id}.`);
        await load();
      } catch (e) {
        if (what === 'approve' && e.code === 'step_up_required' && !withPasskey) {
          withPasskey = true;
          approve.textContent = 'Approve with passkey';
          notice(root, 'error', `${explain(e)} Press "Approve with passkey" to confirm.`);
          return;
        }
        notice(root, 'error', explain(e));
      }
    };
    approve.addEventListener('click', act('approve'));
    deny.addEventListener('click', act('deny'));
    return el('tr', { dataset: { request: r.id } }, el('td', null, r.id), el('td', null, r.user), el('td', null, `${r.target} / ${r.role}`),
      el('td', null, forText(r)), el('td', null, r.reason || ''), el('td', null, r.ticket || ''), el('td', null, approvals(r)),
      el('td', null, fmtTime(r.expires_at)), el('td', { class: 'actions' }, comment, approve, deny, sign ? sign.node : null));
  };

  const mineRow = (r) => {
    const cancel = r.state === 'pending' ? el('button', { dataset: { action: 'cancel', id: r.id } }, 'Cancel') : null;
    if (cancel) cancel.addEventListener('click', async () => {
      try { await api('POST', `/api/v1/requests/${encodeURIComponent(r.id)}/cancel`, {}); await load(); } catch (e) { notice(root, 'error', explain(e)); }
    });
    return el('tr', { dataset: { request: r.id } }, el('td', null, r.id), el('td', null, `${r.target} / ${r.role}`), el('td', null, forText(r)),
      el('td', { class: 'state-' + r.state }, r.state), el('td', null, approvals(r), signatures(r)), el('td', null, r.reason || ''),
      el('td', null, fmtTime(r.created_at)), el('td', null, r.grant_id || ''), el('td', null, cancel));
  };

  const grantRow = (g) => {
    const reasonIn = el('input', { placeholder: 'reason', size: 16, 'aria-label': 'reason (revoke or extend) for ' + g.id });
    const revoke = g.state === 'active' ? el('button', { class: 'danger', dataset: { action: 'revoke', id: g.id } }, 'Revoke') : null;
    if (revoke) revoke.addEventListener('click', async () => {
      try {
        await api('POST', `/api/v1/grants/${encodeURIComponent(g.id)}/revoke`, { reason: reasonIn.value });
        notice(root, 'ok', `Grant ${g.id} revoked.`);
        await load();
      } catch (e) { notice(root, 'error', explain(e)); }
    });
    // The holder may ask for more time: an extension request approvers decide.
    let extendCtl = null;
    if (g.state === 'active' && g.user === who.user && !g.break_glass) {
      const more = el('input', { value: '30m', size: 5, 'aria-label': 'more time for ' + g.id });
      const extend = el('button', { dataset: { action: 'extend', id: g.id } }, 'Extend');
      extend.addEventListener('click', async () => {
        try {
          const r = await api('POST', `/api/v1/grants/${encodeURIComponent(g.id)}/extend`, { duration: more.value, reason: reasonIn.value });
          notice(root, 'ok', `Extension ${r.id} of grant ${g.id} (+${r.duration}) waits for approval.`);
          await load();
        } catch (e) { notice(root, 'error', explain(e)); }
      });
      extendCtl = [more, extend];
    }
    return el('tr', { dataset: { grant: g.id } }, el('td', null, g.id), el('td', null, g.user), el('td', null, `${g.target} / ${g.role}`),
      el('td', { class: 'state-' + g.state }, g.state), el('td', null, fmtTime(g.starts_at)),
      el('td', null, fmtTime(g.ends_at), endingSoon(g) ? el('strong', { class: 'ending-soon' }, ' ending soon') : null),
      el('td', null, (g.approvers || []).join(', ')), el('td', null, g.reason || ''),
      el('td', { class: 'actions' }, revoke ? [reasonIn, revoke, ...(extendCtl || [])] : (g.revoked_by ? `by ${g.revoked_by}: ${g.revoke_reason || ''}` : '')));
  };

  // Statements the PostgreSQL guardrails hold for approval.
  const holdRow = (h) => {
    const reasonIn = el('input', { placeholder: 'reason', size: 16, 'aria-label': 'reason for ' + h.id });
    const act = (what) => async () => {
      try {
        await api('POST', `/api/v1/holds/${encodeURIComponent(h.id)}/${what}`, { reason: reasonIn.value });
        notice(root, 'ok', what === 'approve' ? `Approved: statement ${h.id} runs once.` : `Denied statement ${h.id}.`);
        await load();
      } catch (e) { notice(root, 'error', explain(e)); }
    };
    let actions = h.decided_by ? `by ${h.decided_by}` : '';
    if (h.can_decide) {
      const approve = el('button', { class: 'primary', dataset: { action: 'approve-hold', id: h.id } }, 'Approve (runs once)');
      const deny = el('button', { class: 'danger', dataset: { action: 'deny-hold', id: h.id } }, 'Deny');
      approve.addEventListener('click', act('approve'));
      deny.addEventListener('click', act('deny'));
      actions = [reasonIn, approve, deny];
    }
    const estimate = h.estimate >= 0 ? `~${h.estimate} rows` : `unknown${h.estimate_note ? ' (' + h.estimate_note + ')' : ''}`;
    return el('tr', { dataset: { hold: h.id } }, el('td', null, h.id), el('td', null, h.user), el('td', null, `${h.target} / ${h.role}`),
      el('td', null, el('a', { href: '/ui/live/' + encodeURIComponent(h.session) }, h.session)),
      el('td', null, el('code', null, h.text)), el('td', null, (h.rules || []).join(', ')), el('td', null, estimate),
      el('td', { class: 'state-' + h.state }, h.state), el('td', null, fmtTime(h.expires)), el('td', { class: 'actions' }, actions));
  };

  let signingMeanings = {};
  async function load() {
    const holds = await api('GET', '/api/v1/holds');
    holdsBox.replaceChildren(table(['Hold', 'User', 'Target / role', 'Session', 'Statement', 'Rules', 'Estimate', 'State', 'Expires', ''],
      holds.map(holdRow), { empty: 'No statement is held. Statement guardrails (docs/data-protection.md) hold risky statements here for an approver of the role.' }));
    const [pending, mine, grants] = await Promise.all([
      api('GET', '/api/v1/requests?view=pending'), api('GET', '/api/v1/requests?view=mine'), api('GET', '/api/v1/grants')]);
    if (pending.some((r) => r.signature_required)) signingMeanings = await meanings();
    const soon = grants.filter((g) => g.user === who.user && endingSoon(g));
    soonBox.replaceChildren(...soon.map((g) => el('p', { class: 'notice warn', dataset: { endingSoon: g.id } },
      `Your grant ${g.id} on ${g.target} / ${g.role} ends at ${fmtTime(g.ends_at)}. For more time: custos extend ${g.id} --for 30m --reason "..."`)));
    pendingBox.replaceChildren(table(['Request', 'User', 'Target / role', 'For', 'Reason', 'Ticket', 'Approvals', 'Expires', ''],
      pending.map(decideRow), { empty: 'Nothing waits for your decision. Requests you may approve appear here (and in Slack, when it is on).' }));
    mineBox.replaceChildren(table(['Request', 'Target / role', 'For', 'State', 'Approvals', 'Reason', 'Created', 'Grant', ''],
      mine.map(mineRow), { empty: 'You have made no requests. Ask for access with the form above, or: custos request TARGET --role ROLE --for 1h --reason "..."' }));
    grantsBox.replaceChildren(table(['Grant', 'User', 'Target / role', 'State', 'Starts', 'Ends', 'Approvers', 'Reason', ''],
      grants.map(grantRow), { empty: 'No grants yet: a grant starts when a request has its approvals, and ends at its end time or when revoked.' }));
    if (who.admin) {
      const all = await api('GET', '/api/v1/requests?view=all');
      allBox.replaceChildren(table(['Request', 'Target / role', 'For', 'State', 'Approvals', 'Reason', 'Created', 'Grant', ''],
        all.map(mineRow), { empty: 'Nobody has requested access yet.' }));
    }
  }

  root.append(...[
    el('h1', null, 'Requests'),
    soonBox,
    section('Request access', targets.length ? form
      : emptyState('no-targets', 'There is no target you may request. An operator names who may request each role (requesters: in custos.yaml, docs/policy.md); ask to be added.')),
    section('Waiting for your approval', pendingBox),
    section('Held statements', holdsBox),
    section('My requests', mineBox),
    section(who.admin ? 'Grants' : 'My grants and grants of roles I approve', grantsBox),
    who.admin ? section('All requests', allBox) : null].filter(Boolean));
  await load();
}
