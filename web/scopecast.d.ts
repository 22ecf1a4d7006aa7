// Type declarations for scopecast.js (scopecast wire protocol v1).
//
// Next to scopecast.js (or as scopecast.d.mts next to a copy saved as
// scopecast.mjs), or from the npm package `scopecast`. Node:
//   import WebSocket from 'ws';
//   const client = connect('ws://localhost:8080/ws', { WebSocket });

/** The WebSocket subprotocol offered by the client. */
export const PROTOCOL: 'scopecast.v1';

export interface ReconnectOptions {
  /** Base delay in ms of the first retry (default 500). */
  initialDelay?: number;
  /** Cap of the delay in ms (default 30000). */
  maxDelay?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
}

export const DEFAULTS: {
  readonly reconnect: Readonly<Required<ReconnectOptions>>;
  readonly pingInterval: number;
  readonly requestTimeout: number;
  readonly refreshBefore: number;
};

/** The `exp` claim (seconds since the epoch) of a JWT, or null. */
export function tokenExp(token: string | null | undefined): number | null;

/** A listener the client sets on the socket. Declared as a method, so that a
 *  socket whose listeners take a richer event (the DOM's MessageEvent, `ws`'s
 *  WebSocket.MessageEvent) fits under --strict (strictFunctionTypes). */
export type SocketListener<E> = { bivarianceHack(ev: E): void }['bivarianceHack'];

/** What the client uses of a WebSocket: the browser's, or `ws`'s in Node. */
export interface WebSocketLike {
  readonly readyState: number;
  onmessage: SocketListener<{ data: unknown }> | null;
  onclose: SocketListener<{ code: number; reason: string }> | null;
  onerror: SocketListener<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
/** A WebSocket constructor compatible with the browser's: `WebSocket` in a
 *  page (the default), the `ws` package's default export in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export type TokenSource = string | null | undefined | (() => string | null | undefined | Promise<string | null | undefined>);

export interface ConnectOptions {
  /** JWT sent as `?token=`; a function is called before every (re)connect
   * attempt, and again `refreshBefore` ms before the token's `exp`: the new
   * token is handed over with the `refresh` op, on the same connection. */
  token?: TokenSource;
  /** ms before a token's exp to refresh it (default 60000). */
  refreshBefore?: number;
  reconnect?: ReconnectOptions;
  /** ms between `ping` ops once open (default 15000; 0 disables). */
  pingInterval?: number;
  /** ms to wait for a pong before the link counts as dead (default: requestTimeout). */
  pingTimeout?: number;
  /** ms to wait for any reply (default 10000). */
  requestTimeout?: number;
  /** ms for the token function, and from opening the socket to `welcome`
   *  (default: requestTimeout); an attempt over it counts as failed. */
  connectTimeout?: number;
  /** Resume the session on reconnect (default true): the next connection
   *  presents the last welcome's session and resume_token, so within the
   *  server's presence grace (--presence-grace) others see no leave/join. */
  resume?: boolean;
  /** Where the session waits over a page reload (default: the page's
   *  sessionStorage; null: a reload is a new session). The page stores it
   *  on `pagehide`, the next page of the tab reads and removes it. */
  resumeStorage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
  /** Recover missed events (default true): after a reconnect or a `dropped`
   *  notice a subscription subscribes with `since` (its last delivered seq
   *  and epoch) and the server replays what it missed from the scope's
   *  history (server `--history`); see SubscriptionEvents 'recovered' and
   *  'refetch'. false: never send `since` (a subscription's own `recover`
   *  option overrides this). */
  recover?: boolean;
  /** WebSocket implementation (default: globalThis.WebSocket). */
  WebSocket?: WebSocketConstructor;
  /** Subprotocols offered (default ['scopecast.v1']). */
  protocols?: string | string[];
  /** Random source in [0, 1) for the backoff jitter (default Math.random). */
  random?: () => number;
}

