"""Shared harness for the scopecast integration tests.

Every test module is a standalone script:

    /usr/bin/python3 test_x.py --server build/server/scopecast --web-root web [--sanitized] [unittest args]

It starts the real server binary on 127.0.0.1 (a free port), talks to it with
real WebSocket clients (the `websockets` library, or `RawWS`, a small
hand-written client for byte-level cases) and plain HTTP (http.client), and
asserts what docs/PROTOCOL.md says.

Only the standard library and python3-websockets 10.4 are used.
"""

import argparse
import asyncio
import base64
import collections
import hashlib
import hmac
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import websockets
import websockets.exceptions

HOST = "127.0.0.1"  # never anything else


class _Config:
    server = None
    web_root = None
    sanitized = False
    log_dir = None
    timeout = 5.0  # how long a missing message may take to be noticed


CONFIG = _Config()


def T(factor=1.0):
    """The standard timeout for one expected message (scaled)."""
    return CONFIG.timeout * factor


# --------------------------------------------------------------------------
# JWT (HS256) helpers

JWT_SECRET = "s3cret"


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    s += "=" * (-len(s) % 4)
    return base64.urlsafe_b64decode(s)


def make_jwt(claims, secret=JWT_SECRET, header=None, sign=True):
    """HS256 token. `header` overrides the JOSE header; sign=False leaves the
    signature empty (for alg none)."""
    hdr = header if header is not None else {"alg": "HS256", "typ": "JWT"}
    signing_input = (b64url(json.dumps(hdr, separators=(",", ":"))) + "." +
                     b64url(json.dumps(claims, separators=(",", ":"))))
    if not sign:
        return signing_input + "."
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def token(sub, secret=JWT_SECRET, exp_in=3600, **claims):
    """A valid token for user `sub` (extra claims as keyword arguments)."""
    c = {"sub": sub, "exp": int(time.time()) + exp_in, "iat": int(time.time())}
    c.update(claims)
    return make_jwt(c, secret=secret)


def expired_token(sub="alice"):
    return make_jwt({"sub": sub, "exp": int(time.time()) - 120, "iat": int(time.time()) - 3600})


def wrong_signature_token(sub="alice"):
    return token(sub, secret="not-the-secret")


def alg_none_token(sub="alice"):
    return make_jwt({"sub": sub, "exp": int(time.time()) + 3600},
                    header={"alg": "none", "typ": "JWT"}, sign=False)


def jwt_claims(tok):
    return json.loads(b64url_decode(tok.split(".")[1]))


# --------------------------------------------------------------------------
# HTTP

class HTTPResult:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def header(self, name, default=""):
        return self.headers.get(name, default) if self.headers is not None else default

    def __repr__(self):
        b = self.body[:300]
        return f"<HTTP {self.status} {b!r}{'...' if len(self.body) > 300 else ''}>"


def http_request(port, method, path, body=None, headers=None, timeout=10.0):
    """One HTTP/1.1 request on a fresh connection. `body` may be bytes, str, or
    any JSON value (encoded, with Content-Type application/json)."""
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        send_error = None
        try:
            conn.request(method, path, body=data, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError) as e:
            send_error = e  # the server may have answered early (e.g. 413)
        try:
            resp = conn.getresponse()
        except Exception:
            if send_error:
                raise send_error
            raise
        try:
            payload = resp.read()
        except http.client.IncompleteRead as e:
            raise AssertionError(f"{method} {path}: HTTP {resp.status} response body truncated: got "
                                 f"{len(e.partial)} bytes, {e.expected} more expected "
                                 f"(Content-Length {resp.headers.get('Content-Length')})")
        return HTTPResult(resp.status, resp.headers, payload)
    finally:
        conn.close()


def assert_http_error(res, status, code):
    """docs/PROTOCOL.md: every error body is {"error":code,"message":text}."""
    if res.status != status:
        raise AssertionError(f"expected HTTP {status} ({code}), got {res!r}")
    j = res.json
    if not isinstance(j, dict) or j.get("error") != code or not isinstance(j.get("message"), str):
        raise AssertionError(f"expected error body {{'error': {code!r}, 'message': str}}, got {res!r}")


# --------------------------------------------------------------------------
# Server process

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


class ServerStartError(AssertionError):
    pass


_server_counter = itertools.count(1)
_marker_ids = itertools.count(1)


