/*
 * Compression (shield/compress.h): Accept-Encoding negotiation, which requests
 * and responses are compressed, the head rewrite, cache-key variants, and
 * round trips of the streaming compressor for both codecs across arbitrary
 * input splits. gzip is checked with zlib's inflate; br with libbrotlidec,
 * loaded with dlopen (it is on every host that has libbrotli-dev, and libcurl
 * already depends on it) so the unit test needs no extra link flag.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <brotli/decode.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/compress.h"

/* ---- Accept-Encoding --------------------------------------------------------------- */

static void test_accept_encoding_table(void **state)
{
    static const struct {
        const char *v;
        sh_encoding want;
    } t[] = {
        {"", SH_ENC_IDENTITY},
        {"gzip", SH_ENC_GZIP},
        {"br", SH_ENC_BR},
        {"gzip, br", SH_ENC_BR},
        {"br, gzip", SH_ENC_BR},
        {"gzip, deflate, br, zstd", SH_ENC_BR},
        {"deflate", SH_ENC_IDENTITY},
        {"identity", SH_ENC_IDENTITY},
        {"identity;q=0", SH_ENC_IDENTITY},
        {"gzip, identity;q=0", SH_ENC_GZIP},
        {"GZIP", SH_ENC_GZIP},
        {"Br", SH_ENC_BR},
        {"x-gzip", SH_ENC_GZIP},
        {"gzipx", SH_ENC_IDENTITY},
        {"brotli", SH_ENC_IDENTITY},
        {"  gzip  ,  br  ", SH_ENC_BR},
        {"\tgzip\t", SH_ENC_GZIP},
        {",,gzip,,", SH_ENC_GZIP},
        /* weights */
        {"br;q=0, gzip", SH_ENC_GZIP},
        {"br;q=0", SH_ENC_IDENTITY},
        {"gzip;q=0", SH_ENC_IDENTITY},
        {"gzip;q=0, br;q=0", SH_ENC_IDENTITY},
        {"gzip;q=1.0, br;q=0.5", SH_ENC_GZIP},
        {"gzip;q=0.5, br;q=0.5", SH_ENC_BR},
        {"gzip;q=0.001, br;q=0.0001", SH_ENC_GZIP}, /* 4 decimals: malformed, br ignored */
        {"br;q=0.000", SH_ENC_IDENTITY},
        {"br;q=0.", SH_ENC_IDENTITY},
        {"br;q=1.", SH_ENC_BR},
        {"br;q=1.000", SH_ENC_BR},
        {"br;q=1.001, gzip", SH_ENC_GZIP}, /* > 1: malformed */
        {"br;q=2", SH_ENC_IDENTITY},
        {"br;q=-1", SH_ENC_IDENTITY},
        {"br;q=", SH_ENC_IDENTITY},
        {"br;q", SH_ENC_IDENTITY},
        {"br;q=abc, gzip", SH_ENC_GZIP},
        {"br ; q=0.8 , gzip ; q=0.9", SH_ENC_GZIP},
        {"br;Q=0", SH_ENC_IDENTITY},
        {"br;q=0.8;level=5", SH_ENC_BR},
        {"br;level=\"a,b\", gzip;q=0", SH_ENC_BR},
        {"br;q=\"1\"", SH_ENC_IDENTITY},
        {"br;q=0.5 junk, gzip;q=0.1", SH_ENC_GZIP},
        {"br gzip", SH_ENC_IDENTITY},
        {";q=1, gzip", SH_ENC_GZIP},
        {"gzip;q=0, gzip;q=1", SH_ENC_IDENTITY}, /* any refusal wins */
        {"gzip;q=0.2, gzip;q=0.9, br;q=0.5", SH_ENC_GZIP},
        /* the wildcard stands for codings not listed */
        {"*", SH_ENC_BR},
        {"*;q=0", SH_ENC_IDENTITY},
        {"*;q=0, gzip", SH_ENC_GZIP},
        {"br;q=0, *", SH_ENC_GZIP},
        {"*;q=0.5, gzip;q=0.9", SH_ENC_GZIP},
        {"*;q=0.9, gzip;q=0.5", SH_ENC_BR},
        {"identity, *;q=0", SH_ENC_IDENTITY},
        {"br;q=0.5;", SH_ENC_IDENTITY}, /* empty parameter: malformed */
        {"\"gzip\"", SH_ENC_IDENTITY},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        sh_encoding got = sh_accept_encoding_pick(t[i].v, strlen(t[i].v));
        if (got != t[i].want)
            fail_msg("Accept-Encoding \"%s\": got %s, want %s", t[i].v, sh_encoding_name(got),
                     sh_encoding_name(t[i].want));
    }
    assert_int_equal(sh_accept_encoding_pick(NULL, 0), SH_ENC_IDENTITY);
    /* counted strings: nothing is read past len */
    assert_int_equal(sh_accept_encoding_pick("gzip, br", 4), SH_ENC_GZIP);
    assert_int_equal(sh_accept_encoding_pick("br;q=0", 2), SH_ENC_BR);
}

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static void test_accept_encoding_fields(void **state)
{
    /* Several fields form one list (RFC 9110 §5.3). */
    sh_header a[] = {H("Accept-Encoding", "gzip"), H("X-Other", "br"),
                     H("accept-encoding", "br;q=0.5")};
    assert_int_equal(sh_accept_encoding_pick_headers(a, 3), SH_ENC_GZIP);
    sh_header b[] = {H("Accept-Encoding", "gzip;q=0.1"), H("ACCEPT-ENCODING", "br")};
    assert_int_equal(sh_accept_encoding_pick_headers(b, 2), SH_ENC_BR);
    sh_header c[] = {H("Accept-Encoding", "br"), H("Accept-Encoding", "br;q=0")};
    assert_int_equal(sh_accept_encoding_pick_headers(c, 2), SH_ENC_IDENTITY);
    sh_header d[] = {H("Accept", "gzip")};
    assert_int_equal(sh_accept_encoding_pick_headers(d, 1), SH_ENC_IDENTITY);
    assert_int_equal(sh_accept_encoding_pick_headers(NULL, 0), SH_ENC_IDENTITY);
}

