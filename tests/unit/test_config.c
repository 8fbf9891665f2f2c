/*
 * Config loader: defaults, a full round trip, every error class with its exact
 * "file:line: message" text, and the value parsers (durations, sizes, addresses).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shield/config.h"

#include "config_load.h"

/* ---- defaults and round trip ---------------------------------------------------------------- */

static void test_minimal_defaults(void **state)
{
    sh_config *cfg = load_ok(MINIMAL);
    const sh_origin_conf *o;
    const sh_behavior_conf *b;
    const struct sockaddr_in *sin;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    assert_string_equal(cfg->node_name, "shield");
    assert_string_equal(cfg->pop, "SHLD1");
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->nworkers, ncpu < 1 ? 1 : ncpu > 256 ? 256 : ncpu);
    assert_string_equal(cfg->error_log, "");

    assert_int_equal(cfg->nlisten, 1);
    assert_string_equal(cfg->listen[0].address, "127.0.0.1:8080");
    assert_int_equal(cfg->listen[0].tls, 0);
    assert_int_equal(cfg->listen[0].addrlen, sizeof(struct sockaddr_in));
    sin = (const struct sockaddr_in *)&cfg->listen[0].addr;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 8080);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);

    assert_int_equal(cfg->norigins, 1);
    o = &cfg->origins[0];
    assert_string_equal(o->name, "books");
    assert_int_equal(o->type, SH_ORIGIN_S3);
    assert_string_equal(o->endpoint, AWS);
    assert_string_equal(o->bucket, "ebooks");
    assert_string_equal(o->region, "us-east-1");
    assert_int_equal(o->path_style, 0); /* *.amazonaws.com: virtual-hosted */
    assert_int_equal(o->credentials, SH_CRED_ENV);
    assert_null(o->credentials_file);
    assert_string_equal(o->credentials_profile, "default");
    assert_string_equal(o->imds_endpoint, "http://169.254.169.254");
    assert_int_equal(o->connect_timeout_ms, 10000);
    assert_int_equal(o->read_timeout_ms, 30000);
    assert_int_equal(o->keepalive_timeout_ms, 5000);
    assert_int_equal(o->attempts, 3);

    assert_int_equal(cfg->nbehaviors, 1);
    b = &cfg->behaviors[0];
    assert_string_equal(b->path, "*");
    assert_string_equal(b->origin_name, "books");
    assert_ptr_equal(b->origin, o);
    assert_int_equal(b->allowed_methods, SH_M_DEFAULT);
    assert_int_equal(b->min_ttl, 0);
    assert_int_equal(b->default_ttl, 86400);
    assert_int_equal(b->max_ttl, 31536000);
    assert_int_equal(b->nforward_headers, 0);
    assert_int_equal(b->forward_query, 0);
    assert_int_equal(b->forward_cookies, 0);
    assert_int_equal(b->line, 3);

    for (int i = 0; i < 2; i++) {
        const sh_resp_headers_conf *h = i ? &b->headers : &cfg->response_headers;
        assert_string_equal(h->hsts, "max-age=63072000; includeSubDomains; preload");
        assert_string_equal(h->frame_options, "DENY");
        assert_string_equal(h->content_type_options, "nosniff");
        assert_string_equal(h->referrer_policy, "strict-origin-when-cross-origin");
        assert_string_equal(h->xss_protection, "1; mode=block");
        assert_int_equal(h->ncustom, 0);
        assert_int_equal(h->override_origin, 1);
    }
    assert_string_equal(cfg->default_root_object, "");

    assert_int_equal(cfg->limits.max_header_size, 20480);
    assert_int_equal(cfg->limits.max_url, 8192);
    assert_int_equal(cfg->limits.max_headers, 100);
    assert_int_equal(cfg->limits.max_body_size, 1048576);
    assert_int_equal(cfg->limits.max_connections, 10000);
    assert_int_equal(cfg->limits.max_requests_per_connection, 0);

    assert_int_equal(cfg->timeouts.header_ms, 10000);
    assert_int_equal(cfg->timeouts.body_ms, 30000);
    assert_int_equal(cfg->timeouts.keepalive_ms, 60000);
    assert_int_equal(cfg->timeouts.send_ms, 60000);
    assert_int_equal(cfg->timeouts.drain_ms, 30000);
    sh_config_free(cfg);
}

static void test_origin_defaults_by_kind(void **state)
{
    sh_config *cfg = load_ok(LISTEN "origins = (\n"
                                    "  { name = \"emu\"; type = \"s3\"; endpoint = "
                                    "\"http://127.0.0.1:4569///\"; bucket = \"b\"; },\n"
                                    "  { name = \"web\"; type = \"http\"; endpoint = "
                                    "\"https://example.org/base/\"; } );\n" CATCHALL);
    const sh_origin_conf *s3 = &cfg->origins[0], *web = &cfg->origins[1];

    assert_string_equal(s3->endpoint, "http://127.0.0.1:4569");
    assert_int_equal(s3->path_style, 1); /* not AWS: path style */
    assert_int_equal(s3->credentials, SH_CRED_ENV);
    assert_int_equal(web->type, SH_ORIGIN_HTTP);
    assert_string_equal(web->endpoint, "https://example.org/base");
    assert_null(web->bucket);
    assert_null(web->region);
    assert_int_equal(web->credentials, SH_CRED_NONE);
    /* the default origin of a behavior is the first one */
    assert_ptr_equal(cfg->behaviors[0].origin, s3);
    sh_config_free(cfg);
}

static const char full_conf[] =
    "node = { name = \"edge-1\"; pop = \"IAD1\"; workers = 4; error_log = \"/var/log/e.log\"; };\n"
    "listen = ( { address = \"0.0.0.0:80\"; tls = false; }, { address = \"[::1]:8081\"; },\n"
    "           { address = \":9000\"; } );\n"
    "origins = (\n"
    "  { name = \"books\"; type = \"s3\"; endpoint = \"" AWS "/\"; bucket = \"ebooks\";\n"
    "    region = \"eu-west-1\"; path_style = true; credentials = \"file\";\n"
    "    credentials_file = \"/etc/shield/creds\"; credentials_profile = \"shield\";\n"
    "    connect_timeout = \"2s\"; read_timeout = 45; keepalive_timeout = \"1m\"; attempts = 1; "
    "},\n"
    "  { name = \"role\"; type = \"s3\"; endpoint = \"https://minio.local:9000\"; bucket = \"b\";\n"
    "    path_style = false; credentials = \"imds\"; imds_endpoint = \"http://[fd00:ec2::254]/\"; "
    "},\n"
    "  { name = \"web\"; type = \"http\"; endpoint = \"http://10.0.0.1:8080\"; credentials = "
    "\"none\"; } );\n"
    "behaviors = (\n"
    "  { path = \"*.epub\"; origin = \"books\"; allowed_methods = [\"GET\", \"HEAD\"];\n"
    "    min_ttl = \"1h\"; default_ttl = \"7d\"; max_ttl = 2592000;\n"
    "    forward_headers = [\"Origin\", \"Access-Control-Request-Method\"];\n"
    "    forward_query = true; forward_cookies = true;\n"
    "    response_headers = { frame_options = \"SAMEORIGIN\"; hsts = \"\"; override = false;\n"
    "                         custom = ( { name = \"X-Book\"; value = \"1\"; } ); }; },\n"
    "  { path = \"/api/*\"; origin = \"web\";\n"
    "    allowed_methods = [\"GET\", \"HEAD\", \"OPTIONS\", \"PUT\", \"POST\", \"PATCH\", "
    "\"DELETE\"]; },\n"
    "  { path = \"*\"; origin = \"role\"; } );\n"
    "response_headers = { hsts = \"max-age=1\"; frame_options = \"DENY\"; content_type_options = "
    "\"\";\n"
    "  referrer_policy = \"no-referrer\"; xss_protection = \"0\"; override = true;\n"
    "  custom = ( { name = \"X-Served-By\"; value = \"shield\"; }, { name = \"X-Empty\"; value = "
    "\"\"; } ); };\n"
    "default_root_object = \"index.html\";\n"
    "limits = { max_header_size = \"32K\"; max_url = \"4k\"; max_headers = 50; max_body_size = "
    "\"10MiB\";\n"
    "  max_connections = 20000; max_requests_per_connection = 1000; };\n"
    "timeouts = { header = \"5s\"; body = \"250ms\"; keepalive = 15; send = \"2m\"; drain = 0; "
    "};\n";

