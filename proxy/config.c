/*
 * Configuration loader: libconfig file -> immutable sh_config snapshot.
 *
 * Validation never stops at the first problem: an operator fixing a file wants
 * every mistake in one run of `shield -t`, so each check reports and carries on,
 * and the snapshot is only thrown away at the end if anything was reported.
 */
#include "shield/config.h"
#include "shield/alloc.h"
#include "shield/forward.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <openssl/crypto.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"

/* ---- messages --------------------------------------------------------------------------- */

/*
 * Messages quote what the file says, and a quoted "a\nb" would end the line
 * early: whoever reads "file:line: message" line by line (an editor, a CI log,
 * the fuzz harness) would take the rest for a message of its own. Control
 * bytes are written as escapes; a tab does not break a line and stays.
 */
static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

__attribute__((format(printf, 4, 0))) static void err_v(loader *ld, const char *file, unsigned line,
                                                        const char *fmt, va_list ap)
{
    char *msg = NULL;

    /* The root group has no line: a missing top-level key is a whole-file problem. */
    put_escaped(ld->errs, file ? file : ld->path);
    fputc(':', ld->errs);
    if (line) fprintf(ld->errs, "%u:", line);
    fputc(' ', ld->errs);
    if (vasprintf(&msg, fmt, ap) < 0) abort();
    put_escaped(ld->errs, msg);
    free(msg);
    fputc('\n', ld->errs);
    ld->nerr++;
}

void cfg_err_line(loader *ld, const char *file, unsigned line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    err_v(ld, file, line, fmt, ap);
    va_end(ap);
}

void cfg_err_at(loader *ld, const config_setting_t *at, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    err_v(ld, at ? config_setting_source_file(at) : NULL, at ? config_setting_source_line(at) : 0,
          fmt, ap);
    va_end(ap);
}

const char *cfg_type_name(const config_setting_t *s)
{
    static const char *const names[] = {
        [CONFIG_TYPE_GROUP] = "a group",    [CONFIG_TYPE_INT] = "an integer",
        [CONFIG_TYPE_INT64] = "an integer", [CONFIG_TYPE_FLOAT] = "a float",
        [CONFIG_TYPE_STRING] = "a string",  [CONFIG_TYPE_BOOL] = "a boolean",
        [CONFIG_TYPE_ARRAY] = "an array",   [CONFIG_TYPE_LIST] = "a list"};
    int t = config_setting_type(s);
    return t > 0 && t <= CONFIG_TYPE_LIST ? names[t] : "nothing";
}

/* Limits are printed the way an operator would write them: 10s, not 10000; 1M, not 1048576;
 * counts as plain numbers (1024 clients, not 1K). */
static void fmt_num(int kind, char *buf, size_t n, uint64_t v)
{
    static const uint64_t div[2][5] = {{86400000, 3600000, 60000, 1000, 1},
                                       {1ULL << 40, 1 << 30, 1 << 20, 1 << 10, 1}};
    static const char *const unit[2][5] = {{"d", "h", "m", "s", "ms"}, {"T", "G", "M", "K", ""}};
    int k = kind != NUM_DURATION, i = kind == NUM_INT || kind == NUM_COUNT ? 4 : 0;

    while (i < 4 && v % div[k][i])
        i++;
    if (v == 0) i = k ? 4 : 3;
    snprintf(buf, n, "%llu%s", (unsigned long long)(v / div[k][i]), unit[k][i]);
}

/* ---- value parsers ---------------------------------------------------------------------- */

/* Leading decimal digits: 0, -1 if there are none, -2 on overflow. */
static int parse_digits(const char **sp, uint64_t *out)
{
    const char *s = *sp;
    uint64_t v = 0;

    if (!isdigit((unsigned char)*s)) return -1;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -2;
        v = v * 10 + d;
    }
    *sp = s;
    *out = v;
    return 0;
}

/*
 * The unit is mandatory in a duration string: "30" in quotes is more likely a
 * slip for "30s" or "30ms" than a choice, and guessing wrong by a factor of
 * 1000 is worse than asking. Unquoted integers are seconds.
 */
static int duration_ms(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    uint64_t v;
    int rc = parse_digits(&s, &v);

    if (rc) return rc;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(s, units[i].unit) != 0) continue;
        if (v > UINT64_MAX / units[i].ms) return -2;
        *out = v * units[i].ms;
        return 0;
    }
    return -1;
}

/* "512", "512B", "20K", "20KB", "20KiB", "1g": powers of 1024, case-insensitive. */
static int size_bytes(const char *s, uint64_t *out)
{
    static const char prefixes[] = "kmgt";
    const char *p;
    unsigned shift = 0;
    uint64_t v;
    int rc = parse_digits(&s, &v);

    if (rc) return rc;
    if (*s && (p = strchr(prefixes, tolower((unsigned char)*s)))) {
        shift = 10 * (unsigned)(p - prefixes + 1);
        s++;
        if (tolower((unsigned char)s[0]) == 'i' && tolower((unsigned char)s[1]) == 'b') s++;
    }
    if (tolower((unsigned char)*s) == 'b') s++;
    if (*s) return -1;
    if (v > (UINT64_MAX >> shift)) return -2;
    *out = v << shift;
    return 0;
}

int sh_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    return s && duration_ms(s, out_ms) == 0 ? 0 : -1;
}

int sh_parse_size(const char *s, uint64_t *out)
{
    return s && size_bytes(s, out) == 0 ? 0 : -1;
}

/* Numeric only: resolving names here would block start-up on DNS and hide typos. */
int sh_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN];
    const char *port, *end;
    size_t hlen;
    uint64_t p;
    int v6 = s && *s == '[';

    if (!s) return -1;
    if (v6) {
        end = strchr(s, ']');
        if (!end || end[1] != ':') return -1;
        s++;
        port = end + 2;
    } else {
        end = strrchr(s, ':');
        /* a second colon means an unbracketed IPv6 address: the port is ambiguous */
        if (!end || memchr(s, ':', (size_t)(end - s))) return -1;
        port = end + 1;
    }
    hlen = (size_t)(end - s);
    if (hlen >= sizeof host || strlen(port) > 5 || parse_digits(&port, &p) || *port || p == 0 ||
        p > 65535)
        return -1;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    memset(ss, 0, sizeof *ss);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return -1;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)p);
        *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        if (hlen == 0)
            a->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -1;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)p);
        *len = sizeof *a;
    }
    return 0;
}

