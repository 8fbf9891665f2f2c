/*
 * The heavy-hitter sketch (modules/popular.c, shield/popular.h): exact counts
 * below capacity, Space-Saving's guarantees on a Zipf stream (every key above
 * N/capacity monitored, counts bracket the truth, the head ranked right), the
 * memory bound under a flood of one-request keys, the index surviving heavy
 * eviction, truncated keys, the windowed epochs, and the merge across workers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shield/popular.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static size_t keyname(char *buf, size_t cap, unsigned i)
{
    return (size_t)snprintf(buf, cap, "/books/%u.epub", i);
}

static const sh_popular_entry *find(const sh_popular *p, const char *key)
{
    for (size_t i = 0; i < sh_popular_size(p); i++) {
        const sh_popular_entry *e = sh_popular_entry_at(p, i);
        if (strcmp(e->key, key) == 0) return e;
    }
    return NULL;
}

/* Space-Saving's invariant: the counts add up to exactly the weight added. */
static void assert_sum_is_total(const sh_popular *p)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < sh_popular_size(p); i++)
        sum += sh_popular_entry_at(p, i)->count;
    assert_int_equal(sum, sh_popular_total(p));
}

static void test_exact_below_capacity(void **state)
{
    sh_popular *p = sh_popular_new(64, 64);
    char k[64];
    for (unsigned i = 0; i < 50; i++)
        for (unsigned j = 0; j <= i; j++)
            sh_popular_add(p, k, keyname(k, sizeof k, i), 1, 1, 100);
    assert_int_equal(sh_popular_size(p), 50);
    for (unsigned i = 0; i < 50; i++) {
        keyname(k, sizeof k, i);
        const sh_popular_entry *e = find(p, k);
        assert_non_null(e);
        assert_int_equal(e->count, i + 1);
        assert_int_equal(e->error, 0);
        assert_int_equal(e->requests, i + 1);
        assert_int_equal(e->bytes, 100 * (i + 1));
    }
    assert_sum_is_total(p);
    sh_popular_clear(p);
    assert_int_equal(sh_popular_size(p), 0);
    sh_popular_free(p);
}

/* The key replaced is always the one with the smallest count, even after
 * increments reordered the keys. */
static void test_evicts_the_minimum(void **state)
{
    sh_popular *p = sh_popular_new(2, 16);
    sh_popular_add(p, "/x", 2, 1, 1, 1);
    sh_popular_add(p, "/y", 2, 1, 1, 1);
    for (int i = 0; i < 9; i++)
        sh_popular_add(p, "/x", 2, 1, 1, 1);
    sh_popular_add(p, "/z", 2, 1, 1, 1);
    assert_null(find(p, "/y"));
    assert_int_equal(find(p, "/x")->count, 10);
    assert_int_equal(find(p, "/z")->count, 2);
    assert_int_equal(find(p, "/z")->error, 1);
    assert_int_equal(find(p, "/z")->requests, 1);
    /* A new key of weight 0 cannot rank and is not admitted into a full summary. */
    sh_popular_add(p, "/w", 2, 0, 1, 0);
    assert_null(find(p, "/w"));
    sh_popular_free(p);
}

#define ZIPF_KEYS    20000
#define ZIPF_SAMPLES 400000
#define ZIPF_CAP     256

