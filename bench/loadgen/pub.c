/* The publisher (runs in the parent process, group 0).
 *  scopecast: POST /api/emit with a JSON array of up to --batch events, one
 *             request in flight, HTTP/1.1 keep-alive
 *  nchan:     POST <pub-path> with one message per request, up to --pipeline
 *             requests pipelined on one keep-alive connection
 *  raw:       one WebSocket to <pub-path>, text frames "<scope>\n<payload>"
 *  mqtt:      one MQTT-over-WebSocket client, PUBLISH QoS 0
 * Events are numbered g = 0,1,2...; event g goes to scope g % S with the
 * scope's own sequence s = g / S (so a subscriber that sees a gap knows the
 * numbers of the events it missed). Closed loop (--rate 0): at most --window
 * events may be published and not yet seen by every subscriber: the
 * subscribers decrement shm->remaining[g] as they receive. */
#include "lg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static conn_t P;
static int pep = -1;
static uint8_t *obuf;
static size_t olen, ooff, ocap;
static char *ibuf;
static size_t ilen, icap;
static int inflight;
/* The server answered "connection: close" (scopecast does for requests with
 * a body): reconnect once the answers are read, not an error. */
static int server_closes;
static uint64_t next_g, acked_g, sent_events, errors, reqs;
static int64_t start_ns, last_progress_ns;
static int running;
static uint8_t *tmp;
static size_t tmp_cap;
int64_t pub_lost;
uint64_t pub_forced;

static int is_http(void)
{
    return (cfg.proto == P_SCOPECAST && !cfg.pub_ws) || cfg.proto == P_NCHAN;
}

static void ensure(size_t more)
{
    if (olen + more <= ocap)
        return;
    if (ooff > 0) {
        memmove(obuf, obuf + ooff, olen - ooff);
        olen -= ooff;
        ooff = 0;
    }
    if (olen + more <= ocap)
        return;
    while (olen + more > ocap)
        ocap = ocap ? ocap * 2 : 1 << 20;
    obuf = realloc(obuf, ocap);
}

static void pub_flush(void)
{
    while (ooff < olen) {
        ssize_t w = write(P.fd, obuf + ooff, olen - ooff);
        if (w > 0) {
            ooff += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return;
        lg_log("publisher write: %s", strerror(errno));
        errors++;
        return;
    }
    ooff = olen = 0;
}

int pub_init(int ep)
{
    pep = ep;
    memset(&P, 0, sizeof P);
    P.kind = K_PUB;
    P.last_s = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg.pub_port);
    inet_pton(AF_INET, cfg.host, &sa.sin_addr);
    P.fd = fd;
    P.state = S_CONNECTING;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 &&
        errno != EINPROGRESS) {
        lg_log("publisher connect: %s", strerror(errno));
        return -1;
    }
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &P};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    inflight = 0;
    server_closes = 0;
    olen = ooff = ilen = 0;
    return 0;
}

int pub_ready(void)
{
    return P.state == S_READY;
}

static size_t hdr_value(const char *h, size_t hl, const char *name, char *out,
                        size_t cap)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl < hl; i++) {
        if ((i == 0 || h[i - 1] == '\n') && strncasecmp(h + i, name, nl) == 0) {
            const char *v = h + i + nl;
            while (*v == ' ')
                v++;
            size_t k = 0;
            while (v + k < h + hl && v[k] != '\r' && k + 1 < cap) {
                out[k] = v[k];
                k++;
            }
            out[k] = 0;
            return k;
        }
    }
    return 0;
}

static void http_parse(void)
{
    size_t pos = 0;
    for (;;) {
        char *b = ibuf + pos;
        size_t avail = ilen - pos;
        char *e = memmem(b, avail, "\r\n\r\n", 4);
        if (!e)
            break;
        size_t hl = (size_t)(e - b) + 4, body = 0;
        char v[64];
        int status = avail > 12 ? atoi(b + 9) : 0;
        if (hdr_value(b, hl, "content-length:", v, sizeof v)) {
            body = (size_t)strtoull(v, NULL, 10);
            if (avail < hl + body)
                break;
        } else if (hdr_value(b, hl, "transfer-encoding:", v, sizeof v) &&
                   strstr(v, "chunked")) {
            /* walk chunks until the 0-size one */
            size_t q = hl;
            int done = 0;
            for (;;) {
                char *le = memmem(b + q, avail - q, "\r\n", 2);
                if (!le)
                    break;
                size_t cs = (size_t)strtoull(b + q, NULL, 16);
                size_t after = (size_t)(le - b) + 2;
                if (cs == 0) {
                    char *end = memmem(b + after - 2, avail - (after - 2),
                                       "\r\n\r\n", 4);
                    if (end) {
                        q = (size_t)(end - b) + 4;
                        done = 1;
                    }
                    break;
                }
                if (avail < after + cs + 2)
                    break;
                q = after + cs + 2;
            }
            if (!done)
                break;
            body = q - hl;
        }
        if (status < 200 || status >= 300) {
            errors++;
            if (errors <= 3)
                lg_log("publisher got: %.*s",
                       (int)(hl + body > 300 ? 300 : hl + body), b);
        }
        reqs++;
        if (inflight > 0)
            inflight--;
        if (hdr_value(b, hl, "connection:", v, sizeof v) && strstr(v, "close"))
            server_closes = 1;
        pos += hl + body;
    }
    if (pos > 0) {
        memmove(ibuf, ibuf + pos, ilen - pos);
        ilen -= pos;
    }
}

