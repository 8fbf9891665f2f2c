/*
 * HTTP caching rules (see include/shield/cache_policy.h). Pure functions: the
 * engine owns time, storage and I/O; this file only reads header bytes.
 */
#include "shield/cache_policy.h"

#include <string.h>
#include <strings.h>

/* ---- small lexical helpers -------------------------------------------------- */

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static size_t skip_ows(const char *s, size_t i, size_t len)
{
    while (i < len && is_ows(s[i]))
        i++;
    return i;
}

/* Trim spaces and tabs on both ends of s[0..*len), returning the new start. */
static const char *trim(const char *s, size_t *len)
{
    while (*len && is_ows(s[0]))
        s++, (*len)--;
    while (*len && is_ows(s[*len - 1]))
        (*len)--;
    return s;
}

/*
 * delta-seconds (RFC 9111 §1.2.2): one or more digits, nothing else. Values
 * too large for the cache are not errors: they saturate at CACHE_DELTA_MAX.
 */
static int parse_delta(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;
    if (len == 0) return -1;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i])) return -1;
        if (v < CACHE_DELTA_MAX) v = v * 10 + (s[i] - '0');
    }
    *out = v < CACHE_DELTA_MAX ? v : CACHE_DELTA_MAX;
    return 0;
}

/* ---- HTTP dates --------------------------------------------------------------- */

static const char *const day_short[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const day_long[7] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                        "Friday", "Saturday", "Sunday"};
static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

/* n digits at s as a number, or -1. */
static int digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Index (0-11) of the 3-letter month at s, or -1. */
static int month_index(const char *s)
{
    for (int m = 0; m < 12; m++)
        if (memcmp(s, months + 3 * m, 3) == 0) return m;
    return -1;
}

static int is_day_name(const char *s, size_t len, const char *const names[7])
{
    for (int d = 0; d < 7; d++)
        if (strlen(names[d]) == len && memcmp(s, names[d], len) == 0) return 1;
    return 0;
}

/* "HH:MM:SS" at s into seconds of the day, or -1. Second 60 (leap) is allowed. */
static int64_t time_of_day(const char *s)
{
    if (s[2] != ':' || s[5] != ':') return -1;
    int h = digits(s, 2), m = digits(s + 3, 2), sec = digits(s + 6, 2);
    if (h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 60) return -1;
    return (int64_t)h * 3600 + m * 60 + sec;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Validate the calendar fields and compute epoch seconds. month is 0-11. */
static int make_time(int year, int month, int day, int64_t tod, int64_t *out)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (year < 1970 || month < 0 || day < 1 || day > mdays[month] || tod < 0) return -1;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month == 1 && day == 29 && !leap) return -1;
    *out = days_from_civil(year, month + 1, day) * 86400 + tod;
    return 0;
}

int sh_http_parse_date(const char *s, size_t len, int64_t *out)
{
    int year, month, day;
    int64_t tod;

    if (!s) return -1;
    s = trim(s, &len);
    if (len == 29 && s[3] == ',') {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        if (!is_day_name(s, 3, day_short) || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
            s[16] != ' ' || s[25] != ' ' || memcmp(s + 26, "GMT", 3) != 0)
            return -1;
        day = digits(s + 5, 2);
        month = month_index(s + 8);
        year = digits(s + 12, 4);
        tod = time_of_day(s + 17);
    } else if (len == 24 && s[3] == ' ') {
        /* asctime: "Sun Nov  6 08:49:37 1994" (day is " 6" or "06") */
        if (!is_day_name(s, 3, day_short) || s[7] != ' ' || s[10] != ' ' || s[19] != ' ') return -1;
        day = s[8] == ' ' ? digits(s + 9, 1) : digits(s + 8, 2);
        month = month_index(s + 4);
        year = digits(s + 20, 4);
        tod = time_of_day(s + 11);
    } else {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" = day-name ", " + 24 bytes */
        const char *comma = memchr(s, ',', len);
        if (!comma) return -1;
        size_t dl = (size_t)(comma - s);
        if (!is_day_name(s, dl, day_long) || len != dl + 24) return -1;
        const char *p = comma + 1;
        if (p[0] != ' ' || p[3] != '-' || p[7] != '-' || p[10] != ' ' || p[19] != ' ' ||
            memcmp(p + 20, "GMT", 3) != 0)
            return -1;
        day = digits(p + 1, 2);
        month = month_index(p + 4);
        year = digits(p + 8, 2);
        if (year < 0) return -1;
        year += year < 70 ? 2000 : 1900;
        tod = time_of_day(p + 11);
    }
    if (day < 0 || year < 0) return -1;
    return make_time(year, month, day, tod, out);
}

