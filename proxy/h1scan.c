/*
 * The strict request framing scanner (shield/h1scan.h). It accepts a subset
 * of what llhttp accepts, byte for byte, so that conn.c can require the two
 * to agree on every message boundary.
 */
#include "shield/h1scan.h"

#include <string.h>
#include <strings.h>

#include "shield/http.h"

enum {
    /* the request line */
    S_START,    /* before the request line: a method byte or an empty line */
    S_START_LF, /* CR of an empty line seen */
    S_METHOD,
    S_TARGET,
    S_VERSION, /* "HTTP/d.d", pos = index */
    S_RL_LF,   /* CR after the version seen */
    /* a field section: the head's fields, or the trailers */
    F_LINE, /* start of a field line, or of the empty line ending the section */
    F_NAME,
    F_VALUE,
    F_VALUE_LF,
    F_END_LF,
    F_DONE,
    /* a chunked body before its trailers */
    C_SIZE_FIRST,
    C_SIZE,
    C_EXT,
    C_SIZE_LF,
    C_DATA,
    C_DATA_CR,
    C_DATA_LF,
};

/* Byte classes, one load per byte: this runs on every byte of every head. */
enum {
    B_TCHAR = 1,  /* RFC 9110 §5.6.2 token character */
    B_VALUE = 2,  /* field-value byte (§5.5): VCHAR, obs-text, SP, HTAB */
    B_TARGET = 4, /* request-target byte: printable ASCII but SP */
};
static uint8_t cls[256];

__attribute__((constructor)) static void cls_init(void)
{
    for (int ch = 0; ch < 256; ch++)
        cls[ch] = (uint8_t)((sh_is_tchar((unsigned char)ch) ? B_TCHAR : 0) |
                            ((ch >= 0x20 && ch != 0x7f) || ch == '\t' ? B_VALUE : 0) |
                            (ch > ' ' && ch < 0x7f ? B_TARGET : 0));
}

void h1_scan_init(h1_scan *s)
{
    memset(s, 0, sizeof(*s));
    s->state = S_START;
}

void h1_scan_chunked_init(h1_scan *s)
{
    s->state = C_SIZE_FIRST;
    s->trailers = 0;
    s->size_digits = 0;
    s->chunk_left = 0;
    s->section_bytes = 0;
    s->fields = 0;
    s->name_len = 0;
}

static int fail(const char **detail, const char *why, int status)
{
    *detail = why;
    return status;
}

/* Trailer fields a peer could take for framing or routing of the message. */
static int forbidden_trailer(const h1_scan *s)
{
    static const char *const names[] = {"Content-Length", "Transfer-Encoding", "Host", "Connection",
                                        "Upgrade",        "Trailer",           "TE",   "Keep-Alive",
                                        "Expect"};
    if (s->name_len >= sizeof s->name) return 0; /* longer than any of them */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == s->name_len && strncasecmp(names[i], s->name, s->name_len) == 0)
            return 1;
    return 0;
}

/*
 * One byte of a field section: the head's fields (after the request line) or
 * the trailers. Both obey the same line rules and limits; the bytes count
 * against max_header_size except the CRLF that ends the section. H1_MORE,
 * H1_DONE after that CRLF, or a status.
 */
static inline __attribute__((always_inline)) int field_byte(h1_scan *s, const h1_limits *lim,
                                                            unsigned char ch, const char **detail)
{
    switch (s->state) {
    case F_LINE:
        if (ch == '\r') {
            s->state = F_END_LF;
            return H1_MORE;
        }
        if (!(cls[ch] & B_TCHAR))
            return fail(detail,
                        ch == ' ' || ch == '\t' ? "obs-fold or whitespace before a field"
                                                : "invalid byte in a field name",
                        400);
        if (++s->fields > lim->max_headers)
            return fail(detail, s->trailers ? "too many trailer fields" : "too many header fields",
                        431);
        s->state = F_NAME;
        s->name_len = 0;
        /* fall through */
    case F_NAME:
        if (ch == ':') {
            if (s->trailers && forbidden_trailer(s))
                return fail(detail, "framing field in trailers", 400);
            s->state = F_VALUE;
            break;
        }
        if (!(cls[ch] & B_TCHAR)) return fail(detail, "invalid byte in a field name", 400);
        if (s->trailers && s->name_len < sizeof s->name) s->name[s->name_len++] = (char)ch;
        break;
    case F_VALUE:
        if (ch == '\r') {
            s->state = F_VALUE_LF;
            break;
        }
        if (!(cls[ch] & B_VALUE)) return fail(detail, "control byte in a field value", 400);
        break;
    case F_VALUE_LF:
        if (ch != '\n') return fail(detail, "bare CR in a field value", 400);
        s->state = F_LINE;
        break;
    case F_END_LF:
        if (ch != '\n') return fail(detail, "bare CR ending a field section", 400);
        s->state = F_DONE;
        return H1_DONE;
    default:
        return fail(detail, "scanned past the end of the message", 400);
    }
    if (++s->section_bytes > lim->max_header_size)
        return fail(detail, s->trailers ? "trailer section too large" : "request head too large",
                    431);
    return H1_MORE;
}

