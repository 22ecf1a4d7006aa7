#!/usr/bin/python3
"""A cluster (issue 13): several scopecast nodes linked through one Redis
server with `--broker redis://HOST:PORT[/DB]`.

Every test starts its own redis-server (a free port on 127.0.0.1, nothing
persisted, stopped by PID, also after a failure) and two nodes, A and B,
both with `--broker redis://127.0.0.1:P` and an API key. What must hold:

- an emit on either node (WebSocket client `emit`, `POST /api/emit` single
  and batch) reaches the subscribers of both nodes exactly once, with the
  same seq everywhere, the seq of its `emitted` reply / `202 {"seq":N}`;
  with the broker every accepted emit has a seq >= 1, subscribers or not;
- 10,000 events emitted into one scope from both nodes at once arrive at
  a subscriber on A and one on B, each exactly once, in strictly rising
  seq order, as the identical sequence on both;
- origin suppression (`echo`) and audiences hold across nodes;
- `POST /api/close` (a scope, a user, a user in a scope) on B ends the
  matching subscriptions on A;
- Redis killed: `/healthz` answers 503 ("broker ...") within 3 s, each
  node still delivers its own emits to its own subscribers (nothing of the
  outage is forwarded, then or later); Redis back on the same port:
  `/healthz` 200 on both within 5 s, cross-node delivery again, nothing
  delivered twice; `scopecast_broker_up` says 0 / 1;
- a node does not publish again what it got from the broker: one emit is
  one message on the Redis channel (seen by a raw Redis subscriber);
- history and recovery across nodes: one epoch per scope in the cluster,
  the same kept events on both nodes, a client that leaves one node
  recovers what it missed on the other; positions of another order (a
  node's own before the first emit, a node's alone during an outage) are
  refused, never replayed from the wrong order.

Cluster-wide presence is not part of this step: subscriptions use
`"presence": false` (so no join/leave can come between the events a test
counts) except where a test looks at presence within one node.

    /usr/bin/python3 test_cluster.py --server build/server/scopecast --web-root web [Class.test]

The module runs again with `--threads 2` (SC_IT_SERVER_ARGS, see
CMakeLists.txt). Needs /usr/bin/redis-server (scripts/deps.sh installs
it; SC_REDIS_SERVER overrides the path).
"""

import asyncio
import collections
import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (HOST, JWT_SECRET, OP_TEXT, T, KeepAliveHTTP, RedisSubscriber, RespReader,  # noqa: E402
                     ClusterTestCase, assert_conn, build_frame, http_request, is_int, main, resp_encode,
                     token)

API_KEY = "cluster-api-key"
JWT_ANON = ("--jwt-secret", JWT_SECRET, "--allow-anonymous", "--anonymous-scopes", "*")
SANITIZED = bool(os.environ.get("SC_SANITIZER")) or "--sanitized" in sys.argv
SLACK = 2.0 if SANITIZED else 1.0  # deadlines from the spec are stretched under sanitizers


