/*
 * The module pipeline.
 *
 * A request runs through fixed phases, in the order of sh_phase below. Each
 * module hooks the phases it needs; within a phase, modules run in registry
 * order (proxy/pipeline.c). A hook returns:
 *   SH_CONTINUE  not mine / passed: go on with the next hook or phase;
 *   SH_RESPOND   the module produced the response itself (sh_req_respond()):
 *                skip straight to the response-filter and log phases;
 *   SH_SUSPEND   the module is waiting for something asynchronous and will call
 *                sh_req_resume() later, from the same worker thread;
 *   SH_ERROR     internal failure: the core answers 500.
 * Between PRECONTENT and RESPONSE the core does the content step itself
 * (cache lookup, origin fetch): modules never touch the connection.
 *
 * The phase order is data checked at start-up (sh_pipeline_check()), not a
 * comment: adding a module means adding it to the registry, never editing the
 * core's control flow.
 */
#ifndef SHIELD_MODULE_H
#define SHIELD_MODULE_H

#include <stdint.h>
#include <sys/socket.h>

#include "shield/config.h"
#include "shield/http.h"

typedef enum { SH_CONTINUE = 0, SH_RESPOND = 1, SH_SUSPEND = 2, SH_ERROR = -1 } sh_rc;

typedef enum {
    SH_PHASE_SANITY,     /* input rules: method, sizes, traversal, framing */
    SH_PHASE_IDENTITY,   /* client identity: trusted proxies, forwarded IP */
    SH_PHASE_ROUTE,      /* behavior match, default root object, allowed methods */
    SH_PHASE_RATELIMIT,  /* per-client rate limits */
    SH_PHASE_GEO,        /* geo restriction */
    SH_PHASE_PROTOCOL,   /* viewer protocol policy */
    SH_PHASE_AUTH,       /* signed URLs/cookies, SigV4 */
    SH_PHASE_PRECONTENT, /* cache key and origin request shaping */
    SH_PHASE_RESPONSE,   /* response head filters: req->resp is set */
    SH_PHASE_LOG,        /* after the response finished (or was aborted) */
    SH_PHASE_COUNT
} sh_phase;

/* Printable name of a phase ("route"), for traces and errors. */
const char *sh_phase_name(sh_phase p);

struct sh_worker;
struct sh_conn;

/*
 * One request. The core owns it; modules read it and may set the fields marked
 * (module). Strings point into the connection's request buffer and stay valid
 * until the request is finished.
 */
