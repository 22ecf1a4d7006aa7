// Node tests of web/scopecast.js, with `ws` injected as the WebSocket, against
// a real scopecast server (and a scripted fake socket for exact ordering).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createServer } from 'node:net';
import {
  connect, backoffDelay, groupPresence, ScopecastError, DEFAULTS, tokenExp,
} from '../../web/scopecast.js';
import { startServer, startProxy, waitFor, sleep, signJwt, seeded } from './helpers.mjs';

const SECRET = 'js-test-secret';
const clients = new Set();

/** connect() with `ws`, short timeouts, and cleanup after each group. */
function open(server, opts = {}) {
  const c = connect(opts.url || server.ws, {
    WebSocket,
    reconnect: { initialDelay: 50, maxDelay: 400, factor: 2 },
    requestTimeout: 3000,
    pingInterval: 0,
    ...opts,
  });
  clients.add(c);
  return c;
}
function track(c) {
  clients.add(c);
  return c;
}
function closeAll() {
  for (const c of clients) c.close();
  clients.clear();
}
// Whatever fails, no client is left running (it would keep the process alive).
after(closeAll);
const isOpen = (c) => () => c.status === 'open';
/** Rejects with a clear message when `promise` has not settled within `ms`. */
function settles(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
/** A 127.0.0.1 port nothing listens on (taken from the kernel, then released). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}
/** A `ws` WebSocket class that records every frame sent (as text). */
function recordingWebSocket(frames) {
  return class Recording extends WebSocket {
    send(data, ...rest) {
      frames.push(String(data));
      return super.send(data, ...rest);
    }
  };
}
const users = (sub) => sub.presence.map((g) => `${g.user ?? 'anon'}:${g.connections.length}`).sort().join(',');

// ---------------------------------------------------------------------------

describe('backoffDelay', () => {
  test('stays within [0, min(cap, base * factor^n)] for many samples', () => {
    const opts = { initialDelay: 100, maxDelay: 10000, factor: 2 };
    const rnd = seeded(42);
    for (let n = 0; n < 40; n++) {
      const ceiling = Math.min(opts.maxDelay, opts.initialDelay * 2 ** n);
      let max = 0;
      let sum = 0;
      const N = 2000;
      for (let i = 0; i < N; i++) {
        const d = backoffDelay(n, opts, rnd);
        assert.ok(Number.isInteger(d), `integer delay, got ${d}`);
        assert.ok(d >= 0 && d <= ceiling, `attempt ${n}: ${d} outside [0, ${ceiling}]`);
        max = Math.max(max, d);
        sum += d;
      }
      // Full jitter: spread over the whole range, mean near the middle.
      assert.ok(max >= ceiling * 0.98, `attempt ${n}: max ${max} should approach ${ceiling}`);
      const mean = sum / N / ceiling;
      assert.ok(mean > 0.45 && mean < 0.55, `attempt ${n}: mean ${mean} of the ceiling`);
    }
  });

  test('uses Math.random by default, handles edges and defaults', () => {
    for (let i = 0; i < 5000; i++) {
      const n = i % 25;
      const d = backoffDelay(n, { initialDelay: 250, maxDelay: 5000, factor: 1.7 });
      assert.ok(d >= 0 && d <= Math.min(5000, 250 * 1.7 ** n));
    }
    assert.equal(backoffDelay(0, { initialDelay: 100 }, () => 0), 0);
    assert.equal(backoffDelay(3, { initialDelay: 100, maxDelay: 10000, factor: 2 }, () => 1), 800);
    assert.equal(backoffDelay(1e6, { initialDelay: 100, maxDelay: 7000, factor: 3 }, () => 0.999999), 6999);
    assert.equal(backoffDelay(-3, { initialDelay: 100 }, () => 1), 100);
    const d = backoffDelay(100, {}, () => 1); // defaults: 500ms base, 30s cap
    assert.equal(d, DEFAULTS.reconnect.maxDelay);
  });
});

// ---------------------------------------------------------------------------

/** A scripted WebSocket: the test plays the server. */
class FakeSocket {
  static last = null;
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.last = this;
    FakeSocket.all.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }
  // test side
  accept(welcome = {}) {
    this.readyState = 1;
    this.push({ op: 'welcome', version: 1, session: 's1', user: 'ana', heartbeat: 25, maxsize: 256, maxmessage: 65536, ...welcome });
  }
  push(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
}

describe('request/reply matching (scripted socket)', () => {
  test('replies are matched by id, whatever their order', async () => {
    FakeSocket.last = null;
    const c = track(connect('ws://example.invalid/ws', { WebSocket: FakeSocket, pingInterval: 0, token: 'tok' }));
    await waitFor(() => FakeSocket.last, { message: 'socket' });
    const ws = FakeSocket.last;
    assert.match(ws.url, /\?token=tok$/);
    assert.deepEqual(ws.protocols, ['scopecast.v1']);
    // Requests made before the welcome wait for it.
    const pA = c.presence('a');
    const pB = c.presence('b');
    const pE = c.emit('a', { data: { x: 1 }, paths: ['p'] });
    const pF = c.emit('c', { data: null });
    assert.equal(ws.sent.length, 0);
    ws.accept();
    assert.equal(c.status, 'open');
    assert.deepEqual(c.welcome, {
      version: 1, session: 's1', user: 'ana', heartbeat: 25, maxsize: 256, maxmessage: 65536,
      resume_token: null, resumed: null,
    });
    assert.equal(ws.sent.length, 4);
    const [a, b, e, f] = ws.sent;
    assert.deepEqual(e, { op: 'emit', scope: 'a', data: { x: 1 }, paths: ['p'], id: e.id });
    assert.deepEqual(f, { op: 'emit', scope: 'c', data: null, id: f.id });
    assert.equal(new Set([a.id, b.id, e.id, f.id]).size, 4, 'distinct ids');
    // Reply in reverse order, plus noise: an unknown id and a push.
    ws.push({ op: 'error', id: f.id, code: 'forbidden', message: 'emit: not allowed' });
    ws.push({ op: 'emitted', id: e.id, scope: 'a', seq: 7 });
    ws.push({ op: 'presence', id: 999, scope: 'zzz', presence: [] });
    ws.push({ op: 'event', scope: 'a', seq: 8, paths: [], origin: null });
    ws.push({ op: 'presence', id: b.id, scope: 'b', presence: [{ session: 'x', user: 'bob', at: 1, meta: {} }] });
    ws.push({ op: 'presence', id: a.id, scope: 'a', presence: [] });
    assert.deepEqual(await pA, []);
    assert.deepEqual((await pB).map((x) => x.user), ['bob']);
    assert.deepEqual(await pE, { scope: 'a', seq: 7 });
    await assert.rejects(pF, (err) => err instanceof ScopecastError && err instanceof Error &&
      err.code === 'forbidden' && err.message === 'emit: not allowed' && err.op === 'emit');
    c.close();
  });

  test('timeouts and disconnects reject with local codes; subscriptions come back', async () => {
    const statuses = [];
    FakeSocket.last = null;
    const c = track(connect('ws://example.invalid/ws', {
      WebSocket: FakeSocket, pingInterval: 0, requestTimeout: 100,
      reconnect: { initialDelay: 10, maxDelay: 10, factor: 2 },
    }));
    c.on('status', (s, info) => statuses.push([s, info.code]));
    await waitFor(() => FakeSocket.last, { message: 'socket' });
    const ws1 = FakeSocket.last;
    ws1.accept();
    const sub = c.subscribe('room:x', { meta: { n: 1 }, echo: true });
    const subReq = ws1.sent.find((m) => m.op === 'subscribe');
    assert.deepEqual(subReq, { op: 'subscribe', scope: 'room:x', meta: { n: 1 }, echo: true, id: subReq.id });
    ws1.push({ op: 'subscribed', id: subReq.id, scope: 'room:x', seq: 3, presence: [{ session: 's1', user: 'ana', at: 1, meta: { n: 1 } }] });
    assert.equal((await sub.ready).seq, 3);
    assert.equal(users(sub), 'ana:1');
    assert.equal(sub.presence[0].self, true);

    await assert.rejects(c.ping(), (e) => e instanceof ScopecastError && e.code === 'timeout');
    const inflight = c.presence('room:x');
    ws1.drop(1006);
    await assert.rejects(inflight, (e) => e.code === 'disconnected');
    assert.equal(sub.state, 'pending');
    await waitFor(() => FakeSocket.last !== ws1, { message: 'a new socket' });
    const ws2 = FakeSocket.last;
    ws2.accept({ session: 's2' });
    const again = ws2.sent.find((m) => m.op === 'subscribe');
    assert.deepEqual({ ...again, id: 0 }, { op: 'subscribe', scope: 'room:x', meta: { n: 1 }, echo: true, id: 0 });
    const resub = new Promise((r) => sub.once('subscribed', r));
    ws2.push({ op: 'subscribed', id: again.id, scope: 'room:x', seq: 0, presence: [{ session: 's2', user: 'ana', at: 2, meta: {} }, { session: 'b', user: 'bob', at: 3, meta: {} }] });
    const info = await resub;
    assert.equal(info.resubscribed, true);
    assert.equal(users(sub), 'ana:1,bob:1');
    assert.deepEqual(statuses.map((s) => s[0]), ['connecting', 'open', 'reconnecting', 'open']);
    c.close();
    assert.equal(c.status, 'closed');
    await assert.rejects(c.presence('x'), (e) => e.code === 'disconnected');
  });

  test('a token function that never answers counts as a failed attempt', async () => {
    let calls = 0;
    const c = track(connect('ws://example.invalid/ws', {
      WebSocket: FakeSocket, pingInterval: 0, connectTimeout: 50,
      reconnect: { initialDelay: 10, maxDelay: 20, factor: 2 },
      token: () => { calls++; return new Promise(() => {}); },
    }));
    const info = await new Promise((resolve) => {
      const off = c.on('status', (s, i) => {
        if (s === 'reconnecting') {
          off();
          resolve(i);
        }
      });
    });
    c.close();
    assert.equal(info.error.code, 'timeout');
    assert.equal(info.attempt, 1);
    assert.ok(calls >= 1);
  });

  test('ready rejects at a failed connection attempt, is re-armed, and resolves on the next subscribed', async () => {
    FakeSocket.last = null;
    const c = track(connect('ws://example.invalid/ws', {
      WebSocket: FakeSocket, pingInterval: 0, reconnect: { initialDelay: 10, maxDelay: 10, factor: 2 },
    }));
    const sub = c.subscribe('a');
    const first = sub.ready;
    await waitFor(() => FakeSocket.last, { message: 'socket' });
    const ws1 = FakeSocket.last;
    ws1.drop(1006); // the first attempt fails before any welcome
    await assert.rejects(settles(first, 1000, 'sub.ready'), (e) => e instanceof ScopecastError &&
      e.code === 'disconnected' && e.scope === 'a' && /connection attempt 1 failed \(close 1006\)/.test(e.message));
    assert.notEqual(sub.ready, first, 'a new ready for the next attempt');
    assert.equal(sub.active, true);
    assert.equal(sub.state, 'pending');
    assert.equal(c.status, 'reconnecting');

    await waitFor(() => FakeSocket.last !== ws1, { message: 'second attempt' });
    const ws2 = FakeSocket.last;
    ws2.accept();
    const req = ws2.sent.find((m) => m.op === 'subscribe');
    ws2.push({ op: 'subscribed', id: req.id, scope: 'a', seq: 5, presence: [] });
    assert.equal((await settles(sub.ready, 1000, 'the re-armed sub.ready')).seq, 5);

    // Once subscribed, ready stays resolved whatever the connection does.
    const resolved = sub.ready;
    ws2.drop(1006);
    await waitFor(() => FakeSocket.last !== ws2, { message: 'third attempt' });
    const late = c.subscribe('b'); // made while reconnecting
    const lateReady = late.ready; // (a failure replaces late.ready)
    const ws3 = FakeSocket.last;
    ws3.drop(1006);
    await assert.rejects(settles(lateReady, 1000, 'late.ready'),
      (e) => e.code === 'disconnected' && e.scope === 'b' && /attempt 1 failed/.test(e.message));
    assert.equal(sub.ready, resolved);

    // unsubscribe() and close() settle what is still waiting.
    const gone = c.subscribe('d');
    await gone.unsubscribe();
    await assert.rejects(settles(gone.ready, 1000, 'gone.ready'),
      (e) => e.code === 'disconnected' && e.message === 'd: not subscribed: unsubscribed before the reply');
    const waiting = c.subscribe('c');
    c.close();
    await assert.rejects(settles(waiting.ready, 1000, 'waiting.ready'),
      (e) => e.code === 'disconnected' && e.scope === 'c' && /client is closed/.test(e.message));
    assert.equal(await sub.ready, await resolved);
  });

  test("connect() refuses a URL it cannot open, at once: '/ws' without a page location", async () => {
    assert.equal(globalThis.location, undefined, 'Node has no page location');
    const refuses = (url, re, Impl = WebSocket) => {
      let c = null;
      try {
        assert.throws(() => { c = connect(url, { WebSocket: Impl, pingInterval: 0 }); },
          (e) => e instanceof TypeError && re.test(e.message), `connect(${JSON.stringify(url)})`);
      } finally {
        c?.close(); // the old client retried for ever
      }
    };
    refuses('/ws', /^connect: "\/ws" is a relative URL and there is no page location to resolve it against/);
    refuses('ws', /relative URL/, FakeSocket);
    refuses('ftp://example.com/ws', /ws:, wss:, http: or https:/, FakeSocket);
    refuses('ws://', /not a valid URL/, FakeSocket);
    refuses(42, /must be a string/, FakeSocket);

    // http(s) is taken for ws(s); in a page a path is resolved against its location.
    const urlOf = async (url, opts = {}) => {
      FakeSocket.last = null;
      const c = track(connect(url, { WebSocket: FakeSocket, pingInterval: 0, ...opts }));
      await waitFor(() => FakeSocket.last, { message: 'socket' });
      c.close();
      return FakeSocket.last.url;
    };
    assert.equal(await urlOf('https://example.com/ws'), 'wss://example.com/ws');
    globalThis.location = { href: 'http://example.com:8080/app/index.html' };
    try {
      assert.equal(await urlOf('/ws', { token: 't' }), 'ws://example.com:8080/ws?token=t');
    } finally {
      delete globalThis.location;
    }
  });

  test('maxmessage: a request over the limit is refused without sending it; the connection stays', async () => {
    FakeSocket.last = null;
    const c = track(connect('ws://example.invalid/ws', { WebSocket: FakeSocket, pingInterval: 0 }));
    await waitFor(() => FakeSocket.last, { message: 'socket' });
    const ws = FakeSocket.last;
    const size = (id, data) => Buffer.byteLength(JSON.stringify({ op: 'emit', scope: 's', data, id }));
    // 40 'é' are 40 UTF-16 units but 80 bytes: the frame is over 100 bytes
    // only when counted in UTF-8.
    const wide = 'é'.repeat(40);
    assert.ok(JSON.stringify({ op: 'emit', scope: 's', data: wide, id: 1 }).length <= 100);
    assert.ok(size(1, wide) > 100);
    // Queued before the welcome: checked when it would be sent.
    const queued = c.emit('s', { data: wide });
    const small = c.emit('s', { data: 1 });
    ws.accept({ maxmessage: 100 });
    assert.equal(c.welcome.maxmessage, 100);
    await assert.rejects(queued, (e) => e instanceof ScopecastError && e.code === 'too_large' && e.op === 'emit' &&
      e.message === `emit: the message is ${size(1, wide)} bytes, over the server's limit of 100 bytes (maxmessage); not sent`);
    assert.deepEqual(ws.sent.map((m) => m.id), [2], 'only the small one went out');
    ws.push({ op: 'emitted', id: 2, scope: 's', seq: 1 });
    assert.deepEqual(await small, { scope: 's', seq: 1 });
    // Once open: refused at once, nothing sent, nothing closed.
    await assert.rejects(c.emit('s', { data: wide }), (e) => e.code === 'too_large');
    const sub = c.subscribe('t', { meta: { blob: 'x'.repeat(200) } });
    await assert.rejects(sub.ready, (e) => e.code === 'too_large' && e.op === 'subscribe');
    assert.equal(sub.active, false);
    assert.equal(ws.sent.length, 1);
    assert.equal(ws.readyState, 1);
    assert.equal(c.status, 'open');
    c.close();

    // A server without maxmessage: no local limit.
    FakeSocket.last = null;
    const old = track(connect('ws://example.invalid/ws', { WebSocket: FakeSocket, pingInterval: 0 }));
    await waitFor(() => FakeSocket.last, { message: 'socket' });
    FakeSocket.last.accept({ maxmessage: undefined });
    assert.equal(old.welcome.maxmessage, null);
    const p = old.emit('s', { data: 'x'.repeat(70000) });
    assert.equal(FakeSocket.last.sent.length, 1);
    old.close();
    await assert.rejects(p, (e) => e.code === 'disconnected');
  });

  test('presence: false is sent with subscribe; a blind subscription never fetches presence', async () => {
    FakeSocket.last = null;
    const c = track(connect('ws://example.invalid/ws', { WebSocket: FakeSocket, pingInterval: 0 }));
    await waitFor(() => FakeSocket.last, { message: 'socket' });
    const ws = FakeSocket.last;
    ws.accept();
    const blind = c.subscribe('news', { presence: false });
    const seen = c.subscribe('room', { presence: true });
    const [b, r] = ws.sent.filter((m) => m.op === 'subscribe');
    assert.deepEqual(b, { op: 'subscribe', scope: 'news', presence: false, id: b.id });
    assert.deepEqual(r, { op: 'subscribe', scope: 'room', id: r.id }, 'the default is not sent');
    assert.equal(blind.presenceEnabled, false);
    assert.equal(seen.presenceEnabled, true);
    ws.push({ op: 'subscribed', id: b.id, scope: 'news', seq: 0, presence: [] });
    await blind.ready;
    const sent = ws.sent.length;
    const dropped = new Promise((res) => blind.once('dropped', res));
    ws.push({ op: 'dropped', scope: 'news', count: 3 });
    assert.equal((await dropped).count, 3);
    assert.deepEqual(await blind.refreshPresence(), []);
    await sleep(20);
    assert.equal(ws.sent.length, sent, 'no presence request for a blind subscription');
    assert.deepEqual(blind.presence, []);
    c.close();
  });
});

// ---------------------------------------------------------------------------

describe('recovery (scripted socket)', () => {
  const ev = (scope, seq, data = seq) => ({ op: 'event', scope, seq, paths: [], origin: null, data });
  /** A client on a FakeSocket that got its welcome; returns [client, socket]. */
  async function scripted(opts = {}) {
    FakeSocket.last = null;
    const c = track(connect('ws://example.invalid/ws', {
      WebSocket: FakeSocket, pingInterval: 0, reconnect: { initialDelay: 5, maxDelay: 5, factor: 1 }, ...opts,
    }));
    await waitFor(() => FakeSocket.last, { message: 'socket' });
    FakeSocket.last.accept();
    return [c, FakeSocket.last];
  }
  const lastSubscribe = (ws) => ws.sent.filter((m) => m.op === 'subscribe').at(-1);
  /** Records what the app sees of a subscription, in order. */
  function record(sub) {
    const log = [];
    sub.on('event', (e) => log.push(['event', e.seq]));
    sub.on('recovered', (i) => log.push(['recovered', i]));
    sub.on('refetch', (i) => log.push(['refetch', i]));
    sub.on('dropped', (d) => log.push(['dropped', d.count, d.recovering]));
    return log;
  }
  async function reconnect(c, ws) {
    ws.drop(1006);
    await waitFor(() => FakeSocket.last !== ws, { message: 'a new socket' });
    FakeSocket.last.accept();
    return FakeSocket.last;
  }

  test('a reconnect subscribes with since {last seq delivered, epoch}; replayed events come once, in order', async () => {
    const [c, ws1] = await scripted();
    const sub = c.subscribe('doc:1', { meta: { n: 1 } });
    const log = record(sub);
    const first = lastSubscribe(ws1);
    assert.equal(first.since, undefined, 'no since on a first subscribe');
    ws1.push({ op: 'subscribed', id: first.id, scope: 'doc:1', seq: 10, epoch: 'e1', presence: [] });
    assert.equal(sub.seq, 10);
    assert.equal(sub.epoch, 'e1');
    assert.equal(sub.recovered, null);
    for (const s of [11, 12, 13]) ws1.push(ev('doc:1', s));
    assert.equal(sub.seq, 13);

    const ws2 = await reconnect(c, ws1);
    const again = lastSubscribe(ws2);
    assert.deepEqual(again, { op: 'subscribe', scope: 'doc:1', meta: { n: 1 }, since: { seq: 13, epoch: 'e1' }, id: again.id });
    const infos = [];
    sub.on('subscribed', (i) => infos.push(i));
    ws2.push({ op: 'subscribed', id: again.id, scope: 'doc:1', seq: 16, epoch: 'e1', recovered: true, presence: [] });
    // the replay, with a duplicate of what was delivered already, then live
    for (const s of [13, 14, 15, 16, 17]) ws2.push(ev('doc:1', s));
    assert.deepEqual(log.map((x) => (x[0] === 'event' ? x[1] : x[0])),
      [11, 12, 13, 'recovered', 14, 15, 16, 17]);
    assert.deepEqual(log[3][1], { scope: 'doc:1', epoch: 'e1', since: 13, seq: 16, missed: 3, trigger: 'reconnect' });
    assert.deepEqual(infos.map((i) => [i.seq, i.epoch, i.resubscribed, i.recovered]), [[16, 'e1', true, true]]);
    assert.equal(sub.seq, 17);
    assert.equal(sub.recovered, true);

    // recovered:false: refetch, placed at the reply's seq
    const ws3 = await reconnect(c, ws2);
    const third = lastSubscribe(ws3);
    assert.deepEqual(third.since, { seq: 17, epoch: 'e1' });
    ws3.push({ op: 'subscribed', id: third.id, scope: 'doc:1', seq: 90, epoch: 'e1', recovered: false, presence: [] });
    ws3.push(ev('doc:1', 91));
    assert.deepEqual(log.slice(8), [
      ['refetch', { scope: 'doc:1', epoch: 'e1', seq: 90, reason: 'history', trigger: 'reconnect', previous: { epoch: 'e1', seq: 17 } }],
      ['event', 91],
    ]);
    assert.equal(sub.recovered, false);

    // a new epoch (the server restarted): refetch with reason 'epoch'
    const ws4 = await reconnect(c, ws3);
    const fourth = lastSubscribe(ws4);
    assert.deepEqual(fourth.since, { seq: 91, epoch: 'e1' });
    ws4.push({ op: 'subscribed', id: fourth.id, scope: 'doc:1', seq: 2, epoch: 'e2', recovered: false, presence: [] });
    ws4.push(ev('doc:1', 3));
    assert.equal(log[10][0], 'refetch');
    assert.equal(log[10][1].reason, 'epoch');
    assert.deepEqual([log[10][1].epoch, log[10][1].seq], ['e2', 2]);
    assert.deepEqual(log[11], ['event', 3], 'a lower seq in the new epoch is delivered');
    assert.equal(sub.epoch, 'e2');
    c.close();
  });

  test('since given by the app goes with the first subscribe (a late joiner); a bad one throws', async () => {
    const [c, ws] = await scripted();
    const sub = c.subscribe('room:x', { since: { seq: 0 } });
    const log = record(sub);
    assert.equal(sub.seq, 0);
    const req = lastSubscribe(ws);
    assert.deepEqual(req, { op: 'subscribe', scope: 'room:x', since: { seq: 0 }, id: req.id });
    ws.push({ op: 'subscribed', id: req.id, scope: 'room:x', seq: 3, epoch: 'e', recovered: true, presence: [] });
    for (const s of [1, 2, 3, 4]) ws.push(ev('room:x', s));
    assert.deepEqual(log.map((x) => (x[0] === 'event' ? x[1] : x[0])), ['recovered', 1, 2, 3, 4]);
    assert.equal(log[0][1].trigger, 'since');

    const resumed = c.subscribe('room:y', { since: { seq: 7, epoch: 'old' } });
    assert.deepEqual([resumed.seq, resumed.epoch], [7, 'old']);
    const r2 = lastSubscribe(ws);
    assert.deepEqual(r2.since, { seq: 7, epoch: 'old' });
    const refetch = new Promise((res) => resumed.once('refetch', res));
    ws.push({ op: 'subscribed', id: r2.id, scope: 'room:y', seq: 1, epoch: 'new', recovered: false, presence: [] });
    assert.equal((await refetch).reason, 'epoch');

    for (const since of [{ seq: -1 }, { seq: 1.5 }, { seq: '3' }, { seq: 1, epoch: 5 }, 'x']) {
      assert.throws(() => c.subscribe('room:bad', { since }), TypeError, JSON.stringify(since));
    }
    assert.equal(c.subscriptions.some((s) => s.scope === 'room:bad'), false);
    c.close();
  });

  test('dropped: subscribes again with since on the live subscription, ignores the scope until the reply, then no gap', async () => {
    const [c, ws] = await scripted();
    const sub = c.subscribe('feed', { presence: false });
    const other = c.subscribe('other');
    const log = record(sub);
    const otherSeqs = [];
    other.on('event', (e) => otherSeqs.push(e.seq));
    const [r1, r2] = ws.sent.filter((m) => m.op === 'subscribe');
    ws.push({ op: 'subscribed', id: r1.id, scope: 'feed', seq: 0, epoch: 'e', presence: [] });
    ws.push({ op: 'subscribed', id: r2.id, scope: 'other', seq: 0, epoch: 'o', presence: [] });
    for (const s of [1, 2, 3, 4]) ws.push(ev('feed', s));
    ws.push({ op: 'dropped', scope: 'feed', count: 6 });
    const refill = lastSubscribe(ws);
    assert.deepEqual(refill, { op: 'subscribe', scope: 'feed', presence: false, since: { seq: 4, epoch: 'e' }, id: refill.id });
    // before the reply: events of the scope (and another dropped) are ignored; other scopes flow
    ws.push(ev('feed', 11));
    ws.push(ev('other', 1));
    ws.push({ op: 'dropped', scope: 'feed', count: 1 });
    ws.push(ev('feed', 13));
    assert.equal(ws.sent.filter((m) => m.op === 'subscribe').length, 3, 'one refill');
    ws.push({ op: 'subscribed', id: refill.id, scope: 'feed', seq: 12, epoch: 'e', recovered: true, presence: [] });
    for (let s = 5; s <= 14; s++) ws.push(ev('feed', s));
    assert.deepEqual(log.map((x) => (x[0] === 'event' ? x[1] : x[0])),
      [1, 2, 3, 4, 'dropped', 'recovered', 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    assert.deepEqual(log[4], ['dropped', 6, true]);
    assert.deepEqual(log[5][1], { scope: 'feed', epoch: 'e', since: 4, seq: 12, missed: 8, trigger: 'dropped' });
    assert.deepEqual(otherSeqs, [1]);
    assert.equal(sub.state, 'subscribed');

    // recovered:false on a refill: refetch; what was queued before the reply's seq is skipped
    ws.push({ op: 'dropped', scope: 'feed', count: 2 });
    const refill2 = lastSubscribe(ws);
    assert.deepEqual(refill2.since, { seq: 14, epoch: 'e' });
    ws.push({ op: 'subscribed', id: refill2.id, scope: 'feed', seq: 40, epoch: 'e', recovered: false, presence: [] });
    ws.push(ev('feed', 17));
    ws.push(ev('feed', 41));
    assert.deepEqual(log.slice(16).map((x) => (x[0] === 'event' ? x[1] : x[0] + ':' + (x[1].reason ?? x[1]))),
      ['dropped:2', 'refetch:history', 41]);
    c.close();
  });

  test('dropped with presence: join/leave/update pushes before the reply are ignored, the reply\'s presence is taken', async () => {
    const [c, ws] = await scripted();
    const sub = c.subscribe('room:p');
    const req = lastSubscribe(ws);
    const conn = (session, user, meta = {}) => ({ session, user, at: 1, meta });
    ws.push({ op: 'subscribed', id: req.id, scope: 'room:p', seq: 1, epoch: 'e', presence: [conn('s1', 'ana'), conn('b', 'bob')] });
    const joins = [];
    sub.on('join', (m) => joins.push(m.conn.user));
    ws.push({ op: 'dropped', scope: 'room:p', count: 3 });
    const refill = lastSubscribe(ws);
    assert.deepEqual(refill.since, { seq: 1, epoch: 'e' });
    const sentBefore = ws.sent.length;
    ws.push({ op: 'join', scope: 'room:p', conn: conn('c', 'cy'), first: true });
    ws.push({ op: 'leave', scope: 'room:p', conn: conn('b', 'bob'), last: true });
    ws.push({ op: 'update', scope: 'room:p', conn: conn('s1', 'ana', { x: 1 }) });
    assert.deepEqual(joins, []);
    assert.equal(users(sub), 'ana:1,bob:1', 'unchanged until the reply');
    ws.push({ op: 'subscribed', id: refill.id, scope: 'room:p', seq: 4, epoch: 'e', recovered: true,
      presence: [conn('s1', 'ana'), conn('d', 'dan')] });
    assert.equal(users(sub), 'ana:1,dan:1', "the reply's presence");
    ws.push({ op: 'join', scope: 'room:p', conn: conn('e', 'eve'), first: true });
    assert.deepEqual(joins, ['eve']);
    await sleep(10);
    assert.equal(ws.sent.length, sentBefore, 'no presence request: the reply carried it');
    c.close();
  });

  test('recover: false never sends since: a resubscribe or a dropped notice says refetch', async () => {
    for (const [connectOpts, subOpts] of [[{ recover: false }, {}], [{}, { recover: false }]]) {
      const [c, ws1] = await scripted(connectOpts);
      const sub = c.subscribe('doc:2', subOpts);
      assert.equal(sub.recover, false);
      const log = record(sub);
      const req = lastSubscribe(ws1);
      ws1.push({ op: 'subscribed', id: req.id, scope: 'doc:2', seq: 5, epoch: 'e', presence: [] });
      ws1.push(ev('doc:2', 6));
      ws1.push({ op: 'dropped', scope: 'doc:2', count: 1 });
      assert.equal(ws1.sent.filter((m) => m.op === 'subscribe').length, 1, 'no refill');
      ws1.push(ev('doc:2', 8));
      const ws2 = await reconnect(c, ws1);
      const again = lastSubscribe(ws2);
      assert.equal(again.since, undefined);
      ws2.push({ op: 'subscribed', id: again.id, scope: 'doc:2', seq: 20, epoch: 'e', presence: [] });
      assert.deepEqual(log.map((x) => (x[0] === 'event' ? x[1] : x[0] + ':' + (x[1].reason ?? x[2]))),
        [6, 'dropped:false', 'refetch:unrecovered', 8, 'refetch:unrecovered']);
      assert.equal(log[4][1].trigger, 'reconnect');
      c.close();
    }
  });

  test('a server that names no epoch gets no since (refetch after a reconnect)', async () => {
    const [c, ws1] = await scripted();
    const sub = c.subscribe('doc:3');
    const req = lastSubscribe(ws1);
    ws1.push({ op: 'subscribed', id: req.id, scope: 'doc:3', seq: 5, presence: [] });
    assert.equal(sub.epoch, null);
    const refetch = new Promise((res) => sub.once('refetch', res));
    const ws2 = await reconnect(c, ws1);
    const again = lastSubscribe(ws2);
    assert.equal(again.since, undefined);
    ws2.push({ op: 'subscribed', id: again.id, scope: 'doc:3', seq: 5, presence: [] });
    assert.equal((await refetch).reason, 'unrecovered');
    c.close();
  });
});

// ---------------------------------------------------------------------------

describe('against a real server', () => {
  let server;
  before(async () => {
    server = await startServer({ demo: true, jwtSecret: SECRET });
  });
  after(async () => {
    closeAll();
    await server?.stop();
  });

  test('a token function refreshes the token before exp; the connection stays open', async () => {
    let made = 0;
    const tokenFn = () => {
      made++;
      return signJwt({ sub: 'rita', exp: Math.floor(Date.now() / 1000) + 3 }, SECRET);
    };
    const c = open(server, { token: tokenFn, refreshBefore: 1500 });
    const exps = [];
    c.on('refreshed', (exp) => exps.push(exp));
    await c.subscribe('doc:refresh').ready;
    // without a refresh the server closes with 4401 at exp (3 s)
    await waitFor(() => exps.length >= 2, { timeout: 8000, message: 'two refreshes' });
    assert.equal(c.status, 'open');
    assert.equal(c.connects, 1, 'refreshed on the same connection');
    assert.ok(made >= 3);
    assert.ok(exps[1] >= exps[0]);
    assert.equal(tokenExp(signJwt({ sub: 'x', exp: 42 }, SECRET)), 42);
    assert.equal(tokenExp('not a token'), null);
  });

  test('welcome, subscribe, emit, event, presence, many concurrent requests', async () => {
    const token = await server.demoToken('ana');
    const a = open(server, { token });
    const b = open(server, { token: await server.demoToken('bob') });
    const subA = a.subscribe('doc:1', { meta: { role: 'editor' } });
    const subB = b.subscribe('doc:1', { echo: true });
    const got = { a: [], b: [] };
    subA.on('event', (ev) => got.a.push(ev));
    subB.on('event', (ev) => got.b.push(ev));
    const [ra, rb] = await Promise.all([subA.ready, subB.ready]);
    assert.equal(ra.op, 'subscribed');
    assert.equal(ra.scope, 'doc:1');
    assert.ok(Array.isArray(rb.presence));
    assert.equal(a.welcome.user, 'ana');
    assert.equal(typeof a.welcome.session, 'string');
    assert.equal(a.welcome.heartbeat, 25);
    assert.equal(a.welcome.maxsize, 256);

    // 60 concurrent mixed requests: each reply goes to its own promise.
    const jobs = [];
    for (let i = 0; i < 20; i++) {
      jobs.push(b.emit('doc:1', { data: { i }, paths: [`p/${i}`] }).then((r) => ['emit', i, r]));
      jobs.push(b.presence(i % 2 ? 'doc:1' : `empty:${i}`).then((r) => ['presence', i, r]));
      jobs.push(b.ping().then((r) => ['ping', i, r]));
    }
    const results = await Promise.all(jobs);
    const seqs = [];
    for (const [kind, i, r] of results) {
      if (kind === 'emit') {
        assert.equal(r.scope, 'doc:1');
        seqs.push([i, r.seq]);
      } else if (kind === 'presence') {
        assert.equal(r.length, i % 2 ? 2 : 0, `presence of request ${i}`);
      } else {
        assert.equal(typeof r, 'number');
      }
    }
    // One order across emitters: seqs rise with the order of the emits.
    for (let k = 1; k < seqs.length; k++) assert.ok(seqs[k][1] > seqs[k - 1][1]);
    await waitFor(() => got.a.length === 20 && got.b.length === 20, { message: 'all events' });
    assert.deepEqual(got.a.map((e) => e.data.i), [...Array(20).keys()]);
    assert.deepEqual(got.a.map((e) => e.seq), seqs.map((s) => s[1]));
    assert.equal(got.a[0].origin, b.welcome.session);
    assert.deepEqual(got.a[3].paths, ['p/3']);
    // Presence of a includes its meta as b sees it.
    const meta = subB.connections.find((c) => c.user === 'ana').meta;
    assert.deepEqual(meta, { role: 'editor' });
  });

  test('typed errors: forbidden, bad_request, timeout', async () => {
    // Anonymous connections may not emit (client emit is off).
    const anon = open(server);
    await waitFor(isOpen(anon), { message: 'anon open' });
    assert.equal(anon.welcome.user, null);
    await assert.rejects(anon.emit('doc:1', { data: 1 }),
      (e) => e instanceof ScopecastError && e.code === 'forbidden' && e.op === 'emit');

    // A token limited to doc:* may not subscribe elsewhere.
    const limited = open(server, { token: signJwt({ sub: 'carol', scopes: ['doc:*'], emit: true }, SECRET) });
    const bad = limited.subscribe('secret:1');
    const errors = [];
    bad.on('error', (e) => errors.push(e.code));
    await assert.rejects(bad.ready, (e) => e instanceof ScopecastError && e.code === 'forbidden');
    assert.equal(bad.active, false);
    assert.deepEqual(errors, ['forbidden']);
    const fine = limited.subscribe('doc:7');
    await fine.ready;
    await assert.rejects(limited.presence('secret:1'), (e) => e.code === 'forbidden');

    // Malformed requests.
    await assert.rejects(limited.subscribe('has space').ready, (e) => e.code === 'bad_request');
    await assert.rejects(limited.emit('', { data: 1 }), (e) => e.code === 'bad_request');
    await assert.rejects(limited.request({ op: 'nope' }), (e) => e.code === 'bad_request');

    // No reply in time: the server process is frozen.
    await waitFor(isOpen(limited));
    server.pause();
    try {
      const t0 = Date.now();
      await assert.rejects(limited.emit('doc:7', { data: 1 }, { timeout: 200 }),
        (e) => e instanceof ScopecastError && e.code === 'timeout' && e.op === 'emit');
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      server.resume();
    }
    // The connection is still good afterwards.
    assert.ok(typeof (await limited.ping()) === 'number');
  });

  test('presence is grouped by user: two connections of one user count once', async () => {
    const scope = 'room:grouping';
    const tAna = await server.demoToken('ana');
    const obs = open(server, { token: await server.demoToken('olga') });
    const subObs = obs.subscribe(scope);
    await subObs.ready;
    const joins = [];
    const leaves = [];
    subObs.on('join', (m) => joins.push([m.conn.user, m.first]));
    subObs.on('leave', (m) => leaves.push([m.conn.user, m.last]));
    let presenceEvents = 0;
    subObs.on('presence', () => presenceEvents++);

    const ana1 = open(server, { token: tAna });
    const s1 = ana1.subscribe(scope, { meta: { tab: 1 } });
    await s1.ready;
    const ana2 = open(server, { token: tAna });
    const s2 = ana2.subscribe(scope, { meta: { tab: 2 } });
    await s2.ready;
    const anon = open(server);
    await anon.subscribe(scope).ready;

    await waitFor(() => subObs.connections.length === 4, { message: 'four connections' });
    assert.equal(users(subObs), 'ana:2,anon:1,olga:1');
    const ana = subObs.presence.find((g) => g.user === 'ana');
    assert.deepEqual(ana.connections.map((c) => c.meta.tab).sort(), [1, 2]);
    assert.equal(subObs.presence.find((g) => g.user === 'olga').self, true);
    assert.equal(ana.self, false);
    // Each tab of ana sees the same grouping, itself included.
    await waitFor(() => users(s2) === 'ana:2,anon:1,olga:1', { message: 'ana2 view' });
    assert.equal(s2.presence.find((g) => g.user === 'ana').self, true);
    assert.deepEqual(joins, [['ana', true], ['ana', false], [null, true]]);
    assert.ok(presenceEvents >= 3);

    await s1.unsubscribe();
    await waitFor(() => users(subObs) === 'ana:1,anon:1,olga:1', { message: 'ana down to one tab' });
    ana2.close();
    anon.close();
    await waitFor(() => users(subObs) === 'olga:1', { message: 'only olga left' });
    assert.deepEqual(leaves.sort(), [['ana', false], ['ana', true], [null, true]].sort());
    // The server agrees.
    assert.deepEqual(groupPresence(await obs.presence(scope)).map((g) => g.user), ['olga']);
  });

  test('groupPresence orders by connection time and keeps anonymous apart', () => {
    const g = groupPresence([
      { session: 'c', user: 'bob', at: 5, meta: {} },
      { session: 'a', user: 'ana', at: 1, meta: {} },
      { session: 'n1', user: null, at: 2, meta: {} },
      { session: 'b', user: 'ana', at: 3, meta: {} },
      { session: 'n2', user: null, at: 4, meta: {} },
    ], 'b');
    assert.deepEqual(g.map((x) => [x.user, x.connections.map((c) => c.session), x.self]), [
      ['ana', ['a', 'b'], true], [null, ['n1'], false], [null, ['n2'], false], ['bob', ['c'], false],
    ]);
  });

  test('dropped: a slow reader is told, and presence is refetched', async () => {
    const slow = await startServer({ demo: true, jwtSecret: SECRET, args: ['--maxsize', '4'] });
    try {
      let raw = null;
      class Capturing extends WebSocket {
        constructor(...args) {
          super(...args);
          raw = this;
        }
      }
      const c = open(slow, { token: await slow.demoToken('sam'), WebSocket: Capturing });
      const sub = c.subscribe('flood');
      await sub.ready;
      const dropped = [];
      let events = 0;
      sub.on('dropped', (d) => dropped.push(d.count));
      sub.on('event', () => events++);
      const presenceRequests = [];
      c.on('message', (m) => { if (m.op === 'presence') presenceRequests.push(m); });
      // Stop reading: the kernel buffers fill, then the server's queue.
      raw._socket.pause();
      const blob = 'x'.repeat(4000);
      for (let k = 0; k < 20; k++) {
        const batch = Array.from({ length: 100 }, (_, i) => ({ scope: 'flood', data: { k, i, blob } }));
        const r = await slow.apiEmit(batch);
        assert.equal(r.status, 202);
      }
      raw._socket.resume();
      await waitFor(() => dropped.length > 0, { timeout: 10000, message: 'a dropped notice' });
      assert.ok(dropped.reduce((x, y) => x + y, 0) + events <= 2000);
      await waitFor(() => presenceRequests.length > 0, { message: 'presence refetched' });
      assert.equal(users(sub), 'sam:1');
    } finally {
      await slow.stop();
    }
  });
});

// ---------------------------------------------------------------------------

describe('reconnect', () => {
  after(closeAll);

  test('a dropped connection resumes its session: the others see no leave or join', async () => {
    const server = await startServer({ demo: true, jwtSecret: SECRET, args: ['--presence-grace', '2'] });
    try {
      const bob = open(server, { token: await server.demoToken('bob') });
      const ana = open(server, { token: await server.demoToken('ana') });
      const subB = bob.subscribe('room:resume');
      const subA = ana.subscribe('room:resume', { meta: { color: 'red' } });
      await Promise.all([subA.ready, subB.ready]);
      await waitFor(() => users(subB) === 'ana:1,bob:1', { message: 'both present' });
      assert.match(ana.welcome.resume_token, /^[0-9a-f]{32}$/);
      assert.equal(ana.welcome.resumed, null);
      const seen = [];
      for (const op of ['join', 'leave', 'update']) subB.on(op, (m) => seen.push(m.op));
      const first = ana.welcome.session;
      ana._ws._socket.destroy(); // the network goes: no close frame
      await waitFor(() => ana.connects === 2 && ana.status === 'open' && subA.state === 'subscribed',
        { timeout: 3000, message: 'resumed' });
      assert.equal(ana.welcome.session, first, 'the same session');
      assert.equal(ana.welcome.resumed, true);
      const got = new Promise((resolve) => subA.once('event', resolve));
      await bob.emit('room:resume', { data: { hi: 1 } });
      assert.deepEqual((await got).data, { hi: 1 });
      await sleep(2500); // past the grace: still nothing
      assert.deepEqual(seen, []);
      assert.equal(users(subB), 'ana:1,bob:1');
      // close() is a goodbye: one leave at once
      ana.close();
      await waitFor(() => seen.length === 1, { timeout: 1000, message: 'leave at once' });
      assert.deepEqual(seen, ['leave']);
    } finally {
      await server.stop();
    }
  });

  test('resumeStorage carries the session to the next client (a page reload), read once; close() clears it', async () => {
    const server = await startServer({ demo: true, jwtSecret: SECRET, args: ['--presence-grace', '2'] });
    try {
      const store = new Map();
      const storage = {
        getItem: (k) => (store.has(k) ? store.get(k) : null),
        setItem: (k, v) => store.set(k, String(v)),
        removeItem: (k) => store.delete(k),
      };
      const token = await server.demoToken('ana');
      const bob = open(server, { token: await server.demoToken('bob') });
      const subB = bob.subscribe('room:reload');
      await subB.ready;
      const page1 = open(server, { token, resumeStorage: storage });
      const sub1 = page1.subscribe('room:reload');
      await sub1.ready;
      await waitFor(() => users(subB) === 'ana:1,bob:1', { message: 'ana present' });
      const seen = [];
      for (const op of ['join', 'leave']) subB.on(op, (m) => seen.push(m.op));
      assert.equal(page1.saveResume(), true); // what pagehide does
      assert.equal(store.size, 1);
      page1._ws._socket.destroy(); // the page goes: no closing handshake
      page1._stopped = true; // ...and its client with it (no reconnect)
      const page2 = open(server, { token, resumeStorage: storage });
      assert.equal(store.size, 0, 'read once');
      const sub2 = page2.subscribe('room:reload');
      await sub2.ready;
      assert.equal(page2.welcome.session, page1.welcome.session);
      assert.equal(page2.welcome.resumed, true);
      await sleep(2500); // past the grace
      assert.deepEqual(seen, []);
      assert.equal(users(subB), 'ana:1,bob:1');
      // a third client finds nothing: a session of its own
      const other = open(server, { token, resumeStorage: storage });
      await other.subscribe('room:reload').ready;
      assert.notEqual(other.welcome.session, page2.welcome.session);
      assert.equal(other.welcome.resumed, null);
      page2.saveResume();
      page2.close(); // a goodbye: nothing to resume
      assert.equal(store.size, 0);
    } finally {
      await server.stop();
    }
  });

  test('after a server restart: resubscribes, rebuilds presence, receives events', async () => {
    let server = await startServer({ demo: true, jwtSecret: SECRET });
    const port = server.port;
    try {
      const opts = { reconnect: { initialDelay: 50, maxDelay: 300, factor: 2 } };
      const a = open(server, { ...opts, token: await server.demoToken('ana') });
      const b = open(server, { ...opts, token: await server.demoToken('bob') });
      const subA = a.subscribe('room:restart', { meta: { color: 'red' } });
      const subB = b.subscribe('room:restart', { meta: { color: 'blue' } });
      await Promise.all([subA.ready, subB.ready]);
      await waitFor(() => users(subA) === 'ana:1,bob:1', { message: 'both present' });
      const statuses = [];
      a.on('status', (s, info) => statuses.push({ s, ...info }));
      const resubscribed = [];
      subA.on('subscribed', (info) => resubscribed.push(info));
      const firstSession = a.welcome.session;
      server.pause(); // the request below goes on the wire and is never answered
      const inflight = a.presence('room:restart', { timeout: 60000 }).then(() => null, (e) => e);
      await server.kill();
      const lost = await inflight;
      assert.ok(lost instanceof ScopecastError && lost.code === 'disconnected', String(lost));
      await waitFor(() => a.status === 'reconnecting' && b.status === 'reconnecting', { message: 'reconnecting' });

      // Let a few attempts fail, then bring the server back on the same port.
      await waitFor(() => a.attempt >= 3, { message: 'a few failed attempts' });
      server = await startServer({ port, demo: true, jwtSecret: SECRET });
      await waitFor(() => a.status === 'open' && b.status === 'open', { timeout: 5000, message: 'both open again' });
      assert.notEqual(a.welcome.session, firstSession);
      await waitFor(() => resubscribed.length === 1, { message: 'resubscribed' });
      assert.equal(resubscribed[0].resubscribed, true);
      await waitFor(() => users(subA) === 'ana:1,bob:1' && users(subB) === 'ana:1,bob:1', { message: 'presence rebuilt' });
      assert.deepEqual(subA.connections.find((c) => c.user === 'bob').meta, { color: 'blue' });
      assert.ok(subA.connections.every((c) => c.session !== firstSession), 'no stale connection');
      assert.equal(subA.presence.find((g) => g.user === 'ana').self, true);

      // Backoff delays that were used respect their bounds.
      const retries = statuses.filter((x) => x.s === 'reconnecting');
      assert.ok(retries.length >= 3);
      for (const r of retries) {
        assert.ok(r.delay >= 0 && r.delay <= Math.min(300, 50 * 2 ** (r.attempt - 1)), JSON.stringify(r));
      }

      const got = new Promise((r) => subA.once('event', r));
      await b.emit('room:restart', { data: { hello: 'again' } });
      assert.deepEqual((await got).data, { hello: 'again' });
    } finally {
      await server.stop();
    }
  });

  test('a dead link (no pong) is detected by the ping op and reconnected', async () => {
    const server = await startServer({ demo: true, jwtSecret: SECRET });
    try {
      const c = open(server, {
        token: await server.demoToken('pat'),
        pingInterval: 100, pingTimeout: 300, connectTimeout: 300,
      });
      const sub = c.subscribe('room:ping');
      await sub.ready;
      const statuses = [];
      c.on('status', (s, info) => statuses.push([s, info.code, info.reason]));
      server.pause();
      try {
        await waitFor(() => c.status === 'reconnecting', { timeout: 3000, message: 'ping timeout noticed' });
      } finally {
        server.resume();
      }
      assert.deepEqual(statuses[0], ['reconnecting', 4000, 'ping timeout']);
      await waitFor(() => c.status === 'open' && sub.state === 'subscribed', { timeout: 5000, message: 'back' });
      assert.equal(users(sub), 'pat:1');
    } finally {
      await server.stop();
    }
  });

  test('4401 (bad token) stops for good; close() stops for good', async () => {
    const server = await startServer({ demo: true, jwtSecret: SECRET });
    try {
      for (const token of ['garbage', signJwt({ sub: 'eve' }, 'another-secret')]) {
        const statuses = [];
        const errors = [];
        const c = open(server, { token, reconnect: { initialDelay: 10, maxDelay: 20, factor: 2 } });
        c.on('status', (s, info) => statuses.push([s, info.code]));
        c.on('error', (e) => errors.push(e));
        const sub = c.subscribe('room:x');
        await waitFor(() => c.status === 'closed', { message: '4401 close' });
        assert.deepEqual(statuses, [['connecting', undefined], ['closed', 4401]]);
        assert.equal(c.closeCode, 4401);
        assert.equal(errors.length, 1);
        assert.ok(errors[0] instanceof ScopecastError);
        assert.equal(errors[0].code, 'unauthorized');
        await sleep(300); // many backoff windows
        assert.equal(c.connects, 1, 'no further connection attempts');
        assert.equal(c.status, 'closed');
        assert.equal(sub.state, 'pending');
        await assert.rejects(c.ping(), (e) => e.code === 'disconnected');
      }

      const c = open(server, { token: await server.demoToken('ann'), reconnect: { initialDelay: 10, maxDelay: 20 } });
      await waitFor(isOpen(c));
      c.close();
      await sleep(200);
      assert.equal(c.status, 'closed');
      assert.equal(c.connects, 1);
      assert.equal(c.closeCode, null);
    } finally {
      await server.stop();
    }
  });

  test('a token function is called again for every attempt', async () => {
    // The demo secret is new on every start: a static token would be refused
    // after a restart, a token function fetches a fresh one.
    let server = await startServer({ demo: true });
    const port = server.port;
    try {
      let calls = 0;
      const c = open(server, {
        token: async () => { calls++; return server.demoToken('tina'); },
        reconnect: { initialDelay: 20, maxDelay: 200, factor: 2 },
      });
      const sub = c.subscribe('room:tok');
      await sub.ready;
      await server.kill();
      await waitFor(() => c.status === 'reconnecting');
      server = await startServer({ port, demo: true });
      await waitFor(() => c.status === 'open' && sub.state === 'subscribed', { timeout: 5000, message: 'back' });
      assert.ok(calls >= 2);
      assert.equal(c.welcome.user, 'tina');
    } finally {
      await server.stop();
    }
  });
});

// ---------------------------------------------------------------------------

describe('readiness, message limit, presence: false (real server)', () => {
  after(closeAll);

  test('sub.ready rejects when the server is unreachable from the start; a later success resolves a new one', async () => {
    const port = await freePort();
    const c = open({ ws: `ws://127.0.0.1:${port}/ws` }, {
      connectTimeout: 500, reconnect: { initialDelay: 50, maxDelay: 200, factor: 2 },
    });
    const sub = c.subscribe('room:unreachable');
    await assert.rejects(settles(sub.ready, 3000, 'sub.ready'), (e) => e instanceof ScopecastError &&
      e.code === 'disconnected' && e.op === 'subscribe' && e.scope === 'room:unreachable' &&
      /^room:unreachable: not subscribed: connection attempt 1 failed \(close 1006\); retrying in the background$/.test(e.message));
    assert.equal(c.status, 'reconnecting');
    assert.equal(sub.active, true);
    // The client keeps trying; once the server is there, the subscription is made.
    const server = await startServer({ port, demo: true });
    try {
      await waitFor(() => sub.state === 'subscribed', { timeout: 5000, message: 'subscribed once the server is up' });
      const reply = await settles(sub.ready, 1000, 'the new sub.ready');
      assert.equal(reply.op, 'subscribed');
      assert.equal(reply.scope, 'room:unreachable');
    } finally {
      await server.stop();
    }
  });

  test('sub.ready rejects with unauthorized on 4401 (not retried), and with disconnected on close()', async () => {
    const server = await startServer({ demo: true, jwtSecret: SECRET });
    try {
      const c = open(server, { token: 'garbage', reconnect: { initialDelay: 10, maxDelay: 20, factor: 2 } });
      const sub = c.subscribe('room:denied');
      await assert.rejects(settles(sub.ready, 3000, 'sub.ready'), (e) => e instanceof ScopecastError &&
        e.code === 'unauthorized' && e.scope === 'room:denied' &&
        /^room:denied: not subscribed: the server rejected the token \(4401\)/.test(e.message));
      assert.equal(c.status, 'closed');
      assert.equal(c.closeCode, 4401);
      await sleep(100);
      assert.equal(c.connects, 1, 'not retried');

      const d = open(server, { token: await server.demoToken('dora') });
      const early = d.subscribe('room:early');
      d.close(); // before the welcome
      await assert.rejects(settles(early.ready, 1000, 'early.ready'),
        (e) => e.code === 'disconnected' && /^room:early: not subscribed: client is closed$/.test(e.message));
    } finally {
      await server.stop();
    }
  });

  test('an emit over --max-message is refused locally with sizes; the connection and subscriptions stay', async () => {
    const LIMIT = 1024;
    const server = await startServer({ demo: true, args: ['--max-message', String(LIMIT)] });
    try {
      const frames = [];
      const c = open(server, { token: await server.demoToken('max'), WebSocket: recordingWebSocket(frames) });
      const sub = c.subscribe('big');
      await sub.ready; // request id 1
      const statuses = [];
      c.on('status', (s, info) => statuses.push([s, info.code]));
      const left = [];
      sub.on('subscribed', (info) => left.push(info));
      // `data` that makes the emit frame of request `id` exactly `bytes` long
      // in UTF-8 (2-, 3- and 4-byte characters included).
      const frameFor = (id, data) => JSON.stringify({ op: 'emit', scope: 'big', data, id });
      const dataFor = (id, bytes) => {
        const head = 'é€😀';
        return head + 'a'.repeat(bytes - Buffer.byteLength(frameFor(id, head)));
      };
      const over = dataFor(2, LIMIT + 1);
      assert.equal(Buffer.byteLength(frameFor(2, over)), LIMIT + 1);
      await assert.rejects(c.emit('big', { data: over }), (e) => e instanceof ScopecastError &&
        e.code === 'too_large' && e.op === 'emit' && e.scope === 'big' &&
        e.message === `emit: the message is ${LIMIT + 1} bytes, over the server's limit of ${LIMIT} bytes (maxmessage); not sent`);
      assert.equal(c.welcome.maxmessage, LIMIT);
      // Exactly the limit is allowed, and goes out.
      const exact = dataFor(3, LIMIT);
      const r = await c.emit('big', { data: exact });
      assert.equal(r.scope, 'big');
      assert.deepEqual(frames.map((f) => Buffer.byteLength(f)).filter((n) => n >= LIMIT), [LIMIT]);
      assert.ok(typeof (await c.ping()) === 'number');
      assert.equal(c.status, 'open');
      assert.equal(c.connects, 1);
      assert.deepEqual(statuses, [], 'the connection never went away');
      assert.deepEqual(left, [], 'no resubscribe');
      assert.equal(sub.state, 'subscribed');
    } finally {
      await server.stop();
    }
  });

  test('presence: false: events arrive, no presence either way, invisible to others', async () => {
    const server = await startServer({ demo: true });
    try {
      const scope = 'news:blind';
      const obs = open(server, { token: await server.demoToken('olga') });
      const subObs = obs.subscribe(scope);
      await subObs.ready;
      const joins = [];
      subObs.on('join', (m) => joins.push(m.conn.user));

      const blind = open(server, { token: await server.demoToken('bea') });
      const subBlind = blind.subscribe(scope, { presence: false });
      const blindJoins = [];
      subBlind.on('join', (m) => blindJoins.push(m.conn.user));
      const reply = await subBlind.ready;
      assert.deepEqual(reply.presence, [], 'subscribed carries no presence');
      assert.deepEqual(subBlind.presence, []);
      assert.equal(subBlind.presenceEnabled, false);

      const late = open(server, { token: await server.demoToken('carl') });
      await late.subscribe(scope).ready;
      await waitFor(() => joins.includes('carl'), { message: 'olga sees carl' });
      assert.deepEqual(joins, ['carl'], 'bea is not announced');
      assert.deepEqual((await obs.presence(scope)).map((x) => x.user).sort(), ['carl', 'olga']);

      const got = new Promise((res) => subBlind.once('event', res));
      assert.equal((await server.apiEmit({ scope, data: { n: 1 } })).status, 202);
      assert.deepEqual((await got).data, { n: 1 });
      assert.deepEqual(blindJoins, [], 'a blind subscription gets no join');
      assert.deepEqual(subBlind.presence, []);
    } finally {
      await server.stop();
    }
  });

  test('updatePresence: others get one update and see the new meta; a resubscribe sends it; blind ones are refused', async () => {
    const server = await startServer({ demo: true });
    try {
      const scope = 'room:upd';
      const ana = open(server, { token: await server.demoToken('ana') });
      const subAna = ana.subscribe(scope, { meta: { name: 'ana' } });
      await subAna.ready;
      const bo = open(server, { token: await server.demoToken('bo') });
      const subBo = bo.subscribe(scope, { meta: { name: 'bo' } });
      await subBo.ready;
      await waitFor(() => subAna.connections.length === 2, { message: 'ana sees bo' });
      const updates = [];
      subBo.on('update', (m) => updates.push(m));
      const anaUpdates = [];
      subAna.on('update', (m) => anaUpdates.push(m));

      const reply = await subAna.updatePresence({ name: 'ana', typing: true });
      assert.deepEqual(reply, { op: 'presence_updated', id: reply.id, scope });
      const own = subAna.connections.find((c) => c.session === ana.welcome.session);
      assert.deepEqual(own.meta, { name: 'ana', typing: true }, 'the own entry changes at once');
      await waitFor(() => updates.length === 1, { message: 'bo gets the update' });
      assert.equal(updates[0].conn.session, ana.welcome.session);
      assert.deepEqual(updates[0].conn.meta, { name: 'ana', typing: true });
      const seen = subBo.connections.find((c) => c.session === ana.welcome.session);
      assert.deepEqual(seen.meta, { name: 'ana', typing: true }, "bo's presence view has it");
      assert.deepEqual(subAna.meta, { name: 'ana', typing: true });
      // the server's list too
      const list = await bo.presence(scope);
      assert.deepEqual(list.find((c) => c.session === ana.welcome.session).meta, { name: 'ana', typing: true });

      // a burst: the last value arrives last
      for (let i = 0; i < 50; i++) subAna.updatePresence({ name: 'ana', x: i });
      await waitFor(() => updates.length > 1 && updates[updates.length - 1].conn.meta.x === 49,
        { message: 'bo gets the last value of the burst' });
      assert.ok(updates.length <= 5, `${updates.length} updates of a burst of 50 (20/s)`);
      assert.deepEqual(anaUpdates, [], 'no update of its own');

      // after resubscribing (a new connection of the client, which resumes
      // its session), the meta stays
      const { connects } = ana;
      ana._ws.close();
      await waitFor(() => ana.connects > connects && ana.status === 'open' && subAna.state === 'subscribed',
        { message: 'ana is back' });
      await waitFor(() => (subBo.connections.find((c) => c.session === ana.welcome.session) || {}).meta?.x === 49,
        { message: "ana's new connection joined with the latest meta" });

      const blind = subBo.client.subscribe('room:blind', { presence: false });
      await blind.ready;
      await assert.rejects(blind.updatePresence({ a: 1 }), (e) => e.code === 'not_found');
    } finally {
      await server.stop();
    }
  });
});

// ---------------------------------------------------------------------------

describe('recovery against a real server (--history; connections cut by a proxy)', () => {
  after(closeAll);

  /** What the app sees of a subscription: event seqs and data, outcomes. */
  function watch(sub) {
    const w = { seqs: [], data: [], recovered: [], refetch: [], dropped: [], subscribes: 0 };
    sub.on('event', (e) => {
      w.seqs.push(e.seq);
      w.data.push(e.data);
    });
    sub.on('recovered', (i) => w.recovered.push(i));
    sub.on('refetch', (i) => w.refetch.push(i));
    sub.on('dropped', (d) => w.dropped.push(d));
    sub.on('subscribed', () => w.subscribes++);
    return w;
  }
  /** Emits `n` events into `scope` over HTTP (one batch); resolves with their seqs. */
  async function emitN(server, scope, n, tag) {
    const r = await server.apiEmit(Array.from({ length: n }, (_, i) => ({ scope, data: { tag, i } })));
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const seqs = (Array.isArray(r.body) ? r.body : r.body.results ?? r.body.seqs ?? []).map((x) => (typeof x === 'number' ? x : x.seq));
    return seqs;
  }
  const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
  /** Cuts the client's connection at the proxy and keeps it out while `fn` runs. */
  async function away(proxy, client, fn) {
    const { connects } = client;
    proxy.block();
    assert.ok(proxy.kill() >= 1, 'a proxied connection to cut');
    await waitFor(() => client.status === 'reconnecting', { timeout: 3000, message: 'the client noticed' });
    await fn();
    proxy.unblock();
    await waitFor(() => client.connects > connects && client.status === 'open', { timeout: 5000, message: 'reconnected' });
  }

  test('a cut connection: the N events emitted while away come once, in order, then live ones; recovered', async () => {
    const server = await startServer({ demo: true }); // demo: room:*=1000/3600s
    const proxy = await startProxy(server);
    try {
      const frames = [];
      const c = open(server, { url: proxy.ws, token: await server.demoToken('rita'), WebSocket: recordingWebSocket(frames) });
      const scope = 'room:recover';
      const sub = c.subscribe(scope, { meta: { n: 1 } });
      const w = watch(sub);
      const reply = await sub.ready;
      assert.equal(typeof reply.epoch, 'string', 'subscribed carries the epoch');
      assert.equal(sub.epoch, reply.epoch);
      const before = await emitN(server, scope, 3, 'before');
      await waitFor(() => w.seqs.length === 3, { message: 'live events' });
      assert.deepEqual(w.seqs, before);
      assert.equal(sub.seq, before[2]);

      const N = 25;
      let missed;
      await away(proxy, c, async () => {
        missed = await emitN(server, scope, N, 'away');
      });
      assert.deepEqual(missed, range(before[2] + 1, before[2] + N));
      await waitFor(() => w.recovered.length === 1, { timeout: 5000, message: 'recovered' });
      const sent = frames.map((f) => JSON.parse(f)).filter((m) => m.op === 'subscribe');
      assert.deepEqual(sent.at(-1).since, { seq: before[2], epoch: reply.epoch }, 'the resubscribe carries since');
      assert.deepEqual(w.recovered[0], {
        scope, epoch: reply.epoch, since: before[2], seq: missed.at(-1), missed: N, trigger: 'reconnect',
      });
      await waitFor(() => w.seqs.length === 3 + N, { message: 'the missed events' });
      const live = await emitN(server, scope, 5, 'live');
      await waitFor(() => w.seqs.length === 3 + N + 5, { message: 'live events after the replay' });
      assert.deepEqual(w.seqs, [...before, ...missed, ...live], 'no gap, no duplicate, in order');
      assert.deepEqual(w.data.slice(3, 3 + N).map((d) => d.i), range(0, N - 1));
      assert.deepEqual(w.refetch, []);
      assert.equal(sub.recovered, true);
      assert.equal(sub.epoch, reply.epoch);
      assert.equal(sub.seq, live.at(-1));

      // twice more, quickly: each cut recovers from where the last one left
      for (let k = 0; k < 2; k++) {
        let more;
        await away(proxy, c, async () => { more = await emitN(server, scope, 7, `again${k}`); });
        await waitFor(() => w.seqs.at(-1) === more.at(-1), { timeout: 5000, message: `recovery ${k + 2}` });
      }
      assert.deepEqual(w.seqs, range(before[0], w.seqs.at(-1)));
      assert.equal(w.recovered.length, 3);
      assert.deepEqual(w.refetch, []);
    } finally {
      await proxy.close();
      await server.stop();
    }
  });

  test('recover: false sends no since: the events emitted while away are a gap, and refetch says so', async () => {
    const server = await startServer({ demo: true });
    const proxy = await startProxy(server);
    try {
      const c = open(server, { url: proxy.ws, token: await server.demoToken('nora'), recover: false });
      const scope = 'room:norecover';
      const sub = c.subscribe(scope);
      const w = watch(sub);
      await sub.ready;
      const first = await emitN(server, scope, 2, 'a');
      await waitFor(() => w.seqs.length === 2);
      let missed;
      await away(proxy, c, async () => { missed = await emitN(server, scope, 10, 'away'); });
      await waitFor(() => w.refetch.length === 1, { timeout: 5000, message: 'refetch' });
      assert.equal(w.refetch[0].reason, 'unrecovered');
      assert.equal(w.refetch[0].seq, missed.at(-1));
      const live = await emitN(server, scope, 2, 'live');
      await waitFor(() => w.seqs.length === 4);
      assert.deepEqual(w.seqs, [...first, ...live], 'the missed ones never came');
      assert.deepEqual(w.recovered, []);
    } finally {
      await proxy.close();
      await server.stop();
    }
  });

  test('refetch when the history no longer holds what was missed, or the scope keeps none', async () => {
    const server = await startServer({ demo: true, args: ['--history', 'room:*=10'] });
    const proxy = await startProxy(server);
    try {
      const c = open(server, { url: proxy.ws, token: await server.demoToken('hana') });
      const room = c.subscribe('room:small');
      const doc = c.subscribe('doc:nohistory');
      const wr = watch(room);
      const wd = watch(doc);
      const [rr, rd] = await Promise.all([room.ready, doc.ready]);
      const pre = await emitN(server, 'room:small', 3, 'pre');
      await waitFor(() => wr.seqs.length === 3);
      let missed;
      let missedDoc;
      await away(proxy, c, async () => {
        missed = await emitN(server, 'room:small', 50, 'away'); // only the last 10 are kept
        missedDoc = await emitN(server, 'doc:nohistory', 4, 'away');
      });
      await waitFor(() => wr.refetch.length === 1 && wd.refetch.length === 1, { timeout: 5000, message: 'refetch' });
      assert.deepEqual(wr.refetch[0], {
        scope: 'room:small', epoch: rr.epoch, seq: missed.at(-1), reason: 'history', trigger: 'reconnect',
        previous: { epoch: rr.epoch, seq: pre.at(-1) },
      });
      assert.equal(wd.refetch[0].reason, 'history');
      assert.equal(wd.refetch[0].seq, missedDoc.at(-1));
      assert.equal(wd.refetch[0].epoch, rd.epoch);
      assert.equal(room.recovered, false);
      assert.equal(room.seq, missed.at(-1), 'placed where the scope stands');
      await sleep(100);
      assert.deepEqual(wr.seqs, pre, 'nothing replayed');
      const live = await emitN(server, 'room:small', 3, 'live');
      await waitFor(() => wr.seqs.length === 6);
      assert.deepEqual(wr.seqs, [...pre, ...live]);
      assert.deepEqual(wr.recovered, []);
    } finally {
      await proxy.close();
      await server.stop();
    }
  });

  test('after a server restart the epoch is new: refetch, then live events', async () => {
    let server = await startServer({ demo: true, jwtSecret: SECRET });
    const port = server.port;
    try {
      const c = open(server, { token: await server.demoToken('otto'), reconnect: { initialDelay: 50, maxDelay: 300, factor: 2 } });
      const scope = 'room:restart-epoch';
      const sub = c.subscribe(scope);
      const w = watch(sub);
      const first = await sub.ready;
      const pre = await emitN(server, scope, 4, 'pre');
      await waitFor(() => w.seqs.length === 4);
      await server.kill();
      await waitFor(() => c.status === 'reconnecting');
      server = await startServer({ port, demo: true, jwtSecret: SECRET });
      await waitFor(() => w.refetch.length === 1, { timeout: 8000, message: 'refetch after the restart' });
      const r = w.refetch[0];
      assert.equal(r.reason, 'epoch');
      assert.equal(r.trigger, 'reconnect');
      assert.deepEqual(r.previous, { epoch: first.epoch, seq: pre.at(-1) });
      assert.notEqual(r.epoch, first.epoch);
      assert.equal(sub.epoch, r.epoch);
      const live = await emitN(server, scope, 3, 'live');
      await waitFor(() => w.seqs.length === 7, { message: 'live events in the new epoch' });
      assert.deepEqual(w.seqs, [...pre, ...live]);
      assert.deepEqual(w.recovered, []);
    } finally {
      await server.stop();
    }
  });

  test('a dropped notice is recovered on the live subscription: every event, in order, no gap', async () => {
    const MAX = 4;
    const server = await startServer({ demo: true, args: ['--maxsize', String(MAX), '--history', 'room:*=5000'] });
    try {
      const c = open(server, { token: await server.demoToken('dora') });
      const scope = 'room:burst';
      const sub = c.subscribe(scope);
      const w = watch(sub);
      const reply = await sub.ready;
      const reconnects = c.connects;
      // A batch larger than maxsize is queued at once: the queue overflows
      // whatever the client reads, so every batch makes a `dropped`.
      const all = [];
      for (let b = 0; b < 4; b++) {
        all.push(...await emitN(server, scope, 60, `b${b}`));
        await waitFor(() => w.seqs.at(-1) === all.at(-1), { timeout: 5000, message: `batch ${b} complete` });
      }
      assert.deepEqual(all, range(reply.seq + 1, reply.seq + 240));
      assert.deepEqual(w.seqs, all, 'every event, in order, once');
      assert.deepEqual(w.data.map((d) => `${d.tag}/${d.i}`), [0, 1, 2, 3].flatMap((b) => range(0, 59).map((i) => `b${b}/${i}`)));
      assert.ok(w.dropped.length >= 4, `a dropped notice per batch (${w.dropped.length})`);
      assert.ok(w.dropped.every((d) => d.recovering === true));
      assert.equal(w.recovered.length, w.dropped.length);
      assert.ok(w.recovered.every((r) => r.trigger === 'dropped' && r.epoch === reply.epoch));
      assert.deepEqual(w.refetch, []);
      assert.equal(c.connects, reconnects, 'on the same connection');
      assert.equal(sub.state, 'subscribed');
      assert.equal(users(sub), 'dora:1');
    } finally {
      await server.stop();
    }
  });

  test('a dropped notice the history cannot cover: refetch, and the subscription goes on from where the scope stands', async () => {
    const server = await startServer({ demo: true, args: ['--maxsize', '4', '--history', 'room:*=10'] });
    try {
      const c = open(server, { token: await server.demoToken('ivy') });
      const sub = c.subscribe('room:short');
      const w = watch(sub);
      const reply = await sub.ready;
      const burst = await emitN(server, 'room:short', 60, 'burst'); // 4 delivered, the rest dropped; 10 kept
      await waitFor(() => w.refetch.length === 1, { message: 'refetch' });
      const r = w.refetch[0];
      assert.deepEqual([r.reason, r.trigger, r.epoch], ['history', 'dropped', reply.epoch]);
      assert.equal(r.seq, burst.at(-1));
      assert.deepEqual(w.dropped.map((d) => d.recovering), [true]);
      assert.deepEqual(w.recovered, []);
      assert.equal(sub.seq, burst.at(-1));
      const live = await emitN(server, 'room:short', 3, 'live');
      await waitFor(() => w.seqs.at(-1) === live.at(-1), { message: 'live events after the refetch' });
      assert.deepEqual(w.seqs.slice(-3), live);
      assert.ok(w.seqs.every((s, i) => i === 0 || s > w.seqs[i - 1]), 'in order');
    } finally {
      await server.stop();
    }
  });

  test('without recovery the same bursts leave gaps (what the test above would see)', async () => {
    const server = await startServer({ demo: true, args: ['--maxsize', '4', '--history', 'room:*=5000'] });
    try {
      const c = open(server, { token: await server.demoToken('gus'), recover: false });
      const sub = c.subscribe('room:burst');
      const w = watch(sub);
      await sub.ready;
      const seqs = await emitN(server, 'room:burst', 60, 'x');
      await waitFor(() => w.refetch.length === 1, { message: 'refetch after dropped' });
      assert.equal(w.refetch[0].trigger, 'dropped');
      assert.ok(w.seqs.length < seqs.length, `a gap: ${w.seqs.length} of ${seqs.length}`);
    } finally {
      await server.stop();
    }
  });

  test('a late joiner with since {seq: 0} gets the whole kept history, then live events', async () => {
    const server = await startServer({ demo: true });
    try {
      const scope = 'room:late';
      const early = await emitN(server, scope, 20, 'early'); // nobody subscribed: kept
      assert.deepEqual(early, range(1, 20));
      const c = open(server, { token: await server.demoToken('lea') });
      const sub = c.subscribe(scope, { since: { seq: 0 } });
      const w = watch(sub);
      const reply = await sub.ready;
      assert.equal(reply.recovered, true);
      await waitFor(() => w.seqs.length === 20, { message: 'the history' });
      assert.deepEqual(w.seqs, early);
      assert.deepEqual(w.recovered.map((r) => [r.since, r.seq, r.trigger]), [[0, 20, 'since']]);
      const live = await emitN(server, scope, 2, 'live');
      await waitFor(() => w.seqs.length === 22);
      assert.deepEqual(w.seqs, [...early, ...live]);
      // from a saved point: only what came after it
      const d = open(server, { token: await server.demoToken('max') });
      const sub2 = d.subscribe(scope, { since: { seq: 15, epoch: reply.epoch } });
      const w2 = watch(sub2);
      await sub2.ready;
      await waitFor(() => w2.seqs.length === 7);
      assert.deepEqual(w2.seqs, range(16, 22));
    } finally {
      await server.stop();
    }
  });
});
