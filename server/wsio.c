/*
 * The WebSocket transport: the upgrade handshake, frame parsing, socket
 * writes and the closing handshake, on the service thread's libev loop.
 *
 * Why not lws for this part: with lws 4.1 each WebSocket connection costs a
 * wsi (~1 KB), a receive buffer of rx_buffer_size allocated at the upgrade
 * (~1 KB) and ~0.5 KB more, 3.2 KB per idle subscribed connection against
 * 1.5 KB for uWebSockets.js (bench S5); every write also went through
 * lws_write's bookkeeping and the wsi's cache lines (bench S3). Here an idle
 * connection is our sc_wsconn_t and its subscriptions, nothing else: frames
 * are parsed straight from the thread's read buffer, and a connection holds
 * a buffer only while a message spans reads or the socket refuses bytes.
 * lws keeps everything else (HTTP API, static files): a new connection is
 * peeked at (MSG_PEEK), and anything but a WebSocket upgrade is handed to
 * lws untouched.
 *
 * States of a connection: OPEN, then CLOSING (our close frame is queued),
 * then LINGER (close frame sent and our side shut down: input is read and
 * dropped until the peer closes or the deadline passes), then destroyed.
 */
#define _GNU_SOURCE /* memmem */
#include "server.h"
#include "log.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define HS_MAX 8192              /* request head of an upgrade */
#define HS_TIMEOUT_US 10000000   /* to send the whole head */
#define HS_RETRY_S 0.005         /* re-peek an incomplete head after this, */
#define HS_RETRY_MAX_S 0.2       /* doubling up to this (slow senders) */
#define CLOSE_WAIT_US 5000000    /* for the peer to take our close */

/* A new connection whose first request has not been seen whole yet. */
typedef struct sc_hs {
    int fd;
    sc_svc_t *svc;
    ev_io io;
    ev_timer retry;
    double retry_s;       /* the next re-peek delay */
    int64_t deadline_us;
    struct sc_hs *next, *prev;
} sc_hs_t;

/* ---- helpers ------------------------------------------------------------- */

/* Strict UTF-8 (RFC 3629: no overlongs, surrogates or code points past
 * U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((b & 0xe0) == 0xc0)
            k = 1, cp = b & 0x1f, min = 0x80;
        else if ((b & 0xf0) == 0xe0)
            k = 2, cp = b & 0x0f, min = 0x800;
        else if ((b & 0xf8) == 0xf0)
            k = 3, cp = b & 0x07, min = 0x10000;
        else
            return false;
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

static void unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint8_t off)
{
    size_t i = 0;
    /* byte-wise until the mask phase is 0, then 8 bytes at a time */
    for (; i < n && ((off + i) & 3); i++)
        p[i] ^= mask[(off + i) & 3];
    uint32_t m32;
    memcpy(&m32, mask, 4);
    uint64_t m64 = ((uint64_t)m32 << 32) | m32;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= m64;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] ^= mask[(off + i) & 3];
}

/* ---- socket writes ----------------------------------------------------- */

void sc__wsio_want_write(sc_wsconn_t *c, bool on)
{
    if (c->write_armed == on)
        return;
    c->write_armed = on;
    ev_io_stop(c->svc->loop, &c->io);
    ev_io_modify(&c->io, on ? EV_READ | EV_WRITE : EV_READ);
    ev_io_start(c->svc->loop, &c->io);
}

/* Sends what is held back. Returns 0 (all sent or the socket is full) or
 * -1 (the connection is broken). */
static int flush_out(sc_wsconn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            sc__wsio_want_write(c, true);
            return 0;
        }
        return -1;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    return 0;
}

int sc__wsio_send(sc_wsconn_t *c, const void *data, size_t n)
{
    const uint8_t *p = data;
    if (c->out_off == c->out_len) {
        while (n > 0) {
            ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                p += w;
                n -= (size_t)w;
                continue;
            }
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            return -1;
        }
        if (n == 0)
            return 0;
    }
    /* Hold the rest: at most one packed write plus replies, as the packer
     * adds nothing while something is held. */
    size_t held = c->out_len - c->out_off;
    uint8_t *o = malloc(held + n);
    if (!o)
        return -1;
    if (held)
        memcpy(o, c->out + c->out_off, held);
    memcpy(o + held, p, n);
    free(c->out);
    c->out = o;
    c->out_len = held + n;
    c->out_off = 0;
    sc__wsio_want_write(c, true);
    return 0;
}

