/*
 * LOG phase: the CloudFront standard access log line of every request
 * (served, rejected, redirected, aborted), formatted on the worker and handed
 * to the logger thread through the worker's ring (shield/accesslog.h). The
 * worker formats because the request's strings die with it; the logger only
 * writes, so neither ever waits for the other.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "shield/accesslog.h"
#include "shield/alloc.h"
#include "shield/module.h"
#include "shield/worker.h"

/* Escaped fields are capped so a line always has its 33 fields; the request
 * head limits (URL 8 KB, headers 20 KB) keep real lines far below LINE_CAP.
 * GoAccess reads a log line into a 4096-byte buffer and counts the pieces of a
 * longer line as invalid requests, so a line that would be longer is written
 * again with the request-controlled fields (URI, query, cookie, user agent...)
 * cut to SHORT_CAP bytes each: every line stays parseable. */
#define LINE_CAP          (160 * 1024)
#define FIELD_CAP         (24 * 1024)
#define RESERVE           1024
#define LINE_MAX_GOACCESS 4000
#define SHORT_CAP         320

typedef struct alog_state {
    sh_alog_ring *ring;
    char line[LINE_CAP];
} alog_state;

typedef struct lbuf {
    char *p;
    size_t n, cap;
    size_t vcap; /* cap of one escaped field */
} lbuf;

static void put_raw(lbuf *b, const char *s)
{
    size_t l = strlen(s);
    if (b->n + l + 1 >= b->cap) l = b->cap > b->n + 1 ? b->cap - b->n - 1 : 0;
    memcpy(b->p + b->n, s, l);
    b->n += l;
    b->p[b->n] = '\0';
}

static void sep(lbuf *b)
{
    put_raw(b, "\t");
}

/* An escaped field; "-" when empty. */
static void put_esc(lbuf *b, const char *s, size_t len)
{
    size_t room = b->cap - b->n;
    room = room > RESERVE ? room - RESERVE : 2;
    if (room > b->vcap) room = b->vcap;
    b->n += sh_accesslog_escape(b->p + b->n, room, s, len);
}

static void put_str(lbuf *b, const char *s)
{
    put_esc(b, s, s ? strlen(s) : 0);
}

static void put_hdr(lbuf *b, const sh_req *r, const char *name)
{
    const sh_header *h = r->headers ? sh_req_header(r, name) : NULL;
    put_esc(b, h ? h->value : NULL, h ? h->value_len : 0);
}

static void put_num(lbuf *b, long long v)
{
    char t[32];
    snprintf(t, sizeof t, "%lld", v);
    put_raw(b, t);
}

static void put_secs(lbuf *b, int64_t us)
{
    char t[32];
    if (us < 0) {
        put_raw(b, "-");
        return;
    }
    /* milliseconds, rounded, printed as seconds: 0.003 */
    long long ms = (long long)((us + 500) / 1000);
    snprintf(t, sizeof t, "%lld.%03lld", ms / 1000, ms % 1000);
    put_raw(b, t);
}

