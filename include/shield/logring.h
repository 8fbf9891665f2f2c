/*
 * A bounded single-producer / single-consumer queue of log records, shared by
 * the standard access log (proxy/accesslog.c) and the real-time log
 * (modules/realtime_log.c).
 *
 * Why: a worker must never wait for a log writer, and a writer must never
 * take a lock a worker holds. Each worker owns one ring and is its only
 * producer; one writer thread is its only consumer. The two sides share
 * nothing but two atomic indices (head written by the producer, tail by the
 * consumer, release/acquire publishing the slot contents) and a byte count.
 * A ring is bounded twice, in records and in pending bytes, so a flood of
 * long lines cannot grow memory either: a push that does not fit is refused
 * and the caller counts the drop.
 *
 * Ownership: a record is copied in by sh_logring_push() and freed by the
 * ring after the consumer's callback returns. Whoever frees the ring must be
 * sure neither side still uses it; records still queued are freed unread.
 */
#ifndef SHIELD_LOGRING_H
#define SHIELD_LOGRING_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* One queued record: len bytes of data, the last of which is '\n'. */
typedef struct sh_logrec {
    int64_t ts_us; /* the producer's timestamp (the access log picks its hourly file by it) */
    size_t len;
    char data[];
} sh_logrec;

typedef struct sh_logring sh_logring;

/* A ring of at least slots records (rounded up to a power of two, >= 2) and
 * at most max_bytes of pending line bytes. */
sh_logring *sh_logring_new(size_t slots, size_t max_bytes);

/* The drain threads' tick: wait on cv (mu held) until signalled or ms pass. */
void sh_logring_wait(pthread_cond_t *cv, pthread_mutex_t *mu, long ms);
/* Free the ring and any record still queued (NULL is fine). */
void sh_logring_free(sh_logring *r);

/* Producer: queue a copy of line (len bytes, no newline; one is appended).
 * 0, or -1 when the ring is full (by records or bytes): nothing was queued. */
int sh_logring_push(sh_logring *r, int64_t ts_us, const char *line, size_t len);

/* Consumer: call fn on every record queued so far, oldest first, freeing each
 * after fn returns. Returns how many were consumed. */
size_t sh_logring_drain(sh_logring *r, void (*fn)(const sh_logrec *rec, void *arg), void *arg);

/* Records queued and not yet drained (approximate from the other side). */
size_t sh_logring_pending(const sh_logring *r);

#endif
