/*
 * scopecast server: counters per scope namespace for /metrics (the slow-
 * consumer policy's "per scope" counters, docs/PROTOCOL.md "Slow
 * consumers").
 *
 * A scope's namespace is what comes before its first ':' ("doc" for
 * "doc:42"; the whole scope, cut to SC_NS_NAME_MAX bytes, when it has
 * none). Counting per scope would give /metrics one series per scope ever
 * seen, without bound; namespaces are few in practice, and the table is
 * bounded anyway: the first SC_NS_SLOTS namespaces get their own series,
 * later ones are counted under "_other".
 *
 * Counted: events dropped for a subscriber (every drop of the bus, through
 * its on_drop hook) and connections closed by --disconnect-slow.
 *
 * Thread: sc_ns_count_* from any thread, lock-free once a namespace has
 * its slot (a new namespace takes the table's mutex once);
 * sc_ns_write_metrics from any thread. The table is owned by the server
 * (sc_ns_init/sc_ns_deinit around the bus's life).
 */
#ifndef SC_SERVER_NSSTATS_H
#define SC_SERVER_NSSTATS_H

#include "jsonw.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define SC_NS_SLOTS 64
#define SC_NS_NAME_MAX 48

typedef struct sc_ns_slot {
    _Atomic int ready; /* 1 once name is written (release) */
    char name[SC_NS_NAME_MAX + 1];
    _Atomic uint64_t dropped;
    _Atomic uint64_t slow_closed;
} sc_ns_slot_t;

typedef struct sc_ns_table {
    pthread_mutex_t insert; /* taken only to claim a slot */
    _Atomic int used;       /* slots claimed, in order */
    sc_ns_slot_t slots[SC_NS_SLOTS];
    sc_ns_slot_t other; /* namespaces past the table */
} sc_ns_table_t;

/* Sets up an empty table (cannot fail) / releases it. Thread: any,
 * before and after every use. */
void sc_ns_init(sc_ns_table_t *t);
void sc_ns_deinit(sc_ns_table_t *t);

/* One event of `scope` was dropped for a subscriber. Thread: any. */
void sc_ns_count_drop(sc_ns_table_t *t, const char *scope);
/* A connection was closed as a slow consumer of `scope`. Thread: any. */
void sc_ns_count_slow_close(sc_ns_table_t *t, const char *scope);

/* Appends the Prometheus series scopecast_scope_events_dropped_total and
 * scopecast_scope_slow_consumers_closed_total{namespace="…"} (namespaces
 * are printable ASCII; '"' and '\' are escaped). Thread: any. */
void sc_ns_write_metrics(sc_ns_table_t *t, sc_buf_t *b);

#endif
