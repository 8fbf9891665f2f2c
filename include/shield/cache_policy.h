/*
 * HTTP caching rules as pure functions (proxy/cache/policy.c).
 *
 * Everything here is a function of its arguments: no I/O, no globals, no clock
 * (the current time is always the `now` parameter, seconds since the epoch).
 * The cache engine calls these at three moments:
 *
 *   store time   cache_policy_eval() decides whether an origin response may be
 *                stored and for how long, and extracts the validators;
 *   lookup time  cache_freshness_at() says whether the stored object is fresh,
 *                servable while a background refresh runs, or must be
 *                revalidated; cache_age() gives the Age header to send;
 *   serve time   cache_eval_conditionals(), cache_if_range_ok() and
 *                cache_parse_range() turn the viewer's conditional and Range
 *                headers into 304 / 412 / 206 / 416 / 200.
 *
 * The rules are CloudFront's (shared SPEC.md "Cache behaviour") where it has
 * one, RFC 9110 / RFC 9111 otherwise. Header values are counted byte strings;
 * none of these functions needs NUL termination or allocates.
 */
#ifndef SHIELD_CACHE_POLICY_H
#define SHIELD_CACHE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "shield/config.h"
#include "shield/http.h"

/* Error responses are cached at least this long (CloudFront's default
 * "Error Caching Minimum TTL"), whatever the origin says. */
#define CACHE_ERROR_MIN_TTL 10

/* Largest delta-seconds value kept (RFC 9111 §1.2.2): bigger values, however
 * many digits, become this, so arithmetic on TTLs never overflows. */
#define CACHE_DELTA_MAX 2147483648LL

/* ---- HTTP dates ---------------------------------------------------------- */

/*
 * Parse an HTTP-date (RFC 9110 §5.6.7) in any of its three forms:
 *   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
 *   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"
 *   asctime      "Sun Nov  6 08:49:37 1994"
 * Names are case-sensitive as the grammar says; leading/trailing spaces and
 * tabs are ignored. The day name must be a real one but is not checked
 * against the date (RFC 9110 lets recipients ignore it). RFC 850 two-digit
 * years 70-99 are 19xx and 00-69 are 20xx (a fixed pivot instead of "50 years
 * from now" keeps this function clock-free). Years before 1970 are rejected so
 * that -1 remains an unambiguous "absent" value for the callers.
 * Returns 0 and stores seconds since the epoch in *out, or -1 (out untouched).
 */
int sh_http_parse_date(const char *s, size_t len, int64_t *out);

/* ---- Cache-Control ------------------------------------------------------- */

/*
 * The Cache-Control directives a shared cache acts on. Numeric fields are -1
 * when the directive is absent or its value is not a valid delta-seconds
 * (an invalid number is treated as if the directive were not there, so
 * "max-age=abc" falls through to Expires / DefaultTTL rather than making the
 * response uncacheable). When a directive appears more than once, across one
 * or several Cache-Control fields, the first valid occurrence wins: this is
 * deterministic and matches what most caches do with conflicting values.
 */
typedef struct cache_control {
    int64_t max_age;                /* max-age=N, seconds; -1 absent */
    int64_t s_maxage;               /* s-maxage=N: overrides max-age for shared caches; -1 absent */
    int64_t stale_while_revalidate; /* stale-while-revalidate=N (RFC 5861); -1 absent */
    int64_t stale_if_error;         /* stale-if-error=N (RFC 5861); -1 absent */
    unsigned no_cache : 1; /* no-cache, also no-cache="field,...": we cannot store a response
                              minus some fields, so the qualified form counts as plain no-cache */
    unsigned no_store : 1; /* no-store */
    unsigned private_ : 1; /* private, with or without field names (same reason as no_cache) */
    unsigned public_ : 1;  /* public: allows sharing a response to an authorized request */
    unsigned must_revalidate : 1;  /* must-revalidate: never serve stale */
    unsigned proxy_revalidate : 1; /* proxy-revalidate: must-revalidate for shared caches */
    unsigned immutable : 1;        /* immutable (RFC 8246): informational for the engine */
} cache_control;

