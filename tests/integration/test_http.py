#!/usr/bin/python3
"""Every HTTP endpoint and status of docs/PROTOCOL.md ("HTTP API", "HTTP" rules)."""

import os
import re
import shutil
import socket
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (HOST, JWT_SECRET, ScopecastTestCase, assert_conn, assert_http_error,  # noqa: E402
                     is_int, main, no_server, server_args, token)

JWT = ("--jwt-secret", JWT_SECRET)


def json_body_of_size(size, scope="doc:size"):
    """A valid emit body of exactly `size` bytes."""
    head = '{"scope":"%s","data":"' % scope
    tail = '"}'
    n = size - len(head) - len(tail)
    assert n >= 0
    return (head + "x" * n + tail).encode()


class HTTPCase(ScopecastTestCase):
    def assertJSONType(self, res):
        self.assertIn("application/json", res.header("Content-Type"), f"JSON answer without JSON type: {res!r}")


class ApiEmit(HTTPCase):
    async def test_single_emit(self):
        S = "doc:h1"
        sub = await self.client()
        await sub.subscribe(S)
        res = await self.srv.request("POST", "/api/emit",
                                     {"scope": S, "data": {"a": 1}, "paths": ["p", "q"], "origin": "svc"})
        self.assertEqual(res.status, 202, res)
        self.assertJSONType(res)
        self.assertSub(res.json, {"seq": 1})
        ev = await sub.push(S)
        self.assertSub(ev, {"op": "event", "scope": S, "seq": 1, "origin": "svc", "data": {"a": 1}})
        self.assertEqual(sorted(ev["paths"]), ["p", "q"])
        res = await self.srv.request("POST", "/api/emit", {"scope": S})
        self.assertEqual((res.status, res.json.get("seq")), (202, 2), res)
        ev = await sub.push(S)
        self.assertNotIn("data", ev, "absent data is omitted")
        self.assertIsNone(ev["origin"])
        self.assertEqual(ev["paths"], [])

    async def test_emit_without_subscribers(self):
        res = await self.srv.request("POST", "/api/emit", {"scope": "doc:nobody", "data": 1})
        self.assertEqual((res.status, res.json), (202, {"seq": 0}), res)

    async def test_batch_emit(self):
        S1, S2, S3 = "doc:b1", "doc:b2", "doc:b3"
        a = await self.client(name="a")
        b = await self.client(name="b")
        await a.subscribe(S1)
        await b.subscribe(S2)
        items = [{"scope": S1, "data": 1}, {"scope": S2, "data": 2}, {"scope": S1, "data": 3},
                 {"scope": S3, "data": 4}, {"scope": S1, "data": None, "paths": ["x"]}]
        res = await self.srv.request("POST", "/api/emit", items)
        self.assertEqual(res.status, 202, res)
        self.assertJSONType(res)
        results = res.json.get("results")
        self.assertIsInstance(results, list, res)
        self.assertEqual([r.get("seq") for r in results], [1, 1, 2, 0, 3], res)
        got = [await a.push(S1) for _ in range(3)]
        self.assertEqual([(e["seq"], e["data"]) for e in got], [(1, 1), (2, 3), (3, None)])
        self.assertSub(await b.push(S2), {"op": "event", "seq": 1, "data": 2})

    async def test_batch_with_invalid_item_emits_nothing(self):
        S = "doc:atomic"
        sub = await self.client()
        await sub.subscribe(S)
        bad_batches = [
            [{"scope": S, "data": 1}, {"scope": "bad scope", "data": 2}],
            [{"scope": S, "data": 1}, {"data": 2}],
            [{"scope": S, "data": 1}, 5],
            [{"scope": S, "data": 1}, {"scope": S, "paths": "p"}],
            [{"scope": S, "data": 1}, {"scope": S, "audience": "bob"}],
            [{"scope": S, "data": 1}, {"scope": S, "origin": 7}],
            [{"scope": S, "data": 1}, None],
        ]
        for batch in bad_batches:
            res = await self.srv.request("POST", "/api/emit", batch)
            assert_http_error(res, 400, "bad_request")
        self.assertEqual(await self.marker(S, sub), 1, "nothing of an invalid batch is emitted (no seq used)")
        st = await self.srv.stats()
        self.assertEqual(st["emitted"], 1, st)

    async def test_empty_batch(self):
        assert_http_error(await self.srv.request("POST", "/api/emit", []), 400, "bad_request")

    async def test_body_not_an_object(self):
        for body in ("5", '"s"', "null", "true", "{", ""):
            res = await self.srv.request("POST", "/api/emit", body.encode())
            assert_http_error(res, 400, "bad_request")


