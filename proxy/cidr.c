/*
 * Address ranges for trusted proxies, custom-policy IpAddress conditions and
 * rate-limit keys. Everything is compared in the 16-byte IPv6 form, IPv4 as
 * ::ffff:a.b.c.d, so a client seen on a dual-stack socket as a v4-mapped
 * address matches the same ranges as one seen on a v4 socket.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "shield/config.h"

static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int sh_ip_parse(const char *s, size_t len, uint8_t out[16])
{
    char buf[64];
    struct in_addr a4;

    /* inet_pton would stop at a NUL and accept "1.2.3.4\0junk". */
    if (len == 0 || len >= sizeof buf || memchr(s, '\0', len)) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        memcpy(out, v4_prefix, 12);
        memcpy(out + 12, &a4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, buf, out) == 1 ? 0 : -1;
}

int sh_ip_from_sockaddr(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa->sa_family == AF_INET) {
        memcpy(out, v4_prefix, 12);
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

int sh_cidr_parse(const char *s, sh_cidr *out)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    uint8_t ip[16];
    unsigned bits, max;

    if (sh_ip_parse(s, alen, ip) != 0) return -1;
    /* A v4 literal is v4-mapped; its prefix counts from bit 96. */
    int v4 = memchr(s, ':', alen) == NULL;
    max = v4 ? 32 : 128;
    if (slash) {
        const char *p = slash + 1;
        char *end;
        if (*p < '0' || *p > '9') return -1;
        unsigned long b = strtoul(p, &end, 10);
        if (*end || b > max || (p[0] == '0' && p[1])) return -1;
        bits = (unsigned)b;
    } else {
        bits = max;
    }
    if (v4) bits += 96;
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits >= (i + 1) * 8 ? 8 : bits > i * 8 ? bits - i * 8 : 0;
        ip[i] &= (uint8_t)(0xff00u >> keep);
    }
    memcpy(out->addr, ip, 16);
    out->bits = bits;
    return 0;
}

int sh_cidr_match(const sh_cidr *c, const uint8_t ip[16])
{
    unsigned full = c->bits / 8, rest = c->bits % 8;

    if (memcmp(c->addr, ip, full) != 0) return 0;
    if (!rest) return 1;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (ip[full] & mask) == c->addr[full];
}

int sh_cidr_match_any(const sh_cidr *c, size_t n, const uint8_t ip[16])
{
    for (size_t i = 0; i < n; i++)
        if (sh_cidr_match(&c[i], ip)) return 1;
    return 0;
}
