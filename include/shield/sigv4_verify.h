/*
 * SigV4 verification of viewer requests (modules/sigv4.c): parsers of the
 * Authorization header and of presigned-URL query parameters, the canonical
 * request a viewer must have signed, and the whole verdict.
 *
 * Pure functions of (request bytes, config, clock): no connection, no global
 * state, nothing logged (secrets never leave this file), so the parsers are
 * unit-tested against AWS's published vectors and fuzzed.
 *
 * The primitives (SHA-256 hex, the HMAC key chain, the canonical query) are
 * the ones Shield's own origin signer uses (shield/sigv4_sign.h), so both
 * directions canonicalise a query the same way.
 *
 * Canonicalisation rule. The canonical URI is the request path exactly as
 * received (S3 and botocore: no normalisation, no second encoding). The core
 * uses those same bytes for the cache key and sends them to the origin as they
 * are (curl PATH_AS_IS), where S3 percent-decodes them once into the key. So
 * that a signature never covers bytes Shield or S3 would read differently, the
 * path must already be in AWS's canonical encoding, raw == UriEncode(decode
 * (raw)): unreserved A-Z a-z 0-9 - . _ ~ and '/' literal, every other byte as
 * %XX with upper-case hex, no encoded control bytes. Each query parameter's
 * name and value follow the same rule ('/' and '=' inside a value encoded too,
 * no empty parameters), so the canonical query is just the raw parameters
 * sorted, on which botocore (which signs the raw query), AWS (decode then
 * encode) and Shield's own origin signer agree, and neither '#' (curl would cut
 * it) nor a raw '+' (a space to form decoders, a plus to S3) can occur.
 * Anything else is 400 InvalidRequest: "%2F", "%2e%2e", "%7E", lower-case
 * escapes, a literal '+', '!', '(', ';'... and "%00". Literal "//" and "/../"
 * segments are canonical bytes and pass (S3 keys may contain them; the WAF's
 * traversal rule refuses them first when enabled). Every S3 key therefore has
 * exactly one accepted spelling, and that spelling is what is verified, cached
 * and fetched.
 */
#ifndef SHIELD_SIGV4_VERIFY_H
#define SHIELD_SIGV4_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "shield/config.h"
#include "shield/http.h"

/* Why a request was refused; each maps to one S3 error code and HTTP status. */
typedef enum {
    SIGV4_OK = 0,
    SIGV4_ACCESS_DENIED,           /* 403 AccessDenied: no auth, both kinds, expired... */
    SIGV4_INVALID_ACCESS_KEY,      /* 403 InvalidAccessKeyId */
    SIGV4_SIGNATURE_MISMATCH,      /* 403 SignatureDoesNotMatch */
    SIGV4_TIME_SKEWED,             /* 403 RequestTimeTooSkewed */
    SIGV4_QUERY_PARAMS_ERROR,      /* 403 AuthorizationQueryParametersError (presigned) */
    SIGV4_HEADER_MALFORMED,        /* 403 AuthorizationHeaderMalformed */
    SIGV4_MISSING_SECURITY_HEADER, /* 403 MissingSecurityHeader: no x-amz-content-sha256 */
    SIGV4_CONTENT_SHA256_MISMATCH, /* 403 XAmzContentSHA256Mismatch */
    SIGV4_INVALID_REQUEST,         /* 400 InvalidRequest: path/query not canonical */
    SIGV4_ERR_COUNT
} sigv4_err;

/* S3 error code of e ("SignatureDoesNotMatch"); "" for SIGV4_OK. Static string. */
const char *sigv4_err_code(sigv4_err e);
/* HTTP status of e (403 or 400; 200 for SIGV4_OK). */
int sigv4_err_status(sigv4_err e);

/* Bounds of the parsed fields: longer input is malformed, so memory stays fixed. */
#define SIGV4_MAX_ACCESS_KEY     128
#define SIGV4_MAX_SCOPE_PART     64
#define SIGV4_MAX_SIGNED_HEADERS 2048 /* bytes of the "a;b;c" list */

/* The credential scope and signature, from the Authorization header or the query. */
typedef struct sigv4_auth {
    int presigned; /* 1: from X-Amz-* query parameters */
    char access_key[SIGV4_MAX_ACCESS_KEY + 1];
    char date8[9]; /* scope date "20130524" */
    char region[SIGV4_MAX_SCOPE_PART + 1];
    char service[SIGV4_MAX_SCOPE_PART + 1];
    char signed_headers[SIGV4_MAX_SIGNED_HEADERS + 1]; /* validated: sorted, unique, has host */
    char signature[65];                                /* 64 lower-case hex digits */
    char amz_date[17]; /* presigned: X-Amz-Date (header auth: filled by sigv4_verify) */
    int64_t time;      /* amz_date as epoch seconds */
    long expires;      /* presigned: X-Amz-Expires, 1..604800 */
} sigv4_auth;

