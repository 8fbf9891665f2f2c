/*
 * CloudFront signed URL/cookie verification without a request: base64
 * variant, policy reader, resource matching, canned policy bytes, signature
 * check and the verdict (include/shield/cf_policy.h).
 */
#include "shield/cf_policy.h"

#include <openssl/err.h>
#include <string.h>

#include "shield/alloc.h"

/* Year 9999: anything later is not a date a signer produced, and keeping
 * epochs small keeps every comparison far from overflow. */
#define CF_MAX_EPOCH 253402300799LL

/* Encoded input bounds: far above real signatures (RSA-4096: 684 chars) and
 * policies, far below anything that could make a request expensive. */
#define CF_MAX_SIG_B64    2048
#define CF_MAX_POLICY_B64 16384
#define CF_MAX_KEY_ID     256

static const struct {
    const char *code, *message;
} results[] = {
    [SH_CF_OK] = {"OK", "OK"},
    [SH_CF_MISSING_KEY] = {"MissingKey", "Missing Key-Pair-Id query parameter or cookie value"},
    [SH_CF_INVALID_KEY] = {"InvalidKey", "Unknown Key"},
    [SH_CF_MALFORMED_SIGNATURE] = {"MalformedSignature", "Could not unencode Signature"},
    [SH_CF_MALFORMED_POLICY] = {"MalformedPolicy", "Malformed Policy"},
    [SH_CF_ACCESS_DENIED] = {"AccessDenied", "Access denied"},
};

const char *sh_cf_result_code(sh_cf_result r)
{
    return (unsigned)r <= SH_CF_ACCESS_DENIED ? results[r].code : "AccessDenied";
}

const char *sh_cf_result_message(sh_cf_result r)
{
    return (unsigned)r <= SH_CF_ACCESS_DENIED ? results[r].message : "Access denied";
}

/* ---- base64 -------------------------------------------------------------------------------- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '~') return 63;
    return -1;
}

int sh_cf_b64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen)
{
    size_t o = 0;

    if (len % 4) return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '_' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            /* a data character after a pad character ("ab_c") */
            if (pad) return -1;
            if ((v[k] = b64_value(c)) < 0) return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* Unused low bits must be zero: otherwise "QQ__" and "QR__" would both
         * decode to "A" and a signature would have several spellings. */
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff))) return -1;
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (pad < 1) out[o++] = (uint8_t)w;
    }
    *outlen = o;
    return 0;
}

/* ---- policy reader ------------------------------------------------------------------------- */

typedef struct {
    const char *p, *end;
} jr;

static void j_ws(jr *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int j_eat(jr *j, char c)
{
    j_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;

    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (avail < n) return 0;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return n;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * A JSON string decoded into out (cap bytes, NUL-terminated; the decoded form
 * is never longer than the encoded one, so cap = remaining input + 1 always
 * fits). -1 on any syntax error or when it does not fit.
 */
static int j_string(jr *j, char *out, size_t cap, size_t *outlen)
{
    size_t o = 0;

    if (!j_eat(j, '"')) return -1;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        char tmp[4];
        size_t n;

        if (c == '"') {
            j->p++;
            out[o] = '\0';
            *outlen = o;
            return 0;
        }
        if (c < 0x20) return -1;
        if (c == '\\') {
            if (j->end - j->p < 2) return -1;
            char e = j->p[1];
            j->p += 2;
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                static const char map[] = "\"\\/\b\f\n\r\t";
                tmp[0] = map[simple - "\"\\/bfnrt"];
                n = 1;
            } else if (e == 'u') {
                unsigned cp, lo;
                if (j->end - j->p < 4 || hex4(j->p, &cp) < 0) return -1;
                j->p += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff) return -1; /* lone low surrogate */
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
                        hex4(j->p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                        return -1;
                    j->p += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                /* A NUL would let C-string consumers see a different resource. */
                if (cp == 0) return -1;
                n = put_utf8(tmp, cp);
            } else {
                return -1;
            }
        } else {
            n = utf8_len((const unsigned char *)j->p, (size_t)(j->end - j->p));
            if (!n) return -1;
            memcpy(tmp, j->p, n);
            j->p += n;
        }
        if (o + n >= cap) return -1;
        memcpy(out + o, tmp, n);
        o += n;
    }
    return -1;
}

