/*
 * Unit tests of protocol/cluster.c: the cluster channel's message codec
 * (cluster.h has the layout) and the broker URL parser.
 *
 * Messages under test are decoded from an exact-size heap copy, so ASan
 * sees any read past a message's end. Malformed messages are built byte by
 * byte (mkmsg: a "SEQ " prefix, a header, raw fields whose declared length,
 * bytes and trailing NUL can each be wrong); every one must be rejected
 * with SC_EINVAL and an all-zero *out. realloc (the decoder's only
 * allocation) can be failed through the linker's --wrap
 * (tests/protocol/CMakeLists.txt) for the SC_ENOMEM path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cluster.h"
#include "jsonw.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- failing realloc ------------------------------------------------------
 */

void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

static int realloc_fail_at; /* 0: never; k: the k-th call from now fails */
static int realloc_calls;

void *__wrap_realloc(void *p, size_t n)
{
    if (realloc_fail_at && ++realloc_calls == realloc_fail_at)
        return NULL;
    return __real_realloc(p, n);
}

static void fail_realloc_at(int k)
{
    realloc_fail_at = k;
    realloc_calls = 0;
}

/* ---- helpers --------------------------------------------------------------
 */

#define NODE 0x0123456789abcdefULL
#define TOKEN 0xfedcba9876543210ULL
#define NODE_HEX "0123456789abcdef"
#define TOKEN_HEX "fedcba9876543210"

/* A decoded message and the exact-size copy it points into. */
typedef struct dec {
    char *copy;
    sc_cluster_msg_t m;
    int rc;
} dec_t;

static void dec_run(dec_t *d, const char *msg, size_t len)
{
    d->copy = malloc(len ? len : 1);
    assert_non_null(d->copy);
    if (len)
        memcpy(d->copy, msg, len);
    memset(&d->m, 0x5a, sizeof d->m); /* the decoder must clear it */
    d->rc = sc_cluster_decode(d->copy, len, &d->m);
}

static void dec_free(dec_t *d)
{
    sc_cluster_msg_deinit(&d->m);
    free(d->copy);
}

static bool inside(const dec_t *d, const char *p, size_t len)
{
    return p >= d->copy && p < d->copy + len;
}

static bool msg_is_empty(const sc_cluster_msg_t *m)
{
    sc_cluster_msg_t zero;
    memset(&zero, 0, sizeof zero);
    return memcmp(m, &zero, sizeof zero) == 0;
}

/* Encodes "SEQ " + an event body into b. */
static void enc_event(sc_buf_t *b, const char *seq, const sc_emit_t *e)
{
    sc_buf_init(b);
    sc_buf_puts(b, seq);
    sc_buf_putc(b, ' ');
    assert_int_equal(sc_cluster_enc_event(b, NODE, TOKEN, e), SC_OK);
}

/* ---- building raw messages ------------------------------------------------
 */

typedef struct raw {
    char b[1024];
    size_t n;
} raw_t;

static void raw_bytes(raw_t *r, const void *p, size_t n)
{
    assert_true(r->n + n <= sizeof r->b);
    memcpy(r->b + r->n, p, n);
    r->n += n;
}

static void raw_str(raw_t *r, const char *s)
{
    raw_bytes(r, s, strlen(s));
}

/* "SEQ " KIND NODE TOKEN with the given texts (node and token as hex). */
static void raw_head(raw_t *r, const char *seq_sp, char kind, const char *node,
                     const char *token)
{
    r->n = 0;
    raw_str(r, seq_sp);
    raw_bytes(r, &kind, 1);
    raw_str(r, node);
    raw_str(r, token);
}

/* A field declaring `declared` bytes, followed by `n` bytes of p and,
 * when nul, a NUL. */
static void raw_field_x(raw_t *r, char tag, uint32_t declared, const void *p,
                        size_t n, bool nul)
{
    uint8_t h[5] = {(uint8_t)tag, (uint8_t)(declared >> 24),
                    (uint8_t)(declared >> 16), (uint8_t)(declared >> 8),
                    (uint8_t)declared};
    raw_bytes(r, h, sizeof h);
    raw_bytes(r, p, n);
    if (nul)
        raw_bytes(r, "", 1);
}

/* A well-formed field holding the text s. */
static void raw_field(raw_t *r, char tag, const char *s)
{
    raw_field_x(r, tag, (uint32_t)strlen(s), s, strlen(s), true);
}

static void raw_event_head(raw_t *r)
{
    raw_head(r, "7 ", 'E', NODE_HEX, TOKEN_HEX);
}

static void raw_close_head(raw_t *r)
{
    raw_head(r, "0 ", 'C', NODE_HEX, TOKEN_HEX);
}

/* Asserts r decodes (sanity check of the builder itself). */
static void expect_valid(const raw_t *r)
{
    dec_t d;
    dec_run(&d, r->b, r->n);
    assert_int_equal(d.rc, SC_OK);
    dec_free(&d);
}

/* Asserts r is rejected with SC_EINVAL and *out left empty. */
static void expect_invalid_at(const raw_t *r, const char *what, int line)
{
    dec_t d;
    dec_run(&d, r->b, r->n);
    if (d.rc != SC_EINVAL)
        fail_msg("line %d (%s): rc %d, want SC_EINVAL", line, what, d.rc);
    if (!msg_is_empty(&d.m))
        fail_msg("line %d (%s): *out is not empty after SC_EINVAL", line, what);
    dec_free(&d);
}
#define expect_invalid(r, what) expect_invalid_at(r, what, __LINE__)

/* ---- events ---------------------------------------------------------------
 */

