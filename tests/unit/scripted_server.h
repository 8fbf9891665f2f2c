/*
 * A scripted HTTP server for unit tests: listens on a free 127.0.0.1 port,
 * accepts in a pthread and runs the test's handler for each connection in a
 * thread of its own, with plain blocking sockets. Handlers use the helpers
 * below (read_request() records the last request for assertions). srv_stop()
 * wakes every thread (handlers blocked in wait_readable/wait_close see the
 * stop flag) and joins them: free the client side first so connections close.
 */
#ifndef SHIELD_TEST_SCRIPTED_SERVER_H
#define SHIELD_TEST_SCRIPTED_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct srv srv;
typedef void (*conn_handler)(srv *s, int fd, int idx);

struct srv {
    int lfd;
    int port;
    pthread_t thr;
    atomic_int stop;
    atomic_int nconn;
    atomic_int nreq;
    atomic_int counter[4]; /* for the handlers' own bookkeeping */
    conn_handler handler;
    pthread_t conns[64]; /* one thread per connection, joined by srv_stop */
    int nthreads;
    pthread_mutex_t mu;
    char last_req[16384]; /* last request head + body, for assertions */
    size_t last_len;
};

typedef struct conn_arg {
    srv *s;
    int fd, idx;
} conn_arg;

static inline void *conn_main(void *arg)
{
    conn_arg *c = arg;
    c->s->handler(c->s, c->fd, c->idx);
    close(c->fd);
    free(c);
    return NULL;
}

static inline void *srv_main(void *arg)
{
    srv *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            if (atomic_load(&s->stop)) break;
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break;
        }
        conn_arg *c = malloc(sizeof(*c));
        *c = (conn_arg){s, fd, atomic_fetch_add(&s->nconn, 1)};
        if (s->nthreads == 64 || pthread_create(&s->conns[s->nthreads], NULL, conn_main, c)) {
            close(fd);
            free(c);
            continue;
        }
        s->nthreads++;
    }
    return NULL;
}

static inline srv *srv_start(conn_handler h)
{
    srv *s = calloc(1, sizeof(*s));
    s->handler = h;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(s->lfd, 16)) {
        perror("scripted server");
        abort();
    }
    socklen_t len = sizeof(a);
    getsockname(s->lfd, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->thr, NULL, srv_main, s);
    return s;
}

static inline void srv_stop(srv *s)
{
    atomic_store(&s->stop, 1);
    shutdown(s->lfd, SHUT_RDWR); /* wakes accept() */
    pthread_join(s->thr, NULL);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->conns[i], NULL);
    close(s->lfd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* A port nothing listens on: bound once, then closed. */
static inline int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* Wait for fd to be readable; 1 readable, 0 stopped. */
static inline int wait_readable(srv *s, int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (!atomic_load(&s->stop)) {
        int r = poll(&p, 1, 50);
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return 0;
    }
    return 0;
}

/* Read one request (head and Content-Length body). Its length, or -1 at EOF. */
static inline ssize_t read_request(srv *s, int fd, char *buf, size_t cap)
{
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        if (len + 1 >= cap || !wait_readable(s, fd)) return -1;
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0) return -1;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head = (size_t)(end + 4 - buf);
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    while (len < head + body) {
        if (len + 1 >= cap || !wait_readable(s, fd)) return -1;
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0) return -1;
        len += (size_t)n;
        buf[len] = '\0';
    }
    pthread_mutex_lock(&s->mu);
    memcpy(s->last_req, buf, len + 1);
    s->last_len = len;
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->nreq, 1);
    return (ssize_t)len;
}

static inline int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static inline int send_str(int fd, const char *s)
{
    return send_all(fd, s, strlen(s));
}

/* Block until the client closes (or the server stops). */
static inline void wait_close(srv *s, int fd)
{
    char tmp[4096];
    while (wait_readable(s, fd) && recv(fd, tmp, sizeof(tmp), 0) > 0)
        ;
}

#endif
