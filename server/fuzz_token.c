/*
 * libFuzzer target for the token parser and the access rules of auth.h
 * (built with -DSC_FUZZ=ON, clang; run by scripts/fuzz.sh). Only the public
 * functions of auth.h are used.
 *
 * Input: 1 byte that picks the mode (its value modulo 6), then bytes cut
 * into strings at NUL bytes (at most MAX_SEGS; the last one takes the
 * rest):
 *   0  a token as a client sends it, then scopes to ask about;
 *   1  the claims (payload JSON) of a token that this target signs with
 *      HMAC-SHA256 and the secret under the header {"alg":"HS256",
 *      "typ":"JWT"}, so that inputs get past the signature check and
 *      explore the claims: sub, exp/nbf numbers, scopes, emit; then scopes;
 *   2  a header JSON and the claims, both signed the same way (alg, typ,
 *      crit and other header edge cases); then scopes;
 *   3  8 bytes of ttl and 1 byte of flags, then a sub: sc_auth_sign, then
 *      the token it made is verified;
 *   4  a configured API key and an Authorization header value
 *      (sc_auth_api_key_ok);
 *   5  a comma-separated pattern list, a scope or Origin value, and a Host
 *      value (sc_auth_patterns_match, sc_auth_origin_allowed).
 * Every token is verified with the same secret at the same `now` (NOW).
 * Invariants, checked rather than only "no crash":
 *   - sc_auth_verify returns SC_OK, SC_EINVAL or SC_ENOMEM; a failure has a
 *     reason and leaves the claims zeroed; a success has no reason and
 *     claims whose lists and counts agree;
 *   - an accepted token had a header that json-c reads as an object with
 *     alg "HS256", no crit and typ absent or "JWT", was at most
 *     SC_AUTH_TOKEN_MAX bytes, and its claims are exactly what json-c reads
 *     from its payload: sub a non-empty string, scopes and emit as given,
 *     exp present exactly when given, in the future, nbf not in the future;
 *   - sc_auth_scope_allowed / sc_auth_emit_allowed / sc_auth_pattern_match
 *     agree with the pattern rules of auth.h (written here again) for the
 *     input's scopes and for scopes made from the claims' own patterns;
 *   - a token from sc_auth_sign verifies to its sub, emit right and exp
 *     (and is expired at exp, refused with another secret or a changed
 *     signature);
 *   - sc_auth_api_key_ok accepts exactly "Bearer" (any case), blanks, the
 *     key and optional trailing blanks;
 *   - sc_auth_patterns_match and sc_auth_origin_allowed agree with their
 *     rules in auth.h, written here again (the origin globs with a
 *     dynamic-programming matcher).
 * A violated invariant aborts (a finding).
 */
#include "auth.h"

#include <ctype.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "scopecast-fuzz-secret"
#define NOW ((time_t)1700000000)
#define MAX_SEGS 8
#define STD_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static void check(int ok)
{
    if (!ok)
        abort();
}

