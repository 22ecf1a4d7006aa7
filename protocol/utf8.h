/*
 * scopecast protocol: strict UTF-8 validation (RFC 3629).
 *
 * One validator for every place that must tell valid UTF-8 from the rest:
 * text messages and close reasons received over WebSocket (wsframe.h) and
 * the JSON string escaper (jsonw.h). Valid means RFC 3629: no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF and no
 * truncated sequence.
 *
 * Design: sc_utf8_seq() checks one multi-byte sequence with byte ranges
 * (no code point arithmetic); sc_utf8_valid() skips ASCII eight bytes at a
 * time and calls it for the rest, so ASCII text costs about one load per
 * eight bytes.
 *
 * Thread: any (pure functions).
 */
#ifndef SC_PROTO_UTF8_H
#define SC_PROTO_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Whether the `n` bytes at `s` (borrowed; may be NULL when n == 0) are
 * valid UTF-8. Returns true for n == 0. Thread: any. */
bool sc_utf8_valid(const void *s, size_t n);

/* Length (2, 3 or 4) of the valid UTF-8 sequence starting at `s` (borrowed,
 * `n` >= 1 bytes available, s[0] >= 0x80), or 0 when the bytes there are
 * not a valid sequence (bad lead byte, bad continuation, overlong,
 * surrogate, above U+10FFFF, or cut short by `n`). Thread: any. */
size_t sc_utf8_seq(const unsigned char *s, size_t n);

#endif
