/*
 * AWS credentials providers (env, shared-credentials file, IMDSv2).
 *
 * Only IMDS credentials expire, so only an IMDS provider owns a refresh
 * thread; env and file keys are read once at start. The IMDS calls are
 * blocking curl_easy transfers with 2 s limits: they run on the main thread
 * before workers start and on the refresh thread, never on an event loop.
 *
 * SH_CRED_NONE: sh_creds_new() returns a provider holding no keys, for which
 * sh_creds_get() answers -1. The origin client never asks for keys for such an
 * origin (unsigned requests), so callers may equally pass NULL.
 */
#include "shield/credentials.h"
#include "shield/alloc.h"
#include "shield/log.h"
#include "shield/origin.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IMDS_TIMEOUT_MS  2000L
#define IMDS_MAX_BODY    65536
#define REFRESH_MARGIN_S 300 /* refresh at least 5 min before expiry */
#define REFRESH_RETRY_S  3   /* after a failed refresh, keeping the old keys */

struct sh_creds {
    sh_cred_source source;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled by sh_creds_free to stop the refresh thread */
    sh_aws_keys keys;
    int have;
    int stop;
    int thread_started;
    pthread_t thread;
    char *imds_endpoint;
};

/* err may be NULL; prefix and arg are concatenated ("imds: " "bad token"). */
static void set_err(char *err, size_t errlen, const char *prefix, const char *arg)
{
    if (err && errlen) snprintf(err, errlen, "%s%s", prefix, arg ? arg : "");
}

/* Copy src into a fixed field; fails (instead of truncating a key) if too long. */
static int copy_field(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap) return -1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

/* ---- env ------------------------------------------------------------------ */

static int load_env(sh_aws_keys *k, char *err, size_t errlen)
{
    const char *ak = getenv("AWS_ACCESS_KEY_ID");
    const char *sk = getenv("AWS_SECRET_ACCESS_KEY");
    const char *tok = getenv("AWS_SESSION_TOKEN");
    if (!ak || !*ak || !sk || !*sk) {
        set_err(err, errlen,
                "credentials env: ", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set");
        return -1;
    }
    memset(k, 0, sizeof(*k));
    if (copy_field(k->access_key, sizeof(k->access_key), ak, strlen(ak)) ||
        copy_field(k->secret_key, sizeof(k->secret_key), sk, strlen(sk)) ||
        (tok && copy_field(k->token, sizeof(k->token), tok, strlen(tok)))) {
        set_err(err, errlen, "credentials env: ", "a value is too long");
        return -1;
    }
    return 0;
}

/* ---- shared-credentials file ---------------------------------------------- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

static int load_file(const sh_origin_conf *o, sh_aws_keys *k, char *err, size_t errlen)
{
    char pathbuf[4096];
    const char *path = o->credentials_file;
    if (!path || !*path) path = getenv("AWS_SHARED_CREDENTIALS_FILE");
    if (!path || !*path) {
        const char *home = getenv("HOME");
        snprintf(pathbuf, sizeof(pathbuf), "%s/.aws/credentials", home ? home : "");
        path = pathbuf;
    }
    const char *profile =
        o->credentials_profile && *o->credentials_profile ? o->credentials_profile : "default";
    FILE *f = fopen(path, "r");
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "credentials file %s: %s", path, strerror(errno));
        return -1;
    }
    memset(k, 0, sizeof(*k));
    char line[4096];
    int in_profile = 0, found = 0, too_long = 0;
    while (fgets(line, sizeof(line), f)) {
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';') continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end) continue;
            *end = '\0';
            char *name = trim(s + 1);
            /* the shared config file spells sections "profile name" */
            if (strncmp(name, "profile ", 8) == 0) name = trim(name + 8);
            in_profile = strcmp(name, profile) == 0;
            found |= in_profile;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in_profile || !eq) continue;
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        for (char *c = key; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (strcmp(key, "aws_access_key_id") == 0)
            too_long |= copy_field(k->access_key, sizeof(k->access_key), val, strlen(val));
        else if (strcmp(key, "aws_secret_access_key") == 0)
            too_long |= copy_field(k->secret_key, sizeof(k->secret_key), val, strlen(val));
        else if (strcmp(key, "aws_session_token") == 0)
            too_long |= copy_field(k->token, sizeof(k->token), val, strlen(val));
    }
    fclose(f);
    if (!found || too_long || !k->access_key[0] || !k->secret_key[0]) {
        if (err && errlen)
            snprintf(err, errlen, "credentials file %s: profile [%s] %s", path, profile,
                     !found     ? "not found"
                     : too_long ? "has a value that is too long"
                                : "lacks aws_access_key_id or aws_secret_access_key");
        return -1;
    }
    return 0;
}

