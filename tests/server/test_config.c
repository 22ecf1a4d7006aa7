/*
 * Tests of server/config.c: defaults, precedence (flags > env > file >
 * defaults), every option through each source, error messages, help and
 * version. The environment is injected, never the process's own.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define MAXARGS 16

static char g_err[512];
static char g_path[64]; /* the current temporary config file, if any */

/* ---- helpers ------------------------------------------------------------- */

/* getenv over a NULL-terminated array of "NAME=VALUE" strings. */
static const char *fake_getenv(void *ud, const char *name)
{
    const char *const *vars = ud;
    size_t n = strlen(name);

    for (; vars && *vars; vars++) {
        if (strncmp(*vars, name, n) == 0 && (*vars)[n] == '=')
            return *vars + n + 1;
    }
    return NULL;
}

/* Loads with the given env and a NULL-terminated list of arguments. */
static int load(sc_config_t *cfg, const char *const *env, ...)
{
    char *argv[MAXARGS + 2] = {"scopecast"};
    int argc = 1;
    va_list ap;
    const char *a;

    va_start(ap, env);
    while ((a = va_arg(ap, const char *)) != NULL && argc <= MAXARGS)
        argv[argc++] = (char *)a;
    va_end(ap);
    g_err[0] = '\0';
    return sc_config_load(cfg, argc, argv, fake_getenv, (void *)env, g_err,
                          sizeof(g_err));
}

/* Writes `json` to a new temporary file whose name is left in g_path. */
static const char *write_file(const char *json)
{
    strcpy(g_path, "/tmp/sc_test_config_XXXXXX");
    int fd = mkstemp(g_path);
    assert_true(fd >= 0);
    size_t n = strlen(json);
    assert_int_equal(write(fd, json, n), (ssize_t)n);
    close(fd);
    return g_path;
}

static int remove_file(void **state)
{
    if (g_path[0])
        unlink(g_path);
    g_path[0] = '\0';
    return 0;
}

/* Expects loading to fail with exactly `msg`. */
#define EXPECT_ERROR(msg, env, ...)                                            \
    do {                                                                       \
        sc_config_t c_;                                                        \
        assert_int_equal(load(&c_, env, __VA_ARGS__, NULL), SC_EINVAL);        \
        assert_string_equal(g_err, msg);                                       \
        assert_null(c_.host);                                                  \
    } while (0)

/* ---- defaults and precedence --------------------------------------------- */

static void test_config_defaults_match_the_protocol_table(void **state)
{
    sc_config_t c;

    assert_int_equal(load(&c, NULL, NULL), SC_OK);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_null(c.config_file);
    assert_int_equal(c.heartbeat, 25);
    assert_int_equal(c.maxsize, 256);
    assert_int_equal(c.max_message, 65536);
    assert_int_equal(c.max_body, 1048576);
    assert_false(c.client_emit);
    assert_null(c.api_key);
    assert_null(c.jwt_secret);
    assert_false(c.require_auth);
    assert_int_equal(c.drain_timeout, 5);
    assert_string_equal(c.web_root, SC_DEFAULT_WEB_ROOT);
    assert_int_equal(c.log_level, SC_LOG_INFO);
    assert_false(c.demo);
    assert_int_equal(c.threads, 1);
    assert_int_equal(c.max_subscriptions, 100);
    assert_int_equal(c.rate_limit, 200);
    assert_int_equal(c.max_meta, 2048);
    assert_int_equal(c.max_meta_total, 65536);
    assert_int_equal(c.max_presence, 1000);
    assert_int_equal(c.max_connections, 10000);
    assert_int_equal(c.max_connections_per_ip, 1000);
    assert_int_equal(c.max_queued_bytes, 1048576);
    assert_int_equal(c.max_queued_total, 1073741824);
    sc_config_deinit(&c);
    sc_config_deinit(&c); /* a second deinit is harmless */
    sc_config_deinit(NULL);
}

