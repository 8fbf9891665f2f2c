/* Unit tests: HTTP caching rules (proxy/cache/policy.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "shield/cache_policy.h"
#include "shield/http.h"

#define NOW 1700000000LL
#define LM  784111777LL /* Sun, 06 Nov 1994 08:49:37 GMT */
#define HDR(n, v)                                                                                  \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }
#define NH(a) (sizeof(a) / sizeof((a)[0]))

static char *fwd_origin[] = {"Origin"};

static sh_behavior_conf beh(int64_t min, int64_t def, int64_t max)
{
    sh_behavior_conf b;
    memset(&b, 0, sizeof(b));
    b.min_ttl = min;
    b.default_ttl = def;
    b.max_ttl = max;
    b.forward_headers = fwd_origin;
    b.nforward_headers = 1;
    return b;
}

/* Evaluate with the given headers; returns the policy. */
static cache_policy eval(const sh_behavior_conf *b, int status, const sh_header *h, size_t n,
                         int auth)
{
    cache_policy p;
    cache_policy_eval(b, status, h, n, auth, NOW, &p);
    return p;
}

/* One Cache-Control header on status 200, default behavior limits given. */
static cache_policy eval_cc(const sh_behavior_conf *b, const char *cc)
{
    sh_header h = {"Cache-Control", 13, cc, strlen(cc)};
    return eval(b, 200, &h, 1, 0);
}

static int64_t pdate(const char *s)
{
    int64_t t = -42;
    if (sh_http_parse_date(s, strlen(s), &t) != 0) return -1;
    return t;
}

/* ---- dates ---- */

