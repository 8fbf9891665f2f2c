/*
 * Disk tier storage: file per object, temp file + fsync + rename commits,
 * header/trailer validation, start-up scan and the invalidation rule log.
 * The format and the crash-safety argument are in include/shield/cache_disk.h.
 */
#include "shield/cache_disk.h"
#include "shield/alloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#define HDR_SIZE       72
#define HDR_CRC_OFF    68
#define TRL_FIXED      16
#define OBJ_MAGIC      "SHLDOBJ1"
#define END_MAGIC      "SHLDEND1"
#define HEAD_READ      4096
#define NAME_HEX       32
#define MIN_CHUNK      4096u
#define MAX_CHUNK      (64u << 20)
#define MAX_SCAN_THR   64
#define VERSION_PREFIX "shield-disk-cache "
#define RULES_LOG      "invalidations.log"
#define REL_MAX        96
#define NLEAVES        4096 /* 16 x 256 fan-out leaves */
#define LEAF_LOCKS     256
/* Up to this many objects a batch syncs file by file; above it one syncfs()
 * is cheaper (bench/README.md "Disk fill rate"). */
#define BATCH_FSYNC_MAX 4

struct disk_store {
    int root;    /* the cache directory; every path below is relative to it */
    int lock_fd; /* holds the flock for the store's lifetime */
    int sync;    /* fsync on commit (disk_set_fsync) */
    uint64_t max_bytes;
    /* Guards used/count, every rename or unlink of a final name (so accounting
     * matches the directory) and writes to the rule log. */
    pthread_mutex_t mu;
    uint64_t used, count;
    uint64_t tmp_seq; /* atomic: temp file suffix */
    char tmp_tag[48]; /* ".tmp.<pid>.<nonce>.": this store's temp files, which a scan keeps */
    /* Start-up scan running concurrently with writers (see disk_scan): a leaf's
     * files are counted in used/count by the scan until the leaf is done, by
     * commits and removals afterwards. leaf_done is read and written under the
     * leaf's stripe of leaf_mu, which the scan holds for a whole leaf and
     * publishers for a rename or unlink while scanning is set. */
    int scanning;  /* atomic */
    int scan_stop; /* atomic: disk_scan_cancel */
    unsigned char leaf_done[NLEAVES];
    pthread_mutex_t leaf_mu[LEAF_LOCKS];
    uint64_t scan_leaves, scan_kept, scan_kept_bytes; /* atomic: progress */
};

struct disk_writer {
    disk_store *s;
    int fd;
    int err;      /* first append error (errno), sticky */
    int unlinked; /* temp name already gone (error path or renamed) */
    char dir[8], tmp[REL_MAX], obj[REL_MAX];
    uint32_t key_len, meta_len, km_crc; /* CRC-32 of key then meta */
    uint64_t body, off;                 /* body bytes; file offset of the next append */
    uint32_t crc, fill;                 /* CRC and length of the current chunk */
    uint32_t *crcs;
    size_t ncrcs, cap;
    EVP_MD_CTX *md5;
    int64_t stored_at;
    uint64_t fp; /* footprint, set by disk_writer_finish */
};

/* What load_head() learns from a file without reading its body. */
typedef struct {
    uint32_t key_len, meta_len, chunk_size, hdr_crc;
    uint64_t body_size, nchunks, file_size;
    int64_t stored_at;
    unsigned char md5[16];
    unsigned char *km; /* key then meta */
    uint32_t *crcs;    /* chunk CRC table, only when asked for */
} obj_head;

struct disk_entry {
    disk_store *s;
    int fd;
    dev_t dev;
    ino_t ino;
    char obj[REL_MAX];
    obj_head h;
    disk_info info;
    uint64_t body_off;
    unsigned char *scratch; /* one chunk, for reads that cover a chunk partly */
    EVP_MD_CTX *seq;        /* disk_entry_read_seq: MD5 so far */
    uint64_t seq_off;       /* disk_entry_read_seq: body bytes read so far */
};

const char *disk_rc_name(int rc)
{
    static const char *const names[] = {"ok",     "io",  "notfound", "corrupt",
                                        "length", "md5", "full",     "invalid"};
    return rc <= 0 && rc > -(int)(sizeof names / sizeof *names) ? names[-rc] : "unknown";
}

/* ---- small helpers -------------------------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint64_t footprint(uint64_t size)
{
    return (size + DISK_BLOCK - 1) / DISK_BLOCK * DISK_BLOCK;
}

static int pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const char *c = p;
    while (n) {
        ssize_t r = pwrite(fd, c, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = EIO;
            return -1;
        }
        c += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Reads until n bytes or end of file; returns the count or -1. */
static ssize_t pread_all(int fd, void *p, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)p + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int fsync_dir(int root, const char *rel)
{
    int fd = openat(root, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd), e = errno;
    close(fd);
    errno = e;
    return r;
}

/* Write a small file atomically: temp, fsync, rename, fsync the directory. */
static int replace_file(int root, const char *name, const char *tmp, const void *data, size_t len)
{
    int fd = openat(root, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), bad;
    if (fd < 0) return -1;
    bad = pwrite_all(fd, data, len, 0) < 0 || fsync(fd) < 0;
    bad = close(fd) < 0 || bad;
    if (bad || renameat(root, tmp, root, name) < 0) {
        int e = errno;
        unlinkat(root, tmp, 0);
        errno = e;
        return -1;
    }
    return fsync_dir(root, ".");
}

/* First 128 bits of SHA-256(key) in hex: uniform (even for crafted keys, so
 * the fan-out stays balanced) and collision-free in practice. */
