#include "shield/sigv4_sign.h"
#include "shield/alloc.h"
#include "shield/sbuf.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int sigv4_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int sigv4_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

/*
 * Decode valid %XX escapes once and UriEncode the result. Decoding first makes
 * "%2f" and "%2F" canonicalise alike and leaves an already encoded string
 * unchanged, which is what S3 computes from the bytes it received.
 */
static void uri_recode(sbuf *b, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%' && i + 2 < n && sigv4_hexval((unsigned char)s[i + 1]) >= 0 &&
            sigv4_hexval((unsigned char)s[i + 2]) >= 0) {
            c = (unsigned char)(sigv4_hexval((unsigned char)s[i + 1]) * 16 +
                                sigv4_hexval((unsigned char)s[i + 2]));
            i += 2;
        }
        if (sigv4_unreserved(c) || (keep_slash && c == '/')) {
            sb_addc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_add(b, e, 3);
        }
    }
}

void sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

void sigv4_amz_date(int64_t t, char out[17])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

char *sigv4_canonical_uri(const char *path, size_t len)
{
    sbuf b = {0};
    if (len == 0)
        sb_addc(&b, '/');
    else
        uri_recode(&b, path, len, 1);
    return sb_take(&b);
}

typedef struct qparam {
    char *name, *value;
} qparam;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

char *sigv4_canonical_query(const char *query, size_t len, const char *skip)
{
    qparam *v = NULL;
    size_t n = 0, cap = 0;
    sbuf skip_enc = {0};
    if (skip) uri_recode(&skip_enc, skip, strlen(skip), 0);
    const char *p = query, *end = query ? query + len : NULL;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        if (seg_end > p) {
            const char *eq = memchr(p, '=', (size_t)(seg_end - p));
            const char *name_end = eq ? eq : seg_end;
            sbuf nb = {0}, vb = {0};
            uri_recode(&nb, p, (size_t)(name_end - p), 0);
            if (eq) uri_recode(&vb, eq + 1, (size_t)(seg_end - eq - 1), 0);
            char *name = sb_take(&nb), *value = sb_take(&vb);
            if (skip && strcmp(name, skip_enc.p) == 0) {
                sh_free(name);
                sh_free(value);
            } else {
                if (n == cap) {
                    cap = cap ? cap * 2 : 8;
                    v = sh_realloc(v, cap * sizeof(*v));
                }
                v[n].name = name;
                v[n].value = value;
                n++;
            }
        }
        p = amp ? amp + 1 : end;
    }
    sh_free(skip_enc.p);
    if (n > 1) qsort(v, n, sizeof(*v), qparam_cmp);
    sbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (i) sb_addc(&b, '&');
        sb_adds(&b, v[i].name);
        sb_addc(&b, '=');
        sb_adds(&b, v[i].value);
        sh_free(v[i].name);
        sh_free(v[i].value);
    }
    sh_free(v);
    return sb_take(&b);
}

typedef struct chdr {
    char *name; /* lower case, NUL-terminated */
    const char *value;
    size_t value_len;
    size_t order; /* input position: repeated names keep their order */
} chdr;

