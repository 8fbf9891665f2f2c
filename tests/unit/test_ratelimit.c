/*
 * The rate-based rule's counter table (modules/ratelimit.c, shield/ratelimit.h)
 * driven with an explicit clock: the limit, the sliding-window estimate, the
 * Retry-After arithmetic, recovery, the memory bound under a flood of
 * one-request keys, sharing between threads, and the config defaults the
 * module reads (2,000 requests / 300 s).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shield/config.h"
#include "shield/ratelimit.h"

#define W 60000ULL /* 60 s window, in ms */

static void key_of(uint32_t n, uint8_t k[16])
{
    static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(k, pfx, 12);
    k[12] = (uint8_t)(n >> 24);
    k[13] = (uint8_t)(n >> 16);
    k[14] = (uint8_t)(n >> 8);
    k[15] = (uint8_t)n;
}

/* n hits at now; returns how many were allowed. */
static int hits(sh_rl_table *t, const uint8_t k[16], int n, uint64_t now, uint64_t limit)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += sh_rl_hit(t, k, now, W, limit, NULL);
    return ok;
}

static void test_limit_then_block(void **state)
{
    sh_rl_table *t = sh_rl_new(4096);
    uint8_t a[16], b[16];
    uint64_t retry = 0;

    key_of(0x7f000002, a);
    key_of(0x7f000003, b);
    assert_int_equal(hits(t, a, 10, 1000, 10), 10);
    assert_false(sh_rl_hit(t, a, 1000, W, 10, &retry));
    assert_true(retry > 0);
    assert_false(sh_rl_hit(t, a, 59999, W, 10, NULL));
    /* Another key has its own budget. */
    assert_int_equal(hits(t, b, 10, 2000, 10), 10);
    assert_false(sh_rl_hit(t, b, 2000, W, 10, NULL));
    assert_int_equal(sh_rl_entries(t), 2);
    sh_rl_free(t);
}

/* The previous window is weighted by the part of it still inside the sliding
 * window: half-way through the next window, 11 earlier requests count 5.5. */
static void test_sliding_estimate(void **state)
{
    sh_rl_table *t = sh_rl_new(4096);
    uint8_t a[16];
    key_of(1, a);

    assert_int_equal(hits(t, a, 11, 1000, 10), 10); /* cur = 11: blocked ones count too */
    /* t = 90 s: window 1, elapsed 30 s: 11 * 0.5 + cur < 10 for cur = 0..4 */
    assert_int_equal(hits(t, a, 5, W + W / 2, 10), 5);
    assert_false(sh_rl_hit(t, a, W + W / 2, W, 10, NULL));
    /* Near the end of window 1 the old requests weigh almost nothing, but the
     * 6 of this window do: 11 / 60000 + 6 + k < 10 for k = 0..3. */
    assert_int_equal(hits(t, a, 10, 2 * W - 1, 10), 4);
    sh_rl_free(t);
}

static void test_recovery(void **state)
{
    sh_rl_table *t = sh_rl_new(4096);
    uint8_t a[16];
    key_of(2, a);

    assert_int_equal(hits(t, a, 50, 0, 10), 10);
    /* Two windows of silence: everything has slid out. */
    assert_int_equal(hits(t, a, 20, 2 * W, 10), 10);
    /* The same after a much longer pause. */
    assert_int_equal(hits(t, a, 20, 100 * W + 123, 10), 10);
    sh_rl_free(t);
}

/* Retry-After is exact: silent for retry-1 ms is still blocked, retry ms is
 * allowed. Each probe uses a fresh key with the same history, since every
 * request counts. */
static void check_retry(void (*history)(sh_rl_table *, const uint8_t *), uint64_t block_at,
                        uint64_t want)
{
    sh_rl_table *t = sh_rl_new(4096);
    uint8_t a[16], b[16], c[16];
    uint64_t retry = 0;
    key_of(10, a);
    key_of(11, b);
    key_of(12, c);

    history(t, a);
    assert_false(sh_rl_hit(t, a, block_at, W, 10, &retry));
    assert_int_equal(retry, want);
    history(t, b);
    assert_false(sh_rl_hit(t, b, block_at, W, 10, NULL));
    assert_false(sh_rl_hit(t, b, block_at + retry - 1, W, 10, NULL));
    history(t, c);
    assert_false(sh_rl_hit(t, c, block_at, W, 10, NULL));
    assert_true(sh_rl_hit(t, c, block_at + retry, W, 10, NULL));
    sh_rl_free(t);
}

static void ten_at_1s(sh_rl_table *t, const uint8_t *k)
{
    assert_int_equal(hits(t, k, 10, 1000, 10), 10);
}

static void ten_in_window0(sh_rl_table *t, const uint8_t *k)
{
    assert_int_equal(hits(t, k, 10, 5000, 10), 10);
}

static void test_retry_after(void **state)
{
    /* Blocked at 1 s with cur = 11: next window, 11 * (W - e) < 10 W from
     * e = 5455 ms on, so 59 s + 5.455 s. */
    check_retry(ten_at_1s, 1000, (W - 1000) + 5455);
    /* Blocked at the very start of window 1 by the previous window alone
     * (prev = 10, cur = 1): 10 (W - e) + W < 10 W from e = 6001 ms. */
    check_retry(ten_in_window0, W, 6001);
}

