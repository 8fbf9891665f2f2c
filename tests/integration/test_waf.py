"""Input rules (modules/waf.c): methods, sizes, control bytes, traversal, encoded slashes.

Every refused request is sent with a valid `GET /canary` behind it on the same
connection: a WAF block is an ordinary answer on a well-framed request, so the
connection stays usable and the canary is answered by the origin, while the refused
request itself never reaches the origin. A refused request with an unread body closes
the connection instead (the body must never be parsed as a request).

Which rule fired is read from the error log (SHIELD_DEBUG=1 prints
"waf rule <name>: <status> (request <X-Request-Id>)"), the count from /stats.
"""

import json
import re

import pytest

from conftest import (ALL_METHODS, Conn, ScriptedOrigin, assert_shield_headers, behavior,
                      fetch, free_port, get, http_origin, port_open, request_bytes, wait_until)

CANARY = b'GET /canary HTTP/1.1\r\nHost: x\r\n\r\n'
HIDDEN = b'GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n'


@pytest.fixture(scope='module')
def o():
    srv = ScriptedOrigin().start()
    yield srv
    srv.stop()


def _start(factory, origin, **over):
    aport = free_port()
    sh = factory([http_origin('o', origin)],
                 [behavior('/rw/*', 'o', allowed_methods=ALL_METHODS), behavior('*', 'o')],
                 env={'SHIELD_DEBUG': '1'}, admin={'address': f'127.0.0.1:{aport}'},
                 # every passing request must reach the origin to be checked there
                 cache={'enabled': False}, **over)
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    sh.admin_port = aport
    return sh


@pytest.fixture(scope='module')
def sh(module_shield, o):
    """The default rules (no `waf` group)."""
    return _start(module_shield, o)


@pytest.fixture(scope='module')
def tight(module_shield, o):
    return _start(module_shield, o, waf={
        'allowed_methods': ['GET', 'HEAD', 'OPTIONS'], 'max_uri': 64, 'max_query': 32,
        'max_header': 128, 'allow_encoded_slash': True})


@pytest.fixture(scope='module')
def off(module_shield, o):
    return _start(module_shield, o, waf={'enabled': False, 'max_uri': 16, 'max_header': 64})


def waf_blocked(sh):
    r = get(sh.admin_port, '/stats')
    assert r.status == 200, r
    return json.loads(r.body)['edge']['waf_blocked']


def rule_logged(sh, r):
    """The rule name the error log gives for response r (None if no WAF line)."""
    rid = re.escape(r.header('X-Request-Id'))
    m = re.search(r'waf rule (\w+): (\d+) \(request ' + rid + r'\)', sh.stderr())
    if not m:
        return None
    assert int(m.group(2)) == r.status, m.group(0)
    return m.group(1)


def refused_keeps_connection(sh, o, data, status, rule):
    """data is refused with status by rule; the canary behind it is answered."""
    n0 = o.count()
    with Conn(sh.port, timeout=5) as c:
        c.send(data + CANARY)
        first = c.read_response()
        assert first is not None, 'closed without an answer'
        assert first.status == status, (first, first.body[:200])
        assert_shield_headers(first, error=True)
        assert rule_logged(sh, first) == rule
        second = c.read_response()
        assert second is not None and second.status == 200, second
        assert second.body == b'origin:/canary'
    assert [q.path for q in o.requests[n0:]] == ['/canary'], o.requests[n0:]
    sh.assert_alive()


# ---- what passes is untouched -----------------------------------------------------------------

PASSING = [
    '/books/the-quiet-harbor.epub',
    '/book%2eepub',            # an encoded dot inside a name is not a dot segment
    '/a/.../b/.hidden/c..d/e.',
    '/caf%C3%A9/%41%42',
    '/100%25/x',
    '/%25zz',                  # "%zz" after one decoding is literal text, not an escape
    '//a///b//',
    '/a+b/c%20d',
]


@pytest.mark.parametrize('path', PASSING)
def test_clean_path_reaches_origin_unchanged(sh, o, path):
    before = waf_blocked(sh)
    n0 = o.count()
    r = get(sh.port, path + '?Expires=1&Signature=a~b-c_&X-Amz-Credential=AK%2F2026%2Fs3')
    assert r.status == 200 and r.body == f'origin:{path}'.encode(), r
    assert o.requests[n0].path == path
    assert waf_blocked(sh) == before


