/*
 * authz: an example scopecast plugin (docs/PLUGINS.md) that narrows who may
 * use two families of scopes: per-user scopes and admin scopes.
 *
 * Rules
 *   The server's own rules (the token's `scopes` and `emit` claims,
 *   --anonymous-scopes, --client-emit) are checked before this plugin is
 *   asked; authz only narrows them. Its rules apply alike to `subscribe`,
 *   to `presence` queries (both asked of on_subscribe; the req's kind shows
 *   only in the debug log) and to client `emit`s (on_emit; the event's data
 *   is left alone). HTTP emits are not asked.
 *     user scopes   `<user_prefix><id>` and `<user_prefix><id>:<anything>`
 *                   (default prefix "user:") belong to user <id>: only a
 *                   connection whose user is exactly <id> (byte for byte)
 *                   may use them. <id> ends at the first ':' after the
 *                   prefix, so a user whose id contains ':' has no user
 *                   scopes, and `user:` or `user::x` (empty id) belong to
 *                   nobody. Anonymous connections have none.
 *     admin scopes  scopes starting with `<admin_prefix>` (default
 *                   "admin:") need the admin claim in the connection's
 *                   verified token: the top-level claim `<admin_claim>`
 *                   (default "admin") must be JSON `true` ("true", 1 and
 *                   the like do not count) or, when `admin_role` is
 *                   configured, an array containing that string (e.g.
 *                   {"admin_claim":"roles","admin_role":"admin"} accepts
 *                   "roles":["admin"] as well as "roles":true). A
 *                   connection without a token has no claims.
 *     other scopes  allowed.
 *   A scope matching both prefixes must pass both rules. Prefixes are
 *   compared byte for byte (scopes are case-sensitive: "User:bob" is not a
 *   user scope). A denial answers the client `forbidden` with a reason that
 *   names the rule: "user:bob is only for user bob", "admin:* needs the
 *   admin claim". Every verdict is given at once (never PENDING).
 *
 * Config (the JSON object after the path: --plugin authz.so:'{...}')
 *     {"user_prefix": "user:", "admin_prefix": "admin:",
 *      "admin_claim": "admin", "admin_role": null}
 *   Every key is optional; the values above are the defaults. Prefixes are
 *   1-200 bytes of printable ASCII without spaces (what a scope is made
 *   of); admin_claim is a string of 1-200 bytes; admin_role is one too, or
 *   null (off). Anything else - text that is not one JSON object, an
 *   unknown key, a value of another type or out of those bounds - fails
 *   init with a message naming the key, which stops the server's start-up.
 *
 * Threads
 *   init and shutdown run on the plugin loop; the hooks run on every
 *   service thread at once (--threads N). The state is written only by
 *   init and is read-only until shutdown; a hook's own memory (the claims
 *   it parses, its reason) is its own and freed before it returns. So no
 *   locks, and json-c objects are never shared between threads.
 *
 * Ownership
 *   The state (authz_t) is the plugin's from init until shutdown frees it.
 *   Everything the server passes into a hook is borrowed for the call.
 */
#include <scopecast/plugin.h>

#include <json-c/json.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest prefix, claim name or role (a scope is at most 200 bytes). */
#define AUTHZ_MAX_NAME 200
/* The server keeps at most 200 bytes of a reason: ours fit. */
#define AUTHZ_MAX_REASON 200

typedef struct authz {
    sc_host_t *host;
    char *user_prefix;
    size_t user_prefix_len;
    char *admin_prefix;
    size_t admin_prefix_len;
    char *admin_claim;
    char *admin_role; /* NULL: only `true` counts */
    size_t admin_role_len;
    char *admin_reason; /* the denial's reason for admin scopes */
} authz_t;

/* ---- helpers ---------------------------------------------------------- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* Cuts `s` (in a buffer of at least AUTHZ_MAX_REASON + 1 bytes) to
 * AUTHZ_MAX_REASON bytes, at a UTF-8 character boundary, ending in "...". */
static void fit_reason(char *s)
{
    size_t n = strlen(s);

    if (n <= AUTHZ_MAX_REASON)
        return;
    n = AUTHZ_MAX_REASON - 3;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--; /* s[n] would be a continuation byte: cut before its lead */
    memcpy(s + n, "...", 4);
}

/* Parses `text` as exactly one JSON value (strict: no trailing bytes).
 * Returns 0 with *out (NULL for JSON null), or -1. */
static int parse_json(const char *text, json_object **out)
{
    size_t len = strlen(text);
    json_tokener *tok;
    json_object *o;

    *out = NULL;
    if (len > 1u << 20)
        return -1;
    tok = json_tokener_new();
    if (tok == NULL)
        return -1;
    json_tokener_set_flags(tok,
                           JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    /* + the NUL, which ends the input */
    o = json_tokener_parse_ex(tok, text, (int)len + 1);
    if (json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) < len) {
        json_object_put(o);
        json_tokener_free(tok);
        return -1;
    }
    json_tokener_free(tok);
    *out = o;
    return 0;
}

