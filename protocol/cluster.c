/*
 * scopecast protocol: the cluster channel's messages (cluster.h has the
 * layout). Hand-written rather than JSON: a node decodes every event of
 * the cluster, and this is a length check and a pointer per field, no
 * parse of the data and no copy (the data's JSON text goes to the bus as
 * it came).
 */
#include "cluster.h"

#include "codec.h"
#include "jsonw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEX16 SC_PROTO_EPOCH_LEN

/* Node ids and tokens are written as epochs are (codec.h: 16 lowercase
 * hex digits), and read back with the same rule. */
static void put_hex16(sc_buf_t *b, uint64_t v)
{
    char s[SC_PROTO_EPOCH_LEN + 1];
    sc_proto_epoch_text(v, s);
    sc_buf_put(b, s, HEX16);
}

static void put_field(sc_buf_t *b, char tag, const char *p, size_t n)
{
    if (n > SC_CLUSTER_FIELD_MAX) { /* refused whole: see the header */
        b->err = SC_EINVAL;
        return;
    }
    uint8_t h[5] = {(uint8_t)tag, (uint8_t)(n >> 24), (uint8_t)(n >> 16),
                    (uint8_t)(n >> 8), (uint8_t)n};
    sc_buf_put(b, h, sizeof h);
    sc_buf_put(b, p, n);
    sc_buf_putc(b, '\0');
}

static void put_str(sc_buf_t *b, char tag, const char *s)
{
    put_field(b, tag, s, strlen(s));
}

static void put_head(sc_buf_t *b, char kind, uint64_t node, uint64_t token)
{
    sc_buf_putc(b, kind);
    put_hex16(b, node);
    put_hex16(b, token);
}

int sc_cluster_enc_event(sc_buf_t *b, uint64_t node, uint64_t token,
                         const sc_emit_t *e)
{
    put_head(b, SC_CLUSTER_EVENT, node, token);
    put_str(b, 's', e->scope);
    if (e->origin)
        put_str(b, 'o', e->origin);
    for (size_t i = 0; i < e->npaths; i++)
        put_str(b, 'p', e->paths[i]);
    if (e->has_audience) {
        put_field(b, 'A', "", 0);
        for (size_t i = 0; i < e->naudience; i++)
            put_str(b, 'a', e->audience[i]);
    }
    if (e->has_payload)
        put_field(b, 'd', e->payload, e->payload_len);
    return b->err;
}

int sc_cluster_enc_close(sc_buf_t *b, uint64_t node, uint64_t token,
                         const char *scope, const char *user)
{
    put_head(b, SC_CLUSTER_CLOSE, node, token);
    if (scope)
        put_str(b, 's', scope);
    if (user)
        put_str(b, 'u', user);
    return b->err;
}

int sc_cluster_enc_presence(sc_buf_t *b, char kind, uint64_t node, uint64_t gen,
                            const char *scope, const sc_conn_t *conn)
{
    if ((kind != SC_CLUSTER_JOIN && kind != SC_CLUSTER_LEAVE) || !scope ||
        !*scope || !conn || !conn->session_id || !*conn->session_id)
        return SC_EINVAL;
    put_head(b, kind, node, gen);
    put_str(b, 's', scope);
    put_str(b, 'i', conn->session_id);
    if (kind == SC_CLUSTER_JOIN) {
        if (conn->user_id)
            put_str(b, 'u', conn->user_id);
        char at[32];
        int n = snprintf(at, sizeof at, "%.3f", conn->connected_at);
        put_field(b, 't', at, (size_t)n);
        if (conn->meta)
            put_field(b, 'm', conn->meta, conn->meta_len);
    }
    return b->err;
}

int sc_cluster_enc_bare(sc_buf_t *b, char kind, uint64_t node, uint64_t token)
{
    if (kind != SC_CLUSTER_END && kind != SC_CLUSTER_ALIVE &&
        kind != SC_CLUSTER_SYNC)
        return SC_EINVAL;
    put_head(b, kind, node, token);
    return b->err;
}

void sc_cluster_msg_to_conn(const sc_cluster_msg_t *m, sc_conn_t *out)
{
    memset(out, 0, sizeof *out);
    out->session_id = (char *)m->session;
    out->user_id = (char *)m->user;
    out->connected_at = m->at;
    out->meta = (char *)m->meta;
    out->meta_len = m->meta_len;
}

