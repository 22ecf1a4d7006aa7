// Browser tests of the demo page (web/index.html + /scopecast.js) with
// Debian's Chromium driven by playwright-core, against a real server in
// --demo mode. Each test leaves a screenshot in tests/artifacts/.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, startProxy, artifactPath } from './helpers.mjs';
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

  test('a reload within the presence grace: the page keeps its session, others see no leave and no join', async () => {
    const dana = await openDemo(browser, server, { name: 'Dana', room: ROOM });
    pages.push(dana);
    await waitPeople(bruno, ['Ana Lima', 'Bruno', 'Dana'], 3000);
    const session = () => dana.evaluate(() => window.scopecastDemo.client.welcome?.session);
    const before = await session();
    assert.ok(before);
    // an observer that records every presence push of the room
    const seen = [];
    const obs = new WebSocket(server.ws);
    obs.on('message', (d) => {
      const m = JSON.parse(String(d));
      if (['join', 'leave', 'update'].includes(m.op)) seen.push(`${m.op}:${m.conn.user}`);
      if (m.op === 'welcome') obs.send(JSON.stringify({ op: 'subscribe', id: 1, scope: `room:${ROOM}` }));
    });
    await new Promise((resolve, reject) => {
      obs.on('message', (d) => { if (JSON.parse(String(d)).op === 'subscribed') resolve(); });
      obs.on('error', reject);
    });
    await dana.reload();
    await dana.waitForSelector('#status[data-status="open"]', { timeout: 5000 });
    assert.equal(await session(), before, 'the reloaded page resumed its session');
    assert.equal(await dana.evaluate(() => window.scopecastDemo.client.welcome.resumed), true);
    await new Promise((r) => setTimeout(r, 1800)); // past the grace (1 s) and its check
    assert.deepEqual(seen.filter((e) => e.endsWith(':Dana')), [], 'no leave/join for the reload');
    assert.ok((await people(bruno)).some(([u, tabs]) => u === 'Dana' && tabs === 1), 'Dana shown once');
    obs.close(1000); // a clean close: it leaves at once
    await dana.close();
    await waitPeople(bruno, ['Ana Lima', 'Bruno'], 3500);
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

// ---------------------------------------------------------------------------
// Recovery in a real browser: web/scopecast.js in a page (no demo UI) whose
// connection is cut by a TCP proxy or overflows its queue, and the demo's
// list for a late joiner and after a cut.

/** Opens a page at `origin` (the server or a proxy in front of it) whose
 *  window.__rec records what a subscription to `scope` delivers. */
async function recordingPage(browser, origin, scope, name) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  await page.goto(`${origin}/healthz`); // any page of that origin
  await page.evaluate(async ({ scope: s, name: n }) => {
    const { connect } = await import('/scopecast.js');
    const token = async () => {
      const r = await fetch('/demo/token', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: n }),
      });
      return (await r.json()).token;
    };
    const client = connect('/ws', { token, pingInterval: 0, reconnect: { initialDelay: 50, maxDelay: 400, factor: 2 } });
    const sub = client.subscribe(s);
    const rec = { seqs: [], recovered: [], refetch: [], dropped: [], statuses: [], client, sub };
    sub.on('event', (e) => rec.seqs.push(e.seq));
    sub.on('recovered', (i) => rec.recovered.push(i));
    sub.on('refetch', (i) => rec.refetch.push(i));
    sub.on('dropped', (d) => rec.dropped.push({ count: d.count, recovering: d.recovering }));
    client.on('status', (st) => rec.statuses.push(st));
    window.__rec = rec;
    await sub.ready;
  }, { scope, name });
  return page;
}
const rec = (page) => page.evaluate(() => {
  const r = window.__rec;
  return {
    seqs: r.seqs, recovered: r.recovered, refetch: r.refetch, dropped: r.dropped, statuses: r.statuses,
    status: r.client.status, connects: r.client.connects, epoch: r.sub.epoch,
  };
});
const waitSeqs = (page, n, timeout = 5000) => page.waitForFunction((k) => window.__rec.seqs.length >= k, n,
  { timeout, polling: 25 });