unsigned sh_method_bit(const char *name, size_t len)
{
    static const struct {
        const char *name;
        unsigned bit;
    } methods[] = {{"GET", SH_M_GET},      {"HEAD", SH_M_HEAD}, {"OPTIONS", SH_M_OPTIONS},
                   {"PUT", SH_M_PUT},      {"POST", SH_M_POST}, {"PATCH", SH_M_PATCH},
                   {"DELETE", SH_M_DELETE}};

    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strlen(methods[i].name) == len && memcmp(methods[i].name, name, len) == 0)
            return methods[i].bit;
    return 0;
}

int cfg_is_token(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s)) return 0;
    return 1;
}

/* Header values end up verbatim on the wire: a CR or LF here is response splitting. */
int cfg_is_field_value(const char *s)
{
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f) return 0;
    return 1;
}

/* Node name and PoP go into Via/X-Cache and into tab-separated log lines. */
static int is_label(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(".-_", *s)) return 0;
    return 1;
}

/* http(s)://host[:port][/path]; sets the host span for the virtual-host check. */
static int check_url(const char *u, const char **host, size_t *hlen)
{
    const char *p, *auth_end, *h_end;

    if (strncasecmp(u, "http://", 7) == 0)
        p = u + 7;
    else if (strncasecmp(u, "https://", 8) == 0)
        p = u + 8;
    else
        return -1;
    for (const char *c = u; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) return -1;
    auth_end = p + strcspn(p, "/?#");
    if (*p == '[') {
        if (!(h_end = memchr(p, ']', (size_t)(auth_end - p)))) return -1;
        h_end++;
    } else if (!(h_end = memchr(p, ':', (size_t)(auth_end - p)))) {
        h_end = auth_end;
    }
    if (h_end == p || memchr(p, '@', (size_t)(auth_end - p))) return -1;
    *host = p;
    *hlen = (size_t)(h_end - p);
    return 0;
}

/* ---- scopes and typed getters: 1 = set, 0 = absent, -1 = reported ----------------------- */

config_setting_t *cfg_member(const scope *sc, const char *key)
{
    return config_setting_get_member(sc->set, key);
}

void cfg_scope_group(scope *out, const scope *parent, const config_setting_t *set, const char *key)
{
    out->ld = parent->ld;
    out->set = set;
    snprintf(out->where, sizeof out->where, "%.200s%s%.40s", parent->where,
             *parent->where ? " " : "", key);
    snprintf(out->prefix, sizeof out->prefix, "%.200s%.40s.", parent->prefix, key);
}

/* List elements are named by their key value when they have one: origin "books". */
void cfg_scope_elem(scope *out, loader *ld, const config_setting_t *set, const char *list,
                    const char *kind, const char *name)
{
    out->ld = ld;
    out->set = set;
    if (name)
        snprintf(out->where, sizeof out->where, "%.16s \"%.120s\"", kind, name);
    else
        snprintf(out->where, sizeof out->where, "%.200s[%d]", list, config_setting_index(set));
    snprintf(out->prefix, sizeof out->prefix, "%.240s: ", out->where);
}

/* keys: the allowed names, separated by spaces. */
void cfg_check_keys(scope *sc, const char *keys)
{
    for (int i = 0; i < config_setting_length(sc->set); i++) {
        const config_setting_t *m = config_setting_get_elem(sc->set, (unsigned)i);
        const char *name = config_setting_name(m), *k = keys;
        size_t n = strlen(name);

        while ((k = strstr(k, name)) && !((k == keys || k[-1] == ' ') && (!k[n] || k[n] == ' ')))
            k++;
        if (k) continue;
        if (*sc->where)
            cfg_err_at(sc->ld, m, "unknown key \"%s\" in %s", name, sc->where);
        else
            cfg_err_at(sc->ld, m, "unknown top-level key \"%s\"", name);
    }
}

void cfg_missing(scope *sc, const char *key)
{
    if (*sc->where)
        cfg_err_at(sc->ld, sc->set, "missing required setting \"%s\" in %s", key, sc->where);
    else
        cfg_err_at(sc->ld, sc->set, "missing required setting \"%s\"", key);
}

int cfg_get_typed(scope *sc, const char *key, int type, config_setting_t **out)
{
    static const char *const what[] = {[CONFIG_TYPE_GROUP] = "a group",
                                       [CONFIG_TYPE_STRING] = "a string",
                                       [CONFIG_TYPE_BOOL] = "a boolean"};
    config_setting_t *s = cfg_member(sc, key);

    if (!s) return 0;
    if (config_setting_type(s) != type) {
        cfg_err_at(sc->ld, s, "%s%s: expected %s, got %s", sc->prefix, key, what[type],
                   cfg_type_name(s));
        return -1;
    }
    *out = s;
    return 1;
}

int cfg_get_str(scope *sc, const char *key, const char **out)
{
    config_setting_t *s;
    int rc = cfg_get_typed(sc, key, CONFIG_TYPE_STRING, &s);
    if (rc == 1) *out = config_setting_get_string(s);
    return rc;
}

/* A required string (non-empty if asked): 1 when *out is usable. */
int cfg_need_str(scope *sc, const char *key, int nonempty, const char **out)
{
    int rc = cfg_get_str(sc, key, out);

    if (rc == 0) cfg_missing(sc, key);
    if (rc == 1 && nonempty && !**out) {
        cfg_err_at(sc->ld, cfg_member(sc, key), "%s%s must not be empty", sc->prefix, key);
        rc = -1;
    }
    return rc == 1;
}

int cfg_get_bool(scope *sc, const char *key, int *out)
{
    config_setting_t *s;
    int rc = cfg_get_typed(sc, key, CONFIG_TYPE_BOOL, &s);
    if (rc == 1) *out = config_setting_get_bool(s);
    return rc;
}

/* An optional group, its keys checked: its scope, or NULL when absent or reported. */
scope *cfg_opt_group(scope *parent, const char *key, const char *keys, scope *out)
{
    config_setting_t *s;

    if (cfg_get_typed(parent, key, CONFIG_TYPE_GROUP, &s) != 1) return NULL;
    cfg_scope_group(out, parent, s, key);
    cfg_check_keys(out, keys);
    return out;
}

/*
 * Integers, sizes, durations and counts share one getter so that every numeric
 * key gets the same type, syntax and range messages, each naming what the key
 * holds. Durations come back in ms; min/max are in the result's unit. *out is
 * left alone unless the value is good.
 */
