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

void conn_add_core_headers(sh_conn *c, sh_resp *resp, const char *result)
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
void conn_send_head(sh_conn *c, int no_body)
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
