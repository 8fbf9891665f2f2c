/*
 * Fills: one origin fetch feeding an object that any number of requests read
 * as the bytes arrive. The fetch runs on the worker that created the object
 * and belongs to the fill, not to a viewer, so a storable object is completed
 * even when every viewer has gone.
 *
 * Verification before an object is published as COMPLETE: the length must
 * match Content-Length (curl already fails a short body) and, when the ETag
 * is a plain MD5 (S3 single-part objects), the MD5 of the bytes.
 *
 * Compression (shield/compress.h): an object whose key is a gzip/br variant
 * and whose response is compressible is filled with the compressed stream,
 * compressed piece by piece as the origin's bytes arrive. Its size is unknown
 * until the end, so the filling object keeps size -1 (its readers frame the
 * body as chunked) and, once complete, the index gets a copy that knows its
 * size (publish_compressed). The checks above apply to the origin's bytes.
 */
#include <openssl/evp.h>
#include <string.h>
#include <time.h>

#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/cache_persist.h"
#include "shield/compress.h"
#include "shield/forward.h"
#include "shield/log.h"
#include "shield/module.h"
#include "shield/worker.h"

/* A pass object's reader may lag this far behind the origin before the fetch
 * pauses: bounded memory for uncacheable and oversized responses. */
#define PASS_WINDOW (2 * (int64_t)CACHE_CHUNK_SIZE)

typedef struct cache_fill {
    struct cache_fill *next, *prev; /* in the worker's list */
    cache_obj *o;
    sh_worker *w;
    origin_fetch *fetch;
    const sh_behavior_conf *b;
    int storable;
    EVP_MD_CTX *md5;
    unsigned char want_md5[16];
    int paused;
    int64_t consumed;
    size_t released;
    size_t chunks_cap;
    int64_t wr;      /* body bytes written to the object (published as avail) */
    int64_t out_cap; /* bytes the chunk slots of a storable object may hold */
    /* compression: the key's variant, and the stream when the response is compressed */
    sh_encoding enc;
    sh_compressor *z;
    int64_t in_size, in_got; /* the origin's Content-Length and body bytes received */
} cache_fill;

static void fill_free(cache_fill *f)
{
    sh_worker *w = f->w;
    if (f->prev)
        f->prev->next = f->next;
    else
        w->fills = f->next;
    if (f->next) f->next->prev = f->prev;
    w->nfills--;
    if (f->md5) EVP_MD_CTX_free(f->md5);
    sh_compressor_free(f->z);
    f->o->fill = NULL;
    cache_obj_unref(f->o);
    sh_free(f);
    sh_worker_fill_done(w);
}

static void fill_fail(cache_fill *f, cache_fail why)
{
    cache_obj *o = f->o;
    /* CloudFront serves an expired object when its refresh fails, unless the
     * origin forbade it (must-revalidate, no-cache, stale-if-error window). */
    if (o->stale && !o->head_ready && why != CACHE_FAIL_ORIGIN_READ &&
        cache_stale_if_error_ok(&o->stale->fresh, time(NULL))) {
        o->use_stale = 1;
        cache_index_restore(o, o->stale);
    } else {
        cache_index_remove(o);
    }
    pthread_mutex_lock(&o->lock);
    o->fail = why;
    atomic_store(&o->state, CACHE_OBJ_FAILED);
    cache_wake_all_locked(o, CACHE_EV_FAIL);
    pthread_mutex_unlock(&o->lock);
}

/*
 * A 304 for a variant Shield compressed carries the identity response's
 * metadata (a strong ETag, maybe Vary or Accept-Ranges): the stored head must
 * go on describing the compressed bytes. Shield's own rewrite left a weak or
 * no ETag; a strong one means the origin encoded the body itself.
 */
