/*
 * LOG phase: the CloudFront real-time log (shield/realtime_log.h). The worker
 * samples and formats (the request's strings die with it) and pushes the
 * record on its own ring; the sender thread drains the rings every TICK_MS and
 * hands each record to the target with one write/send, never retrying: a
 * real-time log is best effort, and a stuck receiver must cost neither memory
 * nor worker time.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shield/accesslog.h"
#include "shield/alloc.h"
#include "shield/log.h"
#include "shield/logring.h"
#include "shield/module.h"
#include "shield/realtime_log.h"
#include "shield/worker.h"

/* A record fits one UDP datagram (65,507 bytes) whatever the request: each
 * request-controlled field is cut to FIELD_CAP escaped bytes (never inside an
 * escape), and the few dozen short fields fit in RESERVE. cs-headers and
 * cs-header-names are cut at 800 bytes like CloudFront's. */
#define LINE_CAP       60000
#define FIELD_CAP      4096
#define HEADERS_CAP    800
#define RESERVE        1024
#define RING_MAX_BYTES (8u << 20)
#define TICK_MS        50

const char *const sh_realtime_field_names[SH_RT_NFIELDS] = {
    "timestamp",
    "c-ip",
    "time-to-first-byte",
    "sc-status",
    "sc-bytes",
    "cs-method",
    "cs-protocol",
    "cs-host",
    "cs-uri-stem",
    "cs-bytes",
    "x-edge-location",
    "x-edge-request-id",
    "x-host-header",
    "time-taken",
    "cs-protocol-version",
    "c-ip-version",
    "cs-user-agent",
    "cs-referer",
    "cs-cookie",
    "cs-uri-query",
    "x-edge-response-result-type",
    "x-forwarded-for",
    "ssl-protocol",
    "ssl-cipher",
    "x-edge-result-type",
    "fle-encrypted-fields",
    "fle-status",
    "sc-content-type",
    "sc-content-len",
    "sc-range-start",
    "sc-range-end",
    "c-port",
    "x-edge-detailed-result-type",
    "c-country",
    "cs-accept-encoding",
    "cs-accept",
    "cache-behavior-path-pattern",
    "cs-headers",
    "cs-header-names",
    "cs-headers-count",
    "origin-fbl",
    "origin-lbl",
    "asn",
};

enum { T_OFF, T_FILE, T_UNIX, T_UDP };

int sh_realtime_field_index(const char *name)
{
    for (int i = 0; name && i < SH_RT_NFIELDS; i++)
        if (strcmp(name, sh_realtime_field_names[i]) == 0) return i;
    return -1;
}

/* Parse a target into kind + address (or path). 0 or -1 with err. */
static int parse_target(const char *t, int *kind, struct sockaddr_storage *ss, socklen_t *sl,
                        const char **path, char *err, size_t errlen)
{
    *kind = T_OFF;
    if (!t || !*t) return 0;
    if (strncmp(t, "file:", 5) == 0) {
        if (t[5] != '/') {
            snprintf(err, errlen, "file: needs an absolute path");
            return -1;
        }
        *kind = T_FILE;
        *path = t + 5;
        return 0;
    }
    if (strncmp(t, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        size_t l = strlen(t + 5);
        if (l == 0 || l >= sizeof un->sun_path) {
            snprintf(err, errlen, "unix: needs a socket path of 1-%zu bytes",
                     sizeof un->sun_path - 1);
            return -1;
        }
        memset(ss, 0, sizeof *ss);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, t + 5, l + 1);
        *sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l + 1);
        *kind = T_UNIX;
        *path = t + 5;
        return 0;
    }
    if (strncmp(t, "udp:", 4) == 0) {
        if (sh_parse_address(t + 4, ss, sl) != 0 ||
            (ss->ss_family == AF_INET ? ((struct sockaddr_in *)ss)->sin_port
                                      : ((struct sockaddr_in6 *)ss)->sin6_port) == 0) {
            snprintf(err, errlen, "udp: needs host:port (e.g. udp:127.0.0.1:9999)");
            return -1;
        }
        *kind = T_UDP;
        return 0;
    }
    snprintf(err, errlen, "use \"file:/path\", \"unix:/path\" or \"udp:host:port\"");
    return -1;
}

int sh_realtime_target_check(const char *target, char *err, size_t errlen)
{
    int kind;
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    const char *path = NULL;
    return parse_target(target, &kind, &ss, &sl, &path, err, errlen);
}

