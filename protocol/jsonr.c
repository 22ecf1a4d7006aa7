/*
 * Strict JSON input (see jsonr.h).
 *
 * json-c's strict mode (0.16) still accepts NaN, Infinity, -Infinity, "1.",
 * "-.5", "-01" and raw control characters in strings, clamps integers
 * beyond 64 bits to INT64_MIN / UINT64_MAX silently, and stops at a NUL
 * byte. Numbers are kept with their source text and re-serialised as is, so
 * "1." would come out as invalid JSON. Every input therefore first goes
 * through a lexical pre-scan that copies it into a NUL-terminated buffer
 * (json-c needs the terminator to finish a trailing number) and:
 *   - outside strings, accepts only whitespace, structural characters,
 *     strings, numbers of the RFC 8259 grammar and the words true, false and
 *     null; inside strings, rejects raw control characters;
 *   - appends "e0" to integer literals that do not fit 64 bits, so json-c
 *     parses them as doubles and keeps their text: `data` and `meta` then
 *     pass through with the same value instead of a clamped one (an id that
 *     large is no longer an integer and is rejected as an invalid id).
 * json-c then checks the structure, escapes, UTF-8 and depth. The rewrite
 * cannot turn invalid input into valid input: it only touches tokens that
 * are already valid integers.
 */
#include "jsonr.h"
#include "scope.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD_REQUEST "bad_request"

int sc__err_field(sc_proto_err_t *err, const char *prefix, const char *field,
                  const char *text)
{
    err->code = BAD_REQUEST;
    if (field != NULL)
        snprintf(err->message, sizeof(err->message), "%s%s: %s", prefix, field,
                 text);
    else
        snprintf(err->message, sizeof(err->message), "%s%s", prefix, text);
    return SC_EINVAL;
}