static void test_full_round_trip(void **state)
{
    sh_config *cfg = load_ok(full_conf);
    const sh_origin_conf *o;
    const sh_behavior_conf *b;
    const struct sockaddr_in6 *s6;
    const struct sockaddr_in *s4;

    assert_string_equal(cfg->node_name, "edge-1");
    assert_string_equal(cfg->pop, "IAD1");
    assert_int_equal(cfg->workers, 4);
    assert_int_equal(cfg->nworkers, 4);
    assert_string_equal(cfg->error_log, "/var/log/e.log");

    assert_int_equal(cfg->nlisten, 3);
    s6 = (const struct sockaddr_in6 *)&cfg->listen[1].addr;
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(s6->sin6_port), 8081);
    assert_memory_equal(&s6->sin6_addr, &in6addr_loopback, sizeof in6addr_loopback);
    s4 = (const struct sockaddr_in *)&cfg->listen[2].addr;
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(s4->sin_addr.s_addr, htonl(INADDR_ANY));
    assert_int_equal(ntohs(s4->sin_port), 9000);

    assert_int_equal(cfg->norigins, 3);
    o = &cfg->origins[0];
    assert_string_equal(o->endpoint, AWS);
    assert_string_equal(o->region, "eu-west-1");
    assert_int_equal(o->path_style, 1);
    assert_int_equal(o->credentials, SH_CRED_FILE);
    assert_string_equal(o->credentials_file, "/etc/shield/creds");
    assert_string_equal(o->credentials_profile, "shield");
    assert_int_equal(o->connect_timeout_ms, 2000);
    assert_int_equal(o->read_timeout_ms, 45000);
    assert_int_equal(o->keepalive_timeout_ms, 60000);
    assert_int_equal(o->attempts, 1);
    o = &cfg->origins[1];
    assert_int_equal(o->path_style, 0);
    assert_int_equal(o->credentials, SH_CRED_IMDS);
    assert_string_equal(o->imds_endpoint, "http://[fd00:ec2::254]");
    assert_int_equal(cfg->origins[2].type, SH_ORIGIN_HTTP);
    assert_int_equal(cfg->origins[2].credentials, SH_CRED_NONE);

    assert_int_equal(cfg->nbehaviors, 3);
    b = &cfg->behaviors[0];
    assert_string_equal(b->path, "*.epub");
    assert_ptr_equal(b->origin, &cfg->origins[0]);
    assert_int_equal(b->allowed_methods, SH_M_GET | SH_M_HEAD);
    assert_int_equal(b->min_ttl, 3600);
    assert_int_equal(b->default_ttl, 604800);
    assert_int_equal(b->max_ttl, 2592000);
    assert_int_equal(b->nforward_headers, 2);
    assert_string_equal(b->forward_headers[0], "Origin");
    assert_string_equal(b->forward_headers[1], "Access-Control-Request-Method");
    assert_int_equal(b->forward_query, 1);
    assert_int_equal(b->forward_cookies, 1);
    assert_int_equal(b->line, 13);
    /* per-behavior override on top of the global headers */
    assert_null(b->headers.hsts);
    assert_string_equal(b->headers.frame_options, "SAMEORIGIN");
    assert_null(b->headers.content_type_options); /* "" globally: disabled, inherited */
    assert_string_equal(b->headers.referrer_policy, "no-referrer");
    assert_string_equal(b->headers.xss_protection, "0");
    assert_int_equal(b->headers.override_origin, 0);
    assert_int_equal(b->headers.ncustom, 1); /* replaces the global list */
    assert_string_equal(b->headers.custom_names[0], "X-Book");
    assert_string_equal(b->headers.custom_values[0], "1");

    b = &cfg->behaviors[1];
    assert_ptr_equal(b->origin, &cfg->origins[2]);
    assert_int_equal(b->allowed_methods, SH_M_GET | SH_M_HEAD | SH_M_OPTIONS | SH_M_PUT |
                                             SH_M_POST | SH_M_PATCH | SH_M_DELETE);
    assert_string_equal(b->headers.hsts, "max-age=1");
    assert_int_equal(b->headers.override_origin, 1);
    assert_int_equal(b->headers.ncustom, 2);
    assert_string_equal(b->headers.custom_names[1], "X-Empty");
    assert_string_equal(b->headers.custom_values[1], "");
    assert_ptr_equal(cfg->behaviors[2].origin, &cfg->origins[1]);

    assert_string_equal(cfg->response_headers.hsts, "max-age=1");
    assert_null(cfg->response_headers.content_type_options);
    assert_int_equal(cfg->response_headers.ncustom, 2);
    assert_string_equal(cfg->response_headers.custom_names[0], "X-Served-By");
    assert_string_equal(cfg->response_headers.custom_values[0], "shield");
    assert_string_equal(cfg->default_root_object, "index.html");

    assert_int_equal(cfg->limits.max_header_size, 32768);
    assert_int_equal(cfg->limits.max_url, 4096);
    assert_int_equal(cfg->limits.max_headers, 50);
    assert_int_equal(cfg->limits.max_body_size, 10485760);
    assert_int_equal(cfg->limits.max_connections, 20000);
    assert_int_equal(cfg->limits.max_requests_per_connection, 1000);
    assert_int_equal(cfg->timeouts.header_ms, 5000);
    assert_int_equal(cfg->timeouts.body_ms, 250);
    assert_int_equal(cfg->timeouts.keepalive_ms, 15000);
    assert_int_equal(cfg->timeouts.send_ms, 120000);
    assert_int_equal(cfg->timeouts.drain_ms, 0);
    sh_config_free(cfg);
}

static void test_shipped_configs(void **state)
{
    const char *files[] = {"conf/shield.conf", "conf/demo.conf"};
    sh_config *cfg[2];

    for (int i = 0; i < 2; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *e = open_memstream(&buf, &len);
        cfg[i] = sh_config_load(files[i], e);
        fclose(e);
        assert_string_equal(buf, "");
        free(buf);
        assert_non_null(cfg[i]);
    }
    assert_string_equal(cfg[0]->listen[0].address, "0.0.0.0:8080");
    assert_string_equal(cfg[0]->origins[0].endpoint, AWS);
    assert_string_equal(cfg[0]->origins[0].bucket, "ebooks");
    assert_int_equal(cfg[0]->origins[0].credentials, SH_CRED_ENV);
    assert_string_equal(cfg[0]->behaviors[cfg[0]->nbehaviors - 1].path, "*");

    assert_string_equal(cfg[1]->node_name, "shield-demo");
    assert_string_equal(cfg[1]->pop, "DEMO1");
    assert_int_equal(cfg[1]->nworkers, 2);
    assert_string_equal(cfg[1]->listen[0].address, "127.0.0.1:8080");
    assert_string_equal(cfg[1]->origins[0].endpoint, "http://127.0.0.1:4569");
    assert_int_equal(cfg[1]->origins[0].path_style, 1);
    assert_int_equal(cfg[1]->nbehaviors, 3);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cfg[1]->behaviors[i].default_ttl, 7 * 86400);
        assert_int_equal(cfg[1]->behaviors[i].nforward_headers, 3);
        assert_string_equal(cfg[1]->behaviors[i].forward_headers[2],
                            "Access-Control-Request-Headers");
    }
    assert_string_equal(cfg[1]->behaviors[2].path, "*");
    assert_string_equal(cfg[1]->default_root_object, "index.html");
    assert_string_equal(cfg[1]->response_headers.frame_options, "DENY");
    sh_config_free(cfg[0]);
    sh_config_free(cfg[1]);
}

/* ---- error classes ----------------------------------------------------------------------------
 */

static void test_err_cannot_open(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *e = open_memstream(&buf, &len);

    assert_null(sh_config_load("/nonexistent/shield.conf", e));
    assert_null(sh_config_load("/tmp", e));
    fclose(e);
    assert_string_equal(buf, "/nonexistent/shield.conf: cannot open: No such file or directory\n"
                             "/tmp: cannot open: Is a directory\n");
    free(buf);
}

