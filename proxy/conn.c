/*
 * Viewer connections: the HTTP/1.1 front end and the request state machine.
 *
 * One request at a time per connection. Pipelined requests wait, unparsed, in
 * the input buffer until the current response has been queued, so responses
 * are in order by construction and a request can never be parsed while its
 * predecessor's body is in doubt. Every request byte passes two independent
 * parsers: the strict framing scanner (shield/h1scan.h) first, then llhttp in
 * strict mode, which gets a head only once the scanner has seen all of it and
 * must end each head and chunked body exactly where the scanner did (a
 * disagreement is refused and counted). The checks llhttp leaves to its user
 * (Host, Transfer-Encoding codings, Expect, bodies on GET) are made in
 * on_headers_complete, before any module or the origin sees the request. Any
 * framing error answers once and closes. Nothing a request keeps points into
 * memory a later parser callback can move: the head buffer freezes when the
 * head is complete, and trailers never reach it.
 *
 * States (CONN_STATES) and their allowed successors are data: conn_set_state()
 * refuses an undeclared transition, and SHIELD_DEBUG traces every step.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <llhttp.h>
#include <openssl/err.h>

#include "shield/alloc.h"
#include "shield/forward.h"
#include "shield/log.h"
#include "shield/snapshot.h"
#include "shield/tls.h"
#include "shield/module.h"
#include "shield/worker.h"
#include "conn_int.h"

static const char *const state_names[] = {
#define X(s, n) n,
    CONN_STATES(X)
#undef X
};

#define B(s) (1u << CONN_##s)
/* Allowed successors of each state. */
static const unsigned transitions[CONN_NSTATES] = {
    [CONN_IDLE] = B(HEAD) | B(LINGER) | B(CLOSED),
    [CONN_HEAD] = B(PHASES) | B(LINGER) | B(CLOSED),
    [CONN_PHASES] = B(BODY) | B(ORIGIN) | B(IDLE) | B(LINGER) | B(CLOSED),
    [CONN_BODY] = B(ORIGIN) | B(PHASES) | B(LINGER) | B(CLOSED),
    [CONN_ORIGIN] = B(ORIGIN) | B(SEND) | B(PHASES) | B(IDLE) | B(LINGER) | B(CLOSED),
    [CONN_SEND] = B(IDLE) | B(LINGER) | B(CLOSED),
    [CONN_LINGER] = B(CLOSED),
    [CONN_CLOSED] = 0,
};
#undef B

static void conn_free(sh_conn *c);
static void conn_parse(sh_conn *c);
static void conn_scan_reset(sh_conn *c);
static void conn_run_phases(sh_conn *c);

void conn_set_state(sh_conn *c, conn_state s)
{
    if (!(transitions[c->state] & (1u << s))) {
        sh_log(SH_LOG_ERROR, "BUG: connection %s -> %s not allowed", state_names[c->state],
               state_names[s]);
        abort();
    }
    sh_log(SH_LOG_DEBUG, "conn %p %s -> %s", (void *)c, state_names[c->state], state_names[s]);
    c->state = s;
}

static void timer_arm(sh_conn *c, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(c->timer, &tv);
}

static int conn_fd(const sh_conn *c)
{
    return bufferevent_getfd(c->wire ? c->wire : c->bev);
}

/* Bytes accepted for the viewer that the kernel does not have yet. */
static size_t conn_out_pending(const sh_conn *c)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
    if (c->wire) n += evbuffer_get_length(bufferevent_get_output(c->wire));
    return n;
}

/* ---- llhttp callbacks: copy the head into hbuf, enforce the limits ------- */

static int bad(sh_conn *c, int status, const char *detail);

static int hbuf_append(sh_conn *c, const char *at, size_t len)
{
    const sh_limits_conf *lim = &c->w->cfg->limits;
    /* The request points into hbuf from the end of its head on: growing it
     * then would move memory under the request's path and headers. */
    if (c->head_done) return bad(c, 400, "head buffer written after the head");
    size_t cap_max = lim->max_header_size + lim->max_url + 1024;
    if (c->hlen + len > cap_max) {
        c->err_status = 431;
        return -1;
    }
    if (c->hlen + len > c->hcap) {
        size_t n = c->hcap ? c->hcap : 1024;
        while (n < c->hlen + len)
            n *= 2;
        if (n > cap_max) n = cap_max;
        c->hbuf = sh_realloc(c->hbuf, n);
        c->hcap = n;
    }
    memcpy(c->hbuf + c->hlen, at, len);
    c->hlen += len;
    return 0;
}

static sh_conn *conn_of(llhttp_t *p)
{
    return p->data;
}

/* ---- request-head buffers, lent by the worker --------------------------- */

#define MAX_SPARES 64

struct conn_spare {
    char *hbuf;
    size_t hcap;
    struct hspan *spans;
    size_t spans_cap;
    sh_header *hdrs;
    size_t hdrs_cap;
};

static void bufs_take(sh_conn *c)
{
    sh_worker *w = c->w;
    if (c->hbuf || c->spans || !w->nspares) return;
    struct conn_spare *s = &w->spares[--w->nspares];
    c->hbuf = s->hbuf;
    c->hcap = s->hcap;
    c->spans = s->spans;
    c->spans_cap = s->spans_cap;
    c->hdrs = s->hdrs;
    c->hdrs_cap = s->hdrs_cap;
}

/* The connection goes idle: its buffers serve the worker's next request. */
static void bufs_give(sh_conn *c)
{
    sh_worker *w = c->w;
    if (!c->hbuf && !c->spans && !c->hdrs) return;
    if (!w->spares) w->spares = sh_malloc(MAX_SPARES * sizeof(*w->spares));
    if (w->nspares < MAX_SPARES) {
        w->spares[w->nspares++] =
            (struct conn_spare){c->hbuf, c->hcap, c->spans, c->spans_cap, c->hdrs, c->hdrs_cap};
    } else {
        sh_free(c->hbuf);
        sh_free(c->spans);
        sh_free(c->hdrs);
    }
    c->hbuf = NULL;
    c->spans = NULL;
    c->hdrs = NULL;
    c->hcap = c->spans_cap = c->hdrs_cap = 0;
    c->hlen = c->nspans = 0;
}

