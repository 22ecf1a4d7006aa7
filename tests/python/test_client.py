#!/usr/bin/python3
"""The Python client (clients/python, imported from the source tree) against
the real server, started by tests/integration/harness.py.

    /usr/bin/python3 test_client.py --server build/server/scopecast --web-root web [--sanitized]
"""

import asyncio
import base64
import json
import os
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import harness  # noqa: E402
from harness import (JWT_SECRET, T, ScopecastTestCase, check_drop_accounting, expired_token,  # noqa: E402
                     http_request, main, no_server, server_args, token, wrong_signature_token)

import scopecast  # noqa: E402
from scopecast import (AuthError, Closed, ClientClosed, DisconnectedError, Dropped, Event, Join,  # noqa: E402
                       Leave, MessageTooLarge, RequestError, Resubscribed, Update)

JWT = ("--jwt-secret", JWT_SECRET)
FAST = {"initial_delay": 0.05, "max_delay": 0.5}  # quick reconnects in tests


class ClientCase(ScopecastTestCase):
    TEST_TIMEOUT = 90.0

    async def py(self, srv=None, token=None, **opts):
        """A connected scopecast.Client, closed at the end of the test."""
        for k, v in FAST.items():
            opts.setdefault(k, v)
        opts.setdefault("connect_timeout", T())
        opts.setdefault("request_timeout", T())
        c = await scopecast.connect((srv or self.srv).ws_url(), token, **opts)
        self.addAsyncCleanup(c.close)
        return c

    async def item(self, sub, timeout=None):
        try:
            return await sub.get(timeout=T() if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{sub!r}: no item within {T() if timeout is None else timeout:.1f} s")

    async def until(self, sub, cls, pred=None, timeout=None):
        """Items of `sub` up to the first `cls` instance matching `pred`; returns (it, skipped)."""
        skipped = []
        deadline = time.monotonic() + (T(2) if timeout is None else timeout)
        while True:
            it = await self.item(sub, max(0.01, deadline - time.monotonic()))
            if isinstance(it, cls) and (pred is None or pred(it)):
                return it, skipped
            skipped.append(it)

    async def no_item(self, sub, duration=0.3):
        try:
            it = await sub.get(timeout=duration)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"{sub!r}: unexpected item {it!r}")

    async def eventually(self, cond, what, timeout=None):
        deadline = time.monotonic() + (T(2) if timeout is None else timeout)
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)


