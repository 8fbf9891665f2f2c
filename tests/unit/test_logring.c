/*
 * Log rings (proxy/logring.c): order, the record and byte bounds, wrap-around,
 * freeing what is still queued, and one producer against one consumer thread.
 * Then the real-time log's pieces that need no socket (modules/realtime_log.c):
 * field names, target syntax, the sampling counter, the record format, and the
 * drop counter of a sender whose unix receiver is missing.
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
#include <time.h>
#include <unistd.h>

#include "shield/logring.h"
#include "shield/realtime_log.h"
#include "shield/worker.h"

typedef struct sink {
    char buf[4096];
    size_t n;
    int count;
    int64_t last_ts;
} sink;

static void collect(const sh_logrec *rec, void *arg)
{
    sink *s = arg;
    assert_true(rec->len >= 1 && rec->data[rec->len - 1] == '\n');
    assert_true(s->n + rec->len < sizeof s->buf);
    memcpy(s->buf + s->n, rec->data, rec->len);
    s->n += rec->len;
    s->buf[s->n] = '\0';
    s->count++;
    s->last_ts = rec->ts_us;
}

static void test_order_and_bounds(void **st)
{
    (void)st;
    sink s = {0};
    sh_logring *r = sh_logring_new(3, 1 << 20); /* rounded up to 4 slots */
    assert_int_equal(sh_logring_push(r, 1, "a", 1), 0);
    assert_int_equal(sh_logring_push(r, 2, "bb", 2), 0);
    assert_int_equal(sh_logring_push(r, 3, "", 0), 0);
    assert_int_equal(sh_logring_push(r, 4, "d", 1), 0);
    assert_int_equal(sh_logring_push(r, 5, "e", 1), -1); /* full by records */
    assert_int_equal(sh_logring_pending(r), 4);
    assert_int_equal(sh_logring_drain(r, collect, &s), 4);
    assert_string_equal(s.buf, "a\nbb\n\nd\n");
    assert_int_equal(s.last_ts, 4);
    assert_int_equal(sh_logring_pending(r), 0);
    /* wrap around the slot array many times */
    for (int i = 0; i < 1000; i++) {
        char t[16];
        int l = snprintf(t, sizeof t, "%d", i);
        assert_int_equal(sh_logring_push(r, i, t, (size_t)l), 0);
        if (i % 3 == 2) {
            s.n = 0;
            s.count = 0;
            assert_int_equal(sh_logring_drain(r, collect, &s), 3);
        }
    }
    /* left queued on purpose: sh_logring_free releases them (ASan checks) */
    assert_int_equal(sh_logring_pending(r), 1);
    sh_logring_free(r);
    sh_logring_free(NULL);
}

static void test_byte_bound(void **st)
{
    (void)st;
    sink s = {0};
    char big[100];
    memset(big, 'x', sizeof big);
    sh_logring *r = sh_logring_new(64, 250);
    assert_int_equal(sh_logring_push(r, 0, big, 100), 0);
    assert_int_equal(sh_logring_push(r, 0, big, 100), 0);
    assert_int_equal(sh_logring_push(r, 0, big, 100), -1); /* 300 > 250 bytes */
    assert_int_equal(sh_logring_push(r, 0, big, 50), 0);
    assert_int_equal(sh_logring_drain(r, collect, &s), 3);
    /* draining gives the bytes back */
    assert_int_equal(sh_logring_push(r, 0, big, 100), 0);
    assert_int_equal(sh_logring_push(r, 0, big, 100), 0);
    sh_logring_free(r);
}

/* ---- one producer thread, one consumer thread ---- */

#define N_THREADED 200000

typedef struct duo {
    sh_logring *r;
    int stop;
    long next;   /* the consumer's expected value */
    long errors; /* out of order or corrupt records */
    long pushed, dropped;
} duo;

static void check_seq(const sh_logrec *rec, void *arg)
{
    duo *d = arg;
    char t[32];
    snprintf(t, sizeof t, "%ld\n", (long)rec->ts_us);
    if (rec->ts_us < d->next || rec->len != strlen(t) || memcmp(rec->data, t, rec->len) != 0)
        d->errors++;
    d->next = rec->ts_us + 1;
}