int sc__err_nomem(sc_proto_err_t *err)
{
    err->code = "internal";
    snprintf(err->message, sizeof(err->message), "out of memory");
    return SC_ENOMEM;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_num_char(char c)
{
    return is_digit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' ||
           c == '-';
}

/* Index of the first non-digit at or after i. */
static size_t skip_digits(const char *s, size_t i, size_t n)
{
    while (i < n && is_digit(s[i]))
        i++;
    return i;
}

/* Length of the JSON number (RFC 8259 grammar) at s, up to n bytes, or 0
 * when it is not one: json-c alone would accept "1.", "-.5" and "-01".
 * *integer tells whether it has neither fraction nor exponent. */
static size_t number_token(const char *s, size_t n, bool *integer)
{
    size_t i = s[0] == '-' ? 1 : 0, d;

    *integer = true;
    if (i < n && s[i] == '0')
        i++;
    else if ((d = skip_digits(s, i, n)) > i)
        i = d;
    else
        return 0;
    if (i < n && s[i] == '.') {
        *integer = false;
        if ((d = skip_digits(s, i + 1, n)) == i + 1)
            return 0;
        i = d;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        *integer = false;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if ((d = skip_digits(s, i, n)) == i)
            return 0;
        i = d;
    }
    return i < n && is_num_char(s[i]) ? 0 : i;
}

/* True when the integer literal does not fit the 64-bit range json-c can
 * hold: below INT64_MIN or above UINT64_MAX. */
static bool int_too_big(const char *t, size_t n)
{
    bool neg = t[0] == '-';
    uint64_t v = 0;

    for (size_t i = neg ? 1 : 0; i < n; i++) {
        unsigned d = (unsigned)(t[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return true;
        v = v * 10 + d;
    }
    return neg && v > (uint64_t)INT64_MAX + 1;
}

/* The only words JSON allows outside strings. */
static bool is_literal(const char *w, size_t n)
{
    return (n == 4 && memcmp(w, "true", 4) == 0) ||
           (n == 5 && memcmp(w, "false", 5) == 0) ||
           (n == 4 && memcmp(w, "null", 4) == 0);
}

/* Length of the string token at in[0] == '"' (up to n bytes), quotes and
 * escapes included (json-c checks the escapes); an unterminated string runs
 * to the end. 0 when it holds a raw control character, which JSON forbids
 * and json-c would accept. */
static size_t string_token(const char *in, size_t n)
{
    size_t i = 1;

    while (i < n) {
        if ((unsigned char)in[i] < 0x20)
            return 0;
        if (in[i] == '\\')
            i += 2;
        else if (in[i++] == '"')
            return i;
    }
    return n;
}

/* Length of the token at in[0] outside strings; 0 when it is not allowed
 * there. *big is set for an integer that needs "e0". */
static size_t token(const char *in, size_t n, bool *big)
{
    *big = false;
    if (in[0] != '\0' && strchr(" \t\n\r{}[]:,", in[0]) != NULL)
        return 1; /* whitespace and structure */
    if (in[0] == '"')
        return string_token(in, n);
    if (in[0] == '-' || is_digit(in[0])) {
        bool integer;
        size_t k = number_token(in, n, &integer);
        *big = k > 0 && integer && int_too_big(in, k);
        return k;
    }
    size_t k = 0;
    for (; k < n && is_alpha(in[k]); k++)
        ;
    return is_literal(in, k) ? k : 0;
}

/* The pre-scan described at the top. `o` has room for n + 1 + 2 * (n / 20
 * + 1) bytes (an integer too big has at least 20 characters). Returns the
 * bytes written before the NUL, or (size_t)-1 when the text is not JSON. */
static size_t prescan(const char *in, size_t n, char *o)
{
    size_t i = 0, j = 0;

    while (i < n) {
        bool big;
        size_t k = token(in + i, n - i, &big);
        if (k == 0)
            return (size_t)-1;
        memcpy(o + j, in + i, k);
        j += k;
        i += k;
        if (big) {
            memcpy(o + j, "e0", 2);
            j += 2;
        }
    }
    o[j] = '\0';
    return j;
}

/* Runs json-c in strict mode over the pre-scanned, NUL-terminated text. */
static int tokenize(const char *text, size_t len, json_object **out,
                    sc_proto_err_t *err)
{
    json_tokener *tok = json_tokener_new_ex(SC_PROTO_MAX_DEPTH);

    if (tok == NULL)
        return sc__err_nomem(err);
    json_tokener_set_flags(tok,
                           JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len + 1);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    /* A JSON null parses to a NULL object with success. */
    if (jerr != json_tokener_success || json_tokener_get_parse_end(tok) < len) {
        json_object_put(o);
        json_tokener_free(tok);
        if (jerr == json_tokener_error_depth)
            return sc__err_field(err, "", NULL,
                                 "invalid JSON: nested too deeply");
        if (jerr == json_tokener_error_parse_utf8_string)
            return sc__err_field(err, "", NULL, "invalid JSON: invalid UTF-8");
        return sc__err_field(err, "", NULL, "invalid JSON");
    }
    json_tokener_free(tok);
    *out = o;
    return SC_OK;
}

int sc__json_parse(const char *text, size_t len, json_object **out,
                   sc_proto_err_t *err)
{
    *out = NULL;
    if (text == NULL && len > 0)
        return sc__err_field(err, "", NULL, "invalid JSON");
    if (len > (size_t)INT_MAX / 2)
        return sc__err_field(err, "", NULL, "invalid JSON: too large");
    if (len > 0 && memchr(text, '\0', len) != NULL)
        return sc__err_field(err, "", NULL, "invalid JSON: NUL byte");
    size_t cap = len + 1 + 2 * (len / 20 + 1);
    char *buf = malloc(cap);
    if (buf == NULL)
        return sc__err_nomem(err);
    size_t n = prescan(text, len, buf);
    int rc;
    if (n == (size_t)-1)
        rc = sc__err_field(err, "", NULL, "invalid JSON");
    else
        rc = tokenize(buf, n, out, err);
    free(buf);
    return rc;
}

int sc__json_parse_object(const char *text, size_t len, json_object **out,
                          sc_proto_err_t *err)
{
    int rc = sc__json_parse(text, len, out, err);
    if (rc != SC_OK)
        return rc;
    if (!json_object_is_type(*out, json_type_object)) {
        json_object_put(*out);
        *out = NULL;
        return sc__err_field(err, "", NULL, "not an object");
    }
    return SC_OK;
}

char *sc__json_text(json_object *o)
{
    const char *s = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

    return s != NULL ? strdup(s) : NULL;
}

json_object *sc__member(json_object *obj, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(obj, key, &v))
        return NULL;
    return v; /* JSON null is stored as a NULL json_object */
}

/* The string's bytes when it holds no NUL, else NULL. */
static const char *clean_str(json_object *s)
{
    const char *p = json_object_get_string(s);
    size_t n = (size_t)json_object_get_string_len(s);

    return memchr(p, '\0', n) == NULL ? p : NULL;
}

int sc__read_scope(json_object *obj, const char *prefix, char **out,
                   sc_proto_err_t *err)
{
    json_object *v = sc__member(obj, "scope");

    if (v == NULL)
        return sc__err_field(err, prefix, "scope", "required");
    if (!json_object_is_type(v, json_type_string))
        return sc__err_field(err, prefix, "scope", "must be a string");
    if (!sc_proto_scope_valid(json_object_get_string(v),
                              (size_t)json_object_get_string_len(v)))
        return sc__err_field(err, prefix, "scope", SC_SCOPE_RULE);
    char *s = strdup(json_object_get_string(v));
    if (s == NULL)
        return sc__err_nomem(err);
    *out = s;
    return SC_OK;
}

int sc__read_string(json_object *obj, const char *key, const char *prefix,
                    bool nonempty, char **out, sc_proto_err_t *err)
{
    json_object *v = sc__member(obj, key);

    if (v == NULL)
        return SC_OK;
    if (!json_object_is_type(v, json_type_string) ||
        (nonempty && json_object_get_string_len(v) == 0))
        return sc__err_field(err, prefix, key,
                             nonempty ? "must be a non-empty string"
                                      : "must be a string");
    const char *p = clean_str(v);
    if (p == NULL)
        return sc__err_field(err, prefix, key,
                             "must not contain NUL characters");
    char *s = strdup(p);
    if (s == NULL)
        return sc__err_nomem(err);
    *out = s;
    return SC_OK;
}

void sc__str_array_free(char **a, size_t n)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(a[i]);
    free(a);
}

/* Checks every element of an array of strings. */
static int check_str_array(json_object *v, const char *key, const char *prefix,
                           sc_proto_err_t *err)
{
    size_t n = json_object_array_length(v);

    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (!json_object_is_type(e, json_type_string))
            return sc__err_field(err, prefix, key,
                                 "must be an array of strings");
        if (clean_str(e) == NULL)
            return sc__err_field(err, prefix, key,
                                 "must not contain NUL characters");
    }
    return SC_OK;
}

