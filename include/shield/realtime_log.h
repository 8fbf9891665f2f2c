/*
 * The CloudFront real-time log (modules/realtime_log.c): one record per
 * sampled request, the configured subset of CloudFront's real-time log fields
 * as tab-separated values in CloudFront's canonical order ("-" for empty),
 * ending with a newline, sent to one target:
 *   file:/path        appended, one write(2) per record; SIGUSR1
 *                     (sh_realtime_reopen) or the file being moved or removed
 *                     makes the sender open the path again;
 *   unix:/path        one AF_UNIX SOCK_DGRAM datagram per record;
 *   udp:host:port     one UDP datagram per record.
 *
 * Best effort, like CloudFront's: a worker formats the record and pushes it on
 * its own lock-free ring (shield/logring.h); one sender thread drains the rings.
 * A full ring, a missing socket, a refused or full receiver all drop the
 * record and count it (sh_realtime_dropped()); nothing is queued beyond the
 * ring, and delivery resumes by itself once the receiver is back, since every
 * datagram is addressed afresh.
 *
 * Sampling is a per-worker counter, not a coin: with sampling p, a worker
 * logs its request n (from 1) when floor(n*p/100) > floor((n-1)*p/100), so
 * 100 logs everything and 1 logs each worker's 100th, 200th... request; a test
 * can bound the count exactly.
 */
#ifndef SHIELD_REALTIME_LOG_H
#define SHIELD_REALTIME_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "shield/config.h"
#include "shield/module.h"

/* CloudFront's real-time log field names, in canonical order. */
#define SH_RT_NFIELDS 43
extern const char *const sh_realtime_field_names[SH_RT_NFIELDS];
#define SH_RT_ALL_FIELDS ((UINT64_C(1) << SH_RT_NFIELDS) - 1)

/* Index of a field name in sh_realtime_field_names, or -1. */
int sh_realtime_field_index(const char *name);

/* Check a target string ("file:/abs", "unix:/path", "udp:host:port"; "" = off).
 * 0, or -1 with the reason in err (for the config loader). */
int sh_realtime_target_check(const char *target, char *err, size_t errlen);

/* Should a worker whose *counter requests came before this one log it, at
 * sampling percent pct? Advances *counter. */
int sh_realtime_sampled(uint64_t *counter, unsigned pct);

/* The record of a finished request: the fields whose bits are set in fields,
 * tab-separated, no newline, timestamp taken from now_us. Returns its length
 * (< cap). */
size_t sh_realtime_format(const sh_req *r, uint64_t fields, int64_t now_us, char *out, size_t cap);

/* Start the sender for cfg->log (nothing when the target is ""); a file
 * target must be openable. 0, or -1 with a message. */
int sh_realtime_start(const sh_config *cfg, char *err, size_t errlen);
/* Send what is queued, stop the sender, log the totals. */
void sh_realtime_stop(void);
/* Records dropped since start: ring full, or the target refused/unreachable. */
uint64_t sh_realtime_dropped(void);
/* Records handed to the target since start. */
uint64_t sh_realtime_sent(void);
/* Reopen a file target at the sender's next round (SIGUSR1; any thread). */
void sh_realtime_reopen(void);

#endif
