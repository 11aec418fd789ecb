// Single sign-on in Chromium (TestBrowserSSO): the login page's provider
// link, the provider's own login form, and back into the UI.
import assert from 'node:assert/strict';
import { F, run } from './browser.mjs';

await run('sso', { width: 1200, height: 900 }, async ({ page, problems, shot }) => {
  await page.goto(F.url + '/ui/login');
  const link = page.locator('#sso-login');
  await link.waitFor();
  assert.equal((await link.textContent()).trim(), 'Sign in with Sponsor IdP');
  await shot('sso-01-login');
  await link.click();
  // The provider's page.
  await page.waitForURL(/\/login\/username\?authRequestID=/);
  await page.fill('#username', F.user);
  await page.fill('#password', F.password);
  await shot('sso-02-provider');
  await page.click('button[type=submit]');
  // Back at the broker, then on to the UI.
  await page.waitForURL(/\/ui\/sessions/);
  await shot('sso-03-signed-in');
  const me = await page.evaluate(async () => (await fetch('/api/v1/whoami')).json());
  assert.equal(me.user, F.user);
  assert.equal(me.via, 'web');
  assert.equal(me.auth_method, 'sso');
  assert.deepEqual(me.groups, ['dbas']);
  // Her provider group lets her request: the targets list is not empty.
  const targets = await page.evaluate(async () => (await fetch('/api/v1/targets')).json());
  assert.ok(targets.length > 0, 'an SSO user in dbas may request a target');
  assert.deepEqual(problems, []);
});
