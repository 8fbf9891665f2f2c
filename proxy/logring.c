/* Lock-free SPSC log record rings (shield/logring.h). */
#include "shield/logring.h"

#include <time.h>

#include <stdatomic.h>
#include <string.h>

#include "shield/alloc.h"

struct sh_logring {
    _Atomic size_t head; /* written by the producer only */
    _Atomic size_t tail; /* written by the consumer only */
    _Atomic size_t bytes;
    size_t mask;
    size_t max_bytes;
    sh_logrec **slots;
};

sh_logring *sh_logring_new(size_t slots, size_t max_bytes)
{
    size_t cap = 2;
    while (cap < slots && cap < ((size_t)1 << 30))
        cap <<= 1;
    sh_logring *r = sh_calloc(1, sizeof(*r));
    r->mask = cap - 1;
    r->max_bytes = max_bytes;
    r->slots = sh_calloc(cap, sizeof(*r->slots));
    return r;
}

void sh_logring_free(sh_logring *r)
{
    if (!r) return;
    size_t tail = atomic_load(&r->tail), head = atomic_load(&r->head);
    for (; tail != head; tail++)
        sh_free(r->slots[tail & r->mask]);
    sh_free(r->slots);
    sh_free(r);
}

int sh_logring_push(sh_logring *r, int64_t ts_us, const char *line, size_t len)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    /* bytes only ever shrinks behind the producer's back, so this check can
     * only be pessimistic, never let the bound be passed. */
    if (head - tail > r->mask ||
        atomic_load_explicit(&r->bytes, memory_order_relaxed) + len > r->max_bytes)
        return -1;
    sh_logrec *rec = sh_malloc(sizeof(*rec) + len + 1);
    rec->ts_us = ts_us;
    rec->len = len + 1;
    memcpy(rec->data, line, len);
    rec->data[len] = '\n';
    atomic_fetch_add_explicit(&r->bytes, len, memory_order_relaxed);
    r->slots[head & r->mask] = rec;
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    return 0;
}

size_t sh_logring_drain(sh_logring *r, void (*fn)(const sh_logrec *rec, void *arg), void *arg)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t n = 0;
    for (; tail != head; tail++, n++) {
        sh_logrec *rec = r->slots[tail & r->mask];
        r->slots[tail & r->mask] = NULL;
        fn(rec, arg);
        atomic_fetch_sub_explicit(&r->bytes, rec->len - 1, memory_order_relaxed);
        sh_free(rec);
        /* Release only after the slot is read: the producer may reuse it then. */
        atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    }
    return n;
}

size_t sh_logring_pending(const sh_logring *r)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    return head - tail;
}

void sh_logring_wait(pthread_cond_t *cv, pthread_mutex_t *mu, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}
