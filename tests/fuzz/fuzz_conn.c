/*
 * Fuzz the viewer connection: the real proxy/conn.c state machine (the strict
 * scanner, llhttp, limits, keep-alive, pipelining, Expect, trailers, early
 * rejections, the body drain) with the real modules, cache and pass/serve
 * paths, driven over a socketpair by the bytes of the input.
 *
 * Input: four control bytes, then the bytes a viewer sends.
 *   [0] flags: bit 0 no cache (pass everything), bit 1 the viewer half-closes
 *       after sending, bits 4-7 added to the origin's script
 *   [1] how the bytes are split for the second run (0 = one byte per read)
 *   [2] the origin's script: which answer each forwarded request gets
 *   [3] the size of the origin's bodies
 *
 * The stub origin below replaces proxy/origin.c (the Makefile links this
 * harness without it): every request Shield forwards is recorded and answered
 * from the control bytes, through the event loop, in steps (head, body pieces,
 * end or failure), honouring pauses, as the curl client would.
 *
 * Each input runs twice on a fresh worker and cache: once written in one
 * piece, once split into reads at points chosen by byte [1], with the event
 * loop run to quiescence between reads. Beyond the sanitizers, the harness
 * aborts when
 *   - the two runs differ in what reached the origin or what the viewer got
 *     (Date and Age values aside): how bytes arrive must not change meaning;
 *   - the scanner and llhttp disagreed on a message boundary;
 *   - a connection is still open after the viewer has gone and every origin
 *     answer was delivered (a request outliving its connection).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/config.h"
#include "shield/log.h"
#include "shield/module.h"
#include "shield/origin.h"
#include "shield/snapshot.h"
#include "shield/worker.h"

#define CHECK(x, ...)                                                                              \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_conn: check failed: %s: ", #x);                                  \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- a growable transcript ------------------------------------------------ */

typedef struct {
    char *p;
    size_t n, cap;
} tbuf;

