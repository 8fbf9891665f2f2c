/*
 * Disk tier storage (proxy/cache/disk.c): round trips, commits that must not
 * happen (length/MD5 mismatch, abort, cap, disk full), files that must be
 * dropped (truncated, bit-flipped, temp, stray), a kill -9 loop against a
 * writing child, the invalidation rule log, and a timed 100k-object scan.
 * Every test runs in its own mkdtemp directory, removed afterwards.
 *
 * Environment: SHIELD_KILL_ITERATIONS (default 25) and SHIELD_SCAN_OBJECTS
 * (default 100000) let a soak target raise the counts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "shield/cache_disk.h"

#define MIB (1024 * 1024)

typedef struct {
    char root[64];   /* mkdtemp directory */
    char cache[128]; /* root/cache: the store's directory */
} fixture;

/* ---- helpers ------------------------------------------------------------------------------ */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    strcpy(f->root, "/tmp/shield-disk-XXXXXX");
    if (!mkdtemp(f->root)) return -1;
    snprintf(f->cache, sizeof f->cache, "%s/cache", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static disk_store *open_store(const char *dir, uint64_t cap)
{
    char err[512] = "";
    disk_store *s = disk_open(dir, cap, err, sizeof err);
    if (!s) fail_msg("disk_open(%s): %s", dir, err);
    return s;
}

/* A store after its start-up scan (which must succeed), ready for writes. */
static disk_store *open_scanned(const char *dir, uint64_t cap)
{
    disk_store *s = open_store(dir, cap);
    assert_int_equal(disk_scan(s, 1, NULL, NULL, NULL), DISK_OK);
    return s;
}

static void md5_of(const void *p, size_t n, unsigned char out[16])
{
    assert_true(EVP_Digest(p, n, out, NULL, EVP_md5(), NULL));
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Body bytes derived from a seed, so a checker can recompute what a writer meant. */
static unsigned char *make_body(uint64_t seed, size_t len)
{
    unsigned char *b = malloc(len + 1);
    uint64_t x = mix(seed + 1);
    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0) x = mix(x + i);
        b[i] = (unsigned char)(x >> (8 * (i % 8)));
    }
    return b;
}

/* Write and commit an object, appending in pieces of step bytes. */
static int put_obj(disk_store *s, const char *key, const char *meta, const unsigned char *body,
                   size_t len, size_t step)
{
    unsigned char md5[16];
    disk_writer *w = disk_writer_begin(s, key, strlen(key), meta, strlen(meta));
    if (!w) return DISK_ERR_IO;
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        if (disk_writer_append(w, body + off, n) < 0) {
            disk_writer_abort(w);
            return DISK_ERR_IO;
        }
    }
    md5_of(body, len, md5);
    return disk_writer_commit(w, (int64_t)len, md5);
}

/* Path of key's object file (mirrors the documented naming). */
static void obj_path(const fixture *f, const char *key, char *out, size_t outlen)
{
    unsigned char md[32];
    char hex[33];
    assert_true(EVP_Digest(key, strlen(key), md, NULL, EVP_sha256(), NULL));
    for (int i = 0; i < 16; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    snprintf(out, outlen, "%s/%.1s/%.2s/%s.obj", f->cache, hex, hex + 1, hex);
}

/* Count files under dir whose name contains needle; with bytes, also add up their
 * footprints (size rounded up to DISK_BLOCK), which is what disk_used() accounts. */
static int count_files_bytes(const char *dir, const char *needle, uint64_t *bytes)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) return 0;
    while ((e = readdir(d))) {
        char p[512];
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &st) < 0) continue;
        if (S_ISDIR(st.st_mode)) {
            n += count_files_bytes(p, needle, bytes);
        } else if (strstr(e->d_name, needle)) {
            if (bytes) *bytes += ((uint64_t)st.st_size + DISK_BLOCK - 1) / DISK_BLOCK * DISK_BLOCK;
            n++;
        }
    }
    closedir(d);
    return n;
}

