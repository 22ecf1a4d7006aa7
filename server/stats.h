/*
 * scopecast server: error codes and the counters /metrics reports.
 *
 * Every error a client or HTTP caller is answered with has a code from
 * enum sc_errc (docs/PROTOCOL.md "Errors"); its wire name comes from
 * sc_errc_name(). Each service thread keeps one sc_stats_t of relaxed
 * atomics that only it writes; /metrics and /api/stats, on any thread, sum
 * them (sc_stats_add). Counters are statistics: no ordering is implied.
 *
 * Thread: the functions here touch only their arguments; an sc_stats_t is
 * written by its service thread and read from any thread.
 */
#ifndef SC_SERVER_STATS_H
#define SC_SERVER_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* Error codes. The first SC_ERRC_COUNTED are counted per code in
 * scopecast_errors_total{code=...}; the HTTP-only ones after them are
 * answered but not counted. */
enum sc_errc {
    SC_ERRC_BAD_REQUEST,
    SC_ERRC_UNAUTHORIZED,
    SC_ERRC_FORBIDDEN,
    SC_ERRC_LIMIT,
    SC_ERRC_NOT_FOUND,
    SC_ERRC_INTERNAL,
    SC_ERRC_COUNTED, /* (not a code) */
    SC_ERRC_METHOD_NOT_ALLOWED = SC_ERRC_COUNTED,
    SC_ERRC_TOO_LARGE,
    SC_ERRC_UNAVAILABLE,
    SC_ERRC_END /* (not a code) */
};

/* The wire name of `code` ("bad_request", ...): a static string. An
 * out-of-range code gives "internal". Thread: any. */
const char *sc_errc_name(enum sc_errc code);

typedef struct sc_stats {
    _Atomic uint64_t delivered;         /* pushes written to subscribers */
    _Atomic uint64_t bytes_out;         /* bytes written to WebSockets */
    _Atomic uint64_t connections_total; /* WebSocket connections opened */
    _Atomic uint64_t http_requests;     /* answered by http_conn.c */
    _Atomic uint64_t refused_per_ip;    /* --max-connections-per-ip */
    _Atomic uint64_t slow_closed;       /* --disconnect-slow closes */
    _Atomic uint64_t errors[SC_ERRC_COUNTED]; /* error answers by code */
} sc_stats_t;

/* Adds `n` to one counter of the calling thread's sc_stats_t (relaxed:
 * statistics only). */
#define SC_COUNT(field, n)                                                     \
    atomic_fetch_add_explicit(&(field), (n), memory_order_relaxed)

/* Counts one error answer with `code` (codes past the counted ones are
 * ignored). Thread: the stats' service thread. */
void sc_stats_error(sc_stats_t *st, enum sc_errc code);

/* Adds every counter of `one` to `total` (which its caller owns and
 * zeroed). Thread: any. */
void sc_stats_add(sc_stats_t *total, const sc_stats_t *one);

/* A counter's current value. Thread: any. */
#define SC_STAT(field) atomic_load_explicit(&(field), memory_order_relaxed)

#endif
