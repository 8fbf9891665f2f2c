/*
 * The access log writer: per-worker SPSC rings, one logger thread, hourly
 * files, gzip on rotation, retention, reopen. See shield/accesslog.h.
 *
 * Why a plain file for the open hour rather than gzip members flushed per
 * batch: a gzip member cut by kill -9 leaves a file whose last member is
 * corrupt, and zcat/GoAccess then report an error or drop the tail; a plain
 * file written one whole line per write(2) can at worst end in part of one
 * line, which the next start-up cuts off before gzipping it. The .gz is
 * produced by writing "<name>.gz.tmp" and renaming it, so no reader ever sees
 * half of it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "shield/accesslog.h"
#include "shield/alloc.h"
#include "shield/log.h"
#include "shield/logring.h"

/* A worker's ring (shield/logring.h) on the logger's list. */
struct sh_alog_ring {
    sh_logring *ring;
    struct sh_alog_ring *next; /* lg.rings, under lg.mu */
};

#define RING_MAX_BYTES (16u << 20)
#define TICK_MS        50

static struct {
    pthread_mutex_t mu; /* rings list + the writer state below */
    pthread_cond_t cv;
    pthread_t thread;
    int running, stop;
    sh_alog_ring *rings;
    /* configuration, copied at start */
    char *dir, *dist;
    uint64_t retention_days;
    size_t ring_size;
    /* the open file */
    int fd;
    int64_t hour;    /* UTC hour (epoch seconds / 3600) of the open file */
    char path[4096]; /* its plain (in-progress) name */
    dev_t dev;
    ino_t ino;
    int64_t last_retention; /* hour of the last retention sweep */
} lg = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .fd = -1};

static _Atomic uint64_t dropped;
static atomic_int reopen_asked;
static int64_t clock_offset_us;
static pthread_once_t clock_once = PTHREAD_ONCE_INIT;

const char sh_accesslog_fields[] =
    "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status "
    "cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id "
    "x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher "
    "x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port "
    "time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len "
    "sc-range-start sc-range-end";

/* ---- clock and escaping ------------------------------------------------------------------- */

static void clock_init(void)
{
    const char *s = getenv("SHIELD_TEST_CLOCK_OFFSET");
    if (s && *s) clock_offset_us = (int64_t)(strtod(s, NULL) * 1e6);
}

int64_t sh_accesslog_now_us(void)
{
    pthread_once(&clock_once, clock_init);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + clock_offset_us;
}

static int must_escape(unsigned char c)
{
    if (c <= 32 || c >= 127) return 1;
    return strchr("<>\"#%{}|\\^~[]`'", c) != NULL && c != 0;
}