static sh_req make_req(const sh_behavior_conf *b, unsigned method, int minor, const char *path,
                       const sh_header *h, size_t n)
{
    sh_req r = {0};
    r.behavior = b;
    r.method_bit = method;
    r.http_major = 1;
    r.http_minor = minor;
    r.path = path;
    r.path_len = strlen(path);
    r.headers = h;
    r.nheaders = n;
    return r;
}

static void test_negotiate(void **state)
{
    sh_behavior_conf on = {.compress = 1}, off = {.compress = 0};
    sh_header br[] = {H("Accept-Encoding", "gzip, br")};
    sh_header ranged[] = {H("Accept-Encoding", "gzip, br"), H("Range", "bytes=0-9")};
    sh_req r;

    r = make_req(&on, SH_M_GET, 1, "/a.html", br, 1);
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_BR);
    r = make_req(&on, SH_M_HEAD, 1, "/a.html", br, 1);
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_BR);
    r = make_req(&off, SH_M_GET, 1, "/a.html", br, 1);
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_IDENTITY);
    r = make_req(NULL, SH_M_GET, 1, "/a.html", br, 1);
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_IDENTITY);
    r = make_req(&on, SH_M_POST, 1, "/a.html", br, 1);
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_IDENTITY);
    r = make_req(&on, SH_M_GET, 0, "/a.html", br, 1); /* HTTP/1.0: CloudFront sends identity */
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_IDENTITY);
    r = make_req(&on, SH_M_GET, 1, "/a.html", ranged, 2);
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_IDENTITY);
    r = make_req(&on, SH_M_GET, 1, "/books/x.epub", br, 1);
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_IDENTITY);
    r = make_req(&on, SH_M_GET, 1, "/books/X.PDF", br, 1);
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_IDENTITY);
    r = make_req(&on, SH_M_GET, 1, "/books/pdf", br, 1);
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_BR);
    r = make_req(&on, SH_M_GET, 1, "/a.html", NULL, 0);
    assert_int_equal(sh_compress_negotiate(&r), SH_ENC_IDENTITY);
}

/* ---- which responses --------------------------------------------------------------- */

