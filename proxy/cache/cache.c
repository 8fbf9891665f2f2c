/*
 * The cache index: 256 shards, each a mutex and a chained hash table of
 * refcounted objects, plus the memory-tier eviction policy and the
 * invalidation rules.
 *
 * A lookup takes one shard lock for a few pointer reads; the hit path does
 * not allocate and does not touch any global lock (the eviction policy's hit
 * hook is lock-free).
 */
#include "shield/hash.h"
#include "shield/cache.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "shield/alloc.h"
#include "shield/cache_persist.h"
#include "shield/forward.h"
#include "shield/log.h"
#include "shield/worker.h"

#define NSHARDS 256

typedef struct shard {
    pthread_mutex_t lock;
    cache_obj **buckets;
    size_t nbuckets, count;
} shard;

typedef struct inval_rule {
    char *path;
    size_t len;
    int prefix; /* trailing '*' */
    int64_t time;
    int64_t time_us; /* objects created before this (created_us) are invalid */
} inval_rule;

/* One stored file, for the disk eviction policy. */
typedef struct dent {
    struct dent *next;
    evict_node node;
    unsigned hits; /* disk hits in this process: the second promotes to memory */
    int verified;  /* whole file checked once (sendfile bypasses the chunk CRCs) */
    char *key;
    size_t keylen;
} dent;

struct sh_cache {
    const sh_config *cfg;
    shard shards[NSHARDS];
    evict_policy *mem;
    cache_stats stats;
    pthread_mutex_t rules_lock;
    inval_rule *rules;
    _Atomic size_t nrules;
    size_t rules_cap;
    _Atomic int64_t clock_us;      /* last value of cache_clock_us() */
    struct cache_persist *persist; /* disk tier, or NULL */
    evict_policy *dpol;            /* disk tier eviction (SIEVE) */
    pthread_mutex_t dlock;         /* the disk map */
    struct dent **dmap;
    size_t dmap_n, dmap_cap;
};

/* Wall-clock microseconds, strictly increasing within the process, so an
 * invalidation orders exactly against object creation and, being wall time,
 * still orders against objects restored from disk after a restart. */
static int64_t cache_clock_us(sh_cache *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    int64_t last = atomic_load(&c->clock_us);
    while (!atomic_compare_exchange_weak(&c->clock_us, &last, now > last ? now : last + 1))
        ;
    return now > last ? now : last + 1;
}

/* ---- chunks and objects ------------------------------------------------- */

void cache_chunk_ref(cache_chunk *ch)
{
    atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
}

cache_chunk *cache_chunk_new(uint32_t cap)
{
    cache_chunk *ch = sh_malloc(sizeof(*ch) + cap);
    atomic_init(&ch->refs, 1);
    ch->cap = cap;
    ch->slot = -1;
    ch->data = (char *)(ch + 1);
    return ch;
}

void cache_chunk_unref(cache_chunk *ch)
{
    if (!ch || atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) != 1) return;
    if (ch->slot >= 0)
        cache_chunk_free_shared(ch);
    else
        sh_free(ch);
}

void cache_obj_ref(cache_obj *o)
{
    atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
}

void cache_obj_unref(cache_obj *o)
{
    if (!o || atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) != 1) return;
    for (size_t i = 0; i < o->nchunks; i++)
        cache_chunk_unref(o->chunks[i]);
    sh_free(o->chunks);
    sh_hdrlist_clear(&o->headers);
    sh_free(o->etag);
    sh_free(o->key);
    if (o->stale) cache_obj_unref(o->stale);
    pthread_mutex_destroy(&o->lock);
    sh_free(o);
}

static uint64_t key_hash(const char *k, size_t n)
{
    return sh_hash_bytes(k, n, 0);
}

static cache_obj *obj_new(sh_cache *c, const char *key, size_t keylen, uint64_t hash)
{
    cache_obj *o = sh_calloc(1, sizeof(*o));
    atomic_init(&o->refs, 1);
    o->created_us = cache_clock_us(c);
    o->hash = hash;
    o->key = sh_malloc(keylen);
    memcpy(o->key, key, keylen);
    o->keylen = keylen;
    o->cache = c;
    o->size = -1;
    o->last_modified = -1;
    atomic_init(&o->avail, 0);
    atomic_init(&o->state, CACHE_OBJ_FILLING);
    evict_node_init(&o->evict, hash, 0);
    pthread_mutex_init(&o->lock, NULL);
    return o;
}

/* ---- index -------------------------------------------------------------- */

static shard *shard_of(sh_cache *c, uint64_t h)
{
    return &c->shards[h & (NSHARDS - 1)];
}

static size_t bucket_of(const shard *s, uint64_t h)
{
    return (size_t)(h >> 8) & (s->nbuckets - 1);
}

static void shard_grow(shard *s)
{
    size_t nb = s->nbuckets ? s->nbuckets * 2 : 64;
    cache_obj **b = sh_calloc(nb, sizeof(*b));
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (cache_obj *o = s->buckets[i], *next; o; o = next) {
            next = o->hnext;
            size_t j = (size_t)(o->hash >> 8) & (nb - 1);
            o->hnext = b[j];
            b[j] = o;
        }
    }
    sh_free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
}

