/*
 * The origin client: one CURLM per worker driven by the worker's event_base
 * (curl's hiperfifo pattern). See include/shield/origin.h for the contract.
 *
 * Re-entrancy. libcurl forbids curl_multi_remove_handle/add_handle and
 * curl_easy_cleanup from inside its callbacks, and on_response/on_body run
 * inside the header/write callbacks. So anything that touches the multi handle
 * on behalf of the user is deferred while ctx->in_curl is set: starts always go
 * through a zero-timeout event (which also keeps callbacks out of
 * origin_fetch_start), a cancel inside a callback only flags the fetch (its
 * callbacks then return 0 so curl aborts the transfer) and the fetch is reaped
 * from the loop. on_done is only ever called from our own event callbacks,
 * after curl has returned.
 *
 * SigV4: requests to s3 origins are signed by proxy/sigv4_sign.c, not by
 * CURLOPT_AWS_SIGV4. Checked against botocore 1.29 (S3SigV4Auth, same
 * x-amz-date and headers, signature recomputed from what curl actually sent):
 * curl 7.88.1 matched for a plain GET, a path with %20/%2B/UTF-8 escapes,
 * a sorted single-parameter query and forwarded Range / If-None-Match /
 * X-Forwarded-For / x-amz-security-token; it did NOT match for
 *   - a query whose parameters are not already sorted ("?z=1&a=2"), a
 *     parameter without '=' ("?a") or repeated names: 7.88 signs the raw query;
 *   - removed headers ("Accept:", "Expect:", needed so curl does not add
 *     "Accept: * / *" or "Expect: 100-continue"): 7.88 lists them in
 *     SignedHeaders with an empty value although they are not sent.
 * Our signer matched botocore for GET (unsorted/repeated/bare query
 * parameters, "//" and "/../" kept, %XX and UTF-8 escapes, Range /
 * If-None-Match / X-Forwarded-For / User-Agent forwarded, session token),
 * HEAD with Accept, POST with a body and Content-Type, empty PUT and DELETE.
 * Deliberate difference: a non-canonical escape such as "%2f" is signed in
 * its decoded-and-re-encoded form (AWS's rule, see sigv4_sign.h) while
 * botocore hashes the raw bytes; SDKs never send such paths.
 *
 * Attempts: only GET/HEAD, only before a response head was delivered, on
 * CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT (connect), our first-byte
 * timer, CURLE_GOT_NOTHING, CURLE_RECV_ERROR and CURLE_SEND_ERROR; the same
 * easy handle is removed and re-added (re-signed with a fresh x-amz-date).
 * DNS failures and malformed heads are not retried.
 *
 * Payload hash: x-amz-content-sha256 is the SHA-256 of the body we send (the
 * empty-body hash for GET/HEAD) rather than UNSIGNED-PAYLOAD: bodies are at
 * most max_body_size and already in memory, S3 and S3-compatible stores accept
 * it over plain http too, and it protects the body of PUT/POST.
 *
 * Signed headers: every header sent except the ones botocore never signs
 * (user-agent, expect, x-amzn-trace-id), so a verifier that recomputes from
 * the received headers (botocore's headers_to_sign) agrees with us.
 */
#include "shield/origin.h"
#include "shield/alloc.h"
#include "shield/credentials.h"
#include "shield/sigv4_sign.h"
#include "shield/snapshot.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ORIGIN_MAXCONNECTS  128
#define ORIGIN_BUFFERSIZE   (64 * 1024)
#define ORIGIN_MAX_ATTEMPTS 10

typedef struct origin_sock {
    origin_ctx *ctx;
    curl_socket_t fd;
    struct event *ev;
    struct origin_sock *prev, *next;
} origin_sock;

struct origin_ctx {
    struct event_base *base;
    CURLM *multi;
    struct event *timer; /* curl's single timeout (CURLMOPT_TIMERFUNCTION) */
    origin_fetch *fetches;
    origin_sock *socks; /* so origin_ctx_free releases what curl never removed */
    size_t nactive;
    int in_curl; /* >0 while inside curl_multi_socket_action / curl_easy_pause */
};

/* One collected response header, as offsets into origin_fetch.hbuf (which may move). */
typedef struct hdr_off {
    size_t name, name_len, value, value_len;
} hdr_off;