/* ---- closing ----------------------------------------------------------- */

void sc__wsio_destroy(sc_wsconn_t *c)
{
    sc_svc_t *svc = c->svc;
    ev_io_stop(svc->loop, &c->io);
    close(c->fd);
    free(c->out);
    free(c->cbuf);
    sc__ws_free(c);
}

/* Our close frame is out: shut our side and wait for the peer's FIN. */
static void linger(sc_wsconn_t *c)
{
    c->state = SC_WS_LINGER;
    shutdown(c->fd, SHUT_WR);
    sc__wsio_want_write(c, false);
}

int sc__wsio_close(sc_wsconn_t *c, int code, const char *why)
{
    if (c->state != SC_WS_OPEN)
        return 0;
    uint8_t f[2 + 2 + 123];
    size_t wl = why ? strlen(why) : 0;
    if (wl > 123)
        wl = 123;
    f[0] = 0x88;
    f[1] = (uint8_t)(2 + wl);
    f[2] = (uint8_t)(code >> 8);
    f[3] = (uint8_t)code;
    if (wl)
        memcpy(f + 4, why, wl);
    c->state = SC_WS_CLOSING;
    c->close_deadline_us = sc__now_us() + CLOSE_WAIT_US;
    if (sc__wsio_send(c, f, 4 + wl) < 0)
        return -1;
    if (c->out_off == c->out_len)
        linger(c);
    return 0;
}

/* ---- receiving ----------------------------------------------------------- */

/* Close codes a peer may send (RFC 6455 7.4). */
static bool close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

static int on_control(sc_wsconn_t *c, uint8_t op, uint8_t *p, size_t n)
{
    switch (op) {
    case 0x9: { /* ping: answer with the same payload, after queued replies */
        uint8_t f[2 + 125];
        f[0] = 0x8a;
        f[1] = (uint8_t)n;
        memcpy(f + 2, p, n);
        sc__ws_queue_frame(c, f, 2 + n);
        return 0;
    }
    case 0xa:
        return 0; /* pong: last_seen_us already moved */
    default: { /* close: answer with its code, then close */
        unsigned code = 1000;
        if (n == 1)
            return sc__wsio_close(c, 1002, "close frame of one byte");
        if (n >= 2) {
            code = (unsigned)p[0] << 8 | p[1];
            if (!close_code_valid(code))
                return sc__wsio_close(c, 1002, "invalid close code");
            if (!utf8_valid(p + 2, n - 2))
                return sc__wsio_close(c, 1007, "invalid UTF-8 in close reason");
        }
        sc_log(SC_LOG_DEBUG, "session %s: client closed (%u)",
               c->info.session_id, code);
        return sc__wsio_close(c, (int)code, "");
    }
    }
}

/* A whole text message. */
static int on_message(sc_wsconn_t *c, const uint8_t *msg, size_t n)
{
    if (!utf8_valid(msg, n))
        return sc__wsio_close(c, 1007, "invalid UTF-8");
    sc__ws_message(c, (const char *)msg, n);
    return 0;
}

/* Parses a frame header from c->hdr. Returns 1 (parsed: frame fields set),
 * 0 (needs more bytes) or the result of failing the connection (-1/0 with
 * the state no longer OPEN). */
