/*
 * TLS contexts: policy, SNI selection, session resumption (shield/tls.h).
 */
#include "shield/tls.h"

#include <ctype.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "shield/alloc.h"
#include "shield/log.h"

/* CloudFront's TLSv1.2_2021: ECDHE key exchange with AEAD ciphers only. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"   \
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS   "X25519:P-256:P-384"
/* Server-side session IDs kept per process: bounded, oldest dropped first. */
#define SESSION_CACHE_SIZE 20480
#define MAX_NAMES          64
#define NTICKET_KEYS       3 /* current + two previous, still accepted (and renewed) */

typedef struct tls_entry {
    SSL_CTX *ctx;
    char *names[MAX_NAMES];
    size_t nnames;
} tls_entry;

/* One generation of contexts; entries[0] is the default. */
typedef struct tls_set {
    tls_entry *entries;
    size_t n;
    struct tls_set *retired_next;
} tls_set;

typedef struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    time_t created;
} ticket_key;

static pthread_mutex_t tls_lock = PTHREAD_MUTEX_INITIALIZER;
static tls_set *current;
/* Sets replaced by a reload. A handshake that began on one still reaches it
 * through the SNI callback argument, and nothing counts those handshakes, so
 * retired sets live until shutdown: a few KiB per SIGHUP. */
static tls_set *retired;

static pthread_mutex_t ticket_lock = PTHREAD_MUTEX_INITIALIZER;
static ticket_key tickets[NTICKET_KEYS];
static size_t nticket_keys;
static time_t ticket_rotate_s = 3600;

const char *sh_ssl_error(void)
{
    static __thread char buf[256];
    unsigned long e = ERR_get_error();
    if (!e) return "unknown OpenSSL error";
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return buf;
}

/* ---- names ------------------------------------------------------------------------------- */

static void add_name(char *buf, size_t buflen, size_t *used, const char *name, size_t len)
{
    if (*used + len + 2 > buflen) return;
    if (*used) buf[(*used)++] = ' ';
    for (size_t i = 0; i < len; i++)
        buf[(*used)++] = (char)tolower((unsigned char)name[i]);
    buf[*used] = '\0';
}

size_t sh_tls_cert_names(X509 *cert, char *buf, size_t buflen)
{
    size_t used = 0, n = 0;
    if (buflen) buf[0] = '\0';
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS) continue;
        const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
        int len = ASN1_STRING_length(g->d.dNSName);
        if (len <= 0 || memchr(d, '\0', (size_t)len)) continue;
        add_name(buf, buflen, &used, (const char *)d, (size_t)len);
        n++;
    }
    GENERAL_NAMES_free(sans);
    if (n) return n;
    /* No DNS SANs: browsers no longer look at the CN, but operators' test
     * certificates often only have one. */
    char cn[256];
    int len = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    if (len > 0) {
        add_name(buf, buflen, &used, cn, (size_t)len);
        n++;
    }
    return n;
}

int sh_tls_name_match(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        /* One label only, and never the bare parent domain. */
        return dot && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
    }
    return strcasecmp(pattern, name) == 0;
}

/* ---- callbacks --------------------------------------------------------------------------- */

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    const tls_set *set = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !*name) return SSL_TLSEXT_ERR_OK; /* default certificate */
    /* Exact names win over wildcards, in configuration order. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < set->n; i++) {
            const tls_entry *e = &set->entries[i];
            for (size_t j = 0; j < e->nnames; j++) {
                int wild = e->names[j][0] == '*';
                if (wild != pass || !sh_tls_name_match(e->names[j], name)) continue;
                if (i != 0) SSL_set_SSL_CTX(ssl, e->ctx);
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_OK; /* unknown name: the default, as CloudFront does */
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, h11, sizeof h11 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* e.g. h2 only: carry on without ALPN */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static void new_ticket_key(ticket_key *k)
{
    RAND_bytes(k->name, sizeof k->name);
    RAND_bytes(k->aes, sizeof k->aes);
    RAND_bytes(k->hmac, sizeof k->hmac);
    k->created = time(NULL);
}

/* Called with ticket_lock held. */
static void rotate_if_due(void)
{
    time_t now = time(NULL);
    if (nticket_keys && now - tickets[0].created < ticket_rotate_s) return;
    memmove(&tickets[1], &tickets[0], (NTICKET_KEYS - 1) * sizeof tickets[0]);
    new_ticket_key(&tickets[0]);
    if (nticket_keys < NTICKET_KEYS) nticket_keys++;
}

static int set_ticket_ctx(const ticket_key *k, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                          EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end()};
    if (!EVP_MAC_CTX_set_params(hctx, params)) return -1;
    int ok = enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv)
                 : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv);
    return ok ? 0 : -1;
}

/*
 * Ticket keys live here rather than in each SSL_CTX so that every worker and
 * every SNI context encrypts with the same key: a ticket from one connection
 * resumes on any other. Rotation is lazy, on the first ticket after the period.
 */
