// Signing an approval in Chromium (TestBrowserSignedApproval): the
// pending row of a signed role asks for the meaning, the password and a
// current code; without them the approval is refused.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const F = JSON.parse(process.env.CUSTOS_E2E);
const ART = process.env.CUSTOS_E2E_ARTIFACTS;
const profile = mkdtempSync(join(tmpdir(), 'custos-e2e-esign-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  ignoreHTTPSErrors: true,
  viewport: { width: 1400, height: 900 },
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
  await page.fill('#user', 'sam');
  await page.fill('#password', F.password);
  await page.fill('#totp', F.login);
  await page.click('button[type=submit]');
  await page.waitForURL(/\/ui\/sessions/);
  await page.goto(F.url + '/ui/requests/' + F.request);
  const row = page.locator(`#pending tr[data-request="${F.request}"]`);
  await row.waitFor();
  const fields = row.locator(`fieldset[data-signature="${F.request}"]`);
  await fields.waitFor();
  const meaning = row.locator('select[data-meaning="approve"]');
  assert.deepEqual(await meaning.locator('option').allTextContents(), ['approved for investigation only', 'approved for production change']);
  await shot('esign-01-pending');
  // Without the re-authentication the approval is refused.
  await row.locator('button[data-action="approve"]').click();
  await page.locator('.notice.error').waitFor();
  assert.match(await page.locator('.notice.error').first().textContent(), /re-authentication failed/);
  await meaning.selectOption('approved for production change');
  await row.locator(`input[aria-label="password to sign ${F.request}"]`).fill(F.password);
  await row.locator(`input[aria-label="TOTP code to sign ${F.request}"]`).fill(F.sign);
  await shot('esign-02-filled');
  await row.locator('button[data-action="approve"]').click();
  await page.locator('.notice.ok', { hasText: 'Approved' }).waitFor();
  // The decision shows its manifestation: printed name, UTC time, meaning, method.
  const signed = page.locator(`#all tr[data-request="${F.request}"] ul.signatures li`);
  await signed.waitFor();
  assert.match(await signed.textContent(), /^Signed by sam \(sam\) at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, meaning "approved for production change", re-authenticated by password\+totp$/);
  await shot('esign-03-approved');
  assert.deepEqual(problems, []);
  console.log('signing browser test passed');
} catch (e) {
  await shot('esign-failure').catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
