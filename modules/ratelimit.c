/*
 * The WAF rate-based rule: at most `limit` requests per key per sliding
 * window, the key being the client address (as the identity module decided)
 * or the first address of a named header (forwarded_ip). The counter table is
 * described in shield/ratelimit.h.
 *
 * What a block looks like: CloudFront logs a request blocked by AWS WAF with
 * x-edge-result-type and x-edge-detailed-result-type both "Error" (there is no
 * WAF-specific detailed type; "LimitExceeded" is CloudFront's own quota), the
 * status is 403 unless the rule sets a custom one (429 here gets a
 * Retry-After), and the body is CloudFront's "Request blocked" error page.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "shield/alloc.h"
#include "shield/log.h"
#include "shield/module.h"
#include "shield/ratelimit.h"

/* ---- the table ---------------------------------------------------------------------------- */

#define RL_SHARDS 64
#define RL_WAYS   8

typedef struct rl_entry {
    uint8_t key[16];
    uint32_t win;  /* index + 1 of the fixed window cur counts; 0 = free slot */
    uint32_t seen; /* low 32 bits of the last hit time (ms): tie-break between equal estimates */
    uint32_t cur;  /* requests in window win */
    uint32_t prev; /* requests in window win - 1 */
} rl_entry;

/* Padded to a cache line so two workers on neighbouring shards do not
 * bounce one line between them. */
typedef union rl_shard {
    struct {
        pthread_mutex_t lock;
        rl_entry *slots; /* nbuckets * RL_WAYS */
        size_t used;
        uint64_t evictions;
    } s;
    char pad[128];
} rl_shard;

struct sh_rl_table {
    rl_shard shards[RL_SHARDS];
    size_t nbuckets; /* per shard */
    uint64_t k0, k1; /* SipHash key */
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

/* SipHash-2-4 of a 16-byte key: keyed, so which bucket an address lands in
 * cannot be predicted (and so not attacked) from outside. */
static uint64_t siphash16(const uint8_t in[16], uint64_t k0, uint64_t k1)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t m;

    for (int i = 0; i < 2; i++) {
        memcpy(&m, in + 8 * i, 8);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    m = (uint64_t)16 << 56;
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

sh_rl_table *sh_rl_new(size_t max_entries)
{
    sh_rl_table *t = sh_calloc(1, sizeof *t);
    uint64_t key[2];

    t->nbuckets = max_entries / (RL_SHARDS * RL_WAYS);
    if (t->nbuckets == 0) t->nbuckets = 1;
    if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)t;
        key[1] = (uint64_t)ts.tv_sec ^ 0xc2b2ae3d27d4eb4fULL;
    }
    t->k0 = key[0];
    t->k1 = key[1];
    for (size_t i = 0; i < RL_SHARDS; i++) {
        pthread_mutex_init(&t->shards[i].s.lock, NULL);
        t->shards[i].s.slots = sh_calloc(t->nbuckets * RL_WAYS, sizeof(rl_entry));
    }
    return t;
}

void sh_rl_free(sh_rl_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < RL_SHARDS; i++) {
        pthread_mutex_destroy(&t->shards[i].s.lock);
        sh_free(t->shards[i].s.slots);
    }
    sh_free(t);
}

size_t sh_rl_capacity(const sh_rl_table *t)
{
    return t->nbuckets * RL_WAYS * RL_SHARDS;
}

size_t sh_rl_entries(sh_rl_table *t)
{
    size_t n = 0;
    for (size_t i = 0; i < RL_SHARDS; i++) {
        pthread_mutex_lock(&t->shards[i].s.lock);
        n += t->shards[i].s.used;
        pthread_mutex_unlock(&t->shards[i].s.lock);
    }
    return n;
}

uint64_t sh_rl_evictions(sh_rl_table *t)
{
    uint64_t n = 0;
    for (size_t i = 0; i < RL_SHARDS; i++) {
        pthread_mutex_lock(&t->shards[i].s.lock);
        n += t->shards[i].s.evictions;
        pthread_mutex_unlock(&t->shards[i].s.lock);
    }
    return n;
}

/* The entry's estimate at (window w, elapsed el of W), scaled by W so it stays
 * an integer: prev*(W-el) + cur*W, with the counts shifted to window w. */
static uint64_t weight(const rl_entry *e, uint32_t w, uint64_t el, uint64_t W)
{
    if (e->win == w) return (uint64_t)e->prev * (W - el) + (uint64_t)e->cur * W;
    if (e->win + 1 == w) return (uint64_t)e->cur * (W - el);
    return 0;
}

/* How long a client with counts (prev, cur) at elapsed el must stay silent
 * before prev*(W-t) + cur*W < limit*W holds again (in this window or, with
 * cur shifted to prev, in the next one). */
static uint64_t retry_after(uint64_t prev, uint64_t cur, uint64_t el, uint64_t W, uint64_t limit)
{
    if (cur < limit && prev) {
        uint64_t q = ((limit - cur) * W + prev - 1) / prev;
        if (q <= W) {
            uint64_t tmin = W - q + 1;
            if (tmin < W) return tmin > el ? tmin - el : 1;
        }
    }
    uint64_t tn = 0;
    if (cur) {
        uint64_t q = (limit * W + cur - 1) / cur;
        tn = q > W ? 0 : W - q + 1;
    }
    return W - el + tn;
}

