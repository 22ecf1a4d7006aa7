/*
 * scopecast protocol: WebSocket framing and the bus's event encoder.
 *
 * Server-to-client frames are RFC 6455 text frames: FIN + opcode 1 (0x81),
 * unmasked, with the 7-bit, 16-bit or 64-bit length form (the header comes
 * from sc_ws_frame_header(), wsframe.h, included here). The frame is
 * built once per event by sc_proto_encode_event() (installed as the bus's
 * encoder hook) and then shared by every subscriber queue, so fan-out never
 * re-encodes. Replies can be framed the same way with sc_ws_frame_begin()
 * and sc_ws_frame_end() around any encoder of reply.h / http_body.h.
 *
 * Head room: a frame may keep free bytes in front of its header, for a
 * transport that writes something of its own there (the server sends
 * frames with send() as they are and asks for none; lws_write() would
 * need LWS_PRE). The JSON is written after headroom + SC_WS_MAX_HEADER
 * reserved bytes and the header is put right in front of it, so the free
 * space before the frame is at least `headroom` (up to 8 bytes more).
 *
 * Event JSON (docs/PROTOCOL.md, server pushes):
 *   change: {"op":"event","scope":S,"seq":N,"paths":[...],"origin":O|null,
 *            "data":D}   ("data" omitted when the event has no payload)
 *   join:   {"op":"join","scope":S,"conn":{...},"first":B}
 *   leave:  {"op":"leave","scope":S,"conn":{...},"last":B}
 *   update: {"op":"update","scope":S,"conn":{...}}  (the conn with its new
 *           meta: sc_bus_presence_update)
 * The payload of a change event must be valid JSON text (the server passes
 * sc_request_t.data_json or an HTTP item's data_json); it is inserted as is,
 * without validation (an empty payload counts as none). The conn's meta is
 * inserted as is too (see reply.h).
 *
 * Thread: pure, any thread. sc_proto_encode_event runs on the emitting
 * thread with a bus shard lock held: it only allocates and writes.
 */
#ifndef SC_PROTO_WIRE_H
#define SC_PROTO_WIRE_H

#include "event.h"
#include "jsonw.h"
#include "wsframe.h" /* SC_WS_MAX_HEADER, sc_ws_frame_header */

#include <stddef.h>
#include <stdint.h>

/* Starts a frame in an empty buffer `b` (initialised, no payload yet):
 * reserves headroom + SC_WS_MAX_HEADER bytes and room for `size_hint`
 * payload bytes. Append the JSON with any encoder, then call
 * sc_ws_frame_end(). Returns SC_OK, SC_EINVAL (b not empty) or SC_ENOMEM. */
int sc_ws_frame_begin(sc_buf_t *b, size_t headroom, size_t size_hint);

/* Finishes the frame started with sc_ws_frame_begin(): writes the header
 * in front of the payload and hands the allocation over. On SC_OK, *data is
 * the malloc'd block (caller frees it with free()), *frame points inside it
 * at the header (with at least `headroom` bytes before it) and *frame_len
 * is header + payload. The buffer is left initialised (empty) in every case.
 * Returns SC_OK, SC_ENOMEM (the buffer had failed) or SC_EINVAL (no frame
 * was begun); on error the outputs are NULL/0. */
int sc_ws_frame_end(sc_buf_t *b, void **data, uint8_t **frame,
                    size_t *frame_len);

/* Configuration of sc_proto_encode_event (its `ud`). */
typedef struct sc_proto_event_cfg {
    size_t headroom; /* free bytes before each frame (0: none) */
} sc_proto_event_cfg_t;

/* Appends the JSON of event `ev` (borrowed) to `b`. Returns SC_OK, SC_EINVAL
 * (unknown kind, or join/leave/update without a conn) or SC_ENOMEM. */
int sc_proto_enc_event_json(sc_buf_t *b, const sc_event_t *ev);

/* The bus's encoder hook (sc_encode_fn): builds the event's text frame with
 * the head room of `ud` (an sc_proto_event_cfg_t, borrowed for the bus's
 * life; NULL = no head room) and stores it with sc_event_set_frame(ev, data,
 * frame, len, free). Returns SC_OK, SC_EINVAL or SC_ENOMEM (then the bus
 * rejects the emit). */
int sc_proto_encode_event(void *ud, sc_event_t *ev);

#endif
