// Broadcast server on the `ws` package, written the way a user would:
// subscribers connect to /sub/<topic>; a publisher either POSTs the message
// to /pub/<topic> or sends "<topic>\n<message>" frames on a WebSocket to
// /pub; the server loops over the topic's clients and sends.
'use strict';
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.env.PORT || 9101);
const host = process.env.HOST || '127.0.0.1';
const topics = new Map(); // topic -> Set<WebSocket>

function broadcast(topic, message) {
  const subs = topics.get(topic);
  if (!subs) return 0;
  for (const ws of subs) {
    if (ws.readyState === WebSocket.OPEN) ws.send(message, { binary: false });
  }
  return subs.size;
}

const server = http.createServer((req, res) => {
  const m = /^\/pub\/([^/?]+)/.exec(req.url);
  if (req.method !== 'POST' || !m) {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const n = broadcast(m[1], Buffer.concat(chunks));
    res.writeHead(202, { 'content-type': 'text/plain' }).end(String(n));
  });
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 << 20 });

server.on('upgrade', (req, socket, head) => {
  const m = /^\/(sub|pub)(?:\/([^/?]+))?/.exec(req.url);
  if (!m || (m[1] === 'sub' && !m[2])) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (m[1] === 'sub') {
      const topic = m[2];
      let subs = topics.get(topic);
      if (!subs) topics.set(topic, (subs = new Set()));
      subs.add(ws);
      ws.on('close', () => {
        subs.delete(ws);
        if (subs.size === 0) topics.delete(topic);
      });
    } else {
      ws.on('message', (data) => {
        const i = data.indexOf(10);
        if (i > 0) broadcast(data.toString('latin1', 0, i), data.subarray(i + 1));
      });
    }
  });
});

server.listen(port, host, () => console.log(`ws peer listening on ${host}:${port}`));
process.on('SIGTERM', () => process.exit(0));
