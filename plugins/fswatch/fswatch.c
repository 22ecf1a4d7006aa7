/*
 * fswatch: a scopecast plugin that turns the changes in a directory tree
 * into events of one scope (live reload of a page, rebuild triggers, file
 * lists that stay current).
 *
 * Model
 *   One inotify instance watches `dir` and every directory below it, except
 *   ignored ones and symbolic links. Directories created or moved in later
 *   are watched as they appear, and what they already hold is reported as
 *   changed (a `mkdir -p a/b && echo > a/b/f` can finish before the watch of
 *   a/ exists). Watches of directories moved away are dropped; those of
 *   deleted ones end with them (IN_IGNORED). A change is a name created,
 *   deleted or moved in or out (IN_CREATE, IN_DELETE, IN_MOVED_FROM/TO), a
 *   file closed after writing (IN_CLOSE_WRITE: the write is complete; the
 *   many IN_MODIFY of a write in progress are not watched) or changed
 *   attributes (IN_ATTRIB: chmod, touch).
 *
 *   Changes are collected as a set of paths relative to `dir`
 *   ('/'-separated, "sub/x.txt"; "." is `dir` itself) and emitted as ONE
 *   event,
 *       {"scope": SCOPE, "paths": [sorted, unique], "data": {"count": N}}
 *   once the burst has been quiet for debounce_ms, and at the latest
 *   max_delay_ms after its first change, so a steady stream of changes still
 *   gets an event every max_delay_ms. An event holds at most max_paths
 *   paths; past that, changes are still noticed but their paths are left
 *   out and the data says so: {"count": N, "truncated": true} (the paths are
 *   not all there: treat it as "anything may have changed"). A lost inotify
 *   queue (IN_Q_OVERFLOW) is such an event too, with "." among its paths
 *   (room permitting); the tree is then scanned again for directories it
 *   missed. A name that is not valid UTF-8 is reported as its directory.
 *   Paths are sorted byte-wise (the server sorts them too).
 *
 * Threads
 *   None of its own. init, shutdown and every callback (the inotify fd's
 *   watch and the coalescing timer) run on the plugin loop, so the state
 *   needs no lock. That loop also serves connections: one wake-up reads at
 *   most READS_PER_WAKE buffers and returns (the fd watch is level-triggered
 *   and calls again), but a directory moved in is scanned at once, in time
 *   proportional to its size.
 *
 * Ownership
 *   The state (fsw_t) owns the inotify fd, the fd watch, the timer, the
 *   table of watched directories and the pending set; shutdown (or a failed
 *   init) stops the watch and the timer, closes the fd and frees it all. At
 *   most one timer exists, one-shot: it is stopped when it fires and started
 *   again while the burst is not over.
 *
 * Config: a JSON object (an unknown key, a wrong type or a value out of
 * range fails init; null is the default):
 *   dir           required: the directory to watch
 *   scope         the scope of the events (default "fswatch")
 *   debounce_ms   quiet time that ends a burst (default 50; 0..60000)
 *   max_delay_ms  longest wait after a burst's first change (default 200;
 *                 debounce_ms..600000)
 *   ignore        names never watched nor reported: fnmatch(3) patterns
 *                 matched against a file's or directory's own name, not its
 *                 path, e.g. [".git", "node_modules", "*.swp"]
 *   max_paths     paths in one event (default 1000; 1..10000, the most the
 *                 server takes in one event)
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* DT_DIR, DT_UNKNOWN */
#endif
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* realpath */
#endif

#include <scopecast/plugin.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#define DEFAULT_SCOPE "fswatch"
#define DEFAULT_DEBOUNCE_MS 50
#define DEFAULT_MAX_DELAY_MS 200
#define DEFAULT_MAX_PATHS 1000
#define MAX_PATHS SC_PLUGIN_MAX_PATHS /* the server's limit */
#define READS_PER_WAKE 16    /* buffers read per wake-up of the fd watch */
#define READ_BUF (64 * 1024) /* >= one event with the longest name */
#define EARLY_S 0.001        /* a timer this early counts as on time */
#define SHOWN_MAX 200        /* config strings are quoted up to this */

