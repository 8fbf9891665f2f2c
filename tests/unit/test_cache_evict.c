/*
 * Eviction policies (proxy/cache/evict.c): the byte bound, victims and removal
 * bookkeeping, scan resistance of SIEVE and S3-FIFO against LRU, the S3-FIFO
 * ghost and promotion paths, refusals, and hits racing with inserts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "shield/cache_evict.h"

#define MAX_V 256

static const evict_kind all_kinds[] = {EVICT_LRU, EVICT_SIEVE, EVICT_S3FIFO};
#define N_KINDS (sizeof(all_kinds) / sizeof(all_kinds[0]))

/* A cached object as the memory tier would have it: the node plus the caller's own flag. */
typedef struct obj {
    evict_node node; /* first member: victims cast back */
    bool cached;
} obj;

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef size_t (*insert_fn)(evict_policy *p, evict_node *n, evict_node **victims,
                            size_t max_victims, bool *admitted);

/* Insert o through ins (evict_insert or evict_admit) and apply the victims to the objects'
 * flags, checking each victim. */
static size_t insert_with(insert_fn ins, evict_policy *p, obj *o, uint64_t hash, uint64_t size)
{
    evict_node *v[MAX_V];
    bool admitted = false;

    evict_node_init(&o->node, hash, size);
    size_t nv = ins(p, &o->node, v, MAX_V, &admitted);
    for (size_t i = 0; i < nv; i++) {
        obj *w = (obj *)v[i];
        assert_true(w->cached); /* only admitted, not yet dropped objects come back */
        assert_int_equal(v[i]->queue, EVICT_Q_NONE);
        assert_null(v[i]->prev);
        assert_null(v[i]->next);
        assert_ptr_not_equal(w, o);
        w->cached = false;
    }
    o->cached = admitted;
    assert_true(evict_used(p) <= evict_capacity(p));
    return nv;
}

static size_t put(evict_policy *p, obj *o, uint64_t hash, uint64_t size)
{
    return insert_with(evict_insert, p, o, hash, size);
}

/* put() objs[from..to) as 1-byte objects, hash i + 1 for objs[i]; returns the victims. */
static size_t put_ones(evict_policy *p, obj *objs, int from, int to)
{
    size_t nv = 0;
    for (int i = from; i < to; i++)
        nv += put(p, &objs[i], (uint64_t)i + 1, 1);
    return nv;
}

/* The policy's counters must match the caller's view exactly. */
static void check_books(evict_policy *p, const obj *objs, size_t n)
{
    uint64_t bytes = 0, count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!objs[i].cached) continue;
        assert_int_not_equal(objs[i].node.queue, EVICT_Q_NONE);
        bytes += objs[i].node.size;
        count++;
    }
    assert_int_equal(evict_used(p), bytes);
    assert_int_equal(evict_count(p), count);
}

/* ---- byte bound, victims, removal ---------------------------------------------------------- */

static void test_capacity_never_exceeded(void **state)
{
    enum { N = 3000 };
    for (size_t k = 0; k < N_KINDS; k++) {
        obj *objs = calloc(N, sizeof(obj));
        evict_policy *p = evict_new(all_kinds[k], 100000);
        uint64_t evicted = 0;
        rng_state = 42;
        for (int step = 0; step < 60000; step++) {
            obj *o = &objs[rnd() % N];
            uint64_t r = rnd() % 100;
            if (o->cached && r < 70) {
                evict_hit(p, &o->node);
            } else if (o->cached && r < 75) {
                assert_true(evict_remove(p, &o->node));
                o->cached = false;
            } else if (!o->cached) {
                /* Sizes from 1 byte to 20 % of the capacity, skewed small. */
                uint64_t size = 1 + rnd() % (rnd() % 4 == 0 ? 20000 : 2000);
                evicted += put(p, o, (uint64_t)(o - objs) * 7919, size);
            }
            if (step % 1000 == 0) check_books(p, objs, N);
        }
        check_books(p, objs, N);
        assert_int_equal(evict_evictions(p), evicted);
        assert_true(evicted > 1000);
        evict_free(p);
        free(objs);
    }
}

