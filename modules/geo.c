/*
 * Geo restriction (CloudFront georestrictions): an allowlist or blocklist of
 * ISO 3166-1 alpha-2 codes. The country is the one a trusted proxy sent
 * (identity module, req->country) or else the libmaxminddb lookup of the
 * client address ("country.iso_code", falling back to
 * "registered_country.iso_code"). An unknown location is served, as
 * CloudFront does. A blocked request gets 403 and the detailed result type
 * ClientGeoBlocked.
 *
 * A database configured with mode = "none" is still looked up so that
 * req->country is known to the logs.
 *
 * The database is shared by every worker and replaced on SIGHUP while they
 * run. It lives in a refcounted snapshot: the module holds one reference to
 * the current one, and each worker holds a reference to the one it uses.
 * A reload opens the new file first (a bad file keeps the old database and
 * logs why), swaps the current pointer under a mutex and bumps a generation
 * number; a worker notices the new generation on its next request (one
 * relaxed atomic load per request, no lock), takes a reference to the new
 * snapshot and drops its old one. The last reference closes the database,
 * so no worker ever reads a closed one, and no worker locks on the hot path.
 */
#include <errno.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "shield/alloc.h"
#include "shield/log.h"
#include "shield/module.h"

typedef struct geo_db {
    MMDB_s mmdb;
    unsigned refs; /* atomic */
} geo_db;

static pthread_mutex_t geo_lock = PTHREAD_MUTEX_INITIALIZER;
static geo_db *geo_current; /* under geo_lock; owns one reference */
static unsigned geo_gen;    /* atomic; changes after every swap */

/* Per worker: the snapshot it reads and the generation it was taken at. */
typedef struct geo_worker {
    geo_db *db;
    unsigned gen;
} geo_worker;

static geo_db *geo_open(const char *path, char *err, size_t errlen)
{
    geo_db *db = sh_calloc(1, sizeof *db);
    int rc = MMDB_open(path, MMDB_MODE_MMAP, &db->mmdb);
    if (rc != MMDB_SUCCESS) {
        snprintf(err, errlen, "geo.database \"%s\": cannot open: %s%s%s", path, MMDB_strerror(rc),
                 rc == MMDB_IO_ERROR ? ": " : "", rc == MMDB_IO_ERROR ? strerror(errno) : "");
        sh_free(db);
        return NULL;
    }
    db->refs = 1;
    return db;
}

