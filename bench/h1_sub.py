#!/usr/bin/env python3
"""One WebSocket subscriber to scope/topic ch1 for scenario H1 (bench/run.sh).

H1 measures HTTP publish requests per second; this subscriber makes every
publish an actual delivery on every server, and counts what arrives so that a
server answering 2xx without publishing would show. It reads in batches
(every --read-ms) so that it costs little CPU on the load generator's core.

  h1_sub.py --port N --proto scopecast|raw [--scope ch1] [--read-ms 2]

scopecast: /ws with subprotocol scopecast.v1 and a subscribe op (presence
off, as in the other scenarios); raw (uWS peer and nchan): GET /sub/<scope>,
every text/binary message is one event. Prints "READY" once subscribed, and
on SIGTERM or SIGINT, or when the server closes the connection, one line
  SUB delivered=N dropped=D closed=0|1 bytes=B
(dropped: scopecast's "dropped" notices' counts) and exits.
"""
import argparse
import base64
import os
import signal
import socket
import struct
import sys
import time

stop = False


def on_signal(_sig, _frm):
    global stop
    stop = True


def frame(opcode, payload):
    """A masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return hdr + mask + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--proto", choices=["scopecast", "raw"], required=True)
    ap.add_argument("--scope", default="ch1")
    ap.add_argument("--read-ms", type=float, default=2.0)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    s = socket.create_connection((a.host, a.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    path = "/ws" if a.proto == "scopecast" else "/sub/" + a.scope
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if a.proto == "scopecast":
        req += "Sec-WebSocket-Protocol: scopecast.v1\r\n"
    s.sendall((req + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            sys.exit("h1_sub: connection closed during the handshake")
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        sys.exit("h1_sub: handshake refused: %r" % head[:200])

    ready = a.proto != "scopecast"
    if a.proto == "scopecast":
        s.sendall(frame(1, ('{"op":"subscribe","scope":"%s","id":1,'
                            '"presence":false}' % a.scope).encode()))
    else:
        print("READY", flush=True)

    delivered = dropped = nbytes = 0
    closed = 0
    s.settimeout(0.2)
    pos = 0
    while not stop:
        # parse every whole frame in buf[pos:]
        n = len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            ln = buf[pos + 1] & 0x7F
            h = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = struct.unpack_from("!H", buf, pos + 2)[0]
                h = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = struct.unpack_from("!Q", buf, pos + 2)[0]
                h = 10
            if n - pos < h + ln:
                break
            op = b0 & 0x0F
            p0 = pos + h
            pos = p0 + ln
            if op in (1, 2, 0):
                if not (b0 & 0x80):
                    continue  # a fragment: counted at its final frame
                if a.proto == "scopecast":
                    if buf.startswith(b'{"op":"event"', p0):
                        delivered += 1
                        nbytes += ln
                    elif not ready and buf.find(b'"op":"subscribed"', p0, pos) >= 0:
                        ready = True
                        print("READY", flush=True)
                    elif buf.find(b'"op":"dropped"', p0, pos) >= 0:
                        k = buf.find(b'"count":', p0, pos)
                        if k >= 0:
                            e = k + 8
                            while e < pos and 48 <= buf[e] <= 57:
                                e += 1
                            dropped += int(buf[k + 8:e] or b"0")
                    elif buf.find(b'"op":"error"', p0, pos) >= 0:
                        print("h1_sub: server said %r" % buf[p0:pos][:200],
                              file=sys.stderr, flush=True)
                else:
                    delivered += 1
                    nbytes += ln
            elif op == 9:  # ping
                s.sendall(frame(10, buf[p0:pos]))
            elif op == 8:
                closed = 1
        buf = buf[pos:]
        pos = 0
        if closed:
            break
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        if not d:
            closed = 1
            break
        buf += d
        if a.read_ms > 0:
            time.sleep(a.read_ms / 1000.0)
    if closed and not stop:
        print("h1_sub: the server closed the connection", file=sys.stderr,
              flush=True)
    print("SUB delivered=%d dropped=%d closed=%d bytes=%d"
          % (delivered, dropped, closed, nbytes), flush=True)


if __name__ == "__main__":
    main()
