/*
 * Config groups of the edge-security modules: TLS, trusted proxies, signed
 * URLs, SigV4, geo, rate limits, input rules, and the per-behavior keys
 * viewer_protocol / signed / compress / cors.
 *
 * Key material is loaded here, not in the modules, so that a missing or
 * unreadable PEM is reported as "file:line" by `shield -t` and a reload with a
 * bad key is refused as a whole instead of half-applied.
 */
#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"
#include "shield/alloc.h"
#include "shield/tls.h"

#define SEC(n) ((uint64_t)(n)*SEC_MS)

/* One of a fixed set of words; index or -1 (reported). absent => *out untouched. */
static int get_enum(scope *sc, const char *key, const char *const *words, int *out)
{
    const char *v;
    if (cfg_get_str(sc, key, &v) != 1) return 0;
    for (int i = 0; words[i]; i++) {
        if (strcmp(v, words[i]) == 0) {
            *out = i;
            return 1;
        }
    }
    char list[256] = "";
    for (int i = 0; words[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%s\"", i ? ", " : "",
                 words[i]);
    cfg_err_at(sc->ld, cfg_member(sc, key), "%s%s \"%s\": expected one of %s", sc->prefix, key, v,
               list);
    return -1;
}

static void get_cidrs(scope *sc, const char *key, sh_cidr **out, size_t *n)
{
    config_setting_t *s;
    if (cfg_get_strings(sc, key, &s) != 1) return;
    *n = 0;
    *out = sh_calloc((size_t)config_setting_length(s) + 1, sizeof **out);
    for (int i = 0; i < config_setting_length(s); i++) {
        const char *v = config_setting_get_string_elem(s, (unsigned)i);
        if (sh_cidr_parse(v, &(*out)[*n]) == 0)
            (*n)++;
        else
            cfg_err_at(sc->ld, config_setting_get_elem(s, (unsigned)i),
                       "%s%s: \"%s\" is not an address or CIDR range", sc->prefix, key, v);
    }
}

static int readable(scope *sc, const char *key, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f) {
        fclose(f);
        return 1;
    }
    cfg_err_at(sc->ld, cfg_member(sc, key), "%s%s \"%s\": cannot open: %s", sc->prefix, key, path,
               strerror(errno));
    return 0;
}

/* ---- tls ---------------------------------------------------------------------------------- */

static void check_cert(scope *el, sh_tls_cert_conf *c)
{
    if (!readable(el, "cert", c->cert) || !readable(el, "key", c->key)) return;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return;
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1)
        cfg_err_at(el->ld, cfg_member(el, "cert"), "%scert \"%s\": %s", el->prefix, c->cert,
                   sh_ssl_error());
    else if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1 ||
             SSL_CTX_check_private_key(ctx) != 1) {
        /* The common mistake gets words, not an OpenSSL error code. */
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH ||
            ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_PRIVATE_KEY_MISMATCH) {
            ERR_clear_error();
            cfg_err_at(el->ld, el->set, "%skey \"%s\" does not match cert \"%s\"", el->prefix,
                       c->key, c->cert);
        } else {
            cfg_err_at(el->ld, cfg_member(el, "key"), "%skey \"%s\": %s", el->prefix, c->key,
                       sh_ssl_error());
        }
    }
    SSL_CTX_free(ctx);
}

static void parse_tls(scope *top, sh_config *cfg)
{
    static const num_field nums[] = {NUM(sh_tls_conf, "ticket_rotate", ticket_rotate_ms,
                                         NUM_DURATION, 3600000, 1000, MAX_TIMER_MS),
                                     NUM(sh_tls_conf, "session_timeout", session_timeout_ms,
                                         NUM_DURATION, 300000, 1000, 86400000)};
    sh_tls_conf *t = &cfg->tls;
    const char *v;
    scope sc, *ts;

    t->policy = sh_strdup("TLSv1.2_2021");
    t->session_tickets = 1;
    ts = cfg_opt_group(top, "tls",
                       "policy certificates session_tickets ticket_rotate session_timeout", &sc);
    cfg_get_nums(ts, t, nums, sizeof nums / sizeof nums[0]);
    if (!ts) return;
    t->line = config_setting_source_line(ts->set);
    if (cfg_get_str(ts, "policy", &v) == 1) {
        if (strcmp(v, "TLSv1.2_2021") != 0)
            cfg_err_at(top->ld, cfg_member(ts, "policy"),
                       "tls.policy \"%s\": only \"TLSv1.2_2021\" is supported", v);
    }
    cfg_get_bool(ts, "session_tickets", &t->session_tickets);
    config_setting_t *list = cfg_get_list(ts, "certificates", 0);
    if (!list) return;
    t->certs = sh_calloc((size_t)config_setting_length(list) + 1, sizeof *t->certs);
    for (int i = 0; i < config_setting_length(list); i++) {
        config_setting_t *e = cfg_get_group_elem(top->ld, list, i, "tls.certificates");
        const char *cert, *key;
        scope el;
        if (!e) continue;
        cfg_scope_elem(&el, top->ld, e, "tls.certificates", NULL, NULL);
        cfg_check_keys(&el, "cert key");
        /* both looked up before deciding, so a group missing both gets both messages */
        int has_cert = cfg_need_str(&el, "cert", 1, &cert),
            has_key = cfg_need_str(&el, "key", 1, &key);
        if (!has_cert || !has_key) continue;
        sh_tls_cert_conf *c = &t->certs[t->ncerts++];
        c->cert = sh_strdup(cert);
        c->key = sh_strdup(key);
        c->line = config_setting_source_line(e);
        check_cert(&el, c);
    }
}