int sc__read_str_array(json_object *obj, const char *key, const char *prefix,
                       bool *has, char ***out, size_t *n, sc_proto_err_t *err)
{
    json_object *v = sc__member(obj, key);

    if (v == NULL)
        return SC_OK;
    if (!json_object_is_type(v, json_type_array))
        return sc__err_field(err, prefix, key, "must be an array of strings");
    int rc = check_str_array(v, key, prefix, err);
    if (rc != SC_OK)
        return rc;
    size_t len = json_object_array_length(v);
    char **a = NULL;
    size_t i = 0;
    if (len > 0 && (a = calloc(len, sizeof(*a))) == NULL)
        goto fail;
    for (i = 0; i < len; i++) {
        a[i] = strdup(json_object_get_string(json_object_array_get_idx(v, i)));
        if (a[i] == NULL)
            goto fail;
    }
    *has = true;
    *out = a;
    *n = len;
    return SC_OK;
fail:
    sc__str_array_free(a, i);
    return sc__err_nomem(err);
}

int sc__read_any(json_object *obj, const char *key, bool *has, char **out,
                 sc_proto_err_t *err)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(obj, key, &v))
        return SC_OK;
    char *s = v != NULL ? sc__json_text(v) : strdup("null");
    if (s == NULL)
        return sc__err_nomem(err);
    *has = true;
    *out = s;
    return SC_OK;
}
