/*
 * Fuzz the config loader (proxy/config*.c over libconfig): the input is a
 * config file, written to a temporary file and loaded twice with the errors
 * sent to a memory stream. Beyond the sanitizers (crash, leak, UB), the
 * harness aborts when
 *   - the two loads differ in verdict or in error text;
 *   - a refused file comes with no error text, or an accepted one with some;
 *   - an error line is not "<path>: message" or "<path>:<line>: message" with
 *     <line> between 1 and the number of lines of the input;
 *   - an accepted snapshot holds a value outside the range its key documents
 *     (include/shield/config.h), or breaks a cross-check the loader promises
 *     (a catch-all last behavior, every behavior bound to an origin, header
 *     values free of control characters);
 *   - config_literals.c flags an integer that libconfig, asked on its own,
 *     reads back as written, or names a line that does not hold it;
 *   - libconfig stored an integer that appears nowhere in the text (it
 *     wrapped) and config_literals.c said nothing.
 *
 * libconfig 1.5 resolves @include against the working directory, so each load
 * runs in a private empty directory: an included bare name never exists and
 * the result does not depend on where the fuzzer runs. Inputs whose @include
 * could reach outside it (a '/' in the path) are skipped. Keys naming other
 * files (admin.token_file, TLS and signature keys, geo.database) are opened
 * where they point, as `shield -t` would; relative ones find nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "shield/config.h"
#include "shield/realtime_log.h"

#define CHECK(x, ...)                                                                              \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_config: check failed: %s: ", #x);                                \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define SEC_MS       1000ULL
#define MAX_TIMER_MS (365 * 86400 * SEC_MS)
#define MAX_TTL_S    3153600000LL

static char empty_dir[] = "/tmp/shield-fuzz-config-cwd-XXXXXX";
static int home_fd = -1;

static void remove_empty_dir(void)
{
    rmdir(empty_dir);
}

static void init(void)
{
    if (home_fd >= 0) return;
    home_fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(home_fd >= 0, "open(.): %s", strerror(errno));
    CHECK(mkdtemp(empty_dir) != NULL, "mkdtemp: %s", strerror(errno));
    atexit(remove_empty_dir);
}

/*
 * libconfig 1.5 leaks the string token it was reading when a syntax error ends
 * the parse (`a "x";`): its grammar frees a discarded TOK_STRING only from
 * 1.7.3 on (upstream "Fix memory leak when parsing invalid syntax"). The token
 * comes from strbuf_append, or, for "", from a calloc inlined in the scanner.
 * A few bytes per refused file, not ours to fix; other leaks still count.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

/* Without this, every leak check libFuzzer runs prints the table of suppressions used. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void)
{
    return "print_suppressions=0";
}

/*
 * The load changes directory, so a crash inside it would leave libFuzzer's
 * default artifact prefix ("./") pointing into the private directory: unless
 * told otherwise, artifacts go where the fuzzer was started.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char prefix[4200];
    char **nargv;
    char cwd[4096];

    for (int i = 1; i < *argc; i++)
        if (!strncmp((*argv)[i], "-artifact_prefix=", 17) ||
            !strncmp((*argv)[i], "-exact_artifact_path=", 21))
            return 0;
    if (!getcwd(cwd, sizeof cwd)) return 0;
    snprintf(prefix, sizeof prefix, "-artifact_prefix=%s/", cwd);
    nargv = calloc((size_t)*argc + 2, sizeof *nargv);
    if (!nargv) return 0;
    memcpy(nargv, *argv, (size_t)*argc * sizeof *nargv);
    nargv[(*argc)++] = prefix;
    *argv = nargv;
    return 0;
}

/* ---- inputs ---------------------------------------------------------------------------------- */

