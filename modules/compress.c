/*
 * Compression (include/shield/compress.h): Accept-Encoding negotiation, which
 * responses are compressible, the head rewrite, cache-key variants, and the
 * streaming gzip/br compressor used by fills and the pass path.
 *
 * The module itself only counts: the body is compressed where it streams
 * (proxy/cache/fill.c, proxy/pass.c), and a stored variant already carries its
 * Content-Encoding, so the response phase sees what the viewer gets.
 *
 * Levels (bench numbers in the README): gzip 6, brotli quality 5 with a
 * 256 KiB window (lgwin 18): on text both run at ~40-60 MB/s per core, a 64 KiB
 * origin read costs a few milliseconds at most, and brotli 5 already gets
 * within a few per cent of quality 6 while a larger window mostly costs memory.
 */
#include "shield/compress.h"

#include <brotli/encode.h>
#include <string.h>
#include <zlib.h>

#include "shield/alloc.h"

#define GZIP_LEVEL   6
#define BR_QUALITY   5
#define BR_LGWIN     18
#define ZBUF         16384
#define FEED_MAX_IN  (1u << 30) /* zlib counts in uInt */
#define VARIANT_MARK '\x01'

const char *sh_encoding_name(sh_encoding e)
{
    switch (e) {
    case SH_ENC_GZIP:
        return "gzip";
    case SH_ENC_BR:
        return "br";
    default:
        return "identity";
    }
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int eq_nocase(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen) return 0;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
    return 1;
}

/* ---- Accept-Encoding ---------------------------------------------------------- */

/* qvalue (RFC 9110 §12.4.2) in thousandths, or -1 when malformed. */
static int parse_q(const char *s, size_t n)
{
    if (n == 0 || n > 5 || (s[0] != '0' && s[0] != '1')) return -1;
    if (n >= 2 && s[1] != '.') return -1;
    if (s[0] == '1') {
        for (size_t i = 2; i < n; i++)
            if (s[i] != '0') return -1;
        return 1000;
    }
    int v = 0, mul = 100;
    for (size_t i = 2; i < n; i++, mul /= 10) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v += (s[i] - '0') * mul;
    }
    return v;
}

enum { AE_GZIP, AE_BR, AE_STAR, AE_N };

typedef struct ae_state {
    int q[AE_N];    /* highest positive weight seen */
    int zero[AE_N]; /* listed with q=0 somewhere: refused whatever else says */
    int seen[AE_N];
} ae_state;

/* Parse one element's parameters from v[*i]; returns its weight or -1 if malformed. */
static int ae_params(const char *v, size_t len, size_t *ip)
{
    size_t i = *ip;
    int q = 1000;
    while (i < len && is_ows(v[i]))
        i++;
    while (i < len && v[i] == ';') {
        i++;
        while (i < len && is_ows(v[i]))
            i++;
        size_t ps = i;
        while (i < len && sh_is_tchar((unsigned char)v[i]))
            i++;
        size_t pe = i;
        if (pe == ps || i >= len || v[i] != '=') goto bad;
        size_t vs = ++i;
        if (i < len && v[i] == '"') {
            for (i++; i < len && v[i] != '"'; i++)
                if (v[i] == '\\' && i + 1 < len) i++;
            if (i >= len) goto bad;
            i++;
        } else {
            while (i < len && sh_is_tchar((unsigned char)v[i]))
                i++;
        }
        if (pe - ps == 1 && lower((unsigned char)v[ps]) == 'q' && (q = parse_q(v + vs, i - vs)) < 0)
            goto bad;
        while (i < len && is_ows(v[i]))
            i++;
    }
    if (i < len && v[i] != ',') goto bad;
    *ip = i;
    return q;
bad:
    *ip = i;
    return -1;
}