/* ---- building tokens ------------------------------------------------------
 */

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;

    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = abc[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = abc[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

/* A new token: base64url(header).base64url(payload).HMAC-SHA256 with
 * `secret`, as RFC 7515 says. */
static char *make_token(const char *header, const char *payload,
                        const char *secret)
{
    size_t hn = strlen(header), pn = strlen(payload);
    char *t = malloc((hn + pn) / 3 * 4 + 64 + 8);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    check(t != NULL);
    b64url((const unsigned char *)header, hn, t);
    size_t at = strlen(t);
    t[at++] = '.';
    b64url((const unsigned char *)payload, pn, t + at);
    at += strlen(t + at);
    check(HMAC(EVP_sha256(), secret, (int)strlen(secret),
               (const unsigned char *)t, at, mac, &maclen) != NULL);
    t[at++] = '.';
    b64url(mac, maclen, t + at);
    return t;
}

/* Decodes base64url like auth.c's pre-check; NULL when it is not that. */
static char *b64url_decode(const char *in, size_t n)
{
    if (n % 4 == 1)
        return NULL;
    char *out = malloc(n / 4 * 3 + 3);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;

    check(out != NULL);
    for (size_t i = 0; i < n; i++) {
        const char *abc =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *p = in[i] != '\0' ? strchr(abc, in[i]) : NULL;
        if (p == NULL) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)(p - abc);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- the pattern rules, written again ----------------------------------- */

static bool rule_match(const char *pattern, const char *scope)
{
    if (pattern == NULL || scope == NULL)
        return false;
    size_t n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*')
        return strlen(scope) >= n - 1 && memcmp(pattern, scope, n - 1) == 0;
    return strcmp(pattern, scope) == 0;
}

static bool rule_any(char *const *list, size_t n, const char *scope)
{
    for (size_t i = 0; i < n; i++) {
        if (rule_match(list[i], scope))
            return true;
    }
    return false;
}

static void check_scope(const sc_claims_t *c, const char *scope)
{
    bool sub_ok = scope != NULL &&
                  (!c->has_scopes || rule_any(c->scopes, c->nscopes, scope));
    bool emit_ok = false;

    if (c->emit == SC_EMIT_ALL)
        emit_ok = sub_ok;
    else if (c->emit == SC_EMIT_LIST)
        emit_ok = sub_ok && rule_any(c->emit_patterns, c->nemit, scope);
    check(sc_auth_scope_allowed(c, scope) == sub_ok);
    check(sc_auth_emit_allowed(c, scope) == emit_ok);
    check(sc_auth_scope_allowed(NULL, scope) == (scope != NULL));
    check(!sc_auth_emit_allowed(NULL, scope));
    check(!sc_auth_pattern_match(NULL, scope));
    check(!sc_auth_pattern_match(scope, NULL));
    if (scope != NULL) {
        check(sc_auth_pattern_match("*", scope));
        check(sc_auth_pattern_match(scope, scope) == rule_match(scope, scope));
    }
}

/* Scopes made from a pattern: itself, without its last character, with a
 * suffix, and with the suffix in place of a trailing '*'. */
static void check_pattern(const sc_claims_t *c, const char *p)
{
    size_t n = strlen(p);
    char *v = malloc(n + 4);

    check(v != NULL);
    check_scope(c, p);
    memcpy(v, p, n + 1);
    if (n > 0) {
        v[n - 1] = '\0';
        check_scope(c, v);
    }
    memcpy(v, p, n);
    memcpy(v + n, ":x", 3);
    check_scope(c, v);
    if (n > 0 && p[n - 1] == '*') {
        memcpy(v + n - 1, "1", 2);
        check_scope(c, v);
        check(sc_auth_pattern_match(p, v));
    }
    free(v);
}

static void check_rules(const sc_claims_t *c, char **scopes, size_t n)
{
    static const char *const fixed[] = {"", "*", "doc:1", "doc:", "a*b"};

    check_scope(c, NULL);
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        check_scope(c, fixed[i]);
    for (size_t i = 0; i < n; i++)
        check_scope(c, scopes[i]);
    for (size_t i = 0; i < c->nscopes; i++)
        check_pattern(c, c->scopes[i]);
    for (size_t i = 0; i < c->nemit; i++)
        check_pattern(c, c->emit_patterns[i]);
}

/* ---- verification ------------------------------------------------------- */

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        if (b[i] != 0)
            return false;
    }
    return true;
}

static void check_list(char **a, size_t n, bool has)
{
    if (!has) {
        check(a == NULL && n == 0);
        return;
    }
    check(a != NULL);
    for (size_t i = 0; i < n; i++)
        check(a[i] != NULL);
}

/* The member `key` of `o`: true when present (*v may then be NULL for a
 * JSON null). */
static bool get(json_object *o, const char *key, json_object **v)
{
    *v = NULL;
    return json_object_object_get_ex(o, key, v);
}

static bool list_eq(json_object *arr, char **a, size_t n)
{
    if (!json_object_is_type(arr, json_type_array) ||
        json_object_array_length(arr) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(s, json_type_string) ||
            strcmp(json_object_get_string(s), a[i]) != 0)
            return false;
    }
    return true;
}

/* A NumericDate as auth.h reads it: whole seconds, rounded down. */
static bool numeric_date(json_object *v, int64_t *out)
{
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v);
        return true;
    }
    if (!json_object_is_type(v, json_type_double))
        return false;
    double d = floor(json_object_get_double(v));
    if (!(d > -9.2e18 && d < 9.2e18))
        return false;
    *out = (int64_t)d;
    return true;
}

/* The header of an accepted token. */
static void check_header(const char *text)
{
    json_object *h = json_tokener_parse(text), *v;

    check(json_object_is_type(h, json_type_object));
    check(get(h, "alg", &v) && json_object_is_type(v, json_type_string) &&
          strcmp(json_object_get_string(v), "HS256") == 0);
    check(!get(h, "crit", &v));
    if (get(h, "typ", &v))
        check(json_object_is_type(v, json_type_string) &&
              strcasecmp(json_object_get_string(v), "JWT") == 0);
    json_object_put(h);
}

