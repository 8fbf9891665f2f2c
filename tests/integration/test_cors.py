"""CORS (modules/cors.c): preflights answered at the edge, Access-Control-Allow-Origin per
request on shared cached objects, and the seed deployment's e-book behaviors, which
forward Origin and the preflight headers to the origin instead."""

import json

import pytest

from conftest import (SECURITY_HEADERS, Conn, Reply, ScriptedOrigin, behavior, fetch,
                      free_port, get, http_origin, port_open, request_bytes, wait_until, xcache)

READER = 'https://reader.example'
CAMPUS = 'https://lib.campus.example'
EVIL = 'https://evil.example'
PREFLIGHT_VARY = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers'
CORS_HEADERS = ['Origin', 'Access-Control-Request-Method', 'Access-Control-Request-Headers']


@pytest.fixture(scope='module')
def o():
    srv = ScriptedOrigin().start()
    yield srv
    srv.stop()


@pytest.fixture(scope='module')
def sh(module_shield, o):
    aport = free_port()
    opt = ['GET', 'HEAD', 'OPTIONS']
    s = module_shield(
        [http_origin('o', o)],
        [behavior('/cors/*', 'o', allowed_methods=opt, cors={
            'allow_origins': [READER], 'allow_methods': ['GET', 'HEAD'],
            'allow_headers': ['Range'], 'expose_headers': ['Content-Range', 'ETag'],
            'max_age': 600, 'allow_credentials': False}),
         behavior('/star/*', 'o', allowed_methods=opt, cors={'allow_origins': ['*']}),
         behavior('/cred/*', 'o', allowed_methods=opt, cors={
             'allow_origins': [READER, 'https://*.campus.example'], 'allow_credentials': True,
             'allow_headers': ['*'], 'max_age': 0}),
         behavior('/noopt/*', 'o', allowed_methods=['GET', 'HEAD'],
                  cors={'allow_origins': [READER]}),
         # the seed deployment's e-book behaviors: no cors group, CORS is the origin's
         behavior('*.epub', 'o', allowed_methods=opt, cached_methods=opt,
                  forward_headers=CORS_HEADERS, default_ttl=604800),
         behavior('*.pdf', 'o', allowed_methods=opt, forward_headers=CORS_HEADERS),
         behavior('*', 'o')],
        admin={'address': f'127.0.0.1:{aport}'})
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    s.admin_port = aport
    return s


def preflights(sh):
    r = get(sh.admin_port, '/stats')
    assert r.status == 200, r
    return json.loads(r.body)['edge']['cors_preflights']


def preflight(sh, path, origin=READER, method='GET', req_headers=None, extra=()):
    hs = [('Origin', origin), ('Access-Control-Request-Method', method)]
    if req_headers is not None:
        hs.append(('Access-Control-Request-Headers', req_headers))
    return fetch(sh.port, path, method='OPTIONS', headers=hs + list(extra))


def assert_security_headers(r):
    assert r.header('X-Frame-Options') == SECURITY_HEADERS['frame_options'], r.headers
    assert r.header('X-Content-Type-Options') == 'nosniff', r.headers
    assert r.header('Referrer-Policy') == SECURITY_HEADERS['referrer_policy'], r.headers


def vary_tokens(r):
    return [t.strip().lower() for v in r.headers_named('Vary') for t in v.split(',') if t.strip()]


# ---- preflights answered by Shield ----------------------------------------------------------

def test_preflight_allowed(sh, o):
    n0, p0 = o.count(), preflights(sh)
    r = preflight(sh, '/cors/book.pdf', req_headers='range')
    assert r.status == 200, (r, r.body)
    assert r.headers_named('Access-Control-Allow-Origin') == [READER]
    assert r.header('Access-Control-Allow-Methods') == 'GET, HEAD'
    assert r.header('Access-Control-Allow-Headers') == 'Range'
    assert r.header('Access-Control-Max-Age') == '600'
    assert not r.has('Access-Control-Allow-Credentials')
    assert not r.has('Access-Control-Expose-Headers')
    assert r.headers_named('Vary') == [PREFLIGHT_VARY]
    assert r.header('Content-Length') == '0' and r.body == b''
    assert xcache(r) == 'Hit'
    assert_security_headers(r)
    assert o.count() == n0, 'a preflight reached the origin'
    assert preflights(sh) == p0 + 1


@pytest.mark.parametrize('why,kw', [
    ('origin', {'origin': EVIL}),
    ('origin_case', {'origin': 'https://READER.example'}),
    ('method', {'method': 'DELETE'}),
    ('method_case', {'method': 'get'}),
    ('header', {'req_headers': 'Range, X-Evil'}),
    ('two_origins', {'extra': [('Origin', EVIL)]}),
])
def test_preflight_refused(sh, o, why, kw):
    n0, p0 = o.count(), preflights(sh)
    r = preflight(sh, '/cors/book.pdf', **kw)
    assert r.status == 403, r
    assert b'CORSResponse: This CORS request is not allowed' in r.body, r.body
    assert (r.header('Content-Type') or '').startswith('application/xml')
    assert not any(k.lower().startswith('access-control-') for k, _ in r.headers), r.headers
    assert r.headers_named('Vary') == [PREFLIGHT_VARY]
    assert xcache(r) == 'Error'
    assert_security_headers(r)
    assert o.count() == n0
    assert preflights(sh) == p0 + 1


