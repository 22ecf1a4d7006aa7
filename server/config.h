/*
 * scopecast server: configuration.
 *
 * One struct, sc_config_t, holds every option. Its defaults live in one
 * place, sc_config_defaults. sc_config_load fills it from four sources, each
 * overriding the previous one:
 *
 *     defaults < JSON config file < SCOPECAST_* environment < command line
 *
 * The config file is named by --config FILE or SCOPECAST_CONFIG (the flag
 * wins). It holds one JSON object whose keys are the flag names in snake
 * case ("max_message", "jwt_secret"); an unknown key or a value of the wrong
 * JSON type is an error, and null leaves the option as it was.
 *
 * Command line: "--flag value" or "--flag=value". Boolean flags (--demo,
 * --client-emit, --require-auth) take no value; "--demo=false" turns one off
 * again. Environment booleans accept 1/0, true/false, yes/no, on/off; an
 * empty environment variable counts as unset.
 *
 * Every error is reported with a message naming its source (the flag, the
 * variable or the file key) and what was expected.
 *
 * Thread safety: none of these functions share state; a loaded sc_config_t
 * is read-only and may then be read from any thread.
 */
#ifndef SC_SERVER_CONFIG_H
#define SC_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common.h"

/* The installed web/ folder; the build may point it elsewhere. */
#ifndef SC_DEFAULT_WEB_ROOT
#define SC_DEFAULT_WEB_ROOT "web"
#endif

#ifndef SC_VERSION
#define SC_VERSION "0.1.0"
#endif

/* Positive returns of sc_config_load: not errors, the caller prints and
 * exits with status 0. */
enum sc_config_action {
    SC_CONFIG_HELP = 1,    /* --help or -h: call sc_config_print_help */
    SC_CONFIG_VERSION = 2, /* --version: call sc_config_print_version */
};

/* A list of strings an option may give several times (--plugin). */
typedef struct sc_strlist {
    char **v; /* n owned strings */
    size_t n;
} sc_strlist_t;

typedef struct sc_config {
    char *host;           /* listen address; owned, never NULL */
    int port;             /* 0..65535; 0 picks any free port */
    char *config_file;    /* the JSON file read, or NULL; owned */
    int heartbeat;        /* seconds between pings; >= 1 */
    size_t maxsize;       /* per-subscription queue length; >= 1 */
    size_t max_message;   /* WebSocket message limit in bytes; >= 1 */
    size_t max_body;      /* HTTP body limit in bytes; >= 1 */
    bool client_emit;     /* anonymous clients may emit */
    char *api_key;        /* NULL: the API is refused (see api_loopback) */
    bool api_loopback;    /* without a key, loopback callers may use the API */
    char *jwt_secret;     /* NULL: no JWT, connections anonymous; owned */
    bool require_auth;    /* kept for old configs: now the default */
    bool allow_anonymous; /* with a secret, token-less connections may in */
    char *anonymous_scopes;     /* comma-separated patterns for anonymous
                                   connections; NULL: none with a secret, any
                                   without one; owned */
    bool require_exp;           /* tokens without exp are refused */
    char *allowed_origins;      /* comma-separated Origin patterns; NULL: the
                                   page's own host only; owned */
    bool require_origin;        /* upgrades without an Origin header refused */
    int drain_timeout;          /* seconds to drain on shutdown; >= 0 */
    char *web_root;             /* folder served at /; owned, never NULL */
    int log_level;              /* enum sc_log_level */
    bool demo;                  /* demo mode: POST /demo/token */
    int threads;                /* service threads; >= 1 */
    int max_subscriptions;      /* per connection; >= 1 */
    int rate_limit;             /* requests per second per connection; 0: off */
    size_t max_meta;            /* bytes of one subscription's meta */
    size_t max_meta_total;      /* bytes of meta per connection */
    int max_presence;           /* connections listed per presence reply */
    int presence_grace;         /* seconds a dropped connection's presence
                                   is held (resumable); 0: off */
    int max_connections;        /* per process; >= 1 */
    int max_connections_per_ip; /* open sockets per client address; 0: off */
    size_t max_queued_bytes;    /* events queued per connection; 0: off */
    size_t max_queued_total;    /* events queued in all (each once); 0: off */
    sc_strlist_t plugins;       /* "PATH[:CONFIG_JSON]", in load order */
    char *disconnect_slow;      /* scope patterns whose slow consumers are
                                   closed; NULL: none (drop); owned */
    int slow_grace;             /* seconds over the limit before that */
    char *history;              /* --history rules (history_spec.h); NULL:
                                   none (demo mode: SC_DEMO_HISTORY);
                                   owned, checked by sc_config_load */
    size_t history_max_bytes;   /* what all kept events may cost; 0: no
                                   limit */
    char *broker;               /* --broker redis://... (checked by
                                   sc_config_load); NULL: one node; owned */
} sc_config_t;

/* The history demo mode keeps when --history is not given. */
#define SC_DEMO_HISTORY "room:*=1000/3600s"

/* A getenv replacement, so tests need not touch the process environment.
 * Returns a borrowed string valid until sc_config_load returns, or NULL. */
typedef const char *(*sc_getenv_fn)(void *ud, const char *name);

/* Fills `cfg` (caller-owned storage, previous content ignored) with the
 * defaults. Returns SC_OK, or SC_ENOMEM with `cfg` holding nothing (all
 * strings NULL). Either way sc_config_deinit may be called.
 * Thread: any. */
int sc_config_defaults(sc_config_t *cfg);

/* Fills `cfg` from defaults, the config file, the environment and argv, in
 * that order of increasing priority. argv[0] is the program name and is
 * skipped. `getenv_fn` NULL means the process environment (getenv); `ud` is
 * passed to it. `err` (may be NULL when errlen is 0) receives a one-line
 * message on failure.
 * Returns:
 *   SC_OK              cfg is filled; release it with sc_config_deinit.
 *   SC_CONFIG_HELP     --help or -h was given (anywhere before "--").
 *   SC_CONFIG_VERSION  --version was given (and no --help).
 *   SC_EINVAL          a bad flag, value, variable or file; see err.
 *   SC_ENOMEM          out of memory.
 * On every return but SC_OK, cfg holds nothing (strings NULL) and need not
 * be released, though sc_config_deinit is harmless.
 * Thread: any (getenv_fn NULL: getenv is not safe against setenv). */
int sc_config_load(sc_config_t *cfg, int argc, char **argv,
                   sc_getenv_fn getenv_fn, void *ud, char *err, size_t errlen);

/* Frees the strings `cfg` owns and zeroes it. NULL is a no-op.
 * Thread: caller owns cfg. */
void sc_config_deinit(sc_config_t *cfg);

/* Prints the usage text: every option with its environment variable and
 * default, then the precedence rules.
 * Thread: any. */
void sc_config_print_help(FILE *f);

/* Prints "scopecast <version>\n".
 * Thread: any. */
void sc_config_print_version(FILE *f);

#endif
