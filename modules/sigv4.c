/*
 * SigV4: private-mirror clients authenticate to Shield the way they would to
 * S3 (header auth from SDKs and curl --aws-sigv4, presigned URLs from
 * `aws s3 presign`), on behaviors with signed = "sigv4". Shield then fetches
 * from the origin with its own credentials; the viewer's Authorization header
 * and X-Amz-* query parameters never reach it (proxy/forward.c).
 *
 * Refusals look like S3's: 403 (400 for a path or query that is not in
 * canonical form, see shield/sigv4_verify.h) with an XML <Error> body whose
 * Code is also the access log's x-edge-detailed-result-type, and count as
 * auth_failed in /stats.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "shield/module.h"
#include "shield/sigv4_verify.h"

/* S3 answers a CORS preflight without authentication (browsers never sign
 * one), and so does Shield when the behavior has CORS: the preflight carries
 * no object bytes. */
static int cors_preflight(const sh_req *req)
{
    return req->behavior->cors.enabled && req->method_bit == SH_M_OPTIONS &&
           sh_req_header(req, "Origin") && sh_req_header(req, "Access-Control-Request-Method");
}

static sigv4_body body_state(const sh_req *req)
{
    if (req->body) return SIGV4_BODY_KNOWN;
    /* AUTH runs before the core reads a body: it is still on the wire. */
    const sh_header *cl = sh_req_header(req, "Content-Length");
    if (sh_req_header(req, "Transfer-Encoding")) return SIGV4_BODY_PENDING;
    if (cl && !(cl->value_len == 1 && cl->value[0] == '0')) return SIGV4_BODY_PENDING;
    return SIGV4_BODY_NONE;
}

/* Text content of an XML element: the messages quote formats like "<AKID>/...". */
static void xml_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        const char *e = *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;" : NULL;
        if (e) {
            memcpy(out + o, e, strlen(e));
            o += strlen(e);
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

static sh_rc sigv4_auth_phase(sh_req *req, void *state)
{
    if (!req->behavior || req->behavior->signed_mode != SH_SIGNED_SIGV4) return SH_CONTINUE;
    if (cors_preflight(req)) return SH_CONTINUE;

    sigv4_request rq = {
        .method = req->method,
        .method_len = req->method_len,
        .path = req->path,
        .path_len = req->path_len,
        .query = req->query,
        .query_len = req->query_len,
        .host = req->host,
        .host_len = req->host_len,
        .headers = req->headers,
        .nheaders = req->nheaders,
        .body_state = body_state(req),
        .body = req->body,
        .body_len = req->body_len,
    };
    const char *msg = "Access Denied";
    sigv4_err e = sigv4_verify(&rq, &req->cfg->sigv4, (int64_t)time(NULL), &msg);
    if (e == SIGV4_OK) {
        /* The mirror's keys are Shield's own: the answer is the bucket's, the
         * same for every key holder, so it may be shared through the cache. */
        req->auth_verified = 1;
        return SH_CONTINUE;
    }

    /* msg is a fixed string from the verifier (never request bytes) and the
     * request id is Shield's own: only the message's own '<' need escaping. */
    char emsg[512], body[1024];
    xml_escape(emsg, sizeof(emsg), msg);
    snprintf(body, sizeof(body),
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId></Error>",
             sigv4_err_code(e), emsg, req->request_id);
    req->detailed_result = sigv4_err_code(e);
    sh_req_count(req, SH_CNT_AUTH_FAILED);
    return sh_req_respond(req, sigv4_err_status(e), NULL, NULL, "application/xml", body);
}

const sh_module sh_module_sigv4 = {
    .name = "sigv4",
    .phase = {[SH_PHASE_AUTH] = sigv4_auth_phase},
};