static void test_event_every_field_round_trips(void **state)
{
    (void)state;
    const char *paths[] = {"a", "b/c", "d e"};
    const char *aud[] = {"alice", "bob"};
    const char data[] = "{\"x\":[1,2],\"s\":\"\\u00e9\"}";
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "doc:1";
    e.origin = "sess-9";
    e.paths = paths;
    e.npaths = 3;
    e.audience = aud;
    e.naudience = 2;
    e.has_audience = true;
    e.payload = data;
    e.payload_len = strlen(data);
    e.has_payload = true;
    e.seq = 99; /* not written: the broker assigns it */
    sc_buf_t b;
    enc_event(&b, "42", &e);
    const char *s = sc_buf_str(&b);
    size_t len = sc_buf_len(&b);
    assert_memory_equal(s, "42 E" NODE_HEX TOKEN_HEX, 4 + 32);

    dec_t d;
    dec_run(&d, s, len);
    assert_int_equal(d.rc, SC_OK);
    sc_cluster_msg_t *m = &d.m;
    assert_int_equal(m->kind, SC_CLUSTER_EVENT);
    assert_true(m->seq == 42);
    assert_true(m->node == NODE);
    assert_true(m->token == TOKEN);
    assert_string_equal(m->scope, "doc:1");
    assert_string_equal(m->origin, "sess-9");
    assert_null(m->user);
    assert_int_equal(m->npaths, 3);
    assert_string_equal(m->paths[0], "a");
    assert_string_equal(m->paths[1], "b/c");
    assert_string_equal(m->paths[2], "d e");
    assert_true(m->has_audience);
    assert_int_equal(m->naudience, 2);
    assert_string_equal(m->audience[0], "alice");
    assert_string_equal(m->audience[1], "bob");
    assert_int_equal(m->data_len, strlen(data));
    assert_memory_equal(m->data, data, strlen(data));
    assert_int_equal(m->data[m->data_len], '\0');
    /* no copies: every field points into the message */
    assert_true(inside(&d, m->scope, len));
    assert_true(inside(&d, m->origin, len));
    assert_true(inside(&d, m->data, len));
    for (size_t i = 0; i < m->npaths; i++)
        assert_true(inside(&d, m->paths[i], len));
    for (size_t i = 0; i < m->naudience; i++)
        assert_true(inside(&d, m->audience[i], len));
    dec_free(&d);
    sc_buf_deinit(&b);
}

static void test_event_layout_is_exact(void **state)
{
    (void)state;
    /* the header comment's layout, byte for byte: a scope and data */
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "s";
    e.payload = "[1]";
    e.payload_len = 3;
    e.has_payload = true;
    sc_buf_t b;
    enc_event(&b, "5", &e);
    static const char want[] = "5 E" NODE_HEX TOKEN_HEX "s\0\0\0\1s\0"
                               "d\0\0\0\3[1]\0";
    assert_int_equal(sc_buf_len(&b), sizeof want - 1);
    assert_memory_equal(sc_buf_str(&b), want, sizeof want - 1);
    sc_buf_deinit(&b);
}

static void test_event_with_scope_only(void **state)
{
    (void)state;
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "only";
    sc_buf_t b;
    enc_event(&b, "1", &e);
    dec_t d;
    dec_run(&d, sc_buf_str(&b), sc_buf_len(&b));
    assert_int_equal(d.rc, SC_OK);
    assert_int_equal(d.m.kind, SC_CLUSTER_EVENT);
    assert_true(d.m.seq == 1);
    assert_string_equal(d.m.scope, "only");
    assert_null(d.m.origin);
    assert_null(d.m.user);
    assert_int_equal(d.m.npaths, 0);
    assert_false(d.m.has_audience);
    assert_int_equal(d.m.naudience, 0);
    assert_null(d.m.data); /* no payload: absent, not empty */
    assert_int_equal(d.m.data_len, 0);
    dec_free(&d);
    sc_buf_deinit(&b);
}

static void test_event_audience_without_ids_and_empty_payload(void **state)
{
    (void)state;
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "x";
    e.has_audience = true; /* 0 ids: nobody */
    e.payload = "";
    e.payload_len = 0;
    e.has_payload = true; /* empty, distinct from absent */
    sc_buf_t b;
    enc_event(&b, "3", &e);
    dec_t d;
    dec_run(&d, sc_buf_str(&b), sc_buf_len(&b));
    assert_int_equal(d.rc, SC_OK);
    assert_true(d.m.has_audience);
    assert_int_equal(d.m.naudience, 0);
    assert_non_null(d.m.data);
    assert_int_equal(d.m.data_len, 0);
    sc_emit_t back;
    sc_cluster_msg_to_emit(&d.m, &back);
    assert_true(back.has_audience);
    assert_int_equal(back.naudience, 0);
    assert_true(back.has_payload);
    assert_int_equal(back.payload_len, 0);
    dec_free(&d);
    sc_buf_deinit(&b);
}

static void test_event_many_paths_and_ids(void **state)
{
    (void)state;
    /* enough entries to grow the arrays several times */
    enum { N = 37 };
    char names[N][8];
    const char *v[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "n%d", i);
        v[i] = names[i];
    }
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "many";
    e.paths = v;
    e.npaths = N;
    e.audience = v;
    e.naudience = N;
    e.has_audience = true;
    sc_buf_t b;
    enc_event(&b, "8", &e);
    dec_t d;
    dec_run(&d, sc_buf_str(&b), sc_buf_len(&b));
    assert_int_equal(d.rc, SC_OK);
    assert_int_equal(d.m.npaths, N);
    assert_int_equal(d.m.naudience, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(d.m.paths[i], names[i]);
        assert_string_equal(d.m.audience[i], names[i]);
    }
    dec_free(&d);
    sc_buf_deinit(&b);
}

static void test_seq_prefix_values(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t seq;
    } cases[] = {
        {"0", 0},
        {"1", 1},
        {"007", 7},
        {"18446744073709551615", UINT64_MAX}, /* 20 digits, the maximum */
        {"09999999999999999999", 9999999999999999999ULL},
    };
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "s";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sc_buf_t b;
        enc_event(&b, cases[i].text, &e);
        dec_t d;
        dec_run(&d, sc_buf_str(&b), sc_buf_len(&b));
        if (d.rc != SC_OK)
            fail_msg("seq %s: rc %d", cases[i].text, d.rc);
        if (d.m.seq != cases[i].seq)
            fail_msg("seq %s: decoded %llu", cases[i].text,
                     (unsigned long long)d.m.seq);
        dec_free(&d);
        sc_buf_deinit(&b);
    }
}

static void test_node_and_token_extremes(void **state)
{
    (void)state;
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "s";
    uint64_t v[][2] = {
        {0, 0}, {UINT64_MAX, UINT64_MAX}, {1, 0x8000000000000000ULL}};
    for (size_t i = 0; i < 3; i++) {
        sc_buf_t b;
        sc_buf_init(&b);
        sc_buf_puts(&b, "1 ");
        assert_int_equal(sc_cluster_enc_event(&b, v[i][0], v[i][1], &e), SC_OK);
        dec_t d;
        dec_run(&d, sc_buf_str(&b), sc_buf_len(&b));
        assert_int_equal(d.rc, SC_OK);
        assert_true(d.m.node == v[i][0]);
        assert_true(d.m.token == v[i][1]);
        dec_free(&d);
        sc_buf_deinit(&b);
    }
}

