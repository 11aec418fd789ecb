// Passkeys and step-up in Chromium (TestBrowserPasskeys), with the
// browser's virtual authenticator (DevTools WebAuthn domain): bob
// registers a passkey on the Security keys page, then approves requests
// for a role whose policy says step_up: passkey.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

// totp is RFC 6238 (SHA-1, 6 digits, 30 s) over a base32 secret, as an
// authenticator app computes it.
function totp(secret, at = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(Math.floor(at / 30000)));
  const h = createHmac('sha1', key).update(msg).digest();
  const o = h[h.length - 1] & 0x0f;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, '0');
}

const F = JSON.parse(process.env.CUSTOS_E2E);
const ART = process.env.CUSTOS_E2E_ARTIFACTS;
const profile = mkdtempSync(join(tmpdir(), 'custos-e2e-passkeys-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  ignoreHTTPSErrors: true,
  viewport: { width: 1300, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
context.setDefaultTimeout(15000);
const page = context.pages()[0] || await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push('page error: ' + e.message));
const shot = (name) => page.screenshot({ path: join(ART, name + '.png'), fullPage: true });
const [rq1, rq2, rq3] = F.requests;

// state reads a request's state as bob sees it.
const state = (id) => page.evaluate(async (id) => (await (await fetch('/api/v1/requests/' + id)).json()).state, id);

try {
  // A platform authenticator that verifies its user (as a fingerprint
  // reader or screen lock would) and keeps discoverable credentials.
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true },
  });

  await page.goto(F.url + '/ui/login');
  await page.fill('#user', F.user);
  await page.fill('#password', F.password);
  await page.click('#login-form button[type=submit]');
  await page.waitForURL(/\/ui\/sessions/);

  // Register a passkey.
  await page.goto(F.url + '/ui/security');
  await page.locator('#passkeys table, #passkeys .empty').first().waitFor().catch(() => {});
  await page.fill('#passkey-name', 'virtual laptop');
  await page.click('#passkey-register');
  await page.locator('#passkeys tr[data-passkey]').waitFor();
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
  console.log('passkeys browser test passed');
} catch (e) {
  await shot('passkeys-failure').catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
