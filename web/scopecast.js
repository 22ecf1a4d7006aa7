// scopecast.js — browser (and Node) client for the scopecast wire protocol v1.
//
// One ES module, no dependencies, no build step. See scopecast.d.ts for the
// typed API and docs/PROTOCOL.md for the protocol.
//
//   import { connect } from '/scopecast.js';
//   const client = connect('/ws', { token });
//   const sub = client.subscribe('room:lobby', { meta: { name: 'ana' } });
//   sub.on('event', (ev) => console.log(ev.data));
//   sub.on('presence', (users) => render(users));
//   sub.updatePresence({ name: 'ana', typing: true }); // others get 'update'
//   await sub.ready; // rejects when it cannot be made yet (see Subscription)
//   await client.emit('room:lobby', { data: { hello: 'world' } });
//
// Recovery: where the server keeps a scope's history (--history), a
// subscription gets back what it missed over a reconnect or a `dropped`
// notice ('recovered'), or is told to reload its state ('refetch'):
//   const doc = client.subscribe('doc:1', { since: { seq: 0 } }); // + history
//   doc.on('refetch', () => reload());
//
// In Node (before 22, which has a global WebSocket) pass the `ws` package:
// connect('ws://host:8080/ws', { WebSocket }). Copied into a project on its
// own, save this file as scopecast.mjs (and the types as scopecast.d.mts):
// under a package.json without "type": "module" a .js file is CommonJS.

export const PROTOCOL = 'scopecast.v1';

export const DEFAULTS = Object.freeze({
  reconnect: Object.freeze({ initialDelay: 500, maxDelay: 30000, factor: 2 }),
  pingInterval: 15000,
  requestTimeout: 10000,
  refreshBefore: 60000,
});

const WS_OPEN = 1;
const CLOSE_UNAUTHORIZED = 4401;

/** Error of a request or of the connection; `code` is the protocol's error
 *  code, or 'timeout' / 'disconnected' / 'too_large' for local failures. */
export class ScopecastError extends Error {
  constructor(code, message, details = {}) {
    super(message || code);
    this.name = 'ScopecastError';
    this.code = code;
    if (details.id !== undefined) this.id = details.id;
    if (details.op !== undefined) this.op = details.op;
    if (details.scope !== undefined) this.scope = details.scope;
  }
}

/**
 * Delay before reconnect attempt `attempt` (0 for the first retry):
 * exponential backoff with full jitter, capped.
 * Returns a number of milliseconds in [0, min(maxDelay, initialDelay * factor^attempt)].
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const base = num(opts.initialDelay, DEFAULTS.reconnect.initialDelay);
  const cap = num(opts.maxDelay, DEFAULTS.reconnect.maxDelay);
  const factor = num(opts.factor, DEFAULTS.reconnect.factor);
  const n = Math.max(0, Math.floor(num(attempt, 0)));
  const ceiling = Math.max(0, Math.min(cap, base * Math.pow(factor, n)));
  const r = Math.min(1, Math.max(0, Number(random()) || 0));
  return Math.floor(r * ceiling);
}

function num(v, dflt) {
  return typeof v === 'number' && Number.isFinite(v) ? v : dflt;
}

/**
 * Groups a presence list (conn objects) by user. Anonymous connections
 * (user null) are each their own group. Groups are ordered by their oldest
 * connection, connections within a group by `at`.
 */
export function groupPresence(conns, selfSession = null) {
  const groups = new Map();
  const sorted = [...conns].sort((a, b) => (a.at ?? 0) - (b.at ?? 0) ||
    String(a.session).localeCompare(String(b.session)));
  for (const c of sorted) {
    const key = c.user == null ? '\u0000' + c.session : 'u:' + c.user;
    let g = groups.get(key);
    if (!g) {
      g = { user: c.user ?? null, connections: [], self: false };
      groups.set(key, g);
    }
    g.connections.push(c);
    if (selfSession != null && c.session === selfSession) g.self = true;
  }
  return [...groups.values()];
}

/** Minimal event emitter: on() returns a function that removes the listener. */
class Emitter {
  constructor() {
    this._listeners = new Map();
  }
  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }
  once(type, fn) {
    const off = this.on(type, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }
  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
    return this;
  }
  _emit(type, ...args) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        // A failing listener must not break the client's state machine.
        setTimeout(() => { throw err; }, 0);
      }
    }
  }
}

/**
 * One subscription to a scope; survives reconnects until unsubscribed or
 * closed by the server.
 *
 * `ready` resolves with the `subscribed` reply. It rejects with a
 * ScopecastError when the subscription cannot be made now:
 * - a connection attempt fails before the server's welcome ('disconnected':
 *   unreachable, refused, connectTimeout, token function failed), or no
 *   reply comes in time ('timeout'): the client keeps trying, and `ready` is
 *   replaced by a new promise that resolves with the next `subscribed`;
 * - the server rejects the token (close 4401, 'unauthorized'; not retried),
 *   the client is closed or the subscription unsubscribed ('disconnected'),
 *   or the server refuses the subscribe (forbidden, bad_request, limit,
 *   too_large...): for good.
 * A connection lost after the welcome rejects nothing while the next attempt
 * succeeds. Once resolved, `ready` stays resolved (see the 'subscribed'
 * event for later resubscribes).
 *
 * Recovery (options `recover`, default true, and `since`): the subscription
 * keeps the seq of the last event it delivered (`seq`) and the scope's
 * `epoch`. A resubscribe after a reconnect carries `since` {seq, epoch}; after
 * a `dropped` notice the scope is subscribed again with `since` on the same
 * connection, and its pushes are ignored until the reply (the server
 * repositions the subscription). A reply with recovered:true emits
 * 'recovered' and the missed events follow as 'event's, in order, none twice;
 * recovered:false (history exceeded, a new epoch after a restart), or a
 * resubscribe that could not carry `since`, emits 'refetch': reload the
 * state. The app's own `since` (e.g. {seq: 0}: the whole kept history, for a
 * late joiner) goes with the first subscribe.
 */