/* ---- closes ---------------------------------------------------------------
 */

static void expect_close(const char *scope, const char *user)
{
    sc_buf_t b;
    sc_buf_init(&b);
    sc_buf_puts(&b, "0 ");
    assert_int_equal(sc_cluster_enc_close(&b, NODE, TOKEN, scope, user), SC_OK);
    dec_t d;
    dec_run(&d, sc_buf_str(&b), sc_buf_len(&b));
    assert_int_equal(d.rc, SC_OK);
    assert_int_equal(d.m.kind, SC_CLUSTER_CLOSE);
    assert_true(d.m.seq == 0);
    assert_true(d.m.node == NODE);
    assert_true(d.m.token == TOKEN);
    if (scope)
        assert_string_equal(d.m.scope, scope);
    else
        assert_null(d.m.scope);
    if (user)
        assert_string_equal(d.m.user, user);
    else
        assert_null(d.m.user);
    assert_null(d.m.origin);
    assert_int_equal(d.m.npaths, 0);
    assert_false(d.m.has_audience);
    assert_null(d.m.data);
    dec_free(&d);
    sc_buf_deinit(&b);
}

static void test_close_scope_user_or_both(void **state)
{
    (void)state;
    expect_close("doc:1", NULL);
    expect_close(NULL, "alice");
    expect_close("doc:1", "alice");
    /* the layout of a close */
    sc_buf_t b;
    sc_buf_init(&b);
    assert_int_equal(sc_cluster_enc_close(&b, NODE, TOKEN, "s", "u"), SC_OK);
    static const char want[] = "C" NODE_HEX TOKEN_HEX "s\0\0\0\1s\0"
                               "u\0\0\0\1u\0";
    assert_int_equal(sc_buf_len(&b), sizeof want - 1);
    assert_memory_equal(sc_buf_str(&b), want, sizeof want - 1);
    sc_buf_deinit(&b);
}

static void test_close_without_scope_or_user_closes_everything(void **state)
{
    (void)state;
    sc_buf_t b;
    sc_buf_init(&b);
    sc_buf_puts(&b, "0 ");
    assert_int_equal(sc_cluster_enc_close(&b, NODE, TOKEN, NULL, NULL), SC_OK);
    assert_int_equal(sc_buf_len(&b), 2 + 33); /* the header only */
    sc_cluster_msg_t m;
    assert_int_equal(sc_cluster_decode(sc_buf_str(&b), sc_buf_len(&b), &m),
                     SC_OK);
    assert_int_equal(m.kind, SC_CLUSTER_CLOSE);
    assert_null(m.scope);
    assert_null(m.user);
    sc_cluster_msg_deinit(&m);
    sc_buf_deinit(&b);
}

/* ---- malformed messages ---------------------------------------------------
 */

