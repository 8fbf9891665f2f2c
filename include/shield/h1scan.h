/*
 * A strict HTTP/1.1 framing scanner for requests, independent of llhttp.
 *
 * Every byte a viewer sends passes this scanner before llhttp parses it, and
 * the two must agree on where each message ends (proxy/conn.c checks that).
 * The scanner knows only the grammar of RFC 9112 in its strictest reading —
 * CRLF line endings, token methods and field names, no whitespace before a
 * colon, no obs-fold, no control bytes, hex chunk sizes — so a request that an
 * origin or another intermediary could frame differently never reaches
 * llhttp, whose lenient corners (a value folded after an empty first line, a
 * bare LF ending the trailer section) are then out of reach.
 *
 * The scanner is a byte-at-a-time state machine over a small struct: input
 * may arrive split at any point, and the verdict cannot depend on where.
 */
#ifndef SHIELD_H1SCAN_H
#define SHIELD_H1SCAN_H

#include <stddef.h>
#include <stdint.h>

/* Results of h1_scan_head() and h1_scan_chunked(); any other value is an HTTP
 * status (400, 414, 431, 501, 505) to reject the request with. */
#define H1_MORE 0  /* every byte consumed; the message continues */
#define H1_DONE -1 /* the head or the chunked body ends within the input */

typedef struct h1_limits {
    size_t max_url;         /* request-target bytes (414 beyond) */
    size_t max_header_size; /* raw bytes of the header (or trailer) section (431 beyond) */
    size_t max_headers;     /* fields in the header (or trailer) section (431 beyond) */
} h1_limits;

typedef struct h1_scan {
    uint8_t state;
    uint8_t pos;         /* index into the literal being matched ("HTTP/x.y") */
    uint8_t empty_lines; /* CRLFs before the request line */
    uint8_t name_len;    /* bytes of the current field name kept in name[] */
    uint8_t version;     /* 10 or 11 once the request line is complete */
    uint8_t size_digits; /* hex digits of the current chunk size */
    uint8_t trailers;    /* the field section being scanned is the trailers */
    char method[8];      /* the method's first bytes (NUL-terminated when it fits) */
    uint8_t method_len;  /* saturates at 255 */
    char name[24];       /* the current trailer field name (prefix), for the framing check */
    uint32_t target_len;
    uint32_t section_bytes; /* of the current header or trailer section */
    uint32_t fields;        /* in the current header or trailer section */
    uint64_t chunk_left;    /* data bytes of the current chunk still to come */
    uint64_t head_len;      /* bytes of the head (including empty lines before it) */
} h1_scan;

/* Start a new request (the head scanner) on s. */
void h1_scan_init(h1_scan *s);

/*
 * Scan n more bytes of a request head. H1_MORE: all consumed, the head goes on.
 * The method must be a token (which methods Shield serves is llhttp's and the
 * input rules' business); CONNECT is refused with 501.
 * H1_DONE: the head ends after *used bytes of p (s->head_len is its total
 * length, s->version 10 or 11). Otherwise the status to reject with, and
 * *detail says why (a static string).
 */
int h1_scan_head(h1_scan *s, const h1_limits *lim, const char *p, size_t n, size_t *used,
                 const char **detail);

/* Start scanning a chunked body (after the head). */
void h1_scan_chunked_init(h1_scan *s);

/*
 * Scan n more bytes of a chunked body, trailer section included. Returns as
 * h1_scan_head(): H1_DONE with *used = the bytes of p up to and including the
 * final CRLF. Trailer fields that carry framing or routing (Content-Length,
 * Transfer-Encoding, Host...) are refused: a peer merging trailers into the
 * head would be confused by them.
 *
 * With out (room for n bytes), the scanned bytes minus chunk extensions are
 * copied there (*outlen of them): the same body framed without the one part
 * of the grammar llhttp 8.1 misreads (it refuses ";a=1;b=2", a valid list).
 */
int h1_scan_chunked(h1_scan *s, const h1_limits *lim, const char *p, size_t n, size_t *used,
                    const char **detail, char *out, size_t *outlen);

#endif
