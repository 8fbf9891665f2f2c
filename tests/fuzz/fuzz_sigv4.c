/*
 * SigV4 verifier on hostile bytes: the Authorization parser, the X-Amz-*
 * query scanner and presigned parser, the canonical path/query rules and the
 * whole verdict. Input: lines separated by '\n':
 *   1: Authorization value   2: path   3: query ("-" = none)   4..: "name: value" headers
 * Invariants checked (abort = a finding): a path accepted as canonical is
 * exactly what the shared canonicaliser produces from it; a verdict always has
 * a message; a parsed signature is 64 hex digits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shield/alloc.h"
#include "shield/sigv4_sign.h"
#include "shield/sigv4_verify.h"

#define MAX_LINES 40

static sh_sigv4_key_conf keys[] = {
    {.access_key = "AKIAIOSFODNN7EXAMPLE", .secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
};
static const sh_sigv4_conf conf = {
    .region = "us-east-1", .service = "s3", .keys = keys, .nkeys = 1, .max_skew_ms = 900000};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so a read past any line is a read past the input. */
    char *buf = sh_malloc(size ? size : 1);
    memcpy(buf, data, size);
    const char *line[MAX_LINES];
    size_t len[MAX_LINES], n = 0;
    const char *p = buf, *end = buf + size;
    while (n < MAX_LINES) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        line[n] = p;
        len[n++] = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (!nl) break;
        p = nl + 1;
    }

    sigv4_auth a;
    const char *msg = NULL;
    if (sigv4_parse_authorization(line[0], len[0], &a, &msg) == SIGV4_OK) {
        if (strlen(a.signature) != 64 || strspn(a.signature, "0123456789abcdef") != 64) abort();
    } else if (!msg) {
        abort();
    }
    int64_t t;
    (void)sigv4_parse_amz_date(line[0], len[0], &t);

    const char *path = n > 1 ? line[1] : "/";
    size_t plen = n > 1 ? len[1] : 1;
    if (sigv4_path_is_canonical(path, plen)) {
        char *c = sigv4_canonical_uri(path, plen);
        if (strlen(c) != (plen ? plen : 1) || (plen && memcmp(c, path, plen) != 0)) abort();
        sh_free(c);
    }

    const char *query = NULL;
    size_t qlen = 0;
    if (n > 2 && !(len[2] == 1 && line[2][0] == '-')) {
        query = line[2];
        qlen = len[2];
    }
    sigv4_qparams qp;
    msg = NULL;
    if (sigv4_scan_query(query, qlen, &qp, &msg) == SIGV4_OK) {
        if (qp.found & SIGV4_Q_AUTH) {
            msg = NULL;
            if (sigv4_parse_presigned(&qp, &a, &msg) != SIGV4_OK && !msg) abort();
        }
    } else if (!msg) {
        abort();
    }
    char *cq = sigv4_canonical_query(query, qlen, "X-Amz-Signature");
    sh_free(cq);

    sh_header h[MAX_LINES + 1];
    size_t nh = 0;
    for (size_t i = 3; i < n; i++) {
        const char *colon = memchr(line[i], ':', len[i]);
        if (!colon) continue;
        const char *v = colon + 1;
        while (v < line[i] + len[i] && *v == ' ')
            v++;
        h[nh++] =
            (sh_header){line[i], (size_t)(colon - line[i]), v, (size_t)(line[i] + len[i] - v)};
    }
    h[nh++] = (sh_header){"Authorization", 13, line[0], len[0]};
    sigv4_request rq = {.method = "GET",
                        .method_len = 3,
                        .path = path,
                        .path_len = plen,
                        .query = query,
                        .query_len = qlen,
                        .host = "examplebucket.s3.amazonaws.com",
                        .host_len = 30,
                        .headers = h,
                        .nheaders = nh,
                        .body_state = size & 1 ? SIGV4_BODY_KNOWN : SIGV4_BODY_NONE,
                        .body = buf,
                        .body_len = size & 1 ? size : 0};
    /* with and without the Authorization header: both verdict paths */
    for (int with_auth = 0; with_auth < 2; with_auth++) {
        rq.nheaders = with_auth ? nh : nh - 1;
        msg = NULL;
        sigv4_err e = sigv4_verify(&rq, &conf, 1369353600, &msg);
        if (e != SIGV4_OK && !msg) abort();
        if (e >= SIGV4_ERR_COUNT || !*sigv4_err_code(e) != (e == SIGV4_OK)) abort();
    }
    sh_free(buf);
    return 0;
}