static void test_err_syntax(void **state)
{
    expect_errors(MINIMAL "node = {\n  name = ;\n};\n", "t.conf:5: syntax error\n");
    expect_errors(MINIMAL "node = { name = \"a\"; name = \"b\"; };\n",
                  "t.conf:4: duplicate setting name\n");
}

static void test_err_unknown_keys(void **state)
{
    expect_errors(MINIMAL "node = {\n  workerz = 2;\n};\nkache = {};\n",
                  "t.conf:7: unknown top-level key \"kache\"\n"
                  "t.conf:5: unknown key \"workerz\" in node\n");
    expect_errors(LISTEN "origins = ( { name = \"books\"; type = \"s3\"; endpoint = \"" AWS "\";\n"
                         "  bucket = \"b\"; bukcet = \"c\"; } );\n"
                         "behaviors = ( { path = \"*\"; ttl = 5;\n"
                         "  response_headers = { frame = \"x\"; custom = ( { name = \"X\"; value "
                         "= \"1\"; v = 2; } ); }; } );\n"
                         "limits = { max_urls = 1; };\ntimeouts = { idle = 1; };\n",
                  "t.conf:3: unknown key \"bukcet\" in origin \"books\"\n"
                  "t.conf:6: unknown key \"max_urls\" in limits\n"
                  "t.conf:7: unknown key \"idle\" in timeouts\n"
                  "t.conf:4: unknown key \"ttl\" in behavior \"*\"\n"
                  "t.conf:5: unknown key \"frame\" in behavior \"*\" response_headers\n"
                  "t.conf:5: unknown key \"v\" in behavior \"*\": response_headers.custom[0]\n");
}

static void test_cache_and_admin(void **state)
{
    sh_config *cfg = load_ok(MINIMAL);
    assert_true(cfg->cache.enabled);
    assert_int_equal(cfg->cache.memory_size, 256u << 20);
    assert_int_equal(cfg->cache.max_object_size, 64u << 20);
    assert_string_equal(cfg->admin.address, "");
    sh_config_free(cfg);
    cfg = load_ok(MINIMAL "cache = { enabled = false; memory_size = \"1G\"; max_object_size = "
                          "\"8M\"; };\nadmin = { address = \"127.0.0.1:9090\"; };\n");
    assert_false(cfg->cache.enabled);
    assert_int_equal(cfg->cache.memory_size, 1u << 30);
    assert_int_equal(cfg->cache.max_object_size, 8u << 20);
    assert_string_equal(cfg->admin.address, "127.0.0.1:9090");
    sh_config_free(cfg);
    expect_errors(MINIMAL "cache = { memory_size = \"1X\"; size = 1; };\n"
                          "admin = { address = \"localhost:9090\"; };\n",
                  "t.conf:4: unknown key \"size\" in cache\n"
                  "t.conf:4: cache.memory_size \"1X\": not a size (use e.g. 512M, 1G)\n"
                  "t.conf:5: admin.address \"localhost:9090\": expected host:port with a numeric "
                  "address\n");
}

static void test_err_types(void **state)
{
    expect_errors(MINIMAL "node = { name = 1; workers = \"2\"; error_log = false; };\n"
                          "timeouts = { header = true; body = 1.5; };\n"
                          "limits = { max_body_size = [1]; };\n"
                          "default_root_object = 0;\n"
                          "response_headers = \"none\";\n",
                  "t.conf:4: node.name: expected a string, got an integer\n"
                  "t.conf:4: node.workers: expected an integer, got a string\n"
                  "t.conf:4: node.error_log: expected a string, got a boolean\n"
                  "t.conf:8: response_headers: expected a group, got a string\n"
                  "t.conf:7: default_root_object: expected a string, got an integer\n"
                  "t.conf:6: limits.max_body_size: expected a size, got an array\n"
                  "t.conf:5: timeouts.header: expected a duration, got a boolean\n"
                  "t.conf:5: timeouts.body: expected a duration, got a float\n");
    expect_errors("listen = { address = \":80\"; };\n" ORIGIN
                  "behaviors = ( \"*\", { path = \"*\"; forward_headers = \"Origin\";\n"
                  "  forward_query = \"yes\"; allowed_methods = [1, 2]; } );\n",
                  "t.conf:1: listen: expected a list of groups ( { ... }, ... ), got a group\n"
                  "t.conf:3: behaviors[0]: expected a group, got a string\n"
                  "t.conf:4: behavior \"*\": allowed_methods[0]: expected a string, got an "
                  "integer\n"
                  "t.conf:4: behavior \"*\": allowed_methods[1]: expected a string, got an "
                  "integer\n"
                  "t.conf:3: behavior \"*\": forward_headers: expected an array of strings, got a "
                  "string\n"
                  "t.conf:4: behavior \"*\": forward_query: expected a boolean, got a string\n");
}

static void test_err_values(void **state)
{
    expect_errors(MINIMAL "limits = {\n  max_header_size = \"1X\";\n  max_url = 10;\n"
                          "  max_body_size = \"99999999999999999999T\";\n};\n"
                          "timeouts = { header = \"30x\"; drain = -1; };\n"
                          "node = { workers = 257; pop = \"a\tb\"; };\n",
                  "t.conf:10: node.pop \"a\tb\": use letters, digits, '.', '-' and '_' only\n"
                  "t.conf:10: node.workers: 257 is out of range (0..256)\n"
                  "t.conf:5: limits.max_header_size \"1X\": not a size (use e.g. 512M, 1G)\n"
                  "t.conf:6: limits.max_url: 10 is out of range (at least 64)\n"
                  "t.conf:7: limits.max_body_size \"99999999999999999999T\": too large\n"
                  "t.conf:9: timeouts.header \"30x\": not a duration (use e.g. 250ms, 30s, 5m, "
                  "1h, 7d)\n"
                  "t.conf:9: timeouts.drain: -1 is out of range (0s..365d)\n");
    /* a quoted number has no unit: rejected rather than guessed */
    expect_errors(MINIMAL "timeouts = { body = \"30\"; };\n",
                  "t.conf:4: timeouts.body \"30\": not a duration (use e.g. 250ms, 30s, 5m, 1h, "
                  "7d)\n");
    expect_errors(MINIMAL "default_root_object = \"/index.html\";\n",
                  "t.conf:4: default_root_object \"/index.html\": expected an object name like "
                  "\"index.html\" (no leading '/')\n");
}

static void test_err_listen(void **state)
{
    expect_errors("listen = (\n  { address = \"127.0.0.1:8443\"; tls = true; },\n"
                  "  { address = \"localhost:80\"; },\n  { tls = false; },\n"
                  "  { address = \"127.0.0.1:8443\"; } );\n" ORIGIN CATCHALL,
                  "t.conf:3: listen \"localhost:80\": address: expected a numeric \"ip:port\", "
                  "\"[ipv6]:port\" or \":port\"\n"
                  "t.conf:4: missing required setting \"address\" in listen[2]\n"
                  "t.conf:5: listen \"127.0.0.1:8443\": duplicate listen address\n"
                  "t.conf:1: listen: a TLS listener needs tls.certificates\n");
}

static void test_err_missing_sections(void **state)
{
    expect_errors("node = { name = \"x\"; };\n",
                  "t.conf: missing required setting \"listen\"\n"
                  "t.conf: missing required setting \"origins\"\n"
                  "t.conf: missing required setting \"behaviors\"\n");
    expect_errors("listen = ();\norigins = ();\nbehaviors = ();\n",
                  "t.conf:1: listen: must not be empty\n"
                  "t.conf:2: origins: must not be empty\n"
                  "t.conf:3: behaviors: must not be empty\n");
}