int cfg_get_num(scope *sc, const char *key, int kind, uint64_t min, uint64_t max, uint64_t *out)
{
    static const char *const what[] = {"an integer", "a size", "a duration", "a count"};
    static const char *const hint[] = {"", SIZE_HINT, DURATION_HINT, COUNT_HINT};
    config_setting_t *s = cfg_member(sc, key);
    char shown[160], lo[32], hi[32];
    const char *str;
    uint64_t v;
    int rc = -1;

    if (!s) return 0;
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: {
        long long n = config_setting_get_int64(s);
        snprintf(shown, sizeof shown, "%lld", n);
        if (n < 0 || (kind == NUM_DURATION && (uint64_t)n > UINT64_MAX / SEC_MS)) goto range;
        v = (uint64_t)n * (kind == NUM_DURATION ? SEC_MS : 1);
        break;
    }
    case CONFIG_TYPE_STRING:
        str = config_setting_get_string(s);
        snprintf(shown, sizeof shown, "\"%.150s\"", str);
        if (kind == NUM_INT) goto type;
        rc = kind == NUM_DURATION ? duration_ms(str, &v) : size_bytes(str, &v);
        if (rc == -2) {
            cfg_err_at(sc->ld, s, "%s%s %s: too large", sc->prefix, key, shown);
            return -1;
        }
        if (rc == 0) break;
        cfg_err_at(sc->ld, s, "%s%s %s: not %s %s", sc->prefix, key, shown, what[kind], hint[kind]);
        return -1;
    default:
    type:
        cfg_err_at(sc->ld, s, "%s%s: expected %s, got %s", sc->prefix, key, what[kind],
                   cfg_type_name(s));
        return -1;
    }
    if (v >= min && v <= max) {
        *out = v;
        return 1;
    }
range:
    fmt_num(kind, lo, sizeof lo, min);
    fmt_num(kind, hi, sizeof hi, max);
    if (max == UINT64_MAX || (kind != NUM_DURATION && max == SIZE_MAX))
        cfg_err_at(sc->ld, s, "%s%s: %s is out of range (at least %s)", sc->prefix, key, shown, lo);
    else
        cfg_err_at(sc->ld, s, "%s%s: %s is out of range (%s..%s)", sc->prefix, key, shown, lo, hi);
    return -1;
}

/* Defaults first, then whatever the group (NULL = absent) overrides. */
void cfg_get_nums(scope *sc, void *base, const num_field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v = f[i].def;
        if (sc) cfg_get_num(sc, f[i].key, f[i].kind, f[i].min, f[i].max, &v);
        if (f[i].kind == NUM_DURATION)
            *(uint64_t *)((char *)base + f[i].off) = v;
        else
            *(size_t *)((char *)base + f[i].off) = (size_t)v;
    }
}

/* A list of groups, e.g. listen = ( {...}, {...} ). NULL if absent or reported. */
config_setting_t *cfg_get_list(scope *sc, const char *key, int required)
{
    config_setting_t *s = cfg_member(sc, key);

    if (!s) {
        if (required) cfg_missing(sc, key);
        return NULL;
    }
    if (config_setting_type(s) != CONFIG_TYPE_LIST) {
        cfg_err_at(sc->ld, s, "%s%s: expected a list of groups ( { ... }, ... ), got %s",
                   sc->prefix, key, cfg_type_name(s));
        return NULL;
    }
    if (required && config_setting_length(s) == 0) {
        cfg_err_at(sc->ld, s, "%s%s: must not be empty", sc->prefix, key);
        return NULL;
    }
    return s;
}

config_setting_t *cfg_get_group_elem(loader *ld, const config_setting_t *list, int i,
                                     const char *listname)
{
    config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
    if (config_setting_type(e) == CONFIG_TYPE_GROUP) return e;
    cfg_err_at(ld, e, "%s[%d]: expected a group, got %s", listname, i, cfg_type_name(e));
    return NULL;
}

/* Strings of an array ["a", "b"] or a list ("a", "b"). */
int cfg_get_strings(scope *sc, const char *key, config_setting_t **out)
{
    config_setting_t *s = cfg_member(sc, key);
    int bad = 0;

    if (!s) return 0;
    if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST) {
        cfg_err_at(sc->ld, s, "%s%s: expected an array of strings, got %s", sc->prefix, key,
                   cfg_type_name(s));
        return -1;
    }
    for (int i = 0; i < config_setting_length(s); i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) == CONFIG_TYPE_STRING) continue;
        cfg_err_at(sc->ld, e, "%s%s[%d]: expected a string, got %s", sc->prefix, key, i,
                   cfg_type_name(e));
        bad = 1;
    }
    if (bad) return -1;
    *out = s;
    return 1;
}

void cfg_set_str(char **dst, const char *v)
{
    sh_free(*dst);
    *dst = sh_strdup(v);
}

/* ---- response headers ------------------------------------------------------------------- */

static const struct {
    const char *key;
    size_t off;
    const char *seed;
} hdr_fields[] = {
    {"hsts", offsetof(sh_resp_headers_conf, hsts), "max-age=63072000; includeSubDomains; preload"},
    {"frame_options", offsetof(sh_resp_headers_conf, frame_options), "DENY"},
    {"content_type_options", offsetof(sh_resp_headers_conf, content_type_options), "nosniff"},
    {"referrer_policy", offsetof(sh_resp_headers_conf, referrer_policy),
     "strict-origin-when-cross-origin"},
    {"xss_protection", offsetof(sh_resp_headers_conf, xss_protection), "1; mode=block"},
};
#define NHDR            (sizeof hdr_fields / sizeof hdr_fields[0])
#define HDR_FIELD(h, i) ((char **)((char *)(h) + hdr_fields[i].off))

static void free_custom(sh_resp_headers_conf *h)
{
    for (size_t i = 0; i < h->ncustom; i++) {
        sh_free(h->custom_names[i]);
        sh_free(h->custom_values[i]);
    }
    sh_free(h->custom_names);
    sh_free(h->custom_values);
    h->custom_names = h->custom_values = NULL;
    h->ncustom = 0;
}

static void free_headers(sh_resp_headers_conf *h)
{
    for (size_t i = 0; i < NHDR; i++)
        sh_free(*HDR_FIELD(h, i));
    free_custom(h);
}