static void key_paths(const void *key, size_t keylen, char *dir, char *obj, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    static const char digits[] = "0123456789abcdef";

    if (!EVP_Digest(key, keylen, md, NULL, EVP_sha256(), NULL)) abort();
    for (int i = 0; i < NAME_HEX / 2; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[NAME_HEX] = '\0';
    if (dir) snprintf(dir, 8, "%.1s/%.2s", hex, hex + 1);
    if (obj) snprintf(obj, REL_MAX, "%.1s/%.2s/%s.obj", hex, hex + 1, hex);
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* A fan-out directory name of n hex digits. */
static int is_hexn(const char *name, size_t n)
{
    return strlen(name) == n && is_hex(name, n);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0;
}

/* Leaf number of a relative path "a/bc/..." or of a directory "a/bc". */
static unsigned leaf_of(const char *rel)
{
    return (unsigned)(hexval(rel[0]) << 8 | hexval(rel[2]) << 4 | hexval(rel[3]));
}

/* While a scan runs, lock rel's leaf so a rename or unlink there cannot
 * interleave with the scan of that leaf; NULL (no lock) otherwise. */
static pthread_mutex_t *leaf_enter(disk_store *s, const char *rel)
{
    if (!__atomic_load_n(&s->scanning, __ATOMIC_ACQUIRE)) return NULL;
    pthread_mutex_t *m = &s->leaf_mu[leaf_of(rel) % LEAF_LOCKS];
    pthread_mutex_lock(m);
    return m;
}

static void leaf_leave(pthread_mutex_t *m)
{
    if (m) pthread_mutex_unlock(m);
}

/* Whether files in rel's leaf are in used/count (its leaf lock held if a scan runs). */
static int leaf_counted(disk_store *s, const char *rel)
{
    return !__atomic_load_n(&s->scanning, __ATOMIC_ACQUIRE) ||
           __atomic_load_n(&s->leaf_done[leaf_of(rel)], __ATOMIC_ACQUIRE);
}

static void uncount(disk_store *s, off_t size) /* s->mu held */
{
    uint64_t fp = footprint((uint64_t)size);
    s->used = s->used > fp ? s->used - fp : 0;
    if (s->count) s->count--;
}

/* Remove rel only if it is still the inode we examined: a commit may have
 * renamed a new object over it since, and that one must survive. */
static void remove_if_same(disk_store *s, const char *rel, dev_t dev, ino_t ino)
{
    struct stat st;
    pthread_mutex_t *lm = leaf_enter(s, rel);
    pthread_mutex_lock(&s->mu);
    if (fstatat(s->root, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == dev &&
        st.st_ino == ino && unlinkat(s->root, rel, 0) == 0 && leaf_counted(s, rel))
        uncount(s, st.st_size);
    pthread_mutex_unlock(&s->mu);
    leaf_leave(lm);
}

/* ---- validation ----------------------------------------------------------------------------- */

static void head_free(obj_head *h)
{
    sh_free(h->km);
    sh_free(h->crcs);
    h->km = NULL;
    h->crcs = NULL;
}

/*
 * Validate a file from its header, key, metadata and trailer, never its body
 * (small files come in one read: the trailer is then already in the buffer).
 * DISK_OK (h filled), DISK_ERR_CORRUPT or DISK_ERR_IO.
 */
static int load_head(int fd, uint64_t fsize, obj_head *h, int want_crcs)
{
    unsigned char b[HEAD_READ], *t = NULL;
    size_t first = fsize < HEAD_READ ? (size_t)fsize : HEAD_READ;
    int rc = DISK_ERR_CORRUPT;
    ssize_t r;

    memset(h, 0, sizeof *h);
    h->file_size = fsize;
    if (fsize < HDR_SIZE + TRL_FIXED) return DISK_ERR_CORRUPT;
    if ((r = pread_all(fd, b, first, 0)) < 0) return DISK_ERR_IO;
    if ((size_t)r != first || memcmp(b, OBJ_MAGIC, 8) != 0 || get32(b + 8) != DISK_FORMAT_VERSION ||
        get32(b + 12) != 0 || get32(b + 36) != 0 || get32(b + 64) != 0)
        return DISK_ERR_CORRUPT;
    h->key_len = get32(b + 16);
    h->meta_len = get32(b + 20);
    h->body_size = get64(b + 24);
    h->chunk_size = get32(b + 32);
    h->stored_at = (int64_t)get64(b + 40);
    memcpy(h->md5, b + 48, 16);
    h->hdr_crc = get32(b + HDR_CRC_OFF);
    if (h->key_len == 0 || h->key_len > DISK_MAX_KEY || h->meta_len > DISK_MAX_META ||
        h->chunk_size < MIN_CHUNK || h->chunk_size > MAX_CHUNK || h->body_size > fsize)
        return DISK_ERR_CORRUPT;
    h->nchunks = (h->body_size + h->chunk_size - 1) / h->chunk_size;
    size_t km = (size_t)h->key_len + h->meta_len, tab = 4 * h->nchunks;
    if (h->nchunks > UINT32_MAX || HDR_SIZE + km + h->body_size + tab + TRL_FIXED != fsize)
        return DISK_ERR_CORRUPT;

    h->km = sh_malloc(km);
    size_t have = first - HDR_SIZE < km ? first - HDR_SIZE : km;
    memcpy(h->km, b + HDR_SIZE, have);
    if (have < km && (r = pread_all(fd, h->km + have, km - have, HDR_SIZE + have)) < 0) goto io;
    if (have < km && (size_t)r != km - have) goto out;
    uint32_t crc = (uint32_t)crc32_z(crc32_z(0, h->km, km), b, HDR_CRC_OFF);
    if (crc != h->hdr_crc) goto out;

    t = sh_malloc(tab + TRL_FIXED);
    if (fsize <= first) {
        memcpy(t, b + fsize - tab - TRL_FIXED, tab + TRL_FIXED);
    } else {
        if ((r = pread_all(fd, t, tab + TRL_FIXED, fsize - tab - TRL_FIXED)) < 0) goto io;
        if ((size_t)r != tab + TRL_FIXED) goto out;
    }
    if (memcmp(t + tab + 8, END_MAGIC, 8) != 0 || get32(t + tab) != h->nchunks ||
        get32(t + tab + 4) != (uint32_t)crc32_z(h->hdr_crc, t, tab + 4))
        goto out;
    if (want_crcs) {
        h->crcs = sh_malloc(tab ? tab : 1);
        for (uint64_t i = 0; i < h->nchunks; i++)
            h->crcs[i] = get32(t + 4 * i);
    }
    sh_free(t);
    return DISK_OK;
io:
    rc = DISK_ERR_IO;
out:
    sh_free(t);
    head_free(h);
    return rc;
}

static disk_info head_info(const obj_head *h)
{
    disk_info info = {.body_size = h->body_size,
                      .stored_at_ms = h->stored_at,
                      .chunk_size = h->chunk_size,
                      .meta = h->km + h->key_len,
                      .meta_len = h->meta_len,
                      .footprint = footprint(h->file_size)};
    memcpy(info.md5, h->md5, 16);
    return info;
}

/* ---- store ---------------------------------------------------------------------------------- */

static int mkdir_p(const char *path)
{
    char *p = sh_strdup(path);
    int r = 0;
    for (char *c = p + 1; *c && r == 0; c++) {
        if (*c != '/') continue;
        *c = '\0';
        r = mkdir(p, 0755) < 0 && errno != EEXIST ? -1 : 0;
        *c = '/';
    }
    if (r == 0) r = mkdir(p, 0755) < 0 && errno != EEXIST ? -1 : 0;
    sh_free(p);
    return r;
}

/* True when the directory holds nothing but what disk_open itself creates. */
static int dir_is_fresh(int root)
{
    int fd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), fresh = 1;
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    if (!d) {
        if (fd >= 0) close(fd);
        return 0;
    }
    while (fresh && (e = readdir(d)))
        fresh = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "LOCK") ||
                !strcmp(e->d_name, "VERSION.tmp");
    closedir(d);
    return fresh;
}

/* Accept our VERSION file (rewriting it for another format version: the scan
 * then drops the old objects by their header version), or a fresh directory;
 * refuse anything else, since the scan deletes files it does not know. */
static int check_version(int root, const char *dir, char *err, size_t errlen)
{
    char buf[64];
    int fd = openat(root, "VERSION", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = pread_all(fd, buf, sizeof buf - 1, 0);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        if (strncmp(buf, VERSION_PREFIX, strlen(VERSION_PREFIX)) != 0) {
            snprintf(err, errlen, "%s/VERSION is not a Shield disk cache version file", dir);
            return -1;
        }
        if (atoi(buf + strlen(VERSION_PREFIX)) == DISK_FORMAT_VERSION) return 0;
    } else if (errno != ENOENT) {
        snprintf(err, errlen, "%s/VERSION: %s", dir, strerror(errno));
        return -1;
    } else if (!dir_is_fresh(root)) {
        snprintf(err, errlen,
                 "%s is not empty and has no VERSION file: refusing to use it as a cache "
                 "directory (its files would be deleted)",
                 dir);
        return -1;
    }
    int n = snprintf(buf, sizeof buf, VERSION_PREFIX "%d\n", DISK_FORMAT_VERSION);
    if (replace_file(root, "VERSION", "VERSION.tmp", buf, (size_t)n) < 0) {
        snprintf(err, errlen, "%s/VERSION: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

disk_store *disk_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen)
{
    int root = -1, lock = -1;

    if (!dir || !*dir) {
        snprintf(err, errlen, "cache directory not set");
        return NULL;
    }
    if (mkdir_p(dir) < 0 || (root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return NULL;
    }
    /* Remember whether LOCK is ours: a refused foreign directory is left as found. */
    int created = 1;
    lock = openat(root, "LOCK", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (lock < 0 && errno == EEXIST) {
        created = 0;
        lock = openat(root, "LOCK", O_RDWR | O_CLOEXEC);
    }
    if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) < 0) {
        if (lock >= 0 && errno == EWOULDBLOCK)
            snprintf(err, errlen, "%s is in use by another cache store (LOCK held)", dir);
        else
            snprintf(err, errlen, "%s/LOCK: %s", dir, strerror(errno));
        goto fail;
    }
    if (check_version(root, dir, err, errlen) < 0) {
        if (created) unlinkat(root, "LOCK", 0);
        goto fail;
    }

    disk_store *s = sh_calloc(1, sizeof *s);
    s->root = root;
    s->lock_fd = lock;
    s->sync = 1;
    s->max_bytes = max_bytes;
    pthread_mutex_init(&s->mu, NULL);
    for (int i = 0; i < LEAF_LOCKS; i++)
        pthread_mutex_init(&s->leaf_mu[i], NULL);
    /* The nonce tells this store's temp files from those of a crashed
     * predecessor that had the same pid (pid 1 in a container). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(s->tmp_tag, sizeof s->tmp_tag, ".tmp.%ld.%08lx.", (long)getpid(),
             (unsigned long)((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20) & 0xffffffffUL);
    return s;
fail:
    if (lock >= 0) close(lock);
    close(root);
    return NULL;
}

void disk_close(disk_store *s)
{
    if (!s) return;
    close(s->root);
    close(s->lock_fd);
    pthread_mutex_destroy(&s->mu);
    for (int i = 0; i < LEAF_LOCKS; i++)
        pthread_mutex_destroy(&s->leaf_mu[i]);
    sh_free(s);
}

uint64_t disk_used(disk_store *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t v = s->used;
    pthread_mutex_unlock(&s->mu);
    return v;
}

uint64_t disk_entry_count(disk_store *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t v = s->count;
    pthread_mutex_unlock(&s->mu);
    return v;
}

uint64_t disk_footprint(size_t keylen, size_t metalen, uint64_t body_size)
{
    uint64_t nchunks = (body_size + DISK_CHUNK_SIZE - 1) / DISK_CHUNK_SIZE;
    return footprint(HDR_SIZE + (uint64_t)keylen + metalen + body_size + 4 * nchunks + TRL_FIXED);
}

uint64_t disk_max_bytes(const disk_store *s)
{
    return s->max_bytes;
}

void disk_set_fsync(disk_store *s, int on)
{
    s->sync = on;
}

/* ---- scan ----------------------------------------------------------------------------------- */

typedef struct {
    disk_store *s;
    disk_scan_cb cb;
    void *ud;
    unsigned delay_us; /* SHIELD_TEST_SCAN_DELAY_US (test hook) */
    size_t next;       /* atomic: next leaf number */
    pthread_mutex_t mu;
    disk_scan_stats st; /* merged from the workers under mu */
} scan_job;

typedef struct {
    ino_t ino;
    int kind;
    char *name;
} leaf_ent;

/* Directory, regular file or something else, without a stat when d_type says. */
static int entry_kind(int dfd, const struct dirent *e)
{
    struct stat st;
    if (e->d_type == DT_DIR) return 'd';
    if (e->d_type == DT_REG) return 'f';
    if (e->d_type != DT_UNKNOWN) return 'o';
    if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) return 'o';
    return S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : 'o';
}

static void drop(int dfd, const char *name, uint64_t *counter, disk_scan_stats *st)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        (*counter)++;
    else
        st->errors++;
}

/* Validate one "<32 hex>.obj" file and report it; unreadable (EIO) counts as
 * corrupt. The leaf lock is held: no rename or unlink of this name can come
 * between reading the file and the callback, so the engine never indexes a
 * file that has already been replaced. */
static void scan_object(scan_job *j, int dfd, const char *name, disk_scan_stats *st)
{
    struct stat sb;
    obj_head h;
    char hex[NAME_HEX + 1];
    int rc = DISK_ERR_CORRUPT, fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0) {
        st->errors++;
        return;
    }
    if (fstat(fd, &sb) == 0) rc = load_head(fd, (uint64_t)sb.st_size, &h, 0);
    close(fd);
    if (rc == DISK_OK) {
        key_paths(h.km, h.key_len, NULL, NULL, hex);
        if (memcmp(hex, name, NAME_HEX) != 0) { /* someone else's file under this name */
            head_free(&h);
            rc = DISK_ERR_CORRUPT;
        }
    }
    if (rc != DISK_OK) {
        drop(dfd, name, &st->dropped_corrupt, st);
        return;
    }
    disk_info info = head_info(&h);
    if (j->cb) j->cb(j->ud, h.km, h.key_len, &info);
    st->kept++;
    st->kept_bytes += info.footprint;
    pthread_mutex_lock(&j->s->mu);
    j->s->used += info.footprint;
    j->s->count++;
    pthread_mutex_unlock(&j->s->mu);
    __atomic_fetch_add(&j->s->scan_kept, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&j->s->scan_kept_bytes, info.footprint, __ATOMIC_RELAXED);
    head_free(&h);
    if (j->delay_us) usleep(j->delay_us);
}

static int by_ino(const void *a, const void *b)
{
    const leaf_ent *x = a, *y = b;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Scan leaf number `leaf` ("a/bc") under its lock, then mark it done. Files
 * are visited in inode order: hash order would make every open a random
 * inode-table read on a cold cache. A missing leaf is simply empty: every
 * leaf is visited, so one created by a writer meanwhile is never skipped. */
static void scan_leaf(scan_job *j, unsigned leaf, disk_scan_stats *st)
{
    disk_store *s = j->s;
    char rel[8];
    snprintf(rel, sizeof rel, "%x/%02x", leaf >> 8, leaf & 255);
    pthread_mutex_t *m = &s->leaf_mu[leaf % LEAF_LOCKS];
    pthread_mutex_lock(m);
    int dfd = openat(s->root, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    const char prefix[3] = {rel[0], rel[2], rel[3]};
    leaf_ent *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;

    if (!d) {
        if (dfd >= 0) close(dfd);
        if (dfd >= 0 || (errno != ENOENT && errno != ENOTDIR)) st->errors++;
        goto done;
    }
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) v = sh_realloc(v, (cap = cap ? 2 * cap : 64) * sizeof *v);
        v[n++] = (leaf_ent){e->d_ino, entry_kind(dfd, e), sh_strdup(e->d_name)};
    }
    if (n) qsort(v, n, sizeof *v, by_ino); /* v is NULL when empty */
    for (size_t i = 0; i < n; i++) {
        const char *nm = v[i].name;
        if (v[i].kind == 'd')
            st->errors++; /* not ours, and not a file: leave it */
        else if (strstr(nm, s->tmp_tag))
            ; /* a write of this process in progress */
        else if (strstr(nm, ".tmp."))
            drop(dfd, nm, &st->dropped_temp, st);
        else if (v[i].kind == 'f' && strlen(nm) == NAME_HEX + 4 && is_hex(nm, NAME_HEX) &&
                 !strcmp(nm + NAME_HEX, ".obj") && !memcmp(nm, prefix, 3))
            scan_object(j, dfd, nm, st);
        else
            drop(dfd, nm, &st->dropped_stray, st);
        sh_free(v[i].name);
    }
    sh_free(v);
    closedir(d);
done:
    __atomic_store_n(&s->leaf_done[leaf], 1, __ATOMIC_RELEASE);
    __atomic_fetch_add(&s->scan_leaves, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(m);
}

static void stats_add(disk_scan_stats *a, const disk_scan_stats *b)
{
    a->kept += b->kept;
    a->kept_bytes += b->kept_bytes;
    a->dropped_corrupt += b->dropped_corrupt;
    a->dropped_temp += b->dropped_temp;
    a->dropped_stray += b->dropped_stray;
    a->errors += b->errors;
}

static void *scan_worker(void *arg)
{
    scan_job *j = arg;
    disk_scan_stats st = {0};
    size_t i;
    while (!__atomic_load_n(&j->s->scan_stop, __ATOMIC_RELAXED) &&
           (i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < NLEAVES)
        scan_leaf(j, (unsigned)i, &st);
    pthread_mutex_lock(&j->mu);
    stats_add(&j->st, &st);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* Clean strays at level one ("a/<not a leaf>") on the calling thread: at most
 * 16 small directories. Writers never put files there. */
static int clean_level1(scan_job *j)
{
    int tfd = openat(j->s->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *top = tfd >= 0 ? fdopendir(tfd) : NULL;
    struct dirent *e, *e1;

    if (!top) {
        if (tfd >= 0) close(tfd);
        return -1;
    }
    while ((e = readdir(top))) {
        if (!is_hexn(e->d_name, 1) || entry_kind(tfd, e) != 'd') continue;
        int l1 = openat(tfd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        DIR *d1 = l1 >= 0 ? fdopendir(l1) : NULL;
        if (!d1) {
            if (l1 >= 0) close(l1);
            j->st.errors++;
            continue;
        }
        while ((e1 = readdir(d1))) {
            const char *n = e1->d_name;
            int kind = entry_kind(l1, e1);
            if (!strcmp(n, ".") || !strcmp(n, "..") || (kind == 'd' && is_hexn(n, 2))) continue;
            if (kind == 'd')
                j->st.errors++;
            else
                drop(l1, n, strstr(n, ".tmp.") ? &j->st.dropped_temp : &j->st.dropped_stray,
                     &j->st);
        }
        closedir(d1);
    }
    closedir(top);
    return 0;
}

int disk_scan(disk_store *s, unsigned threads, disk_scan_cb cb, void *ud, disk_scan_stats *stats)
{
    scan_job j = {.s = s, .cb = cb, .ud = ud};
    pthread_t tid[MAX_SCAN_THR];
    unsigned started = 0;
    const char *delay = getenv("SHIELD_TEST_SCAN_DELAY_US");

    if (delay) j.delay_us = (unsigned)strtoul(delay, NULL, 10);
    /* Nothing is counted until its leaf is scanned (see struct disk_store). */
    pthread_mutex_lock(&s->mu);
    s->used = 0;
    s->count = 0;
    pthread_mutex_unlock(&s->mu);
    for (unsigned i = 0; i < NLEAVES; i++)
        __atomic_store_n(&s->leaf_done[i], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->scan_leaves, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->scan_kept, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->scan_kept_bytes, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->scanning, 1, __ATOMIC_RELEASE);
    int rc = clean_level1(&j) < 0 ? DISK_ERR_IO : DISK_OK;
    if (rc == DISK_OK) {
        pthread_mutex_init(&j.mu, NULL);
        if (threads > MAX_SCAN_THR) threads = MAX_SCAN_THR;
        while (started + 1 < threads && pthread_create(&tid[started], NULL, scan_worker, &j) == 0)
            started++;
        scan_worker(&j); /* the calling thread works too; fewer threads if creation failed */
        for (unsigned i = 0; i < started; i++)
            pthread_join(tid[i], NULL);
        pthread_mutex_destroy(&j.mu);
    }
    /* Cancelled or unreadable: what is left unscanned stays uncounted. */
    __atomic_store_n(&s->scanning, 0, __ATOMIC_RELEASE);
    if (stats) *stats = j.st;
    return rc;
}

void disk_scan_cancel(disk_store *s)
{
    __atomic_store_n(&s->scan_stop, 1, __ATOMIC_RELAXED);
}

void disk_scan_progress(disk_store *s, disk_scan_state *out)
{
    out->running = __atomic_load_n(&s->scanning, __ATOMIC_ACQUIRE);
    out->leaves_done = __atomic_load_n(&s->scan_leaves, __ATOMIC_RELAXED);
    out->leaves = NLEAVES;
    out->objects = __atomic_load_n(&s->scan_kept, __ATOMIC_RELAXED);
    out->bytes = __atomic_load_n(&s->scan_kept_bytes, __ATOMIC_RELAXED);
}

int disk_scan_pending(disk_store *s, const void *key, size_t keylen)
{
    char hex[NAME_HEX + 1], dir[8];
    if (!__atomic_load_n(&s->scanning, __ATOMIC_ACQUIRE) || !key || !keylen) return 0;
    key_paths(key, keylen, dir, NULL, hex);
    return !__atomic_load_n(&s->leaf_done[leaf_of(dir)], __ATOMIC_ACQUIRE);
}

/* ---- writer --------------------------------------------------------------------------------- */

disk_writer *disk_writer_begin(disk_store *s, const void *key, size_t keylen, const void *meta,
                               size_t metalen)
{
    char hex[NAME_HEX + 1];
    unsigned char zero[HDR_SIZE] = {0};
    int made = 0, e;
    struct timespec ts;

    if (!s || !key || keylen == 0 || keylen > DISK_MAX_KEY || metalen > DISK_MAX_META ||
        (!meta && metalen)) {
        errno = EINVAL;
        return NULL;
    }
    disk_writer *w = sh_calloc(1, sizeof *w);
    w->s = s;
    key_paths(key, keylen, w->dir, w->obj, hex);
    for (int attempt = 0; attempt < 16; attempt++) {
        uint64_t seq = __atomic_fetch_add(&s->tmp_seq, 1, __ATOMIC_RELAXED);
        snprintf(w->tmp, sizeof w->tmp, "%s/%s%s%" PRIu64, w->dir, hex, s->tmp_tag, seq);
        w->fd = openat(s->root, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (w->fd >= 0) break;
        if (errno == ENOENT && !made) { /* fan-out directory not created yet */
            char l1[2] = {hex[0], 0};
            made = 1;
            if ((mkdirat(s->root, l1, 0755) < 0 && errno != EEXIST) ||
                (mkdirat(s->root, w->dir, 0755) < 0 && errno != EEXIST))
                break;
        } else if (errno != EEXIST) {
            break;
        }
    }
    /* A zeroed header (no magic) until commit; then the key and metadata. */
    if (w->fd < 0 || pwrite_all(w->fd, zero, HDR_SIZE, 0) < 0 ||
        pwrite_all(w->fd, key, keylen, HDR_SIZE) < 0 ||
        pwrite_all(w->fd, meta, metalen, HDR_SIZE + keylen) < 0)
        goto fail;
    w->key_len = (uint32_t)keylen;
    w->meta_len = (uint32_t)metalen;
    w->off = HDR_SIZE + keylen + metalen;
    /* Not crc32_z(crc, NULL, 0): zlib returns 0 for a NULL buffer, dropping crc. */
    w->km_crc = (uint32_t)crc32_z(0, key, keylen);
    if (metalen) w->km_crc = (uint32_t)crc32_z(w->km_crc, meta, metalen);
    w->md5 = EVP_MD_CTX_new();
    if (!w->md5 || !EVP_DigestInit_ex(w->md5, EVP_md5(), NULL)) abort();
    clock_gettime(CLOCK_REALTIME, &ts);
    w->stored_at = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return w;
fail:
    e = errno;
    if (w->fd >= 0) {
        unlinkat(s->root, w->tmp, 0);
        close(w->fd);
    }
    sh_free(w);
    errno = e;
    return NULL;
}

static void push_crc(disk_writer *w)
{
    if (w->ncrcs == w->cap) w->crcs = sh_realloc(w->crcs, (w->cap = w->cap ? w->cap * 2 : 16) * 4);
    w->crcs[w->ncrcs++] = w->crc;
    w->crc = 0;
    w->fill = 0;
}

int disk_writer_append(disk_writer *w, const void *data, size_t len)
{
    const unsigned char *p = data;

    if (!w->err && pwrite_all(w->fd, data, len, w->off) < 0) {
        /* Unlink now: on a full disk the space comes back before the commit. */
        w->err = errno ? errno : EIO;
        unlinkat(w->s->root, w->tmp, 0);
        w->unlinked = 1;
    }
    if (w->err) {
        errno = w->err;
        return -1;
    }
    EVP_DigestUpdate(w->md5, data, len);
    w->off += len;
    w->body += len;
    while (len) {
        size_t n = DISK_CHUNK_SIZE - w->fill < len ? DISK_CHUNK_SIZE - w->fill : len;
        w->crc = (uint32_t)crc32_z(w->crc, p, n);
        w->fill += (uint32_t)n;
        p += n;
        len -= n;
        if (w->fill == DISK_CHUNK_SIZE) push_crc(w);
    }
    return 0;
}

static void writer_free(disk_writer *w)
{
    int e = errno;
    if (w->fd >= 0) close(w->fd);
    if (!w->unlinked) unlinkat(w->s->root, w->tmp, 0);
    EVP_MD_CTX_free(w->md5);
    sh_free(w->crcs);
    sh_free(w);
    errno = e;
}

void disk_writer_abort(disk_writer *w)
{
    if (w) writer_free(w);
}

/* The cap rule of disk_writer_commit; s->mu held. */
static int over_cap(const disk_store *s, uint64_t fp)
{
    return fp > s->max_bytes || s->used > s->max_bytes;
}

int disk_writer_finish(disk_writer *w, int64_t expected_size, const unsigned char *expected_md5)
{
    disk_store *s = w->s;
    unsigned char md5[16], hdr[HDR_SIZE] = {0}, *trl = NULL;
    int rc = DISK_ERR_IO, full;

    if (w->err) {
        errno = w->err;
        goto out;
    }
    if (w->fill) push_crc(w);
    if (!EVP_DigestFinal_ex(w->md5, md5, NULL)) abort();
    if (expected_size >= 0 && (uint64_t)expected_size != w->body) {
        rc = DISK_ERR_LENGTH;
        goto out;
    }
    if (expected_md5 && memcmp(expected_md5, md5, 16) != 0) {
        rc = DISK_ERR_MD5;
        goto out;
    }
    size_t tab = 4 * w->ncrcs;
    w->fp = footprint(w->off + tab + TRL_FIXED);
    pthread_mutex_lock(&s->mu);
    full = over_cap(s, w->fp); /* early, before paying for the sync */
    pthread_mutex_unlock(&s->mu);
    if (full) {
        rc = DISK_ERR_FULL;
        goto out;
    }

    memcpy(hdr, OBJ_MAGIC, 8);
    put32(hdr + 8, DISK_FORMAT_VERSION);
    put32(hdr + 16, w->key_len);
    put32(hdr + 20, w->meta_len);
    put64(hdr + 24, w->body);
    put32(hdr + 32, DISK_CHUNK_SIZE);
    put64(hdr + 40, (uint64_t)w->stored_at);
    memcpy(hdr + 48, md5, 16);
    uint32_t hcrc = (uint32_t)crc32_z(w->km_crc, hdr, HDR_CRC_OFF);
    put32(hdr + HDR_CRC_OFF, hcrc);
    trl = sh_malloc(tab + TRL_FIXED);
    for (size_t i = 0; i < w->ncrcs; i++)
        put32(trl + 4 * i, w->crcs[i]);
    put32(trl + tab, (uint32_t)w->ncrcs);
    put32(trl + tab + 4, (uint32_t)crc32_z(hcrc, trl, tab + 4));
    memcpy(trl + tab + 8, END_MAGIC, 8);

    /* Trailer, then the header that makes the file valid; disk_commit_batch
     * makes them durable before any rename publishes them. */
    if (pwrite_all(w->fd, trl, tab + TRL_FIXED, w->off) < 0 ||
        pwrite_all(w->fd, hdr, HDR_SIZE, 0) < 0)
        goto out;
    sh_free(trl);
    return DISK_OK;
out:
    sh_free(trl);
    writer_free(w);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* fsync every distinct directory of the published writers. */
static int fsync_dirs(disk_store *s, disk_writer **ws, size_t n, const int *rcs)
{
    const char *dirs[BATCH_FSYNC_MAX];
    size_t nd = 0;
    for (size_t i = 0; i < n && nd < BATCH_FSYNC_MAX; i++)
        if (rcs[i] == DISK_OK) dirs[nd++] = ws[i]->dir;
    qsort(dirs, nd, sizeof *dirs, cmp_str);
    for (size_t i = 0; i < nd; i++)
        if ((i == 0 || strcmp(dirs[i], dirs[i - 1]) != 0) && fsync_dir(s->root, dirs[i]) < 0)
            return -1;
    return 0;
}

void disk_commit_batch(disk_store *s, disk_writer **ws, size_t n, int *rcs)
{
    struct stat *nst = sh_calloc(n ? n : 1, sizeof *nst);
    int synced = 1, published = 0;
    size_t i;

    /* Bytes first: a few files are cheapest synced one by one, more with one
     * syncfs() (one journal commit for all; it reports writeback errors of the
     * whole filesystem, so a failure fails the batch). */
    if (s->sync && n > BATCH_FSYNC_MAX) synced = syncfs(ws[0]->fd) == 0;
    for (i = 0; i < n; i++) {
        disk_writer *w = ws[i];
        rcs[i] = DISK_ERR_IO;
        if (!synced || (s->sync && n <= BATCH_FSYNC_MAX && fdatasync(w->fd) < 0) ||
            fstat(w->fd, &nst[i]) < 0)
            continue;
        int fd = w->fd;
        w->fd = -1;
        if (close(fd) == 0) rcs[i] = DISK_OK;
    }
    /* Then the renames, each with its accounting (under the leaf lock while a
     * scan runs: see struct disk_store). */
    for (i = 0; i < n; i++) {
        disk_writer *w = ws[i];
        struct stat old;
        if (rcs[i] != DISK_OK) continue;
        pthread_mutex_t *lm = leaf_enter(s, w->obj);
        pthread_mutex_lock(&s->mu);
        int counted = leaf_counted(s, w->obj);
        if (over_cap(s, w->fp)) {
            rcs[i] = DISK_ERR_FULL;
        } else {
            int had_old =
                fstatat(s->root, w->obj, &old, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(old.st_mode);
            if (renameat(s->root, w->tmp, s->root, w->obj) < 0) {
                rcs[i] = DISK_ERR_IO;
            } else {
                w->unlinked = 1;
                published = 1;
                if (counted) {
                    if (had_old) uncount(s, old.st_size);
                    s->used += w->fp;
                    s->count++;
                }
            }
        }
        pthread_mutex_unlock(&s->mu);
        leaf_leave(lm);
    }
    /* Without this the renames may not survive a power loss; if it fails,
     * take the objects back rather than report failure and leave them counted. */
    if (s->sync && published &&
        (n > BATCH_FSYNC_MAX ? syncfs(s->root) < 0 : fsync_dirs(s, ws, n, rcs) < 0)) {
        int e = errno;
        for (i = 0; i < n; i++) {
            if (rcs[i] != DISK_OK) continue;
            remove_if_same(s, ws[i]->obj, nst[i].st_dev, nst[i].st_ino);
            rcs[i] = DISK_ERR_IO;
        }
        errno = e;
    }
    for (i = 0; i < n; i++)
        writer_free(ws[i]);
    sh_free(nst);
}

int disk_writer_commit(disk_writer *w, int64_t expected_size, const unsigned char *expected_md5)
{
    disk_store *s = w->s;
    int rc = disk_writer_finish(w, expected_size, expected_md5);
    if (rc == DISK_OK) disk_commit_batch(s, &w, 1, &rc);
    return rc;
}

/* ---- reader --------------------------------------------------------------------------------- */

int disk_open_entry(disk_store *s, const void *key, size_t keylen, disk_entry **out)
{
    char hex[NAME_HEX + 1];
    struct stat st;
    int rc;

    *out = NULL;
    if (!key || keylen == 0 || keylen > DISK_MAX_KEY) return DISK_ERR_INVALID;
    disk_entry *e = sh_calloc(1, sizeof *e);
    e->s = s;
    key_paths(key, keylen, NULL, e->obj, hex);
    e->fd = openat(s->root, e->obj, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (e->fd < 0) {
        rc = errno == ENOENT ? DISK_ERR_NOTFOUND : DISK_ERR_IO;
        sh_free(e);
        return rc;
    }
    if (fstat(e->fd, &st) < 0) {
        disk_entry_close(e);
        return DISK_ERR_IO;
    }
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    rc = load_head(e->fd, (uint64_t)st.st_size, &e->h, 1);
    if (rc == DISK_ERR_CORRUPT) remove_if_same(s, e->obj, e->dev, e->ino);
    if (rc == DISK_OK && (e->h.key_len != keylen || memcmp(e->h.km, key, keylen) != 0))
        rc = DISK_ERR_NOTFOUND; /* another key with the same 128-bit hash */
    if (rc != DISK_OK) {
        disk_entry_close(e);
        return rc;
    }
    e->body_off = HDR_SIZE + (uint64_t)e->h.key_len + e->h.meta_len;
    e->info = head_info(&e->h);
    *out = e;
    return DISK_OK;
}

const disk_info *disk_entry_info(const disk_entry *e)
{
    return &e->info;
}

int disk_entry_fd(const disk_entry *e, uint64_t *body_off)
{
    if (body_off) *body_off = e->body_off;
    return e->fd;
}

void disk_entry_close(disk_entry *e)
{
    if (!e) return;
    if (e->fd >= 0) close(e->fd);
    head_free(&e->h);
    sh_free(e->scratch);
    EVP_MD_CTX_free(e->seq);
    sh_free(e);
}

static size_t chunk_len(const disk_entry *e, uint64_t c)
{
    uint64_t left = e->h.body_size - c * e->h.chunk_size;
    return left < e->h.chunk_size ? (size_t)left : e->h.chunk_size;
}

/* Read chunk c whole into dst (the scratch buffer when NULL) and check its CRC.
 * 0, or -1 with errno (EBADMSG after removing the file). */
static int read_chunk(disk_entry *e, uint64_t c, unsigned char *dst)
{
    size_t clen = chunk_len(e, c);
    if (!dst) {
        if (!e->scratch) e->scratch = sh_malloc(e->h.chunk_size);
        dst = e->scratch;
    }
    ssize_t r = pread_all(e->fd, dst, clen, e->body_off + c * e->h.chunk_size);
    if (r < 0) return -1;
    if ((size_t)r != clen || (uint32_t)crc32_z(0, dst, clen) != e->h.crcs[c]) {
        remove_if_same(e->s, e->obj, e->dev, e->ino);
        errno = EBADMSG;
        return -1;
    }
    return 0;
}

ssize_t disk_read_body(disk_entry *e, uint64_t off, void *buf, size_t len)
{
    unsigned char *out = buf;
    size_t done = 0;

    if (off >= e->h.body_size) return 0;
    if (len > e->h.body_size - off) len = (size_t)(e->h.body_size - off);
    if (len > SSIZE_MAX) len = SSIZE_MAX;
    while (done < len) {
        uint64_t pos = off + done, c = pos / e->h.chunk_size;
        size_t in = (size_t)(pos - c * e->h.chunk_size), clen = chunk_len(e, c), want = len - done;
        if (in == 0 && want >= clen) { /* whole chunk: straight into the caller's buffer */
            if (read_chunk(e, c, out + done) < 0) return -1;
            done += clen;
            continue;
        }
        if (want > clen - in) want = clen - in;
        if (read_chunk(e, c, NULL) < 0) return -1;
        memcpy(out + done, e->scratch + in, want);
        done += want;
    }
    return (ssize_t)done;
}

int disk_entry_verify(disk_entry *e)
{
    unsigned char md5[16];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = DISK_OK;

    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL)) abort();
    for (uint64_t c = 0; c < e->h.nchunks && rc == DISK_OK; c++) {
        if (read_chunk(e, c, NULL) < 0)
            rc = errno == EBADMSG ? DISK_ERR_CORRUPT : DISK_ERR_IO;
        else
            EVP_DigestUpdate(ctx, e->scratch, chunk_len(e, c));
    }
    if (rc == DISK_OK && (!EVP_DigestFinal_ex(ctx, md5, NULL) || memcmp(md5, e->h.md5, 16))) {
        remove_if_same(e->s, e->obj, e->dev, e->ino);
        rc = DISK_ERR_CORRUPT;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

int disk_entry_read_seq(disk_entry *e, void *buf, size_t len)
{
    if (!e->seq) {
        e->seq = EVP_MD_CTX_new();
        if (!e->seq || !EVP_DigestInit_ex(e->seq, EVP_md5(), NULL)) abort();
    }
    if (len > e->h.body_size - e->seq_off) return DISK_ERR_INVALID;
    ssize_t r = pread_all(e->fd, buf, len, e->body_off + e->seq_off);
    if (r < 0) return DISK_ERR_IO;
    EVP_DigestUpdate(e->seq, buf, (size_t)r);
    e->seq_off += (uint64_t)r;
    if ((size_t)r == len && e->seq_off < e->h.body_size) return DISK_OK;
    unsigned char md5[16];
    if ((size_t)r != len || !EVP_DigestFinal_ex(e->seq, md5, NULL) ||
        memcmp(md5, e->h.md5, 16) != 0) {
        remove_if_same(e->s, e->obj, e->dev, e->ino);
        return DISK_ERR_CORRUPT;
    }
    return DISK_OK;
}

/* ---- removal and rewrite -------------------------------------------------------------------- */

int disk_remove(disk_store *s, const void *key, size_t keylen)
{
    char obj[REL_MAX], hex[NAME_HEX + 1];
    struct stat st;
    int rc = DISK_OK;

    if (!key || keylen == 0 || keylen > DISK_MAX_KEY) return DISK_ERR_INVALID;
    key_paths(key, keylen, NULL, obj, hex);
    pthread_mutex_t *lm = leaf_enter(s, obj);
    pthread_mutex_lock(&s->mu);
    if (fstatat(s->root, obj, &st, AT_SYMLINK_NOFOLLOW) < 0 || unlinkat(s->root, obj, 0) < 0)
        rc = errno == ENOENT ? DISK_ERR_NOTFOUND : DISK_ERR_IO;
    else if (leaf_counted(s, obj))
        uncount(s, st.st_size);
    pthread_mutex_unlock(&s->mu);
    leaf_leave(lm);
    return rc;
}

int disk_rewrite_meta(disk_store *s, const void *key, size_t keylen, const void *meta,
                      size_t metalen)
{
    disk_entry *e;
    int rc = disk_open_entry(s, key, keylen, &e);
    if (rc != DISK_OK) return rc;
    disk_writer *w = disk_writer_begin(s, key, keylen, meta, metalen);
    if (!w) {
        rc = errno == EINVAL ? DISK_ERR_INVALID : DISK_ERR_IO;
        disk_entry_close(e);
        return rc;
    }
    for (uint64_t c = 0; c < e->h.nchunks && rc == DISK_OK; c++) {
        if (read_chunk(e, c, NULL) < 0)
            rc = errno == EBADMSG ? DISK_ERR_CORRUPT : DISK_ERR_IO;
        else if (disk_writer_append(w, e->scratch, chunk_len(e, c)) < 0)
            rc = DISK_ERR_IO;
    }
    if (rc == DISK_OK)
        rc = disk_writer_commit(w, (int64_t)e->h.body_size, e->h.md5);
    else
        disk_writer_abort(w);
    disk_entry_close(e);
    return rc;
}

/* ---- invalidation rules --------------------------------------------------------------------- */

/* "<crc> <time> <escaped pattern>\n" in a fresh buffer. */
static char *rule_line(const char *pattern, int64_t t, size_t *len)
{
    char *buf = sh_malloc(strlen(pattern) * 3 + 40), *body = buf + 9, *o;

    o = body + sprintf(body, "%" PRId64 " ", t);
    for (const unsigned char *p = (const unsigned char *)pattern; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '%')
            o += sprintf(o, "%%%02X", *p);
        else
            *o++ = (char)*p;
    }
    uint32_t crc = (uint32_t)crc32_z(0, (unsigned char *)body, (size_t)(o - body));
    snprintf(buf, 9, "%08x", (unsigned)crc);
    buf[8] = ' ';
    *o++ = '\n';
    *len = (size_t)(o - buf);
    return buf;
}

int disk_rules_append(disk_store *s, const char *pattern, int64_t time)
{
    size_t len;
    struct stat st;
    char last = '\n';
    int rc = DISK_ERR_IO;

    if (!pattern || strlen(pattern) > DISK_MAX_PATTERN) return DISK_ERR_INVALID;
    char *line = rule_line(pattern, time, &len), *w = line;
    /* s->mu makes this thread the only writer (the flock excludes other processes). */
    pthread_mutex_lock(&s->mu);
    int fd = openat(s->root, RULES_LOG, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || fstat(fd, &st) < 0) goto out;
    if (st.st_size > 0 && pread_all(fd, &last, 1, (uint64_t)st.st_size - 1) != 1) goto out;
    if (last != '\n') { /* after a torn line, start a new one */
        w = sh_malloc(len + 1);
        w[0] = '\n';
        memcpy(w + 1, line, len++);
    }
    if (pwrite_all(fd, w, len, (uint64_t)st.st_size) == 0 && fsync(fd) == 0 &&
        (st.st_size > 0 || fsync_dir(s->root, ".") == 0))
        rc = DISK_OK;
out:
    if (fd >= 0) close(fd);
    pthread_mutex_unlock(&s->mu);
    if (w != line) sh_free(w);
    sh_free(line);
    return rc;
}

static int unhex(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Parse and check one line (without its '\n'); decodes the pattern into pat. */
static int rule_parse(const char *l, size_t n, char *pat, int64_t *t)
{
    char crc[9], *end;
    if (n < 11 || l[8] != ' ' || !is_hex(l, 8)) return -1;
    memcpy(crc, l, 8);
    crc[8] = '\0';
    if (strtoul(crc, NULL, 16) != crc32_z(0, (const unsigned char *)l + 9, n - 9)) return -1;
    errno = 0;
    *t = strtoll(l + 9, &end, 10);
    if (errno || end == l + 9 || *end != ' ') return -1;
    for (const char *p = end + 1, *e = l + n; p < e;) {
        if (*p != '%') {
            *pat++ = *p++;
            continue;
        }
        if (e - p < 3 || unhex(p[1]) < 0 || unhex(p[2]) < 0) return -1;
        *pat = (char)(unhex(p[1]) << 4 | unhex(p[2]));
        if (!*pat++) return -1;
        p += 3;
    }
    *pat = '\0';
    return 0;
}

int disk_rules_load(disk_store *s, disk_rule_cb cb, void *ud, size_t *bad_lines)
{
    struct stat st;
    size_t bad = 0;
    ssize_t r;
    char *buf, *pat;

    if (bad_lines) *bad_lines = 0;
    int fd = openat(s->root, RULES_LOG, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? DISK_OK : DISK_ERR_IO;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return DISK_ERR_IO;
    }
    buf = sh_malloc((size_t)st.st_size + 1);
    pat = sh_malloc((size_t)st.st_size + 1);
    r = pread_all(fd, buf, (size_t)st.st_size, 0);
    close(fd);
    for (char *l = buf, *end = buf + (r > 0 ? r : 0); l < end;) {
        char *nl = memchr(l, '\n', (size_t)(end - l));
        int64_t t;
        if (!nl) { /* torn by a crash mid-append */
            bad++;
            break;
        }
        if (nl > l && rule_parse(l, (size_t)(nl - l), pat, &t) == 0)
            cb(ud, pat, t);
        else if (nl > l)
            bad++;
        l = nl + 1;
    }
    sh_free(buf);
    sh_free(pat);
    if (bad_lines) *bad_lines = bad;
    return r < 0 ? DISK_ERR_IO : DISK_OK;
}

int disk_rules_rewrite(disk_store *s, const char *const *patterns, const int64_t *times, size_t n)
{
    size_t len = 0, cap = 256;
    char *all = sh_malloc(cap);

    for (size_t i = 0; i < n; i++) {
        size_t l;
        if (!patterns[i] || strlen(patterns[i]) > DISK_MAX_PATTERN) {
            sh_free(all);
            return DISK_ERR_INVALID;
        }
        char *line = rule_line(patterns[i], times[i], &l);
        while (len + l > cap)
            all = sh_realloc(all, cap *= 2);
        memcpy(all + len, line, l);
        len += l;
        sh_free(line);
    }
    pthread_mutex_lock(&s->mu);
    int r = replace_file(s->root, RULES_LOG, RULES_LOG ".tmp", all, len);
    pthread_mutex_unlock(&s->mu);
    sh_free(all);
    return r < 0 ? DISK_ERR_IO : DISK_OK;
}