struct origin_fetch {
    origin_ctx *ctx;
    origin_fetch *prev, *next;
    CURL *easy;
    struct curl_slist *slist;
    origin_callbacks cb;
    void *ud;

    /* the request, copied */
    char *method;
    char *url;
    sh_header *req_hdrs;
    size_t nreq_hdrs;
    char *req_store; /* backing bytes of req_hdrs */
    size_t body_len;
    int has_body;
    char payload_hash[65];

    /* signing (s3 with credentials) */
    int sign;
    sh_creds *creds;
    struct sh_snapshot *snap; /* reference held while the fetch lives */
    sh_aws_keys *keys;
    char *region;
    char *host;       /* Host header we send and sign */
    char *sign_path;  /* path part of url (raw) */
    char *sign_query; /* query part of url (raw, no '?'), may be NULL */

    uint64_t connect_ms, read_ms;
    int max_attempts, attempt;
    int retryable; /* GET/HEAD */

    int started; /* deferred start done */
    int in_multi;
    int head_done;
    int paused;
    int cancelled;
    int proto_error;
    origin_result start_error; /* reported by the deferred start when != OK */

    struct event *ev_defer;  /* zero timeout: start, start errors, reaping a cancel */
    struct event *ev_resume; /* zero timeout: curl_easy_pause(CONT) outside callbacks */
    struct event *ev_read;   /* read timeout */

    /* response head being collected */
    int status;
    char *hbuf;
    size_t hlen, hcap;
    hdr_off *hv;
    size_t hn, hvcap;