typedef struct sh_req {
    struct sh_conn *conn;     /* opaque to modules */
    struct sh_worker *worker; /* opaque to modules */
    const sh_config *cfg;     /* the snapshot this request runs under (= snap->cfg) */
    struct sh_snapshot *snap; /* its reference, held until the log line */

    /* request line */
    const char *method;
    size_t method_len;
    unsigned method_bit; /* SH_M_* or 0 for a method outside that set */
    const char *target;  /* raw request target as received */
    size_t target_len;
    const char *path; /* path part of the target, starts with '/' */
    size_t path_len;
    const char *query; /* after '?', NULL if the target had no '?' */
    size_t query_len;
    const char *host; /* Host (authority for absolute-form), validated */
    size_t host_len;
    int http_major, http_minor;
    const sh_header *headers; /* in received order */
    size_t nheaders;
    const char *body; /* request body (methods that carry one), or NULL */
    size_t body_len;

    /* peer */
    struct sockaddr_storage peer;
    char peer_ip[64];         /* the socket peer, textual (never replaced) */
    char client_ip[64];       /* (module) textual client address; identity may replace it */
    uint8_t client_addr[16];  /* (module) the same address, 16-byte form (IPv4 v4-mapped) */
    int client_port;          /* (module) client's source port (CloudFront-Viewer-Address) */
    int client_forwarded;     /* (module) client_ip came from a trusted proxy's header */
    char country[3];          /* (module) ISO 3166-1 alpha-2 from geo or a trusted header;
                                 "" = unknown */
    int tls;                  /* arrived over TLS */
    const char *tls_protocol; /* "TLSv1.3", NULL over plain HTTP (static strings) */
    const char *tls_cipher;   /* OpenSSL cipher name, NULL over plain HTTP */
    int local_port;           /* port of the listener the request arrived on */

    /* (module) the AUTH phase verified a signature Shield itself checks (SigV4
     * with Shield's mirror keys, CloudFront signed URL/cookies): the viewer's
     * Authorization header then carries no per-user meaning and the answer is
     * shared through the cache like any other. */
    int auth_verified;

    /* routing (module) */
    const sh_behavior_conf *behavior; /* set by ROUTE */
    char *origin_path;                /* (module) path sent to the origin, without query (the core
                                         appends the query the behavior forwards); sh_malloc'd, the
                                         core frees it; NULL = the viewer's path unchanged */

    /* response */
    sh_resp resp;                /* set before RESPONSE phase */
    const char *result_type;     /* "Miss", "Hit", "Error", "Redirect"... */
    const char *detailed_result; /* e.g. "OriginConnectError", NULL = same as result_type */
    char request_id[40];         /* X-Request-Id / x-edge-request-id */
    int64_t start_us;            /* monotonic start, microseconds */
    int64_t start_wall_us;       /* wall clock at start (log timestamps), microseconds */

    /* (core) what happened, for the LOG phase (access log, metrics) */
    int64_t ttfb_us;         /* first response byte queued, since start_us; -1 = none */
    uint64_t bytes_sent;     /* to the viewer: head + body (sc-bytes) */
    uint64_t bytes_received; /* from the viewer: head + body (cs-bytes) */
    int aborted;             /* the response did not complete (reset, timeout, viewer gone) */
    int64_t range_start;     /* sc-range-start / sc-range-end of a 206, -1 = none */
    int64_t range_end;
    int64_t origin_ttfb_us;   /* origin response head after this request asked; -1 = no origin */
    const char *origin_error; /* "connect", "timeout", "reset", "5xx"... NULL = none */
} sh_req;

/*
 * Produce an error/short response from a module: status, optional extra header
 * (name/value may be NULL) and a body (NULL = a small generated HTML page).
 * The content type applies only to a given body. Returns SH_RESPOND so a hook
 * can `return sh_req_respond(...)`.
 */
sh_rc sh_req_respond(sh_req *req, int status, const char *hname, const char *hvalue,
                     const char *content_type, const char *body);

/* Continue a request after a hook returned SH_SUSPEND; rc is what the hook would have returned. */
void sh_req_resume(sh_req *req, sh_rc rc);

/* Case-insensitive lookup of a request header; NULL if absent. */
const sh_header *sh_req_header(const sh_req *req, const char *name);
/* How many times the header appears (duplicate-parameter / smuggling checks). */
size_t sh_req_header_count(const sh_req *req, const char *name);

/* Counters of rejections and edge events, per worker, summed in the admin /stats. */
typedef enum {
    SH_CNT_AUTH_FAILED,    /* signed URL/cookie or SigV4 rejected */
    SH_CNT_GEO_BLOCKED,    /* ClientGeoBlocked */
    SH_CNT_RATE_LIMITED,   /* rate-based rule blocked */
    SH_CNT_WAF_BLOCKED,    /* input rules rejected */
    SH_CNT_REDIRECTS,      /* viewer protocol redirect to https */
    SH_CNT_HTTPS_ONLY,     /* plain HTTP refused by https-only */
    SH_CNT_CORS_PREFLIGHT, /* OPTIONS preflights answered */
    SH_CNT_COMPRESSED,     /* responses compressed (gzip or br) */
    SH_CNT_COUNT
} sh_counter;

/* Printable snake_case name of a counter ("auth_failed"), for /stats. */
const char *sh_counter_name(sh_counter c);
/* Count one event for the request's worker (worker thread only). */
void sh_req_count(sh_req *req, sh_counter c);

