/*
 * The admin listener (loopback by default): a small HTTP/1.1 API on its own
 * thread and event loop, away from the viewer path. Uses libevent's evhttp:
 * its parser is lenient, which is acceptable for a local operator endpoint
 * and never for the viewer path.
 *
 *   GET  /stats          JSON counters (cache engine, requests)
 *   POST /invalidations  {"paths": ["/books/a.epub", "/books/ + star"]} -> 201
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

#endif
