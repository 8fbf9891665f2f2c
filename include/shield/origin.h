/*
 * The origin client: libcurl's multi interface driven by a worker's event_base
 * (curl's hiperfifo pattern: CURLMOPT_SOCKETFUNCTION + CURLMOPT_TIMERFUNCTION
 * mapped onto libevent events; never curl_easy_perform on a worker).
 *
 * One origin_ctx per worker (its own CURLM, so origin connections are reused per
 * worker). A fetch streams: the response head is delivered once, then body bytes
 * as they arrive; the consumer applies backpressure by refusing bytes
 * (ORIGIN_BODY_PAUSE) and later calling origin_fetch_resume().
 *
 * Behaviour (SPEC.md "Origin timeouts"):
 *   - connect timeout and read timeout (first byte, and between any two body
 *     reads while not paused) from the origin config; a paused fetch never
 *     times out on read;
 *   - up to `attempts` tries, only for GET/HEAD and only while no response head
 *     has been delivered (connect failures, timeouts before the head, resets
 *     before the head);
 *   - s3 origins are signed with SigV4 (CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3",
 *     x-amz-content-sha256, x-amz-security-token when a session token is set),
 *     path-style (endpoint/bucket/key) or virtual-host (bucket.host/key);
 *   - http origins get the request as is (endpoint + path).
 */
#ifndef SHIELD_ORIGIN_H
#define SHIELD_ORIGIN_H

#include <stddef.h>

#include "shield/config.h"
#include "shield/http.h"

struct event_base;
struct sh_creds;

typedef struct origin_ctx origin_ctx;
typedef struct origin_fetch origin_fetch;

typedef enum {
    ORIGIN_OK = 0,
    ORIGIN_ERR_DNS,      /* name resolution failed             => 502 OriginDnsError */
    ORIGIN_ERR_CONNECT,  /* refused/unreachable after attempts => 502 OriginConnectError */
    ORIGIN_ERR_TIMEOUT,  /* connect or first-byte timeout      => 504 OriginCommError */
    ORIGIN_ERR_PROTOCOL, /* malformed response head            => 502 OriginInvalidResponseError */
    ORIGIN_ERR_READ,     /* after the head: truncated body, broken chunked encoding,
                            reset or read timeout              => abort the viewer connection */
    ORIGIN_ERR_CREDENTIALS, /* no usable credentials              => 502 OriginError */
    ORIGIN_ERR_INTERNAL,    /* anything else                      => 502 OriginError */
} origin_result;

/* Short name of a result ("connect", "timeout"...), for logs and metrics. */
const char *origin_result_name(origin_result r);

/* What to fetch. Everything is copied by origin_fetch_start(). */
typedef struct origin_request {
    const sh_origin_conf *origin;
    struct sh_creds *creds;   /* credentials provider for s3 origins with credentials != none */
    struct sh_snapshot *snap; /* what origin and creds belong to: the fetch holds a reference
                                 until it is freed (NULL = the caller guarantees lifetime) */
    const char *method;       /* "GET", "HEAD", ... */
    const char *path_query;   /* raw path + optional "?query", starts with '/', sent unchanged */
    size_t path_query_len;
    const sh_header *headers; /* already filtered by the core; never Host/Content-Length */
    size_t nheaders;
    const char *body; /* request body or NULL */
    size_t body_len;
} origin_request;

#define ORIGIN_BODY_OK    0
#define ORIGIN_BODY_PAUSE 1

typedef struct origin_callbacks {
    /* The final (non-1xx) response head. Arrays are valid only during the call.
     * Header names/values are exactly as received (no trailing CRLF). */
    void (*on_response)(void *ud, int status, const sh_header *headers, size_t n);
    /* Body bytes (decoded from chunked transfer coding, never content-decoded).
     * Return ORIGIN_BODY_OK having consumed all of them, or ORIGIN_BODY_PAUSE
     * having consumed none: they are delivered again after origin_fetch_resume(). */
    int (*on_body)(void *ud, const char *data, size_t len);
    /* Called exactly once, unless the fetch was cancelled. The fetch is freed
     * right after this returns: drop the pointer. detail is a human-readable
     * reason (curl's error text) for the error log, or NULL. */
    void (*on_done)(void *ud, origin_result r, const char *detail);
} origin_callbacks;

/*
 * curl_global_init, once per process (thread-safe, idempotent). origin_ctx_new()
 * and sh_creds_new() call it themselves; main may call it first to fail early.
 */
void origin_global_init(void);
/* curl_global_cleanup, after every origin_ctx and sh_creds is freed (at exit). */
void origin_global_cleanup(void);

/* Per-worker context. Returns NULL on failure. Must be freed on the thread that
 * runs base, and never from inside one of its fetches' callbacks. */
origin_ctx *origin_ctx_new(struct event_base *base);
/* Cancels every running fetch (no callbacks) and frees the context. */
void origin_ctx_free(origin_ctx *ctx);
/* Number of fetches in progress. */
size_t origin_ctx_active(const origin_ctx *ctx);

/*
 * Start a fetch. Never calls a callback before returning (errors found at start
 * are reported from the event loop). Returns NULL only on allocation failure
 * of curl handles.
 */
origin_fetch *origin_fetch_start(origin_ctx *ctx, const origin_request *req,
                                 const origin_callbacks *cb, void *ud);
/* Resume a paused fetch. Never calls a callback before returning. */
void origin_fetch_resume(origin_fetch *f);
/* Stop a fetch (viewer went away). No callback is called afterwards; f is freed. */
void origin_fetch_cancel(origin_fetch *f);

#endif