def test_header_value_at_limit_passes(sh, o):
    n0 = o.count()
    r = get(sh.port, '/hv', headers={'X-Pad': 'a' * 8192})
    assert r.status == 200 and r.body == b'origin:/hv'
    assert o.count() == n0 + 1


# ---- refused, connection kept ---------------------------------------------------------------

BLOCKED = [
    # (id, target, status, rule)
    ('dotdot', '/a/../b', 403, 'traversal'),
    ('dot', '/a/./b', 403, 'traversal'),
    ('dotdot_last', '/a/..', 403, 'traversal'),
    ('enc_dotdot', '/a/%2e%2e/b', 403, 'traversal'),
    ('enc_upper_dot', '/a/%2E./b', 403, 'traversal'),
    ('dot_enc', '/a/.%2e/b', 403, 'traversal'),
    ('double_enc', '/a/%252e%252e/b', 403, 'traversal'),
    ('double_enc_upper', '/a/%252E%252E/b', 403, 'traversal'),
    ('double_enc_slash', '/a/..%252f../b', 403, 'traversal'),
    ('backslash_enc', '/a%5c..%5Cb', 403, 'backslash'),
    ('backslash_double_enc', '/a%255cb', 403, 'backslash'),
    ('enc_slash', '/a%2fb', 403, 'encoded_slash'),
    ('enc_slash_upper', '/a%2Fb', 403, 'encoded_slash'),
    ('nul_enc', '/a%00b', 400, 'control'),
    ('crlf_enc', '/a%0d%0aSet-Cookie:%20x=1', 400, 'control'),
    ('esc_enc', '/a%1Bb', 400, 'control'),
    ('del_enc', '/a%7fb', 400, 'control'),
    ('query_nul', '/a?x=%00', 400, 'control'),
    ('query_lf', '/a?x=1%0A', 400, 'control'),
    ('query_del', '/a?x=%7F', 400, 'control'),
]


@pytest.mark.parametrize('target,status,rule', [c[1:] for c in BLOCKED],
                         ids=[c[0] for c in BLOCKED])
def test_refused_path_and_query(sh, o, target, status, rule):
    before = waf_blocked(sh)
    refused_keeps_connection(sh, o, request_bytes('GET', target), status, rule)
    assert waf_blocked(sh) == before + 1


def test_raw_backslash(sh, o):
    """A raw backslash gets past llhttp; the WAF refuses it."""
    refused_keeps_connection(sh, o, b'GET /a\\..\\b HTTP/1.1\r\nHost: x\r\n\r\n', 403,
                             'backslash')


@pytest.mark.parametrize('method', ['PROPFIND', 'TRACE'])
def test_unknown_method_501(sh, o, method):
    refused_keeps_connection(sh, o, request_bytes(method, '/rw/x'), 501, 'method_unknown')


def test_header_value_default_is_the_head_limit(sh, o):
    # By default one header value may use the whole head (limits.max_header_size,
    # 20,480 bytes, as CloudFront); test_max_header covers a tighter rule.
    r = fetch(sh.port, '/hv', headers={'X-Pad': 'a' * 19000})
    assert r.status == 200 and r.body == b'origin:/hv'


def test_head_refused_without_body(sh, o):
    n0 = o.count()
    with Conn(sh.port, timeout=5) as c:
        c.send(request_bytes('HEAD', '/a/../b') + CANARY)
        r = c.read_response(method='HEAD')
        assert r.status == 403 and r.body == b''
        assert c.read_response().body == b'origin:/canary'
    assert [q.path for q in o.requests[n0:]] == ['/canary']


# ---- refused before the body: connection closed ----------------------------------------------

def test_refused_with_unread_body_closes(sh, o):
    """The body carries a complete request: it must never run."""
    n0 = o.count()
    with Conn(sh.port, timeout=5) as c:
        c.send(request_bytes('POST', '/rw/a/../b', body=HIDDEN) + CANARY)
        r = c.read_response()
        assert r.status == 403
        assert rule_logged(sh, r) == 'traversal'
        assert c.closed_within(3), 'connection kept after refusing a request with a body'
    assert not o.requests[n0:], o.requests[n0:]