static void keep_compressed_head(const cache_fill *f, const cache_obj *s, cache_obj *o)
{
    if (f->enc == SH_ENC_IDENTITY) return;
    const sh_header *ce = sh_hdrlist_get(&s->headers, "Content-Encoding");
    const sh_header *et = sh_hdrlist_get(&s->headers, "ETag");
    if (!ce || !sh_hdr_is(ce->value, ce->value_len, sh_encoding_name(f->enc))) return;
    if (et && !(et->value_len >= 2 && et->value[0] == 'W' && et->value[1] == '/')) return;
    sh_compress_apply_headers(&o->headers, f->enc);
}

/*
 * The origin answered a revalidation with 304: the new object is the stale
 * one's bytes (shared chunks) with the headers the 304 carried merged in —
 * never its Content-Length — and a fresh lifetime.
 */
static void refresh_from_stale(cache_fill *f, const sh_header *h, size_t n, int64_t now)
{
    cache_obj *o = f->o, *s = o->stale;
    sh_req fake = {.behavior = f->b};
    sh_resp upd = {0};
    sh_forward_response_headers(&fake, h, n, &upd);
    o->status = s->status;
    o->size = s->size;
    for (size_t i = 0; i < s->headers.n; i++)
        sh_hdrlist_add(&o->headers, s->headers.v[i].name, s->headers.v[i].name_len,
                       s->headers.v[i].value, s->headers.v[i].value_len);
    for (size_t i = 0; i < upd.headers.n; i++) {
        const sh_header *u = &upd.headers.v[i];
        char name[128];
        if (u->name_len >= sizeof(name)) continue;
        memcpy(name, u->name, u->name_len);
        name[u->name_len] = '\0';
        sh_hdrlist_del(&o->headers, name);
    }
    for (size_t i = 0; i < upd.headers.n; i++)
        sh_hdrlist_add(&o->headers, upd.headers.v[i].name, upd.headers.v[i].name_len,
                       upd.headers.v[i].value, upd.headers.v[i].value_len);
    sh_hdrlist_clear(&upd.headers);
    keep_compressed_head(f, s, o);

    cache_policy pol;
    cache_policy_eval(f->b, s->status, o->headers.v, o->headers.n, 0, now, &pol);
    o->etag = pol.etag ? sh_strndup(pol.etag, pol.etag_len) : NULL;
    o->last_modified = pol.last_modified;
    o->initial_age = pol.initial_age;
    cache_fresh_info_init(&o->fresh, &pol, now);
    o->nchunks = s->nchunks;
    o->chunks = sh_calloc(o->nchunks ? o->nchunks : 1, sizeof(*o->chunks));
    for (size_t i = 0; i < o->nchunks; i++) {
        o->chunks[i] = s->chunks[i];
        cache_chunk_ref(o->chunks[i]);
    }
    atomic_store_explicit(&o->avail, s->size, memory_order_release);
    o->refreshed = 1;
    f->storable = 1;
    if (!pol.cacheable || cache_mem_admit(o) != 0) cache_index_remove(o);
    atomic_fetch_add(&sh_cache_stats(o->cache)->refresh_hits, 1);
    pthread_mutex_lock(&o->lock);
    o->head_ready = 1;
    atomic_store(&o->state, CACHE_OBJ_COMPLETE);
    cache_wake_all_locked(o, CACHE_EV_HEAD | CACHE_EV_DATA | CACHE_EV_DONE);
    pthread_mutex_unlock(&o->lock);
}

