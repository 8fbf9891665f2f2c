/*
 * Integer literals libconfig would read otherwise than written
 * (proxy/config_literals.c): Debian 12's libconfig keeps a number without L in
 * 32 bits, so every such number is refused at its file:line, on both sides of
 * 2^31, 2^32 and 2^63, also in @include'd files and after NUL bytes, and digits
 * that are not numbers (comments, strings, names, floats) are left alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shield/config.h"

#include "config_load.h"

/* Append the message for an integer libconfig would wrap to 32 bits at file:line. */
static void add_wrap32(char *buf, size_t n, const char *file, int line, const char *lit)
{
    size_t len = strlen(buf);
    int hint = lit[0] != '-' && lit[1] != 'x';

    snprintf(buf + len, n - len,
             "%s:%d: integer %s is outside the 32-bit range libconfig reads without an L suffix: "
             "write %sL%s\n",
             file, line, lit, lit,
             hint ? ", or a string with a unit such as \"4G\" or \"30d\"" : "");
}

/*
 * Debian 12's libconfig keeps an integer written without L in 32 bits: a
 * memory_size of 4296015872 (2^32 + 1M) loaded as a 1M cache, workers =
 * 4294967297 as one worker. Whatever the key, such a number is refused where
 * it is written.
 */
static void test_err_int_wraps_32_bits(void **state)
{
    static const struct {
        int line;
        const char *lit;
    } want[] = {{3, "4294967296"}, {4, "4294967297"},  {6, "4294967306"},   {7, "-4294967266"},
                {9, "4294967396"}, {10, "4294967396"}, {10, "0x100000193"}, {11, "4294967301"}};
    char errs[2048] = "";

    add_wrap32(errs, sizeof errs, "t.conf", 4, "4296015872");
    expect_errors(MINIMAL "cache = { memory_size = 4296015872; };\n", errs);
    errs[0] = '\0';
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        add_wrap32(errs, sizeof errs, "t.conf", want[i].line, want[i].lit);
    expect_errors(LISTEN ORIGIN "behaviors = ( { path = \"*\"; max_ttl = 4294967296; } );\n"
                                "node = { workers = 4294967297; };\n"
                                "timeouts = {\n  header = 4294967306;\n  drain = -4294967266;\n};\n"
                                "limits = { max_headers = 100; max_connections = 4294967396; };\n"
                                "rate_limit = { limit = 4294967396; status = 0x100000193; };\n"
                                "alarms = { error_rate_5xx = 4294967301; };\n",
                  errs);
}

/* Either the value written or a file:line error, on both sides of 2^31, 2^32 and 2^63. */
static void test_int_literal_boundaries(void **state)
{
    static const struct {
        const char *lit;
        uint64_t v;
    } good[] = {{"2147483647", 2147483647},
                {"+2147483647", 2147483647},
                {"002147483647", 2147483647},
                {"0x7FFFFFFF", 2147483647},
                {"2147483648L", 1ULL << 31},
                {"4294967295L", (1ULL << 32) - 1},
                {"4294967296L", 1ULL << 32},
                {"4296015872L", (1ULL << 32) + (1 << 20)},
                {"4296015872LL", (1ULL << 32) + (1 << 20)},
                {"0x80000000L", 1ULL << 31},
                {"0xffffffffL", (1ULL << 32) - 1},
                {"0x100100000L", (1ULL << 32) + (1 << 20)},
                {"9223372036854775807L", INT64_MAX},
                {"0x7FFFFFFFFFFFFFFFL", INT64_MAX}};
    static const char *const wrap32[] = {"2147483648", "+2147483648", "4294967295", "4294967296",
                                         "0x80000000", "0xFFFFFFFF",  "0x100000000"};
    static const char *const over64[] = {"9223372036854775808L",  "99999999999999999999",
                                         "99999999999999999999L", "0x8000000000000000L",
                                         "0xFFFFFFFFFFFFFFFFL",   "0x10000000000000000L"};
    char text[512], want[512];

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(text, sizeof text, MINIMAL "cache = { memory_size = %s; };\n", good[i].lit);
        sh_config *cfg = load_ok(text);
        if (cfg->cache.memory_size != good[i].v) fail_msg("%s loaded wrong", good[i].lit);
        sh_config_free(cfg);
    }
    for (size_t i = 0; i < sizeof wrap32 / sizeof wrap32[0]; i++) {
        snprintf(text, sizeof text, MINIMAL "cache = { memory_size = %s; };\n", wrap32[i]);
        want[0] = '\0';
        add_wrap32(want, sizeof want, "t.conf", 4, wrap32[i]);
        expect_errors(text, want);
    }
    for (size_t i = 0; i < sizeof over64 / sizeof over64[0]; i++) {
        snprintf(text, sizeof text, MINIMAL "cache = { memory_size = %s; };\n", over64[i]);
        snprintf(want, sizeof want, "t.conf:4: integer %s does not fit in 64 bits\n", over64[i]);
        expect_errors(text, want);
    }
    /* negative: read as written, then refused by the key's range */
    expect_errors(MINIMAL "timeouts = {\n  drain = -2147483648;\n  header = -2147483649L;\n"
                          "  body = -9223372036854775808L;\n};\n",
                  "t.conf:6: timeouts.header: -2147483649 is out of range (1ms..365d)\n"
                  "t.conf:7: timeouts.body: -9223372036854775808 is out of range (1ms..365d)\n"
                  "t.conf:5: timeouts.drain: -2147483648 is out of range (0s..365d)\n");
    want[0] = '\0';
    add_wrap32(want, sizeof want, "t.conf", 4, "-2147483649");
    expect_errors(MINIMAL "timeouts = { drain = -2147483649; };\n", want);
    expect_errors(MINIMAL "timeouts = { drain = -9223372036854775809L; };\n",
                  "t.conf:4: integer -9223372036854775809L does not fit in 64 bits\n");
}