class PipelinedHTTP:
    """One kept-alive connection to a node, requests written at once
    (pipelined) and answered in order (blocking: use from a thread)."""

    def __init__(self, srv):
        self.srv = srv
        self.sock = socket.create_connection((HOST, srv.port), timeout=T(2))
        self.buf = b""

    def pipeline(self, requests):
        """[(method, path, JSON body)] -> [(status, JSON answer)]"""
        out = []
        for method, path, body in requests:
            data = json.dumps(body).encode()
            out.append(f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.srv.api_key}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        self.sock.sendall(b"".join(out))
        return [self._answer() for _ in requests]

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the node closed the connection")
        self.buf += chunk

    def _answer(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        n = 0
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            if k.strip().lower() == "content-length":
                n = int(v.strip())
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, json.loads(body) if body else None

    def close(self):
        self.sock.close()


class ClusterCase(ClusterTestCase):
    """Two nodes linked through Redis (harness.ClusterTestCase), with the
    API key and NODE_ARGS."""

    NODE_ARGS = ()  # flags of both nodes

    # A subscriber's queue (--maxsize, 256 by default) bounds the events
    # waiting for its socket. Events from Redis come in bursts: one read of
    # the subscription connection may hold hundreds, all handed to the bus
    # before the service thread writes. A test that sends more than 256 to
    # one subscriber at once raises the bound, as a deployment expecting
    # such bursts would (CI saw "dropped 1 event(s) ... maxsize=256" here).
    BURST = ("--maxsize", "2000")

    def node_flags(self):
        return ("--api-key", API_KEY, *self.NODE_ARGS)

    # -- helpers -------------------------------------------------------------
    async def sub(self, srv, scope, name, token_=None, **fields):
        """A client on `srv` subscribed to `scope` (presence false unless
        given)."""
        c = await self.client(srv, name=name, token=token_)
        fields.setdefault("presence", False)
        await c.subscribe(scope, **fields)
        return c

    async def healthz(self, srv):
        try:
            return await asyncio.to_thread(http_request, srv.port, "GET", "/healthz", None, None, 2.0)
        except OSError as e:
            return e

    async def wait_health(self, srv, status, within):
        """Polls GET /healthz until it answers `status`; returns (seconds
        it took, the answer). Fails after `within` seconds."""
        t0 = time.monotonic()
        while True:
            res = await self.healthz(srv)
            took = time.monotonic() - t0
            if not isinstance(res, Exception) and res.status == status:
                return took, res
            if took > within:
                self.fail(f"node {self.node_name(srv)}: GET /healthz still {res!r} after {took:.1f} s, "
                          f"expected {status} within {within:.1f} s")
            await asyncio.sleep(0.05)

    async def metric(self, srv, name):
        """The value of an unlabelled series in GET /metrics (None: absent)."""
        res = await srv.request("GET", "/metrics")
        self.assertEqual(res.status, 200, res)
        for line in res.text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == name:
                return float(parts[1])
        return None

    async def event_of(self, c, scope, data, timeout=None):
        """The next push of `scope` for c, which must be the event carrying
        `data`."""
        m = await c.push(scope, timeout=timeout)
        if m.get("op") != "event" or m.get("data") != data:
            raise AssertionError(f"{c.name}: expected the event with data {data!r} as the next push of "
                                 f"{scope!r}, got {m!r}")
        return m

    async def no_events(self, c, scope, duration=0.5):
        got = await c.quiet(duration, pred=lambda m: m.get("scope") == scope and m.get("op") == "event")
        self.assertEqual(got, [], f"{c.name}: unexpected events of {scope!r}")

    async def fence(self, scope, *clients, srv=None):
        """marker() on `srv` (A by default): the marker is the next push of
        `scope` for every client, with the seq the emit answered; nothing
        else of the scope comes within 0.3 s after it."""
        seq = await self.marker(scope, *clients, srv=srv or self.a)
        for c in clients:
            await self.no_events(c, scope, 0.3)
        return seq


# ------------------------------------------------------------------------------
# 1. An emit on one node reaches the subscribers of both, once, with one seq

class CrossNode(ClusterCase):
    NODE_ARGS = ("--client-emit", *ClusterCase.BURST)

    async def test_ws_emit_reaches_other_node_once_with_emitted_seq(self):
        for src, dst in ((self.b, self.a), (self.a, self.b)):
            with self.subTest(emit_on=self.node_name(src)):
                S = f"x:ws-{self.node_name(src)}"
                far = await self.sub(dst, S, f"sub{self.node_name(dst)}")
                near = await self.sub(src, S, f"sub{self.node_name(src)}")
                em = await self.client(src, name=f"emitter{self.node_name(src)}")
                data = {"k": self.node_name(src), "n": [1, 2]}
                r = await em.ok("emit", scope=S, paths=["k"], data=data)
                seq = r["seq"]
                self.assertTrue(is_int(seq) and seq >= 1, f"emitted with the broker has a seq >= 1: {r!r}")
                for c in (far, near):
                    m = await self.event_of(c, S, data)
                    self.assertSub(m, {"scope": S, "seq": seq, "paths": ["k"], "origin": em.session},
                                   f"{c.name}: the event has the emitted reply's seq and the emitter's origin")
                # exactly once: the next push of S is a later marker, and nothing follows it
                mseq = await self.fence(S, far, near, srv=dst)
                self.assertGreater(mseq, seq)
                self.assertEqual(await em.quiet(0.2, scope=S), [], "the emitter is not subscribed")

    async def test_http_emit_single_and_batch_reaches_other_node_once(self):
        for src, dst in ((self.b, self.a), (self.a, self.b)):
            with self.subTest(emit_on=self.node_name(src)):
                S = f"x:http-{self.node_name(src)}"
                far = await self.sub(dst, S, f"sub{self.node_name(dst)}")
                near = await self.sub(src, S, f"sub{self.node_name(src)}")
                seq = await src.emit(S, data={"single": 1}, paths=["single"])
                self.assertGreaterEqual(seq, 1)
                seqs = await src.emit_batch([{"scope": S, "data": {"b": i}} for i in range(5)])
                self.assertTrue(all(is_int(s) and s >= 1 for s in seqs), seqs)
                self.assertEqual(seqs, sorted(set(seqs)), f"a batch's seqs rise in its order: {seqs}")
                self.assertGreater(seqs[0], seq)
                for c in (far, near):
                    m = await self.event_of(c, S, {"single": 1})
                    self.assertSub(m, {"seq": seq, "paths": ["single"], "origin": None},
                                   f"{c.name}: HTTP emit without origin")
                    for i, s in enumerate(seqs):
                        m = await self.event_of(c, S, {"b": i})
                        self.assertEqual(m["seq"], s, f"{c.name}: batch item {i} has the seq of its result")
                await self.fence(S, far, near, srv=dst)

    async def test_pipelined_http_emits_answered_in_order_with_their_seqs(self):
        """600 emits pipelined on one kept-alive connection (more than the
        256 answers a connection may have queued): answered in order, seqs
        rising, each the seq the other node's subscriber sees."""
        S = "x:pipe-http"
        far = await self.sub(self.a, S, "subA")
        conn = PipelinedHTTP(self.b)
        self.addCleanup(conn.close)
        answers = await asyncio.to_thread(
            conn.pipeline, [("POST", "/api/emit", {"scope": S, "data": i}) for i in range(600)])
        self.assertEqual({st for st, _ in answers}, {202})
        seqs = [j["seq"] for _, j in answers]
        self.assertEqual(seqs, sorted(set(seqs)), "answers in request order, seqs rising")
        seen = [await self.event_of(far, S, i) for i in range(600)]
        self.assertEqual([m["seq"] for m in seen], seqs)
        await self.fence(S, far, srv=self.b)

    async def test_emit_on_a_page_connection_waits_for_its_cluster_seq(self):
        """A connection whose first request is a page is served by lws, not
        by the keep-alive API transport; a POST /api/emit on it next waits
        for the cluster too (lws writes the answer when it comes) and
        carries the seq subscribers on the other node see."""
        S = "x:lws"
        far = await self.sub(self.a, S, "subA")

        def read_answer(sock, buf):
            while b"\r\n\r\n" not in buf:
                buf += sock.recv(65536)
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            n = next(int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                     if k.strip().lower() == "content-length")
            while len(buf) < n:
                buf += sock.recv(65536)
            return int(lines[0].split(" ")[1]), buf[:n], buf[n:]

        def run():
            sock = socket.create_connection((HOST, self.b.port), timeout=T(3))
            try:
                sock.sendall(b"GET /scopecast.js HTTP/1.1\r\nHost: x\r\n\r\n")
                st, page, buf = read_answer(sock, b"")
                body = json.dumps({"scope": S, "data": "via-page-conn"}).encode()
                sock.sendall(f"POST /api/emit HTTP/1.1\r\nHost: x\r\n"
                             f"Authorization: Bearer {self.b.api_key}\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                st2, ans, _ = read_answer(sock, buf)
                return st, len(page), st2, json.loads(ans)
            finally:
                sock.close()

        st, plen, st2, ans = await asyncio.to_thread(run)
        self.assertEqual(st, 200)
        self.assertGreater(plen, 0)
        self.assertEqual(st2, 202, ans)
        self.assertTrue(is_int(ans.get("seq")) and ans["seq"] >= 1, ans)
        m = await self.event_of(far, S, "via-page-conn")
        self.assertEqual(m["seq"], ans["seq"], "the answer has the seq A's subscriber sees")
        await self.fence(S, far, srv=self.b)

    async def test_emit_on_a_node_without_subscribers_answers_the_seq_others_see(self):
        """The scope has a subscriber on A only; emits on B (HTTP single,
        batch, client emit) answer the seq A's subscriber sees."""
        S = "x:far-only"
        sa = await self.sub(self.a, S, "subA")
        em = await self.client(self.b, name="emitterB")
        answered = [await self.b.emit(S, data="http")]
        answered += await self.b.emit_batch([{"scope": S, "data": "batch"}])
        answered.append((await em.ok("emit", scope=S, data="ws"))["seq"])
        seen = [(await self.event_of(sa, S, d))["seq"] for d in ("http", "batch", "ws")]
        self.assertEqual(answered, seen, "answered seqs (B, no subscriber there) vs seqs seen on A")
        await self.fence(S, sa)

    async def test_emit_without_subscribers_is_sequenced(self):
        """With the broker every accepted emit gets a seq >= 1, on either
        node, also when no node has a subscriber (single-node: 0)."""
        S = "x:nobody"
        s1 = await self.a.emit(S, data=1)
        s2 = await self.b.emit(S, data=2)
        em = await self.client(self.a, name="emitterA")
        s3 = (await em.ok("emit", scope=S, data=3))["seq"]
        s4 = (await self.b.emit_batch([{"scope": S, "data": 4}]))[0]
        for s in (s1, s2, s3, s4):
            self.assertTrue(is_int(s) and s >= 1, f"seqs {[s1, s2, s3, s4]}: all must be >= 1")
        self.assertTrue(s1 < s2 < s3 < s4, f"one scope's seqs rise across nodes: {[s1, s2, s3, s4]}")

    async def test_alternating_emitters_same_sequence_on_both_nodes(self):
        S = "x:alt"
        sa = await self.sub(self.a, S, "subA")
        sb = await self.sub(self.b, S, "subB")
        wa = await self.client(self.a, name="wsA")
        wb = await self.client(self.b, name="wsB")
        sent = []  # (data, seq) in the order the emits were answered
        for i in range(40):
            kind = i % 4
            data = {"i": i}
            if kind == 0:
                seq = await self.a.emit(S, data=data)
            elif kind == 1:
                seq = await self.b.emit(S, data=data)
            elif kind == 2:
                seq = (await wa.ok("emit", scope=S, data=data))["seq"]
            else:
                seq = (await wb.ok("emit", scope=S, data=data))["seq"]
            sent.append((i, seq))
        seqs = [s for _, s in sent]
        self.assertEqual(seqs, sorted(set(seqs)), f"emits answered one after the other get rising seqs: {seqs}")
        for c in (sa, sb):
            got = [await c.push(S) for _ in range(40)]
            self.assertEqual([(m["op"], m.get("data", {}).get("i"), m.get("seq")) for m in got],
                             [("event", i, s) for i, s in sent], f"{c.name}: all 40 in order with their seqs")
        await self.fence(S, sa, sb)

    async def test_healthz_and_broker_up_metric(self):
        for srv in (self.a, self.b):
            res = await self.healthz(srv)
            self.assertEqual(res.status, 200, res)
            self.assertEqual(await self.metric(srv, "scopecast_broker_up"), 1.0,
                             f"node {self.node_name(srv)}: scopecast_broker_up 1 while linked")


class CrossNodeDb(ClusterCase):
    """`--broker redis://HOST:PORT/DB`: the nodes use database 3."""
    BROKER_PATH = "/3"

    async def test_db_in_url_links_nodes_and_keeps_keys_in_that_db(self):
        S = "x:db"
        sa = await self.sub(self.a, S, "subA")
        sb = await self.sub(self.b, S, "subB")
        seq = await self.b.emit(S, data="via-db3")
        for c in (sa, sb):
            m = await self.event_of(c, S, "via-db3")
            self.assertEqual(m["seq"], seq)
        await self.fence(S, sa, sb)
        self.assertGreaterEqual(await asyncio.to_thread(self._dbsize, 3), 1,
                                "the cluster's seq state lives in database 3")
        self.assertEqual(await asyncio.to_thread(self._dbsize, 0), 0, "nothing in database 0")

    def _dbsize(self, db):
        with socket.create_connection((HOST, self.redis.port), timeout=5) as s:
            s.sendall(resp_encode("SELECT", db) + resp_encode("DBSIZE"))
            rd = RespReader(s)
            self.assertEqual(rd.read(), "OK")
            return rd.read()


# ------------------------------------------------------------------------------
# 2. 10,000 events from both nodes at once: the same sequence everywhere

class Flood(ClusterCase):
    NODE_ARGS = ("--client-emit", "--maxsize", "20000", "--max-queued-bytes", "0", "--rate-limit", "0")
    TEST_TIMEOUT = 180.0
    N_HTTP = 4980  # per node, POST /api/emit on one kept-alive connection
    BATCH = 20     # events per request
    N_WS = 20      # per node, client `emit`s meanwhile
    TOTAL = 2 * (N_HTTP + N_WS)  # 10,000

    async def test_10000_events_from_both_nodes_identical_sequence_on_both(self):
        S = "flood:1"
        sa = await self.sub(self.a, S, "subA")
        sb = await self.sub(self.b, S, "subB")
        wa = await self.client(self.a, name="wsA")
        wb = await self.client(self.b, name="wsB")
        for c in (sa, sb):
            c.record = False  # 10,000 messages: kept below, not twice

        def http_emitter(srv, tag):
            k = KeepAliveHTTP(srv)
            out = []
            try:
                for i in range(0, self.N_HTTP, self.BATCH):
                    names = [f"{tag}{j}" for j in range(i, min(i + self.BATCH, self.N_HTTP))]
                    seqs = k.emit([{"scope": S, "data": {"n": n}} for n in names])
                    out.extend(zip(names, seqs))
            finally:
                k.close()
            return out

        async def ws_emitter(c, tag):
            out = []
            for j in range(self.N_WS):
                await asyncio.sleep(0.03)
                r = await c.ok("emit", scope=S, data={"n": f"{tag}{j}"})
                out.append((f"{tag}{j}", r["seq"]))
            return out

        t0 = time.monotonic()
        sent = await asyncio.gather(asyncio.to_thread(http_emitter, self.a, "A"),
                                    asyncio.to_thread(http_emitter, self.b, "B"),
                                    ws_emitter(wa, "wsA"), ws_emitter(wb, "wsB"))
        t_emit = time.monotonic() - t0
        origin_of = {}
        reply_seq = {}
        for part, origin in zip(sent, (None, None, wa.session, wb.session)):
            seqs = [s for _, s in part]
            self.assertTrue(all(is_int(s) and s >= 1 for s in seqs), "every emit answered a seq >= 1")
            bad = [(a, b) for a, b in zip(seqs, seqs[1:]) if b <= a]
            self.assertEqual(bad, [], "one emitter's seqs rise in the order it sent (answer before the next)")
            for n, s in part:
                reply_seq[n] = s
                origin_of[n] = origin
        self.assertEqual(len(reply_seq), self.TOTAL)
        self.assertEqual(len(set(reply_seq.values())), self.TOTAL, "no two emits got the same seq")

        received = {}
        took = {}

        async def collect(c, evs):
            # straight from the socket: Inbox.next() costs a wait_for per message
            while len(evs) < self.TOTAL:
                m = json.loads(await c.ws.recv())
                if m.get("op") == "event" and m.get("scope") == S:
                    evs.append((m["seq"], m["data"]["n"], m["origin"]))
                else:
                    self.fail(f"{c.name}: unexpected message during the flood (after {len(evs)} events): {m!r}")
                if len(evs) % 500 == 0:
                    await asyncio.sleep(0)  # recv() of buffered messages does not yield: let the other run
            took[c.name] = time.monotonic() - t0

        for c in (sa, sb):
            received[c.name] = []
        try:
            await asyncio.wait_for(asyncio.gather(*(collect(c, received[c.name]) for c in (sa, sb))), T(6))
        except asyncio.TimeoutError:
            for name, evs in received.items():
                missing = set(reply_seq) - {n for _, n, _ in evs}
                self.assertEqual(len(evs), self.TOTAL, f"{name}: only {len(evs)} of {self.TOTAL} events arrived "
                                 f"within {T(6):.0f} s; missing e.g. {sorted(missing)[:10]}")
        for c in (sa, sb):
            late = await c.quiet(1.0)
            self.assertEqual(late, [], f"{c.name}: nothing after the {self.TOTAL} events (no duplicate)")
        t_all = time.monotonic() - t0

        for name, evs in received.items():
            counts = collections.Counter(n for _, n, _ in evs)
            dups = [n for n, k in counts.items() if k > 1]
            self.assertEqual(dups[:10], [], f"{name}: events received more than once")
            self.assertEqual(set(counts), set(reply_seq), f"{name}: exactly the events emitted")
            seqs = [s for s, _, _ in evs]
            bad = [(i, a, b) for i, (a, b) in enumerate(zip(seqs, seqs[1:])) if b <= a]
            self.assertEqual(bad[:10], [], f"{name}: seqs strictly increasing")
            wrong = [(n, s, reply_seq[n]) for s, n, _ in evs if s != reply_seq[n]]
            self.assertEqual(wrong[:10], [], f"{name}: (event, seq received, seq answered to the emitter)")
            wrong = [(n, o) for _, n, o in evs if o != origin_of[n]]
            self.assertEqual(wrong[:10], [], f"{name}: origins (HTTP: null, client emit: its session)")
        self.assertEqual(received["subA"], received["subB"],
                         "A's and B's subscribers see the identical sequence (events, order, seqs)")
        gaps = sum(1 for a, b in zip([s for s, _, _ in received["subA"]], [s for s, _, _ in received["subA"]][1:])
                   if b != a + 1)
        print(f"\n  flood: {self.TOTAL} events emitted in {t_emit:.2f} s, all read from A's subscriber after "
              f"{took['subA']:.2f} s, from B's after {took['subB']:.2f} s (checks done {t_all:.2f} s); seqs {received['subA'][0][0]}..{received['subA'][-1][0]}, {gaps} gaps",
              flush=True)


# ------------------------------------------------------------------------------
# 2b. history and recovery across nodes: one epoch per scope in the cluster

class RecoveryAcross(ClusterCase):
    """Both nodes keep every event of a history scope from the channel,
    with the cluster's seq and the cluster's epoch (the script's), so a
    client's position (epoch, seq) names the same events on either node."""
    NODE_ARGS = ("--client-emit", "--history", "h:*=1000", *ClusterCase.BURST)

    async def subscribed(self, srv, scope, name, since=None):
        """(client, its `subscribed` reply) on `srv`."""
        c = await self.client(srv, name=name)
        fields = {"presence": False}
        if since is not None:
            fields["since"] = since
        m = await c.call("subscribe", scope=scope, **fields)
        self.assertEqual(m.get("op"), "subscribed", f"{name}: {m!r}")
        self.assertIsInstance(m.get("epoch"), str, m)
        return c, m

    async def history(self, srv, scope, **q):
        query = "&".join(f"{k}={v}" for k, v in {"scope": scope, "since": 0, **q}.items())
        res = await srv.request("GET", "/api/history?" + query)
        self.assertEqual(res.status, 200, res)
        return res.json

    async def test_one_epoch_and_one_history_on_both_nodes(self):
        """Emits on both nodes into a history scope nobody subscribes to:
        each node keeps them all, GET /api/history answers the same events
        with the same seqs and epoch on A and B, and a subscriber on
        either node is told that epoch."""
        S = "h:same"
        seqs = []
        for i in range(20):
            srv = self.a if i % 2 else self.b
            seqs.append(await srv.emit(S, data=i))
        self.assertEqual(seqs, sorted(set(seqs)), seqs)
        await asyncio.sleep(0.3)  # the last message reaches both nodes
        ha, hb = await self.history(self.a, S, limit=100), await self.history(self.b, S, limit=100)
        for h, name in ((ha, "A"), (hb, "B")):
            self.assertEqual([(e["seq"], e["data"]) for e in h["events"]], list(zip(seqs, range(20))),
                             f"node {name} keeps every event of the scope with the cluster's seqs")
            self.assertTrue(isinstance(h.get("epoch"), str) and h["epoch"], h)
        self.assertEqual(ha["epoch"], hb["epoch"], "one epoch for the scope on both nodes")
        _, ma = await self.subscribed(self.a, S, "subA")
        _, mb = await self.subscribed(self.b, S, "subB")
        self.assertEqual((ma["epoch"], ma["seq"]), (ha["epoch"], seqs[-1]))
        self.assertEqual((mb["epoch"], mb["seq"]), (ha["epoch"], seqs[-1]))

    async def test_a_client_recovers_on_the_other_node(self):
        """A client of node X leaves abruptly after a few events; 30 events
        are emitted on both nodes meanwhile; it comes back on node Y with
        `since`: recovered:true, exactly the 30 missed events with their
        seqs, then live events with no gap and no duplicate."""
        for x, y in ((self.a, self.b), (self.b, self.a)):
            with self.subTest(away_from=self.node_name(x), back_on=self.node_name(y)):
                S = f"h:move-{self.node_name(x)}"
                await x.emit(S, data="first")  # the scope's cluster epoch exists
                c, m = await self.subscribed(x, S, "c1")
                epoch, last = m["epoch"], m["seq"]
                for i in range(3):
                    seq = await (x if i % 2 else y).emit(S, data=f"before{i}")
                    self.assertEqual((await self.event_of(c, S, f"before{i}"))["seq"], seq)
                    last = seq
                c.ws.transport.abort()  # gone without a close frame
                missed = []
                for i in range(30):
                    missed.append(await (x if i % 3 else y).emit(S, data=f"missed{i}"))
                await asyncio.sleep(0.3)  # the last message reaches Y
                c2, m2 = await self.subscribed(y, S, "c2", since={"seq": last, "epoch": epoch})
                self.assertSub(m2, {"recovered": True, "epoch": epoch, "seq": missed[-1]},
                               "recovered on the other node, same epoch")
                got = [await self.event_of(c2, S, f"missed{i}") for i in range(30)]
                self.assertEqual([e["seq"] for e in got], missed, "the missed events with their seqs")
                live = await x.emit(S, data="live")
                self.assertEqual((await self.event_of(c2, S, "live"))["seq"], live)
                self.assertEqual(live, missed[-1] + 1)
                await self.no_events(c2, S, 0.3)

    async def test_first_emit_on_the_subscribers_node_keeps_its_epoch(self):
        """A subscriber came first (its node gave the scope an epoch); the
        first emit made on that node proposes that epoch to the cluster,
        so the subscriber's position stays good on both nodes."""
        S = "h:first-here"
        c, m = await self.subscribed(self.a, S, "c1")
        seq = await self.a.emit(S, data="one")
        self.assertEqual((await self.event_of(c, S, "one"))["seq"], seq)
        seq2 = await self.b.emit(S, data="two")
        await asyncio.sleep(0.3)
        hb = await self.history(self.b, S)
        self.assertEqual(hb["epoch"], m["epoch"], "B took the epoch A proposed")
        c.ws.transport.abort()
        _, mb = await self.subscribed(self.b, S, "c2", since={"seq": seq, "epoch": m["epoch"]})
        self.assertSub(mb, {"recovered": True, "seq": seq2})

    async def test_a_position_from_another_order_is_refused_not_misread(self):
        """Subscribers of both nodes came before any emit, so each node
        gave the scope its own epoch; the first emit (on B) makes B's the
        cluster's. A's subscriber's position names A's old order: it is
        refused (recovered:false, nothing replayed) on both nodes, never
        answered with events of another order."""
        S = "h:two-epochs"
        ca, ma = await self.subscribed(self.a, S, "cA")
        cb, mb = await self.subscribed(self.b, S, "cB")
        self.assertNotEqual(ma["epoch"], mb["epoch"], "each node named the new scope itself")
        seqs = [await self.b.emit(S, data=i) for i in range(3)]
        for c in (ca, cb):
            self.assertEqual([(await self.event_of(c, S, i))["seq"] for i in range(3)], seqs)
        for srv in (self.a, self.b):
            c, m = await self.subscribed(srv, S, f"back-{self.node_name(srv)}",
                                         since={"seq": seqs[0], "epoch": ma["epoch"]})
            self.assertSub(m, {"recovered": False, "epoch": mb["epoch"], "seq": seqs[-1]},
                           f"on {self.node_name(srv)}: A's first epoch is no longer the scope's")
            await self.no_events(c, S, 0.3)
            c, m = await self.subscribed(srv, S, f"good-{self.node_name(srv)}",
                                         since={"seq": seqs[0], "epoch": mb["epoch"]})
            self.assertSub(m, {"recovered": True})
            self.assertEqual([(await self.event_of(c, S, i))["seq"] for i in (1, 2)], seqs[1:])

    async def test_a_position_survives_a_redis_restart_without_emits(self):
        """Redis killed and started empty (no persistence: the scope's seq
        and epoch keys are gone) while nobody emits: the nodes raise the
        seq key again and the next emit proposes the scope's epoch, so a
        position from before the outage recovers on either node after it."""
        S = "h:restart"
        seqs = [await (self.a if i % 2 else self.b).emit(S, data=f"pre{i}") for i in range(3)]
        await asyncio.sleep(0.3)
        c, m = await self.subscribed(self.a, S, "before")
        self.assertEqual(m["seq"], seqs[-1])
        epoch = m["epoch"]
        c.ws.transport.abort()
        self.redis.kill()  # SIGKILL, by PID
        await self.wait_health(self.a, 503, 3.0 * SLACK)
        await self.wait_health(self.b, 503, 3.0 * SLACK)
        await self.redis.start_async(port=self.redis.port)
        await self.wait_health(self.a, 200, 5.0 * SLACK)
        await self.wait_health(self.b, 200, 5.0 * SLACK)
        after = [await (self.b if i % 2 else self.a).emit(S, data=f"post{i}") for i in range(3)]
        self.assertEqual(after, list(range(seqs[-1] + 1, seqs[-1] + 4)), "the seqs go on by one")
        await asyncio.sleep(0.3)
        for srv in (self.a, self.b):
            c2, m2 = await self.subscribed(srv, S, f"back-{self.node_name(srv)}",
                                           since={"seq": seqs[-1], "epoch": epoch})
            self.assertSub(m2, {"recovered": True, "epoch": epoch, "seq": after[-1]},
                           f"node {self.node_name(srv)}: the same epoch after Redis lost its keys")
            self.assertEqual([(await self.event_of(c2, S, f"post{i}"))["seq"] for i in range(3)], after)

    async def test_redis_outage_positions_are_not_taken_for_the_clusters(self):
        """Redis killed: A's emits are numbered by A alone, so A leaves the
        cluster's epoch for one of its own. A position a client took on A
        during the outage is refused on B, and B's position from before
        is refused on A (A numbered other events after it); after Redis is
        back the nodes share one epoch and one history again."""
        S = "h:outage"
        s0 = await self.b.emit(S, data="before")
        await asyncio.sleep(0.2)
        ca, ma = await self.subscribed(self.a, S, "cA")
        self.assertEqual(ma["seq"], s0)
        self.redis.kill()  # SIGKILL, by PID
        await self.wait_health(self.a, 503, 3.0 * SLACK)
        await self.wait_health(self.b, 503, 3.0 * SLACK)
        local = [await self.a.emit(S, data=f"outA{i}") for i in range(3)]
        self.assertEqual([(await self.event_of(ca, S, f"outA{i}"))["seq"] for i in range(3)], local)
        ha = await self.history(self.a, S)
        self.assertNotEqual(ha["epoch"], ma["epoch"], "A numbers alone: its own epoch")
        # A's outage position on B: refused (B never had those events)
        c, m = await self.subscribed(self.b, S, "toB", since={"seq": local[-1], "epoch": ha["epoch"]})
        self.assertSub(m, {"recovered": False, "seq": s0})
        await self.no_events(c, S, 0.3)
        # the cluster's position s0 on A: refused (A's seqs after it are A's alone)
        c, m = await self.subscribed(self.a, S, "toA", since={"seq": s0, "epoch": ma["epoch"]})
        self.assertSub(m, {"recovered": False})
        await self.no_events(c, S, 0.3)
        # on B nothing happened: s0 is still good there
        c, m = await self.subscribed(self.b, S, "onB", since={"seq": s0, "epoch": ma["epoch"]})
        self.assertSub(m, {"recovered": True, "seq": s0})

        await self.redis.start_async(port=self.redis.port)
        await self.wait_health(self.a, 200, 5.0 * SLACK)
        await self.wait_health(self.b, 200, 5.0 * SLACK)
        after = [await (self.a if i % 2 else self.b).emit(S, data=f"after{i}") for i in range(4)]
        self.assertGreater(after[0], local[-1], "the cluster's seqs go on past A's (raised at relink)")
        await asyncio.sleep(0.3)
        ha, hb = await self.history(self.a, S), await self.history(self.b, S)
        self.assertEqual(ha["epoch"], hb["epoch"], "one epoch again")
        want = list(zip(after, [f"after{i}" for i in range(4)]))
        for srv in (self.a, self.b):
            h = await self.history(srv, S, since=after[0] - 1, epoch=ha["epoch"])
            self.assertSub(h, {"recovered": True, "seq": after[-1]}, f"node {self.node_name(srv)}")
            self.assertEqual([(e["seq"], e["data"]) for e in h["events"]], want,
                             f"node {self.node_name(srv)} keeps the cluster's events since the heal")
        # a position taken after the heal recovers on either node
        for srv in (self.a, self.b):
            c, m = await self.subscribed(srv, S, f"healed-{self.node_name(srv)}",
                                         since={"seq": after[1], "epoch": ha["epoch"]})
            self.assertSub(m, {"recovered": True, "seq": after[-1]})
            self.assertEqual([(await self.event_of(c, S, f"after{i}"))["seq"] for i in (2, 3)], after[2:])


# ------------------------------------------------------------------------------
# 3. echo / origin and audience across nodes

class EchoAudience(ClusterCase):
    NODE_ARGS = (*JWT_ANON, *ClusterCase.BURST)

    async def test_own_event_not_echoed_but_delivered_on_other_node_with_origin(self):
        S = "ea:echo"
        alice = await self.sub(self.a, S, "alice@A", token("alice", emit=True), echo=False)
        other_a = await self.sub(self.a, S, "otherA")
        watcher = await self.sub(self.b, S, "watcher@B")
        r = await alice.ok("emit", scope=S, data={"from": "alice"})
        seq = r["seq"]
        self.assertGreaterEqual(seq, 1)
        for c in (watcher, other_a):
            m = await self.event_of(c, S, {"from": "alice"})
            self.assertSub(m, {"seq": seq, "origin": alice.session}, c.name)
        # alice: the next push of S is the marker, not her own event
        await self.fence(S, alice, watcher, other_a, srv=self.b)

    async def test_echo_true_gets_own_events_once_each_after_its_emitted(self):
        """100 emits sent at once by a client subscribed with echo:true:
        each `emitted` comes before that event's echo (PROTOCOL ordering),
        with its seq; a watcher on B gets the same events with the same
        seqs."""
        S = "ea:echo-true"
        N = 100
        bob = await self.sub(self.a, S, "bob@A", token("bob", emit=True), echo=True)
        watcher = await self.sub(self.b, S, "watcher@B")
        for i in range(N):
            await bob.send({"op": "emit", "id": i, "scope": S, "data": i})
        order = []  # ("emitted", id, seq) / ("event", data, seq), as they came
        while len(order) < 2 * N:
            m = await bob.next()
            if m.get("op") == "emitted":
                order.append(("emitted", m["id"], m["seq"]))
            elif m.get("op") == "event" and m.get("scope") == S:
                self.assertEqual(m.get("origin"), bob.session, m)
                order.append(("event", m["data"], m["seq"]))
            else:
                self.fail(f"bob: unexpected {m!r}")
        pos = {(k, i): n for n, (k, i, _) in enumerate(order)}
        late = [i for i in range(N) if pos[("emitted", i)] > pos[("event", i)]]
        self.assertEqual(late, [], "emits whose echo came before their `emitted`")
        answered = {i: s for k, i, s in order if k == "emitted"}
        echoed = {i: s for k, i, s in order if k == "event"}
        self.assertEqual(echoed, answered, "each echo has its emitted's seq")
        seen = [await self.event_of(watcher, S, i) for i in range(N)]
        self.assertEqual([m["seq"] for m in seen], [answered[i] for i in range(N)], "B: same events, same seqs")
        await self.fence(S, bob, watcher, srv=self.b)

    async def test_pipelined_emits_and_other_requests_answered_in_order(self):
        """A client sends 300 emits with a ping, a malformed request and a
        presence request in between, all at once (more than the 256 a connection may have
        waiting for the cluster): every reply comes in request order, the
        emitted seqs rise, and the events reach the other node with them."""
        S = "ea:pipe"
        bob = await self.sub(self.a, S, "bob@A", token("bob", emit=True))
        watcher = await self.sub(self.b, S, "watcher@B")
        ids, msgs = [], []
        for i in range(300):
            if i in (100, 200):
                rid = f"other{i}"
                msgs.append({"op": "ping" if i == 100 else "presence", "id": rid, "scope": S})
                ids.append(rid)
            if i == 150:  # a malformed request: its error waits its turn too
                msgs.append({"op": "no-such-op", "id": "bad150", "scope": S})
                ids.append("bad150")
            msgs.append({"op": "emit", "id": i, "scope": S, "data": i})
            ids.append(i)
        # one write: the node reads them while emits before each still wait
        bob.ws.transport.write(b"".join(build_frame(OP_TEXT, json.dumps(m).encode()) for m in msgs))
        replies = []
        while len(replies) < len(ids):
            m = await bob.next()
            if "id" in m:
                replies.append(m)
        self.assertEqual([m["id"] for m in replies], ids, "replies in request order")
        self.assertEqual({m["id"]: m["op"] for m in replies if isinstance(m["id"], str)},
                         {"other100": "pong", "bad150": "error", "other200": "presence"})
        seqs = [m["seq"] for m in replies if m["op"] == "emitted"]
        self.assertEqual(len(seqs), 300)
        self.assertEqual(seqs, sorted(set(seqs)), "emitted seqs rise")
        seen = [await self.event_of(watcher, S, i) for i in range(300)]
        self.assertEqual([m["seq"] for m in seen], seqs, "B: same events, same seqs")
        await self.fence(S, bob, watcher, srv=self.b)

    async def test_http_origin_suppressed_on_other_node(self):
        S = "ea:http-origin"
        carol = await self.sub(self.a, S, "carol@A", token("carol"))
        other_a = await self.sub(self.a, S, "otherA")
        watcher = await self.sub(self.b, S, "watcher@B")
        seq = await self.b.emit(S, data="on-behalf", origin=carol.session)
        for c in (other_a, watcher):
            self.assertSub(await self.event_of(c, S, "on-behalf"), {"seq": seq, "origin": carol.session})
        await self.fence(S, carol, other_a, watcher)

    async def test_audience_from_b_reaches_only_listed_user_on_a(self):
        S = "ea:aud"
        u1a = await self.sub(self.a, S, "u1@A", token("u1"))
        u2a = await self.sub(self.a, S, "u2@A", token("u2"))
        anon = await self.sub(self.a, S, "anon@A")
        u1b = await self.sub(self.b, S, "u1@B", token("u1"))
        u2b = await self.sub(self.b, S, "u2@B", token("u2"))
        everyone = (u1a, u2a, anon, u1b, u2b)
        # HTTP emit on B with audience [u1]
        seq = await self.b.emit(S, data="for-u1", audience=["u1"])
        for c in (u1a, u1b):
            self.assertSub(await self.event_of(c, S, "for-u1"), {"seq": seq}, c.name)
        # a client emit on B (by u3) with audience [u1]
        u3 = await self.client(self.b, name="u3@B", token=token("u3", emit=True))
        r = await u3.ok("emit", scope=S, data="ws-for-u1", audience=["u1"])
        for c in (u1a, u1b):
            self.assertSub(await self.event_of(c, S, "ws-for-u1"), {"seq": r["seq"], "origin": u3.session})
        # audience [] reaches nobody, and is still sequenced
        s_empty = await self.b.emit(S, data="nobody", audience=[])
        self.assertGreaterEqual(s_empty, 1, "audience [] is still sequenced")
        # audience [u2] emitted on A reaches u2 on B, not u1 there
        s_u2 = await self.a.emit(S, data="for-u2", audience=["u2"])
        for c in (u2a, u2b):
            self.assertSub(await self.event_of(c, S, "for-u2"), {"seq": s_u2}, c.name)
        # then: for each one, the next push is the marker (u2 and anon got none
        # of u1's, u1 none of u2's, nobody the [] one)
        await self.fence(S, *everyone, srv=self.b)


# ------------------------------------------------------------------------------
# 4. POST /api/close on one node ends subscriptions on the other

class CloseAcross(ClusterCase):
    NODE_ARGS = JWT_ANON

    async def test_close_scope_on_b_closes_subscription_on_a(self):
        S, KEEP = "cl:scope", "cl:keep"
        sa = await self.sub(self.a, S, "subA")
        await sa.subscribe(KEEP, presence=False)
        sb = await self.sub(self.b, S, "subB")
        await sb.subscribe(KEEP, presence=False)
        seqs = [await self.b.emit(S, data=i) for i in range(3)]
        res = await self.b.request("POST", "/api/close", {"scope": S})
        self.assertEqual(res.status, 200, res)
        self.assertTrue(is_int((res.json or {}).get("closed")), res)
        print(f"\n  POST /api/close {{scope}} on B with one subscriber on each node answered {res.json}",
              flush=True)
        for c in (sa, sb):
            got = [await c.push(S) for _ in range(4)]
            self.assertEqual([(m["op"], m.get("seq")) for m in got[:3]], [("event", s) for s in seqs],
                             f"{c.name}: events emitted before the close arrive before `closed`: {got!r}")
            self.assertSub(got[3], {"op": "closed", "scope": S, "reason": "closed"}, c.name)
        # nothing of S afterwards; the other subscription and the connection stay
        await self.a.emit(S, data="after")
        await self.b.emit(S, data="after")
        await self.marker(KEEP, sa, sb, srv=self.b)
        for c in (sa, sb):
            self.assertEqual(await c.quiet(0.5, scope=S), [], f"{c.name}: nothing of {S} after closed")
            self.assertEqual((await c.call("ping"))["op"], "pong")
        for c in (sa, sb):
            r = await c.subscribe(S, presence=False)
            self.assertEqual(r["op"], "subscribed")
        await self.fence(S, sa, sb, srv=self.b)

    async def test_events_answered_before_a_close_are_delivered_before_it_on_both_nodes(self):
        """Many rounds: 3 emits on B, then POST /api/close of the scope on
        B, pipelined on one kept-alive connection (B answers them in order:
        each emit with its cluster seq before the close runs). A subscriber
        on each node gets the 3 events, then `closed`: a close must not
        overtake events already sequenced, on the closing node as on the
        others."""
        sa = await self.client(self.a, name="subA")
        sb = await self.client(self.b, name="subB")
        bad = []
        rounds = 100
        conn = PipelinedHTTP(self.b)
        self.addCleanup(conn.close)
        for r in range(rounds):
            S = f"cl:race:{r}"
            for c in (sa, sb):
                await c.subscribe(S, presence=False)
            answers = await asyncio.to_thread(
                conn.pipeline, [("POST", "/api/emit", {"scope": S, "data": i}) for i in range(3)]
                + [("POST", "/api/close", {"scope": S})])
            self.assertEqual([st for st, _ in answers], [202, 202, 202, 200], answers)
            seqs = [j["seq"] for _, j in answers[:3]]
            for c in (sa, sb):
                got = []
                while not got or got[-1]["op"] != "closed":
                    got.append(await c.push(S))
                if [(m["op"], m.get("seq")) for m in got] != [("event", s) for s in seqs] + [("closed", None)]:
                    bad.append((r, c.name, seqs, [(m["op"], m.get("seq")) for m in got]))
        for c in (sa, sb):
            late = await c.quiet(0.5, pred=lambda m: m.get("op") in ("event", "closed"))
            self.assertEqual(late, [], f"{c.name}: nothing of a scope after its `closed`")
        if bad:
            per_sub = collections.Counter(name for _, name, _, _ in bad)
            self.fail(f"{len(bad)} of {2 * rounds} subscriptions ({dict(per_sub)}) did not get the events "
                      f"answered before the close, then `closed`; e.g. (round, subscriber, answered seqs, "
                      f"pushes up to closed): {bad[:4]}")

    async def test_close_everything_on_b_closes_every_scope_on_a(self):
        """POST /api/close {} (every scope) on B ends the subscriptions of
        every scope on A as well."""
        sa = await self.sub(self.a, "cl:all1", "subA")
        await sa.subscribe("cl:all2", presence=False)
        sb = await self.sub(self.b, "cl:all1", "subB")
        res = await self.b.request("POST", "/api/close", {})
        self.assertEqual(res.status, 200, res)
        got = sorted([[(await sa.push(sc))["op"], sc] for sc in ("cl:all1", "cl:all2")])
        self.assertEqual(got, [["closed", "cl:all1"], ["closed", "cl:all2"]])
        self.assertEqual((await sb.push("cl:all1"))["op"], "closed")
        self.assertEqual((await sa.call("ping"))["op"], "pong", "the connection stays")

    async def test_close_user_on_b_kicks_user_on_a(self):
        S1, S2 = "cl:u1", "cl:u2"
        alice = await self.client(self.a, name="alice@A", token=token("alice"))
        bob = await self.client(self.a, name="bob@A", token=token("bob"))
        await bob.subscribe(S1)  # with presence: sees alice (same node) leave
        await alice.subscribe(S1)
        await alice.subscribe(S2, presence=False)
        self.assertSub(await bob.push(S1), {"op": "join"})
        alice_b = await self.sub(self.b, S1, "alice@B", token("alice"))
        carol_b = await self.sub(self.b, S1, "carol@B", token("carol"))
        res = await self.b.request("POST", "/api/close", {"user": "alice"})
        self.assertEqual(res.status, 200, res)
        self.assertTrue(is_int((res.json or {}).get("closed")), res)
        print(f"\n  POST /api/close {{user}} on B (alice: 2 subscriptions on A, 1 on B) answered {res.json}",
              flush=True)
        got = {}
        for _ in range(2):
            m = await alice.wait("closed")
            got[m["scope"]] = m
        self.assertEqual(set(got), {S1, S2}, got)
        for S in (S1, S2):
            self.assertSub(got[S], {"op": "closed", "scope": S, "reason": "kicked"}, "alice on A")
        self.assertSub(await alice_b.push(S1), {"op": "closed", "scope": S1, "reason": "kicked"}, "alice on B")
        lv = await bob.push(S1)
        self.assertEqual(lv["op"], "leave", f"bob (A) sees alice (A) leave: {lv!r}")
        assert_conn(lv["conn"], session=alice.session, user="alice")
        # the connections stay open (PROTOCOL: a kick ends subscriptions), others keep theirs
        for c in (alice, alice_b):
            self.assertEqual((await c.call("ping"))["op"], "pong", f"{c.name} stays connected")
        await self.fence(S1, bob, carol_b)
        for c in (alice, alice_b):
            self.assertEqual(await c.quiet(0.3, pred=lambda m: m.get("op") == "event"), [], c.name)

    async def test_close_user_in_one_scope_on_b(self):
        S1, S2 = "cl:us1", "cl:us2"
        alice = await self.sub(self.a, S1, "alice@A", token("alice"))
        await alice.subscribe(S2, presence=False)
        dave = await self.sub(self.a, S1, "dave@A", token("dave"))
        watcher = await self.sub(self.b, S1, "watcher@B")
        await watcher.subscribe(S2, presence=False)
        res = await self.b.request("POST", "/api/close", {"user": "alice", "scope": S1})
        self.assertEqual(res.status, 200, res)
        self.assertSub(await alice.push(S1), {"op": "closed", "scope": S1, "reason": "kicked"})
        await self.fence(S2, alice, watcher, srv=self.b)  # her other subscription stays
        await self.fence(S1, dave, watcher, srv=self.b)
        self.assertEqual(await alice.quiet(0.3, scope=S1), [])


# ------------------------------------------------------------------------------
# 5. Redis goes away and comes back

class Outage(ClusterCase):
    NODE_ARGS = ("--client-emit",)
    TEST_TIMEOUT = 90.0

    async def test_redis_killed_and_restarted(self):
        S = "out:1"
        sa = await self.sub(self.a, S, "subA")
        sb = await self.sub(self.b, S, "subB")
        wa = await self.client(self.a, name="wsA")
        # linked: B -> A
        s0 = await self.b.emit(S, data="before")
        self.assertEqual((await self.event_of(sa, S, "before"))["seq"], s0)
        self.assertEqual((await self.event_of(sb, S, "before"))["seq"], s0)
        self.assertEqual(await self.metric(self.a, "scopecast_broker_up"), 1.0)

        # -- Redis killed --
        t_kill = time.monotonic()
        self.redis.kill()  # SIGKILL, by PID
        took_a, res_a = await self.wait_health(self.a, 503, 3.0 * SLACK)
        took_b, res_b = await self.wait_health(self.b, 503, max(0.5, 3.0 * SLACK - (time.monotonic() - t_kill)))
        for srv, res in ((self.a, res_a), (self.b, res_b)):
            self.assertTrue(res.text.startswith("broker"),
                            f"node {self.node_name(srv)}: /healthz 503 body starts with 'broker': {res.text!r}")
        print(f"\n  redis killed: /healthz 503 on A after {took_a:.2f} s ({res_a.text.strip()!r}), "
              f"on B after {time.monotonic() - t_kill:.2f} s", flush=True)
        self.assertEqual(await self.metric(self.a, "scopecast_broker_up"), 0.0)
        self.assertEqual(await self.metric(self.b, "scopecast_broker_up"), 0.0)

        # each node delivers its own emits to its own subscribers, and only there
        outage_a, outage_b = [], []
        for i in range(3):
            d = f"outA-http-{i}"
            seq = await self.a.emit(S, data=d)
            self.assertEqual((await self.event_of(sa, S, d))["seq"], seq,
                             "during the outage an emit on A reaches A's subscriber, with the answered seq")
            outage_a.append(d)
        d = "outA-ws"
        r = await wa.ok("emit", scope=S, data=d)
        self.assertSub(await self.event_of(sa, S, d), {"seq": r["seq"], "origin": wa.session})
        outage_a.append(d)
        for i in range(3):
            d = f"outB-http-{i}"
            seq = await self.b.emit(S, data=d)
            self.assertEqual((await self.event_of(sb, S, d))["seq"], seq)
            outage_b.append(d)
        await self.no_events(sa, S, 0.3)  # B's outage events do not reach A
        await self.no_events(sb, S, 0.3)  # nor A's B

        # -- Redis back on the same port, after 3 s down (the retries are
        # then 1 s apart: the most the spec allows) --
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - t_kill)))
        t_back = time.monotonic()
        await self.redis.start_async(port=self.redis.port)  # in this thread: see RedisServer
        t_started = time.monotonic()
        took_a, _ = await self.wait_health(self.a, 200, 5.0 * SLACK)
        took_b, _ = await self.wait_health(self.b, 200, max(0.5, 5.0 * SLACK - (time.monotonic() - t_started)))
        healed = time.monotonic() - t_started
        print(f"  redis restarted in {t_started - t_back:.2f} s: /healthz 200 on A after {took_a:.2f} s, "
              f"on both after {healed:.2f} s", flush=True)
        self.assertLessEqual(healed, 2.0 * SLACK, "reconnect tries are at most 1 s apart: both nodes "
                                                   "must be linked about 1 s after Redis answers again")
        self.assertEqual(await self.metric(self.a, "scopecast_broker_up"), 1.0)
        self.assertEqual(await self.metric(self.b, "scopecast_broker_up"), 1.0)

        # cross-node delivery again, both ways; each event with one seq: the
        # emitter's answer, on A and on B (compared after the checks below)
        seen = []  # (data, answered seq, seq on A, seq on B)

        async def emit_b(d):
            return await self.b.emit(S, data=d)

        async def emit_a_ws(d):
            return (await wa.ok("emit", scope=S, data=d))["seq"]

        for d, emit in (("after-B", emit_b), ("after-A", emit_a_ws), ("after-B2", emit_b)):
            seq = await emit(d)
            ea = await self.event_of(sa, S, d)
            eb = await self.event_of(sb, S, d)
            seen.append((d, seq, ea["seq"], eb["seq"]))

        # nothing of the outage crossed over after healing, nothing came twice
        await asyncio.sleep(0.5)
        for c in (sa, sb):
            await self.no_events(c, S, 0.3)
        for c, foreign in ((sa, outage_b), (sb, outage_a)):
            datas = [m.get("data") for m in c.log if m.get("op") == "event" and m.get("scope") == S]
            self.assertEqual([d for d in datas if d in foreign], [],
                             f"{c.name}: events emitted on the other node during the outage never arrive")
            dups = [d for d, k in collections.Counter(map(str, datas)).items() if k > 1]
            self.assertEqual(dups, [], f"{c.name}: nothing received twice ({datas})")
            self.assertEqual([m for m in c.log if m.get("op") in ("dropped", "closed", "error")], [], c.name)
        self.assertEqual([x for x in seen if not x[1] == x[2] == x[3]], [],
                         "after healing, every event has one seq: (data, answered, seen on A, seen on B)")
        await self.fence(S, sa, sb)
        await self.fence(S, sa, sb, srv=self.b)


