/*
 * scopecast server: configuration (see config.h for the rules).
 *
 * Design notes: every option is one row of `options` below: its flag, its
 * environment variable, its JSON key, its kind, where it lives in
 * sc_config_t, its range and its help text. Parsing, validation and --help
 * all walk that table, so an option cannot be settable one way and not
 * another, or missing from the help. Default values live only in
 * sc_config_defaults, and --help prints them from a defaulted struct.
 *
 * Loading runs in passes: the command line is scanned first (syntax only,
 * so --help works even next to a bad flag and the config file's name is
 * known), then the file, the environment and the collected flags are
 * applied in order of increasing priority. Every value, whatever its source,
 * goes through the same setter and range check.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "cluster.h"
#include "history_spec.h"
#include "log.h"

#define FILE_MAX ((size_t)1 << 20) /* a larger config file is refused */
#define SHOWN_MAX 64               /* bad values are quoted up to this length */

/* K_LIST: a repeatable option (sc_strlist_t). Each --flag adds one item;
 * the command line's items replace the environment's, which replace the
 * file's. The environment variable holds one item, or a JSON array of
 * strings; the file key a string or an array of strings. */
enum kind { K_STR, K_INT, K_SIZE, K_BOOL, K_LEVEL, K_LIST };

struct opt {
    const char *flag; /* without the leading "--" */
    const char *env;
    const char *key; /* JSON key; NULL: not allowed in a config file */
    enum kind kind;
    size_t off; /* offset of the field in sc_config_t */
    long long min, max;
    const char *arg;  /* placeholder shown in --help; NULL for booleans */
    const char *help; /* lines separated by '\n' */
};

#define F(field) offsetof(sc_config_t, field)

