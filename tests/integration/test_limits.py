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


class MetaAndPresence(ScopecastTestCase):
    @server_args("--max-meta", "100", "--max-meta-total", "250")
    async def test_meta_budgets_are_limit_errors_not_closes(self):
        c = await self.client()
        big = {"pad": "x" * 120}
        err = await c.call("subscribe", scope="a", meta=big)
        self.assertSub(err, {"op": "error", "code": "limit"})
        self.assertIn("over the limit of 100", err["message"])
        ok = {"pad": "y" * 80}  # 90 bytes as JSON
        for scope in ("a", "b"):
            self.assertSub(await c.call("subscribe", scope=scope, meta=ok), {"op": "subscribed"})
        err = await c.call("subscribe", scope="c", meta=ok)  # 270 > 250
        self.assertSub(err, {"op": "error", "code": "limit"})
        self.assertIn("over the limit of 250", err["message"])
        # leaving a scope frees its share
        await c.call("unsubscribe", scope="a")
        self.assertSub(await c.call("subscribe", scope="c", meta=ok), {"op": "subscribed"})
        self.assertSub(await c.call("ping"), {"op": "pong"})

    async def test_newcomers_join_a_scope_full_of_large_metas(self):
        """Issue: 70 connections with 60 KB metas made every later subscribe
        a 4 MB reply and a 1008. Now metas are capped (2 KB by default) and
        so is the list; a newcomer joins and sees everyone."""
        crowd = []
        for i in range(70):
            c = await self.client(name=f"c{i}")
            err = await c.call("subscribe", scope="full", meta={"pad": "m" * 60000})
            self.assertSub(err, {"op": "error", "code": "limit"})
            self.assertSub(await c.call("subscribe", scope="full", meta={"pad": "m" * 2000}),
                           {"op": "subscribed"})
            crowd.append(c)
        newcomer = await self.client(name="newcomer")
        r = await newcomer.call("subscribe", scope="full", meta={"name": "new"})
        self.assertSub(r, {"op": "subscribed"})
        self.assertEqual(len(r["presence"]), 71)
        self.assertNotIn("total", r)
        p = await newcomer.call("presence", scope="full")
        self.assertEqual(len(p["presence"]), 71)

    @server_args("--max-presence", "50")
    async def test_presence_lists_are_cut_and_say_their_total(self):
        for i in range(60):
            c = await self.client(name=f"p{i}")
            await c.subscribe("many")
        newcomer = await self.client(name="newcomer")
        r = await newcomer.call("subscribe", scope="many")
        self.assertEqual((len(r["presence"]), r.get("total")), (50, 61), r)
        p = await newcomer.call("presence", scope="many")
        self.assertEqual((len(p["presence"]), p.get("total")), (50, 61))


if __name__ == "__main__":
    main()
