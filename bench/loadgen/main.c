/* loadgen: options, subscriber processes, the run's phases and the report.
 * See lg.h for why this is a hand-written client. */
#include "lg.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

cfg_t cfg;
shm_t *shm;

static void usage(void)
{
    fprintf(
        stderr,
        "usage: loadgen [options]\n"
        "  --proto scopecast|raw|nchan|mqtt   protocol adapter (default "
        "scopecast)\n"
        "  --host ADDR --port N                server (default "
        "127.0.0.1:8080)\n"
        "  --pub-port N   the publisher's server port (default: --port; "
        "another cluster node)\n"
        "  --sub-path P   subscriber path, %%s = scope (scopecast /ws, "
        "raw|nchan /sub/%%s, mqtt /mqtt)\n"
        "  --pub-path P   publisher path (scopecast /api/emit, raw /pub, nchan "
        "/pub/%%s, mqtt /mqtt)\n"
        "  --pub-ws       scopecast: publish with WebSocket emit ops on /ws "
        "(needs --client-emit)\n"
        "  --subs N       subscribers (default 1000)      --scopes S   scopes "
        "(default 1)\n"
        "  --size B       payload bytes (default 64)      --stall K    extra "
        "subscribers that never read\n"
        "  --rate E       events/s; 0 = closed loop flat out (default 0)\n"
        "  --deliveries-rate D  target deliveries/s (sets --rate = D / "
        "subscribers per event)\n"
        "  --window W     closed loop: events in flight (default 256)\n"
        "  --batch B      events per publish request/write (default 32)\n"
        "  --pipeline N   HTTP requests in flight for nchan (default 64)\n"
        "  --duration S   measured seconds (default 10)   --warmup S (default "
        "2)  --drain S (default 3)\n"
        "  --read-us U    read subscribers every U us in batches (default "
        "2000; 0 = as soon as ready)\n"
        "  --procs P      subscriber processes (default: as the fd limit "
        "needs)\n"
        "  --idle         connect and subscribe only, then measure server RSS "
        "per connection\n"
        "  --settle S     idle mode: seconds to wait before sampling RSS "
        "(default 3)\n"
        "  --server-pid P[,P...]  server processes to sample RSS and CPU from\n"
        "                 (server_cpu_pct is their sum, server_cpu_pcts "
        "each's)\n"
        "  --no-timestamps  do not use SO_TIMESTAMPNS\n"
        "  --connects N   handshakes in flight per process (default 200)\n"
        "  --rcvbuf BYTES SO_RCVBUF of subscriber sockets (default 0 = kernel "
        "autotuning)\n"
        "  --quiet\n"
        "Prints a RESULT line of key=value pairs on stdout.\n");
}

/* ---- server process sampling ------------------------------------------- */
static long rss_kb(int pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0) {
            v = strtol(line + kl, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static long server_rss(const char *key)
{
    long s = 0;
    for (int i = 0; i < cfg.npids; i++) {
        long v = rss_kb(cfg.pids[i], key);
        if (v > 0)
            s += v;
    }
    return s;
}

/* CPU seconds of every --server-pid process (each[i]) and their sum */
static double server_cpu_s(double *each)
{
    double s = 0;
    long hz = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < cfg.npids; i++) {
        each[i] = 0;
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", cfg.pids[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        if (!p)
            continue;
        unsigned long ut = 0, st = 0;
        /* fields after ')': state(3) ... utime(14) stime(15) */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                   &ut, &st) == 2) {
            each[i] = (double)(ut + st) / (double)hz;
            s += each[i];
        }
    }
    return s;
}

/* busy and total jiffies of every core (cpu0, cpu1, ...) from /proc/stat */
#define MAXCPU 64
typedef struct {
    unsigned long long busy[MAXCPU], total[MAXCPU];
    int n;
} cpustat_t;

static void read_cpustat(cpustat_t *cs)
{
    char line[512];
    FILE *f = fopen("/proc/stat", "r");
    cs->n = 0;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        int id;
        unsigned long long v[8] = {0};
        if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9')
            continue;
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &id,
                   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                   &v[7]) < 5 ||
            id >= MAXCPU)
            continue;
        /* user nice system idle iowait irq softirq steal */
        cs->busy[id] = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        cs->total[id] = cs->busy[id] + v[3] + v[4];
        if (id + 1 > cs->n)
            cs->n = id + 1;
    }
    fclose(f);
}

