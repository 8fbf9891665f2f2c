/*
 * Byte-bounded eviction policy for the cache tiers (memory now, disk later).
 *
 * The policy never owns objects: the cache embeds an evict_node in each of its
 * objects and hands the node in. The policy only orders nodes, keeps the sum of
 * their sizes within a capacity, and says which ones to drop. Victims are
 * returned to the caller (already unlinked) instead of being passed to a
 * callback, so the caller never takes its own locks (index shards, object
 * refcounts) while the policy lock is held. Bytes of a victim stay alive for as
 * long as the caller's refcount says so; the policy never touches them.
 *
 * Kinds (numbers for the e-book workload are in bench/README.md "Eviction policy"):
 *   EVICT_LRU     the baseline: a list, a hit moves the node to the head (takes
 *                 the policy lock on every hit).
 *   EVICT_SIEVE   SIEVE (Zhang et al., NSDI'24): one FIFO and a "hand" that
 *                 sweeps from the oldest node, sparing visited nodes once.
 *   EVICT_S3FIFO  S3-FIFO (Yang et al., SOSP'23): a small FIFO (~10 % of the
 *                 bytes) where new objects prove themselves, a main FIFO with a
 *                 2-bit frequency and reinsertion, and a ghost FIFO remembering
 *                 the hashes of objects evicted from small so that a quick
 *                 return goes straight to main. Queue and ghost limits are in
 *                 bytes, so objects of any size are handled.
 *
 * Threads: every function may be called from any thread. evict_hit() is
 * lock-free for SIEVE and S3-FIFO (one relaxed load and at most one relaxed
 * store to the node; none once the counter is saturated, so hot objects do not
 * bounce cache lines between workers). Insert, remove and eviction take one
 * mutex per policy; they only run on misses and invalidations.
 */
#ifndef SHIELD_CACHE_EVICT_H
#define SHIELD_CACHE_EVICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum evict_kind { EVICT_LRU = 0, EVICT_SIEVE, EVICT_S3FIFO, EVICT_KIND_COUNT } evict_kind;

/* Which list a node is on (evict_node.queue). LRU and SIEVE use EVICT_Q_MAIN only. */
enum {
    EVICT_Q_NONE = 0, /* not in any policy: never inserted, evicted, refused or removed */
    EVICT_Q_MAIN,
    EVICT_Q_SMALL,
};

/*
 * Intrusive node, embedded in the cache's object. Initialise it with
 * evict_node_init() before the object can be seen by other threads (evict_hit()
 * may run on it from then on); hash and size may be assigned directly while the
 * node is not in a policy. All fields except freq belong to the policy while the
 * node is linked; queue is only meaningful to the caller once it knows the node
 * is out (a victim, or evict_remove() returned).
 */
typedef struct evict_node {
    struct evict_node *prev; /* toward the head (newer end) of its list; policy lock */
    struct evict_node *next; /* toward the tail (older end) of its list; policy lock */
    uint64_t hash;           /* hash of the cache key; S3-FIFO remembers it in the ghost */
    uint64_t size;           /* bytes charged against the capacity; fixed while linked */
    _Atomic uint8_t freq;    /* hits since insert, saturating at 3 (SIEVE: visited bit) */
    uint8_t queue;           /* EVICT_Q_*; policy lock */
} evict_node;

/* Prepare a node for evict_insert(). size is what the object will cost in the tier. */
void evict_node_init(evict_node *n, uint64_t hash, uint64_t size);

/* Tuning; evict_opts_default() gives the values used when evict_new() is called. */
typedef struct evict_opts {
    /* S3-FIFO: share of the capacity for the small FIFO, in percent (1..90; default 10). */
    unsigned small_percent;
    /* S3-FIFO: hits an object needs while in small to move to main instead of being
     * evicted (1..3; default 1, see bench/README.md). */
    unsigned promote_hits;
    /* Refuse objects larger than this share of the capacity, in percent (1..100;
     * default 100: only objects that could never fit are refused). */
    unsigned max_object_percent;
    /* Keep a frequency sketch (TinyLFU: a count-min sketch of 8-bit counters, 4 per
     * key, halved every 10 x width recorded accesses) fed by evict_touch(), which
     * evict_admit() consults. Default 0: no sketch, evict_touch() is a no-op. */
    unsigned sketch;
} evict_opts;

void evict_opts_default(evict_opts *o);

typedef struct evict_policy evict_policy;

/* A policy of the given kind holding at most capacity_bytes (> 0) bytes of nodes.
 * Aborts on out-of-memory like sh_malloc. */
evict_policy *evict_new(evict_kind kind, uint64_t capacity_bytes);
/* Same with explicit options (out-of-range values are clamped). o may be NULL. */
evict_policy *evict_new_opts(evict_kind kind, uint64_t capacity_bytes, const evict_opts *o);
/* Free the policy. Nodes still linked are simply forgotten: they belong to the caller. */
void evict_free(evict_policy *p);

