/*
 * The WebSocket upgrade request head (see upgrade_head.h).
 *
 * Moved from the server's transport unchanged in behaviour: the same
 * checks in the same order, the same refusals, the same answers byte for
 * byte (tests/protocol/test_upgrade_head.c pins them, and the integration
 * tests' upgrade refusal cases run them through the server). Only the
 * bounds are explicit now, so any bytes can be given (protocol/
 * fuzz_upgrade.c).
 */
#include "upgrade_head.h"
#include "http_req.h"
#include "jsonw.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 6455 section 1.3: appended to the key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#define KEY_LEN 24

const sc_http_refusal_t sc_upgrade_refusal_too_large = {
    431, "Request Header Fields Too Large", "bad_request",
    "request head too large", NULL};

static const sc_http_refusal_t refuse_malformed = {
    400, "Bad Request", "bad_request", "malformed request", NULL};
static const sc_http_refusal_t refuse_not_found = {
    404, "Not Found", "not_found", "WebSocket endpoint is /ws", NULL};
static const sc_http_refusal_t refuse_version = {
    426, "Upgrade Required", "bad_request", "WebSocket version 13 required",
    "sec-websocket-version: 13\r\n"};
static const sc_http_refusal_t refuse_not_upgrade = {
    400, "Bad Request", "bad_request", "not a valid WebSocket upgrade", NULL};
static const sc_http_refusal_t refuse_subprotocol = {
    400, "Bad Request", "bad_request", "subprotocol scopecast.v1 required",
    NULL};

/* The value of the `nth` (from 0) header `name` (with its colon, lower
 * case) in a request head, trimmed of spaces and tabs; NULL when there are
 * not that many. Only lines after the first are looked at. */
static const char *header_nth(const char *h, size_t hl, const char *name,
                              size_t *vlen, unsigned nth)
{
    size_t nl = strlen(name);
    const char *end = h + hl;

    for (const char *line = memchr(h, '\n', hl); line && line + 1 < end;
         line = memchr(line + 1, '\n', (size_t)(end - line - 1))) {
        const char *s = line + 1;
        if ((size_t)(end - s) > nl && strncasecmp(s, name, nl) == 0 &&
            nth-- == 0) {
            const char *v = s + nl;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            const char *e = v;
            while (e < end && *e != '\r' && *e != '\n')
                e++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *vlen = (size_t)(e - v);
            return v;
        }
    }
    return NULL;
}

/* The first header `name`: see header_nth. */
static const char *header(const char *h, size_t hl, const char *name,
                          size_t *vlen)
{
    return header_nth(h, hl, name, vlen, 0);
}

/* Whether a comma-separated header value lists `token` (any case). */
static bool has_token(const char *v, size_t vl, const char *token)
{
    size_t tl = strlen(token);
    const char *end = v + vl;

    while (v < end) {
        while (v < end && (*v == ' ' || *v == ','))
            v++;
        const char *e = v;
        while (e < end && *e != ',')
            e++;
        const char *t = e;
        while (t > v && t[-1] == ' ')
            t--;
        if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
            return true;
        v = e;
    }
    return false;
}

/* The end of the first CRLFCRLF in b[0..n) (the byte after it), or NULL. */
static const char *head_end(const char *b, size_t n)
{
    const char *p = b, *end = b + n;

    while ((size_t)(end - p) >= 4 &&
           (p = memchr(p, '\r', (size_t)(end - p) - 3)) != NULL) {
        if (memcmp(p, "\r\n\r\n", 4) == 0)
            return p + 4;
        p++;
    }
    return NULL;
}

enum sc_head_kind sc_upgrade_classify(const char *b, size_t n, size_t max,
                                      size_t *head_len)
{
    size_t k = n < 4 ? n : 4;

    if (k > 0 && memcmp(b, "GET ", k) != 0)
        return SC_HEAD_OTHER; /* HTTP API (or garbage) */
    const char *end = n > 0 ? head_end(b, n) : NULL;
    if (end == NULL)
        return n >= max ? SC_HEAD_TOO_LARGE : SC_HEAD_INCOMPLETE;
    size_t hl = (size_t)(end - b);
    size_t ul = 0;
    const char *up = header(b, hl, "upgrade:", &ul);
    if (up == NULL || !has_token(up, ul, "websocket"))
        return SC_HEAD_OTHER; /* plain HTTP */
    *head_len = hl;
    return SC_HEAD_UPGRADE;
}

