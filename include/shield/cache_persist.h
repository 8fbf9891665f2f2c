/*
 * The disk tier inside the engine (proxy/cache/persist.c): I/O threads over the
 * disk store. Workers only enqueue; every blocking call runs on those threads.
 */
#ifndef SHIELD_CACHE_PERSIST_H
#define SHIELD_CACHE_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#include "shield/cache.h"
#include "shield/cache_disk.h"

typedef struct cache_persist cache_persist;

/* Open the store, restore the invalidation rules, start the I/O threads and
 * the scan that rebuilds the index in the background (no body is read; the
 * log line "cache: disk DIR: N objects restored in S s (...), B bytes" marks
 * its end). Returns at once: Shield serves during the scan, see
 * cache_persist_probe. NULL with a message in err if the directory cannot be used. */
cache_persist *cache_persist_open(sh_cache *c, const char *dir, uint64_t max_bytes, char *err,
                                  size_t errlen);
/* Stop the scan, finish queued jobs and commits, stop the threads, close the store. */
void cache_persist_close(cache_persist *p);
/* Write a COMPLETE storable object (verified length and MD5 again at commit). */
void cache_persist_write(cache_persist *p, cache_obj *o);
/* Read a disk object's body into the FILLING object o (cache_load_* below), or
 * run the probe o (see cache_persist_probe). */
void cache_persist_load(cache_persist *p, cache_obj *o);
/* Delete a stored object (evicted from the disk tier): queued ahead of other
 * jobs (an unlink is cheap, and it gives budget back to the writes behind it). */
void cache_persist_remove(cache_persist *p, const char *key, size_t keylen);
/* The same, now, on the calling thread: only from I/O threads (or the
 * committer) that hold no leaf lock of the store. */
void cache_persist_remove_now(cache_persist *p, const char *key, size_t keylen);
/* Append an invalidation rule to the persistent log, now (blocking: call it
 * off the event loops, e.g. from the admin thread). 0 or -1. */
int cache_persist_rule_sync(cache_persist *p, const char *pattern, int64_t time_us);
/*
 * For sh_cache_lookup, on an index miss that would create a fill: 1 while the
 * start-up scan has not reached key's file and no probe has found it absent.
 * The caller then indexes a new FILLING object (size -1, no response) and
 * returns CACHE_LOAD, so the requester hands it to cache_persist_load: an I/O
 * thread opens key's file directly, indexes it if present (as the scan would)
 * and fails the probe with CACHE_FAIL_DISK, which sends every waiter back to
 * the lookup: a Hit from disk if the file was there, fresh and not
 * invalidated, else an origin fetch. Cheap: one atomic load once the scan is done.
 */
int cache_persist_probe(cache_persist *p, const char *key, size_t keylen);
/* Progress of the start-up scan (running, leaves, objects, bytes so far). */
void cache_persist_scan_progress(cache_persist *p, disk_scan_state *out);
/* Bytes used on disk; jobs not yet done (including writes not yet committed). */
uint64_t cache_persist_used(cache_persist *p);
size_t cache_persist_pending(cache_persist *p);

/*
 * Opening a stored file for sendfile, on an I/O thread (the whole file is
 * verified the first time in this process). Shared by the requesting
 * connection and the job: notify() runs on the worker with CACHE_EV_DONE
 * (fd and body_off set; the taker closes fd) or CACHE_EV_FAIL (the stored copy
 * is gone: look up again).
 */
typedef struct cache_file_req {
    cache_waiter waiter; /* waiter.worker / waiter.notify set by the caller */
    void *ud;
    pthread_mutex_t lock;
    int cancelled;
    _Atomic int refs;
    cache_obj *o;
    int fd;
    uint64_t body_off;
} cache_file_req;

cache_file_req *cache_persist_open_file(cache_persist *p, cache_obj *o, struct sh_worker *w,
                                        void (*notify)(cache_waiter *, unsigned), void *ud);
/* The requester is done with r (before or after its notify): no notify after this. */
void cache_file_req_release(cache_file_req *r);

/* ---- callbacks into the engine (proxy/cache/cache.c), from I/O threads ---- */

/* Attach the disk tier to the engine (before the scan restores the index). */
void cache_set_persist(sh_cache *c, cache_persist *p);
/* A disk-only object (no body in memory) for a stored key. */
cache_obj *cache_obj_new_disk(sh_cache *c, const char *key, size_t keylen);
/* The scan found o (a disk-only object with its response decoded). */
void cache_disk_restored(sh_cache *c, cache_obj *o, uint64_t footprint);
/* Before o is written, on an I/O thread: charge its file's footprint
 * (disk_footprint) to the disk budget, deleting the files it displaces before
 * returning, or refuse it by frequency admission, so that a refused object
 * costs no write. Returns 0 when refused (do not write), 1 when admitted as a
 * new key, 2 when it replaces a key already stored. */
int cache_disk_reserve(sh_cache *c, cache_obj *o, uint64_t footprint);
/* Whether o's key still holds its place in the disk budget (another object's
 * admission may have displaced it while it was written). */
int cache_disk_wanted(sh_cache *c, const cache_obj *o);
/* o was committed to disk / could not be written; reserved is what
 * cache_disk_reserve returned for it (a new key's charge is given back). */
void cache_disk_committed(sh_cache *c, cache_obj *o);
void cache_disk_write_failed(sh_cache *c, cache_obj *o, int reserved);
/* Whether o's file was verified in this process (set = mark it verified). */
int cache_disk_verified(sh_cache *c, const cache_obj *o, int set);
/* o's stored file failed: forget it (index and disk accounting). */
void cache_disk_lost(sh_cache *c, cache_obj *o);
/* A persisted invalidation rule, at start. */
void cache_rule_restore(sh_cache *c, const char *pattern, int64_t time_us);
/* Loading o from disk: the file verified (head), a chunk read, done, failed. */
void cache_load_head(cache_obj *o);
void cache_load_chunk(cache_obj *o, size_t i, cache_chunk *ch);
void cache_load_done(cache_obj *o);
void cache_load_failed(cache_obj *o);

#endif