static void test_type_table(void **state)
{
    static const char *const yes[] = {
        "text/html",
        "text/html; charset=utf-8",
        "TEXT/CSS",
        " text/plain ",
        "text/csv",
        "text/javascript",
        "text/xml",
        "text/x-component",
        "application/javascript",
        "application/x-javascript",
        "application/json",
        "application/json;charset=UTF-8",
        "application/xml",
        "application/xhtml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "application/ld+json",
        "application/manifest+json",
        "application/vnd.ms-fontobject",
        "application/x-font-ttf",
        "image/svg+xml",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "font/ttf",
        "font/otf",
        "font/eot",
        "font/opentype",
        "vnd.apple.mpegurl",
    };
    static const char *const no[] = {
        "",
        "text",
        "text/",
        "/html",
        "application/epub+zip",
        "application/pdf",
        "application/octet-stream",
        "application/zip",
        "application/gzip",
        "application/jsonx",
        "application/json+x",
        "image/png",
        "image/jpeg",
        "image/svg",
        "font/woff",
        "font/woff2",
        "video/mp4",
        "text/ html",
        "te xt/html",
        "multipart/byteranges; boundary=x",
    };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!sh_compress_type_ok(yes[i], strlen(yes[i]))) fail_msg("%s not compressible", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (sh_compress_type_ok(no[i], strlen(no[i]))) fail_msg("%s compressible", no[i]);
    assert_false(sh_compress_type_ok(NULL, 0));
}

static void test_response_ok(void **state)
{
    sh_hdrlist h = {0};
    sh_hdrlist_adds(&h, "Content-Type", "text/html");
    assert_true(sh_compress_response_ok(200, &h, 50000));
    assert_true(sh_compress_response_ok(403, &h, 50000));
    assert_true(sh_compress_response_ok(404, &h, 50000));
    assert_false(sh_compress_response_ok(206, &h, 50000));
    assert_false(sh_compress_response_ok(304, &h, 50000));
    assert_false(sh_compress_response_ok(500, &h, 50000));
    assert_false(sh_compress_response_ok(200, &h, -1)); /* no Content-Length */
    assert_false(sh_compress_response_ok(200, &h, 999));
    assert_true(sh_compress_response_ok(200, &h, 1000));
    assert_true(sh_compress_response_ok(200, &h, 10000000));
    assert_false(sh_compress_response_ok(200, &h, 10000001));

    sh_hdrlist_adds(&h, "Cache-Control", "public, max-age=60");
    assert_true(sh_compress_response_ok(200, &h, 50000));
    sh_hdrlist_adds(&h, "Cache-Control", "max-age=\"5,no-transform\", No-Transform");
    assert_false(sh_compress_response_ok(200, &h, 50000));
    sh_hdrlist_del(&h, "Cache-Control");
    sh_hdrlist_adds(&h, "Cache-Control", "x=\"no-transform\"");
    assert_true(sh_compress_response_ok(200, &h, 50000));

    sh_hdrlist_adds(&h, "Content-Encoding", "identity"); /* any value: untouched */
    assert_false(sh_compress_response_ok(200, &h, 50000));
    sh_hdrlist_clear(&h);
    sh_hdrlist_adds(&h, "Content-Type", "application/pdf");
    assert_false(sh_compress_response_ok(200, &h, 50000));
    sh_hdrlist_clear(&h);
    assert_false(sh_compress_response_ok(200, &h, 50000)); /* no Content-Type */
}

static const char *hv(const sh_hdrlist *h, const char *name)
{
    static char buf[256];
    const sh_header *x = sh_hdrlist_get(h, name);
    if (!x) return NULL;
    snprintf(buf, sizeof(buf), "%.*s", (int)x->value_len, x->value);
    return buf;
}

static size_t count(const sh_hdrlist *h, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        n += sh_hdr_is(h->v[i].name, h->v[i].name_len, name);
    return n;
}

