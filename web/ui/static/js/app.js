// Entry point: shows the navigation for the signed-in user and renders the
// page named by <body data-page>.
import { api, me, el, explain } from './lib.js';

const pages = {
  login: () => import('./login.js'),
  requests: () => import('./requests.js'),
  sessions: () => import('./sessions.js'),
  replay: () => import('./replay.js'),
  live: () => import('./live.js'),
  watch: () => import('./watch.js'),
  verify: () => import('./verify.js'),
  audit: () => import('./audit.js'),
  breakglass: () => import('./breakglass.js'),
  evidence: () => import('./evidence.js'),
  reviews: () => import('./reviews.js'),
  dashboard: () => import('./dashboard.js'),
  security: () => import('./security.js'),
};

async function main() {
  const page = document.body.dataset.page;
  const root = document.getElementById('main');
  if (page !== 'login') {
    const who = await me();
    const nav = document.getElementById('nav');
    nav.hidden = false;
    for (const a of nav.querySelectorAll('a')) {
      if (a.dataset.nav.split(' ').includes(page)) a.classList.add('active');
      if ('admin' in a.dataset) a.hidden = !who.admin;
      if ('breakglass' in a.dataset) a.hidden = !who.breakglass;
      if ('reviews' in a.dataset) a.hidden = !who.reviews;
    }
    document.getElementById('who').hidden = false;
    document.getElementById('who-name').textContent = who.user + (who.admin ? ' (security)' : '');
    document.getElementById('logout').addEventListener('click', async () => {
      await api('DELETE', '/api/v1/session');
      location.assign('/ui/login');
    });
  }
  const mod = await pages[page]();
  root.replaceChildren();
  await mod.render(root);
}

// A page that cannot load says why and what to do. Something absent (404:
// not configured, no such item) is a notice; a refusal or a fault is an
// alert.
main().catch((e) => {
  const root = document.getElementById('main');
  const fault = !e || e.status !== 404;
  root.replaceChildren(el('p', { class: 'notice ' + (fault ? 'error' : 'warn'), role: fault ? 'alert' : 'status', id: 'page-problem' }, explain(e)));
});
