/*
 * CloudFront signed URLs and cookies (modules/cf_policy.c): the base64
 * variant, the policy reader (accept/reject tables), resource wildcards, the
 * canned policy bytes, signature verification with keys generated here, the
 * signing-parameter extraction from queries and cookies, and the verdicts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shield/alloc.h"
#include "shield/cf_policy.h"

#define NOW 1700000000LL

/* ---- helpers ------------------------------------------------------------------------------ */

static EVP_PKEY *rsa_key, *ec_key, *rsa_other;

/* CloudFront base64 of bytes (tests only: the product never encodes). */
static char *cf_b64(const uint8_t *b, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    int l = EVP_EncodeBlock((unsigned char *)out, b, (int)n);
    for (int i = 0; i < l; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '=' ? '_' : out[i] == '/' ? '~' : out[i];
    out[l] = '\0';
    return out;
}

/* Replace every occurrence of from in s by to; returns a malloc'd string. */
static char *replace_all(const char *s, const char *from, const char *to)
{
    size_t flen = strlen(from), tlen = strlen(to), n = 0;
    const char *p;
    char *out, *o;

    for (p = s; (p = strstr(p, from)); p += flen)
        n++;
    out = o = malloc(strlen(s) + n * tlen + 1);
    for (p = s; *p;) {
        if (strncmp(p, from, flen) == 0) {
            memcpy(o, to, tlen);
            o += tlen;
            p += flen;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/* Sign msg the way a CloudFront signer does; returns the CloudFront base64 text. */
static char *sign(EVP_PKEY *k, int sha256, const char *msg, size_t mlen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t sig[1024];
    size_t sl = sizeof sig;
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, sha256 ? EVP_sha256() : EVP_sha1(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &sl, (const uint8_t *)msg, mlen), 1);
    EVP_MD_CTX_free(ctx);
    return cf_b64(sig, sl);
}

static int setup_keys(void **state)
{
    (void)state;
    rsa_key = EVP_RSA_gen(2048);
    rsa_other = EVP_RSA_gen(2048);
    ec_key = EVP_EC_gen("P-256");
    return rsa_key && rsa_other && ec_key ? 0 : -1;
}

static int teardown_keys(void **state)
{
    (void)state;
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(ec_key);
    return 0;
}

/* ---- base64 ------------------------------------------------------------------------------- */

static void test_b64_valid(void **state)
{
    static const struct {
        const char *in;
        const char *out;
        size_t n;
    } ok[] = {
        {"", "", 0},
        {"QQ__", "A", 1},
        {"QUI_", "AB", 2},
        {"QUJD", "ABC", 3},
        {"-~8_", "\xfb\xff", 2},
        {"-~-~", "\xfb\xff\xbf", 3},
        {"aGVsbG8gd29ybGQ_", "hello world", 11},
    };
    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint8_t out[64];
        size_t n = 99;
        assert_int_equal(sh_cf_b64_decode(ok[i].in, strlen(ok[i].in), out, &n), 0);
        assert_int_equal(n, ok[i].n);
        assert_memory_equal(out, ok[i].out, n);
    }
}

static void test_b64_invalid(void **state)
{
    static const char *const bad[] = {
        "QQ==",     /* standard padding */
        "+/8_",     /* standard alphabet */
        "-/8_",     /* '/' */
        "QQ",       /* unpadded */
        "QUJ",      /* length not a multiple of 4 */
        "Q___",     /* three pad characters */
        "QQ_A",     /* data after padding */
        "QQ__QUJD", /* padding in the middle */
        "QR__",     /* non-zero unused bits: a second spelling of "A" */
        "QUJ_",     /* same, one pad */
        "QU D",     /* space */
        "QUJD\n",   /* newline */
        "QUJ%",     /* percent */
        "QU.D",     /* dot */
        "QUJ\x80",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t out[64];
        size_t n;
        if (sh_cf_b64_decode(bad[i], strlen(bad[i]), out, &n) != -1)
            fail_msg("accepted base64 \"%s\"", bad[i]);
    }
    uint8_t out[8];
    size_t n;
    /* an embedded NUL is not part of the alphabet */
    assert_int_equal(sh_cf_b64_decode("QU\0D", 4, out, &n), -1);
}

/* ---- policy reader ------------------------------------------------------------------------ */

static void test_policy_accept(void **state)
{
    static const struct {
        const char *json;
        const char *resource; /* NULL = absent */
        int64_t dlt, dgt;
        const char *ip; /* a v4 address inside the range, NULL = no IpAddress */
    } ok[] = {
        /* what aws cloudfront sign writes */
        {"{\"Statement\":[{\"Resource\":\"http://h/a\",\"Condition\":{\"DateLessThan\":{\"AWS:"
         "EpochTime\":1893456000},\"IpAddress\":{\"AWS:SourceIp\":\"127.0.0.1/32\"},"
         "\"DateGreaterThan\":{\"AWS:EpochTime\":1600000000}}}]}",
         "http://h/a", 1893456000, 1600000000, "127.0.0.1"},
        /* pretty-printed as in AWS's documentation, bare statement object */
        {"{\n  \"Statement\": {\r\n\t\"Resource\" : \"https://h/*\",\n \"Condition\": {\n"
         "   \"DateLessThan\": { \"AWS:EpochTime\": 0 } } }\n}\n  ",
         "https://h/*", 0, -1, NULL},
        /* no Resource: every URL */
        {"{\"Statement\":[{\"Condition\":{\"DateLessThan\":{\"AWS:EpochTime\":253402300799}}}]}",
         NULL, 253402300799LL, -1, NULL},
        /* Condition before Resource, *:// prefix, escapes decoded */
        {"{\"Statement\":[{\"Condition\":{\"IpAddress\":{\"AWS:SourceIp\":\"10.0.0.0/8\"},"
         "\"DateLessThan\":{\"AWS:EpochTime\":5}},\"Resource\":\"*://h\\/a\\\\?b\\u00e9\"}]}",
         "*://h/a\\?b\xc3\xa9", 5, -1, "10.1.2.3"},
        /* surrogate pair and raw UTF-8 */
        {"{\"Statement\":{\"Resource\":\"http://h/\\ud83d\\ude00\xe2\x82\xac\",\"Condition\":{"
         "\"DateLessThan\":{\"AWS:EpochTime\":7}}}}",
         "http://h/\xf0\x9f\x98\x80\xe2\x82\xac", 7, -1, NULL},
        /* a bare address is a /32 */
        {"{\"Statement\":[{\"Condition\":{\"DateLessThan\":{\"AWS:EpochTime\":9},\"IpAddress\":{"
         "\"AWS:SourceIp\":\"192.0.2.7\"}}}]}",
         NULL, 9, -1, "192.0.2.7"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        sh_cf_policy p;
        if (sh_cf_policy_parse(ok[i].json, strlen(ok[i].json), &p) != 0)
            fail_msg("rejected policy %zu: %s", i, ok[i].json);
        if (ok[i].resource) {
            assert_non_null(p.resource);
            assert_int_equal(p.resource_len, strlen(ok[i].resource));
            assert_memory_equal(p.resource, ok[i].resource, p.resource_len);
        } else {
            assert_null(p.resource);
        }
        assert_int_equal(p.date_less_than, ok[i].dlt);
        assert_int_equal(p.date_greater_than, ok[i].dgt);
        assert_int_equal(p.has_ip, ok[i].ip != NULL);
        if (ok[i].ip) {
            uint8_t a[16], other[16];
            assert_int_equal(sh_ip_parse(ok[i].ip, strlen(ok[i].ip), a), 0);
            assert_true(sh_cidr_match(&p.ip, a));
            assert_int_equal(sh_ip_parse("203.0.113.9", 11, other), 0);
            assert_false(sh_cidr_match(&p.ip, other));
        }
        sh_cf_policy_free(&p);
    }
}

#define DLT(n)  "\"DateLessThan\":{\"AWS:EpochTime\":" n "}"
#define POL(s)  "{\"Statement\":[" s "]}"
#define STMT(c) "{\"Resource\":\"http://h/a\",\"Condition\":{" c "}}"
#define GOOD    POL(STMT(DLT("100")))

static void test_policy_reject(void **state)
{
    static const char *const bad[] = {
        "", " ", "{}", "[]", "null", GOOD "x",  /* trailing garbage */
        GOOD "}",                               /* extra brace */
        GOOD GOOD,                              /* two documents */
        "{\"Statement\":[]}",                   /* no statement */
        POL(STMT(DLT("1")) "," STMT(DLT("2"))), /* two statements */
        "{\"Statement\":[" STMT(DLT("1")) "}",  /* unclosed array */
        "{\"Statement\":" STMT(DLT("1")) ",}",  /* trailing comma */
        POL("{\"Resource\":\"http://h/a\",\"Condition\":{" DLT("1") ",}}"),
        "{\"Statement\":" STMT(DLT("1")) ",\"Statement\":" STMT(DLT("1")) "}", /* dup key */
        "{\"Statement\":" STMT(DLT("1")) ",\"Version\":\"2012-10-17\"}",       /* unknown key */
        "{\"statement\":" STMT(DLT("1")) "}", /* keys are case-sensitive */
        POL("{\"Resource\":\"http://h/a\"}"), /* no Condition */
        POL("{\"Resource\":\"http://h/a\",\"Resource\":\"http://h/b\",\"Condition\":{" DLT(
            "1") "}}"),
        POL("{\"Resource\":\"http://h/a\",\"Effect\":\"Allow\",\"Condition\":{" DLT("1") "}}"),
        POL("{\"Resource\":[\"http://h/a\"],\"Condition\":{" DLT("1") "}}"),
        POL("{\"Resource\":\"ftp://h/a\",\"Condition\":{" DLT("1") "}}"),
        POL("{\"Resource\":\"/a\",\"Condition\":{" DLT("1") "}}"),
        POL("{\"Resource\":\"*\",\"Condition\":{" DLT("1") "}}"),
        POL("{\"Resource\":\"HTTP://h/a\",\"Condition\":{" DLT("1") "}}"),
        POL("{\"Resource\":\"\",\"Condition\":{" DLT("1") "}}"),
        POL("{\"Resource\":null,\"Condition\":{" DLT("1") "}}"),
        POL(STMT("")), /* no DateLessThan */
        POL(STMT("\"DateGreaterThan\":{\"AWS:EpochTime\":1}")),
        POL(STMT(DLT("1") "," DLT("2"))), /* duplicate condition */
        POL(STMT(DLT("1") ",\"DateLessThanEquals\":{\"AWS:EpochTime\":1}")), /* unknown */
        POL(STMT(DLT("1") ",\"StringEquals\":{\"aws:Referer\":\"x\"}")),
        POL(STMT("\"DateLessThan\":{\"AWS:EpochTime\":1,\"AWS:EpochTime\":2}")),
        POL(STMT("\"DateLessThan\":{\"aws:EpochTime\":1}")), POL(STMT("\"DateLessThan\":{}")),
        POL(STMT("\"DateLessThan\":1")), POL(STMT(DLT("-1"))), POL(STMT(DLT("1.5"))),
        POL(STMT(DLT("1e9"))), POL(STMT(DLT("1E9"))), POL(STMT(DLT("01"))), POL(STMT(DLT("+1"))),
        POL(STMT(DLT("\"1\""))), POL(STMT(DLT("253402300800"))), /* after year 9999 */
        POL(STMT(DLT("99999999999999999999999999"))),            /* would overflow */
        POL(STMT(DLT("true"))),
        POL(STMT(DLT("1") ",\"IpAddress\":{\"AWS:SourceIp\":\"::1/128\"}")), /* IPv6 */
        POL(STMT(DLT("1") ",\"IpAddress\":{\"AWS:SourceIp\":\"10.0.0.0/33\"}")),
        POL(STMT(DLT("1") ",\"IpAddress\":{\"AWS:SourceIp\":\"10.0.0/8\"}")),
        POL(STMT(DLT("1") ",\"IpAddress\":{\"AWS:SourceIp\":\"10.0.0.0/8 \"}")),
        POL(STMT(DLT("1") ",\"IpAddress\":{\"AWS:SourceIp\":[\"10.0.0.0/8\"]}")),
        POL(STMT(DLT("1") ",\"IpAddress\":{\"AWS:SourceIp\":\"10.0.0.0/8\","
                          "\"AWS:SourceIp\":\"11.0.0.0/8\"}")),
        POL(STMT(DLT("1") ",\"IpAddress\":{}")),
        /* strings */
        POL("{\"Resource\":\"http://h/\\x\",\"Condition\":{" DLT("1") "}}"), /* bad escape */
        POL("{\"Resource\":\"http://h/\\u00\",\"Condition\":{" DLT("1") "}}"),
        POL("{\"Resource\":\"http://h/\\u0000\",\"Condition\":{" DLT("1") "}}"),  /* NUL */
        POL("{\"Resource\":\"http://h/\\udc00\",\"Condition\":{" DLT("1") "}}"),  /* lone low */
        POL("{\"Resource\":\"http://h/\\ud800x\",\"Condition\":{" DLT("1") "}}"), /* lone high */
        POL("{\"Resource\":\"http://h/\ta\",\"Condition\":{" DLT("1") "}}"),      /* raw control */
        POL("{\"Resource\":\"http://h/\xc3\",\"Condition\":{" DLT("1") "}}"),     /* cut UTF-8 */
        POL("{\"Resource\":\"http://h/\xc0\xaf\",\"Condition\":{" DLT("1") "}}"), /* overlong */
        POL("{\"Resource\":\"http://h/\xed\xa0\x80\",\"Condition\":{" DLT("1") "}}"),
        POL("{\"Resource\":\"http://h/a,\"Condition\":{" DLT("1") "}}"), /* unterminated */
        "{\"Statement\":[{\"Resource\":\"http://h/a\"",                  /* cut short */
        "{'Statement':[]}", "{\"Statement\":[[" STMT(DLT("1")) "]]}",    /* nested array */
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sh_cf_policy p;
        if (sh_cf_policy_parse(bad[i], strlen(bad[i]), &p) != -1) {
            sh_cf_policy_free(&p);
            fail_msg("accepted policy %zu: %s", i, bad[i]);
        }
        assert_null(p.resource); /* nothing left to free on failure */
    }
    /* a NUL byte inside the document */
    sh_cf_policy p;
    const char nul[] = "{\"Statement\":[{\"Condition\":{" DLT("1") "}}]}\0";
    assert_int_equal(sh_cf_policy_parse(nul, sizeof nul - 1, &p), -1);
}

/* ---- resource wildcards ------------------------------------------------------------------- */

static void test_resource_match(void **state)
{
    static const struct {
        const char *pat, *url;
        int match;
    } t[] = {
        {"http://h/books/*", "http://h/books/a.epub", 1},
        {"http://h/books/*", "http://h/books/", 1},
        {"http://h/books/*", "http://h/books/a/b?x=1", 1},
        {"http://h/books/*", "http://h/book", 0},
        {"http://h/books/*", "https://h/books/a", 0},
        {"*://h/books/*", "https://h/books/a", 1},
        {"*://h/books/*", "http://h/books/a", 1},
        {"http://h/a?", "http://h/ab", 1},
        {"http://h/a?", "http://h/a", 0},
        {"http://h/a?", "http://h/abc", 0},
        {"http://h/a\\?x=1", "http://h/a?x=1", 1},
        {"http://h/a\\?x=1", "http://h/abx=1", 0},
        {"http://h/a?x=1", "http://h/a?x=1", 1},
        {"http://h/a", "http://h/a", 1},
        {"http://h/a", "http://h/A", 0},
        {"http://H/a", "http://h/a", 0},
        {"http://h/a", "http://h/a?x=1", 0},
        {"http://h/*.epub", "http://h/x/y.epub", 1},
        {"http://h/*.epub", "http://h/x/y.pdf", 0},
        {"http://h/*a*b*c", "http://h/xxaxxbxxc", 1},
        {"http://h/*a*b*c", "http://h/xxaxxcxxb", 0},
        {"http://h/a\\b", "http://h/a\\b", 1}, /* a backslash not before '?' is literal */
        {"http://h/a\\", "http://h/a\\", 1},
        {"*", "", 1},
        {"", "", 1},
        {"", "x", 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int m = sh_cf_resource_match(t[i].pat, strlen(t[i].pat), t[i].url, strlen(t[i].url));
        if (m != t[i].match) fail_msg("%s vs %s: %d", t[i].pat, t[i].url, m);
    }
    /* a hostile pattern stays polynomial: many stars against a long near-miss */
    char pat[400], url[4000];
    for (size_t i = 0; i < sizeof pat; i++)
        pat[i] = i % 2 ? 'a' : '*';
    pat[sizeof pat - 1] = 'b';
    memset(url, 'a', sizeof url);
    assert_int_equal(sh_cf_resource_match(pat, sizeof pat, url, sizeof url), 0);
}

/* ---- canned policy ------------------------------------------------------------------------ */

static void test_canned_bytes(void **state)
{
    size_t n;
    char *s;
    (void)state;

    const char *u = "https://d111111abcdef8.cloudfront.net/horizon.jpg?size=large";
    s = sh_cf_canned_policy(u, strlen(u), "1357034400", 10, &n);
    const char *want = "{\"Statement\":[{\"Resource\":\"https://d111111abcdef8.cloudfront.net/"
                       "horizon.jpg?size=large\",\"Condition\":{\"DateLessThan\":{\"AWS:"
                       "EpochTime\":1357034400}}}]}";
    assert_string_equal(s, want);
    assert_int_equal(n, strlen(want));
    sh_free(s);

    /* escaped like json.dumps (botocore's signer) */
    s = sh_cf_canned_policy("http://h/a\"b\\c\x01", 15, "0", 1, &n);
    assert_string_equal(s, "{\"Statement\":[{\"Resource\":\"http://h/a\\\"b\\\\c\\u0001\","
                           "\"Condition\":{\"DateLessThan\":{\"AWS:EpochTime\":0}}}]}");
    assert_int_equal(n, strlen(s));
    sh_free(s);
}

/* ---- verification ------------------------------------------------------------------------- */

static void test_verify(void **state)
{
    const char msg[] = "{\"Statement\":[]}";
    size_t ml = sizeof msg - 1;
    (void)state;

    struct {
        EVP_PKEY *k;
        int sha256;
    } cases[] = {{rsa_key, 0}, {rsa_key, 1}, {ec_key, 0}, {ec_key, 1}};
    for (size_t i = 0; i < 4; i++) {
        char *b64 = sign(cases[i].k, cases[i].sha256, msg, ml);
        uint8_t sig[1024];
        size_t sl;
        assert_int_equal(sh_cf_b64_decode(b64, strlen(b64), sig, &sl), 0);
        assert_int_equal(
            sh_cf_verify(cases[i].k, cases[i].sha256, (const uint8_t *)msg, ml, sig, sl), 1);
        /* wrong hash, other key, changed message, changed or cut signature */
        assert_int_equal(
            sh_cf_verify(cases[i].k, !cases[i].sha256, (const uint8_t *)msg, ml, sig, sl), 0);
        assert_int_equal(
            sh_cf_verify(rsa_other, cases[i].sha256, (const uint8_t *)msg, ml, sig, sl), 0);
        assert_int_equal(
            sh_cf_verify(cases[i].k, cases[i].sha256, (const uint8_t *)msg, ml - 1, sig, sl), 0);
        sig[sl / 2] ^= 1;
        assert_int_equal(
            sh_cf_verify(cases[i].k, cases[i].sha256, (const uint8_t *)msg, ml, sig, sl), 0);
        sig[sl / 2] ^= 1;
        assert_int_equal(
            sh_cf_verify(cases[i].k, cases[i].sha256, (const uint8_t *)msg, ml, sig, sl - 1), 0);
        assert_int_equal(
            sh_cf_verify(cases[i].k, cases[i].sha256, (const uint8_t *)msg, ml, sig, 0), 0);
        assert_int_equal(sh_cf_verify(NULL, cases[i].sha256, (const uint8_t *)msg, ml, sig, sl), 0);
        free(b64);
    }
    /* an RSA signature given to the EC key and back */
    char *b64 = sign(rsa_key, 0, msg, ml);
    uint8_t sig[1024];
    size_t sl;
    assert_int_equal(sh_cf_b64_decode(b64, strlen(b64), sig, &sl), 0);
    assert_int_equal(sh_cf_verify(ec_key, 0, (const uint8_t *)msg, ml, sig, sl), 0);
    free(b64);
}

/* ---- parameters --------------------------------------------------------------------------- */

static void assert_param(const sh_cf_params *p, int k, const char *want)
{
    if (!want) {
        assert_null(p->v[k]);
        return;
    }
    assert_non_null(p->v[k]);
    assert_int_equal(p->len[k], strlen(want));
    assert_memory_equal(p->v[k], want, p->len[k]);
}

static void test_params_query(void **state)
{
    sh_cf_params p;
    const char *q;
    (void)state;

    q = "a=1&b=2&Expires=10&Signature=S&Key-Pair-Id=K";
    assert_int_equal(sh_cf_params_from_query(q, strlen(q), &p), 1);
    assert_false(p.duplicate);
    assert_false(p.trailing);
    assert_true(p.own_qmark);
    assert_int_equal(p.own_len, 7);
    assert_param(&p, SH_CF_P_EXPIRES, "10");
    assert_param(&p, SH_CF_P_SIGNATURE, "S");
    assert_param(&p, SH_CF_P_KEY_PAIR_ID, "K");
    assert_param(&p, SH_CF_P_POLICY, NULL);
    assert_param(&p, SH_CF_P_HASH_ALGORITHM, NULL);

    q = "Policy=P&Signature=S&Key-Pair-Id=K&Hash-Algorithm=SHA256";
    assert_int_equal(sh_cf_params_from_query(q, strlen(q), &p), 1);
    assert_false(p.own_qmark);
    assert_int_equal(p.own_len, 0);
    assert_param(&p, SH_CF_P_POLICY, "P");
    assert_param(&p, SH_CF_P_HASH_ALGORITHM, "SHA256");
    assert_false(p.trailing);

    /* a signer given "p?" writes "p?&Expires=..." and signs "p?" */
    q = "&Expires=1&Signature=S&Key-Pair-Id=K";
    assert_int_equal(sh_cf_params_from_query(q, strlen(q), &p), 1);
    assert_true(p.own_qmark);
    assert_int_equal(p.own_len, 0);

    /* parameters added after signing */
    q = "Expires=1&Signature=S&Key-Pair-Id=K&x=1";
    sh_cf_params_from_query(q, strlen(q), &p);
    assert_true(p.trailing);
    q = "Expires=1&Signature=S&Key-Pair-Id=K&";
    sh_cf_params_from_query(q, strlen(q), &p);
    assert_true(p.trailing);
    q = "Expires=1&x=2&Signature=S&Key-Pair-Id=K";
    sh_cf_params_from_query(q, strlen(q), &p);
    assert_true(p.trailing);
    q = "Expires=1&&Signature=S&Key-Pair-Id=K";
    sh_cf_params_from_query(q, strlen(q), &p);
    assert_true(p.trailing);

    /* duplicates */
    q = "Expires=1&Signature=S&Key-Pair-Id=K&Signature=T";
    sh_cf_params_from_query(q, strlen(q), &p);
    assert_true(p.duplicate);
    assert_param(&p, SH_CF_P_SIGNATURE, "S");
    q = "Expires=1&Signature=S&Key-Pair-Id=K&Hash-Algorithm=SHA1&Hash-Algorithm=SHA256";
    sh_cf_params_from_query(q, strlen(q), &p);
    assert_true(p.duplicate);

    /* not signed: no name matches exactly */
    static const char *const unsigned_q[] = {"",
                                             "a=1",
                                             "expires=1&signature=S&key-pair-id=K",
                                             "Expiresx=1&Signatures=2",
                                             "xExpires=1",
                                             "Hash-Algorithm=SHA256",
                                             "a=Expires"};
    for (size_t i = 0; i < sizeof unsigned_q / sizeof unsigned_q[0]; i++)
        assert_int_equal(sh_cf_params_from_query(unsigned_q[i], strlen(unsigned_q[i]), &p), 0);
    assert_int_equal(sh_cf_params_from_query(NULL, 0, &p), 0);

    /* a bare name counts, with an empty value */
    q = "Signature";
    assert_int_equal(sh_cf_params_from_query(q, strlen(q), &p), 1);
    assert_param(&p, SH_CF_P_SIGNATURE, "");
}

static void test_params_cookies(void **state)
{
    sh_cf_params p;
    (void)state;
#define H(n, v) {n, strlen(n), v, strlen(v)}
    sh_header h[] = {
        H("Accept", "CloudFront-Policy=X"),
        H("Cookie", "session=1; CloudFront-Policy=P;CloudFront-Signature=\"S\""),
        H("cookie", " CloudFront-Key-Pair-Id=K ;x=CloudFront-Expires=1;"),
    };
    assert_int_equal(sh_cf_params_from_cookies(h, 3, &p), 1);
    assert_false(p.duplicate);
    assert_param(&p, SH_CF_P_POLICY, "P");
    assert_param(&p, SH_CF_P_SIGNATURE, "S");
    assert_param(&p, SH_CF_P_KEY_PAIR_ID, "K");
    assert_param(&p, SH_CF_P_EXPIRES, NULL);

    sh_header d[] = {H("Cookie", "CloudFront-Policy=P"), H("Cookie", "CloudFront-Policy=Q")};
    sh_cf_params_from_cookies(d, 2, &p);
    assert_true(p.duplicate);

    sh_header none[] = {H("Cookie", "cloudfront-policy=P; CloudFront-PolicyX=Q; =; ;")};
#undef H
    assert_int_equal(sh_cf_params_from_cookies(none, 1, &p), 0);
    assert_int_equal(sh_cf_params_from_cookies(NULL, 0, &p), 0);
}

/* ---- verdicts ----------------------------------------------------------------------------- */

static sh_cf_key_conf test_keys[3];

static void init_keys(void)
{
    test_keys[0] = (sh_cf_key_conf){.id = "KRSA", .pkey = rsa_key};
    test_keys[1] = (sh_cf_key_conf){.id = "KEC", .pkey = ec_key};
    test_keys[2] = (sh_cf_key_conf){.id = "KNULL", .pkey = NULL};
}

static const uint8_t *ip_of(const char *s)
{
    static uint8_t a[16];
    assert_int_equal(sh_ip_parse(s, strlen(s), a), 0);
    return a;
}

/* Verdict for a query against url from client ip at NOW. */
static sh_cf_result check_query(const char *q, const char *url, const char *ip)
{
    sh_cf_params p;
    const char *why = NULL;
    sh_cf_params_from_query(q, strlen(q), &p);
    sh_cf_result r = sh_cf_check(&p, url, strlen(url), ip_of(ip), NOW, test_keys, 3, &why);
    assert_true(r == SH_CF_OK ? why == NULL : why != NULL);
    return r;
}

/* A canned signed query for url with the given key/hash. */
static char *canned_query(EVP_PKEY *k, const char *kid, int sha256, const char *url,
                          const char *expires)
{
    size_t n;
    char *pol = sh_cf_canned_policy(url, strlen(url), expires, strlen(expires), &n);
    char *sig = sign(k, sha256, pol, n);
    char *q = malloc(strlen(sig) + 128);
    sprintf(q, "Expires=%s&Signature=%s&Key-Pair-Id=%s%s", expires, sig, kid,
            sha256 ? "&Hash-Algorithm=SHA256" : "");
    sh_free(pol);
    free(sig);
    return q;
}

static char *custom_query(EVP_PKEY *k, const char *kid, int sha256, const char *policy)
{
    char *pol = cf_b64((const uint8_t *)policy, strlen(policy));
    char *sig = sign(k, sha256, policy, strlen(policy));
    char *q = malloc(strlen(pol) + strlen(sig) + 128);
    sprintf(q, "Policy=%s&Signature=%s&Key-Pair-Id=%s%s", pol, sig, kid,
            sha256 ? "&Hash-Algorithm=SHA256" : "");
    free(pol);
    free(sig);
    return q;
}

static void test_check_canned(void **state)
{
    const char *url = "http://h:8080/books/a.epub";
    char *q;
    (void)state;
    init_keys();

    q = canned_query(rsa_key, "KRSA", 0, url, "1700000100");
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_OK);
    assert_int_equal(check_query(q, "http://h:8080/books/b.epub", "127.0.0.1"),
                     SH_CF_ACCESS_DENIED);
    assert_int_equal(check_query(q, "https://h:8080/books/a.epub", "127.0.0.1"),
                     SH_CF_ACCESS_DENIED);
    free(q);

    /* SHA-256 and ECDSA */
    q = canned_query(rsa_key, "KRSA", 1, url, "1700000100");
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_OK);
    /* the same signature announced as SHA-1 */
    q[strlen(q) - strlen("&Hash-Algorithm=SHA256")] = '\0';
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_ACCESS_DENIED);
    free(q);
    q = canned_query(ec_key, "KEC", 0, url, "1700000100");
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_OK);
    free(q);
    q = canned_query(ec_key, "KEC", 1, url, "1700000100");
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_OK);
    free(q);
    /* signed by one key, claimed for the other */
    q = canned_query(ec_key, "KRSA", 0, url, "1700000100");
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_ACCESS_DENIED);
    free(q);

    /* expiry is exclusive: valid strictly before Expires */
    q = canned_query(rsa_key, "KRSA", 0, url, "1700000000");
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_ACCESS_DENIED);
    free(q);
    q = canned_query(rsa_key, "KRSA", 0, url, "1700000001");
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_OK);
    free(q);

    /* Expires that is not what a signer writes: denied even when signed as such */
    static const char *const bad_exp[] = {"01700000100",    "1700000100.0", "-1", "1e10", "",
                                          "999999999999999"};
    for (size_t i = 0; i < sizeof bad_exp / sizeof bad_exp[0]; i++) {
        q = canned_query(rsa_key, "KRSA", 0, url, bad_exp[i]);
        assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_ACCESS_DENIED);
        free(q);
    }

    /* a URL with its own query signs it; the signing block is stripped from it */
    const char *own = "http://h/a?x=1&y=%20";
    q = canned_query(rsa_key, "KRSA", 0, own, "1700000100");
    char *full = malloc(strlen(q) + 32);
    sprintf(full, "x=1&y=%%20&%s", q);
    sh_cf_params p;
    sh_cf_params_from_query(full, strlen(full), &p);
    assert_int_equal(p.own_len, 9);
    assert_int_equal(sh_cf_check(&p, own, strlen(own), ip_of("::1"), NOW, test_keys, 3, NULL),
                     SH_CF_OK);
    free(full);
    free(q);
}