/* The claims of an accepted token are what json-c reads from its payload. */
static void check_payload(const sc_claims_t *c, const char *text)
{
    json_object *g = json_tokener_parse(text), *v;
    int64_t t;

    check(json_object_is_type(g, json_type_object));
    check(get(g, "sub", &v) && json_object_is_type(v, json_type_string));
    check(strcmp(json_object_get_string(v), c->sub) == 0);
    check(get(g, "scopes", &v) == c->has_scopes);
    if (c->has_scopes)
        check(list_eq(v, c->scopes, c->nscopes));
    if (!get(g, "emit", &v))
        check(c->emit == SC_EMIT_NONE);
    else if (json_object_is_type(v, json_type_boolean))
        check(c->emit ==
              (json_object_get_boolean(v) ? SC_EMIT_ALL : SC_EMIT_NONE));
    else
        check(c->emit == SC_EMIT_LIST &&
              list_eq(v, c->emit_patterns, c->nemit));
    check(get(g, "exp", &v) == c->has_exp);
    if (c->has_exp)
        check(numeric_date(v, &t) && t == c->exp);
    if (get(g, "nbf", &v))
        check(numeric_date(v, &t) && t <= (int64_t)NOW);
    json_object_put(g);
}

/* Verifies `token` and checks the outcome; `header` and `payload` are the
 * texts it was made of, or NULL when unknown. Returns the result. */
static int verify(const char *token, const char *header, const char *payload,
                  char **scopes, size_t nscopes, sc_claims_t *keep)
{
    sc_claims_t c;
    char err[256];

    memset(&c, 0xa5, sizeof(c)); /* the previous content is ignored */
    memset(err, 0x5a, sizeof(err));
    int rc = sc_auth_verify(token, SECRET, NOW, &c, err, sizeof(err));
    check(rc == SC_OK || rc == SC_EINVAL || rc == SC_ENOMEM);
    check(memchr(err, '\0', sizeof(err)) != NULL);
    if (rc != SC_OK) {
        check(err[0] != '\0');
        check(all_zero(&c, sizeof(c)));
        check_rules(&c, scopes, nscopes); /* zeroed claims: no scope */
        return rc;
    }
    check(err[0] == '\0');
    check(strlen(token) <= SC_AUTH_TOKEN_MAX);
    check(c.sub != NULL && c.sub[0] != '\0');
    check_list(c.scopes, c.nscopes, c.has_scopes);
    check(c.emit == SC_EMIT_NONE || c.emit == SC_EMIT_ALL ||
          c.emit == SC_EMIT_LIST);
    check_list(c.emit_patterns, c.nemit, c.emit == SC_EMIT_LIST);
    check(!c.has_exp || c.exp > (int64_t)NOW);
    if (header != NULL)
        check_header(header);
    if (payload != NULL)
        check_payload(&c, payload);
    check_rules(&c, scopes, nscopes);
    if (keep != NULL) {
        *keep = c;
        return rc;
    }
    sc_claims_deinit(&c);
    check(all_zero(&c, sizeof(c)));
    return rc;
}

/* Mode 0: the header and payload are read back from the token itself. */
static void fuzz_raw(char **seg, size_t nseg)
{
    const char *t = seg[0];
    const char *d1 = strchr(t, '.');
    const char *d2 = d1 != NULL ? strchr(d1 + 1, '.') : NULL;
    char *h = NULL, *p = NULL;

    if (d2 != NULL && strchr(d2 + 1, '.') == NULL) {
        h = b64url_decode(t, (size_t)(d1 - t));
        p = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1));
    }
    int rc = verify(t, h, p, seg + 1, nseg - 1, NULL);
    if (rc == SC_OK)
        check(h != NULL && p != NULL);
    free(h);
    free(p);
}

static void fuzz_signed(const char *header, const char *payload, char **scopes,
                        size_t nscopes)
{
    char *t = make_token(header, payload, SECRET);

    verify(t, header, payload, scopes, nscopes, NULL);
    free(t);
}