def test_preflight_keeps_connection(sh, o):
    """Preflights are ordinary answers: allowed or refused, the connection goes on."""
    n0 = o.count()
    with Conn(sh.port, timeout=5) as c:
        c.send(request_bytes('OPTIONS', '/cors/a.pdf', [('Origin', EVIL),
                                                        ('Access-Control-Request-Method', 'GET')])
               + request_bytes('OPTIONS', '/cors/a.pdf', [('Origin', READER),
                                                          ('Access-Control-Request-Method', 'GET')])
               + request_bytes('GET', '/canary'))
        assert c.read_response().status == 403
        assert c.read_response().status == 200
        r = c.read_response()
        assert r.status == 200 and r.body == b'origin:/canary'
    assert [q.path for q in o.requests[n0:]] == ['/canary']


def test_preflight_star_echoes_request_headers(sh, o):
    r = preflight(sh, '/star/x', origin=EVIL, req_headers='x-a, x-b')
    assert r.status == 200
    assert r.header('Access-Control-Allow-Origin') == '*'
    assert r.header('Access-Control-Allow-Headers') == 'x-a, x-b'
    assert r.header('Access-Control-Allow-Methods') == 'GET, HEAD'
    assert r.header('Access-Control-Max-Age') == '600'  # the default
    r = preflight(sh, '/star/x', origin='null')
    assert r.status == 200 and r.header('Access-Control-Allow-Origin') == '*'
    assert not r.has('Access-Control-Allow-Headers')


def test_preflight_credentials_and_pattern(sh, o):
    r = preflight(sh, '/cred/x', origin=CAMPUS, req_headers='authorization')
    assert r.status == 200
    assert r.header('Access-Control-Allow-Origin') == CAMPUS
    assert r.header('Access-Control-Allow-Credentials') == 'true'
    assert r.header('Access-Control-Allow-Headers') == 'authorization'
    assert r.header('Access-Control-Max-Age') == '0'
    # the pattern needs a host label before ".campus.example"
    assert preflight(sh, '/cred/x', origin='https://campus.example').status == 403


def test_preflight_needs_options_allowed(sh, o):
    """The behavior refuses OPTIONS before CORS runs (405 + Allow)."""
    n0 = o.count()
    r = preflight(sh, '/noopt/x')
    assert r.status == 405 and r.header('Allow') == 'GET, HEAD'
    assert o.count() == n0


def test_options_without_request_method_goes_to_origin(sh, o):
    n0 = o.count()
    r = fetch(sh.port, '/cors/opt', method='OPTIONS', headers={'Origin': READER})
    assert r.status == 200 and o.count() == n0 + 1 and o.last().method == 'OPTIONS'
    assert 'origin' in vary_tokens(r)


# ---- actual requests -------------------------------------------------------------------------

def test_actual_request_headers(sh, o):
    o.route('/cors/get', Reply(body=b'book', content_type='application/pdf',
                               headers=[('Vary', 'Accept-Encoding'),
                                        ('Access-Control-Allow-Origin', '*'),
                                        ('ETag', '"abc"')]))
    r = get(sh.port, '/cors/get', headers={'Origin': READER})
    assert r.status == 200 and r.body == b'book'
    assert r.headers_named('Access-Control-Allow-Origin') == [READER]
    assert r.header('Access-Control-Expose-Headers') == 'Content-Range, ETag'
    assert not r.has('Access-Control-Allow-Credentials')
    assert vary_tokens(r) == ['accept-encoding', 'origin']
    assert_security_headers(r)
    # a refused origin gets no CORS header at all (the origin's "*" is replaced too)
    r = get(sh.port, '/cors/get', headers={'Origin': EVIL})
    assert r.status == 200 and not r.has('Access-Control-Allow-Origin'), r.headers
    assert not r.has('Access-Control-Expose-Headers')
    assert vary_tokens(r) == ['accept-encoding', 'origin']
    # no Origin: still Vary: Origin, since the answer depends on it
    r = get(sh.port, '/cors/get')
    assert not r.has('Access-Control-Allow-Origin') and vary_tokens(r) == ['accept-encoding',
                                                                           'origin']


def test_vary_not_duplicated(sh, o):
    o.route('/cors/vary', Reply(body=b'v', headers=[('Vary', 'origin'), ('Vary', 'Accept')]))
    r = get(sh.port, '/cors/vary', headers={'Origin': READER})
    assert vary_tokens(r) == ['origin', 'accept'], r.headers
    o.route('/cors/vstar', Reply(body=b'v', headers=[('Vary', '*')]))
    r = get(sh.port, '/cors/vstar', headers={'Origin': READER})
    assert r.headers_named('Vary') == ['*']


def test_head_and_credentials(sh, o):
    r = fetch(sh.port, '/cred/h', method='HEAD', headers={'Origin': CAMPUS})
    assert r.status == 200
    assert r.header('Access-Control-Allow-Origin') == CAMPUS
    assert r.header('Access-Control-Allow-Credentials') == 'true'