/** Protocol error codes, plus local ones: 'timeout' (no reply in time),
 *  'disconnected' (no connection: lost, failed attempt, client closed),
 *  'too_large' (a request over the server's maxmessage, not sent). */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'limit'
  | 'not_found'
  | 'internal'
  | 'timeout'
  | 'disconnected'
  | 'too_large'
  | (string & {});

export class ScopecastError extends Error {
  constructor(code: ErrorCode, message?: string, details?: { id?: number | string; op?: string; scope?: string });
  readonly name: 'ScopecastError';
  /** Protocol error code, or 'timeout' / 'disconnected' / 'too_large' for local failures. */
  code: ErrorCode;
  /** Request id, when the error answers a request. */
  id?: number | string;
  /** Op of the failed request. */
  op?: string;
  scope?: string;
}

/** A connection in a scope's presence. */
export interface Conn {
  session: string;
  user: string | null;
  /** Connected-at, seconds since the epoch. */
  at: number;
  meta: Record<string, unknown>;
}

/** Presence grouped by user; anonymous connections are each their own group. */
export interface PresenceUser {
  user: string | null;
  connections: Conn[];
  /** true when one of the connections is this client's. */
  self: boolean;
}

export interface Welcome {
  version: number;
  session: string;
  user: string | null;
  /** Server heartbeat, seconds. */
  heartbeat: number;
  /** Queue bound per subscription. */
  maxsize: number;
  /** Largest request the server takes, in bytes (`--max-message`); the
   *  client refuses bigger ones itself. null when the server does not say. */
  maxmessage: number | null;
  /** The secret that resumes this session on a reconnect (sent by the
   *  client itself); null when the server has no presence grace. */
  resume_token: string | null;
  /** true: this connection resumed the previous session (same `session`);
   *  false: the resume was refused and this is a fresh session; null: no
   *  resume was asked. */
  resumed: boolean | null;
}

export type Status = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface StatusInfo {
  /** Close code of the socket that went away (4401 for a rejected token). */
  code?: number | null;
  reason?: string;
  /** reconnecting: failed attempts so far, and the delay in ms before the next. */
  attempt?: number;
  delay?: number;
  /** reconnecting: why the attempt failed before a socket existed (e.g. token function threw). */
  error?: unknown;
  /** open: the server's welcome. */
  welcome?: Welcome;
}

export interface EventMessage<T = unknown> {
  op: 'event';
  scope: string;
  seq: number;
  paths: string[];
  origin: string | null;
  /** Omitted when the event had none; null is a value. */
  data?: T;
}
export interface JoinMessage {
  op: 'join';
  scope: string;
  conn: Conn;
  /** The user's first connection in this scope. */
  first: boolean;
}
export interface LeaveMessage {
  op: 'leave';
  scope: string;
  conn: Conn;
  /** The user's last connection left. */
  last: boolean;
}
/** Another connection changed its meta (presence_update). */
export interface UpdateMessage {
  op: 'update';
  scope: string;
  /** The connection with its new meta. */
  conn: Conn;
}
export interface PresenceUpdatedMessage {
  op: 'presence_updated';
  id?: number | string;
  scope: string;
}
export interface DroppedMessage {
  op: 'dropped';
  scope: string;
  count: number;
  /** Set by the client: true when it asks the server for the missed events
   *  (recovery on, an epoch known); 'recovered' or 'refetch' follows.
   *  false: 'refetch' follows at once. */
  recovering?: boolean;
}
export interface ClosedMessage {
  op: 'closed';
  scope: string;
  /** 'error' when the server refused a (re)subscribe; see `error`. */
  reason: 'closed' | 'kicked' | 'shutdown' | 'error';
  error?: ScopecastError;
}
export interface SubscribedMessage {
  op: 'subscribed';
  id?: number | string;
  scope: string;
  /** The scope's seq now. */
  seq: number;
  /** The scope's epoch (a server with history support). */
  epoch?: string;
  /** Only in the reply to a subscribe with `since`: true when the events
   *  after `since.seq` follow, false when they cannot (refetch). */
  recovered?: boolean;
  presence: Conn[];
}
export interface SubscribedInfo {
  /** The scope's seq in the reply. */
  seq: number;
  /** The scope's epoch, or null (a server without history support). */
  epoch: string | null;
  presence: PresenceUser[];
  /** true after a reconnect or a `dropped` notice (see 'recovered' and
   *  'refetch' for whether events were missed). */
  resubscribed: boolean;
  /** The outcome of `since` when the subscribe carried one, else null. */
  recovered: boolean | null;
}
/** Where a subscription resumes: the seq of the last event it has, in
 *  `epoch` (which may be left out with seq 0: the whole kept history). */
