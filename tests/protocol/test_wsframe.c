/*
 * Unit tests of protocol/wsframe.c: the server's frame builders (text
 * header, control, close), the frame extent reader, and the receive parser
 * sc_ws_rx_t: every refusal with its close code and reason, masks at every
 * phase, streams cut at every byte (inside headers and control frames
 * too), fragmented messages with control frames between fragments, the
 * message size limit, the callback's stop value, out of memory, and no
 * buffer kept between messages nor leaked by a deinit mid-message (ASan).
 *
 * Client frames are built here with mkframe(); received messages are
 * recorded (copied) by a callback so that whole streams can be compared.
 * Allocations can be failed through the linker's --wrap (CMakeLists.txt).
 */
#include "wsframe.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void *__real_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_realloc(void *p, size_t n);

static bool fail_allocs; /* every malloc/realloc fails while set */

void *__wrap_malloc(size_t n)
{
    return fail_allocs ? NULL : __real_malloc(n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_allocs ? NULL : __real_realloc(p, n);
}

#define MAX_MSG 65536
static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- building client frames ------------------------------------------- */

enum { LEN_AUTO = 0, LEN_16 = 126, LEN_64 = 127 };

/* Writes a frame: first byte `b0` (FIN, RSV, opcode), `n` payload bytes
 * masked with `mask` (NULL: unmasked), the length in the form `form`.
 * Returns its length. */
static size_t mkframe_raw(uint8_t *out, uint8_t b0, const void *payload,
                          size_t n, const uint8_t *mask, int form)
{
    const uint8_t *p = payload;
    size_t h = 2, i;

    if (form == LEN_AUTO)
        form = n <= 125 ? 0 : n <= 0xffff ? LEN_16 : LEN_64;
    out[0] = b0;
    if (form == LEN_16) {
        out[1] = 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
        h = 4;
    } else if (form == LEN_64) {
        out[1] = 127;
        for (i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        h = 10;
    } else {
        out[1] = (uint8_t)n;
    }
    if (mask != NULL) {
        out[1] |= 0x80;
        memcpy(out + h, mask, 4);
        h += 4;
    }
    for (i = 0; i < n; i++)
        out[h + i] = (uint8_t)(p[i] ^ (mask ? mask[i & 3] : 0));
    return h + n;
}

/* A masked frame with the shortest length form. */
static size_t mkframe(uint8_t *out, bool fin, uint8_t op, const void *payload,
                      size_t n)
{
    return mkframe_raw(out, (uint8_t)((fin ? 0x80 : 0) | op), payload, n, MASK,
                       LEN_AUTO);
}

/* A masked close frame with `code` (0: no payload) and `reason`. */
static size_t mkclose(uint8_t *out, unsigned code, const char *reason)
{
    uint8_t p[125];
    size_t rl = strlen(reason);

    if (code == 0)
        return mkframe(out, true, SC_WS_OP_CLOSE, NULL, 0);
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, rl);
    return mkframe(out, true, SC_WS_OP_CLOSE, p, 2 + rl);
}

/* ---- recording what the parser hands over ------------------------------ */

typedef struct rec_msg {
    enum sc_ws_opcode op;
    uint8_t *data;
    size_t len;
    unsigned code;
} rec_msg_t;

typedef struct rec {
    rec_msg_t m[64];
    size_t n;
    size_t stop_at; /* return `stop_rc` from the stop_at-th message (1-based) */
    int stop_rc;
    const uint8_t *lo, *hi; /* the input buffer: was data handed in place? */
    size_t in_place;
} rec_t;

static int record(void *ud, const sc_ws_msg_t *m)
{
    rec_t *r = ud;
    rec_msg_t *x;

    assert_true(r->n < 64);
    x = &r->m[r->n++];
    x->op = m->op;
    x->len = m->len;
    x->code = m->close_code;
    x->data = __real_malloc(m->len + 1); /* even while failing allocs */
    assert_non_null(x->data);
    if (m->len > 0)
        memcpy(x->data, m->data, m->len);
    x->data[m->len] = '\0';
    if (r->lo != NULL && m->len > 0 && m->data >= r->lo && m->data < r->hi)
        r->in_place++;
    return r->stop_at != 0 && r->n == r->stop_at ? r->stop_rc : 0;
}

static void rec_init(rec_t *r)
{
    memset(r, 0, sizeof(*r));
}

static void rec_free(rec_t *r)
{
    size_t i;

    for (i = 0; i < r->n; i++)
        free(r->m[i].data);
    r->n = 0;
}

static void assert_msg(const rec_t *r, size_t i, enum sc_ws_opcode op,
                       const char *data, size_t len, unsigned code)
{
    assert_true(i < r->n);
    assert_int_equal(r->m[i].op, op);
    assert_int_equal(r->m[i].len, len);
    assert_memory_equal(r->m[i].data, data, len);
    assert_int_equal(r->m[i].code, code);
}

/* Feeds a copy of `bytes` to a fresh parser in pieces cut at `cuts` (in
 * ascending order); returns the last result and leaves the parser in *rx. */
static int feed_cut(sc_ws_rx_t *rx, const uint8_t *bytes, size_t n,
                    const size_t *cuts, size_t ncuts, size_t max, rec_t *r,
                    sc_ws_fail_t *fail)
{
    uint8_t *copy = malloc(n + 1);
    size_t at = 0, i, end;
    int rc = 0;

    assert_non_null(copy);
    memcpy(copy, bytes, n);
    r->lo = copy;
    r->hi = copy + n;
    for (i = 0; i <= ncuts && rc == 0; i++) {
        end = i < ncuts ? cuts[i] : n;
        rc = sc_ws_rx_feed(rx, copy + at, end - at, max, record, r, fail);
        at = end;
    }
    free(copy);
    r->lo = r->hi = NULL;
    return rc;
}

/* Feeds `bytes` whole and expects a refusal with `code` and `reason`. */
static void expect_fail(const uint8_t *bytes, size_t n, size_t max,
                        unsigned code, const char *reason)
{
    sc_ws_rx_t rx;
    sc_ws_fail_t fail = {0, NULL};
    rec_t r;

    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, bytes, n, NULL, 0, max, &r, &fail),
                     SC_WS_RX_FAIL);
    assert_int_equal(fail.code, code);
    assert_string_equal(fail.reason, reason);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

