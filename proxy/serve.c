/*
 * Answering from the cache: hits, requests collapsed onto a fill in progress,
 * and the request that starts a fill. All three read the same object the
 * same way — chunk bytes queued by reference as far as `avail` allows — so a
 * waiter on a fill is just a hit that sometimes has to wait for bytes.
 *
 * Range and conditional requests are answered from the object: the fill
 * always fetches the whole body.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conn_int.h"
#include "shield/cache_persist.h"
#include "shield/alloc.h"
#include "shield/compress.h"
#include "shield/forward.h"
#include "shield/log.h"

#define conn_of_waiter(wt) ((sh_conn *)((char *)(wt)-offsetof(sh_conn, waiter)))

static void serve_pump(sh_conn *c);

static void chunk_cleanup(const void *data, size_t len, void *extra)
{
    cache_chunk_unref(extra);
}

static void segment_cleanup(struct evbuffer_file_segment const *seg, int flags, void *arg)
{
    cache_chunk_unref(arg);
}

/* Queue n bytes of a chunk from off. Arena chunks go by sendfile on plain
 * connections (the kernel takes page references: no copy); TLS has to read
 * the bytes to encrypt them, so it gets a reference to the memory. */
static void queue_chunk(sh_conn *c, struct evbuffer *out, cache_chunk *ch, size_t off, size_t n)
{
    int64_t foff = cache_chunk_file_offset(ch);
    cache_chunk_ref(ch);
    if (foff >= 0 && !c->ssl) {
        struct evbuffer_file_segment *seg =
            evbuffer_file_segment_new(cache_arena_fd(), (ev_off_t)(foff + (int64_t)off),
                                      (ev_off_t)n, EVBUF_FS_DISABLE_LOCKING);
        if (seg) {
            evbuffer_file_segment_add_cleanup_cb(seg, segment_cleanup, ch);
            evbuffer_add_file_segment(out, seg, 0, (ev_off_t)n);
            evbuffer_file_segment_free(seg); /* the buffer holds its own reference */
            return;
        }
    }
    evbuffer_add_reference(out, ch->data + off, n, chunk_cleanup, ch);
}

/* Requests the cache does not take: they go straight to the origin. */
static int cacheable_request(const sh_conn *c)
{
    const sh_req *r = &c->req;
    if (!c->w->cache) return 0;
    /* OPTIONS only where the behavior caches it (CloudFront's CachedMethods). */
    unsigned cached = r->behavior ? r->behavior->cached_methods : (SH_M_GET | SH_M_HEAD);
    if (!(r->method_bit & cached & (SH_M_GET | SH_M_HEAD | SH_M_OPTIONS))) return 0;
    /* Viewer credentials mean a per-viewer answer (RFC 9111 §3.5), unless
     * they were Shield's own to check: a verified SigV4 request reads the same
     * bucket object as everyone else. */
    if (sh_req_header(r, "Authorization") && !r->auth_verified) return 0;
    return 1;
}

static void add_part_header(sh_conn *c, struct evbuffer *out, size_t i)
{
    const sh_header *ct = sh_hdrlist_get(&c->obj->headers, "Content-Type");
    evbuffer_add_printf(out, "\r\n--%s\r\n", c->boundary);
    if (ct) evbuffer_add_printf(out, "Content-Type: %.*s\r\n", (int)ct->value_len, ct->value);
    evbuffer_add_printf(out, "Content-Range: bytes %lld-%lld/%lld\r\n\r\n",
                        (long long)c->ranges[i].start, (long long)c->ranges[i].end,
                        (long long)c->obj->size);
}

/* Length of the multipart/byteranges body for the chosen ranges. */
static int64_t multipart_length(sh_conn *c)
{
    struct evbuffer *tmp = evbuffer_new();
    int64_t total = 0;
    for (size_t i = 0; i < c->nranges; i++) {
        add_part_header(c, tmp, i);
        total += c->ranges[i].end - c->ranges[i].start + 1;
    }
    evbuffer_add_printf(tmp, "\r\n--%s--\r\n", c->boundary);
    total += (int64_t)evbuffer_get_length(tmp);
    evbuffer_free(tmp);
    return total;
}

/* Answer with a generated response instead of the object (hname may be NULL). */
static void serve_error(sh_conn *c, int status, const char *hname, const char *hvalue)
{
    conn_serve_release(c);
    if (c->state != CONN_PHASES) conn_set_state(c, CONN_PHASES);
    sh_req_respond(&c->req, status, hname, hvalue, NULL, NULL);
    conn_send_generated(c);
}

