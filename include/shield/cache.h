/*
 * The cache engine: a sharded index of refcounted objects whose bodies are
 * fixed-size refcounted chunks, filled once from the origin while any number
 * of requests (on any worker) read them as the bytes arrive.
 *
 * Object lifecycle
 *   FILLING  created by the first miss and put in the index at once, so every
 *            concurrent request for the key joins it (request collapsing);
 *            the worker that created it runs the origin fetch (proxy/cache/fill.c);
 *   COMPLETE every byte arrived and verified; immutable from here on: a refresh
 *            (304) creates a new object sharing the chunks;
 *   FAILED   the fetch failed or the response may not be stored; waiters are
 *            told why, the object leaves the index.
 * A FILLING object whose response turns out not storable becomes a "pass":
 * it is removed from the index, the request that started it keeps reading it,
 * and every other waiter is told to fetch on its own (CACHE_EV_RESTART): a
 * private or uncacheable answer is never shared between viewers.
 *
 * Chunks are refcounted separately so that a viewer connection can queue
 * chunk bytes by reference (zero copy) and eviction never frees bytes that
 * are still being sent.
 *
 * Threads: the index shards and each object's waiter list have their own
 * mutexes; object bodies are written only by the filling worker and published
 * with a release store of `avail`, so readers need no lock to read bytes
 * below avail.
 */
#ifndef SHIELD_CACHE_H
#define SHIELD_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "shield/cache_evict.h"
#include "shield/cache_policy.h"
#include "shield/config.h"
#include "shield/http.h"

struct sh_worker;
struct origin_request;

#define CACHE_CHUNK_SIZE (1u << 20)

/* A piece of an object body; data[0..cap) of which the object's avail says how
 * much is valid. Freed when the last reference goes. */
typedef struct cache_chunk {
    _Atomic uint32_t refs;
    uint32_t cap;
    int32_t slot; /* slot in the shared arena (proxy/cache/arena.c), -1 = heap */
    char *data;
} cache_chunk;

/* A heap chunk of cap bytes with one reference (pass-through bodies). */
cache_chunk *cache_chunk_new(uint32_t cap);
void cache_chunk_ref(cache_chunk *ch);
void cache_chunk_unref(cache_chunk *ch);

/*
 * Chunks of stored bodies live in one shared-memory file when they are at
 * least CACHE_SHARED_MIN bytes, so hits can be sent with sendfile (no copy
 * into the socket). Smaller ones, and all of them when the arena is full or
 * could not be created, are heap chunks; readers treat both alike through
 * `data`.
 */
#define CACHE_SHARED_MIN (64u * 1024)

/* Create the process's arena, sized from the memory tier's budget; -1 when
 * the kernel refuses (chunks then all go to the heap). Called by sh_cache_new. */
int cache_arena_init(uint64_t memory_bytes);
/* The engine is gone: the arena goes when its last chunk does. */
void cache_arena_release(void);
/* The arena's descriptor (for sendfile), -1 if none. */
int cache_arena_fd(void);
/* A chunk of cap bytes with one reference, in the arena where possible. */
cache_chunk *cache_chunk_new_shared(uint32_t cap);
/* Offset of a chunk's bytes in cache_arena_fd(), -1 for a heap chunk. */
int64_t cache_chunk_file_offset(const cache_chunk *ch);
/* Internal to cache_chunk_unref: return an arena chunk's slot. */
void cache_chunk_free_shared(cache_chunk *ch);

typedef enum { CACHE_OBJ_FILLING, CACHE_OBJ_COMPLETE, CACHE_OBJ_FAILED } cache_obj_state;

/* Why a fill failed, for the waiters' error response. */
typedef enum {
    CACHE_FAIL_NONE,
    CACHE_FAIL_ORIGIN_CONNECT, /* => 502 */
    CACHE_FAIL_ORIGIN_TIMEOUT, /* => 504 */
    CACHE_FAIL_ORIGIN_OTHER,   /* => 502 */
    CACHE_FAIL_ORIGIN_READ,    /* after the head: viewers that got bytes are aborted */
    CACHE_FAIL_DISK,           /* a disk object failed verification: look up again */
} cache_fail;

/* Events a waiter is woken for (a bit set; several may be pending at once). */
enum {
    CACHE_EV_HEAD = 1,    /* status and headers are known */
    CACHE_EV_DATA = 2,    /* avail grew */
    CACHE_EV_DONE = 4,    /* object complete */
    CACHE_EV_FAIL = 8,    /* fill failed (obj->fail) */
    CACHE_EV_RESTART = 16 /* not storable: fetch on your own */
};

