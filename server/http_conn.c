/* Keep-alive HTTP/1.1 API connections (see http_conn.h). */
#include "http_conn.h"
#include "clock.h"
#include "http_api.h"
#include "http_req.h"
#include "listen.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HTTPC_HEAD_TIMEOUT_S 10
#define HTTPC_BODY_TIMEOUT_S 30
#define HTTPC_IDLE_TIMEOUT_S 60
#define HTTPC_LINGER_S 2
#define HTTPC_OUT_MAX (256 * 1024)
/* Connections past --max-connections kept for probes: a first request for
 * /healthz or /metrics is still answered (then the connection closes), so
 * a flood of unfinished requests does not fail readiness probes. */
#define HTTPC_PROBE_RESERVE 16
/* Largest static file sent from here (files are read whole). */
#define HTTPC_FILE_MAX (16 * 1024 * 1024)

enum httpc_state {
    C_OPEN,    /* reading requests */
    C_CLOSING, /* the last answer is written, then the write side shut */
    C_LINGER,  /* input read and dropped until EOF, so the close does not
                  reset the connection under the last answer */
};

enum httpc_phase { P_IDLE, P_HEAD, P_BODY };

struct sc_httpc {
    sc_svc_t *svc;
    int fd;
    ev_io rio, wio;
    sc_http_reader_t rd;
    sc_buf_t out; /* answers not yet written, from out_off */
    size_t out_off;
    enum httpc_state state;
    enum httpc_phase phase;
    bool paused; /* not reading: out is over HTTPC_OUT_MAX */
    int64_t deadline_us;
    bool loopback;
    bool one_request; /* admitted from the probe reserve: closes after one */
    char peer[64];
    sc_admit_ip_t *ip; /* its address's count (admit.h) */
    /* answers in request order while emits wait for their cluster seqs
     * (--broker): every answer after a waiting one is queued (wq, at most
     * HTTPC_INFLIGHT); past that, or after a last answer (no_more), c
     * reads no more and `rest` keeps what was read and not parsed */
    struct hwait *wq, *wq_tail;
    size_t wq_n;
    bool no_more;
    bool held_req; /* the request read (rd.req) is not an emit: it runs
                      once the emits before it are answered */
    char *rest;
    size_t rest_len;
    struct sc_httpc *prev, *next;
};
typedef struct sc_httpc sc_httpc_t;

/* An answer in c's queue: waiting for the cluster (req), or ready (ans). */
struct hwait {
    sc_broker_req_t *req; /* NULL once ans is ready */
    sc_buf_t ans;
    bool last, http10, head;
    struct hwait *next;
};

/* Answers (emits waiting for the cluster, and those after them) one
 * connection may have queued before it is read no more. */
#define HTTPC_INFLIGHT 256

/* The length of a target's path (without its query). */
static size_t path_len(const char *target, size_t len)
{
    const char *q = memchr(target, '?', len);
    return q ? (size_t)(q - target) : len;
}

bool sc_httpconn_wants(const char *target, size_t len)
{
    size_t pl = path_len(target, len);
    return (pl >= 5 && memcmp(target, "/api/", 5) == 0) ||
           (pl == 8 && memcmp(target, "/healthz", 8) == 0) ||
           (pl == 8 && memcmp(target, "/metrics", 8) == 0);
}

static size_t total_http(const sc_server_t *srv)
{
    size_t n = 0;
    for (int i = 0; i < srv->nsvcs; i++)
        n += atomic_load(&srv->svcs[i].nhttp);
    return n;
}

static void destroy(sc_httpc_t *c)
{
    sc_svc_t *svc = c->svc;
    ev_io_stop(svc->loop, &c->rio);
    ev_io_stop(svc->loop, &c->wio);
    close(c->fd);
    sc_admit_release(svc->srv->admit, c->ip);
    sc_http_reader_deinit(&c->rd);
    sc_buf_deinit(&c->out);
    for (struct hwait *w = c->wq, *next; w; w = next) {
        next = w->next;
        if (w->req) /* its answer is dropped when it comes */
            w->req->ctx = NULL;
        sc_buf_deinit(&w->ans);
        free(w);
    }
    free(c->rest);
    if (c->prev)
        c->prev->next = c->next;
    else
        svc->httpc = c->next;
    if (c->next)
        c->next->prev = c->prev;
    atomic_fetch_sub(&svc->nhttp, 1);
    free(c);
}