static void copy_headers(sh_resp_headers_conf *dst, const sh_resp_headers_conf *src)
{
    for (size_t i = 0; i < NHDR; i++)
        *HDR_FIELD(dst, i) = sh_strdup(*HDR_FIELD(src, i));
    dst->ncustom = src->ncustom;
    dst->custom_names = sh_calloc(src->ncustom, sizeof(char *));
    dst->custom_values = sh_calloc(src->ncustom, sizeof(char *));
    for (size_t i = 0; i < src->ncustom; i++) {
        dst->custom_names[i] = sh_strdup(src->custom_names[i]);
        dst->custom_values[i] = sh_strdup(src->custom_values[i]);
    }
    dst->override_origin = src->override_origin;
}

/* A custom list replaces the inherited one as a whole: a behavior that lists its
 * own extras should not silently keep the global ones as well. */
static void parse_custom(scope *sc, config_setting_t *list, sh_resp_headers_conf *h)
{
    size_t n = (size_t)config_setting_length(list);
    char listname[LABEL_MAX];

    free_custom(h);
    h->custom_names = sh_calloc(n, sizeof(char *));
    h->custom_values = sh_calloc(n, sizeof(char *));
    snprintf(listname, sizeof listname, "%.200scustom", sc->prefix);
    for (size_t i = 0; i < n; i++) {
        config_setting_t *e = cfg_get_group_elem(sc->ld, list, (int)i, listname);
        const char *name, *value;
        scope el;

        if (!e) continue;
        cfg_scope_elem(&el, sc->ld, e, listname, NULL, NULL);
        cfg_check_keys(&el, "name value");
        if (!cfg_need_str(&el, "name", 1, &name) || !cfg_need_str(&el, "value", 0, &value))
            continue;
        if (!cfg_is_token(name))
            cfg_err_at(sc->ld, cfg_member(&el, "name"), "%sname \"%s\": not a valid header name",
                       el.prefix, name);
        else if (!cfg_is_field_value(value))
            cfg_err_at(sc->ld, cfg_member(&el, "value"), "%svalue: contains a control character",
                       el.prefix);
        h->custom_names[h->ncustom] = sh_strdup(name);
        h->custom_values[h->ncustom++] = sh_strdup(value);
    }
}

/* Overlay the keys present in group sc onto h, which holds the inherited values. */
static void parse_headers(scope *sc, sh_resp_headers_conf *h)
{
    config_setting_t *custom;
    const char *v;

    for (size_t i = 0; i < NHDR; i++) {
        if (cfg_get_str(sc, hdr_fields[i].key, &v) != 1) continue;
        if (cfg_is_field_value(v))
            cfg_set_str(HDR_FIELD(h, i), *v ? v : NULL);
        else
            cfg_err_at(sc->ld, cfg_member(sc, hdr_fields[i].key),
                       "%s%s: contains a control character", sc->prefix, hdr_fields[i].key);
    }
    cfg_get_bool(sc, "override", &h->override_origin);
    if ((custom = cfg_get_list(sc, "custom", 0))) parse_custom(sc, custom, h);
}

/* ---- sections --------------------------------------------------------------------------- */

static void parse_node(scope *top, sh_config *cfg)
{
    static const char *const labels[] = {"name", "pop"};
    char **label_dst[] = {&cfg->node_name, &cfg->pop};
    const char *v;
    uint64_t n;
    scope sc;

    cfg->node_name = sh_strdup("shield");
    cfg->pop = sh_strdup("SHLD1");
    cfg->error_log = sh_strdup("");
    if (cfg_opt_group(top, "node", "name pop workers error_log", &sc)) {
        for (int i = 0; i < 2; i++) {
            if (cfg_get_str(&sc, labels[i], &v) != 1) continue;
            if (is_label(v))
                cfg_set_str(label_dst[i], v);
            else
                cfg_err_at(top->ld, cfg_member(&sc, labels[i]),
                           "node.%s \"%s\": use letters, digits, '.', '-' and '_' only", labels[i],
                           v);
        }
        if (cfg_get_num(&sc, "workers", NUM_INT, 0, 256, &n) == 1) cfg->workers = (int)n;
        if (cfg_get_str(&sc, "error_log", &v) == 1) cfg_set_str(&cfg->error_log, v);
    }
    if (cfg->workers > 0) {
        cfg->nworkers = cfg->workers;
    } else {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->nworkers = ncpu < 1 ? 1 : ncpu > 256 ? 256 : (int)ncpu;
    }
}

static void parse_listen(scope *top, sh_config *cfg)
{
    config_setting_t *list = cfg_get_list(top, "listen", 1);

    if (!list) return;
    cfg->nlisten = (size_t)config_setting_length(list);
    cfg->listen = sh_calloc(cfg->nlisten, sizeof *cfg->listen);
    for (size_t i = 0; i < cfg->nlisten; i++) {
        sh_listen_conf *l = &cfg->listen[i];
        config_setting_t *e = cfg_get_group_elem(top->ld, list, (int)i, "listen");
        const char *addr = NULL;
        scope el;

        if (!e) continue;
        config_setting_lookup_string(e, "address", &addr);
        cfg_scope_elem(&el, top->ld, e, "listen", "listen", addr);
        cfg_check_keys(&el, "address tls");
        if (cfg_need_str(&el, "address", 0, &addr)) {
            l->address = sh_strdup(addr);
            if (sh_parse_address(addr, &l->addr, &l->addrlen) != 0) {
                cfg_err_at(
                    top->ld, cfg_member(&el, "address"),
                    "%saddress: expected a numeric \"ip:port\", \"[ipv6]:port\" or \":port\"",
                    el.prefix);
                l->addrlen = 0;
            }
        }
        cfg_get_bool(&el, "tls", &l->tls);
        for (size_t j = 0; l->addrlen && j < i; j++) {
            if (cfg->listen[j].addrlen == l->addrlen &&
                memcmp(&cfg->listen[j].addr, &l->addr, l->addrlen) == 0) {
                cfg_err_at(top->ld, e, "%sduplicate listen address", el.prefix);
                break;
            }
        }
    }
}