/* connected-at: digits, at most one '.', at most 3 decimals. */
static bool parse_at(const char *s, size_t n, double *out)
{
    size_t i = 0, digits = 0, decimals = 0;
    bool dot = false;
    double v = 0, scale = 1;
    for (; i < n; i++) {
        if (s[i] == '.' && !dot && digits) {
            dot = true;
        } else if (s[i] >= '0' && s[i] <= '9' && digits < 15 &&
                   (!dot || decimals < 3)) {
            if (dot) {
                scale /= 10;
                v += (s[i] - '0') * scale;
                decimals++;
            } else {
                v = v * 10 + (s[i] - '0');
                digits++;
            }
        } else {
            return false;
        }
    }
    if (!digits || (dot && !decimals))
        return false;
    *out = v;
    return true;
}

/* Appends s to a growing array of strings. */
static bool push(const char ***v, size_t *n, const char *s)
{
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4...: grow to the next power */
        const char **nv = realloc(*v, (*n ? *n * 2 : 1) * sizeof *nv);
        if (!nv)
            return false;
        *v = nv;
    }
    (*v)[(*n)++] = s;
    return true;
}

int sc_cluster_decode(const char *msg, size_t len, sc_cluster_msg_t *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    uint64_t seq = 0;
    while (i < len && msg[i] >= '0' && msg[i] <= '9' && i < 20) {
        uint64_t d = (uint64_t)(msg[i] - '0');
        if (seq > (UINT64_MAX - d) / 10)
            return SC_EINVAL;
        seq = seq * 10 + d;
        i++;
    }
    if (i == 0 || i >= len)
        return SC_EINVAL;
    uint64_t epoch = 0; /* "/EPOCH" after a seq: the script's (an event) */
    if (msg[i] == '/') {
        if (seq == 0 || len - i < 1 + HEX16 ||
            !sc_proto_epoch_parse(msg + i + 1, HEX16, &epoch) || epoch == 0)
            return SC_EINVAL;
        i += 1 + HEX16;
    }
    if (i >= len || msg[i] != ' ')
        return SC_EINVAL;
    i++;
    if (len - i < 1 + 2 * HEX16)
        return SC_EINVAL;
    char kind = msg[i++];
    if (!strchr("ECJLNHS", kind) || kind == '\0' ||
        (epoch && kind != SC_CLUSTER_EVENT))
        return SC_EINVAL;
    uint64_t node, token;
    if (!sc_proto_epoch_parse(msg + i, HEX16, &node) ||
        !sc_proto_epoch_parse(msg + i + HEX16, HEX16, &token))
        return SC_EINVAL;
    out->node = node;
    out->token = token;
    i += 2 * HEX16;
    out->kind = kind;
    out->seq = seq;
    out->epoch = epoch;
    int rc = SC_EINVAL;
    bool has_at = false;
    while (i < len) {
        if (len - i < 6)
            goto fail;
        const uint8_t *h = (const uint8_t *)msg + i;
        char tag = (char)h[0];
        size_t n = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 |
                   (size_t)h[4];
        if (n > SC_CLUSTER_FIELD_MAX || len - i - 5 < n + 1 ||
            msg[i + 5 + n] != '\0')
            goto fail;
        const char *s = msg + i + 5;
        if (memchr(s, '\0', n)) /* text holds no NUL */
            goto fail;
        i += 5 + n + 1;
        switch (tag) {
        case 's':
            if (out->scope || n == 0 || !strchr("ECJL", kind))
                goto fail;
            out->scope = s;
            break;
        case 'o':
            if (out->origin || kind != SC_CLUSTER_EVENT)
                goto fail;
            out->origin = s;
            break;
        case 'u':
            if (out->user || n == 0 ||
                (kind != SC_CLUSTER_CLOSE && kind != SC_CLUSTER_JOIN))
                goto fail;
            out->user = s;
            break;
        case 'i':
            if (out->session || n == 0 ||
                (kind != SC_CLUSTER_JOIN && kind != SC_CLUSTER_LEAVE))
                goto fail;
            out->session = s;
            break;
        case 't':
            if (kind != SC_CLUSTER_JOIN || has_at || !parse_at(s, n, &out->at))
                goto fail;
            has_at = true;
            break;
        case 'm':
            if (out->meta || kind != SC_CLUSTER_JOIN)
                goto fail;
            out->meta = s;
            out->meta_len = n;
            break;
        case 'p':
            if (kind != SC_CLUSTER_EVENT)
                goto fail;
            if (!push(&out->paths, &out->npaths, s))
                goto nomem;
            break;
        case 'A':
            if (out->has_audience || n != 0 || kind != SC_CLUSTER_EVENT)
                goto fail;
            out->has_audience = true;
            break;
        case 'a':
            if (!out->has_audience)
                goto fail;
            if (!push(&out->audience, &out->naudience, s))
                goto nomem;
            break;
        case 'd':
            if (out->data || kind != SC_CLUSTER_EVENT)
                goto fail;
            out->data = s;
            out->data_len = n;
            break;
        default:
            goto fail;
        }
    }
    switch (kind) {
    case SC_CLUSTER_EVENT:
        if (!out->scope)
            goto fail;
        break;
    case SC_CLUSTER_JOIN:
        if (!out->scope || !out->session || !has_at)
            goto fail;
        break;
    case SC_CLUSTER_LEAVE:
        if (!out->scope || !out->session)
            goto fail;
        break;
    default: /* N, H, S: no fields (checked by each tag's kind) */
        break;
    }
    return SC_OK;
nomem:
    rc = SC_ENOMEM;
fail:
    sc_cluster_msg_deinit(out);
    return rc;
}

