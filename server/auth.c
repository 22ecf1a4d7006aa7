/*
 * scopecast server: JWT verification, scope rules and the API key check
 * (see auth.h for the contract).
 *
 * Design notes:
 * - libjwt 1.10 decides the algorithm from the token's own header and will
 *   happily verify HS512 with our secret, so before handing the token to it
 *   we decode the header ourselves and insist on alg "HS256". After the
 *   decode the algorithm is checked once more. libjwt 1.10 refuses alg
 *   "none" when a key is given, but we do not rely on that.
 * - The token length is capped (SC_AUTH_TOKEN_MAX) before anything else:
 *   libjwt 1.10 base64-decodes into alloca'd buffers.
 * - The header and payload are pre-checked so that a failure inside libjwt
 *   can be reported as what it almost always is, a bad signature.
 * - Claims are read from libjwt's verified grants (re-serialised by libjwt),
 *   never from our own pre-parse of the payload.
 * - The API key comparison hashes both sides with SHA-256 and compares the
 *   digests with CRYPTO_memcmp, so neither the content nor the length of the
 *   configured key leaks through timing.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "auth.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define SUB_MAX 1024 /* longest sub that sc_auth_sign accepts */

/* ---- token pre-checks ---------------------------------------------------- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes unpadded base64url (n chars) into a new NUL-terminated buffer.
 * Returns NULL on a bad character, a bad length or out of memory. This is
 * only used to read the header and payload; libjwt verifies the token. */
static char *b64url_decode(const char *in, size_t n)
{
    if (n % 4 == 1)
        return NULL;
    char *out = malloc(n / 4 * 3 + 3);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    return out;
}

/* Decodes one segment as a JSON object; NULL when it is not one. */
static json_object *segment_json(const char *seg, size_t n)
{
    char *text = b64url_decode(seg, n);
    json_object *obj;

    if (!text)
        return NULL;
    obj = json_tokener_parse(text);
    free(text);
    if (obj && !json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        obj = NULL;
    }
    return obj;
}

/* Checks the header's alg and typ. */
static int check_header(json_object *head, char *err, size_t errlen)
{
    json_object *alg = NULL, *typ = NULL;

    if (!json_object_object_get_ex(head, "alg", &alg) ||
        !json_object_is_type(alg, json_type_string)) {
        sc_errfmt(err, errlen, "malformed token: no alg in the header");
        return SC_EINVAL;
    }
    if (strcmp(json_object_get_string(alg), "HS256") != 0) {
        sc_errfmt(err, errlen, "unsupported alg '%.16s' (only HS256)",
                  json_object_get_string(alg));
        return SC_EINVAL;
    }
    if (json_object_object_get_ex(head, "typ", &typ) &&
        (!json_object_is_type(typ, json_type_string) ||
         strcasecmp(json_object_get_string(typ), "JWT") != 0)) {
        sc_errfmt(err, errlen, "unsupported typ (only JWT)");
        return SC_EINVAL;
    }
    /* RFC 7515 4.1.11: extensions listed in crit must be understood, and
     * we understand none. */
    if (json_object_object_get_ex(head, "crit", NULL)) {
        sc_errfmt(err, errlen, "unsupported crit header (no extensions)");
        return SC_EINVAL;
    }
    return SC_OK;
}

/* NumericDate claims must be numbers a double holds exactly: libjwt's JSON
 * parser fails on larger integers, which would read as a bad signature. */
static int check_times(json_object *body, char *err, size_t errlen)
{
    static const char *const names[] = {"exp", "nbf", "iat"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        json_object *v = NULL;
        if (!json_object_object_get_ex(body, names[i], &v))
            continue;
        if (!json_object_is_type(v, json_type_int) &&
            !json_object_is_type(v, json_type_double)) {
            if (i == 2)
                continue; /* iat is not used: any type */
            sc_errfmt(err, errlen,
                      "invalid claims: exp and nbf must be numbers");
            return SC_EINVAL;
        }
        double d = json_object_get_double(v);
        if (!(d > -SC_AUTH_TIME_MAX && d < SC_AUTH_TIME_MAX)) {
            sc_errfmt(err, errlen, "invalid claims: %s out of range", names[i]);
            return SC_EINVAL;
        }
    }
    return SC_OK;
}

/* Splits the token into three segments, checks that the header and the
 * payload are JSON objects and that the header asks for HS256. */