/* ---- Cache-Control -------------------------------------------------------------- */

void cache_control_init(cache_control *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = cc->s_maxage = -1;
    cc->stale_while_revalidate = cc->stale_if_error = -1;
}

/* First valid occurrence wins: later ones and invalid values leave *slot alone. */
static void set_delta(int64_t *slot, const char *v, size_t vlen, int has_value)
{
    int64_t d;
    if (*slot >= 0 || !has_value) return;
    if (parse_delta(v, vlen, &d) == 0) *slot = d;
}

static void apply_directive(cache_control *cc, const char *name, size_t nlen, const char *v,
                            size_t vlen, int has_value)
{
    if (sh_hdr_is(name, nlen, "max-age"))
        set_delta(&cc->max_age, v, vlen, has_value);
    else if (sh_hdr_is(name, nlen, "s-maxage"))
        set_delta(&cc->s_maxage, v, vlen, has_value);
    else if (sh_hdr_is(name, nlen, "stale-while-revalidate"))
        set_delta(&cc->stale_while_revalidate, v, vlen, has_value);
    else if (sh_hdr_is(name, nlen, "stale-if-error"))
        set_delta(&cc->stale_if_error, v, vlen, has_value);
    else if (sh_hdr_is(name, nlen, "no-cache"))
        cc->no_cache = 1;
    else if (sh_hdr_is(name, nlen, "no-store"))
        cc->no_store = 1;
    else if (sh_hdr_is(name, nlen, "private"))
        cc->private_ = 1;
    else if (sh_hdr_is(name, nlen, "public"))
        cc->public_ = 1;
    else if (sh_hdr_is(name, nlen, "must-revalidate"))
        cc->must_revalidate = 1;
    else if (sh_hdr_is(name, nlen, "proxy-revalidate"))
        cc->proxy_revalidate = 1;
    else if (sh_hdr_is(name, nlen, "immutable"))
        cc->immutable = 1;
}

/*
 * #( token [ "=" ( token / quoted-string ) ] ). A quoted string may contain
 * commas (no-cache="a, b"), so elements are split by a small scanner rather
 * than by searching for ','. A malformed element is skipped up to the next
 * comma and the rest of the list still counts.
 */
void cache_control_parse(const char *v, size_t len, cache_control *cc)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        if (i >= len) break;
        size_t ns = i;
        while (i < len && sh_is_tchar((unsigned char)v[i]))
            i++;
        size_t nlen = i - ns;
        const char *val = NULL;
        size_t vlen = 0;
        int has_value = 0, ok = nlen > 0;
        i = skip_ows(v, i, len);
        if (ok && i < len && v[i] == '=') {
            i = skip_ows(v, i + 1, len);
            has_value = 1;
            if (i < len && v[i] == '"') {
                size_t vs = ++i;
                while (i < len && v[i] != '"')
                    i += v[i] == '\\' ? 2 : 1;
                if (i >= len) {
                    ok = 0; /* unterminated quoted string */
                    i = len;
                } else {
                    val = v + vs;
                    vlen = i - vs;
                    i++;
                }
            } else {
                size_t vs = i;
                while (i < len && sh_is_tchar((unsigned char)v[i]))
                    i++;
                val = v + vs;
                vlen = i - vs;
            }
            i = skip_ows(v, i, len);
        }
        if (i < len && v[i] != ',') {
            ok = 0;
            while (i < len && v[i] != ',')
                i++;
        }
        if (ok) apply_directive(cc, v + ns, nlen, val, vlen, has_value);
    }
}

