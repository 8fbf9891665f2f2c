/*
 * LOG phase: count every finished request into its worker's metrics
 * (shield/metrics.h). Nothing here blocks or allocates per request; the only
 * lock is the worker's own heavy-hitter window, which the admin thread takes
 * briefly during a /popular read.
 */
#include "shield/metrics.h"

#include <string.h>

#include "shield/alloc.h"
#include "shield/module.h"
#include "shield/worker.h"

const double sh_metrics_bounds_s[SH_METRICS_NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                         0.5,   1,    2.5,   5,    10};
static const int64_t bounds_us[SH_METRICS_NBUCKETS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

static const char *const result_names[SH_RES_COUNT] = {
    [SH_RES_HIT] = "Hit",
    [SH_RES_REFRESH_HIT] = "RefreshHit",
    [SH_RES_MISS] = "Miss",
    [SH_RES_ERROR] = "Error",
    [SH_RES_REDIRECT] = "Redirect",
    [SH_RES_LIMIT_EXCEEDED] = "LimitExceeded",
    [SH_RES_CAPACITY_EXCEEDED] = "CapacityExceeded",
    [SH_RES_OTHER] = "Other",
};

static const char *const oerr_names[SH_OERR_COUNT] = {
    [SH_OERR_CONNECT] = "connect",     [SH_OERR_DNS] = "dns",     [SH_OERR_TLS] = "tls",
    [SH_OERR_TIMEOUT] = "timeout",     [SH_OERR_RESET] = "reset", [SH_OERR_PROTOCOL] = "protocol",
    [SH_OERR_TRUNCATED] = "truncated", [SH_OERR_5XX] = "5xx",     [SH_OERR_OTHER] = "other",
};

sh_result_kind sh_metrics_result_kind(const char *rt)
{
    if (!rt) return SH_RES_OTHER;
    for (int k = 0; k < SH_RES_OTHER; k++)
        if (strcmp(rt, result_names[k]) == 0) return (sh_result_kind)k;
    return SH_RES_OTHER;
}

sh_origin_err_kind sh_metrics_origin_err_kind(const char *e)
{
    if (!e) return SH_OERR_OTHER;
    for (int k = 0; k < SH_OERR_OTHER; k++)
        if (strcmp(e, oerr_names[k]) == 0) return (sh_origin_err_kind)k;
    return SH_OERR_OTHER;
}

const char *sh_metrics_result_name(sh_result_kind k)
{
    return (unsigned)k < SH_RES_COUNT ? result_names[k] : "Other";
}

const char *sh_metrics_origin_err_name(sh_origin_err_kind k)
{
    return (unsigned)k < SH_OERR_COUNT ? oerr_names[k] : "other";
}

/* Single writer: a relaxed load and store suffice (no locked add), and the
 * admin thread's relaxed loads never see a torn value. */
#define BUMP(field, n)                                                                             \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)

static void hist_add(sh_metrics_hist *h, int64_t us)
{
    int i = 0;
    while (i < SH_METRICS_NBUCKETS && us > bounds_us[i])
        i++;
    BUMP(h->bucket[i], 1);
    BUMP(h->sum_us, (uint64_t)us);
}

/* The bucket of second sec, recycled first if it still holds an older second. */
static sh_metrics_bucket *bucket_for(sh_metrics_worker *m, int64_t sec)
{
    sh_metrics_bucket *b = &m->ring[(uint64_t)sec % (SH_METRICS_MAX_WINDOW_S + 1)];
    if (__atomic_load_n(&b->sec, __ATOMIC_RELAXED) != sec) {
        /* Invalidate the stamp first, so a reader that sees it mid-reset skips it. */
        __atomic_store_n(&b->sec, INT64_MIN, __ATOMIC_RELEASE);
        __atomic_store_n(&b->requests, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->errors_5xx, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->cacheable, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->hits, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->origin_n, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->origin_us, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->sec, sec, __ATOMIC_RELEASE);
    }
    return b;
}

void sh_metrics_record(sh_metrics_worker *m, const sh_req *req, int64_t now_us)
{
    int status = req->resp.status;
    int cls = status >= 100 && status < 600 ? status / 100 : 0;
    sh_result_kind rk = sh_metrics_result_kind(req->result_type);
    int is_hit = rk == SH_RES_HIT || rk == SH_RES_REFRESH_HIT;
    /* CloudFront's CacheHitRate: errors and methods that are never cached do not count. */
    int cacheable = (is_hit || rk == SH_RES_MISS) && (req->method_bit & (SH_M_GET | SH_M_HEAD));
    /* origin_ttfb_us is -1 when no origin was asked; 0 cannot be a real
     * measurement and is what a request looks like before the core fills it. */
    int64_t oms = req->origin_ttfb_us > 0 ? req->origin_ttfb_us : -1;

    BUMP(m->requests[cls][rk], 1);
    BUMP(m->bytes_sent, req->bytes_sent);
    BUMP(m->bytes_received, req->bytes_received);
    if (cacheable) {
        BUMP(m->cacheable, 1);
        BUMP(m->cacheable_bytes, req->bytes_sent);
        if (is_hit) {
            BUMP(m->hits, 1);
            BUMP(m->hit_bytes, req->bytes_sent);
        }
    }
    if (req->aborted) BUMP(m->aborted, 1);
    if (req->origin_error) BUMP(m->origin_errors[sh_metrics_origin_err_kind(req->origin_error)], 1);
    if (oms >= 0) hist_add(&m->origin, oms);
    if (req->ttfb_us >= 0) hist_add(&m->ttfb, req->ttfb_us);

    sh_metrics_bucket *b = bucket_for(m, now_us / 1000000);
    BUMP(b->requests, 1);
    if (cls == 5) BUMP(b->errors_5xx, 1);
    if (cacheable) {
        BUMP(b->cacheable, 1);
        if (is_hit) BUMP(b->hits, 1);
    }
    if (oms >= 0) {
        BUMP(b->origin_n, 1);
        BUMP(b->origin_us, (uint64_t)oms);
    }

    if (m->popular && req->path && req->path_len)
        sh_popular_win_add(m->popular, now_us, req->path, req->path_len, req->bytes_sent);
}

void sh_metrics_window_add(const sh_metrics_worker *m, int64_t now_us, uint64_t window_s,
                           sh_metrics_window *out)
{
    int64_t now = now_us / 1000000;
    if (window_s > SH_METRICS_MAX_WINDOW_S) window_s = SH_METRICS_MAX_WINDOW_S;
    for (size_t i = 0; i < SH_METRICS_MAX_WINDOW_S + 1; i++) {
        const sh_metrics_bucket *b = &m->ring[i];
        int64_t s1 = __atomic_load_n(&b->sec, __ATOMIC_ACQUIRE);
        /* The current second counts, so the window is its last window_s seconds. */
        if (s1 > now || s1 <= now - (int64_t)window_s) continue;
        sh_metrics_window w = {
            __atomic_load_n(&b->requests, __ATOMIC_RELAXED),
            __atomic_load_n(&b->errors_5xx, __ATOMIC_RELAXED),
            __atomic_load_n(&b->cacheable, __ATOMIC_RELAXED),
            __atomic_load_n(&b->hits, __ATOMIC_RELAXED),
            __atomic_load_n(&b->origin_n, __ATOMIC_RELAXED),
            __atomic_load_n(&b->origin_us, __ATOMIC_RELAXED),
        };
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&b->sec, __ATOMIC_RELAXED) != s1) continue;
        out->requests += w.requests;
        out->errors_5xx += w.errors_5xx;
        out->cacheable += w.cacheable;
        out->hits += w.hits;
        out->origin_n += w.origin_n;
        out->origin_us += w.origin_us;
    }
}

static int metrics_worker_init(sh_worker *w, const sh_config *cfg, void **state)
{
    sh_metrics_worker *m = sh_calloc(1, sizeof(*m));
    for (size_t i = 0; i < SH_METRICS_MAX_WINDOW_S + 1; i++)
        m->ring[i].sec = INT64_MIN;
    m->popular = sh_popular_win_new(cfg->alarms.popular_window_ms / 1000,
                                    cfg->alarms.popular_entries, 256, sh_now_us());
    *state = m;
    return 0;
}

static void metrics_worker_free(void *state)
{
    sh_metrics_worker *m = state;
    if (!m) return;
    sh_popular_win_free(m->popular);
    sh_free(m);
}

static sh_rc metrics_log(sh_req *req, void *state)
{
    if (state) sh_metrics_record(state, req, sh_now_us());
    return SH_CONTINUE;
}

const sh_module sh_module_metrics = {
    .name = "metrics",
    .worker_init = metrics_worker_init,
    .worker_free = metrics_worker_free,
    .phase = {[SH_PHASE_LOG] = metrics_log},
};
