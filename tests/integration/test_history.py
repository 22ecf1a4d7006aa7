#!/usr/bin/python3
"""History and recovery (docs/PROTOCOL.md, "History and recovery" in the
additions): scopes of `--history PATTERNS` keep their recent events; a
`subscribe` with `since:{seq,epoch}` gets `recovered:true` and exactly the
events it missed (then live ones, no gap and no duplicate at the seam,
whatever is emitted meanwhile), or `recovered:false` and nothing; epochs
change with a server restart; audiences and `echo` hold in a replay and in
`GET /api/history`; a live subscription that got `dropped` is repositioned
by a `subscribe` with `since` without anyone seeing leave/join; an emit into
a history scope without subscribers is sequenced and kept; history stays
within `--history-max-bytes` under a flood of a million events.

    /usr/bin/python3 test_history.py --server build/server/scopecast --web-root web

The module runs again with `--threads 2` (SC_IT_SERVER_ARGS, see
CMakeLists.txt). The flood's size comes down under sanitizers
(SC_SANITIZER): 200,000 events instead of 1,000,000, and the RSS bound is
not asserted there (ASan's quarantine and shadow memory are not the
server's): the figures are printed either way.
"""

import asyncio
import http.client
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (HOST, JWT_SECRET, T, ScopecastTestCase, WSClient, is_int,  # noqa: E402
                     main, server_args, token)

HIST = "doc:*=500,small:*=10,race:*=100000,gap:*=1000,ttl:*=1s"
JWT = ("--jwt-secret", JWT_SECRET, "--allow-anonymous", "--anonymous-scopes", "*")
SANITIZED = bool(os.environ.get("SC_SANITIZER")) or "--sanitized" in sys.argv


def since(seq, epoch):
    d = {"seq": seq}
    if epoch is not None:
        d["epoch"] = epoch
    return d


class KeepAlive:
    """One kept-alive HTTP/1.1 connection (blocking: use it from a thread,
    or in short bursts)."""

    def __init__(self, port, timeout=30.0):
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def post(self, path, body):
        data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        res = self.conn.getresponse()
        payload = res.read()
        if res.getheader("connection", "").lower() == "close":
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        return res.status, payload

    def emit(self, items):
        """A batch; returns the seqs."""
        status, payload = self.post("/api/emit", items)
        if status != 202:
            raise AssertionError(f"POST /api/emit (batch of {len(items)}) -> {status} {payload[:300]!r}")
        return [r["seq"] for r in json.loads(payload)["results"]]

    def close(self):
        self.conn.close()


class HistoryCase(ScopecastTestCase):
    SERVER_ARGS = ("--history", HIST, *JWT)
    TEST_TIMEOUT = 90.0

    async def sub_since(self, c, scope, seq=None, epoch=None, **fields):
        """subscribe with `since` (or without when seq is None); the reply,
        which must be `subscribed` with a string epoch."""
        if seq is not None:
            fields["since"] = since(seq, epoch)
        m = await c.call("subscribe", scope=scope, **fields)
        if m.get("op") != "subscribed":
            raise AssertionError(f"{c.name}: subscribe {scope!r} {fields!r} answered {m!r}")
        self.assertIsInstance(m.get("epoch"), str, f"subscribed must carry a string epoch: {m!r}")
        self.assertTrue(m["epoch"], m)
        self.assertTrue(is_int(m.get("seq")), m)
        return m

    async def history(self, scope, since_=None, srv=None, status=200, **q):
        query = {"scope": scope}
        if since_ is not None:
            query["since"] = since_
        query.update(q)
        res = await (srv or self.srv).request("GET", "/api/history?" + urllib.parse.urlencode(query))
        if res.status != status:
            raise AssertionError(f"GET /api/history {query!r} -> {res!r}, expected {status}")
        return res.json

    async def scope_events(self, c, scope, n, timeout=None):
        """The next n pushes of `scope`, which must all be events."""
        out = []
        for _ in range(n):
            m = await c.push(scope, timeout=timeout)
            if m["op"] != "event":
                raise AssertionError(f"{c.name}: expected an event of {scope!r} (#{len(out) + 1} of {n}), "
                                     f"got {m!r}; events so far: {[e['seq'] for e in out]}")
            out.append(m)
        return out

    async def nothing_of(self, c, scope, duration=0.4):
        got = await c.quiet(duration, pred=lambda m: m.get("scope") == scope and m.get("op") == "event")
        self.assertEqual(got, [], f"{c.name}: no event of {scope!r} expected")

    async def metric(self, name, srv=None):
        body = (await (srv or self.srv).request("GET", "/metrics")).body.decode()
        m = re.search(rf"^{name}(?:{{[^}}]*}})? (\d+(?:\.\d+)?(?:e\+?\d+)?)$", body, re.M)
        if not m:
            raise AssertionError(f"/metrics has no {name}")
        return int(float(m.group(1)))

    async def start_point(self, scope, n_before=3, name="c1", **kw):
        """A client subscribed to `scope` that received n_before events;
        returns (client, last seq, epoch)."""
        c = await self.client(name=name, **kw)
        sub = await self.sub_since(c, scope)
        epoch = sub["epoch"]
        last = sub["seq"]
        for k in range(n_before):
            seq = await self.srv.emit(scope, data={"before": k})
            ev = await c.push(scope)
            self.assertEqual((ev["op"], ev["seq"]), ("event", seq), ev)
            self.assertEqual(seq, last + 1, "seqs rise by one")
            last = seq
        return c, last, epoch


