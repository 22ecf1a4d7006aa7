/*
 * scopecast protocol: a growable output buffer and a small JSON writer.
 *
 * Every encoder of the protocol layer writes JSON text straight into an
 * sc_buf_t: no object trees, one allocation in the common case. Appends
 * never report errors one by one: the first failed allocation makes the
 * buffer "failed" (b->err = SC_ENOMEM, sticky), later appends do nothing,
 * and the encoder returns b->err once at the end. This keeps encoders short
 * and straight-line.
 *
 * A buffer may keep reserved bytes in front of the payload (b->start): the
 * WebSocket framing in wire.h uses them for optional head room and the
 * frame header, so a frame is built without moving the JSON.
 *
 * Strings are escaped for JSON: `"` and `\` with a backslash, \b \f \n \r \t
 * with their short forms, other control characters as \u00XX. Valid UTF-8 is
 * copied through unchanged; every byte that is not part of a valid UTF-8
 * sequence is replaced by \ufffd, so the output is always valid UTF-8 (a
 * browser closes a WebSocket on an invalid text frame).
 *
 * Thread: an sc_buf_t belongs to one thread at a time; every function here
 * touches only its arguments (no global state).
 */
#ifndef SC_PROTO_JSONW_H
#define SC_PROTO_JSONW_H

#include "common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sc_buf {
    char *data;   /* the allocation; NULL until the first write */
    size_t len;   /* bytes used, counted from data (includes start) */
    size_t cap;   /* bytes allocated */
    size_t start; /* offset of the payload: bytes before it are reserved */
    int err;      /* SC_OK, or SC_ENOMEM once an append failed (sticky) */
} sc_buf_t;

/* Initialises an empty buffer (no allocation). Cannot fail. */
void sc_buf_init(sc_buf_t *b);

/* Frees what the buffer holds and re-initialises it. NULL is a no-op. */
void sc_buf_deinit(sc_buf_t *b);

/* Empties the payload but keeps the allocation and the reservation; clears
 * a failure. For reusing one buffer for many messages. */
void sc_buf_reset(sc_buf_t *b);

/* Makes room for `extra` more bytes plus a terminating NUL. Returns SC_OK,
 * or SC_ENOMEM (the buffer is then failed). */
int sc_buf_reserve(sc_buf_t *b, size_t extra);

/* Reserves `n` bytes in front of the payload of an EMPTY buffer (len ==
 * start), making room for `hint` payload bytes too. Returns SC_OK, SC_EINVAL
 * (the buffer already has payload) or SC_ENOMEM. */
int sc_buf_reserve_front(sc_buf_t *b, size_t n, size_t hint);

/* The payload (after the reservation), NUL-terminated; "" for a buffer that
 * never allocated. Borrowed: valid until the next append. NULL when the
 * buffer failed. */
const char *sc_buf_str(sc_buf_t *b);

/* Payload length in bytes (excluding the reservation). */
size_t sc_buf_len(const sc_buf_t *b);

/* Takes the payload out as a malloc'd NUL-terminated string (caller frees
 * with free()); *len (optional) receives its length. The buffer is left
 * empty (initialised). Returns NULL when the buffer failed or an allocation
 * fails; the buffer is then freed and re-initialised too. */
char *sc_buf_detach(sc_buf_t *b, size_t *len);

/* Raw appends (no escaping). */
void sc_buf_put(sc_buf_t *b, const void *p, size_t n);
void sc_buf_putc(sc_buf_t *b, char c);
void sc_buf_puts(sc_buf_t *b, const char *s); /* s must be non-NULL */

/* Decimal integers. */
void sc_buf_put_u64(sc_buf_t *b, uint64_t v);
void sc_buf_put_i64(sc_buf_t *b, int64_t v);

/* A JSON string: quotes and escaping as described above. `s` may contain
 * any bytes (NUL is written as \u0000); NULL with n == 0 writes "". */
void sc_buf_put_json_str(sc_buf_t *b, const char *s, size_t n);

/* A NUL-terminated string as a JSON string, or `null` when s is NULL. */
void sc_buf_put_json_cstr(sc_buf_t *b, const char *s);

/* `true` or `false`. */
void sc_buf_put_json_bool(sc_buf_t *b, bool v);

/* Seconds as a JSON number with exactly three decimals ("1732530000.123"),
 * rounded to the millisecond. Non-finite or out-of-range values write 0. */
void sc_buf_put_json_time(sc_buf_t *b, double seconds);

#endif
