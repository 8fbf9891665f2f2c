/*
 * Eviction policies: LRU (baseline), SIEVE and S3-FIFO over intrusive nodes.
 * See include/shield/cache_evict.h for the contract and bench/README.md for why
 * S3-FIFO is the default of the memory tier.
 *
 * Lists run from head (newest) to tail (oldest): node->next points toward the
 * tail, node->prev toward the head. Everything but node->freq is guarded by
 * p->lock; freq is a relaxed atomic so hits never take the lock (except LRU).
 */
#include "shield/cache_evict.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include "shield/alloc.h"

#define FREQ_MAX 3

typedef struct evict_list {
    evict_node *head, *tail;
    uint64_t bytes;
    uint64_t count;
} evict_list;

/*
 * S3-FIFO ghost: a FIFO of (hash, size) of objects evicted from the small
 * queue, bounded in bytes like the main queue (libCacheSim does the same for
 * variable sizes), plus an open-addressing table hash -> sequence number for
 * O(1) membership. Ring slot of sequence s is ring[s & ring_mask]; a slot whose
 * hash is 0 is dead (taken back by an insert, or superseded by a newer entry
 * for the same hash) and is skipped when it reaches the front. Hash 0 is
 * stored as 1 so that 0 can mark empty table slots.
 */
typedef struct ghost_ent {
    uint64_t hash;
    uint64_t size;
} ghost_ent;

typedef struct ghost {
    ghost_ent *ring;
    uint64_t ring_mask;
    uint64_t first, end; /* live sequence numbers are in [first, end) */
    uint64_t bytes;      /* sum of sizes of live entries */
    uint64_t live;       /* live entries */
    uint64_t max_bytes;
    uint64_t *keys; /* table: hash (0 = empty) */
    uint64_t *seqs; /* table: sequence number of the hash's ring entry */
    uint64_t tab_mask;
    uint64_t tab_count;
} ghost;

/*
 * TinyLFU frequency sketch: a count-min sketch of width 8-bit counters; each key
 * has SKETCH_ROWS of them (one per row, rows laid side by side) and its estimate is
 * the smallest. Counters are relaxed atomics: a racing increment may be lost, and
 * aging may race with increments, which only makes an estimate approximate.
 */
#define SKETCH_ROWS 4
#define SKETCH_MAX  255

typedef struct sketch {
    _Atomic uint8_t *c;       /* SKETCH_ROWS * width counters; NULL = no sketch */
    uint64_t width_mask;      /* width - 1 (width is a power of two) */
    uint64_t sample;          /* accesses between two halvings */
    _Atomic uint64_t touches; /* accesses since the last halving */
} sketch;

struct evict_policy {
    pthread_mutex_t lock;
    evict_kind kind;
    evict_opts opts;
    uint64_t capacity;
    uint64_t small_cap;  /* S3-FIFO */
    uint64_t max_object; /* larger nodes are refused */
    evict_list main;     /* LRU, SIEVE, S3-FIFO main */
    evict_list small;    /* S3-FIFO small */
    evict_node *hand;    /* SIEVE: next node to examine; NULL = start at the tail */
    ghost ghost;         /* S3-FIFO */
    bool has_evicted;    /* S3-FIFO: the cache has been full once */
    _Atomic uint64_t used;
    _Atomic uint64_t objects;
    _Atomic uint64_t evictions;
    uint64_t refused, promotions, ghost_hits, rejected;
    sketch sk;
};

static const char *const kind_names[EVICT_KIND_COUNT] = {"lru", "sieve", "s3fifo"};

/* ---- lists ------------------------------------------------------------------------------- */

static void list_push_head(evict_list *l, evict_node *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
    l->bytes += n->size;
    l->count++;
}

static void list_unlink(evict_list *l, evict_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
    l->bytes -= n->size;
    l->count--;
}

static evict_list *list_of(evict_policy *p, const evict_node *n)
{
    return n->queue == EVICT_Q_SMALL ? &p->small : &p->main;
}