class ApiPresence(HTTPCase):
    async def test_presence(self):
        S = "doc:p/1"
        a = await self.client()
        b = await self.client()
        await a.subscribe(S, meta={"n": 1})
        await b.subscribe(S)
        res = await self.srv.request("GET", "/api/presence?scope=" + urllib.parse.quote(S, safe=""))
        self.assertEqual(res.status, 200, res)
        self.assertJSONType(res)
        self.assertEqual(res.json.get("scope"), S, res)
        pres = {c["session"]: c for c in res.json["presence"]}
        self.assertEqual(set(pres), {a.session, b.session})
        assert_conn(pres[a.session], user=None, meta={"n": 1})
        assert_conn(pres[b.session], user=None, meta={})

    async def test_presence_unencoded_scope(self):
        a = await self.client()
        await a.subscribe("doc:plain")
        res = await self.srv.request("GET", "/api/presence?scope=doc:plain")
        self.assertEqual((res.status, len(res.json["presence"])), (200, 1), res)

    async def test_presence_unknown_scope(self):
        res = await self.srv.request("GET", "/api/presence?scope=doc:unknown")
        self.assertEqual(res.status, 200, res)
        self.assertSub(res.json, {"scope": "doc:unknown", "presence": []})

    async def test_presence_bad_or_missing_scope(self):
        for q in ("", "?scope=", "?scope=a%20b", "?other=1", "?scope=" + "x" * 201):
            assert_http_error(await self.srv.request("GET", "/api/presence" + q), 400, "bad_request")


class ApiClose(HTTPCase):
    SERVER_ARGS = JWT

    async def setup_clients(self):
        self.alice = await self.client(token=token("alice"), name="alice")
        self.alice2 = await self.client(token=token("alice"), name="alice2")
        self.bob = await self.client(token=token("bob"), name="bob")
        await self.alice.subscribe("s1")
        await self.alice.subscribe("s2")
        await self.alice2.subscribe("s1")
        await self.bob.subscribe("s1")
        await self.bob.subscribe("s3")

    async def close(self, body, n):
        res = await self.srv.request("POST", "/api/close", body)
        self.assertEqual(res.status, 200, res)
        self.assertJSONType(res)
        self.assertEqual(res.json, {"closed": n}, f"POST /api/close {body!r}")

    async def closed_of(self, c, n):
        got = {}
        for _ in range(n):
            m = await c.wait("closed")
            got[m["scope"]] = m["reason"]
        return got

    def assertNoLeave(self, *clients):
        for c in clients:
            self.assertEqual([m for m in c.log if m.get("op") == "leave"], [],
                             f"{c.name}: members of a closed scope get no leave pushes among themselves")

    async def leaves_of_alice(self, scope="s1"):
        """bob sees alice's two connections leave: last false, then true."""
        got = [await self.bob.push(scope) for _ in range(2)]
        self.assertEqual([m["op"] for m in got], ["leave", "leave"], got)
        self.assertEqual({m["conn"]["session"] for m in got}, {self.alice.session, self.alice2.session})
        self.assertEqual([m["last"] for m in got], [False, True], got)

    async def test_close_scope(self):
        await self.setup_clients()
        await self.close({"scope": "s1"}, 3)
        for c in (self.alice, self.alice2, self.bob):
            self.assertEqual(await self.closed_of(c, 1), {"s1": "closed"})
        self.assertNoLeave(self.alice, self.alice2, self.bob)
        self.assertEqual(await self.srv.emit("s1", data=1), 0)
        await self.marker("s2", self.alice)
        await self.marker("s3", self.bob)

    async def test_close_user(self):
        await self.setup_clients()
        await self.close({"user": "alice"}, 3)
        self.assertEqual(await self.closed_of(self.alice, 2), {"s1": "kicked", "s2": "kicked"})
        self.assertEqual(await self.closed_of(self.alice2, 1), {"s1": "kicked"})
        await self.leaves_of_alice()
        await self.marker("s1", self.bob)
        self.assertEqual(await self.alice.quiet(0.2, op="closed"), [])

    async def test_close_user_in_scope(self):
        await self.setup_clients()
        await self.close({"user": "alice", "scope": "s1"}, 2)
        self.assertEqual(await self.closed_of(self.alice, 1), {"s1": "kicked"})
        self.assertEqual(await self.closed_of(self.alice2, 1), {"s1": "kicked"})
        await self.leaves_of_alice()
        await self.marker("s2", self.alice)
        await self.marker("s1", self.bob)

    async def test_close_all(self):
        await self.setup_clients()
        await self.close({}, 5)
        self.assertEqual(await self.closed_of(self.alice, 2), {"s1": "closed", "s2": "closed"})
        self.assertEqual(await self.closed_of(self.alice2, 1), {"s1": "closed"})
        self.assertEqual(await self.closed_of(self.bob, 2), {"s1": "closed", "s3": "closed"})
        self.assertNoLeave(self.alice, self.alice2, self.bob)
        st = await self.srv.stats()
        self.assertEqual((st["scopes"], st["connections"]), (0, 3), st)

    async def test_close_nothing(self):
        await self.setup_clients()
        await self.close({"scope": "nope"}, 0)
        await self.close({"user": "nobody"}, 0)
        await self.close({"user": "bob", "scope": "s2"}, 0)


