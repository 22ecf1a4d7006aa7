/* HTTP/1.1 requests off a byte stream, on http_parser (see http_req.h). */
#include "http_req.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* head buffer: the kept parts of one head, NULs included */
#define HEAD_CAP (SC_HTTP_HEAD_MAX + 64)

/* The parser state behind a reader. */
struct sc_http_state {
    http_parser p;
    sc_http_reader_t *rd; /* the public half */
    size_t body_max;
    char *head;       /* target and kept header values, NUL-separated */
    size_t head_len;  /* bytes used in head (capacity HEAD_CAP) */
    size_t head_seen; /* head bytes read, for the 431 limit */
    size_t target_len;
    bool target_done; /* NUL-terminated in head */
    char field[32];   /* the header name being read (longer: not kept) */
    size_t field_len;
    int cur_hdr;   /* the kept header the value belongs to, or -1 */
    bool in_value; /* the last callback was a value */
    size_t value_off;
    char *body; /* grows up to body_max */
    size_t body_len, body_cap;
    bool skip_body;
    bool in_head;               /* reading a head (not a body) */
    bool line_start;            /* the previous head byte was LF */
    enum sc_http_event pending; /* the event a callback stopped on */
};

static const char *const hdr_names[SC_HDR_COUNT] = {
    [SC_HDR_HOST] = "host",
    [SC_HDR_AUTHORIZATION] = "authorization",
    [SC_HDR_CONTENT_TYPE] = "content-type",
    [SC_HDR_EXPECT] = "expect",
    [SC_HDR_X_FORWARDED_FOR] = "x-forwarded-for",
    [SC_HDR_X_REAL_IP] = "x-real-ip",
    [SC_HDR_FORWARDED] = "forwarded",
};

static struct sc_http_state *reader_of(http_parser *p)
{
    return (struct sc_http_state *)p->data;
}

/* Stops the stream with `status` and `message` (static). Returns what a
 * callback returns to make http_parser stop with an error. */
static int fail(struct sc_http_state *rd, unsigned status, const char *message)
{
    if (!rd->rd->err.status)
        rd->rd->err = (sc_http_error_t){status, message};
    rd->pending = SC_HTTP_ERROR;
    return -1;
}

/* Appends to the head buffer; false when the head is over its limit. */
static bool head_put(struct sc_http_state *rd, const char *at, size_t len)
{
    if (len > HEAD_CAP - 1 - rd->head_len)
        return false;
    memcpy(rd->head + rd->head_len, at, len);
    rd->head_len += len;
    return true;
}

static int on_message_begin(http_parser *p)
{
    struct sc_http_state *rd = reader_of(p);
    memset(&rd->rd->req, 0, sizeof rd->rd->req);
    rd->head_len = 0;
    rd->target_len = 0;
    rd->target_done = false;
    rd->field_len = 0;
    rd->cur_hdr = -1;
    rd->in_value = false;
    rd->body_len = 0;
    rd->skip_body = false;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct sc_http_state *rd = reader_of(p);
    if (!head_put(rd, at, len))
        return fail(rd, 431, "request head too large");
    rd->target_len += len;
    return 0;
}

/* The header whose value was being read is complete. */
static bool end_value(struct sc_http_state *rd)
{
    if (rd->in_value && rd->cur_hdr >= 0) {
        sc_http_value_t *v = &rd->rd->req.hdr[rd->cur_hdr];
        v->len = rd->head_len - rd->value_off;
        if (!head_put(rd, "", 1))
            return false;
    }
    rd->in_value = false;
    rd->cur_hdr = -1;
    return true;
}

