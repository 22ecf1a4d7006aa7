/*
 * core_bench: micro-benchmark of the core bus (no sockets, no JSON).
 *
 *   core_bench [SECONDS]      (default 2.5; the no-subscriber phase runs
 *                              half of it)
 *
 * 1. emits/s into a scope with no subscribers (the counted, unsequenced
 *    path: what an HTTP emit into an idle scope costs).
 * 2. deliveries/s for 1 scope x 1000 subscribers: one emitter thread emits
 *    flat out; one consumer thread owns all 1000 subscriptions through one
 *    owner (no wake callback) and loops re-arm, drain every subscription,
 *    wait. maxsize 256; an encoder hook builds a small frame per event (a
 *    memcpy with head room, like the server's LWS_PRE frame), and the
 *    consumer reads each event's frame pointer, as the server's writer
 *    would. Deliveries are items taken by the consumer; drops are what the
 *    bus dropped because the consumer fell behind.
 *
 * SC_BENCH_BUDGET=BYTES puts the consumer's owner under a byte budget
 * (sc_owner_set_budget), as the server does per connection.
 *
 * Not a test: numbers depend on the machine. Build: target core_bench.
 */
#include "bus.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SUBS 1000
#define MAXSIZE 256
#define PAYLOAD 64
#define HEADROOM 16 /* stands in for LWS_PRE */
#define SCOPE "bench:1"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* "12.3M" style. */
static const char *human(double v, char *buf, size_t n)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.1fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
    return buf;
}

/* A trivial encoder: head room + the payload bytes, in one allocation. */
static int encode(void *ud, sc_event_t *ev)
{
    (void)ud;
    size_t len = 0;
    const void *payload = sc_event_payload(ev, &len);
    char *data = malloc(HEADROOM + len + 1);
    if (data == NULL)
        return -1;
    data[HEADROOM] = (char)0x81; /* a text frame's first header byte */
    if (len)
        memcpy(data + HEADROOM + 1, payload, len);
    sc_event_set_frame(ev, data, data + HEADROOM, len + 1, free);
    return 0;
}

/* ---- phase 1: emits with no subscribers ------------------------------ */

/* The emit both phases send: SCOPE with a PAYLOAD-byte payload (borrowed
 * from `payload`, which must outlive the emits). */
static void bench_emit(sc_emit_t *e, char payload[PAYLOAD], char fill)
{
    memset(payload, fill, PAYLOAD);
    memset(e, 0, sizeof *e);
    e->scope = SCOPE;
    e->payload = payload;
    e->payload_len = PAYLOAD;
    e->has_payload = true;
}

static double bench_no_subscribers(double seconds, uint64_t *count)
{
    sc_bus_t *bus = NULL;
    if (sc_bus_create(NULL, &bus) != SC_OK)
        return -1;
    char payload[PAYLOAD];
    sc_emit_t e;
    bench_emit(&e, payload, 'x');
    uint64_t n = 0;
    double t0 = now_s(), t1 = t0;
    while (t1 - t0 < seconds) {
        for (int i = 0; i < 4096; i++)
            sc_bus_emit(bus, &e, NULL);
        n += 4096;
        t1 = now_s();
    }
    sc_bus_destroy(bus);
    *count = n;
    return (double)n / (t1 - t0);
}

/* ---- phase 2: 1 scope x 1000 subscribers ----------------------------- */

typedef struct bench {
    sc_bus_t *bus;
    atomic_bool ready; /* the consumer has subscribed everything */
    atomic_bool stop;  /* the emitter should stop */
    uint64_t emitted;
    uint64_t delivered;
    uint64_t dropped;
    uint64_t frame_bytes;
    uint64_t waits;
    int errors;
} bench_t;

static void *consumer(void *p)
{
    bench_t *b = p;
    sc_owner_t *owner = NULL;
    static sc_sub_t *subs[SUBS];
    static bool closed[SUBS];
    if (sc_owner_create(NULL, NULL, &owner) != SC_OK) {
        b->errors++;
        atomic_store(&b->ready, true);
        return NULL;
    }
    /* SC_BENCH_BUDGET=BYTES: the owner under a byte budget (the server
     * sets one per connection), to measure what its accounting costs */
    const char *budget = getenv("SC_BENCH_BUDGET");
    if (budget)
        sc_owner_set_budget(owner, (size_t)strtoull(budget, NULL, 10));
    for (int i = 0; i < SUBS; i++) {
        if (sc_bus_subscribe(b->bus, SCOPE, owner, NULL, &subs[i], NULL) !=
            SC_OK) {
            b->errors++;
            subs[i] = NULL;
            closed[i] = true;
        }
    }
    atomic_store(&b->ready, true);
    uint64_t delivered = 0, dropped = 0, bytes = 0, waits = 0;
    int open = SUBS;
    while (open > 0) {
        sc_owner_rearm(owner);
        for (int i = 0; i < SUBS; i++) {
            if (closed[i])
                continue;
            for (;;) {
                sc_event_t *ev = NULL;
                uint32_t d = 0;
                int rc = sc_sub_next(subs[i], &ev, &d);
                dropped += d;
                if (rc == SC_OK) {
                    size_t len = 0;
                    const unsigned char *f = sc_event_frame(ev, &len);
                    bytes += len + (f != NULL ? (f[0] & 1u) : 0);
                    delivered++;
                    sc_event_unref(ev);
                    continue;
                }
                if (rc == SC_ECLOSED) {
                    closed[i] = true;
                    open--;
                }
                break;
            }
        }
        if (open > 0) {
            waits++;
            sc_owner_wait(owner, 1000);
        }
    }
    for (int i = 0; i < SUBS; i++)
        sc_sub_destroy(subs[i]);
    sc_owner_destroy(owner);
    b->delivered = delivered;
    b->dropped = dropped;
    b->frame_bytes = bytes;
    b->waits = waits;
    return NULL;
}

