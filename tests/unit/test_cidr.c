/*
 * Address ranges (proxy/cidr.c): parsing of addresses and CIDR ranges in both
 * families, the IPv4-mapped form every comparison uses, prefix edges (/0,
 * /32, /128, non-byte boundaries) and malformed input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "shield/config.h"

/* 16-byte form of a literal that must parse. */
static void ip(const char *s, uint8_t out[16])
{
    assert_int_equal(sh_ip_parse(s, strlen(s), out), 0);
}

static sh_cidr cidr(const char *s)
{
    sh_cidr c;
    memset(&c, 0xa5, sizeof c);
    assert_int_equal(sh_cidr_parse(s, &c), 0);
    return c;
}

static int matches(const char *range, const char *addr)
{
    sh_cidr c = cidr(range);
    uint8_t a[16];
    ip(addr, a);
    return sh_cidr_match(&c, a);
}

static void test_ip_parse_forms(void **state)
{
    uint8_t a[16], b[16];
    static const uint8_t lo4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
    static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

    ip("127.0.0.1", a);
    assert_memory_equal(a, lo4, 16);
    /* The v4-mapped literal is the same address. */
    ip("::ffff:127.0.0.1", b);
    assert_memory_equal(b, lo4, 16);
    ip("::ffff:7f00:1", b);
    assert_memory_equal(b, lo4, 16);
    ip("::1", a);
    assert_memory_equal(a, lo6, 16);
    ip("0:0:0:0:0:0:0:1", b);
    assert_memory_equal(b, lo6, 16);
    ip("2001:DB8::A", a);
    ip("2001:db8::a", b);
    assert_memory_equal(a, b, 16);
    /* Counted, not NUL-terminated: only len bytes are read. */
    assert_int_equal(sh_ip_parse("10.1.2.3, 10.9.9.9", 8, a), 0);
    ip("10.1.2.3", b);
    assert_memory_equal(a, b, 16);
    /* An embedded NUL inside the counted bytes is not an address (regression:
     * inet_pton stopped at it). */
    assert_int_equal(sh_ip_parse("1.2.3.4\0junk", 12, a), -1);
}

static void test_ip_parse_bad(void **state)
{
    static const char *const bad[] = {
        "",           "1.2.3",
        "1.2.3.4.5",  "256.1.1.1",
        "01.2.3.4",   "0x1.2.3.4",
        " 1.2.3.4",   "1.2.3.4 ",
        "1.2.3.4:80", "[::1]",
        "1::2::3",    "fe80::1%eth0",
        "gggg::1",    "unknown",
        "1.2.3.4/32", "::ffff:1.2.3",
        ":",          "12345::",
        "1.2.3.-4",   "localhost",
        "::1:",       "1:2:3:4:5:6:7:8:9",
    };
    uint8_t a[16];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sh_ip_parse(bad[i], strlen(bad[i]), a), -1);
    /* Longer than any address: refused, never truncated into a valid one. */
    char longs[200];
    memset(longs, '1', sizeof longs);
    assert_int_equal(sh_ip_parse(longs, sizeof longs, a), -1);
    assert_int_equal(sh_ip_parse("1.2.3.4", 0, a), -1);
}

static void test_from_sockaddr(void **state)
{
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;
    struct sockaddr_un su;
    uint8_t a[16], b[16];

    memset(&s4, 0, sizeof s4);
    s4.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr);
    assert_int_equal(sh_ip_from_sockaddr((struct sockaddr *)&s4, a), 0);
    ip("192.0.2.7", b);
    assert_memory_equal(a, b, 16);

    /* A v4 client on a dual-stack socket arrives v4-mapped: same 16 bytes. */
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:192.0.2.7", &s6.sin6_addr);
    assert_int_equal(sh_ip_from_sockaddr((struct sockaddr *)&s6, a), 0);
    assert_memory_equal(a, b, 16);

    inet_pton(AF_INET6, "2001:db8::7", &s6.sin6_addr);
    assert_int_equal(sh_ip_from_sockaddr((struct sockaddr *)&s6, a), 0);
    ip("2001:db8::7", b);
    assert_memory_equal(a, b, 16);

    memset(&su, 0, sizeof su);
    su.sun_family = AF_UNIX;
    assert_int_equal(sh_ip_from_sockaddr((struct sockaddr *)&su, a), -1);
}

static void test_cidr_v4(void **state)
{
    sh_cidr c = cidr("10.0.0.0/8");
    assert_int_equal(c.bits, 96 + 8);
    assert_true(matches("10.0.0.0/8", "10.0.0.0"));
    assert_true(matches("10.0.0.0/8", "10.255.255.255"));
    assert_false(matches("10.0.0.0/8", "11.0.0.0"));
    assert_false(matches("10.0.0.0/8", "9.255.255.255"));
    /* v4 ranges match the v4-mapped spelling of the address too. */
    assert_true(matches("10.0.0.0/8", "::ffff:10.1.2.3"));
    /* ...but not the IPv4-compatible (::a.b.c.d) or any other IPv6 address. */
    assert_false(matches("10.0.0.0/8", "::10.1.2.3"));
    assert_false(matches("10.0.0.0/8", "2001:db8::1"));

    /* Host bits are cleared. */
    c = cidr("10.1.2.3/8");
    uint8_t net[16];
    ip("10.0.0.0", net);
    assert_memory_equal(c.addr, net, 16);
    assert_true(matches("10.1.2.3/8", "10.200.0.1"));

    /* Non-byte boundary. */
    assert_true(matches("192.168.0.0/23", "192.168.1.255"));
    assert_false(matches("192.168.0.0/23", "192.168.2.0"));
    assert_true(matches("172.16.0.0/12", "172.31.255.255"));
    assert_false(matches("172.16.0.0/12", "172.32.0.0"));
    assert_true(matches("127.0.0.2/31", "127.0.0.3"));
    assert_false(matches("127.0.0.2/31", "127.0.0.4"));
}

