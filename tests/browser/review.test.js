// The review page in a real browser: Debian's headless Chromium driven by playwright-core.
// Run by tests/integration/test_web_browser.sh, which starts `radraft serve` with the web
// page, prepares the data and checks what happens outside the browser (the SR at storescp,
// the audit trail). This file checks what a radiologist sees and does:
//   log in -> the worklist (4 items, the counts, urgent first) -> open an item with Enter ->
//   the patient, the image, 14 findings -> toggle a finding with its key, edit the text
//   (keys typed in the text must not act) -> Save -> sign with s, Enter -> signed ->
//   Escape back to the worklist -> log out.
// Any page error or Content-Security-Policy violation fails it.
//
// Environment: RD_URL (http://127.0.0.1:PORT), RD_USER, RD_PASSWORD, RD_OUT (folder for the
// screenshots and signed.json), RD_EXPECT_ITEMS (default 4).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const URL = process.env.RD_URL;
const USER = process.env.RD_USER;
const PASSWORD = process.env.RD_PASSWORD;
const OUT = process.env.RD_OUT || '.';
const EXPECT = Number(process.env.RD_EXPECT_ITEMS || 4);
const TIMEOUT = 15000;

let passed = 0;
function ok(msg) { passed++; console.log(`ok: ${msg}`); }
class Fail extends Error {}
function check(cond, msg) { if (!cond) throw new Fail(msg); ok(msg); }

