#!/usr/bin/python3
"""Presence updates (docs/PROTOCOL.md, "Presence updates" in the additions):
`presence_update` changes a subscription's meta; every other member of the
scope that sees presence gets exactly one `update` push; `presence`,
`GET /api/presence` and a later `leave` carry the new meta; the meta budgets
answer `limit`; not subscribed (or subscribed blind) is `not_found`; at most
20 updates a second per subscription reach the others, the latest value
always last.
"""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (JWT_SECRET, ScopecastTestCase, assert_conn, main,  # noqa: E402
                     server_args, token)

RATE = 20  # updates per second per subscription (SC_PRESENCE_UPDATE_US)


class PresenceUpdate(ScopecastTestCase):
    async def members(self, scope, n=3, quiet=1):
        """n members that see presence, then `quiet` blind ones; each sees
        the joins of the ones after it taken away."""
        cs = []
        for i in range(n):
            c = await self.client(name=f"m{i}")
            await c.subscribe(scope, meta={"name": f"m{i}"})
            cs.append(c)
        qs = []
        for i in range(quiet):
            q = await self.client(name=f"q{i}")
            await q.subscribe(scope, presence=False)
            qs.append(q)
        for i, c in enumerate(cs):
            for _ in range(n - 1 - i):
                self.assertEqual((await c.push(scope))["op"], "join")
        return cs, qs

    async def test_update_reaches_every_other_member_once(self):
        S = "room:upd"
        (a, b, c, d), (q,) = await self.members(S, n=4, quiet=1)
        meta = {"name": "m0", "typing": True, "cursor": [10, 20.5], "s": "ü\"\\"}
        await a.send({"op": "presence_update", "id": "u1", "scope": S, "meta": meta})
        r = await a.wait(pred=lambda m: m.get("id") == "u1")
        self.assertEqual(r, {"op": "presence_updated", "id": "u1", "scope": S})
        for m in (b, c, d):
            u = await m.push(S)
            self.assertEqual(u["op"], "update", u)
            self.assertEqual(set(u), {"op", "scope", "conn"}, u)
            self.assertEqual(u["scope"], S)
            assert_conn(u["conn"], session=a.session, user=None, meta=meta)
        # exactly once: the next push of the scope is the marker, for
        # everyone; the updater and the blind member got no update
        await self.marker(S, a, b, c, d, q)
        for m in (a, b, c, d, q):
            self.assertEqual(m.take(op="update"), [], m.name)
        # presence and the HTTP API show it
        p = await b.ok("presence", scope=S)
        mine = [x for x in p["presence"] if x["session"] == a.session]
        self.assertEqual(len(mine), 1, p)
        assert_conn(mine[0], session=a.session, meta=meta)
        self.assertEqual(len(p["presence"]), 4, p)
        res = await self.srv.request("GET", f"/api/presence?scope={S}")
        self.assertEqual(res.status, 200, res)
        mine = [x for x in res.json["presence"] if x["session"] == a.session]
        self.assertEqual([x["meta"] for x in mine], [meta], res.json)
        # a newcomer's subscribed list has it too
        e = await self.client(name="late")
        s = await e.subscribe(S)
        self.assertEqual([x["meta"] for x in s["presence"] if x["session"] == a.session], [meta])
        for m in (a, b, c, d):
            self.assertEqual((await m.push(S))["op"], "join")
        # the later leave carries the new meta
        await a.ok("unsubscribe", scope=S)
        for m in (b, c, d, e):
            lv = await m.push(S)
            self.assertEqual(lv["op"], "leave", lv)
            assert_conn(lv["conn"], session=a.session, meta=meta)
        self.assertEqual(await q.quiet(0.2, op="leave"), [])

    async def test_meta_is_replaced_not_merged_and_can_be_cleared(self):
        S = "room:replace"
        (a, b), _ = await self.members(S, n=2, quiet=0)
        await a.ok("presence_update", "presence_updated", scope=S, meta={"x": 1, "y": 2})
        self.assertEqual((await b.push(S))["conn"]["meta"], {"x": 1, "y": 2})
        await asyncio.sleep(0.06)  # past the interval: applied at once
        await a.ok("presence_update", "presence_updated", scope=S, meta={"y": 3})
        self.assertEqual((await b.push(S))["conn"]["meta"], {"y": 3})
        await asyncio.sleep(0.06)
        await a.ok("presence_update", "presence_updated", scope=S, meta={})
        self.assertEqual((await b.push(S))["conn"]["meta"], {})
        p = await a.ok("presence", scope=S)
        self.assertEqual([x["meta"] for x in p["presence"] if x["session"] == a.session], [{}])
        # a disconnect's leave has the latest meta too
        await asyncio.sleep(0.06)
        await a.ok("presence_update", "presence_updated", scope=S, meta={"bye": True})
        self.assertEqual((await b.push(S))["conn"]["meta"], {"bye": True})
        await a.close()
        lv = await b.push(S)
        self.assertEqual((lv["op"], lv["conn"]["meta"]), ("leave", {"bye": True}), lv)

    async def test_not_subscribed_blind_and_malformed(self):
        S = "room:err"
        a = await self.client()
        b = await self.client()
        await b.subscribe(S)
        err = await a.call("presence_update", scope=S, meta={"x": 1})
        self.assertError(err, "not_found", id=err["id"])
        self.assertIn("not subscribed", err["message"])
        await a.subscribe(S, presence=False)
        err = await a.call("presence_update", scope=S, meta={"x": 1})
        self.assertError(err, "not_found", id=err["id"])
        self.assertIn("no presence", err["message"])
        await a.ok("unsubscribe", scope=S)
        err = await a.call("presence_update", scope=S, meta={"x": 1})
        self.assertError(err, "not_found", id=err["id"])
        await a.subscribe(S)
        self.assertEqual((await b.push(S))["op"], "join")
        for bad, text in (({"scope": S}, "meta: required"),
                          ({"scope": S, "meta": None}, "meta: required"),
                          ({"scope": S, "meta": [1]}, "meta: must be an object"),
                          ({"scope": S, "meta": "x"}, "meta: must be an object"),
                          ({"meta": {}}, "scope: required"),
                          ({"scope": "a b", "meta": {}}, "scope: must be")):
            err = await a.call("presence_update", **bad)
            self.assertError(err, "bad_request", id=err["id"])
            self.assertTrue(err["message"].startswith(text), err)
        # nothing reached b, the connection is fine
        await self.marker(S, b)
        self.assertEqual(b.take(op="update"), [])
        self.assertSub(await a.call("ping"), {"op": "pong"})

    @server_args("--max-meta", "100", "--max-meta-total", "250")
    async def test_meta_budgets_are_limit(self):
        S, S2, S3 = "room:lim", "room:lim2", "room:lim3"
        a = await self.client()
        b = await self.client()
        await b.subscribe(S)
        ok = {"pad": "y" * 80}  # 90 bytes as JSON
        await a.subscribe(S, meta={"n": 1})
        self.assertEqual((await b.push(S))["op"], "join")
        await a.subscribe(S2, meta=ok)
        await a.subscribe(S3, meta=ok)
        err = await a.call("presence_update", scope=S, meta={"pad": "x" * 120})
        self.assertError(err, "limit", id=err["id"])
        self.assertIn("over the limit of 100", err["message"])
        # 90 + 90 + 90 > 250: the subscription's own old meta is not counted
        err = await a.call("presence_update", scope=S, meta=ok)
        self.assertError(err, "limit", id=err["id"])
        self.assertIn("over the limit of 250", err["message"])
        await a.ok("presence_update", "presence_updated", scope=S, meta={"pad": "z" * 50})
        self.assertEqual((await b.push(S))["conn"]["meta"], {"pad": "z" * 50})
        # refusals changed nothing and told nobody
        await self.marker(S, b)
        p = await b.ok("presence", scope=S)
        self.assertEqual([x["meta"] for x in p["presence"] if x["session"] == a.session],
                         [{"pad": "z" * 50}])
        # shrinking another subscription's meta makes room
        await asyncio.sleep(0.06)
        await a.ok("presence_update", "presence_updated", scope=S2, meta={})
        await asyncio.sleep(0.06)
        await a.ok("presence_update", "presence_updated", scope=S, meta=ok)
        self.assertEqual((await b.push(S))["conn"]["meta"], ok)
        # a held update counts against the budget too: held S2 at 90 bytes
        # (its interval has not passed), then a subscribe of 90 is over
        # (90 + 90 + 2 + 90), which the applied metas (90 + 7 + 2) are not
        await a.ok("presence_update", "presence_updated", scope=S3, meta={})
        await a.ok("presence_update", "presence_updated", scope=S2, meta={"a": 1})
        await a.ok("presence_update", "presence_updated", scope=S2, meta=ok)
        err = await a.call("subscribe", scope="room:lim4", meta=ok)
        self.assertError(err, "limit", id=err["id"])

    @server_args("--rate-limit", "0")
    async def test_flood_is_limited_and_ends_with_the_last_value(self):
        S = "room:flood"
        (a, b, c), (q,) = await self.members(S, n=3, quiet=1)
        N = 500
        t0 = time.monotonic()
        for i in range(N):
            await a.send({"op": "presence_update", "id": i, "scope": S, "meta": {"n": i}})
        # every request is answered, in order, none refused
        replies = []
        while len(replies) < N:
            replies.append(await a.wait(pred=lambda m: "id" in m))
        self.assertEqual([r["op"] for r in replies], ["presence_updated"] * N)
        self.assertEqual([r["id"] for r in replies], list(range(N)))
        # the last value arrives, last
        seen = {}
        for m in (b, c):
            u = await m.wait("update", pred=lambda u: u["conn"]["meta"] == {"n": N - 1})
            seen[m.name] = time.monotonic()
        elapsed = max(seen.values()) - t0
        await asyncio.sleep(0.2)
        bound = int(elapsed * RATE) + 2
        for m in (b, c):
            m.take(op="update")  # the earlier ones, left pending by wait
            rest = await m.quiet(0.1, op="update")
            got = [u["conn"]["meta"]["n"] for u in m.log if u.get("op") == "update"]
            self.assertEqual(rest, [], f"{m.name}: updates after the last value: {rest!r}")
            self.assertEqual(got[-1], N - 1)
            self.assertEqual(got, sorted(got), f"{m.name}: updates out of order: {got!r}")
            self.assertLessEqual(len(got), bound,
                                 f"{m.name}: {len(got)} updates in {elapsed:.3f} s (at most {RATE}/s)")
            self.assertGreaterEqual(len(got), 1)
            print(f"  {m.name}: {len(got)} of {N} updates in {elapsed * 1000:.0f} ms", file=sys.stderr)
        self.assertEqual(await q.quiet(0.1, op="update"), [])
        self.assertEqual(a.take(op="update"), [])
        p = await b.ok("presence", scope=S)
        self.assertEqual([x["meta"] for x in p["presence"] if x["session"] == a.session], [{"n": N - 1}])

    async def test_steady_stream_gets_about_twenty_a_second(self):
        """A cursor stream at 200 updates a second for 1 s: the others get
        at most 20 a second, and not much fewer, the last value last."""
        S = "room:stream"
        (a, b), _ = await self.members(S, n=2, quiet=0)
        N = 200
        t0 = time.monotonic()
        for i in range(N):
            await a.send({"op": "presence_update", "scope": S, "meta": {"n": i}})
            await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.005 - time.monotonic()))
        await b.wait("update", pred=lambda u: u["conn"]["meta"] == {"n": N - 1})
        elapsed = time.monotonic() - t0
        await asyncio.sleep(0.1)
        got = [u["conn"]["meta"]["n"] for u in b.log if u.get("op") == "update"]
        print(f"  {len(got)} of {N} updates in {elapsed * 1000:.0f} ms", file=sys.stderr)
        self.assertEqual(got, sorted(got))
        self.assertEqual(got[-1], N - 1)
        self.assertLessEqual(len(got), int(elapsed * RATE) + 2)
        self.assertGreaterEqual(len(got), 5, got)  # 20 a second, not starved

    async def test_held_update_is_sent_after_the_interval(self):
        S = "room:held"
        (a, b), _ = await self.members(S, n=2, quiet=0)
        await a.send({"op": "presence_update", "id": 1, "scope": S, "meta": {"v": 1}})
        await a.send({"op": "presence_update", "id": 2, "scope": S, "meta": {"v": 2}})
        await a.send({"op": "presence_update", "id": 3, "scope": S, "meta": {"v": 3}})
        for i in (1, 2, 3):
            self.assertEqual((await a.wait(id=i))["op"], "presence_updated")
        u1 = await b.push(S)
        t1 = time.monotonic()
        u3 = await b.push(S)
        t3 = time.monotonic()
        self.assertEqual((u1["conn"]["meta"], u3["conn"]["meta"]), ({"v": 1}, {"v": 3}))
        self.assertGreaterEqual(t3 - t1, 0.03, "the held update came too soon")
        self.assertLess(t3 - t1, 1.0, "the held update came too late")
        await self.marker(S, b)

    async def test_unsubscribe_drops_a_held_update(self):
        S = "room:drop"
        (a, b), _ = await self.members(S, n=2, quiet=0)
        await a.send({"op": "presence_update", "id": 1, "scope": S, "meta": {"v": 1}})
        await a.send({"op": "presence_update", "id": 2, "scope": S, "meta": {"v": 2}})
        await a.send({"op": "unsubscribe", "id": 3, "scope": S})
        self.assertEqual((await a.wait(id=3))["op"], "unsubscribed")
        u = await b.push(S)
        self.assertEqual((u["op"], u["conn"]["meta"]), ("update", {"v": 1}))
        lv = await b.push(S)
        self.assertEqual((lv["op"], lv["conn"]["meta"]), ("leave", {"v": 1}))
        await asyncio.sleep(0.1)
        await self.marker(S, b)
        # subscribing again starts afresh
        await a.subscribe(S, meta={"v": 9})
        self.assertEqual((await b.push(S))["conn"]["meta"], {"v": 9})
        await a.ok("presence_update", "presence_updated", scope=S, meta={"v": 10})
        self.assertEqual((await b.push(S))["conn"]["meta"], {"v": 10})

    async def test_scopes_are_limited_separately(self):
        a = await self.client()
        b = await self.client()
        for S in ("r:1", "r:2"):
            await b.subscribe(S)
            await a.subscribe(S)
            self.assertEqual((await b.push(S))["op"], "join")
        await a.ok("presence_update", "presence_updated", scope="r:1", meta={"s": 1})
        await a.ok("presence_update", "presence_updated", scope="r:2", meta={"s": 2})
        u1 = await b.push("r:1")
        u2 = await b.push("r:2")
        self.assertEqual((u1["conn"]["meta"], u2["conn"]["meta"]), ({"s": 1}, {"s": 2}))

    @server_args("--jwt-secret", JWT_SECRET)
    async def test_user_and_at_stay(self):
        S = "doc:who"
        a = await self.client(token=token("ana", scopes=["doc:*"]))
        b = await self.client(token=token("bo", scopes=["doc:*"]))
        await b.subscribe(S)
        s = await a.subscribe(S, meta={"m": 0})
        at = [x["at"] for x in s["presence"] if x["session"] == a.session][0]
        self.assertEqual((await b.push(S))["op"], "join")
        await a.ok("presence_update", "presence_updated", scope=S, meta={"m": 1})
        u = await b.push(S)
        assert_conn(u["conn"], session=a.session, user="ana", meta={"m": 1})
        self.assertEqual(u["conn"]["at"], at)
        # a scope the token does not allow is forbidden, before not_found
        err = await a.call("presence_update", scope="other:1", meta={})
        self.assertError(err, "forbidden", id=err["id"])


if __name__ == "__main__":
    main()