/* What every directory is watched for. */
#define DIR_MASK                                                               \
    (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE |    \
     IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | \
     IN_EXCL_UNLINK)

/* One watched directory: its watch descriptor and its path relative to the
 * root ("" for the root itself). */
typedef struct wdir {
    int wd;
    char *rel;
} wdir_t;

/* A set of owned strings: open addressing with linear probing, at most
 * half full; strings are only added, and all removed at once. */
typedef struct pathset {
    char **slot;
    size_t cap; /* 0 or a power of two */
    size_t n;
} pathset_t;

typedef struct fsw {
    sc_host_t *host;
    char *root; /* realpath() of the configured dir */
    char *scope;
    double debounce;  /* seconds */
    double max_delay; /* seconds */
    size_t max_paths;
    char **ignore; /* nignore fnmatch patterns */
    size_t nignore;

    int fd; /* inotify; -1 when none */
    sc_plugin_watch_t *watch;
    sc_plugin_timer_t *timer; /* NULL while no burst is pending */
    wdir_t *dirs;             /* sorted by wd */
    size_t ndirs, capdirs;

    /* The burst: changes noticed since the last event. */
    pathset_t pending;
    bool burst;
    bool truncated;   /* a path was left out (max_paths, no memory) */
    double first;     /* monotonic seconds of its first change */
    double last;      /* and of its latest */
    bool warned_full; /* the inotify watch limit was logged */

    _Alignas(struct inotify_event) char buf[READ_BUF];
} fsw_t;

static void note(fsw_t *w, char *rel);

/* ---- small helpers ----------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* "dir/name", or "name" when dir is the root (""). NULL: no memory. */
static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s)
        return NULL;
    if (a) {
        memcpy(s, dir, a);
        s[a++] = '/';
    }
    memcpy(s + a, name, b + 1);
    return s;
}

/* The offset of the first byte of `s` that is not part of valid UTF-8
 * (overlong forms, surrogates and values past U+10FFFF are invalid), or
 * strlen(s) when it all is. */
static size_t utf8_valid_prefix(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (s[i]) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) /* also stops at the NUL */
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return i;
}

/* Makes `rel` valid UTF-8 by cutting it back to the directory of its first
 * invalid component ("." when that is the root). */
static void utf8_or_parent(char *rel)
{
    size_t bad = utf8_valid_prefix(rel);
    if (rel[bad] == '\0')
        return;
    while (bad > 0 && rel[bad] != '/')
        bad--;
    if (bad == 0)
        strcpy(rel, "."); /* rel holds at least one byte past the cut */
    else
        rel[bad] = '\0';
}

static bool is_ignored(const fsw_t *w, const char *name)
{
    for (size_t i = 0; i < w->nignore; i++)
        if (fnmatch(w->ignore[i], name, 0) == 0)
            return true;
    return false;
}

/* ---- the pending set --------------------------------------------------- */

static size_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return (size_t)h;
}

/* The slot holding `str`, or the empty one where it belongs. cap > n. */
static char **ps_slot(const pathset_t *s, const char *str)
{
    size_t mask = s->cap - 1, i = hash_str(str) & mask;
    while (s->slot[i] && strcmp(s->slot[i], str) != 0)
        i = (i + 1) & mask;
    return &s->slot[i];
}

static int ps_grow(pathset_t *s)
{
    size_t cap = s->cap ? s->cap * 2 : 64;
    pathset_t t = {calloc(cap, sizeof(char *)), cap, s->n};
    if (!t.slot)
        return -1;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slot[i])
            *ps_slot(&t, s->slot[i]) = s->slot[i];
    free(s->slot);
    *s = t;
    return 0;
}

static void ps_clear(pathset_t *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        free(s->slot[i]);
        s->slot[i] = NULL;
    }
    s->n = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- the table of watched directories ---------------------------------- */