/* An @include with a '/' in its path, escaped or not (skipping too much is harmless). */
static int includes_a_path(const uint8_t *d, size_t n)
{
    static const char kw[] = "@include";
    const uint8_t *p = d, *end = d + n;

    while ((p = memmem(p, (size_t)(end - p), kw, sizeof kw - 1))) {
        p += sizeof kw - 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end || *p != '"') continue;
        for (p++; p < end && *p != '"'; p++) {
            if (*p == '\\' && p + 1 < end && (p[1] == '"' || p[1] == '\\'))
                p++;
            else if (*p == '/')
                return 1;
        }
    }
    return 0;
}

/* Lines as an editor counts them: a last line without '\n' still counts. */
static unsigned count_lines(const uint8_t *d, size_t n)
{
    unsigned lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += d[i] == '\n';
    return lines + (n > 0 && d[n - 1] != '\n');
}

/* Line `line` (1-based) of the input: its start and length. */
static const uint8_t *line_at(const uint8_t *d, size_t n, unsigned line, size_t *len)
{
    const uint8_t *p = d, *end = d + n, *nl;
    for (unsigned i = 1; i < line && p < end; i++) {
        nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    nl = memchr(p, '\n', (size_t)(end - p));
    *len = (size_t)((nl ? nl : end) - p);
    return p;
}

/* ---- integer literals, judged independently of config_literals.c ----------------------------- */

/*
 * The number a literal as flagged ("4296015872", "0x1L", "99999999999999999999L")
 * means: 0 and *v when it fits in 64 signed bits, -1 when it does not.
 */
static int literal_value(const char *s, size_t len, long long *v)
{
    const char *end = s + len;
    int neg = *s == '-', hex;
    unsigned __int128 m = 0;

    s += *s == '-' || *s == '+';
    hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    if (hex) s += 2;
    for (; s < end && *s != 'L'; s++) {
        unsigned d = *s <= '9' ? (unsigned)(*s - '0') : (unsigned)((*s | 0x20) - 'a' + 10);
        m = m * (hex ? 16 : 10) + d;
        if (m > (unsigned __int128)1 << 64) return -1;
    }
    if (neg ? m > (unsigned __int128)INT64_MAX + 1 : m > INT64_MAX) return -1;
    *v = neg ? (long long)(0 - (unsigned long long)m) : (long long)m;
    return 0;
}

/* What libconfig stores for the literal alone: 0 and *v, or -1 if it is not an integer. */
static int libconfig_reads(const char *lit, size_t len, long long *v)
{
    char *text = malloc(len + 8);
    config_t lc;
    config_setting_t *s;
    int rc = -1;

    CHECK(text != NULL, "malloc");
    snprintf(text, len + 8, "v = %.*s;\n", (int)len, lit);
    config_init(&lc);
    if (config_read_string(&lc, text) && (s = config_lookup(&lc, "v")) &&
        (config_setting_type(s) == CONFIG_TYPE_INT ||
         config_setting_type(s) == CONFIG_TYPE_INT64)) {
        *v = config_setting_get_int64(s);
        rc = 0;
    }
    config_destroy(&lc);
    free(text);
    return rc;
}

/* A flagged literal must sit on the line named, and libconfig must really change it. */
static void check_flagged(const uint8_t *d, size_t n, unsigned line, const char *msg)
{
    size_t llen = strcspn(msg, " "), ln;
    const uint8_t *l = line_at(d, n, line, &ln);
    long long exact, read;

    CHECK(llen > 0 && strspn(msg, "+-0123456789abcdefABCDEFxXL") >= llen,
          "flagged \"%.*s\" is not a number", (int)llen, msg);
    CHECK(memmem(l, ln, msg, llen) != NULL, "%.*s flagged on line %u, which does not hold it",
          (int)llen, msg, line);
    if (literal_value(msg, llen, &exact) != 0) return; /* past 64 bits: nothing can hold it */
    CHECK(libconfig_reads(msg, llen, &read) == 0,
          "libconfig does not read flagged %.*s as an integer", (int)llen, msg);
    CHECK(read != exact, "%.*s flagged, but libconfig reads it back as written (%lld)", (int)llen,
          msg, read);
}

/*
 * Is v written somewhere in the text as an integer literal? A literal holding
 * v is [-+]0*digits or 0x0*hexdigits with nothing numeric on either side, so
 * if none matches, libconfig made v up (it wrapped what was written). The
 * converse is loose (the digits may belong to another number): fine for a check.
 */
static int written(const uint8_t *d, size_t n, long long v, int hex)
{
    char digits[32];
    size_t dl;
    unsigned long long mag = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;

    if (hex && v < 0) return 0; /* hex has no sign: only wrapping makes one negative */
    if (v == 0) return memchr(d, '0', n) != NULL;
    dl = (size_t)snprintf(digits, sizeof digits, hex ? "%llx" : "%llu", mag);
    for (size_t i = 0; i + dl <= n; i++) {
        size_t j = i;
        if (hex ? strncasecmp((const char *)d + i, digits, dl) != 0
                : memcmp(d + i, digits, dl) != 0)
            continue;
        if (i + dl < n && (hex ? strchr("0123456789abcdefABCDEF", d[i + dl]) && d[i + dl]
                               : d[i + dl] >= '0' && d[i + dl] <= '9'))
            continue;
        while (j > 0 && d[j - 1] == '0')
            j--;
        if (hex) {
            if (j > 0 && (d[j - 1] == 'x' || d[j - 1] == 'X')) return 1;
        } else if (!(j > 0 && d[j - 1] >= '1' && d[j - 1] <= '9') &&
                   (v < 0) == (j > 0 && d[j - 1] == '-')) {
            return 1;
        }
    }
    return 0;
}

static void check_ints_written(const uint8_t *d, size_t n, const char *path,
                               const config_setting_t *s)
{
    int t = config_setting_type(s);
    const char *f = config_setting_source_file(s);

    if ((t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) && f && !strcmp(f, path)) {
        long long v = config_setting_get_int64(s);
        int hex = config_setting_get_format(s) == CONFIG_FORMAT_HEX;
        CHECK(written(d, n, v, hex),
              "libconfig stored %lld (line %u) that the text does not hold, and nothing was "
              "flagged",
              v, config_setting_source_line(s));
    }
    if (config_setting_is_aggregate(s))
        for (int i = 0; i < config_setting_length(s); i++)
            check_ints_written(d, n, path, config_setting_get_elem(s, (unsigned)i));
}

/* ---- the error text ------------------------------------------------------------------------- */

enum { FLAGGED_INT = 1, REFUSED_INCLUDE = 2 };

/* Every line names the file, then a line of the input or nothing; returns FLAGGED_* seen. */
static int check_errors(const uint8_t *d, size_t n, const char *path, const char *errs)
{
    unsigned lines = count_lines(d, n);
    size_t plen = strlen(path);
    int seen = 0;

    for (const char *p = errs; *p;) {
        const char *eol = strchr(p, '\n'), *q = p + plen;
        CHECK(eol != NULL, "error text does not end in a newline: %s", p);
        CHECK(!strncmp(p, path, plen) && *q == ':', "error line does not name the file: %.*s",
              (int)(eol - p), p);
        q++;
        if (*q >= '0' && *q <= '9') {
            char *after;
            unsigned long line = strtoul(q, &after, 10);
            CHECK(after[0] == ':' && after[1] == ' ', "malformed location: %.*s", (int)(eol - p),
                  p);
            CHECK(line >= 1 && line <= lines, "line %lu of a %u-line input: %.*s", line, lines,
                  (int)(eol - p), p);
            if (!strncmp(after + 2, "integer ", 8)) {
                check_flagged(d, n, (unsigned)line, after + 10);
                seen |= FLAGGED_INT;
            }
            if (!strncmp(after + 2, "@include ", 9)) seen |= REFUSED_INCLUDE;
        } else {
            CHECK(*q == ' ', "malformed location: %.*s", (int)(eol - p), p);
        }
        p = eol + 1;
    }
    return seen;
}

/* ---- an accepted snapshot ------------------------------------------------------------------- */

static int in(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v >= lo && v <= hi;
}

/* What the loader promises of header values: no CR, LF or other control byte. */
static int field_ok(const char *s)
{
    if (!s) return 1;
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f) return 0;
    return 1;
}