static int precheck(const char *token, char *err, size_t errlen)
{
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    json_object *head = NULL, *body = NULL;
    int rc = SC_EINVAL;

    if (!dot2 || strchr(dot2 + 1, '.')) {
        sc_errfmt(err, errlen, "malformed token: expected three segments");
        return SC_EINVAL;
    }
    head = segment_json(token, (size_t)(dot1 - token));
    if (!head) {
        sc_errfmt(err, errlen, "malformed token: bad header");
        goto out;
    }
    if ((rc = check_header(head, err, errlen)) != SC_OK)
        goto out;
    body = segment_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!body) {
        sc_errfmt(err, errlen, "malformed token: bad payload");
        rc = SC_EINVAL;
        goto out;
    }
    rc = check_times(body, err, errlen);
out:
    json_object_put(head);
    json_object_put(body);
    return rc;
}

/* ---- claims -------------------------------------------------------------- */

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void sc_claims_deinit(sc_claims_t *c)
{
    if (!c)
        return;
    free(c->sub);
    free(c->json);
    free_list(c->scopes, c->nscopes);
    free_list(c->emit_patterns, c->nemit);
    memset(c, 0, sizeof(*c));
}

/* Copies a JSON array of strings. Returns SC_OK, SC_EINVAL (not an array of
 * strings) or SC_ENOMEM; on error nothing is kept. */
static int copy_patterns(json_object *arr, char ***out, size_t *n)
{
    size_t len = json_object_array_length(arr);
    char **list = calloc(len ? len : 1, sizeof(*list));

    if (!list)
        return SC_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        json_object *item = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(item, json_type_string)) {
            free_list(list, i);
            return SC_EINVAL;
        }
        list[i] = strdup(json_object_get_string(item));
        if (!list[i]) {
            free_list(list, i);
            return SC_ENOMEM;
        }
    }
    *out = list;
    *n = len;
    return SC_OK;
}

/* Reads an optional NumericDate claim. Returns SC_OK (absent or valid) or
 * SC_EINVAL (not a number). */
static int time_claim(json_object *g, const char *name, bool *has, int64_t *val)
{
    json_object *v = NULL;

    *has = false;
    if (!json_object_object_get_ex(g, name, &v))
        return SC_OK;
    if (json_object_is_type(v, json_type_int)) {
        *val = json_object_get_int64(v);
    } else if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!(d > -9e18 && d < 9e18)) /* NaN fails this too */
            return SC_EINVAL;
        *val = (int64_t)d;
        if ((double)*val > d)
            (*val)--; /* round towards minus infinity */
    } else {
        return SC_EINVAL;
    }
    *has = true;
    return SC_OK;
}

static int read_times(json_object *g, time_t now, sc_claims_t *c, char *err,
                      size_t errlen)
{
    bool has_nbf;
    int64_t nbf = 0;

    if (time_claim(g, "exp", &c->has_exp, &c->exp) != SC_OK ||
        time_claim(g, "nbf", &has_nbf, &nbf) != SC_OK) {
        sc_errfmt(err, errlen, "invalid claims: exp and nbf must be numbers");
        return SC_EINVAL;
    }
    if (c->has_exp && (int64_t)now >= c->exp) {
        sc_errfmt(err, errlen, "token expired");
        return SC_EINVAL;
    }
    if (has_nbf && (int64_t)now < nbf) {
        sc_errfmt(err, errlen, "token not valid yet (nbf)");
        return SC_EINVAL;
    }
    return SC_OK;
}

static int read_rights(json_object *g, sc_claims_t *c, char *err, size_t errlen)
{
    json_object *v = NULL;
    int rc = SC_OK;

    if (json_object_object_get_ex(g, "scopes", &v)) {
        rc = json_object_is_type(v, json_type_array)
                 ? copy_patterns(v, &c->scopes, &c->nscopes)
                 : SC_EINVAL;
        if (rc == SC_EINVAL)
            sc_errfmt(err, errlen,
                      "invalid claims: scopes must be an array "
                      "of strings");
        if (rc != SC_OK)
            return rc;
        c->has_scopes = true;
    }
    if (!json_object_object_get_ex(g, "emit", &v))
        return SC_OK;
    if (json_object_is_type(v, json_type_boolean)) {
        c->emit = json_object_get_boolean(v) ? SC_EMIT_ALL : SC_EMIT_NONE;
        return SC_OK;
    }
    rc = json_object_is_type(v, json_type_array)
             ? copy_patterns(v, &c->emit_patterns, &c->nemit)
             : SC_EINVAL;
    if (rc == SC_EINVAL)
        sc_errfmt(err, errlen,
                  "invalid claims: emit must be a boolean or an "
                  "array of strings");
    if (rc == SC_OK)
        c->emit = SC_EMIT_LIST;
    return rc;
}