static void test_date_formats(void **st)
{
    assert_int_equal(pdate("Sun, 06 Nov 1994 08:49:37 GMT"), LM);
    assert_int_equal(pdate("Sunday, 06-Nov-94 08:49:37 GMT"), LM);
    assert_int_equal(pdate("Sun Nov  6 08:49:37 1994"), LM);
    assert_int_equal(pdate("Sun Nov 06 08:49:37 1994"), LM);
    assert_int_equal(pdate("  Sun, 06 Nov 1994 08:49:37 GMT\t"), LM);
    assert_int_equal(pdate("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    assert_int_equal(pdate("Thu, 29 Feb 2024 12:00:00 GMT"), 1709208000);
    assert_int_equal(pdate("Sat, 29 Feb 2000 00:00:00 GMT"), 951782400);
    assert_int_equal(pdate("Saturday, 01-Jan-00 00:00:00 GMT"), 946684800); /* 00 => 2000 */
    assert_int_equal(pdate("Thursday, 01-Jan-70 00:00:00 GMT"), 0);         /* 70 => 1970 */
    assert_int_equal(pdate("Fri, 31 Dec 9999 23:59:59 GMT"), 253402300799LL);
    assert_int_equal(pdate("Tue, 14 Nov 2023 22:13:20 GMT"), NOW);

    /* round trip with the formatter of proxy/http.c */
    int64_t samples[] = {0, 86399, 951782400, NOW, 4102444800LL};
    for (size_t i = 0; i < NH(samples); i++) {
        char buf[30];
        size_t len = sh_http_date(samples[i], buf);
        int64_t t = -1;
        assert_int_equal(sh_http_parse_date(buf, len, &t), 0);
        assert_int_equal(t, samples[i]);
    }
}

static void test_date_invalid(void **st)
{
    const char *bad[] = {
        "",
        "0",
        "-1",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "sun, 06 Nov 1994 08:49:37 GMT", /* names are case-sensitive */
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",   /* day needs 2 digits */
        "Sun,  06 Nov 1994 08:49:37 GMT", /* extra space */
        "Sun, 06 Nov 1994 08:49:37 GMTX",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 30 Feb 1994 08:49:37 GMT",
        "Wed, 29 Feb 2023 00:00:00 GMT", /* 2023 is not a leap year */
        "Mon, 29 Feb 1900 00:00:00 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 32 Dec 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun, 06 Nov 1969 08:49:37 GMT", /* before the epoch */
        "Sun, 06 Nov 19a4 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sund, 06-Nov-94 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT", /* RFC 850 needs the long day name */
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 1994 GMT",
        "1994-11-06T08:49:37Z",
    };
    for (size_t i = 0; i < NH(bad); i++) {
        int64_t t = 12345;
        assert_int_equal(sh_http_parse_date(bad[i], strlen(bad[i]), &t), -1);
        assert_int_equal(t, 12345); /* untouched */
    }
    int64_t t;
    assert_int_equal(sh_http_parse_date(NULL, 0, &t), -1);
    /* counted, not NUL-terminated: a valid prefix of a longer buffer */
    const char *buf = "Sun, 06 Nov 1994 08:49:37 GMTgarbage";
    assert_int_equal(sh_http_parse_date(buf, 29, &t), 0);
    assert_int_equal(t, LM);
}

/* ---- Cache-Control ---- */

static cache_control cc_of(const char *v)
{
    cache_control cc;
    cache_control_init(&cc);
    cache_control_parse(v, strlen(v), &cc);
    return cc;
}

static void test_cache_control(void **st)
{
    cache_control cc = cc_of("max-age=60, s-maxage=120");
    assert_int_equal(cc.max_age, 60);
    assert_int_equal(cc.s_maxage, 120);
    assert_int_equal(cc.stale_while_revalidate, -1);
    assert_int_equal(cc.stale_if_error, -1);
    assert_false(cc.no_cache || cc.no_store || cc.private_ || cc.public_);

    assert_int_equal(cc_of("MAX-AGE=60").max_age, 60);
    assert_int_equal(cc_of("Max-Age = 61").max_age, 61);
    assert_int_equal(cc_of("max-age=\"62\"").max_age, 62);
    assert_int_equal(cc_of("max-age=abc").max_age, -1);
    assert_int_equal(cc_of("max-age=-1").max_age, -1);
    assert_int_equal(cc_of("max-age=").max_age, -1);
    assert_int_equal(cc_of("max-age").max_age, -1);
    assert_int_equal(cc_of("max-age=1.5").max_age, -1);
    assert_int_equal(cc_of("max-age=\"60").max_age, -1); /* unterminated quote */
    assert_int_equal(cc_of("max-age=99999999999999999999999").max_age, CACHE_DELTA_MAX);
    assert_int_equal(cc_of("max-age=60, max-age=10").max_age, 60);  /* first wins */
    assert_int_equal(cc_of("max-age=abc, max-age=30").max_age, 30); /* first valid */
    assert_int_equal(cc_of("max-age=0").max_age, 0);

    cc = cc_of("no-cache=\"Set-Cookie, X-Foo\", max-age=5");
    assert_true(cc.no_cache);
    assert_int_equal(cc.max_age, 5);
    cc = cc_of("private=\"X-User\"");
    assert_true(cc.private_);
    cc = cc_of("foo=bar, PUBLIC, immutable, ext=\"a,b\"");
    assert_true(cc.public_);
    assert_true(cc.immutable);
    cc = cc_of("stale-while-revalidate=30, stale-if-error=600");
    assert_int_equal(cc.stale_while_revalidate, 30);
    assert_int_equal(cc.stale_if_error, 600);
    cc = cc_of("must-revalidate,proxy-revalidate,no-store");
    assert_true(cc.must_revalidate);
    assert_true(cc.proxy_revalidate);
    assert_true(cc.no_store);
    /* a malformed element is skipped, the rest counts */
    cc = cc_of("max-age=60 garbage, public");
    assert_int_equal(cc.max_age, -1);
    assert_true(cc.public_);
    cc = cc_of(",, ,=5, s-maxage=7,");
    assert_int_equal(cc.s_maxage, 7);

    /* several fields combine, first wins across fields */
    sh_header h[] = {HDR("Cache-Control", "max-age=10"), HDR("X-Other", "max-age=99"),
                     HDR("cache-control", "max-age=20, private")};
    cache_control_from_headers(h, NH(h), &cc);
    assert_int_equal(cc.max_age, 10);
    assert_true(cc.private_);
}

/* ---- TTL matrix ---- */

static void test_ttl_defaults(void **st)
{
    sh_behavior_conf b = beh(0, 86400, 31536000);
    cache_policy p;

    p = eval(&b, 200, NULL, 0, 0);
    assert_true(p.cacheable);
    assert_null(p.reason);
    assert_int_equal(p.ttl, 86400);
    assert_null(p.etag);
    assert_int_equal(p.last_modified, -1);
    assert_int_equal(p.date, -1);
    assert_int_equal(p.initial_age, 0);
    assert_int_equal(p.stale_while_revalidate, 0);
    assert_int_equal(p.stale_if_error, 0);
    assert_false(p.must_revalidate);

    assert_int_equal(eval_cc(&b, "max-age=60").ttl, 60);
    assert_int_equal(eval_cc(&b, "max-age=60, s-maxage=120").ttl, 120);
    assert_int_equal(eval_cc(&b, "s-maxage=30, max-age=600").ttl, 30);
    p = eval_cc(&b, "max-age=0");
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 0);
    assert_int_equal(eval_cc(&b, "max-age=abc").ttl, 86400); /* invalid => absent */
    assert_int_equal(eval_cc(&b, "public").ttl, 86400);
    assert_int_equal(eval_cc(&b, "max-age=99999999999").ttl, 31536000);

    p = eval_cc(&b, "no-store");
    assert_false(p.cacheable);
    assert_string_equal(p.reason, "no-store");
    assert_int_equal(p.ttl, 0);
    p = eval_cc(&b, "private, max-age=600");
    assert_false(p.cacheable);
    assert_string_equal(p.reason, "private");
    p = eval_cc(&b, "no-cache");
    assert_false(p.cacheable);
    assert_string_equal(p.reason, "no-cache");
    p = eval_cc(&b, "no-cache=\"Set-Cookie\"");
    assert_false(p.cacheable);
}

static void test_ttl_expires(void **st)
{
    sh_behavior_conf b = beh(0, 86400, 31536000);
    char date[30], exp[30], past[30];
    sh_http_date(NOW - 1000, date);
    sh_http_date(NOW, exp);
    sh_http_date(NOW - 5000, past);

    /* relative to the origin's Date, not our clock */
    sh_header h1[] = {{"Date", 4, date, 29}, {"Expires", 7, exp, 29}};
    cache_policy p = eval(&b, 200, h1, 2, 0);
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 1000);
    assert_int_equal(p.date, NOW - 1000);

    /* no Date: relative to now */
    char later[30];
    sh_http_date(NOW + 1800, later);
    sh_header h2[] = {{"Expires", 7, later, 29}};
    assert_int_equal(eval(&b, 200, h2, 1, 0).ttl, 1800);

    /* in the past, or invalid: expired (cached with TTL 0 => revalidate) */
    sh_header h3[] = {{"Expires", 7, past, 29}};
    p = eval(&b, 200, h3, 1, 0);
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 0);
    sh_header h4[] = {HDR("Expires", "0")};
    p = eval(&b, 200, h4, 1, 0);
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 0);

    /* max-age wins over Expires */
    sh_header h5[] = {{"Expires", 7, later, 29}, HDR("Cache-Control", "max-age=60")};
    assert_int_equal(eval(&b, 200, h5, 2, 0).ttl, 60);

    /* clamped to MaxTTL / MinTTL */
    sh_behavior_conf bmax = beh(0, 86400, 600);
    assert_int_equal(eval(&bmax, 200, h2, 1, 0).ttl, 600);
    sh_behavior_conf bmin = beh(300, 86400, 31536000);
    assert_int_equal(eval(&bmin, 200, h3, 1, 0).ttl, 300);
    assert_int_equal(eval(&bmin, 200, h4, 1, 0).ttl, 300);
}