static void test_check_custom(void **state)
{
    const char *url = "http://h/books/a.epub";
    char *q;
    (void)state;
    init_keys();

#define CPOL(res, cond)                                                                            \
    "{\"Statement\":[{\"Resource\":\"" res                                                         \
    "\",\"Condition\":{\"DateLessThan\":{\"AWS:EpochTime\":"                                       \
    "1700000100}" cond "}}]}"

    q = custom_query(rsa_key, "KRSA", 0, CPOL("http://h/books/*", ""));
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_OK);
    assert_int_equal(check_query(q, "http://h/books/b.pdf?x=1", "127.0.0.1"), SH_CF_OK);
    assert_int_equal(check_query(q, "http://h/other/a.epub", "127.0.0.1"), SH_CF_ACCESS_DENIED);
    free(q);

    q = custom_query(rsa_key, "KRSA", 0,
                     CPOL("http://h/*", ",\"IpAddress\":{\"AWS:SourceIp\":\"127.0.0.0/24\"}"));
    assert_int_equal(check_query(q, url, "127.0.0.9"), SH_CF_OK);
    assert_int_equal(check_query(q, url, "::ffff:127.0.0.9"), SH_CF_OK);
    assert_int_equal(check_query(q, url, "127.0.1.1"), SH_CF_ACCESS_DENIED);
    assert_int_equal(check_query(q, url, "::1"), SH_CF_ACCESS_DENIED);
    free(q);

    q = custom_query(ec_key, "KEC", 1,
                     CPOL("*://h/*", ",\"DateGreaterThan\":{\"AWS:EpochTime\":1699999999}"));
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_OK);
    free(q);
    q = custom_query(ec_key, "KEC", 1,
                     CPOL("*://h/*", ",\"DateGreaterThan\":{\"AWS:EpochTime\":1700000000}"));
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_ACCESS_DENIED);
    free(q);

    /* no Resource: any URL */
    q = custom_query(rsa_key, "KRSA", 0,
                     "{\"Statement\":{\"Condition\":{\"DateLessThan\":{\"AWS:EpochTime\":"
                     "1700000100}}}}");
    assert_int_equal(check_query(q, "https://elsewhere/x", "10.0.0.1"), SH_CF_OK);
    free(q);

    /* expired */
    q = custom_query(rsa_key, "KRSA", 0,
                     "{\"Statement\":{\"Condition\":{\"DateLessThan\":{\"AWS:EpochTime\":"
                     "1700000000}}}}");
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_ACCESS_DENIED);
    free(q);

    /* a signed but invalid policy is still malformed */
    q = custom_query(rsa_key, "KRSA", 0, CPOL("http://h/*", ",\"Referer\":{}"));
    assert_int_equal(check_query(q, url, "127.0.0.1"), SH_CF_MALFORMED_POLICY);
    free(q);
}

