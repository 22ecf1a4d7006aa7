/*
 * scopecast protocol: the history rules of `--history PATTERNS`
 * (docs/PROTOCOL.md, "History and recovery").
 *
 * Syntax: comma-separated items PATTERN=LIMITS. PATTERN is a scope, or a
 * prefix followed by one '*' at the end (matching any suffix; "*" alone
 * matches every scope). LIMITS is N (the last N events, 1-1000000), Ts
 * (those younger than T seconds, 1-31536000) or N/Ts (both). No spaces.
 * The first rule whose pattern matches a scope decides.
 *
 * Error messages (in `err`): "history: empty item", "history: 'ITEM':
 * expected PATTERN=LIMITS", "history: 'ITEM': bad pattern", "history:
 * 'ITEM': N must be 1-1000000", "history: 'ITEM': T must be 1-31536000
 * seconds", "history: 'ITEM': limits must be N, Ts or N/Ts".
 *
 * Ownership: a parsed spec owns its rules (sc_history_spec_deinit).
 * Thread: pure functions, any thread; a spec is read-only once parsed.
 */
#ifndef SC_PROTO_HISTORY_SPEC_H
#define SC_PROTO_HISTORY_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SC_HISTORY_MAX_EVENTS 1000000u
#define SC_HISTORY_MAX_AGE 31536000u /* one year, in seconds */

typedef struct sc_history_rule {
    char *pattern;       /* owned; without the '*' */
    size_t len;          /* strlen(pattern) */
    bool prefix;         /* it ended with '*' */
    uint32_t max_events; /* 0: no count bound */
    uint32_t max_age;    /* seconds; 0: no age bound */
} sc_history_rule_t;

typedef struct sc_history_spec {
    sc_history_rule_t *rules;
    size_t n;
} sc_history_spec_t;

/* Parses `text` (NULL or "": no rules). Returns SC_OK (*out filled),
 * SC_EINVAL (the reason in err; *out empty) or SC_ENOMEM. */
int sc_history_spec_parse(const char *text, sc_history_spec_t *out, char *err,
                          size_t errlen);

/* Frees the rules and zeroes the spec. NULL is a no-op. */
void sc_history_spec_deinit(sc_history_spec_t *spec);

/* The first rule matching `scope`, or NULL. */
const sc_history_rule_t *sc_history_spec_match(const sc_history_spec_t *spec,
                                               const char *scope);

#endif
