/*
 * hello: a complete scopecast plugin (docs/PLUGINS.md). README.md shows this
 * file under "Writing a plugin": keep the two identical.
 *   --plugin hello.so:'{"scope":"ticks","every_ms":500,"greet":"hi"}'
 * emits {"n":1,"greet":"hi"}, {"n":2,...} into "ticks" every 500 ms
 * (defaults: "hello", 1000, "hello, world"), refuses scopes starting with
 * "private:" to connections without a user, and logs every connection.
 */
#include <scopecast/plugin.h>

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hello {
    sc_host_t *host;
    char scope[201];  /* a scope is at most 200 bytes */
    json_object *msg; /* {"n":k,"greet":...}: the timer's */
    int64_t n;
    sc_plugin_timer_t *timer;
} hello_t;

static void tick(void *ud) /* the timer: on the plugin loop */
{
    hello_t *h = ud;
    json_object_object_add(h->msg, "n", json_object_new_int64(++h->n));
    sc_plugin_emit_t e = {.scope = h->scope,
                          .data_json = json_object_to_json_string_ext(
                              h->msg, JSON_C_TO_STRING_PLAIN)};
    if (sc_host_emit(h->host, &e, NULL) != 0)
        sc_host_log(h->host, SC_PLUGIN_LOG_WARN, "tick %lld was not emitted",
                    (long long)h->n);
}

static void hello_shutdown(void *state) /* on the plugin loop */
{
    hello_t *h = state;
    sc_host_timer_stop(h->timer);
    json_object_put(h->msg);
    free(h);
}

static int hello_init(sc_host_t *host, const char *config_json, void **state,
                      char *err, size_t errlen)
{
    const char *scope = "hello", *greet = "hello, world";
    int64_t every_ms = 1000;
    json_object *cfg = json_tokener_parse(config_json);
    struct json_object_iter it;
    hello_t *h = NULL;
    if (!json_object_is_type(cfg, json_type_object)) {
        snprintf(err, errlen, "config: not a JSON object json-c can read");
        goto fail;
    }
    json_object_object_foreachC(cfg, it)
    {
        if (!strcmp(it.key, "scope") &&
            json_object_is_type(it.val, json_type_string))
            scope = json_object_get_string(it.val);
        else if (!strcmp(it.key, "greet") &&
                 json_object_is_type(it.val, json_type_string))
            greet = json_object_get_string(it.val);
        else if (!strcmp(it.key, "every_ms") &&
                 json_object_is_type(it.val, json_type_int))
            every_ms = json_object_get_int64(it.val);
        else {
            snprintf(err, errlen,
                     "config: unknown key or wrong type: \"%.64s\" (scope: "
                     "string, every_ms: integer, greet: string)",
                     it.key);
            goto fail;
        }
    }
    if (!sc_host_scope_valid(scope)) {
        snprintf(err, errlen,
                 "config: \"scope\" is not a valid scope: \"%.64s\"", scope);
        goto fail;
    }
    if (every_ms < 1 || every_ms > 3600000) {
        snprintf(err, errlen, "config: \"every_ms\" must be 1 to 3600000");
        goto fail;
    }
    if (!(h = calloc(1, sizeof *h)) || !(h->msg = json_object_new_object()) ||
        json_object_object_add(h->msg, "n", json_object_new_int64(0)) ||
        json_object_object_add(h->msg, "greet",
                               json_object_new_string(greet)) ||
        sc_host_timer_start(host, every_ms / 1000.0, every_ms / 1000.0, tick, h,
                            &h->timer)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    h->host = host;
    strcpy(h->scope, scope);
    json_object_put(cfg);
    *state = h;
    return 0;
fail:
    if (h)
        hello_shutdown(h);
    json_object_put(cfg);
    return -1;
}

static int hello_on_connect(void *state, sc_plugin_req_t *req,
                            const sc_plugin_conn_t *conn) /* service thread */
{
    (void)req;
    sc_host_log(((hello_t *)state)->host, SC_PLUGIN_LOG_INFO,
                "session %s from %s, user %s", conn->session_id, conn->peer,
                conn->user_id ? conn->user_id : "(none)");
    return SC_PLUGIN_ALLOW;
}

static int hello_on_subscribe(void *state, sc_plugin_req_t *req,
                              const sc_plugin_conn_t *conn, const char *scope)
{
    (void)state;
    if (strncmp(scope, "private:", 8) != 0 || conn->user_id)
        return SC_PLUGIN_ALLOW;
    sc_host_req_set_reason(req, "private: scopes need a signed-in user");
    return SC_PLUGIN_DENY;
}

SC_PLUGIN_EXPORT const sc_plugin_t scopecast_plugin = {
    .abi = SC_PLUGIN_ABI,
    .name = "hello",
    .init = hello_init,
    .shutdown = hello_shutdown,
    .on_connect = hello_on_connect,
    .on_subscribe = hello_on_subscribe,
};