static void test_config_flag_beats_env_beats_file_beats_default(void **state)
{
    sc_config_t c;
    const char *path = write_file(
        "{\"port\": 1000, \"heartbeat\": 10, \"maxsize\": 5, \"host\": \"f\"}");
    const char *env[] = {"SCOPECAST_PORT=2000", "SCOPECAST_HEARTBEAT=20",
                         "SCOPECAST_HOST=e", NULL};

    assert_int_equal(load(&c, env, "--config", path, "--port", "3000", NULL),
                     SC_OK);
    assert_int_equal(c.port, 3000);        /* flag */
    assert_int_equal(c.heartbeat, 20);     /* env over file */
    assert_string_equal(c.host, "e");      /* env over file */
    assert_int_equal(c.maxsize, 5);        /* file over default */
    assert_int_equal(c.max_body, 1048576); /* default */
    assert_string_equal(c.config_file, path);
    sc_config_deinit(&c);
}

static void test_config_file_is_named_by_env_or_flag(void **state)
{
    sc_config_t c;
    const char *path = write_file("{\"maxsize\": 7}");
    char env_config[128];
    const char *env[] = {env_config, NULL};

    snprintf(env_config, sizeof(env_config), "SCOPECAST_CONFIG=%s", path);
    assert_int_equal(load(&c, env, NULL), SC_OK);
    assert_int_equal(c.maxsize, 7);
    assert_string_equal(c.config_file, path);
    sc_config_deinit(&c);

    /* The flag's file wins over the variable's (which does not exist). */
    const char *bad_env[] = {"SCOPECAST_CONFIG=/nonexistent/x.json", NULL};
    assert_int_equal(load(&c, bad_env, "--config", path, NULL), SC_OK);
    assert_int_equal(c.maxsize, 7);
    assert_string_equal(c.config_file, path);
    sc_config_deinit(&c);
}

/* ---- every option, every source ------------------------------------------ */

enum vkind { V_STR, V_INT, V_SIZE, V_BOOL };

struct case_ {
    const char *flag[2]; /* one or two argv entries */
    const char *env;     /* "NAME=VALUE" */
    const char *json;    /* a whole config file */
    enum vkind kind;
    size_t off;
    const char *s; /* expected string */
    long long n;   /* expected number or boolean */
};

#define O(f) offsetof(sc_config_t, f)

