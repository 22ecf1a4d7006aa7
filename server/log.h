/*
 * scopecast server: the one leveled logger.
 *
 * Every line goes to stderr (or the stream set with sc_log_set_stream) as
 *
 *     2024-11-25T13:44:01.123Z info  message text
 *
 * that is an ISO-8601 UTC timestamp with milliseconds, the level name padded
 * to five characters, and the message. A line is formatted in full first and
 * written with a single fputs, so lines from concurrent threads never
 * interleave. Control characters in the message (a newline from client
 * input, say) are replaced by spaces so one call is always one line.
 *
 * The core library never prints: it reports through an sc_log_fn, and
 * sc_log_hook is the server's implementation of it.
 *
 * Thread safety: sc_log, sc_log_hook, sc_log_enabled and sc_log_level_parse
 * may be called from any thread at any time. The level is an atomic and may
 * be changed while other threads log. sc_log_set_stream is meant for start-up
 * and tests: call it before other threads log.
 */
#ifndef SC_SERVER_LOG_H
#define SC_SERVER_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"

#if defined(__GNUC__) || defined(__clang__)
#define SC_PRINTF_FMT(a, b) __attribute__((format(printf, a, b)))
#else
#define SC_PRINTF_FMT(a, b)
#endif

/* Sets the minimum level written (SC_LOG_DEBUG..SC_LOG_ERROR); messages
 * below it are discarded. Values outside the range are clamped. The initial
 * level is SC_LOG_INFO.
 * Thread: any. */
void sc_log_set_level(int level);

/* Returns the current minimum level.
 * Thread: any. */
int sc_log_get_level(void);

/* Returns true when a message of `level` would be written; use it to skip
 * building expensive messages.
 * Thread: any. */
bool sc_log_enabled(int level);

/* Parses a level name: "debug", "info", "warn" or "error", ignoring case.
 * On success stores the level in *level and returns SC_OK. Returns SC_EINVAL
 * for NULL or any other name, leaving *level unchanged.
 * Thread: any (pure). */
int sc_log_level_parse(const char *name, int *level);

/* Redirects output to `f` (borrowed; it must stay open until replaced);
 * NULL restores stderr. For tests and start-up.
 * Thread: call before other threads log. */
void sc_log_set_stream(FILE *f);

/* Formats and writes one line at `level` if the level is enabled. Levels
 * outside SC_LOG_DEBUG..SC_LOG_ERROR are treated as SC_LOG_ERROR. A message
 * that cannot be formatted in full (out of memory) is truncated, never lost.
 * Thread: any. */
void sc_log(int level, const char *fmt, ...) SC_PRINTF_FMT(2, 3);

/* An sc_log_fn for the core library: writes `msg` (borrowed) at `level`.
 * `ud` is NULL or a component tag (a borrowed C string that outlives every
 * call, e.g. "bus"), printed as "[bus] " before the message.
 * Thread: any. */
void sc_log_hook(void *ud, int level, const char *msg);

/* A budget for lines that clients cause (auth failures, refused origins):
 * a client that sends bad tokens in a loop must not fill the disk. At most
 * SC_LOG_LIMIT_LINES lines per SC_LOG_LIMIT_WINDOW_US; the rest are counted
 * and reported in one line ("N more ... not logged") when the next line
 * passes. Zero-initialise. Owned by one thread (one per service thread). */
#define SC_LOG_LIMIT_LINES 20
#define SC_LOG_LIMIT_WINDOW_US 10000000
typedef struct sc_log_limit {
    int64_t window_start_us; /* monotonic (sc_now_us) */
    unsigned lines;          /* written in this window */
    unsigned suppressed;     /* held back since the last line written */
} sc_log_limit_t;

/* sc_log within `lim`'s budget; `now_us` is sc_now_us(). Returns true when
 * the line was written (or the level is off), false when it was counted
 * instead. Thread: the thread that owns `lim`. */
bool sc_log_limited(sc_log_limit_t *lim, int64_t now_us, int level,
                    const char *fmt, ...) SC_PRINTF_FMT(4, 5);

/* Formats a one-line error message into `err` (errlen bytes); a NULL
 * `err` or errlen 0 is a no-op. For "char *err, size_t errlen" outputs.
 * Thread: any. */
void sc_errfmt(char *err, size_t errlen, const char *fmt, ...)
    SC_PRINTF_FMT(3, 4);

#endif
