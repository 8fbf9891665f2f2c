/*
 * CORS for behaviors with a `cors` group, answered the way S3's bucket CORS
 * configuration does:
 *
 *  - a preflight (OPTIONS with Origin and Access-Control-Request-Method) is
 *    answered here in PRECONTENT without contacting the origin: 200 with the
 *    Access-Control-Allow-* headers when the origin, the method and every
 *    requested header are allowed, else 403 "CORSResponse: This CORS request is
 *    not allowed" (detailed result CORSRequestNotAllowed);
 *  - any other response on such a behavior gets, in RESPONSE, `Vary: Origin`
 *    (merged with the origin's Vary) and, when the request's Origin and method
 *    are allowed, Access-Control-Allow-Origin (+ Expose-Headers, Allow-Credentials).
 *    Shield's policy replaces any Access-Control-* the origin sent.
 *
 * The RESPONSE hook runs per request on the request's own copy of the head,
 * so a cached object shared by many origins still gets each viewer's own
 * Access-Control-Allow-Origin.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shield/alloc.h"
#include "shield/module.h"

#define PREFLIGHT_VARY "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

/* Iterate the comma-separated, OWS-padded items of a header value or a
 * configured list: *pos advances; 0 when there are no more items. */
static int next_item(const char *s, size_t n, size_t *pos, const char **item, size_t *len)
{
    size_t i = *pos;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        size_t start = i;
        while (i < n && s[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
            end--;
        if (end > start) {
            *item = s + start;
            *len = end - start;
            *pos = i;
            return 1;
        }
    }
    *pos = n;
    return 0;
}

/* Is tok one of the items of list? Methods compare case-sensitively (RFC 9110
 * §9.1), header names without case. */
static int list_has(const char *list, const char *tok, size_t tlen, int icase)
{
    size_t pos = 0, len;
    const char *it;
    while (next_item(list, strlen(list), &pos, &it, &len))
        if (len == tlen && (icase ? strncasecmp(it, tok, len) : memcmp(it, tok, len)) == 0)
            return 1;
    return 0;
}

/* The request's Origin, only when it appears exactly once: two Origin headers
 * are no browser's doing and would make the answer ambiguous. */
static const sh_header *single_origin(const sh_req *req)
{
    const sh_header *o = sh_req_header(req, "Origin");
    if (!o || !o->value_len || sh_req_header_count(req, "Origin") != 1) return NULL;
    return o;
}

/*
 * Is the origin allowed? Entries are "*" (any origin), exact origins, or S3-style
 * patterns in which a star stands for any bytes (a wildcard host label). *any
 * is set when only "*" matched, so the answer may be the literal "*".
 */
static int origin_allowed(const sh_cors_conf *c, const char *o, size_t olen, int *any)
{
    int star = 0;
    for (size_t i = 0; i < c->nallow_origins; i++) {
        const char *e = c->allow_origins[i];
        if (strcmp(e, "*") == 0)
            star = 1;
        else if (sh_glob_match(e, strlen(e), o, olen)) {
            *any = 0;
            return 1;
        }
    }
    *any = star;
    return star;
}

static int is_preflight(const sh_req *req)
{
    return req->method_bit == SH_M_OPTIONS && sh_req_header(req, "Origin") &&
           sh_req_header(req, "Access-Control-Request-Method");
}

/* Every header named in Access-Control-Request-Headers is allowed. An empty
 * allow_headers means "echo whatever is asked", "*" allows anything. */
static int headers_allowed(const sh_req *req, const sh_cors_conf *c)
{
    if (!*c->allow_headers || list_has(c->allow_headers, "*", 1, 0)) return 1;
    for (size_t i = 0; i < req->nheaders; i++) {
        const sh_header *h = &req->headers[i];
        if (!sh_hdr_is(h->name, h->name_len, "Access-Control-Request-Headers")) continue;
        size_t pos = 0, len;
        const char *it;
        while (next_item(h->value, h->value_len, &pos, &it, &len))
            if (!list_has(c->allow_headers, it, len, 1)) return 0;
    }
    return 1;
}

/* All Access-Control-Request-Headers values joined with ", " (sh_malloc'd),
 * or NULL if the request has none. Values passed the parser's field-value
 * checks, so echoing them cannot split the response head. */
static char *requested_headers(const sh_req *req)
{
    size_t total = 0, n = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (sh_hdr_is(req->headers[i].name, req->headers[i].name_len,
                      "Access-Control-Request-Headers") &&
            req->headers[i].value_len)
            total += req->headers[i].value_len + 2, n++;
    if (!n) return NULL;
    char *out = sh_malloc(total + 1);
    size_t o = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const sh_header *h = &req->headers[i];
        if (!sh_hdr_is(h->name, h->name_len, "Access-Control-Request-Headers") || !h->value_len)
            continue;
        if (o) out[o++] = ',', out[o++] = ' ';
        memcpy(out + o, h->value, h->value_len);
        o += h->value_len;
    }
    out[o] = '\0';
    return out;
}

static void set_allow_origin(sh_hdrlist *hl, const sh_cors_conf *c, const sh_header *origin,
                             int any)
{
    if (any && !c->allow_credentials) {
        sh_hdrlist_set(hl, "Access-Control-Allow-Origin", "*");
    } else {
        sh_hdrlist_del(hl, "Access-Control-Allow-Origin");
        static const char acao[] = "Access-Control-Allow-Origin";
        sh_hdrlist_add(hl, acao, sizeof(acao) - 1, origin->value, origin->value_len);
    }
    if (c->allow_credentials) sh_hdrlist_set(hl, "Access-Control-Allow-Credentials", "true");
}

