#!/usr/bin/python3
"""Every WebSocket op and push of docs/PROTOCOL.md, against the real server."""

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (JWT_SECRET, T, ScopecastTestCase, assert_conn, check_drop_accounting,  # noqa: E402
                     main, no_server, server_args, token)

JWT = ("--jwt-secret", JWT_SECRET)
# tests that mix token and token-less clients open anonymous access
JWT_ANON = JWT + ("--allow-anonymous", "--anonymous-scopes", "*")


class Welcome(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    async def test_welcome_fields_defaults(self):
        a = await self.client()
        b = await self.client()
        for c in (a, b):
            w = c.welcome
            self.assertEqual(w["op"], "welcome")
            self.assertEqual(w.get("version"), 1, w)
            self.assertIsInstance(w.get("session"), str, w)
            self.assertTrue(w["session"], w)
            self.assertIn("user", w)
            self.assertIsNone(w["user"], w)
            self.assertEqual(w.get("heartbeat"), 25, w)
            self.assertEqual(w.get("maxsize"), 256, w)
            self.assertEqual(w.get("maxmessage"), 65536, w)
            self.assertNotIn("id", w)
        self.assertNotEqual(a.session, b.session, "sessions must be unique")

    @server_args("--heartbeat", "7", "--maxsize", "9", "--max-message", "1000")
    async def test_welcome_reflects_configuration(self):
        a = await self.client()
        self.assertEqual(a.welcome.get("heartbeat"), 7, a.welcome)
        self.assertEqual(a.welcome.get("maxsize"), 9, a.welcome)
        self.assertEqual(a.welcome.get("maxmessage"), 1000, a.welcome)

    @no_server
    async def test_config_file_env_and_flag_precedence(self):
        tmp = tempfile.mkdtemp(prefix="scopecast-cfg-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = os.path.join(tmp, "config.json")
        with open(cfg, "w") as f:
            json.dump({"heartbeat": 9, "maxsize": 11}, f)
        srv = self.start_server("--config", cfg, name="file")
        w = (await self.client(srv)).welcome
        self.assertEqual((w["heartbeat"], w["maxsize"]), (9, 11), "--config FILE sets keys in snake case")
        srv = self.start_server(name="file-env", env={"SCOPECAST_CONFIG": cfg, "SCOPECAST_MAXSIZE": "12"})
        w = (await self.client(srv)).welcome
        self.assertEqual((w["heartbeat"], w["maxsize"]), (9, 12), "env beats file (SCOPECAST_CONFIG names the file)")
        srv = self.start_server("--config", cfg, "--maxsize", "13", name="file-env-flag",
                                env={"SCOPECAST_MAXSIZE": "12", "SCOPECAST_HEARTBEAT": "8"})
        w = (await self.client(srv)).welcome
        self.assertEqual((w["heartbeat"], w["maxsize"]), (8, 13), "flags beat env beat file")

    async def test_subprotocol_selected_when_offered(self):
        a = await self.client(subprotocols=("scopecast.v1",))
        self.assertEqual(a.subprotocol, "scopecast.v1")
        b = await self.client(subprotocols=("x.unknown", "scopecast.v1"))
        self.assertEqual(b.subprotocol, "scopecast.v1")

    async def test_no_subprotocol_offered_is_accepted(self):
        a = await self.client(subprotocols=None)
        self.assertIsNone(a.subprotocol)
        pong = await a.call("ping")
        self.assertEqual(pong["op"], "pong")

    @server_args(*JWT_ANON)
    async def test_welcome_user_from_token(self):
        a = await self.client(token=token("alice"))
        self.assertEqual(a.welcome["user"], "alice")
        anon = await self.client()
        self.assertIsNone(anon.welcome["user"])


class Subscribe(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    async def test_subscribe_fresh_scope(self):
        a = await self.client()
        await a.send({"op": "subscribe", "id": 1, "scope": "doc:fresh"})
        m = await a.expect("subscribed")
        self.assertEqual(m.get("id"), 1, m)
        self.assertEqual(m.get("scope"), "doc:fresh", m)
        self.assertEqual(m.get("seq"), 0, "seq is the scope's last seq, 0 if none")
        self.assertIsInstance(m.get("presence"), list, m)
        self.assertEqual(len(m["presence"]), 1, m)
        assert_conn(m["presence"][0], session=a.session, user=None, meta={})

    async def test_subscribed_seq_is_last_seq_and_first_seq_is_1(self):
        S = "doc:seq"
        a = await self.client()
        s0 = await a.subscribe(S)
        self.assertEqual(s0["seq"], 0)
        seqs = [await self.srv.emit(S, data=i) for i in range(3)]
        self.assertEqual(seqs, [1, 2, 3], "a scope's seq starts at 1 and rises by 1 per accepted emit")
        for i, want in enumerate(seqs):
            ev = await a.push(S)
            self.assertEqual((ev["op"], ev["seq"], ev.get("data")), ("event", want, i), ev)
        b = await self.client()
        s1 = await b.subscribe(S, meta={"name": "bee"})
        self.assertEqual(s1["seq"], 3, s1)
        pres = {c["session"]: c for c in s1["presence"]}
        self.assertEqual(set(pres), {a.session, b.session}, s1)
        assert_conn(pres[b.session], meta={"name": "bee"}, user=None)
        assert_conn(pres[a.session], meta={}, user=None)
        seq = await self.srv.emit(S, data="four")
        self.assertEqual(seq, 4)
        for c in (a, b):
            ev = await c.wait("event", scope=S)
            self.assertEqual(ev["seq"], 4, ev)

    async def test_resubscribe_is_idempotent(self):
        S = "doc:idem"
        b = await self.client(name="b")
        await b.subscribe(S)
        a = await self.client(name="a")
        first = await a.subscribe(S, meta={"v": 1}, echo=True)
        j = await b.push(S)
        self.assertEqual(j["op"], "join", j)
        again = await a.call("subscribe", scope=S, meta={"v": 2}, echo=False)
        self.assertEqual(again["op"], "subscribed", again)
        self.assertEqual(again["scope"], S, again)
        self.assertEqual(again["seq"], first["seq"], again)
        mine = [c for c in again.get("presence", []) if c["session"] == a.session]
        self.assertEqual(len(mine), 1, f"one subscription, listed once: {again!r}")
        self.assertEqual(mine[0]["meta"], {"v": 1}, "re-subscribe changes nothing: meta stays")
        # echo stays true: a's own emit comes back to a
        em = await a.ok("emit", scope=S, data="own")
        ev = await a.push(S)
        self.assertEqual((ev["op"], ev["seq"]), ("event", em["seq"]), "echo:true must survive a re-subscribe")
        # b saw no second join: its next push of S is the event
        ev_b = await b.push(S)
        self.assertEqual((ev_b["op"], ev_b["seq"]), ("event", em["seq"]), ev_b)
        p = await b.ok("presence", scope=S)
        self.assertEqual(sorted(c["session"] for c in p["presence"]), sorted([a.session, b.session]))
        # a single unsubscribe removes it
        await a.ok("unsubscribe", scope=S)
        lv = await b.push(S)
        self.assertEqual(lv["op"], "leave", lv)
        p = await b.ok("presence", scope=S)
        self.assertEqual([c["session"] for c in p["presence"]], [b.session])

    async def test_self_sees_no_own_join_or_leave(self):
        S = "doc:self"
        a = await self.client()
        await a.subscribe(S)
        b = await self.client()
        await b.subscribe(S)
        await a.push(S)  # join of b
        await self.marker(S, a, b)  # b got no join of itself
        await b.ok("unsubscribe", scope=S)
        lv = await a.push(S)
        self.assertEqual(lv["op"], "leave")
        self.assertEqual(await b.quiet(0.3, scope=S, op="leave"), [])

    async def test_valid_scope_edges(self):
        a = await self.client()
        for scope in ("a", "x" * 200, "!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~", "Doc:UPPER"):
            r = await a.call("subscribe", scope=scope)
            self.assertSub(r, {"op": "subscribed", "scope": scope}, "1-200 bytes of printable ASCII without spaces")

    async def test_null_means_absent(self):
        S = "doc:null"
        a = await self.client(name="a")
        b = await self.client(name="b")
        await a.send({"op": "subscribe", "scope": S, "meta": None, "id": None})
        r = await a.expect("subscribed")
        self.assertNotIn("id", r)
        assert_conn(r["presence"][0], session=a.session, meta={})
        await b.subscribe(S)
        j = await a.push(S)
        assert_conn(j["conn"], session=b.session, meta={})
        r = await b.ok("emit", scope=S, paths=None, audience=None, data=1)
        ev = await a.push(S)
        self.assertSub(ev, {"op": "event", "seq": r["seq"], "paths": []}, "paths null = absent, audience null = all")

    async def test_scope_reset_after_last_subscriber(self):
        S = "doc:reset"
        a = await self.client()
        await a.subscribe(S)
        for i in range(3):
            await self.srv.emit(S, data=i)
            self.assertEqual((await a.push(S))["data"], i)
        await a.ok("unsubscribe", scope=S)
        s2 = await a.subscribe(S)
        self.assertIn(s2["seq"], (0, 3), "a scope without subscribers resets (or keeps retained history)")
        seq = await self.srv.emit(S, data="next")
        self.assertEqual(seq, s2["seq"] + 1)
        ev = await a.push(S)
        self.assertSub(ev, {"op": "event", "seq": seq, "data": "next"})

    async def test_meta_is_object_and_shown_in_presence(self):
        S = "doc:meta"
        a = await self.client()
        meta = {"name": "Ana", "color": "#f00", "n": [1, 2, {"x": None}]}
        s = await a.subscribe(S, meta=meta)
        assert_conn(s["presence"][0], session=a.session, meta=meta)
        b = await self.client()
        s2 = await b.subscribe(S)
        j = await a.push(S)
        self.assertEqual(j["op"], "join")
        assert_conn(j["conn"], session=b.session, user=None, meta={})
        pres = {c["session"]: c for c in s2["presence"]}
        assert_conn(pres[a.session], meta=meta)


class Unsubscribe(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    async def test_unsubscribe_reply_and_leave(self):
        S = "doc:unsub"
        a = await self.client(name="a")
        b = await self.client(name="b")
        await a.subscribe(S)
        await b.subscribe(S)
        await a.push(S)  # join of b
        await a.send({"op": "unsubscribe", "scope": S, "id": "u1"})
        r = await a.wait(pred=lambda m: m.get("id") == "u1")
        self.assertSub(r, {"op": "unsubscribed", "id": "u1", "scope": S})
        lv = await b.push(S)
        self.assertEqual(lv["op"], "leave", lv)
        self.assertEqual(lv["scope"], S)
        self.assertIs(lv["last"], True, lv)
        assert_conn(lv["conn"], session=a.session, user=None)
        # nothing of the scope follows unsubscribed
        seq = await self.srv.emit(S, data="after")
        ev = await b.push(S)
        self.assertSub(ev, {"op": "event", "seq": seq, "data": "after"})
        self.assertEqual(await a.quiet(0.3, scope=S), [], "nothing of a scope follows unsubscribed")

    async def test_unsubscribe_not_subscribed(self):
        a = await self.client()
        r = await a.call("unsubscribe", scope="never:subscribed")
        self.assertEqual(r["op"], "unsubscribed", r)
        self.assertEqual(r["scope"], "never:subscribed", r)
        await a.send({"op": "unsubscribe", "scope": "x"})
        r = await a.expect("unsubscribed")
        self.assertNotIn("id", r)


class Emit(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    async def test_emit_reply_and_event_fields(self):
        S = "doc:emit"
        e = await self.client(name="emitter")
        b = await self.client(name="b")
        s = await b.subscribe(S)
        await e.send({"op": "emit", "id": 5, "scope": S, "paths": ["a.b", "c"], "data": {"x": 1}})
        r = await e.wait(pred=lambda m: m.get("id") == 5)
        self.assertSub(r, {"op": "emitted", "id": 5, "scope": S, "seq": s["seq"] + 1})
        ev = await b.push(S)
        self.assertEqual(ev["op"], "event", ev)
        self.assertEqual(ev["scope"], S)
        self.assertEqual(ev["seq"], r["seq"])
        self.assertEqual(sorted(ev["paths"]), ["a.b", "c"])
        self.assertEqual(ev["origin"], e.session, "a client emit's origin is the emitter's session")
        self.assertEqual(ev["data"], {"x": 1})
        self.assertNotIn("id", ev)

    async def test_data_null_vs_absent_and_types(self):
        S = "doc:data"
        e = await self.client(name="emitter")
        b = await self.client(name="b")
        await b.subscribe(S)
        cases = [("null", None), ("string", "s"), ("number", 2.5), ("int", -7), ("bool", False),
                 ("array", [1, "a", None]), ("object", {"k": {"n": []}}), ("unicode", "héllo ✓ 😀")]
        for name, val in cases:
            r = await e.ok("emit", scope=S, data=val)
            ev = await b.push(S)
            self.assertEqual(ev["seq"], r["seq"], ev)
            self.assertIn("data", ev, f"data {name}: `data: null` is a value and is delivered")
            self.assertEqual(ev["data"], val, name)
        r = await e.ok("emit", scope=S)
        ev = await b.push(S)
        self.assertEqual(ev["seq"], r["seq"])
        self.assertNotIn("data", ev, "absent data is omitted")
        self.assertEqual(ev["paths"], [], "paths is an array, may be empty")
        self.assertIn("origin", ev)

    async def test_paths_are_a_set(self):
        S = "doc:paths"
        e = await self.client()
        b = await self.client()
        await b.subscribe(S)
        await e.ok("emit", scope=S, paths=["b", "a", "b"], data=1)
        ev = await b.push(S)
        self.assertEqual(set(ev["paths"]), {"a", "b"}, ev)
        self.assertTrue(all(isinstance(p, str) for p in ev["paths"]))

    async def test_emit_without_subscribers_gets_seq_0(self):
        e = await self.client()
        r = await e.ok("emit", scope="doc:empty", data=1)
        self.assertEqual(r["seq"], 0, "an emit into a scope with no subscribers is not sequenced")
        self.assertEqual(await self.srv.emit("doc:empty", data=2), 0)

    async def test_http_origin_and_null(self):
        S = "doc:origin"
        b = await self.client()
        await b.subscribe(S)
        await self.srv.emit(S, data=1)
        ev = await b.push(S)
        self.assertIn("origin", ev)
        self.assertIsNone(ev["origin"], "HTTP emit without origin: origin null")
        await self.srv.emit(S, data=2, origin="billing")
        ev = await b.push(S)
        self.assertEqual(ev["origin"], "billing", "HTTP callers may set origin themselves")


class OriginAndEcho(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    async def test_own_emit_suppressed_without_echo(self):
        S = "doc:noecho"
        a = await self.client(name="a")
        b = await self.client(name="b")
        await a.subscribe(S)
        await b.subscribe(S)
        await a.push(S)  # join of b
        r = await a.ok("emit", scope=S, data="mine")
        ev = await b.push(S)
        self.assertEqual((ev["seq"], ev["origin"]), (r["seq"], a.session))
        m = await self.marker(S, a)  # a's next push of S is the marker, not its own event
        self.assertEqual(m, r["seq"] + 1)
        await b.push(S)
        # HTTP emit with origin = a's session is suppressed for a too
        seq = await self.srv.emit(S, data="as-a", origin=a.session)
        ev = await b.push(S)
        self.assertEqual((ev["seq"], ev["origin"]), (seq, a.session))
        await self.marker(S, a, b)

    async def test_echo_true_emitted_before_own_event(self):
        S = "doc:echo"
        a = await self.client()
        await a.subscribe(S, echo=True)
        for i in range(5):
            await a.send({"op": "emit", "id": 100 + i, "scope": S, "data": i})
        got = []
        for i in range(5):
            r = await a.wait(pred=lambda m, i=i: m.get("id") == 100 + i)
            ev = await a.push(S)
            got.append((r, ev))
        for i, (r, ev) in enumerate(got):
            self.assertEqual(r["op"], "emitted", r)
            self.assertEqual(ev["seq"], r["seq"], ev)
            self.assertEqual(ev["origin"], a.session)
            self.assertEqual(ev["data"], i)
            self.assertLess(a.log.index(r), a.log.index(ev), "emitted comes before the own echoed event")

    async def test_echo_applies_to_http_origin(self):
        S = "doc:echo-http"
        a = await self.client()
        await a.subscribe(S, echo=True)
        seq = await self.srv.emit(S, data=1, origin=a.session)
        ev = await a.push(S)
        self.assertEqual((ev["seq"], ev["origin"]), (seq, a.session))


class Presence(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    async def test_presence_op(self):
        S = "doc:pres"
        a = await self.client()
        b = await self.client()
        c = await self.client()
        await a.subscribe(S, meta={"n": "a"})
        await b.subscribe(S)
        await c.send({"op": "presence", "id": "p", "scope": S})
        r = await c.wait(pred=lambda m: m.get("id") == "p")
        self.assertEqual(r["op"], "presence", r)
        self.assertEqual(r["scope"], S)
        pres = {x["session"]: x for x in r["presence"]}
        self.assertEqual(set(pres), {a.session, b.session}, "presence is allowed for a scope not subscribed")
        assert_conn(pres[a.session], meta={"n": "a"}, user=None)
        assert_conn(pres[b.session], meta={}, user=None)
        r = await c.ok("presence", scope="doc:nobody")
        self.assertEqual(r["presence"], [])
        await c.send({"op": "presence", "scope": S})
        r = await c.expect("presence")
        self.assertNotIn("id", r)


class PingAndIds(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    async def test_ping_pong_id_echo(self):
        a = await self.client()
        for rid in (7, 0, -3, 2 ** 40, "abc", "", "ü-id"):
            await a.send({"op": "ping", "id": rid})
            r = await a.expect("pong")
            self.assertSub(r, {"op": "pong", "id": rid})
            self.assertEqual(type(r["id"]), type(rid))
        await a.send({"op": "ping"})
        self.assertNotIn("id", await a.expect("pong"))
        await a.send({"op": "ping", "id": None})
        self.assertNotIn("id", await a.expect("pong"), "id null is the same as no id")

    async def test_id_echo_on_every_op(self):
        a = await self.client()
        S = "doc:ids"
        for op, extra, reply in (("subscribe", {"scope": S}, "subscribed"),
                                 ("presence", {"scope": S}, "presence"),
                                 ("emit", {"scope": S, "data": 1}, "emitted"),
                                 ("unsubscribe", {"scope": S}, "unsubscribed")):
            for rid in ("s-" + op, 42, None):
                req = {"op": op, **extra}
                if rid is not None:
                    req["id"] = rid
                await a.send(req)
                r = await a.wait(reply)
                if rid is None:
                    self.assertNotIn("id", r, r)
                else:
                    self.assertEqual(r.get("id"), rid, r)
                if op == "subscribe":
                    await a.ok("unsubscribe", scope=S)


class JoinLeave(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    @server_args(*JWT_ANON)
    async def test_first_last_for_same_user(self):
        S = "doc:jl"
        bob = await self.client(token=token("bob"), name="bob")
        await bob.subscribe(S)
        a1 = await self.client(token=token("alice"), name="alice1")
        a2 = await self.client(token=token("alice"), name="alice2")
        s = await a1.subscribe(S)
        self.assertEqual({c["session"]: c["user"] for c in s["presence"]},
                         {bob.session: "bob", a1.session: "alice"})
        j = await bob.push(S)
        self.assertEqual((j["op"], j["first"]), ("join", True), j)
        assert_conn(j["conn"], session=a1.session, user="alice")
        await a2.subscribe(S)
        for c in (bob, a1):
            j = await c.push(S)
            self.assertEqual((j["op"], j["scope"]), ("join", S), j)
            self.assertIs(j["first"], False, f"{c.name}: alice's second connection is not her first: {j!r}")
            assert_conn(j["conn"], session=a2.session, user="alice")
        await a2.ok("unsubscribe", scope=S)
        for c in (bob, a1):
            lv = await c.push(S)
            self.assertEqual(lv["op"], "leave", lv)
            self.assertIs(lv["last"], False, f"{c.name}: alice still has a connection: {lv!r}")
            assert_conn(lv["conn"], session=a2.session, user="alice")
        await a1.ok("unsubscribe", scope=S)
        lv = await bob.push(S)
        self.assertEqual(lv["op"], "leave", lv)
        self.assertIs(lv["last"], True, lv)
        assert_conn(lv["conn"], session=a1.session, user="alice")
        # again, ending with disconnects instead of unsubscribes
        await a1.subscribe(S)
        self.assertIs((await bob.push(S))["first"], True)
        await a2.subscribe(S)
        self.assertIs((await bob.push(S))["first"], False)
        await a1.close()
        lv = await bob.push(S)
        self.assertEqual((lv["op"], lv["conn"]["session"], lv["last"]), ("leave", a1.session, False), lv)
        await a2.close()
        lv = await bob.push(S)
        self.assertEqual((lv["op"], lv["conn"]["session"], lv["last"]), ("leave", a2.session, True), lv)

    async def test_anonymous_first_last_always_true(self):
        S = "doc:anon"
        obs = await self.client(name="obs")
        await obs.subscribe(S)
        a = await self.client(name="a")
        b = await self.client(name="b")
        await a.subscribe(S)
        await b.subscribe(S)
        for who in (a, b):
            j = await obs.push(S)
            self.assertEqual((j["op"], j["conn"]["session"], j["first"]), ("join", who.session, True), j)
            assert_conn(j["conn"], user=None)
        j = await a.push(S)
        self.assertEqual((j["op"], j["conn"]["session"], j["first"]), ("join", b.session, True), j)
        await a.ok("unsubscribe", scope=S)
        await b.close()
        for who in (a, b):
            lv = await obs.push(S)
            self.assertEqual((lv["op"], lv["conn"]["session"], lv["last"]), ("leave", who.session, True), lv)


class Ordering(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    async def test_subscribe_during_emits(self):
        S = "doc:order"
        w = await self.client(name="watcher")
        await w.subscribe(S)
        state = {"i": 0, "stop_at": None}

        async def emitter():
            # emits until 100 more after the late subscriber got `subscribed`
            while state["stop_at"] is None or state["i"] < state["stop_at"]:
                self.assertLess(state["i"], 20000)
                await self.srv.emit(S, data=state["i"])
                state["i"] += 1
            return state["i"]

        task = asyncio.create_task(emitter())
        while len([m for m in w.log if m.get("op") == "event"]) < 40:
            await w.wait("event", scope=S)
        c = await self.client(name="late")
        await c.send({"op": "subscribe", "id": "late", "scope": S})
        sub = await c.wait(pred=lambda m: m.get("id") == "late")
        self.assertEqual(sub["op"], "subscribed")
        state["stop_at"] = state["i"] + 100
        n = await task
        evs = await c.events_until(S, n)
        idx = c.log.index(sub)
        before = [m for m in c.log[:idx] if m.get("scope") == S]
        self.assertEqual(before, [], "subscribed comes before any push of its scope")
        self.assertEqual(evs[0]["seq"], sub["seq"] + 1,
                         "the first event after subscribed has the next seq (no loss without `dropped`)")
        self.assertEqual([e["seq"] for e in evs], list(range(sub["seq"] + 1, n + 1)))
        self.assertEqual([e["data"] for e in evs], list(range(sub["seq"], n)))

    async def test_large_and_small_events_keep_order(self):
        """Events larger than one packed write (16 KB) go out on their own,
        possibly in several socket writes; mixed with small ones they still
        arrive whole and in seq order, at a fast and at a slow reader."""
        S = "doc:large"
        fast = await self.client(name="fast")
        slow = await self.raw(name="slow", rcvbuf=4096)
        await fast.subscribe(S)
        await slow.subscribe(S)
        await fast.push(S)  # join of slow
        slow.pause()
        items = []
        for i in range(24):
            size = (40000, 17000, 10)[i % 3]
            items.append({"scope": S, "data": f"{i}:" + "x" * size})
        await self.srv.emit_batch(items)
        await asyncio.sleep(0.3)
        slow.resume()
        for c in (fast, slow):
            evs = await c.events_until(S, len(items))
            self.assertEqual([e["seq"] for e in evs], list(range(1, len(items) + 1)), c.name)
            self.assertEqual([e["data"] for e in evs], [it["data"] for it in items], c.name)

    async def test_one_order_across_emitters(self):
        S = "doc:multi"
        x = await self.client(name="x")
        y = await self.client(name="y")
        await x.subscribe(S)
        await y.subscribe(S)
        await x.push(S)  # join of y
        d = await self.client(name="emitter")
        n = 100

        async def http_emitter():
            for i in range(n):
                await self.srv.emit(S, data=f"h{i}")

        async def ws_emitter():
            for i in range(n):
                await d.send({"op": "emit", "id": i, "scope": S, "data": f"d{i}"})
            return [await d.wait("emitted", id=i) for i in range(n)]

        _, replies = await asyncio.gather(http_emitter(), ws_emitter())
        ex = [(e["seq"], e["data"]) for e in await x.events_until(S, 2 * n)]
        ey = [(e["seq"], e["data"]) for e in await y.events_until(S, 2 * n)]
        self.assertEqual([s for s, _ in ex], list(range(1, 2 * n + 1)))
        self.assertEqual(ex, ey, "every subscriber sees the same order")
        by_data = {d_: s for s, d_ in ex}
        self.assertEqual([r["seq"] for r in replies], [by_data[f"d{i}"] for i in range(n)])
        self.assertEqual([by_data[f"h{i}"] for i in range(n)], sorted(by_data[f"h{i}"] for i in range(n)))
        self.assertEqual([r["seq"] for r in replies], sorted(r["seq"] for r in replies))


class Dropped(ScopecastTestCase):
    SERVER_ARGS = ("--maxsize", "4")

    async def test_dropped_notice_counts_the_gap(self):
        S = "doc:drop"
        slow = await self.raw(rcvbuf=4096, name="slow")
        sub = await slow.subscribe(S)
        self.assertEqual(slow.welcome["maxsize"], 4)
        slow.pause()
        base = (await self.srv.stats())["dropped"]
        blob = "x" * 4000
        last = None
        for batch in range(60):  # at most 24 MB
            seqs = await self.srv.emit_batch([{"scope": S, "data": blob} for _ in range(100)])
            last = seqs[-1]
            if (await self.srv.stats())["dropped"] > base:
                break
        else:
            self.fail("/api/stats never reported a drop for a client that does not read")
        slow.resume()
        await slow.drain(idle=1.0)
        tail = [await self.srv.emit(S, data=f"tail{i}") for i in range(3)]
        self.assertEqual(tail, [last + 1, last + 2, last + 3])
        msgs = await slow.events_until(S, tail[-1], timeout=T(3))
        received, dropped = check_drop_accounting(msgs, sub["seq"] + 1, tail[-1])
        self.assertGreater(dropped, 0, "expected `dropped` notices")
        self.assertEqual(received + dropped, tail[-1] - sub["seq"])
        self.assertEqual([m["data"] for m in msgs[-3:]], ["tail0", "tail1", "tail2"])
        st = await self.srv.stats()
        self.assertEqual(st["dropped"] - base, dropped, "/api/stats dropped counts the dropped events")
        pong = await slow.call("ping")
        self.assertEqual(pong["op"], "pong")


    async def fill(self, S):
        """Emit 4 KB events until /api/stats reports drops; returns the last seq."""
        base = (await self.srv.stats())["dropped"]
        for batch in range(60):  # at most 24 MB
            seqs = await self.srv.emit_batch([{"scope": S, "data": "x" * 4000} for _ in range(100)])
            if (await self.srv.stats())["dropped"] > base:
                return seqs[-1]
        self.fail("/api/stats never reported a drop for a client that does not read")

    async def test_replies_and_closed_need_no_room(self):
        S = "doc:full"
        slow = await self.raw(rcvbuf=4096, name="slow")
        sub = await slow.subscribe(S)
        slow.pause()
        last = await self.fill(S)
        await slow.send({"op": "ping", "id": "while-full"})
        await slow.send({"op": "presence", "id": "pres", "scope": S})
        await asyncio.sleep(0.2)
        res = await self.srv.request("POST", "/api/close", {"scope": S})
        self.assertEqual((res.status, res.json), (200, {"closed": 1}), res)
        slow.resume()
        self.assertSub(await slow.wait(id="while-full", timeout=T(3)), {"op": "pong"}, "replies are never dropped")
        self.assertSub(await slow.wait(id="pres"), {"op": "presence"})
        closed = await slow.wait("closed", scope=S, timeout=T(3))
        self.assertSub(closed, {"reason": "closed"}, "closed is never dropped")
        await slow.drain(idle=0.5)
        upto = slow.log.index(closed)
        msgs = [m for m in slow.log[:upto] if m.get("scope") == S and m.get("op") in ("event", "dropped")]
        # Whether the queue ended on drops depends on how far the server had
        # written into the socket meanwhile (timing, threads): when the last
        # event was not delivered, its loss must be reported before `closed`.
        if not (msgs[-1]["op"] == "event" and msgs[-1].get("seq") == last):
            self.assertEqual(msgs[-1]["op"], "dropped", "a pending `dropped` is sent before `closed`")
        received, dropped = check_drop_accounting(msgs + [{"op": "event", "seq": last + 1}], sub["seq"] + 1,
                                                  last + 1)
        self.assertEqual(received - 1 + dropped, last - sub["seq"])
        after = [m for m in slow.log[upto + 1:] if m.get("scope") == S]
        self.assertEqual(after, [], "nothing of a scope follows closed")


class Close(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    async def test_close_scope(self):
        S, S2 = "doc:close", "doc:keep"
        a = await self.client(name="a")
        b = await self.client(name="b")
        await a.subscribe(S)
        await a.subscribe(S2)
        await b.subscribe(S)
        await a.push(S)  # join of b
        seqs = [await self.srv.emit(S, data=i) for i in range(3)]
        res = await self.srv.request("POST", "/api/close", {"scope": S})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json, {"closed": 2})
        for c in (a, b):
            got = [await c.push(S) for _ in range(4)]
            self.assertEqual([(m["op"], m.get("seq")) for m in got[:3]], [("event", s) for s in seqs],
                             f"{c.name}: queued events are delivered before closed: {got!r}")
            self.assertSub(got[3], {"op": "closed", "scope": S, "reason": "closed"},
                           f"{c.name}: members of a closed scope get only `closed` (no leave)")
        # nothing of the scope follows; the other subscription and the connection stay
        self.assertEqual(await self.srv.emit(S, data="after"), 0, "scope has no subscribers left")
        await self.marker(S2, a)
        for c in (a, b):
            self.assertEqual(await c.quiet(0.3, scope=S), [], f"{c.name}: nothing of {S} after closed")
            self.assertEqual((await c.call("ping"))["op"], "pong")
        # one can subscribe again
        r = await a.subscribe(S)
        self.assertEqual(r["op"], "subscribed")

    @server_args(*JWT_ANON)
    async def test_close_user_kicks(self):
        S1, S2 = "doc:k1", "doc:k2"
        alice = await self.client(token=token("alice"), name="alice")
        bob = await self.client(token=token("bob"), name="bob")
        anon = await self.client(name="anon")
        await bob.subscribe(S1)
        await anon.subscribe(S2)
        await alice.subscribe(S1)
        await alice.subscribe(S2)
        self.assertEqual((await bob.push(S1))["op"], "join")
        self.assertEqual((await anon.push(S2))["op"], "join")
        res = await self.srv.request("POST", "/api/close", {"user": "alice"})
        self.assertEqual((res.status, res.json), (200, {"closed": 2}), res)
        got = {}
        for _ in range(2):
            m = await alice.wait("closed")
            got[m["scope"]] = m
        self.assertEqual(set(got), {S1, S2}, got)
        for S in (S1, S2):
            self.assertSub(got[S], {"op": "closed", "scope": S, "reason": "kicked"})
        for c, S in ((bob, S1), (anon, S2)):
            lv = await c.push(S)
            self.assertEqual(lv["op"], "leave", f"{c.name}: others get leave when a user is closed: {lv!r}")
            assert_conn(lv["conn"], session=alice.session, user="alice")
            self.assertIs(lv["last"], True)
        await self.marker(S1, bob)
        self.assertEqual(await alice.quiet(0.3, scope=S1), [])
        self.assertEqual((await alice.call("ping"))["op"], "pong")


class SubscriptionLimit(ScopecastTestCase):
    SERVER_ARGS = ("--max-subscriptions", "2")

    async def test_subscriptions_past_the_limit_get_limit_error(self):
        a = await self.client()
        await a.subscribe("lim:1")
        await a.subscribe("lim:2")
        m = await a.call("subscribe", scope="lim:3")
        self.assertError(m, "limit", id=m.get("id"))
        self.assertEqual((await a.subscribe("lim:1"))["scope"], "lim:1",
                         "re-subscribing to a scope already held is not a new subscription")
        await a.ok("unsubscribe", scope="lim:2")
        self.assertEqual((await a.subscribe("lim:3"))["scope"], "lim:3",
                         "a freed slot can be used again")
        self.assertEqual((await a.call("ping"))["op"], "pong", "the connection stays open")


class PresenceOptOut(ScopecastTestCase):
    """scopecast's addition to v1: subscribe with "presence": false."""

    async def test_presence_false_neither_sees_nor_shows_presence(self):
        S = "room:blind"
        a = await self.client()
        await a.subscribe(S)
        b = await self.client()
        sb = await b.subscribe(S, presence=False)
        self.assertEqual(sb["presence"], [], "a blind subscription gets no list")
        self.assertEqual(await a.quiet(0.3, op="join"), [],
                         "a presence:false subscriber is not announced")
        pres = await a.ok("presence", scope=S)
        self.assertEqual([c["session"] for c in pres["presence"]], [a.session],
                         "a presence:false subscriber is not listed")
        c = await self.client()
        await c.subscribe(S)
        j = await a.wait("join", scope=S)
        self.assertEqual(j["conn"]["session"], c.session)
        seq = await self.srv.emit(S, data="x")
        ev = await b.wait("event", scope=S)
        self.assertEqual(ev["seq"], seq, "events still arrive; joins did not")
        await c.close()
        await a.wait("leave", scope=S)
        await b.close()
        self.assertEqual(await a.quiet(0.5, op="leave"), [],
                         "the blind subscriber leaves unannounced")
        m = await a.call("subscribe", scope="room:x", presence="no")
        self.assertError(m, "bad_request", id=m.get("id"))


class Heartbeat(ScopecastTestCase):
    SERVER_ARGS = ("--heartbeat", "1", "--client-emit")

    async def test_silent_client_closed_with_4408(self):
        t0 = time.monotonic()
        silent = await self.raw(name="silent", auto_pong=False)
        self.assertEqual(silent.welcome["heartbeat"], 1)
        closed = await silent.wait_closed(timeout=8)
        elapsed = time.monotonic() - t0
        self.assertEqual(closed.code, 4408, f"heartbeat timeout closes with 4408, got {closed}")
        self.assertGreaterEqual(len(silent.pings), 1, "the server sends WebSocket pings every heartbeat")
        self.assertGreaterEqual(elapsed, 1.5, "closed before 2 x heartbeat of silence")
        self.assertLessEqual(elapsed, 5.0, "not closed soon after 2 x heartbeat of silence")

    async def test_pongs_keep_a_client_alive(self):
        good = await self.raw(name="pongs", auto_pong=True)  # answers pings, sends nothing else
        await asyncio.sleep(4.0)
        await good.quiet(0.1)  # processes the pings (answering them) and notices a close
        if good.closed:
            self.fail(f"a client that answered every ping ({len(good.pings)} pings) was closed with code "
                      f"{good.closed.code}: a pong is a sign of life")
        pong = await good.call("ping")
        self.assertEqual(pong["op"], "pong")
        self.assertGreaterEqual(len(good.pings), 3, "pings keep coming every heartbeat")
        lib = await self.client(name="websockets")  # the library answers pings itself
        await asyncio.sleep(3.5)
        self.assertEqual((await lib.call("ping"))["op"], "pong",
                         "a client answering pings (pong = sign of life) must not be closed")

    async def test_data_frames_keep_a_client_alive(self):
        chatty = await self.raw(name="chatty", auto_pong=False)  # ignores pings, sends data frames
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.0:
            await chatty.send({"op": "ping"})
            await chatty.wait("pong", timeout=2)
            await asyncio.sleep(0.4)
        self.assertIsNone(chatty.closed, "data frames are a sign of life")
        self.assertGreaterEqual(len(chatty.pings), 2, "pings keep coming every heartbeat")


if __name__ == "__main__":
    main()