static void on_response(void *ud, int status, const sh_header *h, size_t n)
{
    cache_fill *f = ud;
    cache_obj *o = f->o;
    const sh_config *cfg = cache_config(o->cache);
    int64_t now = time(NULL);
    sh_req fake = {.behavior = f->b};
    sh_resp resp = {0};

    f->enc = sh_compress_key_encoding(o->key, o->keylen);
    if (o->stale && status == 304) {
        refresh_from_stale(f, h, n, now);
        return;
    }
    if (o->stale && status >= 500 && cache_stale_if_error_ok(&o->stale->fresh, now)) {
        /* A 5xx on refresh: keep serving the version we have. */
        origin_fetch_cancel(f->fetch);
        f->fetch = NULL;
        fill_fail(f, CACHE_FAIL_ORIGIN_OTHER);
        fill_free(f);
        return;
    }

    sh_forward_response_headers(&fake, h, n, &resp);
    cache_policy pol;
    cache_policy_eval(f->b, status, h, n, 0, now, &pol);
    if (f->enc != SH_ENC_IDENTITY &&
        sh_compress_response_ok(status, &resp.headers, resp.content_length))
        f->z = sh_compressor_new(f->enc, resp.content_length);
    if (f->z) {
        sh_compress_apply_headers(&resp.headers, f->enc);
        f->in_size = resp.content_length;
        resp.content_length = -1;
    }
    o->status = status;
    o->headers = resp.headers;
    o->size = resp.content_length;
    if (f->z) { /* the rewritten (weak) tag describes the compressed bytes */
        const sh_header *et = sh_hdrlist_get(&o->headers, "ETag");
        o->etag = et ? sh_strndup(et->value, et->value_len) : NULL;
    } else if (pol.etag) {
        o->etag = sh_strndup(pol.etag, pol.etag_len);
    }
    o->last_modified = pol.last_modified;
    o->initial_age = pol.initial_age;
    cache_fresh_info_init(&o->fresh, &pol, now);

    int64_t body = f->z ? f->in_size : o->size;
    f->storable = pol.cacheable && !pol.vary_unforwarded && body >= 0 &&
                  (uint64_t)body <= cfg->cache.max_object_size;
    if (f->storable && f->z) {
        /* Slots for the worst case; the memory tier is charged with the real
         * size once it is known (publish_compressed). */
        f->out_cap = (int64_t)sh_compress_bound(f->enc, (uint64_t)f->in_size);
        o->nchunks = (size_t)((f->out_cap + CACHE_CHUNK_SIZE - 1) / CACHE_CHUNK_SIZE);
        o->chunks = sh_calloc(o->nchunks, sizeof(*o->chunks));
    } else if (f->storable) {
        f->out_cap = o->size;
        o->nchunks = (size_t)((o->size + CACHE_CHUNK_SIZE - 1) / CACHE_CHUNK_SIZE);
        o->chunks = sh_calloc(o->nchunks ? o->nchunks : 1, sizeof(*o->chunks));
        /* Too big for memory can still be stored on disk: memory is lent to
         * it until the write commits (cache_disk_committed). */
        if (cache_mem_admit(o) != 0 && !cache_persist_of(o->cache)) f->storable = 0;
    }
    if (!f->storable) {
        o->pass = 1;
        cache_index_remove(o);
        sh_free(o->chunks);
        o->nchunks = 0;
        f->chunks_cap = 4;
        o->chunks = sh_calloc(f->chunks_cap, sizeof(*o->chunks));
        atomic_fetch_add(&sh_cache_stats(o->cache)->passes, 1);
    } else if (pol.etag && cache_etag_is_plain_md5(pol.etag, pol.etag_len, f->want_md5)) {
        /* The origin's tag is the MD5 of the bytes it sends, compressed or not here. */
        f->md5 = EVP_MD_CTX_new();
        EVP_DigestInit_ex(f->md5, EVP_md5(), NULL);
    }

    pthread_mutex_lock(&o->lock);
    o->head_ready = 1;
    for (cache_waiter *wt = o->waiters, *next; wt; wt = next) {
        next = wt->next;
        if (o->pass && wt != o->owner) {
            /* Not shared: this viewer fetches on its own. */
            cache_waiter_unlink_locked(o, wt);
            cache_wake(wt, CACHE_EV_RESTART);
        } else {
            cache_wake(wt, CACHE_EV_HEAD);
        }
    }
    int orphan = o->pass && !o->owner;
    pthread_mutex_unlock(&o->lock);
    if (orphan) {
        /* Nobody to read an unstorable answer: stop fetching it. */
        origin_fetch_cancel(f->fetch);
        f->fetch = NULL;
        fill_fail(f, CACHE_FAIL_ORIGIN_OTHER);
        fill_free(f);
    }
}