static const struct opt options[] = {
    {"host", "SCOPECAST_HOST", "host", K_STR, F(host), 0, 0, "ADDR",
     "Address to listen on (the Docker image sets 0.0.0.0)."},
    {"port", "SCOPECAST_PORT", "port", K_INT, F(port), 0, 65535, "N",
     "TCP port for WebSocket and HTTP; 0 picks a free port."},
    {"config", "SCOPECAST_CONFIG", NULL, K_STR, F(config_file), 0, 0, "FILE",
     "JSON config file; its keys are the flag names in snake case."},
    {"heartbeat", "SCOPECAST_HEARTBEAT", "heartbeat", K_INT, F(heartbeat), 1,
     86400, "SECONDS",
     "Seconds between WebSocket pings; silence for twice as long\n"
     "closes the connection with 4408."},
    {"maxsize", "SCOPECAST_MAXSIZE", "maxsize", K_SIZE, F(maxsize), 1, 1000000,
     "N", "Pushes queued per subscription before events are dropped."},
    {"max-message", "SCOPECAST_MAX_MESSAGE", "max_message", K_SIZE,
     F(max_message), 1, 1LL << 30, "BYTES",
     "Largest WebSocket message accepted; larger closes with 1009."},
    {"max-body", "SCOPECAST_MAX_BODY", "max_body", K_SIZE, F(max_body), 1,
     1LL << 30, "BYTES", "Largest HTTP request body; larger answers 413."},
    {"client-emit", "SCOPECAST_CLIENT_EMIT", "client_emit", K_BOOL,
     F(client_emit), 0, 1, NULL,
     "Let anonymous clients emit (with a JWT, the emit claim decides)."},
    {"api-key", "SCOPECAST_API_KEY", "api_key", K_STR, F(api_key), 0, 0, "KEY",
     "Key for /api/* (Authorization: Bearer KEY); without one,\n"
     "/api/* answers 403 (see --api-loopback)."},
    {"api-loopback", "SCOPECAST_API_LOOPBACK", "api_loopback", K_BOOL,
     F(api_loopback), 0, 1, NULL,
     "Without --api-key, let callers on the loopback address use\n"
     "/api/* (local development; --demo turns it on). A request\n"
     "with Forwarded, X-Forwarded-For or X-Real-IP is never loopback."},
    {"jwt-secret", "SCOPECAST_JWT_SECRET", "jwt_secret", K_STR, F(jwt_secret),
     0, 0, "SECRET",
     "HS256 secret for client tokens; without one, connections\n"
     "are anonymous."},
    {"require-auth", "SCOPECAST_REQUIRE_AUTH", "require_auth", K_BOOL,
     F(require_auth), 0, 1, NULL,
     "Kept for old configs: with a JWT secret, a connection\n"
     "without a token is refused (4401) by default now. Needs\n"
     "--jwt-secret (or --demo)."},
    {"allow-anonymous", "SCOPECAST_ALLOW_ANONYMOUS", "allow_anonymous", K_BOOL,
     F(allow_anonymous), 0, 1, NULL,
     "With a JWT secret, let connections without a token in; they\n"
     "may use only the scopes of --anonymous-scopes."},
    {"anonymous-scopes", "SCOPECAST_ANONYMOUS_SCOPES", "anonymous_scopes",
     K_STR, F(anonymous_scopes), 0, 0, "PATTERNS",
     "Scopes anonymous connections may subscribe to, query and\n"
     "emit into: comma-separated, '*' at the end matches any suffix.\n"
     "Unset: none with a JWT secret, every scope without one."},
    {"require-exp", "SCOPECAST_REQUIRE_EXP", "require_exp", K_BOOL,
     F(require_exp), 0, 1, NULL,
     "Refuse tokens without an exp claim. Needs --jwt-secret\n"
     "(or --demo)."},
    {"allowed-origins", "SCOPECAST_ALLOWED_ORIGINS", "allowed_origins", K_STR,
     F(allowed_origins), 0, 0, "PATTERNS",
     "Origins whose pages may open a WebSocket: comma-separated,\n"
     "'*' matches any run of characters (https://*.example.com);\n"
     "'*' alone allows every origin. Unset: the Origin must name\n"
     "the host the request was sent to (same origin). Others: 403."},
    {"require-origin", "SCOPECAST_REQUIRE_ORIGIN", "require_origin", K_BOOL,
     F(require_origin), 0, 1, NULL,
     "Refuse upgrades without an Origin header (non-browser\n"
     "clients send none; they are let in by default)."},
    {"drain-timeout", "SCOPECAST_DRAIN_TIMEOUT", "drain_timeout", K_INT,
     F(drain_timeout), 0, 86400, "SECONDS",
     "On shutdown, seconds allowed to deliver what is queued."},
    {"web-root", "SCOPECAST_WEB_ROOT", "web_root", K_STR, F(web_root), 0, 0,
     "DIR",
     "Folder served at / (demo page and browser client); it must\n"
     "exist. The default falls back to ../share/scopecast/web\n"
     "beside an installed binary."},
    {"log-level", "SCOPECAST_LOG_LEVEL", "log_level", K_LEVEL, F(log_level), 0,
     0, "LEVEL", "One of debug, info, warn, error."},
    {"demo", "SCOPECAST_DEMO", "demo", K_BOOL, F(demo), 0, 1, NULL,
     "Demo mode: POST /demo/token hands out tokens to anyone\n"
     "(a secret is generated when none is set); anonymous\n"
     "connections and loopback callers of /api/* are let in."},
    {"threads", "SCOPECAST_THREADS", "threads", K_INT, F(threads), 1, 64, "N",
     "Service threads."},
    {"rate-limit", "SCOPECAST_RATE_LIMIT", "rate_limit", K_INT, F(rate_limit),
     0, 1000000, "N",
     "Requests per second per WebSocket connection (bursts of 2N);\n"
     "past it a request gets a limit error, and 4429 closes a\n"
     "client that keeps going. 0 turns it off."},
    {"max-meta", "SCOPECAST_MAX_META", "max_meta", K_SIZE, F(max_meta), 2,
     1048576, "BYTES",
     "Largest meta of one subscription (as JSON); larger: a\n"
     "limit error."},
    {"max-meta-total", "SCOPECAST_MAX_META_TOTAL", "max_meta_total", K_SIZE,
     F(max_meta_total), 2, 67108864, "BYTES",
     "Meta all of a connection's subscriptions may hold together."},
    {"max-presence", "SCOPECAST_MAX_PRESENCE", "max_presence", K_INT,
     F(max_presence), 1, 1000000, "N",
     "Connections listed in one presence or subscribed reply; a\n"
     "longer list is cut and says its total."},
    {"presence-grace", "SCOPECAST_PRESENCE_GRACE", "presence_grace", K_INT,
     F(presence_grace), 0, 3600, "SECONDS",
     "How long a dropped connection's presence stays before its\n"
     "leave; the session may resume meanwhile (?resume=). 0: off."},
    {"max-subscriptions", "SCOPECAST_MAX_SUBSCRIPTIONS", "max_subscriptions",
     K_INT, F(max_subscriptions), 1, 1000000, "N",
     "Subscriptions allowed per connection."},
    {"max-connections", "SCOPECAST_MAX_CONNECTIONS", "max_connections", K_INT,
     F(max_connections), 1, 1000000, "N",
     "WebSocket connections accepted per process."},
    {"max-connections-per-ip", "SCOPECAST_MAX_CONNECTIONS_PER_IP",
     "max_connections_per_ip", K_INT, F(max_connections_per_ip), 0, 1000000,
     "N",
     "Open connections (WebSocket and HTTP) per client address; more\n"
     "are answered 503 and closed. 0: no limit (behind a proxy every\n"
     "client has the proxy's address)."},
    {"max-queued-bytes", "SCOPECAST_MAX_QUEUED_BYTES", "max_queued_bytes",
     K_SIZE, F(max_queued_bytes), 0, 1LL << 40, "BYTES",
     "Events waiting to be sent to one connection, over all its\n"
     "subscriptions; past it newer events are dropped for that\n"
     "connection (it gets dropped notices). 0: no limit."},
    {"max-queued-total", "SCOPECAST_MAX_QUEUED_TOTAL", "max_queued_total",
     K_SIZE, F(max_queued_total), 0, 1LL << 40, "BYTES",
     "Events waiting to be sent in the whole server (each event\n"
     "counted once); past it new events are dropped for everyone.\n"
     "0: no limit."},
    {"disconnect-slow", "SCOPECAST_DISCONNECT_SLOW", "disconnect_slow", K_STR,
     F(disconnect_slow), 0, 0, "PATTERNS",
     "The slow-consumer policy: a connection subscribed to one of\n"
     "these scopes (comma-separated, '*' at the end matches any\n"
     "suffix; '*' alone: all) that stays over its limits there\n"
     "(--maxsize, --max-queued-bytes) for --slow-grace seconds\n"
     "is closed with 4413. Elsewhere (unset: everywhere) the\n"
     "newest events are dropped and it is told so (dropped)."},
    {"slow-grace", "SCOPECAST_SLOW_GRACE", "slow_grace", K_INT, F(slow_grace),
     1, 3600, "SECONDS",
     "How long a slow consumer may stay over its limits before\n"
     "--disconnect-slow closes it."},
    {"history", "SCOPECAST_HISTORY", "history", K_STR, F(history), 0, 0,
     "PATTERNS",
     "Scopes that keep their recent events for recovery: comma-\n"
     "separated PATTERN=LIMITS, LIMITS being N (last N events), Ts\n"
     "(younger than T seconds) or N/Ts, e.g. 'doc:*=500/300s'; the\n"
     "first match wins. Unset: none (demo mode: room:*=1000/3600s)."},
    {"history-max-bytes", "SCOPECAST_HISTORY_MAX_BYTES", "history_max_bytes",
     K_SIZE, F(history_max_bytes), 0, 1LL << 40, "BYTES",
     "What all kept history may cost; past it the oldest events\n"
     "go first. 0: no limit."},
    {"broker", "SCOPECAST_BROKER", "broker", K_STR, F(broker), 0, 0, "URL",
     "Join a cluster through Redis: redis://HOST[:PORT][/DB]. Every\n"
     "node with the same URL delivers every emit, in one order per\n"
     "scope (docs/PROTOCOL.md \"Running a cluster\"). Unset: one node."},
    {"plugin", "SCOPECAST_PLUGIN", "plugin", K_LIST, F(plugins), 0, 0,
     "PATH[:JSON]",
     "Loads a plugin (a shared object, docs/PLUGINS.md) with its\n"
     "configuration, a JSON object after the colon. Repeatable:\n"
     "plugins are asked in the order given. The variable and the\n"
     "file key take one such string or a JSON array of them."},
};

