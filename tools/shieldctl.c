/*
 * shieldctl: the operator's client for Shield's admin API (proxy/admin.c).
 *
 *   shieldctl [-a ADDR] [-t TOKENFILE] [--json] stats
 *   shieldctl [...] invalidate PATH...
 *   shieldctl [...] top [-n N]
 *   shieldctl [...] warm [--host HOST] FILE|-
 *
 * Exit status: 0 done, 1 the operation failed (including an unreachable or
 * refusing admin API), 2 usage. Standalone: libcurl and libc only, so it can
 * be copied to a host without Shield's libraries.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define EXIT_FAILED 1
#define EXIT_USAGE  2
#define MAX_BODY    (16u << 20)
#define MAX_DEPTH   64

static const char usage_text[] =
    "usage: shieldctl [-a ADDR] [-t TOKENFILE] [--json] COMMAND [ARGS]\n"
    "\n"
    "Talks to Shield's admin API (admin.address in shield.conf).\n"
    "\n"
    "options:\n"
    "  -a, --address ADDR    admin address, host:port or http://host:port\n"
    "                        (default 127.0.0.1:9090, or $SHIELDCTL_ADDRESS)\n"
    "  -t, --token-file FILE file whose first line is the admin bearer token\n"
    "                        (admin.token_file; default $SHIELDCTL_TOKEN_FILE)\n"
    "      --json            print the API's JSON instead of a summary\n"
    "  -h, --help            this text\n"
    "\n"
    "commands:\n"
    "  stats                 requests, hit ratio, bytes, objects, edge counters\n"
    "  invalidate PATH...    drop cached objects: /exact/path or /prefix/*\n"
    "  top [-n N]            the most requested objects (default 20):\n"
    "                        requests bytes path\n"
    "  warm [--host HOST] FILE\n"
    "                        prefetch the paths in FILE (one per line, - = stdin,\n"
    "                        # comments) through Shield; HOST is the Host header\n"
    "                        viewers send (it is part of the cache key)\n"
    "\n"
    "exit status: 0 ok, 1 the operation failed, 2 usage\n";

static const char *prog = "shieldctl";
static char base_url[512];
static char *auth_header; /* "Authorization: Bearer ..." or NULL */
static const char *token_path;
static int json_out;

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    exit(EXIT_USAGE);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) die(EXIT_FAILED, "out of memory");
    return q;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) die(EXIT_FAILED, "out of memory");
    return d;
}

/* ---- a growable string ------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static void buf_add(buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap)
            b->cap = b->cap ? b->cap * 2 : 256;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void buf_str(buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_json_str(buf *b, const char *s)
{
    buf_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            buf_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_add(b, esc, 6);
        } else {
            buf_add(b, (const char *)&c, 1);
        }
    }
    buf_add(b, "\"", 1);
}

/* ---- a small JSON reader: enough for the admin API's documents -------------------------- */

enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jv {
    int type;
    double num; /* J_NUM, J_BOOL */
    char *str;  /* J_STR */
    size_t n;   /* J_ARR, J_OBJ */
    char **keys;
    struct jv *items;
} jv;

typedef struct {
    const char *p, *end;
} jpos;

static void jws(jpos *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int jparse_str(jpos *j, char **out)
{
    buf b = {0};
    if (j->p >= j->end || *j->p != '"') return -1;
    j->p++;
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if (c == '\\') {
            if (j->p >= j->end) break;
            char e = *j->p++;
            if (e == 'u') {
                unsigned v = 0;
                if (j->end - j->p < 4) break;
                for (int i = 0; i < 4; i++) {
                    char h = *j->p++;
                    v = v * 16 + (unsigned)(isdigit((unsigned char)h)
                                                ? h - '0'
                                                : (tolower(h) - 'a' + 10) & 15);
                }
                /* Non-ASCII is shown as '?': the API only escapes control bytes. */
                c = v < 0x80 && v ? (char)v : '?';
            } else {
                c = e == 'n'   ? '\n'
                    : e == 't' ? '\t'
                    : e == 'r' ? '\r'
                    : e == 'b' ? '\b'
                    : e == 'f' ? '\f'
                               : e;
            }
        }
        buf_add(&b, &c, 1);
    }
    if (j->p >= j->end) {
        free(b.p);
        return -1;
    }
    j->p++;
    *out = b.p ? b.p : xstrdup("");
    return 0;
}