# ------------------------------------------------------------------------------
# 6. A node does not publish again what it received from the broker

class NoRepublish(ClusterCase):
    NODE_ARGS = ("--client-emit",)

    CHANNEL = "scopecast:0:events"  # server/broker.c: "scopecast:<db>:events"

    def watch_redis(self, **kw):
        """A raw Redis client subscribed to channels / patterns."""
        w = RedisSubscriber(self.redis.port, **kw)
        self.addCleanup(w.close)
        return w

    async def test_one_emit_is_one_message_on_the_channel(self):
        S = "rp:1"
        w = self.watch_redis(channels=[self.CHANNEL])
        every = self.watch_redis(patterns=["*"])  # any other channel too
        sa = await self.sub(self.a, S, "subA")
        sb = await self.sub(self.b, S, "subB")
        wa = await self.client(self.a, name="wsA")
        wb = await self.client(self.b, name="wsB")
        cases = []  # (how, unique text in the event's data, seq)
        tag = "u-7f3a91c2"
        seq = await self.a.emit(S, data=f"{tag}-httpA")
        cases.append(("HTTP on A", f"{tag}-httpA", seq))
        seq = await self.b.emit(S, data=f"{tag}-httpB")
        cases.append(("HTTP on B", f"{tag}-httpB", seq))
        seq = (await wa.ok("emit", scope=S, data=f"{tag}-wsA"))["seq"]
        cases.append(("client emit on A", f"{tag}-wsA", seq))
        seq = (await wb.ok("emit", scope=S, data=f"{tag}-wsB"))["seq"]
        cases.append(("client emit on B", f"{tag}-wsB", seq))
        seqs = await self.b.emit_batch([{"scope": S, "data": f"{tag}-batchB{i}"} for i in range(3)])
        cases += [(f"batch item {i} on B", f"{tag}-batchB{i}", s) for i, s in enumerate(seqs)]
        for _, text, seq in cases:
            for c in (sa, sb):
                self.assertEqual((await self.event_of(c, S, text))["seq"], seq)
        # both nodes delivered everything; give a re-publish time to show
        await self.fence(S, sa, sb)
        await asyncio.sleep(1.0)
        for watcher in (w, every):
            self.assertIsNone(watcher.error, f"a Redis watcher failed: {watcher.error!r}")
        epochs = set()
        for how, text, seq in cases:
            msgs = w.matching(f'"{text}"')
            self.assertEqual(len(msgs), 1, f"{how}: one emit, exactly one message on {self.CHANNEL}; "
                                           f"got {[p[:120] for _, p, _ in msgs]}")
            head = re.match(rb"(\d+)/([0-9a-f]{16}) E", msgs[0][1])
            self.assertTrue(head and int(head[1]) == seq,
                            f"{how}: the message starts with the event's seq {seq} and the scope's cluster "
                            f"epoch: {msgs[0][1][:60]!r}")
            epochs.add(head[2])
            msgs = every.matching(f'"{text}"')
            self.assertEqual([ch for ch, _, _ in msgs], [self.CHANNEL.encode()],
                             f"{how}: one message on all of Redis's channels")
        self.assertEqual(len(epochs), 1, f"one cluster epoch for the scope's events: {epochs}")
        print(f"\n  {self.CHANNEL}: {len(w.snapshot())} messages for {len(cases) + 1} emits (the marker "
              f"included); all channels: {len(every.snapshot())}", flush=True)


if __name__ == "__main__":
    main()