static void shard_insert(shard *s, cache_obj *o)
{
    if (s->count + 1 > s->nbuckets) shard_grow(s);
    size_t i = bucket_of(s, o->hash);
    o->hnext = s->buckets[i];
    s->buckets[i] = o;
    s->count++;
    o->in_index = 1;
    cache_obj_ref(o); /* the index's reference */
}

/* Unlink o if it is still the indexed object; returns 1 if it was (the caller
 * then owns the index's reference). */
static int shard_unlink(shard *s, cache_obj *o)
{
    if (!o->in_index) return 0;
    for (cache_obj **p = &s->buckets[bucket_of(s, o->hash)]; *p; p = &(*p)->hnext) {
        if (*p == o) {
            *p = o->hnext;
            o->hnext = NULL;
            o->in_index = 0;
            s->count--;
            return 1;
        }
    }
    return 0;
}

static cache_obj *shard_find(shard *s, uint64_t h, const char *key, size_t keylen)
{
    if (!s->nbuckets) return NULL;
    for (cache_obj *o = s->buckets[bucket_of(s, h)]; o; o = o->hnext)
        if (o->hash == h && o->keylen == keylen && memcmp(o->key, key, keylen) == 0) return o;
    return NULL;
}

static cache_obj *disk_clone(sh_cache *c, const cache_obj *o, int state);
static int disk_hit(sh_cache *c, const char *key, size_t keylen, uint64_t h);
static void disk_forget(sh_cache *c, const char *key, size_t keylen, uint64_t h);

/* Take o out of the memory tier's accounting (idempotent). */
static void mem_uncharge(sh_cache *c, cache_obj *o)
{
    if (o->evict.size && evict_remove(c->mem, &o->evict)) {
        atomic_fetch_sub(&c->stats.objects, 1);
        atomic_fetch_sub(&c->stats.bytes, o->evict.size);
    }
}

/* Put repl (NULL = nothing) in o's place if o is still the indexed object. */
static void index_swap(sh_cache *c, cache_obj *o, cache_obj *repl)
{
    shard *s = shard_of(c, o->hash);
    pthread_mutex_lock(&s->lock);
    int was = shard_unlink(s, o);
    if (was && repl) shard_insert(s, repl);
    pthread_mutex_unlock(&s->lock);
    if (was) cache_obj_unref(o);
}

void cache_index_remove(cache_obj *o)
{
    sh_cache *c = o->cache;
    shard *s = shard_of(c, o->hash);
    pthread_mutex_lock(&s->lock);
    int was = shard_unlink(s, o);
    pthread_mutex_unlock(&s->lock);
    mem_uncharge(c, o);
    if (was) cache_obj_unref(o);
}

/*
 * A memory victim that the disk tier refused (less popular, then, than the files
 * it would have replaced) is offered to it again if it has been asked for since:
 * otherwise the memory tier would be the only place it could ever live, and its
 * eviction would lose it however popular it became. The write job holds the
 * bytes until the file is committed (cache_disk_committed indexes it then).
 */
static void disk_reoffer(sh_cache *c, cache_obj *v)
{
    unsigned refused = atomic_load(&v->disk_refused);
    if (!refused || !c->persist || v->pass || atomic_load(&v->state) != CACHE_OBJ_COMPLETE) return;
    if (evict_estimate(c->dpol, v->hash) + 1 <= refused) return;
    if (!atomic_compare_exchange_strong(&v->disk_refused, &refused, 0)) return;
    cache_persist_write(c->persist, v);
}

int cache_mem_admit(cache_obj *o)
{
    sh_cache *c = o->cache;
    evict_node *victims[64];
    bool admitted = false;
    size_t n;
    /* Charge the headers and key too, so many small objects respect the budget. */
    evict_node_init(&o->evict, o->hash, (uint64_t)(o->size > 0 ? o->size : 0) + o->keylen + 512);
again:
    n = evict_insert(c->mem, &o->evict, victims, 64, &admitted);
    if (admitted) {
        atomic_fetch_add(&c->stats.objects, 1);
        atomic_fetch_add(&c->stats.bytes, o->evict.size);
    }
    for (size_t i = 0; i < n; i++) {
        cache_obj *v = (cache_obj *)((char *)victims[i] - offsetof(cache_obj, evict));
        atomic_fetch_sub(&c->stats.objects, 1);
        atomic_fetch_sub(&c->stats.bytes, v->evict.size);
        atomic_fetch_add(&c->stats.evictions, 1);
        if (atomic_load(&v->state) == CACHE_OBJ_FILLING) {
            /* Still filling: keep it findable so requests go on collapsing
             * onto it; it is charged again when it completes. */
            atomic_store(&v->evicted_while_filling, 1);
            v->evict.size = 0; /* uncharged until then */
            continue;
        }
        /* Out of memory is not out of the cache when the object is on disk. */
        cache_obj *keep = atomic_load(&v->on_disk) ? disk_clone(c, v, CACHE_OBJ_COMPLETE) : NULL;
        cache_obj_ref(v); /* the index's reference may be the last */
        index_swap(c, v, keep);
        if (keep)
            cache_obj_unref(keep);
        else
            disk_reoffer(c, v);
        cache_obj_unref(v);
    }
    /* A big book may need more victims than one call returns: go on. */
    if (!admitted && n == 64) goto again;
    if (!admitted) o->evict.size = 0;
    return admitted ? 0 : -1;
}

