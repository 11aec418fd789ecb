// The web UI's browser suite, run by e2e_test.go against a broker it
// started: Debian chromium through playwright-core, one fresh profile,
// every page screenshotted into CUSTOS_E2E_ARTIFACTS.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import assert from 'node:assert/strict';
import { ART, F, launch } from './browser.mjs';

const timings = {};

const { context, page, problems, shot, close } = await launch('suite', { viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
page.on('console', (m) => {
  // Blocked inline styles are xterm.js's own <style> elements, which the
  // CSP refuses as intended (term.js mirrors them); anything else counts.
  if (m.type() === 'error' && !/Failed to load resource|Applying inline style violates/.test(m.text())) problems.push('console error: ' + m.text());
  if (/violates the following Content Security Policy directive 'script-src/.test(m.text())) problems.push('script blocked by CSP: ' + m.text());
});
page.on('dialog', (d) => { problems.push('unexpected dialog: ' + d.message()); d.dismiss(); });

const url = (p) => F.url + p;

async function signIn(user, totp) {
  await page.goto(url('/ui/login'));
  await page.fill('#user', user);
  await page.fill('#password', F.password);
  if (totp) await page.fill('#totp', totp);
  await page.click('button[type=submit]');
  await page.waitForURL(/\/ui\/sessions/);
}

async function signOut() {
  await page.click('#logout');
  await page.waitForURL(/\/ui\/login/);
}

// termText is what the xterm.js screen shows.
const termText = () => page.evaluate(() => {
  const rows = document.querySelector('.xterm-rows');
  return rows ? [...rows.children].map((r) => r.textContent).join('\n') : '';
});

async function control(path, body) {
  const res = await fetch(F.control + path, { method: body === undefined ? 'GET' : 'POST', body });
  assert.ok(res.ok, `control ${path}: ${res.status}`);
  return res.text();
}

// unzip reads a zip's stored and deflated entries.
function unzip(buf) {
  const files = {};
  let eocd = buf.length - 22;
  while (eocd >= 0 && buf.readUInt32LE(eocd) !== 0x06054b50) eocd--;
  let p = buf.readUInt32LE(eocd + 16);
  const n = buf.readUInt16LE(eocd + 10);
  for (let i = 0; i < n; i++) {
    const method = buf.readUInt16LE(p + 10);
    const csize = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28), extra = buf.readUInt16LE(p + 30), comment = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const data = buf.subarray(start, start + csize);
    files[name] = method === 8 ? inflateRawSync(data) : data;
    p += 46 + nameLen + extra + comment;
  }
  return files;
}

const steps = [];
const step = (name, fn) => steps.push({ name, fn });

step('approver approves a held statement', async () => {
  await page.goto(url('/ui/login'));
  await signIn('bob');
  await page.goto(url('/ui/requests'));
  const row = page.locator(`#holds tr[data-hold="${F.hold}"]`);
  await row.waitFor();
  const text = await row.textContent();
  assert.ok(text.includes('DELETE FROM subjects') && text.includes('~42 rows') && text.includes('alice'), 'hold row: ' + text);
  await shot('02a-held-statement');
  await row.locator('button[data-action=approve-hold]').click();
  await page.locator('.notice.ok', { hasText: 'runs once' }).waitFor();
  await page.locator(`#holds tr[data-hold="${F.hold}"] td.state-approved`).waitFor();
  await signOut();
});

step('sign-in page, approver approves a request', async () => {
  await page.goto(url('/ui/login'));
  await shot('01-login');
  await signIn('bob');
  await page.goto(url('/ui/requests'));
  const row = page.locator(`#pending tr[data-request="${F.pending}"]`);
  await row.waitFor();
  await row.locator('button[data-action=approve]').click();
  await page.locator('.notice.ok', { hasText: 'Approved: grant' }).waitFor();
  // The list reloads after the notice shows: the decided request leaves it.
  await page.locator(`#pending tr[data-request="${F.pending}"]`).waitFor({ state: 'detached', timeout: 5000 });
  assert.equal(await page.locator(`#pending tr[data-request="${F.pending}"]`).count(), 0);
  assert.ok(!/null\s*$/.test(await page.textContent('main')), 'stray text on the requests page');
  await shot('02-requests-approved');
  await signOut();
});

step('approver sees an extension request as one, and approving it moves the grant\'s end', async () => {
  await signIn('bob');
  await page.goto(url('/ui/requests'));
  const row = page.locator(`#pending tr[data-request="${F.extension}"]`);
  await row.waitFor();
  const text = await row.textContent();
  assert.ok(text.includes(`+30m0s on ${F.grant} (extension to `), `extension row: ${text}`);
  await row.locator('button[data-action=approve]').click();
  await page.locator('.notice.ok', { hasText: `Extended: grant ${F.grant} now ends` }).waitFor();
  await shot('02b-extension-approved');
  await signOut();
  // The holder asks for more from the grants table.
  await signIn('alice');
  await page.goto(url('/ui/requests'));
  const grant = page.locator(`#grants tr[data-grant="${F.grant}"]`);
  await grant.waitFor();
  await grant.locator('input[aria-label^="reason"]').fill('INC-A one more step');
  await grant.locator('button[data-action=extend]').click();
  await page.locator('.notice.ok', { hasText: `of grant ${F.grant} (+30m0s) waits for approval` }).waitFor();
  const mine = await page.textContent('#mine');
  assert.ok(mine.includes(`+30m0s on ${F.grant}`), `my requests lack the extension: ${mine}`);
  await signOut();
});

step('a requester cannot open another user\'s recording (403)', async () => {
  await signIn('alice');
  await page.waitForSelector('#sessions table');
  assert.equal(await page.locator(`tr[data-session="${F.daveSSH}"]`).count(), 0, 'alice lists dave\'s session');
  assert.equal(await page.locator(`tr[data-session="${F.ssh}"]`).count(), 1);
  const res = await page.request.get(url('/api/v1/sessions/' + F.daveSSH));
  assert.equal(res.status(), 403);
  await page.goto(url('/ui/sessions/' + F.daveSSH));
  await page.locator('.notice.error', { hasText: 'may not open' }).waitFor();
  await shot('03-forbidden');
  await signOut();
});

step('security signs in with a second factor; sessions table with search', async () => {
  await signIn('sam', (await control('/totp')).trim());
  await page.waitForSelector('#sessions table');
  await page.fill('#f-q', 'notes.html');
  await page.click('#filters button[type=submit]');
  await page.locator(`tr[data-session="${F.ssh}"]`).waitFor();
  // The unfiltered list may still show until the search answers.
  await page.locator(`tr[data-session="${F.pg}"]`).waitFor({ state: 'detached', timeout: 5000 });
  assert.equal(await page.locator(`tr[data-session="${F.pg}"]`).count(), 0);
  await page.locator(`tr[data-session="${F.ssh}"] .verify-intact`).waitFor({ timeout: 20000 });
  await shot('04-sessions');
});

step('terminal replay: XSS probe and OSC 8 link render as text', async () => {
  await page.goto(url('/ui/sessions/' + F.ssh));
  await page.waitForSelector('#player[data-state=ready]');
  assert.equal(await page.getAttribute('#player', 'data-renderer'), 'xterm');
  await page.selectOption('#speed', '8');
  await page.check('#show-input');
  await page.click('#play');
  await page.waitForFunction(() => document.querySelector('.xterm-rows')?.textContent.includes('logout'));
  const text = await termText();
  assert.ok(text.includes('<script>window.__xss=1</script>'), 'script tag shown as text:\n' + text);
  assert.ok(text.includes('<img src=x onerror="window.__xss=2">'), 'img tag shown as text');
  assert.ok(text.includes('click-me-link') && text.includes('docs-link'), 'OSC 8 link text shown');
  const dom = await page.evaluate(() => ({
    xss: window.__xss,
    scripts: document.querySelectorAll('#player script, .xterm script').length,
    imgs: document.querySelectorAll('#player img').length,
    anchors: document.querySelectorAll('.xterm a').length,
    spanDisplay: getComputedStyle(document.querySelector('.xterm-rows span') || document.body).display,
  }));
  assert.equal(dom.xss, undefined, 'recorded output ran as script');
  assert.equal(dom.scripts + dom.imgs + dom.anchors, 0, 'recorded output became markup');
  assert.equal(dom.spanDisplay, 'inline-block', 'xterm.js styles apply under the CSP');
  await page.getByText('click-me-link').first().click({ force: true });
  await page.waitForTimeout(300);
  assert.equal(context.pages().length, 1, 'the OSC 8 link opened a page');
  assert.ok(page.url().includes('/ui/sessions/' + F.ssh));
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.ok((await page.textContent('#input-pane')).includes('cat notes.html⏎'), 'input shown alongside');
  const markers = await page.textContent('#marker-list');
  assert.ok(markers.includes('uname -a') && markers.includes('/tmp/report.csv'), 'exec and file markers: ' + markers);
  await shot('05-replay-ssh');
});

step('two-hour session opens and seeks to the middle in under two seconds', async () => {
  const t0 = Date.now();
  await page.goto(url('/ui/sessions/' + F.long));
  await page.waitForSelector('#player[data-state=ready]');
  await page.evaluate(() => {
    const tl = document.getElementById('timeline');
    tl.value = '3600000';
    tl.dispatchEvent(new Event('change'));
  });
  await page.waitForSelector('#player[data-frame-t="3600000"][data-state=ready]');
  await page.waitForFunction((tick) => document.querySelector('.xterm-rows')?.textContent.includes(tick), F.longTick);
  const total = Date.now() - t0;
  const seekMs = Number(await page.getAttribute('#player', 'data-seek-ms'));
  timings.longOpenAndSeekMs = total;
  timings.longSeekMs = seekMs;
  const text = await termText();
  const ticks = text.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('tick '));
  assert.equal(ticks[ticks.length - 1], F.longTick, 'screen at 1:00:00:\n' + text);
  assert.ok(total < 2000, `opening and seeking took ${total} ms`);
  await page.waitForSelector('#player[data-indexed=yes]');
  await shot('06-replay-long-seek');
  // Playback continues from there at 8x.
  await page.selectOption('#speed', '8');
  await page.click('#play');
  await page.waitForFunction(() => Number(document.getElementById('player').dataset.t) > 3604000);
  await page.click('#play');
  const later = await termText();
  assert.ok(later.includes('tick 0003604'), 'playback after the seek:\n' + later);
});

step('PostgreSQL statement timeline', async () => {
  await page.goto(url('/ui/sessions/' + F.pg));
  await page.waitForSelector('#pg[data-loaded=yes]');
  await page.waitForSelector('#statements tbody tr');
  const body = await page.textContent('#statements');
  assert.ok(body.includes("UPDATE trials SET note = '<script>window.__xss=4</script>' WHERE id = 7"), 'SQL shown as text');
  assert.ok(body.includes('$1 = 42'), 'parameters as recorded');
  assert.ok(body.includes('42P01'), 'error shown');
  assert.ok(body.includes('transaction 1: BEGIN') && body.includes('transaction 1: ROLLBACK'), 'transaction boundaries');
  assert.ok(body.includes('masking in effect for role monitor'), 'masking rules in the timeline');
  assert.ok(body.includes('sample rows as received:') && body.includes('h:3b0d1c6d3f0b3b6d3e1f4b1a | Leeds'), 'masked sample rows');
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator('#statements script').count(), 0);
  await shot('07-replay-postgres');
  await page.fill('#stmt-filter', 'patients');
  await page.waitForFunction(() => document.getElementById('statements')?.dataset.shown === '1');
  await page.fill('#stmt-filter', '');
  await page.check('#stmt-errors');
  await page.waitForFunction(() => document.getElementById('statements')?.dataset.shown === '1');
});