export interface Since {
  seq: number;
  epoch?: string | null;
}
/** What made the subscription look for missed events: a reconnect, a
 *  `dropped` notice, or the app's own `since` option. */
export type RecoverTrigger = 'reconnect' | 'dropped' | 'since';
/** The 'recovered' event: nothing was missed. The events of the scope after
 *  `since` up to `seq` (those this connection may see) follow as 'event's,
 *  in order, then live ones; none is delivered twice. */
export interface RecoveredInfo {
  scope: string;
  epoch: string | null;
  /** The last seq the subscription had. */
  since: number;
  /** The scope's seq at the reply: the replay ends there. */
  seq: number;
  /** Events emitted into the scope meanwhile (seq - since); those with an
   *  audience this connection is not in are not replayed. */
  missed: number;
  trigger: RecoverTrigger;
}
/** The 'refetch' event: events were missed and will not come; reload the
 *  state. Events after `seq` follow. */
export interface RefetchInfo {
  scope: string;
  /** The scope's epoch and seq now (where the subscription stands). */
  epoch: string | null;
  seq: number;
  /**
   * - 'history': the server answered recovered:false: its history of the
   *   scope does not hold every missed event (or it keeps none);
   * - 'epoch': recovered:false with a new epoch: the scope started a new
   *   life (a server restart, or all its subscribers and history were gone);
   * - 'unrecovered': no `since` could be sent (recovery off, no epoch known:
   *   a server without history support) or the subscribe with it failed.
   */
  reason: 'history' | 'epoch' | 'unrecovered';
  trigger: RecoverTrigger;
  /** Where the subscription stood before. */
  previous: { epoch: string | null; seq: number };
}

type Off = () => void;

interface Emitter<M> {
  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof M>(type: K, fn: M[K]): Off;
  once<K extends keyof M>(type: K, fn: M[K]): Off;
  off<K extends keyof M>(type: K, fn: M[K]): this;
}

export interface SubscriptionEvents<T = unknown> {
  event: (ev: EventMessage<T>) => void;
  join: (msg: JoinMessage) => void;
  leave: (msg: LeaveMessage) => void;
  /** Another connection of the scope changed its meta (Subscription.updatePresence). */
  update: (msg: UpdateMessage) => void;
  /** Events (or joins/leaves) were lost. Presence is refetched by the
   *  client; with recovery (`msg.recovering`) so are the events, else (or
   *  when that fails) 'refetch' follows. */
  dropped: (msg: DroppedMessage) => void;
  /** A subscribe with `since` (a reconnect, a `dropped` notice, the app's
   *  `since` option) got everything missed: the events follow, in order. */
  recovered: (info: RecoveredInfo) => void;
  /** Events were missed and will not come: reload your state. */
  refetch: (info: RefetchInfo) => void;
  /** The server ended the subscription. With reason 'shutdown' it is kept and resubscribed after reconnecting. */
  closed: (msg: ClosedMessage) => void;
  /** The grouped presence changed. */
  presence: (users: PresenceUser[]) => void;
  /** Every `subscribed` reply: the first one and each one after a reconnect. */
  subscribed: (info: SubscribedInfo) => void;
  /** A (re)subscribe failed. */
  error: (err: ScopecastError) => void;
}

export type SubscriptionState = 'pending' | 'subscribing' | 'subscribed' | 'closed';

