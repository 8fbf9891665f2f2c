#include "shield/worker.h"
#include "shield/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/log.h"
#include "shield/module.h"

int64_t sh_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    sh_worker *w = arg;
    size_t i = 0;
    while (i + 1 < w->nlisteners && w->listeners[i] != l)
        i++;
    sh_conn_accept(w, fd, sa, salen, &w->cfg->listen[i]);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    /* EMFILE/ENFILE: keep running; libevent retries on the next readiness. */
    sh_log(SH_LOG_ERROR, "accept: %s", strerror(errno));
}

static void stop_loop_if_drained(sh_worker *w)
{
    /* Fills may feed viewers on other workers: they finish before we stop. */
    if (w->draining && w->nconns == 0 && w->nfills == 0) event_base_loopbreak(w->base);
}

void sh_worker_fill_done(sh_worker *w)
{
    stop_loop_if_drained(w);
}

void sh_worker_wake(sh_worker *w, cache_waiter *wt, unsigned events)
{
    int poke = 0;
    pthread_mutex_lock(&w->wake_lock);
    wt->pending |= events;
    if (!wt->queued) {
        wt->queued = 1;
        wt->wake_next = w->wake_head;
        w->wake_head = wt;
    }
    if (!w->wake_signalled) {
        w->wake_signalled = 1;
        poke = 1;
    }
    pthread_mutex_unlock(&w->wake_lock);
    if (poke) {
        char c = 'w';
        if (write(w->notify_fd[1], &c, 1) < 0 && errno != EAGAIN)
            sh_log(SH_LOG_ERROR, "worker %d: wake: %s", w->id, strerror(errno));
    }
}

void sh_worker_unwake(sh_worker *w, cache_waiter *wt)
{
    if (!w) return;
    pthread_mutex_lock(&w->wake_lock);
    if (wt->queued) {
        for (cache_waiter **p = &w->wake_head; *p; p = &(*p)->wake_next) {
            if (*p == wt) {
                *p = wt->wake_next;
                break;
            }
        }
        wt->queued = 0;
    }
    wt->pending = 0;
    pthread_mutex_unlock(&w->wake_lock);
}

/* Deliver queued wake-ups one at a time: a notify may detach (and free) any
 * waiter, so the queue is re-read under the lock after each call. */
static void run_wakeups(sh_worker *w)
{
    pthread_mutex_lock(&w->wake_lock);
    w->wake_signalled = 0;
    while (w->wake_head) {
        cache_waiter *wt = w->wake_head;
        w->wake_head = wt->wake_next;
        wt->queued = 0;
        unsigned ev = wt->pending;
        wt->pending = 0;
        pthread_mutex_unlock(&w->wake_lock);
        if (ev) wt->notify(wt, ev);
        pthread_mutex_lock(&w->wake_lock);
    }
    pthread_mutex_unlock(&w->wake_lock);
}

void sh_worker_conn_closed(sh_worker *w)
{
    stop_loop_if_drained(w);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    sh_worker *w = arg;
    if (w->nconns)
        sh_log(SH_LOG_WARN, "worker %d: drain timeout, closing %zu connections", w->id, w->nconns);
    sh_conn_close_all(w);
    event_base_loopbreak(w->base);
}

static void start_drain(sh_worker *w)
{
    if (w->draining) return;
    w->draining = 1;
    for (size_t i = 0; i < w->nlisteners; i++) {
        evconnlistener_free(w->listeners[i]);
        w->listeners[i] = NULL;
    }
    w->nlisteners = 0;
    sh_conn_drain_all(w);
    uint64_t ms = w->cfg->timeouts.drain_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    w->drain_timer = evtimer_new(w->base, drain_timeout_cb, w);
    evtimer_add(w->drain_timer, &tv);
    stop_loop_if_drained(w);
}

/* New requests run on the announced snapshot; requests in flight keep theirs. */
static void adopt_snapshot(sh_worker *w)
{
    pthread_mutex_lock(&w->wake_lock);
    sh_snapshot *next = w->next_snap;
    w->next_snap = NULL;
    pthread_mutex_unlock(&w->wake_lock);
    if (!next) return;
    sh_snapshot *old = w->snap;
    w->snap = next;
    w->cfg = next->cfg;
    sh_snapshot_unref(old);
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    sh_worker *w = arg;
    char cmd[16];
    ssize_t n = read(fd, cmd, sizeof(cmd));
    for (ssize_t i = 0; i < n; i++) {
        if (cmd[i] == 'd')
            start_drain(w);
        else if (cmd[i] == 'w')
            run_wakeups(w);
    }
    /* 'c' announces a snapshot; checked on every wake-up so that a 'c' lost
     * to a full pipe (EAGAIN: other bytes are pending) is not lost for good. */
    adopt_snapshot(w);
}

void sh_worker_set_snapshot(sh_worker *w, sh_snapshot *snap)
{
    sh_snapshot_ref(snap);
    pthread_mutex_lock(&w->wake_lock);
    sh_snapshot *old = w->next_snap;
    w->next_snap = snap;
    pthread_mutex_unlock(&w->wake_lock);
    sh_snapshot_unref(old); /* announced but never adopted */
    char c = 'c';
    if (write(w->notify_fd[1], &c, 1) < 0 && errno != EAGAIN)
        sh_log(SH_LOG_ERROR, "worker %d: notify: %s", w->id, strerror(errno));
}

