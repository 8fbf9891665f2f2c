/*
 * Input rules: a small WAF common rule set (modules/waf.c), run in the SANITY
 * phase before anything else looks at the request.
 *
 * The path and query checkers are pure functions of (config, bytes) so they can
 * be fuzzed and unit-tested without a connection: no allocation survives a call,
 * no global state, same input => same verdict.
 *
 * Every rule has one status and one detailed result type (the access log's
 * x-edge-detailed-result-type), CloudFront's vocabulary where it has a word:
 *
 *   rule            trigger                                         status  detailed result
 *   METHOD          a known method outside waf.allowed_methods        403   InvalidRequestMethod
 *   METHOD_UNKNOWN  a method outside GET..DELETE (PROPFIND, TRACE)    501   InvalidRequestMethod
 *   URI_SIZE        path longer than waf.max_uri bytes                414   InvalidRequest
 *   QUERY_SIZE      query longer than waf.max_query bytes             414   InvalidRequest
 *   HEADER_SIZE     one header value longer than waf.max_header       431   InvalidRequestHeader
 *   BAD_ESCAPE      "%" not followed by two hex digits (path only)    400   InvalidRequest
 *   CONTROL         0x00-0x1f or 0x7f in path or query, raw or %XX    400   InvalidRequest
 *   BACKSLASH       "\" or "%5C" in the path (block_traversal)        403   InvalidRequestBlocked
 *   ENCODED_SLASH   "%2F" in the path (unless allow_encoded_slash)    403   InvalidRequestBlocked
 *   TRAVERSAL       a "." or ".." segment, raw or after up to 3 rounds
 *                   of percent-decoding ("%2e%2e", "%252e%252e",
 *                   "..%2f..") (block_traversal)                      403   InvalidRequestBlocked
 *
 * The sizes and the 4xx statuses match the core's own limits (limits.max_url
 * => 414, limits.max_header_size => 431), which apply to the whole head first.
 */
#ifndef SHIELD_WAF_H
#define SHIELD_WAF_H

#include <stddef.h>

#include "shield/config.h"

typedef enum {
    SH_WAF_PASS = 0,
    SH_WAF_METHOD,
    SH_WAF_METHOD_UNKNOWN,
    SH_WAF_URI_SIZE,
    SH_WAF_QUERY_SIZE,
    SH_WAF_HEADER_SIZE,
    SH_WAF_BAD_ESCAPE,
    SH_WAF_CONTROL,
    SH_WAF_BACKSLASH,
    SH_WAF_ENCODED_SLASH,
    SH_WAF_TRAVERSAL,
    SH_WAF_RULE_COUNT
} sh_waf_rule;

/* Rounds of percent-decoding the traversal rule looks through (1 = "%2e",
 * 2 = "%252e", 3 = "%25252e"). */
#define SH_WAF_DECODE_ROUNDS 3

/*
 * Check a request path (the bytes before '?', as received). Rules are tried in
 * a fixed order, so a path breaking several always gets the same verdict:
 * URI_SIZE, BAD_ESCAPE, CONTROL (the 400s: the request is malformed), then
 * BACKSLASH, ENCODED_SLASH, TRAVERSAL (the 403s: well-formed but refused).
 * Ignores w->enabled (the module checks it).
 */
sh_waf_rule sh_waf_check_path(const sh_waf_conf *w, const char *path, size_t len);

/* Check a query string (the bytes after '?'): QUERY_SIZE, then CONTROL. A
 * malformed escape in a query is passed through (common in the wild, and the
 * origin sees the same bytes). */
sh_waf_rule sh_waf_check_query(const sh_waf_conf *w, const char *query, size_t len);

/* HTTP status of a rule (0 for SH_WAF_PASS). */
int sh_waf_rule_status(sh_waf_rule r);
/* Detailed result type of a rule for the access log (NULL for SH_WAF_PASS). */
const char *sh_waf_rule_detail(sh_waf_rule r);
/* snake_case rule name for the error log ("traversal"). */
const char *sh_waf_rule_name(sh_waf_rule r);

#endif