/* More distinct keys than slots: the table never grows past its capacity
 * and heavy hitters keep exact counts while one-request keys churn. */
static void test_bounded(void **state)
{
    sh_rl_table *t = sh_rl_new(1024);
    uint8_t k[16], heavy[8][16];
    int allowed[8] = {0}, blocked_at[8] = {0}, sent[8] = {0};
    uint64_t now = 0;

    assert_true(sh_rl_capacity(t) <= 1024);
    assert_true(sh_rl_capacity(t) >= 512);
    for (int h = 0; h < 8; h++)
        key_of(0x0a000000u + (uint32_t)h, heavy[h]);
    for (uint32_t i = 0; i < 200000; i++) {
        key_of(0xc0000000u + i, k);
        assert_true(sh_rl_hit(t, k, now, 10 * W, 100, NULL));
        if (i % 10 == 0) {
            int h = (int)(i / 10) % 8;
            sent[h]++;
            if (sh_rl_hit(t, heavy[h], now, 10 * W, 100, NULL))
                allowed[h]++;
            else if (!blocked_at[h])
                blocked_at[h] = sent[h];
        }
        now++; /* 200 s in all: one 600 s window */
    }
    assert_true(sh_rl_entries(t) <= sh_rl_capacity(t));
    assert_true(sh_rl_evictions(t) >= 200000 - sh_rl_capacity(t));
    for (int h = 0; h < 8; h++) {
        assert_int_equal(allowed[h], 100);
        assert_int_equal(blocked_at[h], 101);
    }
    sh_rl_free(t);

    /* The minimum: one bucket per shard. */
    t = sh_rl_new(1);
    assert_int_equal(sh_rl_capacity(t), 512);
    sh_rl_free(t);
}

typedef struct {
    sh_rl_table *t;
    int allowed;
} worker_arg;

static void *hammer(void *p)
{
    worker_arg *a = p;
    uint8_t k[16];
    key_of(0x7f000009, k);
    for (int i = 0; i < 5000; i++)
        a->allowed += sh_rl_hit(a->t, k, 1000, W, 777, NULL);
    return NULL;
}

/* Workers share one budget: however the requests interleave, exactly limit
 * of them pass. */
static void test_threads_share(void **state)
{
    sh_rl_table *t = sh_rl_new(4096);
    pthread_t th[4];
    worker_arg args[4];
    int total = 0;

    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){t, 0};
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += args[i].allowed;
    }
    assert_int_equal(total, 777);
    sh_rl_free(t);
}

static sh_config *load(const char *rate_limit)
{
    char path[] = "/tmp/shield-test-rl-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f,
            "listen = ( { address = \"127.0.0.1:8080\"; } );\n"
            "origins = ( { name = \"o\"; type = \"http\"; endpoint = \"http://127.0.0.1:9\"; "
            "} );\n"
            "behaviors = ( { path = \"*\"; origin = \"o\"; } );\n%s\n",
            rate_limit);
    fclose(f);
    sh_config *cfg = sh_config_load(path, stderr);
    unlink(path);
    return cfg;
}

/* The seed deployment's rule is the default: 2,000 requests per 5 minutes
 * per IP, 403; and the table enforces exactly that. */
static void test_config_defaults(void **state)
{
    sh_config *cfg = load("");
    assert_non_null(cfg);
    assert_false(cfg->rate_limit.enabled);
    sh_config_free(cfg);

    cfg = load("rate_limit = { };");
    assert_non_null(cfg);
    const sh_ratelimit_conf *r = &cfg->rate_limit;
    assert_true(r->enabled);
    assert_int_equal(r->limit, 2000);
    assert_int_equal(r->window_s, 300);
    assert_int_equal(r->status, 403);
    assert_false(r->forwarded);
    assert_false(r->fallback_match);
    assert_string_equal(r->header, "X-Forwarded-For");
    assert_int_equal(r->max_clients, 100000);

    sh_rl_table *t = sh_rl_new(r->max_clients);
    assert_true(sh_rl_capacity(t) <= 100000);
    uint8_t k[16];
    key_of(0x7f000002, k);
    int ok = 0;
    for (int i = 0; i < 2100; i++)
        ok += sh_rl_hit(t, k, 12345, r->window_s * 1000, r->limit, NULL);
    assert_int_equal(ok, 2000);
    sh_rl_free(t);
    sh_config_free(cfg);

    cfg = load("rate_limit = { limit = 10; window = \"2m\"; key = \"forwarded_ip\"; "
               "header = \"X-Client-IP\"; fallback = \"match\"; status = 429; "
               "max_clients = 2048; };");
    assert_non_null(cfg);
    r = &cfg->rate_limit;
    assert_int_equal(r->limit, 10);
    assert_int_equal(r->window_s, 120);
    assert_true(r->forwarded);
    assert_true(r->fallback_match);
    assert_string_equal(r->header, "X-Client-IP");
    assert_int_equal(r->status, 429);
    assert_int_equal(r->max_clients, 2048);
    sh_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_then_block), cmocka_unit_test(test_sliding_estimate),
        cmocka_unit_test(test_recovery),         cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_bounded),          cmocka_unit_test(test_threads_share),
        cmocka_unit_test(test_config_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