static int parse_header(sc_wsconn_t *c, size_t *need)
{
    const uint8_t *h = c->hdr;
    size_t hl = 2;
    if (c->hdr_len < 2) {
        *need = 2;
        return 0;
    }
    uint8_t len7 = h[1] & 0x7f;
    hl += len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    hl += (h[1] & 0x80) ? 4 : 0;
    if (c->hdr_len < hl) {
        *need = hl;
        return 0;
    }
    bool fin = h[0] & 0x80;
    uint8_t op = h[0] & 0x0f;
    if (h[0] & 0x70)
        return sc__wsio_close(c, 1002, "reserved bits set");
    if (!(h[1] & 0x80))
        return sc__wsio_close(c, 1002, "client frames must be masked");
    uint64_t len = len7;
    const uint8_t *q = h + 2;
    if (len7 == 126) {
        len = (uint64_t)q[0] << 8 | q[1];
        q += 2;
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | q[i];
        q += 8;
        if (len >> 63)
            return sc__wsio_close(c, 1002, "bad payload length");
    }
    if (op >= 0x8) {
        if (op > 0xa)
            return sc__wsio_close(c, 1002, "reserved opcode");
        if (!fin)
            return sc__wsio_close(c, 1002, "fragmented control frame");
        if (len > 125)
            return sc__wsio_close(c, 1002, "control frame too long");
    } else {
        if (op > 0x2)
            return sc__wsio_close(c, 1002, "reserved opcode");
        if (op == 0x0 && !c->in_message)
            return sc__wsio_close(c, 1002, "continuation without a message");
        if (op != 0x0 && c->in_message)
            return sc__wsio_close(c, 1002, "new message inside a fragmented one");
        if (op == 0x2)
            return sc__wsio_close(c, 1003, "binary frames are not accepted");
        if (sc_buf_len(&c->rx) + len > c->svc->srv->cfg->max_message)
            return sc__wsio_close(c, 1009, "message too big");
        c->in_message = !fin;
    }
    memcpy(c->mask, q, 4);
    c->op = op;
    c->fin = fin;
    c->left = len;
    c->mask_off = 0;
    c->in_frame = true;
    c->hdr_len = 0;
    return 1;
}

/* Consumes `n` bytes of input (unmasked in place). Returns -1 when the
 * connection must be destroyed now, 0 otherwise. */
static int parse(sc_wsconn_t *c, uint8_t *p, size_t n)
{
    while (n > 0 && c->state == SC_WS_OPEN) {
        if (!c->in_frame) {
            size_t need = 2;
            for (;;) {
                int r = parse_header(c, &need);
                if (r < 0)
                    return -1;
                if (r > 0 || c->state != SC_WS_OPEN)
                    break;
                if (n == 0)
                    return 0; /* header continues in the next read */
                size_t take = need - c->hdr_len;
                if (take > n)
                    take = n;
                memcpy(c->hdr + c->hdr_len, p, take);
                c->hdr_len += (uint8_t)take;
                p += take;
                n -= take;
            }
            if (c->state != SC_WS_OPEN)
                return 0;
        }
        size_t take = c->left < n ? (size_t)c->left : n;
        unmask(p, take, c->mask, c->mask_off);
        c->mask_off = (uint8_t)((c->mask_off + take) & 3);
        c->left -= take;
        bool done = c->left == 0;
        if (c->op >= 0x8) {
            if (!done || c->cbuf_len) { /* a control frame split by reads */
                if (!c->cbuf && !(c->cbuf = malloc(125)))
                    return -1;
                memcpy(c->cbuf + c->cbuf_len, p, take);
                c->cbuf_len += (uint8_t)take;
            }
            if (done) {
                c->in_frame = false;
                c->last_seen_us = sc__now_us();
                int r = c->cbuf_len ? on_control(c, c->op, c->cbuf, c->cbuf_len)
                                    : on_control(c, c->op, p, take);
                free(c->cbuf);
                c->cbuf = NULL;
                c->cbuf_len = 0;
                if (r < 0)
                    return -1;
            }
        } else if (done && c->fin && sc_buf_len(&c->rx) == 0) {
            /* the whole message is in this read: no copy */
            c->in_frame = false;
            c->last_seen_us = sc__now_us();
            if (on_message(c, p, take) < 0)
                return -1;
        } else {
            sc_buf_put(&c->rx, p, take);
            if (c->rx.err != SC_OK)
                return -1; /* out of memory */
            if (done) {
                c->in_frame = false;
                c->last_seen_us = sc__now_us();
                if (c->fin) {
                    int r = on_message(c, (const uint8_t *)sc_buf_str(&c->rx),
                                       sc_buf_len(&c->rx));
                    /* idle connections keep no buffer between messages */
                    sc_buf_deinit(&c->rx);
                    if (r < 0)
                        return -1;
                }
            }
        }
        p += take;
        n -= take;
    }
    return 0;
}

/* Reads up to this many buffers per readiness: a publisher's burst is
 * taken in one loop pass, so the writes that follow carry more events per
 * connection; then other connections get their turn. */
#define READS_PER_PASS 8

