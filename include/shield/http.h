/*
 * HTTP vocabulary shared by the core, the origin client and the modules:
 * header lists, the request and response heads, and small helpers.
 *
 * Header names and values are byte strings with explicit lengths (they may
 * legally contain bytes like '\0' only after validation has rejected them, so in
 * practice they are printable, but never rely on NUL termination).
 */
#ifndef SHIELD_HTTP_H
#define SHIELD_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shield/config.h"

/* One header field. */
typedef struct sh_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} sh_header;

/*
 * A growable list of headers whose strings it owns (copied in). Used for the
 * response head the core builds and the modules filter.
 */
typedef struct sh_hdrlist {
    sh_header *v;
    size_t n, cap;
} sh_hdrlist;

/* Append a copy of name/value. */
void sh_hdrlist_add(sh_hdrlist *l, const char *name, size_t nlen, const char *value, size_t vlen);
/* Same, NUL-terminated strings. */
void sh_hdrlist_adds(sh_hdrlist *l, const char *name, const char *value);
/* Remove every header named name (case-insensitive), then add name: value. */
void sh_hdrlist_set(sh_hdrlist *l, const char *name, const char *value);
/* Remove every header named name; returns how many were removed. */
size_t sh_hdrlist_del(sh_hdrlist *l, const char *name);
/* First header named name, or NULL. */
const sh_header *sh_hdrlist_get(const sh_hdrlist *l, const char *name);
/* Free every string and the array; the list is empty and reusable after. */
void sh_hdrlist_clear(sh_hdrlist *l);

/* Case-insensitive comparison of a counted name with a C string. */
int sh_hdr_is(const char *name, size_t len, const char *cname);
/* First header named cname in an array, or NULL. */
const sh_header *sh_hdr_find(const sh_header *h, size_t n, const char *cname);
/*
 * Hop-by-hop headers (RFC 9110 §7.6.1): Connection, Keep-Alive, Proxy-Connection,
 * TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authorization, Proxy-Authenticate,
 * and HTTP2-Settings (connection-specific, RFC 9113 §3.2.1). Headers named in a
 * Connection header are hop-by-hop too: pass that header's value as connection
 * (NULL if none).
 */
int sh_hdr_is_hop_by_hop(const char *name, size_t len, const char *connection, size_t clen);

/* Standard reason phrase for a status code ("Not Found"); "Unknown" if none. */
const char *sh_http_reason(int status);

/* Format t (seconds since epoch) as an IMF-fixdate into out[30]; returns 29. */
size_t sh_http_date(int64_t t, char *out);

/* Is this byte an RFC 9110 tchar (allowed in a token / header name)? */
int sh_is_tchar(unsigned char c);

/*
 * Validate a Host header value (or absolute-form authority): reg-name or IPv4
 * or [IPv6], optional :port with 1-5 digits. No spaces, slashes, userinfo.
 */
int sh_host_valid(const char *h, size_t len);

/* The response head the core sends to the viewer, built then filtered by modules. */
typedef struct sh_resp {
    int status;
    sh_hdrlist headers;     /* everything except framing headers the core adds itself */
    int64_t content_length; /* -1 = unknown (chunked or close-delimited) */
} sh_resp;

#endif
