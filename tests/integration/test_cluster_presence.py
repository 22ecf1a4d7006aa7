#!/usr/bin/python3
"""Cluster-wide presence (issue 13, the step after the broker): two
scopecast nodes A and B linked through one Redis (`--broker
redis://127.0.0.1:P`) show one presence per scope.

Every test starts its own redis-server (a free port on 127.0.0.1,
nothing persisted, stopped by PID) and two nodes with the same JWT secret
and API key. What must hold:

- a node's presence entries (join, leave, `presence_update`) reach the
  other node: `subscribed.presence`, the `presence` op and
  `GET /api/presence` list the entries of both nodes, each once, with the
  same session, user, `at` and meta everywhere; `join`/`leave`/`update`
  pushes reach the subscribers of both nodes, each exactly once;
  `"presence": false` subscriptions are not shown anywhere;
- `first`/`last` are per user across nodes: a user with a tab on A and one
  on B is one person (the second tab joins with first:false on both
  nodes, the first to go leaves with last:false, the last with last:true);
- a node killed with SIGKILL: its entries leave on the other node within
  5 s (it says it is alive every 0.5 s; silent 4.5 s = gone); a node
  stopped with SIGTERM: its entries leave at once (a goodbye), once each;
- Redis killed and restarted on the same port: the nodes relink and
  presence is reconciled: what joined, left or changed its meta on one
  node while Redis was down appears, leaves, changes on the other (one
  push each, no flicker of the unchanged entries, each session listed
  once); Redis down for more than 5 s: each node's entries leave on the
  other and join again after healing;
- presence grace (--presence-grace) holds across nodes: a dropped
  connection's entry stays listed on the other node, and leaves there once
  when the grace ends; a resume on its node is invisible on the other;
  a held entry counts for its user's first/last on every node.

    /usr/bin/python3 test_cluster_presence.py --server build/server/scopecast --web-root web [Class.test]

The module runs again with `--threads 2` (SC_IT_SERVER_ARGS, see
CMakeLists.txt). Needs /usr/bin/redis-server (SC_REDIS_SERVER overrides).
"""

import asyncio
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (ClusterTestCase, JWT_SECRET, assert_conn, http_request, main,  # noqa: E402
                     token)

API_KEY = "cluster-presence-key"
SANITIZED = bool(os.environ.get("SC_SANITIZER")) or "--sanitized" in sys.argv
SLACK = 2.0 if SANITIZED else 1.0  # deadlines from the spec are stretched under sanitizers
NODE_GONE = 5.0  # a node silent this long (4.5 s, checked every 0.5 s) is gone at the latest
SCHED = 0.5  # scheduling slack on top of a deadline of the spec


def sessions(conns):
    """The sessions of a presence list, sorted, duplicates kept."""
    return sorted(c["session"] for c in conns)


def by_session(conns):
    return {c["session"]: c for c in conns}


