/*
 * What crosses the proxy, in both directions: which viewer headers reach the
 * origin, and which origin headers reach the viewer. Pure functions of the
 * request, so they are unit-tested on their own.
 */
#include "shield/forward.h"

#include <stdio.h>
#include <string.h>

#include "shield/alloc.h"

/* Headers CloudFront always forwards to S3 and custom origins: they change
 * what the origin returns for the same key. */
static const char *const always_forwarded[] = {
    "Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range",
};

/* Viewer headers that are never taken from forward_headers, because the proxy
 * sets them itself or they would let a viewer speak for Shield. */
static int never_forwarded(const char *n, size_t l)
{
    return sh_hdr_is(n, l, "Host") || sh_hdr_is(n, l, "Content-Length") ||
           sh_hdr_is(n, l, "Expect") || sh_hdr_is(n, l, "X-Forwarded-For") ||
           sh_hdr_is(n, l, "Via") || sh_hdr_is(n, l, "X-Request-Id");
}

const char *sh_forward_never_why(const char *name, size_t len)
{
    if (sh_hdr_is_hop_by_hop(name, len, NULL, 0)) return "a hop-by-hop header";
    if (never_forwarded(name, len)) return "written by Shield itself";
    return NULL;
}

static int is_listed(const sh_req *req, const char *n, size_t l)
{
    for (size_t i = 0; i < sizeof(always_forwarded) / sizeof(always_forwarded[0]); i++)
        if (sh_hdr_is(n, l, always_forwarded[i])) return 1;
    const sh_behavior_conf *b = req->behavior;
    for (size_t i = 0; b && i < b->nforward_headers; i++)
        if (sh_hdr_is(n, l, b->forward_headers[i])) return 1;
    return 0;
}

void sh_forward_request_headers(const sh_req *req, const char *node, sh_hdrlist *out)
{
    const sh_behavior_conf *b = req->behavior;
    int s3 = b && b->origin && b->origin->type == SH_ORIGIN_S3;
    const sh_header *conn = sh_hdr_find(req->headers, req->nheaders, "Connection");
    int have_ua = 0;

    for (size_t i = 0; i < req->nheaders; i++) {
        const sh_header *h = &req->headers[i];
        if (sh_hdr_is_hop_by_hop(h->name, h->name_len, conn ? conn->value : NULL,
                                 conn ? conn->value_len : 0) ||
            never_forwarded(h->name, h->name_len))
            continue;
        /* S3 authenticates Shield, not the viewer: viewer credentials would
         * either break the signature or leak to the bucket owner's logs. */
        int cred = sh_hdr_is(h->name, h->name_len, "Authorization") ||
                   sh_hdr_is(h->name, h->name_len, "Cookie");
        if (cred && s3) continue;
        int fwd = is_listed(req, h->name, h->name_len);
        if (!fwd && sh_hdr_is(h->name, h->name_len, "Cookie") && b && b->forward_cookies) fwd = 1;
        if (!fwd && req->body && sh_hdr_is(h->name, h->name_len, "Content-Type")) fwd = 1;
        if (!fwd) continue;
        if (sh_hdr_is(h->name, h->name_len, "User-Agent")) have_ua = 1;
        sh_hdrlist_add(out, h->name, h->name_len, h->value, h->value_len);
    }

    /* X-Forwarded-For: every value the viewer sent, then the socket peer, as
     * CloudFront does; which of them is the client is the identity module's
     * business (req->client_ip), not the origin's. */
    char xff[8192];
    size_t n = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const sh_header *h = &req->headers[i];
        if (!sh_hdr_is(h->name, h->name_len, "X-Forwarded-For") || h->value_len == 0) continue;
        if (n + h->value_len + 2 >= sizeof(xff) - 64) break;
        memcpy(xff + n, h->value, h->value_len);
        n += h->value_len;
        xff[n++] = ',';
        xff[n++] = ' ';
    }
    snprintf(xff + n, sizeof(xff) - n, "%s", req->peer_ip);
    sh_hdrlist_adds(out, "X-Forwarded-For", xff);

    char via[300];
    snprintf(via, sizeof(via), "1.1 %s (shield)", node);
    sh_hdrlist_adds(out, "Via", via);
    if (!have_ua) sh_hdrlist_adds(out, "User-Agent", "Shield/" SHIELD_VERSION);
    sh_hdrlist_adds(out, "X-Request-Id", req->request_id);
}

int64_t sh_parse_content_length(const char *v, size_t len)
{
    if (len == 0 || len > 18) return -1;
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

void sh_forward_response_headers(const sh_req *req, const sh_header *h, size_t n, sh_resp *resp)
{
    const sh_behavior_conf *b = req->behavior;
    const sh_header *conn = sh_hdr_find(h, n, "Connection");
    resp->content_length = -1;
    for (size_t i = 0; i < n; i++) {
        const char *name = h[i].name;
        size_t nl = h[i].name_len;
        if (sh_hdr_is(name, nl, "Content-Length")) {
            resp->content_length = sh_parse_content_length(h[i].value, h[i].value_len);
            continue;
        }
        if (sh_hdr_is_hop_by_hop(name, nl, conn ? conn->value : NULL, conn ? conn->value_len : 0))
            continue;
        /* The proxy answers for these itself. */
        if (sh_hdr_is(name, nl, "Date") || sh_hdr_is(name, nl, "Server") ||
            sh_hdr_is(name, nl, "Via") || sh_hdr_is(name, nl, "X-Cache") ||
            sh_hdr_is(name, nl, "X-Request-Id"))
            continue;
        /* Cookies not forwarded means the origin's cookies are not returned. */
        if (sh_hdr_is(name, nl, "Set-Cookie") && !(b && b->forward_cookies)) continue;
        sh_hdrlist_add(&resp->headers, name, nl, h[i].value, h[i].value_len);
    }
}

static int param_is(const char *p, size_t n, const char *name)
{
    size_t l = strlen(name);
    return n >= l && memcmp(p, name, l) == 0 && (n == l || p[l] == '=');
}

/* The two signing families. Only the family whose signature is present is
 * stripped: a presigned S3 URL may carry an own parameter named "Policy". */
static const char *const cf_params[] = {"Expires", "Policy", "Signature", "Key-Pair-Id",
                                        "Hash-Algorithm"};
static const char *const amz_params[] = {
    "X-Amz-Algorithm",     "X-Amz-Credential", "X-Amz-Date",          "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Signature",  "X-Amz-Security-Token"};

static int in_family(const char *p, size_t n, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (param_is(p, n, names[i])) return 1;
    return 0;
}

size_t sh_query_strip_signature(const char *q, size_t qlen, char *out)
{
    int cf = 0, amz = 0;
    for (size_t i = 0; i < qlen;) {
        size_t e = i;
        while (e < qlen && q[e] != '&')
            e++;
        cf |= param_is(q + i, e - i, "Signature");
        amz |= param_is(q + i, e - i, "X-Amz-Signature");
        i = e + 1;
    }
    if (!cf && !amz) {
        memcpy(out, q, qlen);
        return qlen;
    }
    size_t o = 0;
    for (size_t i = 0; i < qlen;) {
        size_t e = i;
        while (e < qlen && q[e] != '&')
            e++;
        int strip = (cf && in_family(q + i, e - i, cf_params, 5)) ||
                    (amz && in_family(q + i, e - i, amz_params, 7));
        if (!strip && e > i) {
            if (o) out[o++] = '&';
            memcpy(out + o, q + i, e - i);
            o += e - i;
        }
        i = e + 1;
    }
    return o;
}
