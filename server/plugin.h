/*
 * scopecast server: the plugin host (the public side is
 * include/scopecast/plugin.h; docs/PLUGINS.md for users).
 *
 * Model: sc_plugins_load() dlopens every --plugin in order, checks its
 * descriptor and calls init on the main thread, which is also the first
 * service thread, "the plugin loop": plugins' timers, fd watches and
 * subscriptions run on that thread's libev loop. ws.c asks the hooks
 * through sc_plugins_ask() with one sc_plugin_req_t per question; a hook
 * may keep the req (SC_PLUGIN_PENDING) and answer later from any thread
 * with sc_host_resume(), which queues the req to the service thread that
 * asked (a mutex-guarded list and an ev_async) and hands it back to ws.c
 * through the callback ws.c registered (sc_plugins_thread_create).
 *
 * Ownership: the host owns the plugins (handles, states) and every req
 * (on a list, so that reqs a plugin never answered are freed at unload);
 * ws.c creates reqs and frees the ones answered at once, the host frees
 * the resumed ones after the callback. A req's `conn` is the asking
 * connection, set to NULL by ws.c when that connection stops waiting for
 * it (it was freed, or the answer came too late): such a req is only
 * freed when it comes back.
 *
 * Threads: sc_plugins_load and sc_plugins_unload run on the main thread
 * (before the service threads start / after they stopped); the req
 * functions and sc_plugins_ask on the asking service thread; the sc_host_*
 * functions as plugin.h says.
 */
#ifndef SC_SERVER_PLUGIN_H
#define SC_SERVER_PLUGIN_H

#include "clock.h"
#include "svc.h"

#include <scopecast/plugin.h>
#include <stdint.h>

/* A hook that has not answered within this long counts as a denial. */
#define SC_PLUGIN_TIMEOUT_US (5 * SC_US_PER_SEC)
/* Longest denial reason kept (bytes). */
#define SC_PLUGIN_REASON_MAX 200

/* Which hooks any loaded plugin has (sc_plugins_hooks). */
enum sc_plugin_hooks {
    SC_HOOK_CONNECT = 1u,
    SC_HOOK_SUBSCRIBE = 2u,
    SC_HOOK_EMIT = 4u,
    SC_HOOK_DISCONNECT = 8u,
};

/* One question to the hooks. Fields without a tag belong to the asking
 * service thread; {plugin} ones are written by the plugin holding the req
 * (sc_host_req_set_*) before it answers, read by the service thread after
 * the answer came back. */
struct sc_plugin_req {
    int kind;            /* {const} enum sc_plugin_req_kind */
    sc_svc_t *svc;       /* {const} the asking thread */
    void *conn;          /* the asking connection; NULL: nobody waits */
    int at;              /* the plugin being asked (index) */
    int verdict;         /* {plugin} the resumed answer */
    char *reason;        /* {plugin} a denial's reason, or NULL */
    char *user;          /* {plugin} connect: the user set */
    bool user_set;       /* {plugin} */
    char *meta;          /* {plugin} connect: the default meta */
    char *data;          /* {plugin} emit: the data set */
    bool data_set;       /* {plugin} */
    int64_t deadline_us; /* a pending req: when it counts as denied */
    struct sc_plugin_req *next, *prev; /* the host's list of live reqs */
    struct sc_plugin_req *qnext;       /* a thread's queue of answers */
};

/* The callback through which answered reqs come back to ws.c, on the
 * asking service thread: req->conn is non-NULL and req->verdict set. It
 * returns true when it asked the next plugin with the same req and that
 * one holds it now (SC_PLUGIN_PENDING again); otherwise the host frees
 * req after it returns. */
typedef bool (*sc_plugin_resumed_fn)(sc_svc_t *svc, sc_plugin_req_t *req);

/* Loads and starts every configured plugin. On a failure it logs the
 * reason (naming the plugin), stops those already started and returns
 * SC_EINVAL (or SC_ENOMEM). Thread: main, after the service threads'
 * loops exist, before they run. */
int sc_plugins_load(sc_server_t *srv);
/* Calls every plugin's shutdown (reverse order), then frees what they
 * left: subscriptions, timers, watches, reqs never answered, the handles.
 * Idempotent. Thread: main, after the service threads stopped. */
void sc_plugins_unload(sc_server_t *srv);
/* The hooks of all loaded plugins (enum sc_plugin_hooks bits); 0 without
 * plugins. Thread: any. */
unsigned sc_plugins_hooks(const sc_server_t *srv);

/* The thread's queue of answers and its wake. Returns SC_OK or SC_ENOMEM.
 * Thread: main, before the thread starts. */
int sc_plugins_thread_create(sc_svc_t *svc, sc_plugin_resumed_fn fn);
/* Frees it (answers still queued are freed). Thread: main, after the
 * thread stopped. */
void sc_plugins_thread_destroy(sc_svc_t *svc);

/* A new req of `kind` for `conn`, or NULL without memory. */
sc_plugin_req_t *sc_plugin_req_new(sc_svc_t *svc, int kind, void *conn);
/* Frees a req that was answered at once (not one a plugin holds). */
void sc_plugin_req_free(sc_plugin_req_t *req);

/* Asks the hooks of req->kind, from plugin req->at on, in load order:
 * SC_PLUGIN_ALLOW when all allowed (req->at is then the number of
 * plugins), SC_PLUGIN_DENY (req->reason says why; req->at is the plugin
 * that denied) or SC_PLUGIN_PENDING (req->at's plugin holds the req; the
 * answer comes through the resumed callback: on ALLOW, increment req->at
 * and ask again). `scope` is for subscribe/presence, `e` for emit.
 * Thread: the asking service thread. */
int sc_plugins_ask(const sc_server_t *srv, sc_plugin_req_t *req,
                   const sc_plugin_conn_t *conn, const char *scope,
                   const sc_plugin_emit_t *e);
/* How many plugins are loaded. Thread: any. */
int sc_plugins_count(const sc_server_t *srv);
/* The name of plugin `i` (for messages). */
const char *sc_plugins_name(const sc_server_t *srv, int i);
/* Calls on_disconnect of the plugins whose on_connect was called for the
 * connection (the first `reached`; all of them for plugins without
 * on_connect), in reverse order. Thread: the connection's. */
void sc_plugins_disconnect(const sc_server_t *srv, int reached,
                           const sc_plugin_conn_t *conn);

#endif
