/*
 * Strict UTF-8 validation (see utf8.h).
 *
 * The lead byte gives the length and the allowed range of the second byte
 * (the ranges of RFC 3629 section 4), which is where overlongs,
 * surrogates and code points past U+10FFFF show; later bytes are plain
 * continuations (0x80..0xbf).
 */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

#define ASCII_MASK UINT64_C(0x8080808080808080)

size_t sc_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t k;

    if (c >= 0xc2 && c <= 0xdf)
        k = 2;
    else if (c >= 0xe0 && c <= 0xef)
        k = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        k = 4;
    else
        return 0;
    if (k > n)
        return 0;
    if (c == 0xe0)
        lo = 0xa0; /* overlong */
    else if (c == 0xed)
        hi = 0x9f; /* surrogates */
    else if (c == 0xf0)
        lo = 0x90; /* overlong */
    else if (c == 0xf4)
        hi = 0x8f; /* above U+10FFFF */
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return k;
}

bool sc_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i = 0;

    while (i < n) {
        /* ASCII fast path: eight bytes at a time */
        while (n - i >= 8) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (v & ASCII_MASK)
                break;
            i += 8;
        }
        while (i < n && s[i] < 0x80)
            i++;
        if (i == n)
            break;
        size_t k = sc_utf8_seq(s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}
