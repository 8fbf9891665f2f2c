/*
 * The WAF rate-based rule's counter table (modules/ratelimit.c).
 *
 * One process-wide table shared by every worker: a request from a client on
 * any worker counts against the same budget. The table is sharded (64 shards,
 * one mutex each) and every shard is set-associative: a key hashes (SipHash
 * with a per-table random key, so clients cannot aim at a bucket) to one
 * bucket of 8 slots, and only those 8 slots are ever searched, so a hit costs
 * one hash, one lock and at most 8 comparisons whatever the table size.
 *
 * Counting is a sliding-window approximation (the one Cloudflare and
 * nginx-style limiters use): each key keeps the number of requests of the
 * current fixed window and of the previous one, and the rate at time t is
 *     prev * (W - elapsed) / W + cur
 * i.e. the previous window is assumed to have been uniform. It is exact when
 * the traffic is uniform and off by at most the previous window's count
 * otherwise; AWS WAF itself only promises to act "near" the limit.
 *
 * Every request is counted, including the ones the rule blocks (as AWS WAF
 * does): a client that keeps sending stays blocked; one that stops recovers
 * as its old requests slide out of the window.
 *
 * Memory is bounded at creation: max_entries rounded down to a multiple of
 * 64 shards x 8 slots (at least one bucket per shard). When a bucket is full
 * the new key replaces the slot with the lowest current estimate (ties: the
 * least recently seen). A flood of spoofed one-request keys therefore churns
 * among its own entries and the light clients, while a heavy hitter (the
 * entries that matter) is only displaced when every other slot of its bucket
 * holds a heavier one: an attacker would need about 7x the victim's own
 * request count from keys that land in that bucket, which the secret hash
 * key prevents from being arranged. The price is that light clients may lose
 * their count under such a flood; being light, they are nowhere near the
 * limit anyway.
 */
#ifndef SHIELD_RATELIMIT_H
#define SHIELD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct sh_rl_table sh_rl_table;

/* A table tracking at most max_entries keys (see above for the rounding).
 * Never NULL (allocation failure aborts, as everywhere). */
sh_rl_table *sh_rl_new(size_t max_entries);

/* Free the table; no other thread may be using it. NULL is fine. */
void sh_rl_free(sh_rl_table *t);

/*
 * Count one request for key (16-byte address form, shield/config.h) at now_ms
 * (any monotonic millisecond clock, the same for every call) against limit
 * requests per window_ms. Returns 1 if the request is within the limit, 0 if
 * it must be blocked; then *retry_ms (if not NULL) is how long the client
 * would have to stay silent before a request is allowed again (at least 1).
 * Thread-safe.
 */
int sh_rl_hit(sh_rl_table *t, const uint8_t key[16], uint64_t now_ms, uint64_t window_ms,
              uint64_t limit, uint64_t *retry_ms);

/* Slots in the table: the hard bound on tracked keys. */
size_t sh_rl_capacity(const sh_rl_table *t);

/* Keys currently tracked (takes every shard lock; for tests and stats). */
size_t sh_rl_entries(sh_rl_table *t);

/* Keys displaced from a full bucket since creation. */
uint64_t sh_rl_evictions(sh_rl_table *t);

#endif
