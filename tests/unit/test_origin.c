/*
 * The origin client and the credentials providers against real scripted
 * servers: an in-process HTTP server on a free 127.0.0.1 port, run in a pthread
 * with plain blocking sockets, whose behaviour each test picks (a handler per
 * connection). Every fetch runs on a real event_base until on_done, bounded by
 * a safety timer that fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shield/alloc.h"
#include "shield/credentials.h"
#include "shield/origin.h"
#include "shield/sigv4_sign.h"

#include <event2/event.h>
#include <signal.h>
#include <time.h>

#include "scripted_server.h"

static char pattern_byte(size_t i)
{
    return (char)(i % 251);
}

#define PIECES_LEN 200000

/* 200 with Content-Length, body in 10 pieces; keeps the connection open. */
static void h_pieces(srv *s, int fd, int idx)
{
    char req[16384];
    while (read_request(s, fd, req, sizeof(req)) > 0) {
        int head_only = strncmp(req, "HEAD ", 5) == 0;
        char hdr[256];
        snprintf(hdr, sizeof(hdr),
                 "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Conn: %d\r\n"
                 "ETag: \"abc\"\r\n\r\n",
                 PIECES_LEN, idx);
        if (send_str(fd, hdr)) return;
        if (head_only) continue;
        char *body = malloc(PIECES_LEN);
        for (size_t i = 0; i < PIECES_LEN; i++)
            body[i] = pattern_byte(i);
        for (int p = 0; p < 10; p++) {
            usleep(3000);
            if (send_all(fd, body + p * (PIECES_LEN / 10), PIECES_LEN / 10)) {
                free(body);
                return;
            }
        }
        free(body);
    }
}

static void h_chunked(srv *s, int fd, int idx)
{
    char req[16384];
    if (read_request(s, fd, req, sizeof(req)) < 0) return;
    send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    usleep(2000);
    send_str(fd, "5\r\nhello\r\n");
    usleep(2000);
    send_str(fd, "1;ext=1\r\n \r\n10\r\n0123456789abcdef\r\n");
    send_str(fd, "0\r\nX-Trailer: t\r\n\r\n");
    wait_close(s, fd);
}

static void h_100(srv *s, int fd, int idx)
{
    char req[16384];
    if (read_request(s, fd, req, sizeof(req)) < 0) return;
    send_str(fd, "HTTP/1.1 100 Continue\r\nX-Info: one\r\n\r\n"
                 "HTTP/1.1 200 OK\r\nX-A:   spaced  value \t\r\nX-Empty:\r\n"
                 "Content-Length: 5\r\n\r\nhello");
    wait_close(s, fd);
}

static void h_204(srv *s, int fd, int idx)
{
    char req[16384];
    while (read_request(s, fd, req, sizeof(req)) > 0)
        send_str(fd, "HTTP/1.1 204 No Content\r\nX-Z: z\r\n\r\n");
}

#define BIG_LEN (1024 * 1024)

static void h_big(srv *s, int fd, int idx)
{
    char req[16384];
    if (read_request(s, fd, req, sizeof(req)) < 0) return;
    char hdr[128];
    snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_LEN);
    send_str(fd, hdr);
    char *body = malloc(BIG_LEN);
    for (size_t i = 0; i < BIG_LEN; i++)
        body[i] = pattern_byte(i);
    send_all(fd, body, BIG_LEN);
    free(body);
    wait_close(s, fd);
}

static void h_short(srv *s, int fd, int idx)
{
    char req[16384];
    if (read_request(s, fd, req, sizeof(req)) < 0) return;
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    char half[500];
    memset(half, 'x', sizeof(half));
    send_all(fd, half, sizeof(half));
}

static void h_broken_chunked(srv *s, int fd, int idx)
{
    char req[16384];
    if (read_request(s, fd, req, sizeof(req)) < 0) return;
    send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n");
}

static void h_stall(srv *s, int fd, int idx)
{
    char req[16384];
    if (read_request(s, fd, req, sizeof(req)) < 0) return;
    wait_close(s, fd);
}

/* Head and part of the body, then silence. */
static void h_mid_stall(srv *s, int fd, int idx)
{
    char req[16384];
    if (read_request(s, fd, req, sizeof(req)) < 0) return;
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    char part[1000];
    memset(part, 'p', sizeof(part));
    send_all(fd, part, sizeof(part));
    wait_close(s, fd);
}

static void h_close_all(srv *s, int fd, int idx)
{
    char req[16384];
    read_request(s, fd, req, sizeof(req));
}

static void h_close_first(srv *s, int fd, int idx)
{
    if (idx == 0) {
        h_close_all(s, fd, idx);
        return;
    }
    h_pieces(s, fd, idx);
}