static void test_victims_unlinked_and_returned(void **state)
{
    for (size_t k = 0; k < N_KINDS; k++) {
        obj objs[20] = {0};
        evict_policy *p = evict_new(all_kinds[k], 10);
        assert_int_equal(put_ones(p, objs, 0, 10), 0);
        assert_int_equal(evict_used(p), 10);
        /* A 5-byte object needs exactly five 1-byte victims. */
        assert_int_equal(put(p, &objs[10], 100, 5), 5);
        assert_true(objs[10].cached);
        assert_int_equal(evict_used(p), 10);
        assert_int_equal(evict_count(p), 6);
        assert_int_equal(evict_evictions(p), 5);
        check_books(p, objs, 20);
        /* Removing an evicted node is a no-op. */
        for (int i = 0; i < 10; i++)
            if (!objs[i].cached) assert_false(evict_remove(p, &objs[i].node));
        check_books(p, objs, 20);
        evict_free(p);
    }
}

static void test_lru_evicts_least_recent(void **state)
{
    obj objs[5] = {0};
    evict_policy *p = evict_new(EVICT_LRU, 4);
    put_ones(p, objs, 0, 4);
    evict_hit(p, &objs[0].node);
    put(p, &objs[4], 5, 1);
    assert_true(objs[0].cached);
    assert_false(objs[1].cached);
    evict_free(p);
}

static void test_explicit_removal(void **state)
{
    for (size_t k = 0; k < N_KINDS; k++) {
        obj objs[40] = {0};
        obj never = {0};
        evict_policy *p = evict_new(all_kinds[k], 20);
        evict_node_init(&never.node, 999, 1);
        assert_false(evict_remove(p, &never.node));
        put_ones(p, objs, 0, 20);
        /* Force an eviction pass so SIEVE's hand and S3-FIFO's queues are in use. */
        evict_hit(p, &objs[3].node);
        put(p, &objs[20], 21, 1);
        for (int i = 0; i < 21; i += 2) {
            if (!objs[i].cached) continue;
            assert_true(evict_remove(p, &objs[i].node));
            assert_int_equal(objs[i].node.queue, EVICT_Q_NONE);
            assert_false(evict_remove(p, &objs[i].node)); /* idempotent */
            objs[i].cached = false;
        }
        check_books(p, objs, 40);
        assert_true(evict_used(p) <= 10);
        /* The policy keeps working, and removed nodes never come back as victims. */
        put_ones(p, objs, 21, 40);
        check_books(p, objs, 40);
        assert_int_equal(evict_used(p), 20);
        /* Remove everything, including whatever SIEVE's hand points at. */
        for (int i = 0; i < 40; i++) {
            if (objs[i].cached) assert_true(evict_remove(p, &objs[i].node));
            objs[i].cached = false;
        }
        assert_int_equal(evict_used(p), 0);
        assert_int_equal(evict_count(p), 0);
        put(p, &objs[0], 1, 20);
        assert_true(objs[0].cached);
        evict_free(p);
    }
}

/* ---- scan resistance ---------------------------------------------------------------------- */

/*
 * A hot set (a tenth of the cache) is inserted and hit twice, then 10x the
 * capacity of one-hit objects streams through without a single hit on the hot
 * set. Returns how many hot objects are still cached.
 */
static int hot_after_scan(evict_kind kind)
{
    enum { CAP = 1000, HOT = 100, SCAN = 10 * CAP };
    obj *hot = calloc(HOT, sizeof(obj)), *scan = calloc(SCAN, sizeof(obj));
    evict_policy *p = evict_new(kind, CAP);
    int present = 0;

    for (int i = 0; i < HOT; i++)
        put(p, &hot[i], 1000000 + (uint64_t)i, 1);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < HOT; i++)
            evict_hit(p, &hot[i].node);
    put_ones(p, scan, 0, SCAN);
    for (int i = 0; i < HOT; i++)
        present += hot[i].cached;
    evict_free(p);
    free(hot);
    free(scan);
    return present;
}