static int ticket_cb(SSL *ssl, unsigned char *key_name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    ticket_key k;
    int rc = 0;

    pthread_mutex_lock(&ticket_lock);
    if (enc) {
        rotate_if_due();
        k = tickets[0];
        pthread_mutex_unlock(&ticket_lock);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) <= 0) return -1;
        memcpy(key_name, k.name, sizeof k.name);
        rc = set_ticket_ctx(&k, iv, cctx, hctx, 1) == 0 ? 1 : -1;
    } else {
        size_t i;
        for (i = 0; i < nticket_keys; i++)
            if (CRYPTO_memcmp(key_name, tickets[i].name, sizeof tickets[i].name) == 0) break;
        int expired = i < nticket_keys &&
                      time(NULL) - tickets[i].created >= (time_t)NTICKET_KEYS * ticket_rotate_s;
        if (i < nticket_keys && !expired) k = tickets[i];
        pthread_mutex_unlock(&ticket_lock);
        if (i >= nticket_keys || expired) return 0; /* unknown key: full handshake */
        if (set_ticket_ctx(&k, iv, cctx, hctx, 0) != 0) return -1;
        rc = i == 0 ? 1 : 2; /* 2: valid but old, issue a fresh ticket */
    }
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}

/* ---- building a set ---------------------------------------------------------------------- */

static SSL_CTX *new_ctx(const sh_config *cfg, const sh_tls_cert_conf *cc, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "SSL_CTX_new: %s", sh_ssl_error());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No renegotiation at all (client-initiated renegotiation is a DoS lever),
     * server cipher order, no TLS compression (CRIME). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_SINGLE_ECDH_USE);
    SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
    if (!cfg->tls.session_tickets) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    /* Replayable 0-RTT data must never reach an origin. */
    SSL_CTX_set_max_early_data(ctx, 0);
    SSL_CTX_set_recv_max_early_data(ctx, 0);
    /* Idle keep-alive connections should not pin 2 x 16 KiB of TLS buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1 ||
        SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1) {
        snprintf(err, errlen, "TLS policy: %s", sh_ssl_error());
        goto fail;
    }
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"shield", 6);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE_SIZE);
    SSL_CTX_set_timeout(ctx, (long)(cfg->tls.session_timeout_ms / 1000));
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cc->cert) != 1) {
        snprintf(err, errlen, "certificate %s: %s", cc->cert, sh_ssl_error());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cc->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "key %s: %s", cc->key, sh_ssl_error());
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static void free_set(tls_set *set)
{
    if (!set) return;
    for (size_t i = 0; i < set->n; i++) {
        SSL_CTX_free(set->entries[i].ctx);
        for (size_t j = 0; j < set->entries[i].nnames; j++)
            sh_free(set->entries[i].names[j]);
    }
    sh_free(set->entries);
    sh_free(set);
}

static tls_set *build_set(const sh_config *cfg, char *err, size_t errlen)
{
    tls_set *set = sh_calloc(1, sizeof *set);
    set->entries = sh_calloc(cfg->tls.ncerts, sizeof *set->entries);
    for (size_t i = 0; i < cfg->tls.ncerts; i++) {
        tls_entry *e = &set->entries[i];
        if (!(e->ctx = new_ctx(cfg, &cfg->tls.certs[i], err, errlen))) goto fail;
        set->n = i + 1;
        char names[4096];
        sh_tls_cert_names(SSL_CTX_get0_certificate(e->ctx), names, sizeof names);
        for (char *save = NULL, *t = strtok_r(names, " ", &save); t && e->nnames < MAX_NAMES;
             t = strtok_r(NULL, " ", &save))
            e->names[e->nnames++] = sh_strdup(t);
    }
    /* The SNI callback lives on the default context: the handshake always
     * starts there and moves to the chosen one. */
    SSL_CTX_set_tlsext_servername_callback(set->entries[0].ctx, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(set->entries[0].ctx, set);
    return set;
fail:
    free_set(set);
    return NULL;
}

static int any_tls(const sh_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].tls) return 1;
    return 0;
}

int sh_tls_init(const sh_config *cfg, char *err, size_t errlen)
{
    if (!any_tls(cfg) || !cfg->tls.ncerts) return 0;
    tls_set *set = build_set(cfg, err, errlen);
    if (!set) return -1;
    pthread_mutex_lock(&ticket_lock);
    ticket_rotate_s = (time_t)(cfg->tls.ticket_rotate_ms / 1000);
    if (ticket_rotate_s < 1) ticket_rotate_s = 1;
    nticket_keys = 0;
    rotate_if_due();
    pthread_mutex_unlock(&ticket_lock);
    pthread_mutex_lock(&tls_lock);
    current = set;
    pthread_mutex_unlock(&tls_lock);
    return 0;
}

int sh_tls_reload(const sh_config *cfg, char *err, size_t errlen)
{
    if (!any_tls(cfg) || !cfg->tls.ncerts) return 0;
    tls_set *set = build_set(cfg, err, errlen);
    if (!set) return -1;
    pthread_mutex_lock(&tls_lock);
    tls_set *old = current;
    current = set;
    if (old) {
        old->retired_next = retired;
        retired = old;
    }
    pthread_mutex_unlock(&tls_lock);
    return 0;
}

SSL *sh_tls_new(void)
{
    pthread_mutex_lock(&tls_lock);
    /* SSL_new takes its own reference on the context, so a later reload can
     * retire this set without pulling it from under the connection. */
    SSL *ssl = current ? SSL_new(current->entries[0].ctx) : NULL;
    pthread_mutex_unlock(&tls_lock);
    return ssl;
}

void sh_tls_fini(void)
{
    pthread_mutex_lock(&tls_lock);
    free_set(current);
    current = NULL;
    while (retired) {
        tls_set *next = retired->retired_next;
        free_set(retired);
        retired = next;
    }
    pthread_mutex_unlock(&tls_lock);
    pthread_mutex_lock(&ticket_lock);
    OPENSSL_cleanse(tickets, sizeof tickets);
    nticket_keys = 0;
    pthread_mutex_unlock(&ticket_lock);
}
