#!/usr/bin/python3
"""Graceful shutdown on SIGTERM (docs/PROTOCOL.md close code 1001, `closed` reason
`shutdown`, "While draining, the listener stays open", --drain-timeout)."""

import asyncio
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import T, ScopecastTestCase, http_request, main, server_args  # noqa: E402


class Shutdown(ScopecastTestCase):
    async def wait_exit(self, t0, limit):
        """The process exits; returns (code, seconds since t0)."""
        self.srv.expected_exit = True
        try:
            rc = await asyncio.to_thread(self.srv.proc.wait, limit - (time.monotonic() - t0))
        except subprocess.TimeoutExpired:
            self.fail(f"server still running {limit:.1f} s after SIGTERM")
        return rc, time.monotonic() - t0

    def assertClosedAfterEvents(self, c, scope, seqs):
        """In c's log: the events of `scope` with these seqs, in order, then
        `closed` reason shutdown, then nothing else of the scope."""
        of_scope = [m for m in c.log
                    if m.get("scope") == scope and m.get("op") in ("event", "dropped", "leave", "closed")]
        self.assertTrue(of_scope, f"{c.name}: nothing of {scope} received")
        self.assertEqual([(m["op"], m.get("seq")) for m in of_scope[:-1]], [("event", s) for s in seqs],
                         f"{c.name}: queued events of {scope} are delivered before `closed`: {of_scope!r}")
        self.assertSub(of_scope[-1], {"op": "closed", "scope": scope, "reason": "shutdown"})

    @server_args("--drain-timeout", "2")
    async def test_sigterm_delivers_queued_then_closed_then_1001(self):
        a = await self.client(name="a")
        b = await self.client(name="b")
        await a.subscribe("s1")
        await a.subscribe("s2")
        await b.subscribe("s1")
        s1 = [await self.srv.emit("s1", data=i) for i in range(5)]
        s2 = [await self.srv.emit("s2", data=i) for i in range(2)]
        t0 = time.monotonic()
        self.srv.signal(signal.SIGTERM)
        for c in (a, b):
            closed = await c.wait_closed(timeout=T())
            self.assertEqual(closed.code, 1001, f"{c.name}: close code on shutdown: {closed}")
        self.assertClosedAfterEvents(a, "s1", s1)
        self.assertClosedAfterEvents(a, "s2", s2)
        self.assertClosedAfterEvents(b, "s1", s1)
        rc, elapsed = await self.wait_exit(t0, 2 + 3)
        self.assertEqual(rc, 0, f"exit code after SIGTERM ({self.srv.log_tail(20)})")

    @server_args("--drain-timeout", "3")
    async def test_drain_refuses_new_work_and_respects_timeout(self):
        S = "flood"
        normal = await self.client(name="normal")
        await normal.subscribe(S)
        slow = await self.raw(rcvbuf=4096, name="slow")
        await slow.subscribe(S)
        slow.pause()  # never reads again: its queue cannot drain
        for _ in range(30):
            await self.srv.emit_batch([{"scope": S, "data": "z" * 4000} for _ in range(100)])
        t0 = time.monotonic()
        self.srv.signal(signal.SIGTERM)
        # /healthz answers 503 while draining; the listener stays open
        statuses = []
        while time.monotonic() - t0 < 1.5:
            try:
                statuses.append((await asyncio.to_thread(http_request, self.srv.port, "GET", "/healthz",
                                                         None, None, 2.0)).status)
            except OSError as e:
                statuses.append(repr(e))
            if statuses[-1] == 503:
                break
            await asyncio.sleep(0.02)
        self.assertEqual(statuses[-1], 503, f"/healthz while draining: {statuses}")
        self.assertTrue(all(s in (200, 503) for s in statuses), statuses)
        up = await self.raw(check=False, read_welcome=False, name="late")
        self.assertEqual(up.status, 503, "new WebSocket upgrades are refused with 503 while draining")
        res = await asyncio.to_thread(http_request, self.srv.port, "GET", "/healthz")
        self.assertEqual(res.status, 503)
        closed = await normal.wait_closed(timeout=T())
        self.assertEqual(closed.code, 1001, closed)
        closing = [m for m in normal.log if m.get("op") == "closed"]
        self.assertEqual(len(closing), 1, closing)
        self.assertSub(closing[0], {"scope": S, "reason": "shutdown"})
        rc, elapsed = await self.wait_exit(t0, 3 + 2.5)
        self.assertEqual(rc, 0, f"exit code after a drain that timed out ({self.srv.log_tail(20)})")
        self.assertGreaterEqual(elapsed, 2.0, "exited long before the drain timeout with a client still stuck")

    async def test_idle_server_exits_promptly(self):
        t0 = time.monotonic()
        self.srv.signal(signal.SIGTERM)
        rc, elapsed = await self.wait_exit(t0, 3)
        self.assertEqual(rc, 0)

    @server_args("--drain-timeout", "2")
    async def test_connected_unsubscribed_client_gets_1001(self):
        a = await self.client()
        t0 = time.monotonic()
        self.srv.signal(signal.SIGTERM)
        closed = await a.wait_closed(timeout=T())
        self.assertEqual(closed.code, 1001)
        self.assertEqual([m for m in a.log if m.get("op") == "closed"], [])
        rc, _ = await self.wait_exit(t0, 2 + 3)
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    main()