/* Append body bytes at f->wr, allocating chunks as needed. -1 if a storable
 * object's slots are full (a compressor exceeding its bound: a bug, never UB). */
static int fill_append(cache_fill *f, const char *data, size_t len)
{
    cache_obj *o = f->o;
    while (len) {
        if (!o->pass && f->wr >= f->out_cap) return -1;
        size_t idx = (size_t)(f->wr / CACHE_CHUNK_SIZE);
        size_t off = (size_t)(f->wr % CACHE_CHUNK_SIZE);
        if (o->pass && idx >= f->chunks_cap) {
            /* Only this worker reads a pass object, so growing is safe. */
            size_t cap = f->chunks_cap * 2;
            while (cap <= idx)
                cap *= 2;
            o->chunks = sh_realloc(o->chunks, cap * sizeof(*o->chunks));
            memset(o->chunks + f->chunks_cap, 0, (cap - f->chunks_cap) * sizeof(*o->chunks));
            f->chunks_cap = cap;
        }
        if (!o->chunks[idx]) {
            uint32_t cap = CACHE_CHUNK_SIZE;
            if (!o->pass && f->out_cap - (int64_t)idx * CACHE_CHUNK_SIZE < CACHE_CHUNK_SIZE)
                cap = (uint32_t)(f->out_cap - (int64_t)idx * CACHE_CHUNK_SIZE);
            o->chunks[idx] = o->pass ? cache_chunk_new(cap) : cache_chunk_new_shared(cap);
            if (o->pass && idx + 1 > o->nchunks) o->nchunks = idx + 1;
        }
        size_t n = o->chunks[idx]->cap - off;
        if (n > len) n = len;
        memcpy(o->chunks[idx]->data + off, data, n);
        data += n;
        len -= n;
        f->wr += (int64_t)n;
    }
    return 0;
}

static int fill_sink(void *ud, const char *data, size_t len)
{
    return fill_append(ud, data, len);
}

/* Make the bytes written so far readable and tell the readers. */
static void fill_publish(cache_fill *f)
{
    cache_obj *o = f->o;
    if (atomic_load_explicit(&o->avail, memory_order_relaxed) == f->wr) return;
    atomic_store_explicit(&o->avail, f->wr, memory_order_release);
    pthread_mutex_lock(&o->lock);
    cache_wake_all_locked(o, CACHE_EV_DATA);
    pthread_mutex_unlock(&o->lock);
}

/* The compressor failed (or outgrew its bound): readers that have the head are
 * aborted like on an origin read error, and nothing is stored. */
static int fill_broken(cache_fill *f)
{
    sh_log(SH_LOG_ERROR, "fill: %s compression failed: not stored", sh_encoding_name(f->enc));
    origin_fetch_cancel(f->fetch);
    f->fetch = NULL;
    fill_fail(f, CACHE_FAIL_ORIGIN_READ);
    fill_free(f);
    return ORIGIN_BODY_OK;
}

static int on_body(void *ud, const char *data, size_t len)
{
    cache_fill *f = ud;
    cache_obj *o = f->o;
    if (o->refreshed) return ORIGIN_BODY_OK; /* a 304 has no body */

    if (o->pass && f->wr - f->consumed >= PASS_WINDOW) {
        f->paused = 1;
        return ORIGIN_BODY_PAUSE;
    }
    int64_t want = f->z ? f->in_size : o->size;
    if (!o->pass && f->in_got + (int64_t)len > want)
        len = (size_t)(want - f->in_got); /* never past Content-Length */
    if (f->md5) EVP_DigestUpdate(f->md5, data, len);
    f->in_got += (int64_t)len;
    atomic_fetch_add_explicit(&sh_cache_stats(o->cache)->bytes_from_origin, len,
                              memory_order_relaxed);
    int rc = f->z ? sh_compressor_feed(f->z, data, len, fill_sink, f) : fill_append(f, data, len);
    if (rc != 0) return fill_broken(f);
    fill_publish(f);
    return ORIGIN_BODY_OK;
}

