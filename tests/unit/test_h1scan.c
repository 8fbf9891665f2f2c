/*
 * The strict request framing scanner (proxy/h1scan.c): verdicts on heads and
 * chunked bodies, the limits, and the property the connection relies on — the
 * same bytes give the same verdict and the same end however they are split.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "shield/h1scan.h"

static const h1_limits lim = {.max_url = 64, .max_header_size = 256, .max_headers = 4};

typedef struct {
    int rc;      /* H1_DONE, H1_MORE or a status */
    size_t end;  /* offset just past the end, for H1_DONE */
    int version; /* for heads */
} verdict;

/* Scan s in pieces of `step` bytes (0 = all at once). */
static verdict scan(const char *s, size_t n, size_t step, int chunked)
{
    h1_scan sc;
    h1_scan_init(&sc);
    if (chunked) h1_scan_chunked_init(&sc);
    verdict v = {H1_MORE, 0, 0};
    size_t off = 0;
    while (off < n) {
        size_t k = step && step < n - off ? step : n - off, used = 99999;
        const char *why = NULL;
        int rc = chunked ? h1_scan_chunked(&sc, &lim, s + off, k, &used, &why, NULL, NULL)
                         : h1_scan_head(&sc, &lim, s + off, k, &used, &why);
        if (rc > 0) {
            assert_non_null(why);
            v.rc = rc;
            return v;
        }
        assert_true(used <= k);
        if (rc == H1_DONE) {
            v.rc = rc;
            v.end = off + used;
            v.version = sc.version;
            if (!chunked) assert_int_equal(sc.head_len, v.end);
            return v;
        }
        assert_int_equal(used, k);
        off += k;
    }
    return v;
}

/* The verdict on s, checked to be the same for every way of splitting it. */
static verdict check(const char *s, int chunked)
{
    size_t n = strlen(s);
    verdict whole = scan(s, n, 0, chunked);
    for (size_t step = 1; step <= n; step++) {
        verdict v = scan(s, n, step, chunked);
        assert_int_equal(v.rc, whole.rc);
        assert_int_equal(v.end, whole.end);
    }
    return whole;
}

static int head(const char *s)
{
    return check(s, 0).rc;
}

static int body(const char *s)
{
    return check(s, 1).rc;
}

