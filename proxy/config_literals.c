/*
 * The config text read again with libconfig's own token rules, for what
 * libconfig gets wrong without saying so.
 *
 * Integer literals. Debian 12's libconfig (1.5) keeps an integer written
 * without the L suffix in 32 bits whatever its size: `memory_size = 4296015872;`
 * arrives as 1048576 (2^32 + 1M), exactly what `memory_size = 1048576;` gives,
 * so no check on the parsed value can tell them apart. Hex without L goes
 * through an int as well (0x80000000 comes back negative), and with L anything
 * beyond 64 bits saturates. Only the text still says what the operator meant,
 * so once libconfig has accepted the file, every number in it and in the files
 * it @includes is read again, and each that libconfig would have changed is
 * reported as file:line.
 *
 * @include targets. libconfig fopen()s them relative to the working directory,
 * and a directory opens fine but cannot be read: its flex scanner then calls
 * exit(2) ("input in flex scanner failed"), taking `shield -t`, or a server
 * reloading its config, with it. So before libconfig reads anything, every
 * @include reachable from the file is looked at, and one that exists but is
 * not a regular file is reported as file:line instead. So is a backslash
 * that escapes neither '\' nor '"': libconfig's scanner prints it to stdout
 * and opens the name without it.
 *
 * The text is scanned up to its length, not to a NUL: libconfig takes a NUL in
 * a comment or a string as one more byte of it, so stopping there would skip
 * every number after it.
 */
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "shield/alloc.h"

#include "config_int.h"

#define DIGITS    "0123456789"
#define XDIGITS   "0123456789abcdefABCDEF"
#define NAMECHARS "-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_*"
/* libconfig 1.5 refuses a file included this deep: nothing below it is read. */
#define MAX_INCLUDE_DEPTH 10

/* Files the include pass has already looked at: each is scanned once. */
typedef struct seen_files {
    char **names;
    size_t n;
} seen_files;

typedef struct text_scan {
    loader *ld;
    const char *file;
    unsigned line;
    int numbers;      /* 1: the literal pass; 0: the include pass */
    int depth;        /* include pass: how deep file is included */
    seen_files *seen; /* include pass */
} text_scan;

static void scan_file(loader *ld, const char *file, int numbers, int depth, seen_files *seen);

/* Length of libconfig's {float} at p, 0 if none: digits with a '.', an exponent or both. */
static size_t float_len(const char *p)
{
    const char *s = p + (*p == '-' || *p == '+'), *e;
    size_t d = strspn(s, DIGITS);
    int dot = s[d] == '.';

    if (!dot && !d) return 0;
    e = s + d + dot;
    if (dot) e += strspn(e, DIGITS);
    if (*e == 'e' || *e == 'E') {
        const char *x = e + 1 + (e[1] == '-' || e[1] == '+');
        size_t xd = strspn(x, DIGITS);
        if (xd) e = x + xd;
    }
    return !dot && e == s + d ? 0 : (size_t)(e - p);
}

/* The magnitude of a run of digits in base 10 or 16; -1 past 64 bits. */
static int magnitude(const char *s, size_t n, unsigned base, uint64_t *out)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned d = s[i] <= '9' ? (unsigned)(s[i] - '0') : (unsigned)((s[i] | 0x20) - 'a' + 10);
        if (v > (UINT64_MAX - d) / base) return -1;
        v = v * base + d;
    }
    *out = v;
    return 0;
}

/*
 * One number token at p (libconfig's {float}, {integer}, {integer64}, {hex} or
 * {hex64}, longest match as flex takes it); reports it if libconfig would store
 * something else. Returns its length, at least 1.
 */
static size_t number(text_scan *sc, const char *p)
{
    const char *s = p + (*p == '-' || *p == '+'), *why;
    int hex = p[0] == '0' && (p[1] | 0x20) == 'x' && strspn(p + 2, XDIGITS) > 0;
    const char *digits = hex ? p + 2 : s;
    size_t nd = strspn(digits, hex ? XDIGITS : DIGITS), len = (size_t)(digits - p) + nd;
    size_t flen = hex ? 0 : float_len(p);
    int neg = *p == '-', wide = 0, fits64, fits32;
    uint64_t v;

    if (flen > len) return flen;
    if (!nd) return 1;
    if (p[len] == 'L') {
        wide = 1;
        len += 1 + (p[len + 1] == 'L');
    }
    fits64 = fits32 = 0;
    if (magnitude(digits, nd, hex ? 16 : 10, &v) == 0) {
        fits64 = neg ? v <= (uint64_t)INT64_MAX + 1 : v <= INT64_MAX;
        fits32 = neg ? v <= (uint64_t)INT32_MAX + 1 : v <= INT32_MAX;
    }
    if (!fits64)
        why = "does not fit in 64 bits";
    else if (!wide && !fits32)
        why = "is outside the 32-bit range libconfig reads without an L suffix";
    else
        return len;
    if (fits64)
        cfg_err_line(sc->ld, sc->file, sc->line, "integer %.*s %s: write %.*sL%s", (int)len, p, why,
                     (int)len, p,
                     hex || neg ? "" : ", or a string with a unit such as \"4G\" or \"30d\"");
    else
        cfg_err_line(sc->ld, sc->file, sc->line, "integer %.*s %s", (int)len, p, why);
    return len;
}