/* URL-valued key: validated, stored without trailing slashes. */
static void get_url(scope *sc, const char *key, char **dst, const char **host, size_t *hlen)
{
    const char *v, *h;
    size_t n, hl;

    if (cfg_get_str(sc, key, &v) != 1) return;
    if (check_url(v, &h, &hl) != 0) {
        cfg_err_at(sc->ld, cfg_member(sc, key), "%s%s \"%s\": expected an http:// or https:// URL",
                   sc->prefix, key, v);
        return;
    }
    for (n = strlen(v); n > 0 && v[n - 1] == '/';)
        n--;
    sh_free(*dst);
    *dst = sh_strndup(v, n);
    *host = h;
    *hlen = hl;
}

static void parse_origin(scope *el, sh_origin_conf *o)
{
    static const char *const creds[] = {[SH_CRED_NONE] = "none",
                                        [SH_CRED_ENV] = "env",
                                        [SH_CRED_FILE] = "file",
                                        [SH_CRED_IMDS] = "imds"};
    static const struct {
        const char *key;
        sh_cred_source only;
    } cred_keys[] = {{"credentials_file", SH_CRED_FILE},
                     {"credentials_profile", SH_CRED_FILE},
                     {"imds_endpoint", SH_CRED_IMDS}};
    static const char *const s3_only[] = {"bucket", "region", "path_style"};
    /* CloudFront's origin limits: operators already know these numbers. */
    static const num_field nums[] = {
        NUM(sh_origin_conf, "connect_timeout", connect_timeout_ms, NUM_DURATION, 10000, 1000,
            10000),
        NUM(sh_origin_conf, "read_timeout", read_timeout_ms, NUM_DURATION, 30000, 1000, 60000),
        NUM(sh_origin_conf, "keepalive_timeout", keepalive_timeout_ms, NUM_DURATION, 5000, 1000,
            60000)};
    const char *v, *host = "";
    size_t hlen = 0;
    int s3 = 0, http = 0, cred_ok = 1;
    uint64_t n = 3;

    cfg_check_keys(el, "name type endpoint bucket region path_style credentials credentials_file "
                       "credentials_profile imds_endpoint connect_timeout read_timeout "
                       "keepalive_timeout attempts");
    cfg_need_str(el, "name", 1, &v);
    if (cfg_need_str(el, "type", 0, &v)) {
        s3 = strcmp(v, "s3") == 0;
        http = strcmp(v, "http") == 0;
        if (!s3 && !http)
            cfg_err_at(el->ld, cfg_member(el, "type"), "%stype \"%s\": expected \"s3\" or \"http\"",
                       el->prefix, v);
        o->type = http ? SH_ORIGIN_HTTP : SH_ORIGIN_S3;
    }
    if (!cfg_member(el, "endpoint")) cfg_missing(el, "endpoint");
    get_url(el, "endpoint", &o->endpoint, &host, &hlen);

    if (s3) {
        if (cfg_need_str(el, "bucket", 0, &v)) o->bucket = sh_strdup(v);
        o->region = sh_strdup("us-east-1");
        if (cfg_get_str(el, "region", &v) == 1) {
            if (*v)
                cfg_set_str(&o->region, v);
            else
                cfg_err_at(el->ld, cfg_member(el, "region"), "%sregion must not be empty",
                           el->prefix);
        }
        /* AWS wants virtual-hosted style; S3 emulators and on-prem stores mostly
         * answer path style only. */
        o->path_style = !(hlen > 14 && strncasecmp(host + hlen - 14, ".amazonaws.com", 14) == 0);
        cfg_get_bool(el, "path_style", &o->path_style);
        /* An empty bucket passes the viewer's path through as "/bucket/key":
         * how a private mirror serves path-style S3 clients. */
        if (o->bucket && !*o->bucket && !o->path_style)
            cfg_err_at(el->ld, cfg_member(el, "bucket"),
                       "%sbucket may only be empty with path_style = true", el->prefix);
    }
    for (size_t i = 0; http && i < sizeof s3_only / sizeof s3_only[0]; i++)
        if (cfg_member(el, s3_only[i]))
            cfg_err_at(el->ld, cfg_member(el, s3_only[i]), "%s%s is only valid for s3 origins",
                       el->prefix, s3_only[i]);

    o->credentials = o->type == SH_ORIGIN_S3 ? SH_CRED_ENV : SH_CRED_NONE;
    if (cfg_get_str(el, "credentials", &v) == 1) {
        cred_ok = 0;
        for (int i = 0; i < 4; i++)
            if (strcmp(v, creds[i]) == 0) {
                o->credentials = (sh_cred_source)i;
                cred_ok = 1;
            }
        if (!cred_ok)
            cfg_err_at(el->ld, cfg_member(el, "credentials"),
                       "%scredentials \"%s\": expected \"env\", \"file\", \"imds\" or \"none\"",
                       el->prefix, v);
        else if (http && o->credentials != SH_CRED_NONE)
            cfg_err_at(el->ld, cfg_member(el, "credentials"),
                       "%scredentials \"%s\": http origins only support \"none\"", el->prefix, v);
    }
    for (size_t i = 0; cred_ok && i < sizeof cred_keys / sizeof cred_keys[0]; i++)
        if (cfg_member(el, cred_keys[i].key) && o->credentials != cred_keys[i].only)
            cfg_err_at(el->ld, cfg_member(el, cred_keys[i].key),
                       "%s%s is only valid with credentials = \"%s\"", el->prefix, cred_keys[i].key,
                       creds[cred_keys[i].only]);
    if (cred_ok && o->credentials == SH_CRED_FILE && !cfg_member(el, "credentials_file"))
        cfg_missing(el, "credentials_file");
    if (cfg_get_str(el, "credentials_file", &v) == 1) o->credentials_file = sh_strdup(v);
    o->credentials_profile = sh_strdup("default");
    if (cfg_get_str(el, "credentials_profile", &v) == 1) cfg_set_str(&o->credentials_profile, v);
    o->imds_endpoint = sh_strdup("http://169.254.169.254");
    get_url(el, "imds_endpoint", &o->imds_endpoint, &host, &hlen);

    cfg_get_nums(el, o, nums, sizeof nums / sizeof nums[0]);
    cfg_get_num(el, "attempts", NUM_INT, 1, 3, &n);
    o->attempts = (int)n;
}

