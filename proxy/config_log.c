/*
 * The log group: log = { access = { dir; distribution_id; domain;
 * retention_days; ring_size; }; realtime = { target; sampling; fields;
 * ring_size; }; }. Errors are "file:line: message" like the rest of the
 * loader (config_int.h).
 */
#include <string.h>

#include "config_int.h"
#include "shield/alloc.h"
#include "shield/realtime_log.h"

/* A distribution id becomes part of file names: keep it to a safe alphabet. */
static int id_ok(const char *s)
{
    if (!*s || strlen(s) > 64) return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return 0;
    return 1;
}

static void parse_access(scope *ls, sh_config *cfg)
{
    sh_log_conf *l = &cfg->log;
    const char *v;
    uint64_t n;
    scope sc, *as;

    as = cfg_opt_group(ls, "access", "dir distribution_id domain retention_days ring_size", &sc);
    if (!as) return;
    l->line = config_setting_source_line(as->set);
    if (cfg_get_str(as, "dir", &v) == 1) cfg_set_str(&l->access_dir, v);
    if (cfg_get_str(as, "distribution_id", &v) == 1) {
        if (id_ok(v))
            cfg_set_str(&l->distribution_id, v);
        else
            cfg_err_at(as->ld, cfg_member(as, "distribution_id"),
                       "log.access.distribution_id \"%s\": use 1-64 letters, digits, '-' or '_'",
                       v);
    }
    if (cfg_get_str(as, "domain", &v) == 1) {
        if (!*v || cfg_is_field_value(v))
            cfg_set_str(&l->domain, v);
        else
            cfg_err_at(as->ld, cfg_member(as, "domain"), "log.access.domain: invalid characters");
    }
    cfg_get_num(as, "retention_days", NUM_INT, 0, 36500, &l->retention_days);
    if (cfg_get_num(as, "ring_size", NUM_INT, 2, 1u << 24, &n) == 1) l->ring_size = (size_t)n;
}

static void parse_realtime(scope *ls, sh_config *cfg)
{
    sh_log_conf *l = &cfg->log;
    const char *v;
    uint64_t n;
    config_setting_t *fs;
    scope sc, *rs;
    char why[256];

    rs = cfg_opt_group(ls, "realtime", "target sampling fields ring_size", &sc);
    if (!rs) return;
    if (cfg_get_str(rs, "target", &v) == 1) {
        if (sh_realtime_target_check(v, why, sizeof why) == 0)
            cfg_set_str(&l->rt_target, v);
        else
            cfg_err_at(rs->ld, cfg_member(rs, "target"), "log.realtime.target \"%s\": %s", v, why);
    }
    if (cfg_get_num(rs, "sampling", NUM_INT, 1, 100, &n) == 1) l->rt_sampling = (unsigned)n;
    if (cfg_get_num(rs, "ring_size", NUM_INT, 2, 1u << 24, &n) == 1) l->rt_ring_size = (size_t)n;
    if (cfg_get_strings(rs, "fields", &fs) == 1) {
        /* A set, not a sequence: records always follow CloudFront's order. */
        uint64_t bits = 0;
        int bad = 0;
        for (int i = 0; i < config_setting_length(fs); i++) {
            const char *name = config_setting_get_string_elem(fs, (unsigned)i);
            int k = sh_realtime_field_index(name);
            if (k < 0) {
                cfg_err_at(rs->ld, config_setting_get_elem(fs, (unsigned)i),
                           "log.realtime.fields: unknown field \"%s\"", name);
                bad = 1;
                continue;
            }
            bits |= UINT64_C(1) << k;
        }
        if (!bad && !bits)
            cfg_err_at(rs->ld, fs, "log.realtime.fields: list at least one field");
        else if (!bad)
            l->rt_fields = bits;
    }
}

void cfg_parse_log(scope *top, sh_config *cfg)
{
    sh_log_conf *l = &cfg->log;
    scope sc, *ls;

    l->access_dir = sh_strdup("");
    l->distribution_id = sh_strdup("E2SHIELD");
    l->domain = sh_strdup("");
    l->retention_days = 0;
    l->ring_size = 4096;
    l->rt_target = sh_strdup("");
    l->rt_sampling = 100;
    l->rt_fields = SH_RT_ALL_FIELDS;
    l->rt_ring_size = 4096;
    ls = cfg_opt_group(top, "log", "access realtime", &sc);
    if (!ls) return;
    parse_access(ls, cfg);
    parse_realtime(ls, cfg);
}

void cfg_free_log(sh_config *cfg)
{
    sh_free(cfg->log.access_dir);
    sh_free(cfg->log.distribution_id);
    sh_free(cfg->log.domain);
    sh_free(cfg->log.rt_target);
}