static void test_check_errors(void **state)
{
    const char *url = "http://h/a";
    (void)state;
    init_keys();
    char *good = canned_query(rsa_key, "KRSA", 0, url, "1700000100");
    const char *s0 = strstr(good, "Signature=") + 10;
    char *sig = sh_strndup(s0, (size_t)(strstr(good, "&Key-Pair-Id") - s0));

    static const struct {
        const char *fmt; /* {S} = the valid signature */
        sh_cf_result want;
    } t[] = {
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=KRSA", SH_CF_OK},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=K%52SA", SH_CF_OK}, /* %-encoded id */
        {"Expires=1700000100&Signature={S}", SH_CF_MISSING_KEY},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=", SH_CF_INVALID_KEY},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=KNOPE", SH_CF_INVALID_KEY},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=krsa", SH_CF_INVALID_KEY},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=KNULL", SH_CF_INVALID_KEY},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=K%zz", SH_CF_INVALID_KEY},
        {"Expires=1700000100&Key-Pair-Id=KRSA", SH_CF_MALFORMED_SIGNATURE},
        {"Expires=1700000100&Signature=&Key-Pair-Id=KRSA", SH_CF_MALFORMED_SIGNATURE},
        {"Expires=1700000100&Signature={S}!&Key-Pair-Id=KRSA", SH_CF_MALFORMED_SIGNATURE},
        {"Expires=1700000100&Signature=+{S}&Key-Pair-Id=KRSA", SH_CF_MALFORMED_SIGNATURE},
        {"Expires=1700000100&Signature={S}%&Key-Pair-Id=KRSA", SH_CF_MALFORMED_SIGNATURE},
        {"Expires=1700000101&Signature={S}&Key-Pair-Id=KRSA", SH_CF_ACCESS_DENIED},
        {"Expires=1700000100x&Signature={S}&Key-Pair-Id=KRSA", SH_CF_ACCESS_DENIED},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=KRSA&a=1", SH_CF_ACCESS_DENIED},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=KRSA&Signature=x", SH_CF_ACCESS_DENIED},
        {"Expires=1700000100&Expires=1700000100&Signature={S}&Key-Pair-Id=KRSA",
         SH_CF_ACCESS_DENIED},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=KRSA&Hash-Algorithm=MD5",
         SH_CF_ACCESS_DENIED},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=KRSA&Hash-Algorithm=SHA1", SH_CF_OK},
        {"Expires=1700000100&Signature={S}&Key-Pair-Id=KRSA&Hash-Algorithm=sha1",
         SH_CF_ACCESS_DENIED},
        {"Expires=1700000100&Policy=e30_&Signature={S}&Key-Pair-Id=KRSA", SH_CF_ACCESS_DENIED},
        {"Signature={S}&Key-Pair-Id=KRSA", SH_CF_MALFORMED_POLICY},
        {"Policy=e30_&Signature={S}&Key-Pair-Id=KRSA", SH_CF_MALFORMED_POLICY}, /* "{}" */
        {"Policy=e30&Signature={S}&Key-Pair-Id=KRSA", SH_CF_MALFORMED_POLICY},
        {"Policy=!&Signature={S}&Key-Pair-Id=KRSA", SH_CF_MALFORMED_POLICY},
        {"Policy=&Signature={S}&Key-Pair-Id=KRSA", SH_CF_MALFORMED_POLICY},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char *q = replace_all(t[i].fmt, "{S}", sig);
        sh_cf_result r = check_query(q, url, "127.0.0.1");
        if (r != t[i].want)
            fail_msg("%s: got %s, want %s", q, sh_cf_result_code(r), sh_cf_result_code(t[i].want));
        free(q);
    }
    sh_free(sig);
    free(good);

    /* nothing at all on a signed behavior */
    sh_cf_params p;
    sh_cf_params_from_cookies(NULL, 0, &p);
    assert_int_equal(sh_cf_check(&p, url, strlen(url), ip_of("127.0.0.1"), NOW, test_keys, 3, NULL),
                     SH_CF_MISSING_KEY);

    /* an over-long signature or policy is refused before any work */
    char *big = malloc(40000);
    memset(big, 'A', 39999);
    big[39999] = '\0';
    memcpy(big, "Expires=1&Key-Pair-Id=KRSA&Signature=", 37);
    assert_int_equal(check_query(big, url, "127.0.0.1"), SH_CF_MALFORMED_SIGNATURE);
    memcpy(big, "Key-Pair-Id=KRSA&Signature=QQ__&Policy=", 39);
    assert_int_equal(check_query(big, url, "127.0.0.1"), SH_CF_MALFORMED_POLICY);
    free(big);

    assert_string_equal(sh_cf_result_code(SH_CF_MISSING_KEY), "MissingKey");
    assert_string_equal(sh_cf_result_message(SH_CF_MISSING_KEY),
                        "Missing Key-Pair-Id query parameter or cookie value");
    assert_string_equal(sh_cf_result_message(SH_CF_INVALID_KEY), "Unknown Key");
    assert_string_equal(sh_cf_result_message(SH_CF_MALFORMED_SIGNATURE),
                        "Could not unencode Signature");
    assert_string_equal(sh_cf_result_message(SH_CF_MALFORMED_POLICY), "Malformed Policy");
    assert_string_equal(sh_cf_result_message(SH_CF_ACCESS_DENIED), "Access denied");
}

