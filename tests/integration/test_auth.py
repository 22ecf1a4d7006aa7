#!/usr/bin/python3
"""Authentication and authorization (docs/PROTOCOL.md "Authentication", "tokens",
"order of checks", "audience", demo mode)."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (JWT_SECRET, ScopecastTestCase, alg_none_token, assert_conn, expired_token,  # noqa: E402
                     jwt_claims, main, make_jwt, token, wrong_signature_token)

JWT = ("--jwt-secret", JWT_SECRET)


class AuthCase(ScopecastTestCase):
    async def assertRejected(self, tok, srv=None):
        """A bad token: the upgrade is accepted, `error` unauthorized is sent
        (no welcome), then close 4401."""
        c = await self.raw(srv, token=tok, read_welcome=False, name="rejected")  # raises unless 101
        first = await c.next()
        self.assertError(first, "unauthorized")
        closed = await c.wait_closed()
        self.assertEqual(closed.code, 4401, f"close code after unauthorized: {closed}")
        self.assertEqual([m for m in c.log if m.get("op") == "welcome"], [], "no welcome for a bad token")


class Tokens(AuthCase):
    SERVER_ARGS = JWT

    async def test_valid_token(self):
        a = await self.client(token=token("alice"))
        self.assertEqual(a.welcome["user"], "alice")
        s = await a.subscribe("doc:1")
        assert_conn(s["presence"][0], session=a.session, user="alice", meta={})

    async def test_expired_token(self):
        await self.assertRejected(expired_token())

    async def test_wrong_signature(self):
        await self.assertRejected(wrong_signature_token())

    async def test_alg_none(self):
        await self.assertRejected(alg_none_token())

    async def test_alg_none_with_secret_as_hs256_signature(self):
        # header says none but a valid HS256 signature is attached: still not HS256
        hdr_none = make_jwt({"sub": "alice", "exp": 4102444800}, header={"alg": "none", "typ": "JWT"})
        await self.assertRejected(hdr_none)

    async def test_garbage_token(self):
        await self.assertRejected("not-a-jwt")
        await self.assertRejected("a.b.c")

    async def test_no_token_is_anonymous(self):
        a = await self.client()
        self.assertIsNone(a.welcome["user"])

    async def test_exp_is_checked_at_connect_only(self):
        a = await self.client(token=token("alice", exp_in=2))
        await asyncio.sleep(3.0)
        self.assertEqual((await a.call("ping"))["op"], "pong", "exp is checked at connect")

    async def test_other_clients_unaffected_by_rejections(self):
        good = await self.client(token=token("bob"))
        await good.subscribe("doc:x")
        for tok in (expired_token(), wrong_signature_token(), alg_none_token()):
            await self.assertRejected(tok)
        await self.marker("doc:x", good)


class RequireAuth(AuthCase):
    SERVER_ARGS = JWT + ("--require-auth",)

    async def test_missing_token_rejected(self):
        c = await self.raw(read_welcome=False)
        self.assertError(await c.next(), "unauthorized")
        self.assertEqual((await c.wait_closed()).code, 4401)
        self.assertFalse([m for m in c.log if m.get("op") == "welcome"])

    async def test_bad_tokens_rejected(self):
        await self.assertRejected(expired_token())
        await self.assertRejected(wrong_signature_token())
        await self.assertRejected(alg_none_token())

    async def test_valid_token_accepted(self):
        a = await self.client(token=token("alice"))
        self.assertEqual(a.welcome["user"], "alice")


class Audience(ScopecastTestCase):
    SERVER_ARGS = JWT

    async def asyncSetUp(self):
        self.S = "doc:aud"
        self.alice = await self.client(token=token("alice"), name="alice")
        self.alice2 = await self.client(token=token("alice"), name="alice2")
        self.bob = await self.client(token=token("bob"), name="bob")
        self.anon = await self.client(name="anon")
        self.all = (self.alice, self.alice2, self.bob, self.anon)
        for c in self.all:
            await c.subscribe(self.S)
        for i, c in enumerate(self.all):  # consume the joins of the later ones
            for _ in range(len(self.all) - 1 - i):
                self.assertEqual((await c.push(self.S))["op"], "join")

    async def deliver(self, fields, to, not_to):
        seq = await self.srv.emit(self.S, **fields)
        for c in to:
            ev = await c.push(self.S)
            self.assertSub(ev, {"op": "event", "seq": seq, "data": fields.get("data")}, c.name)
        if not_to:
            m = await self.marker(self.S, *not_to)
            self.assertEqual(m, seq + 1)
            for c in to:
                await c.push(self.S)  # their copy of the marker
        return seq

    async def test_audience_single_user(self):
        await self.deliver({"data": "for alice", "audience": ["alice"]},
                           to=(self.alice, self.alice2), not_to=(self.bob, self.anon))

    async def test_audience_two_users(self):
        await self.deliver({"data": "a+b", "audience": ["alice", "bob"]},
                           to=(self.alice, self.alice2, self.bob), not_to=(self.anon,))

    async def test_audience_empty_is_nobody_but_seq_used(self):
        seq = await self.srv.emit(self.S, data="nobody", audience=[])
        self.assertGreater(seq, 0, "audience [] is still counted and seq'd")
        m = await self.marker(self.S, *self.all)
        self.assertEqual(m, seq + 1)

    async def test_audience_null_and_absent_is_everyone(self):
        await self.deliver({"data": "all", "audience": None}, to=self.all, not_to=())
        await self.deliver({"data": "all2"}, to=self.all, not_to=())

    async def test_audience_unknown_user(self):
        seq = await self.srv.emit(self.S, data="ghost", audience=["nobody-here"])
        self.assertEqual(await self.marker(self.S, *self.all), seq + 1)

    async def test_client_emit_with_audience(self):
        carol = await self.client(token=token("carol", emit=True), name="carol")
        r = await carol.ok("emit", scope=self.S, data="psst", audience=["bob"])
        ev = await self.bob.push(self.S)
        self.assertSub(ev, {"op": "event", "seq": r["seq"], "origin": carol.session, "data": "psst"})
        self.assertEqual(await self.marker(self.S, self.alice, self.alice2, self.anon), r["seq"] + 1)


class ScopesClaim(ScopecastTestCase):
    SERVER_ARGS = JWT

    async def test_scope_patterns(self):
        c = await self.client(token=token("sam", scopes=["doc:*", "room", "a*b"]))
        allowed = ["doc:1", "doc:abc:def", "doc:", "doc:*", "room", "a*b"]
        forbidden = ["roomy", "room:1", "doc", "do", "axb", "a*bc", "other", "Doc:1"]
        for s in allowed:
            r = await c.call("subscribe", scope=s)
            self.assertEqual(r["op"], "subscribed", f"{s!r} should be allowed by [doc:*, room, a*b]: {r!r}")
        for s in forbidden:
            await c.send({"op": "subscribe", "id": f"f-{s}", "scope": s})
            r = await c.wait(pred=lambda m, s=s: m.get("id") == f"f-{s}")
            self.assertError(r, "forbidden", id=f"f-{s}")
        # presence follows the same rule
        r = await c.call("presence", scope="doc:9")
        self.assertEqual(r["op"], "presence", r)
        await c.send({"op": "presence", "id": 77, "scope": "other"})
        self.assertError(await c.wait(id=77), "forbidden", id=77)
        # bad_request before forbidden
        await c.send({"op": "subscribe", "id": 78, "scope": "has space"})
        self.assertError(await c.wait(id=78), "bad_request", id=78)
        self.assertEqual((await c.call("ping"))["op"], "pong", "forbidden does not close the connection")

    async def test_star_alone_matches_everything(self):
        c = await self.client(token=token("sam", scopes=["*"]))
        for s in ("a", "doc:1", "*", "x" * 200):
            self.assertEqual((await c.call("subscribe", scope=s))["op"], "subscribed", s)

    async def test_empty_scopes_claim_allows_nothing(self):
        c = await self.client(token=token("sam", scopes=[]))
        r = await c.call("subscribe", scope="a")
        self.assertError(r, "forbidden", id=r.get("id"))


class EmitClaim(ScopecastTestCase):
    SERVER_ARGS = JWT

    async def emit_result(self, c, scope, code=None):
        r = await c.call("emit", scope=scope, data=1)
        if code is None:
            self.assertEqual(r["op"], "emitted", f"emit into {scope!r} should be allowed: {r!r}")
        else:
            self.assertError(r, code, id=r.get("id"))
            self.assertIn("id", r)
        return r

    async def test_emit_true_limited_by_scopes(self):
        c = await self.client(token=token("e", emit=True, scopes=["doc:*"]))
        await self.emit_result(c, "doc:1")
        await self.emit_result(c, "chat", "forbidden")

    async def test_emit_true_without_scopes_claim(self):
        c = await self.client(token=token("e", emit=True))
        await self.emit_result(c, "anything:1")

    async def test_emit_pattern_list_and_scopes(self):
        c = await self.client(token=token("e", emit=["doc:a*"], scopes=["doc:*", "chat"]))
        await self.emit_result(c, "doc:a1")
        await self.emit_result(c, "doc:b", "forbidden")
        await self.emit_result(c, "chat", "forbidden")
        c2 = await self.client(token=token("e2", emit=["x*"]))
        await self.emit_result(c2, "x1")
        await self.emit_result(c2, "y", "forbidden")

    async def test_no_emit_claim_forbidden(self):
        for tok in (token("e"), token("e", emit=False), token("e", emit=[])):
            c = await self.client(token=tok)
            await self.emit_result(c, "doc:1", "forbidden")

    async def test_anonymous_emit_forbidden_by_default(self):
        c = await self.client()
        await self.emit_result(c, "doc:1", "forbidden")

    async def test_rejected_emit_uses_no_seq_and_delivers_nothing(self):
        S = "doc:r"
        sub = await self.client(token=token("watcher"))
        await sub.subscribe(S)
        s1 = await self.srv.emit(S, data="before")
        await sub.push(S)
        c = await self.client(token=token("e"))
        await self.emit_result(c, S, "forbidden")
        self.assertEqual(await self.marker(S, sub), s1 + 1, "a rejected emit uses no seq")

    async def test_bad_request_before_forbidden(self):
        c = await self.client()  # anonymous: emitting is forbidden
        await c.send({"op": "emit", "id": 5, "scope": "bad scope", "data": 1})
        self.assertError(await c.wait(id=5), "bad_request", id=5)
        await c.send({"op": "emit", "id": 6, "scope": "ok", "paths": "notalist"})
        self.assertError(await c.wait(id=6), "bad_request", id=6)


class ClientEmitFlag(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)

    async def test_anonymous_may_emit(self):
        S = "doc:ce"
        sub = await self.client(name="sub")
        await sub.subscribe(S)
        e = await self.client(name="emitter")
        r = await e.ok("emit", scope=S, data={"v": 1})
        self.assertGreater(r["seq"], 0)
        ev = await sub.push(S)
        self.assertSub(ev, {"op": "event", "seq": r["seq"], "origin": e.session, "data": {"v": 1}})


class NoSecret(ScopecastTestCase):
    async def test_anonymous_may_subscribe_anything_but_not_emit(self):
        c = await self.client()
        self.assertIsNone(c.welcome["user"])
        for s in ("a", "doc:1", "~!@#$%^&*()_+{}|:<>?"):
            self.assertEqual((await c.call("subscribe", scope=s))["op"], "subscribed")
        r = await c.call("emit", scope="a", data=1)
        self.assertError(r, "forbidden", id=r.get("id"))


    async def test_token_without_secret_is_anonymous(self):
        c = await self.client(token=token("alice", emit=True))
        self.assertIsNone(c.welcome["user"], "without a secret configured, connections are anonymous")


class Demo(ScopecastTestCase):
    SERVER_ARGS = ("--demo",)

    async def test_demo_token_body_is_strict_json(self):
        for body in (b'{"name":"ana"} trailing', b'{"name":"ana"}{"name":"bo"}',
                     b'{"name":""}', b'["ana"]'):
            res = await self.srv.request("POST", "/demo/token", body)
            self.assertEqual(res.status, 400, f"{body!r} -> {res!r}")
            self.assertEqual((res.json or {}).get("error"), "bad_request", res)

    async def test_demo_token(self):
        res = await self.srv.request("POST", "/demo/token", {"name": "ana"})
        self.assertEqual(res.status, 200, res)
        tok = (res.json or {}).get("token")
        self.assertIsInstance(tok, str, res)
        claims = jwt_claims(tok)
        self.assertEqual(claims.get("sub"), "ana", claims)
        self.assertIs(claims.get("emit"), True, claims)
        S = "demo:doc"
        watcher = await self.client(name="watcher")
        await watcher.subscribe(S)
        ana = await self.client(token=tok, name="ana")
        self.assertEqual(ana.welcome["user"], "ana")
        s = await ana.subscribe(S)
        self.assertIn("ana", [c["user"] for c in s["presence"]])
        j = await watcher.push(S)
        self.assertSub(j, {"op": "join", "first": True})
        assert_conn(j["conn"], session=ana.session, user="ana")
        r = await ana.ok("emit", scope=S, data={"text": "hi"})
        ev = await watcher.push(S)
        self.assertSub(ev, {"op": "event", "seq": r["seq"], "origin": ana.session, "data": {"text": "hi"}})

    async def test_demo_off_by_default(self):
        srv = self.start_server(name="nodemo")
        res = await srv.request("POST", "/demo/token", {"name": "ana"})
        self.assertNotEqual(res.status // 100, 2, f"demo mode is off by default: {res!r}")


if __name__ == "__main__":
    main()
