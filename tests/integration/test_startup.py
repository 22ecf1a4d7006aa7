#!/usr/bin/python3
"""A server that refuses to run misconfigured, and says why (README
"Configuration"): a port another scopecast holds, token rules without a
secret, a web root that is not there, a config path that is a directory;
auth failures are logged at the default level, within a budget; the exit log
counts the connections a drain deadline cut."""

import asyncio
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import run_server  # noqa: E402
from harness import (CONFIG, HOST, JWT_SECRET, ScopecastTestCase, http_request, main,  # noqa: E402
                     no_server, server_args, wrong_signature_token)



class Refusals(ScopecastTestCase):
    async def test_second_server_on_the_same_port_refuses_to_start(self):
        """SO_REUSEPORT would let it join the port and the kernel would split
        clients between two unrelated servers."""
        for extra in ((), ("--threads", "2"), ("--demo",)):
            rc, out = await asyncio.to_thread(run_server, "--port", self.srv.port,
                                              "--web-root", CONFIG.web_root, *extra)
            self.assertEqual(rc, 1, f"second server {extra}: exit code\n{out}")
            self.assertIn(f"cannot listen on {HOST}:{self.srv.port}: the port is in use", out)
        # every connection still reaches the first server: one presence list
        a = [await self.client(name=f"c{i}") for i in range(8)]
        for c in a:
            await c.subscribe("room")
        r = await a[0].call("presence", scope="room")
        self.assertEqual(len(r["presence"]), 8, r)
        seq = await self.srv.emit("room", data="x")
        for c in a:
            ev = await c.wait("event", scope="room")
            self.assertEqual(ev["seq"], seq, c.name)

    @no_server
    async def test_token_rules_without_a_secret_refuse_to_start(self):
        for flag in ("--require-auth", "--require-exp"):
            rc, out = await asyncio.to_thread(run_server, "--port", "0", flag)
            self.assertEqual(rc, 2, out)
            self.assertIn(f"{flag} needs --jwt-secret: without a secret no token can be checked", out)

    @no_server
    async def test_web_root_that_is_not_a_directory_refuses_to_start(self):
        rc, out = await asyncio.to_thread(run_server, "--port", "0", "--web-root", "/nonexistent/web")
        self.assertEqual(rc, 1, out)
        self.assertIn("--web-root '/nonexistent/web': No such file or directory", out)
        rc, out = await asyncio.to_thread(run_server, "--port", "0", "--web-root",
                                          os.path.join(CONFIG.web_root, "index.html"))
        self.assertEqual(rc, 1, out)
        self.assertIn("index.html': not a directory", out)

    @no_server
    async def test_config_path_that_is_a_directory_says_so(self):
        rc, out = await asyncio.to_thread(run_server, "--port", "0", "--config", CONFIG.web_root)
        self.assertEqual(rc, 2, out)
        self.assertIn(f"config file '{CONFIG.web_root}': Is a directory", out)


class AuthFailureLog(ScopecastTestCase):
    SERVER_ARGS = ("--jwt-secret", JWT_SECRET, "--api-key", "right-key")

    def log_lines(self, pattern):
        with open(self.srv.log_path, encoding="utf-8", errors="replace") as f:
            return [ln for ln in f if re.search(pattern, ln)]

    async def wait_log(self, pattern, n=1):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = self.log_lines(pattern)
            if len(lines) >= n:
                return lines
            await asyncio.sleep(0.05)
        self.fail(f"no {n} log line(s) matching {pattern!r}\n{self.srv.log_tail(30)}")

    async def test_auth_failures_are_logged_at_the_default_level(self):
        c = await self.raw(token=wrong_signature_token(), read_welcome=False, name="bad")
        await c.wait_closed()
        line = (await self.wait_log(r"refused a WebSocket from"))[0]
        self.assertRegex(line, r" info  refused a WebSocket from 127\.0\.0\.1: .*signature.*\(close 4401\)")
        res = await asyncio.to_thread(http_request, self.srv.port, "POST", "/api/emit",
                                      {"scope": "s", "data": 1}, {"Authorization": "Bearer wrong"})
        self.assertEqual(res.status, 401)
        line = (await self.wait_log(r"refused /api/emit"))[0]
        self.assertIn("refused /api/emit from 127.0.0.1: wrong API key (401)", line)

    async def test_a_flood_of_bad_tokens_is_logged_within_a_budget(self):
        args = os.environ.get("SC_IT_SERVER_ARGS", "").split()
        threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 1
        for i in range(50):
            c = await self.raw(token=wrong_signature_token(), read_welcome=False, name=f"bad{i}")
            await c.wait_closed()
        await self.wait_log(r"refused a WebSocket from", 20)
        await asyncio.sleep(0.3)
        self.assertLessEqual(len(self.log_lines(r"refused a WebSocket from")), 20 * threads,
                             "at most 20 lines per 10 s per service thread")


class DrainLog(ScopecastTestCase):
    @server_args("--drain-timeout", "1")
    async def test_exit_log_counts_connections_the_deadline_cut(self):
        S = "flood"
        slow = await self.raw(rcvbuf=4096, name="slow")
        await slow.subscribe(S)
        slow.pause()  # never reads again: it cannot drain
        for _ in range(20):
            await self.srv.emit_batch([{"scope": S, "data": "z" * 4000} for _ in range(100)])
        self.srv.signal(signal.SIGTERM)
        self.srv.expected_exit = True
        rc = await asyncio.to_thread(self.srv.proc.wait, 10)
        self.assertEqual(rc, 0, self.srv.log_tail(20))
        log = self.srv.log_tail(20)
        self.assertIn("stopped: 1 connection(s) still open at the drain deadline (--drain-timeout 1 s) "
                      "were cut", log)

    async def test_exit_log_says_when_every_connection_closed(self):
        c = await self.client()
        await c.subscribe("s")
        self.srv.signal(signal.SIGTERM)
        self.srv.expected_exit = True
        rc = await asyncio.to_thread(self.srv.proc.wait, 10)
        self.assertEqual(rc, 0, self.srv.log_tail(20))
        self.assertIn("stopped: every connection closed cleanly", self.srv.log_tail(20))


if __name__ == "__main__":
    main()
