/*
 * Fuzz the compression decisions (include/shield/compress.h): Accept-Encoding
 * negotiation, the Content-Type and Cache-Control checks, the head rewrite and
 * cache-key variants, with the input used as a header value.
 *
 * Beyond "never crash, never read past the input", properties written
 * independently of the parser: the verdict is deterministic and the same for
 * the field split into several fields at commas (when no quoted string can
 * span a split); a coding is only chosen when its name (or "*") occurs;
 * appending ", identity" changes nothing; the rewritten head has one
 * Content-Encoding, a weak or no ETag, a Vary that covers Accept-Encoding and
 * no Accept-Ranges; a variant key always decodes to its variant.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shield/alloc.h"
#include "shield/compress.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

static int contains_nocase(const uint8_t *s, size_t n, const char *w)
{
    size_t wl = strlen(w);
    for (size_t i = 0; i + wl <= n; i++) {
        size_t k = 0;
        while (k < wl && (s[i + k] | 0x20) == w[k])
            k++;
        if (k == wl) return 1;
    }
    return 0;
}

static size_t count_named(const sh_hdrlist *h, const char *name)
{
    size_t c = 0;
    for (size_t i = 0; i < h->n; i++)
        c += sh_hdr_is(h->v[i].name, h->v[i].name_len, name);
    return c;
}

static void check_negotiation(const uint8_t *data, size_t size)
{
    const char *v = (const char *)data;
    sh_encoding e = sh_accept_encoding_pick(v, size);
    CHECK(e == SH_ENC_IDENTITY || e == SH_ENC_GZIP || e == SH_ENC_BR);
    CHECK(sh_accept_encoding_pick(v, size) == e);
    if (e == SH_ENC_BR) CHECK(contains_nocase(data, size, "br") || memchr(data, '*', size));
    if (e == SH_ENC_GZIP) CHECK(contains_nocase(data, size, "gzip") || memchr(data, '*', size));

    sh_header one = {"Accept-Encoding", 15, v, size};
    CHECK(sh_accept_encoding_pick_headers(&one, 1) == e);
    if (memchr(data, '"', size) || memchr(data, '\\', size)) return;

    /* One list, however it is split into fields. */
    sh_header parts[64];
    size_t np = 0, start = 0;
    for (size_t i = 0; i <= size && np < 64; i++) {
        if (i < size && data[i] != ',') continue;
        parts[np++] = (sh_header){"accept-encoding", 15, v + start, i - start};
        start = i + 1;
    }
    if (np < 64) CHECK(sh_accept_encoding_pick_headers(parts, np) == e);

    char *more = sh_malloc(size + 10);
    memcpy(more, data, size);
    memcpy(more + size, ", identity", 10);
    CHECK(sh_accept_encoding_pick(more, size + 10) == e);
    sh_free(more);
}

static void check_head(const uint8_t *data, size_t size)
{
    char *v = sh_strndup((const char *)data, size); /* header values are C strings here */
    size_t vl = strlen(v);
    int type_ok = sh_compress_type_ok(v, vl);
    CHECK(type_ok == sh_compress_type_ok(v, vl));
    if (type_ok) CHECK(memchr(v, '/', vl) || contains_nocase(data, size, "vnd.apple.mpegurl"));

    sh_hdrlist h = {0};
    sh_hdrlist_add(&h, "Content-Type", 12, v, vl);
    sh_hdrlist_add(&h, "Cache-Control", 13, v, vl);
    int ok = sh_compress_response_ok(200, &h, 5000);
    if (ok) CHECK(type_ok);
    sh_hdrlist_add(&h, "ETag", 4, v, vl);
    sh_hdrlist_add(&h, "Vary", 4, v, vl);
    sh_hdrlist_add(&h, "Vary", 4, v, vl);
    sh_hdrlist_adds(&h, "Accept-Ranges", "bytes");
    sh_compress_apply_headers(&h, size & 1 ? SH_ENC_BR : SH_ENC_GZIP);
    CHECK(count_named(&h, "Content-Encoding") == 1);
    CHECK(count_named(&h, "Accept-Ranges") == 0);
    CHECK(count_named(&h, "Vary") >= 1);
    const sh_header *et = sh_hdrlist_get(&h, "ETag");
    CHECK(!et || (et->value_len >= 2 && et->value[0] == 'W' && et->value[1] == '/'));
    CHECK(!sh_compress_response_ok(200, &h, 5000)); /* encoded now: never twice */
    sh_hdrlist_clear(&h);
    sh_free(v);
}

static void check_keys(const uint8_t *data, size_t size)
{
    /* Any bytes ending in NUL stand for a base key. */
    for (sh_encoding e = SH_ENC_GZIP; e <= SH_ENC_BR; e++) {
        size_t len = size + 1;
        char *k = sh_malloc(len);
        memcpy(k, data, size);
        k[size] = '\0';
        k = sh_compress_key_variant(k, &len, e);
        CHECK(sh_compress_key_encoding(k, len) == e);
        CHECK(memcmp(k, data, size) == 0);
        sh_free(k);
    }
    sh_encoding raw = sh_compress_key_encoding((const char *)data, size);
    CHECK(raw == SH_ENC_IDENTITY || raw == SH_ENC_GZIP || raw == SH_ENC_BR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_negotiation(data, size);
    check_head(data, size);
    check_keys(data, size);
    return 0;
}
