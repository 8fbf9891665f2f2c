/*
 * Internal to the config loader: the scope/typed-getter toolkit shared by
 * config.c (core groups) and config_edge.c (TLS, identity, signatures, geo,
 * rate limits, input rules). Every getter reports its own problems as
 * "file:line: message" and returns 1 = set, 0 = absent, -1 = reported.
 */
#ifndef SHIELD_CONFIG_INT_H
#define SHIELD_CONFIG_INT_H

#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>

#include "shield/config.h"

#define SEC_MS        1000ULL
#define MAX_TTL_S     3153600000ULL /* 100 years: keeps now + ttl far from overflowing */
#define MAX_TIMER_MS  (365 * 86400 * SEC_MS)
#define DURATION_HINT "(use e.g. 250ms, 30s, 5m, 1h, 7d)"
#define SIZE_HINT     "(use e.g. 512M, 1G)"
#define COUNT_HINT    "(use e.g. 10000 or \"10K\")"
#define LABEL_MAX     256
#define HDR_KEYS                                                                                   \
    "hsts frame_options content_type_options referrer_policy xss_protection override custom"
#define NUM(type, key, field, kind, def, min, max)                                                 \
    {                                                                                              \
        key, offsetof(type, field), kind, def, min, max                                            \
    }

typedef struct loader {
    FILE *errs;
    const char *path;
    int nerr;
} loader;

/*
 * Where a group sits, for messages: `where` names it in "unknown key ... in
 * <where>" (empty for the top level), `prefix` goes before a key when
 * complaining about its value ("timeouts.header: ...", "origin \"books\": ...").
 */
typedef struct scope {
    loader *ld;
    const config_setting_t *set;
    char where[LABEL_MAX];
    char prefix[LABEL_MAX];
} scope;

/* NUM_COUNT: how many of something; bare integers or the size syntax ("10K" = 10240). */
enum { NUM_INT, NUM_SIZE, NUM_DURATION, NUM_COUNT };

typedef struct num_field {
    const char *key;
    size_t off; /* uint64_t for durations, size_t for sizes and counts */
    int kind;
    uint64_t def, min, max;
} num_field;

/* "file:line: message\n" (no line when 0) on ld->errs, control bytes escaped; counts an error. */
__attribute__((format(printf, 3, 4))) void cfg_err_at(loader *ld, const config_setting_t *at,
                                                      const char *fmt, ...);
__attribute__((format(printf, 4, 5))) void cfg_err_line(loader *ld, const char *file, unsigned line,
                                                        const char *fmt, ...);
const char *cfg_type_name(const config_setting_t *s);
int cfg_is_token(const char *s);
int cfg_is_field_value(const char *s);
config_setting_t *cfg_member(const scope *sc, const char *key);
void cfg_scope_group(scope *out, const scope *parent, const config_setting_t *set, const char *key);
/* List elements are named by their key value when they have one: origin "books". */
void cfg_scope_elem(scope *out, loader *ld, const config_setting_t *set, const char *list,
                    const char *kind, const char *name);
/* keys: the allowed names, separated by spaces. */
void cfg_check_keys(scope *sc, const char *keys);
void cfg_missing(scope *sc, const char *key);
int cfg_get_typed(scope *sc, const char *key, int type, config_setting_t **out);
int cfg_get_str(scope *sc, const char *key, const char **out);
/* A required string (non-empty if asked): 1 when *out is usable. */
int cfg_need_str(scope *sc, const char *key, int nonempty, const char **out);
int cfg_get_bool(scope *sc, const char *key, int *out);
/* An optional group, its keys checked: its scope, or NULL when absent or reported. */
scope *cfg_opt_group(scope *parent, const char *key, const char *keys, scope *out);
/* Integers, sizes (bytes) and durations (ms), with range checks; *out untouched unless good. */
int cfg_get_num(scope *sc, const char *key, int kind, uint64_t min, uint64_t max, uint64_t *out);
/* Defaults first, then whatever the group (NULL = absent) overrides. */
void cfg_get_nums(scope *sc, void *base, const num_field *f, size_t n);
/* A list of groups. NULL if absent or reported. */
config_setting_t *cfg_get_list(scope *sc, const char *key, int required);
config_setting_t *cfg_get_group_elem(loader *ld, const config_setting_t *list, int i,
                                     const char *listname);
/* Strings of an array ["a", "b"] or a list ("a", "b"). */
int cfg_get_strings(scope *sc, const char *key, config_setting_t **out);
void cfg_set_str(char **dst, const char *v);

/*
 * config_literals.c: after libconfig has parsed lc, report every integer in
 * its files that libconfig would have stored as another number (beyond 32
 * bits without an L suffix, beyond 64 bits with one). Returns how many.
 */
int cfg_check_int_literals(loader *ld, const config_t *lc);
/*
 * config_literals.c: before libconfig reads ld->path, report every @include
 * reachable from it that names something other than a regular file (libconfig
 * would exit the process on a directory). Returns how many.
 */
int cfg_check_includes(loader *ld);

/* config_edge.c: the edge-security groups and the per-behavior edge keys. */
#define EDGE_TOP_KEYS      "tls trusted_proxies signed_urls sigv4 geo rate_limit waf log alarms popular"
#define EDGE_BEHAVIOR_KEYS "viewer_protocol signed compress cors"
void cfg_parse_edge(scope *top, sh_config *cfg);
void cfg_parse_behavior_edge(scope *el, sh_config *cfg, sh_behavior_conf *b);
/* After behaviors and edge groups: cross-checks (TLS listener needs certificates...). */
void cfg_check_edge(scope *top, sh_config *cfg);
void cfg_free_edge(sh_config *cfg);
void cfg_free_behavior_edge(sh_behavior_conf *b);

/* config_log.c: the log group (access log), called from cfg_parse_edge / cfg_free_edge. */
void cfg_parse_log(scope *top, sh_config *cfg);
void cfg_free_log(sh_config *cfg);
/* config_alarms.c: the alarms and popular groups, called from cfg_parse_edge. */
void cfg_parse_alarms(scope *top, sh_config *cfg);

#endif