static void geo_release(geo_db *db)
{
    if (db && __atomic_sub_fetch(&db->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        MMDB_close(&db->mmdb);
        sh_free(db);
    }
}

/* Install db (which brings its own reference) as the current snapshot. */
static void geo_swap(geo_db *db)
{
    pthread_mutex_lock(&geo_lock);
    geo_db *old = geo_current;
    geo_current = db;
    __atomic_add_fetch(&geo_gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&geo_lock);
    geo_release(old);
}

static void geo_refresh(geo_worker *st)
{
    pthread_mutex_lock(&geo_lock);
    geo_db *old = st->db;
    st->db = geo_current;
    if (st->db) __atomic_add_fetch(&st->db->refs, 1, __ATOMIC_RELAXED);
    st->gen = __atomic_load_n(&geo_gen, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&geo_lock);
    geo_release(old);
}

static int geo_wanted(const sh_config *cfg)
{
    return cfg->geo.database && *cfg->geo.database;
}

static int geo_init(const sh_config *cfg, char *err, size_t errlen)
{
    if (!geo_wanted(cfg)) return 0;
    geo_db *db = geo_open(cfg->geo.database, err, errlen);
    if (!db) return -1;
    geo_swap(db);
    return 0;
}

static void geo_reload(const sh_config *cfg)
{
    char err[512];
    if (!geo_wanted(cfg)) {
        geo_swap(NULL);
        return;
    }
    geo_db *db = geo_open(cfg->geo.database, err, sizeof err);
    if (!db) {
        sh_log(SH_LOG_ERROR, "reload: %s; keeping the previous geo database", err);
        return;
    }
    geo_swap(db);
    sh_log(SH_LOG_INFO, "reload: geo database %s (%s, built %llu)", cfg->geo.database,
           db->mmdb.metadata.database_type ? db->mmdb.metadata.database_type : "?",
           (unsigned long long)db->mmdb.metadata.build_epoch);
}

static void geo_fini(void)
{
    geo_swap(NULL);
}

static int geo_worker_init(struct sh_worker *w, const sh_config *cfg, void **state)
{
    (void)w;
    (void)cfg;
    geo_worker *st = sh_calloc(1, sizeof *st);
    geo_refresh(st);
    *state = st;
    return 0;
}

static void geo_worker_free(void *state)
{
    geo_worker *st = state;
    geo_release(st->db);
    sh_free(st);
}

static int copy_code(const MMDB_entry_data_s *d, char out[3])
{
    if (!d->has_data || d->type != MMDB_DATA_TYPE_UTF8_STRING || d->data_size != 2) return -1;
    for (int i = 0; i < 2; i++) {
        char c = d->utf8_string[i];
        if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
        if (c < 'A' || c > 'Z') return -1;
        out[i] = c;
    }
    out[2] = '\0';
    return 0;
}

/* Country of a 16-byte address, "" if the database does not know it. An
 * IPv4-mapped address is looked up as IPv4, so an IPv4-only database (where
 * an IPv6 lookup is an error) still answers for clients seen on a dual-stack
 * socket or forwarded as ::ffff:a.b.c.d. */
static void geo_lookup(MMDB_s *mmdb, const uint8_t ip[16], char out[3])
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    struct sockaddr_storage ss;
    MMDB_lookup_result_s res;
    MMDB_entry_data_s d;
    int mmerr = MMDB_SUCCESS;

    out[0] = '\0';
    memset(&ss, 0, sizeof ss);
    if (memcmp(ip, v4_mapped, 12) == 0) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, ip + 12, 4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, ip, 16);
    }
    res = MMDB_lookup_sockaddr(mmdb, (const struct sockaddr *)&ss, &mmerr);
    if (mmerr != MMDB_SUCCESS || !res.found_entry) return;
    if (MMDB_get_value(&res.entry, &d, "country", "iso_code", NULL) == MMDB_SUCCESS &&
        copy_code(&d, out) == 0)
        return;
    if (MMDB_get_value(&res.entry, &d, "registered_country", "iso_code", NULL) == MMDB_SUCCESS &&
        copy_code(&d, out) == 0)
        return;
    out[0] = '\0';
}

static int listed(const sh_geo_conf *g, const char *cc)
{
    for (size_t i = 0; i < g->ncountries; i++)
        if (g->countries[i][0] == cc[0] && g->countries[i][1] == cc[1]) return 1;
    return 0;
}

static sh_rc geo_check(sh_req *req, void *state)
{
    const sh_geo_conf *g = &req->cfg->geo;
    geo_worker *st = state;

    if (!req->country[0] && st) {
        if (__atomic_load_n(&geo_gen, __ATOMIC_ACQUIRE) != st->gen) geo_refresh(st);
        if (st->db) geo_lookup(&st->db->mmdb, req->client_addr, req->country);
    }
    if (g->mode == SH_GEO_NONE || !req->country[0]) return SH_CONTINUE;
    int in = listed(g, req->country);
    if (g->mode == SH_GEO_ALLOWLIST ? in : !in) return SH_CONTINUE;

    char page[1024];
    snprintf(page, sizeof page,
             "<!DOCTYPE html>\n<html><head><title>ERROR: The request could not be "
             "satisfied</title></head><body>\n<h1>403 ERROR</h1>\n<h2>The request could not be "
             "satisfied.</h2>\n<hr>\nThe distribution is configured to block access from your "
             "country.\n<hr>\n<pre>\nGenerated by %s (shield)\nRequest ID: %s\n</pre>\n"
             "</body></html>\n",
             req->cfg->node_name, req->request_id);
    req->detailed_result = "ClientGeoBlocked";
    sh_req_count(req, SH_CNT_GEO_BLOCKED);
    return sh_req_respond(req, 403, NULL, NULL, "text/html", page);
}

const sh_module sh_module_geo = {
    .name = "geo",
    .init = geo_init,
    .reload = geo_reload,
    .fini = geo_fini,
    .worker_init = geo_worker_init,
    .worker_free = geo_worker_free,
    .phase = {[SH_PHASE_GEO] = geo_check},
};