/* The first index whose wd is >= wd. */
static size_t dirs_lower(const fsw_t *w, int wd)
{
    size_t lo = 0, hi = w->ndirs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->dirs[mid].wd < wd)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static wdir_t *dirs_get(fsw_t *w, int wd)
{
    size_t i = dirs_lower(w, wd);
    return i < w->ndirs && w->dirs[i].wd == wd ? &w->dirs[i] : NULL;
}

/* Records (or renames) the directory of `wd`; rel is copied. */
static int dirs_put(fsw_t *w, int wd, const char *rel)
{
    char *copy = strdup(rel);
    if (!copy)
        return -1;
    size_t i = dirs_lower(w, wd);
    if (i < w->ndirs && w->dirs[i].wd == wd) {
        free(w->dirs[i].rel);
        w->dirs[i].rel = copy;
        return 0;
    }
    if (w->ndirs == w->capdirs) {
        size_t cap = w->capdirs ? w->capdirs * 2 : 16;
        wdir_t *d = realloc(w->dirs, cap * sizeof *d);
        if (!d) {
            free(copy);
            return -1;
        }
        w->dirs = d;
        w->capdirs = cap;
    }
    memmove(&w->dirs[i + 1], &w->dirs[i], (w->ndirs - i) * sizeof *w->dirs);
    w->dirs[i] = (wdir_t){wd, copy};
    w->ndirs++;
    return 0;
}

static void dirs_remove(fsw_t *w, wdir_t *d)
{
    size_t i = (size_t)(d - w->dirs);
    free(d->rel);
    memmove(&w->dirs[i], &w->dirs[i + 1], (w->ndirs - i - 1) * sizeof *w->dirs);
    w->ndirs--;
}

/* Drops the watches of `rel` and of every directory below it (moved away:
 * their paths no longer hold). Their IN_IGNORED finds nothing later. */
static void forget_tree(fsw_t *w, const char *rel)
{
    size_t len = strlen(rel), keep = 0;
    for (size_t i = 0; i < w->ndirs; i++) {
        const char *r = w->dirs[i].rel;
        if (strncmp(r, rel, len) == 0 && (r[len] == '\0' || r[len] == '/')) {
            inotify_rm_watch(w->fd, w->dirs[i].wd); /* EINVAL: gone already */
            free(w->dirs[i].rel);
        } else {
            w->dirs[keep++] = w->dirs[i];
        }
    }
    w->ndirs = keep;
}

/* ---- watching ---------------------------------------------------------- */

/* Adds the watch of directory `rel`. Returns 0 or an errno value; failures
 * of directories below the root are logged here (a directory that vanished
 * or is not one any more is not worth a line). */
static int watch_dir(fsw_t *w, const char *rel)
{
    char *path = rel[0] ? join(w->root, rel) : strdup(w->root);
    if (!path)
        return ENOMEM;
    int wd = inotify_add_watch(w->fd, path, DIR_MASK);
    int e = wd < 0 ? errno : 0;
    if (e == 0 && dirs_put(w, wd, rel) != 0) {
        inotify_rm_watch(w->fd, wd);
        e = ENOMEM;
    }
    if (e && rel[0] && e != ENOENT && e != ENOTDIR) {
        if (e != ENOSPC)
            sc_host_log(w->host, SC_PLUGIN_LOG_WARN, "cannot watch %s: %s",
                        path, strerror(e));
        else if (!w->warned_full)
            sc_host_log(w->host, SC_PLUGIN_LOG_ERROR,
                        "cannot watch %s: the inotify watch limit "
                        "(fs.inotify.max_user_watches) is reached; changes "
                        "in it and in other new directories are missed",
                        path);
        w->warned_full = w->warned_full || e == ENOSPC;
    }
    free(path);
    return e;
}

/* Watches `top` and every directory below it (a work list, not recursion:
 * trees can be deep). With `report`, every name found is a change (the
 * tree is new to us). Returns watch_dir()'s result for `top`. */
