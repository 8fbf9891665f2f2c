/*
 * Client identity: who the client is, for geo, rate limits, signed-URL IP
 * conditions and the logs.
 *
 * The socket peer is the client unless it is one of trusted_proxies.cidrs.
 * Only then are forwarding headers believed, in this order:
 *   1. CloudFront-Viewer-Address (viewer_address = true): "ip:port", an IPv6
 *      address written bare with the port after its last ':' (CloudFront's
 *      form, "2001:db8::1:46532") or bracketed ("[2001:db8::1]:46532");
 *   2. otherwise the configured header (X-Forwarded-For): every line of it,
 *      in order, read as one comma-separated list. position "last-untrusted"
 *      walks it from the right and takes the first address that is not itself
 *      a trusted proxy (each proxy appends the address it saw, so everything
 *      right of that point was written by proxies we trust and everything left
 *      of it could be forged by the client); if every address is trusted the
 *      left-most one is taken. position "first" takes the left-most address,
 *      which is only safe when the trusted proxy overwrites the header.
 *   Entries may be bare addresses, "[v6]", "[v6]:port" or "v4:port"; empty
 *   list elements are skipped (RFC 9110 list syntax). An entry that is not an
 *   address (e.g. "unknown") stops the search and the peer stays the client:
 *   anything else would let a malformed value pick a different client.
 *   A malformed or duplicated CloudFront-Viewer-Address keeps the peer too,
 *   without falling back to the other header: the proxy we trust said
 *   something we cannot read, so nothing it said is used.
 * The country header (country_header, e.g. CloudFront-Viewer-Country) is
 * likewise only believed from a trusted peer, and only when it appears once
 * with two ASCII letters.
 *
 * From an untrusted peer all these headers are ignored, whatever they say.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "shield/module.h"

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int parse_port(const char *s, size_t n, int *port)
{
    unsigned v = 0;
    if (n == 0 || n > 5) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535) return -1;
    *port = (int)v;
    return 0;
}

/* "[v6]" or "[v6]:port" (port required when need_port). */
static int parse_bracketed(const char *s, size_t n, uint8_t ip[16], int *port, int need_port)
{
    const char *close = memchr(s, ']', n);
    if (!close) return -1;
    size_t alen = (size_t)(close - s - 1), rest = n - alen - 2;
    /* Brackets are for IPv6 only. */
    if (!memchr(s + 1, ':', alen) || sh_ip_parse(s + 1, alen, ip) != 0) return -1;
    if (rest == 0) return need_port ? -1 : 0;
    if (close[1] != ':') return -1;
    return parse_port(close + 2, rest - 1, port);
}

/* One X-Forwarded-For element (already trimmed, not empty). */
static int parse_forwarded(const char *s, size_t n, uint8_t ip[16], int *port)
{
    *port = 0;
    if (s[0] == '[') return parse_bracketed(s, n, ip, port, 0);
    const char *c1 = memchr(s, ':', n);
    if (c1 && !memchr(c1 + 1, ':', n - (size_t)(c1 - s) - 1)) {
        /* One colon: "a.b.c.d:port" (a bare IPv6 address has at least two). */
        if (sh_ip_parse(s, (size_t)(c1 - s), ip) != 0 || memcmp(ip, v4_mapped, 12) != 0) return -1;
        return parse_port(c1 + 1, n - (size_t)(c1 - s) - 1, port);
    }
    return sh_ip_parse(s, n, ip);
}

/* CloudFront-Viewer-Address: the port is mandatory and follows the last ':'. */
static int parse_viewer_address(const char *s, size_t n, uint8_t ip[16], int *port)
{
    while (n && is_ows(*s))
        s++, n--;
    while (n && is_ows(s[n - 1]))
        n--;
    if (n == 0) return -1;
    if (s[0] == '[') return parse_bracketed(s, n, ip, port, 1);
    const char *last = NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ':') last = s + i;
    if (!last) return -1;
    if (sh_ip_parse(s, (size_t)(last - s), ip) != 0) return -1;
    return parse_port(last + 1, n - (size_t)(last - s) - 1, port);
}

static void set_client(sh_req *req, const uint8_t ip[16], int port)
{
    memcpy(req->client_addr, ip, 16);
    if (memcmp(ip, v4_mapped, 12) == 0)
        inet_ntop(AF_INET, ip + 12, req->client_ip, sizeof req->client_ip);
    else
        inet_ntop(AF_INET6, ip, req->client_ip, sizeof req->client_ip);
    /* The socket's port belongs to the proxy; 0 = the client's is unknown. */
    req->client_port = port;
    req->client_forwarded = 1;
}