step('watch a live session as it is typed into, then terminate it', async () => {
  await page.goto(url('/ui/live'));
  await page.locator(`tr[data-session="${F.live}"] a`).click();
  await page.waitForSelector('#watch[data-ready=yes]');
  await page.waitForFunction(() => document.querySelector('.xterm-rows')?.textContent.includes('$ uptime'));
  const sent = Date.now();
  await control('/type', 'echo hello-from-the-test');
  await page.waitForFunction(() => document.querySelector('.xterm-rows')?.textContent.includes('echo hello-from-the-test'), null, { timeout: 1000 });
  timings.liveLagMs = Date.now() - sent;
  await shot('08-live-watch');
  await page.click('#terminate');
  await page.locator('.notice.error', { hasText: 'reason' }).waitFor();
  await page.fill('#terminate-reason', 'not covered by the change ticket');
  await page.click('#terminate');
  await page.waitForSelector('#live-status[data-ended=terminated]');
  assert.ok((await page.textContent('#live-status')).includes('not covered by the change ticket'));
  // xterm.js renders writes asynchronously: the end status can show before
  // the last output is on the screen.
  await page.waitForFunction(() => document.querySelector('.xterm-rows')?.textContent.includes('access revoked'), null, { timeout: 5000 })
    .catch(() => {});
  assert.ok((await termText()).includes('access revoked'), 'the user was told');
  await shot('09-live-terminated');
  await page.goto(url('/ui/live'));
  await page.waitForSelector('#live table');
  await shot('10-live-list');
});