def test_cached_object_shared_between_origins(sh, o):
    """One cached copy, each viewer its own Access-Control-Allow-Origin."""
    o.route('/cred/shared.pdf', Reply(body=b'shared', headers=[('Cache-Control', 'max-age=600')]))
    n0 = o.count('/cred/shared.pdf')
    want = [(READER, 'Miss', READER), (CAMPUS, 'Hit', CAMPUS), (EVIL, 'Hit', None),
            (None, 'Hit', None), (READER, 'Hit', READER)]
    for origin, result, acao in want:
        r = get(sh.port, '/cred/shared.pdf', headers={'Origin': origin} if origin else None)
        assert r.status == 200 and r.body == b'shared'
        assert xcache(r) == result, (origin, r.headers)
        assert r.headers_named('Access-Control-Allow-Origin') == ([acao] if acao else []), (
            origin, r.headers)
        assert ('true' if acao else None) == r.header('Access-Control-Allow-Credentials')
        assert vary_tokens(r) == ['origin']
    assert o.count('/cred/shared.pdf') == n0 + 1


# ---- e-book behaviors: CORS is the origin's, Origin is forwarded and keyed -------------------

def origin_cors(req):
    if req.method == 'OPTIONS':
        return Reply(200, b'', content_type=None, headers=[
            ('Access-Control-Allow-Origin', req.header('origin') or 'none'),
            ('Access-Control-Allow-Methods', 'GET, HEAD'),
            ('Access-Control-Max-Age', '3000'),
            ('Cache-Control', 'max-age=3600'),
            ('Vary', PREFLIGHT_VARY)])
    return Reply(body=f'book for {req.header("origin")}'.encode(),
                 content_type='application/epub+zip',
                 headers=[('Access-Control-Allow-Origin', req.header('origin') or 'none'),
                          ('Cache-Control', 'max-age=3600'), ('Vary', 'Origin')])


def test_ebook_preflight_forwarded_to_origin(sh, o):
    """Without a cors group Shield answers no preflight itself: the origin does, and
    each viewer gets the answer made for its own Origin."""
    o.route('/fwd.epub', origin_cors)
    n0 = o.count('/fwd.epub')
    for origin, fetched in ((READER, 1), (EVIL, 2), (READER, 2)):  # the last one is a Hit
        r = preflight(sh, '/fwd.epub', origin=origin, req_headers='range')
        assert r.status == 200
        assert r.headers_named('Access-Control-Allow-Origin') == [origin], r.headers
        assert r.header('Access-Control-Max-Age') == '3000'
        assert_security_headers(r)
        assert o.count('/fwd.epub') == n0 + fetched
        q = o.last('/fwd.epub')
        assert q.method == 'OPTIONS' and q.header('origin') == (EVIL if fetched == 2 else READER)
        assert q.header('access-control-request-method') == 'GET'
        assert q.header('access-control-request-headers') == 'range'


def test_ebook_get_cached_per_origin(sh, o):
    o.route('/get.epub', origin_cors)
    n0 = o.count('/get.epub')
    for origin, result in ((READER, 'Miss'), (READER, 'Hit'), (EVIL, 'Miss'), (EVIL, 'Hit')):
        r = get(sh.port, '/get.epub', headers={'Origin': origin})
        assert xcache(r) == result and r.body == f'book for {origin}'.encode()
        assert r.headers_named('Access-Control-Allow-Origin') == [origin]
    assert o.count('/get.epub') == n0 + 2


def test_ebook_preflight_cached_per_origin(sh, o):
    o.route('/pre.epub', origin_cors)
    n0 = o.count('/pre.epub')
    r1 = preflight(sh, '/pre.epub', origin=READER)
    r2 = preflight(sh, '/pre.epub', origin=READER)
    assert r2.header('Access-Control-Allow-Origin') == READER
    assert xcache(r2) == 'Hit'
    assert o.count('/pre.epub') == n0 + 1, 'the second identical preflight reached the origin'
    r3 = preflight(sh, '/pre.epub', origin=CAMPUS)
    assert r3.header('Access-Control-Allow-Origin') == CAMPUS
    assert o.count('/pre.epub') == n0 + 2
    assert r1.status == 200
    # The GET of the same path and Origin is its own object, not the preflight's.
    g = get(sh.port, '/pre.epub', headers={'Origin': READER})
    assert g.status == 200 and g.body == f'book for {READER}'.encode() and xcache(g) == 'Miss'
    assert o.count('/pre.epub') == n0 + 3
    assert xcache(preflight(sh, '/pre.epub', origin=READER)) == 'Hit'


def test_options_not_cached_without_cached_methods(sh, o):
    o.route('/pre.pdf', origin_cors)
    n0 = o.count('/pre.pdf')
    for _ in range(2):
        r = preflight(sh, '/pre.pdf', origin=READER)
        assert r.status == 200 and r.header('Access-Control-Allow-Origin') == READER
    assert o.count('/pre.pdf') == n0 + 2
