/* Log-linear latency histogram in microseconds: exact below 256 us, then 128
 * sub-buckets per power of two (error under 0.8%). */
#include "lg.h"

static int idx_of(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int e = msb - 7; /* v >> e in [128, 256) */
    if (e > HIST_OCT)
        return HIST_N - 1;
    return 2 * HIST_SUB + (e - 1) * HIST_SUB + (int)((v >> e) - HIST_SUB);
}

static uint64_t val_of(int i)
{
    if (i < 2 * HIST_SUB)
        return (uint64_t)i;
    int e = (i - 2 * HIST_SUB) / HIST_SUB + 1;
    uint64_t sub = (uint64_t)((i - 2 * HIST_SUB) % HIST_SUB) + HIST_SUB;
    /* the middle of the bucket */
    return (sub << e) + ((1ull << e) >> 1);
}

void hist_add(hist_t *h, uint64_t us)
{
    h->b[idx_of(us)]++;
    h->n++;
    if (us > h->max)
        h->max = us;
}

void hist_merge(hist_t *dst, const hist_t *src)
{
    for (int i = 0; i < HIST_N; i++)
        dst->b[i] += src->b[i];
    dst->n += src->n;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_pct(const hist_t *h, double pct)
{
    if (h->n == 0)
        return 0;
    uint64_t want = (uint64_t)((double)h->n * pct / 100.0);
    if (want >= h->n)
        want = h->n - 1;
    uint64_t acc = 0;
    for (int i = 0; i < HIST_N; i++) {
        acc += h->b[i];
        if (acc > want) {
            uint64_t v = val_of(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}
