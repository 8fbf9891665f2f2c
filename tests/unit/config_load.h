/*
 * Loading configuration text in the config unit tests: a minimal valid config
 * to append to, and loaders that report what the loader wrote with the
 * temporary file's path replaced by "t.conf", for exact file:line comparisons.
 * Include after <cmocka.h>.
 */
#ifndef SHIELD_TEST_CONFIG_LOAD_H
#define SHIELD_TEST_CONFIG_LOAD_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shield/config.h"

#define AWS    "https://s3.us-east-1.amazonaws.com"
#define LISTEN "listen = ( { address = \"127.0.0.1:8080\"; } );\n"
#define ORIGIN                                                                                     \
    "origins = ( { name = \"books\"; type = \"s3\"; endpoint = \"" AWS "\"; bucket = \"ebooks\"; " \
    "} );\n"
#define CATCHALL "behaviors = ( { path = \"*\"; } );\n"
/* Three lines: anything appended starts on line 4. */
#define MINIMAL LISTEN ORIGIN CATCHALL

/* Replace every occurrence of from in s by to; returns a malloc'd string. */
static inline char *replace_all(const char *s, const char *from, const char *to)
{
    size_t flen = strlen(from), tlen = strlen(to), n = 0;
    const char *p;
    char *out, *o;

    for (p = s; (p = strstr(p, from)); p += flen)
        n++;
    out = o = malloc(strlen(s) + n * (tlen > flen ? tlen - flen : 0) + 1);
    for (p = s; *p;) {
        if (strncmp(p, from, flen) == 0) {
            memcpy(o, to, tlen);
            o += tlen;
            p += flen;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/*
 * Write text to a temporary file, load it, and return the snapshot; *errs gets
 * everything the loader wrote, with the temporary path replaced by "t.conf" so
 * tests can compare exact lines.
 */
static inline sh_config *load_bytes(const char *text, size_t n, char **errs)
{
    char path[] = "/tmp/shield-test-config-XXXXXX";
    char *buf = NULL;
    size_t len = 0;
    int fd = mkstemp(path);
    FILE *f, *e;
    sh_config *cfg;

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
    e = open_memstream(&buf, &len);
    assert_non_null(e);
    cfg = sh_config_load(path, e);
    fclose(e);
    if (cfg) assert_string_equal(cfg->file, path);
    unlink(path);
    *errs = replace_all(buf, path, "t.conf");
    free(buf);
    return cfg;
}

static inline sh_config *load_text(const char *text, char **errs)
{
    return load_bytes(text, strlen(text), errs);
}

static inline sh_config *load_ok(const char *text)
{
    char *errs;
    sh_config *cfg = load_text(text, &errs);
    assert_string_equal(errs, "");
    free(errs);
    assert_non_null(cfg);
    return cfg;
}

static inline void expect_errors(const char *text, const char *expected)
{
    char *errs;
    sh_config *cfg = load_text(text, &errs);
    assert_string_equal(errs, expected);
    free(errs);
    assert_null(cfg);
}

#endif