static void test_decode_rejects_bad_prefix_and_header(void **state)
{
    (void)state;
    raw_t r;
    raw_event_head(&r);
    raw_field(&r, 's', "s");
    expect_valid(&r);

    /* the SEQ prefix */
    r.n = 0;
    raw_bytes(&r, "E" NODE_HEX TOKEN_HEX, 33);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "no SEQ prefix");
    raw_head(&r, "7", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "no space after SEQ");
    raw_head(&r, "7_", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "another byte in place of the space");
    raw_head(&r, "7\t", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "a tab in place of the space");
    raw_head(&r, " 7 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "space before SEQ");
    raw_head(&r, " ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "empty SEQ");
    raw_head(&r, "1x2 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "non-digit in SEQ");
    raw_head(&r, "-1 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "negative SEQ");
    raw_head(&r, "+1 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "signed SEQ");
    raw_head(&r, "18446744073709551616 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "SEQ = UINT64_MAX + 1");
    raw_head(&r, "99999999999999999999 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "SEQ > UINT64_MAX, 20 digits");
    raw_head(&r, "100000000000000000000 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "SEQ of 21 digits");
    raw_head(&r, "000000000000000000001 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "SEQ of 21 digits, small value");
    r.n = 0;
    raw_str(&r, "123");
    expect_invalid(&r, "SEQ only");
    r.n = 0;
    raw_str(&r, "123 ");
    expect_invalid(&r, "SEQ and space only");
    r.n = 0;
    expect_invalid(&r, "empty message");

    /* the kind */
    raw_head(&r, "7 ", 'X', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "unknown kind X");
    raw_head(&r, "7 ", 'e', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "kind e (lower case)");
    raw_head(&r, "7 ", '\0', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "kind NUL");

    /* node and token */
    raw_head(&r, "7 ", 'E', "0123456789abcdeg", TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "bad hex (g) in node");
    raw_head(&r, "7 ", 'E', "x123456789abcdef", TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "bad hex (x) first in node");
    raw_head(&r, "7 ", 'E', "01234567 9abcdef", TOKEN_HEX);
    raw_field(&r, 's', "s");
    expect_invalid(&r, "space in node");
    raw_head(&r, "7 ", 'E', NODE_HEX, "fedcba987654321z");
    raw_field(&r, 's', "s");
    expect_invalid(&r, "bad hex (z) in token");
    raw_head(&r, "7 ", 'E', NODE_HEX, "/edcba9876543210");
    raw_field(&r, 's', "s");
    expect_invalid(&r, "bad hex (/) first in token");
    raw_head(&r, "7 ", 'E', "0000000000000000", "fedcba98 6543210");
    raw_field(&r, 's', "s");
    expect_invalid(&r, "bad token after a zero node: *out all zero");

    /* a header cut short */
    r.n = 0;
    raw_str(&r, "7 E" NODE_HEX "fedcba987654321"); /* token: 15 digits */
    expect_invalid(&r, "header one byte short");
    r.n = 0;
    raw_str(&r, "7 E" NODE_HEX);
    expect_invalid(&r, "header without token");
    r.n = 0;
    raw_str(&r, "7 E");
    expect_invalid(&r, "header with kind only");
    raw_head(&r, "7 ", 'E', NODE_HEX, TOKEN_HEX);
    expect_invalid(&r, "an event header without fields (no scope)");
}

static void test_decode_rejects_broken_fields(void **state)
{
    (void)state;
    raw_t r;

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_bytes(&r, "p\0\0\0", 4);
    expect_invalid(&r, "field header cut (4 of 5 bytes)");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_bytes(&r, "p\0\0\0\0", 5);
    expect_invalid(&r, "field header without its NUL");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_bytes(&r, "x", 1);
    expect_invalid(&r, "one byte of trailing junk");

    raw_event_head(&r);
    raw_field_x(&r, 's', 10, "abc", 3, true);
    expect_invalid(&r, "scope length past the end");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field_x(&r, 'd', 4, "[1]", 3, true);
    expect_invalid(&r, "data length one past the end");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field_x(&r, 'd', 0xffffffffu, "[1]", 3, true);
    expect_invalid(&r, "length 0xffffffff");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field_x(&r, 'd', 0x04000001u, "[1]", 3, true);
    expect_invalid(&r, "length past the field limit");

    raw_event_head(&r);
    raw_field_x(&r, 's', 1, "sX", 2, false);
    raw_field(&r, 'p', "p");
    expect_invalid(&r, "no NUL after a field");

    raw_event_head(&r);
    raw_field_x(&r, 's', 1, "s", 1, false);
    expect_invalid(&r, "no NUL after the last field (message ends)");

    raw_event_head(&r);
    raw_field_x(&r, 's', 3, "a\0b", 3, true);
    expect_invalid(&r, "NUL inside the scope");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field_x(&r, 'd', 3, "[\0]", 3, true);
    expect_invalid(&r, "NUL inside the data");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field_x(&r, 'p', 2, "\0p", 2, true);
    expect_invalid(&r, "NUL first in a path");
}

static void test_decode_rejects_broken_rules(void **state)
{
    (void)state;
    raw_t r;

    /* builder sanity: each base below is valid as it starts */
    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'o', "o");
    raw_field(&r, 'p', "p");
    raw_field(&r, 'A', "");
    raw_field(&r, 'a', "alice");
    raw_field(&r, 'd', "{}");
    expect_valid(&r);
    raw_close_head(&r);
    raw_field(&r, 'u', "bob");
    raw_field(&r, 's', "s");
    expect_valid(&r);

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 's', "t");
    expect_invalid(&r, "duplicate scope");

    raw_event_head(&r);
    raw_field(&r, 's', "");
    expect_invalid(&r, "empty scope");

    raw_close_head(&r);
    raw_field(&r, 's', "");
    raw_field(&r, 'u', "bob");
    expect_invalid(&r, "empty scope in a close");

    raw_close_head(&r);
    raw_field(&r, 'u', "");
    expect_invalid(&r, "empty user in a close");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'a', "alice");
    raw_field(&r, 'A', "");
    expect_invalid(&r, "'a' before 'A'");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'a', "alice");
    expect_invalid(&r, "'a' without 'A'");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'A', "");
    raw_field(&r, 'A', "");
    expect_invalid(&r, "duplicate 'A'");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'A', "x");
    expect_invalid(&r, "'A' with content");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'z', "z");
    expect_invalid(&r, "unknown tag z");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'S', "S");
    expect_invalid(&r, "unknown tag S");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field_x(&r, '\0', 0, "", 0, true);
    expect_invalid(&r, "tag NUL");

    raw_event_head(&r);
    raw_field(&r, 'o', "o");
    raw_field(&r, 'p', "p");
    raw_field(&r, 'd', "{}");
    expect_invalid(&r, "an event without scope");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'o', "o");
    raw_field(&r, 'o', "o");
    expect_invalid(&r, "duplicate origin");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'd', "1");
    raw_field(&r, 'd', "2");
    expect_invalid(&r, "duplicate data");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'd', "");
    raw_field(&r, 'd', "");
    expect_invalid(&r, "duplicate empty data");

    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'u', "bob");
    expect_invalid(&r, "user in an event");

    raw_close_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'o', "o");
    expect_invalid(&r, "origin in a close");

    raw_close_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'p', "p");
    expect_invalid(&r, "path in a close");

    raw_close_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'd', "{}");
    expect_invalid(&r, "data in a close");

    raw_close_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'A', "");
    expect_invalid(&r, "audience in a close");

    raw_close_head(&r);
    raw_field(&r, 'u', "bob");
    raw_field(&r, 'u', "eve");
    expect_invalid(&r, "duplicate user");

    raw_close_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 's', "t");
    expect_invalid(&r, "duplicate scope in a close");

    /* rejected after arrays were allocated: they are freed (ASan) */
    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'p', "p1");
    raw_field(&r, 'p', "p2");
    raw_field(&r, 'A', "");
    raw_field(&r, 'a', "alice");
    raw_field(&r, 'u', "bob");
    expect_invalid(&r, "user after paths and audience");
}

static void test_decode_field_size_limit(void **state)
{
    (void)state;
    /* a field may not exceed SC_CLUSTER_FIELD_MAX (Redis's own bound on a
     * string): a length past it is refused before anything is read, and
     * the encoders refuse to write one */
    const char head[] = "1 E" NODE_HEX TOKEN_HEX "s\0\0\0\1s";
    size_t hlen = sizeof head; /* with the scope's NUL */
    const size_t big = (size_t)1 << 20;
    char *msg = malloc(hlen + 5 + big + 1);
    assert_non_null(msg);
    memcpy(msg, head, hlen);
    for (int k = 0; k < 2; k++) {
        size_t n = k ? (size_t)SC_CLUSTER_FIELD_MAX + 1 : big;
        char *f = msg + hlen;
        f[0] = 'd';
        f[1] = (char)(n >> 24);
        f[2] = (char)(n >> 16);
        f[3] = (char)(n >> 8);
        f[4] = (char)n;
        memset(f + 5, 'x', big);
        f[5 + big] = '\0';
        sc_cluster_msg_t m;
        int rc = sc_cluster_decode(msg, hlen + 5 + big + 1, &m);
        if (!k) {
            assert_int_equal(rc, SC_OK);
            assert_int_equal(m.data_len, big);
        } else {
            assert_int_equal(rc, SC_EINVAL);
            assert_true(msg_is_empty(&m));
        }
        sc_cluster_msg_deinit(&m);
    }
    free(msg);

    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "s";
    e.payload = "x"; /* never read: the length is refused first */
    e.payload_len = (size_t)SC_CLUSTER_FIELD_MAX + 1;
    e.has_payload = true;
    sc_buf_t b;
    sc_buf_init(&b);
    assert_int_equal(sc_cluster_enc_event(&b, 1, 2, &e), SC_EINVAL);
    sc_buf_deinit(&b);
}