static void test_ttl_min_max(void **st)
{
    sh_behavior_conf bmin = beh(300, 86400, 31536000);
    cache_policy p;

    assert_int_equal(eval_cc(&bmin, "max-age=60").ttl, 300);
    assert_int_equal(eval_cc(&bmin, "max-age=0").ttl, 300);
    assert_int_equal(eval_cc(&bmin, "max-age=600").ttl, 600);
    assert_int_equal(eval(&bmin, 200, NULL, 0, 0).ttl, 86400);
    /* MinTTL > 0 overrides no-store / private / no-cache (CloudFront) */
    p = eval_cc(&bmin, "no-store");
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 300);
    assert_false(p.must_revalidate);
    p = eval_cc(&bmin, "private, max-age=9999");
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 300);
    p = eval_cc(&bmin, "no-cache");
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 300);
    assert_true(p.must_revalidate);

    sh_behavior_conf bmax = beh(0, 86400, 3600);
    assert_int_equal(eval_cc(&bmax, "max-age=86400").ttl, 3600);
    assert_int_equal(eval_cc(&bmax, "s-maxage=7200").ttl, 3600);
    assert_int_equal(eval_cc(&bmax, "max-age=100").ttl, 100);
    assert_int_equal(eval(&bmax, 200, NULL, 0, 0).ttl, 3600); /* default clamped */

    sh_behavior_conf bdef = beh(1000, 500, 3600); /* default is at least min */
    assert_int_equal(eval(&bdef, 200, NULL, 0, 0).ttl, 1000);
    sh_behavior_conf bsmall = beh(0, 600, 3600);
    assert_int_equal(eval(&bsmall, 200, NULL, 0, 0).ttl, 600);
}

static void test_authorization(void **st)
{
    sh_behavior_conf b = beh(0, 86400, 31536000);
    cache_policy p = eval(&b, 200, NULL, 0, 1);
    assert_false(p.cacheable);
    assert_string_equal(p.reason, "Authorization without public/s-maxage/must-revalidate");

    sh_header hmax[] = {HDR("Cache-Control", "max-age=60")};
    assert_false(eval(&b, 200, hmax, 1, 1).cacheable);
    sh_header hpub[] = {HDR("Cache-Control", "public, max-age=60")};
    p = eval(&b, 200, hpub, 1, 1);
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 60);
    sh_header hs[] = {HDR("Cache-Control", "s-maxage=30")};
    p = eval(&b, 200, hs, 1, 1);
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 30);
    sh_header hmr[] = {HDR("Cache-Control", "must-revalidate, max-age=10")};
    p = eval(&b, 200, hmr, 1, 1);
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 10);
    assert_true(p.must_revalidate);
    /* MinTTL does not make an authorized response shareable */
    sh_behavior_conf bmin = beh(300, 86400, 31536000);
    assert_false(eval(&bmin, 200, NULL, 0, 1).cacheable);
    /* same headers without Authorization are fine */
    assert_true(eval(&b, 200, hmax, 1, 0).cacheable);
}

static void test_statuses(void **st)
{
    sh_behavior_conf b = beh(0, 86400, 31536000);
    sh_header hmax[] = {HDR("Cache-Control", "max-age=60")};
    int normal[] = {200, 203, 300, 301, 410};
    for (size_t i = 0; i < NH(normal); i++) {
        cache_policy p = eval(&b, normal[i], hmax, 1, 0);
        assert_true(p.cacheable);
        assert_int_equal(p.ttl, 60);
        assert_false(p.is_error);
    }
    int never[] = {201, 204, 206, 302, 303, 304, 307, 308, 401, 416, 429, 505};
    for (size_t i = 0; i < NH(never); i++) {
        cache_policy p = eval(&b, never[i], hmax, 1, 0);
        assert_false(p.cacheable);
        assert_string_equal(p.reason, "status not cacheable");
        assert_int_equal(p.ttl, 0);
    }
}

