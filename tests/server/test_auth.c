/*
 * Tests of server/auth.c: JWT verification (including the attacks that
 * matter: alg none, algorithm substitution, tampering), claims, the scope
 * and emit rules, demo tokens, secrets and the API key check.
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

#include <cmocka.h>
#include <jwt.h>

#include "auth.h"

#define SECRET "test-secret-0123456789"
#define NOW ((time_t)1732530000)

static char g_err[256];

/* ---- helpers ------------------------------------------------------------- */

/* Unpadded base64url of a string, into a new buffer. */
static char *b64url(const char *s)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(s), o = 0;
    char *out = malloc(n / 3 * 4 + 5);
    unsigned acc = 0;
    int bits = 0;

    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | (unsigned char)s[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = a[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return out;
}

/* header.payload.sig from raw JSON texts and a raw signature segment. */
static char *craft(const char *header, const char *payload, const char *sig)
{
    char *h = b64url(header), *p = b64url(payload);
    size_t n = strlen(h) + strlen(p) + strlen(sig) + 3;
    char *t = malloc(n);

    assert_non_null(t);
    snprintf(t, n, "%s.%s.%s", h, p, sig);
    free(h);
    free(p);
    return t;
}

/* A token made by libjwt itself (not through sc_auth_sign). */
static char *libjwt_token(jwt_alg_t alg, const char *secret, const char *json)
{
    jwt_t *jwt = NULL;
    char *t;

    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, json), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)secret,
                                 (int)strlen(secret)),
                     0);
    t = jwt_encode_str(jwt);
    assert_non_null(t);
    jwt_free(jwt);
    return t;
}

static int verify(const char *token, sc_claims_t *c)
{
    g_err[0] = '\0';
    return sc_auth_verify(token, SECRET, NOW, c, g_err, sizeof(g_err));
}

/* Expects `token` to be refused with exactly `msg` and nothing kept. */
static void expect_refused(const char *token, const char *msg)
{
    sc_claims_t c;

    assert_int_equal(verify(token, &c), SC_EINVAL);
    assert_string_equal(g_err, msg);
    assert_null(c.sub);
    assert_null(c.scopes);
    assert_null(c.emit_patterns);
}

/* ---- verification -------------------------------------------------------- */

static void test_auth_sign_then_verify_round_trips(void **state)
{
    char *t = NULL;
    sc_claims_t c;

    assert_int_equal(sc_auth_sign(SECRET, "ana", true, 3600, NOW, &t), SC_OK);
    assert_int_equal(verify(t, &c), SC_OK);
    assert_string_equal(c.sub, "ana");
    assert_int_equal(c.emit, SC_EMIT_ALL);
    assert_false(c.has_scopes);
    assert_true(c.has_exp);
    assert_int_equal(c.exp, NOW + 3600);
    sc_claims_deinit(&c);
    sc_claims_deinit(&c); /* harmless twice */
    sc_claims_deinit(NULL);
    free(t);

    assert_int_equal(sc_auth_sign(SECRET, "bo", false, 60, NOW, &t), SC_OK);
    assert_int_equal(verify(t, &c), SC_OK);
    assert_int_equal(c.emit, SC_EMIT_NONE);
    sc_claims_deinit(&c);
    free(t);
}

static void test_auth_token_made_with_libjwt_is_accepted(void **state)
{
    char *t = libjwt_token(JWT_ALG_HS256, SECRET,
                           "{\"sub\":\"bob\",\"exp\":1732533600,"
                           "\"scopes\":[\"doc:*\",\"chat\"],"
                           "\"emit\":[\"doc:1\"],\"name\":\"Bob\"}");
    sc_claims_t c;

    assert_int_equal(verify(t, &c), SC_OK);
    assert_string_equal(c.sub, "bob");
    assert_true(c.has_scopes);
    assert_int_equal(c.nscopes, 2);
    assert_string_equal(c.scopes[0], "doc:*");
    assert_string_equal(c.scopes[1], "chat");
    assert_int_equal(c.emit, SC_EMIT_LIST);
    assert_int_equal(c.nemit, 1);
    assert_string_equal(c.emit_patterns[0], "doc:1");
    assert_int_equal(c.exp, 1732533600);
    sc_claims_deinit(&c);
    free(t);
}