export class Subscription extends Emitter {
  constructor(client, scope, opts) {
    super();
    this.client = client;
    this.scope = scope;
    this.meta = opts.meta ?? null;
    this.echo = !!opts.echo;
    /** false for `presence: false`: a blind subscription, invisible to
     *  others, that gets no presence (join, leave, list) at all. */
    this.presenceEnabled = opts.presence !== false;
    /** Recovery (docs/PROTOCOL.md "History and recovery"): after a
     *  reconnect or a `dropped` notice the subscribe carries `since` (the
     *  last delivered seq and the epoch), so that the server replays what
     *  was missed. `recover: false` (here or in connect()): never. */
    this.recover = (opts.recover ?? client.options.recover) !== false;
    const since = validSince(opts.since);
    if (opts.since != null && !since) {
      throw new TypeError(`subscribe ${scope}: since must be {seq: integer >= 0, epoch?: string}`);
    }
    /** The `since` asked for by the app, sent with the first subscribe. */
    this._since = since;
    /** The seq of the last event delivered (or where the last `subscribed`
     *  placed the subscription when nothing was delivered since). */
    this.seq = since ? since.seq : 0;
    /** The scope's epoch from the last `subscribed` reply (null before the
     *  first, or from a server without history support). */
    this.epoch = since?.epoch ?? null;
    /** The outcome of the last subscribe sent with `since`: true (the
     *  missed events follow), false (refetch), null (none was sent). */
    this.recovered = null;
    /** 'pending' | 'subscribing' | 'subscribed' | 'closed' */
    this.state = 'pending';
    this.closeReason = null;
    this._conns = new Map(); // session -> conn
    this._presence = null; // cached grouped view
    this._subscribedOnce = false;
    // The `since` of the subscribe on its way ({seq, epoch, trigger}), null
    // when it carries none.
    this._sentSince = null;
    // A subscribe with `since` sent on the live subscription after a
    // `dropped` notice: the scope's pushes are ignored until its reply.
    this._refilling = false;
    // Events with a seq up to this one are duplicates (replayed or queued
    // from before the seam) and are skipped, until a later one arrives.
    this._skipUpTo = null;
    this._armReady();
  }

  /** true until unsubscribed or closed for good. */
  get active() {
    return this.state !== 'closed';
  }

  /** Live presence grouped by user: [{user, connections:[conn...], self}]. */
  get presence() {
    if (!this._presence) {
      this._presence = groupPresence(this._conns.values(), this.client.welcome?.session ?? null);
    }
    return this._presence;
  }

  /** Flat list of the connections in the scope (self included). */
  get connections() {
    return [...this._conns.values()];
  }

  /** Re-reads presence from the server and rebuilds the view. A blind
   *  subscription (`presence: false`) asks nothing and stays empty. */
  async refreshPresence() {
    if (!this.presenceEnabled) return this.presence;
    const list = await this.client.presence(this.scope);
    if (this.active) this._setPresence(list);
    return this.presence;
  }

  /**
   * Replaces this connection's meta in the scope's presence (the
   * `presence_update` op): the others get an `update` push, and a later
   * (re)subscribe sends the new meta. The own entry of `presence` changes
   * at once. Resolves with the server's `presence_updated` reply; while
   * not subscribed (connecting, reconnecting) the meta is kept and goes
   * with the subscribe, and the promise resolves with null. The server
   * passes on at most 20 updates a second per subscription, the latest
   * last (see docs/PROTOCOL.md), so a cursor stream may call this freely.
   * Rejects with 'not_found' for a blind subscription (`presence: false`)
   * and with 'limit' for a meta over the server's budgets.
   */
  updatePresence(meta, opts = {}) {
    if (!this.active) {
      return Promise.reject(new ScopecastError('disconnected', `${this.scope}: not subscribed`,
        { op: 'presence_update', scope: this.scope }));
    }
    if (!this.presenceEnabled) {
      return Promise.reject(new ScopecastError('not_found',
        `${this.scope}: this subscription has no presence (presence: false)`,
        { op: 'presence_update', scope: this.scope }));
    }
    this.meta = meta ?? {};
    const self = this.client.welcome?.session;
    const own = self != null ? this._conns.get(self) : null;
    if (own) {
      this._conns.set(self, { ...own, meta: this.meta });
      this._presenceChanged();
    }
    if (this.state !== 'subscribed') return Promise.resolve(null); // the subscribe carries it
    return this.client.request({ op: 'presence_update', scope: this.scope, meta: this.meta }, opts);
  }

  unsubscribe() {
    return this.client._unsubscribe(this);
  }

  // ---- internal -----------------------------------------------------------