class ClusterPresenceCase(ClusterTestCase):
    """A Redis server and two nodes A and B linked through it (self.srv is
    A). Both have the JWT secret (users from token(sub)), the API key and
    --presence-grace GRACE."""

    GRACE = 1
    NODE_ARGS = ()
    TEST_TIMEOUT = 60.0

    def node_flags(self):
        return ("--api-key", API_KEY, "--jwt-secret", JWT_SECRET, "--presence-grace", str(self.GRACE),
                *self.NODE_ARGS)

    # -- helpers -------------------------------------------------------------
    async def member(self, srv, user, scope, name=None, meta=None, **fields):
        """A client of `user` on `srv`, subscribed to `scope` (with meta)."""
        c = await self.client(srv, name=name or f"{user}@{self.node_name(srv)}", token=token(user))
        if meta is not None:
            fields["meta"] = meta
        c.sub_reply = await c.subscribe(scope, **fields)
        return c

    async def observers(self, scope):
        """olga on A and oscar on B in `scope`, each knowing the other:
        oscar subscribes once B lists olga (so he gets no join of her: she
        is in his subscribed.presence), olga has seen his join."""
        oa = await self.member(self.a, "olga", scope, name="obsA")
        await self.wait_api_presence(self.b, scope, [oa.session])
        ob = await self.member(self.b, "oscar", scope, name="obsB")
        self.assertEqual(sessions(ob.sub_reply["presence"]), sorted([oa.session, ob.session]))
        await self.expect_push(oa, scope, "join", ob, first=True)
        return oa, ob

    async def api_presence(self, srv, scope):
        res = await srv.request("GET", f"/api/presence?scope={scope}")
        self.assertEqual(res.status, 200, f"GET /api/presence on {self.node_name(srv)}: {res!r}")
        j = res.json
        self.assertEqual(j.get("scope"), scope, j)
        self.assertIsInstance(j.get("presence"), list, j)
        for c in j["presence"]:
            assert_conn(c)
        return j["presence"]

    async def wait_api_presence(self, srv, scope, want, within=3.0):
        """Polls GET /api/presence on srv until it lists exactly the
        sessions `want` (each once); returns the list."""
        want = sorted(want)
        t0 = time.monotonic()
        while True:
            got = await self.api_presence(srv, scope)
            if sessions(got) == want:
                return got
            if time.monotonic() - t0 > within * SLACK:
                self.fail(f"GET /api/presence?scope={scope} on {self.node_name(srv)} lists {sessions(got)}, "
                          f"expected exactly {want} within {within * SLACK:.1f} s")
            await asyncio.sleep(0.05)

    async def expect_push(self, c, scope, op, who, timeout=None, **fields):
        """The next push of `scope` for c is `op` about client/session `who`
        with these fields; returns it."""
        sid = who if isinstance(who, str) else who.session
        m = await c.push(scope, timeout=timeout)
        if m.get("op") != op or not isinstance(m.get("conn"), dict) or m["conn"].get("session") != sid:
            raise AssertionError(f"{c.name}: expected {op} of {sid} as the next push of {scope!r}, got {m!r}; "
                                 f"{c._describe()}")
        self.assertSub(m, fields, f"({c.name})")
        assert_conn(m["conn"])
        return m

    async def expect_set(self, c, scope, want, timeout=None):
        """The next len(want) pushes of `scope` for c are exactly `want`, a
        list of (op, session, flag), in any order (flag: first for join, last
        for leave, meta for update); returns them by (op, session)."""
        got = {}
        for _ in range(len(want)):
            m = await c.push(scope, timeout=timeout)
            op = m.get("op")
            conn = m.get("conn") or {}
            flag = {"join": m.get("first"), "leave": m.get("last"), "update": conn.get("meta")}.get(op)
            key = (op, conn.get("session"))
            if key in got:
                self.fail(f"{c.name}: {op} of {conn.get('session')} twice: {got[key]!r} and {m!r}")
            got[key] = m
            if (op, conn.get("session"), flag) not in want:
                self.fail(f"{c.name}: unexpected push {m!r}; expected exactly {sorted(want, key=str)!r}")
        return got

    async def nothing(self, c, scope, duration, why=""):
        got = await c.quiet(duration, scope=scope)
        pushes = [m for m in got if m.get("op") in ("join", "leave", "update", "event", "dropped", "closed")]
        self.assertEqual(pushes, [], f"{c.name}: no push of {scope!r} expected {why}")

    def same_entries(self, got, want, note=""):
        """Two presence lists: the same sessions (each once) with the same
        user, meta and `at` (to the millisecond)."""
        self.assertEqual(sessions(got), sorted(set(sessions(want))), f"{note}: {got!r} vs {want!r}")
        g, w = by_session(got), by_session(want)
        for sid, wc in w.items():
            gc = g[sid]
            self.assertEqual((gc["user"], gc["meta"]), (wc["user"], wc["meta"]), f"{note}: {sid}: {gc!r} vs {wc!r}")
            self.assertAlmostEqual(gc["at"], wc["at"], delta=0.0015, msg=f"{note}: `at` of {sid}: {gc!r} vs {wc!r}")

    async def healthz(self, srv):
        try:
            return await asyncio.to_thread(http_request, srv.port, "GET", "/healthz", None, None, 2.0)
        except OSError as e:
            return e

    async def wait_health(self, srv, status, within):
        t0 = time.monotonic()
        while True:
            res = await self.healthz(srv)
            if not isinstance(res, Exception) and res.status == status:
                return time.monotonic() - t0
            if time.monotonic() - t0 > within:
                self.fail(f"node {self.node_name(srv)}: GET /healthz still {res!r} after {within:.1f} s, "
                          f"expected {status}")
            await asyncio.sleep(0.05)

    def kill_redis(self):
        os.kill(self.redis.proc.pid, signal.SIGKILL)
        self.redis.proc.wait()

    async def stop_expected(self, srv, sig):
        """Sends `sig` to srv (the test takes care of its end)."""
        srv.expected_exit = True
        srv.signal(sig)


# ------------------------------------------------------------------------------
# 1. Entries of both nodes everywhere: lists, join/update/leave pushes

