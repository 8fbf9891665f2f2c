/*
 * SigV4 verification: parsers, canonical request and verdict. See
 * include/shield/sigv4_verify.h for the contract and the canonicalisation rule.
 *
 * The checks run in S3's order (syntax, scope, key, clock, payload, then the
 * signature), so the error codes are the ones S3 clients already know; the
 * HMAC work is only done for a request that passed everything cheaper.
 */
#include "shield/sigv4_verify.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shield/alloc.h"
#include "shield/sbuf.h"
#include "shield/sigv4_sign.h"

static const struct {
    const char *code;
    int status;
} errs[SIGV4_ERR_COUNT] = {
    [SIGV4_OK] = {"", 200},
    [SIGV4_ACCESS_DENIED] = {"AccessDenied", 403},
    [SIGV4_INVALID_ACCESS_KEY] = {"InvalidAccessKeyId", 403},
    [SIGV4_SIGNATURE_MISMATCH] = {"SignatureDoesNotMatch", 403},
    [SIGV4_TIME_SKEWED] = {"RequestTimeTooSkewed", 403},
    [SIGV4_QUERY_PARAMS_ERROR] = {"AuthorizationQueryParametersError", 403},
    [SIGV4_HEADER_MALFORMED] = {"AuthorizationHeaderMalformed", 403},
    [SIGV4_MISSING_SECURITY_HEADER] = {"MissingSecurityHeader", 403},
    [SIGV4_CONTENT_SHA256_MISMATCH] = {"XAmzContentSHA256Mismatch", 403},
    [SIGV4_INVALID_REQUEST] = {"InvalidRequest", 400},
};

const char *sigv4_err_code(sigv4_err e)
{
    return (unsigned)e < SIGV4_ERR_COUNT ? errs[e].code : "AccessDenied";
}

int sigv4_err_status(sigv4_err e)
{
    return (unsigned)e < SIGV4_ERR_COUNT ? errs[e].status : 403;
}

static sigv4_err fail(sigv4_err e, const char **msg, const char *m)
{
    if (msg) *msg = m;
    return e;
}

/* ---- small helpers -------------------------------------------------------------------------- */

/* Optional whitespace around Authorization parameters (RFC 9110 OWS). */
static int is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Percent-decode s into out (at most cap bytes, no terminator added). A '%'
 * not followed by two hex digits stays literal, '+' stays '+' (S3). Returns
 * the length, or -1 when it does not fit or decodes to a NUL byte.
 */
static long pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%' && i + 2 < n && sigv4_hexval((unsigned char)s[i + 1]) >= 0 &&
            sigv4_hexval((unsigned char)s[i + 2]) >= 0) {
            c = (unsigned char)(sigv4_hexval((unsigned char)s[i + 1]) * 16 +
                                sigv4_hexval((unsigned char)s[i + 2]));
            i += 2;
        }
        if (c == '\0' || o >= cap) return -1;
        out[o++] = (char)c;
    }
    return (long)o;
}

static int all_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil): no dependence on the process time zone. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static int valid_date8(const char *s, unsigned *y, unsigned *m, unsigned *d)
{
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (digits(s, 4, y) || digits(s + 4, 2, m) || digits(s + 6, 2, d)) return 0;
    if (*y < 1970 || *m < 1 || *m > 12 || *d < 1 || *d > mdays[*m - 1]) return 0;
    if (*m == 2 && *d == 29 && !(*y % 4 == 0 && (*y % 100 != 0 || *y % 400 == 0))) return 0;
    return 1;
}

int sigv4_parse_amz_date(const char *s, size_t len, int64_t *out)
{
    unsigned y, mo, d, h, mi, se;
    if (len != 16 || s[8] != 'T' || s[15] != 'Z') return -1;
    if (!valid_date8(s, &y, &mo, &d)) return -1;
    if (digits(s + 9, 2, &h) || digits(s + 11, 2, &mi) || digits(s + 13, 2, &se)) return -1;
    if (h > 23 || mi > 59 || se > 59) return -1;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    return 0;
}

/* ---- path and query form ------------------------------------------------------------------- */