  /** A new pending `ready` (the first, or the next after a rejection). */
  _armReady() {
    this._readyWaiting = true;
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    this.ready.catch(() => {}); // a rejection nobody awaits is not a crash
  }

  /** Rejects `ready` if it still waits. `again`: the subscription is tried
   *  again, so a new `ready` waits for the next `subscribed`. */
  _failReady(err, again) {
    if (!this._readyWaiting) return;
    this._readyWaiting = false;
    this._rejectReady(err);
    if (again && this.active) this._armReady();
  }

  _setPresence(list) {
    this._conns.clear();
    for (const c of list || []) if (c && c.session != null) this._conns.set(c.session, c);
    this._presenceChanged();
  }

  _presenceChanged() {
    this._presence = null;
    this._emit('presence', this.presence);
  }

  _onSubscribed(msg) {
    const resubscribed = this._subscribedOnce;
    const sent = this._sentSince;
    const refill = this._refilling;
    this._sentSince = null;
    this._refilling = false;
    this._subscribedOnce = true;
    this.state = 'subscribed';
    const seq = typeof msg.seq === 'number' ? msg.seq : 0;
    const epoch = typeof msg.epoch === 'string' ? msg.epoch : null;
    const prev = { seq: this.seq, epoch: this.epoch };
    let outcome = null; // 'recovered' | 'refetch' | null
    let reason = null;
    let trigger = null;
    if (sent) {
      this.recovered = msg.recovered === true;
      trigger = sent.trigger;
      outcome = this.recovered ? 'recovered' : 'refetch';
      reason = sent.epoch != null && epoch !== sent.epoch ? 'epoch' : 'history';
    } else if (resubscribed) {
      // Resubscribed without `since` (recover: false, or a server that
      // names no epoch): whatever was emitted meanwhile is not coming.
      outcome = 'refetch';
      reason = 'unrecovered';
      trigger = refill ? 'dropped' : 'reconnect';
    }
    if (outcome === 'recovered') {
      // The events after sent.seq follow this reply; the ones up to it
      // that still arrive (queued before the seam) are duplicates.
      this.seq = sent.seq;
      this._skipUpTo = sent.seq;
    } else {
      // Placed at the scope's seq: the events after it follow.
      this.seq = seq;
      this._skipUpTo = seq;
    }
    this.epoch = epoch;
    if (!refill || Array.isArray(msg.presence)) this._setPresence(msg.presence);
    // A refill that did not reposition: the join/leave pushes ignored
    // meanwhile (or dropped) still count, so presence is read again.
    if (refill && outcome === 'refetch' && this.presenceEnabled) this.refreshPresence().catch(() => {});
    this._emit('subscribed', { seq, epoch, presence: this.presence, resubscribed, recovered: sent ? this.recovered : null });
    if (outcome === 'recovered') {
      this._emit('recovered', {
        scope: this.scope, epoch, since: sent.seq, seq, missed: Math.max(0, seq - sent.seq), trigger,
      });
    } else if (outcome === 'refetch') {
      this._emit('refetch', { scope: this.scope, epoch, seq, reason, trigger, previous: prev });
    }
    this._readyWaiting = false;
    this._resolveReady(msg);
    // updatePresence() while the subscribe was on its way: send the meta
    // the subscribe did not carry
    if (this._sentMeta !== this.meta && this.presenceEnabled && this.meta != null) {
      this._sentMeta = this.meta;
      this.client.request({ op: 'presence_update', scope: this.scope, meta: this.meta })
        .catch((err) => this._emit('error', err));
    }
  }

  _onPush(msg) {
    // A subscribe with `since` on its way after a `dropped` notice: the
    // server repositions the subscription, and the reply carries the
    // presence as it is then; the scope's pushes until then are ignored.
    if (this._refilling && msg.op !== 'closed') return;
    switch (msg.op) {
      case 'event':
        if (typeof msg.seq === 'number') {
          if (this._skipUpTo != null) {
            if (msg.seq <= this._skipUpTo) break; // delivered already (or before the seam)
            this._skipUpTo = null;
          }
          this.seq = msg.seq;
        }
        this._emit('event', msg);
        break;
      case 'join':
        if (msg.conn && msg.conn.session != null) {
          this._conns.set(msg.conn.session, msg.conn);
          this._emit('join', msg);
          this._presenceChanged();
        }
        break;
      case 'leave':
        if (msg.conn && msg.conn.session != null) {
          this._conns.delete(msg.conn.session);
          this._emit('leave', msg);
          this._presenceChanged();
        }
        break;
      case 'update': // another connection's new meta (presence_update)
        if (msg.conn && msg.conn.session != null) {
          this._conns.set(msg.conn.session, msg.conn);
          this._emit('update', msg);
          this._presenceChanged();
        }
        break;
      case 'dropped': {
        // Fill the gap from the scope's history: a subscribe with `since`
        // the last delivered seq; 'recovered' or 'refetch' follows.
        const recovering = this.state === 'subscribed' && this._canRecover();
        this._emit('dropped', { ...msg, recovering });
        if (recovering) this.client._sendRefill(this);
        else if (this.state === 'subscribed') {
          this._emit('refetch', {
            scope: this.scope, epoch: this.epoch, seq: this.seq, reason: 'unrecovered', trigger: 'dropped',
            previous: { epoch: this.epoch, seq: this.seq },
          });
        }
        // Joins/leaves may have been lost too: rebuild presence (the reply
        // of a recovering subscribe carries it). Applying later join/leave
        // pushes on top is idempotent.
        if (this.presenceEnabled && !recovering) this.refreshPresence().catch(() => {});
        break;
      }
      case 'closed':
        this._onServerClosed(msg);
        break;
    }
  }

