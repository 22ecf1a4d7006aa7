/*
 * RFC 6455 framing (see wsframe.h).
 *
 * The receive parser is a small state machine over a byte stream cut
 * anywhere: a header split by reads is gathered in rx->hdr (at most 14
 * bytes), then the payload is unmasked in place as it arrives (the mask
 * phase carries over between reads). Only what must outlive a read is
 * copied: the fragments of a text message that spans frames or reads (into
 * rx->msg) and a control frame split by reads (into rx->cbuf).
 *
 * The checks and their order, the close codes and the reason strings are
 * part of the protocol (docs/PROTOCOL.md, "Close codes") and are covered by
 * tests/protocol/test_wsframe.c and the integration tests' framing cases.
 */
#include "wsframe.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

#define MAX_CONTROL_PAYLOAD 125
#define MAX_CLOSE_REASON 123

size_t sc_ws_frame_header(uint8_t out[SC_WS_MAX_HEADER], size_t payload_len)
{
    uint64_t n = (uint64_t)payload_len;

    out[0] = 0x81; /* FIN | text */
    if (n <= 125) {
        out[1] = (uint8_t)n;
        return 2;
    }
    if (n <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(n >> (56 - 8 * i));
    return 10;
}

size_t sc_ws_frame_extent(const uint8_t *b, size_t avail, uint64_t *frame_len)
{
    if (avail < 2)
        return 0;
    uint64_t n = b[1] & 0x7f;
    size_t h;
    if (n == 126) {
        if (avail < 4)
            return 0;
        n = (uint64_t)b[2] << 8 | b[3];
        h = 4;
    } else if (n == 127) {
        if (avail < 10)
            return 0;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | b[2 + i];
        h = 10;
    } else {
        h = 2;
    }
    *frame_len = n > UINT64_MAX - h ? UINT64_MAX : n + h;
    return h;
}

size_t sc_ws_control_frame(uint8_t out[SC_WS_MAX_CONTROL_FRAME],
                           enum sc_ws_opcode op, const void *payload, size_t n)
{
    if (n > MAX_CONTROL_PAYLOAD)
        n = MAX_CONTROL_PAYLOAD;
    out[0] = (uint8_t)(0x80 | ((unsigned)op & 0x0f));
    out[1] = (uint8_t)n;
    if (n > 0)
        memcpy(out + 2, payload, n);
    return 2 + n;
}

size_t sc_ws_close_frame(uint8_t out[SC_WS_MAX_CONTROL_FRAME], unsigned code,
                         const char *reason)
{
    size_t wl = reason != NULL ? strlen(reason) : 0, back = 0;

    if (wl > MAX_CLOSE_REASON) {
        wl = MAX_CLOSE_REASON;
        /* not inside a UTF-8 sequence: back off over continuation bytes
         * (at most 3, the longest tail of a valid sequence) */
        while (back < 3 && wl > 0 &&
               ((unsigned char)reason[wl] & 0xc0) == 0x80) {
            wl--;
            back++;
        }
    }
    out[0] = 0x80 | SC_WS_OP_CLOSE;
    out[1] = (uint8_t)(2 + wl);
    out[2] = (uint8_t)(code >> 8);
    out[3] = (uint8_t)code;
    if (wl > 0)
        memcpy(out + 4, reason, wl);
    return 4 + wl;
}

bool sc_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

void sc_ws_rx_init(sc_ws_rx_t *rx)
{
    memset(rx, 0, sizeof(*rx));
    sc_buf_init(&rx->msg);
}

void sc_ws_rx_deinit(sc_ws_rx_t *rx)
{
    if (rx == NULL)
        return;
    sc_buf_deinit(&rx->msg);
    free(rx->cbuf);
    rx->cbuf = NULL;
    rx->cbuf_len = 0;
}

/* Sets *fail and returns SC_WS_RX_FAIL. */
static int failed(sc_ws_fail_t *fail, unsigned code, const char *reason)
{
    if (fail != NULL) {
        fail->code = code;
        fail->reason = reason;
    }
    return SC_WS_RX_FAIL;
}

/* Unmasks `n` bytes at `p` whose first byte has mask phase `off`. */
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

/* Parses the frame header gathered in rx->hdr. Returns 1 (parsed: the
 * frame fields are set), 0 (*need = the header's length so far known: more
 * bytes are needed) or SC_WS_RX_FAIL. */
static int parse_header(sc_ws_rx_t *rx, size_t max_message, size_t *need,
                        sc_ws_fail_t *fail)
{
    const uint8_t *h = rx->hdr, *q = h + 2;
    size_t hl = 2;

    if (rx->hdr_len < 2) {
        *need = 2;
        return 0;
    }
    uint8_t len7 = h[1] & 0x7f;
    hl += len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    hl += (h[1] & 0x80) ? 4 : 0;
    if (rx->hdr_len < hl) {
        *need = hl;
        return 0;
    }
    bool fin = h[0] & 0x80;
    uint8_t op = h[0] & 0x0f;
    if (h[0] & 0x70)
        return failed(fail, 1002, "reserved bits set");
    if (!(h[1] & 0x80))
        return failed(fail, 1002, "client frames must be masked");
    uint64_t len = len7;
    if (len7 == 126) {
        len = (uint64_t)q[0] << 8 | q[1];
        q += 2;
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | q[i];
        q += 8;
        if (len >> 63)
            return failed(fail, 1002, "bad payload length");
    }
    if (op >= 0x8) {
        if (op > 0xa)
            return failed(fail, 1002, "reserved opcode");
        if (!fin)
            return failed(fail, 1002, "fragmented control frame");
        if (len > MAX_CONTROL_PAYLOAD)
            return failed(fail, 1002, "control frame too long");
    } else {
        if (op > 0x2)
            return failed(fail, 1002, "reserved opcode");
        if (op == SC_WS_OP_CONT && !rx->in_message)
            return failed(fail, 1002, "continuation without a message");
        if (op != SC_WS_OP_CONT && rx->in_message)
            return failed(fail, 1002, "new message inside a fragmented one");
        if (op == SC_WS_OP_BINARY)
            return failed(fail, 1003, "binary frames are not accepted");
        /* len < 2^63 and the buffer's length is far below: no overflow */
        if (sc_buf_len(&rx->msg) + len > max_message)
            return failed(fail, 1009, "message too big");
        /* empty continuation frames cost a parse each and no bytes: a
         * message has at most SC_WS_MAX_FRAGMENTS frames */
        rx->fragments = op == SC_WS_OP_CONT ? rx->fragments + 1 : 1;
        if (rx->fragments > SC_WS_MAX_FRAGMENTS)
            return failed(fail, 1009, "message in too many fragments");
        rx->in_message = !fin;
    }
    memcpy(rx->mask, q, 4);
    rx->op = op;
    rx->fin = fin;
    rx->left = len;
    rx->mask_off = 0;
    rx->in_frame = true;
    rx->hdr_len = 0;
    return 1;
}

/* A whole control frame, `n` payload bytes at `p`: checked, then handed
 * over. Returns fn's value or SC_WS_RX_FAIL. */
static int on_control(uint8_t op, const uint8_t *p, size_t n, sc_ws_msg_fn fn,
                      void *ud, sc_ws_fail_t *fail)
{
    sc_ws_msg_t m = {(enum sc_ws_opcode)op, p, n, 0};

    if (op == SC_WS_OP_CLOSE) {
        m.close_code = 1000;
        if (n == 1)
            return failed(fail, 1002, "close frame of one byte");
        if (n >= 2) {
            m.close_code = (unsigned)p[0] << 8 | p[1];
            if (!sc_ws_close_code_valid(m.close_code))
                return failed(fail, 1002, "invalid close code");
            if (!sc_utf8_valid(p + 2, n - 2))
                return failed(fail, 1007, "invalid UTF-8 in close reason");
            m.data = p + 2;
            m.len = n - 2;
        }
    }
    return fn(ud, &m);
}

/* A whole text message. Returns fn's value or SC_WS_RX_FAIL. */
static int on_message(const uint8_t *p, size_t n, sc_ws_msg_fn fn, void *ud,
                      sc_ws_fail_t *fail)
{
    sc_ws_msg_t m = {SC_WS_OP_TEXT, p, n, 0};

    if (!sc_utf8_valid(p, n))
        return failed(fail, 1007, "invalid UTF-8");
    return fn(ud, &m);
}

/* Takes bytes of a frame header from the input until the header is whole.
 * Returns 1 (parsed), 0 (the input ran out first) or SC_WS_RX_FAIL. */
static int take_header(sc_ws_rx_t *rx, uint8_t **p, size_t *n,
                       size_t max_message, sc_ws_fail_t *fail)
{
    size_t need = 2;

    for (;;) {
        int r = parse_header(rx, max_message, &need, fail);
        if (r != 0)
            return r;
        if (*n == 0)
            return 0; /* the header continues in the next read */
        size_t take = need - rx->hdr_len;
        if (take > *n)
            take = *n;
        memcpy(rx->hdr + rx->hdr_len, *p, take);
        rx->hdr_len = (uint8_t)(rx->hdr_len + take);
        *p += take;
        *n -= take;
    }
}

/* fn (or the message check) stopped the feed with `r`, `rest` bytes of
 * the input not looked at. */
static int stopped(sc_ws_rx_t *rx, size_t rest, int r)
{
    rx->left = rest; /* between frames: see sc_ws_rx_rest */
    return r;
}

int sc_ws_rx_feed(sc_ws_rx_t *rx, uint8_t *p, size_t n, size_t max_message,
                  sc_ws_msg_fn fn, void *ud, sc_ws_fail_t *fail)
{
    while (n > 0) {
        if (!rx->in_frame) {
            int r = take_header(rx, &p, &n, max_message, fail);
            if (r <= 0)
                return r;
        }
        /* (a header may end the input: its frame goes on with take == 0) */
        size_t take = rx->left < n ? (size_t)rx->left : n;
        unmask(p, take, rx->mask, rx->mask_off);
        rx->mask_off = (uint8_t)((rx->mask_off + take) & 3);
        rx->left -= take;
        bool done = rx->left == 0;
        if (rx->op >= SC_WS_OP_CLOSE) {
            const uint8_t *payload = p;
            size_t plen = take;
            if ((!done && take > 0) || rx->cbuf_len > 0) {
                /* a control frame split by reads */
                if (rx->cbuf == NULL &&
                    (rx->cbuf = malloc(MAX_CONTROL_PAYLOAD)) == NULL)
                    return SC_ENOMEM;
                memcpy(rx->cbuf + rx->cbuf_len, p, take);
                rx->cbuf_len = (uint8_t)(rx->cbuf_len + take);
                payload = rx->cbuf;
                plen = rx->cbuf_len;
            }
            if (done) {
                rx->in_frame = false;
                rx->frames++;
                int r = on_control(rx->op, payload, plen, fn, ud, fail);
                free(rx->cbuf);
                rx->cbuf = NULL;
                rx->cbuf_len = 0;
                if (r != 0)
                    return stopped(rx, n - take, r);
            }
        } else if (done && rx->fin && sc_buf_len(&rx->msg) == 0) {
            /* the whole message is in this read: no copy */
            rx->in_frame = false;
            rx->frames++;
            int r = on_message(p, take, fn, ud, fail);
            if (r != 0)
                return stopped(rx, n - take, r);
        } else {
            sc_buf_put(&rx->msg, p, take);
            if (rx->msg.err != SC_OK)
                return SC_ENOMEM;
            if (done) {
                rx->in_frame = false;
                rx->frames++;
                if (rx->fin) {
                    int r = on_message((const uint8_t *)sc_buf_str(&rx->msg),
                                       sc_buf_len(&rx->msg), fn, ud, fail);
                    /* idle parsers keep no buffer between messages */
                    sc_buf_deinit(&rx->msg);
                    if (r != 0)
                        return stopped(rx, n - take, r);
                }
            }
        }
        p += take;
        n -= take;
    }
    return 0;
}