static int count_files(const char *dir, const char *needle)
{
    return count_files_bytes(dir, needle, NULL);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x10;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Scan results collected for assertions. */
typedef struct {
    int n;
    char key[64][64];
    char meta[64][64];
    uint64_t size[64];
} seen;

static void collect(void *ud, const void *key, size_t keylen, const disk_info *info)
{
    seen *sn = ud;
    if (sn->n == 64) return;
    snprintf(sn->key[sn->n], 64, "%.*s", (int)keylen, (const char *)key);
    snprintf(sn->meta[sn->n], 64, "%.*s", (int)info->meta_len, (const char *)info->meta);
    sn->size[sn->n++] = info->body_size;
}

/* Close s and open its directory again, as a restart would: the scan reports to sn. */
static disk_store *reopen_collect(const fixture *f, disk_store *s, seen *sn, disk_scan_stats *st)
{
    disk_close(s);
    s = open_store(f->cache, 1ULL << 30);
    assert_int_equal(disk_scan(s, 1, collect, sn, st), DISK_OK);
    return s;
}

static void expect_body(disk_entry *e, const unsigned char *body, size_t len, size_t step)
{
    unsigned char *got = malloc(len + 1);
    size_t off = 0;
    while (off < len) {
        ssize_t n = disk_read_body(e, off, got + off, step);
        assert_true(n > 0);
        off += (size_t)n;
    }
    assert_int_equal(disk_read_body(e, len, got, 1), 0);
    assert_memory_equal(got, body, len);
    free(got);
}

/* ---- round trip ----------------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    fixture *f = *state;
    size_t len = 2 * MIB + 12345;
    unsigned char *body = make_body(1, len);
    disk_store *s = open_store(f->cache, 1ULL << 30);
    disk_scan_stats st;

    assert_int_equal(disk_scan(s, 1, NULL, NULL, &st), DISK_OK);
    assert_int_equal(st.kept, 0);
    assert_int_equal(put_obj(s, "books/a b.epub", "status=200", body, len, 4099), DISK_OK);
    assert_int_equal(put_obj(s, "empty", "m", body, 0, 1), DISK_OK);
    /* No metadata at all (NULL, 0): regression for zlib's crc32(crc, NULL, 0) == 0. */
    disk_writer *w = disk_writer_begin(s, "nometa", 6, NULL, 0);
    assert_non_null(w);
    assert_int_equal(disk_writer_append(w, body, 100), 0);
    assert_int_equal(disk_writer_commit(w, 100, NULL), DISK_OK);
    assert_int_equal(disk_entry_count(s), 3);
    uint64_t used = disk_used(s);
    assert_true(used >= len && used % DISK_BLOCK == 0);

    seen sn = {0};
    s = reopen_collect(f, s, &sn, &st);
    assert_int_equal(st.kept, 3);
    assert_int_equal(st.dropped_corrupt + st.dropped_temp + st.dropped_stray + st.errors, 0);
    assert_int_equal(disk_used(s), used);
    for (int i = 0; i < sn.n; i++) {
        if (!strcmp(sn.key[i], "nometa")) {
            assert_string_equal(sn.meta[i], "");
            assert_int_equal(sn.size[i], 100);
        } else if (!strcmp(sn.key[i], "empty")) {
            assert_string_equal(sn.meta[i], "m");
            assert_int_equal(sn.size[i], 0);
        } else {
            assert_string_equal(sn.key[i], "books/a b.epub");
            assert_string_equal(sn.meta[i], "status=200");
            assert_int_equal(sn.size[i], len);
        }
    }

    disk_entry *e;
    unsigned char md5[16];
    assert_int_equal(disk_open_entry(s, "books/a b.epub", 14, &e), DISK_OK);
    const disk_info *info = disk_entry_info(e);
    assert_int_equal(info->body_size, len);
    assert_int_equal(info->meta_len, 10);
    assert_memory_equal(info->meta, "status=200", 10);
    md5_of(body, len, md5);
    assert_memory_equal(info->md5, md5, 16);
    expect_body(e, body, len, 777);             /* odd pieces, partial chunks */
    expect_body(e, body, len, DISK_CHUNK_SIZE); /* aligned whole chunks */
    unsigned char mid[10];
    assert_int_equal(disk_read_body(e, DISK_CHUNK_SIZE - 5, mid, 10), 10); /* spans two chunks */
    assert_memory_equal(mid, body + DISK_CHUNK_SIZE - 5, 10);
    assert_int_equal(disk_entry_verify(e), DISK_OK);
    uint64_t off;
    int fd = disk_entry_fd(e, &off);
    unsigned char first[16];
    assert_int_equal(pread(fd, first, 16, (off_t)off), 16); /* what sendfile would send */
    assert_memory_equal(first, body, 16);
    disk_entry_close(e);

    assert_int_equal(disk_open_entry(s, "empty", 5, &e), DISK_OK);
    assert_int_equal(disk_entry_info(e)->body_size, 0);
    assert_int_equal(disk_read_body(e, 0, mid, 10), 0);
    assert_int_equal(disk_entry_verify(e), DISK_OK);
    disk_entry_close(e);

    assert_int_equal(disk_open_entry(s, "books/A b.epub", 14, &e), DISK_ERR_NOTFOUND);
    assert_null(e);
    disk_close(s);
    free(body);
}

static void test_replace_remove_rewrite(void **state)
{
    fixture *f = *state;
    unsigned char *b1 = make_body(2, 5000), *b2 = make_body(3, 70000);
    disk_store *s = open_scanned(f->cache, 1ULL << 30);
    disk_entry *e;

    assert_int_equal(put_obj(s, "k", "v1", b1, 5000, 5000), DISK_OK);
    assert_int_equal(put_obj(s, "k", "v2", b2, 70000, 333), DISK_OK);
    assert_int_equal(disk_entry_count(s), 1);
    assert_int_equal(disk_used(s), 73728); /* 72 + 1 + 2 + 70000 + 20 rounded to 4 KiB */
    assert_int_equal(disk_open_entry(s, "k", 1, &e), DISK_OK);
    assert_memory_equal(disk_entry_info(e)->meta, "v2", 2);
    expect_body(e, b2, 70000, 70000);

    /* The open entry survives replacement and removal of the name. */
    assert_int_equal(disk_rewrite_meta(s, "k", 1, "refreshed", 9), DISK_OK);
    assert_int_equal(disk_entry_count(s), 1);
    expect_body(e, b2, 70000, 1000);
    disk_entry_close(e);
    assert_int_equal(disk_open_entry(s, "k", 1, &e), DISK_OK);
    assert_memory_equal(disk_entry_info(e)->meta, "refreshed", 9);
    expect_body(e, b2, 70000, 4096);
    assert_int_equal(disk_remove(s, "k", 1), DISK_OK);
    expect_body(e, b2, 70000, 65536);
    disk_entry_close(e);
    assert_int_equal(disk_remove(s, "k", 1), DISK_ERR_NOTFOUND);
    assert_int_equal(disk_open_entry(s, "k", 1, &e), DISK_ERR_NOTFOUND);
    assert_int_equal(disk_rewrite_meta(s, "k", 1, "x", 1), DISK_ERR_NOTFOUND);
    assert_int_equal(disk_entry_count(s), 0);
    assert_int_equal(disk_used(s), 0);
    disk_close(s);
    free(b1);
    free(b2);
}

/* ---- commits that must not happen ----------------------------------------------------------- */

