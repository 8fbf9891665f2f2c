/*
 * CloudFront signed URLs and signed cookies: everything that does not need a
 * connection, so it is unit-tested and fuzzed on its own (modules/cf_policy.c).
 * The AUTH-phase module (modules/signed_url.c) only gathers the inputs from the
 * request (the signing parameters, the URL the viewer asked for, the client
 * address, the clock) and turns a verdict into CloudFront's XML 403.
 *
 * Nothing here keeps state between calls: every request is checked on its own
 * against the wall clock it passes in (a signature that expires between two
 * Range requests rejects the second one).
 *
 * Allocation: sh_cf_policy_parse() and sh_cf_canned_policy() return sh_malloc'd
 * memory the caller frees (sh_cf_policy_free(), sh_free()); nothing else
 * allocates beyond the duration of the call.
 */
#ifndef SHIELD_CF_POLICY_H
#define SHIELD_CF_POLICY_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "shield/config.h"
#include "shield/http.h"

/* The verdicts, one per CloudFront error code (SPEC "Signed URLs and cookies"). */
typedef enum {
    SH_CF_OK = 0,
    SH_CF_MISSING_KEY,         /* no Key-Pair-Id (or no signing parameter at all) */
    SH_CF_INVALID_KEY,         /* Key-Pair-Id names no configured key */
    SH_CF_MALFORMED_SIGNATURE, /* Signature absent, empty or not CloudFront base64 */
    SH_CF_MALFORMED_POLICY,    /* Policy absent (and no Expires), undecodable or invalid */
    SH_CF_ACCESS_DENIED,       /* everything else: bad signature, expired, IP, resource... */
} sh_cf_result;

/* The XML <Code> ("AccessDenied") and <Message> ("Access denied") of a verdict. */
const char *sh_cf_result_code(sh_cf_result r);
const char *sh_cf_result_message(sh_cf_result r);

/*
 * Decode CloudFront's URL-safe base64 (standard base64 with '+' -> '-', '=' -> '_',
 * '/' -> '~'). Strict: only that alphabet, length a multiple of 4, padding only
 * at the end, unused bits zero — so one signature has exactly one spelling.
 * out must hold len / 4 * 3 bytes. 0 and *outlen, or -1.
 */
int sh_cf_b64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen);

/* A parsed custom policy (one statement). */
typedef struct sh_cf_policy {
    char *resource;      /* JSON-decoded Resource pattern, sh_malloc'd; NULL = absent (any URL) */
    size_t resource_len; /* well-formed UTF-8 without NUL */
    int64_t date_less_than;    /* DateLessThan AWS:EpochTime (required) */
    int64_t date_greater_than; /* DateGreaterThan AWS:EpochTime, -1 = absent */
    int has_ip;                /* IpAddress present */
    sh_cidr ip;                /* its AWS:SourceIp, one IPv4 address or CIDR */
} sh_cf_policy;

/*
 * Parse a custom policy. The reader is deliberately narrow: exactly the shape
 * CloudFront documents — {"Statement": [ {stmt} ]} or {"Statement": {stmt}},
 * stmt = {"Resource"?: "...", "Condition": {"DateLessThan": {"AWS:EpochTime": N},
 * "DateGreaterThan"?: {...}, "IpAddress"?: {"AWS:SourceIp": "a.b.c.d/n"}}} —
 * with JSON whitespace anywhere. Rejected: unknown or duplicate keys, more or
 * fewer than one statement, Resource not starting with http://, https:// or *://,
 * numbers that are negative, fractional, exponent-form or beyond year 9999,
 * invalid string escapes, raw control bytes, invalid UTF-8, \u0000, IPv6 or
 * malformed ranges, and anything after the closing brace. The grammar is fixed,
 * so nesting is bounded by construction (depth 4). 0 (fill *out) or -1.
 */
int sh_cf_policy_parse(const char *json, size_t len, sh_cf_policy *out);
void sh_cf_policy_free(sh_cf_policy *p);