static void test_auth_expired_token_is_refused(void **state)
{
    char *t = NULL;

    assert_int_equal(sc_auth_sign(SECRET, "ana", true, 60, NOW - 120, &t),
                     SC_OK);
    expect_refused(t, "token expired");
    free(t);
    /* exp equal to now has expired too. */
    assert_int_equal(sc_auth_sign(SECRET, "ana", true, 60, NOW - 60, &t),
                     SC_OK);
    expect_refused(t, "token expired");
    free(t);
    t = libjwt_token(JWT_ALG_HS256, SECRET,
                     "{\"sub\":\"a\",\"exp\":1732529999.5}");
    expect_refused(t, "token expired");
    free(t);
}

static void test_auth_token_without_exp_is_accepted(void **state)
{
    char *t = NULL;
    sc_claims_t c;

    assert_int_equal(sc_auth_sign(SECRET, "ana", false, 0, NOW, &t), SC_OK);
    assert_int_equal(verify(t, &c), SC_OK);
    assert_false(c.has_exp);
    sc_claims_deinit(&c);
    free(t);
}

static void test_auth_nbf_in_the_future_is_refused(void **state)
{
    char *t = libjwt_token(JWT_ALG_HS256, SECRET,
                           "{\"sub\":\"a\",\"nbf\":1732530001}");
    expect_refused(t, "token not valid yet (nbf)");
    free(t);
}

static void test_auth_wrong_signature_is_refused(void **state)
{
    char *t = NULL;

    assert_int_equal(sc_auth_sign("another-secret", "ana", true, 60, NOW, &t),
                     SC_OK);
    expect_refused(t, "bad signature");
    free(t);

    /* A valid token whose payload is swapped keeps a signature that no
     * longer matches. */
    assert_int_equal(sc_auth_sign(SECRET, "ana", false, 60, NOW, &t), SC_OK);
    char *sig = strrchr(t, '.') + 1;
    char *forged = craft("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                         "{\"sub\":\"ana\",\"emit\":true}", sig);
    expect_refused(forged, "bad signature");
    free(forged);
    /* Dropping the signature is no better. */
    sig[0] = '\0';
    expect_refused(t, "bad signature");
    free(t);
}

static void test_auth_alg_none_is_refused(void **state)
{
    char *t =
        craft("{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"sub\":\"root\"}", "");
    expect_refused(t, "unsupported alg 'none' (only HS256)");
    free(t);
    t = craft("{\"alg\":\"None\"}", "{\"sub\":\"root\"}", "");
    expect_refused(t, "unsupported alg 'None' (only HS256)");
    free(t);
}

static void test_auth_other_algorithms_are_refused(void **state)
{
    /* HS512 with the very same secret verifies in libjwt: we refuse it. */
    char *t = libjwt_token(JWT_ALG_HS512, SECRET, "{\"sub\":\"ana\"}");
    expect_refused(t, "unsupported alg 'HS512' (only HS256)");
    free(t);
    t = libjwt_token(JWT_ALG_HS384, SECRET, "{\"sub\":\"ana\"}");
    expect_refused(t, "unsupported alg 'HS384' (only HS256)");
    free(t);
    t = craft("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", "{\"sub\":\"ana\"}",
              "c2lnbmF0dXJl");
    expect_refused(t, "unsupported alg 'RS256' (only HS256)");
    free(t);
    t = craft("{\"typ\":\"JWT\"}", "{\"sub\":\"ana\"}", "c2ln");
    expect_refused(t, "malformed token: no alg in the header");
    free(t);
    t = craft("{\"alg\":\"HS256\",\"typ\":\"JWE\"}", "{\"sub\":\"ana\"}",
              "c2ln");
    expect_refused(t, "unsupported typ (only JWT)");
    free(t);
}

static void test_auth_garbage_is_refused(void **state)
{
    sc_claims_t c;
    char *big = malloc(SC_AUTH_TOKEN_MAX + 2);

    expect_refused("", "malformed token: empty");
    expect_refused("abc", "malformed token: expected three segments");
    expect_refused("a.b", "malformed token: expected three segments");
    expect_refused("a.b.c.d", "malformed token: expected three segments");
    expect_refused("..", "malformed token: bad header");
    expect_refused("a.b.c", "malformed token: bad header");
    expect_refused("e30.e30.", "malformed token: no alg in the header");
    expect_refused("!!!.e30.x", "malformed token: bad header");

    char *t = craft("{\"alg\":\"HS256\"}", "[1,2]", "x");
    expect_refused(t, "malformed token: bad payload");
    free(t);
    t = craft("{\"alg\":\"HS256\"}", "not json", "x");
    expect_refused(t, "malformed token: bad payload");
    free(t);

    assert_non_null(big);
    memset(big, 'a', SC_AUTH_TOKEN_MAX + 1);
    big[SC_AUTH_TOKEN_MAX + 1] = '\0';
    expect_refused(big, "malformed token: too long");
    free(big);

    assert_int_equal(verify(NULL, &c), SC_EINVAL);
    assert_int_equal(sc_auth_verify("a.b.c", "", NOW, &c, NULL, 0), SC_EINVAL);
    assert_int_equal(sc_auth_verify("a.b.c", NULL, NOW, &c, g_err, 3),
                     SC_EINVAL);
    assert_string_equal(g_err, "no"); /* truncated, never overflowed */
}

static void test_auth_sub_must_be_a_non_empty_string(void **state)
{
    static const char *bodies[] = {"{\"name\":\"x\"}", "{\"sub\":42}",
                                   "{\"sub\":null}", "{\"sub\":\"\"}",
                                   "{\"sub\":[\"a\"]}"};

    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char *t = libjwt_token(JWT_ALG_HS256, SECRET, bodies[i]);
        expect_refused(t, "invalid claims: sub must be a non-empty string");
        free(t);
    }
}

