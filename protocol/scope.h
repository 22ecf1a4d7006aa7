/*
 * scopecast protocol: the scope name rule.
 *
 * A scope is 1..200 bytes of printable ASCII without spaces (0x21..0x7e).
 * Anything else is a `bad_request` (docs/PROTOCOL.md, "Scopes"). The rule is
 * the same for WebSocket requests, HTTP bodies and query strings.
 *
 * Thread: pure, any thread.
 */
#ifndef SC_PROTO_SCOPE_H
#define SC_PROTO_SCOPE_H

#include <stdbool.h>
#include <stddef.h>

#define SC_SCOPE_MAX_LEN 200

/* The message of a `bad_request` for an invalid scope, without the field
 * name ("must be 1-200 printable ASCII characters without spaces"). */
#define SC_SCOPE_RULE "must be 1-200 printable ASCII characters without spaces"

/* True when the `len` bytes at `s` form a valid scope. `s` is borrowed and
 * need not be NUL-terminated; NULL is invalid. An embedded NUL is invalid. */
bool sc_proto_scope_valid(const char *s, size_t len);

#endif
