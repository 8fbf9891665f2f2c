/*
 * Configuration: the immutable snapshot every worker reads.
 *
 * The file is libconfig syntax (conf/shield.conf documents every key and its
 * default). sh_config_load() parses and validates it completely: every error is
 * reported as "file:line: message" (all of them, not just the first), unknown
 * keys are errors, durations accept "250ms", "30s", "5m", "1h", "2d" or a bare
 * integer (seconds), sizes accept "512", "20K", "1M", "1G", "1T" (powers of 1024)
 * or a bare integer (bytes).
 *
 * A snapshot is never modified after load; reload (a later issue) builds a new
 * one and swaps it, so workers may keep plain pointers into it for the lifetime
 * of a request.
 */
#ifndef SHIELD_CONFIG_H
#define SHIELD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* HTTP methods as a bit set, used for allowed_methods. */
enum {
    SH_M_GET = 1 << 0,
    SH_M_HEAD = 1 << 1,
    SH_M_OPTIONS = 1 << 2,
    SH_M_PUT = 1 << 3,
    SH_M_POST = 1 << 4,
    SH_M_PATCH = 1 << 5,
    SH_M_DELETE = 1 << 6,
};
#define SH_M_DEFAULT (SH_M_GET | SH_M_HEAD | SH_M_OPTIONS)

/* One listening socket. */
typedef struct sh_listen_conf {
    char *address;                /* as written: "127.0.0.1:8080", "[::1]:8080" */
    struct sockaddr_storage addr; /* resolved numeric address */
    socklen_t addrlen;
    int tls; /* terminate TLS with the certificates of sh_config.tls */
} sh_listen_conf;

/*
 * An address range. IPv4 ranges are stored as IPv4-mapped IPv6 (::ffff:a.b.c.d,
 * prefix + 96) so one comparison serves both families and a v4 client arriving
 * on a dual-stack socket as ::ffff:a.b.c.d matches the v4 range.
 */
typedef struct sh_cidr {
    uint8_t addr[16]; /* network address, host bits cleared */
    unsigned bits;    /* prefix length over the 128-bit form */
} sh_cidr;

/* Parse "10.0.0.0/8", "127.0.0.1", "::1/128", "2001:db8::/32". 0 or -1. */
int sh_cidr_parse(const char *s, sh_cidr *out);
/* Textual IPv4/IPv6 address (v4-mapped accepted) to the 16-byte form. 0 or -1. */
int sh_ip_parse(const char *s, size_t len, uint8_t out[16]);
/* Socket address to the 16-byte form. 0 or -1 (not AF_INET/AF_INET6). */
int sh_ip_from_sockaddr(const struct sockaddr *sa, uint8_t out[16]);
/* Is the 16-byte address inside the range? */
int sh_cidr_match(const sh_cidr *c, const uint8_t ip[16]);
/* Inside any of n ranges? */
int sh_cidr_match_any(const sh_cidr *c, size_t n, const uint8_t ip[16]);

/* One certificate/key pair; the names it answers for come from the certificate. */
typedef struct sh_tls_cert_conf {
    char *cert; /* PEM file: certificate, then its chain */
    char *key;  /* PEM file: private key */
    int line;
} sh_tls_cert_conf;

/* TLS termination (proxy/tls.c). */
typedef struct sh_tls_conf {
    char *policy;            /* only "TLSv1.2_2021" (CloudFront's security policy) */
    sh_tls_cert_conf *certs; /* the first one is the default for unknown or absent SNI */
    size_t ncerts;
    int session_tickets;         /* default true */
    uint64_t ticket_rotate_ms;   /* new ticket-encryption key this often, default 1h */
    uint64_t session_timeout_ms; /* session lifetime (IDs and tickets), default 5m (timeouts.header
                                    bounds the handshake) */
    int line;
} sh_tls_conf;

/* Who the client is (modules/identity.c). */
typedef struct sh_trusted_conf {
    sh_cidr *cidrs; /* peers whose forwarding headers are believed; none = nobody's */
    size_t ncidrs;
    char *header;         /* default "X-Forwarded-For" */
    int use_first;        /* position = "first": the first address; default "last-untrusted":
                             the right-most address not itself in cidrs */
    int viewer_address;   /* honour CloudFront-Viewer-Address (ip:port), default true */
    char *country_header; /* e.g. "CloudFront-Viewer-Country"; "" (default) = not honoured */
} sh_trusted_conf;

/* One CloudFront public key. */
typedef struct sh_cf_key_conf {
    char *id;         /* Key-Pair-Id */
    char *public_key; /* PEM file it was loaded from */
    void *pkey;       /* EVP_PKEY *, RSA or EC P-256, owned by the snapshot */
    int line;
} sh_cf_key_conf;