/* ---- invalidation ------------------------------------------------------- */

/* The key starts with the path and a NUL (sh_cache_key), so a rule matches
 * key bytes directly. */
static int invalidated(sh_cache *c, const cache_obj *o)
{
    size_t n = atomic_load_explicit(&c->nrules, memory_order_acquire);
    if (n == 0) return 0;
    size_t plen = strnlen(o->key, o->keylen);
    int hit = 0;
    pthread_mutex_lock(&c->rules_lock);
    for (size_t i = 0; i < c->nrules && !hit; i++) {
        const inval_rule *r = &c->rules[i];
        if (o->created_us >= r->time_us) continue;
        if (r->prefix ? (plen >= r->len && memcmp(o->key, r->path, r->len) == 0)
                      : (plen == r->len && memcmp(o->key, r->path, r->len) == 0))
            hit = 1;
    }
    pthread_mutex_unlock(&c->rules_lock);
    return hit;
}

static int add_rule(sh_cache *c, const char *path, int64_t time_us)
{
    size_t len = strlen(path);
    if (len == 0 || len > 4000 || path[0] != '/') return -1;
    const char *star = strchr(path, '*');
    if (star && star != path + len - 1) return -1; /* CloudFront: '*' only as the last character */
    pthread_mutex_lock(&c->rules_lock);
    if (c->nrules == c->rules_cap) {
        c->rules_cap = c->rules_cap ? c->rules_cap * 2 : 16;
        c->rules = sh_realloc(c->rules, c->rules_cap * sizeof(*c->rules));
    }
    inval_rule *r = &c->rules[c->nrules];
    r->prefix = star != NULL;
    r->len = star ? len - 1 : len;
    r->path = sh_strndup(path, r->len);
    r->time = time_us / 1000000;
    r->time_us = time_us;
    atomic_store_explicit(&c->nrules, c->nrules + 1, memory_order_release);
    pthread_mutex_unlock(&c->rules_lock);
    return 0;
}

int sh_cache_invalidate(sh_cache *c, const char *path, int64_t now)
{
    int64_t t = cache_clock_us(c);
    if (add_rule(c, path, t) != 0) return -1;
    /* Persisted before any disk object could be served again after a restart:
     * a forgotten invalidation would bring withdrawn content back. */
    if (c->persist && cache_persist_rule_sync(c->persist, path, t) != 0) {
        sh_log(SH_LOG_ERROR, "cache: invalidation %s could not be written to disk", path);
        return -2;
    }
    atomic_fetch_add(&c->stats.invalidations, 1);
    return 0;
}

void cache_rule_restore(sh_cache *c, const char *pattern, int64_t time_us)
{
    add_rule(c, pattern, time_us);
    int64_t last = atomic_load(&c->clock_us);
    if (time_us > last) atomic_store(&c->clock_us, time_us);
}

/* ---- keys and lookups --------------------------------------------------- */

/* Append every value of header `name` (each after a '\n'): a viewer repeating
 * a forwarded header must not get an answer keyed on its first copy only,
 * since the origin saw all of them. */
static size_t key_values(char *k, const char *name, const sh_header *h, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (!sh_hdr_is(h[i].name, h[i].name_len, name)) continue;
        if (k) {
            k[o] = '\n';
            memcpy(k + o + 1, h[i].value, h[i].value_len);
        }
        o += 1 + h[i].value_len;
    }
    return o;
}

char *sh_cache_key(const char *host, size_t hlen, const char *path, size_t plen, const char *query,
                   size_t qlen, const sh_behavior_conf *b, const sh_header *h, size_t n,
                   size_t *keylen)
{
    /* path NUL host NUL [?query] NUL {name [\n value]... NUL}... [C {\n cookie}... NUL]:
     * NUL and LF cannot occur in any part (the parser rejects them), so the
     * encoding is unambiguous. */
    size_t cap = plen + hlen + qlen + 8;
    int cookies = b && b->forward_cookies;
    for (size_t i = 0; b && i < b->nforward_headers; i++)
        cap += strlen(b->forward_headers[i]) + key_values(NULL, b->forward_headers[i], h, n) + 2;
    if (cookies) cap += key_values(NULL, "Cookie", h, n) + 2;
    char *k = sh_malloc(cap);
    size_t o = 0;
    memcpy(k + o, path, plen);
    o += plen;
    k[o++] = '\0';
    for (size_t i = 0; i < hlen; i++)
        k[o++] = (char)((host[i] >= 'A' && host[i] <= 'Z') ? host[i] + 32 : host[i]);
    k[o++] = '\0';
    if (query && b && b->forward_query) {
        k[o++] = '?';
        o += sh_query_strip_signature(query, qlen, k + o); /* never part of the key */
    }
    k[o++] = '\0';
    for (size_t i = 0; b && i < b->nforward_headers; i++) {
        size_t nl = strlen(b->forward_headers[i]);
        memcpy(k + o, b->forward_headers[i], nl);
        o += nl;
        o += key_values(k + o, b->forward_headers[i], h, n);
        k[o++] = '\0';
    }
    if (cookies) {
        k[o++] = 'C';
        o += key_values(k + o, "Cookie", h, n);
        k[o++] = '\0';
    }
    *keylen = o;
    return k;
}