static void test_hot_objects_survive_scan(void **state)
{
    assert_true(hot_after_scan(EVICT_S3FIFO) >= 90);
    assert_true(hot_after_scan(EVICT_SIEVE) >= 90);
    assert_true(hot_after_scan(EVICT_LRU) <= 10);
}

/* ---- S3-FIFO specifics -------------------------------------------------------------------- */

static void test_s3fifo_ghost_readmits_to_main(void **state)
{
    enum { N = 200 };
    obj objs[N] = {0};
    evict_stats st;
    evict_policy *p = evict_new(EVICT_S3FIFO, 100); /* small FIFO: 10 bytes */

    /* Fill the cache and evict once, so new objects go to the small FIFO. */
    put_ones(p, objs, 0, 101);
    put(p, &objs[101], 102, 1);
    assert_int_equal(objs[101].node.queue, EVICT_Q_SMALL);
    /* Ten more one-hit objects push objs[101] out of small, unhit: evicted, ghosted. */
    put_ones(p, objs, 102, 113);
    assert_false(objs[101].cached);
    evict_get_stats(p, &st);
    assert_true(st.ghost_entries > 0);
    /* Requested again soon after: straight to main. */
    put(p, &objs[101], 102, 1);
    assert_true(objs[101].cached);
    assert_int_equal(objs[101].node.queue, EVICT_Q_MAIN);
    evict_get_stats(p, &st);
    assert_int_equal(st.ghost_hits, 1);
    /* A never-seen hash still goes to small. */
    put(p, &objs[150], 151, 1);
    assert_int_equal(objs[150].node.queue, EVICT_Q_SMALL);
    evict_free(p);
}

static void test_s3fifo_hit_in_small_promotes(void **state)
{
    obj objs[200] = {0};
    evict_stats st;
    evict_policy *p = evict_new(EVICT_S3FIFO, 100);

    put_ones(p, objs, 0, 102);
    assert_int_equal(objs[101].node.queue, EVICT_Q_SMALL);
    evict_hit(p, &objs[101].node);
    put_ones(p, objs, 102, 130);
    assert_true(objs[101].cached);
    assert_int_equal(objs[101].node.queue, EVICT_Q_MAIN);
    evict_get_stats(p, &st);
    assert_true(st.promotions >= 1);
    assert_true(st.small_bytes <= 10);
    evict_free(p);
}

/* The ghost stays bounded however many distinct objects pass through. */
static void test_s3fifo_ghost_bounded(void **state)
{
    enum { N = 100000 };
    obj *objs = calloc(N, sizeof(obj));
    evict_stats st;
    evict_policy *p = evict_new(EVICT_S3FIFO, 1000);

    for (int i = 0; i < N; i++)
        put(p, &objs[i], (uint64_t)i, 1); /* hash 0 included on purpose */
    evict_get_stats(p, &st);
    assert_true(st.ghost_entries <= 900);
    assert_true(st.ghost_entries >= 800);
    /* Recent ghosts are found, old ones forgotten. */
    put(p, &objs[N - 950], N - 950, 1);
    assert_int_equal(objs[N - 950].node.queue, EVICT_Q_MAIN);
    put(p, &objs[10], 10, 1);
    assert_int_equal(objs[10].node.queue, EVICT_Q_SMALL);
    evict_free(p);
    free(objs);
}

/* ---- refusals ----------------------------------------------------------------------------- */

static void test_oversized_refused(void **state)
{
    for (size_t k = 0; k < N_KINDS; k++) {
        obj objs[10] = {0};
        evict_stats st;
        evict_policy *p = evict_new(all_kinds[k], 100);
        put(p, &objs[0], 1, 60);
        assert_int_equal(put(p, &objs[1], 2, 101), 0);
        assert_false(objs[1].cached);
        assert_int_equal(objs[1].node.queue, EVICT_Q_NONE);
        assert_true(objs[0].cached);
        assert_int_equal(evict_used(p), 60);
        assert_false(evict_remove(p, &objs[1].node));
        /* Exactly the capacity fits (evicting the rest). */
        assert_int_equal(put(p, &objs[2], 3, 100), 1);
        assert_true(objs[2].cached);
        evict_get_stats(p, &st);
        assert_int_equal(st.refused, 1);
        evict_free(p);

        evict_opts o;
        evict_opts_default(&o);
        o.max_object_percent = 50;
        p = evict_new_opts(all_kinds[k], 100, &o);
        put(p, &objs[3], 4, 51);
        assert_false(objs[3].cached);
        put(p, &objs[4], 5, 50);
        assert_true(objs[4].cached);
        evict_free(p);
    }
}

