/*
 * Streaming straight from the origin: requests the cache does not handle.
 * A compressible answer to a viewer that accepts gzip/br is compressed on the
 * way (shield/compress.h), piece by piece as the origin's bytes arrive.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn_int.h"
#include "shield/alloc.h"
#include "shield/compress.h"
#include "shield/forward.h"
#include "shield/log.h"
#include "shield/snapshot.h"

/* ---- compression ---------------------------------------------------------- */

/* The compressor of a pass (c->pz). Freed by conn_pass_release(), which
 * serve.c calls whenever a request's state goes (finish, abort, close). */
typedef struct pass_z {
    sh_compressor *z;
    struct evbuffer *tmp; /* one origin read's output, framed as one chunk */
} pass_z;

static pass_z *pass_z_of(const sh_conn *c)
{
    return c->pz;
}

void conn_pass_release(sh_conn *c)
{
    pass_z *p = c->pz;
    if (!p) return;
    c->pz = NULL;
    sh_compressor_free(p->z);
    evbuffer_free(p->tmp);
    sh_free(p);
}

static int pass_sink(void *ud, const char *data, size_t len)
{
    return evbuffer_add(ud, data, len);
}

/* Queue what the compressor produced, as one chunk for a chunked viewer. */
static void pass_z_flush(sh_conn *c, pass_z *p)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t n = evbuffer_get_length(p->tmp);
    if (n == 0) return;
    if (c->chunked_out) evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_add_buffer(out, p->tmp);
    if (c->chunked_out) evbuffer_add(out, "\r\n", 2);
}

/* Decide on the response head whether this pass is compressed; rewrite the head if so. */
static void pass_z_start(sh_conn *c, int status)
{
    sh_req *r = &c->req;
    sh_encoding e = sh_compress_negotiate(r);
    if (e == SH_ENC_IDENTITY ||
        !sh_compress_response_ok(status, &r->resp.headers, r->resp.content_length))
        return;
    if (r->method_bit != SH_M_HEAD) { /* a HEAD answer only needs the head */
        sh_compressor *z = sh_compressor_new(e, r->resp.content_length);
        if (!z) return;
        pass_z *p = sh_calloc(1, sizeof(*p));
        p->z = z;
        p->tmp = evbuffer_new();
        c->pz = p;
    }
    sh_compress_apply_headers(&r->resp.headers, e);
    r->resp.content_length = -1;
}

/* ---- origin fetch ------------------------------------------------------- */

/* What the log needs from the origin's answer: its first-byte time (the
 * fetch started at c->wait_start_us, see conn_pass_start), a 5xx, and the
 * byte range of a 206 ("bytes a-b/n"). */
static void pass_note_response(sh_conn *c, int status)
{
    sh_req *r = &c->req;
    if (c->wait_start_us) r->origin_ttfb_us = sh_now_us() - c->wait_start_us;
    c->wait_start_us = 0;
    if (status >= 500) r->origin_error = "5xx";
    const sh_header *cr = status == 206 ? sh_hdrlist_get(&r->resp.headers, "Content-Range") : NULL;
    long long a, b;
    char buf[96];
    if (cr && cr->value_len < sizeof buf) {
        memcpy(buf, cr->value, cr->value_len);
        buf[cr->value_len] = '\0';
        if (sscanf(buf, "bytes %lld-%lld/", &a, &b) == 2 && a >= 0 && b >= a) {
            r->range_start = a;
            r->range_end = b;
        }
    }
}

