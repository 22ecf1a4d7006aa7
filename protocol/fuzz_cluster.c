/*
 * libFuzzer target for the cluster channel's messages (protocol/cluster.c;
 * built with -DSC_FUZZ=ON, clang; run by scripts/fuzz.sh).
 *
 * Input: a message as it comes from Redis. Invariants, checked rather than
 * only "no crash":
 *   - an accepted message has its kind's required fields (an event a
 *     non-empty scope; a close a scope or a user), and every field points
 *     inside the input, NUL-terminated there;
 *   - written back with the encoders (with its seq, and an event's
 *     epoch, prefixed as the broker's script does), it decodes to the
 *     same message, byte for byte the same body.
 * A violated invariant aborts (a finding).
 */
#include "cluster.h"
#include "codec.h"
#include "jsonw.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                               \
    do {                                                                       \
        if (!(x)) {                                                            \
            fprintf(stderr, "invariant failed: %s\n", #x);                     \
            abort();                                                           \
        }                                                                      \
    } while (0)

static void inside(const uint8_t *in, size_t len, const char *s)
{
    if (!s)
        return;
    CHECK((const uint8_t *)s >= in && (const uint8_t *)s < in + len);
    CHECK(memchr(s, '\0', len - (size_t)((const uint8_t *)s - in)));
}

static void same(const char *a, const char *b)
{
    CHECK(!a == !b);
    if (a)
        CHECK(strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sc_cluster_msg_t m;
    if (sc_cluster_decode((const char *)data, size, &m) != SC_OK)
        return 0;
    switch (m.kind) {
    case SC_CLUSTER_EVENT:
        CHECK(m.scope && *m.scope);
        break;
    case SC_CLUSTER_CLOSE: /* neither: every scope */
        break;
    case SC_CLUSTER_JOIN:
    case SC_CLUSTER_LEAVE:
        CHECK(m.scope && *m.scope && m.session && *m.session);
        break;
    default:
        CHECK(!m.scope && !m.user && !m.session && !m.npaths && !m.data);
    }
    inside(data, size, m.scope);
    inside(data, size, m.origin);
    inside(data, size, m.user);
    inside(data, size, m.data);
    inside(data, size, m.session);
    inside(data, size, m.meta);
    for (size_t i = 0; i < m.npaths; i++)
        inside(data, size, m.paths[i]);
    for (size_t i = 0; i < m.naudience; i++)
        inside(data, size, m.audience[i]);

    sc_buf_t b;
    sc_buf_init(&b);
    sc_buf_put_u64(&b, m.seq);
    if (m.epoch) { /* as the broker's script writes it */
        char ep[SC_PROTO_EPOCH_LEN + 1];
        sc_proto_epoch_text(m.epoch, ep);
        sc_buf_putc(&b, '/');
        sc_buf_put(&b, ep, SC_PROTO_EPOCH_LEN);
    }
    sc_buf_putc(&b, ' ');
    if (m.kind == SC_CLUSTER_EVENT) {
        sc_emit_t e;
        sc_cluster_msg_to_emit(&m, &e);
        CHECK(sc_cluster_enc_event(&b, m.node, m.token, &e) == SC_OK);
    } else if (m.kind == SC_CLUSTER_CLOSE) {
        CHECK(sc_cluster_enc_close(&b, m.node, m.token, m.scope, m.user) ==
              SC_OK);
    } else if (m.kind == SC_CLUSTER_JOIN || m.kind == SC_CLUSTER_LEAVE) {
        sc_conn_t c;
        sc_cluster_msg_to_conn(&m, &c);
        CHECK(sc_cluster_enc_presence(&b, m.kind, m.node, m.token, m.scope,
                                      &c) == SC_OK);
    } else {
        CHECK(sc_cluster_enc_bare(&b, m.kind, m.node, m.token) == SC_OK);
    }
    sc_cluster_msg_t r;
    CHECK(sc_cluster_decode(sc_buf_str(&b), sc_buf_len(&b), &r) == SC_OK);
    CHECK(r.kind == m.kind && r.seq == m.seq && r.epoch == m.epoch &&
          r.node == m.node && r.token == m.token &&
          r.has_audience == m.has_audience && r.npaths == m.npaths &&
          r.naudience == m.naudience && r.data_len == m.data_len);
    same(r.scope, m.scope);
    same(r.origin, m.origin);
    if (m.kind != SC_CLUSTER_LEAVE)
        same(r.user, m.user);
    same(r.data, m.data);
    same(r.session, m.session);
    if (m.kind == SC_CLUSTER_JOIN) { /* a leave carries no user, at, meta */
        same(r.meta, m.meta);
        CHECK(r.meta_len == m.meta_len);
        CHECK(r.at - m.at < 0.002 && m.at - r.at < 0.002);
    }
    for (size_t i = 0; i < m.npaths; i++)
        same(r.paths[i], m.paths[i]);
    for (size_t i = 0; i < m.naudience; i++)
        same(r.audience[i], m.audience[i]);
    sc_cluster_msg_deinit(&r);
    sc_buf_deinit(&b);
    sc_cluster_msg_deinit(&m);
    return 0;
}