/* Is s[0..n) UriEncode(decode(s))? allow_slash: '/' literal (paths) or encoded (queries). */
static int uri_is_canonical(const char *s, size_t n, int allow_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (sigv4_unreserved(c) || (allow_slash && c == '/')) continue;
        if (c != '%' || i + 2 >= n) return 0;
        int hi = sigv4_hexval((unsigned char)s[i + 1]), lo = sigv4_hexval((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0) return 0;
        unsigned char dc = (unsigned char)(hi * 16 + lo);
        /* The one spelling UriEncode produces: upper-case hex, and only for a
         * byte that must be encoded ("%41" is "A", "%2F" in a path is '/'). */
        if (s[i + 1] != hex[dc >> 4] || s[i + 2] != hex[dc & 15]) return 0;
        if (sigv4_unreserved(dc) || (allow_slash && dc == '/')) return 0;
        i += 2;
    }
    return 1;
}

int sigv4_path_is_canonical(const char *path, size_t len)
{
    if (!uri_is_canonical(path, len, 1)) return 0;
    /* A key with a control byte is never what a reader meant, and a NUL is where
     * C code downstream would cut it. */
    for (size_t i = 0; i + 2 < len; i++) {
        if (path[i] != '%') continue;
        int v = sigv4_hexval((unsigned char)path[i + 1]) * 16 +
                sigv4_hexval((unsigned char)path[i + 2]);
        if (v < 0x20 || v == 0x7f) return 0;
        i += 2;
    }
    return 1;
}

int sigv4_query_is_canonical(const char *q, size_t len)
{
    if (!q || len == 0) return 1;
    const char *p = q, *end = q + len;
    for (;;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        if (seg_end == p) return 0; /* "a&&b", "a&": botocore and AWS disagree on these */
        const char *eq = memchr(p, '=', (size_t)(seg_end - p));
        const char *name_end = eq ? eq : seg_end;
        if (!uri_is_canonical(p, (size_t)(name_end - p), 0)) return 0;
        if (eq && !uri_is_canonical(eq + 1, (size_t)(seg_end - eq - 1), 0)) return 0;
        if (!amp) break;
        p = amp + 1;
    }
    return 1;
}

/* ---- Authorization header ------------------------------------------------------------------ */

/* "AK/20130524/us-east-1/s3/aws4_request" (already decoded). */
static int parse_credential(const char *s, size_t n, sigv4_auth *a)
{
    const char *part[5];
    size_t plen[5], np = 0;
    const char *p = s, *end = s + n;
    while (np < 5) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *e = slash ? slash : end;
        part[np] = p;
        plen[np++] = (size_t)(e - p);
        if (!slash) break;
        p = slash + 1;
    }
    if (np != 5 || p + plen[4] != end) return -1; /* more or fewer than five parts */
    for (size_t i = 0; i < 5; i++) {
        if (plen[i] == 0) return -1;
        for (size_t j = 0; j < plen[i]; j++) {
            unsigned char c = (unsigned char)part[i][j];
            if (c <= 0x20 || c >= 0x7f || c == ',') return -1;
        }
    }
    unsigned y, m, d;
    if (plen[0] > SIGV4_MAX_ACCESS_KEY || plen[1] != 8 || !valid_date8(part[1], &y, &m, &d) ||
        plen[2] > SIGV4_MAX_SCOPE_PART || plen[3] > SIGV4_MAX_SCOPE_PART)
        return -1;
    if (plen[4] != 12 || memcmp(part[4], "aws4_request", 12) != 0) return -1;
    memcpy(a->access_key, part[0], plen[0]);
    a->access_key[plen[0]] = '\0';
    memcpy(a->date8, part[1], 8);
    a->date8[8] = '\0';
    memcpy(a->region, part[2], plen[2]);
    a->region[plen[2]] = '\0';
    memcpy(a->service, part[3], plen[3]);
    a->service[plen[3]] = '\0';
    return 0;
}

/* "host;range;x-amz-date": lower-case tokens, strictly ascending (sorted and
 * unique, as every signer emits them), host among them. */