export class Subscription<T = unknown> implements Emitter<SubscriptionEvents<T>> {
  private constructor();
  readonly client: ScopecastClient;
  readonly scope: string;
  readonly meta: Record<string, unknown> | null;
  readonly echo: boolean;
  /** false when subscribed with `presence: false` (blind: no presence). */
  readonly presenceEnabled: boolean;
  /** The seq of the last event delivered, or where the last `subscribed`
   *  placed the subscription when none came since. */
  readonly seq: number;
  /** The scope's epoch from the last `subscribed` reply (or the `since`
   *  option), null before it or from a server without history support. */
  readonly epoch: string | null;
  /** Whether a reconnect or a `dropped` notice subscribes with `since`. */
  readonly recover: boolean;
  /** The outcome of the last subscribe that carried `since`, null if none did. */
  readonly recovered: boolean | null;
  readonly state: SubscriptionState;
  /** false once unsubscribed or closed for good. */
  readonly active: boolean;
  /** Reason of the last `closed` push, if any. */
  readonly closeReason: string | null;
  /**
   * Resolves with the `subscribed` reply; once resolved it stays so. Rejects
   * with a ScopecastError when the subscription cannot be made now:
   * - `disconnected`: a connection attempt failed before the server's welcome
   *   (unreachable, refused, `connectTimeout`, the token function failed); the
   *   first failed attempt while `ready` waits rejects it. `timeout`: no
   *   reply in time. In both cases the client keeps reconnecting and the
   *   subscription stays: `ready` is then a new promise that resolves with
   *   the next `subscribed` (or rejects at the next failure), so read
   *   `sub.ready` again to wait for it.
   * - for good: `unauthorized` (the server rejected the token, close 4401;
   *   the client stops and does not retry), `disconnected` (the client was
   *   closed, or unsubscribe() came first), the server's refusal
   *   (forbidden, bad_request, limit) or `too_large` (the subscribe is over
   *   the server's maxmessage): the subscription is ended.
   * A connection lost after the welcome rejects nothing while the next
   * attempt succeeds: the subscribe is sent again.
   */
  readonly ready: Promise<SubscribedMessage>;
  /** Live presence, grouped by user (empty for `presence: false`). */
  readonly presence: PresenceUser[];
  /** Live presence, one entry per connection. */
  readonly connections: Conn[];
  /** Re-reads presence from the server (with `presence: false`: nothing is
   *  asked, it resolves with []; `client.presence(scope)` asks anyway). */
  refreshPresence(): Promise<PresenceUser[]>;
  /** Replaces this connection's meta in the scope's presence (the
   *  presence_update op): the others get an `update`, a later resubscribe
   *  sends it. Resolves with the reply, or null while not subscribed (the
   *  subscribe carries the meta). At most 20 a second reach the others,
   *  the latest last. Rejects 'not_found' for `presence: false`, 'limit'
   *  over the server's meta budgets. */
  updatePresence(meta: Record<string, unknown>, opts?: RequestOptions): Promise<PresenceUpdatedMessage | null>;
  unsubscribe(): Promise<void>;
  on<K extends keyof SubscriptionEvents<T>>(type: K, fn: SubscriptionEvents<T>[K]): Off;
  once<K extends keyof SubscriptionEvents<T>>(type: K, fn: SubscriptionEvents<T>[K]): Off;
  off<K extends keyof SubscriptionEvents<T>>(type: K, fn: SubscriptionEvents<T>[K]): this;
}

export interface ClientEvents {
  status: (status: Status, info: StatusInfo) => void;
  welcome: (welcome: Welcome) => void;
  /** The token was refreshed on the open connection (its new exp, or null). */
  refreshed: (exp: number | null) => void;
  /** Errors not tied to a request, e.g. 'unauthorized' before a 4401 close. */
  error: (err: ScopecastError) => void;
  /** Every message received (parsed). */
  message: (msg: Record<string, unknown> & { op: string }) => void;
}