void pub_io(uint32_t events)
{
    if (P.state == S_CLOSED)
        return;
    if ((events & EPOLLOUT) && P.state == S_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(P.fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            lg_log("publisher connect: %s", strerror(err));
            P.state = S_CLOSED;
            return;
        }
        if (is_http()) {
            P.state = S_READY;
        } else {
            char req[512];
            int n = ws_handshake_req(req, sizeof req, cfg.pub_path,
                                     proto_subprotocol());
            send_all(P.fd, req, (size_t)n);
            P.state = S_HANDSHAKE;
        }
    }
    if (events & EPOLLOUT)
        pub_flush();
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        if (icap - ilen < 65536) {
            icap = icap ? icap * 2 : 1 << 18;
            ibuf = realloc(ibuf, icap);
        }
        ssize_t r = read(P.fd, ibuf + ilen, icap - ilen - 1);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (r <= 0) {
            lg_log("publisher connection closed by the server (%s)",
                   r ? strerror(errno) : "EOF");
            epoll_ctl(pep, EPOLL_CTL_DEL, P.fd, NULL);
            close(P.fd);
            errors++;
            /* reconnect: what was in flight is lost (the window's stall
             * timer accounts for it) */
            if (pub_init(pep) < 0)
                P.state = S_CLOSED;
            return;
        }
        ilen += (size_t)r;
        if (is_http()) {
            http_parse();
            if (server_closes && inflight == 0) {
                epoll_ctl(pep, EPOLL_CTL_DEL, P.fd, NULL);
                close(P.fd);
                if (pub_init(pep) < 0)
                    P.state = S_CLOSED;
                return;
            }
            continue;
        }
        size_t off = 0;
        if (P.state == S_HANDSHAKE) {
            ibuf[ilen] = 0;
            char *e = strstr(ibuf, "\r\n\r\n");
            if (!e)
                continue;
            if (strncmp(ibuf, "HTTP/1.1 101", 12) != 0) {
                lg_log("publisher upgrade refused: %.*s", (int)(e - ibuf),
                       ibuf);
                P.state = S_CLOSED;
                return;
            }
            off = (size_t)(e - ibuf) + 4;
            if (cfg.proto == P_MQTT) {
                uint8_t pkt[80], fr[100];
                int n = mqtt_connect_pkt(pkt, "lg-publisher");
                size_t l = ws_frame(fr, 2, pkt, (size_t)n);
                send_all(P.fd, fr, l);
                P.state = S_OPEN;
            } else {
                P.state = S_READY;
            }
        }
        if (ilen > off)
            ws_feed(&P, (uint8_t *)ibuf + off, ilen - off);
        ilen = 0;
    }
}

static int can_send(size_t count)
{
    if (P.state != S_READY)
        return 0;
    if (cfg.proto == P_SCOPECAST && !cfg.pub_ws)
        return inflight == 0 && olen == ooff;
    if (cfg.proto == P_NCHAN)
        return inflight + (int)count <= cfg.pipeline &&
               olen - ooff < (8u << 20);
    return olen - ooff < (4u << 20);
}

