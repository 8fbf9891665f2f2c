/*
 * Behaviors: pick the cache behavior for a request (first matching path
 * pattern wins, case-sensitive, query ignored), apply the default root object,
 * and enforce the behavior's allowed methods (405 + Allow).
 */
#include <string.h>

#include "shield/alloc.h"
#include "shield/module.h"

const sh_behavior_conf *sh_behavior_match(const sh_config *cfg, const char *path, size_t len)
{
    for (size_t i = 0; i < cfg->nbehaviors; i++) {
        const sh_behavior_conf *b = &cfg->behaviors[i];
        if (sh_glob_match(b->path, strlen(b->path), path, len)) return b;
    }
    return NULL; /* unreachable with a validated config: the last pattern is "*" */
}

/* "GET, HEAD, OPTIONS" in CloudFront's order. */
static void allow_header(unsigned methods, char *out, size_t outlen)
{
    static const struct {
        unsigned bit;
        const char *name;
    } order[] = {{SH_M_GET, "GET"},      {SH_M_HEAD, "HEAD"}, {SH_M_OPTIONS, "OPTIONS"},
                 {SH_M_PUT, "PUT"},      {SH_M_POST, "POST"}, {SH_M_PATCH, "PATCH"},
                 {SH_M_DELETE, "DELETE"}};
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (!(methods & order[i].bit)) continue;
        size_t l = strlen(order[i].name);
        if (n + l + 3 >= outlen) break;
        if (n) {
            memcpy(out + n, ", ", 2);
            n += 2;
        }
        memcpy(out + n, order[i].name, l + 1);
        n += l;
    }
}

static sh_rc behaviors_route(sh_req *req, void *state)
{
    const sh_config *cfg = req->cfg;
    const char *path = req->path;
    size_t len = req->path_len;

    /* CloudFront applies the default root object to "/" only, never to
     * subdirectories, and matches behaviors against the rewritten path. */
    if (len == 1 && path[0] == '/' && cfg->default_root_object && *cfg->default_root_object) {
        size_t dl = strlen(cfg->default_root_object);
        char *p = sh_malloc(dl + 2);
        p[0] = '/';
        memcpy(p + 1, cfg->default_root_object, dl + 1);
        sh_free(req->origin_path);
        req->origin_path = p;
        path = p;
        len = dl + 1;
    }

    req->behavior = sh_behavior_match(cfg, path, len);
    if (!req->behavior) return sh_req_respond(req, 500, NULL, NULL, NULL, NULL);

    if (!(req->method_bit & req->behavior->allowed_methods)) {
        char allow[64];
        allow_header(req->behavior->allowed_methods, allow, sizeof(allow));
        req->detailed_result = "InvalidRequestMethod";
        return sh_req_respond(req, 405, "Allow", allow, NULL, NULL);
    }
    return SH_CONTINUE;
}

const sh_module sh_module_behaviors = {
    .name = "behaviors",
    .phase = {[SH_PHASE_ROUTE] = behaviors_route},
};