/* ---- IMDSv2 --------------------------------------------------------------- */

typedef struct imds_body {
    char buf[IMDS_MAX_BODY];
    size_t len;
} imds_body;

static size_t imds_write(char *p, size_t size, size_t nmemb, void *ud)
{
    imds_body *b = ud;
    size_t n = size * nmemb;
    if (n > sizeof(b->buf) - 1 - b->len)
        return 0; /* larger than any IMDS answer: refuse rather than truncate */
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return n;
}

/* One blocking IMDS call; 0 on a 200 answer. */
static int imds_call(const char *method, const char *url, const char *header, imds_body *body,
                     char *err, size_t errlen)
{
    CURL *e = curl_easy_init();
    if (!e) {
        set_err(err, errlen, "imds: ", "curl_easy_init failed");
        return -1;
    }
    struct curl_slist *h = NULL, *tmp;
    char ebuf[CURL_ERROR_SIZE] = "";
    body->len = 0;
    body->buf[0] = '\0';
    if ((tmp = curl_slist_append(h, header))) h = tmp;
    if ((tmp = curl_slist_append(h, "Accept:"))) h = tmp;
    if (strcmp(method, "PUT") == 0) {
        if ((tmp = curl_slist_append(h, "Content-Type:"))) h = tmp;
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* IMDS is link-local: never via a proxy */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, IMDS_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, IMDS_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, imds_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ebuf);
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    if (rc != CURLE_OK) {
        if (err && errlen)
            snprintf(err, errlen, "imds %s %s: %s", method, url,
                     ebuf[0] ? ebuf : curl_easy_strerror(rc));
        return -1;
    }
    if (status != 200) {
        if (err && errlen) snprintf(err, errlen, "imds %s %s: HTTP %ld", method, url, status);
        return -1;
    }
    return 0;
}

/* The string value of "key" in a flat JSON object, unescaped. 0 or -1. */
static int json_string(const char *json, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p) return -1;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p++ != ':') return -1;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p++ != '"') return -1;
    size_t n = 0;
    for (; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\') {
            p++;
            switch (*p) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'u':
                return -1; /* keys and tokens are plain ASCII */
            case '\0':
                return -1;
            default:
                c = *p;
                break; /* \" \\ \/ */
            }
        }
        if (n + 1 >= cap) return -1;
        out[n++] = c;
    }
    if (*p != '"') return -1;
    out[n] = '\0';
    return 0;
}

/* "2026-11-23T12:00:00Z" to epoch seconds; -1 if malformed. */
static int64_t parse_iso8601(const char *s)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, sec;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6) return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm);
}

static int load_imds(const char *endpoint, sh_aws_keys *k, char *err, size_t errlen)
{
    imds_body *b = sh_malloc(sizeof(*b));
    char url[1024], hdr[512];
    int rc = -1;

    snprintf(url, sizeof(url), "%s/latest/api/token", endpoint);
    if (imds_call("PUT", url, "X-aws-ec2-metadata-token-ttl-seconds: 21600", b, err, errlen))
        goto out;
    char *token = trim(b->buf);
    if (!*token || strlen(token) > 400) {
        set_err(err, errlen, "imds: ", "bad session token");
        goto out;
    }
    snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %s", token);

    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", endpoint);
    if (imds_call("GET", url, hdr, b, err, errlen)) goto out;
    b->buf[strcspn(b->buf, "\r\n")] = '\0';
    char *role = trim(b->buf);
    if (!*role || strlen(role) > 256) {
        set_err(err, errlen, "imds: ", "no IAM role attached to the instance");
        goto out;
    }
    char role_copy[257];
    snprintf(role_copy, sizeof(role_copy), "%s", role);
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", endpoint,
             role_copy);
    if (imds_call("GET", url, hdr, b, err, errlen)) goto out;

    char code[64], exp[64];
    memset(k, 0, sizeof(*k));
    if (json_string(b->buf, "Code", code, sizeof(code)) == 0 && strcmp(code, "Success") != 0) {
        set_err(err, errlen, "imds: credentials Code is ", code);
        goto out;
    }
    if (json_string(b->buf, "AccessKeyId", k->access_key, sizeof(k->access_key)) ||
        json_string(b->buf, "SecretAccessKey", k->secret_key, sizeof(k->secret_key)) ||
        json_string(b->buf, "Token", k->token, sizeof(k->token))) {
        set_err(err, errlen, "imds: ", "malformed credentials document");
        goto out;
    }
    if (json_string(b->buf, "Expiration", exp, sizeof(exp)) == 0) {
        k->expiration = parse_iso8601(exp);
        if (k->expiration < 0) {
            set_err(err, errlen, "imds: bad Expiration ", exp);
            goto out;
        }
    }
    rc = 0;