class Recovery(HistoryCase):
    async def test_recovery_after_abrupt_disconnect(self):
        """1. away while 50 events are emitted: recovered:true, exactly those
        50 in order, then live events with no gap or duplicate."""
        S = "doc:recover"
        c, last, epoch = await self.start_point(S)
        c.ws.transport.abort()  # no close frame
        items = [{"scope": S, "data": {"k": k}, "paths": [f"p{k % 3}"]} for k in range(50)]
        seqs = await self.srv.emit_batch(items)
        self.assertEqual(seqs, list(range(last + 1, last + 51)))
        c2 = await self.client(name="c2")
        sub = await self.sub_since(c2, S, last, epoch)
        self.assertSub(sub, {"recovered": True, "epoch": epoch, "seq": last + 50, "scope": S})
        keys = list(sub)
        self.assertLess(keys.index("seq"), keys.index("epoch"), f"epoch comes after seq: {keys}")
        evs = await self.scope_events(c2, S, 50)
        self.assertEqual([e["seq"] for e in evs], seqs)
        for k, e in enumerate(evs):
            self.assertSub(e, {"op": "event", "scope": S, "data": {"k": k}, "paths": [f"p{k % 3}"],
                               "origin": None})
        # live events follow: no duplicate of the replay, no gap
        live = [await self.srv.emit(S, data={"live": k}) for k in range(5)]
        self.assertEqual(live, list(range(last + 51, last + 56)))
        evs = await self.scope_events(c2, S, 5)
        self.assertEqual([(e["seq"], e["data"]) for e in evs], [(s, {"live": k}) for k, s in enumerate(live)])
        await self.nothing_of(c2, S)

    async def test_since_zero_on_a_history_scope_replays_all_kept(self):
        S = "doc:fromzero"
        seqs = await self.srv.emit_batch([{"scope": S, "data": k} for k in range(7)])
        self.assertEqual(seqs, list(range(1, 8)), "a history scope sequences emits without subscribers")
        c = await self.client()
        sub = await self.sub_since(c, S, 0, None)  # epoch may be left out with seq 0
        self.assertSub(sub, {"recovered": True, "seq": 7})
        self.assertEqual([e["data"] for e in await self.scope_events(c, S, 7)], list(range(7)))
        await self.nothing_of(c, S)

    async def test_nothing_missed_is_recovered_with_nothing_replayed(self):
        """3c. since = the scope's seq: recovered:true, no replay, live events."""
        S = "doc:uptodate"
        c, last, epoch = await self.start_point(S)
        c.ws.transport.abort()
        c2 = await self.client(name="c2")
        sub = await self.sub_since(c2, S, last, epoch)
        self.assertSub(sub, {"recovered": True, "epoch": epoch, "seq": last})
        await self.nothing_of(c2, S)
        self.assertEqual(await self.marker(S, c2), last + 1)
        # a never-used scope, since 0 without epoch: nothing came after 0
        c3 = await self.client(name="c3")
        self.assertSub(await self.sub_since(c3, "doc:fresh", 0, None), {"recovered": True, "seq": 0})
        await self.nothing_of(c3, "doc:fresh")

    async def test_history_exceeded_is_not_recovered(self):
        """3a. small:*=10: 10 missed are recovered, 11 are not (nothing
        replayed, live events flow, the reply says where the scope stands)."""
        S = "small:1"
        c, last, epoch = await self.start_point(S)
        c.ws.transport.abort()
        seqs = await self.srv.emit_batch([{"scope": S, "data": k} for k in range(10)])
        c2 = await self.client(name="c2")
        sub = await self.sub_since(c2, S, last, epoch)
        self.assertSub(sub, {"recovered": True, "epoch": epoch}, "(exactly the history's 10 missed)")
        self.assertEqual([e["seq"] for e in await self.scope_events(c2, S, 10)], seqs)
        last = seqs[-1]
        c2.ws.transport.abort()
        seqs = await self.srv.emit_batch([{"scope": S, "data": k} for k in range(11)])
        c3 = await self.client(name="c3")
        sub = await self.sub_since(c3, S, last, epoch)
        self.assertSub(sub, {"recovered": False, "epoch": epoch, "seq": seqs[-1]},
                       "(11 missed, 10 kept: the scope lived on, same epoch)")
        await self.nothing_of(c3, S, 0.5)
        self.assertEqual(await self.marker(S, c3), seqs[-1] + 1, "live events follow")
        # 50 missed, since 0 too
        c3.ws.transport.abort()
        seqs = await self.srv.emit_batch([{"scope": S, "data": k} for k in range(50)])
        c4 = await self.client(name="c4")
        self.assertSub(await self.sub_since(c4, S, seqs[0] - 2, epoch), {"recovered": False, "seq": seqs[-1]})
        c5 = await self.client(name="c5")
        self.assertSub(await self.sub_since(c5, S, 0, None, presence=False), {"recovered": False})
        await self.nothing_of(c4, S, 0.3)
        await self.nothing_of(c5, S, 0.1)
        m = await self.marker(S, c4, c5)
        self.assertEqual(m, seqs[-1] + 1)

    async def test_scope_without_history_is_not_recovered_when_events_were_missed(self):
        """3b. a scope without history (kept alive by an observer)."""
        S = "nohist:1"
        obs = await self.client(name="observer")
        await self.sub_since(obs, S)
        c, last, epoch = await self.start_point(S, name="c1")
        c.ws.transport.abort()
        seqs = [await self.srv.emit(S, data=k) for k in range(3)]
        self.assertEqual(seqs, [last + 1, last + 2, last + 3])
        c2 = await self.client(name="c2")
        sub = await self.sub_since(c2, S, last, epoch)
        self.assertSub(sub, {"recovered": False, "epoch": epoch, "seq": seqs[-1]})
        await self.nothing_of(c2, S, 0.5)
        self.assertEqual(await self.marker(S, c2), seqs[-1] + 1)
        # nothing missed: recovered even without history
        c3 = await self.client(name="c3")
        self.assertSub(await self.sub_since(c3, S, seqs[-1] + 1, epoch), {"recovered": True})
        await self.nothing_of(c3, S)
        self.assertEqual(await self.marker(S, c3), seqs[-1] + 2)

    async def test_since_above_the_scopes_seq_or_wrong_epoch_is_not_recovered(self):
        S = "doc:above"
        c, last, epoch = await self.start_point(S)
        self.assertSub(await self.sub_since(await self.client(name="a"), S, last + 5, epoch),
                       {"recovered": False, "seq": last, "epoch": epoch})
        self.assertSub(await self.sub_since(await self.client(name="b"), S, 1, epoch + "x"),
                       {"recovered": False, "seq": last, "epoch": epoch})
        # a plain subscribe says nothing wrong either way
        self.assertSub(await self.sub_since(await self.client(name="d"), S), {"seq": last, "epoch": epoch})

    async def test_bad_since_is_bad_request(self):
        c = await self.client()
        for bad in ({"seq": -1, "epoch": "e"}, {"seq": "3", "epoch": "e"}, {"seq": 1.5, "epoch": "e"},
                    {"seq": 3, "epoch": 7}, 5, "x", [1]):
            m = await c.call("subscribe", scope="doc:bad", since=bad)
            self.assertError(m, "bad_request", id=m.get("id"))
        # null means absent: a plain subscribe
        m = await c.call("subscribe", scope="doc:bad", since=None)
        self.assertEqual(m.get("op"), "subscribed", m)
        self.assertNotIn("recovered", m, "a subscribe without since is not a recovery")

    async def test_every_subscribed_carries_an_epoch(self):
        c = await self.client()
        a = await self.sub_since(c, "doc:ep1")
        b = await self.sub_since(c, "plain:ep1")  # no history
        self.assertNotEqual(a["epoch"], "")
        self.assertNotEqual(b["epoch"], "")
        again = await self.sub_since(c, "doc:ep1")
        self.assertEqual(again["epoch"], a["epoch"], "the same life of the scope")
        d = await self.client(name="d")
        self.assertEqual((await self.sub_since(d, "doc:ep1"))["epoch"], a["epoch"])
        self.assertNotEqual(a["epoch"], b["epoch"], "two scopes' epochs name different lives")

    async def test_epoch_changes_after_restart(self):
        """4. the same port, a new server: the old epoch is not recovered even
        where the new seqs cover the old ones."""
        S = "doc:restart"
        c, last, epoch = await self.start_point(S, n_before=3)
        self.assertEqual(await asyncio.to_thread(self.srv.stop), 0, self.srv.stop_error)
        self.srv.expected_exit = True
        srv2 = await asyncio.to_thread(self.restart_on_same_port, self.srv)
        self.assertEqual(srv2.port, self.srv.port)
        seqs = [await srv2.emit(S, data=k) for k in range(6)]  # kept: the scope has history
        self.assertEqual(seqs, list(range(1, 7)), "the scope starts again at 1 on the new server")
        c2 = await self.client(srv2, name="c2")
        sub = await self.sub_since(c2, S, last, epoch)
        self.assertSub(sub, {"recovered": False, "seq": 6})
        self.assertNotEqual(sub["epoch"], epoch, "a new server, a new epoch")
        await self.nothing_of(c2, S, 0.5)
        self.assertEqual(await self.marker(S, c2, srv=srv2), 7)
        h = await self.history(S, last, srv=srv2, epoch=epoch)
        self.assertSub(h, {"recovered": False, "events": []})
        self.assertEqual(h["epoch"], sub["epoch"])

    async def test_expired_events_leave_and_the_scope_starts_a_new_epoch(self):
        """ttl:*=1s: events older than a second leave (checked every
        second); a scope with nothing left comes to life again with a new
        epoch."""
        S = "ttl:1"
        seqs = await self.srv.emit_batch([{"scope": S, "data": k} for k in range(3)])
        self.assertEqual(seqs, [1, 2, 3])
        h = await self.history(S, 0)
        self.assertSub(h, {"recovered": True, "seq": 3})
        self.assertEqual([e["seq"] for e in h["events"]], [1, 2, 3])
        old = h["epoch"]
        await asyncio.sleep(2.6)
        h = await self.history(S, 0, epoch=old)
        self.assertEqual(h["events"], [], h)
        seq = await self.srv.emit(S, data="again")
        self.assertEqual(seq, 1, "the scope died with its last kept event: a new life starts at 1")
        h2 = await self.history(S, 0)
        self.assertNotEqual(h2["epoch"], old, h2)
        c = await self.client()
        self.assertSub(await self.sub_since(c, S, 3, old), {"recovered": False, "seq": 1})