static void test_short_victim_array_refuses(void **state)
{
    for (size_t k = 0; k < N_KINDS; k++) {
        obj objs[11] = {0};
        evict_node *v[3];
        bool admitted = true;
        evict_policy *p = evict_new(all_kinds[k], 10);
        put_ones(p, objs, 0, 10);
        evict_node_init(&objs[10].node, 11, 5);
        size_t nv = evict_insert(p, &objs[10].node, v, 3, &admitted);
        assert_int_equal(nv, 3);
        assert_false(admitted);
        assert_int_equal(objs[10].node.queue, EVICT_Q_NONE);
        for (size_t i = 0; i < nv; i++)
            ((obj *)v[i])->cached = false;
        check_books(p, objs, 11);
        assert_int_equal(evict_used(p), 7);
        /* Calling again continues: two more victims and the node is in. */
        nv = evict_insert(p, &objs[10].node, v, 3, &admitted);
        assert_int_equal(nv, 2);
        assert_true(admitted);
        for (size_t i = 0; i < nv; i++)
            ((obj *)v[i])->cached = false;
        objs[10].cached = true;
        check_books(p, objs, 11);
        assert_int_equal(evict_used(p), 10);
        evict_free(p);
    }
}

/* ---- names -------------------------------------------------------------------------------- */

static void test_kind_names(void **state)
{
    evict_kind k;
    for (size_t i = 0; i < N_KINDS; i++) {
        assert_int_equal(evict_kind_parse(evict_kind_name(all_kinds[i]), &k), 0);
        assert_int_equal(k, all_kinds[i]);
    }
    assert_int_equal(evict_kind_parse("S3FIFO", &k), 0);
    assert_int_equal(k, EVICT_S3FIFO);
    assert_int_equal(evict_kind_parse("arc", &k), -1);
    assert_int_equal(evict_kind_parse(NULL, &k), -1);
    assert_null(evict_kind_name(EVICT_KIND_COUNT));
}

/* ---- concurrency -------------------------------------------------------------------------- */

/*
 * Four threads hit random published nodes while one thread inserts fresh nodes
 * (and removes some), as workers would on hits and misses. Nodes live in one
 * array for the whole test, so a hit on an evicted node touches valid memory,
 * exactly as the cache's refcount guarantees. A node is initialised before it
 * is published (release), as the cache initialises an object before indexing it.
 */
enum { CONC_NODES = 60000, CONC_HITTERS = 4 };

typedef struct conc {
    evict_policy *p;
    obj *objs;
    _Atomic size_t published;
    _Atomic bool done;
    bool failed; /* set by the inserter: cmocka's asserts must run on the test's thread */
} conc;

static void *conc_hitter(void *arg)
{
    conc *c = arg;
    uint64_t x = (uint64_t)pthread_self() | 1, n = 0;
    while (!atomic_load(&c->done) || n < 1000) {
        size_t pub = atomic_load_explicit(&c->published, memory_order_acquire);
        if (!pub) continue;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* Mostly recent nodes (likely cached), sometimes old ones (likely evicted). */
        size_t i = x % 4 ? pub - 1 - (x >> 8) % (pub < 500 ? pub : 500) : (x >> 8) % pub;
        evict_hit(c->p, &c->objs[i].node);
        n++;
    }
    return NULL;
}