static void test_error_caching(void **st)
{
    sh_behavior_conf b = beh(0, 86400, 31536000);
    cache_policy p;
    int always[] = {404, 414, 500, 501, 502, 503, 504};
    for (size_t i = 0; i < NH(always); i++) {
        p = eval(&b, always[i], NULL, 0, 0);
        assert_true(p.cacheable);
        assert_true(p.is_error);
        assert_int_equal(p.ttl, 10);
    }
    int conditional[] = {400, 403, 405, 412, 415};
    sh_header hmax[] = {HDR("Cache-Control", "max-age=60")};
    sh_header hs[] = {HDR("Cache-Control", "s-maxage=5")};
    char later[30];
    sh_http_date(NOW + 600, later);
    sh_header hexp[] = {{"Expires", 7, later, 29}};
    for (size_t i = 0; i < NH(conditional); i++) {
        p = eval(&b, conditional[i], NULL, 0, 0);
        assert_false(p.cacheable);
        assert_string_equal(p.reason, "error status without max-age/s-maxage");
        assert_false(eval(&b, conditional[i], hexp, 1, 0).cacheable);
        p = eval(&b, conditional[i], hmax, 1, 0);
        assert_true(p.cacheable);
        assert_int_equal(p.ttl, 60);
        p = eval(&b, conditional[i], hs, 1, 0);
        assert_true(p.cacheable);
        assert_int_equal(p.ttl, 10); /* max(10, 5) */
    }
    /* origin lifetime raises the 10 s floor, capped by MaxTTL */
    assert_int_equal(eval(&b, 404, hmax, 1, 0).ttl, 60);
    assert_int_equal(eval(&b, 503, hs, 1, 0).ttl, 10);
    assert_int_equal(eval(&b, 404, hexp, 1, 0).ttl, 600);
    sh_behavior_conf bmax = beh(0, 86400, 30);
    sh_header hbig[] = {HDR("Cache-Control", "max-age=99999")};
    assert_int_equal(eval(&bmax, 404, hbig, 1, 0).ttl, 30);
    /* behavior MinTTL does not apply to errors */
    sh_behavior_conf bmin = beh(300, 86400, 31536000);
    assert_int_equal(eval(&bmin, 502, NULL, 0, 0).ttl, 10);

    /* no-store/no-cache/private stop 404, 414, 501 only */
    sh_header hns[] = {HDR("Cache-Control", "no-store")};
    sh_header hpriv[] = {HDR("Cache-Control", "private")};
    sh_header hnc[] = {HDR("Cache-Control", "no-cache")};
    p = eval(&b, 404, hns, 1, 0);
    assert_false(p.cacheable);
    assert_string_equal(p.reason, "no-store/no-cache/private on error");
    assert_false(eval(&b, 414, hpriv, 1, 0).cacheable);
    assert_false(eval(&b, 501, hnc, 1, 0).cacheable);
    p = eval(&b, 500, hns, 1, 0);
    assert_true(p.cacheable);
    assert_int_equal(p.ttl, 10);
    p = eval(&b, 503, hnc, 1, 0);
    assert_true(p.cacheable);
    assert_true(p.must_revalidate);
    /* Authorization still applies */
    assert_false(eval(&b, 404, NULL, 0, 1).cacheable);
}

static void test_vary(void **st)
{
    sh_behavior_conf b = beh(0, 86400, 31536000);
    cache_policy p;

    sh_header star[] = {HDR("Vary", "*")};
    p = eval(&b, 200, star, 1, 0);
    assert_false(p.cacheable);
    assert_string_equal(p.reason, "Vary: *");
    sh_header star2[] = {HDR("Vary", "Accept-Encoding"), HDR("vary", "Origin, *")};
    assert_false(eval(&b, 200, star2, 2, 0).cacheable);
    sh_behavior_conf bmin = beh(300, 86400, 31536000);
    assert_false(eval(&bmin, 200, star, 1, 0).cacheable);
    assert_false(eval(&b, 404, star, 1, 0).cacheable);

    sh_header ae[] = {HDR("Vary", "Accept-Encoding")};
    p = eval(&b, 200, ae, 1, 0);
    assert_true(p.cacheable);
    assert_false(p.vary_unforwarded);
    sh_header fwd[] = {HDR("Vary", "origin , accept-encoding")};
    p = eval(&b, 200, fwd, 1, 0);
    assert_true(p.cacheable);
    assert_false(p.vary_unforwarded);
    sh_header ua[] = {HDR("Vary", "Accept-Encoding,User-Agent")};
    p = eval(&b, 200, ua, 1, 0);
    assert_true(p.cacheable); /* reported, the engine decides */
    assert_true(p.vary_unforwarded);
    sh_behavior_conf none = beh(0, 86400, 31536000);
    none.nforward_headers = 0;
    none.forward_headers = NULL;
    sh_header org[] = {HDR("Vary", "Origin")};
    assert_true(eval(&none, 200, org, 1, 0).vary_unforwarded);
    assert_false(eval(&b, 200, org, 1, 0).vary_unforwarded);
}