/* clang-format off */
static const struct case_ cases[] = {
    {{"--host", "0.0.0.0"}, "SCOPECAST_HOST=0.0.0.0", "{\"host\":\"0.0.0.0\"}",
     V_STR, O(host), "0.0.0.0", 0},
    {{"--port", "9001"}, "SCOPECAST_PORT=9001", "{\"port\":9001}",
     V_INT, O(port), NULL, 9001},
    {{"--heartbeat", "7"}, "SCOPECAST_HEARTBEAT=7", "{\"heartbeat\":7}",
     V_INT, O(heartbeat), NULL, 7},
    {{"--maxsize", "12"}, "SCOPECAST_MAXSIZE=12", "{\"maxsize\":12}",
     V_SIZE, O(maxsize), NULL, 12},
    {{"--max-message", "1000"}, "SCOPECAST_MAX_MESSAGE=1000",
     "{\"max_message\":1000}", V_SIZE, O(max_message), NULL, 1000},
    {{"--max-body", "2000"}, "SCOPECAST_MAX_BODY=2000", "{\"max_body\":2000}",
     V_SIZE, O(max_body), NULL, 2000},
    {{"--client-emit"}, "SCOPECAST_CLIENT_EMIT=1", "{\"client_emit\":true}",
     V_BOOL, O(client_emit), NULL, 1},
    {{"--api-key", "k3y"}, "SCOPECAST_API_KEY=k3y", "{\"api_key\":\"k3y\"}",
     V_STR, O(api_key), "k3y", 0},
    {{"--jwt-secret", "s3c"}, "SCOPECAST_JWT_SECRET=s3c",
     "{\"jwt_secret\":\"s3c\"}", V_STR, O(jwt_secret), "s3c", 0},
    {{"--require-auth"}, "SCOPECAST_REQUIRE_AUTH=yes",
     "{\"require_auth\":true}", V_BOOL, O(require_auth), NULL, 1},
    {{"--api-loopback"}, "SCOPECAST_API_LOOPBACK=1", "{\"api_loopback\":true}",
     V_BOOL, O(api_loopback), NULL, 1},
    {{"--allow-anonymous"}, "SCOPECAST_ALLOW_ANONYMOUS=on",
     "{\"allow_anonymous\":true}", V_BOOL, O(allow_anonymous), NULL, 1},
    {{"--anonymous-scopes", "pub:*,lobby"},
     "SCOPECAST_ANONYMOUS_SCOPES=pub:*,lobby",
     "{\"anonymous_scopes\":\"pub:*,lobby\"}", V_STR, O(anonymous_scopes),
     "pub:*,lobby", 0},
    {{"--require-exp"}, "SCOPECAST_REQUIRE_EXP=true", "{\"require_exp\":true}",
     V_BOOL, O(require_exp), NULL, 1},
    {{"--allowed-origins", "https://*.x.org"},
     "SCOPECAST_ALLOWED_ORIGINS=https://*.x.org",
     "{\"allowed_origins\":\"https://*.x.org\"}", V_STR, O(allowed_origins),
     "https://*.x.org", 0},
    {{"--require-origin"}, "SCOPECAST_REQUIRE_ORIGIN=1",
     "{\"require_origin\":true}", V_BOOL, O(require_origin), NULL, 1},
    {{"--drain-timeout", "0"}, "SCOPECAST_DRAIN_TIMEOUT=0",
     "{\"drain_timeout\":0}", V_INT, O(drain_timeout), NULL, 0},
    {{"--web-root", "/srv/web"}, "SCOPECAST_WEB_ROOT=/srv/web",
     "{\"web_root\":\"/srv/web\"}", V_STR, O(web_root), "/srv/web", 0},
    {{"--log-level", "debug"}, "SCOPECAST_LOG_LEVEL=debug",
     "{\"log_level\":\"debug\"}", V_INT, O(log_level), NULL, SC_LOG_DEBUG},
    {{"--demo"}, "SCOPECAST_DEMO=on", "{\"demo\":true}",
     V_BOOL, O(demo), NULL, 1},
    {{"--threads", "3"}, "SCOPECAST_THREADS=3", "{\"threads\":3}",
     V_INT, O(threads), NULL, 3},
    {{"--rate-limit", "0"}, "SCOPECAST_RATE_LIMIT=0", "{\"rate_limit\":0}",
     V_INT, O(rate_limit), NULL, 0},
    {{"--max-meta", "64"}, "SCOPECAST_MAX_META=64", "{\"max_meta\":64}",
     V_SIZE, O(max_meta), NULL, 64},
    {{"--max-meta-total", "640"}, "SCOPECAST_MAX_META_TOTAL=640",
     "{\"max_meta_total\":640}", V_SIZE, O(max_meta_total), NULL, 640},
    {{"--max-presence", "7"}, "SCOPECAST_MAX_PRESENCE=7",
     "{\"max_presence\":7}", V_INT, O(max_presence), NULL, 7},
    {{"--max-subscriptions", "9"}, "SCOPECAST_MAX_SUBSCRIPTIONS=9",
     "{\"max_subscriptions\":9}", V_INT, O(max_subscriptions), NULL, 9},
    {{"--max-connections", "50"}, "SCOPECAST_MAX_CONNECTIONS=50",
     "{\"max_connections\":50}", V_INT, O(max_connections), NULL, 50},
    {{"--max-connections-per-ip", "0"}, "SCOPECAST_MAX_CONNECTIONS_PER_IP=0",
     "{\"max_connections_per_ip\":0}", V_INT, O(max_connections_per_ip),
     NULL, 0},
    {{"--max-queued-bytes", "65536"}, "SCOPECAST_MAX_QUEUED_BYTES=65536",
     "{\"max_queued_bytes\":65536}", V_SIZE, O(max_queued_bytes), NULL,
     65536},
    {{"--max-queued-total", "0"}, "SCOPECAST_MAX_QUEUED_TOTAL=0",
     "{\"max_queued_total\":0}", V_SIZE, O(max_queued_total), NULL, 0},
};
/* clang-format on */

