/*
 * scopecast: entry point. Loads the configuration (flags > SCOPECAST_* env
 * > JSON file > defaults), installs signal handlers and runs the server
 * until SIGINT/SIGTERM, then drains (docs/PROTOCOL.md "Running scopecast").
 */
#include "config.h"
#include "log.h"
#include "server.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <stdio.h>
#include <string.h>

/* Lock-free atomic: safe to set from the signal handler and to read from
 * every service thread (a volatile sig_atomic_t is only for one thread). */
static _Atomic int stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_requested, 1);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Raises the soft limit on open files toward what --max-connections needs
 * (systems often start at 1024), up to the hard limit. */
static void raise_fd_limit(int max_connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)max_connections + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        sc_log(SC_LOG_WARN,
               "open-file limit %llu is below --max-connections + 256; "
               "raise the hard limit (ulimit -Hn) for that many connections",
               (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
    sc_config_t cfg;
    char err[512];
    int rc = sc_config_load(&cfg, argc, argv, NULL, NULL, err, sizeof err);
    if (rc == SC_CONFIG_HELP) {
        sc_config_print_help(stdout);
        return 0;
    }
    if (rc == SC_CONFIG_VERSION) {
        sc_config_print_version(stdout);
        return 0;
    }
    if (rc != SC_OK) {
        fprintf(stderr, "scopecast: %s\n(see scopecast --help)\n",
                rc == SC_ENOMEM ? "out of memory" : err);
        return 2;
    }
    sc_log_set_level(cfg.log_level);
    install_signals();
    raise_fd_limit(cfg.max_connections);

    sc_server_t srv;
    int status = 1;
    if (sc_server_init(&srv, &cfg, &stop_requested) == SC_OK)
        status = sc_server_run(&srv) == 0 ? 0 : 1;
    sc_server_deinit(&srv);
    sc_config_deinit(&cfg);
    return status;
}
