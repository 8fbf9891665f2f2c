/*
 * shield: process entry. Parses the command line and config, binds the
 * listening sockets (one SO_REUSEPORT socket per worker and address, so the
 * kernel spreads connections without a shared accept lock), loads origin
 * credentials, starts the workers and then waits for signals with sigwait():
 * signal handling stays on one ordinary thread and no handler runs
 * asynchronously.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "shield/admin.h"
#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/accesslog.h"
#include "shield/realtime_log.h"
#include "shield/config.h"
#include "shield/credentials.h"
#include "shield/log.h"
#include "shield/snapshot.h"
#include "shield/tls.h"
#include "shield/module.h"
#include "shield/worker.h"

#define DEFAULT_CONF "conf/shield.conf"

static void usage(FILE *f)
{
    fprintf(f, "usage: shield [-c FILE] [-t] [-v]\n"
               "  -c FILE  configuration file (default " DEFAULT_CONF ")\n"
               "  -t       test the configuration and exit\n"
               "  -v       print the version and exit\n");
}

static int bind_listener(const sh_listen_conf *l, char *err, size_t errlen)
{
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s: socket: %s", l->address, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (l->addr.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0 || listen(fd, 4096) < 0) {
        snprintf(err, errlen, "%s: %s", l->address, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * systemd's readiness protocol (Type=notify) without libsystemd: one datagram
 * to $NOTIFY_SOCKET. Silently nothing when not run by systemd.
 */
static void sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sa.sun_path)) return;
    size_t n = strlen(path);
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@') sa.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    close(fd);
}

/*
 * SIGHUP: load the file again; if it is valid and compatible, build a new
 * snapshot (credentials), re-read certificates and module files against it
 * and hand it to every worker. New requests use it; requests, fills and
 * origin fetches in flight finish on the one they started with. Anything
 * wrong leaves the running configuration untouched, with the reason
 * (file:line for config errors) in the error log.
 */
static void reload(const char *path, sh_worker **workers, size_t nw)
{
    char *errs = NULL, err[512], why[512];
    size_t errlen = 0;
    sd_notify("RELOADING=1");
    FILE *e = open_memstream(&errs, &errlen);
    sh_config *next = e ? sh_config_load(path, e) : NULL;
    if (e) fclose(e);
    sh_snapshot *cur = sh_snapshot_current(), *snap = NULL;
    if (!next) {
        for (char *save = NULL, *ln = errs ? strtok_r(errs, "\n", &save) : NULL; ln;
             ln = strtok_r(NULL, "\n", &save))
            sh_log(SH_LOG_ERROR, "reload: %s", ln);
        sh_log(SH_LOG_ERROR, "reload: %s has errors; keeping configuration %u", path,
               cur->generation);
        goto done;
    }
    if (!sh_snapshot_compatible(cur->cfg, next, why, sizeof(why))) {
        sh_log(SH_LOG_ERROR, "reload refused: %s (restart to apply); keeping configuration %u", why,
               cur->generation);
        sh_config_free(next);
        goto done;
    }
    if (!(snap = sh_snapshot_new(next, cur->generation + 1, err, sizeof(err)))) {
        sh_log(SH_LOG_ERROR, "reload: %s; keeping configuration %u", err, cur->generation);
        goto done;
    }
    if (sh_tls_reload(snap->cfg, err, sizeof(err)) != 0) {
        sh_log(SH_LOG_ERROR, "reload: tls: %s; keeping the current certificates", err);
        goto done;
    }
    sh_modules_reload(snap->cfg);
    sh_snapshot_publish(snap);
    for (size_t i = 0; i < nw; i++)
        sh_worker_set_snapshot(workers[i], snap);
    sh_log(SH_LOG_INFO, "reload: configuration %u from %s in effect for new requests",
           snap->generation, path);
done:
    sh_snapshot_unref(snap);
    sh_snapshot_unref(cur);
    free(errs); /* open_memstream's buffer comes from libc malloc */
    sd_notify("READY=1");
}