static void ae_scan(ae_state *st, const char *v, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        if (i >= len) break;
        size_t ts = i;
        while (i < len && sh_is_tchar((unsigned char)v[i]))
            i++;
        size_t tl = i - ts;
        int q = tl ? ae_params(v, len, &i) : -1;
        /* A malformed element is skipped up to the next comma (lenient, like
         * the rest of the header parsing: the other elements still count). */
        while (i < len && v[i] != ',')
            i++;
        int k = -1;
        if (eq_nocase(v + ts, tl, "br"))
            k = AE_BR;
        else if (eq_nocase(v + ts, tl, "gzip") || eq_nocase(v + ts, tl, "x-gzip"))
            k = AE_GZIP;
        else if (tl == 1 && v[ts] == '*')
            k = AE_STAR;
        if (k < 0 || q < 0) continue;
        st->seen[k] = 1;
        if (q == 0)
            st->zero[k] = 1;
        else if (q > st->q[k])
            st->q[k] = q;
    }
}

static int ae_weight(const ae_state *st, int k)
{
    if (st->seen[k]) return st->zero[k] ? 0 : st->q[k];
    if (st->seen[AE_STAR]) return st->zero[AE_STAR] ? 0 : st->q[AE_STAR];
    return 0;
}

static sh_encoding ae_choose(const ae_state *st)
{
    int br = ae_weight(st, AE_BR), gz = ae_weight(st, AE_GZIP);
    if (br == 0 && gz == 0) return SH_ENC_IDENTITY;
    return br >= gz ? SH_ENC_BR : SH_ENC_GZIP;
}

sh_encoding sh_accept_encoding_pick(const char *v, size_t len)
{
    ae_state st = {0};
    if (v) ae_scan(&st, v, len);
    return ae_choose(&st);
}

sh_encoding sh_accept_encoding_pick_headers(const sh_header *h, size_t n)
{
    ae_state st = {0};
    for (size_t i = 0; i < n; i++)
        if (sh_hdr_is(h[i].name, h[i].name_len, "Accept-Encoding"))
            ae_scan(&st, h[i].value, h[i].value_len);
    return ae_choose(&st);
}

static int ends_with_nocase(const char *s, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);
    return len >= sl && eq_nocase(s + len - sl, sl, suffix);
}

sh_encoding sh_compress_negotiate(const sh_req *req)
{
    const sh_behavior_conf *b = req->behavior;
    if (!b || !b->compress) return SH_ENC_IDENTITY;
    if (!(req->method_bit & (SH_M_GET | SH_M_HEAD))) return SH_ENC_IDENTITY;
    if (req->http_major < 1 || (req->http_major == 1 && req->http_minor < 1))
        return SH_ENC_IDENTITY;
    if (sh_hdr_find(req->headers, req->nheaders, "Range")) return SH_ENC_IDENTITY;
    if (req->path && (ends_with_nocase(req->path, req->path_len, ".epub") ||
                      ends_with_nocase(req->path, req->path_len, ".pdf")))
        return SH_ENC_IDENTITY;
    return sh_accept_encoding_pick_headers(req->headers, req->nheaders);
}

/* ---- which responses ------------------------------------------------------------- */

/* CloudFront's list ("File types that CloudFront compresses") plus the common
 * JSON/XML flavours it omits; woff/woff2 are compressed formats already. */
static const char *const app_types[] = {
    "atom+xml",
    "dash+xml",
    "eot",
    "font",
    "font-sfnt",
    "geo+json",
    "javascript",
    "json",
    "ld+json",
    "manifest+json",
    "opentype",
    "otf",
    "pkcs7-mime",
    "protobuf",
    "rss+xml",
    "truetype",
    "ttf",
    "vnd.apple.mpegurl",
    "vnd.ms-fontobject",
    "x-font-opentype",
    "x-font-truetype",
    "x-font-ttf",
    "x-httpd-cgi",
    "x-javascript",
    "x-mpegurl",
    "x-opentype",
    "x-otf",
    "x-perl",
    "x-ttf",
    "xhtml+xml",
    "xml",
};
static const char *const font_types[] = {"collection", "eot", "opentype", "otf", "sfnt", "ttf"};
static const char *const image_types[] = {"svg+xml", "vnd.microsoft.icon", "x-icon"};

