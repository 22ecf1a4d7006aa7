/*
 * Tests of server/log.c: line format, level filtering, level names, the core
 * hook, and that concurrent lines never interleave.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

/* Reads everything written to `f` so far into a new string. */
static char *slurp(FILE *f)
{
    long n;
    char *buf;

    fflush(f);
    n = ftell(f);
    assert_true(n >= 0);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    rewind(f);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    return buf;
}

static int setup(void **state)
{
    FILE *f = tmpfile();

    if (!f)
        return -1;
    sc_log_set_stream(f);
    sc_log_set_level(SC_LOG_DEBUG);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    sc_log_set_stream(NULL);
    sc_log_set_level(SC_LOG_INFO);
    fclose(*state);
    return 0;
}

/* True when s starts with "YYYY-MM-DDTHH:MM:SS.mmmZ ". */
static bool has_timestamp(const char *s)
{
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ ";

    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return false;
    }
    return true;
}

static void test_log_line_has_utc_timestamp_level_and_message(void **state)
{
    sc_log(SC_LOG_WARN, "scope %s has %d subscribers", "doc:1", 3);
    char *out = slurp(*state);
    assert_true(has_timestamp(out));
    assert_string_equal(out + 25, "warn  scope doc:1 has 3 subscribers\n");
    free(out);
}

static void test_log_drops_messages_below_the_level(void **state)
{
    sc_log_set_level(SC_LOG_WARN);
    assert_false(sc_log_enabled(SC_LOG_INFO));
    assert_true(sc_log_enabled(SC_LOG_ERROR));
    sc_log(SC_LOG_DEBUG, "no");
    sc_log(SC_LOG_INFO, "no");
    sc_log(SC_LOG_ERROR, "yes");
    char *out = slurp(*state);
    assert_string_equal(out + 25, "error yes\n");
    free(out);
}

static void test_log_newlines_in_messages_become_spaces(void **state)
{
    sc_log(SC_LOG_INFO, "a\nb\r\nc");
    char *out = slurp(*state);
    assert_string_equal(out + 25, "info  a b  c\n");
    free(out);
}

static void test_log_long_messages_are_written_whole(void **state)
{
    char big[5000];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    sc_log(SC_LOG_INFO, "%s|", big);
    char *out = slurp(*state);
    assert_int_equal(strlen(out), 25 + 6 + 4999 + 2);
    assert_string_equal(out + strlen(out) - 2, "|\n");
    free(out);
}

static void test_log_hook_prefixes_the_component_tag(void **state)
{
    sc_log_hook("bus", SC_LOG_ERROR, "queue full");
    sc_log_hook(NULL, SC_LOG_INFO, "plain");
    sc_log_hook(NULL, 42, "clamped");
    char *out = slurp(*state);
    char *second = strchr(out, '\n') + 1;
    char *third = strchr(second, '\n') + 1;
    assert_memory_equal(out + 25, "error [bus] queue full\n", 23);
    assert_memory_equal(second + 25, "info  plain\n", 12);
    assert_string_equal(third + 25, "error clamped\n");
    free(out);
}

/* Counts lines of `s` containing `needle`. */
static int count_lines_with(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void
test_log_limited_caps_lines_per_window_and_reports_the_rest(void **state)
{
    sc_log_limit_t lim = {0};
    int64_t t = 1000000000;
    int written = 0;
    for (int i = 0; i < SC_LOG_LIMIT_LINES + 15; i++)
        written += sc_log_limited(&lim, t + i, SC_LOG_INFO, "bad token %d", i);
    assert_int_equal(written, SC_LOG_LIMIT_LINES);
    char *out = slurp(*state);
    assert_int_equal(count_lines_with(out, "bad token"), SC_LOG_LIMIT_LINES);
    assert_int_equal(count_lines_with(out, "not logged"), 0);
    free(out);
    /* the next window writes again, after one line counting what was held */
    assert_true(sc_log_limited(&lim, t + SC_LOG_LIMIT_WINDOW_US, SC_LOG_INFO,
                               "bad token again"));
    out = slurp(*state);
    char *held = strstr(out, "15 more client errors like the next were not "
                             "logged");
    assert_non_null(held);
    assert_non_null(strstr(held, "bad token again"));
    free(out);
    /* a level that is off costs nothing from the budget */
    sc_log_set_level(SC_LOG_WARN);
    assert_true(
        sc_log_limited(&lim, t + SC_LOG_LIMIT_WINDOW_US, SC_LOG_INFO, "off"));
    assert_int_equal(lim.lines, 1);
}

static void test_log_level_names_parse_ignoring_case(void **state)
{
    int level = -1;

    assert_int_equal(sc_log_level_parse("debug", &level), SC_OK);
    assert_int_equal(level, SC_LOG_DEBUG);
    assert_int_equal(sc_log_level_parse("INFO", &level), SC_OK);
    assert_int_equal(level, SC_LOG_INFO);
    assert_int_equal(sc_log_level_parse("Warn", &level), SC_OK);
    assert_int_equal(level, SC_LOG_WARN);
    assert_int_equal(sc_log_level_parse("error", &level), SC_OK);
    assert_int_equal(level, SC_LOG_ERROR);
    assert_int_equal(sc_log_level_parse("warning", &level), SC_EINVAL);
    assert_int_equal(sc_log_level_parse("", &level), SC_EINVAL);
    assert_int_equal(sc_log_level_parse(NULL, &level), SC_EINVAL);
    assert_int_equal(level, SC_LOG_ERROR);
}

#define THREADS 4
#define LINES 500
#define PADDING "padding-padding-padding-padding-padding-padding-padding"

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;

    for (int i = 0; i < LINES; i++)
        sc_log(SC_LOG_INFO, "thread %d line %04d %s", id, i, PADDING);
    return NULL;
}

static void test_log_lines_from_threads_never_interleave(void **state)
{
    pthread_t t[THREADS];

    for (int i = 0; i < THREADS; i++)
        assert_int_equal(
            pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *out = slurp(*state);
    int lines = 0;
    for (char *line = out; *line; lines++) {
        char *nl = strchr(line, '\n');
        int id, n;
        assert_non_null(nl);
        assert_true(has_timestamp(line));
        assert_int_equal(sscanf(line + 25, "info  thread %d line %d", &id, &n),
                         2);
        assert_int_equal(nl - line, 25 + 6 + strlen("thread 0 line 0000 ") +
                                        strlen(PADDING));
        line = nl + 1;
    }
    assert_int_equal(lines, THREADS * LINES);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_log_line_has_utc_timestamp_level_and_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_drops_messages_below_the_level,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_log_newlines_in_messages_become_spaces, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_log_long_messages_are_written_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_log_hook_prefixes_the_component_tag, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_log_limited_caps_lines_per_window_and_reports_the_rest, setup,
            teardown),
        cmocka_unit_test(test_log_level_names_parse_ignoring_case),
        cmocka_unit_test_setup_teardown(
            test_log_lines_from_threads_never_interleave, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
