/*
 * pgnotify: a PostgreSQL change feed. Every NOTIFY on a configured channel
 * becomes one scopecast event (docs/PROTOCOL.md `event`, no origin).
 *
 *     scopecast --plugin pgnotify.so:'{"conninfo": "hostaddr=127.0.0.1
 *         port=5432 dbname=app user=app", "channels": ["orders"],
 *         "scope": "db:{channel}"}'
 *     psql -c "NOTIFY orders, '{\"id\": 7}'"
 *         -> an event of scope db:orders with data {"id":7}
 *
 * Model
 *   One libpq connection, driven without blocking on the plugin loop:
 *   PQconnectStartParams + PQconnectPoll (an fd watch on PQsocket for what
 *   PQconnectPoll asks), PQsetnonblocking, then one PQsendQuery of
 *   `LISTEN "ch1"; LISTEN "ch2"; ...` (PQescapeIdentifier: channel names
 *   are used exactly, case included: a configured "Orders" hears
 *   `NOTIFY "Orders"`, not `NOTIFY Orders`, which is "orders"). Once
 *   every LISTEN succeeded the feed is up; on each readable event it
 *   calls PQconsumeInput, drains PQgetResult while !PQisBusy and turns
 *   every PQnotifies entry, in arrival order, into one sc_host_emit.
 *   PostgreSQL delivers the NOTIFYs of a transaction at its commit, in
 *   order, so a subscriber sees them in that order.
 *
 *   Scope and data of an event:
 *     - default: the scope is the "scope" template with every "{channel}"
 *       replaced by the channel's name ("{channel}" when not configured;
 *       every channel's scope is checked at init). The data is the payload
 *       itself when it is one JSON value the server accepts (strict: no
 *       NaN, no single quotes, valid UTF-8), otherwise the payload as a
 *       JSON string (an empty payload is "", invalid UTF-8 becomes U+FFFD).
 *     - "scope_from_payload": true: the payload must be a JSON object with a
 *       string "scope"; its "data" member is the data when present,
 *       otherwise the object without its reserved members (scope, data,
 *       paths, audience) is. Optional "paths" (array of strings) and
 *       "audience" (array of user ids) become the event's paths and
 *       audience. Whoever may NOTIFY on the channel then chooses the scope.
 *   A NOTIFY that yields no valid event (bad scope, not an object, refused
 *   by the server) is skipped with a warning (at most 10 per 10 s, then a
 *   count of the ones not logged).
 *
 *   The connection is retried with exponential backoff when it cannot be
 *   made, when a LISTEN fails, when it breaks (PQconsumeInput error, EOF,
 *   CONNECTION_BAD) or when connecting takes longer than
 *   connect_timeout_ms (PQconnectPoll has no timeout of its own): the
 *   delay starts at 100 ms and doubles up to reconnect_max_ms, with jitter
 *   (a random delay between half and all of the step). It goes back to
 *   100 ms once a connection has lasted reconnect_max_ms, so a server that
 *   accepts and then drops connections is retried at the slowest pace.
 *   Every reconnect LISTENs again; NOTIFYs sent while the feed was down
 *   are lost (PostgreSQL keeps none for a listener that is gone), which
 *   the "reconnected" log line says. A database that is down at start-up
 *   is not an error: init succeeds and the plugin keeps retrying.
 *   Logged: up (info), lost (warn), reconnected (info); failed attempts
 *   at warn for the first three and then once a minute (debug otherwise).
 *   The server's notices (e.g. the FATAL of a shutting-down server) go to
 *   the log, not to stderr.
 *
 *   Never blocking: no PQexec, no PQconnectdb. One exception is libpq's
 *   own: a "host" that is a name is resolved with getaddrinfo() inside
 *   PQconnectStartParams/PQconnectPoll, which may block on DNS; give
 *   "hostaddr" (or a numeric host, or a Unix socket directory) to avoid
 *   that. A peer that vanishes without a FIN is noticed only by TCP:
 *   add keepalives_idle/keepalives_interval/tcp_user_timeout to the
 *   conninfo to bound that. The plugin sets client_encoding=UTF8 and, when
 *   the conninfo has none, application_name "scopecast-pgnotify".
 *
 * Config (a JSON object; any other key is an init error)
 *   conninfo            string, required: a libpq connection string or URI
 *   channels            array of 1..256 distinct channel names (1..63
 *                       bytes each), required
 *   scope               string, default "{channel}" (not with
 *                       scope_from_payload)
 *   scope_from_payload  bool, default false
 *   reconnect_max_ms    integer 100..3600000, default 5000
 *   connect_timeout_ms  integer, 0 (none) or 100..3600000, default 10000
 *
 * Threads
 *   Everything runs on the plugin loop: init, shutdown and the watch and
 *   timer callbacks. The plugin has no thread of its own and no hooks.
 *
 * Ownership
 *   The state (pgn_t) is allocated by init and freed by shutdown, with the
 *   copies of the configuration, the PGconn, the one fd watch and the one
 *   timer (a retry while the feed is down, the connect deadline while
 *   connecting). The watch is always stopped before libpq may close its
 *   fd: before every PQconnectPoll (which may switch sockets) and before
 *   PQfinish. Payloads, json-c objects and the strings given to
 *   sc_host_emit are freed right after the emit (the server copies).
 */
