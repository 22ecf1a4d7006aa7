/*
 * scopecast protocol: the messages nodes exchange through the Redis broker
 * (server/broker.c; docs/PROTOCOL.md "Running a cluster").
 *
 * A message on the cluster channel is
 *
 *   SEQ ['/' EPOCH] ' ' KIND NODE TOKEN FIELD*
 *
 * SEQ: decimal, the cluster seq the broker's script assigned (an event),
 * else 0. EPOCH: 16 hex digits (not all zero), the scope's cluster epoch
 * the script gave with that seq (events only, after a seq above 0). KIND: 'E'
 * event, 'C' close, and presence: 'J' an entry joined or is (still) there, 'L'
 * it left, 'N' the end of the sender's presence list (its entries marked with
 * an older gen are gone), 'H' the sender is alive, 'S' every node please send
 * its presence list. NODE: 16 hex digits, the sending node's id; TOKEN: 16 hex
 * digits, for an event the node's number for it (it matches its own messages to
 * the emits waiting for them), for 'J' and 'N' the sender's presence
 * generation. FIELD: a tag byte, a 4-byte big-endian length, that many bytes, a
 * NUL (so a decoded field is a C string inside the message, no copy): 's' scope
 * (1), 'o' origin (0-1), 'p' path (any), 'A' "has an audience" (0-1, empty),
 * 'a' an audience user id (any), 'd' the data's JSON text (0-1), 'u' a user
 * (close, J; 0-1), 'i' a session (J, L), 't' connected-at, decimal seconds (J),
 * 'm' meta JSON text (J, 0-1). Text fields hold no NUL byte. An event needs a
 * scope; a close without scope or user closes every scope; J and L a scope and
 * a session; N, H and S have no fields. Nothing here is trusted: everything on
 * the channel is decoded by these rules and rejected whole when any is broken.
 *
 * Thread: any (pure functions). Ownership: the encoder appends to the
 * caller's sc_buf_t; a decoded message points into the buffer it was
 * decoded from (which it modifies: nothing), its two arrays are the
 * caller's to free with sc_cluster_msg_deinit.
 */
#ifndef SC_PROTOCOL_CLUSTER_H
#define SC_PROTOCOL_CLUSTER_H

#include "common.h"
#include "event.h"
#include "jsonw.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest field (an event's data): Redis's own bound on a string
 * (proto-max-bulk-len, 512 MiB). The encoders fail with SC_EINVAL past it
 * (the sticky error of the buffer); the decoder rejects it. */
#define SC_CLUSTER_FIELD_MAX (512u << 20)

#define SC_CLUSTER_EVENT 'E'
#define SC_CLUSTER_CLOSE 'C'
#define SC_CLUSTER_JOIN 'J'
#define SC_CLUSTER_LEAVE 'L'
#define SC_CLUSTER_END 'N'
#define SC_CLUSTER_ALIVE 'H'
#define SC_CLUSTER_SYNC 'S'

typedef struct sc_cluster_msg {
    char kind; /* SC_CLUSTER_EVENT or SC_CLUSTER_CLOSE */
    uint64_t seq;
    uint64_t epoch; /* an event's cluster epoch (0: none) */
    uint64_t node;
    uint64_t token;
    const char *scope;  /* event: required; close: NULL = every scope */
    const char *origin; /* NULL = none */
    const char *user;   /* close: the user, or NULL */
    const char **paths; /* npaths (malloc'd array, strings in the buffer) */
    size_t npaths;
    const char **audience; /* naudience, when has_audience */
    size_t naudience;
    bool has_audience;
    const char *data; /* the JSON text, NULL = none */
    size_t data_len;
    const char *session; /* J, L */
    double at;           /* J: connected-at */
    const char *meta;    /* J: NULL = none */
    size_t meta_len;
} sc_cluster_msg_t;

/* Appends an event's body (everything after "SEQ "): kind, node, token
 * and e's fields (e->seq is not written: the broker assigns it). Returns
 * SC_OK, SC_EINVAL (a field over SC_CLUSTER_FIELD_MAX) or SC_ENOMEM (the
 * buffer's sticky error). */
int sc_cluster_enc_event(sc_buf_t *b, uint64_t node, uint64_t token,
                         const sc_emit_t *e);

/* Appends a close's body: scope and/or user (neither: every scope). */
int sc_cluster_enc_close(sc_buf_t *b, uint64_t node, uint64_t token,
                         const char *scope, const char *user);

/* Appends a presence entry's body: SC_CLUSTER_JOIN (conn's session, user,
 * connected-at and meta) or SC_CLUSTER_LEAVE (its session), with `gen`
 * as the token. */
int sc_cluster_enc_presence(sc_buf_t *b, char kind, uint64_t node, uint64_t gen,
                            const char *scope, const sc_conn_t *conn);

/* Appends a body without fields: SC_CLUSTER_END, _ALIVE or _SYNC. */
int sc_cluster_enc_bare(sc_buf_t *b, char kind, uint64_t node, uint64_t token);

/* The conn of a decoded J (pointers into m; no copy). */
void sc_cluster_msg_to_conn(const sc_cluster_msg_t *m, sc_conn_t *out);

/* Decodes a whole channel message (with its "SEQ " prefix) of len bytes.
 * Returns SC_OK with *out filled, SC_EINVAL (malformed: *out is empty) or
 * SC_ENOMEM. */
int sc_cluster_decode(const char *msg, size_t len, sc_cluster_msg_t *out);

/* Frees what the decoder allocated (not the message). */
void sc_cluster_msg_deinit(sc_cluster_msg_t *m);

/* The emit the bus takes for a decoded event (pointers into m; its seq
 * and epoch set to m's). */
void sc_cluster_msg_to_emit(const sc_cluster_msg_t *m, sc_emit_t *out);

/* The broker's address: redis://HOST[:PORT][/DB] (PORT 1-65535, default
 * 6379; DB 0-15, default 0; HOST a name, an IPv4 address or [IPv6], at
 * most hostlen - 1 bytes). Returns SC_OK, or SC_EINVAL with the reason in
 * why. */
int sc_cluster_parse_url(const char *url, char *host, size_t hostlen, int *port,
                         int *db, char *why, size_t whylen);

#endif