/* CloudFront signed URLs and cookies (modules/signed_url.c). */
typedef struct sh_signed_urls_conf {
    sh_cf_key_conf *keys; /* every key trusted by behaviors with signed = "cloudfront" */
    size_t nkeys;
} sh_signed_urls_conf;

/* One SigV4 access key accepted from private-mirror clients. */
typedef struct sh_sigv4_key_conf {
    char *access_key;
    char *secret; /* from secret or secret_file (first line, trimmed) */
    int line;
} sh_sigv4_key_conf;

/* SigV4 verification (modules/sigv4.c). */
typedef struct sh_sigv4_conf {
    char *region;  /* default "us-east-1" */
    char *service; /* default "s3" */
    sh_sigv4_key_conf *keys;
    size_t nkeys;
    uint64_t max_skew_ms; /* default 15 min (S3's RequestTimeTooSkewed) */
} sh_sigv4_conf;

typedef enum { SH_GEO_NONE, SH_GEO_ALLOWLIST, SH_GEO_BLOCKLIST } sh_geo_mode;

/* Geo restriction (modules/geo.c). */
typedef struct sh_geo_conf {
    char *database; /* .mmdb path; "" (default) = no geo */
    sh_geo_mode mode;
    char (*countries)[3]; /* upper-case ISO 3166-1 alpha-2 */
    size_t ncountries;
    int line;
} sh_geo_conf;

/* WAF rate-based rule (modules/ratelimit.c). */
typedef struct sh_ratelimit_conf {
    int enabled;       /* the group is present and enabled (default true when present) */
    uint64_t limit;    /* requests per key per window, default 2000 (>= 10) */
    uint64_t window_s; /* 60, 120, 300 (default) or 600 */
    int forwarded;     /* key = "forwarded_ip" (else "ip", the default) */
    char *header; /* forwarded_ip: header whose first IP is the key, default "X-Forwarded-For" */
    int fallback_match; /* forwarded_ip with an invalid IP: "match" (block) or "no_match" (default)
                         */
    int status;         /* default 403; e.g. 429 */
    size_t max_clients; /* tracked keys (bounded table), default 100000 */
} sh_ratelimit_conf;

/* Input rules, a small WAF common rule set (modules/waf.c). */
typedef struct sh_waf_conf {
    int enabled;             /* default true */
    unsigned methods;        /* SH_M_* allowed at all; default every known method */
    size_t max_uri;          /* path bytes, default 8192 */
    size_t max_query;        /* query bytes, default 8192 */
    size_t max_header;       /* one header value, default 20480 (= the core's head limit) */
    int block_traversal;     /* "..", "%2e%2e" segments, default true */
    int allow_encoded_slash; /* "%2F" in the path, default false */
} sh_waf_conf;

typedef enum { SH_VIEWER_ALLOW_ALL, SH_VIEWER_REDIRECT, SH_VIEWER_HTTPS_ONLY } sh_viewer_protocol;
typedef enum { SH_SIGNED_NONE, SH_SIGNED_CLOUDFRONT, SH_SIGNED_SIGV4 } sh_signed_mode;

/* CORS for a behavior (modules/cors.c). */
typedef struct sh_cors_conf {
    int enabled;
    char **allow_origins; /* "*" or exact origins ("https://reader.example") */
    size_t nallow_origins;
    char *allow_methods;  /* "GET, HEAD" */
    char *allow_headers;  /* "" = echo Access-Control-Request-Headers */
    char *expose_headers; /* "" = none */
    int64_t max_age;      /* seconds, default 600 */
    int allow_credentials;
} sh_cors_conf;

typedef enum { SH_ORIGIN_S3, SH_ORIGIN_HTTP } sh_origin_type;

typedef enum {
    SH_CRED_NONE, /* unsigned requests (public bucket, S3-compatible store without auth) */
    SH_CRED_ENV,  /* AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN */
    SH_CRED_FILE, /* AWS shared-credentials INI file, profile credentials_profile */
    SH_CRED_IMDS, /* EC2 instance role via IMDSv2 */
} sh_cred_source;