/* ---- builders ------------------------------------------------------------ */

static void test_frame_header_uses_7_16_and_64_bit_lengths(void **state)
{
    uint8_t h[SC_WS_MAX_HEADER];
    uint64_t len;

    assert_int_equal(sc_ws_frame_header(h, 125), 2);
    assert_memory_equal(h, "\x81\x7d", 2);
    assert_int_equal(sc_ws_frame_header(h, 126), 4);
    assert_memory_equal(h, "\x81\x7e\x00\x7e", 4);
    assert_int_equal(sc_ws_frame_header(h, 65535), 4);
    assert_memory_equal(h, "\x81\x7e\xff\xff", 4);
    assert_int_equal(sc_ws_frame_header(h, 65536), 10);
    assert_memory_equal(h, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    /* and the extent reader reads them back */
    assert_int_equal(sc_ws_frame_extent(h, 10, &len), 10);
    assert_int_equal(len, 10 + 65536);
}

static void test_extent_reads_every_length_form(void **state)
{
    static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 1000000};
    uint8_t h[SC_WS_MAX_HEADER];
    uint64_t len;
    size_t i, hl;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        hl = sc_ws_frame_header(h, sizes[i]);
        len = 0;
        assert_int_equal(sc_ws_frame_extent(h, hl, &len), hl);
        assert_int_equal(len, hl + sizes[i]);
    }
}

static void test_extent_needs_more_bytes_for_partial_headers(void **state)
{
    uint8_t h[SC_WS_MAX_HEADER];
    uint64_t len = 42;
    size_t avail;

    sc_ws_frame_header(h, 5);
    assert_int_equal(sc_ws_frame_extent(h, 0, &len), 0);
    assert_int_equal(sc_ws_frame_extent(h, 1, &len), 0);
    assert_int_equal(len, 42);
    sc_ws_frame_header(h, 300);
    for (avail = 0; avail < 4; avail++)
        assert_int_equal(sc_ws_frame_extent(h, avail, &len), 0);
    sc_ws_frame_header(h, 70000);
    for (avail = 0; avail < 10; avail++)
        assert_int_equal(sc_ws_frame_extent(h, avail, &len), 0);
    assert_int_equal(len, 42);
    assert_int_equal(sc_ws_frame_extent(h, 10, &len), 10);
    assert_int_equal(len, 70010);
}

static void test_extent_saturates_a_length_that_would_overflow(void **state)
{
    static const uint8_t h[] = {0x81, 0x7f, 0xff, 0xff, 0xff,
                                0xff, 0xff, 0xff, 0xff, 0xfa};
    uint64_t len = 0;

    assert_int_equal(sc_ws_frame_extent(h, sizeof(h), &len), 10);
    assert_true(len == UINT64_MAX);
}

static void test_control_frame_builds_pong_and_ping(void **state)
{
    uint8_t f[SC_WS_MAX_CONTROL_FRAME], big[200];

    assert_int_equal(sc_ws_control_frame(f, SC_WS_OP_PONG, "abc", 3), 5);
    assert_memory_equal(f,
                        "\x8a\x03"
                        "abc",
                        5);
    assert_int_equal(sc_ws_control_frame(f, SC_WS_OP_PING, "scpg", 4), 6);
    assert_memory_equal(f, "\x89\x04scpg", 6); /* the heartbeat ping */
    assert_int_equal(sc_ws_control_frame(f, SC_WS_OP_PONG, NULL, 0), 2);
    assert_memory_equal(f, "\x8a\x00", 2);
    memset(big, 'x', sizeof(big));
    assert_int_equal(sc_ws_control_frame(f, SC_WS_OP_PONG, big, 200), 127);
    assert_int_equal(f[1], 125);
    assert_int_equal(sc_ws_control_frame(f, SC_WS_OP_PONG, big, 125), 127);
    assert_memory_equal(f + 2, big, 125);
}

static void test_close_frame_carries_code_and_reason(void **state)
{
    uint8_t f[SC_WS_MAX_CONTROL_FRAME];

    assert_int_equal(sc_ws_close_frame(f, 1002, "reserved bits set"), 21);
    assert_memory_equal(f,
                        "\x88\x13\x03\xea"
                        "reserved bits set",
                        21);
    assert_int_equal(sc_ws_close_frame(f, 1000, ""), 4);
    assert_memory_equal(f, "\x88\x02\x03\xe8", 4);
    assert_int_equal(sc_ws_close_frame(f, 4408, NULL), 4);
    assert_memory_equal(f, "\x88\x02\x11\x38", 4);
}

static void test_close_frame_cuts_the_reason_at_123_bytes(void **state)
{
    uint8_t f[SC_WS_MAX_CONTROL_FRAME];
    char reason[200];

    memset(reason, 'r', 123);
    reason[123] = '\0';
    assert_int_equal(sc_ws_close_frame(f, 1000, reason), 127);
    assert_int_equal(f[1], 125);
    memset(reason, 'r', 199);
    reason[199] = '\0';
    assert_int_equal(sc_ws_close_frame(f, 1000, reason), 127);
    assert_memory_equal(f + 4, reason, 123);
}

static void test_close_frame_does_not_cut_inside_a_utf8_sequence(void **state)
{
    uint8_t f[SC_WS_MAX_CONTROL_FRAME];
    char reason[200];
    size_t at;

    /* a 2-, 3- and 4-byte sequence at every position around the cut */
    static const char *seqs[] = {"\xc3\xa9", "\xe2\x82\xac",
                                 "\xf0\x9f\x98\x80"};
    for (size_t s = 0; s < 3; s++) {
        size_t k = strlen(seqs[s]);
        for (at = 118; at <= 123; at++) {
            size_t n;
            memset(reason, 'a', 150);
            reason[150] = '\0';
            memcpy(reason + at, seqs[s], k);
            n = sc_ws_close_frame(f, 1000, reason) - 4;
            /* whole sequence in, or cut right before it */
            assert_true(n == 123 || n == at);
            if (at + k <= 123)
                assert_int_equal(n, 123);
            else
                assert_int_equal(n, at);
            assert_int_equal(f[1], 2 + n);
        }
    }
    /* garbage of continuation bytes: at most 3 bytes are given back */
    memset(reason, 0x80, 150);
    reason[150] = '\0';
    assert_int_equal(sc_ws_close_frame(f, 1000, reason), 4 + 120);
}

