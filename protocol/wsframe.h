/*
 * scopecast protocol: RFC 6455 framing, both directions.
 *
 * Server to client: frames are unmasked and final. sc_ws_frame_header()
 * writes the header of a text frame (the event and reply frames of wire.h),
 * sc_ws_control_frame() and sc_ws_close_frame() build whole control frames
 * (pong, heartbeat ping, close), and sc_ws_frame_extent() reads back the
 * length of a frame already built (to find frame boundaries in a queue of
 * them).
 *
 * Client to server: sc_ws_rx_t parses what a client sends, straight from
 * the caller's read buffer, and hands over whole text messages and control
 * frames. The rules (docs/PROTOCOL.md, "Close codes"): client frames must be
 * masked, reserved bits and opcodes are refused, control frames are final
 * and carry at most 125 bytes, fragments continue a message and only a
 * message, binary frames are refused (1003), a message is valid UTF-8 when
 * complete (1007) and at most max_message bytes (1009), a close frame has
 * no payload or a valid code and a UTF-8 reason. Every other framing error
 * is 1002. The parser neither sends nor logs: it reports the close code and
 * reason the server must send.
 *
 * Memory: an idle parser (between messages) holds no allocation. While a
 * message spans frames or reads its bytes are gathered in an sc_buf_t,
 * released when the message has been handed over; a control frame split by
 * reads is gathered in a 125-byte block, allocated only then. A message
 * whole in one read (the common case) is handed over in place, unmasked in
 * the caller's buffer, without a copy.
 *
 * Thread: pure functions, any thread; an sc_ws_rx_t belongs to one thread
 * at a time.
 */
#ifndef SC_PROTO_WSFRAME_H
#define SC_PROTO_WSFRAME_H

#include "common.h"
#include "jsonw.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest server-to-client frame header (2 + 8 bytes). */
#define SC_WS_MAX_HEADER 10

/* Most data frames one message may come in; more closes with 1009 (empty
 * continuation frames would otherwise cost a parse each, forever). */
#define SC_WS_MAX_FRAGMENTS 1024

/* Longest control frame: 2 header bytes + 125 payload bytes. */
#define SC_WS_MAX_CONTROL_FRAME 127

/* sc_ws_rx_feed's result when the client broke the protocol (see there).
 * Distinct from every SC_E* code of common.h. */
#define SC_WS_RX_FAIL (-100)

enum sc_ws_opcode {
    SC_WS_OP_CONT = 0x0,
    SC_WS_OP_TEXT = 0x1,
    SC_WS_OP_BINARY = 0x2,
    SC_WS_OP_CLOSE = 0x8,
    SC_WS_OP_PING = 0x9,
    SC_WS_OP_PONG = 0xa,
};

/* Writes the header of an unmasked, final text frame carrying
 * `payload_len` bytes into `out`. Returns its length: 2 (payload <= 125),
 * 4 (<= 65535) or 10. Thread: any. */
size_t sc_ws_frame_header(uint8_t out[SC_WS_MAX_HEADER], size_t payload_len);

/* Reads the header of an unmasked (server) frame at `b` (borrowed, `avail`
 * bytes readable). When the header is complete within `avail`, returns its
 * length (2, 4 or 10) and sets *frame_len to header + payload length
 * (saturated at UINT64_MAX); the payload itself need not be there. Returns
 * 0, *frame_len untouched, when more bytes are needed. The mask bit is
 * ignored (server frames are never masked). Thread: any. */
size_t sc_ws_frame_extent(const uint8_t *b, size_t avail, uint64_t *frame_len);

/* Writes a whole control frame into `out`: FIN + `op`, unmasked, with the
 * first min(n, 125) bytes of `payload` (borrowed; may be NULL when n == 0).
 * For the pong (echoing a ping's payload) and the heartbeat ping. Returns
 * the frame's length, 2 + min(n, 125). Thread: any. */
size_t sc_ws_control_frame(uint8_t out[SC_WS_MAX_CONTROL_FRAME],
                           enum sc_ws_opcode op, const void *payload, size_t n);

/* Writes a whole close frame into `out`: the 2-byte `code` (its low 16
 * bits) and `reason` (borrowed, NUL-terminated; NULL = none) cut to at most
 * 123 bytes, backing off to the start of a UTF-8 sequence rather than
 * cutting one. Returns the frame's length, 4 + the reason's bytes.
 * Thread: any. */
size_t sc_ws_close_frame(uint8_t out[SC_WS_MAX_CONTROL_FRAME], unsigned code,
                         const char *reason);

/* Whether a peer may send `code` in a close frame (RFC 6455 section 7.4):
 * 1000-1003, 1007-1011, 3000-4999. Thread: any. */
bool sc_ws_close_code_valid(unsigned code);

/* Receive state of one connection. Initialise with sc_ws_rx_init(); all
 * fields are the parser's own (read-only for callers, except `frames`). */