static void send_events(size_t count)
{
    char sc[24];
    uint64_t t = (uint64_t)now_real_ns();
    size_t item = (size_t)cfg.size + 160;
    if (tmp_cap < item * count + 64) {
        tmp_cap = item * count + 64;
        tmp = realloc(tmp, tmp_cap);
    }
    if (cfg.proto == P_SCOPECAST && !cfg.pub_ws) {
        size_t bl = 0;
        tmp[bl++] = '[';
        for (size_t i = 0; i < count; i++) {
            uint64_t g = next_g + i;
            int scope = (int)(g % (uint64_t)cfg.nscopes);
            shm->remaining[g & RMASK] = subs_of_scope(scope);
            scope_name(sc, scope);
            if (i)
                tmp[bl++] = ',';
            bl += (size_t)sprintf((char *)tmp + bl,
                                  "{\"scope\":\"%s\",\"data\":", sc);
            bl += (size_t)make_payload(tmp + bl, cfg.size, t,
                                       g / (uint64_t)cfg.nscopes, g);
            tmp[bl++] = '}';
        }
        tmp[bl++] = ']';
        char h[256];
        int hl = snprintf(h, sizeof h,
                          "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: "
                          "application/json\r\n"
                          "Content-Length: %zu\r\n\r\n",
                          cfg.pub_path, cfg.host, cfg.pub_port, bl);
        ensure((size_t)hl + bl);
        memcpy(obuf + olen, h, (size_t)hl);
        memcpy(obuf + olen + hl, tmp, bl);
        olen += (size_t)hl + bl;
        inflight++;
    } else {
        ensure(count * (item + 300));
        for (size_t i = 0; i < count; i++) {
            uint64_t g = next_g + i;
            int scope = (int)(g % (uint64_t)cfg.nscopes);
            shm->remaining[g & RMASK] = subs_of_scope(scope);
            scope_name(sc, scope);
            uint8_t *o = obuf + olen;
            if (cfg.proto == P_NCHAN) {
                char path[200];
                snprintf(path, sizeof path, cfg.pub_path, sc);
                int hl = sprintf((char *)o,
                                 "POST %s HTTP/1.1\r\nHost: "
                                 "%s:%d\r\nContent-Length: %d\r\n\r\n",
                                 path, cfg.host, cfg.pub_port, cfg.size);
                int pl = make_payload(o + hl, cfg.size, t,
                                      g / (uint64_t)cfg.nscopes, g);
                olen += (size_t)(hl + pl);
                inflight++;
                continue;
            }
            /* WebSocket frame: build the payload after a max-size header,
             * then write the header right before it and mask in place */
            uint8_t *pl = o + 14;
            size_t n;
            if (cfg.proto == P_MQTT) {
                n = mqtt_publish_hdr(pl, sc, (size_t)cfg.size);
                n += (size_t)make_payload(pl + n, cfg.size, t,
                                          g / (uint64_t)cfg.nscopes, g);
            } else if (cfg.proto == P_SCOPECAST) { /* --pub-ws */
                n = (size_t)sprintf(
                    (char *)pl,
                    "{\"op\":\"emit\",\"scope\":\"%s\",\"data\":", sc);
                n += (size_t)make_payload(pl + n, cfg.size, t,
                                          g / (uint64_t)cfg.nscopes, g);
                pl[n++] = '}';
            } else {
                n = (size_t)sprintf((char *)pl, "%s\n", sc);
                n += (size_t)make_payload(pl + n, cfg.size, t,
                                          g / (uint64_t)cfg.nscopes, g);
            }
            uint8_t hdr[14], mask[4];
            size_t hl = ws_frame_hdr(hdr, cfg.proto == P_MQTT ? 2 : 1, n, mask);
            memmove(o + hl, pl, n);
            memcpy(o, hdr, hl);
            ws_mask(o + hl, n, mask);
            olen += hl + n;
        }
    }
    next_g += count;
    sent_events += count;
    pub_flush();
}

void pub_advance(int64_t now)
{
    uint64_t before = acked_g;
    while (acked_g < next_g && shm->remaining[acked_g & RMASK] <= 0)
        acked_g++;
    if (acked_g != before || acked_g == next_g) {
        last_progress_ns = now;
        return;
    }
    /* an event not seen by everyone for 2 s: count it lost and move on */
    if (now - last_progress_ns > 2000000000LL) {
        int32_t r = shm->remaining[acked_g & RMASK];
        pub_lost += r;
        pub_forced++;
        if (pub_forced <= 3)
            lg_log("event %llu still unseen by %d subscribers after 2 s; "
                   "counted lost",
                   (unsigned long long)acked_g, r);
        shm->remaining[acked_g & RMASK] = 0;
        acked_g++;
        last_progress_ns = now;
    }
}

void pub_start(int64_t now)
{
    running = 1;
    start_ns = now;
    last_progress_ns = now;
}

void pub_stop(void)
{
    running = 0;
}

int64_t pub_step(int64_t now)
{
    if (P.state == S_READY && ooff < olen)
        pub_flush();
    if (!running || P.state != S_READY)
        return 20000000;
    pub_advance(now);
    size_t batch = (size_t)cfg.batch;
    if (cfg.rate > 0) {
        uint64_t due_total =
            (uint64_t)((double)(now - start_ns) * cfg.rate / 1e9) + 1;
        if (due_total > next_g) {
            size_t cnt = due_total - next_g;
            /* never fall behind forever: a publisher that cannot keep up
             * publishes in batches */
            if (cnt > batch)
                cnt = batch;
            if (!can_send(cnt))
                return 20000000; /* the reply (or EPOLLOUT) wakes us */
            send_events(cnt);
        }
        int64_t next_due =
            start_ns + (int64_t)((double)next_g * 1e9 / cfg.rate);
        return next_due > now ? next_due - now : 0;
    }
    size_t thresh = (size_t)cfg.window / 4;
    if (thresh > batch)
        thresh = batch;
    if (thresh < 1)
        thresh = 1;
    for (;;) {
        size_t space = (size_t)cfg.window - (size_t)(next_g - acked_g);
        if (next_g - acked_g >= (uint64_t)cfg.window || space < thresh)
            break;
        size_t cnt = space < batch ? space : batch;
        if (!can_send(cnt))
            break;
        send_events(cnt);
    }
    return 20000000;
}

void pub_stats(uint64_t *sent, uint64_t *errs, uint64_t *rq)
{
    *sent = sent_events;
    *errs = errors;
    *rq = reqs;
}

uint64_t pub_next(void)
{
    return next_g;
}

uint64_t pub_acked(void)
{
    return acked_g;
}
