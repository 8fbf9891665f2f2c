/*
 * CloudFront signed URLs and signed cookies (AUTH phase), for behaviors with
 * signed = "cloudfront". The verdict itself is modules/cf_policy.c; this file
 * only collects what the viewer sent and answers CloudFront's XML 403.
 *
 * It runs before the content step, so a cached object is never served to a
 * request whose signature does not hold right now; nothing about a signature
 * is remembered between requests.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "shield/alloc.h"
#include "shield/cf_policy.h"
#include "shield/log.h"
#include "shield/module.h"

/*
 * The resource the viewer signed: scheme://Host/path[?own query]. For a
 * signed URL the own query is what precedes the signing parameters (the signer
 * appended them to the URL it was given); for cookies it is the whole query.
 * Host is taken as sent, so a URL signed for "host:port" needs that Host.
 */
static char *resource_url(const sh_req *req, const sh_cf_params *p, int url_signed, size_t *len)
{
    const char *scheme = req->tls ? "https://" : "http://";
    size_t sl = strlen(scheme), o = 0;
    char *u = sh_malloc(sl + req->host_len + req->path_len + req->query_len + 2);

    memcpy(u, scheme, sl);
    o = sl;
    if (req->host_len) { /* HTTP/1.0 may come without a Host */
        memcpy(u + o, req->host, req->host_len);
        o += req->host_len;
    }
    memcpy(u + o, req->path, req->path_len);
    o += req->path_len;
    if (url_signed ? p->own_qmark : req->query != NULL) {
        size_t ql = url_signed ? p->own_len : req->query_len;
        u[o++] = '?';
        if (ql) memcpy(u + o, req->query, ql);
        o += ql;
    }
    u[o] = '\0';
    *len = o;
    return u;
}

static sh_rc signed_url_auth(sh_req *req, void *state)
{
    const sh_config *cfg = req->cfg;
    sh_cf_params p;
    const char *why = NULL;
    size_t ulen;

    (void)state;
    if (!req->behavior || req->behavior->signed_mode != SH_SIGNED_CLOUDFRONT) return SH_CONTINUE;

    /* A signed URL takes precedence: cookies are not even looked at then. */
    int url_signed = sh_cf_params_from_query(req->query, req->query_len, &p);
    if (!url_signed) sh_cf_params_from_cookies(req->headers, req->nheaders, &p);

    char *url = resource_url(req, &p, url_signed, &ulen);
    sh_cf_result r = sh_cf_check(&p, url, ulen, req->client_addr, (int64_t)time(NULL),
                                 cfg->signed_urls.keys, cfg->signed_urls.nkeys, &why);
    sh_free(url);
    if (r == SH_CF_OK) {
        req->auth_verified = 1;
        return SH_CONTINUE;
    }

    char body[256];
    snprintf(body, sizeof body,
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code>"
             "<Message>%s</Message></Error>",
             sh_cf_result_code(r), sh_cf_result_message(r));
    sh_log(SH_LOG_DEBUG, "signed_url: %s %s: %s (request %s)", url_signed ? "URL" : "cookies",
           sh_cf_result_code(r), why ? why : "?", req->request_id);
    /* The detailed result carries the XML code (CloudFront itself logs "Error"
     * there): an operator reading the log can tell an expiry from a forgery. */
    req->detailed_result = sh_cf_result_code(r);
    sh_req_count(req, SH_CNT_AUTH_FAILED);
    return sh_req_respond(req, 403, NULL, NULL, "text/xml", body);
}

const sh_module sh_module_signed_url = {
    .name = "signed_url",
    .phase = {[SH_PHASE_AUTH] = signed_url_auth},
};