/* Mode 3: sc_auth_sign, then its token. */
static void fuzz_sign(const uint8_t *p, size_t n, char **seg, size_t nseg)
{
    uint64_t bits = 0;
    char *tok = (char *)1;

    for (size_t i = 0; i < 8; i++)
        bits = bits << 8 | (i < n ? p[i] : 0);
    long ttl = (long)bits;
    /* small ttls often, any ttl sometimes */
    if (n > 8 && (p[8] & 2))
        ttl = (long)(bits % 100000);
    bool emit_all = n > 8 && (p[8] & 1);
    const char *sub = seg[0];

    int rc = sc_auth_sign(SECRET, sub, emit_all, ttl, NOW, &tok);
    check(rc == SC_OK || rc == SC_EINVAL || rc == SC_ENOMEM);
    if (sub[0] == '\0' || strlen(sub) > 1024 ||
        (ttl > 0 && (long)NOW > LONG_MAX - ttl))
        check(rc == SC_EINVAL);
    if (rc != SC_OK) {
        check(tok == NULL);
        return;
    }
    check(tok != NULL);

    sc_claims_t c;
    check(verify(tok, NULL, NULL, seg + 1, nseg - 1, &c) == SC_OK);
    check(strcmp(c.sub, sub) == 0 && !c.has_scopes);
    check(c.emit == (emit_all ? SC_EMIT_ALL : SC_EMIT_NONE));
    check(c.has_exp == (ttl > 0));
    if (ttl > 0)
        check(c.exp == (int64_t)NOW + ttl);
    sc_claims_deinit(&c);

    char err[128];
    if (ttl > 0) {
        /* valid up to exp (excluded) */
        check(sc_auth_verify(tok, SECRET, (time_t)(NOW + ttl - 1), &c, err,
                             sizeof(err)) == SC_OK);
        sc_claims_deinit(&c);
        check(sc_auth_verify(tok, SECRET, (time_t)(NOW + ttl), &c, err,
                             sizeof(err)) == SC_EINVAL);
        check(strcmp(err, "token expired") == 0);
    }
    check(sc_auth_verify(tok, SECRET "x", NOW, &c, err, sizeof(err)) ==
          SC_EINVAL);
    check(sc_auth_verify(tok, "", NOW, &c, err, sizeof(err)) == SC_EINVAL);
    char *sig = strrchr(tok, '.');
    check(sig != NULL && sig[1] != '\0');
    sig[1] = sig[1] == 'A' ? 'B' : 'A';
    check(sc_auth_verify(tok, SECRET, NOW, &c, err, sizeof(err)) == SC_EINVAL);
    free(tok);
}

/* Mode 4: the API key check against the rule of auth.h. */
static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool key_rule(const char *key, const char *h)
{
    if (key == NULL || key[0] == '\0' || h == NULL)
        return false;
    if (strncasecmp(h, "bearer", 6) != 0 || !is_blank(h[6]))
        return false;
    h += 6;
    while (is_blank(*h))
        h++;
    size_t n = strlen(h);
    while (n > 0 && is_blank(h[n - 1]))
        n--;
    return n > 0 && n == strlen(key) && memcmp(h, key, n) == 0;
}

static void check_key(const char *key, const char *h)
{
    check(sc_auth_api_key_ok(key, h) == key_rule(key, h));
}

static void fuzz_api_key(char **seg, size_t nseg)
{
    const char *key = seg[0];
    size_t n = strlen(key);
    char *h = malloc(n + 16);

    check(h != NULL);
    check_key(key, nseg > 1 ? seg[1] : NULL);
    check_key(NULL, nseg > 1 ? seg[1] : NULL);
    check_key(key, key);
    memcpy(h, "Bearer ", 7);
    memcpy(h + 7, key, n + 1);
    check_key(key, h);
    if (n > 0 && !is_blank(key[0]) && !is_blank(key[n - 1]))
        check(sc_auth_api_key_ok(key, h));
    memcpy(h, "bEARER\t\t", 8);
    memcpy(h + 8, key, n);
    memcpy(h + 8 + n, " \t", 3);
    check_key(key, h);
    memcpy(h + 8 + n, "x", 2);
    check_key(key, h);
    free(h);
}

/* Mode 5: pattern lists and origins. */

/* Calls fn(piece, len, arg) for each comma-separated piece of `list` with
 * the spaces around it removed, skipping empty ones; true when one call
 * returns true. */
static bool any_piece(const char *list,
                      bool (*fn)(const char *, size_t, const void *),
                      const void *arg)
{
    const char *p = list;

    for (;;) {
        const char *e = strchr(p, ',');
        const char *end = e != NULL ? e : p + strlen(p);
        const char *b = p;
        while (b < end && *b == ' ')
            b++;
        while (end > b && end[-1] == ' ')
            end--;
        if (end > b && fn(b, (size_t)(end - b), arg))
            return true;
        if (e == NULL)
            return false;
        p = e + 1;
    }
}

