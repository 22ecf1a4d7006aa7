#!/usr/bin/python3
"""The plugin host (docs/PLUGINS.md), seen from a running server with the
test plugin tests/plugins/hooktest.c (and two that must not load): start-up
refuses bad plugins with a clear message; hooks fire exactly once per
connection and subscription; connect/subscribe/presence/emit verdicts, given
at once or later from a plugin thread; a hook that answers after 50 ms does
not delay other connections; a plugin thread emitting 100k events/s loses
nothing for a fast subscriber; timers, fd watches and in-server
subscriptions on the plugin loop."""

import asyncio
import collections
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (CONFIG, JWT_SECRET, ScopecastTestCase, main, no_server,  # noqa: E402
                     token)

PLUGIN_DIR = os.environ.get("SC_PLUGIN_DIR", "")


def plugin(name):
    path = os.path.join(PLUGIN_DIR, name + ".so")
    if not os.path.exists(path):
        raise AssertionError(f"{path} not found: set SC_PLUGIN_DIR to <build>/plugins (ctest does)")
    return path


def spec(name, **config):
    return f"{plugin(name)}:{json.dumps(config)}"


def run_server(*args, timeout=15.0):
    """harness.run_server with a free port and the web root."""
    return harness.run_server("--port", "0", "--web-root", CONFIG.web_root, *args,
                              timeout=timeout)


class BadPlugins(ScopecastTestCase):
    """Every start-up failure stops the server with a message naming it."""

    async def refused(self, *args):
        rc, out = await asyncio.to_thread(run_server, *args)
        self.assertNotEqual(rc, 0, out)
        self.assertNotIn("listening on", out)
        return out

    @no_server
    async def test_missing_file(self):
        out = await self.refused("--plugin", "/nonexistent/nothing.so")
        self.assertIn("--plugin '/nonexistent/nothing.so': cannot load it: "
                      "/nonexistent/nothing.so: cannot open shared object file", out)

    @no_server
    async def test_not_a_shared_object(self):
        out = await self.refused("--plugin", os.path.join(CONFIG.web_root, "index.html"))
        self.assertIn("cannot load it:", out)

    @no_server
    async def test_missing_symbol(self):
        out = await self.refused("--plugin", plugin("bad_no_symbol"))
        self.assertIn("not a scopecast plugin (no symbol 'scopecast_plugin')", out)

    @no_server
    async def test_abi_mismatch(self):
        out = await self.refused("--plugin", plugin("bad_abi"))
        self.assertIn("built for plugin ABI 42, this server has ABI 1", out)

    @no_server
    async def test_init_failure_with_the_plugins_reason(self):
        out = await self.refused("--plugin", spec("hooktest", fail="the moon is in the wrong phase"))
        self.assertIn("hooktest did not start: the moon is in the wrong phase", out)

    @no_server
    async def test_configuration_that_is_not_an_object(self):
        out = await self.refused("--plugin", plugin("hooktest") + ":[1,2]")
        self.assertIn("its configuration must be a JSON object: not a JSON object", out)
        out = await self.refused("--plugin", plugin("hooktest") + ':{"a":1')
        self.assertIn("its configuration must be a JSON object", out)

    @no_server
    async def test_a_later_plugin_failing_stops_the_earlier_ones(self):
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "log")
            await self.refused("--plugin", spec("hooktest", log=log), "--plugin", plugin("bad_abi"))
            with open(log) as f:
                self.assertEqual(f.read().split(), ["init", "shutdown"])

    @no_server
    async def test_plugins_from_the_environment_and_the_config_file(self):
        with tempfile.TemporaryDirectory() as d:
            cfg = os.path.join(d, "c.json")
            with open(cfg, "w") as f:
                json.dump({"plugin": [plugin("bad_abi")]}, f)
            out = await self.refused("--config", cfg)
            self.assertIn("built for plugin ABI 42", out)
            rc, out = await asyncio.to_thread(
                run_server, "--config", cfg, "--plugin", plugin("bad_no_symbol"))
            # the command line replaces the file's list
            self.assertIn("no symbol", out)
            self.assertNotIn("ABI 42", out)