static void test_err_origins(void **state)
{
    expect_errors(LISTEN
                  "origins = (\n"
                  "  { name = \"books\"; type = \"s3\"; endpoint = \"ftp://x\"; credentials = "
                  "\"file\";\n"
                  "    imds_endpoint = \"http://x\"; connect_timeout = \"30s\"; attempts = 4; },\n"
                  "  { name = \"books\"; type = \"http\"; endpoint = \"http://h/\"; bucket = "
                  "\"b\";\n"
                  "    region = \"r\"; credentials = \"env\"; },\n"
                  "  { type = \"gopher\"; endpoint = \"http://x\"; credentials = \"key\"; },\n"
                  "  { name = \"\"; type = \"s3\"; bucket = \"\"; path_style = false; "
                  "credentials = \"env\";\n"
                  "    credentials_file = \"/f\"; credentials_profile = \"p\"; } );\n" CATCHALL,
                  "t.conf:3: origin \"books\": endpoint \"ftp://x\": expected an http:// or "
                  "https:// URL\n"
                  "t.conf:3: missing required setting \"bucket\" in origin \"books\"\n"
                  "t.conf:4: origin \"books\": imds_endpoint is only valid with credentials = "
                  "\"imds\"\n"
                  "t.conf:3: missing required setting \"credentials_file\" in origin \"books\"\n"
                  "t.conf:4: origin \"books\": connect_timeout: \"30s\" is out of range "
                  "(1s..10s)\n"
                  "t.conf:4: origin \"books\": attempts: 4 is out of range (1..3)\n"
                  "t.conf:5: origin \"books\": bucket is only valid for s3 origins\n"
                  "t.conf:6: origin \"books\": region is only valid for s3 origins\n"
                  "t.conf:6: origin \"books\": credentials \"env\": http origins only support "
                  "\"none\"\n"
                  "t.conf:5: origin \"books\": duplicate origin name\n"
                  "t.conf:7: missing required setting \"name\" in origins[2]\n"
                  "t.conf:7: origins[2]: type \"gopher\": expected \"s3\" or \"http\"\n"
                  "t.conf:7: origins[2]: credentials \"key\": expected \"env\", \"file\", "
                  "\"imds\" or \"none\"\n"
                  "t.conf:8: origins[3]: name must not be empty\n"
                  "t.conf:8: missing required setting \"endpoint\" in origins[3]\n"
                  "t.conf:8: origins[3]: bucket may only be empty with path_style = true\n"
                  "t.conf:9: origins[3]: credentials_file is only valid with credentials = "
                  "\"file\"\n"
                  "t.conf:9: origins[3]: credentials_profile is only valid with credentials = "
                  "\"file\"\n");
}

static void test_err_behaviors(void **state)
{
    expect_errors(MINIMAL "behaviors = ();\n", "t.conf:4: duplicate setting name\n");
    expect_errors(LISTEN ORIGIN
                  "behaviors = (\n"
                  "  { path = \"*.pdf\"; origin = \"bookz\"; },\n"
                  "  { path = \"*.epub\"; allowed_methods = [\"GET\", \"get\"]; },\n"
                  "  { path = \"*.txt\"; allowed_methods = [\"GET\", \"OPTIONS\"]; },\n"
                  "  { path = \"/a\"; min_ttl = 100; default_ttl = 10; },\n"
                  "  { path = \"/b\"; default_ttl = \"1500ms\"; max_ttl = \"1X\"; },\n"
                  "  { path = \"*.pdf\"; forward_headers = [\"Bad Header\"]; },\n"
                  "  { path = \"x\";\n"
                  "    response_headers = { custom = ( { name = \"X A\"; value = \"v\"; },\n"
                  "                                    { value = \"x\"; } ); }; },\n"
                  "  { path = \"\"; },\n"
                  "  { path = \"/last\"; } );\n",
                  "t.conf:4: behavior \"*.pdf\": unknown origin \"bookz\"\n"
                  "t.conf:5: behavior \"*.epub\": allowed_methods: unknown method \"get\"\n"
                  "t.conf:6: behavior \"*.txt\": allowed_methods must include GET and HEAD\n"
                  "t.conf:7: behavior \"/a\": TTLs must satisfy min_ttl <= default_ttl <= "
                  "max_ttl (got 100, 10, 31536000)\n"
                  "t.conf:8: behavior \"/b\": default_ttl \"1500ms\": TTLs are whole seconds\n"
                  "t.conf:8: behavior \"/b\": max_ttl \"1X\": not a duration (use e.g. 250ms, "
                  "30s, 5m, 1h, 7d)\n"
                  "t.conf:9: behavior \"*.pdf\": forward_headers: \"Bad Header\" is not a valid "
                  "header name\n"
                  "t.conf:9: behavior \"*.pdf\": duplicate path pattern (first at line 4)\n"
                  "t.conf:10: behavior \"x\": path must start with '/' or '*'\n"
                  "t.conf:11: behavior \"x\": response_headers.custom[0]: name \"X A\": not a "
                  "valid header name\n"
                  "t.conf:12: missing required setting \"name\" in behavior \"x\": "
                  "response_headers.custom[1]\n"
                  "t.conf:13: behavior \"\": path must not be empty\n"
                  "t.conf:14: behaviors: the last behavior must have path \"*\"\n");
}

static void test_err_headers(void **state)
{
    expect_errors(MINIMAL "response_headers = { frame_options = \"DENY\\r\\nX: y\";\n"
                          "  custom = ( { name = \"X-A\"; value = \"a\\nb\"; }, 3 ); };\n",
                  "t.conf:4: response_headers.frame_options: contains a control character\n"
                  "t.conf:5: response_headers.custom[0]: value: contains a control character\n"
                  "t.conf:5: response_headers.custom[1]: expected a group, got an integer\n");
}

/* Everything wrong in one file is reported in one run, and nothing leaks. */
static void test_multiple_errors(void **state)
{
    expect_errors("node = { workerz = 2; };\n"
                  "listen = ( { address = \"1.2.3.4\"; } );\n"
                  "origins = ( { name = \"books\"; type = \"s3\"; endpoint = \"" AWS "\"; "
                  "bucket = \"b\"; } );\n"
                  "behaviors = ( { path = \"*.pdf\"; origin = \"bookz\"; } );\n"
                  "timeouts = { header = true; };\n"
                  "limits = { max_body_size = \"1X\"; };\n",
                  "t.conf:1: unknown key \"workerz\" in node\n"
                  "t.conf:2: listen \"1.2.3.4\": address: expected a numeric \"ip:port\", "
                  "\"[ipv6]:port\" or \":port\"\n"
                  "t.conf:6: limits.max_body_size \"1X\": not a size (use e.g. 512M, 1G)\n"
                  "t.conf:5: timeouts.header: expected a duration, got a boolean\n"
                  "t.conf:4: behavior \"*.pdf\": unknown origin \"bookz\"\n"
                  "t.conf:4: behaviors: the last behavior must have path \"*\"\n");
}

/* ---- value parsers ------------------------------------------------------------------------------
 */

static void test_durations(void **state)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {{"0s", 0},
                {"0ms", 0},
                {"250ms", 250},
                {"1s", 1000},
                {"30s", 30000},
                {"5m", 300000},
                {"1h", 3600000},
                {"7d", 604800000},
                {"007s", 7000},
                {"1000ms", 1000},
                {"18446744073709551615ms", UINT64_MAX}};
    static const char *const bad[] = {"",
                                      "30",
                                      "-1s",
                                      "1.5s",
                                      "30x",
                                      "s",
                                      "ms",
                                      " 30s",
                                      "30s ",
                                      "30S",
                                      "+5s",
                                      "1e3s",
                                      "30sec",
                                      "1h30m",
                                      "5M",
                                      "0x10s",
                                      "18446744073709551616ms",
                                      "18446744073709551615s",
                                      "213503982334601d"};
    uint64_t v;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        v = 12345;
        assert_int_equal(sh_parse_duration_ms(good[i].s, &v), 0);
        assert_true(v == good[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sh_parse_duration_ms(bad[i], &v) != -1) fail_msg("accepted duration \"%s\"", bad[i]);
    }
    assert_int_equal(sh_parse_duration_ms(NULL, &v), -1);
}

static void test_config_durations_and_sizes(void **state)
{
    /* unquoted integers are seconds / bytes; "L" (int64) integers too */
    sh_config *cfg = load_ok(MINIMAL "timeouts = { header = 15; body = 2L; keepalive = \"1h\"; };\n"
                                     "limits = { max_body_size = 4096; max_header_size = 65536L; "
                                     "max_url = \"16K\"; };\n");
    assert_int_equal(cfg->timeouts.header_ms, 15000);
    assert_int_equal(cfg->timeouts.body_ms, 2000);
    assert_int_equal(cfg->timeouts.keepalive_ms, 3600000);
    assert_int_equal(cfg->limits.max_body_size, 4096);
    assert_int_equal(cfg->limits.max_header_size, 65536);
    assert_int_equal(cfg->limits.max_url, 16384);
    sh_config_free(cfg);
}