static void test_close_codes_a_peer_may_send_follow_rfc6455(void **state)
{
    static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                  1010, 1011, 3000, 3999, 4000, 4408, 4999};
    static const unsigned bad[] = {0,    999,  1004, 1005, 1006, 1012, 1013,
                                   1014, 1015, 1016, 2000, 2999, 5000, 65535};
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_true(sc_ws_close_code_valid(ok[i]));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(sc_ws_close_code_valid(bad[i]));
}

/* ---- the receive parser: messages --------------------------------------- */

static void test_rx_hands_over_a_text_message_in_place(void **state)
{
    uint8_t f[64];
    size_t n = mkframe(f, true, SC_WS_OP_TEXT, "{\"op\":\"ping\"}", 13);
    sc_ws_rx_t rx;
    rec_t r;

    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), 0);
    assert_int_equal(r.n, 1);
    assert_msg(&r, 0, SC_WS_OP_TEXT, "{\"op\":\"ping\"}", 13, 0);
    assert_int_equal(r.in_place, 1); /* no copy */
    assert_null(rx.msg.data);
    assert_false(rx.in_frame);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_hands_over_empty_messages(void **state)
{
    uint8_t f[64];
    size_t n = 0;
    sc_ws_rx_t rx;
    rec_t r;

    n += mkframe(f + n, true, SC_WS_OP_TEXT, NULL, 0);
    n += mkframe(f + n, false, SC_WS_OP_TEXT, NULL, 0);
    n += mkframe(f + n, true, SC_WS_OP_CONT, NULL, 0);
    n += mkframe(f + n, true, SC_WS_OP_PING, NULL, 0);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), 0);
    assert_int_equal(r.n, 3);
    assert_msg(&r, 0, SC_WS_OP_TEXT, "", 0, 0);
    assert_msg(&r, 1, SC_WS_OP_TEXT, "", 0, 0);
    assert_msg(&r, 2, SC_WS_OP_PING, "", 0, 0);
    assert_int_equal(rx.frames, 4);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_hands_over_ping_and_pong_payloads(void **state)
{
    uint8_t f[256], p[125];
    size_t n = 0;
    sc_ws_rx_t rx;
    rec_t r;

    memset(p, 'p', sizeof(p));
    n += mkframe(f + n, true, SC_WS_OP_PING, "hello", 5);
    n += mkframe(f + n, true, SC_WS_OP_PONG, p, 125);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), 0);
    assert_int_equal(r.n, 2);
    assert_msg(&r, 0, SC_WS_OP_PING, "hello", 5, 0);
    assert_msg(&r, 1, SC_WS_OP_PONG, (const char *)p, 125, 0);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_reassembles_a_fragmented_message(void **state)
{
    uint8_t f[256];
    size_t n = 0;
    sc_ws_rx_t rx;
    rec_t r;

    n += mkframe(f + n, false, SC_WS_OP_TEXT, "{\"op\":", 6);
    n += mkframe(f + n, false, SC_WS_OP_CONT, "\"pi", 3);
    n += mkframe(f + n, true, SC_WS_OP_CONT, "ng\"}", 4);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), 0);
    assert_int_equal(r.n, 1);
    assert_msg(&r, 0, SC_WS_OP_TEXT, "{\"op\":\"ping\"}", 13, 0);
    assert_int_equal(r.in_place, 0); /* gathered */
    assert_null(rx.msg.data);        /* and released */
    assert_false(rx.in_message);
    assert_int_equal(rx.frames, 3);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_hands_over_control_frames_between_fragments(void **state)
{
    uint8_t f[256];
    size_t n = 0;
    sc_ws_rx_t rx;
    rec_t r;

    n += mkframe(f + n, false, SC_WS_OP_TEXT, "ab", 2);
    n += mkframe(f + n, true, SC_WS_OP_PING, "p1", 2);
    n += mkframe(f + n, false, SC_WS_OP_CONT, "cd", 2);
    n += mkframe(f + n, true, SC_WS_OP_PONG, "p2", 2);
    n += mkframe(f + n, true, SC_WS_OP_CONT, "ef", 2);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), 0);
    assert_int_equal(r.n, 3);
    assert_msg(&r, 0, SC_WS_OP_PING, "p1", 2, 0);
    assert_msg(&r, 1, SC_WS_OP_PONG, "p2", 2, 0);
    assert_msg(&r, 2, SC_WS_OP_TEXT, "abcdef", 6, 0);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_accepts_lengths_in_a_longer_form_than_needed(void **state)
{
    uint8_t f[64];
    size_t n = 0;
    sc_ws_rx_t rx;
    rec_t r;

    /* today's behaviour: the minimal length form is not enforced */
    n += mkframe_raw(f + n, 0x81, "abc", 3, MASK, LEN_16);
    n += mkframe_raw(f + n, 0x81, "de", 2, MASK, LEN_64);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), 0);
    assert_int_equal(r.n, 2);
    assert_msg(&r, 0, SC_WS_OP_TEXT, "abc", 3, 0);
    assert_msg(&r, 1, SC_WS_OP_TEXT, "de", 2, 0);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

/* Payloads of 0..40 bytes (the 8-byte unmasking steps), cut at every byte:
 * the payload is unmasked right whatever the mask phase of each piece. */
