/* Heavy hitters: Space-Saving summaries and their windowed, per-worker pairs. */
#include "shield/hash.h"
#include "shield/popular.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "shield/alloc.h"

struct sh_popular {
    size_t cap, max_key, n;
    sh_popular_entry *ent; /* n used of cap; entry i owns slab[i * (max_key + 1)] */
    char *slab;
    uint32_t *heap; /* entry indices, min-heap by count */
    int32_t *tab;   /* open addressing (linear probing): entry index or -1 */
    size_t tmask;
    uint64_t total;
};

/* Viewers choose the keys, so the hash is seeded per process: a crafted set of
 * colliding paths cannot be precomputed. Every summary shares the seed, which
 * lets sh_popular_merge reuse stored hashes. */
static uint64_t hash_seed;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void seed_init(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != sizeof s) s = (uint64_t)(uintptr_t)&s;
    hash_seed = s | 1;
}

static uint64_t key_hash(const char *k, size_t n)
{
    return sh_hash_bytes(k, n, hash_seed);
}

sh_popular *sh_popular_new(size_t capacity, size_t max_key)
{
    pthread_once(&seed_once, seed_init);
    if (capacity < 1) capacity = 1;
    if (max_key < 8) max_key = 8;
    sh_popular *p = sh_calloc(1, sizeof(*p));
    p->cap = capacity;
    p->max_key = max_key;
    p->ent = sh_calloc(capacity, sizeof(*p->ent));
    p->slab = sh_malloc(capacity * (max_key + 1));
    p->heap = sh_calloc(capacity, sizeof(*p->heap));
    size_t t = 4;
    while (t < capacity * 2)
        t <<= 1;
    p->tab = sh_malloc(t * sizeof(*p->tab));
    p->tmask = t - 1;
    sh_popular_clear(p);
    return p;
}

void sh_popular_free(sh_popular *p)
{
    if (!p) return;
    sh_free(p->ent);
    sh_free(p->slab);
    sh_free(p->heap);
    sh_free(p->tab);
    sh_free(p);
}

void sh_popular_clear(sh_popular *p)
{
    p->n = 0;
    p->total = 0;
    memset(p->tab, 0xff, (p->tmask + 1) * sizeof(*p->tab));
}

size_t sh_popular_size(const sh_popular *p)
{
    return p->n;
}

const sh_popular_entry *sh_popular_entry_at(const sh_popular *p, size_t i)
{
    return i < p->n ? &p->ent[i] : NULL;
}

uint64_t sh_popular_total(const sh_popular *p)
{
    return p->total;
}

size_t sh_popular_memory(const sh_popular *p)
{
    return sizeof(*p) + p->cap * (sizeof(*p->ent) + p->max_key + 1 + sizeof(*p->heap)) +
           (p->tmask + 1) * sizeof(*p->tab);
}

/* ---- min-heap by count ---------------------------------------------------------------------- */

static void heap_set(sh_popular *p, size_t pos, uint32_t idx)
{
    p->heap[pos] = idx;
    p->ent[idx].heap_pos = (uint32_t)pos;
}

static void sift_up(sh_popular *p, size_t pos)
{
    uint32_t idx = p->heap[pos];
    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (p->ent[p->heap[parent]].count <= p->ent[idx].count) break;
        heap_set(p, pos, p->heap[parent]);
        pos = parent;
    }
    heap_set(p, pos, idx);
}

static void sift_down(sh_popular *p, size_t pos)
{
    uint32_t idx = p->heap[pos];
    for (;;) {
        size_t c = 2 * pos + 1;
        if (c >= p->n) break;
        if (c + 1 < p->n && p->ent[p->heap[c + 1]].count < p->ent[p->heap[c]].count) c++;
        if (p->ent[p->heap[c]].count >= p->ent[idx].count) break;
        heap_set(p, pos, p->heap[c]);
        pos = c;
    }
    heap_set(p, pos, idx);
}

/* ---- index ---------------------------------------------------------------------------------- */

/* Slot of the key (stored form: at most max_key bytes plus the truncation flag),
 * or of the empty slot where it would go. */
