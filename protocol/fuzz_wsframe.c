/*
 * libFuzzer target for the WebSocket receive parser (built with
 * -DSC_FUZZ=ON, clang; run by scripts/fuzz.sh).
 *
 * Input: 4 bytes of settings, then the byte stream a client sends. The
 * first byte picks max_message, the next three seed the cutting of the
 * stream into reads (1 byte to the whole rest, random sizes). The stream is
 * parsed three times: in one read; cut into reads; and cut into reads with
 * the callback pausing after random messages, the bytes it did not look
 * at (sc_ws_rx_rest) fed again, as the server's transport does.
 * Invariants, checked rather than only "no crash":
 *   - all parses hand over the same messages (op, length, bytes, close
 *     code) and end the same way (same result, same close code and
 *     reason): where the reads are cut or paused never matters; a pause
 *     leaves the parser between frames with at most the read's bytes left;
 *   - a TEXT message is valid UTF-8 (checked with a plain code point
 *     decoder, not the parser's validator) and at most max_message bytes;
 *     PING/PONG carry at most 125 bytes; a CLOSE has a valid code and a
 *     UTF-8 reason of at most 123 bytes, or code 1000 and no reason;
 *   - a failure names 1002, 1003, 1007 or 1009 and a reason;
 *   - a parser between messages holds no buffer.
 * A violated invariant aborts (a finding). Like the server, the callback
 * stops at a CLOSE.
 */
#include "wsframe.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SETTINGS 4
#define MAX_RECORDED 512
#define STOP_AT_CLOSE 1
#define PAUSE 2

static void check(int ok)
{
    if (!ok)
        abort();
}

/* UTF-8 by decoding code points (independent of utf8.c). */
static bool utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t b = s[i];
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

/* What one parse handed over: a digest per message. */
typedef struct run {
    size_t max_message;
    uint32_t pause_seed; /* non-zero: pause after some messages */
    size_t n;
    struct {
        uint8_t op;
        size_t len;
        uint64_t hash;
        unsigned code;
    } m[MAX_RECORDED];
} run_t;

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3u;
    return h;
}