/* A module. Every field except name is optional. */
typedef struct sh_module {
    const char *name;
    /* Process-wide state shared by every worker (rate-limit table, geo database),
     * created by main before the workers start; 0 or -1 with a message in err. */
    int (*init)(const sh_config *cfg, char *err, size_t errlen);
    /* SIGHUP (main thread): re-read files (geo database, certificates) and swap
     * them in atomically; on failure keep the old ones and log why. */
    void (*reload)(const sh_config *cfg);
    /* After every worker has stopped. */
    void (*fini)(void);
    /* Per-worker state, created when the worker starts and freed when it stops. */
    int (*worker_init)(struct sh_worker *w, const sh_config *cfg, void **state);
    void (*worker_free)(void *state);
    /* Phase hooks, indexed by sh_phase. */
    sh_rc (*phase[SH_PHASE_COUNT])(sh_req *req, void *state);
} sh_module;

/* The registry, in run order (proxy/pipeline.c). */
extern const sh_module *const sh_modules[];
extern const size_t sh_nmodules;

struct sh_worker;
/* A module's per-worker state on worker w (what its worker_init made), for
 * readers on other threads such as the admin listener's metrics. */
void *sh_worker_module_state(struct sh_worker *w, const sh_module *m);

/* Validate the registry at start-up (names unique, phases in range). 0 or -1 with a message. */
int sh_pipeline_check(char *err, size_t errlen);

/*
 * Run the hooks of phases [*phase, to) for req, starting in *phase at module
 * index *module, with the per-worker module states (indexed like sh_modules).
 * Returns the first rc other than SH_CONTINUE, or SH_CONTINUE when every hook
 * passed. On return *phase and *module point at the hook that stopped the run, so
 * after SH_SUSPEND the core resumes with the next hook: (*module)++ and call again.
 */
sh_rc sh_pipeline_run(sh_req *req, void *const *states, size_t *phase, size_t *module, sh_phase to);

/* Glob match used by behaviors and (later) policies: '*' = 0+ bytes, '?' = exactly one byte. */
int sh_glob_match(const char *pat, size_t plen, const char *s, size_t slen);

/* First behavior whose pattern matches path (modules/behaviors.c); NULL only for
 * a config without the final "*" behavior, which validation forbids. */
const sh_behavior_conf *sh_behavior_match(const sh_config *cfg, const char *path, size_t len);

/* Run every module's init (in registry order); on failure the ones already
 * initialised are finalised again. 0 or -1 with a message. */
int sh_modules_init(const sh_config *cfg, char *err, size_t errlen);
void sh_modules_reload(const sh_config *cfg);
void sh_modules_fini(void);

/* The modules, in registry order (proxy/pipeline.c). */
extern const sh_module sh_module_waf;          /* SANITY: input rules */
extern const sh_module sh_module_identity;     /* IDENTITY: trusted proxies */
extern const sh_module sh_module_behaviors;    /* ROUTE */
extern const sh_module sh_module_ratelimit;    /* RATELIMIT */
extern const sh_module sh_module_geo;          /* GEO */
extern const sh_module sh_module_protocol;     /* PROTOCOL: viewer protocol policy */
extern const sh_module sh_module_signed_url;   /* AUTH: CloudFront signed URLs/cookies */
extern const sh_module sh_module_sigv4;        /* AUTH: SigV4 */
extern const sh_module sh_module_cors;         /* PRECONTENT (preflight) + RESPONSE */
extern const sh_module sh_module_headers;      /* RESPONSE: security headers */
extern const sh_module sh_module_compress;     /* RESPONSE: gzip/br decision */
extern const sh_module sh_module_access_log;   /* LOG: CloudFront standard access log */
extern const sh_module sh_module_realtime_log; /* LOG: CloudFront real-time log */
extern const sh_module sh_module_metrics;      /* LOG: /metrics, /healthz, /popular */

#endif
