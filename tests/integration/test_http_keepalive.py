#!/usr/bin/python3
"""Keep-alive HTTP/1.1 on the API (docs/PROTOCOL.md "HTTP API", "Keep-alive
and pipelining"): every request answered, in order, on the same connection;
chunked bodies; each limit answered mid-pipeline; requests cut byte by byte;
the smuggling shapes refused; a refused request's body never read."""

import asyncio
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import HOST, T, ScopecastTestCase, main, server_args  # noqa: E402


def emit_req(scope, data, extra=b"", key=None):
    body = json.dumps({"scope": scope, "data": data}).encode()
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
    return (b"POST /api/emit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def get_req(path, extra=b""):
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


class Conn:
    """One raw TCP connection; parses answers (content-length bodies)."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=T(4))
        self.buf = b""
        self.eof = False

    def send(self, data, step=None):
        if not step:
            self.s.sendall(data)
            return
        for i in range(0, len(data), step):
            self.s.sendall(data[i:i + step])
            time.sleep(0.0005)

    def _fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            self.eof = True
            raise EOFError("connection closed by the server")
        self.buf += chunk

    def answer(self):
        """(status, headers dict lower-case, body bytes)"""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(rest) < n:
            self._fill()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[n:]
        return status, headers, rest[:n]

    def closed(self, timeout=3.0):
        """True when the server closes without sending anything more."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return self.buf == b""
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return self.buf == b""

    def close(self):
        self.s.close()


class KeepAlive(ScopecastTestCase):
    def conn(self):
        c = Conn(self.srv.port)
        self.addCleanup(c.close)
        return c

    @server_args("--maxsize", "2000")
    async def test_1000_pipelined_emits_get_1000_answers_in_order_and_1000_events(self):
        sub = await self.client()
        await sub.subscribe("pipe")
        c = self.conn()
        c.send(b"".join(emit_req("pipe", i) for i in range(1000)))
        seqs = []
        for i in range(1000):
            status, h, body = await asyncio.to_thread(c.answer)
            self.assertEqual(status, 202, (i, body))
            self.assertNotIn("connection", h, "keep-alive is the default on HTTP/1.1")
            seqs.append(json.loads(body)["seq"])
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + 1000)), "answers in request order")
        got = []
        while len(got) < 1000:
            m = await sub.wait("event", scope="pipe")
            got.append((m["seq"], m["data"]))
        self.assertEqual(got, [(seqs[i], i) for i in range(1000)])
        # the connection is still open and usable
        c.send(get_req("/healthz"))
        self.assertEqual((await asyncio.to_thread(c.answer))[0], 200)

    async def test_keep_alive_across_get_and_post(self):
        c = self.conn()
        for path, req, status in [("/healthz", get_req("/healthz"), 200),
                                  ("/api/emit", emit_req("mix", 1), 202),
                                  ("/api/stats", get_req("/api/stats"), 200),
                                  ("/metrics", get_req("/metrics"), 200),
                                  ("/api/presence", get_req("/api/presence?scope=mix"), 200),
                                  ("/scopecast.js", get_req("/scopecast.js"), 200),
                                  ("/nope", get_req("/api/nope"), 404),
                                  ("/api/emit bad JSON", b"POST /api/emit HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: 5\r\n\r\n{nope", 400),
                                  ("/api/emit", emit_req("mix", 2), 202)]:
            c.send(req)
            st, h, body = await asyncio.to_thread(c.answer)
            self.assertEqual(st, status, (path, body[:200]))
            self.assertNotEqual(h.get("connection"), "close", path)
        with open(os.path.join(os.path.dirname(__file__), "../../web/scopecast.js"), "rb") as f:
            c.send(get_req("/scopecast.js"))
            self.assertEqual((await asyncio.to_thread(c.answer))[2], f.read())

    async def test_healthz_then_emit_in_one_write(self):
        """RFC 7230 section 6.3.2: both answered, the event emitted."""
        sub = await self.client()
        await sub.subscribe("one-write")
        c = self.conn()
        c.send(get_req("/healthz") + emit_req("one-write", "x"))
        self.assertEqual((await asyncio.to_thread(c.answer))[0], 200)
        st, _, body = await asyncio.to_thread(c.answer)
        self.assertEqual(st, 202, body)
        m = await sub.wait("event", scope="one-write")
        self.assertEqual(m["data"], "x")

    async def test_chunked_body(self):
        sub = await self.client()
        await sub.subscribe("chunky")
        body = json.dumps({"scope": "chunky", "data": {"n": 7}}).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5]), body[i:i + 5]) for i in range(0, len(body), 5))
        c = self.conn()
        c.send(b"POST /api/emit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
               + b"0\r\n\r\n" + get_req("/healthz"))
        st, _, b = await asyncio.to_thread(c.answer)
        self.assertEqual(st, 202, b)
        self.assertEqual((await asyncio.to_thread(c.answer))[0], 200)
        self.assertEqual((await sub.wait("event", scope="chunky"))["data"], {"n": 7})

    async def test_requests_cut_byte_by_byte(self):
        sub = await self.client()
        await sub.subscribe("bytes")
        c = self.conn()
        c.send(emit_req("bytes", 1) + get_req("/healthz") + emit_req("bytes", 2), step=1)
        self.assertEqual((await asyncio.to_thread(c.answer))[0], 202)
        self.assertEqual((await asyncio.to_thread(c.answer))[0], 200)
        self.assertEqual((await asyncio.to_thread(c.answer))[0], 202)
        self.assertEqual([(await sub.wait("event", scope="bytes"))["data"] for _ in range(2)], [1, 2])

    async def test_http10_keep_alive_is_said(self):
        c = self.conn()
        for _ in range(3):
            c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            st, h, _ = await asyncio.to_thread(c.answer)
            self.assertEqual((st, h.get("connection")), (200, "keep-alive"))
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        st, h, _ = await asyncio.to_thread(c.answer)
        self.assertEqual((st, h.get("connection")), (200, "close"))
        self.assertTrue(await asyncio.to_thread(c.closed))

    async def test_connection_close_is_honoured_mid_pipeline(self):
        c = self.conn()
        c.send(get_req("/healthz") + get_req("/healthz", b"Connection: close\r\n") + get_req("/healthz"))
        self.assertEqual((await asyncio.to_thread(c.answer))[0], 200)
        st, h, _ = await asyncio.to_thread(c.answer)
        self.assertEqual((st, h.get("connection")), (200, "close"))
        self.assertTrue(await asyncio.to_thread(c.closed), "nothing answered after Connection: close")

    async def test_expect_100_continue(self):
        c = self.conn()
        body = json.dumps({"scope": "s", "data": 1}).encode()
        c.send(b"POST /api/emit HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: "
               + str(len(body)).encode() + b"\r\n\r\n")
        st, _, _ = await asyncio.to_thread(c.answer)
        self.assertEqual(st, 100)
        c.send(body)
        self.assertEqual((await asyncio.to_thread(c.answer))[0], 202)

    async def assertRefusedMidPipeline(self, bad, status, message):
        """A good request, then `bad`, then a good one: 202, then the error
        with connection: close, then nothing (the stream cannot be trusted)."""
        sub = await self.client()
        await sub.subscribe("lim")
        c = self.conn()
        c.send(emit_req("lim", "before") + bad + emit_req("lim", "after"))
        self.assertEqual((await asyncio.to_thread(c.answer))[0], 202)
        st, h, body = await asyncio.to_thread(c.answer)
        self.assertEqual(st, status, body)
        self.assertEqual(h.get("connection"), "close")
        self.assertIn(message, json.loads(body)["message"])
        self.assertTrue(await asyncio.to_thread(c.closed), "nothing after the error")
        self.assertEqual((await sub.wait("event", scope="lim"))["data"], "before")
        await sub.quiet(0.3, op="event", scope="lim")

    @server_args("--max-body", "100")
    async def test_body_over_the_limit_mid_pipeline(self):
        big = json.dumps({"scope": "lim", "data": "x" * 200}).encode()
        await self.assertRefusedMidPipeline(
            b"POST /api/emit HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(big)).encode() + b"\r\n\r\n" + big,
            413, "larger than the limit")

    @server_args("--max-body", "100")
    async def test_chunked_body_over_the_limit_mid_pipeline(self):
        await self.assertRefusedMidPipeline(
            b"POST /api/emit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n80\r\n" + b"y" * 128
            + b"\r\n0\r\n\r\n", 413, "larger than the limit")

    async def test_head_over_the_limit_mid_pipeline(self):
        await self.assertRefusedMidPipeline(get_req("/healthz", b"X-Pad: " + b"p" * 9000 + b"\r\n"),
                                            431, "too large")

    async def test_smuggling_shapes_mid_pipeline(self):
        cases = [
            (b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "Content-Length"),
            (b"Content-Length: abc\r\n\r\n" + get_req("/api/stats"), 400, "Content-Length"),
            (b"Content-Length: -1\r\n\r\n", 400, "Content-Length"),
            (b"Content-Length: 18446744073709551616\r\n\r\n", 400, "Content-Length"),
            (b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding"),
            (b"Transfer-Encoding: gzip\r\n\r\nabc", 501, "chunked"),
            (b"X-A: 1\r\n folded\r\n\r\n", 400, "folding"),
        ]
        for tail, status, msg in cases:
            with self.subTest(tail=tail[:40]):
                await self.assertRefusedMidPipeline(b"POST /api/emit HTTP/1.1\r\nHost: x\r\n" + tail, status, msg)

    @server_args("--api-key", "k3y")
    async def test_refused_request_is_answered_before_its_body(self):
        """401 comes back on the head alone: the 1 MB body is never sent, let
        alone kept; the connection is closed after the answer."""
        c = self.conn()
        c.send(b"POST /api/emit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
               b"Content-Length: 1000000\r\n\r\n")
        st, h, body = await asyncio.to_thread(c.answer)
        self.assertEqual(st, 401, body)
        self.assertEqual(h.get("connection"), "close")
        c2 = self.conn()
        c2.send(emit_req("k", 1, key="k3y") + emit_req("k", 2, key="k3y"))
        self.assertEqual([(await asyncio.to_thread(c2.answer))[0] for _ in range(2)], [202, 202])

    async def test_slow_head_gets_408(self):
        c = self.conn()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        c.s.settimeout(20)
        st, h, body = await asyncio.to_thread(c.answer)
        self.assertEqual(st, 408, body)
        self.assertEqual(h.get("connection"), "close")

    async def test_answers_not_read_do_not_stop_other_clients(self):
        """A client pipelines far more than it reads: the server stops reading
        it (answers over 256 KiB pending) and serves others meanwhile."""
        hog = self.conn()
        hog.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        req = get_req("/metrics")
        hog.s.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 3
        data = req * 2000
        while time.monotonic() < deadline and sent < 50 * len(data):
            try:
                sent += hog.s.send(data)
            except BlockingIOError:
                await asyncio.sleep(0.01)
        c = self.conn()
        for _ in range(20):
            c.send(emit_req("other", 1))
            self.assertEqual((await asyncio.to_thread(c.answer))[0], 202)
        stats = await self.srv.stats()
        self.assertIsInstance(stats, dict)


if __name__ == "__main__":
    main()