/* ---- coordinator -------------------------------------------------------- */
static cpustat_t cs0, cs1;
static int64_t t_start, t_phase, t_last_print;
static int expected_ready;
static uint64_t r_at_measure, r_at_end, rb_at_measure, rb_at_end;
static uint64_t d_at_measure, d_last_print, pub_at_measure, pub_at_end,
    d_at_end;
static double scpu0, scpu1, measured_s, pcpu0[16], pcpu1[16];
static long rss0, rss_m0, rss_m1, rss_idle;
static int64_t t_ready;

static uint64_t sum(size_t off)
{
    uint64_t s = 0;
    for (int i = 0; i < shm->ngroups; i++)
        s += *(uint64_t *)((char *)&shm->g[i] + off);
    return s;
}
#define SUM(f) sum(offsetof(gstat_t, f))

static void set_phase(int ph, int64_t now)
{
    __atomic_store_n(&shm->phase, ph, __ATOMIC_RELEASE);
    t_phase = now;
}

int coord_tick(int64_t now)
{
    uint64_t sent, errs, rq;
    switch (shm->phase) {
    case PH_CONNECT: {
        int ready = (int)SUM(ready), failed = (int)SUM(failed);
        if (now - t_last_print > 1000000000LL) {
            t_last_print = now;
            lg_log("connecting: %d/%d ready, %d failed", ready, expected_ready,
                   failed);
        }
        if (failed > 0 ||
            now - t_start > (int64_t)(cfg.connect_timeout * 1e9)) {
            lg_log("giving up: %d/%d subscribers ready, %d failed", ready,
                   expected_ready, failed);
            set_phase(PH_ABORT, now);
            return -1;
        }
        if (ready < expected_ready)
            return 0;
        if (!t_ready) {
            t_ready = now;
            lg_log("%d subscribers ready in %.2f s", ready,
                   (double)(now - t_start) / 1e9);
        }
        if (cfg.idle) {
            if (now - t_ready >= (int64_t)(cfg.settle * 1e9)) {
                rss_idle = server_rss("VmRSS:");
                set_phase(PH_DONE, now);
            }
            return 0;
        }
        if (!pub_ready())
            return 0;
        set_phase(PH_WARMUP, now);
        pub_start(now);
        t_last_print = now;
        return 0;
    }
    case PH_WARMUP:
        pub_step(now);
        if (now - t_phase >= (int64_t)(cfg.warmup * 1e9)) {
            d_at_measure = d_last_print = SUM(delivered_total);
            r_at_measure = SUM(reads);
            rb_at_measure = SUM(read_bytes);
            pub_stats(&sent, &errs, &rq);
            pub_at_measure = sent;
            scpu0 = server_cpu_s(pcpu0);
            read_cpustat(&cs0);
            rss_m0 = server_rss("VmRSS:");
            set_phase(PH_MEASURE, now);
            t_last_print = now;
        }
        return 0;
    case PH_MEASURE:
        pub_step(now);
        if (now - t_last_print >= 1000000000LL) {
            uint64_t d = SUM(delivered_total);
            double dt = (double)(now - t_last_print) / 1e9;
            lg_log("%5.1fs  %9.0f deliveries/s  in flight %llu",
                   (double)(now - t_phase) / 1e9,
                   (double)(d - d_last_print) / dt,
                   (unsigned long long)(pub_next() - pub_acked()));
            d_last_print = d;
            t_last_print = now;
        }
        if (now - t_phase >= (int64_t)(cfg.duration * 1e9)) {
            d_at_end = SUM(delivered_total);
            r_at_end = SUM(reads);
            rb_at_end = SUM(read_bytes);
            measured_s = (double)(now - t_phase) / 1e9;
            scpu1 = server_cpu_s(pcpu1);
            read_cpustat(&cs1);
            rss_m1 = server_rss("VmRSS:");
            pub_stats(&sent, &errs, &rq);
            pub_at_end = sent;
            pub_stop();
            set_phase(PH_DRAIN, now);
        }
        return 0;
    case PH_DRAIN:
        pub_advance(now);
        if (pub_acked() == pub_next() ||
            now - t_phase >= (int64_t)(cfg.drain * 1e9)) {
            for (uint64_t g = pub_acked(); g < pub_next(); g++)
                if (shm->remaining[g & RMASK] > 0)
                    pub_lost += shm->remaining[g & RMASK];
            set_phase(PH_DONE, now);
        }
        return 0;
    default:
        return -1;
    }
}

