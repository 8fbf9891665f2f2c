/*
 * Fills: one origin fetch feeding an object that any number of requests read
 * as the bytes arrive. The fetch runs on the worker that created the object
 * and belongs to the fill, not to a viewer, so a storable object is completed
 * even when every viewer has gone.
 *
 * Verification before an object is published as COMPLETE: the length must
 * match Content-Length (curl already fails a short body) and, when the ETag
 * is a plain MD5 (S3 single-part objects), the MD5 of the bytes.
 */
#include <openssl/evp.h>
#include <string.h>
#include <time.h>

#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/cache_persist.h"
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
    o->status = status;
    o->headers = resp.headers;
    o->size = resp.content_length;
    if (pol.etag) {
        o->etag = sh_strndup(pol.etag, pol.etag_len);
    }
    o->last_modified = pol.last_modified;
    o->initial_age = pol.initial_age;
    cache_fresh_info_init(&o->fresh, &pol, now);

    f->storable = pol.cacheable && !pol.vary_unforwarded && o->size >= 0 &&
                  (uint64_t)o->size <= cfg->cache.max_object_size;
    if (f->storable) {
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
    } else if (o->etag && cache_etag_is_plain_md5(o->etag, strlen(o->etag), f->want_md5)) {
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

static int on_body(void *ud, const char *data, size_t len)
{
    cache_fill *f = ud;
    cache_obj *o = f->o;
    int64_t avail = atomic_load_explicit(&o->avail, memory_order_relaxed);
    if (o->refreshed) return ORIGIN_BODY_OK; /* a 304 has no body */

    if (o->pass && avail - f->consumed >= PASS_WINDOW) {
        f->paused = 1;
        return ORIGIN_BODY_PAUSE;
    }
    if (!o->pass && avail + (int64_t)len > o->size)
        len = (size_t)(o->size - avail); /* never past Content-Length */
    if (f->md5) EVP_DigestUpdate(f->md5, data, len);
    while (len) {
        size_t idx = (size_t)(avail / CACHE_CHUNK_SIZE);
        size_t off = (size_t)(avail % CACHE_CHUNK_SIZE);
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
            if (!o->pass && o->size - (int64_t)idx * CACHE_CHUNK_SIZE < CACHE_CHUNK_SIZE)
                cap = (uint32_t)(o->size - (int64_t)idx * CACHE_CHUNK_SIZE);
            o->chunks[idx] = cache_chunk_new(cap);
            if (o->pass && idx + 1 > o->nchunks) o->nchunks = idx + 1;
        }
        size_t n = o->chunks[idx]->cap - off;
        if (n > len) n = len;
        memcpy(o->chunks[idx]->data + off, data, n);
        data += n;
        len -= n;
        avail += (int64_t)n;
        atomic_fetch_add_explicit(&sh_cache_stats(o->cache)->bytes_from_origin, n,
                                  memory_order_relaxed);
    }
    atomic_store_explicit(&o->avail, avail, memory_order_release);
    pthread_mutex_lock(&o->lock);
    cache_wake_all_locked(o, CACHE_EV_DATA);
    pthread_mutex_unlock(&o->lock);
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
        int64_t avail = atomic_load(&o->avail);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        if (avail != o->size) {
            sh_log(SH_LOG_WARN, "fill: body %lld bytes, Content-Length %lld: not stored",
                   (long long)avail, (long long)o->size);
            r = ORIGIN_ERR_READ;
        } else if (f->md5 && (!EVP_DigestFinal_ex(f->md5, md, &mdlen) || mdlen != 16 ||
                              memcmp(md, f->want_md5, 16) != 0)) {
            sh_log(SH_LOG_WARN, "fill: body MD5 does not match ETag %s: not stored", o->etag);
            r = ORIGIN_ERR_READ;
        }
    }
    if (r == ORIGIN_OK) {
        pthread_mutex_lock(&o->lock);
        atomic_store(&o->state, CACHE_OBJ_COMPLETE);
        cache_wake_all_locked(o, CACHE_EV_DONE);
        pthread_mutex_unlock(&o->lock);
        cache_obj_drop_stale(o);
        if (atomic_exchange(&o->evicted_while_filling, 0) && o->in_index &&
            cache_mem_admit(o) != 0 && !cache_persist_of(o->cache))
            cache_index_remove(o);
        /* Verified and complete: now it may go to the disk tier. */
        if (!o->pass && o->in_index && cache_persist_of(o->cache))
            cache_persist_write(cache_persist_of(o->cache), o);
    } else {
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