static void tb_add(tbuf *b, const void *d, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void tb_str(tbuf *b, const char *s)
{
    tb_add(b, s, strlen(s));
}

/* ---- the stub origin (replaces proxy/origin.c) ---------------------------- */

struct origin_ctx {
    struct event_base *base;
    origin_fetch *fetches;
    size_t active;
};

struct origin_fetch {
    origin_ctx *ctx;
    origin_fetch *next;
    const origin_callbacks *cb;
    void *ud;
    struct event *ev;
    int variant, head_only, paused, in_cb, cancelled;
    int step;        /* 0 = head next; then body pieces */
    size_t body_len; /* announced */
    size_t sent;     /* body bytes delivered */
    size_t cut;      /* deliver this many, then fail (variant "read error") */
};

/* What the current run records and how the origin answers it. */
static struct {
    tbuf *log;
    unsigned script, size;
    unsigned nfetch;
} run;

static const char body_bytes[] = "<html><body>Shield fuzz origin body text, compressible "
                                 "compressible compressible compressible compressible.</body>"
                                 "</html>\n";

const char *origin_result_name(origin_result r)
{
    static const char *const n[] = {"ok",       "dns",  "connect",     "timeout",
                                    "protocol", "read", "credentials", "internal"};
    return (unsigned)r < sizeof n / sizeof n[0] ? n[r] : "?";
}

void origin_global_init(void) {}

void origin_global_cleanup(void) {}

origin_ctx *origin_ctx_new(struct event_base *base)
{
    origin_ctx *c = calloc(1, sizeof(*c));
    c->base = base;
    return c;
}

size_t origin_ctx_active(const origin_ctx *ctx)
{
    return ctx->active;
}

static void fetch_free(origin_fetch *f)
{
    origin_ctx *ctx = f->ctx;
    for (origin_fetch **p = &ctx->fetches; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    ctx->active--;
    event_free(f->ev);
    free(f);
}

void origin_ctx_free(origin_ctx *ctx)
{
    while (ctx->fetches)
        fetch_free(ctx->fetches);
    free(ctx);
}

static void fetch_step(evutil_socket_t fd, short what, void *arg);

static void fetch_next(origin_fetch *f)
{
    event_active(f->ev, EV_TIMEOUT, 0);
}

/* Call into the consumer; 1 if f was cancelled meanwhile (and is now freed). */
static int fetch_gone_after(origin_fetch *f)
{
    f->in_cb = 0;
    if (!f->cancelled) return 0;
    fetch_free(f);
    return 1;
}

static void fetch_done(origin_fetch *f, origin_result r)
{
    f->in_cb = 1;
    f->cb->on_done(f->ud, r, r == ORIGIN_OK ? NULL : "stub origin");
    f->in_cb = 0;
    fetch_free(f); /* freed right after on_done, as the real client does */
}

static void fetch_head(origin_fetch *f)
{
    static const int statuses[] = {200, 200, 404, 500, 0, 0, 200, 304, 206, 200, 403, 200};
    int status = statuses[f->variant];
    if (status == 0) { /* failed before any byte */
        fetch_done(f, f->variant == 4 ? ORIGIN_ERR_CONNECT : ORIGIN_ERR_TIMEOUT);
        return;
    }
    char cl[32], cr[64];
    sh_header h[8];
    size_t n = 0;
#define H(a, b) (h[n++] = (sh_header){a, strlen(a), b, strlen(b)})
    f->body_len = status == 304 ? 0 : run.size;
    if (status == 206) {
        f->body_len = run.size > 10 ? 10 : run.size;
        snprintf(cr, sizeof cr, "bytes 0-%zu/%u", f->body_len ? f->body_len - 1 : 0, run.size + 10);
        H("Content-Range", cr);
    }
    snprintf(cl, sizeof cl, "%zu", f->body_len);
    if (f->variant != 1) H("Content-Length", cl); /* variant 1: close-delimited */
    H("Content-Type", f->variant % 2 ? "application/epub+zip" : "text/html");
    /* variant 3 carries an MD5-shaped ETag its body does not match: never stored */
    H("ETag", f->variant == 3 ? "\"0123456789abcdef0123456789abcdef\"" : "\"fuzz-1\"");
    H("Last-Modified", "Mon, 07 Dec 2026 10:00:00 GMT");
    if (f->variant == 9) H("Cache-Control", "no-store");
    if (f->variant == 11) H("Vary", "*");
    if (f->variant == 2) H("Cache-Control", "max-age=60");
#undef H
    if (f->variant == 6) f->cut = f->body_len / 2;
    f->in_cb = 1;
    f->cb->on_response(f->ud, status, h, n);
    if (fetch_gone_after(f)) return;
    f->step = 1;
    fetch_next(f);
}

static void fetch_step(evutil_socket_t fd, short what, void *arg)
{
    origin_fetch *f = arg;
    (void)fd;
    (void)what;
    if (f->paused) return;
    if (f->step == 0) {
        fetch_head(f);
        return;
    }
    size_t end = f->head_only ? 0 : f->body_len;
    if (f->variant == 6 && f->sent >= f->cut) {
        fetch_done(f, ORIGIN_ERR_READ);
        return;
    }
    if (f->sent >= end) {
        fetch_done(f, ORIGIN_OK);
        return;
    }
    /* Pieces of 1..97 bytes, from the body text repeated. */
    size_t piece = 1 + (f->sent * 31 + run.script) % 97, off = f->sent % (sizeof body_bytes - 1);
    if (piece > end - f->sent) piece = end - f->sent;
    if (piece > sizeof body_bytes - 1 - off) piece = sizeof body_bytes - 1 - off;
    if (f->variant == 6 && piece > f->cut - f->sent) piece = f->cut - f->sent;
    f->in_cb = 1;
    int rc = f->cb->on_body(f->ud, body_bytes + off, piece);
    if (fetch_gone_after(f)) return;
    if (rc == ORIGIN_BODY_PAUSE) {
        f->paused = 1;
        return;
    }
    f->sent += piece;
    fetch_next(f);
}

origin_fetch *origin_fetch_start(origin_ctx *ctx, const origin_request *req,
                                 const origin_callbacks *cb, void *ud)
{
    tbuf *log = run.log;
    char line[64];
    tb_str(log, "\n>> origin ");
    tb_str(log, req->method);
    tb_str(log, " ");
    tb_add(log, req->path_query, req->path_query_len);
    tb_str(log, "\n");
    for (size_t i = 0; i < req->nheaders; i++) {
        tb_add(log, req->headers[i].name, req->headers[i].name_len);
        tb_str(log, ": ");
        tb_add(log, req->headers[i].value, req->headers[i].value_len);
        tb_str(log, "\n");
    }
    snprintf(line, sizeof line, "body %zu: ", req->body_len);
    tb_str(log, line);
    if (req->body_len) tb_add(log, req->body, req->body_len);
    tb_str(log, "\n<<\n");

    origin_fetch *f = calloc(1, sizeof(*f));
    f->ctx = ctx;
    f->cb = cb;
    f->ud = ud;
    f->variant = (int)((run.script + run.nfetch++ * 5) % 12);
    f->head_only = strcmp(req->method, "HEAD") == 0;
    f->ev = event_new(ctx->base, -1, 0, fetch_step, f);
    f->next = ctx->fetches;
    ctx->fetches = f;
    ctx->active++;
    fetch_next(f); /* never a callback before returning */
    return f;
}

void origin_fetch_resume(origin_fetch *f)
{
    if (!f->paused) return;
    f->paused = 0;
    fetch_next(f);
}

void origin_fetch_cancel(origin_fetch *f)
{
    if (f->in_cb) {
        f->cancelled = 1; /* freed when its callback returns */
        return;
    }
    fetch_free(f);
}

/* ---- the world: one configuration, a fresh worker and cache per run ---------- */

static const char config_text[] =
    "node = { name = \"fuzz\"; workers = 1; };\n"
    "listen = ( { address = \"127.0.0.1:1\"; } );\n"
    "origins = ( { name = \"o\"; type = \"http\"; endpoint = \"http://127.0.0.1:9\"; } );\n"
    "behaviors = (\n"
    "  { path = \"/rw/*\"; origin = \"o\"; allowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\", "
    "\"PUT\", \"POST\", \"PATCH\", \"DELETE\"]; forward_headers = [\"X-Keep\", \"Origin\"]; "
    "compress = true; },\n"
    "  { path = \"/q/*\"; origin = \"o\"; forward_query = true; forward_cookies = true; "
    "cached_methods = [\"GET\", \"HEAD\", \"OPTIONS\"]; allowed_methods = [\"GET\", \"HEAD\", "
    "\"OPTIONS\"]; cors = { allow_origins = [\"*\"]; }; },\n"
    "  { path = \"*\"; origin = \"o\"; compress = true; default_ttl = 60; }\n"
    ");\n"
    "limits = { max_body_size = \"4K\"; max_header_size = \"2K\"; max_url = 512; "
    "max_headers = 16; max_requests_per_connection = 6; };\n"
    "cache = { enabled = true; memory_size = \"4M\"; max_object_size = \"64K\"; };\n";

static sh_snapshot *snap;
static int listen_fd = -1;

static void init_once(void)
{
    if (snap) return;
    signal(SIGPIPE, SIG_IGN);
    sh_log_set_level(SH_LOG_ERROR);
    char path[] = "/tmp/fuzz_conn.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    CHECK(write(fd, config_text, sizeof config_text - 1) == (ssize_t)(sizeof config_text - 1),
          "write config");
    close(fd);
    sh_config *cfg = sh_config_load(path, stderr);
    unlink(path);
    CHECK(cfg, "the harness configuration does not load");
    char err[256];
    CHECK(sh_pipeline_check(err, sizeof err) == 0, "%s", err);
    snap = sh_snapshot_new(cfg, 1, err, sizeof err);
    CHECK(snap, "%s", err);
    sh_snapshot_publish(snap);
    CHECK(sh_modules_init(snap->cfg, err, sizeof err) == 0, "%s", err);
    /* The worker wants a listener per configured address: one that nobody
     * connects to, bound to loopback. */
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(listen_fd, (struct sockaddr *)&a, sizeof a) == 0, "bind: %s", strerror(errno));
}

