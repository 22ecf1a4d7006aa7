/*
 * Unit tests for core/conn.h (connection info: a value type compared by
 * every field, as the original's ConnectionInfo) and core/common.h (error
 * strings and level names).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "common.h"
#include "conn.h"

static bool is_zeroed(const sc_conn_t *c)
{
    return c->session_id == NULL && c->user_id == NULL &&
           c->connected_at == 0.0 && c->meta == NULL && c->meta_len == 0;
}

static void test_conn_init_copies_every_field(void **state)
{
    (void)state;
    char session[] = "sess-1";
    char user[] = "alice";
    char meta[] = "{\"color\":\"red\"}";
    sc_conn_t c;
    assert_int_equal(
        sc_conn_init(&c, session, user, 1732530000.125, meta, strlen(meta)),
        SC_OK);
    assert_ptr_not_equal(c.session_id, session);
    assert_ptr_not_equal(c.user_id, user);
    assert_ptr_not_equal(c.meta, meta);
    memset(session, 'x', sizeof session - 1);
    memset(user, 'x', sizeof user - 1);
    memset(meta, 'x', sizeof meta - 1);
    assert_string_equal(c.session_id, "sess-1");
    assert_string_equal(c.user_id, "alice");
    assert_true(c.connected_at == 1732530000.125);
    assert_int_equal(c.meta_len, 15);
    assert_memory_equal(c.meta, "{\"color\":\"red\"}", 15);
    assert_int_equal(c.meta[15], '\0'); /* meta_len bytes + a NUL */
    sc_conn_deinit(&c);
    assert_true(is_zeroed(&c));
}

static void test_conn_init_without_session_is_rejected_and_zeroed(void **state)
{
    (void)state;
    sc_conn_t c;
    memset(&c, 0x5a, sizeof c);
    assert_int_equal(sc_conn_init(&c, NULL, "alice", 1.0, "{}", 2), SC_EINVAL);
    assert_true(is_zeroed(&c));
    sc_conn_deinit(&c); /* a zeroed info is a no-op */
}

static void test_conn_init_allows_anonymous_user_and_no_meta(void **state)
{
    (void)state;
    sc_conn_t c;
    assert_int_equal(sc_conn_init(&c, "s", NULL, 0.0, NULL, 0), SC_OK);
    assert_string_equal(c.session_id, "s");
    assert_null(c.user_id);
    assert_null(c.meta);
    assert_int_equal(c.meta_len, 0);
    sc_conn_deinit(&c);
}

static void test_conn_copy_is_deep(void **state)
{
    (void)state;
    sc_conn_t a, b;
    assert_int_equal(sc_conn_init(&a, "s1", "alice", 5.5, "{\"k\":1}", 7),
                     SC_OK);
    assert_int_equal(sc_conn_copy(&b, &a), SC_OK);
    assert_true(sc_conn_equal(&a, &b));
    assert_ptr_not_equal(a.session_id, b.session_id);
    assert_ptr_not_equal(a.user_id, b.user_id);
    assert_ptr_not_equal(a.meta, b.meta);
    sc_conn_deinit(&a);
    assert_string_equal(b.session_id, "s1");
    assert_string_equal(b.user_id, "alice");
    assert_memory_equal(b.meta, "{\"k\":1}", 7);
    sc_conn_deinit(&b);

    /* Copying an anonymous info without meta keeps the NULLs. */
    assert_int_equal(sc_conn_init(&a, "s2", NULL, 1.0, NULL, 0), SC_OK);
    assert_int_equal(sc_conn_copy(&b, &a), SC_OK);
    assert_null(b.user_id);
    assert_null(b.meta);
    assert_true(sc_conn_equal(&a, &b));
    sc_conn_deinit(&a);
    sc_conn_deinit(&b);
}

