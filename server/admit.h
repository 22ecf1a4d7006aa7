/*
 * scopecast server: connections per client address
 * (--max-connections-per-ip).
 *
 * Every accepted socket is admitted here before anything is read from it
 * (server.c's accept callback): its peer address gets one more connection,
 * or the socket is refused when the address has the most it may have. The
 * count is given back when the connection closes, by whichever module
 * owns it then (upgrade.c, ws.c, http_conn.c; a socket handed to lws is
 * given back at the hand-over, lws's pages being short-lived and under its
 * own timeouts).
 *
 * Behind a reverse proxy every client has the proxy's address: raise the
 * limit or turn it off (0) there, and limit per client at the proxy.
 *
 * Ownership: server.c creates and destroys the table; each connection's
 * owner holds its sc_admit_ip_t (NULL when not counted) until it calls
 * sc_admit_release once.
 * Thread: every function is thread-safe (one mutex; the table is shared
 * by all service threads).
 */
#ifndef SC_SERVER_ADMIT_H
#define SC_SERVER_ADMIT_H

#include <stdbool.h>

typedef struct sc_admit sc_admit_t;
typedef struct sc_admit_ip sc_admit_ip_t;

/* A table for at most `max_per_ip` connections per address (0: no limit,
 * nothing counted). Returns SC_OK or SC_ENOMEM. */
int sc_admit_create(int max_per_ip, sc_admit_t **out);

/* Frees the table (every entry must have been released). NULL-safe. */
void sc_admit_destroy(sc_admit_t *a);

/* Admits the connected socket `fd`: returns true with *ip set to its
 * address's entry (NULL when nothing is counted), or false when the
 * address is at the limit (*ip NULL; the caller refuses the socket). */
bool sc_admit_take(sc_admit_t *a, int fd, sc_admit_ip_t **ip);

/* Gives back one connection of `ip` (NULL: nothing). */
void sc_admit_release(sc_admit_t *a, sc_admit_ip_t *ip);

#endif
