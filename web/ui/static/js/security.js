// Security keys: the signed-in user's passkeys and security keys, which
// confirm sensitive actions (step-up). Register with a name, list,
// remove (removal itself needs a fresh confirmation).
import { api, el, table, notice, section, fmtTime, explain } from './lib.js';
import { registerPasskey, stepUp } from './webauthn.js';

export async function render(root) {
  const list = el('div', { id: 'passkeys' });
  const name = el('input', { id: 'passkey-name', name: 'name', placeholder: 'e.g. work laptop', size: 24, required: true });
  const form = el('form', { class: 'inline', id: 'passkey-form' },
    el('label', null, 'Name ', name), el('button', { type: 'submit', class: 'primary', id: 'passkey-register' }, 'Register a passkey'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const k = await registerPasskey(name.value);
      notice(root, 'ok', `Passkey "${k.name}" registered.`);
      name.value = '';
      await load();
    } catch (e) { notice(root, 'error', explain(e)); }
  });

  const row = (k) => {
    const remove = el('button', { class: 'danger', dataset: { action: 'remove', id: k.id } }, 'Remove');
    remove.addEventListener('click', async () => {
      try {
        const proof = await stepUp('passkey.remove', k.id);
        await api('DELETE', `/api/v1/passkeys/${encodeURIComponent(k.id)}`, { step_up: proof });
        notice(root, 'ok', `Passkey "${k.name}" removed.`);
        await load();
      } catch (e) { notice(root, 'error', explain(e)); }
    });
    return el('tr', { dataset: { passkey: k.id } }, el('td', null, k.name), el('td', null, fmtTime(k.created)),
      el('td', null, k.last_used ? fmtTime(k.last_used) : 'never'), el('td', null, k.user_verified ? 'yes' : 'no'),
      el('td', { class: 'actions' }, remove));
  };

  async function load() {
    const keys = await api('GET', '/api/v1/passkeys');
    list.replaceChildren(table(['Name', 'Registered', 'Last used', 'Verifies you', ''], keys.map(row),
      { empty: 'You have no passkey. Register one to confirm approvals and other sensitive actions that ask for one.' }));
  }

  root.append(el('h1', null, 'Security keys'),
    section('Register', el('p', { class: 'muted' },
      'A passkey (this device\'s screen lock, a phone, or a security key) confirms sensitive actions: approving high-risk roles, ending sessions, removing a passkey.'), form),
    section('Your passkeys', list));
  await load();
}
