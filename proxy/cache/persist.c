/*
 * The disk tier in the engine: I/O threads that write completed objects to
 * the disk store, load them back into memory on a hit (as a fill that reads
 * from disk instead of the origin, so concurrent requests collapse onto the
 * load and stream as chunks arrive), rebuild the index at start without
 * reading bodies, and persist invalidation rules.
 *
 * Every blocking file operation happens here, never on a worker's event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/cache_disk.h"
#include "shield/cache_persist.h"
#include "shield/log.h"
#include "shield/worker.h"

/* ---- metadata blob ------------------------------------------------------- */

#define META_VERSION 1

typedef struct {
    char *p;
    size_t n, cap;
} wbuf;

static void put(wbuf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = sh_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put64(wbuf *b, int64_t v)
{
    put(b, &v, sizeof(v));
}

static void putstr(wbuf *b, const char *s, size_t n)
{
    uint32_t l = (uint32_t)n;
    put(b, &l, sizeof(l));
    put(b, s, n);
}

/* The object's response and freshness, for the disk file's metadata. */
static char *meta_encode(const cache_obj *o, size_t *len)
{
    wbuf b = {0};
    uint32_t v = META_VERSION;
    put(&b, &v, sizeof(v));
    put64(&b, o->status);
    put64(&b, o->size);
    put64(&b, o->created_us);
    put64(&b, o->fresh.stored_at);
    put64(&b, o->fresh.initial_age);
    put64(&b, o->fresh.ttl);
    put64(&b, o->fresh.swr);
    put64(&b, o->fresh.sie);
    put64(&b, o->fresh.must_revalidate);
    put64(&b, o->last_modified);
    put64(&b, o->initial_age);
    putstr(&b, o->etag ? o->etag : "", o->etag ? strlen(o->etag) : 0);
    put64(&b, (int64_t)o->headers.n);
    for (size_t i = 0; i < o->headers.n; i++) {
        putstr(&b, o->headers.v[i].name, o->headers.v[i].name_len);
        putstr(&b, o->headers.v[i].value, o->headers.v[i].value_len);
    }
    *len = b.n;
    return b.p;
}

typedef struct {
    const char *p, *end;
    int bad;
} rbuf;

static int64_t get64(rbuf *r)
{
    int64_t v = 0;
    if (r->end - r->p < (ptrdiff_t)sizeof(v)) {
        r->bad = 1;
        return 0;
    }
    memcpy(&v, r->p, sizeof(v));
    r->p += sizeof(v);
    return v;
}

static const char *getstr(rbuf *r, size_t *n)
{
    uint32_t l;
    if (r->end - r->p < (ptrdiff_t)sizeof(l)) {
        r->bad = 1;
        return NULL;
    }
    memcpy(&l, r->p, sizeof(l));
    r->p += sizeof(l);
    if ((size_t)(r->end - r->p) < l) {
        r->bad = 1;
        return NULL;
    }
    const char *s = r->p;
    r->p += l;
    *n = l;
    return s;
}

/* Fill a disk-only object's response fields from a metadata blob; 0 or -1. */
static int meta_decode(cache_obj *o, const void *meta, size_t len, uint64_t body_size)
{
    rbuf r = {meta, (const char *)meta + len, 0};
    uint32_t v;
    if (len < sizeof(v)) return -1;
    memcpy(&v, r.p, sizeof(v));
    r.p += sizeof(v);
    if (v != META_VERSION) return -1;
    o->status = (int)get64(&r);
    o->size = get64(&r);
    o->created_us = get64(&r);
    o->fresh.stored_at = get64(&r);
    o->fresh.initial_age = get64(&r);
    o->fresh.ttl = get64(&r);
    o->fresh.swr = get64(&r);
    o->fresh.sie = get64(&r);
    o->fresh.must_revalidate = (int)get64(&r);
    o->last_modified = get64(&r);
    o->initial_age = get64(&r);
    size_t n = 0;
    const char *etag = getstr(&r, &n);
    if (etag && n) o->etag = sh_strndup(etag, n);
    int64_t nh = get64(&r);
    for (int64_t i = 0; !r.bad && i < nh && i < 1000; i++) {
        size_t nl = 0, vl = 0;
        const char *name = getstr(&r, &nl);
        const char *val = getstr(&r, &vl);
        if (!r.bad) sh_hdrlist_add(&o->headers, name, nl, val, vl);
    }
    if (r.bad || o->size != (int64_t)body_size || o->status < 100 || o->status > 999) return -1;
    return 0;
}

/* ---- the I/O thread pool -------------------------------------------------- */

typedef enum { JOB_PERSIST, JOB_LOAD, JOB_REMOVE, JOB_RULE, JOB_OPEN } job_kind;

typedef struct job {
    struct job *next;
    job_kind kind;
    cache_obj *o; /* PERSIST, LOAD: a reference */
    char *key;    /* REMOVE, RULE (pattern) */
    size_t keylen;
    int64_t time;
    cache_file_req *freq; /* OPEN */
} job;

struct cache_persist {
    sh_cache *cache;
    disk_store *disk;
    pthread_t threads[4]; /* fsync-bound: more threads overlap the syncs */
    size_t nthreads;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job *head, **tail;
    int stopping;
    size_t pending;
};

static void push(cache_persist *p, job *j)
{
    pthread_mutex_lock(&p->lock);
    j->next = NULL;
    *p->tail = j;
    p->tail = &j->next;
    p->pending++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Disk full or failing: say so, but at most once a minute. */
static void write_failed(cache_persist *p, cache_obj *o, const char *why)
{
    static _Atomic int64_t last;
    int64_t now = time(NULL), prev = atomic_load(&last);
    if (now - prev >= 60 && atomic_compare_exchange_strong(&last, &prev, now))
        sh_log(SH_LOG_ERROR, "cache: disk write failed (%s); objects stay in memory only", why);
    cache_disk_write_failed(p->cache, o);
}

static void do_persist(cache_persist *p, cache_obj *o)
{
    size_t mlen;
    char *meta = meta_encode(o, &mlen);
    disk_writer *w = disk_writer_begin(p->disk, o->key, o->keylen, meta, mlen);
    sh_free(meta);
    if (!w) {
        write_failed(p, o, strerror(errno));
        return;
    }
    int64_t left = o->size;
    for (size_t i = 0; i < o->nchunks && left > 0; i++) {
        size_t n = (size_t)(left < o->chunks[i]->cap ? left : o->chunks[i]->cap);
        if (disk_writer_append(w, o->chunks[i]->data, n) != 0) {
            write_failed(p, o, strerror(errno));
            disk_writer_abort(w);
            return;
        }
        left -= (int64_t)n;
    }
    unsigned char md5[16];
    int have_md5 = o->etag && cache_etag_is_plain_md5(o->etag, strlen(o->etag), md5);
    int rc = disk_writer_commit(w, o->size, have_md5 ? md5 : NULL);
    if (rc != DISK_OK) {
        write_failed(p, o, disk_rc_name(rc));
        return;
    }
    cache_disk_committed(p->cache, o);
}

/* Read a disk-only object's body into the FILLING object o, publishing bytes
 * as they arrive; verify the whole file first so nothing unverified is sent. */
static void do_load(cache_persist *p, cache_obj *o)
{
    disk_entry *e = NULL;
    int rc = disk_open_entry(p->disk, o->key, o->keylen, &e);
    if (rc == DISK_OK) rc = disk_entry_verify(e);
    if (rc != DISK_OK) {
        sh_log(SH_LOG_WARN, "cache: disk object dropped: %s", disk_rc_name(rc));
        if (e) disk_entry_close(e);
        if (rc != DISK_ERR_NOTFOUND && rc != DISK_ERR_CORRUPT)
            disk_remove(p->disk, o->key, o->keylen);
        cache_load_failed(o);
        return;
    }
    cache_load_head(o);
    for (size_t i = 0; i < o->nchunks; i++) {
        int64_t off = (int64_t)i * CACHE_CHUNK_SIZE;
        uint32_t cap =
            (uint32_t)(o->size - off < CACHE_CHUNK_SIZE ? o->size - off : CACHE_CHUNK_SIZE);
        cache_chunk *ch = cache_chunk_new(cap);
        ssize_t got = disk_read_body(e, (uint64_t)off, ch->data, cap);
        if (got != (ssize_t)cap) {
            sh_free(ch);
            disk_entry_close(e);
            disk_remove(p->disk, o->key, o->keylen);
            cache_load_failed(o);
            return;
        }
        cache_load_chunk(o, i, ch);
    }
    disk_entry_close(e);
    cache_load_done(o);
}

static void file_req_unref(cache_file_req *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1) return;
    if (r->fd >= 0) close(r->fd);
    cache_obj_unref(r->o);
    pthread_mutex_destroy(&r->lock);
    sh_free(r);
}

static void do_open(cache_persist *p, cache_file_req *r)
{
    disk_entry *e = NULL;
    int rc = disk_open_entry(p->disk, r->o->key, r->o->keylen, &e);
    if (rc == DISK_OK && !cache_disk_verified(p->cache, r->o, 0)) {
        rc = disk_entry_verify(e);
        if (rc == DISK_OK) cache_disk_verified(p->cache, r->o, 1);
    }
    if (rc == DISK_OK) {
        int fd = disk_entry_fd(e, &r->body_off);
        r->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
        if (r->fd < 0) rc = DISK_ERR_IO;
    }
    if (e) disk_entry_close(e);
    if (rc != DISK_OK) {
        sh_log(SH_LOG_WARN, "cache: disk object dropped: %s", disk_rc_name(rc));
        if (rc != DISK_ERR_NOTFOUND && rc != DISK_ERR_CORRUPT)
            disk_remove(p->disk, r->o->key, r->o->keylen);
        cache_disk_lost(p->cache, r->o);
    }
    pthread_mutex_lock(&r->lock);
    if (!r->cancelled)
        sh_worker_wake(r->waiter.worker, &r->waiter, rc == DISK_OK ? CACHE_EV_DONE : CACHE_EV_FAIL);
    pthread_mutex_unlock(&r->lock);
}

static void *io_main(void *arg)
{
    cache_persist *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cond, &p->lock);
        job *j = p->head;
        if (!j) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        p->head = j->next;
        if (!p->head) p->tail = &p->head;
        pthread_mutex_unlock(&p->lock);

        switch (j->kind) {
        case JOB_PERSIST:
            do_persist(p, j->o);
            break;
        case JOB_LOAD:
            do_load(p, j->o);
            break;
        case JOB_REMOVE:
            disk_remove(p->disk, j->key, j->keylen);
            break;
        case JOB_RULE:
            break;
        case JOB_OPEN:
            do_open(p, j->freq);
            file_req_unref(j->freq);
            break;
        }
        if (j->o) cache_obj_unref(j->o);
        sh_free(j->key);
        sh_free(j);
        pthread_mutex_lock(&p->lock);
        p->pending--;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
}