static size_t tab_find(const sh_popular *p, uint64_t h, const char *k, size_t len, int trunc)
{
    for (size_t s = h & p->tmask;; s = (s + 1) & p->tmask) {
        int32_t i = p->tab[s];
        if (i < 0) return s;
        const sh_popular_entry *e = &p->ent[i];
        if (e->hash == h && e->len == len && (int)e->truncated == trunc &&
            memcmp(e->key, k, len) == 0)
            return s;
    }
}

/* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
static void tab_remove(sh_popular *p, uint32_t idx)
{
    size_t i = p->ent[idx].hash & p->tmask;
    while (p->tab[i] != (int32_t)idx)
        i = (i + 1) & p->tmask;
    p->tab[i] = -1;
    for (size_t j = (i + 1) & p->tmask; p->tab[j] >= 0; j = (j + 1) & p->tmask) {
        size_t home = p->ent[p->tab[j]].hash & p->tmask;
        /* Move j back into the hole unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        p->tab[i] = p->tab[j];
        p->tab[j] = -1;
        i = j;
    }
}

static void set_key(sh_popular *p, uint32_t idx, uint64_t h, const char *k, size_t len, int trunc)
{
    sh_popular_entry *e = &p->ent[idx];
    e->key = p->slab + (size_t)idx * (p->max_key + 1);
    memcpy(e->key, k, len);
    e->key[len] = '\0';
    e->len = (uint32_t)len;
    e->truncated = (uint32_t)trunc;
    e->hash = h;
}

static void add_stored(sh_popular *p, uint64_t h, const char *k, size_t len, int trunc,
                       uint64_t weight, uint64_t err, uint64_t requests, uint64_t bytes)
{
    size_t s = tab_find(p, h, k, len, trunc);
    int32_t i = p->tab[s];
    if (i >= 0) {
        sh_popular_entry *e = &p->ent[i];
        e->count += weight;
        e->error += err;
        e->requests += requests;
        e->bytes += bytes;
        sift_down(p, e->heap_pos);
        return;
    }
    uint32_t idx;
    uint64_t base = 0;
    int replaced = p->n == p->cap;
    if (!replaced) {
        idx = (uint32_t)p->n++;
        p->heap[p->n - 1] = idx;
        p->ent[idx].heap_pos = (uint32_t)(p->n - 1);
    } else {
        if (weight == 0) return;
        idx = p->heap[0];
        base = p->ent[idx].count;
        tab_remove(p, idx);
        s = tab_find(p, h, k, len, trunc);
    }
    sh_popular_entry *e = &p->ent[idx];
    set_key(p, idx, h, k, len, trunc);
    e->count = base + weight;
    e->error = base + err;
    e->requests = requests;
    e->bytes = bytes;
    p->tab[s] = (int32_t)idx;
    if (replaced) /* took over the root, whose count only grew */
        sift_down(p, e->heap_pos);
    else
        sift_up(p, e->heap_pos);
}

void sh_popular_add(sh_popular *p, const char *key, size_t len, uint64_t weight, uint64_t requests,
                    uint64_t bytes)
{
    int trunc = len > p->max_key;
    uint64_t h = key_hash(key, len);
    p->total += weight;
    add_stored(p, h, key, trunc ? p->max_key : len, trunc, weight, 0, requests, bytes);
}

void sh_popular_merge(sh_popular *p, const sh_popular_entry *e)
{
    size_t len = e->len < p->max_key ? e->len : p->max_key;
    add_stored(p, e->hash, e->key, len, e->truncated || len < e->len, e->count, e->error,
               e->requests, e->bytes);
}

/* ---- windows -------------------------------------------------------------------------------- */