static int scan(fsw_t *w, const char *top, bool report)
{
    char **todo = malloc(16 * sizeof *todo);
    size_t n = 0, cap = 16;
    int top_result = ENOMEM;
    if (!todo || !(todo[n] = strdup(top))) {
        free(todo);
        return ENOMEM;
    }
    n++;
    for (bool first = true; n > 0; first = false) {
        char *rel = todo[--n];
        int e = watch_dir(w, rel);
        if (first)
            top_result = e;
        char *path = e ? NULL : rel[0] ? join(w->root, rel) : strdup(w->root);
        int dfd =
            path ? open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                 : -1;
        DIR *dir = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (dfd >= 0 && !dir)
            close(dfd);
        struct dirent *de;
        while (dir && (de = readdir(dir)) != NULL) {
            const char *name = de->d_name;
            if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
                is_ignored(w, name))
                continue;
            bool sub = de->d_type == DT_DIR;
            struct stat st;
            if (de->d_type == DT_UNKNOWN &&
                fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                sub = S_ISDIR(st.st_mode);
            char *child = join(rel, name);
            if (report)
                note(w, child ? strdup(child) : NULL);
            if (!child || !sub) {
                free(child);
                continue;
            }
            if (n == cap) {
                char **t = realloc(todo, 2 * cap * sizeof *todo);
                if (!t) {
                    sc_host_log(w->host, SC_PLUGIN_LOG_ERROR,
                                "no memory: %s/%s is not watched", w->root,
                                child);
                    free(child);
                    continue;
                }
                todo = t;
                cap *= 2;
            }
            todo[n++] = child;
        }
        if (dir)
            closedir(dir);
        free(path);
        free(rel);
    }
    free(todo);
    return top_result;
}

/* ---- the burst and its event ------------------------------------------- */

/* When the burst's event is due: quiet for debounce, or max_delay after
 * its first change, whichever comes first. */
static double due(const fsw_t *w)
{
    double quiet = w->last + w->debounce, latest = w->first + w->max_delay;
    return quiet < latest ? quiet : latest;
}

/* Records a change of `rel` (owned; NULL: no memory, the path is lost). */
static void note(fsw_t *w, char *rel)
{
    double t = now_s();
    if (!w->burst) {
        w->burst = true;
        w->first = t;
    }
    w->last = t;
    if (!rel) {
        w->truncated = true;
        return;
    }
    utf8_or_parent(rel);
    pathset_t *s = &w->pending;
    if (s->n < w->max_paths && (s->n + 1) * 2 > s->cap && ps_grow(s) != 0) {
        w->truncated = true;
        free(rel);
        return;
    }
    char **slot = s->cap ? ps_slot(s, rel) : NULL;
    if (slot && *slot) { /* already there */
        free(rel);
    } else if (!slot || s->n >= w->max_paths) {
        w->truncated = true;
        free(rel);
    } else {
        *slot = rel;
        s->n++;
    }
}

/* Emits the burst as one event and starts a new one. */
static void flush(fsw_t *w)
{
    pathset_t *s = &w->pending;
    const char **paths = s->n ? malloc(s->n * sizeof *paths) : NULL;
    size_t n = 0;
    if (paths) {
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i])
                paths[n++] = s->slot[i];
        qsort(paths, n, sizeof *paths, cmp_str);
    } else if (s->n) {
        w->truncated = true;
    }
    char data[64];
    snprintf(data, sizeof data, "{\"count\":%zu%s}", n,
             w->truncated ? ",\"truncated\":true" : "");
    sc_plugin_emit_t e = {
        .scope = w->scope, .paths = paths, .npaths = n, .data_json = data};
    if (sc_host_emit(w->host, &e, NULL) != 0) {
        /* Refused: more paths than the server takes, or no memory. Say
         * that something changed, without the paths. */
        snprintf(data, sizeof data, "{\"count\":0,\"truncated\":true}");
        e.paths = NULL;
        e.npaths = 0;
        int rc = sc_host_emit(w->host, &e, NULL);
        sc_host_log(w->host, SC_PLUGIN_LOG_WARN,
                    "the server refused an event of %zu paths into %s; %s", n,
                    w->scope,
                    rc == 0 ? "emitted it without paths" : "nothing emitted");
    }
    free(paths);
    ps_clear(s);
    w->burst = false;
    w->truncated = false;
}