static void test_sizes(void **state)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {{"0", 0},
                {"512", 512},
                {"512B", 512},
                {"512b", 512},
                {"20K", 20480},
                {"20k", 20480},
                {"20KB", 20480},
                {"20KiB", 20480},
                {"20kib", 20480},
                {"1M", 1048576},
                {"1mb", 1048576},
                {"1G", 1073741824},
                {"1T", 1099511627776ULL},
                {"16777215T", 16777215ULL << 40},
                {"18446744073709551615", UINT64_MAX}};
    static const char *const bad[] = {"",
                                      "1X",
                                      "-1",
                                      "1.5K",
                                      "K",
                                      "1 K",
                                      " 1K",
                                      "1K ",
                                      "1iB",
                                      "1Ki",
                                      "1KiBB",
                                      "1KBB",
                                      "1P",
                                      "+1",
                                      "0x10",
                                      "16777216T",
                                      "18446744073709551616",
                                      "1e3"};
    uint64_t v;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        v = 12345;
        assert_int_equal(sh_parse_size(good[i].s, &v), 0);
        assert_true(v == good[i].v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sh_parse_size(bad[i], &v) != -1) fail_msg("accepted size \"%s\"", bad[i]);
    }
    assert_int_equal(sh_parse_size(NULL, &v), -1);
}

static void test_addresses(void **state)
{
    static const char *const bad[] = {"",
                                      "1.2.3.4",
                                      "1.2.3.4:",
                                      "1.2.3.4:0",
                                      "1.2.3.4:65536",
                                      "1.2.3.4:80x",
                                      "localhost:80",
                                      "::1:80",
                                      "[::1]",
                                      "[::1]80",
                                      "[1.2.3.4]:80",
                                      "1.2.3:80",
                                      "1.2.3.4:+80",
                                      "1.2.3.4: 80",
                                      "[]:80",
                                      "1.2.3.4:000080",
                                      "[::1:80",
                                      "256.1.1.1:80",
                                      ":",
                                      "[fe80::1%eth0]:80"};
    struct sockaddr_storage ss;
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
    struct in6_addr v6;
    socklen_t len;

    assert_int_equal(sh_parse_address("1.2.3.4:80", &ss, &len), 0);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(ntohs(s4->sin_port), 80);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), 0x01020304);

    assert_int_equal(sh_parse_address(":443", &ss, &len), 0);
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(s4->sin_addr.s_addr, htonl(INADDR_ANY));
    assert_int_equal(ntohs(s4->sin_port), 443);

    assert_int_equal(sh_parse_address("0.0.0.0:65535", &ss, &len), 0);
    assert_int_equal(ntohs(s4->sin_port), 65535);

    assert_int_equal(sh_parse_address("[::1]:80", &ss, &len), 0);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(s6->sin6_port), 80);
    assert_memory_equal(&s6->sin6_addr, &in6addr_loopback, sizeof v6);

    assert_int_equal(sh_parse_address("[2001:db8::7]:8080", &ss, &len), 0);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", &v6), 1);
    assert_memory_equal(&s6->sin6_addr, &v6, sizeof v6);
    assert_int_equal(ntohs(s6->sin6_port), 8080);

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sh_parse_address(bad[i], &ss, &len) != -1) fail_msg("accepted address \"%s\"", bad[i]);
    }
    assert_int_equal(sh_parse_address(NULL, &ss, &len), -1);
}

static void test_method_bits(void **state)
{
    assert_int_equal(sh_method_bit("GET", 3), SH_M_GET);
    assert_int_equal(sh_method_bit("HEAD", 4), SH_M_HEAD);
    assert_int_equal(sh_method_bit("OPTIONS", 7), SH_M_OPTIONS);
    assert_int_equal(sh_method_bit("PUT", 3), SH_M_PUT);
    assert_int_equal(sh_method_bit("POST", 4), SH_M_POST);
    assert_int_equal(sh_method_bit("PATCH", 5), SH_M_PATCH);
    assert_int_equal(sh_method_bit("DELETE", 6), SH_M_DELETE);
    assert_int_equal(sh_method_bit("GETX", 3), SH_M_GET); /* length-delimited */
    assert_int_equal(sh_method_bit("get", 3), 0);
    assert_int_equal(sh_method_bit("GETX", 4), 0);
    assert_int_equal(sh_method_bit("GE", 2), 0);
    assert_int_equal(sh_method_bit("TRACE", 5), 0);
    assert_int_equal(sh_method_bit("", 0), 0);
}

/* ---- edge security groups ------------------------------------------------------------------- */

static void test_edge_defaults(void **state)
{
    sh_config *cfg = load_ok(MINIMAL);
    const sh_behavior_conf *b = &cfg->behaviors[0];

    assert_string_equal(cfg->tls.policy, "TLSv1.2_2021");
    assert_int_equal(cfg->tls.ncerts, 0);
    assert_int_equal(cfg->tls.session_tickets, 1);
    assert_int_equal(cfg->tls.ticket_rotate_ms, 3600000);
    assert_int_equal(cfg->tls.session_timeout_ms, 300000);
    assert_int_equal(cfg->trusted.ncidrs, 0);
    assert_string_equal(cfg->trusted.header, "X-Forwarded-For");
    assert_int_equal(cfg->trusted.use_first, 0);
    assert_int_equal(cfg->trusted.viewer_address, 1);
    assert_string_equal(cfg->trusted.country_header, "");
    assert_int_equal(cfg->signed_urls.nkeys, 0);
    assert_string_equal(cfg->sigv4.region, "us-east-1");
    assert_string_equal(cfg->sigv4.service, "s3");
    assert_int_equal(cfg->sigv4.max_skew_ms, 900000);
    assert_int_equal(cfg->geo.mode, SH_GEO_NONE);
    assert_string_equal(cfg->geo.database, "");
    assert_int_equal(cfg->rate_limit.enabled, 0);
    assert_int_equal(cfg->rate_limit.limit, 2000);
    assert_int_equal(cfg->rate_limit.window_s, 300);
    assert_int_equal(cfg->rate_limit.status, 403);
    assert_int_equal(cfg->waf.enabled, 1);
    assert_int_equal(cfg->waf.max_uri, 8192);
    assert_int_equal(cfg->waf.block_traversal, 1);
    assert_int_equal(cfg->waf.allow_encoded_slash, 0);
    assert_true(cfg->waf.methods & SH_M_GET);
    assert_int_equal(b->viewer_protocol, SH_VIEWER_ALLOW_ALL);
    assert_int_equal(b->signed_mode, SH_SIGNED_NONE);
    assert_int_equal(b->compress, 0);
    assert_int_equal(b->cors.enabled, 0);
    assert_int_equal(b->cached_methods, SH_M_GET | SH_M_HEAD);
    sh_config_free(cfg);
}

/* Key material made with the openssl CLI into a fresh directory. */
static char keydir[64];

static int make_keys(void **state)
{
    char cmd[1024];
    snprintf(keydir, sizeof keydir, "/tmp/shield-test-keys-XXXXXX");
    if (!mkdtemp(keydir)) return -1;
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout a.key -out a.crt "
             "-days 2 -subj /CN=a.test >/dev/null 2>&1 && "
             "openssl genrsa -out other.key 2048 >/dev/null 2>&1 && "
             "openssl rsa -in a.key -pubout -out a.pub >/dev/null 2>&1 && "
             "openssl ecparam -name prime256v1 -genkey -noout -out e.key >/dev/null 2>&1 && "
             "openssl ec -in e.key -pubout -out e.pub >/dev/null 2>&1 && "
             "openssl ecparam -name secp384r1 -genkey -noout -out p384.key >/dev/null 2>&1 && "
             "openssl ec -in p384.key -pubout -out p384.pub >/dev/null 2>&1 && "
             "printf 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\\n' > secret && : > empty",
             keydir);
    return system(cmd) == 0 ? 0 : -1;
}