cache_lookup_rc sh_cache_lookup(sh_cache *c, const char *key, size_t keylen, int64_t now,
                                int create, cache_obj **out, cache_obj **refresh)
{
    uint64_t h = key_hash(key, keylen);
    shard *s = shard_of(c, h);
    cache_obj *old = NULL;
    int revalidate = 0, background = 0;
    *refresh = NULL;
    /* Every request counts, wherever it is served from: the disk tier admits a new
     * file only in place of files asked for less often (disk_account). */
    if (c->dpol) evict_touch(c->dpol, h);
    pthread_mutex_lock(&s->lock);
    cache_obj *o = shard_find(s, h, key, keylen);
    if (o && o->background && o->stale && atomic_load(&o->state) == CACHE_OBJ_FILLING) {
        /* stale-while-revalidate: the refresh runs, the old copy answers. */
        cache_obj *st = o->stale;
        cache_obj_ref(st);
        pthread_mutex_unlock(&s->lock);
        atomic_fetch_add(&c->stats.hits, 1);
        *out = st;
        return CACHE_HIT;
    }
    if (o && atomic_load(&o->state) != CACHE_OBJ_COMPLETE) {
        cache_obj_ref(o); /* a fill in progress: join it */
        pthread_mutex_unlock(&s->lock);
        atomic_fetch_add(&c->stats.collapsed, 1);
        *out = o;
        return CACHE_JOINED;
    }
    if (o) {
        int inv = invalidated(c, o);
        cache_freshness fr = inv ? CACHE_STALE_MUST_REVALIDATE : cache_freshness_at(&o->fresh, now);
        if (o->disk_only && fr == CACHE_FRESH && !inv) {
            if (!create) { /* HEAD: the head is known without the body */
                cache_obj_ref(o);
                pthread_mutex_unlock(&s->lock);
                atomic_fetch_add(&c->stats.hits, 1);
                *out = o;
                return CACHE_HIT;
            }
            /* First disk hit: sent from the file (sendfile). Popular again:
             * promoted, i.e. loaded into memory as a fill others can join. */
            if (disk_hit(c, key, keylen, h) == 0) {
                cache_obj_ref(o);
                pthread_mutex_unlock(&s->lock);
                *out = o; /* counted as a hit once the file is open and verified */
                return CACHE_DISK;
            }
            cache_obj *n = disk_clone(c, o, CACHE_OBJ_FILLING);
            shard_unlink(s, o);
            shard_insert(s, n);
            pthread_mutex_unlock(&s->lock);
            cache_obj_unref(o); /* the index's reference */
            *out = n;           /* counted as a hit once loaded (cache_load_done) */
            return CACHE_LOAD;
        }
        if (fr == CACHE_FRESH) {
            cache_obj_ref(o);
            pthread_mutex_unlock(&s->lock);
            evict_hit(c->mem, &o->evict);
            atomic_fetch_add(&c->stats.hits, 1);
            *out = o;
            return CACHE_HIT;
        }
        /* Expired with a validator: ask the origin whether it changed (a 304
         * keeps the bytes); invalidated objects are fetched anew. */
        /* Without the bytes in memory there is nothing to revalidate or serve stale. */
        revalidate =
            !o->disk_only && !inv && o->status == 200 && (o->etag || o->last_modified >= 0);
        background = !o->disk_only && fr == CACHE_STALE_SERVABLE_WHILE_REVALIDATE && create;
    }
    if (!create) {
        pthread_mutex_unlock(&s->lock);
        *out = NULL;
        return CACHE_MISS;
    }
    if (!o && c->persist && cache_persist_probe(c->persist, key, keylen)) {
        /* The start-up scan has not reached key's file yet: probe it (persist.c). */
        cache_obj *n = obj_new(c, key, keylen, h);
        shard_insert(s, n);
        pthread_mutex_unlock(&s->lock);
        *out = n;
        return CACHE_LOAD;
    }
    if (o && shard_unlink(s, o)) old = o; /* replaced below; lives on while referenced */
    cache_obj *n = obj_new(c, key, keylen, h);
    n->background = background;
    shard_insert(s, n);
    if (background)
        n->stale = old, cache_obj_ref(old); /* before the shard lock drops: lookups use it */
    pthread_mutex_unlock(&s->lock);
    if (old) {
        mem_uncharge(c, old);
        if (revalidate && !background)
            n->stale = old; /* takes the index's reference */
        else
            cache_obj_unref(old);
    }
    if (background) {
        /* Serve the stale copy now; the caller starts n's fill in the background. */
        atomic_fetch_add(&c->stats.hits, 1);
        cache_obj_ref(old); /* the caller's */
        *out = old;
        *refresh = n;
        return CACHE_HIT;
    }
    atomic_fetch_add(&c->stats.misses, 1);
    *out = n; /* the creator's reference */
    return CACHE_MISS;
}

