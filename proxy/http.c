#include "shield/http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "shield/alloc.h"

static void hdrlist_grow(sh_hdrlist *l)
{
    if (l->n < l->cap) return;
    l->cap = l->cap ? l->cap * 2 : 16;
    l->v = sh_realloc(l->v, l->cap * sizeof(*l->v));
}

void sh_hdrlist_add(sh_hdrlist *l, const char *name, size_t nlen, const char *value, size_t vlen)
{
    hdrlist_grow(l);
    sh_header *h = &l->v[l->n++];
    /* One block for both strings: half the allocations on every response.
     * The block belongs to `name`. */
    char *b = sh_malloc(nlen + vlen + 2);
    memcpy(b, name, nlen);
    b[nlen] = '\0';
    memcpy(b + nlen + 1, value, vlen);
    b[nlen + 1 + vlen] = '\0';
    h->name = b;
    h->name_len = nlen;
    h->value = b + nlen + 1;
    h->value_len = vlen;
}

void sh_hdrlist_adds(sh_hdrlist *l, const char *name, const char *value)
{
    sh_hdrlist_add(l, name, strlen(name), value, strlen(value));
}

size_t sh_hdrlist_del(sh_hdrlist *l, const char *name)
{
    size_t removed = 0, j = 0, len = strlen(name);
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].name_len == len && strncasecmp(l->v[i].name, name, len) == 0) {
            sh_free((void *)l->v[i].name);
            removed++;
            continue;
        }
        l->v[j++] = l->v[i];
    }
    l->n = j;
    return removed;
}

void sh_hdrlist_set(sh_hdrlist *l, const char *name, const char *value)
{
    sh_hdrlist_del(l, name);
    sh_hdrlist_adds(l, name, value);
}

const sh_header *sh_hdrlist_get(const sh_hdrlist *l, const char *name)
{
    return sh_hdr_find(l->v, l->n, name);
}

void sh_hdrlist_clear(sh_hdrlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        sh_free((void *)l->v[i].name);
    sh_free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int sh_hdr_is(const char *name, size_t len, const char *cname)
{
    return strlen(cname) == len && strncasecmp(name, cname, len) == 0;
}

const sh_header *sh_hdr_find(const sh_header *h, size_t n, const char *cname)
{
    size_t len = strlen(cname); /* once, not per header: this runs many times a request */
    for (size_t i = 0; i < n; i++)
        if (h[i].name_len == len && strncasecmp(h[i].name, cname, len) == 0) return &h[i];
    return NULL;
}

/* Is name one of the comma-separated tokens of a Connection header value? */
static int in_connection_list(const char *name, size_t len, const char *v, size_t vlen)
{
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < vlen && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i - start == len && strncasecmp(v + start, name, len) == 0) return 1;
    }
    return 0;
}

int sh_hdr_is_hop_by_hop(const char *name, size_t len, const char *connection, size_t clen)
{
    static const char *const hop[] = {"Connection",
                                      "Keep-Alive",
                                      "Proxy-Connection",
                                      "TE",
                                      "Trailer",
                                      "Trailers",
                                      "Transfer-Encoding",
                                      "Upgrade",
                                      "Proxy-Authorization",
                                      "Proxy-Authenticate",
                                      "HTTP2-Settings"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (sh_hdr_is(name, len, hop[i])) return 1;
    return connection && in_connection_list(name, len, connection, clen);
}

const char *sh_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

size_t sh_http_date(int64_t t, char *out)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    /* Fixed-width fields: built by hand, this is on every response. */
    char *p = out;
    memcpy(p, days + tm.tm_wday * 3, 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    *p++ = (char)('0' + tm.tm_mday / 10);
    *p++ = (char)('0' + tm.tm_mday % 10);
    *p++ = ' ';
    memcpy(p, months + tm.tm_mon * 3, 3);
    p += 3;
    *p++ = ' ';
    int y = tm.tm_year + 1900;
    *p++ = (char)('0' + (y / 1000) % 10);
    *p++ = (char)('0' + (y / 100) % 10);
    *p++ = (char)('0' + (y / 10) % 10);
    *p++ = (char)('0' + y % 10);
    *p++ = ' ';
    *p++ = (char)('0' + tm.tm_hour / 10);
    *p++ = (char)('0' + tm.tm_hour % 10);
    *p++ = ':';
    *p++ = (char)('0' + tm.tm_min / 10);
    *p++ = (char)('0' + tm.tm_min % 10);
    *p++ = ':';
    *p++ = (char)('0' + tm.tm_sec / 10);
    *p++ = (char)('0' + tm.tm_sec % 10);
    memcpy(p, " GMT", 4);
    p += 4;
    *p = '\0';
    return (size_t)(p - out);
}

int sh_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int sh_host_valid(const char *h, size_t len)
{
    if (len == 0 || len > 255) return 0;
    size_t i = 0;
    if (h[0] == '[') {
        /* IP-literal: hex digits, ':' and '.' (for embedded IPv4) only. */
        for (i = 1; i < len && h[i] != ']'; i++) {
            char c = h[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.'))
                return 0;
        }
        if (i >= len || i == 1) return 0;
        i++;
    } else {
        /* reg-name / IPv4: unreserved and sub-delims, no '%' (pct-encoding in a
         * host is legal but only ever seen in attacks), no '@', '/', spaces. */
        for (; i < len && h[i] != ':'; i++) {
            char c = h[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_' || c == '~'))
                return 0;
        }
        if (i == 0) return 0;
    }
    if (i == len) return 1;
    if (h[i] != ':') return 0;
    size_t digits = len - i - 1;
    if (digits == 0 || digits > 5) return 0;
    unsigned port = 0;
    for (size_t j = i + 1; j < len; j++) {
        if (h[j] < '0' || h[j] > '9') return 0;
        port = port * 10 + (unsigned)(h[j] - '0');
    }
    return port <= 65535;
}