step('verify a session and download its evidence bundle', async () => {
  await page.goto(url('/ui/verify/' + F.ssh));
  await page.locator('#verdict', { hasText: 'Recording intact' }).waitFor();
  const verdict = await page.textContent('#verdict');
  assert.ok(verdict.includes('Chain') && verdict.includes('Signature') && verdict.includes('Retention'));
  assert.ok(!/null\s*$/.test(await page.textContent('main')), 'stray text on the verify page');
  await shot('11-verify');
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#evidence')]);
  const file = join(ART, 'evidence-' + F.ssh + '.zip');
  await dl.saveAs(file);
  const files = unzip(readFileSync(file));
  for (const n of ['manifest.json', 'verify-report.json', 'audit-records.jsonl', 'grant.json', 'request.json', 'SHA256SUMS']) {
    assert.ok(files[n], 'bundle lacks ' + n);
  }
  const rep = JSON.parse(files['verify-report.json'].toString());
  assert.equal(rep.intact, true);
  assert.equal(rep.session_id, F.ssh);
  const actions = files['audit-records.jsonl'].toString().trim().split('\n').map((l) => JSON.parse(l).action);
  for (const a of ['request.create', 'request.approve', 'grant.create', 'session.recorded', 'session.evidence.export']) {
    assert.ok(actions.includes(a), 'bundle audit records lack ' + a);
  }
});