void cache_obj_drop_stale(cache_obj *o)
{
    shard *s = shard_of(o->cache, o->hash);
    pthread_mutex_lock(&s->lock); /* lookups read o->stale under this lock */
    cache_obj *st = o->stale;
    o->stale = NULL;
    pthread_mutex_unlock(&s->lock);
    cache_obj_unref(st);
}

void cache_index_restore(cache_obj *failed, cache_obj *stale)
{
    sh_cache *c = failed->cache;
    shard *s = shard_of(c, failed->hash);
    pthread_mutex_lock(&s->lock);
    int was = shard_unlink(s, failed);
    int put = 0;
    if (!stale->in_index && !shard_find(s, stale->hash, stale->key, stale->keylen)) {
        shard_insert(s, stale);
        put = 1;
    }
    pthread_mutex_unlock(&s->lock);
    mem_uncharge(c, failed);
    if (was) cache_obj_unref(failed);
    if (put && cache_mem_admit(stale) != 0) cache_index_remove(stale);
}

/* ---- waiters ------------------------------------------------------------ */

unsigned cache_waiter_attach(cache_obj *o, cache_waiter *wt)
{
    unsigned ready = 0;
    pthread_mutex_lock(&o->lock);
    int st = atomic_load(&o->state);
    if (o->head_ready) ready |= CACHE_EV_HEAD;
    if (atomic_load(&o->avail) > 0) ready |= CACHE_EV_DATA;
    if (st == CACHE_OBJ_COMPLETE)
        ready |= CACHE_EV_DONE;
    else if (st == CACHE_OBJ_FAILED)
        ready |= o->pass ? CACHE_EV_RESTART : CACHE_EV_FAIL;
    if (st == CACHE_OBJ_FILLING) {
        wt->obj = o;
        wt->prev = NULL;
        wt->next = o->waiters;
        if (o->waiters) o->waiters->prev = wt;
        o->waiters = wt;
        wt->registered = 1;
    }
    pthread_mutex_unlock(&o->lock);
    return ready;
}

void cache_waiter_unlink_locked(cache_obj *o, cache_waiter *wt)
{
    if (wt->prev)
        wt->prev->next = wt->next;
    else
        o->waiters = wt->next;
    if (wt->next) wt->next->prev = wt->prev;
    wt->registered = 0;
}

void cache_waiter_detach(cache_waiter *wt)
{
    cache_obj *o = wt->obj;
    if (o && wt->registered) {
        pthread_mutex_lock(&o->lock);
        if (wt->registered) cache_waiter_unlink_locked(o, wt);
        if (o->owner == wt) o->owner = NULL;
        pthread_mutex_unlock(&o->lock);
    }
    wt->obj = NULL;
    sh_worker_unwake(wt->worker, wt);
}

void cache_wake_all_locked(cache_obj *o, unsigned events)
{
    for (cache_waiter *wt = o->waiters; wt; wt = wt->next)
        cache_wake(wt, events);
}

void cache_wake(cache_waiter *wt, unsigned events)
{
    sh_worker_wake(wt->worker, wt, events);
}

/* ---- engine ------------------------------------------------------------- */

sh_cache *sh_cache_new(const sh_config *cfg, char *err, size_t errlen)
{
    sh_cache *c = sh_calloc(1, sizeof(*c));
    c->cfg = cfg;
    for (size_t i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&c->shards[i].lock, NULL);
    pthread_mutex_init(&c->rules_lock, NULL);
    pthread_mutex_init(&c->dlock, NULL);
    c->mem = evict_new(EVICT_S3FIFO, cfg->cache.memory_size);
    cache_arena_init(cfg->cache.memory_size);
    if (cfg->cache.disk_path && *cfg->cache.disk_path) {
        /* SIEVE for the larger tier: bench/README.md "Eviction policy". */
        evict_opts o;
        evict_opts_default(&o);
        o.sketch = 1;
        c->dpol = evict_new_opts(EVICT_SIEVE, cfg->cache.disk_size, &o);
        c->persist = cache_persist_open(c, cfg->cache.disk_path, cfg->cache.disk_size, err, errlen);
        if (!c->persist) {
            sh_cache_free(c);
            return NULL;
        }
    }
    return c;
}

const sh_config *cache_config(const sh_cache *c)
{
    return c->cfg;
}