static void test_decode_every_cut_of_an_event(void **state)
{
    (void)state;
    /* cut at every byte: valid only where a field ends, after the scope */
    const char *paths[] = {"p"};
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "sc";
    e.paths = paths;
    e.npaths = 1;
    e.payload = "{}";
    e.payload_len = 2;
    e.has_payload = true;
    sc_buf_t b;
    enc_event(&b, "12", &e);
    size_t len = sc_buf_len(&b);
    size_t head = 3 + 33;
    size_t after_scope = head + 5 + 2 + 1, after_path = after_scope + 5 + 1 + 1;
    assert_int_equal(len, after_path + 5 + 2 + 1);
    for (size_t cut = 0; cut < len; cut++) {
        dec_t d;
        dec_run(&d, sc_buf_str(&b), cut);
        bool valid = cut == after_scope || cut == after_path;
        if (valid ? d.rc != SC_OK : d.rc != SC_EINVAL)
            fail_msg("cut at %zu of %zu: rc %d", cut, len, d.rc);
        if (!valid && !msg_is_empty(&d.m))
            fail_msg("cut at %zu: *out not empty", cut);
        if (cut == after_path) {
            assert_int_equal(d.m.npaths, 1);
            assert_null(d.m.data);
        }
        dec_free(&d);
    }
    sc_buf_deinit(&b);
}

static void test_decode_out_of_memory(void **state)
{
    (void)state;
    raw_t r;
    raw_event_head(&r);
    raw_field(&r, 's', "s");
    raw_field(&r, 'p', "p1");
    raw_field(&r, 'p', "p2");
    raw_field(&r, 'A', "");
    raw_field(&r, 'a', "a1");
    raw_field(&r, 'a', "a2");
    /* reallocs: paths 1, paths 2, audience 1, audience 2 */
    for (int k = 1; k <= 4; k++) {
        dec_t d;
        fail_realloc_at(k);
        dec_run(&d, r.b, r.n);
        fail_realloc_at(0);
        if (d.rc != SC_ENOMEM)
            fail_msg("realloc %d failed: rc %d, want SC_ENOMEM", k, d.rc);
        assert_true(msg_is_empty(&d.m)); /* and nothing leaks (ASan) */
        dec_free(&d);
    }
    dec_t d;
    fail_realloc_at(5);
    dec_run(&d, r.b, r.n);
    fail_realloc_at(0);
    assert_int_equal(d.rc, SC_OK);
    assert_int_equal(d.m.npaths, 2);
    assert_int_equal(d.m.naudience, 2);
    dec_free(&d);
}

/* ---- to_emit --------------------------------------------------------------
 */

