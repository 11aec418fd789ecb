// Electronic signatures: the signing fields a decision on a role with
// policy.signature: required shows (meaning, and password and TOTP code or
// a passkey), and the one-line manifestation of a signature (printed
// name, UTC time, meaning, method). The password and code go to the
// broker with the decision only.
import { api, el } from './lib.js';
import { stepUp } from './webauthn.js';

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

// passkeySignature re-authenticates with a passkey for a signature of
// action (approve, deny, unseal, review) on objectID: the broker's
// challenge is bound to "signature" and "<action>:<objectID>" and usable
// once. It returns the signature body's passkey field.
export async function passkeySignature(action, objectID) {
  return (await stepUp('signature', `${action}:${objectID}`)).assertion;
}

// passkeyChoice is the "sign with a passkey" checkbox of a signing form.
export function passkeyChoice(label) {
  return el('input', { type: 'checkbox', 'aria-label': label, dataset: { signWith: 'passkey' } });
}

// signingFields returns { node, body(action) } for request r: a fieldset
// with a meaning choice per action and the re-authentication fields
// (password and code, or a passkey). body is async: a passkey signature
// asks the authenticator.
export function signingFields(r, all) {
  const choose = (action) => meaningSelect(all, action, `meaning of ${action} for ${r.id}`);
  const approveMeaning = choose('approve');
  const denyMeaning = choose('deny');
  const pw = el('input', { type: 'password', autocomplete: 'current-password', size: 12, placeholder: 'password', 'aria-label': 'password to sign ' + r.id });
  const code = el('input', { inputmode: 'numeric', autocomplete: 'one-time-code', size: 7, placeholder: 'TOTP code', 'aria-label': 'TOTP code to sign ' + r.id });
  const withKey = passkeyChoice('sign ' + r.id + ' with a passkey');
  const node = el('fieldset', { class: 'signature', dataset: { signature: r.id } },
    el('legend', null, 'Electronic signature: re-enter your password and a current code, or use a passkey'),
    el('label', null, 'Approve meaning ', approveMeaning), el('label', null, 'Deny meaning ', denyMeaning), pw, code,
    el('label', null, withKey, ' with a passkey'));
  const body = async (action) => {
    const s = { meaning: (action === 'approve' ? approveMeaning : denyMeaning).value };
    if (withKey.checked) {
      s.passkey = await passkeySignature(action, r.id);
    } else {
      s.password = pw.value; s.totp = code.value;
    }
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