void sh_conn_spares_free(sh_worker *w)
{
    for (size_t i = 0; i < w->nspares; i++) {
        sh_free(w->spares[i].hbuf);
        sh_free(w->spares[i].spans);
        sh_free(w->spares[i].hdrs);
    }
    sh_free(w->spares);
    w->spares = NULL;
    w->nspares = 0;
}

static int on_message_begin(llhttp_t *p)
{
    sh_conn *c = conn_of(p);
    bufs_take(c);
    c->hlen = 0;
    c->url_off = c->url_len = 0;
    c->nspans = 0;
    c->last_cb = 0;
    c->msg_done = c->has_body = c->expect_continue = 0;
    c->head_done = c->chunked_in = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    sh_conn *c = conn_of(p);
    if ((size_t)c->url_len + len > c->w->cfg->limits.max_url) {
        c->err_status = 414;
        return -1;
    }
    if (c->url_len == 0) c->url_off = (uint32_t)c->hlen;
    c->url_len += (uint32_t)len;
    return hbuf_append(c, at, len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    sh_conn *c = conn_of(p);
    const sh_limits_conf *lim = &c->w->cfg->limits;
    /* Trailer fields: the scanner has checked them, and nothing forwards them. */
    if (c->head_done) return 0;
    if (c->last_cb != 1) {
        if (c->nspans >= lim->max_headers) {
            c->err_status = 431;
            return -1;
        }
        if (c->spans_cap < lim->max_headers + 1) {
            /* A spare from before a reload may be smaller than the limit now. */
            c->spans_cap = lim->max_headers + 1;
            c->spans = sh_realloc(c->spans, c->spans_cap * sizeof(*c->spans));
        }
        c->spans[c->nspans++] = (struct hspan){(uint32_t)c->hlen, 0, 0, 0};
        c->last_cb = 1;
    }
    /* Names are tokens and the head is within its limits: the scanner saw
     * every byte before llhttp (the field count above sizes spans). */
    c->spans[c->nspans - 1].nlen += (uint32_t)len;
    return hbuf_append(c, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    sh_conn *c = conn_of(p);
    if (c->head_done) return 0;
    if (c->nspans == 0 || c->last_cb == 0) return bad(c, 400, "header value without a name");
    struct hspan *s = &c->spans[c->nspans - 1];
    if (c->last_cb != 2) {
        s->voff = (uint32_t)c->hlen;
        c->last_cb = 2;
    }
    /* A second call for one value is the head spanning two buffers: the
     * scanner has refused every obs-fold and control byte before llhttp
     * could join or pass one. */
    s->vlen += (uint32_t)len;
    return hbuf_append(c, at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    sh_conn *c = conn_of(p);
    if (c->head_done) return 0;
    if (c->last_cb != 1 || c->spans[c->nspans - 1].nlen == 0)
        return bad(c, 400, "empty header name");
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    sh_conn *c = conn_of(p);
    if (c->head_done) return 0;
    struct hspan *s = &c->spans[c->nspans - 1];
    if (c->last_cb != 2) { /* empty value */
        s->voff = (uint32_t)c->hlen;
        s->vlen = 0;
    }
    /* Trailing whitespace is not part of the value (RFC 9110 §5.5). */
    while (s->vlen &&
           (c->hbuf[s->voff + s->vlen - 1] == ' ' || c->hbuf[s->voff + s->vlen - 1] == '\t'))
        s->vlen--;
    c->last_cb = 0;
    return 0;
}

static int bad(sh_conn *c, int status, const char *detail)
{
    c->err_status = status;
    c->err_detail = detail;
    return -1;
}

/* Split the target into path and query and find the host; 0 or an error status. */
static int parse_target(sh_conn *c, sh_req *r)
{
    const char *t = r->target;
    size_t len = r->target_len;
    const sh_header *host = NULL;
    int nhost = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (sh_hdr_is(r->headers[i].name, r->headers[i].name_len, "Host")) {
            host = &r->headers[i];
            nhost++;
        }
    }
    if (nhost > 1) return bad(c, 400, "duplicate Host"), 400;
    if (len >= 7 && (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0)) {
        /* absolute-form: its authority is the host (RFC 9112 §3.2.2); Host
         * is then ignored, so key, auth and origin all use one host. */
        size_t skip = t[4] == ':' ? 7 : 8;
        const char *a = t + skip;
        const char *end = t + len;
        const char *slash = memchr(a, '/', (size_t)(end - a));
        if (!slash) return bad(c, 400, "absolute target without path"), 400;
        if (!sh_host_valid(a, (size_t)(slash - a))) return bad(c, 400, "invalid authority"), 400;
        r->host = a;
        r->host_len = (size_t)(slash - a);
        t = slash;
        len = (size_t)(end - slash);
    } else {
        if (len == 0 || t[0] != '/') return bad(c, 400, "request target is not origin-form"), 400;
        if (host) {
            if (!sh_host_valid(host->value, host->value_len))
                return bad(c, 400, "invalid Host"), 400;
            r->host = host->value;
            r->host_len = host->value_len;
        }
    }
    /* RFC 9112 §3.2: an HTTP/1.1 request without Host is refused even in
     * absolute-form, where the authority would have named the host. */
    if (!host && r->http_minor >= 1) return bad(c, 400, "missing Host"), 400;
    /* Clients never send a fragment; one that arrives would be cut by the
     * origin client but kept in the cache key. */
    if (memchr(t, '#', len)) return bad(c, 400, "fragment in request target"), 400;
    const char *q = memchr(t, '?', len);
    r->path = t;
    r->path_len = q ? (size_t)(q - t) : len;
    r->query = q ? q + 1 : NULL;
    r->query_len = q ? len - r->path_len - 1 : 0;
    /* The path goes to the origin byte for byte: refuse what an origin could
     * read differently from us (malformed escapes). */
    for (size_t i = 0; i < r->path_len; i++) {
        unsigned char ch = (unsigned char)r->path[i];
        if (ch == '%' && (i + 2 >= r->path_len || !isxdigit((unsigned char)r->path[i + 1]) ||
                          !isxdigit((unsigned char)r->path[i + 2])))
            return bad(c, 400, "malformed percent-escape"), 400;
    }
    return 0;
}

/* ---- request outcome bookkeeping (access log, metrics) ------------------ */

/* Every request, served or rejected, starts here (through conn_fill_peer):
 * "not yet" is -1 so the log can tell "none" from "zero". */
static void conn_outcome_start(sh_req *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->start_wall_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    r->ttfb_us = -1;
    r->range_start = r->range_end = -1;
    r->origin_ttfb_us = -1;
}

/* Every byte queued to the viewer belongs to the current request (responses
 * are queued one request at a time), so the output buffer's additions are its
 * sc-bytes. */
static void conn_count_out(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    sh_conn *c = arg;
    c->req.bytes_sent += info->n_added;
    if (info->n_added && c->write_parked) {
        /* Bytes to send again: back to libevent's writing (conn_flush_now). */
        c->write_parked = 0;
        bufferevent_enable(c->bev, EV_WRITE);
    }
}

/* Write what bev holds now, outside its own write event. */
static int bev_write_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    /* The bufferevent keeps the start of its output frozen so that only it
     * drains it; it thaws it around its own writes the same way. */
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, bufferevent_getfd(bev));
    evbuffer_freeze(out, 1);
    return n;
}