static void test_check_cookies(void **state)
{
    const char *url = "http://h/c/a?own=1";
    (void)state;
    init_keys();
    char *pq = custom_query(ec_key, "KEC", 0, CPOL("http://h/c/*", ""));
    /* Policy=..&Signature=..&Key-Pair-Id=KEC -> cookies */
    char cookie[4096];
    const char *pol = strstr(pq, "Policy=") + 7, *sig = strstr(pq, "Signature=") + 10;
    snprintf(cookie, sizeof cookie,
             "a=b; CloudFront-Policy=%.*s; CloudFront-Signature=%.*s; CloudFront-Key-Pair-Id=KEC",
             (int)(strchr(pol, '&') - pol), pol, (int)(strchr(sig, '&') - sig), sig);
    sh_header h[] = {{"Cookie", 6, cookie, strlen(cookie)}};
    sh_cf_params p;
    assert_int_equal(sh_cf_params_from_cookies(h, 1, &p), 1);
    assert_int_equal(sh_cf_check(&p, url, strlen(url), ip_of("127.0.0.1"), NOW, test_keys, 3, NULL),
                     SH_CF_OK);
    /* announced as SHA-256 but signed with SHA-1 */
    char c2[4200];
    snprintf(c2, sizeof c2, "%s; CloudFront-Hash-Algorithm=SHA256", cookie);
    sh_header h2[] = {{"Cookie", 6, c2, strlen(c2)}};
    sh_cf_params_from_cookies(h2, 1, &p);
    assert_int_equal(sh_cf_check(&p, url, strlen(url), ip_of("127.0.0.1"), NOW, test_keys, 3, NULL),
                     SH_CF_ACCESS_DENIED);
    /* the same cookie twice */
    sh_header h3[] = {{"Cookie", 6, cookie, strlen(cookie)}, {"Cookie", 6, cookie, strlen(cookie)}};
    sh_cf_params_from_cookies(h3, 2, &p);
    assert_int_equal(sh_cf_check(&p, url, strlen(url), ip_of("127.0.0.1"), NOW, test_keys, 3, NULL),
                     SH_CF_ACCESS_DENIED);
    free(pq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_valid),      cmocka_unit_test(test_b64_invalid),
        cmocka_unit_test(test_policy_accept),  cmocka_unit_test(test_policy_reject),
        cmocka_unit_test(test_resource_match), cmocka_unit_test(test_canned_bytes),
        cmocka_unit_test(test_verify),         cmocka_unit_test(test_params_query),
        cmocka_unit_test(test_params_cookies), cmocka_unit_test(test_check_canned),
        cmocka_unit_test(test_check_custom),   cmocka_unit_test(test_check_errors),
        cmocka_unit_test(test_check_cookies),
    };
    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