/* ---- ghost ------------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/* Table slot holding hash, or the empty slot where it would go. */
static uint64_t tab_find(const ghost *g, uint64_t hash)
{
    uint64_t i = mix64(hash) & g->tab_mask;
    while (g->keys[i] && g->keys[i] != hash)
        i = (i + 1) & g->tab_mask;
    return i;
}

static void tab_put(ghost *g, uint64_t hash, uint64_t seq);

static void tab_grow(ghost *g)
{
    uint64_t *keys = g->keys, *seqs = g->seqs, n = g->tab_mask + 1;

    g->tab_mask = n * 2 - 1;
    g->keys = sh_calloc(n * 2, sizeof(uint64_t));
    g->seqs = sh_calloc(n * 2, sizeof(uint64_t));
    g->tab_count = 0;
    for (uint64_t i = 0; i < n; i++)
        if (keys[i]) tab_put(g, keys[i], seqs[i]);
    sh_free(keys);
    sh_free(seqs);
}

static void tab_put(ghost *g, uint64_t hash, uint64_t seq)
{
    if ((g->tab_count + 1) * 2 > g->tab_mask + 1) tab_grow(g);
    uint64_t i = tab_find(g, hash);
    if (!g->keys[i]) g->tab_count++;
    g->keys[i] = hash;
    g->seqs[i] = seq;
}

/* Linear-probing deletion by backward shift: no tombstones to age. */
static void tab_del_slot(ghost *g, uint64_t i)
{
    uint64_t j = i;

    g->keys[i] = 0;
    g->tab_count--;
    for (;;) {
        j = (j + 1) & g->tab_mask;
        if (!g->keys[j]) return;
        uint64_t home = mix64(g->keys[j]) & g->tab_mask;
        /* Move keys[j] into the hole at i unless its home lies cyclically in (i, j]. */
        if (i <= j ? (home > i && home <= j) : (home > i || home <= j)) continue;
        g->keys[i] = g->keys[j];
        g->seqs[i] = g->seqs[j];
        g->keys[j] = 0;
        i = j;
    }
}

static void ghost_init(ghost *g, uint64_t max_bytes)
{
    memset(g, 0, sizeof(*g));
    g->max_bytes = max_bytes;
    g->ring_mask = 63;
    g->ring = sh_calloc(64, sizeof(ghost_ent));
    g->tab_mask = 127;
    g->keys = sh_calloc(128, sizeof(uint64_t));
    g->seqs = sh_calloc(128, sizeof(uint64_t));
}

static void ghost_destroy(ghost *g)
{
    sh_free(g->ring);
    sh_free(g->keys);
    sh_free(g->seqs);
}

/* Kill the ring entry of the hash in table slot i and drop the slot. */
static void ghost_kill(ghost *g, uint64_t i)
{
    ghost_ent *e = &g->ring[g->seqs[i] & g->ring_mask];

    g->bytes -= e->size;
    g->live--;
    e->hash = 0;
    e->size = 0;
    tab_del_slot(g, i);
}

static void ghost_pop(ghost *g)
{
    ghost_ent *e = &g->ring[g->first & g->ring_mask];

    g->first++;
    if (e->hash) ghost_kill(g, tab_find(g, e->hash));
}

/* Remember hash; entry_cap bounds the ring (live + dead) in entries. */
static void ghost_add(ghost *g, uint64_t hash, uint64_t size, uint64_t entry_cap)
{
    if (!hash) hash = 1;
    uint64_t i = tab_find(g, hash);
    if (g->keys[i]) ghost_kill(g, i);
    if (g->end - g->first > g->ring_mask) {
        /* Full ring: double it. Live sequence numbers span less than the old size,
         * so they map to distinct slots of the new one. */
        uint64_t n = g->ring_mask + 1;
        ghost_ent *ring = sh_calloc(n * 2, sizeof(ghost_ent));
        for (uint64_t s = g->first; s != g->end; s++)
            ring[s & (n * 2 - 1)] = g->ring[s & (n - 1)];
        sh_free(g->ring);
        g->ring = ring;
        g->ring_mask = n * 2 - 1;
    }
    g->ring[g->end & g->ring_mask] = (ghost_ent){hash, size};
    tab_put(g, hash, g->end);
    g->end++;
    g->bytes += size;
    g->live++;
    while (g->first != g->end && (g->bytes > g->max_bytes || g->end - g->first > entry_cap))
        ghost_pop(g);
}

