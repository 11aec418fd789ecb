// Single sign-on in Chromium (TestBrowserSSO): the login page's provider
// link, the provider's own login form, and back into the UI.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const F = JSON.parse(process.env.CUSTOS_E2E);
const ART = process.env.CUSTOS_E2E_ARTIFACTS;
const profile = mkdtempSync(join(tmpdir(), 'custos-e2e-sso-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  ignoreHTTPSErrors: true,
  viewport: { width: 1200, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
context.setDefaultTimeout(15000);
const page = context.pages()[0] || await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push('page error: ' + e.message));
const shot = (name) => page.screenshot({ path: join(ART, name + '.png'), fullPage: true });

try {
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
  console.log('sso browser test passed');
} catch (e) {
  await shot('sso-failure').catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
