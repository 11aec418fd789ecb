// Security keys: the signed-in user's passkeys and security keys, which
// confirm sensitive actions (step-up). Register with a name, list,
// remove (removal itself needs a fresh confirmation).
import { api, el, table, notice, section, fmtTime, explain } from './lib.js';
import { registerPasskey, stepUp, withStepUp } from './webauthn.js';

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

  // TOTP: scan the QR code (or type the secret) into an authenticator
  // app, then confirm with its current code.
  const totpBox = el('div', { id: 'totp' });
  const startTOTP = el('button', { type: 'button', id: 'totp-begin' }, 'Set up an authenticator app');
  startTOTP.addEventListener('click', async () => {
    try {
      // Replacing an enrolled secret, or a session signed in long ago:
      // confirm with a passkey first.
      const e = await withStepUp('totp.enrol', (proof) => api('POST', '/api/v1/totp/begin', proof ? { step_up: proof } : undefined));
      const code = el('input', { id: 'totp-code', inputmode: 'numeric', autocomplete: 'one-time-code', size: 8, placeholder: '123456' });
      const confirm = el('form', { class: 'inline', id: 'totp-confirm' }, el('label', null, 'Code from the app ', code),
        el('button', { type: 'submit', class: 'primary' }, 'Confirm'));
      confirm.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        try {
          await api('POST', '/api/v1/totp', { code: code.value });
          totpBox.replaceChildren(el('p', { class: 'notice ok', role: 'status' }, 'Authenticator app set up: sign-ins now ask for its code.'));
        } catch (err) { notice(root, 'error', explain(err)); }
      });
      // The QR code is the broker's own PNG, shown only as a data URL.
      const qr = el('img', { id: 'totp-qr' });
      if (String(e.qr_png).startsWith('data:image/png;base64,')) qr.src = e.qr_png;
      qr.alt = 'QR code for your authenticator app';
      totpBox.replaceChildren(qr,
        el('p', null, 'Or type this secret: ', el('code', { id: 'totp-secret' }, e.secret)),
        el('p', { class: 'muted' }, `Confirm before ${fmtTime(e.expires)}.`), confirm);
    } catch (err) { notice(root, 'error', explain(err)); }
  });
  totpBox.append(startTOTP);

  root.append(el('h1', null, 'Security keys'),
    section('Register', el('p', { class: 'muted' },
      'A passkey (this device\'s screen lock, a phone, or a security key) confirms sensitive actions: approving high-risk roles, ending sessions, removing a passkey.'), form),
    section('Your passkeys', list),
    section('Authenticator app (TOTP)', el('p', { class: 'muted' },
      'A one-time code from an app is a second factor for sign-in and a weaker confirmation where policy allows it.'), totpBox));
  await load();
}