static void test_valid_heads(void **state)
{
    (void)state;
    verdict v = check("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next", 0);
    assert_int_equal(v.rc, H1_DONE);
    assert_int_equal(v.end, strlen("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_int_equal(v.version, 11);
    assert_int_equal(check("GET /a?b=c HTTP/1.0\r\n\r\n", 0).version, 10);
    assert_int_equal(head("\r\n\r\nPOST /x HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-T:\ta\tb\r\n\r\n"),
                     H1_DONE);
    assert_int_equal(head("M-SEARCH * HTTP/1.1\r\nHost: x\r\n\r\n"), H1_DONE); /* llhttp decides */
    assert_int_equal(head("GET / HTTP/1.1\r\nX-Obs: caf\xc3\xa9\r\n\r\n"), H1_DONE);
    assert_int_equal(head("GET / HTTP/1.1\r\nHost: x\r\n"), H1_MORE);
}

static void test_request_line(void **state)
{
    (void)state;
    assert_int_equal(head("GET  / HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(head("GET /  HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1 \r\n\r\n"), 400);
    assert_int_equal(head(" GET / HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(head("G(T / HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(head("GET /\x01 HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(head("GET /\x7f HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(head("GET / http/1.1\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.32\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/2.0\r\n\r\n"), 505);
    assert_int_equal(head("GET / HTTP/0.9\r\n\r\n"), 505);
    assert_int_equal(head("GET /\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\n\n"), 400);
    assert_int_equal(head("CONNECT x:443 HTTP/1.1\r\n\r\n"), 501);
    assert_int_equal(head("CONNECTX / HTTP/1.1\r\n\r\n"), H1_DONE);
    assert_int_equal(head("\n GET / HTTP/1.1\r\n\r\n"), 400);
    /* Empty lines before the request: four are fine, five are not, however
     * they arrive (they used to be counted per read). */
    assert_int_equal(head("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n"), H1_DONE);
    assert_int_equal(head("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(head("\r\r\nGET / HTTP/1.1\r\n\r\n"), 400);
}

static void test_fields(void **state)
{
    (void)state;
    assert_int_equal(head("GET / HTTP/1.1\r\nX-A : b\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\n X-A: b\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n"), 400);
    /* obs-fold after an empty first value: llhttp joins it silently */
    assert_int_equal(head("GET / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\nHost:\r\n\tx\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\nX-A: a\nX-B: b\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\nX-A: a\x00"
                          "b\r\n\r\n"),
                     H1_MORE); /* strlen stops at the NUL: checked below */
    assert_int_equal(head("GET / HTTP/1.1\r\nX-A: \x1b\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\nX-A: \x7f\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\n: b\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\nX-A b\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\nX\x80: b\r\n\r\n"), 400);
    assert_int_equal(head("GET / HTTP/1.1\r\nX-A: b\r\n\r\r\n"), 400);
    static const char nul[] = "GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n";
    assert_int_equal(scan(nul, sizeof nul - 1, 0, 0).rc, 400);
    assert_int_equal(scan(nul, sizeof nul - 1, 1, 0).rc, 400);
}

static void test_head_limits(void **state)
{
    (void)state;
    char buf[600];
    /* max_url = 64 bytes of target */
    snprintf(buf, sizeof buf, "GET /%063d HTTP/1.1\r\n\r\n", 0);
    assert_int_equal(head(buf), H1_DONE);
    snprintf(buf, sizeof buf, "GET /%064d HTTP/1.1\r\n\r\n", 0);
    assert_int_equal(head(buf), 414);
    /* max_headers = 4 fields */
    assert_int_equal(head("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"), H1_DONE);
    assert_int_equal(head("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n"), 431);
    /* max_header_size = 256 bytes of request line and fields (the final
     * CRLF and the empty lines before the request are not counted) */
    int pad = 256 - (int)strlen("GET / HTTP/1.1\r\nX: \r\n");
    snprintf(buf, sizeof buf, "\r\nGET / HTTP/1.1\r\nX: %0*d\r\n\r\n", pad, 0);
    assert_int_equal(head(buf), H1_DONE);
    snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nX: %0*d\r\n\r\n", pad + 1, 0);
    assert_int_equal(head(buf), 431);
}

static void test_chunked(void **state)
{
    (void)state;
    verdict v = check("5\r\nhello\r\n0\r\n\r\nGET /", 1);
    assert_int_equal(v.rc, H1_DONE);
    assert_int_equal(v.end, strlen("5\r\nhello\r\n0\r\n\r\n"));
    assert_int_equal(body("3;a=b;c=\"d e\"\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"),
                     H1_DONE);
    assert_int_equal(body("ffffffffffffffff\r\n"), H1_MORE);
    assert_int_equal(body("10000000000000000\r\n"), 400);
    assert_int_equal(body("0x5\r\nhello\r\n0\r\n\r\n"), 400);
    assert_int_equal(body("+5\r\nhello\r\n0\r\n\r\n"), 400);
    assert_int_equal(body(" 5\r\nhello\r\n0\r\n\r\n"), 400);
    assert_int_equal(body("5 \r\nhello\r\n0\r\n\r\n"), 400);
    assert_int_equal(body("\r\n5\r\nhello\r\n0\r\n\r\n"), 400);
    assert_int_equal(body("5\nhello\r\n0\r\n\r\n"), 400);
    assert_int_equal(body("5\rhello\r\n0\r\n\r\n"), 400);
    assert_int_equal(body("5\r\nhelloXX\r\n0\r\n\r\n"), 400);
    assert_int_equal(body("5\r\nhello\n0\r\n\r\n"), 400);
    assert_int_equal(body("5;a=\x01\r\nhello\r\n0\r\n\r\n"), 400);
    assert_int_equal(body("5;a=b\nhello\r\n0\r\n\r\n"), 400);
}

static void test_trailers(void **state)
{
    (void)state;
    assert_int_equal(body("0\r\n\n"), 400);
    assert_int_equal(body("0\n\r\n"), 400);
    assert_int_equal(body("0\r\nX-T: a\r\n\n"), 400);
    assert_int_equal(body("0\r\nX-T: a\n\r\n"), 400);
    assert_int_equal(body("0\r\nX-T: a\rb\r\n\r\n"), 400);
    assert_int_equal(body("0\r\nX-T: a\r\n b\r\n\r\n"), 400);
    assert_int_equal(body("0\r\nX-T : a\r\n\r\n"), 400);
    assert_int_equal(body("0\r\nX-T a\r\n\r\n"), 400);
    assert_int_equal(body("0\r\nContent-Length: 5\r\n\r\n"), 400);
    assert_int_equal(body("0\r\ncontent-length: 5\r\n\r\n"), 400);
    assert_int_equal(body("0\r\nHost: evil\r\n\r\n"), 400);
    assert_int_equal(body("0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    assert_int_equal(body("0\r\nContent-Lengthy: 5\r\n\r\n"), H1_DONE);
    assert_int_equal(body("0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"), H1_DONE);
    assert_int_equal(body("0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n"), 431);
    char buf[400];
    snprintf(buf, sizeof buf, "0\r\nX: %0300d\r\n\r\n", 0);
    assert_int_equal(body(buf), 431);
}

/* The copy without extensions, however the body is split. */
static void test_chunked_copy_drops_extensions(void **state)
{
    (void)state;
    const char *in = "5;a=1;b=2\r\nhello\r\nA;q=\"x y\"\r\n0123456789\r\n0;z\r\nT: v\r\n\r\nNEXT";
    const char *want = "5\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n";
    size_t n = strlen(in);
    for (size_t step = 1; step <= n; step++) {
        h1_scan sc;
        h1_scan_init(&sc);
        h1_scan_chunked_init(&sc);
        char out[128], piece[128];
        size_t o = 0, off = 0;
        int rc = H1_MORE;
        while (off < n && rc == H1_MORE) {
            size_t k = step < n - off ? step : n - off, used = 0, got = 99;
            const char *why = NULL;
            rc = h1_scan_chunked(&sc, &lim, in + off, k, &used, &why, piece, &got);
            assert_true(got <= used);
            memcpy(out + o, piece, got);
            o += got;
            off += used;
        }
        assert_int_equal(rc, H1_DONE);
        assert_int_equal(off, n - 4);
        assert_int_equal(o, strlen(want));
        assert_memory_equal(out, want, o);
    }
}

/* Every prefix of a valid head is "more", never a verdict. */
static void test_prefixes_need_more(void **state)
{
    (void)state;
    const char *ok = "\r\nPUT /p?q HTTP/1.0\r\nA: 1\r\nB:\r\n\r\n";
    for (size_t n = 0; n < strlen(ok); n++)
        assert_int_equal(scan(ok, n, 0, 0).rc, H1_MORE);
    const char *ch = "3;x\r\nabc\r\n0\r\nT: v\r\n\r\n";
    for (size_t n = 0; n < strlen(ch); n++)
        assert_int_equal(scan(ch, n, 0, 1).rc, H1_MORE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_heads),
        cmocka_unit_test(test_request_line),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_head_limits),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_trailers),
        cmocka_unit_test(test_prefixes_need_more),
        cmocka_unit_test(test_chunked_copy_drops_extensions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