static void on_timer(void *ud);

/* Makes sure a timer is running while a burst is pending. The timer is due
 * at or before due(): a later change only moves due() later, and the timer
 * then starts again for the rest. */
static void arm(fsw_t *w)
{
    if (!w->burst || w->timer)
        return;
    double after = due(w) - now_s();
    if (sc_host_timer_start(w->host, after > 0 ? after : 0, 0, on_timer, w,
                            &w->timer) != 0) {
        w->timer = NULL;
        sc_host_log(w->host, SC_PLUGIN_LOG_WARN,
                    "cannot start a timer: emitting at once");
        flush(w);
    }
}

static void on_timer(void *ud)
{
    fsw_t *w = ud;
    sc_host_timer_stop(w->timer); /* one-shot: it stays allocated */
    w->timer = NULL;
    if (!w->burst)
        return;
    if (due(w) - now_s() > EARLY_S)
        arm(w); /* changes came after it was started */
    else
        flush(w);
}

/* ---- inotify ----------------------------------------------------------- */

static void handle(fsw_t *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        sc_host_log(w->host, SC_PLUGIN_LOG_WARN,
                    "the inotify queue overflowed (fs.inotify."
                    "max_queued_events): changes in %s were lost; reporting "
                    "\".\" and looking for new directories",
                    w->root);
        note(w, strdup("."));
        w->truncated = true; /* the paths of this burst are not all known */
        scan(w, "", false);
        return;
    }
    wdir_t *d = dirs_get(w, ev->wd);
    if (!d) /* a watch already dropped (forget_tree) */
        return;
    if (ev->mask & IN_IGNORED) {
        if (d->rel[0] == '\0')
            sc_host_log(w->host, SC_PLUGIN_LOG_ERROR,
                        "%s is not watched any more (deleted or unmounted)",
                        w->root);
        dirs_remove(w, d);
        return;
    }
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        /* A directory below the root was reported by its parent. */
        if (d->rel[0] == '\0') {
            sc_host_log(w->host, SC_PLUGIN_LOG_WARN, "%s was %s", w->root,
                        ev->mask & IN_MOVE_SELF ? "moved" : "deleted");
            note(w, strdup("."));
        }
        return;
    }
    if (ev->len == 0 || ev->name[0] == '\0' || is_ignored(w, ev->name))
        return;
    char *rel = join(d->rel, ev->name); /* d is not used after this */
    if (rel && (ev->mask & IN_ISDIR)) {
        if (ev->mask & IN_MOVED_FROM)
            forget_tree(w, rel);
        if (ev->mask & (IN_CREATE | IN_MOVED_TO))
            scan(w, rel, true);
    }
    note(w, rel);
}

static void on_readable(void *ud, int fd, unsigned events)
{
    fsw_t *w = ud;
    (void)events;
    for (int r = 0; r < READS_PER_WAKE; r++) {
        ssize_t got = read(fd, w->buf, sizeof w->buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            sc_host_log(w->host, SC_PLUGIN_LOG_ERROR, "reading inotify: %s",
                        strerror(errno));
        if (got <= 0)
            break;
        for (size_t off = 0;
             off + sizeof(struct inotify_event) <= (size_t)got;) {
            const struct inotify_event *ev =
                (const struct inotify_event *)(const void *)(w->buf + off);
            handle(w, ev);
            off += sizeof *ev + ev->len;
        }
    }
    arm(w);
}

/* ---- config ------------------------------------------------------------ */

/* An integer key in [min, max] into *out. null keeps the default. */
static int get_int(json_object *v, const char *key, int64_t min, int64_t max,
                   int64_t *out, char *err, size_t errlen)
{
    if (json_object_is_type(v, json_type_null))
        return 0;
    int64_t x = json_object_get_int64(v);
    if (!json_object_is_type(v, json_type_int) || x < min || x > max) {
        errf(err, errlen, "\"%s\" must be an integer from %lld to %lld", key,
             (long long)min, (long long)max);
        return -1;
    }
    *out = x;
    return 0;
}

static int get_str(json_object *v, const char *key, const char **out, char *err,
                   size_t errlen)
{
    if (json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_string) ||
        json_object_get_string_len(v) == 0) {
        errf(err, errlen, "\"%s\" must be a non-empty string", key);
        return -1;
    }
    *out = json_object_get_string(v);
    return 0;
}

