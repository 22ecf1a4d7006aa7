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

uint64_t sc_epoch_mix(uint64_t seed, uint64_t n)
{
    uint64_t z = seed + n * 0x9E3779B97F4A7C15u;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    return z ? z : 1;
}