/*
 * The bytes from p on that the state machine would only count: a run of
 * target bytes, field-name bytes (not in trailers, whose names are kept) or
 * value bytes, cut where a limit would be crossed, so that the byte doing it
 * goes through the state machine as if every byte had. Most of a head is such
 * runs; scanning them in a tight loop keeps the scanner cheap on the hit path.
 */
static inline size_t plain_run(h1_scan *s, const h1_limits *lim, const unsigned char *p, size_t n)
{
    size_t room = lim->max_header_size > s->section_bytes ? lim->max_header_size - s->section_bytes
                                                          : 0,
           k = 0;
    if (n > room) n = room;
    switch (s->state) {
    case S_TARGET:
        if (lim->max_url <= s->target_len) return 0;
        if (n > lim->max_url - s->target_len) n = lim->max_url - s->target_len;
        while (k < n && (cls[p[k]] & B_TARGET))
            k++;
        s->target_len += (uint32_t)k;
        break;
    case F_NAME:
        if (s->trailers) return 0;
        while (k < n && (cls[p[k]] & B_TCHAR))
            k++;
        break;
    case F_VALUE: /* the CR that ends a value is not a value byte */
        while (k < n && (cls[p[k]] & B_VALUE))
            k++;
        break;
    default:
        return 0;
    }
    s->section_bytes += (uint32_t)k;
    return k;
}