  /** true when a subscribe may carry `since` to recover what was missed. */
  _canRecover() {
    return this.recover && this._subscribedOnce && this.epoch != null;
  }

  /** The `since` for the next subscribe ({seq, epoch, trigger}), or null. */
  _nextSince() {
    if (this._canRecover()) return { seq: this.seq, epoch: this.epoch, trigger: 'reconnect' };
    if (!this._subscribedOnce && this._since) return { ...this._since, trigger: 'since' };
    return null;
  }

  _onServerClosed(msg) {
    this.closeReason = msg.reason;
    if (msg.reason === 'shutdown') {
      // The server is going away; we resubscribe after reconnecting.
      this.state = 'pending';
      this._emit('closed', msg);
      return;
    }
    this._end();
    this._emit('closed', msg);
  }

  _end() {
    this.state = 'closed';
    this.client._subs.delete(this.scope);
    this._conns.clear();
    this._presence = null;
  }
}

/** The client returned by connect(). */
export class ScopecastClient extends Emitter {
  constructor(url, options = {}) {
    super();
    this._wsUrl = wsUrl(url); // throws a TypeError for a URL it cannot open
    this.url = url;
    this.options = options;
    this.reconnectOptions = { ...DEFAULTS.reconnect, ...(options.reconnect || {}) };
    this.pingInterval = options.pingInterval ?? DEFAULTS.pingInterval;
    this.requestTimeout = options.requestTimeout ?? DEFAULTS.requestTimeout;
    this.pingTimeout = options.pingTimeout ?? this.requestTimeout;
    this.connectTimeout = options.connectTimeout ?? this.requestTimeout;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('no WebSocket implementation: pass options.WebSocket');
    }
    this._random = options.random ?? Math.random;
    /** 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.status = 'connecting';
    /** The server's welcome ({session, user, heartbeat, maxsize, maxmessage, version}) or null. */
    this.welcome = null;
    /** Close code that ended the client for good (4401), else null. */
    this.closeCode = null;
    this.attempt = 0; // failed attempts since the last welcome
    this._failures = 0; // attempts that failed before a welcome, since the last one
    this.connects = 0; // WebSocket objects created
    this._ws = null;
    this._subs = new Map(); // scope -> Subscription
    this._pending = new Map(); // id -> request
    this._nextId = 1;
    this._stopped = false;
    this._gen = 0; // connection attempts started
    // The session to resume on the next connection ({session, token}, from
    // the last welcome's resume_token), so a reconnect within the server's
    // presence grace is invisible to others. options.resume === false: never.
    this._resume = null;
    // Across a page reload: the page stores its session when it goes away
    // (pagehide) and the next page of the tab takes it (read once and
    // removed, so a tab duplicated while this one lives gets its own).
    this._resumeStore = null;
    this._resumeKey = 'scopecast.resume:' + this._wsUrl;
    this._onPageHide = null;
    this._initResumeStore(options);
    this._unauthorized = false;
    this._authError = null; // the server's `unauthorized` error before a 4401
    this._retryTimer = null;
    this._connectTimer = null;
    this._refreshTimer = null;
    this._tokenUsed = null; // the token of the current connection
    /** ms before a token's exp at which a token function is asked again */
    this.refreshBefore = options.refreshBefore ?? DEFAULTS.refreshBefore;
    this._pingTimer = null;
    this._onOnline = () => {
      if (this.status === 'reconnecting' && this._retryTimer) this._retryNow();
    };
    if (typeof globalThis.addEventListener === 'function') {
      globalThis.addEventListener('online', this._onOnline);
    }
    // Listeners attached right after connect() still see 'connecting'.
    queueMicrotask(() => {
      if (this.status === 'connecting' && !this._stopped) this._setStatus('connecting', {});
    });
    this._open();
  }

  get connected() {
    return this.status === 'open';
  }

  get subscriptions() {
    return [...this._subs.values()];
  }

  // ---- public API ---------------------------------------------------------

  subscribe(scope, opts = {}) {
    if (this._stopped) throw new ScopecastError('disconnected', 'client is closed');
    const existing = this._subs.get(scope);
    if (existing) return existing; // one subscription per scope (as the server)
    const sub = new Subscription(this, scope, opts);
    this._subs.set(scope, sub);
    if (this.status === 'open') this._sendSubscribe(sub);
    return sub;
  }

  emit(scope, { paths, data, audience } = {}, opts = {}) {
    const req = { op: 'emit', scope };
    if (paths != null) req.paths = paths;
    if (data !== undefined) req.data = data;
    if (audience != null) req.audience = audience;
    return this.request(req, opts).then((r) => ({ scope: r.scope, seq: r.seq }));
  }

  presence(scope, opts = {}) {
    return this.request({ op: 'presence', scope }, opts).then((r) => r.presence || []);
  }

  /** Round trip of the `ping` op; resolves with milliseconds. */
  ping(opts = {}) {
    const t0 = now();
    return this.request({ op: 'ping' }, opts).then(() => now() - t0);
  }

  /**
   * Sends a request and resolves with its reply (rejects with ScopecastError).
   * Made while not connected, it waits for the connection (its timeout runs).
   * A request whose frame is over the server's `maxmessage` (UTF-8 bytes) is
   * not sent: it rejects with 'too_large' (the server would close the
   * connection with 1009).
   */
  request(msg, opts = {}) {
    if (this._stopped) {
      return Promise.reject(new ScopecastError('disconnected', 'client is closed', { op: msg.op }));
    }
    const id = this._nextId++;
    const frame = JSON.stringify({ ...msg, id });
    const timeout = opts.timeout ?? this.requestTimeout;
    return new Promise((resolve, reject) => {
      const req = { id, op: msg.op, scope: msg.scope, frame, resolve, reject, sent: false, timer: null };
      if (timeout > 0 && Number.isFinite(timeout)) {
        req.timer = setTimeout(() => {
          this._pending.delete(id);
          reject(new ScopecastError('timeout', `${msg.op}: no reply within ${timeout} ms`,
            { id, op: msg.op, scope: msg.scope }));
        }, timeout);
      }
      this._pending.set(id, req);
      if (this.status === 'open') this._sendRequest(req);
    });
  }

  /** Stops for good: closes the socket, rejects what is pending. */
  close() {
    if (this._stopped) return;
    this._stop(null, 'closed by the client');
  }

  /** The storage that carries the session over a page reload: options
   *  .resumeStorage (a Storage-like {getItem, setItem, removeItem}; null:
   *  none), by default the page's sessionStorage. */
  _initResumeStore(options) {
    if (options.resume === false) return;
    let store = options.resumeStorage;
    if (store === undefined) {
      try {
        store = globalThis.sessionStorage ?? null;
      } catch {
        store = null; // storage blocked for this page
      }
    }
    if (!store || typeof store.getItem !== 'function') return;
    this._resumeStore = store;
    try {
      const saved = JSON.parse(store.getItem(this._resumeKey) || 'null');
      store.removeItem(this._resumeKey);
      if (saved && typeof saved.session === 'string' && typeof saved.token === 'string') {
        this._resume = { session: saved.session, token: saved.token };
      }
    } catch {
      /* unreadable: a fresh session */
    }
    if (typeof globalThis.addEventListener === 'function') {
      this._onPageHide = () => this.saveResume();
      globalThis.addEventListener('pagehide', this._onPageHide);
    }
  }

  /** Stores the session for the next page of this tab (a reload); called on
   *  pagehide in a browser. Returns whether there was one to store. */
  saveResume() {
    if (!this._resumeStore || !this._resume || this._stopped) return false;
    try {
      this._resumeStore.setItem(this._resumeKey, JSON.stringify(this._resume));
      return true;
    } catch {
      return false;
    }
  }

  _stopResumeStore() {
    if (this._onPageHide && typeof globalThis.removeEventListener === 'function') {
      globalThis.removeEventListener('pagehide', this._onPageHide);
    }
    this._onPageHide = null;
    if (this._resumeStore) {
      try {
        this._resumeStore.removeItem(this._resumeKey);
      } catch {
        /* ignore */
      }
    }
    this._resumeStore = null;
  }

  // ---- connection ---------------------------------------------------------

  _setStatus(status, info) {
    this.status = status;
    this._emit('status', status, info);
  }

  async _open() {
    if (this._stopped) return;
    this._retryTimer = null;
    const gen = ++this._gen;
    let url;
    try {
      const token = await withTimeout(this._token(), this.connectTimeout, 'token');
      if (this._stopped || gen !== this._gen) return;
      this._tokenUsed = token;
      url = this._url(token);
    } catch (err) {
      if (this._stopped || gen !== this._gen) return;
      this._scheduleRetry({ error: err });
      return;
    }
    let ws;
    try {
      ws = new this._WebSocket(url, this.options.protocols ?? [PROTOCOL]);
    } catch (err) {
      this._scheduleRetry({ error: err });
      return;
    }
    this.connects++;
    this._ws = ws;
    this._unauthorized = false;
    this._connectTimer = setTimeout(() => {
      this._connectTimer = null;
      if (this._ws === ws) this._abandon(ws, 4000, 'connect timeout');
    }, this.connectTimeout);
    ws.onmessage = (ev) => {
      if (this._ws === ws) this._onMessage(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._ws === ws) this._onClose(ev.code, ev.reason || '');
    };
    ws.onerror = () => {}; // onclose follows
  }

  async _token() {
    const t = this.options.token;
    if (typeof t === 'function') return t();
    return t;
  }

  _url(token) {
    const resume = this._resume;
    if ((token == null || token === '') && !resume) return this._wsUrl;
    const url = new URL(this._wsUrl);
    if (token != null && token !== '') url.searchParams.set('token', token);
    if (resume) {
      url.searchParams.set('resume', resume.session);
      url.searchParams.set('resume_token', resume.token);
    }
    return url.href;
  }

  /** Drops a socket that may be dead without waiting for its close event. */
  _abandon(ws, code, reason) {
    ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    try {
      ws.close(code, reason);
    } catch {
      /* ignore */
    }
    if (this._ws === ws) this._onClose(code, reason);
  }

  _onClose(code, reason) {
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.onmessage = ws.onclose = null;
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._stopPing();
    this._stopRefresh();
    // Requests already on the wire cannot be answered any more.
    for (const req of [...this._pending.values()]) {
      if (req.sent) this._failRequest(req, new ScopecastError('disconnected',
        `${req.op}: connection lost before the reply`, { id: req.id, op: req.op, scope: req.scope }));
    }
    for (const sub of this._subs.values()) {
      if (sub.state === 'closed') continue;
      sub.state = 'pending';
      sub._refilling = false;
    }
    if (this._stopped) return;
    if (code === CLOSE_UNAUTHORIZED || this._unauthorized) {
      if (!this._unauthorized) this._emit('error', new ScopecastError('unauthorized', reason || 'token rejected'));
      this._stop(CLOSE_UNAUTHORIZED, reason || 'unauthorized');
      return;
    }
    this._scheduleRetry({ code, reason });
  }

  _scheduleRetry(info) {
    if (this._stopped) return;
    const failed = this.status !== 'open'; // this attempt never got a welcome
    const delay = backoffDelay(this.attempt, this.reconnectOptions, this._random);
    this.attempt++;
    this._retryTimer = setTimeout(() => this._open(), delay);
    this._setStatus('reconnecting', { ...info, attempt: this.attempt, delay });
    if (failed) this._attemptFailed(info);
  }

  /** A connection attempt failed: the `ready` of every subscription still
   *  waiting rejects (and is re-armed: the client keeps trying). */
  _attemptFailed(info) {
    const n = ++this._failures;
    const why = info.error ? String(info.error.message || info.error)
      : `close ${info.code}${info.reason ? ' ' + info.reason : ''}`;
    for (const sub of [...this._subs.values()]) {
      if (!sub.active) continue;
      sub._failReady(new ScopecastError('disconnected',
        `${sub.scope}: not subscribed: connection attempt ${n} failed (${why}); retrying in the background`,
        { op: 'subscribe', scope: sub.scope }), true);
    }
  }

  _retryNow() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._open();
  }

  _stop(code, reason) {
    this._stopResumeStore(); // a deliberate end leaves: nothing to resume
    this._stopped = true;
    this.closeCode = code;
    clearTimeout(this._retryTimer);
    clearTimeout(this._connectTimer);
    this._retryTimer = this._connectTimer = null;
    this._stopPing();
    this._stopRefresh();
    if (typeof globalThis.removeEventListener === 'function') {
      globalThis.removeEventListener('online', this._onOnline);
    }
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      try {
        ws.close(1000, 'bye');
      } catch {
        /* ignore */
      }
    }
    for (const req of [...this._pending.values()]) {
      this._failRequest(req, new ScopecastError('disconnected', `${req.op}: client is closed`,
        { id: req.id, op: req.op, scope: req.scope }));
    }
    // Subscriptions never made cannot be made any more.
    const detail = this._authError?.message || reason;
    for (const sub of [...this._subs.values()]) {
      if (!sub.active) continue;
      sub._failReady(code === CLOSE_UNAUTHORIZED
        ? new ScopecastError('unauthorized',
          `${sub.scope}: not subscribed: the server rejected the token (4401)${detail ? ': ' + detail : ''}`,
          { op: 'subscribe', scope: sub.scope })
        : new ScopecastError('disconnected', `${sub.scope}: not subscribed: client is closed`,
          { op: 'subscribe', scope: sub.scope }), false);
    }
    this._setStatus('closed', { code, reason });
  }

  _failRequest(req, err) {
    clearTimeout(req.timer);
    this._pending.delete(req.id);
    req.reject(err);
  }

  _send(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WS_OPEN) return false;
    try {
      ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  _sendRequest(req) {
    const max = this.welcome?.maxmessage;
    if (typeof max === 'number') {
      const size = utf8Length(req.frame);
      if (size > max) {
        this._failRequest(req, new ScopecastError('too_large',
          `${req.op}: the message is ${size} bytes, over the server's limit of ${max} bytes (maxmessage); not sent`,
          { id: req.id, op: req.op, scope: req.scope }));
        return;
      }
    }
    if (this._send(req.frame)) req.sent = true;
  }

  /** The subscribe op of `sub`, with `since` when given. */
  _subscribeMsg(sub, since) {
    const msg = { op: 'subscribe', scope: sub.scope };
    if (sub.meta != null) msg.meta = sub.meta;
    if (sub.echo) msg.echo = true;
    if (!sub.presenceEnabled) msg.presence = false;
    if (since) {
      msg.since = { seq: since.seq };
      if (since.epoch != null) msg.since.epoch = since.epoch;
    }
    return msg;
  }

  _sendSubscribe(sub) {
    sub.state = 'subscribing';
    sub._refilling = false;
    sub._sentSince = sub._nextSince();
    const msg = this._subscribeMsg(sub, sub._sentSince);
    sub._sentMeta = sub.meta;
    this.request(msg).catch((err) => {
      if (!sub.active || this._subs.get(sub.scope) !== sub) return;
      if (err.code === 'disconnected') return; // resubscribed on the next connection
      if (err.code === 'timeout') {
        // No reply on this connection: tell, and try again on the next one.
        if (sub.state === 'subscribing') sub.state = 'pending';
        sub._failReady(err, true);
        sub._emit('error', err);
        return;
      }
      // The server refused (forbidden, bad_request, limit...), or it is over
      // maxmessage (too_large): end it.
      sub._end();
      sub._failReady(err, false);
      sub._emit('error', err);
      sub._emit('closed', { op: 'closed', scope: sub.scope, reason: 'error', error: err });
    });
  }

  /**
   * After a `dropped` notice: subscribe again with `since` the last seq
   * delivered. With recovered:true the server repositions the live
   * subscription (the events after it follow the reply); until the reply
   * the scope's events are ignored (see Subscription._onPush).
   */
  _sendRefill(sub) {
    const since = { seq: sub.seq, epoch: sub.epoch, trigger: 'dropped' };
    sub._refilling = true;
    sub._sentSince = since;
    const ws = this._ws;
    this.request(this._subscribeMsg(sub, since)).catch((err) => {
      if (!sub.active || this._subs.get(sub.scope) !== sub || this._ws !== ws) return;
      if (err.code === 'disconnected') return; // the reconnect recovers
      // No answer: the subscription is still live, but the gap is not filled.
      sub._refilling = false;
      sub._sentSince = null;
      sub._skipUpTo = null;
      sub._emit('error', err);
      sub._emit('refetch', {
        scope: sub.scope, epoch: sub.epoch, seq: sub.seq, reason: 'unrecovered', trigger: 'dropped',
        previous: { epoch: sub.epoch, seq: sub.seq },
      });
    });
  }

  _onWelcome(msg) {
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this.welcome = {
      version: msg.version,
      session: msg.session,
      user: msg.user ?? null,
      heartbeat: msg.heartbeat,
      maxsize: msg.maxsize,
      // The largest request the server takes (bytes); null from a server
      // that does not say (no local check then).
      maxmessage: typeof msg.maxmessage === 'number' ? msg.maxmessage : null,
      // Presence grace: the secret that resumes this session (null when the
      // server has no grace), and whether this connection resumed the
      // previous one (null when it did not ask; false: a fresh session).
      resume_token: typeof msg.resume_token === 'string' ? msg.resume_token : null,
      resumed: typeof msg.resumed === 'boolean' ? msg.resumed : null,
    };
    this._resume =
      this.welcome.resume_token && this.options.resume !== false
        ? { session: this.welcome.session, token: this.welcome.resume_token }
        : null;
    this.attempt = 0;
    this._failures = 0;
    this._setStatus('open', { welcome: this.welcome });
    this._emit('welcome', this.welcome);
    // Resubscribe first, then send requests queued while offline.
    for (const sub of this._subs.values()) if (sub.active) this._sendSubscribe(sub);
    for (const req of this._pending.values()) if (!req.sent) this._sendRequest(req);
    this._startPing();
    this._scheduleRefresh(this._tokenUsed);
  }

  // ---- token refresh --------------------------------------------------------

  /**
   * The server closes a connection with 4401 when its token expires. With a
   * token function, a new token is asked for `refreshBefore` ms before exp
   * and handed over with the `refresh` op, on the same connection.
   */
  _scheduleRefresh(token) {
    this._stopRefresh();
    if (typeof this.options.token !== 'function') return;
    const exp = tokenExp(token);
    if (exp == null) return;
    const delay = Math.max(1000, exp * 1000 - Date.now() - this.refreshBefore);
    const ws = this._ws;
    this._refreshTimer = setTimeout(() => this._refresh(ws), delay);
  }

  async _refresh(ws) {
    this._refreshTimer = null;
    if (this._ws !== ws || this.status !== 'open') return;
    try {
      const token = await withTimeout(this._token(), this.requestTimeout, 'token');
      if (this._ws !== ws) return;
      await this.request({ op: 'refresh', token });
      this._tokenUsed = token;
      this._emit('refreshed', tokenExp(token));
      this._scheduleRefresh(token);
    } catch (err) {
      if (this._ws !== ws) return;
      this._emit('error', err);
      // try again shortly; the server closes at exp if it never works
      this._refreshTimer = setTimeout(() => this._refresh(ws), Math.min(5000, this.refreshBefore / 4));
    }
  }

  _stopRefresh() {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
  }

  _startPing() {
    this._stopPing();
    if (!(this.pingInterval > 0)) return;
    const ws = this._ws;
    const tick = () => {
      if (this._ws !== ws || this.status !== 'open') return;
      this.request({ op: 'ping' }, { timeout: this.pingTimeout })
        .then(() => {
          if (this._ws === ws) this._pingTimer = setTimeout(tick, this.pingInterval);
        })
        .catch((err) => {
          if (err.code === 'timeout' && this._ws === ws) {
            // No pong in time: the link is dead (or the server hangs).
            this._abandon(ws, 4000, 'ping timeout');
          }
        });
    };
    this._pingTimer = setTimeout(tick, this.pingInterval);
  }

  _stopPing() {
    clearTimeout(this._pingTimer);
    this._pingTimer = null;
  }

  _onMessage(data) {
    if (typeof data !== 'string') return; // the protocol is text only
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    this._emit('message', msg);
    if (msg.id != null) {
      const req = this._pending.get(msg.id);
      if (req) {
        clearTimeout(req.timer);
        this._pending.delete(msg.id);
        if (msg.op === 'error') {
          req.reject(new ScopecastError(msg.code || 'error', msg.message,
            { id: msg.id, op: req.op, scope: req.scope }));
        } else {
          // State first (e.g. presence of a subscription), then the promise.
          if (msg.op === 'subscribed') this._routeSubscribed(msg);
          req.resolve(msg);
        }
        return;
      }
      if (msg.op === 'subscribed') this._routeSubscribed(msg); // late reply
      return;
    }
    switch (msg.op) {
      case 'welcome':
        this._onWelcome(msg);
        break;
      case 'error': {
        const err = new ScopecastError(msg.code || 'error', msg.message);
        if (msg.code === 'unauthorized') {
          this._unauthorized = true;
          this._authError = err;
        }
        this._emit('error', err);
        break;
      }
      case 'event':
      case 'join':
      case 'leave':
      case 'update':
      case 'dropped':
      case 'closed': {
        const sub = this._subs.get(msg.scope);
        if (sub && sub.active) sub._onPush(msg);
        break;
      }
      case 'subscribed':
        this._routeSubscribed(msg);
        break;
    }
  }

  _routeSubscribed(msg) {
    const sub = this._subs.get(msg.scope);
    if (sub && sub.active) sub._onSubscribed(msg);
  }

  async _unsubscribe(sub) {
    if (this._subs.get(sub.scope) !== sub || sub.state === 'closed') return;
    const wasOnServer = sub.state === 'subscribed' || sub.state === 'subscribing';
    sub._end();
    sub._failReady(new ScopecastError('disconnected', `${sub.scope}: not subscribed: unsubscribed before the reply`,
      { op: 'subscribe', scope: sub.scope }), false);
    sub._emit('presence', []);
    if (wasOnServer && this.status === 'open') {
      try {
        await this.request({ op: 'unsubscribe', scope: sub.scope });
      } catch (err) {
        // The connection went away: the server dropped the subscription too.
        if (err.code !== 'disconnected') throw err;
      }
    }
  }
}