/* The target is complete once headers begin: NUL-terminate it. */
static bool end_target(struct sc_http_state *rd)
{
    if (rd->target_done)
        return true;
    rd->target_done = true;
    return head_put(rd, "", 1);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct sc_http_state *rd = reader_of(p);
    if (!rd->in_head)
        return 0; /* a chunked body's trailer: not kept, never trusted */
    if (!end_target(rd))
        return fail(rd, 431, "request head too large");
    if (rd->in_value) {
        if (!end_value(rd))
            return fail(rd, 431, "request head too large");
        rd->field_len = 0;
    }
    if (rd->field_len <= sizeof rd->field &&
        len <= sizeof rd->field - rd->field_len)
        memcpy(rd->field + rd->field_len, at, len);
    rd->field_len += len; /* past sizeof field: a name not kept */
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct sc_http_state *rd = reader_of(p);
    if (!rd->in_head)
        return 0;
    if (!rd->in_value) {
        rd->in_value = true;
        rd->cur_hdr = -1;
        for (int i = 0; i < SC_HDR_COUNT; i++)
            if (rd->field_len == strlen(hdr_names[i]) &&
                strncasecmp(rd->field, hdr_names[i], rd->field_len) == 0) {
                /* a repeated header: counted, its first value kept */
                if (rd->rd->req.hdr[i].count++ == 0) {
                    rd->cur_hdr = i;
                    rd->value_off = rd->head_len;
                    rd->rd->req.hdr[i].at = rd->head + rd->head_len;
                }
                break;
            }
    }
    if (rd->cur_hdr >= 0 && !head_put(rd, at, len))
        return fail(rd, 431, "request head too large");
    return 0;
}

bool sc_http_target_split(const char *t, size_t n, const char **path,
                          size_t *path_len, const char **query,
                          size_t *query_len)
{
    const char *p = t, *end = t + n;
    if (n == 0)
        return false;
    if (*t != '/') {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(t, n, 0, &u) != 0 ||
            !(u.field_set & (1 << UF_PATH)))
            return false;
        p = t + u.field_data[UF_PATH].off;
        end = p + u.field_data[UF_PATH].len;
        if (u.field_set & (1 << UF_QUERY))
            end = t + u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len;
    }
    const char *q = memchr(p, '?', (size_t)(end - p));
    const char *hash = memchr(p, '#', (size_t)(end - p));
    if (hash && (!q || hash < q))
        q = NULL; /* a fragment is not sent, but cut it if it is */
    if (hash)
        end = hash;
    *path = p;
    *path_len = (size_t)((q ? q : end) - p);
    *query = q ? q + 1 : NULL;
    *query_len = q ? (size_t)(end - (q + 1)) : 0;
    return true;
}

/* Splits the target into path and query, NUL-terminating both in place
 * (the target is followed by its NUL in head). */
static bool split_target(struct sc_http_state *rd)
{
    sc_http_request_t *r = &rd->rd->req;
    const char *path, *query;
    size_t pl, ql;
    if (!sc_http_target_split(rd->head, rd->target_len, &path, &pl, &query,
                              &ql))
        return false;
    char *base = rd->head;
    base[(path - base) + pl] = '\0'; /* the '?', '#' or the end */
    r->path = path;
    r->path_len = pl;
    if (query) {
        base[(query - base) + ql] = '\0';
        r->query = query;
        r->query_len = ql;
    }
    return true;
}

