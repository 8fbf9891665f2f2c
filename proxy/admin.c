#include "shield/admin.h"
#include "shield/module.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/cache_persist.h"
#include "shield/log.h"
#include "shield/snapshot.h"
#include "shield/metrics.h"
#include "shield/worker.h"

struct sh_admin {
    const sh_config *cfg;
    sh_cache *cache;
    sh_worker *const *workers;
    size_t nworkers;
    struct event_base *base;
    struct evhttp *http;
    struct event *stop_ev;
    int stop_fd[2];
    pthread_t thread;
    sh_prefetch *prefetch; /* NULL without a plain listener: prefetch_err says why */
    char prefetch_err[128];
    struct {
        char id[SH_PREFETCH_ID_LEN];
        char create_time[32];
        int paths;
    } inval[SH_ADMIN_INVAL_HISTORY]; /* a ring: the last ones, for GET /invalidations/<id> */
    size_t ninval;
};

static void reply_json(struct evhttp_request *req, int code, const char *reason,
                       struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, reason, body);
}

static void json_str(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            evbuffer_add_printf(b, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            evbuffer_add_printf(b, "\\u%04x", c);
        else
            evbuffer_add(b, s, 1);
    }
    evbuffer_add(b, "\"", 1);
}

static void reply_error(struct evhttp_request *req, int code, const char *reason, const char *msg)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"error\": ");
    json_str(b, msg);
    evbuffer_add_printf(b, "}\n");
    reply_json(req, code, reason, b);
    evbuffer_free(b);
}

static void handle_stats(sh_admin *a, struct evhttp_request *req)
{
    cache_stats *st = a->cache ? sh_cache_stats(a->cache) : NULL;
    uint64_t requests = 0;
    for (size_t i = 0; i < a->nworkers; i++)
        if (a->workers[i])
            requests += __atomic_load_n(&a->workers[i]->stats.requests, __ATOMIC_RELAXED);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"requests\": %llu, \"edge\": {", (unsigned long long)requests);
    for (int c = 0; c < SH_CNT_COUNT; c++) {
        uint64_t n = 0;
        for (size_t i = 0; i < a->nworkers; i++)
            if (a->workers[i])
                n += __atomic_load_n(&a->workers[i]->stats.edge[c], __ATOMIC_RELAXED);
        evbuffer_add_printf(b, "%s\"%s\": %llu", c ? ", " : "", sh_counter_name((sh_counter)c),
                            (unsigned long long)n);
    }
    uint64_t hs = 0, hsf = 0, fd = 0;
    for (size_t i = 0; i < a->nworkers; i++) {
        if (!a->workers[i]) continue;
        hs += __atomic_load_n(&a->workers[i]->stats.tls_handshakes, __ATOMIC_RELAXED);
        hsf += __atomic_load_n(&a->workers[i]->stats.tls_handshake_failures, __ATOMIC_RELAXED);
        fd += __atomic_load_n(&a->workers[i]->stats.framing_disagreements, __ATOMIC_RELAXED);
    }
    evbuffer_add_printf(b, "}, \"tls\": {\"handshakes\": %llu, \"handshake_failures\": %llu}",
                        (unsigned long long)hs, (unsigned long long)hsf);
    evbuffer_add_printf(b, ", \"framing_disagreements\": %llu", (unsigned long long)fd);
    sh_prefetch_progress pf;
    int have_pf = sh_prefetch_get(a->prefetch, &pf) == 0;
    evbuffer_add_printf(b, ", \"prefetch\": ");
    if (have_pf)
        evbuffer_add_printf(b,
                            "{\"id\": \"%s\", \"total\": %zu, \"done\": %zu, \"failed\": %zu, "
                            "\"running\": %s}",
                            pf.id, pf.total, pf.done, pf.failed, pf.running ? "true" : "false");
    else
        evbuffer_add_printf(b, "{\"id\": null, \"total\": 0, \"done\": 0, \"failed\": 0, "
                               "\"running\": false}");
    evbuffer_add_printf(b, ", \"cache\": ");
    if (!st) {
        evbuffer_add_printf(b, "null}\n");
    } else {
#define F(name) (unsigned long long)atomic_load(&st->name)
        evbuffer_add_printf(
            b,
            "{\"hits\": %llu, \"misses\": %llu, \"refresh_hits\": %llu, \"collapsed\": %llu, "
            "\"origin_fetches\": %llu, \"passes\": %llu, \"bytes_from_memory\": %llu, "
            "\"bytes_from_disk\": %llu, \"bytes_from_origin\": %llu, \"evictions\": %llu, "
            "\"objects\": %llu, \"bytes\": %llu, \"invalidations\": %llu, \"fill_wait_us\": %llu, "
            "\"memory_size\": %llu, \"disk_objects\": %llu, \"disk_bytes\": %llu, "
            "\"disk_pending\": %llu, \"disk_writes\": %llu, \"disk_refusals\": %llu, "
            "\"disk_write_errors\": %llu, ",
            F(hits), F(misses), F(refresh_hits), F(collapsed), F(origin_fetches), F(passes),
            F(bytes_from_memory), F(bytes_from_disk), F(bytes_from_origin), F(evictions),
            F(objects), F(bytes), F(invalidations), F(fill_wait_us),
            (unsigned long long)a->cfg->cache.memory_size,
            (unsigned long long)cache_disk_objects(a->cache),
            (unsigned long long)cache_disk_bytes(a->cache),
            (unsigned long long)(cache_persist_of(a->cache)
                                     ? cache_persist_pending(cache_persist_of(a->cache))
                                     : 0),
            F(disk_writes), F(disk_refusals), F(disk_write_errors));
#undef F
        /* The start-up scan runs while Shield serves: how far it got. */
        disk_scan_state ds = {0};
        if (cache_persist_of(a->cache))
            cache_persist_scan_progress(cache_persist_of(a->cache), &ds);
        evbuffer_add_printf(b,
                            "\"disk_scan\": {\"running\": %s, \"leaves_done\": %llu, "
                            "\"leaves\": %llu, \"objects\": %llu, \"bytes\": %llu}}}\n",
                            ds.running ? "true" : "false", (unsigned long long)ds.leaves_done,
                            (unsigned long long)ds.leaves, (unsigned long long)ds.objects,
                            (unsigned long long)ds.bytes);
    }
    reply_json(req, 200, "OK", b);
    evbuffer_free(b);
}

