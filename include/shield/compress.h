/*
 * Compression of responses (SPEC.md "Compression", CloudFront's "Serving
 * compressed files"): gzip (zlib) and br (libbrotlienc) for text-like types
 * on behaviors with `compress = true`.
 *
 * How the pieces fit:
 *   - the request side decides which variant a request asks for
 *     (sh_compress_negotiate): the cache key gets a variant suffix
 *     (sh_compress_key_variant), so br, gzip and identity answers are separate
 *     cache objects and a viewer only ever gets a coding it accepted;
 *   - the response side decides whether an origin answer is compressible
 *     (sh_compress_response_ok) and rewrites its head
 *     (sh_compress_apply_headers);
 *   - the body is compressed as it streams from the origin by a small
 *     streaming compressor (sh_compressor), in the fill (proxy/cache/fill.c:
 *     into the cache object) or on the pass path (proxy/pass.c: straight to
 *     the viewer). Memory per stream is bounded (zlib ~256 KiB; brotli quality
 *     5 with a 256 KiB window, a few MiB at most), and each call does work
 *     proportional to the bytes given, so the event loop is never held long.
 *
 * Accept-Encoding is not forwarded to the origin (unless a behavior lists it in
 * forward_headers): the origin answers identity and Shield compresses at the edge.
 *
 * Everything here except the compressor is a pure function, unit-tested and
 * fuzzed on its own (tests/unit/test_compress.c, tests/fuzz/fuzz_accept_encoding.c).
 */
#ifndef SHIELD_COMPRESS_H
#define SHIELD_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "shield/http.h"
#include "shield/module.h"

/* A content coding Shield can produce. */
typedef enum { SH_ENC_IDENTITY = 0, SH_ENC_GZIP = 1, SH_ENC_BR = 2 } sh_encoding;

/* Size window CloudFront compresses (bytes of the origin's Content-Length). */
#define SH_COMPRESS_MIN_SIZE 1000
#define SH_COMPRESS_MAX_SIZE 10000000

/* Content-Encoding token: "identity", "gzip", "br". */
const char *sh_encoding_name(sh_encoding e);

/* ---- request side ----------------------------------------------------------- */

/*
 * The coding to use for one Accept-Encoding field value (RFC 9110 §12.5.3):
 * codings are case-insensitive tokens with an optional ";q=" weight (0..1, at
 * most three decimals); q=0 means "not acceptable"; "*" stands for every
 * coding not listed; "x-gzip" is gzip. The acceptable coding with the highest
 * weight wins, br on a tie (CloudFront prefers br). Malformed elements are
 * ignored. SH_ENC_IDENTITY when neither gzip nor br is acceptable.
 */
sh_encoding sh_accept_encoding_pick(const char *v, size_t len);
/* Same over every Accept-Encoding field of a header array, taken as one list. */
sh_encoding sh_accept_encoding_pick_headers(const sh_header *h, size_t n);

/*
 * The variant a request gets: identity unless its behavior has compress on,
 * the method is GET or HEAD, the viewer speaks HTTP/1.1 or later (CloudFront
 * serves HTTP/1.0 uncompressed), there is no Range header (ranges are served
 * from the identity object), the path is not an e-book (.epub/.pdf: never
 * compressible, so not worth a second cached copy) and Accept-Encoding picks
 * gzip or br.
 */
sh_encoding sh_compress_negotiate(const sh_req *req);

/* ---- response side ---------------------------------------------------------- */

/* Is this Content-Type value (parameters allowed) one CloudFront compresses?
 * every text/ subtype, the listed application/ types, image/svg+xml, image/x-icon, and
 * uncompressed font formats. Never EPUB, PDF or already-compressed formats. */
int sh_compress_type_ok(const char *v, size_t len);

/*
 * May an origin response with this status, (forwarded) headers and
 * Content-Length (-1 = none) be compressed? Status 200/403/404, no
 * Content-Encoding at all, a Content-Length in [1000, 10000000], a
 * compressible Content-Type, and no Cache-Control: no-transform.
 */
int sh_compress_response_ok(int status, const sh_hdrlist *h, int64_t content_length);

/*
 * Rewrite a response head for coding e: Content-Encoding set; a strong ETag
 * "x" becomes W/"x", a weak one is kept, an invalid one is removed (as
 * CloudFront does); Vary fields merged into one that names Accept-Encoding;
 * Accept-Ranges and Content-MD5 removed (they describe the identity bytes).
 * The caller drops the Content-Length (the compressed length is not known up front).
 */
void sh_compress_apply_headers(sh_hdrlist *h, sh_encoding e);

/* ---- cache keys ---------------------------------------------------------------- */

/*
 * Append the variant suffix for e to a cache key from sh_cache_key (which
 * ends with a NUL): "\x01br\0" or "\x01gzip\0"; identity keys are unchanged.
 * key is sh_malloc'd and may be reallocated: returns the key, updates *keylen.
 * The marker byte and the preceding NUL cannot occur in a base key, so the
 * suffix is unambiguous; the path stays first, so invalidations cover every variant.
 */
char *sh_compress_key_variant(char *key, size_t *keylen, sh_encoding e);
/* The variant a key was made for (SH_ENC_IDENTITY for plain keys). */
sh_encoding sh_compress_key_encoding(const char *key, size_t keylen);
/*
 * The ETag to send the origin in If-None-Match when revalidating a stored
 * object: for a compressed variant, the origin's own (strong) tag is the
 * stored W/"x" without its W/ prefix, since exact-match origins would not
 * recognise the weak form. Returns a pointer into etag.
 */
const char *sh_compress_origin_etag(const char *key, size_t keylen, const char *etag);

/* ---- streaming compressor ------------------------------------------------------ */

typedef struct sh_compressor sh_compressor;

/* Receives compressed bytes (valid only during the call). 0 to go on, -1 to stop. */
typedef int (*sh_compress_sink)(void *ud, const char *data, size_t len);

/* A compressor for e (not identity); size_hint is the input length if known
 * (-1 otherwise), which lets brotli size its buffers. NULL if e is identity. */
sh_compressor *sh_compressor_new(sh_encoding e, int64_t size_hint);
/* Compress len bytes, handing every output byte produced so far to sink.
 * 0, or -1 on an encoder failure or when sink stopped (the stream is dead). */
int sh_compressor_feed(sh_compressor *z, const char *in, size_t len, sh_compress_sink sink,
                       void *ud);
/* End the stream: the remaining bytes and the trailer go to sink. 0 or -1. */
int sh_compressor_finish(sh_compressor *z, sh_compress_sink sink, void *ud);
void sh_compressor_free(sh_compressor *z);
/* Upper bound of the compressed size of len input bytes (whole stream). */
uint64_t sh_compress_bound(sh_encoding e, uint64_t len);

#endif