/* What one run produced. The two streams are compared apart: how they
 * interleave depends on when the harness reads, not on Shield. */
typedef struct {
    tbuf origin; /* the requests the origin received */
    tbuf viewer; /* the bytes the viewer received, then "[closed]" */
    int closed;
} transcript;

/* Read what Shield wrote to the viewer; 1 if anything (or the close) came. */
static int drain_viewer(int fd, transcript *t)
{
    char buf[16384];
    int any = 0;
    while (!t->closed) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            tb_add(&t->viewer, buf, (size_t)n);
            any = 1;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            tb_str(&t->viewer, "\n[closed]\n");
            t->closed = 1;
            any = 1;
        } else {
            break;
        }
    }
    return any;
}

/* Run the worker's loop until nothing is left to do without time passing. */
static void pump(sh_worker *w, int fd, transcript *t)
{
    for (int rounds = 0; rounds < 100000; rounds++) {
        event_base_loop(w->base, EVLOOP_NONBLOCK);
        if (!drain_viewer(fd, t) && !event_base_get_num_events(w->base, EVENT_BASE_COUNT_ACTIVE))
            return;
    }
    CHECK(0, "the event loop never settles");
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k <= 0) return; /* Shield closed, or its buffer is full: the rest is lost */
        p += k;
        n -= (size_t)k;
    }
}