typedef struct {
    sh_cache *cache;
    uint64_t kept;
} scan_ctx;

static void scan_cb(void *ud, const void *key, size_t keylen, const disk_info *info)
{
    scan_ctx *sc = ud;
    cache_obj *o = cache_obj_new_disk(sc->cache, key, keylen);
    if (meta_decode(o, info->meta, info->meta_len, info->body_size) != 0) {
        cache_obj_unref(o);
        return;
    }
    cache_disk_restored(sc->cache, o, info->footprint);
    cache_obj_unref(o);
    __atomic_fetch_add(&sc->kept, 1, __ATOMIC_RELAXED);
}

static void rule_cb(void *ud, const char *pattern, int64_t time_us)
{
    cache_rule_restore(ud, pattern, time_us);
}

cache_persist *cache_persist_open(sh_cache *c, const char *dir, uint64_t max_bytes, char *err,
                                  size_t errlen)
{
    disk_store *d = disk_open(dir, max_bytes, err, errlen);
    if (!d) return NULL;
    cache_persist *p = sh_calloc(1, sizeof(*p));
    p->cache = c;
    p->disk = d;
    p->tail = &p->head;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);

    /* Known to the engine before the scan: restoring may already evict
     * (queued removals run once the threads start). */
    cache_set_persist(c, p);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t bad = 0;
    disk_rules_load(d, rule_cb, c, &bad);
    scan_ctx sc = {c, 0};
    disk_scan_stats st = {0};
    disk_scan(d, 4, scan_cb, &sc, &st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    sh_log(SH_LOG_INFO,
           "cache: disk %s: %llu objects restored in %.3f s (%llu corrupt, %llu temp, %llu "
           "stray files dropped)",
           dir, (unsigned long long)sc.kept,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
           (unsigned long long)st.dropped_corrupt, (unsigned long long)st.dropped_temp,
           (unsigned long long)st.dropped_stray);

    p->nthreads = sizeof(p->threads) / sizeof(p->threads[0]);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_create(&p->threads[i], NULL, io_main, p);
    return p;
}