void sc_cluster_msg_deinit(sc_cluster_msg_t *m)
{
    free(m->paths);
    free(m->audience);
    memset(m, 0, sizeof *m);
}

void sc_cluster_msg_to_emit(const sc_cluster_msg_t *m, sc_emit_t *out)
{
    memset(out, 0, sizeof *out);
    out->scope = m->scope;
    out->paths = m->paths;
    out->npaths = m->npaths;
    out->origin = m->origin;
    out->audience = m->audience;
    out->naudience = m->naudience;
    out->has_audience = m->has_audience;
    out->payload = m->data;
    out->payload_len = m->data_len;
    out->has_payload = m->data != NULL;
    out->seq = m->seq;
    out->epoch = m->epoch;
}

static bool parse_uint(const char *s, size_t n, long max, long *out)
{
    long v = 0;
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

int sc_cluster_parse_url(const char *url, char *host, size_t hostlen, int *port,
                         int *db, char *why, size_t whylen)
{
    static const char scheme[] = "redis://";
    *port = 6379;
    *db = 0;
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        snprintf(why, whylen, "must start with redis://");
        return SC_EINVAL;
    }
    const char *h = url + sizeof scheme - 1, *end;
    size_t hn;
    if (*h == '[') { /* [IPv6] */
        end = strchr(h, ']');
        if (!end) {
            snprintf(why, whylen, "an IPv6 host needs its closing ]");
            return SC_EINVAL;
        }
        if (strspn(h + 1, "0123456789abcdefABCDEF:.") !=
            (size_t)(end - h - 1)) {
            snprintf(why, whylen, "an IPv6 host has only hex digits, : and .");
            return SC_EINVAL;
        }
        hn = (size_t)(end - h - 1);
        h++;
        end++;
    } else {
        end = h + strcspn(h, ":/");
        hn = (size_t)(end - h);
    }
    if (hn == 0 || hn >= hostlen) {
        snprintf(why, whylen, "the host must be 1-%zu characters", hostlen - 1);
        return SC_EINVAL;
    }
    for (size_t i = 0; i < hn; i++)
        if ((unsigned char)h[i] <= ' ' || h[i] == '@' || h[i] == '?' ||
            h[i] == '[' || h[i] == ']' || (unsigned char)h[i] >= 0x7f) {
            snprintf(why, whylen, "the host has a character not allowed");
            return SC_EINVAL;
        }
    memcpy(host, h, hn);
    host[hn] = '\0';
    long v;
    if (*end == ':') {
        const char *p = end + 1;
        size_t n = strcspn(p, "/");
        if (!parse_uint(p, n, 65535, &v) || v == 0) {
            snprintf(why, whylen, "the port must be 1-65535");
            return SC_EINVAL;
        }
        *port = (int)v;
        end = p + n;
    }
    if (*end == '/' && end[1]) {
        if (!parse_uint(end + 1, strlen(end + 1), 15, &v)) {
            snprintf(why, whylen, "the database must be 0-15");
            return SC_EINVAL;
        }
        *db = (int)v;
    } else if (*end && strcmp(end, "/") != 0) {
        snprintf(why, whylen, "unexpected text after the host");
        return SC_EINVAL;
    }
    return SC_OK;
}
