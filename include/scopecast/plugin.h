/*
 * scopecast plugin API: code loaded into the server (--plugin PATH) that
 * emits events and decides who may do what.
 *
 * Model
 *   A plugin is a shared object exporting one descriptor,
 *
 *       const sc_plugin_t scopecast_plugin = {
 *           .abi = SC_PLUGIN_ABI, .name = "hello", .init = hello_init, ...};
 *
 *   The server loads every --plugin in the order given, checks `abi`
 *   against its own SC_PLUGIN_ABI and calls `init` with the plugin's
 *   configuration (the JSON object after the path, or "{}"). A missing
 *   file, a missing descriptor, another ABI or a failing init stops
 *   start-up with a message and a non-zero exit. At shutdown, after every
 *   connection is gone, `shutdown` runs in the reverse order.
 *
 *   A plugin calls into the server through the sc_host_* functions below
 *   (the server exports them; a plugin links against nothing of ours). It
 *   is asked through its hooks, each optional:
 *     on_connect     a WebSocket connection whose token (if any) is valid:
 *                    allow or deny; may set its user and default meta
 *     on_subscribe   a `subscribe` to a scope the connection is not yet
 *                    subscribed to, or a `presence` query (see
 *                    sc_host_req_kind): allow or deny
 *     on_emit        a client's `emit`: allow, deny or change its data
 *     on_disconnect  exactly once for every connection on_connect was
 *                    called for (and for every connection when the plugin
 *                    has no on_connect), when it is gone
 *   Plugins are asked in load order; the first that denies decides and the
 *   later ones are not asked. The server's own rules (token claims,
 *   --anonymous-scopes, --client-emit) are checked first: a plugin can
 *   narrow them, not widen them.
 *
 *   A hook answers at once (SC_PLUGIN_ALLOW / SC_PLUGIN_DENY) or later:
 *   it returns SC_PLUGIN_PENDING and calls sc_host_resume(req, verdict)
 *   exactly once, from any thread, when it knows. Meanwhile that
 *   connection's later requests wait (its input is not read), and other
 *   connections are served as usual. A verdict that does not come within
 *   the hook timeout (5 s) counts as a denial; the plugin must still call
 *   sc_host_resume for that req (it is then only freed).
 *
 * Threads
 *   The "plugin loop" is the server's first service thread: init,
 *   shutdown, and the callbacks of timers, fd watches and subscriptions run
 *   there, and the functions marked "Thread: plugin loop" may be called
 *   only from those (a plugin's own threads use sc_host_emit, the close
 *   functions, presence, logging and sc_host_resume, which are safe from
 *   any thread). Hooks run on the service thread that owns the connection:
 *   with --threads N above 1, hooks of different connections run at the
 *   same time on different threads, so hook code must be thread-safe.
 *   No callback may block: do I/O on the loop (fd watches, timers) or on
 *   your own thread and answer with sc_host_resume.
 *
 * Ownership
 *   Every pointer the server passes into a callback is borrowed for that
 *   call, except a `req`, which stays valid until it is answered (by the
 *   hook's return value, or by sc_host_resume). Strings a plugin passes in
 *   are copied before the call returns. Timers, watches and subscriptions
 *   are the plugin's: it stops them; whatever is left at shutdown is
 *   stopped and freed by the server after `shutdown` returns.
 *
 * Versioning: SC_PLUGIN_ABI changes whenever a struct here or a function's
 * meaning changes; a plugin built against another value is refused.
 */
#ifndef SCOPECAST_PLUGIN_H
#define SCOPECAST_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SC_PLUGIN_ABI 1

/* The name of the descriptor a plugin exports, and how to export it (a
 * plugin may build with -fvisibility=hidden):
 *     SC_PLUGIN_EXPORT const sc_plugin_t scopecast_plugin = {...}; */
#define SC_PLUGIN_SYMBOL "scopecast_plugin"
#define SC_PLUGIN_EXPORT __attribute__((visibility("default")))

