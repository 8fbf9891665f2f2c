/*
 * The admin listener's monitoring endpoints: GET /metrics (Prometheus text
 * exposition 0.0.4), GET /healthz (the alarms) and GET /popular (heavy
 * hitters). Runs on the admin thread; every per-worker number is read with
 * relaxed atomic loads and summed on the spot, so a scrape costs the workers
 * nothing but the brief lock of their heavy-hitter window during /popular.
 */
#include "shield/metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "shield/accesslog.h"
#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/module.h"
#include "shield/realtime_log.h"
#include "shield/worker.h"

#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

enum { ALARM_5XX, ALARM_HIT_RATE, ALARM_LATENCY };
static const char *const alarm_names[3] = {"error_rate_5xx", "cache_hit_rate", "origin_latency"};

static sh_metrics_worker *state_of(const sh_metrics_src *src, size_t i)
{
    if (!src->workers[i]) return NULL;
    return sh_worker_module_state(src->workers[i], &sh_module_metrics);
}

static uint64_t window_seconds(const sh_config *cfg)
{
    uint64_t s = (cfg->alarms.window_ms + 999) / 1000;
    if (s < 1) s = 1;
    return s > SH_METRICS_MAX_WINDOW_S ? SH_METRICS_MAX_WINDOW_S : s;
}

void sh_alarms_eval(const sh_metrics_src *src, int64_t now_us, sh_alarm_state *out)
{
    const sh_alarms_conf *a = &src->cfg->alarms;
    sh_metrics_window *w = &out->win;

    memset(out, 0, sizeof(*out));
    out->window_s = window_seconds(src->cfg);
    for (size_t i = 0; i < src->nworkers; i++) {
        sh_metrics_worker *m = state_of(src, i);
        if (m) sh_metrics_window_add(m, now_us, out->window_s, w);
    }
    /* Each rate needs min_requests samples behind it, so one failure on an
     * idle shield is not an outage. Latency is the average first-byte time of
     * the window's origin fetches (CloudWatch's default statistic), gated on
     * the window's request count: a mostly-hit shield fetches rarely. */
    if (w->requests >= a->min_requests && w->requests) {
        out->value[ALARM_5XX] = 100.0 * (double)w->errors_5xx / (double)w->requests;
        out->firing[ALARM_5XX] = out->value[ALARM_5XX] > a->error_rate_5xx;
    }
    if (w->cacheable >= a->min_requests && w->cacheable) {
        out->value[ALARM_HIT_RATE] = 100.0 * (double)w->hits / (double)w->cacheable;
        out->firing[ALARM_HIT_RATE] =
            a->min_cache_hit_rate > 0 && out->value[ALARM_HIT_RATE] < a->min_cache_hit_rate;
    }
    if (w->origin_n && w->requests >= a->min_requests) {
        out->value[ALARM_LATENCY] = (double)w->origin_us / (double)w->origin_n / 1000.0;
        out->firing[ALARM_LATENCY] = a->max_origin_latency_ms > 0 &&
                                     out->value[ALARM_LATENCY] > (double)a->max_origin_latency_ms;
    }
}

/* ---- /metrics ------------------------------------------------------------------------------- */

static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(struct evbuffer *b, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    family(b, name, type, help);
    evbuffer_add_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void ratio(struct evbuffer *b, const char *name, const char *help, uint64_t num,
                  uint64_t den)
{
    family(b, name, "gauge", help);
    evbuffer_add_printf(b, "%s %.6f\n", name, den ? (double)num / (double)den : 0.0);
}

static void histogram(struct evbuffer *b, const char *name, const char *help,
                      const sh_metrics_hist *h)
{
    uint64_t cum = 0;
    family(b, name, "histogram", help);
    for (int i = 0; i <= SH_METRICS_NBUCKETS; i++) {
        cum += h->bucket[i];
        if (i < SH_METRICS_NBUCKETS)
            evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                                sh_metrics_bounds_s[i], cum);
        else
            evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    }
    /* _count is the +Inf bucket by construction, whatever a racing update did. */
    evbuffer_add_printf(b, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name, (double)h->sum_us / 1e6,
                        name, cum);
}