static void check_value(const sc_config_t *c, const struct case_ *k,
                        const char *how)
{
    const void *field = (const char *)c + k->off;

    print_message("%s via %s\n", k->flag[0], how);
    switch (k->kind) {
    case V_STR:
        assert_string_equal(*(char *const *)field, k->s);
        break;
    case V_INT:
        assert_int_equal(*(const int *)field, k->n);
        break;
    case V_SIZE:
        assert_int_equal(*(const size_t *)field, (size_t)k->n);
        break;
    case V_BOOL:
        assert_int_equal(*(const bool *)field, k->n != 0);
        break;
    }
}

static void test_config_every_option_is_settable_three_ways(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct case_ *k = &cases[i];
        const char *env[] = {k->env, NULL};
        sc_config_t c;
        /* the token rules need a secret to mean anything */
        bool needs = k->off == O(require_auth) || k->off == O(require_exp);
        const char *s1 = needs ? "--jwt-secret=x" : k->flag[0];
        const char *s2 = needs ? k->flag[0] : k->flag[1];

        assert_int_equal(load(&c, NULL, s1, s2, NULL), SC_OK);
        check_value(&c, k, "flag");
        sc_config_deinit(&c);

        assert_int_equal(load(&c, env, needs ? "--jwt-secret=x" : NULL, NULL),
                         SC_OK);
        check_value(&c, k, "env");
        sc_config_deinit(&c);

        assert_int_equal(load(&c, NULL, "--config", write_file(k->json),
                              needs ? "--jwt-secret=x" : NULL, NULL),
                         SC_OK);
        check_value(&c, k, "file");
        sc_config_deinit(&c);
        remove_file(NULL);
    }
}

static void test_config_flag_equals_value_form(void **state)
{
    sc_config_t c;
    const char *env[] = {"SCOPECAST_DEMO=1", "SCOPECAST_CLIENT_EMIT=1", NULL};

    assert_int_equal(load(&c, env, "--port=9000", "--host=::1", "--api-key=a=b",
                          "--demo=false", "--client-emit=no",
                          "--require-auth=true", "--jwt-secret=s", NULL),
                     SC_OK);
    assert_int_equal(c.port, 9000);
    assert_string_equal(c.host, "::1");
    assert_string_equal(c.api_key, "a=b"); /* only the first '=' splits */
    assert_false(c.demo);                  /* the flag turns env's on off */
    assert_false(c.client_emit);
    assert_true(c.require_auth);
    sc_config_deinit(&c);
}

static void test_config_later_flag_wins_and_port_zero_is_allowed(void **state)
{
    sc_config_t c;

    assert_int_equal(load(&c, NULL, "--port", "1", "--port", "0", NULL), SC_OK);
    assert_int_equal(c.port, 0);
    sc_config_deinit(&c);
}

static void test_config_env_booleans_accept_every_spelling(void **state)
{
    static const char *yes[] = {"1", "true", "yes", "on", "TRUE", "Yes"};
    static const char *no[] = {"0", "false", "no", "off", "OFF", "False"};
    char var[64];
    const char *env[] = {var, NULL};
    sc_config_t c;

    for (size_t i = 0; i < 6; i++) {
        snprintf(var, sizeof(var), "SCOPECAST_DEMO=%s", yes[i]);
        assert_int_equal(load(&c, env, NULL), SC_OK);
        assert_true(c.demo);
        sc_config_deinit(&c);
        snprintf(var, sizeof(var), "SCOPECAST_DEMO=%s", no[i]);
        assert_int_equal(
            load(&c, env, "--config", write_file("{\"demo\":true}"), NULL),
            SC_OK);
        assert_false(c.demo); /* env beats the file's true */
        sc_config_deinit(&c);
        remove_file(NULL);
    }
}