static void test_apply_headers(void **state)
{
    sh_hdrlist h = {0};
    sh_hdrlist_adds(&h, "Content-Type", "text/html");
    sh_hdrlist_adds(&h, "ETag", "\"abc\"");
    sh_hdrlist_adds(&h, "Accept-Ranges", "bytes");
    sh_hdrlist_adds(&h, "Content-MD5", "xyz");
    sh_compress_apply_headers(&h, SH_ENC_BR);
    assert_string_equal(hv(&h, "Content-Encoding"), "br");
    assert_string_equal(hv(&h, "ETag"), "W/\"abc\"");
    assert_string_equal(hv(&h, "Vary"), "Accept-Encoding");
    assert_null(hv(&h, "Accept-Ranges"));
    assert_null(hv(&h, "Content-MD5"));
    assert_string_equal(hv(&h, "Content-Type"), "text/html");
    sh_hdrlist_clear(&h);

    /* weak tags are kept, invalid ones removed; Vary fields merged into one */
    sh_hdrlist_adds(&h, "ETag", "W/\"w1\"");
    sh_hdrlist_adds(&h, "Vary", "Origin");
    sh_hdrlist_adds(&h, "Vary", "Access-Control-Request-Method");
    sh_compress_apply_headers(&h, SH_ENC_GZIP);
    assert_string_equal(hv(&h, "Content-Encoding"), "gzip");
    assert_string_equal(hv(&h, "ETag"), "W/\"w1\"");
    assert_int_equal(count(&h, "Vary"), 1);
    assert_string_equal(hv(&h, "Vary"), "Origin, Access-Control-Request-Method, Accept-Encoding");
    sh_hdrlist_clear(&h);

    sh_hdrlist_adds(&h, "ETag", "abc");
    sh_hdrlist_adds(&h, "Vary", "origin, accept-encoding");
    sh_compress_apply_headers(&h, SH_ENC_GZIP);
    assert_null(hv(&h, "ETag"));
    assert_string_equal(hv(&h, "Vary"), "origin, accept-encoding");
    sh_hdrlist_clear(&h);

    sh_hdrlist_adds(&h, "Vary", "*");
    sh_hdrlist_adds(&h, "Content-Encoding", "old");
    sh_compress_apply_headers(&h, SH_ENC_BR);
    assert_string_equal(hv(&h, "Vary"), "*");
    assert_int_equal(count(&h, "Content-Encoding"), 1);
    assert_string_equal(hv(&h, "Content-Encoding"), "br");
    sh_hdrlist_clear(&h);
}

/* ---- cache keys -------------------------------------------------------------------- */

static void test_key_variants(void **state)
{
    sh_behavior_conf b = {.compress = 1};
    size_t len, base;
    char *k = sh_cache_key("Host", 4, "/a.html", 7, NULL, 0, &b, NULL, 0, &len);
    base = len;
    char *plain = sh_malloc(base);
    memcpy(plain, k, base);
    assert_int_equal(sh_compress_key_encoding(k, len), SH_ENC_IDENTITY);
    k = sh_compress_key_variant(k, &len, SH_ENC_IDENTITY);
    assert_int_equal(len, base);
    k = sh_compress_key_variant(k, &len, SH_ENC_BR);
    assert_int_equal(len, base + 4);
    assert_memory_equal(k, plain, base); /* the base key is a prefix: invalidations still match */
    assert_int_equal(sh_compress_key_encoding(k, len), SH_ENC_BR);
    sh_free(k);

    k = sh_malloc(base);
    memcpy(k, plain, base);
    len = base;
    k = sh_compress_key_variant(k, &len, SH_ENC_GZIP);
    assert_int_equal(sh_compress_key_encoding(k, len), SH_ENC_GZIP);
    assert_int_not_equal(memcmp(k + base, "\001br", 3), 0);
    sh_free(k);
    sh_free(plain);

    /* A forwarded header whose value looks like a suffix is not a variant. */
    char *fh[] = {"X-V"};
    sh_behavior_conf fb = {.forward_headers = fh, .nforward_headers = 1};
    sh_header h[] = {H("X-V", "br")};
    k = sh_cache_key("h", 1, "/", 1, NULL, 0, &fb, h, 1, &len);
    assert_int_equal(sh_compress_key_encoding(k, len), SH_ENC_IDENTITY);
    sh_free(k);
    assert_int_equal(sh_compress_key_encoding(NULL, 0), SH_ENC_IDENTITY);
    assert_int_equal(sh_compress_key_encoding("\0\001br", 4), SH_ENC_IDENTITY);
    assert_int_equal(sh_compress_key_encoding("\0\001br\0", 5), SH_ENC_BR);

    /* Revalidation sends the origin its own strong tag. */
    static const char vk[] = "/a\0h\0\0\x01gzip\0";
    static const char pk[] = "/a\0h\0\0";
    assert_string_equal(sh_compress_origin_etag(vk, sizeof(vk) - 1, "W/\"x\""), "\"x\"");
    assert_string_equal(sh_compress_origin_etag(vk, sizeof(vk) - 1, "\"x\""), "\"x\"");
    assert_string_equal(sh_compress_origin_etag(pk, sizeof(pk) - 1, "W/\"x\""), "W/\"x\"");
    assert_null(sh_compress_origin_etag(vk, sizeof(vk) - 1, NULL));
}

/* ---- streaming compressor ---------------------------------------------------------- */

typedef struct outbuf {
    char *p;
    size_t n, cap;
    size_t calls;
    int refuse; /* the sink refuses every byte */
} outbuf;

