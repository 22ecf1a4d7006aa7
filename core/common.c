/* Error strings and log level names (see common.h). */
#include "common.h"

const char *sc_strerror(int err)
{
    switch (err) {
    case SC_OK:
        return "success";
    case SC_ENOMEM:
        return "out of memory";
    case SC_EINVAL:
        return "invalid argument";
    case SC_EAGAIN:
        return "nothing available yet";
    case SC_ECLOSED:
        return "subscription closed";
    case SC_ETIMEDOUT:
        return "timed out";
    case SC_ENOTFOUND:
        return "not found";
    default:
        return "unknown error";
    }
}

const char *sc_log_level_name(int level)
{
    switch (level) {
    case SC_LOG_DEBUG:
        return "debug";
    case SC_LOG_INFO:
        return "info";
    case SC_LOG_WARN:
        return "warn";
    case SC_LOG_ERROR:
        return "error";
    default:
        return "?";
    }
}