/* An origin: where misses are fetched from. */
typedef struct sh_origin_conf {
    char *name;          /* referenced by behaviors[].origin */
    sh_origin_type type; /* "s3" or "http" */
    char *endpoint; /* "https://s3.us-east-1.amazonaws.com", "http://127.0.0.1:4569"; no trailing
                       '/' */
    char *bucket;   /* s3 only */
    char *region;   /* s3 only, default "us-east-1" */
    int path_style; /* s3 only: 1 = endpoint/bucket/key, 0 = bucket.host/key; default 0 for
                     *.amazonaws.com endpoints, 1 otherwise */
    sh_cred_source credentials;  /* default: env for s3, none for http */
    char *credentials_file;      /* SH_CRED_FILE */
    char *credentials_profile;   /* SH_CRED_FILE, default "default" */
    char *imds_endpoint;         /* SH_CRED_IMDS, default "http://169.254.169.254" */
    uint64_t connect_timeout_ms; /* default 10 s (CloudFront: 1-10 s) */
    uint64_t read_timeout_ms; /* default 30 s (CloudFront: 1-60 s): first byte and between bytes */
    uint64_t keepalive_timeout_ms; /* default 5 s: idle origin connections are closed after this */
    int attempts;                  /* default 3 (1-3): connection attempts per request */
} sh_origin_conf;

/* Security response headers. A NULL or "" value means "do not add". */
typedef struct sh_resp_headers_conf {
    char *hsts;                 /* Strict-Transport-Security (sent only over TLS) */
    char *frame_options;        /* X-Frame-Options */
    char *content_type_options; /* X-Content-Type-Options */
    char *referrer_policy;      /* Referrer-Policy */
    char *xss_protection;       /* X-XSS-Protection */
    char **custom_names;        /* extra headers: custom = ( { name = "..."; value = "..."; } ) */
    char **custom_values;
    size_t ncustom;
    int override_origin; /* 1: replace the origin's header of the same name (default 1) */
} sh_resp_headers_conf;

/* A cache behavior: path pattern and what to do with matching requests. */
typedef struct sh_behavior_conf {
    char *path; /* pattern: '*' = 0+ bytes, '?' = exactly one; case-sensitive;
                   matched against the path only (no query) */
    char *origin_name;
    const sh_origin_conf *origin;          /* resolved from origin_name */
    unsigned allowed_methods;              /* SH_M_* bit set, default SH_M_DEFAULT */
    unsigned cached_methods;               /* GET|HEAD (default) or GET|HEAD|OPTIONS (CloudFront's
                                              CachedMethods): OPTIONS answers are then cached, keyed apart
                                              from GET's */
    int64_t min_ttl, default_ttl, max_ttl; /* seconds; defaults 0, 86400, 31536000 */
    char **forward_headers; /* viewer headers forwarded to the origin (and keyed on) */
    size_t nforward_headers;
    int forward_query;            /* 0: none (default), 1: all */
    int forward_cookies;          /* 0: none (default), 1: all */
    sh_resp_headers_conf headers; /* resolved: global response_headers overridden per behavior */
    sh_viewer_protocol viewer_protocol; /* default allow-all */
    sh_signed_mode signed_mode;         /* signed = "cloudfront" | "sigv4"; default none */
    int compress;                       /* gzip/br for text types, default false */
    sh_cors_conf cors;                  /* cors = { ... } */
    int line;                           /* source line, for messages */
} sh_behavior_conf;

/* Request limits (CloudFront's viewer limits by default). */
typedef struct sh_limits_conf {
    size_t max_header_size; /* bytes of request line + header section, default 20480 (=> 431) */
    size_t max_url;         /* bytes of the request target, default 8192 (=> 414) */
    size_t max_headers;     /* header fields, default 100 (=> 431) */
    size_t max_body_size;   /* request body for methods that carry one, default "1M" (=> 413) */
    size_t max_connections; /* per worker, default 10000; extra connections are closed at accept */
    size_t max_requests_per_connection; /* 0 = unlimited (default) */
} sh_limits_conf;

/* Viewer-side timeouts. */
typedef struct sh_timeouts_conf {
    uint64_t header_ms;    /* whole request head must arrive within this, default 10 s */
    uint64_t body_ms;      /* between body bytes, default 30 s */
    uint64_t keepalive_ms; /* idle keep-alive connection, default 60 s */
    uint64_t send_ms;      /* no progress writing to the viewer, default 60 s */
    uint64_t drain_ms;     /* SIGTERM: in-flight requests may finish within this, default 30 s */
} sh_timeouts_conf;

/* The cache engine. */
typedef struct sh_cache_conf {
    int enabled;            /* default true; false = every request goes to the origin */
    size_t memory_size;     /* memory tier budget, default "256M" */
    size_t max_object_size; /* larger responses stream through uncached, default "64M" */
    char *disk_path;        /* disk = { path }: "" (default) = memory only */
    size_t disk_size;       /* disk = { size }: byte budget of the disk tier, default "10G" */
} sh_cache_conf;