typedef struct sc_ws_rx {
    sc_buf_t msg;       /* the text message being reassembled: its bytes so
                           far when it spans frames or reads; no allocation
                           between messages */
    uint64_t left;      /* in_frame: payload bytes of the frame still to come;
                           between frames, after fn stopped a feed: bytes of
                           its input not looked at (sc_ws_rx_rest) */
    uint8_t *cbuf;      /* a control frame's payload split by reads: malloc'd
                           125 bytes while one is in progress, else NULL */
    uint32_t frames;    /* frames completed so far (wraps): compare before and
                           after a feed to tell whether any frame ended, e.g.
                           for a liveness clock (every frame counts, fragments
                           of a message too). The caller may reset it. */
    uint8_t hdr[14];    /* a frame header split by reads (2 + 8 + 4 mask) */
    uint8_t hdr_len;    /* bytes of it so far */
    uint8_t op;         /* in_frame: opcode of the frame (enum sc_ws_opcode) */
    uint8_t mask[4];    /* in_frame: its masking key */
    uint8_t mask_off;   /* in_frame: mask phase of the next payload byte */
    uint8_t cbuf_len;   /* bytes in cbuf */
    bool fin;           /* in_frame: the frame has FIN */
    bool in_frame;      /* header read, `left` payload bytes to come */
    bool in_message;    /* a fragmented text message is in progress */
    uint16_t fragments; /* data frames of the current message so far */
} sc_ws_rx_t;

/* What sc_ws_rx_feed hands over. */
typedef struct sc_ws_msg {
    enum sc_ws_opcode op; /* TEXT (a whole message, valid UTF-8), PING, PONG
                             or CLOSE */
    const uint8_t *data;  /* payload, borrowed for the call: the text, the
                             ping/pong payload, the close reason (valid
                             UTF-8, without the code) */
    size_t len;           /* bytes at data */
    unsigned close_code;  /* CLOSE: the peer's code, 1000 when the frame
                             had no payload; 0 otherwise */
} sc_ws_msg_t;

/* Called for each complete message or control frame, in order. `m` and
 * its data are borrowed for the call. Return 0 to go on; any other value
 * stops parsing and sc_ws_rx_feed returns it (use a positive value, or one
 * distinct from SC_ENOMEM and SC_WS_RX_FAIL). */
typedef int (*sc_ws_msg_fn)(void *ud, const sc_ws_msg_t *m);

/* Why the server must close (sc_ws_rx_feed returned SC_WS_RX_FAIL). */
typedef struct sc_ws_fail {
    unsigned code;      /* 1002, 1003, 1007 or 1009 */
    const char *reason; /* static string, for the close frame */
} sc_ws_fail_t;

/* Initialises an idle parser (no allocation). Cannot fail. Thread: any. */
void sc_ws_rx_init(sc_ws_rx_t *rx);

/* Frees what the parser holds, mid-message included. The parser must be
 * initialised again before reuse. NULL is a no-op. Thread: any. */
void sc_ws_rx_deinit(sc_ws_rx_t *rx);

/* Parses `n` bytes at `p` (borrowed, client frames: masked; unmasked in
 * place) and calls `fn(ud, m)` for each complete message or control frame.
 * A text message is checked against `max_message` (bytes) when each of its
 * frame headers arrives, and for UTF-8 when complete. Returns:
 *   0             all bytes were consumed (a frame may continue in the
 *                 next call);
 *   fn's value    fn returned non-zero: parsing stopped right after that
 *                 message (the parser is between frames; the last
 *                 sc_ws_rx_rest(rx) bytes of `p` were not looked at: the
 *                 caller may feed them later, e.g. after a pause);
 *   SC_WS_RX_FAIL the client broke the protocol: *fail (when `fail` is not
 *                 NULL) gets the close code and reason to send (1002 framing
 *                 errors, 1003 binary frame, 1007 invalid UTF-8 in a text
 *                 message or a close reason, 1009 message too big);
 *   SC_ENOMEM     out of memory.
 * A CLOSE is handed over like any other frame: fn should stop there. After
 * SC_WS_RX_FAIL or SC_ENOMEM the parser must not be fed again (only
 * deinitialised). Thread: any. */
int sc_ws_rx_feed(sc_ws_rx_t *rx, uint8_t *p, size_t n, size_t max_message,
                  sc_ws_msg_fn fn, void *ud, sc_ws_fail_t *fail);

/* After sc_ws_rx_feed returned fn's value: how many bytes at the end of
 * its input were not looked at. (Kept in `left`, which is unused between
 * frames: an idle connection's parser does not grow.) Thread: any. */
static inline size_t sc_ws_rx_rest(const sc_ws_rx_t *rx)
{
    return rx->in_frame ? 0 : (size_t)rx->left;
}

#endif