void cache_control_from_headers(const sh_header *h, size_t n, cache_control *cc)
{
    cache_control_init(cc);
    for (size_t i = 0; i < n; i++)
        if (sh_hdr_is(h[i].name, h[i].name_len, "Cache-Control"))
            cache_control_parse(h[i].value, h[i].value_len, cc);
}

/* ---- storing a response -------------------------------------------------------- */

typedef enum { ST_NO, ST_NORMAL, ST_ERROR, ST_ERROR_IF_MAXAGE } status_class;

static status_class classify_status(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 300:
    case 301:
    case 410:
        return ST_NORMAL;
    case 404:
    case 414:
    case 500:
    case 501:
    case 502:
    case 503:
    case 504:
        return ST_ERROR;
    case 400:
    case 403:
    case 405:
    case 412:
    case 415:
        return ST_ERROR_IF_MAXAGE;
    default:
        return ST_NO;
    }
}

/* Is name one of the behavior's forwarded (hence keyed) headers? Cookie is
 * when the behavior forwards cookies: they are part of the key then. */
static int is_forwarded(const sh_behavior_conf *b, const char *name, size_t len)
{
    if (b->forward_cookies && sh_hdr_is(name, len, "Cookie")) return 1;
    for (size_t i = 0; i < b->nforward_headers; i++)
        if (b->forward_headers[i] && sh_hdr_is(name, len, b->forward_headers[i])) return 1;
    return 0;
}

/*
 * Scan every Vary field. Returns 1 for "*"; sets *unforwarded when a named
 * header is not part of the key (Accept-Encoding is: the engine handles
 * encodings itself).
 */
static int scan_vary(const sh_behavior_conf *b, const sh_header *h, size_t n, int *unforwarded)
{
    for (size_t k = 0; k < n; k++) {
        if (!sh_hdr_is(h[k].name, h[k].name_len, "Vary")) continue;
        const char *v = h[k].value;
        size_t len = h[k].value_len, i = 0;
        while (i < len) {
            while (i < len && (is_ows(v[i]) || v[i] == ','))
                i++;
            size_t s = i;
            while (i < len && v[i] != ',' && !is_ows(v[i]))
                i++;
            if (i == s) continue;
            if (i - s == 1 && v[s] == '*') return 1;
            if (!sh_hdr_is(v + s, i - s, "Accept-Encoding") && !is_forwarded(b, v + s, i - s))
                *unforwarded = 1;
        }
    }
    return 0;
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
    if (v > hi) v = hi;
    if (v < lo) v = lo; /* a misconfigured lo > hi resolves to lo, the stricter promise */
    return v;
}

/*
 * Lifetime from the origin's Expires: relative to its own Date so that clock
 * skew between origin and cache does not change the TTL. An unparseable
 * Expires ("0", "-1") means "already expired" (RFC 9111 §5.3).
 */
static int64_t expires_ttl(const sh_header *expires, int64_t date, int64_t now)
{
    int64_t e;
    if (sh_http_parse_date(expires->value, expires->value_len, &e) != 0) return 0;
    int64_t d = e - (date >= 0 ? date : now);
    return d > 0 ? d : 0;
}

/*
 * The TTL decision proper; the validators and flags in *out are already
 * filled. Returns NULL and sets out->ttl when cacheable, else the reason.
 */