int main(int argc, char **argv)
{
    const char *conf = DEFAULT_CONF;
    int test_only = 0, opt;
    while ((opt = getopt(argc, argv, "c:tvh")) != -1) {
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'v':
            printf("shield %s (libevent %s, %s, allocator %s)\n", SHIELD_VERSION,
                   event_get_version(), curl_version(), sh_alloc_name());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    sh_config *cfg = sh_config_load(conf, stderr);
    if (!cfg) {
        fprintf(stderr, "shield: configuration file %s test failed\n", conf);
        return 1;
    }
    char err[512];
    if (sh_pipeline_check(err, sizeof(err)) != 0) {
        fprintf(stderr, "shield: module registry: %s\n", err);
        sh_config_free(cfg);
        return 1;
    }
    if (test_only) {
        printf("shield: configuration file %s test is successful\n", conf);
        sh_config_free(cfg);
        return 0;
    }
    if (sh_log_open(cfg->error_log) != 0) {
        fprintf(stderr, "shield: cannot open error log %s: %s\n", cfg->error_log, strerror(errno));
        sh_config_free(cfg);
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit (ulimit -f, systemd LimitFSIZE) must fail the write
     * (EFBIG: a disk-tier write error, a short log line), not kill the server. */
    signal(SIGXFSZ, SIG_IGN);
    /* Workers inherit this mask; only sigwait() below receives these. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    origin_global_init();
    int rc = 1, modules_ready = 0;
    size_t nw = (size_t)cfg->nworkers;
    sh_worker **workers = sh_calloc(nw, sizeof(*workers));
    int *fds = sh_malloc((cfg->nlisten ? cfg->nlisten : 1) * sizeof(int));
    sh_cache *cache = NULL;
    sh_admin *admin = NULL;
    size_t started = 0;

    /* The start-up snapshot stays referenced until exit: the cache engine and
     * the admin listener keep pointers into it (what they use cannot change
     * on reload, see sh_snapshot_compatible). */
    sh_snapshot *boot = sh_snapshot_new(cfg, 1, err, sizeof(err));
    if (!boot) {
        sh_log(SH_LOG_ERROR, "%s", err);
        goto out;
    }
    sh_snapshot_publish(boot);

    if (sh_tls_init(cfg, err, sizeof(err)) != 0) {
        sh_log(SH_LOG_ERROR, "tls: %s", err);
        goto out;
    }
    if (sh_modules_init(cfg, err, sizeof(err)) != 0) {
        sh_log(SH_LOG_ERROR, "%s", err);
        goto out;
    }
    modules_ready = 1;
    if (cfg->cache.enabled && !(cache = sh_cache_new(cfg, err, sizeof(err)))) {
        sh_log(SH_LOG_ERROR, "cache: %s", err);
        goto out;
    }
    for (size_t i = 0; i < nw; i++) {
        for (size_t j = 0; j < cfg->nlisten; j++) {
            fds[j] = bind_listener(&cfg->listen[j], err, sizeof(err));
            if (fds[j] < 0) {
                sh_log(SH_LOG_ERROR, "listen %s", err);
                for (size_t k = 0; k < j; k++)
                    close(fds[k]);
                goto stop;
            }
        }
        workers[i] = sh_worker_new((int)i, boot, cache, fds, err, sizeof(err));
        if (!workers[i]) {
            sh_log(SH_LOG_ERROR, "%s", err);
            goto stop;
        }
        if (sh_worker_start(workers[i]) != 0) {
            sh_log(SH_LOG_ERROR, "worker %zu: cannot start thread: %s", i, strerror(errno));
            goto stop;
        }
        started++;
    }
    if (*cfg->admin.address) {
        admin = sh_admin_start(cfg, cache, workers, nw, err, sizeof(err));
        if (!admin) {
            sh_log(SH_LOG_ERROR, "%s", err);
            goto stop;
        }
    }
    sh_log(SH_LOG_INFO, "shield %s ready: %zu workers, %zu listeners, node %s", SHIELD_VERSION, nw,
           cfg->nlisten, cfg->node_name);
    sd_notify("READY=1");

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0) continue;
        if (sig == SIGTERM || sig == SIGINT) {
            sh_snapshot *cur = sh_snapshot_current();
            sh_log(SH_LOG_INFO, "signal %d: draining (up to %llu ms)", sig,
                   (unsigned long long)cur->cfg->timeouts.drain_ms);
            sh_snapshot_unref(cur);
            sd_notify("STOPPING=1");
            break;
        }
        if (sig == SIGHUP) reload(conf, workers, started);
        if (sig == SIGUSR1) {
            /* logrotate: new files for the access log (its logger thread
             * switches at its next round) and the error log. */
            sh_accesslog_reopen();
            sh_realtime_reopen();
            if (sh_log_open(cfg->error_log) != 0)
                sh_log(SH_LOG_ERROR, "SIGUSR1: cannot reopen %s: %s", cfg->error_log,
                       strerror(errno));
            sh_log(SH_LOG_INFO, "SIGUSR1: logs reopened");
        }
    }
    rc = 0;
    sh_admin_stop(admin);
stop:
    for (size_t i = 0; i < nw; i++)
        if (workers[i] && i < started) sh_worker_drain(workers[i]);
    /* Three passes: no connection may be woken by a fill of a worker that is
     * already gone, and no fill may wake a connection already freed. */
    for (size_t i = 0; i < nw; i++)
        sh_worker_join(workers[i]);
    for (size_t i = 0; i < nw; i++)
        sh_worker_close(workers[i]);
    for (size_t i = 0; i < nw; i++)
        sh_worker_free(workers[i]);
    sh_cache_free(cache);
    if (rc == 0) sh_log(SH_LOG_INFO, "stopped");
out:
    if (modules_ready) sh_modules_fini();
    sh_tls_fini();
    sh_free(workers);
    sh_free(fds);
    sh_snapshot_publish(NULL);
    /* Without a snapshot (it failed) cfg was already freed with it. */
    sh_snapshot_unref(boot);
    origin_global_cleanup();
    libevent_global_shutdown();
    return rc;
}
