/*
 * Header policy between viewer and origin (proxy/forward.c).
 *
 * To the origin: Range and the conditional headers always; the behavior's
 * forward_headers; Cookie only when the behavior forwards cookies and never to
 * an s3 origin, likewise Authorization; Content-Type with a body; never
 * hop-by-hop headers (including those named in Connection), Host,
 * Content-Length or Expect. Shield adds X-Forwarded-For (viewer's values,
 * then the client address), Via, User-Agent (unless forwarded) and X-Request-Id.
 *
 * To the viewer: everything the origin sent except hop-by-hop headers,
 * Content-Length (returned in resp->content_length), Date/Server/Via/X-Cache/
 * X-Request-Id (Shield sets its own) and Set-Cookie unless cookies are forwarded.
 */
#ifndef SHIELD_FORWARD_H
#define SHIELD_FORWARD_H

#include <stdint.h>

#include "shield/http.h"
#include "shield/module.h"

/*
 * Why a viewer header never reaches the origin whatever a behavior lists in
 * forward_headers: "a hop-by-hop header", "written by Shield itself" (Host,
 * Content-Length, Expect, X-Forwarded-For, Via, X-Request-Id), or NULL if it
 * can be forwarded. The config loader refuses the former in forward_headers.
 */
const char *sh_forward_never_why(const char *name, size_t len);

/* Append the origin request headers for req to out. node = the node name for Via. */
void sh_forward_request_headers(const sh_req *req, const char *node, sh_hdrlist *out);

/* Fill resp->headers / resp->content_length from an origin response head. */
void sh_forward_response_headers(const sh_req *req, const sh_header *h, size_t n, sh_resp *resp);

/*
 * The query without signing parameters, for the cache key and the origin:
 * when a request is signed (it carries CloudFront's Signature or SigV4's
 * X-Amz-Signature), CloudFront's Expires/Policy/Signature/Key-Pair-Id/
 * Hash-Algorithm and SigV4's X-Amz-* query parameters are dropped; an unsigned
 * query is returned unchanged (an application's own "Expires" stays). Writes
 * at most qlen bytes to out; returns the length written.
 */
size_t sh_query_strip_signature(const char *q, size_t qlen, char *out);

/* Strict Content-Length value: 1-18 digits, nothing else. -1 if invalid. */
int64_t sh_parse_content_length(const char *v, size_t len);

#endif