static void test_mismatch_leaves_nothing(void **state)
{
    fixture *f = *state;
    unsigned char *body = make_body(4, 10000), md5[16];
    disk_store *s = open_scanned(f->cache, 1ULL << 30);
    char path[256];
    disk_writer *w;

    md5_of(body, 10000, md5);
    w = disk_writer_begin(s, "len", 3, "", 0);
    assert_non_null(w);
    assert_int_equal(disk_writer_append(w, body, 9999), 0); /* truncated origin body */
    assert_int_equal(disk_writer_commit(w, 10000, NULL), DISK_ERR_LENGTH);

    w = disk_writer_begin(s, "md5", 3, "", 0);
    assert_int_equal(disk_writer_append(w, body, 10000), 0);
    md5[3] ^= 1;
    assert_int_equal(disk_writer_commit(w, 10000, md5), DISK_ERR_MD5);
    md5[3] ^= 1;

    w = disk_writer_begin(s, "abort", 5, "", 0);
    assert_int_equal(disk_writer_append(w, body, 10000), 0);
    disk_writer_abort(w);

    /* Unknown length and no ETag MD5 is fine. */
    w = disk_writer_begin(s, "ok", 2, "", 0);
    assert_int_equal(disk_writer_append(w, body, 10000), 0);
    assert_int_equal(disk_writer_commit(w, -1, NULL), DISK_OK);

    obj_path(f, "len", path, sizeof path);
    assert_int_equal(access(path, F_OK), -1);
    obj_path(f, "md5", path, sizeof path);
    assert_int_equal(access(path, F_OK), -1);
    obj_path(f, "abort", path, sizeof path);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_files(f->cache, ".tmp."), 0);
    assert_int_equal(count_files(f->cache, ".obj"), 1);
    assert_int_equal(disk_entry_count(s), 1);

    assert_null(disk_writer_begin(s, "", 0, "", 0));
    assert_int_equal(errno, EINVAL);
    disk_close(s);
    free(body);
}

static void test_cap(void **state)
{
    fixture *f = *state;
    unsigned char *body = make_body(5, 20000);
    disk_store *s = open_scanned(f->cache, 3 * DISK_BLOCK);

    assert_int_equal(put_obj(s, "big", "", body, 20000, 20000), DISK_ERR_FULL); /* > cap */
    assert_int_equal(put_obj(s, "a", "", body, 5000, 5000), DISK_OK);           /* 8 KiB */
    assert_int_equal(put_obj(s, "b", "", body, 5000, 5000), DISK_OK); /* 16 KiB: one over */
    assert_int_equal(disk_used(s), 4 * DISK_BLOCK);
    assert_int_equal(put_obj(s, "c", "", body, 100, 100), DISK_ERR_FULL); /* already over */
    assert_int_equal(disk_remove(s, "a", 1), DISK_OK);                    /* engine evicts */
    assert_int_equal(put_obj(s, "c", "", body, 100, 100), DISK_OK);
    assert_int_equal(disk_entry_count(s), 2);
    assert_int_equal(count_files(f->cache, ".tmp."), 0);
    disk_close(s);
    free(body);
}

/* ---- store directory ------------------------------------------------------------------------ */

/* What the engine charges its eviction policy for an object before writing it
 * must be what the store then counts for the file, to the byte: the policy
 * keeps the budget, the store refuses commits over it, and any difference
 * between them is a commit refused although the policy made room. Sizes around
 * the block and chunk boundaries, with metadata from none to several blocks. */
static void scan_footprint_cb(void *ud, const void *key, size_t keylen, const disk_info *info)
{
    *(uint64_t *)ud += info->footprint;
}

static void test_footprint_is_exact(void **state)
{
    fixture *f = *state;
    static const size_t bodies[] = {0,       1,   4000,    4096,        4097,        20000,
                                    MIB - 1, MIB, MIB + 1, 2 * MIB + 5, 3 * MIB - 90};
    static const size_t metas[] = {0, 100, 3000, 4020, 9000};
    unsigned char *body = make_body(11, 3 * MIB);
    char *meta = malloc(9001);
    disk_store *s = open_scanned(f->cache, 1ull << 40);
    uint64_t want = 0;
    int n = 0;

    memset(meta, 'm', 9000);
    meta[9000] = '\0';
    for (size_t b = 0; b < sizeof bodies / sizeof *bodies; b++) {
        for (size_t m = 0; m < sizeof metas / sizeof *metas; m++) {
            char key[32];
            int klen = snprintf(key, sizeof key, "key-%zu-%zu", b, m);
            uint64_t before = disk_used(s), fp = disk_footprint((size_t)klen, metas[m], bodies[b]);
            meta[metas[m]] = '\0';
            assert_int_equal(put_obj(s, key, meta, body, bodies[b], 65536), DISK_OK);
            meta[metas[m]] = 'm';
            assert_int_equal(disk_used(s) - before, fp);
            want += fp;
            n++;
        }
    }
    disk_close(s);
    uint64_t scanned = 0;
    s = open_store(f->cache, 1ull << 40);
    assert_int_equal(disk_scan(s, 2, scan_footprint_cb, &scanned, NULL), DISK_OK);
    assert_int_equal(scanned, want);
    assert_int_equal(disk_used(s), want);
    assert_int_equal(disk_entry_count(s), n);
    disk_close(s);
    free(meta);
    free(body);
}

static void test_lock_and_foreign_dir(void **state)
{
    fixture *f = *state;
    char err[512], path[256];
    disk_store *s = open_store(f->cache, 1 << 20);

    assert_null(disk_open(f->cache, 1 << 20, err, sizeof err));
    assert_non_null(strstr(err, "in use"));
    disk_close(s);
    s = open_store(f->cache, 1 << 20); /* lock released by close */
    disk_close(s);

    /* A non-empty directory that is not a cache is never adopted (its files would go). */
    snprintf(path, sizeof path, "%s/precious.txt", f->root);
    FILE *fp = fopen(path, "w");
    fputs("keep me\n", fp);
    fclose(fp);
    assert_null(disk_open(f->root, 1 << 20, err, sizeof err));
    assert_non_null(strstr(err, "no VERSION"));

    snprintf(path, sizeof path, "%s/VERSION", f->cache);
    fp = fopen(path, "w");
    fputs("something else\n", fp);
    fclose(fp);
    assert_null(disk_open(f->cache, 1 << 20, err, sizeof err));
    assert_non_null(strstr(err, "VERSION"));
}

