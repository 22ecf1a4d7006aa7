#!/usr/bin/python3
"""Budgets that keep one client from hurting the others (docs/PROTOCOL.md
"Errors", close code 4429, --rate-limit)."""

import asyncio
import http.client
import json
import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import HOST, T, ScopecastTestCase, main, server_args  # noqa: E402


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


def _answer_without_asking(port):
    """Connects and reads what the server says before anything is sent:
    a refused address gets its 503 at once; an admitted one gets nothing
    (the socket is returned open, for the caller to close)."""
    s = socket.create_connection((HOST, port), timeout=T())
    s.settimeout(0.5)
    try:
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return s, data
    s.close()
    return None, data


class PerAddress(ScopecastTestCase):
    SERVER_ARGS = ("--max-connections-per-ip", "5")

    def assert_refused_503(self, data):
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 503 "), data[:200])
        self.assertEqual(json.loads(body), {
            "error": "unavailable", "message": "too many connections from your address"})

    async def wait_admitted(self):
        """A new connection is taken again (the server gives counts back
        when it closes sockets, after the client's close arrived)."""
        for _ in range(100):
            s, data = await asyncio.to_thread(_answer_without_asking, self.srv.port)
            if s is not None:
                s.close()
                return
            await asyncio.sleep(0.05)
        self.fail("the address was never admitted again")

    async def test_sixth_connection_refused_then_admitted_after_a_close(self):
        clients = [await self.client(name=f"c{i}") for i in range(5)]
        for c in clients:
            await c.subscribe("room")
        # the 6th socket: 503 before it sends anything, and closed
        s, data = await asyncio.to_thread(_answer_without_asking, self.srv.port)
        self.assertIsNone(s, "a sixth connection was kept open")
        self.assert_refused_503(data)
        # also for a WebSocket client library and for HTTP (the same address)
        with self.assertRaises(Exception):
            await self.client(name="sixth")
        try:
            res = await self.srv.request("GET", "/healthz")
            self.assertEqual(res.status, 503, res)
        except (ConnectionError, http.client.HTTPException):
            pass  # it sent its request first: a reset may beat the 503
        # the five are served as before (events from another WebSocket)
        self.assertSub(await clients[0].call("ping"), {"op": "pong"})
        # one leaves: the address may open one connection again
        await clients[4].close()
        await self.wait_admitted()
        res = await self.srv.request("GET", "/metrics")
        self.assertEqual(res.status, 200, res)
        m = re.search(rb"^scopecast_connections_refused_per_ip_total (\d+)$", res.body, re.M)
        self.assertIsNotNone(m, res.body[-600:])
        self.assertGreaterEqual(int(m.group(1)), 2)

    async def test_every_kind_of_connection_counts_and_is_given_back(self):
        # idle sockets that never sent a request (pending handshakes),
        # keep-alive HTTP connections, WebSockets: five in all
        idle = []
        for _ in range(2):
            s, data = await asyncio.to_thread(_answer_without_asking, self.srv.port)
            self.assertIsNotNone(s, data)
            idle.append(s)
        keep = http.client.HTTPConnection(HOST, self.srv.port, timeout=T())
        keep.request("GET", "/healthz")
        r = keep.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        ws = [await self.client(name=f"c{i}") for i in range(2)]
        s, data = await asyncio.to_thread(_answer_without_asking, self.srv.port)
        self.assertIsNone(s)
        self.assert_refused_503(data)
        # each kind gives its count back when it closes
        idle.pop().close()
        await self.wait_admitted()
        keep.close()
        await self.wait_admitted()
        await ws.pop().close()
        await self.wait_admitted()
        # now four are free (one idle socket and one WebSocket remain)
        more = [await self.client(name=f"m{i}") for i in range(3)]
        s, data = await asyncio.to_thread(_answer_without_asking, self.srv.port)
        self.assertIsNone(s)
        self.assert_refused_503(data)
        for c in more + ws:
            await c.close()
        for s in idle:
            s.close()

    async def test_pages_served_by_lws_do_not_hold_a_count(self):
        # a static file request is handed to lws: the count is given back
        # then, so twenty page loads in a row are all served
        for _ in range(20):
            res = await self.srv.request("GET", "/scopecast.js")
            self.assertEqual(res.status, 200, res)
        # refused handshakes (wrong path) give theirs back too
        for _ in range(10):
            c = await self.raw(path="/nowhere", check=False, read_welcome=False)
            self.assertEqual(c.status, 404)
        c = [await self.client(name=f"c{i}") for i in range(5)]
        for x in c:
            await x.close()

    @server_args("--max-connections-per-ip", "0")
    async def test_zero_turns_it_off(self):
        clients = [await self.client(name=f"c{i}") for i in range(12)]
        self.assertSub(await clients[-1].call("ping"), {"op": "pong"})
        for c in clients:
            await c.close()