static const char *decide(const sh_behavior_conf *b, int status, const sh_header *h, size_t n,
                          int request_had_authorization, int vary_star, int64_t now,
                          cache_policy *out)
{
    const cache_control *cc = &out->cc;
    const sh_header *exp = sh_hdr_find(h, n, "Expires");
    int64_t origin_ttl = cc->s_maxage >= 0 ? cc->s_maxage : cc->max_age;
    int restrictive = cc->no_store || cc->private_ || cc->no_cache;
    status_class sc = classify_status(status);

    out->is_error = sc == ST_ERROR || sc == ST_ERROR_IF_MAXAGE;
    if (sc == ST_NO) return "status not cacheable";
    if (sc == ST_ERROR_IF_MAXAGE && origin_ttl < 0) return "error status without max-age/s-maxage";
    if (vary_star) return "Vary: *";
    if (request_had_authorization && !cc->public_ && cc->s_maxage < 0 && !cc->must_revalidate)
        return "Authorization without public/s-maxage/must-revalidate";

    if (out->is_error) {
        if (restrictive && (status == 404 || status == 414 || status == 501))
            return "no-store/no-cache/private on error";
        int64_t t = origin_ttl >= 0 ? origin_ttl : exp ? expires_ttl(exp, out->date, now) : 0;
        if (t > b->max_ttl) t = b->max_ttl;
        out->ttl = t > CACHE_ERROR_MIN_TTL ? t : CACHE_ERROR_MIN_TTL;
        return NULL;
    }
    if (restrictive) {
        if (b->min_ttl <= 0)
            return cc->no_store ? "no-store" : cc->private_ ? "private" : "no-cache";
        out->ttl = b->min_ttl;
        return NULL;
    }
    int64_t t = origin_ttl >= 0 ? origin_ttl
                : exp           ? expires_ttl(exp, out->date, now)
                                : b->default_ttl;
    out->ttl = clamp(t, b->min_ttl, b->max_ttl);
    return NULL;
}

void cache_policy_eval(const sh_behavior_conf *b, int status, const sh_header *resp_headers,
                       size_t n, int request_had_authorization, int64_t now, cache_policy *out)
{
    const sh_header *h;
    const cache_control *cc = &out->cc;

    memset(out, 0, sizeof(*out));
    cache_control_from_headers(resp_headers, n, &out->cc);
    out->date = out->last_modified = -1;
    if ((h = sh_hdr_find(resp_headers, n, "Date")))
        if (sh_http_parse_date(h->value, h->value_len, &out->date) != 0) out->date = -1;
    if ((h = sh_hdr_find(resp_headers, n, "Last-Modified")))
        if (sh_http_parse_date(h->value, h->value_len, &out->last_modified) != 0)
            out->last_modified = -1;
    if ((h = sh_hdr_find(resp_headers, n, "ETag")) && h->value_len > 0) {
        out->etag = h->value;
        out->etag_len = h->value_len;
    }
    out->initial_age = cache_parse_age(resp_headers, n);
    out->must_revalidate = cc->must_revalidate || cc->proxy_revalidate || cc->no_cache;
    int vary_star = scan_vary(b, resp_headers, n, &out->vary_unforwarded);

    out->reason =
        decide(b, status, resp_headers, n, request_had_authorization, vary_star, now, out);
    out->cacheable = out->reason == NULL;
    if (!out->cacheable) {
        out->ttl = 0;
        return;
    }
    if (!out->must_revalidate && cc->stale_while_revalidate > 0)
        out->stale_while_revalidate = cc->stale_while_revalidate;
    if (cc->stale_if_error > 0) out->stale_if_error = cc->stale_if_error;
}

/* ---- age and freshness ---------------------------------------------------------- */

int64_t cache_parse_age(const sh_header *h, size_t n)
{
    const sh_header *a = sh_hdr_find(h, n, "Age");
    int64_t v;
    if (!a) return 0;
    size_t len = a->value_len;
    const char *s = trim(a->value, &len);
    return parse_delta(s, len, &v) == 0 ? v : 0;
}

int64_t cache_age(int64_t stored_at, int64_t origin_age_header, int64_t now)
{
    int64_t resident = now > stored_at ? now - stored_at : 0;
    return resident + (origin_age_header > 0 ? origin_age_header : 0);
}

void cache_fresh_info_init(cache_fresh_info *f, const cache_policy *p, int64_t stored_at)
{
    f->stored_at = stored_at;
    f->initial_age = p->initial_age;
    f->ttl = p->ttl;
    f->swr = p->stale_while_revalidate;
    f->sie = p->stale_if_error;
    f->must_revalidate = p->must_revalidate;
}