static void *producer(void *arg)
{
    duo *d = arg;
    for (long i = 0; i < N_THREADED; i++) {
        char t[32];
        int l = snprintf(t, sizeof t, "%ld", i);
        if (sh_logring_push(d->r, i, t, (size_t)l) == 0)
            d->pushed++;
        else
            d->dropped++;
    }
    __atomic_store_n(&d->stop, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_threaded(void **st)
{
    (void)st;
    duo d = {.r = sh_logring_new(256, 1 << 20)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, producer, &d), 0);
    long consumed = 0;
    while (!__atomic_load_n(&d.stop, __ATOMIC_ACQUIRE))
        consumed += (long)sh_logring_drain(d.r, check_seq, &d);
    pthread_join(t, NULL);
    consumed += (long)sh_logring_drain(d.r, check_seq, &d);
    assert_int_equal(d.errors, 0);
    assert_int_equal(consumed, d.pushed);
    assert_int_equal(d.pushed + d.dropped, N_THREADED);
    assert_true(d.pushed > 0);
    sh_logring_free(d.r);
}

/* ---- the real-time log ---- */

static void test_fields_and_targets(void **st)
{
    (void)st;
    char err[200];
    assert_int_equal(sh_realtime_field_index("timestamp"), 0);
    assert_int_equal(sh_realtime_field_index("asn"), SH_RT_NFIELDS - 1);
    assert_int_equal(sh_realtime_field_index("cs-host"), 7);
    assert_int_equal(sh_realtime_field_index("date"), -1);
    assert_int_equal(sh_realtime_field_index("Timestamp"), -1);
    for (int i = 0; i < SH_RT_NFIELDS; i++)
        assert_int_equal(sh_realtime_field_index(sh_realtime_field_names[i]), i);
    assert_int_equal(sh_realtime_target_check("", err, sizeof err), 0);
    assert_int_equal(sh_realtime_target_check("file:/var/log/rt", err, sizeof err), 0);
    assert_int_equal(sh_realtime_target_check("unix:/run/rt.sock", err, sizeof err), 0);
    assert_int_equal(sh_realtime_target_check("udp:127.0.0.1:9999", err, sizeof err), 0);
    assert_int_equal(sh_realtime_target_check("udp:[::1]:9999", err, sizeof err), 0);
    assert_int_equal(sh_realtime_target_check("file:rel", err, sizeof err), -1);
    assert_int_equal(sh_realtime_target_check("unix:", err, sizeof err), -1);
    assert_int_equal(sh_realtime_target_check("udp:127.0.0.1", err, sizeof err), -1);
    assert_int_equal(sh_realtime_target_check("udp:127.0.0.1:0", err, sizeof err), -1);
    assert_int_equal(sh_realtime_target_check("kinesis:x", err, sizeof err), -1);
    char longp[200] = "unix:/";
    memset(longp + 6, 'a', 150);
    longp[156] = '\0';
    assert_int_equal(sh_realtime_target_check(longp, err, sizeof err), -1);
}

static void test_sampling(void **st)
{
    (void)st;
    unsigned pcts[] = {1, 7, 33, 50, 99, 100};
    for (size_t k = 0; k < sizeof pcts / sizeof pcts[0]; k++) {
        uint64_t c = 0;
        int n = 0;
        for (int i = 0; i < 1000; i++)
            n += sh_realtime_sampled(&c, pcts[k]);
        assert_int_equal(n, (int)pcts[k] * 10);
    }
    uint64_t c = 0;
    for (int i = 0; i < 99; i++)
        assert_false(sh_realtime_sampled(&c, 1));
    assert_true(sh_realtime_sampled(&c, 1)); /* the 100th */
}

static void test_format(void **st)
{
    (void)st;
    static sh_config cfg;
    static char line[65536];
    cfg.pop = "IAD1";
    sh_behavior_conf b = {.path = "/books/*"};
    sh_header h[] = {{"Host", 4, "h.example", 9}, {"User-Agent", 10, "u\tv", 3}};
    sh_req r;
    memset(&r, 0, sizeof r);
    r.cfg = &cfg;
    r.behavior = &b;
    r.method = "GET";
    r.method_len = 3;
    r.path = "/books/a b";
    r.path_len = 10;
    r.query = "x=%41";
    r.query_len = 5;
    r.host = "h.example";
    r.host_len = 9;
    r.http_minor = 1;
    r.headers = h;
    r.nheaders = 2;
    snprintf(r.client_ip, sizeof r.client_ip, "2001:db8::1");
    r.resp.status = 200;
    r.resp.content_length = 10;
    r.result_type = "Hit";
    snprintf(r.request_id, sizeof r.request_id, "RID");
    r.start_us = sh_now_us();
    r.ttfb_us = 3000;
    r.origin_ttfb_us = -1;
    r.range_start = r.range_end = -1;
    uint64_t all = SH_RT_ALL_FIELDS;
    size_t n = sh_realtime_format(&r, all, 1614834367LL * 1000000 + 123456, line, sizeof line);
    assert_int_equal(n, strlen(line));
    int tabs = 0;
    for (size_t i = 0; i < n; i++)
        tabs += line[i] == '\t';
    assert_int_equal(tabs, SH_RT_NFIELDS - 1);
    assert_memory_equal(line, "1614834367.123\t2001:db8::1\t0.003\t200\t", 37);
    /* a subset, always in canonical order */
    uint64_t sub = (UINT64_C(1) << 36) | (UINT64_C(1) << 8) | (UINT64_C(1) << 15) |
                   (UINT64_C(1) << 3) | (UINT64_C(1) << 37) | (UINT64_C(1) << 42) |
                   (UINT64_C(1) << 24) | (UINT64_C(1) << 40);
    sh_realtime_format(&r, sub, 0, line, sizeof line);
    assert_string_equal(line, "200\t/books/a%20b?x=%2541\tIPv6\tHit\t/books/*\t"
                              "Host:h.example%0AUser-Agent:u%09v%0A\t-\t-");
    /* aborted before the response began */
    r.ttfb_us = -1;
    r.aborted = 1;
    r.result_type = NULL;
    sub = (UINT64_C(1) << 3) | (UINT64_C(1) << 24) | (UINT64_C(1) << 32) | (UINT64_C(1) << 2);
    sh_realtime_format(&r, sub, 0, line, sizeof line);
    assert_string_equal(line, "-\t000\tError\tClientHungUpRequest");
    /* a huge header never makes a record longer than one datagram */
    static char huge[30000];
    memset(huge, '"', sizeof huge);
    sh_header hh[] = {{"User-Agent", 10, huge, sizeof huge},
                      {"Cookie", 6, huge, sizeof huge},
                      {"Referer", 7, huge, sizeof huge},
                      {"Accept", 6, huge, sizeof huge}};
    r.headers = hh;
    r.nheaders = 4;
    r.path = huge;
    r.path_len = sizeof huge;
    r.query = huge;
    r.query_len = sizeof huge;
    n = sh_realtime_format(&r, all, 0, line, sizeof line);
    assert_true(n < 65507);
    tabs = 0;
    for (size_t i = 0; i < n; i++)
        tabs += line[i] == '\t';
    assert_int_equal(tabs, SH_RT_NFIELDS - 1);
    /* tiny buffers are never overrun */
    char small[8];
    n = sh_realtime_format(&r, all, 0, small, sizeof small);
    assert_true(n < sizeof small && strlen(small) == n);
}

static void test_sender_missing_receiver(void **st)
{
    (void)st;
    static sh_config cfg;
    char err[256], path[128];
    snprintf(path, sizeof path, "unix:/tmp/shield-rt-missing-%d.sock", (int)getpid());
    cfg.log.rt_target = path;
    cfg.log.rt_sampling = 100;
    cfg.log.rt_fields = SH_RT_ALL_FIELDS;
    cfg.log.rt_ring_size = 16;
    assert_int_equal(sh_realtime_start(&cfg, err, sizeof err), 0);
    const sh_module *m = &sh_module_realtime_log;
    void *state = NULL;
    assert_int_equal(m->worker_init(NULL, &cfg, &state), 0);
    assert_non_null(state);
    sh_req r;
    memset(&r, 0, sizeof r);
    r.cfg = &cfg;
    r.ttfb_us = r.origin_ttfb_us = r.range_start = r.range_end = -1;
    for (int i = 0; i < 5; i++)
        assert_int_equal(m->phase[SH_PHASE_LOG](&r, state), SH_CONTINUE);
    m->worker_free(state); /* sends what is queued: nobody listens */
    sh_realtime_stop();
    assert_int_equal(sh_realtime_dropped(), 5);
    assert_int_equal(sh_realtime_sent(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_bounds),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_threaded),
        cmocka_unit_test(test_fields_and_targets),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_sender_missing_receiver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
