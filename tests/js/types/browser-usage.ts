// Browser usage of the scopecast package (web/scopecast.d.ts), DOM lib and no
// Node types: types.test.mjs compiles it with `tsc --noEmit --strict`.
import { connect, ScopecastError, type PresenceUser } from 'scopecast';

const client = connect('/ws', { token: () => localStorage.getItem('token') });
// The page's own WebSocket passes as an explicit implementation too.
const explicit = connect('wss://example.com/ws', { WebSocket: window.WebSocket });
explicit.close();

const sub = client.subscribe<{ text: string }>('room:lobby', { meta: { name: 'ana' } });
sub.on('event', (ev) => {
  const p = document.createElement('p');
  p.textContent = ev.data?.text ?? '';
  document.body.append(p);
});
sub.on('presence', (users: PresenceUser[]) => {
  document.title = `${users.length} online`;
});
sub.on('update', (msg) => {
  const typing: unknown = msg.conn.meta.typing;
  console.log(msg.conn.session, msg.scope, typing);
});
document.addEventListener('mousemove', (e) => {
  sub.updatePresence({ name: 'ana', cursor: [e.clientX, e.clientY] }).then(
    (r) => r?.op === 'presence_updated',
    (err: ScopecastError) => err.code === 'limit',
  );
});
// A late joiner rebuilds from the room's history; a reload when that fails.
const room = client.subscribe<{ text: string }>('room:history', { since: { seq: 0 } });
room.on('recovered', (info) => console.log(`replaying ${info.missed} events up to ${info.seq}`));
room.on('refetch', (info) => {
  document.title = `reloading (${info.reason})`;
});
sub.ready.then(
  (reply) => console.log('subscribed at seq', reply.seq),
  (err: ScopecastError) => console.warn('not subscribed yet:', err.code, err.message),
);
document.querySelector('form')?.addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    await client.emit('room:lobby', { data: { text: 'hello' } });
  } catch (err) {
    if (err instanceof ScopecastError && err.code === 'too_large') alert(err.message);
  }
});
