/*
 * POST /prefetch: cache warming. The fetches go through Shield's own first
 * plain listener rather than straight into the cache engine, so a warmed
 * object is exactly what a viewer would have cached: same behavior, same
 * origin request shaping, same TTL rules, and concurrent viewers collapse onto
 * the prefetch's fill. The thread is the admin's, never a worker's: a blocking
 * client here cannot stall the viewer path.
 */
#include "shield/admin.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "shield/alloc.h"
#include "shield/log.h"
#include "shield/origin.h"

#define IN_FLIGHT 4
/* A warmed e-book may be large and the origin slow; a hung fetch still ends. */
#define FETCH_TIMEOUT_MS (10L * 60 * 1000)

typedef struct job {
    char id[SH_PREFETCH_ID_LEN];
    char create_time[32];
    char **paths;
    size_t n;
    char *host_hdr; /* "Host: ..." or NULL */
    const char *base;
    size_t done, failed; /* atomics: the job thread writes, the admin thread reads */
    int running, abort;
    pthread_t thread;
    pthread_mutex_t lock; /* errors */
    size_t nerrors;
    struct {
        char path[256];
        int status;
    } errors[SH_PREFETCH_MAX_ERRORS];
} job;

struct sh_prefetch {
    char base[80]; /* "http://127.0.0.1:8080" */
    job *cur;      /* touched by the admin thread only */
};

void sh_admin_new_id(char prefix, char out[SH_PREFETCH_ID_LEN])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char r[13];
    if (RAND_bytes(r, sizeof r) != 1) {
        /* Ids only need to be distinct, not secret. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long x =
            (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 20);
        for (size_t i = 0; i < sizeof r; i++, x = x * 6364136223846793005ULL + 1)
            r[i] = (unsigned char)(x >> 33);
    }
    out[0] = prefix;
    for (size_t i = 0; i < sizeof r; i++)
        out[1 + i] = alphabet[r[i] % 36];
    out[1 + sizeof r] = '\0';
}

void sh_admin_iso_time(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ts.tv_nsec / 1000000) % 1000u);
}

sh_prefetch *sh_prefetch_new(const sh_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const sh_listen_conf *l = &cfg->listen[i];
        char host[INET6_ADDRSTRLEN];
        unsigned port;
        if (l->tls) continue;
        if (l->addr.ss_family == AF_INET) {
            struct sockaddr_in sin = *(const struct sockaddr_in *)&l->addr;
            /* A wildcard listener is reached on loopback. */
            if (sin.sin_addr.s_addr == htonl(INADDR_ANY))
                sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            inet_ntop(AF_INET, &sin.sin_addr, host, sizeof host);
            port = ntohs(sin.sin_port);
        } else if (l->addr.ss_family == AF_INET6) {
            struct sockaddr_in6 sin6 = *(const struct sockaddr_in6 *)&l->addr;
            if (IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr)) sin6.sin6_addr = in6addr_loopback;
            inet_ntop(AF_INET6, &sin6.sin6_addr, host, sizeof host);
            port = ntohs(sin6.sin6_port);
        } else {
            continue;
        }
        sh_prefetch *p = sh_calloc(1, sizeof *p);
        snprintf(p->base, sizeof p->base,
                 l->addr.ss_family == AF_INET6 ? "http://[%s]:%u" : "http://%s:%u", host, port);
        return p;
    }
    snprintf(err, errlen, "no plain (non-TLS) listener to prefetch through");
    return NULL;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * nmemb;
}

static CURL *new_easy(job *j, size_t i, struct curl_slist *hdrs, char *url, size_t urlcap)
{
    CURL *e = curl_easy_init();
    if (!e) return NULL;
    snprintf(url, urlcap, "%s%s", j->base, j->paths[i]);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)i);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* The environment's http_proxy must not send warming elsewhere. */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "shield-prefetch/" SHIELD_VERSION);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, FETCH_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    /* Paths are sent as given (already percent-encoded by the operator). */
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    if (hdrs) curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    return e;
}

static void record(job *j, size_t i, long status, CURLcode rc)
{
    int ok = rc == CURLE_OK && status >= 200 && status < 400;
    if (!ok) {
        pthread_mutex_lock(&j->lock);
        if (j->nerrors < SH_PREFETCH_MAX_ERRORS) {
            snprintf(j->errors[j->nerrors].path, sizeof j->errors[0].path, "%s", j->paths[i]);
            j->errors[j->nerrors].status = rc == CURLE_OK ? (int)status : 0;
            j->nerrors++;
        }
        pthread_mutex_unlock(&j->lock);
        __atomic_add_fetch(&j->failed, 1, __ATOMIC_RELAXED);
        sh_log(SH_LOG_DEBUG, "prefetch %s: %s: %s", j->id, j->paths[i],
               rc == CURLE_OK ? "HTTP error" : curl_easy_strerror(rc));
    }
    __atomic_add_fetch(&j->done, 1, __ATOMIC_RELEASE);
}

