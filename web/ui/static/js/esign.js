// Electronic signatures: the signing fields a decision on a role with
// policy.signature: required shows (meaning, password, TOTP code), and the
// one-line manifestation of a signature (printed name, UTC time, meaning,
// method). The password and code go to the broker with the decision only.
import { api, el } from './lib.js';

let cache = null;

async function load() {
  if (!cache) cache = await api('GET', '/api/v1/signatures/meanings');
  return cache;
}

// meanings are the meanings a signer may choose, per action.
export async function meanings() { return (await load()).meanings || {}; }

// unsealSigned reports whether unseal confirmations are signatures.
export async function unsealSigned() { return !!(await load()).unseal_required; }

// meaningSelect is a choice among the meanings of action.
export function meaningSelect(all, action, label) {
  return el('select', { 'aria-label': label, dataset: { meaning: action } }, (all[action] || []).map((m) => el('option', { value: m }, m)));
}

// signingFields returns { node, body(action) } for request r: a fieldset
// with a meaning choice per action and the re-authentication fields.
export function signingFields(r, all) {
  const choose = (action) => meaningSelect(all, action, `meaning of ${action} for ${r.id}`);
  const approveMeaning = choose('approve');
  const denyMeaning = choose('deny');
  const pw = el('input', { type: 'password', autocomplete: 'current-password', size: 12, placeholder: 'password', 'aria-label': 'password to sign ' + r.id });
  const code = el('input', { inputmode: 'numeric', autocomplete: 'one-time-code', size: 7, placeholder: 'TOTP code', 'aria-label': 'TOTP code to sign ' + r.id });
  const node = el('fieldset', { class: 'signature', dataset: { signature: r.id } },
    el('legend', null, 'Electronic signature: re-enter your password and a current code'),
    el('label', null, 'Approve meaning ', approveMeaning), el('label', null, 'Deny meaning ', denyMeaning), pw, code);
  const body = (action) => {
    const s = { meaning: (action === 'approve' ? approveMeaning : denyMeaning).value, password: pw.value, totp: code.value };
    pw.value = ''; code.value = '';
    return s;
  };
  return { node, body };
}

// manifestation is a signature as people read it.
export function manifestation(s) {
  const at = new Date(s.signed_at).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  return `Signed by ${s.printed_name} (${s.signer}) at ${at}, meaning "${s.meaning}", re-authenticated by ${s.method}`;
}

// signatures lists the manifestations of r's signed decisions.
export function signatures(r) {
  const all = [...(r.approvals || []), ...(r.denials || [])].filter((d) => d.signature);
  return all.length ? el('ul', { class: 'signatures' }, all.map((d) => el('li', { dataset: { signedBy: d.by } }, manifestation(d.signature)))) : null;
}