static void set_phase(sc_httpc_t *c, enum httpc_phase ph)
{
    static const int secs[] = {[P_IDLE] = HTTPC_IDLE_TIMEOUT_S,
                               [P_HEAD] = HTTPC_HEAD_TIMEOUT_S,
                               [P_BODY] = HTTPC_BODY_TIMEOUT_S};
    c->phase = ph;
    c->deadline_us = sc_now_us() + (int64_t)secs[ph] * SC_US_PER_SEC;
}

/* Appends a static file's content, or turns `o` into an error. */
static void put_file(sc_httpc_t *c, sc_http_out_t *o, bool last, bool keep10,
                     bool head_only)
{
    int fd = open(o->file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size > HTTPC_FILE_MAX) {
        if (fd >= 0)
            close(fd);
        o->file[0] = '\0';
        sc_http_api_error(c->svc, o, 404, "no such resource");
        sc_http_put_answer_head(&c->out, o->status, o->ctype, o->len, last,
                                keep10);
        if (!head_only)
            sc_buf_put(&c->out, o->body, o->len);
        return;
    }
    size_t len = (size_t)st.st_size;
    sc_http_put_answer_head(&c->out, 200, o->ctype, len, last, keep10);
    if (!head_only && sc_buf_reserve(&c->out, len + 1) == SC_OK) {
        char *at = c->out.data + c->out.len;
        size_t got = 0;
        while (got < len) {
            ssize_t r = read(fd, at + got, len - got);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        /* a file cut short meanwhile: pad, the length is promised */
        memset(at + got, 0, len - got);
        c->out.len += len;
    }
    close(fd);
}

/* Appends the answer `o` to `into` (svc->scratch's body is copied, then
 * reset): for an HTTP/1.0 request (http10), or a HEAD (head_only). */
static void put_answer_to(sc_httpc_t *c, sc_buf_t *into, sc_http_out_t *o,
                          bool last, bool http10, bool head_only)
{
    sc_buf_t saved = c->out; /* the writers below append to c->out */
    bool swap = into != &c->out;
    if (swap)
        c->out = *into;
    bool keep10 = http10 && !last;
    if (o->file[0]) {
        put_file(c, o, last, keep10, head_only);
    } else {
        sc_http_put_answer_head(&c->out, o->status, o->ctype, o->len, last,
                                keep10);
        if (!head_only)
            sc_buf_put(&c->out, o->body, o->len);
    }
    if (swap) {
        *into = c->out;
        c->out = saved;
    }
    sc_buf_reset(&c->svc->scratch);
}

static void closing(sc_httpc_t *c)
{
    c->state = C_CLOSING;
    c->deadline_us = sc_now_us() + HTTPC_IDLE_TIMEOUT_S * SC_US_PER_SEC;
}

static struct hwait *wait_add(sc_httpc_t *c, bool last, bool http10, bool head)
{
    struct hwait *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    sc_buf_init(&w->ans);
    w->last = last;
    w->http10 = http10;
    w->head = head;
    if (c->wq_tail)
        c->wq_tail->next = w;
    else
        c->wq = w;
    c->wq_tail = w;
    c->wq_n++;
    if (last)
        c->no_more = true; /* nothing after it is answered */
    return w;
}

/* Sends `o` now, or queues it behind answers still waiting. */
static void put_answer(sc_httpc_t *c, sc_http_out_t *o, bool last,
                       const sc_http_request_t *req)
{
    bool http10 = req && req->http10;
    bool head = req && req->method == SC_HTTP_HEAD_METHOD;
    if (!c->wq) {
        put_answer_to(c, &c->out, o, last, http10, head);
        if (last)
            closing(c);
        return;
    }
    struct hwait *w = wait_add(c, last, http10, head);
    if (w)
        put_answer_to(c, &w->ans, o, last, http10, head);
    else
        c->no_more = true; /* out of memory: nothing more is answered */
}

/* Answers with an error and closes after it. */
static void fail(sc_httpc_t *c, unsigned status, const char *message)
{
    sc_http_out_t o;
    memset(&o, 0, sizeof o);
    sc_http_api_error(c->svc, &o, status, message);
    put_answer(c, &o, true, NULL);
}

/* sc_query_get_fn over a parsed request's query string. */
static long query_param(void *ud, const char *name, char *out, size_t cap)
{
    const sc_http_request_t *r = ud;
    return sc_http_query_param(r->query, r->query_len, name, out, cap);
}

static void emitted(sc_svc_t *svc, sc_broker_req_t *req);

static void build_in(sc_httpc_t *c, sc_http_in_t *in, char *scope,
                     size_t scope_cap)
{
    const sc_http_request_t *r = &c->rd.req;
    const sc_http_value_t *h = r->hdr;
    bool forwarded = h[SC_HDR_X_FORWARDED_FOR].count ||
                     h[SC_HDR_X_REAL_IP].count || h[SC_HDR_FORWARDED].count;
    *in = (sc_http_in_t){
        .method = r->method,
        .path = r->path,
        .scope = sc_http_query_param(r->query, r->query_len, "scope", scope,
                                     scope_cap) >= 0
                     ? scope
                     : NULL,
        .param = query_param,
        .param_ud = (void *)r,
        .body = r->body ? r->body : "",
        .body_len = r->body_len,
        .authorization =
            h[SC_HDR_AUTHORIZATION].at ? h[SC_HDR_AUTHORIZATION].at : "",
        .loopback = c->loopback && !forwarded,
        .peer = c->peer,
        .done = emitted,
        .done_ctx = c,
    };
}

/* A head with a body to come: refused now (the body is never read), or
 * told to send it. Returns false when the connection is closing. */
static bool on_head(sc_httpc_t *c)
{
    sc_http_in_t in;
    char scope[256];
    sc_http_out_t o;
    memset(&o, 0, sizeof o);
    build_in(c, &in, scope, sizeof scope);
    if (sc_http_api_check(c->svc, &in, &o)) {
        put_answer(c, &o, true, &c->rd.req);
        return false;
    }
    const sc_http_value_t *ex = &c->rd.req.hdr[SC_HDR_EXPECT];
    if (ex->at && strcasecmp(ex->at, "100-continue") == 0)
        sc_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    set_phase(c, P_BODY);
    return true;
}

static void answered(sc_httpc_t *c, sc_http_out_t *o, bool last);

static void on_request(sc_httpc_t *c)
{
    sc_svc_t *svc = c->svc;
    sc_http_in_t in;
    char scope[256];
    sc_http_out_t o;
    if (c->rd.req.upgrade) {
        /* a WebSocket (or other) upgrade at an API path: not here */
        fail(c, 404, "WebSocket endpoint is /ws");
        return;
    }
    build_in(c, &in, scope, sizeof scope);
    sc_http_api_answer(svc, &in, &o);
    bool last = !c->rd.req.keep_alive || c->one_request ||
                atomic_load(&svc->srv->draining);
    if (o.wait) { /* answered in emitted() */
        const sc_http_request_t *r = &c->rd.req;
        struct hwait *w =
            wait_add(c, last, r->http10, r->method == SC_HTTP_HEAD_METHOD);
        if (!w) { /* out of memory: its answer is lost, and what follows */
            o.wait->ctx = NULL;
            c->no_more = true;
            return;
        }
        w->req = o.wait;
        set_phase(c, P_IDLE);
        return;
    }
    answered(c, &o, last);
}

/* Sends the answer of the request just read and readies the next. */
static void answered(sc_httpc_t *c, sc_http_out_t *o, bool last)
{
    put_answer(c, o, last, &c->rd.req);
    SC_COUNT(c->svc->stats.http_requests, 1);
    if (!last)
        set_phase(c, P_IDLE);
}

/* Whether an open c takes no input for now: its queue of answers is
 * full (or ends with a last one), or a read waits to be parsed. */
static bool held_back(const sc_httpc_t *c)
{
    return c->state == C_OPEN &&
           (c->no_more || c->rest || c->held_req || c->wq_n >= HTTPC_INFLIGHT);
}

static bool is_emit(const sc_http_request_t *r)
{
    return r->method == SC_HTTP_POST && strcmp(r->path, "/api/emit") == 0;
}

/* Reads requests out of `n` bytes and answers each, in order. */
static void process(sc_httpc_t *c, const char *b, size_t n)
{
    while (n > 0 && c->state == C_OPEN && !c->no_more && !c->held_req &&
           c->wq_n < HTTPC_INFLIGHT) {
        size_t used = 0;
        enum sc_http_event ev = sc_http_reader_feed(&c->rd, b, n, &used);
        b += used;
        n -= used;
        switch (ev) {
        case SC_HTTP_MORE:
            if (c->phase == P_IDLE && used > 0)
                set_phase(c, P_HEAD);
            return;
        case SC_HTTP_HEAD:
            if (!on_head(c))
                return;
            break;
        case SC_HTTP_REQUEST:
            /* emits may overtake nothing but emits: another request runs
             * after the emits before it (a close after its events) */
            if (c->wq && !is_emit(&c->rd.req))
                c->held_req = true;
            else
                on_request(c);
            if ((c->held_req || c->wq_n >= HTTPC_INFLIGHT) && !c->no_more &&
                n > 0) {
                /* kept until answers leave the queue */
                if (!(c->rest = malloc(n))) {
                    c->no_more = true; /* out of memory: no more */
                    return;
                }
                memcpy(c->rest, b, n);
                c->rest_len = n;
            }
            break;
        case SC_HTTP_ERROR:
            fail(c, c->rd.err.status, c->rd.err.message);
            return;
        }
    }
}

static bool flush(sc_httpc_t *c);

/* The cluster's answer to one of c's emits (sc_broker_done_fn): the ready
 * answers at the head of the queue are sent, in order; with room in the
 * queue again, what was read and kept is parsed and c reads on. */
static void emitted(sc_svc_t *svc, sc_broker_req_t *req)
{
    sc_httpc_t *c = req->ctx;
    for (struct hwait *w = c->wq; w; w = w->next)
        if (w->req == req) {
            sc_http_out_t o;
            sc_http_api_emitted(svc, req, &o);
            put_answer_to(c, &w->ans, &o, w->last, w->http10, w->head);
            SC_COUNT(svc->stats.http_requests, 1);
            w->req = NULL; /* the drain frees req */
            break;
        }
    while (c->wq && !c->wq->req) {
        struct hwait *w = c->wq;
        c->wq = w->next;
        if (!c->wq)
            c->wq_tail = NULL;
        c->wq_n--;
        sc_buf_put(&c->out, sc_buf_str(&w->ans) ? sc_buf_str(&w->ans) : "",
                   sc_buf_len(&w->ans));
        if (w->last)
            closing(c);
        sc_buf_deinit(&w->ans);
        free(w);
    }
    if (!c->wq && c->held_req && c->state == C_OPEN) {
        c->held_req = false;
        on_request(c);
    }
    if (c->rest && c->state == C_OPEN && !c->no_more && !c->held_req &&
        c->wq_n < HTTPC_INFLIGHT) {
        char *rest = c->rest;
        size_t n = c->rest_len;
        c->rest = NULL;
        c->rest_len = 0;
        process(c, rest, n); /* (keeps its own rest if the queue fills) */
        free(rest);
    }
    if (!flush(c))
        return;
    if (c->state == C_OPEN && !c->paused && !held_back(c))
        ev_io_start(svc->loop, &c->rio);
}

/* Writes what is waiting; then closes, lingers or reads on. Returns false
 * when the connection is gone. */
static bool flush(sc_httpc_t *c)
{
    struct ev_loop *loop = c->svc->loop;
    size_t len = sc_buf_len(&c->out);
    while (c->out_off < len) {
        ssize_t w = send(c->fd, sc_buf_str(&c->out) + c->out_off,
                         len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(loop, &c->wio);
            if (len - c->out_off > HTTPC_OUT_MAX && !c->paused) {
                c->paused = true; /* the client does not read its answers */
                ev_io_stop(loop, &c->rio);
            }
            return true;
        }
        if (w <= 0) {
            destroy(c);
            return false;
        }
        c->out_off += (size_t)w;
        if (c->phase == P_IDLE || c->state == C_CLOSING) /* progress */
            c->deadline_us = sc_now_us() + HTTPC_IDLE_TIMEOUT_S * SC_US_PER_SEC;
    }
    ev_io_stop(loop, &c->wio);
    sc_buf_reset(&c->out);
    c->out_off = 0;
    if (c->state == C_CLOSING) {
        shutdown(c->fd, SHUT_WR);
        c->state = C_LINGER;
        c->deadline_us = sc_now_us() + HTTPC_LINGER_S * SC_US_PER_SEC;
        c->paused = false;
        ev_io_start(loop, &c->rio);
    } else if (c->paused) {
        c->paused = false;
        if (!held_back(c))
            ev_io_start(loop, &c->rio);
    }
    return true;
}

static void on_readable(sc_httpc_t *c)
{
    sc_svc_t *svc = c->svc;
    /* a few reads per wake-up, so one busy client does not hold the loop */
    for (int i = 0; i < 4 && !c->paused && !held_back(c); i++) {
        ssize_t n = recv(c->fd, svc->rbuf, SC_READ_CHUNK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            /* the client is done sending (or gone): answer what it sent,
             * then close */
            if (n == 0 && c->state != C_LINGER && sc_buf_len(&c->out)) {
                ev_io_stop(svc->loop, &c->rio);
                c->state = C_CLOSING;
                flush(c);
                return;
            }
            destroy(c);
            return;
        }
        if (c->state == C_LINGER)
            continue; /* dropped */
        if (c->state == C_OPEN)
            process(c, (const char *)svc->rbuf, (size_t)n);
        if (held_back(c)) /* until answers leave the queue (emitted) */
            ev_io_stop(svc->loop, &c->rio);
        if (!flush(c))
            return;
        if (c->state == C_CLOSING)
            return;
        if ((size_t)n < SC_READ_CHUNK)
            break; /* most likely all there was (the watcher says if
                      not): a recv that finds nothing would be one more
                      system call per request, and syscalls are most of
                      this path's time (perf, bench H1) */
    }
}

static void on_rio(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    on_readable((sc_httpc_t *)((char *)w - offsetof(sc_httpc_t, rio)));
}

static void on_wio(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    flush((sc_httpc_t *)((char *)w - offsetof(sc_httpc_t, wio)));
}

/* A probe's target: /healthz or /metrics, with or without a query. */
static bool is_probe(const char *target, size_t len)
{
    size_t pl = path_len(target, len);
    return pl == 8 && (memcmp(target, "/healthz", 8) == 0 ||
                       memcmp(target, "/metrics", 8) == 0);
}

void sc_httpconn_start(sc_svc_t *svc, int fd, sc_admit_ip_t *ip,
                       const char *target, size_t len)
{
    sc_httpc_t *c = NULL;
    size_t open = total_http(svc->srv),
           max = (size_t)svc->srv->cfg->max_connections;
    bool reserve = open >= max && is_probe(target, len);
    if ((open >= max && !(reserve && open < max + HTTPC_PROBE_RESERVE)) ||
        !(c = calloc(1, sizeof *c)) ||
        sc_http_reader_init(&c->rd, svc->srv->cfg->max_body) != SC_OK) {
        if (c)
            free(c);
        /* over the limit (or out of memory): 503, said once and closed */
        sc_buf_t b;
        sc_buf_init(&b);
        sc_http_out_t o;
        memset(&o, 0, sizeof o);
        sc_http_api_error(svc, &o, 503, "too many connections");
        sc_http_put_answer_head(&b, o.status, o.ctype, o.len, true, false);
        sc_buf_put(&b, o.body, o.len);
        sc_buf_reset(&svc->scratch);
        if (b.err == SC_OK)
            (void)send(fd, sc_buf_str(&b), sc_buf_len(&b),
                       MSG_NOSIGNAL | MSG_DONTWAIT);
        sc_buf_deinit(&b);
        close(fd);
        sc_admit_release(svc->srv->admit, ip);
        return;
    }
    c->svc = svc;
    c->fd = fd;
    c->ip = ip;
    c->one_request = reserve;
    sc_buf_init(&c->out);
    sc_listen_peer(fd, c->peer, sizeof c->peer);
    c->loopback = sc_http_peer_is_loopback(c->peer);
    ev_io_init(&c->rio, on_rio, fd, EV_READ);
    ev_io_init(&c->wio, on_wio, fd, EV_WRITE);
    c->next = svc->httpc;
    if (svc->httpc)
        svc->httpc->prev = c;
    svc->httpc = c;
    atomic_fetch_add(&svc->nhttp, 1);
    set_phase(c, P_HEAD); /* the first request is already coming */
    ev_io_start(svc->loop, &c->rio);
    on_readable(c);
}

void sc_httpconn_tick(sc_svc_t *svc, int64_t now)
{
    for (sc_httpc_t *c = svc->httpc, *next; c; c = next) {
        next = c->next;
        if (now < c->deadline_us || c->wq)
            continue; /* (the broker answers every emit) */
        if (c->state == C_OPEN && c->phase != P_IDLE && !c->paused) {
            /* a head or body that did not come in time */
            fail(c, 408,
                 c->phase == P_HEAD ? "request head not sent in time"
                                    : "request body not sent in time");
            flush(c);
        } else {
            destroy(c); /* idle, lingering, or not reading its answers */
        }
    }
}

void sc_httpconn_shutdown(sc_svc_t *svc)
{
    while (svc->httpc)
        destroy(svc->httpc);
}
