/*
 * Allocation-failure ("torture") tests of protocol/: every decoder and
 * encoder is run again and again, failing its 1st, 2nd, 3rd... allocation,
 * until a run needs no more. Each failing run must report SC_ENOMEM (or
 * still succeed), leave its outputs empty and leak nothing (ASan); the run
 * without failure must give the normal result.
 *
 * Allocations are intercepted with the linker's --wrap for malloc, calloc,
 * realloc and strdup (see CMakeLists.txt), which covers every call made by
 * the statically linked protocol and core code; json-c's own allocations
 * are not intercepted.
 */
#include "http_body.h"
#include "reply.h"
#include "wire.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static long fail_at = -1; /* index of the allocation to fail; -1: none */
static long nallocs;      /* allocations seen since arming */

static bool fail_now(void)
{
    return fail_at >= 0 && nallocs++ == fail_at;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}

/* One operation under test: `run` returns its rc; `on_ok` checks the
 * result of a successful run and frees it; `on_fail` checks a failed one. */
typedef struct op {
    int (*run)(void *out);
    void (*on_ok)(void *out);
    void (*on_fail)(void *out);
} op_t;

/* Fails allocation 0, 1, 2, ... until a run completes without reaching the
 * failure point; returns how many runs failed. */
static long torture(const op_t *op, void *out)
{
    long i, failed = 0;
    int rc;

    for (i = 0;; i++) {
        nallocs = 0;
        fail_at = i;
        rc = op->run(out);
        fail_at = -1;
        if (nallocs <= i) { /* the failure point was never reached */
            assert_int_equal(rc, SC_OK);
            op->on_ok(out);
            return failed;
        }
        if (rc == SC_OK) {
            op->on_ok(out);
            continue;
        }
        assert_int_equal(rc, SC_ENOMEM);
        op->on_fail(out);
        failed++;
    }
}

/* ---- WebSocket decoder --------------------------------------------------- */

typedef struct decode_out {
    const char *msg;
    sc_request_t req;
    sc_proto_err_t err;
} decode_out_t;

static int run_decode(void *p)
{
    decode_out_t *o = p;

    return sc_proto_decode(o->msg, strlen(o->msg), &o->req, &o->err);
}

static void decode_ok(void *p)
{
    decode_out_t *o = p;

    assert_null(o->err.code);
    assert_string_equal(o->req.id_json, "\"r1\"");
    assert_non_null(o->req.scope);
    sc_request_deinit(&o->req);
}

static void decode_failed(void *p)
{
    decode_out_t *o = p;
    sc_request_t zero;

    memset(&zero, 0, sizeof(zero));
    assert_string_equal(o->err.code, "internal");
    assert_string_equal(o->err.message, "out of memory");
    assert_memory_equal(&o->req, &zero, sizeof(zero));
    sc_proto_err_deinit(&o->err);
}

static void test_decoder_survives_every_allocation_failure(void **state)
{
    static const op_t op = {run_decode, decode_ok, decode_failed};
    decode_out_t o;

    o.msg = "{\"id\":\"r1\",\"op\":\"emit\",\"scope\":\"doc:1\","
            "\"paths\":[\"a\",\"b\",\"c\"],\"data\":{\"x\":[1,2,3]},"
            "\"audience\":[\"u1\",\"u2\"]}";
    assert_true(torture(&op, &o) >= 8);
    o.msg = "{\"id\":\"r1\",\"op\":\"subscribe\",\"scope\":\"doc:1\","
            "\"meta\":{\"name\":\"ana\"},\"echo\":true}";
    assert_true(torture(&op, &o) >= 3);
}

/* ---- HTTP bodies -----------------------------------------------------------
 */

typedef struct body_out {
    sc_emit_body_t emit;
    sc_close_body_t close;
    sc_proto_err_t err;
} body_out_t;

static int run_emit_body(void *p)
{
    static const char body[] =
        "[{\"scope\":\"a\",\"paths\":[\"p\"],\"data\":1,\"origin\":\"o\","
        "\"audience\":[\"u\"]},{\"scope\":\"b\",\"data\":null},"
        "{\"scope\":\"c\",\"paths\":[\"x\",\"y\"]}]";
    body_out_t *o = p;

    return sc_proto_decode_emit_body(body, sizeof(body) - 1, &o->emit, &o->err);
}