static cache_fail fail_of(origin_result r, int head)
{
    if (head) return CACHE_FAIL_ORIGIN_READ;
    switch (r) {
    case ORIGIN_ERR_TIMEOUT:
        return CACHE_FAIL_ORIGIN_TIMEOUT;
    case ORIGIN_ERR_CONNECT:
    case ORIGIN_ERR_DNS:
        return CACHE_FAIL_ORIGIN_CONNECT;
    default:
        return CACHE_FAIL_ORIGIN_OTHER;
    }
}

/*
 * A compressed fill is complete: its object keeps size -1, because readers on
 * other workers find the end of the body by that while it fills. The index
 * gets a copy that knows its size instead — the same chunks, the last one
 * trimmed to what was used — charged to the memory tier now and written to the
 * disk tier like any other object.
 */
static void publish_compressed(cache_fill *f)
{
    cache_obj *o = f->o;
    sh_cache *c = o->cache;
    if (!o->in_index || f->wr <= 0) return;
    /* cache_obj_new_disk is the engine's constructor for a COMPLETE object;
     * this one has its body in memory, not on disk. */
    cache_obj *n = cache_obj_new_disk(c, o->key, o->keylen);
    atomic_store(&n->on_disk, 0);
    n->disk_only = 0;
    n->created_us = o->created_us; /* invalidations order against the fill's start */
    n->status = o->status;
    for (size_t i = 0; i < o->headers.n; i++)
        sh_hdrlist_add(&n->headers, o->headers.v[i].name, o->headers.v[i].name_len,
                       o->headers.v[i].value, o->headers.v[i].value_len);
    n->size = f->wr;
    n->etag = sh_strdup(o->etag);
    n->last_modified = o->last_modified;
    n->fresh = o->fresh;
    n->initial_age = o->initial_age;
    n->nchunks = (size_t)((n->size + CACHE_CHUNK_SIZE - 1) / CACHE_CHUNK_SIZE);
    n->chunks = sh_calloc(n->nchunks, sizeof(*n->chunks));
    for (size_t i = 0; i < n->nchunks; i++) {
        cache_chunk *ch = o->chunks[i];
        uint32_t used = i + 1 < n->nchunks ? CACHE_CHUNK_SIZE
                                           : (uint32_t)(n->size - (int64_t)i * CACHE_CHUNK_SIZE);
        if (ch->cap == used) {
            cache_chunk_ref(ch);
            n->chunks[i] = ch;
        } else {
            n->chunks[i] = cache_chunk_new_shared(used);
            memcpy(n->chunks[i]->data, ch->data, used);
        }
    }
    atomic_store(&n->avail, n->size);
    n->head_ready = 1;
    cache_index_restore(o, n); /* in o's place, if o still holds the key */
    if (n->in_index && cache_persist_of(c)) cache_persist_write(cache_persist_of(c), n);
    cache_obj_unref(n);
}