/* The include pass: what libconfig would do with the target of the @include at line. */
static void check_include(text_scan *sc, unsigned line, const char *raw, size_t rawlen,
                          const char *target, int lone_backslash)
{
    struct stat st;

    /* libconfig would open another name than the one written, and print the backslash */
    if (lone_backslash)
        cfg_err_line(sc->ld, sc->file, line,
                     "@include \"%.*s\": a backslash must be written \\\\ (or \\\" for a quote)",
                     (int)rawlen, raw);
    /* a missing or unreadable target is libconfig's to report ("cannot open include file") */
    else if (stat(target, &st) != 0)
        return;
    else if (!S_ISREG(st.st_mode))
        cfg_err_line(sc->ld, sc->file, line, "@include \"%s\": %s", target,
                     S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
    else if (sc->depth + 1 < MAX_INCLUDE_DEPTH)
        scan_file(sc->ld, target, 0, sc->depth + 1, sc->seen);
}

/* After `@include "`: the target as libconfig's scanner spells it (only \\ and \" are escapes). */
static const char *include(text_scan *sc, const char *p, const char *end)
{
    unsigned line = sc->line;
    const char *raw = p;
    char *target = sh_malloc((size_t)(end - p) + 1);
    size_t n = 0;
    int lone = 0;

    for (; p < end && *p != '"'; p++) {
        if (*p == '\\') {
            if (p[1] == '"' || p[1] == '\\')
                target[n++] = *++p;
            else
                lone = 1;
            continue;
        }
        sc->line += *p == '\n';
        target[n++] = *p;
    }
    target[n] = '\0';
    /* unterminated, it is libconfig's syntax error, but the backslash is printed first */
    if (!sc->numbers && (p < end || lone))
        check_include(sc, line, raw, (size_t)(p - raw), target, lone);
    sh_free(target);
    return p < end ? p + 1 : end;
}

/* libconfig's include_open, `^[ \t]*@include[ \t]+\"`: what follows the quote, or NULL. */
static const char *include_open(const char *p, const char *end)
{
    size_t ws;

    p += strspn(p, " \t");
    if (end - p < 8 || memcmp(p, "@include", 8) != 0) return NULL;
    p += 8;
    ws = strspn(p, " \t");
    return ws && p[ws] == '"' ? p + ws + 1 : NULL;
}

/* text[end - text] must be a NUL (so p[1] can always be read); NULs before it are content. */
static void scan_text(text_scan *sc, const char *p, const char *end)
{
    int bol = 1; /* flex's ^: the last byte consumed was a newline */
    const char *q;

    while (p < end) {
        if (*p == '\n') {
            sc->line++;
            p++;
            bol = 1;
            continue;
        }
        if (bol && (q = include_open(p, end))) {
            p = include(sc, q, end);
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            q = memchr(p, '\n', (size_t)(end - p));
            p = q ? q : end;
        } else if (p[0] == '/' && p[1] == '*') {
            for (p += 2; p < end && !(p[0] == '*' && p[1] == '/'); p++)
                sc->line += *p == '\n';
            p = p < end ? p + 2 : end;
        } else if (*p == '"') {
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
                sc->line += *p == '\n';
            }
            p = p < end ? p + 1 : end;
        } else if (isalpha((unsigned char)*p) || *p == '*') {
            /* a name may hold digits ("k8s = 1;"): they are not a number */
            p += 1 + strspn(p + 1, NAMECHARS);
        } else if (sc->numbers && *p && (isdigit((unsigned char)*p) || strchr("+-.", *p))) {
            p += number(sc, p);
        } else {
            p++;
        }
        bol = 0;
    }
}

static int seen_before(seen_files *seen, const char *file)
{
    for (size_t i = 0; i < seen->n; i++)
        if (strcmp(seen->names[i], file) == 0) return 1;
    seen->names = sh_realloc(seen->names, (seen->n + 1) * sizeof *seen->names);
    seen->names[seen->n++] = sh_strdup(file);
    return 0;
}

static void scan_file(loader *ld, const char *file, int numbers, int depth, seen_files *seen)
{
    FILE *f;
    size_t len = 0, cap = 4096, n;
    char *buf;
    text_scan sc = {ld, file, 1, numbers, depth, seen};

    if (!numbers && seen_before(seen, file)) return;
    if (!(f = fopen(file, "r"))) {
        if (numbers)
            cfg_err_line(ld, file, 0, "cannot open to check its integers: %s", strerror(errno));
        return;
    }
    buf = sh_malloc(cap);
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len == 1) buf = sh_realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[len] = '\0';
    scan_text(&sc, buf, buf + len);
    sh_free(buf);
}

/* Every file that holds a setting: the main file and whatever it @includes. */
static void collect_files(const config_setting_t *s, const char ***files, size_t *n)
{
    const char *f = config_setting_source_file(s);
    size_t i;

    for (i = 0; f && i < *n && strcmp((*files)[i], f) != 0; i++)
        ;
    if (f && i == *n) {
        *files = sh_realloc(*files, (*n + 1) * sizeof **files);
        (*files)[(*n)++] = f;
    }
    if (config_setting_is_aggregate(s))
        for (int j = 0; j < config_setting_length(s); j++)
            collect_files(config_setting_get_elem(s, (unsigned)j), files, n);
}

int cfg_check_int_literals(loader *ld, const config_t *lc)
{
    const char **files = NULL;
    size_t n = 0;
    int before = ld->nerr;

    collect_files(config_root_setting(lc), &files, &n);
    if (n == 0) scan_file(ld, ld->path, 1, 0, NULL);
    for (size_t i = 0; i < n; i++)
        scan_file(ld, files[i], 1, 0, NULL);
    sh_free(files);
    return ld->nerr - before;
}

int cfg_check_includes(loader *ld)
{
    seen_files seen = {NULL, 0};
    int before = ld->nerr;

    scan_file(ld, ld->path, 0, 0, &seen);
    for (size_t i = 0; i < seen.n; i++)
        sh_free(seen.names[i]);
    sh_free(seen.names);
    return ld->nerr - before;
}