/*
 * A finished response on a plain connection is written at once, not on the
 * next loop turn: a small hit then costs read + write + one epoll_wait, not
 * also an epoll_ctl to watch for writability, an epoll_wait for it and an
 * epoll_ctl to stop watching. With everything written, writing stays parked
 * (EV_WRITE off, which cancels the pending watch inside the changelist) until
 * conn_count_out sees the next bytes queued. TLS records go through the
 * bufferevent as before.
 */
static void conn_flush_now(sh_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->ssl || !evbuffer_get_length(out)) return;
    int n = bev_write_now(c->bev);
    /* An error or a full socket: libevent's write event takes over as usual. */
    if (n < 0 || evbuffer_get_length(out)) return;
    bufferevent_disable(c->bev, EV_WRITE);
    c->write_parked = 1;
}

/* The connection goes away with a request that never reached conn_finish
 * (viewer gone, reset, timeout, origin cut): it still gets its one LOG phase,
 * marked aborted, with sc-bytes = what actually left the output buffer. */
static void conn_log_unfinished(sh_conn *c)
{
    sh_req *r = &c->req;
    if (!r->conn || c->state == CONN_IDLE || c->state == CONN_LINGER || c->state == CONN_CLOSED)
        return;
    size_t pending = conn_out_pending(c);
    r->bytes_sent = r->bytes_sent > pending ? r->bytes_sent - pending : 0;
    r->aborted = 1;
    size_t ph = SH_PHASE_LOG, mod = 0;
    while (sh_pipeline_run(r, c->w->mod_states, &ph, &mod, SH_PHASE_LOG + 1) != SH_CONTINUE)
        mod++;
    r->conn = NULL; /* logged: never twice */
}

/* A request refused before llhttp made sense of it is still logged with what
 * can be read of it: a known method and the target, pointing into the
 * unconsumed input, which stays put until the log line is written
 * (conn_reject -> conn_finish runs synchronously). */
static void conn_salvage_line(sh_conn *c, sh_req *r)
{
    static const char *const known[] = {"GET",     "HEAD",  "POST",    "PUT",  "DELETE",
                                        "OPTIONS", "PATCH", "CONNECT", "TRACE"};
    if (c->head_fed) {
        /* llhttp consumed the line and failed in the headers: it knows the
         * method, and hbuf holds the target (if llhttp got that far). */
        if (!c->hbuf || !c->url_len || c->url_off + (size_t)c->url_len > c->hlen) return;
        r->method = llhttp_method_name((llhttp_method_t)c->parser.method);
        r->method_len = strlen(r->method);
        r->method_bit = sh_method_bit(r->method, r->method_len);
        const char *t = c->hbuf + c->url_off;
        const char *q = memchr(t, '?', c->url_len);
        r->target = r->path = t;
        r->target_len = c->url_len;
        r->path_len = q ? (size_t)(q - t) : r->target_len;
        if (q) {
            r->query = q + 1;
            r->query_len = (size_t)(t + c->url_len - q - 1);
        }
        return;
    }
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < c->w->cfg->limits.max_url + 32 ? avail : c->w->cfg->limits.max_url + 32;
    const char *l = n ? (const char *)evbuffer_pullup(in, (ev_ssize_t)n) : NULL;
    if (!l) return;
    /* Empty lines before the request line (a HEAD's error answer must know
     * it is one, or it would carry a body). */
    while (n && (*l == '\r' || *l == '\n'))
        l++, n--;
    if (!n) return;
    const char *sp = memchr(l, ' ', n);
    if (!sp) return;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strlen(known[i]) == (size_t)(sp - l) && memcmp(l, known[i], (size_t)(sp - l)) == 0) {
            r->method = known[i];
            r->method_len = (size_t)(sp - l);
            r->method_bit = sh_method_bit(r->method, r->method_len);
        }
    }
    if (!r->method) return;
    const char *t = sp + 1, *end = l + n;
    const char *te = t;
    while (te < end && *te != ' ' && *te != '\r' && *te != '\n')
        te++;
    if (te == t || *t != '/') return;
    const char *q = memchr(t, '?', (size_t)(te - t));
    r->target = r->path = t;
    r->target_len = (size_t)(te - t);
    r->path_len = q ? (size_t)(q - t) : r->target_len;
    if (q) {
        r->query = q + 1;
        r->query_len = (size_t)(te - q - 1);
    }
}