class ApiStats(HTTPCase):
    async def test_stats(self):
        res = await self.srv.request("GET", "/api/stats")
        self.assertEqual(res.status, 200, res)
        self.assertJSONType(res)
        for k in ("emitted", "dropped", "subscribers", "connections", "scopes"):
            self.assertTrue(is_int(res.json.get(k)), f"/api/stats field {k!r}: {res.json!r}")
        self.assertSub(res.json, {"connections": 0, "scopes": 0, "subscribers": 0, "emitted": 0, "dropped": 0})
        a = await self.client()
        b = await self.client()
        await self.client()  # connected, not subscribed
        await a.subscribe("x1")
        await a.subscribe("x2")
        await b.subscribe("x1")
        await self.srv.emit("x1", data=1)
        await self.srv.emit("x1", data=2)
        await self.srv.emit("nobody", data=3)  # counted, not sequenced
        st = await self.srv.stats()
        self.assertSub(st, {"connections": 3, "scopes": 2, "subscribers": 3, "emitted": 3, "dropped": 0})


class Metrics(HTTPCase):
    NAMES = ["scopecast_connections", "scopecast_subscriptions", "scopecast_scopes",
             "scopecast_events_emitted_total", "scopecast_events_delivered_total",
             "scopecast_events_dropped_total", "scopecast_bytes_sent_total", "scopecast_errors_total"]

    @staticmethod
    def samples(text):
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)', line)
            if m:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return out

    async def test_metrics(self):
        a = await self.client()
        await a.subscribe("m1")
        await self.srv.emit("m1", data=1)
        await a.push("m1")
        await a.send("not json")
        await a.wait("error")
        res = await self.srv.request("GET", "/metrics")
        self.assertEqual(res.status, 200, res)
        self.assertTrue(res.header("Content-Type").startswith("text/plain"), res.headers)
        s = self.samples(res.text)
        names = {k.split("{")[0] for k in s}
        for n in self.NAMES:
            self.assertIn(n, names, f"metric {n} missing from /metrics")
        errs = [v for k, v in s.items() if k.startswith("scopecast_errors_total{") and 'code="bad_request"' in k]
        self.assertTrue(errs and errs[0] >= 1,
                        'scopecast_errors_total{code="bad_request"} >= 1 expected after a bad_request')
        self.assertEqual(s["scopecast_connections"], 1)
        self.assertEqual(s["scopecast_subscriptions"], 1)
        self.assertEqual(s["scopecast_scopes"], 1)
        self.assertGreaterEqual(s["scopecast_events_emitted_total"], 1)
        self.assertGreaterEqual(s["scopecast_events_delivered_total"], 1)
        self.assertGreater(s["scopecast_bytes_sent_total"], 0)
        self.assertEqual(s["scopecast_events_dropped_total"], 0)


class Health(HTTPCase):
    async def test_healthz(self):
        res = await self.srv.request("GET", "/healthz")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.text.strip(), "ok")