static int can_read(sc_wsconn_t *c)
{
    sc_svc_t *svc = c->svc;
    for (int i = 0; i < READS_PER_PASS; i++) {
        ssize_t r = recv(c->fd, svc->rbuf, SC_READ_CHUNK, 0);
        if (r == 0)
            return -1; /* the peer is gone (or answered our close) */
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                       ? 0
                       : -1;
        if (c->state == SC_WS_OPEN && parse(c, svc->rbuf, (size_t)r) < 0)
            return -1;
        /* (closing: what arrives is read and dropped) */
        if ((size_t)r < SC_READ_CHUNK)
            return 0; /* drained */
    }
    return 0;
}

static int can_write(sc_wsconn_t *c)
{
    if (flush_out(c) < 0)
        return -1;
    if (c->out_off < c->out_len)
        return 0; /* still full */
    sc__wsio_want_write(c, false);
    if (c->state == SC_WS_CLOSING) {
        linger(c);
        return 0;
    }
    if (c->state != SC_WS_OPEN)
        return 0;
    return sc__ws_writeable(c);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    sc_wsconn_t *c = (sc_wsconn_t *)((char *)w - offsetof(sc_wsconn_t, io));
    if ((revents & EV_WRITE) && can_write(c) < 0) {
        sc__wsio_destroy(c);
        return;
    }
    if ((revents & EV_READ) && can_read(c) < 0)
        sc__wsio_destroy(c);
}

void sc__wsio_start(sc_wsconn_t *c, int fd)
{
    c->fd = fd;
    c->state = SC_WS_OPEN;
    ev_io_init(&c->io, on_io, fd, EV_READ);
    ev_io_start(c->svc->loop, &c->io);
}

/* ---- the upgrade ------------------------------------------------------- */

/* The value of header `name` (with its colon, lower case) in a request
 * head, trimmed; NULL when absent. */
static const char *header(const char *h, size_t hl, const char *name,
                          size_t *vlen)
{
    size_t nl = strlen(name);
    const char *end = h + hl;
    for (const char *line = memchr(h, '\n', hl); line && line + 1 < end;
         line = memchr(line + 1, '\n', (size_t)(end - line - 1))) {
        const char *s = line + 1;
        if ((size_t)(end - s) > nl && strncasecmp(s, name, nl) == 0) {
            const char *v = s + nl, *e = v;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            e = v;
            while (e < end && *e != '\r' && *e != '\n')
                e++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *vlen = (size_t)(e - v);
            return v;
        }
    }
    return NULL;
}

/* Whether a comma-separated header value lists `token` (any case). */
static bool has_token(const char *v, size_t vl, const char *token)
{
    size_t tl = strlen(token);
    const char *end = v + vl;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == ','))
            v++;
        const char *e = v;
        while (e < end && *e != ',')
            e++;
        const char *t = e;
        while (t > v && t[-1] == ' ')
            t--;
        if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
            return true;
        v = e;
    }
    return false;
}