int sh_realtime_sampled(uint64_t *counter, unsigned pct)
{
    /* The pattern repeats every 100 requests, so the counter stays below 100. */
    uint64_t c = *counter;
    *counter = (c + 1) % 100;
    if (pct >= 100) return 1;
    return (c + 1) * pct / 100 > c * pct / 100;
}

/* ---- formatting ------------------------------------------------------------------------- */

typedef struct lbuf {
    char *p;
    size_t n, cap;
} lbuf;

static void put_raw(lbuf *b, const char *s, size_t l)
{
    if (b->n + l + 1 > b->cap) l = b->cap > b->n + 1 ? b->cap - b->n - 1 : 0;
    memcpy(b->p + b->n, s, l);
    b->n += l;
    b->p[b->n] = '\0';
}

static void put_cstr(lbuf *b, const char *s)
{
    put_raw(b, s, strlen(s));
}

/* CloudFront's escaping, at most vcap bytes; "-" when empty. */
static void put_esc(lbuf *b, const char *s, size_t len, size_t vcap)
{
    size_t room = b->cap - b->n;
    room = room > RESERVE ? room - RESERVE : (room > 2 ? 2 : room);
    if (room > vcap + 1) room = vcap + 1;
    b->n += sh_accesslog_escape(b->p + b->n, room, s, len);
}

static void put_str(lbuf *b, const char *s)
{
    put_esc(b, s, s ? strlen(s) : 0, FIELD_CAP);
}

static void put_hdr(lbuf *b, const sh_req *r, const char *name)
{
    const sh_header *h = r->headers ? sh_req_header(r, name) : NULL;
    put_esc(b, h ? h->value : NULL, h ? h->value_len : 0, FIELD_CAP);
}

static void put_num(lbuf *b, long long v)
{
    char t[32];
    int l = snprintf(t, sizeof t, "%lld", v);
    put_raw(b, t, (size_t)l);
}

/* Microseconds as seconds with milliseconds ("0.003"); "-" when negative. */
static void put_secs(lbuf *b, int64_t us)
{
    char t[32];
    if (us < 0) {
        put_cstr(b, "-");
        return;
    }
    long long ms = (long long)((us + 500) / 1000);
    int l = snprintf(t, sizeof t, "%lld.%03lld", ms / 1000, ms % 1000);
    put_raw(b, t, (size_t)l);
}

/* cs-headers ("Name:value\n" each) or cs-header-names ("Name\n" each),
 * escaped as one value and cut at HEADERS_CAP like CloudFront's. */
static void put_headers(lbuf *b, const sh_req *r, int values)
{
    char raw[HEADERS_CAP + 1];
    size_t n = 0;
    for (size_t i = 0; r->headers && i < r->nheaders && n < HEADERS_CAP; i++) {
        const sh_header *h = &r->headers[i];
        const char *parts[3] = {h->name, values ? ":" : NULL, values ? h->value : NULL};
        size_t lens[3] = {h->name_len, values ? 1 : 0, values ? h->value_len : 0};
        for (int k = 0; k < 3 && n < HEADERS_CAP; k++) {
            size_t l = lens[k] < HEADERS_CAP - n ? lens[k] : HEADERS_CAP - n;
            if (l) memcpy(raw + n, parts[k], l);
            n += l;
        }
        if (n < HEADERS_CAP) raw[n++] = '\n';
    }
    put_esc(b, raw, n, HEADERS_CAP);
}