static void *emitter(void *p)
{
    bench_t *b = p;
    char payload[PAYLOAD];
    sc_emit_t e;
    bench_emit(&e, payload, 'y');
    uint64_t n = 0;
    while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
        for (int i = 0; i < 64; i++)
            if (sc_bus_emit(b->bus, &e, NULL) != SC_OK)
                b->errors++;
        n += 64;
    }
    b->emitted = n;
    return NULL;
}

static int bench_fanout(double seconds, bench_t *b, double *elapsed)
{
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = MAXSIZE;
    cfg.encode = encode;
    memset(b, 0, sizeof *b);
    atomic_init(&b->ready, false);
    atomic_init(&b->stop, false);
    if (sc_bus_create(&cfg, &b->bus) != SC_OK)
        return -1;
    pthread_t tc, te;
    if (pthread_create(&tc, NULL, consumer, b) != 0)
        return -1;
    while (!atomic_load(&b->ready))
        sleep_s(0.001);
    double t0 = now_s();
    if (pthread_create(&te, NULL, emitter, b) != 0)
        return -1;
    sleep_s(seconds);
    atomic_store(&b->stop, true);
    pthread_join(te, NULL);
    /* Everything is emitted: the consumer drains what is queued, then
     * sees the end of every subscription. */
    sc_bus_close(b->bus, SCOPE, SC_CLOSE_CLOSED);
    pthread_join(tc, NULL);
    *elapsed = now_s() - t0;
    sc_bus_stats_t st;
    sc_bus_stats(b->bus, &st);
    if (st.dropped != b->dropped ||
        b->delivered + b->dropped != b->emitted * SUBS)
        fprintf(stderr,
                "core_bench: accounting mismatch: delivered %llu + dropped "
                "%llu != emitted %llu x %d (bus dropped %llu)\n",
                (unsigned long long)b->delivered,
                (unsigned long long)b->dropped, (unsigned long long)b->emitted,
                SUBS, (unsigned long long)st.dropped);
    sc_bus_destroy(b->bus);
    return b->errors ? -1 : 0;
}

int main(int argc, char **argv)
{
    double seconds = 2.5;
    if (argc > 1) {
        char *end = NULL;
        seconds = strtod(argv[1], &end);
        if (end == argv[1] || *end != '\0' || seconds <= 0 || seconds > 600) {
            fprintf(stderr, "usage: %s [SECONDS]\n", argv[0]);
            return 2;
        }
    }
    char a[32], b2[32], c[32];

    uint64_t n = 0;
    double rate = bench_no_subscribers(seconds / 2, &n);
    if (rate < 0) {
        fprintf(stderr, "core_bench: bus creation failed\n");
        return 1;
    }
    printf("core_bench: emits/s (no subscribers): %s\n",
           human(rate, a, sizeof a));

    bench_t b;
    double elapsed = 0;
    if (bench_fanout(seconds, &b, &elapsed) != 0) {
        fprintf(stderr, "core_bench: fan-out run failed\n");
        return 1;
    }
    double offered = (double)b.emitted * SUBS;
    printf("core_bench: deliveries/s (1 scope x %d subs): %s (dropped %s)\n",
           SUBS, human((double)b.delivered / elapsed, a, sizeof a),
           human((double)b.dropped, b2, sizeof b2));
    printf("core_bench:   %.2f s, %s emits/s, %llu delivered, %.1f%% of "
           "offered dropped, %s frame bytes read, %llu waits\n",
           elapsed, human((double)b.emitted / elapsed, c, sizeof c),
           (unsigned long long)b.delivered,
           offered > 0 ? 100.0 * (double)b.dropped / offered : 0.0,
           human((double)b.frame_bytes, b2, sizeof b2),
           (unsigned long long)b.waits);
    return 0;
}
