// The risk dashboard in chromium, run by dashboard_test.go: security signs
// in, sees a tile per indicator with the crossed limit flagged, opens its
// records, follows a record's link to the audit log, and closes the open
// action with a comment; the panel of unmask sessions links to the
// session's timeline. Screenshots go to CUSTOS_E2E_ARTIFACTS.
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

  // Who saw which fields unmasked: the unmask session with its column,
  // approver and timeline link; not the masked role's session.
  await page.waitForSelector(`#unmasked tr[data-session="${F.unmasked}"]`);
  const um = page.locator(`#unmasked tr[data-session="${F.unmasked}"]`);
  const umText = await um.textContent();
  assert.match(umText, /alice/);
  assert.match(umText, /monitor-unmask/);
  assert.match(umText, /subject_id: public\.subjects\.subject_id/);
  assert.match(umText, /bob/);
  assert.equal(await page.locator(`#unmasked tr[data-session="${F.masked}"]`).count(), 0, 'masked session not listed');
  await um.locator('li[data-column]').scrollIntoViewIfNeeded();
  await shot('dashboard-unmasked');
  await um.locator(`a[href="/ui/sessions/${F.unmasked}"]`).click();
  await page.waitForURL(new RegExp('/ui/sessions/' + F.unmasked + '$'));
  await page.waitForSelector('#pg[data-loaded=yes]');
  await page.waitForSelector('#statements tbody tr');
  const timeline = await page.textContent('#statements');
  assert.ok(timeline.includes('unmask in effect for subject_id'), 'the unmask grant in the timeline');
  assert.ok(timeline.includes('returned in clear under the unmask grant: subject_id (public.subjects.subject_id)'), 'the columns returned in clear in the timeline');
  await shot('dashboard-unmasked-timeline');
  await page.goto(url('/ui/dashboard'));
  await page.waitForSelector('#tiles .tile');

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
