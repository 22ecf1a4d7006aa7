/* Protocol adapters.
 *  scopecast: {"op":"subscribe","presence":false} on /ws (no peer has
 *             presence, so none is asked for); events
 * {"op":"event",...,"data":P} raw:       GET /sub/<scope> upgrades; every text
 * message is a payload P (Node ws and uWebSockets.js peers; publisher sends
 *             "<scope>\n<P>" over a WebSocket to the pub path)
 *  nchan:     same subscriber side as raw (nchan websocket subscriber)
 *  mqtt:      MQTT 3.1.1 over WebSocket (subprotocol "mqtt"), QoS 0
 * The payload P is the JSON object {"t":<ns>,"g":<n>,"s":<seq>,"p":"xx.."}
 * of exactly --size bytes: t is the publish time (CLOCK_REALTIME ns), g the
 * global event number and s the event's sequence in its scope (always
 * g / scopes, so the receiver parses only t and g). */
#include "lg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void conn_ready(conn_t *c);

void scope_name(char *out, int scope)
{
    snprintf(out, 24, "s%d", scope);
}

int make_payload(uint8_t *out, int size, uint64_t t, uint64_t s, uint64_t g)
{
    int h = snprintf(
        (char *)out, 96, "{\"t\":%llu,\"g\":%llu,\"s\":%llu,\"p\":\"",
        (unsigned long long)t, (unsigned long long)g, (unsigned long long)s);
    int pad = size - h - 2;
    if (pad > 0) {
        memset(out + h, 'x', (size_t)pad);
        h += pad;
    }
    out[h++] = '"';
    out[h++] = '}';
    return h;
}

int proto_is_stream(void)
{
    return cfg.proto == P_MQTT;
}

const char *proto_subprotocol(void)
{
    switch (cfg.proto) {
    case P_SCOPECAST:
        return "scopecast.v1";
    case P_MQTT:
        return "mqtt";
    default:
        return NULL;
    }
}

static inline const uint8_t *num(const uint8_t *p, const uint8_t *e,
                                 uint64_t *v)
{
    uint64_t x = 0;
    const uint8_t *s = p;
    while (p < e && *p >= '0' && *p <= '9')
        x = x * 10 + (uint64_t)(*p++ - '0');
    *v = x;
    return p == s ? NULL : p;
}

/* eight ASCII digits to their value (SWAR) */
static inline uint64_t digits8(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    v -= 0x3030303030303030ull;
    v = (v * 10) + (v >> 8);
    v = (((v & 0x000000FF000000FFull) * 0x000F424000000064ull) +
         (((v >> 16) & 0x000000FF000000FFull) * 0x0000271000000001ull)) >>
        32;
    return v;
}

