/*
 * Integer literals that libconfig would read as a different number.
 *
 * Debian 12's libconfig (1.5) keeps an integer written without the L suffix in
 * 32 bits whatever its size: `memory_size = 4296015872;` arrives as 1048576
 * (2^32 + 1M), exactly what `memory_size = 1048576;` gives, so no check on the
 * parsed value can tell them apart. Hex without L goes through an int as well
 * (0x80000000 comes back negative), and with L anything beyond 64 bits
 * saturates. Only the text still says what the operator meant, so once
 * libconfig has accepted the file, every number in it and in the files it
 * @includes is read again with libconfig's own token rules, and each that
 * libconfig would have changed is reported as file:line.
 */
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shield/alloc.h"

#include "config_int.h"

#define DIGITS    "0123456789"
#define XDIGITS   "0123456789abcdefABCDEF"
#define NAMECHARS "-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_*"

typedef struct lit_scan {
    loader *ld;
    const char *file;
    unsigned line;
} lit_scan;

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
static size_t number(lit_scan *sc, const char *p)
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
    fprintf(sc->ld->errs, "%s:%u: integer %.*s %s", sc->file, sc->line, (int)len, p, why);
    if (fits64)
        fprintf(sc->ld->errs, ": write %.*sL%s", (int)len, p,
                hex || neg ? "" : ", or a string with a unit such as \"4G\" or \"30d\"");
    fputc('\n', sc->ld->errs);
    sc->ld->nerr++;
    return len;
}

/* The text must be NUL-terminated; it has already passed libconfig's parser. */
static void scan_text(lit_scan *sc, const char *p)
{
    while (*p) {
        if (*p == '\n') {
            sc->line++;
            p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*') {
            for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
                sc->line += *p == '\n';
            p += *p ? 2 : 0;
        } else if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
                sc->line += *p == '\n';
            }
            p += *p ? 1 : 0;
        } else if (isalpha((unsigned char)*p) || *p == '*') {
            /* a name may hold digits ("k8s = 1;"): they are not a number */
            p += 1 + strspn(p + 1, NAMECHARS);
        } else if (isdigit((unsigned char)*p) || strchr("+-.", *p)) {
            p += number(sc, p);
        } else {
            p++;
        }
    }
}

static void scan_file(loader *ld, const char *file)
{
    FILE *f = fopen(file, "r");
    size_t len = 0, cap = 4096, n;
    char *buf;
    lit_scan sc = {ld, file, 1};

    if (!f) {
        fprintf(ld->errs, "%s: cannot open to check its integers: %s\n", file, strerror(errno));
        ld->nerr++;
        return;
    }
    buf = sh_malloc(cap);
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len == 1) buf = sh_realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[len] = '\0';
    scan_text(&sc, buf);
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
    if (n == 0) scan_file(ld, ld->path);
    for (size_t i = 0; i < n; i++)
        scan_file(ld, files[i]);
    sh_free(files);
    return ld->nerr - before;
}