/* Hook answers. */
enum sc_plugin_verdict {
    SC_PLUGIN_ALLOW = 0,
    SC_PLUGIN_DENY = 1,
    SC_PLUGIN_PENDING = 2, /* sc_host_resume() comes later */
};

/* Log levels (as --log-level). */
enum sc_plugin_log_level {
    SC_PLUGIN_LOG_DEBUG = 0,
    SC_PLUGIN_LOG_INFO = 1,
    SC_PLUGIN_LOG_WARN = 2,
    SC_PLUGIN_LOG_ERROR = 3,
};

/* What sc_host_req_kind() says a req asks. */
enum sc_plugin_req_kind {
    SC_PLUGIN_REQ_CONNECT = 0,
    SC_PLUGIN_REQ_SUBSCRIBE = 1,
    SC_PLUGIN_REQ_PRESENCE = 2, /* a `presence` query, asked of on_subscribe */
    SC_PLUGIN_REQ_EMIT = 3,
};

/* fd watch events. */
#define SC_PLUGIN_READ 1u
#define SC_PLUGIN_WRITE 2u

/* Most paths one sc_host_emit may carry. */
#define SC_PLUGIN_MAX_PATHS 10000

/* sc_host_subscribe flags. */
#define SC_PLUGIN_SUB_PRESENCE 1u /* also join/leave/update pushes */

typedef struct sc_host sc_host_t;             /* the server, one per plugin */
typedef struct sc_plugin_req sc_plugin_req_t; /* one question to a hook */
typedef struct sc_plugin_sub sc_plugin_sub_t;
typedef struct sc_plugin_timer sc_plugin_timer_t;
typedef struct sc_plugin_watch sc_plugin_watch_t;

/* A WebSocket connection as hooks see it. Every field is borrowed for the
 * call (or while a req lives); strings are NUL-terminated. */
typedef struct sc_plugin_conn {
    const char *session_id;  /* 16 hex digits; never NULL */
    const char *user_id;     /* NULL: anonymous */
    const char *claims_json; /* the verified token's claims (a JSON
                                object), or NULL without a token */
    const char *peer;        /* the client's address, "1.2.3.4" or an
                                IPv6 address (no port) */
    const char *origin;      /* the upgrade's Origin header, or NULL */
    const char *cookie;      /* the upgrade's Cookie header, or NULL */
    const char *query;       /* the upgrade target's query (after '?'),
                                or NULL */
} sc_plugin_conn_t;

/* An event to emit (sc_host_emit), or a client's emit shown to on_emit. */
typedef struct sc_plugin_emit {
    const char *scope;        /* required */
    const char *const *paths; /* npaths strings; may be 0 */
    size_t npaths;
    const char *data_json;       /* one JSON value, or NULL for none */
    const char *const *audience; /* user ids, used when has_audience */
    size_t naudience;
    bool has_audience; /* false: everyone; true with 0 ids: nobody */
} sc_plugin_emit_t;

/* One push a plugin subscription receives. */
typedef struct sc_plugin_event {
    const char *scope;
    uint64_t seq;     /* the event's seq; 0 for join/leave/update */
    const char *json; /* the push exactly as a WebSocket client gets it
                         (docs/PROTOCOL.md), `len` bytes, not
                         NUL-terminated */
    size_t len;
    uint32_t dropped; /* for a `dropped` push: how many pushes were
                         dropped for this subscription (its queue was
                         full); 0 for every other push */
} sc_plugin_event_t;

typedef void (*sc_plugin_event_fn)(void *ud, const sc_plugin_event_t *ev);
/* The subscription was ended by the server (sc_host_close_scope, a
 * shutdown): `reason` is the protocol's `closed.reason`. The subscription
 * must still be given back with sc_host_unsubscribe. */
typedef void (*sc_plugin_closed_fn)(void *ud, const char *reason);
typedef void (*sc_plugin_timer_fn)(void *ud);
typedef void (*sc_plugin_watch_fn)(void *ud, int fd, unsigned events);