/* ---- files that must be dropped ------------------------------------------------------------- */

static void test_truncated_dropped(void **state)
{
    fixture *f = *state;
    unsigned char *body = make_body(6, 3000);
    disk_store *s = open_scanned(f->cache, 1ULL << 30);
    char p1[256], p2[256];
    disk_entry *e;
    disk_scan_stats st;

    assert_int_equal(put_obj(s, "one", "m", body, 3000, 1000), DISK_OK);
    assert_int_equal(put_obj(s, "zero", "m", body, 3000, 1000), DISK_OK);
    assert_int_equal(put_obj(s, "open", "m", body, 3000, 1000), DISK_OK);
    assert_int_equal(put_obj(s, "keep", "m", body, 3000, 1000), DISK_OK);
    obj_path(f, "one", p1, sizeof p1);
    obj_path(f, "zero", p2, sizeof p2);
    assert_int_equal(truncate(p1, file_size(p1) - 1), 0);
    assert_int_equal(truncate(p2, 0), 0);
    assert_int_equal(disk_open_entry(s, "one", 3, &e), DISK_ERR_CORRUPT);
    assert_int_equal(access(p1, F_OK), -1); /* removed by the failed open */
    obj_path(f, "open", p1, sizeof p1);
    assert_int_equal(disk_open_entry(s, "open", 4, &e), DISK_OK);
    assert_int_equal(truncate(p1, 1000), 0); /* shrinks under an open entry */
    unsigned char buf[3000];
    assert_int_equal(disk_read_body(e, 0, buf, sizeof buf), -1);
    assert_int_equal(errno, EBADMSG);
    disk_entry_close(e);

    seen sn = {0};
    s = reopen_collect(f, s, &sn, &st);
    assert_int_equal(st.kept, 1);
    assert_string_equal(sn.key[0], "keep");
    assert_int_equal(st.dropped_corrupt, 1); /* the zero-length one */
    assert_int_equal(access(p2, F_OK), -1);
    assert_int_equal(disk_open_entry(s, "zero", 4, &e), DISK_ERR_NOTFOUND);
    disk_close(s);
    free(body);
}

static void test_bitflip_body(void **state)
{
    fixture *f = *state;
    size_t len = 3 * DISK_CHUNK_SIZE + 100;
    unsigned char *body = make_body(7, len), *buf = malloc(DISK_CHUNK_SIZE);
    disk_store *s = open_scanned(f->cache, 1ULL << 30);
    char path[256];
    disk_entry *e;
    uint64_t off;

    assert_int_equal(put_obj(s, "flip", "meta", body, len, 65537), DISK_OK);
    assert_int_equal(put_obj(s, "flip2", "meta", body, len, 65537), DISK_OK);
    assert_int_equal(disk_open_entry(s, "flip", 4, &e), DISK_OK);
    disk_entry_fd(e, &off);
    obj_path(f, "flip", path, sizeof path);
    flip_byte(path, (off_t)(off + 2 * DISK_CHUNK_SIZE + 12345)); /* in chunk 2 */

    /* The scan does not read bodies: it keeps the file. */
    disk_scan_stats st;
    disk_entry_close(e);
    assert_int_equal(disk_scan(s, 1, NULL, NULL, &st), DISK_OK);
    assert_int_equal(st.kept, 2);

    assert_int_equal(disk_open_entry(s, "flip", 4, &e), DISK_OK);
    assert_int_equal(disk_read_body(e, 0, buf, DISK_CHUNK_SIZE), DISK_CHUNK_SIZE);
    assert_memory_equal(buf, body, DISK_CHUNK_SIZE);
    assert_int_equal(disk_read_body(e, 2 * DISK_CHUNK_SIZE + 12340, buf, 10), -1);
    assert_int_equal(errno, EBADMSG);
    assert_int_equal(access(path, F_OK), -1); /* removed at once */
    assert_int_equal(disk_entry_count(s), 1);
    /* Other chunks of the open entry stay readable; the bad one never is. */
    assert_int_equal(disk_read_body(e, DISK_CHUNK_SIZE, buf, DISK_CHUNK_SIZE), DISK_CHUNK_SIZE);
    assert_int_equal(disk_read_body(e, 2 * DISK_CHUNK_SIZE, buf, DISK_CHUNK_SIZE), -1);
    disk_entry_close(e);
    assert_int_equal(disk_open_entry(s, "flip", 4, &e), DISK_ERR_NOTFOUND);

    /* Whole-body verification (before sendfile) catches it too. */
    obj_path(f, "flip2", path, sizeof path);
    assert_int_equal(disk_open_entry(s, "flip2", 5, &e), DISK_OK);
    disk_entry_fd(e, &off);
    flip_byte(path, (off_t)(off + len - 1)); /* last byte of the short last chunk */
    assert_int_equal(disk_entry_verify(e), DISK_ERR_CORRUPT);
    disk_entry_close(e);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(disk_entry_count(s), 0);
    disk_close(s);
    free(body);
    free(buf);
}