static void h_ok(srv *s, int fd, int idx)
{
    char req[16384];
    while (read_request(s, fd, req, sizeof(req)) > 0)
        send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

/* Fake IMDSv2: a session token is required for every metadata GET. */
enum { IMDS_REJECTS, IMDS_SERVED };

static void h_imds(srv *s, int fd, int idx)
{
    char req[16384], resp[2048], body[1024];
    if (read_request(s, fd, req, sizeof(req)) < 0) return;
    const char *status = "200 OK";
    body[0] = '\0';
    int has_token = strcasestr(req, "\r\nX-aws-ec2-metadata-token: TOKEN123\r\n") != NULL;
    if (strncmp(req, "PUT /latest/api/token ", 22) == 0) {
        if (strcasestr(req, "\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n"))
            snprintf(body, sizeof(body), "TOKEN123");
        else
            status = "400 Bad Request";
    } else if (!has_token) {
        atomic_fetch_add(&s->counter[IMDS_REJECTS], 1);
        status = "401 Unauthorized";
    } else if (strncmp(req, "GET /latest/meta-data/iam/security-credentials/ ", 48) == 0) {
        snprintf(body, sizeof(body), "test-role\n");
    } else if (strncmp(req, "GET /latest/meta-data/iam/security-credentials/test-role ", 57) == 0) {
        int n = atomic_fetch_add(&s->counter[IMDS_SERVED], 1) + 1;
        time_t exp = time(NULL) + 3;
        struct tm tm;
        gmtime_r(&exp, &tm);
        char ts[32];
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(body, sizeof(body),
                 "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-11-23T05:00:00Z\",\n"
                 "  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"AKIDIMDS%d\",\n"
                 "  \"SecretAccessKey\" : \"secret\\/%d\",\n  \"Token\" : \"tok%d==\",\n"
                 "  \"Expiration\" : \"%s\"\n}",
                 n, n, n, ts);
    } else {
        status = "404 Not Found";
    }
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
             strlen(body), body);
    send_str(fd, resp);
}

/* ---- client harness ---------------------------------------------------------- */

typedef struct tstate {
    struct event_base *base;
    origin_ctx *ctx;
    origin_fetch *f;
    int responses, done, status;
    origin_result result;
    char detail[256];
    char headers[4096]; /* "name=value\n" of the delivered head */
    char *body;
    size_t body_len;
    int safety_fired;
    int body_calls_after_done;
    /* pause script: pause on the first npauses on_body calls, resuming after pause_ms[i] */
    int npauses, pauses_done;
    int pause_ms[4];
    struct event *resume_ev;
    int cancel_in_body;
    int cancelled;
    int calls_after_cancel;
} tstate;

static void ts_init(tstate *t)
{
    memset(t, 0, sizeof(*t));
    t->base = event_base_new();
    t->ctx = origin_ctx_new(t->base);
    assert_non_null(t->ctx);
    t->result = (origin_result)-1;
}

static void ts_free(tstate *t)
{
    origin_ctx_free(t->ctx);
    if (t->resume_ev) event_free(t->resume_ev);
    event_base_free(t->base);
    free(t->body);
}

static void resume_later(evutil_socket_t fd, short ev, void *arg)
{
    tstate *t = arg;
    origin_fetch_resume(t->f);
}

static void on_response(void *ud, int status, const sh_header *h, size_t n)
{
    tstate *t = ud;
    if (t->cancelled) t->calls_after_cancel++;
    t->responses++;
    t->status = status;
    size_t off = 0;
    t->headers[0] = '\0';
    for (size_t i = 0; i < n && off < sizeof(t->headers); i++)
        off += (size_t)snprintf(t->headers + off, sizeof(t->headers) - off, "%.*s=%.*s\n",
                                (int)h[i].name_len, h[i].name, (int)h[i].value_len, h[i].value);
}

static int on_body(void *ud, const char *data, size_t len)
{
    tstate *t = ud;
    if (t->cancelled) t->calls_after_cancel++;
    if (t->done) t->body_calls_after_done++;
    if (t->cancel_in_body) {
        origin_fetch_cancel(t->f);
        t->cancelled = 1;
        return ORIGIN_BODY_OK;
    }
    if (t->pauses_done < t->npauses) {
        int ms = t->pause_ms[t->pauses_done++];
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        if (!t->resume_ev) t->resume_ev = evtimer_new(t->base, resume_later, t);
        evtimer_add(t->resume_ev, &tv);
        return ORIGIN_BODY_PAUSE;
    }
    t->body = realloc(t->body, t->body_len + len);
    memcpy(t->body + t->body_len, data, len);
    t->body_len += len;
    return ORIGIN_BODY_OK;
}