static sh_rc preflight_denied(sh_req *req)
{
    char body[512];
    snprintf(body, sizeof(body),
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessForbidden</Code>"
             "<Message>CORSResponse: This CORS request is not allowed. This is usually because "
             "the evaluation of Origin, request method / Access-Control-Request-Method or "
             "Access-Control-Request-Headers are not whitelisted by the resource's CORS "
             "spec.</Message><RequestId>%s</RequestId></Error>",
             req->request_id);
    req->detailed_result = "CORSRequestNotAllowed";
    sh_req_count(req, SH_CNT_CORS_PREFLIGHT);
    sh_req_respond(req, 403, "Vary", PREFLIGHT_VARY, "application/xml", body);
    return SH_RESPOND;
}

static sh_rc cors_precontent(sh_req *req, void *state)
{
    const sh_behavior_conf *b = req->behavior;
    if (!b || !b->cors.enabled || !is_preflight(req)) return SH_CONTINUE;
    const sh_cors_conf *c = &b->cors;
    const sh_header *origin = single_origin(req);
    const sh_header *acrm = sh_req_header(req, "Access-Control-Request-Method");
    int any = 0;

    if (!origin || !origin_allowed(c, origin->value, origin->value_len, &any) ||
        sh_req_header_count(req, "Access-Control-Request-Method") != 1 ||
        !list_has(c->allow_methods, acrm->value, acrm->value_len, 0) || !headers_allowed(req, c))
        return preflight_denied(req);

    /* Answered at the edge without the origin, like a hit. */
    req->result_type = "Hit";
    sh_req_respond(req, 200, NULL, NULL, "text/plain", "");
    sh_hdrlist *hl = &req->resp.headers;
    sh_hdrlist_del(hl, "Content-Type");
    set_allow_origin(hl, c, origin, any);
    sh_hdrlist_adds(hl, "Access-Control-Allow-Methods", c->allow_methods);
    char *echo = NULL;
    if (*c->allow_headers && !list_has(c->allow_headers, "*", 1, 0))
        sh_hdrlist_adds(hl, "Access-Control-Allow-Headers", c->allow_headers);
    else if ((echo = requested_headers(req)))
        sh_hdrlist_adds(hl, "Access-Control-Allow-Headers", echo);
    sh_free(echo);
    if (c->max_age >= 0) {
        char age[24];
        snprintf(age, sizeof(age), "%lld", (long long)c->max_age);
        sh_hdrlist_adds(hl, "Access-Control-Max-Age", age);
    }
    sh_hdrlist_adds(hl, "Vary", PREFLIGHT_VARY);
    sh_req_count(req, SH_CNT_CORS_PREFLIGHT);
    return SH_RESPOND;
}

/* Add tok to the response's Vary unless it (or "*") is already there; several
 * Vary lines are folded into one list (RFC 9110 §5.3 makes them equivalent). */
static void vary_add(sh_hdrlist *hl, const char *tok)
{
    size_t tl = strlen(tok), total = tl + 1, n = 0;
    for (size_t i = 0; i < hl->n; i++) {
        const sh_header *h = &hl->v[i];
        if (!sh_hdr_is(h->name, h->name_len, "Vary")) continue;
        size_t pos = 0, len;
        const char *it;
        while (next_item(h->value, h->value_len, &pos, &it, &len))
            if ((len == 1 && it[0] == '*') || (len == tl && strncasecmp(it, tok, len) == 0)) return;
        total += h->value_len + 2;
        n++;
    }
    if (!n) {
        sh_hdrlist_adds(hl, "Vary", tok);
        return;
    }
    char *v = sh_malloc(total);
    size_t o = 0;
    for (size_t i = 0; i < hl->n; i++) {
        const sh_header *h = &hl->v[i];
        if (!sh_hdr_is(h->name, h->name_len, "Vary") || !h->value_len) continue;
        memcpy(v + o, h->value, h->value_len);
        o += h->value_len;
        v[o++] = ',';
        v[o++] = ' ';
    }
    memcpy(v + o, tok, tl + 1);
    sh_hdrlist_set(hl, "Vary", v);
    sh_free(v);
}

static sh_rc cors_response(sh_req *req, void *state)
{
    const sh_behavior_conf *b = req->behavior;
    /* A preflight's head was built whole in PRECONTENT (or the request was
     * refused before it: no CORS headers on that either). */
    if (!b || !b->cors.enabled || is_preflight(req)) return SH_CONTINUE;
    const sh_cors_conf *c = &b->cors;
    sh_hdrlist *hl = &req->resp.headers;
    int any = 0;

    vary_add(hl, "Origin");
    sh_hdrlist_del(hl, "Access-Control-Allow-Origin");
    sh_hdrlist_del(hl, "Access-Control-Allow-Credentials");
    sh_hdrlist_del(hl, "Access-Control-Expose-Headers");
    const sh_header *origin = single_origin(req);
    if (!origin || !req->method || !list_has(c->allow_methods, req->method, req->method_len, 0) ||
        !origin_allowed(c, origin->value, origin->value_len, &any))
        return SH_CONTINUE;
    set_allow_origin(hl, c, origin, any);
    if (*c->expose_headers) sh_hdrlist_adds(hl, "Access-Control-Expose-Headers", c->expose_headers);
    return SH_CONTINUE;
}

const sh_module sh_module_cors = {
    .name = "cors",
    .phase = {[SH_PHASE_PRECONTENT] = cors_precontent, [SH_PHASE_RESPONSE] = cors_response},
};
