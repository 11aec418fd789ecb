// The shared prelude of the browser tests: the fixtures the Go test
// passes (CUSTOS_E2E, JSON) and the screenshot folder
// (CUSTOS_E2E_ARTIFACTS), a headless Chromium with a throw-away profile,
// a page that collects page errors, the signed-in start, Chromium's
// virtual authenticator and an authenticator app's TOTP.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHmac } from 'node:crypto';

export const F = JSON.parse(process.env.CUSTOS_E2E);
export const ART = process.env.CUSTOS_E2E_ARTIFACTS;

// launch starts Chromium with a throw-away profile and returns the
// context, its page (page errors collected in problems), shot(name) for a
// full-page screenshot into the artifacts folder, and close, which also
// removes the profile. options: viewport, acceptDownloads.
export async function launch(name, { viewport, acceptDownloads = false }) {
  const profile = mkdtempSync(join(tmpdir(), `custos-e2e-${name}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true,
    acceptDownloads,
    viewport,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.setDefaultTimeout(15000);
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  const shot = (n) => page.screenshot({ path: join(ART, n + '.png'), fullPage: true });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, problems, shot, close };
}

// run launches Chromium, calls body({ context, page, problems, shot })
// and reports: "<name> browser test passed", or the error with a
// "<name>-failure" screenshot and exit code 1.
export async function run(name, viewport, body) {
  const b = await launch(name, { viewport });
  try {
    await body(b);
    console.log(`${name} browser test passed`);
  } catch (e) {
    await b.shot(`${name}-failure`).catch(() => {});
    console.error(e);
    process.exitCode = 1;
  } finally {
    await b.close();
  }
}

// signIn signs user in on the login page (with a TOTP code when given)
// and waits for the sessions page.
export async function signIn(page, user, password, code) {
  await page.goto(F.url + '/ui/login');
  await page.fill('#user', user);
  await page.fill('#password', password);
  if (code) await page.fill('#totp', code);
  await page.click('#login-form button[type=submit]');
  await page.waitForURL(/\/ui\/sessions/);
}

// virtualAuthenticator adds a platform authenticator that verifies its
// user (as a fingerprint reader or screen lock would) and keeps
// discoverable credentials; it returns the DevTools session and its ID.
export async function virtualAuthenticator(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true },
  });
  return { cdp, authenticatorId };
}

// registerPasskey registers a passkey named name on the Security keys
// page.
export async function registerPasskey(page, name) {
  await page.goto(F.url + '/ui/security');
  await page.locator('#passkeys table, #passkeys .empty').first().waitFor().catch(() => {});
  await page.fill('#passkey-name', name);
  await page.click('#passkey-register');
  await page.locator('#passkeys tr[data-passkey]').waitFor();
}

// totp is RFC 6238 (SHA-1, 6 digits, 30 s) over a base32 secret, as an
// authenticator app computes it.
export function totp(secret, at = Date.now()) {
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