static int parse_signed_headers(const char *s, size_t n, sigv4_auth *a)
{
    if (n == 0 || n > SIGV4_MAX_SIGNED_HEADERS) return -1;
    const char *prev = NULL;
    size_t prev_len = 0;
    int host = 0;
    const char *p = s, *end = s + n;
    while (p <= end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *e = semi ? semi : end;
        size_t l = (size_t)(e - p);
        if (l == 0) return -1;
        for (size_t i = 0; i < l; i++) {
            unsigned char c = (unsigned char)p[i];
            if (!sh_is_tchar(c) || (c >= 'A' && c <= 'Z')) return -1;
        }
        if (prev) {
            size_t m = prev_len < l ? prev_len : l;
            int c = memcmp(prev, p, m);
            if (c > 0 || (c == 0 && prev_len >= l)) return -1;
        }
        if (l == 4 && memcmp(p, "host", 4) == 0) host = 1;
        prev = p;
        prev_len = l;
        if (!semi) break;
        p = semi + 1;
    }
    if (!host) return -1;
    memcpy(a->signed_headers, s, n);
    a->signed_headers[n] = '\0';
    return 0;
}

static int parse_signature(const char *s, size_t n, sigv4_auth *a)
{
    if (n != 64 || !all_lower_hex(s, n)) return -1;
    memcpy(a->signature, s, 64);
    a->signature[64] = '\0';
    return 0;
}

sigv4_err sigv4_parse_authorization(const char *v, size_t len, sigv4_auth *a, const char **msg)
{
    static const char alg[] = "AWS4-HMAC-SHA256";
    const sigv4_err E = SIGV4_HEADER_MALFORMED;
    memset(a, 0, sizeof(*a));
    if (len < sizeof(alg) || memcmp(v, alg, sizeof(alg) - 1) != 0 || v[sizeof(alg) - 1] != ' ')
        return fail(E, msg, "Unsupported Authorization Type; only AWS4-HMAC-SHA256 is accepted.");
    const char *p = v + sizeof(alg) - 1, *end = v + len;
    int seen = 0; /* 1 Credential, 2 SignedHeaders, 4 Signature */
    for (;;) {
        while (p < end && is_ws(*p))
            p++;
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = comma ? (size_t)(comma - p) : (size_t)(end - p);
        while (n > 0 && is_ws(p[n - 1]))
            n--;
        const char *eq = memchr(p, '=', n);
        if (!eq) return fail(E, msg, "The authorization header is malformed.");
        size_t kl = (size_t)(eq - p), vl = n - kl - 1;
        const char *val = eq + 1;
        int bit;
        if (kl == 10 && memcmp(p, "Credential", 10) == 0) {
            bit = 1;
            if (!(seen & bit) && parse_credential(val, vl, a) != 0)
                return fail(E, msg,
                            "The authorization header is malformed; the Credential is mal-formed; "
                            "expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".");
        } else if (kl == 13 && memcmp(p, "SignedHeaders", 13) == 0) {
            bit = 2;
            if (!(seen & bit) && parse_signed_headers(val, vl, a) != 0)
                return fail(E, msg,
                            "The authorization header is malformed; SignedHeaders must be sorted "
                            "lower-case header names separated by ';' and include host.");
        } else if (kl == 9 && memcmp(p, "Signature", 9) == 0) {
            bit = 4;
            if (!(seen & bit) && parse_signature(val, vl, a) != 0)
                return fail(E, msg,
                            "The authorization header is malformed; the Signature must be 64 "
                            "lower-case hexadecimal digits.");
        } else {
            return fail(E, msg, "The authorization header is malformed; unknown component.");
        }
        if (seen & bit)
            return fail(E, msg, "The authorization header is malformed; repeated component.");
        seen |= bit;
        if (!comma) break;
        p = comma + 1;
    }
    if (seen != 7)
        return fail(E, msg,
                    "The authorization header is malformed; Credential, SignedHeaders and "
                    "Signature are all required.");
    return SIGV4_OK;
}

/* ---- presigned query ------------------------------------------------------------------------ */

static const char *const qnames[7] = {
    "X-Amz-Algorithm",     "X-Amz-Credential", "X-Amz-Date",           "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Signature",  "X-Amz-Security-Token",
};

sigv4_err sigv4_scan_query(const char *q, size_t len, sigv4_qparams *out, const char **msg)
{
    memset(out, 0, sizeof(*out));
    const char *p = q, *end = q ? q + len : NULL;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(seg_end - p));
        const char *name_end = eq ? eq : seg_end;
        size_t rawlen = (size_t)(name_end - p);
        char name[32];
        long nl = rawlen < 3 * sizeof(name) ? pct_decode(p, rawlen, name, sizeof(name)) : -1;
        for (int i = 0; nl > 0 && i < 7; i++) {
            size_t l = strlen(qnames[i]);
            if ((size_t)nl != l || strncasecmp(name, qnames[i], l) != 0) continue;
            if (rawlen != l || memcmp(p, qnames[i], l) != 0)
                return fail(SIGV4_QUERY_PARAMS_ERROR, msg,
                            "X-Amz-* query parameters must be spelled exactly and not "
                            "percent-encoded.");
            if (out->found & (1u << i))
                return fail(SIGV4_QUERY_PARAMS_ERROR, msg,
                            "An X-Amz-* query parameter appears more than once.");
            out->found |= 1u << i;
            out->value[i] = eq ? eq + 1 : seg_end;
            out->value_len[i] = eq ? (size_t)(seg_end - eq - 1) : 0;
        }
        p = amp ? amp + 1 : end;
    }
    return SIGV4_OK;
}