class Basics(ClientCase):
    @server_args(*JWT)
    async def test_welcome_session_user(self):
        c = await self.py(token=token("alice"))
        self.assertEqual(c.state, "open")
        self.assertTrue(c.connected)
        self.assertEqual(c.user, "alice")
        self.assertIsInstance(c.session, str)
        self.assertTrue(c.session)
        self.assertEqual(c.welcome.version, 1)
        self.assertEqual(c.welcome.maxsize, 256)
        self.assertEqual(c.welcome.heartbeat, 25)
        self.assertEqual(c.connects, 1)
        self.assertGreaterEqual(await c.ping(), 0.0)
        d = await self.py(token=lambda: token("bo"))  # a sync token function
        self.assertEqual(d.user, "bo")

        async def atoken():
            return token("cy")
        e = await self.py(token=atoken)  # an async one
        self.assertEqual(e.user, "cy")
        self.assertNotEqual(len({c.session, d.session, e.session}), 1)

    @server_args(*JWT)
    async def test_events_from_python_client_and_http(self):
        S = "doc:events"
        alice = await self.py(token=token("alice"))
        bob = await self.py(token=token("bob", emit=True))
        sub = await alice.subscribe(S)
        self.assertEqual(sub.seq, 0)
        self.assertIs(await alice.subscribe(S), sub, "one subscription per scope")

        seq = await bob.emit(S, {"title": "hi"}, paths=["title"])
        ev = await self.item(sub)
        self.assertIsInstance(ev, Event)
        self.assertEqual((ev.scope, ev.seq, ev.paths, ev.data, ev.origin), (S, seq, ["title"], {"title": "hi"},
                                                                            bob.session))
        self.assertEqual((ev.gap, ev.reset, ev.has_data), (0, False, True))

        hseq = await self.srv.emit(S, data=[1, 2], paths=["a", "b"])
        self.assertEqual(hseq, seq + 1)
        ev = await self.item(sub)
        self.assertEqual((ev.seq, ev.data, sorted(ev.paths), ev.origin, ev.gap), (hseq, [1, 2], ["a", "b"], None, 0))
        self.assertEqual(sub.seq, hseq)

        # data: absent vs null
        s3 = await bob.emit(S)
        ev = await self.item(sub)
        self.assertEqual((ev.seq, ev.has_data, ev.data, ev.paths), (s3, False, None, []))
        s4 = await bob.emit(S, None)
        ev = await self.item(sub)
        self.assertEqual((ev.seq, ev.has_data, ev.data), (s4, True, None))

        # audience: an event not for alice leaves a gap, visible in the next event
        s5 = await bob.emit(S, "for carol", audience=["carol"])
        s6 = await bob.emit(S, "for alice", audience=["alice"])
        ev = await self.item(sub)
        self.assertEqual((ev.seq, ev.data, ev.gap), (s6, "for alice", 1))
        self.assertEqual(s6, s5 + 1)

        # the emitter gets its own events only with echo
        bsub = await bob.subscribe(S, echo=True)
        s7 = await bob.emit(S, "echoed")
        self.assertEqual((await self.until(bsub, Event))[0].seq, s7)
        ev, skipped = await self.until(sub, Event)
        self.assertEqual(ev.seq, s7)
        self.assertEqual([(type(j), j.conn["user"]) for j in skipped], [(Join, "bob")])

    @server_args(*JWT)
    async def test_error_replies_raise_request_error(self):
        bob = await self.py(token=token("bob", scopes=["doc:*"]))
        with self.assertRaises(RequestError) as cm:
            await bob.emit("doc:1", {"x": 1})  # no emit claim
        self.assertEqual(cm.exception.code, "forbidden")
        self.assertIsInstance(cm.exception.message, str)
        self.assertTrue(cm.exception.message)
        self.assertEqual((cm.exception.op, cm.exception.scope), ("emit", "doc:1"))
        with self.assertRaises(RequestError) as cm:
            await bob.subscribe("secret:1")
        self.assertEqual(cm.exception.code, "forbidden")
        with self.assertRaises(RequestError) as cm:
            await bob.subscribe("has space")
        self.assertEqual(cm.exception.code, "bad_request")
        with self.assertRaises(RequestError) as cm:
            await bob.presence("secret:1")
        self.assertEqual(cm.exception.code, "forbidden")
        self.assertEqual(bob.subscriptions, [])
        self.assertEqual(bob.connects, 1, "errors keep the connection")
        await bob.ping()

    async def test_unsubscribe_and_server_close(self):
        S = "doc:close"
        c = await self.py()
        sub = await c.subscribe(S)
        await self.srv.emit(S, data=1)
        res = await self.srv.request("POST", "/api/close", {"scope": S})
        self.assertEqual(res.json, {"closed": 1})
        self.assertIsInstance(await self.item(sub), Event)
        closed = await self.item(sub)
        self.assertIsInstance(closed, Closed)
        self.assertEqual(closed.reason, "closed")
        with self.assertRaises(StopAsyncIteration):
            await sub.get(timeout=T())
        self.assertFalse(sub.active)
        self.assertEqual(c.subscriptions, [])
        # a new subscription to the same scope works; unsubscribe ends it
        sub2 = await c.subscribe(S)
        self.assertIsNot(sub2, sub)
        await sub2.unsubscribe()
        self.assertEqual(await self.srv.emit(S, data=2), 0, "nobody subscribed any more")
        got = [it async for it in sub2]
        self.assertEqual(got, [])
        self.assertEqual(await c.presence(S), [])

    async def test_close_ends_waits_and_calls(self):
        c = await self.py()
        sub = await c.subscribe("doc:bye")
        waiting = asyncio.create_task(sub.get())
        await asyncio.sleep(0.1)
        await c.close()
        with self.assertRaises(StopAsyncIteration):
            await asyncio.wait_for(waiting, T())
        self.assertEqual(c.state, "closed")
        with self.assertRaises(ClientClosed):
            await c.emit("doc:bye", 1)
        with self.assertRaises(ClientClosed):
            await c.subscribe("doc:bye")
        # context manager
        async with scopecast.connect(self.srv.ws_url(), connect_timeout=T()) as d:
            self.assertTrue(d.connected)
        self.assertEqual(d.state, "closed")
        await self.eventually(lambda: self._connections() == 0, "the server to see no connection")

    def _connections(self):
        return self.srv.http("GET", "/api/stats").json["connections"]

    @no_server
    async def test_connect_to_nothing_fails_cleanly(self):
        port = harness.free_port()
        t0 = time.monotonic()
        with self.assertRaises(DisconnectedError) as cm:
            await scopecast.connect(f"ws://127.0.0.1:{port}/ws", connect_timeout=1.0, **FAST)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn("could not connect", str(cm.exception))