#define NOPTS (sizeof(options) / sizeof(options[0]))

/* One flag found on the command line, applied after the file and env. */
struct flag_use {
    const struct opt *o;
    const char *val; /* NULL for a boolean flag without "=value" */
};

/* What the syntax pass found. */
struct argscan {
    struct flag_use *uses;
    size_t n;
    bool help, version;
    const char *config; /* last --config value, borrowed from argv */
};

static void list_clear(sc_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int list_add(sc_strlist_t *l, const char *val, const char *src,
                    char *err, size_t errlen)
{
    if (*val == '\0') {
        sc_errfmt(err, errlen, "%s: must not be empty", src);
        return SC_EINVAL;
    }
    char **v = realloc(l->v, (l->n + 1) * sizeof *v);
    char *dup = v ? strdup(val) : NULL;
    if (v)
        l->v = v;
    if (!dup) {
        sc_errfmt(err, errlen, "out of memory");
        return SC_ENOMEM;
    }
    l->v[l->n++] = dup;
    return SC_OK;
}

int sc_config_defaults(sc_config_t *cfg)
{
    if (!cfg)
        return SC_EINVAL;
    memset(cfg, 0, sizeof(*cfg));
    cfg->port = 8080;
    cfg->heartbeat = 25;
    cfg->maxsize = 256;
    cfg->max_message = 65536;
    cfg->max_body = 1048576;
    cfg->client_emit = false;
    cfg->require_auth = false;
    cfg->drain_timeout = 5;
    cfg->log_level = SC_LOG_INFO;
    cfg->demo = false;
    cfg->threads = 1;
    cfg->max_subscriptions = 100;
    cfg->rate_limit = 200;
    cfg->max_meta = 2048;
    cfg->max_meta_total = 65536;
    cfg->max_presence = 1000;
    cfg->presence_grace = 5;
    cfg->max_connections = 10000;
    cfg->max_connections_per_ip = 1000;
    cfg->max_queued_bytes = 1048576;
    cfg->max_queued_total = 1073741824;
    cfg->slow_grace = 10;
    cfg->history_max_bytes = 67108864;
    cfg->host = strdup("127.0.0.1");
    cfg->web_root = strdup(SC_DEFAULT_WEB_ROOT);
    if (!cfg->host || !cfg->web_root) {
        sc_config_deinit(cfg);
        return SC_ENOMEM;
    }
    return SC_OK;
}

void sc_config_deinit(sc_config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->host);
    free(cfg->config_file);
    free(cfg->api_key);
    free(cfg->jwt_secret);
    free(cfg->anonymous_scopes);
    free(cfg->disconnect_slow);
    free(cfg->history);
    free(cfg->broker);
    free(cfg->allowed_origins);
    free(cfg->web_root);
    list_clear(&cfg->plugins);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- setters: one per kind, shared by every source ----------------------- */

static int set_str(sc_config_t *cfg, const struct opt *o, const char *val,
                   const char *src, char *err, size_t errlen)
{
    char **slot = (char **)((char *)cfg + o->off);

    if (*val == '\0') {
        sc_errfmt(err, errlen, "%s: must not be empty", src);
        return SC_EINVAL;
    }
    char *dup = strdup(val);
    if (!dup) {
        sc_errfmt(err, errlen, "out of memory");
        return SC_ENOMEM;
    }
    free(*slot);
    *slot = dup;
    return SC_OK;
}

/* Stores an integer already parsed, after the range check. */
static int set_num(sc_config_t *cfg, const struct opt *o, long long v,
                   const char *shown, const char *src, char *err, size_t errlen)
{
    void *field = (char *)cfg + o->off;

    if (v < o->min || v > o->max) {
        sc_errfmt(err, errlen,
                  "%s: expected an integer from %lld to %lld, got %s", src,
                  o->min, o->max, shown);
        return SC_EINVAL;
    }
    if (o->kind == K_SIZE)
        *(size_t *)field = (size_t)v;
    else
        *(int *)field = (int)v;
    return SC_OK;
}

static int set_int_text(sc_config_t *cfg, const struct opt *o, const char *val,
                        const char *src, char *err, size_t errlen)
{
    char shown[SHOWN_MAX + 3];
    char *end = NULL;
    long long v = 0;

    snprintf(shown, sizeof(shown), "'%.*s'", SHOWN_MAX, val);
    bool digits =
        (val[0] >= '0' && val[0] <= '9') ||
        ((val[0] == '-' || val[0] == '+') && val[1] >= '0' && val[1] <= '9');
    errno = 0;
    if (digits)
        v = strtoll(val, &end, 10);
    if (!digits || *end != '\0') {
        sc_errfmt(err, errlen,
                  "%s: expected an integer from %lld to %lld, got %s", src,
                  o->min, o->max, shown);
        return SC_EINVAL;
    }
    if (errno == ERANGE)
        v = val[0] == '-' ? LLONG_MIN : LLONG_MAX; /* fails the range check */
    return set_num(cfg, o, v, shown, src, err, errlen);
}

/* Parses 1/0, true/false, yes/no, on/off (any case). Returns 1, 0 or -1. */
static int parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* Applies a textual value (flag or environment). `val` NULL means a
 * boolean flag given without a value. */
static int set_text(sc_config_t *cfg, const struct opt *o, const char *val,
                    const char *src, char *err, size_t errlen)
{
    int b, level;

    switch (o->kind) {
    case K_STR:
        return set_str(cfg, o, val, src, err, errlen);
    case K_INT:
    case K_SIZE:
        return set_int_text(cfg, o, val, src, err, errlen);
    case K_BOOL:
        b = val ? parse_bool(val) : 1;
        if (b < 0) {
            sc_errfmt(err, errlen,
                      "%s: expected a boolean (1/0, true/false, yes/no, "
                      "on/off), got '%.*s'",
                      src, SHOWN_MAX, val);
            return SC_EINVAL;
        }
        *(bool *)((char *)cfg + o->off) = b == 1;
        return SC_OK;
    case K_LEVEL:
        if (sc_log_level_parse(val, &level) != SC_OK) {
            sc_errfmt(
                err, errlen,
                "%s: expected one of debug, info, warn, error, got '%.*s'", src,
                SHOWN_MAX, val);
            return SC_EINVAL;
        }
        *(int *)((char *)cfg + o->off) = level;
        return SC_OK;
    case K_LIST:
        return list_add((sc_strlist_t *)((char *)cfg + o->off), val, src, err,
                        errlen);
    }
    return SC_EINVAL;
}

/* Replaces a list option with the items of a JSON string or array of
 * strings (`v`; from the file or the environment). */
static int set_list_json(sc_config_t *cfg, const struct opt *o, json_object *v,
                         const char *src, char *err, size_t errlen)
{
    sc_strlist_t *l = (sc_strlist_t *)((char *)cfg + o->off);
    list_clear(l);
    if (json_object_is_type(v, json_type_string))
        return list_add(l, json_object_get_string(v), src, err, errlen);
    if (!json_object_is_type(v, json_type_array)) {
        sc_errfmt(err, errlen, "%s: expected a string or an array of strings",
                  src);
        return SC_EINVAL;
    }
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        json_object *item = json_object_array_get_idx(v, i);
        if (!json_object_is_type(item, json_type_string)) {
            sc_errfmt(err, errlen, "%s: item %zu: expected a string", src, i);
            return SC_EINVAL;
        }
        int rc = list_add(l, json_object_get_string(item), src, err, errlen);
        if (rc != SC_OK)
            return rc;
    }
    return SC_OK;
}

