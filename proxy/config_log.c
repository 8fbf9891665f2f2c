/*
 * The log group: log = { access = { dir; distribution_id; domain;
 * retention_days; ring_size; }; }. Errors are "file:line: message" like the
 * rest of the loader (config_int.h).
 */
#include <string.h>

#include "config_int.h"
#include "shield/alloc.h"

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

void cfg_parse_log(scope *top, sh_config *cfg)
{
    sh_log_conf *l = &cfg->log;
    scope sc, *ls;

    l->access_dir = sh_strdup("");
    l->distribution_id = sh_strdup("E2SHIELD");
    l->domain = sh_strdup("");
    l->retention_days = 0;
    l->ring_size = 4096;
    ls = cfg_opt_group(top, "log", "access", &sc);
    if (!ls) return;
    parse_access(ls, cfg);
}

void cfg_free_log(sh_config *cfg)
{
    sh_free(cfg->log.access_dir);
    sh_free(cfg->log.distribution_id);
    sh_free(cfg->log.domain);
}