class Presence(ClientCase):
    SERVER_ARGS = JWT

    async def test_presence_by_user(self):
        S = "room:people"
        a1 = await self.py(token=token("alice"))
        a2 = await self.py(token=token("alice"))
        bo = await self.py(token=token("bob"))
        sub = await a1.subscribe(S, meta={"tab": 1})
        self.assertEqual([c["session"] for c in sub.presence], [a1.session])
        self.assertEqual(sub.presence[0]["meta"], {"tab": 1})
        await bo.subscribe(S)
        j = await self.item(sub)
        self.assertIsInstance(j, Join)
        self.assertEqual((j.conn["user"], j.first), ("bob", True))
        sub2 = await a2.subscribe(S, meta={"tab": 2})
        j = await self.item(sub)
        self.assertEqual((j.conn["session"], j.conn["user"], j.first), (a2.session, "alice", False))
        self.assertEqual(j.conn["meta"], {"tab": 2})

        users = sub.users
        self.assertEqual([u.user for u in users], ["alice", "bob"], "two people, ordered by arrival")
        self.assertEqual(sorted(c["session"] for c in users[0].connections), sorted([a1.session, a2.session]))
        self.assertEqual((users[0].self, users[1].self), (True, False))
        self.assertEqual(len(sub2.users), 2)
        self.assertTrue(sub2.users[0].self)
        self.assertEqual(len(await bo.presence(S)), 3)

        await sub2.unsubscribe()
        lv = await self.item(sub)
        self.assertIsInstance(lv, Leave)
        self.assertEqual((lv.conn["session"], lv.last), (a2.session, False))
        await bo.close()
        lv = await self.item(sub)
        self.assertEqual((lv.conn["user"], lv.last), ("bob", True))
        self.assertEqual([(u.user, len(u.connections)) for u in sub.users], [("alice", 1)])

    async def test_blind_subscription(self):
        S = "room:blind"
        a = await self.py(token=token("alice"))
        b = await self.py(token=token("bob"))
        sub = await a.subscribe(S)
        blind = await b.subscribe(S, presence=False)
        self.assertEqual(blind.presence, [])
        seq = await self.srv.emit(S, data="x")
        self.assertEqual((await self.item(sub)).seq, seq, "no join of the blind subscriber before the event")
        self.assertEqual((await self.item(blind)).seq, seq)
        self.assertEqual([c["user"] for c in await a.presence(S)], ["alice"])


