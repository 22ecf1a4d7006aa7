/*
 * The shared fixture of the single-threaded bus tests (test_bus_*.c): a bus
 * with a captured logger, an injected clock and one owner, and the helpers
 * that subscribe, emit and take with cmocka asserts.
 *
 * Design: every helper asserts what it expects (an emit that must succeed,
 * an item that must be there), so a test reads as the behaviour it checks.
 * The clock starts at 100 s and only moves when a test sets fx.clock.now:
 * the drop-warning throttle is tested without sleeping. Each test ends with
 * fx_close(), which asserts that every subscription was destroyed, so ASan's
 * leak check covers every behaviour.
 *
 * Thread: the helpers call cmocka asserts, which may only fail on the
 * test's main thread; logcap_fn (the captured logger) is the exception and
 * may run on any thread.
 */
#ifndef SC_TESTS_BUS_FIXTURE_H
#define SC_TESTS_BUS_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>

#include "bus.h"

/* ---- captured logger ------------------------------------------------- */

#define LOGCAP_MAX 64

typedef struct logcap {
    pthread_mutex_t mu;
    int n; /* lines seen (may exceed LOGCAP_MAX; only the first are kept) */
    int level[LOGCAP_MAX];
    char msg[LOGCAP_MAX][256];
} logcap_t;

/* Starts an empty capture. Thread: main. */
void logcap_init(logcap_t *lc);

/* Releases the capture's mutex. Thread: main. */
void logcap_deinit(logcap_t *lc);

/* The sc_log_fn that records into the logcap_t `ud`. Thread: any. */
void logcap_fn(void *ud, int level, const char *msg);

/* True when `s` starts with `prefix`. Thread: any. */
bool has_prefix(const char *s, const char *prefix);

/* Number of kept lines at `min_level` or above that start with `prefix`.
 * Thread: main (no logging thread running). */
int logcap_count(logcap_t *lc, int min_level, const char *prefix);

/* The k-th (0-based) kept line at `min_level`+ starting with `prefix`, or
 * NULL. Thread: main (no logging thread running). */
const char *logcap_find(logcap_t *lc, int min_level, const char *prefix, int k);

/* How every drop warning starts. */
#define DROP_PREFIX "dropped "

/* Warnings and errors that are not drop warnings (callback failures).
 * Thread: main (no logging thread running). */
int logcap_count_other_warnings(logcap_t *lc);

/* ---- injected clock -------------------------------------------------- */

typedef struct fclock {
    double now;
} fclock_t;

/* The sc_clock_fn reading the fclock_t `ud`. Thread: any. */
double fclock_fn(void *ud);

/* ---- fixture: a bus with a captured log, a fake clock and one owner -- */

typedef struct fx {
    sc_bus_t *bus;
    sc_owner_t *owner; /* built-in condition variable (no wake callback) */
    logcap_t log;
    fclock_t clock;
} fx_t;

/* Creates the bus from `cfg` (NULL: defaults), adding the captured log and
 * the fake clock (starting at 100 s) unless the config has its own.
 * Thread: main. */
void fx_open_cfg(fx_t *fx, sc_bus_config_t *cfg);

/* fx_open_cfg with the defaults and `maxsize`. Thread: main. */
void fx_open(fx_t *fx, int maxsize);

/* Ends a test: every subscription must already be destroyed. Destroys the
 * owner and the bus. Thread: main. */
void fx_close(fx_t *fx);

/* ---- helpers: subscribing, emitting, taking -------------------------- */

/* Subscribes (owner NULL: fx's owner) and asserts success. Thread: main. */
sc_sub_t *sub_opts(fx_t *fx, const char *scope, sc_owner_t *owner,
                   const sc_sub_opts_t *opts, uint64_t *seq_out);

/* Subscribes fx's owner without options. Thread: main. */
sc_sub_t *sub_plain(fx_t *fx, const char *scope);

/* Subscribes fx's owner with `conn` and the echo and quiet flags.
 * Thread: main. */
sc_sub_t *sub_conn(fx_t *fx, const char *scope, const sc_conn_t *conn,
                   bool echo, bool quiet);

/* Fills `c` (user may be NULL: anonymous), asserting success.
 * Thread: main. */
void mkconn(sc_conn_t *c, const char *session, const char *user);

/* Emits `e` and asserts success; returns the seq assigned. Thread: main. */
uint64_t emit_ok(fx_t *fx, const sc_emit_t *e);

/* Emits a change event whose payload is `text` (used to identify it).
 * Thread: main. */
uint64_t emit_text(fx_t *fx, const char *scope, const char *text);

/* Emits a change event with nothing but the scope. Thread: main. */
uint64_t emit_simple(fx_t *fx, const char *scope);

/* Emits a change event from the session `origin`. Thread: main. */
uint64_t emit_origin(fx_t *fx, const char *scope, const char *origin);

/* Emits a change event for the `n` users in `ids` only. Thread: main. */
uint64_t emit_audience(fx_t *fx, const char *scope, const char *const *ids,
                       size_t n);

/* Takes the next item, which must exist; *dropped gets the drops before it
 * (asserted 0 when `dropped` is NULL). Returns a new reference.
 * Thread: main (as the owner). */
sc_event_t *take(sc_sub_t *sub, uint32_t *dropped);

/* Takes the next item, which must be a change event without drops before
 * it, and returns its seq. Thread: main (as the owner). */
uint64_t take_seq(sc_sub_t *sub);

/* Takes the next change event and compares its payload text.
 * Thread: main (as the owner). */
void take_text(sc_sub_t *sub, const char *text);

/* Takes the next item, which must be a JOIN or LEAVE (`kind`) of the
 * connection with `session`, with the given first/last flag.
 * Thread: main (as the owner). */
void take_presence(sc_sub_t *sub, int kind, const char *session, bool edge);

/* Asserts sc_sub_next returns `rc` (SC_EAGAIN or SC_ECLOSED) reporting
 * `dropped` trailing drops. Thread: main (as the owner). */
void expect_end(sc_sub_t *sub, int rc, uint32_t dropped);

/* Asserts the queue is empty, open and has no trailing drops.
 * Thread: main (as the owner). */
void expect_empty(sc_sub_t *sub);

/* Drains `sub` to its end, counting items and drops. Returns the final rc
 * (SC_EAGAIN or SC_ECLOSED). `seqs` (optional, `max` entries) receives the
 * seqs of change events in order. Thread: main (as the owner). */
int drain(sc_sub_t *sub, size_t *count, uint64_t *drops, uint64_t *seqs,
          size_t max);

#endif