/* The object's head is known: decide status, ranges and conditionals, and
 * queue the response head. */
static void serve_head(sh_conn *c)
{
    sh_req *r = &c->req;
    cache_obj *o = c->obj;
    int64_t now = time(NULL);
    int head_only = r->method_bit == SH_M_HEAD;

    sh_hdrlist_clear(&r->resp.headers);
    for (size_t i = 0; i < o->headers.n; i++)
        sh_hdrlist_add(&r->resp.headers, o->headers.v[i].name, o->headers.v[i].name_len,
                       o->headers.v[i].value, o->headers.v[i].value_len);
    r->resp.status = o->status;
    r->resp.content_length = o->size;
    c->nranges = 0;
    c->multipart = 0;

    if (o->status == 200) {
        cache_cond cond = cache_eval_conditionals(
            r->headers, r->nheaders, o->etag, o->etag ? strlen(o->etag) : 0, o->last_modified, 1);
        if (cond == CACHE_COND_412) {
            serve_error(c, 412, NULL, NULL);
            return;
        }
        if (cond == CACHE_COND_304) {
            r->resp.status = 304;
            r->resp.content_length = -1;
            head_only = 1;
        }
    }
    const sh_header *range = sh_req_header(r, "Range");
    if (range && o->status == 200 && r->resp.status == 200 && o->size >= 0 &&
        r->method_bit == SH_M_GET) {
        const sh_header *ifr = sh_req_header(r, "If-Range");
        if (!ifr || cache_if_range_ok(ifr->value, ifr->value_len, o->etag,
                                      o->etag ? strlen(o->etag) : 0, o->last_modified)) {
            size_t n = 0;
            if (c->ranges == &c->range1) c->ranges = sh_malloc(MAX_RANGES * sizeof(*c->ranges));
            int rc = cache_parse_range(range->value, range->value_len, o->size, c->ranges,
                                       MAX_RANGES, &n);
            if (rc == CACHE_RANGE_UNSATISFIABLE) {
                char cr[64];
                snprintf(cr, sizeof(cr), "bytes */%lld", (long long)o->size);
                serve_error(c, 416, "Content-Range", cr);
                return;
            }
            if (rc == CACHE_RANGE_OK && n >= 1) {
                c->nranges = n;
                r->resp.status = 206;
                if (n == 1) {
                    char cr[80];
                    snprintf(cr, sizeof(cr), "bytes %lld-%lld/%lld", (long long)c->ranges[0].start,
                             (long long)c->ranges[0].end, (long long)o->size);
                    sh_hdrlist_set(&r->resp.headers, "Content-Range", cr);
                    r->resp.content_length = c->ranges[0].end - c->ranges[0].start + 1;
                } else {
                    char ct[96];
                    c->multipart = 1;
                    snprintf(c->boundary, sizeof(c->boundary), "%.24s", r->request_id);
                    snprintf(ct, sizeof(ct), "multipart/byteranges; boundary=%s", c->boundary);
                    r->resp.content_length = multipart_length(c);
                    sh_hdrlist_set(&r->resp.headers, "Content-Type", ct);
                }
            }
        }
    }
    if (c->nranges == 0) {
        c->ranges[0].start = 0;
        c->ranges[0].end = o->size >= 0 ? o->size - 1 : INT64_MAX - 1;
        c->nranges = 1;
    }
    c->range_i = 0;
    c->rd_off = c->ranges[0].start;
    c->part_started = 0;

    if (c->wait_start_us && o->owner == &c->waiter && !c->hit && !c->head_sent)
        r->origin_ttfb_us = sh_now_us() - c->wait_start_us; /* this request's own fill */
    if (c->nranges == 1 && r->resp.status == 206) {
        r->range_start = c->ranges[0].start;
        r->range_end = c->ranges[0].end;
    }
    if (c->wait_start_us) {
        atomic_fetch_add_explicit(&sh_cache_stats(c->w->cache)->fill_wait_us,
                                  (uint64_t)(sh_now_us() - c->wait_start_us), memory_order_relaxed);
        c->wait_start_us = 0;
    }
    if (c->hit) {
        char age[24];
        int64_t a = cache_age(o->fresh.stored_at, o->initial_age, now);
        conn_format_uint(age, sizeof(age), (uint64_t)(a > 0 ? a : 0));
        sh_hdrlist_set(&r->resp.headers, "Age", age);
    }
    conn_add_core_headers(c, &r->resp, r->result_type);
    conn_run_response_phase(c);
    conn_send_head(c, head_only);
    if (c->state != CONN_SEND) conn_set_state(c, CONN_SEND);
    c->body_done = head_only;
    serve_pump(c);
}