static void parse_origins(scope *top, sh_config *cfg)
{
    config_setting_t *list = cfg_get_list(top, "origins", 1);

    if (!list) return;
    cfg->norigins = (size_t)config_setting_length(list);
    cfg->origins = sh_calloc(cfg->norigins, sizeof *cfg->origins);
    for (size_t i = 0; i < cfg->norigins; i++) {
        sh_origin_conf *o = &cfg->origins[i];
        config_setting_t *e = cfg_get_group_elem(top->ld, list, (int)i, "origins");
        const char *name = NULL;
        scope el;

        if (!e) continue;
        if (config_setting_lookup_string(e, "name", &name) && *name) o->name = sh_strdup(name);
        cfg_scope_elem(&el, top->ld, e, "origins", "origin", o->name);
        parse_origin(&el, o);
        for (size_t j = 0; o->name && j < i; j++) {
            if (cfg->origins[j].name && strcmp(cfg->origins[j].name, o->name) == 0) {
                cfg_err_at(top->ld, cfg_member(&el, "name"), "%sduplicate origin name", el.prefix);
                break;
            }
        }
    }
}

static void parse_ttls(scope *el, sh_behavior_conf *b)
{
    static const char *const keys[] = {"min_ttl", "default_ttl", "max_ttl"};
    int64_t *dst[] = {&b->min_ttl, &b->default_ttl, &b->max_ttl};
    int ok = 1;

    b->min_ttl = 0;
    b->default_ttl = 86400;
    b->max_ttl = 31536000;
    for (int i = 0; i < 3; i++) {
        uint64_t ms = (uint64_t)*dst[i] * SEC_MS;
        if (cfg_get_num(el, keys[i], NUM_DURATION, 0, MAX_TTL_S * SEC_MS, &ms) < 0) {
            ok = 0;
        } else if (ms % SEC_MS) {
            cfg_err_at(el->ld, cfg_member(el, keys[i]), "%s%s \"%s\": TTLs are whole seconds",
                       el->prefix, keys[i], config_setting_get_string(cfg_member(el, keys[i])));
            ok = 0;
        }
        *dst[i] = (int64_t)(ms / SEC_MS);
    }
    if (ok && !(b->min_ttl <= b->default_ttl && b->default_ttl <= b->max_ttl))
        cfg_err_at(el->ld, el->set,
                   "%sTTLs must satisfy min_ttl <= default_ttl <= max_ttl (got %lld, %lld, %lld)",
                   el->prefix, (long long)b->min_ttl, (long long)b->default_ttl,
                   (long long)b->max_ttl);
}

static void parse_behavior(scope *el, sh_config *cfg, sh_behavior_conf *b)
{
    config_setting_t *s;
    const char *v;
    scope hs;

    cfg_check_keys(
        el,
        "path origin allowed_methods cached_methods min_ttl default_ttl max_ttl forward_headers "
        "forward_query forward_cookies response_headers " EDGE_BEHAVIOR_KEYS);
    if (cfg_need_str(el, "path", 1, &v) && *v != '/' && *v != '*')
        cfg_err_at(el->ld, cfg_member(el, "path"), "%spath must start with '/' or '*'", el->prefix);
    else if (b->path && !cfg_is_field_value(b->path))
        cfg_err_at(el->ld, cfg_member(el, "path"), "%spath contains a control character",
                   el->prefix);

    if (cfg_get_str(el, "origin", &v) == 1)
        b->origin_name = sh_strdup(v);
    else if (cfg->norigins)
        b->origin_name = sh_strdup(cfg->origins[0].name);
    for (size_t i = 0; b->origin_name && i < cfg->norigins; i++)
        if (cfg->origins[i].name && strcmp(cfg->origins[i].name, b->origin_name) == 0)
            b->origin = &cfg->origins[i];
    if (!b->origin && b->origin_name && cfg_member(el, "origin"))
        cfg_err_at(el->ld, cfg_member(el, "origin"), "%sunknown origin \"%s\"", el->prefix,
                   b->origin_name);

    b->allowed_methods = SH_M_DEFAULT;
    if (cfg_get_strings(el, "allowed_methods", &s) == 1) {
        unsigned bits = 0, bad = 0;
        for (int i = 0; i < config_setting_length(s); i++) {
            const char *m = config_setting_get_string_elem(s, (unsigned)i);
            unsigned bit = sh_method_bit(m, strlen(m));
            if (!bit)
                cfg_err_at(el->ld, config_setting_get_elem(s, (unsigned)i),
                           "%sallowed_methods: unknown method \"%s\"", el->prefix, m);
            bits |= bit;
            bad |= !bit;
        }
        if (!bad && (bits & (SH_M_GET | SH_M_HEAD)) != (SH_M_GET | SH_M_HEAD))
            cfg_err_at(el->ld, s, "%sallowed_methods must include GET and HEAD", el->prefix);
        b->allowed_methods = bits;
    }

    b->cached_methods = SH_M_GET | SH_M_HEAD;
    if (cfg_get_strings(el, "cached_methods", &s) == 1) {
        unsigned bits = 0;
        for (int i = 0; i < config_setting_length(s); i++) {
            const char *m = config_setting_get_string_elem(s, (unsigned)i);
            bits |= sh_method_bit(m, strlen(m));
        }
        if (bits == (SH_M_GET | SH_M_HEAD) || bits == (SH_M_GET | SH_M_HEAD | SH_M_OPTIONS))
            b->cached_methods = bits;
        else
            cfg_err_at(el->ld, s,
                       "%scached_methods: expected [\"GET\", \"HEAD\"] or [\"GET\", "
                       "\"HEAD\", \"OPTIONS\"]",
                       el->prefix);
        if ((b->cached_methods & SH_M_OPTIONS) && !(b->allowed_methods & SH_M_OPTIONS))
            cfg_err_at(el->ld, s, "%scached_methods: OPTIONS is not in allowed_methods",
                       el->prefix);
    }

    parse_ttls(el, b);

    if (cfg_get_strings(el, "forward_headers", &s) == 1) {
        b->nforward_headers = (size_t)config_setting_length(s);
        b->forward_headers = sh_calloc(b->nforward_headers, sizeof(char *));
        for (size_t i = 0; i < b->nforward_headers; i++) {
            const char *h = config_setting_get_string_elem(s, (unsigned)i), *why;
            /* Listing one would not forward it, only key the cache on it. */
            if (!cfg_is_token(h))
                cfg_err_at(el->ld, config_setting_get_elem(s, (unsigned)i),
                           "%sforward_headers: \"%s\" is not a valid header name", el->prefix, h);
            else if ((why = sh_forward_never_why(h, strlen(h))))
                cfg_err_at(el->ld, config_setting_get_elem(s, (unsigned)i),
                           "%sforward_headers: \"%s\" is %s and is never forwarded", el->prefix, h,
                           why);
            b->forward_headers[i] = sh_strdup(h);
        }
    }
    cfg_get_bool(el, "forward_query", &b->forward_query);
    cfg_get_bool(el, "forward_cookies", &b->forward_cookies);

    copy_headers(&b->headers, &cfg->response_headers);
    if (cfg_opt_group(el, "response_headers", HDR_KEYS, &hs)) parse_headers(&hs, &b->headers);
    cfg_parse_behavior_edge(el, cfg, b);
}

