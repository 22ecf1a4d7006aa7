/*
 * loadgen: a WebSocket fan-out load generator for scopecast and its peers.
 *
 * Why a small hand-written client and not libwebsockets: the receive side
 * must read millions of tiny frames per second on ONE core while the server
 * under test has the other one. lws adds a callback per frame, a poll loop
 * that is O(connections) per wakeup and its own buffering and copies; all we
 * need is "read a big chunk, walk the frame headers, look at the first bytes
 * of each payload". So: epoll (edge-triggered), one shared 256 KiB read
 * buffer per process, a streaming frame parser that works in place and only
 * copies the few bytes of a frame that straddles two reads, and reads paced
 * in batches (every --read-us) so one recvmsg() returns many messages.
 *
 * Layout: lg.h (shared types), main.c (options, processes, phases, report),
 * loop.c (per-process event loop, subscribers), ws.c (handshake, framing),
 * proto.c (protocol adapters), pub.c (publishers), hist.c (histogram).
 */
#ifndef LG_H
#define LG_H

#include <stddef.h>
#include <stdint.h>

/* ---- protocols ---------------------------------------------------------- */
enum { P_SCOPECAST, P_RAW, P_NCHAN, P_MQTT };

/* ---- histogram: log-linear, microseconds, <1% error -------------------- */
#define HIST_SUB 128
#define HIST_OCT 40
#define HIST_N (2 * HIST_SUB + HIST_OCT * HIST_SUB)
typedef struct {
    uint64_t b[HIST_N];
    uint64_t n, max;
} hist_t;
void hist_add(hist_t *h, uint64_t us);
void hist_merge(hist_t *dst, const hist_t *src);
uint64_t hist_pct(const hist_t *h, double pct); /* microseconds */

/* ---- configuration ------------------------------------------------------ */
typedef struct {
    int proto;
    char host[64];
    int port;
    int pub_port;       /* the publisher's server (default: port); another
                           node of a cluster publishes to the subscribers' one */
    char sub_path[160]; /* may hold one %s: the scope name */
    char pub_path[160];
    int nsubs, nscopes, size, window, batch, procs, stall, idle;
    int read_us;  /* subscriber read pacing; 0 = read as soon as ready */
    int pipeline; /* HTTP requests in flight (nchan); scopecast: 1 */
    int pub_ws;   /* scopecast: publish with the WebSocket emit op
                     (server needs --client-emit) instead of HTTP */
    double rate;  /* events/s; 0 = closed loop flat out */
    double duration, warmup, drain, settle, connect_timeout;
    int timestamps; /* SO_TIMESTAMPNS */
    int quiet;
    int pids[16], npids; /* server processes: RSS and CPU */
    int concurrent_connects;
    int stall_rcvbuf;
    int rcvbuf; /* SO_RCVBUF of subscribers; 0 = kernel default */
} cfg_t;
extern cfg_t cfg;

/* ---- shared memory between the loadgen processes ----------------------- */
enum { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE, PH_ABORT };
/* closed-loop slots, indexed by global event number */
#define RING (1u << 20)
#define RMASK (RING - 1)
#define MAXG 16

typedef struct {
    uint64_t delivered_total, delivered, bytes, drops, drop_notices, gaps,
        reorders, closed, errors, ready, failed, late, reads, read_bytes,
        drops_setup, gaps_setup;
    uint64_t cpu_measure_ns; /* utime+stime spent during MEASURE */
    int hist_done;
    hist_t hist;
} gstat_t;

typedef struct {
    volatile int phase;
    int ngroups;
    int32_t remaining[RING];
    gstat_t g[MAXG];
} shm_t;
extern shm_t *shm;

/* ---- connections -------------------------------------------------------- */
enum { K_SUB, K_STALL, K_PUB };
enum { S_CONNECTING, S_HANDSHAKE, S_OPEN, S_READY, S_CLOSED };
#define PRE_MAX 256