static void hist_sum(sh_metrics_hist *dst, const sh_metrics_hist *src)
{
    for (int i = 0; i <= SH_METRICS_NBUCKETS; i++)
        dst->bucket[i] += LD(src->bucket[i]);
    dst->sum_us += LD(src->sum_us);
}

static void render_metrics(const sh_metrics_src *src, struct evbuffer *b)
{
    static const char *const classes[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    uint64_t req[6][SH_RES_COUNT] = {{0}};
    uint64_t sent = 0, recvd = 0, cacheable = 0, hits = 0, cbytes = 0, hbytes = 0, aborted = 0;
    uint64_t oerr[SH_OERR_COUNT] = {0};
    uint64_t accepted = 0, rejected = 0, open = 0, hs = 0, hsf = 0, fd = 0,
             edge[SH_CNT_COUNT] = {0};
    sh_metrics_hist origin = {{0}, 0}, ttfb = {{0}, 0};

    for (size_t i = 0; i < src->nworkers; i++) {
        sh_worker *w = src->workers[i];
        sh_metrics_worker *m = state_of(src, i);
        if (!w) continue;
        accepted += LD(w->stats.connections_accepted);
        rejected += LD(w->stats.connections_rejected);
        open += LD(w->nconns);
        hs += LD(w->stats.tls_handshakes);
        hsf += LD(w->stats.tls_handshake_failures);
        fd += LD(w->stats.framing_disagreements);
        for (int c = 0; c < SH_CNT_COUNT; c++)
            edge[c] += LD(w->stats.edge[c]);
        if (!m) continue;
        for (int c = 0; c < 6; c++)
            for (int r = 0; r < SH_RES_COUNT; r++)
                req[c][r] += LD(m->requests[c][r]);
        sent += LD(m->bytes_sent);
        recvd += LD(m->bytes_received);
        cacheable += LD(m->cacheable);
        hits += LD(m->hits);
        cbytes += LD(m->cacheable_bytes);
        hbytes += LD(m->hit_bytes);
        aborted += LD(m->aborted);
        for (int k = 0; k < SH_OERR_COUNT; k++)
            oerr[k] += LD(m->origin_errors[k]);
        hist_sum(&origin, &m->origin);
        hist_sum(&ttfb, &m->ttfb);
    }

    family(b, "shield_build_info", "gauge", "Shield version (always 1).");
    evbuffer_add_printf(b, "shield_build_info{version=\"%s\"} 1\n", SHIELD_VERSION);

    family(b, "shield_requests_total", "counter",
           "Finished requests by status class and CloudFront result type (x-edge-result-type).");
    int any = 0;
    for (int c = 0; c < 6; c++)
        for (int r = 0; r < SH_RES_COUNT; r++)
            if (req[c][r]) {
                any = 1;
                evbuffer_add_printf(
                    b, "shield_requests_total{code=\"%s\",result=\"%s\"} %" PRIu64 "\n", classes[c],
                    sh_metrics_result_name((sh_result_kind)r), req[c][r]);
            }
    if (!any) evbuffer_add_printf(b, "shield_requests_total{code=\"2xx\",result=\"Hit\"} 0\n");
    scalar(b, "shield_downloaded_bytes_total", "counter",
           "Bytes sent to viewers, headers and bodies (CloudFront BytesDownloaded).", sent);
    scalar(b, "shield_uploaded_bytes_total", "counter",
           "Bytes received from viewers, headers and bodies (CloudFront BytesUploaded).", recvd);
    ratio(b, "shield_cache_hit_ratio",
          "Cacheable GET/HEAD requests served from cache (Hit, RefreshHit) over all of them, "
          "since start.",
          hits, cacheable);
    ratio(b, "shield_cache_byte_hit_ratio",
          "Bytes sent for cache hits over bytes sent for all cacheable requests, since start.",
          hbytes, cbytes);
    histogram(b, "shield_origin_latency_seconds",
              "Time from asking the origin to its response head (CloudFront OriginLatency).",
              &origin);
    histogram(b, "shield_time_to_first_byte_seconds",
              "Time from the request's start to its first response byte queued to the viewer.",
              &ttfb);
    family(b, "shield_origin_errors_total", "counter", "Origin failures by kind.");
    for (int k = 0; k < SH_OERR_COUNT; k++)
        evbuffer_add_printf(b, "shield_origin_errors_total{kind=\"%s\"} %" PRIu64 "\n",
                            sh_metrics_origin_err_name((sh_origin_err_kind)k), oerr[k]);
    scalar(b, "shield_aborted_responses_total", "counter",
           "Responses that did not complete (reset, timeout, viewer gone).", aborted);

    if (src->cache) {
        cache_stats *st = sh_cache_stats(src->cache);
#define A(f) (uint64_t) atomic_load_explicit(&st->f, memory_order_relaxed)
        family(b, "shield_cache_lookups_total", "counter", "Cache engine lookups by outcome.");
        evbuffer_add_printf(b,
                            "shield_cache_lookups_total{result=\"hit\"} %" PRIu64 "\n"
                            "shield_cache_lookups_total{result=\"refresh_hit\"} %" PRIu64 "\n"
                            "shield_cache_lookups_total{result=\"miss\"} %" PRIu64 "\n"
                            "shield_cache_lookups_total{result=\"pass\"} %" PRIu64 "\n",
                            A(hits), A(refresh_hits), A(misses), A(passes));
        scalar(b, "shield_collapsed_requests_total", "counter",
               "Requests that joined a fill already in progress instead of asking the origin.",
               A(collapsed));
        scalar(b, "shield_cache_origin_fetches_total", "counter",
               "Fills the cache engine started at the origin.", A(origin_fetches));
        scalar(b, "shield_cache_evictions_total", "counter",
               "Objects evicted from the memory tier.", A(evictions));
        scalar(b, "shield_cache_invalidations_total", "counter", "Invalidated paths recorded.",
               A(invalidations));
        scalar(b, "shield_cache_disk_writes_total", "counter",
               "Files the disk tier started writing (committed or not).", A(disk_writes));
        scalar(b, "shield_cache_disk_refusals_total", "counter",
               "Objects the disk tier did not admit: refused by its frequency admission, or "
               "by its byte budget at commit.",
               A(disk_refusals));
        scalar(b, "shield_cache_disk_write_errors_total", "counter",
               "Disk tier writes the filesystem failed (ENOSPC, EIO, EFBIG...); the objects "
               "stay in memory only.",
               A(disk_write_errors));
        family(b, "shield_cache_served_bytes_total", "counter",
               "Object bytes read to serve requests, by source.");
        evbuffer_add_printf(b,
                            "shield_cache_served_bytes_total{source=\"memory\"} %" PRIu64 "\n"
                            "shield_cache_served_bytes_total{source=\"disk\"} %" PRIu64 "\n"
                            "shield_cache_served_bytes_total{source=\"origin\"} %" PRIu64 "\n",
                            A(bytes_from_memory), A(bytes_from_disk), A(bytes_from_origin));
        family(b, "shield_cache_objects", "gauge", "Objects stored, by tier.");
        evbuffer_add_printf(b,
                            "shield_cache_objects{tier=\"memory\"} %" PRIu64 "\n"
                            "shield_cache_objects{tier=\"disk\"} %" PRIu64 "\n",
                            A(objects), cache_disk_objects(src->cache));
        family(b, "shield_cache_bytes", "gauge", "Bytes stored, by tier.");
        evbuffer_add_printf(b,
                            "shield_cache_bytes{tier=\"memory\"} %" PRIu64 "\n"
                            "shield_cache_bytes{tier=\"disk\"} %" PRIu64 "\n",
                            A(bytes), cache_disk_bytes(src->cache));
#undef A
        family(b, "shield_cache_capacity_bytes", "gauge", "Configured budget, by tier.");
        evbuffer_add_printf(b,
                            "shield_cache_capacity_bytes{tier=\"memory\"} %" PRIu64 "\n"
                            "shield_cache_capacity_bytes{tier=\"disk\"} %" PRIu64 "\n",
                            (uint64_t)src->cfg->cache.memory_size,
                            src->cfg->cache.disk_path && *src->cfg->cache.disk_path
                                ? (uint64_t)src->cfg->cache.disk_size
                                : (uint64_t)0);
    }

    scalar(b, "shield_open_connections", "gauge", "Viewer connections open now.", open);
    scalar(b, "shield_connections_accepted_total", "counter", "Viewer connections accepted.",
           accepted);
    scalar(b, "shield_connections_rejected_total", "counter",
           "Viewer connections closed at accept (over limits.max_connections).", rejected);
    scalar(b, "shield_tls_handshakes_total", "counter", "TLS handshakes completed.", hs);
    scalar(b, "shield_tls_handshake_failures_total", "counter",
           "TLS handshakes that failed or were abandoned.", hsf);
    scalar(b, "shield_framing_disagreements_total", "counter",
           "Requests the framing scanner and llhttp framed differently (refused; always a bug).",
           fd);
    family(b, "shield_edge_events_total", "counter",
           "Edge decisions: rejections (rate_limited, geo_blocked, auth_failed, waf_blocked, "
           "https_only_refused), redirects, CORS preflights, compressed responses.");
    for (int c = 0; c < SH_CNT_COUNT; c++)
        evbuffer_add_printf(b, "shield_edge_events_total{event=\"%s\"} %" PRIu64 "\n",
                            sh_counter_name((sh_counter)c), edge[c]);
    scalar(b, "shield_access_log_dropped_total", "counter",
           "Access log lines dropped because a worker's ring was full.", sh_accesslog_dropped());
    scalar(b, "shield_realtime_log_sent_total", "counter", "Real-time log records delivered.",
           sh_realtime_sent());
    scalar(b, "shield_realtime_log_dropped_total", "counter",
           "Real-time log records dropped (ring full or target unreachable).",
           sh_realtime_dropped());

    sh_alarm_state al;
    sh_alarms_eval(src, sh_now_us(), &al);
    family(b, "shield_alarm_firing", "gauge",
           "1 when a /healthz alarm fires over the alarms.window, else 0.");
    for (int i = 0; i < 3; i++)
        evbuffer_add_printf(b, "shield_alarm_firing{alarm=\"%s\"} %d\n", alarm_names[i],
                            al.firing[i]);
    scalar(b, "shield_alarm_window_requests", "gauge",
           "Requests finished within the alarms.window (the alarms' sample).", al.win.requests);
}

/* ---- /healthz ------------------------------------------------------------------------------- */

static int render_healthz(const sh_metrics_src *src, struct evbuffer *b)
{
    const sh_alarms_conf *a = &src->cfg->alarms;
    sh_alarm_state al;
    sh_alarms_eval(src, sh_now_us(), &al);
    if (!al.firing[0] && !al.firing[1] && !al.firing[2]) {
        evbuffer_add_printf(b, "ok\n");
        return 200;
    }
    if (al.firing[ALARM_5XX])
        evbuffer_add_printf(b,
                            "alarm error_rate_5xx: %.1f%% of %" PRIu64
                            " requests answered 5xx in the last %" PRIu64 "s (threshold %.1f%%)\n",
                            al.value[ALARM_5XX], al.win.requests, al.window_s, a->error_rate_5xx);
    if (al.firing[ALARM_HIT_RATE])
        evbuffer_add_printf(
            b,
            "alarm cache_hit_rate: %.1f%% of %" PRIu64
            " cacheable requests were hits in the last %" PRIu64 "s (minimum %.1f%%)\n",
            al.value[ALARM_HIT_RATE], al.win.cacheable, al.window_s, a->min_cache_hit_rate);
    if (al.firing[ALARM_LATENCY])
        evbuffer_add_printf(b,
                            "alarm origin_latency: average %.0f ms over %" PRIu64
                            " origin fetches in the last %" PRIu64 "s (maximum %" PRIu64 " ms)\n",
                            al.value[ALARM_LATENCY], al.win.origin_n, al.window_s,
                            a->max_origin_latency_ms);
    return 503;
}

/* ---- /popular ------------------------------------------------------------------------------- */

/* Paths are viewer bytes: quote, backslash and controls are escaped, and bytes
 * >= 0x80 are written as \u00XX so the document is always valid JSON. */
static void json_str(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            evbuffer_add_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            evbuffer_add_printf(b, "\\u%04x", *p);
        else
            evbuffer_add(b, p, 1);
    }
    evbuffer_add(b, "\"", 1);
}

