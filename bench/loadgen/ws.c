/* WebSocket client side: the upgrade request, masked client frames, and a
 * streaming parser of server frames that works in place on the read buffer
 * and only copies a frame header (or a message's first bytes) that straddles
 * two reads. */
#include "lg.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

void ws_mask(uint8_t *p, size_t n, const uint8_t mask[4])
{
    uint32_t m32;
    memcpy(&m32, mask, 4);
    uint64_t m64 = ((uint64_t)m32 << 32) | m32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= m64;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] ^= mask[i & 3];
}

size_t ws_frame_hdr(uint8_t *out, int opcode, size_t n, uint8_t mask[4])
{
    size_t h = 0;
    out[h++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        out[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)(n >> (8 * i));
    }
    uint32_t m = rnd32();
    memcpy(mask, &m, 4);
    memcpy(out + h, mask, 4);
    return h + 4;
}

/* out must have n + 14 bytes */
size_t ws_frame(uint8_t *out, int opcode, const uint8_t *p, size_t n)
{
    uint8_t mask[4];
    size_t h = ws_frame_hdr(out, opcode, n, mask);
    memcpy(out + h, p, n);
    ws_mask(out + h, n, mask);
    return h + n;
}

int ws_handshake_req(char *out, size_t cap, const char *path, const char *proto)
{
    /* A fixed key: we do not check Sec-WebSocket-Accept (the 101 status is
     * enough for a benchmark client talking to known servers). */
    return snprintf(out, cap,
                    "GET %s HTTP/1.1\r\n"
                    "Host: %s:%d\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n"
                    "%s%s%s"
                    "\r\n",
                    path, cfg.host, cfg.port,
                    proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "",
                    proto ? "\r\n" : "");
}

/* Blocking-ish write of a small control frame or request on a non-blocking
 * socket: waits (briefly) for room. Only used for tiny writes. */
int send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {fd, POLLOUT, 0};
            if (poll(&pf, 1, 1000) <= 0)
                return -1;
            continue;
        }
        return -1;
    }
    return 0;
}

static void control_frame(conn_t *c, int op, const uint8_t *p, size_t n)
{
    if (op == 9) { /* ping -> pong */
        uint8_t out[160];
        size_t l = ws_frame(out, 10, p, n);
        if (c->kind != K_STALL)
            send_all(c->fd, out, l);
    } else if (op == 8) {
        c->state = S_CLOSED;
    }
}

/* Hands payload bytes [p, p+n) of the current frame to the protocol. start:
 * these are the first bytes of a message; end: the last ones. */
static void deliver(conn_t *c, const uint8_t *p, size_t n, int start, int end)
{
    if (proto_is_stream() || c->kind == K_PUB) {
        proto_stream(c, p, n);
        return;
    }
    if (start && end) { /* the common case: whole message in place */
        proto_message(c, c->msg_op, p, n, n);
        return;
    }
    if (start) {
        c->pre_len = 0;
        c->msg_len = 0;
    }
    if (!c->pre)
        c->pre = malloc(PRE_MAX);
    size_t room = PRE_MAX - c->pre_len;
    size_t k = n < room ? n : room;
    memcpy(c->pre + c->pre_len, p, k);
    c->pre_len = (uint16_t)(c->pre_len + k);
    c->msg_len += n;
    if (end)
        proto_message(c, c->msg_op, c->pre, c->pre_len, c->msg_len);
}

static size_t hdr_need(const uint8_t *h)
{
    size_t need = 2;
    uint8_t l = h[1] & 0x7f;
    if (l == 126)
        need += 2;
    else if (l == 127)
        need += 8;
    if (h[1] & 0x80)
        need += 4; /* servers never mask, but be tolerant */
    return need;
}

static void start_frame(conn_t *c, const uint8_t *h)
{
    c->fin = h[0] >> 7;
    c->op = h[0] & 0x0f;
    uint64_t l = h[1] & 0x7f;
    if (l == 126)
        l = ((uint64_t)h[2] << 8) | h[3];
    else if (l == 127) {
        l = 0;
        for (int i = 0; i < 8; i++)
            l = (l << 8) | h[2 + i];
    }
    c->f_len = c->f_rem = l;
    c->ctrl_len = 0;
    if (c->op == 1 || c->op == 2)
        c->msg_op = c->op;
}

int ws_feed(conn_t *c, uint8_t *p, size_t n)
{
    while (n > 0) {
        if (c->f_rem == 0 && c->hdr_len == 0) {
            /* at a frame boundary: parse the header in place if we can */
            if (n >= 2) {
                size_t need = hdr_need(p);
                if (n >= need) {
                    start_frame(c, p);
                    p += need;
                    n -= need;
                    if (c->op >= 8) {
                        if (c->f_len > 125)
                            return -1;
                        if (n >= c->f_len) {
                            control_frame(c, c->op, p, c->f_len);
                            p += c->f_len;
                            n -= c->f_len;
                            c->f_rem = 0;
                            if (c->state == S_CLOSED)
                                return -1;
                        }
                        continue;
                    }
                    if (c->f_len == 0) {
                        deliver(c, p, 0, c->op != 0, c->fin);
                        continue;
                    }
                    if (n >= c->f_len) { /* the whole frame is here */
                        size_t l = c->f_len;
                        deliver(c, p, l, c->op != 0, c->fin);
                        p += l;
                        n -= l;
                        c->f_rem = 0;
                        continue;
                    }
                    continue; /* partial payload: handled below */
                }
            }
            /* partial header: keep it */
            memcpy(c->hdr, p, n);
            c->hdr_len = (uint8_t)n;
            return 0;
        }
        if (c->hdr_len > 0) {
            /* completing a header split across reads */
            while (n > 0 && (c->hdr_len < 2 || c->hdr_len < hdr_need(c->hdr))) {
                c->hdr[c->hdr_len++] = *p++;
                n--;
            }
            if (c->hdr_len < 2 || c->hdr_len < hdr_need(c->hdr))
                return 0;
            c->hdr_len = 0;
            start_frame(c, c->hdr);
            if (c->op >= 8 && c->f_len > 125)
                return -1;
            if (c->f_len == 0) {
                if (c->op >= 8)
                    control_frame(c, c->op, NULL, 0);
                else
                    deliver(c, p, 0, c->op != 0, c->fin);
                if (c->state == S_CLOSED)
                    return -1;
            }
            continue;
        }
        /* inside a frame's payload */
        size_t k = n < c->f_rem ? n : (size_t)c->f_rem;
        if (c->op >= 8) {
            memcpy(c->ctrl + c->ctrl_len, p, k);
            c->ctrl_len = (uint8_t)(c->ctrl_len + k);
            c->f_rem -= k;
            if (c->f_rem == 0) {
                control_frame(c, c->op, c->ctrl, c->ctrl_len);
                if (c->state == S_CLOSED)
                    return -1;
            }
        } else {
            int start = (c->f_rem == c->f_len) && c->op != 0;
            c->f_rem -= k;
            deliver(c, p, k, start, c->f_rem == 0 && c->fin);
        }
        p += k;
        n -= k;
    }
    return 0;
}