static void put_field(lbuf *b, const sh_req *r, int f, int64_t now_us)
{
    const sh_config *cfg = r->cfg;
    int began = r->ttfb_us >= 0;
    const char *resp_type = r->result_type                    ? r->result_type
                            : r->resp.status >= 400 || !began ? "Error"
                                                              : "Miss";
    switch (f) {
    case 0: { /* timestamp: epoch seconds with milliseconds */
        char t[40];
        long long ms = (long long)(now_us / 1000);
        int l = snprintf(t, sizeof t, "%lld.%03lld", ms / 1000, ms % 1000);
        put_raw(b, t, (size_t)l);
        break;
    }
    case 1:
        put_str(b, r->client_ip[0] ? r->client_ip : NULL);
        break;
    case 2:
        put_secs(b, r->ttfb_us);
        break;
    case 3: /* 000: the viewer left before a response began */
        if (began)
            put_num(b, r->resp.status);
        else
            put_cstr(b, "000");
        break;
    case 4:
        put_num(b, (long long)r->bytes_sent);
        break;
    case 5:
        put_esc(b, r->method, r->method ? r->method_len : 0, FIELD_CAP);
        break;
    case 6:
        put_cstr(b, r->tls ? "https" : "http");
        break;
    case 7: /* cs-host: the viewer's Host */
    case 12:
        put_esc(b, r->host, r->host ? r->host_len : 0, FIELD_CAP);
        break;
    case 8: /* cs-uri-stem: the path and the query */
        put_esc(b, r->path, r->path ? r->path_len : 0, FIELD_CAP);
        if (r->query && r->query_len) {
            put_cstr(b, "?");
            put_esc(b, r->query, r->query_len, FIELD_CAP);
        }
        break;
    case 9:
        put_num(b, (long long)r->bytes_received);
        break;
    case 10:
        put_str(b, cfg ? cfg->pop : NULL);
        break;
    case 11:
        put_str(b, r->request_id[0] ? r->request_id : NULL);
        break;
    case 13:
        put_secs(b, r->start_us ? sh_now_us() - r->start_us : 0);
        break;
    case 14:
        put_cstr(b, r->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
        break;
    case 15:
        put_cstr(b, !r->client_ip[0] ? "-" : strchr(r->client_ip, ':') ? "IPv6" : "IPv4");
        break;
    case 16:
        put_hdr(b, r, "User-Agent");
        break;
    case 17:
        put_hdr(b, r, "Referer");
        break;
    case 18:
        put_hdr(b, r, "Cookie");
        break;
    case 19:
        put_esc(b, r->query, r->query ? r->query_len : 0, FIELD_CAP);
        break;
    case 20:
        put_str(b, resp_type);
        break;
    case 21:
        put_hdr(b, r, "X-Forwarded-For");
        break;
    case 22:
        put_str(b, r->tls ? r->tls_protocol : NULL);
        break;
    case 23:
        put_str(b, r->tls ? r->tls_cipher : NULL);
        break;
    case 24: /* a request cut short is an Error whatever it would have been */
        put_str(b, r->aborted ? "Error" : resp_type);
        break;
    case 25: /* fle-encrypted-fields, fle-status: no field-level encryption */
    case 26:
    case 41: /* origin-lbl: the core does not time the origin's last byte */
    case 42: /* asn: no ASN database */
        put_cstr(b, "-");
        break;
    case 27: {
        const sh_header *ct = began ? sh_hdrlist_get(&r->resp.headers, "Content-Type") : NULL;
        put_esc(b, ct ? ct->value : NULL, ct ? ct->value_len : 0, FIELD_CAP);
        break;
    }
    case 28:
        if (began && r->resp.content_length >= 0)
            put_num(b, (long long)r->resp.content_length);
        else
            put_cstr(b, "-");
        break;
    case 29:
    case 30:
        if (r->range_start >= 0 && r->range_end >= 0)
            put_num(b, (long long)(f == 29 ? r->range_start : r->range_end));
        else
            put_cstr(b, "-");
        break;
    case 31:
        if (r->client_port > 0)
            put_num(b, (long long)r->client_port);
        else
            put_cstr(b, "-");
        break;
    case 32: {
        const char *d = r->detailed_result;
        if (!d && r->aborted) d = began ? "ClientCommError" : "ClientHungUpRequest";
        put_str(b, d ? d : (r->aborted ? "Error" : resp_type));
        break;
    }
    case 33:
        put_str(b, r->country[0] ? r->country : NULL);
        break;
    case 34:
        put_hdr(b, r, "Accept-Encoding");
        break;
    case 35:
        put_hdr(b, r, "Accept");
        break;
    case 36:
        put_str(b, r->behavior ? r->behavior->path : NULL);
        break;
    case 37:
    case 38:
        put_headers(b, r, f == 37);
        break;
    case 39:
        put_num(b, (long long)(r->headers ? r->nheaders : 0));
        break;
    case 40:
        put_secs(b, r->origin_ttfb_us);
        break;
    default:
        put_cstr(b, "-");
        break;
    }
}

size_t sh_realtime_format(const sh_req *r, uint64_t fields, int64_t now_us, char *out, size_t cap)
{
    lbuf b = {out, 0, cap};
    int first = 1;
    if (cap == 0) return 0;
    out[0] = '\0';
    for (int f = 0; f < SH_RT_NFIELDS; f++) {
        if (!(fields & (UINT64_C(1) << f))) continue;
        if (!first) put_cstr(&b, "\t");
        first = 0;
        put_field(&b, r, f, now_us);
    }
    return b.n;
}

/* ---- the sender ------------------------------------------------------------------------- */

typedef struct rt_ring {
    sh_logring *ring;
    struct rt_ring *next; /* rt.rings, under rt.mu */
} rt_ring;

static struct {
    pthread_mutex_t mu; /* rings list + the target state below */
    pthread_cond_t cv;
    pthread_t thread;
    int running, stop;
    rt_ring *rings;
    /* configuration, copied at start */
    int kind;
    char *target; /* as configured, for messages */
    char *path;   /* file and unix targets */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t fields;
    unsigned sampling;
    size_t ring_size;
    /* the open file or socket */
    int fd;
    dev_t dev;
    ino_t ino;
    int64_t last_warn_us;
} rt = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .fd = -1};