static int in_list(const char *s, size_t n, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (eq_nocase(s, n, list[i])) return 1;
    return 0;
}

#define IN(s, n, list) in_list(s, n, list, sizeof(list) / sizeof(list[0]))

int sh_compress_type_ok(const char *v, size_t len)
{
    if (!v) return 0;
    size_t s = 0, e = 0;
    while (s < len && is_ows(v[s]))
        s++;
    e = s;
    while (e < len && v[e] != ';')
        e++;
    while (e > s && is_ows(v[e - 1]))
        e--;
    const char *t = v + s;
    size_t tl = e - s;
    if (eq_nocase(t, tl, "vnd.apple.mpegurl")) return 1; /* sic, in CloudFront's list */
    const char *slash = memchr(t, '/', tl);
    if (!slash || slash == t || slash == t + tl - 1) return 0;
    size_t ml = (size_t)(slash - t);
    const char *sub = slash + 1;
    size_t sl = tl - ml - 1;
    for (size_t i = 0; i < tl; i++)
        if (t + i != slash && !sh_is_tchar((unsigned char)t[i])) return 0;
    if (eq_nocase(t, ml, "text")) return 1;
    if (eq_nocase(t, ml, "application")) return IN(sub, sl, app_types);
    if (eq_nocase(t, ml, "font")) return IN(sub, sl, font_types);
    if (eq_nocase(t, ml, "image")) return IN(sub, sl, image_types);
    return 0;
}

/* Does a Cache-Control value carry the no-transform directive? */
static int has_no_transform(const char *v, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',' && v[i] != '=' && !is_ows(v[i]))
            i++;
        if (eq_nocase(v + s, i - s, "no-transform")) return 1;
        int quoted = 0;
        while (i < len && (quoted || v[i] != ',')) {
            if (v[i] == '"') quoted = !quoted;
            i++;
        }
    }
    return 0;
}

int sh_compress_response_ok(int status, const sh_hdrlist *h, int64_t content_length)
{
    if (status != 200 && status != 403 && status != 404) return 0;
    if (content_length < SH_COMPRESS_MIN_SIZE || content_length > SH_COMPRESS_MAX_SIZE) return 0;
    const sh_header *ct = NULL;
    for (size_t i = 0; i < h->n; i++) {
        const sh_header *x = &h->v[i];
        /* Already encoded, whatever the coding: never touched (CloudFront). */
        if (sh_hdr_is(x->name, x->name_len, "Content-Encoding")) return 0;
        /* RFC 9110 §7.7: a proxy must not change the coding of such a response. */
        if (sh_hdr_is(x->name, x->name_len, "Cache-Control") &&
            has_no_transform(x->value, x->value_len))
            return 0;
        if (!ct && sh_hdr_is(x->name, x->name_len, "Content-Type")) ct = x;
    }
    return ct && sh_compress_type_ok(ct->value, ct->value_len);
}

/* Does a Vary value name Accept-Encoding (or "*")? */
static int vary_covers(const char *v, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',' && !is_ows(v[i]))
            i++;
        if ((i - s == 1 && v[s] == '*') || eq_nocase(v + s, i - s, "Accept-Encoding")) return 1;
    }
    return 0;
}

