// Browser tests of the demo page (web/index.html + /scopecast.js) with
// Debian's Chromium driven by playwright-core, against a real server in
// --demo mode. Each test leaves a screenshot in tests/artifacts/.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, artifactPath } from './helpers.mjs';
import {
  launchBrowser, openDemo, people, waitPeople, items, waitItems, addItem,
} from './browser.mjs';

const ROOM = 'e2e';

describe('demo page', { concurrency: false }, () => {
  let server;
  let browser;
  let ana;
  let bruno;
  const pages = [];
  const shot = (page, name) => page.screenshot({ path: artifactPath(`browser-${name}.png`) });

  before(async () => {
    // a closed page (close 1001) leaves after the presence grace: 1 s here
    server = await startServer({ demo: true, args: ['--presence-grace', '1'] });
    browser = await launchBrowser();
  });
  after(async () => {
    try {
      await browser?.close();
    } finally {
      await server?.stop();
    }
    for (const p of pages) {
      assert.deepEqual(p.errors.map(String), [], 'no uncaught errors in the page');
    }
  });

  test('the footer says how to pick the room and the name, and both work', async () => {
    const foot = await openDemo(browser, server, { name: 'Footer Fay', room: 'footer-room' });
    pages.push(foot);
    const text = await foot.textContent('footer');
    // the room goes after '#' (an example room name), the person in ?name=
    assert.match(text, /#lobby/);
    assert.match(text, /\?name=/);
    assert.doesNotMatch(text, /#name/, 'the room is not set with "#name"');
    assert.equal(await foot.textContent('#room'), 'room:footer-room');
    await waitPeople(foot, ['Footer Fay'], 5000);
    await foot.context().close();
  });

  test('two pages see each other in presence within 1 s', async () => {
    ana = await openDemo(browser, server, { name: 'Ana Lima', room: ROOM });
    bruno = await openDemo(browser, server, { name: 'Bruno', room: ROOM });
    pages.push(ana, bruno);
    const t0 = Date.now();
    await Promise.all([
      waitPeople(ana, ['Ana Lima', 'Bruno'], 1000),
      waitPeople(bruno, ['Ana Lima', 'Bruno'], 1000),
    ]);
    assert.ok(Date.now() - t0 <= 1000);
    assert.equal(await ana.textContent('#online-count'), '2');
    assert.equal(await ana.textContent('#room'), 'room:e2e');
    // Avatars: initials, a colour from the name, "you" on one's own entry.
    const av = await bruno.$eval('#people .person[data-user="Ana Lima"] .avatar', (e) => ({
      text: e.firstChild.textContent, bg: getComputedStyle(e).backgroundColor,
    }));
    assert.equal(av.text, 'AL');
    assert.match(av.bg, /^rgb/);
    assert.equal(await bruno.$$eval('#people .person[data-user="Bruno"] .you', (e) => e.length), 1);
    assert.equal(await bruno.$$eval('#people .person[data-user="Ana Lima"] .you', (e) => e.length), 0);
    await shot(bruno, 'presence');
  });

  test('an edit in one page appears in the other', async () => {
    await addItem(ana, 'Buy oat milk');
    await waitItems(bruno, (list) => list.some((i) => i.text === 'Buy oat milk' && !i.done), null, 2000);
    await addItem(bruno, 'Book the meeting room');
    await addItem(bruno, 'Water the plants');
    await waitItems(ana, (list) => list.length === 3, null, 2000);

    // Tick in Bruno's page, seen in Ana's.
    await bruno.click('#items .item:has(.text:text-is("Buy oat milk")) input[type="checkbox"]');
    await waitItems(ana, (list) => list.find((i) => i.text === 'Buy oat milk')?.done === true, null, 2000);
    // Remove in Ana's page, gone in Bruno's.
    await ana.hover('#items .item:has(.text:text-is("Water the plants"))');
    await ana.click('#items .item:has(.text:text-is("Water the plants")) .remove');
    await waitItems(bruno, (list) => list.length === 2 && !list.some((i) => i.text === 'Water the plants'), null, 2000);
    assert.deepEqual((await items(ana)).map((i) => [i.text, i.done]), (await items(bruno)).map((i) => [i.text, i.done]));

    // An event from the HTTP API (the README's curl) shows up as such.
    const r = await server.apiEmit({ scope: `room:${ROOM}`, paths: ['title'], data: { title: 'hello' } });
    assert.equal(r.status, 202);
    await bruno.waitForFunction(() => document.querySelector('#activity li code')?.textContent === '{"title":"hello"}',
      null, { timeout: 2000, polling: 25 });
    assert.match(await bruno.textContent('#activity li'), /from HTTP · title/);
    await shot(ana, 'edits');
  });

  test('a new page gets the current list; tabs of one user count once; closing a page makes it leave', async () => {
    const carla = await openDemo(browser, server, { name: 'Carla', room: ROOM });
    pages.push(carla);
    // Carla's tab fetched the state from the others.
    await waitItems(carla, (list) => list.length === 2 && list.some((i) => i.text === 'Buy oat milk' && i.done), null, 3000);
    await waitPeople(ana, ['Ana Lima', 'Bruno', 'Carla'], 2000);

    // A second tab of Ana (same browser context): still three users, Ana has 2 tabs.
    const ana2 = await openDemo(browser, server, { name: 'Ana Lima', room: ROOM, context: ana.context() });
    pages.push(ana2);
    await bruno.waitForSelector('#people .person[data-user="Ana Lima"][data-tabs="2"]', { timeout: 2000 });
    assert.deepEqual((await people(bruno)).sort(), [['Ana Lima', 2], ['Bruno', 1], ['Carla', 1]]);
    assert.equal(await bruno.textContent('#online-count'), '3');
    await shot(bruno, 'three-users');

    await carla.close();
    await Promise.all([
      waitPeople(ana, ['Ana Lima', 'Bruno'], 3500),
      waitPeople(bruno, ['Ana Lima', 'Bruno'], 3500),
    ]);
    await ana2.close();
    await bruno.waitForSelector('#people .person[data-user="Ana Lima"][data-tabs="1"]', { timeout: 3500 });
    await shot(bruno, 'after-leave');
  });

  test('after the server is killed and restarted, both pages reconnect and see each other again', async () => {
    const port = server.port;
    const before = await items(ana);
    await server.kill();
    await Promise.all([ana, bruno].map((p) =>
      p.waitForSelector('#status[data-status="reconnecting"]', { timeout: 5000 })));
    assert.deepEqual(await people(ana), [], 'nobody is shown while offline');
    await shot(ana, 'reconnecting');

    // A new process on the same port (its demo secret is new: the pages fetch new tokens).
    server = await startServer({ port, demo: true });
    await Promise.all([ana, bruno].map((p) =>
      p.waitForSelector('#status[data-status="open"]', { timeout: 15000 })));
    await Promise.all([
      waitPeople(ana, ['Ana Lima', 'Bruno'], 5000),
      waitPeople(bruno, ['Ana Lima', 'Bruno'], 5000),
    ]);
    // The list lives in the tabs and is still there; edits flow again.
    assert.deepEqual((await items(bruno)).map((i) => i.text), before.map((i) => i.text));
    await addItem(bruno, 'Back online');
    await waitItems(ana, (list) => list.some((i) => i.text === 'Back online'), null, 3000);
    await shot(ana, 'restarted');
  });

  test('a page whose token is refused (4401) stops and does not reconnect', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1180, height: 760 } });
    await ctx.addInitScript(() => {
      const Native = window.WebSocket;
      window.__wsOpened = 0;
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args);
          window.__wsOpened++;
        }
      };
    });
    const page = await openDemo(browser, server, {
      room: ROOM, context: ctx, query: 'token=garbage', waitOpen: false,
    });
    pages.push(page);
    await page.waitForSelector('#status[data-status="closed"]', { timeout: 5000 });
    assert.match(await page.textContent('#status'), /4401/);
    assert.match(await page.textContent('#notice'), /4401/);
    const state = await page.evaluate(() => ({
      status: window.scopecastDemo.client.status,
      code: window.scopecastDemo.client.closeCode,
    }));
    assert.deepEqual(state, { status: 'closed', code: 4401 });
    // Several backoff windows of the page (300 ms, 600 ms...) go by: no new attempt.
    await page.waitForTimeout(1500);
    assert.equal(await page.evaluate(() => window.__wsOpened), 1);
    assert.equal(await page.getAttribute('#status', 'data-status'), 'closed');
    // The others never saw it.
    assert.deepEqual((await people(ana)).map((p) => p[0]).sort(), ['Ana Lima', 'Bruno']);
    await shot(page, 'unauthorized');
    await ctx.close();
  });
});