static void run_once(transcript *t, const uint8_t *d, size_t n, int split)
{
    unsigned flags = d[0], seed = d[1];
    run.log = &t->origin;
    run.script = d[2] + (flags >> 4);
    run.size = (unsigned)d[3] * 9 % 1500;
    run.nfetch = 0;
    d += 4;
    n -= 4;

    char err[256];
    sh_cache *cache = NULL;
    if (!(flags & 1)) {
        cache = sh_cache_new(snap->cfg, err, sizeof err);
        CHECK(cache, "%s", err);
    }
    int lfd = dup(listen_fd);
    sh_worker *w = sh_worker_new(0, snap, cache, &lfd, err, sizeof err);
    CHECK(w, "%s", err);
    /* Request ids from a fixed seed: both runs must print the same ones. */
    w->rng[0] = 0x9e3779b97f4a7c15ULL;
    w->rng[1] = 0x0123456789abcdefULL;

    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    struct sockaddr_in peer = {
        .sin_family = AF_INET, .sin_port = htons(40000), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    sh_conn_accept(w, sv[0], (struct sockaddr *)&peer, sizeof peer, &snap->cfg->listen[0]);

    if (!split) {
        send_all(sv[1], d, n);
        pump(w, sv[1], t);
    } else {
        uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
        size_t maxseg = 1 + seed % 64;
        for (size_t i = 0; i < n;) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t k = 1 + (size_t)(x % maxseg);
            if (k > n - i) k = n - i;
            send_all(sv[1], d + i, k);
            i += k;
            pump(w, sv[1], t);
        }
    }
    if (flags & 2) {
        shutdown(sv[1], SHUT_WR);
        pump(w, sv[1], t);
    }
    CHECK(w->stats.framing_disagreements == 0, "the scanner and llhttp framed a request apart");

    /* The viewer goes away: nothing of its connection may stay behind once
     * every origin answer has been delivered. */
    close(sv[1]);
    for (int i = 0; i < 1000 && (w->nconns || origin_ctx_active(w->origin)); i++)
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    CHECK(w->nconns == 0, "%zu connection(s) left after the viewer closed", w->nconns);

    sh_worker_close(w);
    sh_worker_free(w);
    if (cache) sh_cache_free(cache);
}

/* Blank the values of headers that depend on the clock. */
static void normalize(tbuf *b)
{
    static const char *const names[] = {"\r\nDate: ", "\r\nAge: "};
    for (size_t k = 0; k < 2; k++) {
        for (char *p = b->p;
             (p = memmem(p, b->n - (size_t)(p - b->p), names[k], strlen(names[k])));) {
            p += strlen(names[k]);
            while ((size_t)(p - b->p) < b->n && *p != '\r')
                *p++ = '#';
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    init_once();
    transcript a = {0}, b = {0};
    tb_str(&a.origin, "");
    tb_str(&b.origin, "");
    tb_str(&a.viewer, "");
    tb_str(&b.viewer, "");
    run_once(&a, data, size, 0);
    run_once(&b, data, size, 1);
    normalize(&a.viewer);
    normalize(&b.viewer);
    if (a.origin.n != b.origin.n || memcmp(a.origin.p, b.origin.p, a.origin.n) != 0 ||
        a.viewer.n != b.viewer.n || memcmp(a.viewer.p, b.viewer.p, a.viewer.n) != 0) {
        fprintf(stderr, "---- in one read ----\n%s\n%s\n---- split ----\n%s\n%s\n", a.origin.p,
                a.viewer.p, b.origin.p, b.viewer.p);
        CHECK(0, "the viewer's bytes meant something else when split");
    }
    free(a.origin.p);
    free(b.origin.p);
    free(a.viewer.p);
    free(b.viewer.p);
    return 0;
}
