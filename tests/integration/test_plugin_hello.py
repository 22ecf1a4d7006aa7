#!/usr/bin/python3
"""The README's example plugin hello (plugins/hello/hello.c) loaded into the
real server with --plugin: its timer emits {"n":k,"greet":...} into the
configured scope every every_ms, n rising by one; `private:*` scopes are
refused to connections without a user, with the plugin's reason, and allowed
to a token's user; every connection is logged; shutdown stops the timer; a
bad config stops start-up with the plugin's message.

SC_PLUGIN_DIR (set by ctest) is where the build put hello.so."""

import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (CONFIG, JWT_SECRET, ScopecastTestCase, main, no_server,  # noqa: E402
                     token)

PLUGIN = os.path.join(os.environ.get("SC_PLUGIN_DIR", ""), "hello.so")
REASON = "private: scopes need a signed-in user"


def plugin(config=None):
    """The --plugin argument: the path, or PATH:CONFIG_JSON (one argv element)."""
    if not os.path.exists(PLUGIN):
        raise AssertionError(f"{PLUGIN} not found: set SC_PLUGIN_DIR to <build>/plugins (ctest does)")
    if config is None:
        return PLUGIN
    return PLUGIN + ":" + (config if isinstance(config, str) else json.dumps(config))


def run_server(*args, timeout=15.0):
    """harness.run_server with a free port and the web root."""
    return harness.run_server("--port", "0", "--web-root", CONFIG.web_root, *args,
                              timeout=timeout)


