/*
 * The scope name rule (see scope.h). Kept apart so the server can check
 * query-string scopes (GET /api/presence) with the same rule.
 */
#include "scope.h"

bool sc_proto_scope_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > SC_SCOPE_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}
