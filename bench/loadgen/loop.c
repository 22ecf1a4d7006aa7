/* The per-process event loop: opens this group's subscriber connections,
 * reads them in paced batches, counts deliveries, latency, drops and gaps,
 * and acknowledges events for the closed-loop publisher. Group 0 (the parent
 * process) also runs the publisher and the coordinator. */
#include "lg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

grp_t *G;

int64_t now_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t now_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void lg_log(const char *fmt, ...)
{
    if (cfg.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen[%d]: ", G ? G->gid : -1);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int subs_of_scope(int scope)
{
    return cfg.nsubs / cfg.nscopes + (scope < cfg.nsubs % cfg.nscopes ? 1 : 0);
}

static int64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
           (int64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

void conn_ready(conn_t *c)
{
    if (c->state == S_READY)
        return;
    c->state = S_READY;
    if (c->kind != K_PUB)
        G->st.ready++;
}

static inline void ack_g(uint64_t g)
{
    G->ack[g & RMASK]++;
    if (!G->have_g) {
        G->gmin = G->gmax = g;
        G->have_g = 1;
    } else if (g < G->gmin) {
        G->gmin = g;
    } else if (g > G->gmax) {
        G->gmax = g;
    }
}

void record_event(conn_t *c, uint64_t t, uint64_t s, uint64_t g, uint64_t len)
{
    G->st.delivered_total++;
    if (G->measuring) {
        G->st.delivered++;
        G->st.bytes += len;
        int64_t lat = G->rx_ns - (int64_t)t;
        hist_add(&G->st.hist, lat > 0 ? (uint64_t)lat / 1000 : 0);
    }
    int64_t expect = c->last_s + 1;
    if ((int64_t)s != expect) {
        if ((int64_t)s > expect) {
            uint64_t miss = (uint64_t)((int64_t)s - expect);
            if (G->measuring)
                G->st.gaps += miss;
            else
                G->st.gaps_setup += miss;
            if (miss < RING / 2) /* let the publisher's window move on */
                for (int64_t j = expect; j < (int64_t)s; j++)
                    ack_g((uint64_t)j * (uint64_t)cfg.nscopes +
                          (uint64_t)c->scope);
        } else {
            G->st.reorders++;
        }
    }
    if ((int64_t)s > c->last_s)
        c->last_s = (int64_t)s;
    ack_g(g);
}

static void flush_acks(void)
{
    if (!G->have_g)
        return;
    for (uint64_t x = G->gmin; x <= G->gmax; x++) {
        uint32_t v = G->ack[x & RMASK];
        if (v) {
            __atomic_fetch_sub(&shm->remaining[x & RMASK], (int32_t)v,
                               __ATOMIC_RELAXED);
            G->ack[x & RMASK] = 0;
        }
    }
    G->have_g = 0;
}

static void flush_stats(void)
{
    gstat_t *d = &shm->g[G->gid], *s = &G->st;
#define PUT(f) __atomic_store_n(&d->f, s->f, __ATOMIC_RELAXED)
    PUT(delivered_total);
    PUT(delivered);
    PUT(bytes);
    PUT(drops);
    PUT(drop_notices);
    PUT(gaps);
    PUT(reorders);
    PUT(closed);
    PUT(errors);
    PUT(ready);
    PUT(failed);
    PUT(reads);
    PUT(drops_setup);
    PUT(gaps_setup);
    PUT(read_bytes);
#undef PUT
}

static void conn_fail(conn_t *c, const char *why)
{
    if (c->state == S_CLOSED)
        return;
    int was_connecting = c->state < S_READY;
    if (was_connecting) {
        G->st.failed++;
        G->connecting -= (c->state <= S_HANDSHAKE);
        if (G->st.failed <= 3)
            lg_log("conn %d failed: %s", c->idx, why);
    } else {
        G->st.closed++;
        if (G->st.closed <= 3)
            lg_log("conn %d closed: %s", c->idx, why);
    }
    c->state = S_CLOSED;
    epoll_ctl(G->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static void open_conn(conn_t *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        G->st.failed++;
        c->state = S_CLOSED;
        if (G->st.failed <= 3)
            lg_log("socket: %s", strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->kind == K_STALL) {
        int sz = cfg.stall_rcvbuf;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    } else {
        if (cfg.timestamps)
            setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
        /* a large receive buffer (set before connect, so the window scale
         * fits) means fewer window-update ACKs; on loopback each ACK is
         * processed in the reader's context */
        if (cfg.rcvbuf > 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cfg.rcvbuf,
                       sizeof cfg.rcvbuf);
    }
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg.port);
    inet_pton(AF_INET, cfg.host, &sa.sin_addr);
    c->fd = fd;
    c->state = S_CONNECTING;
    c->last_s = -1;
    G->connecting++;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 &&
        errno != EINPROGRESS) {
        conn_fail(c, strerror(errno));
        return;
    }
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    epoll_ctl(G->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void on_writable(conn_t *c)
{
    if (c->state != S_CONNECTING)
        return;
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
        conn_fail(c, strerror(err));
        return;
    }
    char req[512], path[200], sc[24];
    scope_name(sc, c->scope);
    snprintf(path, sizeof path, cfg.sub_path, sc);
    int n = ws_handshake_req(req, sizeof req, path, proto_subprotocol());
    c->state = S_HANDSHAKE;
    if (send_all(c->fd, req, (size_t)n) < 0)
        conn_fail(c, "handshake write");
}

/* bytes of the HTTP upgrade response; returns offset of the first frame
 * byte, 0 when more is needed, -1 on refusal */
static int on_handshake(conn_t *c, const uint8_t *p, size_t n)
{
    if (!c->hs)
        c->hs = malloc(2048);
    size_t k = n;
    if ((size_t)c->hs_len + k > 2047)
        k = 2047 - (size_t)c->hs_len;
    memcpy(c->hs + c->hs_len, p, k);
    int old = c->hs_len;
    c->hs_len += (int)k;
    c->hs[c->hs_len] = 0;
    char *e = strstr(c->hs, "\r\n\r\n");
    if (!e)
        return c->hs_len >= 2047 ? -1 : 0;
    int hl = (int)(e - c->hs) + 4;
    if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
        char *nl = strchr(c->hs, '\r');
        if (nl)
            *nl = 0;
        G->st.failed++;
        if (G->st.failed <= 3)
            lg_log("conn %d: upgrade refused: %s", c->idx, c->hs);
        G->st.failed--; /* conn_fail counts it */
        return -1;
    }
    free(c->hs);
    c->hs = NULL;
    c->hs_len = 0;
    c->state = S_OPEN;
    G->connecting--;
    proto_on_open(c);
    return hl - old;
}

/* one read; returns 1 if the socket may have more */
static int read_conn(conn_t *c)
{
    struct iovec iov = {G->rbuf, G->rbuf_sz};
    union {
        char b[CMSG_SPACE(sizeof(struct timespec)) + 64];
        struct cmsghdr align;
    } cb;
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (cfg.timestamps) {
        mh.msg_control = cb.b;
        mh.msg_controllen = sizeof cb.b;
    }
    ssize_t r = recvmsg(c->fd, &mh, MSG_DONTWAIT);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        conn_fail(c, strerror(errno));
        return 0;
    }
    if (r == 0) {
        conn_fail(c, "EOF");
        return 0;
    }
    G->st.reads++;
    G->st.read_bytes += (uint64_t)r;
    int64_t ts = 0;
    if (cfg.timestamps) {
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm;
             cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET &&
                cm->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec t;
                memcpy(&t, CMSG_DATA(cm), sizeof t);
                ts = (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
            }
        }
    }
    G->rx_ns = ts ? ts : now_real_ns();
    uint8_t *p = G->rbuf;
    size_t n = (size_t)r;
    if (c->state == S_HANDSHAKE) {
        int off = on_handshake(c, p, n);
        if (off < 0) {
            conn_fail(c, "upgrade refused");
            return 0;
        }
        if (off == 0)
            return 1;
        p += off;
        n -= (size_t)off;
    }
    if (n && ws_feed(c, p, n) < 0) {
        conn_fail(c, "closed by server");
        return 0;
    }
    if (c->kind == K_STALL && c->state == S_READY)
        return 0; /* stalled: never read again */
    return (size_t)r == G->rbuf_sz;
}

void group_close_all(void)
{
    for (int i = 0; i < G->nconns; i++)
        if (G->conns[i].fd >= 0 && G->conns[i].state != S_CLOSED)
            close(G->conns[i].fd);
}

int group_run(int gid, int first_idx, int n, int nstall)
{
    static grp_t g;
    G = &g;
    g.gid = gid;
    g.first_idx = first_idx;
    g.nconns = n + nstall;
    g.conns = calloc((size_t)g.nconns, sizeof(conn_t));
    g.rbuf_sz = 256 * 1024;
    g.rbuf = malloc(g.rbuf_sz);
    g.rlist = calloc((size_t)g.nconns + 1, sizeof(conn_t *));
    g.ack = calloc(RING, sizeof(uint32_t));
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < g.nconns; i++) {
        conn_t *c = &g.conns[i];
        c->fd = -1;
        c->idx = i < n ? first_idx + i : cfg.nsubs + (i - n);
        c->scope = c->idx % cfg.nscopes;
        c->kind = i < n ? K_SUB : K_STALL;
        c->state = S_CLOSED;
    }
    if (gid == 0 && !cfg.idle && pub_init(g.ep) < 0)
        return -1;

    struct epoll_event evs[1024];
    int64_t cpu0 = 0;
    int in_measure = 0;
    for (;;) {
        int64_t t0 = now_mono_ns();
        int ph = shm->phase;
        if (ph == PH_DONE || ph == PH_ABORT)
            break;
        /* phase bookkeeping */
        if (ph == PH_MEASURE && !in_measure) {
            in_measure = 1;
            g.measuring = 1;
            cpu0 = cpu_ns();
        } else if (ph > PH_MEASURE && in_measure == 1) {
            in_measure = 2;
            g.measuring = 0;
            shm->g[gid].cpu_measure_ns = (uint64_t)(cpu_ns() - cpu0);
            memcpy(&shm->g[gid].hist, &g.st.hist, sizeof(hist_t));
            __atomic_store_n(&shm->g[gid].hist_done, 1, __ATOMIC_RELEASE);
        }
        /* open connections, a bounded number at a time */
        while (g.next_open < g.nconns && g.connecting < cfg.concurrent_connects)
            open_conn(&g.conns[g.next_open++]);

        int64_t tmo_ns;
        if (g.nready > 0 || cfg.read_us > 0)
            tmo_ns = 0;
        else
            tmo_ns = 20 * 1000000;
        if (gid == 0 && cfg.read_us == 0 && g.nready == 0) {
            int64_t d = pub_step(t0);
            if (d >= 0 && d < tmo_ns)
                tmo_ns = d;
        }
        struct timespec ts = {tmo_ns / 1000000000, tmo_ns % 1000000000};
        int ne = epoll_pwait2(g.ep, evs, 1024, &ts, NULL);
        for (int i = 0; i < ne; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->kind == K_PUB) {
                pub_io(evs[i].events);
                continue;
            }
            if (c->state == S_CLOSED)
                continue;
            if (evs[i].events & EPOLLOUT)
                on_writable(c);
            if (c->state == S_CLOSED)
                continue;
            if ((evs[i].events &
                 (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) &&
                !c->in_ready) {
                if (c->kind == K_STALL && c->state == S_READY)
                    continue;
                c->in_ready = 1;
                g.rlist[g.nready++] = c;
            }
        }
        /* one read per ready connection per sweep */
        int keep = 0;
        for (int i = 0; i < g.nready; i++) {
            conn_t *c = g.rlist[i];
            if (c->state != S_CLOSED && read_conn(c) && c->state != S_CLOSED)
                g.rlist[keep++] = c;
            else
                c->in_ready = 0;
        }
        g.nready = keep;
        flush_acks();
        flush_stats();
        if (gid == 0 && coord_tick(now_mono_ns()) < 0)
            break;
        if (cfg.read_us > 0 && g.nready == 0) {
            int64_t until = t0 + (int64_t)cfg.read_us * 1000;
            struct timespec ab = {until / 1000000000, until % 1000000000};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ab, NULL);
        }
    }
    if (in_measure == 1) {
        shm->g[gid].cpu_measure_ns = (uint64_t)(cpu_ns() - cpu0);
        memcpy(&shm->g[gid].hist, &g.st.hist, sizeof(hist_t));
        shm->g[gid].hist_done = 1;
    }
    flush_stats();
    return 0;
}