/* The head must be one well-formed HTTP/1.1 request without a body, read
 * by the same reader as the API's keep-alive connections (http_req.h): a
 * header line without a colon, obs-fold, NUL, a bad version or length are
 * refused there. */
static bool head_is_http(const char *h, size_t hl, sc_http_refusal_t *refusal)
{
    static const sc_http_refusal_t no_memory = {
        503, "Service Unavailable", "unavailable", "out of memory", NULL};
    sc_http_reader_t rd;
    if (sc_http_reader_init(&rd, 0) != SC_OK) {
        *refusal = no_memory;
        return false;
    }
    size_t used = 0;
    enum sc_http_event ev = sc_http_reader_feed(&rd, h, hl, &used);
    bool ok = ev == SC_HTTP_REQUEST && used == hl && rd.req.http10 == false;
    if (!ok) {
        *refusal = refuse_malformed;
        if (ev == SC_HTTP_ERROR && rd.err.status == 413) {
            /* the reader's body limit is 0: the head announced a body */
            refusal->message = "a WebSocket upgrade request has no body";
        } else if (ev == SC_HTTP_ERROR) {
            refusal->status = rd.err.status;
            refusal->reason_phrase = sc_http_reason(rd.err.status);
            refusal->message = rd.err.message;
        }
    }
    sc_http_reader_deinit(&rd);
    return ok;
}

/* RFC 6455 section 4.1: the key is the base64 of 16 bytes: 22 characters
 * of the alphabet (the last one with its low 4 bits zero) and "==". */