static const char *type_name(const json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "a boolean";
    case json_type_int:
    case json_type_double:
        return "a number";
    case json_type_string:
        return "a string";
    case json_type_array:
        return "an array";
    case json_type_object:
        return "an object";
    }
    return "something else";
}

static bool starts_with(const char *s, const char *prefix, size_t len)
{
    return strncmp(s, prefix, len) == 0;
}

/* ---- config ----------------------------------------------------------- */

/* A string config value of 1..AUTHZ_MAX_NAME bytes; `scope_chars`: only
 * printable ASCII without spaces. Returns 0 with *out borrowed from `v`, or
 * -1 with a message in err. */
static int config_string(const char *key, json_object *v, bool scope_chars,
                         const char **out, char *err, size_t errlen)
{
    const char *s;
    size_t n;

    if (!json_object_is_type(v, json_type_string)) {
        snprintf(err, errlen, "config: \"%s\" must be a string, not %s", key,
                 type_name(v));
        return -1;
    }
    s = json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    if (n == 0 || n > AUTHZ_MAX_NAME || strlen(s) != n) {
        snprintf(err, errlen,
                 "config: \"%s\" must be 1-%d bytes (without NUL), not %zu",
                 key, AUTHZ_MAX_NAME, n);
        return -1;
    }
    if (scope_chars) {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x21 || c > 0x7E) {
                snprintf(err, errlen,
                         "config: \"%s\" must be printable ASCII without "
                         "spaces, like a scope (byte %zu is 0x%02X)",
                         key, i, c);
                return -1;
            }
        }
    }
    *out = s;
    return 0;
}

static void authz_free(authz_t *a)
{
    if (a == NULL)
        return;
    free(a->user_prefix);
    free(a->admin_prefix);
    free(a->admin_claim);
    free(a->admin_role);
    free(a->admin_reason);
    free(a);
}

static int authz_init(sc_host_t *host, const char *config_json, void **state,
                      char *err, size_t errlen)
{
    const char *user_prefix = "user:", *admin_prefix = "admin:";
    const char *admin_claim = "admin", *admin_role = NULL;
    char reason[AUTHZ_MAX_REASON + 512];
    json_object *cfg = NULL;
    authz_t *a = NULL;

    *state = NULL;
    if (config_json == NULL)
        config_json = "{}";
    if (parse_json(config_json, &cfg) != 0 ||
        !json_object_is_type(cfg, json_type_object)) {
        snprintf(err, errlen,
                 "config: not one JSON object (keys: user_prefix, "
                 "admin_prefix, admin_claim, admin_role)");
        goto fail;
    }
    json_object_object_foreach(cfg, key, val)
    {
        int rc;

        if (strcmp(key, "user_prefix") == 0) {
            rc = config_string(key, val, true, &user_prefix, err, errlen);
        } else if (strcmp(key, "admin_prefix") == 0) {
            rc = config_string(key, val, true, &admin_prefix, err, errlen);
        } else if (strcmp(key, "admin_claim") == 0) {
            rc = config_string(key, val, false, &admin_claim, err, errlen);
        } else if (strcmp(key, "admin_role") == 0) {
            admin_role = NULL;
            rc = val == NULL
                     ? 0
                     : config_string(key, val, false, &admin_role, err, errlen);
        } else {
            snprintf(err, errlen,
                     "config: unknown key \"%.64s\" (known: user_prefix, "
                     "admin_prefix, admin_claim, admin_role)",
                     key);
            rc = -1;
        }
        if (rc != 0)
            goto fail;
    }

    a = calloc(1, sizeof *a);
    if (a == NULL)
        goto nomem;
    a->host = host;
    a->user_prefix = dup_str(user_prefix);
    a->admin_prefix = dup_str(admin_prefix);
    a->admin_claim = dup_str(admin_claim);
    a->admin_role = admin_role != NULL ? dup_str(admin_role) : NULL;
    if (a->user_prefix == NULL || a->admin_prefix == NULL ||
        a->admin_claim == NULL || (admin_role != NULL && a->admin_role == NULL))
        goto nomem;
    a->user_prefix_len = strlen(a->user_prefix);
    a->admin_prefix_len = strlen(a->admin_prefix);
    a->admin_role_len = admin_role != NULL ? strlen(a->admin_role) : 0;
    if (a->admin_role != NULL)
        snprintf(reason, sizeof reason,
                 "%s* needs the %s claim (true, or a list containing \"%s\")",
                 a->admin_prefix, a->admin_claim, a->admin_role);
    else
        snprintf(reason, sizeof reason, "%s* needs the %s claim",
                 a->admin_prefix, a->admin_claim);
    fit_reason(reason);
    a->admin_reason = dup_str(reason);
    if (a->admin_reason == NULL)
        goto nomem;
    json_object_put(cfg);

    sc_host_log(host, SC_PLUGIN_LOG_INFO,
                "%s<id>[:...] only for user <id>; %s* only with the "
                "\"%s\" claim true%s%s%s",
                a->user_prefix, a->admin_prefix, a->admin_claim,
                a->admin_role != NULL ? " or containing \"" : "",
                a->admin_role != NULL ? a->admin_role : "",
                a->admin_role != NULL ? "\"" : "");
    *state = a;
    return 0;

nomem:
    snprintf(err, errlen, "out of memory");
fail:
    json_object_put(cfg);
    authz_free(a);
    return -1;
}