static void test_rx_unmasks_at_every_mask_phase(void **state)
{
    uint8_t f[128], payload[41], mask[4];
    size_t len, cut, n, i;
    sc_ws_rx_t rx;
    rec_t r;

    for (i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)('A' + i % 26);
    for (len = 0; len <= 40; len++) {
        for (i = 0; i < 4; i++)
            mask[i] = (uint8_t)(0x81 + 37 * (len + i));
        n = mkframe_raw(f, 0x81, payload, len, mask, LEN_AUTO);
        for (cut = 0; cut <= n; cut++) {
            rec_init(&r);
            sc_ws_rx_init(&rx);
            assert_int_equal(feed_cut(&rx, f, n, &cut, 1, MAX_MSG, &r, NULL),
                             0);
            assert_int_equal(r.n, 1);
            assert_msg(&r, 0, SC_WS_OP_TEXT, (const char *)payload, len, 0);
            sc_ws_rx_deinit(&rx);
            rec_free(&r);
        }
    }
}

/* A stream of every kind of frame (BIG: the shortest 16-bit length). */
#define BIG 126
static size_t mixed_stream(uint8_t *f, char *big)
{
    size_t n = 0;

    memset(big, 'b', BIG);
    big[0] = '[';
    big[BIG - 1] = ']';
    n += mkframe(f + n, true, SC_WS_OP_TEXT, "hello", 5);
    n += mkframe(f + n, true, SC_WS_OP_PING, "ping-data", 9);
    n += mkframe(f + n, false, SC_WS_OP_TEXT, "fr\xc3", 3); /* cut e acute */
    n += mkframe(f + n, true, SC_WS_OP_PING, "between", 7);
    n += mkframe(f + n, true, SC_WS_OP_CONT,
                 "\xa9"
                 "ag",
                 3);
    n += mkframe(f + n, true, SC_WS_OP_TEXT, big, BIG); /* 16-bit length */
    n += mkframe(f + n, true, SC_WS_OP_PONG, NULL, 0);
    n += mkclose(f + n, 1001, "going away");
    return n;
}

static void assert_mixed_stream(const rec_t *r, const char *big)
{
    assert_int_equal(r->n, 7);
    assert_msg(r, 0, SC_WS_OP_TEXT, "hello", 5, 0);
    assert_msg(r, 1, SC_WS_OP_PING, "ping-data", 9, 0);
    assert_msg(r, 2, SC_WS_OP_PING, "between", 7, 0);
    assert_msg(r, 3, SC_WS_OP_TEXT,
               "fr\xc3\xa9"
               "ag",
               6, 0);
    assert_msg(r, 4, SC_WS_OP_TEXT, big, BIG, 0);
    assert_msg(r, 5, SC_WS_OP_PONG, "", 0, 0);
    assert_msg(r, 6, SC_WS_OP_CLOSE, "going away", 10, 1001);
}

static void test_rx_parses_a_stream_cut_at_every_byte(void **state)
{
    uint8_t f[512];
    char big[BIG];
    size_t n = mixed_stream(f, big), cut;
    sc_ws_rx_t rx;
    rec_t r;

    for (cut = 0; cut <= n; cut++) {
        rec_init(&r);
        sc_ws_rx_init(&rx);
        assert_int_equal(feed_cut(&rx, f, n, &cut, 1, MAX_MSG, &r, NULL), 0);
        assert_mixed_stream(&r, big);
        assert_null(rx.msg.data);
        assert_null(rx.cbuf);
        assert_false(rx.in_frame);
        assert_int_equal(rx.hdr_len, 0);
        assert_int_equal(rx.frames, 8);
        sc_ws_rx_deinit(&rx);
        rec_free(&r);
    }
}

static void test_rx_parses_a_stream_cut_at_every_pair_of_bytes(void **state)
{
    uint8_t f[512];
    char big[BIG];
    size_t n = mixed_stream(f, big), cuts[2];
    sc_ws_rx_t rx;
    rec_t r;

    for (cuts[0] = 0; cuts[0] <= n; cuts[0]++) {
        for (cuts[1] = cuts[0]; cuts[1] <= n; cuts[1]++) {
            rec_init(&r);
            sc_ws_rx_init(&rx);
            assert_int_equal(feed_cut(&rx, f, n, cuts, 2, MAX_MSG, &r, NULL),
                             0);
            assert_mixed_stream(&r, big);
            assert_null(rx.msg.data);
            assert_null(rx.cbuf);
            sc_ws_rx_deinit(&rx);
            rec_free(&r);
        }
    }
}

