/*
 * Internal to proxy/: the viewer connection shared by conn.c (parsing and the
 * state machine), respond.c (writing response heads and generated answers),
 * pass.c (streaming straight from the origin) and serve.c (serving from the
 * cache, including collapsed fills).
 */
#ifndef SHIELD_CONN_INT_H
#define SHIELD_CONN_INT_H

#include <stdint.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <llhttp.h>
#include <openssl/ssl.h>

#include "shield/cache.h"
#include "shield/h1scan.h"
#include "shield/module.h"
#include "shield/origin.h"
#include "shield/worker.h"

#define CONN_STATES(X)                                                                             \
    X(IDLE, "idle")     /* keep-alive: waiting for the first byte of a request */                  \
    X(HEAD, "head")     /* reading a request head */                                               \
    X(PHASES, "phases") /* module phases running (possibly suspended) */                           \
    X(BODY, "body")     /* reading a request body */                                               \
    X(ORIGIN, "origin") /* waiting for the origin's response head */                               \
    X(SEND, "send")     /* streaming the response body */                                          \
    X(LINGER, "linger") /* response queued, closing: flush, half-close, discard input */           \
    X(CLOSED, "closed")

typedef enum {
#define X(s, n) CONN_##s,
    CONN_STATES(X)
#undef X
        CONN_NSTATES
} conn_state;

/* Output buffer watermarks for backpressure towards the origin. */
#define OUT_HIGH         (256 * 1024)
#define MAX_SINGLE_WRITE (4 * 1024 * 1024)
#define OUT_LOW          (64 * 1024)
/* Ranges served per request (more is answered with the whole object). */
#define MAX_RANGES 16
/* Unparsed pipelined input kept per connection. */
#define IN_HIGH   (64 * 1024)
#define LINGER_MS 2000
/* TLS records are encrypted into a socket bufferevent below the TLS one
 * (the "wire") and leave in writes of many records: one write per 16 KiB
 * record cost more kernel time than the AES did. WIRE_HIGH bounds the
 * ciphertext a connection holds in user space. */
#define WIRE_HIGH        (256 * 1024)
#define WIRE_LOW         (128 * 1024)
#define LINGER_MAX_BYTES (1024 * 1024)

struct hspan {
    uint32_t noff, nlen, voff, vlen;
};

typedef struct sh_conn {
    struct sh_conn *prev, *next;
    sh_worker *w;
    struct bufferevent *bev;
    struct event *timer; /* = &timer_ev: one allocation less per connection */
    struct event timer_ev;
    conn_state state;
    llhttp_t parser;
    union {
        struct sockaddr sa;
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } peer; /* not sockaddr_storage: 100 bytes less per idle connection */
    char peer_ip[48];
    int local_port;           /* of the listener it arrived on */
    SSL *ssl;                 /* TLS listener: owned by the bufferevent; NULL over plain HTTP */
    struct bufferevent *wire; /* TLS: the socket bufferevent under bev (owned by it) */
    int fin;                  /* half-close: 0 not yet, 1 waiting for the wire to drain, 2 sent */
    int aborted;              /* conn_abort(): reset, no close_notify */
    int write_parked;         /* everything written directly, EV_WRITE off (conn_flush_now) */
    int read_paused;          /* pipelined requests wait for the output to drain */
    unsigned nrequests;
    size_t linger_bytes;

    /* request head, copied out of the input buffer as llhttp reports it */
    char *hbuf; /* hbuf, spans and hdrs go back to the worker while idle */
    size_t hlen, hcap;
    uint32_t url_off, url_len;
    struct hspan *spans;
    size_t nspans, spans_cap;
    int last_cb;    /* 0 none, 1 field, 2 value */
    int err_status; /* set by a callback before it fails the parse */
    const char *err_detail;
    int msg_done, has_body, expect_continue;
    struct evbuffer *body;

    /* current request */
    sh_req req;
    sh_header *hdrs;
    size_t hdrs_cap;
    size_t phase, module;
    origin_fetch *fetch;
    int origin_paused;
    int chunked_out, head_sent, keepalive, close_after, peer_eof;
    int in_parse; /* conn_parse() is on the stack: nested steps let its loop go on */
    /* The strict scanner (shield/h1scan.h) reads every request byte before
     * llhttp does; llhttp gets the head only once it is complete and valid,
     * and a chunked body only up to where the scanner says it ends. */
    h1_scan scan;
    size_t scanned;    /* bytes of the input buffer the head scanner has seen */
    int head_scanned;  /* the head is complete and valid (scan.head_len bytes) */
    uint64_t head_fed; /* bytes of the head given to llhttp */
    int head_done;     /* llhttp reported the head: hbuf is frozen, trailers are skipped */
    int chunked_in;    /* the body is chunked: the scanner frames it too */
    /* serving from the cache (serve.c) */
    cache_obj *obj;      /* the object being sent, or NULL */
    cache_waiter waiter; /* registered while obj is filling */
    int hit;             /* obj was complete and fresh at lookup */
    cache_range *ranges; /* = &range1, or MAX_RANGES on the heap for a Range request */
    cache_range range1;
    size_t nranges, range_i;
    int64_t rd_off;              /* next body byte of obj to queue */
    struct cache_file_req *freq; /* opening obj's disk file (sendfile) */
    int have_file, file_fd;      /* the opened file, until queued or released */
    uint64_t file_off;           /* offset of the body in it */
    int64_t wait_start_us;       /* when this request began waiting on a fill (fill_wait_us) */
    int multipart, part_started, body_done;
    char boundary[32];

    struct pass_z *pz; /* pass.c: compressing this pass's body, or NULL */

    char *gen_body; /* generated response body */
    size_t gen_body_len;
} sh_conn;

void conn_set_state(sh_conn *c, conn_state s);
/* The response is fully queued: log, then keep the connection or close it. */
void conn_finish(sh_conn *c);
/* Reset the connection: the viewer must see a failure, not a clean end. */
void conn_abort(sh_conn *c, const char *why);

/* respond.c */
void conn_add_core_headers(sh_conn *c, sh_resp *resp, const char *result);
/* v in decimal, NUL-terminated, without printf (hit path). */
void conn_format_uint(char *out, size_t outlen, uint64_t v);
/* Serialize req->resp's status line and headers; no_body for HEAD answers. */
void conn_send_head(sh_conn *c, int no_body);
void conn_run_response_phase(sh_conn *c);
/* Queue the generated response set by sh_req_respond() and finish. */
void conn_send_generated(sh_conn *c);

/* pass.c: fetch from the origin and stream, nothing stored. */
void conn_pass_start(sh_conn *c);
/* Drop the pass's compression state, if any (the request is finished). */
void conn_pass_release(sh_conn *c);
/* Build the origin request for the current request (shared with fills).
 * strip_validators drops Range and conditionals (a fill fetches the whole object). */
void conn_origin_request(sh_conn *c, origin_request *oreq, sh_hdrlist *hl, char **pq,
                         int strip_validators);

/* serve.c: answer from the cache (hit, collapsed fill, or a new fill). */
void conn_serve(sh_conn *c);
/* Output drained below the low watermark. */
void conn_serve_writable(sh_conn *c);
/* Drop the cache state of the current request (waiter, object refs). */
void conn_serve_release(sh_conn *c);

#endif