static void authz_shutdown(void *state)
{
    authz_free(state);
}

/* ---- the rules -------------------------------------------------------- */

/* The user rule for a scope starting with user_prefix: true when `conn` is
 * the scope's user, else false with the reason in `reason`. */
static bool user_may(const authz_t *a, const sc_plugin_conn_t *conn,
                     const char *scope, char *reason, size_t reasonlen)
{
    const char *id = scope + a->user_prefix_len;
    size_t idlen = strcspn(id, ":");

    if (idlen == 0) {
        snprintf(reason, reasonlen, "%s must be followed by a user id",
                 a->user_prefix);
        return false;
    }
    if (conn->user_id != NULL && strlen(conn->user_id) == idlen &&
        memcmp(conn->user_id, id, idlen) == 0)
        return true;
    snprintf(reason, reasonlen, "%s%.*s is only for user %.*s", a->user_prefix,
             (int)idlen, id, (int)idlen, id);
    return false;
}

/* The admin rule: does the connection's token carry the admin claim? */
static bool is_admin(const authz_t *a, const sc_plugin_conn_t *conn)
{
    json_object *claims = NULL, *v = NULL;
    bool ok = false;

    if (conn->claims_json == NULL)
        return false; /* no token, no claims */
    if (parse_json(conn->claims_json, &claims) != 0 ||
        !json_object_is_type(claims, json_type_object)) {
        /* the server verified them: should not happen, but never allow */
        sc_host_log(a->host, SC_PLUGIN_LOG_WARN,
                    "session %s: the token's claims are not a JSON object; "
                    "treated as no admin claim",
                    conn->session_id);
        json_object_put(claims);
        return false;
    }
    if (json_object_object_get_ex(claims, a->admin_claim, &v) && v != NULL) {
        if (json_object_is_type(v, json_type_boolean)) {
            ok = json_object_get_boolean(v);
        } else if (a->admin_role != NULL &&
                   json_object_is_type(v, json_type_array)) {
            size_t n = json_object_array_length(v);
            for (size_t i = 0; i < n && !ok; i++) {
                json_object *e = json_object_array_get_idx(v, i);
                ok = json_object_is_type(e, json_type_string) &&
                     (size_t)json_object_get_string_len(e) ==
                         a->admin_role_len &&
                     memcmp(json_object_get_string(e), a->admin_role,
                            a->admin_role_len) == 0;
            }
        }
    }
    json_object_put(claims);
    return ok;
}

/* Both rules for `scope`; `what` names the request for the log. */
static int authz_check(const authz_t *a, sc_plugin_req_t *req,
                       const sc_plugin_conn_t *conn, const char *scope,
                       const char *what)
{
    char user_reason[AUTHZ_MAX_REASON + 512];
    const char *reason = NULL;

    if (scope == NULL)
        return SC_PLUGIN_DENY; /* not in the contract; never allow */
    if (starts_with(scope, a->user_prefix, a->user_prefix_len) &&
        !user_may(a, conn, scope, user_reason, sizeof user_reason)) {
        fit_reason(user_reason);
        reason = user_reason;
    } else if (starts_with(scope, a->admin_prefix, a->admin_prefix_len) &&
               !is_admin(a, conn)) {
        reason = a->admin_reason;
    }
    if (reason == NULL)
        return SC_PLUGIN_ALLOW;
    /* Without memory for the reason the client gets the server's generic
     * one; the denial stands either way. */
    (void)sc_host_req_set_reason(req, reason);
    sc_host_log(a->host, SC_PLUGIN_LOG_DEBUG, "denied %s %s to %s (%s): %s",
                what, scope,
                conn->user_id != NULL ? conn->user_id : "(anonymous)",
                conn->session_id, reason);
    return SC_PLUGIN_DENY;
}

static int authz_on_subscribe(void *state, sc_plugin_req_t *req,
                              const sc_plugin_conn_t *conn, const char *scope)
{
    const char *what = sc_host_req_kind(req) == SC_PLUGIN_REQ_PRESENCE
                           ? "presence of"
                           : "subscribe to";

    return authz_check(state, req, conn, scope, what);
}

static int authz_on_emit(void *state, sc_plugin_req_t *req,
                         const sc_plugin_conn_t *conn,
                         const sc_plugin_emit_t *e)
{
    return authz_check(state, req, conn, e->scope, "emit into");
}

SC_PLUGIN_EXPORT const sc_plugin_t scopecast_plugin = {
    .abi = SC_PLUGIN_ABI,
    .name = "authz",
    .init = authz_init,
    .shutdown = authz_shutdown,
    .on_subscribe = authz_on_subscribe,
    .on_emit = authz_on_emit,
};