sigv4_err sigv4_parse_presigned(const sigv4_qparams *qp, sigv4_auth *a, const char **msg)
{
    const sigv4_err E = SIGV4_QUERY_PARAMS_ERROR;
    const unsigned need = SIGV4_Q_ALGORITHM | SIGV4_Q_CREDENTIAL | SIGV4_Q_DATE | SIGV4_Q_EXPIRES |
                          SIGV4_Q_SIGNED_HEADERS | SIGV4_Q_SIGNATURE;
    /* Decoded values are at most as long as the raw ones: one buffer fits all. */
    char buf[SIGV4_MAX_SIGNED_HEADERS + 1];
    long n;
    memset(a, 0, sizeof(*a));
    a->presigned = 1;
    if ((qp->found & need) != need)
        return fail(E, msg,
                    "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                    "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
                    "X-Amz-Expires parameters.");
#define DECODE(i) (n = pct_decode(qp->value[i], qp->value_len[i], buf, sizeof(buf) - 1))
    if (DECODE(0) != 16 || memcmp(buf, "AWS4-HMAC-SHA256", 16) != 0)
        return fail(E, msg, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\".");
    if (DECODE(1) < 0 || parse_credential(buf, (size_t)n, a) != 0)
        return fail(E, msg,
                    "Error parsing the X-Amz-Credential parameter; expecting "
                    "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".");
    if (DECODE(2) != 16 || sigv4_parse_amz_date(buf, 16, &a->time) != 0)
        return fail(E, msg,
                    "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\".");
    memcpy(a->amz_date, buf, 16);
    a->amz_date[16] = '\0';
    unsigned ex = 0;
    if (DECODE(3) < 1 || n > 6 || digits(buf, (size_t)n, &ex) != 0 || ex < 1 || ex > 604800)
        return fail(E, msg,
                    "X-Amz-Expires must be a number of seconds from 1 to 604800 (one week).");
    a->expires = (long)ex;
    if (DECODE(4) < 0 || parse_signed_headers(buf, (size_t)n, a) != 0)
        return fail(E, msg,
                    "X-Amz-SignedHeaders must be sorted lower-case header names separated by ';' "
                    "and include host.");
    if (DECODE(5) < 0 || parse_signature(buf, (size_t)n, a) != 0)
        return fail(E, msg, "X-Amz-Signature must be 64 lower-case hexadecimal digits.");
#undef DECODE
    return SIGV4_OK;
}

/* ---- canonical request ---------------------------------------------------------------------- */

char *sigv4_verify_canonical_request(const sigv4_request *rq, const sigv4_auth *a,
                                     const char *payload_hash)
{
    sbuf b = {0};
    sb_add(&b, rq->method, rq->method_len);
    sb_addc(&b, '\n');
    if (rq->path_len)
        sb_add(&b, rq->path, rq->path_len);
    else
        sb_addc(&b, '/');
    sb_addc(&b, '\n');
    char *q = sigv4_canonical_query(rq->query, rq->query ? rq->query_len : 0,
                                    a->presigned ? "X-Amz-Signature" : NULL);
    sb_adds(&b, q);
    sh_free(q);
    sb_addc(&b, '\n');

    const char *p = a->signed_headers;
    while (*p) {
        const char *semi = strchr(p, ';');
        size_t l = semi ? (size_t)(semi - p) : strlen(p);
        sb_add(&b, p, l);
        sb_addc(&b, ':');
        if (l == 4 && memcmp(p, "host", 4) == 0) {
            /* The host the core keys and routes on, which for an absolute-form
             * target is its authority rather than a Host header. */
            if (!rq->host) goto missing;
            sigv4_add_trimmed(&b, rq->host, rq->host_len);
        } else {
            size_t found = 0;
            for (size_t i = 0; i < rq->nheaders; i++) {
                const sh_header *h = &rq->headers[i];
                if (h->name_len != l || strncasecmp(h->name, p, l) != 0) continue;
                if (found++) sb_addc(&b, ',');
                sigv4_add_trimmed(&b, h->value, h->value_len);
            }
            if (!found) goto missing;
        }
        sb_addc(&b, '\n');
        p += l + (semi ? 1 : 0);
    }
    sb_addc(&b, '\n');
    sb_adds(&b, a->signed_headers);
    sb_addc(&b, '\n');
    sb_adds(&b, payload_hash);
    return b.p;
missing:
    sh_free(b.p);
    return NULL;
}

/* ---- verdict -------------------------------------------------------------------------------- */

static const sh_header *only_header(const sigv4_request *rq, const char *name, int *count)
{
    const sh_header *first = NULL;
    *count = 0;
    for (size_t i = 0; i < rq->nheaders; i++) {
        if (!sh_hdr_is(rq->headers[i].name, rq->headers[i].name_len, name)) continue;
        if (!first) first = &rq->headers[i];
        (*count)++;
    }
    return first;
}

static const sh_sigv4_key_conf *find_key(const sh_sigv4_conf *conf, const char *ak)
{
    for (size_t i = 0; i < conf->nkeys; i++)
        if (conf->keys[i].access_key && strcmp(conf->keys[i].access_key, ak) == 0)
            return &conf->keys[i];
    return NULL;
}

/* x-amz-content-sha256 of a header-signed request: the payload hash to sign. */
static sigv4_err payload_hash(const sigv4_request *rq, char out[65], const char **msg)
{
    int n;
    const sh_header *h = only_header(rq, "x-amz-content-sha256", &n);
    if (!h)
        return fail(SIGV4_MISSING_SECURITY_HEADER, msg,
                    "Missing required header for this request: x-amz-content-sha256.");
    if (n > 1)
        return fail(SIGV4_ACCESS_DENIED, msg, "x-amz-content-sha256 appears more than once.");
    if (h->value_len == 16 && memcmp(h->value, SIGV4_UNSIGNED_PAYLOAD, 16) == 0) {
        memcpy(out, SIGV4_UNSIGNED_PAYLOAD, 17);
        return SIGV4_OK;
    }
    if (h->value_len != 64 || !all_lower_hex(h->value, 64))
        return fail(SIGV4_CONTENT_SHA256_MISMATCH, msg,
                    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or the lower-case hex "
                    "SHA-256 of the body.");
    if (rq->body_state == SIGV4_BODY_PENDING)
        return fail(SIGV4_CONTENT_SHA256_MISMATCH, msg,
                    "A request body cannot be hashed before authentication here; sign it with "
                    "x-amz-content-sha256: UNSIGNED-PAYLOAD.");
    char want[65];
    if (rq->body_state == SIGV4_BODY_KNOWN && rq->body_len)
        sigv4_sha256_hex(rq->body, rq->body_len, want);
    else
        memcpy(want, SIGV4_EMPTY_SHA256, 65);
    if (CRYPTO_memcmp(want, h->value, 64) != 0)
        return fail(SIGV4_CONTENT_SHA256_MISMATCH, msg,
                    "The provided 'x-amz-content-sha256' header does not match what was "
                    "computed.");
    memcpy(out, want, 65);
    return SIGV4_OK;
}

sigv4_err sigv4_verify(const sigv4_request *rq, const sh_sigv4_conf *conf, int64_t now,
                       const char **msg)
{
    int nauth;
    const sh_header *auth = only_header(rq, "Authorization", &nauth);
    sigv4_qparams qp;
    sigv4_err e = sigv4_scan_query(rq->query, rq->query_len, &qp, msg);
    if (e != SIGV4_OK) return e;
    int presigned = (qp.found & SIGV4_Q_AUTH) != 0;
    if (auth && presigned)
        return fail(SIGV4_ACCESS_DENIED, msg,
                    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter "
                    "or the Authorization header should be specified.");
    if (!auth && !presigned) return fail(SIGV4_ACCESS_DENIED, msg, "Access Denied");
    if (nauth > 1)
        return fail(SIGV4_HEADER_MALFORMED, msg,
                    "The Authorization header appears more than once.");

    if (!sigv4_path_is_canonical(rq->path, rq->path_len))
        return fail(SIGV4_INVALID_REQUEST, msg,
                    "The request path must be percent-encoded exactly as SigV4 canonicalises it "
                    "(unreserved characters and '/' literal, everything else %XX in upper case, "
                    "no encoded control characters).");
    if (!sigv4_query_is_canonical(rq->query, rq->query_len))
        return fail(SIGV4_INVALID_REQUEST, msg,
                    "The query string must be percent-encoded exactly as SigV4 canonicalises it "
                    "(unreserved characters literal, everything else %XX in upper case, one '=' "
                    "per parameter, no empty parameters).");

    sigv4_auth a;
    char hash[65];
    sigv4_err malformed;
    if (presigned) {
        malformed = SIGV4_QUERY_PARAMS_ERROR;
        if ((e = sigv4_parse_presigned(&qp, &a, msg)) != SIGV4_OK) return e;
        memcpy(hash, SIGV4_UNSIGNED_PAYLOAD, 17);
    } else {
        malformed = SIGV4_HEADER_MALFORMED;
        if ((e = sigv4_parse_authorization(auth->value, auth->value_len, &a, msg)) != SIGV4_OK)
            return e;
        int nd;
        const sh_header *d = only_header(rq, "x-amz-date", &nd);
        if (!d)
            return fail(SIGV4_ACCESS_DENIED, msg,
                        "AWS authentication requires a valid x-amz-date header.");
        if (nd > 1) return fail(SIGV4_ACCESS_DENIED, msg, "x-amz-date appears more than once.");
        if (sigv4_parse_amz_date(d->value, d->value_len, &a.time) != 0)
            return fail(SIGV4_ACCESS_DENIED, msg,
                        "x-amz-date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\".");
        memcpy(a.amz_date, d->value, 16);
        a.amz_date[16] = '\0';
    }

    if (memcmp(a.date8, a.amz_date, 8) != 0)
        return fail(malformed, msg, "Invalid credential date. Date is not the same as X-Amz-Date.");
    if (strcmp(a.region, conf->region ? conf->region : "us-east-1") != 0)
        return fail(malformed, msg, "The region in the credential scope is wrong for this server.");
    if (strcmp(a.service, conf->service ? conf->service : "s3") != 0)
        return fail(malformed, msg,
                    "The service in the credential scope is wrong for this server.");
    const sh_sigv4_key_conf *key = find_key(conf, a.access_key);
    if (!key || !key->secret)
        return fail(SIGV4_INVALID_ACCESS_KEY, msg,
                    "The AWS Access Key Id you provided does not exist in our records.");

    int64_t skew = (int64_t)(conf->max_skew_ms / 1000);
    if (presigned) {
        if (a.time > now + skew) return fail(SIGV4_ACCESS_DENIED, msg, "Request is not valid yet");
        if (now > a.time + a.expires) return fail(SIGV4_ACCESS_DENIED, msg, "Request has expired");
    } else {
        if (a.time > now + skew || a.time < now - skew)
            return fail(SIGV4_TIME_SKEWED, msg,
                        "The difference between the request time and the current time is too "
                        "large.");
        if ((e = payload_hash(rq, hash, msg)) != SIGV4_OK) return e;
    }

    char *creq = sigv4_verify_canonical_request(rq, &a, hash);
    if (!creq)
        return fail(SIGV4_ACCESS_DENIED, msg,
                    "A header listed in SignedHeaders is not present in the request.");
    char scope[8 + 1 + SIGV4_MAX_SCOPE_PART + 1 + SIGV4_MAX_SCOPE_PART + 14];
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", a.date8, a.region, a.service);
    unsigned char k[32];
    char sig[65];
    sigv4_signing_key(key->secret, a.date8, a.region, a.service, k);
    sigv4_signature(k, a.amz_date, scope, creq, sig);
    OPENSSL_cleanse(k, sizeof(k));
    sh_free(creq);
    int ok = CRYPTO_memcmp(sig, a.signature, 64) == 0;
    OPENSSL_cleanse(sig, sizeof(sig));
    if (!ok)
        return fail(SIGV4_SIGNATURE_MISMATCH, msg,
                    "The request signature we calculated does not match the signature you "
                    "provided. Check your key and signing method.");
    return SIGV4_OK;
}
