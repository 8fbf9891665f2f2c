#!/bin/sh
# Build bench/cachesim against the real eviction code and run it.
#   bench/cachesim.sh                 the run recorded in bench/README.md
#   bench/cachesim.sh -S 0 -c 0.5,1   any cachesim arguments (see bench/cachesim.c)
set -eu
cd "$(dirname "$0")/.."
out="${BUILD:-build}/cachesim"
mkdir -p "$(dirname "$out")"
${CC:-cc} -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
    -Wformat=2 -Wvla -Iinclude -pthread -o "$out" \
    bench/cachesim.c proxy/cache/evict.c proxy/alloc.c -lm
exec "$out" "$@"