/*
 * Record a cache hit on n. Lock-free for SIEVE and S3-FIFO; takes the lock for LRU.
 * Safe on a node that was evicted or removed meanwhile (the caller holds a
 * reference, so the memory is valid): the hit is then ignored.
 */
void evict_hit(evict_policy *p, evict_node *n);

/*
 * Admit n (initialised, not in any policy) with n->size bytes. Evicts as needed
 * so that the bytes in the policy never exceed the capacity, and stores the
 * victims, already unlinked (queue == EVICT_Q_NONE), in victims[0..return).
 * The caller then drops them from its index and releases its reference.
 *
 * *admitted (may be NULL) tells whether n is now in the policy. It is not when
 * n->size exceeds max_object_percent of the capacity (return 0: no victims), or
 * when max_victims victims were not enough to make room (return max_victims):
 * the victims taken so far must still be dropped, and n is refused so that the
 * byte bound holds. In that case calling again with the same node continues
 * where the first call stopped; with e-books (0.2-200 MB) one large object may
 * displace hundreds of small ones, so loop:
 *
 *     do {
 *         nv = evict_insert(p, n, victims, 64, &admitted);
 *         drop(victims, nv);   // caller's index + unref, policy lock not held
 *     } while (!admitted && nv == 64);
 */
size_t evict_insert(evict_policy *p, evict_node *n, evict_node **victims, size_t max_victims,
                    bool *admitted);

/*
 * Record one access to the key whose hash is given (a lookup, hit or miss, in any
 * tier) in the policy's frequency sketch; a no-op without opts.sketch. Lock-free:
 * at most four relaxed byte stores, none once the key's counters are saturated,
 * plus one relaxed add to a shared counter of accesses.
 */
void evict_touch(evict_policy *p, uint64_t hash);
/* The sketch's estimate of the accesses to hash (0 without a sketch; saturates at 255). */
unsigned evict_estimate(const evict_policy *p, uint64_t hash);

/*
 * evict_insert() with frequency admission (TinyLFU), for SIEVE policies with
 * opts.sketch; any other policy simply calls evict_insert(). A node may only
 * displace nodes that the sketch does not estimate as more popular than itself:
 * one sweep of SIEVE's hand, from where it stands, skips visited nodes (clearing
 * their bit, as SIEVE does) and nodes whose estimate is higher than n's, and
 * picks the others. When that sweep frees enough bytes, they are the victims and
 * n is admitted. When it cannot, n is refused and nothing is evicted (return 0,
 * *admitted false, counted in evict_stats.rejected): keeping the bytes that are
 * asked for more often than n is worth more than storing n. When max_victims
 * victims are not enough, they are evicted and returned with *admitted false, as
 * with evict_insert(): call again.
 *
 * With equal estimates the newcomer wins, so a stream of objects each asked for
 * once behaves as plain SIEVE.
 */
size_t evict_admit(evict_policy *p, evict_node *n, evict_node **victims, size_t max_victims,
                   bool *admitted);

/*
 * Unlink n (invalidation, replacement by a newer version, a failed fill).
 * Idempotent: returns false, touching nothing, for a node not in the policy
 * (never inserted, refused, already evicted or removed). Not recorded in the ghost.
 */
bool evict_remove(evict_policy *p, evict_node *n);

/* Bytes of the nodes in the policy. Lock-free, for metrics. */
uint64_t evict_used(const evict_policy *p);
/* Capacity given to evict_new(). */
uint64_t evict_capacity(const evict_policy *p);
/* Number of nodes in the policy. Lock-free. */
uint64_t evict_count(const evict_policy *p);
/* Number of nodes evicted to make room since creation (not removals or refusals). Lock-free. */
uint64_t evict_evictions(const evict_policy *p);

/* A consistent snapshot of the counters, taken under the lock. */
typedef struct evict_stats {
    uint64_t capacity;      /* bytes */
    uint64_t used;          /* bytes in the policy */
    uint64_t objects;       /* nodes in the policy */
    uint64_t small_bytes;   /* S3-FIFO: bytes in the small FIFO (0 for other kinds) */
    uint64_t evictions;     /* nodes evicted to make room */
    uint64_t refused;       /* insertions refused (too large, or victims array too short) */
    uint64_t promotions;    /* S3-FIFO: small -> main moves of objects hit while in small */
    uint64_t ghost_hits;    /* S3-FIFO: insertions that went straight to main via the ghost */
    uint64_t ghost_entries; /* S3-FIFO: hashes remembered in the ghost */
    uint64_t rejected;      /* evict_admit(): nodes refused as less popular than the victims */
} evict_stats;

void evict_get_stats(evict_policy *p, evict_stats *out);

/* "lru", "sieve", "s3fifo" (NULL for an unknown kind). */
const char *evict_kind_name(evict_kind kind);
/* Parse a name as printed by evict_kind_name (case-insensitive). Returns 0 or -1. */
int evict_kind_parse(const char *name, evict_kind *out);

#endif
