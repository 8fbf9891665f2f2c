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
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "shield/admin.h"
#include "shield/alloc.h"
#include "shield/cache.h"
#include "shield/config.h"
#include "shield/credentials.h"
#include "shield/log.h"
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
    sh_creds **creds = sh_calloc(cfg->norigins ? cfg->norigins : 1, sizeof(*creds));
    sh_worker **workers = sh_calloc(nw, sizeof(*workers));
    int *fds = sh_malloc((cfg->nlisten ? cfg->nlisten : 1) * sizeof(int));

    for (size_t i = 0; i < cfg->norigins; i++) {
        const sh_origin_conf *o = &cfg->origins[i];
        if (o->type != SH_ORIGIN_S3 || o->credentials == SH_CRED_NONE) continue;
        creds[i] = sh_creds_new(o, err, sizeof(err));
        if (!creds[i]) {
            sh_log(SH_LOG_ERROR, "origin %s: credentials: %s", o->name, err);
            goto out;
        }
    }

    if (sh_tls_init(cfg, err, sizeof(err)) != 0) {
        sh_log(SH_LOG_ERROR, "tls: %s", err);
        goto out;
    }
    if (sh_modules_init(cfg, err, sizeof(err)) != 0) {
        sh_log(SH_LOG_ERROR, "%s", err);
        goto out;
    }
    modules_ready = 1;
    sh_cache *cache = NULL;
    if (cfg->cache.enabled && !(cache = sh_cache_new(cfg, err, sizeof(err)))) {
        sh_log(SH_LOG_ERROR, "cache: %s", err);
        goto out;
    }
    size_t started = 0;
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
        workers[i] = sh_worker_new((int)i, cfg, creds, cache, fds, err, sizeof(err));
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
    sh_admin *admin = NULL;
    if (*cfg->admin.address) {
        admin = sh_admin_start(cfg, cache, workers, nw, err, sizeof(err));
        if (!admin) {
            sh_log(SH_LOG_ERROR, "%s", err);
            goto stop;
        }
    }
    sh_log(SH_LOG_INFO, "shield %s ready: %zu workers, %zu listeners, node %s", SHIELD_VERSION, nw,
           cfg->nlisten, cfg->node_name);

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0) continue;
        if (sig == SIGTERM || sig == SIGINT) {
            sh_log(SH_LOG_INFO, "signal %d: draining (up to %llu ms)", sig,
                   (unsigned long long)cfg->timeouts.drain_ms);
            break;
        }
        if (sig == SIGHUP) {
            /* Issue 5 re-reads the whole configuration; until then SIGHUP
             * re-reads the files it names: certificates and the geo database. */
            sh_log(SH_LOG_INFO, "SIGHUP: reloading certificates and the geo database");
            if (sh_tls_reload(cfg, err, sizeof(err)) != 0)
                sh_log(SH_LOG_ERROR, "SIGHUP: tls: %s; keeping the current certificates", err);
            sh_modules_reload(cfg);
        }
        if (sig == SIGUSR1)
            sh_log(SH_LOG_INFO, "SIGUSR1: the error log is not reopened by this build");
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
    for (size_t i = 0; i < cfg->norigins; i++)
        sh_creds_free(creds[i]);
    sh_free(creds);
    sh_free(workers);
    sh_free(fds);
    sh_config_free(cfg);
    origin_global_cleanup();
    libevent_global_shutdown();
    return rc;
}