static void test_config_empty_env_and_null_in_file_change_nothing(void **state)
{
    sc_config_t c;
    const char *env[] = {"SCOPECAST_PORT=", "SCOPECAST_JWT_SECRET=", NULL};
    const char *path = write_file("{\"heartbeat\": null, \"host\": null}");

    assert_int_equal(load(&c, env, "--config", path, NULL), SC_OK);
    assert_int_equal(c.port, 8080);
    assert_null(c.jwt_secret);
    assert_int_equal(c.heartbeat, 25);
    assert_string_equal(c.host, "127.0.0.1");
    sc_config_deinit(&c);
}

static void test_config_log_level_names_ignore_case(void **state)
{
    static const char *names[] = {"debug", "INFO", "Warn", "error"};
    char var[64];
    const char *env[] = {var, NULL};
    sc_config_t c;

    for (int i = 0; i < 4; i++) {
        snprintf(var, sizeof(var), "SCOPECAST_LOG_LEVEL=%s", names[i]);
        assert_int_equal(load(&c, env, NULL), SC_OK);
        assert_int_equal(c.log_level, i);
        sc_config_deinit(&c);
    }
}

/* ---- errors -------------------------------------------------------------- */

static void test_config_bad_flag_values_have_precise_messages(void **state)
{
    EXPECT_ERROR("--port: expected an integer from 0 to 65535, got '70000'",
                 NULL, "--port", "70000");
    EXPECT_ERROR("--port: expected an integer from 0 to 65535, got 'abc'", NULL,
                 "--port=abc");
    EXPECT_ERROR("--port: expected an integer from 0 to 65535, got '12x'", NULL,
                 "--port", "12x");
    EXPECT_ERROR("--port: expected an integer from 0 to 65535, got ''", NULL,
                 "--port=");
    EXPECT_ERROR("--port: expected an integer from 0 to 65535, got ' 80'", NULL,
                 "--port", " 80");
    EXPECT_ERROR("--port: expected an integer from 0 to 65535, got "
                 "'99999999999999999999999'",
                 NULL, "--port", "99999999999999999999999");
    EXPECT_ERROR("--maxsize: expected an integer from 1 to 1000000, got '0'",
                 NULL, "--maxsize", "0");
    EXPECT_ERROR("--heartbeat: expected an integer from 1 to 86400, got '0'",
                 NULL, "--heartbeat", "0");
    EXPECT_ERROR("--max-message: expected an integer from 1 to 1073741824, "
                 "got '0'",
                 NULL, "--max-message", "0");
    EXPECT_ERROR("--max-body: expected an integer from 1 to 1073741824, "
                 "got '-5'",
                 NULL, "--max-body", "-5");
    EXPECT_ERROR("--threads: expected an integer from 1 to 64, got '0'", NULL,
                 "--threads", "0");
    EXPECT_ERROR("--log-level: expected one of debug, info, warn, error, got "
                 "'verbose'",
                 NULL, "--log-level", "verbose");
    EXPECT_ERROR("--demo: expected a boolean (1/0, true/false, yes/no, "
                 "on/off), got 'maybe'",
                 NULL, "--demo=maybe");
    EXPECT_ERROR("--host: must not be empty", NULL, "--host=");
    EXPECT_ERROR("--jwt-secret: must not be empty", NULL, "--jwt-secret", "");
}

static void test_config_missing_flag_values_are_reported(void **state)
{
    EXPECT_ERROR("option --port needs a value (N)", NULL, "--port");
    EXPECT_ERROR("option --port needs a value (N)", NULL, "--port", "--demo");
    EXPECT_ERROR("option --api-key needs a value (KEY)", NULL, "--demo",
                 "--api-key");
}