static void test_bitflip_header_meta_trailer(void **state)
{
    fixture *f = *state;
    unsigned char *body = make_body(8, 5000);
    disk_store *s = open_scanned(f->cache, 1ULL << 30);
    /* 72-byte header, then key "kN" (2 bytes), meta (8 bytes), body, trailer. */
    const off_t where[] = {0, 9, 26, 40, 70, 72, 75, 82 + 5000 + 2, 82 + 5000 + 10};
    const int n = (int)(sizeof where / sizeof where[0]);
    char key[16], path[256];
    disk_scan_stats st;
    disk_entry *e;

    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(put_obj(s, key, "metadata", body, 5000, 999), DISK_OK);
        obj_path(f, key, path, sizeof path);
        flip_byte(path, where[i]);
    }
    assert_int_equal(put_obj(s, "good", "metadata", body, 5000, 999), DISK_OK);
    assert_int_equal(disk_open_entry(s, "k1", 2, &e), DISK_ERR_CORRUPT);

    seen sn = {0};
    s = reopen_collect(f, s, &sn, &st);
    assert_int_equal(st.kept, 1);
    assert_string_equal(sn.key[0], "good");
    assert_int_equal(st.dropped_corrupt, n - 1);
    assert_int_equal(count_files(f->cache, ".obj"), 1);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(disk_open_entry(s, key, 2, &e), DISK_ERR_NOTFOUND);
    }
    disk_close(s);
    free(body);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_stray_and_temp_files(void **state)
{
    fixture *f = *state;
    unsigned char *body = make_body(9, 100);
    disk_store *s = open_scanned(f->cache, 1ULL << 30);
    char path[512], dir[256], good[256];
    disk_scan_stats st;

    assert_int_equal(put_obj(s, "good", "m", body, 100, 7), DISK_OK);
    disk_writer *w = disk_writer_begin(s, "interrupted", 11, "m", 1);
    assert_int_equal(disk_writer_append(w, body, 100), 0);
    /* Simulate the crash: copy the temp file as a leftover, then abort. */
    obj_path(f, "good", good, sizeof good);
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(good, '/') - good), good);
    snprintf(path, sizeof path, "%s/0123456789abcdef0123456789abcdef.tmp.1.0", dir);
    write_file(path, body, 50);
    disk_writer_abort(w);

    snprintf(path, sizeof path, "%s/notes.txt", dir); /* stray in a leaf */
    write_file(path, "x", 1);
    /* An object under the wrong name (a copy of a good file) is not served. */
    char *copy = malloc(4096);
    int fd = open(good, O_RDONLY);
    ssize_t n = read(fd, copy, 4096);
    close(fd);
    snprintf(path, sizeof path, "%s/%.3sfffffffffffffffffffffffffffff.obj", dir,
             strrchr(good, '/') + 1);
    write_file(path, copy, (size_t)n);
    free(copy);
    snprintf(path, sizeof path, "%s/0", f->cache); /* strays at level 1 */
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/0/junk", f->cache);
    write_file(path, "x", 1);
    snprintf(path, sizeof path, "%s/0/ab.tmp.3.4", f->cache);
    write_file(path, "x", 1);
    snprintf(path, sizeof path, "%s/00", f->cache); /* not a fan-out name: left alone */
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/00/other", f->cache);
    write_file(path, "x", 1);
    snprintf(path, sizeof path, "%s/README", f->cache); /* top level: not ours to judge */
    write_file(path, "x", 1);

    seen sn = {0};
    s = reopen_collect(f, s, &sn, &st);
    assert_int_equal(st.kept, 1);
    assert_string_equal(sn.key[0], "good");
    assert_int_equal(st.dropped_temp, 2);
    assert_int_equal(st.dropped_stray, 2);
    assert_int_equal(st.dropped_corrupt, 1);
    assert_int_equal(st.errors, 0);
    assert_int_equal(count_files(f->cache, ".tmp."), 0);
    assert_int_equal(count_files(f->cache, ".obj"), 1);
    assert_int_equal(access(path, F_OK), 0); /* README kept */
    snprintf(path, sizeof path, "%s/00/other", f->cache);
    assert_int_equal(access(path, F_OK), 0);
    disk_close(s);
    free(body);
}

/* ---- kill -9 loop --------------------------------------------------------------------------- */

#define KILL_KEYS 40

static size_t gen_len(uint64_t gen)
{
    uint64_t r = mix(gen * 7 + 3);
    return r % 4 == 0 ? (size_t)(r % 300) : (size_t)(r % (5 * MIB / 2));
}

static void gen_key(uint64_t gen, char *key, size_t n)
{
    snprintf(key, n, "obj/%u", (unsigned)(mix(gen) % KILL_KEYS));
}

/* The child: write objects (replacing, removing, appending rules) until killed. */
static void child_writer(const char *dir, uint64_t base)
{
    char err[256], key[32], meta[48];
    disk_store *s = disk_open(dir, 1ULL << 40, err, sizeof err);
    if (!s) _exit(2);
    for (uint64_t gen = base;; gen++) {
        size_t len = gen_len(gen);
        unsigned char *body = make_body(gen, len), md5[16];
        gen_key(gen, key, sizeof key);
        snprintf(meta, sizeof meta, "gen=%" PRIu64, gen);
        EVP_Digest(body, len, md5, NULL, EVP_md5(), NULL);
        disk_writer *w = disk_writer_begin(s, key, strlen(key), meta, strlen(meta));
        if (!w) _exit(3);
        for (size_t off = 0; off < len; off += 262147)
            disk_writer_append(w, body + off, len - off < 262147 ? len - off : 262147);
        if (disk_writer_commit(w, (int64_t)len, md5) != DISK_OK) _exit(4);
        free(body);
        if (gen % 5 == 0) {
            gen_key(gen + 1000, key, sizeof key);
            disk_remove(s, key, strlen(key));
        }
        if (gen % 3 == 0) {
            snprintf(meta, sizeof meta, "/rule/%" PRIu64 "/*", gen);
            if (disk_rules_append(s, meta, (int64_t)gen) != DISK_OK) _exit(5);
        }
    }
}

typedef struct {
    disk_store *s;
    pthread_mutex_t mu; /* the scan calls back from several threads */
    int checked;
    int failures;
} kill_check;

