/*
 * Events: what travels from an emitter to every subscriber of a scope.
 *
 * An event is created once per emit (by sc_bus_emit), is immutable from the
 * moment it is queued anywhere, and is shared by reference between all the
 * subscriber queues it reached: fan-out to N subscribers is N pointer pushes.
 * The reference count is atomic, so any thread may drop its reference.
 *
 * Besides change events (kind SC_EVENT_CHANGE) the bus produces presence
 * events (SC_EVENT_JOIN, SC_EVENT_LEAVE, SC_EVENT_UPDATE) that share the
 * subscription queues.
 *
 * Wire frame: the bus calls its encoder hook once per event, right after the
 * seq is assigned and before the event is queued; the hook stores a ready
 * wire frame with sc_event_set_frame(). Consumers read it with
 * sc_event_frame() and never re-encode.
 *
 * Thread: accessors may be called from any thread holding a reference.
 * sc_event_set_frame() only inside the encoder hook.
 */
#ifndef SC_EVENT_H
#define SC_EVENT_H

#include "conn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sc_event sc_event_t;

enum sc_event_kind {
    SC_EVENT_CHANGE = 0, /* an emit */
    SC_EVENT_JOIN = 1,   /* a connection subscribed (presence) */
    SC_EVENT_LEAVE = 2,  /* a connection left (presence) */
    SC_EVENT_UPDATE = 3, /* a connection changed its meta (presence) */
};

/* What an emitter passes to sc_bus_emit. Every pointer is borrowed for the
 * duration of the call; the bus copies what it keeps. */
typedef struct sc_emit {
    const char *scope;        /* required, NUL-terminated */
    const char *const *paths; /* npaths strings (a set; may be 0) */
    size_t npaths;
    const char *origin;          /* NULL = none (e.g. a session id) */
    const char *const *audience; /* user ids, used when has_audience */
    size_t naudience;
    bool has_audience;   /* false = everyone; true, 0 ids = nobody */
    const void *payload; /* opaque bytes (the server: JSON data) */
    size_t payload_len;
    bool has_payload; /* false = no payload (distinct from empty) */
    /* 0: the bus assigns the scope's next seq (the single-node rule).
     * Else a seq assigned outside the bus (the Redis broker's cluster
     * order): the event gets max(seq, the scope's seq + 1), so a scope's
     * seqs still only rise; a jump past seq + 1 ends the scope's kept
     * history (its events are no longer (seq - n, seq]: those between
     * were never seen here), so a recovery across it answers false. */
    uint64_t seq;
    /* 0: none. With a seq, the epoch the cluster gives the scope (its
     * order's life in Redis): when the event gets exactly `seq` the scope
     * takes this epoch (a different one ends its kept history: another
     * order), so every node names the same events by the same (epoch,
     * seq) and a client recovers on any of them. When it cannot (seq not
     * above the scope's: this node numbers differently, e.g. after an
     * outage), the scope leaves the cluster's epoch for a new one of its
     * own, as it does for any emit without one: a position taken here is
     * then never mistaken for one of the cluster's. */
    uint64_t epoch;
    /* Optional: called once with the seq the emit got (0: not sequenced),
     * by sc_bus_emit under the scope's lock, before any subscriber can
     * see the event (not called when it fails). Quick, no calls into the
     * bus. The broker answers the emitter here, so the answer precedes
     * the echo and carries exactly the seq subscribers see. */
    void (*on_seq)(void *ud, uint64_t seq);
    void *on_seq_ud;
} sc_emit_t;

/* Adds a reference. Returns `ev` for convenience. NULL is passed through. */
sc_event_t *sc_event_ref(sc_event_t *ev);

/* Drops a reference; the last one frees the event and its frame.
 * NULL is a no-op. */
void sc_event_unref(sc_event_t *ev);

int sc_event_kind(const sc_event_t *ev);
const char *sc_event_scope(const sc_event_t *ev);
/* Scope sequence number; 0 for presence (join/leave/update) events. */
uint64_t sc_event_seq(const sc_event_t *ev);
/* Paths, de-duplicated and sorted; *n receives the count. */
const char *const *sc_event_paths(const sc_event_t *ev, size_t *n);
/* Origin or NULL. */
const char *sc_event_origin(const sc_event_t *ev);
/* Audience (sorted, de-duplicated) or NULL when the event is for everyone. */
const char *const *sc_event_audience(const sc_event_t *ev, size_t *n);
/* True when `user_id` may receive the event under its audience rule.
 * NULL user with an audience set: false. No audience: always true. */
bool sc_event_audience_allows(const sc_event_t *ev, const char *user_id);
/* Payload bytes or NULL when the event has none; *len receives the size. */
const void *sc_event_payload(const sc_event_t *ev, size_t *len);
/* The connection that joined or left (JOIN/LEAVE), or the one that
 * changed its meta with its new meta (UPDATE); NULL for a change event. */
const sc_conn_t *sc_event_conn(const sc_event_t *ev);
/* JOIN: the user's first connection in the scope; LEAVE: its last;
 * false for other kinds. */
bool sc_event_user_edge(const sc_event_t *ev);

/* Stores the encoded wire frame: `data` (len bytes) becomes owned by the
 * event and is released with `free_fn(data)` (NULL = none) when the event
 * is freed. `frame` points inside `data` (so a frame can keep head room in
 * front of it for a transport that needs some). Only from the encoder
 * hook. */
void sc_event_set_frame(sc_event_t *ev, void *data, const void *frame,
                        size_t len, void (*free_fn)(void *));

/* The encoded frame or NULL when no encoder is installed. */
const void *sc_event_frame(const sc_event_t *ev, size_t *len);

#endif
