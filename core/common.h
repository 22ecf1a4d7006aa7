/*
 * scopecast core: error codes and the logger hook shared by every module.
 *
 * Library code never prints: it reports through an sc_log_fn installed by
 * the embedder (the server installs its leveled logger). Errors are small
 * negative integers so they can travel through int returns unchanged.
 *
 * Thread: every function here is thread-safe (pure).
 */
#ifndef SC_COMMON_H
#define SC_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum sc_err {
    SC_OK = 0,
    SC_ENOMEM = -1,    /* an allocation failed; nothing was changed */
    SC_EINVAL = -2,    /* an argument is invalid; nothing was changed */
    SC_EAGAIN = -3,    /* nothing to take right now (non-blocking pull) */
    SC_ECLOSED = -4,   /* the subscription was closed and is fully drained */
    SC_ETIMEDOUT = -5, /* a blocking wait ran out of time */
    SC_ENOTFOUND = -6, /* no such scope, user or object */
};

/* Returns a static, human-readable string for an sc_err value; unknown
 * values give "unknown error". Never NULL. */
const char *sc_strerror(int err);

enum sc_log_level {
    SC_LOG_DEBUG = 0,
    SC_LOG_INFO = 1,
    SC_LOG_WARN = 2,
    SC_LOG_ERROR = 3,
};

/* Logger hook. `msg` is borrowed for the duration of the call and has no
 * trailing newline. It may be called from any thread that calls into the
 * library, never with a library lock held. */
typedef void (*sc_log_fn)(void *ud, int level, const char *msg);

/* Name of a level ("debug", "info", "warn", "error"); "?" otherwise. */
const char *sc_log_level_name(int level);

/* An epoch (a scope order's name): splitmix64 of seed + n times the golden
 * ratio, so the numbers 1, 2, 3... of one seed never give the same epoch
 * twice and look unrelated; never 0 (0 means "none"). */
uint64_t sc_epoch_mix(uint64_t seed, uint64_t n);

#endif