static _Atomic uint64_t rt_dropped, rt_sent;
static atomic_int rt_reopen_asked;

uint64_t sh_realtime_dropped(void)
{
    return atomic_load_explicit(&rt_dropped, memory_order_relaxed);
}

uint64_t sh_realtime_sent(void)
{
    return atomic_load_explicit(&rt_sent, memory_order_relaxed);
}

void sh_realtime_reopen(void)
{
    atomic_store(&rt_reopen_asked, 1);
}

/* Warn at most once a minute: a receiver that is down would otherwise fill
 * the error log with one line per request. */
static void warn_rate_limited(const char *what)
{
    int64_t now = sh_now_us();
    if (rt.last_warn_us && now - rt.last_warn_us < 60000000LL) return;
    rt.last_warn_us = now;
    sh_log(SH_LOG_WARN, "real-time log: %s %s: %s (records dropped)", what, rt.target,
           strerror(errno));
}

static int open_file(void)
{
    struct stat st;
    int fd = open(rt.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    rt.fd = fd;
    rt.dev = st.st_dev;
    rt.ino = st.st_ino;
    return 0;
}

static int open_socket(void)
{
    int fd = socket(rt.addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    /* UDP is connected so an ICMP port unreachable comes back as
     * ECONNREFUSED on a later send and is counted as a drop; a unix datagram
     * socket stays unconnected so a receiver that re-binds the path is found
     * again by the next send. */
    if (rt.kind == T_UDP && connect(fd, (struct sockaddr *)&rt.addr, rt.addrlen) != 0) {
        close(fd);
        return -1;
    }
    rt.fd = fd;
    return 0;
}

static void send_rec(const sh_logrec *rec, void *arg)
{
    (void)arg;
    ssize_t w;
    if (rt.fd < 0) {
        /* a file that could not be reopened: try again at most once a record */
        if (rt.kind != T_FILE || open_file() != 0) {
            atomic_fetch_add_explicit(&rt_dropped, 1, memory_order_relaxed);
            if (rt.kind == T_FILE) warn_rate_limited("cannot open");
            return;
        }
    }
    do {
        if (rt.kind == T_FILE)
            w = write(rt.fd, rec->data, rec->len);
        else if (rt.kind == T_UNIX)
            w = sendto(rt.fd, rec->data, rec->len, MSG_DONTWAIT | MSG_NOSIGNAL,
                       (struct sockaddr *)&rt.addr, rt.addrlen);
        else
            w = send(rt.fd, rec->data, rec->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w == (ssize_t)rec->len) {
        atomic_fetch_add_explicit(&rt_sent, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&rt_dropped, 1, memory_order_relaxed);
    /* EAGAIN / ENOBUFS: the receiver is slow; dropping is the point. */
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
        warn_rate_limited("cannot send to");
}

/* A file target moved or removed (logrotate) or SIGUSR1: open the path again. */
static void check_file(void)
{
    int asked = atomic_exchange(&rt_reopen_asked, 0);
    if (rt.kind != T_FILE) return;
    if (rt.fd >= 0 && !asked) {
        struct stat st;
        if (stat(rt.path, &st) == 0 && st.st_dev == rt.dev && st.st_ino == rt.ino) return;
    }
    if (rt.fd >= 0) close(rt.fd);
    rt.fd = -1;
    if (open_file() != 0) warn_rate_limited("cannot open");
}

static void sender_round(void)
{
    check_file();
    for (rt_ring *r = rt.rings; r; r = r->next)
        sh_logring_drain(r->ring, send_rec, NULL);
}

static void *sender_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&rt.mu);
    while (!rt.stop) {
        sender_round();
        sh_logring_wait(&rt.cv, &rt.mu, TICK_MS);
    }
    sender_round();
    pthread_mutex_unlock(&rt.mu);
    return NULL;
}

int sh_realtime_start(const sh_config *cfg, char *err, size_t errlen)
{
    const char *path = NULL;
    char why[160];
    if (rt.running) return 0;
    if (parse_target(cfg->log.rt_target, &rt.kind, &rt.addr, &rt.addrlen, &path, why, sizeof why) !=
        0) {
        snprintf(err, errlen, "log.realtime.target: %s", why);
        return -1;
    }
    if (rt.kind == T_OFF) return 0;
    rt.path = sh_strdup(path ? path : "");
    rt.target = sh_strdup(cfg->log.rt_target);
    rt.fields = cfg->log.rt_fields;
    rt.sampling = cfg->log.rt_sampling;
    rt.ring_size = cfg->log.rt_ring_size;
    rt.rings = NULL;
    rt.stop = 0;
    rt.fd = -1;
    rt.last_warn_us = 0;
    atomic_store(&rt_dropped, 0);
    atomic_store(&rt_sent, 0);
    atomic_store(&rt_reopen_asked, 0);
    if ((rt.kind == T_FILE ? open_file() : open_socket()) != 0) {
        snprintf(err, errlen, "log.realtime.target %s: %s", cfg->log.rt_target, strerror(errno));
        sh_free(rt.path);
        sh_free(rt.target);
        rt.path = rt.target = NULL;
        return -1;
    }
    if (pthread_create(&rt.thread, NULL, sender_main, NULL) != 0) {
        snprintf(err, errlen, "real-time log: cannot start the sender thread");
        close(rt.fd);
        rt.fd = -1;
        sh_free(rt.path);
        sh_free(rt.target);
        rt.path = rt.target = NULL;
        return -1;
    }
    rt.running = 1;
    return 0;
}

void sh_realtime_stop(void)
{
    if (!rt.running) return;
    pthread_mutex_lock(&rt.mu);
    rt.stop = 1;
    pthread_cond_signal(&rt.cv);
    pthread_mutex_unlock(&rt.mu);
    pthread_join(rt.thread, NULL);
    rt.running = 0;
    if (rt.fd >= 0) close(rt.fd);
    rt.fd = -1;
    uint64_t d = sh_realtime_dropped();
    sh_log(d ? SH_LOG_WARN : SH_LOG_INFO, "real-time log: %llu records sent, %llu dropped",
           (unsigned long long)sh_realtime_sent(), (unsigned long long)d);
    sh_free(rt.path);
    sh_free(rt.target);
    rt.path = rt.target = NULL;
}

/* ---- the module ------------------------------------------------------------------------- */

typedef struct rt_state {
    rt_ring *ring;
    uint64_t seen; /* the sampling counter */
    char line[LINE_CAP];
} rt_state;

static int rtl_init(const sh_config *cfg, char *err, size_t errlen)
{
    return sh_realtime_start(cfg, err, errlen);
}

static void rtl_fini(void)
{
    sh_realtime_stop();
}

static int rtl_worker_init(struct sh_worker *w, const sh_config *cfg, void **state)
{
    (void)w;
    (void)cfg;
    if (!rt.running) return 0;
    rt_state *s = sh_calloc(1, sizeof(*s));
    s->ring = sh_calloc(1, sizeof(*s->ring));
    s->ring->ring = sh_logring_new(rt.ring_size, RING_MAX_BYTES);
    pthread_mutex_lock(&rt.mu);
    s->ring->next = rt.rings;
    rt.rings = s->ring;
    pthread_mutex_unlock(&rt.mu);
    *state = s;
    return 0;
}

static void rtl_worker_free(void *state)
{
    rt_state *s = state;
    /* What is still queued is sent first, under the sender's lock. */
    pthread_mutex_lock(&rt.mu);
    sh_logring_drain(s->ring->ring, send_rec, NULL);
    for (rt_ring **pp = &rt.rings; *pp; pp = &(*pp)->next) {
        if (*pp == s->ring) {
            *pp = s->ring->next;
            break;
        }
    }
    pthread_mutex_unlock(&rt.mu);
    sh_logring_free(s->ring->ring);
    sh_free(s->ring);
    sh_free(s);
}

static sh_rc rtl_log(sh_req *req, void *state)
{
    rt_state *s = state;
    if (!s || !sh_realtime_sampled(&s->seen, rt.sampling)) return SH_CONTINUE;
    int64_t now = sh_accesslog_now_us();
    size_t n = sh_realtime_format(req, rt.fields, now, s->line, sizeof s->line);
    if (sh_logring_push(s->ring->ring, now, s->line, n) != 0)
        atomic_fetch_add_explicit(&rt_dropped, 1, memory_order_relaxed);
    return SH_CONTINUE;
}

const sh_module sh_module_realtime_log = {
    .name = "realtime_log",
    .init = rtl_init,
    .fini = rtl_fini,
    .worker_init = rtl_worker_init,
    .worker_free = rtl_worker_free,
    .phase = {[SH_PHASE_LOG] = rtl_log},
};
