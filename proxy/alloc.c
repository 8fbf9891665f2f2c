#include "shield/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jemalloc is linked as the process allocator (it replaces malloc/free), so the
 * wrappers call the standard names in both builds; only the reported name and
 * the link line differ. */

static void oom(size_t n)
{
    fprintf(stderr, "shield: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sh_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *sh_calloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p) oom(nmemb * size);
    return p;
}

void *sh_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

void sh_free(void *p)
{
    free(p);
}

char *sh_strdup(const char *s)
{
    return s ? sh_strndup(s, strlen(s)) : NULL;
}

char *sh_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = sh_malloc(len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

const char *sh_alloc_name(void)
{
#ifdef SHIELD_MALLOC_LIBC
    return "libc";
#else
    return "jemalloc";
#endif
}
