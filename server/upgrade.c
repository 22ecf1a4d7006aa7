/*
 * Pending handshakes and the WebSocket upgrade (see upgrade.h). The wire
 * rules (what a valid upgrade is, the answers) are protocol/upgrade.h's;
 * this file does the sockets, timers and limits.
 */
#include "upgrade.h"
#include "clock.h"
#include "http_conn.h"
#include "http_req.h"
#include "listen.h"
#include "log.h"
#include "upgrade_head.h"
#include "ws.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define HS_TIMEOUT_US (10 * SC_US_PER_SEC) /* to send the whole head */
#define HS_RETRY_S 0.005   /* re-peek an incomplete head after this, */
#define HS_RETRY_MAX_S 0.2 /* doubling up to this (slow senders) */

/* A new connection whose first request has not been seen whole yet. */
typedef struct sc_hs {
    int fd;
    sc_admit_ip_t *ip; /* its address's count (admit.h) */
    sc_svc_t *svc;
    ev_io io;
    ev_timer retry;
    double retry_s; /* the next re-peek delay */
    int64_t deadline_us;
    struct sc_hs *next, *prev;
} sc_hs_t;

/* Closes a socket this module owns, giving back its address's count. */
static void drop(sc_svc_t *svc, int fd, sc_admit_ip_t *ip)
{
    sc_admit_release(svc->srv->admit, ip);
    close(fd);
}

void sc_upgrade_refuse(sc_svc_t *svc, int fd, sc_admit_ip_t *ip,
                       const sc_http_refusal_t *r)
{
    char out[640];
    size_t n = sc_http_refusal_write(r, out, sizeof out);
    if (n > 0)
        (void)send(fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    /* what the client sent and we did not take is read and dropped, so
     * that the close is a FIN after the answer rather than a reset that
     * could discard it (input still on its way may meet a reset) */
    for (int i = 0; i < 4 && recv(fd, out, sizeof out, MSG_DONTWAIT) > 0; i++) {
    }
    drop(svc, fd, ip);
}

/* Cross-site WebSocket hijacking: a page may open a WebSocket to any
 * server, with the visitor's cookies. Returns why the upgrade's Origin is
 * refused (static), or NULL when it may go on. */
static const char *origin_check(const sc_config_t *cfg,
                                const sc_upgrade_req_t *req)
{
    if (!req->origin)
        return cfg->require_origin ? "an Origin header is required" : NULL;
    if (!sc_auth_origin_allowed(cfg->allowed_origins, req->origin,
                                req->origin_len, req->host, req->host_len))
        return "origin not allowed";
    return NULL;
}

/* Answers an upgrade whose head (`h`, `hl` bytes) has been read off the
 * socket: 101 and a new session, or an error status. Takes fd. */
static void upgrade(sc_svc_t *svc, int fd, sc_admit_ip_t *ip, const char *h,
                    size_t hl)
{
    sc_server_t *srv = svc->srv;
    sc_upgrade_req_t req;
    sc_http_refusal_t ref;
    if (sc_upgrade_parse(h, hl, &req, &ref) != SC_OK) {
        sc_upgrade_refuse(svc, fd, ip, &ref);
        return;
    }
    const char *origin_refused = origin_check(srv->cfg, &req);
    if (origin_refused) {
        char peer[64];
        sc_listen_peer(fd, peer, sizeof peer);
        sc_log_limited(&svc->client_log, sc_now_us(), SC_LOG_INFO,
                       "refused a WebSocket upgrade from %s: %s (403)", peer,
                       origin_refused);
        ref = (sc_http_refusal_t){.status = 403,
                                  .reason_phrase = "Forbidden",
                                  .code = sc_errc_name(SC_ERRC_FORBIDDEN),
                                  .message = origin_refused};
        sc_upgrade_refuse(svc, fd, ip, &ref);
        return;
    }
    bool draining = atomic_load(&srv->draining);
    if (draining ||
        sc_total_connections(srv) >= (size_t)srv->cfg->max_connections) {
        ref = (sc_http_refusal_t){.status = 503,
                                  .reason_phrase = "Service Unavailable",
                                  .code = sc_errc_name(SC_ERRC_UNAVAILABLE),
                                  .message = draining ? "shutting down"
                                                      : "too many connections"};
        sc_upgrade_refuse(svc, fd, ip, &ref);
        return;
    }
    char out[256];
    size_t n = sc_upgrade_accept(&req, out, sizeof out);
    if (n == 0) {
        ref = (sc_http_refusal_t){.status = 500,
                                  .reason_phrase = "Internal Server Error",
                                  .code = sc_errc_name(SC_ERRC_INTERNAL),
                                  .message = "sha1"};
        sc_upgrade_refuse(svc, fd, ip, &ref);
        return;
    }
    if (send(fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n) {
        drop(svc, fd, ip); /* a fresh socket takes 200 bytes unless gone */
        return;
    }
    /* The whole value (the head is at most SC_UPGRADE_HEAD_MAX bytes): a
     * token over SC_AUTH_TOKEN_MAX is refused as too long, not cut. */
    char *token = req.query ? sc_upgrade_query_param_token(
                                  req.query, req.query_len, SC_UPGRADE_HEAD_MAX)
                            : NULL;
    if (!sc_ws_open(svc, fd, token, ip, &req))
        drop(svc, fd, ip);
}

/* ---- pending handshakes ------------------------------------------------- */

static void hs_free(sc_hs_t *hs)
{
    sc_svc_t *svc = hs->svc;
    ev_io_stop(svc->loop, &hs->io);
    ev_timer_stop(svc->loop, &hs->retry);
    if (hs->prev)
        hs->prev->next = hs->next;
    else
        svc->hs = hs->next;
    if (hs->next)
        hs->next->prev = hs->prev;
    free(hs);
}

/* Not an upgrade: the connection is lws's from now on. */
static void to_lws(sc_hs_t *hs)
{
    sc_svc_t *svc = hs->svc;
    int fd = hs->fd;
    /* lws closes it without telling us: given back now (admit.h) */
    sc_admit_release(svc->srv->admit, hs->ip);
    hs_free(hs);
    if (!lws_adopt_socket_vhost(svc->vhost, fd))
        close(fd); /* lws refused it (out of fds or memory) */
}

/* Takes exactly the head off the socket (a first frame sent early stays
 * queued). Returns false when the peer went away. */
static bool take_head(int fd, char *b, size_t hl)
{
    size_t got = 0;
    while (got < hl) {
        ssize_t r = recv(fd, b + got, hl - got, 0);
        if (r <= 0 && !(r < 0 && errno == EINTR))
            return false;
        if (r > 0)
            got += (size_t)r;
    }
    return true;
}

/* Incomplete: the bytes stay readable, so look again shortly rather than
 * spin on the level-triggered watcher. */
static void peek_later(sc_hs_t *hs)
{
    struct ev_loop *loop = hs->svc->loop;
    ev_io_stop(loop, &hs->io);
    ev_timer_set(&hs->retry, hs->retry_s, 0.);
    ev_timer_start(loop, &hs->retry);
    if (hs->retry_s < HS_RETRY_MAX_S)
        hs->retry_s *= 2;
}

/* Looks at what the client sent so far without taking it. */
static void hs_peek(sc_hs_t *hs)
{
    sc_svc_t *svc = hs->svc;
    char *b = (char *)svc->rbuf;
    int fd = hs->fd;
    sc_admit_ip_t *ip = hs->ip;
    ssize_t n = recv(fd, b, SC_UPGRADE_HEAD_MAX, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        hs_free(hs);
        drop(svc, fd, ip);
        return;
    }
    /* The API (keep-alive, pipelined) is http_conn.c's as soon as the
     * target is known (WebSocket upgrades are only at /ws); the rest of
     * plain HTTP is lws's. */
    const char *t;
    size_t tl;
    int r = sc_http_peek_target(b, (size_t)n, &t, &tl);
    if (r == 1 && sc_httpconn_wants(t, tl)) {
        hs_free(hs);
        sc_httpconn_start(svc, fd, ip, t, tl);
        return;
    }
    size_t hl = 0;
    switch (sc_upgrade_classify(b, (size_t)n, SC_UPGRADE_HEAD_MAX, &hl)) {
    case SC_HEAD_INCOMPLETE:
        peek_later(hs);
        return;
    case SC_HEAD_OTHER:
        if (r == 0 && (size_t)n < SC_UPGRADE_HEAD_MAX) {
            peek_later(hs); /* wait for the target: ours or lws's */
            return;
        }
        to_lws(hs); /* plain HTTP (or garbage) for lws */
        return;
    case SC_HEAD_TOO_LARGE: {
        hs_free(hs);
        /* take what was peeked: closing with unread input would reset the
         * connection and lose the answer */
        (void)recv(fd, b, (size_t)n, 0);
        sc_http_refusal_t ref = {.status = 431,
                                 .reason_phrase =
                                     "Request Header Fields Too Large",
                                 .code = sc_errc_name(SC_ERRC_BAD_REQUEST),
                                 .message = "request head too large"};
        sc_upgrade_refuse(svc, fd, ip, &ref);
        return;
    }
    case SC_HEAD_UPGRADE:
        hs_free(hs);
        if (!take_head(fd, b, hl)) {
            drop(svc, fd, ip);
            return;
        }
        upgrade(svc, fd, ip, b, hl);
        return;
    }
}

static void hs_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    hs_peek((sc_hs_t *)((char *)w - offsetof(sc_hs_t, io)));
}

static void hs_on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    sc_hs_t *hs = (sc_hs_t *)((char *)w - offsetof(sc_hs_t, retry));
    ev_io_start(loop, &hs->io);
}