/** `since` as given to subscribe(): {seq, epoch} (epoch a string or absent),
 *  or null when absent or malformed. */
function validSince(since) {
  if (since == null || typeof since !== 'object') return null;
  const { seq, epoch } = since;
  if (!Number.isSafeInteger(seq) || seq < 0) return null;
  if (epoch != null && typeof epoch !== 'string') return null;
  return { seq, epoch: epoch ?? null };
}

/** Resolves or rejects as `promise` does, or rejects after `ms`. */
function withTimeout(promise, ms, what) {
  if (!(ms > 0) || !Number.isFinite(ms)) return promise;
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new ScopecastError('timeout', `${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** The `exp` claim (seconds) of a JWT, or null (no exp, or not a JWT). */
export function tokenExp(token) {
  if (typeof token !== 'string') return null;
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = typeof atob === 'function' ? atob(b64 + '==='.slice((b64.length + 3) % 4))
      : Buffer.from(b64, 'base64').toString('binary');
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

/** Bytes of `s` in UTF-8, as the WebSocket sends it (a lone surrogate goes
 *  out as U+FFFD: 3 bytes). */
function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length &&
      (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * The WebSocket URL for `url`: ws(s) as is, http(s) as ws(s), a relative
 * URL resolved against the page's location. Anything else is a TypeError,
 * thrown by connect() at once: e.g. '/ws' where there is no page (Node).
 */
function wsUrl(url) {
  if (typeof url !== 'string') {
    throw new TypeError(`connect: the URL must be a string, not ${url === null ? 'null' : typeof url}`);
  }
  let abs;
  if (/^[a-z][a-z0-9+.-]*:/i.test(url)) {
    try {
      abs = new URL(url);
    } catch {
      throw new TypeError(`connect: "${url}" is not a valid URL`);
    }
  } else {
    const loc = globalThis.location;
    if (!loc || !loc.href) {
      throw new TypeError(`connect: "${url}" is a relative URL and there is no page location to resolve it ` +
        'against: pass an absolute URL such as ws://localhost:8080/ws');
    }
    try {
      abs = new URL(url, loc.href);
    } catch {
      throw new TypeError(`connect: "${url}" is not a valid URL`);
    }
  }
  const scheme = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }[abs.protocol];
  if (!scheme) {
    throw new TypeError(`connect: "${url}" is a ${abs.protocol} URL: use ws:, wss:, http: or https:`);
  }
  abs.protocol = scheme;
  abs.hash = ''; // a WebSocket URL has no fragment
  return abs.href;
}

function now() {
  return globalThis.performance && typeof performance.now === 'function' ? performance.now() : Date.now();
}

/**
 * Opens a client. `url`: ws(s)://host/ws (http(s) is taken for ws(s)), or a
 * path such as '/ws' in a page; a URL it cannot open (a path without a page,
 * as in Node, or another scheme) throws a TypeError at once.
 * Options: token (string or function returning one, called on every
 * attempt and, for a token with exp, again refreshBefore ms (default 60 s)
 * before it expires: the new token goes to the server with the refresh op),
 * refreshBefore, reconnect {initialDelay, maxDelay, factor}, pingInterval,
 * pingTimeout, requestTimeout, connectTimeout, resume (default true: a
 * reconnect presents the last welcome's session and resume_token, see
 * docs/PROTOCOL.md "Presence grace"; in a page the session also survives a
 * reload of the tab), resumeStorage (where it waits over a reload: default
 * sessionStorage; null: not kept), recover (default true: subscriptions
 * ask for the events they missed, see Subscription), WebSocket, protocols.
 * The client reconnects for ever (backoff), except after a 4401 (token
 * rejected) or close(). A subscription's `ready` rejects at the first failed
 * connection attempt while it waits, and is re-armed (see Subscription).
 */
export function connect(url, options = {}) {
  return new ScopecastClient(url, options);
}

export default connect;