/* Set every numeric field to -1 and every flag to 0 (nothing seen yet). */
void cache_control_init(cache_control *cc);

/*
 * Add the directives of one Cache-Control field value to cc (call
 * cache_control_init() first). Directive names are case-insensitive; values
 * may be tokens or quoted strings ("max-age=\"60\"" is tolerated); unknown
 * directives and malformed list elements are skipped without affecting the
 * others.
 */
void cache_control_parse(const char *v, size_t len, cache_control *cc);

/* Initialise cc and combine every Cache-Control field in h[0..n) in order. */
void cache_control_from_headers(const sh_header *h, size_t n, cache_control *cc);

/* ---- Storing a response --------------------------------------------------- */

/*
 * The verdict on one origin response, computed once at store time.
 * Pointers (reason, etag) stay valid as long as the static strings and the
 * response headers they point into.
 */
typedef struct cache_policy {
    int cacheable;      /* 1: may be stored and shared; 0: pass it through only */
    const char *reason; /* why not cacheable (static string for logs); NULL when cacheable */
    int64_t ttl;        /* freshness lifetime in seconds (0 = store but revalidate on every use) */
    int64_t stale_while_revalidate; /* seconds after expiry it may be served while a background
                                       refresh runs; 0 if absent (or must_revalidate) */
    int64_t stale_if_error; /* seconds after expiry the origin allows serving it when a refresh
                               fails; 0 if absent (see cache_stale_if_error_ok) */
    int must_revalidate;    /* must-revalidate, proxy-revalidate or no-cache: never serve stale,
                               neither while revalidating nor when the origin fails */
    int vary_unforwarded;   /* Vary names a header that is neither Accept-Encoding nor in
                               b->forward_headers. The cache key only varies on forwarded
                               headers, so one stored variant would be served to viewers the
                               origin meant to see another one: the engine should not store it.
                               Reported rather than folded into cacheable so the engine can log
                               and count it separately. */
    int is_error;           /* the status is one of the cached 4xx/5xx (error caching rules) */
    const char *etag;       /* ETag value as sent (quotes and W/ included), NULL if absent */
    size_t etag_len;        /* length of etag */
    int64_t last_modified;  /* Last-Modified as epoch seconds; -1 if absent or invalid */
    int64_t date;           /* origin Date as epoch seconds; -1 if absent or invalid */
    int64_t initial_age;    /* origin Age header (cache_parse_age), 0 if absent */
    cache_control cc;       /* the parsed Cache-Control, for anything else the engine needs */
} cache_policy;

/*
 * Decide whether a response with this status and these headers may be cached
 * under behavior b, and for how long. request_had_authorization: the viewer
 * request carried Authorization. Always fills every field of *out.
 *
 * Rules, in order (CloudFront's where SPEC.md states them):
 *  - Status: 200, 203, 300, 301, 410 use the normal TTL rules below. Errors
 *    404, 414, 500, 501, 502, 503, 504 are always cached; 400, 403, 405, 412,
 *    415 only when the origin sent max-age or s-maxage. Every other status
 *    (206, 302, 304, 307, ...) is never cached.
 *  - "Vary: *" is never cached. Other Vary values are allowed; see
 *    vary_unforwarded.
 *  - A response to a request with Authorization is cached only when it says
 *    public, s-maxage or must-revalidate (RFC 9111 §3.5).
 *  - Normal statuses: no-store, private or no-cache make the response
 *    uncacheable when b->min_ttl is 0; when min_ttl > 0 it is cached for
 *    min_ttl. That mirrors CloudFront, where MinTTL overrides the origin's
 *    directives: a behavior with MinTTL > 0 has chosen to cache regardless.
 *    Otherwise the lifetime is s-maxage (wins for a shared cache), else
 *    max-age, else Expires minus Date (minus now when Date is absent; an
 *    invalid Expires means already expired, TTL 0), else default_ttl; the
 *    result is clamped to [min_ttl, max_ttl] (so default_ttl is at least
 *    min_ttl).
 *  - Errors: TTL = max(CACHE_ERROR_MIN_TTL, s-maxage / max-age / Expires
 *    capped at max_ttl); behavior min_ttl does not apply (CloudFront has a
 *    separate Error Caching Minimum TTL). As CloudFront documents, no-store,
 *    no-cache or private prevent caching 404, 414 and 501 and are ignored
 *    for the other error statuses (a 503 is cached 10 s regardless, which is
 *    what shields the origin).
 * s-maxage does not imply proxy-revalidate here (RFC 9111 §5.2.2.10 says it
 * does): CloudFront serves an expired object when the refresh fails unless
 * told must-revalidate, and Shield reproduces CloudFront.
 */