/* The admin listener (proxy/admin.c). */
typedef struct sh_admin_conf {
    char *address;                /* "" (default) = no admin listener; e.g. "127.0.0.1:9090" */
    struct sockaddr_storage addr; /* resolved when address is set */
    socklen_t addrlen;
    /* token_file = "": the API is open (keep it on loopback). Otherwise every
     * admin request needs "Authorization: Bearer <token>", the token being the
     * file's first line without surrounding whitespace, read at load time so a
     * reload picks up a rotated token and `shield -t` reports a bad file. */
    char *token_file;
    char *token; /* NULL when token_file is "" */
} sh_admin_conf;

/* Logs (proxy/config_log.c): the CloudFront standard access log (shield/accesslog.h)
 * and the real-time log (shield/realtime_log.h). */
typedef struct sh_log_conf {
    char *access_dir;        /* access.dir: "" (default) = no access log */
    char *distribution_id;   /* access.distribution_id: file name prefix, default "E2SHIELD" */
    char *domain;            /* access.domain: cs(Host); "" (default) = the viewer's Host */
    uint64_t retention_days; /* access.retention_days: older hourly files deleted; 0 = keep */
    size_t ring_size;        /* access.ring_size: lines queued per worker, default 4096 */
    int line;                /* of the access group, for messages */
    char *rt_target;         /* realtime.target: "" (default) = off; "file:/path",
                                "unix:/path" (datagram socket), "udp:host:port" */
    unsigned rt_sampling;    /* realtime.sampling: percent of requests, 1-100, default 100 */
    uint64_t rt_fields;      /* realtime.fields: bit i = sh_realtime_field_names[i]; default all */
    size_t rt_ring_size;     /* realtime.ring_size: records queued per worker, default 4096 */
} sh_log_conf;

/* Health alarms for GET /healthz and heavy hitters for GET /popular
 * (proxy/config_alarms.c, proxy/admin_metrics.c). A rate alarm applies only
 * once its window holds min_requests samples, so an idle shield is healthy. */
typedef struct sh_alarms_conf {
    uint64_t window_ms;             /* alarms.window: rolling window, default 60 s (1 s - 1 h) */
    double error_rate_5xx;          /* % of requests answered 5xx above which it fires, default 5 */
    double min_cache_hit_rate;      /* % of cacheable requests served from cache below which it
                                       fires, default 70; 0 = off */
    uint64_t max_origin_latency_ms; /* average origin first-byte latency above which it fires,
                                       default 1000 ms; 0 = off */
    uint64_t min_requests;          /* samples an alarm needs in the window, default 20 */
    uint64_t popular_window_ms;     /* popular.window: heavy-hitter window, default 300 s */
    size_t popular_entries;         /* popular.entries: keys tracked per worker, default 512 */
} sh_alarms_conf;

typedef struct sh_config {
    char *file; /* path it was loaded from */
    /* node */
    char *node_name; /* default "shield" : X-Cache/Via */
    char *pop;       /* default "SHLD1" : x-edge-location */
    int workers;     /* 0 (default) = one per online CPU; resolved value in nworkers */
    int nworkers;
    char *error_log; /* default "" = stderr */

    sh_listen_conf *listen;
    size_t nlisten;
    sh_origin_conf *origins;
    size_t norigins;
    sh_behavior_conf *behaviors; /* in match order; the last one's path is "*" */
    size_t nbehaviors;
    sh_resp_headers_conf response_headers; /* global defaults */
    char *default_root_object;             /* "" = none; applies to "/" only */
    sh_limits_conf limits;
    sh_timeouts_conf timeouts;
    sh_cache_conf cache;
    sh_admin_conf admin;
    sh_tls_conf tls;
    sh_trusted_conf trusted;
    sh_signed_urls_conf signed_urls;
    sh_sigv4_conf sigv4;
    sh_geo_conf geo;
    sh_ratelimit_conf rate_limit;
    sh_waf_conf waf;
    sh_log_conf log;
    sh_alarms_conf alarms;
} sh_config;

/*
 * Load and validate a config file. Returns the snapshot, or NULL after writing
 * every error as "file:line: message\n" to errs (a FILE*, usually stderr).
 */
sh_config *sh_config_load(const char *path, void *errs);

/* Free a snapshot (NULL is fine). */
void sh_config_free(sh_config *cfg);

/* Parse "30s"-style durations into milliseconds. Returns 0 on success, -1 if malformed. */
int sh_parse_duration_ms(const char *s, uint64_t *out_ms);

/* Parse "1G"-style sizes into bytes. Returns 0 on success, -1 if malformed or overflowing. */
int sh_parse_size(const char *s, uint64_t *out);

/* Parse "host:port", "[v6]:port" or ":port" into a sockaddr. Returns 0 or -1. */
int sh_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Method name ("GET") to SH_M_* bit, 0 if unknown. */
unsigned sh_method_bit(const char *name, size_t len);

#endif