static void test_msg_to_emit_copies_fields_and_seq(void **state)
{
    (void)state;
    raw_t r;
    raw_head(&r, "12345678901234 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "doc:7");
    raw_field(&r, 'o', "sess");
    raw_field(&r, 'p', "a");
    raw_field(&r, 'p', "b");
    raw_field(&r, 'A', "");
    raw_field(&r, 'a', "carol");
    raw_field(&r, 'd', "{\"k\":true}");
    dec_t d;
    dec_run(&d, r.b, r.n);
    assert_int_equal(d.rc, SC_OK);
    sc_emit_t e;
    memset(&e, 0xa5, sizeof e); /* every field must be written */
    sc_cluster_msg_to_emit(&d.m, &e);
    assert_ptr_equal(e.scope, d.m.scope);
    assert_ptr_equal(e.origin, d.m.origin);
    assert_ptr_equal(e.paths, d.m.paths);
    assert_int_equal(e.npaths, 2);
    assert_string_equal(e.paths[0], "a");
    assert_string_equal(e.paths[1], "b");
    assert_true(e.has_audience);
    assert_ptr_equal(e.audience, d.m.audience);
    assert_int_equal(e.naudience, 1);
    assert_string_equal(e.audience[0], "carol");
    assert_true(e.has_payload);
    assert_ptr_equal(e.payload, d.m.data);
    assert_int_equal(e.payload_len, strlen("{\"k\":true}"));
    assert_true(e.seq == 12345678901234ULL);
    dec_free(&d);

    /* the bare event: no origin, no paths, no audience, no payload */
    raw_head(&r, "0 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "bare");
    dec_run(&d, r.b, r.n);
    assert_int_equal(d.rc, SC_OK);
    memset(&e, 0xa5, sizeof e);
    sc_cluster_msg_to_emit(&d.m, &e);
    assert_string_equal(e.scope, "bare");
    assert_null(e.origin);
    assert_int_equal(e.npaths, 0);
    assert_false(e.has_audience);
    assert_int_equal(e.naudience, 0);
    assert_false(e.has_payload);
    assert_null(e.payload);
    assert_int_equal(e.payload_len, 0);
    assert_true(e.seq == 0); /* 0: the bus assigns the next */
    dec_free(&d);
}

static void test_encode_of_decoded_event_is_identical(void **state)
{
    (void)state;
    /* decode -> to_emit -> encode gives the same body back */
    raw_t r;
    raw_head(&r, "9 ", 'E', NODE_HEX, TOKEN_HEX);
    raw_field(&r, 's', "doc");
    raw_field(&r, 'o', "");
    raw_field(&r, 'p', "x");
    raw_field(&r, 'p', "");
    raw_field(&r, 'A', "");
    raw_field(&r, 'a', "u1");
    raw_field(&r, 'd', "null");
    dec_t d;
    dec_run(&d, r.b, r.n);
    assert_int_equal(d.rc, SC_OK);
    sc_emit_t e;
    sc_cluster_msg_to_emit(&d.m, &e);
    sc_buf_t b;
    enc_event(&b, "9", &e);
    assert_int_equal(sc_buf_len(&b), r.n);
    assert_memory_equal(sc_buf_str(&b), r.b, r.n);
    sc_buf_deinit(&b);
    dec_free(&d);
}

/* ---- the epoch after the seq ----------------------------------------------
 */

/* A body (everything after "SEQ ") of every kind the channel carries, for
 * the epoch rules. */
typedef struct body {
    char kind;
    sc_buf_t b;
} body_t;

enum { NBODIES = 7 };

static void bodies_init(body_t v[NBODIES])
{
    static char sess[] = "sess-1", user[] = "alice";
    sc_conn_t c = {.session_id = sess, .user_id = user, .connected_at = 12};
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "s";
    static const char kinds[NBODIES] = {
        SC_CLUSTER_EVENT, SC_CLUSTER_CLOSE, SC_CLUSTER_JOIN, SC_CLUSTER_LEAVE,
        SC_CLUSTER_END,   SC_CLUSTER_ALIVE, SC_CLUSTER_SYNC};
    for (int i = 0; i < NBODIES; i++) {
        body_t *x = &v[i];
        x->kind = kinds[i];
        sc_buf_init(&x->b);
        int rc;
        switch (x->kind) {
        case SC_CLUSTER_EVENT:
            rc = sc_cluster_enc_event(&x->b, NODE, TOKEN, &e);
            break;
        case SC_CLUSTER_CLOSE:
            rc = sc_cluster_enc_close(&x->b, NODE, TOKEN, "s", NULL);
            break;
        case SC_CLUSTER_JOIN:
        case SC_CLUSTER_LEAVE:
            rc = sc_cluster_enc_presence(&x->b, x->kind, NODE, TOKEN, "s", &c);
            break;
        default:
            rc = sc_cluster_enc_bare(&x->b, x->kind, NODE, TOKEN);
            break;
        }
        assert_int_equal(rc, SC_OK);
    }
}

static void bodies_deinit(body_t v[NBODIES])
{
    for (int i = 0; i < NBODIES; i++)
        sc_buf_deinit(&v[i].b);
}

/* Decodes prefix + body (an exact-size copy) into d. */
static void dec_prefixed(dec_t *d, const char *prefix, sc_buf_t *body)
{
    sc_buf_t m;
    sc_buf_init(&m);
    sc_buf_puts(&m, prefix);
    sc_buf_put(&m, sc_buf_str(body), sc_buf_len(body));
    dec_run(d, sc_buf_str(&m), sc_buf_len(&m));
    sc_buf_deinit(&m);
}

/* prefix + body is rejected with SC_EINVAL and *out left empty. */
static void expect_prefix_invalid_at(const char *prefix, body_t *body, int line)
{
    dec_t d;
    dec_prefixed(&d, prefix, &body->b);
    if (d.rc != SC_EINVAL)
        fail_msg("line %d: \"%s\" + %c body: rc %d, want SC_EINVAL", line,
                 prefix, body->kind, d.rc);
    if (!msg_is_empty(&d.m))
        fail_msg("line %d: \"%s\" + %c body: *out is not empty", line, prefix,
                 body->kind);
    dec_free(&d);
}
#define expect_prefix_invalid(prefix, body)                                    \
    expect_prefix_invalid_at(prefix, body, __LINE__)

static void test_event_epoch_after_the_seq(void **state)
{
    (void)state;
    const char *paths[] = {"a"};
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "doc:1";
    e.paths = paths;
    e.npaths = 1;
    e.payload = "[1]";
    e.payload_len = 3;
    e.has_payload = true;
    e.epoch = 0x77; /* not written: the script gives it */
    sc_buf_t b;
    enc_event(&b, "7/00000000000000ab", &e);
    size_t len = sc_buf_len(&b);
    assert_memory_equal(sc_buf_str(&b), "7/00000000000000ab E" NODE_HEX,
                        20 + 16);
    dec_t d;
    dec_run(&d, sc_buf_str(&b), len);
    assert_int_equal(d.rc, SC_OK);
    assert_int_equal(d.m.kind, SC_CLUSTER_EVENT);
    assert_true(d.m.seq == 7);
    assert_true(d.m.epoch == 0xab);
    assert_true(d.m.node == NODE);
    assert_true(d.m.token == TOKEN);
    assert_string_equal(d.m.scope, "doc:1");
    assert_int_equal(d.m.npaths, 1);
    assert_string_equal(d.m.paths[0], "a");
    assert_int_equal(d.m.data_len, 3);
    assert_memory_equal(d.m.data, "[1]", 3);
    assert_true(inside(&d, d.m.scope, len));
    sc_emit_t back;
    memset(&back, 0xa5, sizeof back); /* every field must be written */
    sc_cluster_msg_to_emit(&d.m, &back);
    assert_true(back.seq == 7);
    assert_true(back.epoch == 0xab);
    assert_ptr_equal(back.scope, d.m.scope);
    assert_int_equal(back.npaths, 1);
    assert_true(back.has_payload);
    dec_free(&d);
    sc_buf_deinit(&b);

    /* every value of 16 digits but 0, with any seq above 0 */
    static const struct {
        const char *text;
        uint64_t seq, epoch;
    } cases[] = {
        {"1/0000000000000001", 1, 1},
        {"42/0123456789abcdef", 42, 0x0123456789abcdefULL},
        {"007/fedcba9876543210", 7, 0xfedcba9876543210ULL},
        {"18446744073709551615/ffffffffffffffff", UINT64_MAX, UINT64_MAX},
        {"3/8000000000000000", 3, 0x8000000000000000ULL},
    };
    e.npaths = 0;
    e.has_payload = false;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enc_event(&b, cases[i].text, &e);
        dec_run(&d, sc_buf_str(&b), sc_buf_len(&b));
        if (d.rc != SC_OK)
            fail_msg("%s: rc %d", cases[i].text, d.rc);
        if (d.m.seq != cases[i].seq || d.m.epoch != cases[i].epoch)
            fail_msg("%s: decoded %llu/%016llx", cases[i].text,
                     (unsigned long long)d.m.seq,
                     (unsigned long long)d.m.epoch);
        memset(&back, 0xa5, sizeof back);
        sc_cluster_msg_to_emit(&d.m, &back);
        assert_true(back.seq == cases[i].seq);
        assert_true(back.epoch == cases[i].epoch);
        dec_free(&d);
        sc_buf_deinit(&b);
    }
}

static void test_event_without_epoch_has_epoch_zero(void **state)
{
    (void)state;
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "s";
    static const char *const seqs[] = {"7", "0", "18446744073709551615"};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        sc_buf_t b;
        enc_event(&b, seqs[i], &e);
        dec_t d;
        dec_run(&d, sc_buf_str(&b), sc_buf_len(&b)); /* *out starts 0x5a */
        assert_int_equal(d.rc, SC_OK);
        assert_true(d.m.epoch == 0);
        sc_emit_t back;
        memset(&back, 0xa5, sizeof back);
        sc_cluster_msg_to_emit(&d.m, &back);
        assert_true(back.epoch == 0); /* the bus: no epoch to adopt */
        dec_free(&d);
        sc_buf_deinit(&b);
    }
    /* nor do other kinds (a close) */
    sc_buf_t b;
    sc_buf_init(&b);
    sc_buf_puts(&b, "0 ");
    assert_int_equal(sc_cluster_enc_close(&b, NODE, TOKEN, "s", NULL), SC_OK);
    dec_t d;
    dec_run(&d, sc_buf_str(&b), sc_buf_len(&b));
    assert_int_equal(d.rc, SC_OK);
    assert_true(d.m.epoch == 0);
    dec_free(&d);
    sc_buf_deinit(&b);
}