/*
 * Parse an Authorization header value: "AWS4-HMAC-SHA256 Credential=AK/date/
 * region/service/aws4_request, SignedHeaders=a;b, Signature=<hex>" (the three
 * components once each, in any order, optional blanks after commas). Returns
 * SIGV4_OK or SIGV4_HEADER_MALFORMED with *msg set to a static message.
 */
sigv4_err sigv4_parse_authorization(const char *v, size_t len, sigv4_auth *a, const char **msg);

/* Presence bits of the X-Amz-* query parameters (sigv4_scan_query). */
enum {
    SIGV4_Q_ALGORITHM = 1 << 0,
    SIGV4_Q_CREDENTIAL = 1 << 1,
    SIGV4_Q_DATE = 1 << 2,
    SIGV4_Q_EXPIRES = 1 << 3,
    SIGV4_Q_SIGNED_HEADERS = 1 << 4,
    SIGV4_Q_SIGNATURE = 1 << 5,
    SIGV4_Q_SECURITY_TOKEN = 1 << 6,
};
/* Any of these makes a request a presigned one. */
#define SIGV4_Q_AUTH                                                                               \
    (SIGV4_Q_ALGORITHM | SIGV4_Q_CREDENTIAL | SIGV4_Q_EXPIRES | SIGV4_Q_SIGNED_HEADERS |           \
     SIGV4_Q_SIGNATURE)

/* Raw (still percent-encoded) values of the X-Amz-* parameters; pointers into the query. */
typedef struct sigv4_qparams {
    unsigned found; /* SIGV4_Q_* bits */
    const char *value[7];
    size_t value_len[7];
} sigv4_qparams;

/*
 * Find the X-Amz-* parameters of a raw query (q may be NULL). A parameter
 * whose decoded name matches one of them case-insensitively must be spelled
 * exactly ("X-Amz-Signature", unencoded: the core strips signing parameters
 * from the cache key and the origin query by their raw names) and appear
 * once. Returns SIGV4_OK or SIGV4_QUERY_PARAMS_ERROR (*msg static).
 */
sigv4_err sigv4_scan_query(const char *q, size_t len, sigv4_qparams *out, const char **msg);

/*
 * The presigned parameters found by sigv4_scan_query, parsed and checked on
 * their own (all six present, algorithm, credential syntax, date, expiry range,
 * signed headers, signature). SIGV4_OK or SIGV4_QUERY_PARAMS_ERROR.
 */
sigv4_err sigv4_parse_presigned(const sigv4_qparams *qp, sigv4_auth *a, const char **msg);

/* "YYYYMMDDTHHMMSSZ" (exactly 16 bytes, a real date) to epoch seconds. 0 or -1. */
int sigv4_parse_amz_date(const char *s, size_t len, int64_t *out);

/* Is the path in AWS canonical encoding (see the top of this file)? 1 or 0. */
int sigv4_path_is_canonical(const char *path, size_t len);
/* Is every query parameter's name and value in AWS canonical encoding? 1 or 0. */
int sigv4_query_is_canonical(const char *q, size_t len);

/* What the verifier knows of the request body. */
typedef enum {
    SIGV4_BODY_NONE,    /* no body: a hashed payload must be the empty-string hash */
    SIGV4_BODY_KNOWN,   /* body/body_len are the whole body */
    SIGV4_BODY_PENDING, /* a body follows but is not read yet: only UNSIGNED-PAYLOAD */
} sigv4_body;

/* The request as received. Pointers are borrowed for the duration of a call. */
typedef struct sigv4_request {
    const char *method; /* as sent, e.g. "GET" */
    size_t method_len;
    const char *path; /* raw path, starts with '/' */
    size_t path_len;
    const char *query; /* raw query without '?', NULL when the target had none */
    size_t query_len;
    const char *host; /* the request's host (the value signed as "host"); NULL = none */
    size_t host_len;
    const sh_header *headers; /* every request header, in received order */
    size_t nheaders;
    sigv4_body body_state;
    const char *body;
    size_t body_len;
} sigv4_request;

/*
 * The canonical request for auth a: method, raw path, canonical query (without
 * X-Amz-Signature when presigned), each signed header "name:value" (host from
 * rq->host; repeated headers' trimmed values joined with ','), the signed
 * header list and payload_hash. Returns a sh_malloc'd string, or NULL when a
 * signed header is absent from the request.
 */
char *sigv4_verify_canonical_request(const sigv4_request *rq, const sigv4_auth *a,
                                     const char *payload_hash);

/*
 * Verify rq against conf at time now (epoch seconds): header or presigned
 * auth, scope, key, clock, payload hash, signature (constant-time compare).
 * Returns SIGV4_OK or the reason, with *msg a static human message for the
 * error body (it never contains request bytes or secrets).
 */
sigv4_err sigv4_verify(const sigv4_request *rq, const sh_sigv4_conf *conf, int64_t now,
                       const char **msg);

#endif