/* ---- a tiny JSON reader for {"paths": [...]} ---------------------------- */

typedef struct {
    const char *p, *end;
} jcur;

static void ws(jcur *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Read a JSON string into out (NUL-terminated); -1 if malformed or too long. */
static int jstring(jcur *j, char *out, size_t cap)
{
    size_t n = 0;
    ws(j);
    if (j->p >= j->end || *j->p != '"') return -1;
    j->p++;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        if (c < 0x20) return -1;
        if (c == '\\') {
            if (j->p >= j->end) return -1;
            char e = *j->p++;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                c = (unsigned char)e;
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'u': {
                if (j->end - j->p < 4) return -1;
                int v = 0;
                for (int i = 0; i < 4; i++) {
                    int h = hexval(j->p[i]);
                    if (h < 0) return -1;
                    v = v * 16 + h;
                }
                if (v == 0 || v >= 0x80) return -1; /* paths are ASCII here */
                c = (unsigned char)v;
                j->p += 4;
                break;
            }
            default:
                return -1;
            }
        }
        if (n + 1 >= cap) return -1;
        out[n++] = (char)c;
    }
    if (j->p >= j->end) return -1;
    j->p++;
    out[n] = '\0';
    return 0;
}

/*
 * {"paths": [...]} plus, when host is not NULL, an optional "host": "...", in
 * any order. Unknown or repeated keys are malformed: a typo must not be
 * silently ignored by an operator's script.
 */