    char why[128]; /* our own reason for aborting (curl overwrites errbuf) */
    char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void origin_global_init(void)
{
    pthread_once(&global_once, global_init_once);
}

void origin_global_cleanup(void)
{
    curl_global_cleanup();
}

const char *origin_result_name(origin_result r)
{
    switch (r) {
    case ORIGIN_OK:
        return "ok";
    case ORIGIN_ERR_DNS:
        return "dns";
    case ORIGIN_ERR_CONNECT:
        return "connect";
    case ORIGIN_ERR_TIMEOUT:
        return "timeout";
    case ORIGIN_ERR_PROTOCOL:
        return "protocol";
    case ORIGIN_ERR_READ:
        return "read";
    case ORIGIN_ERR_CREDENTIALS:
        return "credentials";
    case ORIGIN_ERR_INTERNAL:
        return "internal";
    }
    return "unknown";
}

static void check_multi_info(origin_ctx *ctx);
static void attempt_start(origin_fetch *f);

/* ---- small helpers -------------------------------------------------------- */

static int name_is(const char *name, size_t len, const char *cname)
{
    return strlen(cname) == len && strncasecmp(name, cname, len) == 0;
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void arm_timer(struct event *ev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(ev, &tv);
}

static void arm_read_timer(origin_fetch *f)
{
    if (f->read_ms) arm_timer(f->ev_read, f->read_ms);
}

static void list_unlink(origin_fetch *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        f->ctx->fetches = f->next;
    if (f->next) f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

static void fetch_free(origin_fetch *f)
{
    origin_ctx *ctx = f->ctx;
    if (f->in_multi) {
        curl_multi_remove_handle(ctx->multi, f->easy);
        f->in_multi = 0;
    }
    list_unlink(f);
    ctx->nactive--;
    event_free(f->ev_defer);
    event_free(f->ev_resume);
    event_free(f->ev_read);
    curl_easy_cleanup(f->easy);
    curl_slist_free_all(f->slist);
    if (f->keys) {
        explicit_bzero(f->keys, sizeof(*f->keys));
        sh_free(f->keys);
    }
    sh_free(f->method);
    sh_free(f->url);
    sh_free(f->req_hdrs);
    sh_free(f->req_store);
    sh_free(f->region);
    sh_free(f->host);
    sh_free(f->sign_path);
    sh_free(f->sign_query);
    sh_free(f->hbuf);
    sh_free(f->hv);
    sh_snapshot_unref(f->snap);
    sh_free(f);
}

/* Report the end and free. Only from our own event callbacks, never inside curl. */
static void fetch_finish(origin_fetch *f, origin_result r, const char *detail)
{
    if (f->in_multi) {
        curl_multi_remove_handle(f->ctx->multi, f->easy);
        f->in_multi = 0;
    }
    evtimer_del(f->ev_read);
    f->cb.on_done(f->ud, r, detail);
    fetch_free(f);
}

/* ---- libevent <-> curl multi glue (hiperfifo) ------------------------------- */

static void sock_event_cb(evutil_socket_t fd, short events, void *arg)
{
    origin_sock *os = arg;
    origin_ctx *ctx = os->ctx; /* os may be freed by the call below */
    int action =
        ((events & EV_READ) ? CURL_CSELECT_IN : 0) | ((events & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running = 0;
    ctx->in_curl++;
    curl_multi_socket_action(ctx->multi, fd, action, &running);
    ctx->in_curl--;
    check_multi_info(ctx);
}

static void sock_free(origin_ctx *ctx, origin_sock *os)
{
    if (os->prev)
        os->prev->next = os->next;
    else
        ctx->socks = os->next;
    if (os->next) os->next->prev = os->prev;
    event_free(os->ev);
    sh_free(os);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    origin_ctx *ctx = userp;
    origin_sock *os = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (os) sock_free(ctx, os);
        return 0;
    }
    if (!os) {
        os = sh_calloc(1, sizeof(*os));
        os->ctx = ctx;
        os->fd = s;
        os->ev = event_new(ctx->base, s, 0, sock_event_cb, os);
        os->next = ctx->socks;
        if (ctx->socks) ctx->socks->prev = os;
        ctx->socks = os;
        curl_multi_assign(ctx->multi, s, os);
    }
    short kind =
        (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    event_del(os->ev);
    if (kind) {
        event_assign(os->ev, ctx->base, s, kind | EV_PERSIST, sock_event_cb, os);
        event_add(os->ev, NULL);
    }
    return 0;
}

static int multi_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    origin_ctx *ctx = userp;
    if (timeout_ms < 0)
        evtimer_del(ctx->timer);
    else
        arm_timer(ctx->timer, (uint64_t)timeout_ms);
    return 0;
}

static void multi_timer_event(evutil_socket_t fd, short events, void *arg)
{
    origin_ctx *ctx = arg;
    int running = 0;
    ctx->in_curl++;
    curl_multi_socket_action(ctx->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    ctx->in_curl--;
    check_multi_info(ctx);
}

origin_ctx *origin_ctx_new(struct event_base *base)
{
    origin_global_init();
    if (global_rc != CURLE_OK) return NULL;
    origin_ctx *ctx = sh_calloc(1, sizeof(*ctx));
    ctx->base = base;
    ctx->multi = curl_multi_init();
    ctx->timer = evtimer_new(base, multi_timer_event, ctx);
    if (!ctx->multi || !ctx->timer) {
        if (ctx->multi) curl_multi_cleanup(ctx->multi);
        if (ctx->timer) event_free(ctx->timer);
        sh_free(ctx);
        return NULL;
    }
    curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETDATA, ctx);
    curl_multi_setopt(ctx->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
    curl_multi_setopt(ctx->multi, CURLMOPT_TIMERDATA, ctx);
    curl_multi_setopt(ctx->multi, CURLMOPT_MAXCONNECTS, (long)ORIGIN_MAXCONNECTS);
    return ctx;
}

void origin_ctx_free(origin_ctx *ctx)
{
    if (!ctx) return;
    while (ctx->fetches)
        fetch_free(ctx->fetches);
    curl_multi_cleanup(ctx->multi);
    while (ctx->socks)
        sock_free(ctx, ctx->socks);
    event_free(ctx->timer);
    sh_free(ctx);
}

size_t origin_ctx_active(const origin_ctx *ctx)
{
    return ctx ? ctx->nactive : 0;
}

/* ---- response head ---------------------------------------------------------- */

static void head_reset(origin_fetch *f)
{
    f->status = 0;
    f->hlen = 0;
    f->hn = 0;
}

static void hbuf_add(origin_fetch *f, const char *s, size_t n)
{
    if (f->hlen + n > f->hcap) {
        size_t cap = f->hcap ? f->hcap : 1024;
        while (cap < f->hlen + n)
            cap *= 2;
        f->hbuf = sh_realloc(f->hbuf, cap);
        f->hcap = cap;
    }
    memcpy(f->hbuf + f->hlen, s, n);
    f->hlen += n;
}

/* "HTTP/1.1 200 OK" -> 200; -1 if it is not a status line we understand. */
static int parse_status(const char *s, size_t n)
{
    size_t i = 5; /* after "HTTP/" */
    while (i < n && s[i] != ' ')
        i++;
    while (i < n && s[i] == ' ')
        i++;
    if (i + 3 > n || (i + 3 < n && s[i + 3] != ' ')) return -1;
    int st = 0;
    for (size_t j = i; j < i + 3; j++) {
        if (s[j] < '0' || s[j] > '9') return -1;
        st = st * 10 + (s[j] - '0');
    }
    return st >= 100 ? st : -1;
}

/* One header line (CRLF stripped). 0, or -1 if it is malformed. */
static int head_add_line(origin_fetch *f, const char *s, size_t n)
{
    if (s[0] == ' ' || s[0] == '\t') {
        /* obs-fold (RFC 9112 5.2): a proxy replaces it with a space */
        if (!f->hn) return -1;
        while (n && (*s == ' ' || *s == '\t'))
            s++, n--;
        hdr_off *h = &f->hv[f->hn - 1];
        if (h->value + h->value_len != f->hlen) return -1;
        hbuf_add(f, " ", 1);
        hbuf_add(f, s, n);
        h->value_len += 1 + n;
        while (h->value_len && (f->hbuf[h->value + h->value_len - 1] == ' ' ||
                                f->hbuf[h->value + h->value_len - 1] == '\t'))
            h->value_len--;
        f->hlen = h->value + h->value_len;
        return 0;
    }
    const char *colon = memchr(s, ':', n);
    if (!colon || colon == s) return -1;
    for (const char *p = s; p < colon; p++)
        if (!is_tchar((unsigned char)*p)) return -1;
    const char *v = colon + 1, *end = s + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (f->hn == f->hvcap) {
        f->hvcap = f->hvcap ? f->hvcap * 2 : 32;
        f->hv = sh_realloc(f->hv, f->hvcap * sizeof(*f->hv));
    }
    hdr_off *h = &f->hv[f->hn++];
    h->name = f->hlen;
    h->name_len = (size_t)(colon - s);
    hbuf_add(f, s, h->name_len);
    h->value = f->hlen;
    h->value_len = (size_t)(end - v);
    hbuf_add(f, v, h->value_len);
    return 0;
}

static void deliver_head(origin_fetch *f)
{
    sh_header *h = sh_calloc(f->hn ? f->hn : 1, sizeof(*h));
    for (size_t i = 0; i < f->hn; i++) {
        h[i].name = f->hbuf + f->hv[i].name;
        h[i].name_len = f->hv[i].name_len;
        h[i].value = f->hbuf + f->hv[i].value;
        h[i].value_len = f->hv[i].value_len;
    }
    f->head_done = 1;
    f->cb.on_response(f->ud, f->status, h, f->hn);
    sh_free(h);
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    origin_fetch *f = ud;
    size_t n = size * nitems;
    if (f->cancelled || f->proto_error) return 0;
    arm_read_timer(f);
    if (f->head_done) return n; /* trailers of a chunked body: not forwarded */
    size_t len = n;
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* a new status line: forget any 1xx head collected before it */
        head_reset(f);
        f->status = parse_status(buf, len);
        if (f->status < 0) {
            f->proto_error = 1;
            snprintf(f->why, sizeof(f->why), "bad status line from origin");
            return 0;
        }
        return n;
    }
    if (len == 0) {
        if (f->status <= 0) {
            f->proto_error = 1;
            snprintf(f->why, sizeof(f->why), "response head without status line");
            return 0;
        }
        if (f->status < 200) {
            head_reset(f);
            return n;
        }
        deliver_head(f);
        return f->cancelled ? 0 : n;
    }
    if (f->status <= 0 || head_add_line(f, buf, len) < 0) {
        f->proto_error = 1;
        snprintf(f->why, sizeof(f->why), "malformed header line from origin");
        return 0;
    }
    return n;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    origin_fetch *f = ud;
    size_t n = size * nmemb;
    if (f->cancelled || f->proto_error) return 0;
    if (!f->head_done) {
        f->proto_error = 1;
        snprintf(f->why, sizeof(f->why), "body before response head");
        return 0;
    }
    if (n == 0) return 0;
    int r = f->cb.on_body(f->ud, ptr, n);
    if (f->cancelled) return 0;
    if (r == ORIGIN_BODY_PAUSE) {
        /* no read timeout while the consumer holds us back */
        f->paused = 1;
        evtimer_del(f->ev_read);
        return CURL_WRITEFUNC_PAUSE;
    }
    arm_read_timer(f);
    return n;
}

/* ---- completion, retries ------------------------------------------------------ */

static int retryable_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        return 1;
    default:
        return 0;
    }
}

/* A failure before any response head. */
static origin_result map_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return ORIGIN_ERR_DNS;
    case CURLE_COULDNT_CONNECT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return ORIGIN_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return ORIGIN_ERR_TIMEOUT;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_GOT_NOTHING:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_HTTP_RETURNED_ERROR:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_BAD_CONTENT_ENCODING:
        return ORIGIN_ERR_PROTOCOL;
    default:
        return ORIGIN_ERR_INTERNAL;
    }
}