void cache_policy_eval(const sh_behavior_conf *b, int status, const sh_header *resp_headers,
                       size_t n, int request_had_authorization, int64_t now, cache_policy *out);

/* ---- Age and freshness ---------------------------------------------------- */

/*
 * The origin's Age header (RFC 9111 §5.1) in seconds: the first Age field,
 * delta-seconds capped at CACHE_DELTA_MAX; 0 when absent or invalid.
 */
int64_t cache_parse_age(const sh_header *h, size_t n);

/*
 * Current age of a stored object (RFC 9111 §4.2.3, simplified: the origin's
 * Date is not used to correct for clock skew, the origin's Age is simply
 * added): max(0, now - stored_at) + max(0, origin_age_header).
 */
int64_t cache_age(int64_t stored_at, int64_t origin_age_header, int64_t now);

/*
 * What the engine keeps with a stored object to decide freshness later; all
 * of it survives a restart as plain integers.
 */
typedef struct cache_fresh_info {
    int64_t stored_at;   /* epoch seconds when the response was received (or last refreshed) */
    int64_t initial_age; /* origin Age header at that moment (cache_policy.initial_age) */
    int64_t ttl;         /* freshness lifetime (cache_policy.ttl) */
    int64_t swr;         /* stale-while-revalidate window after expiry, 0 = none */
    int64_t sie;         /* stale-if-error window after expiry, 0 = absent (no limit) */
    int must_revalidate; /* never serve stale (cache_policy.must_revalidate) */
} cache_fresh_info;

/* Fill f from a policy computed for a response received at stored_at. */
void cache_fresh_info_init(cache_fresh_info *f, const cache_policy *p, int64_t stored_at);

typedef enum cache_freshness {
    CACHE_FRESH,                           /* age < ttl: serve it */
    CACHE_STALE_SERVABLE_WHILE_REVALIDATE, /* expired but within stale-while-revalidate: serve
                                              it and refresh in the background */
    CACHE_STALE_MUST_REVALIDATE,           /* expired: revalidate (or refetch) before serving */
} cache_freshness;

/*
 * Freshness of a stored object at now: age (cache_age) < ttl is FRESH; an
 * expired object within swr seconds of expiry and without must_revalidate is
 * STALE_SERVABLE_WHILE_REVALIDATE; anything else STALE_MUST_REVALIDATE.
 * ttl 0 is therefore never fresh.
 */
cache_freshness cache_freshness_at(const cache_fresh_info *f, int64_t now);

/*
 * After a refresh of an expired object failed (origin 5xx, timeout, reset),
 * may the stale copy be served at now? CloudFront serves it; Shield does too
 * unless must_revalidate (the origin asked never to get stale content). When
 * the origin sent stale-if-error=N, it set an upper bound: allowed only up to
 * N seconds after expiry. Without it (sie 0) there is no bound, as in
 * CloudFront. Returns 1 when allowed (also for an object that is still fresh).
 */
int cache_stale_if_error_ok(const cache_fresh_info *f, int64_t now);

/* ---- Range requests ------------------------------------------------------ */

/* One satisfiable byte range, inclusive on both ends: [start, end], end < size. */
typedef struct cache_range {
    int64_t start;
    int64_t end;
} cache_range;