static bool key_ok(const char *k, size_t kl)
{
    if (kl != KEY_LEN || k[22] != '=' || k[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        char c = k[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return false;
    }
    return strchr("AQgw", k[21]) != NULL;
}

int sc_upgrade_parse(const char *h, size_t hl, sc_upgrade_req_t *req,
                     sc_http_refusal_t *refusal)
{
    memset(req, 0, sizeof(*req));
    if (h == NULL || hl == 0) {
        *refusal = refuse_malformed;
        return SC_EINVAL;
    }
    const char *sp1 = memchr(h, ' ', hl);
    const char *eol = memchr(h, '\r', hl);
    const char *sp2 =
        sp1 ? memchr(sp1 + 1, ' ', (size_t)(h + hl - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || !eol || sp2 > eol || (size_t)(h + hl - (sp2 + 1)) < 8 ||
        memcmp(sp2 + 1, "HTTP/1.1", 8)) {
        *refusal = refuse_malformed;
        return SC_EINVAL;
    }
    if (!head_is_http(h, hl, refusal))
        return SC_EINVAL;
    /* origin-form "/ws?q", or absolute-form "ws://host/ws?q" (RFC 7230
     * section 5.3.2: a server must accept it) */
    const char *path, *query;
    size_t pl, ql;
    if (!sc_http_target_split(sp1 + 1, (size_t)(sp2 - (sp1 + 1)), &path, &pl,
                              &query, &ql)) {
        *refusal = refuse_malformed;
        return SC_EINVAL;
    }
    if (pl != 3 || memcmp(path, "/ws", 3) != 0) {
        *refusal = refuse_not_found;
        return SC_EINVAL;
    }
    size_t vl = 0, kl = 0, cl = 0, pvl = 0, hostl = 0;
    const char *ver = header(h, hl, "sec-websocket-version:", &vl);
    const char *key = header(h, hl, "sec-websocket-key:", &kl);
    const char *conn = header(h, hl, "connection:", &cl);
    if (!ver || vl != 2 || memcmp(ver, "13", 2) != 0) {
        *refusal = refuse_version;
        return SC_EINVAL;
    }
    if (!key || !key_ok(key, kl) ||
        header_nth(h, hl, "sec-websocket-key:", &kl, 1) || !conn ||
        !has_token(conn, cl, "upgrade")) {
        *refusal = refuse_not_upgrade;
        return SC_EINVAL;
    }
    if (!header(h, hl, "host:", &hostl) ||
        header_nth(h, hl, "host:", &hostl, 1)) {
        static const sc_http_refusal_t refuse_host = {
            400, "Bad Request", "bad_request",
            "one Host header required (RFC 7230 section 5.4)", NULL};
        *refusal = refuse_host;
        return SC_EINVAL;
    }
    /* Sec-WebSocket-Protocol may come in several headers: one list */
    bool any_proto = false, with_proto = false;
    const char *proto;
    for (unsigned i = 0;
         (proto = header_nth(h, hl, "sec-websocket-protocol:", &pvl, i)); i++) {
        any_proto = true;
        with_proto = with_proto || has_token(proto, pvl, "scopecast.v1");
    }
    if (any_proto && !with_proto) {
        *refusal = refuse_subprotocol;
        return SC_EINVAL;
    }
    req->query = query;
    req->query_len = ql;
    req->key = key;
    req->with_protocol = with_proto;
    req->origin = header(h, hl, "origin:", &req->origin_len);
    req->host = header(h, hl, "host:", &req->host_len);
    req->cookie = header(h, hl, "cookie:", &req->cookie_len);
    return SC_OK;
}

char *sc_upgrade_query_param_token(const char *q, size_t ql, size_t max_len)
{
    if (q == NULL)
        return NULL;
    const char *end = q + ql;
    while (q < end) {
        const char *e = memchr(q, '&', (size_t)(end - q));
        if (!e)
            e = end;
        if ((size_t)(e - q) > 6 && memcmp(q, "token=", 6) == 0) {
            const char *v = q + 6;
            size_t vl = (size_t)(e - v);
            if (vl > max_len)
                vl = max_len;
            char *t = malloc(vl + 1);
            if (!t)
                return NULL;
            char *o = t;
            for (size_t i = 0; i < vl; i++) {
                int h1, h2;
                /* %00 stays as it is: a NUL cannot be part of a token,
                 * and decoding it would cut the token short */
                if (v[i] == '%' && i + 2 < vl &&
                    (h1 = sc_http_hexval(v[i + 1])) >= 0 &&
                    (h2 = sc_http_hexval(v[i + 2])) >= 0 && (h1 | h2) != 0) {
                    *o++ = (char)(h1 << 4 | h2);
                    i += 2;
                } else {
                    *o++ = v[i];
                }
            }
            *o = '\0';
            return t;
        }
        q = e + 1;
    }
    return NULL;
}

size_t sc_upgrade_accept(const sc_upgrade_req_t *req, char *out, size_t cap)
{
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    if (req->key == NULL)
        return 0;
    char kg[KEY_LEN + sizeof(ws_guid)];
    memcpy(kg, req->key, KEY_LEN);
    memcpy(kg + KEY_LEN, ws_guid, sizeof(ws_guid) - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdl = 0;
    if (!EVP_Digest(kg, KEY_LEN + sizeof(ws_guid) - 1, md, &mdl, EVP_sha1(),
                    NULL))
        return 0;
    char acc[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    EVP_EncodeBlock((unsigned char *)acc, md, (int)mdl);
    int n = snprintf(
        out, cap,
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
        "connection: Upgrade\r\nsec-websocket-accept: %s\r\n%s\r\n",
        acc,
        req->with_protocol ? "sec-websocket-protocol: scopecast.v1\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

size_t sc_http_refusal_write(const sc_http_refusal_t *r, char *out, size_t cap)
{
    /* the body with the JSON writer: the same bytes as "{\"error\":\"%s\",
     * \"message\":\"%s\"}" for plain ASCII, and escaped otherwise */
    sc_buf_t body;
    sc_buf_init(&body);
    sc_buf_put(&body, "{\"error\":", 9);
    sc_buf_put_json_cstr(&body, r->code);
    sc_buf_put(&body, ",\"message\":", 11);
    sc_buf_put_json_cstr(&body, r->message);
    sc_buf_putc(&body, '}');
    const char *text = sc_buf_str(&body);
    if (text == NULL) {
        sc_buf_deinit(&body);
        return 0;
    }
    int n = snprintf(out, cap,
                     "HTTP/1.1 %u %s\r\ncontent-type: application/json\r\n"
                     "content-length: %zu\r\n%sconnection: close\r\n\r\n%s",
                     r->status, r->reason_phrase ? r->reason_phrase : "",
                     sc_buf_len(&body),
                     r->extra_headers ? r->extra_headers : "", text);
    sc_buf_deinit(&body);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}