static void on_done(void *ud, origin_result r, const char *detail)
{
    tstate *t = ud;
    if (t->cancelled) t->calls_after_cancel++;
    t->done++;
    t->result = r;
    t->f = NULL;
    snprintf(t->detail, sizeof(t->detail), "%s", detail ? detail : "");
    event_base_loopbreak(t->base);
}

static const origin_callbacks cbs = {on_response, on_body, on_done};

static void safety(evutil_socket_t fd, short ev, void *arg)
{
    tstate *t = arg;
    t->safety_fired = 1;
    event_base_loopbreak(t->base);
}

/* Run the loop until on_done (or for ms when until_done is 0). */
static void run_loop(tstate *t, int ms, int until_done)
{
    struct event *ev = evtimer_new(t->base, safety, t);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
    while (!t->safety_fired && (!until_done || !t->done))
        event_base_loop(t->base, EVLOOP_ONCE);
    event_free(ev);
    if (until_done && t->safety_fired) fail_msg("fetch did not finish within %d ms", ms);
}

static char endpoint_buf[64];

static sh_origin_conf http_origin(int port)
{
    snprintf(endpoint_buf, sizeof(endpoint_buf), "http://127.0.0.1:%d", port);
    sh_origin_conf o = {
        .name = "o",
        .type = SH_ORIGIN_HTTP,
        .endpoint = endpoint_buf,
        .credentials = SH_CRED_NONE,
        .connect_timeout_ms = 1000,
        .read_timeout_ms = 1000,
        .keepalive_timeout_ms = 5000,
        .attempts = 3,
    };
    return o;
}

static origin_fetch *start(tstate *t, const sh_origin_conf *o, const char *method, const char *pq,
                           const sh_header *h, size_t nh, const char *body, size_t body_len)
{
    origin_request r = {
        .origin = o,
        .method = method,
        .path_query = pq,
        .path_query_len = strlen(pq),
        .headers = h,
        .nheaders = nh,
        .body = body,
        .body_len = body_len,
    };
    int before = t->responses + t->done;
    t->f = origin_fetch_start(t->ctx, &r, &cbs, t);
    assert_non_null(t->f);
    /* nothing may be reported from inside origin_fetch_start */
    assert_int_equal(t->responses + t->done, before);
    return t->f;
}

