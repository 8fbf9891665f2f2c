/*
 * Heavy hitters ("popular content"): which objects are requested most, and
 * which move the most bytes, over a recent window, in bounded memory.
 *
 * sh_popular is one Space-Saving summary (Metwally et al., 2005): at most
 * `capacity` monitored keys; an unmonitored key replaces the key with the
 * smallest count and inherits that count as its error. Every key whose true
 * weight exceeds total/capacity is guaranteed to be monitored, and a
 * monitored key's count over-estimates its true weight by at most `error`.
 * Updates are O(log capacity) (a min-heap plus an open-addressing index);
 * memory is fixed at creation (keys are stored in a slab of capacity *
 * max_key bytes; longer keys are hashed in full and shown truncated).
 * A summary is single-threaded: its owner serialises access.
 *
 * sh_popular_win wraps two summaries (weight = 1 per request, weight =
 * bytes) for one worker, in two rotating epochs of window/2 seconds each, so
 * it always covers the last window/2 to window seconds. The worker updates it
 * at the LOG phase; the admin thread merges every worker's windows on read
 * (sh_popular_top). A mutex per window makes that safe; the worker is its only
 * other user, so the lock is uncontended except during a scrape.
 */
#ifndef SHIELD_POPULAR_H
#define SHIELD_POPULAR_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* One monitored key. */
typedef struct sh_popular_entry {
    char *key;          /* into the summary's slab, NUL-terminated, at most max_key bytes */
    uint32_t len;       /* bytes stored in key */
    uint32_t truncated; /* the original key was longer than max_key */
    uint64_t hash;      /* of the whole original key */
    uint64_t count;     /* Space-Saving estimate of the weight (upper bound) */
    uint64_t error;     /* count - error is a lower bound of the true weight */
    uint64_t requests;  /* requests seen while monitored (lower bound) */
    uint64_t bytes;     /* bytes seen while monitored (lower bound) */
    uint32_t heap_pos;  /* index in the min-heap (internal) */
} sh_popular_entry;

typedef struct sh_popular sh_popular;

/* A summary of at most capacity keys (>= 1) of at most max_key stored bytes (>= 8). */
sh_popular *sh_popular_new(size_t capacity, size_t max_key);
void sh_popular_free(sh_popular *p);
/* Forget every key (keeps the memory). */
void sh_popular_clear(sh_popular *p);

/*
 * Count one observation of key: its rank weight (1 for requests, the bytes
 * for a by-bytes ranking), plus the requests and bytes it stands for. A new
 * key with weight 0 is not admitted into a full summary (it cannot rank).
 */
void sh_popular_add(sh_popular *p, const char *key, size_t len, uint64_t weight, uint64_t requests,
                    uint64_t bytes);
/* Fold an entry of another summary in (sums count, error, requests, bytes by key). */
void sh_popular_merge(sh_popular *p, const sh_popular_entry *e);

/* Monitored keys, in no particular order: size(), then entry(i) for i < size. */
size_t sh_popular_size(const sh_popular *p);
const sh_popular_entry *sh_popular_entry_at(const sh_popular *p, size_t i);
/* Sum of all weights ever added (merged counts excluded). */
uint64_t sh_popular_total(const sh_popular *p);
/* Bytes of memory the summary holds (fixed at creation). */
size_t sh_popular_memory(const sh_popular *p);

enum { SH_POP_REQUESTS = 0, SH_POP_BYTES = 1 };

/* One worker's windowed pair of rankings (by requests, by bytes). */
typedef struct sh_popular_win {
    pthread_mutex_t lock;
    int64_t epoch_us;    /* length of an epoch: window / 2 */
    int64_t epoch_start; /* monotonic µs when the current epoch began */
    sh_popular *cur[2];  /* indexed by SH_POP_* */
    sh_popular *prev[2];
    size_t capacity, max_key; /* of each summary (immutable) */
} sh_popular_win;

/* window_s >= 2; capacity and max_key as for sh_popular_new. */
sh_popular_win *sh_popular_win_new(uint64_t window_s, size_t capacity, size_t max_key,
                                   int64_t now_us);
void sh_popular_win_free(sh_popular_win *w);
/* One request for key that sent bytes to the viewer. */
void sh_popular_win_add(sh_popular_win *w, int64_t now_us, const char *key, size_t len,
                        uint64_t bytes);

/* A ranked row of sh_popular_top. */
typedef struct sh_popular_row {
    char *key; /* sh_malloc'd copy, NUL-terminated */
    int truncated;
    uint64_t requests; /* by_requests: the estimate; by_bytes: seen while monitored */
    uint64_t bytes;    /* by_bytes: the estimate; by_requests: seen while monitored */
} sh_popular_row;

typedef struct sh_popular_report {
    sh_popular_row *rows[2]; /* indexed by SH_POP_*, best first */
    size_t n[2];
} sh_popular_report;

/*
 * Merge the windows of every worker (NULL entries skipped) and rank the top n
 * keys by requests and by bytes (ties by key). Call sh_popular_report_free.
 */
void sh_popular_top(sh_popular_win *const *wins, size_t nwins, int64_t now_us, size_t n,
                    sh_popular_report *out);
void sh_popular_report_free(sh_popular_report *r);

#endif
