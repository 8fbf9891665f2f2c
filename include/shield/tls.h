/*
 * TLS termination (proxy/tls.c): one OpenSSL 3 context per configured
 * certificate, chosen by SNI (the first certificate answers unknown or absent
 * names), CloudFront's TLSv1.2_2021 policy, a bounded server-side session
 * cache and session tickets whose keys are shared by every worker and rotated
 * every tls.ticket_rotate.
 *
 * Contexts are process-wide and immutable once built; a reload (SIGHUP) builds
 * a complete new set and swaps it in, so connections that are mid-handshake
 * keep the set they started with and a bad certificate on disk never replaces
 * a good one.
 */
#ifndef SHIELD_TLS_H
#define SHIELD_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "shield/config.h"

/* Build the contexts when any listener has tls = true (no-op otherwise).
 * 0 or -1 with a message in err. Main thread, before the workers start. */
int sh_tls_init(const sh_config *cfg, char *err, size_t errlen);

/* Re-read every certificate and key named by cfg and swap them in. On failure
 * the current set stays and err says why. Main thread. */
int sh_tls_reload(const sh_config *cfg, char *err, size_t errlen);

/* A new server-side SSL for an accepted connection (any worker thread), or
 * NULL if TLS is not initialised or OpenSSL fails. The caller owns it. */
SSL *sh_tls_new(void);

/* Free every context set (after all workers have stopped). */
void sh_tls_fini(void);

/* The names a certificate answers for (DNS subjectAltNames, else the subject
 * CN), lower-cased, joined by spaces into buf. Returns the number of names. */
size_t sh_tls_cert_names(X509 *cert, char *buf, size_t buflen);

/* The oldest queued OpenSSL error as text (thread-local buffer), and clear
 * the queue; "unknown OpenSSL error" when it is empty. */
const char *sh_ssl_error(void);

/* Does an SNI name match a certificate name ("*.example.com" covers exactly
 * one label)? Case-insensitive. */
int sh_tls_name_match(const char *pattern, const char *name);

#endif