class Hello(ScopecastTestCase):
    async def ticks(self, c, scope, count, timeout=5.0):
        """The next `count` events of `scope` for client c, with arrival times."""
        out = []
        for _ in range(count):
            ev = await c.wait("event", scope=scope, timeout=timeout)
            out.append((time.monotonic(), ev))
        return out

    @no_server
    async def test_ticks_arrive_with_rising_n_and_the_greeting(self):
        self.srv = self.start_server("--plugin", plugin({"scope": "ticks", "every_ms": 50,
                                                         "greet": "hi there"}))
        c = await self.client()
        await c.subscribe("ticks")
        got = await self.ticks(c, "ticks", 6)
        evs = [ev for _, ev in got]
        for ev in evs:
            self.assertEqual(list(ev["data"]), ["n", "greet"], ev)
            self.assertEqual(ev["data"]["greet"], "hi there", ev)
            self.assertIsNone(ev["origin"], ev)  # plugin events have no origin
            self.assertEqual(ev["paths"], [], ev)
        ns = [ev["data"]["n"] for ev in evs]
        self.assertGreaterEqual(ns[0], 1)
        self.assertEqual(ns, list(range(ns[0], ns[0] + 6)), ns)
        seqs = [ev["seq"] for ev in evs]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + 6)), seqs)
        # five gaps of about 50 ms each (libev timers do not fire early)
        span = got[-1][0] - got[0][0]
        self.assertGreaterEqual(span, 5 * 0.05 * 0.8, span)
        self.assertLess(span, 5 * 0.05 * 10, span)

    @no_server
    async def test_defaults_without_a_config(self):
        self.srv = self.start_server("--plugin", plugin())
        c = await self.client()
        await c.subscribe("hello")
        ev = await c.wait("event", scope="hello", timeout=5)
        self.assertEqual(ev["data"]["greet"], "hello, world")
        self.assertIsInstance(ev["data"]["n"], int)

    @no_server
    async def test_private_scopes_are_refused_to_anonymous_connections(self):
        self.srv = self.start_server("--plugin", plugin({"scope": "ticks"}))
        c = await self.client()
        self.assertIsNone(c.welcome["user"])
        for op in ("subscribe", "presence"):
            m = await c.call(op, scope="private:plans")
            self.assertError(m, "forbidden", id=m["id"])
            self.assertEqual(m["message"], REASON)
        # other scopes are the server's business; the connection goes on
        await c.subscribe("public:plans")
        await c.subscribe("privateer")  # not the "private:" prefix
        await c.ok("ping")
        # the refused subscribe left nothing behind
        self.assertEqual(await self.srv.emit("private:plans", data=1), 0)
        self.assertEqual(await c.quiet(0.3, op="event", scope="private:plans"), [])

    @no_server
    async def test_private_scopes_are_allowed_to_a_tokens_user(self):
        self.srv = self.start_server("--plugin", plugin({"scope": "ticks"}),
                                     "--jwt-secret", JWT_SECRET, "--allow-anonymous",
                                     "--anonymous-scopes", "private:*,lobby")
        ana = await self.client(token=token("ana"))
        self.assertEqual(ana.welcome["user"], "ana")
        await ana.subscribe("private:ana")
        await ana.ok("presence", scope="private:ana")
        # the server's own rules let anonymous connections into private:*;
        # the plugin narrows that
        anon = await self.client()
        m = await anon.call("subscribe", scope="private:ana")
        self.assertError(m, "forbidden", id=m["id"])
        self.assertEqual(m["message"], REASON)
        await anon.subscribe("lobby")
        seq = await self.srv.emit("private:ana", data={"x": 1})
        ev = await ana.wait("event", scope="private:ana")
        self.assertEqual((ev["seq"], ev["data"]), (seq, {"x": 1}))

    @no_server
    async def test_every_connection_is_logged(self):
        self.srv = self.start_server("--plugin", plugin(), "--jwt-secret", JWT_SECRET,
                                     "--allow-anonymous")
        ana = await self.client(token=token("ana"))
        anon = await self.client()
        # the peer is the client's address (127.0.0.1; see the report on
        # plugin.h's "1.2.3.4:5678")
        want = [f"plugin hello: session {ana.session} from 127.0.0.1",
                f"plugin hello: session {anon.session} from 127.0.0.1"]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            log = self.srv.log_tail(1000)
            if all(w in log for w in want):
                break
            await asyncio.sleep(0.05)
        lines = self.srv.log_tail(1000).splitlines()
        ana_line = [l for l in lines if want[0] in l]
        anon_line = [l for l in lines if want[1] in l]
        self.assertEqual(len(ana_line), 1, lines[-20:])
        self.assertEqual(len(anon_line), 1, lines[-20:])
        self.assertTrue(ana_line[0].endswith(", user ana"), ana_line)
        self.assertTrue(anon_line[0].endswith(", user (none)"), anon_line)

    @no_server
    async def test_shutdown_stops_its_timer(self):
        """At debug level the host logs what a plugin left behind after its
        shutdown; hello leaves nothing, and the server exits 0."""
        self.srv = self.start_server("--plugin", plugin({"every_ms": 10}), "--log-level", "debug")
        c = await self.client()
        await c.subscribe("hello")
        await c.wait("event", scope="hello")
        self.srv.expected_exit = True  # stopped here, not by the cleanup
        rc = await asyncio.to_thread(self.srv.stop)
        self.assertEqual(rc, 0, self.srv.log_tail(40))
        log = self.srv.log_tail(1000)
        self.assertIn("plugin hello loaded from", log)
        self.assertNotIn("plugin hello: freed", log)

    @no_server
    async def test_a_bad_config_stops_start_up_with_the_plugins_message(self):
        cases = [
            ({"scope": 5}, 'config: unknown key or wrong type: "scope" '
                           "(scope: string, every_ms: integer, greet: string)"),
            ({"greet": None}, 'config: unknown key or wrong type: "greet"'),
            ({"every_ms": "fast"}, 'config: unknown key or wrong type: "every_ms"'),
            ({"every_ms": 1.5}, 'config: unknown key or wrong type: "every_ms"'),
            ({"colour": "red"}, 'config: unknown key or wrong type: "colour"'),
            ({"scope": "has space"}, 'config: "scope" is not a valid scope: "has space"'),
            ({"scope": ""}, 'config: "scope" is not a valid scope: ""'),
            ({"scope": "x" * 201}, 'config: "scope" is not a valid scope'),
            ({"every_ms": 0}, 'config: "every_ms" must be 1 to 3600000'),
            ({"every_ms": 3600001}, 'config: "every_ms" must be 1 to 3600000'),
        ]
        for config, message in cases:
            with self.subTest(config=config):
                rc, out = await asyncio.to_thread(run_server, "--plugin", plugin(config))
                self.assertNotEqual(rc, 0, out)
                self.assertNotIn("listening on", out)
                self.assertIn(f"hello did not start: {message}", out)
        # what is not a JSON object never reaches the plugin
        rc, out = await asyncio.to_thread(run_server, "--plugin", plugin("[1]"))
        self.assertNotEqual(rc, 0, out)
        self.assertIn("its configuration must be a JSON object", out)


if __name__ == "__main__":
    main()