class Reconnect(ClientCase):
    SERVER_ARGS = ("--client-emit",)

    async def _restart_mid_stream(self, kill):
        S = "doc:restart"
        c = await self.py()
        other = await self.py()
        sub = await c.subscribe(S, meta={"who": "c"})
        await other.subscribe(S)
        self.assertIsInstance(await self.item(sub), Join)
        for k in range(3):
            await self.srv.emit(S, data=k)
        got = [(await self.item(sub)).data for _ in range(3)]
        self.assertEqual(got, [0, 1, 2])
        self.assertEqual(sub.seq, 3)
        old_session = c.session

        if kill:
            self.srv.signal(signal.SIGKILL)
            self.srv.proc.wait()
        else:
            # in a thread: the clients must go on reading while the server drains
            self.assertEqual(await asyncio.to_thread(self.srv.stop), 0, self.srv.stop_error)
        self.srv.expected_exit = True
        await self.eventually(lambda: not c.connected, "the client to notice the lost connection")
        self.assertIn(c.state, ("reconnecting", "connecting"))
        # a request made while the server is away waits for the new connection
        queued = asyncio.create_task(c.emit(S, "sent while away", timeout=T(4)))
        await asyncio.sleep(0.5)  # a few failed attempts (connection refused)
        self.assertFalse(queued.done())

        srv2 = await asyncio.to_thread(self.restart_on_same_port, self.srv)
        self.assertEqual(srv2.port, self.srv.port)
        re, skipped = await self.until(sub, Resubscribed, timeout=T(4))
        self.assertEqual([type(s) for s in skipped], [], "nothing between the last event and Resubscribed")
        self.assertTrue(re.reset, re)  # a new server: the scope starts again
        self.assertEqual((re.previous_seq, re.missed), (3, None))
        self.assertIn(c.session, [p["session"] for p in re.presence])
        self.assertNotEqual(c.session, old_session)
        self.assertEqual([p["meta"] for p in sub.presence if p["session"] == c.session], [{"who": "c"}],
                         "meta kept over the reconnect")
        self.assertEqual(c.connects, 2)

        # the queued emit went out after the resubscribe: its event reaches the subscription
        qseq = await asyncio.wait_for(queued, T(4))
        self.assertEqual(qseq, re.seq + 1)
        # and `other` (resubscribed too) sees it; c has no echo
        # the stream goes on, on the new server
        hseq = await srv2.emit(S, data="after")
        self.assertEqual(hseq, qseq + 1)
        ev, skipped = await self.until(sub, Event)
        self.assertEqual((ev.seq, ev.data, ev.gap, ev.reset), (hseq, "after", 1, False),
                         "own emit (no echo) is a gap of one")
        self.assertTrue(all(isinstance(s, (Join, Leave)) for s in skipped), skipped)
        await self.eventually(lambda: len(sub.presence) == 2, "presence of both clients on the new server")
        self.assertEqual(await other.emit(S, "from other"), hseq + 1)
        ev, _ = await self.until(sub, Event)
        self.assertEqual(ev.data, "from other")

    async def test_server_restart_sigterm_resubscribes(self):
        await self._restart_mid_stream(kill=False)

    async def test_server_killed_resubscribes(self):
        await self._restart_mid_stream(kill=True)