static int jparse(jpos *j, jv *v, int depth)
{
    memset(v, 0, sizeof *v);
    jws(j);
    if (j->p >= j->end || depth > MAX_DEPTH) return -1;
    char c = *j->p;
    if (c == '"') {
        v->type = J_STR;
        return jparse_str(j, &v->str);
    }
    if (c == '{' || c == '[') {
        v->type = c == '{' ? J_OBJ : J_ARR;
        j->p++;
        jws(j);
        if (j->p < j->end && *j->p == (c == '{' ? '}' : ']')) {
            j->p++;
            return 0;
        }
        for (;;) {
            v->items = xrealloc(v->items, (v->n + 1) * sizeof *v->items);
            if (v->type == J_OBJ) {
                v->keys = xrealloc(v->keys, (v->n + 1) * sizeof *v->keys);
                v->keys[v->n] = NULL;
                jws(j);
                if (jparse_str(j, &v->keys[v->n])) {
                    memset(&v->items[v->n++], 0, sizeof *v->items);
                    return -1;
                }
                jws(j);
                if (j->p >= j->end || *j->p++ != ':') {
                    memset(&v->items[v->n++], 0, sizeof *v->items);
                    return -1;
                }
            }
            int rc = jparse(j, &v->items[v->n++], depth + 1);
            if (rc) return -1;
            jws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == (c == '{' ? '}' : ']')) {
                j->p++;
                return 0;
            }
            return -1;
        }
    }
    if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
        j->p += 4;
        return 0;
    }
    if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
        j->p += 4;
        v->type = J_BOOL;
        v->num = 1;
        return 0;
    }
    if (j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
        j->p += 5;
        v->type = J_BOOL;
        return 0;
    }
    char tmp[64];
    size_t n = 0;
    while (j->p + n < j->end && n < sizeof tmp - 1 && strchr("+-0123456789.eE", j->p[n]))
        n++;
    if (!n) return -1;
    memcpy(tmp, j->p, n);
    tmp[n] = '\0';
    char *endp;
    v->num = strtod(tmp, &endp);
    if (*endp) return -1;
    v->type = J_NUM;
    j->p += n;
    return 0;
}

static void jfree(jv *v)
{
    if (!v) return;
    free(v->str);
    for (size_t i = 0; i < v->n; i++) {
        if (v->keys) free(v->keys[i]);
        jfree(&v->items[i]);
    }
    free(v->keys);
    free(v->items);
}

/* NULL if the text is not one JSON document. */
static jv *jload(const char *text, size_t len)
{
    jpos j = {text, text + len};
    jv *v = calloc(1, sizeof *v);
    if (!v) die(EXIT_FAILED, "out of memory");
    if (jparse(&j, v, 0) == 0) {
        jws(&j);
        if (j.p == j.end) return v;
    }
    jfree(v);
    free(v);
    return NULL;
}

static void jrelease(jv *v)
{
    jfree(v);
    free(v);
}

static const jv *jget(const jv *o, const char *key)
{
    if (!o || o->type != J_OBJ) return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0) return &o->items[i];
    return NULL;
}

static double jnum(const jv *o, const char *key)
{
    const jv *v = jget(o, key);
    return v && (v->type == J_NUM || v->type == J_BOOL) ? v->num : 0;
}

static const char *jstr(const jv *o, const char *key)
{
    const jv *v = jget(o, key);
    return v && v->type == J_STR ? v->str : NULL;
}

/* ---- HTTP ------------------------------------------------------------------------------- */

static size_t collect(char *p, size_t size, size_t nmemb, void *ud)
{
    buf *b = ud;
    size_t n = size * nmemb;
    if (b->n + n > MAX_BODY) return 0;
    buf_add(b, p, n);
    return n;
}

/*
 * One request to the admin API; returns the status and the body in *out
 * (NUL-terminated). Transport failures end the program: nothing else can be
 * done about them.
 */