static int chdr_cmp(const void *a, const void *b)
{
    const chdr *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Trimall: strip both ends and fold inner whitespace runs into one space. */
void sigv4_add_trimmed(sbuf *b, const char *v, size_t n)
{
    size_t i = 0;
    int pending_space = 0;
    while (i < n && is_ws(v[i]))
        i++;
    for (; i < n; i++) {
        if (is_ws(v[i])) {
            pending_space = 1;
            continue;
        }
        if (pending_space) sb_addc(b, ' ');
        pending_space = 0;
        sb_addc(b, v[i]);
    }
}

char *sigv4_canonical_request(const sigv4_input *in, const char *skip_query, char **signed_headers)
{
    sbuf b = {0}, sh = {0};
    sb_adds(&b, in->method);
    sb_addc(&b, '\n');
    char *uri = sigv4_canonical_uri(in->path, in->path_len);
    sb_adds(&b, uri);
    sh_free(uri);
    sb_addc(&b, '\n');
    char *q = sigv4_canonical_query(in->query, in->query ? in->query_len : 0, skip_query);
    sb_adds(&b, q);
    sh_free(q);
    sb_addc(&b, '\n');

    chdr *h = sh_calloc(in->nheaders ? in->nheaders : 1, sizeof(*h));
    for (size_t i = 0; i < in->nheaders; i++) {
        h[i].name = sh_strndup(in->headers[i].name, in->headers[i].name_len);
        for (char *c = h[i].name; *c; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        h[i].value = in->headers[i].value;
        h[i].value_len = in->headers[i].value_len;
        h[i].order = i;
    }
    if (in->nheaders > 1) qsort(h, in->nheaders, sizeof(*h), chdr_cmp);
    for (size_t i = 0; i < in->nheaders; i++) {
        int same = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
        if (same) {
            sb_addc(&b, ',');
        } else {
            if (i > 0) sb_addc(&b, '\n');
            sb_adds(&b, h[i].name);
            sb_addc(&b, ':');
            if (sh.len) sb_addc(&sh, ';');
            sb_adds(&sh, h[i].name);
        }
        sigv4_add_trimmed(&b, h[i].value, h[i].value_len);
    }
    for (size_t i = 0; i < in->nheaders; i++)
        sh_free(h[i].name);
    sh_free(h);
    if (in->nheaders) sb_addc(&b, '\n');
    sb_addc(&b, '\n');
    if (sh.p) sb_adds(&b, sh.p);
    sb_addc(&b, '\n');
    sb_adds(&b, in->payload_hash);
    if (signed_headers)
        *signed_headers = sb_take(&sh);
    else
        sh_free(sh.p);
    return sb_take(&b);
}

static void hmac(const unsigned char *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int outlen = 32;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &outlen);
}

void sigv4_signing_key(const char *secret, const char *date8, const char *region,
                       const char *service, unsigned char key[32])
{
    size_t slen = strlen(secret);
    unsigned char *k0 = sh_malloc(slen + 4);
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen);
    unsigned char a[32], b[32];
    hmac(k0, slen + 4, date8, a);
    hmac(a, 32, region, b);
    hmac(b, 32, service, a);
    hmac(a, 32, "aws4_request", key);
    OPENSSL_cleanse(k0, slen + 4);
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    sh_free(k0);
}

void sigv4_signature(const unsigned char key[32], const char *amz_date, const char *scope,
                     const char *creq, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    char creq_hash[65];
    sigv4_sha256_hex(creq, strlen(creq), creq_hash);
    sbuf sts = {0};
    sb_adds(&sts, "AWS4-HMAC-SHA256\n");
    sb_adds(&sts, amz_date);
    sb_addc(&sts, '\n');
    sb_adds(&sts, scope);
    sb_addc(&sts, '\n');
    sb_adds(&sts, creq_hash);
    unsigned char mac[32];
    hmac(key, 32, sts.p, mac);
    sh_free(sts.p);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
}

char *sigv4_authorization(const sigv4_input *in, const char *access_key, const char *secret_key,
                          const char *region, const char *service, const char *amz_date)
{
    char *signed_headers = NULL;
    char *creq = sigv4_canonical_request(in, NULL, &signed_headers);
    char date8[9];
    snprintf(date8, sizeof(date8), "%.8s", amz_date);
    sbuf scope = {0};
    sb_adds(&scope, date8);
    sb_addc(&scope, '/');
    sb_adds(&scope, region);
    sb_addc(&scope, '/');
    sb_adds(&scope, service);
    sb_adds(&scope, "/aws4_request");
    unsigned char key[32];
    sigv4_signing_key(secret_key, date8, region, service, key);
    char sig[65];
    sigv4_signature(key, amz_date, scope.p, creq, sig);
    OPENSSL_cleanse(key, sizeof(key));
    sbuf b = {0};
    sb_adds(&b, "AWS4-HMAC-SHA256 Credential=");
    sb_adds(&b, access_key);
    sb_addc(&b, '/');
    sb_adds(&b, scope.p);
    sb_adds(&b, ", SignedHeaders=");
    sb_adds(&b, signed_headers);
    sb_adds(&b, ", Signature=");
    sb_adds(&b, sig);
    sh_free(scope.p);
    sh_free(signed_headers);
    sh_free(creq);
    return sb_take(&b);
}
