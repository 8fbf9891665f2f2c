/*
 * Chunk memory that the kernel can send without copying.
 *
 * A hit on a large object is mostly a copy of its bytes into the socket. A
 * chunk that lives in an ordinary heap buffer is copied by write(); a chunk
 * that lives in a shared-memory file (memfd) is handed to the socket by
 * sendfile(), which takes references to the pages instead — the same path
 * nginx gets from its disk cache through the page cache, without the disk.
 *
 * One memfd holds every such chunk, in fixed 1 MiB slots of a sparse file
 * mapped once. Freeing a slot punches a hole: pages still referenced by
 * packets in flight (a slow reader's socket queue) stay alive with their
 * bytes, and the next chunk in that slot gets fresh pages, so a reused slot
 * can never change what an earlier sendfile sends.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shield/alloc.h"
#include "shield/cache.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SLOT_SIZE ((uint64_t)CACHE_CHUNK_SIZE)
#define MIN_SLOTS 256u
#define MAX_SLOTS (1u << 18) /* 256 GiB of address space, none of it reserved */

static struct {
    pthread_mutex_t lock;
    int fd;
    char *base;
    uint32_t nslots;
    uint32_t *free; /* stack of free slot numbers */
    uint32_t nfree;
    int engines; /* caches using it; with none, unmap when the last slot comes back */
} arena = {PTHREAD_MUTEX_INITIALIZER, -1, NULL, 0, NULL, 0, 0};

static void arena_unmap_locked(void)
{
    munmap(arena.base, (size_t)arena.nslots * SLOT_SIZE);
    close(arena.fd);
    sh_free(arena.free);
    arena.fd = -1;
    arena.base = NULL;
    arena.free = NULL;
    arena.nslots = arena.nfree = 0;
}

int cache_arena_init(uint64_t memory_bytes)
{
    pthread_mutex_lock(&arena.lock);
    if (arena.fd >= 0) {
        /* A second engine in the same process (tests): share the arena. */
        arena.engines++;
        pthread_mutex_unlock(&arena.lock);
        return 0;
    }
    /* Every shared chunk is at least CACHE_SHARED_MIN bytes, so this many
     * slots cover the memory tier's budget plus as much again held by
     * viewers still sending evicted objects. */
    uint64_t want = 2 * memory_bytes / CACHE_SHARED_MIN;
    uint32_t n = want < MIN_SLOTS ? MIN_SLOTS : want > MAX_SLOTS ? MAX_SLOTS : (uint32_t)want;
    int fd = memfd_create("shield-cache", MFD_CLOEXEC);
    if (fd < 0) goto fail;
    if (ftruncate(fd, (off_t)((uint64_t)n * SLOT_SIZE)) != 0) goto fail_fd;
    void *base = mmap(NULL, (size_t)n * SLOT_SIZE, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (base == MAP_FAILED) goto fail_fd;
    arena.fd = fd;
    arena.base = base;
    arena.nslots = n;
    arena.free = sh_malloc((size_t)n * sizeof(*arena.free));
    for (uint32_t i = 0; i < n; i++)
        arena.free[i] = n - 1 - i; /* low slots first: a compact file */
    arena.nfree = n;
    arena.engines = 1;
    pthread_mutex_unlock(&arena.lock);
    return 0;
fail_fd:
    close(fd);
fail:
    /* Heap chunks still work; only the zero-copy send is lost. */
    pthread_mutex_unlock(&arena.lock);
    return -1;
}

void cache_arena_release(void)
{
    pthread_mutex_lock(&arena.lock);
    if (arena.fd >= 0 && --arena.engines == 0 && arena.nfree == arena.nslots) arena_unmap_locked();
    pthread_mutex_unlock(&arena.lock);
}

int cache_arena_fd(void)
{
    return arena.fd;
}

cache_chunk *cache_chunk_new_shared(uint32_t cap)
{
    if (cap < CACHE_SHARED_MIN) return cache_chunk_new(cap);
    pthread_mutex_lock(&arena.lock);
    int64_t slot = arena.nfree && arena.engines ? (int64_t)arena.free[--arena.nfree] : -1;
    pthread_mutex_unlock(&arena.lock);
    if (slot < 0) return cache_chunk_new(cap);

    cache_chunk *ch = sh_malloc(sizeof(*ch));
    atomic_init(&ch->refs, 1);
    ch->cap = cap;
    ch->slot = (int32_t)slot;
    ch->data = arena.base + (uint64_t)slot * SLOT_SIZE;
    /* One call instead of a page fault per 4 KiB while the fill writes it;
     * older kernels without it just fault. */
    madvise(ch->data, cap, MADV_POPULATE_WRITE);
    return ch;
}

void cache_chunk_free_shared(cache_chunk *ch)
{
    uint64_t len = ((uint64_t)ch->cap + 4095) & ~(uint64_t)4095;
    /* Give the pages back; senders still holding them keep their copy. */
    fallocate(arena.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              (off_t)((uint64_t)ch->slot * SLOT_SIZE), (off_t)len);
    pthread_mutex_lock(&arena.lock);
    arena.free[arena.nfree++] = (uint32_t)ch->slot;
    if (!arena.engines && arena.nfree == arena.nslots) arena_unmap_locked();
    pthread_mutex_unlock(&arena.lock);
    sh_free(ch);
}

int64_t cache_chunk_file_offset(const cache_chunk *ch)
{
    return ch->slot < 0 ? -1 : (int64_t)((uint64_t)ch->slot * SLOT_SIZE);
}