/* Queue as many object bytes as the output watermark and `avail` allow. */
/* Queue the body from the object's disk file: sendfile, no bytes in memory. */
static void serve_file(sh_conn *c)
{
    cache_obj *o = c->obj;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct evbuffer_file_segment *seg = evbuffer_file_segment_new(
        c->file_fd, 0, (ev_off_t)(c->file_off + (uint64_t)o->size), EVBUF_FS_CLOSE_ON_FREE);
    if (!seg) {
        conn_abort(c, "cannot map the disk object");
        return;
    }
    c->have_file = 0; /* the segment owns the descriptor now */
    for (size_t i = 0; i < c->nranges; i++) {
        if (c->multipart) add_part_header(c, out, i);
        int64_t len = c->ranges[i].end - c->ranges[i].start + 1;
        evbuffer_add_file_segment(out, seg, (ev_off_t)(c->file_off + (uint64_t)c->ranges[i].start),
                                  len);
        atomic_fetch_add_explicit(&sh_cache_stats(c->w->cache)->bytes_from_disk, (uint64_t)len,
                                  memory_order_relaxed);
    }
    if (c->multipart) evbuffer_add_printf(out, "\r\n--%s--\r\n", c->boundary);
    evbuffer_file_segment_free(seg); /* the buffer keeps its own references */
    c->body_done = 1;
}

static void serve_pump(sh_conn *c)
{
    cache_obj *o = c->obj;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    cache_stats *st = sh_cache_stats(c->w->cache);
    if (!c->body_done && c->have_file) serve_file(c);

    while (!c->body_done && evbuffer_get_length(out) < OUT_HIGH) {
        cache_range *rg = &c->ranges[c->range_i];
        int64_t avail = atomic_load_explicit(&o->avail, memory_order_acquire);
        int state = atomic_load(&o->state);
        int64_t end = rg->end + 1;
        if (o->size < 0 && state == CACHE_OBJ_COMPLETE)
            end = avail; /* close-delimited or chunked origin body: ends here */
        if (c->multipart && !c->part_started) {
            add_part_header(c, out, c->range_i);
            c->part_started = 1;
        }
        if (c->rd_off >= end) {
            if (c->range_i + 1 < c->nranges) {
                c->range_i++;
                c->rd_off = c->ranges[c->range_i].start;
                c->part_started = 0;
                continue;
            }
            if (c->multipart) evbuffer_add_printf(out, "\r\n--%s--\r\n", c->boundary);
            if (c->chunked_out) evbuffer_add(out, "0\r\n\r\n", 5);
            c->body_done = 1;
            break;
        }
        if (c->rd_off >= avail) {
            if (state == CACHE_OBJ_FAILED) {
                c->req.detailed_result = "OriginReadError";
                c->req.origin_error = "read";
                conn_abort(c, "fill failed mid-body");
                return;
            }
            return; /* wait for CACHE_EV_DATA */
        }
        size_t idx = (size_t)(c->rd_off / CACHE_CHUNK_SIZE);
        size_t off = (size_t)(c->rd_off % CACHE_CHUNK_SIZE);
        cache_chunk *ch = o->chunks[idx];
        int64_t n = (avail < end ? avail : end) - c->rd_off;
        if ((int64_t)(ch->cap - off) < n) n = (int64_t)(ch->cap - off);
        if (c->chunked_out) evbuffer_add_printf(out, "%llx\r\n", (unsigned long long)n);
        queue_chunk(c, out, ch, off, (size_t)n);
        if (c->chunked_out) evbuffer_add(out, "\r\n", 2);
        c->rd_off += n;
        if (c->hit)
            atomic_fetch_add_explicit(&st->bytes_from_memory, (uint64_t)n, memory_order_relaxed);
        if (o->pass) cache_fill_consumed(o, c->rd_off);
    }
    if (c->body_done) {
        conn_serve_release(c);
        conn_finish(c);
    }
}