/* Only numbers count: digits in comments, strings, names and floats are not integers. */
static void test_int_literals_elsewhere_ignored(void **state)
{
    char want[512] = "";
    sh_config *cfg = load_ok(
        MINIMAL "# 4296015872\n// 4296015872 /*\n/* 4296015872\n   4296015872 */\n"
                "node = { name = \"n4296015872\"; pop = \"P4296015872\" \"0x100000000\"; };\n"
                "response_headers = { custom = ( { name = \"X-A\";\n"
                "  value = \"\\\"4296015872\\\" \\\\ 99999999999999999999 # // /*\"; } ); };\n"
                "alarms = { error_rate_5xx = 4296015872e-9; min_cache_hit_rate = "
                ".4296015872e2; };\n");
    assert_string_equal(cfg->node_name, "n4296015872");
    assert_string_equal(cfg->pop, "P42960158720x100000000");
    assert_string_equal(cfg->response_headers.custom_values[0],
                        "\"4296015872\" \\ 99999999999999999999 # // /*");
    assert_true(cfg->alarms.error_rate_5xx > 4.29 && cfg->alarms.error_rate_5xx < 4.3);
    assert_true(cfg->alarms.min_cache_hit_rate > 42.9 && cfg->alarms.min_cache_hit_rate < 43);
    sh_config_free(cfg);
    /* a name with digits is a name; lines are counted through comments and strings */
    expect_errors(MINIMAL "k4294967296 = 1;\n",
                  "t.conf:4: unknown top-level key \"k4294967296\"\n");
    add_wrap32(want, sizeof want, "t.conf", 7, "4294967296");
    expect_errors(MINIMAL "/* 1\n 2 */ x = \"a\n4294967296\";\n"
                          "cache = { memory_size = 4294967296; };\n",
                  want);
}

/* libconfig reads @include'd files too: their numbers are named by their own file:line. */
static void test_err_int_wraps_in_included_file(void **state)
{
    char inc[] = "/tmp/shield-test-include-XXXXXX", text[512], want[512] = "", *errs, *named;
    int fd = mkstemp(inc);
    sh_config *cfg;
    FILE *f;

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("# included\n\nmemory_size = 4296015872;\n", f);
    fclose(f);
    snprintf(text, sizeof text, MINIMAL "cache = {\n@include \"%s\"\n};\n", inc);
    cfg = load_text(text, &errs);
    unlink(inc);
    assert_null(cfg);
    named = replace_all(errs, inc, "inc.conf");
    add_wrap32(want, sizeof want, "inc.conf", 3, "4296015872");
    assert_string_equal(named, want);
    free(named);
    free(errs);
}

/*
 * libconfig reads a NUL inside a comment or a string as one more byte of it;
 * the integer re-scan stopped at the first NUL, so a wrapped number after it
 * went through (a 4296015872-byte cache loaded as 1M).
 */
static void test_err_int_wraps_after_nul_byte(void **state)
{
    static const char comment[] = MINIMAL "# \0\ncache = { memory_size = 4296015872; };\n";
    static const char string[] = MINIMAL "node = { name = \"a\0b\"; };\n"
                                         "cache = { memory_size = 4296015872; };\n";
    const struct {
        const char *text;
        size_t len;
    } cases[] = {{comment, sizeof comment - 1}, {string, sizeof string - 1}};
    char want[512] = "", *errs;

    add_wrap32(want, sizeof want, "t.conf", 5, "4296015872");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sh_config *cfg = load_bytes(cases[i].text, cases[i].len, &errs);
        assert_string_equal(errs, want);
        assert_null(cfg);
        free(errs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_int_wraps_32_bits),
        cmocka_unit_test(test_int_literal_boundaries),
        cmocka_unit_test(test_int_literals_elsewhere_ignored),
        cmocka_unit_test(test_err_int_wraps_in_included_file),
        cmocka_unit_test(test_err_int_wraps_after_nul_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
