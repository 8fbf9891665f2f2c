/*
 * cachesim: replay a synthetic e-book trace through the real eviction policies
 * of proxy/cache/evict.c and print request and byte hit ratios as Markdown.
 *
 * Workload (deterministic for a given seed):
 *   - a catalogue of N books, sizes log-normal with median 2 MB and sigma 1,
 *     clamped to 0.2-20 MB, plus 0.5 % large items log-uniform in 50-200 MB;
 *   - Zipf(alpha) popularity over a random permutation of the catalogue (size
 *     and popularity are independent);
 *   - optionally a periodic one-hit-wonder scan: every `period` requests
 *     (default 100,000) the last scan% of them ask for brand-new books (same
 *     size distribution) once each, as a crawler or a bulk export would.
 * Every policy sees the same trace at cache sizes of 1, 5 and 10 % of the
 * catalogue's bytes. Counts cover the whole trace, cold start included.
 *
 * Build (from the repository root; or bench/cachesim.sh, which also runs it):
 *   gcc -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -pthread \
 *       -o build/cachesim bench/cachesim.c proxy/cache/evict.c proxy/alloc.c -lm
 *
 * Usage: cachesim [-n books] [-r requests] [-s seed] [-a alpha[,alpha...]]
 *                 [-S scan_percent] [-P period] [-c percent[,percent...]] [-x]
 *                 [-T threads]
 *   Defaults: -n 20000 -r 2000000 -s 1 -a 0.8,0.9,1.0 -S 5 -P 100000 -c 1,5,10.
 *   -S 0 runs only the plain trace; otherwise it runs without and with the
 *   scan. -x adds S3-FIFO tuning variants (promotion at 2 hits, small FIFO of
 *   5 % and 20 %). -T N skips the simulation and measures evict_hit()
 *   throughput with N threads hitting a cached hot set, per policy (not
 *   deterministic: it depends on the machine).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shield/alloc.h"
#include "shield/cache_evict.h"

#define MB            1000000.0
#define MAX_VICTIMS   4096
#define MAX_LIST      8
#define HITBENCH_SECS 1.0

/* ---- deterministic random numbers (xoshiro256**, seeded by splitmix64) ---------------------- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in (0, 1). */
static double rng_unit(rng *r)
{
    return ((rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* One e-book size in bytes. */
static uint64_t book_size(rng *r)
{
    if (rng_unit(r) < 0.005) return (uint64_t)(50 * MB * pow(4.0, rng_unit(r))); /* 50-200 MB */
    double z = sqrt(-2.0 * log(rng_unit(r))) * cos(2.0 * M_PI * rng_unit(r));
    double s = 2 * MB * exp(z);
    return (uint64_t)(s < 0.2 * MB ? 0.2 * MB : s > 20 * MB ? 20 * MB : s);
}

/* ---- workload ----------------------------------------------------------------------------- */

typedef struct book {
    evict_node node;
    uint64_t size;
    bool cached;
} book;

typedef struct workload {
    size_t n_books;   /* catalogue */
    size_t n_total;   /* catalogue + scan books */
    book *books;      /* n_total */
    uint32_t *trace;  /* book index per request */
    size_t n_req;     /* requests */
    uint64_t catalog; /* catalogue bytes (scan books excluded) */
} workload;

static void workload_build(workload *w, size_t n_books, size_t n_req, double alpha,
                           unsigned scan_pct, size_t period, uint64_t seed)
{
    rng r, rs;
    size_t scan_per_period = period * scan_pct / 100;
    size_t n_scan = scan_pct ? n_req / period * scan_per_period + scan_per_period : 0;

    memset(w, 0, sizeof(*w));
    w->n_books = n_books;
    w->n_total = n_books + n_scan;
    w->n_req = n_req;
    w->books = sh_calloc(w->n_total, sizeof(book));
    w->trace = sh_malloc(n_req * sizeof(uint32_t));

    /* Same catalogue for every alpha and scan setting: sizes first, from their own stream. */
    rng_seed(&r, seed);
    for (size_t i = 0; i < n_books; i++) {
        w->books[i].size = book_size(&r);
        w->catalog += w->books[i].size;
    }
    rng_seed(&rs, seed ^ 0x5ca7);
    for (size_t i = n_books; i < w->n_total; i++)
        w->books[i].size = book_size(&rs);

    /* Popularity rank -> book: a random permutation, so size and rank are independent. */
    uint32_t *perm = sh_malloc(n_books * sizeof(uint32_t));
    for (size_t i = 0; i < n_books; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = n_books - 1; i > 0; i--) {
        size_t j = rng_next(&r) % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    double *cdf = sh_malloc(n_books * sizeof(double)), sum = 0;
    for (size_t i = 0; i < n_books; i++)
        cdf[i] = sum += pow((double)(i + 1), -alpha);

    rng_seed(&r, seed * 31 + (uint64_t)(alpha * 1000));
    size_t next_scan = n_books;
    for (size_t q = 0; q < n_req; q++) {
        if (scan_pct && q % period >= period - scan_per_period) {
            w->trace[q] = (uint32_t)next_scan++;
            continue;
        }
        double u = rng_unit(&r) * sum;
        size_t lo = 0, hi = n_books - 1;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        w->trace[q] = perm[lo];
    }
    sh_free(cdf);
    sh_free(perm);
}

static void workload_free(workload *w)
{
    sh_free(w->books);
    sh_free(w->trace);
}

/* ---- policies under test ------------------------------------------------------------------ */

typedef struct variant {
    const char *name;
    evict_kind kind;
    unsigned promote_hits; /* S3-FIFO */
    unsigned small_pct;    /* S3-FIFO */
} variant;

/* The policies as shipped (defaults of evict_opts), then S3-FIFO tunings (-x). */
static const variant variants[] = {
    {"LRU", EVICT_LRU, 1, 10},
    {"SIEVE", EVICT_SIEVE, 1, 10},
    {"S3-FIFO", EVICT_S3FIFO, 1, 10},
    {"S3-FIFO promote@2", EVICT_S3FIFO, 2, 10},
    {"S3-FIFO small 5 %", EVICT_S3FIFO, 1, 5},
    {"S3-FIFO small 20 %", EVICT_S3FIFO, 1, 20},
};
#define N_SHIPPED  3
#define N_VARIANTS (sizeof(variants) / sizeof(variants[0]))

static evict_policy *variant_new(const variant *v, uint64_t capacity)
{
    evict_opts o;
    evict_opts_default(&o);
    o.promote_hits = v->promote_hits;
    o.small_percent = v->small_pct;
    return evict_new_opts(v->kind, capacity, &o);
}

typedef struct result {
    double req_hit, byte_hit;
} result;

/* Replay the trace like the memory tier would: hit -> evict_hit, miss -> insert and drop victims.
 */
static result replay(workload *w, const variant *v, uint64_t capacity)
{
    evict_policy *p = variant_new(v, capacity);
    static evict_node *victims[MAX_VICTIMS];
    uint64_t hits = 0, bytes = 0, hit_bytes = 0;

    for (size_t i = 0; i < w->n_total; i++)
        w->books[i].cached = false;
    for (size_t q = 0; q < w->n_req; q++) {
        book *b = &w->books[w->trace[q]];
        bytes += b->size;
        if (b->cached) {
            hits++;
            hit_bytes += b->size;
            evict_hit(p, &b->node);
            continue;
        }
        bool admitted;
        evict_node_init(&b->node, splitmix64(&(uint64_t){w->trace[q]}), b->size);
        size_t nv = evict_insert(p, &b->node, victims, MAX_VICTIMS, &admitted);
        for (size_t i = 0; i < nv; i++)
            ((book *)victims[i])->cached = false; /* node is the first member */
        b->cached = admitted;
        if (evict_used(p) > capacity) {
            fprintf(stderr, "cachesim: %s exceeded its capacity\n", v->name);
            exit(1);
        }
    }
    evict_free(p);
    return (result){100.0 * hits / w->n_req, 100.0 * hit_bytes / bytes};
}

/* ---- hit-path throughput ------------------------------------------------------------------ */

typedef struct hb_arg {
    evict_policy *p;
    book *hot;
    size_t n_hot;
    volatile int *stop;
    uint64_t seed, hits;
} hb_arg;

static void *hb_thread(void *a_)
{
    hb_arg *a = a_;
    rng r;
    rng_seed(&r, a->seed);
    while (!*a->stop) {
        for (int i = 0; i < 1024; i++)
            evict_hit(a->p, &a->hot[rng_next(&r) % a->n_hot].node);
        a->hits += 1024;
    }
    return NULL;
}

static void hitbench(int threads)
{
    enum { N_HOT = 4096 };
    book *hot = sh_calloc(N_HOT, sizeof(book));
    evict_node *victims[16];

    printf("| policy | threads | evict_hit() calls/s |\n|---|---:|---:|\n");
    for (size_t v = 0; v < N_SHIPPED; v++) {
        evict_policy *p = variant_new(&variants[v], N_HOT);
        for (size_t i = 0; i < N_HOT; i++) {
            evict_node_init(&hot[i].node, i + 1, 1);
            evict_insert(p, &hot[i].node, victims, 16, NULL);
        }
        volatile int stop = 0;
        pthread_t tid[64];
        hb_arg args[64];
        for (int t = 0; t < threads; t++) {
            args[t] = (hb_arg){p, hot, N_HOT, &stop, (uint64_t)t + 1, 0};
            pthread_create(&tid[t], NULL, hb_thread, &args[t]);
        }
        nanosleep(&(struct timespec){(time_t)HITBENCH_SECS, 0}, NULL);
        stop = 1;
        uint64_t total = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            total += args[t].hits;
        }
        printf("| %s | %d | %.1f M |\n", variants[v].name, threads, total / HITBENCH_SECS / 1e6);
        evict_free(p);
    }
    sh_free(hot);
}

/* ---- main ------------------------------------------------------------------------------- */

static size_t parse_list(const char *s, double *out)
{
    size_t n = 0;
    char *end;
    while (*s && n < MAX_LIST) {
        out[n++] = strtod(s, &end);
        if (end == s) break;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

int main(int argc, char **argv)
{
    size_t n_books = 20000, n_req = 2000000, n_alpha = 3, n_pct = 3, period = 100000;
    uint64_t seed = 1;
    unsigned scan_pct = 5;
    double alphas[MAX_LIST] = {0.8, 0.9, 1.0}, pcts[MAX_LIST] = {1, 5, 10};
    int opt, threads = 0;
    size_t n_var = N_SHIPPED;

    while ((opt = getopt(argc, argv, "n:r:s:a:S:c:T:P:x")) != -1) {
        switch (opt) {
        case 'n':
            n_books = strtoul(optarg, NULL, 10);
            break;
        case 'r':
            n_req = strtoul(optarg, NULL, 10);
            break;
        case 's':
            seed = strtoull(optarg, NULL, 10);
            break;
        case 'a':
            n_alpha = parse_list(optarg, alphas);
            break;
        case 'S':
            scan_pct = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'c':
            n_pct = parse_list(optarg, pcts);
            break;
        case 'T':
            threads = atoi(optarg);
            break;
        case 'P':
            period = strtoul(optarg, NULL, 10);
            break;
        case 'x':
            n_var = N_VARIANTS;
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-n books] [-r requests] [-s seed] [-a alphas] "
                    "[-S scan%%] [-P period] [-c cache%%s] [-x] [-T threads]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads > 0) {
        hitbench(threads > 64 ? 64 : threads);
        return 0;
    }
    if (n_books < 2 || n_req < 1 || scan_pct > 50 || period < 100 || !n_alpha || !n_pct) {
        fprintf(stderr, "cachesim: bad arguments\n");
        return 2;
    }

    for (unsigned scan = 0; scan <= scan_pct; scan += scan_pct ? scan_pct : 1) {
        printf("\n%s, %zu books, %zu requests, seed %llu\n\n",
               scan ? "With a one-hit-wonder scan" : "Plain Zipf trace", n_books, n_req,
               (unsigned long long)seed);
        if (scan)
            printf("(every %zu requests, the last %u %% ask once each for new books)\n\n", period,
                   scan);
        printf("| alpha | cache |");
        for (size_t v = 0; v < n_var; v++)
            printf(" %s req / byte |", variants[v].name);
        printf("\n|---|---|");
        for (size_t v = 0; v < n_var; v++)
            printf("---|");
        printf("\n");
        for (size_t a = 0; a < n_alpha; a++) {
            workload w;
            workload_build(&w, n_books, n_req, alphas[a], scan, period, seed);
            if (a == 0 && scan == 0)
                fprintf(stderr, "catalogue: %zu books, %.1f GB, mean %.2f MB\n", n_books,
                        w.catalog / 1e9, w.catalog / MB / n_books);
            for (size_t c = 0; c < n_pct; c++) {
                uint64_t cap = (uint64_t)(w.catalog * pcts[c] / 100.0);
                printf("| %.1f | %g %% (%.1f GB) |", alphas[a], pcts[c], cap / 1e9);
                for (size_t v = 0; v < n_var; v++) {
                    result r = replay(&w, &variants[v], cap);
                    printf(" %.1f / %.1f |", r.req_hit, r.byte_hit);
                }
                printf("\n");
                fflush(stdout);
            }
            workload_free(&w);
        }
        if (!scan_pct) break;
    }
    return 0;
}
