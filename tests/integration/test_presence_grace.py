#!/usr/bin/python3
"""Presence grace (docs/PROTOCOL.md, "Presence grace" in the additions): a
connection that drops (socket gone, a close frame other than 1000, a
heartbeat timeout) keeps its presence for --presence-grace seconds; the
same session resumes within it (`/ws?resume=SESSION&resume_token=T`, the
token from its `welcome`) without anyone seeing leave/join; a real
departure is one leave after the grace; a user's `last` comes only when all
of their connections are gone; a resume with another user's token or a
wrong resume token gets a fresh session and `"resumed": false`; a clean
unsubscribe (and a close with 1000) leaves at once; --presence-grace 0 is
the old behaviour (no resume_token, leave at once).
"""

import asyncio
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (JWT_SECRET, ScopecastTestCase, assert_conn, main,  # noqa: E402
                     server_args, token)

GRACE = 2  # seconds (--presence-grace in these tests)
S = "room:grace"


def resume_query(c):
    return {"resume": c.session, "resume_token": c.welcome["resume_token"]}


class PresenceGrace(ScopecastTestCase):
    SERVER_ARGS = ("--presence-grace", str(GRACE), "--client-emit",
                   "--jwt-secret", JWT_SECRET, "--allow-anonymous",
                   "--anonymous-scopes", "*")

    async def pair(self, user_a="alice", meta=None):
        """An observer (bob) and a member (alice) of S, the join seen."""
        obs = await self.client(name="bob", token=token("bob"))
        await obs.subscribe(S)
        a = await self.client(name=user_a, token=token(user_a) if user_a else None)
        await a.subscribe(S, **({"meta": meta} if meta is not None else {}))
        j = await obs.push(S)
        self.assertEqual((j["op"], j["conn"]["session"]), ("join", a.session), j)
        return obs, a

    async def test_welcome_has_a_resume_token(self):
        a = await self.client()
        rt = a.welcome.get("resume_token")
        self.assertIsInstance(rt, str, a.welcome)
        self.assertRegex(rt, r"^[0-9a-f]{32}$")
        self.assertNotIn("resumed", a.welcome, "only a resume attempt is answered with `resumed`")

    async def test_reload_is_invisible_and_resumed_connection_gets_events(self):
        obs, a = await self.pair(meta={"color": "red"})
        at = (await obs.ok("presence", scope=S))["presence"]
        a.ws.transport.abort()  # the socket vanishes (no close frame)
        await asyncio.sleep(0.3)
        a2 = await self.client(name="alice2", token=token("alice"), query=resume_query(a))
        self.assertEqual(a2.welcome.get("resumed"), True, a2.welcome)
        self.assertEqual(a2.session, a.session, "a resumed session keeps its id")
        self.assertRegex(a2.welcome.get("resume_token", ""), r"^[0-9a-f]{32}$")
        sub = await a2.subscribe(S, meta={"color": "red"})
        self.assertEqual(sorted(c["session"] for c in sub["presence"]), sorted([obs.session, a.session]))
        # the same entry as before: nobody saw anything, not even an update
        self.assertEqual(await obs.quiet(GRACE + 1.0, scope=S), [], "no leave/join/update for a reload")
        p = (await obs.ok("presence", scope=S))["presence"]
        self.assertEqual(sorted(at, key=lambda c: c["session"]), sorted(p, key=lambda c: c["session"]))
        # the resumed connection gets events; its own emit is not echoed
        seq = await self.srv.emit(S, data={"x": 1})
        ev = await a2.push(S)
        self.assertEqual((ev["op"], ev["seq"]), ("event", seq), ev)
        self.assertEqual((await obs.push(S))["seq"], seq)
        # a real departure later: exactly one leave
        await a2.ok("unsubscribe", scope=S)
        lv = await obs.push(S)
        self.assertSub(lv, {"op": "leave", "last": True})
        assert_conn(lv["conn"], session=a.session, user="alice", meta={"color": "red"})

    async def test_resume_with_new_meta_is_one_update(self):
        obs, a = await self.pair(meta={"color": "red"})
        a.ws.transport.abort()
        a2 = await self.client(name="alice2", token=token("alice"), query=resume_query(a))
        await a2.subscribe(S, meta={"color": "blue"})
        up = await obs.push(S)
        self.assertSub(up, {"op": "update"})
        assert_conn(up["conn"], session=a.session, user="alice", meta={"color": "blue"})
        self.assertEqual(await obs.quiet(GRACE + 0.8, scope=S), [])
        self.assertEqual(await a2.quiet(0.2, op="update"), [], "no update to the updater")

    async def test_departure_is_one_leave_after_the_grace(self):
        obs, a = await self.pair()
        t0 = time.monotonic()
        a.ws.transport.abort()
        lv = await obs.push(S, timeout=GRACE + 3)
        waited = time.monotonic() - t0
        self.assertSub(lv, {"op": "leave", "last": True})
        assert_conn(lv["conn"], session=a.session, user="alice")
        self.assertGreaterEqual(waited, GRACE - 0.05, "no leave before the grace")
        self.assertLess(waited, GRACE + 1.0, "the leave within grace + 1 s")
        self.assertEqual(await obs.quiet(0.6, scope=S), [], "exactly one leave")
        # the held session is gone: a late resume is a fresh session's... same id,
        # but it joins like anyone
        a2 = await self.client(name="late", token=token("alice"), query=resume_query(a))
        await a2.subscribe(S)
        self.assertSub(await obs.push(S), {"op": "join", "first": True})

    async def test_close_frame_other_than_1000_is_a_drop(self):
        obs, a = await self.pair()
        await a.ws.close(code=1001)  # a page navigating away or reloading
        self.assertEqual(await obs.quiet(GRACE - 0.5, scope=S), [], "held: no leave yet")
        self.assertSub(await obs.push(S, timeout=2.0), {"op": "leave", "last": True})

    async def test_clean_unsubscribe_and_close_1000_leave_at_once(self):
        obs, a = await self.pair()
        t0 = time.monotonic()
        await a.ok("unsubscribe", scope=S)
        self.assertSub(await obs.push(S, timeout=1.0), {"op": "leave", "last": True})
        await a.subscribe(S)
        self.assertSub(await obs.push(S), {"op": "join"})
        await a.ws.close(code=1000)
        self.assertSub(await obs.push(S, timeout=1.0), {"op": "leave", "last": True})
        self.assertLess(time.monotonic() - t0, GRACE)

    async def test_two_tabs_last_only_when_both_gone(self):
        obs = await self.client(name="bob", token=token("bob"))
        await obs.subscribe(S)
        t1 = await self.client(name="tab1", token=token("alice"))
        t2 = await self.client(name="tab2", token=token("alice"))
        await t1.subscribe(S)
        await t2.subscribe(S)
        self.assertSub(await obs.push(S), {"op": "join", "first": True})
        self.assertSub(await obs.push(S), {"op": "join", "first": False})
        t1.ws.transport.abort()
        await asyncio.sleep(0.5)
        t2.ws.transport.abort()
        lv1 = await obs.push(S, timeout=GRACE + 3)
        self.assertSub(lv1, {"op": "leave", "last": False})
        self.assertEqual(lv1["conn"]["session"], t1.session)
        lv2 = await obs.push(S, timeout=3)
        self.assertSub(lv2, {"op": "leave", "last": True})
        self.assertEqual(lv2["conn"]["session"], t2.session)
        # one tab drops, the other unsubscribes cleanly: that leave is not last
        t3 = await self.client(name="tab3", token=token("alice"))
        t4 = await self.client(name="tab4", token=token("alice"))
        await t3.subscribe(S)
        await t4.subscribe(S)
        await obs.push(S)
        await obs.push(S)
        t3.ws.transport.abort()
        await asyncio.sleep(0.2)
        await t4.ok("unsubscribe", scope=S)
        self.assertSub(await obs.push(S, timeout=1.0), {"op": "leave", "last": False})
        self.assertSub(await obs.push(S, timeout=GRACE + 2), {"op": "leave", "last": True})

    async def test_resume_by_another_user_is_refused(self):
        obs, a = await self.pair()
        a.ws.transport.abort()
        m = await self.client(name="mallory", token=token("mallory"), query=resume_query(a))
        self.assertEqual(m.welcome.get("resumed"), False, m.welcome)
        self.assertNotEqual(m.session, a.session, "a refused resume gets a fresh session")
        await m.subscribe(S)
        j = await obs.push(S)
        self.assertSub(j, {"op": "join", "first": True})
        assert_conn(j["conn"], session=m.session, user="mallory")
        # alice's entry still leaves after the grace
        lv = await obs.push(S, timeout=GRACE + 2)
        self.assertSub(lv, {"op": "leave", "last": True})
        self.assertEqual(lv["conn"]["session"], a.session)

    async def test_resume_with_wrong_token_or_anonymous_is_refused(self):
        obs, a = await self.pair()
        a.ws.transport.abort()
        bad = dict(resume_query(a))
        bad["resume_token"] = ("0" if bad["resume_token"][0] != "0" else "1") + bad["resume_token"][1:]
        w = await self.client(name="wrong", token=token("alice"), query=bad)
        self.assertEqual((w.welcome.get("resumed"), w.session != a.session), (False, True), w.welcome)
        # the right token without the user's JWT: anonymous is another user
        anon = await self.client(name="anon", query=resume_query(a))
        self.assertEqual((anon.welcome.get("resumed"), anon.session != a.session), (False, True))
        # a session id without a token
        bare = await self.client(name="bare", token=token("alice"), query={"resume": a.session})
        self.assertEqual(bare.welcome.get("resumed"), False)
        # the real owner still can
        a2 = await self.client(name="alice2", token=token("alice"), query=resume_query(a))
        self.assertEqual((a2.welcome.get("resumed"), a2.session), (True, a.session))
        await a2.subscribe(S)
        self.assertEqual(await obs.quiet(GRACE + 0.8, scope=S), [])

    async def test_anonymous_session_resumes_with_its_token(self):
        obs, a = await self.pair(user_a=None)
        a.ws.transport.abort()
        a2 = await self.client(name="anon2", query=resume_query(a))
        self.assertEqual((a2.welcome.get("resumed"), a2.session), (True, a.session))
        await a2.subscribe(S)
        self.assertEqual(await obs.quiet(GRACE + 0.8, scope=S), [])

    async def test_resume_before_the_old_socket_is_noticed(self):
        """The old connection is still open (a half-open socket after a
        Wi-Fi blip): the resumed one takes its presence over; the old one's
        end is silent."""
        obs, a = await self.pair()
        a2 = await self.client(name="alice2", token=token("alice"), query=resume_query(a))
        await a2.subscribe(S)
        p = (await obs.ok("presence", scope=S))["presence"]
        self.assertEqual(sorted(c["session"] for c in p), sorted([obs.session, a.session]))
        a.ws.transport.abort()
        self.assertEqual(await obs.quiet(GRACE + 0.8, scope=S), [])
        await a2.ws.close(code=1000)
        self.assertSub(await obs.push(S, timeout=1.0), {"op": "leave", "last": True})

    async def test_unresubscribed_scopes_leave_after_the_grace(self):
        obs, a = await self.pair()
        await obs.subscribe("other")
        await a.subscribe("other")
        self.assertSub(await obs.push("other"), {"op": "join"})
        a.ws.transport.abort()
        a2 = await self.client(name="alice2", token=token("alice"), query=resume_query(a))
        await a2.subscribe(S)  # not "other"
        lv = await obs.push("other", timeout=GRACE + 2)
        self.assertSub(lv, {"op": "leave", "last": True})
        self.assertEqual(await obs.quiet(0.3, scope=S), [])

    async def test_shutdown_drops_held_entries_quietly(self):
        obs, a = await self.pair()
        a.ws.transport.abort()
        await asyncio.sleep(0.3)
        self.srv.expected_exit = True
        self.srv.signal(signal.SIGTERM)
        closed = await obs.wait_closed(timeout=5)
        self.assertEqual(closed.code, 1001, closed)
        of_scope = [m for m in obs.pending if m.get("scope") == S]
        self.assertEqual([m["op"] for m in of_scope], ["closed"], "no leave at shutdown")
        rc = await asyncio.to_thread(self.srv.proc.wait, 8)
        self.assertEqual(rc, 0, self.srv.log_tail(20))

    @server_args("--presence-grace", "0")
    async def test_grace_zero_is_the_old_behaviour(self):
        obs, a = await self.pair()
        self.assertNotIn("resume_token", a.welcome)
        t0 = time.monotonic()
        a.ws.transport.abort()
        self.assertSub(await obs.push(S, timeout=1.5), {"op": "leave", "last": True})
        self.assertLess(time.monotonic() - t0, 1.0)
        a2 = await self.client(name="alice2", token=token("alice"),
                               query={"resume": a.session, "resume_token": "0" * 32})
        self.assertNotEqual(a2.session, a.session)


if __name__ == "__main__":
    main()