static void test_cidr_v4_edges(void **state)
{
    /* A bare address is a /32. */
    sh_cidr c = cidr("127.0.0.1");
    assert_int_equal(c.bits, 128);
    assert_true(matches("127.0.0.1", "127.0.0.1"));
    assert_false(matches("127.0.0.1", "127.0.0.2"));
    assert_true(matches("127.0.0.1/32", "::ffff:127.0.0.1"));
    assert_false(matches("127.0.0.1/32", "127.0.0.0"));

    /* /0 in v4 is "every IPv4 address", not every address. */
    c = cidr("0.0.0.0/0");
    assert_int_equal(c.bits, 96);
    assert_true(matches("0.0.0.0/0", "0.0.0.0"));
    assert_true(matches("0.0.0.0/0", "255.255.255.255"));
    assert_true(matches("0.0.0.0/0", "1.2.3.4"));
    assert_false(matches("0.0.0.0/0", "::1"));
    assert_false(matches("0.0.0.0/0", "2001:db8::1"));
    /* The prefix bits of the network address are irrelevant at /0. */
    assert_true(matches("9.9.9.9/0", "1.2.3.4"));
}

static void test_cidr_v6(void **state)
{
    sh_cidr c = cidr("::1");
    assert_int_equal(c.bits, 128);
    assert_true(matches("::1", "::1"));
    assert_false(matches("::1", "::2"));
    assert_false(matches("::1/128", "::"));
    assert_true(matches("::1/128", "0::1"));

    assert_true(matches("2001:db8::/32", "2001:db8:ffff:ffff::1"));
    assert_false(matches("2001:db8::/32", "2001:db9::1"));
    assert_true(matches("2001:db8::/33", "2001:db8:7fff::1"));
    assert_false(matches("2001:db8::/33", "2001:db8:8000::1"));
    assert_true(matches("fe80::/10", "febf::1"));
    assert_false(matches("fe80::/10", "fec0::1"));

    /* ::/0 is everything, IPv4 (mapped) included. */
    c = cidr("::/0");
    assert_int_equal(c.bits, 0);
    assert_true(matches("::/0", "::1"));
    assert_true(matches("::/0", "1.2.3.4"));
    assert_true(matches("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));

    /* A v4-mapped range written in IPv6 notation counts its prefix over 128
     * bits and covers the v4 addresses. */
    c = cidr("::ffff:10.0.0.0/104");
    assert_int_equal(c.bits, 104);
    assert_true(matches("::ffff:10.0.0.0/104", "10.9.8.7"));
    assert_false(matches("::ffff:10.0.0.0/104", "11.0.0.1"));
    /* ::ffff:0:0/96 = all of IPv4 */
    assert_true(matches("::ffff:0:0/96", "203.0.113.9"));
    assert_false(matches("::ffff:0:0/96", "::1"));

    /* Host bits are cleared in v6 too. */
    c = cidr("2001:db8::ffff/64");
    uint8_t net[16];
    ip("2001:db8::", net);
    assert_memory_equal(c.addr, net, 16);
}

static void test_cidr_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "10.0.0.0/08",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "10.0.0.0/8x",
        "10.0.0.0/ 8",
        "10.0.0.0 /8",
        " 10.0.0.0/8",
        "10.0.0/8",
        "10.0.0.0/8/8",
        "::/129",
        "::1/1280",
        "::/00",
        "2001:db8::/",
        "2001:db8::/a",
        "fe80::1%eth0/64",
        "10.0.0.0/4294967304",
        "unknown",
        "*",
        "10.0.0.0-10.0.0.255",
        "[::1]/128",
    };
    sh_cidr c;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sh_cidr_parse(bad[i], &c) != -1) fail_msg("accepted \"%s\"", bad[i]);
    }
    /* The edges that are valid. */
    assert_int_equal(sh_cidr_parse("10.0.0.0/0", &c), 0);
    assert_int_equal(sh_cidr_parse("10.0.0.0/32", &c), 0);
    assert_int_equal(sh_cidr_parse("::/0", &c), 0);
    assert_int_equal(sh_cidr_parse("::/128", &c), 0);
}

static void test_match_any(void **state)
{
    sh_cidr list[3] = {cidr("10.0.0.0/8"), cidr("2001:db8::/32"), cidr("127.0.0.1")};
    uint8_t a[16];

    ip("10.1.1.1", a);
    assert_true(sh_cidr_match_any(list, 3, a));
    ip("2001:db8::5", a);
    assert_true(sh_cidr_match_any(list, 3, a));
    ip("::ffff:127.0.0.1", a);
    assert_true(sh_cidr_match_any(list, 3, a));
    ip("127.0.0.2", a);
    assert_false(sh_cidr_match_any(list, 3, a));
    /* Only the first n ranges count; none = nobody. */
    ip("127.0.0.1", a);
    assert_false(sh_cidr_match_any(list, 2, a));
    assert_false(sh_cidr_match_any(list, 0, a));
    assert_false(sh_cidr_match_any(NULL, 0, a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_parse_forms), cmocka_unit_test(test_ip_parse_bad),
        cmocka_unit_test(test_from_sockaddr),  cmocka_unit_test(test_cidr_v4),
        cmocka_unit_test(test_cidr_v4_edges),  cmocka_unit_test(test_cidr_v6),
        cmocka_unit_test(test_cidr_bad),       cmocka_unit_test(test_match_any),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
