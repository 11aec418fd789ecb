// Signing an approval in Chromium (TestBrowserSignedApproval): the
// pending row of a signed role asks for the meaning, the password and a
// current code; without them the approval is refused. A second request
// is signed with a passkey (Chromium's virtual authenticator) instead of
// the password and code.
import assert from 'node:assert/strict';
import { F, registerPasskey, run, signIn, virtualAuthenticator } from './browser.mjs';

await run('esign', { width: 1400, height: 900 }, async ({ context, page, problems, shot }) => {
  await virtualAuthenticator(context, page);
  await signIn(page, 'sam', F.password, F.login);
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

  // With a passkey: registered on the Security keys page (a fresh
  // sign-in), then chosen in the signing fields.
  await registerPasskey(page, 'virtual laptop');
  await page.goto(F.url + '/ui/requests/' + F.passkeyRequest);
  const row2 = page.locator(`#pending tr[data-request="${F.passkeyRequest}"]`);
  await row2.waitFor();
  await row2.locator('select[data-meaning="approve"]').selectOption('approved for investigation only');
  await row2.locator(`input[aria-label="sign ${F.passkeyRequest} with a passkey"]`).check();
  await shot('esign-04-passkey');
  await row2.locator('button[data-action="approve"]').click();
  await page.locator('.notice.ok', { hasText: 'Approved' }).waitFor();
  const signed2 = page.locator(`#all tr[data-request="${F.passkeyRequest}"] ul.signatures li`);
  await signed2.waitFor();
  assert.match(await signed2.textContent(), /meaning "approved for investigation only", re-authenticated by passkey$/);
  await shot('esign-05-passkey-approved');
  assert.deepEqual(problems, []);
});
