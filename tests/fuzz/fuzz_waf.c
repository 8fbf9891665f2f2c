/*
 * Fuzz the WAF path and query checkers (include/shield/waf.h).
 *
 * Input: one flag byte (bit 0 block_traversal, bit 1 allow_encoded_slash,
 * bit 2 small size limits), then "path[?query]". Beyond "never crash", every
 * verdict is checked against properties written independently of the checker:
 * the same input gives the same verdict; an accepted path really has none of
 * the refused shapes (checked with a separate decoder); relaxing a switch never
 * turns an acceptance into a refusal; the 400 rules do not depend on the switches.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shield/waf.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

static int hx(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* Byte value of a well-formed escape at s[i], else -1. */
static int esc(const uint8_t *s, size_t n, size_t i)
{
    if (i + 2 >= n || s[i] != '%' || hx(s[i + 1]) < 0 || hx(s[i + 2]) < 0) return -1;
    return hx(s[i + 1]) * 16 + hx(s[i + 2]);
}

static int dot_segment(const uint8_t *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '/') continue;
        size_t l = i - start;
        if ((l == 1 && s[start] == '.') || (l == 2 && s[start] == '.' && s[start + 1] == '.'))
            return 1;
        start = i + 1;
    }
    return 0;
}

/* What an accepted path must satisfy under w. */
static void accepted_path_ok(const sh_waf_conf *w, const uint8_t *p, size_t n)
{
    CHECK(n <= w->max_uri);
    uint8_t *once = malloc(n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(!ctl(p[i]));
        if (p[i] == '%') {
            int v = esc(p, n, i);
            CHECK(v >= 0);
            CHECK(!ctl((unsigned char)v));
            if (!w->allow_encoded_slash) CHECK(v != '/');
            if (w->block_traversal) CHECK(v != '\\');
            once[m++] = (uint8_t)v;
            i += 2;
        } else {
            if (w->block_traversal) CHECK(p[i] != '\\');
            once[m++] = p[i];
        }
    }
    if (w->block_traversal) {
        CHECK(!dot_segment(p, n));
        CHECK(!dot_segment(once, m));
        CHECK(!memchr(once, '\\', m));
    }
    free(once);
}

static int is_400(sh_waf_rule r)
{
    return r == SH_WAF_BAD_ESCAPE || r == SH_WAF_CONTROL || r == SH_WAF_URI_SIZE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t flags = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    const uint8_t *q = memchr(p, '?', n);
    size_t plen = q ? (size_t)(q - p) : n;
    size_t qlen = q ? n - plen - 1 : 0;

    sh_waf_conf w = {.enabled = 1,
                     .methods = SH_M_DEFAULT,
                     .max_uri = flags & 4 ? 32 : 8192,
                     .max_query = flags & 4 ? 16 : 8192,
                     .max_header = 8192,
                     .block_traversal = flags & 1,
                     .allow_encoded_slash = (flags >> 1) & 1};

    sh_waf_rule r = sh_waf_check_path(&w, (const char *)p, plen);
    CHECK(r >= SH_WAF_PASS && r < SH_WAF_RULE_COUNT);
    CHECK(r == sh_waf_check_path(&w, (const char *)p, plen));
    CHECK((r == SH_WAF_PASS) == (sh_waf_rule_status(r) == 0));
    CHECK((r == SH_WAF_PASS) == (sh_waf_rule_detail(r) == NULL));
    CHECK(sh_waf_rule_name(r) != NULL);
    CHECK(r != SH_WAF_QUERY_SIZE && r != SH_WAF_HEADER_SIZE && r != SH_WAF_METHOD &&
          r != SH_WAF_METHOD_UNKNOWN);
    if (r == SH_WAF_PASS) accepted_path_ok(&w, p, plen);
    if (r == SH_WAF_TRAVERSAL || r == SH_WAF_BACKSLASH) CHECK(w.block_traversal);
    if (r == SH_WAF_ENCODED_SLASH) CHECK(!w.allow_encoded_slash);

    /* Relaxing a switch never refuses more; the malformed-input rules do not
     * depend on the switches at all. */
    for (int bt = 0; bt <= 1; bt++) {
        for (int es = 0; es <= 1; es++) {
            sh_waf_conf v = w;
            v.block_traversal = bt;
            v.allow_encoded_slash = es;
            sh_waf_rule rv = sh_waf_check_path(&v, (const char *)p, plen);
            if (is_400(r) || is_400(rv)) CHECK(rv == r);
            if (r == SH_WAF_PASS && bt <= w.block_traversal && es >= w.allow_encoded_slash)
                CHECK(rv == SH_WAF_PASS);
        }
    }

    if (q) {
        sh_waf_rule rq = sh_waf_check_query(&w, (const char *)q + 1, qlen);
        CHECK(rq == SH_WAF_PASS || rq == SH_WAF_QUERY_SIZE || rq == SH_WAF_CONTROL);
        CHECK(rq == sh_waf_check_query(&w, (const char *)q + 1, qlen));
        if (rq == SH_WAF_PASS) {
            CHECK(qlen <= w.max_query);
            for (size_t i = 0; i < qlen; i++) {
                CHECK(!ctl(q[1 + i]));
                int v = esc(q + 1, qlen, i);
                if (v >= 0) CHECK(!ctl((unsigned char)v));
            }
        }
    }
    return 0;
}