static long http(const char *method, const char *path, const char *body, buf *out)
{
    char url[1024], errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *h = NULL;
    long status = 0;
    CURL *c = curl_easy_init();
    if (!c) die(EXIT_FAILED, "cannot initialise libcurl");
    snprintf(url, sizeof url, "%s%s", base_url, path);
    memset(out, 0, sizeof *out);
    buf_add(out, "", 0);
    if (auth_header) h = curl_slist_append(h, auth_header);
    if (body) h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    /* The admin API is local: an environment proxy must not see the token. */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "shieldctl");
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (rc != CURLE_OK)
        die(EXIT_FAILED,
            "cannot reach the admin API at %s: %s (is shield running with "
            "admin.address set to this address?)",
            base_url, *errbuf ? errbuf : curl_easy_strerror(rc));
    return status;
}

/* Non-2xx answers: say what the API said and give up. */
static void check_status(const char *method, const char *path, long status, buf *b)
{
    if (status >= 200 && status < 300) return;
    if (status == 401) {
        if (!auth_header)
            die(EXIT_FAILED, "%s %s: 401 Unauthorized: the admin API needs a token (-t TOKENFILE)",
                method, path);
        die(EXIT_FAILED, "%s %s: 401 Unauthorized: the admin API rejected the token in %s", method,
            path, token_path);
    }
    jv *doc = jload(b->p, b->n);
    const char *msg = doc ? jstr(doc, "error") : NULL;
    fprintf(stderr, "%s: %s %s: HTTP %ld%s%s\n", prog, method, path, status, msg ? ": " : "",
            msg ? msg : "");
    if (doc) jrelease(doc);
    free(b->p);
    exit(EXIT_FAILED);
}

static jv *need_json(const char *path, buf *b)
{
    jv *doc = jload(b->p, b->n);
    if (!doc) die(EXIT_FAILED, "%s: the admin API answered something that is not JSON", path);
    return doc;
}

/* ---- output helpers --------------------------------------------------------------------- */

static const char *human_bytes(double v, char *out, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%.0f B", v);
    else
        snprintf(out, cap, "%.1f %s", v, units[u]);
    return out;
}

/* ---- commands --------------------------------------------------------------------------- */

static int cmd_stats(void)
{
    buf b;
    long st = http("GET", "/stats", NULL, &b);
    check_status("GET", "/stats", st, &b);
    jv *d = need_json("/stats", &b);
    if (json_out) {
        fputs(b.p, stdout);
        if (b.n && b.p[b.n - 1] != '\n') putchar('\n');
        jrelease(d);
        free(b.p);
        return 0;
    }
    char h1[32], h2[32], h3[32];
    printf("requests        %.0f\n", jnum(d, "requests"));
    const jv *c = jget(d, "cache");
    if (c && c->type == J_OBJ) {
        double hits = jnum(c, "hits"), refresh = jnum(c, "refresh_hits"),
               misses = jnum(c, "misses");
        double denom = hits + refresh + misses;
        printf("cache           hits %.0f  refresh_hits %.0f  misses %.0f  collapsed %.0f  "
               "passes %.0f\n",
               hits, refresh, misses, jnum(c, "collapsed"), jnum(c, "passes"));
        if (denom > 0)
            printf("hit ratio       %.1f%%\n", 100.0 * (hits + refresh) / denom);
        else
            printf("hit ratio       -\n");
        printf(
            "bytes           from_memory %.0f (%s)  from_disk %.0f (%s)  from_origin %.0f (%s)\n",
            jnum(c, "bytes_from_memory"), human_bytes(jnum(c, "bytes_from_memory"), h1, 32),
            jnum(c, "bytes_from_disk"), human_bytes(jnum(c, "bytes_from_disk"), h2, 32),
            jnum(c, "bytes_from_origin"), human_bytes(jnum(c, "bytes_from_origin"), h3, 32));
        printf("objects         %.0f in memory (%.0f bytes, %s of %s)  %.0f on disk (%s)\n",
               jnum(c, "objects"), jnum(c, "bytes"), human_bytes(jnum(c, "bytes"), h1, 32),
               human_bytes(jnum(c, "memory_size"), h2, 32), jnum(c, "disk_objects"),
               human_bytes(jnum(c, "disk_bytes"), h3, 32));
        printf("origin          fetches %.0f  evictions %.0f  invalidations %.0f\n",
               jnum(c, "origin_fetches"), jnum(c, "evictions"), jnum(c, "invalidations"));
    } else {
        printf("cache           disabled\n");
    }
    const jv *e = jget(d, "edge");
    printf("edge           ");
    int any = 0;
    for (size_t i = 0; e && e->type == J_OBJ && i < e->n; i++)
        if (e->items[i].type == J_NUM && e->items[i].num != 0) {
            printf(" %s %.0f", e->keys[i], e->items[i].num);
            any = 1;
        }
    printf("%s\n", any ? "" : " no rejections");
    const jv *t = jget(d, "tls");
    if (t)
        printf("tls             handshakes %.0f  failures %.0f\n", jnum(t, "handshakes"),
               jnum(t, "handshake_failures"));
    const jv *p = jget(d, "prefetch");
    if (p && jstr(p, "id"))
        printf("prefetch        %s: %.0f of %.0f done, %.0f failed%s\n", jstr(p, "id"),
               jnum(p, "done"), jnum(p, "total"), jnum(p, "failed"),
               jnum(p, "running") ? " (running)" : "");
    jrelease(d);
    free(b.p);
    return 0;
}