async function emitBatch(server, scope, n, tag) {
  const r = await server.apiEmit(Array.from({ length: n }, (_, i) => ({ scope, data: { tag, i } })));
  assert.equal(r.status, 202);
  return r.body.results.map((x) => x.seq);
}
const consecutive = (seqs) => seqs.every((s, i) => i === 0 || s === seqs[i - 1] + 1);

describe('recovery in the browser', { concurrency: false }, () => {
  let browser;
  const pages = [];
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    for (const p of pages) {
      assert.deepEqual(p.errors.map(String), [], 'no uncaught errors in the page');
    }
  });

  test('a connection cut at the network: the page gets every event emitted meanwhile, in order, then live ones', async () => {
    const server = await startServer({ demo: true });
    const proxy = await startProxy(server);
    try {
      const scope = 'room:browser-cut';
      const page = await recordingPage(browser, proxy.http, scope, 'Cutter');
      pages.push(page);
      const pre = await emitBatch(server, scope, 3, 'pre');
      await waitSeqs(page, 3);
      proxy.block();
      assert.ok(proxy.kill() >= 1);
      await page.waitForFunction(() => window.__rec.client.status === 'reconnecting', null, { timeout: 5000, polling: 25 });
      const missed = [];
      for (let k = 0; k < 3; k++) missed.push(...await emitBatch(server, scope, 10, `away${k}`));
      proxy.unblock();
      await waitSeqs(page, 33);
      const live = await emitBatch(server, scope, 5, 'live');
      await waitSeqs(page, 38);
      const r = await rec(page);
      assert.deepEqual(r.seqs, [...pre, ...missed, ...live]);
      assert.ok(consecutive(r.seqs), `gap-free: ${r.seqs.join(',')}`);
      assert.equal(r.recovered.length, 1);
      assert.deepEqual([r.recovered[0].since, r.recovered[0].seq, r.recovered[0].missed, r.recovered[0].trigger],
        [pre.at(-1), missed.at(-1), 30, 'reconnect']);
      assert.deepEqual(r.refetch, []);
      assert.ok(r.connects >= 2);
      await page.screenshot({ path: artifactPath('browser-recovery-cut.png') });
    } finally {
      await proxy.close();
      await server.stop();
    }
  });

  test('dropped (bursts over maxsize): the page fills each gap from the history, gap-free and in order', async () => {
    const server = await startServer({ demo: true, args: ['--maxsize', '4', '--history', 'room:*=5000'] });
    try {
      const scope = 'room:browser-burst';
      const page = await recordingPage(browser, server.http, scope, 'Burster');
      pages.push(page);
      const all = [];
      for (let b = 0; b < 3; b++) {
        all.push(...await emitBatch(server, scope, 80, `b${b}`));
        await waitSeqs(page, all.length);
      }
      const r = await rec(page);
      assert.deepEqual(r.seqs, all);
      assert.ok(consecutive(r.seqs));
      assert.ok(r.dropped.length >= 3 && r.dropped.every((d) => d.recovering), JSON.stringify(r.dropped));
      assert.equal(r.recovered.length, r.dropped.length);
      assert.ok(r.recovered.every((i) => i.trigger === 'dropped'));
      assert.deepEqual(r.refetch, []);
      assert.equal(r.connects, 1, 'on the same connection');
    } finally {
      await server.stop();
    }
  });

  test('demo: a late joiner (nobody else online) rebuilds the list from the room history', async () => {
    const server = await startServer({ demo: true });
    try {
      const room = 'late-joiner';
      const first = await openDemo(browser, server, { name: 'Early Eve', room });
      pages.push(first);
      for (const text of ['Pack the tent', 'Buy matches', 'Check the weather']) await addItem(first, text);
      await first.click('#items .item:has(.text:text-is("Buy matches")) input[type="checkbox"]');
      await first.hover('#items .item:has(.text:text-is("Check the weather"))');
      await first.click('#items .item:has(.text:text-is("Check the weather")) .remove');
      await waitItems(first, (list) => list.length === 2, null, 2000);
      const want = (await items(first)).map((i) => [i.text, i.done]);
      // every emit of the page reached the server before it goes
      await first.waitForFunction(() => window.scopecastDemo.client.status === 'open');
      await first.evaluate(() => window.scopecastDemo.client.ping());
      await first.context().close();

      // a fresh browser context: no localStorage copy, and no tab to ask
      const late = await openDemo(browser, server, { name: 'Late Leo', room });
      pages.push(late);
      await waitItems(late, (list, w) => list.length === w.length &&
        list.every((i, k) => i.text === w[k][0] && i.done === w[k][1]), want, 3000);
      assert.deepEqual((await items(late)).map((i) => [i.text, i.done]), want);
      assert.equal(await late.isVisible('#notice'), false, 'no notice: nothing had to be refetched');
      await late.screenshot({ path: artifactPath('browser-late-joiner.png') });
      await late.context().close();
    } finally {
      await server.stop();
    }
  });

  test('demo: a page whose connection was cut catches up without a reload (recovered, not refetched)', async () => {
    const server = await startServer({ demo: true });
    const proxy = await startProxy(server);
    try {
      const room = 'catch-up';
      const cut = await openDemo(browser, proxy, { name: 'Cut Carl', room });
      const other = await openDemo(browser, server, { name: 'Online Olga', room });
      pages.push(cut, other);
      await cut.waitForFunction(() => window.scopecastDemo.sub.state === 'subscribed', null, { timeout: 5000 });
      await cut.evaluate(() => {
        window.__outcomes = [];
        const { sub } = window.scopecastDemo;
        sub.on('recovered', (i) => window.__outcomes.push('recovered:' + i.trigger));
        sub.on('refetch', (i) => window.__outcomes.push('refetch:' + i.reason));
      });
      await addItem(other, 'Before the cut');
      await waitItems(cut, (list) => list.length === 1, null, 2000);
      proxy.block();
      proxy.kill();
      await cut.waitForSelector('#status[data-status="reconnecting"]', { timeout: 5000 });
      await addItem(other, 'While away 1');
      await addItem(other, 'While away 2');
      await other.click('#items .item:has(.text:text-is("Before the cut")) input[type="checkbox"]');
      await waitItems(other, (list) => list.length === 3 && list[0].done, null, 2000);
      await other.evaluate(() => window.scopecastDemo.client.ping());
      proxy.unblock();
      await cut.waitForSelector('#status[data-status="open"]', { timeout: 5000 });
      await waitItems(cut, (list) => list.length === 3 && list[0].done &&
        list[1].text === 'While away 1' && list[2].text === 'While away 2', null, 3000);
      assert.deepEqual(await cut.evaluate(() => window.__outcomes), ['recovered:reconnect']);
      await addItem(cut, 'Back again');
      await waitItems(other, (list) => list.some((i) => i.text === 'Back again'), null, 2000);
    } finally {
      await proxy.close();
      await server.stop();
    }
  });

  test('demo: past the history a cut page shows a short notice and gets the list from the open tabs', async () => {
    const server = await startServer({ demo: true, args: ['--history', 'room:*=5'] });
    const proxy = await startProxy(server);
    try {
      const room = 'refetch';
      const cut = await openDemo(browser, proxy, { name: 'Cut Cora', room });
      const other = await openDemo(browser, server, { name: 'Online Omar', room });
      pages.push(cut, other);
      await cut.waitForFunction(() => window.scopecastDemo.sub.state === 'subscribed', null, { timeout: 5000 });
      await cut.evaluate(() => {
        window.__notices = [];
        const el = document.getElementById('notice');
        new MutationObserver(() => { if (!el.hidden) window.__notices.push(el.textContent); })
          .observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
      });
      proxy.block();
      proxy.kill();
      await cut.waitForSelector('#status[data-status="reconnecting"]', { timeout: 5000 });
      const texts = Array.from({ length: 8 }, (_, i) => `Item ${i + 1}`); // 8 events: over the 5 kept
      for (const t of texts) await addItem(other, t);
      await waitItems(other, (list) => list.length === 8, null, 2000);
      await other.evaluate(() => window.scopecastDemo.client.ping());
      proxy.unblock();
      await waitItems(cut, (list, w) => list.length === w.length && list.every((i, k) => i.text === w[k]), texts, 5000);
      const notices = await cut.evaluate(() => window.__notices);
      assert.ok(notices.some((n) => /^Reloading the list: some updates could not be recovered\.$/.test(n)),
        JSON.stringify(notices));
      await cut.screenshot({ path: artifactPath('browser-refetch.png') });
    } finally {
      await proxy.close();
      await server.stop();
    }
  });
});