void sh_compress_apply_headers(sh_hdrlist *h, sh_encoding e)
{
    sh_hdrlist_set(h, "Content-Encoding", sh_encoding_name(e));

    const sh_header *et = sh_hdrlist_get(h, "ETag");
    if (et && et->value_len >= 2 && et->value[0] == '"') {
        char *weak = sh_malloc(et->value_len + 3);
        memcpy(weak, "W/", 2);
        memcpy(weak + 2, et->value, et->value_len);
        weak[et->value_len + 2] = '\0';
        sh_hdrlist_set(h, "ETag", weak);
        sh_free(weak);
    } else if (et && !(et->value_len >= 2 && et->value[0] == 'W' && et->value[1] == '/')) {
        sh_hdrlist_del(h, "ETag");
    }

    /* One Vary field naming Accept-Encoding after whatever the origin listed. */
    size_t total = 0, nvary = 0;
    int covered = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (!sh_hdr_is(h->v[i].name, h->v[i].name_len, "Vary")) continue;
        nvary++;
        total += h->v[i].value_len + 2;
        covered |= vary_covers(h->v[i].value, h->v[i].value_len);
    }
    if (!covered) {
        char *merged = sh_malloc(total + sizeof("Accept-Encoding"));
        size_t o = 0;
        for (size_t i = 0; i < h->n; i++) {
            if (!sh_hdr_is(h->v[i].name, h->v[i].name_len, "Vary") || h->v[i].value_len == 0)
                continue;
            memcpy(merged + o, h->v[i].value, h->v[i].value_len);
            o += h->v[i].value_len;
            merged[o++] = ',';
            merged[o++] = ' ';
        }
        memcpy(merged + o, "Accept-Encoding", sizeof("Accept-Encoding"));
        if (nvary) sh_hdrlist_del(h, "Vary");
        sh_hdrlist_adds(h, "Vary", merged);
        sh_free(merged);
    }
    /* They describe the identity bytes: a range of the compressed stream
     * would be answered from the identity object. */
    sh_hdrlist_del(h, "Accept-Ranges");
    sh_hdrlist_del(h, "Content-MD5");
}

/* ---- cache keys ------------------------------------------------------------------ */

char *sh_compress_key_variant(char *key, size_t *keylen, sh_encoding e)
{
    if (e == SH_ENC_IDENTITY) return key;
    const char *t = sh_encoding_name(e);
    size_t tl = strlen(t);
    key = sh_realloc(key, *keylen + tl + 2);
    key[*keylen] = VARIANT_MARK;
    memcpy(key + *keylen + 1, t, tl);
    key[*keylen + 1 + tl] = '\0';
    *keylen += tl + 2;
    return key;
}

sh_encoding sh_compress_key_encoding(const char *key, size_t keylen)
{
    static const sh_encoding encs[] = {SH_ENC_BR, SH_ENC_GZIP};
    for (size_t i = 0; key && i < sizeof(encs) / sizeof(encs[0]); i++) {
        const char *t = sh_encoding_name(encs[i]);
        size_t tl = strlen(t), need = tl + 3; /* NUL mark token NUL */
        if (keylen < need) continue;
        const char *p = key + keylen - need;
        if (p[0] == '\0' && p[1] == VARIANT_MARK && memcmp(p + 2, t, tl) == 0 &&
            p[need - 1] == '\0')
            return encs[i];
    }
    return SH_ENC_IDENTITY;
}

const char *sh_compress_origin_etag(const char *key, size_t keylen, const char *etag)
{
    if (etag && etag[0] == 'W' && etag[1] == '/' && etag[2] == '"' &&
        sh_compress_key_encoding(key, keylen) != SH_ENC_IDENTITY)
        return etag + 2;
    return etag;
}

/* ---- streaming compressor ------------------------------------------------------- */

/*
 * Memory per stream: zlib's deflate state is ~256 KiB; a brotli quality-5
 * encoder holds ~2 MiB for a small body and ~5 MiB for a large one, from its
 * first input byte to its last. Bodies announced at up to HOLD_MAX bytes are
 * therefore held as they arrive and compressed in one go at the end, with an
 * encoder that lives only during that call: many slow small fills then cost
 * their own size each, not an encoder each. Larger bodies stream (their
 * first output after ~512 KiB of input for br, ~16 KiB for gzip).
 */