class HttpSlotFlood(ScopecastTestCase):
    """Unfinished requests fill the HTTP connections; probes still get an
    answer, and WebSocket clients do not notice."""
    SERVER_ARGS = ("--max-connections", "100", "--max-connections-per-ip", "0")

    def open_flood(self, n):
        socks = []
        for _ in range(n):
            s = socket.create_connection((HOST, self.srv.port), timeout=T())
            s.sendall(b"POST /api/emit HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            socks.append(s)
        return socks

    async def test_healthz_answers_during_a_flood_of_unfinished_posts(self):
        sub = await self.client(name="sub")
        await sub.subscribe("s")
        flood = await asyncio.to_thread(self.open_flood, 150)
        try:
            await asyncio.sleep(0.3)
            # the API is full: a new emit is refused, said at once
            res = await self.srv.request("POST", "/api/emit", {"scope": "s"})
            self.assertEqual(res.status, 503, res)
            self.assertEqual(res.json["message"], "too many connections")
            # readiness probes and metrics are still answered, many times
            for i in range(40):
                path = "/healthz" if i % 2 == 0 else "/metrics"
                res = await self.srv.request("GET", path)
                self.assertEqual(res.status, 200, (path, res))
                self.assertEqual(res.header("connection"), "close")
            # WebSocket clients are served as before
            other = await self.client(name="other")
            self.assertSub(await other.call("ping"), {"op": "pong"})
        finally:
            for s in flood:
                s.close()
        # the flood gone, the API takes requests again
        for _ in range(100):
            res = await self.srv.request("POST", "/api/emit", {"scope": "s", "data": 1})
            if res.status == 202:
                break
            await asyncio.sleep(0.05)
        self.assertEqual(res.status, 202, res)
        self.assertSub(await sub.push("s"), {"op": "event", "data": 1})


class UnauthenticatedBodies(ScopecastTestCase):
    """A request that fails the API key is answered from its head: its body
    (1 MB announced, one byte sent) is never buffered."""
    SERVER_ARGS = ("--api-key", "right-key", "--max-connections-per-ip", "0")

    def open_posts(self, n, key):
        socks = []
        for _ in range(n):
            s = socket.create_connection((HOST, self.srv.port), timeout=T())
            s.sendall(b"POST /api/emit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                      + key + b"\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000000\r\n\r\n{")
            socks.append(s)
        return socks

    @staticmethod
    def send_bodies(socks, n):
        """Sends n bytes of body on each (most of the 1 MB announced); a
        socket the server no longer reads or closed is left as it is."""
        chunk = b"x" * 100_000
        for s in socks:
            s.settimeout(0.5)
            try:
                for _ in range(n // len(chunk)):
                    s.sendall(chunk)
            except OSError:
                pass

    async def test_300_unfinished_bodies_with_a_wrong_key_cost_no_memory(self):
        rss0 = self.srv.rss_kib()
        socks = await asyncio.to_thread(self.open_posts, 300, b"wrong-key")
        try:
            for s in socks[:20]:  # answered at once, before the body
                s.settimeout(T())
                self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 401 "))
            await asyncio.to_thread(self.send_bodies, socks, 900_000)
            grown = self.srv.rss_kib() - rss0
            # buffered, the bodies would take 300 MB
            self.assertLess(grown, 16 * 1024, f"VmRSS grew by {grown} KiB")
            self.assertEqual((await self.srv.request("GET", "/healthz")).status, 200)
        finally:
            for s in socks:
                s.close()


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