static int sink(void *ud, const char *data, size_t len)
{
    outbuf *o = ud;
    assert_true(len > 0);
    if (o->refuse) return -1;
    o->calls++;
    if (o->n + len > o->cap) {
        o->cap = (o->n + len) * 2;
        o->p = realloc(o->p, o->cap);
    }
    memcpy(o->p + o->n, data, len);
    o->n += len;
    return 0;
}

static char *gunzip(const char *in, size_t len, size_t *outlen)
{
    z_stream z = {0};
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    size_t cap = len * 8 + 1024, n = 0;
    char *out = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    int rc;
    do {
        if (n == cap) out = realloc(out, cap *= 2);
        z.next_out = (Bytef *)out + n;
        z.avail_out = (uInt)(cap - n);
        rc = inflate(&z, Z_NO_FLUSH);
        n = cap - z.avail_out;
        assert_true(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
    } while (rc != Z_STREAM_END && (z.avail_in > 0 || z.avail_out == 0));
    assert_int_equal(rc, Z_STREAM_END);
    assert_int_equal(z.avail_in, 0); /* nothing after the gzip trailer */
    inflateEnd(&z);
    *outlen = n;
    return out;
}

static char *unbrotli(const char *in, size_t len, size_t want)
{
    static BrotliDecoderResult (*dec)(size_t, const uint8_t *, size_t *, uint8_t *);
    if (!dec) {
        void *h = dlopen("libbrotlidec.so.1", RTLD_NOW);
        if (!h) fail_msg("libbrotlidec.so.1: %s", dlerror());
        *(void **)&dec = dlsym(h, "BrotliDecoderDecompress");
        assert_non_null(dec);
    }
    size_t n = want + 1; /* one spare byte: more output than expected is detected */
    char *out = malloc(n);
    assert_int_equal(dec(len, (const uint8_t *)in, &n, (uint8_t *)out),
                     BROTLI_DECODER_RESULT_SUCCESS);
    assert_int_equal(n, want);
    return out;
}

/* Text-like input: words from a small vocabulary (compressible), with a
 * stretch of pseudo-random bytes (incompressible) in the middle. */
static char *sample(size_t len, unsigned seed)
{
    static const char *const words[] = {"shield ", "edge ",  "cache ", "<p>", "</p>\n", "book ",
                                        "epub ",   "chunk ", "gzip ",  "br ", "origin "};
    char *s = malloc(len ? len : 1);
    size_t i = 0;
    while (i < len) {
        seed = seed * 1103515245u + 12345u;
        const char *w = words[(seed >> 16) % (sizeof(words) / sizeof(words[0]))];
        for (size_t k = 0; w[k] && i < len; k++)
            s[i++] = w[k];
    }
    for (size_t j = len / 3; j < len / 3 + len / 10 && j < len; j++) {
        seed = seed * 1103515245u + 12345u;
        s[j] = (char)(seed >> 16);
    }
    return s;
}

static void round_trip_hint(sh_encoding e, const char *in, size_t len, size_t piece, int64_t hint)
{
    outbuf o = {0};
    sh_compressor *z = sh_compressor_new(e, hint);
    assert_non_null(z);
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        assert_int_equal(sh_compressor_feed(z, in + off, n, sink, &o), 0);
    }
    assert_int_equal(sh_compressor_feed(z, in, 0, sink, &o), 0); /* empty feeds are fine */
    assert_int_equal(sh_compressor_finish(z, sink, &o), 0);
    assert_int_equal(sh_compressor_feed(z, "x", 1, sink, &o), -1); /* finished: dead */
    sh_compressor_free(z);
    assert_true(o.n <= sh_compress_bound(e, len));
    char *back;
    if (e == SH_ENC_GZIP) {
        size_t n;
        back = gunzip(o.p, o.n, &n);
        assert_int_equal(n, len);
    } else {
        back = unbrotli(o.p, o.n, len);
    }
    if (len) assert_memory_equal(back, in, len);
    free(back);
    free(o.p);
}

static void round_trip(sh_encoding e, const char *in, size_t len, size_t piece)
{
    round_trip_hint(e, in, len, piece, (int64_t)len);
}

static void test_round_trips(void **state)
{
    static const size_t sizes[] = {0, 1, 999, 50000, 300000};
    static const size_t pieces[] = {1, 7, 4096, 16384, 65536, 1 << 20};
    for (int e = SH_ENC_GZIP; e <= SH_ENC_BR; e++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            char *in = sample(sizes[i], (unsigned)i + 1);
            for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
                if (pieces[p] == 1 && sizes[i] > 50000) continue; /* slow, nothing new */
                round_trip((sh_encoding)e, in, sizes[i], pieces[p]);
            }
            free(in);
        }
    }
}