static void parse_pids(const char *s)
{
    while (*s && cfg.npids < 16) {
        cfg.pids[cfg.npids++] = atoi(s);
        const char *c = strchr(s, ',');
        if (!c)
            break;
        s = c + 1;
    }
}

int main(int argc, char **argv)
{
    double deliveries_rate = 0;
    cfg.proto = P_SCOPECAST;
    strcpy(cfg.host, "127.0.0.1");
    cfg.port = 8080;
    cfg.nsubs = 1000;
    cfg.nscopes = 1;
    cfg.size = 64;
    cfg.window = 256;
    cfg.batch = 32;
    cfg.pipeline = 64;
    cfg.duration = 10;
    cfg.warmup = 2;
    cfg.drain = 3;
    cfg.settle = 3;
    cfg.read_us = 2000;
    cfg.timestamps = 1;
    cfg.connect_timeout = 120;
    cfg.concurrent_connects = 200;
    cfg.stall_rcvbuf = 4096;
    static struct option lo[] = {
        {"proto", 1, 0, 'P'},         {"host", 1, 0, 'h'},
        {"port", 1, 0, 'p'},          {"sub-path", 1, 0, 1},
        {"pub-path", 1, 0, 2},        {"subs", 1, 0, 'n'},
        {"scopes", 1, 0, 's'},        {"size", 1, 0, 'z'},
        {"stall", 1, 0, 3},           {"rate", 1, 0, 'r'},
        {"deliveries-rate", 1, 0, 4}, {"window", 1, 0, 'w'},
        {"batch", 1, 0, 'b'},         {"pipeline", 1, 0, 5},
        {"duration", 1, 0, 'd'},      {"warmup", 1, 0, 6},
        {"drain", 1, 0, 7},           {"read-us", 1, 0, 8},
        {"procs", 1, 0, 9},           {"idle", 0, 0, 10},
        {"settle", 1, 0, 11},         {"server-pid", 1, 0, 12},
        {"no-timestamps", 0, 0, 13},  {"connects", 1, 0, 14},
        {"rcvbuf", 1, 0, 15},         {"pub-ws", 0, 0, 16},
        {"pub-port", 1, 0, 17},       {"quiet", 0, 0, 'q'},
        {"help", 0, 0, 'H'},          {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "P:h:p:n:s:z:r:w:b:d:qH", lo, NULL)) !=
           -1) {
        switch (o) {
        case 'P':
            if (!strcmp(optarg, "scopecast"))
                cfg.proto = P_SCOPECAST;
            else if (!strcmp(optarg, "raw"))
                cfg.proto = P_RAW;
            else if (!strcmp(optarg, "nchan"))
                cfg.proto = P_NCHAN;
            else if (!strcmp(optarg, "mqtt"))
                cfg.proto = P_MQTT;
            else {
                usage();
                return 2;
            }
            break;
        case 'h':
            snprintf(cfg.host, sizeof cfg.host, "%s", optarg);
            break;
        case 'p':
            cfg.port = atoi(optarg);
            break;
        case 1:
            snprintf(cfg.sub_path, sizeof cfg.sub_path, "%s", optarg);
            break;
        case 2:
            snprintf(cfg.pub_path, sizeof cfg.pub_path, "%s", optarg);
            break;
        case 'n':
            cfg.nsubs = atoi(optarg);
            break;
        case 's':
            cfg.nscopes = atoi(optarg);
            break;
        case 'z':
            cfg.size = atoi(optarg);
            break;
        case 3:
            cfg.stall = atoi(optarg);
            break;
        case 'r':
            cfg.rate = atof(optarg);
            break;
        case 4:
            deliveries_rate = atof(optarg);
            break;
        case 'w':
            cfg.window = atoi(optarg);
            break;
        case 'b':
            cfg.batch = atoi(optarg);
            break;
        case 5:
            cfg.pipeline = atoi(optarg);
            break;
        case 'd':
            cfg.duration = atof(optarg);
            break;
        case 6:
            cfg.warmup = atof(optarg);
            break;
        case 7:
            cfg.drain = atof(optarg);
            break;
        case 8:
            cfg.read_us = atoi(optarg);
            break;
        case 9:
            cfg.procs = atoi(optarg);
            break;
        case 10:
            cfg.idle = 1;
            break;
        case 11:
            cfg.settle = atof(optarg);
            break;
        case 12:
            parse_pids(optarg);
            break;
        case 13:
            cfg.timestamps = 0;
            break;
        case 14:
            cfg.concurrent_connects = atoi(optarg);
            break;
        case 15:
            cfg.rcvbuf = atoi(optarg);
            break;
        case 16:
            cfg.pub_ws = 1;
            break;
        case 17:
            cfg.pub_port = atoi(optarg);
            break;
        case 'q':
            cfg.quiet = 1;
            break;
        default:
            usage();
            return o == 'H' ? 0 : 2;
        }
    }
    if (cfg.pub_port <= 0)
        cfg.pub_port = cfg.port;
    if (!cfg.sub_path[0])
        strcpy(cfg.sub_path, cfg.proto == P_SCOPECAST ? "/ws"
                             : cfg.proto == P_MQTT    ? "/mqtt"
                                                      : "/sub/%s");
    if (!cfg.pub_path[0])
        strcpy(cfg.pub_path, cfg.proto == P_SCOPECAST
                                 ? (cfg.pub_ws ? "/ws" : "/api/emit")
                             : cfg.proto == P_MQTT  ? "/mqtt"
                             : cfg.proto == P_NCHAN ? "/pub/%s"
                                                    : "/pub");
    if (cfg.nsubs < 1 || cfg.nscopes < 1 || cfg.nscopes > cfg.nsubs ||
        cfg.window < 1 || cfg.batch < 1 || cfg.window >= (int)(RING / 4)) {
        fprintf(stderr, "loadgen: bad --subs/--scopes/--window/--batch\n");
        return 2;
    }
    if (deliveries_rate > 0)
        cfg.rate = deliveries_rate / ((double)cfg.nsubs / cfg.nscopes);
    if (cfg.size < 48)
        cfg.size = 48;

    /* file descriptors: as many as allowed; split into processes beyond */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    long per_proc = (long)rl.rlim_cur - 64;
    int total = cfg.nsubs + cfg.stall;
    if (cfg.procs <= 0)
        cfg.procs = (int)((total + per_proc - 1) / per_proc);
    if (cfg.procs > MAXG)
        cfg.procs = MAXG;
    if ((total + cfg.procs - 1) / cfg.procs > per_proc) {
        fprintf(stderr,
                "loadgen: %d connections need more than %d processes at %ld "
                "fds each\n",
                total, MAXG, per_proc);
        return 2;
    }

    shm = mmap(NULL, sizeof(shm_t), PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    shm->ngroups = cfg.procs;
    shm->phase = PH_CONNECT;
    signal(SIGPIPE, SIG_IGN);
    rss0 = server_rss("VmRSS:");
    expected_ready = cfg.nsubs + cfg.stall;
    t_start = now_mono_ns();

    /* group 0 = this process (publisher, stalled subscribers, coordinator) */
    int per = cfg.nsubs / cfg.procs;
    pid_t kids[MAXG];
    int first = per + cfg.nsubs % cfg.procs;
    for (int gi = 1; gi < cfg.procs; gi++) {
        pid_t pid = fork();
        if (pid == 0) {
            int rc = group_run(gi, first + (gi - 1) * per, per, 0);
            _exit(rc ? 1 : 0);
        }
        kids[gi] = pid;
    }
    group_run(0, 0, first, cfg.stall);
    if (shm->phase != PH_DONE)
        shm->phase = PH_ABORT;
    for (int gi = 1; gi < cfg.procs; gi++)
        waitpid(kids[gi], NULL, 0);
    group_close_all();

    if (shm->phase == PH_ABORT) {
        printf("RESULT error=setup ready=%llu failed=%llu\n",
               (unsigned long long)SUM(ready), (unsigned long long)SUM(failed));
        return 1;
    }
    if (cfg.idle) {
        double per_conn =
            cfg.nsubs ? (double)(rss_idle - rss0) * 1024.0 / cfg.nsubs : 0;
        printf("RESULT mode=idle subs=%d rss_before_kb=%ld rss_after_kb=%ld "
               "bytes_per_conn=%.0f\n",
               cfg.nsubs, rss0, rss_idle, per_conn);
        return 0;
    }
    hist_t h;
    memset(&h, 0, sizeof h);
    uint64_t cpu = 0;
    for (int i = 0; i < shm->ngroups; i++) {
        hist_merge(&h, &shm->g[i].hist);
        cpu += shm->g[i].cpu_measure_ns;
    }
    uint64_t sent, errs, rq;
    pub_stats(&sent, &errs, &rq);
    double dps =
        measured_s > 0 ? (double)(d_at_end - d_at_measure) / measured_s : 0;
    double eps =
        measured_s > 0 ? (double)(pub_at_end - pub_at_measure) / measured_s : 0;
    double lg_cpu = measured_s > 0 ? 100.0 * (double)cpu / 1e9 / measured_s : 0;
    double sv_cpu =
        measured_s > 0 && cfg.npids ? 100.0 * (scpu1 - scpu0) / measured_s : -1;
    /* what else ran on the machine meanwhile: all cores' busy time minus
     * the server's and ours (tells how clean the measurement was) */
    char cores[256] = "";
    double all_busy = 0;
    for (int i = 0; i < cs1.n && i < cs0.n; i++) {
        double tot = (double)(cs1.total[i] - cs0.total[i]);
        double b =
            tot > 0 ? 100.0 * (double)(cs1.busy[i] - cs0.busy[i]) / tot : 0;
        all_busy += b;
        size_t l = strlen(cores);
        snprintf(cores + l, sizeof cores - l, "%score%d_busy_pct=%.0f",
                 i ? " " : "", i, b);
    }
    double other = all_busy - lg_cpu - (sv_cpu > 0 ? sv_cpu : 0);
    if (other < 0)
        other = 0;
    /* each server process's share, in --server-pid order (several
     * processes: cluster nodes, Redis) */
    char each[200] = "";
    if (cfg.npids > 1 && measured_s > 0) {
        size_t l = (size_t)snprintf(each, sizeof each, " server_cpu_pcts=");
        for (int i = 0; i < cfg.npids && l < sizeof each; i++)
            l += (size_t)snprintf(each + l, sizeof each - l, "%s%.0f",
                                  i ? "," : "",
                                  100.0 * (pcpu1[i] - pcpu0[i]) / measured_s);
    }
    static const char *pn[] = {"scopecast", "raw", "nchan", "mqtt"};
    printf("RESULT proto=%s subs=%d scopes=%d size=%d stall=%d rate=%.0f "
           "window=%d batch=%d "
           "seconds=%.2f deliveries_per_s=%.0f events_per_s=%.0f "
           "mbytes_per_s=%.1f "
           "p50_us=%llu p99_us=%llu p999_us=%llu max_us=%llu samples=%llu "
           "drops=%llu drop_notices=%llu gaps=%llu drops_outside=%llu "
           "gaps_outside=%llu reorders=%llu lost=%lld closed=%llu errors=%llu "
           "pub_errors=%llu requests=%llu loadgen_cpu_pct=%.0f "
           "loadgen_ns_per_delivery=%.0f server_cpu_pct=%.0f "
           "server_rss_kb_start=%ld server_rss_kb_end=%ld procs=%d "
           "reads_per_s=%.0f bytes_per_read=%.0f "
           "other_cpu_pct=%.0f %s events_sent=%llu deliveries_total=%llu%s\n",
           pn[cfg.proto], cfg.nsubs, cfg.nscopes, cfg.size, cfg.stall, cfg.rate,
           cfg.window, cfg.batch, measured_s, dps, eps,
           (double)SUM(bytes) / measured_s / 1e6,
           (unsigned long long)hist_pct(&h, 50),
           (unsigned long long)hist_pct(&h, 99),
           (unsigned long long)hist_pct(&h, 99.9), (unsigned long long)h.max,
           (unsigned long long)h.n, (unsigned long long)SUM(drops),
           (unsigned long long)SUM(drop_notices), (unsigned long long)SUM(gaps),
           (unsigned long long)SUM(drops_setup),
           (unsigned long long)SUM(gaps_setup),
           (unsigned long long)SUM(reorders), (long long)pub_lost,
           (unsigned long long)SUM(closed), (unsigned long long)SUM(errors),
           (unsigned long long)errs, (unsigned long long)rq, lg_cpu,
           d_at_end > d_at_measure
               ? (double)cpu / (double)(d_at_end - d_at_measure)
               : 0,
           sv_cpu, rss_m0, rss_m1, cfg.procs,
           (double)(r_at_end - r_at_measure) / measured_s,
           r_at_end > r_at_measure ? (double)(rb_at_end - rb_at_measure) /
                                         (double)(r_at_end - r_at_measure)
                                   : 0,
           other, cores, (unsigned long long)sent,
           (unsigned long long)SUM(delivered_total), each);
    return 0;
}