/* Forget hash if remembered; true when it was. */
static bool ghost_take(ghost *g, uint64_t hash)
{
    if (!hash) hash = 1;
    uint64_t i = tab_find(g, hash);
    if (!g->keys[i]) return false;
    ghost_kill(g, i);
    return true;
}

/* ---- frequency sketch -------------------------------------------------------------------- */

static void sketch_init(sketch *sk, uint64_t capacity_bytes)
{
    /* About one counter per 16 KiB of capacity (e-books are 0.2-200 MB, so
     * several counters per object that fits), within 4 KiB..4 MiB per row. */
    uint64_t want = capacity_bytes / (16 * 1024), w = 4096;
    while (w < want && w < (1u << 22))
        w <<= 1;
    sk->c = sh_calloc(SKETCH_ROWS * w, sizeof(*sk->c));
    sk->width_mask = w - 1;
    sk->sample = 10 * w;
    atomic_init(&sk->touches, 0);
}

static uint64_t sketch_slot(const sketch *sk, uint64_t hash, unsigned row)
{
    return (uint64_t)row * (sk->width_mask + 1) +
           (mix64(hash + (row + 1) * 0x9e3779b97f4a7c15ULL) & sk->width_mask);
}

/* Halve every counter, so that what was popular long ago fades (TinyLFU's reset). */
static void sketch_age(sketch *sk)
{
    for (uint64_t i = 0; i < SKETCH_ROWS * (sk->width_mask + 1); i++) {
        uint8_t v = atomic_load_explicit(&sk->c[i], memory_order_relaxed);
        if (v) atomic_store_explicit(&sk->c[i], (uint8_t)(v / 2), memory_order_relaxed);
    }
}

void evict_touch(evict_policy *p, uint64_t hash)
{
    sketch *sk = &p->sk;
    bool counted = false;
    if (!sk->c) return;
    for (unsigned r = 0; r < SKETCH_ROWS; r++) {
        _Atomic uint8_t *c = &sk->c[sketch_slot(sk, hash, r)];
        uint8_t v = atomic_load_explicit(c, memory_order_relaxed);
        if (v < SKETCH_MAX) {
            atomic_store_explicit(c, (uint8_t)(v + 1), memory_order_relaxed);
            counted = true;
        }
    }
    /* Saturated keys are not counted toward aging: the hottest keys then cost no
     * store at all. Exactly one caller sees the count reach the sample. */
    if (counted &&
        atomic_fetch_add_explicit(&sk->touches, 1, memory_order_relaxed) + 1 == sk->sample) {
        sketch_age(sk);
        atomic_fetch_sub_explicit(&sk->touches, sk->sample / 2, memory_order_relaxed);
    }
}

unsigned evict_estimate(const evict_policy *p, uint64_t hash)
{
    const sketch *sk = &p->sk;
    unsigned est = SKETCH_MAX;
    if (!sk->c) return 0;
    for (unsigned r = 0; r < SKETCH_ROWS; r++) {
        unsigned v = atomic_load_explicit(&sk->c[sketch_slot(sk, hash, r)], memory_order_relaxed);
        if (v < est) est = v;
    }
    return est;
}

/* ---- policies ---------------------------------------------------------------------------- */

static uint8_t freq_get(evict_node *n)
{
    uint8_t f = atomic_load_explicit(&n->freq, memory_order_relaxed);
    return f > FREQ_MAX ? FREQ_MAX : f;
}

static void freq_set(evict_node *n, uint8_t f)
{
    atomic_store_explicit(&n->freq, f, memory_order_relaxed);
}

static evict_node *lru_evict_one(evict_policy *p)
{
    evict_node *n = p->main.tail;
    if (n) list_unlink(&p->main, n);
    return n;
}

/*
 * SIEVE: the hand walks from the tail toward the head, clearing visited bits,
 * and evicts the first unvisited node; new nodes enter at the head, survivors
 * are not moved. The sweep is bounded so that hits racing with it (they set
 * bits without the lock) cannot keep it going forever.
 */