/* The connection-level facts every request starts with; identity may
 * replace the client with a trusted proxy's forwarded address. */
static void conn_fill_peer(sh_conn *c, sh_req *r)
{
    conn_outcome_start(r);
    /* The request runs to its log line on the configuration it started with,
     * whatever a reload swaps in meanwhile. */
    r->snap = c->w->snap;
    sh_snapshot_ref(r->snap);
    r->cfg = r->snap->cfg;
    memcpy(&r->peer, &c->peer, sizeof(c->peer));
    size_t iplen = strlen(c->peer_ip) + 1; /* < sizeof(c->peer_ip) <= both targets */
    memcpy(r->peer_ip, c->peer_ip, iplen);
    memcpy(r->client_ip, c->peer_ip, iplen);
    if (sh_ip_from_sockaddr(&c->peer.sa, r->client_addr) != 0)
        memset(r->client_addr, 0, sizeof r->client_addr);
    if (c->peer.sa.sa_family == AF_INET)
        r->client_port = ntohs(c->peer.v4.sin_port);
    else if (c->peer.sa.sa_family == AF_INET6)
        r->client_port = ntohs(c->peer.v6.sin6_port);
    r->local_port = c->local_port;
    r->tls = c->ssl != NULL;
    if (c->ssl) {
        r->tls_protocol = SSL_get_version(c->ssl);
        r->tls_cipher = SSL_get_cipher_name(c->ssl);
    }
}