static void test_config_bad_env_values_name_the_variable(void **state)
{
    const char *port[] = {"SCOPECAST_PORT=-1", NULL};
    const char *demo[] = {"SCOPECAST_DEMO=maybe", NULL};
    const char *level[] = {"SCOPECAST_LOG_LEVEL=loud", NULL};

    EXPECT_ERROR("SCOPECAST_PORT: expected an integer from 0 to 65535, got "
                 "'-1'",
                 port, NULL);
    EXPECT_ERROR("SCOPECAST_DEMO: expected a boolean (1/0, true/false, "
                 "yes/no, on/off), got 'maybe'",
                 demo, NULL);
    EXPECT_ERROR("SCOPECAST_LOG_LEVEL: expected one of debug, info, warn, "
                 "error, got 'loud'",
                 level, NULL);
}

/* Expects the config file `json` to be refused with "config file '<path>':
 * <rest>". */
static void test_config_require_auth_and_allow_anonymous_conflict(void **state)
{
    sc_config_t c;

    (void)state;
    assert_int_equal(
        load(&c, NULL, "--require-auth", "--allow-anonymous", NULL), SC_EINVAL);
    assert_non_null(strstr(g_err, "contradict"));
    assert_int_equal(load(&c, NULL, "--allow-anonymous", NULL), SC_OK);
    assert_true(c.allow_anonymous);
    assert_false(c.api_loopback); /* secure defaults */
    assert_null(c.allowed_origins);
    sc_config_deinit(&c);
}

static void test_config_token_rules_need_a_secret(void **state)
{
    sc_config_t c;

    (void)state;
    EXPECT_ERROR("--require-auth needs --jwt-secret: without a secret no "
                 "token can be checked",
                 NULL, "--require-auth");
    EXPECT_ERROR("--require-exp needs --jwt-secret: without a secret no "
                 "token can be checked",
                 NULL, "--require-exp");
    const char *env[] = {"SCOPECAST_REQUIRE_AUTH=1", NULL};
    EXPECT_ERROR("--require-auth needs --jwt-secret: without a secret no "
                 "token can be checked",
                 env, "--port", "1");
    /* --demo makes its own secret */
    assert_int_equal(load(&c, NULL, "--require-auth", "--demo", NULL), SC_OK);
    sc_config_deinit(&c);
    assert_int_equal(load(&c, NULL, "--require-exp", "--jwt-secret", "k", NULL),
                     SC_OK);
    assert_true(c.require_exp);
    sc_config_deinit(&c);
}

static void expect_file_error(const char *json, const char *rest)
{
    char want[512];
    sc_config_t c;
    const char *path = write_file(json);

    snprintf(want, sizeof(want), "config file '%s': %s", path, rest);
    assert_int_equal(load(&c, NULL, "--config", path, NULL), SC_EINVAL);
    assert_string_equal(g_err, want);
    assert_null(c.host);
    remove_file(NULL);
}

static void test_config_bad_file_values_name_the_key(void **state)
{
    expect_file_error("{\"port\": \"80\"}",
                      "key \"port\": expected an integer, got a string");
    expect_file_error("{\"port\": 70000}", "key \"port\": expected an integer "
                                           "from 0 to 65535, got 70000");
    expect_file_error("{\"demo\": 1}",
                      "key \"demo\": expected a boolean, got an integer");
    expect_file_error("{\"heartbeat\": 2.5}", "key \"heartbeat\": expected an "
                                              "integer, got a fractional "
                                              "number");
    expect_file_error("{\"host\": [\"a\"]}",
                      "key \"host\": expected a string, got an array");
    expect_file_error("{\"api_key\": \"\"}", "key \"api_key\": must not be "
                                             "empty");
    expect_file_error("{\"log_level\": \"loud\"}",
                      "key \"log_level\": expected one of debug, info, warn, "
                      "error, got 'loud'");
}

static void test_config_unknown_config_key_is_an_error(void **state)
{
    expect_file_error("{\"port\": 1, \"max_mesage\": 1}",
                      "unknown key \"max_mesage\"");
    expect_file_error("{\"max-message\": 1}", "unknown key \"max-message\"");
    expect_file_error("{\"config\": \"other.json\"}", "unknown key \"config\"");
}