static int on_headers_complete(http_parser *p)
{
    struct sc_http_state *rd = reader_of(p);
    if (!end_target(rd) || !end_value(rd))
        return fail(rd, 431, "request head too large");
    rd->in_head = false;
    if (p->http_major != 1)
        return fail(rd, 505, "HTTP/1.x required");
    switch (p->method) {
    case HTTP_GET:
        rd->rd->req.method = SC_HTTP_GET;
        break;
    case HTTP_HEAD:
        rd->rd->req.method = SC_HTTP_HEAD_METHOD;
        break;
    case HTTP_POST:
        rd->rd->req.method = SC_HTTP_POST;
        break;
    default:
        rd->rd->req.method = SC_HTTP_OTHER;
    }
    if (!split_target(rd))
        return fail(rd, 400, "malformed request: bad target");
    rd->rd->req.keep_alive = http_should_keep_alive(p) && !p->upgrade;
    rd->rd->req.http10 = p->http_minor == 0;
    rd->rd->req.upgrade = p->upgrade;
    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_len = (p->flags & F_CONTENTLENGTH) != 0;
    rd->rd->req.has_body = chunked || (has_len && p->content_length > 0);
    if (has_len && p->content_length > rd->body_max)
        return fail(rd, 413, "request body larger than the limit");
    if (rd->rd->req.has_body) {
        rd->pending = SC_HTTP_HEAD;
        http_parser_pause(p, 1);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct sc_http_state *rd = reader_of(p);
    if (rd->skip_body)
        return 0;
    if (len > rd->body_max - rd->body_len)
        return fail(rd, 413, "request body larger than the limit");
    if (rd->body_len + len + 1 > rd->body_cap) {
        size_t cap = rd->body_cap ? rd->body_cap : 1024;
        while (cap < rd->body_len + len + 1)
            cap *= 2;
        char *b = realloc(rd->body, cap);
        if (!b)
            return fail(rd, 413, "request body larger than the memory left");
        rd->body = b;
        rd->body_cap = cap;
    }
    memcpy(rd->body + rd->body_len, at, len);
    rd->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct sc_http_state *rd = reader_of(p);
    if (rd->body)
        rd->body[rd->body_len] = '\0';
    rd->rd->req.body = rd->body && !rd->skip_body ? rd->body : "";
    rd->rd->req.body_len = rd->skip_body ? 0 : rd->body_len;
    rd->pending = SC_HTTP_REQUEST;
    rd->in_head = true; /* the next bytes start a new request */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

int sc_http_reader_init(sc_http_reader_t *rd, size_t body_max)
{
    memset(rd, 0, sizeof *rd);
    struct sc_http_state *st = calloc(1, sizeof *st);
    char *head = malloc(HEAD_CAP);
    if (!st || !head) {
        free(st);
        free(head);
        return SC_ENOMEM;
    }
    http_parser_init(&st->p, HTTP_REQUEST);
    st->p.data = st;
    st->rd = rd;
    st->head = head;
    st->body_max = body_max;
    st->cur_hdr = -1;
    st->in_head = true;
    rd->st = st;
    return SC_OK;
}

void sc_http_reader_deinit(sc_http_reader_t *rd)
{
    if (!rd || !rd->st)
        return;
    free(rd->st->head);
    free(rd->st->body);
    free(rd->st);
    rd->st = NULL;
}

void sc_http_reader_skip_body(sc_http_reader_t *rd)
{
    rd->st->skip_body = true;
    rd->st->body_len = 0;
}

/* The head rules http_parser leaves to its user: no obs-fold (a line
 * starting with a space or tab, RFC 7230 section 3.2.4) and no NUL.
 * Returns the offset of the first byte of b[0..n) that breaks one (with
 * its message in *why), or n. */
static size_t head_scan(const struct sc_http_state *st, const char *b, size_t n,
                        const char **why)
{
    bool line_start = st->line_start;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (c == '\0') {
            *why = "malformed request: NUL in the head";
            return i;
        }
        if (line_start && (c == ' ' || c == '\t')) {
            *why = "malformed request: obsolete line folding";
            return i;
        }
        line_start = c == '\n';
    }
    return n;
}

/* An http_parser error as an answer. */
static void map_error(struct sc_http_state *st)
{
    switch (HTTP_PARSER_ERRNO(&st->p)) {
    case HPE_HEADER_OVERFLOW:
        fail(st, 431, "request head too large");
        break;
    case HPE_INVALID_CONTENT_LENGTH:
        fail(st, 400, "malformed request: invalid Content-Length");
        break;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        fail(st, 400,
             "malformed request: Content-Length twice, or with "
             "Transfer-Encoding");
        break;
    case HPE_INVALID_TRANSFER_ENCODING:
        fail(st, 501, "only the chunked transfer coding is supported");
        break;
    case HPE_INVALID_VERSION:
        fail(st, 505, "HTTP/1.x required");
        break;
    case HPE_INVALID_CHUNK_SIZE:
        fail(st, 400, "malformed request: invalid chunk size");
        break;
    case HPE_INVALID_METHOD:
        fail(st, 501, "unknown method");
        break;
    default:
        fail(st, 400, "malformed request");
    }
}

enum sc_http_event sc_http_reader_feed(sc_http_reader_t *rd, const char *in,
                                       size_t len, size_t *used)
{
    struct sc_http_state *st = rd->st;
    *used = 0;
    if (rd->err.status)
        return SC_HTTP_ERROR;
    if (len == 0)
        return SC_HTTP_MORE; /* http_parser takes 0 bytes as end of stream */
    /* In a head, the parser is given no byte past the head limit nor past
     * a byte the head rules refuse, so the same stream gives the same
     * events however it is cut. */
    bool head = st->in_head;
    size_t give = len;
    const char *why = NULL;
    if (head) {
        size_t budget = SC_HTTP_HEAD_MAX - st->head_seen;
        if (give > budget)
            give = budget;
        give = head_scan(st, in, give, &why);
        if (give == 0) {
            fail(st, why ? 400 : 431, why ? why : "request head too large");
            return SC_HTTP_ERROR;
        }
    }
    st->pending = SC_HTTP_MORE;
    http_parser_pause(&st->p, 0);
    size_t n = http_parser_execute(&st->p, &settings, in, give);
    enum http_errno e = HTTP_PARSER_ERRNO(&st->p);
    *used = n;
    if (st->pending == SC_HTTP_ERROR || rd->err.status)
        return SC_HTTP_ERROR;
    if (e != HPE_OK && e != HPE_PAUSED) {
        map_error(st);
        return SC_HTTP_ERROR;
    }
    if (head) {
        st->head_seen += n;
        st->line_start = n > 0 && in[n - 1] == '\n';
        if (st->pending == SC_HTTP_MORE && n == give && give < len) {
            /* the head goes on past what it may be */
            fail(st, why ? 400 : 431, why ? why : "request head too large");
            return SC_HTTP_ERROR;
        }
    }
    if (st->pending != SC_HTTP_MORE) {
        st->head_seen = 0; /* the head is over: count the next one */
        st->line_start = false;
    }
    return st->pending;
}

int sc_http_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long sc_http_query_param(const char *query, size_t len, const char *name,
                         char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = query ? query : "", *end = p + (query ? len : 0);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > nl && memcmp(p, name, nl) == 0 &&
            p[nl] == '=') {
            size_t o = 0;
            for (const char *s = p + nl + 1; s < stop; s++) {
                char c = *s;
                if (c == '+')
                    c = ' ';
                else if (c == '%' && stop - s > 2 &&
                         sc_http_hexval(s[1]) >= 0 &&
                         sc_http_hexval(s[2]) >= 0) {
                    c = (char)(sc_http_hexval(s[1]) * 16 +
                               sc_http_hexval(s[2]));
                    s += 2;
                }
                if (c == '\0' || o + 1 >= cap)
                    return -1;
                out[o++] = c;
            }
            out[o] = '\0';
            return (long)o;
        }
        p = stop + 1;
    }
    return -1;
}