void cache_persist_close(cache_persist *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    /* Queued writes finish: a clean stop keeps what was cached. */
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    disk_close(p->disk);
    sh_free(p);
}

static job *job_new(job_kind k, cache_obj *o)
{
    job *j = sh_calloc(1, sizeof(*j));
    j->kind = k;
    if (o) {
        cache_obj_ref(o);
        j->o = o;
    }
    return j;
}

void cache_persist_write(cache_persist *p, cache_obj *o)
{
    push(p, job_new(JOB_PERSIST, o));
}

void cache_persist_load(cache_persist *p, cache_obj *o)
{
    push(p, job_new(JOB_LOAD, o));
}

void cache_persist_remove(cache_persist *p, const char *key, size_t keylen)
{
    job *j = job_new(JOB_REMOVE, NULL);
    j->key = sh_malloc(keylen);
    memcpy(j->key, key, keylen);
    j->keylen = keylen;
    push(p, j);
}

int cache_persist_rule_sync(cache_persist *p, const char *pattern, int64_t time_us)
{
    return disk_rules_append(p->disk, pattern, time_us) == DISK_OK ? 0 : -1;
}

cache_file_req *cache_persist_open_file(cache_persist *p, cache_obj *o, struct sh_worker *w,
                                        void (*notify)(cache_waiter *, unsigned), void *ud)
{
    cache_file_req *r = sh_calloc(1, sizeof(*r));
    r->waiter.worker = w;
    r->waiter.notify = notify;
    r->ud = ud;
    pthread_mutex_init(&r->lock, NULL);
    atomic_init(&r->refs, 2); /* the requester's and the job's */
    cache_obj_ref(o);
    r->o = o;
    r->fd = -1;
    job *j = job_new(JOB_OPEN, NULL);
    j->freq = r;
    push(p, j);
    return r;
}

void cache_file_req_release(cache_file_req *r)
{
    pthread_mutex_lock(&r->lock);
    r->cancelled = 1;
    pthread_mutex_unlock(&r->lock);
    /* A wake-up queued before the cancel must not be delivered after it. */
    sh_worker_unwake(r->waiter.worker, &r->waiter);
    file_req_unref(r);
}

uint64_t cache_persist_used(cache_persist *p)
{
    return disk_used(p->disk);
}

size_t cache_persist_pending(cache_persist *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->pending;
    pthread_mutex_unlock(&p->lock);
    return n;
}