static void refuse(int fd, unsigned status, const char *reason,
                   const char *code, const char *message, const char *extra)
{
    char body[256], out[640];
    int bl = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\"}",
                      code, message);
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %u %s\r\ncontent-type: application/json\r\n"
                     "content-length: %d\r\n%sconnection: close\r\n\r\n%s",
                     status, reason, bl, extra ? extra : "", body);
    if (n > 0 && (size_t)n < sizeof out)
        (void)send(fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    /* FIN after the answer; the client reads it and closes */
    shutdown(fd, SHUT_WR);
    close(fd);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* ?token=... from the request target, percent-decoded; NULL if none. */
static char *query_token(const char *q, size_t ql)
{
    const char *end = q + ql;
    while (q < end) {
        const char *e = memchr(q, '&', (size_t)(end - q));
        if (!e)
            e = end;
        if ((size_t)(e - q) > 6 && memcmp(q, "token=", 6) == 0) {
            const char *v = q + 6;
            size_t vl = (size_t)(e - v);
            if (vl > SC_AUTH_TOKEN_MAX)
                vl = SC_AUTH_TOKEN_MAX;
            char *t = malloc(vl + 1), *o = t;
            if (!t)
                return NULL;
            for (size_t i = 0; i < vl; i++) {
                int h1, h2;
                if (v[i] == '%' && i + 2 < vl && (h1 = hexval(v[i + 1])) >= 0 &&
                    (h2 = hexval(v[i + 2])) >= 0) {
                    *o++ = (char)(h1 << 4 | h2);
                    i += 2;
                } else {
                    *o++ = v[i];
                }
            }
            *o = '\0';
            return t;
        }
        q = e + 1;
    }
    return NULL;
}

/* Answers a WebSocket upgrade whose head (`h`, `hl` bytes) has been read
 * off the socket: 101 and a new connection, or an error status. */
static void upgrade(sc_svc_t *svc, int fd, const char *h, size_t hl)
{
    const char *sp1 = memchr(h, ' ', hl);
    const char *eol = memchr(h, '\r', hl);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(h + hl - sp1 - 1))
                          : NULL;
    if (!sp1 || !sp2 || !eol || sp2 > eol ||
        strncmp(sp2 + 1, "HTTP/1.1", 8) != 0) {
        refuse(fd, 400, "Bad Request", "bad_request", "malformed request",
               NULL);
        return;
    }
    const char *target = sp1 + 1;
    size_t tl = (size_t)(sp2 - target);
    const char *qm = memchr(target, '?', tl);
    size_t pl = qm ? (size_t)(qm - target) : tl;
    if (pl != 3 || memcmp(target, "/ws", 3) != 0) {
        refuse(fd, 404, "Not Found", "not_found",
               "WebSocket endpoint is /ws", NULL);
        return;
    }
    size_t vl = 0, kl = 0, cl = 0, pvl = 0;
    const char *ver = header(h, hl, "sec-websocket-version:", &vl);
    const char *key = header(h, hl, "sec-websocket-key:", &kl);
    const char *conn = header(h, hl, "connection:", &cl);
    const char *proto = header(h, hl, "sec-websocket-protocol:", &pvl);
    if (!ver || vl != 2 || memcmp(ver, "13", 2) != 0) {
        refuse(fd, 426, "Upgrade Required", "bad_request",
               "WebSocket version 13 required",
               "sec-websocket-version: 13\r\n");
        return;
    }
    if (!key || kl != 24 || !conn || !has_token(conn, cl, "upgrade")) {
        refuse(fd, 400, "Bad Request", "bad_request",
               "not a valid WebSocket upgrade", NULL);
        return;
    }
    bool with_proto = proto && has_token(proto, pvl, "scopecast.v1");
    if (proto && !with_proto) {
        refuse(fd, 400, "Bad Request", "bad_request",
               "subprotocol scopecast.v1 required", NULL);
        return;
    }
    if (atomic_load(&svc->srv->draining) ||
        sc__total_connections(svc->srv) >=
            (size_t)svc->srv->cfg->max_connections) {
        refuse(fd, 503, "Service Unavailable", "unavailable",
               atomic_load(&svc->srv->draining) ? "shutting down"
                                                : "too many connections",
               NULL);
        return;
    }
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char kg[24 + sizeof guid];
    memcpy(kg, key, 24);
    memcpy(kg + 24, guid, sizeof guid - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdl = 0;
    char acc[64];
    if (!EVP_Digest(kg, 24 + sizeof guid - 1, md, &mdl, EVP_sha1(), NULL)) {
        refuse(fd, 500, "Internal Server Error", "internal", "sha1", NULL);
        return;
    }
    EVP_EncodeBlock((unsigned char *)acc, md, (int)mdl);
    char out[256];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                     "connection: Upgrade\r\nsec-websocket-accept: %s\r\n%s\r\n",
                     acc,
                     with_proto ? "sec-websocket-protocol: scopecast.v1\r\n"
                                : "");
    if (send(fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
        close(fd); /* a fresh socket takes 200 bytes unless it is gone */
        return;
    }
    char *token = qm ? query_token(qm + 1, tl - pl - 1) : NULL;
    if (!sc__ws_open(svc, fd, token))
        close(fd);
}

/* ---- new connections ----------------------------------------------------- */

static void hs_free(sc_hs_t *hs)
{
    sc_svc_t *svc = hs->svc;
    ev_io_stop(svc->loop, &hs->io);
    ev_timer_stop(svc->loop, &hs->retry);
    if (hs->prev)
        hs->prev->next = hs->next;
    else
        svc->hs = hs->next;
    if (hs->next)
        hs->next->prev = hs->prev;
    free(hs);
}

static void to_lws(sc_hs_t *hs)
{
    sc_svc_t *svc = hs->svc;
    int fd = hs->fd;
    hs_free(hs);
    if (!lws_adopt_socket_vhost(svc->vhost, fd))
        close(fd); /* lws refused it (out of fds or memory) */
}

/* Looks at what the client sent so far without taking it. */
static void hs_peek(sc_hs_t *hs)
{
    sc_svc_t *svc = hs->svc;
    char *b = (char *)svc->rbuf;
    ssize_t n = recv(hs->fd, b, HS_MAX, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        close(hs->fd);
        hs_free(hs);
        return;
    }
    size_t k = (size_t)n < 4 ? (size_t)n : 4;
    if (memcmp(b, "GET ", k) != 0) {
        to_lws(hs); /* not a GET: HTTP API (or garbage) for lws */
        return;
    }
    const char *end = memmem(b, (size_t)n, "\r\n\r\n", 4);
    if (!end) {
        if (n >= HS_MAX) {
            int fd = hs->fd;
            hs_free(hs);
            /* take what was peeked: closing with unread input would reset
             * the connection and lose the answer */
            (void)recv(fd, b, (size_t)n, 0);
            refuse(fd, 431, "Request Header Fields Too Large", "bad_request",
                   "request head too large", NULL);
            return;
        }
        /* Incomplete: the bytes stay readable, so look again shortly
         * rather than spin on the level-triggered watcher. */
        ev_io_stop(svc->loop, &hs->io);
        ev_timer_set(&hs->retry, hs->retry_s, 0.);
        ev_timer_start(svc->loop, &hs->retry);
        if (hs->retry_s < HS_RETRY_MAX_S)
            hs->retry_s *= 2;
        return;
    }
    size_t hl = (size_t)(end - b) + 4, ul = 0;
    const char *up = header(b, hl, "upgrade:", &ul);
    if (!up || !has_token(up, ul, "websocket")) {
        to_lws(hs); /* plain HTTP */
        return;
    }
    int fd = hs->fd;
    hs_free(hs);
    /* take exactly the head; a first frame sent early stays queued */
    size_t got = 0;
    while (got < hl) {
        ssize_t r = recv(fd, b + got, hl - got, 0);
        if (r <= 0 && !(r < 0 && errno == EINTR)) {
            close(fd);
            return;
        }
        if (r > 0)
            got += (size_t)r;
    }
    upgrade(svc, fd, b, hl);
}

static void hs_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    hs_peek((sc_hs_t *)((char *)w - offsetof(sc_hs_t, io)));
}

