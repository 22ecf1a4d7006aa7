/*
 * Unit tests of protocol/utf8.c: strict UTF-8 (RFC 3629) over tables of
 * valid and invalid sequences (overlongs, surrogates, code points past
 * U+10FFFF, bad and missing continuation bytes), every truncation of every
 * multi-byte form, the boundaries of the 8-byte ASCII fast path, and an
 * exhaustive comparison with a plain code point decoder (the validator the
 * server used before this module) over every 1-, 2- and 3-byte string.
 */
#include "utf8.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* A byte string of a table; `s` may hold NUL bytes. */
typedef struct bytes {
    const char *s;
    size_t n;
} bytes_t;

#define B(lit)                                                                 \
    {                                                                          \
        lit, sizeof(lit) - 1                                                   \
    }

static const bytes_t valid[] = {
    B(""),
    B("a"),
    B("plain ASCII text, longer than eight bytes"),
    B("\x00"),
    B("\x7f"),
    B("\xc2\x80"),         /* U+0080, the first 2-byte form */
    B("\xc3\xa9"),         /* e acute */
    B("\xdf\xbf"),         /* U+07FF */
    B("\xe0\xa0\x80"),     /* U+0800, the first 3-byte form */
    B("\xe2\x82\xac"),     /* euro sign */
    B("\xed\x9f\xbf"),     /* U+D7FF, just below the surrogates */
    B("\xee\x80\x80"),     /* U+E000, just above them */
    B("\xef\xbf\xbf"),     /* U+FFFF */
    B("\xf0\x90\x80\x80"), /* U+10000, the first 4-byte form */
    B("\xf0\x9f\x98\x80"), /* an emoji */
    B("\xf4\x8f\xbf\xbf"), /* U+10FFFF, the last code point */
    B("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), /* kosme */
    B("mixed \xc3\xa9t\xc3\xa9 \xe2\x82\xac 5 \xf0\x9f\x98\x80!"),
};

static const bytes_t invalid[] = {
    B("\x80"), /* lone continuation */
    B("\xbf"), /* lone continuation */
    B("a\x80"
      "b"),                        /* continuation after ASCII */
    B("\xc0\x80"),                 /* overlong NUL */
    B("\xc1\xbf"),                 /* overlong U+007F */
    B("\xe0\x80\x80"),             /* overlong 3-byte */
    B("\xe0\x9f\xbf"),             /* overlong U+07FF */
    B("\xf0\x80\x80\x80"),         /* overlong 4-byte */
    B("\xf0\x8f\xbf\xbf"),         /* overlong U+FFFF */
    B("\xed\xa0\x80"),             /* U+D800 */
    B("\xed\xbf\xbf"),             /* U+DFFF */
    B("\xed\xa0\x80\xed\xb0\x80"), /* a surrogate pair (CESU-8) */
    B("\xf4\x90\x80\x80"),         /* U+110000 */
    B("\xf5\x80\x80\x80"),         /* lead byte past U+10FFFF */
    B("\xf7\xbf\xbf\xbf"),
    B("\xf8\x88\x80\x80\x80"),     /* 5-byte form */
    B("\xfc\x84\x80\x80\x80\x80"), /* 6-byte form */
    B("\xfe"),
    B("\xff"),
    B("\xc3\x28"),         /* bad second byte */
    B("\xc3\xc3\xa9"),     /* lead byte where a continuation is due */
    B("\xe2\x28\xa1"),     /* bad second byte */
    B("\xe2\x82\x28"),     /* bad third byte */
    B("\xf0\x28\x8c\xbc"), /* bad second byte */
    B("\xf0\x90\x28\xbc"), /* bad third byte */
    B("\xf0\x90\x8c\x28"), /* bad fourth byte */
    B("\xc3"),             /* truncated */
    B("\xe2\x82"),         /* truncated */
    B("\xf0\x9f\x98"),     /* truncated */
};

/* The validator of the server's transport before this module, kept as a
 * reference: decodes the code point and checks its range. */
static bool reference_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, k, j;
    uint32_t cp, min;

    while (i < n) {
        unsigned char b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xe0) == 0xc0)
            k = 1, cp = b & 0x1f, min = 0x80;
        else if ((b & 0xf0) == 0xe0)
            k = 2, cp = b & 0x0f, min = 0x800;
        else if ((b & 0xf8) == 0xf0)
            k = 3, cp = b & 0x07, min = 0x10000;
        else
            return false;
        if (n - i <= k)
            return false;
        for (j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

static void test_utf8_accepts_every_valid_string_of_the_table(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        if (!sc_utf8_valid(valid[i].s, valid[i].n))
            fail_msg("valid string %zu rejected", i);
    }
    assert_true(sc_utf8_valid(NULL, 0));
}

static void test_utf8_rejects_every_invalid_string_of_the_table(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        if (sc_utf8_valid(invalid[i].s, invalid[i].n))
            fail_msg("invalid string %zu accepted", i);
    }
}

static void test_utf8_rejects_invalid_bytes_after_a_long_ascii_run(void **state)
{
    char buf[64];
    size_t i;

    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        memset(buf, 'x', 24);
        memcpy(buf + 24, invalid[i].s, invalid[i].n);
        assert_false(sc_utf8_valid(buf, 24 + invalid[i].n));
    }
}

/* Every proper prefix of every multi-byte sequence is invalid, alone, at
 * the end of text, and followed by ASCII; the whole sequence is valid. */
