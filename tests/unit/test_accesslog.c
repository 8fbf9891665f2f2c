/*
 * Access log (proxy/accesslog.c, modules/access_log.c): CloudFront escaping,
 * the 33-field line of a request (normal, aborted, range, oversized), and the
 * writer: rings, overflow counting, hourly files chosen by the line's time,
 * gzip at stop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "shield/accesslog.h"
#include "shield/alloc.h"
#include "shield/worker.h"

static void esc(const char *in, size_t len, const char *want)
{
    char out[256];
    sh_accesslog_escape(out, sizeof out, in, len);
    assert_string_equal(out, want);
}

static void test_escape(void **st)
{
    (void)st;
    esc("", 0, "-");
    esc(NULL, 0, "-");
    esc("/a/b.epub", 9, "/a/b.epub");
    esc("a b\tc\n", 6, "a%20b%09c%0A");
    esc("\0x", 2, "%00x");
    esc("\x7f\x80\xff", 3, "%7F%80%FF");
    esc("<>\"#%{}|\\^~[]`'", 15, "%3C%3E%22%23%25%7B%7D%7C%5C%5E%7E%5B%5D%60%27");
    esc("a=1&b=2;c:d/e?f@g!h*(i)", 23, "a=1&b=2;c:d/e?f@g!h*(i)");
    /* never cuts an escape: 5 bytes of room hold "a" and one %XX */
    char out[6];
    size_t n = sh_accesslog_escape(out, sizeof out, "a  ", 3);
    assert_int_equal(n, 4);
    assert_string_equal(out, "a%20");
}

static int nfields(const char *s)
{
    int n = 1;
    for (; *s; s++)
        n += *s == '\t';
    return n;
}

static char *field(const char *line, int i, char *out, size_t cap)
{
    const char *p = line;
    for (int k = 0; k < i; k++)
        p = strchr(p, '\t') + 1;
    size_t l = strcspn(p, "\t");
    snprintf(out, cap, "%.*s", (int)l, p);
    return out;
}

static sh_config cfg;

static void base_req(sh_req *r, sh_header *h, size_t nh)
{
    memset(r, 0, sizeof *r);
    r->cfg = &cfg;
    r->method = "GET";
    r->method_len = 3;
    r->path = "/x y";
    r->path_len = 4;
    r->host = "h.example";
    r->host_len = 9;
    r->http_minor = 1;
    r->headers = h;
    r->nheaders = nh;
    snprintf(r->client_ip, sizeof r->client_ip, "192.0.2.1");
    r->client_port = 4242;
    r->resp.status = 200;
    r->resp.content_length = 10;
    r->result_type = "Hit";
    snprintf(r->request_id, sizeof r->request_id, "RID");
    r->start_us = sh_now_us() - 82000;
    r->ttfb_us = 3000;
    r->bytes_sent = 345;
    r->bytes_received = 67;
    r->range_start = r->range_end = -1;
}