cache_stats *sh_cache_stats(sh_cache *c)
{
    return &c->stats;
}

void sh_cache_free(sh_cache *c)
{
    if (!c) return;
    /* Writes queued by the workers finish first: a clean stop keeps them. */
    cache_persist_close(c->persist);
    c->persist = NULL;
    for (size_t i = 0; i < NSHARDS; i++) {
        shard *s = &c->shards[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (cache_obj *o = s->buckets[b], *next; o; o = next) {
                next = o->hnext;
                o->in_index = 0;
                if (o->evict.size) evict_remove(c->mem, &o->evict);
                cache_obj_unref(o);
            }
        }
        sh_free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    for (size_t i = 0; i < c->nrules; i++)
        sh_free(c->rules[i].path);
    sh_free(c->rules);
    pthread_mutex_destroy(&c->rules_lock);
    evict_free(c->mem);
    cache_arena_release();
    for (size_t i = 0; i < c->dmap_cap; i++) {
        for (dent *d = c->dmap[i], *next; d; d = next) {
            next = d->next;
            sh_free(d->key);
            sh_free(d);
        }
    }
    sh_free(c->dmap);
    if (c->dpol) evict_free(c->dpol);
    pthread_mutex_destroy(&c->dlock);
    sh_free(c);
}

/* ---- disk tier bookkeeping -------------------------------------------------- */

static dent **dmap_find(sh_cache *c, uint64_t h, const char *key, size_t keylen)
{
    if (!c->dmap_cap) return NULL;
    for (dent **p = &c->dmap[h & (c->dmap_cap - 1)]; *p; p = &(*p)->next)
        if ((*p)->node.hash == h && (*p)->keylen == keylen && memcmp((*p)->key, key, keylen) == 0)
            return p;
    return NULL;
}

static void dmap_add(sh_cache *c, dent *d)
{
    if (c->dmap_n + 1 > c->dmap_cap / 2) {
        size_t cap = c->dmap_cap ? c->dmap_cap * 2 : 1024;
        dent **m = sh_calloc(cap, sizeof(*m));
        for (size_t i = 0; i < c->dmap_cap; i++) {
            for (dent *e = c->dmap[i], *next; e; e = next) {
                next = e->next;
                e->next = m[e->node.hash & (cap - 1)];
                m[e->node.hash & (cap - 1)] = e;
            }
        }
        sh_free(c->dmap);
        c->dmap = m;
        c->dmap_cap = cap;
    }
    d->next = c->dmap[d->node.hash & (c->dmap_cap - 1)];
    c->dmap[d->node.hash & (c->dmap_cap - 1)] = d;
    c->dmap_n++;
}

/* Forget a disk-only index entry for key (its file is going away). */
static void drop_disk_only(sh_cache *c, const char *key, size_t keylen, uint64_t h)
{
    shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->lock);
    cache_obj *o = shard_find(s, h, key, keylen);
    int was = o && o->disk_only && shard_unlink(s, o);
    /* A copy in memory loses its disk copy: when the memory tier evicts it, no
     * disk-only entry may stand in for a file that is gone (that would cost a
     * failed open and a second lookup before the origin fetch). */
    if (o && !o->disk_only) atomic_store(&o->on_disk, 0);
    pthread_mutex_unlock(&s->lock);
    if (was) cache_obj_unref(o);
}

/*
 * Charge a stored file to the disk policy; evicted files are deleted. A new key
 * (admit set) goes through the frequency admission of evict_admit(): when it is
 * refused, its own file is deleted too and 0 is returned. Restored files and
 * rewrites of a key already stored are always taken. Returns 1 when a new key
 * is taken, 2 when the key was stored already.
 *
 * now: the caller is an I/O thread about to write, so the files go before this
 * returns. The store refuses commits while the files on disk are over the cap,
 * so an eviction still waiting in the I/O queue (behind other writes) would turn
 * the object it made room for into a failed write. Other callers (the scan, which
 * holds a leaf lock) queue the deletions.
 */