/* An environment value of a list option: one item, or a JSON array. */
static int set_list_env(sc_config_t *cfg, const struct opt *o, const char *val,
                        const char *src, char *err, size_t errlen)
{
    if (val[0] != '[') {
        list_clear((sc_strlist_t *)((char *)cfg + o->off));
        return set_text(cfg, o, val, src, err, errlen);
    }
    json_object *v = json_tokener_parse(val);
    if (!v) {
        sc_errfmt(err, errlen, "%s: invalid JSON array", src);
        return SC_EINVAL;
    }
    int rc = set_list_json(cfg, o, v, src, err, errlen);
    json_object_put(v);
    return rc;
}

/* ---- the config file ----------------------------------------------------- */

static const char *json_kind(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_boolean:
        return "a boolean";
    case json_type_double:
        return "a fractional number";
    case json_type_int:
        return "an integer";
    case json_type_string:
        return "a string";
    case json_type_array:
        return "an array";
    case json_type_object:
        return "an object";
    default:
        return "null";
    }
}

static const char *kind_wanted(enum kind k)
{
    switch (k) {
    case K_BOOL:
        return "a boolean";
    case K_INT:
    case K_SIZE:
        return "an integer";
    default:
        return "a string";
    }
}

/* Applies one key of the file; `src` names it in messages. */
static int set_json(sc_config_t *cfg, const struct opt *o, json_object *v,
                    const char *src, char *err, size_t errlen)
{
    json_type want = o->kind == K_BOOL ? json_type_boolean
                     : (o->kind == K_INT || o->kind == K_SIZE)
                         ? json_type_int
                         : json_type_string;
    char shown[32];

    if (v == NULL)
        return SC_OK; /* null leaves the option as it was */
    if (o->kind == K_LIST)
        return set_list_json(cfg, o, v, src, err, errlen);
    if (json_object_get_type(v) != want) {
        sc_errfmt(err, errlen, "%s: expected %s, got %s", src,
                  kind_wanted(o->kind), json_kind(v));
        return SC_EINVAL;
    }
    switch (o->kind) {
    case K_BOOL:
        *(bool *)((char *)cfg + o->off) = json_object_get_boolean(v);
        return SC_OK;
    case K_INT:
    case K_SIZE:
        snprintf(shown, sizeof(shown), "%s", json_object_to_json_string(v));
        return set_num(cfg, o, (long long)json_object_get_int64(v), shown, src,
                       err, errlen);
    default:
        return set_text(cfg, o, json_object_get_string(v), src, err, errlen);
    }
}