static void parse_behaviors(scope *top, sh_config *cfg)
{
    config_setting_t *list = cfg_get_list(top, "behaviors", 1);
    const sh_behavior_conf *last;

    if (!list) return;
    cfg->nbehaviors = (size_t)config_setting_length(list);
    cfg->behaviors = sh_calloc(cfg->nbehaviors, sizeof *cfg->behaviors);
    for (size_t i = 0; i < cfg->nbehaviors; i++) {
        sh_behavior_conf *b = &cfg->behaviors[i];
        config_setting_t *e = cfg_get_group_elem(top->ld, list, (int)i, "behaviors");
        const char *path = NULL;
        scope el;

        if (!e) continue;
        b->line = config_setting_source_line(e);
        if (config_setting_lookup_string(e, "path", &path)) b->path = sh_strdup(path);
        cfg_scope_elem(&el, top->ld, e, "behaviors", "behavior", b->path);
        parse_behavior(&el, cfg, b);
        /* First match wins, so a repeated pattern could never be reached. */
        for (size_t j = 0; b->path && j < i; j++) {
            if (cfg->behaviors[j].path && strcmp(cfg->behaviors[j].path, b->path) == 0) {
                cfg_err_at(top->ld, e, "%sduplicate path pattern (first at line %d)", el.prefix,
                           cfg->behaviors[j].line);
                break;
            }
        }
    }
    /* Every request must match something; an explicit catch-all keeps that
     * fallback visible in the file instead of implied by the code. */
    last = &cfg->behaviors[cfg->nbehaviors - 1];
    if (last->path && strcmp(last->path, "*") != 0)
        cfg_err_at(top->ld, config_setting_get_elem(list, (unsigned)cfg->nbehaviors - 1),
                   "behaviors: the last behavior must have path \"*\"");
}

/*
 * The admin bearer token: the first line of token_file, trimmed. Read here and
 * not by the admin thread so that `shield -t` and a reload report a missing or
 * empty file as file:line instead of starting with an API nobody can use.
 */
static void read_admin_token(scope *as, sh_admin_conf *ad)
{
    char line[4098];
    FILE *f = fopen(ad->token_file, "r");
    if (!f) {
        cfg_err_at(as->ld, cfg_member(as, "token_file"), "admin.token_file \"%s\": cannot open: %s",
                   ad->token_file, strerror(errno));
        return;
    }
    char *r = fgets(line, sizeof line, f);
    int err = ferror(f);
    fclose(f);
    if (!r) line[0] = '\0';
    size_t n = strlen(line), b = 0;
    const char *why = err ? "cannot read" : NULL;
    if (!why && n == sizeof line - 1 && line[n - 1] != '\n')
        why = "first line longer than 4096 bytes";
    while (n && isspace((unsigned char)line[n - 1]))
        line[--n] = '\0';
    while (b < n && isspace((unsigned char)line[b]))
        b++;
    if (!why && b == n) why = "empty (the token is the first line)";
    for (size_t i = b; !why && i < n; i++)
        if (line[i] < 0x21 || line[i] > 0x7e)
            why = "the token must be visible ASCII without spaces";
    if (why)
        cfg_err_at(as->ld, cfg_member(as, "token_file"), "admin.token_file \"%s\": %s",
                   ad->token_file, why);
    else
        ad->token = sh_strdup(line + b);
    OPENSSL_cleanse(line, sizeof line);
}

