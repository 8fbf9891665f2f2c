/*
 * Viewer connections: the HTTP/1.1 front end and the request state machine.
 *
 * One request at a time per connection. Pipelined requests wait, unparsed, in
 * the input buffer until the current response has been queued, so responses
 * are in order by construction and a request can never be parsed while its
 * predecessor's body is in doubt. The parser is llhttp in strict mode; the
 * checks llhttp leaves to its user (sizes, Host, Transfer-Encoding codings,
 * Expect, bodies on GET) are made in on_headers_complete, before any module
 * or the origin sees the request. Any framing error answers once and closes.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>

#include "shield/alloc.h"
#include "shield/forward.h"
#include "shield/log.h"
#include "shield/module.h"
#include "shield/worker.h"

#define CONN_STATES(X)                                                                             \
    X(IDLE, "idle")     /* keep-alive: waiting for the first byte of a request */                  \
    X(HEAD, "head")     /* reading a request head */                                               \
    X(PHASES, "phases") /* module phases running (possibly suspended) */                           \
    X(BODY, "body")     /* reading a request body */                                               \
    X(ORIGIN, "origin") /* waiting for the origin's response head */                               \
    X(SEND, "send")     /* streaming the response body */                                          \
    X(LINGER, "linger") /* response queued, closing: flush, half-close, discard input */           \
    X(CLOSED, "closed")

typedef enum {
#define X(s, n) CONN_##s,
    CONN_STATES(X)
#undef X
        CONN_NSTATES
} conn_state;

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
    [CONN_ORIGIN] = B(SEND) | B(PHASES) | B(IDLE) | B(LINGER) | B(CLOSED),
    [CONN_SEND] = B(IDLE) | B(LINGER) | B(CLOSED),
    [CONN_LINGER] = B(CLOSED),
    [CONN_CLOSED] = 0,
};
#undef B

/* Output buffer watermarks for backpressure towards the origin. */
#define OUT_HIGH (256 * 1024)
#define OUT_LOW  (64 * 1024)
/* Unparsed pipelined input kept per connection. */
#define IN_HIGH          (64 * 1024)
#define LINGER_MS        2000
#define LINGER_MAX_BYTES (1024 * 1024)

struct hspan {
    uint32_t noff, nlen, voff, vlen;
};

typedef struct sh_conn {
    struct sh_conn *prev, *next;
    sh_worker *w;
    struct bufferevent *bev;
    struct event *timer;
    conn_state state;
    llhttp_t parser;
    struct sockaddr_storage peer;
    char peer_ip[64];
    unsigned nrequests;
    size_t linger_bytes;

    /* request head, copied out of the input buffer as llhttp reports it */
    char *hbuf;
    size_t hlen, hcap;
    uint32_t url_off, url_len;
    struct hspan *spans;
    size_t nspans;
    int last_cb; /* 0 none, 1 field, 2 value */
    size_t header_bytes;
    int err_status; /* set by a callback before it fails the parse */
    const char *err_detail;
    unsigned pause_at; /* PAUSE_* that made llhttp stop */
    int head_done, msg_done, has_body, expect_continue;
    struct evbuffer *body;

    /* current request */
    sh_req req;
    sh_header *hdrs;
    size_t phase, module;
    origin_fetch *fetch;
    int origin_paused;
    int chunked_out, head_sent, keepalive, close_after, peer_eof;
    int in_parse; /* conn_parse() is on the stack: nested steps let its loop go on */
    int line_ok;  /* the request line of the current request passed check_request_line() */
    /* obs-fold detection: where the current llhttp input starts, where the
     * previous one ended, and where the last header-value span ended */
    const char *exec_data, *exec_end, *prev_exec_end, *value_end;
    char *gen_body; /* generated response body */
    size_t gen_body_len;
} sh_conn;

enum { PAUSE_NONE, PAUSE_HEAD, PAUSE_MSG };

static void conn_free(sh_conn *c);
static void conn_parse(sh_conn *c);
static void conn_run_phases(sh_conn *c);
static void conn_finish(sh_conn *c);
static void conn_abort(sh_conn *c, const char *why);

static void conn_set_state(sh_conn *c, conn_state s)
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

/* ---- llhttp callbacks: copy the head into hbuf, enforce the limits ------- */

static int bad(sh_conn *c, int status, const char *detail);