static int disk_account(sh_cache *c, const char *key, size_t keylen, uint64_t h, uint64_t size,
                        int admit, int now)
{
    evict_node *victims[64];
    dent *local[65], **gone = local;
    size_t ngone = 0, gone_cap = 65, n;
    bool admitted = false;
    pthread_mutex_lock(&c->dlock);
    dent **p = dmap_find(c, h, key, keylen);
    dent *d = p ? *p : NULL;
    int stored = d != NULL;
    if (d) {
        evict_remove(c->dpol, &d->node);
        admit = 0;
    } else {
        d = sh_calloc(1, sizeof(*d));
        d->key = sh_malloc(keylen);
        memcpy(d->key, key, keylen);
        d->keylen = keylen;
        d->node.hash = h; /* dmap_add files it by hash */
        dmap_add(c, d);
    }
    evict_node_init(&d->node, h, size);
    for (;;) {
        n = admit ? evict_admit(c->dpol, &d->node, victims, 64, &admitted)
                  : evict_insert(c->dpol, &d->node, victims, 64, &admitted);
        int last = admitted || n < 64;
        if (ngone + n + 1 > gone_cap) { /* a big file displacing many small ones */
            gone_cap = (ngone + n + 1) * 2;
            dent **g = sh_malloc(gone_cap * sizeof(*g));
            memcpy(g, gone, ngone * sizeof(*g));
            if (gone != local) sh_free(gone);
            gone = g;
        }
        for (size_t i = 0; i < n + (last && !admitted ? 1 : 0); i++) {
            dent *v = i < n ? (dent *)((char *)victims[i] - offsetof(dent, node)) : d;
            dent **vp = dmap_find(c, v->node.hash, v->key, v->keylen);
            if (vp) *vp = v->next;
            c->dmap_n--;
            gone[ngone++] = v;
        }
        if (last) break;
    }
    pthread_mutex_unlock(&c->dlock);
    for (size_t i = 0; i < ngone; i++) {
        drop_disk_only(c, gone[i]->key, gone[i]->keylen, gone[i]->node.hash);
        if (now)
            cache_persist_remove_now(c->persist, gone[i]->key, gone[i]->keylen);
        else
            cache_persist_remove(c->persist, gone[i]->key, gone[i]->keylen);
        if (admitted || i + 1 < ngone) /* a refused newcomer is last: not an eviction */
            atomic_fetch_add(&c->stats.evictions, 1);
        sh_free(gone[i]->key);
        sh_free(gone[i]);
    }
    if (gone != local) sh_free(gone);
    return !admitted ? 0 : stored ? 2 : 1;
}

/* Record a disk hit; returns how many came before it in this process. */
static int disk_hit(sh_cache *c, const char *key, size_t keylen, uint64_t h)
{
    int before = 1;
    pthread_mutex_lock(&c->dlock);
    dent **p = dmap_find(c, h, key, keylen);
    if (p) {
        evict_hit(c->dpol, &(*p)->node);
        before = (*p)->hits++;
    }
    pthread_mutex_unlock(&c->dlock);
    return before;
}

int cache_disk_verified(sh_cache *c, const cache_obj *o, int set)
{
    int v = 0;
    pthread_mutex_lock(&c->dlock);
    dent **p = dmap_find(c, o->hash, o->key, o->keylen);
    if (p) {
        v = (*p)->verified;
        if (set) (*p)->verified = 1;
    }
    pthread_mutex_unlock(&c->dlock);
    return v;
}

void cache_disk_lost(sh_cache *c, cache_obj *o)
{
    cache_index_remove(o);
    disk_forget(c, o->key, o->keylen, o->hash);
}

static void disk_forget(sh_cache *c, const char *key, size_t keylen, uint64_t h)
{
    pthread_mutex_lock(&c->dlock);
    dent **p = dmap_find(c, h, key, keylen);
    dent *d = p ? *p : NULL;
    if (d) {
        *p = d->next;
        c->dmap_n--;
        evict_remove(c->dpol, &d->node);
    }
    pthread_mutex_unlock(&c->dlock);
    if (d) {
        sh_free(d->key);
        sh_free(d);
    }
}

/* A copy of o's response without its body: disk-only (COMPLETE) or the
 * object a disk load fills (FILLING). */
static cache_obj *disk_clone(sh_cache *c, const cache_obj *o, int state)
{
    cache_obj *n = obj_new(c, o->key, o->keylen, o->hash);
    n->created_us = o->created_us;
    n->status = o->status;
    for (size_t i = 0; i < o->headers.n; i++)
        sh_hdrlist_add(&n->headers, o->headers.v[i].name, o->headers.v[i].name_len,
                       o->headers.v[i].value, o->headers.v[i].value_len);
    n->size = o->size;
    n->etag = sh_strdup(o->etag);
    n->last_modified = o->last_modified;
    n->fresh = o->fresh;
    n->initial_age = o->initial_age;
    atomic_store(&n->on_disk, 1);
    atomic_store(&n->state, state);
    if (state == CACHE_OBJ_COMPLETE) {
        n->disk_only = 1;
    } else {
        n->nchunks = (size_t)((n->size + CACHE_CHUNK_SIZE - 1) / CACHE_CHUNK_SIZE);
        n->chunks = sh_calloc(n->nchunks ? n->nchunks : 1, sizeof(*n->chunks));
    }
    return n;
}

void cache_disk_write_failed(sh_cache *c, cache_obj *o, int reserved)
{
    if (reserved == 1) disk_forget(c, o->key, o->keylen, o->hash);
    if (o->evict.size == 0) cache_index_remove(o); /* memory was only lent to it */
}

cache_obj *cache_obj_new_disk(sh_cache *c, const char *key, size_t keylen)
{
    cache_obj *o = obj_new(c, key, keylen, key_hash(key, keylen));
    atomic_store(&o->state, CACHE_OBJ_COMPLETE);
    atomic_store(&o->on_disk, 1);
    o->disk_only = 1;
    return o;
}