static evict_node *sieve_evict_one(evict_policy *p)
{
    evict_node *n = p->hand;
    uint64_t budget = p->main.count + 1;

    while (p->main.count) {
        if (!n) n = p->main.tail;
        if (freq_get(n) && budget-- > 0) {
            freq_set(n, 0);
            n = n->prev;
            continue;
        }
        p->hand = n->prev;
        list_unlink(&p->main, n);
        return n;
    }
    return NULL;
}

/*
 * S3-FIFO eviction step (Yang et al., SOSP'23, Algorithm 1, made byte-based as
 * in libCacheSim): evict from main while main is over its share (or small is
 * empty), otherwise from small. Small's tail moves to main if it was hit
 * promote_hits times (with its counter reset, so it must be hit again in main
 * to be reinserted there), else it is evicted and its hash goes to the ghost.
 * Main's tail is reinserted at the head with its counter decremented while the
 * counter is non-zero (2-bit CLOCK), else evicted. Main's sweep is bounded like
 * SIEVE's for the same reason.
 */
static evict_node *s3fifo_evict_one(evict_policy *p)
{
    uint64_t budget = (p->main.count + p->small.count) * (FREQ_MAX + 1) + 1;

    for (;;) {
        if (p->small.count && p->main.bytes <= p->capacity - p->small_cap) {
            evict_node *n = p->small.tail;
            list_unlink(&p->small, n);
            if (freq_get(n) >= p->opts.promote_hits) {
                freq_set(n, 0);
                n->queue = EVICT_Q_MAIN;
                list_push_head(&p->main, n);
                p->promotions++;
                continue;
            }
            ghost_add(&p->ghost, n->hash, n->size, 2 * atomic_load(&p->objects) + 1024);
            return n;
        }
        evict_node *n = p->main.tail;
        if (!n) return NULL; /* main is over its share only when it has nodes */
        uint8_t f = freq_get(n);
        list_unlink(&p->main, n);
        if (f && budget-- > 0) {
            freq_set(n, f - 1);
            list_push_head(&p->main, n);
            continue;
        }
        return n;
    }
}

static evict_node *evict_one(evict_policy *p)
{
    switch (p->kind) {
    case EVICT_SIEVE:
        return sieve_evict_one(p);
    case EVICT_S3FIFO:
        return s3fifo_evict_one(p);
    default:
        return lru_evict_one(p);
    }
}

/* ---- public API -------------------------------------------------------------------------- */

void evict_node_init(evict_node *n, uint64_t hash, uint64_t size)
{
    n->prev = n->next = NULL;
    n->hash = hash;
    n->size = size;
    atomic_init(&n->freq, 0);
    n->queue = EVICT_Q_NONE;
}

void evict_opts_default(evict_opts *o)
{
    o->small_percent = 10;
    o->promote_hits = 1;
    o->max_object_percent = 100;
    o->sketch = 0;
}