static int can_retry(const origin_fetch *f)
{
    return f->retryable && !f->head_done && f->attempt < f->max_attempts;
}

static void retry(origin_fetch *f)
{
    if (f->in_multi) {
        curl_multi_remove_handle(f->ctx->multi, f->easy);
        f->in_multi = 0;
    }
    attempt_start(f);
}

static void handle_done(origin_fetch *f, CURLcode rc)
{
    if (f->cancelled) {
        fetch_free(f);
        return;
    }
    const char *detail = f->why[0] ? f->why : f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc);
    if (rc == CURLE_OK) {
        if (f->head_done)
            fetch_finish(f, ORIGIN_OK, NULL);
        else
            fetch_finish(f, ORIGIN_ERR_PROTOCOL, "no response head");
    } else if (f->head_done) {
        fetch_finish(f, ORIGIN_ERR_READ, detail);
    } else if (f->proto_error) {
        fetch_finish(f, ORIGIN_ERR_PROTOCOL, detail);
    } else if (retryable_error(rc) && can_retry(f)) {
        retry(f);
    } else {
        fetch_finish(f, map_error(rc), detail);
    }
}

static void check_multi_info(origin_ctx *ctx)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(ctx->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        origin_fetch *f = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        if (f) handle_done(f, msg->data.result);
    }
}

