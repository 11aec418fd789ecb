import { api, el, setMe } from './lib.js';

export async function render(root) {
  const user = el('input', { name: 'user', id: 'user', autocomplete: 'username', required: true });
  const pass = el('input', { name: 'password', id: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const totp = el('input', { name: 'totp', id: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', placeholder: 'if you have one' });
  const msg = el('p', { class: 'notice error', role: 'alert', hidden: true });
  const form = el('form', { class: 'card login', id: 'login-form' },
    el('h1', null, 'Sign in to Custos'),
    el('label', { for: 'user' }, 'User'), user,
    el('label', { for: 'password' }, 'Password'), pass,
    el('label', { for: 'totp' }, 'Authenticator code'), totp,
    msg,
    el('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.hidden = true;
    try {
      const res = await api('POST', '/api/v1/session', { user: user.value, password: pass.value, totp: totp.value });
      setMe(res);
      const next = new URLSearchParams(location.search).get('next');
      location.assign(next && next.startsWith('/ui/') ? next : '/ui/sessions');
    } catch (e) {
      msg.textContent = e.message;
      msg.hidden = false;
    }
  });
  root.append(form);
  user.focus();
  // Single sign-on, when the broker offers it: a plain link, so the
  // browser itself goes to the identity provider and back.
  try {
    const sso = await api('GET', '/api/v1/auth/sso');
    if (sso.enabled) {
      form.append(el('p', { class: 'sso-or' }, 'or'),
        el('a', { class: 'button primary', id: 'sso-login', href: sso.login_url }, 'Sign in with ' + sso.name));
    }
  } catch (e) {
    // Without the answer the password form still works.
  }
}
