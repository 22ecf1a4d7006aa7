/*
 * scopecast protocol: HTTP/1.1 requests read off a byte stream, for the
 * keep-alive HTTP API connections (docs/PROTOCOL.md "HTTP API").
 *
 * The parsing is Node's http_parser 2.9 (Debian's libhttp-parser): request
 * line, headers, Content-Length and chunked bodies, keep-alive, and its
 * refusals of smuggling shapes (two different Content-Lengths, a
 * Content-Length that is not a number, Content-Length with
 * Transfer-Encoding, a Transfer-Encoding whose last coding is not chunked).
 * What is here is the glue: keeping the parts of a request the server
 * needs, the limits (head size, body size), and the rules http_parser
 * leaves to its user (obs-fold lines, NUL bytes, an absolute-form target).
 *
 * Model: a reader is fed the bytes of one connection in any cuts (one byte
 * at a time works) and stops at each event:
 *
 *   sc_http_reader_feed(rd, in, len, &used)
 *     SC_HTTP_MORE     every byte taken; feed more when it comes
 *     SC_HTTP_HEAD     the head of a request with a body is complete:
 *                      rd->req has method, target and headers; the caller
 *                      may check access now, before any body byte is
 *                      kept, and call sc_http_reader_skip_body() to drop
 *                      the body (a request without a body goes straight
 *                      to SC_HTTP_REQUEST)
 *     SC_HTTP_REQUEST  the request is complete, body included (rd->req);
 *                      answer it, then feed the rest (`in + used`)
 *     SC_HTTP_ERROR    the stream is broken (rd->err: status and message);
 *                      answer and close: nothing after it can be trusted
 *
 * `used` is what the call took; the caller feeds the rest again after
 * handling the event. Requests are reported in the order they came, one at
 * a time, so answers can be written in order (pipelining).
 *
 * Ownership: the reader owns its request buffers; rd->req's pointers stay
 * valid until the next feed or sc_http_reader_deinit.
 * Thread: a reader belongs to one thread; the functions are not
 * thread-safe on one reader, and need no global state (the header limit
 * is enforced here, not with http_parser's global setting).
 */
#ifndef SC_PROTO_HTTP_REQ_H
#define SC_PROTO_HTTP_REQ_H

#include "common.h"
#include "jsonw.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest request head (request line and headers) accepted: 431 past it.
 * The same limit as the WebSocket upgrade head. */
#define SC_HTTP_HEAD_MAX 8192

enum sc_http_event {
    SC_HTTP_MORE,
    SC_HTTP_HEAD,
    SC_HTTP_REQUEST,
    SC_HTTP_ERROR,
};

enum sc_http_method {
    SC_HTTP_OTHER,
    SC_HTTP_GET,
    SC_HTTP_HEAD_METHOD,
    SC_HTTP_POST,
};

/* Headers the server reads; others are parsed and not kept. */
enum sc_http_hdr {
    SC_HDR_HOST,
    SC_HDR_AUTHORIZATION,
    SC_HDR_CONTENT_TYPE,
    SC_HDR_EXPECT,
    SC_HDR_X_FORWARDED_FOR,
    SC_HDR_X_REAL_IP,
    SC_HDR_FORWARDED,
    SC_HDR_COUNT
};

/* A header value: `len` bytes at `at` (NUL-terminated), NULL when the
 * header was absent; `count` is how many times it came (a repeated one is
 * kept as its first value). */
typedef struct sc_http_value {
    const char *at;
    size_t len;
    unsigned count;
} sc_http_value_t;

typedef struct sc_http_request {
    enum sc_http_method method;
    const char *path; /* "/api/emit" (NUL-terminated, not decoded) */
    size_t path_len;
    const char *query; /* after '?' (NUL-terminated), NULL without '?' */
    size_t query_len;
    sc_http_value_t hdr[SC_HDR_COUNT];
    bool keep_alive;  /* the connection stays open after the answer */
    bool http10;      /* an HTTP/1.0 request (keep-alive must be said) */
    bool upgrade;     /* asks for an upgrade (Connection: upgrade) */
    bool has_body;    /* Content-Length > 0 or chunked */
    const char *body; /* NUL-terminated; "" when none or skipped */
    size_t body_len;
} sc_http_request_t;

/* Why a stream was refused: the answer to send before closing. */
typedef struct sc_http_error {
    unsigned status;     /* 400, 413, 431, 501 or 505 */
    const char *message; /* static text for the JSON error body */
} sc_http_error_t;

/* A reader: the last request and error are public; the parser state is
 * private to http_req.c (http_parser.h's names clash with lws's, so no
 * header of ours includes it). */
typedef struct sc_http_reader {
    sc_http_request_t req; /* after SC_HTTP_HEAD / SC_HTTP_REQUEST */
    sc_http_error_t err;   /* after SC_HTTP_ERROR */
    struct sc_http_state *st;
} sc_http_reader_t;

/* Sets up a reader for one connection; `body_max` is the largest body
 * kept (413 past it). Returns SC_OK or SC_ENOMEM. */
int sc_http_reader_init(sc_http_reader_t *rd, size_t body_max);

/* Frees the reader's buffers. NULL-safe; the reader may be initialised
 * again. */
void sc_http_reader_deinit(sc_http_reader_t *rd);

/* Reads from `in` (`len` bytes, borrowed) up to the next event; sets *used
 * to the bytes taken. After SC_HTTP_ERROR every further call returns
 * SC_HTTP_ERROR with *used = 0. */
enum sc_http_event sc_http_reader_feed(sc_http_reader_t *rd, const char *in,
                                       size_t len, size_t *used);

/* After SC_HTTP_HEAD: the body is read and dropped (its bytes are still
 * taken off the stream, so a pipelined next request is found). */
void sc_http_reader_skip_body(sc_http_reader_t *rd);

/* Splits a request target (`t`, `n` bytes): origin-form "/p?q" or
 * absolute-form "http://host/p?q" (RFC 7230 section 5.3.2), a fragment
 * cut off. *path and *query point into t (*query NULL without '?').
 * Returns false for anything else. Thread: any. */
bool sc_http_target_split(const char *t, size_t n, const char **path,
                          size_t *path_len, const char **query,
                          size_t *query_len);

/* The request target of a connection's first request line, from bytes
 * peeked at (`b`, `n` bytes): returns 1 with *target and *len set (pointing
 * into b) once the space after the target came, 0 while more bytes are
 * needed, -1 when the line ends first (not a request line). */
int sc_http_peek_target(const char *b, size_t n, const char **target,
                        size_t *len);

/* The reason phrase of an HTTP status ("Not Found"); "Unknown" for one
 * http_parser does not know. A static string. */
const char *sc_http_reason(unsigned status);

/* Appends an answer's status line and headers to `b`: content-type,
 * content-length, cache-control: no-store, and "connection: close" when
 * `close`, else "connection: keep-alive" when `say_keep_alive` (HTTP/1.0
 * clients need it said), then the blank line. */
void sc_http_put_answer_head(sc_buf_t *b, unsigned status, const char *ctype,
                             size_t len, bool close, bool say_keep_alive);

/* The value of a hex digit, or -1. Thread: any. */
int sc_http_hexval(char c);

/* The value of query parameter `name` in `query` (`len` bytes, '&'-
 * separated, NULL taken as empty), %XX- and '+'-decoded into `out` (`cap`
 * bytes, NUL-terminated). Returns the decoded length, or -1 when absent,
 * when the value would not fit, or when it decodes to a NUL byte. */
long sc_http_query_param(const char *query, size_t len, const char *name,
                         char *out, size_t cap);

#endif
