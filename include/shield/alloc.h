/*
 * One allocator wrapper for the whole tree. The release build routes every
 * allocation to jemalloc (linked as the process allocator); the sanitizer build
 * (MALLOC=libc) uses the C library so ASan/valgrind see every block.
 * All functions abort the process on out-of-memory: a proxy that cannot
 * allocate a few bytes cannot answer anything useful, and callers stay simple.
 */
#ifndef SHIELD_ALLOC_H
#define SHIELD_ALLOC_H

#include <stddef.h>

/* malloc that never returns NULL. */
void *sh_malloc(size_t n);
/* calloc that never returns NULL. */
void *sh_calloc(size_t nmemb, size_t size);
/* realloc that never returns NULL (n == 0 is treated as 1). */
void *sh_realloc(void *p, size_t n);
/* free; NULL is fine. */
void sh_free(void *p);
/* strdup / strndup that never return NULL; sh_strdup(NULL) returns NULL. */
char *sh_strdup(const char *s);
char *sh_strndup(const char *s, size_t n);
/* Name of the allocator in use ("jemalloc" or "libc"), for -v and logs. */
const char *sh_alloc_name(void);

#endif