/*
 * A request waiting on a filling object. Embedded in the viewer connection;
 * notify() runs on the waiter's own worker thread with the events that
 * happened since the last call.
 */
typedef struct cache_waiter {
    struct cache_waiter *next, *prev; /* in the object's waiter list */
    struct cache_waiter *wake_next;   /* in the worker's wake queue */
    struct sh_worker *worker;
    void (*notify)(struct cache_waiter *wt, unsigned events);
    unsigned pending; /* events not yet delivered (worker wake lock) */
    int queued;       /* in the worker's wake queue */
    int registered;   /* in an object's waiter list */
    struct cache_obj *obj;
} cache_waiter;

typedef struct cache_obj {
    _Atomic uint32_t refs;
    uint64_t hash;
    char *key;
    size_t keylen;
    struct sh_cache *cache;

    /* response (immutable once CACHE_EV_HEAD was sent) */
    int status;
    sh_hdrlist headers;     /* stored headers: no hop-by-hop, no Content-Length */
    int64_t size;           /* body bytes; known before HEAD for storable objects */
    char *etag;             /* NULL if none */
    int64_t last_modified;  /* -1 if none */
    cache_fresh_info fresh; /* stored_at, ttl, stale windows */
    int64_t initial_age;    /* Age the origin sent */
    int64_t created_us;     /* creation (wall µs, strictly increasing): invalidation rules
                               apply to objects created before them */

    /* body */
    cache_chunk **chunks; /* ceil(size / CACHE_CHUNK_SIZE) slots, allocated with the head */
    size_t nchunks;
    _Atomic int64_t avail; /* bytes readable from the start */

    _Atomic int state; /* cache_obj_state */
    cache_fail fail;
    int pass;                /* not storable: only the starting request reads it */
    int in_index;            /* guarded by the shard lock */
    struct cache_obj *hnext; /* shard bucket chain */
    int head_ready;          /* CACHE_EV_HEAD was sent (object lock) */
    evict_node evict;        /* memory-tier eviction node (evict.hash = hash) */

    pthread_mutex_t lock; /* waiter list, fetch bookkeeping */
    cache_waiter *waiters;
    cache_waiter *owner;               /* the request that created it (NULL once it left) */
    struct cache_obj *stale;           /* the expired version being revalidated (a reference) */
    int refreshed;                     /* built from stale after the origin's 304 */
    int use_stale;                     /* the refresh failed: waiters serve `stale` instead */
    int background;                    /* a stale-while-revalidate refresh: lookups serve `stale` */
    _Atomic int on_disk;               /* a verified copy is committed to the disk tier */
    int disk_only;                     /* index entry of a stored file, body not in memory */
    _Atomic int evicted_while_filling; /* charge it to the memory tier again at completion */
    struct cache_fill *fill;           /* while FILLING; touched only on the filling worker */
    /* The disk tier refused it (less popular than what it would displace): 1 + the
     * sketch's estimate then, 0 = not refused. When the memory tier evicts it after
     * it was asked for again, it is offered to the disk tier once more. */
    _Atomic unsigned disk_refused;
} cache_obj;

void cache_obj_ref(cache_obj *o);
void cache_obj_unref(cache_obj *o);

/* Engine counters (atomics; summed for metrics in a later issue). */
typedef struct cache_stats {
    _Atomic uint64_t hits, misses, refresh_hits, collapsed, origin_fetches, passes;
    _Atomic uint64_t bytes_from_memory, bytes_from_disk, bytes_from_origin;
    _Atomic uint64_t evictions, objects, bytes, fill_wait_us, invalidations;
    /* disk tier: files it started writing; objects it did not admit (its
     * frequency admission, or the byte cap at commit: eviction, not failure);
     * writes the filesystem failed (ENOSPC, EIO, EFBIG...) */
    _Atomic uint64_t disk_writes, disk_refusals, disk_write_errors;
} cache_stats;

typedef struct sh_cache sh_cache;

/* Create the engine for a config (memory tier sized by cfg->cache; the disk
 * tier is opened and its index restored when cfg->cache.disk_path is set).
 * NULL with a message in err on failure. */
sh_cache *sh_cache_new(const sh_config *cfg, char *err, size_t errlen);
void sh_cache_free(sh_cache *c);
cache_stats *sh_cache_stats(sh_cache *c);