static void test_rx_parses_a_stream_fed_byte_by_byte(void **state)
{
    uint8_t f[512];
    char big[BIG];
    size_t n = mixed_stream(f, big), cuts[512], i;
    sc_ws_rx_t rx;
    rec_t r;

    for (i = 0; i + 1 < n; i++)
        cuts[i] = i + 1;
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, cuts, n - 1, MAX_MSG, &r, NULL), 0);
    assert_mixed_stream(&r, big);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_gathers_a_control_frame_split_by_reads(void **state)
{
    uint8_t f[256], copy[256];
    size_t n = mkframe(f, true, SC_WS_OP_PING, "split ping", 10);
    sc_ws_rx_t rx;
    rec_t r;

    memcpy(copy, f, n);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    /* header and 4 payload bytes, then the rest */
    assert_int_equal(sc_ws_rx_feed(&rx, copy, 10, MAX_MSG, record, &r, NULL),
                     0);
    assert_int_equal(r.n, 0);
    assert_non_null(rx.cbuf);
    assert_int_equal(rx.cbuf_len, 4);
    assert_int_equal(
        sc_ws_rx_feed(&rx, copy + 10, n - 10, MAX_MSG, record, &r, NULL), 0);
    assert_int_equal(r.n, 1);
    assert_msg(&r, 0, SC_WS_OP_PING, "split ping", 10, 0);
    assert_null(rx.cbuf); /* released */
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_holds_no_buffer_between_messages(void **state)
{
    uint8_t f[256], copy[256];
    size_t n = mkframe(f, true, SC_WS_OP_TEXT, "a message in two reads", 22);
    sc_ws_rx_t rx;
    rec_t r;

    memcpy(copy, f, n);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(sc_ws_rx_feed(&rx, copy, 12, MAX_MSG, record, &r, NULL),
                     0);
    assert_non_null(rx.msg.data); /* the first part is kept */
    assert_int_equal(
        sc_ws_rx_feed(&rx, copy + 12, n - 12, MAX_MSG, record, &r, NULL), 0);
    assert_msg(&r, 0, SC_WS_OP_TEXT, "a message in two reads", 22, 0);
    assert_null(rx.msg.data);
    assert_int_equal(rx.msg.cap, 0);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_counts_every_completed_frame(void **state)
{
    uint8_t f[256], copy[256];
    size_t n = 0;
    sc_ws_rx_t rx;
    rec_t r;

    n += mkframe(f + n, false, SC_WS_OP_TEXT, "ab", 2);
    n += mkframe(f + n, true, SC_WS_OP_CONT, "cd", 2);
    memcpy(copy, f, n);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(sc_ws_rx_feed(&rx, copy, 8, MAX_MSG, record, &r, NULL), 0);
    assert_int_equal(rx.frames, 1); /* the first fragment, no message yet */
    assert_int_equal(r.n, 0);
    assert_int_equal(
        sc_ws_rx_feed(&rx, copy + 8, n - 8, MAX_MSG, record, &r, NULL), 0);
    assert_int_equal(rx.frames, 2);
    assert_int_equal(r.n, 1);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_propagates_the_callback_stop_value(void **state)
{
    uint8_t f[256];
    size_t n = 0;
    sc_ws_rx_t rx;
    rec_t r;

    n += mkframe(f + n, true, SC_WS_OP_TEXT, "one", 3);
    n += mkclose(f + n, 1000, "");
    n += mkframe(f + n, true, SC_WS_OP_TEXT, "after close", 11);
    rec_init(&r);
    r.stop_at = 2;
    r.stop_rc = 7;
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), 7);
    assert_int_equal(r.n, 2);
    assert_msg(&r, 1, SC_WS_OP_CLOSE, "", 0, 1000);
    assert_false(rx.in_frame); /* between frames */
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

/* A pause: stopped after each kind of message (whole in the read, a
 * control frame, reassembled from fragments), the caller feeds the rest
 * later and gets every message once, in order. */
static void test_rx_says_what_is_left_when_stopped(void **state)
{
    uint8_t f[256];
    size_t n = 0, ends[4];
    sc_ws_rx_t rx;
    rec_t r;

    n += mkframe(f + n, true, SC_WS_OP_TEXT, "one", 3);
    ends[0] = n;
    n += mkframe(f + n, true, SC_WS_OP_PING, "p", 1);
    ends[1] = n;
    n += mkframe(f + n, false, SC_WS_OP_TEXT, "tw", 2);
    n += mkframe(f + n, true, SC_WS_OP_CONT, "o", 1);
    ends[2] = n;
    n += mkframe(f + n, true, SC_WS_OP_TEXT, "three", 5);
    ends[3] = n;
    rec_init(&r);
    sc_ws_rx_init(&rx);
    size_t off = 0;
    for (size_t k = 0; k < 3; k++) {
        r.stop_at = k + 1;
        r.stop_rc = 2;
        assert_int_equal(
            sc_ws_rx_feed(&rx, f + off, n - off, MAX_MSG, record, &r, NULL), 2);
        assert_int_equal(r.n, k + 1);
        assert_int_equal(sc_ws_rx_rest(&rx), n - ends[k]);
        assert_false(rx.in_frame);
        off = n - sc_ws_rx_rest(&rx);
    }
    r.stop_at = 0;
    assert_int_equal(
        sc_ws_rx_feed(&rx, f + off, n - off, MAX_MSG, record, &r, NULL), 0);
    assert_int_equal(r.n, 4);
    assert_msg(&r, 0, SC_WS_OP_TEXT, "one", 3, 0);
    assert_msg(&r, 1, SC_WS_OP_PING, "p", 1, 0);
    assert_msg(&r, 2, SC_WS_OP_TEXT, "two", 3, 0);
    assert_msg(&r, 3, SC_WS_OP_TEXT, "three", 5, 0);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_stops_on_a_fragmented_message_and_releases_it(void **state)
{
    uint8_t f[256];
    size_t n = 0;
    sc_ws_rx_t rx;
    rec_t r;

    n += mkframe(f + n, false, SC_WS_OP_TEXT, "ab", 2);
    n += mkframe(f + n, true, SC_WS_OP_CONT, "cd", 2);
    rec_init(&r);
    r.stop_at = 1;
    r.stop_rc = -42;
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), -42);
    assert_msg(&r, 0, SC_WS_OP_TEXT, "abcd", 4, 0);
    assert_null(rx.msg.data);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_deinit_mid_message_frees_everything(void **state)
{
    uint8_t f[256], copy[256];
    size_t n = 0;
    sc_ws_rx_t rx;
    rec_t r;

    /* a fragment gathered, then a ping cut in its payload */
    n += mkframe(f + n, false, SC_WS_OP_TEXT, "gathered", 8);
    n += mkframe(f + n, true, SC_WS_OP_PING, "cut ping", 8);
    memcpy(copy, f, n);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(sc_ws_rx_feed(&rx, copy, n - 3, MAX_MSG, record, &r, NULL),
                     0);
    assert_non_null(rx.msg.data);
    assert_non_null(rx.cbuf);
    sc_ws_rx_deinit(&rx); /* ASan's leak check covers the rest */
    assert_null(rx.msg.data);
    assert_null(rx.cbuf);
    sc_ws_rx_deinit(NULL);
    rec_free(&r);
}

static void test_rx_reports_out_of_memory(void **state)
{
    uint8_t f[256], copy[256];
    size_t n;
    sc_ws_rx_t rx;
    rec_t r;

    /* a message split by reads needs the reassembly buffer */
    n = mkframe(f, true, SC_WS_OP_TEXT, "needs a buffer", 14);
    memcpy(copy, f, n);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    fail_allocs = true;
    assert_int_equal(sc_ws_rx_feed(&rx, copy, 9, MAX_MSG, record, &r, NULL),
                     SC_ENOMEM);
    fail_allocs = false;
    sc_ws_rx_deinit(&rx);

    /* a control frame split by reads needs its 125 bytes */
    n = mkframe(f, true, SC_WS_OP_PING, "needs a buffer", 14);
    memcpy(copy, f, n);
    sc_ws_rx_init(&rx);
    fail_allocs = true;
    assert_int_equal(sc_ws_rx_feed(&rx, copy, 9, MAX_MSG, record, &r, NULL),
                     SC_ENOMEM);
    fail_allocs = false;
    sc_ws_rx_deinit(&rx);

    /* a whole message in one read needs nothing */
    n = mkframe(f, true, SC_WS_OP_TEXT, "needs nothing", 13);
    memcpy(copy, f, n);
    sc_ws_rx_init(&rx);
    fail_allocs = true;
    assert_int_equal(sc_ws_rx_feed(&rx, copy, n, MAX_MSG, record, &r, NULL), 0);
    fail_allocs = false;
    assert_msg(&r, 0, SC_WS_OP_TEXT, "needs nothing", 13, 0);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_state_is_small(void **state)
{
    /* per idle connection: 88 bytes on LP64, as in the server before */
    if (sizeof(void *) == 8)
        assert_true(sizeof(sc_ws_rx_t) <= 88);
}

/* ---- the receive parser: close frames ------------------------------------ */

static void test_rx_close_without_payload_reports_1000(void **state)
{
    uint8_t f[16];
    size_t n = mkclose(f, 0, "");
    sc_ws_rx_t rx;
    rec_t r;

    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), 0);
    assert_msg(&r, 0, SC_WS_OP_CLOSE, "", 0, 1000);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

static void test_rx_close_hands_over_code_and_reason(void **state)
{
    uint8_t f[160];
    char reason[124];
    size_t n, cut;
    sc_ws_rx_t rx;
    rec_t r;

    memset(reason, 'z', 123);
    memcpy(reason, "\xc3\xa9t\xc3\xa9", 5);
    reason[123] = '\0';
    n = mkclose(f, 4999, reason); /* the longest close frame */
    for (cut = 0; cut <= n; cut++) {
        rec_init(&r);
        sc_ws_rx_init(&rx);
        assert_int_equal(feed_cut(&rx, f, n, &cut, 1, MAX_MSG, &r, NULL), 0);
        assert_msg(&r, 0, SC_WS_OP_CLOSE, reason, 123, 4999);
        sc_ws_rx_deinit(&rx);
        rec_free(&r);
    }
}

static void test_rx_rejects_close_frame_of_one_byte_with_1002(void **state)
{
    uint8_t f[16];
    size_t n = mkframe(f, true, SC_WS_OP_CLOSE, "\x03", 1);

    expect_fail(f, n, MAX_MSG, 1002, "close frame of one byte");
}

static void test_rx_rejects_invalid_close_codes_with_1002(void **state)
{
    static const unsigned bad[] = {0,    999,  1004, 1005, 1006,
                                   1012, 1015, 2999, 5000, 65535};
    uint8_t f[16];
    size_t i, n;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = mkclose(f, bad[i], "");
        if (bad[i] == 0) /* mkclose's "no payload": build the code 0 */
            n = mkframe(f, true, SC_WS_OP_CLOSE, "\x00\x00", 2);
        expect_fail(f, n, MAX_MSG, 1002, "invalid close code");
    }
}

static void test_rx_rejects_invalid_utf8_close_reason_with_1007(void **state)
{
    uint8_t f[64], copy[64];
    size_t n = mkclose(f, 1000, "bad \xed\xa0\x80 reason");
    sc_ws_rx_t rx;
    sc_ws_fail_t fail;
    rec_t r;

    expect_fail(f, n, MAX_MSG, 1007, "invalid UTF-8 in close reason");
    /* also when gathered from two reads */
    memcpy(copy, f, n);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(sc_ws_rx_feed(&rx, copy, 9, MAX_MSG, record, &r, &fail),
                     0);
    assert_int_equal(
        sc_ws_rx_feed(&rx, copy + 9, n - 9, MAX_MSG, record, &r, &fail),
        SC_WS_RX_FAIL);
    assert_int_equal(fail.code, 1007);
    assert_null(rx.cbuf);
    sc_ws_rx_deinit(&rx);
    assert_int_equal(r.n, 0);
}

/* ---- the receive parser: refusals ---------------------------------------- */

static void test_rx_rejects_unmasked_frame_with_1002(void **state)
{
    uint8_t f[16];
    size_t n = mkframe_raw(f, 0x81, "hi", 2, NULL, LEN_AUTO);

    expect_fail(f, n, MAX_MSG, 1002, "client frames must be masked");
}

static void test_rx_fails_without_details_when_fail_is_null(void **state)
{
    uint8_t f[16];
    size_t n = mkframe_raw(f, 0x81, "hi", 2, NULL, LEN_AUTO);
    sc_ws_rx_t rx;
    rec_t r;

    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL),
                     SC_WS_RX_FAIL);
    sc_ws_rx_deinit(&rx);
}

