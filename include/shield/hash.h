/*
 * One 64-bit hash for in-memory tables keyed by bytes (cache index, heavy
 * hitters): FNV-1a, then a splitmix64 finaliser so the low bits used to pick
 * shards and buckets are well spread. A per-process seed makes the placement
 * unpredictable to whoever chooses the keys (paths are viewer-controlled).
 */
#ifndef SHIELD_HASH_H
#define SHIELD_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t sh_hash_bytes(const void *key, size_t n, uint64_t seed)
{
    const unsigned char *k = key;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= k[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

#endif
