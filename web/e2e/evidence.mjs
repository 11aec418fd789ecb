// The evidence browser spec, run by evidence_test.go (TestEvidenceBrowser):
// opens an extracted evidence bundle of a seeded month from file:// in
// Debian chromium (no network: every request must stay on file://),
// follows a session link, then uses the web UI's evidence page as security
// to create a share link, fetches it anonymously, revokes it and sees it
// refused. Screenshots land in CUSTOS_E2E_ARTIFACTS.
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const F = JSON.parse(process.env.CUSTOS_E2E);
const ART = process.env.CUSTOS_E2E_ARTIFACTS;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const problems = [];
try {
  // 1. The bundle, offline.
  const offline = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await offline.newPage();
  page.on('request', (r) => { if (!r.url().startsWith('file://')) problems.push('bundle fetched ' + r.url()); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
  await page.goto('file://' + join(F.dir, 'index.html'));
  assert.match(await page.textContent('h1'), new RegExp('Evidence: ' + F.target));
  const links = await page.locator('a[href^="sessions/"]').count();
  assert.equal(links, F.sessions, 'one link per session');
  assert.match(await page.textContent('#summary'), /audit segment/);
  await page.screenshot({ path: join(ART, 'evidence-index.png') });
  await page.locator('#audit').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ART, 'evidence-audit.png') });
  await page.locator('a[href^="sessions/"]').first().click();
  await page.waitForURL(/sessions\/.*\.html$/);
  assert.match(await page.textContent('pre'), /SELECT/);
  await page.screenshot({ path: join(ART, 'evidence-session.png'), fullPage: true });
  await offline.close();

  // 2. The web UI's evidence page, as security: create a share link.
  const ui = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
  await ui.addCookies([{ name: 'custos_session', value: F.cookie, url: F.url, secure: true, httpOnly: true }]);
  const p2 = await ui.newPage();
  p2.on('pageerror', (e) => problems.push('ui page error: ' + e.message));
  await p2.goto(F.url + '/ui/evidence');
  await p2.fill('#ev-target', F.target);
  await p2.fill('#ev-from', F.from);
  await p2.fill('#ev-to', F.to);
  await p2.dispatchEvent('#ev-to', 'change');
  assert.match(await p2.getAttribute('#ev-download', 'href'), new RegExp('/api/v1/evidence\\?target=' + F.target));
  const [dl] = await Promise.all([p2.waitForEvent('download'), p2.click('#ev-download')]);
  assert.match(dl.suggestedFilename(), /^custos-evidence-.*\.zip$/);
  await dl.saveAs(join(ART, 'evidence-ui-download.zip'));
  await p2.selectOption('#ev-ttl', '24h');
  await p2.click('#ev-share');
  const shareURL = (await p2.textContent('#ev-share-url')).trim();
  assert.match(shareURL, /\/share\/[A-Za-z0-9_-]{40,}$/);
  await p2.screenshot({ path: join(ART, 'evidence-ui.png'), fullPage: true });

  // 3. Anonymous: the link works, until revoked.
  const anon = await browser.newContext({ ignoreHTTPSErrors: true });
  let res = await anon.request.get(shareURL);
  assert.equal(res.status(), 200, 'the share link works anonymously');
  assert.equal(res.headers()['content-type'], 'application/zip');
  await p2.click('[data-revoke]');
  await p2.waitForSelector('text=revoked');
  await p2.screenshot({ path: join(ART, 'evidence-ui-revoked.png'), fullPage: true });
  res = await anon.request.get(shareURL);
  assert.equal(res.status(), 404, 'a revoked link is refused');

  // 4. A recording's verify page: share that one recording.
  await p2.goto(F.url + '/ui/verify/' + F.ssh);
  await p2.click('#share');
  const recURL = (await p2.textContent('#share-url')).trim();
  res = await anon.request.get(recURL);
  assert.equal(res.status(), 200, 'the recording link works anonymously');
  res = await anon.request.get(recURL + '?format=asciicast');
  assert.equal(res.status(), 200, 'the shared recording exports');
  await p2.screenshot({ path: join(ART, 'evidence-verify-share.png'), fullPage: true });
  await anon.close();
  await ui.close();
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log('evidence spec passed');