static void read_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
    origin_fetch *f = arg;
    if (f->cancelled) {
        fetch_free(f);
        return;
    }
    if (f->head_done) {
        fetch_finish(f, ORIGIN_ERR_READ, "origin read timeout");
    } else if (can_retry(f)) {
        retry(f);
    } else {
        fetch_finish(f, ORIGIN_ERR_TIMEOUT, "origin response timeout");
    }
}

static void resume_cb(evutil_socket_t fd, short events, void *arg)
{
    origin_fetch *f = arg;
    if (f->cancelled || !f->paused || !f->in_multi) return;
    origin_ctx *ctx = f->ctx;
    f->paused = 0;
    arm_read_timer(f);
    /* may deliver the held bytes to on_body right here, hence not in resume() */
    ctx->in_curl++;
    CURLcode rc = curl_easy_pause(f->easy, CURLPAUSE_CONT);
    ctx->in_curl--;
    if (rc != CURLE_OK) handle_done(f, rc); /* curl will not report this transfer any more */
    check_multi_info(ctx);
}

/* ---- starting --------------------------------------------------------------- */

static void slist_add(origin_fetch *f, const char *line)
{
    struct curl_slist *n = curl_slist_append(f->slist, line);
    if (!n) {
        fprintf(stderr, "shield: out of memory in curl_slist_append\n");
        abort();
    }
    f->slist = n;
}

static void slist_addf(origin_fetch *f, const char *name, size_t nlen, const char *value,
                       size_t vlen)
{
    char *line = sh_malloc(nlen + vlen + 3);
    memcpy(line, name, nlen);
    if (vlen) {
        memcpy(line + nlen, ": ", 2);
        memcpy(line + nlen + 2, value, vlen);
        line[nlen + 2 + vlen] = '\0';
    } else {
        /* "Name;" is curl's syntax for a header with an empty value ("Name:" deletes) */
        line[nlen] = ';';
        line[nlen + 1] = '\0';
    }
    slist_add(f, line);
    sh_free(line);
}