def _raw_subscribe(port, scope, meta):
    """A blocking WebSocket connection (from a thread) that subscribes to
    `scope`; returns the socket, left open."""
    sock = socket.create_connection((harness.HOST, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {harness.HOST}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError("no upgrade answer")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise AssertionError(f"upgrade refused: {head[:100]!r}")
    sock.sendall(harness.build_frame(harness.OP_TEXT, json.dumps({"op": "subscribe", "scope": scope, "meta": meta})))
    return sock


def _blocked_flood(case, S, N, BATCH, PAYLOAD, midway=None):
    """Emits N events of PAYLOAD bytes into S over HTTP from a thread,
    BATCH per request, while this event loop is blocked on purpose: the
    client reads nothing meanwhile. `midway` (a function) runs in that
    thread halfway through."""
    port = case.srv.port
    failures = []

    def flood():
        try:
            for i in range(0, N, BATCH):
                if midway is not None and i == (N // 2) // BATCH * BATCH:
                    midway()
                items = [{"scope": S, "data": f"{k:06d}" + "x" * (PAYLOAD - 6)} for k in range(i, i + BATCH)]
                res = http_request(port, "POST", "/api/emit", items, timeout=30)
                if res.status != 202:
                    failures.append(res)
                    return
        except Exception as e:  # reported below
            failures.append(e)

    t = threading.Thread(target=flood)
    asyncio.get_running_loop().slow_callback_duration = 600  # the block below is on purpose
    t.start()
    t.join(timeout=T(20))  # blocks this event loop on purpose: nobody reads the socket
    case.assertFalse(t.is_alive(), "the flood did not finish")
    case.assertEqual(failures, [])


class Drops(ClientCase):
    @server_args("--maxsize", "16")
    async def test_dropped_by_server(self):
        """The client's process does not read its socket (its event loop is
        blocked) while 16 MB of events arrive: the server drops and says so;
        the client surfaces Dropped(local=False), with exact accounting."""
        S = "doc:flood"
        N, BATCH, PAYLOAD = 4000, 16, 4000
        c = await self.py(max_queue=None)
        sub = await c.subscribe(S)
        self.assertEqual(c.welcome.maxsize, 16)
        _blocked_flood(self, S, N, BATCH, PAYLOAD)
        tail = [await self.srv.emit(S, data=f"tail{k}") for k in range(5)]
        self.assertEqual(tail[-1], N + 5)
        msgs = []
        while True:
            it = await self.item(sub, T(4))
            if isinstance(it, Dropped):
                self.assertFalse(it.local, it)
                msgs.append({"op": "dropped", "count": it.count})
            elif isinstance(it, Event):
                msgs.append({"op": "event", "seq": it.seq})
                if it.seq == tail[-1]:
                    break
        received, dropped = check_drop_accounting(msgs, 1, tail[-1])
        self.assertGreater(dropped, 0, "a client that did not read 16 MB must have lost events")
        self.assertEqual(received + dropped, N + 5)
        self.assertEqual(sub.dropped, dropped)
        self.assertEqual(c.connects, 1)
        await c.ping()

    async def test_dropped_locally_when_not_iterated(self):
        """A subscription the application does not read buffers max_queue
        items; the rest are counted and reported as Dropped(local=True)."""
        S = "doc:unread"
        c = await self.py()
        sub = await c.subscribe(S, max_queue=8)
        seqs = await self.srv.emit_batch([{"scope": S, "data": k} for k in range(50)])
        await self.eventually(lambda: sub.seq == seqs[-1], "all 50 events to arrive")
        got = [await self.item(sub) for _ in range(9)]
        self.assertEqual([g.seq for g in got[:8]], seqs[:8])
        self.assertEqual(got[8], Dropped(S, 42, True))
        self.assertEqual(sub.dropped, 42)
        later = await self.srv.emit(S, data="later")
        ev = await self.item(sub)
        self.assertEqual((ev.seq, ev.data, ev.gap), (later, "later", 0))
        await self.no_item(sub)


class PresenceUpdates(ClientCase):
    SERVER_ARGS = JWT

    async def test_update_presence(self):
        S = "room:upd"
        a = await self.py(token=token("alice"))
        b = await self.py(token=token("bob"))
        sa = await a.subscribe(S, meta={"typing": False})
        sb = await b.subscribe(S)
        self.assertIsInstance(await self.item(sa), Join)
        await sa.update_presence({"typing": True})
        self.assertEqual(sa.meta, {"typing": True})
        self.assertEqual([c["meta"] for c in sa.presence if c["session"] == a.session], [{"typing": True}],
                         "the own entry changes at once")
        up = await self.item(sb)
        self.assertIsInstance(up, Update)
        self.assertEqual((up.op, up.scope, up.conn["session"], up.conn["user"], up.conn["meta"]),
                         ("update", S, a.session, "alice", {"typing": True}))
        self.assertEqual([c["meta"] for c in sb.presence if c["session"] == a.session], [{"typing": True}])
        await self.no_item(sa)  # no update to the updater
        self.assertEqual([c["meta"] for c in await b.presence(S) if c["session"] == a.session], [{"typing": True}])
        # by scope, on the client
        await asyncio.sleep(0.06)  # past the server's 20 a second
        await a.update_presence(S, {"v": 2})
        up = await self.item(sb)
        self.assertEqual(up.conn["meta"], {"v": 2})
        # errors
        with self.assertRaises(RequestError) as cm:
            await b.update_presence("room:none", {"x": 1})
        self.assertEqual(cm.exception.code, "not_found")
        blind = await b.subscribe("room:blind", presence=False)
        with self.assertRaises(RequestError) as cm:
            await blind.update_presence({"x": 1})
        self.assertEqual(cm.exception.code, "not_found")
        with self.assertRaises(TypeError):
            await a.update_presence(S, ["not", "an", "object"])
        # the meta goes with the resubscribe after a lost connection
        a._ws.transport.abort()
        j, _ = await self.until(sb, Join, timeout=T(3))
        self.assertEqual((j.conn["user"], j.conn["meta"]), ("alice", {"v": 2}))


class Recovery(ClientCase):
    """History (docs/PROTOCOL.md "History and recovery"): the client
    subscribes again with `since` and gets what it missed, in order; a
    `dropped` notice is repaired from the history."""
    SERVER_ARGS = ("--history", "doc:*=5000,small:*=5")

    async def gated(self, **opts):
        """A client whose reconnects wait until gate is set."""
        gate = asyncio.Event()
        gate.set()

        async def tok():
            await gate.wait()
            return None
        c = await self.py(token=tok, **opts)
        return c, gate

    async def test_reconnect_recovers_what_was_missed(self):
        S = "doc:rec"
        c, gate = await self.gated()
        sub = await c.subscribe(S)
        self.assertIsInstance(sub.epoch, str)
        self.assertIsNone(sub.recovered, "a subscribe without since")
        seqs = [await self.srv.emit(S, data=k) for k in range(3)]
        self.assertEqual([(await self.item(sub)).seq for _ in range(3)], seqs)
        epoch = sub.epoch
        gate.clear()
        c._ws.transport.abort()  # the network goes; the client reconnects by itself
        await self.eventually(lambda: not c.connected, "the client to notice")
        missed = await self.srv.emit_batch([{"scope": S, "data": {"m": k}} for k in range(20)])
        gate.set()
        re_, skipped = await self.until(sub, Resubscribed, timeout=T(3))
        self.assertEqual(skipped, [])
        self.assertEqual((re_.recovered, re_.missed, re_.reset, re_.previous_seq, re_.seq),
                         (True, 0, False, seqs[-1], missed[-1]))
        self.assertEqual((sub.recovered, sub.epoch), (True, epoch))
        got = [await self.item(sub) for _ in range(20)]
        self.assertEqual([(type(e), e.seq, e.data, e.gap) for e in got],
                         [(Event, s, {"m": k}, 0) for k, s in enumerate(missed)])
        live = await self.srv.emit(S, data="live")
        ev = await self.item(sub)
        self.assertEqual((ev.seq, ev.data, ev.gap), (live, "live", 0))
        await self.no_item(sub)
        self.assertEqual((sub.dropped, c.connects), (0, 2))

    async def test_reconnect_past_the_history_is_not_recovered(self):
        S = "small:rec"
        c, gate = await self.gated()
        sub = await c.subscribe(S)
        first = await self.srv.emit(S, data=0)
        self.assertEqual((await self.item(sub)).seq, first)
        gate.clear()
        c._ws.transport.abort()
        await self.eventually(lambda: not c.connected, "the client to notice")
        missed = await self.srv.emit_batch([{"scope": S, "data": k} for k in range(10)])  # 5 kept
        gate.set()
        re_, _ = await self.until(sub, Resubscribed, timeout=T(3))
        self.assertEqual((re_.recovered, re_.missed, re_.reset, re_.seq), (False, 10, False, missed[-1]))
        await self.no_item(sub)
        live = await self.srv.emit(S, data="live")
        ev = await self.item(sub)
        self.assertEqual((ev.seq, ev.gap), (live, 0))

    async def test_recover_false_resubscribes_without_since(self):
        S = "doc:norec"
        c, gate = await self.gated(recover=False)
        sub = await c.subscribe(S)
        await self.srv.emit(S, data=0)
        await self.item(sub)
        gate.clear()
        c._ws.transport.abort()
        await self.eventually(lambda: not c.connected, "the client to notice")
        missed = await self.srv.emit_batch([{"scope": S, "data": k} for k in range(4)])
        gate.set()
        re_, _ = await self.until(sub, Resubscribed, timeout=T(3))
        self.assertEqual((re_.recovered, re_.missed), (None, 4))
        self.assertEqual(re_.seq, missed[-1])
        await self.no_item(sub)

    async def test_subscribe_with_since(self):
        S = "doc:since"
        seqs = await self.srv.emit_batch([{"scope": S, "data": k} for k in range(6)])  # kept without subscribers
        c = await self.py()
        sub = await c.subscribe(S, since=(0, None))
        # sub.seq follows what the reader took in: the replay may already
        # be in when subscribe() returns
        self.assertTrue(sub.recovered)
        got = [await self.item(sub) for _ in range(6)]
        self.assertEqual(sub.seq, seqs[-1])
        self.assertEqual([(e.seq, e.data, e.gap) for e in got], [(s, k, 0) for k, s in enumerate(seqs)])
        epoch = sub.epoch
        d = await self.py()
        sub2 = await d.subscribe(S, since={"seq": seqs[2], "epoch": epoch})
        self.assertEqual((sub2.recovered, sub2.epoch), (True, epoch))
        self.assertEqual([(await self.item(sub2)).seq for _ in range(3)], seqs[3:])
        await self.no_item(sub2)
        e = await self.py()
        sub3 = await e.subscribe(S, since=(seqs[2], epoch + "-old"))
        self.assertEqual((sub3.recovered, sub3.seq), (False, seqs[-1]))
        await self.no_item(sub3)
        with self.assertRaises(ValueError):
            await e.subscribe("doc:x", since=(-1, None))

    @server_args("--maxsize", "16")
    async def test_dropped_is_repaired_from_the_history(self):
        """As Drops.test_dropped_by_server, in a scope with history: the
        server drops, the client answers with a subscribe with since on its
        live subscription, and the application sees every event in order,
        no Dropped."""
        S = "doc:flood"
        N, BATCH, PAYLOAD = 4000, 16, 4000
        c = await self.py(max_queue=None)
        sub = await c.subscribe(S)
        joiner = []  # someone joins while the client does not read: its join is lost or discarded

        def join():
            joiner.append(_raw_subscribe(self.srv.port, S, {"who": "joiner"}))
        _blocked_flood(self, S, N, BATCH, PAYLOAD, midway=join)
        self.addCleanup(joiner[0].close)
        tail = [await self.srv.emit(S, data=f"tail{k}") for k in range(5)]
        seqs, joins = [], []
        while not seqs or seqs[-1] < tail[-1]:
            it = await self.item(sub, T(4))
            if isinstance(it, Join):
                joins.append(it)
                continue
            if not isinstance(it, Event):
                raise AssertionError(f"only events and one join expected, got {it!r} after seq {seqs[-1:] or None}")
            self.assertEqual(it.gap, 0, it)
            seqs.append(it.seq)
        self.assertEqual(seqs, list(range(1, N + 6)))
        # the join came as a push or from the repositioning reply's presence: once
        self.assertEqual([j.conn["meta"] for j in joins], [{"who": "joiner"}])
        self.assertTrue(joins[0].first)
        self.assertEqual(sorted(p["meta"].get("who", "") for p in sub.presence), ["", "joiner"])
        self.assertEqual(sub.dropped, 0)
        self.assertGreaterEqual(sub.recoveries, 1, "the server must have dropped (test setup)")
        self.assertEqual(c.connects, 1)
        await self.no_item(sub)


class Auth(ClientCase):
    SERVER_ARGS = JWT

    async def test_bad_token_raises_auth_error(self):
        url = self.srv.ws_url()
        for bad in (wrong_signature_token("alice"), expired_token("alice"), "not-a-jwt"):
            with self.assertRaises(AuthError) as cm:
                await scopecast.connect(url, bad, connect_timeout=T(), **FAST)
            self.assertEqual(cm.exception.code, "unauthorized")
            self.assertEqual(cm.exception.close_code, 4401)
        with self.assertRaises(AuthError):
            await scopecast.connect(url, None, connect_timeout=T(), **FAST)  # a token is required
        calls = []

        def bad_fn():
            calls.append(1)
            return wrong_signature_token("alice")
        with self.assertRaises(AuthError):
            await scopecast.connect(url, bad_fn, connect_timeout=T(), **FAST)
        self.assertEqual(len(calls), 1, "a refused token is not retried")

    async def test_expiry_on_open_connection_surfaces(self):
        c = await self.py(token=token("alice", exp_in=2))  # a fixed string: nothing can renew it
        sub = await c.subscribe("doc:exp")
        with self.assertRaises(AuthError) as cm:
            await sub.get(timeout=T(2))  # waits until the server closes with 4401
        self.assertEqual(cm.exception.close_code, 4401)
        self.assertEqual(c.state, "closed")
        self.assertIsInstance(c.error, AuthError)
        with self.assertRaises(AuthError):
            await c.emit("doc:exp", 1)
        with self.assertRaises(AuthError):
            await c.subscribe("doc:other")

    async def test_token_function_refreshes_before_exp(self):
        calls = []

        def fresh():
            calls.append(time.time())
            return token("alice", exp_in=3)
        c = await self.py(token=fresh, refresh_before=60)  # capped at half the lifetime
        sub = await c.subscribe("doc:refresh")
        await asyncio.sleep(6)
        self.assertEqual((c.state, c.connects), ("open", 1), "the token was refreshed on the same connection")
        self.assertGreaterEqual(len(calls), 3)
        seq = await self.srv.emit("doc:refresh", data="still here")
        self.assertEqual((await self.item(sub)).seq, seq)

    async def test_refresh_op(self):
        c = await self.py(token=token("alice", exp_in=600))
        new = token("alice", exp_in=1200)
        exp = await c.refresh(new)
        self.assertEqual(exp, harness.jwt_claims(new)["exp"])
        with self.assertRaises(RequestError) as cm:
            await c.refresh(token("mallory"))
        self.assertEqual(cm.exception.code, "forbidden")
        with self.assertRaises(RequestError) as cm:
            await c.refresh(wrong_signature_token("alice"))
        self.assertEqual(cm.exception.code, "unauthorized")
        await c.ping()
        self.assertEqual(c.connects, 1)


class Limits(ClientCase):
    @server_args("--client-emit", "--max-message", "1024")
    async def test_oversize_emit_refused_locally(self):
        c = await self.py()
        if c.welcome.maxmessage is None:
            self.skipTest("the server's welcome carries no maxmessage: nothing to check against")
        self.assertEqual(c.welcome.maxmessage, 1024)
        watcher = await self.py()
        sub = await watcher.subscribe("doc:big")
        with self.assertRaises(MessageTooLarge) as cm:
            await c.emit("doc:big", "x" * 2000)
        self.assertEqual((cm.exception.code, cm.exception.limit), ("too_large", 1024))
        self.assertGreater(cm.exception.size, 2000)
        with self.assertRaises(MessageTooLarge):
            await c.emit("doc:big", "é" * 510)  # 1020 characters, but over 1024 bytes
        seq = await c.emit("doc:big", "x" * 900)  # under the limit: sent
        ev = await self.item(sub)
        self.assertEqual(ev.seq, seq, "nothing of the refused emits reached the server")
        self.assertEqual(len(ev.data), 900)
        self.assertEqual((c.connects, c.close_code, c.state), (1, None, "open"), "no 1009 close")
        await c.ping()


if __name__ == "__main__":
    main()
