/* Unit tests: pattern matching, header helpers and the forwarding policy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "shield/alloc.h"
#include "shield/forward.h"
#include "shield/http.h"
#include "shield/module.h"

static int glob(const char *p, const char *s)
{
    return sh_glob_match(p, strlen(p), s, strlen(s));
}

static void test_glob(void **st)
{
    assert_true(glob("*", ""));
    assert_true(glob("*", "/anything/at/all"));
    assert_true(glob("*.epub", "/books/a.epub"));
    assert_false(glob("*.epub", "/books/a.EPUB")); /* case-sensitive */
    assert_false(glob("*.epub", "/books/a.epub.pdf"));
    assert_true(glob("/books/*", "/books/"));
    assert_false(glob("/books/*", "/books"));
    assert_true(glob("/b?ok", "/book"));
    assert_false(glob("/b?ok", "/bok"));
    assert_false(glob("/b?ok", "/boook"));
    assert_true(glob("/a*b*c", "/aXXbYYc"));
    assert_false(glob("/a*b*c", "/aXXbYY"));
    assert_true(glob("/*/*.pdf", "/x/y/z.pdf"));
    assert_true(glob("**", "/x"));
    assert_true(glob("/literal*star", "/literal*star"));
    /* a hostile subject must not make matching blow up */
    char s[4096];
    memset(s, 'a', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    assert_false(glob("*a*a*a*a*a*a*a*b", s));
}

static void test_hop_by_hop(void **st)
{
    assert_true(sh_hdr_is_hop_by_hop("connection", 10, NULL, 0));
    assert_true(sh_hdr_is_hop_by_hop("Transfer-Encoding", 17, NULL, 0));
    assert_true(sh_hdr_is_hop_by_hop("keep-alive", 10, NULL, 0));
    assert_false(sh_hdr_is_hop_by_hop("Range", 5, NULL, 0));
    /* connection-specific in HTTP/2 (RFC 9113 §3.2.1): an h2c upgrade's settings */
    assert_true(sh_hdr_is_hop_by_hop("HTTP2-Settings", 14, NULL, 0));
    assert_true(sh_hdr_is_hop_by_hop("http2-settings", 14, NULL, 0));
    const char *conn = "close, X-Secret ,x-other";
    assert_true(sh_hdr_is_hop_by_hop("x-secret", 8, conn, strlen(conn)));
    assert_true(sh_hdr_is_hop_by_hop("X-Other", 7, conn, strlen(conn)));
    assert_false(sh_hdr_is_hop_by_hop("X-Secre", 7, conn, strlen(conn)));
}