static void *job_main(void *arg)
{
    job *j = arg;
    struct curl_slist *hdrs = j->host_hdr ? curl_slist_append(NULL, j->host_hdr) : NULL;
    CURLM *m = curl_multi_init();
    CURL *inflight[IN_FLIGHT] = {NULL};
    size_t next = 0, active = 0;
    char url[4200];

    if (!m || (j->host_hdr && !hdrs)) {
        sh_log(SH_LOG_ERROR, "prefetch %s: cannot set up the HTTP client", j->id);
        while (next < j->n)
            record(j, next++, 0, CURLE_OUT_OF_MEMORY);
    }
    while (!__atomic_load_n(&j->abort, __ATOMIC_RELAXED) && (next < j->n || active)) {
        while (active < IN_FLIGHT && next < j->n) {
            CURL *e = new_easy(j, next, hdrs, url, sizeof url);
            if (!e || curl_multi_add_handle(m, e) != CURLM_OK) {
                if (e) curl_easy_cleanup(e);
                record(j, next++, 0, CURLE_OUT_OF_MEMORY);
                continue;
            }
            for (size_t k = 0; k < IN_FLIGHT; k++)
                if (!inflight[k]) {
                    inflight[k] = e;
                    break;
                }
            next++;
            active++;
        }
        int still;
        curl_multi_perform(m, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *e = msg->easy_handle;
            CURLcode rc = msg->data.result;
            void *priv = NULL;
            long status = 0;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            record(j, (size_t)priv, status, rc);
            curl_multi_remove_handle(m, e);
            curl_easy_cleanup(e);
            for (size_t k = 0; k < IN_FLIGHT; k++)
                if (inflight[k] == e) inflight[k] = NULL;
            active--;
        }
        /* A short wait keeps an abort (shutdown) prompt without a wakeup pipe. */
        if (active) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (size_t k = 0; k < IN_FLIGHT; k++) /* aborted: what is still in flight */
        if (inflight[k]) {
            curl_multi_remove_handle(m, inflight[k]);
            curl_easy_cleanup(inflight[k]);
        }
    if (m) curl_multi_cleanup(m);
    curl_slist_free_all(hdrs);
    sh_log(SH_LOG_INFO, "prefetch %s: %zu of %zu fetched, %zu failed%s", j->id,
           __atomic_load_n(&j->done, __ATOMIC_RELAXED), j->n,
           __atomic_load_n(&j->failed, __ATOMIC_RELAXED),
           __atomic_load_n(&j->abort, __ATOMIC_RELAXED) ? " (aborted)" : "");
    __atomic_store_n(&j->running, 0, __ATOMIC_RELEASE);
    return NULL;
}

static void job_free(job *j)
{
    if (!j) return;
    __atomic_store_n(&j->abort, 1, __ATOMIC_RELAXED);
    pthread_join(j->thread, NULL);
    pthread_mutex_destroy(&j->lock);
    for (size_t i = 0; i < j->n; i++)
        sh_free(j->paths[i]);
    sh_free(j->paths);
    sh_free(j->host_hdr);
    sh_free(j);
}

static void free_paths(char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sh_free(paths[i]);
    sh_free(paths);
}

int sh_prefetch_start(sh_prefetch *p, char **paths, size_t n, const char *host,
                      char id[SH_PREFETCH_ID_LEN])
{
    if (p->cur && __atomic_load_n(&p->cur->running, __ATOMIC_ACQUIRE)) {
        free_paths(paths, n);
        return -1;
    }
    job_free(p->cur);
    p->cur = NULL;
    origin_global_init();
    job *j = sh_calloc(1, sizeof *j);
    sh_admin_new_id('P', j->id);
    sh_admin_iso_time(j->create_time);
    j->paths = paths;
    j->n = n;
    j->base = p->base;
    if (host && *host) {
        size_t hl = strlen(host) + sizeof "Host: ";
        j->host_hdr = sh_malloc(hl);
        snprintf(j->host_hdr, hl, "Host: %s", host);
    }
    pthread_mutex_init(&j->lock, NULL);
    j->running = 1;
    if (pthread_create(&j->thread, NULL, job_main, j) != 0) {
        sh_log(SH_LOG_ERROR, "prefetch: cannot start a thread");
        pthread_mutex_destroy(&j->lock);
        free_paths(j->paths, j->n);
        sh_free(j->host_hdr);
        sh_free(j);
        return -2;
    }
    p->cur = j;
    memcpy(id, j->id, SH_PREFETCH_ID_LEN);
    sh_log(SH_LOG_INFO, "prefetch %s: %zu path(s) through %s", j->id, n, p->base);
    return 0;
}

int sh_prefetch_get(sh_prefetch *p, sh_prefetch_progress *out)
{
    job *j = p ? p->cur : NULL;
    memset(out, 0, sizeof *out);
    if (!j) return -1;
    memcpy(out->id, j->id, sizeof out->id);
    memcpy(out->create_time, j->create_time, sizeof out->create_time);
    out->total = j->n;
    /* running before done: a job seen finished has its final counts. */
    out->running = __atomic_load_n(&j->running, __ATOMIC_ACQUIRE);
    out->done = __atomic_load_n(&j->done, __ATOMIC_ACQUIRE);
    out->failed = __atomic_load_n(&j->failed, __ATOMIC_RELAXED);
    pthread_mutex_lock(&j->lock);
    out->nerrors = j->nerrors;
    memcpy(out->errors, j->errors, sizeof out->errors);
    pthread_mutex_unlock(&j->lock);
    return 0;
}

void sh_prefetch_free(sh_prefetch *p)
{
    if (!p) return;
    job_free(p->cur);
    sh_free(p);
}
