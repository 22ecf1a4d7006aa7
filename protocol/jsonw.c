/*
 * Growable buffer and JSON writer (see jsonw.h).
 *
 * The escaper is the hot part: it runs once per emit under a bus lock. It
 * copies runs of bytes that need no escaping with one memcpy and validates
 * UTF-8 as it goes with sc_utf8_seq() (utf8.h: RFC 3629, no overlongs, no
 * surrogates, nothing above U+10FFFF), so plain ASCII and valid UTF-8 cost
 * one pass and one copy.
 */
#include "jsonw.h"
#include "utf8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 64

void sc_buf_init(sc_buf_t *b)
{
    memset(b, 0, sizeof(*b));
}

void sc_buf_deinit(sc_buf_t *b)
{
    if (b == NULL)
        return;
    free(b->data);
    sc_buf_init(b);
}

void sc_buf_reset(sc_buf_t *b)
{
    b->len = b->start;
    b->err = SC_OK;
}

/* Grows the allocation so that `need` bytes fit. Doubles, so appends are
 * amortised O(1); fails the buffer on overflow or ENOMEM. */
static int grow(sc_buf_t *b, size_t need)
{
    size_t cap = b->cap < MIN_CAP ? MIN_CAP : b->cap;

    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->err = SC_ENOMEM;
        return SC_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return SC_OK;
}

int sc_buf_reserve(sc_buf_t *b, size_t extra)
{
    if (b->err != SC_OK)
        return b->err;
    if (extra > SIZE_MAX - b->len - 1) {
        b->err = SC_ENOMEM;
        return SC_ENOMEM;
    }
    if (b->len + extra + 1 <= b->cap)
        return SC_OK;
    return grow(b, b->len + extra + 1);
}

int sc_buf_reserve_front(sc_buf_t *b, size_t n, size_t hint)
{
    if (b->len != b->start)
        return SC_EINVAL;
    if (b->err != SC_OK)
        return b->err;
    if (n > SIZE_MAX / 2 || hint > SIZE_MAX / 2) {
        b->err = SC_ENOMEM;
        return SC_ENOMEM;
    }
    if (n + hint + 1 > b->cap && grow(b, n + hint + 1) != SC_OK)
        return SC_ENOMEM;
    b->start = n;
    b->len = n;
    return SC_OK;
}

const char *sc_buf_str(sc_buf_t *b)
{
    if (b->err != SC_OK)
        return NULL;
    if (b->data == NULL)
        return "";
    b->data[b->len] = '\0'; /* every reserve keeps room for it */
    return b->data + b->start;
}

size_t sc_buf_len(const sc_buf_t *b)
{
    return b->len - b->start;
}

char *sc_buf_detach(sc_buf_t *b, size_t *len)
{
    size_t n = sc_buf_len(b);

    if (len != NULL)
        *len = 0;
    if (b->err != SC_OK || sc_buf_reserve(b, 0) != SC_OK) {
        sc_buf_deinit(b);
        return NULL;
    }
    if (b->start > 0)
        memmove(b->data, b->data + b->start, n);
    b->data[n] = '\0';
    char *s = b->data;
    sc_buf_init(b);
    if (len != NULL)
        *len = n;
    return s;
}

void sc_buf_put(sc_buf_t *b, const void *p, size_t n)
{
    if (n == 0 || sc_buf_reserve(b, n) != SC_OK)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void sc_buf_putc(sc_buf_t *b, char c)
{
    if (sc_buf_reserve(b, 1) != SC_OK)
        return;
    b->data[b->len++] = c;
}

void sc_buf_puts(sc_buf_t *b, const char *s)
{
    sc_buf_put(b, s, strlen(s));
}

void sc_buf_put_u64(sc_buf_t *b, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    sc_buf_put(b, tmp + i, sizeof(tmp) - i);
}

void sc_buf_put_i64(sc_buf_t *b, int64_t v)
{
    if (v < 0) {
        sc_buf_putc(b, '-');
        /* Negate in unsigned arithmetic: INT64_MIN has no positive twin. */
        sc_buf_put_u64(b, (uint64_t)0 - (uint64_t)v);
        return;
    }
    sc_buf_put_u64(b, (uint64_t)v);
}

/* Writes the escape for one byte that cannot appear raw in a JSON string. */
static void put_escape(sc_buf_t *b, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

    switch (c) {
    case '"':
        sc_buf_put(b, "\\\"", 2);
        return;
    case '\\':
        sc_buf_put(b, "\\\\", 2);
        return;
    case '\b':
        sc_buf_put(b, "\\b", 2);
        return;
    case '\f':
        sc_buf_put(b, "\\f", 2);
        return;
    case '\n':
        sc_buf_put(b, "\\n", 2);
        return;
    case '\r':
        sc_buf_put(b, "\\r", 2);
        return;
    case '\t':
        sc_buf_put(b, "\\t", 2);
        return;
    default:
        sc_buf_put(b, e, sizeof(e));
        return;
    }
}

void sc_buf_put_json_str(sc_buf_t *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;

    /* The common case (nothing to escape) then needs no further growth. */
    if (sc_buf_reserve(b, n + 2) != SC_OK)
        return;
    b->data[b->len++] = '"';
    while (i < n) {
        unsigned char c = u[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        size_t k;
        if (c >= 0x80 && (k = sc_utf8_seq(u + i, n - i)) != 0) {
            i += k;
            continue;
        }
        sc_buf_put(b, u + run, i - run);
        if (c >= 0x80)
            sc_buf_put(b, "\\ufffd", 6);
        else
            put_escape(b, c);
        run = ++i;
    }
    sc_buf_put(b, u + run, n - run);
    sc_buf_putc(b, '"');
}

void sc_buf_put_json_cstr(sc_buf_t *b, const char *s)
{
    if (s == NULL)
        sc_buf_put(b, "null", 4);
    else
        sc_buf_put_json_str(b, s, strlen(s));
}

void sc_buf_put_json_bool(sc_buf_t *b, bool v)
{
    if (v)
        sc_buf_put(b, "true", 4);
    else
        sc_buf_put(b, "false", 5);
}

void sc_buf_put_json_time(sc_buf_t *b, double seconds)
{
    /* Integer milliseconds: locale-independent and exact to print. */
    double ms = seconds * 1000.0;
    bool neg = ms < 0;

    if (!isfinite(ms) || ms > 9.0e15 || ms < -9.0e15) {
        sc_buf_put(b, "0.000", 5);
        return;
    }
    uint64_t v = (uint64_t)((neg ? -ms : ms) + 0.5);
    if (neg && v != 0)
        sc_buf_putc(b, '-');
    uint64_t frac = v % 1000;
    sc_buf_put_u64(b, v / 1000);
    char tmp[4];
    tmp[0] = '.';
    tmp[1] = (char)('0' + frac / 100);
    tmp[2] = (char)('0' + frac / 10 % 10);
    tmp[3] = (char)('0' + frac % 10);
    sc_buf_put(b, tmp, sizeof(tmp));
}
