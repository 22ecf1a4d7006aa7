#!/usr/bin/python3
"""Authentication and authorization (docs/PROTOCOL.md "Authentication", "tokens",
"order of checks", "audience", demo mode)."""

import asyncio
import time
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (JWT_SECRET, ScopecastTestCase, alg_none_token, assert_conn, assert_http_error,  # noqa: E402
                     expired_token,
                     jwt_claims, main, make_jwt, server_args, token, wrong_signature_token)

JWT = ("--jwt-secret", JWT_SECRET)
JWT_ANON = JWT + ("--allow-anonymous", "--anonymous-scopes", "*")


class AuthCase(ScopecastTestCase):
    async def assertRejected(self, tok, srv=None, message=None):
        """A bad token: the upgrade is accepted, `error` unauthorized is sent
        (no welcome), then close 4401."""
        c = await self.raw(srv, token=tok, read_welcome=False, name="rejected")  # raises unless 101
        first = await c.next()
        self.assertError(first, "unauthorized")
        if message is not None:
            self.assertIn(message, first.get("message", ""), first)
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

    async def test_no_token_is_refused_by_default(self):
        # with a secret, a connection without a token is refused (4401)
        c = await self.raw(read_welcome=False)
        self.assertError(await c.next(), "unauthorized")
        self.assertEqual((await c.wait_closed()).code, 4401)

    async def test_connection_closed_when_its_token_expires(self):
        a = await self.client(token=token("alice", exp_in=2))
        self.assertEqual((await a.call("ping"))["op"], "pong")
        err = await a.wait(pred=lambda m: m.get("op") == "error", timeout=6)
        self.assertError(err, "unauthorized")
        self.assertIn("expired", err["message"])
        closed = await a.wait_closed()
        self.assertEqual(closed.code, 4401, closed)

    async def test_refresh_extends_the_connection(self):
        a = await self.client(token=token("alice", exp_in=2))
        r = await a.call("refresh", token=token("alice", exp_in=3600))
        self.assertEqual(r["op"], "refreshed", r)
        self.assertGreater(r["exp"], time.time() + 3000)
        await asyncio.sleep(3.0)
        self.assertEqual((await a.call("ping"))["op"], "pong", "refreshed before exp: still open")

    async def test_refresh_refuses_another_user_and_bad_tokens(self):
        a = await self.client(token=token("alice", exp_in=3600))
        r = await a.call("refresh", token=token("bob"))
        self.assertError(r, "forbidden", id=r.get("id"))
        r = await a.call("refresh", token=expired_token("alice"))
        self.assertError(r, "unauthorized", id=r.get("id"))
        r = await a.call("refresh", token="")
        self.assertError(r, "bad_request", id=r.get("id"))
        await a.send({"op": "refresh", "id": 9})
        self.assertError(await a.wait(id=9), "bad_request", id=9)
        self.assertEqual((await a.call("ping"))["op"], "pong", "a refused refresh keeps the connection")

    async def test_refresh_narrows_rights_from_then_on(self):
        a = await self.client(token=token("alice", scopes=["doc:*"]))
        self.assertEqual((await a.call("subscribe", scope="doc:1"))["op"], "subscribed")
        r = await a.call("refresh", token=token("alice", scopes=["room:*"]))
        self.assertEqual(r["op"], "refreshed", r)
        r = await a.call("subscribe", scope="doc:2")
        self.assertError(r, "forbidden", id=r.get("id"))
        self.assertEqual((await a.call("subscribe", scope="room:1"))["op"], "subscribed")

    async def test_crit_header_is_refused(self):
        # RFC 7515 4.1.11: a crit extension we do not understand
        tok = make_jwt({"sub": "alice", "exp": int(time.time()) + 60},
                       header={"alg": "HS256", "typ": "JWT", "crit": ["x-ext"], "x-ext": 1})
        await self.assertRejected(tok, message="crit")

    async def test_huge_exp_is_reported_as_out_of_range(self):
        tok = make_jwt({"sub": "alice", "exp": 2 ** 64})
        await self.assertRejected(tok, message="exp out of range")

    async def test_nul_in_query_token_is_refused(self):
        # token=<valid>%00garbage used to be accepted, cut at the NUL
        good = token("alice")
        c = await self.raw(request=None, query=None, token=None, read_welcome=False,
                           path="/ws?token=" + good + "%00garbage")
        self.assertError(await c.next(), "unauthorized")
        self.assertEqual((await c.wait_closed()).code, 4401)

    async def test_token_size_limit_is_reachable_below_the_head_limit(self):
        long_tok = token("alice", pad="x" * 5000)  # over 4096, under the 8 KB head
        await self.assertRejected(long_tok, message="too long")

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
    SERVER_ARGS = JWT_ANON

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

    @server_args(*JWT_ANON)
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

    @server_args(*JWT_ANON)
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