class Hooks(ScopecastTestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.log = os.path.join(self.tmp, "hooks.log")
        super().setUp()

    def tearDown(self):
        super().tearDown()
        for f in os.listdir(self.tmp):
            os.unlink(os.path.join(self.tmp, f))
        os.rmdir(self.tmp)

    def start(self, *extra, **config):
        config.setdefault("log", self.log)
        return self.start_server("--plugin", spec("hooktest", **config), *extra)

    def lines(self):
        with open(self.log) as f:
            return [l.split() for l in f.read().splitlines()]

    def count(self, kind):
        return collections.Counter(tuple(l[1:]) for l in self.lines() if l[0] == kind)

    @no_server
    async def test_each_hook_fires_exactly_once_per_connection_and_subscription(self):
        self.srv = self.start(deny_prefix="secret:")
        clients = [await self.client() for _ in range(12)]
        for i, c in enumerate(clients):
            await c.subscribe("room")
            await c.subscribe(f"own:{i}")
            await c.subscribe("room")  # already subscribed: no second question
            await c.ok("presence", scope="room")
            m = await c.call("subscribe", scope="secret:x")
            self.assertError(m, "forbidden", id=m["id"])
        # half leave cleanly, half vanish without a close frame
        for i, c in enumerate(clients):
            if i % 2:
                c.ws.transport.abort()
            else:
                await c.close()
        deadline = time.monotonic() + 10
        while len(self.count("disconnect")) < 12 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        sessions = {c.session for c in clients}
        connects = self.count("connect")
        self.assertEqual({k[0] for k in connects}, sessions)
        self.assertTrue(all(n == 1 for n in connects.values()), connects)
        disconnects = self.count("disconnect")
        self.assertEqual(set(k[0] for k in disconnects), sessions)
        self.assertTrue(all(n == 1 for n in disconnects.values()), disconnects)
        subs = self.count("subscribe")
        self.assertEqual(len(subs), 12 * 3, subs)  # room, own:i, secret:x
        self.assertTrue(all(n == 1 for n in subs.values()), subs)
        self.assertEqual(sum(self.count("presence").values()), 12)

    @no_server
    async def test_connect_verdicts_user_and_meta(self):
        self.srv = self.start(user_cookie="sid", deny_cookie="banned=1", meta={"via": "plugin"})
        c = await self.client(extra_headers={"Cookie": "theme=dark; sid=carol"})
        self.assertEqual(c.welcome["user"], "carol")
        r = await c.subscribe("room")
        self.assertEqual(r["presence"][0]["user"], "carol")
        self.assertEqual(r["presence"][0]["meta"], {"via": "plugin"})
        # a subscribe's own meta wins over the plugin's default
        r = await c.subscribe("room2", meta={"mine": True})
        self.assertEqual(r["presence"][0]["meta"], {"mine": True})
        p = await self.srv.request("GET", "/api/presence?scope=room")
        self.assertEqual(p.json["presence"][0]["user"], "carol")
        # refused: forbidden, then close 4403; the others are unaffected
        bad = await self.client(read_welcome=False, extra_headers={"Cookie": "banned=1"})
        m = await bad.next()
        self.assertError(m, "forbidden")
        self.assertEqual(m["message"], "this cookie is not welcome")
        closed = await bad.wait_closed()
        self.assertEqual(closed.code, 4403)
        seq = await self.srv.emit("room", data=1)
        ev = await c.wait("event", scope="room")
        self.assertEqual(ev["seq"], seq)
        # the refused connection still had its one disconnect
        deadline = time.monotonic() + 5
        while len(self.count("disconnect")) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.assertEqual(len(self.count("connect")), 2)
        self.assertEqual(len(self.count("disconnect")), 1)

    @no_server
    async def test_subscribe_presence_and_emit_verdicts(self):
        self.srv = self.start("--client-emit", deny_prefix="secret:", wrap_data=True)
        a = await self.client()
        b = await self.client()
        for op, fields in (("subscribe", {}), ("presence", {}), ("emit", {"data": 1})):
            m = await a.call(op, scope="secret:plans", **fields)
            self.assertError(m, "forbidden", id=m["id"])
        self.assertEqual((await a.call("subscribe", scope="secret:plans"))["message"],
                         "secret: is off limits")
        await b.subscribe("room")
        await a.ok("emit", scope="room", data={"x": 1})
        ev = await b.wait("event", scope="room")
        self.assertEqual(ev["data"], {"wrapped": {"x": 1}})
        await a.ok("emit", scope="room")
        ev = await b.wait("event", scope="room")
        self.assertEqual(ev["data"], {"wrapped": None})
        # HTTP emits are the API key's business, not the hooks'
        await self.srv.emit("room", data=7)
        ev = await b.wait("event", scope="room")
        self.assertEqual(ev["data"], 7)
        # a denied subscribe leaves nothing behind: no event reaches it
        await self.srv.emit("secret:plans", data=1)
        self.assertEqual(await a.quiet(0.3, op="event"), [])

    @no_server
    async def test_late_answers_keep_each_connections_order(self):
        self.srv = self.start(delay_ms=50)
        c = await self.client()
        # pipelined: the slow subscribe's answer comes before the ping's
        await c.send({"op": "subscribe", "scope": "slow:a", "id": 1})
        await c.send({"op": "ping", "id": 2})
        await c.send({"op": "subscribe", "scope": "fast", "id": 3})
        got = [await c.next() for _ in range(3)]
        self.assertEqual([m.get("id") for m in got], [1, 2, 3], got)
        self.assertEqual(got[0]["op"], "subscribed")
        # the connection's welcome can wait for a late answer too
        t0 = time.monotonic()
        s = await self.client(query={"slow": "1"})
        self.assertGreaterEqual(time.monotonic() - t0, 0.045)
        await s.subscribe("fast")

    @no_server
    async def test_unanswered_question_times_out_as_a_denial(self):
        self.srv = self.start(never_prefix="void:")
        c = await self.client()
        t0 = time.monotonic()
        m = await c.call("subscribe", scope="void:x", timeout=15)
        took = time.monotonic() - t0
        self.assertError(m, "forbidden", id=m["id"])
        self.assertEqual(m["message"], "plugin hooktest did not answer within 5 s")
        self.assertGreaterEqual(took, 4.5)
        await c.subscribe("after")  # the connection reads again

    @no_server
    async def test_a_hook_answering_after_50ms_does_not_delay_others(self):
        """While 20 clients each wait 50 ms for their subscribes, another
        connection's pings are answered as fast as without them."""
        self.srv = self.start(delay_ms=50)
        other = await self.client(name="other")
        waiting = [await self.client(name=f"w{i}") for i in range(20)]

        async def rtts(n):
            out = []
            for _ in range(n):
                t = time.monotonic()
                await other.ok("ping")
                out.append(time.monotonic() - t)
            return out

        base = await rtts(100)

        async def slow(c, k):
            t = time.monotonic()
            for j in range(k):
                await c.subscribe(f"slow:{c.name}:{j}")
            return time.monotonic() - t

        slow_task = asyncio.gather(*(slow(c, 4) for c in waiting))
        await asyncio.sleep(0.01)
        during = await rtts(100)
        slow_times = await slow_task
        # each waiting client's four subscribes took four answers' time
        self.assertGreaterEqual(min(slow_times), 4 * 0.05 * 0.9, slow_times)
        p50b, p50d = statistics.median(base), statistics.median(during)
        worst = max(during)
        print(f"\n  ping RTT alone: median {p50b * 1000:.2f} ms; while 20 connections wait for "
              f"50 ms answers: median {p50d * 1000:.2f} ms, max {worst * 1000:.2f} ms", file=sys.stderr)
        # not delayed by the 50 ms waits: every ping far below one wait
        # (under a sanitizer, 9 in 10; its own pauses reach 0.2 s)
        p90d = sorted(during)[89]
        self.assertLess(p50d, 0.025, during)
        if CONFIG.sanitized:
            self.assertLess(p90d, 0.05, during)
            self.assertLess(worst, 1.0, during)
        else:
            self.assertLess(worst, 0.05, during)

    @no_server
    async def test_plugin_thread_emitting_100k_per_second_loses_nothing(self):
        n = 200_000 if not CONFIG.sanitized else 50_000
        self.srv = self.start("--maxsize", "1000000", "--max-queued-bytes", "0",
                              flood={"scope": "flood", "count": n, "rate": 100_000})
        c = await self.client()
        await c.subscribe("flood")
        c.record = False
        expect = 0
        dropped = 0
        deadline = time.monotonic() + (60 if not CONFIG.sanitized else 180)
        while expect < n:
            m = await c.next(timeout=max(0.1, deadline - time.monotonic()))
            if m.get("op") == "dropped":
                dropped += m["count"]
                continue
            if m.get("op") != "event":
                continue
            self.assertEqual(m["data"], {"i": expect})
            self.assertEqual(m["seq"], expect + 1)
            expect += 1
        self.assertEqual(dropped, 0)
        # the plugin's own account of its pace
        deadline = time.monotonic() + 10
        flood = None
        while flood is None and time.monotonic() < deadline:
            flood = next((l for l in self.lines() if l[0] == "flood"), None)
            await asyncio.sleep(0.05)
        sent, secs = int(flood[1]), float(flood[2])
        rate = sent / secs
        print(f"\n  plugin thread: {sent} events in {secs:.2f} s ({rate:,.0f}/s); "
              f"the subscriber got all {expect}, in order", file=sys.stderr)
        self.assertEqual(sent, n)
        if not CONFIG.sanitized:
            self.assertGreater(rate, 90_000)

    @no_server
    async def test_timers_fd_watches_and_subscriptions_on_the_plugin_loop(self):
        self.srv = self.start(tick={"scope": "ticks", "ms": 50}, pipe_scope="piped",
                              mirror={"from": "orig", "to": "copy"})
        c = await self.client()
        await c.subscribe("ticks")
        await c.subscribe("piped")
        await c.subscribe("copy")
        a = (await c.wait("event", scope="ticks"))["data"]["tick"]
        b = (await c.wait("event", scope="ticks"))["data"]["tick"]
        self.assertEqual(b, a + 1)
        p = (await c.wait("event", scope="piped"))["data"]["piped"]
        q = (await c.wait("event", scope="piped"))["data"]["piped"]
        self.assertGreater(q, p)
        seqs = [await self.srv.emit("orig", data={"n": i}) for i in range(50)]
        for i in range(50):
            ev = await c.wait("event", scope="copy")
            inner = ev["data"]
            self.assertEqual(inner["op"], "event")
            self.assertEqual(inner["scope"], "orig")
            self.assertEqual(inner["seq"], seqs[i])
            self.assertEqual(inner["data"], {"n": i})
        # its subscription is no member of the scope
        r = await c.subscribe("orig")
        self.assertEqual(len(r["presence"]), 1)
        # closing the scope reaches the plugin's subscription too
        res = await self.srv.request("POST", "/api/close", {"scope": "orig"})
        self.assertEqual(res.status, 200, res)
        deadline = time.monotonic() + 5
        while not any(l[:2] == ["mirror", "closed"] for l in self.lines()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.assertIn(["mirror", "closed", "closed"], self.lines())

    @no_server
    async def test_plugin_closes_users_and_scopes_and_reads_presence(self):
        self.srv = self.start("--jwt-secret", JWT_SECRET, control="ctl")
        alice = await self.client(token=token("alice"), name="alice")
        bob = await self.client(token=token("bob"), name="bob")
        watcher = await self.client(token=token("carol"), name="carol")
        await watcher.subscribe("ctl:out")
        for c in (alice, bob):
            await c.subscribe("room", meta={"n": c.name})
            await c.subscribe("hall")

        async def ask(**data):
            await self.srv.emit("ctl", data=data)
            return (await watcher.wait("event", scope="ctl:out"))["data"]

        p = await ask(presence="room")
        self.assertEqual(p["scope"], "room")
        self.assertEqual(sorted(m["user"] for m in p["presence"]), ["alice", "bob"])
        self.assertEqual(await ask(presence="bad scope"), "invalid")
        # close_user in one scope: alice's room subscription is kicked
        self.assertEqual(await ask(close_user="alice", scope="room"), {"n": 1})
        m = await alice.wait("closed", scope="room")
        self.assertEqual(m["reason"], "kicked")
        leave = await bob.wait("leave", scope="room")
        self.assertEqual(leave["conn"]["user"], "alice")
        self.assertEqual(leave["last"], True)
        # close_user everywhere, then a whole scope
        self.assertEqual(await ask(close_user="alice"), {"n": 1})
        await alice.wait("closed", scope="hall")
        self.assertEqual(await ask(close_scope="room"), {"n": 1})
        m = await bob.wait("closed", scope="room")
        self.assertEqual(m["reason"], "closed")
        p = await ask(presence="room")
        self.assertEqual(p["presence"], [])
        # bob's other subscription is untouched
        seq = await self.srv.emit("hall", data=1)
        self.assertEqual((await bob.wait("event", scope="hall"))["seq"], seq)

    @no_server
    async def test_tokens_claims_reach_the_hooks_and_rules_come_first(self):
        self.srv = self.start("--jwt-secret", JWT_SECRET, deny_prefix="secret:")
        c = await self.client(token=token("dave", scopes=["room*"]))
        await c.subscribe("room")
        # the token's own rule answers before any plugin is asked
        m = await c.call("subscribe", scope="other")
        self.assertError(m, "forbidden", id=m["id"])
        self.assertEqual(m["message"], "scope: not allowed by the token")
        self.assertNotIn(("subscribe", c.session, "other"),
                         {(l[0], *l[1:]) for l in self.lines()})
        connect = [l for l in self.lines() if l[0] == "connect"]
        self.assertEqual(connect, [["connect", c.session, "dave"]])


if __name__ == "__main__":
    main()