static int on_headers_complete(llhttp_t *p)
{
    sh_conn *c = conn_of(p);
    sh_req *r = &c->req;
    const sh_config *cfg = c->w->cfg;

    uint64_t head_bytes = r->bytes_received; /* counted by conn_parse so far */
    memset(r, 0, sizeof(*r));
    r->bytes_received = head_bytes;
    r->conn = c;
    r->worker = c->w;
    r->cfg = cfg;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->start_us = sh_now_us();
    conn_fill_peer(c, r);
    /* llhttp looks only for keep-alive in HTTP/1.0; close wins over it
     * (RFC 9112 §9.6), or the bytes after this request would be read as one. */
    c->keepalive = llhttp_should_keep_alive(p) && !(p->flags & F_CONNECTION_CLOSE);
    /* Shield never switches protocols: an Upgrade request is served as a
     * plain one (Upgrade and Connection are hop-by-hop, never forwarded),
     * and llhttp must not hand the bytes after it over as a tunnel. CONNECT,
     * the other way in, is refused by the scanner. */
    p->upgrade = 0;

    /* The head is complete, so hbuf no longer moves: build pointers. From
     * here on nothing may grow it (hbuf_append refuses). */
    c->head_done = 1;
    if (c->hdrs_cap < c->nspans || !c->hdrs) {
        c->hdrs_cap = c->nspans > 16 ? c->nspans : 16;
        c->hdrs = sh_realloc(c->hdrs, c->hdrs_cap * sizeof(sh_header));
    }
    for (size_t i = 0; i < c->nspans; i++) {
        c->hdrs[i] = (sh_header){c->hbuf + c->spans[i].noff, c->spans[i].nlen,
                                 c->hbuf + c->spans[i].voff, c->spans[i].vlen};
    }
    r->headers = c->hdrs;
    r->nheaders = c->nspans;
    r->method = llhttp_method_name((llhttp_method_t)p->method);
    r->method_len = strlen(r->method);
    r->method_bit = sh_method_bit(r->method, r->method_len);
    r->target = c->hbuf + c->url_off;
    r->target_len = c->url_len;

    if (p->http_major != 1 || p->http_minor > 1) return bad(c, 505, "unsupported HTTP version");
    if (parse_target(c, r)) return -1;

    const sh_header *te = sh_req_header(r, "Transfer-Encoding");
    if (te) {
        /* Only a bare "chunked" is a framing we can be sure about; llhttp
         * accepts lists ending in chunked ("gzip, chunked", "chunked, chunked"). */
        if (p->http_minor == 0) return bad(c, 400, "Transfer-Encoding in HTTP/1.0");
        if (!(p->flags & F_CHUNKED) || te->value_len != 7 || strncasecmp(te->value, "chunked", 7))
            return bad(c, 501, "unsupported Transfer-Encoding");
        for (size_t i = 0, n = 0; i < r->nheaders; i++)
            if (sh_hdr_is(r->headers[i].name, r->headers[i].name_len, "Transfer-Encoding") &&
                ++n > 1)
                return bad(c, 400, "duplicate Transfer-Encoding");
    }
    c->has_body =
        (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    c->chunked_in = (p->flags & F_CHUNKED) != 0;
    if (c->chunked_in) h1_scan_chunked_init(&c->scan);
    if (c->has_body) {
        if (r->method_bit & (SH_M_GET | SH_M_HEAD)) {
            /* CloudFront answers a GET with a body with 403; it is also the
             * classic smuggling shape, so the connection is closed. */
            return bad(c, 403, "GET or HEAD with a body");
        }
        if ((p->flags & F_CONTENT_LENGTH) && p->content_length > cfg->limits.max_body_size)
            return bad(c, 413, "request body too large");
    }
    const sh_header *ex = sh_req_header(r, "Expect");
    if (ex && p->http_minor >= 1) {
        if (ex->value_len != 12 || strncasecmp(ex->value, "100-continue", 12))
            return bad(c, 417, "unsupported Expect");
        c->expect_continue = c->has_body;
    }
    if (c->has_body) {
        return HPE_PAUSED;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    sh_conn *c = conn_of(p);
    if (!c->body) c->body = evbuffer_new();
    if (evbuffer_get_length(c->body) + len > c->w->cfg->limits.max_body_size)
        return bad(c, 413, "request body too large");
    evbuffer_add(c->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    sh_conn *c = conn_of(p);
    c->msg_done = 1;
    return HPE_PAUSED;
}

static llhttp_settings_t parser_settings;

static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

/* Every worker accepts concurrently: initialise the shared table once. */
static void settings_init(void)
{
    llhttp_settings_init(&parser_settings);
    parser_settings.on_message_begin = on_message_begin;
    parser_settings.on_url = on_url;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_header_field_complete = on_header_field_complete;
    parser_settings.on_header_value_complete = on_header_value_complete;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;
}

static void new_request_id(sh_conn *c)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint64_t *s = c->w->rng;
    char *out = c->req.request_id;
    for (int k = 0; k < 4; k++) {
        /* xorshift128+: ids need to be unique and unguessable-enough for
         * correlation, not cryptographic. */
        uint64_t x = s[0], y = s[1];
        s[0] = y;
        x ^= x << 23;
        s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
        uint64_t v = s[1] + y;
        for (int i = 0; i < 8; i++, v >>= 6)
            *out++ = b64[v & 63];
    }
    *out = '\0';
}

/* Answer a request that failed to parse or validate, then close. */
static void conn_reject(sh_conn *c, int status, const char *detail)
{
    sh_req *r = &c->req;
    if (!r->conn) {
        uint64_t head_bytes = r->bytes_received;
        memset(r, 0, sizeof(*r));
        r->bytes_received = head_bytes;
        r->conn = c;
        r->worker = c->w;
        r->cfg = c->w->cfg;
        r->http_minor = 1;
        r->start_us = sh_now_us();
        conn_fill_peer(c, r);
        if (c->state == CONN_HEAD) conn_salvage_line(c, r);
    }
    if (!r->request_id[0]) new_request_id(c);
    c->w->stats.requests++;
    sh_log(SH_LOG_INFO, "%s: %d %s: %s (request %s)", c->peer_ip, status, sh_http_reason(status),
           detail ? detail : llhttp_get_error_reason(&c->parser), r->request_id);
    c->close_after = 1;
    c->keepalive = 0;
    if (c->state != CONN_PHASES) conn_set_state(c, CONN_PHASES);
    sh_req_respond(r, status, NULL, NULL, NULL, NULL);
    conn_send_generated(c);
}

/* ---- the request steps -------------------------------------------------- */

/* The head passed llhttp and our checks: run the access phases. */
static void conn_head_ready(sh_conn *c)
{
    conn_set_state(c, CONN_PHASES);
    c->w->stats.requests++;
    new_request_id(c);
    c->phase = SH_PHASE_SANITY;
    c->module = 0;
    conn_run_phases(c);
}

static void conn_after_phases(sh_conn *c)
{
    if (c->has_body && !c->msg_done) {
        conn_set_state(c, CONN_BODY);
        if (c->expect_continue) bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        timer_arm(c, c->w->cfg->timeouts.body_ms);
        llhttp_resume(&c->parser);
        conn_parse(c);
        return;
    }
    conn_serve(c);
}

static void conn_run_phases(sh_conn *c)
{
    sh_rc rc =
        sh_pipeline_run(&c->req, c->w->mod_states, &c->phase, &c->module, SH_PHASE_PRECONTENT + 1);
    switch (rc) {
    case SH_CONTINUE:
        conn_after_phases(c);
        return;
    case SH_SUSPEND:
        return; /* sh_req_resume() continues */
    case SH_RESPOND:
        break;
    case SH_ERROR:
        sh_req_respond(&c->req, 500, NULL, NULL, NULL, NULL);
        break;
    }
    /* An early answer to a request whose body we have not read: the body
     * must never be parsed as the next request, so close. */
    if (c->has_body && !c->msg_done) c->close_after = 1;
    sh_log(SH_LOG_INFO, "%s: %d %s %.*s (request %s)", c->peer_ip, c->req.resp.status,
           c->req.method, (int)c->req.path_len, c->req.path, c->req.request_id);
    conn_send_generated(c);
}

void sh_req_resume(sh_req *req, sh_rc rc)
{
    sh_conn *c = req->conn;
    if (rc == SH_CONTINUE) {
        c->module++;
        conn_run_phases(c);
        return;
    }
    if (rc == SH_ERROR) sh_req_respond(req, 500, NULL, NULL, NULL, NULL);
    if (c->has_body && !c->msg_done) c->close_after = 1;
    conn_send_generated(c);
}

static void conn_send_fin(sh_conn *c)
{
    c->fin = 2;
    shutdown(conn_fd(c), SHUT_WR);
    timer_arm(c, LINGER_MS);
}

/* The FIN must follow the records still on the wire, close_notify last. */
static void conn_wire_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    sh_conn *c = arg;
    if (c->fin != 1 || !info->n_deleted || evbuffer_get_length(buf)) return;
    evbuffer_remove_cb(buf, conn_wire_out_cb, c);
    conn_send_fin(c);
}

/* Everything queued has been written: tell the viewer no more is coming
 * (close_notify first over TLS, so a truncation is distinguishable). The
 * linger timer starts with the FIN; until then the wire's send timeout
 * bounds a viewer that stopped reading. */
static void conn_half_close(sh_conn *c)
{
    if (c->fin) return;
    if (c->ssl) SSL_shutdown(c->ssl);
    if (c->wire && evbuffer_get_length(bufferevent_get_output(c->wire))) {
        c->fin = 1;
        evbuffer_add_cb(bufferevent_get_output(c->wire), conn_wire_out_cb, c);
        return;
    }
    conn_send_fin(c);
}

const sh_header *sh_req_header(const sh_req *req, const char *name)
{
    return sh_hdr_find(req->headers, req->nheaders, name);
}

size_t sh_req_header_count(const sh_req *req, const char *name)
{
    size_t n = 0, len = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++)
        if (req->headers[i].name_len == len && strncasecmp(req->headers[i].name, name, len) == 0)
            n++;
    return n;
}