/* Headers we generate for a signed request replace any the caller passed. */
static int is_auth_header(const char *name, size_t len)
{
    return name_is(name, len, "authorization") || name_is(name, len, "host") ||
           name_is(name, len, "x-amz-date") || name_is(name, len, "x-amz-content-sha256") ||
           name_is(name, len, "x-amz-security-token");
}

static int has_req_header(const origin_fetch *f, const char *cname)
{
    for (size_t i = 0; i < f->nreq_hdrs; i++)
        if (name_is(f->req_hdrs[i].name, f->req_hdrs[i].name_len, cname)) return 1;
    return 0;
}

/* Build the header list for one attempt (a retry is signed again with a fresh date). */
static void build_headers(origin_fetch *f)
{
    curl_slist_free_all(f->slist);
    f->slist = NULL;
    sh_header *sig = NULL;
    size_t nsig = 0;
    if (f->sign) sig = sh_calloc(f->nreq_hdrs + 6, sizeof(*sig));
    for (size_t i = 0; i < f->nreq_hdrs; i++) {
        const sh_header *h = &f->req_hdrs[i];
        if ((f->sign && is_auth_header(h->name, h->name_len)) ||
            name_is(h->name, h->name_len, "content-length"))
            continue; /* curl frames the body itself */
        slist_addf(f, h->name, h->name_len, h->value, h->value_len);
        if (f->sign && !name_is(h->name, h->name_len, "user-agent") &&
            !name_is(h->name, h->name_len, "expect") &&
            !name_is(h->name, h->name_len, "x-amzn-trace-id"))
            sig[nsig++] = *h;
    }
    /* curl's own defaults would change what the origin sees (and, with
     * "Expect: 100-continue", cost a round trip) */
    if (!has_req_header(f, "accept")) slist_add(f, "Accept:");
    if (!has_req_header(f, "expect")) slist_add(f, "Expect:");
    if (f->has_body && !has_req_header(f, "content-type")) slist_add(f, "Content-Type:");
    if (f->sign) {
        char date[17], clen[32];
        sigv4_amz_date((int64_t)time(NULL), date);
        sig[nsig++] = (sh_header){"host", 4, f->host, strlen(f->host)};
        sig[nsig++] = (sh_header){"x-amz-date", 10, date, 16};
        sig[nsig++] = (sh_header){"x-amz-content-sha256", 20, f->payload_hash, 64};
        if (f->keys->token[0])
            sig[nsig++] =
                (sh_header){"x-amz-security-token", 20, f->keys->token, strlen(f->keys->token)};
        if (f->has_body) {
            /* curl adds Content-Length itself; sign the value it will send */
            int l = snprintf(clen, sizeof(clen), "%zu", f->body_len);
            sig[nsig++] = (sh_header){"content-length", 14, clen, (size_t)l};
        }
        sigv4_input in = {
            .method = f->method,
            .path = f->sign_path,
            .path_len = strlen(f->sign_path),
            .query = f->sign_query,
            .query_len = f->sign_query ? strlen(f->sign_query) : 0,
            .headers = sig,
            .nheaders = nsig,
            .payload_hash = f->payload_hash,
        };
        char *auth = sigv4_authorization(&in, f->keys->access_key, f->keys->secret_key, f->region,
                                         "s3", date);
        slist_addf(f, "Host", 4, f->host, strlen(f->host));
        slist_addf(f, "x-amz-date", 10, date, 16);
        slist_addf(f, "x-amz-content-sha256", 20, f->payload_hash, 64);
        if (f->keys->token[0])
            slist_addf(f, "x-amz-security-token", 20, f->keys->token, strlen(f->keys->token));
        slist_addf(f, "Authorization", 13, auth, strlen(auth));
        sh_free(auth);
        sh_free(sig);
    }
    curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->slist);
}

static void attempt_start(origin_fetch *f)
{
    f->attempt++;
    f->errbuf[0] = '\0';
    f->why[0] = '\0';
    f->proto_error = 0;
    head_reset(f);
    build_headers(f);
    if (curl_multi_add_handle(f->ctx->multi, f->easy) != CURLM_OK) {
        fetch_finish(f, ORIGIN_ERR_INTERNAL, "curl_multi_add_handle failed");
        return;
    }
    f->in_multi = 1;
    /* first byte: connecting plus waiting for the answer */
    if (f->read_ms) arm_timer(f->ev_read, f->connect_ms + f->read_ms);
}