size_t sh_accesslog_escape(char *out, size_t cap, const char *in, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    if (cap == 0) return 0;
    if (!in || len == 0) {
        if (cap >= 2) out[n++] = '-';
        out[n] = '\0';
        return n;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (must_escape(c)) {
            if (n + 3 >= cap) break;
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        } else {
            if (n + 1 >= cap) break;
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

/* ---- rings -------------------------------------------------------------------------------- */

int sh_accesslog_enabled(void)
{
    return lg.running;
}

sh_alog_ring *sh_accesslog_ring_new(void)
{
    if (!lg.running) return NULL;
    sh_alog_ring *r = sh_calloc(1, sizeof(*r));
    /* Pending bytes are bounded too, so a flood of 20 KB lines cannot make
     * ring_size * 20 KB of memory. */
    r->ring = sh_logring_new(lg.ring_size, RING_MAX_BYTES);
    pthread_mutex_lock(&lg.mu);
    r->next = lg.rings;
    lg.rings = r;
    pthread_mutex_unlock(&lg.mu);
    return r;
}

int sh_accesslog_push(sh_alog_ring *r, int64_t ts_us, const char *line, size_t len)
{
    if (sh_logring_push(r->ring, ts_us, line, len) == 0) return 0;
    atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
    return -1;
}

uint64_t sh_accesslog_dropped(void)
{
    return atomic_load_explicit(&dropped, memory_order_relaxed);
}

void sh_accesslog_reopen(void)
{
    atomic_store(&reopen_asked, 1);
}

/* ---- files -------------------------------------------------------------------------------- */

static void hour_name(char *out, size_t cap, int64_t hour)
{
    time_t t = (time_t)(hour * 3600);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%d-%H", &tm);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* gzip plain → plain.gz (via .gz.tmp + rename), then remove plain. */
static int gzip_file(const char *plain)
{
    char tmp[4200], gz[4200];
    snprintf(gz, sizeof gz, "%s.gz", plain);
    snprintf(tmp, sizeof tmp, "%s.gz.tmp", plain);
    int in = open(plain, O_RDONLY | O_CLOEXEC);
    if (in < 0) return -1;
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    gzFile z = out >= 0 ? gzdopen(out, "wb6") : NULL;
    if (!z) {
        if (out >= 0) close(out);
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t n;
    int ok = 1;
    while ((n = read(in, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || gzwrite(z, buf, (unsigned)n) != (int)n) {
            ok = 0;
            break;
        }
    }
    close(in);
    /* gzclose closes out; the fsync before it is what makes the rename safe. */
    if (gzflush(z, Z_FINISH) != Z_OK) ok = 0;
    if (ok && fsync(out) != 0) ok = 0;
    if (gzclose(z) != Z_OK) ok = 0;
    if (!ok || rename(tmp, gz) != 0) {
        sh_log(SH_LOG_ERROR, "access log: cannot gzip %s: %s", plain, strerror(errno));
        unlink(tmp);
        return -1;
    }
    unlink(plain);
    return 0;
}

/* Close the open file; gzip it unless someone moved it away (logrotate-style
 * reopen: the mover owns it then). */
static void close_current(void)
{
    if (lg.fd < 0) return;
    struct stat st;
    int ours = stat(lg.path, &st) == 0 && st.st_dev == lg.dev && st.st_ino == lg.ino;
    close(lg.fd);
    lg.fd = -1;
    if (ours) gzip_file(lg.path);
}

static int open_hour(int64_t hour)
{
    char h[32];
    unsigned char rnd[4] = {0};
    hour_name(h, sizeof h, hour);
    for (int attempt = 0; attempt < 8; attempt++) {
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
            uint32_t x = (uint32_t)getpid() ^ (uint32_t)sh_accesslog_now_us() ^ (uint32_t)attempt;
            memcpy(rnd, &x, sizeof rnd);
        }
        snprintf(lg.path, sizeof lg.path, "%s/%s.%s.%02x%02x%02x%02x", lg.dir, lg.dist, h, rnd[0],
                 rnd[1], rnd[2], rnd[3]);
        int fd = open(lg.path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) break;
        char head[1024];
        int n = snprintf(head, sizeof head, "#Version: 1.0\n#Fields: %s\n", sh_accesslog_fields);
        struct stat st;
        if (write_all(fd, head, (size_t)n) != 0 || fstat(fd, &st) != 0) {
            close(fd);
            unlink(lg.path);
            break;
        }
        lg.fd = fd;
        lg.hour = hour;
        lg.dev = st.st_dev;
        lg.ino = st.st_ino;
        return 0;
    }
    sh_log(SH_LOG_ERROR, "access log: cannot create a file in %s: %s", lg.dir, strerror(errno));
    return -1;
}

/* A killed process can leave part of a line at the end of its file: a write(2)
 * of more than a page stops between pages when SIGKILL arrives, so no writer
 * can promise whole lines at the instant of a kill -9 and the promise is kept
 * here instead, before the file is gzipped. Only the tail is read, backwards,
 * so an hour of gigabytes costs one or two reads. */
static void trim_torn_tail(const char *path, const char *name)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        close(fd);
        return;
    }
    char buf[8192];
    off_t end = st.st_size, keep = 0; /* no newline at all: nothing is whole */
    while (end > 0) {
        size_t n = end > (off_t)sizeof buf ? sizeof buf : (size_t)end;
        off_t at = end - (off_t)n;
        ssize_t r = pread(fd, buf, n, at);
        if (r < 0 && errno == EINTR) continue;
        if (r != (ssize_t)n) {
            /* Unsure where the last line ends: gzip it as it is rather than cut a whole one. */
            sh_log(SH_LOG_ERROR, "access log: cannot read %s: %s", name,
                   r < 0 ? strerror(errno) : "short read");
            close(fd);
            return;
        }
        const char *nl = memrchr(buf, '\n', n);
        if (nl) {
            keep = at + (nl - buf) + 1;
            break;
        }
        end = at;
    }
    if (keep < st.st_size) {
        if (ftruncate(fd, keep) != 0)
            sh_log(SH_LOG_ERROR, "access log: cannot cut the torn last line of %s: %s", name,
                   strerror(errno));
        else
            sh_log(SH_LOG_WARN,
                   "access log: %s ended in a torn line (killed during a write): %lld bytes "
                   "dropped",
                   name, (long long)(st.st_size - keep));
    }
    close(fd);
}

/* Parse "<dist>.YYYY-MM-DD-HH.<unique>[.gz]" → hour; -1 if the name is not ours. */
static int64_t name_hour(const char *name, int *is_gz)
{
    size_t dl = strlen(lg.dist);
    if (strncmp(name, lg.dist, dl) != 0 || name[dl] != '.') return -1;
    const char *p = name + dl + 1;
    struct tm tm = {0};
    int y, mo, d, h, used = 0;
    if (sscanf(p, "%4d-%2d-%2d-%2d%n", &y, &mo, &d, &h, &used) != 4 || used != 13 || p[13] != '.')
        return -1;
    const char *u = p + 14;
    size_t ul = strcspn(u, ".");
    if (ul == 0) return -1;
    if (strcmp(u + ul, ".gz") == 0)
        *is_gz = 1;
    else if (u[ul] == '\0')
        *is_gz = 0;
    else
        return -1; /* .gz.tmp and anything else */
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    return (int64_t)timegm(&tm) / 3600;
}

/* Start-up: cut a torn last line off and gzip what a killed process left (a
 * .gz is left alone: tmp + rename make it whole); always: delete expired files. */
static void sweep(int leftovers, int64_t now_hour)
{
    DIR *d = opendir(lg.dir);
    if (!d) return;
    struct dirent *e;
    char p[4200];
    while ((e = readdir(d))) {
        int gz = 0;
        int64_t h = name_hour(e->d_name, &gz);
        if (h < 0) continue;
        snprintf(p, sizeof p, "%s/%s", lg.dir, e->d_name);
        if (lg.retention_days && h + 1 + (int64_t)lg.retention_days * 24 <= now_hour) {
            if (unlink(p) == 0) sh_log(SH_LOG_INFO, "access log: %s expired, deleted", e->d_name);
            continue;
        }
        if (leftovers && !gz) {
            trim_torn_tail(p, e->d_name);
            gzip_file(p);
        }
    }
    closedir(d);
    lg.last_retention = now_hour;
}

static void write_rec(const sh_logrec *rec, void *arg)
{
    (void)arg;
    int64_t hour = rec->ts_us / 3600000000LL;
    /* Rings are drained one after another, so a line of the previous hour can
     * come after one of the new hour: it goes into the newer file rather than
     * reopening the old one. */
    if (lg.fd >= 0 && hour > lg.hour) close_current();
    if (lg.fd < 0 && open_hour(hour > lg.hour ? hour : lg.hour) != 0) {
        atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
        return;
    }
    if (write_all(lg.fd, rec->data, rec->len) != 0) {
        atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
        static int64_t last_warn;
        if (rec->ts_us - last_warn > 60000000LL) {
            last_warn = rec->ts_us;
            sh_log(SH_LOG_ERROR, "access log: write to %s failed: %s", lg.path, strerror(errno));
        }
    }
}

static void drain_ring(sh_alog_ring *r)
{
    sh_logring_drain(r->ring, write_rec, NULL);
}

/* One round of the logger, under lg.mu. */
static void logger_round(void)
{
    for (sh_alog_ring *r = lg.rings; r; r = r->next)
        drain_ring(r);
    int64_t now_hour = sh_accesslog_now_us() / 3600000000LL;
    if (atomic_exchange(&reopen_asked, 0)) {
        close_current();
        sh_log(SH_LOG_INFO, "access log: reopened");
    }
    if (lg.fd >= 0 && now_hour > lg.hour) close_current(); /* the hour is over */
    if (now_hour != lg.last_retention) sweep(0, now_hour);
}

void sh_accesslog_ring_free(sh_alog_ring *r)
{
    if (!r) return;
    pthread_mutex_lock(&lg.mu);
    drain_ring(r);
    for (sh_alog_ring **pp = &lg.rings; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&lg.mu);
    sh_logring_free(r->ring);
    sh_free(r);
}

static void *logger_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lg.mu);
    while (!lg.stop) {
        logger_round();
        sh_logring_wait(&lg.cv, &lg.mu, TICK_MS);
    }
    logger_round();
    close_current();
    pthread_mutex_unlock(&lg.mu);
    return NULL;
}

int sh_accesslog_start(const sh_config *cfg, char *err, size_t errlen)
{
    if (lg.running || !cfg->log.access_dir || !*cfg->log.access_dir) return 0;
    struct stat st;
    if (stat(cfg->log.access_dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
        access(cfg->log.access_dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "log.access.dir %s: not a writable directory", cfg->log.access_dir);
        return -1;
    }
    lg.dir = sh_strdup(cfg->log.access_dir);
    lg.dist = sh_strdup(cfg->log.distribution_id);
    lg.retention_days = cfg->log.retention_days;
    lg.ring_size = cfg->log.ring_size;
    lg.fd = -1;
    lg.hour = 0;
    lg.stop = 0;
    lg.rings = NULL;
    atomic_store(&reopen_asked, 0);
    sweep(1, sh_accesslog_now_us() / 3600000000LL);
    if (pthread_create(&lg.thread, NULL, logger_main, NULL) != 0) {
        snprintf(err, errlen, "access log: cannot start the logger thread");
        sh_free(lg.dir);
        sh_free(lg.dist);
        return -1;
    }
    lg.running = 1;
    return 0;
}

void sh_accesslog_stop(void)
{
    if (!lg.running) return;
    pthread_mutex_lock(&lg.mu);
    lg.stop = 1;
    pthread_cond_signal(&lg.cv);
    pthread_mutex_unlock(&lg.mu);
    pthread_join(lg.thread, NULL);
    lg.running = 0;
    uint64_t d = sh_accesslog_dropped();
    if (d) sh_log(SH_LOG_WARN, "access log: %llu lines dropped (ring full)", (unsigned long long)d);
    sh_free(lg.dir);
    sh_free(lg.dist);
    lg.dir = lg.dist = NULL;
}