void sh_req_count(sh_req *req, sh_counter cnt)
{
    if ((unsigned)cnt < SH_CNT_COUNT) req->worker->stats.edge[cnt]++;
}

/* The response is fully queued: log, then keep the connection or close it. */
void conn_finish(sh_conn *c)
{
    sh_req *r = &c->req;
    conn_serve_release(c);
    size_t ph = SH_PHASE_LOG, mod = 0;
    while (sh_pipeline_run(r, c->w->mod_states, &ph, &mod, SH_PHASE_LOG + 1) != SH_CONTINUE)
        mod++;
    sh_hdrlist_clear(&r->resp.headers);
    sh_free(r->origin_path);
    sh_free(c->gen_body);
    c->gen_body = NULL;
    c->gen_body_len = 0;
    if (c->body) evbuffer_drain(c->body, evbuffer_get_length(c->body));
    sh_snapshot_unref(r->snap);
    memset(r, 0, sizeof(*r));
    if (c->ranges != &c->range1) sh_free(c->ranges);
    c->ranges = &c->range1;
    c->head_sent = 0;
    conn_scan_reset(c);
    c->nrequests++;

    if (c->close_after) {
        conn_set_state(c, CONN_LINGER);
        evtimer_del(c->timer);
        /* Wait for the output to drain (write callback), then half-close. */
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) conn_half_close(c);
        return;
    }
    conn_set_state(c, CONN_IDLE);
    llhttp_resume(&c->parser);
    bufferevent_enable(c->bev, EV_READ);
    timer_arm(c, c->w->cfg->timeouts.keepalive_ms);
    conn_flush_now(c);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)))
        conn_parse(c);
    else
        bufs_give(c);
}

static h1_limits conn_limits(const sh_conn *c)
{
    const sh_limits_conf *l = &c->w->cfg->limits;
    return (h1_limits){l->max_url, l->max_header_size, l->max_headers};
}

/* A new request starts: the scanner reads its head from the next byte. */
static void conn_scan_reset(sh_conn *c)
{
    h1_scan_init(&c->scan);
    c->scanned = 0;
    c->head_scanned = 0;
    c->head_fed = 0;
}

/*
 * Run the scanner over the input bytes it has not seen. 0: the whole head is
 * buffered and valid (c->scan.head_len bytes); -1: more bytes are needed; or
 * a status to reject with (c->err_detail says why). Each byte is scanned once,
 * however the head arrives.
 */
static int conn_scan_head(sh_conn *c, struct evbuffer *in)
{
    h1_limits lim = conn_limits(c);
    while (c->scanned < evbuffer_get_length(in)) {
        struct evbuffer_ptr at;
        struct evbuffer_iovec v[8];
        if (evbuffer_ptr_set(in, &at, c->scanned, EVBUFFER_PTR_SET) < 0) return -1;
        int n = evbuffer_peek(in, -1, &at, v, 8);
        for (int i = 0; i < n && i < 8; i++) {
            size_t used = 0;
            int st =
                h1_scan_head(&c->scan, &lim, v[i].iov_base, v[i].iov_len, &used, &c->err_detail);
            c->scanned += used;
            if (st == H1_DONE) {
                c->head_scanned = 1;
                return 0;
            }
            if (st != H1_MORE) return st;
        }
    }
    return -1;
}

/* The scanner and llhttp read one message differently: that is a bug in one
 * of them, never the viewer's right to be served. */
static void conn_disagree(sh_conn *c, const char *where)
{
    c->w->stats.framing_disagreements++;
    sh_log(SH_LOG_ERROR, "%s: BUG: request framing disagreement (%s): refused", c->peer_ip, where);
    conn_reject(c, 400, "framing disagreement");
}

/*
 * Feed buffered input to llhttp while the connection is reading a request.
 * llhttp gets a head only once the scanner has seen all of it, and a chunked
 * body only up to the end the scanner found; it must stop exactly there.
 */