static void defer_cb(evutil_socket_t fd, short events, void *arg)
{
    origin_fetch *f = arg;
    if (f->cancelled) {
        fetch_free(f);
        return;
    }
    if (f->started) return;
    f->started = 1;
    if (f->start_error != ORIGIN_OK) {
        fetch_finish(f, f->start_error, "invalid origin request");
        return;
    }
    if (f->sign) {
        f->keys = sh_calloc(1, sizeof(*f->keys));
        if (!f->creds || sh_creds_get(f->creds, f->keys) != 0) {
            fetch_finish(f, ORIGIN_ERR_CREDENTIALS, "no AWS credentials available");
            return;
        }
    }
    attempt_start(f);
}

/*
 * The request URL, and for signing the Host value plus the raw path and query
 * exactly as curl will send them (PATH_AS_IS, no re-encoding).
 */
static int build_url(origin_fetch *f, const origin_request *req)
{
    const sh_origin_conf *o = req->origin;
    const char *ep = o->endpoint ? o->endpoint : "";
    size_t pqlen = req->path_query_len;
    /* curl drops a fragment; cut it here too so we sign what is sent */
    const char *hash = memchr(req->path_query, '#', pqlen);
    if (hash) pqlen = (size_t)(hash - req->path_query);
    const char *sep = strstr(ep, "://");
    if (!sep) return -1;
    size_t eplen = strlen(ep);
    while (eplen && ep[eplen - 1] == '/')
        eplen--;
    size_t blen = o->bucket ? strlen(o->bucket) : 0;
    size_t cap = eplen + blen + pqlen + 4;
    char *url = sh_malloc(cap);
    if (o->type == SH_ORIGIN_S3 && blen && !o->path_style) {
        size_t slen = (size_t)(sep - ep) + 3;
        snprintf(url, cap, "%.*s%s.%.*s%.*s", (int)slen, ep, o->bucket, (int)(eplen - slen),
                 ep + slen, (int)pqlen, req->path_query);
    } else if (o->type == SH_ORIGIN_S3 && blen) {
        snprintf(url, cap, "%.*s/%s%.*s", (int)eplen, ep, o->bucket, (int)pqlen, req->path_query);
    } else {
        snprintf(url, cap, "%.*s%.*s", (int)eplen, ep, (int)pqlen, req->path_query);
    }
    f->url = url;
    const char *auth = strstr(url, "://") + 3;
    const char *path = auth + strcspn(auth, "/?");
    f->host = sh_strndup(auth, (size_t)(path - auth));
    const char *q = strchr(path, '?');
    f->sign_path = sh_strndup(path, q ? (size_t)(q - path) : strlen(path));
    f->sign_query = q ? sh_strdup(q + 1) : NULL;
    return 0;
}

static void copy_headers(origin_fetch *f, const origin_request *req)
{
    size_t total = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        total += req->headers[i].name_len + req->headers[i].value_len;
    f->req_store = sh_malloc(total + 1);
    f->req_hdrs = sh_calloc(req->nheaders ? req->nheaders : 1, sizeof(sh_header));
    char *p = f->req_store;
    for (size_t i = 0; i < req->nheaders; i++) {
        const sh_header *h = &req->headers[i];
        /* curl rejects nothing here and would send a CR/LF as is: drop such headers */
        if (memchr(h->value, '\r', h->value_len) || memchr(h->value, '\n', h->value_len) ||
            memchr(h->name, '\r', h->name_len) || memchr(h->name, '\n', h->name_len) ||
            h->name_len == 0)
            continue;
        sh_header *d = &f->req_hdrs[f->nreq_hdrs++];
        memcpy(p, h->name, h->name_len);
        d->name = p;
        d->name_len = h->name_len;
        p += h->name_len;
        memcpy(p, h->value, h->value_len);
        d->value = p;
        d->value_len = h->value_len;
        p += h->value_len;
    }
}