sh_worker *sh_worker_new(int id, sh_snapshot *snap, struct sh_cache *cache, const int *listen_fds,
                         char *err, size_t errlen)
{
    sh_worker *w = sh_calloc(1, sizeof(*w));
    const sh_config *cfg = snap->cfg;
    w->id = id;
    w->cache = cache;
    pthread_mutex_init(&w->wake_lock, NULL);
    sh_snapshot_ref(snap);
    w->snap = snap;
    w->cfg = cfg;
    w->notify_fd[0] = w->notify_fd[1] = -1;

    struct event_config *ec = event_config_new();
    /* One thread per base: no internal locking needed. */
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    /* A request turns reading off and writing on, and the response turns
     * them back: with the changelist those land as one epoll_ctl per loop
     * turn instead of one per change. */
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base) {
        snprintf(err, errlen, "worker %d: cannot create event base", id);
        goto fail;
    }
    if (pipe2(w->notify_fd, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, errlen, "worker %d: pipe: %s", id, strerror(errno));
        goto fail;
    }
    w->notify_ev = event_new(w->base, w->notify_fd[0], EV_READ | EV_PERSIST, notify_cb, w);
    event_add(w->notify_ev, NULL);

    w->listeners = sh_calloc(cfg->nlisten ? cfg->nlisten : 1, sizeof(*w->listeners));
    for (size_t i = 0; i < cfg->nlisten; i++) {
        w->listeners[i] =
            evconnlistener_new(w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE, -1, listen_fds[i]);
        if (!w->listeners[i]) {
            snprintf(err, errlen, "worker %d: cannot listen on %s", id, cfg->listen[i].address);
            close(listen_fds[i]);
            for (size_t j = i + 1; j < cfg->nlisten; j++)
                close(listen_fds[j]);
            goto fail;
        }
        evconnlistener_set_error_cb(w->listeners[i], accept_error_cb);
        w->nlisteners = i + 1;
    }

    w->origin = origin_ctx_new(w->base);
    if (!w->origin) {
        snprintf(err, errlen, "worker %d: cannot create the origin client", id);
        goto fail;
    }
    w->mod_states = sh_calloc(sh_nmodules ? sh_nmodules : 1, sizeof(void *));
    for (size_t i = 0; i < sh_nmodules; i++) {
        if (sh_modules[i]->worker_init &&
            sh_modules[i]->worker_init(w, cfg, &w->mod_states[i]) != 0) {
            snprintf(err, errlen, "worker %d: module %s failed to start", id, sh_modules[i]->name);
            goto fail;
        }
    }
    if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || (!w->rng[0] && !w->rng[1])) {
        w->rng[0] = (uint64_t)sh_now_us() ^ (uint64_t)getpid();
        w->rng[1] = 0x9e3779b97f4a7c15ULL ^ (uint64_t)id;
    }
    return w;
fail:
    sh_worker_close(w);
    sh_worker_free(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    sh_worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

int sh_worker_start(sh_worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

void sh_worker_drain(sh_worker *w)
{
    char c = 'd';
    if (write(w->notify_fd[1], &c, 1) < 0)
        sh_log(SH_LOG_ERROR, "worker %d: notify: %s", w->id, strerror(errno));
}

void sh_worker_join(sh_worker *w)
{
    if (w && w->thread) {
        pthread_join(w->thread, NULL);
        w->thread = 0;
    }
}

void sh_worker_close(sh_worker *w)
{
    if (w && w->base) sh_conn_close_all(w);
}

void sh_worker_free(sh_worker *w)
{
    if (!w) return;
    cache_fills_shutdown(w);
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i]) evconnlistener_free(w->listeners[i]);
    sh_free(w->listeners);
    if (w->mod_states) {
        for (size_t i = 0; i < sh_nmodules; i++)
            if (sh_modules[i]->worker_free && w->mod_states[i])
                sh_modules[i]->worker_free(w->mod_states[i]);
        sh_free(w->mod_states);
    }
    if (w->origin) origin_ctx_free(w->origin);
    sh_conn_spares_free(w);
    if (w->drain_timer) event_free(w->drain_timer);
    if (w->notify_ev) event_free(w->notify_ev);
    if (w->notify_fd[0] >= 0) close(w->notify_fd[0]);
    if (w->notify_fd[1] >= 0) close(w->notify_fd[1]);
    if (w->base) event_base_free(w->base);
    pthread_mutex_destroy(&w->wake_lock);
    sh_snapshot_unref(w->next_snap);
    sh_snapshot_unref(w->snap);
    sh_free(w);
}

void *sh_worker_module_state(sh_worker *w, const sh_module *m)
{
    for (size_t i = 0; i < sh_nmodules; i++)
        if (sh_modules[i] == m) return w->mod_states ? w->mod_states[i] : NULL;
    return NULL;
}
