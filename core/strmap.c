/* Chained string hash map (see strmap.h). Grows at load factor 1. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

uint64_t sc__hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

void sc__strmap_init(sc__strmap_t *m)
{
    memset(m, 0, sizeof *m);
}

void sc__strmap_deinit(sc__strmap_t *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        sc__strmap_entry_t *e = m->buckets[i];
        while (e) {
            sc__strmap_entry_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof *m);
}

sc__strmap_entry_t *sc__strmap_find(const sc__strmap_t *m, const char *key,
                                    uint64_t hash)
{
    if (!m->nbuckets)
        return NULL;
    for (sc__strmap_entry_t *e = m->buckets[hash & (m->nbuckets - 1)]; e;
         e = e->next)
        if (e->hash == hash && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static int grow(sc__strmap_t *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 8;
    sc__strmap_entry_t **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < m->nbuckets; i++) {
        sc__strmap_entry_t *e = m->buckets[i];
        while (e) {
            sc__strmap_entry_t *next = e->next;
            size_t j = e->hash & (n - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
    return 0;
}

sc__strmap_entry_t *sc__strmap_upsert(sc__strmap_t *m, const char *key,
                                      uint64_t hash)
{
    sc__strmap_entry_t *e = sc__strmap_find(m, key, hash);
    if (e)
        return e;
    if (m->count >= m->nbuckets && grow(m) != 0 && !m->nbuckets)
        return NULL; /* a failed grow of a non-empty map is harmless */
    size_t klen = strlen(key) + 1;
    e = malloc(sizeof *e + klen);
    if (!e)
        return NULL;
    memcpy(e->key, key, klen);
    e->hash = hash;
    e->value = NULL;
    size_t j = hash & (m->nbuckets - 1);
    e->next = m->buckets[j];
    m->buckets[j] = e;
    m->count++;
    return e;
}

void sc__strmap_remove(sc__strmap_t *m, sc__strmap_entry_t *entry)
{
    sc__strmap_entry_t **pp = &m->buckets[entry->hash & (m->nbuckets - 1)];
    while (*pp && *pp != entry)
        pp = &(*pp)->next;
    if (!*pp)
        return;
    *pp = entry->next;
    free(entry);
    m->count--;
}

void sc__strmap_each(sc__strmap_t *m,
                     void (*fn)(sc__strmap_entry_t *e, void *ud), void *ud)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        sc__strmap_entry_t *e = m->buckets[i];
        while (e) {
            sc__strmap_entry_t *next = e->next;
            fn(e, ud);
            e = next;
        }
    }
}
