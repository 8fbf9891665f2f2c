/*
 * Request metrics, health alarms and heavy hitters.
 *
 * modules/metrics.c is a LOG-phase module (sh_module_metrics): each worker owns
 * one sh_metrics_worker (its module state), and only that worker writes it,
 * with relaxed atomic stores (single writer: load + add + store, no locked
 * instruction). The admin thread reads every worker's state with relaxed
 * atomic loads and sums them (proxy/admin_metrics.c) for:
 *
 *   GET /metrics   Prometheus text exposition (shield_ prefix, seconds, bytes)
 *   GET /healthz   200 "ok", or 503 with one line per firing alarm
 *   GET /popular   the top objects by requests and by bytes (JSON)
 *
 * Alarms look at a rolling window: a ring of per-second buckets per worker
 * (sh_metrics_bucket). A bucket is reset by its worker when a new second
 * starts and stamped afterwards; a reader keeps a bucket only when its stamp
 * lies in the window and is the same before and after reading it, so a
 * bucket being recycled is skipped rather than mixed. Idle workers' buckets
 * age out by their stamps alone.
 */
#ifndef SHIELD_METRICS_H
#define SHIELD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "shield/config.h"
#include "shield/popular.h"

struct sh_req;
struct sh_worker;
struct sh_cache;
struct evhttp_request;

/* CloudFront result types (x-edge-result-type), the `result` label. */
typedef enum {
    SH_RES_HIT,
    SH_RES_REFRESH_HIT,
    SH_RES_MISS,
    SH_RES_ERROR,
    SH_RES_REDIRECT,
    SH_RES_LIMIT_EXCEEDED,
    SH_RES_CAPACITY_EXCEEDED,
    SH_RES_OTHER,
    SH_RES_COUNT
} sh_result_kind;

/* Origin failure kinds (sh_req.origin_error), the `kind` label; unknown ones are "other". */
typedef enum {
    SH_OERR_CONNECT,
    SH_OERR_DNS,
    SH_OERR_TLS,
    SH_OERR_TIMEOUT,
    SH_OERR_RESET,
    SH_OERR_PROTOCOL,
    SH_OERR_TRUNCATED,
    SH_OERR_5XX,
    SH_OERR_OTHER,
    SH_OERR_COUNT
} sh_origin_err_kind;

/* Latency histogram upper bounds, seconds (Prometheus `le`), plus +Inf. */
#define SH_METRICS_NBUCKETS 11
extern const double sh_metrics_bounds_s[SH_METRICS_NBUCKETS];

/* Longest alarm window (the ring has one bucket per second, plus the current one). */
#define SH_METRICS_MAX_WINDOW_S 3600

/* A latency histogram: per-bucket (not cumulative) counts, the last one +Inf. */
typedef struct sh_metrics_hist {
    uint64_t bucket[SH_METRICS_NBUCKETS + 1];
    uint64_t sum_us;
} sh_metrics_hist;

/* One second of one worker's traffic, for the alarms. */
typedef struct sh_metrics_bucket {
    int64_t sec;         /* monotonic second it holds; written last (release) */
    uint64_t requests;   /* every finished request */
    uint64_t errors_5xx; /* answered 5xx */
    uint64_t cacheable;  /* GET/HEAD whose result was Hit, RefreshHit or Miss */
    uint64_t hits;       /* of those, Hit or RefreshHit */
    uint64_t origin_n;   /* requests that waited for an origin response head */
    uint64_t origin_us;  /* their origin first-byte latencies, summed */
} sh_metrics_bucket;

/* One worker's metrics (its module state). Written by the owning worker only. */
typedef struct sh_metrics_worker {
    uint64_t requests[6][SH_RES_COUNT]; /* [status / 100 (0 = none sent)][result] */
    uint64_t bytes_sent;                /* to viewers (sc-bytes) */
    uint64_t bytes_received;            /* from viewers (cs-bytes) */
    uint64_t cacheable, hits;           /* as in sh_metrics_bucket, since start */
    uint64_t cacheable_bytes, hit_bytes;
    uint64_t aborted; /* responses that did not complete */
    uint64_t origin_errors[SH_OERR_COUNT];
    sh_metrics_hist origin; /* origin first-byte latency */
    sh_metrics_hist ttfb;   /* viewer first-byte latency */
    sh_metrics_bucket ring[SH_METRICS_MAX_WINDOW_S + 1];
    sh_popular_win *popular; /* requests and bytes per path */
} sh_metrics_worker;

/* Sums of every worker's buckets in a window. */
typedef struct sh_metrics_window {
    uint64_t requests, errors_5xx, cacheable, hits, origin_n, origin_us;
} sh_metrics_window;

/* modules/metrics.c */
sh_result_kind sh_metrics_result_kind(const char *result_type);
sh_origin_err_kind sh_metrics_origin_err_kind(const char *origin_error);
const char *sh_metrics_result_name(sh_result_kind k);
const char *sh_metrics_origin_err_name(sh_origin_err_kind k);
/* Record a finished request in m at monotonic time now_us (worker thread). */
void sh_metrics_record(sh_metrics_worker *m, const struct sh_req *req, int64_t now_us);
/* Add the buckets of m in the window_s seconds ending at now_us into out (any thread). */
void sh_metrics_window_add(const sh_metrics_worker *m, int64_t now_us, uint64_t window_s,
                           sh_metrics_window *out);

/* proxy/admin_metrics.c: what the admin listener serves. */
typedef struct sh_metrics_src {
    const sh_config *cfg;
    struct sh_cache *cache; /* NULL when caching is off */
    struct sh_worker *const *workers;
    size_t nworkers;
} sh_metrics_src;

/* One firing alarm, for /healthz and the shield_alarm_firing gauge. */
typedef struct sh_alarm_state {
    int firing[3]; /* 5xx rate, cache hit rate, origin latency */
    double value[3];
    sh_metrics_window win;
    uint64_t window_s;
} sh_alarm_state;

/* Evaluate the alarms of src->cfg->alarms over the window ending at now_us. */
void sh_alarms_eval(const sh_metrics_src *src, int64_t now_us, sh_alarm_state *out);

/*
 * Serve GET /metrics, /healthz or /popular when path is one of them (returns 1),
 * else 0 and nothing is sent. The caller checked the method and authorisation.
 */
int sh_admin_monitor(const sh_metrics_src *src, const char *path, struct evhttp_request *req);

#endif