static void test_config_malformed_files_are_errors(void **state)
{
    sc_config_t c;

    expect_file_error("[1, 2]", "expected a JSON object");
    expect_file_error("{\"port\": 1} x", "invalid JSON: trailing data");
    expect_file_error("", "invalid JSON: unexpected end of data");
    /* The tokener's wording may change between json-c releases. */
    const char *path = write_file("{\"port\": }");
    assert_int_equal(load(&c, NULL, "--config", path, NULL), SC_EINVAL);
    assert_non_null(strstr(g_err, "invalid JSON: "));
    remove_file(NULL);

    EXPECT_ERROR("config file '/nonexistent/x.json': cannot open: No such "
                 "file or directory",
                 NULL, "--config", "/nonexistent/x.json");
    /* a directory opens; reading it is what fails */
    EXPECT_ERROR("config file '/': Is a directory", NULL, "--config", "/");
}

static void test_config_unknown_flag_is_an_error(void **state)
{
    EXPECT_ERROR("unknown option '--bogus' (see --help)", NULL, "--bogus");
    EXPECT_ERROR("unknown option '--bogus=1' (see --help)", NULL, "--bogus=1");
    EXPECT_ERROR("unknown option '-x' (see --help)", NULL, "-x");
    EXPECT_ERROR("unknown option '--max_message' (see --help)", NULL,
                 "--max_message", "5");
    EXPECT_ERROR("unexpected argument 'serve' (see --help)", NULL, "serve");
    EXPECT_ERROR("unexpected argument 'x' (see --help)", NULL, "--", "x");
}

/* ---- help and version ---------------------------------------------------- */

static void test_config_help_and_version_return_codes(void **state)
{
    sc_config_t c;

    assert_int_equal(load(&c, NULL, "--help", NULL), SC_CONFIG_HELP);
    assert_null(c.host);
    assert_int_equal(load(&c, NULL, "-h", NULL), SC_CONFIG_HELP);
    assert_int_equal(load(&c, NULL, "--version", NULL), SC_CONFIG_VERSION);
    assert_int_equal(load(&c, NULL, "--version", "--help", NULL),
                     SC_CONFIG_HELP);
    /* --help wins over errors anywhere on the line. */
    assert_int_equal(load(&c, NULL, "--bogus", "--port=x", "--help", NULL),
                     SC_CONFIG_HELP);
    assert_string_equal(g_err, "");
    /* ... but not after "--", nor as the value of an option. */
    assert_int_equal(load(&c, NULL, "--api-key", "-h", NULL), SC_OK);
    assert_string_equal(c.api_key, "-h");
    sc_config_deinit(&c);
}