static unsigned clampu(unsigned v, unsigned lo, unsigned hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

evict_policy *evict_new(evict_kind kind, uint64_t capacity_bytes)
{
    return evict_new_opts(kind, capacity_bytes, NULL);
}

evict_policy *evict_new_opts(evict_kind kind, uint64_t capacity_bytes, const evict_opts *o)
{
    evict_policy *p = sh_calloc(1, sizeof(*p));

    assert((unsigned)kind < EVICT_KIND_COUNT);
    assert(capacity_bytes > 0);
    pthread_mutex_init(&p->lock, NULL);
    p->kind = kind;
    if (o)
        p->opts = *o;
    else
        evict_opts_default(&p->opts);
    p->opts.small_percent = clampu(p->opts.small_percent, 1, 90);
    p->opts.promote_hits = clampu(p->opts.promote_hits, 1, FREQ_MAX);
    p->opts.max_object_percent = clampu(p->opts.max_object_percent, 1, 100);
    p->capacity = capacity_bytes;
    /* Divide first: capacities near UINT64_MAX must not overflow. */
    p->small_cap = capacity_bytes / 100 * p->opts.small_percent +
                   capacity_bytes % 100 * p->opts.small_percent / 100;
    p->max_object = p->opts.max_object_percent == 100
                        ? capacity_bytes
                        : capacity_bytes / 100 * p->opts.max_object_percent +
                              capacity_bytes % 100 * p->opts.max_object_percent / 100;
    if (kind == EVICT_S3FIFO) ghost_init(&p->ghost, capacity_bytes - p->small_cap);
    p->opts.sketch = p->opts.sketch ? 1 : 0;
    if (p->opts.sketch) sketch_init(&p->sk, capacity_bytes);
    return p;
}

void evict_free(evict_policy *p)
{
    if (!p) return;
    if (p->kind == EVICT_S3FIFO) ghost_destroy(&p->ghost);
    sh_free(p->sk.c);
    pthread_mutex_destroy(&p->lock);
    sh_free(p);
}

void evict_hit(evict_policy *p, evict_node *n)
{
    if (p->kind == EVICT_LRU) {
        pthread_mutex_lock(&p->lock);
        if (n->queue != EVICT_Q_NONE && p->main.head != n) {
            list_unlink(&p->main, n);
            list_push_head(&p->main, n);
        }
        pthread_mutex_unlock(&p->lock);
        return;
    }
    /* Racy read-modify-write on purpose: a lost increment only makes the
     * counter approximate, and skipping the store once saturated keeps the
     * hottest objects' cache lines shared instead of bouncing between cores. */
    uint8_t f = atomic_load_explicit(&n->freq, memory_order_relaxed);
    uint8_t max = p->kind == EVICT_SIEVE ? 1 : FREQ_MAX;
    if (f < max) atomic_store_explicit(&n->freq, (uint8_t)(f + 1), memory_order_relaxed);
}

size_t evict_insert(evict_policy *p, evict_node *n, evict_node **victims, size_t max_victims,
                    bool *admitted)
{
    size_t nv = 0;
    bool ok = false;

    pthread_mutex_lock(&p->lock);
    assert(n->queue == EVICT_Q_NONE);
    if (n->size > p->max_object) goto refuse;
    while (atomic_load_explicit(&p->used, memory_order_relaxed) + n->size > p->capacity) {
        if (nv == max_victims) goto refuse;
        evict_node *v = evict_one(p);
        assert(v);
        v->queue = EVICT_Q_NONE;
        atomic_fetch_sub_explicit(&p->used, v->size, memory_order_relaxed);
        atomic_fetch_sub_explicit(&p->objects, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->evictions, 1, memory_order_relaxed);
        p->has_evicted = true;
        victims[nv++] = v;
    }
    freq_set(n, 0);
    n->queue = EVICT_Q_MAIN;
    if (p->kind == EVICT_S3FIFO) {
        if (ghost_take(&p->ghost, n->hash)) p->ghost_hits++;
        /* Until the cache first fills, small overflows into main (libCacheSim's
         * refinement): objects that arrive before the cache is full are kept
         * as long as main keeps anything, instead of being cycled through small. */
        else if (p->has_evicted || p->small.bytes + n->size <= p->small_cap)
            n->queue = EVICT_Q_SMALL;
    }
    list_push_head(list_of(p, n), n);
    atomic_fetch_add_explicit(&p->used, n->size, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->objects, 1, memory_order_relaxed);
    ok = true;
    goto out;
refuse:
    p->refused++;
out:
    pthread_mutex_unlock(&p->lock);
    if (admitted) *admitted = ok;
    return nv;
}

/* Unlink a SIEVE victim chosen by evict_admit (policy lock held). */
static void sieve_take(evict_policy *p, evict_node *v)
{
    if (p->hand == v) p->hand = v->prev;
    list_unlink(&p->main, v);
    v->queue = EVICT_Q_NONE;
    atomic_fetch_sub_explicit(&p->used, v->size, memory_order_relaxed);
    atomic_fetch_sub_explicit(&p->objects, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->evictions, 1, memory_order_relaxed);
}

size_t evict_admit(evict_policy *p, evict_node *n, evict_node **victims, size_t max_victims,
                   bool *admitted)
{
    if (p->kind != EVICT_SIEVE || !p->sk.c)
        return evict_insert(p, n, victims, max_victims, admitted);
    /* Read before the lock: the sketch does not need it. */
    unsigned mine = evict_estimate(p, n->hash);
    size_t nv = 0;
    bool ok = false;

    pthread_mutex_lock(&p->lock);
    assert(n->queue == EVICT_Q_NONE);
    if (n->size > p->max_object) {
        p->refused++;
        goto out;
    }
    uint64_t used = atomic_load_explicit(&p->used, memory_order_relaxed);
    uint64_t need = used + n->size > p->capacity ? used + n->size - p->capacity : 0;
    uint64_t freed = 0, steps = p->main.count;
    evict_node *at = p->hand;
    /* One sweep at most: every node is looked at once, so none is picked twice. */
    while (freed < need && nv < max_victims && steps--) {
        if (!at) at = p->main.tail;
        evict_node *next = at->prev;
        if (freq_get(at))
            freq_set(at, 0); /* visited: spared once, as SIEVE does */
        else if (evict_estimate(p, at->hash) <= mine) {
            victims[nv++] = at;
            freed += at->size;
        }
        at = next;
    }
    if (freed < need && nv < max_victims) {
        /* Everything that could go is asked for more often than n. */
        p->rejected++;
        nv = 0;
        goto out;
    }
    p->hand = at;
    for (size_t i = 0; i < nv; i++)
        sieve_take(p, victims[i]);
    if (nv) p->has_evicted = true;
    if (freed >= need) {
        freq_set(n, 0);
        n->queue = EVICT_Q_MAIN;
        list_push_head(&p->main, n);
        atomic_fetch_add_explicit(&p->used, n->size, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->objects, 1, memory_order_relaxed);
        ok = true;
    }
out:
    pthread_mutex_unlock(&p->lock);
    if (admitted) *admitted = ok;
    return nv;
}

bool evict_remove(evict_policy *p, evict_node *n)
{
    bool removed = false;

    pthread_mutex_lock(&p->lock);
    if (n->queue != EVICT_Q_NONE) {
        if (p->hand == n) p->hand = n->prev;
        list_unlink(list_of(p, n), n);
        n->queue = EVICT_Q_NONE;
        atomic_fetch_sub_explicit(&p->used, n->size, memory_order_relaxed);
        atomic_fetch_sub_explicit(&p->objects, 1, memory_order_relaxed);
        removed = true;
    }
    pthread_mutex_unlock(&p->lock);
    return removed;
}

uint64_t evict_used(const evict_policy *p)
{
    return atomic_load_explicit(&p->used, memory_order_relaxed);
}

uint64_t evict_capacity(const evict_policy *p)
{
    return p->capacity;
}

uint64_t evict_count(const evict_policy *p)
{
    return atomic_load_explicit(&p->objects, memory_order_relaxed);
}

uint64_t evict_evictions(const evict_policy *p)
{
    return atomic_load_explicit(&p->evictions, memory_order_relaxed);
}

void evict_get_stats(evict_policy *p, evict_stats *out)
{
    pthread_mutex_lock(&p->lock);
    *out = (evict_stats){
        .capacity = p->capacity,
        .used = atomic_load_explicit(&p->used, memory_order_relaxed),
        .objects = atomic_load_explicit(&p->objects, memory_order_relaxed),
        .small_bytes = p->small.bytes,
        .evictions = atomic_load_explicit(&p->evictions, memory_order_relaxed),
        .refused = p->refused,
        .promotions = p->promotions,
        .ghost_hits = p->ghost_hits,
        .ghost_entries = p->ghost.live,
        .rejected = p->rejected,
    };
    pthread_mutex_unlock(&p->lock);
}

const char *evict_kind_name(evict_kind kind)
{
    return (unsigned)kind < EVICT_KIND_COUNT ? kind_names[kind] : NULL;
}

int evict_kind_parse(const char *name, evict_kind *out)
{
    for (int k = 0; k < EVICT_KIND_COUNT; k++) {
        if (name && strcasecmp(name, kind_names[k]) == 0) {
            *out = (evict_kind)k;
            return 0;
        }
    }
    return -1;
}
