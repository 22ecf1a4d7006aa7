/*
 * The history rules of `--history` (see history_spec.h).
 */
#include "history_spec.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads 1-10 decimal digits at [*p, end) into *v (stops at the first
 * non-digit). False without digits or past 10 of them. */
static bool read_num(const char **p, const char *end, uint64_t *v)
{
    const char *s = *p;
    uint64_t x = 0;
    while (*p < end && **p >= '0' && **p <= '9' && *p - s < 11)
        x = x * 10 + (uint64_t)(*(*p)++ - '0');
    *v = x;
    return *p > s && *p - s <= 10;
}

/* Parses LIMITS in [p, end) into the rule. Returns NULL or the error's
 * text. */
static const char *parse_limits(const char *p, const char *end,
                                sc_history_rule_t *r)
{
    uint64_t v;
    bool have_n = false;
    if (p < end && *p >= '0' && *p <= '9') {
        if (!read_num(&p, end, &v))
            return "limits must be N, Ts or N/Ts";
        if (p < end && *p == 's') { /* Ts alone */
            if (v < 1 || v > SC_HISTORY_MAX_AGE)
                return "T must be 1-31536000 seconds";
            r->max_age = (uint32_t)v;
            return p + 1 == end ? NULL : "limits must be N, Ts or N/Ts";
        }
        if (v < 1 || v > SC_HISTORY_MAX_EVENTS)
            return "N must be 1-1000000";
        r->max_events = (uint32_t)v;
        have_n = true;
    }
    if (!have_n)
        return "limits must be N, Ts or N/Ts";
    if (p == end)
        return NULL;
    if (*p++ != '/' || !read_num(&p, end, &v) || p + 1 != end || *p != 's')
        return "limits must be N, Ts or N/Ts";
    if (v < 1 || v > SC_HISTORY_MAX_AGE)
        return "T must be 1-31536000 seconds";
    r->max_age = (uint32_t)v;
    return NULL;
}

/* A scope character: printable ASCII without space (scope.c's rule). */
static bool scope_char(char c)
{
    return c > 0x20 && c < 0x7f;
}

static int fail(sc_history_spec_t *out, char *err, size_t errlen,
                const char *item, size_t n, const char *why)
{
    sc_history_spec_deinit(out);
    if (item)
        snprintf(err, errlen, "history: '%.*s': %s", (int)(n > 80 ? 80 : n),
                 item, why);
    else
        snprintf(err, errlen, "history: %s", why);
    return SC_EINVAL;
}

int sc_history_spec_parse(const char *text, sc_history_spec_t *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (errlen)
        err[0] = '\0';
    if (!text || !*text)
        return SC_OK;
    size_t cap = 1;
    for (const char *c = text; *c; c++)
        cap += *c == ',';
    if (!(out->rules = calloc(cap, sizeof *out->rules)))
        return SC_ENOMEM;
    for (const char *p = text;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        size_t n = (size_t)(end - p);
        if (n == 0)
            return fail(out, err, errlen, NULL, 0, "empty item");
        const char *eq = memchr(p, '=', n);
        if (!eq)
            return fail(out, err, errlen, p, n, "expected PATTERN=LIMITS");
        size_t plen = (size_t)(eq - p);
        bool prefix = plen && p[plen - 1] == '*';
        size_t len = prefix ? plen - 1 : plen;
        bool ok = plen > 0 && plen <= 200;
        for (size_t i = 0; ok && i < len; i++)
            ok = scope_char(p[i]) && p[i] != '*' && p[i] != '=';
        if (!ok)
            return fail(out, err, errlen, p, n, "bad pattern");
        sc_history_rule_t *r = &out->rules[out->n];
        const char *why = parse_limits(eq + 1, end, r);
        if (why)
            return fail(out, err, errlen, p, n, why);
        if (!(r->pattern = malloc(len + 1))) {
            sc_history_spec_deinit(out);
            return SC_ENOMEM;
        }
        memcpy(r->pattern, p, len);
        r->pattern[len] = '\0';
        r->len = len;
        r->prefix = prefix;
        out->n++;
        if (!comma)
            return SC_OK;
        p = comma + 1;
    }
}

void sc_history_spec_deinit(sc_history_spec_t *spec)
{
    if (!spec)
        return;
    for (size_t i = 0; i < spec->n; i++)
        free(spec->rules[i].pattern);
    free(spec->rules);
    memset(spec, 0, sizeof *spec);
}

const sc_history_rule_t *sc_history_spec_match(const sc_history_spec_t *spec,
                                               const char *scope)
{
    size_t sl = strlen(scope);
    for (size_t i = 0; spec && i < spec->n; i++) {
        const sc_history_rule_t *r = &spec->rules[i];
        if (r->prefix ? sl >= r->len && memcmp(scope, r->pattern, r->len) == 0
                      : sl == r->len && memcmp(scope, r->pattern, sl) == 0)
            return r;
    }
    return NULL;
}
