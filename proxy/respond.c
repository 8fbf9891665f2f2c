/* Response heads and the answers Shield generates itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn_int.h"
#include "shield/alloc.h"
#include "shield/forward.h"
#include "shield/log.h"

/* ---- responses ---------------------------------------------------------- */

/* Bounded string building without printf: this runs on every response. */
static char *put(char *p, const char *end, const char *s, size_t n)
{
    if (n > (size_t)(end - p)) n = (size_t)(end - p);
    memcpy(p, s, n);
    return p + n;
}

static char *put_s(char *p, const char *end, const char *s)
{
    return put(p, end, s, strlen(s));
}

static char *put_u(char *p, const char *end, uint64_t v)
{
    char d[24], *q = d + sizeof(d);
    do
        *--q = (char)('0' + v % 10);
    while (v /= 10);
    return put(p, end, q, (size_t)(d + sizeof(d) - q));
}

void conn_add_core_headers(sh_conn *c, sh_resp *resp, const char *result)
{
    const sh_config *cfg = c->w->cfg;
    char buf[320], *end = buf + sizeof(buf) - 1, *p;
    p = put_s(buf, end, result);
    p = put_s(p, end, " from ");
    p = put_s(p, end, cfg->node_name);
    *p = '\0';
    sh_hdrlist_set(&resp->headers, "X-Cache", buf);
    p = put_s(buf, end, "1.1 ");
    p = put_s(p, end, cfg->node_name);
    p = put_s(p, end, " (shield)");
    *p = '\0';
    sh_hdrlist_set(&resp->headers, "Via", buf);
    sh_hdrlist_set(&resp->headers, "X-Request-Id", c->req.request_id);
}

void conn_format_uint(char *out, size_t outlen, uint64_t v)
{
    char *p = put_u(out, out + outlen - 1, v);
    *p = '\0';
}

/* The Date header changes once a second: format it once a second per thread. */
static const char *date_now(void)
{
    static __thread int64_t sec = -1;
    static __thread char date[32];
    int64_t now = (int64_t)time(NULL);
    if (now != sec) {
        sh_http_date(now, date);
        sec = now;
    }
    return date;
}

/* Serialize the status line and headers of req->resp into the output. */
void conn_send_head(sh_conn *c, int no_body)
{
    sh_req *r = &c->req;
    struct evbuffer *out = bufferevent_get_output(c->bev);

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
    /* The whole head in one buffer and one evbuffer_add: the fixed part is
     * under 256 bytes, the rest is the header list. */
    size_t need = 256;
    for (size_t i = 0; i < r->resp.headers.n; i++)
        need += r->resp.headers.v[i].name_len + r->resp.headers.v[i].value_len + 4;
    char stackbuf[4096];
    char *head = need <= sizeof(stackbuf) ? stackbuf : sh_malloc(need);
    char *p = head, *end = head + need;
    p = put_s(p, end, "HTTP/1.1 ");
    p = put_u(p, end, (uint64_t)(r->resp.status > 0 ? r->resp.status : 0));
    *p++ = ' ';
    p = put_s(p, end, sh_http_reason(r->resp.status));
    p = put_s(p, end, "\r\nDate: ");
    p = put_s(p, end, date_now());
    p = put_s(p, end, "\r\nServer: shield\r\n");
    for (size_t i = 0; i < r->resp.headers.n; i++) {
        const sh_header *h = &r->resp.headers.v[i];
        p = put(p, end, h->name, h->name_len);
        p = put(p, end, ": ", 2);
        p = put(p, end, h->value, h->value_len);
        p = put(p, end, "\r\n", 2);
    }
    if (r->resp.content_length >= 0 && r->resp.status != 304 && r->resp.status != 204) {
        p = put_s(p, end, "Content-Length: ");
        p = put_u(p, end, (uint64_t)r->resp.content_length);
        p = put(p, end, "\r\n", 2);
    }
    if (c->chunked_out) p = put_s(p, end, "Transfer-Encoding: chunked\r\n");
    if (c->close_after)
        p = put_s(p, end, "Connection: close\r\n");
    else if (r->http_minor == 0)
        p = put_s(p, end, "Connection: keep-alive\r\n");
    p = put(p, end, "\r\n", 2);
    evbuffer_add(out, head, (size_t)(p - head));
    if (head != stackbuf) sh_free(head);
    c->head_sent = 1;
    if (r->ttfb_us < 0) r->ttfb_us = sh_now_us() - r->start_us; /* time-to-first-byte */
    int cls = r->resp.status / 100;
    c->w->stats.responses_by_class[cls >= 1 && cls <= 5 ? cls : 0]++;
}

void conn_run_response_phase(sh_conn *c)
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
    case 501:
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
void conn_send_generated(sh_conn *c)
{
    sh_req *r = &c->req;
    conn_add_core_headers(c, &r->resp, r->result_type ? r->result_type : "Error");
    conn_run_response_phase(c);
    int head = r->method_bit == SH_M_HEAD;
    conn_send_head(c, head);
    if (!head && c->gen_body_len) bufferevent_write(c->bev, c->gen_body, c->gen_body_len);
    conn_finish(c);
}