static void test_host_valid(void **st)
{
    const char *good[] = {"example.com", "a",         "127.0.0.1:8080",
                          "[::1]",       "[::1]:443", "books.s3.amazonaws.com:65535",
                          "under_score"};
    const char *badv[] = {"",          "exa mple.com", "a/b",  "a:", "a:123456", "a:65536", "[::1",
                          "user@host", ":80",          "a:8x", "[]", "a%20b",    "a\tb"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(sh_host_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++)
        assert_false(sh_host_valid(badv[i], strlen(badv[i])));
}

static void test_date_and_reason(void **st)
{
    char d[32];
    assert_int_equal(sh_http_date(784111777, d), 29);
    assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_string_equal(sh_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(sh_http_reason(299), "Unknown");
}

static void test_hdrlist(void **st)
{
    sh_hdrlist l = {0};
    sh_hdrlist_adds(&l, "A", "1");
    sh_hdrlist_adds(&l, "b", "2");
    sh_hdrlist_adds(&l, "a", "3");
    assert_int_equal(sh_hdrlist_del(&l, "A"), 2);
    assert_int_equal(l.n, 1);
    sh_hdrlist_set(&l, "B", "4");
    assert_int_equal(l.n, 1);
    assert_string_equal(sh_hdrlist_get(&l, "b")->value, "4");
    sh_hdrlist_clear(&l);
    assert_int_equal(l.n, 0);
}

static void test_content_length(void **st)
{
    assert_int_equal(sh_parse_content_length("0", 1), 0);
    assert_int_equal(sh_parse_content_length("12345", 5), 12345);
    assert_int_equal(sh_parse_content_length("+5", 2), -1);
    assert_int_equal(sh_parse_content_length("-1", 2), -1);
    assert_int_equal(sh_parse_content_length("", 0), -1);
    assert_int_equal(sh_parse_content_length("1234567890123456789", 19), -1);
}

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static void test_forward_request_s3(void **st)
{
    sh_origin_conf o = {.name = "books", .type = SH_ORIGIN_S3};
    /* HTTP2-Settings listed as an older config might have it: still never forwarded */
    char *fwd[] = {"Origin", "Authorization", "HTTP2-Settings"};
    sh_behavior_conf b = {.path = "*", .origin = &o, .forward_headers = fwd, .nforward_headers = 3};
    sh_header hs[] = {
        H("Host", "x"),
        H("Range", "bytes=0-9"),
        H("If-None-Match", "\"e\""),
        H("Authorization", "a"),
        H("Cookie", "c=1"),
        H("Connection", "close, X-Drop"),
        H("X-Drop", "1"),
        H("Origin", "https://o"),
        H("X-Forwarded-For", "1.2.3.4"),
        H("Accept", "*/*"),
        H("Transfer-Encoding", "x"),
        H("Via", "1.1 evil"),
        H("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
    };
    sh_req r = {.behavior = &b, .headers = hs, .nheaders = sizeof(hs) / sizeof(hs[0])};
    strcpy(r.peer_ip, "127.0.0.9");
    strcpy(r.client_ip, "127.0.0.9");
    strcpy(r.request_id, "RID");
    sh_hdrlist out = {0};
    sh_forward_request_headers(&r, "node1", &out);
    assert_non_null(sh_hdrlist_get(&out, "Range"));
    assert_non_null(sh_hdrlist_get(&out, "If-None-Match"));
    assert_non_null(sh_hdrlist_get(&out, "Origin"));
    assert_null(sh_hdrlist_get(&out, "Authorization")); /* never to S3, even if listed */
    assert_null(sh_hdrlist_get(&out, "Cookie"));
    assert_null(sh_hdrlist_get(&out, "Host"));
    assert_null(sh_hdrlist_get(&out, "Connection"));
    assert_null(sh_hdrlist_get(&out, "X-Drop"));
    assert_null(sh_hdrlist_get(&out, "Accept"));
    assert_null(sh_hdrlist_get(&out, "Transfer-Encoding"));
    assert_null(sh_hdrlist_get(&out, "HTTP2-Settings"));
    assert_string_equal(sh_hdrlist_get(&out, "X-Forwarded-For")->value, "1.2.3.4, 127.0.0.9");
    assert_string_equal(sh_hdrlist_get(&out, "Via")->value, "1.1 node1 (shield)");
    assert_string_equal(sh_hdrlist_get(&out, "X-Request-Id")->value, "RID");
    assert_non_null(sh_hdrlist_get(&out, "User-Agent"));
    sh_hdrlist_clear(&out);
}

static void test_forward_request_http_cookies(void **st)
{
    sh_origin_conf o = {.name = "web", .type = SH_ORIGIN_HTTP};
    sh_behavior_conf b = {.path = "*", .origin = &o, .forward_cookies = 1};
    sh_header hs[] = {H("Cookie", "c=1"), H("Authorization", "a")};
    sh_req r = {.behavior = &b, .headers = hs, .nheaders = 2};
    strcpy(r.peer_ip, "127.0.0.1");
    strcpy(r.client_ip, "127.0.0.1");
    sh_hdrlist out = {0};
    sh_forward_request_headers(&r, "n", &out);
    assert_string_equal(sh_hdrlist_get(&out, "Cookie")->value, "c=1");
    assert_null(sh_hdrlist_get(&out, "Authorization")); /* not listed */
    assert_string_equal(sh_hdrlist_get(&out, "X-Forwarded-For")->value, "127.0.0.1");
    sh_hdrlist_clear(&out);
}

static void test_forward_response(void **st)
{
    sh_behavior_conf b = {.path = "*"};
    sh_req r = {.behavior = &b};
    sh_header hs[] = {
        H("Content-Length", "42"), H("Content-Type", "application/epub+zip"),
        H("ETag", "\"abc\""),      H("Connection", "keep-alive, X-Hop"),
        H("X-Hop", "1"),           H("Set-Cookie", "s=1"),
        H("Server", "AmazonS3"),   H("Transfer-Encoding", "chunked"),
        H("Keep-Alive", "t=5"),    H("x-amz-request-id", "R"),
    };
    sh_resp resp = {0};
    sh_forward_response_headers(&r, hs, sizeof(hs) / sizeof(hs[0]), &resp);
    assert_int_equal(resp.content_length, 42);
    assert_null(sh_hdrlist_get(&resp.headers, "Content-Length"));
    assert_non_null(sh_hdrlist_get(&resp.headers, "Content-Type"));
    assert_non_null(sh_hdrlist_get(&resp.headers, "ETag"));
    assert_non_null(sh_hdrlist_get(&resp.headers, "x-amz-request-id"));
    assert_null(sh_hdrlist_get(&resp.headers, "Connection"));
    assert_null(sh_hdrlist_get(&resp.headers, "X-Hop"));
    assert_null(sh_hdrlist_get(&resp.headers, "Set-Cookie"));
    assert_null(sh_hdrlist_get(&resp.headers, "Server"));
    assert_null(sh_hdrlist_get(&resp.headers, "Transfer-Encoding"));
    assert_null(sh_hdrlist_get(&resp.headers, "Keep-Alive"));
    sh_hdrlist_clear(&resp.headers);
}

static void strip(const char *in, const char *want)
{
    char out[256];
    size_t n = sh_query_strip_signature(in, strlen(in), out);
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void test_query_strip_signature(void **st)
{
    /* unsigned queries are untouched, even an application's own Expires */
    strip("a=1&Expires=5", "a=1&Expires=5");
    strip("", "");
    /* CloudFront canned and custom policies */
    strip("a=1&Expires=5&Signature=x~y_&Key-Pair-Id=K1", "a=1");
    strip("Policy=p&Signature=s&Key-Pair-Id=K&Hash-Algorithm=SHA256&b=2", "b=2");
    /* only the family whose signature is present (regression: a presigned URL's
     * own "Policy" parameter was dropped) */
    strip("Policy=mine&X-Amz-Signature=s&X-Amz-Date=d", "Policy=mine");
    strip("X-Amz-Date=mine&Expires=5&Signature=s", "X-Amz-Date=mine");
    /* SigV4 presigned */
    strip("X-Amz-Algorithm=A&X-Amz-Credential=c&X-Amz-Date=d&X-Amz-Expires=60&"
          "X-Amz-SignedHeaders=host&X-Amz-Signature=ff&v=1",
          "v=1");
    /* names are matched whole, not by prefix */
    strip("Signature=s&Signatures=2&Expiresx=3", "Signatures=2&Expiresx=3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_host_valid),
        cmocka_unit_test(test_date_and_reason),
        cmocka_unit_test(test_hdrlist),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_forward_request_s3),
        cmocka_unit_test(test_forward_request_http_cookies),
        cmocka_unit_test(test_forward_response),
        cmocka_unit_test(test_query_strip_signature),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
