/*
 * A growable NUL-terminated byte string for building small texts (canonical
 * requests, policies, headers). Header-only: every user is a hot path that
 * benefits from inlining, and the type is three words.
 *
 *     sbuf b = {0};
 *     sb_adds(&b, "GET");  sb_addc(&b, '\n');
 *     char *s = sb_take(&b);   // the caller owns s (sh_free)
 */
#ifndef SHIELD_SBUF_H
#define SHIELD_SBUF_H

#include <stddef.h>
#include <string.h>

#include "shield/alloc.h"

typedef struct sbuf {
    char *p; /* NULL until the first byte; always NUL-terminated after */
    size_t len, cap;
} sbuf;

static inline void sb_grow(sbuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 128;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->p = sh_realloc(b->p, cap);
    b->cap = cap;
}

static inline void sb_add(sbuf *b, const char *s, size_t n)
{
    sb_grow(b, n);
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void sb_adds(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static inline void sb_addc(sbuf *b, char c)
{
    sb_add(b, &c, 1);
}

/* Hand the string over (never NULL: "" when nothing was added); b is reset. */
static inline char *sb_take(sbuf *b)
{
    if (!b->p) return sh_strdup("");
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

#endif