static void test_validators(void **st)
{
    sh_behavior_conf b = beh(0, 86400, 31536000);
    sh_header h[] = {
        HDR("ETag", "\"abc\""),
        HDR("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        HDR("Date", "Tue, 14 Nov 2023 22:13:20 GMT"),
        HDR("Age", "42"),
        HDR("Cache-Control", "max-age=60, stale-while-revalidate=30, stale-if-error=600"),
    };
    cache_policy p = eval(&b, 200, h, NH(h), 0);
    assert_true(p.cacheable);
    assert_int_equal(p.etag_len, 5);
    assert_memory_equal(p.etag, "\"abc\"", 5);
    assert_int_equal(p.last_modified, LM);
    assert_int_equal(p.date, NOW);
    assert_int_equal(p.initial_age, 42);
    assert_int_equal(p.ttl, 60);
    assert_int_equal(p.stale_while_revalidate, 30);
    assert_int_equal(p.stale_if_error, 600);
    assert_false(p.must_revalidate);
    assert_int_equal(p.cc.max_age, 60);

    sh_header bad[] = {
        HDR("Last-Modified", "yesterday"),
        HDR("Date", "now"),
        HDR("Cache-Control", "max-age=60, stale-while-revalidate=30, proxy-revalidate"),
    };
    p = eval(&b, 200, bad, NH(bad), 0);
    assert_int_equal(p.last_modified, -1);
    assert_int_equal(p.date, -1);
    assert_null(p.etag);
    assert_true(p.must_revalidate);
    assert_int_equal(p.stale_while_revalidate, 0); /* never stale with must-revalidate */

    /* not cacheable: validators still reported, lifetimes zero */
    sh_header ns[] = {HDR("ETag", "W/\"x\""), HDR("Cache-Control", "no-store, stale-if-error=5")};
    p = eval(&b, 200, ns, NH(ns), 0);
    assert_false(p.cacheable);
    assert_int_equal(p.etag_len, 5); /* W/"x" */
    assert_int_equal(p.stale_if_error, 0);
}

/* ---- age and freshness ---- */

static void test_age(void **st)
{
    assert_int_equal(cache_age(1000, 0, 1010), 10);
    assert_int_equal(cache_age(1000, 5, 1010), 15);
    assert_int_equal(cache_age(1000, 0, 1000), 0);
    assert_int_equal(cache_age(1000, 7, 990), 7); /* clock went back */
    assert_int_equal(cache_age(1000, -3, 1010), 10);

    sh_header h1[] = {HDR("age", "30")};
    assert_int_equal(cache_parse_age(h1, 1), 30);
    assert_int_equal(cache_parse_age(NULL, 0), 0);
    sh_header h2[] = {HDR("Age", "abc")};
    assert_int_equal(cache_parse_age(h2, 1), 0);
    sh_header h3[] = {HDR("Age", "-5")};
    assert_int_equal(cache_parse_age(h3, 1), 0);
    sh_header h4[] = {HDR("Age", " 7 ")};
    assert_int_equal(cache_parse_age(h4, 1), 7);
    sh_header h5[] = {HDR("Age", "123456789012345678901234")};
    assert_int_equal(cache_parse_age(h5, 1), CACHE_DELTA_MAX);
    sh_header h6[] = {HDR("Age", "1"), HDR("Age", "2")};
    assert_int_equal(cache_parse_age(h6, 2), 1);
}

static void test_freshness(void **st)
{
    cache_fresh_info f = {.stored_at = 1000, .initial_age = 0, .ttl = 60, .swr = 30};
    assert_int_equal(cache_freshness_at(&f, 1000), CACHE_FRESH);
    assert_int_equal(cache_freshness_at(&f, 1059), CACHE_FRESH);
    assert_int_equal(cache_freshness_at(&f, 1060), CACHE_STALE_SERVABLE_WHILE_REVALIDATE);
    assert_int_equal(cache_freshness_at(&f, 1089), CACHE_STALE_SERVABLE_WHILE_REVALIDATE);
    assert_int_equal(cache_freshness_at(&f, 1090), CACHE_STALE_MUST_REVALIDATE);
    assert_int_equal(cache_freshness_at(&f, 900), CACHE_FRESH);

    f.initial_age = 50; /* the origin's Age eats into the lifetime */
    assert_int_equal(cache_freshness_at(&f, 1009), CACHE_FRESH);
    assert_int_equal(cache_freshness_at(&f, 1010), CACHE_STALE_SERVABLE_WHILE_REVALIDATE);
    f.initial_age = 0;

    f.must_revalidate = 1;
    assert_int_equal(cache_freshness_at(&f, 1059), CACHE_FRESH);
    assert_int_equal(cache_freshness_at(&f, 1060), CACHE_STALE_MUST_REVALIDATE);

    cache_fresh_info z = {.stored_at = 1000, .ttl = 0};
    assert_int_equal(cache_freshness_at(&z, 1000), CACHE_STALE_MUST_REVALIDATE);
    cache_fresh_info noswr = {.stored_at = 1000, .ttl = 60};
    assert_int_equal(cache_freshness_at(&noswr, 1060), CACHE_STALE_MUST_REVALIDATE);

    /* from a policy */
    sh_behavior_conf b = beh(0, 86400, 31536000);
    sh_header h[] = {HDR("Cache-Control", "max-age=100, stale-while-revalidate=10"),
                     HDR("Age", "20")};
    cache_policy p = eval(&b, 200, h, NH(h), 0);
    cache_fresh_info g;
    cache_fresh_info_init(&g, &p, NOW);
    assert_int_equal(g.stored_at, NOW);
    assert_int_equal(g.initial_age, 20);
    assert_int_equal(g.ttl, 100);
    assert_int_equal(g.swr, 10);
    assert_int_equal(g.sie, 0);
    assert_false(g.must_revalidate);
    assert_int_equal(cache_freshness_at(&g, NOW + 79), CACHE_FRESH);
    assert_int_equal(cache_freshness_at(&g, NOW + 80), CACHE_STALE_SERVABLE_WHILE_REVALIDATE);
    assert_int_equal(cache_freshness_at(&g, NOW + 90), CACHE_STALE_MUST_REVALIDATE);
}

static void test_stale_if_error(void **st)
{
    cache_fresh_info f = {.stored_at = 1000, .ttl = 60};
    assert_true(cache_stale_if_error_ok(&f, 1030));       /* fresh */
    assert_true(cache_stale_if_error_ok(&f, 1000000000)); /* CloudFront: no bound */
    f.must_revalidate = 1;
    assert_true(cache_stale_if_error_ok(&f, 1059));
    assert_false(cache_stale_if_error_ok(&f, 1060));
    f.must_revalidate = 0;
    f.sie = 100; /* origin's own bound */
    assert_true(cache_stale_if_error_ok(&f, 1160));
    assert_false(cache_stale_if_error_ok(&f, 1161));
    f.must_revalidate = 1;
    assert_false(cache_stale_if_error_ok(&f, 1100));
}

/* ---- ranges ---- */

static cache_range_rc rng(const char *v, int64_t size, cache_range *out, size_t max, size_t *n)
{
    return cache_parse_range(v, v ? strlen(v) : 0, size, out, max, n);
}

static void expect_one(const char *v, int64_t size, int64_t start, int64_t end)
{
    cache_range r[4];
    size_t n = 99;
    assert_int_equal(rng(v, size, r, 4, &n), CACHE_RANGE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].start, start);
    assert_int_equal(r[0].end, end);
}