void cache_disk_restored(sh_cache *c, cache_obj *o, uint64_t footprint)
{
    shard *s = shard_of(c, o->hash);
    pthread_mutex_lock(&s->lock);
    int add = !shard_find(s, o->hash, o->key, o->keylen);
    if (add) shard_insert(s, o);
    pthread_mutex_unlock(&s->lock);
    /* Even when the key is indexed already (a fill or probe during the scan):
     * the file is on disk and must count against the disk budget. */
    disk_account(c, o->key, o->keylen, o->hash, footprint, 0, 0);
}

int cache_disk_reserve(sh_cache *c, cache_obj *o, uint64_t footprint)
{
    int r = disk_account(c, o->key, o->keylen, o->hash, footprint, 1, 1);
    if (r) return r;
    /* The copy in memory, if charged there, stays and may be offered again
     * when the memory tier evicts it (disk_reoffer). */
    atomic_fetch_add(&c->stats.disk_refusals, 1);
    atomic_store(&o->disk_refused, 1 + evict_estimate(c->dpol, o->hash));
    if (o->evict.size == 0) cache_index_remove(o); /* memory was only lent to it */
    return 0;
}

int cache_disk_wanted(sh_cache *c, const cache_obj *o)
{
    pthread_mutex_lock(&c->dlock);
    int kept = dmap_find(c, o->hash, o->key, o->keylen) != NULL;
    pthread_mutex_unlock(&c->dlock);
    return kept;
}

void cache_disk_committed(sh_cache *c, cache_obj *o)
{
    if (!cache_disk_wanted(c, o)) {
        /* Displaced by a newcomer while it was written: the removal made
         * then may have come before this file was published. Never indexed;
         * removed at once, since the store counts it against the cap. */
        cache_persist_remove_now(c->persist, o->key, o->keylen);
        if (o->evict.size == 0) cache_index_remove(o);
        return;
    }
    atomic_store(&o->on_disk, 1);
    /* Evicted from memory before the write finished, or never charged to the
     * memory tier (larger than it): the index keeps the disk copy instead. */
    shard *s = shard_of(c, o->hash);
    cache_obj *keep = disk_clone(c, o, CACHE_OBJ_COMPLETE);
    pthread_mutex_lock(&s->lock);
    cache_obj *cur = shard_find(s, o->hash, o->key, o->keylen);
    int swap = cur == o && o->evict.size == 0, add = !cur;
    if (swap) shard_unlink(s, o);
    if (swap || add) shard_insert(s, keep);
    pthread_mutex_unlock(&s->lock);
    if (swap) cache_obj_unref(o);
    cache_obj_unref(keep);
}

void cache_load_head(cache_obj *o)
{
    pthread_mutex_lock(&o->lock);
    o->head_ready = 1;
    cache_wake_all_locked(o, CACHE_EV_HEAD);
    pthread_mutex_unlock(&o->lock);
}

void cache_load_chunk(cache_obj *o, size_t i, cache_chunk *ch)
{
    o->chunks[i] = ch;
    atomic_fetch_add(&o->cache->stats.bytes_from_disk, ch->cap);
    atomic_store_explicit(&o->avail, (int64_t)i * CACHE_CHUNK_SIZE + ch->cap, memory_order_release);
    pthread_mutex_lock(&o->lock);
    cache_wake_all_locked(o, CACHE_EV_DATA);
    pthread_mutex_unlock(&o->lock);
}

void cache_load_done(cache_obj *o)
{
    atomic_fetch_add(&o->cache->stats.hits, 1);
    pthread_mutex_lock(&o->lock);
    atomic_store(&o->state, CACHE_OBJ_COMPLETE);
    cache_wake_all_locked(o, CACHE_EV_DONE);
    pthread_mutex_unlock(&o->lock);
    if (cache_mem_admit(o) != 0) {
        /* Too big for memory: keep serving it from disk next time. */
        sh_cache *c = o->cache;
        cache_obj *keep = disk_clone(c, o, CACHE_OBJ_COMPLETE);
        index_swap(c, o, keep);
        cache_obj_unref(keep);
    }
}

void cache_load_failed(cache_obj *o)
{
    cache_index_remove(o);
    disk_forget(o->cache, o->key, o->keylen, o->hash);
    pthread_mutex_lock(&o->lock);
    o->fail = CACHE_FAIL_DISK;
    atomic_store(&o->state, CACHE_OBJ_FAILED);
    cache_wake_all_locked(o, CACHE_EV_FAIL);
    pthread_mutex_unlock(&o->lock);
}

void cache_set_persist(sh_cache *c, struct cache_persist *p)
{
    c->persist = p;
}

struct cache_persist *cache_persist_of(sh_cache *c)
{
    return c->persist;
}

uint64_t cache_disk_objects(sh_cache *c)
{
    return c->dpol ? evict_count(c->dpol) : 0;
}

uint64_t cache_disk_bytes(sh_cache *c)
{
    return c->persist ? cache_persist_used(c->persist) : 0;
}
