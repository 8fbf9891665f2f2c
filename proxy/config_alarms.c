/*
 * The alarms group (thresholds of GET /healthz, the seed deployment's
 * CloudWatch alarms by default) and the popular group (GET /popular's window):
 *
 *   alarms  = { window = "60s"; error_rate_5xx = 5.0; min_cache_hit_rate = 70.0;
 *               max_origin_latency = "1000ms"; min_requests = 20; };
 *   popular = { window = "300s"; entries = 512; };
 */
#include <libconfig.h>

#include "config_int.h"

#define ALARM_MAX_WINDOW_MS (3600 * SEC_MS) /* the metrics ring has one bucket per second */

/* A percentage, written 5 or 5.0; 1 = set, 0 = absent, -1 = reported. */
static int get_percent(scope *sc, const char *key, double *out)
{
    config_setting_t *s = cfg_member(sc, key);
    double v;

    if (!s) return 0;
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        v = (double)config_setting_get_int64(s);
        break;
    case CONFIG_TYPE_FLOAT:
        v = config_setting_get_float(s);
        break;
    default:
        cfg_err_at(sc->ld, s, "%s%s: expected a percentage (e.g. 5.0), got %s", sc->prefix, key,
                   cfg_type_name(s));
        return -1;
    }
    if (!(v >= 0.0 && v <= 100.0)) {
        cfg_err_at(sc->ld, s, "%s%s %g: must be between 0 and 100", sc->prefix, key, v);
        return -1;
    }
    *out = v;
    return 1;
}

void cfg_parse_alarms(scope *top, sh_config *cfg)
{
    sh_alarms_conf *a = &cfg->alarms;
    uint64_t n;
    scope sc, *as, psc, *ps;

    a->window_ms = 60 * SEC_MS;
    a->error_rate_5xx = 5.0;
    a->min_cache_hit_rate = 70.0;
    a->max_origin_latency_ms = 1000;
    a->min_requests = 20;
    a->popular_window_ms = 300 * SEC_MS;
    a->popular_entries = 512;
    as = cfg_opt_group(top, "alarms",
                       "window error_rate_5xx min_cache_hit_rate max_origin_latency min_requests",
                       &sc);
    if (as) {
        cfg_get_num(as, "window", NUM_DURATION, SEC_MS, ALARM_MAX_WINDOW_MS, &a->window_ms);
        get_percent(as, "error_rate_5xx", &a->error_rate_5xx);
        get_percent(as, "min_cache_hit_rate", &a->min_cache_hit_rate);
        cfg_get_num(as, "max_origin_latency", NUM_DURATION, 0, 3600 * SEC_MS,
                    &a->max_origin_latency_ms);
        cfg_get_num(as, "min_requests", NUM_INT, 1, 1000000000, &a->min_requests);
    }
    ps = cfg_opt_group(top, "popular", "window entries", &psc);
    if (ps) {
        cfg_get_num(ps, "window", NUM_DURATION, 2 * SEC_MS, 7 * 86400 * SEC_MS,
                    &a->popular_window_ms);
        if (cfg_get_num(ps, "entries", NUM_INT, 16, 65536, &n) == 1) a->popular_entries = n;
    }
}