/* ---- trusted proxies ------------------------------------------------------------------------ */

static void parse_trusted(scope *top, sh_config *cfg)
{
    static const char *const positions[] = {"last-untrusted", "first", NULL};
    sh_trusted_conf *t = &cfg->trusted;
    const char *v;
    scope sc, *ts;

    t->header = sh_strdup("X-Forwarded-For");
    t->country_header = sh_strdup("");
    t->viewer_address = 1;
    ts = cfg_opt_group(top, "trusted_proxies",
                       "cidrs header position viewer_address country_header", &sc);
    if (!ts) return;
    get_cidrs(ts, "cidrs", &t->cidrs, &t->ncidrs);
    if (cfg_get_str(ts, "header", &v) == 1) {
        if (cfg_is_token(v))
            cfg_set_str(&t->header, v);
        else
            cfg_err_at(top->ld, cfg_member(ts, "header"),
                       "trusted_proxies.header \"%s\": not a header name", v);
    }
    get_enum(ts, "position", positions, &t->use_first);
    cfg_get_bool(ts, "viewer_address", &t->viewer_address);
    if (cfg_get_str(ts, "country_header", &v) == 1) {
        if (!*v || cfg_is_token(v))
            cfg_set_str(&t->country_header, v);
        else
            cfg_err_at(top->ld, cfg_member(ts, "country_header"),
                       "trusted_proxies.country_header \"%s\": not a header name", v);
    }
}

/* ---- signed URLs ---------------------------------------------------------------------------- */