class Mirror(ClusterPresenceCase):
    GRACE = 3  # so "at once" is clearly not "after the grace"

    async def test_join_update_leave_reach_the_other_node_once(self):
        S = "room:mirror"
        oa, ob = await self.observers(S)  # each sees the other: entries of both nodes
        # a member on B: join on both nodes, with the same conn
        b1 = await self.member(self.b, "bob", S, name="b1", meta={"color": "red"})
        ja = await self.expect_push(oa, S, "join", b1, first=True)
        jb = await self.expect_push(ob, S, "join", b1, first=True)
        assert_conn(ja["conn"], session=b1.session, user="bob", meta={"color": "red"})
        self.same_entries([ja["conn"]], [jb["conn"]], "the join on A vs on B")
        self.assertEqual(sessions(b1.sub_reply["presence"]), sorted([oa.session, ob.session, b1.session]),
                         "subscribed.presence on B lists A's entry too")
        # every list, on both nodes, is the same three entries, each once
        full = b1.sub_reply["presence"]
        for srv, c in ((self.a, oa), (self.b, ob)):
            p = (await c.ok("presence", scope=S))["presence"]
            self.same_entries(p, full, f"presence op on {self.node_name(srv)}")
            self.same_entries(await self.api_presence(srv, S), full, f"GET /api/presence on {self.node_name(srv)}")
        # a new subscriber on A: its subscribed lists both nodes' entries
        a2 = await self.member(self.a, "ann", S, name="a2")
        self.same_entries([c for c in a2.sub_reply["presence"] if c["session"] != a2.session], full,
                          "subscribed.presence on A")
        self.assertEqual(sessions(a2.sub_reply["presence"]).count(a2.session), 1)
        for c in (oa, ob, b1):
            await self.expect_push(c, S, "join", a2, first=True)

        # presence_update on B: one update on every other member, both nodes
        await b1.ok("presence_update", "presence_updated", scope=S, meta={"color": "blue"})
        for c in (oa, a2, ob):
            u = await self.expect_push(c, S, "update", b1)
            assert_conn(u["conn"], session=b1.session, user="bob", meta={"color": "blue"})
            self.assertAlmostEqual(u["conn"]["at"], ja["conn"]["at"], delta=0.0015, msg="`at` does not change")
        self.assertEqual(by_session(await self.api_presence(self.a, S))[b1.session]["meta"], {"color": "blue"})
        p = (await a2.ok("presence", scope=S))["presence"]
        self.assertEqual(by_session(p)[b1.session]["meta"], {"color": "blue"})
        # and on A: reaches B
        await a2.ok("presence_update", "presence_updated", scope=S, meta={"typing": True})
        for c in (oa, ob, b1):
            u = await self.expect_push(c, S, "update", a2)
            assert_conn(u["conn"], session=a2.session, user="ann", meta={"typing": True})
        self.assertEqual(by_session(await self.api_presence(self.b, S))[a2.session]["meta"], {"typing": True})

        # unsubscribe on B: leave at once on both nodes, with the meta last applied
        t0 = time.monotonic()
        await b1.ok("unsubscribe", scope=S)
        for c in (oa, a2, ob):
            lv = await self.expect_push(c, S, "leave", b1, timeout=1.0 * SLACK, last=True)
            assert_conn(lv["conn"], session=b1.session, user="bob", meta={"color": "blue"})
        self.assertLess(time.monotonic() - t0, self.GRACE - 1, "an unsubscribe leaves at once, not after the grace")
        await self.wait_api_presence(self.a, S, [oa.session, ob.session, a2.session], within=0.5)
        # a close with 1000 on A: leave at once on B
        t0 = time.monotonic()
        await a2.ws.close(code=1000)
        for c in (oa, ob):
            await self.expect_push(c, S, "leave", a2, timeout=1.0 * SLACK, last=True)
        self.assertLess(time.monotonic() - t0, self.GRACE - 1, "a close 1000 leaves at once, not after the grace")
        await self.wait_api_presence(self.b, S, [oa.session, ob.session], within=0.5)
        # exactly once: nothing more arrives
        for c in (oa, ob):
            await self.nothing(c, S, 0.5, "after the leaves (no duplicate pushes)")
        self.assertEqual([m for m in b1.log if m.get("scope") == S and m.get("op") in ("join", "leave")
                          and m["conn"]["session"] == b1.session], [], "a connection never sees itself")

    async def test_scope_with_members_only_on_the_other_node(self):
        """A has no subscriber of S: its /api/presence and the presence op
        of a client there list B's entries; the first subscriber on A sees
        them in subscribed.presence."""
        S = "room:far"
        b1 = await self.member(self.b, "bob", S, name="b1", meta={"k": 1})
        listed = await self.wait_api_presence(self.a, S, [b1.session])
        self.same_entries(listed, b1.sub_reply["presence"], "A's /api/presence of a scope living on B only")
        q = await self.client(self.a, name="q", token=token("quinn"))
        p = (await q.ok("presence", scope=S))["presence"]
        self.same_entries(p, b1.sub_reply["presence"], "presence op on A")
        a1 = await self.member(self.a, "ann", S, name="a1")
        self.assertEqual(sessions(a1.sub_reply["presence"]), sorted([a1.session, b1.session]))
        await self.expect_push(b1, S, "join", a1, first=True)
        await b1.ok("unsubscribe", scope=S)
        await self.expect_push(a1, S, "leave", b1, last=True)
        await a1.ok("unsubscribe", scope=S)
        self.assertEqual(await self.api_presence(self.a, S), [])
        await self.wait_api_presence(self.b, S, [], within=1.0)
        self.assertEqual((await q.ok("presence", scope=S))["presence"], [])

    async def test_blind_subscription_is_not_shown_on_the_other_node(self):
        S = "room:blind"
        oa = await self.member(self.a, "olga", S, name="obsA")
        blind = await self.member(self.b, "bob", S, name="blind", presence=False)
        self.assertEqual(blind.sub_reply["presence"], [])
        b2 = await self.member(self.b, "bea", S, name="b2")
        # the first push on A is b2's join: nothing came for the blind one
        await self.expect_push(oa, S, "join", b2, first=True)
        self.assertEqual(sessions(await self.api_presence(self.a, S)), sorted([oa.session, b2.session]))
        self.assertEqual(sessions(await self.api_presence(self.b, S)), sorted([oa.session, b2.session]))
        await blind.ok("unsubscribe", scope=S)
        await self.nothing(oa, S, 0.4, "for a blind subscription's unsubscribe")

    async def test_user_first_last_across_nodes(self):
        """alice with one tab on A and one on B is one person, on both
        nodes' observers and for her own tabs."""
        S = "room:tabs"
        oa, ob = await self.observers(S)
        ta = await self.member(self.a, "alice", S, name="tabA")
        for c in (oa, ob):
            await self.expect_push(c, S, "join", ta, first=True)
        tb = await self.member(self.b, "alice", S, name="tabB")
        for c in (oa, ob, ta):
            await self.expect_push(c, S, "join", tb, first=False)
        for srv in (self.a, self.b):
            self.assertEqual(sessions(await self.api_presence(srv, S)),
                             sorted([oa.session, ob.session, ta.session, tb.session]))
        # the tab on A goes (unsubscribe): not her last
        await ta.ok("unsubscribe", scope=S)
        for c in (oa, ob, tb):
            await self.expect_push(c, S, "leave", ta, last=False)
        # back on A: not her first (the tab on B is there)
        await ta.subscribe(S)
        for c in (oa, ob, tb):
            await self.expect_push(c, S, "join", ta, first=False)
        # the tab on B closes: not her last; then the tab on A: her last
        await tb.ws.close(code=1000)
        for c in (oa, ob, ta):
            await self.expect_push(c, S, "leave", tb, last=False)
        await ta.ws.close(code=1000)
        for c in (oa, ob):
            await self.expect_push(c, S, "leave", ta, last=True)
        # and a new tab of hers, on B, is her first again
        t3 = await self.member(self.b, "alice", S, name="tab3")
        for c in (oa, ob):
            await self.expect_push(c, S, "join", t3, first=True)
        for c in (oa, ob):
            await self.nothing(c, S, 0.4, "after the tabs (no duplicates)")

    async def test_rapid_updates_on_one_node_end_with_the_last_meta_on_the_other(self):
        S = "room:cursor"
        oa = await self.member(self.a, "olga", S, name="obsA")
        b1 = await self.member(self.b, "bob", S, name="b1", meta={"x": 0})
        await self.expect_push(oa, S, "join", b1)
        for x in range(1, 11):
            await b1.ok("presence_update", "presence_updated", scope=S, meta={"x": x})
        ups = []
        while True:
            u = await self.expect_push(oa, S, "update", b1)
            ups.append(u["conn"]["meta"]["x"])
            if ups[-1] == 10:
                break
        self.assertEqual(ups, sorted(set(ups)), f"updates arrive in order, each once: {ups}")
        await self.nothing(oa, S, 0.4, "after the last value")
        self.assertEqual(by_session(await self.api_presence(self.a, S))[b1.session]["meta"], {"x": 10})


    async def test_close_scope_on_one_node_empties_presence_everywhere(self):
        """POST /api/close of a scope on B: every member, on both nodes,
        gets `closed` and no leave; no node lists anything of it after;
        the scope starts afresh."""
        S = "room:closing"
        oa, ob = await self.observers(S)
        a1 = await self.member(self.a, "ann", S, name="a1")
        for c in (oa, ob):
            await self.expect_push(c, S, "join", a1, first=True)
        b1 = await self.member(self.b, "bob", S, name="b1")
        for c in (oa, ob, a1):
            await self.expect_push(c, S, "join", b1, first=True)
        res = await self.b.request("POST", "/api/close", {"scope": S})
        self.assertEqual(res.status, 200, res)
        for c in (oa, ob, a1, b1):
            m = await c.push(S)
            self.assertSub(m, {"op": "closed", "reason": "closed"}, f"({c.name}: closed, and no leave before it)")
            await self.nothing(c, S, 0.2, "after closed")
        await self.wait_api_presence(self.a, S, [], within=1.0)
        await self.wait_api_presence(self.b, S, [], within=1.0)
        # afresh: a new member on A is alone; one on B then joins, first
        n1 = await self.member(self.a, "ann", S, name="new-a")
        self.assertEqual(sessions(n1.sub_reply["presence"]), [n1.session])
        await self.wait_api_presence(self.b, S, [n1.session])
        n2 = await self.member(self.b, "bob", S, name="new-b")
        self.assertEqual(sessions(n2.sub_reply["presence"]), sorted([n1.session, n2.session]))
        await self.expect_push(n1, S, "join", n2, first=True)
        self.assertEqual(sessions(await self.api_presence(self.a, S)), sorted([n1.session, n2.session]))

    async def test_kicking_a_user_on_one_node_leaves_her_tabs_on_both(self):
        """POST /api/close {"user"} on B: alice's tabs on A and B end
        (kicked); the others see one leave per tab, last:true with the
        second."""
        S = "room:kick"
        oa, ob = await self.observers(S)
        ta = await self.member(self.a, "alice", S, name="tabA")
        for c in (oa, ob):
            await self.expect_push(c, S, "join", ta, first=True)
        tb = await self.member(self.b, "alice", S, name="tabB")
        for c in (oa, ob, ta):
            await self.expect_push(c, S, "join", tb, first=False)
        res = await self.b.request("POST", "/api/close", {"user": "alice"})
        self.assertEqual(res.status, 200, res)
        for t, other in ((ta, tb), (tb, ta)):
            m = await t.push(S)
            if m.get("op") == "leave":  # the other tab may go first (as on one node)
                self.assertEqual(m["conn"]["session"], other.session, m)
                m = await t.push(S)
            self.assertSub(m, {"op": "closed", "reason": "kicked"}, t.name)
        for c in (oa, ob):
            l1 = await c.push(S)
            l2 = await c.push(S)
            self.assertEqual([(m.get("op"), m.get("last")) for m in (l1, l2)], [("leave", False), ("leave", True)],
                             f"{c.name}: one leave per tab, the second her last: {l1!r} {l2!r}")
            self.assertEqual(sorted([l1["conn"]["session"], l2["conn"]["session"]]), sorted([ta.session, tb.session]))
            await self.nothing(c, S, 0.3, "after the kick")
        for srv in (self.a, self.b):
            self.assertEqual(sessions(await self.api_presence(srv, S)), sorted([oa.session, ob.session]))