export interface SubscribeOptions {
  /** Shown to others in presence (conn.meta). */
  meta?: Record<string, unknown> | null;
  /** Also receive the events this connection emits. */
  echo?: boolean;
  /** false: a blind subscription for large broadcast scopes. It receives the
   *  scope's events but no presence (no join/leave, `subscribed` carries
   *  none, not refetched after `dropped`), and others do not see it. Default
   *  true. */
  presence?: boolean;
  /** Resume from here with the first subscribe too: the scope's kept events
   *  after `since.seq` are replayed ({seq: 0}: all of them, e.g. a late
   *  joiner rebuilding state), then 'recovered' or 'refetch' is emitted.
   *  A TypeError is thrown for a malformed one. */
  since?: Since;
  /** Recover after reconnects and `dropped` notices (default: the client's
   *  `recover` option, true). */
  recover?: boolean;
}

export interface EmitOptions<T = unknown> {
  paths?: string[] | null;
  data?: T;
  /** User ids; absent = everyone, [] = nobody. */
  audience?: string[] | null;
}

export interface RequestOptions {
  /** ms; default: the client's requestTimeout. */
  timeout?: number;
}

export class ScopecastClient implements Emitter<ClientEvents> {
  private constructor();
  readonly url: string;
  readonly status: Status;
  /** The last welcome received, or null before the first. */
  readonly welcome: Welcome | null;
  readonly connected: boolean;
  /** 4401 when the server rejected the token (the client stopped), else null. */
  readonly closeCode: number | null;
  /** Failed attempts since the last welcome. */
  readonly attempt: number;
  /** WebSocket objects created so far. */
  readonly connects: number;
  readonly subscriptions: Subscription[];

  /** Subscribes (or returns the existing subscription of that scope). Sent
   *  once the connection is open, and again after every reconnect (with
   *  `since`, see SubscribeOptions.recover). Throws a ScopecastError
   *  'disconnected' once the client is closed, a TypeError for a malformed
   *  `since`. */
  subscribe<T = unknown>(scope: string, opts?: SubscribeOptions): Subscription<T>;
  /** Rejects with 'too_large' (nothing sent, the connection stays) when the
   *  request is over the server's `maxmessage`, in UTF-8 bytes. */
  emit<T = unknown>(scope: string, opts?: EmitOptions<T>, req?: RequestOptions): Promise<{ scope: string; seq: number }>;
  presence(scope: string, req?: RequestOptions): Promise<Conn[]>;
  /** Round trip of a `ping` op in ms. */
  ping(req?: RequestOptions): Promise<number>;
  /** Low level: sends `{...msg, id}` and resolves with the reply. Like every
   *  request, refused locally ('too_large') when over `maxmessage`. */
  request<R = Record<string, unknown>>(msg: { op: string; [k: string]: unknown }, req?: RequestOptions): Promise<R>;
  /** Stops for good. */
  close(): void;
  /** Stores the session for the tab's next page (done on `pagehide` in a
   *  browser; see resumeStorage). Returns whether there was one. */
  saveResume(): boolean;

  on<K extends keyof ClientEvents>(type: K, fn: ClientEvents[K]): Off;
  once<K extends keyof ClientEvents>(type: K, fn: ClientEvents[K]): Off;
  off<K extends keyof ClientEvents>(type: K, fn: ClientEvents[K]): this;
}

/**
 * Opens a client; `url` is ws(s)://host/ws (http(s) is taken for ws(s)) or,
 * in a page, a path like '/ws'. Throws a TypeError at once for a URL it
 * cannot open: a relative one without a page location (Node), another
 * scheme, or no URL at all. The client reconnects for ever with backoff,
 * except after a 4401 (token rejected) or close(); see Subscription.ready
 * for how a subscription reports that it cannot be made.
 */
export function connect(url: string, options?: ConnectOptions): ScopecastClient;
export default connect;

/** Backoff with full jitter: a delay in [0, min(maxDelay, initialDelay * factor^attempt)] ms. */
export function backoffDelay(attempt: number, opts?: ReconnectOptions, random?: () => number): number;

/** Groups a presence list by user (see PresenceUser). */
export function groupPresence(conns: Iterable<Conn>, selfSession?: string | null): PresenceUser[];