static int cmd_invalidate(int argc, char **argv)
{
    buf body = {0}, b;
    if (argc < 1) usage_error("invalidate: at least one PATH (/exact or /prefix/*)");
    buf_str(&body, "{\"paths\": [");
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] != '/') usage_error("invalidate: \"%s\": paths start with '/'", argv[i]);
        if (i) buf_str(&body, ", ");
        buf_json_str(&body, argv[i]);
    }
    buf_str(&body, "]}");
    long st = http("POST", "/invalidations", body.p, &b);
    free(body.p);
    check_status("POST", "/invalidations", st, &b);
    jv *d = need_json("/invalidations", &b);
    if (json_out) {
        fputs(b.p, stdout);
    } else {
        const char *id = jstr(d, "id"), *status = jstr(d, "status"), *ct = jstr(d, "create_time");
        printf("%s %s (%.0f path%s%s%s)\n", id ? id : "?", status ? status : "?", jnum(d, "paths"),
               jnum(d, "paths") == 1 ? "" : "s", ct ? ", created " : "", ct ? ct : "");
    }
    jrelease(d);
    free(b.p);
    return 0;
}

/* The array of rows in the /popular document, whatever its key. */
static const jv *find_rows(const jv *d)
{
    if (d->type == J_ARR) return d;
    static const char *names[] = {"top", "items", "popular", "objects", "by_requests", "requests"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const jv *v = jget(d, names[i]);
        if (v && v->type == J_ARR) return v;
    }
    for (size_t i = 0; d->type == J_OBJ && i < d->n; i++)
        if (d->items[i].type == J_ARR) return &d->items[i];
    return NULL;
}

static int cmd_top(int argc, char **argv)
{
    long n = 20;
    int opt;
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    optind = 0; /* GNU: rescan from argv[1] with fresh state */
    while ((opt = getopt_long(argc, argv, "+n:", opts, NULL)) != -1) {
        char *end;
        switch (opt) {
        case 'n':
            errno = 0;
            n = strtol(optarg, &end, 10);
            if (errno || *end || n < 1 || n > 1000)
                usage_error("top: -n \"%s\": expected a count from 1 to 1000", optarg);
            break;
        case 'j':
            json_out = 1;
            break;
        default:
            usage_error("top: unknown option");
        }
    }
    if (optind != argc) usage_error("top: unexpected argument \"%s\"", argv[optind]);
    char path[64];
    buf b;
    snprintf(path, sizeof path, "/popular?n=%ld", n);
    long st = http("GET", path, NULL, &b);
    if (st == 404)
        die(EXIT_FAILED, "GET /popular: 404: this Shield has no popular-objects endpoint (it "
                         "needs a build with GET /popular)");
    check_status("GET", "/popular", st, &b);
    jv *d = need_json("/popular", &b);
    if (json_out) {
        fputs(b.p, stdout);
        jrelease(d);
        free(b.p);
        return 0;
    }
    const jv *rows = find_rows(d);
    if (!rows) die(EXIT_FAILED, "GET /popular: no list of objects in the answer");
    printf("%12s %16s  %s\n", "requests", "bytes", "path");
    for (size_t i = 0; i < rows->n && (long)i < n; i++) {
        const jv *r = &rows->items[i];
        const char *p = jstr(r, "path");
        if (!p) p = jstr(r, "key");
        if (!p) p = jstr(r, "uri");
        double req = jget(r, "requests") ? jnum(r, "requests") : jnum(r, "count");
        printf("%12.0f %16.0f  %s\n", req, jnum(r, "bytes"), p ? p : "?");
    }
    jrelease(d);
    free(b.p);
    return 0;
}