static int parse_object(const char *body, size_t len, int (*cb)(void *ud, const char *path),
                        void *ud, char *host, size_t hostcap)
{
    jcur j = {body, body + len};
    char key[32], path[4097];
    int count = 0, seen_paths = 0, seen_host = 0;
    if (host) host[0] = '\0';
    ws(&j);
    if (j.p >= j.end || *j.p++ != '{') return -1;
    for (;;) {
        if (jstring(&j, key, sizeof(key))) return -1;
        ws(&j);
        if (j.p >= j.end || *j.p++ != ':') return -1;
        ws(&j);
        if (host && strcmp(key, "host") == 0 && !seen_host) {
            seen_host = 1;
            if (jstring(&j, host, hostcap)) return -1;
        } else if (strcmp(key, "paths") == 0 && !seen_paths) {
            seen_paths = 1;
            if (j.p >= j.end || *j.p++ != '[') return -1;
            ws(&j);
            if (j.p < j.end && *j.p == ']') {
                j.p++;
            } else {
                for (;;) {
                    if (jstring(&j, path, sizeof(path))) return -1;
                    if (cb && cb(ud, path) != 0) return -1;
                    count++;
                    ws(&j);
                    if (j.p < j.end && *j.p == ',') {
                        j.p++;
                        continue;
                    }
                    if (j.p < j.end && *j.p == ']') {
                        j.p++;
                        break;
                    }
                    return -1;
                }
            }
        } else {
            return -1;
        }
        ws(&j);
        if (j.p < j.end && *j.p == ',') {
            j.p++;
            continue;
        }
        break;
    }
    if (j.p >= j.end || *j.p++ != '}') return -1;
    ws(&j);
    return j.p == j.end && count > 0 ? count : -1;
}

int sh_admin_parse_paths(const char *body, size_t len, int (*cb)(void *ud, const char *path),
                         void *ud)
{
    return parse_object(body, len, cb, ud, NULL, 0);
}

int sh_admin_parse_prefetch(const char *body, size_t len, int (*cb)(void *ud, const char *path),
                            void *ud, char *host, size_t hostcap)
{
    return parse_object(body, len, cb, ud, host, hostcap);
}

static int check_path(void *ud, const char *path)
{
    size_t len = strlen(path);
    const char *star = strchr(path, '*');
    (void)ud;
    return (len == 0 || len > 4000 || path[0] != '/' || (star && star != path + len - 1)) ? -1 : 0;
}

static int apply_path(void *ud, const char *path)
{
    sh_admin *a = ud;
    return sh_cache_invalidate(a->cache, path, time(NULL)) == 0 ? 0 : -1;
}

static void reply_invalidation(sh_admin *a, struct evhttp_request *req, size_t slot, int code,
                               const char *reason)
{
    struct evbuffer *b = evbuffer_new();
    /* CloudFront-like; the rules apply at once, so an invalidation is never InProgress. */
    evbuffer_add_printf(b,
                        "{\"id\": \"%s\", \"status\": \"Completed\", \"paths\": %d, "
                        "\"create_time\": \"%s\"}\n",
                        a->inval[slot].id, a->inval[slot].paths, a->inval[slot].create_time);
    reply_json(req, code, reason, b);
    evbuffer_free(b);
}

static void handle_invalidations(sh_admin *a, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (!a->cache) {
        reply_error(req, 409, "Conflict", "the cache is disabled");
        return;
    }
    if (len == 0 || len > (1 << 20)) {
        reply_error(req, 400, "Bad Request", "expected {\"paths\": [...]}");
        return;
    }
    const char *body = (const char *)evbuffer_pullup(in, -1);
    /* Validate every path before applying any: all or nothing. */
    int n = sh_admin_parse_paths(body, len, check_path, NULL);
    if (n < 0) {
        reply_error(req, 400, "Bad Request",
                    "expected {\"paths\": [\"/path\", \"/prefix/*\"]}: paths start with '/', "
                    "'*' only last");
        return;
    }
    if (sh_admin_parse_paths(body, len, apply_path, a) < 0) {
        /* Only a disk failure gets here: the paths were checked above. */
        reply_error(req, 500, "Internal Server Error", "invalidation could not be persisted");
        return;
    }
    size_t slot = a->ninval++ % SH_ADMIN_INVAL_HISTORY;
    sh_admin_new_id('I', a->inval[slot].id);
    sh_admin_iso_time(a->inval[slot].create_time);
    a->inval[slot].paths = n;
    sh_log(SH_LOG_INFO, "admin: invalidation %s of %d path(s)", a->inval[slot].id, n);
    reply_invalidation(a, req, slot, 201, "Created");
}

/* GET /invalidations/<id> */
static void handle_invalidation_get(sh_admin *a, struct evhttp_request *req, const char *id)
{
    size_t have = a->ninval < SH_ADMIN_INVAL_HISTORY ? a->ninval : SH_ADMIN_INVAL_HISTORY;
    for (size_t i = 0; i < have; i++)
        if (strcmp(a->inval[i].id, id) == 0) {
            reply_invalidation(a, req, i, 200, "OK");
            return;
        }
    reply_error(req, 404, "Not Found", "no such invalidation (only the last 256 are kept)");
}