#include <scopecast/plugin.h>

#include <json-c/json.h>
#include <libpq-fe.h>

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PGN_BACKOFF_MIN_MS 100u
#define PGN_MS_MAX 3600000 /* bound of the *_ms settings: one hour */
#define PGN_MAX_CHANNELS 256
#define PGN_CHANNEL_MAX 63 /* NAMEDATALEN - 1: longer names get truncated */
#define PGN_SCOPE_MAX 200  /* docs/PROTOCOL.md "Scopes" */
#define PGN_WARN_BURST 10  /* skip warnings per window */
#define PGN_WARN_WINDOW 10.0
#define PGN_FAIL_LOG_EVERY 60.0 /* after 3 failed attempts, warn this often */

typedef struct pgn_channel {
    char *name;  /* exactly as configured (and as NOTIFY names it) */
    char *scope; /* its scope in template mode, NULL with scope_from_payload */
} pgn_channel_t;

enum pgn_state {
    PGN_WAITING,    /* no connection: the retry timer runs */
    PGN_CONNECTING, /* PQconnectPoll in progress */
    PGN_LISTENING,  /* connected, LISTEN sent, its results pending */
    PGN_READY,      /* listening: NOTIFYs become events */
};

typedef struct pgn {
    sc_host_t *host;
    /* configuration */
    char *conninfo;
    pgn_channel_t *channels;
    size_t nchannels;
    bool scope_from_payload;
    unsigned reconnect_max_ms;
    unsigned connect_timeout_ms;
    /* the connection */
    enum pgn_state state;
    PGconn *conn;
    sc_plugin_watch_t *watch;
    unsigned watch_events;
    sc_plugin_timer_t *timer; /* retry (WAITING) or deadline (connecting) */
    char listen_err[256];     /* the first failed LISTEN's error */
    /* backoff and logging */
    unsigned backoff_ms; /* the next delay's step */
    unsigned attempts;   /* failed attempts since the feed went down */
    bool ever_ready;
    double ready_at;   /* when the feed came up */
    double down_since; /* when it went down */
    double last_fail_log;
    uint64_t rng;
    double warn_window;
    unsigned warn_count;
    unsigned long warn_suppressed;
    uint64_t delivered, skipped;
} pgn_t;

static void pgn_connect(pgn_t *st);
static void pgn_fail(pgn_t *st, const char *why);

/* ---- small helpers --------------------------------------------------- */