/* Fills `c` from the verified grants of `jwt`. */
static int read_claims(jwt_t *jwt, time_t now, sc_claims_t *c, char *err,
                       size_t errlen)
{
    char *text = jwt_get_grants_json(jwt, NULL);
    json_object *g = text ? json_tokener_parse(text) : NULL;
    json_object *sub = NULL;
    int rc = SC_EINVAL;

    if (!g || !json_object_is_type(g, json_type_object)) {
        sc_errfmt(err, errlen, "malformed token: bad payload");
        goto out;
    }
    if (!json_object_object_get_ex(g, "sub", &sub) ||
        !json_object_is_type(sub, json_type_string) ||
        json_object_get_string_len(sub) == 0) {
        sc_errfmt(err, errlen,
                  "invalid claims: sub must be a non-empty string");
        goto out;
    }
    if ((rc = read_times(g, now, c, err, errlen)) != SC_OK)
        goto out;
    if ((rc = read_rights(g, c, err, errlen)) != SC_OK)
        goto out;
    c->sub = strdup(json_object_get_string(sub));
    rc = c->sub ? SC_OK : SC_ENOMEM;
    if (rc == SC_OK) {
        c->json = text;
        text = NULL;
    }
out:
    free(text);
    if (rc == SC_ENOMEM)
        sc_errfmt(err, errlen, "out of memory");
    json_object_put(g);
    return rc;
}

int sc_auth_verify(const char *token, const char *secret, time_t now,
                   sc_claims_t *out, char *err, size_t errlen)
{
    jwt_t *jwt = NULL;
    int rc;

    sc_errfmt(err, errlen, "%s", "");
    if (!out)
        return SC_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!secret || !*secret) {
        sc_errfmt(err, errlen, "no secret configured");
        return SC_EINVAL;
    }
    if (!token || !*token || strlen(token) > SC_AUTH_TOKEN_MAX) {
        sc_errfmt(err, errlen, "malformed token: %s",
                  token && *token ? "too long" : "empty");
        return SC_EINVAL;
    }
    if ((rc = precheck(token, err, errlen)) != SC_OK)
        return rc;
    rc = jwt_decode(&jwt, token, (const unsigned char *)secret,
                    (int)strlen(secret));
    if (rc != 0 || !jwt || jwt_get_alg(jwt) != JWT_ALG_HS256) {
        sc_errfmt(err, errlen,
                  rc == ENOMEM ? "out of memory" : "bad signature");
        rc = rc == ENOMEM ? SC_ENOMEM : SC_EINVAL;
        goto fail;
    }
    if ((rc = read_claims(jwt, now, out, err, errlen)) != SC_OK)
        goto fail;
    jwt_free(jwt);
    return SC_OK;
fail:
    sc_claims_deinit(out);
    jwt_free(jwt);
    return rc;
}

/* ---- rules --------------------------------------------------------------- */

bool sc_auth_pattern_match(const char *pattern, const char *scope)
{
    if (!pattern || !scope)
        return false;
    size_t n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*')
        return strncmp(pattern, scope, n - 1) == 0;
    return strcmp(pattern, scope) == 0;
}

static bool any_match(char *const *list, size_t n, const char *scope)
{
    for (size_t i = 0; i < n; i++) {
        if (sc_auth_pattern_match(list[i], scope))
            return true;
    }
    return false;
}

/* The next non-empty item of a comma-separated list at *p (spaces around
 * items ignored): returns it with its length in *n and moves *p past it,
 * or NULL at the end. */
static const char *next_item(const char **p, size_t *n)
{
    const char *s = *p;
    for (;;) {
        while (*s == ' ' || *s == ',')
            s++;
        if (!*s)
            return NULL;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > s && t[-1] == ' ')
            t--;
        *p = e;
        *n = (size_t)(t - s);
        if (*n > 0)
            return s;
        s = e;
    }
}

bool sc_auth_patterns_match(const char *list, const char *scope)
{
    if (!list || !scope)
        return false;
    size_t sl = strlen(scope), n;
    for (const char *p = list, *item; (item = next_item(&p, &n));) {
        if (item[n - 1] == '*') {
            if (sl >= n - 1 && strncmp(item, scope, n - 1) == 0)
                return true;
        } else if (n == sl && strncmp(item, scope, n) == 0) {
            return true;
        }
    }
    return false;
}

/* fnmatch-like: '*' matches any run of characters, case-insensitive
 * (origins are lower-case by RFC 6454, but be lenient). */