static void check_headers(const sh_resp_headers_conf *h)
{
    const char *v[] = {h->hsts, h->frame_options, h->content_type_options, h->referrer_policy,
                       h->xss_protection};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECK(field_ok(v[i]) && (!v[i] || *v[i]), "response header %zu: \"%s\"", i, v[i]);
    for (size_t i = 0; i < h->ncustom; i++)
        CHECK(h->custom_names[i] && *h->custom_names[i] && field_ok(h->custom_names[i]) &&
                  field_ok(h->custom_values[i]),
              "custom header %zu", i);
}

static void check_snapshot(const sh_config *c, const char *path)
{
    CHECK(!strcmp(c->file, path), "file \"%s\"", c->file);
    CHECK(c->node_name && *c->node_name && c->pop && *c->pop, "node name/pop");
    CHECK(in((uint64_t)c->workers, 0, 256) && in((uint64_t)c->nworkers, 1, 256) &&
              (!c->workers || c->workers == c->nworkers),
          "workers %d/%d", c->workers, c->nworkers);
    CHECK(c->nlisten >= 1 && c->norigins >= 1 && c->nbehaviors >= 1, "empty list");
    for (size_t i = 0; i < c->nlisten; i++)
        CHECK(c->listen[i].address && c->listen[i].addrlen > 0, "listen %zu", i);
    for (size_t i = 0; i < c->norigins; i++) {
        const sh_origin_conf *o = &c->origins[i];
        CHECK(o->name && *o->name && o->endpoint, "origin %zu unnamed", i);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(o->name, c->origins[j].name) != 0, "origin \"%s\" twice", o->name);
        CHECK(in(o->connect_timeout_ms, 1000, 10000) && in(o->read_timeout_ms, 1000, 60000) &&
                  in(o->keepalive_timeout_ms, 1000, 60000) && in((uint64_t)o->attempts, 1, 3),
              "origin \"%s\" limits", o->name);
        CHECK(o->type != SH_ORIGIN_S3 || (o->bucket && o->region && *o->region),
              "s3 origin \"%s\" without bucket/region", o->name);
    }
    for (size_t i = 0; i < c->nbehaviors; i++) {
        const sh_behavior_conf *b = &c->behaviors[i];
        CHECK(b->path && (*b->path == '/' || *b->path == '*') && field_ok(b->path), "behavior %zu",
              i);
        CHECK(b->origin >= c->origins && b->origin < c->origins + c->norigins &&
                  !strcmp(b->origin_name, b->origin->name),
              "behavior \"%s\" origin", b->path);
        CHECK(0 <= b->min_ttl && b->min_ttl <= b->default_ttl && b->default_ttl <= b->max_ttl &&
                  b->max_ttl <= MAX_TTL_S,
              "behavior \"%s\" TTLs %lld %lld %lld", b->path, (long long)b->min_ttl,
              (long long)b->default_ttl, (long long)b->max_ttl);
        CHECK((b->allowed_methods & (SH_M_GET | SH_M_HEAD)) == (SH_M_GET | SH_M_HEAD) &&
                  (b->cached_methods == (SH_M_GET | SH_M_HEAD) ||
                   b->cached_methods == (SH_M_GET | SH_M_HEAD | SH_M_OPTIONS)) &&
                  (b->cached_methods & ~b->allowed_methods) == 0,
              "behavior \"%s\" methods", b->path);
        for (size_t j = 0; j < b->nforward_headers; j++)
            CHECK(b->forward_headers[j] && *b->forward_headers[j], "forward header");
        CHECK(!b->cors.enabled || in((uint64_t)b->cors.max_age, 0, 365 * 86400),
              "cors max_age %lld", (long long)b->cors.max_age);
        CHECK(field_ok(b->cors.allow_methods) && field_ok(b->cors.allow_headers) &&
                  field_ok(b->cors.expose_headers),
              "cors lists");
        for (size_t j = 0; j < b->cors.nallow_origins; j++)
            CHECK(*b->cors.allow_origins[j] && field_ok(b->cors.allow_origins[j]) &&
                      !(b->cors.allow_credentials && !strcmp(b->cors.allow_origins[j], "*")),
                  "cors origin");
        CHECK(b->signed_mode != SH_SIGNED_CLOUDFRONT || c->signed_urls.nkeys, "cloudfront keys");
        CHECK(b->signed_mode != SH_SIGNED_SIGV4 || c->sigv4.nkeys, "sigv4 keys");
        check_headers(&b->headers);
    }
    CHECK(!strcmp(c->behaviors[c->nbehaviors - 1].path, "*"), "last behavior \"%s\"",
          c->behaviors[c->nbehaviors - 1].path);
    check_headers(&c->response_headers);
    CHECK(c->default_root_object && *c->default_root_object != '/', "default_root_object");

    const sh_limits_conf *l = &c->limits;
    CHECK(l->max_header_size >= 1024 && l->max_url >= 64 && l->max_headers >= 1 &&
              l->max_connections >= 1,
          "limits");
    const sh_timeouts_conf *t = &c->timeouts;
    CHECK(in(t->header_ms, 1, MAX_TIMER_MS) && in(t->body_ms, 1, MAX_TIMER_MS) &&
              in(t->keepalive_ms, 1, MAX_TIMER_MS) && in(t->send_ms, 1, MAX_TIMER_MS) &&
              in(t->drain_ms, 0, MAX_TIMER_MS),
          "timeouts");
    CHECK(c->cache.memory_size >= 1 << 20 && c->cache.max_object_size >= 1 &&
              c->cache.disk_size >= 1 << 20 && c->cache.disk_path,
          "cache");
    CHECK(in(c->tls.ticket_rotate_ms, 1000, MAX_TIMER_MS) &&
              in(c->tls.session_timeout_ms, 1000, 86400000),
          "tls timers");
    CHECK(in(c->sigv4.max_skew_ms, 1000, 7 * 86400 * SEC_MS), "sigv4 max_skew");
    for (size_t i = 0; i < c->sigv4.nkeys; i++)
        CHECK(*c->sigv4.keys[i].access_key && c->sigv4.keys[i].secret && *c->sigv4.keys[i].secret,
              "sigv4 key %zu", i);
    CHECK(c->geo.mode == SH_GEO_NONE || *c->geo.database, "geo without database");
    for (size_t i = 0; i < c->geo.ncountries; i++)
        CHECK(c->geo.countries[i][0] >= 'A' && c->geo.countries[i][0] <= 'Z' &&
                  c->geo.countries[i][1] >= 'A' && c->geo.countries[i][1] <= 'Z' &&
                  !c->geo.countries[i][2],
              "country %zu", i);
    const sh_ratelimit_conf *r = &c->rate_limit;
    CHECK(
        in(r->limit, 10, 2000000000) &&
            (r->window_s == 60 || r->window_s == 120 || r->window_s == 300 || r->window_s == 600) &&
            in((uint64_t)r->status, 400, 599) && in(r->max_clients, 1024, 100000000),
        "rate_limit");
    CHECK(c->waf.max_uri >= 16 && c->waf.max_header >= 64, "waf");
    const sh_log_conf *g = &c->log;
    CHECK(in(g->retention_days, 0, 36500) && in(g->ring_size, 2, 1u << 24) &&
              in(g->rt_sampling, 1, 100) && in(g->rt_ring_size, 2, 1u << 24) && g->rt_fields &&
              (g->rt_fields & ~SH_RT_ALL_FIELDS) == 0 && *g->distribution_id,
          "log");
    const sh_alarms_conf *a = &c->alarms;
    CHECK(in(a->window_ms, SEC_MS, 3600 * SEC_MS) && a->error_rate_5xx >= 0 &&
              a->error_rate_5xx <= 100 && a->min_cache_hit_rate >= 0 &&
              a->min_cache_hit_rate <= 100 && a->max_origin_latency_ms <= 3600 * SEC_MS &&
              in(a->min_requests, 1, 1000000000) &&
              in(a->popular_window_ms, 2 * SEC_MS, 7 * 86400 * SEC_MS) &&
              in(a->popular_entries, 16, 65536),
          "alarms");
}