static void test_zipf_accuracy(void **state)
{
    static double cdf[ZIPF_KEYS];
    static uint64_t truth[ZIPF_KEYS];
    double s = 0;
    for (unsigned i = 0; i < ZIPF_KEYS; i++)
        cdf[i] = s += 1.0 / pow(i + 1, 1.1);
    memset(truth, 0, sizeof truth);

    sh_popular *p = sh_popular_new(ZIPF_CAP, 64);
    char k[64];
    for (unsigned n = 0; n < ZIPF_SAMPLES; n++) {
        double u = (double)(rnd() >> 11) / 9007199254740992.0 * s;
        unsigned lo = 0, hi = ZIPF_KEYS - 1;
        while (lo < hi) {
            unsigned mid = (lo + hi) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        truth[lo]++;
        sh_popular_add(p, k, keyname(k, sizeof k, lo), 1, 1, 1);
    }
    assert_int_equal(sh_popular_size(p), ZIPF_CAP);
    assert_sum_is_total(p);

    /* Every key above N/capacity is monitored, and its count brackets the truth. */
    unsigned heavy = 0;
    for (unsigned i = 0; i < ZIPF_KEYS; i++) {
        if (truth[i] <= ZIPF_SAMPLES / ZIPF_CAP) continue;
        heavy++;
        keyname(k, sizeof k, i);
        const sh_popular_entry *e = find(p, k);
        assert_non_null(e);
        assert_true(e->count >= truth[i]);
        assert_true(e->count - e->error <= truth[i]);
    }
    assert_true(heavy >= 20);

    /* The head is ranked as it truly is, within 2 % of the true counts. */
    sh_popular_win *w = sh_popular_win_new(60, ZIPF_CAP, 64, 0);
    sh_popular *tmp = w->cur[SH_POP_REQUESTS];
    w->cur[SH_POP_REQUESTS] = p;
    sh_popular_report r;
    sh_popular_top(&w, 1, 1, 10, &r);
    w->cur[SH_POP_REQUESTS] = tmp;
    assert_int_equal(r.n[SH_POP_REQUESTS], 10);
    for (unsigned i = 0; i < 10; i++) {
        keyname(k, sizeof k, i);
        assert_string_equal(r.rows[SH_POP_REQUESTS][i].key, k);
        double rel =
            ((double)r.rows[SH_POP_REQUESTS][i].requests - (double)truth[i]) / (double)truth[i];
        assert_true(rel >= 0 && rel < 0.02);
    }
    sh_popular_report_free(&r);
    sh_popular_win_free(w);
    sh_popular_free(p);
}

static void test_memory_bound_under_flood(void **state)
{
    sh_popular *p = sh_popular_new(128, 64);
    size_t mem = sh_popular_memory(p);
    char k[64];
    assert_true(mem < 64 * 1024);
    for (unsigned i = 0; i < 20; i++)
        for (int j = 0; j < 10000; j++)
            sh_popular_add(p, k, keyname(k, sizeof k, i), 1, 1, 1);
    /* A scan of 500,000 one-request keys (an enumeration attack). */
    for (unsigned i = 1000; i < 501000; i++)
        sh_popular_add(p, k, keyname(k, sizeof k, i), 1, 1, 1);
    assert_int_equal(sh_popular_size(p), 128);
    assert_int_equal(sh_popular_memory(p), mem);
    assert_sum_is_total(p);
    /* The hot keys (10,000 each) survive: the scan's keys never exceed ~N/128. */
    for (unsigned i = 0; i < 20; i++) {
        keyname(k, sizeof k, i);
        assert_non_null(find(p, k));
    }
    sh_popular_free(p);
}

/* Random adds with heavy eviction: every monitored key must stay findable
 * (adding it again must not create a duplicate), which exercises the
 * backward-shift deletion of the index. */
static void test_index_survives_eviction(void **state)
{
    sh_popular *p = sh_popular_new(32, 16);
    char k[64];
    for (int round = 0; round < 200000; round++) {
        unsigned i = (unsigned)(rnd() % 100);
        sh_popular_add(p, k, keyname(k, sizeof k, i), 1 + (unsigned)(rnd() % 3), 1, 1);
        if (round % 5000 == 0) {
            for (size_t a = 0; a < sh_popular_size(p); a++)
                for (size_t b = a + 1; b < sh_popular_size(p); b++)
                    assert_string_not_equal(sh_popular_entry_at(p, a)->key,
                                            sh_popular_entry_at(p, b)->key);
            assert_sum_is_total(p);
        }
    }
    size_t n = sh_popular_size(p);
    uint64_t total = sh_popular_total(p);
    /* Re-adding every monitored key with weight 0 finds it: nothing changes. */
    for (size_t a = 0; a < n; a++) {
        char copy[64];
        snprintf(copy, sizeof copy, "%s", sh_popular_entry_at(p, a)->key);
        sh_popular_add(p, copy, strlen(copy), 0, 0, 0);
    }
    assert_int_equal(sh_popular_size(p), n);
    assert_int_equal(sh_popular_total(p), total);
    assert_sum_is_total(p);
    sh_popular_free(p);
}

static void test_long_keys_truncated_but_distinct(void **state)
{
    sh_popular *p = sh_popular_new(8, 16);
    char a[300], b[300];
    memset(a, 'a', sizeof a);
    memcpy(b, a, sizeof b);
    b[299] = 'b';
    sh_popular_add(p, a, sizeof a, 1, 1, 1);
    sh_popular_add(p, b, sizeof b, 1, 1, 1);
    sh_popular_add(p, b, sizeof b, 1, 1, 1);
    assert_int_equal(sh_popular_size(p), 2);
    for (size_t i = 0; i < 2; i++) {
        const sh_popular_entry *e = sh_popular_entry_at(p, i);
        assert_int_equal(e->len, 16);
        assert_true(e->truncated);
        assert_int_equal(strlen(e->key), 16);
    }
    /* A short key equal to the stored prefix is another key. */
    sh_popular_add(p, a, 16, 1, 1, 1);
    assert_int_equal(sh_popular_size(p), 3);
    sh_popular_free(p);
}

#define SEC 1000000LL

static void test_window_epochs(void **state)
{
    sh_popular_win *w = sh_popular_win_new(10, 64, 64, 0); /* epochs of 5 s */
    sh_popular_report r;
    sh_popular_win_add(w, 1 * SEC, "/old", 4, 10);
    sh_popular_win_add(w, 6 * SEC, "/new", 4, 10);
    sh_popular_top(&w, 1, 7 * SEC, 10, &r);
    assert_int_equal(r.n[SH_POP_REQUESTS], 2);
    sh_popular_report_free(&r);
    /* At 11 s the epoch holding /old (0-5 s) has rotated out. */
    sh_popular_top(&w, 1, 11 * SEC, 10, &r);
    assert_int_equal(r.n[SH_POP_REQUESTS], 1);
    assert_string_equal(r.rows[SH_POP_REQUESTS][0].key, "/new");
    sh_popular_report_free(&r);
    /* After a long idle gap both epochs are empty. */
    sh_popular_top(&w, 1, 100 * SEC, 10, &r);
    assert_int_equal(r.n[SH_POP_REQUESTS], 0);
    assert_int_equal(r.n[SH_POP_BYTES], 0);
    sh_popular_report_free(&r);
    sh_popular_win_free(w);
}

static void test_merge_across_workers(void **state)
{
    sh_popular_win *w[3] = {sh_popular_win_new(60, 64, 64, 0), NULL,
                            sh_popular_win_new(60, 64, 64, 0)};
    sh_popular_report r;
    /* /many: 30 small requests split over two workers; /big: 2 huge ones. */
    for (int i = 0; i < 15; i++) {
        sh_popular_win_add(w[0], SEC, "/many", 5, 1000);
        sh_popular_win_add(w[2], SEC, "/many", 5, 1000);
    }
    sh_popular_win_add(w[0], SEC, "/big", 4, 10000000);
    sh_popular_win_add(w[2], SEC, "/big", 4, 10000000);
    for (int i = 0; i < 5; i++)
        sh_popular_win_add(w[2], SEC, "/mid", 4, 50000);
    sh_popular_top(w, 3, 2 * SEC, 2, &r);
    assert_int_equal(r.n[SH_POP_REQUESTS], 2);
    assert_string_equal(r.rows[SH_POP_REQUESTS][0].key, "/many");
    assert_int_equal(r.rows[SH_POP_REQUESTS][0].requests, 30);
    assert_int_equal(r.rows[SH_POP_REQUESTS][0].bytes, 30000);
    assert_string_equal(r.rows[SH_POP_REQUESTS][1].key, "/mid");
    assert_string_equal(r.rows[SH_POP_BYTES][0].key, "/big");
    assert_int_equal(r.rows[SH_POP_BYTES][0].bytes, 20000000);
    assert_int_equal(r.rows[SH_POP_BYTES][0].requests, 2);
    assert_string_equal(r.rows[SH_POP_BYTES][1].key, "/mid");
    sh_popular_report_free(&r);
    sh_popular_win_free(w[0]);
    sh_popular_win_free(w[2]);
}

/* A worker adding while the admin thread merges (ASan/TSan food). */
static void *writer(void *arg)
{
    sh_popular_win *w = arg;
    char k[64];
    for (unsigned i = 0; i < 200000; i++)
        sh_popular_win_add(w, (int64_t)i * 100, k, keyname(k, sizeof k, i % 500), i % 7);
    return NULL;
}

static void test_concurrent_reader(void **state)
{
    sh_popular_win *w = sh_popular_win_new(4, 64, 64, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer, w), 0);
    for (int i = 0; i < 200; i++) {
        sh_popular_report r;
        sh_popular_top(&w, 1, (int64_t)i * 100000, 5, &r);
        assert_true(r.n[0] <= 5 && r.n[1] <= 5);
        sh_popular_report_free(&r);
    }
    pthread_join(t, NULL);
    sh_popular_win_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_below_capacity),
        cmocka_unit_test(test_evicts_the_minimum),
        cmocka_unit_test(test_zipf_accuracy),
        cmocka_unit_test(test_memory_bound_under_flood),
        cmocka_unit_test(test_index_survives_eviction),
        cmocka_unit_test(test_long_keys_truncated_but_distinct),
        cmocka_unit_test(test_window_epochs),
        cmocka_unit_test(test_merge_across_workers),
        cmocka_unit_test(test_concurrent_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