/* An epoch: 0 or a digit string without leading zeros, <= CF_MAX_EPOCH;
 * no sign, fraction or exponent (none of AWS's signers writes those). */
static int j_epoch(jr *j, int64_t *out)
{
    int64_t v = 0;
    const char *s;

    j_ws(j);
    s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (j->p - s >= 12) return -1;
        v = v * 10 + (*j->p - '0');
        j->p++;
    }
    if (j->p == s || (s[0] == '0' && j->p - s > 1) || v > CF_MAX_EPOCH) return -1;
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')) return -1;
    *out = v;
    return 0;
}

/*
 * Iterate the members of an object whose '{' has been consumed: 1 with the
 * next key in key (the ':' consumed), 0 at the closing '}', -1 on error.
 * Keys longer than cap-1 are errors: every key we accept is short.
 */
static int j_next_key(jr *j, int *first, char *key, size_t cap)
{
    size_t kl;

    if (j_eat(j, '}')) return 0;
    if (!*first && !j_eat(j, ',')) return -1;
    *first = 0;
    if (j_string(j, key, cap, &kl) < 0 || !j_eat(j, ':')) return -1;
    return 1;
}

/* {"AWS:EpochTime": N} */
static int j_epoch_obj(jr *j, int64_t *out)
{
    char key[32];
    int first = 1, seen = 0, r;

    if (!j_eat(j, '{')) return -1;
    while ((r = j_next_key(j, &first, key, sizeof key)) == 1) {
        if (strcmp(key, "AWS:EpochTime") != 0 || seen || j_epoch(j, out) < 0) return -1;
        seen = 1;
    }
    return r == 0 && seen ? 0 : -1;
}

/* {"AWS:SourceIp": "a.b.c.d[/n]"}: one IPv4 range, as CloudFront documents. */
static int j_ip_obj(jr *j, sh_cidr *out)
{
    char key[32], val[64];
    size_t vl;
    int first = 1, seen = 0, r;

    if (!j_eat(j, '{')) return -1;
    while ((r = j_next_key(j, &first, key, sizeof key)) == 1) {
        if (strcmp(key, "AWS:SourceIp") != 0 || seen) return -1;
        if (j_string(j, val, sizeof val, &vl) < 0 || memchr(val, ':', vl) ||
            sh_cidr_parse(val, out) < 0)
            return -1;
        seen = 1;
    }
    return r == 0 && seen ? 0 : -1;
}

static int j_condition(jr *j, sh_cf_policy *pol)
{
    enum { DLT = 1, DGT = 2, IP = 4 };
    char key[32];
    int first = 1, seen = 0, r;

    if (!j_eat(j, '{')) return -1;
    while ((r = j_next_key(j, &first, key, sizeof key)) == 1) {
        int bit;
        if (strcmp(key, "DateLessThan") == 0)
            bit = DLT;
        else if (strcmp(key, "DateGreaterThan") == 0)
            bit = DGT;
        else if (strcmp(key, "IpAddress") == 0)
            bit = IP;
        else
            return -1; /* an unknown condition cannot be honoured, so it cannot be ignored */
        if (seen & bit) return -1;
        seen |= bit;
        if (bit == DLT && j_epoch_obj(j, &pol->date_less_than) < 0) return -1;
        if (bit == DGT && j_epoch_obj(j, &pol->date_greater_than) < 0) return -1;
        if (bit == IP && j_ip_obj(j, &pol->ip) < 0) return -1;
        if (bit == IP) pol->has_ip = 1;
    }
    return r == 0 && (seen & DLT) ? 0 : -1;
}

static int resource_prefix_ok(const char *s, size_t n)
{
    static const char *const prefixes[] = {"http://", "https://", "*://"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t l = strlen(prefixes[i]);
        if (n >= l && memcmp(s, prefixes[i], l) == 0) return 1;
    }
    return 0;
}