void sc_upgrade_start(sc_svc_t *svc, int fd, sc_admit_ip_t *ip)
{
    sc_hs_t *hs = calloc(1, sizeof *hs);
    if (!hs) {
        drop(svc, fd, ip);
        return;
    }
    hs->fd = fd;
    hs->ip = ip;
    hs->svc = svc;
    hs->deadline_us = sc_now_us() + HS_TIMEOUT_US;
    hs->retry_s = HS_RETRY_S;
    ev_io_init(&hs->io, hs_on_io, fd, EV_READ);
    ev_timer_init(&hs->retry, hs_on_retry, HS_RETRY_S, 0.);
    hs->next = svc->hs;
    if (svc->hs)
        svc->hs->prev = hs;
    svc->hs = hs;
    ev_io_start(svc->loop, &hs->io);
    /* the request usually came with the connection */
    hs_peek(hs);
}

void sc_upgrade_tick(sc_svc_t *svc, int64_t now)
{
    for (sc_hs_t *hs = svc->hs, *next; hs; hs = next) {
        next = hs->next;
        if (now >= hs->deadline_us) {
            drop(svc, hs->fd, hs->ip);
            hs_free(hs);
        }
    }
}

void sc_upgrade_shutdown(sc_svc_t *svc)
{
    while (svc->hs) {
        drop(svc, svc->hs->fd, svc->hs->ip);
        hs_free(svc->hs);
    }
}