/* The descriptor a plugin exports as `scopecast_plugin`. */
typedef struct sc_plugin {
    uint32_t abi;     /* SC_PLUGIN_ABI */
    const char *name; /* for logs and errors */
    /* Starts the plugin. `config_json` is a JSON object ("{}" when none
     * was given). Sets *state (passed to every hook and to shutdown).
     * Returns 0, or non-zero with a reason in err (errlen bytes) to stop
     * the server's start-up. Thread: plugin loop. */
    int (*init)(sc_host_t *host, const char *config_json, void **state,
                char *err, size_t errlen);
    /* Stops it: join its threads, stop its timers and watches, give back
     * its subscriptions. Optional. Thread: plugin loop. */
    void (*shutdown)(void *state);
    /* Hooks (each optional; see the model above). Thread: the
     * connection's service thread. */
    int (*on_connect)(void *state, sc_plugin_req_t *req,
                      const sc_plugin_conn_t *conn);
    int (*on_subscribe)(void *state, sc_plugin_req_t *req,
                        const sc_plugin_conn_t *conn, const char *scope);
    int (*on_emit)(void *state, sc_plugin_req_t *req,
                   const sc_plugin_conn_t *conn, const sc_plugin_emit_t *e);
    void (*on_disconnect)(void *state, const sc_plugin_conn_t *conn);
} sc_plugin_t;

/* The descriptor every plugin defines (declared here so that compilers
 * checking for undeclared globals see it declared). */
extern SC_PLUGIN_EXPORT const sc_plugin_t scopecast_plugin;

/* ---- events and scopes: any thread ---------------------------------- */

/* Emits an event, as POST /api/emit does (the event has no origin). Never
 * blocks on a subscriber. The data is re-serialised (same value, compact
 * text); paths are a set (sorted, de-duplicated). *seq (optional) receives
 * the seq assigned, 0 when the scope has no subscribers (with --broker
 * linked, always 0: the cluster gives the seq once Redis has ordered the
 * event, after this returns). Returns 0; -1 for
 * a missing or invalid scope (sc_host_scope_valid), data that is not one
 * JSON value (sc_host_json_valid), more than SC_PLUGIN_MAX_PATHS paths, a
 * NULL path or audience entry, or no memory: nothing was emitted.
 * Thread: any. */
int sc_host_emit(sc_host_t *host, const sc_plugin_emit_t *e, uint64_t *seq);

/* The scope's presence as GET /api/presence answers it (a JSON object with
 * "scope" and "presence"), in *json_out, to be freed with
 * sc_host_free. Returns 0 or -1 (invalid scope, no memory). Thread: any. */
int sc_host_presence(sc_host_t *host, const char *scope, char **json_out);

/* Ends every subscription of `scope` (its subscribers get `closed`).
 * Returns how many were ended. Thread: any. */
size_t sc_host_close_scope(sc_host_t *host, const char *scope);

/* Ends `user_id`'s subscriptions in `scope`, or in every scope when scope
 * is NULL (`closed` with reason "kicked"). Returns how many. Thread: any. */
size_t sc_host_close_user(sc_host_t *host, const char *user_id,
                          const char *scope);

/* Whether `scope` is a valid scope name (docs/PROTOCOL.md, "Scopes":
 * 1-200 printable ASCII characters without spaces). Thread: any. */
bool sc_host_scope_valid(const char *scope);

/* Whether `json` is exactly one JSON value under the server's strict rules
 * (RFC 8259: no single quotes, NaN or comments; nesting up to 64), as data
 * and meta must be. Thread: any. */
bool sc_host_json_valid(const char *json);

/* Frees what sc_host_presence returned. NULL is a no-op. Thread: any. */
void sc_host_free(void *p);

/* Writes a line to the server's log, prefixed with the plugin's name
 * (`host` may be NULL: then with "plugin:" only). Thread: any. */