class Race(HistoryCase):
    ROUNDS = 200

    async def test_reconnect_with_since_while_emits_race(self):
        """2. 200 reconnects with `since` while a thread keeps emitting into
        the scope: the seqs received over all connections are exactly every
        seq, once each, in order."""
        S = "race:1"
        rnd = random.Random(20250611)
        ernd = random.Random(7)
        emitted = {}  # seq -> data
        stop = threading.Event()
        errors = []

        def emitter():
            ka = KeepAlive(self.srv.port)
            k = 0
            try:
                while not stop.is_set():
                    n = ernd.randint(1, 5)
                    items = [{"scope": S, "data": {"i": k + j}} for j in range(n)]
                    for j, s in enumerate(ka.emit(items)):
                        emitted[s] = {"i": k + j}
                    k += n
                    time.sleep(0.001)
            except Exception as e:  # reported by the test
                errors.append(e)
            finally:
                ka.close()

        c = await WSClient.connect(self.srv, name="r0")
        sub = await self.sub_since(c, S)
        epoch, first = sub["epoch"], sub["seq"]
        last = first
        got = []
        t = threading.Thread(target=emitter, daemon=True)
        t.start()
        recovered = 0
        try:
            for i in range(self.ROUNDS + 1):
                if i:
                    c = await WSClient.connect(self.srv, name=f"r{i}")
                    sent_since = last
                    m = await c.call("subscribe", scope=S, since=since(last, epoch))
                    self.assertSub(m, {"op": "subscribed", "recovered": True, "epoch": epoch},
                                   f"(round {i}, since {sent_since})")
                    self.assertGreaterEqual(m["seq"], sent_since)
                    recovered += 1
                # a few events on this connection (some rounds none: the replay
                # is cut off mid-way by the abort)
                for _ in range(rnd.choice([0, 1, 2, 3, 5, 8])):
                    ev = await c.wait(pred=lambda m: m.get("scope") == S and m.get("op") in ("event", "dropped"),
                                      timeout=T(2))
                    if ev["op"] != "event" or ev["seq"] != last + 1:
                        raise AssertionError(f"round {i}: after seq {last} got {ev!r} "
                                             f"(since {last if i else None})")
                    got.append(ev["seq"])
                    last = ev["seq"]
                    if ev.get("data") != emitted.get(ev["seq"], ev.get("data")):
                        raise AssertionError(f"seq {ev['seq']}: data {ev.get('data')!r}, "
                                             f"emitted {emitted[ev['seq']]!r}")
                self.assertEqual(errors, [])
                c.ws.transport.abort()
        finally:
            stop.set()
            await asyncio.to_thread(t.join, 10)
        self.assertEqual(errors, [])
        final = max(emitted)
        # the rest, on one more connection
        c = await self.client(name="final")
        m = await self.sub_since(c, S, last, epoch)
        self.assertSub(m, {"recovered": True, "seq": final})
        while last < final:
            ev = await c.push(S, timeout=T(2))
            self.assertEqual((ev["op"], ev["seq"]), ("event", last + 1), ev)
            self.assertEqual(ev["data"], emitted[ev["seq"]])
            got.append(ev["seq"])
            last = ev["seq"]
        await self.nothing_of(c, S, 0.3)
        self.assertEqual(got, list(range(first + 1, final + 1)))
        self.assertEqual(sorted(emitted), list(range(first + 1, final + 1)), "the emitter's seqs are contiguous")
        print(f"\n  race: {self.ROUNDS} reconnects with since, {len(got)} events, all recovered "
              f"({recovered}), none lost or repeated", file=sys.stderr)