static void test_auth_claims_of_the_wrong_type_are_refused(void **state)
{
    static const struct {
        const char *body, *msg;
    } cases[] = {
        {"{\"sub\":\"a\",\"scopes\":\"doc:*\"}",
         "invalid claims: scopes must be an array of strings"},
        {"{\"sub\":\"a\",\"scopes\":[\"doc:*\",1]}",
         "invalid claims: scopes must be an array of strings"},
        {"{\"sub\":\"a\",\"scopes\":null}",
         "invalid claims: scopes must be an array of strings"},
        {"{\"sub\":\"a\",\"emit\":\"yes\"}",
         "invalid claims: emit must be a boolean or an array of strings"},
        {"{\"sub\":\"a\",\"emit\":[true]}",
         "invalid claims: emit must be a boolean or an array of strings"},
        {"{\"sub\":\"a\",\"exp\":\"soon\"}",
         "invalid claims: exp and nbf must be numbers"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = libjwt_token(JWT_ALG_HS256, SECRET, cases[i].body);
        expect_refused(t, cases[i].msg);
        free(t);
    }
}

static void test_auth_crit_header_is_refused(void **state)
{
    /* RFC 7515 4.1.11: no extension is understood, so any crit is fatal
     * (it was accepted before); checked before the signature */
    char *t = craft("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"b64\"]}",
                    "{\"sub\":\"a\"}", "c2ln");
    expect_refused(t, "unsupported crit header (no extensions)");
    free(t);
}

static void test_auth_huge_times_are_reported_out_of_range(void **state)
{
    /* 2^64 used to read as "bad signature" (libjwt's parser fails) */
    static const struct {
        const char *body, *msg;
    } cases[] = {
        {"{\"sub\":\"a\",\"exp\":18446744073709551616}",
         "invalid claims: exp out of range"},
        {"{\"sub\":\"a\",\"exp\":1e300}", "invalid claims: exp out of range"},
        {"{\"sub\":\"a\",\"nbf\":-1e300}", "invalid claims: nbf out of range"},
        {"{\"sub\":\"a\",\"iat\":9007199254740993}",
         "invalid claims: iat out of range"},
        {"{\"sub\":\"a\",\"exp\":\"soon\"}",
         "invalid claims: exp and nbf must be numbers"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t =
            craft("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", cases[i].body, "c2ln");
        expect_refused(t, cases[i].msg);
        free(t);
    }
}

static void test_auth_pattern_lists_split_on_commas(void **state)
{
    assert_true(sc_auth_patterns_match("public:*, lobby", "public:x"));
    assert_true(sc_auth_patterns_match("public:*, lobby", "lobby"));
    assert_true(sc_auth_patterns_match("a,,b", "b"));
    assert_false(sc_auth_patterns_match("public:*, lobby", "lobby2"));
    assert_false(sc_auth_patterns_match("public:*, lobby", "publi"));
    assert_false(sc_auth_patterns_match("", "a"));
    assert_false(sc_auth_patterns_match(NULL, "a"));
    assert_true(sc_auth_patterns_match("*", "anything"));
}

static bool origin_ok(const char *patterns, const char *origin,
                      const char *host)
{
    return sc_auth_origin_allowed(patterns, origin, strlen(origin), host,
                                  host ? strlen(host) : 0);
}

static void test_auth_origins_default_to_the_same_host(void **state)
{
    assert_true(origin_ok(NULL, "http://127.0.0.1:8080", "127.0.0.1:8080"));
    assert_true(origin_ok(NULL, "https://App.Example", "app.example"));
    assert_false(origin_ok(NULL, "http://127.0.0.1:8081", "127.0.0.1:8080"));
    assert_false(origin_ok(NULL, "https://evil.example", "app.example"));
    assert_false(origin_ok(NULL, "null", "app.example"));
    assert_false(origin_ok(NULL, "http://app.example", NULL));
    assert_false(origin_ok(NULL, "http://", ""));
}

static void test_auth_origin_patterns_glob_any_run(void **state)
{
    const char *p = "https://*.example.com, http://localhost:3000";
    assert_true(origin_ok(p, "https://a.example.com", "x"));
    assert_true(origin_ok(p, "https://a.b.example.com", "x"));
    assert_true(origin_ok(p, "HTTPS://A.EXAMPLE.COM", "x"));
    assert_true(origin_ok(p, "http://localhost:3000", "x"));
    assert_false(origin_ok(p, "https://example.com.evil.org", "x"));
    assert_false(origin_ok(p, "https://evilexample.com", "x"));
    assert_false(origin_ok(p, "http://localhost:30000", "x"));
    assert_true(origin_ok("*", "null", NULL));
}

/* ---- patterns and rules -------------------------------------------------- */

static void test_auth_patterns_treat_star_as_special_only_at_the_end(void **s)
{
    assert_true(sc_auth_pattern_match("doc:1", "doc:1"));
    assert_false(sc_auth_pattern_match("doc:1", "doc:12"));
    assert_false(sc_auth_pattern_match("doc:1", "doc:"));
    assert_true(sc_auth_pattern_match("doc:*", "doc:42"));
    assert_true(sc_auth_pattern_match("doc:*", "doc:")); /* empty suffix */
    assert_false(sc_auth_pattern_match("doc:*", "doc"));
    assert_false(sc_auth_pattern_match("doc:*", "chat:1"));
    assert_true(sc_auth_pattern_match("*", "anything:at/all"));
    assert_true(sc_auth_pattern_match("*", "x"));
    assert_true(sc_auth_pattern_match("a*b", "a*b")); /* literal */
    assert_false(sc_auth_pattern_match("a*b", "axb"));
    assert_false(sc_auth_pattern_match("a*b", "ab"));
    assert_true(sc_auth_pattern_match("a**", "a*b")); /* first '*' literal */
    assert_false(sc_auth_pattern_match("a**", "ab"));
    assert_false(sc_auth_pattern_match("", "a"));
    assert_false(sc_auth_pattern_match(NULL, "a"));
    assert_false(sc_auth_pattern_match("*", NULL));
}

/* Builds claims in place for the rule tests (patterns are borrowed). */
static sc_claims_t claims(char **scopes, size_t ns, sc_emit_right_t emit,
                          char **emits, size_t ne)
{
    sc_claims_t c = {.sub = "u",
                     .has_scopes = scopes != NULL,
                     .scopes = scopes,
                     .nscopes = ns,
                     .emit = emit,
                     .emit_patterns = emits,
                     .nemit = ne};
    return c;
}

static void test_auth_scopes_claim_limits_subscriptions(void **state)
{
    char *list[] = {"doc:*", "chat"};
    char *none[] = {NULL};
    sc_claims_t any = claims(NULL, 0, SC_EMIT_NONE, NULL, 0);
    sc_claims_t some = claims(list, 2, SC_EMIT_NONE, NULL, 0);
    sc_claims_t empty = claims(none, 0, SC_EMIT_NONE, NULL, 0);

    assert_true(sc_auth_scope_allowed(NULL, "x")); /* anonymous */
    assert_true(sc_auth_scope_allowed(&any, "x"));
    assert_true(sc_auth_scope_allowed(&some, "doc:9"));
    assert_true(sc_auth_scope_allowed(&some, "chat"));
    assert_false(sc_auth_scope_allowed(&some, "chat:1"));
    assert_false(sc_auth_scope_allowed(&empty, "doc:9"));
}

static void test_auth_emit_rights_combine_with_scopes(void **state)
{
    char *docs[] = {"doc:*"};
    char *scopes[] = {"doc:1", "chat"};
    char *one[] = {"doc:1"};

    assert_false(sc_auth_emit_allowed(NULL, "doc:1")); /* anonymous */
    sc_claims_t c = claims(NULL, 0, SC_EMIT_NONE, NULL, 0);
    assert_false(sc_auth_emit_allowed(&c, "doc:1")); /* no claim or false */
    c = claims(NULL, 0, SC_EMIT_ALL, NULL, 0);
    assert_true(sc_auth_emit_allowed(&c, "anything"));
    c = claims(docs, 1, SC_EMIT_ALL, NULL, 0); /* true, bounded by scopes */
    assert_true(sc_auth_emit_allowed(&c, "doc:7"));
    assert_false(sc_auth_emit_allowed(&c, "chat"));
    c = claims(NULL, 0, SC_EMIT_LIST, one, 1); /* list, no scopes claim */
    assert_true(sc_auth_emit_allowed(&c, "doc:1"));
    assert_false(sc_auth_emit_allowed(&c, "doc:2"));
    c = claims(scopes, 2, SC_EMIT_LIST, docs, 1); /* both must allow */
    assert_true(sc_auth_emit_allowed(&c, "doc:1"));
    assert_false(sc_auth_emit_allowed(&c, "doc:2")); /* not in scopes */
    assert_false(sc_auth_emit_allowed(&c, "chat"));  /* not in emit list */
    c = claims(NULL, 0, SC_EMIT_LIST, NULL, 0);      /* emit: [] */
    assert_false(sc_auth_emit_allowed(&c, "doc:1"));
}

static void test_auth_emit_claims_parse_from_tokens(void **state)
{
    static const struct {
        const char *body;
        sc_emit_right_t want;
    } cases[] = {
        {"{\"sub\":\"a\",\"emit\":true}", SC_EMIT_ALL},
        {"{\"sub\":\"a\",\"emit\":false}", SC_EMIT_NONE},
        {"{\"sub\":\"a\"}", SC_EMIT_NONE},
        {"{\"sub\":\"a\",\"emit\":[]}", SC_EMIT_LIST},
        {"{\"sub\":\"a\",\"emit\":[\"x\"],\"scopes\":[]}", SC_EMIT_LIST},
    };
    sc_claims_t c;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = libjwt_token(JWT_ALG_HS256, SECRET, cases[i].body);
        assert_int_equal(verify(t, &c), SC_OK);
        assert_int_equal(c.emit, cases[i].want);
        if (i == 4) {
            assert_true(c.has_scopes);
            assert_int_equal(c.nscopes, 0);
            assert_false(sc_auth_emit_allowed(&c, "x")); /* scopes: [] */
        }
        sc_claims_deinit(&c);
        free(t);
    }
}

/* ---- signing, secrets, API key ------------------------------------------- */

static void test_auth_sign_rejects_bad_arguments(void **state)
{
    char *t = (char *)"untouched";

    assert_int_equal(sc_auth_sign("", "a", true, 60, NOW, &t), SC_EINVAL);
    assert_null(t);
    assert_int_equal(sc_auth_sign(SECRET, "", true, 60, NOW, &t), SC_EINVAL);
    assert_int_equal(sc_auth_sign(SECRET, NULL, true, 60, NOW, &t), SC_EINVAL);
    assert_int_equal(sc_auth_sign(SECRET, "a", true, 60, NOW, NULL), SC_EINVAL);
    /* exp past 2^53 would be refused by sc_auth_verify (found by fuzzing) */
    char *big = NULL;
    assert_int_equal(sc_auth_sign(SECRET, "a", false, 1L << 60, NOW, &big),
                     SC_EINVAL);
    assert_null(big);
}

static void test_auth_random_secrets_are_hex_and_differ(void **state)
{
    char a[SC_AUTH_SECRET_LEN], b[SC_AUTH_SECRET_LEN], small[32];

    assert_int_equal(sc_auth_random_secret(a, sizeof(a)), SC_OK);
    assert_int_equal(sc_auth_random_secret(b, sizeof(b)), SC_OK);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_string_not_equal(a, b);
    assert_int_equal(sc_auth_random_secret(small, sizeof(small)), SC_EINVAL);
    assert_string_equal(small, "");
}

static void test_auth_api_key_needs_bearer_and_the_exact_key(void **state)
{
    assert_true(sc_auth_api_key_ok("k3y", "Bearer k3y"));
    assert_true(sc_auth_api_key_ok("k3y", "bearer k3y")); /* scheme any case */
    assert_true(sc_auth_api_key_ok("k3y", "Bearer   k3y  "));
    assert_false(sc_auth_api_key_ok("k3y", "Bearer nope"));
    assert_false(sc_auth_api_key_ok("k3y", "Bearer k3"));
    assert_false(sc_auth_api_key_ok("k3y", "Bearer k3yy"));
    assert_false(sc_auth_api_key_ok("k3y", "Bearer K3Y"));
    assert_false(sc_auth_api_key_ok("k3y", NULL)); /* missing */
    assert_false(sc_auth_api_key_ok("k3y", ""));
    assert_false(sc_auth_api_key_ok("k3y", "Bearer "));
    assert_false(sc_auth_api_key_ok("k3y", "Basic k3y")); /* not Bearer */
    assert_false(sc_auth_api_key_ok("k3y", "k3y"));
    assert_false(sc_auth_api_key_ok("k3y", "Bearerk3y"));
    assert_false(sc_auth_api_key_ok(NULL, "Bearer k3y")); /* none set */
    assert_false(sc_auth_api_key_ok("", "Bearer "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_sign_then_verify_round_trips),
        cmocka_unit_test(test_auth_token_made_with_libjwt_is_accepted),
        cmocka_unit_test(test_auth_expired_token_is_refused),
        cmocka_unit_test(test_auth_token_without_exp_is_accepted),
        cmocka_unit_test(test_auth_nbf_in_the_future_is_refused),
        cmocka_unit_test(test_auth_wrong_signature_is_refused),
        cmocka_unit_test(test_auth_alg_none_is_refused),
        cmocka_unit_test(test_auth_other_algorithms_are_refused),
        cmocka_unit_test(test_auth_garbage_is_refused),
        cmocka_unit_test(test_auth_sub_must_be_a_non_empty_string),
        cmocka_unit_test(test_auth_claims_of_the_wrong_type_are_refused),
        cmocka_unit_test(test_auth_crit_header_is_refused),
        cmocka_unit_test(test_auth_huge_times_are_reported_out_of_range),
        cmocka_unit_test(test_auth_pattern_lists_split_on_commas),
        cmocka_unit_test(test_auth_origins_default_to_the_same_host),
        cmocka_unit_test(test_auth_origin_patterns_glob_any_run),
        cmocka_unit_test(
            test_auth_patterns_treat_star_as_special_only_at_the_end),
        cmocka_unit_test(test_auth_scopes_claim_limits_subscriptions),
        cmocka_unit_test(test_auth_emit_rights_combine_with_scopes),
        cmocka_unit_test(test_auth_emit_claims_parse_from_tokens),
        cmocka_unit_test(test_auth_sign_rejects_bad_arguments),
        cmocka_unit_test(test_auth_random_secrets_are_hex_and_differ),
        cmocka_unit_test(test_auth_api_key_needs_bearer_and_the_exact_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
