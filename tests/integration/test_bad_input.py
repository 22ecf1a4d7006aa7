#!/usr/bin/python3
"""A table of bad inputs. Each case asserts the exact answer docs/PROTOCOL.md gives
and then that the server still serves a well-behaved client connected before
the case (it receives a freshly emitted event, and nothing else first).

The cases run on one shared server (restarted if a case kills it), so damage
accumulates as it would in production; cases that need other flags get their
own server.
"""

import asyncio
import base64
import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (HOST, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, ScopecastTestCase,  # noqa: E402
                     Server, assert_conn, assert_http_error, build_frame, main)

MAX_MESSAGE = 1024
API_KEY = "k"
# --presence-grace 0: the guard sees an abruptly dropped client leave at
# once (test_presence_grace.py covers the grace)
SHARED_ARGS = ("--client-emit", "--max-message", str(MAX_MESSAGE), "--api-key", API_KEY,
               "--presence-grace", "0")
GUARD = "guard"
NO_ID = ...


PING_BASE = '{"op":"ping","id":"%s"}'


def ping_id(n):
    """The id that makes a ping request exactly n bytes long."""
    return "x" * (n - len(PING_BASE % ""))


def ping_of_size(n):
    """A valid ping request of exactly n bytes (the id string pads it)."""
    data = (PING_BASE % ping_id(n)).encode()
    assert len(data) == n
    return data


# ---------------------------------------------------------------- case kinds

def ws_error(payload, id=NO_ID, code="bad_request"):
    """Send one text frame; the answer is `error` with `code` (and the id, or
    no id), and the connection stays open."""
    async def run(tc):
        c = await tc.raw(name="offender")
        await c.send(payload)
        m = await c.next()
        tc.assertError(m, code, id=id)
        pong = await c.call("ping")
        tc.assertEqual(pong["op"], "pong", "the connection stays open after a bad_request")
        tc.assertEqual(await c.quiet(0.1, op="error"), [], "exactly one error per bad request")
    return run


def ws_close(frames, code, opener=None):
    """Send raw frames; the server closes the connection with `code` (None: any
    close, with or without a close frame)."""
    async def run(tc):
        c = await tc.raw(name="offender")
        for f in frames:
            c.send_raw(f)
        closed = await c.wait_closed()
        if code is not None:
            tc.assertTrue(closed.clean, f"expected close frame with code {code}, the TCP connection just ended")
            tc.assertEqual(closed.code, code, f"close code: {closed}")
        tc.assertEqual([m for m in c.log if m.get("op") == "pong"], [], "nothing of the bad message was served")
    return run


def ws_reply(frames, rid):
    """Frames that must be accepted: the reply is a pong with this id."""
    async def run(tc):
        c = await tc.raw(name="client")
        for f in frames:
            c.send_raw(f)
        m = await c.wait(id=rid)
        tc.assertSub(m, {"op": "pong", "id": rid})
    return run


def http_error(method, path, body, status, code, key=API_KEY, headers=None):
    async def run(tc):
        res = await tc.srv.request(method, path, body, key=key, headers=headers)
        assert_http_error(res, status, code)
    return run


def upgrade_refused(path="/ws", subprotocols=("scopecast.v1",), statuses=None):
    """The upgrade is refused: no 101; with a status, one of `statuses`."""
    async def run(tc):
        c = await tc.raw(path=path, subprotocols=subprotocols, check=False, read_welcome=False, name="upgrader")
        tc.assertNotEqual(c.status, 101, f"upgrade on {path} with {subprotocols} must be refused")
        if c.status is not None and statuses is not None:
            tc.assertIn(c.status, statuses, f"refusal status for {path}")
    return run


def F(payload, opcode=OP_TEXT, **kw):
    return build_frame(opcode, payload, **kw)


# ------------------------------------------------------------- custom cases

async def abrupt_disconnect_while_subscribed(tc):
    c = await tc.raw(name="abrupt")
    await c.subscribe(GUARD, meta={"who": "abrupt"})
    j = await tc.guard.push(GUARD)
    tc.assertSub(j, {"op": "join", "first": True})
    c.abort()  # no close frame
    lv = await tc.guard.push(GUARD)
    tc.assertSub(lv, {"op": "leave", "scope": GUARD, "last": True})
    assert_conn(lv["conn"], session=c.session, meta={"who": "abrupt"})