static void serve_notify(cache_waiter *wt, unsigned ev)
{
    sh_conn *c = conn_of_waiter(wt);
    cache_obj *o = c->obj;
    if (!o) return;
    if (ev & CACHE_EV_RESTART) {
        /* The answer may not be shared: this request asks on its own. */
        conn_serve_release(c);
        c->req.result_type = "Miss";
        conn_pass_start(c);
        return;
    }
    if (!c->head_sent && o->use_stale && o->stale &&
        (ev & CACHE_EV_FAIL || atomic_load(&o->state) == CACHE_OBJ_FAILED)) {
        /* The refresh failed: serve the expired copy, as CloudFront does. */
        cache_obj *st = o->stale;
        cache_obj_ref(st);
        conn_serve_release(c);
        c->obj = st;
        c->hit = 1;
        c->req.result_type = "Hit";
        c->req.detailed_result = "StaleHit";
        serve_head(c);
        return;
    }
    if (!c->head_sent && o->fail == CACHE_FAIL_DISK &&
        (ev & CACHE_EV_FAIL || atomic_load(&o->state) == CACHE_OBJ_FAILED)) {
        /* The stored copy failed verification and is gone: look up again,
         * which now goes to the origin. */
        conn_serve_release(c);
        conn_serve(c);
        return;
    }
    if (!c->head_sent) {
        if ((ev & CACHE_EV_FAIL || atomic_load(&o->state) == CACHE_OBJ_FAILED) &&
            o->fail != CACHE_FAIL_ORIGIN_READ) {
            /* A failure after the origin's head is answered like a stream cut
             * mid-body (head, the bytes there are, abort) whatever the timing
             * of this viewer's wake-up, so viewers always see the same thing. */
            int status = o->fail == CACHE_FAIL_ORIGIN_TIMEOUT ? 504 : 502;
            c->req.origin_error = o->fail == CACHE_FAIL_ORIGIN_TIMEOUT   ? "timeout"
                                  : o->fail == CACHE_FAIL_ORIGIN_CONNECT ? "connect"
                                                                         : "origin";
            c->req.result_type = "Error";
            c->req.detailed_result = o->fail == CACHE_FAIL_ORIGIN_TIMEOUT   ? "OriginCommError"
                                     : o->fail == CACHE_FAIL_ORIGIN_CONNECT ? "OriginConnectError"
                                                                            : "OriginError";
            serve_error(c, status, NULL, NULL);
            return;
        }
        if (ev & (CACHE_EV_HEAD | CACHE_EV_DATA | CACHE_EV_DONE)) {
            if (o->refreshed && o->owner == &c->waiter) c->req.result_type = "RefreshHit";
            serve_head(c);
            return;
        }
        return;
    }
    serve_pump(c);
}

/* Revalidate an expired copy rather than refetch it. */
static void add_validators(const cache_obj *stale, sh_hdrlist *hl, origin_request *oreq)
{
    if (stale->etag) /* compression: a variant stores W/"x", the origin knows "x" */
        sh_hdrlist_adds(hl, "If-None-Match",
                        sh_compress_origin_etag(stale->key, stale->keylen, stale->etag));
    if (stale->last_modified >= 0) {
        char d[32];
        sh_http_date(stale->last_modified, d);
        sh_hdrlist_adds(hl, "If-Modified-Since", d);
    }
    oreq->headers = hl->v;
    oreq->nheaders = hl->n;
}

static void file_notify(cache_waiter *wt, unsigned ev)
{
    cache_file_req *r = (cache_file_req *)wt; /* waiter is its first member */
    sh_conn *c = r->ud;
    if (c->freq != r) return;
    c->freq = NULL;
    if (ev & CACHE_EV_DONE) {
        atomic_fetch_add(&sh_cache_stats(c->w->cache)->hits, 1);
        c->have_file = 1;
        c->file_fd = r->fd;
        c->file_off = r->body_off;
        r->fd = -1;
    }
    cache_file_req_release(r);
    if (!c->have_file) { /* the stored copy failed verification: ask again */
        conn_serve_release(c);
        conn_serve(c);
        return;
    }
    serve_head(c);
}

/* An OPTIONS answer lives beside the GET object under its own key. The suffix
 * comes after the path's NUL, so invalidating the path still covers it. */
static char *options_variant(char *key, size_t *keylen)
{
    static const char mark[] = "\0\x01OPTIONS";
    key = sh_realloc(key, *keylen + sizeof mark);
    memcpy(key + *keylen, mark, sizeof mark); /* with the final NUL */
    *keylen += sizeof mark - 1;
    return key;
}