int h1_scan_head(h1_scan *s, const h1_limits *lim, const char *p, size_t n, size_t *used,
                 const char **detail)
{
    static const char version[] = "HTTP/1.1";
    size_t i = 0;
    for (; i < n; i++) {
        if (s->state == S_TARGET || s->state == F_NAME || s->state == F_VALUE) {
            size_t run = plain_run(s, lim, (const unsigned char *)p + i, n - i);
            s->head_len += run;
            i += run;
            if (i == n) break;
        }
        unsigned char ch = (unsigned char)p[i];
        switch (s->state) {
        case S_START:
            if (ch == '\r') {
                s->state = S_START_LF;
                break;
            }
            if (!(cls[ch] & B_TCHAR)) return fail(detail, "malformed request line", 400);
            s->state = S_METHOD;
            /* fall through */
        case S_METHOD:
            if (ch == ' ') {
                if (s->method_len == 0) return fail(detail, "malformed request line", 400);
                s->method[s->method_len < sizeof s->method ? s->method_len : 0] = '\0';
                /* CONNECT asks for a tunnel: the bytes after it are not HTTP
                 * to the client, so it cannot be answered and read on from. */
                if (strcmp(s->method, "CONNECT") == 0)
                    return fail(detail, "method not implemented", 501);
                s->state = S_TARGET;
                break;
            }
            if (!(cls[ch] & B_TCHAR)) return fail(detail, "malformed method", 400);
            if ((size_t)s->method_len + 1 < sizeof s->method) s->method[s->method_len] = (char)ch;
            if (s->method_len < UINT8_MAX) s->method_len++;
            break;
        case S_START_LF:
            if (ch != '\n') return fail(detail, "bare CR before the request", 400);
            if (++s->empty_lines > 4) return fail(detail, "empty lines before the request", 400);
            s->state = S_START;
            break;
        case S_TARGET:
            if (ch == ' ') {
                if (s->target_len == 0) return fail(detail, "malformed request line", 400);
                s->state = S_VERSION;
                s->pos = 0;
                break;
            }
            /* RFC 9112 §3.2: the target is ASCII. Raw bytes >= 0x80 would reach
             * the cache key as they are but the origin percent-encoded (the
             * origin client escapes them in the path): refused, not guessed. */
            if (ch <= ' ' || ch >= 0x7f) return fail(detail, "malformed request target", 400);
            if (++s->target_len > lim->max_url) return fail(detail, "URL too long", 414);
            break;
        case S_VERSION:
            if (s->pos == 8) {
                if (ch != '\r') return fail(detail, "malformed request line", 400);
                s->state = S_RL_LF;
                break;
            }
            if (s->pos == 5 || s->pos == 7) {
                if (ch < '0' || ch > '9') return fail(detail, "malformed HTTP version", 400);
            } else if (ch != (unsigned char)version[s->pos]) {
                return fail(detail, "malformed HTTP version", 400);
            }
            if (s->pos == 5) s->version = (uint8_t)((ch - '0') * 10);
            if (s->pos == 7) s->version = (uint8_t)(s->version + (ch - '0'));
            s->pos++;
            break;
        case S_RL_LF:
            if (ch != '\n') return fail(detail, "malformed request line", 400);
            if (s->version != 10 && s->version != 11)
                return fail(detail, "unsupported HTTP version", 505);
            s->state = F_LINE;
            s->fields = 0;
            break;
        default: { /* the fields, counted by field_byte() */
            int rc = field_byte(s, lim, ch, detail);
            s->head_len++;
            if (rc == H1_DONE) {
                *used = i + 1;
                return H1_DONE;
            }
            if (rc != H1_MORE) return rc;
            continue;
        }
        }
        s->head_len++;
        /* The limit covers the request line (up to its LF, after which the
         * state is F_LINE) and the fields, as CloudFront's does; empty lines
         * before them are bounded apart. */
        if (s->state >= S_METHOD && s->state <= F_LINE && ++s->section_bytes > lim->max_header_size)
            return fail(detail, "request head too large", 431);
    }
    *used = i;
    return H1_MORE;
}
static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int h1_scan_chunked(h1_scan *s, const h1_limits *lim, const char *p, size_t n, size_t *used,
                    const char **detail, char *out, size_t *outlen)
{
    size_t i = 0, o = 0;
    if (outlen) *outlen = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)p[i];
        /* Everything but chunk extensions (';' up to the CR) is copied out. */
        if (out && !(s->state == C_EXT && ch != '\r') && !(s->state == C_SIZE && ch == ';')) {
            if (s->state == C_DATA) {
                size_t take = n - i < s->chunk_left ? n - i : (size_t)s->chunk_left;
                memcpy(out + o, p + i, take);
                o += take;
            } else {
                out[o++] = (char)ch;
            }
            *outlen = o;
        }
        switch (s->state) {
        case C_SIZE_FIRST:
        case C_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (++s->size_digits > 16 || s->chunk_left > (UINT64_MAX >> 4))
                    return fail(detail, "chunk size too large", 400);
                s->chunk_left = (s->chunk_left << 4) | (uint64_t)v;
                s->state = C_SIZE;
                break;
            }
            if (s->state == C_SIZE_FIRST) return fail(detail, "malformed chunk size", 400);
            if (ch == ';') {
                s->state = C_EXT;
                s->section_bytes = 0;
            } else if (ch == '\r') {
                s->state = C_SIZE_LF;
            } else {
                return fail(detail, "malformed chunk size", 400);
            }
            break;
        }
        case C_EXT:
            if (ch == '\r') {
                s->state = C_SIZE_LF;
                break;
            }
            if (!(cls[ch] & B_VALUE)) return fail(detail, "control byte in chunk extension", 400);
            if (++s->section_bytes > lim->max_header_size)
                return fail(detail, "chunk extension too large", 400);
            break;
        case C_SIZE_LF:
            if (ch != '\n') return fail(detail, "bare CR in chunk size line", 400);
            s->size_digits = 0;
            if (s->chunk_left == 0) {
                s->state = F_LINE;
                s->trailers = 1;
                s->section_bytes = 0;
                s->fields = 0;
            } else {
                s->state = C_DATA;
            }
            break;
        case C_DATA: {
            size_t take = n - i;
            if (take > s->chunk_left) take = (size_t)s->chunk_left;
            s->chunk_left -= take;
            i += take;
            if (s->chunk_left == 0) s->state = C_DATA_CR;
            continue;
        }
        case C_DATA_CR:
            if (ch != '\r') return fail(detail, "chunk data longer than its size", 400);
            s->state = C_DATA_LF;
            break;
        case C_DATA_LF:
            if (ch != '\n') return fail(detail, "bare CR after chunk data", 400);
            s->state = C_SIZE_FIRST;
            break;
        default: {
            int rc = field_byte(s, lim, ch, detail);
            if (rc == H1_DONE) {
                *used = i + 1;
                return H1_DONE;
            }
            if (rc != H1_MORE) return rc;
            break;
        }
        }
        i++;
    }
    *used = i;
    return H1_MORE;
}