/* Reads the whole file into a NUL-terminated heap buffer. */
static int read_file(const char *path, char **out, size_t *len, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;

    if (!f) {
        sc_errfmt(err, errlen, "config file '%s': cannot open: %s", path,
                  strerror(errno));
        return SC_EINVAL;
    }
    buf = malloc(FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        sc_errfmt(err, errlen, "out of memory");
        return SC_ENOMEM;
    }
    size_t n = fread(buf, 1, FILE_MAX + 1, f);
    int bad = ferror(f) ? errno : 0;
    fclose(f);
    if (bad || n > FILE_MAX) {
        /* a directory opens, and its read fails with EISDIR */
        sc_errfmt(err, errlen, "config file '%s': %s", path,
                  bad ? strerror(bad) : "larger than 1 MiB");
        free(buf);
        return SC_EINVAL;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return SC_OK;
}

/* Parses the text as exactly one JSON object (trailing space allowed). */
static int parse_json(const char *path, const char *text, size_t len,
                      json_object **out, char *err, size_t errlen)
{
    json_tokener *tok = json_tokener_new();
    json_object *root = NULL;

    if (!tok) {
        sc_errfmt(err, errlen, "out of memory");
        return SC_ENOMEM;
    }
    root = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (jerr == json_tokener_continue)
        jerr = json_tokener_error_parse_eof;
    if (jerr != json_tokener_success) {
        sc_errfmt(err, errlen, "config file '%s': invalid JSON: %s", path,
                  json_tokener_error_desc(jerr));
        goto fail;
    }
    if (text[end + strspn(text + end, " \t\r\n")] != '\0') {
        sc_errfmt(err, errlen, "config file '%s': invalid JSON: trailing data",
                  path);
        goto fail;
    }
    if (!json_object_is_type(root, json_type_object)) {
        sc_errfmt(err, errlen, "config file '%s': expected a JSON object",
                  path);
        goto fail;
    }
    *out = root;
    return SC_OK;
fail:
    json_object_put(root);
    return SC_EINVAL;
}

static const struct opt *find_key(const char *key)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (options[i].key && strcmp(options[i].key, key) == 0)
            return &options[i];
    }
    return NULL;
}