void conn_serve(sh_conn *c)
{
    sh_req *r = &c->req;
    const sh_behavior_conf *b = r->behavior;
    c->waiter = (cache_waiter){0};
    c->wait_start_us = 0;
    if (!cacheable_request(c)) {
        conn_pass_start(c);
        return;
    }
    const char *path = r->origin_path ? r->origin_path : r->path;
    size_t plen = r->origin_path ? strlen(r->origin_path) : r->path_len;
    size_t keylen;
    char *key = sh_cache_key(r->host ? r->host : "", r->host_len, path, plen, r->query,
                             r->query_len, b, r->headers, r->nheaders, &keylen);
    /* compression: br, gzip and identity answers are separate objects */
    key = sh_compress_key_variant(key, &keylen, sh_compress_negotiate(r));
    if (r->method_bit == SH_M_OPTIONS) key = options_variant(key, &keylen);
    /* GET and OPTIONS start a fill on a miss; HEAD only reads what is there. */
    int get = r->method_bit == SH_M_GET || r->method_bit == SH_M_OPTIONS;
    cache_obj *o = NULL, *refresh = NULL;
    cache_lookup_rc rc = sh_cache_lookup(c->w->cache, key, keylen, time(NULL), get, &o, &refresh);
    sh_free(key);
    if (refresh) {
        /* stale-while-revalidate: one background refresh, nobody waits on it */
        origin_request oreq;
        sh_hdrlist hl = {0};
        char *pq;
        conn_origin_request(c, &oreq, &hl, &pq, 1);
        add_validators(refresh->stale, &hl, &oreq);
        c->w->stats.origin_fetches++;
        cache_fill_start(refresh, c->w, &oreq, b);
        sh_hdrlist_clear(&hl);
        sh_free(pq);
        cache_obj_unref(refresh);
    }
    if (!o) { /* HEAD miss: ask the origin, store nothing */
        conn_pass_start(c);
        return;
    }
    c->obj = o;
    c->hit = rc == CACHE_HIT || rc == CACHE_DISK;
    /* Collapsed requests log Hit, as CloudFront's do; the first logs Miss. */
    r->result_type = rc == CACHE_MISS ? "Miss" : "Hit";
    conn_set_state(c, CONN_ORIGIN);
    if (rc == CACHE_HIT) {
        serve_head(c);
        return;
    }
    if (rc == CACHE_DISK) {
        c->freq = cache_persist_open_file(cache_persist_of(c->w->cache), o, c->w, file_notify, c);
        return;
    }
    c->waiter = (cache_waiter){.worker = c->w, .notify = serve_notify};
    c->wait_start_us = sh_now_us();
    if (rc == CACHE_LOAD) {
        /* A disk hit, read back by an I/O thread; others may join it. */
        c->hit = 1;
        o->owner = &c->waiter;
        cache_waiter_attach(o, &c->waiter);
        cache_persist_load(cache_persist_of(c->w->cache), o);
        return;
    }
    if (rc == CACHE_MISS) {
        o->owner = &c->waiter;
        cache_waiter_attach(o, &c->waiter);
        origin_request oreq;
        sh_hdrlist hl = {0};
        char *pq;
        conn_origin_request(c, &oreq, &hl, &pq, 1);
        if (o->stale) add_validators(o->stale, &hl, &oreq);
        c->w->stats.origin_fetches++;
        cache_fill_start(o, c->w, &oreq, b);
        sh_hdrlist_clear(&hl);
        sh_free(pq);
        return;
    }
    unsigned ready = cache_waiter_attach(o, &c->waiter);
    if (ready) serve_notify(&c->waiter, ready);
}

void conn_serve_writable(sh_conn *c)
{
    if (c->obj && c->head_sent && !c->body_done) serve_pump(c);
}

void conn_serve_release(sh_conn *c)
{
    cache_obj *o = c->obj;
    conn_pass_release(c);
    if (c->freq) {
        cache_file_req_release(c->freq);
        c->freq = NULL;
    }
    if (c->have_file) {
        close(c->file_fd);
        c->have_file = 0;
    }
    if (!o) return;
    int owner_of_pass = o->pass && o->owner == &c->waiter;
    cache_waiter_detach(&c->waiter);
    if (owner_of_pass) cache_fill_abandon(o);
    c->obj = NULL;
    cache_obj_unref(o);
}