static void test_rx_rejects_reserved_bits_with_1002(void **state)
{
    static const uint8_t rsv[] = {0x40, 0x20, 0x10, 0x70};
    uint8_t f[16];
    size_t i, n;

    for (i = 0; i < sizeof(rsv); i++) {
        n = mkframe_raw(f, (uint8_t)(0x81 | rsv[i]), "hi", 2, MASK, LEN_AUTO);
        expect_fail(f, n, MAX_MSG, 1002, "reserved bits set");
    }
    /* checked before the mask */
    n = mkframe_raw(f, 0xc1, "hi", 2, NULL, LEN_AUTO);
    expect_fail(f, n, MAX_MSG, 1002, "reserved bits set");
}

static void test_rx_rejects_reserved_opcodes_with_1002(void **state)
{
    uint8_t f[16];
    unsigned op;
    size_t n;

    for (op = 0x3; op <= 0xf; op++) {
        if (op >= 0x8 && op <= 0xa)
            continue;
        n = mkframe_raw(f, (uint8_t)(0x80 | op), "x", 1, MASK, LEN_AUTO);
        expect_fail(f, n, MAX_MSG, 1002, "reserved opcode");
    }
}

static void test_rx_rejects_payload_length_with_top_bit_with_1002(void **state)
{
    uint8_t f[16] = {0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};

    expect_fail(f, 14, MAX_MSG, 1002, "bad payload length");
}