/* The announced length is only a hint: small bodies are held and compressed at
 * the end, and a body longer than announced switches to streaming midway. */
static void test_wrong_size_hints(void **state)
{
    char *in = sample(400000, 5);
    static const int64_t hints[] = {-1, 0, 1, 999, 50000, 262144, 262145, 1 << 20};
    static const size_t sizes[] = {0, 1000, 50000, 262144, 262145, 400000};
    for (int e = SH_ENC_GZIP; e <= SH_ENC_BR; e++)
        for (size_t h = 0; h < sizeof(hints) / sizeof(hints[0]); h++)
            for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
                round_trip_hint((sh_encoding)e, in, sizes[i], 30000, hints[h]);
    free(in);
}

/* Several MiB across 64 KiB pieces (the origin's read size): output arrives
 * while the input streams, not only at the end. */
static void test_streams_before_end(void **state)
{
    size_t len = 5 << 20;
    char *in = sample(len, 99);
    for (int e = SH_ENC_GZIP; e <= SH_ENC_BR; e++) {
        outbuf o = {0};
        sh_compressor *z = sh_compressor_new((sh_encoding)e, (int64_t)len);
        size_t half = 0;
        for (size_t off = 0; off < len; off += 65536) {
            assert_int_equal(sh_compressor_feed(z, in + off, 65536, sink, &o), 0);
            if (off + 65536 == len / 2) half = o.n;
        }
        assert_true(half > 0);
        assert_int_equal(sh_compressor_finish(z, sink, &o), 0);
        sh_compressor_free(z);
        char *back;
        if (e == SH_ENC_GZIP) {
            size_t n;
            back = gunzip(o.p, o.n, &n);
            assert_int_equal(n, len);
        } else {
            back = unbrotli(o.p, o.n, len);
        }
        assert_memory_equal(back, in, len);
        free(back);
        free(o.p);
    }
    free(in);
}

static void test_incompressible_bound(void **state)
{
    size_t len = 2 << 20;
    char *in = malloc(len);
    unsigned s = 7;
    for (size_t i = 0; i < len; i++) {
        s = s * 1103515245u + 12345u;
        in[i] = (char)(s >> 16);
    }
    for (int e = SH_ENC_GZIP; e <= SH_ENC_BR; e++)
        round_trip((sh_encoding)e, in, len, 65536);
    free(in);
}

static void test_sink_stop_and_misc(void **state)
{
    char *in = malloc(200000);
    unsigned s = 3;
    for (size_t i = 0; i < 200000; i++) {
        s = s * 1103515245u + 12345u;
        in[i] = (char)(s >> 16);
    }
    for (int e = SH_ENC_GZIP; e <= SH_ENC_BR; e++) {
        outbuf o = {.refuse = 1};
        sh_compressor *z = sh_compressor_new((sh_encoding)e, -1);
        int rc = 0;
        for (size_t off = 0; off < 200000 && rc == 0; off += 1000)
            rc = sh_compressor_feed(z, in + off, 1000, sink, &o);
        if (rc == 0) rc = sh_compressor_finish(z, sink, &o);
        assert_int_equal(rc, -1); /* the refusing sink stops the stream */
        assert_int_equal(sh_compressor_finish(z, sink, &o), -1);
        sh_compressor_free(z);
        free(o.p);
    }
    free(in);
    assert_null(sh_compressor_new(SH_ENC_IDENTITY, 10));
    sh_compressor_free(NULL);
    assert_string_equal(sh_encoding_name(SH_ENC_GZIP), "gzip");
    assert_string_equal(sh_encoding_name(SH_ENC_BR), "br");
    assert_string_equal(sh_encoding_name(SH_ENC_IDENTITY), "identity");
    assert_int_equal(sh_compress_bound(SH_ENC_IDENTITY, 5), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_encoding_table),
        cmocka_unit_test(test_accept_encoding_fields),
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_response_ok),
        cmocka_unit_test(test_apply_headers),
        cmocka_unit_test(test_key_variants),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_wrong_size_hints),
        cmocka_unit_test(test_streams_before_end),
        cmocka_unit_test(test_incompressible_bound),
        cmocka_unit_test(test_sink_stop_and_misc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