#define HOLD_MAX (256 * 1024)

struct sh_compressor {
    sh_encoding e;
    int dead;
    int zinit;              /* zs holds a deflate state */
    z_stream zs;            /* gzip */
    BrotliEncoderState *br; /* br */
    int64_t hint;
    char *held; /* a small body waiting for finish (NULL when streaming) */
    size_t nheld, held_cap;
    unsigned char buf[ZBUF]; /* zlib's output window */
};

/* Both libraries allocate through Shield's allocator (jemalloc, or libc under ASan). */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    return sh_malloc((size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p)
{
    sh_free(p);
}

static void *br_alloc(void *opaque, size_t size)
{
    return sh_malloc(size);
}

static void br_free(void *opaque, void *p)
{
    sh_free(p);
}

/* Create the encoder state. 0 or -1. */
static int enc_start(sh_compressor *z)
{
    if (z->e == SH_ENC_GZIP) {
        z->zs.zalloc = z_alloc;
        z->zs.zfree = z_free;
        /* windowBits 15 + 16: a gzip wrapper (RFC 1952) rather than zlib's. */
        if (deflateInit2(&z->zs, GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return -1;
        z->zinit = 1;
        return 0;
    }
    z->br = BrotliEncoderCreateInstance(br_alloc, br_free, NULL);
    if (!z->br) return -1;
    BrotliEncoderSetParameter(z->br, BROTLI_PARAM_QUALITY, BR_QUALITY);
    BrotliEncoderSetParameter(z->br, BROTLI_PARAM_LGWIN, BR_LGWIN);
    if (z->hint > 0)
        BrotliEncoderSetParameter(z->br, BROTLI_PARAM_SIZE_HINT,
                                  (uint32_t)(z->hint < (1 << 30) ? z->hint : (1 << 30)));
    return 0;
}

static void enc_end(sh_compressor *z)
{
    if (z->zinit) deflateEnd(&z->zs);
    z->zinit = 0;
    if (z->br) BrotliEncoderDestroyInstance(z->br);
    z->br = NULL;
}

sh_compressor *sh_compressor_new(sh_encoding e, int64_t size_hint)
{
    if (e != SH_ENC_GZIP && e != SH_ENC_BR) return NULL;
    sh_compressor *z = sh_calloc(1, sizeof(*z));
    z->e = e;
    z->hint = size_hint;
    if (size_hint > 0 && size_hint <= HOLD_MAX) {
        z->held_cap = (size_t)size_hint;
        z->held = sh_malloc(z->held_cap);
        return z;
    }
    if (enc_start(z) != 0) {
        sh_free(z);
        return NULL;
    }
    return z;
}

static int gz_run(sh_compressor *z, const char *in, size_t len, int flush, sh_compress_sink sink,
                  void *ud)
{
    int rc;
    z->zs.next_in = (Bytef *)(uintptr_t)in;
    z->zs.avail_in = (uInt)len;
    do {
        z->zs.next_out = z->buf;
        z->zs.avail_out = ZBUF;
        rc = deflate(&z->zs, flush);
        if (rc == Z_STREAM_ERROR) return -1;
        size_t n = ZBUF - z->zs.avail_out;
        if (n && sink(ud, (const char *)z->buf, n) != 0) return -1;
        /* avail_out left over means the input is consumed (Z_NO_FLUSH) or,
         * for Z_FINISH, that the stream ended. */
    } while (z->zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    return 0;
}

static int br_run(sh_compressor *z, BrotliEncoderOperation op, const uint8_t *in, size_t len,
                  sh_compress_sink sink, void *ud)
{
    for (;;) {
        size_t avail_out = 0;
        if (!BrotliEncoderCompressStream(z->br, op, &len, &in, &avail_out, NULL, NULL)) return -1;
        size_t n = 0;
        const uint8_t *out = BrotliEncoderTakeOutput(z->br, &n);
        if (n && sink(ud, (const char *)out, n) != 0) return -1;
        if (BrotliEncoderHasMoreOutput(z->br)) continue;
        if (op == BROTLI_OPERATION_FINISH ? BrotliEncoderIsFinished(z->br) : len == 0) return 0;
    }
}

/* Compress in (len < 2^30 bytes); finish ends the stream. */
static int enc_run(sh_compressor *z, const char *in, size_t len, int finish, sh_compress_sink sink,
                   void *ud)
{
    if (z->e == SH_ENC_GZIP) return gz_run(z, in, len, finish ? Z_FINISH : Z_NO_FLUSH, sink, ud);
    return br_run(z, finish ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_PROCESS,
                  (const uint8_t *)in, len, sink, ud);
}

/* The body is longer than announced: stream from here on. */
static int stop_holding(sh_compressor *z, sh_compress_sink sink, void *ud)
{
    int rc = enc_start(z);
    if (rc == 0) rc = enc_run(z, z->held, z->nheld, 0, sink, ud);
    sh_free(z->held);
    z->held = NULL;
    return rc;
}

int sh_compressor_feed(sh_compressor *z, const char *in, size_t len, sh_compress_sink sink,
                       void *ud)
{
    if (z->dead) return -1;
    if (z->held && len <= z->held_cap - z->nheld) {
        memcpy(z->held + z->nheld, in, len);
        z->nheld += len;
        return 0;
    }
    if (z->held && stop_holding(z, sink, ud) != 0) goto dead;
    while (len) {
        size_t n = len < FEED_MAX_IN ? len : FEED_MAX_IN;
        if (enc_run(z, in, n, 0, sink, ud) != 0) goto dead;
        in += n;
        len -= n;
    }
    return 0;
dead:
    z->dead = 1;
    return -1;
}

int sh_compressor_finish(sh_compressor *z, sh_compress_sink sink, void *ud)
{
    if (z->dead) return -1;
    z->dead = 1; /* a finished stream takes no more input */
    int rc;
    if (z->held) {
        /* The whole (small) body at once: the encoder lives for this call only. */
        rc = enc_start(z);
        if (rc == 0) rc = enc_run(z, z->held, z->nheld, 1, sink, ud);
        sh_free(z->held);
        z->held = NULL;
    } else {
        rc = enc_run(z, NULL, 0, 1, sink, ud);
    }
    enc_end(z);
    return rc;
}

void sh_compressor_free(sh_compressor *z)
{
    if (!z) return;
    enc_end(z);
    sh_free(z->held);
    sh_free(z);
}

uint64_t sh_compress_bound(sh_encoding e, uint64_t len)
{
    /* Both formats fall back to stored blocks on incompressible input: a few
     * bytes per 16-64 KiB block plus headers. One eighth is far above that. */
    return e == SH_ENC_IDENTITY ? len : len + (len >> 3) + 1024;
}

/* ---- the module ------------------------------------------------------------------ */

/* Count the responses that leave with the coding this request negotiated
 * (compressed on a fill or pass, or a stored compressed variant). */
static sh_rc compress_response(sh_req *req, void *state)
{
    int s = req->resp.status;
    if (req->method_bit != SH_M_GET || (s != 200 && s != 403 && s != 404)) return SH_CONTINUE;
    sh_encoding e = sh_compress_negotiate(req);
    if (e == SH_ENC_IDENTITY) return SH_CONTINUE;
    const sh_header *ce = sh_hdrlist_get(&req->resp.headers, "Content-Encoding");
    if (ce && eq_nocase(ce->value, ce->value_len, sh_encoding_name(e)))
        sh_req_count(req, SH_CNT_COMPRESSED);
    return SH_CONTINUE;
}

const sh_module sh_module_compress = {
    .name = "compress",
    .phase = {[SH_PHASE_RESPONSE] = compress_response},
};