class Audience(HistoryCase):
    async def test_audience_in_replay_and_api_history(self):
        """5. events for bob are replayed to bob only, never to alice or an
        anonymous connection; GET /api/history lists them only with user=bob."""
        S = "doc:aud"
        alice = await self.client(name="alice", token=token("alice"))
        bob = await self.client(name="bob", token=token("bob"))
        anon = await self.client(name="anon")
        subs = [await self.sub_since(x, S) for x in (alice, bob, anon)]
        epoch, last = subs[0]["epoch"], subs[0]["seq"]
        for x in (alice, bob, anon):
            x.ws.transport.abort()
        items = [{"scope": S, "data": "pub0"},
                 {"scope": S, "data": "bob1", "audience": ["bob"]},
                 {"scope": S, "data": "pub2"},
                 {"scope": S, "data": "bob3", "audience": ["bob"]},
                 {"scope": S, "data": "both4", "audience": ["alice", "bob"]},
                 {"scope": S, "data": "nobody5", "audience": []},
                 {"scope": S, "data": "pub6", "audience": None}]
        seqs = await self.srv.emit_batch(items)
        self.assertEqual(seqs, list(range(last + 1, last + 8)))
        want = {"bob": ["pub0", "bob1", "pub2", "bob3", "both4", "pub6"],
                "alice": ["pub0", "pub2", "both4", "pub6"],
                None: ["pub0", "pub2", "pub6"]}
        for user in ("bob", "alice", None):
            x = await self.client(name=f"{user}-again", token=token(user) if user else None)
            self.assertSub(await self.sub_since(x, S, last, epoch), {"recovered": True, "seq": last + 7})
            evs = await self.scope_events(x, S, len(want[user]))
            self.assertEqual([e["data"] for e in evs], want[user], f"replay to {user}")
            self.assertEqual([e["seq"] for e in evs], [seqs[[i["data"] for i in items].index(d)] for d in want[user]])
            await self.nothing_of(x, S, 0.3)
        # GET /api/history: audience events only with user=U and U in them
        for q, who in (({}, None), ({"user": "alice"}, "alice"), ({"user": "bob"}, "bob"),
                       ({"user": "mallory"}, None)):
            h = await self.history(S, last, epoch=epoch, **q)
            self.assertSub(h, {"scope": S, "recovered": True, "epoch": epoch, "seq": last + 7, "more": False})
            self.assertEqual([e["data"] for e in h["events"]], want[who], f"/api/history {q!r}")
            for e in h["events"]:
                self.assertNotIn("audience", e, "the audience is not shown to readers")

    async def test_origin_is_not_replayed_to_itself_without_echo(self):
        """echo as for live events: a resumed session (same session id) is
        not sent the events whose origin it is, unless it asks for echo."""
        S = "doc:origin"
        c, last, epoch = await self.start_point(S, n_before=1)
        session, rt = c.session, c.welcome.get("resume_token")
        self.assertIsNotNone(rt, "the server's presence grace is on by default")
        c.ws.transport.abort()
        s1 = await self.srv.emit(S, data="mine", origin=session)
        s2 = await self.srv.emit(S, data="other", origin="someone")
        c2 = await self.client(name="c2", query={"resume": session, "resume_token": rt})
        self.assertEqual((c2.welcome.get("resumed"), c2.session), (True, session))
        self.assertSub(await self.sub_since(c2, S, last, epoch), {"recovered": True})
        ev = await c2.push(S)
        self.assertEqual((ev["seq"], ev["data"]), (s2, "other"), "own origin: not replayed without echo")
        await self.nothing_of(c2, S, 0.3)
        # a fresh session gets both; a resumed one with echo too
        c3 = await self.client(name="c3")
        await self.sub_since(c3, S, last, epoch)
        self.assertEqual([e["seq"] for e in await self.scope_events(c3, S, 2)], [s1, s2])
        rt2 = c2.welcome["resume_token"]
        c2.ws.transport.abort()
        c4 = await self.client(name="c4", query={"resume": session, "resume_token": rt2})
        self.assertEqual(c4.welcome.get("resumed"), True)
        await self.sub_since(c4, S, last, epoch, echo=True)
        self.assertEqual([e["seq"] for e in await self.scope_events(c4, S, 2)], [s1, s2])