static int hbuf_append(sh_conn *c, const char *at, size_t len)
{
    const sh_limits_conf *lim = &c->w->cfg->limits;
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

static int on_message_begin(llhttp_t *p)
{
    sh_conn *c = conn_of(p);
    c->hlen = 0;
    c->url_off = c->url_len = 0;
    c->nspans = 0;
    c->last_cb = 0;
    c->header_bytes = 0;
    c->head_done = c->msg_done = c->has_body = c->expect_continue = 0;
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
    if (c->last_cb != 1) {
        if (c->nspans >= lim->max_headers) {
            c->err_status = 431;
            return -1;
        }
        if (!c->spans) c->spans = sh_calloc(lim->max_headers + 1, sizeof(*c->spans));
        c->spans[c->nspans++] = (struct hspan){(uint32_t)c->hlen, 0, 0, 0};
        c->header_bytes += 4; /* ": " and CRLF */
        c->last_cb = 1;
    }
    c->header_bytes += len;
    if (c->header_bytes > lim->max_header_size) {
        c->err_status = 431;
        return -1;
    }
    /* llhttp lets spaces and other non-token bytes through in names it does
     * not know ("X-A : b"); an origin might trim them and see another header. */
    for (size_t i = 0; i < len; i++)
        if (!sh_is_tchar((unsigned char)at[i])) return bad(c, 400, "invalid byte in header name");
    c->spans[c->nspans - 1].nlen += (uint32_t)len;
    return hbuf_append(c, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    sh_conn *c = conn_of(p);
    if (c->nspans == 0 || c->last_cb == 0) return bad(c, 400, "header value without a name");
    struct hspan *s = &c->spans[c->nspans - 1];
    if (c->last_cb != 2) {
        s->voff = (uint32_t)c->hlen;
        c->last_cb = 2;
    } else if (!(at == c->exec_data && c->value_end == c->prev_exec_end)) {
        /* A value continued other than across two reads is an obs-fold
         * ("X: a\r\n b"), which llhttp joins silently; RFC 9112 §5.2 lets a
         * server reject it, and a proxy must, or the origin may disagree. */
        return bad(c, 400, "obs-fold in header");
    }
    c->value_end = at + len;
    c->header_bytes += len;
    if (c->header_bytes > c->w->cfg->limits.max_header_size) {
        c->err_status = 431;
        return -1;
    }
    /* llhttp hands obs-fold continuations and bare CR through as part of the
     * value; both are desync vectors, so no control byte is accepted. */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)at[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            c->err_detail = "control byte in header value";
            c->err_status = 400;
            return -1;
        }
    }
    s->vlen += (uint32_t)len;
    return hbuf_append(c, at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    sh_conn *c = conn_of(p);
    if (c->last_cb != 1 || c->spans[c->nspans - 1].nlen == 0)
        return bad(c, 400, "empty header name");
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    sh_conn *c = conn_of(p);
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
        if (!host) {
            if (r->http_minor >= 1) return bad(c, 400, "missing Host"), 400;
        } else {
            if (!sh_host_valid(host->value, host->value_len))
                return bad(c, 400, "invalid Host"), 400;
            r->host = host->value;
            r->host_len = host->value_len;
        }
    }
    if (!host && r->host == NULL && r->http_minor >= 1) return bad(c, 400, "missing Host"), 400;
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

static int on_headers_complete(llhttp_t *p)
{
    sh_conn *c = conn_of(p);
    sh_req *r = &c->req;
    const sh_config *cfg = c->w->cfg;

    memset(r, 0, sizeof(*r));
    r->conn = c;
    r->worker = c->w;
    r->cfg = cfg;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->start_us = sh_now_us();
    r->peer = c->peer;
    snprintf(r->client_ip, sizeof(r->client_ip), "%s", c->peer_ip);
    c->keepalive = llhttp_should_keep_alive(p);

    /* The head is complete, so hbuf no longer moves: build pointers. */
    c->hdrs = sh_realloc(c->hdrs, (c->nspans ? c->nspans : 1) * sizeof(sh_header));
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
    c->head_done = 1;
    if (c->has_body) {
        c->pause_at = PAUSE_HEAD;
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
    c->pause_at = PAUSE_MSG;
    return HPE_PAUSED;
}

static llhttp_settings_t parser_settings;

static void settings_init(void)
{
    static int done;
    if (done) return;
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
    done = 1;
}

/* ---- responses ---------------------------------------------------------- */

static void add_core_headers(sh_conn *c, sh_resp *resp, const char *result)
{
    const sh_config *cfg = c->w->cfg;
    char buf[320];
    snprintf(buf, sizeof(buf), "%s from %s", result, cfg->node_name);
    sh_hdrlist_set(&resp->headers, "X-Cache", buf);
    snprintf(buf, sizeof(buf), "1.1 %s (shield)", cfg->node_name);
    sh_hdrlist_set(&resp->headers, "Via", buf);
    sh_hdrlist_set(&resp->headers, "X-Request-Id", c->req.request_id);
}

/* Serialize the status line and headers of req->resp into the output. */
static void send_head(sh_conn *c, int no_body)
{
    sh_req *r = &c->req;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char date[32];
    sh_http_date(time(NULL), date);

    if (c->w->draining || (c->w->cfg->limits.max_requests_per_connection &&
                           c->nrequests + 1 >= c->w->cfg->limits.max_requests_per_connection))
        c->close_after = 1;
    if (!c->keepalive || c->peer_eof) c->close_after = 1;

    int bodyless =
        no_body || r->resp.status == 204 || r->resp.status == 304 || r->resp.status < 200;
    c->chunked_out = 0;
    if (!bodyless && r->resp.content_length < 0) {
        if (r->http_minor >= 1)
            c->chunked_out = 1;
        else
            c->close_after = 1; /* HTTP/1.0: the close delimits the body */
    }
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", r->resp.status, sh_http_reason(r->resp.status));
    evbuffer_add_printf(out, "Date: %s\r\nServer: shield\r\n", date);
    for (size_t i = 0; i < r->resp.headers.n; i++) {
        const sh_header *h = &r->resp.headers.v[i];
        evbuffer_add(out, h->name, h->name_len);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, h->value, h->value_len);
        evbuffer_add(out, "\r\n", 2);
    }
    if (r->resp.content_length >= 0 && r->resp.status != 304 && r->resp.status != 204)
        evbuffer_add_printf(out, "Content-Length: %lld\r\n", (long long)r->resp.content_length);
    if (c->chunked_out) evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    if (c->close_after)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (r->http_minor == 0)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    evbuffer_add(out, "\r\n", 2);
    c->head_sent = 1;
    int cls = r->resp.status / 100;
    c->w->stats.responses_by_class[cls >= 1 && cls <= 5 ? cls : 0]++;
}

static void run_response_phase(sh_conn *c)
{
    size_t ph = SH_PHASE_RESPONSE, mod = 0;
    /* Response filters cannot suspend or respond: the response is decided. */
    while (sh_pipeline_run(&c->req, c->w->mod_states, &ph, &mod, SH_PHASE_RESPONSE + 1) !=
           SH_CONTINUE)
        mod++;
}

static const char *error_detail_for(int status)
{
    switch (status) {
    case 405:
        return "InvalidRequestMethod";
    case 400:
    case 413:
    case 414:
    case 417:
    case 431:
    case 505:
        return "InvalidRequest";
    default:
        return NULL;
    }
}

sh_rc sh_req_respond(sh_req *req, int status, const char *hname, const char *hvalue,
                     const char *content_type, const char *body)
{
    sh_conn *c = req->conn;
    sh_hdrlist_clear(&req->resp.headers);
    req->resp.status = status;
    if (hname && hvalue) sh_hdrlist_adds(&req->resp.headers, hname, hvalue);
    sh_free(c->gen_body);
    if (body) {
        c->gen_body = sh_strdup(body);
        sh_hdrlist_adds(&req->resp.headers, "Content-Type",
                        content_type ? content_type : "text/plain");
    } else {
        char page[512];
        snprintf(page, sizeof(page),
                 "<html><head><title>%d %s</title></head><body><h1>%d %s</h1>"
                 "<p>Request ID: %s</p><hr><p>shield</p></body></html>\n",
                 status, sh_http_reason(status), status, sh_http_reason(status), req->request_id);
        c->gen_body = sh_strdup(page);
        sh_hdrlist_adds(&req->resp.headers, "Content-Type", "text/html");
    }
    c->gen_body_len = strlen(c->gen_body);
    req->resp.content_length = (int64_t)c->gen_body_len;
    if (!req->result_type) req->result_type = status >= 300 && status < 400 ? "Redirect" : "Error";
    if (!req->detailed_result) req->detailed_result = error_detail_for(status);
    return SH_RESPOND;
}

/* Queue a generated response (from a module or the core) and finish. */
static void conn_send_generated(sh_conn *c)
{
    sh_req *r = &c->req;
    add_core_headers(c, &r->resp, r->result_type ? r->result_type : "Error");
    run_response_phase(c);
    int head = r->method_bit == SH_M_HEAD;
    send_head(c, head);
    if (!head && c->gen_body_len) bufferevent_write(c->bev, c->gen_body, c->gen_body_len);
    conn_finish(c);
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
        memset(r, 0, sizeof(*r));
        r->conn = c;
        r->worker = c->w;
        r->cfg = c->w->cfg;
        r->http_minor = 1;
        r->start_us = sh_now_us();
        snprintf(r->client_ip, sizeof(r->client_ip), "%s", c->peer_ip);
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

/* ---- origin fetch ------------------------------------------------------- */

static void origin_on_response(void *ud, int status, const sh_header *h, size_t n)
{
    sh_conn *c = ud;
    sh_req *r = &c->req;
    sh_hdrlist_clear(&r->resp.headers);
    r->resp.status = status;
    sh_forward_response_headers(r, h, n, &r->resp);
    r->result_type = "Miss";
    add_core_headers(c, &r->resp, "Miss");
    run_response_phase(c);
    send_head(c, r->method_bit == SH_M_HEAD);
    conn_set_state(c, CONN_SEND);
}

static int origin_on_body(void *ud, const char *data, size_t len)
{
    sh_conn *c = ud;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->req.method_bit == SH_M_HEAD || len == 0) return ORIGIN_BODY_OK;
    if (evbuffer_get_length(out) >= OUT_HIGH) {
        c->origin_paused = 1;
        return ORIGIN_BODY_PAUSE;
    }
    if (c->chunked_out) evbuffer_add_printf(out, "%zx\r\n", len);
    evbuffer_add(out, data, len);
    if (c->chunked_out) evbuffer_add(out, "\r\n", 2);
    return ORIGIN_BODY_OK;
}

static void origin_on_done(void *ud, origin_result res, const char *detail)
{
    sh_conn *c = ud;
    sh_req *r = &c->req;
    c->fetch = NULL;
    c->origin_paused = 0;
    if (res == ORIGIN_OK) {
        if (c->chunked_out && r->method_bit != SH_M_HEAD)
            evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
        conn_finish(c);
        return;
    }
    c->w->stats.origin_errors++;
    sh_log(SH_LOG_WARN, "origin %s for %.*s (request %s): %s", origin_result_name(res),
           (int)r->path_len, r->path, r->request_id, detail ? detail : "");
    if (c->head_sent) {
        /* Bytes already reached the viewer: only an abort tells it the body
         * is incomplete. A clean end would let a truncated book be kept. */
        r->detailed_result = "OriginReadError";
        conn_abort(c, "origin failed mid-body");
        return;
    }
    int status = 502;
    switch (res) {
    case ORIGIN_ERR_TIMEOUT:
        status = 504;
        r->detailed_result = "OriginCommError";
        break;
    case ORIGIN_ERR_DNS:
        r->detailed_result = "OriginDnsError";
        break;
    case ORIGIN_ERR_CONNECT:
        r->detailed_result = "OriginConnectError";
        break;
    case ORIGIN_ERR_PROTOCOL:
        r->detailed_result = "OriginInvalidResponseError";
        break;
    default:
        r->detailed_result = "OriginError";
        break;
    }
    conn_set_state(c, CONN_PHASES);
    sh_req_respond(r, status, NULL, NULL, NULL, NULL);
    conn_send_generated(c);
}

static const origin_callbacks origin_cbs = {origin_on_response, origin_on_body, origin_on_done};

static void conn_start_origin(sh_conn *c)
{
    sh_req *r = &c->req;
    const sh_behavior_conf *b = r->behavior;
    const sh_origin_conf *o = b->origin;

    /* path (possibly rewritten) + the query, if this behavior forwards it */
    const char *path = r->origin_path ? r->origin_path : r->path;
    size_t plen = r->origin_path ? strlen(r->origin_path) : r->path_len;
    size_t qlen = (b->forward_query && r->query) ? r->query_len + 1 : 0;
    char *pq = sh_malloc(plen + qlen + 1);
    memcpy(pq, path, plen);
    if (qlen) {
        pq[plen] = '?';
        memcpy(pq + plen + 1, r->query, r->query_len);
    }
    pq[plen + qlen] = '\0';

    sh_hdrlist hl = {0};
    sh_forward_request_headers(r, c->w->cfg->node_name, &hl);
    char *body = NULL;
    size_t body_len = c->body ? evbuffer_get_length(c->body) : 0;
    if (body_len) body = (char *)evbuffer_pullup(c->body, -1);

    origin_request oreq = {
        .origin = o,
        .creds = c->w->creds[o - c->w->cfg->origins],
        .method = r->method,
        .path_query = pq,
        .path_query_len = plen + qlen,
        .headers = hl.v,
        .nheaders = hl.n,
        .body = body,
        .body_len = body_len,
    };
    conn_set_state(c, CONN_ORIGIN);
    c->w->stats.origin_fetches++;
    c->fetch = origin_fetch_start(c->w->origin, &oreq, &origin_cbs, c);
    sh_hdrlist_clear(&hl);
    sh_free(pq);
    if (!c->fetch) {
        conn_set_state(c, CONN_PHASES);
        sh_req_respond(r, 502, NULL, NULL, NULL, NULL);
        conn_send_generated(c);
    }
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
    conn_start_origin(c);
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

const sh_header *sh_req_header(const sh_req *req, const char *name)
{
    return sh_hdr_find(req->headers, req->nheaders, name);
}

/* The response is fully queued: log, then keep the connection or close it. */
static void conn_finish(sh_conn *c)
{
    sh_req *r = &c->req;
    size_t ph = SH_PHASE_LOG, mod = 0;
    while (sh_pipeline_run(r, c->w->mod_states, &ph, &mod, SH_PHASE_LOG + 1) != SH_CONTINUE)
        mod++;
    sh_hdrlist_clear(&r->resp.headers);
    sh_free(r->origin_path);
    sh_free(c->gen_body);
    c->gen_body = NULL;
    c->gen_body_len = 0;
    if (c->body) evbuffer_drain(c->body, evbuffer_get_length(c->body));
    memset(r, 0, sizeof(*r));
    c->head_sent = 0;
    c->line_ok = 0;
    c->nrequests++;

    if (c->close_after) {
        conn_set_state(c, CONN_LINGER);
        evtimer_del(c->timer);
        /* Wait for the output to drain (write callback), then half-close. */
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
            shutdown(bufferevent_getfd(c->bev), SHUT_WR);
            timer_arm(c, LINGER_MS);
        }
        return;
    }
    conn_set_state(c, CONN_IDLE);
    llhttp_resume(&c->parser);
    bufferevent_enable(c->bev, EV_READ);
    timer_arm(c, c->w->cfg->timeouts.keepalive_ms);
    if (evbuffer_get_length(bufferevent_get_input(c->bev))) conn_parse(c);
}

/*
 * llhttp tolerates a few request-line shapes that an origin or another proxy
 * could read differently ("GET  / HTTP/1.1", bare LF), so the line is checked
 * strictly before llhttp sees it: METHOD SP target SP HTTP/d.d CRLF, with an
 * upper-case token method and a target free of spaces and control bytes.
 * Empty lines before a request are skipped (RFC 9112 §2.2).
 * Returns 0 if valid, -1 if the line is incomplete, or a status to reject with.
 */
static int check_request_line(sh_conn *c, struct evbuffer *in)
{
    const sh_limits_conf *lim = &c->w->cfg->limits;
    for (int skipped = 0;; skipped++) {
        size_t eol_len = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
        if (eol.pos < 0) {
            if (evbuffer_get_length(in) > lim->max_url + 32) {
                c->err_detail = "request line too long";
                return 414;
            }
            return -1;
        }
        size_t n = (size_t)eol.pos;
        if (n > lim->max_url + 32) {
            c->err_detail = "request line too long";
            return 414;
        }
        const unsigned char *l = evbuffer_pullup(in, (ev_ssize_t)n + 1);
        if (n == 0 || (n == 1 && l[0] == '\r')) {
            if (skipped >= 4) {
                c->err_detail = "empty lines before the request";
                return 400;
            }
            evbuffer_drain(in, n + 1);
            continue;
        }
        c->err_detail = "malformed request line";
        if (l[n - 1] != '\r') return 400; /* bare LF */
        n--;
        size_t i = 0;
        while (i < n && l[i] >= 'A' && l[i] <= 'Z')
            i++;
        if (i == 0 || i >= n || l[i] != ' ') return 400;
        size_t t0 = ++i;
        while (i < n && l[i] > ' ' && l[i] != 0x7f)
            i++;
        if (i == t0 || i >= n || l[i] != ' ') return 400;
        if (i - t0 > lim->max_url) {
            c->err_detail = "URL too long";
            return 414;
        }
        i++;
        if (n - i != 8 || memcmp(l + i, "HTTP/", 5) != 0 || !isdigit(l[i + 5]) || l[i + 6] != '.' ||
            !isdigit(l[i + 7]))
            return 400;
        if (l[i + 5] != '1' || (l[i + 7] != '0' && l[i + 7] != '1')) {
            c->err_detail = "unsupported HTTP version";
            return 505;
        }
        c->err_detail = NULL;
        return 0;
    }
}

/* Feed buffered input to llhttp while the connection is reading a request. */
static void conn_parse(sh_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->in_parse) return;
    c->in_parse = 1;
    while (c->state == CONN_IDLE || c->state == CONN_HEAD || c->state == CONN_BODY) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) break;
        if (c->state == CONN_IDLE) {
            conn_set_state(c, CONN_HEAD);
            timer_arm(c, c->w->cfg->timeouts.header_ms);
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        const char *data = v.iov_base;
        if (c->state == CONN_HEAD && !c->line_ok) {
            int st = check_request_line(c, in);
            if (st < 0) break; /* need more bytes */
            if (st > 0) {
                conn_reject(c, st, c->err_detail);
                break;
            }
            c->line_ok = 1;
            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
            data = v.iov_base;
        }
        c->pause_at = PAUSE_NONE;
        c->prev_exec_end = c->exec_data ? c->exec_end : NULL;
        c->exec_data = data;
        c->exec_end = data + v.iov_len;
        c->err_status = 0;
        c->err_detail = NULL;
        llhttp_errno_t e = llhttp_execute(&c->parser, data, v.iov_len);
        size_t used = v.iov_len;
        if (e != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            used = pos && pos >= data && pos <= data + v.iov_len ? (size_t)(pos - data) : v.iov_len;
        }
        evbuffer_drain(in, used);
        if (e == HPE_OK) {
            if (c->state == CONN_BODY) timer_arm(c, c->w->cfg->timeouts.body_ms);
            continue;
        }
        if (e == HPE_PAUSED) {
            if (c->state == CONN_BODY) {
                /* body complete */
                evtimer_del(c->timer);
                conn_start_origin(c);
            } else {
                evtimer_del(c->timer);
                conn_head_ready(c);
            }
            continue; /* the state decides whether to parse on */
        }
        if (e == HPE_PAUSED_UPGRADE) {
            conn_reject(c, 400, "protocol upgrade not supported");
            break;
        }
        int status = c->err_status ? c->err_status : 400;
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
        if (left == 0) {
            shutdown(bufferevent_getfd(bev), SHUT_WR);
            timer_arm(c, LINGER_MS);
        }
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
        if (c->state == CONN_LINGER && evbuffer_get_length(bufferevent_get_output(bev))) return;
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

void sh_conn_accept(sh_worker *w, int fd, const struct sockaddr *sa, int salen)
{
    settings_init();
    if (w->nconns >= w->cfg->limits.max_connections || w->draining) {
        w->stats.connections_rejected++;
        close(fd);
        return;
    }
    sh_conn *c = sh_calloc(1, sizeof(*c));
    c->w = w;
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
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        sh_free(c);
        return;
    }
    c->timer = evtimer_new(w->base, conn_timer_cb, c);
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, IN_HIGH);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
    struct timeval send_tv = {(time_t)(w->cfg->timeouts.send_ms / 1000),
                              (suseconds_t)((w->cfg->timeouts.send_ms % 1000) * 1000)};
    bufferevent_set_timeouts(c->bev, NULL, &send_tv);
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

static void conn_abort(sh_conn *c, const char *why)
{
    sh_log(SH_LOG_DEBUG, "%s: abort: %s", c->peer_ip, why);
    /* RST rather than FIN: the viewer must see a failure, not an end. */
    struct linger lg = {1, 0};
    setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    conn_free(c);
}

static void conn_free(sh_conn *c)
{
    sh_worker *w = c->w;
    if (c->fetch) {
        origin_fetch_cancel(c->fetch);
        c->fetch = NULL;
    }
    c->state = CONN_CLOSED;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nconns--;
    event_free(c->timer);
    bufferevent_free(c->bev);
    sh_hdrlist_clear(&c->req.resp.headers);
    sh_free(c->req.origin_path);
    sh_free(c->gen_body);
    sh_free(c->hbuf);
    sh_free(c->spans);
    sh_free(c->hdrs);
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
