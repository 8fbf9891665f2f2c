/* Configuration snapshots (shield/snapshot.h). */
#include "shield/snapshot.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "shield/alloc.h"
#include "shield/credentials.h"

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static sh_snapshot *current;

sh_snapshot *sh_snapshot_new(sh_config *cfg, unsigned generation, char *err, size_t errlen)
{
    sh_snapshot *s = sh_calloc(1, sizeof(*s));
    s->cfg = cfg;
    s->refs = 1;
    s->generation = generation;
    s->creds = sh_calloc(cfg->norigins ? cfg->norigins : 1, sizeof(*s->creds));
    for (size_t i = 0; i < cfg->norigins; i++) {
        const sh_origin_conf *o = &cfg->origins[i];
        if (o->type != SH_ORIGIN_S3 || o->credentials == SH_CRED_NONE) continue;
        char e[256];
        s->creds[i] = sh_creds_new(o, e, sizeof(e));
        if (!s->creds[i]) {
            snprintf(err, errlen, "origin %s: credentials: %s", o->name, e);
            sh_snapshot_unref(s);
            return NULL;
        }
    }
    return s;
}

void sh_snapshot_ref(sh_snapshot *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void sh_snapshot_unref(sh_snapshot *s)
{
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (size_t i = 0; s->creds && i < s->cfg->norigins; i++)
        sh_creds_free(s->creds[i]);
    sh_free(s->creds);
    sh_config_free(s->cfg);
    sh_free(s);
}

sh_snapshot *sh_snapshot_current(void)
{
    pthread_mutex_lock(&current_lock);
    sh_snapshot *s = current;
    if (s) sh_snapshot_ref(s);
    pthread_mutex_unlock(&current_lock);
    return s;
}

void sh_snapshot_publish(sh_snapshot *s)
{
    if (s) sh_snapshot_ref(s);
    pthread_mutex_lock(&current_lock);
    sh_snapshot *old = current;
    current = s;
    pthread_mutex_unlock(&current_lock);
    sh_snapshot_unref(old);
}

static int str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

#define WHY(...)                                                                                   \
    do {                                                                                           \
        size_t l_ = strlen(why);                                                                   \
        snprintf(why + l_, whylen - l_, "%s", l_ ? "; " : "");                                     \
        l_ = strlen(why);                                                                          \
        snprintf(why + l_, whylen - l_, __VA_ARGS__);                                              \
        ok = 0;                                                                                    \
    } while (0)

int sh_snapshot_compatible(const sh_config *cur, const sh_config *next, char *why, size_t whylen)
{
    int ok = 1;
    why[0] = '\0';
    if (cur->nlisten != next->nlisten) {
        WHY("listen changed");
    } else {
        for (size_t i = 0; i < cur->nlisten; i++) {
            const sh_listen_conf *a = &cur->listen[i], *b = &next->listen[i];
            if (a->addrlen != b->addrlen || memcmp(&a->addr, &b->addr, a->addrlen) != 0 ||
                a->tls != b->tls) {
                WHY("listen changed");
                break;
            }
        }
    }
    if (cur->nworkers != next->nworkers) WHY("node.workers changed");
    const sh_cache_conf *ca = &cur->cache, *cb = &next->cache;
    if (ca->enabled != cb->enabled || ca->memory_size != cb->memory_size ||
        ca->max_object_size != cb->max_object_size || !str_eq(ca->disk_path, cb->disk_path) ||
        ca->disk_size != cb->disk_size)
        WHY("cache changed");
    if (!str_eq(cur->admin.address, next->admin.address)) WHY("admin.address changed");
    if (!str_eq(cur->error_log, next->error_log)) WHY("node.error_log changed");
    if (cur->rate_limit.max_clients != next->rate_limit.max_clients)
        WHY("rate_limit.max_clients changed");
    const sh_log_conf *la = &cur->log, *lb = &next->log;
    if (!str_eq(la->access_dir, lb->access_dir) ||
        !str_eq(la->distribution_id, lb->distribution_id) || !str_eq(la->domain, lb->domain) ||
        la->retention_days != lb->retention_days || la->ring_size != lb->ring_size)
        WHY("log.access changed");
    if (!str_eq(la->rt_target, lb->rt_target) || la->rt_sampling != lb->rt_sampling ||
        la->rt_fields != lb->rt_fields || la->rt_ring_size != lb->rt_ring_size)
        WHY("log.realtime changed");
    if (cur->alarms.popular_window_ms != next->alarms.popular_window_ms ||
        cur->alarms.popular_entries != next->alarms.popular_entries)
        WHY("popular changed");
    return ok;
}