static void emit_body_ok(void *p)
{
    body_out_t *o = p;

    assert_int_equal(o->emit.n, 3);
    assert_string_equal(o->emit.items[2].paths[1], "y");
    sc_emit_body_deinit(&o->emit);
}

static void emit_body_failed(void *p)
{
    body_out_t *o = p;

    assert_null(o->emit.items);
    assert_int_equal(o->emit.n, 0);
    assert_string_equal(o->err.code, "internal");
    sc_proto_err_deinit(&o->err);
}

static int run_close_body(void *p)
{
    static const char body[] = "{\"user\":\"ana\",\"scope\":\"s\"}";
    body_out_t *o = p;

    return sc_proto_decode_close_body(body, sizeof(body) - 1, &o->close,
                                      &o->err);
}

static void close_body_ok(void *p)
{
    body_out_t *o = p;

    assert_string_equal(o->close.user, "ana");
    assert_string_equal(o->close.scope, "s");
    sc_close_body_deinit(&o->close);
}

static void close_body_failed(void *p)
{
    body_out_t *o = p;

    assert_null(o->close.user);
    assert_null(o->close.scope);
    sc_proto_err_deinit(&o->err);
}

static void test_body_parsers_survive_every_allocation_failure(void **state)
{
    static const op_t emit = {run_emit_body, emit_body_ok, emit_body_failed};
    static const op_t close_op = {run_close_body, close_body_ok,
                                  close_body_failed};
    body_out_t o;

    assert_true(torture(&emit, &o) >= 10);
    assert_true(torture(&close_op, &o) >= 2);
}

/* ---- encoders
 * ---------------------------------------------------------------- */

typedef struct enc_out {
    char *text;
    size_t len;
} enc_out_t;

/* A framed `subscribed` with a presence list big enough to grow the
 * buffer several times; the payload is taken out with sc_buf_detach. */
static int run_encode(void *p)
{
    enc_out_t *o = p;
    sc_conn_t c[40];
    sc_buf_t b;
    size_t i;
    int rc = SC_OK;

    for (i = 0; i < 40; i++)
        c[i] = (sc_conn_t){"session-id", "user-id", 1.5, NULL, 0};
    sc_buf_init(&b);
    rc = sc_ws_frame_begin(&b, 16, 0);
    if (rc == SC_OK)
        rc = sc_proto_enc_subscribed(&b, "1", "scope", 7, c, 40, 41);
    if (rc == SC_OK) {
        o->text = sc_buf_detach(&b, &o->len);
        rc = o->text != NULL ? SC_OK : SC_ENOMEM;
    }
    sc_buf_deinit(&b);
    return rc;
}

static void encode_ok(void *p)
{
    enc_out_t *o = p;

    assert_int_equal(strncmp(o->text, "{\"op\":\"subscribed\",\"id\":1", 25),
                     0);
    assert_int_equal(o->text[o->len - 1], '}');
    free(o->text);
    o->text = NULL;
}

static void encode_failed(void *p)
{
    (void)p;
}

static int run_frame(void *p)
{
    enc_out_t *o = p;
    uint8_t *frame;
    void *data;
    sc_buf_t b;
    int rc;

    sc_buf_init(&b);
    rc = sc_ws_frame_begin(&b, 0, 8);
    sc_proto_enc_error(&b, NULL, "bad_request", "a long enough message");
    if (rc == SC_OK)
        rc = sc_ws_frame_end(&b, &data, &frame, &o->len);
    else
        sc_buf_deinit(&b);
    if (rc == SC_OK) {
        assert_int_equal(frame[0], 0x81);
        free(data);
    }
    return rc;
}

static void frame_ok(void *p)
{
    (void)p;
}

static void test_encoders_survive_every_allocation_failure(void **state)
{
    static const op_t enc = {run_encode, encode_ok, encode_failed};
    static const op_t frame = {run_frame, frame_ok, encode_failed};
    enc_out_t o = {NULL, 0};

    assert_true(torture(&enc, &o) >= 3);
    assert_true(torture(&frame, &o) >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoder_survives_every_allocation_failure),
        cmocka_unit_test(test_body_parsers_survive_every_allocation_failure),
        cmocka_unit_test(test_encoders_survive_every_allocation_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