static void test_format(void **st)
{
    (void)st;
    static char line[200000];
    char f[64];
    cfg.pop = "IAD1";
    cfg.log.domain = "";
    sh_header h[] = {{"Cookie", 6, "a=b c", 5}, {"User-Agent", 10, "u\tv", 3}};
    sh_req r;
    base_req(&r, h, 2);
    /* 2021-03-04 05:06:07 UTC */
    size_t n = sh_accesslog_format(&r, 1614834367LL * 1000000 + 123, line, sizeof line);
    assert_int_equal(n, strlen(line));
    assert_int_equal(nfields(line), 33);
    assert_string_equal(field(line, 0, f, sizeof f), "2021-03-04");
    assert_string_equal(field(line, 1, f, sizeof f), "05:06:07");
    assert_string_equal(field(line, 2, f, sizeof f), "IAD1");
    assert_string_equal(field(line, 3, f, sizeof f), "345");
    assert_string_equal(field(line, 6, f, sizeof f), "h.example");
    assert_string_equal(field(line, 7, f, sizeof f), "/x%20y");
    assert_string_equal(field(line, 8, f, sizeof f), "200");
    assert_string_equal(field(line, 10, f, sizeof f), "u%09v");
    assert_string_equal(field(line, 11, f, sizeof f), "-");
    assert_string_equal(field(line, 12, f, sizeof f), "a=b%20c");
    assert_string_equal(field(line, 13, f, sizeof f), "Hit");
    assert_string_equal(field(line, 16, f, sizeof f), "http");
    assert_string_equal(field(line, 17, f, sizeof f), "67");
    assert_string_equal(field(line, 20, f, sizeof f), "-");
    assert_string_equal(field(line, 23, f, sizeof f), "HTTP/1.1");
    assert_string_equal(field(line, 26, f, sizeof f), "4242");
    assert_string_equal(field(line, 27, f, sizeof f), "0.003");
    assert_string_equal(field(line, 28, f, sizeof f), "Hit");
    assert_string_equal(field(line, 29, f, sizeof f), "-"); /* no Content-Type header */
    assert_string_equal(field(line, 30, f, sizeof f), "10");

    /* aborted before any response byte: 000, Error, ClientHungUpRequest */
    r.ttfb_us = -1;
    r.aborted = 1;
    sh_accesslog_format(&r, 1614834367LL * 1000000, line, sizeof line);
    assert_string_equal(field(line, 8, f, sizeof f), "000");
    assert_string_equal(field(line, 13, f, sizeof f), "Error");
    assert_string_equal(field(line, 22, f, sizeof f), "Hit");
    assert_string_equal(field(line, 27, f, sizeof f), "-");
    assert_string_equal(field(line, 28, f, sizeof f), "ClientHungUpRequest");

    /* range, TLS, HTTP/1.0 */
    base_req(&r, h, 2);
    r.range_start = 5;
    r.range_end = 9;
    r.tls = 1;
    r.tls_protocol = "TLSv1.3";
    r.tls_cipher = "TLS_AES_128_GCM_SHA256";
    r.http_minor = 0;
    sh_accesslog_format(&r, 1614834367LL * 1000000, line, sizeof line);
    assert_string_equal(field(line, 16, f, sizeof f), "https");
    assert_string_equal(field(line, 20, f, sizeof f), "TLSv1.3");
    assert_string_equal(field(line, 23, f, sizeof f), "HTTP/1.0");
    assert_string_equal(field(line, 31, f, sizeof f), "5");
    assert_string_equal(field(line, 32, f, sizeof f), "9");

    /* a rejected request nothing could be read of */
    memset(&r, 0, sizeof r);
    r.cfg = &cfg;
    r.ttfb_us = r.range_start = r.range_end = -1;
    sh_accesslog_format(&r, 0, line, sizeof line);
    assert_int_equal(nfields(line), 33);

    /* 16 KB of bytes that all escape: still 33 fields, under GoAccess's 4 KB */
    static char big[16384];
    memset(big, '"', sizeof big);
    sh_header hb[] = {{"Cookie", 6, big, sizeof big},
                      {"User-Agent", 10, big, sizeof big},
                      {"Referer", 7, big, 8000}};
    base_req(&r, hb, 3);
    r.query = big;
    r.query_len = 8000;
    n = sh_accesslog_format(&r, 0, line, sizeof line);
    assert_int_equal(nfields(line), 33);
    assert_true(n < 4096);
}

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (e->d_name[0] != '.' && l > sl && strcmp(e->d_name + l - sl, suffix) == 0) n++;
    }
    closedir(d);
    return n;
}

static void test_writer(void **st)
{
    (void)st;
    char dir[] = "/tmp/shield-alog-XXXXXX";
    assert_non_null(mkdtemp(dir));
    sh_config c = {0};
    c.log.access_dir = dir;
    c.log.distribution_id = "EUNIT";
    c.log.ring_size = 2;
    char err[256];
    assert_int_equal(sh_accesslog_start(&c, err, sizeof err), 0);
    sh_alog_ring *r = sh_accesslog_ring_new();
    assert_non_null(r);
    uint64_t d0 = sh_accesslog_dropped();
    /* two hours: 2021-03-04 05:xx and 06:xx; the third push overflows the ring
     * unless the logger drained in between, so count instead of assuming */
    int64_t h5 = 1614834367LL * 1000000, h6 = h5 + 3600LL * 1000000;
    int ok = 0;
    ok += sh_accesslog_push(r, h5, "line-a", 6) == 0;
    ok += sh_accesslog_push(r, h5, "line-b", 6) == 0;
    ok += sh_accesslog_push(r, h5, "line-c", 6) == 0;
    assert_int_equal(ok + (int)(sh_accesslog_dropped() - d0), 3);
    sh_accesslog_ring_free(r); /* writes what is left */
    r = sh_accesslog_ring_new();
    assert_int_equal(sh_accesslog_push(r, h6, "line-d", 6), 0);
    sh_accesslog_ring_free(r);
    sh_accesslog_stop();
    assert_int_equal(count_files(dir, ".gz"), 2);
    /* read both back */
    DIR *d = opendir(dir);
    struct dirent *e;
    int lines = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        assert_non_null(strstr(e->d_name, "EUNIT.2021-03-04-0"));
        char p[512], buf[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        gzFile z = gzopen(p, "rb");
        int n = gzread(z, buf, sizeof buf - 1);
        gzclose(z);
        buf[n > 0 ? n : 0] = '\0';
        assert_memory_equal(buf, "#Version: 1.0\n#Fields: date time ", 33);
        for (char *q = buf; (q = strstr(q, "line-")); q++)
            lines++;
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
    assert_int_equal(lines, ok + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
