/*
 * The shared chunk arena (proxy/cache/arena.c): which chunks go to it, what a
 * full arena does, that a freed slot comes back with fresh pages while a
 * descriptor-based reader of the old pages (what sendfile holds) keeps the old
 * bytes, and that the arena outlives the engine until its last chunk is gone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "shield/cache.h"

static void tcp_pair(int sv[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    sv[1] = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(sv[1], (struct sockaddr *)&a, sizeof a), 0);
    sv[0] = accept(l, NULL, NULL);
    assert_true(sv[0] >= 0);
    close(l);
}

static void test_small_chunks_stay_on_the_heap(void **state)
{
    assert_int_equal(cache_arena_init(1 << 20), 0);
    cache_chunk *small = cache_chunk_new_shared(CACHE_SHARED_MIN - 1);
    cache_chunk *big = cache_chunk_new_shared(CACHE_SHARED_MIN);
    assert_int_equal(cache_chunk_file_offset(small), -1);
    assert_true(cache_chunk_file_offset(big) >= 0);
    assert_true(cache_arena_fd() >= 0);
    memset(big->data, 'x', big->cap);
    char back[16];
    assert_int_equal(pread(cache_arena_fd(), back, sizeof back, cache_chunk_file_offset(big)),
                     (ssize_t)sizeof back);
    assert_memory_equal(back, "xxxxxxxxxxxxxxxx", sizeof back);
    cache_chunk_unref(small);
    cache_chunk_unref(big);
    cache_arena_release();
    assert_int_equal(cache_arena_fd(), -1); /* nothing left: unmapped */
}

static void test_full_arena_falls_back_to_heap(void **state)
{
    /* 1 MiB of budget gives the minimum of 256 slots. */
    assert_int_equal(cache_arena_init(1 << 20), 0);
    enum { N = 300 };
    cache_chunk *ch[N];
    int shared = 0;
    for (int i = 0; i < N; i++) {
        ch[i] = cache_chunk_new_shared(CACHE_SHARED_MIN);
        shared += cache_chunk_file_offset(ch[i]) >= 0;
        ch[i]->data[0] = (char)i; /* every chunk is writable, arena or heap */
    }
    assert_int_equal(shared, 256);
    assert_int_equal(cache_chunk_file_offset(ch[N - 1]), -1);
    cache_chunk_unref(ch[0]);
    cache_chunk *again = cache_chunk_new_shared(CACHE_SHARED_MIN);
    assert_true(cache_chunk_file_offset(again) >= 0); /* a freed slot is usable again */
    cache_chunk_unref(again);
    for (int i = 1; i < N; i++)
        cache_chunk_unref(ch[i]);
    cache_arena_release();
}

static void test_reused_slot_does_not_change_bytes_in_flight(void **state)
{
    assert_int_equal(cache_arena_init(1 << 20), 0);
    /* TCP over loopback: the receiver's queue holds the sent pages themselves
     * (a unix socket might copy, and then this test could not fail). */
    int sv[2];
    tcp_pair(sv);

    uint32_t len = 64 * 1024;
    cache_chunk *a = cache_chunk_new_shared(len);
    memset(a->data, 'A', len);
    int64_t off = cache_chunk_file_offset(a);
    off_t pos = (off_t)off;
    ssize_t sent = sendfile(sv[0], cache_arena_fd(), &pos, 4096);
    assert_int_equal(sent, 4096);
    cache_chunk_unref(a); /* the slot goes back while the pages sit in the socket */

    cache_chunk *b = cache_chunk_new_shared(len);
    assert_int_equal(cache_chunk_file_offset(b), off); /* the same slot, reused */
    for (uint32_t i = 0; i < len; i++)
        assert_int_equal(b->data[i], 0); /* fresh pages, not A's */
    memset(b->data, 'B', len);

    char got[4096];
    assert_int_equal(read(sv[1], got, sizeof got), (ssize_t)sizeof got);
    for (size_t i = 0; i < sizeof got; i++)
        assert_int_equal(got[i], 'A');
    cache_chunk_unref(b);
    close(sv[0]);
    close(sv[1]);
    cache_arena_release();
}

static void test_arena_outlives_the_engine(void **state)
{
    assert_int_equal(cache_arena_init(1 << 20), 0);
    assert_int_equal(cache_arena_init(1 << 20), 0); /* a second engine shares it */
    cache_chunk *c = cache_chunk_new_shared(CACHE_SHARED_MIN);
    cache_arena_release();
    cache_arena_release(); /* no engine left, one chunk still held */
    assert_true(cache_arena_fd() >= 0);
    c->data[c->cap - 1] = 1; /* still mapped */
    cache_chunk *late = cache_chunk_new_shared(CACHE_SHARED_MIN);
    assert_int_equal(cache_chunk_file_offset(late), -1); /* no new slots without an engine */
    cache_chunk_unref(late);
    cache_chunk_unref(c);
    assert_int_equal(cache_arena_fd(), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_chunks_stay_on_the_heap),
        cmocka_unit_test(test_full_arena_falls_back_to_heap),
        cmocka_unit_test(test_reused_slot_does_not_change_bytes_in_flight),
        cmocka_unit_test(test_arena_outlives_the_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