static void *load_public_key(scope *el, const char *path)
{
    if (!readable(el, "public_key", path)) return NULL;
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!k) {
        cfg_err_at(el->ld, cfg_member(el, "public_key"),
                   "%spublic_key \"%s\": not a PEM public key (BEGIN PUBLIC KEY): %s", el->prefix,
                   path, sh_ssl_error());
        return NULL;
    }
    int ok = EVP_PKEY_base_id(k) == EVP_PKEY_RSA;
    if (EVP_PKEY_base_id(k) == EVP_PKEY_EC) {
        char group[64] = "";
        size_t gl = 0;
        EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof group, &gl);
        ok = strcmp(group, "prime256v1") == 0;
    }
    if (!ok) {
        cfg_err_at(el->ld, cfg_member(el, "public_key"),
                   "%spublic_key \"%s\": expected an RSA or ECDSA P-256 key", el->prefix, path);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

static void parse_signed_urls(scope *top, sh_config *cfg)
{
    sh_signed_urls_conf *s = &cfg->signed_urls;
    scope sc, *ss = cfg_opt_group(top, "signed_urls", "key_groups", &sc);
    config_setting_t *list;

    if (!ss || !(list = cfg_get_list(ss, "key_groups", 0))) return;
    s->keys = sh_calloc((size_t)config_setting_length(list) + 1, sizeof *s->keys);
    for (int i = 0; i < config_setting_length(list); i++) {
        config_setting_t *e = cfg_get_group_elem(top->ld, list, i, "signed_urls.key_groups");
        const char *id = NULL, *pk;
        scope el;
        if (!e) continue;
        config_setting_lookup_string(e, "id", &id);
        cfg_scope_elem(&el, top->ld, e, "signed_urls.key_groups", "key", id);
        cfg_check_keys(&el, "id public_key");
        int has_id = cfg_need_str(&el, "id", 1, &id),
            has_pk = cfg_need_str(&el, "public_key", 1, &pk);
        if (!has_id || !has_pk) continue;
        if (!cfg_is_token(id)) {
            cfg_err_at(top->ld, cfg_member(&el, "id"), "%sid: unexpected characters", el.prefix);
            continue;
        }
        for (size_t j = 0; j < s->nkeys; j++)
            if (strcmp(s->keys[j].id, id) == 0)
                cfg_err_at(top->ld, e, "%sduplicate key id", el.prefix);
        sh_cf_key_conf *k = &s->keys[s->nkeys++];
        k->id = sh_strdup(id);
        k->public_key = sh_strdup(pk);
        k->line = config_setting_source_line(e);
        k->pkey = load_public_key(&el, pk);
    }
}

/* ---- SigV4 ---------------------------------------------------------------------------------- */

static char *read_secret(scope *el, const char *path)
{
    char line[512];
    if (!readable(el, "secret_file", path)) return NULL;
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *r = fgets(line, sizeof line, f);
    fclose(f);
    if (!r) line[0] = '\0';
    size_t n = strlen(line);
    while (n && isspace((unsigned char)line[n - 1]))
        line[--n] = '\0';
    if (!n) {
        cfg_err_at(el->ld, cfg_member(el, "secret_file"), "%ssecret_file \"%s\": empty", el->prefix,
                   path);
        return NULL;
    }
    return sh_strdup(line);
}

static void parse_sigv4(scope *top, sh_config *cfg)
{
    static const num_field nums[] = {
        NUM(sh_sigv4_conf, "max_skew", max_skew_ms, NUM_DURATION, 900000, 1000, 7 * 86400000ULL)};
    sh_sigv4_conf *s = &cfg->sigv4;
    const char *v;
    scope sc, *ss;
    config_setting_t *list;

    s->region = sh_strdup("us-east-1");
    s->service = sh_strdup("s3");
    ss = cfg_opt_group(top, "sigv4", "region service max_skew keys", &sc);
    cfg_get_nums(ss, s, nums, 1);
    if (!ss) return;
    if (cfg_get_str(ss, "region", &v) == 1) cfg_set_str(&s->region, v);
    if (cfg_get_str(ss, "service", &v) == 1) cfg_set_str(&s->service, v);
    if (!(list = cfg_get_list(ss, "keys", 0))) return;
    s->keys = sh_calloc((size_t)config_setting_length(list) + 1, sizeof *s->keys);
    for (int i = 0; i < config_setting_length(list); i++) {
        config_setting_t *e = cfg_get_group_elem(top->ld, list, i, "sigv4.keys");
        const char *ak = NULL, *sec;
        scope el;
        if (!e) continue;
        config_setting_lookup_string(e, "access_key", &ak);
        cfg_scope_elem(&el, top->ld, e, "sigv4.keys", "access key", ak);
        cfg_check_keys(&el, "access_key secret secret_file");
        if (!cfg_need_str(&el, "access_key", 1, &ak)) continue;
        char *secret = NULL;
        int has_s = cfg_get_str(&el, "secret", &sec) == 1,
            has_f = cfg_member(&el, "secret_file") != NULL;
        if (has_s && has_f) {
            cfg_err_at(top->ld, e, "%suse secret or secret_file, not both", el.prefix);
            continue;
        }
        if (has_s)
            secret = *sec ? sh_strdup(sec) : NULL;
        else if (cfg_get_str(&el, "secret_file", &sec) == 1)
            secret = read_secret(&el, sec);
        else
            cfg_missing(&el, "secret_file");
        if (has_s && !secret)
            cfg_err_at(top->ld, cfg_member(&el, "secret"), "%ssecret must not be empty", el.prefix);
        if (!secret) continue;
        for (size_t j = 0; j < s->nkeys; j++)
            if (strcmp(s->keys[j].access_key, ak) == 0)
                cfg_err_at(top->ld, e, "%sduplicate access key", el.prefix);
        sh_sigv4_key_conf *k = &s->keys[s->nkeys++];
        k->access_key = sh_strdup(ak);
        k->secret = secret;
        k->line = config_setting_source_line(e);
    }
}

/* ---- geo ------------------------------------------------------------------------------------ */

static void parse_geo(scope *top, sh_config *cfg)
{
    static const char *const modes[] = {"none", "allowlist", "blocklist", NULL};
    sh_geo_conf *g = &cfg->geo;
    const char *v;
    int mode = SH_GEO_NONE;
    config_setting_t *s;
    scope sc, *gs;

    g->database = sh_strdup("");
    gs = cfg_opt_group(top, "geo", "database mode countries", &sc);
    if (!gs) return;
    g->line = config_setting_source_line(gs->set);
    if (cfg_get_str(gs, "database", &v) == 1 && *v) {
        cfg_set_str(&g->database, v);
        readable(gs, "database", v);
    }
    get_enum(gs, "mode", modes, &mode);
    g->mode = (sh_geo_mode)mode;
    if (cfg_get_strings(gs, "countries", &s) == 1) {
        g->countries = sh_calloc((size_t)config_setting_length(s) + 1, sizeof *g->countries);
        for (int i = 0; i < config_setting_length(s); i++) {
            const char *c = config_setting_get_string_elem(s, (unsigned)i);
            if (strlen(c) != 2 || !isalpha((unsigned char)c[0]) || !isalpha((unsigned char)c[1])) {
                cfg_err_at(top->ld, config_setting_get_elem(s, (unsigned)i),
                           "geo.countries: \"%s\" is not an ISO 3166-1 alpha-2 code", c);
                continue;
            }
            g->countries[g->ncountries][0] = (char)toupper((unsigned char)c[0]);
            g->countries[g->ncountries][1] = (char)toupper((unsigned char)c[1]);
            g->ncountries++;
        }
    }
    if (g->mode != SH_GEO_NONE && !*g->database)
        cfg_err_at(top->ld, gs->set, "geo: mode \"%s\" needs a database", modes[g->mode]);
    if (g->mode != SH_GEO_NONE && !g->ncountries && !cfg_member(gs, "countries"))
        cfg_missing(gs, "countries");
}

/* ---- rate limit ----------------------------------------------------------------------------- */

static void parse_ratelimit(scope *top, sh_config *cfg)
{
    static const char *const keys[] = {"ip", "forwarded_ip", NULL};
    static const char *const fallbacks[] = {"no_match", "match", NULL};
    sh_ratelimit_conf *r = &cfg->rate_limit;
    uint64_t n;
    const char *v;
    scope sc, *rs;

    r->limit = 2000;
    r->window_s = 300;
    r->header = sh_strdup("X-Forwarded-For");
    r->status = 403;
    r->max_clients = 100000;
    rs = cfg_opt_group(top, "rate_limit",
                       "enabled limit window key header fallback status max_clients", &sc);
    if (!rs) return;
    r->enabled = 1;
    cfg_get_bool(rs, "enabled", &r->enabled);
    cfg_get_num(rs, "limit", NUM_INT, 10, 2000000000, &r->limit);
    uint64_t wms = r->window_s * SEC_MS;
    if (cfg_get_num(rs, "window", NUM_DURATION, SEC(60), SEC(600), &wms) == 1) {
        if (wms != SEC(60) && wms != SEC(120) && wms != SEC(300) && wms != SEC(600))
            cfg_err_at(top->ld, cfg_member(rs, "window"),
                       "rate_limit.window: must be 60, 120, 300 or 600 seconds");
        else
            r->window_s = wms / SEC_MS;
    }
    get_enum(rs, "key", keys, &r->forwarded);
    if (cfg_get_str(rs, "header", &v) == 1) {
        if (cfg_is_token(v))
            cfg_set_str(&r->header, v);
        else
            cfg_err_at(top->ld, cfg_member(rs, "header"),
                       "rate_limit.header \"%s\": not a header name", v);
    }
    get_enum(rs, "fallback", fallbacks, &r->fallback_match);
    if (cfg_get_num(rs, "status", NUM_INT, 400, 599, &n) == 1) r->status = (int)n;
    if (cfg_get_num(rs, "max_clients", NUM_COUNT, 1024, 100000000, &n) == 1)
        r->max_clients = (size_t)n;
}

/* ---- waf ------------------------------------------------------------------------------------ */

static void parse_waf(scope *top, sh_config *cfg)
{
#define WAF_SIZE(key, def, min) NUM(sh_waf_conf, #key, key, NUM_SIZE, def, min, SIZE_MAX)
    static const num_field nums[] = {WAF_SIZE(max_uri, 8192, 16), WAF_SIZE(max_query, 8192, 0),
                                     WAF_SIZE(max_header, 20480, 64)};
    sh_waf_conf *w = &cfg->waf;
    config_setting_t *s;
    scope sc, *ws;

    w->enabled = 1;
    w->methods =
        SH_M_GET | SH_M_HEAD | SH_M_OPTIONS | SH_M_PUT | SH_M_POST | SH_M_PATCH | SH_M_DELETE;
    w->block_traversal = 1;
    ws = cfg_opt_group(top, "waf",
                       "enabled allowed_methods max_uri max_query max_header block_traversal "
                       "allow_encoded_slash",
                       &sc);
    cfg_get_nums(ws, w, nums, sizeof nums / sizeof nums[0]);
    if (!ws) return;
    cfg_get_bool(ws, "enabled", &w->enabled);
    cfg_get_bool(ws, "block_traversal", &w->block_traversal);
    cfg_get_bool(ws, "allow_encoded_slash", &w->allow_encoded_slash);
    if (cfg_get_strings(ws, "allowed_methods", &s) == 1) {
        w->methods = 0;
        for (int i = 0; i < config_setting_length(s); i++) {
            const char *m = config_setting_get_string_elem(s, (unsigned)i);
            unsigned bit = sh_method_bit(m, strlen(m));
            if (!bit)
                cfg_err_at(top->ld, config_setting_get_elem(s, (unsigned)i),
                           "waf.allowed_methods: unknown method \"%s\"", m);
            w->methods |= bit;
        }
    }
}

void cfg_parse_edge(scope *top, sh_config *cfg)
{
    parse_tls(top, cfg);
    parse_trusted(top, cfg);
    parse_signed_urls(top, cfg);
    parse_sigv4(top, cfg);
    parse_geo(top, cfg);
    parse_ratelimit(top, cfg);
    parse_waf(top, cfg);
    cfg_parse_log(top, cfg);
    cfg_parse_alarms(top, cfg);
}

/* ---- behaviors ------------------------------------------------------------------------------ */

static char *join_strings(config_setting_t *s)
{
    size_t n = 1;
    for (int i = 0; i < config_setting_length(s); i++)
        n += strlen(config_setting_get_string_elem(s, (unsigned)i)) + 2;
    char *out = sh_malloc(n);
    out[0] = '\0';
    for (int i = 0; i < config_setting_length(s); i++) {
        if (i) strcat(out, ", ");
        strcat(out, config_setting_get_string_elem(s, (unsigned)i));
    }
    return out;
}

static void parse_cors(scope *el, sh_cors_conf *c)
{
    config_setting_t *s;
    uint64_t ms;
    scope sc, *cs;

    c->max_age = 600;
    cs = cfg_opt_group(el, "cors",
                       "allow_origins allow_methods allow_headers expose_headers max_age "
                       "allow_credentials",
                       &sc);
    if (!cs) return;
    c->enabled = 1;
    if (cfg_get_strings(cs, "allow_origins", &s) == 1) {
        c->nallow_origins = (size_t)config_setting_length(s);
        c->allow_origins = sh_calloc(c->nallow_origins + 1, sizeof(char *));
        for (size_t i = 0; i < c->nallow_origins; i++) {
            const char *o = config_setting_get_string_elem(s, (unsigned)i);
            if (!cfg_is_field_value(o) || !*o)
                cfg_err_at(el->ld, config_setting_get_elem(s, (unsigned)i),
                           "%scors.allow_origins: \"%s\" is not an origin", el->prefix, o);
            c->allow_origins[i] = sh_strdup(o);
        }
    } else if (!cfg_member(cs, "allow_origins")) {
        cfg_missing(cs, "allow_origins");
    }
    const char *lists[] = {"allow_methods", "allow_headers", "expose_headers"};
    char **dst[] = {&c->allow_methods, &c->allow_headers, &c->expose_headers};
    for (int i = 0; i < 3; i++) {
        if (cfg_get_strings(cs, lists[i], &s) == 1) {
            *dst[i] = join_strings(s);
            if (!cfg_is_field_value(*dst[i]))
                cfg_err_at(el->ld, s, "%scors.%s: contains a control character", el->prefix,
                           lists[i]);
        } else {
            *dst[i] = sh_strdup(i == 0 ? "GET, HEAD" : "");
        }
    }
    ms = (uint64_t)c->max_age * SEC_MS;
    if (cfg_get_num(cs, "max_age", NUM_DURATION, 0, SEC(86400 * 365), &ms) == 1)
        c->max_age = (int64_t)(ms / SEC_MS);
    cfg_get_bool(cs, "allow_credentials", &c->allow_credentials);
    for (size_t i = 0; c->allow_credentials && i < c->nallow_origins; i++)
        if (strcmp(c->allow_origins[i], "*") == 0)
            cfg_err_at(el->ld, cfg_member(cs, "allow_credentials"),
                       "%scors: allow_credentials cannot be used with allow_origins \"*\"",
                       el->prefix);
}

void cfg_parse_behavior_edge(scope *el, sh_config *cfg, sh_behavior_conf *b)
{
    static const char *const protocols[] = {"allow-all", "redirect-to-https", "https-only", NULL};
    static const char *const signers[] = {"none", "cloudfront", "sigv4", NULL};
    int v = 0;

    (void)cfg;
    if (get_enum(el, "viewer_protocol", protocols, &v) == 1) b->viewer_protocol = v;
    v = 0;
    if (get_enum(el, "signed", signers, &v) == 1) b->signed_mode = v;
    cfg_get_bool(el, "compress", &b->compress);
    parse_cors(el, &b->cors);
}

void cfg_check_edge(scope *top, sh_config *cfg)
{
    int any_tls = 0;
    for (size_t i = 0; i < cfg->nlisten; i++)
        any_tls |= cfg->listen[i].tls;
    if (any_tls && !cfg->tls.ncerts)
        cfg_err_at(top->ld, cfg_member(top, "listen"),
                   "listen: a TLS listener needs tls.certificates");
    for (size_t i = 0; i < cfg->nbehaviors; i++) {
        const sh_behavior_conf *b = &cfg->behaviors[i];
        if (b->viewer_protocol == SH_VIEWER_REDIRECT && !any_tls)
            cfg_err_at(top->ld, config_setting_get_elem(cfg_member(top, "behaviors"), (unsigned)i),
                       "behavior \"%s\": viewer_protocol \"redirect-to-https\" needs a listener "
                       "with tls = true",
                       b->path ? b->path : "?");
        if (b->signed_mode == SH_SIGNED_CLOUDFRONT && !cfg->signed_urls.nkeys)
            cfg_err_at(top->ld, config_setting_get_elem(cfg_member(top, "behaviors"), (unsigned)i),
                       "behavior \"%s\": signed = \"cloudfront\" needs signed_urls.key_groups",
                       b->path ? b->path : "?");
        if (b->signed_mode == SH_SIGNED_SIGV4 && !cfg->sigv4.nkeys)
            cfg_err_at(top->ld, config_setting_get_elem(cfg_member(top, "behaviors"), (unsigned)i),
                       "behavior \"%s\": signed = \"sigv4\" needs sigv4.keys",
                       b->path ? b->path : "?");
    }
}

void cfg_free_behavior_edge(sh_behavior_conf *b)
{
    sh_cors_conf *c = &b->cors;
    for (size_t i = 0; i < c->nallow_origins; i++)
        sh_free(c->allow_origins[i]);
    sh_free(c->allow_origins);
    sh_free(c->allow_methods);
    sh_free(c->allow_headers);
    sh_free(c->expose_headers);
}

void cfg_free_edge(sh_config *cfg)
{
    for (size_t i = 0; i < cfg->tls.ncerts; i++) {
        sh_free(cfg->tls.certs[i].cert);
        sh_free(cfg->tls.certs[i].key);
    }
    sh_free(cfg->tls.certs);
    sh_free(cfg->tls.policy);
    sh_free(cfg->trusted.cidrs);
    sh_free(cfg->trusted.header);
    sh_free(cfg->trusted.country_header);
    for (size_t i = 0; i < cfg->signed_urls.nkeys; i++) {
        sh_free(cfg->signed_urls.keys[i].id);
        sh_free(cfg->signed_urls.keys[i].public_key);
        EVP_PKEY_free(cfg->signed_urls.keys[i].pkey);
    }
    sh_free(cfg->signed_urls.keys);
    for (size_t i = 0; i < cfg->sigv4.nkeys; i++) {
        sh_free(cfg->sigv4.keys[i].access_key);
        if (cfg->sigv4.keys[i].secret) {
            OPENSSL_cleanse(cfg->sigv4.keys[i].secret, strlen(cfg->sigv4.keys[i].secret));
            sh_free(cfg->sigv4.keys[i].secret);
        }
    }
    sh_free(cfg->sigv4.keys);
    sh_free(cfg->sigv4.region);
    sh_free(cfg->sigv4.service);
    sh_free(cfg->geo.database);
    sh_free(cfg->geo.countries);
    sh_free(cfg->rate_limit.header);
    cfg_free_log(cfg);
}
