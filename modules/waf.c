/*
 * Input rules: a small WAF common rule set, run first (SANITY phase), so that
 * nothing later — behavior matching, signature checks, the cache key, the S3
 * key — ever sees a path that two parties could read differently.
 *
 * The rules and their statuses are listed in include/shield/waf.h. A rejected
 * request gets an ordinary response on a connection that stays usable (as
 * CloudFront's WAF does); the core closes it instead when a body was not read.
 */
#include <string.h>

#include "shield/alloc.h"
#include "shield/log.h"
#include "shield/module.h"
#include "shield/waf.h"

static const struct {
    int status;
    const char *detail;
    const char *name;
} rules[SH_WAF_RULE_COUNT] = {
    [SH_WAF_PASS] = {0, NULL, "pass"},
    [SH_WAF_METHOD] = {403, "InvalidRequestMethod", "method"},
    [SH_WAF_METHOD_UNKNOWN] = {501, "InvalidRequestMethod", "method_unknown"},
    [SH_WAF_URI_SIZE] = {414, "InvalidRequest", "uri_size"},
    [SH_WAF_QUERY_SIZE] = {414, "InvalidRequest", "query_size"},
    [SH_WAF_HEADER_SIZE] = {431, "InvalidRequestHeader", "header_size"},
    [SH_WAF_BAD_ESCAPE] = {400, "InvalidRequest", "bad_escape"},
    [SH_WAF_CONTROL] = {400, "InvalidRequest", "control"},
    [SH_WAF_BACKSLASH] = {403, "InvalidRequestBlocked", "backslash"},
    [SH_WAF_ENCODED_SLASH] = {403, "InvalidRequestBlocked", "encoded_slash"},
    [SH_WAF_TRAVERSAL] = {403, "InvalidRequestBlocked", "traversal"},
};

int sh_waf_rule_status(sh_waf_rule r)
{
    return (unsigned)r < SH_WAF_RULE_COUNT ? rules[r].status : 0;
}

const char *sh_waf_rule_detail(sh_waf_rule r)
{
    return (unsigned)r < SH_WAF_RULE_COUNT ? rules[r].detail : NULL;
}

const char *sh_waf_rule_name(sh_waf_rule r)
{
    return (unsigned)r < SH_WAF_RULE_COUNT ? rules[r].name : "?";
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* The byte an escape at s[i] stands for, or -1 if s[i] does not start a
 * well-formed "%XX". */
static int escape_at(const char *s, size_t n, size_t i)
{
    if (s[i] != '%' || n - i < 3) return -1;
    int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

/* One round of percent-decoding, in place (the output never outgrows the
 * input). Malformed escapes stay literal: only the raw bytes must be well
 * formed, and a later round may legitimately produce a lone '%'. Returns
 * whether anything was decoded. */
static int decode_round(char *s, size_t *n)
{
    size_t o = 0, len = *n;
    int changed = 0;
    for (size_t i = 0; i < len; i++) {
        int v = escape_at(s, len, i);
        if (v >= 0) {
            s[o++] = (char)v;
            i += 2;
            changed = 1;
        } else {
            s[o++] = s[i];
        }
    }
    *n = o;
    return changed;
}

static int has_backslash(const char *s, size_t n)
{
    return memchr(s, '\\', n) != NULL;
}

/* A "." or ".." segment, segments being split on '/' (a backslash anywhere is
 * refused by its own rule before this one runs). */
static int has_dot_segment(const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '/') continue;
        size_t l = i - start;
        if ((l == 1 && s[start] == '.') || (l == 2 && s[start] == '.' && s[start + 1] == '.'))
            return 1;
        start = i + 1;
    }
    return 0;
}

/* Does test() hold for the path as received or after any of the first
 * SH_WAF_DECODE_ROUNDS rounds of decoding? Double encoding ("%252e%252e") is
 * how traversal slips past a single decode in front of a server that decodes
 * again. */
static int any_level(const char *p, size_t n, int (*test)(const char *, size_t))
{
    char small[512];
    char *buf = n <= sizeof(small) ? small : sh_malloc(n);
    int hit;
    memcpy(buf, p, n);
    hit = test(buf, n);
    for (int r = 0; !hit && r < SH_WAF_DECODE_ROUNDS && decode_round(buf, &n); r++)
        hit = test(buf, n);
    if (buf != small) sh_free(buf);
    return hit;
}

sh_waf_rule sh_waf_check_path(const sh_waf_conf *w, const char *p, size_t n)
{
    if (n > w->max_uri) return SH_WAF_URI_SIZE;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '%' && escape_at(p, n, i) < 0) return SH_WAF_BAD_ESCAPE;
    for (size_t i = 0; i < n; i++) {
        int v = escape_at(p, n, i);
        if (is_ctl((unsigned char)p[i]) || (v >= 0 && is_ctl((unsigned char)v)))
            return SH_WAF_CONTROL;
    }
    if (w->block_traversal && any_level(p, n, has_backslash)) return SH_WAF_BACKSLASH;
    if (!w->allow_encoded_slash) {
        for (size_t i = 0; i < n; i++)
            if (escape_at(p, n, i) == '/') return SH_WAF_ENCODED_SLASH;
    }
    if (w->block_traversal && any_level(p, n, has_dot_segment)) return SH_WAF_TRAVERSAL;
    return SH_WAF_PASS;
}

sh_waf_rule sh_waf_check_query(const sh_waf_conf *w, const char *q, size_t n)
{
    if (n > w->max_query) return SH_WAF_QUERY_SIZE;
    for (size_t i = 0; i < n; i++) {
        int v = escape_at(q, n, i);
        if (is_ctl((unsigned char)q[i]) || (v >= 0 && is_ctl((unsigned char)v)))
            return SH_WAF_CONTROL;
    }
    return SH_WAF_PASS;
}

static sh_rc reject(sh_req *req, sh_waf_rule r)
{
    /* The core logs every early answer at info; the rule name is only worth
     * a line when someone is looking (SHIELD_DEBUG=1). */
    sh_log(SH_LOG_DEBUG, "%s: waf rule %s: %d (request %s)", req->client_ip, sh_waf_rule_name(r),
           sh_waf_rule_status(r), req->request_id);
    req->detailed_result = sh_waf_rule_detail(r);
    sh_req_count(req, SH_CNT_WAF_BLOCKED);
    return sh_req_respond(req, sh_waf_rule_status(r), NULL, NULL, NULL, NULL);
}

static sh_rc waf_sanity(sh_req *req, void *state)
{
    const sh_waf_conf *w = &req->cfg->waf;
    sh_waf_rule r;

    if (!w->enabled) return SH_CONTINUE;
    /* No behavior can allow a method outside SH_M_*, so it is refused here
     * with the status RFC 9110 gives an unrecognised method. */
    if (!req->method_bit) return reject(req, SH_WAF_METHOD_UNKNOWN);
    if (!(req->method_bit & w->methods)) return reject(req, SH_WAF_METHOD);
    if ((r = sh_waf_check_path(w, req->path, req->path_len)) != SH_WAF_PASS) return reject(req, r);
    if (req->query && (r = sh_waf_check_query(w, req->query, req->query_len)) != SH_WAF_PASS)
        return reject(req, r);
    for (size_t i = 0; i < req->nheaders; i++)
        if (req->headers[i].value_len > w->max_header) return reject(req, SH_WAF_HEADER_SIZE);
    return SH_CONTINUE;
}

const sh_module sh_module_waf = {
    .name = "waf",
    .phase = {[SH_PHASE_SANITY] = waf_sanity},
};
