/*
 * scopecast server: the leveled logger (see log.h for the line format).
 *
 * Design notes: the level and the stream are atomics so that changing them
 * never races with threads that log. A line is built in a stack buffer
 * (a heap buffer only for long messages) and handed to stdio in one fputs:
 * stdio locks the stream per call, so lines never interleave. Nothing here
 * allocates on the common path.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Timestamp (24) + space + level (5) + space + newline + NUL, rounded up. */
#define PREFIX_MAX 40
#define LINE_STACK 1024

static atomic_int g_level = SC_LOG_INFO;
static _Atomic(FILE *) g_stream = NULL;

/* Padded names, indexed by level; the parse table uses the unpadded ones. */
static const char *const padded_names[] = {"debug", "info ", "warn ", "error"};
static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int clamp_level(int level)
{
    if (level < SC_LOG_DEBUG)
        return SC_LOG_DEBUG;
    if (level > SC_LOG_ERROR)
        return SC_LOG_ERROR;
    return level;
}

void sc_log_set_level(int level)
{
    atomic_store_explicit(&g_level, clamp_level(level), memory_order_relaxed);
}

int sc_log_get_level(void)
{
    return atomic_load_explicit(&g_level, memory_order_relaxed);
}

bool sc_log_enabled(int level)
{
    return level >= sc_log_get_level();
}

int sc_log_level_parse(const char *name, int *level)
{
    if (!name || !level)
        return SC_EINVAL;
    for (int i = SC_LOG_DEBUG; i <= SC_LOG_ERROR; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *level = i;
            return SC_OK;
        }
    }
    return SC_EINVAL;
}

void sc_log_set_stream(FILE *f)
{
    atomic_store_explicit(&g_stream, f, memory_order_release);
}

/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ level " into buf; returns its length. */
static size_t format_prefix(char *buf, size_t len, int level)
{
    struct timespec ts;
    struct tm tm;
    char stamp[32];

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        ts.tv_sec = time(NULL);
        ts.tv_nsec = 0;
    }
    if (!gmtime_r(&ts.tv_sec, &tm))
        memset(&tm, 0, sizeof(tm));
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    int n = snprintf(buf, len, "%s.%03ldZ %s ", stamp,
                     (long)(ts.tv_nsec / 1000000), padded_names[level]);
    return n < 0 ? 0 : ((size_t)n < len ? (size_t)n : len - 1);
}

/* Replaces control characters (newlines included) by spaces so that one
 * message always stays one line. Tabs are kept. */
static void sanitize(char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            *s = ' ';
    }
}

static void write_line(const char *line)
{
    FILE *f = atomic_load_explicit(&g_stream, memory_order_acquire);
    fputs(line, f ? f : stderr);
}

/* Formats prefix + tag + message + newline and writes it in one call. */
static void vlog(int level, const char *tag, const char *fmt, va_list ap)
    SC_PRINTF_FMT(3, 0);
static void vlog(int level, const char *tag, const char *fmt, va_list ap)
{
    char stack[LINE_STACK];
    char *line = stack;
    size_t cap = sizeof(stack);
    va_list ap2;

    size_t pre = format_prefix(stack, PREFIX_MAX, level);
    if (tag)
        pre += (size_t)snprintf(stack + pre, 64, "[%.48s] ", tag);
    va_copy(ap2, ap);
    int n = vsnprintf(stack + pre, cap - pre - 1, fmt, ap);
    if (n < 0)
        n = 0;
    size_t need = pre + (size_t)n + 2;
    if (need > cap) {
        char *big = malloc(need);
        if (big) {
            memcpy(big, stack, pre);
            vsnprintf(big + pre, need - pre - 1, fmt, ap2);
            line = big;
            cap = need;
        }
    }
    va_end(ap2);
    size_t msg_end = pre + (size_t)n;
    if (msg_end > cap - 2)
        msg_end = cap - 2; /* truncated: the stack buffer was too small */
    sanitize(line + pre);
    line[msg_end] = '\n';
    line[msg_end + 1] = '\0';
    write_line(line);
    if (line != stack)
        free(line);
}

void sc_log(int level, const char *fmt, ...)
{
    va_list ap;

    level = clamp_level(level);
    if (!sc_log_enabled(level) || !fmt)
        return;
    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

/* Helper so the hook can reuse vlog with a fixed "%s" format. */
static void log_tagged(int level, const char *tag, const char *fmt, ...)
    SC_PRINTF_FMT(3, 4);
static void log_tagged(int level, const char *tag, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(level, tag, fmt, ap);
    va_end(ap);
}

void sc_log_hook(void *ud, int level, const char *msg)
{
    level = clamp_level(level);
    if (!sc_log_enabled(level))
        return;
    log_tagged(level, (const char *)ud, "%s", msg ? msg : "");
}

bool sc_log_limited(sc_log_limit_t *lim, int64_t now_us, int level,
                    const char *fmt, ...)
{
    level = clamp_level(level);
    if (!sc_log_enabled(level) || !fmt)
        return true;
    if (now_us - lim->window_start_us >= SC_LOG_LIMIT_WINDOW_US) {
        lim->window_start_us = now_us;
        lim->lines = 0;
    }
    if (lim->lines >= SC_LOG_LIMIT_LINES) {
        lim->suppressed++;
        return false;
    }
    lim->lines++;
    if (lim->suppressed) {
        sc_log(level,
               "%u more client errors like the next were not logged "
               "(at most %d lines per %d s)",
               lim->suppressed, SC_LOG_LIMIT_LINES,
               SC_LOG_LIMIT_WINDOW_US / 1000000);
        lim->suppressed = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
    return true;
}

void sc_errfmt(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
