/*
 * scopecast protocol: encoders of the server's WebSocket messages (replies
 * and non-event pushes), exactly as in docs/PROTOCOL.md v1.
 *
 * Each encoder APPENDS one JSON object to `b` (see jsonw.h) and returns
 * SC_OK or SC_ENOMEM (the buffer is then failed; also when it had failed
 * before). Take the text with sc_buf_str()/sc_buf_detach(), or build a
 * WebSocket frame around it with sc_ws_frame_begin()/sc_ws_frame_end()
 * (wire.h). Members come in a fixed order: "op" first, then "id", then the
 * rest as listed in docs/PROTOCOL.md.
 *
 * Arguments are borrowed. Strings are JSON-escaped, with two exceptions
 * that are inserted as raw JSON text and must be valid JSON (they come from
 * the decoder): `id_json` (the request's id, member omitted when NULL) and a
 * conn's `meta` (an object's text; NULL or empty gives {}).
 *
 * Thread: pure, any thread.
 */
#ifndef SC_PROTO_REPLY_H
#define SC_PROTO_REPLY_H

#include "codec.h"
#include "conn.h"
#include "jsonw.h"

#include <stddef.h>
#include <stdint.h>

/* {"session":S,"user":U|null,"at":1732530000.123,"meta":{...}} */
int sc_proto_enc_conn(sc_buf_t *b, const sc_conn_t *c);

/* [conn,...] from `n` infos (an sc_bus_presence() list). */
int sc_proto_enc_conn_list(sc_buf_t *b, const sc_conn_t *list, size_t n);

/* {"op":"welcome","version":1,"session":S,"user":U|null,"heartbeat":H,
 *  "maxsize":M,"maxmessage":X}. `user` NULL = anonymous; `maxmessage` is
 * the largest client message the server takes, in bytes (--max-message). */
int sc_proto_enc_welcome(sc_buf_t *b, const char *session, const char *user,
                         int heartbeat, int maxsize, uint64_t maxmessage);

/* The welcome with the presence grace's fields after "maxmessage":
 * ,"resume_token":T when `resume_token` is not NULL (the secret a client
 * presents to resume this session), and ,"resumed":true|false when the
 * client asked to resume (`resumed` 1 or 0; -1: it did not ask, no field).
 * See docs/PROTOCOL.md "Presence grace". */
int sc_proto_enc_welcome_resume(sc_buf_t *b, const char *session,
                                const char *user, int heartbeat, int maxsize,
                                uint64_t maxmessage, const char *resume_token,
                                int resumed);

/* {"op":"subscribed","id":I,"scope":S,"seq":N,"presence":[conn...]}: the
 * first `n` of `total` connections; when total > n the list was cut and
 * ,"total":T follows it. */
int sc_proto_enc_subscribed(sc_buf_t *b, const char *id_json, const char *scope,
                            uint64_t seq, const sc_conn_t *presence, size_t n,
                            size_t total);

/* sc_proto_enc_subscribed with the history fields after "seq":
 * ,"epoch":"E" (sc_proto_epoch_text), then ,"recovered":true|false when
 * the subscribe had `since` (`recovered` 1 or 0; -1: no field). */
int sc_proto_enc_subscribed_epoch(sc_buf_t *b, const char *id_json,
                                  const char *scope, uint64_t seq,
                                  uint64_t epoch, int recovered,
                                  const sc_conn_t *presence, size_t n,
                                  size_t total);

/* {"op":"unsubscribed","id":I,"scope":S} */
int sc_proto_enc_unsubscribed(sc_buf_t *b, const char *id_json,
                              const char *scope);

/* {"op":"emitted","id":I,"scope":S,"seq":N} */
int sc_proto_enc_emitted(sc_buf_t *b, const char *id_json, const char *scope,
                         uint64_t seq);

/* {"op":"presence","id":I,"scope":S,"presence":[conn...]}, cut as in
 * sc_proto_enc_subscribed. */
int sc_proto_enc_presence(sc_buf_t *b, const char *id_json, const char *scope,
                          const sc_conn_t *presence, size_t n, size_t total);

/* {"op":"presence_updated","id":I,"scope":S} */
int sc_proto_enc_presence_updated(sc_buf_t *b, const char *id_json,
                                  const char *scope);

/* {"op":"refreshed","id":I,"exp":E} (E null when the token has none) */
int sc_proto_enc_refreshed(sc_buf_t *b, const char *id_json, bool has_exp,
                           int64_t exp);

/* {"op":"pong","id":I} */
int sc_proto_enc_pong(sc_buf_t *b, const char *id_json);

/* {"op":"error","id":I,"code":C,"message":M}; `code` and `message` must be
 * non-NULL. */
int sc_proto_enc_error(sc_buf_t *b, const char *id_json, const char *code,
                       const char *message);

/* The `error` reply for a decode failure (its code, message and id). */
int sc_proto_enc_decode_error(sc_buf_t *b, const sc_proto_err_t *err);

/* {"op":"dropped","scope":S,"count":N} */
int sc_proto_enc_dropped(sc_buf_t *b, const char *scope, uint64_t count);

/* {"op":"closed","scope":S,"reason":R}; `reason` is an enum
 * sc_close_reason (bus.h), see sc_proto_close_reason_name(). */
int sc_proto_enc_closed(sc_buf_t *b, const char *scope, int reason);

/* "closed", "kicked" or "shutdown" for SC_CLOSE_CLOSED, SC_CLOSE_KICKED,
 * SC_CLOSE_SHUTDOWN; any other value gives "closed". Static string. */
const char *sc_proto_close_reason_name(int reason);

#endif
