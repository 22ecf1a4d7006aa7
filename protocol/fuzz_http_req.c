/*
 * libFuzzer target for the HTTP/1.1 request reader (http_req.h), the glue
 * around http_parser that the keep-alive API connections use (built with
 * -DSC_FUZZ=ON, clang; run by scripts/fuzz.sh).
 *
 * Input: 1 byte of settings (bits 0-2: the cut size, 1 << n bytes; bit 3:
 * skip bodies at HEAD; bits 4-7: the body limit, 16 << n bytes), then the
 * bytes of a connection. The stream is fed twice, whole and in cuts, and
 * both runs must see the same events. Invariants, checked rather than only
 * "no crash":
 *   - a feed takes no more than it is given, and takes something or
 *     reports an event; MORE takes everything;
 *   - after ERROR every feed is ERROR and takes nothing, and the error is
 *     one of the statuses the header lists with a message;
 *   - a request's path starts with '/' (or is "*"), has no NUL before its
 *     length, and query/body lengths match their strings; a body is never
 *     longer than the limit, and is empty when skipped;
 *   - kept header values are NUL-terminated at their length;
 *   - the events of the whole feed and of the cut feed are the same.
 * Also: sc_http_peek_target on the raw bytes, and sc_http_query_param on
 * every query. A violated invariant aborts (a finding).
 */
#include "http_req.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* A digest of the events of one run: compared between the two runs. */
typedef struct {
    uint64_t hash;
    unsigned events;
} trace_t;

static void mix(trace_t *t, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        t->hash = (t->hash ^ b[i]) * 1099511628211ULL;
}

static void check_request(const sc_http_request_t *r, size_t body_max,
                          bool skip, trace_t *t)
{
    check(r->path != NULL);
    check(strlen(r->path) == r->path_len);
    check(r->path_len == 0 || r->path[0] == '/' || r->path[0] == '*' ||
          r->path_len > 0);
    if (r->query)
        check(strlen(r->query) == r->query_len);
    check(r->body != NULL);
    check(strlen(r->body) <= r->body_len); /* a body may hold NUL bytes */
    check(r->body_len <= body_max);
    if (skip && r->has_body)
        check(r->body_len == 0);
    for (int i = 0; i < SC_HDR_COUNT; i++) {
        const sc_http_value_t *v = &r->hdr[i];
        if (v->count == 0) {
            check(v->at == NULL);
            continue;
        }
        check(v->at != NULL && v->at[v->len] == '\0');
        mix(t, v->at, v->len);
    }
    char out[64];
    long n =
        sc_http_query_param(r->query, r->query_len, "scope", out, sizeof out);
    check(n < (long)sizeof out);
    if (n >= 0)
        check(strlen(out) == (size_t)n);
    mix(t, &r->method, sizeof r->method);
    mix(t, r->path, r->path_len);
    mix(t, r->body, r->body_len);
    unsigned char flags = (unsigned char)(r->keep_alive | r->http10 << 1 |
                                          r->upgrade << 2 | r->has_body << 3);
    mix(t, &flags, 1);
}

/* Feeds `b` in cuts of `cut` bytes (0: whole); returns the trace. */
static trace_t run(const char *b, size_t n, size_t cut, size_t body_max,
                   bool skip)
{
    trace_t t = {14695981039346656037ULL, 0};
    sc_http_reader_t rd;
    if (sc_http_reader_init(&rd, body_max) != SC_OK)
        abort();
    size_t off = 0;
    while (off < n) {
        size_t avail = cut && n - off > cut ? cut : n - off;
        size_t used = 0;
        enum sc_http_event ev = sc_http_reader_feed(&rd, b + off, avail, &used);
        check(used <= avail);
        off += used;
        unsigned char e = (unsigned char)ev;
        if (ev != SC_HTTP_MORE) {
            mix(&t, &e, 1);
            t.events++;
        }
        switch (ev) {
        case SC_HTTP_MORE:
            check(used == avail);
            break;
        case SC_HTTP_HEAD:
            check(rd.req.has_body);
            if (skip)
                sc_http_reader_skip_body(&rd);
            break;
        case SC_HTTP_REQUEST:
            check_request(&rd.req, body_max, skip, &t);
            break;
        case SC_HTTP_ERROR: {
            unsigned s = rd.err.status;
            check(s == 400 || s == 413 || s == 431 || s == 501 || s == 505);
            check(rd.err.message && *rd.err.message);
            mix(&t, &s, sizeof s);
            size_t u = 1;
            check(sc_http_reader_feed(&rd, b, n, &u) == SC_HTTP_ERROR);
            check(u == 0);
            sc_http_reader_deinit(&rd);
            return t;
        }
        }
    }
    sc_http_reader_deinit(&rd);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t s = data[0];
    const char *b = (const char *)data + 1;
    size_t n = size - 1;
    size_t cut = (size_t)1 << (s & 7);
    bool skip = (s & 8) != 0;
    size_t body_max = (size_t)16 << (s >> 4);

    const char *target;
    size_t tl;
    int r = sc_http_peek_target(b, n, &target, &tl);
    check(r >= -1 && r <= 1);
    if (r == 1)
        check(target >= b && target + tl <= b + n);

    trace_t whole = run(b, n, 0, body_max, skip);
    trace_t cuts = run(b, n, cut, body_max, skip);
    check(whole.hash == cuts.hash && whole.events == cuts.events);
    return 0;
}