sh_popular_win *sh_popular_win_new(uint64_t window_s, size_t capacity, size_t max_key,
                                   int64_t now_us)
{
    sh_popular_win *w = sh_calloc(1, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    if (window_s < 2) window_s = 2;
    w->epoch_us = (int64_t)(window_s * 1000000 / 2);
    w->epoch_start = now_us;
    w->capacity = capacity < 1 ? 1 : capacity;
    w->max_key = max_key < 8 ? 8 : max_key;
    for (int r = 0; r < 2; r++) {
        w->cur[r] = sh_popular_new(capacity, max_key);
        w->prev[r] = sh_popular_new(capacity, max_key);
    }
    return w;
}

void sh_popular_win_free(sh_popular_win *w)
{
    if (!w) return;
    for (int r = 0; r < 2; r++) {
        sh_popular_free(w->cur[r]);
        sh_popular_free(w->prev[r]);
    }
    pthread_mutex_destroy(&w->lock);
    sh_free(w);
}

/* With w->lock held: start a new epoch when the current one is over, so the
 * pair (prev, cur) always spans the last window/2 to window seconds. */
static void win_rotate(sh_popular_win *w, int64_t now_us)
{
    int64_t d = now_us - w->epoch_start;
    if (d < w->epoch_us) return;
    for (int r = 0; r < 2; r++) {
        sh_popular *old = w->prev[r];
        if (d < 2 * w->epoch_us) {
            w->prev[r] = w->cur[r];
            w->cur[r] = old;
        } else {
            sh_popular_clear(w->cur[r]);
        }
        sh_popular_clear(old);
    }
    w->epoch_start = d < 2 * w->epoch_us ? w->epoch_start + w->epoch_us : now_us;
}

void sh_popular_win_add(sh_popular_win *w, int64_t now_us, const char *key, size_t len,
                        uint64_t bytes)
{
    pthread_mutex_lock(&w->lock);
    win_rotate(w, now_us);
    sh_popular_add(w->cur[SH_POP_REQUESTS], key, len, 1, 1, bytes);
    sh_popular_add(w->cur[SH_POP_BYTES], key, len, bytes, 1, bytes);
    pthread_mutex_unlock(&w->lock);
}

static int by_count(const void *a, const void *b)
{
    const sh_popular_entry *x = *(const sh_popular_entry *const *)a;
    const sh_popular_entry *y = *(const sh_popular_entry *const *)b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

void sh_popular_top(sh_popular_win *const *wins, size_t nwins, int64_t now_us, size_t n,
                    sh_popular_report *out)
{
    size_t cap = 0, max_key = 8;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < nwins; i++) {
        if (!wins[i]) continue;
        cap += 2 * wins[i]->capacity;
        if (wins[i]->max_key > max_key) max_key = wins[i]->max_key;
    }
    for (int r = 0; r < 2; r++) {
        /* Room for every monitored key of every worker: merging never evicts. */
        sh_popular *m = sh_popular_new(cap ? cap : 1, max_key);
        for (size_t i = 0; i < nwins; i++) {
            sh_popular_win *w = wins[i];
            if (!w) continue;
            pthread_mutex_lock(&w->lock);
            win_rotate(w, now_us);
            for (size_t j = 0; j < w->prev[r]->n; j++)
                sh_popular_merge(m, &w->prev[r]->ent[j]);
            for (size_t j = 0; j < w->cur[r]->n; j++)
                sh_popular_merge(m, &w->cur[r]->ent[j]);
            pthread_mutex_unlock(&w->lock);
        }
        const sh_popular_entry **v = sh_calloc(m->n ? m->n : 1, sizeof(*v));
        for (size_t j = 0; j < m->n; j++)
            v[j] = &m->ent[j];
        qsort(v, m->n, sizeof(*v), by_count);
        size_t k = m->n < n ? m->n : n;
        out->rows[r] = sh_calloc(k ? k : 1, sizeof(sh_popular_row));
        for (size_t j = 0; j < k; j++) {
            sh_popular_row *row = &out->rows[r][j];
            row->key = sh_strndup(v[j]->key, v[j]->len);
            row->truncated = (int)v[j]->truncated;
            row->requests = r == SH_POP_REQUESTS ? v[j]->count : v[j]->requests;
            row->bytes = r == SH_POP_BYTES ? v[j]->count : v[j]->bytes;
        }
        out->n[r] = k;
        sh_free(v);
        sh_popular_free(m);
    }
}

void sh_popular_report_free(sh_popular_report *r)
{
    for (int i = 0; i < 2; i++) {
        for (size_t j = 0; j < r->n[i]; j++)
            sh_free(r->rows[i][j].key);
        sh_free(r->rows[i]);
        r->rows[i] = NULL;
        r->n[i] = 0;
    }
}
