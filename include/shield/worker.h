/*
 * Workers: one thread, one event_base (no locking), its own SO_REUSEPORT
 * listening sockets, its client connections, its curl multi handle and its
 * counters. Nothing crosses threads except through the notify pipe (main ->
 * worker commands such as "drain") and the shared, internally locked objects
 * (credentials providers; later the cache and rate-limit tables).
 */
#ifndef SHIELD_WORKER_H
#define SHIELD_WORKER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "shield/config.h"
#include "shield/origin.h"

struct event_base;
struct event;
struct evconnlistener;
struct sh_conn;
struct sh_creds;
struct sh_snapshot;
struct sh_cache;
struct cache_fill;
struct cache_waiter;

/* Per-worker counters; read by other threads only as relaxed snapshots. */
typedef struct sh_worker_stats {
    uint64_t connections_accepted;
    uint64_t connections_rejected; /* over limits.max_connections */
    uint64_t requests;
    uint64_t responses_by_class[6]; /* index = status / 100 (0 = none sent) */
    uint64_t origin_fetches;
    uint64_t origin_errors;
    uint64_t bytes_in;               /* from viewers */
    uint64_t bytes_out;              /* to viewers */
    uint64_t tls_handshakes;         /* completed */
    uint64_t tls_handshake_failures; /* failed or abandoned mid-handshake */
    uint64_t
        framing_disagreements; /* the scanner and llhttp framed a request differently (a bug) */
    uint64_t edge[16];         /* indexed by sh_counter (shield/module.h) */
} sh_worker_stats;

typedef struct sh_worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct sh_snapshot *snap; /* current configuration (a reference); requests take their own */
    const sh_config *cfg;     /* = snap->cfg */
    struct sh_snapshot *next_snap; /* announced by main, adopted on this thread (wake_lock) */
    int *listen_fds;               /* one per cfg->listen, bound by main, owned here */
    struct evconnlistener **listeners;
    size_t nlisteners;
    int notify_fd[2]; /* pipe: main writes single-byte commands */
    struct event *notify_ev;
    struct event *drain_timer;
    origin_ctx *origin;
    void **mod_states;     /* indexed like sh_modules */
    struct sh_conn *conns; /* doubly linked list of open connections */
    size_t nconns;
    int draining;
    struct sh_cache *cache;   /* shared engine, NULL when caching is off */
    struct cache_fill *fills; /* fills this worker runs (their origin fetches) */
    size_t nfills;
    /* Cross-thread wake-ups of cache waiters living on this worker: fills on
     * any worker push waiters here and poke the notify pipe once. */
    pthread_mutex_t wake_lock;
    struct cache_waiter *wake_head;
    int wake_signalled;
    uint64_t rng[2]; /* xorshift128+ state for request ids */
    /* Request-head buffers handed back by connections going idle and taken
     * by the next request (proxy/conn.c): an idle keep-alive connection holds
     * none, and a busy worker allocates none per request. */
    struct conn_spare *spares;
    size_t nspares;
    sh_worker_stats stats;
} sh_worker;

/*
 * Create a worker (event_base, listeners on the given bound fds, origin
 * context, module states). Does not start its thread. NULL on failure with
 * a message in err.
 */
sh_worker *sh_worker_new(int id, struct sh_snapshot *snap, struct sh_cache *cache,
                         const int *listen_fds, char *err, size_t errlen);
/* Announce a new configuration snapshot (main thread); the worker adopts it
 * for requests that start after its next loop turn. Takes its own reference. */
void sh_worker_set_snapshot(sh_worker *w, struct sh_snapshot *snap);
/* Start the thread (runs the event loop until the worker has drained). 0 or -1. */
int sh_worker_start(sh_worker *w);
/* Ask the worker to drain: stop accepting, finish in-flight requests within
 * timeouts.drain, then exit its loop. Async-signal-unsafe; call from main. */
void sh_worker_drain(sh_worker *w);
/* Wait for the thread to end. */
void sh_worker_join(sh_worker *w);
/* Close every remaining connection (after every worker has been joined, so
 * no fill on another worker can wake them any more). */
void sh_worker_close(sh_worker *w);
/* Cancel fills and free everything (after sh_worker_close on every worker). */
void sh_worker_free(sh_worker *w);

/* Deliver cache events to a waiter on w (any thread). */
void sh_worker_wake(sh_worker *w, struct cache_waiter *wt, unsigned events);
/* Forget a waiter's pending wake-up (its own worker thread). */
void sh_worker_unwake(sh_worker *w, struct cache_waiter *wt);
/* A fill of w ended: a draining worker may now be able to stop. */
void sh_worker_fill_done(sh_worker *w);

/* Connection entry points (proxy/conn.c). */
void sh_conn_accept(sh_worker *w, int fd, const struct sockaddr *sa, int salen,
                    const sh_listen_conf *lc);
/* Drain: close idle connections now, the rest after their current response. */
void sh_conn_drain_all(sh_worker *w);
/* Free the worker's spare request buffers (worker teardown). */
void sh_conn_spares_free(sh_worker *w);
/* Close every connection at once (drain timeout, shutdown). */
void sh_conn_close_all(sh_worker *w);
/* Called by conn.c when a connection is freed, so a draining worker can exit. */
void sh_worker_conn_closed(sh_worker *w);

/* Monotonic clock in microseconds. */
int64_t sh_now_us(void);

#endif
