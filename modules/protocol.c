/*
 * Viewer protocol policy per behavior, as CloudFront applies it:
 *   allow-all          HTTP and HTTPS both served;
 *   redirect-to-https  plain HTTP gets 301 (307 for methods with a body, so
 *                      the method and body survive) to the same URL on https;
 *   https-only         plain HTTP gets 403.
 * It runs after routing (the policy is per behavior) and before the signature
 * checks, so a viewer is sent to https before its signature is judged.
 */
#include <stdio.h>
#include <string.h>

#include <netinet/in.h>

#include "shield/alloc.h"
#include "shield/module.h"

/* The port the https URL should carry: the first TLS listener's, omitted when 443. */
static int https_port(const sh_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const sh_listen_conf *l = &cfg->listen[i];
        if (!l->tls) continue;
        return l->addr.ss_family == AF_INET6
                   ? ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port)
                   : ntohs(((const struct sockaddr_in *)&l->addr)->sin_port);
    }
    return 443;
}

/* Host without its port; IPv6 literals keep their brackets. */
static size_t host_name_len(const char *h, size_t n)
{
    if (n && h[0] == '[') {
        const char *end = memchr(h, ']', n);
        return end ? (size_t)(end - h) + 1 : n;
    }
    const char *colon = memchr(h, ':', n);
    return colon ? (size_t)(colon - h) : n;
}

static sh_rc protocol_check(sh_req *req, void *state)
{
    const sh_behavior_conf *b = req->behavior;
    (void)state;
    if (!b || req->tls || b->viewer_protocol == SH_VIEWER_ALLOW_ALL) return SH_CONTINUE;
    /* An HTTP/1.0 request without Host has no URL to redirect to. */
    if (b->viewer_protocol == SH_VIEWER_HTTPS_ONLY || !req->host_len) {
        sh_req_count(req, SH_CNT_HTTPS_ONLY);
        req->detailed_result = "Error";
        return sh_req_respond(req, 403, NULL, NULL, NULL, NULL);
    }

    int port = https_port(req->cfg);
    size_t hl = host_name_len(req->host, req->host_len);
    /* Origin-form target as received: path and query bytes unchanged. */
    const char *target = req->path;
    size_t tl = req->path_len + (req->query ? req->query_len + 1 : 0);
    size_t cap = hl + tl + 32;
    char *loc = sh_malloc(cap);
    int n = snprintf(loc, cap, "https://%.*s", (int)hl, req->host);
    if (port != 443) n += snprintf(loc + n, cap - (size_t)n, ":%d", port);
    snprintf(loc + n, cap - (size_t)n, "%.*s", (int)tl, target);
    int body_method = req->method_bit & (SH_M_POST | SH_M_PUT | SH_M_PATCH | SH_M_DELETE);
    sh_req_count(req, SH_CNT_REDIRECTS);
    req->result_type = "Redirect";
    sh_rc rc = sh_req_respond(req, body_method ? 307 : 301, "Location", loc, NULL, NULL);
    sh_free(loc);
    return rc;
}

const sh_module sh_module_protocol = {
    .name = "protocol",
    .phase = {[SH_PHASE_PROTOCOL] = protocol_check},
};