static void expect_rc(const char *v, int64_t size, cache_range_rc rc)
{
    cache_range r[4];
    size_t n = 99;
    assert_int_equal(rng(v, size, r, 4, &n), rc);
    if (rc != CACHE_RANGE_OK) assert_int_equal(n, 0);
}

static void test_range_ok(void **st)
{
    expect_one("bytes=0-8", 1000, 0, 8);
    expect_one("bytes=-10", 1000, 990, 999);
    expect_one("bytes=990-", 1000, 990, 999);
    expect_one("bytes=990-5000", 1000, 990, 999); /* end clamped */
    expect_one("bytes=-5000", 1000, 0, 999);      /* suffix longer than object */
    expect_one("bytes=0-0", 1000, 0, 0);
    expect_one("bytes=999-999", 1000, 999, 999);
    expect_one("BYTES=0-8", 1000, 0, 8);
    expect_one("  bytes=0-8  ", 1000, 0, 8);
    expect_one("bytes=0-1,2000-", 1000, 0, 1); /* unsatisfiable element dropped */
    expect_one("bytes=0-1, -0", 1000, 0, 1);
    expect_one("bytes=123456789012345678-", 200000000000000000LL, 123456789012345678LL,
               199999999999999999LL);      /* 18 digits is fine */
    expect_one("bytes=,0-8,", 1000, 0, 8); /* empty list elements */

    cache_range r[4];
    size_t n = 0;
    assert_int_equal(rng("bytes=0-1,5-6", 1000, r, 4, &n), CACHE_RANGE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].start, 0);
    assert_int_equal(r[0].end, 1);
    assert_int_equal(r[1].start, 5);
    assert_int_equal(r[1].end, 6);
    assert_int_equal(rng("bytes=0-1 ,\t5-6 , 990-", 1000, r, 4, &n), CACHE_RANGE_OK);
    assert_int_equal(n, 3);
    assert_int_equal(r[2].start, 990);
    assert_int_equal(r[2].end, 999);
    assert_int_equal(rng("bytes=0-1,2-3", 1000, r, 4, &n), CACHE_RANGE_OK); /* adjacent */
    assert_int_equal(n, 2);
    assert_int_equal(rng("bytes=0-1,-10", 1000, r, 4, &n), CACHE_RANGE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(r[1].start, 990);
    /* exactly max elements is fine, one more is not */
    assert_int_equal(rng("bytes=0-1,3-4", 1000, r, 2, &n), CACHE_RANGE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rng("bytes=0-1,3-4,6-7", 1000, r, 2, &n), CACHE_RANGE_NONE);
    assert_int_equal(n, 0);
}