async def abrupt_disconnect_mid_frame(tc):
    c = await tc.raw(name="abrupt")
    await c.subscribe(GUARD)
    await tc.guard.push(GUARD)  # join
    c.send_raw(F(b'{"op":"ping","id":1}' * 10)[:9])  # header and a few bytes
    await asyncio.sleep(0.1)
    c.abort()
    lv = await tc.guard.push(GUARD)
    tc.assertSub(lv, {"op": "leave", "last": True})


async def abrupt_disconnect_with_queued_events(tc):
    c = await tc.raw(name="abrupt", rcvbuf=4096)
    await c.subscribe("flood")
    c.pause()
    for _ in range(3):
        await tc.srv.emit_batch([{"scope": "flood", "data": "y" * 4000} for _ in range(100)])
    c.abort()
    await asyncio.sleep(0.2)


async def client_close_frame(tc):
    c = await tc.raw(name="closer")
    await c.subscribe(GUARD)
    await tc.guard.push(GUARD)
    c.send_close(1000)
    closed = await c.wait_closed()
    tc.assertEqual(closed.code, 1000, "the server answers a close frame with a close frame")
    tc.assertSub(await tc.guard.push(GUARD), {"op": "leave"})


def raw_socket(data, then_read=True):
    async def run(tc):
        r, w = await asyncio.open_connection(HOST, tc.srv.port)
        w.write(data)
        await w.drain()
        if then_read:
            try:
                await asyncio.wait_for(r.read(65536), 2)
            except (asyncio.TimeoutError, ConnectionError):
                pass
        w.transport.abort()
        await asyncio.sleep(0.05)
    return run


async def many_bad_requests_in_a_row(tc):
    c = await tc.raw(name="spammer")
    for i in range(50):
        await c.send('{"op":"subscribe","scope":"","id":%d}' % i)
    for i in range(50):
        tc.assertError(await c.wait(id=i), "bad_request", id=i)
    tc.assertEqual((await c.call("ping"))["op"], "pong")


async def ping_frame_gets_pong(tc):
    c = await tc.raw(name="pinger")
    c.send_frame(OP_PING, b"hello")
    deadline = time.monotonic() + 2
    while True:
        f = await c._frame(max(0.0, deadline - time.monotonic()))
        tc.assertNotIn(f, ("timeout", None), "a ping frame is answered with a pong")
        if f[1] == OP_PONG:
            tc.assertEqual(f[2], b"hello", "the pong carries the ping's payload")
            return


async def frame_split_byte_by_byte(tc):
    """Every byte in its own TCP segment: header, mask and payload all split."""
    c = await tc.raw(name="trickle")
    data = F(b'{"op":"ping","id":"trickle"}') + F(b"ab", OP_PING)
    for i in range(len(data)):
        c.send_raw(data[i:i + 1])
        await asyncio.sleep(0.004)
    tc.assertSub(await c.wait(id="trickle"), {"op": "pong", "id": "trickle"})


def upgrade_request(status, version="13", key=True, http="HTTP/1.1", pad=0, header=None, key_value=None,
                    extra=(), host=True, target="/ws"):
    """A hand-made upgrade request; the answer has this status. `target` may
    hold {port}; `extra` lines go after the key."""
    async def run(tc):
        lines = [f"GET {target.format(port=tc.srv.port)} {http}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Version: {version}"]
        if host:
            lines.insert(1, f"Host: {HOST}:{tc.srv.port}")
        if key:
            lines.append("Sec-WebSocket-Key: " + (key_value or base64.b64encode(os.urandom(16)).decode()))
        lines += list(extra)
        if pad:
            lines.append("X-Pad: " + "p" * pad)
        req = ("\r\n".join(lines) + "\r\n\r\n").encode()
        c = await tc.raw(request=req, check=False, read_welcome=False, name="upgrader")
        tc.assertEqual(c.status, status, f"answer to {lines[0]!r} version {version} key {key} pad {pad}")
        if header:
            tc.assertEqual(c.headers.get(header[0]), header[1])
    return run