cache_freshness cache_freshness_at(const cache_fresh_info *f, int64_t now)
{
    int64_t age = cache_age(f->stored_at, f->initial_age, now);
    if (age < f->ttl) return CACHE_FRESH;
    if (!f->must_revalidate && f->swr > 0 && age - f->ttl < f->swr)
        return CACHE_STALE_SERVABLE_WHILE_REVALIDATE;
    return CACHE_STALE_MUST_REVALIDATE;
}

int cache_stale_if_error_ok(const cache_fresh_info *f, int64_t now)
{
    int64_t age = cache_age(f->stored_at, f->initial_age, now);
    if (age < f->ttl) return 1;
    if (f->must_revalidate) return 0;
    if (f->sie > 0) return age - f->ttl <= f->sie;
    return 1;
}

/* ---- ranges --------------------------------------------------------------------- */

/* 1 to 18 digits (so the value always fits in int64_t); -1 otherwise. */
static int64_t range_num(const char *s, size_t len)
{
    int64_t v = 0;
    if (len == 0 || len > 18) return -1;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

cache_range_rc cache_parse_range(const char *v, size_t len, int64_t size, cache_range *out,
                                 size_t max, size_t *n)
{
    size_t count = 0, elements = 0, i;
    int64_t prev_end = -1;

    *n = 0;
    if (!v) return CACHE_RANGE_NONE;
    v = trim(v, &len);
    if (len < 6 || strncasecmp(v, "bytes=", 6) != 0) return CACHE_RANGE_NONE;
    i = 6;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        if (i >= len) break;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t elen = i - s;
        const char *e = trim(v + s, &elen);
        const char *dash = memchr(e, '-', elen);
        if (!dash) return CACHE_RANGE_NONE;
        size_t flen = (size_t)(dash - e), llen = elen - flen - 1;
        int64_t first = flen ? range_num(e, flen) : -2;       /* -2: suffix form */
        int64_t last = llen ? range_num(dash + 1, llen) : -2; /* -2: open end */
        if (first == -1 || last == -1 || (first == -2 && last == -2)) return CACHE_RANGE_NONE;
        if (first >= 0 && last >= 0 && last < first) return CACHE_RANGE_NONE;
        if (++elements > max) return CACHE_RANGE_NONE;

        cache_range r;
        if (first == -2) { /* "-N": the last N bytes */
            if (last == 0 || size <= 0) continue;
            r.start = last >= size ? 0 : size - last;
            r.end = size - 1;
        } else {
            if (first >= size) continue;
            r.start = first;
            r.end = last == -2 || last >= size ? size - 1 : last;
        }
        if (r.start <= prev_end) return CACHE_RANGE_NONE; /* overlapping or out of order */
        prev_end = r.end;
        out[count++] = r;
    }
    if (elements == 0) return CACHE_RANGE_NONE;
    if (count == 0) return CACHE_RANGE_UNSATISFIABLE;
    *n = count;
    return CACHE_RANGE_OK;
}

/* ---- entity tags and conditionals ------------------------------------------------ */

/* One entity-tag: the opaque part (without quotes) and whether it was W/. */
typedef struct etag_ref {
    const char *opaque;
    size_t len;
    int weak;
} etag_ref;

/*
 * Split one entity-tag. Quoted form per RFC 9110 §8.8.3; an unquoted token is
 * accepted as its own opaque value because some origins send ETags without
 * quotes, and matching them against a quoted If-None-Match still works.
 */
static int etag_split(const char *s, size_t len, etag_ref *out)
{
    s = trim(s, &len);
    out->weak = 0;
    if (len >= 2 && s[0] == 'W' && s[1] == '/') {
        out->weak = 1;
        s += 2;
        len -= 2;
    }
    if (len == 0) return -1;
    if (s[0] == '"') {
        if (len < 2 || s[len - 1] != '"' || memchr(s + 1, '"', len - 2)) return -1;
        out->opaque = s + 1;
        out->len = len - 2;
    } else {
        if (memchr(s, '"', len) || memchr(s, ',', len)) return -1;
        out->opaque = s;
        out->len = len;
    }
    return 0;
}

