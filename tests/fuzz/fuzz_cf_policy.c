/*
 * CloudFront signed URLs on hostile bytes: the base64 variant, the policy
 * reader, resource matching, query and cookie parameter extraction and the
 * whole verdict. The input is also signed with a key made here, so the paths
 * after a valid signature (conditions, resource match) are reached too.
 */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shield/alloc.h"
#include "shield/cf_policy.h"

static EVP_PKEY *ec_key, *rsa_key;
static sh_cf_key_conf keys[2];

/* Keys live for the whole process (reachable, so not leaks): key generation
 * per input would drown the fuzzer. */
static void init(void)
{
    if (ec_key) return;
    ec_key = EVP_EC_gen("P-256");
    rsa_key = EVP_RSA_gen(1024);
    keys[0] = (sh_cf_key_conf){.id = "KEC", .pkey = ec_key};
    keys[1] = (sh_cf_key_conf){.id = "KRSA", .pkey = rsa_key};
}

static char *cf_b64(const uint8_t *b, size_t n)
{
    char *out = sh_malloc(4 * ((n + 2) / 3) + 1);
    int l = EVP_EncodeBlock((unsigned char *)out, b, (int)n);
    for (int i = 0; i < l; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '=' ? '_' : out[i] == '/' ? '~' : out[i];
    out[l] = '\0';
    return out;
}

static char *sign(const char *msg, size_t mlen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t sig[256];
    size_t sl = sizeof sig;
    char *r = NULL;
    if (ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, ec_key) == 1 &&
        EVP_DigestSign(ctx, sig, &sl, (const uint8_t *)msg, mlen) == 1)
        r = cf_b64(sig, sl);
    EVP_MD_CTX_free(ctx);
    return r;
}

static const uint8_t ip[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
static const char url[] = "http://127.0.0.1:8080/books/a.epub?x=1";

/* The input as a policy, signed for real: exercises what follows the signature. */
static void signed_policy(const char *s, size_t n)
{
    char *sig = sign(s, n);
    if (!sig) return;
    char *pol = cf_b64((const uint8_t *)s, n);
    sh_cf_params p = {.any = 1};
    p.v[SH_CF_P_POLICY] = pol;
    p.len[SH_CF_P_POLICY] = strlen(pol);
    p.v[SH_CF_P_SIGNATURE] = sig;
    p.len[SH_CF_P_SIGNATURE] = strlen(sig);
    p.v[SH_CF_P_KEY_PAIR_ID] = "KEC";
    p.len[SH_CF_P_KEY_PAIR_ID] = 3;
    p.v[SH_CF_P_HASH_ALGORITHM] = "SHA256";
    p.len[SH_CF_P_HASH_ALGORITHM] = 6;
    sh_cf_check(&p, url, sizeof url - 1, ip, 1700000000, keys, 2, NULL);
    sh_free(pol);
    sh_free(sig);
}

/* The input as the URL of a canned policy, signed for real. */
static void signed_canned(const char *s, size_t n)
{
    size_t ml;
    char *msg = sh_cf_canned_policy(s, n, "1800000000", 10, &ml);
    char *sig = sign(msg, ml);
    if (sig) {
        sh_cf_params p = {.any = 1};
        p.v[SH_CF_P_EXPIRES] = "1800000000";
        p.len[SH_CF_P_EXPIRES] = 10;
        p.v[SH_CF_P_SIGNATURE] = sig;
        p.len[SH_CF_P_SIGNATURE] = strlen(sig);
        p.v[SH_CF_P_KEY_PAIR_ID] = "KEC";
        p.len[SH_CF_P_KEY_PAIR_ID] = 3;
        p.v[SH_CF_P_HASH_ALGORITHM] = "SHA256";
        p.len[SH_CF_P_HASH_ALGORITHM] = 6;
        sh_cf_check(&p, s, n, ip, 1700000000, keys, 2, NULL);
    }
    sh_free(sig);
    sh_free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    sh_cf_params p;
    sh_cf_policy pol;
    size_t n;

    if (size > 32768) return 0;
    init();

    /* base64, and the policy reader on both the raw and the decoded bytes */
    uint8_t *dec = sh_malloc(size / 4 * 3 + 1);
    if (sh_cf_b64_decode(s, size, dec, &n) == 0 &&
        sh_cf_policy_parse((const char *)dec, n, &pol) == 0)
        sh_cf_policy_free(&pol);
    sh_free(dec);
    /* Signing is the slow part: only for inputs that can get past the signature. */
    if (sh_cf_policy_parse(s, size, &pol) == 0) {
        if (pol.resource) sh_cf_resource_match(pol.resource, pol.resource_len, url, sizeof url - 1);
        sh_cf_policy_free(&pol);
        signed_policy(s, size);
    }
    if (size >= 4 && size <= 4096 && memcmp(s, "http", 4) == 0) signed_canned(s, size);

    /* pattern '\n' url */
    const char *nl = memchr(s, '\n', size);
    if (nl) sh_cf_resource_match(s, (size_t)(nl - s), nl + 1, size - (size_t)(nl - s) - 1);

    /* as a query, and as a Cookie header */
    if (sh_cf_params_from_query(s, size, &p))
        sh_cf_check(&p, url, sizeof url - 1, ip, 1700000000, keys, 2, NULL);
    sh_header h = {"Cookie", 6, s, size};
    sh_cf_params_from_cookies(&h, 1, &p);
    sh_cf_check(&p, url, sizeof url - 1, ip, 1700000000, keys, 2, NULL);

    return 0;
}