static char *capture(void (*print)(FILE *))
{
    FILE *f = tmpfile();
    assert_non_null(f);
    print(f);
    long n = ftell(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    rewind(f);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Finds the help line that starts with "  <flag> " (or is exactly it). */
static const char *help_line(const char *help, const char *flag, size_t *len)
{
    size_t n = strlen(flag);

    for (const char *line = help; *line;) {
        size_t l = strcspn(line, "\n");
        if (l >= n + 2 && strncmp(line, "  ", 2) == 0 &&
            strncmp(line + 2, flag, n) == 0 &&
            (line[n + 2] == ' ' || l == n + 2)) {
            *len = l;
            return line;
        }
        line += l + (line[l] == '\n');
    }
    return NULL;
}

static void test_config_help_mentions_every_flag_and_env_name(void **state)
{
    /* clang-format off */
    static const char *rows[][3] = {
        {"--host ADDR", "SCOPECAST_HOST", "127.0.0.1"},
        {"--port N", "SCOPECAST_PORT", "8080"},
        {"--config FILE", "SCOPECAST_CONFIG", "none"},
        {"--heartbeat SECONDS", "SCOPECAST_HEARTBEAT", "25"},
        {"--maxsize N", "SCOPECAST_MAXSIZE", "256"},
        {"--max-message BYTES", "SCOPECAST_MAX_MESSAGE", "65536"},
        {"--max-body BYTES", "SCOPECAST_MAX_BODY", "1048576"},
        {"--client-emit", "SCOPECAST_CLIENT_EMIT", "off"},
        {"--api-key KEY", "SCOPECAST_API_KEY", "none"},
        {"--jwt-secret SECRET", "SCOPECAST_JWT_SECRET", "none"},
        {"--require-auth", "SCOPECAST_REQUIRE_AUTH", "off"},
        {"--drain-timeout SECONDS", "SCOPECAST_DRAIN_TIMEOUT", "5"},
        {"--web-root DIR", "SCOPECAST_WEB_ROOT", SC_DEFAULT_WEB_ROOT},
        {"--log-level LEVEL", "SCOPECAST_LOG_LEVEL", "info"},
        {"--demo", "SCOPECAST_DEMO", "off"},
        {"--threads N", "SCOPECAST_THREADS", "1"},
        {"--max-subscriptions N", "SCOPECAST_MAX_SUBSCRIPTIONS", "100"},
        {"--max-connections N", "SCOPECAST_MAX_CONNECTIONS", "10000"},
        {"-h, --help", NULL, NULL},
        {"--version", NULL, NULL},
    };
    /* clang-format on */
    char *help = capture(sc_config_print_help);
    char want[128];

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t len = 0;
        const char *line = help_line(help, rows[i][0], &len);
        if (!line)
            fail_msg("--help has no line for '%s'", rows[i][0]);
        if (!rows[i][1])
            continue;
        /* "  FLAG  ENV  DEFAULT": the variable and the default on its line. */
        snprintf(want, sizeof(want), " %s ", rows[i][1]);
        char *copy = strndup(line, len);
        assert_non_null(copy);
        if (!strstr(copy, want))
            fail_msg("'%s' is not on the line of %s", rows[i][1], rows[i][0]);
        snprintf(want, sizeof(want), " %s", rows[i][2]);
        size_t wl = strlen(want);
        if (len < wl || strcmp(copy + len - wl, want) != 0)
            fail_msg("the line of %s does not end with '%s'", rows[i][0], want);
        free(copy);
    }
    /* Tidy: no line longer than 80 columns (but for the web root's, whose
     * default is a path chosen by the build), no trailing spaces. */
    for (char *line = help; *line;) {
        size_t n = strcspn(line, "\n");
        assert_true(n <= 80 || strncmp(line, "  --web-root ", 13) == 0);
        assert_true(n == 0 || line[n - 1] != ' ');
        line += n + (line[n] == '\n');
    }
    free(help);
}

static void test_config_version_prints_the_project_version(void **state)
{
    char *v = capture(sc_config_print_version);
    assert_string_equal(v, "scopecast " SC_VERSION "\n");
    free(v);
}

int main(void)
{
#define T(name) cmocka_unit_test_teardown(name, remove_file)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_require_auth_and_allow_anonymous_conflict),
        cmocka_unit_test(test_config_token_rules_need_a_secret),
        T(test_config_defaults_match_the_protocol_table),
        T(test_config_flag_beats_env_beats_file_beats_default),
        T(test_config_file_is_named_by_env_or_flag),
        T(test_config_every_option_is_settable_three_ways),
        T(test_config_flag_equals_value_form),
        T(test_config_later_flag_wins_and_port_zero_is_allowed),
        T(test_config_env_booleans_accept_every_spelling),
        T(test_config_empty_env_and_null_in_file_change_nothing),
        T(test_config_log_level_names_ignore_case),
        T(test_config_bad_flag_values_have_precise_messages),
        T(test_config_missing_flag_values_are_reported),
        T(test_config_bad_env_values_name_the_variable),
        T(test_config_bad_file_values_name_the_key),
        T(test_config_unknown_config_key_is_an_error),
        T(test_config_malformed_files_are_errors),
        T(test_config_unknown_flag_is_an_error),
        T(test_config_help_and_version_return_codes),
        T(test_config_help_mentions_every_flag_and_env_name),
        T(test_config_version_prints_the_project_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