class GapFill(HistoryCase):
    @server_args("--maxsize", "16")
    async def test_subscribe_since_repositions_a_live_subscription(self):
        """6. a slow client gets `dropped`; a `subscribe` with `since` = the
        last seq before the notice, on its live subscription, is answered
        recovered:true and every event follows in order (events of the scope
        between that request and `subscribed` are ignored, as the contract
        says). Nobody sees a leave/join/update, the meta stays."""
        S = "gap:1"
        obs = await self.client(name="observer")
        await self.sub_since(obs, S, meta={"role": "obs"})
        g = await self.raw(name="gap", rcvbuf=4096)
        self.assertEqual(g.welcome["maxsize"], 16)
        await g.send({"op": "subscribe", "id": 1, "scope": S, "meta": {"m": 1}})
        sub = await g.wait("subscribed", id=1, timeout=T(2))
        epoch, base = sub["epoch"], sub["seq"]
        j = await obs.push(S)
        self.assertEqual((j["op"], j["conn"]["session"]), ("join", g.session), j)
        g.pause()
        big = "x" * 60000
        seqs = []
        obs_msgs = []
        for b in range(50):  # 250 events of 60 KB: 15 MB, far over the socket buffers and the queue
            # (batches of 5, under maxsize, each read by the observer before the next: it loses nothing)
            batch = await self.srv.emit_batch([{"scope": S, "data": {"k": b * 5 + k, "pad": big}}
                                               for k in range(5)])
            seqs += batch
            obs_msgs += await obs.events_until(S, batch[-1], timeout=T(2))
        self.assertEqual(seqs, list(range(base + 1, base + 251)))
        g.resume()
        last = base
        while True:
            m = await g.wait(pred=lambda m: m.get("scope") == S, timeout=T(3))
            if m["op"] == "dropped":
                break
            self.assertEqual((m["op"], m["seq"]), ("event", last + 1), f"before the first dropped: {m!r}")
            last = m["seq"]
        self.assertLess(last, seqs[-1], "the notice must come before the end")
        # events of the scope emitted now: some reach the client before its
        # `subscribed`, the rest are discarded by the repositioning
        more = await self.srv.emit_batch([{"scope": S, "data": {"small": k}} for k in range(5)])
        await g.send({"op": "subscribe", "id": 2, "scope": S, "meta": {"m": 2}, "since": since(last, epoch)})
        ignored = []
        while True:
            m = await g.next(timeout=T(3))
            if m.get("id") == 2:
                break
            self.assertEqual(m.get("scope"), S, m)
            self.assertIn(m["op"], ("event", "dropped"), m)
            ignored.append(m.get("seq", "dropped"))
        self.assertSub(m, {"op": "subscribed", "recovered": True, "epoch": epoch, "scope": S})
        final = more[-1]
        got = []
        while not got or got[-1] < final:
            m = await g.wait(pred=lambda m: m.get("scope") == S, timeout=T(3))
            if m["op"] != "event":
                raise AssertionError(f"after subscribed (recovered) only events of {S}, got {m!r}; "
                                     f"events so far {got[:3]}..{got[-3:]}")
            got.append(m["seq"])
        self.assertEqual(got, list(range(last + 1, final + 1)),
                         "every event after since, in order, once (no gap, no duplicate)")
        tail = await self.srv.emit(S, data="tail")
        m = await g.wait(pred=lambda m: m.get("scope") == S, timeout=T(3))
        self.assertEqual((m["op"], m["seq"]), ("event", tail), m)
        # the observer read everything (so it lost no leave/join either) ...
        obs_msgs += await obs.events_until(S, tail, timeout=T(3))
        self.assertEqual([m.get("seq", m) for m in obs_msgs], list(range(base + 1, tail + 1)),
                         "the observer must not drop (test setup)")
        # ... and nobody saw the re-subscribe; the meta did not change
        seen = obs.take(pred=lambda m: m.get("op") in ("join", "leave", "update"))
        seen += await obs.quiet(0.5, pred=lambda m: m.get("op") in ("join", "leave", "update"))
        self.assertEqual(seen, [], "no leave/join/update because of the re-subscribe")
        pres = (await obs.ok("presence", scope=S))["presence"]
        self.assertEqual([p["meta"] for p in pres if p["session"] == g.session], [{"m": 1}],
                         "subscribe with since on a live subscription changes no meta")
        print(f"\n  gap fill: dropped after seq {last} of {seqs[-1]}, {len(ignored)} messages ignored "
              f"before subscribed, {len(got)} events after it", file=sys.stderr)

    async def test_subscribe_since_on_a_live_subscription_not_recovered_changes_nothing(self):
        S = "small:live"
        c, last, epoch = await self.start_point(S, n_before=2)
        m = await c.call("subscribe", scope=S, since=since(last, epoch + "-old"))
        self.assertSub(m, {"op": "subscribed", "recovered": False, "seq": last, "epoch": epoch})
        await self.nothing_of(c, S, 0.3)
        self.assertEqual(await self.marker(S, c), last + 1, "the subscription goes on as it was")
        # recovered with nothing missed: nothing replayed, nothing repeated
        m = await c.call("subscribe", scope=S, since=since(last + 1, epoch))
        self.assertSub(m, {"op": "subscribed", "recovered": True})
        await self.nothing_of(c, S, 0.3)
        # a step back on a live subscription: the events after it again
        m = await c.call("subscribe", scope=S, since=since(last - 1, epoch))
        self.assertSub(m, {"op": "subscribed", "recovered": True})
        evs = await self.scope_events(c, S, 2)
        self.assertEqual([e["seq"] for e in evs], [last, last + 1])
        await self.nothing_of(c, S, 0.3)