void sc_host_log(sc_host_t *host, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- hooks' answers --------------------------------------------------- */

/* Answers a req its hook returned SC_PLUGIN_PENDING for: SC_PLUGIN_ALLOW
 * or SC_PLUGIN_DENY. Exactly once per pending req; the req is freed by
 * this call (or later by the server) and must not be used afterwards.
 * Thread: any. */
void sc_host_resume(sc_plugin_req_t *req, int verdict);

/* What the req asks (enum sc_plugin_req_kind). Thread: the hook's, or the
 * plugin's while it holds a pending req. */
int sc_host_req_kind(const sc_plugin_req_t *req);

/* The reason a denial gives the client (the error's message; at most 200
 * bytes are kept). Call before answering DENY. Returns 0 or -1 (no
 * memory). Thread: as sc_host_req_kind. */
int sc_host_req_set_reason(sc_plugin_req_t *req, const char *reason);

/* on_connect only: the connection's user from now on (replacing the
 * token's `sub`, if any; NULL makes it anonymous), and the meta its
 * subscriptions carry when a subscribe sends none (one JSON value, at most
 * --max-meta bytes). Applied when the connection is allowed. Return 0, or
 * -1 (wrong kind of req, invalid value, no memory). Thread: as
 * sc_host_req_kind. */
int sc_host_req_set_user(sc_plugin_req_t *req, const char *user_id);
int sc_host_req_set_meta(sc_plugin_req_t *req, const char *meta_json);

/* on_emit only: replaces the event's data (one JSON value, or NULL for no
 * data). Applied when the emit is allowed. Returns 0 or -1. Thread: as
 * sc_host_req_kind. */
int sc_host_req_set_data(sc_plugin_req_t *req, const char *data_json);

/* ---- the plugin loop: timers, fds, subscriptions ---------------------- */

/* Calls fn(ud) after `after` seconds, then every `repeat` seconds (0: once;
 * a one-shot timer stays allocated until stopped). Returns 0 with *out, or
 * -1. Thread: plugin loop. */
int sc_host_timer_start(sc_host_t *host, double after, double repeat,
                        sc_plugin_timer_fn fn, void *ud,
                        sc_plugin_timer_t **out);
/* Stops and frees a timer; also from inside its own callback (how a
 * one-shot timer is given back). NULL is a no-op. Thread: plugin loop. */
void sc_host_timer_stop(sc_plugin_timer_t *t);

/* Calls fn(ud, fd, events) when `fd` is readable and/or writable (events:
 * SC_PLUGIN_READ | SC_PLUGIN_WRITE). The fd stays the plugin's. Returns 0
 * with *out, or -1. Thread: plugin loop. */
int sc_host_watch_start(sc_host_t *host, int fd, unsigned events,
                        sc_plugin_watch_fn fn, void *ud,
                        sc_plugin_watch_t **out);
/* Changes what a watch waits for (0 pauses it). Thread: plugin loop. */
void sc_host_watch_set(sc_plugin_watch_t *w, unsigned events);
/* Stops and frees a watch (before the plugin closes the fd); also from
 * inside its own callback. NULL is a no-op. Thread: plugin loop. */
void sc_host_watch_stop(sc_plugin_watch_t *w);

/* Subscribes inside the server: on_event(ud, ev) runs on the plugin loop
 * for each push of `scope`, in order, from a bounded queue (--maxsize;
 * drops are reported as `dropped` pushes); on_closed (optional) when the
 * server ends it. The subscription is not part of the scope's presence,
 * has no user and no session: events with an audience never reach it,
 * and it receives the events of every origin. Flags:
 * SC_PLUGIN_SUB_PRESENCE to get join/leave/update too. Returns 0 with *out, or
 * -1. Thread: plugin loop. */
int sc_host_subscribe(sc_host_t *host, const char *scope, unsigned flags,
                      sc_plugin_event_fn on_event,
                      sc_plugin_closed_fn on_closed, void *ud,
                      sc_plugin_sub_t **out);
/* Ends and frees a subscription (no callback afterwards); also from
 * inside any subscription's callback. NULL is a no-op. Thread: plugin
 * loop. */
void sc_host_unsubscribe(sc_plugin_sub_t *sub);

#ifdef __cplusplus
}
#endif

#endif