static size_t format_line(const sh_req *r, int64_t now_us, char *out, size_t cap, size_t vcap)
{
    lbuf b = {out, 0, cap, vcap};
    const sh_config *cfg = r->cfg;
    out[0] = '\0';
    char t[64];
    time_t secs = (time_t)(now_us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(t, sizeof t, "%Y-%m-%d\t%H:%M:%S", &tm);
    put_raw(&b, t); /* date, time */
    sep(&b);
    put_str(&b, cfg ? cfg->pop : NULL); /* x-edge-location */
    sep(&b);
    int began = r->ttfb_us >= 0;
    put_num(&b, (long long)r->bytes_sent); /* sc-bytes */
    sep(&b);
    put_str(&b, r->client_ip[0] ? r->client_ip : NULL); /* c-ip */
    sep(&b);
    put_esc(&b, r->method, r->method ? r->method_len : 0); /* cs-method */
    sep(&b);
    if (cfg && cfg->log.domain && *cfg->log.domain) /* cs(Host) */
        put_str(&b, cfg->log.domain);
    else
        put_esc(&b, r->host, r->host ? r->host_len : 0);
    sep(&b);
    put_esc(&b, r->path, r->path ? r->path_len : 0); /* cs-uri-stem */
    sep(&b);
    if (began) /* sc-status; 000: the viewer left before a response began */
        put_num(&b, r->resp.status);
    else
        put_raw(&b, "000");
    sep(&b);
    put_hdr(&b, r, "Referer");
    sep(&b);
    put_hdr(&b, r, "User-Agent");
    sep(&b);
    put_esc(&b, r->query, r->query ? r->query_len : 0); /* cs-uri-query */
    sep(&b);
    put_hdr(&b, r, "Cookie");
    sep(&b);
    const char *resp_type = r->result_type                    ? r->result_type
                            : r->resp.status >= 400 || !began ? "Error"
                                                              : "Miss";
    /* A request cut short is an Error whatever it would have been; the
     * response result type keeps what it would have been (CloudFront's
     * "client disconnected before finishing the download"). */
    put_str(&b, r->aborted ? "Error" : resp_type); /* x-edge-result-type */
    sep(&b);
    put_str(&b, r->request_id[0] ? r->request_id : NULL); /* x-edge-request-id */
    sep(&b);
    put_esc(&b, r->host, r->host ? r->host_len : 0); /* x-host-header */
    sep(&b);
    put_raw(&b, r->tls ? "https" : "http"); /* cs-protocol */
    sep(&b);
    put_num(&b, (long long)r->bytes_received); /* cs-bytes */
    sep(&b);
    put_secs(&b, r->start_us ? sh_now_us() - r->start_us : 0); /* time-taken */
    sep(&b);
    put_hdr(&b, r, "X-Forwarded-For");
    sep(&b);
    put_str(&b, r->tls ? r->tls_protocol : NULL);
    sep(&b);
    put_str(&b, r->tls ? r->tls_cipher : NULL);
    sep(&b);
    put_str(&b, resp_type); /* x-edge-response-result-type */
    sep(&b);
    put_raw(&b, r->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1"); /* cs-protocol-version */
    sep(&b);
    put_raw(&b, "-\t-"); /* fle-status, fle-encrypted-fields */
    sep(&b);
    if (r->client_port > 0) /* c-port */
        put_num(&b, (long long)r->client_port);
    else
        put_raw(&b, "-");
    sep(&b);
    put_secs(&b, r->ttfb_us); /* time-to-first-byte */
    sep(&b);
    const char *detail = r->detailed_result;
    if (!detail && r->aborted) detail = began ? "ClientCommError" : "ClientHungUpRequest";
    put_str(&b, detail ? detail : (r->aborted ? "Error" : resp_type));
    sep(&b);
    const sh_header *ct = began ? sh_hdrlist_get(&r->resp.headers, "Content-Type") : NULL;
    put_esc(&b, ct ? ct->value : NULL, ct ? ct->value_len : 0); /* sc-content-type */
    sep(&b);
    if (began && r->resp.content_length >= 0) /* sc-content-len */
        put_num(&b, (long long)r->resp.content_length);
    else
        put_raw(&b, "-");
    sep(&b);
    if (r->range_start >= 0 && r->range_end >= 0) {
        put_num(&b, (long long)r->range_start);
        sep(&b);
        put_num(&b, (long long)r->range_end);
    } else {
        put_raw(&b, "-\t-");
    }
    return b.n;
}

size_t sh_accesslog_format(const sh_req *r, int64_t now_us, char *out, size_t cap)
{
    size_t n = format_line(r, now_us, out, cap, FIELD_CAP);
    if (n > LINE_MAX_GOACCESS) n = format_line(r, now_us, out, cap, SHORT_CAP);
    return n;
}

/* ---- the module ------------------------------------------------------------------------- */

static int alog_init(const sh_config *cfg, char *err, size_t errlen)
{
    return sh_accesslog_start(cfg, err, errlen);
}

static void alog_fini(void)
{
    sh_accesslog_stop();
}

static int alog_worker_init(struct sh_worker *w, const sh_config *cfg, void **state)
{
    (void)w;
    (void)cfg;
    if (!sh_accesslog_enabled()) return 0;
    alog_state *s = sh_malloc(sizeof(*s));
    s->ring = sh_accesslog_ring_new();
    *state = s;
    return 0;
}

static void alog_worker_free(void *state)
{
    alog_state *s = state;
    sh_accesslog_ring_free(s->ring);
    sh_free(s);
}

static sh_rc alog_log(sh_req *req, void *state)
{
    alog_state *s = state;
    if (!s || !s->ring) return SH_CONTINUE;
    int64_t now = sh_accesslog_now_us();
    size_t n = sh_accesslog_format(req, now, s->line, sizeof s->line);
    sh_accesslog_push(s->ring, now, s->line, n);
    return SH_CONTINUE;
}

const sh_module sh_module_access_log = {
    .name = "access_log",
    .init = alog_init,
    .fini = alog_fini,
    .worker_init = alog_worker_init,
    .worker_free = alog_worker_free,
    .phase = {[SH_PHASE_LOG] = alog_log},
};
