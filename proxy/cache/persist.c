/*
 * The disk tier in the engine: I/O threads that write completed objects to
 * the disk store, load them back into memory on a hit (as a fill that reads
 * from disk instead of the origin, so concurrent requests collapse onto the
 * load and stream as chunks arrive), rebuild the index at start without
 * reading bodies, and persist invalidation rules.
 *
 * Every blocking file operation happens here, never on a worker's event loop.
 *
 * Start-up: the rule log is replayed before anything is served (a forgotten
 * invalidation would serve withdrawn content), then the index is rebuilt by a
 * scan thread while Shield already serves. A lookup that misses the index for
 * a key whose fan-out leaf is not scanned yet becomes a probe (see
 * cache_persist_probe): an I/O thread opens the key's file directly (its name
 * is the key's hash), restores that one entry into the index and sends the
 * requests back to the lookup, which then applies freshness and invalidation
 * as for any restored entry; a probe that finds nothing is remembered, so the
 * next lookup goes to the origin. The scan's per-leaf lock (disk_scan) keeps
 * it from indexing a file replaced meanwhile, and every open checks that the
 * file still holds the indexed version (created_us), so a stale entry can
 * cost a second lookup, never wrong bytes.
 *
 * Writes are group-committed: I/O threads write and finish temp files, one
 * committer thread publishes whatever has accumulated (up to BATCH_MAX
 * objects / BATCH_BYTES) with one set of syncs (disk_commit_batch). It never
 * waits for a batch to fill: a lone object is committed at once, and under
 * load the objects written during one batch's syncs form the next.
 */
#include <errno.h>
#include <stdlib.h>
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