static void parse_globals(scope *top, sh_config *cfg)
{
    /* CloudFront's viewer limits: sizes in bytes, and counts. */
#define LIMIT(key, kind, def, min) NUM(sh_limits_conf, #key, key, kind, def, min, SIZE_MAX)
    static const num_field limits[] = {LIMIT(max_header_size, NUM_SIZE, 20480, 1024),
                                       LIMIT(max_url, NUM_SIZE, 8192, 64),
                                       LIMIT(max_headers, NUM_COUNT, 100, 1),
                                       LIMIT(max_body_size, NUM_SIZE, 1 << 20, 0),
                                       LIMIT(max_connections, NUM_COUNT, 10000, 1),
                                       LIMIT(max_requests_per_connection, NUM_COUNT, 0, 0)};
    /* Timer arithmetic is 64-bit ms; a year is plenty and cannot overflow. */
#define TIMEOUT(key, def, min)                                                                     \
    NUM(sh_timeouts_conf, #key, key##_ms, NUM_DURATION, def, min, MAX_TIMER_MS)
    static const num_field timeouts[] = {TIMEOUT(header, 10000, 1), TIMEOUT(body, 30000, 1),
                                         TIMEOUT(keepalive, 60000, 1), TIMEOUT(send, 60000, 1),
                                         TIMEOUT(drain, 30000, 0)};
    const char *v;
    scope sc;

    for (size_t i = 0; i < NHDR; i++)
        *HDR_FIELD(&cfg->response_headers, i) = sh_strdup(hdr_fields[i].seed);
    cfg->response_headers.override_origin = 1;
    if (cfg_opt_group(top, "response_headers", HDR_KEYS, &sc))
        parse_headers(&sc, &cfg->response_headers);

    cfg->default_root_object = sh_strdup("");
    if (cfg_get_str(top, "default_root_object", &v) == 1) {
        if (*v == '/' || !cfg_is_field_value(v) || strpbrk(v, " ?#"))
            cfg_err_at(top->ld, cfg_member(top, "default_root_object"),
                       "default_root_object \"%s\": expected an object name like \"index.html\" "
                       "(no leading '/')",
                       v);
        else
            cfg_set_str(&cfg->default_root_object, v);
    }

    cfg_get_nums(cfg_opt_group(top, "limits",
                               "max_header_size max_url max_headers max_body_size max_connections "
                               "max_requests_per_connection",
                               &sc),
                 &cfg->limits, limits, sizeof limits / sizeof limits[0]);
    cfg_get_nums(cfg_opt_group(top, "timeouts", "header body keepalive send drain", &sc),
                 &cfg->timeouts, timeouts, sizeof timeouts / sizeof timeouts[0]);

#define CACHE_SIZE(key, def, min) NUM(sh_cache_conf, #key, key, NUM_SIZE, def, min, SIZE_MAX)
    static const num_field cache[] = {CACHE_SIZE(memory_size, 256 << 20, 1 << 20),
                                      CACHE_SIZE(max_object_size, 64 << 20, 1)};
    scope *cs = cfg_opt_group(top, "cache", "enabled memory_size max_object_size disk", &sc);
    cfg->cache.enabled = 1;
    if (cs) cfg_get_bool(cs, "enabled", &cfg->cache.enabled);
    cfg_get_nums(cs, &cfg->cache, cache, sizeof cache / sizeof cache[0]);
    static const num_field disk[] = {
        NUM(sh_cache_conf, "size", disk_size, NUM_SIZE, 10ULL << 30, 1 << 20, SIZE_MAX)};
    scope dsc;
    scope *ds = cs ? cfg_opt_group(cs, "disk", "path size", &dsc) : NULL;
    cfg->cache.disk_path = sh_strdup("");
    cfg_get_nums(ds, &cfg->cache, disk, 1);
    if (ds && cfg_get_str(ds, "path", &v) == 1) cfg_set_str(&cfg->cache.disk_path, v);

    cfg->admin.address = sh_strdup("");
    cfg->admin.token_file = sh_strdup("");
    scope *as = cfg_opt_group(top, "admin", "address token_file", &sc);
    if (as && cfg_get_str(as, "address", &v) == 1 && *v) {
        if (sh_parse_address(v, &cfg->admin.addr, &cfg->admin.addrlen) != 0)
            cfg_err_at(top->ld, cfg_member(as, "address"),
                       "admin.address \"%s\": expected host:port with a numeric address", v);
        else
            cfg_set_str(&cfg->admin.address, v);
    }
    if (as && cfg_get_str(as, "token_file", &v) == 1 && *v) {
        cfg_set_str(&cfg->admin.token_file, v);
        read_admin_token(as, &cfg->admin);
    }
}

/* ---- entry points ----------------------------------------------------------------------- */

/*
 * libconfig puts an error at the end of a file that ends in a newline on the
 * line after the last, which no editor has: the unfinished setting is on the
 * last line, so that is the one named.
 */
static unsigned error_line(const char *file, int line)
{
    unsigned lines = 0;
    int c, last = '\n';
    FILE *f;

    if (line <= 0) return 0;
    if (!(f = fopen(file, "r"))) return (unsigned)line;
    while ((c = getc(f)) != EOF) {
        lines += c == '\n';
        last = c;
    }
    fclose(f);
    lines += last != '\n';
    return lines && (unsigned)line > lines ? lines : (unsigned)line;
}

sh_config *sh_config_load(const char *path, void *errs)
{
    loader ld = {errs ? errs : stderr, path, 0};
    struct stat st;
    sh_config *cfg;
    config_t lc;
    scope top;
    FILE *f;

    /* libconfig only says "file I/O error"; the operator wants to know why. */
    f = fopen(path, "r");
    if (f && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        f = NULL;
        errno = EISDIR;
    }
    if (!f) {
        fprintf(ld.errs, "%s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    fclose(f);

    if (cfg_check_includes(&ld)) return NULL;
    config_init(&lc);
    if (!config_read_file(&lc, path)) {
        const char *ef = config_error_file(&lc) ? config_error_file(&lc) : path;
        cfg_err_line(&ld, ef, error_line(ef, config_error_line(&lc)), "%s", config_error_text(&lc));
        config_destroy(&lc);
        return NULL;
    }
    /* Like a syntax error, this ends the run: checking the values libconfig
     * made of such numbers would only add messages about numbers nobody wrote. */
    if (cfg_check_int_literals(&ld, &lc)) {
        config_destroy(&lc);
        return NULL;
    }

    cfg = sh_calloc(1, sizeof *cfg);
    cfg->file = sh_strdup(path);
    top = (scope){.ld = &ld, .set = config_root_setting(&lc)};
    cfg_check_keys(&top,
                   "node listen origins behaviors response_headers default_root_object limits "
                   "timeouts cache admin " EDGE_TOP_KEYS);
    parse_node(&top, cfg);
    parse_listen(&top, cfg);
    parse_origins(&top, cfg);
    parse_globals(&top, cfg);
    cfg_parse_edge(&top, cfg);
    parse_behaviors(&top, cfg);
    cfg_check_edge(&top, cfg);
    config_destroy(&lc);

    if (ld.nerr) {
        sh_config_free(cfg);
        return NULL;
    }
    return cfg;
}

void sh_config_free(sh_config *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; i < cfg->nlisten; i++)
        sh_free(cfg->listen[i].address);
    for (size_t i = 0; i < cfg->norigins; i++) {
        sh_origin_conf *o = &cfg->origins[i];
        char *strs[] = {o->name,         o->endpoint,         o->bucket,
                        o->region,       o->credentials_file, o->credentials_profile,
                        o->imds_endpoint};
        for (size_t j = 0; j < sizeof strs / sizeof strs[0]; j++)
            sh_free(strs[j]);
    }
    for (size_t i = 0; i < cfg->nbehaviors; i++) {
        sh_behavior_conf *b = &cfg->behaviors[i];
        for (size_t j = 0; j < b->nforward_headers; j++)
            sh_free(b->forward_headers[j]);
        sh_free(b->forward_headers);
        sh_free(b->path);
        sh_free(b->origin_name);
        free_headers(&b->headers);
        cfg_free_behavior_edge(b);
    }
    cfg_free_edge(cfg);
    free_headers(&cfg->response_headers);
    sh_free(cfg->listen);
    sh_free(cfg->origins);
    sh_free(cfg->behaviors);
    sh_free(cfg->default_root_object);
    sh_free(cfg->admin.address);
    sh_free(cfg->admin.token_file);
    if (cfg->admin.token) OPENSSL_cleanse(cfg->admin.token, strlen(cfg->admin.token));
    sh_free(cfg->admin.token);
    sh_free(cfg->cache.disk_path);
    sh_free(cfg->error_log);
    sh_free(cfg->node_name);
    sh_free(cfg->pop);
    sh_free(cfg->file);
    sh_free(cfg);
}