static void on_done(void *ud, origin_result r, const char *detail)
{
    cache_fill *f = ud;
    cache_obj *o = f->o;
    f->fetch = NULL;
    if (o->refreshed) { /* complete since the 304 */
        cache_obj_drop_stale(o);
        fill_free(f);
        return;
    }
    if (r == ORIGIN_OK && !o->pass) {
        int64_t want = f->z ? f->in_size : o->size;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        if (f->in_got != want) {
            sh_log(SH_LOG_WARN, "fill: body %lld bytes, Content-Length %lld: not stored",
                   (long long)f->in_got, (long long)want);
            r = ORIGIN_ERR_READ;
        } else if (f->md5 && (!EVP_DigestFinal_ex(f->md5, md, &mdlen) || mdlen != 16 ||
                              memcmp(md, f->want_md5, 16) != 0)) {
            sh_log(SH_LOG_WARN, "fill: body MD5 does not match ETag %s: not stored", o->etag);
            r = ORIGIN_ERR_READ;
        }
    }
    if (r == ORIGIN_OK && f->z) {
        if (sh_compressor_finish(f->z, fill_sink, f) != 0) {
            sh_log(SH_LOG_ERROR, "fill: %s compression failed: not stored",
                   sh_encoding_name(f->enc));
            r = ORIGIN_ERR_READ;
        } else {
            fill_publish(f);
            /* Before COMPLETE: a lookup never finds the size-less object complete. */
            if (!o->pass) publish_compressed(f);
        }
    }
    if (r == ORIGIN_OK) {
        pthread_mutex_lock(&o->lock);
        atomic_store(&o->state, CACHE_OBJ_COMPLETE);
        cache_wake_all_locked(o, CACHE_EV_DONE);
        pthread_mutex_unlock(&o->lock);
        cache_obj_drop_stale(o);
    }
    if (r == ORIGIN_OK && !f->z) {
        if (atomic_exchange(&o->evicted_while_filling, 0) && o->in_index &&
            cache_mem_admit(o) != 0 && !cache_persist_of(o->cache))
            cache_index_remove(o);
        /* Verified and complete: now it may go to the disk tier. */
        if (!o->pass && o->in_index && cache_persist_of(o->cache))
            cache_persist_write(cache_persist_of(o->cache), o);
    } else if (r != ORIGIN_OK) {
        if (r != ORIGIN_ERR_READ || !o->head_ready)
            sh_log(SH_LOG_WARN, "fill: origin %s: %s", origin_result_name(r), detail ? detail : "");
        fill_fail(f, fail_of(r, o->head_ready));
    }
    fill_free(f);
}

static const origin_callbacks fill_cbs = {on_response, on_body, on_done};

void cache_fill_start(cache_obj *o, sh_worker *w, const origin_request *oreq,
                      const sh_behavior_conf *behavior)
{
    cache_fill *f = sh_calloc(1, sizeof(*f));
    cache_obj_ref(o);
    f->o = o;
    f->w = w;
    f->b = behavior;
    o->fill = f;
    f->next = w->fills;
    if (w->fills) w->fills->prev = f;
    w->fills = f;
    w->nfills++;
    atomic_fetch_add(&sh_cache_stats(o->cache)->origin_fetches, 1);
    f->fetch = origin_fetch_start(w->origin, oreq, &fill_cbs, f);
    if (!f->fetch) {
        fill_fail(f, CACHE_FAIL_ORIGIN_OTHER);
        fill_free(f);
    }
}

void cache_fill_consumed(cache_obj *o, int64_t off)
{
    cache_fill *f = o->fill;
    if (!o->pass) return;
    /* Chunks wholly behind the only reader are no longer needed. */
    size_t upto = (size_t)(off / CACHE_CHUNK_SIZE);
    for (size_t i = f ? f->released : 0; f && i < upto && i < o->nchunks; i++) {
        cache_chunk_unref(o->chunks[i]);
        o->chunks[i] = NULL;
        f->released = i + 1;
    }
    if (!f) return;
    f->consumed = off;
    if (f->paused && f->fetch && atomic_load(&o->avail) - off < PASS_WINDOW / 2) {
        f->paused = 0;
        origin_fetch_resume(f->fetch);
    }
}

void cache_fill_abandon(cache_obj *o)
{
    cache_fill *f = o->fill;
    if (!f || !o->pass) return;
    if (f->fetch) origin_fetch_cancel(f->fetch);
    f->fetch = NULL;
    fill_fail(f, CACHE_FAIL_ORIGIN_OTHER);
    fill_free(f);
}

void cache_fills_shutdown(sh_worker *w)
{
    while (w->fills) {
        cache_fill *f = w->fills;
        if (f->fetch) origin_fetch_cancel(f->fetch);
        f->fetch = NULL;
        fill_fail(f, CACHE_FAIL_ORIGIN_OTHER);
        fill_free(f);
    }
}
