// The same broadcast server on uWebSockets.js (through the `uws-pack`
// repackaging, see bench/README.md), written the idiomatic uWS way:
// subscribers connect to /sub/<topic> and are subscribed to the topic;
// the publisher POSTs to /pub/<topic> or sends "<topic>\n<message>" frames
// on a WebSocket to /pub; the server calls app.publish().
import { App, DISABLED } from 'uws-pack';

const port = Number(process.env.PORT || 9102);
const host = process.env.HOST || '127.0.0.1';
const enc = new TextDecoder('latin1');

const app = App();
app.ws('/sub/:topic', {
  compression: DISABLED,
  maxPayloadLength: 16 << 20,
  maxBackpressure: 1 << 20, // beyond this a slow subscriber misses messages
  idleTimeout: 0,
  upgrade: (res, req, context) => {
    res.upgrade({ topic: req.getParameter(0) },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context);
  },
  open: (ws) => { ws.subscribe(ws.getUserData().topic); },
});
app.ws('/pub', {
  compression: DISABLED,
  maxPayloadLength: 16 << 20,
  maxBackpressure: 16 << 20,
  idleTimeout: 0,
  message: (ws, message) => {
    const bytes = new Uint8Array(message);
    const i = bytes.indexOf(10);
    if (i > 0) app.publish(enc.decode(bytes.subarray(0, i)), bytes.subarray(i + 1), false);
  },
});
app.post('/pub/:topic', (res, req) => {
  const topic = req.getParameter(0);
  const parts = [];
  res.onAborted(() => {});
  res.onData((chunk, last) => {
    parts.push(Buffer.from(chunk.slice(0)));
    if (last) {
      app.publish(topic, Buffer.concat(parts), false);
      res.writeStatus('202 Accepted').end();
    }
  });
});
app.listen(host, port, (tok) => {
  if (!tok) { console.error(`uws peer: cannot listen on ${port}`); process.exit(1); }
  console.log(`uws peer listening on ${host}:${port}`);
});
process.on('SIGTERM', () => process.exit(0));