# ------------------------------------------------------------------------------
# 2. A node goes away

class NodeGone(ClusterPresenceCase):
    GRACE = 5  # the default: a stopped node's held entries must not wait for it

    async def test_sigkill_entries_leave_on_the_other_node_within_5s(self):
        S = "room:kill"
        oa = await self.member(self.a, "olga", S, name="obsA")
        ta = await self.member(self.a, "alice", S, name="aliceA")
        tb = await self.member(self.b, "alice", S, name="aliceB")
        cb = await self.member(self.b, "carl", S, name="carlB", meta={"c": 1})
        await self.member(self.b, "blind", S, name="blindB", presence=False)
        await self.expect_push(oa, S, "join", ta, first=True)
        await self.expect_push(oa, S, "join", tb, first=False)
        await self.expect_push(oa, S, "join", cb, first=True)
        await self.wait_api_presence(self.a, S, [oa.session, ta.session, tb.session, cb.session], within=0.5)
        await asyncio.sleep(0.6)  # B's alive messages are flowing
        t_kill = time.monotonic()
        await self.stop_expected(self.b, signal.SIGKILL)
        got = await self.expect_set(oa, S, [("leave", tb.session, False), ("leave", cb.session, True)],
                                    timeout=(NODE_GONE + SCHED) * SLACK + 1)
        took = time.monotonic() - t_kill
        print(f"\n  B killed: its entries left on A after {took:.2f} s", flush=True)
        self.assertLess(took, (NODE_GONE + SCHED) * SLACK, "a killed node's entries leave within 5 s")
        assert_conn(got[("leave", cb.session)]["conn"], session=cb.session, user="carl", meta={"c": 1})
        self.assertEqual(sessions(await self.api_presence(self.a, S)), sorted([oa.session, ta.session]))
        self.assertEqual(sessions((await oa.ok("presence", scope=S))["presence"]), sorted([oa.session, ta.session]))
        # alice's count on A no longer holds her tab on B: her tab on A is her last
        await ta.ws.close(code=1000)
        await self.expect_push(oa, S, "leave", ta, last=True)
        await self.nothing(oa, S, 1.0, "after the killed node's entries left (once each)")

    async def test_sigterm_entries_leave_at_once_on_the_other_node(self):
        S = "room:stop"
        oa = await self.member(self.a, "olga", S, name="obsA")
        b1 = await self.member(self.b, "bob", S, name="b1")
        b2 = await self.member(self.b, "bea", S, name="b2")
        b3 = await self.member(self.b, "ben", S, name="b3")  # dropped: held on B by the grace
        for c in (b1, b2, b3):
            await self.expect_push(oa, S, "join", c, first=True)
        b3.ws.transport.abort()
        await asyncio.sleep(0.3)
        await self.nothing(oa, S, 0.2, "for a dropped connection within the grace")
        t_stop = time.monotonic()
        await self.stop_expected(self.b, signal.SIGTERM)
        await self.expect_set(oa, S, [("leave", b1.session, True), ("leave", b2.session, True),
                                      ("leave", b3.session, True)], timeout=3.0 * SLACK)
        took = time.monotonic() - t_stop
        print(f"\n  B stopped: its entries left on A after {took:.2f} s", flush=True)
        self.assertLess(took, 2.0 * SLACK, "a stopped node's entries leave at once (its goodbye), "
                        "not when it is found silent nor after the grace")
        rc = await asyncio.to_thread(self.b.proc.wait, 10)
        self.assertEqual(rc, 0, self.b.log_tail(20))
        self.assertEqual(sessions(await self.api_presence(self.a, S)), [oa.session])
        await self.nothing(oa, S, NODE_GONE + SCHED, "later (each entry left once, nothing at the silence)")


