/*
 * A configuration snapshot and what is built from it (origin credentials),
 * shared by every worker and refcounted, so that configuration reload
 * (SIGHUP) can swap in a new one while requests, fills and origin fetches
 * finish on the snapshot they started with.
 *
 * Who holds a reference: main (the current one), each worker (its current
 * one, switched on its own thread when main announces a new one), each
 * request (sh_req.snap, from its first byte to its log line), and each origin
 * fetch (origin_request.snap). The last unref frees the credentials and the
 * configuration.
 */
#ifndef SHIELD_SNAPSHOT_H
#define SHIELD_SNAPSHOT_H

#include <stddef.h>

#include "shield/config.h"

struct sh_creds;

typedef struct sh_snapshot {
    sh_config *cfg;
    struct sh_creds **creds; /* indexed like cfg->origins; NULL entries = unsigned */
    unsigned refs;           /* atomic */
    unsigned generation;     /* 1 for the configuration loaded at start, +1 per reload */
} sh_snapshot;

/* Take ownership of cfg and build its credentials providers. One reference
 * for the caller; NULL with a message (cfg is then freed). */
sh_snapshot *sh_snapshot_new(sh_config *cfg, unsigned generation, char *err, size_t errlen);
void sh_snapshot_ref(sh_snapshot *s);
void sh_snapshot_unref(sh_snapshot *s); /* NULL is fine */

/* The process-wide current snapshot (a new reference), for threads that are
 * not workers (admin listener). NULL before start-up. */
sh_snapshot *sh_snapshot_current(void);
/* Make s current (main thread; takes its own reference). */
void sh_snapshot_publish(sh_snapshot *s);

/*
 * Can next replace cur without a restart? Listeners, worker count, the cache
 * engine, the admin listener, the error log, the access log's files, the
 * rate-limit table size and the heavy-hitter sketch are built once at start: a
 * change there is refused (with the reasons written to why) rather than
 * half-applied. 1 = compatible.
 */
int sh_snapshot_compatible(const sh_config *cur, const sh_config *next, char *why, size_t whylen);

#endif