step('audit saved views with CSV and JSON export', async () => {
  await page.goto(url('/ui/audit'));
  await page.locator('#chain', { hasText: 'Hash chain intact' }).waitFor();
  await page.selectOption('#view', 'grants-for-target');
  await page.fill('#v-target', 'demo-ssh');
  await page.click('#view-form button[type=submit]');
  await page.waitForFunction(() => Number(document.getElementById('view-result')?.dataset.rows) >= 2);
  await shot('12-audit-grants');
  const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  const csvPath = join(ART, 'grants-demo-ssh.csv');
  await csv.saveAs(csvPath);
  assert.ok(readFileSync(csvPath, 'utf8').startsWith('grant_id,user,role'));
  await page.selectOption('#view', 'recording-access');
  await page.click('#view-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('view-result')?.textContent.includes('session.recording.read'));
  const rows = await page.textContent('#view-result');
  assert.ok(rows.includes('session.recording.read') && rows.includes('denied'), 'recording access view');
  const [js] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  const jsPath = join(ART, 'recording-access.json');
  await js.saveAs(jsPath);
  assert.ok(JSON.parse(readFileSync(jsPath, 'utf8')).rows.length >= 1);
  await page.selectOption('#view', 'sessions-terminated');
  await page.click('#view-form button[type=submit]');
  await page.waitForFunction((id) => document.getElementById('view-result')?.textContent.includes(id), F.live);
  await shot('13-audit-terminated');
});

step('break-glass: overdue drill flagged; unseal requested, refused without custodian or fresh factor, confirmed, closed', async () => {
  // sam (security, no custodian) sees the accounts and the overdue drill.
  await page.goto(url('/ui/breakglass'));
  await page.locator('[data-account="ssh-root"][data-state=sealed]').waitFor();
  assert.ok(await page.isVisible('#nav a[href="/ui/breakglass"]'), 'break-glass in the nav for security');
  assert.ok((await page.textContent('#bg-overdue')).includes('ssh-root'), 'overdue drill banner');
  assert.equal(await page.getAttribute('#bg-drills tr[data-account="ssh-root"]', 'data-overdue'), 'yes');
  assert.ok((await page.textContent('#bg-drills tr[data-account="ssh-root"]')).includes('OVERDUE'));
  // Restore drills (custos drill restore) are listed with them, for security.
  assert.ok((await page.textContent('#bg-drills tr[data-account="(restore)"]')).includes('quarterly'), 'restore drill row');
  await shot('14-breakglass');
  await signOut();

  // erin, a custodian, asks to unseal ssh-root.
  await signIn('erin', (await control('/totp?user=erin')).trim());
  await page.goto(url('/ui/breakglass'));
  const form = page.locator('[data-account="ssh-root"] form[data-action=unseal]');
  await form.locator('input[name=reason]').fill('sshd config broken on the bastion <b>now</b>');
  await form.locator('input[name=incident]').fill('INC-4242');
  await form.locator('input[name=password]').fill(F.password);
  await form.locator('input[name=totp]').fill((await control('/totp?user=erin&fresh=1')).trim());
  await form.locator('button[type=submit]').click();
  const link = page.locator('#bg-status .notice.ok a');
  await link.waitFor();
  const unsealPath = await link.getAttribute('href');
  assert.match(unsealPath, /^\/ui\/breakglass\/unseals\/bgu_/);
  await page.locator('[data-account="ssh-root"][data-state=unseal_requested]').waitFor();
  const card = await page.textContent('[data-account="ssh-root"]');
  assert.ok(card.includes('1 of 2') && card.includes('<b>now</b>'), 'confirmations so far, reason as text: ' + card);
  assert.equal(await page.locator('[data-account="ssh-root"] b').count(), 0, 'reason became markup');
  await shot('15-breakglass-unseal-requested');
  await signOut();

  // sam follows the Slack link but is no custodian: the broker refuses.
  await signIn('sam', (await control('/totp?fresh=1')).trim());
  await page.goto(url(unsealPath));
  const focus = page.locator('#bg-focus [data-account="ssh-root"]');
  await focus.waitFor();
  await focus.locator('form[data-action=confirm] input[name=password]').fill(F.password);
  await focus.locator('form[data-action=confirm] input[name=totp]').fill('123456');
  await focus.locator('form[data-action=confirm] button[type=submit]').click();
  await focus.locator('.notice.error', { hasText: 'not_custodian' }).waitFor();
  await shot('16-breakglass-not-custodian');
  await signOut();

  // frank confirms: a wrong code is refused, a fresh one opens the account.
  await signIn('frank', (await control('/totp?user=frank')).trim());
  await page.goto(url(unsealPath));
  await focus.waitFor();
  assert.ok((await page.textContent('#bg-focus')).includes('1 of 2'));
  const confirm = focus.locator('form[data-action=confirm]');
  await confirm.locator('input[name=password]').fill(F.password);
  await confirm.locator('input[name=totp]').fill('000000');
  await confirm.locator('button[type=submit]').click();
  await confirm.locator('.notice.error', { hasText: 'second_factor_failed' }).waitFor();
  assert.equal(await confirm.locator('input[name=password]').inputValue(), '', 'password kept after a refusal');
  await shot('17-breakglass-wrong-code');
  await confirm.locator('input[name=password]').fill(F.password);
  await confirm.locator('input[name=totp]').fill((await control('/totp?user=frank&fresh=1')).trim());
  await confirm.locator('button[type=submit]').click();
  await page.locator('#bg-status .notice.ok', { hasText: 'is open for erin' }).waitFor();
  await page.locator('#bg-focus [data-account="ssh-root"][data-state=open]').waitFor();
  assert.ok((await page.textContent('#bg-focus')).includes('2 of 2'));
  await shot('18-breakglass-open');

  // frank closes it: ssh-root has no standing secret, so it reseals at once.
  await page.locator('#bg-focus form[data-action=close] input[name=close-reason]').fill('bastion fixed');
  await page.locator('#bg-focus form[data-action=close] button[type=submit]').click();
  await page.locator('#bg-focus [data-account="ssh-root"][data-state=sealed]').waitFor();
  await shot('19-breakglass-closed');
});

// laterCode waits until the control's next-step code for user differs
// from after, so it is for a later time step than any code used so far
// (the broker refuses a code twice, and an older one after a newer).
async function laterCode(user, after) {
  for (;;) {
    const c = (await control(`/totp?user=${user}&fresh=1`)).trim();
    if (c !== after) return c;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

step('access review: overdue, diff lines attested and flagged, wrong password refused, signed attestation shown', async () => {
  await signOut();
  // sam (security admin, so a reviewer by default) signs in with a code
  // later than the one the break-glass scenario used.
  const c0 = (await control('/totp?user=sam&fresh=1')).trim();
  const c1 = await laterCode('sam', c0);
  await signIn('sam', c1);
  assert.ok(await page.isVisible('#nav a[href="/ui/reviews"]'), 'access reviews in the nav for a reviewer');
  await page.goto(url('/ui/reviews'));
  await page.locator('#rv-status [data-overdue=yes]').waitFor();
  await page.locator('#rv-status form[data-action=start] input[name=name]').fill('Q4-2026');
  await page.locator('#rv-status form[data-action=start] button[type=submit]').click();
  const lines = page.locator('#rv-lines');
  await lines.locator('tr[data-line="1"]').waitFor();
  const diff = await lines.textContent();
  assert.ok(diff.includes('+ approver bob on demo-pg/readonly (via approvers)'), 'approver line: ' + diff);
  assert.ok(diff.includes('+ requester alice on demo-ssh/ops (via dbas)'), 'requester line');
  assert.ok(diff.includes('+ custodian erin on'), 'custodian line');
  assert.match(await page.url(), /\/ui\/reviews\/rev_/);
  // Flag line 1 with a comment, attest line 2.
  const l1 = lines.locator('tr[data-line="1"]');
  await l1.locator('input[name=comment]').fill('check <b>this</b> with the team lead');
  await l1.locator('form[data-action=flag-line] button').click();
  await lines.locator('tr[data-line="1"] [data-verdict=flag]').waitFor();
  assert.equal(await lines.locator('b').count(), 0, 'a comment became markup');
  await lines.locator('tr[data-line="2"] form[data-action=attest-line] button').click();
  await lines.locator('tr[data-line="2"] [data-verdict=attest]').waitFor();
  await shot('23-review-diff');
  // A wrong password is refused where it was given; the review stays open.
  const sign = page.locator('form[data-action=attest]');
  await page.selectOption('#rv-meaning', 'reviewed, concerns raised');
  await sign.locator('input[name=password]').fill('not the password');
  await sign.locator('input[name=totp]').fill('000000');
  await sign.locator('button[type=submit]').click();
  await sign.locator('.notice.error', { hasText: 'reauth_failed' }).waitFor();
  assert.equal(await sign.locator('input[name=password]').inputValue(), '', 'password kept after a refusal');
  await shot('24-review-wrong-password');
  await page.selectOption('#rv-meaning', 'reviewed, concerns raised');
  await sign.locator('input[name=password]').fill(F.password);
  await sign.locator('input[name=totp]').fill(await laterCode('sam', c1));
  await sign.locator('button[type=submit]').click();
  await page.locator('#rv-signature').waitFor();
  const signature = await page.textContent('#rv-signature');
  assert.ok(signature.includes('Signed by sam') && signature.includes('reviewed, concerns raised') && signature.includes('password+totp') &&
    signature.includes('1 line(s) flagged'), signature);
  await page.locator('#rv-status [data-overdue=no]').waitFor();
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#rv-export')]);
  const exPath = join(ART, 'review.json');
  await dl.saveAs(exPath);
  const ex = JSON.parse(readFileSync(exPath, 'utf8'));
  assert.ok(ex.verified && ex.review.attestation.signature.meaning === 'reviewed, concerns raised', 'export');
  await shot('25-review-signed');
});

step('empty states and refusals say what to do, not "Error"', async () => {
  await signOut();
  await signIn('alice');
  // alice is no custodian: the break-glass page says so and why.
  await page.goto(url('/ui/breakglass'));
  await page.locator('#bg-none').waitFor();
  assert.ok((await page.textContent('#bg-none')).includes('not a custodian'));
  assert.equal(await page.locator('.notice.error').count(), 0, 'an error on the break-glass page');
  await shot('20-empty-breakglass-not-custodian');
  // A filter that matches nothing says how to widen it.
  await page.goto(url('/ui/sessions?user=nobody-at-all'));
  await page.locator('#sessions td.muted', { hasText: 'widen the time range' }).waitFor();
  // The audit log is refused to a requester: said with what to do.
  await page.goto(url('/ui/audit'));
  await page.locator('#page-problem').waitFor();
  const refused = await page.textContent('#page-problem');
  assert.ok(!/^Error/.test(refused) && refused.includes('Ask a security admin'), 'refusal: ' + refused);
  await shot('21-audit-refused');
  // A broker with no break-glass account answers 404 not_configured
  // (web/api_breakglass.go); this one has accounts, so that one answer is
  // replayed to the page, which explains how to configure one.
  await page.route('**/api/v1/breakglass', (r) => r.fulfill({ status: 404, contentType: 'application/json',
    body: JSON.stringify({ error: { code: 'not_configured', message: 'no break-glass accounts are configured' } }) }));
  await page.goto(url('/ui/breakglass'));
  await page.locator('#bg-none').waitFor();
  const none = await page.textContent('#bg-none');
  assert.ok(none.includes('No break-glass account is configured') && none.includes('docs/breakglass.md'), none);
  assert.equal(await page.locator('.notice.error').count(), 0, 'not_configured shown as an error');
  await shot('22-empty-breakglass-not-configured');
  await page.unroute('**/api/v1/breakglass');
  await signOut();
});

let passed = 0, failed = 0;
const started = Date.now();
for (const s of steps) {
  const t = Date.now();
  try {
    await s.fn();
    passed++;
    console.log(`ok   ${s.name} (${Date.now() - t} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${s.name}: ${e.stack || e}`);
    await shot('failed-' + steps.indexOf(s)).catch(() => {});
  }
}
if (problems.length) {
  failed++;
  console.log('FAIL browser problems:\n  ' + problems.join('\n  '));
}
writeFileSync(join(ART, 'timings.json'), JSON.stringify(timings, null, 2));
console.log('timings: ' + JSON.stringify(timings));
console.log(`browser suite: ${steps.length} scenarios in ${Date.now() - started} ms`);
console.log(`${passed} passed, ${failed} failed`);
await close();
process.exit(failed ? 1 : 0);