static int j_statement(jr *j, sh_cf_policy *pol)
{
    char key[32];
    int first = 1, seen_res = 0, seen_cond = 0, r;

    if (!j_eat(j, '{')) return -1;
    while ((r = j_next_key(j, &first, key, sizeof key)) == 1) {
        if (strcmp(key, "Resource") == 0 && !seen_res) {
            size_t cap = (size_t)(j->end - j->p) + 1;
            seen_res = 1;
            pol->resource = sh_malloc(cap);
            if (j_string(j, pol->resource, cap, &pol->resource_len) < 0 ||
                !resource_prefix_ok(pol->resource, pol->resource_len))
                return -1;
        } else if (strcmp(key, "Condition") == 0 && !seen_cond) {
            seen_cond = 1;
            if (j_condition(j, pol) < 0) return -1;
        } else {
            return -1;
        }
    }
    return r == 0 && seen_cond ? 0 : -1;
}

static int j_policy(jr *j, sh_cf_policy *pol)
{
    char key[32];
    int first = 1, seen = 0, r;

    if (!j_eat(j, '{')) return -1;
    while ((r = j_next_key(j, &first, key, sizeof key)) == 1) {
        if (strcmp(key, "Statement") != 0 || seen) return -1;
        seen = 1;
        if (j_eat(j, '[')) {
            /* exactly one statement: CloudFront's policies never carry more */
            if (j_statement(j, pol) < 0 || !j_eat(j, ']')) return -1;
        } else if (j_statement(j, pol) < 0) {
            return -1;
        }
    }
    if (r != 0 || !seen) return -1;
    j_ws(j);
    return j->p == j->end ? 0 : -1;
}

int sh_cf_policy_parse(const char *json, size_t len, sh_cf_policy *out)
{
    jr j = {json, json + len};

    memset(out, 0, sizeof *out);
    out->date_less_than = -1;
    out->date_greater_than = -1;
    if (j_policy(&j, out) == 0) return 0;
    sh_cf_policy_free(out);
    return -1;
}

void sh_cf_policy_free(sh_cf_policy *p)
{
    sh_free(p->resource);
    p->resource = NULL;
    p->resource_len = 0;
}

/* ---- resource matching --------------------------------------------------------------------- */

/* Iterative glob with single-star backtracking (as sh_glob_match), plus the
 * "\?" escape: a token is '*', '?', "\?" (a literal '?') or one literal byte. */
