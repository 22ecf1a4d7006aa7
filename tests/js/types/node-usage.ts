// Node usage of the scopecast package (web/scopecast.d.ts) with the `ws` package
// and @types/ws 8: types.test.mjs and package.test.mjs compile it with
// `tsc --noEmit --strict` where `scopecast` resolves to the client.
import WebSocket from 'ws';
import connect, {
  connect as namedConnect, ScopecastError, Subscription, groupPresence, backoffDelay, tokenExp,
  DEFAULTS, PROTOCOL,
  type ConnectOptions, type EventMessage, type PresenceUser, type Status, type StatusInfo,
  type Welcome, type SubscribedMessage, type WebSocketConstructor,
  type RecoveredInfo, type RefetchInfo, type Since, type SubscribeOptions, type DroppedMessage,
} from 'scopecast';

interface Doc {
  title: string;
  rev: number;
}

async function main(): Promise<void> {
  const options: ConnectOptions = {
    WebSocket,
    token: async () => 'jwt',
    reconnect: { initialDelay: 100, maxDelay: 5000, factor: 2 },
    pingInterval: 0,
    requestTimeout: 5000,
    connectTimeout: 2000,
    resume: true,
    recover: true,
    protocols: [PROTOCOL],
  };
  const client = connect('ws://127.0.0.1:8080/ws', options);
  // The common one-liner: the ws class straight into the options.
  const other = namedConnect('ws://127.0.0.1:8080/ws', { WebSocket, token: 'jwt' });
  const ctor: WebSocketConstructor = WebSocket;
  other.close();

  client.on('status', (status: Status, info: StatusInfo) => {
    if (status === 'reconnecting') console.log(info.attempt, info.delay, info.code);
  });
  client.on('welcome', (w: Welcome) => {
    const limit: number | null = w.maxmessage;
    const rt: string | null = w.resume_token;
    const resumed: boolean | null = w.resumed;
    console.log(w.session, w.user, limit, rt, resumed);
  });
  client.on('error', (err: ScopecastError) => console.log(err.code, err.message));

  const sub: Subscription<Doc> = client.subscribe<Doc>('doc:1', { meta: { name: 'ana' }, echo: true });
  const blind = client.subscribe('news', { presence: false });
  const enabled: boolean = blind.presenceEnabled;
  sub.on('event', (ev: EventMessage<Doc>) => {
    if (ev.data) console.log(ev.seq, ev.data.title.toUpperCase(), ev.data.rev + 1);
  });
  sub.on('presence', (users: PresenceUser[]) => console.log(users.map((u) => u.user ?? 'anon')));
  sub.on('subscribed', (info) => console.log(info.resubscribed, info.seq, info.epoch, info.recovered === true));

  // Recovery: a late joiner replays the kept history; the outcome is told.
  const since: Since = { seq: 0 };
  const subOpts: SubscribeOptions = { since, recover: true, presence: false };
  const late = client.subscribe<Doc>('doc:2', subOpts);
  late.on('recovered', (info: RecoveredInfo) => {
    const n: number = info.missed;
    console.log(info.scope, info.epoch, info.since, info.seq, n, info.trigger === 'reconnect');
  });
  late.on('refetch', (info: RefetchInfo) => {
    if (info.reason === 'epoch' || info.reason === 'history' || info.reason === 'unrecovered') {
      console.log(info.trigger, info.seq, info.epoch, info.previous.seq, info.previous.epoch);
    }
  });
  late.on('dropped', (msg: DroppedMessage) => console.log(msg.count, msg.recovering));
  const where: { seq: number; epoch: string | null; recovered: boolean | null; recover: boolean } =
    { seq: late.seq, epoch: late.epoch, recovered: late.recovered, recover: late.recover };
  // resume from a saved position, e.g. after a reload
  client.subscribe('doc:3', { since: { seq: where.seq, epoch: where.epoch } });
  sub.on('closed', (msg) => console.log(msg.reason, msg.error?.code));
  const off = sub.on('error', (err) => console.log(err.code));
  off();

  try {
    const reply: SubscribedMessage = await sub.ready;
    const epoch: string | undefined = reply.epoch;
    const recovered: boolean | undefined = reply.recovered;
    console.log(reply.seq, reply.presence.length, enabled, epoch, recovered);
  } catch (err) {
    if (err instanceof ScopecastError && err.code === 'unauthorized') client.close();
  }

  const { seq } = await client.emit<Doc>('doc:1', { data: { title: 't', rev: 1 }, paths: ['title'] }, { timeout: 1000 });
  const rtt: number = await client.ping();
  const conns = await client.presence('doc:1');
  const raw = await client.request<{ op: string; seq: number }>({ op: 'emit', scope: 'doc:1' });
  console.log(seq, rtt, groupPresence(conns, client.welcome?.session).length, raw.seq,
    backoffDelay(3, DEFAULTS.reconnect), tokenExp(null), ctor);
  await sub.unsubscribe();
  client.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