static void hs_on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    sc_hs_t *hs = (sc_hs_t *)((char *)w - offsetof(sc_hs_t, retry));
    ev_io_start(loop, &hs->io);
}

void sc__wsio_accept(sc_svc_t *svc, int fd)
{
    sc_hs_t *hs = calloc(1, sizeof *hs);
    if (!hs) {
        close(fd);
        return;
    }
    hs->fd = fd;
    hs->svc = svc;
    hs->deadline_us = sc__now_us() + HS_TIMEOUT_US;
    hs->retry_s = HS_RETRY_S;
    ev_io_init(&hs->io, hs_on_io, fd, EV_READ);
    ev_timer_init(&hs->retry, hs_on_retry, HS_RETRY_S, 0.);
    hs->next = svc->hs;
    if (svc->hs)
        svc->hs->prev = hs;
    svc->hs = hs;
    ev_io_start(svc->loop, &hs->io);
    /* the request usually came with the connection */
    hs_peek(hs);
}

void sc__wsio_tick(sc_svc_t *svc, int64_t now)
{
    for (sc_hs_t *hs = svc->hs, *next; hs; hs = next) {
        next = hs->next;
        if (now >= hs->deadline_us) {
            close(hs->fd);
            hs_free(hs);
        }
    }
}

void sc__wsio_shutdown(sc_svc_t *svc)
{
    while (svc->hs) {
        close(svc->hs->fd);
        hs_free(svc->hs);
    }
    while (svc->conns)
        sc__wsio_destroy(svc->conns);
}