/* created_us of the object a metadata blob describes (identity of a stored version). */
static int meta_created(const void *meta, size_t len, int64_t *created)
{
    const size_t at = sizeof(uint32_t) + 2 * sizeof(int64_t);
    if (len < at + sizeof(int64_t)) return -1;
    memcpy(created, (const char *)meta + at, sizeof(*created));
    return 0;
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

/* Group commit bounds: objects and bytes per batch, and finished writers
 * waiting (each holds a descriptor) before I/O threads wait for the committer. */
#define BATCH_MAX   64
#define BATCH_BYTES (64u << 20)
#define COMMIT_QMAX 256

typedef struct pend {
    struct pend *next;
    disk_writer *w;
    cache_obj *o; /* a reference */
    uint64_t bytes;
    int reserved; /* cache_disk_reserve's answer */
} pend;

/* Keys whose probe found no file, while the scan runs (64-bit hashes; a
 * collision only turns a probe into an origin fetch). */
typedef struct {
    uint64_t *v;
    size_t n, cap; /* open addressing, cap a power of two; 0 is empty */
} keyset;

struct cache_persist {
    sh_cache *cache;
    disk_store *disk;
    char *dir;
    pthread_t threads[4]; /* writes and loads overlap their I/O */
    size_t nthreads;
    pthread_t committer, scanner;
    int scan_started;
    pthread_mutex_t lock; /* jobs, the commit queue, pending */
    pthread_cond_t cond;
    job *head, **tail;
    int stopping;
    size_t pending; /* jobs queued or running, plus writers not yet committed */
    pthread_cond_t commit_cond, commit_space;
    pend *chead, **ctail;
    size_t cn;
    int commit_stop;
    pthread_mutex_t absent_lock;
    keyset absent;
    _Atomic int scanning; /* the start-up scan runs */
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

/* Ahead of the queue: for removals, which free budget the writes behind them need. */
static void push_front(cache_persist *p, job *j)
{
    pthread_mutex_lock(&p->lock);
    j->next = p->head;
    p->head = j;
    if (!j->next) p->tail = &j->next;
    p->pending++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/*
 * o was not stored. The byte cap (DISK_ERR_FULL: the policy made room, but
 * files it evicted were still there at commit) is the budget at work, like a
 * refusal by admission: counted as one, and no error. Anything else is the
 * filesystem failing (ENOSPC, EIO, EFBIG...): counted, and said at most once
 * a minute, since every write fails while it lasts.
 */
static void not_stored(cache_persist *p, cache_obj *o, int reserved, int rc, const char *why)
{
    cache_stats *st = sh_cache_stats(p->cache);
    if (rc == DISK_ERR_FULL) {
        atomic_fetch_add(&st->disk_refusals, 1);
    } else {
        static _Atomic int64_t last;
        int64_t now = time(NULL), prev = atomic_load(&last);
        atomic_fetch_add(&st->disk_write_errors, 1);
        if (now - prev >= 60 && atomic_compare_exchange_strong(&last, &prev, now))
            sh_log(SH_LOG_ERROR, "cache: disk write failed (%s); objects stay in memory only", why);
    }
    cache_disk_write_failed(p->cache, o, reserved);
}

static void do_persist(cache_persist *p, cache_obj *o)
{
    /* Admission first: a refused object costs no write, and the files it
     * displaces are gone before its own write can find the store over its
     * cap. It is charged exactly what the store will count for its file. */
    size_t mlen;
    char *meta = meta_encode(o, &mlen);
    int reserved =
        cache_disk_reserve(p->cache, o, disk_footprint(o->keylen, mlen, (uint64_t)o->size));
    if (!reserved) {
        sh_free(meta);
        return;
    }
    disk_writer *w = disk_writer_begin(p->disk, o->key, o->keylen, meta, mlen);
    sh_free(meta);
    if (!w) {
        not_stored(p, o, reserved, DISK_ERR_IO, strerror(errno));
        return;
    }
    atomic_fetch_add(&sh_cache_stats(p->cache)->disk_writes, 1);
    int64_t left = o->size;
    for (size_t i = 0; i < o->nchunks && left > 0; i++) {
        size_t n = (size_t)(left < o->chunks[i]->cap ? left : o->chunks[i]->cap);
        if (disk_writer_append(w, o->chunks[i]->data, n) != 0) {
            not_stored(p, o, reserved, DISK_ERR_IO, strerror(errno));
            disk_writer_abort(w);
            return;
        }
        left -= (int64_t)n;
    }
    unsigned char md5[16];
    int have_md5 = o->etag && cache_etag_is_plain_md5(o->etag, strlen(o->etag), md5);
    int rc = disk_writer_finish(w, o->size, have_md5 ? md5 : NULL);
    if (rc != DISK_OK) {
        not_stored(p, o, reserved, rc, rc == DISK_ERR_IO ? strerror(errno) : disk_rc_name(rc));
        return;
    }
    pend *c = sh_calloc(1, sizeof(*c));
    c->w = w;
    c->o = o;
    c->reserved = reserved;
    c->bytes = (uint64_t)o->size;
    cache_obj_ref(o);
    pthread_mutex_lock(&p->lock);
    while (p->cn >= COMMIT_QMAX && !p->commit_stop)
        pthread_cond_wait(&p->commit_space, &p->lock);
    *p->ctail = c;
    p->ctail = &c->next;
    p->cn++;
    p->pending++; /* until committed */
    pthread_cond_signal(&p->commit_cond);
    pthread_mutex_unlock(&p->lock);
}

/* Publish every finished writer that has accumulated, up to a batch (waiting
 * for one if wait); returns how many, 0 when there was none to wait for. */
static size_t commit_once(cache_persist *p, int wait)
{
    disk_writer *ws[BATCH_MAX];
    pend *batch[BATCH_MAX];
    int rcs[BATCH_MAX];
    {
        pthread_mutex_lock(&p->lock);
        while (wait && !p->chead && !p->commit_stop)
            pthread_cond_wait(&p->commit_cond, &p->lock);
        size_t n = 0;
        uint64_t bytes = 0;
        while (p->chead && n < BATCH_MAX && (n == 0 || bytes + p->chead->bytes <= BATCH_BYTES)) {
            pend *c = p->chead;
            p->chead = c->next;
            if (!p->chead) p->ctail = &p->chead;
            bytes += c->bytes;
            batch[n] = c;
            ws[n++] = c->w;
        }
        p->cn -= n;
        pthread_cond_broadcast(&p->commit_space);
        pthread_mutex_unlock(&p->lock);
        if (!n) return 0;

        /* An object displaced while it was written is not published: its file
         * would only count against the cap until it was removed again. */
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (cache_disk_wanted(p->cache, batch[i]->o)) {
                ws[m++] = batch[i]->w;
                continue;
            }
            disk_writer_abort(batch[i]->w);
            batch[i]->w = NULL;
            cache_disk_write_failed(p->cache, batch[i]->o, batch[i]->reserved);
        }
        if (m) disk_commit_batch(p->disk, ws, m, rcs);
        for (size_t i = 0, k = 0; i < n; i++) {
            int rc = batch[i]->w ? rcs[k++] : DISK_ERR_INVALID;
            if (rc == DISK_OK)
                cache_disk_committed(p->cache, batch[i]->o);
            else if (batch[i]->w)
                not_stored(p, batch[i]->o, batch[i]->reserved, rc, disk_rc_name(rc));
            cache_obj_unref(batch[i]->o);
            sh_free(batch[i]);
        }
        pthread_mutex_lock(&p->lock);
        p->pending -= n;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        return n;
    }
}

/* The group committer thread. */
static void *commit_main(void *arg)
{
    cache_persist *p = arg;
    while (commit_once(p, 1))
        ;
    return NULL;
}

/* Tell o's waiters to look up again (as after a failed disk read). */
static void relookup(cache_obj *o)
{
    pthread_mutex_lock(&o->lock);
    o->fail = CACHE_FAIL_DISK;
    atomic_store(&o->state, CACHE_OBJ_FAILED);
    cache_wake_all_locked(o, CACHE_EV_FAIL);
    pthread_mutex_unlock(&o->lock);
}

/* Whether e holds the stored version that o was made from. */
static int same_version(const cache_obj *o, disk_entry *e)
{
    const disk_info *in = disk_entry_info(e);
    int64_t created;
    return meta_created(in->meta, in->meta_len, &created) == 0 && created == o->created_us &&
           (int64_t)in->body_size == o->size;
}

/* Index e's object in place of o (a probe, or an entry for another version of
 * the file): the next lookup sees what is really stored. */
static void restore_entry(cache_persist *p, cache_obj *o, disk_entry *e)
{
    const disk_info *in = disk_entry_info(e);
    cache_obj *d = cache_obj_new_disk(p->cache, o->key, o->keylen);
    cache_index_remove(o);
    if (meta_decode(d, in->meta, in->meta_len, in->body_size) == 0)
        cache_disk_restored(p->cache, d, in->footprint);
    cache_obj_unref(d);
}

static uint64_t key_hash64(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h ? h : 1;
}

static int absent_has(cache_persist *p, uint64_t h)
{
    keyset *ks = &p->absent;
    if (!ks->cap) return 0;
    for (size_t i = h & (ks->cap - 1); ks->v[i]; i = (i + 1) & (ks->cap - 1))
        if (ks->v[i] == h) return 1;
    return 0;
}

static void absent_add(cache_persist *p, uint64_t h)
{
    keyset *ks = &p->absent;
    pthread_mutex_lock(&p->absent_lock);
    if (!absent_has(p, h)) {
        if ((ks->n + 1) * 2 > ks->cap) {
            size_t cap = ks->cap ? ks->cap * 2 : 1024;
            uint64_t *v = sh_calloc(cap, sizeof(*v));
            for (size_t i = 0; i < ks->cap; i++) {
                if (!ks->v[i]) continue;
                size_t j = ks->v[i] & (cap - 1);
                while (v[j])
                    j = (j + 1) & (cap - 1);
                v[j] = ks->v[i];
            }
            sh_free(ks->v);
            ks->v = v;
            ks->cap = cap;
        }
        size_t i = h & (ks->cap - 1);
        while (ks->v[i])
            i = (i + 1) & (ks->cap - 1);
        ks->v[i] = h;
        ks->n++;
    }
    pthread_mutex_unlock(&p->absent_lock);
}

int cache_persist_probe(cache_persist *p, const char *key, size_t keylen)
{
    if (!atomic_load_explicit(&p->scanning, memory_order_acquire)) return 0;
    if (!disk_scan_pending(p->disk, key, keylen)) return 0;
    uint64_t h = key_hash64(key, keylen);
    pthread_mutex_lock(&p->absent_lock);
    int known = absent_has(p, h);
    pthread_mutex_unlock(&p->absent_lock);
    return !known;
}

/* A probe (cache_persist_probe): look for key's file before the scan gets there. */
static void do_probe(cache_persist *p, cache_obj *o)
{
    disk_entry *e = NULL;
    int rc = disk_open_entry(p->disk, o->key, o->keylen, &e);
    if (rc == DISK_OK) {
        restore_entry(p, o, e);
        disk_entry_close(e);
    } else {
        absent_add(p, key_hash64(o->key, o->keylen)); /* the next lookup asks the origin */
        cache_index_remove(o);
    }
    relookup(o);
}

/* Read a disk-only object's body into the FILLING object o; nothing is
 * published before the whole body has matched its MD5, so nothing unverified
 * is sent. */
static void do_load(cache_persist *p, cache_obj *o)
{
    disk_entry *e = NULL;
    if (o->size < 0) { /* a probe: a new object whose response is not known yet */
        do_probe(p, o);
        return;
    }
    int rc = disk_open_entry(p->disk, o->key, o->keylen, &e);
    if (rc == DISK_OK && !same_version(o, e)) {
        restore_entry(p, o, e);
        disk_entry_close(e);
        relookup(o);
        return;
    }
    cache_chunk **chs = sh_calloc(o->nchunks ? o->nchunks : 1, sizeof(*chs));
    size_t i = 0;
    if (rc == DISK_OK && (uint64_t)o->size != disk_entry_info(e)->body_size) rc = DISK_ERR_LENGTH;
    for (; rc == DISK_OK && i < o->nchunks; i++) {
        int64_t off = (int64_t)i * CACHE_CHUNK_SIZE;
        uint32_t cap =
            (uint32_t)(o->size - off < CACHE_CHUNK_SIZE ? o->size - off : CACHE_CHUNK_SIZE);
        chs[i] = cache_chunk_new_shared(cap);
        rc = disk_entry_read_seq(e, chs[i]->data, cap);
    }
    if (e) disk_entry_close(e);
    if (rc != DISK_OK) {
        sh_log(SH_LOG_WARN, "cache: disk object dropped: %s", disk_rc_name(rc));
        if (rc != DISK_ERR_NOTFOUND && rc != DISK_ERR_CORRUPT)
            disk_remove(p->disk, o->key, o->keylen);
        for (size_t k = 0; k < i; k++)
            cache_chunk_unref(chs[k]);
        sh_free(chs);
        cache_load_failed(o);
        return;
    }
    cache_load_head(o);
    for (i = 0; i < o->nchunks; i++)
        cache_load_chunk(o, i, chs[i]);
    sh_free(chs);
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
    if (rc == DISK_OK && !same_version(r->o, e)) {
        /* Replaced since it was indexed: index what is there, look up again. */
        restore_entry(p, r->o, e);
        disk_entry_close(e);
        pthread_mutex_lock(&r->lock);
        if (!r->cancelled) sh_worker_wake(r->waiter.worker, &r->waiter, CACHE_EV_FAIL);
        pthread_mutex_unlock(&r->lock);
        return;
    }
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

/* The next job (waiting for one if wait), or NULL. */
static job *pop_job(cache_persist *p, int wait)
{
    pthread_mutex_lock(&p->lock);
    while (wait && !p->head && !p->stopping)
        pthread_cond_wait(&p->cond, &p->lock);
    job *j = p->head;
    if (j) {
        p->head = j->next;
        if (!p->head) p->tail = &p->head;
    }
    pthread_mutex_unlock(&p->lock);
    return j;
}

static void run_job(cache_persist *p, job *j)
{
    {
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

static void *io_main(void *arg)
{
    cache_persist *p = arg;
    job *j;
    while ((j = pop_job(p, 1)))
        run_job(p, j);
    return NULL;
}

static void scan_cb(void *ud, const void *key, size_t keylen, const disk_info *info)
{
    cache_persist *p = ud;
    cache_obj *o = cache_obj_new_disk(p->cache, key, keylen);
    if (meta_decode(o, info->meta, info->meta_len, info->body_size) == 0)
        cache_disk_restored(p->cache, o, info->footprint);
    cache_obj_unref(o);
}

static void rule_cb(void *ud, const char *pattern, int64_t time_us)
{
    cache_rule_restore(ud, pattern, time_us);
}

/* The start-up scan, while the workers serve. */
static void *scan_main(void *arg)
{
    cache_persist *p = arg;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    disk_scan_stats st = {0};
    disk_scan(p->disk, 4, scan_cb, p, &st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    atomic_store_explicit(&p->scanning, 0, memory_order_release);
    pthread_mutex_lock(&p->absent_lock);
    sh_free(p->absent.v);
    p->absent = (keyset){0};
    pthread_mutex_unlock(&p->absent_lock);
    sh_log(SH_LOG_INFO,
           "cache: disk %s: %llu objects restored in %.3f s (%llu corrupt, %llu temp, %llu "
           "stray files dropped), %llu bytes, scanned while serving",
           p->dir, (unsigned long long)st.kept,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
           (unsigned long long)st.dropped_corrupt, (unsigned long long)st.dropped_temp,
           (unsigned long long)st.dropped_stray, (unsigned long long)st.kept_bytes);
    return NULL;
}

cache_persist *cache_persist_open(sh_cache *c, const char *dir, uint64_t max_bytes, char *err,
                                  size_t errlen)
{
    disk_store *d = disk_open(dir, max_bytes, err, errlen);
    if (!d) return NULL;
    cache_persist *p = sh_calloc(1, sizeof(*p));
    p->cache = c;
    p->disk = d;
    p->dir = sh_strdup(dir);
    p->tail = &p->head;
    p->ctail = &p->chead;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    pthread_cond_init(&p->commit_cond, NULL);
    pthread_cond_init(&p->commit_space, NULL);
    pthread_mutex_init(&p->absent_lock, NULL);

    /* Known to the engine before the scan: restoring may already evict. */
    cache_set_persist(c, p);
    /* Rules before anything is served: they apply to objects found by the
     * scan and by probes alike. */
    size_t bad = 0;
    disk_rules_load(d, rule_cb, c, &bad);

    p->nthreads = sizeof(p->threads) / sizeof(p->threads[0]);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_create(&p->threads[i], NULL, io_main, p);
    pthread_create(&p->committer, NULL, commit_main, p);
    atomic_store(&p->scanning, 1);
    if (pthread_create(&p->scanner, NULL, scan_main, p) == 0)
        p->scan_started = 1;
    else
        scan_main(p);
    return p;
}

void cache_persist_close(cache_persist *p)
{
    if (!p) return;
    disk_scan_cancel(p->disk);
    if (p->scan_started) pthread_join(p->scanner, NULL);
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    /* Queued writes finish: a clean stop keeps what was cached. */
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_lock(&p->lock);
    p->commit_stop = 1;
    pthread_cond_broadcast(&p->commit_cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->committer, NULL);
    /* Commits may have queued removals (disk evictions) after the I/O threads
     * left, and those nothing else: finish both queues here. */
    for (;;) {
        job *j = pop_job(p, 0);
        if (j)
            run_job(p, j);
        else if (!commit_once(p, 0))
            break;
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    pthread_cond_destroy(&p->commit_cond);
    pthread_cond_destroy(&p->commit_space);
    pthread_mutex_destroy(&p->absent_lock);
    sh_free(p->absent.v);
    sh_free(p->dir);
    disk_close(p->disk);
    sh_free(p);
}

void cache_persist_scan_progress(cache_persist *p, disk_scan_state *out)
{
    disk_scan_progress(p->disk, out);
    out->running = atomic_load_explicit(&p->scanning, memory_order_acquire);
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
    push_front(p, j);
}

void cache_persist_remove_now(cache_persist *p, const char *key, size_t keylen)
{
    disk_remove(p->disk, key, keylen);
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