static void kill_fail(kill_check *kc)
{
    pthread_mutex_lock(&kc->mu);
    kc->failures++;
    pthread_mutex_unlock(&kc->mu);
}

static void check_killed_object(void *ud, const void *key, size_t keylen, const disk_info *info)
{
    kill_check *kc = ud;
    char k[64], expect_key[32];
    uint64_t gen;
    disk_entry *e;

    char m[48];
    snprintf(k, sizeof k, "%.*s", (int)keylen, (const char *)key);
    snprintf(m, sizeof m, "%.*s", (int)info->meta_len, (const char *)info->meta);
    if (sscanf(m, "gen=%" SCNu64, &gen) != 1) {
        kill_fail(kc);
        return;
    }
    gen_key(gen, expect_key, sizeof expect_key);
    size_t len = gen_len(gen);
    if (strcmp(k, expect_key) != 0 || info->body_size != len) {
        kill_fail(kc);
        return;
    }
    /* Re-open by key (as the engine would) and compare every byte. */
    if (disk_open_entry(kc->s, key, keylen, &e) != DISK_OK) {
        kill_fail(kc);
        return;
    }
    unsigned char *want = make_body(gen, len), *got = malloc(len + 1);
    size_t off = 0;
    while (off < len) {
        ssize_t n = disk_read_body(e, off, got + off, 300007);
        if (n <= 0) break;
        off += (size_t)n;
    }
    if (off != len || memcmp(got, want, len) != 0 || disk_entry_verify(e) != DISK_OK) kill_fail(kc);
    pthread_mutex_lock(&kc->mu);
    kc->checked++;
    pthread_mutex_unlock(&kc->mu);
    disk_entry_close(e);
    free(want);
    free(got);
}

typedef struct {
    size_t n;
    int bad;
} rule_check;

static void check_rule(void *ud, const char *pattern, int64_t t)
{
    rule_check *rc = ud;
    char want[64];
    snprintf(want, sizeof want, "/rule/%" PRId64 "/*", t);
    if (strcmp(pattern, want) != 0) rc->bad++;
    rc->n++;
}

static void test_kill9_loop(void **state)
{
    fixture *f = *state;
    const char *env = getenv("SHIELD_KILL_ITERATIONS");
    int iterations = env ? atoi(env) : 25;
    unsigned seed = (unsigned)time(NULL);
    int total_kept = 0, total_temp = 0;
    size_t prev_rules = 0;

    srand(seed);
    disk_close(open_store(f->cache, 1ULL << 40)); /* create the directory once */
    for (int it = 0; it < iterations; it++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) child_writer(f->cache, (uint64_t)it * 1000000);
        struct timespec ts = {0, (long)(1 + rand() % 150) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status)) fail_msg("child exited with %d (seed %u)", status, seed);

        disk_store *s = open_store(f->cache, 1ULL << 40);
        kill_check kc = {.s = s, .mu = PTHREAD_MUTEX_INITIALIZER};
        disk_scan_stats st;
        assert_int_equal(disk_scan(s, 4, check_killed_object, &kc, &st), DISK_OK);
        if (kc.failures) fail_msg("iteration %d: %d bad objects (seed %u)", it, kc.failures, seed);
        assert_int_equal(st.dropped_corrupt + st.dropped_stray + st.errors, 0);
        assert_int_equal(kc.checked, (int)st.kept);
        assert_int_equal(count_files(f->cache, ".tmp."), 0);
        assert_int_equal(disk_entry_count(s), st.kept);
        total_kept += (int)st.kept;
        total_temp += (int)st.dropped_temp;

        rule_check rc = {0};
        size_t bad;
        assert_int_equal(disk_rules_load(s, check_rule, &rc, &bad), DISK_OK);
        assert_int_equal(rc.bad, 0);
        assert_true(rc.n >= prev_rules); /* an acknowledged rule is never lost */
        prev_rules = rc.n;
        disk_close(s);
    }
    print_message("kill -9 loop: %d iterations, %d objects verified, %d temp files dropped, %zu "
                  "rules (seed %u)\n",
                  iterations, total_kept, total_temp, prev_rules, seed);
}

/* ---- disk full ------------------------------------------------------------------------------ */

static void test_disk_full(void **state)
{
    fixture *f = *state;
    char mnt[256], dir[300];
    size_t len = 3 * MIB;
    unsigned char *body = make_body(10, len);

    snprintf(mnt, sizeof mnt, "%s/tmpfs", f->root);
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m") < 0) {
        print_message("disk full test skipped: cannot mount a tmpfs (%s); needs root\n",
                      strerror(errno));
        free(body);
        skip();
    }
    snprintf(dir, sizeof dir, "%s/cache", mnt);
    disk_store *s = open_scanned(dir, 1ULL << 30);
    disk_writer *w = disk_writer_begin(s, "huge", 4, "m", 1);
    assert_non_null(w);
    int failed = 0;
    for (size_t off = 0; off < len && !failed; off += 100000) {
        size_t n = len - off < 100000 ? len - off : 100000;
        if (disk_writer_append(w, body + off, n) < 0) {
            assert_int_equal(errno, ENOSPC);
            failed = 1;
        }
    }
    assert_true(failed);
    assert_int_equal(disk_writer_append(w, body, 1), -1); /* sticky */
    assert_int_equal(disk_writer_commit(w, (int64_t)len, NULL), DISK_ERR_IO);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(count_files(dir, ".tmp."), 0);
    assert_int_equal(count_files(dir, ".obj"), 0);
    assert_int_equal(disk_entry_count(s), 0);
    /* The space was given back: a small object fits. */
    assert_int_equal(put_obj(s, "small", "m", body, 10000, 4096), DISK_OK);
    disk_close(s);

    s = open_store(dir, 1ULL << 30);
    disk_scan_stats st;
    assert_int_equal(disk_scan(s, 1, NULL, NULL, &st), DISK_OK);
    assert_int_equal(st.kept, 1);
    assert_int_equal(st.dropped_corrupt + st.dropped_temp + st.dropped_stray, 0);
    disk_close(s);
    assert_int_equal(umount(mnt), 0);
    free(body);
}