static void test_decode_rejects_bad_epoch(void **state)
{
    (void)state;
    body_t v[NBODIES];
    bodies_init(v);
    body_t *ev = &v[0];
    assert_int_equal(ev->kind, SC_CLUSTER_EVENT);

    /* builder sanity: an event with an epoch, and every body with a seq
     * and no epoch, decode */
    dec_t d;
    dec_prefixed(&d, "7/00000000000000ab ", &ev->b);
    assert_int_equal(d.rc, SC_OK);
    dec_free(&d);
    for (int i = 0; i < NBODIES; i++) {
        dec_prefixed(&d, "7 ", &v[i].b);
        if (d.rc != SC_OK)
            fail_msg("\"7 \" + %c body: rc %d", v[i].kind, d.rc);
        assert_int_equal(d.m.kind, v[i].kind);
        dec_free(&d);
    }

    /* only after a seq above 0 */
    expect_prefix_invalid("0/00000000000000ab ", ev);
    expect_prefix_invalid("00/00000000000000ab ", ev);
    expect_prefix_invalid("/00000000000000ab ", ev);
    expect_prefix_invalid(" 7/00000000000000ab ", ev);
    /* never all zero (0 means none) */
    expect_prefix_invalid("7/0000000000000000 ", ev);
    /* exactly 16 lowercase hex digits */
    expect_prefix_invalid("7/0000000000000ab ", ev);   /* 15 */
    expect_prefix_invalid("7/000000000000000ab ", ev); /* 17 */
    expect_prefix_invalid("7/ab ", ev);
    expect_prefix_invalid("7/00000000000000AB ", ev);
    expect_prefix_invalid("7/00000000000000aB ", ev);
    expect_prefix_invalid("7/A000000000000000 ", ev);
    expect_prefix_invalid("7/FFFFFFFFFFFFFFFF ", ev);
    expect_prefix_invalid("7/00000000000000ag ", ev);
    expect_prefix_invalid("7/0x000000000000ab ", ev);
    expect_prefix_invalid("7/-00000000000000a ", ev);
    expect_prefix_invalid("7/ 00000000000000ab ", ev);
    /* "/" without digits */
    expect_prefix_invalid("7/ ", ev);
    expect_prefix_invalid("7/", ev);
    expect_prefix_invalid("7//00000000000000ab ", ev);
    /* the space after the epoch */
    expect_prefix_invalid("7/00000000000000ab", ev);
    expect_prefix_invalid("7/00000000000000ab_", ev);
    expect_prefix_invalid("7/00000000000000ab\t", ev);
    expect_prefix_invalid("7/00000000000000ab/00000000000000cd ", ev);
    expect_prefix_invalid("7 /00000000000000ab ", ev);
    /* only for an event */
    for (int i = 1; i < NBODIES; i++)
        expect_prefix_invalid("7/00000000000000ab ", &v[i]);

    /* a message ending inside or right after the epoch */
    static const char *const cut[] = {"7/", "7/0", "7/00000000000000a",
                                      "7/00000000000000ab",
                                      "7/00000000000000ab "};
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        raw_t r = {.n = 0};
        raw_str(&r, cut[i]);
        expect_invalid(&r, cut[i]);
    }
    bodies_deinit(v);
}

static void test_decode_every_cut_of_an_event_with_epoch(void **state)
{
    (void)state;
    /* cut at every byte, through the epoch too: only the whole message
     * (its scope is its only field) is valid */
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "sc";
    sc_buf_t b;
    enc_event(&b, "12/00000000000000ab", &e);
    size_t len = sc_buf_len(&b);
    assert_int_equal(len, 20 + 33 + 5 + 2 + 1);
    for (size_t cut = 0; cut <= len; cut++) {
        dec_t d;
        dec_run(&d, sc_buf_str(&b), cut);
        bool valid = cut == len;
        if (valid ? d.rc != SC_OK : d.rc != SC_EINVAL)
            fail_msg("cut at %zu of %zu: rc %d", cut, len, d.rc);
        if (!valid && !msg_is_empty(&d.m))
            fail_msg("cut at %zu: *out not empty", cut);
        if (valid)
            assert_true(d.m.epoch == 0xab);
        dec_free(&d);
    }
    sc_buf_deinit(&b);
}

/* ---- the broker URL -------------------------------------------------------
 */

static void expect_url(const char *url, const char *host, int port, int db)
{
    char h[256], why[128] = "";
    int p = -7, n = -7;
    int rc = sc_cluster_parse_url(url, h, sizeof h, &p, &n, why, sizeof why);
    if (rc != SC_OK)
        fail_msg("%s: rc %d (%s)", url, rc, why);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
    assert_int_equal(n, db);
}

/* Rejected, with a reason (containing `about` when not NULL). */
static void expect_bad_url_why(const char *url, size_t hostlen,
                               const char *about)
{
    char h[256], why[128];
    int p, n;
    assert_true(hostlen <= sizeof h);
    memset(why, 0, sizeof why);
    int rc = sc_cluster_parse_url(url, h, hostlen, &p, &n, why, sizeof why);
    if (rc != SC_EINVAL)
        fail_msg("%s: rc %d, want SC_EINVAL", url, rc);
    if (why[0] == '\0')
        fail_msg("%s: no reason given", url);
    assert_non_null(memchr(why, '\0', sizeof why));
    if (about && !strstr(why, about))
        fail_msg("%s: the reason \"%s\" does not mention %s", url, why, about);
}