origin_fetch *origin_fetch_start(origin_ctx *ctx, const origin_request *req,
                                 const origin_callbacks *cb, void *ud)
{
    const sh_origin_conf *o = req->origin;
    origin_fetch *f = sh_calloc(1, sizeof(*f));
    f->ctx = ctx;
    f->cb = *cb;
    f->ud = ud;
    f->easy = curl_easy_init();
    if (!f->easy) {
        sh_free(f);
        return NULL;
    }
    f->ev_defer = evtimer_new(ctx->base, defer_cb, f);
    f->ev_resume = evtimer_new(ctx->base, resume_cb, f);
    f->ev_read = evtimer_new(ctx->base, read_timeout_cb, f);
    if (!f->ev_defer || !f->ev_resume || !f->ev_read) {
        fprintf(stderr, "shield: out of memory in evtimer_new\n");
        abort(); /* the allocator policy: see alloc.h */
    }
    f->next = ctx->fetches;
    if (ctx->fetches) ctx->fetches->prev = f;
    ctx->fetches = f;
    ctx->nactive++;

    f->method = sh_strdup(req->method && *req->method ? req->method : "GET");
    f->retryable = strcmp(f->method, "GET") == 0 || strcmp(f->method, "HEAD") == 0;
    f->connect_ms = o->connect_timeout_ms;
    f->read_ms = o->read_timeout_ms;
    f->max_attempts = o->attempts < 1 ? 1 : o->attempts;
    if (f->max_attempts > ORIGIN_MAX_ATTEMPTS) f->max_attempts = ORIGIN_MAX_ATTEMPTS;
    f->sign = o->type == SH_ORIGIN_S3 && o->credentials != SH_CRED_NONE;
    f->creds = req->creds;
    /* The credentials (and the origin config) belong to a snapshot: keep it
     * for as long as this fetch may sign or retry. */
    f->snap = req->snap;
    if (f->snap) sh_snapshot_ref(f->snap);
    f->region = sh_strdup(o->region && *o->region ? o->region : "us-east-1");
    f->body_len = req->body ? req->body_len : 0;
    /* methods that define a body always send one, possibly empty (Content-Length: 0) */
    f->has_body = f->body_len > 0 || strcmp(f->method, "POST") == 0 ||
                  strcmp(f->method, "PUT") == 0 || strcmp(f->method, "PATCH") == 0;
    sigv4_sha256_hex(f->body_len ? req->body : "", f->body_len, f->payload_hash);
    copy_headers(f, req);
    if (!req->path_query || req->path_query_len == 0 || req->path_query[0] != '/' ||
        build_url(f, req) < 0) {
        f->start_error = ORIGIN_ERR_INTERNAL;
        arm_timer(f->ev_defer, 0);
        return f;
    }

    CURL *e = f->easy;
    curl_easy_setopt(e, CURLOPT_URL, f->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, f);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    /* the origin is reached directly: an http_proxy in the environment must not
     * silently reroute (and re-sign) every fetch */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    if (f->connect_ms) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)f->connect_ms);
    /* A connection idle for keepalive_timeout is not reused (the origin may be
     * closing it right then); curl closes it when it next prunes its cache, it
     * has no idle-close timer. curl 7.88 drops a connection when its idle time
     * in whole seconds is > MAXAGE_CONN, i.e. it reuses up to MAXAGE_CONN + 1 s:
     * hence the - 1 (0 keeps reuse within the first second). */
    uint64_t ka_s = o->keepalive_timeout_ms / 1000;
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, (long)(ka_s ? ka_s - 1 : 0));
    /* bodies pass through content-encoded; chunked framing is removed */
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_TRANSFER_DECODING, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)ORIGIN_BUFFERSIZE);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    if (strcmp(f->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(f->method, "GET") == 0 && !f->has_body) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, f->method);
        if (f->has_body) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->body_len);
            curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, f->body_len ? req->body : "");
        }
    }
    arm_timer(f->ev_defer, 0);
    return f;
}

void origin_fetch_resume(origin_fetch *f)
{
    if (!f || f->cancelled) return;
    /* curl_easy_pause may call the write callback at once: never from here */
    arm_timer(f->ev_resume, 0);
}

void origin_fetch_cancel(origin_fetch *f)
{
    if (!f) return;
    f->cancelled = 1;
    if (f->ctx->in_curl) {
        /* inside a curl callback: curl aborts the transfer when our callback
         * returns 0, and the fetch is freed from the loop */
        evtimer_del(f->ev_read);
        evtimer_del(f->ev_resume);
        arm_timer(f->ev_defer, 0);
        return;
    }
    fetch_free(f);
}