static double pgn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t pgn_rand(pgn_t *st)
{
    /* xorshift64*: jitter only, no need for more */
    uint64_t x = st->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    st->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* `in` on one line (libpq's messages end in "\n" and may span lines),
 * trimmed, into out[n]. */
static const char *pgn_line(const char *in, char *out, size_t n)
{
    size_t o = 0;
    bool space = false;
    for (const char *p = in ? in : ""; *p && o + 1 < n; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < n)
            out[o++] = ' ';
        space = false;
        out[o++] = (char)(c < 0x20 ? '?' : c);
    }
    out[o] = '\0';
    if (o == 0)
        snprintf(out, n, "unknown error");
    return out;
}

/* docs/PROTOCOL.md: 1-200 bytes of printable ASCII without spaces. */
static bool pgn_scope_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c <= 0x20 || c >= 0x7f || n >= PGN_SCOPE_MAX)
            return false;
    }
    return n > 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t pgn_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0], cp, min;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    cp = c & (0x3fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A copy of s[len] with every invalid UTF-8 byte replaced by U+FFFD, or
 * NULL (no memory). */
static char *pgn_utf8_fix(const char *s, size_t len, size_t *outlen)
{
    char *out = malloc(len * 3 + 1), *o = out;
    const unsigned char *p = (const unsigned char *)s;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t k = pgn_utf8_seq(p + i, len - i);
        if (k) {
            memcpy(o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    *o = '\0';
    *outlen = (size_t)(o - out);
    return out;
}

static bool pgn_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = pgn_utf8_seq(p + i, len - i);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

/* No NaN or infinity anywhere (json-c accepts them even when strict). */
static bool pgn_json_finite(struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_double:
        return isfinite(json_object_get_double(o));
    case json_type_array: {
        size_t n = json_object_array_length(o);
        for (size_t i = 0; i < n; i++)
            if (!pgn_json_finite(json_object_array_get_idx(o, i)))
                return false;
        return true;
    }
    case json_type_object: {
        json_object_object_foreach(o, k, v)
        {
            (void)k;
            if (!pgn_json_finite(v))
                return false;
        }
        return true;
    }
    default:
        return true;
    }
}

/* Parses s as exactly one strict JSON value. Returns true with *out (a new
 * reference; NULL for JSON null) or false. */
static bool pgn_json_parse(const char *s, struct json_object **out)
{
    size_t len = strlen(s);
    struct json_tokener *tok;
    struct json_object *o;
    bool ok;
    *out = NULL;
    if (len >= INT_MAX)
        return false;
    tok = json_tokener_new();
    if (!tok)
        return false;
    json_tokener_set_flags(tok,
                           JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    /* the terminating NUL included, so that a bare number ends */
    o = json_tokener_parse_ex(tok, s, (int)len + 1);
    ok = json_tokener_get_error(tok) == json_tokener_success &&
         pgn_json_finite(o);
    json_tokener_free(tok);
    if (!ok) {
        json_object_put(o);
        return false;
    }
    *out = o;
    return true;
}

static const char *pgn_json_str(struct json_object *o)
{
    return json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* A skipped NOTIFY: a warning, at most PGN_WARN_BURST per window. */
static void pgn_skip(pgn_t *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void pgn_skip(pgn_t *st, const char *fmt, ...)
{
    double now = pgn_now();
    char msg[512];
    va_list ap;
    st->skipped++;
    if (now - st->warn_window >= PGN_WARN_WINDOW) {
        if (st->warn_suppressed)
            sc_host_log(st->host, SC_PLUGIN_LOG_WARN,
                        "%lu more NOTIFY(s) skipped without a log line",
                        st->warn_suppressed);
        st->warn_window = now;
        st->warn_count = 0;
        st->warn_suppressed = 0;
    }
    if (st->warn_count >= PGN_WARN_BURST) {
        st->warn_suppressed++;
        return;
    }
    st->warn_count++;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sc_host_log(st->host, SC_PLUGIN_LOG_WARN, "skipped a NOTIFY: %s", msg);
}

/* ---- NOTIFY -> event ------------------------------------------------- */

static void pgn_emit(pgn_t *st, const char *channel, const sc_plugin_emit_t *e)
{
    if (sc_host_emit(st->host, e, NULL) != 0) {
        pgn_skip(st,
                 "channel \"%s\": the server refused the event for scope "
                 "\"%s\" (invalid data, too many paths, or no memory)",
                 channel, e->scope);
        return;
    }
    st->delivered++;
}

/* Template mode: the payload as data. */
static void pgn_deliver_plain(pgn_t *st, const pgn_channel_t *ch,
                              const char *payload)
{
    sc_plugin_emit_t e = {.scope = ch->scope};
    struct json_object *parsed = NULL, *str = NULL;
    size_t len = strlen(payload);
    const char *text = payload;
    char *fixed = NULL;

    if (pgn_json_parse(payload, &parsed)) {
        e.data_json = payload;
        if (sc_host_emit(st->host, &e, NULL) == 0) {
            st->delivered++;
            goto out;
        }
        /* The scope is valid and there are no paths: the server refused
         * the data. json-c is laxer than the server's JSON (it takes
         * 'single-quoted' keys, for one), so this is text after all. */
    }
    if (!pgn_utf8_valid(payload, len)) {
        fixed = pgn_utf8_fix(payload, len, &len);
        text = fixed;
    }
    if (text && len <= INT_MAX)
        str = json_object_new_string_len(text, (int)len);
    if (!str) {
        pgn_skip(st, "channel \"%s\": no memory", ch->name);
        goto out;
    }
    e.data_json = pgn_json_str(str);
    pgn_emit(st, ch->name, &e);
out:
    json_object_put(parsed);
    json_object_put(str);
    free(fixed);
}

/* An array of strings into a new array of borrowed pointers (*n of them);
 * false if `arr` is not such an array (or no memory). */
static bool pgn_strings(struct json_object *arr, const char ***out, size_t *n)
{
    size_t len;
    *out = NULL;
    *n = 0;
    if (!json_object_is_type(arr, json_type_array))
        return false;
    len = json_object_array_length(arr);
    if (len == 0)
        return true;
    *out = calloc(len, sizeof **out);
    if (!*out)
        return false;
    for (size_t i = 0; i < len; i++) {
        struct json_object *s = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(s, json_type_string)) {
            free(*out);
            *out = NULL;
            return false;
        }
        (*out)[i] = json_object_get_string(s);
    }
    *n = len;
    return true;
}

static bool pgn_reserved(const char *key)
{
    return !strcmp(key, "scope") || !strcmp(key, "data") ||
           !strcmp(key, "paths") || !strcmp(key, "audience");
}

/* scope_from_payload mode. */
static void pgn_deliver_routed(pgn_t *st, const pgn_channel_t *ch,
                               const char *payload)
{
    sc_plugin_emit_t e = {0};
    struct json_object *root = NULL, *v, *rest = NULL;
    const char **paths = NULL, **audience = NULL;

    if (!pgn_json_parse(payload, &root) ||
        !json_object_is_type(root, json_type_object)) {
        pgn_skip(st, "channel \"%s\": the payload is not a JSON object",
                 ch->name);
        goto out;
    }
    if (!json_object_object_get_ex(root, "scope", &v) ||
        !json_object_is_type(v, json_type_string)) {
        pgn_skip(st, "channel \"%s\": the payload has no \"scope\" string",
                 ch->name);
        goto out;
    }
    e.scope = json_object_get_string(v);
    if (!pgn_scope_ok(e.scope) ||
        strlen(e.scope) != (size_t)json_object_get_string_len(v)) {
        pgn_skip(st,
                 "channel \"%s\": invalid scope in the payload (1-200 "
                 "bytes of printable ASCII without spaces)",
                 ch->name);
        goto out;
    }
    if (json_object_object_get_ex(root, "paths", &v) &&
        !pgn_strings(v, &paths, &e.npaths)) {
        pgn_skip(st, "channel \"%s\": \"paths\" is not an array of strings",
                 ch->name);
        goto out;
    }
    e.paths = paths;
    if (json_object_object_get_ex(root, "audience", &v)) {
        if (!pgn_strings(v, &audience, &e.naudience)) {
            pgn_skip(st,
                     "channel \"%s\": \"audience\" is not an array of "
                     "user ids",
                     ch->name);
            goto out;
        }
        e.audience = audience;
        e.has_audience = true;
    }
    if (json_object_object_get_ex(root, "data", &v)) {
        e.data_json = pgn_json_str(v); /* "null" for a JSON null */
    } else {
        rest = json_object_new_object();
        if (!rest) {
            pgn_skip(st, "channel \"%s\": no memory", ch->name);
            goto out;
        }
        json_object_object_foreach(root, key, val)
        {
            if (!pgn_reserved(key) &&
                json_object_object_add(rest, key, json_object_get(val))) {
                pgn_skip(st, "channel \"%s\": no memory", ch->name);
                goto out;
            }
        }
        e.data_json = pgn_json_str(rest);
    }
    pgn_emit(st, ch->name, &e);
out:
    free(paths);
    free(audience);
    json_object_put(rest);
    json_object_put(root);
}

static void pgn_deliver(pgn_t *st, const PGnotify *n)
{
    const pgn_channel_t *ch = NULL;
    for (size_t i = 0; i < st->nchannels && !ch; i++)
        if (!strcmp(st->channels[i].name, n->relname))
            ch = &st->channels[i];
    if (!ch) {
        /* only if someone LISTENed on our session: not ours to route */
        pgn_skip(st, "channel \"%.64s\" is not configured", n->relname);
        return;
    }
    if (st->scope_from_payload)
        pgn_deliver_routed(st, ch, n->extra ? n->extra : "");
    else
        pgn_deliver_plain(st, ch, n->extra ? n->extra : "");
}

/* ---- the connection -------------------------------------------------- */

static void pgn_notice(void *ud, const PGresult *res)
{
    pgn_t *st = ud;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    char line[512];
    int level = SC_PLUGIN_LOG_INFO;
    if (sev && (!strcmp(sev, "WARNING") || !strcmp(sev, "ERROR") ||
                !strcmp(sev, "FATAL") || !strcmp(sev, "PANIC")))
        level = SC_PLUGIN_LOG_WARN;
    sc_host_log(st->host, level, "PostgreSQL says: %s",
                pgn_line(PQresultErrorMessage(res), line, sizeof line));
}

/* "host:port" of the connection, for logs (never the conninfo: it may hold
 * a password). */
static const char *pgn_target(const pgn_t *st, char *out, size_t n)
{
    const char *h = st->conn ? PQhost(st->conn) : NULL;
    const char *p = st->conn ? PQport(st->conn) : NULL;
    const char *d = st->conn ? PQdb(st->conn) : NULL;
    snprintf(out, n, "%s:%s/%s", h && *h ? h : "?", p && *p ? p : "5432",
             d && *d ? d : "?");
    return out;
}

static void pgn_close(pgn_t *st)
{
    sc_host_watch_stop(st->watch); /* before PQfinish closes the fd */
    st->watch = NULL;
    st->watch_events = 0;
    sc_host_timer_stop(st->timer);
    st->timer = NULL;
    if (st->conn)
        PQfinish(st->conn);
    st->conn = NULL;
}

static int pgn_timer(pgn_t *st, unsigned ms, sc_plugin_timer_fn fn)
{
    sc_host_timer_stop(st->timer);
    st->timer = NULL;
    if (sc_host_timer_start(st->host, ms / 1000.0, 0, fn, st, &st->timer)) {
        st->timer = NULL;
        return -1;
    }
    return 0;
}

static void pgn_on_io(void *ud, int fd, unsigned events);

/* Watches the connection's socket for `events`: a new watch unless the
 * current one can be changed. Returns 0, or -1 after pgn_fail. */
static int pgn_watch(pgn_t *st, unsigned events)
{
    int fd = PQsocket(st->conn);
    if (fd < 0) {
        pgn_fail(st, "the connection has no socket");
        return -1;
    }
    if (st->watch) {
        if (events != st->watch_events)
            sc_host_watch_set(st->watch, events);
        st->watch_events = events;
        return 0;
    }
    if (sc_host_watch_start(st->host, fd, events, pgn_on_io, st, &st->watch)) {
        st->watch = NULL;
        pgn_fail(st, "cannot watch the connection's socket");
        return -1;
    }
    st->watch_events = events;
    return 0;
}

/* Sends what libpq holds; watches for writable while some is left. */
static int pgn_flush(pgn_t *st)
{
    int r = PQflush(st->conn);
    if (r < 0) {
        pgn_fail(st, PQerrorMessage(st->conn));
        return -1;
    }
    return pgn_watch(st, SC_PLUGIN_READ | (r ? SC_PLUGIN_WRITE : 0u));
}

static void pgn_ready(pgn_t *st)
{
    char target[300];
    double now = pgn_now();
    sc_host_timer_stop(st->timer); /* the connect deadline */
    st->timer = NULL;
    st->state = PGN_READY;
    st->ready_at = now;
    pgn_target(st, target, sizeof target);
    if (!st->ever_ready)
        sc_host_log(st->host, SC_PLUGIN_LOG_INFO,
                    "listening on %zu channel(s) at %s", st->nchannels, target);
    else
        sc_host_log(st->host, SC_PLUGIN_LOG_INFO,
                    "reconnected to %s after %.1f s and %u failed "
                    "attempt(s); listening again on %zu channel(s) "
                    "(NOTIFYs sent meanwhile were not received)",
                    target, now - st->down_since, st->attempts, st->nchannels);
    st->ever_ready = true;
    st->attempts = 0;
}

/* Connected: non-blocking mode, then one LISTEN per channel. */
static void pgn_connected(pgn_t *st)
{
    size_t cap = 1, len = 0;
    char *q, **ids;

    if (PQsetnonblocking(st->conn, 1) != 0) {
        pgn_fail(st, PQerrorMessage(st->conn));
        return;
    }
    ids = calloc(st->nchannels, sizeof *ids);
    if (!ids) {
        pgn_fail(st, "out of memory");
        return;
    }
    for (size_t i = 0; i < st->nchannels; i++) {
        const char *name = st->channels[i].name;
        ids[i] = PQescapeIdentifier(st->conn, name, strlen(name));
        if (!ids[i]) {
            char why[300];
            snprintf(why, sizeof why, "cannot quote channel \"%s\": %s", name,
                     PQerrorMessage(st->conn));
            for (size_t j = 0; j < i; j++)
                PQfreemem(ids[j]);
            free(ids);
            pgn_fail(st, why);
            return;
        }
        cap += strlen("LISTEN ;") + strlen(ids[i]);
    }
    q = malloc(cap);
    if (q) {
        for (size_t i = 0; i < st->nchannels; i++)
            len += (size_t)snprintf(q + len, cap - len, "LISTEN %s;", ids[i]);
    }
    for (size_t i = 0; i < st->nchannels; i++)
        PQfreemem(ids[i]);
    free(ids);
    if (!q) {
        pgn_fail(st, "out of memory");
        return;
    }
    st->listen_err[0] = '\0';
    if (!PQsendQuery(st->conn, q)) {
        free(q);
        pgn_fail(st, PQerrorMessage(st->conn));
        return;
    }
    free(q);
    st->state = PGN_LISTENING;
    pgn_flush(st);
}

/* One step of PQconnectPoll. The watch is stopped first: libpq may close
 * its socket and open another (next address, SSL/GSS fallback). */
static void pgn_connect_step(pgn_t *st)
{
    sc_host_watch_stop(st->watch);
    st->watch = NULL;
    switch (PQconnectPoll(st->conn)) {
    case PGRES_POLLING_READING:
        pgn_watch(st, SC_PLUGIN_READ);
        break;
    case PGRES_POLLING_WRITING:
    case PGRES_POLLING_ACTIVE: /* unused by libpq */
        pgn_watch(st, SC_PLUGIN_WRITE);
        break;
    case PGRES_POLLING_OK:
        pgn_connected(st);
        break;
    case PGRES_POLLING_FAILED:
    default:
        pgn_fail(st, PQerrorMessage(st->conn));
        break;
    }
}

/* Connected (LISTENING or READY): input, results, NOTIFYs. */
static void pgn_io(pgn_t *st, unsigned events)
{
    char err[512] = "";
    PGnotify *n;
    bool ok = true;

    if ((events & SC_PLUGIN_WRITE) && pgn_flush(st))
        return;
    if (!(events & SC_PLUGIN_READ))
        return;
    if (!PQconsumeInput(st->conn)) {
        ok = false;
        pgn_line(PQerrorMessage(st->conn), err, sizeof err);
    }
    while (ok && !PQisBusy(st->conn)) {
        PGresult *res = PQgetResult(st->conn);
        if (!res) {
            if (st->state == PGN_LISTENING) {
                if (st->listen_err[0]) {
                    snprintf(err, sizeof err, "LISTEN failed: %s",
                             st->listen_err);
                    ok = false;
                    break;
                }
                pgn_ready(st);
            }
            break;
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK && !st->listen_err[0])
            pgn_line(PQresultErrorMessage(res), st->listen_err,
                     sizeof st->listen_err);
        PQclear(res);
    }
    /* what was parsed before an error or EOF still counts, in order */
    while ((n = PQnotifies(st->conn)) != NULL) {
        pgn_deliver(st, n);
        PQfreemem(n);
    }
    if (ok && PQstatus(st->conn) == CONNECTION_BAD) {
        ok = false;
        pgn_line(PQerrorMessage(st->conn), err, sizeof err);
    }
    if (!ok) {
        pgn_fail(st, err);
        return;
    }
    /* non-blocking sends: flush again after reading (libpq's rule) */
    if (st->watch_events & SC_PLUGIN_WRITE)
        pgn_flush(st);
}

static void pgn_on_io(void *ud, int fd, unsigned events)
{
    pgn_t *st = ud;
    (void)fd;
    switch (st->state) {
    case PGN_CONNECTING:
        pgn_connect_step(st);
        break;
    case PGN_LISTENING:
    case PGN_READY:
        pgn_io(st, events);
        break;
    case PGN_WAITING:
        break;
    }
}

static void pgn_on_retry(void *ud)
{
    pgn_t *st = ud;
    sc_host_timer_stop(st->timer); /* one-shot: ours to free */
    st->timer = NULL;
    pgn_connect(st);
}

static void pgn_on_deadline(void *ud)
{
    pgn_t *st = ud;
    char why[96];
    sc_host_timer_stop(st->timer);
    st->timer = NULL;
    snprintf(why, sizeof why, "no connection within %u ms",
             st->connect_timeout_ms);
    pgn_fail(st, why);
}

/* The connection failed or broke: close it, schedule the next attempt. */
static void pgn_fail(pgn_t *st, const char *why)
{
    char line[512], target[300];
    bool was_ready = st->state == PGN_READY;
    double now = pgn_now();
    unsigned step, delay;

    pgn_line(why, line, sizeof line); /* `why` may be libpq's buffer */
    pgn_target(st, target, sizeof target);
    pgn_close(st);
    st->state = PGN_WAITING;
    if (was_ready) {
        if ((now - st->ready_at) * 1000.0 >= st->reconnect_max_ms)
            st->backoff_ms = PGN_BACKOFF_MIN_MS;
        st->down_since = now;
        st->attempts = 0;
    } else {
        st->attempts++;
    }
    step = st->backoff_ms;
    delay = step / 2 + (unsigned)(pgn_rand(st) % (step - step / 2 + 1));
    st->backoff_ms =
        step > st->reconnect_max_ms / 2 ? st->reconnect_max_ms : step * 2;
    if (was_ready) {
        sc_host_log(st->host, SC_PLUGIN_LOG_WARN,
                    "connection to %s lost: %s; reconnecting in %u ms", target,
                    line, delay);
    } else {
        bool loud =
            st->attempts <= 3 || now - st->last_fail_log >= PGN_FAIL_LOG_EVERY;
        if (loud)
            st->last_fail_log = now;
        sc_host_log(st->host, loud ? SC_PLUGIN_LOG_WARN : SC_PLUGIN_LOG_DEBUG,
                    "cannot connect to %s (attempt %u): %s; retrying in "
                    "%u ms",
                    target, st->attempts, line, delay);
    }
    if (pgn_timer(st, delay, pgn_on_retry))
        sc_host_log(st->host, SC_PLUGIN_LOG_ERROR,
                    "cannot start a timer: no more reconnects, the feed "
                    "stays down");
}

static void pgn_connect(pgn_t *st)
{
    static const char *const keys[] = {"dbname", "fallback_application_name",
                                       "client_encoding", NULL};
    const char *vals[] = {st->conninfo, "scopecast-pgnotify", "UTF8", NULL};

    st->state = PGN_CONNECTING;
    /* expand_dbname: conninfo is a connection string or URI; the later
     * keys override it */
    st->conn = PQconnectStartParams(keys, vals, 1);
    if (!st->conn) {
        pgn_fail(st, "out of memory");
        return;
    }
    PQsetNoticeReceiver(st->conn, pgn_notice, st);
    if (PQstatus(st->conn) == CONNECTION_BAD) {
        pgn_fail(st, PQerrorMessage(st->conn));
        return;
    }
    if (st->connect_timeout_ms &&
        pgn_timer(st, st->connect_timeout_ms, pgn_on_deadline)) {
        pgn_fail(st, "cannot start a timer");
        return;
    }
    /* as if PQconnectPoll had answered PGRES_POLLING_WRITING */
    pgn_watch(st, SC_PLUGIN_WRITE);
}

/* ---- configuration --------------------------------------------------- */

static char *pgn_subst(const char *tpl, const char *channel)
{
    static const char key[] = "{channel}";
    size_t klen = sizeof key - 1, clen = strlen(channel), n = 0;
    const char *p;
    char *out, *o;
    for (p = tpl; (p = strstr(p, key)) != NULL; p += klen)
        n++;
    out = malloc(strlen(tpl) + n * clen + 1);
    if (!out)
        return NULL;
    o = out;
    for (p = tpl; *p;) {
        if (!strncmp(p, key, klen)) {
            memcpy(o, channel, clen);
            o += clen;
            p += klen;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

static int pgn_ms(struct json_object *v, const char *key, bool zero_ok,
                  unsigned *out, char *err, size_t errlen)
{
    int64_t x;
    if (!json_object_is_type(v, json_type_int))
        goto bad;
    x = json_object_get_int64(v);
    if ((x == 0 && zero_ok) || (x >= PGN_BACKOFF_MIN_MS && x <= PGN_MS_MAX)) {
        *out = (unsigned)x;
        return 0;
    }
bad:
    snprintf(err, errlen, "config: \"%s\" must be an integer %sfrom %u to %d",
             key, zero_ok ? "(0: none) or " : "", PGN_BACKOFF_MIN_MS,
             PGN_MS_MAX);
    return -1;
}

static int pgn_config(pgn_t *st, const char *config_json, char *err,
                      size_t errlen)
{
    struct json_object *root = NULL, *conninfo = NULL, *channels = NULL;
    struct json_object *scope = NULL;
    const char *tpl = "{channel}";
    PQconninfoOption *opts;
    char *perr = NULL;
    size_t n;
    int rc = -1;

    if (!pgn_json_parse(config_json ? config_json : "{}", &root) ||
        !json_object_is_type(root, json_type_object)) {
        snprintf(err, errlen, "config: not a JSON object");
        goto out;
    }
    json_object_object_foreach(root, key, val)
    {
        if (!strcmp(key, "conninfo")) {
            conninfo = val;
        } else if (!strcmp(key, "channels")) {
            channels = val;
        } else if (!strcmp(key, "scope")) {
            scope = val;
        } else if (!strcmp(key, "scope_from_payload")) {
            if (!json_object_is_type(val, json_type_boolean)) {
                snprintf(err, errlen,
                         "config: \"scope_from_payload\" must be true or "
                         "false");
                goto out;
            }
            st->scope_from_payload = json_object_get_boolean(val);
        } else if (!strcmp(key, "reconnect_max_ms")) {
            if (pgn_ms(val, key, false, &st->reconnect_max_ms, err, errlen))
                goto out;
        } else if (!strcmp(key, "connect_timeout_ms")) {
            if (pgn_ms(val, key, true, &st->connect_timeout_ms, err, errlen))
                goto out;
        } else {
            snprintf(err, errlen,
                     "config: unknown key \"%.64s\" (known: conninfo, "
                     "channels, scope, scope_from_payload, reconnect_max_ms, "
                     "connect_timeout_ms)",
                     key);
            goto out;
        }
    }

    if (!conninfo) {
        snprintf(err, errlen,
                 "config: \"conninfo\" is required (a libpq connection "
                 "string, e.g. \"hostaddr=127.0.0.1 port=5432 "
                 "dbname=postgres user=postgres\")");
        goto out;
    }
    if (!json_object_is_type(conninfo, json_type_string) ||
        !*json_object_get_string(conninfo)) {
        snprintf(err, errlen,
                 "config: \"conninfo\" must be a non-empty string");
        goto out;
    }
    opts = PQconninfoParse(json_object_get_string(conninfo), &perr);
    if (!opts) {
        char line[256];
        snprintf(err, errlen, "config: \"conninfo\" is invalid: %s",
                 perr ? pgn_line(perr, line, sizeof line) : "out of memory");
        PQfreemem(perr);
        goto out;
    }
    PQconninfoFree(opts);
    st->conninfo = strdup(json_object_get_string(conninfo));
    if (!st->conninfo)
        goto nomem;

    if (!channels || !json_object_is_type(channels, json_type_array) ||
        (n = json_object_array_length(channels)) == 0) {
        snprintf(err, errlen,
                 "config: \"channels\" is required: a non-empty array of "
                 "channel names");
        goto out;
    }
    if (n > PGN_MAX_CHANNELS) {
        snprintf(err, errlen, "config: more than %d \"channels\"",
                 PGN_MAX_CHANNELS);
        goto out;
    }
    if (scope) {
        if (st->scope_from_payload) {
            snprintf(err, errlen,
                     "config: \"scope\" cannot be combined with "
                     "\"scope_from_payload\": true (the payload names the "
                     "scope)");
            goto out;
        }
        if (!json_object_is_type(scope, json_type_string) ||
            !*json_object_get_string(scope)) {
            snprintf(err, errlen,
                     "config: \"scope\" must be a non-empty string (a "
                     "template: {channel} is the channel's name)");
            goto out;
        }
        tpl = json_object_get_string(scope);
    }
    st->channels = calloc(n, sizeof *st->channels);
    if (!st->channels)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        struct json_object *c = json_object_array_get_idx(channels, i);
        const char *name;
        size_t len;
        if (!json_object_is_type(c, json_type_string)) {
            snprintf(err, errlen, "config: \"channels\"[%zu] is not a string",
                     i);
            goto out;
        }
        name = json_object_get_string(c);
        len = strlen(name);
        if (len == 0 || len > PGN_CHANNEL_MAX ||
            len != (size_t)json_object_get_string_len(c)) {
            snprintf(err, errlen,
                     "config: channel \"%.80s\" must be 1 to %d bytes "
                     "(PostgreSQL truncates longer names)",
                     name, PGN_CHANNEL_MAX);
            goto out;
        }
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(st->channels[j].name, name)) {
                snprintf(err, errlen, "config: channel \"%s\" given twice",
                         name);
                goto out;
            }
        }
        st->channels[i].name = strdup(name);
        st->nchannels = i + 1;
        if (!st->channels[i].name)
            goto nomem;
        if (st->scope_from_payload)
            continue;
        st->channels[i].scope = pgn_subst(tpl, name);
        if (!st->channels[i].scope)
            goto nomem;
        if (!pgn_scope_ok(st->channels[i].scope)) {
            snprintf(err, errlen,
                     "config: channel \"%s\" gives the scope \"%.80s\", "
                     "which is not a valid scope (1-200 bytes of printable "
                     "ASCII without spaces)",
                     name, st->channels[i].scope);
            goto out;
        }
    }
    rc = 0;
    goto out;
nomem:
    snprintf(err, errlen, "out of memory");
out:
    json_object_put(root);
    return rc;
}

/* ---- the plugin ------------------------------------------------------ */

static void pgn_free(pgn_t *st)
{
    pgn_close(st);
    for (size_t i = 0; i < st->nchannels; i++) {
        free(st->channels[i].name);
        free(st->channels[i].scope);
    }
    free(st->channels);
    free(st->conninfo);
    free(st);
}

static int pgn_init(sc_host_t *host, const char *config_json, void **state,
                    char *err, size_t errlen)
{
    pgn_t *st = calloc(1, sizeof *st);
    struct timespec ts;

    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->host = host;
    st->reconnect_max_ms = 5000;
    st->connect_timeout_ms = 10000;
    if (pgn_config(st, config_json, err, errlen)) {
        pgn_free(st);
        return -1;
    }
    st->backoff_ms = PGN_BACKOFF_MIN_MS;
    clock_gettime(CLOCK_REALTIME, &ts);
    st->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
              (uint64_t)(uintptr_t)st;
    if (!st->rng)
        st->rng = 0x9E3779B97F4A7C15ULL;
    st->state = PGN_WAITING;
    sc_host_log(host, SC_PLUGIN_LOG_INFO,
                "%zu channel(s), %s; connecting (reconnects back off to "
                "%u ms)",
                st->nchannels,
                st->scope_from_payload ? "scope from the payload"
                                       : "scope from the template",
                st->reconnect_max_ms);
    /* a database that is down is retried, not an init error */
    pgn_connect(st);
    if (st->state == PGN_WAITING && !st->timer) {
        snprintf(err, errlen, "cannot start a timer");
        pgn_free(st);
        return -1;
    }
    *state = st;
    return 0;
}

static void pgn_shutdown(void *state)
{
    pgn_t *st = state;
    if (!st)
        return;
    sc_host_log(st->host, SC_PLUGIN_LOG_INFO,
                "stopped: %llu event(s) emitted, %llu NOTIFY(s) skipped",
                (unsigned long long)st->delivered,
                (unsigned long long)st->skipped);
    pgn_free(st);
}

SC_PLUGIN_EXPORT const sc_plugin_t scopecast_plugin = {
    .abi = SC_PLUGIN_ABI,
    .name = "pgnotify",
    .init = pgn_init,
    .shutdown = pgn_shutdown,
};