/* ---- rule log ------------------------------------------------------------------------------- */

typedef struct {
    int n;
    char pat[8][64];
    int64_t t[8];
} rules_seen;

static void collect_rule(void *ud, const char *pattern, int64_t t)
{
    rules_seen *r = ud;
    if (r->n == 8) return;
    snprintf(r->pat[r->n], 64, "%s", pattern);
    r->t[r->n++] = t;
}

static void test_rules_log(void **state)
{
    fixture *f = *state;
    disk_store *s = open_store(f->cache, 1 << 20);
    char path[256];
    size_t bad;
    rules_seen r = {0};

    assert_int_equal(disk_rules_load(s, collect_rule, &r, &bad), DISK_OK); /* no log yet */
    assert_int_equal(r.n, 0);
    assert_int_equal(disk_rules_append(s, "/books/*", 1700000000123), DISK_OK);
    assert_int_equal(disk_rules_append(s, "/a b/100%\n\x7f/x", -5), DISK_OK);
    assert_int_equal(disk_rules_append(s, "/torn/*", 42), DISK_OK);
    disk_close(s);

    /* kill -9 mid-append: cut the last line short. */
    snprintf(path, sizeof path, "%s/invalidations.log", f->cache);
    assert_int_equal(truncate(path, file_size(path) - 3), 0);
    s = open_store(f->cache, 1 << 20);
    assert_int_equal(disk_rules_load(s, collect_rule, &r, &bad), DISK_OK);
    assert_int_equal(r.n, 2);
    assert_int_equal(bad, 1);
    assert_string_equal(r.pat[0], "/books/*");
    assert_int_equal(r.t[0], 1700000000123);
    assert_string_equal(r.pat[1], "/a b/100%\n\x7f/x");
    assert_int_equal(r.t[1], -5);

    /* The next append is not glued to the torn line. */
    assert_int_equal(disk_rules_append(s, "/after", 7), DISK_OK);
    memset(&r, 0, sizeof r);
    assert_int_equal(disk_rules_load(s, collect_rule, &r, &bad), DISK_OK);
    assert_int_equal(r.n, 3);
    assert_int_equal(bad, 1);
    assert_string_equal(r.pat[2], "/after");

    /* A flipped byte in a middle line drops only that line. */
    flip_byte(path, 20);
    memset(&r, 0, sizeof r);
    assert_int_equal(disk_rules_load(s, collect_rule, &r, &bad), DISK_OK);
    assert_int_equal(r.n, 2);
    assert_int_equal(bad, 2);

    /* Compaction. */
    const char *pats[] = {"/keep/*"};
    const int64_t times[] = {99};
    assert_int_equal(disk_rules_rewrite(s, pats, times, 1), DISK_OK);
    memset(&r, 0, sizeof r);
    assert_int_equal(disk_rules_load(s, collect_rule, &r, &bad), DISK_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(bad, 0);
    assert_string_equal(r.pat[0], "/keep/*");
    assert_int_equal(r.t[0], 99);
    disk_close(s);
}

/* ---- 100k-object scan (timed, printed, not asserted) ---------------------------------------- */

static double secs(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void count_kept(void *ud, const void *key, size_t keylen, const disk_info *info)
{
    __atomic_fetch_add((uint64_t *)ud, 1, __ATOMIC_RELAXED);
}

/* Writers run in parallel (the store is thread-safe for different keys): creating
 * 100k files spread over 4096 directories waits on inode-table reads. */
typedef struct {
    disk_store *s;
    int from, to;
    int failures;
} fill_job;

static void *fill_thread(void *arg)
{
    fill_job *j = arg;
    char meta[200], key[64];
    unsigned char body[300];

    memset(meta, 'm', sizeof meta);
    memset(body, 'b', sizeof body);
    for (int i = j->from; i < j->to; i++) {
        snprintf(key, sizeof key, "example.com/books/%d.epub", i);
        disk_writer *w = disk_writer_begin(j->s, key, strlen(key), meta, sizeof meta);
        if (!w || disk_writer_append(w, body, sizeof body) < 0 ||
            disk_writer_commit(w, sizeof body, NULL) != DISK_OK)
            j->failures++;
    }
    return NULL;
}

static void test_scan_timing(void **state)
{
    fixture *f = *state;
    const char *env = getenv("SHIELD_SCAN_OBJECTS");
    int n = env ? atoi(env) : 100000;
    enum { THREADS = 8 };
    pthread_t tid[THREADS];
    fill_job jobs[THREADS];
    struct timespec t0, t1, t2;
    disk_scan_stats st;

    disk_store *s = open_scanned(f->cache, 1ULL << 40);
    disk_set_fsync(s, 0); /* creating 100k objects with fsync would take minutes */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (fill_job){.s = s, .from = n / THREADS * i, .to = n / THREADS * (i + 1)};
        if (i == THREADS - 1) jobs[i].to = n;
        assert_int_equal(pthread_create(&tid[i], NULL, fill_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(tid[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
    }
    assert_int_equal(disk_entry_count(s), (uint64_t)n);
    uint64_t used = disk_used(s);
    disk_close(s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double create = secs(&t0, &t1);

    for (unsigned threads = 1; threads <= 4; threads *= 4) {
        s = open_store(f->cache, 1ULL << 40);
        uint64_t kept = 0;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(disk_scan(s, threads, count_kept, &kept, &st), DISK_OK);
        clock_gettime(CLOCK_MONOTONIC, &t2);
        assert_int_equal(kept, (uint64_t)n);
        assert_int_equal(st.kept, (uint64_t)n);
        assert_int_equal(disk_used(s), used);
        print_message("scan of %d objects, %u thread(s): %.2f s (%.1f us/object)\n", n, threads,
                      secs(&t1, &t2), secs(&t1, &t2) * 1e6 / (n ? n : 1));
        disk_close(s);
    }
    print_message("creating them (8 threads, no fsync) took %.2f s\n", create);
}

/* ---- group commit and scanning while writing ---------------------------------------------- */

static disk_writer *begin_obj(disk_store *s, const char *key, const unsigned char *body, size_t len)
{
    disk_writer *w = disk_writer_begin(s, key, strlen(key), "m", 1);
    assert_non_null(w);
    assert_int_equal(disk_writer_append(w, body, len), 0);
    return w;
}

/* Batches (above and below the per-file sync threshold): nothing is visible after
 * finish, everything after the batch, with exact accounting; a failed finish frees its
 * writer without touching the others. */
static void test_group_commit(void **state)
{
    fixture *f = *state;
    disk_store *s = open_scanned(f->cache, 1ull << 30);
    disk_writer *ws[20];
    int rcs[20];
    char key[32];
    unsigned char *body = make_body(5, 9000);

    for (int round = 0; round < 2; round++) {
        size_t n = round ? 3 : 20; /* one syncfs batch, one fdatasync batch */
        for (size_t i = 0; i < n; i++) {
            snprintf(key, sizeof key, "/g/%d/%zu", round, i);
            ws[i] = begin_obj(s, key, body, 100 + i * 400);
            assert_int_equal(disk_writer_finish(ws[i], (int64_t)(100 + i * 400), NULL), DISK_OK);
        }
        disk_writer *bad = begin_obj(s, "/g/bad", body, 10);
        assert_int_equal(disk_writer_finish(bad, 11, NULL), DISK_ERR_LENGTH);
        assert_int_equal(count_files(f->cache, ".obj"), round ? 20 : 0);
        disk_commit_batch(s, ws, n, rcs);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(rcs[i], DISK_OK);
    }
    assert_int_equal(count_files(f->cache, ".obj"), 23);
    assert_int_equal(count_files(f->cache, ".tmp."), 0);
    uint64_t bytes = 0;
    count_files_bytes(f->cache, ".obj", &bytes);
    assert_int_equal(disk_used(s), bytes);
    assert_int_equal(disk_entry_count(s), 23);
    disk_entry *e;
    assert_int_equal(disk_open_entry(s, "/g/0/19", 7, &e), DISK_OK);
    expect_body(e, body, 100 + 19 * 400, 4096);
    disk_entry_close(e);
    disk_scan_stats st;
    assert_int_equal(disk_scan(s, 2, NULL, NULL, &st), DISK_OK);
    assert_int_equal(st.kept, 23);
    assert_int_equal(disk_used(s), bytes);
    free(body);
    disk_close(s);
}

typedef struct {
    disk_store *s;
    disk_scan_stats st;
    uint64_t reported;
} scan_arg;

static void *scan_thread(void *arg)
{
    scan_arg *a = arg;
    assert_int_equal(disk_scan(a->s, 2, count_kept, &a->reported, &a->st), DISK_OK);
    return NULL;
}

/* A scan running while objects are replaced, removed and added (the start-up scan of a
 * Shield that already serves): afterwards disk_used and disk_entry_count equal what is
 * on disk, and a writer begun before the scan keeps its temp file and commits. */
static void test_scan_while_writing(void **state)
{
    fixture *f = *state;
    disk_store *s = open_scanned(f->cache, 1ull << 30);
    unsigned char *body = make_body(9, 20000);
    char key[32];
    const int n = 600;

    disk_set_fsync(s, 0);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "/w/%d", i);
        assert_int_equal(put_obj(s, key, "m", body, 1000, 1000), DISK_OK);
    }
    disk_writer *early = begin_obj(s, "/w/early", body, 5000);
    setenv("SHIELD_TEST_SCAN_DELAY_US", "3000", 1);
    scan_arg a = {.s = s};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, scan_thread, &a), 0);
    for (int i = 0; i < n; i += 3) { /* replace (bigger), remove, add */
        snprintf(key, sizeof key, "/w/%d", i);
        assert_int_equal(put_obj(s, key, "m", body, 9000, 9000), DISK_OK);
        snprintf(key, sizeof key, "/w/%d", i + 1);
        assert_int_equal(disk_remove(s, key, strlen(key)), DISK_OK);
        snprintf(key, sizeof key, "/w/new/%d", i);
        assert_int_equal(put_obj(s, key, "m", body, 13000, 13000), DISK_OK);
    }
    disk_scan_state ps;
    disk_scan_progress(s, &ps);
    assert_int_equal(ps.running, 1); /* the writes above overlapped the scan */
    assert_int_equal(pthread_join(t, NULL), 0);
    unsetenv("SHIELD_TEST_SCAN_DELAY_US");
    disk_scan_progress(s, &ps);
    assert_int_equal(ps.running, 0);
    assert_int_equal(ps.leaves_done, ps.leaves);
    assert_int_equal(disk_writer_commit(early, 5000, NULL), DISK_OK);
    assert_int_equal(a.st.dropped_temp, 0);

    uint64_t bytes = 0, count = (uint64_t)count_files_bytes(f->cache, ".obj", &bytes);
    assert_int_equal(count, (uint64_t)n + 1);
    assert_int_equal(disk_entry_count(s), count);
    assert_int_equal(disk_used(s), bytes);
    free(body);
    disk_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_remove_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatch_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_footprint_is_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_and_foreign_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bitflip_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bitflip_header_meta_trailer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stray_and_temp_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rules_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_timing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_while_writing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