def test_refused_chunked_body_closes(sh, o):
    n0 = o.count()
    body = b'%x\r\n' % len(HIDDEN) + HIDDEN + b'\r\n0\r\n\r\n'
    with Conn(sh.port, timeout=5) as c:
        c.send(request_bytes('PUT', '/rw/a%2fb', {'Transfer-Encoding': 'chunked'}, body=body)
               + CANARY)
        r = c.read_response()
        assert r.status == 403 and rule_logged(sh, r) == 'encoded_slash'
        assert c.closed_within(3)
    assert not o.requests[n0:]


# ---- what the core refuses first --------------------------------------------------------------

@pytest.mark.parametrize('target', [b'/%', b'/%G1', b'/abc%4', b'/a\x01b', b'/a\x7fb', b'/a\x00b'])
def test_malformed_target_never_reaches_origin(sh, o, target):
    """Malformed escapes and raw control bytes: the core's parser answers 400 (and
    closes) before the WAF runs; the WAF's own BAD_ESCAPE/CONTROL rules stand behind it."""
    n0 = o.count()
    with Conn(sh.port, timeout=5) as c:
        c.send(b'GET ' + target + b' HTTP/1.1\r\nHost: x\r\n\r\n' + CANARY)
        r = c.read_response()
        assert r is not None and r.status == 400, r
        if not c.closed_within(1):
            assert c.read_response().body == b'origin:/canary'
    assert all(q.path == '/canary' for q in o.requests[n0:]), o.requests[n0:]
    sh.assert_alive()


# ---- configured limits and switches ------------------------------------------------------------

def test_method_allowlist_is_global_403(tight, o):
    """DELETE is allowed by the /rw/* behavior but not by waf.allowed_methods."""
    refused_keeps_connection(tight, o, request_bytes('DELETE', '/rw/x'), 403, 'method')
    r = fetch(tight.port, '/rw/x', method='OPTIONS')
    assert r.status == 200 and o.last().method == 'OPTIONS'


def test_method_refused_with_body_closes(tight, o):
    n0 = o.count()
    with Conn(tight.port, timeout=5) as c:
        c.send(request_bytes('POST', '/rw/x', body=HIDDEN) + CANARY)
        r = c.read_response()
        assert r.status == 403 and rule_logged(tight, r) == 'method'
        assert c.closed_within(3)
    assert not o.requests[n0:]


def test_max_uri(tight, o):
    ok = '/' + 'a' * 63
    assert get(tight.port, ok).status == 200
    refused_keeps_connection(tight, o, request_bytes('GET', ok + 'b'), 414, 'uri_size')


def test_max_query(tight, o):
    q = 'q=' + 'x' * 30
    assert get(tight.port, '/q?' + q).status == 200
    refused_keeps_connection(tight, o, request_bytes('GET', '/q?' + q + 'y'), 414, 'query_size')


def test_max_header(tight, o):
    assert get(tight.port, '/h', headers={'X-A': 'v' * 128}).status == 200
    refused_keeps_connection(tight, o, request_bytes('GET', '/h', {'X-A': 'v' * 129}), 431,
                             'header_size')


def test_allow_encoded_slash(tight, o):
    """S3 keys may contain an encoded slash: with the switch on it goes to the origin
    byte for byte, but an encoded slash still cannot build a traversal."""
    n0 = o.count()
    r = get(tight.port, '/dir%2Fbook.epub')
    assert r.status == 200 and o.requests[n0].path == '/dir%2Fbook.epub'
    refused_keeps_connection(tight, o, request_bytes('GET', '/a/..%2f..%2fb'), 403, 'traversal')


def test_disabled_rules_pass_everything(off, o):
    before = waf_blocked(off)
    for target in ['/a%2fb', '/a%00b', '/x' * 20, '/q?x=%00']:
        n0 = o.count()
        r = get(off.port, target)
        assert r.status == 200, (target, r)
        assert len(o.requests) == n0 + 1
        assert rule_logged(off, r) is None
    assert get(off.port, '/h', headers={'X-A': 'v' * 100}).status == 200
    # an unknown method is then the behavior's to refuse
    assert fetch(off.port, '/x', method='PROPFIND').status == 405
    assert waf_blocked(off) == before