typedef enum cache_range_rc {
    CACHE_RANGE_NONE,          /* ignore Range, serve the full 200 */
    CACHE_RANGE_OK,            /* serve 206 with out[0..*n) */
    CACHE_RANGE_UNSATISFIABLE, /* serve 416; its Content-Range gives only the size */
} cache_range_rc;

/*
 * Interpret a Range header value v (NULL or len 0 = no header) against an
 * object of size bytes, writing at most max ranges into out and their count
 * into *n (0 unless CACHE_RANGE_OK).
 *
 * CACHE_RANGE_NONE, as CloudFront (which answers 200 with the whole body):
 * no header, a unit other than "bytes" (compared case-insensitively), no
 * range at all ("bytes="), any malformed element ("a-b", "-", "5-3"
 * descending, numbers longer than 18 digits), more than max elements, or
 * satisfiable ranges that overlap or are not in ascending order (a
 * multi-range 206 would otherwise let a tiny request fan out into a huge
 * response).
 * CACHE_RANGE_UNSATISFIABLE: every element starts at or past size, or is the
 * empty suffix "-0"; on a zero-size object every range is unsatisfiable.
 * CACHE_RANGE_OK otherwise: "0-8" first nine bytes, "-10" the last ten (or
 * the whole object if shorter), "990-" to the end, an end past size-1 is
 * clamped; unsatisfiable elements among satisfiable ones are dropped (RFC
 * 9110 §14.1.1). Spaces and tabs around elements and commas are tolerated;
 * empty list elements are skipped.
 */
cache_range_rc cache_parse_range(const char *v, size_t len, int64_t size, cache_range *out,
                                 size_t max, size_t *n);

/* ---- Conditional requests -------------------------------------------------- */

typedef enum cache_cond {
    CACHE_COND_NONE, /* no precondition applies: continue (Range, then 200/206) */
    CACHE_COND_304,  /* answer 304 Not Modified */
    CACHE_COND_412,  /* answer 412 Precondition Failed */
} cache_cond;

/*
 * Evaluate the viewer's preconditions against a cached object (RFC 9110
 * §13.2.2), in this order:
 *  1. If-Match present: no strong match in any of its fields => 412 ("*"
 *     matches, the object exists). Otherwise, If-Unmodified-Since with a
 *     valid date and the object modified after it => 412 (skipped when the
 *     object has no Last-Modified, the condition cannot be evaluated).
 *  2. If-None-Match present: a weak match (or "*") => 304 for GET/HEAD, 412
 *     for other methods; no match => NONE, and If-Modified-Since is ignored.
 *     Otherwise, for GET/HEAD, If-Modified-Since with a valid date and
 *     last_modified <= that date => 304 (an invalid date is ignored; a date
 *     in the future is not detected because this function has no clock).
 * etag: the stored ETag as the origin sent it (NULL if none); last_modified:
 * epoch seconds or -1.
 */
cache_cond cache_eval_conditionals(const sh_header *req, size_t n, const char *etag,
                                   size_t etag_len, int64_t last_modified, int is_get_or_head);

/*
 * If-Range (RFC 9110 §13.1.5): 1 when the Range header should be honoured,
 * 0 when the full 200 must be served instead. An entity-tag honours the
 * range only on a strong match (a weak tag on either side never matches); an
 * HTTP-date only when exactly equal to last_modified. Anything else
 * (malformed, no validator stored) => 0, which is always safe.
 */
int cache_if_range_ok(const char *v, size_t len, const char *etag, size_t etag_len,
                      int64_t last_modified);

/* ---- ETags ----------------------------------------------------------------- */

/*
 * Is etag a strong ETag of exactly 32 hex digits in quotes ("9e107d9d...")?
 * That is what S3 sends for single-part uploads: the MD5 of the body, which
 * the engine can verify. Multipart ETags ("...-12"), weak ETags and anything
 * else return 0. On 1, the 16 bytes are stored in md5 (if not NULL).
 */
int cache_etag_is_plain_md5(const char *etag, size_t len, unsigned char md5[16]);

#endif