out:
    explicit_bzero(b, sizeof(*b)); /* the token and keys went through it */
    sh_free(b);
    return rc;
}

/* ---- refresh thread --------------------------------------------------------- */

/* Seconds from now until the keys should be replaced. */
static int64_t refresh_delay(int64_t expiration, int64_t now)
{
    if (expiration <= 0)
        return 3600; /* no expiry given: still pick up a rotated role now and then */
    int64_t left = expiration - now;
    int64_t d = left / 2;
    if (left - REFRESH_MARGIN_S < d) d = left - REFRESH_MARGIN_S;
    return d < 1 ? 1 : d;
}

static void deadline_after(struct timespec *ts, int64_t seconds)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)seconds;
}

static void *refresh_main(void *arg)
{
    sh_creds *c = arg;
    struct timespec deadline;
    pthread_mutex_lock(&c->mu);
    deadline_after(&deadline, refresh_delay(c->keys.expiration, time(NULL)));
    while (!c->stop) {
        int rc = pthread_cond_timedwait(&c->cv, &c->mu, &deadline);
        if (c->stop) break;
        if (rc != ETIMEDOUT) continue; /* spurious wake-up: same deadline */
        pthread_mutex_unlock(&c->mu);
        sh_aws_keys k;
        char err[512] = "";
        int ok = load_imds(c->imds_endpoint, &k, err, sizeof(err)) == 0;
        if (!ok)
            sh_log(SH_LOG_WARN, "credentials refresh failed, keeping the current keys: %s", err);
        pthread_mutex_lock(&c->mu);
        if (ok) {
            c->keys = k;
            c->have = 1;
            deadline_after(&deadline, refresh_delay(k.expiration, time(NULL)));
        } else {
            deadline_after(&deadline, REFRESH_RETRY_S);
        }
        explicit_bzero(&k, sizeof(k));
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- public API ------------------------------------------------------------ */

sh_creds *sh_creds_new(const sh_origin_conf *o, char *err, size_t errlen)
{
    sh_creds *c = sh_calloc(1, sizeof(*c));
    c->source = o->credentials;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);

    int rc = 0;
    switch (o->credentials) {
    case SH_CRED_NONE:
        break;
    case SH_CRED_ENV:
        rc = load_env(&c->keys, err, errlen);
        c->have = rc == 0;
        break;
    case SH_CRED_FILE:
        rc = load_file(o, &c->keys, err, errlen);
        c->have = rc == 0;
        break;
    case SH_CRED_IMDS:
        origin_global_init(); /* curl_global_init before the first curl_easy_init */
        c->imds_endpoint = sh_strdup(
            o->imds_endpoint && *o->imds_endpoint ? o->imds_endpoint : "http://169.254.169.254");
        size_t n = strlen(c->imds_endpoint);
        while (n && c->imds_endpoint[n - 1] == '/')
            c->imds_endpoint[--n] = '\0';
        rc = load_imds(c->imds_endpoint, &c->keys, err, errlen);
        c->have = rc == 0;
        if (rc == 0) {
            if (pthread_create(&c->thread, NULL, refresh_main, c) != 0) {
                set_err(err, errlen, "credentials: ", "cannot start the refresh thread");
                rc = -1;
            } else {
                c->thread_started = 1;
            }
        }
        break;
    }
    if (rc != 0) {
        sh_creds_free(c);
        return NULL;
    }
    return c;
}

int sh_creds_get(sh_creds *c, sh_aws_keys *out)
{
    if (!c) return -1;
    pthread_mutex_lock(&c->mu);
    int have = c->have;
    if (have) *out = c->keys;
    pthread_mutex_unlock(&c->mu);
    return have ? 0 : -1;
}

void sh_creds_free(sh_creds *c)
{
    if (!c) return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    explicit_bzero(&c->keys, sizeof(c->keys));
    sh_free(c->imds_endpoint);
    sh_free(c);
}
