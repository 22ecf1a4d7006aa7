/*
 * Private to core/: the event layout and constructors used by the bus.
 * Not installed, not for the server.
 */
#ifndef SC_EVENT_INTERNAL_H
#define SC_EVENT_INTERNAL_H

#include "event.h"

#include <stdatomic.h>

struct sc_event {
    _Atomic uint32_t _refs;
    uint8_t _kind;
    bool _edge; /* JOIN: first; LEAVE: last; UPDATE: false */
    bool _has_audience;
    bool _has_payload;
    uint64_t _seq;
    const char *_scope; /* all strings live in the event's own allocation */
    const char **_paths;
    size_t _npaths;
    const char *_origin;
    uint64_t _origin_hash; /* sc__hash(_origin): echo checks compare it first */
    const char **_audience;
    size_t _naudience;
    const void *_payload;
    size_t _payload_len;
    sc_conn_t _conn;   /* JOIN/LEAVE/UPDATE only; owned */
    void *_frame_data; /* owned; released with _frame_free */
    const void *_frame;
    size_t _frame_len;
    void (*_frame_free)(void *);
    void *_payload_own; /* a large payload in its own allocation, or NULL */
    uint32_t _alloc;    /* bytes of the event's own allocation */
    uint32_t _cost;     /* bytes it keeps alive (allocations and frame):
                           set by sc__event_settle before the fan-out */
    struct sc__gauge *_gauge; /* the bus's gauge of queued bytes (a
                                 reference), once the event is in a queue
                                 (set before the emitter's last unref);
                                 NULL before */
};

/* The bus's gauge of what queued events cost. Events hold a reference
 * from their first push until they are freed, so an event that outlives
 * its bus (a consumer's reference) still has a gauge to leave. */
typedef struct sc__gauge {
    _Atomic uint64_t bytes;
    _Atomic uint32_t refs;
} sc__gauge_t;

/* Drops a reference of `g`; the last frees it. NULL is a no-op. */
void sc__gauge_release(sc__gauge_t *g);

/* Payloads of at least this many bytes get an allocation of their own, so
 * that they can be released once the frame holds them. */
#define SC__PAYLOAD_OWN_MIN 1024

/* After the encoder ran, before the fan-out: frees a payload of its own
 * when `release_payload` (the frame holds it; sc_event_payload then
 * returns NULL) and sets _cost. */
void sc__event_settle(sc_event_t *ev, bool release_payload);

/* A change event with `seq`, refcount 1, in one allocation; paths and
 * audience are sorted and de-duplicated. NULL when out of memory. */
sc_event_t *sc__event_create_change(const sc_emit_t *e, uint64_t seq);

/* A JOIN, LEAVE or UPDATE event for `conn` (copied), refcount 1. */
sc_event_t *sc__event_create_presence(int kind, const char *scope,
                                      const sc_conn_t *conn, bool edge);

/* Adds `n` references at once. */
void sc__event_add_refs(sc_event_t *ev, uint32_t n);

/* Drops `n` references that cannot be the last ones. */
void sc__event_unref_many(sc_event_t *ev, uint32_t n);

#endif