/* ---- POST /prefetch, GET /prefetch/<id> ------------------------------------ */

typedef struct {
    char **v;
    size_t n, cap;
} path_list;

/* Sent as the request target as is: visible ASCII only, no fragment. */
static int prefetch_path_ok(const char *path)
{
    size_t len = strlen(path);
    if (len == 0 || len > 4000 || path[0] != '/') return 0;
    for (size_t i = 0; i < len; i++)
        if (path[i] < 0x21 || path[i] > 0x7e || path[i] == '#') return 0;
    return 1;
}

static int collect_path(void *ud, const char *path)
{
    path_list *l = ud;
    if (!prefetch_path_ok(path)) return -1;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = sh_realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = sh_strdup(path);
    return 0;
}

static void handle_prefetch(sh_admin *a, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char host[256], id[SH_PREFETCH_ID_LEN];
    path_list l = {0};
    if (!a->prefetch) {
        reply_error(req, 409, "Conflict", a->prefetch_err);
        return;
    }
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    int n = sh_admin_parse_prefetch(body, len, collect_path, &l, host, sizeof host);
    for (size_t i = 0; n >= 0 && host[i]; i++)
        if (host[i] < 0x21 || host[i] > 0x7e || host[i] == '/') n = -1;
    if (n < 0) {
        for (size_t i = 0; i < l.n; i++)
            sh_free(l.v[i]);
        sh_free(l.v);
        reply_error(req, 400, "Bad Request",
                    "expected {\"paths\": [\"/path\", ...], \"host\": \"optional Host\"}: paths "
                    "start with '/', visible ASCII only");
        return;
    }
    int rc = sh_prefetch_start(a->prefetch, l.v, l.n, host, id);
    if (rc == -1) {
        reply_error(req, 409, "Conflict", "a prefetch is already running: see GET /stats");
        return;
    }
    if (rc != 0) {
        reply_error(req, 500, "Internal Server Error", "cannot start the prefetch");
        return;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"id\": \"%s\", \"total\": %d}\n", id, n);
    reply_json(req, 202, "Accepted", b);
    evbuffer_free(b);
}

static void handle_prefetch_get(sh_admin *a, struct evhttp_request *req, const char *id)
{
    sh_prefetch_progress pf;
    if (sh_prefetch_get(a->prefetch, &pf) != 0 || strcmp(pf.id, id) != 0) {
        reply_error(req, 404, "Not Found", "no such prefetch (only the last one is kept)");
        return;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b,
                        "{\"id\": \"%s\", \"create_time\": \"%s\", \"total\": %zu, \"done\": %zu, "
                        "\"failed\": %zu, \"running\": %s, \"errors\": [",
                        pf.id, pf.create_time, pf.total, pf.done, pf.failed,
                        pf.running ? "true" : "false");
    for (size_t i = 0; i < pf.nerrors; i++) {
        evbuffer_add_printf(b, "%s{\"path\": ", i ? ", " : "");
        json_str(b, pf.errors[i].path);
        evbuffer_add_printf(b, ", \"status\": %d}", pf.errors[i].status);
    }
    evbuffer_add_printf(b, "]}\n");
    reply_json(req, 200, "OK", b);
    evbuffer_free(b);
}

/* ---- bearer token ------------------------------------------------------------ */

/*
 * Both sides are hashed first so the comparison is constant-time over equal
 * lengths and does not reveal the token's length either.
 */
static int authorized(const sh_config *cfg, struct evhttp_request *req)
{
    const char *want = cfg->admin.token;
    if (!want) return 1;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    int ok = 0;
    if (h) {
        while (*h == ' ' || *h == '\t')
            h++;
        if (strncasecmp(h, "Bearer", 6) == 0 && (h[6] == ' ' || h[6] == '\t')) {
            const char *t = h + 7;
            while (*t == ' ' || *t == '\t')
                t++;
            size_t tl = strlen(t);
            while (tl && (t[tl - 1] == ' ' || t[tl - 1] == '\t'))
                tl--;
            unsigned char got[SHA256_DIGEST_LENGTH], exp[SHA256_DIGEST_LENGTH];
            SHA256((const unsigned char *)t, tl, got);
            SHA256((const unsigned char *)want, strlen(want), exp);
            ok = CRYPTO_memcmp(got, exp, sizeof got) == 0;
        }
    }
    if (ok) return 1;
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                      h ? "Bearer realm=\"shield-admin\", error=\"invalid_token\""
                        : "Bearer realm=\"shield-admin\"");
    reply_error(req, 401, "Unauthorized",
                "the Authorization: Bearer <token> header is missing or wrong");
    return 0;
}