static void *conc_inserter(void *arg)
{
    conc *c = arg;
    evict_node *v[MAX_V];
    uint64_t seed = 7;
    for (size_t i = 0; i < CONC_NODES; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        evict_node_init(&c->objs[i].node, i * 2654435761u, 1 + (seed >> 33) % 64);
        bool admitted;
        size_t nv = evict_insert(c->p, &c->objs[i].node, v, MAX_V, &admitted);
        for (size_t j = 0; j < nv; j++)
            ((obj *)v[j])->cached = false;
        c->objs[i].cached = admitted;
        atomic_store_explicit(&c->published, i + 1, memory_order_release);
        if (i % 7 == 3 && c->objs[i - 2].cached) {
            if (!evict_remove(c->p, &c->objs[i - 2].node)) c->failed = true;
            c->objs[i - 2].cached = false;
        }
        if (evict_used(c->p) > evict_capacity(c->p)) c->failed = true;
    }
    atomic_store(&c->done, true);
    return NULL;
}

static void test_concurrent_hits_and_inserts(void **state)
{
    for (size_t k = 0; k < N_KINDS; k++) {
        conc c = {.p = evict_new(all_kinds[k], 4000), .objs = calloc(CONC_NODES, sizeof(obj))};
        pthread_t hitters[CONC_HITTERS], inserter;
        atomic_init(&c.published, 0);
        atomic_init(&c.done, false);
        for (int i = 0; i < CONC_HITTERS; i++)
            assert_int_equal(pthread_create(&hitters[i], NULL, conc_hitter, &c), 0);
        assert_int_equal(pthread_create(&inserter, NULL, conc_inserter, &c), 0);
        pthread_join(inserter, NULL);
        for (int i = 0; i < CONC_HITTERS; i++)
            pthread_join(hitters[i], NULL);
        assert_false(c.failed);
        check_books(c.p, c.objs, CONC_NODES);
        assert_true(evict_used(c.p) > 3000);
        evict_free(c.p);
        free(c.objs);
    }
}

/* ---- frequency admission (evict_admit, the disk tier's SIEVE + sketch) ---------------------- */

static evict_policy *sieve_with_sketch(uint64_t capacity)
{
    evict_opts o;
    evict_opts_default(&o);
    o.sketch = 1;
    return evict_new_opts(EVICT_SIEVE, capacity, &o);
}

/* Like put(), through evict_admit(). */
static size_t admit(evict_policy *p, obj *o, uint64_t hash, uint64_t size)
{
    return insert_with(evict_admit, p, o, hash, size);
}

static void touch(evict_policy *p, uint64_t hash, int n)
{
    for (int i = 0; i < n; i++)
        evict_touch(p, hash);
}

static void test_sketch_estimates(void **state)
{
    (void)state;
    evict_policy *p = sieve_with_sketch(1 << 20);
    assert_int_equal(evict_estimate(p, 42), 0);
    touch(p, 42, 7);
    touch(p, 43, 2);
    assert_true(evict_estimate(p, 42) >= 7); /* count-min: never under */
    assert_true(evict_estimate(p, 43) >= 2 && evict_estimate(p, 43) < 7);
    touch(p, 42, 1000);
    assert_int_equal(evict_estimate(p, 42), 255); /* saturates */
    evict_free(p);

    /* Without opts.sketch: nothing is counted, evict_admit() is evict_insert(). */
    p = evict_new(EVICT_SIEVE, 100);
    touch(p, 42, 5);
    assert_int_equal(evict_estimate(p, 42), 0);
    obj a[3] = {0};
    for (int i = 0; i < 3; i++)
        admit(p, &a[i], 100 + i, 50);
    assert_true(a[2].cached);
    evict_free(p);
}

/* Every 10 x width touches, all counters are halved: old popularity fades. */
static void test_sketch_ages(void **state)
{
    (void)state;
    evict_policy *p = sieve_with_sketch(1); /* smallest sketch: 4096 wide, sample 40960 */
    touch(p, 7, 100);
    assert_true(evict_estimate(p, 7) >= 100);
    for (uint64_t i = 0; i < 41000; i++)
        evict_touch(p, 1000 + i);
    assert_true(evict_estimate(p, 7) < 80); /* about half, plus collisions */
    evict_free(p);
}

