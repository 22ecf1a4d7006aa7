/*
 * Unit tests for core/bus.h, the basics: bus creation and configuration
 * (defaults, maxsize checks, NULL no-ops), the counters of sc_bus_stats
 * and the subscription accessors.
 *
 * Every test is single-threaded unless its name says otherwise, uses the
 * shared fixture (bus_fixture.h: an injected clock for the drop-warning
 * throttle, a captured logger), never sleeps for timing, and ends with
 * every subscription, owner and bus destroyed, so ASan's leak check covers
 * each behaviour. Threaded stress and race tests live in
 * test_bus_threads.c.
 */
#include "bus_fixture.h"

#include <string.h>

/* ---- creation and configuration -------------------------------------- */

static void
test_bus_config_default_sets_maxsize_256_and_10s_interval(void **state)
{
    (void)state;
    sc_bus_config_t cfg;
    memset(&cfg, 0x5a, sizeof cfg);
    sc_bus_config_default(&cfg);
    assert_int_equal(cfg.maxsize, SC_BUS_DEFAULT_MAXSIZE);
    assert_int_equal(cfg.maxsize, 256);
    assert_true(cfg.drop_log_interval == 10.0);
    assert_null(cfg.on_drop);
    assert_null(cfg.log);
    assert_null(cfg.encode);
    assert_null(cfg.clock);
}

static void test_bus_create_with_null_config_uses_defaults(void **state)
{
    (void)state;
    sc_bus_t *bus = NULL;
    assert_int_equal(sc_bus_create(NULL, &bus), SC_OK);
    assert_non_null(bus);
    assert_int_equal(sc_bus_maxsize(bus), 256);
    sc_bus_stats_t st;
    memset(&st, 0x5a, sizeof st);
    sc_bus_stats(bus, &st);
    assert_int_equal(st.emitted, 0);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.scopes, 0);
    sc_bus_destroy(bus);
}

static void test_bus_create_rejects_zero_maxsize(void **state)
{
    (void)state;
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = 0;
    sc_bus_t *bus = NULL;
    assert_int_equal(sc_bus_create(&cfg, &bus), SC_EINVAL);
    assert_null(bus);
}

static void test_bus_create_rejects_negative_maxsize(void **state)
{
    (void)state;
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    int bad[] = {-1, -256, -2147483647 - 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.maxsize = bad[i];
        sc_bus_t *bus = NULL;
        assert_int_equal(sc_bus_create(&cfg, &bus), SC_EINVAL);
        assert_null(bus);
    }
}

static void test_bus_destroy_functions_accept_null(void **state)
{
    (void)state;
    sc_bus_destroy(NULL);
    sc_owner_destroy(NULL);
    sc_sub_destroy(NULL);
}

/* ---- stats ----------------------------------------------------------- */

static void
test_bus_stats_count_subscribers_scopes_emitted_dropped(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 2);
    sc_bus_stats_t st;
    sc_sub_t *a = sub_plain(&fx, "doc:1");
    sc_sub_t *b = sub_plain(&fx, "doc:1");
    sc_sub_t *c = sub_plain(&fx, "doc:2");
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 3);
    assert_int_equal(st.scopes, 2);
    for (int i = 0; i < 3; i++)
        emit_simple(&fx, "doc:1"); /* a and b drop one each */
    emit_simple(&fx, "doc:2");
    emit_simple(&fx, "doc:9"); /* nobody */
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.emitted, 5);
    assert_int_equal(st.dropped, 2);
    sc_sub_destroy(c);
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 2);
    assert_int_equal(st.scopes, 1);
    assert_int_equal(st.dropped, 2); /* totals never go down */
    assert_int_equal(st.emitted, 5);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    fx_close(&fx);
}

/* ---- subscription accessors ------------------------------------------ */

static void
test_bus_sub_accessors_report_scope_conn_owner_and_reason(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c;
    mkconn(&c, "s1", "alice");
    sc_sub_t *with = sub_conn(&fx, "doc:1", &c, false, false);
    sc_sub_t *without = sub_plain(&fx, "doc:2");
    assert_string_equal(sc_sub_scope(with), "doc:1");
    assert_string_equal(sc_sub_scope(without), "doc:2");
    const sc_conn_t *got = sc_sub_conn(with);
    assert_non_null(got);
    assert_ptr_not_equal(got, &c); /* copied */
    assert_true(sc_conn_equal(got, &c));
    assert_null(sc_sub_conn(without));
    assert_ptr_equal(sc_sub_owner(with), fx.owner);
    assert_int_equal(sc_sub_close_reason(with), SC_CLOSE_NONE);
    assert_int_equal(sc_sub_pending(with), 0);
    assert_int_equal(sc_sub_dropped_total(with), 0);
    sc_conn_deinit(&c); /* the subscription keeps its own copy */
    assert_string_equal(sc_sub_conn(with)->session_id, "s1");
    assert_string_equal(sc_sub_conn(with)->user_id, "alice");
    sc_sub_destroy(with);
    sc_sub_destroy(without);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_bus_config_default_sets_maxsize_256_and_10s_interval),
        cmocka_unit_test(test_bus_create_with_null_config_uses_defaults),
        cmocka_unit_test(test_bus_create_rejects_zero_maxsize),
        cmocka_unit_test(test_bus_create_rejects_negative_maxsize),
        cmocka_unit_test(test_bus_destroy_functions_accept_null),
        cmocka_unit_test(
            test_bus_sub_accessors_report_scope_conn_owner_and_reason),
        cmocka_unit_test(
            test_bus_stats_count_subscribers_scopes_emitted_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