typedef struct conn {
    int fd, idx, scope;
    uint8_t kind, state, in_ready, fin, op, msg_op, hdr_len, ctrl_len;
    uint8_t hdr[14];
    uint8_t ctrl[128];
    uint64_t f_rem;   /* payload bytes left in the current frame */
    uint64_t f_len;   /* payload length of the current frame */
    uint64_t msg_len; /* bytes of the current (fragmented) message so far */
    uint8_t *pre;     /* first bytes of a message split across reads */
    uint16_t pre_len;
    /* mqtt stream state */
    uint8_t mq_hdr[5], mq_hlen;
    uint32_t mq_rem, mq_len;
    uint8_t *mq_pre;
    uint16_t mq_pre_len;
    int64_t last_s;
    char *hs; /* handshake response so far */
    int hs_len;
} conn_t;

/* ---- per-process group -------------------------------------------------- */
typedef struct {
    int gid, ep;
    conn_t *conns;
    int nconns, first_idx, next_open, connecting;
    uint8_t *rbuf;
    size_t rbuf_sz;
    conn_t **rlist;
    int nready;
    int measuring;
    int64_t rx_ns; /* receive time of the current read (kernel stamp) */
    /* local counters, flushed to shm each sweep */
    gstat_t st;
    uint32_t *ack; /* per-slot local deliveries not yet subtracted */
    uint64_t gmin, gmax;
    int have_g;
} grp_t;
extern grp_t *G;

/* ---- ws.c --------------------------------------------------------------- */
size_t ws_frame(uint8_t *out, int opcode, const uint8_t *p, size_t n);
size_t ws_frame_hdr(uint8_t *out, int opcode, size_t n, uint8_t mask[4]);
void ws_mask(uint8_t *p, size_t n, const uint8_t mask[4]);
int ws_handshake_req(char *out, size_t cap, const char *path,
                     const char *proto);
/* feeds received bytes after the handshake; returns -1 when the peer closed */
int ws_feed(conn_t *c, uint8_t *p, size_t n);
int send_all(int fd, const void *p, size_t n);

/* ---- proto.c ------------------------------------------------------------ */
/* a whole message (or its first PRE_MAX bytes) of total length len */
void proto_message(conn_t *c, int op, const uint8_t *m, size_t n, uint64_t len);
/* binary stream (mqtt) */
void proto_stream(conn_t *c, const uint8_t *p, size_t n);
void proto_on_open(conn_t *c);
int proto_is_stream(void);
const char *proto_subprotocol(void);
void scope_name(char *out, int scope);
int make_payload(uint8_t *out, int size, uint64_t t, uint64_t s, uint64_t g);
int mqtt_connect_pkt(uint8_t *out, const char *client_id);
int mqtt_subscribe_pkt(uint8_t *out, const char *topic, uint16_t pid);
size_t mqtt_publish_hdr(uint8_t *out, const char *topic, size_t payload_len);

/* ---- pub.c -------------------------------------------------------------- */
int pub_init(int ep);
int pub_ready(void);
void pub_io(uint32_t events);
/* publishes what the rate or the window allows; returns ns until next due */
int64_t pub_step(int64_t now_mono);
void pub_stats(uint64_t *sent, uint64_t *errors, uint64_t *reqs);
uint64_t pub_next(void);
uint64_t pub_acked(void);
extern int64_t pub_lost;
extern uint64_t pub_forced;
void pub_start(int64_t now_mono);
void pub_stop(void);
void pub_advance(int64_t now_mono);

/* ---- loop.c ------------------------------------------------------------- */
int group_run(int gid, int first_idx, int n, int nstall);
void group_close_all(void);
void record_event(conn_t *c, uint64_t t, uint64_t s, uint64_t g, uint64_t len);
int subs_of_scope(int scope);
int64_t now_mono_ns(void);
int64_t now_real_ns(void);
void lg_log(const char *fmt, ...);

/* coordinator hook, called by group 0 (the parent) once per sweep */
int coord_tick(int64_t now);

#endif
