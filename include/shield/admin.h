/*
 * The admin listener (loopback by default): a small HTTP/1.1 API on its own
 * thread and event loop, away from the viewer path. Uses libevent's evhttp:
 * its parser is lenient, which is acceptable for a local operator endpoint
 * and never for the viewer path.
 *
 *   GET  /stats              JSON counters (cache engine, requests, edge, prefetch)
 *   POST /invalidations      {"paths": ["/books/a.epub", "/books/ + star"]} -> 201
 *                            {"id": "I...", "status": "Completed", "paths": n,
 *                             "create_time": "..."}: rules apply at once
 *   GET  /invalidations/<id> the same document (the last SH_ADMIN_INVAL_HISTORY)
 *   POST /prefetch           {"paths": [...], "host": "optional Host"} -> 202
 *                            {"id": "P...", "total": n}; 409 while one runs
 *   GET  /prefetch/<id>      progress of that prefetch (the current or last one)
 *
 * With admin.token_file set, every request needs "Authorization: Bearer
 * <token>" (compared in constant time) or gets 401 with WWW-Authenticate.
 * The token is the only protection on a non-loopback address and travels in
 * clear text (no TLS here): keep the listener on loopback.
 */
#ifndef SHIELD_ADMIN_H
#define SHIELD_ADMIN_H

#include <stddef.h>

#include "shield/config.h"

struct sh_cache;
struct sh_worker;

typedef struct sh_admin sh_admin;

/* Bind and start the admin thread. NULL with a message in err on failure. */
sh_admin *sh_admin_start(const sh_config *cfg, struct sh_cache *cache,
                         struct sh_worker *const *workers, size_t nworkers, char *err,
                         size_t errlen);
/* Stop the thread and free (NULL is fine). */
void sh_admin_stop(sh_admin *a);

/*
 * Parse the body of POST /invalidations: a JSON object with a "paths" array
 * of strings (JSON escapes \" \\ \/ and \uXXXX below 0x80 are decoded).
 * Calls cb for each path; returns the number of paths, or -1 if malformed.
 */
int sh_admin_parse_paths(const char *body, size_t len, int (*cb)(void *ud, const char *path),
                         void *ud);
/*
 * The same for POST /prefetch, whose object may also carry "host" (a string,
 * keys in any order): copied NUL-terminated into host (at most hostcap - 1
 * bytes, else malformed), "" when absent.
 */
int sh_admin_parse_prefetch(const char *body, size_t len, int (*cb)(void *ud, const char *path),
                            void *ud, char *host, size_t hostcap);

#define SH_ADMIN_INVAL_HISTORY 256 /* invalidations GET /invalidations/<id> remembers */

/* ---- proxy/admin_prefetch.c: cache warming through Shield's own listener ---- */

/*
 * One prefetch at a time: a thread fetches each path over HTTP/1.1 from the
 * first plain (non-TLS) listener, with a few requests in flight, so objects
 * go through the normal viewer path (behaviors, collapsing, cache fill) and
 * are counted as viewer requests. A second start while one runs is refused
 * (the caller answers 409) rather than queued: nothing to bound, and the
 * operator sees at once that warming is still under way.
 */
typedef struct sh_prefetch sh_prefetch;

#define SH_PREFETCH_ID_LEN     16 /* "P" + 13 characters + NUL, padded */
#define SH_PREFETCH_MAX_ERRORS 10 /* failed paths remembered per job */

/* A snapshot of the current (or last) job's progress. */
typedef struct sh_prefetch_progress {
    char id[SH_PREFETCH_ID_LEN]; /* "" before the first job */
    char create_time[32];        /* ISO 8601 UTC */
    size_t total, done, failed;  /* done counts successes and failures */
    int running;
    size_t nerrors; /* the first failures: path and status (0 = transport error) */
    struct {
        char path[256]; /* truncated */
        int status;
    } errors[SH_PREFETCH_MAX_ERRORS];
} sh_prefetch_progress;

/* NULL with a reason in err when there is no plain listener to fetch through. */
sh_prefetch *sh_prefetch_new(const sh_config *cfg, char *err, size_t errlen);
/*
 * Start fetching paths (taken over: the array and its strings become the
 * job's, freed with sh_free, also on failure). host: Host header, "" = the
 * listener address. 0 = started (id filled), -1 = one is running, -2 = no
 * thread could be started.
 */
int sh_prefetch_start(sh_prefetch *p, char **paths, size_t n, const char *host,
                      char id[SH_PREFETCH_ID_LEN]);
/* Progress of the current or last job; 0 when there is one. */
int sh_prefetch_get(sh_prefetch *p, sh_prefetch_progress *out);
/* Abort a running job, join its thread, free (NULL is fine). */
void sh_prefetch_free(sh_prefetch *p);

/* Operator-facing ids like CloudFront's: prefix + 13 of [A-Z0-9], random. */
void sh_admin_new_id(char prefix, char out[SH_PREFETCH_ID_LEN]);
/* Now as "2024-05-01T12:00:00.123Z". */
void sh_admin_iso_time(char out[32]);

#endif
