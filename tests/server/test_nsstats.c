/*
 * Unit tests of server/nsstats.c: counters per scope namespace (the part
 * before the first ':'), the bounded table (later namespaces under
 * "_other"), the Prometheus text, and counting from several threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "nsstats.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t value(sc_ns_table_t *t, const char *metric, const char *ns)
{
    sc_buf_t b;
    sc_buf_init(&b);
    sc_ns_write_metrics(t, &b);
    char key[256];
    snprintf(key, sizeof key, "\n%s{namespace=\"%s\"} ", metric, ns);
    const char *at = strstr(sc_buf_str(&b), key);
    unsigned long long v = at ? strtoull(at + strlen(key), NULL, 10) : ~0ULL;
    sc_buf_deinit(&b);
    return v;
}

#define DROPS "scopecast_scope_events_dropped_total"
#define CLOSES "scopecast_scope_slow_consumers_closed_total"

static void test_namespaces_are_counted_apart(void **state)
{
    (void)state;
    sc_ns_table_t t;
    sc_ns_init(&t);
    sc_ns_count_drop(&t, "doc:1");
    sc_ns_count_drop(&t, "doc:2");
    sc_ns_count_drop(&t, "doc:");
    sc_ns_count_drop(&t, "chat");
    sc_ns_count_slow_close(&t, "doc:9:x");
    assert_int_equal(value(&t, DROPS, "doc"), 3);
    assert_int_equal(value(&t, DROPS, "chat"), 1);
    assert_int_equal(value(&t, CLOSES, "doc"), 1);
    assert_int_equal(value(&t, CLOSES, "chat"), 0);
    assert_int_equal(value(&t, DROPS, "_other"), ~0ULL); /* not shown yet */
    sc_ns_deinit(&t);
}

static void test_the_table_is_bounded_and_names_escaped(void **state)
{
    (void)state;
    sc_ns_table_t t;
    sc_ns_init(&t);
    char name[32];
    for (int i = 0; i < SC_NS_SLOTS + 10; i++) {
        snprintf(name, sizeof name, "n%d:x", i);
        sc_ns_count_drop(&t, name);
    }
    assert_int_equal(value(&t, DROPS, "n0"), 1);
    assert_int_equal(value(&t, DROPS, "n63"), 1);
    assert_int_equal(value(&t, DROPS, "n64"), ~0ULL);
    assert_int_equal(value(&t, DROPS, "_other"), 10);
    sc_ns_deinit(&t);

    sc_ns_init(&t);
    sc_ns_count_drop(&t, "a\"b\\c:1");
    assert_int_equal(value(&t, DROPS, "a\\\"b\\\\c"), 1);
    /* a long name is cut */
    char longname[100];
    memset(longname, 'z', sizeof longname - 1);
    longname[99] = '\0';
    sc_ns_count_drop(&t, longname);
    longname[SC_NS_NAME_MAX] = '\0';
    assert_int_equal(value(&t, DROPS, longname), 1);
    sc_ns_deinit(&t);
}

static sc_ns_table_t g_t;

static void *count_many(void *p)
{
    int id = *(int *)p;
    char name[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "ns%d:%d", (i + id) % 8, i);
        sc_ns_count_drop(&g_t, name);
    }
    return NULL;
}

static void test_threads_count_every_drop(void **state)
{
    (void)state;
    sc_ns_init(&g_t);
    pthread_t th[4];
    int ids[4] = {0, 1, 2, 3};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, count_many, &ids[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    uint64_t total = 0;
    for (int k = 0; k < 8; k++) {
        char ns[8];
        snprintf(ns, sizeof ns, "ns%d", k);
        uint64_t v = value(&g_t, DROPS, ns);
        assert_int_equal(v, 10000);
        total += v;
    }
    assert_int_equal(total, 80000);
    assert_int_equal(atomic_load(&g_t.used), 8); /* each named once */
    sc_ns_deinit(&g_t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_namespaces_are_counted_apart),
        cmocka_unit_test(test_the_table_is_bounded_and_names_escaped),
        cmocka_unit_test(test_threads_count_every_drop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