class Server:
    """The scopecast binary on 127.0.0.1:<free port>."""

    def __init__(self, args=(), name="server", env=None, api_loopback=True):
        self.args = [str(a) for a in args]
        # /api/* needs a key unless opened to loopback callers: the tests
        # use loopback unless they give a key or ask for the default
        if api_loopback and "--api-key" not in self.args:
            self.args.append("--api-loopback")
        self.extra_env = dict(env or {})
        self.name = name
        self.proc = None
        self.port = None
        self.log_path = None
        self.returncode = None
        self.stop_error = None
        self.api_key = self._flag("--api-key")

    def _flag(self, name):
        if name in self.args:
            i = self.args.index(name)
            if i + 1 < len(self.args):
                return self.args[i + 1]
        return None

    @property
    def drain_timeout(self):
        v = self._flag("--drain-timeout")
        return float(v) if v else 5.0

    # -- lifecycle ---------------------------------------------------------
    def start(self):
        last = None
        for attempt in range(3):
            self.port = free_port()
            n = next(_server_counter)
            self.log_path = os.path.join(CONFIG.log_dir, f"{self.name}-{n}-{self.port}.log")
            cmd = [CONFIG.server, "--host", HOST, "--port", str(self.port)]
            if "--web-root" not in self.args:
                cmd += ["--web-root", CONFIG.web_root]
            # SC_IT_SERVER_ARGS: flags for every server of the run (CMake
            # uses it for the "--threads 2" variants); the test's own come last.
            cmd += os.environ.get("SC_IT_SERVER_ARGS", "").split()
            cmd += self.args
            env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPECAST_")}
            env.update(self.extra_env)
            with open(self.log_path, "wb") as log:
                log.write(("$ " + " ".join(cmd) + "\n").encode())
                log.flush()
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, env=env,
                                             start_new_session=True)
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                rc = self.proc.poll()
                if rc is not None:
                    last = f"server exited with code {rc} before becoming ready"
                    break
                try:
                    res = http_request(self.port, "GET", "/healthz", timeout=1.0)
                    if res.status == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            else:
                last = "server did not answer GET /healthz with 200 within 10 s"
                self._kill()
                break
            if "in use" not in self.log_tail(20).lower():
                break
        raise ServerStartError(f"{last}; command: {' '.join(cmd)}\n--- server log ---\n{self.log_tail()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout=None):
        """SIGTERM, wait (drain timeout + slack), then SIGKILL. Returns the exit
        code; sets stop_error to a description when the stop was not clean."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            if self.stop_error is None:
                self.stop_error = f"server had already exited (code {self.returncode}) before the test stopped it"
            return self.returncode
        if timeout is None:
            timeout = self.drain_timeout + 5.0
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            self.returncode = self.proc.returncode
            self.stop_error = f"server did not exit within {timeout:.0f} s of SIGTERM (killed)"
            return self.returncode
        if self.returncode != 0:
            self.stop_error = f"server exited with code {self.returncode} after SIGTERM (expected 0)"
        return self.returncode

    def log_tail(self, lines=200):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(data[-lines:])

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("VmRSS not found")

    # -- HTTP ---------------------------------------------------------------
    _DEFAULT = object()

    def http(self, method, path, body=None, key=_DEFAULT, headers=None, timeout=10.0):
        hdrs = dict(headers or {})
        if key is Server._DEFAULT:
            key = self.api_key if path.startswith("/api/") else None
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        return http_request(self.port, method, path, body=body, headers=hdrs, timeout=timeout)

    async def request(self, method, path, body=None, **kw):
        """http() in a thread, so WebSocket clients keep reading meanwhile."""
        return await asyncio.to_thread(self.http, method, path, body, **kw)

    async def emit(self, scope, status=202, **fields):
        """POST /api/emit of one event; returns its seq."""
        body = {"scope": scope}
        body.update(fields)
        res = await self.request("POST", "/api/emit", body)
        if res.status != status:
            raise AssertionError(f"POST /api/emit {body!r} -> {res!r}, expected {status}")
        j = res.json
        if not isinstance(j, dict) or not isinstance(j.get("seq"), int) or isinstance(j.get("seq"), bool):
            raise AssertionError(f"POST /api/emit answered {res!r}, expected {{'seq': N}}")
        return j["seq"]

    async def emit_batch(self, items):
        res = await self.request("POST", "/api/emit", items)
        if res.status != 202:
            raise AssertionError(f"POST /api/emit (batch of {len(items)}) -> {res!r}, expected 202")
        j = res.json
        if not isinstance(j, dict) or not isinstance(j.get("results"), list) or len(j["results"]) != len(items):
            raise AssertionError(f"batch emit answered {res!r}, expected {{'results': [{len(items)} items]}}")
        return [r.get("seq") for r in j["results"]]

    async def stats(self):
        res = await self.request("GET", "/api/stats")
        if res.status != 200 or not isinstance(res.json, dict):
            raise AssertionError(f"GET /api/stats -> {res!r}")
        return res.json

    def ws_url(self, path="/ws", token=None, query=None):
        q = dict(query or {})
        if token is not None:
            q["token"] = token
        url = f"ws://{HOST}:{self.port}{path}"
        if q:
            url += "?" + urllib.parse.urlencode(q)
        return url


# --------------------------------------------------------------------------
# WebSocket clients

class Closed(AssertionError):
    """The connection was closed (close frame received, or lost: code 1006)."""

    def __init__(self, code, reason="", clean=True):
        super().__init__(f"connection closed: code {code} reason {reason!r}"
                         + ("" if clean else " (no close frame)"))
        self.code = code
        self.reason = reason
        self.clean = clean


PUSH_OPS = ("event", "join", "leave", "update", "dropped", "closed")


def _matches(msg, op=None, pred=None, fields=None):
    if op is not None and msg.get("op") != op:
        return False
    for k, v in (fields or {}).items():
        if k not in msg or msg[k] != v:
            return False
    if pred is not None and not pred(msg):
        return False
    return True


class Inbox:
    """Common receive logic: every message is kept in `log` (in arrival
    order); `pending` holds the ones no wait/next has consumed yet."""

    def __init__(self, name="client"):
        self.name = name
        self.log = []
        self.pending = collections.deque()
        self.closed = None  # Closed exception once the connection ended
        self.welcome = None
        self.record = True
        self._ids = itertools.count(1)

    async def _recv_message(self, timeout):  # returns dict or None on timeout
        raise NotImplementedError

    async def send(self, obj):
        raise NotImplementedError

    async def _read(self, timeout):
        if self.closed is not None:
            raise self.closed
        try:
            msg = await self._recv_message(max(timeout, 0.0))
        except Closed as c:
            self.closed = c
            raise
        if msg is not None and self.record:
            self.log.append(msg)
        return msg

    def _describe(self):
        p = list(self.pending)[:8]
        return f"{self.name}: unconsumed={p!r}{' ...' if len(self.pending) > 8 else ''}"

    async def next(self, timeout=None):
        """The next message, in arrival order."""
        if self.pending:
            return self.pending.popleft()
        timeout = T() if timeout is None else timeout
        msg = await self._read(timeout)
        if msg is None:
            raise AssertionError(f"{self.name}: no message within {timeout:.1f} s")
        return msg

    async def wait(self, op=None, timeout=None, pred=None, **fields):
        """The first message (pending or new) matching op/fields/pred; the
        others stay pending."""
        for m in list(self.pending):
            if _matches(m, op, pred, fields):
                self.pending.remove(m)
                return m
        timeout = T() if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no message matching op={op!r} {fields!r} "
                                     f"within {timeout:.1f} s; {self._describe()}")
            try:
                msg = await self._read(left)
            except Closed as c:
                raise AssertionError(f"{self.name}: connection closed (code {c.code}) while waiting for "
                                     f"op={op!r} {fields!r}; {self._describe()}")
            if msg is None:
                continue
            if _matches(msg, op, pred, fields):
                return msg
            self.pending.append(msg)

    async def expect(self, op, timeout=None, **fields):
        """The next message must be `op` with these field values."""
        msg = await self.next(timeout)
        if not _matches(msg, op, None, fields):
            raise AssertionError(f"{self.name}: expected op={op!r} {fields!r}, got {msg!r}; {self._describe()}")
        return msg

    async def call(self, op, timeout=None, **fields):
        """Send a request with a fresh integer id; return the message carrying
        that id (the reply or an error)."""
        rid = next(self._ids) + 1000
        req = {"op": op, "id": rid}
        req.update(fields)
        await self.send(req)
        return await self.wait(timeout=timeout, pred=lambda m: m.get("id") == rid)

    async def ok(self, op, reply_op=None, timeout=None, **fields):
        """call() and assert the reply is not an error."""
        reply_op = reply_op or {"subscribe": "subscribed", "unsubscribe": "unsubscribed",
                                "emit": "emitted", "presence": "presence", "ping": "pong"}.get(op, op)
        m = await self.call(op, timeout=timeout, **fields)
        if m.get("op") != reply_op:
            raise AssertionError(f"{self.name}: {op} {fields!r} answered {m!r}, expected {reply_op!r}")
        return m

    async def subscribe(self, scope, **fields):
        return await self.ok("subscribe", scope=scope, **fields)

    async def quiet(self, duration=0.3, op=None, pred=None, **fields):
        """Read for `duration` seconds; remove and return every message (pending
        or new) matching op/fields/pred. Others stay pending."""
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                msg = await self._read(left)
            except Closed:
                break
            if msg is not None:
                self.pending.append(msg)
        got, keep = [], collections.deque()
        for m in self.pending:
            (got if _matches(m, op, pred, fields) else keep).append(m)
        self.pending = keep
        return got

    async def drain(self, idle=1.0, limit=60.0):
        """Read until nothing arrives for `idle` seconds (at most `limit`);
        everything read stays pending."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                msg = await self._read(idle)
            except Closed:
                return
            if msg is None:
                return
            self.pending.append(msg)
        raise AssertionError(f"{self.name}: still receiving after {limit:.0f} s")

    def take(self, op=None, pred=None, **fields):
        """Remove and return the pending messages matching op/fields/pred."""
        got, keep = [], collections.deque()
        for m in self.pending:
            (got if _matches(m, op, pred, fields) else keep).append(m)
        self.pending = keep
        return got

    async def wait_closed(self, timeout=None):
        """Read until the connection ends; returns the Closed (with .code).
        Messages read meanwhile stay pending."""
        if self.closed is not None:
            return self.closed
        timeout = T() if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: connection not closed within {timeout:.1f} s; {self._describe()}")
            try:
                msg = await self._read(left)
            except Closed as c:
                return c
            if msg is not None:
                self.pending.append(msg)

    async def push(self, scope, timeout=None):
        """The next push (event/join/leave/update/dropped/closed) of `scope`."""
        return await self.wait(timeout=timeout, pred=lambda m: m.get("scope") == scope
                               and m.get("op") in PUSH_OPS)

    async def events_until(self, scope, last_seq, timeout=None):
        """Collect the pushes of `scope` (events and dropped) until an event with
        seq >= last_seq arrives. Other messages stay pending."""
        out = []
        while True:
            m = await self.wait(timeout=timeout, pred=lambda m: m.get("scope") == scope
                                and m.get("op") in ("event", "dropped"))
            out.append(m)
            if m["op"] == "event" and m["seq"] >= last_seq:
                return out


def _check_server_message(raw, name):
    if isinstance(raw, (bytes, bytearray)):
        raise AssertionError(f"{name}: server sent a binary frame: {bytes(raw[:100])!r}")
    try:
        msg = json.loads(raw)
    except ValueError:
        raise AssertionError(f"{name}: server sent text that is not JSON: {raw[:200]!r}")
    if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
        raise AssertionError(f"{name}: server sent a message without a string op: {raw[:200]!r}")
    return msg


class WSClient(Inbox):
    """A well-behaved client (python3-websockets; answers pings itself)."""

    def __init__(self, ws, name):
        super().__init__(name)
        self.ws = ws

    @classmethod
    async def connect(cls, server, token=None, subprotocols=("scopecast.v1",), path="/ws",
                      query=None, name="client", read_welcome=True, **kw):
        url = server.ws_url(path, token, query)
        kw.setdefault("max_size", 2 ** 24)
        kw.setdefault("max_queue", None)
        kw.setdefault("ping_interval", None)
        kw.setdefault("close_timeout", 2)
        kw.setdefault("open_timeout", T())
        ws = await websockets.connect(url, subprotocols=list(subprotocols) if subprotocols else None, **kw)
        c = cls(ws, name)
        if read_welcome:
            c.welcome = await c.expect("welcome")
        return c

    @property
    def session(self):
        return self.welcome["session"]

    @property
    def subprotocol(self):
        return self.ws.subprotocol

    async def _recv_message(self, timeout):
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            return None
        except websockets.exceptions.ConnectionClosed as e:
            if e.rcvd is not None:
                raise Closed(e.rcvd.code, e.rcvd.reason)
            raise Closed(1006, "", clean=False)
        return _check_server_message(raw, self.name)

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:
            pass
        try:
            self.ws.transport.abort()
        except Exception:
            pass


class HandshakeRefused(AssertionError):
    def __init__(self, status, headers, body):
        super().__init__(f"WebSocket upgrade refused: status {status}, body {body[:200]!r}")
        self.status = status
        self.headers = headers
        self.body = body


OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def build_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    if payload:
        k = (key * (len(payload) // 4 + 1))[:len(payload)]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(len(payload), "big")
    return hdr + key + payload


class _RawProto(asyncio.Protocol):
    def __init__(self):
        self.buf = bytearray()
        self.handshake = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.frames = asyncio.Queue()
        self.transport = None
        self.error = None
        self.auto_pong = True
        self.pings = []  # monotonic times of received pings

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if not self.handshake.done():
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(self.buf[:i]).decode("latin-1")
            del self.buf[:i + 4]
            lines = head.split("\r\n")
            try:
                status = int(lines[0].split()[1])
            except (IndexError, ValueError):
                status = -1
            headers = {}
            for ln in lines[1:]:
                if ":" in ln:
                    k, v = ln.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            self.upgraded = status == 101
            self.handshake.set_result((status, headers))
        if self.upgraded:
            self._parse()

    def _parse(self):
        while True:
            b = self.buf
            if len(b) < 2:
                return
            fin = bool(b[0] & 0x80)
            rsv = (b[0] >> 4) & 7
            opcode = b[0] & 0x0F
            masked = bool(b[1] & 0x80)
            n = b[1] & 0x7F
            pos = 2
            if n == 126:
                if len(b) < 4:
                    return
                n = struct.unpack("!H", b[2:4])[0]
                pos = 4
            elif n == 127:
                if len(b) < 10:
                    return
                n = struct.unpack("!Q", b[2:10])[0]
                pos = 10
            if masked:
                pos += 4
            if len(b) < pos + n:
                return
            payload = bytes(b[pos:pos + n])
            if masked:
                self.error = "server sent a masked frame"
            if rsv:
                self.error = f"server sent a frame with RSV bits {rsv}"
            del b[:pos + n]
            if opcode == OP_PING:  # answered as soon as it is read from the socket
                self.pings.append(time.monotonic())
                if self.auto_pong and not self.transport.is_closing():
                    self.transport.write(build_frame(OP_PONG, payload))
                continue
            self.frames.put_nowait((fin, opcode, payload))

    def connection_lost(self, exc):
        if not self.handshake.done():
            self.handshake.set_result((None, {}))
        self.frames.put_nowait(None)


class RawWS(Inbox):
    """A hand-written client over asyncio: full control over frames, pings
    (auto_pong), the socket's receive buffer and reading (pause/resume)."""

    def __init__(self, proto, name):
        super().__init__(name)
        self.proto = proto
        self.transport = proto.transport
        self.status = None
        self.headers = {}
        self.body = b""
        self.subprotocol = None
        self._frag = None
        self.eof = False

    @classmethod
    async def open(cls, server, path="/ws", token=None, subprotocols=("scopecast.v1",), query=None,
                   rcvbuf=None, extra_headers=None, name="raw", check=True, read_welcome=True,
                   auto_pong=True, request=None):
        """Connect and do the opening handshake. With check=False a refused
        upgrade returns the RawWS with .status (None: closed without answer)."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (HOST, server.port)), T())
        except BaseException:
            sock.close()
            raise
        transport, proto = await loop.create_connection(_RawProto, sock=sock)
        c = cls(proto, name)
        proto.auto_pong = auto_pong
        key = base64.b64encode(os.urandom(16)).decode()
        if request is None:
            q = dict(query or {})
            if token is not None:
                q["token"] = token
            target = path + ("?" + urllib.parse.urlencode(q) if q else "")
            lines = [f"GET {target} HTTP/1.1", f"Host: {HOST}:{server.port}", "Upgrade: websocket",
                     "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
            if subprotocols:
                lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
            for k, v in (extra_headers or {}).items():
                lines.append(f"{k}: {v}")
            request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        transport.write(request)
        try:
            c.status, c.headers = await asyncio.wait_for(asyncio.shield(proto.handshake), T())
        except asyncio.TimeoutError:
            transport.abort()
            raise AssertionError(f"{name}: no answer to the upgrade request within {T():.0f} s")
        if c.status != 101:
            # collect a bit of the body for diagnostics
            end = time.monotonic() + 0.3
            while time.monotonic() < end and not transport.is_closing():
                await asyncio.sleep(0.02)
            c.body = bytes(proto.buf)
            transport.abort()
            if check:
                raise HandshakeRefused(c.status, c.headers, c.body)
            return c
        if request is not None:  # a hand-made request: its own (first) key
            m = re.search(rb"(?im)^sec-websocket-key: *([^\r\n]*)", request)
            key = m.group(1).decode() if m else key
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        if c.headers.get("sec-websocket-accept") != accept:
            transport.abort()
            raise AssertionError(f"{name}: bad Sec-WebSocket-Accept {c.headers.get('sec-websocket-accept')!r}")
        c.subprotocol = c.headers.get("sec-websocket-protocol")
        if read_welcome:
            c.welcome = await c.expect("welcome")
        return c

    @property
    def session(self):
        return self.welcome["session"]

    @property
    def pings(self):
        """Monotonic times of the pings received (answered at once when
        auto_pong, unless reading is paused)."""
        return self.proto.pings

    # -- sending --
    def send_frame(self, opcode, payload=b"", **kw):
        self.transport.write(build_frame(opcode, payload, **kw))

    def send_raw(self, data):
        self.transport.write(data)

    async def send(self, obj):
        if isinstance(obj, (bytes, bytearray)):
            self.send_frame(OP_TEXT, bytes(obj))
        elif isinstance(obj, str):
            self.send_frame(OP_TEXT, obj.encode())
        else:
            self.send_frame(OP_TEXT, json.dumps(obj).encode())

    def send_close(self, code=1000, reason=b""):
        self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason)

    def pause(self):
        self.transport.pause_reading()

    def resume(self):
        self.transport.resume_reading()

    def abort(self):
        self.transport.abort()

    async def close(self):
        self.abort()

    # -- receiving --
    async def _frame(self, timeout):
        try:
            f = await asyncio.wait_for(self.proto.frames.get(), timeout)
        except asyncio.TimeoutError:
            return "timeout"
        if self.proto.error:
            raise AssertionError(f"{self.name}: {self.proto.error}")
        return f

    async def _recv_message(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            f = await self._frame(max(0.0, deadline - time.monotonic()))
            if f == "timeout":
                return None
            if f is None:
                self.eof = True
                raise Closed(1006, "", clean=False)
            fin, opcode, payload = f
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                reason = payload[2:].decode("utf-8", "replace")
                if not self.transport.is_closing():
                    self.send_frame(OP_CLOSE, payload[:2])
                raise Closed(code, reason)
            if opcode in (OP_TEXT, OP_BINARY):
                if self._frag is not None:
                    raise AssertionError(f"{self.name}: new data frame inside a fragmented message")
                if not fin:
                    self._frag = [opcode, payload]
                    continue
                data, op = payload, opcode
            elif opcode == OP_CONT:
                if self._frag is None:
                    raise AssertionError(f"{self.name}: continuation frame without a start")
                self._frag[1] += payload
                if not fin:
                    continue
                op, data = self._frag
                self._frag = None
            else:
                raise AssertionError(f"{self.name}: unknown opcode {opcode}")
            if op == OP_BINARY:
                raise AssertionError(f"{self.name}: server sent a binary message")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise AssertionError(f"{self.name}: server sent invalid UTF-8")
            return _check_server_message(text, self.name)


# --------------------------------------------------------------------------
# Assertions on protocol objects

def assert_conn(conn, session=None, user=..., meta=None):
    """A `conn` object: {"session","user","at","meta"}."""
    if not isinstance(conn, dict):
        raise AssertionError(f"conn is not an object: {conn!r}")
    for k in ("session", "user", "at", "meta"):
        if k not in conn:
            raise AssertionError(f"conn lacks {k!r}: {conn!r}")
    if not isinstance(conn["session"], str) or not conn["session"]:
        raise AssertionError(f"conn.session not a non-empty string: {conn!r}")
    if conn["user"] is not None and not isinstance(conn["user"], str):
        raise AssertionError(f"conn.user not a string or null: {conn!r}")
    at = conn["at"]
    if not isinstance(at, (int, float)) or isinstance(at, bool) or abs(at - time.time()) > 600:
        raise AssertionError(f"conn.at is not a recent epoch time in seconds: {conn!r}")
    if not isinstance(conn["meta"], dict):
        raise AssertionError(f"conn.meta is not an object: {conn!r}")
    if session is not None and conn["session"] != session:
        raise AssertionError(f"conn.session {conn['session']!r} != {session!r}")
    if user is not ... and conn["user"] != user:
        raise AssertionError(f"conn.user {conn['user']!r} != {user!r}")
    if meta is not None and conn["meta"] != meta:
        raise AssertionError(f"conn.meta {conn['meta']!r} != {meta!r}")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_drop_accounting(msgs, first_seq, last_seq):
    """`msgs`: the event/dropped pushes of one scope in arrival order. Checks
    that events come in increasing seq order, that every gap between
    consecutive received seqs is announced by `dropped` notices (received
    since the previous gap) whose counts add up to exactly the gap, that the
    range first_seq..last_seq is covered, and returns (received, dropped)."""
    prev = first_seq - 1
    announced = 0
    received = 0
    dropped_total = 0
    for i, m in enumerate(msgs):
        if m["op"] == "dropped":
            if not is_int(m.get("count")) or m["count"] <= 0:
                raise AssertionError(f"bad dropped notice {m!r}")
            announced += m["count"]
            dropped_total += m["count"]
            continue
        s = m["seq"]
        if s <= prev:
            raise AssertionError(f"event seq {s} after seq {prev} (message #{i})")
        gap = s - prev - 1
        if gap != announced:
            raise AssertionError(f"event seq {s} follows seq {prev}: gap of {gap} events, but the dropped "
                                 f"notices received since the previous gap announce {announced} (message #{i})")
        announced = 0
        prev = s
        received += 1
    if prev != last_seq:
        raise AssertionError(f"last event received has seq {prev}, expected {last_seq}")
    if announced:
        raise AssertionError(f"{announced} dropped events announced after the last event")
    return received, dropped_total


def run_server(*args, timeout=15.0):
    """Runs the binary with `args` (after --host 127.0.0.1 and the run's
    SC_IT_SERVER_ARGS) expecting it to exit by itself; returns
    (exit code, output)."""
    cmd = [CONFIG.server, "--host", HOST, *os.environ.get("SC_IT_SERVER_ARGS", "").split(),
           *[str(a) for a in args]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPECAST_")}
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise AssertionError(f"{' '.join(cmd)} still running after {timeout} s (expected it to refuse)\n"
                             + out.decode("utf-8", "replace"))
    return p.returncode, out.decode("utf-8", "replace")

# --------------------------------------------------------------------------
# Redis (for the cluster tests: scopecast nodes linked by --broker)

REDIS_SERVER = os.environ.get("SC_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


def _resp_arg(a):
    if isinstance(a, bytes):
        return a
    return str(a).encode()


def resp_encode(*args):
    """One Redis command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = _resp_arg(a)
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespReader:
    """Reads RESP2 replies from a blocking socket. Bulk strings come back as
    bytes, simple strings as str, errors as RedisError instances (returned,
    not raised), nil as None."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("Redis closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n + 2)[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise AssertionError(f"unexpected RESP reply {line[:100]!r}")


def redis_command(port, *args, timeout=5.0):
    """One command on a fresh connection to 127.0.0.1:port; its reply (an
    error reply is raised as RedisError)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(resp_encode(*args))
        r = RespReader(s).read()
    if isinstance(r, RedisError):
        raise r
    return r


class RedisServer:
    """A redis-server of its own on 127.0.0.1 (a free port, or a given one),
    in a temporary directory under the run's log dir, nothing persisted
    (--save "" --appendonly no). Stopped by PID only. The process gets
    SIGKILL when the thread that started it ends (PR_SET_PDEATHSIG), so a
    killed test run leaves no Redis behind: start it from the test's main
    thread, not from asyncio.to_thread."""

    def __init__(self, name="redis"):
        self.name = name
        self.port = None
        self.proc = None
        self.log_path = None
        self.dir = tempfile.mkdtemp(prefix=f"{name}-", dir=CONFIG.log_dir)
        self._starts = 0

    @property
    def url(self):
        return f"redis://{HOST}:{self.port}"

    _prctl = None  # libc's prctl, looked up in the parent (slow in a child)

    @classmethod
    def _die_with_parent_fn(cls):
        if cls._prctl is None:
            try:
                import ctypes
                cls._prctl = ctypes.CDLL(None, use_errno=True).prctl
            except Exception:
                cls._prctl = False
        prctl = cls._prctl
        if not prctl:
            return None

        def die_with_parent():  # in the child, before exec
            prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        return die_with_parent

    def _start_steps(self, port, timeout):
        """start() as a generator of the pauses it makes (seconds), so it
        can run with time.sleep or asyncio.sleep; returns when Redis
        answers PING."""
        if not os.access(REDIS_SERVER, os.X_OK):
            raise ServerStartError(f"redis-server not found ({REDIS_SERVER}); set SC_REDIS_SERVER")
        fixed = port is not None
        deadline = time.monotonic() + timeout
        last = None
        while True:
            self.port = port if fixed else free_port()
            self._starts += 1
            self.log_path = os.path.join(CONFIG.log_dir, f"{self.name}-{self._starts}-{self.port}.log")
            cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", HOST, "--save", "",
                   "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"]
            with open(self.log_path, "wb") as log:
                log.write(("$ " + " ".join(cmd) + "\n").encode())
                log.flush()
                self.proc = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True,
                                             preexec_fn=self._die_with_parent_fn())
            while time.monotonic() < deadline:
                rc = self.proc.poll()
                if rc is not None:
                    last = f"redis-server exited with code {rc}"
                    break
                try:
                    if redis_command(self.port, "PING", timeout=1.0) == "PONG":
                        return
                except (OSError, EOFError, RedisError):
                    pass
                yield 0.02
            else:
                self.kill()
                raise ServerStartError(f"redis-server did not answer PING within {timeout:.0f} s\n"
                                       f"{self.log_tail()}")
            if time.monotonic() >= deadline or "in use" not in self.log_tail(20).lower():
                raise ServerStartError(f"{last}; command: {' '.join(cmd)}\n--- redis log ---\n{self.log_tail()}")
            yield 0.1  # the port is still taken: try again

    def start(self, port=None, timeout=10.0):
        """Starts it (on `port` when given: tried until `timeout` while the
        port is still taken) and waits until it answers PING. Blocking."""
        for pause in self._start_steps(port, timeout):
            time.sleep(pause)
        return self

    async def start_async(self, port=None, timeout=10.0):
        """start() without blocking the event loop (still in the calling
        thread, which the process is tied to)."""
        for pause in self._start_steps(port, timeout):
            await asyncio.sleep(pause)
        return self

    def restart(self, timeout=10.0):
        """A new redis-server on the same port (after kill() or stop())."""
        self.stop()
        return self.start(port=self.port, timeout=timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL (by PID), and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout=5.0):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def command(self, *args, timeout=5.0):
        return redis_command(self.port, *args, timeout=timeout)

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
        except (OSError, TypeError):
            return "(no log)"
        return "\n".join(data[-lines:])


class RedisSubscriber:
    """A raw Redis pub/sub client in a thread: SUBSCRIBE to channels and/or
    PSUBSCRIBE to patterns, then every message is kept in `messages` as
    (channel bytes, payload bytes, monotonic time). Returns from the
    constructor once Redis confirmed every subscription."""

    def __init__(self, port, channels=(), patterns=(), timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.reader = RespReader(self.sock)
        self.messages = []
        self.error = None
        self._lock = threading.Lock()
        want = 0
        if channels:
            self.sock.sendall(resp_encode("SUBSCRIBE", *channels))
            want += len(channels)
        if patterns:
            self.sock.sendall(resp_encode("PSUBSCRIBE", *patterns))
            want += len(patterns)
        for _ in range(want):
            r = self.reader.read()
            if not (isinstance(r, list) and r and r[0] in (b"subscribe", b"psubscribe")):
                raise AssertionError(f"unexpected answer to (P)SUBSCRIBE: {r!r}")
        self.sock.settimeout(None)
        self._thread = threading.Thread(target=self._run, name="redis-subscriber", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while True:
                r = self.reader.read()
                now = time.monotonic()
                if isinstance(r, list) and r and r[0] == b"message" and len(r) == 3:
                    with self._lock:
                        self.messages.append((r[1], r[2], now))
                elif isinstance(r, list) and r and r[0] == b"pmessage" and len(r) == 4:
                    with self._lock:
                        self.messages.append((r[2], r[3], now))
        except (OSError, EOFError, ValueError) as e:
            self.error = e

    def snapshot(self):
        with self._lock:
            return list(self.messages)

    def matching(self, needle):
        """The messages whose payload contains `needle` (bytes or str)."""
        if isinstance(needle, str):
            needle = needle.encode()
        return [m for m in self.snapshot() if needle in m[1]]

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(2)


class KeepAliveHTTP:
    """One kept-alive HTTP/1.1 connection to a Server, with its API key
    (blocking: use it from a thread). post() reopens the connection when
    the server answered `connection: close`."""

    def __init__(self, srv, timeout=30.0):
        self.srv = srv
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(HOST, srv.port, timeout=timeout)
        self.requests = 0

    def request(self, method, path, body=None):
        hdrs = {}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
            hdrs["Content-Type"] = "application/json"
        if self.srv.api_key is not None and path.startswith("/api/"):
            hdrs["Authorization"] = f"Bearer {self.srv.api_key}"
        self.conn.request(method, path, body=data, headers=hdrs)
        res = self.conn.getresponse()
        payload = res.read()
        self.requests += 1
        if res.getheader("connection", "").lower() == "close":
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.srv.port, timeout=self.timeout)
        return HTTPResult(res.status, res.headers, payload)

    def emit(self, body):
        """POST /api/emit of one event (a dict: returns its seq) or a batch (a
        list: returns the seqs); anything but 202 is an AssertionError."""
        res = self.request("POST", "/api/emit", body)
        if res.status != 202:
            raise AssertionError(f"POST /api/emit {str(body)[:200]} on {self.srv.name} -> {res!r}")
        j = res.json
        if isinstance(body, list):
            return [r.get("seq") for r in j["results"]]
        return j["seq"]

    def close(self):
        self.conn.close()


# --------------------------------------------------------------------------
# Test case base class and runner

def server_args(*args):
    """Decorator: extra server flags for one test."""
    def deco(fn):
        fn.server_args = tuple(str(a) for a in args)
        return fn
    return deco


def no_server(fn):
    fn.no_server = True
    return fn


class ScopecastTestCase(unittest.IsolatedAsyncioTestCase):
    SERVER_ARGS = ()
    TEST_TIMEOUT = 60.0

    def setUp(self):
        self.servers = []
        self.clients = []
        method = getattr(self, self._testMethodName)
        self.srv = None
        if not getattr(method, "no_server", False):
            self.srv = self.start_server(*self.SERVER_ARGS, *getattr(method, "server_args", ()))

    def start_server(self, *args, name=None, env=None, api_loopback=True):
        s = Server(args, name=name or self._testMethodName, env=env,
                   api_loopback=api_loopback)
        self.servers.append(s)
        self.addCleanup(self._stop_server, s)
        s.start()
        return s

    def start_redis(self, name="redis"):
        """A RedisServer of this test (see RedisServer), stopped at cleanup
        (after the servers started later: cleanups run last-in first-out).
        Call it from the test's own thread (setUp or the test body)."""
        r = RedisServer(name=f"{self._testMethodName}-{name}")
        if not hasattr(self, "redis_servers"):
            self.redis_servers = []
        self.redis_servers.append(r)
        self.addCleanup(r.stop)
        r.start()
        return r

    def restart_on_same_port(self, old):
        """A new server with the same flags on the port `old` used, tried
        for 10 s while that port is still taken. Blocking: call it in a
        thread (asyncio.to_thread)."""
        global free_port
        new = Server(old.args, name=f"{self._testMethodName}-restarted", api_loopback=False)
        self.servers.append(new)
        self.addCleanup(self._stop_server, new)
        real_free_port = free_port
        free_port = lambda: old.port  # noqa: E731 (Server.start asks it)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    return new.start()
                except ServerStartError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            free_port = real_free_port

    def _stop_server(self, s):
        """Cleanup: the server must still be running (no crash), and must exit
        0 on SIGTERM (a sanitizer report makes the exit code non-zero)."""
        if getattr(s, "expected_exit", False):
            s._kill()
            return
        s.stop()
        if s.stop_error:
            raise AssertionError(f"{s.name}: {s.stop_error}\n--- server log ---\n{s.log_tail(60)}")

    def _callTestMethod(self, method):
        timeout = self.TEST_TIMEOUT * (2 if CONFIG.sanitized else 1)

        async def guarded():
            try:
                return await asyncio.wait_for(method(), timeout)
            except asyncio.TimeoutError:
                raise AssertionError(f"test did not finish within {timeout:.0f} s")
        self._callMaybeAsync(guarded)

    async def client(self, srv=None, name=None, **kw):
        c = await WSClient.connect(srv or self.srv, name=name or f"client{len(self.clients) + 1}", **kw)
        self.clients.append(c)
        if len(self.clients) == 1:
            self.addAsyncCleanup(self._close_clients)
        return c

    async def raw(self, srv=None, name=None, **kw):
        c = await RawWS.open(srv or self.srv, name=name or f"raw{len(self.clients) + 1}", **kw)
        self.clients.append(c)
        if len(self.clients) == 1:
            self.addAsyncCleanup(self._close_clients)
        return c

    async def _close_clients(self):
        for c in self.clients:
            try:
                await c.close()
            except Exception:
                pass

    async def marker(self, scope, *clients, srv=None):
        """Emit a marker event over HTTP into `scope`; for each client the next
        push of the scope must be exactly that event (so nothing else of the
        scope was pending before it). Returns the marker's seq."""
        srv = srv or self.srv
        tag = f"marker-{next(_marker_ids)}"
        seq = await srv.emit(scope, data={"marker": tag})
        for c in clients:
            m = await c.push(scope)
            if m.get("op") != "event" or m.get("data") != {"marker": tag}:
                raise AssertionError(f"{c.name}: expected the marker event {tag} (seq {seq}) as the next push "
                                     f"of {scope!r}, got {m!r}")
            self.assertEqual(m.get("seq"), seq, m)
        return seq

    # assertion helpers
    def assertSub(self, msg, expected, note=""):
        """`msg` has these fields with these values (extra fields are allowed:
        docs/PROTOCOL.md lets the server add optional fields)."""
        if not isinstance(msg, dict):
            raise AssertionError(f"expected an object with {expected!r}, got {msg!r} {note}")
        for k, v in expected.items():
            if k not in msg:
                raise AssertionError(f"missing field {k!r} (expected {v!r}) in {msg!r} {note}")
            got = msg[k]
            if got != v or (isinstance(v, bool) != isinstance(got, bool)):
                raise AssertionError(f"field {k!r} is {got!r}, expected {v!r}, in {msg!r} {note}")

    def assertError(self, msg, code, id=...):
        """An `error` push with this code; id=... means "must have no id"."""
        self.assertEqual(msg.get("op"), "error", msg)
        self.assertEqual(msg.get("code"), code, msg)
        self.assertIsInstance(msg.get("message"), str, msg)
        if id is ...:
            self.assertNotIn("id", msg, f"error for a request without a usable id must not carry one: {msg!r}")
        else:
            self.assertIn("id", msg, msg)
            self.assertEqual(msg["id"], id, msg)
            self.assertEqual(type(msg["id"]), type(id), msg)


class ClusterTestCase(ScopecastTestCase):
    """A redis-server and two scopecast nodes linked through it
    (--broker): self.redis, self.a, self.b; self.srv is A, so marker()
    emits on A unless told otherwise. node_flags() gives both nodes'
    other flags; BROKER_PATH is appended to the Redis URL (e.g. "/3")."""

    BROKER_PATH = ""

    def node_flags(self):
        return ()

    def setUp(self):
        self.servers = []
        self.clients = []
        self.srv = None
        self.redis = self.start_redis()
        self.a = self.start_node("A")
        self.b = self.start_node("B")
        self.srv = self.a

    def start_node(self, name, *extra):
        return self.start_server("--broker", self.redis.url + self.BROKER_PATH, *self.node_flags(),
                                 *extra, name=f"{self._testMethodName}-{name}")

    def node_name(self, srv):
        return "A" if srv is self.a else "B" if srv is self.b else srv.name


class _Result(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._bad = set()

    def addFailure(self, test, err):
        self._bad.add(id(test))
        super().addFailure(test, err)

    def addError(self, test, err):
        self._bad.add(id(test))
        super().addError(test, err)

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self._bad.add(id(test))
        super().addSubTest(test, subtest, err)

    def stopTest(self, test):
        super().stopTest(test)
        if id(test) in self._bad:
            for s in getattr(test, "servers", []) or []:
                self.stream.write(f"\n----- server log of {test.id()} ({s.log_path}) -----\n")
                self.stream.write(s.log_tail(150) + "\n")
                self.stream.write("----- end of server log -----\n")
            for r in getattr(test, "redis_servers", []) or []:
                self.stream.write(f"\n----- redis log of {test.id()} ({r.log_path}) -----\n")
                self.stream.write(r.log_tail(40) + "\n")
                self.stream.write("----- end of redis log -----\n")
            self.stream.flush()


def main():
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--server", required=True)
    ap.add_argument("--web-root", required=True)
    ap.add_argument("--sanitized", action="store_true")
    ap.add_argument("--timeout", type=float, default=None)
    args, rest = ap.parse_known_args()
    CONFIG.server = os.path.abspath(args.server)
    CONFIG.web_root = os.path.abspath(args.web_root)
    CONFIG.sanitized = args.sanitized or bool(os.environ.get("SC_SANITIZER"))
    CONFIG.timeout = args.timeout or (10.0 if CONFIG.sanitized else 5.0)
    if not os.access(CONFIG.server, os.X_OK):
        print(f"server binary {CONFIG.server} not found or not executable", file=sys.stderr)
        sys.exit(2)
    CONFIG.log_dir = tempfile.mkdtemp(prefix="scopecast-it-")
    print(f"server: {CONFIG.server}  web root: {CONFIG.web_root}  sanitized: {CONFIG.sanitized}  "
          f"logs: {CONFIG.log_dir}", flush=True)
    runner = unittest.TextTestRunner(verbosity=2, resultclass=_Result, stream=sys.stdout)
    prog = unittest.main(module="__main__", argv=[sys.argv[0]] + rest, testRunner=runner, exit=False)
    ok = prog.result.wasSuccessful()
    if ok:
        shutil.rmtree(CONFIG.log_dir, ignore_errors=True)
    else:
        print(f"server logs kept in {CONFIG.log_dir}", flush=True)
    sys.exit(0 if ok else 1)