static void test_rx_rejects_fragmented_control_frame_with_1002(void **state)
{
    uint8_t f[16];
    size_t n = mkframe(f, false, SC_WS_OP_PING, "x", 1);

    expect_fail(f, n, MAX_MSG, 1002, "fragmented control frame");
}

static void test_rx_rejects_control_frame_over_125_bytes_with_1002(void **state)
{
    uint8_t f[256], p[126];
    size_t n;

    memset(p, 'x', sizeof(p));
    n = mkframe(f, true, SC_WS_OP_PING, p, 126);
    expect_fail(f, n, MAX_MSG, 1002, "control frame too long");
    n = mkframe(f, true, SC_WS_OP_CLOSE, p, 126);
    expect_fail(f, n, MAX_MSG, 1002, "control frame too long");
}

static void
test_rx_rejects_continuation_without_a_message_with_1002(void **state)
{
    uint8_t f[64];
    size_t n = mkframe(f, true, SC_WS_OP_CONT, "x", 1);

    expect_fail(f, n, MAX_MSG, 1002, "continuation without a message");
    /* nor after a message that ended */
    n = mkframe(f, true, SC_WS_OP_TEXT, "x", 1);
    n += mkframe(f + n, true, SC_WS_OP_CONT, "y", 1);
    expect_fail(f, n, MAX_MSG, 1002, "continuation without a message");
}

static void
test_rx_rejects_new_message_inside_a_fragmented_one_with_1002(void **state)
{
    uint8_t f[64];
    size_t n = mkframe(f, false, SC_WS_OP_TEXT, "x", 1);

    n += mkframe(f + n, true, SC_WS_OP_TEXT, "y", 1);
    expect_fail(f, n, MAX_MSG, 1002, "new message inside a fragmented one");
    /* a binary frame there is this error, not 1003 */
    n = mkframe(f, false, SC_WS_OP_TEXT, "x", 1);
    n += mkframe(f + n, true, SC_WS_OP_BINARY, "y", 1);
    expect_fail(f, n, MAX_MSG, 1002, "new message inside a fragmented one");
}

static void test_rx_rejects_binary_frames_with_1003(void **state)
{
    uint8_t f[64];
    size_t n = mkframe(f, true, SC_WS_OP_BINARY, "\x00\x01", 2);

    expect_fail(f, n, MAX_MSG, 1003, "binary frames are not accepted");
    n = mkframe(f, false, SC_WS_OP_BINARY, "\x00\x01", 2);
    expect_fail(f, n, MAX_MSG, 1003, "binary frames are not accepted");
}

static void test_rx_rejects_invalid_utf8_message_with_1007(void **state)
{
    uint8_t f[64];
    size_t n = mkframe(f, true, SC_WS_OP_TEXT, "bad \xc0\xaf", 6);
    rec_t r;
    sc_ws_rx_t rx;
    sc_ws_fail_t fail;

    expect_fail(f, n, MAX_MSG, 1007, "invalid UTF-8");
    /* fragmented: checked on the whole message */
    n = mkframe(f, false, SC_WS_OP_TEXT, "ok \xc3", 4);
    n += mkframe(f + n, true, SC_WS_OP_CONT, "(", 1);
    expect_fail(f, n, MAX_MSG, 1007, "invalid UTF-8");
    /* a message ending inside a sequence */
    n = mkframe(f, true, SC_WS_OP_TEXT, "cut \xe2\x82", 6);
    expect_fail(f, n, MAX_MSG, 1007, "invalid UTF-8");
    /* and the buffer is released */
    n = mkframe(f, false, SC_WS_OP_TEXT, "\xff", 1);
    n += mkframe(f + n, true, SC_WS_OP_CONT, "x", 1);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, &fail),
                     SC_WS_RX_FAIL);
    assert_null(rx.msg.data);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

/* Empty continuation frames add no bytes but cost a parse each: before the
 * cap one connection could keep a core busy with them for ever. */
static void test_rx_caps_fragments_per_message_with_1009(void **state)
{
    size_t fsz = 6 * (SC_WS_MAX_FRAGMENTS + 2);
    uint8_t *f = malloc(fsz);
    size_t n;
    sc_ws_rx_t rx;
    rec_t r;

    assert_non_null(f);
    /* exactly the cap: one message */
    n = mkframe(f, false, SC_WS_OP_TEXT, "a", 1);
    for (int i = 1; i < SC_WS_MAX_FRAGMENTS - 1; i++)
        n += mkframe(f + n, false, SC_WS_OP_CONT, NULL, 0);
    n += mkframe(f + n, true, SC_WS_OP_CONT, "b", 1);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.m[0].len, 2);
    /* the count starts again with the next message */
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, MAX_MSG, &r, NULL), 0);
    assert_int_equal(r.n, 2);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
    /* one more empty fragment: refused */
    n = mkframe(f, false, SC_WS_OP_TEXT, "a", 1);
    for (int i = 1; i <= SC_WS_MAX_FRAGMENTS; i++)
        n += mkframe(f + n, false, SC_WS_OP_CONT, NULL, 0);
    expect_fail(f, n, MAX_MSG, 1009, "message in too many fragments");
    free(f);
}

