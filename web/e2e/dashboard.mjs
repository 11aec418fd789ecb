// The risk dashboard in chromium, run by dashboard_test.go: security signs
// in, sees a tile per indicator with the crossed limit flagged, opens its
// records, follows a record's link to the audit log, and closes the open
// action with a comment. Screenshots go to CUSTOS_E2E_ARTIFACTS.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const F = JSON.parse(process.env.CUSTOS_E2E);
const ART = process.env.CUSTOS_E2E_ARTIFACTS;
const profile = mkdtempSync(join(tmpdir(), 'custos-e2e-dash-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium', headless: true, ignoreHTTPSErrors: true,
  viewport: { width: 1400, height: 1000 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
context.setDefaultTimeout(15000);
const page = context.pages()[0] || await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push('page error: ' + e.message));
page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push('console error: ' + m.text()); });
const url = (p) => F.url + p;
const shot = (name) => page.screenshot({ path: join(ART, name + '.png'), fullPage: true });

let failed = false;
try {
  await page.goto(url('/ui/login'));
  await page.fill('#user', 'sam');
  await page.fill('#password', F.password);
  await page.fill('#totp', F.totp);
  await page.click('button[type=submit]');
  await page.waitForURL(/\/ui\/sessions/);

  await page.click('nav a[href="/ui/dashboard"]');
  await page.waitForSelector('#tiles .tile');
  assert.equal(await page.locator('#tiles .tile').count(), 18, 'a tile per indicator');
  const mfa = page.locator('#tile-users_without_mfa');
  assert.equal(await mfa.getAttribute('data-status'), 'crossed');
  assert.match(await mfa.textContent(), /LIMIT CROSSED: users_without_mfa > 0/);
  assert.equal(await page.locator('#tile-retrieval_pass_rate').getAttribute('data-status'), 'no_data');
  assert.equal(await page.locator('#actions tr[data-action]').count(), 1, 'one open action');
  await shot('dashboard-tiles');

  await mfa.click();
  await page.waitForSelector('#records a[data-record="alice"]');
  assert.match(page.url(), /\/ui\/dashboard\?indicator=users_without_mfa$/);
  await shot('dashboard-records');
  await page.click('#records a[data-record="alice"]');
  await page.waitForURL(/\/ui\/audit\?actor=alice/);
  await page.waitForSelector('#log table');
  assert.equal(await page.inputValue('#a-actor'), 'alice', 'the audit log opens filtered on the record');
  await shot('dashboard-record-audit');

  await page.goto(url('/ui/dashboard'));
  await page.waitForSelector('#actions tr[data-action]');
  await page.fill('#actions input[name=comment]', 'TOTP enrolment scheduled, CHG-9');
  await page.click('#actions button[type=submit]');
  await page.waitForSelector('#no-actions');
  await shot('dashboard-action-closed');
  assert.deepEqual(problems, [], 'no page errors');
  console.log('dashboard spec passed');
} catch (e) {
  failed = true;
  console.error('dashboard spec failed:', e);
  await shot('dashboard-failure').catch(() => {});
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
