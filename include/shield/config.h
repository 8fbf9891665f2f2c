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
    int tls; /* reserved for the TLS issue; must be false for now */
} sh_listen_conf;

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
    int64_t min_ttl, default_ttl, max_ttl; /* seconds; defaults 0, 86400, 31536000 */
    char **forward_headers; /* viewer headers forwarded to the origin (and keyed on) */
    size_t nforward_headers;
    int forward_query;            /* 0: none (default), 1: all */
    int forward_cookies;          /* 0: none (default), 1: all */
    sh_resp_headers_conf headers; /* resolved: global response_headers overridden per behavior */
    int line;                     /* source line, for messages */
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
} sh_admin_conf;

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