static int parse_n(const char *query, size_t *n)
{
    struct evkeyvalq q;
    int rc = 0;
    *n = 20;
    if (!query) return 0;
    if (evhttp_parse_query_str(query, &q) != 0) return -1;
    const char *v = evhttp_find_header(&q, "n");
    if (v) {
        char *end;
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || *v == '-' || *v == '+' || x < 1 || x > 1000)
            rc = -1;
        else
            *n = (size_t)x;
    }
    evhttp_clear_headers(&q);
    return rc;
}

static void render_popular(const sh_metrics_src *src, size_t n, struct evbuffer *b)
{
    static const char *const lists[2] = {"by_requests", "by_bytes"};
    sh_popular_win **wins = sh_calloc(src->nworkers ? src->nworkers : 1, sizeof(*wins));
    for (size_t i = 0; i < src->nworkers; i++) {
        sh_metrics_worker *m = state_of(src, i);
        wins[i] = m ? m->popular : NULL;
    }
    sh_popular_report rep;
    sh_popular_top(wins, src->nworkers, sh_now_us(), n, &rep);
    sh_free(wins);
    evbuffer_add_printf(b, "{\"window_seconds\": %" PRIu64,
                        src->cfg->alarms.popular_window_ms / 1000);
    for (int r = 0; r < 2; r++) {
        evbuffer_add_printf(b, ", \"%s\": [", lists[r]);
        for (size_t j = 0; j < rep.n[r]; j++) {
            const sh_popular_row *row = &rep.rows[r][j];
            evbuffer_add_printf(b, "%s{\"path\": ", j ? ", " : "");
            json_str(b, row->key);
            evbuffer_add_printf(b, ", \"requests\": %" PRIu64 ", \"bytes\": %" PRIu64 "%s}",
                                row->requests, row->bytes,
                                row->truncated ? ", \"truncated\": true" : "");
        }
        evbuffer_add_printf(b, "]");
    }
    evbuffer_add_printf(b, "}\n");
    sh_popular_report_free(&rep);
}

int sh_admin_monitor(const sh_metrics_src *src, const char *path, struct evhttp_request *req)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    struct evbuffer *b;
    int code;

    if (strcmp(path, "/metrics") == 0) {
        b = evbuffer_new();
        render_metrics(src, b);
        evhttp_add_header(oh, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        code = 200;
    } else if (strcmp(path, "/healthz") == 0) {
        b = evbuffer_new();
        code = render_healthz(src, b);
        evhttp_add_header(oh, "Content-Type", "text/plain; charset=utf-8");
    } else if (strcmp(path, "/popular") == 0) {
        size_t n;
        b = evbuffer_new();
        if (parse_n(evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)), &n) != 0) {
            evbuffer_add_printf(b, "{\"error\": \"n must be an integer from 1 to 1000\"}\n");
            code = 400;
        } else {
            render_popular(src, n, b);
            code = 200;
        }
        evhttp_add_header(oh, "Content-Type", "application/json");
    } else {
        return 0;
    }
    evhttp_add_header(oh, "Cache-Control", "no-store");
    evhttp_send_reply(req, code,
                      code == 200   ? "OK"
                      : code == 503 ? "Service Unavailable"
                                    : "Bad Request",
                      b);
    evbuffer_free(b);
    return 1;
}