int sh_cf_resource_match(const char *pat, size_t plen, const char *s, size_t slen)
{
    size_t p = 0, i = 0, star_p = (size_t)-1, star_i = 0;

    while (i < slen) {
        int any = 0;
        size_t tl = 1;
        char lit = 0;
        if (p < plen) {
            if (pat[p] == '\\' && p + 1 < plen && pat[p + 1] == '?') {
                lit = '?';
                tl = 2;
            } else if (pat[p] == '?') {
                any = 1;
            } else {
                lit = pat[p];
            }
        }
        if (p < plen && pat[p] == '*') {
            star_p = p++;
            star_i = i;
        } else if (p < plen && (any || lit == s[i])) {
            p += tl;
            i++;
        } else if (star_p != (size_t)-1) {
            p = star_p + 1;
            i = ++star_i;
        } else {
            return 0;
        }
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

/* ---- canned policy ------------------------------------------------------------------------- */

char *sh_cf_canned_policy(const char *url, size_t ulen, const char *expires, size_t elen,
                          size_t *outlen)
{
    static const char pre[] = "{\"Statement\":[{\"Resource\":\"";
    static const char mid[] = "\",\"Condition\":{\"DateLessThan\":{\"AWS:EpochTime\":";
    static const char post[] = "}}}]}";
    static const char hex[] = "0123456789abcdef";
    size_t cap = sizeof pre + sizeof mid + sizeof post + ulen * 6 + elen + 1, o = 0;
    char *out = sh_malloc(cap);

    memcpy(out, pre, sizeof pre - 1);
    o += sizeof pre - 1;
    for (size_t i = 0; i < ulen; i++) {
        unsigned char c = (unsigned char)url[i];
        const char *short_esc = NULL;
        switch (c) {
        case '"':
            short_esc = "\\\"";
            break;
        case '\\':
            short_esc = "\\\\";
            break;
        case '\b':
            short_esc = "\\b";
            break;
        case '\f':
            short_esc = "\\f";
            break;
        case '\n':
            short_esc = "\\n";
            break;
        case '\r':
            short_esc = "\\r";
            break;
        case '\t':
            short_esc = "\\t";
            break;
        }
        if (short_esc) {
            out[o++] = short_esc[0];
            out[o++] = short_esc[1];
        } else if (c < 0x20) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    memcpy(out + o, mid, sizeof mid - 1);
    o += sizeof mid - 1;
    memcpy(out + o, expires, elen);
    o += elen;
    memcpy(out + o, post, sizeof post);
    o += sizeof post - 1;
    *outlen = o;
    return out;
}

/* ---- signature ----------------------------------------------------------------------------- */

int sh_cf_verify(EVP_PKEY *pkey, int sha256, const uint8_t *msg, size_t mlen, const uint8_t *sig,
                 size_t slen)
{
    EVP_MD_CTX *ctx;
    int ok;

    if (!pkey) return 0;
    ctx = EVP_MD_CTX_new();
    /* RSA keys default to PKCS#1 v1.5 padding; EC keys expect a DER ECDSA-Sig-Value
     * and OpenSSL refuses non-canonical DER, so neither has a second spelling. */
    ok = ctx &&
         EVP_DigestVerifyInit(ctx, NULL, sha256 ? EVP_sha256() : EVP_sha1(), NULL, pkey) == 1 &&
         EVP_DigestVerify(ctx, sig, slen, msg, mlen) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) ERR_clear_error();
    return ok;
}

/* ---- parameters ---------------------------------------------------------------------------- */

static const char *const query_names[SH_CF_NPARAMS] = {
    [SH_CF_P_EXPIRES] = "Expires",
    [SH_CF_P_POLICY] = "Policy",
    [SH_CF_P_SIGNATURE] = "Signature",
    [SH_CF_P_KEY_PAIR_ID] = "Key-Pair-Id",
    [SH_CF_P_HASH_ALGORITHM] = "Hash-Algorithm",
};

static const char *const cookie_names[SH_CF_NPARAMS] = {
    [SH_CF_P_EXPIRES] = "CloudFront-Expires",
    [SH_CF_P_POLICY] = "CloudFront-Policy",
    [SH_CF_P_SIGNATURE] = "CloudFront-Signature",
    [SH_CF_P_KEY_PAIR_ID] = "CloudFront-Key-Pair-Id",
    [SH_CF_P_HASH_ALGORITHM] = "CloudFront-Hash-Algorithm",
};

/* Which signing parameter a "name[=value]" query segment is (the same rule
 * as the core's sh_query_strip_signature), -1 if none; *vo = value offset. */
static int query_param(const char *s, size_t n, size_t *vo)
{
    for (int k = 0; k < SH_CF_NPARAMS; k++) {
        size_t l = strlen(query_names[k]);
        if (n >= l && memcmp(s, query_names[k], l) == 0 && (n == l || s[l] == '=')) {
            *vo = n == l ? l : l + 1;
            return k;
        }
    }
    return -1;
}

static void set_param(sh_cf_params *out, int k, const char *v, size_t len)
{
    if (out->v[k])
        out->duplicate = 1;
    else
        out->v[k] = v, out->len[k] = len;
}

int sh_cf_params_from_query(const char *q, size_t qlen, sh_cf_params *out)
{
    size_t vo;

    memset(out, 0, sizeof *out);
    if (!q) return 0;
    /* Hash-Algorithm alone does not make a signed URL: it is then an
     * application's own parameter, like any other. */
    for (size_t i = 0;;) {
        size_t e = i;
        while (e < qlen && q[e] != '&')
            e++;
        int k = query_param(q + i, e - i, &vo);
        if (k >= 0 && k != SH_CF_P_HASH_ALGORITHM) out->any = 1;
        if (e >= qlen) break;
        i = e + 1;
    }
    if (!out->any) return 0;

    int block = 0;
    for (size_t i = 0;;) {
        size_t e = i;
        while (e < qlen && q[e] != '&')
            e++;
        int k = query_param(q + i, e - i, &vo);
        if (k >= 0) {
            if (!block) {
                block = 1;
                out->own_qmark = i > 0;
                out->own_len = i > 0 ? i - 1 : 0;
            }
            set_param(out, k, q + i + vo, e - i - vo);
        } else if (block) {
            out->trailing = 1;
        }
        if (e >= qlen) break;
        i = e + 1;
    }
    return 1;
}

int sh_cf_params_from_cookies(const sh_header *h, size_t n, sh_cf_params *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        if (!sh_hdr_is(h[i].name, h[i].name_len, "Cookie")) continue;
        const char *v = h[i].value, *end = v + h[i].value_len;
        while (v < end) {
            const char *s = v, *e = v, *eq;
            while (e < end && *e != ';')
                e++;
            v = e < end ? e + 1 : e;
            while (s < e && (*s == ' ' || *s == '\t'))
                s++;
            while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            if (!(eq = memchr(s, '=', (size_t)(e - s)))) continue;
            const char *val = eq + 1;
            size_t vl = (size_t)(e - val);
            if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') val++, vl -= 2;
            for (int k = 0; k < SH_CF_NPARAMS; k++) {
                if ((size_t)(eq - s) == strlen(cookie_names[k]) &&
                    memcmp(s, cookie_names[k], (size_t)(eq - s)) == 0) {
                    set_param(out, k, val, vl);
                    out->any = 1;
                }
            }
        }
    }
    return out->any;
}

/* ---- verdict ------------------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decoding into out (at least len bytes; NUL-terminated when cap > result):
 * some HTTP clients escape '~' as %7E. A malformed escape is -1. */
static int pct_decode(const char *in, size_t len, char *out, size_t cap, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len) return -1;
            hi = hexval(in[i + 1]);
            lo = hexval(in[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 >= cap) return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

/* Expires of a canned policy: what a signer writes for an integer epoch. */
static int parse_expires(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;
    if (n == 0 || n > 12 || (s[0] == '0' && n > 1)) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > CF_MAX_EPOCH) return -1;
    *out = v;
    return 0;
}

sh_cf_result sh_cf_check(const sh_cf_params *p, const char *url, size_t ulen, const uint8_t ip[16],
                         int64_t now, const sh_cf_key_conf *keys, size_t nkeys, const char **why)
{
    char kid[CF_MAX_KEY_ID], sigtxt[CF_MAX_SIG_B64 + 1], alg[16], exp[16];
    uint8_t sig[CF_MAX_SIG_B64 / 4 * 3];
    size_t kl, sl, tl, al, el, mlen = 0;
    char *poltxt = NULL, *msg = NULL;
    sh_cf_policy pol = {.date_less_than = -1, .date_greater_than = -1};
    const sh_cf_key_conf *key = NULL;
    const char *w = NULL;
    sh_cf_result r;
    int sha256 = 0;

#define FAIL(code, reason)                                                                         \
    do {                                                                                           \
        r = (code);                                                                                \
        w = (reason);                                                                              \
        goto out;                                                                                  \
    } while (0)

    if (!p->any) FAIL(SH_CF_MISSING_KEY, "no signature");
    if (p->duplicate) FAIL(SH_CF_ACCESS_DENIED, "a signing parameter appears twice");
    if (p->trailing) FAIL(SH_CF_ACCESS_DENIED, "parameters follow the signing parameters");
    if (!p->v[SH_CF_P_KEY_PAIR_ID]) FAIL(SH_CF_MISSING_KEY, "no Key-Pair-Id");
    if (pct_decode(p->v[SH_CF_P_KEY_PAIR_ID], p->len[SH_CF_P_KEY_PAIR_ID], kid, sizeof kid, &kl) <
        0)
        FAIL(SH_CF_INVALID_KEY, "unreadable Key-Pair-Id");
    for (size_t i = 0; i < nkeys && !key; i++)
        if (keys[i].pkey && strlen(keys[i].id) == kl && memcmp(keys[i].id, kid, kl) == 0)
            key = &keys[i];
    if (!key) FAIL(SH_CF_INVALID_KEY, "unknown Key-Pair-Id");

    if (!p->v[SH_CF_P_SIGNATURE] ||
        pct_decode(p->v[SH_CF_P_SIGNATURE], p->len[SH_CF_P_SIGNATURE], sigtxt, sizeof sigtxt, &tl) <
            0 ||
        sh_cf_b64_decode(sigtxt, tl, sig, &sl) < 0 || sl == 0)
        FAIL(SH_CF_MALFORMED_SIGNATURE, "no or undecodable Signature");

    if (p->v[SH_CF_P_HASH_ALGORITHM]) {
        if (pct_decode(p->v[SH_CF_P_HASH_ALGORITHM], p->len[SH_CF_P_HASH_ALGORITHM], alg,
                       sizeof alg, &al) < 0)
            FAIL(SH_CF_ACCESS_DENIED, "unknown Hash-Algorithm");
        if (strcmp(alg, "SHA256") == 0)
            sha256 = 1;
        else if (strcmp(alg, "SHA1") != 0)
            FAIL(SH_CF_ACCESS_DENIED, "unknown Hash-Algorithm");
    }

    if (p->v[SH_CF_P_POLICY] && p->v[SH_CF_P_EXPIRES])
        FAIL(SH_CF_ACCESS_DENIED, "both Expires and Policy");
    if (p->v[SH_CF_P_POLICY]) {
        size_t n = p->len[SH_CF_P_POLICY];
        if (n > CF_MAX_POLICY_B64) FAIL(SH_CF_MALFORMED_POLICY, "Policy too long");
        poltxt = sh_malloc(n + 1);
        msg = sh_malloc(n / 4 * 3 + 1);
        if (pct_decode(p->v[SH_CF_P_POLICY], n, poltxt, n + 1, &tl) < 0 ||
            sh_cf_b64_decode(poltxt, tl, (uint8_t *)msg, &mlen) < 0)
            FAIL(SH_CF_MALFORMED_POLICY, "undecodable Policy");
        if (sh_cf_policy_parse(msg, mlen, &pol) < 0)
            FAIL(SH_CF_MALFORMED_POLICY, "invalid Policy document");
    } else if (p->v[SH_CF_P_EXPIRES]) {
        if (pct_decode(p->v[SH_CF_P_EXPIRES], p->len[SH_CF_P_EXPIRES], exp, sizeof exp, &el) < 0 ||
            parse_expires(exp, el, &pol.date_less_than) < 0)
            FAIL(SH_CF_ACCESS_DENIED, "Expires is not an epoch");
        /* The URL is inside the signed bytes: no separate resource match. */
        msg = sh_cf_canned_policy(url, ulen, exp, el, &mlen);
    } else {
        FAIL(SH_CF_MALFORMED_POLICY, "neither Expires nor Policy");
    }

    if (!sh_cf_verify(key->pkey, sha256, (const uint8_t *)msg, mlen, sig, sl))
        FAIL(SH_CF_ACCESS_DENIED, "signature does not verify");
    if (now >= pol.date_less_than) FAIL(SH_CF_ACCESS_DENIED, "expired");
    if (pol.date_greater_than >= 0 && now <= pol.date_greater_than)
        FAIL(SH_CF_ACCESS_DENIED, "not valid yet (DateGreaterThan)");
    if (pol.has_ip && !sh_cidr_match(&pol.ip, ip))
        FAIL(SH_CF_ACCESS_DENIED, "client address outside IpAddress");
    if (pol.resource && !sh_cf_resource_match(pol.resource, pol.resource_len, url, ulen))
        FAIL(SH_CF_ACCESS_DENIED, "Resource does not match the URL");
    r = SH_CF_OK;
#undef FAIL
out:
    sh_cf_policy_free(&pol);
    sh_free(poltxt);
    sh_free(msg);
    if (why) *why = w;
    return r;
}
