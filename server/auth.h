/*
 * scopecast server: authentication.
 *
 * Client tokens are JWTs signed with HS256 and the server's secret (libjwt
 * does the cryptography; nothing here is hand-rolled). A token is accepted
 * only when its header says alg "HS256" (so "none", HS384/HS512 and RS/ES
 * algorithms are refused whatever libjwt would do with them), its signature
 * checks out, its `exp` (when present) is in the future, its `nbf` (when
 * present) is not, and its `sub` is a non-empty string.
 *
 * Claims used (docs/PROTOCOL.md, "Authentication"):
 *   sub     the user id.
 *   scopes  optional array of patterns limiting what may be subscribed;
 *           absent = any scope.
 *   emit    optional: true, false, or an array of patterns; absent = false.
 * A claim of the wrong type (scopes not an array of strings, say) makes the
 * token invalid rather than being ignored, so a typo never widens access.
 *
 * Patterns: '*' is special only as the last character, where it matches any
 * suffix, the empty one included ("doc:*" matches "doc:" and "doc:1");
 * "*" alone matches every scope; anywhere else '*' is a literal character.
 *
 * HTTP API key: `Authorization: Bearer <key>`, compared in constant time.
 *
 * Thread safety: every function is safe from any thread; none keeps state.
 * A verified sc_claims_t is read-only and may be read from several threads.
 */
#ifndef SC_SERVER_AUTH_H
#define SC_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common.h"

/* Tokens longer than this are refused without being parsed ("too long").
 * Half the upgrade head limit (8 KB), so the refusal is reachable: a token
 * in ?token= up to about 8000 bytes gets it; longer, the head gets 431. */
#define SC_AUTH_TOKEN_MAX 4096

/* NumericDate claims (exp, nbf, iat) must lie within +-2^53 seconds. */
#define SC_AUTH_TIME_MAX 9007199254740992.0

/* Buffer size for sc_auth_random_secret giving 256 random bits. */
#define SC_AUTH_SECRET_LEN 65

typedef enum sc_emit_right {
    SC_EMIT_NONE = 0, /* no emit claim, or "emit": false */
    SC_EMIT_ALL,      /* "emit": true (still bounded by scopes) */
    SC_EMIT_LIST,     /* "emit": [patterns] (and bounded by scopes) */
} sc_emit_right_t;

/* The claims of a verified token. Caller-owned storage; every pointer in it
 * is owned by it and freed by sc_claims_deinit. */
typedef struct sc_claims {
    char *sub;       /* user id, non-empty */
    bool has_scopes; /* false: any scope may be subscribed */
    char **scopes;   /* nscopes patterns (only when has_scopes) */
    size_t nscopes;
    sc_emit_right_t emit;
    char **emit_patterns; /* nemit patterns (only for SC_EMIT_LIST) */
    size_t nemit;
    bool has_exp;
    int64_t exp; /* seconds since the epoch (only when has_exp) */
    char *json;  /* every claim as verified, a JSON object (for plugins) */
} sc_claims_t;

/* Verifies `token` (borrowed) against `secret` (borrowed, non-empty) at time
 * `now` and fills `out` (caller-owned storage, previous content ignored).
 * `err` (may be NULL when errlen is 0) receives the reason on failure, e.g.
 * "token expired" or "unsupported alg 'none' (only HS256)".
 * Returns SC_OK (release `out` with sc_claims_deinit), SC_EINVAL for any
 * invalid, expired or unacceptable token or an empty secret, or SC_ENOMEM.
 * On failure `out` holds nothing.
 * Thread: any. */
int sc_auth_verify(const char *token, const char *secret, time_t now,
                   sc_claims_t *out, char *err, size_t errlen);

/* Frees what `c` owns and zeroes it. NULL is a no-op.
 * Thread: caller owns c. */
void sc_claims_deinit(sc_claims_t *c);

/* True when `pattern` matches `scope` (both borrowed; NULL matches
 * nothing), per the pattern rules above.
 * Thread: any (pure). */
bool sc_auth_pattern_match(const char *pattern, const char *scope);

/* True when one of the comma-separated patterns of `list` (spaces around
 * them ignored) matches `scope`, per the pattern rules above. NULL or ""
 * matches nothing. Thread: any (pure). */
bool sc_auth_patterns_match(const char *list, const char *scope);

/* May a page from `origin` (the Origin header's value, origin_len bytes)
 * open a WebSocket? `patterns` is --allowed-origins: comma-separated, '*'
 * matching any run of characters, case-insensitive; NULL means same
 * origin: the origin's host[:port] must equal `host` (the Host header,
 * host_len bytes; NULL when absent). Thread: any (pure). */
bool sc_auth_origin_allowed(const char *patterns, const char *origin,
                            size_t origin_len, const char *host,
                            size_t host_len);

/* May a connection with these claims subscribe to (or ask the presence of)
 * `scope`? `c` NULL gives true: the caller applies the anonymous rules
 * (--anonymous-scopes) itself.
 * Thread: any (pure). */
bool sc_auth_scope_allowed(const sc_claims_t *c, const char *scope);

/* May a connection with these claims emit into `scope`? emit:true allows
 * the scopes that the scopes claim allows; an emit pattern list needs both
 * the list and the scopes claim to allow the scope. `c` NULL (anonymous)
 * gives false: the caller applies the client_emit setting itself.
 * Thread: any (pure). */
bool sc_auth_emit_allowed(const sc_claims_t *c, const char *scope);

/* Signs a demo-mode token: {"sub": sub, "iat": now, "exp": now + ttl} plus
 * "emit": true when emit_all. ttl_seconds <= 0 leaves out exp.
 * *token_out receives a new string the caller frees with free().
 * Returns SC_OK, SC_EINVAL (empty secret or sub, sub over 1024 bytes, exp
 * out of range, NULL token_out) or
 * SC_ENOMEM; on error *token_out is NULL (when token_out is not NULL).
 * Thread: any. */
int sc_auth_sign(const char *secret, const char *sub, bool emit_all,
                 long ttl_seconds, time_t now, char **token_out);

/* Writes a random secret into `out` as lowercase hex from OpenSSL's
 * RAND_bytes: (outlen - 1) / 2 bytes, at most 256, i.e. 64 hex digits for
 * SC_AUTH_SECRET_LEN, NUL-terminated. Returns SC_OK, or SC_EINVAL when
 * outlen < 33 (less than 128 bits) or the generator fails (out then holds
 * the empty string).
 * Thread: any. */
int sc_auth_random_secret(char *out, size_t outlen);

/* Checks an HTTP Authorization header value (borrowed, may be NULL) of the
 * form "Bearer <key>" against the configured key, in constant time with
 * respect to the key's content. The scheme is matched ignoring case.
 * Returns false when no key is configured (NULL or empty), the header is
 * missing, uses another scheme, or carries another key.
 * Thread: any. */
bool sc_auth_api_key_ok(const char *configured,
                        const char *authorization_header);

#endif