# ------------------------------------------------------------------------------
# 3. Redis goes away and comes back

class RedisOutage(ClusterPresenceCase):
    TEST_TIMEOUT = 60.0

    async def heal(self, t_kill):
        """Redis back on its port; both nodes /healthz 200. Returns the
        seconds from t_kill to the heal."""
        self.redis.start(port=self.redis.port)  # in this thread: see RedisServer
        t0 = time.monotonic()
        await self.wait_health(self.a, 200, 5.0 * SLACK)
        await self.wait_health(self.b, 200, max(0.5, 5.0 * SLACK - (time.monotonic() - t0)))
        return time.monotonic() - t_kill

    async def test_changes_during_a_short_outage_are_reconciled(self):
        S = "room:heal"
        oa, ob = await self.observers(S)
        a1 = await self.member(self.a, "ann", S, name="a1", meta={"v": 1})
        b1 = await self.member(self.b, "bob", S, name="b1")
        b2 = await self.member(self.b, "bea", S, name="b2", meta={"v": 1})
        await self.expect_set(oa, S, [("join", a1.session, True), ("join", b1.session, True),
                                      ("join", b2.session, True)])
        await self.expect_set(ob, S, [("join", a1.session, True), ("join", b1.session, True),
                                      ("join", b2.session, True)])
        await asyncio.sleep(0.6)

        t_kill = time.monotonic()
        self.kill_redis()
        await self.wait_health(self.a, 503, 3.0 * SLACK)
        await self.wait_health(self.b, 503, 3.0 * SLACK)
        # while cut off: on B one leaves, one joins, one changes its meta;
        # on A one joins and one changes its meta. Each node sees its own.
        await b1.ok("unsubscribe", scope=S)
        b3 = await self.member(self.b, "bert", S, name="b3", meta={"new": True})
        await b2.ok("presence_update", "presence_updated", scope=S, meta={"v": 2})
        a3 = await self.member(self.a, "axel", S, name="a3")
        await a1.ok("presence_update", "presence_updated", scope=S, meta={"v": 2})
        await self.expect_push(ob, S, "leave", b1, last=True)
        await self.expect_push(ob, S, "join", b3, first=True)
        await self.expect_push(ob, S, "update", b2)
        await self.expect_push(oa, S, "join", a3, first=True)
        await self.expect_push(oa, S, "update", a1)
        await self.nothing(oa, S, 0.2, "from B while Redis is down")
        self.assertNotIn(b3.session, sessions(await self.api_presence(self.a, S)))
        self.assertNotIn(a3.session, sessions(await self.api_presence(self.b, S)))

        healed = await self.heal(t_kill)
        t_heal = time.monotonic()
        print(f"\n  redis down for {healed:.2f} s", flush=True)
        self.assertLess(healed, 3.5 * SLACK, "relinked within a second of Redis being back")
        # A hears of B's changes, B of A's: one push each, nothing for the others
        got_a = await self.expect_set(oa, S, [("leave", b1.session, True), ("join", b3.session, True),
                                              ("update", b2.session, {"v": 2})], timeout=5.0 * SLACK)
        got_b = await self.expect_set(ob, S, [("join", a3.session, True), ("update", a1.session, {"v": 2})],
                                      timeout=5.0 * SLACK)
        print(f"  presence reconciled {time.monotonic() - t_heal:.2f} s after both nodes were healthy",
              flush=True)
        assert_conn(got_a[("join", b3.session)]["conn"], session=b3.session, user="bert", meta={"new": True})
        assert_conn(got_b[("join", a3.session)]["conn"], session=a3.session, user="axel", meta={})
        for c in (oa, ob):
            await self.nothing(c, S, 1.0, "after the reconciliation (no flicker of unchanged entries)")
        want = sorted([oa.session, ob.session, a1.session, a3.session, b2.session, b3.session])
        la = await self.wait_api_presence(self.a, S, want, within=0.5)
        lb = await self.wait_api_presence(self.b, S, want, within=0.5)
        self.same_entries(la, lb, "A's and B's /api/presence after healing")
        self.assertEqual(by_session(la)[b2.session]["meta"], {"v": 2})
        self.assertEqual(by_session(lb)[a1.session]["meta"], {"v": 2})
        for c in (oa, ob):
            self.same_entries((await c.ok("presence", scope=S))["presence"], la, f"presence op of {c.name}")
        # and live again both ways
        await b3.ok("unsubscribe", scope=S)
        for c in (oa, ob):
            await self.expect_push(c, S, "leave", b3, last=True)
        a4 = await self.member(self.a, "bert", S, name="a4")
        await self.expect_push(ob, S, "join", a4, first=True)

    async def test_long_outage_entries_leave_and_come_back(self):
        S = "room:long"
        oa, ob = await self.observers(S)
        b1 = await self.member(self.b, "bob", S, name="b1", meta={"m": "b1"})
        tb = await self.member(self.b, "alice", S, name="aliceB")
        await self.expect_set(oa, S, [("join", b1.session, True), ("join", tb.session, True)])
        ta = await self.member(self.a, "alice", S, name="aliceA")  # after A heard of her tab on B
        await self.expect_push(oa, S, "join", ta, first=False)
        await self.expect_set(ob, S, [("join", b1.session, True),
                                      ("join", tb.session, True), ("join", ta.session, False)])
        at = {c["session"]: c["at"] for c in await self.api_presence(self.a, S)}
        await asyncio.sleep(0.6)

        t_kill = time.monotonic()
        self.kill_redis()
        # each node drops the other's entries once it has not heard of it for 4.5 s
        got_a = await self.expect_set(oa, S, [("leave", ob.session, True), ("leave", b1.session, True),
                                              ("leave", tb.session, False)],
                                      timeout=(NODE_GONE + SCHED) * SLACK + 1)
        took = time.monotonic() - t_kill
        await self.expect_set(ob, S, [("leave", oa.session, True), ("leave", ta.session, False)],
                              timeout=(NODE_GONE + SCHED) * SLACK + 1 - took)
        print(f"\n  redis killed: B's entries left on A after {took:.2f} s", flush=True)
        self.assertLess(time.monotonic() - t_kill, (NODE_GONE + SCHED) * SLACK)
        assert_conn(got_a[("leave", b1.session)]["conn"], session=b1.session, user="bob", meta={"m": "b1"})
        self.assertEqual(sessions(await self.api_presence(self.a, S)), sorted([oa.session, ta.session]))
        self.assertEqual(sessions(await self.api_presence(self.b, S)), sorted([ob.session, b1.session, tb.session]))
        await self.nothing(oa, S, 0.5, "after the drop")

        await self.heal(t_kill)
        t_heal = time.monotonic()
        got_a = await self.expect_set(oa, S, [("join", ob.session, True), ("join", b1.session, True),
                                              ("join", tb.session, False)], timeout=5.0 * SLACK)
        await self.expect_set(ob, S, [("join", oa.session, True), ("join", ta.session, False)],
                              timeout=5.0 * SLACK)
        print(f"  entries back {time.monotonic() - t_heal:.2f} s after both nodes were healthy", flush=True)
        assert_conn(got_a[("join", b1.session)]["conn"], session=b1.session, user="bob", meta={"m": "b1"})
        self.assertAlmostEqual(got_a[("join", b1.session)]["conn"]["at"], at[b1.session], delta=0.0015,
                               msg="an entry back keeps its `at`")
        for c in (oa, ob):
            await self.nothing(c, S, 1.0, "after the entries came back (each once)")
        want = sorted([oa.session, ob.session, b1.session, tb.session, ta.session])
        la = await self.wait_api_presence(self.a, S, want, within=0.5)
        lb = await self.wait_api_presence(self.b, S, want, within=0.5)
        self.same_entries(la, lb, "A's and B's /api/presence after healing")
        # alice's two tabs count as one person again
        await tb.ws.close(code=1000)
        for c in (oa, ob):
            await self.expect_push(c, S, "leave", tb, last=False)
        await ta.ws.close(code=1000)
        for c in (oa, ob):
            await self.expect_push(c, S, "leave", ta, last=True)


