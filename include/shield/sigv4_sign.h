/*
 * AWS Signature Version 4 (header auth) on OpenSSL primitives: the canonical
 * request, the signing key chain and the Authorization header.
 *
 * Used by the origin client to sign S3 requests (curl 7.88's CURLOPT_AWS_SIGV4
 * gets the canonical query and removed headers wrong, see proxy/origin.c), and
 * meant to be shared by the SigV4 verifier so that both sides canonicalise the
 * same way.
 *
 * Canonicalisation follows the AWS rules (which botocore implements the same
 * way for every correctly percent-encoded request):
 *   - URI: the raw path as sent; each byte of it is percent-decoded once if it
 *     is a valid %XX escape and re-encoded with UriEncode (unreserved bytes
 *     A-Z a-z 0-9 - _ . ~ and '/' literal, everything else %XY uppercase). S3
 *     paths are never normalised ("/../", "//" kept) nor double-encoded.
 *   - query: split on '&', each name and value decoded then UriEncoded ('/'
 *     encoded too), "a" becomes "a=", empty pairs dropped, sorted by name then
 *     value. A literal '+' is a '+' (%2B), not a space, as S3 reads it.
 *   - headers: lowercased names, sorted; values trimmed and inner whitespace
 *     runs collapsed to one space; repeated names joined with ','.
 */
#ifndef SHIELD_SIGV4_SIGN_H
#define SHIELD_SIGV4_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "shield/http.h"

/* Hex SHA-256 of the empty string: x-amz-content-sha256 of a body-less request. */
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* Payload hash for requests whose body is not hashed (presigned URLs). */
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

/* What is signed. Pointers are borrowed for the duration of the call. */
typedef struct sigv4_input {
    const char *method; /* "GET" (as sent, upper case) */
    const char *path;   /* raw path as sent, without the query; "" means "/" */
    size_t path_len;
    const char *query; /* raw query without the '?', or NULL / "" */
    size_t query_len;
    const sh_header *headers; /* exactly the headers to sign; must include host */
    size_t nheaders;
    const char *payload_hash; /* 64 lower-case hex digits or SIGV4_UNSIGNED_PAYLOAD */
} sigv4_input;

/* Hex (lower case) SHA-256 of data into out[65] (NUL-terminated). */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);

/* t (epoch seconds) as the x-amz-date form "YYYYMMDDTHHMMSSZ" into out[17]. */
void sigv4_amz_date(int64_t t, char out[17]);

/* Canonical URI of a raw path (see above). Returns a NUL-terminated sh_malloc'd string. */
char *sigv4_canonical_uri(const char *path, size_t len);

/*
 * Canonical query string of a raw query (without '?'). Parameters named skip
 * (exact, after decoding; e.g. "X-Amz-Signature" when verifying a presigned
 * URL) are left out; skip may be NULL. Returns a sh_malloc'd string ("" if empty).
 */
char *sigv4_canonical_query(const char *query, size_t len, const char *skip);

/*
 * The canonical request. If signed_headers is not NULL it receives the
 * SignedHeaders list ("host;range;x-amz-date", sh_malloc'd). Returns a
 * sh_malloc'd string.
 */
char *sigv4_canonical_request(const sigv4_input *in, const char *skip_query, char **signed_headers);

/* Signing key: HMAC chain "AWS4"+secret -> date8 ("20130524") -> region -> service ->
 * "aws4_request". */
void sigv4_signing_key(const char *secret, const char *date8, const char *region,
                       const char *service, unsigned char key[32]);

/*
 * Hex signature of a canonical request: HMAC(key, "AWS4-HMAC-SHA256\n" amz_date "\n"
 * scope "\n" hex(sha256(creq))). scope is "20130524/us-east-1/s3/aws4_request".
 */
void sigv4_signature(const unsigned char key[32], const char *amz_date, const char *scope,
                     const char *creq, char out[65]);

/*
 * Sign a request: returns the Authorization header value
 * ("AWS4-HMAC-SHA256 Credential=AK/date/region/service/aws4_request,
 * SignedHeaders=..., Signature=..."), sh_malloc'd. amz_date is the x-amz-date
 * value, which must also be one of in->headers.
 */
char *sigv4_authorization(const sigv4_input *in, const char *access_key, const char *secret_key,
                          const char *region, const char *service, const char *amz_date);

/* Shared with the verifier (modules/sigv4_verify.c), so both sides
 * canonicalise with the same code. */
struct sbuf;
/* Value of a hex digit, -1 if c is not one. */
int sigv4_hexval(unsigned char c);
/* RFC 3986 unreserved: A-Z a-z 0-9 - . _ ~ */
int sigv4_unreserved(unsigned char c);
/* AWS Trimall: strip both ends, fold inner whitespace runs into one space. */
void sigv4_add_trimmed(struct sbuf *b, const char *v, size_t n);

#endif