static void read_paths(const char *file, buf *json, size_t *count)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    if (!f) die(EXIT_FAILED, "%s: %s", file, strerror(errno));
    *count = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        char *s = line, *e = line + len;
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        *e = '\0';
        if (!*s || *s == '#') continue;
        if (*s != '/') die(EXIT_FAILED, "%s: \"%s\": paths start with '/'", file, s);
        buf_str(json, *count ? ", " : "");
        buf_json_str(json, s);
        (*count)++;
    }
    int err = ferror(f);
    free(line);
    if (f != stdin) fclose(f);
    if (err) die(EXIT_FAILED, "%s: read error", file);
}

static void draw(int tty, const char *id, double done, double total, double failed, int final)
{
    if (tty) {
        int width = 40, fill = total > 0 ? (int)(width * done / total) : width;
        char bar[64];
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(width - fill));
        bar[width] = '\0';
        fprintf(stderr, "\r%s [%s] %.0f/%.0f", id, bar, done, total);
        if (failed) fprintf(stderr, " (%.0f failed)", failed);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %.0f/%.0f done, %.0f failed\n", id, done, total, failed);
    }
    fflush(stderr);
}

static int cmd_warm(int argc, char **argv)
{
    const char *host = NULL;
    int opt;
    static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
                                         {"json", no_argument, NULL, 'j'},
                                         {NULL, 0, NULL, 0}};
    optind = 0; /* GNU: rescan from argv[1] with fresh state */
    while ((opt = getopt_long(argc, argv, "+H:", opts, NULL)) != -1) {
        if (opt == 'H')
            host = optarg;
        else if (opt == 'j')
            json_out = 1;
        else
            usage_error("warm: unknown option");
    }
    if (argc - optind != 1) usage_error("warm: expected one FILE of paths (- for stdin)");
    buf body = {0}, b;
    size_t count;
    buf_str(&body, "{\"paths\": [");
    read_paths(argv[optind], &body, &count);
    buf_str(&body, "]");
    if (host) {
        buf_str(&body, ", \"host\": ");
        buf_json_str(&body, host);
    }
    buf_str(&body, "}");
    if (!count) die(EXIT_FAILED, "%s: no paths to warm", argv[optind]);

    long st = http("POST", "/prefetch", body.p, &b);
    free(body.p);
    check_status("POST", "/prefetch", st, &b);
    jv *d = need_json("/prefetch", &b);
    const char *idp = jstr(d, "id");
    if (!idp) die(EXIT_FAILED, "POST /prefetch: no id in the answer");
    char id[64], path[96];
    snprintf(id, sizeof id, "%s", idp);
    jrelease(d);
    free(b.p);
    snprintf(path, sizeof path, "/prefetch/%s", id);

    int tty = isatty(STDERR_FILENO);
    double last_done = -1;
    time_t last_line = 0;
    for (;;) {
        st = http("GET", path, NULL, &b);
        check_status("GET", path, st, &b);
        d = need_json(path, &b);
        double done = jnum(d, "done"), total = jnum(d, "total"), failed = jnum(d, "failed");
        int running = jnum(d, "running") != 0;
        /* Plain output: a line when something moved, at most one a second. */
        if (tty || !running || (done != last_done && time(NULL) != last_line)) {
            draw(tty, id, done, total, failed, !running);
            last_done = done;
            last_line = time(NULL);
        }
        if (!running) {
            if (json_out) {
                fputs(b.p, stdout);
            } else {
                printf("prefetch %s: %.0f of %.0f fetched, %.0f failed\n", id, done - failed, total,
                       failed);
                const jv *errs = jget(d, "errors");
                for (size_t i = 0; errs && errs->type == J_ARR && i < errs->n; i++) {
                    double s = jnum(&errs->items[i], "status");
                    const char *p = jstr(&errs->items[i], "path");
                    if (s)
                        printf("  failed: %s (HTTP %.0f)\n", p ? p : "?", s);
                    else
                        printf("  failed: %s (no response)\n", p ? p : "?");
                }
                if (failed > (double)(errs ? errs->n : 0))
                    printf("  ... (the first %zu failures are listed)\n", errs ? errs->n : 0);
            }
            jrelease(d);
            free(b.p);
            return failed ? EXIT_FAILED : 0;
        }
        jrelease(d);
        free(b.p);
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- main ------------------------------------------------------------------------------- */

static void load_token(const char *file)
{
    char line[4098];
    FILE *f = fopen(file, "r");
    if (!f) die(EXIT_FAILED, "token file %s: %s", file, strerror(errno));
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    fclose(f);
    char *s = line, *e = line + strlen(line);
    while (s < e && isspace((unsigned char)*s))
        s++;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    *e = '\0';
    if (!*s) die(EXIT_FAILED, "token file %s: empty (the token is its first line)", file);
    size_t n = strlen(s) + sizeof "Authorization: Bearer ";
    auth_header = xrealloc(NULL, n);
    snprintf(auth_header, n, "Authorization: Bearer %s", s);
}

int main(int argc, char **argv)
{
    const char *addr = getenv("SHIELDCTL_ADDRESS"), *tok = getenv("SHIELDCTL_TOKEN_FILE");
    static const struct option opts[] = {{"address", required_argument, NULL, 'a'},
                                         {"token-file", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+:a:t:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case 't':
            tok = optarg;
            break;
        case 'j':
            json_out = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case ':':
            usage_error("option %s needs an argument", argv[optind - 1]);
        default:
            usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc) usage_error("no COMMAND (stats, invalidate, top, warm)");
    if (!addr || !*addr) addr = "127.0.0.1:9090";
    if (strncmp(addr, "http://", 7) == 0)
        snprintf(base_url, sizeof base_url, "%s", addr);
    else if (strstr(addr, "://"))
        usage_error("-a %s: only http:// (the admin API has no TLS)", addr);
    else
        snprintf(base_url, sizeof base_url, "http://%s", addr);
    size_t bl = strlen(base_url);
    while (bl > 7 && base_url[bl - 1] == '/')
        base_url[--bl] = '\0';

    const char *cmd = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    if (strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    int known = !strcmp(cmd, "stats") || !strcmp(cmd, "invalidate") || !strcmp(cmd, "top") ||
                !strcmp(cmd, "warm");
    if (!known) usage_error("unknown command \"%s\"", cmd);
    if (!strcmp(cmd, "stats") && sub_argc > 1) {
        if (sub_argc == 2 && !strcmp(sub_argv[1], "--json"))
            json_out = 1;
        else
            usage_error("stats: unexpected argument \"%s\"", sub_argv[1]);
    }
    if (tok && *tok) {
        token_path = tok;
        load_token(tok);
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) die(EXIT_FAILED, "libcurl init failed");
    int rc;
    if (!strcmp(cmd, "stats"))
        rc = cmd_stats();
    else if (!strcmp(cmd, "invalidate"))
        rc = cmd_invalidate(sub_argc - 1, sub_argv + 1);
    else if (!strcmp(cmd, "top"))
        rc = cmd_top(sub_argc, sub_argv);
    else
        rc = cmd_warm(sub_argc, sub_argv);
    free(auth_header);
    curl_global_cleanup();
    return rc;
}