class Static(HTTPCase):
    async def test_index_and_client_from_web_root(self):
        res = await self.srv.request("GET", "/")
        self.assertEqual(res.status, 200, res)
        self.assertIn("text/html", res.header("Content-Type"))
        self.assertRegex(res.text.lower(), r"<!doctype html|<html")
        res = await self.srv.request("GET", "/scopecast.js")
        self.assertEqual(res.status, 200, res)
        self.assertIn("javascript", res.header("Content-Type"))
        self.assertTrue(res.body)
        res = await self.srv.request("GET", "/scopecast.d.ts")
        self.assertEqual(res.status, 200, res)

    @no_server
    async def test_serves_given_web_root_and_no_traversal(self):
        tmp = tempfile.mkdtemp(prefix="scopecast-web-")
        self.addCleanup(shutil.rmtree, tmp, True)
        web = os.path.join(tmp, "web")
        os.mkdir(web)
        with open(os.path.join(web, "index.html"), "w") as f:
            f.write("<!doctype html><html><body>fixture-index-7f3a</body></html>\n")
        with open(os.path.join(web, "scopecast.js"), "w") as f:
            f.write("export const fixture = 'js-7f3a';\n")
        with open(os.path.join(tmp, "secret.txt"), "w") as f:
            f.write("TOP-SECRET-7f3a\n")
        srv = self.start_server("--web-root", web)
        res = await srv.request("GET", "/")
        self.assertEqual(res.status, 200, res)
        self.assertIn("fixture-index-7f3a", res.text)
        res = await srv.request("GET", "/scopecast.js")
        self.assertEqual(res.status, 200, res)
        self.assertIn("js-7f3a", res.text)
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt",
                     "//../secret.txt", "/web/../../secret.txt"):
            status, body = raw_http(srv.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertNotIn(b"TOP-SECRET", body, f"{path} served a file outside the web root")
            self.assertTrue(status is None or status >= 400, f"{path}: status {status}")
        self.assertTrue(srv.alive())


def raw_http(port, request):
    s = socket.create_connection((HOST, port), timeout=5)
    try:
        s.sendall(request.encode())
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return (int(m.group(1)) if m else None), data


class MethodsAndPaths(HTTPCase):
    async def test_wrong_method_405(self):
        for method, path in (("GET", "/api/emit"), ("PUT", "/api/emit"), ("DELETE", "/api/emit"),
                             ("POST", "/api/stats"), ("GET", "/api/close"), ("POST", "/api/presence"),
                             ("POST", "/metrics"), ("POST", "/healthz"), ("DELETE", "/api/stats")):
            body = {} if method in ("POST", "PUT") else None
            res = await self.srv.request(method, path, body)
            assert_http_error(res, 405, "method_not_allowed")

    async def test_unknown_path_404(self):
        for method, path in (("GET", "/api/nope"), ("POST", "/api/nope"), ("GET", "/nope.html"),
                             ("GET", "/api"), ("GET", "/api/emit/x"), ("GET", "/no/such/dir/")):
            res = await self.srv.request(method, path, {} if method == "POST" else None)
            assert_http_error(res, 404, "not_found")


class BodyLimit(HTTPCase):
    @server_args("--max-body", "1000")
    async def test_max_body_inclusive(self):
        res = await self.srv.request("POST", "/api/emit", json_body_of_size(1000))
        self.assertEqual(res.status, 202, f"exactly --max-body bytes is allowed: {res!r}")
        res = await self.srv.request("POST", "/api/emit", json_body_of_size(1001))
        assert_http_error(res, 413, "too_large")
        self.assertTrue(self.srv.alive())
        self.assertEqual((await self.srv.request("GET", "/api/stats")).status, 200)

    async def test_default_limit_1mib(self):
        res = await self.srv.request("POST", "/api/emit", json_body_of_size(1048576))
        self.assertEqual(res.status, 202, f"the default body limit is 1 MiB, inclusive: {res!r}")
        res = await self.srv.request("POST", "/api/emit", json_body_of_size(1048577))
        assert_http_error(res, 413, "too_large")


class ApiKey(HTTPCase):
    SERVER_ARGS = ("--api-key", "k")

    ENDPOINTS = (("POST", "/api/emit", {"scope": "doc:k", "data": 1}), ("GET", "/api/presence?scope=doc:k", None),
                 ("POST", "/api/close", {"scope": "doc:k"}), ("GET", "/api/stats", None))

    async def test_missing_or_wrong_key(self):
        for method, path, body in self.ENDPOINTS:
            assert_http_error(await self.srv.request(method, path, body, key=None), 401, "unauthorized")
            assert_http_error(await self.srv.request(method, path, body, key="wrong"), 401, "unauthorized")
            assert_http_error(await self.srv.request(method, path, body, key=None,
                                                     headers={"Authorization": "k"}), 401, "unauthorized")
            assert_http_error(await self.srv.request(method, path, body, key="k2"), 401, "unauthorized")

    async def test_right_key(self):
        for method, path, body in self.ENDPOINTS:
            res = await self.srv.request(method, path, body, key="k")
            self.assertEqual(res.status // 100, 2, f"{method} {path} with the right key: {res!r}")

    async def test_unauthorized_emit_emits_nothing(self):
        sub = await self.client()
        await sub.subscribe("doc:k")
        await self.srv.request("POST", "/api/emit", {"scope": "doc:k", "data": "x"}, key="wrong")
        self.assertEqual(await self.marker("doc:k", sub), 1)

    async def test_metrics_and_healthz_open(self):
        for path in ("/metrics", "/healthz"):
            res = await self.srv.request("GET", path, key=None)
            self.assertEqual(res.status, 200, f"{path} is open without the API key: {res!r}")


if __name__ == "__main__":
    main()