static void
test_rx_accepts_max_message_and_rejects_one_over_with_1009(void **state)
{
    static uint8_t f[2100], p[2048];
    size_t n;
    sc_ws_rx_t rx;
    rec_t r;

    memset(p, 'm', sizeof(p));
    /* one frame: at the limit, then one over */
    n = mkframe(f, true, SC_WS_OP_TEXT, p, 1000);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, 1000, &r, NULL), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.m[0].len, 1000);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
    n = mkframe(f, true, SC_WS_OP_TEXT, p, 1001);
    expect_fail(f, n, 1000, 1009, "message too big");

    /* fragments adding up to the limit, then one over */
    n = mkframe(f, false, SC_WS_OP_TEXT, p, 600);
    n += mkframe(f + n, true, SC_WS_OP_CONT, p, 400);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, 1000, &r, NULL), 0);
    assert_int_equal(r.m[0].len, 1000);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
    n = mkframe(f, false, SC_WS_OP_TEXT, p, 600);
    n += mkframe(f + n, true, SC_WS_OP_CONT, p, 401);
    expect_fail(f, n, 1000, 1009, "message too big");

    /* refused at the header, before any payload arrived */
    n = mkframe(f, true, SC_WS_OP_TEXT, p, 2000);
    expect_fail(f, 8, 1000, 1009, "message too big");
    /* control frames do not count */
    n = mkframe(f, true, SC_WS_OP_PING, p, 100);
    rec_init(&r);
    sc_ws_rx_init(&rx);
    assert_int_equal(feed_cut(&rx, f, n, NULL, 0, 10, &r, NULL), 0);
    sc_ws_rx_deinit(&rx);
    rec_free(&r);
}

/* Refusals come only when the header is complete, wherever it was cut. */
static void test_rx_refuses_a_header_cut_at_every_byte(void **state)
{
    uint8_t f[32];
    size_t n = mkframe_raw(f, 0x82, "0123456789", 10, MASK, LEN_64), cut;
    sc_ws_rx_t rx;
    sc_ws_fail_t fail;
    uint8_t copy[32];
    rec_t r;

    for (cut = 0; cut < 14; cut++) {
        memcpy(copy, f, n);
        rec_init(&r);
        sc_ws_rx_init(&rx);
        assert_int_equal(
            sc_ws_rx_feed(&rx, copy, cut, MAX_MSG, record, &r, &fail), 0);
        assert_int_equal(rx.hdr_len, cut);
        assert_int_equal(
            sc_ws_rx_feed(&rx, copy + cut, n - cut, MAX_MSG, record, &r, &fail),
            SC_WS_RX_FAIL);
        assert_int_equal(fail.code, 1003);
        sc_ws_rx_deinit(&rx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header_uses_7_16_and_64_bit_lengths),
        cmocka_unit_test(test_extent_reads_every_length_form),
        cmocka_unit_test(test_extent_needs_more_bytes_for_partial_headers),
        cmocka_unit_test(test_extent_saturates_a_length_that_would_overflow),
        cmocka_unit_test(test_control_frame_builds_pong_and_ping),
        cmocka_unit_test(test_close_frame_carries_code_and_reason),
        cmocka_unit_test(test_close_frame_cuts_the_reason_at_123_bytes),
        cmocka_unit_test(test_close_frame_does_not_cut_inside_a_utf8_sequence),
        cmocka_unit_test(test_close_codes_a_peer_may_send_follow_rfc6455),
        cmocka_unit_test(test_rx_hands_over_a_text_message_in_place),
        cmocka_unit_test(test_rx_hands_over_empty_messages),
        cmocka_unit_test(test_rx_hands_over_ping_and_pong_payloads),
        cmocka_unit_test(test_rx_reassembles_a_fragmented_message),
        cmocka_unit_test(test_rx_hands_over_control_frames_between_fragments),
        cmocka_unit_test(test_rx_accepts_lengths_in_a_longer_form_than_needed),
        cmocka_unit_test(test_rx_unmasks_at_every_mask_phase),
        cmocka_unit_test(test_rx_parses_a_stream_cut_at_every_byte),
        cmocka_unit_test(test_rx_parses_a_stream_cut_at_every_pair_of_bytes),
        cmocka_unit_test(test_rx_parses_a_stream_fed_byte_by_byte),
        cmocka_unit_test(test_rx_gathers_a_control_frame_split_by_reads),
        cmocka_unit_test(test_rx_holds_no_buffer_between_messages),
        cmocka_unit_test(test_rx_counts_every_completed_frame),
        cmocka_unit_test(test_rx_propagates_the_callback_stop_value),
        cmocka_unit_test(test_rx_says_what_is_left_when_stopped),
        cmocka_unit_test(test_rx_stops_on_a_fragmented_message_and_releases_it),
        cmocka_unit_test(test_rx_deinit_mid_message_frees_everything),
        cmocka_unit_test(test_rx_reports_out_of_memory),
        cmocka_unit_test(test_rx_state_is_small),
        cmocka_unit_test(test_rx_close_without_payload_reports_1000),
        cmocka_unit_test(test_rx_close_hands_over_code_and_reason),
        cmocka_unit_test(test_rx_rejects_close_frame_of_one_byte_with_1002),
        cmocka_unit_test(test_rx_rejects_invalid_close_codes_with_1002),
        cmocka_unit_test(test_rx_rejects_invalid_utf8_close_reason_with_1007),
        cmocka_unit_test(test_rx_rejects_unmasked_frame_with_1002),
        cmocka_unit_test(test_rx_fails_without_details_when_fail_is_null),
        cmocka_unit_test(test_rx_rejects_reserved_bits_with_1002),
        cmocka_unit_test(test_rx_rejects_reserved_opcodes_with_1002),
        cmocka_unit_test(test_rx_rejects_payload_length_with_top_bit_with_1002),
        cmocka_unit_test(test_rx_rejects_fragmented_control_frame_with_1002),
        cmocka_unit_test(
            test_rx_rejects_control_frame_over_125_bytes_with_1002),
        cmocka_unit_test(
            test_rx_rejects_continuation_without_a_message_with_1002),
        cmocka_unit_test(
            test_rx_rejects_new_message_inside_a_fragmented_one_with_1002),
        cmocka_unit_test(test_rx_rejects_binary_frames_with_1003),
        cmocka_unit_test(test_rx_rejects_invalid_utf8_message_with_1007),
        cmocka_unit_test(
            test_rx_accepts_max_message_and_rejects_one_over_with_1009),
        cmocka_unit_test(test_rx_caps_fragments_per_message_with_1009),
        cmocka_unit_test(test_rx_refuses_a_header_cut_at_every_byte),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
