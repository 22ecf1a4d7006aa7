#!/usr/bin/python3
"""Budgets that keep one client from hurting the others (docs/PROTOCOL.md
"Errors", close code 4429, --rate-limit)."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ScopecastTestCase, main, server_args  # noqa: E402


class RateLimit(ScopecastTestCase):
    SERVER_ARGS = ("--rate-limit", "10")  # bursts of 20

    async def test_limit_errors_then_4429_and_others_unaffected(self):
        bystander = await self.client(name="bystander")
        await bystander.subscribe("calm")
        flood = await self.client(name="flood")
        # a burst of 20 is taken whole
        for i in range(20):
            await flood.send({"op": "ping", "id": i})
        for i in range(20):
            self.assertSub(await flood.wait("pong", id=i), {"op": "pong", "id": i})
        # past it: `limit`, with the request's id, the connection open
        for i in range(100, 105):
            await flood.send({"op": "ping", "id": i})
        for i in range(100, 105):
            err = await flood.wait("error", id=i)
            self.assertSub(err, {"op": "error", "id": i, "code": "limit"})
            self.assertIn("rate limit: 10 requests per second", err["message"])
        # a client that keeps going is closed with 4429
        for i in range(200, 300):
            await flood.send({"op": "ping", "id": i})
        closed = await flood.wait_closed()
        self.assertEqual(closed.code, 4429, closed)
        # the other client did not notice
        seq = await self.srv.emit("calm", data="still here")
        self.assertSub(await bystander.push("calm"), {"op": "event", "seq": seq, "data": "still here"})
        for i in range(5):
            self.assertSub(await bystander.call("ping"), {"op": "pong"})

    async def test_a_client_under_the_rate_is_never_limited(self):
        c = await self.client()
        for _ in range(25):  # ~6.7 requests per second, under 10
            self.assertSub(await c.call("ping"), {"op": "pong"})
            await asyncio.sleep(0.15)

    async def test_malformed_requests_count_too(self):
        c = await self.raw(name="garbage")
        for _ in range(20):
            await c.send("{nope")
        for _ in range(20):
            self.assertSub(await c.wait("error"), {"code": "bad_request"})
        for _ in range(80):
            await c.send("{nope")
        closed = await c.wait_closed()
        self.assertEqual(closed.code, 4429, closed)

    @server_args("--rate-limit", "0")
    async def test_rate_limit_off(self):
        c = await self.client()
        for i in range(1000):
            await c.send({"op": "ping", "id": i})
        for i in range(1000):
            await c.wait("pong", id=i)


if __name__ == "__main__":
    main()