static inline int all_digits8(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    /* every byte in '0'..'9' */
    return ((v & 0xF0F0F0F0F0F0F0F0ull) == 0x3030303030303030ull) &&
           (((v + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) ==
            0x3030303030303030ull);
}

/* parses {"t":T,"g":G at m; s is derived (g / scopes) */
static int parse_payload(const uint8_t *m, size_t n, uint64_t *t, uint64_t *s,
                         uint64_t *g)
{
    const uint8_t *e = m + n, *p;
    if (n < 32 || memcmp(m, "{\"t\":", 5) != 0)
        return -1;
    /* nanosecond timestamps have 19 digits (until 2286) */
    if (m[24] == ',' && all_digits8(m + 5) && all_digits8(m + 13)) {
        *t = digits8(m + 5) * 100000000000ull + digits8(m + 13) * 1000 +
             (uint64_t)(m[21] - '0') * 100 + (uint64_t)(m[22] - '0') * 10 +
             (uint64_t)(m[23] - '0');
        p = m + 24;
    } else {
        p = num(m + 5, e, t);
    }
    if (!p || e - p < 5 || memcmp(p, ",\"g\":", 5) != 0)
        return -1;
    p = num(p + 5, e, g);
    if (!p)
        return -1;
    *s = *g / (uint64_t)cfg.nscopes;
    return 0;
}

static void ws_send(conn_t *c, int op, const void *p, size_t n)
{
    uint8_t buf[600];
    if (n + 14 > sizeof buf)
        return;
    size_t l = ws_frame(buf, op, p, n);
    send_all(c->fd, buf, l);
}

void proto_on_open(conn_t *c)
{
    char sc[24], buf[300];
    scope_name(sc, c->scope);
    switch (cfg.proto) {
    case P_SCOPECAST: {
        int n = snprintf(buf, sizeof buf,
                         "{\"op\":\"subscribe\",\"scope\":\"%s\",\"id\":1,"
                         "\"presence\":false}",
                         sc);
        ws_send(c, 1, buf, (size_t)n);
        break;
    }
    case P_MQTT: {
        char id[48];
        snprintf(id, sizeof id, "lg%d-%d-%d", (int)G->gid, c->idx, c->kind);
        uint8_t pkt[80];
        int n = mqtt_connect_pkt(pkt, id);
        ws_send(c, 2, pkt, (size_t)n);
        break;
    }
    default:
        conn_ready(c);
    }
}

static void note_error(conn_t *c, const uint8_t *m, size_t n)
{
    G->st.errors++;
    if (G->st.errors <= 3)
        lg_log("conn %d: server said: %.*s", c->idx, (int)(n > 200 ? 200 : n),
               m);
}

void proto_message(conn_t *c, int op, const uint8_t *m, size_t n, uint64_t len)
{
    uint64_t t, s, g;
    if (c->kind == K_PUB)
        return;
    if (cfg.proto != P_SCOPECAST) {
        if (parse_payload(m, n, &t, &s, &g) == 0)
            record_event(c, t, s, g, len);
        return;
    }
    if (n > 13 && memcmp(m, "{\"op\":\"event\"", 13) == 0) {
        /* data is the event's last member: {"op":"event",...,"data":P} */
        if (len == n && n > (size_t)cfg.size + 8) {
            const uint8_t *d = m + n - 1 - cfg.size;
            if (memcmp(d - 7, "\"data\":", 7) == 0 &&
                parse_payload(d, (size_t)cfg.size, &t, &s, &g) == 0) {
                record_event(c, t, s, g, len);
                return;
            }
        }
        const uint8_t *d = memmem(m + 13, n - 13, "\"data\":", 7);
        if (d && parse_payload(d + 7, n - (size_t)(d + 7 - m), &t, &s, &g) == 0)
            record_event(c, t, s, g, len);
        return;
    }
    if (memmem(m, n, "\"op\":\"dropped\"", 14)) {
        const uint8_t *k = memmem(m, n, "\"count\":", 8);
        uint64_t cnt = 0;
        if (k)
            num(k + 8, m + n, &cnt);
        /* drops notified outside the measured interval (e.g. presence joins
         * dropped while everyone subscribed) are reported apart */
        if (G->measuring) {
            G->st.drops += cnt;
            G->st.drop_notices++;
        } else {
            G->st.drops_setup += cnt;
        }
        return;
    }
    if (memmem(m, n, "\"op\":\"subscribed\"", 17)) {
        conn_ready(c);
        return;
    }
    if (memmem(m, n, "\"op\":\"error\"", 12))
        note_error(c, m, n);
}

/* ---- MQTT 3.1.1 -------------------------------------------------------- */
static int put_varint(uint8_t *o, uint32_t v)
{
    int i = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        o[i++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return i;
}

int mqtt_connect_pkt(uint8_t *out, const char *client_id)
{
    size_t idl = strlen(client_id);
    uint32_t rem = 10 + 2 + (uint32_t)idl;
    int h = 0;
    out[h++] = 0x10;
    h += put_varint(out + h, rem);
    static const uint8_t vh[10] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0};
    memcpy(out + h, vh, 10); /* level 4, clean session, keepalive 0 */
    h += 10;
    out[h++] = (uint8_t)(idl >> 8);
    out[h++] = (uint8_t)idl;
    memcpy(out + h, client_id, idl);
    return h + (int)idl;
}

int mqtt_subscribe_pkt(uint8_t *out, const char *topic, uint16_t pid)
{
    size_t tl = strlen(topic);
    int h = 0;
    out[h++] = 0x82;
    h += put_varint(out + h, (uint32_t)(2 + 2 + tl + 1));
    out[h++] = (uint8_t)(pid >> 8);
    out[h++] = (uint8_t)pid;
    out[h++] = (uint8_t)(tl >> 8);
    out[h++] = (uint8_t)tl;
    memcpy(out + h, topic, tl);
    h += (int)tl;
    out[h++] = 0; /* QoS 0 */
    return h;
}

size_t mqtt_publish_hdr(uint8_t *out, const char *topic, size_t payload_len)
{
    size_t tl = strlen(topic);
    size_t h = 0;
    out[h++] = 0x30;
    h += (size_t)put_varint(out + h, (uint32_t)(2 + tl + payload_len));
    out[h++] = (uint8_t)(tl >> 8);
    out[h++] = (uint8_t)tl;
    memcpy(out + h, topic, tl);
    return h + tl;
}

static void mqtt_packet(conn_t *c, uint8_t type, const uint8_t *b, size_t n,
                        uint32_t total)
{
    switch (type >> 4) {
    case 2: /* CONNACK */
        if (n >= 2 && b[1] != 0) {
            note_error(c, (const uint8_t *)"CONNACK refused", 15);
            return;
        }
        if (c->kind == K_PUB) {
            c->state = S_READY;
        } else {
            char sc[24];
            uint8_t pkt[64];
            scope_name(sc, c->scope);
            int l = mqtt_subscribe_pkt(pkt, sc, 1);
            ws_send(c, 2, pkt, (size_t)l);
        }
        break;
    case 9: /* SUBACK */
        if (n >= 3 && b[2] == 0x80)
            note_error(c, (const uint8_t *)"SUBACK failure", 14);
        else
            conn_ready(c);
        break;
    case 3: { /* PUBLISH */
        if (n < 2)
            return;
        size_t tl = ((size_t)b[0] << 8) | b[1];
        size_t off = 2 + tl + (((type >> 1) & 3) ? 2 : 0);
        uint64_t t, s, g;
        if (off < n && parse_payload(b + off, n - off, &t, &s, &g) == 0)
            record_event(c, t, s, g, total - off);
        break;
    }
    default:
        break;
    }
}

/* MQTT is a byte stream inside WebSocket binary messages: packets may span
 * or share frames. Parse in place when a packet is whole in the chunk. */
void proto_stream(conn_t *c, const uint8_t *p, size_t n)
{
    if (cfg.proto != P_MQTT)
        return; /* raw publisher: nothing to read */
    while (n > 0) {
        if (c->mq_rem == 0 && c->mq_hlen == 0) {
            /* try a whole packet in place */
            uint32_t len = 0;
            size_t i = 1;
            int shift = 0, ok = 0;
            while (i < n && i <= 4) {
                len |= (uint32_t)(p[i] & 0x7f) << shift;
                shift += 7;
                if (!(p[i++] & 0x80)) {
                    ok = 1;
                    break;
                }
            }
            if (ok && n - i >= len) {
                mqtt_packet(c, p[0], p + i, len, len);
                p += i + len;
                n -= i + len;
                continue;
            }
        }
        if (c->mq_rem == 0) {
            /* collect the fixed header */
            c->mq_hdr[c->mq_hlen++] = *p++;
            n--;
            if (c->mq_hlen >= 2 && !(c->mq_hdr[c->mq_hlen - 1] & 0x80)) {
                uint32_t len = 0;
                for (int i = 1; i < c->mq_hlen; i++)
                    len |= (uint32_t)(c->mq_hdr[i] & 0x7f) << (7 * (i - 1));
                c->mq_len = c->mq_rem = len;
                c->mq_pre_len = 0;
                if (len == 0) {
                    mqtt_packet(c, c->mq_hdr[0], NULL, 0, 0);
                    c->mq_hlen = 0;
                }
            } else if (c->mq_hlen == 5) {
                c->mq_hlen = 0; /* malformed; resync impossible, give up */
                return;
            }
            continue;
        }
        size_t k = n < c->mq_rem ? n : c->mq_rem;
        if (!c->mq_pre)
            c->mq_pre = malloc(PRE_MAX);
        size_t room = PRE_MAX - c->mq_pre_len;
        size_t cp = k < room ? k : room;
        memcpy(c->mq_pre + c->mq_pre_len, p, cp);
        c->mq_pre_len = (uint16_t)(c->mq_pre_len + cp);
        c->mq_rem -= (uint32_t)k;
        p += k;
        n -= k;
        if (c->mq_rem == 0) {
            mqtt_packet(c, c->mq_hdr[0], c->mq_pre, c->mq_pre_len, c->mq_len);
            c->mq_hlen = 0;
        }
    }
}
