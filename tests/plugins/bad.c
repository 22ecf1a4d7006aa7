/*
 * Plugins that must not load (tests/integration/test_plugin_host.py), one
 * per build: BAD_ABI exports a descriptor of another ABI version,
 * BAD_NO_SYMBOL exports no descriptor at all.
 */
#include <scopecast/plugin.h>

#include <stddef.h>

static int init(sc_host_t *host, const char *config_json, void **state,
                char *err, size_t errlen)
{
    (void)host;
    (void)config_json;
    (void)err;
    (void)errlen;
    *state = NULL;
    return 0;
}

#if defined(BAD_ABI)
SC_PLUGIN_EXPORT const sc_plugin_t scopecast_plugin = {
    .abi = SC_PLUGIN_ABI + 41,
    .name = "future",
    .init = init,
};
#elif defined(BAD_NO_SYMBOL)
SC_PLUGIN_EXPORT const sc_plugin_t not_the_descriptor = {
    .abi = SC_PLUGIN_ABI,
    .name = "misnamed",
    .init = init,
};
#else
#error "build with BAD_ABI or BAD_NO_SYMBOL"
#endif