int sc_http_peek_target(const char *b, size_t n, const char **target,
                        size_t *len)
{
    const char *end = b + n;
    const char *sp = memchr(b, ' ', n);
    const char *lf = memchr(b, '\n', n);
    if (!sp)
        return lf ? -1 : 0;
    if (lf && lf < sp)
        return -1;
    const char *t = sp + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (!sp2)
        return lf ? -1 : 0;
    if (lf && lf < sp2)
        return -1;
    *target = t;
    *len = (size_t)(sp2 - t);
    return 1;
}

const char *sc_http_reason(unsigned status)
{
    if (status == 413)
        return "Content Too Large"; /* RFC 9110's name */
    const char *s = http_status_str((enum http_status)status);
    return s && *s ? s : "Unknown";
}

void sc_http_put_answer_head(sc_buf_t *b, unsigned status, const char *ctype,
                             size_t len, bool close, bool say_keep_alive)
{
    sc_buf_puts(b, "HTTP/1.1 ");
    sc_buf_put_u64(b, status);
    sc_buf_putc(b, ' ');
    sc_buf_puts(b, sc_http_reason(status));
    sc_buf_puts(b, "\r\ncontent-type: ");
    sc_buf_puts(b, ctype);
    sc_buf_puts(b, "\r\ncontent-length: ");
    sc_buf_put_u64(b, len);
    sc_buf_puts(b, "\r\ncache-control: no-store\r\n");
    if (close)
        sc_buf_puts(b, "connection: close\r\n");
    else if (say_keep_alive)
        sc_buf_puts(b, "connection: keep-alive\r\n");
    sc_buf_puts(b, "\r\n");
}
