/*
 * Private to core/: a small chained hash map from strings to pointers, used
 * for scope -> scope entry (per shard) and user -> connection count (per
 * scope). Keys are copied and owned by the map; values are borrowed.
 *
 * Thread: none; callers hold the lock that guards the map.
 */
#ifndef SC_STRMAP_H
#define SC_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct sc__strmap_entry {
    struct sc__strmap_entry *next;
    uint64_t hash;
    void *value;
    char key[]; /* NUL-terminated */
} sc__strmap_entry_t;

typedef struct sc__strmap {
    sc__strmap_entry_t **buckets;
    size_t nbuckets; /* 0 or a power of two */
    size_t count;
} sc__strmap_t;

/* FNV-1a, 64 bits. */
uint64_t sc__hash(const char *s);

void sc__strmap_init(sc__strmap_t *m);
/* Frees every entry (not the values). */
void sc__strmap_deinit(sc__strmap_t *m);

/* The entry for `key` (with its precomputed hash) or NULL. */
sc__strmap_entry_t *sc__strmap_find(const sc__strmap_t *m, const char *key,
                                    uint64_t hash);

/* The entry for `key`, inserted with value NULL when absent. NULL when out
 * of memory (the map is unchanged). */
sc__strmap_entry_t *sc__strmap_upsert(sc__strmap_t *m, const char *key,
                                      uint64_t hash);

/* Removes and frees `entry` (which must be in the map). */
void sc__strmap_remove(sc__strmap_t *m, sc__strmap_entry_t *entry);

/* Calls fn for every entry; fn may remove the entry it is given. */
void sc__strmap_each(sc__strmap_t *m,
                     void (*fn)(sc__strmap_entry_t *e, void *ud), void *ud);

#endif
