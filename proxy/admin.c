#include "shield/admin.h"
#include "shield/module.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/cache_persist.h"
#include "shield/log.h"
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
    unsigned long next_id;
};

static void reply_json(struct evhttp_request *req, int code, const char *reason,
                       struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, reason, body);
}

static void reply_error(struct evhttp_request *req, int code, const char *reason, const char *msg)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"error\": \"%s\"}\n", msg);
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
    uint64_t hs = 0, hsf = 0;
    for (size_t i = 0; i < a->nworkers; i++) {
        if (!a->workers[i]) continue;
        hs += __atomic_load_n(&a->workers[i]->stats.tls_handshakes, __ATOMIC_RELAXED);
        hsf += __atomic_load_n(&a->workers[i]->stats.tls_handshake_failures, __ATOMIC_RELAXED);
    }
    evbuffer_add_printf(b, "}, \"tls\": {\"handshakes\": %llu, \"handshake_failures\": %llu}",
                        (unsigned long long)hs, (unsigned long long)hsf);
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
            "\"disk_pending\": %llu}}\n",
            F(hits), F(misses), F(refresh_hits), F(collapsed), F(origin_fetches), F(passes),
            F(bytes_from_memory), F(bytes_from_disk), F(bytes_from_origin), F(evictions),
            F(objects), F(bytes), F(invalidations), F(fill_wait_us),
            (unsigned long long)a->cfg->cache.memory_size,
            (unsigned long long)cache_disk_objects(a->cache),
            (unsigned long long)cache_disk_bytes(a->cache),
            (unsigned long long)(cache_persist_of(a->cache)
                                     ? cache_persist_pending(cache_persist_of(a->cache))
                                     : 0));
#undef F
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

int sh_admin_parse_paths(const char *body, size_t len, int (*cb)(void *ud, const char *path),
                         void *ud)
{
    jcur j = {body, body + len};
    char key[32], path[4097];
    int count = 0;
    ws(&j);
    if (j.p >= j.end || *j.p++ != '{') return -1;
    if (jstring(&j, key, sizeof(key)) || strcmp(key, "paths") != 0) return -1;
    ws(&j);
    if (j.p >= j.end || *j.p++ != ':') return -1;
    ws(&j);
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
    ws(&j);
    if (j.p >= j.end || *j.p++ != '}') return -1;
    ws(&j);
    return j.p == j.end && count > 0 ? count : -1;
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
    sh_log(SH_LOG_INFO, "admin: invalidation I%lu of %d path(s)", a->next_id, n);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"id\": \"I%lu\", \"status\": \"Completed\", \"paths\": %d}\n",
                        a->next_id++, n);
    reply_json(req, 201, "Created", b);
    evbuffer_free(b);
}

static void admin_cb(struct evhttp_request *req, void *arg)
{
    sh_admin *a = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (path && strcmp(path, "/stats") == 0 && m == EVHTTP_REQ_GET)
        handle_stats(a, req);
    else if (path && strcmp(path, "/invalidations") == 0 && m == EVHTTP_REQ_POST)
        handle_invalidations(a, req);
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
    a->next_id = 1;
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
    if (a->stop_ev) event_free(a->stop_ev);
    if (a->http) evhttp_free(a->http);
    if (a->base) event_base_free(a->base);
    if (a->stop_fd[0] >= 0) close(a->stop_fd[0]);
    if (a->stop_fd[1] >= 0) close(a->stop_fd[1]);
    sh_free(a);
}