static void test_utf8_rejects_sequences_truncated_at_every_split(void **state)
{
    static const char *seqs[] = {
        "\xc2\x80",     "\xdf\xbf",         "\xe0\xa0\x80",    "\xe2\x82\xac",
        "\xed\x9f\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"};
    unsigned char buf[32];
    size_t i, cut, k;

    for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        k = strlen(seqs[i]);
        for (cut = 1; cut < k; cut++) {
            assert_false(sc_utf8_valid(seqs[i], cut));
            assert_int_equal(sc_utf8_seq((const unsigned char *)seqs[i], cut),
                             0);
            memset(buf, 'a', 20);
            memcpy(buf + 20, seqs[i], cut);
            assert_false(sc_utf8_valid(buf, 20 + cut));
            buf[20 + cut] = 'z';
            assert_false(sc_utf8_valid(buf, 20 + cut + 1));
        }
        assert_true(sc_utf8_valid(seqs[i], k));
        assert_int_equal(sc_utf8_seq((const unsigned char *)seqs[i], k), k);
    }
}

static void test_utf8_seq_gives_the_length_of_one_sequence(void **state)
{
    const unsigned char *s;

    s = (const unsigned char *)"\xc3\xa9xyz";
    assert_int_equal(sc_utf8_seq(s, 5), 2);
    s = (const unsigned char *)"\xe2\x82\xac\xe2\x82\xac";
    assert_int_equal(sc_utf8_seq(s, 6), 3);
    s = (const unsigned char *)"\xf0\x9f\x98\x80";
    assert_int_equal(sc_utf8_seq(s, 4), 4);
    assert_int_equal(sc_utf8_seq((const unsigned char *)"\x80", 1), 0);
    assert_int_equal(sc_utf8_seq((const unsigned char *)"\xc0\x80", 2), 0);
    assert_int_equal(sc_utf8_seq((const unsigned char *)"\xed\xa0\x80", 3), 0);
    assert_int_equal(sc_utf8_seq((const unsigned char *)"\xf4\x90\x80\x80", 4),
                     0);
    assert_int_equal(sc_utf8_seq((const unsigned char *)"\xf5\x80\x80\x80", 4),
                     0);
}

/* A non-ASCII sequence or an invalid byte at every offset of ASCII runs of
 * every length around the 8-byte steps, from every alignment. */
static void
test_utf8_finds_bad_bytes_at_every_offset_around_the_fast_path(void **state)
{
    unsigned char buf[64 + 8];
    size_t len, at, align;

    for (align = 0; align < 8; align++) {
        unsigned char *b = buf + align;
        for (len = 0; len <= 40; len++) {
            memset(b, 'a', len);
            assert_true(sc_utf8_valid(b, len));
            for (at = 0; at < len; at++) {
                memset(b, 'a', len);
                b[at] = 0x80; /* stray continuation */
                assert_false(sc_utf8_valid(b, len));
                b[at] = 0xff;
                assert_false(sc_utf8_valid(b, len));
                b[at] = 0x7f; /* the largest ASCII byte */
                assert_true(sc_utf8_valid(b, len));
                if (at + 2 <= len) {
                    b[at] = 0xc3;
                    b[at + 1] = 0xa9;
                    assert_true(sc_utf8_valid(b, len));
                    assert_false(sc_utf8_valid(b, at + 1)); /* cut */
                }
                memset(b, 'a', len);
                if (at + 4 <= len) {
                    memcpy(b + at, "\xf0\x9f\x98\x80", 4);
                    assert_true(sc_utf8_valid(b, len));
                }
            }
        }
    }
}

/* Every string of 1, 2 and 3 bytes, and 4-byte strings with every first
 * two bytes and boundary values after them: same verdict as the reference
 * decoder. */
static void
test_utf8_agrees_with_a_code_point_decoder_on_short_strings(void **state)
{
    static const unsigned char tails[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90,
                                          0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xff};
    unsigned char s[4];
    uint32_t v;
    unsigned a, b, c, d;
    long bad = 0;

    for (v = 0; v < 0x100; v++) {
        s[0] = (unsigned char)v;
        bad += sc_utf8_valid(s, 1) != reference_valid(s, 1);
    }
    for (v = 0; v < 0x10000; v++) {
        s[0] = (unsigned char)(v >> 8);
        s[1] = (unsigned char)v;
        bad += sc_utf8_valid(s, 2) != reference_valid(s, 2);
    }
    for (v = 0; v < 0x1000000; v++) {
        s[0] = (unsigned char)(v >> 16);
        s[1] = (unsigned char)(v >> 8);
        s[2] = (unsigned char)v;
        bad += sc_utf8_valid(s, 3) != reference_valid(s, 3);
    }
    for (a = 0x80; a < 0x100; a++)
        for (b = 0; b < 0x100; b++)
            for (c = 0; c < sizeof(tails); c++)
                for (d = 0; d < sizeof(tails); d++) {
                    s[0] = (unsigned char)a;
                    s[1] = (unsigned char)b;
                    s[2] = tails[c];
                    s[3] = tails[d];
                    bad += sc_utf8_valid(s, 4) != reference_valid(s, 4);
                }
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_accepts_every_valid_string_of_the_table),
        cmocka_unit_test(test_utf8_rejects_every_invalid_string_of_the_table),
        cmocka_unit_test(
            test_utf8_rejects_invalid_bytes_after_a_long_ascii_run),
        cmocka_unit_test(test_utf8_rejects_sequences_truncated_at_every_split),
        cmocka_unit_test(test_utf8_seq_gives_the_length_of_one_sequence),
        cmocka_unit_test(
            test_utf8_finds_bad_bytes_at_every_offset_around_the_fast_path),
        cmocka_unit_test(
            test_utf8_agrees_with_a_code_point_decoder_on_short_strings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