/*
 * Build the cache key for a request: host (lower-cased) + path exactly as
 * received + the query if the behavior forwards it + the values of the
 * forwarded headers and cookies. Returns a sh_malloc'd buffer and its length.
 */
char *sh_cache_key(const char *host, size_t hlen, const char *path, size_t plen, const char *query,
                   size_t qlen, const sh_behavior_conf *b, const sh_header *h, size_t n,
                   size_t *keylen);

typedef enum {
    CACHE_HIT,    /* a complete fresh object */
    CACHE_JOINED, /* a fill in progress: register a waiter */
    CACHE_MISS,   /* a new FILLING object was created: start its fill */
    CACHE_LOAD,   /* a new FILLING object to read from disk: cache_persist_load() it */
    CACHE_DISK,   /* a disk-only object to send from its file: cache_persist_open_file() */
} cache_lookup_rc;

/*
 * Find the object for key (a ref is returned in *out), or create a FILLING
 * one when create is set (else CACHE_MISS with *out = NULL: HEAD requests do
 * not start fills). Expired and invalidated objects are replaced (their bytes
 * live on while referenced). An object within its stale-while-revalidate
 * window is returned as a HIT and *refresh receives a new FILLING object (a
 * reference) whose fill the caller starts in the background; until it
 * completes, lookups keep answering with the stale copy.
 */
cache_lookup_rc sh_cache_lookup(sh_cache *c, const char *key, size_t keylen, int64_t now,
                                int create, cache_obj **out, cache_obj **refresh);

/* Register a waiter on a FILLING object. Returns the events already
 * satisfied (e.g. HEAD|DATA) so the caller can act at once; 0 if none. */
unsigned cache_waiter_attach(cache_obj *o, cache_waiter *wt);
/* Take wt out of o's waiter list; the caller holds o->lock. */
void cache_waiter_unlink_locked(cache_obj *o, cache_waiter *wt);
/* Unregister (idempotent); safe against a concurrent notification. */
void cache_waiter_detach(cache_waiter *wt);

/* Record an invalidation: "/books/x.epub" exact, or "/books/" followed by a star (prefix),
 * applying to objects stored before now. Returns 0, or -1 for a bad path. */
int sh_cache_invalidate(sh_cache *c, const char *path, int64_t now);

/* ---- fills (proxy/cache/fill.c) ---- */

/*
 * Start filling a new object from the origin on worker w. oreq describes the
 * origin request (copied). behavior decides storability and TTLs. The fill
 * runs to completion even if every waiter goes away (when the response is
 * storable).
 */
void cache_fill_start(cache_obj *o, struct sh_worker *w, const struct origin_request *oreq,
                      const sh_behavior_conf *behavior);

/* A pass object's single reader consumed up to off: release old chunks and
 * resume the origin if it was paused for this reader. Worker thread of the fill. */
void cache_fill_consumed(cache_obj *o, int64_t off);

/* The owner of a pass object went away: stop its fetch (filling worker only). */
void cache_fill_abandon(cache_obj *o);
/* Worker shutdown: cancel every fill the worker runs (no waiter may remain). */
void cache_fills_shutdown(struct sh_worker *w);

/* Wake every waiter of o (called with o->lock held). */
void cache_wake_all_locked(cache_obj *o, unsigned events);
/* Wake a waiter on its worker (called with the object lock held). */
void cache_wake(cache_waiter *wt, unsigned events);

/* ---- engine internals shared by cache.c and fill.c ---- */

/* Remove o from the index and the memory tier (idempotent). */
void cache_index_remove(cache_obj *o);
/* Account a storable object in the memory tier, evicting others as needed.
 * -1 if the policy refuses it (too large): the caller makes it a pass. */
int cache_mem_admit(cache_obj *o);
/* A refresh failed and the stale version may be served: put it back in the
 * index in place of the failed object. */
void cache_index_restore(cache_obj *failed, cache_obj *stale);
/* A fill completed: release the expired version it replaced. */
void cache_obj_drop_stale(cache_obj *o);
/* The disk tier (NULL when cache.disk.path is empty) and its totals. */
struct cache_persist *cache_persist_of(sh_cache *c);
uint64_t cache_disk_objects(sh_cache *c);
uint64_t cache_disk_bytes(sh_cache *c);
/* The engine's config snapshot. */
const sh_config *cache_config(const sh_cache *c);

#endif