static int apply_file(sc_config_t *cfg, const char *path, char *err,
                      size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    json_object *root = NULL;
    char src[512];
    int rc;

    if ((rc = read_file(path, &text, &len, err, errlen)) != SC_OK)
        return rc;
    if ((rc = parse_json(path, text, len, &root, err, errlen)) != SC_OK)
        goto out;
    json_object_object_foreach(root, key, val)
    {
        const struct opt *o = find_key(key);
        if (!o) {
            sc_errfmt(err, errlen, "config file '%s': unknown key \"%.*s\"",
                      path, SHOWN_MAX, key);
            rc = SC_EINVAL;
            goto out;
        }
        snprintf(src, sizeof(src), "config file '%.300s': key \"%s\"", path,
                 key);
        if ((rc = set_json(cfg, o, val, src, err, errlen)) != SC_OK)
            goto out;
    }
out:
    json_object_put(root);
    free(text);
    return rc;
}

/* ---- environment and command line ---------------------------------------- */

static const char *env_get(sc_getenv_fn fn, void *ud, const char *name)
{
    const char *v = fn ? fn(ud, name) : getenv(name);
    return (v && *v) ? v : NULL; /* empty counts as unset */
}

static int apply_env(sc_config_t *cfg, sc_getenv_fn fn, void *ud, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = env_get(fn, ud, options[i].env);
        if (!v)
            continue;
        int rc =
            options[i].kind == K_LIST
                ? set_list_env(cfg, &options[i], v, options[i].env, err, errlen)
                : set_text(cfg, &options[i], v, options[i].env, err, errlen);
        if (rc != SC_OK)
            return rc;
    }
    return SC_OK;
}

/* Finds "--name" or "--name=value" in the table; *eq points at the value
 * after '=' or is NULL. */
static const struct opt *find_flag(const char *arg, const char **eq)
{
    const char *name = arg + 2;
    const char *e = strchr(name, '=');
    size_t n = e ? (size_t)(e - name) : strlen(name);

    *eq = e ? e + 1 : NULL;
    for (size_t i = 0; i < NOPTS; i++) {
        if (strlen(options[i].flag) == n &&
            strncmp(options[i].flag, name, n) == 0)
            return &options[i];
    }
    return NULL;
}

