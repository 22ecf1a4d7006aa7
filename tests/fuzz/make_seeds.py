#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets (docs/FUZZING.md).

tests/fuzz/corpus/<target>/<name>: small, meaningful inputs for each target
in its input format (see the comment at the top of each fuzz_*.c). The
files are committed; scripts/fuzz.sh merges them into the working corpus in
the build directory on every run. Re-run this script after changing the
seeds (it rewrites the seed-* files and keeps the others, e.g. regression
inputs named regress-*):
    python3 tests/fuzz/make_seeds.py
"""
import base64
import hashlib
import hmac
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
SECRET = b"scopecast-fuzz-secret"  # as server/fuzz_token.c
NOW = 1700000000  # as server/fuzz_token.c


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def clean(target):
    d = os.path.join(CORPUS, target)
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f.startswith("seed-"):
                os.unlink(os.path.join(d, f))


# ---- sc_fuzz_decode: one WebSocket text message ---------------------------
def decode():
    t = "sc_fuzz_decode"
    write(t, "subscribe", '{"op":"subscribe","id":1,"scope":"doc:1",'
          '"meta":{"name":"ana","c":[1,2]},"echo":true,"presence":false}')
    write(t, "unsubscribe", '{"op":"unsubscribe","id":"u-2","scope":"doc:1"}')
    write(t, "emit", '{"op":"emit","id":3,"scope":"doc:1","paths":["a","b.c"],'
          '"data":{"x":1.5e3,"y":[true,null,"\\u00e9"]},"audience":["ana"]}')
    write(t, "emit-bigint", '{"op":"emit","scope":"s","data":'
          '[123456789012345678901234567890,-9223372036854775809,0.5]}')
    write(t, "emit-deep", '{"op":"emit","scope":"s","data":' + "[" * 40 +
          "]" * 40 + "}")
    write(t, "presence", '{"op":"presence","id":4,"scope":"room:*"}')
    write(t, "ping", '{"op":"ping","id":null}')
    write(t, "refresh", '{"op":"refresh","id":5,"token":"a.b.c"}')
    write(t, "unknown-op", '{"op":"nope","id":6}')
    write(t, "bad-json", '{"op":"emit","scope":"s","data":[1.,NaN]}')
    write(t, "surrogates", '{"op":"emit","scope":"s","data":'
          '"\\ud83d\\ude00 \\udc00 \\u0000"}')


# ---- sc_fuzz_wsframe: 4 setting bytes, then client frames -----------------
def mask(payload, key=b"\x01\x02\x03\x04"):
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(op, payload, fin=True, key=b"\x01\x02\x03\x04", masked=True):
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    mbit = 0x80 if masked else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if masked:
        return head + key + mask(payload, key)
    return head + payload


def wsframe():
    t = "sc_fuzz_wsframe"
    # settings: limits[b0 & 7] (0,1,2,125,126,1000,65535,65536), read sizes
    # from bits 3-4 of b0, a seed in b1-b3
    write(t, "frames", b"\x0d\x12\x34\x56" + frame(1, b"hello") +
          frame(1, b"ab", fin=False) + frame(9, b"p") + frame(0, b"c") +
          frame(8, b"\x03\xe8"))
    write(t, "split", b"\x18\x00\x00\x07" + frame(1, b"hello") +
          frame(10, b""))
    write(t, "close-reason", b"\x05\x00\x00\x01" +
          frame(8, b"\x03\xe9going away \xc3\xa9"))
    write(t, "len16", b"\x06\x11\x22\x33" + frame(1, b"x" * 300))
    write(t, "len64", b"\x07\x01\x02\x03" + frame(2, b"y" * 70000)[:40])
    write(t, "utf8-split", b"\x1d\x00\x10\x01" +
          frame(1, "d\u00e9j\u00e0 \U0001f600".encode()[:6], fin=False) +
          frame(0, "d\u00e9j\u00e0 \U0001f600".encode()[6:]))
    write(t, "bad-utf8", b"\x05\x00\x00\x03" + frame(1, b"\xed\xa0\x80"))
    write(t, "unmasked", b"\x05\x00\x00\x05" + frame(1, b"hi", masked=False))
    write(t, "too-big", b"\x01\x00\x00\x09" + frame(1, b"abc"))
    write(t, "ctrl-fragmented", b"\x05\x00\x00\x0b" +
          frame(9, b"p", fin=False))


# ---- sc_fuzz_upgrade: 1 setting byte, then the first bytes of a connection
def upgrade():
    t = "sc_fuzz_upgrade"
    ws = ("GET /ws?token=a%2Eb&x=1 HTTP/1.1\r\nHost: h\r\n"
          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
          "Sec-WebSocket-Version: 13\r\n"
          "Sec-WebSocket-Protocol: scopecast.v1\r\n\r\n")
    write(t, "ws", b"\x05" + ws.encode())
    write(t, "http", b"\x00GET /api/stats HTTP/1.1\r\nHost: h\r\n\r\n")
    write(t, "ws-lower", b"\x04" + (
        "GET /ws HTTP/1.1\r\nhost: h:8080\r\nupgrade: WebSocket\r\n"
        "connection: keep-alive, upgrade\r\nsec-websocket-key: "
        "AAAAAAAAAAAAAAAAAAAAAA==\r\nsec-websocket-version: 13\r\n"
        "origin: http://h:8080\r\n\r\n").encode())
    write(t, "ws-no-key", b"\x01GET /ws HTTP/1.1\r\nHost: h\r\n"
          b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Version: 13\r\n\r\n")
    write(t, "ws-version-8", b"\x02" + ws.replace(
        "Version: 13", "Version: 8").encode())
    write(t, "ws-not-found", b"\x03" + ws.replace(
        "GET /ws?", "GET /nope?").encode())
    write(t, "post", b"\x00POST /api/emit HTTP/1.1\r\nHost: h\r\n"
          b"Content-Length: 15\r\n\r\n{\"scope\":\"s\"}")
    write(t, "incomplete", b"\x05GET /ws?token=abc HTTP/1.1\r\nHost: h\r\n")
    write(t, "folded", b"\x05GET /ws HTTP/1.1\r\nHost: h\r\n"
          b"Upgrade:\r\n websocket\r\nConnection: Upgrade\r\n\r\n")
    write(t, "token-escapes", b"\x04" + ws.replace(
        "token=a%2Eb&x=1", "x=%&token=%41%zz+b&token=2").encode())


# ---- sc_fuzz_http_body: 1 mode byte (0 emit, 1 close, 2 demo, 3 built) ----
def http_body():
    t = "sc_fuzz_http_body"
    emit = [
        ("single", '{"scope":"doc:1","paths":["a"],"data":{"x":1},'
         '"origin":"api","audience":["ana"],"extra":true}'),
        ("minimal", '{"scope":"s"}'),
        ("nulls", '{"scope":"s","paths":null,"data":null,"origin":null,'
         '"audience":null}'),
        ("batch", '[{"scope":"a","data":[1,2.5,"x"]},{"scope":"b",'
         '"audience":[]},{"scope":"c","paths":[]}]'),
        ("batch-bad", '[{"scope":"a"},{"scope":"b c"}]'),
        ("empty-batch", "[]"),
        ("bigint", '{"scope":"s","data":{"n":123456789012345678901234567890}}'),
        ("nul-path", '{"scope":"s","paths":["a\\u0000b"]}'),
    ]
    for name, body in emit:
        write(t, "emit-" + name, b"\x00" + body.encode())
    close = [
        ("all", "{}"),
        ("scope", '{"scope":"doc:1"}'),
        ("user", '{"user":"ana"}'),
        ("both", '{"user":"ana","scope":"doc:1","x":null}'),
        ("empty-user", '{"user":""}'),
        ("not-object", "[]"),
    ]
    for name, body in close:
        write(t, "close-" + name, b"\x01" + body.encode())
    demo = [
        ("name", '{"name":"ana"}'),
        ("unicode", '{"name":"Jos\\u00e9 \\ud83d\\ude00"}'),
        ("control", '{"name":"a\\nb"}'),
        ("long", '{"name":"' + "n" * 65 + '"}'),
    ]
    for name, body in demo:
        write(t, "demo-" + name, b"\x02" + body.encode())
    # built: strings cut at NUL: scope/name, user, then presence sessions;
    # the bytes are also read as numbers for the answer encoders
    write(t, "built", b"\x03doc:1\x00ana\x00s1\x00s2\x00s3\x00s4")
    write(t, "built-bad", b"\x03bad scope\x00\x00" + bytes(range(1, 48)))


# ---- sc_fuzz_token: 1 mode byte, strings cut at NUL -----------------------
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def token(payload, header=None, secret=SECRET):
    if header is None:
        header = {"alg": "HS256", "typ": "JWT"}
    h = b64u(json.dumps(header, separators=(",", ":")).encode())
    p = b64u(json.dumps(payload, separators=(",", ":")).encode())
    sig = hmac.new(secret, h + b"." + p, hashlib.sha256).digest()
    return h + b"." + p + b"." + b64u(sig)


def token_seeds():
    t = "sc_fuzz_token"
    # mode 0: tokens as a client sends them, then scopes to ask about
    raw = [
        ("sub", {"sub": "ana"}),
        ("exp", {"sub": "ana", "iat": NOW, "exp": NOW + 3600}),
        ("expired", {"sub": "ana", "exp": NOW}),
        ("rights", {"sub": "bob", "scopes": ["doc:*", "room:1"],
                    "emit": ["doc:1*"], "exp": NOW + 1.5}),
        ("emit-all", {"sub": "carl", "emit": True, "scopes": ["*"]}),
    ]
    for name, payload in raw:
        write(t, "raw-" + name, b"\x00" + token(payload) +
              b"\x00doc:1\x00room:1\x00doc:")
    write(t, "raw-alg-none", b"\x00" +
          token({"sub": "ana"}, {"alg": "none"})[:-43])
    write(t, "raw-hs512", b"\x00" + token({"sub": "ana"},
                                          {"alg": "HS512", "typ": "JWT"}))
    write(t, "raw-bad-sig", b"\x00" + token({"sub": "ana"}, secret=b"other"))
    # mode 1: claims signed under the standard header, then scopes
    claims = [
        ("full", '{"sub":"ana","iat":1700000000,"exp":1700003600,'
         '"nbf":1699999999,"scopes":["doc:*","a"],"emit":["doc:1"]}'),
        ("exp-float", '{"sub":"ana","exp":1700000000.5,"nbf":-1e3}'),
        ("exp-huge", '{"sub":"ana","exp":9007199254740993}'),
        ("exp-string", '{"sub":"ana","exp":"1800000000"}'),
        ("emit-bad", '{"sub":"ana","emit":"yes","scopes":[1]}'),
        ("sub-empty", '{"sub":"","scopes":[]}'),
        ("dup-keys", '{"sub":"a","sub":"b","emit":false,"emit":true}'),
        ("unicode", '{"sub":"Jos\\u00e9 \\ud83d\\ude00","scopes":["*"]}'),
    ]
    for name, c in claims:
        write(t, "claims-" + name, b"\x01" + c.encode() + b"\x00doc:1\x00a")
    # mode 2: header and claims, both signed
    heads = [
        ("typ-lower", '{"alg":"HS256","typ":"jwt"}'),
        ("crit", '{"alg":"HS256","crit":["exp"],"exp":1}'),
        ("no-typ", '{"alg":"HS256","kid":"k1"}'),
        ("alg-none", '{"alg":"none","typ":"JWT"}'),
        ("typ-other", '{"alg":"HS256","typ":"JOSE"}'),
    ]
    for name, h in heads:
        write(t, "header-" + name, b"\x02" + h.encode() +
              b'\x00{"sub":"ana","exp":1700000001}\x00doc:1')
    # mode 3: 8 bytes of ttl, 1 flags byte (1 emit_all, 2 small ttl), sub
    write(t, "sign", b"\x03" + struct.pack(">q", 3600) + b"\x01ana\x00doc:1")
    write(t, "sign-no-ttl", b"\x03" + struct.pack(">q", 0) + b"\x00bob")
    # the largest ttl whose exp (NOW + ttl) verifies: 2^53 - 1
    write(t, "sign-max-ttl", b"\x03" + struct.pack(">q", 2**53 - 1 - NOW) +
          b"\x00bob")
    # mode 4: the configured key, then an Authorization header value
    write(t, "key", b"\x04s3cret\x00Bearer s3cret")
    write(t, "key-case", b"\x04s3cret\x00bEaReR\t s3cret \t")
    # mode 5: a pattern list, a scope or Origin value, a Host value
    write(t, "list-scopes", b"\x05 doc:* , room:1,,*x\x00doc:7")
    write(t, "list-origins", b"\x05https://*.example.com, http://LOCALHOST:*"
          b"\x00http://localhost:8080\x00localhost:8080")
    write(t, "same-origin", b"\x05\x00https://Example.com:8443"
          b"\x00example.com:8443")


# ---- sc_fuzz_http_req: 1 setting byte, then the bytes of a connection
def http_req():
    t = "sc_fuzz_http_req"
    emit = (b"POST /api/emit HTTP/1.1\r\nHost: h\r\nContent-Type: "
            b"application/json\r\nContent-Length: 23\r\n\r\n"
            b'{"scope":"s","data":1}\n')
    get = b"GET /api/presence?scope=doc%3A1+x HTTP/1.1\r\nHost: h\r\n\r\n"
    write(t, "pipeline", b"\x40" + get + emit + emit + b"GET /healthz HTTP/1.1"
          b"\r\nConnection: close\r\n\r\n")
    write(t, "pipeline-cut1-skip", b"\x48" + emit + get)
    write(t, "chunked", b"\x53POST /api/emit HTTP/1.1\r\nTransfer-Encoding: "
          b"chunked\r\nAuthorization: Bearer k\r\n\r\n5\r\n{\"sco\r\n"
          b"3;x=y\r\npe\"\r\n0\r\nTrailer: 1\r\n\r\n" + get)
    write(t, "http10", b"\x02GET /metrics HTTP/1.0\r\nConnection: keep-alive"
          b"\r\n\r\nHEAD / HTTP/1.0\r\n\r\n")
    write(t, "two-lengths", b"\x01POST / HTTP/1.1\r\nContent-Length: 1\r\n"
          b"Content-Length: 2\r\n\r\nab")
    write(t, "length-and-chunked", b"\x01POST / HTTP/1.1\r\nContent-Length: 3"
          b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    write(t, "te-gzip", b"\x01POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n"
          b"\r\nabc")
    write(t, "folded", b"\x03GET / HTTP/1.1\r\nX-A: 1\r\n b\r\n\r\n")
    write(t, "absolute", b"\x00GET http://h:1/api/stats?a=1#f HTTP/1.1\r\n"
          b"X-Forwarded-For: 1.2.3.4\r\nForwarded:\r\n\r\n")
    write(t, "upgrade", b"\x04GET /api/emit HTTP/1.1\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    write(t, "expect", b"\x05POST /api/emit HTTP/1.1\r\nExpect: 100-continue"
          b"\r\nContent-Length: 2\r\n\r\n{}")
    write(t, "big-body", b"\x00POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\n"
          + b"x" * 40)


def main():
    for t in ("sc_fuzz_decode", "sc_fuzz_wsframe", "sc_fuzz_upgrade",
              "sc_fuzz_http_body", "sc_fuzz_token", "sc_fuzz_http_req"):
        clean(t)
    decode()
    wsframe()
    upgrade()
    http_body()
    token_seeds()
    http_req()


if __name__ == "__main__":
    main()