class Anonymous(AuthCase):
    """Item 1: the scopes claim isolates only if token-less connections
    cannot walk around it."""
    SERVER_ARGS = JWT + ("--allow-anonymous", "--anonymous-scopes", "public:*, lobby")

    async def test_anonymous_gets_only_the_anonymous_scopes(self):
        owner = await self.client(token=token("owner"), name="owner")
        await owner.subscribe("secret:1", meta={"email": "o@example.com"})
        limited = await self.client(token=token("lim", scopes=["doc:*"]), name="limited")
        r = await limited.call("subscribe", scope="secret:1")
        self.assertError(r, "forbidden", id=r.get("id"))
        anon = await self.client(name="anon")
        self.assertIsNone(anon.welcome["user"])
        for op in ("subscribe", "presence"):
            r = await anon.call(op, scope="secret:1")
            self.assertError(r, "forbidden", id=r.get("id"))
        for s in ("public:news", "lobby"):
            self.assertEqual((await anon.call("subscribe", scope=s))["op"], "subscribed", s)
        r = await anon.call("subscribe", scope="lobby2")
        self.assertError(r, "forbidden", id=r.get("id"))
        # the anonymous client never saw the secret scope's events
        await self.srv.emit("secret:1", data={"x": 1})
        await self.marker("public:news", anon)
        self.assertFalse([m for m in anon.log if m.get("scope") == "secret:1" and m.get("op") != "error"])

    async def test_anonymous_emit_needs_client_emit_and_an_anonymous_scope(self):
        anon = await self.client(name="anon")
        r = await anon.call("emit", scope="public:x", data=1)
        self.assertError(r, "forbidden", id=r.get("id"))


class AnonymousScopesDefaultToNone(AuthCase):
    SERVER_ARGS = JWT + ("--allow-anonymous", "--client-emit")

    async def test_no_scope_without_a_pattern_list(self):
        anon = await self.client(name="anon")
        for op in ("subscribe", "presence", "emit"):
            r = await anon.call(op, scope="doc:1")
            self.assertError(r, "forbidden", id=r.get("id"))


class RequireExp(AuthCase):
    SERVER_ARGS = JWT + ("--require-exp",)

    async def test_token_without_exp_is_refused(self):
        await self.assertRejected(make_jwt({"sub": "alice"}), message="exp")
        a = await self.client(token=token("alice"))
        self.assertEqual(a.welcome["user"], "alice")


class ApiAccess(ScopecastTestCase):
    """Item 2: the HTTP API behind a proxy."""

    async def test_api_needs_a_key_by_default(self):
        srv = self.start_server(api_loopback=False)
        res = await srv.request("POST", "/api/emit", {"scope": "doc:1"})
        assert_http_error(res, 403, "forbidden")
        res = await srv.request("GET", "/api/stats")
        assert_http_error(res, 403, "forbidden")
        self.assertEqual((await srv.request("GET", "/healthz")).status, 200)

    async def test_forwarded_requests_are_never_loopback(self):
        srv = self.start_server("--api-loopback", api_loopback=False)
        self.assertEqual((await srv.request("GET", "/api/stats")).status, 200)
        for h in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
                  {"X-Real-IP": "203.0.113.9"}):
            res = await srv.request("POST", "/api/emit", {"scope": "doc:1"}, headers=h)
            assert_http_error(res, 403, "forbidden")

    async def test_api_key_works_through_a_proxy(self):
        srv = self.start_server("--api-key", "k3y", api_loopback=False)
        res = await srv.request("POST", "/api/emit", {"scope": "doc:1"},
                                headers={"X-Forwarded-For": "203.0.113.9"})
        self.assertEqual(res.status, 202, res)
        res = await srv.request("GET", "/api/stats", key=None)
        assert_http_error(res, 401, "unauthorized")


class Origins(ScopecastTestCase):
    """Item 5: cross-site WebSocket hijacking."""

    async def upgrade(self, srv, origin):
        hdrs = {"Origin": origin} if origin is not None else {}
        return await self.raw(srv, extra_headers=hdrs, check=False, read_welcome=False)

    async def test_same_origin_only_by_default(self):
        srv = self.start_server()
        self.assertEqual((await self.upgrade(srv, f"http://127.0.0.1:{srv.port}")).status, 101)
        self.assertEqual((await self.upgrade(srv, None)).status, 101, "non-browser clients send no Origin")
        for o in ("https://evil.example", f"http://127.0.0.1:{srv.port + 1}", "null"):
            c = await self.upgrade(srv, o)
            self.assertEqual(c.status, 403, o)
            self.assertIn(b"origin not allowed", c.body)

    async def test_allowed_origins_patterns(self):
        srv = self.start_server("--allowed-origins", "https://*.example.com, http://localhost:3000")
        for o in ("https://app.example.com", "https://a.b.example.com", "http://localhost:3000",
                  "HTTPS://APP.EXAMPLE.COM"):
            self.assertEqual((await self.upgrade(srv, o)).status, 101, o)
        for o in ("https://example.com.evil.org", "http://app.example.com", "http://localhost:3001",
                  f"http://127.0.0.1:{srv.port}"):
            self.assertEqual((await self.upgrade(srv, o)).status, 403, o)

    async def test_require_origin(self):
        srv = self.start_server("--require-origin", "--allowed-origins", "*")
        self.assertEqual((await self.upgrade(srv, None)).status, 403)
        self.assertEqual((await self.upgrade(srv, "https://any.example")).status, 101)


if __name__ == "__main__":
    main()
