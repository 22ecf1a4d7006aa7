/*
 * Counters per scope namespace (see nsstats.h).
 *
 * Slots are claimed in order under `insert` and never released, so a
 * reader scans slots [0, used) and sees each name once its `ready` flag is
 * set (release/acquire). A lookup is a linear scan of at most
 * SC_NS_SLOTS short names: this runs per dropped event and per slow close,
 * never on the delivery path.
 */
#include "nsstats.h"

#include <stdio.h>
#include <string.h>

void sc_ns_init(sc_ns_table_t *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER; /* cannot fail */
    t->insert = m;
    strcpy(t->other.name, "_other");
    atomic_store(&t->other.ready, 1);
}

void sc_ns_deinit(sc_ns_table_t *t)
{
    pthread_mutex_destroy(&t->insert);
}

/* The namespace of `scope`: its length before the first ':' (cut). */
static size_t ns_len(const char *scope)
{
    size_t n = strcspn(scope, ":");
    return n > SC_NS_NAME_MAX ? SC_NS_NAME_MAX : n;
}

static sc_ns_slot_t *find(sc_ns_table_t *t, const char *ns, size_t n, int used)
{
    for (int i = 0; i < used; i++) {
        sc_ns_slot_t *s = &t->slots[i];
        if (atomic_load_explicit(&s->ready, memory_order_acquire) &&
            strncmp(s->name, ns, n) == 0 && s->name[n] == '\0')
            return s;
    }
    return NULL;
}

static sc_ns_slot_t *slot_of(sc_ns_table_t *t, const char *scope)
{
    size_t n = ns_len(scope);
    sc_ns_slot_t *s = find(t, scope, n, atomic_load(&t->used));
    if (s)
        return s;
    pthread_mutex_lock(&t->insert);
    int used = atomic_load(&t->used);
    if (!(s = find(t, scope, n, used))) {
        if (used == SC_NS_SLOTS) {
            s = &t->other;
        } else {
            s = &t->slots[used];
            memcpy(s->name, scope, n);
            s->name[n] = '\0';
            atomic_store_explicit(&s->ready, 1, memory_order_release);
            atomic_store(&t->used, used + 1);
        }
    }
    pthread_mutex_unlock(&t->insert);
    return s;
}

void sc_ns_count_drop(sc_ns_table_t *t, const char *scope)
{
    atomic_fetch_add_explicit(&slot_of(t, scope)->dropped, 1,
                              memory_order_relaxed);
}

void sc_ns_count_slow_close(sc_ns_table_t *t, const char *scope)
{
    atomic_fetch_add_explicit(&slot_of(t, scope)->slow_closed, 1,
                              memory_order_relaxed);
}

static void series(sc_buf_t *b, const char *metric, const sc_ns_slot_t *s,
                   uint64_t v)
{
    sc_buf_puts(b, metric);
    sc_buf_puts(b, "{namespace=\"");
    for (const char *c = s->name; *c; c++) {
        if (*c == '"' || *c == '\\')
            sc_buf_putc(b, '\\');
        sc_buf_putc(b, *c);
    }
    char num[32];
    snprintf(num, sizeof num, "\"} %llu\n", (unsigned long long)v);
    sc_buf_puts(b, num);
}

void sc_ns_write_metrics(sc_ns_table_t *t, sc_buf_t *b)
{
    static const char *const names[2] = {
        "scopecast_scope_events_dropped_total",
        "scopecast_scope_slow_consumers_closed_total"};
    static const char *const help[2] = {
        "Pushes dropped for slow subscribers, by scope namespace (the "
        "scope up to its first ':').",
        "Connections closed by --disconnect-slow, by the namespace of the "
        "scope they were slow in."};
    int used = atomic_load(&t->used);
    for (int k = 0; k < 2; k++) {
        char head[256];
        snprintf(head, sizeof head, "# HELP %s %s\n# TYPE %s counter\n",
                 names[k], help[k], names[k]);
        sc_buf_puts(b, head);
        for (int i = 0; i <= used; i++) {
            sc_ns_slot_t *s = i < used ? &t->slots[i] : &t->other;
            if (!atomic_load_explicit(&s->ready, memory_order_acquire))
                continue;
            uint64_t v = atomic_load_explicit(k ? &s->slow_closed : &s->dropped,
                                              memory_order_relaxed);
            if (i == used && v == 0)
                continue; /* "_other" only once something is there */
            series(b, names[k], s, v);
        }
    }
}