/* Classifies argv[*i]; consumes its value when it takes one. Records the
 * first syntax error only, so a later --help is still seen. */
static int scan_one(struct argscan *s, int argc, char **argv, int *i, char *err,
                    size_t errlen)
{
    const char *arg = argv[*i], *eq = NULL;

    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        s->help = true;
        return SC_OK;
    }
    if (strcmp(arg, "--version") == 0) {
        s->version = true;
        return SC_OK;
    }
    const struct opt *o =
        strncmp(arg, "--", 2) == 0 ? find_flag(arg, &eq) : NULL;
    if (!o) {
        sc_errfmt(err, errlen, "%s '%.*s' (see --help)",
                  arg[0] == '-' ? "unknown option" : "unexpected argument",
                  SHOWN_MAX, arg);
        return SC_EINVAL;
    }
    if (!eq && o->kind != K_BOOL) {
        if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0) {
            sc_errfmt(err, errlen, "option --%s needs a value (%s)", o->flag,
                      o->arg);
            return SC_EINVAL;
        }
        eq = argv[++*i];
    }
    s->uses[s->n].o = o;
    s->uses[s->n++].val = eq;
    if (o->off == F(config_file))
        s->config = eq;
    return SC_OK;
}

/* The syntax pass over argv. Returns SC_OK or the first error. */
static int scan_args(struct argscan *s, int argc, char **argv, char *err,
                     size_t errlen)
{
    int first = SC_OK;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            if (i + 1 < argc && first == SC_OK) {
                sc_errfmt(err, errlen,
                          "unexpected argument '%.*s' (see --help)", SHOWN_MAX,
                          argv[i + 1]);
                first = SC_EINVAL;
            }
            break;
        }
        int rc =
            scan_one(s, argc, argv, &i, first == SC_OK ? err : NULL, errlen);
        if (rc != SC_OK && first == SC_OK)
            first = rc;
    }
    return first;
}

static int apply_flags(sc_config_t *cfg, const struct argscan *s, char *err,
                       size_t errlen)
{
    char src[64];
    bool listed[NOPTS] = {false};

    for (size_t i = 0; i < s->n; i++) {
        const struct opt *o = s->uses[i].o;
        size_t k = (size_t)(o - options);
        if (o->kind == K_LIST && !listed[k]) {
            /* the command line's items replace the others' */
            list_clear((sc_strlist_t *)((char *)cfg + o->off));
            listed[k] = true;
        }
        snprintf(src, sizeof(src), "--%s", s->uses[i].o->flag);
        int rc = set_text(cfg, s->uses[i].o, s->uses[i].val, src, err, errlen);
        if (rc != SC_OK)
            return rc;
    }
    return SC_OK;
}

/* Options that mean nothing, or the opposite of what they say, together. */
static int check_combinations(const sc_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->require_auth && cfg->allow_anonymous) {
        sc_errfmt(err, errlen,
                  "--require-auth and --allow-anonymous "
                  "contradict each other");
        return SC_EINVAL;
    }
    /* --demo makes its own secret; otherwise no token could be checked
     * and every client would be let in anonymously */
    if (!cfg->jwt_secret && !cfg->demo &&
        (cfg->require_auth || cfg->require_exp)) {
        sc_errfmt(err, errlen,
                  "%s needs --jwt-secret: without a secret no token can be "
                  "checked",
                  cfg->require_auth ? "--require-auth" : "--require-exp");
        return SC_EINVAL;
    }
    return SC_OK;
}

/* --history must parse; demo mode keeps the demo room's history unless
 * told otherwise. */
static int check_history(sc_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->history && cfg->demo && !(cfg->history = strdup(SC_DEMO_HISTORY)))
        return SC_ENOMEM;
    sc_history_spec_t spec;
    int rc = sc_history_spec_parse(cfg->history, &spec, err, errlen);
    sc_history_spec_deinit(&spec);
    return rc;
}

/* --broker must be a Redis URL (the broker connects later, at start). */
static int check_broker(const sc_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->broker || !*cfg->broker)
        return SC_OK;
    char host[256], why[128];
    int port, db;
    if (sc_cluster_parse_url(cfg->broker, host, sizeof host, &port, &db, why,
                             sizeof why) != SC_OK) {
        sc_errfmt(err, errlen, "--broker %s: %s", cfg->broker, why);
        return SC_EINVAL;
    }
    return SC_OK;
}