static void admin_cb(struct evhttp_request *req, void *arg)
{
    sh_admin *a = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    /* The token and the alarm thresholds follow configuration reloads. */
    sh_snapshot *snap = sh_snapshot_current();
    const sh_config *cur = snap ? snap->cfg : a->cfg;
    int ok = authorized(cur, req);
    sh_metrics_src ms = {cur, a->cache, a->workers, a->nworkers};
    int done = !ok || (path && m == EVHTTP_REQ_GET && sh_admin_monitor(&ms, path, req));
    sh_snapshot_unref(snap);
    if (done) return;
    if (path && strcmp(path, "/stats") == 0 && m == EVHTTP_REQ_GET)
        handle_stats(a, req);
    else if (path && strcmp(path, "/invalidations") == 0 && m == EVHTTP_REQ_POST)
        handle_invalidations(a, req);
    else if (path && strncmp(path, "/invalidations/", 15) == 0 && m == EVHTTP_REQ_GET)
        handle_invalidation_get(a, req, path + 15);
    else if (path && strcmp(path, "/prefetch") == 0 && m == EVHTTP_REQ_POST)
        handle_prefetch(a, req);
    else if (path && strncmp(path, "/prefetch/", 10) == 0 && m == EVHTTP_REQ_GET)
        handle_prefetch_get(a, req, path + 10);
    else
        reply_error(req, 404, "Not Found", "no such endpoint");
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(((sh_admin *)arg)->base);
}

static void *admin_main(void *arg)
{
    event_base_dispatch(((sh_admin *)arg)->base);
    return NULL;
}

sh_admin *sh_admin_start(const sh_config *cfg, sh_cache *cache, sh_worker *const *workers,
                         size_t nworkers, char *err, size_t errlen)
{
    sh_admin *a = sh_calloc(1, sizeof(*a));
    a->cfg = cfg;
    a->cache = cache;
    a->workers = workers;
    a->nworkers = nworkers;
    a->prefetch = sh_prefetch_new(cfg, a->prefetch_err, sizeof a->prefetch_err);
    a->stop_fd[0] = a->stop_fd[1] = -1;
    a->base = event_base_new();
    a->http = a->base ? evhttp_new(a->base) : NULL;
    if (!a->http || pipe2(a->stop_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "admin: cannot set up the event loop");
        goto fail;
    }
    int fd = socket(cfg->admin.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (const struct sockaddr *)&cfg->admin.addr, cfg->admin.addrlen) != 0 ||
        listen(fd, 64) != 0 || !evhttp_accept_socket_with_handle(a->http, fd)) {
        snprintf(err, errlen, "admin %s: %s", cfg->admin.address, strerror(errno));
        if (fd >= 0) close(fd);
        goto fail;
    }
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_max_body_size(a->http, 1 << 20);
    evhttp_set_timeout(a->http, 10);
    evhttp_set_gencb(a->http, admin_cb, a);
    a->stop_ev = event_new(a->base, a->stop_fd[0], EV_READ, stop_cb, a);
    event_add(a->stop_ev, NULL);
    if (pthread_create(&a->thread, NULL, admin_main, a) != 0) {
        snprintf(err, errlen, "admin: cannot start thread");
        goto fail;
    }
    return a;
fail:
    sh_admin_stop(a);
    return NULL;
}

void sh_admin_stop(sh_admin *a)
{
    if (!a) return;
    if (a->thread) {
        if (write(a->stop_fd[1], "x", 1) < 0)
            sh_log(SH_LOG_ERROR, "admin: stop: %s", strerror(errno));
        pthread_join(a->thread, NULL);
    }
    /* After the loop: no request can start another prefetch now. */
    sh_prefetch_free(a->prefetch);
    if (a->stop_ev) event_free(a->stop_ev);
    if (a->http) evhttp_free(a->http);
    if (a->base) event_base_free(a->base);
    if (a->stop_fd[0] >= 0) close(a->stop_fd[0]);
    if (a->stop_fd[1] >= 0) close(a->stop_fd[1]);
    sh_free(a);
}