int sh_rl_hit(sh_rl_table *t, const uint8_t key[16], uint64_t now_ms, uint64_t window_ms,
              uint64_t limit, uint64_t *retry_ms)
{
    uint64_t W = window_ms ? window_ms : 1;
    uint32_t w = (uint32_t)(now_ms / W) + 1;
    uint64_t el = now_ms % W;
    uint64_t h = siphash16(key, t->k0, t->k1);
    rl_shard *sh = &t->shards[h % RL_SHARDS];
    rl_entry *b, *e = NULL, *victim = NULL;
    uint64_t vweight = 0;

    pthread_mutex_lock(&sh->s.lock);
    b = &sh->s.slots[((h / RL_SHARDS) % t->nbuckets) * RL_WAYS];
    for (int i = 0; i < RL_WAYS; i++) {
        rl_entry *s = &b[i];
        if (!s->win) {
            /* A free slot beats any eviction. */
            if (!victim || victim->win) {
                victim = s;
                vweight = 0;
            }
            continue;
        }
        if (memcmp(s->key, key, 16) == 0) {
            e = s;
            break;
        }
        if (victim && !victim->win) continue;
        uint64_t sw = weight(s, w, el, W);
        if (!victim || sw < vweight || (sw == vweight && (int32_t)(s->seen - victim->seen) < 0)) {
            victim = s;
            vweight = sw;
        }
    }
    if (!e) {
        e = victim;
        if (e->win)
            sh->s.evictions++;
        else
            sh->s.used++;
        memcpy(e->key, key, 16);
        e->win = w;
        e->cur = e->prev = 0;
    } else if (e->win != w) {
        e->prev = e->win + 1 == w ? e->cur : 0;
        e->cur = 0;
        e->win = w;
    }
    e->seen = (uint32_t)now_ms;
    int ok = (uint64_t)e->prev * (W - el) + (uint64_t)e->cur * W < limit * W;
    if (e->cur != UINT32_MAX) e->cur++;
    if (!ok && retry_ms) *retry_ms = retry_after(e->prev, e->cur, el, W, limit);
    pthread_mutex_unlock(&sh->s.lock);
    return ok;
}

/* ---- the module --------------------------------------------------------------------------- */

/* Created in init (or by a reload that turns the rule on), freed in fini
 * after every worker stopped; workers only ever read the pointer. */
static sh_rl_table *rl_table;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static sh_rc block(sh_req *req, const sh_ratelimit_conf *rc, uint64_t retry_ms)
{
    char page[1024], retry[24];
    int status = rc->status;

    snprintf(page, sizeof page,
             "<!DOCTYPE html>\n<html><head><title>ERROR: The request could not be "
             "satisfied</title></head><body>\n<h1>%d ERROR</h1>\n<h2>The request could not be "
             "satisfied.</h2>\n<hr>\nRequest blocked.\nWe can't connect to the server for this "
             "app or website at this time. There might be too much traffic or a configuration "
             "error. Try again later, or contact the app or website owner.\n<hr>\n<pre>\n"
             "Generated by %s (shield)\nRequest ID: %s\n</pre>\n</body></html>\n",
             status, req->cfg->node_name, req->request_id);
    req->detailed_result = "Error";
    sh_req_count(req, SH_CNT_RATE_LIMITED);
    if (status != 429) return sh_req_respond(req, status, NULL, NULL, "text/html", page);
    snprintf(retry, sizeof retry, "%llu", (unsigned long long)((retry_ms + 999) / 1000));
    return sh_req_respond(req, status, "Retry-After", retry, "text/html", page);
}

/* FORWARDED_IP: the first address of the first line of the header, as AWS
 * WAF takes it: a bare IPv4/IPv6 address, nothing else. */
static int first_forwarded(const sh_header *h, uint8_t out[16])
{
    const char *v = h->value, *end = h->value + h->value_len;
    const char *comma = memchr(v, ',', h->value_len);
    if (comma) end = comma;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return sh_ip_parse(v, (size_t)(end - v), out);
}

static sh_rc ratelimit_check(sh_req *req, void *state)
{
    const sh_ratelimit_conf *rc = &req->cfg->rate_limit;
    sh_rl_table *t = __atomic_load_n(&rl_table, __ATOMIC_ACQUIRE);
    uint8_t fwd[16];
    const uint8_t *key = req->client_addr;
    uint64_t retry_ms = 0;

    (void)state;
    if (!rc->enabled || !t) return SH_CONTINUE;
    if (rc->forwarded) {
        const sh_header *h = sh_req_header(req, rc->header);
        if (!h) return SH_CONTINUE; /* AWS: header absent => the rule does not apply */
        if (first_forwarded(h, fwd) != 0)
            return rc->fallback_match ? block(req, rc, rc->window_s * 1000) : SH_CONTINUE;
        key = fwd;
    }
    if (sh_rl_hit(t, key, now_ms(), rc->window_s * 1000, rc->limit, &retry_ms)) return SH_CONTINUE;
    return block(req, rc, retry_ms);
}

static int ratelimit_init(const sh_config *cfg, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    if (cfg->rate_limit.enabled)
        __atomic_store_n(&rl_table, sh_rl_new(cfg->rate_limit.max_clients), __ATOMIC_RELEASE);
    return 0;
}

/* The counts survive a reload (limit and window are read from each request's
 * snapshot); only a rule switched on for the first time needs a table. A new
 * max_clients takes effect at the next restart. */
static void ratelimit_reload(const sh_config *cfg)
{
    if (cfg->rate_limit.enabled && !__atomic_load_n(&rl_table, __ATOMIC_ACQUIRE))
        __atomic_store_n(&rl_table, sh_rl_new(cfg->rate_limit.max_clients), __ATOMIC_RELEASE);
}

static void ratelimit_fini(void)
{
    sh_rl_free(__atomic_exchange_n(&rl_table, NULL, __ATOMIC_ACQ_REL));
}

const sh_module sh_module_ratelimit = {
    .name = "ratelimit",
    .init = ratelimit_init,
    .reload = ratelimit_reload,
    .fini = ratelimit_fini,
    .phase = {[SH_PHASE_RATELIMIT] = ratelimit_check},
};