# ------------------------------------------------------------------------------
# 4. Presence grace across nodes

class GraceAcross(ClusterPresenceCase):
    GRACE = 3 if SANITIZED else 2  # a Redis restart fits in it

    async def test_dropped_connection_is_held_then_leaves_once_on_the_other_node(self):
        S = "room:grace"
        oa = await self.member(self.a, "olga", S, name="obsA")
        b1 = await self.member(self.b, "bob", S, name="b1")  # the socket vanishes
        b2 = await self.member(self.b, "bea", S, name="b2")  # closes with 1001 (a page left)
        for c in (b1, b2):
            await self.expect_push(oa, S, "join", c, first=True)
        t0 = time.monotonic()
        b1.ws.transport.abort()
        await b2.ws.close(code=1001)
        await self.nothing(oa, S, self.GRACE - 0.5, "within the grace")
        self.assertEqual(sessions(await self.api_presence(self.a, S)), sorted([oa.session, b1.session, b2.session]),
                         "held entries stay listed on the other node")
        await self.expect_set(oa, S, [("leave", b1.session, True), ("leave", b2.session, True)],
                              timeout=2.0 * SLACK)
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, self.GRACE - 0.1, "no leave before the grace ends")
        self.assertLess(took, (self.GRACE + 1.0) * SLACK, "the leave within grace + 1 s")
        self.assertEqual(sessions(await self.api_presence(self.a, S)), [oa.session])
        await self.nothing(oa, S, 0.6, "after the leaves (once each)")

    async def test_resume_on_its_node_is_invisible_on_the_other(self):
        S = "room:resume"
        oa = await self.member(self.a, "olga", S, name="obsA")
        b1 = await self.member(self.b, "bob", S, name="b1", meta={"k": 1})
        await self.expect_push(oa, S, "join", b1, first=True)
        before = await self.api_presence(self.a, S)
        b1.ws.transport.abort()
        await asyncio.sleep(0.3)
        r = await self.client(self.b, name="b1-resumed", token=token("bob"),
                              query={"resume": b1.session, "resume_token": b1.welcome["resume_token"]})
        self.assertEqual((r.welcome.get("resumed"), r.session), (True, b1.session), r.welcome)
        await r.subscribe(S, meta={"k": 1})
        await self.nothing(oa, S, self.GRACE + 1.0, "for a resume (no leave, join or update)")
        self.same_entries(await self.api_presence(self.a, S), before, "A's list after the resume")
        await r.ok("unsubscribe", scope=S)
        await self.expect_push(oa, S, "leave", b1, last=True)

    async def test_held_entry_survives_a_redis_restart_and_leaves_once(self):
        """A connection on B drops just before Redis goes away; after the
        relink B's list still has the held entry (A sees nothing), and it
        leaves once on A when the grace ends."""
        S = "room:heldheal"
        oa = await self.member(self.a, "olga", S, name="obsA")
        b1 = await self.member(self.b, "bob", S, name="b1")
        await self.expect_push(oa, S, "join", b1, first=True)
        await asyncio.sleep(0.6)
        t0 = time.monotonic()
        b1.ws.transport.abort()
        await asyncio.sleep(0.1)
        self.kill_redis()
        await self.wait_health(self.a, 503, 3.0 * SLACK)
        await self.wait_health(self.b, 503, 3.0 * SLACK)
        self.redis.start(port=self.redis.port)
        await self.wait_health(self.a, 200, 5.0 * SLACK)
        await self.wait_health(self.b, 200, 5.0 * SLACK)
        healed = time.monotonic() - t0
        self.assertLess(healed, self.GRACE - 0.3, "the test needs the heal within the grace")
        await asyncio.sleep(0.2)
        self.assertEqual(sessions(await self.api_presence(self.a, S)), sorted([oa.session, b1.session]),
                         "the held entry is still listed on A after the relink")
        lv = await self.expect_push(oa, S, "leave", b1, timeout=(self.GRACE + 1.0) * SLACK, last=True)
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, self.GRACE - 0.1, f"the held entry left on A before the grace ended: {lv!r}")
        await self.nothing(oa, S, 0.5, "after the held entry's leave")
        self.assertEqual(sessions(await self.api_presence(self.a, S)), [oa.session])

    async def test_held_entry_counts_for_first_last_on_both_nodes(self):
        """alice's tab on B drops (held); she reconnects through A (a new
        session: the balancer chose the other node): her join there is not
        her first, and the held entry's leave after the grace not her last."""
        S = "room:move"
        oa, ob = await self.observers(S)
        old = await self.member(self.b, "alice", S, name="aliceB")
        for c in (oa, ob):
            await self.expect_push(c, S, "join", old, first=True)
        old.ws.transport.abort()
        await asyncio.sleep(0.3)
        new = await self.member(self.a, "alice", S, name="aliceA")
        for c in (oa, ob):
            await self.expect_push(c, S, "join", new, first=False)
        for c in (oa, ob):
            await self.expect_push(c, S, "leave", old, timeout=(self.GRACE + 1.0) * SLACK, last=False)
        await new.ok("unsubscribe", scope=S)
        for c in (oa, ob):
            await self.expect_push(c, S, "leave", new, last=True)
            await self.nothing(c, S, 0.3, "after alice's last leave")


if __name__ == "__main__":
    main()