static void conn_parse(sh_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->in_parse) return;
    c->in_parse = 1;
    while (c->state == CONN_IDLE || c->state == CONN_HEAD || c->state == CONN_BODY) {
        if (evbuffer_get_length(in) == 0) break;
        if (c->state == CONN_IDLE &&
            evbuffer_get_length(bufferevent_get_output(c->bev)) >= OUT_HIGH) {
            /* A viewer that pipelines without reading would have every
             * answer queued here: the next request waits until the output
             * drains (conn_write_cb), and so does reading. */
            c->read_paused = 1;
            bufferevent_disable(c->bev, EV_READ);
            break;
        }
        if (c->state == CONN_IDLE) {
            conn_set_state(c, CONN_HEAD);
            timer_arm(c, c->w->cfg->timeouts.header_ms);
        }
        if (c->state == CONN_HEAD && !c->head_scanned) {
            int st = conn_scan_head(c, in);
            if (st < 0) break; /* need more bytes */
            if (st > 0) {
                conn_reject(c, st, c->err_detail);
                break;
            }
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        const char *data = v.iov_base; /* what llhttp reads: the input, */
        size_t len = v.iov_len, raw;   /* len of it, standing for raw input bytes */
        char plain[8192];              /* or a chunked body without its extensions */
        int ends = 0; /* the scanner says the head or the chunked body ends with this piece */
        if (c->state == CONN_HEAD) {
            uint64_t left = c->scan.head_len - c->head_fed;
            if (len >= left) {
                len = (size_t)left;
                ends = 1;
            }
            raw = len;
        } else if (c->chunked_in) {
            h1_limits lim = conn_limits(c);
            const char *why = NULL;
            raw = len < sizeof plain ? len : sizeof plain;
            int st = h1_scan_chunked(&c->scan, &lim, data, raw, &raw, &why, plain, &len);
            if (st > 0) {
                conn_reject(c, st, why);
                break;
            }
            ends = st == H1_DONE;
            data = plain;
        } else {
            raw = len;
        }
        c->err_status = 0;
        c->err_detail = NULL;
        llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
        size_t used = len;
        if (e != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
        }
        /* Only llhttp's stop at the very end of a scanned piece is an agreement;
         * anything else is refused below, so the raw piece goes either way. */
        if (data == plain) used = used == len ? raw : 0;
        evbuffer_drain(in, used);
        c->req.bytes_received += used;
        if (c->state == CONN_HEAD) c->head_fed += used;
        if (e == HPE_OK) {
            if (ends) {
                conn_disagree(c, c->state == CONN_HEAD ? "head" : "chunked body");
                break;
            }
            if (c->state == CONN_BODY) timer_arm(c, c->w->cfg->timeouts.body_ms);
            continue;
        }
        if (e == HPE_PAUSED) {
            int exact = ends && used == raw;
            if (c->state == CONN_BODY) {
                if (c->chunked_in && !exact) {
                    conn_disagree(c, "end of a chunked body");
                    break;
                }
                /* body complete: modules and the origin request see it in req */
                evtimer_del(c->timer);
                c->req.body_len = c->body ? evbuffer_get_length(c->body) : 0;
                c->req.body = c->req.body_len ? (const char *)evbuffer_pullup(c->body, -1) : NULL;
                conn_serve(c);
            } else {
                if (!exact) {
                    conn_disagree(c, "end of the head");
                    break;
                }
                evtimer_del(c->timer);
                conn_head_ready(c);
            }
            continue; /* the state decides whether to parse on */
        }
        if (e == HPE_PAUSED_UPGRADE) { /* on_headers_complete cleared the upgrade */
            conn_disagree(c, "protocol upgrade");
            break;
        }
        int status = c->err_status ? c->err_status : 400;
        /* A well-formed method token llhttp does not know (the scanner
         * checked the token) is one nobody here implements. */
        if (e == HPE_INVALID_METHOD) status = 501;
        conn_reject(c, status, c->err_detail);
        break;
    }
    c->in_parse = 0;
}

/* ---- bufferevent callbacks ---------------------------------------------- */

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    sh_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->state == CONN_LINGER) {
        size_t n = evbuffer_get_length(in);
        c->linger_bytes += n;
        evbuffer_drain(in, n);
        if (c->linger_bytes > LINGER_MAX_BYTES) conn_free(c);
        return;
    }
    conn_parse(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    sh_conn *c = arg;
    size_t left = evbuffer_get_length(bufferevent_get_output(bev));
    if (c->state == CONN_LINGER) {
        if (left == 0) conn_half_close(c);
        return;
    }
    if (c->obj) {
        conn_serve_writable(c);
        return;
    }
    if (c->read_paused && left < OUT_LOW) {
        c->read_paused = 0;
        bufferevent_enable(c->bev, EV_READ);
        conn_parse(c);
        return;
    }
    if (c->origin_paused && left < OUT_LOW && c->fetch) {
        c->origin_paused = 0;
        origin_fetch_resume(c->fetch);
    }
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    sh_conn *c = arg;
    if (what == BEV_EVENT_CONNECTED) {
        c->w->stats.tls_handshakes++;
        return; /* TLS handshake done; requests follow */
    }
    if (c->ssl && (what & BEV_EVENT_ERROR) && !SSL_is_init_finished(c->ssl)) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        char buf[160] = "connection closed";
        if (e) ERR_error_string_n(e, buf, sizeof buf);
        c->w->stats.tls_handshake_failures++;
        sh_log(SH_LOG_DEBUG, "%s: TLS handshake failed: %s", c->peer_ip, buf);
    }
    if (what & BEV_EVENT_TIMEOUT) {
        /* bufferevent only times out writes: the viewer stopped reading. */
        sh_log(SH_LOG_INFO, "%s: send timeout, closing", c->peer_ip);
        conn_abort(c, "send timeout");
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        /* A half-close after a complete request still deserves the answer;
         * anything else means the viewer is gone. */
        if (c->state == CONN_PHASES || c->state == CONN_ORIGIN || c->state == CONN_SEND) {
            c->peer_eof = 1;
            return;
        }
        if (c->state == CONN_LINGER && conn_out_pending(c)) return;
    }
    conn_free(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    sh_conn *c = arg;
    switch (c->state) {
    case CONN_IDLE:
        sh_log(SH_LOG_DEBUG, "%s: keep-alive timeout", c->peer_ip);
        conn_free(c);
        break;
    case CONN_HEAD:
        sh_log(SH_LOG_INFO, "%s: request head not received within the header timeout, closing",
               c->peer_ip);
        conn_free(c);
        break;
    case CONN_BODY:
        conn_reject(c, 408, "request body timeout");
        break;
    default:
        conn_free(c);
        break;
    }
}

/* ---- lifecycle ---------------------------------------------------------- */