typedef enum { WALK_MORE, WALK_FOUND, WALK_STOP } walk_rc;

typedef struct walk {
    const sh_trusted_conf *t;
    uint8_t ip[16];
    int port;
    int have; /* ip/port hold a trusted candidate (all-trusted case) */
} walk;

static walk_rc walk_elem(walk *w, const char *s, size_t n)
{
    uint8_t ip[16];
    int port;

    while (n && is_ows(*s))
        s++, n--;
    while (n && is_ows(s[n - 1]))
        n--;
    if (n == 0) return WALK_MORE;
    if (parse_forwarded(s, n, ip, &port) != 0) return WALK_STOP;
    memcpy(w->ip, ip, 16);
    w->port = port;
    w->have = 1;
    if (!w->t->use_first && sh_cidr_match_any(w->t->cidrs, w->t->ncidrs, ip)) return WALK_MORE;
    return WALK_FOUND;
}

/* Right to left over every line of the header, last line first. */
static walk_rc walk_last_untrusted(const sh_req *req, walk *w)
{
    for (size_t i = req->nheaders; i-- > 0;) {
        const sh_header *h = &req->headers[i];
        if (!sh_hdr_is(h->name, h->name_len, w->t->header)) continue;
        size_t end = h->value_len;
        for (size_t j = h->value_len; j-- > 0;) {
            if (h->value[j] != ',') continue;
            walk_rc rc = walk_elem(w, h->value + j + 1, end - j - 1);
            if (rc != WALK_MORE) return rc;
            end = j;
        }
        walk_rc rc = walk_elem(w, h->value, end);
        if (rc != WALK_MORE) return rc;
    }
    return w->have ? WALK_FOUND : WALK_STOP;
}

/* The left-most non-empty element of the first line that has one. */
static walk_rc walk_first(const sh_req *req, walk *w)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        const sh_header *h = &req->headers[i];
        if (!sh_hdr_is(h->name, h->name_len, w->t->header)) continue;
        size_t start = 0;
        for (size_t j = 0; j <= h->value_len; j++) {
            if (j < h->value_len && h->value[j] != ',') continue;
            walk_rc rc = walk_elem(w, h->value + start, j - start);
            if (rc != WALK_MORE) return rc;
            start = j + 1;
        }
    }
    return WALK_STOP;
}

static void take_country(sh_req *req, const char *name)
{
    const sh_header *h = sh_req_header(req, name);
    if (!h || sh_req_header_count(req, name) != 1) return;
    const char *v = h->value;
    size_t n = h->value_len;
    while (n && is_ows(*v))
        v++, n--;
    while (n && is_ows(v[n - 1]))
        n--;
    if (n != 2) return;
    char cc[3];
    for (int i = 0; i < 2; i++) {
        char c = v[i];
        if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
        if (c < 'A' || c > 'Z') return;
        cc[i] = c;
    }
    cc[2] = '\0';
    memcpy(req->country, cc, 3);
}

static sh_rc identity_run(sh_req *req, void *state)
{
    const sh_trusted_conf *t = &req->cfg->trusted;
    uint8_t peer[16];

    (void)state;
    if (!t->ncidrs) return SH_CONTINUE;
    if (sh_ip_from_sockaddr((const struct sockaddr *)&req->peer, peer) != 0 ||
        !sh_cidr_match_any(t->cidrs, t->ncidrs, peer))
        return SH_CONTINUE;

    if (t->country_header && *t->country_header) take_country(req, t->country_header);

    if (t->viewer_address) {
        size_t n = sh_req_header_count(req, "CloudFront-Viewer-Address");
        if (n) {
            const sh_header *h = sh_req_header(req, "CloudFront-Viewer-Address");
            uint8_t ip[16];
            int port;
            if (n == 1 && parse_viewer_address(h->value, h->value_len, ip, &port) == 0)
                set_client(req, ip, port);
            return SH_CONTINUE;
        }
    }

    walk w = {.t = t};
    if ((t->use_first ? walk_first(req, &w) : walk_last_untrusted(req, &w)) == WALK_FOUND)
        set_client(req, w.ip, w.port);
    return SH_CONTINUE;
}

const sh_module sh_module_identity = {
    .name = "identity",
    .phase = {[SH_PHASE_IDENTITY] = identity_run},
};