int sc_config_load(sc_config_t *cfg, int argc, char **argv,
                   sc_getenv_fn getenv_fn, void *ud, char *err, size_t errlen)
{
    struct argscan s = {0};
    int rc;

    sc_errfmt(err, errlen, "%s", "");
    if (!cfg || argc < 0 || (argc > 0 && !argv))
        return SC_EINVAL;
    memset(cfg, 0, sizeof(*cfg));
    s.uses = calloc((size_t)argc + 1, sizeof(*s.uses));
    if (!s.uses)
        return SC_ENOMEM;
    rc = scan_args(&s, argc, argv, err, errlen);
    if (s.help || s.version) {
        sc_errfmt(err, errlen, "%s", "");
        rc = s.help ? SC_CONFIG_HELP : SC_CONFIG_VERSION;
        goto fail;
    }
    if (rc != SC_OK || (rc = sc_config_defaults(cfg)) != SC_OK)
        goto fail;
    const char *path =
        s.config ? s.config : env_get(getenv_fn, ud, "SCOPECAST_CONFIG");
    if (path && (rc = apply_file(cfg, path, err, errlen)) != SC_OK)
        goto fail;
    if ((rc = apply_env(cfg, getenv_fn, ud, err, errlen)) != SC_OK)
        goto fail;
    if ((rc = apply_flags(cfg, &s, err, errlen)) != SC_OK)
        goto fail;
    if ((rc = check_combinations(cfg, err, errlen)) != SC_OK)
        goto fail;
    if ((rc = check_history(cfg, err, errlen)) != SC_OK)
        goto fail;
    if ((rc = check_broker(cfg, err, errlen)) != SC_OK)
        goto fail;
    free(s.uses);
    return SC_OK;
fail:
    sc_config_deinit(cfg);
    free(s.uses);
    return rc;
}

/* ---- help ---------------------------------------------------------------- */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* The default of an option as --help shows it, from a defaulted struct. */
static void default_text(const sc_config_t *d, const struct opt *o, char *buf,
                         size_t len)
{
    const void *field = (const char *)d + o->off;

    switch (o->kind) {
    case K_STR:
        snprintf(buf, len, "%s",
                 *(char *const *)field ? *(char *const *)field : "none");
        break;
    case K_INT:
        snprintf(buf, len, "%d", *(const int *)field);
        break;
    case K_SIZE:
        snprintf(buf, len, "%zu", *(const size_t *)field);
        break;
    case K_BOOL:
        snprintf(buf, len, "%s", *(const bool *)field ? "on" : "off");
        break;
    case K_LEVEL:
        snprintf(buf, len, "%s", level_names[*(const int *)field & 3]);
        break;
    case K_LIST:
        snprintf(buf, len, "none");
        break;
    }
}

static void print_option(FILE *f, const sc_config_t *d, const struct opt *o)
{
    char flag[64], def[256];
    const char *line = o->help;

    snprintf(flag, sizeof(flag), "--%s%s%s", o->flag, o->arg ? " " : "",
             o->arg ? o->arg : "");
    default_text(d, o, def, sizeof(def));
    fprintf(f, "  %-24s %-28s %s\n", flag, o->env, def);
    while (*line) {
        size_t n = strcspn(line, "\n");
        fprintf(f, "      %.*s\n", (int)n, line);
        line += n + (line[n] == '\n');
    }
}

void sc_config_print_help(FILE *f)
{
    sc_config_t d;

    if (sc_config_defaults(&d) != SC_OK)
        memset(&d, 0, sizeof(d)); /* out of memory: strings show "none" */
    fprintf(f, "Usage: scopecast [OPTIONS]\n\n"
               "Scoped real-time events over WebSocket and HTTP.\n\n");
    fprintf(f, "  %-24s %-28s %s\n", "FLAG", "ENVIRONMENT", "DEFAULT");
    for (size_t i = 0; i < NOPTS; i++)
        print_option(f, &d, &options[i]);
    fprintf(f, "  -h, --help\n      Print this help and exit.\n"
               "  --version\n      Print the version and exit.\n");
    fprintf(f,
            "\nFlags beat environment variables, which beat the config file,\n"
            "which beats the defaults. Use --flag VALUE or --flag=VALUE.\n"
            "Boolean flags take no value (--demo=false turns one off);\n"
            "boolean variables accept 1/0, true/false, yes/no, on/off;\n"
            "an empty variable counts as unset.\n"
            "Config file: one JSON object, keys in snake case, e.g.\n"
            "  {\"port\": 9000, \"max_message\": 131072, \"demo\": true}\n");
    sc_config_deinit(&d);
}

void sc_config_print_version(FILE *f)
{
    fprintf(f, "scopecast %s\n", SC_VERSION);
}
