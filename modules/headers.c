/*
 * Response headers policy: the security headers of the seed deployment, set
 * per behavior (the global response_headers merged with the behavior's
 * override at config load). HSTS is only meaningful over TLS, and browsers
 * ignore it on plain HTTP, so it is only sent there.
 */
#include <string.h>

#include "shield/module.h"

static void put(sh_resp *resp, const char *name, const char *value, int override)
{
    if (!value || !*value) return;
    if (override)
        sh_hdrlist_set(&resp->headers, name, value);
    else if (!sh_hdrlist_get(&resp->headers, name))
        sh_hdrlist_adds(&resp->headers, name, value);
}

static sh_rc headers_response(sh_req *req, void *state)
{
    const sh_resp_headers_conf *h =
        req->behavior ? &req->behavior->headers : &req->cfg->response_headers;
    int o = h->override_origin;
    if (req->tls) put(&req->resp, "Strict-Transport-Security", h->hsts, o);
    put(&req->resp, "X-Frame-Options", h->frame_options, o);
    put(&req->resp, "X-Content-Type-Options", h->content_type_options, o);
    put(&req->resp, "Referrer-Policy", h->referrer_policy, o);
    put(&req->resp, "X-XSS-Protection", h->xss_protection, o);
    for (size_t i = 0; i < h->ncustom; i++)
        put(&req->resp, h->custom_names[i], h->custom_values[i], o);
    return SH_CONTINUE;
}

const sh_module sh_module_headers = {
    .name = "headers",
    .phase = {[SH_PHASE_RESPONSE] = headers_response},
};