class ApiHistory(HistoryCase):
    async def test_api_history(self):
        """7. since required, limit/more paging, unknown scope, epoch
        mismatch, events exactly like event pushes."""
        S = "doc:api"
        c = await self.client()
        sub = await self.sub_since(c, S)
        epoch = sub["epoch"]
        items = []
        for k in range(25):
            it = {"scope": S, "data": {"k": k}}
            if k % 3 == 0:
                it["paths"] = ["a", "b"]
            if k % 4 == 1:
                it["origin"] = "svc"
            if k == 5:
                del it["data"]  # no data
            if k == 6:
                it["data"] = None  # null data
            items.append(it)
        seqs = await self.srv.emit_batch(items)
        pushes = await self.scope_events(c, S, 25)
        # paging
        h1 = await self.history(S, 0, limit=10)
        self.assertSub(h1, {"scope": S, "epoch": epoch, "seq": seqs[-1], "recovered": True, "more": True})
        self.assertEqual(len(h1["events"]), 10)
        # past 0 the epoch goes with since ("the same rule as above": without
        # it, only since=0 can be recovered)
        self.assertSub(await self.history(S, h1["events"][-1]["seq"], limit=10),
                       {"recovered": False, "events": [], "epoch": epoch, "seq": seqs[-1]})
        h2 = await self.history(S, h1["events"][-1]["seq"], limit=10, epoch=epoch)
        self.assertSub(h2, {"recovered": True, "more": True})
        h3 = await self.history(S, h2["events"][-1]["seq"], limit=10, epoch=epoch)
        self.assertSub(h3, {"recovered": True, "more": False})
        self.assertEqual(len(h3["events"]), 5)
        listed = h1["events"] + h2["events"] + h3["events"]
        self.assertEqual(listed, pushes, "the same objects as the event pushes")
        self.assertEqual(h1["events"], (await self.history(S, 0, limit=10, epoch=epoch))["events"])
        whole = await self.history(S, 0)
        self.assertSub(whole, {"more": False})
        self.assertEqual(whole["events"], pushes, "default limit 1000")
        # limit exactly the rest: more false
        self.assertSub(await self.history(S, seqs[-3], limit=2, epoch=epoch), {"more": False})
        self.assertSub(await self.history(S, seqs[-3], limit=1, epoch=epoch), {"more": True})
        # nothing after N
        self.assertSub(await self.history(S, seqs[-1], epoch=epoch),
                       {"recovered": True, "events": [], "more": False})
        # epoch mismatch, N above the seq
        self.assertSub(await self.history(S, 3, epoch=epoch + "z"), {"recovered": False, "events": [],
                                                                     "epoch": epoch, "seq": seqs[-1]})
        self.assertSub(await self.history(S, seqs[-1] + 1, epoch=epoch), {"recovered": False, "events": []})
        # unknown scope: nothing came after 0
        u = await self.history("doc:unknown", 0)
        self.assertSub(u, {"scope": "doc:unknown", "recovered": True, "events": [], "more": False})
        self.assertSub(await self.history("doc:unknown", 4), {"recovered": False, "events": []})
        # a scope without history: missed events are not recoverable
        pe = (await self.sub_since(c, "plain:api"))["epoch"]
        await self.srv.emit("plain:api", data=1)
        self.assertSub(await self.history("plain:api", 0), {"recovered": False, "events": []})
        self.assertSub(await self.history("plain:api", 1, epoch=pe), {"recovered": True, "events": []})
        # since is required; bad values
        res = await self.srv.request("GET", "/api/history?scope=" + S)
        harness.assert_http_error(res, 400, "bad_request")
        for q in ("since=-1", "since=abc", "since=1&limit=0", "since=1&limit=1001", "since=1&limit=x"):
            res = await self.srv.request("GET", f"/api/history?scope={S}&{q}")
            harness.assert_http_error(res, 400, "bad_request")
        res = await self.srv.request("GET", "/api/history?since=0")
        harness.assert_http_error(res, 400, "bad_request")
        res = await self.srv.request("GET", "/api/history?since=0&scope=has%20space")
        harness.assert_http_error(res, 400, "bad_request")

    async def test_limit_1000_and_paging_through_more(self):
        S = "race:page"  # 100000 kept
        seqs = []
        for b in range(3):
            seqs += await self.srv.emit_batch([{"scope": S, "data": b * 500 + k} for k in range(500)])
        h = await self.history(S, 0)
        self.assertSub(h, {"recovered": True, "more": True, "seq": 1500})
        self.assertEqual(len(h["events"]), 1000)
        h2 = await self.history(S, 1000, epoch=h["epoch"])
        self.assertSub(h2, {"more": False})
        self.assertEqual([e["data"] for e in h["events"] + h2["events"]], list(range(1500)))

    async def test_answers_past_the_first_event_stop_near_1_mib(self):
        S = "race:big"
        for b in range(8):
            await self.srv.emit_batch([{"scope": S, "data": {"k": b * 5 + k, "pad": "p" * 60000}}
                                       for k in range(5)])
        got, since_, epoch, pages = [], 0, None, 0
        while True:
            res = await self.srv.request("GET", f"/api/history?scope={S}&since={since_}"
                                         + (f"&epoch={epoch}" if epoch else ""))
            self.assertEqual(res.status, 200, res)
            self.assertLess(len(res.body), 1024 * 1024 + 80000, "about 1 MiB past the first event")
            h = res.json
            self.assertSub(h, {"recovered": True})
            self.assertTrue(h["events"], "at least one event per answer")
            got += [e["data"]["k"] for e in h["events"]]
            pages += 1
            if not h["more"]:
                break
            since_, epoch = h["events"][-1]["seq"], h["epoch"]
        self.assertEqual(got, list(range(40)))
        self.assertGreaterEqual(pages, 3, "40 events of 60 KB do not come in one answer")

    @server_args("--api-key", "k3y")
    async def test_api_history_needs_the_key(self):
        res = await self.srv.request("GET", "/api/history?scope=doc:x&since=0", key=None)
        harness.assert_http_error(res, 401, "unauthorized")
        res = await self.srv.request("GET", "/api/history?scope=doc:x&since=0")
        self.assertEqual(res.status, 200, res)