static void assert_pattern(const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (b[i] != pattern_byte(i))
            fail_msg("body byte %zu is %d, expected %d", i, b[i], pattern_byte(i));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- tests: streaming --------------------------------------------------------- */

static void test_get_content_length_pieces(void **state)
{
    srv *s = srv_start(h_pieces);
    sh_origin_conf o = http_origin(s->port);
    tstate t;
    ts_init(&t);
    sh_header h[] = {{"X-Forwarded-For", 15, "192.0.2.1", 9}, {"Via", 3, "1.1 shield", 10}};
    start(&t, &o, "GET", "/books/a%20b//../c.epub?x=1", h, 2, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    assert_int_equal(t.responses, 1);
    assert_int_equal(t.status, 200);
    assert_non_null(strstr(t.headers, "Content-Length=200000\n"));
    assert_non_null(strstr(t.headers, "ETag=\"abc\"\n"));
    assert_int_equal(t.body_len, PIECES_LEN);
    assert_pattern(t.body, t.body_len);
    /* what the origin saw: path byte-for-byte, HTTP/1.1, no curl defaults */
    assert_true(strncmp(s->last_req, "GET /books/a%20b//../c.epub?x=1 HTTP/1.1\r\n", 42) == 0);
    assert_non_null(strcasestr(s->last_req, "\r\nHost: 127.0.0.1:"));
    assert_non_null(strstr(s->last_req, "\r\nX-Forwarded-For: 192.0.2.1\r\n"));
    assert_null(strcasestr(s->last_req, "\r\nAccept:"));
    assert_null(strcasestr(s->last_req, "\r\nExpect:"));
    assert_null(strcasestr(s->last_req, "\r\nAccept-Encoding:"));
    assert_null(strcasestr(s->last_req, "\r\nAuthorization:"));
    assert_int_equal(origin_ctx_active(t.ctx), 0);
    ts_free(&t);
    srv_stop(s);
}

static void test_keepalive_reuse(void **state)
{
    srv *s = srv_start(h_pieces);
    sh_origin_conf o = http_origin(s->port);
    o.keepalive_timeout_ms = 1000;
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/one", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    t.done = t.responses = 0;
    t.body_len = 0;
    start(&t, &o, "HEAD", "/two", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    assert_int_equal(t.responses, 1);
    assert_int_equal(t.body_len, 0);
    assert_true(strncmp(s->last_req, "HEAD /two HTTP/1.1\r\n", 20) == 0);
    assert_int_equal(atomic_load(&s->nconn), 1);
    assert_non_null(strstr(t.headers, "X-Conn=0\n"));
    /* idle longer than keepalive_timeout: not reused (the origin may be closing it) */
    usleep(1200000);
    t.done = 0;
    start(&t, &o, "HEAD", "/three", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    assert_int_equal(atomic_load(&s->nconn), 2);
    ts_free(&t);
    srv_stop(s);
}

static void test_chunked(void **state)
{
    srv *s = srv_start(h_chunked);
    sh_origin_conf o = http_origin(s->port);
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/c", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    assert_int_equal(t.responses, 1);
    assert_non_null(strstr(t.headers, "Transfer-Encoding=chunked\n"));
    assert_null(strstr(t.headers, "X-Trailer"));
    assert_int_equal(t.body_len, 22);
    assert_memory_equal(t.body, "hello 0123456789abcdef", 22);
    ts_free(&t);
    srv_stop(s);
}

static void test_1xx_skipped_and_header_values_trimmed(void **state)
{
    srv *s = srv_start(h_100);
    sh_origin_conf o = http_origin(s->port);
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/h", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    assert_int_equal(t.responses, 1);
    assert_int_equal(t.status, 200);
    assert_string_equal(t.headers, "X-A=spaced  value\nX-Empty=\nContent-Length=5\n");
    assert_int_equal(t.body_len, 5);
    ts_free(&t);
    srv_stop(s);
}

static void test_empty_body_still_delivers_head(void **state)
{
    srv *s = srv_start(h_204);
    sh_origin_conf o = http_origin(s->port);
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/nc", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    assert_int_equal(t.responses, 1);
    assert_int_equal(t.status, 204);
    assert_string_equal(t.headers, "X-Z=z\n");
    assert_int_equal(t.body_len, 0);
    ts_free(&t);
    srv_stop(s);
}

static void test_pause_resume_no_timeout(void **state)
{
    srv *s = srv_start(h_big);
    sh_origin_conf o = http_origin(s->port);
    tstate t;
    ts_init(&t);
    /* the long pause outlasts read_timeout (1 s): a paused fetch must not time out */
    t.npauses = 3;
    t.pause_ms[0] = 10;
    t.pause_ms[1] = 1500;
    t.pause_ms[2] = 0;
    start(&t, &o, "GET", "/big", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    assert_int_equal(t.pauses_done, 3);
    assert_int_equal(t.body_len, BIG_LEN);
    assert_pattern(t.body, t.body_len);
    ts_free(&t);
    srv_stop(s);
}

/* ---- tests: failures ---------------------------------------------------------- */

static void test_short_body_is_read_error(void **state)
{
    srv *s = srv_start(h_short);
    sh_origin_conf o = http_origin(s->port);
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/short", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_ERR_READ);
    assert_int_equal(t.responses, 1);
    assert_int_equal(t.body_len, 500);
    assert_int_equal(atomic_load(&s->nconn), 1); /* never retried after the head */
    ts_free(&t);
    srv_stop(s);
}

static void test_broken_chunked_is_read_error(void **state)
{
    srv *s = srv_start(h_broken_chunked);
    sh_origin_conf o = http_origin(s->port);
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/bc", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_ERR_READ);
    assert_int_equal(t.responses, 1);
    ts_free(&t);
    srv_stop(s);
}

static void test_connection_refused(void **state)
{
    sh_origin_conf o = http_origin(dead_port());
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/x", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_ERR_CONNECT);
    assert_int_equal(t.responses, 0);
    ts_free(&t);
}

static void test_stall_before_head_is_timeout(void **state)
{
    srv *s = srv_start(h_stall);
    sh_origin_conf o = http_origin(s->port);
    o.attempts = 1;
    tstate t;
    ts_init(&t);
    double t0 = now_s();
    start(&t, &o, "GET", "/stall", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    double el = now_s() - t0;
    assert_int_equal(t.result, ORIGIN_ERR_TIMEOUT);
    assert_int_equal(t.responses, 0);
    assert_true(el >= 0.9 && el < 4.0);
    ts_free(&t);
    srv_stop(s);
}

static void test_stall_after_head_is_read_error(void **state)
{
    srv *s = srv_start(h_mid_stall);
    sh_origin_conf o = http_origin(s->port);
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/mid", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_ERR_READ);
    assert_int_equal(t.responses, 1);
    assert_int_equal(t.body_len, 1000);
    assert_int_equal(atomic_load(&s->nconn), 1);
    ts_free(&t);
    srv_stop(s);
}

static void test_retry_after_closed_connection(void **state)
{
    srv *s = srv_start(h_close_first);
    sh_origin_conf o = http_origin(s->port);
    o.attempts = 2;
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/retry", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    assert_int_equal(t.responses, 1);
    assert_int_equal(t.body_len, PIECES_LEN);
    assert_int_equal(atomic_load(&s->nconn), 2);
    ts_free(&t);
    srv_stop(s);
}

static void test_attempts_are_bounded(void **state)
{
    srv *s = srv_start(h_close_all);
    sh_origin_conf o = http_origin(s->port);
    o.attempts = 3;
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/never", NULL, 0, NULL, 0);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_ERR_PROTOCOL); /* empty reply */
    assert_int_equal(t.responses, 0);
    assert_int_equal(atomic_load(&s->nconn), 3);
    ts_free(&t);
    srv_stop(s);
}

static void test_post_not_retried(void **state)
{
    srv *s = srv_start(h_close_all);
    sh_origin_conf o = http_origin(s->port);
    o.attempts = 3;
    tstate t;
    ts_init(&t);
    start(&t, &o, "POST", "/form", NULL, 0, "a=1&b=2", 7);
    run_loop(&t, 10000, 1);
    assert_int_not_equal(t.result, ORIGIN_OK);
    assert_int_equal(atomic_load(&s->nconn), 1);
    ts_free(&t);
    srv_stop(s);
}

static void test_post_body_sent(void **state)
{
    srv *s = srv_start(h_ok);
    sh_origin_conf o = http_origin(s->port);
    tstate t;
    ts_init(&t);
    char body[3000];
    memset(body, 'b', sizeof(body)); /* large enough for curl's default Expect */
    start(&t, &o, "POST", "/form", NULL, 0, body, sizeof(body));
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    assert_true(strncmp(s->last_req, "POST /form HTTP/1.1\r\n", 21) == 0);
    assert_non_null(strstr(s->last_req, "\r\nContent-Length: 3000\r\n"));
    assert_null(strcasestr(s->last_req, "\r\nExpect:"));
    assert_null(strcasestr(s->last_req, "\r\nContent-Type:"));
    assert_int_equal(s->last_len, strstr(s->last_req, "\r\n\r\n") + 4 - s->last_req + 3000);
    ts_free(&t);
    srv_stop(s);
}

/* ---- tests: cancel --------------------------------------------------------------- */

static void test_cancel_in_on_body(void **state)
{
    srv *s = srv_start(h_mid_stall);
    sh_origin_conf o = http_origin(s->port);
    tstate t;
    ts_init(&t);
    t.cancel_in_body = 1;
    start(&t, &o, "GET", "/cancel", NULL, 0, NULL, 0);
    while (!t.cancelled) {
        run_loop(&t, 3000, 0);
        assert_false(t.safety_fired && !t.cancelled);
    }
    t.safety_fired = 0;
    run_loop(&t, 200, 0); /* anything left would show up now */
    assert_int_equal(t.calls_after_cancel, 0);
    assert_int_equal(t.done, 0);
    assert_int_equal(origin_ctx_active(t.ctx), 0);
    ts_free(&t);
    srv_stop(s);
}

static void cancel_later(evutil_socket_t fd, short ev, void *arg)
{
    tstate *t = arg;
    origin_fetch_cancel(t->f);
    t->cancelled = 1;
}

static void test_cancel_from_loop_and_ctx_free(void **state)
{
    srv *s = srv_start(h_mid_stall);
    sh_origin_conf o = http_origin(s->port);
    o.read_timeout_ms = 5000;
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/c1", NULL, 0, NULL, 0);
    struct event *ev = evtimer_new(t.base, cancel_later, &t);
    struct timeval tv = {0, 300000};
    evtimer_add(ev, &tv);
    run_loop(&t, 600, 0);
    event_free(ev);
    assert_int_equal(t.responses, 1);
    assert_int_equal(t.calls_after_cancel, 0);
    assert_int_equal(origin_ctx_active(t.ctx), 0);
    /* fetches still running (one not even started) when the context goes away */
    t.cancelled = 0;
    start(&t, &o, "GET", "/c2", NULL, 0, NULL, 0);
    t.safety_fired = 0;
    run_loop(&t, 200, 0);
    assert_int_equal(t.responses, 2);
    t.cancelled = 1;
    start(&t, &o, "GET", "/c3", NULL, 0, NULL, 0);
    assert_int_equal(origin_ctx_active(t.ctx), 2);
    origin_ctx_free(t.ctx);
    t.ctx = NULL;
    assert_int_equal(t.calls_after_cancel, 0);
    ts_free(&t);
    srv_stop(s);
}

/* ---- tests: SigV4 ------------------------------------------------------------------- */

/* AWS's published example (GET Object, sig-v4-header-based-auth). */
static void test_sigv4_aws_vector(void **state)
{
    sh_header h[] = {
        {"Host", 4, "examplebucket.s3.amazonaws.com", 30},
        {"Range", 5, "bytes=0-9", 9},
        {"x-amz-content-sha256", 20, SIGV4_EMPTY_SHA256, 64},
        {"x-amz-date", 10, "20130524T000000Z", 16},
    };
    sigv4_input in = {"GET", "/test.txt", 9, NULL, 0, h, 4, SIGV4_EMPTY_SHA256};
    char *auth =
        sigv4_authorization(&in, "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                            "us-east-1", "s3", "20130524T000000Z");
    assert_string_equal(
        auth,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    sh_free(auth);

    char *q = sigv4_canonical_query("z=1&a=2&a=1&b=x%2fy&c&&d=%7E+", 29, NULL);
    assert_string_equal(q, "a=1&a=2&b=x%2Fy&c=&d=~%2B&z=1");
    sh_free(q);
    q = sigv4_canonical_query("X-Amz-Signature=abc&b=1", 23, "X-Amz-Signature");
    assert_string_equal(q, "b=1");
    sh_free(q);
    char *u = sigv4_canonical_uri("/a b/%7e/x%2Fy//../c", 20);
    assert_string_equal(u, "/a%20b/~/x/y//../c");
    sh_free(u);
}

/* Find header name in a raw request head; the value trimmed into out. */
static int raw_header(const char *req, const char *name, char *out, size_t cap)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "\r\n%s:", name);
    const char *p = strcasestr(req, pat);
    if (!p) return -1;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, "\r");
    snprintf(out, cap, "%.*s", (int)n, p);
    return 0;
}

static void check_signed_request(const char *req, const char *secret, const char *region)
{
    char auth[1024], date[64], list[512];
    assert_int_equal(raw_header(req, "Authorization", auth, sizeof(auth)), 0);
    assert_int_equal(raw_header(req, "x-amz-date", date, sizeof(date)), 0);
    assert_int_equal(strlen(date), 16);
    assert_true(strncmp(auth, "AWS4-HMAC-SHA256 Credential=AKIDTEST/", 36) == 0);
    char scope_tail[128];
    snprintf(scope_tail, sizeof(scope_tail), "/%s/s3/aws4_request, SignedHeaders=", region);
    assert_non_null(strstr(auth, scope_tail));
    const char *sh = strstr(auth, "SignedHeaders=") + 14;
    snprintf(list, sizeof(list), "%.*s", (int)strcspn(sh, ","), sh);
    assert_non_null(strstr(list, "host"));
    assert_non_null(strstr(list, "x-amz-content-sha256"));
    assert_non_null(strstr(list, "x-amz-date"));

    /* recompute from the bytes received: proves we signed exactly what was sent */
    sh_header h[32];
    char vals[32][512];
    size_t n = 0;
    for (char *tok = strtok(list, ";"); tok && n < 32; tok = strtok(NULL, ";"), n++) {
        assert_int_equal(raw_header(req, tok, vals[n], sizeof(vals[n])), 0);
        h[n] = (sh_header){tok, strlen(tok), vals[n], strlen(vals[n])};
    }
    const char *sp = strchr(req, ' ') + 1;
    const char *target_end = strchr(sp, ' ');
    const char *qm = memchr(sp, '?', (size_t)(target_end - sp));
    char method[16], payload[80];
    snprintf(method, sizeof(method), "%.*s", (int)(sp - 1 - req), req);
    assert_int_equal(raw_header(req, "x-amz-content-sha256", payload, sizeof(payload)), 0);
    sigv4_input in = {
        .method = method,
        .path = sp,
        .path_len = (size_t)((qm ? qm : target_end) - sp),
        .query = qm ? qm + 1 : NULL,
        .query_len = qm ? (size_t)(target_end - qm - 1) : 0,
        .headers = h,
        .nheaders = n,
        .payload_hash = payload,
    };
    char *mine = sigv4_authorization(&in, "AKIDTEST", secret, region, "s3", date);
    assert_string_equal(mine, auth);
    sh_free(mine);
}

static void test_sigv4_signed_s3_request(void **state)
{
    srv *s = srv_start(h_ok);
    setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "sekrit/KEY+1", 1);
    setenv("AWS_SESSION_TOKEN", "session+token/==", 1);
    sh_origin_conf o = http_origin(s->port);
    o.type = SH_ORIGIN_S3;
    o.bucket = "books";
    o.region = "eu-west-1";
    o.path_style = 1;
    o.credentials = SH_CRED_ENV;
    char err[256];
    sh_creds *c = sh_creds_new(&o, err, sizeof(err));
    assert_non_null(c);
    tstate t;
    ts_init(&t);
    sh_header h[] = {
        {"Range", 5, "bytes=0-99", 10},
        {"If-None-Match", 13, "\"etag\"", 6},
        {"X-Forwarded-For", 15, "192.0.2.1,  198.51.100.2", 24},
        {"Authorization", 13, "viewer-credentials", 18}, /* must be replaced */
    };
    origin_request r = {
        .origin = &o,
        .creds = c,
        .method = "GET",
        .path_query = "/dir/a%20b%2Bc.epub?z=1&a=2&a=1&flag",
        .path_query_len = 36,
        .headers = h,
        .nheaders = 4,
    };
    t.f = origin_fetch_start(t.ctx, &r, &cbs, &t);
    run_loop(&t, 10000, 1);
    assert_int_equal(t.result, ORIGIN_OK);
    const char *req = s->last_req;
    assert_true(strncmp(req, "GET /books/dir/a%20b%2Bc.epub?z=1&a=2&a=1&flag HTTP/1.1\r\n", 57) ==
                0);
    assert_null(strstr(req, "viewer-credentials"));
    char v[256];
    assert_int_equal(raw_header(req, "x-amz-security-token", v, sizeof(v)), 0);
    assert_string_equal(v, "session+token/==");
    assert_int_equal(raw_header(req, "x-amz-content-sha256", v, sizeof(v)), 0);
    assert_string_equal(v, SIGV4_EMPTY_SHA256);
    check_signed_request(req, "sekrit/KEY+1", "eu-west-1");

    /* virtual-host style: bucket.host (curl resolves *.localhost to loopback) */
    char ep[64];
    snprintf(ep, sizeof(ep), "http://localhost:%d", s->port);
    o.endpoint = ep;
    o.path_style = 0;
    t.done = 0;
    r.path_query = "/k.pdf";
    r.path_query_len = 6;
    r.nheaders = 0;
    t.f = origin_fetch_start(t.ctx, &r, &cbs, &t);
    run_loop(&t, 10000, 1);
    if (t.result != ORIGIN_OK)
        fail_msg("virtual-host fetch: %s (%s)", origin_result_name(t.result), t.detail);
    assert_true(strncmp(s->last_req, "GET /k.pdf HTTP/1.1\r\n", 21) == 0);
    assert_int_equal(raw_header(s->last_req, "Host", v, sizeof(v)), 0);
    char host[64];
    snprintf(host, sizeof(host), "books.localhost:%d", s->port);
    assert_string_equal(v, host);
    check_signed_request(s->last_req, "sekrit/KEY+1", "eu-west-1");

    ts_free(&t);
    sh_creds_free(c);
    unsetenv("AWS_SESSION_TOKEN");
    srv_stop(s);
}

static void test_no_credentials_is_reported_from_loop(void **state)
{
    sh_origin_conf o = http_origin(dead_port());
    o.type = SH_ORIGIN_S3;
    o.bucket = "b";
    o.path_style = 1;
    o.credentials = SH_CRED_ENV;
    tstate t;
    ts_init(&t);
    start(&t, &o, "GET", "/x", NULL, 0, NULL, 0); /* creds NULL */
    run_loop(&t, 5000, 1);
    assert_int_equal(t.result, ORIGIN_ERR_CREDENTIALS);
    assert_int_equal(t.responses, 0);
    ts_free(&t);
}

/* ---- tests: credentials ------------------------------------------------------------ */

static void test_creds_env(void **state)
{
    sh_origin_conf o = {.type = SH_ORIGIN_S3, .credentials = SH_CRED_ENV};
    char err[256];
    sh_aws_keys k;
    unsetenv("AWS_ACCESS_KEY_ID");
    assert_null(sh_creds_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "AWS_ACCESS_KEY_ID"));
    setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
    unsetenv("AWS_SESSION_TOKEN");
    sh_creds *c = sh_creds_new(&o, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(sh_creds_get(c, &k), 0);
    assert_string_equal(k.access_key, "AKENV");
    assert_string_equal(k.secret_key, "SKENV");
    assert_string_equal(k.token, "");
    sh_creds_free(c);

    o.credentials = SH_CRED_NONE;
    c = sh_creds_new(&o, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(sh_creds_get(c, &k), -1);
    sh_creds_free(c);
    assert_int_equal(sh_creds_get(NULL, &k), -1);
}

static void test_creds_file(void **state)
{
    char path[] = "/tmp/shield-creds-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *ini =
        "# comment\n[default]\naws_access_key_id = AKDEF\naws_secret_access_key=SKDEF\n"
        "\n; another comment\n[ books ]\r\n  aws_access_key_id =  AKBOOKS  \r\n"
        "aws_secret_access_key = SK/BOOKS+=\r\naws_session_token = TOKBOOKS\r\n"
        "[other]\naws_access_key_id = AKOTHER\n";
    assert_int_equal(write(fd, ini, strlen(ini)), (ssize_t)strlen(ini));
    close(fd);
    sh_origin_conf o = {.type = SH_ORIGIN_S3,
                        .credentials = SH_CRED_FILE,
                        .credentials_file = path,
                        .credentials_profile = "books"};
    char err[256];
    sh_aws_keys k;
    sh_creds *c = sh_creds_new(&o, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(sh_creds_get(c, &k), 0);
    assert_string_equal(k.access_key, "AKBOOKS");
    assert_string_equal(k.secret_key, "SK/BOOKS+=");
    assert_string_equal(k.token, "TOKBOOKS");
    sh_creds_free(c);
    o.credentials_profile = NULL;
    c = sh_creds_new(&o, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(sh_creds_get(c, &k), 0);
    assert_string_equal(k.access_key, "AKDEF");
    assert_string_equal(k.token, "");
    sh_creds_free(c);
    o.credentials_profile = "other"; /* no secret */
    assert_null(sh_creds_new(&o, err, sizeof(err)));
    o.credentials_profile = "missing";
    assert_null(sh_creds_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "not found"));
    unlink(path);
    assert_null(sh_creds_new(&o, err, sizeof(err)));
}

static void test_creds_imds_and_refresh(void **state)
{
    srv *s = srv_start(h_imds);
    /* the fake really requires the token: a bare GET is refused */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    send_str(fd, "GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nHost: x\r\n\r\n");
    char resp[512] = "";
    ssize_t n = recv(fd, resp, sizeof(resp) - 1, MSG_WAITALL);
    assert_true(n > 0);
    close(fd);
    assert_true(strncmp(resp, "HTTP/1.1 401", 12) == 0);
    assert_int_equal(atomic_load(&s->counter[IMDS_REJECTS]), 1);

    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/", s->port);
    sh_origin_conf o = {.type = SH_ORIGIN_S3, .credentials = SH_CRED_IMDS, .imds_endpoint = ep};
    char err[256] = "";
    sh_creds *c = sh_creds_new(&o, err, sizeof(err));
    if (!c) fail_msg("imds: %s", err);
    sh_aws_keys k;
    assert_int_equal(sh_creds_get(c, &k), 0);
    assert_string_equal(k.access_key, "AKIDIMDS1");
    assert_string_equal(k.secret_key, "secret/1");
    assert_string_equal(k.token, "tok1==");
    assert_true(k.expiration > time(NULL) && k.expiration <= time(NULL) + 4);
    /* expiry 3 s ahead: the refresh thread must replace the keys in a second or two */
    double t0 = now_s();
    while (strcmp(k.access_key, "AKIDIMDS1") == 0 && now_s() - t0 < 8) {
        usleep(50000);
        assert_int_equal(sh_creds_get(c, &k), 0);
    }
    assert_string_not_equal(k.access_key, "AKIDIMDS1");
    assert_true(strncmp(k.access_key, "AKIDIMDS", 8) == 0);
    assert_int_equal(atomic_load(&s->counter[IMDS_REJECTS]), 1); /* we always sent the token */
    sh_creds_free(c);

    /* unreachable IMDS: a clear error, no provider */
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", dead_port());
    assert_null(sh_creds_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "imds"));
    srv_stop(s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    origin_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigv4_aws_vector),
        cmocka_unit_test(test_get_content_length_pieces),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_1xx_skipped_and_header_values_trimmed),
        cmocka_unit_test(test_empty_body_still_delivers_head),
        cmocka_unit_test(test_pause_resume_no_timeout),
        cmocka_unit_test(test_short_body_is_read_error),
        cmocka_unit_test(test_broken_chunked_is_read_error),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_stall_before_head_is_timeout),
        cmocka_unit_test(test_stall_after_head_is_read_error),
        cmocka_unit_test(test_retry_after_closed_connection),
        cmocka_unit_test(test_attempts_are_bounded),
        cmocka_unit_test(test_post_not_retried),
        cmocka_unit_test(test_post_body_sent),
        cmocka_unit_test(test_cancel_in_on_body),
        cmocka_unit_test(test_cancel_from_loop_and_ctx_free),
        cmocka_unit_test(test_sigv4_signed_s3_request),
        cmocka_unit_test(test_no_credentials_is_reported_from_loop),
        cmocka_unit_test(test_creds_env),
        cmocka_unit_test(test_creds_file),
        cmocka_unit_test(test_creds_imds_and_refresh),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    origin_global_cleanup();
    return rc;
}
