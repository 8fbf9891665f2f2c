/*
 * The error log: one line per event, "2026-11-23T05:20:46Z [level] message",
 * written with a single write(2) so lines from several threads never interleave.
 * Goes to stderr unless sh_log_open() named a file. (The CloudFront-format
 * access log is a separate subsystem.)
 */
#ifndef SHIELD_LOG_H
#define SHIELD_LOG_H

typedef enum { SH_LOG_ERROR, SH_LOG_WARN, SH_LOG_INFO, SH_LOG_DEBUG } sh_log_level;

/* Send the log to path ("" or NULL = stderr). 0 or -1 (errno set). */
int sh_log_open(const char *path);
/* Lines above this level are dropped (default SH_LOG_INFO; SHIELD_DEBUG=1 in the environment
 * selects SH_LOG_DEBUG). */
void sh_log_set_level(sh_log_level level);
/* printf-style; a trailing newline is added. */
void sh_log(sh_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
