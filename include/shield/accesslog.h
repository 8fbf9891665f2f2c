/*
 * The CloudFront-format standard access log (proxy/accesslog.c) and its
 * formatter (modules/access_log.c).
 *
 * Workers never touch the log file: each worker owns one single-producer /
 * single-consumer ring of finished lines (lock-free: two atomic indices), and
 * one logger thread drains every ring, picks the file of the line's UTC hour
 * and writes each line with one write(2). A full ring drops the line and counts
 * it (sh_accesslog_dropped()) rather than stalling the event loop.
 *
 * Files: the current hour is written to a plain file
 * "<dir>/<distribution_id>.YYYY-MM-DD-HH.<unique>" opened O_APPEND, one
 * write per line. When the hour ends, on SIGUSR1 and at shutdown that file is
 * gzipped to "<same name>.gz" (through a ".gz.tmp" and rename, so a .gz is
 * never partial) and removed. A kill -9 can cut the write of a line longer
 * than a page, so at start-up each plain file left by a killed process is
 * first cut back to just after its last newline (a warning gives the bytes
 * dropped) and then gzipped the same way: the .gz files hold whole lines only.
 * Files whose hour is older than retention_days are deleted.
 */
#ifndef SHIELD_ACCESSLOG_H
#define SHIELD_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#include "shield/config.h"
#include "shield/module.h"

/* A worker's ring; created and freed on that worker's thread (its only producer). */
typedef struct sh_alog_ring sh_alog_ring;

/* Start the logger thread for cfg->log (does nothing when access_dir is "").
 * Checks that the directory is writable and finishes leftovers of a previous
 * run. 0, or -1 with a message in err. */
int sh_accesslog_start(const sh_config *cfg, char *err, size_t errlen);
/* Stop the logger: write what is queued, gzip the current file, join. */
void sh_accesslog_stop(void);
/* Is the access log on (started with a directory)? */
int sh_accesslog_enabled(void);

/* A new ring of cfg->log.ring_size lines, registered with the logger; NULL when
 * the log is off. */
sh_alog_ring *sh_accesslog_ring_new(void);
/* Unregister a ring; the lines still in it are written first. */
void sh_accesslog_ring_free(sh_alog_ring *r);
/* Queue one line (without its newline; copied) stamped with the time ts_us
 * (sh_accesslog_now_us()), which chooses its hourly file. Producer thread only.
 * 0, or -1 when the ring is full and the line was dropped (and counted). */
int sh_accesslog_push(sh_alog_ring *r, int64_t ts_us, const char *line, size_t len);
/* Lines dropped because a ring was full, since start (any thread). */
uint64_t sh_accesslog_dropped(void);
/* Ask the logger to close its file and start a new one (SIGUSR1, any thread). */
void sh_accesslog_reopen(void);

/* The log's wall clock, microseconds since the epoch. Test-only: the
 * environment variable SHIELD_TEST_CLOCK_OFFSET (seconds, may be negative) is
 * added, so hourly rotation can be tested without waiting for an hour. */
int64_t sh_accesslog_now_us(void);

/* CloudFront's escaping of one field value into out (NUL-terminated, at most
 * cap-1 bytes, never cutting an escape): bytes 0-32 and >= 127 and
 * < > " # % { } | \ ^ ~ [ ] ` ' become %XX. An empty value becomes "-".
 * Returns the length written. */
size_t sh_accesslog_escape(char *out, size_t cap, const char *in, size_t len);

/* modules/access_log.c: the 33-field line of a finished request (no newline),
 * its "date time" taken from now_us. Returns the length (< cap). */
size_t sh_accesslog_format(const sh_req *r, int64_t now_us, char *out, size_t cap);

/* The "#Fields:" line's field names, space-separated. */
extern const char sh_accesslog_fields[];

#endif