static void expect_bad_url_n(const char *url, size_t hostlen)
{
    expect_bad_url_why(url, hostlen, NULL);
}

static void expect_bad_url(const char *url)
{
    expect_bad_url_n(url, 256);
}

static void test_url_accepted(void **state)
{
    (void)state;
    expect_url("redis://h", "h", 6379, 0);
    expect_url("redis://h:1234", "h", 1234, 0);
    expect_url("redis://h:1234/3", "h", 1234, 3);
    expect_url("redis://[::1]:6380/2", "::1", 6380, 2);
    expect_url("redis://[::1]", "::1", 6379, 0);
    expect_url("redis://h/", "h", 6379, 0);
    expect_url("redis://h:1234/", "h", 1234, 0);
    expect_url("redis://h/15", "h", 6379, 15);
    expect_url("redis://h/0", "h", 6379, 0);
    expect_url("redis://10.0.0.7:1", "10.0.0.7", 1, 0);
    expect_url("redis://redis.example.com:65535/1", "redis.example.com", 65535,
               1);
}

static void test_url_rejected(void **state)
{
    (void)state;
    expect_bad_url("http://h");
    expect_bad_url("rediss://h");
    expect_bad_url("redis:/h");
    expect_bad_url("");
    expect_bad_url("redis://");
    expect_bad_url("redis://:6379");
    expect_bad_url("redis:///3");
    expect_bad_url("redis://[]");
    expect_bad_url("redis://h:0");
    expect_bad_url("redis://h:65536");
    expect_bad_url("redis://h:99999");
    expect_bad_url("redis://h:123456");
    expect_bad_url("redis://h:12ab");
    expect_bad_url("redis://h:");
    expect_bad_url("redis://h:/3");
    expect_bad_url("redis://h:-1");
    expect_bad_url("redis://h/16");
    expect_bad_url("redis://[a/b]:1");
    expect_bad_url("redis://h]");
    expect_bad_url("redis://h[1");
    expect_bad_url("redis://h/x");
    expect_bad_url("redis://h/-1");
    expect_bad_url("redis://h/3/");
    expect_bad_url("redis://h//");
    expect_bad_url("redis://[::1");
    expect_bad_url("redis://[::1]x");
    expect_bad_url("redis://[::1]:6380x");
    expect_bad_url("redis://user@h");
    expect_bad_url("redis://h?db=1");
    expect_bad_url("redis://h h");
    expect_bad_url("redis://h\t");
    expect_bad_url("redis://h\x7f");
}

static void test_url_reasons(void **state)
{
    (void)state;
    /* the reason names what is wrong */
    expect_bad_url_why("http://h", 256, "redis://");
    expect_bad_url_why("https://hostname", 256, "redis://");
    expect_bad_url_why("redis://[::1", 256, "]");
    expect_bad_url_why("redis://[::1/2", 256, "]");
    expect_bad_url_why("redis://", 256, "host");
    expect_bad_url_why("redis://h:0", 256, "port");
    expect_bad_url_why("redis://h:65536", 256, "port");
    expect_bad_url_why("redis://h:12ab", 256, "port");
    expect_bad_url_why("redis://h/16", 256, "database");
    expect_bad_url_why("redis://h/x", 256, "database");
    expect_bad_url_why("redis://abcdefgh", 8, "host");
    /* numbers that would wrap around are not read modulo anything */
    expect_bad_url_why("redis://h:18446744073709551617", 256, "port");
    expect_bad_url_why("redis://h:4294967297", 256, "port");
    expect_bad_url_why("redis://h/18446744073709551616", 256, "database");
    expect_bad_url_why("redis://h/4294967296", 256, "database");
}

static void test_url_host_length_limit(void **state)
{
    (void)state;
    /* hostlen 8: at most 7 bytes */
    char h[8], why[128] = "";
    int p, n;
    assert_int_equal(sc_cluster_parse_url("redis://abcdefg:1/1", h, sizeof h,
                                          &p, &n, why, sizeof why),
                     SC_OK);
    assert_string_equal(h, "abcdefg");
    expect_bad_url_n("redis://abcdefgh", 8);
    expect_bad_url_n("redis://abcdefgh:1/1", 8);
    expect_bad_url_n("redis://[1:2:3:4:5]", 8);
    /* a long name in a big buffer is fine, one over is not */
    char name[300];
    memset(name, 'a', sizeof name);
    memcpy(name, "redis://", 8);
    name[8 + 255] = '\0'; /* 255 bytes of host: fits 256 */
    char big[256];
    assert_int_equal(
        sc_cluster_parse_url(name, big, sizeof big, &p, &n, why, sizeof why),
        SC_OK);
    assert_int_equal(strlen(big), 255);
    name[8 + 255] = 'a';
    name[8 + 256] = '\0';
    expect_bad_url_n(name, 256);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_every_field_round_trips),
        cmocka_unit_test(test_event_layout_is_exact),
        cmocka_unit_test(test_event_with_scope_only),
        cmocka_unit_test(test_event_audience_without_ids_and_empty_payload),
        cmocka_unit_test(test_event_many_paths_and_ids),
        cmocka_unit_test(test_seq_prefix_values),
        cmocka_unit_test(test_node_and_token_extremes),
        cmocka_unit_test(test_close_scope_user_or_both),
        cmocka_unit_test(test_close_without_scope_or_user_closes_everything),
        cmocka_unit_test(test_decode_rejects_bad_prefix_and_header),
        cmocka_unit_test(test_decode_rejects_broken_fields),
        cmocka_unit_test(test_decode_rejects_broken_rules),
        cmocka_unit_test(test_decode_field_size_limit),
        cmocka_unit_test(test_decode_every_cut_of_an_event),
        cmocka_unit_test(test_decode_out_of_memory),
        cmocka_unit_test(test_msg_to_emit_copies_fields_and_seq),
        cmocka_unit_test(test_encode_of_decoded_event_is_identical),
        cmocka_unit_test(test_event_epoch_after_the_seq),
        cmocka_unit_test(test_event_without_epoch_has_epoch_zero),
        cmocka_unit_test(test_decode_rejects_bad_epoch),
        cmocka_unit_test(test_decode_every_cut_of_an_event_with_epoch),
        cmocka_unit_test(test_url_accepted),
        cmocka_unit_test(test_url_rejected),
        cmocka_unit_test(test_url_reasons),
        cmocka_unit_test(test_url_host_length_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
