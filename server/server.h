/*
 * scopecast server: start, run and stop the service threads (server.c).
 *
 * server.c owns the server (sc_server_t, svc.h): the bus, one sc_svc_t
 * per service thread with its libev loop, lws context, listener and
 * housekeeping timer, and shutdown. Every other server/ module works on a
 * service thread it is given; see docs/ARCHITECTURE.md for who owns what.
 *
 * Thread: the main thread, for every function here.
 */
#ifndef SC_SERVER_H
#define SC_SERVER_H

#include "config.h"
#include "svc.h"

#include <stdatomic.h>

/* Creates the bus and cfg->threads service threads' state, listening on
 * one port (`cfg` and `stop_flag` are borrowed until sc_server_deinit).
 * Returns SC_OK, SC_EINVAL (cannot listen) or SC_ENOMEM; call
 * sc_server_deinit either way. Thread: main. */
int sc_server_init(sc_server_t *srv, sc_config_t *cfg, _Atomic int *stop_flag);
/* Runs every service thread (the first on the calling thread) until
 * *stop_flag is set and shutdown has drained. Returns 0, or -1 when a
 * thread failed. Thread: main. */
int sc_server_run(sc_server_t *srv);
/* Frees everything sc_server_init made, closing what is left. Thread:
 * main, after sc_server_run returned (or instead of it). */
void sc_server_deinit(sc_server_t *srv);

#endif