class Lonely(HistoryCase):
    async def test_emit_into_history_scope_without_subscribers_is_sequenced_and_kept(self):
        """9. a history scope: seq > 0 and kept; a scope without history: seq 0."""
        S = "doc:lonely"
        s1 = await self.srv.emit(S, data="first")
        s2 = await self.srv.emit(S, data="second")
        self.assertGreater(s1, 0)
        self.assertEqual(s2, s1 + 1)
        h = await self.history(S, 0)
        self.assertSub(h, {"recovered": True, "seq": s2})
        self.assertEqual([(e["seq"], e["data"]) for e in h["events"]], [(s1, "first"), (s2, "second")])
        c = await self.client()
        self.assertSub(await self.sub_since(c, S, 0, None), {"recovered": True, "seq": s2, "epoch": h["epoch"]})
        self.assertEqual([e["data"] for e in await self.scope_events(c, S, 2)], ["first", "second"])
        # the client's own emit into it: emitted has the seq
        self.assertEqual(await self.srv.emit("plain:lonely", data=1), 0, "no history, no subscribers: seq 0")
        self.assertEqual(await self.srv.emit("plain:lonely", data=2), 0)
        # batches too
        res = await self.srv.emit_batch([{"scope": "doc:lonely2", "data": 1}, {"scope": "plain:lonely", "data": 2},
                                         {"scope": "doc:lonely2", "data": 3}])
        self.assertEqual(res, [1, 0, 2])

    async def test_close_ends_the_history_and_scopes_are_counted(self):
        """POST /api/close of a scope ends its history (a new life); scopes
        living on their history count in /api/stats and scopecast_scopes."""
        S = "doc:closing"
        st0 = await self.srv.stats()
        m0 = await self.metric("scopecast_scopes")
        await self.srv.emit_batch([{"scope": S, "data": k} for k in range(4)])
        st1 = await self.srv.stats()
        self.assertEqual(st1["scopes"], st0["scopes"] + 1, f"{st0} -> {st1}")
        self.assertEqual(await self.metric("scopecast_scopes"), m0 + 1)
        c = await self.client()
        sub = await self.sub_since(c, S, 0, None)
        self.assertSub(sub, {"recovered": True, "seq": 4})
        epoch = sub["epoch"]
        self.assertEqual(len(await self.scope_events(c, S, 4)), 4)
        res = await self.srv.request("POST", "/api/close", {"scope": S})
        self.assertEqual((res.status, res.json), (200, {"closed": 1}), res)
        self.assertSub(await c.push(S), {"op": "closed", "reason": "closed"})
        h = await self.history(S, 0)
        self.assertEqual(h["events"], [], h)
        self.assertNotEqual(h["epoch"], epoch, "a closed scope starts a new life")
        self.assertSub(await self.history(S, 2, epoch=epoch), {"recovered": False, "events": []})
        self.assertEqual(await self.srv.emit(S, data="new life"), 1)
        self.assertEqual((await self.srv.stats())["scopes"], st0["scopes"] + 1)

    async def test_history_metrics(self):
        S = "doc:metrics"
        before_ev = await self.metric("scopecast_history_events")
        before_sc = await self.metric("scopecast_history_scopes")
        await self.srv.emit_batch([{"scope": S, "data": k} for k in range(12)])
        await self.srv.emit_batch([{"scope": "small:m", "data": k} for k in range(15)])  # 10 kept
        self.assertEqual(await self.metric("scopecast_history_events"), before_ev + 22)
        self.assertEqual(await self.metric("scopecast_history_scopes"), before_sc + 2)
        self.assertGreater(await self.metric("scopecast_history_bytes"), 22 * 10)
        # events that leave at their count limit are not evictions for the budget
        self.assertEqual(await self.metric("scopecast_history_evicted_total"), 0)

class Budget(HistoryCase):
    SERVER_ARGS = ("--history", "doc:*=1000", "--history-max-bytes", "200000")

    async def test_budget_evicts_oldest_and_an_event_over_it_keeps_nothing_older(self):
        S = "doc:budget"
        for b in range(10):  # 10 x 50 x ~1 KB: over the 200 KB budget
            await self.srv.emit_batch([{"scope": S, "data": "y" * 1000} for _ in range(50)])
        self.assertLessEqual(await self.metric("scopecast_history_bytes"), 200000)
        self.assertGreater(await self.metric("scopecast_history_evicted_total"), 0)
        h0 = await self.history(S, 0)
        self.assertSub(h0, {"recovered": False, "seq": 500}, "the oldest left for the budget")
        epoch = h0["epoch"]
        kept = (await self.history(S, 499, epoch=epoch))
        self.assertSub(kept, {"recovered": True})
        self.assertEqual([e["seq"] for e in kept["events"]], [500], "the newest stay")
        # one event bigger than the whole budget, the scope alive (a
        # subscriber): it keeps nothing older than that event, same epoch
        c = await self.client()
        self.assertSub(await self.sub_since(c, S), {"seq": 500, "epoch": epoch})
        seq = await self.srv.emit(S, data="z" * 300000)
        self.assertEqual(seq, 501)
        ev = await c.push(S)
        self.assertEqual((ev["op"], ev["seq"], len(ev["data"])), ("event", 501, 300000))
        self.assertLessEqual(await self.metric("scopecast_history_bytes"), 200000)
        h1 = await self.history(S, 499, epoch=epoch)
        self.assertSub(h1, {"recovered": False, "events": [], "epoch": epoch, "seq": 501},
                       "(recovery from before the event that made no room)")
        self.assertSub(await self.history(S, 501, epoch=epoch), {"recovered": True, "events": []})
        d = await self.client(name="d")
        self.assertSub(await self.sub_since(d, S, 499, epoch, presence=False),
                       {"recovered": False, "epoch": epoch, "seq": 501})
        await self.nothing_of(d, S, 0.3)
        self.assertEqual(await self.marker(S, c, d), 502, "live events go on")
        self.assertSub(await self.history(S, 501, epoch=epoch), {"recovered": True},
                       "the scope keeps events again")
        # without anyone subscribed nothing is left of the scope: a new life
        await c.ok("unsubscribe", scope=S)
        await d.ok("unsubscribe", scope=S)
        await self.srv.emit(S, data="w" * 300000)
        self.assertEqual((await self.history(S, 0))["events"], [])
        seq = await self.srv.emit(S, data="small")
        h2 = await self.history(S, 0)
        self.assertSub(h2, {"recovered": True, "seq": seq})
        self.assertNotEqual(h2["epoch"], epoch, "every subscriber and kept event gone: a new epoch")
        self.assertEqual(seq, 1)


