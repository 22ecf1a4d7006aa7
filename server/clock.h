/*
 * scopecast server: the two clocks every module reads.
 *
 * sc_now_us() is monotonic (deadlines, heartbeats, timeouts); it never goes
 * back when the wall clock is set. sc_wall_seconds() is the wall clock in
 * seconds with millisecond resolution, for the "at" a client sees in
 * presence (docs/PROTOCOL.md: milliseconds since the epoch / 1000).
 *
 * Thread: any; both only read the system clocks.
 */
#ifndef SC_SERVER_CLOCK_H
#define SC_SERVER_CLOCK_H

#include <stdint.h>
#include <time.h>

#define SC_US_PER_SEC 1000000

/* Microseconds on the monotonic clock. Thread: any. */
static inline int64_t sc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SC_US_PER_SEC + ts.tv_nsec / 1000;
}

/* Seconds since the epoch, truncated to milliseconds. Thread: any. */
static inline double sc_wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

#endif
