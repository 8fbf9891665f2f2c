#include <stdio.h>
#include <string.h>

#include "shield/module.h"

/* The registry: run order within a phase. A new feature adds itself here. */
const sh_module *const sh_modules[] = {
    &sh_module_behaviors,
    &sh_module_headers,
};
const size_t sh_nmodules = sizeof(sh_modules) / sizeof(sh_modules[0]);

static const char *const phase_names[SH_PHASE_COUNT] = {
    [SH_PHASE_SANITY] = "sanity",     [SH_PHASE_IDENTITY] = "identity",
    [SH_PHASE_ROUTE] = "route",       [SH_PHASE_RATELIMIT] = "ratelimit",
    [SH_PHASE_GEO] = "geo",           [SH_PHASE_PROTOCOL] = "protocol",
    [SH_PHASE_AUTH] = "auth",         [SH_PHASE_PRECONTENT] = "precontent",
    [SH_PHASE_RESPONSE] = "response", [SH_PHASE_LOG] = "log",
};

const char *sh_phase_name(sh_phase p)
{
    return (unsigned)p < SH_PHASE_COUNT ? phase_names[p] : "?";
}

int sh_pipeline_check(char *err, size_t errlen)
{
    for (size_t p = 0; p < SH_PHASE_COUNT; p++) {
        if (!phase_names[p]) {
            snprintf(err, errlen, "phase %zu has no name", p);
            return -1;
        }
    }
    for (size_t i = 0; i < sh_nmodules; i++) {
        if (!sh_modules[i] || !sh_modules[i]->name || !*sh_modules[i]->name) {
            snprintf(err, errlen, "module %zu has no name", i);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(sh_modules[i]->name, sh_modules[j]->name) == 0) {
                snprintf(err, errlen, "module \"%s\" registered twice", sh_modules[i]->name);
                return -1;
            }
        }
    }
    return 0;
}

sh_rc sh_pipeline_run(sh_req *req, void *const *states, size_t *phase, size_t *module, sh_phase to)
{
    for (; *phase < (size_t)to; (*phase)++, *module = 0) {
        for (; *module < sh_nmodules; (*module)++) {
            const sh_module *m = sh_modules[*module];
            if (!m->phase[*phase]) continue;
            sh_rc rc = m->phase[*phase](req, states ? states[*module] : NULL);
            if (rc != SH_CONTINUE) return rc;
        }
    }
    return SH_CONTINUE;
}

/* Iterative glob with single-star backtracking: linear-ish and no recursion,
 * so a hostile path cannot make matching exponential. */
int sh_glob_match(const char *pat, size_t plen, const char *s, size_t slen)
{
    size_t p = 0, i = 0, star_p = (size_t)-1, star_i = 0;
    while (i < slen) {
        if (p < plen && pat[p] == '*') {
            star_p = p++;
            star_i = i;
        } else if (p < plen && (pat[p] == '?' || pat[p] == s[i])) {
            p++;
            i++;
        } else if (star_p != (size_t)-1) {
            p = star_p + 1;
            i = ++star_i;
        } else {
            return 0;
        }
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}