/* ---- entry point ---------------------------------------------------------------------------- */

static FILE *stdout_sink;

/*
 * Load path from the private directory; the error text is returned (malloc'd).
 * Everything the loader has to say goes to errs: libconfig's scanner writes a
 * backslash it drops from an @include to stdout, which `shield -t` would show,
 * so stdout is caught while the loader runs and must stay empty.
 */
static sh_config *load(const char *path, char **errs)
{
    size_t len = 0;
    FILE *e = open_memstream(errs, &len);
    sh_config *cfg;
    int saved;
    off_t printed;

    if (!stdout_sink) CHECK((stdout_sink = tmpfile()) != NULL, "tmpfile: %s", strerror(errno));
    CHECK(e != NULL, "open_memstream");
    fflush(stdout);
    CHECK((saved = dup(STDOUT_FILENO)) >= 0 && dup2(fileno(stdout_sink), STDOUT_FILENO) >= 0,
          "dup: %s", strerror(errno));
    CHECK(chdir(empty_dir) == 0, "chdir: %s", strerror(errno));
    cfg = sh_config_load(path, e);
    CHECK(fchdir(home_fd) == 0, "fchdir: %s", strerror(errno));
    fflush(stdout);
    CHECK(dup2(saved, STDOUT_FILENO) >= 0, "dup2: %s", strerror(errno));
    close(saved);
    printed = lseek(fileno(stdout_sink), 0, SEEK_END);
    CHECK(ftruncate(fileno(stdout_sink), 0) == 0 && lseek(fileno(stdout_sink), 0, SEEK_SET) == 0,
          "ftruncate: %s", strerror(errno));
    fclose(e);
    CHECK(printed == 0, "the loader wrote %lld bytes to stdout", (long long)printed);
    return cfg;
}