/*
 * A file asked for once may not displace files asked for more often: it is refused
 * and nothing is evicted. Once it has been asked for more, it gets in, and what it
 * displaces is the least asked-for file, not SIEVE's first unvisited one.
 */
static void test_admit_refuses_less_popular(void **state)
{
    (void)state;
    evict_policy *p = sieve_with_sketch(1000);
    obj hot[10] = {0}, cold = {0}, newc = {0};
    for (int i = 0; i < 9; i++) {
        touch(p, 1 + i, 5);
        assert_int_equal(admit(p, &hot[i], 1 + i, 100), 0);
    }
    touch(p, 50, 1);
    assert_int_equal(admit(p, &cold, 50, 100), 0); /* full now: 1000 bytes */
    assert_int_equal(evict_used(p), 1000);

    touch(p, 99, 2); /* more than cold, less than the others */
    assert_int_equal(admit(p, &newc, 99, 100), 1);
    assert_true(newc.cached);
    assert_false(cold.cached); /* the one asked for least went, though inserted last */
    for (int i = 0; i < 9; i++)
        assert_true(hot[i].cached);

    obj once = {0};
    touch(p, 77, 1);
    assert_int_equal(admit(p, &once, 77, 100), 0);
    assert_false(once.cached);
    assert_int_equal(once.node.queue, EVICT_Q_NONE);
    assert_int_equal(evict_used(p), 1000);
    evict_stats st;
    evict_get_stats(p, &st);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.objects, 10);

    touch(p, 77, 2); /* now asked for more than newc, less than the others */
    assert_int_equal(admit(p, &once, 77, 100), 1);
    assert_true(once.cached);
    assert_false(newc.cached);
    for (int i = 0; i < 9; i++)
        assert_true(hot[i].cached);
    assert_int_equal(evict_used(p), 1000);
    evict_free(p);
}

/* With equal counts the newcomer wins: objects asked for once each cycle as in SIEVE,
 * and a big one may displace many small ones (several calls when the array is short). */
static void test_admit_ties_and_big_objects(void **state)
{
    (void)state;
    evict_policy *p = sieve_with_sketch(1000);
    obj o[40] = {0};
    for (int i = 0; i < 40; i++) {
        touch(p, 500 + i, 1);
        admit(p, &o[i], 500 + i, 100);
        assert_true(o[i].cached);
    }
    assert_int_equal(evict_count(p), 10);
    evict_free(p);

    p = sieve_with_sketch(1000);
    obj small[100] = {0}, big = {0};
    for (int i = 0; i < 100; i++) {
        touch(p, 1000 + i, 1);
        admit(p, &small[i], 1000 + i, 10);
    }
    touch(p, 5, 2);
    evict_node *v[8];
    bool admitted = false;
    size_t calls = 0, gone = 0, nv;
    evict_node_init(&big.node, 5, 900);
    do {
        nv = evict_admit(p, &big.node, v, 8, &admitted);
        for (size_t i = 0; i < nv; i++)
            ((obj *)v[i])->cached = false;
        gone += nv;
        calls++;
    } while (!admitted && nv == 8);
    assert_true(admitted);
    assert_true(calls > 1);
    assert_int_equal(gone, 90);
    assert_int_equal(evict_used(p), 1000);
    evict_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity_never_exceeded),
        cmocka_unit_test(test_victims_unlinked_and_returned),
        cmocka_unit_test(test_lru_evicts_least_recent),
        cmocka_unit_test(test_explicit_removal),
        cmocka_unit_test(test_hot_objects_survive_scan),
        cmocka_unit_test(test_s3fifo_ghost_readmits_to_main),
        cmocka_unit_test(test_s3fifo_hit_in_small_promotes),
        cmocka_unit_test(test_s3fifo_ghost_bounded),
        cmocka_unit_test(test_oversized_refused),
        cmocka_unit_test(test_short_victim_array_refuses),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_concurrent_hits_and_inserts),
        cmocka_unit_test(test_sketch_estimates),
        cmocka_unit_test(test_sketch_ages),
        cmocka_unit_test(test_admit_refuses_less_popular),
        cmocka_unit_test(test_admit_ties_and_big_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
