/* Error code names and the per-thread counters (see stats.h). */
#include "stats.h"

static const char *const names[SC_ERRC_END] = {
    [SC_ERRC_BAD_REQUEST] = "bad_request",
    [SC_ERRC_UNAUTHORIZED] = "unauthorized",
    [SC_ERRC_FORBIDDEN] = "forbidden",
    [SC_ERRC_LIMIT] = "limit",
    [SC_ERRC_NOT_FOUND] = "not_found",
    [SC_ERRC_INTERNAL] = "internal",
    [SC_ERRC_METHOD_NOT_ALLOWED] = "method_not_allowed",
    [SC_ERRC_TOO_LARGE] = "too_large",
    [SC_ERRC_UNAVAILABLE] = "unavailable",
};

const char *sc_errc_name(enum sc_errc code)
{
    if ((unsigned)code >= SC_ERRC_END)
        return names[SC_ERRC_INTERNAL];
    return names[code];
}

void sc_stats_error(sc_stats_t *st, enum sc_errc code)
{
    if ((unsigned)code < SC_ERRC_COUNTED)
        SC_COUNT(st->errors[code], 1);
}

void sc_stats_add(sc_stats_t *total, const sc_stats_t *one)
{
    SC_COUNT(total->delivered, SC_STAT(one->delivered));
    SC_COUNT(total->bytes_out, SC_STAT(one->bytes_out));
    SC_COUNT(total->connections_total, SC_STAT(one->connections_total));
    SC_COUNT(total->http_requests, SC_STAT(one->http_requests));
    SC_COUNT(total->refused_per_ip, SC_STAT(one->refused_per_ip));
    SC_COUNT(total->slow_closed, SC_STAT(one->slow_closed));
    for (int i = 0; i < SC_ERRC_COUNTED; i++)
        SC_COUNT(total->errors[i], SC_STAT(one->errors[i]));
}