static void test_range_none(void **st)
{
    expect_rc(NULL, 1000, CACHE_RANGE_NONE);
    expect_rc("", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=,", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes 0-1", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=a-b", 1000, CACHE_RANGE_NONE);
    expect_rc("items=0-1", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=5-3", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=-", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=5", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=1-2-3", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=0 -1", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=+1-2", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=0-1,x", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=0-5,3-8", 1000, CACHE_RANGE_NONE); /* overlapping */
    expect_rc("bytes=0-1,1-2", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=5-6,0-1", 1000, CACHE_RANGE_NONE); /* out of order */
    expect_rc("bytes=-10,0-1", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=1234567890123456789-", 1000, CACHE_RANGE_NONE); /* 19 digits */
    expect_rc("bytes=0-1234567890123456789", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=-1234567890123456789", 1000, CACHE_RANGE_NONE);
    expect_rc("bytes=5-3", 0, CACHE_RANGE_NONE); /* malformed beats empty object */
}

static void test_range_unsatisfiable(void **st)
{
    expect_rc("bytes=-0", 1000, CACHE_RANGE_UNSATISFIABLE);
    expect_rc("bytes=1000-", 1000, CACHE_RANGE_UNSATISFIABLE);
    expect_rc("bytes=1000-1000", 1000, CACHE_RANGE_UNSATISFIABLE);
    expect_rc("bytes=5000-6000", 1000, CACHE_RANGE_UNSATISFIABLE);
    expect_rc("bytes=1000-2000,3000-", 1000, CACHE_RANGE_UNSATISFIABLE);
    expect_rc("bytes=123456789012345678-", 1000, CACHE_RANGE_UNSATISFIABLE);
    /* zero-size object: every range */
    expect_rc("bytes=0-", 0, CACHE_RANGE_UNSATISFIABLE);
    expect_rc("bytes=0-0", 0, CACHE_RANGE_UNSATISFIABLE);
    expect_rc("bytes=-5", 0, CACHE_RANGE_UNSATISFIABLE);
    expect_rc("bytes=-0", 0, CACHE_RANGE_UNSATISFIABLE);
}

/* ---- conditionals ---- */

static cache_cond cond(const sh_header *h, size_t n, const char *etag, int64_t lm, int get)
{
    return cache_eval_conditionals(h, n, etag, etag ? strlen(etag) : 0, lm, get);
}

#define ONE(name, value, etag, lm, get)                                                            \
    ({                                                                                             \
        sh_header one_[] = {HDR(name, value)};                                                     \
        cond(one_, 1, etag, lm, get);                                                              \
    })

static void test_if_none_match(void **st)
{
    const char *E = "\"abc\"";
    assert_int_equal(cond(NULL, 0, E, LM, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-None-Match", "\"abc\"", E, LM, 1), CACHE_COND_304);
    assert_int_equal(ONE("if-none-match", "\"abc\"", E, LM, 1), CACHE_COND_304);
    assert_int_equal(ONE("If-None-Match", "\"abc\"", E, LM, 0), CACHE_COND_412);
    assert_int_equal(ONE("If-None-Match", "W/\"abc\"", E, LM, 1), CACHE_COND_304); /* weak */
    assert_int_equal(ONE("If-None-Match", "\"abc\"", "W/\"abc\"", LM, 1), CACHE_COND_304);
    assert_int_equal(ONE("If-None-Match", "\"x\", \"abc\"", E, LM, 1), CACHE_COND_304);
    assert_int_equal(ONE("If-None-Match", "\"x\",W/\"abc\" ", E, LM, 1), CACHE_COND_304);
    assert_int_equal(ONE("If-None-Match", "\"x\"", E, LM, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-None-Match", "\"ABC\"", E, LM, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-None-Match", "\"ab\"", E, LM, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-None-Match", "*", E, LM, 1), CACHE_COND_304);
    assert_int_equal(ONE("If-None-Match", "*", NULL, -1, 1), CACHE_COND_304);
    assert_int_equal(ONE("If-None-Match", "*", E, LM, 0), CACHE_COND_412);
    assert_int_equal(ONE("If-None-Match", "\"abc\"", NULL, LM, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-None-Match", "\"x\", \"a,b\"", "\"a,b\"", LM, 1), CACHE_COND_304);
    assert_int_equal(ONE("If-None-Match", "garbage\"", E, LM, 1), CACHE_COND_NONE);

    sh_header two[] = {HDR("If-None-Match", "\"x\""), HDR("If-None-Match", "\"abc\"")};
    assert_int_equal(cond(two, 2, E, LM, 1), CACHE_COND_304);

    /* If-None-Match present and not matching: If-Modified-Since is ignored */
    sh_header inm_ims[] = {HDR("If-None-Match", "\"x\""),
                           HDR("If-Modified-Since", "Tue, 14 Nov 2023 22:13:20 GMT")};
    assert_int_equal(cond(inm_ims, 2, E, LM, 1), CACHE_COND_NONE);
}

static void test_if_modified_since(void **st)
{
    const char *E = "\"abc\"";
    assert_int_equal(ONE("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT", E, LM, 1),
                     CACHE_COND_304);
    assert_int_equal(ONE("If-Modified-Since", "Sun, 06 Nov 1994 08:49:38 GMT", E, LM, 1),
                     CACHE_COND_304);
    assert_int_equal(ONE("If-Modified-Since", "Sun, 06 Nov 1994 08:49:36 GMT", E, LM, 1),
                     CACHE_COND_NONE);
    assert_int_equal(ONE("If-Modified-Since", "Sunday, 06-Nov-94 08:49:37 GMT", E, LM, 1),
                     CACHE_COND_304);
    assert_int_equal(ONE("If-Modified-Since", "Sun Nov  6 08:49:37 1994", E, LM, 1),
                     CACHE_COND_304);
    assert_int_equal(ONE("If-Modified-Since", "yesterday", E, LM, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 UTC", E, LM, 1),
                     CACHE_COND_NONE);
    /* only GET/HEAD, only with a known Last-Modified */
    assert_int_equal(ONE("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT", E, LM, 0),
                     CACHE_COND_NONE);
    assert_int_equal(ONE("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT", E, -1, 1),
                     CACHE_COND_NONE);
}

static void test_if_match(void **st)
{
    const char *E = "\"abc\"";
    assert_int_equal(ONE("If-Match", "\"abc\"", E, LM, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-Match", "\"abc\"", E, LM, 0), CACHE_COND_NONE);
    assert_int_equal(ONE("If-Match", "W/\"abc\"", E, LM, 1), CACHE_COND_412); /* strong */
    assert_int_equal(ONE("If-Match", "W/\"abc\"", "W/\"abc\"", LM, 1), CACHE_COND_412);
    assert_int_equal(ONE("If-Match", "\"abc\"", "W/\"abc\"", LM, 1), CACHE_COND_412);
    assert_int_equal(ONE("If-Match", "\"x\"", E, LM, 1), CACHE_COND_412);
    assert_int_equal(ONE("If-Match", "\"x\", \"abc\"", E, LM, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-Match", "*", E, LM, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-Match", "*", NULL, -1, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-Match", "\"abc\"", NULL, LM, 1), CACHE_COND_412);

    /* If-Unmodified-Since */
    assert_int_equal(ONE("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT", E, LM, 1),
                     CACHE_COND_412);
    assert_int_equal(ONE("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT", E, LM, 1),
                     CACHE_COND_NONE);
    assert_int_equal(ONE("If-Unmodified-Since", "Mon, 07 Nov 1994 08:49:37 GMT", E, LM, 1),
                     CACHE_COND_NONE);
    assert_int_equal(ONE("If-Unmodified-Since", "bogus", E, LM, 1), CACHE_COND_NONE);
    assert_int_equal(ONE("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT", E, -1, 1),
                     CACHE_COND_NONE);
    /* If-Match present (and matching): If-Unmodified-Since ignored */
    sh_header im_ius[] = {HDR("If-Match", "\"abc\""),
                          HDR("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT")};
    assert_int_equal(cond(im_ius, 2, E, LM, 1), CACHE_COND_NONE);
}

static void test_precedence(void **st)
{
    const char *E = "\"abc\"";
    /* If-Match failure beats a matching If-None-Match */
    sh_header a[] = {HDR("If-None-Match", "\"abc\""), HDR("If-Match", "\"x\"")};
    assert_int_equal(cond(a, 2, E, LM, 1), CACHE_COND_412);
    /* If-Match passes, then If-None-Match matches */
    sh_header b[] = {HDR("If-Match", "\"abc\""), HDR("If-None-Match", "\"abc\"")};
    assert_int_equal(cond(b, 2, E, LM, 1), CACHE_COND_304);
    /* If-Unmodified-Since failure beats If-Modified-Since */
    sh_header c[] = {HDR("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"),
                     HDR("If-Unmodified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")};
    assert_int_equal(cond(c, 2, E, LM, 1), CACHE_COND_412);
    /* matching If-None-Match wins over a failing If-Modified-Since */
    sh_header d[] = {HDR("If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT"),
                     HDR("If-None-Match", "W/\"abc\"")};
    assert_int_equal(cond(d, 2, E, LM, 1), CACHE_COND_304);
}

static void test_if_range(void **st)
{
    const char *E = "\"abc\"";
    const char *D = "Sun, 06 Nov 1994 08:49:37 GMT";
#define IR(v, etag, lm) cache_if_range_ok(v, strlen(v), etag, (etag) ? strlen(etag) : 0, lm)
    assert_int_equal(IR("\"abc\"", E, LM), 1);
    assert_int_equal(IR(" \"abc\" ", E, LM), 1);
    assert_int_equal(IR("W/\"abc\"", E, LM), 0); /* weak never matches */
    assert_int_equal(IR("\"abc\"", "W/\"abc\"", LM), 0);
    assert_int_equal(IR("W/\"abc\"", "W/\"abc\"", LM), 0);
    assert_int_equal(IR("\"x\"", E, LM), 0);
    assert_int_equal(cache_if_range_ok("\"abc\"", 5, NULL, 0, LM), 0);
    assert_int_equal(IR(D, E, LM), 1);
    assert_int_equal(IR("Sunday, 06-Nov-94 08:49:37 GMT", E, LM), 1);
    assert_int_equal(IR("Sun, 06 Nov 1994 08:49:38 GMT", E, LM), 0);
    assert_int_equal(IR("Sun, 06 Nov 1994 08:49:36 GMT", E, LM), 0);
    assert_int_equal(IR(D, E, -1), 0);
    assert_int_equal(IR("garbage", E, LM), 0);
    assert_int_equal(IR("", E, LM), 0);
    assert_int_equal(cache_if_range_ok(NULL, 0, E, 5, LM), 0);
#undef IR
}

static void test_etag_md5(void **st)
{
    unsigned char md5[16];
    const char *ok = "\"9e107d9d372bb6826bd81d3542a419d6\"";
    memset(md5, 0, sizeof(md5));
    assert_true(cache_etag_is_plain_md5(ok, strlen(ok), md5));
    assert_int_equal(md5[0], 0x9e);
    assert_int_equal(md5[1], 0x10);
    assert_int_equal(md5[15], 0xd6);
    const char *upper = "\"9E107D9D372BB6826BD81D3542A419D6\"";
    unsigned char md5u[16];
    assert_true(cache_etag_is_plain_md5(upper, strlen(upper), md5u));
    assert_memory_equal(md5, md5u, 16);
    assert_true(cache_etag_is_plain_md5(ok, strlen(ok), NULL));

    const char *bad[] = {
        "\"9e107d9d372bb6826bd81d3542a419d6-2\"", /* multipart */
        "\"d41d8cd98f00b204e9800998ecf8427e-12\"",
        "W/\"9e107d9d372bb6826bd81d3542a419d6\"",
        "9e107d9d372bb6826bd81d3542a419d6",
        "\"9e107d9d372bb6826bd81d3542a419d\"", /* 31 hex */
        "\"9e107d9d372bb6826bd81d3542a419dg\"",
        "\"\"",
        "",
    };
    for (size_t i = 0; i < NH(bad); i++) {
        unsigned char m[16] = {1};
        assert_false(cache_etag_is_plain_md5(bad[i], strlen(bad[i]), m));
        assert_int_equal(m[0], 1); /* untouched */
    }
    assert_false(cache_etag_is_plain_md5(NULL, 34, md5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_date_formats),
        cmocka_unit_test(test_date_invalid),
        cmocka_unit_test(test_cache_control),
        cmocka_unit_test(test_ttl_defaults),
        cmocka_unit_test(test_ttl_expires),
        cmocka_unit_test(test_ttl_min_max),
        cmocka_unit_test(test_authorization),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_error_caching),
        cmocka_unit_test(test_vary),
        cmocka_unit_test(test_validators),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_freshness),
        cmocka_unit_test(test_stale_if_error),
        cmocka_unit_test(test_range_ok),
        cmocka_unit_test(test_range_none),
        cmocka_unit_test(test_range_unsatisfiable),
        cmocka_unit_test(test_if_none_match),
        cmocka_unit_test(test_if_modified_since),
        cmocka_unit_test(test_if_match),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_if_range),
        cmocka_unit_test(test_etag_md5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