async def upgrade_head_in_pieces(tc):
    """The request head arrives in three pieces 50 ms apart: still upgraded."""
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET /ws HTTP/1.1\r\nHost: {HOST}:{tc.srv.port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    r, w = await asyncio.open_connection(HOST, tc.srv.port)
    try:
        for part in (req[:2], req[2:40], req[40:]):
            w.write(part)
            await w.drain()
            await asyncio.sleep(0.05)
        line = await asyncio.wait_for(r.readline(), 2)
        tc.assertTrue(line.startswith(b"HTTP/1.1 101"), line)
    finally:
        w.transport.abort()


async def upgrade_after_http_request(tc):
    """A WebSocket must be a connection's first request: after a kept-alive
    HTTP request the upgrade is refused (400), the connection is not served."""
    key = base64.b64encode(os.urandom(16)).decode()
    r, w = await asyncio.open_connection(HOST, tc.srv.port)
    try:
        w.write(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        line = await asyncio.wait_for(r.readline(), 2)
        tc.assertTrue(line.startswith(b"HTTP/1.1 200"), line)
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 2)
        n = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
        await asyncio.wait_for(r.readexactly(n), 2)
        w.write((f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        line = await asyncio.wait_for(r.readline(), 2)
        tc.assertFalse(line.startswith(b"HTTP/1.1 101"), line)
    finally:
        w.transport.abort()


def _random_frame(r):
    """Mostly plausible, often broken: valid requests, pings, random opcodes,
    bits and masks, garbage bytes, absurd 64-bit lengths."""
    k = r.random()
    if k < 0.3:
        return F(b'{"op":"ping","id":%d}' % r.randint(0, 99))
    if k < 0.4:
        return F(r.randbytes(r.randint(0, 125)), OP_PING)
    if k < 0.5:
        return build_frame(r.choice([0, 1, 2, 3, 8, 10, 11, 15]), r.randbytes(r.randint(0, 300)),
                           fin=r.random() < 0.7, mask=r.random() < 0.9, rsv=r.choice([0, 0, 0, 1, 4]))
    if k < 0.6:
        return r.randbytes(r.randint(1, 40))
    if k < 0.7:
        return F(b'{"op":"subscribe","scope":"fuzz%d"}' % r.randint(0, 3))
    if k < 0.8:
        return F(b'{"op":"emit","scope":"fuzz%d","data":%d}' % (r.randint(0, 3), r.randint(0, 9)))
    return (bytes([0x81, 0xFF]) + struct.pack("!Q", r.choice([0, 1, 70000, 2**40, 2**63 - 1]))
            + r.randbytes(4 + r.randint(0, 100)))


async def random_frames_from_many_clients(tc):
    """300 connections (50 at a time) send random frame sequences cut at
    random points, then close or reset; fixed seeds, so a failure repeats."""
    async def one(seed):
        r = random.Random(seed)
        key = base64.b64encode(r.randbytes(16)).decode()
        rd, w = await asyncio.open_connection(HOST, tc.srv.port)
        try:
            w.write((f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            data = b"".join(_random_frame(r) for _ in range(r.randint(1, 30)))
            pos = 0
            while pos < len(data):
                n = r.randint(1, 200)
                w.write(data[pos:pos + n])
                pos += n
                if r.random() < 0.3:
                    await asyncio.sleep(0.001)
            try:
                await asyncio.wait_for(rd.read(1 << 20), 0.2)
            except (asyncio.TimeoutError, ConnectionError):
                pass
        finally:
            w.transport.abort() if r.random() < 0.5 else w.close()
    for base in range(0, 300, 50):
        await asyncio.gather(*(one(s) for s in range(base, base + 50)))


SCOPE_201 = "s" * 201
S = "s:bad"

# (name, runner, server flags or None for the shared server)
CASES = [
    # not JSON / not an object
    ("malformed_json", ws_error('{"op":"ping","id":1'), None),
    ("trailing_garbage", ws_error('{"op":"ping","id":1} x'), None),
    ("empty_text_frame", ws_error(""), None),
    ("json_array", ws_error('[{"op":"ping","id":1}]'), None),
    ("json_number", ws_error("42"), None),
    ("json_string", ws_error('"ping"'), None),
    ("json_null", ws_error("null"), None),
    ("json_true", ws_error("true"), None),
    # op
    ("missing_op", ws_error({"id": 1}, id=1), None),
    ("op_not_string", ws_error({"op": 5, "id": 2}, id=2), None),
    ("op_null", ws_error({"op": None, "id": 3}, id=3), None),
    ("op_object", ws_error({"op": {"x": 1}, "id": "o"}, id="o"), None),
    ("unknown_op", ws_error({"op": "fly", "id": "x"}, id="x"), None),
    ("op_wrong_case", ws_error({"op": "PING", "id": 4}, id=4), None),
    # scope
    ("subscribe_missing_scope", ws_error({"op": "subscribe", "id": 5}, id=5), None),
    ("scope_null", ws_error({"op": "subscribe", "scope": None, "id": 6}, id=6), None),
    ("scope_not_string", ws_error({"op": "subscribe", "scope": 7, "id": 7}, id=7), None),
    ("scope_array", ws_error({"op": "subscribe", "scope": ["a"], "id": 8}, id=8), None),
    ("scope_empty", ws_error({"op": "subscribe", "scope": "", "id": 9}, id=9), None),
    ("scope_201_bytes", ws_error({"op": "subscribe", "scope": SCOPE_201, "id": 10}, id=10), None),
    ("scope_space", ws_error({"op": "subscribe", "scope": "a b", "id": 11}, id=11), None),
    ("scope_tab", ws_error({"op": "subscribe", "scope": "a\tb", "id": 12}, id=12), None),
    ("scope_control_char", ws_error({"op": "subscribe", "scope": "a\x01b", "id": 13}, id=13), None),
    ("scope_newline", ws_error({"op": "subscribe", "scope": "a\nb", "id": 14}, id=14), None),
    ("scope_del_char", ws_error({"op": "subscribe", "scope": "a\x7fb", "id": 15}, id=15), None),
    ("scope_non_ascii", ws_error({"op": "subscribe", "scope": "café", "id": 16}, id=16), None),
    ("scope_nul_char", ws_error('{"op":"subscribe","scope":"a\\u0000b","id":17}', id=17), None),
    ("unsubscribe_missing_scope", ws_error({"op": "unsubscribe", "id": 18}, id=18), None),
    ("unsubscribe_bad_scope", ws_error({"op": "unsubscribe", "scope": "a b", "id": 19}, id=19), None),
    ("presence_missing_scope", ws_error({"op": "presence", "id": 20}, id=20), None),
    ("presence_bad_scope", ws_error({"op": "presence", "scope": SCOPE_201, "id": 21}, id=21), None),
    ("emit_missing_scope", ws_error({"op": "emit", "data": 1, "id": 22}, id=22), None),
    ("emit_bad_scope", ws_error({"op": "emit", "scope": "a b", "data": 1, "id": 23}, id=23), None),
    # id
    ("id_object", ws_error({"op": "ping", "id": {}}), None),
    ("id_array", ws_error({"op": "ping", "id": [1]}), None),
    ("id_float", ws_error({"op": "ping", "id": 1.5}), None),
    ("id_bool", ws_error({"op": "ping", "id": True}), None),
    ("id_object_on_subscribe", ws_error({"op": "subscribe", "scope": S, "id": {"a": 1}}), None),
    # other fields
    ("meta_string", ws_error({"op": "subscribe", "scope": S, "meta": "x", "id": 30}, id=30), None),
    ("meta_array", ws_error({"op": "subscribe", "scope": S, "meta": [1], "id": 31}, id=31), None),
    ("meta_number", ws_error({"op": "subscribe", "scope": S, "meta": 3, "id": 32}, id=32), None),
    ("echo_string", ws_error({"op": "subscribe", "scope": S, "echo": "yes", "id": 33}, id=33), None),
    ("echo_number", ws_error({"op": "subscribe", "scope": S, "echo": 1, "id": 34}, id=34), None),
    ("paths_not_array", ws_error({"op": "emit", "scope": GUARD, "paths": "a", "data": 1, "id": 35}, id=35),
     None),
    ("paths_non_string", ws_error({"op": "emit", "scope": GUARD, "paths": ["a", 1], "id": 36}, id=36), None),
    ("paths_null_element", ws_error({"op": "emit", "scope": GUARD, "paths": [None], "id": 37}, id=37), None),
    ("paths_object", ws_error({"op": "emit", "scope": GUARD, "paths": {"a": 1}, "id": 38}, id=38), None),
    ("audience_not_array", ws_error({"op": "emit", "scope": GUARD, "audience": "bob", "id": 39}, id=39), None),
    ("audience_non_string", ws_error({"op": "emit", "scope": GUARD, "audience": [1], "id": 40}, id=40), None),
    ("many_bad_requests", many_bad_requests_in_a_row, None),
    # frames
    ("binary_frame", ws_close([F(b"\x00\x01\x02", OP_BINARY)], 1003), None),
    ("binary_frame_with_json", ws_close([F(b'{"op":"ping","id":1}', OP_BINARY)], 1003), None),
    ("invalid_utf8", ws_close([F(b"\xff\xfe\xfd")], 1007), None),
    ("invalid_utf8_in_json_string", ws_close([F(b'{"op":"ping","id":"\xc3\x28"}')], 1007), None),
    ("overlong_utf8", ws_close([F(b'{"op":"ping","id":"\xc0\xaf"}')], 1007), None),
    ("utf8_surrogate", ws_close([F(b'{"op":"ping","id":"\xed\xa0\x80"}')], 1007), None),
    ("invalid_utf8_fragmented", ws_close([F(b'{"op":"ping","id":"', fin=False),
                                          F(b'\xff"}', OP_CONT)], 1007), None),
    # empty continuation frames cost a parse each and no bytes: capped at
    # 1024 frames per message (one client used to keep a core busy)
    ("empty_continuation_flood", ws_close([F(b'{"op":', fin=False)] +
                                          [F(b"", OP_CONT, fin=False)] * 2000, 1009), None),
    ("utf8_char_split_across_fragments", ws_reply([F('{"op":"ping","id":"é'.encode()[:-1], fin=False),
                                                   F('é"}'.encode()[-3:], OP_CONT)], "é"), None),
    ("over_size_message", ws_close([F(ping_of_size(MAX_MESSAGE + 1))], 1009), None),
    ("exactly_max_message", ws_reply([F(ping_of_size(MAX_MESSAGE))], ping_id(MAX_MESSAGE)), None),
    ("over_size_fragmented", ws_close([F(ping_of_size(MAX_MESSAGE + 1)[:600], fin=False),
                                       F(ping_of_size(MAX_MESSAGE + 1)[600:], OP_CONT)], 1009), None),
    ("exactly_max_fragmented", ws_reply([F(ping_of_size(MAX_MESSAGE)[:512], fin=False),
                                         F(ping_of_size(MAX_MESSAGE)[512:], OP_CONT)], ping_id(MAX_MESSAGE)),
     None),
    ("over_size_default_64k", ws_close([F(ping_of_size(65537))], 1009), ("--client-emit",)),
    ("exactly_default_64k", ws_reply([F(ping_of_size(65536))], ping_id(65536)), ("--client-emit",)),
    # RFC 6455 5.1: a server fails the connection on an unmasked frame (1002)
    ("rfc6455_unmasked_client_frame", ws_close([F(b'{"op":"ping","id":1}', mask=False)], 1002), None),
    ("reserved_opcode", ws_close([F(b"x", 3)], 1002), None),
    ("reserved_control_opcode", ws_close([F(b"x", 11)], 1002), None),
    ("rsv_bits_without_extension", ws_close([F(b'{"op":"ping","id":1}', rsv=4)], 1002), None),
    ("control_frame_too_long", ws_close([F(b"p" * 126, OP_PING)], 1002), None),
    ("fragmented_control_frame", ws_close([F(b"p", OP_PING, fin=False)], 1002), None),
    ("continuation_without_start", ws_close([F(b"abc", OP_CONT)], 1002), None),
    ("new_message_inside_fragmented", ws_close([F(b'{"op":', fin=False), F(b'{"op":"ping"}')], 1002), None),
    ("client_close_frame", client_close_frame, None),
    ("close_frame_bad_code", ws_close([F(b"\x03\xe7", OP_CLOSE)], 1002), None),
    ("close_frame_one_byte", ws_close([F(b"\x03", OP_CLOSE)], 1002), None),
    ("close_frame_bad_utf8_reason", ws_close([F(b"\x03\xe8\xff", OP_CLOSE)], 1007), None),
    ("ping_frame_gets_pong", ping_frame_gets_pong, None),
    ("ping_between_fragments", ws_reply([F(b'{"op":"ping",', fin=False), F(b"x", OP_PING),
                                         F(b'"id":"frag"}', OP_CONT)], "frag"), None),
    ("frame_split_byte_by_byte", frame_split_byte_by_byte, None),
    ("random_frames_from_many_clients", random_frames_from_many_clients, None),
    ("upgrade_head_in_pieces", upgrade_head_in_pieces, None),
    ("upgrade_after_http_request", upgrade_after_http_request, None),
    ("upgrade_wrong_version", upgrade_request(426, version="8", header=("sec-websocket-version", "13")), None),
    ("upgrade_without_key", upgrade_request(400, key=False), None),
    ("upgrade_http_1_0", upgrade_request(400, http="HTTP/1.0"), None),
    ("upgrade_head_too_large", upgrade_request(431, pad=9000), None),
    # RFC 6455 section 4.2.1 and RFC 7230: what must not get a 101
    ("upgrade_key_not_base64", upgrade_request(400, key_value="!" * 22 + "=="), None),
    ("upgrade_key_not_16_bytes", upgrade_request(400, key_value=base64.b64encode(b"x" * 15).decode()), None),
    ("upgrade_key_twice", upgrade_request(400, extra=("Sec-WebSocket-Key: " + base64.b64encode(b"y" * 16).decode(),)),
     None),
    ("upgrade_without_host", upgrade_request(400, host=False), None),
    ("upgrade_line_without_colon", upgrade_request(400, extra=("no colon here",)), None),
    ("upgrade_obs_fold", upgrade_request(400, extra=("X-A: 1", " folded")), None),
    ("upgrade_nul_in_header", upgrade_request(400, extra=("X-A: a\x00b",)), None),
    ("upgrade_two_subprotocol_headers_combined",
     upgrade_request(101, extra=("Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: scopecast.v1"),
                     header=("sec-websocket-protocol", "scopecast.v1")), None),
    ("upgrade_absolute_form_target", upgrade_request(101, target="ws://127.0.0.1:{port}/ws"), None),
    # connections
    ("abrupt_disconnect_while_subscribed", abrupt_disconnect_while_subscribed, None),
    ("abrupt_disconnect_mid_frame", abrupt_disconnect_mid_frame, None),
    ("abrupt_disconnect_with_queued_events", abrupt_disconnect_with_queued_events, None),
    ("partial_http_request", raw_socket(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpg", then_read=False), None),
    ("garbage_instead_of_http", raw_socket(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200)),
     None),
    ("upgrade_on_other_path", upgrade_refused("/other", statuses=(404,)), None),
    ("upgrade_on_root_path", upgrade_refused("/", statuses=(404,)), None),
    ("upgrade_on_ws_subpath", upgrade_refused("/ws/x", statuses=(404,)), None),
    ("upgrade_on_api_path", upgrade_refused("/api/emit", statuses=(404,)), None),
    ("only_unknown_subprotocols", upgrade_refused(subprotocols=("chat", "mqtt")), None),
    # HTTP
    ("http_emit_malformed_json", http_error("POST", "/api/emit", b'{"scope":', 400, "bad_request"), None),
    ("http_emit_empty_body", http_error("POST", "/api/emit", b"", 400, "bad_request"), None),
    ("http_close_empty_body", http_error("POST", "/api/close", b"", 400, "bad_request"), None),
    ("http_emit_invalid_utf8", http_error("POST", "/api/emit", b'{"scope":"a","data":"\xff"}', 400, "bad_request"),
     None),
    ("http_emit_missing_scope", http_error("POST", "/api/emit", {"data": 1}, 400, "bad_request"), None),
    ("http_emit_bad_scope", http_error("POST", "/api/emit", {"scope": "a b"}, 400, "bad_request"), None),
    ("http_emit_scope_201", http_error("POST", "/api/emit", {"scope": SCOPE_201}, 400, "bad_request"), None),
    ("http_emit_scope_not_string", http_error("POST", "/api/emit", {"scope": 1}, 400, "bad_request"), None),
    ("http_emit_paths_not_array", http_error("POST", "/api/emit", {"scope": GUARD, "paths": "p"}, 400,
                                             "bad_request"), None),
    ("http_emit_paths_non_string", http_error("POST", "/api/emit", {"scope": GUARD, "paths": [1]}, 400,
                                              "bad_request"), None),
    ("http_emit_audience_not_array", http_error("POST", "/api/emit", {"scope": GUARD, "audience": "x"}, 400,
                                                "bad_request"), None),
    ("http_emit_origin_not_string", http_error("POST", "/api/emit", {"scope": GUARD, "origin": 5}, 400,
                                               "bad_request"), None),
    ("http_emit_empty_batch", http_error("POST", "/api/emit", [], 400, "bad_request"), None),
    ("http_emit_bad_batch_item", http_error("POST", "/api/emit", [{"scope": GUARD}, {"scope": ""}], 400,
                                            "bad_request"), None),
    ("http_emit_too_large", http_error("POST", "/api/emit", b'{"scope":"guard","data":"' + b"x" * 1048576 + b'"}',
                                       413, "too_large"), None),
    ("http_close_scope_not_string", http_error("POST", "/api/close", {"scope": 5}, 400, "bad_request"), None),
    ("http_close_user_not_string", http_error("POST", "/api/close", {"user": []}, 400, "bad_request"), None),
    ("http_close_bad_scope", http_error("POST", "/api/close", {"user": "u", "scope": "a b"}, 400, "bad_request"),
     None),
    ("http_close_not_object", http_error("POST", "/api/close", [], 400, "bad_request"), None),
    ("http_close_malformed", http_error("POST", "/api/close", b"{", 400, "bad_request"), None),
    ("http_presence_missing_scope", http_error("GET", "/api/presence", None, 400, "bad_request"), None),
    ("http_wrong_method", http_error("GET", "/api/emit", None, 405, "method_not_allowed"), None),
    ("http_wrong_method_close", http_error("PUT", "/api/close", {}, 405, "method_not_allowed"), None),
    ("http_missing_api_key", http_error("POST", "/api/emit", {"scope": GUARD}, 401, "unauthorized", key=None),
     None),
    ("http_wrong_api_key", http_error("POST", "/api/emit", {"scope": GUARD}, 401, "unauthorized", key="nope"),
     None),
    ("http_api_key_without_bearer", http_error("GET", "/api/stats", None, 401, "unauthorized", key=None,
                                               headers={"Authorization": API_KEY}), None),
    ("http_unknown_api_path", http_error("GET", "/api/unknown", None, 404, "not_found"), None),
]


class BadInput(ScopecastTestCase):
    _shared = None

    @classmethod
    def shared(cls):
        if cls._shared is None or not cls._shared.alive():
            cls._shared = Server(SHARED_ARGS, name="shared")
            cls._shared.start()
        return cls._shared

    @classmethod
    def tearDownClass(cls):
        if cls._shared is not None:
            s = cls._shared
            cls._shared = None
            s.stop()
            if s.stop_error:
                raise AssertionError(f"shared server: {s.stop_error}\n{s.log_tail(60)}")

    def setUp(self):
        self.servers = []
        self.clients = []
        args = getattr(getattr(self, self._testMethodName), "case_args", None)
        if args is not None:
            self.srv = self.start_server(*args)
        else:
            self.srv = self.shared()
            self.servers.append(self.srv)  # for the log on failure; stopped in tearDownClass

    async def asyncSetUp(self):
        self.guard = await self.client(name="guard")
        await self.guard.subscribe(GUARD)
        self.guard_seq = await self.marker(GUARD, self.guard)

    async def check_survivors(self, name):
        self.assertTrue(self.srv.alive(), f"the server died during case {name}")
        seq = await self.marker(GUARD, self.guard)
        self.assertEqual(seq, self.guard_seq + 1, f"case {name} emitted into {GUARD!r}")
        self.assertEqual((await self.guard.call("ping"))["op"], "pong")
        # the case subscribed nothing: `scopes` counts scopes with a subscriber
        deadline = time.monotonic() + 2
        while True:
            st = await self.srv.stats()
            if st.get("scopes") == 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        self.assertEqual(st.get("scopes"), 1, f"after case {name}: only {GUARD!r} has subscribers: {st}")
        # and new clients are served
        fresh = await self.client(name="fresh")
        self.assertEqual((await fresh.call("ping"))["op"], "pong")


def _make(name, runner):
    async def test(self):
        await runner(self)
        await self.check_survivors(name)
    test.__name__ = f"test_{name}"
    return test


for _i, (_name, _runner, _args) in enumerate(CASES):
    _t = _make(_name, _runner)
    _t.case_args = _args
    setattr(BadInput, f"test_{_i:03d}_{_name}", _t)


if __name__ == "__main__":
    assert len(CASES) >= 25
    main()