static uint32_t next(uint32_t *s)
{
    /* xorshift32 */
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static int on_msg(void *ud, const sc_ws_msg_t *m)
{
    run_t *r = ud;

    check(m->len == 0 || m->data != NULL);
    switch (m->op) {
    case SC_WS_OP_TEXT:
        check(m->len <= r->max_message);
        check(utf8_ok(m->data, m->len));
        check(m->close_code == 0);
        break;
    case SC_WS_OP_PING:
    case SC_WS_OP_PONG:
        check(m->len <= 125);
        check(m->close_code == 0);
        break;
    case SC_WS_OP_CLOSE:
        check(m->len <= 123);
        check(utf8_ok(m->data, m->len));
        check(sc_ws_close_code_valid(m->close_code));
        break;
    default:
        check(0);
    }
    if (r->n < MAX_RECORDED) {
        r->m[r->n].op = (uint8_t)m->op;
        r->m[r->n].len = m->len;
        r->m[r->n].hash = fnv1a(m->data, m->len); /* reads every byte */
        r->m[r->n].code = m->close_code;
    }
    r->n++;
    if (m->op == SC_WS_OP_CLOSE)
        return STOP_AT_CLOSE;
    return r->pause_seed && next(&r->pause_seed) % 3 == 0 ? PAUSE : 0;
}

/* The parser's end state must be sane; returns rc. */
static int check_end(const sc_ws_rx_t *rx, int rc, const sc_ws_fail_t *fail)
{
    if (rc == SC_WS_RX_FAIL) {
        check(fail->code == 1002 || fail->code == 1003 || fail->code == 1007 ||
              fail->code == 1009);
        check(fail->reason != NULL && fail->reason[0] != '\0');
    } else {
        check(rc == 0 || rc == STOP_AT_CLOSE);
        if (!rx->in_frame && !rx->in_message)
            check(rx->msg.data == NULL && rx->cbuf == NULL);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[] = {0, 1, 2, 125, 126, 1000, 65535, 65536};
    static run_t whole, cut, paused; /* large: not on the stack */

    if (size < SETTINGS)
        return 0;
    size_t n = size - SETTINGS;
    uint8_t *buf = malloc(n + 1);
    check(buf != NULL);
    memset(&whole, 0, sizeof(whole));
    memset(&cut, 0, sizeof(cut));
    memset(&paused, 0, sizeof(paused));
    whole.max_message = cut.max_message = paused.max_message =
        limits[data[0] & 7];
    /* bits 3-4 of the first byte: the size of reads, up to 1, 7, 63 or
     * any number of bytes */
    size_t chunk_max = (size_t[]){1, 7, 63, SIZE_MAX}[(data[0] >> 3) & 3];
    uint32_t seed = (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3];
    seed |= 1; /* xorshift needs a non-zero state */

    /* in one read */
    memcpy(buf, data + SETTINGS, n);
    sc_ws_rx_t rx;
    sc_ws_rx_init(&rx);
    sc_ws_fail_t fail1 = {0, NULL};
    int rc1 =
        sc_ws_rx_feed(&rx, buf, n, whole.max_message, on_msg, &whole, &fail1);
    check_end(&rx, rc1, &fail1);
    sc_ws_rx_deinit(&rx);

    /* cut into reads (a zero-length read now and then too) */
    memcpy(buf, data + SETTINGS, n);
    sc_ws_rx_init(&rx);
    sc_ws_fail_t fail2 = {0, NULL};
    int rc2 = 0;
    size_t take;
    for (size_t at = 0; at < n && rc2 == 0; at += take) {
        take = next(&seed) % (n - at + 1);
        if (take > chunk_max)
            take = 1 + take % chunk_max;
        rc2 = sc_ws_rx_feed(&rx, buf + at, take, cut.max_message, on_msg, &cut,
                            &fail2);
    }
    check_end(&rx, rc2, &fail2);
    sc_ws_rx_deinit(&rx);

    /* cut into reads and paused after random messages: the bytes not
     * looked at are fed again */
    memcpy(buf, data + SETTINGS, n);
    sc_ws_rx_init(&rx);
    paused.pause_seed = seed ^ 0x9e3779b9u;
    if (paused.pause_seed == 0)
        paused.pause_seed = 1;
    sc_ws_fail_t fail3 = {0, NULL};
    int rc3 = 0;
    for (size_t at = 0; at < n && rc3 == 0;) {
        take = next(&seed) % (n - at + 1);
        if (take > chunk_max)
            take = 1 + take % chunk_max;
        rc3 = sc_ws_rx_feed(&rx, buf + at, take, paused.max_message, on_msg,
                            &paused, &fail3);
        size_t rest = 0;
        if (rc3 == PAUSE) {
            rest = sc_ws_rx_rest(&rx);
            check(rest <= take && !rx.in_frame);
            rc3 = 0;
        }
        at += take - rest;
    }
    check_end(&rx, rc3, &fail3);
    sc_ws_rx_deinit(&rx);

    /* the same outcome */
    check(rc1 == rc2 && rc1 == rc3);
    if (rc1 == SC_WS_RX_FAIL)
        check(fail1.code == fail2.code &&
              strcmp(fail1.reason, fail2.reason) == 0 &&
              fail1.code == fail3.code &&
              strcmp(fail1.reason, fail3.reason) == 0);
    check(whole.n == cut.n && whole.n == paused.n);
    for (size_t at = 0; at < whole.n && at < MAX_RECORDED; at++) {
        check(whole.m[at].op == cut.m[at].op);
        check(whole.m[at].len == cut.m[at].len);
        check(whole.m[at].hash == cut.m[at].hash);
        check(whole.m[at].code == cut.m[at].code);
        check(whole.m[at].op == paused.m[at].op);
        check(whole.m[at].len == paused.m[at].len);
        check(whole.m[at].hash == paused.m[at].hash);
        check(whole.m[at].code == paused.m[at].code);
    }
    free(buf);
    return 0;
}