static bool glob_match(const char *p, size_t pn, const char *s, size_t sn)
{
    size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;
    while (si < sn) {
        if (pi < pn && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (pi < pn && tolower((unsigned char)p[pi]) ==
                                  tolower((unsigned char)s[si])) {
            pi++;
            si++;
        } else if (star != (size_t)-1) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

bool sc_auth_origin_allowed(const char *patterns, const char *origin,
                            size_t origin_len, const char *host,
                            size_t host_len)
{
    if (!origin)
        return false;
    if (!patterns) {
        /* same origin: what follows "scheme://" is the Host we were sent */
        const char *sep = memchr(origin, ':', origin_len);
        if (!sep || !host || (size_t)(origin + origin_len - sep) < 3 ||
            memcmp(sep, "://", 3) != 0)
            return false;
        const char *auth = sep + 3;
        size_t al = (size_t)(origin + origin_len - auth);
        return al == host_len && al > 0 && strncasecmp(auth, host, al) == 0;
    }
    size_t n;
    for (const char *p = patterns, *item; (item = next_item(&p, &n));)
        if (glob_match(item, n, origin, origin_len))
            return true;
    return false;
}

bool sc_auth_scope_allowed(const sc_claims_t *c, const char *scope)
{
    if (!scope)
        return false;
    if (!c || !c->has_scopes)
        return true;
    return any_match(c->scopes, c->nscopes, scope);
}

bool sc_auth_emit_allowed(const sc_claims_t *c, const char *scope)
{
    if (!c || !scope)
        return false;
    switch (c->emit) {
    case SC_EMIT_ALL:
        return sc_auth_scope_allowed(c, scope);
    case SC_EMIT_LIST:
        return any_match(c->emit_patterns, c->nemit, scope) &&
               sc_auth_scope_allowed(c, scope);
    default:
        return false;
    }
}

/* ---- signing, secrets, API key ------------------------------------------- */

static int add_sign_grants(jwt_t *jwt, const char *sub, bool emit_all,
                           long ttl_seconds, time_t now)
{
    if (jwt_add_grant(jwt, "sub", sub) != 0 ||
        jwt_add_grant_int(jwt, "iat", (long)now) != 0)
        return SC_ENOMEM;
    if (ttl_seconds > 0 &&
        jwt_add_grant_int(jwt, "exp", (long)now + ttl_seconds) != 0)
        return SC_ENOMEM;
    if (emit_all && jwt_add_grant_bool(jwt, "emit", 1) != 0)
        return SC_ENOMEM;
    return SC_OK;
}

int sc_auth_sign(const char *secret, const char *sub, bool emit_all,
                 long ttl_seconds, time_t now, char **token_out)
{
    jwt_t *jwt = NULL;
    int rc;

    if (!token_out)
        return SC_EINVAL;
    *token_out = NULL;
    if (!secret || !*secret || !sub || !*sub || strlen(sub) > SUB_MAX)
        return SC_EINVAL;
    if (ttl_seconds > 0 && (long)now > LONG_MAX - ttl_seconds)
        return SC_EINVAL; /* exp would overflow */
    if (ttl_seconds > 0 &&
        (double)now + (double)ttl_seconds >= SC_AUTH_TIME_MAX)
        return SC_EINVAL; /* sc_auth_verify would refuse it as out of range */
    if (jwt_new(&jwt) != 0)
        return SC_ENOMEM;
    if ((rc = add_sign_grants(jwt, sub, emit_all, ttl_seconds, now)) != SC_OK)
        goto fail;
    if (jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret,
                    (int)strlen(secret)) != 0) {
        rc = SC_ENOMEM;
        goto fail;
    }
    *token_out = jwt_encode_str(jwt);
    rc = *token_out ? SC_OK : SC_ENOMEM;
fail:
    jwt_free(jwt);
    return rc;
}

int sc_auth_random_secret(char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[256];

    if (!out || outlen == 0)
        return SC_EINVAL;
    out[0] = '\0';
    size_t n = (outlen - 1) / 2;
    if (n < 16)
        return SC_EINVAL;
    if (n > sizeof(raw))
        n = sizeof(raw);
    if (RAND_bytes(raw, (int)n) != 1)
        return SC_EINVAL;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 0xf];
    }
    out[2 * n] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return SC_OK;
}

/* SHA-256 of s; returns false if OpenSSL fails. */
static bool sha256(const char *s, size_t n, unsigned char out[32])
{
    unsigned int len = 0;

    return EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32;
}

bool sc_auth_api_key_ok(const char *configured,
                        const char *authorization_header)
{
    unsigned char want[32], got[32];
    const char *h = authorization_header;

    if (!configured || !*configured || !h)
        return false;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return false;
    h += 6;
    h += strspn(h, " \t");
    size_t n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--; /* optional trailing whitespace is not part of the key */
    if (n == 0)
        return false;
    if (!sha256(configured, strlen(configured), want) || !sha256(h, n, got))
        return false;
    return CRYPTO_memcmp(want, got, sizeof(want)) == 0;
}
