/*
 * AWS credentials for s3 origins: from the environment, an AWS shared-credentials
 * file, or the EC2 instance role via IMDSv2.
 *
 * A provider is created on the main thread before workers start (the first load
 * may block: it is not on an event loop). IMDS credentials are refreshed by a
 * background thread well before they expire (at the earlier of Expiration - 5 min
 * and half the remaining lifetime), so workers never block and never sign with
 * expired keys. Workers take a consistent copy with sh_creds_get().
 */
#ifndef SHIELD_CREDENTIALS_H
#define SHIELD_CREDENTIALS_H

#include <stddef.h>
#include <stdint.h>

#include "shield/config.h"

typedef struct sh_creds sh_creds;

/* A copy of the current credentials. token is "" when there is no session token. */
typedef struct sh_aws_keys {
    char access_key[128];
    char secret_key[128];
    char token[2048];
    int64_t expiration; /* epoch seconds; 0 = does not expire */
} sh_aws_keys;

/*
 * Create the provider for an origin and load credentials once. Returns NULL and
 * writes a one-line reason into err on failure (missing variables, unreadable
 * file, IMDS unreachable).
 */
sh_creds *sh_creds_new(const sh_origin_conf *o, char *err, size_t errlen);

/* Thread-safe copy of the current credentials. 0, or -1 if none are available. */
int sh_creds_get(sh_creds *c, sh_aws_keys *out);

/* Stop the refresh thread (if any) and free. NULL is fine. */
void sh_creds_free(sh_creds *c);

#endif