/* libconfig's own tree of the file, for the wrapped-integer check. */
static void check_libconfig_ints(const uint8_t *d, size_t n, const char *path)
{
    config_t lc;

    config_init(&lc);
    CHECK(chdir(empty_dir) == 0, "chdir: %s", strerror(errno));
    int ok = config_read_file(&lc, path);
    CHECK(fchdir(home_fd) == 0, "fchdir: %s", strerror(errno));
    if (ok) check_ints_written(d, n, path, config_root_setting(&lc));
    config_destroy(&lc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/shield-fuzz-config-XXXXXX";
    char *errs1, *errs2;
    sh_config *c1, *c2;
    int fd, seen;

    if (includes_a_path(data, size)) return -1;
    init();
    fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    CHECK(write(fd, data, size) == (ssize_t)size, "write: %s", strerror(errno));
    close(fd);

    c1 = load(path, &errs1);
    c2 = load(path, &errs2);
    CHECK(!c1 == !c2, "verdicts differ: %s / %s", c1 ? "accepted" : "refused",
          c2 ? "accepted" : "refused");
    CHECK(!strcmp(errs1, errs2), "error texts differ:\n%s---\n%s", errs1, errs2);
    CHECK(!c1 == !!*errs1, "%s with error text \"%s\"", c1 ? "accepted" : "refused", errs1);
    seen = check_errors(data, size, path, errs1);
    if (c1) check_snapshot(c1, path);
    /* libconfig alone would exit(2) on the @include the loader refused */
    if (!seen) check_libconfig_ints(data, size, path);

    sh_config_free(c1);
    sh_config_free(c2);
    free(errs1);
    free(errs2);
    unlink(path);
    return 0;
}