class Flood(HistoryCase):
    """8. a flood of 1,000,000 events (batches of 1000 over kept-alive HTTP
    connections) into one scope, then as many spread over 10,000 scopes:
    history stays within --history-max-bytes, RSS growth is bounded."""
    BUDGET = 16 * 1024 * 1024
    SERVER_ARGS = ("--history", "*=1000000", "--history-max-bytes", str(BUDGET))
    TEST_TIMEOUT = 300.0
    N = 200_000 if SANITIZED else 1_000_000
    BATCH = 1000
    SLACK_MIB = 32

    def flood(self, scopes, emitters=2):
        """N events in BATCH-sized POSTs from `emitters` threads, each on one
        kept-alive connection; event k goes to scopes[k % len(scopes)]."""
        bodies = []
        for b in range(0, self.N, self.BATCH):
            items = [{"scope": scopes[k % len(scopes)], "data": {"k": k, "v": "payload"}}
                     for k in range(b, b + self.BATCH)]
            bodies.append(json.dumps(items, separators=(",", ":")).encode())
        errors = []

        def run(part):
            ka = KeepAlive(self.srv.port, timeout=60)
            try:
                for body in part:
                    status, payload = ka.post("/api/emit", body)
                    if status != 202:
                        errors.append((status, payload[:200]))
                        return
            except Exception as e:
                errors.append(e)
            finally:
                ka.close()
        threads = [threading.Thread(target=run, args=(bodies[i::emitters],)) for i in range(emitters)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - t0
        if errors:
            raise AssertionError(f"flood: {errors[:3]}")
        return took

    async def test_history_stays_within_the_budget_under_a_flood(self):
        srv = self.srv
        # warm up: the server's own allocations of a first request/scope
        await srv.emit_batch([{"scope": "warm", "data": 1}])
        rss0 = srv.rss_kib()
        took1 = await asyncio.to_thread(self.flood, ["flood:one"])
        rss1 = srv.rss_kib()
        hb1 = await self.metric("scopecast_history_bytes")
        he1 = await self.metric("scopecast_history_events")
        ev1 = await self.metric("scopecast_history_evicted_total")
        h = await self.history("flood:one", self.N - 3, epoch=(await self.history("flood:one", 0))["epoch"])
        self.assertSub(h, {"recovered": True, "seq": self.N})
        self.assertEqual([e["seq"] for e in h["events"]], [self.N - 2, self.N - 1, self.N])
        self.assertTrue(all(0 <= e["data"]["k"] < self.N for e in h["events"]), h)  # two emitters interleave
        self.assertSub(await self.history("flood:one", 0), {"recovered": False}, "the oldest left for the budget")
        scopes = [f"flood:s{i}" for i in range(10000)]
        took2 = await asyncio.to_thread(self.flood, scopes)
        rss2 = srv.rss_kib()
        hb2 = await self.metric("scopecast_history_bytes")
        he2 = await self.metric("scopecast_history_events")
        hs2 = await self.metric("scopecast_history_scopes")
        ev2 = await self.metric("scopecast_history_evicted_total")
        mib = 1024.0
        print(f"\n  flood ({'sanitized, ' if SANITIZED else ''}{self.N} events each, batches of {self.BATCH}, "
              f"budget {self.BUDGET // 1024 // 1024} MiB):"
              f"\n    RSS before {rss0 / mib:.1f} MiB"
              f"\n    one scope: {took1:.1f} s ({self.N / took1:,.0f} events/s), RSS {rss1 / mib:.1f} MiB "
              f"(+{(rss1 - rss0) / mib:.1f}), history {hb1 / 1048576:.2f} MiB in {he1} events, "
              f"evicted {ev1}"
              f"\n    10,000 scopes: {took2:.1f} s ({self.N / took2:,.0f} events/s), RSS {rss2 / mib:.1f} MiB "
              f"(+{(rss2 - rss0) / mib:.1f}), history {hb2 / 1048576:.2f} MiB in {he2} events, {hs2} scopes, "
              f"evicted {ev2}", file=sys.stderr)
        self.assertLessEqual(hb1, self.BUDGET)
        self.assertLessEqual(hb2, self.BUDGET)
        self.assertGreater(hb1, self.BUDGET // 2, "the budget is used, not wasted")
        self.assertGreater(ev1, 0)
        self.assertGreater(ev2, ev1)
        self.assertGreaterEqual(await self.metric("scopecast_events_emitted_total"), 2 * self.N)
        if not SANITIZED:
            bound = self.BUDGET / 1024 + self.SLACK_MIB * 1024
            self.assertLess(rss1 - rss0, bound, f"RSS grew {(rss1 - rss0) / mib:.1f} MiB for one scope")
            self.assertLess(rss2 - rss0, bound, f"RSS grew {(rss2 - rss0) / mib:.1f} MiB over 10,000 scopes")
        # the server still answers and a recovery still works
        c = await self.client()
        sub = await self.sub_since(c, "flood:s9999", 0, None)
        self.assertIn("recovered", sub)


if __name__ == "__main__":
    main()
