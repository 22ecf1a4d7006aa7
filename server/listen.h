/*
 * Listening sockets shared by several service threads.
 *
 * lws 4.1 on Linux cannot share one port between contexts (its
 * ALLOW_LISTEN_SHARE option only matters on Windows), so every service
 * thread opens its own listening socket with SO_REUSEPORT, the kernel
 * spreads new connections over them, and each thread accepts on its own
 * and hands each socket to the accept callback its owner registered
 * (server.c registers upgrade.c's, which keeps WebSocket upgrades and
 * gives the rest to its lws context).
 *
 * Thread: sc_listen_open runs on the main thread before the service
 * threads start; the accept callback runs on its service thread.
 */
#ifndef SC_LISTEN_H
#define SC_LISTEN_H

#include <libwebsockets.h>

/* Opens a non-blocking listening TCP socket on host:port with SO_REUSEADDR
 * and SO_REUSEPORT. *bound_port receives the port (useful with port 0).
 * Returns the fd, or -1 with the reason logged. */
int sc_listen_open(const char *host, int port, int *bound_port);

/* Fails when a socket already listens on host:port, such as another
 * scopecast: SO_REUSEPORT would let this process join that port and the
 * kernel would split clients between two unrelated servers. The probe binds
 * without SO_REUSEPORT, which a listening socket refuses. Returns 0 when the
 * port is free, -1 with the reason logged. Thread: main, before
 * sc_listen_open. */
int sc_listen_check_free(const char *host, int port);

/* Writes the peer address of connected socket `fd` ("203.0.113.7",
 * "::1") into buf; "?" when unknown. For log lines. Thread: any. */
void sc_listen_peer(int fd, char *buf, size_t len);

/* Where accepted sockets go: `fn(ud, fd)` takes each one (non-blocking,
 * TCP_NODELAY set). Owned by the caller, borrowed while attached. */
typedef struct sc_listener {
    void (*fn)(void *ud, int fd);
    void *ud;
} sc_listener_t;

/* Registers `fd` with the context's loop (as an lws raw file) so that
 * readiness accepts every pending connection and hands it to `l`. The lws
 * protocol list must contain SC_ACCEPT_PROTOCOL_NAME (below). Returns 0 or
 * -1. Thread: the service thread (or before it starts). */
int sc_listen_attach(struct lws_vhost *vhost, int fd, sc_listener_t *l);

/* The lws protocol entry whose callback accepts connections. */
#define SC_ACCEPT_PROTOCOL_NAME "scopecast-accept"
int sc_listen_callback(struct lws *wsi, enum lws_callback_reasons reason,
                       void *user, void *in, size_t len);

#endif