/*
 * Does url match a Resource pattern? '*' matches 0+ bytes, '?' exactly one,
 * "\?" a literal '?'; everything else is compared byte for byte (case-sensitive).
 * Worst case O(len(pat) * len(url)); it only ever runs on a pattern whose
 * signature has already been verified.
 */
int sh_cf_resource_match(const char *pat, size_t plen, const char *url, size_t ulen);

/*
 * The canned policy CloudFront signs for url and an Expires value, byte for byte:
 * {"Statement":[{"Resource":"<url>","Condition":{"DateLessThan":{"AWS:EpochTime":<expires>}}}]}
 * url is JSON-escaped the way AWS's signers (botocore, json.dumps) write it:
 * '"' and '\' and control bytes are escaped, everything else is copied.
 * Returns an sh_malloc'd NUL-terminated string, its length in *outlen.
 */
char *sh_cf_canned_policy(const char *url, size_t ulen, const char *expires, size_t elen,
                          size_t *outlen);

/*
 * Verify a CloudFront signature over msg with an RSA (PKCS#1 v1.5) or ECDSA
 * P-256 (DER) public key, hashing with SHA-256 when sha256 is set, else SHA-1.
 * 1 = valid, 0 = not (any OpenSSL error counts as not valid and is cleared).
 */
int sh_cf_verify(EVP_PKEY *pkey, int sha256, const uint8_t *msg, size_t mlen, const uint8_t *sig,
                 size_t slen);

/* The signing parameters, as query parameters or CloudFront-* cookies. */
enum {
    SH_CF_P_EXPIRES,
    SH_CF_P_POLICY,
    SH_CF_P_SIGNATURE,
    SH_CF_P_KEY_PAIR_ID,
    SH_CF_P_HASH_ALGORITHM,
    SH_CF_NPARAMS
};

/* Raw (still percent-encoded) values, pointing into the caller's buffers. */
typedef struct sh_cf_params {
    const char *v[SH_CF_NPARAMS]; /* NULL = absent */
    size_t len[SH_CF_NPARAMS];
    int any;       /* at least one of Expires/Policy/Signature/Key-Pair-Id (cookie: any of the 5) */
    int duplicate; /* a signing parameter appeared more than once */
    int trailing;  /* query only: something (even an empty "&&") follows the signing ones */
    /* query only: the viewer's own query the signer saw, query[0, own_len), and
     * whether the signed URL had a '?' before it (own_len can be 0 with a '?': "p?&Expires=") */
    size_t own_len;
    int own_qmark;
} sh_cf_params;

/*
 * Find the signing parameters of a query (the bytes after '?'). A query is a
 * signed URL when it carries Expires, Policy, Signature or Key-Pair-Id (names
 * are case-sensitive; "Name" or "Name=value"). The signer appends its
 * parameters to the URL, so they must form one trailing block: the first
 * signing parameter starts the block and every later parameter must be a
 * signing one too (Hash-Algorithm included), else ->trailing is set.
 * Returns out->any.
 */
int sh_cf_params_from_query(const char *q, size_t qlen, sh_cf_params *out);

/*
 * Find CloudFront-Expires/-Policy/-Signature/-Key-Pair-Id/-Hash-Algorithm in
 * every Cookie header of the request (split on ';', optional whitespace and
 * double quotes around the value removed). Returns out->any.
 */
int sh_cf_params_from_cookies(const sh_header *h, size_t n, sh_cf_params *out);

/*
 * The whole verdict for one request: params found above, url = the resource
 * the viewer asked for (scheme://host/path[?own query]), ip = the client in
 * 16-byte form, now = wall clock (seconds). keys are the configured key groups.
 * *why (optional) gets a short static reason for the error log ("expired").
 * Order: missing/duplicate/misplaced parameters, key, signature encoding,
 * policy encoding and shape, signature, then the policy's conditions.
 */
sh_cf_result sh_cf_check(const sh_cf_params *p, const char *url, size_t ulen, const uint8_t ip[16],
                         int64_t now, const sh_cf_key_conf *keys, size_t nkeys, const char **why);

#endif