static void test_conn_equal_compares_by_value(void **state)
{
    (void)state;
    sc_conn_t base, same, other;
    assert_int_equal(sc_conn_init(&base, "s1", "alice", 2.0, "{}", 2), SC_OK);
    assert_int_equal(sc_conn_init(&same, "s1", "alice", 2.0, "{}", 2), SC_OK);
    assert_true(sc_conn_equal(&base, &same));
    assert_true(sc_conn_equal(&same, &base));
    assert_true(sc_conn_equal(&base, &base));

    struct {
        const char *session, *user;
        double at;
        const char *meta;
        size_t meta_len;
    } diffs[] = {
        {"s2", "alice", 2.0, "{}", 2},        /* session */
        {"s1", "bob", 2.0, "{}", 2},          /* user */
        {"s1", NULL, 2.0, "{}", 2},           /* user vs none */
        {"s1", "alice", 2.5, "{}", 2},        /* connected_at */
        {"s1", "alice", 2.0, "{\"a\":1}", 7}, /* meta */
        {"s1", "alice", 2.0, NULL, 0},        /* meta vs none */
        {"s1", "alice", 2.0, "{}x", 3},       /* meta length */
    };
    for (size_t i = 0; i < sizeof diffs / sizeof diffs[0]; i++) {
        assert_int_equal(sc_conn_init(&other, diffs[i].session, diffs[i].user,
                                      diffs[i].at, diffs[i].meta,
                                      diffs[i].meta_len),
                         SC_OK);
        assert_false(sc_conn_equal(&base, &other));
        assert_false(sc_conn_equal(&other, &base));
        sc_conn_deinit(&other);
    }

    /* Two anonymous infos without meta compare equal. */
    sc_conn_t n1, n2;
    assert_int_equal(sc_conn_init(&n1, "s", NULL, 0.0, NULL, 0), SC_OK);
    assert_int_equal(sc_conn_init(&n2, "s", NULL, 0.0, NULL, 0), SC_OK);
    assert_true(sc_conn_equal(&n1, &n2));
    sc_conn_deinit(&n1);
    sc_conn_deinit(&n2);
    sc_conn_deinit(&base);
    sc_conn_deinit(&same);
}

static void test_conn_deinit_null_and_zeroed_are_noops(void **state)
{
    (void)state;
    sc_conn_deinit(NULL);
    sc_conn_t c;
    memset(&c, 0, sizeof c);
    sc_conn_deinit(&c);
    assert_int_equal(sc_conn_init(&c, "s", "u", 0.0, NULL, 0), SC_OK);
    sc_conn_deinit(&c);
    sc_conn_deinit(&c); /* zeroed by the first call */
    assert_true(is_zeroed(&c));
}

static void test_strerror_names_every_code_and_unknown(void **state)
{
    (void)state;
    const int codes[] = {SC_OK,      SC_ENOMEM,    SC_EINVAL,   SC_EAGAIN,
                         SC_ECLOSED, SC_ETIMEDOUT, SC_ENOTFOUND};
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = sc_strerror(codes[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        assert_string_not_equal(s, "unknown error");
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(s, sc_strerror(codes[k]));
    }
    assert_string_equal(sc_strerror(-1000), "unknown error");
    assert_string_equal(sc_strerror(7), "unknown error");
}

static void test_log_level_name_names_levels(void **state)
{
    (void)state;
    assert_string_equal(sc_log_level_name(SC_LOG_DEBUG), "debug");
    assert_string_equal(sc_log_level_name(SC_LOG_INFO), "info");
    assert_string_equal(sc_log_level_name(SC_LOG_WARN), "warn");
    assert_string_equal(sc_log_level_name(SC_LOG_ERROR), "error");
    assert_string_equal(sc_log_level_name(4), "?");
    assert_string_equal(sc_log_level_name(-1), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conn_init_copies_every_field),
        cmocka_unit_test(test_conn_init_without_session_is_rejected_and_zeroed),
        cmocka_unit_test(test_conn_init_allows_anonymous_user_and_no_meta),
        cmocka_unit_test(test_conn_copy_is_deep),
        cmocka_unit_test(test_conn_equal_compares_by_value),
        cmocka_unit_test(test_conn_deinit_null_and_zeroed_are_noops),
        cmocka_unit_test(test_strerror_names_every_code_and_unknown),
        cmocka_unit_test(test_log_level_name_names_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
