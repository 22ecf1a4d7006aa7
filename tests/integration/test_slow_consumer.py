#!/usr/bin/python3
"""The slow-consumer policy (README "Configuration", docs/PROTOCOL.md
"Slow consumers"): in the scopes of --disconnect-slow a client that stays
over its limits for --slow-grace seconds is closed with 4413 while the
others lose nothing; one that catches up in time stays; elsewhere the
default policy drops with exact `dropped` accounting."""

import asyncio
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (T, ScopecastTestCase, check_drop_accounting, main,  # noqa: E402
                     server_args)

DATA = "d" * 60000  # the kernel's socket buffers take a few MB first


class SlowConsumers(ScopecastTestCase):
    TEST_TIMEOUT = 120.0

    async def stalled(self, *scopes, name):
        c = await self.raw(name=name, rcvbuf=4096)
        for sc in scopes:
            await c.send({"op": "subscribe", "scope": sc, "presence": False})
            await c.wait("subscribed", scope=sc, timeout=T(2))
        c.pause()
        return c

    async def emit_while_reading(self, reader, scope, n, every=0.005):
        """Emits n events into scope, paced; the reader must get each."""
        base = None
        for i in range(n):
            seq = await self.srv.emit(scope, data=DATA)
            base = base or seq
            m = await reader.wait("event", scope=scope, timeout=T(2))
            self.assertEqual(m["seq"], seq)
            await asyncio.sleep(every)
        return base, seq

    async def metric(self, name, namespace=None):
        st = (await self.srv.request("GET", "/metrics")).body.decode()
        if namespace is not None:
            name = re.escape(f'{name}{{namespace="{namespace}"}}')
        m = re.search(rf"^{name} (\d+)$", st, re.M)
        return int(m.group(1)) if m else None

    @server_args("--disconnect-slow", "dash:*", "--slow-grace", "1", "--maxsize", "16")
    async def test_stalled_client_is_closed_after_the_grace_others_unaffected(self):
        reader = await self.client(name="reader")
        await reader.subscribe("dash:1", presence=False)
        slow = await self.stalled("dash:1", name="slow")
        t0 = time.monotonic()
        # 2.5 s of events: the stalled client is over its queue from the
        # first ~20 on, the reader keeps up and loses nothing
        await self.emit_while_reading(reader, "dash:1", 250, every=0.01)
        deadline = time.monotonic() + T(5)
        while await self.metric("scopecast_slow_consumers_closed_total") < 1:
            self.assertLess(time.monotonic(), deadline, "the stalled client was not closed")
            await asyncio.sleep(0.05)
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 1.0, "closed before the grace")
        # it reads again: what the socket held, then the close 4413
        slow.resume()
        closed = await slow.wait_closed(timeout=T(10))
        self.assertEqual(closed.code, 4413)
        # the reader's scope goes on
        seq = await self.srv.emit("dash:1", data="after")
        self.assertEqual((await reader.wait("event", scope="dash:1"))["seq"], seq)
        # counted per namespace too
        self.assertEqual(await self.metric(
            "scopecast_scope_slow_consumers_closed_total", "dash"), 1)
        self.assertGreater(await self.metric(
            "scopecast_scope_events_dropped_total", "dash"), 0)

    @server_args("--disconnect-slow", "dash:*", "--slow-grace", "4", "--maxsize", "16")
    async def test_a_client_that_catches_up_within_the_grace_stays(self):
        reader = await self.client(name="reader")
        await reader.subscribe("dash:1", presence=False)
        brief = await self.stalled("dash:1", name="brief")
        base, _ = await self.emit_while_reading(reader, "dash:1", 100, every=0.005)
        await asyncio.sleep(0.2)  # stalled for ~1.5 s in all: under the grace
        brief.resume()
        await brief.drain(idle=0.5)  # the queue empties: the tail fits
        tail = await self.srv.emit("dash:1", data="tail")
        msgs = await brief.events_until("dash:1", tail, timeout=T(5))
        received, dropped = check_drop_accounting(msgs, base, tail)
        self.assertEqual(received + dropped, 101)
        self.assertGreater(dropped, 0)
        await asyncio.sleep(4.5)  # past the grace: caught up, not closed
        seq = await self.srv.emit("dash:1", data="still here")
        m = await brief.wait("event", scope="dash:1", timeout=T(2))
        self.assertEqual(m["seq"], seq)
        self.assertEqual(await self.metric("scopecast_slow_consumers_closed_total"), 0)

    @server_args("--disconnect-slow", "dash:*", "--slow-grace", "1", "--maxsize", "16")
    async def test_other_scopes_keep_the_drop_policy(self):
        reader = await self.client(name="reader")
        await reader.subscribe("chat", presence=False)
        slow = await self.stalled("chat", name="slow")
        base, last = await self.emit_while_reading(reader, "chat", 150, every=0.01)
        await asyncio.sleep(1.5)
        self.assertEqual(await self.metric("scopecast_slow_consumers_closed_total"), 0)
        slow.resume()
        await slow.drain(idle=0.5)  # the queue empties: the tail fits
        tail = await self.srv.emit("chat", data="tail")
        msgs = await slow.events_until("chat", tail, timeout=T(5))
        received, dropped = check_drop_accounting(msgs, base, tail)
        self.assertEqual(received + dropped, 151)
        self.assertGreater(dropped, 0)
        # the drops counted under the scope's namespace (a scope without
        # ':' is its own), exactly, and none closed
        self.assertEqual(await self.metric(
            "scopecast_scope_events_dropped_total", "chat"), dropped)
        self.assertEqual(await self.metric(
            "scopecast_scope_slow_consumers_closed_total", "chat"), 0)
        self.assertEqual(await self.metric("scopecast_events_dropped_total"), dropped)

    @server_args("--disconnect-slow", "*", "--slow-grace", "1", "--max-queued-bytes", "200000")
    async def test_the_byte_budget_counts_as_a_limit(self):
        """Queues far from --maxsize (256), but 60 KB events over a 200 KB
        budget: that is over the limit too."""
        reader = await self.client(name="reader")
        await reader.subscribe("big", presence=False)
        await self.stalled("big", name="slow")
        await self.emit_while_reading(reader, "big", 200, every=0.01)
        deadline = time.monotonic() + T(5)
        while await self.metric("scopecast_slow_consumers_closed_total") < 1:
            self.assertLess(time.monotonic(), deadline, "the stalled client was not closed")
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    main()