static int get_ignore(fsw_t *w, json_object *v, char *err, size_t errlen)
{
    if (json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_array)) {
        errf(err, errlen, "\"ignore\" must be an array of name patterns");
        return -1;
    }
    size_t n = json_object_array_length(v);
    w->ignore = calloc(n ? n : 1, sizeof *w->ignore);
    if (!w->ignore) {
        errf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(v, i);
        const char *s = json_object_get_string(p);
        if (!json_object_is_type(p, json_type_string) || !*s ||
            strchr(s, '/')) {
            errf(err, errlen,
                 "\"ignore\"[%zu] must be a non-empty name pattern without "
                 "'/' (patterns match a file's or directory's own name)",
                 i);
            return -1;
        }
        if (!(w->ignore[w->nignore++] = strdup(s))) {
            errf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

static int parse_config(fsw_t *w, const char *text, char *err, size_t errlen)
{
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        errf(err, errlen, "out of memory");
        return -1;
    }
    size_t len = strlen(text);
    json_object *cfg = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    while (end < len && strchr(" \t\r\n", text[end]))
        end++;
    if (!cfg || jerr != json_tokener_success || end != len ||
        !json_object_is_type(cfg, json_type_object)) {
        errf(err, errlen, "the config must be one JSON object (%s)",
             jerr == json_tokener_continue  ? "it ends too early"
             : jerr != json_tokener_success ? json_tokener_error_desc(jerr)
             : !cfg || end != len           ? "text after it"
                                            : "another value");
        json_object_put(cfg);
        return -1;
    }

    const char *dir = NULL, *scope = DEFAULT_SCOPE;
    int64_t debounce = DEFAULT_DEBOUNCE_MS, max_delay = DEFAULT_MAX_DELAY_MS;
    int64_t max_paths = DEFAULT_MAX_PATHS;
    int rc = 0;
    json_object_object_foreach(cfg, key, val)
    {
        if (strcmp(key, "dir") == 0)
            rc = get_str(val, key, &dir, err, errlen);
        else if (strcmp(key, "scope") == 0)
            rc = get_str(val, key, &scope, err, errlen);
        else if (strcmp(key, "debounce_ms") == 0)
            rc = get_int(val, key, 0, 60000, &debounce, err, errlen);
        else if (strcmp(key, "max_delay_ms") == 0)
            rc = get_int(val, key, 0, 600000, &max_delay, err, errlen);
        else if (strcmp(key, "max_paths") == 0)
            rc = get_int(val, key, 1, MAX_PATHS, &max_paths, err, errlen);
        else if (strcmp(key, "ignore") == 0)
            rc = get_ignore(w, val, err, errlen);
        else {
            errf(err, errlen,
                 "unknown key \"%.*s\" (known: dir, scope, debounce_ms, "
                 "max_delay_ms, ignore, max_paths)",
                 SHOWN_MAX, key);
            rc = -1;
        }
        if (rc != 0)
            break;
    }
    if (rc == 0 && !dir) {
        errf(err, errlen,
             "\"dir\" is required: the directory to watch, as in "
             "--plugin fswatch.so:{\"dir\":\"/srv/site\"}");
        rc = -1;
    }
    if (rc == 0 && max_delay < debounce) {
        errf(err, errlen,
             "\"max_delay_ms\" (%lld) must be at least \"debounce_ms\" "
             "(%lld)",
             (long long)max_delay, (long long)debounce);
        rc = -1;
    }
    struct stat st;
    if (rc == 0 &&
        (!(w->root = realpath(dir, NULL)) || stat(w->root, &st) != 0)) {
        errf(err, errlen, "\"dir\" '%.*s': %s", SHOWN_MAX, dir,
             strerror(errno));
        rc = -1;
    }
    if (rc == 0 && !S_ISDIR(st.st_mode)) {
        errf(err, errlen, "\"dir\" '%.*s': not a directory", SHOWN_MAX, dir);
        rc = -1;
    }
    if (rc == 0 && !(w->scope = strdup(scope))) {
        errf(err, errlen, "out of memory");
        rc = -1;
    }
    w->debounce = (double)debounce / 1000.0;
    w->max_delay = (double)max_delay / 1000.0;
    w->max_paths = (size_t)max_paths;
    json_object_put(cfg);
    return rc;
}

/* ---- the plugin -------------------------------------------------------- */

static void fsw_free(fsw_t *w)
{
    if (!w)
        return;
    sc_host_watch_stop(w->watch); /* before the fd is closed */
    sc_host_timer_stop(w->timer);
    if (w->fd >= 0)
        close(w->fd); /* removes every inotify watch */
    for (size_t i = 0; i < w->ndirs; i++)
        free(w->dirs[i].rel);
    free(w->dirs);
    ps_clear(&w->pending);
    free(w->pending.slot);
    for (size_t i = 0; i < w->nignore; i++)
        free(w->ignore[i]);
    free(w->ignore);
    free(w->scope);
    free(w->root);
    free(w);
}

static int fsw_init(sc_host_t *host, const char *config_json, void **state,
                    char *err, size_t errlen)
{
    fsw_t *w = calloc(1, sizeof *w);
    char *presence = NULL;
    int e;
    if (!w) {
        errf(err, errlen, "out of memory");
        return -1;
    }
    w->host = host;
    w->fd = -1;
    if (parse_config(w, config_json ? config_json : "{}", err, errlen) != 0)
        goto fail;

    /* The host checks a scope when it is used: ask it now, not at the
     * first change. */
    if (sc_host_presence(host, w->scope, &presence) != 0) {
        errf(err, errlen, "\"scope\" '%.*s' is not a valid scope", SHOWN_MAX,
             w->scope);
        goto fail;
    }
    sc_host_free(presence);

    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        e = errno;
        errf(err, errlen, "inotify_init1: %s%s", strerror(e),
             e == EMFILE ? " (fs.inotify.max_user_instances is reached)" : "");
        goto fail;
    }
    e = scan(w, "", false);
    if (e != 0) {
        errf(err, errlen, "cannot watch '%s': %s%s", w->root, strerror(e),
             e == ENOSPC ? " (fs.inotify.max_user_watches is reached)" : "");
        goto fail;
    }
    if (sc_host_watch_start(host, w->fd, SC_PLUGIN_READ, on_readable, w,
                            &w->watch) != 0) {
        w->watch = NULL;
        errf(err, errlen, "cannot watch the inotify fd (no memory)");
        goto fail;
    }
    sc_host_log(host, SC_PLUGIN_LOG_INFO,
                "watching %s (%zu directories) into scope %s, debounce %.0f "
                "ms, at most %.0f ms",
                w->root, w->ndirs, w->scope, w->debounce * 1000,
                w->max_delay * 1000);
    *state = w;
    return 0;
fail:
    fsw_free(w);
    return -1;
}

static void fsw_shutdown(void *state)
{
    fsw_free(state);
}

SC_PLUGIN_EXPORT const sc_plugin_t scopecast_plugin = {
    .abi = SC_PLUGIN_ABI,
    .name = "fswatch",
    .init = fsw_init,
    .shutdown = fsw_shutdown,
};