async function main() {
  if (!URL || !USER || !PASSWORD) throw new Fail('RD_URL, RD_USER and RD_PASSWORD must be set');
  // A fresh profile each run; Chromium's calls home are switched off (and refused here).
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'radraft-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.RD_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1600, height: 1000 },
  });
  const problems = [];
  try {
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      const t = m.text();
      // The first GET /api/me before logging in answers 401 by design; the browser logs
      // that as a failed resource load. Everything else logged as an error is a problem.
      if (m.type() === 'error' && !/Failed to load resource: .*401/.test(t)) problems.push(`console: ${t}`);
      if (/Content Security Policy|Refused to/.test(t)) problems.push(`CSP: ${t}`);
    });
    await run(page);
    check(problems.length === 0, `no page errors, console errors or CSP violations${problems.length ? `: ${problems.join(' | ')}` : ''}`);
  } catch (e) {
    const page = context.pages()[0];
    if (page) await page.screenshot({ path: path.join(OUT, 'failure.png'), fullPage: true }).catch(() => {});
    if (problems.length) console.log(`page problems: ${problems.join(' | ')}`);
    throw e;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

const visible = (page, sel) => page.locator(sel).waitFor({ state: 'visible' });

// Polls fn in the page until it returns something truthy. (page.waitForFunction evaluates
// its predicate as a string when it polls, which the page's CSP rightly refuses.)
async function until(page, fn, arg, what) {
  const end = Date.now() + TIMEOUT;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > end) throw new Fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function run(page) {
  // Response headers of the page itself: the CSP the page was written for.
  const resp = await page.goto(URL + '/');
  check(resp && resp.status() === 200, `GET / answers 200 (${resp && resp.status()})`);
  const csp = resp.headers()['content-security-policy'] || '';
  check(/script-src 'self'/.test(csp) && /style-src 'self'/.test(csp), `the page carries the CSP (${csp})`);

  // Login: a wrong password is refused with the server's message, then the right one.
  await visible(page, '#view-login');
  await page.fill('#login-user', USER);
  await page.fill('#login-password', 'not-the-password');
  await page.click('#login-submit');
  await until(page, () => document.getElementById('login-error').textContent.length > 0, null, 'the login error');
  check(/wrong user name or password/i.test(await page.textContent('#login-error')),
    `a wrong password is refused: "${await page.textContent('#login-error')}"`);
  await page.fill('#login-password', PASSWORD);
  await page.click('#login-submit');
  await visible(page, '#view-queue');
  await until(page, (n) => document.querySelectorAll('#worklist-body tr').length >= n, EXPECT, 'the worklist rows');
  const rows = page.locator('#worklist-body tr');
  check(await rows.count() === EXPECT, `the worklist shows ${EXPECT} items (${await rows.count()})`);
  const count = async (st) => Number(await page.textContent(`#counts [data-state="${st}"] .count-n`));
  check(await count('draft') === EXPECT, `the counts show ${EXPECT} drafts (${await count('draft')})`);
  check(await count('signed') === 0, 'the counts show 0 signed');
  const urgent = await page.locator('#worklist-body tr.urgent').count();
  if (urgent > 0) {
    check(await rows.first().evaluate((r) => r.classList.contains('urgent')),
      `urgent items come first (${urgent} urgent)`);
  } else {
    ok('no urgent item among the samples: the first item is opened');
  }
  await page.screenshot({ path: path.join(OUT, 'worklist.png') });

  // j/k move the selection; the first row is selected to start with.
  const firstId = await rows.first().getAttribute('data-id');
  check(await rows.first().evaluate((r) => r.classList.contains('selected')), 'the first row is selected');
  await page.keyboard.press('j');
  check(await rows.nth(1).evaluate((r) => r.classList.contains('selected')), 'j moves the selection down');
  await page.keyboard.press('k');
  check(await rows.first().evaluate((r) => r.classList.contains('selected')), 'k moves it back up');

  // ? opens the help, Escape closes it.
  await page.keyboard.press('?');
  await visible(page, '#dlg-help');
  check((await page.textContent('#dlg-help')).includes('Pleural Thickening'), 'the help lists the finding keys');
  await page.keyboard.press('Escape');
  await page.locator('#dlg-help').waitFor({ state: 'hidden' });
  ok('Escape closes the help');

  // Enter opens the selected item.
  await page.keyboard.press('Enter');
  await visible(page, '#view-study');
  await until(page, (id) => location.hash === `#/item/${id}`, firstId, 'the study page URL');
  await until(page, () => document.getElementById('p-name').textContent.trim().length > 0, null, "the patient's name");
  ok(`Enter opens item ${firstId}: patient ${await page.textContent('#p-name')}, ID ${await page.textContent('#p-id')}`);
  check(await page.locator('#findings-body tr').count() === 14, 'the checklist has the 14 findings');
  await until(page, () => {
    const i = document.getElementById('main-image');
    return i.complete && i.naturalWidth > 0 && i.src.includes('/image?');
  }, null, 'the main image');
  const imgW = await page.$eval('#main-image', (i) => i.naturalWidth);
  check(imgW >= 64 && imgW <= 2048, `the image is loaded at screen size (${imgW} px wide)`);
  const thumbs = await page.locator('#thumbs .thumb').count();
  check(thumbs >= 1, `the study's images are shown as thumbnails (${thumbs})`);
  check(await page.$eval('#s-state', (e) => e.dataset.state) === 'draft', 'the item is a draft');

  // Window/level by dragging asks for a new PNG with center and window.
  const stage = await page.locator('#stage').boundingBox();
  const imgReq = page.waitForRequest((r) => /\/image\?.*center=.*window=/.test(r.url()));
  await page.mouse.move(stage.x + stage.width / 2, stage.y + stage.height / 2);
  await page.mouse.down();
  await page.mouse.move(stage.x + stage.width / 2 - 80, stage.y + stage.height / 2 + 40, { steps: 5 });
  await page.mouse.up();
  ok(`a drag asks for a new window: ${new globalThis.URL((await imgReq).url()).search}`);

  // Heat maps: when the draft places findings, o lays the first one's map over the image,
  // in the image's own box, and cycles back to none; else the control stays hidden.
  const heatChoices = await page.$$eval('#heat-select option', (os) => os.map((o) => o.value).filter(Boolean));
  if (heatChoices.length > 0) {
    check(await page.locator('#heat-wrap').isVisible(), `the heat map control lists ${heatChoices.join(', ')}`);
    await page.keyboard.press('o');
    await until(page, () => {
      const h = document.getElementById('heat-image');
      return !h.classList.contains('hidden') && h.complete && h.naturalWidth > 0 && h.src.includes('/heatmap?');
    }, null, 'the heat map over the image');
    const same = await page.evaluate(() => {
      const a = document.getElementById('main-image').getBoundingClientRect();
      const b = document.getElementById('heat-image').getBoundingClientRect();
      return Math.abs(a.x - b.x) < 1 && Math.abs(a.y - b.y) < 1 && Math.abs(a.width - b.width) < 1 &&
        Math.abs(a.height - b.height) < 1;
    });
    check(same, `o shows the heat map of ${heatChoices[0]} exactly over the image`);
    for (let i = 0; i < heatChoices.length; i++) await page.keyboard.press('o');
    check(await page.locator('#heat-image').isHidden(), 'o cycles back to no heat map');
  } else {
    check(await page.locator('#heat-wrap').isHidden(), 'no placed finding: no heat map control');
  }

  // Toggle a finding with its key (2 = Cardiomegaly): present -> uncertain -> absent -> ...
  // A finding the draft does not mention has no toggle on: 'none'.
  const stateOf = (name) => page.evaluate((n) => {
    const b = document.querySelector(`#findings-body tr[data-finding="${n}"] button.on`);
    return b ? b.dataset.state : 'none';
  }, name);
  const before = await stateOf('Cardiomegaly');
  await page.keyboard.press('2');
  const after = await stateOf('Cardiomegaly');
  check(after !== before, `key 2 toggles Cardiomegaly (${before} -> ${after})`);

  // e focuses the findings text; what is typed there is text, not shortcuts.
  await page.keyboard.press('e');
  check(await page.evaluate(() => document.activeElement.id) === 't-findings', 'e focuses the findings text');
  await page.keyboard.press('End');
  await page.keyboard.type(' Reviewed 2 s.');
  check(await stateOf('Cardiomegaly') === after && await page.locator('#dlg-sign').isHidden(),
    'keys typed in the text area do not act');
  await page.keyboard.press('Escape');
  check(await page.evaluate(() => document.activeElement.id) !== 't-findings', 'Escape leaves the text area');
  await until(page, () => document.querySelector('#diff-new ins') !== null, null, 'a marked insertion in the diff');
  ok(`the word diff marks the change (${await page.textContent('#diff-new ins')})`);

  // Save: the draft is claimed, then edited; the item comes back in review with the choice.
  const editResp = page.waitForResponse((r) => r.url().endsWith('/edit') && r.request().method() === 'POST');
  await page.click('#a-save');
  const er = await editResp;
  check(er.status() === 200, `Save posts the edit (${er.status()})`);
  const edited = await er.json();
  check(edited.final_states && edited.final_states.Cardiomegaly === after,
    `the saved item has Cardiomegaly ${after}`);
  check(er.request().headers()['x-csrf-token'], 'the POST carries X-CSRF-Token');
  await until(page, () => document.getElementById('s-state').dataset.state === 'in_review', null, 'the state in_review');
  ok('the item is in review, claimed by the user');
  check(await stateOf('Cardiomegaly') === after, 'the checklist shows the saved state');

  // Sign with the keyboard: s, then Enter.
  const signResp = page.waitForResponse((r) => r.url().endsWith('/sign') && r.request().method() === 'POST');
  await page.keyboard.press('s');
  await visible(page, '#dlg-sign');
  await page.keyboard.press('Enter');
  const sr = await signResp;
  check(sr.status() === 200, `s, Enter signs (${sr.status()})`);
  const signed = await sr.json();
  check(signed.state === 'signed' && signed.signed && signed.signed.sop_instance_uid,
    `the item is signed, SR ${signed.signed && signed.signed.sop_instance_uid}`);
  await until(page, () => document.getElementById('s-state').dataset.state === 'signed', null, 'the state signed');
  ok('the page shows the item signed');
  fs.writeFileSync(path.join(OUT, 'signed.json'), JSON.stringify({
    id: signed.id, sop_instance_uid: signed.signed.sop_instance_uid, state: signed.state }));
  await page.waitForTimeout(300);  // the last PNG and the notice settle for the screenshot
  // The window as a radiologist sees it (the README's picture), not the whole scroll.
  await page.screenshot({ path: path.join(OUT, 'study.png') });

  // Escape returns to the worklist, which now counts one signed item.
  await page.keyboard.press('Escape');
  await visible(page, '#view-queue');
  await until(page, () => Number(document.querySelector('#counts [data-state="signed"] .count-n').textContent) === 1, null, 'a signed count of 1');
  ok('Escape returns to the worklist, which counts 1 signed');
  check(await rows.count() === EXPECT - 1, `the open worklist shows ${EXPECT - 1} items`);

  // Log out: the session ends on the server too.
  await page.click('#logout');
  await visible(page, '#view-login');
  const me = await page.evaluate(async () => (await fetch('/api/me', { credentials: 'same-origin' })).status);
  check(me === 401, `after logging out /api/me answers 401 (${me})`);
}

main().then(() => {
  console.log(`browser: ${passed} checks passed`);
  process.exit(0);
}, (e) => {
  console.log(`FAIL: ${e instanceof Fail ? e.message : (e && e.stack) || e}`);
  process.exit(1);
});
