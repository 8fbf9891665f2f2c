#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "shield/module.h"

/* The registry: run order within a phase. A new feature adds itself here. */
const sh_module *const sh_modules[] = {
    &sh_module_waf,          &sh_module_identity, &sh_module_behaviors,  &sh_module_ratelimit,
    &sh_module_geo,          &sh_module_protocol, &sh_module_signed_url, &sh_module_sigv4,
    &sh_module_cors,         &sh_module_headers,  &sh_module_compress,   &sh_module_access_log,
    &sh_module_realtime_log, &sh_module_metrics,
};
const size_t sh_nmodules = sizeof(sh_modules) / sizeof(sh_modules[0]);

static const char *const phase_names[SH_PHASE_COUNT] = {
    [SH_PHASE_SANITY] = "sanity",     [SH_PHASE_IDENTITY] = "identity",
    [SH_PHASE_ROUTE] = "route",       [SH_PHASE_RATELIMIT] = "ratelimit",
    [SH_PHASE_GEO] = "geo",           [SH_PHASE_PROTOCOL] = "protocol",
    [SH_PHASE_AUTH] = "auth",         [SH_PHASE_PRECONTENT] = "precontent",
    [SH_PHASE_RESPONSE] = "response", [SH_PHASE_LOG] = "log",
};

static const char *const counter_names[SH_CNT_COUNT] = {
    [SH_CNT_AUTH_FAILED] = "auth_failed",        [SH_CNT_GEO_BLOCKED] = "geo_blocked",
    [SH_CNT_RATE_LIMITED] = "rate_limited",      [SH_CNT_WAF_BLOCKED] = "waf_blocked",
    [SH_CNT_REDIRECTS] = "https_redirects",      [SH_CNT_HTTPS_ONLY] = "https_only_refused",
    [SH_CNT_CORS_PREFLIGHT] = "cors_preflights", [SH_CNT_COMPRESSED] = "compressed",
};

const char *sh_counter_name(sh_counter c)
{
    return (unsigned)c < SH_CNT_COUNT ? counter_names[c] : "?";
}

int sh_modules_init(const sh_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < sh_nmodules; i++) {
        if (!sh_modules[i]->init || sh_modules[i]->init(cfg, err, errlen) == 0) continue;
        while (i-- > 0)
            if (sh_modules[i]->fini) sh_modules[i]->fini();
        return -1;
    }
    return 0;
}

void sh_modules_reload(const sh_config *cfg)
{
    for (size_t i = 0; i < sh_nmodules; i++)
        if (sh_modules[i]->reload) sh_modules[i]->reload(cfg);
}

void sh_modules_fini(void)
{
    for (size_t i = sh_nmodules; i-- > 0;)
        if (sh_modules[i]->fini) sh_modules[i]->fini();
}

const char *sh_phase_name(sh_phase p)
{
    return (unsigned)p < SH_PHASE_COUNT ? phase_names[p] : "?";
}

int sh_pipeline_check(char *err, size_t errlen)
{
    for (size_t c = 0; c < SH_CNT_COUNT; c++) {
        if (!counter_names[c]) {
            snprintf(err, errlen, "counter %zu has no name", c);
            return -1;
        }
    }
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

/* next_in[p][i]: the first module >= i with a handler for phase p (or
 * sh_nmodules). Every request walks every phase: this skips the modules
 * without a handler instead of testing each one. */
#define NMODULES (sizeof(sh_modules) / sizeof(sh_modules[0]))
static unsigned char next_in[SH_PHASE_COUNT][NMODULES + 1];
static pthread_once_t next_once = PTHREAD_ONCE_INIT;

static void next_init(void)
{
    for (size_t p = 0; p < SH_PHASE_COUNT; p++) {
        next_in[p][NMODULES] = (unsigned char)NMODULES;
        for (size_t i = NMODULES; i-- > 0;)
            next_in[p][i] = sh_modules[i]->phase[p] ? (unsigned char)i : next_in[p][i + 1];
    }
}

sh_rc sh_pipeline_run(sh_req *req, void *const *states, size_t *phase, size_t *module, sh_phase to)
{
    pthread_once(&next_once, next_init);
    for (; *phase < (size_t)to; (*phase)++, *module = 0) {
        const unsigned char *next = next_in[*phase];
        for (*module = *module < NMODULES ? next[*module] : NMODULES; *module < NMODULES;
             *module = next[*module + 1]) {
            const sh_module *m = sh_modules[*module];
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