static int rm_keys(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", keydir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *with_dir(const char *text)
{
    return replace_all(text, "@", keydir);
}

static void test_edge_full(void **state)
{
    char *text = with_dir(
        "listen = ( { address = \"127.0.0.1:8080\"; }, { address = \"127.0.0.1:8443\"; "
        "tls = true; } );\n" ORIGIN
        "tls = { certificates = ( { cert = \"@/a.crt\"; key = \"@/a.key\"; } ); "
        "session_tickets = false; ticket_rotate = \"30m\"; session_timeout = \"10m\"; };\n"
        "trusted_proxies = { cidrs = [\"10.0.0.0/8\", \"::1\"]; header = \"X-Real-Forwarded\"; "
        "position = \"first\"; viewer_address = false; country_header = "
        "\"CloudFront-Viewer-Country\"; };\n"
        "signed_urls = { key_groups = ( { id = \"K2JCJMDEHXQW5F\"; public_key = \"@/a.pub\"; }, "
        "{ id = \"KEC\"; public_key = \"@/e.pub\"; } ); };\n"
        "sigv4 = { region = \"eu-west-1\"; max_skew = \"5m\"; keys = ( { access_key = \"AK1\"; "
        "secret = \"s1\"; }, { access_key = \"AK2\"; secret_file = \"@/secret\"; } ); };\n"
        "geo = { database = \"@/a.pub\"; mode = \"blocklist\"; countries = [\"fr\", \"DE\"]; };\n"
        "rate_limit = { limit = 100; window = 60; key = \"forwarded_ip\"; header = \"X-Client\"; "
        "fallback = \"match\"; status = 429; max_clients = \"10K\"; };\n"
        "waf = { allowed_methods = [\"GET\", \"HEAD\"]; max_uri = 1024; max_query = 0; "
        "block_traversal = false; allow_encoded_slash = true; };\n"
        "behaviors = ( { path = \"*.epub\"; viewer_protocol = \"redirect-to-https\"; signed = "
        "\"cloudfront\"; compress = true; cors = { allow_origins = [\"https://r.example\"]; "
        "allow_methods = [\"GET\", \"HEAD\", \"OPTIONS\"]; expose_headers = [\"ETag\"]; max_age = "
        "60; allow_credentials = true; }; },\n"
        "  { path = \"/m/*\"; viewer_protocol = \"https-only\"; signed = \"sigv4\"; },\n"
        "  { path = \"*\"; } );\n");
    sh_config *cfg = load_ok(text);
    free(text);
    uint8_t ip[16];

    assert_int_equal(cfg->listen[1].tls, 1);
    assert_int_equal(cfg->tls.ncerts, 1);
    assert_int_equal(cfg->tls.session_tickets, 0);
    assert_int_equal(cfg->tls.ticket_rotate_ms, 1800000);
    assert_int_equal(cfg->trusted.ncidrs, 2);
    assert_int_equal(sh_ip_parse("10.1.2.3", 8, ip), 0);
    assert_true(sh_cidr_match_any(cfg->trusted.cidrs, cfg->trusted.ncidrs, ip));
    assert_int_equal(sh_ip_parse("::1", 3, ip), 0);
    assert_true(sh_cidr_match_any(cfg->trusted.cidrs, cfg->trusted.ncidrs, ip));
    assert_int_equal(sh_ip_parse("11.0.0.1", 8, ip), 0);
    assert_false(sh_cidr_match_any(cfg->trusted.cidrs, cfg->trusted.ncidrs, ip));
    assert_string_equal(cfg->trusted.header, "X-Real-Forwarded");
    assert_int_equal(cfg->trusted.use_first, 1);
    assert_int_equal(cfg->trusted.viewer_address, 0);
    assert_int_equal(cfg->signed_urls.nkeys, 2);
    assert_string_equal(cfg->signed_urls.keys[0].id, "K2JCJMDEHXQW5F");
    assert_non_null(cfg->signed_urls.keys[0].pkey);
    assert_non_null(cfg->signed_urls.keys[1].pkey);
    assert_string_equal(cfg->sigv4.region, "eu-west-1");
    assert_int_equal(cfg->sigv4.max_skew_ms, 300000);
    assert_int_equal(cfg->sigv4.nkeys, 2);
    assert_string_equal(cfg->sigv4.keys[0].secret, "s1");
    assert_string_equal(cfg->sigv4.keys[1].secret, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    assert_int_equal(cfg->geo.mode, SH_GEO_BLOCKLIST);
    assert_int_equal(cfg->geo.ncountries, 2);
    assert_memory_equal(cfg->geo.countries[0], "FR", 3);
    assert_int_equal(cfg->rate_limit.enabled, 1);
    assert_int_equal(cfg->rate_limit.limit, 100);
    assert_int_equal(cfg->rate_limit.window_s, 60);
    assert_int_equal(cfg->rate_limit.forwarded, 1);
    assert_int_equal(cfg->rate_limit.fallback_match, 1);
    assert_int_equal(cfg->rate_limit.status, 429);
    assert_int_equal(cfg->rate_limit.max_clients, 10240);
    assert_int_equal(cfg->waf.methods, SH_M_GET | SH_M_HEAD);
    assert_int_equal(cfg->waf.max_uri, 1024);
    assert_int_equal(cfg->waf.max_query, 0);
    assert_int_equal(cfg->waf.block_traversal, 0);
    assert_int_equal(cfg->waf.allow_encoded_slash, 1);
    const sh_behavior_conf *b = &cfg->behaviors[0];
    assert_int_equal(b->viewer_protocol, SH_VIEWER_REDIRECT);
    assert_int_equal(b->signed_mode, SH_SIGNED_CLOUDFRONT);
    assert_int_equal(b->compress, 1);
    assert_int_equal(b->cors.enabled, 1);
    assert_int_equal(b->cors.nallow_origins, 1);
    assert_string_equal(b->cors.allow_methods, "GET, HEAD, OPTIONS");
    assert_string_equal(b->cors.allow_headers, "");
    assert_string_equal(b->cors.expose_headers, "ETag");
    assert_int_equal(b->cors.max_age, 60);
    assert_int_equal(b->cors.allow_credentials, 1);
    assert_int_equal(cfg->behaviors[1].viewer_protocol, SH_VIEWER_HTTPS_ONLY);
    assert_int_equal(cfg->behaviors[1].signed_mode, SH_SIGNED_SIGV4);
    sh_config_free(cfg);
}

static void expect_errors_dir(const char *text, const char *expected)
{
    char *t = with_dir(text), *e = with_dir(expected);
    expect_errors(t, e);
    free(t);
    free(e);
}

static void test_err_edge(void **state)
{
    expect_errors_dir(
        MINIMAL "tls = { policy = \"TLSv1.1_2016\"; certificates = (\n"
                "  { cert = \"@/missing.crt\"; key = \"@/a.key\"; },\n"
                "  { cert = \"@/a.crt\"; key = \"@/other.key\"; } ); };\n",
        "t.conf:4: tls.policy \"TLSv1.1_2016\": only \"TLSv1.2_2021\" is supported\n"
        "t.conf:5: tls.certificates[0]: cert \"@/missing.crt\": cannot open: No such file or "
        "directory\n"
        "t.conf:6: tls.certificates[1]: key \"@/other.key\" does not match cert \"@/a.crt\"\n");
    char *errs;
    char *t = with_dir(MINIMAL "tls = { certificates = ( { cert = \"@/a.key\"; key = "
                               "\"@/a.key\"; } ); };\n");
    assert_null(load_text(t, &errs));
    assert_non_null(strstr(errs, "t.conf:4: tls.certificates[0]: cert \""));
    free(errs);
    free(t);

    expect_errors_dir(
        MINIMAL "trusted_proxies = { cidrs = [\"10.0.0.0/33\", \"x\", \"1.2.3.4/8\"]; "
                "position = \"middle\"; header = \"X Forwarded\"; };\n",
        "t.conf:4: trusted_proxies.cidrs: \"10.0.0.0/33\" is not an address or CIDR range\n"
        "t.conf:4: trusted_proxies.cidrs: \"x\" is not an address or CIDR range\n"
        "t.conf:4: trusted_proxies.header \"X Forwarded\": not a header name\n"
        "t.conf:4: trusted_proxies.position \"middle\": expected one of \"last-untrusted\", "
        "\"first\"\n");
    expect_errors_dir(MINIMAL "signed_urls = { key_groups = (\n"
                              "  { id = \"K1\"; public_key = \"@/missing.pub\"; },\n"
                              "  { id = \"K2\"; public_key = \"@/empty\"; },\n"
                              "  { id = \"K3\"; public_key = \"@/p384.pub\"; },\n"
                              "  { id = \"K4\"; public_key = \"@/a.pub\"; },\n"
                              "  { id = \"K4\"; public_key = \"@/a.pub\"; } ); };\n",
                      "t.conf:5: key \"K1\": public_key \"@/missing.pub\": cannot open: No such "
                      "file or directory\n"
                      "t.conf:6: key \"K2\": public_key \"@/empty\": not a PEM public key (BEGIN "
                      "PUBLIC KEY): error:1E08010C:DECODER routines::unsupported\n"
                      "t.conf:7: key \"K3\": public_key \"@/p384.pub\": expected an RSA or ECDSA "
                      "P-256 key\n"
                      "t.conf:9: key \"K4\": duplicate key id\n");
    expect_errors_dir(MINIMAL
                      "sigv4 = { keys = (\n"
                      "  { access_key = \"A\"; secret = \"s\"; secret_file = \"@/secret\"; },\n"
                      "  { access_key = \"B\"; },\n"
                      "  { access_key = \"C\"; secret_file = \"@/empty\"; } ); };\n",
                      "t.conf:5: access key \"A\": use secret or secret_file, not both\n"
                      "t.conf:6: missing required setting \"secret_file\" in access key \"B\"\n"
                      "t.conf:7: access key \"C\": secret_file \"@/empty\": empty\n");
    expect_errors_dir(MINIMAL "geo = { mode = \"allowlist\"; countries = [\"FRA\"]; };\n"
                              "rate_limit = { limit = 5; window = 90; status = 200; key = "
                              "\"cookie\"; };\n"
                              "waf = { allowed_methods = [\"GET\", \"TRACE\"]; };\n",
                      "t.conf:4: geo.countries: \"FRA\" is not an ISO 3166-1 alpha-2 code\n"
                      "t.conf:4: geo: mode \"allowlist\" needs a database\n"
                      "t.conf:5: rate_limit.limit: 5 is out of range (10..2000000000)\n"
                      "t.conf:5: rate_limit.window: must be 60, 120, 300 or 600 seconds\n"
                      "t.conf:5: rate_limit.key \"cookie\": expected one of \"ip\", "
                      "\"forwarded_ip\"\n"
                      "t.conf:5: rate_limit.status: 200 is out of range (400..599)\n"
                      "t.conf:6: waf.allowed_methods: unknown method \"TRACE\"\n");
    expect_errors_dir(
        LISTEN ORIGIN
        "behaviors = (\n"
        "  { path = \"/a/*\"; viewer_protocol = \"redirect-to-https\"; signed = \"cloudfront\"; "
        "},\n"
        "  { path = \"/b/*\"; viewer_protocol = \"https\"; signed = \"sigv4\"; },\n"
        "  { path = \"/c/*\"; cors = { allow_origins = [\"*\"]; allow_credentials = true; }; },\n"
        "  { path = \"/d/*\"; cors = { max_age = 5; }; },\n"
        "  { path = \"*\"; } );\n",
        "t.conf:5: behavior \"/b/*\": viewer_protocol \"https\": expected one of \"allow-all\", "
        "\"redirect-to-https\", \"https-only\"\n"
        "t.conf:6: behavior \"/c/*\": cors: allow_credentials cannot be used with allow_origins "
        "\"*\"\n"
        "t.conf:7: missing required setting \"allow_origins\" in behavior \"/d/*\" cors\n"
        "t.conf:4: behavior \"/a/*\": viewer_protocol \"redirect-to-https\" needs a listener with "
        "tls = true\n"
        "t.conf:4: behavior \"/a/*\": signed = \"cloudfront\" needs signed_urls.key_groups\n"
        "t.conf:5: behavior \"/b/*\": signed = \"sigv4\" needs sigv4.keys\n");
    expect_errors(
        LISTEN ORIGIN "behaviors = (\n"
                      "  { path = \"/e/*\"; cached_methods = [\"GET\"]; },\n"
                      "  { path = \"/f/*\"; allowed_methods = [\"GET\", \"HEAD\"];\n"
                      "    cached_methods = [\"GET\", \"HEAD\", \"OPTIONS\"]; },\n"
                      "  { path = \"*\"; cached_methods = [\"GET\", \"HEAD\", \"OPTIONS\"]; } );\n",
        "t.conf:4: behavior \"/e/*\": cached_methods: expected [\"GET\", \"HEAD\"] or "
        "[\"GET\", \"HEAD\", \"OPTIONS\"]\n"
        "t.conf:6: behavior \"/f/*\": cached_methods: OPTIONS is not in allowed_methods\n");
}

static void test_free_null(void **state)
{
    sh_config_free(NULL);
}

/* admin.token_file: the token is the trimmed first line; errors carry file:line. */
static void test_admin_token_file(void **state)
{
    char dir[] = "/tmp/shield-test-token-XXXXXX", path[128], text[512], want[512];
    assert_non_null(mkdtemp(dir));
    static const struct {
        const char *name, *content, *why; /* content NULL: the file does not exist */
    } cases[] = {
        {"ok", "  s3cr3t-T0ken \nignored second line\n", NULL},
        {"missing", NULL, "cannot open: No such file or directory"},
        {"empty", "", "empty (the token is the first line)"},
        {"blank", " \t\n\nnot-the-first-line\n", "empty (the token is the first line)"},
        {"space", "two words\n", "the token must be visible ASCII without spaces"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name);
        if (cases[i].content) {
            FILE *f = fopen(path, "w");
            assert_non_null(f);
            fputs(cases[i].content, f);
            fclose(f);
        }
        snprintf(text, sizeof text,
                 MINIMAL "admin = {\n  address = \"127.0.0.1:9090\";\n  token_file = \"%s\";\n};\n",
                 path);
        if (!cases[i].why) {
            sh_config *cfg = load_ok(text);
            assert_string_equal(cfg->admin.token_file, path);
            assert_string_equal(cfg->admin.token, "s3cr3t-T0ken");
            sh_config_free(cfg);
            continue;
        }
        snprintf(want, sizeof want, "t.conf:6: admin.token_file \"%s\": %s\n", path, cases[i].why);
        expect_errors(text, want);
    }
    /* Longer than a line buffer: refused, not cut. */
    snprintf(path, sizeof path, "%s/long", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 5000; i++)
        fputc('a', f);
    fclose(f);
    snprintf(text, sizeof text, MINIMAL "admin = { token_file = \"%s\"; };\n", path);
    snprintf(want, sizeof want,
             "t.conf:4: admin.token_file \"%s\": first line longer than 4096 bytes\n", path);
    expect_errors(text, want);
    /* Default: no token, the API is open. */
    sh_config *cfg =
        load_ok(MINIMAL "admin = { address = \"127.0.0.1:9090\"; token_file = \"\"; };\n");
    assert_string_equal(cfg->admin.token_file, "");
    assert_null(cfg->admin.token);
    sh_config_free(cfg);
    snprintf(text, sizeof text, "rm -rf %s", dir);
    assert_int_equal(system(text), 0);
}

/* ---- counts, forwarded headers --------------------------------------------------------------- */

/*
 * forward_headers naming a hop-by-hop or framing header forwarded nothing (the
 * proxy drops them) and only split the cache key on it: refused, case-insensitively.
 */
static void test_err_forward_headers_never_forwarded(void **state)
{
    static const char *const hop[] = {"Transfer-Encoding",
                                      "connection",
                                      "KEEP-ALIVE",
                                      "Proxy-Connection",
                                      "te",
                                      "Trailer",
                                      "Upgrade",
                                      "Proxy-Authorization",
                                      "Proxy-Authenticate",
                                      "HTTP2-Settings"};
    static const char *const own[] = {"Content-Length",  "host", "Expect",
                                      "X-Forwarded-For", "Via",  "X-Request-Id"};
    char text[512], want[512];

    for (size_t i = 0; i < sizeof hop / sizeof hop[0] + sizeof own / sizeof own[0]; i++) {
        int is_hop = i < sizeof hop / sizeof hop[0];
        const char *h = is_hop ? hop[i] : own[i - sizeof hop / sizeof hop[0]];
        snprintf(text, sizeof text,
                 LISTEN ORIGIN "behaviors = ( { path = \"*\";\n"
                               "  forward_headers = [\"Origin\",\n  \"%s\"]; } );\n",
                 h);
        snprintf(want, sizeof want,
                 "t.conf:5: behavior \"*\": forward_headers: \"%s\" is %s and is never forwarded\n",
                 h, is_hop ? "a hop-by-hop header" : "written by Shield itself");
        expect_errors(text, want);
    }
    sh_config *cfg =
        load_ok(LISTEN ORIGIN "behaviors = ( { path = \"*\"; forward_headers = "
                              "[\"Origin\", \"X-Host\", \"TE-X\", \"Accept\"]; } );\n");
    assert_int_equal(cfg->behaviors[0].nforward_headers, 4);
    sh_config_free(cfg);
}

/* Count keys said "not a size (use e.g. 512M, 1G)" and "expected a size". */
static void test_err_count_messages(void **state)
{
    expect_errors(MINIMAL "limits = {\n  max_connections = \"lots\";\n  max_headers = [100];\n"
                          "  max_requests_per_connection = 1.5;\n};\n"
                          "rate_limit = { max_clients = 10; };\n"
                          "node = { workers = \"4\"; };\n",
                  "t.conf:10: node.workers: expected an integer, got a string\n"
                  "t.conf:6: limits.max_headers: expected a count, got an array\n"
                  "t.conf:5: limits.max_connections \"lots\": not a count (use e.g. 10000 or "
                  "\"10K\")\n"
                  "t.conf:7: limits.max_requests_per_connection: expected a count, got a float\n"
                  "t.conf:9: rate_limit.max_clients: 10 is out of range (1024..100000000)\n");
    expect_errors(MINIMAL "limits = { max_connections = 0; };\n",
                  "t.conf:4: limits.max_connections: 0 is out of range (at least 1)\n");
    /* still a count in the size syntax */
    sh_config *cfg = load_ok(MINIMAL "limits = { max_connections = \"10K\"; };\n");
    assert_int_equal(cfg->limits.max_connections, 10240);
    sh_config_free(cfg);
}

/* ---- found by tests/fuzz/fuzz_config.c ------------------------------------------------------ */

/* A quoted value holding a newline split its message over two lines of output. */
static void test_err_control_bytes_escaped_in_messages(void **state)
{
    expect_errors(MINIMAL "node = { name = \"a\\nb\"; pop = \"c\\r\\x1bd\\x7f\"; };\n"
                          "trusted_proxies = { header = \"X\tY\"; };\n",
                  "t.conf:4: node.name \"a\\nb\": use letters, digits, '.', '-' and '_' only\n"
                  "t.conf:4: node.pop \"c\\r\\x1bd\\x7f\": use letters, digits, '.', '-' and '_' "
                  "only\n"
                  "t.conf:5: trusted_proxies.header \"X\tY\": not a header name\n");
}

/*
 * libconfig fopen()s an @include target and its scanner calls exit(2) when the
 * read fails, as it does on a directory: `shield -t` died with "input in flex
 * scanner failed". Such targets, nested ones too, are refused as file:line.
 */
static void test_err_include_not_a_file(void **state)
{
    char inc[] = "/tmp/shield-test-include-XXXXXX", fifo[64], text[512], want[512], *errs, *named;
    int fd = mkstemp(inc);
    sh_config *cfg;
    FILE *f;

    expect_errors(MINIMAL "@include \".\"\n", "t.conf:4: @include \".\": is a directory\n");
    expect_errors(MINIMAL "cache = {\n  @include \"..\"\n};\n",
                  "t.conf:5: @include \"..\": is a directory\n");
    /* libconfig would print the backslash and open ".." */
    expect_errors(MINIMAL "@include \".\\.\"\n",
                  "t.conf:4: @include \".\\.\": a backslash must be written \\\\ (or \\\" for "
                  "a quote)\n");
    expect_errors(MINIMAL "@include \"nop\\",
                  "t.conf:4: @include \"nop\\\": a backslash must be written \\\\ (or \\\" for a "
                  "quote)\n");
    /* inside a comment or a string: not an include */
    sh_config *ok = load_ok(MINIMAL "/* \n@include \".\"\n*/ node = { error_log = \"\n"
                                    "@include \\\".\\\"\"; };\n");
    assert_string_equal(ok->error_log, "\n@include \".\"");
    sh_config_free(ok);

    snprintf(fifo, sizeof fifo, "%s.fifo", inc);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f, "# nested\n@include \"/tmp\"\n@include \"%s\"\n", fifo);
    fclose(f);
    snprintf(text, sizeof text, MINIMAL "cache = {\n@include \"%s\"\n};\n", inc);
    cfg = load_text(text, &errs);
    unlink(fifo);
    unlink(inc);
    assert_null(cfg);
    named = replace_all(errs, inc, "inc.conf");
    snprintf(want, sizeof want,
             "inc.conf:2: @include \"/tmp\": is a directory\n"
             "inc.conf:3: @include \"inc.conf.fifo\": not a regular file\n");
    assert_string_equal(named, want);
    free(named);
    free(errs);
}

/* An IPv6 endpoint without its ']' stepped a NULL pointer (UBSan: offset 1 to null pointer). */
static void test_err_endpoint_unclosed_ipv6_bracket(void **state)
{
    expect_errors(LISTEN
                  "origins = ( { name = \"o\"; type = \"http\"; endpoint = \"http://[::1\";\n"
                  "  imds_endpoint = \"http://[fd00:ec2::254/\"; } );\n" CATCHALL,
                  "t.conf:2: origin \"o\": endpoint \"http://[::1\": expected an http:// or "
                  "https:// URL\n"
                  "t.conf:3: origin \"o\": imds_endpoint is only valid with credentials = "
                  "\"imds\"\n"
                  "t.conf:3: origin \"o\": imds_endpoint \"http://[fd00:ec2::254/\": expected an "
                  "http:// or https:// URL\n");
}

/* A syntax error at the end of a file ending in a newline named the line after the last. */
static void test_err_syntax_at_end_of_file_names_last_line(void **state)
{
    expect_errors(MINIMAL "node = \n", "t.conf:4: syntax error\n");
    expect_errors(MINIMAL "node = ", "t.conf:4: syntax error\n");
    expect_errors(MINIMAL "node = {\n\n\n", "t.conf:6: syntax error\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_origin_defaults_by_kind),
        cmocka_unit_test(test_full_round_trip),
        cmocka_unit_test(test_shipped_configs),
        cmocka_unit_test(test_err_cannot_open),
        cmocka_unit_test(test_err_syntax),
        cmocka_unit_test(test_err_unknown_keys),
        cmocka_unit_test(test_cache_and_admin),
        cmocka_unit_test(test_err_types),
        cmocka_unit_test(test_err_values),
        cmocka_unit_test(test_err_listen),
        cmocka_unit_test(test_err_missing_sections),
        cmocka_unit_test(test_err_origins),
        cmocka_unit_test(test_err_behaviors),
        cmocka_unit_test(test_err_headers),
        cmocka_unit_test(test_multiple_errors),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_config_durations_and_sizes),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_method_bits),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_edge_defaults),
        cmocka_unit_test_setup_teardown(test_edge_full, make_keys, rm_keys),
        cmocka_unit_test_setup_teardown(test_err_edge, make_keys, rm_keys),
        cmocka_unit_test(test_admin_token_file),
        cmocka_unit_test(test_err_forward_headers_never_forwarded),
        cmocka_unit_test(test_err_count_messages),
        cmocka_unit_test(test_err_control_bytes_escaped_in_messages),
        cmocka_unit_test(test_err_include_not_a_file),
        cmocka_unit_test(test_err_syntax_at_end_of_file_names_last_line),
        cmocka_unit_test(test_err_endpoint_unclosed_ipv6_bracket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