static bool scope_piece(const char *p, size_t n, const void *arg)
{
    const char *scope = arg;
    size_t sn = strlen(scope);

    if (p[n - 1] == '*')
        return sn >= n - 1 && memcmp(p, scope, n - 1) == 0;
    return n == sn && memcmp(p, scope, n) == 0;
}

typedef struct origin {
    const char *s;
    size_t n;
} origin_t;

/* '*' matches any run, other bytes match ignoring ASCII case: dynamic
 * programming over (pattern prefix, origin prefix). */
static bool glob_piece(const char *p, size_t pn, const void *arg)
{
    const origin_t *o = arg;
    bool *row = calloc(o->n + 1, sizeof(bool));
    bool *next = calloc(o->n + 1, sizeof(bool));

    check(row != NULL && next != NULL);
    row[0] = true; /* the empty pattern matches the empty origin */
    for (size_t i = 0; i < pn; i++) {
        next[0] = p[i] == '*' && row[0];
        for (size_t j = 1; j <= o->n; j++) {
            if (p[i] == '*')
                next[j] = row[j] || next[j - 1];
            else
                next[j] = row[j - 1] && tolower((unsigned char)p[i]) ==
                                            tolower((unsigned char)o->s[j - 1]);
        }
        bool *t = row;
        row = next;
        next = t;
    }
    bool ok = row[o->n];
    free(row);
    free(next);
    return ok;
}

static bool same_origin(const char *origin, const char *host)
{
    const char *sep = strchr(origin, ':');

    if (sep == NULL || host == NULL || strncmp(sep, "://", 3) != 0)
        return false;
    const char *auth = sep + 3;
    size_t n = strlen(auth);
    if (n == 0 || n != strlen(host))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (tolower((unsigned char)auth[i]) != tolower((unsigned char)host[i]))
            return false;
    }
    return true;
}

static void fuzz_lists(char **seg, size_t nseg)
{
    const char *list = seg[0];
    const char *value = nseg > 1 ? seg[1] : "";
    const char *host = nseg > 2 ? seg[2] : NULL;
    origin_t o = {value, strlen(value)};

    check(sc_auth_patterns_match(list, value) ==
          any_piece(list, scope_piece, value));
    check(!sc_auth_patterns_match(NULL, value));
    check(!sc_auth_patterns_match(list, NULL));
    check(sc_auth_origin_allowed(list, value, o.n, host,
                                 host ? strlen(host) : 0) ==
          any_piece(list, glob_piece, &o));
    check(sc_auth_origin_allowed(NULL, value, o.n, host,
                                 host ? strlen(host) : 0) ==
          same_origin(value, host));
    check(!sc_auth_origin_allowed(list, NULL, 0, host, 0));
    /* the value itself as the only pattern (when it is one piece) */
    if (strchr(value, ',') == NULL && o.n > 0 && value[0] != ' ' &&
        value[o.n - 1] != ' ') {
        check(sc_auth_origin_allowed(value, value, o.n, NULL, 0));
        check(sc_auth_patterns_match(value, value) == rule_match(value, value));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *seg[MAX_SEGS];
    size_t nseg = 0, at = 0, skip = 0;

    if (size < 1)
        return 0;
    unsigned mode = data[0] % 6;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if (mode == 3)
        skip = n < 9 ? n : 9; /* ttl and flags */

    /* strings cut at NUL bytes; the last one takes the rest */
    at = skip;
    while (nseg < MAX_SEGS) {
        const uint8_t *z =
            nseg + 1 < MAX_SEGS && at < n ? memchr(p + at, '\0', n - at) : NULL;
        size_t len = z != NULL ? (size_t)(z - (p + at)) : n - at;
        seg[nseg] = malloc(len + 1);
        check(seg[nseg] != NULL);
        memcpy(seg[nseg], p + at, len);
        seg[nseg][len] = '\0';
        nseg++;
        if (z == NULL)
            break;
        at += len + 1;
    }
    /* (a NUL inside the last string ends it early: C strings) */

    switch (mode) {
    case 0:
        fuzz_raw(seg, nseg);
        break;
    case 1:
        fuzz_signed(STD_HEADER, seg[0], seg + 1, nseg - 1);
        break;
    case 2:
        fuzz_signed(seg[0], nseg > 1 ? seg[1] : "", seg + 2,
                    nseg > 2 ? nseg - 2 : 0);
        break;
    case 3:
        fuzz_sign(p, n, seg, nseg);
        break;
    case 4:
        fuzz_api_key(seg, nseg);
        break;
    default:
        fuzz_lists(seg, nseg);
        break;
    }
    for (size_t i = 0; i < nseg; i++)
        free(seg[i]);
    return 0;
}