static int etag_eq(const etag_ref *a, const etag_ref *b, int weak_cmp)
{
    if (!weak_cmp && (a->weak || b->weak)) return 0;
    return a->len == b->len && memcmp(a->opaque, b->opaque, a->len) == 0;
}

/*
 * Does an If-Match / If-None-Match value match the stored tag? "*" matches
 * any stored object (it exists). List elements are split on commas outside
 * quotes; malformed elements never match.
 */
static int etag_list_match(const char *v, size_t len, const etag_ref *cur, int weak_cmp)
{
    v = trim(v, &len);
    if (len == 1 && v[0] == '*') return 1;
    if (!cur) return 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t s = i;
        int quoted = 0;
        while (i < len && (quoted || v[i] != ',')) {
            if (v[i] == '"') quoted = !quoted;
            i++;
        }
        etag_ref t;
        if (i > s && etag_split(v + s, i - s, &t) == 0 && etag_eq(&t, cur, weak_cmp)) return 1;
    }
    return 0;
}

/* Does any field named name match? Returns -1 when there is no such field. */
static int any_field_matches(const sh_header *req, size_t n, const char *name, const etag_ref *cur,
                             int weak_cmp)
{
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (!sh_hdr_is(req[i].name, req[i].name_len, name)) continue;
        seen = 1;
        if (etag_list_match(req[i].value, req[i].value_len, cur, weak_cmp)) return 1;
    }
    return seen ? 0 : -1;
}

/* Valid HTTP-date of the first field named name, else -1 (absent or invalid). */
static int64_t header_date(const sh_header *req, size_t n, const char *name)
{
    const sh_header *h = sh_hdr_find(req, n, name);
    int64_t t;
    if (h && sh_http_parse_date(h->value, h->value_len, &t) == 0) return t;
    return -1;
}

cache_cond cache_eval_conditionals(const sh_header *req, size_t n, const char *etag,
                                   size_t etag_len, int64_t last_modified, int is_get_or_head)
{
    etag_ref cur_buf, *cur = NULL;
    if (etag && etag_split(etag, etag_len, &cur_buf) == 0) cur = &cur_buf;

    int m = any_field_matches(req, n, "If-Match", cur, 0);
    if (m == 0) return CACHE_COND_412;
    if (m < 0) {
        int64_t ius = header_date(req, n, "If-Unmodified-Since");
        if (ius >= 0 && last_modified >= 0 && last_modified > ius) return CACHE_COND_412;
    }

    m = any_field_matches(req, n, "If-None-Match", cur, 1);
    if (m == 1) return is_get_or_head ? CACHE_COND_304 : CACHE_COND_412;
    if (m == 0 || !is_get_or_head) return CACHE_COND_NONE;
    int64_t ims = header_date(req, n, "If-Modified-Since");
    if (ims >= 0 && last_modified >= 0 && last_modified <= ims) return CACHE_COND_304;
    return CACHE_COND_NONE;
}

int cache_if_range_ok(const char *v, size_t len, const char *etag, size_t etag_len,
                      int64_t last_modified)
{
    if (!v) return 0;
    v = trim(v, &len);
    if (len == 0) return 0;
    if (v[0] == '"' || (len >= 2 && v[0] == 'W' && v[1] == '/')) {
        etag_ref want, cur;
        if (!etag || etag_split(v, len, &want) != 0 || etag_split(etag, etag_len, &cur) != 0)
            return 0;
        return etag_eq(&want, &cur, 0);
    }
    int64_t t;
    return last_modified >= 0 && sh_http_parse_date(v, len, &t) == 0 && t == last_modified;
}

/* ---- ETags ------------------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int cache_etag_is_plain_md5(const char *etag, size_t len, unsigned char md5[16])
{
    unsigned char buf[16];
    if (!etag || len != 34 || etag[0] != '"' || etag[33] != '"') return 0;
    for (int i = 0; i < 16; i++) {
        int hi = hexval(etag[1 + 2 * i]), lo = hexval(etag[2 + 2 * i]);
        if (hi < 0 || lo < 0) return 0;
        buf[i] = (unsigned char)(hi << 4 | lo);
    }
    if (md5) memcpy(md5, buf, 16);
    return 1;
}
