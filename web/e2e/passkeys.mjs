// Passkeys and step-up in Chromium (TestBrowserPasskeys), with the
// browser's virtual authenticator (DevTools WebAuthn domain): bob
// registers a passkey on the Security keys page, then approves requests
// for a role whose policy says step_up: passkey.
import assert from 'node:assert/strict';
import { F, registerPasskey, run, signIn, totp, virtualAuthenticator } from './browser.mjs';

const [rq1, rq2, rq3] = F.requests;

await run('passkeys', { width: 1300, height: 900 }, async ({ context, page, problems, shot }) => {
  // state reads a request's state as bob sees it.
  const state = (id) => page.evaluate(async (id) => (await (await fetch('/api/v1/requests/' + id)).json()).state, id);
  const { cdp, authenticatorId } = await virtualAuthenticator(context, page);
  await signIn(page, F.user, F.password);

  // Register a passkey.
  await registerPasskey(page, 'virtual laptop');
  assert.equal((await page.locator('#passkeys tr[data-passkey] td').first().textContent()).trim(), 'virtual laptop');
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1, 'the authenticator holds the registered credential');
  await shot('passkeys-01-registered');

  // Set up an authenticator app: the QR code and secret of an otpauth
  // enrolment, confirmed with the app's current code.
  await page.click('#totp-begin');
  await page.locator('#totp-qr').waitFor();
  assert.ok((await page.locator('#totp-qr').getAttribute('src')).startsWith('data:image/png;base64,'));
  const secret = (await page.locator('#totp-secret').textContent()).trim();
  await page.fill('#totp-code', totp(secret));
  await shot('passkeys-01b-totp');
  await page.click('#totp-confirm button[type=submit]');
  await page.locator('#totp p.notice.ok').waitFor();

  // Approving without a fresh passkey is refused, with a message that
  // says what is needed; the request stays pending.
  await page.goto(F.url + '/ui/requests');
  const approve = page.locator(`#pending tr[data-request="${rq1}"] button[data-action=approve]`);
  await approve.click();
  const alert = page.locator('p.notice.error[role=alert]').first();
  await alert.waitFor();
  const msg = await alert.textContent();
  assert.match(msg, /passkey/, 'the refusal names the passkey');
  assert.match(msg, /TOTP code is not enough/);
  assert.equal(await state(rq1), 'pending');
  assert.equal((await approve.textContent()).trim(), 'Approve with passkey');
  await shot('passkeys-02-refused');

  // With a passkey assertion bound to this request it is approved.
  await approve.click();
  await page.locator('p.notice.ok', { hasText: 'Approved: grant' }).waitFor();
  assert.equal(await state(rq1), 'approved');
  await shot('passkeys-03-approved');

  // An assertion for rq2 does not approve rq3; one that approved rq2
  // cannot be replayed on rq3. The page's own modules do the ceremony.
  const results = await page.evaluate(async ([rq2, rq3]) => {
    const { stepUp } = await import('/ui/static/js/webauthn.js');
    const { api } = await import('/ui/static/js/lib.js');
    const approve = async (id, step_up) => {
      try { const r = await api('POST', `/api/v1/requests/${id}/approve`, { comment: 'e2e', step_up }); return { ok: true, state: r.request.state }; }
      catch (e) { return { ok: false, status: e.status, code: e.code, message: e.message }; }
    };
    const forRq2 = await stepUp('request.approve', rq2);
    const wrongObject = await approve(rq3, forRq2);
    const fresh = await stepUp('request.approve', rq2);
    const bound = await approve(rq2, fresh);
    const replay = await approve(rq3, fresh);
    return { wrongObject, bound, replay };
  }, [rq2, rq3]);
  assert.deepEqual([results.wrongObject.status, results.wrongObject.code], [403, 'step_up_required'], JSON.stringify(results.wrongObject));
  assert.match(results.wrongObject.message, /another action or object/);
  assert.deepEqual(results.bound, { ok: true, state: 'approved' });
  assert.deepEqual([results.replay.status, results.replay.code], [403, 'step_up_required'], JSON.stringify(results.replay));
  assert.match(results.replay.message, /already used/);
  assert.equal(await state(rq3), 'pending');
  assert.deepEqual(problems, []);
});