void sh_conn_accept(sh_worker *w, int fd, const struct sockaddr *sa, int salen,
                    const sh_listen_conf *lc)
{
    pthread_once(&settings_once, settings_init);
    if (w->nconns >= w->cfg->limits.max_connections || w->draining) {
        w->stats.connections_rejected++;
        close(fd);
        return;
    }
    sh_conn *c = sh_calloc(1, sizeof(*c));
    c->w = w;
    c->ranges = &c->range1;
    memcpy(&c->peer, sa, (size_t)salen < sizeof(c->peer) ? (size_t)salen : sizeof(c->peer));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, c->peer_ip, sizeof(c->peer_ip));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, c->peer_ip, sizeof(c->peer_ip));
    } else {
        snprintf(c->peer_ip, sizeof(c->peer_ip), "-");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->local_port = lc->addr.ss_family == AF_INET6
                        ? ntohs(((const struct sockaddr_in6 *)&lc->addr)->sin6_port)
                        : ntohs(((const struct sockaddr_in *)&lc->addr)->sin_port);
    if (lc->tls) {
        /* The handshake runs inside the bufferevent; the header timer armed
         * below bounds it, so a silent TLS client costs no more than a silent
         * plain one. */
        c->ssl = sh_tls_new();
        c->wire = c->ssl ? bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
        c->bev = c->wire ? bufferevent_openssl_filter_new(w->base, c->wire, c->ssl,
                                                          BUFFEREVENT_SSL_ACCEPTING,
                                                          BEV_OPT_CLOSE_ON_FREE)
                         : NULL;
        if (c->bev) {
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
            bufferevent_set_max_single_write(c->wire, MAX_SINGLE_WRITE);
            bufferevent_setwatermark(c->wire, EV_WRITE, WIRE_LOW, WIRE_HIGH);
        } else {
            if (c->ssl) SSL_free(c->ssl);
            if (c->wire) {
                bufferevent_free(c->wire); /* closes fd */
                sh_free(c);
                return;
            }
        }
    } else {
        c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        close(fd);
        sh_free(c);
        return;
    }
    evtimer_assign(&c->timer_ev, w->base, conn_timer_cb, c);
    c->timer = &c->timer_ev;
    conn_scan_reset(c);
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    /* libevent writes at most 16 KiB per wake-up by default: a 2 MiB book
     * would cost 128 writev calls and as many epoll rounds. Let the socket
     * buffer decide how much goes per call instead. */
    bufferevent_set_max_single_write(c->bev, MAX_SINGLE_WRITE);
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    evbuffer_add_cb(bufferevent_get_output(c->bev), conn_count_out, c);
    /* A head is parsed only once all of it is buffered: reading must not
     * stop before the largest head the limits allow. */
    size_t in_high = IN_HIGH;
    if (w->cfg->limits.max_header_size + 64 > in_high)
        in_high = w->cfg->limits.max_header_size + 64;
    bufferevent_setwatermark(c->bev, EV_READ, 0, in_high);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
    struct timeval send_tv = {(time_t)(w->cfg->timeouts.send_ms / 1000),
                              (suseconds_t)((w->cfg->timeouts.send_ms % 1000) * 1000)};
    /* Over TLS the socket is the wire's: a timeout on the TLS bufferevent
     * would be a bare timer that fires send_ms after the last write even on
     * an idle keep-alive connection. */
    bufferevent_set_timeouts(c->wire ? c->wire : c->bev, NULL, &send_tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CONN_IDLE;
    /* The first request gets the header timeout, not the keep-alive one. */
    conn_set_state(c, CONN_HEAD);
    timer_arm(c, w->cfg->timeouts.header_ms);

    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    w->stats.connections_accepted++;
}

void conn_abort(sh_conn *c, const char *why)
{
    sh_log(SH_LOG_DEBUG, "%s: abort: %s", c->peer_ip, why);
    /* RST rather than FIN: the viewer must see a failure, not an end. */
    struct linger lg = {1, 0};
    setsockopt(conn_fd(c), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    c->aborted = 1;
    conn_free(c);
}

static void conn_free(sh_conn *c)
{
    sh_worker *w = c->w;
    conn_log_unfinished(c);
    if (c->fetch) {
        origin_fetch_cancel(c->fetch);
        c->fetch = NULL;
    }
    conn_serve_release(c);
    c->state = CONN_CLOSED;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nconns--;
    evtimer_del(c->timer);
    if (c->ssl && SSL_is_init_finished(c->ssl)) {
        /* close_notify when the close is ours and orderly; then mark the
         * shutdown complete either way, or OpenSSL drops the session from the
         * cache and the viewer's next connection pays a full handshake
         * (TLS 1.1+ allows resuming after an unclean close). */
        if (!c->aborted && !(SSL_get_shutdown(c->ssl) & SSL_SENT_SHUTDOWN)) SSL_shutdown(c->ssl);
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    }
    evbuffer_remove_cb(bufferevent_get_output(c->bev), conn_count_out, c);
    if (c->fin == 1) evbuffer_remove_cb(bufferevent_get_output(c->wire), conn_wire_out_cb, c);
    /* Through a socket BIO the last records (an alert, close_notify) reached
     * the kernel as OpenSSL made them; on the wire they are still ours. */
    if (c->wire && !c->aborted && evbuffer_get_length(bufferevent_get_output(c->wire)))
        bev_write_now(c->wire);
    bufferevent_free(c->bev);
    sh_hdrlist_clear(&c->req.resp.headers);
    sh_snapshot_unref(c->req.snap);
    sh_free(c->req.origin_path);
    sh_free(c->gen_body);
    bufs_give(c);
    if (c->ranges != &c->range1) sh_free(c->ranges);
    if (c->body) evbuffer_free(c->body);
    sh_free(c);
    sh_worker_conn_closed(w);
}

void sh_conn_drain_all(sh_worker *w)
{
    for (sh_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_IDLE || (c->state == CONN_HEAD && c->hlen == 0 &&
                                      !evbuffer_get_length(bufferevent_get_input(c->bev))))
            conn_free(c);
        else
            c->close_after = 1;
    }
}

void sh_conn_close_all(sh_worker *w)
{
    while (w->conns)
        conn_free(w->conns);
}