static void origin_on_response(void *ud, int status, const sh_header *h, size_t n)
{
    sh_conn *c = ud;
    sh_req *r = &c->req;
    sh_hdrlist_clear(&r->resp.headers);
    r->resp.status = status;
    sh_forward_response_headers(r, h, n, &r->resp);
    pass_note_response(c, status);
    pass_z_start(c, status);
    r->result_type = "Miss";
    conn_add_core_headers(c, &r->resp, "Miss");
    conn_run_response_phase(c);
    conn_send_head(c, r->method_bit == SH_M_HEAD);
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
    pass_z *p = pass_z_of(c);
    if (p) {
        if (sh_compressor_feed(p->z, data, len, pass_sink, p->tmp) != 0) {
            /* Cannot happen short of a library failure: the viewer must see a cut. */
            sh_log(SH_LOG_ERROR, "pass: compression failed (request %s)", c->req.request_id);
            origin_fetch_cancel(c->fetch);
            c->fetch = NULL;
            conn_abort(c, "compression failed");
            return ORIGIN_BODY_OK;
        }
        pass_z_flush(c, p);
        return ORIGIN_BODY_OK;
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
    pass_z *p = pass_z_of(c);
    if (res == ORIGIN_OK && p) {
        if (sh_compressor_finish(p->z, pass_sink, p->tmp) != 0) {
            sh_log(SH_LOG_ERROR, "pass: compression failed (request %s)", r->request_id);
            conn_abort(c, "compression failed");
            return;
        }
        pass_z_flush(c, p);
    }
    conn_pass_release(c);
    if (res == ORIGIN_OK) {
        if (c->chunked_out && r->method_bit != SH_M_HEAD)
            evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
        conn_finish(c);
        return;
    }
    c->w->stats.origin_errors++;
    r->origin_error = origin_result_name(res);
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

void conn_origin_request(sh_conn *c, origin_request *oreq, sh_hdrlist *hl, char **pq,
                         int strip_validators)
{
    sh_req *r = &c->req;
    const sh_behavior_conf *b = r->behavior;
    const sh_origin_conf *o = b->origin;

    /* path (possibly rewritten) + the query, if this behavior forwards it */
    const char *path = r->origin_path ? r->origin_path : r->path;
    size_t plen = r->origin_path ? strlen(r->origin_path) : r->path_len;
    size_t qlen = 0;
    *pq = sh_malloc(plen + r->query_len + 2);
    memcpy(*pq, path, plen);
    if (b->forward_query && r->query) {
        /* Signing parameters authenticate the viewer to Shield, not Shield to the origin. */
        qlen = sh_query_strip_signature(r->query, r->query_len, *pq + plen + 1);
        if (qlen) (*pq)[plen] = '?', qlen++;
    }
    (*pq)[plen + qlen] = '\0';

    sh_forward_request_headers(r, r->cfg->node_name, hl);
    if (strip_validators) {
        /* A fill fetches the whole object once for every waiter; each
         * waiter's own Range and conditionals are answered from it. */
        static const char *const v[] = {
            "Range",   "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
            "If-Range"};
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
            sh_hdrlist_del(hl, v[i]);
    }
    *oreq = (origin_request){
        .origin = o,
        .creds = r->snap->creds[o - r->cfg->origins],
        .snap = r->snap,
        .method = r->method,
        .path_query = *pq,
        .path_query_len = plen + qlen,
        .headers = hl->v,
        .nheaders = hl->n,
        .body = r->body,
        .body_len = r->body_len,
    };
}

void conn_pass_start(sh_conn *c)
{
    origin_request oreq;
    sh_hdrlist hl = {0};
    char *pq;
    conn_origin_request(c, &oreq, &hl, &pq, 0);
    conn_set_state(c, CONN_ORIGIN);
    c->w->stats.origin_fetches++;
    /* A pass never waits on a fill: the field times the origin instead. */
    c->wait_start_us = sh_now_us();
    c->fetch = origin_fetch_start(c->w->origin, &oreq, &origin_cbs, c);
    sh_hdrlist_clear(&hl);
    sh_free(pq);
    if (!c->fetch) {
        c->req.origin_error = "internal";
        conn_set_state(c, CONN_PHASES);
        sh_req_respond(&c->req, 502, NULL, NULL, NULL, NULL);
        conn_send_generated(c);
    }
}
