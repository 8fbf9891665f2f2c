"""HTTP/1.1 front end: connection management, limits, methods, Host, routing, headers,
viewer timeouts. Origin: scripted (type "http")."""

import time

import pytest

from conftest import (ALL_METHODS, NODE, Conn, Reply, ScriptedOrigin, assert_shield_headers,
                      behavior, fetch, get, http_origin, request_bytes)

HEADER_TIMEOUT = 2
KEEPALIVE_TIMEOUT = 2


@pytest.fixture(scope='module')
def o2():
    o = ScriptedOrigin().start()
    o.default = Reply(body=b'from-o2', content_type='text/plain')
    yield o
    o.stop()


@pytest.fixture(scope='module')
def sh(module_shield, module_origin, o2):
    return module_shield(
        [http_origin('o', module_origin), http_origin('o2', o2)],
        [behavior('/rw/*', 'o', allowed_methods=ALL_METHODS),
         behavior('/ro/*', 'o', allowed_methods=['GET', 'HEAD']),
         behavior('/frame/*', 'o', response_headers={'frame_options': 'SAMEORIGIN'}),
         behavior('/q/*', 'o', forward_query=True),
         behavior('/fh/*', 'o', forward_headers=['X-Custom', 'X-Hop']),
         behavior('/books/*.epub', 'o2'),
         behavior('/x?.txt', 'o2'),
         behavior('/first/*', 'o2'),
         behavior('/first/sub/*', 'o'),
         behavior('*', 'o')],
        default_root_object='index.html',
        limits={'max_body_size': '1K'},
        # front-end and forwarding semantics: every request must reach the origin
        # (the cache has its own tests in test_cache.py)
        cache={'enabled': False},
        timeouts={'header': f'{HEADER_TIMEOUT}s', 'keepalive': f'{KEEPALIVE_TIMEOUT}s',
                  'send': '2s', 'drain': '5s'})


@pytest.fixture
def o(module_origin):
    module_origin.routes.clear()
    module_origin.default = None
    return module_origin


def last_req(o, n0):
    reqs = o.requests[n0:]
    assert len(reqs) == 1, reqs
    return reqs[0]


# ---- headers Shield adds ------------------------------------------------------------------

def test_miss_response_headers(sh, o):
    r1 = get(sh.port, '/plain')
    r2 = get(sh.port, '/plain')
    assert r1.status == 200 and r1.body == b'origin:/plain'
    assert_shield_headers(r1)
    assert r1.header('X-Request-Id') != r2.header('X-Request-Id')
    assert r1.header('Content-Type') == 'text/plain'


def test_generated_error_headers(sh, o):
    r = get(sh.port, '/x', method='DELETE')
    assert r.status == 405
    assert_shield_headers(r, error=True)


def test_per_behavior_frame_options(sh, o):
    r = get(sh.port, '/frame/a')
    assert r.status == 200
    assert r.headers_named('X-Frame-Options') == ['SAMEORIGIN']
    assert r.header('X-Content-Type-Options') == 'nosniff'  # inherited from the global set
    assert r.header('Referrer-Policy') == 'strict-origin-when-cross-origin'


def test_security_headers_override_origin(sh, o):
    o.route('/own', Reply(body=b'x', headers=[('X-Frame-Options', 'ALLOWALL'),
                                               ('X-Origin-Header', 'kept')]))
    r = get(sh.port, '/own')
    assert r.headers_named('X-Frame-Options') == ['DENY']
    assert r.header('X-Origin-Header') == 'kept'


def test_hop_by_hop_response_headers_stripped(sh, o):
    o.route('/hop', Reply(body=b'hop', chunked=True, headers=[
        ('Connection', 'X-Secret'), ('X-Secret', '1'), ('Keep-Alive', 'timeout=99'),
        ('Upgrade', 'h2c'), ('Trailer', 'X-T'), ('Proxy-Authenticate', 'Basic'),
        ('Proxy-Connection', 'keep-alive'), ('HTTP2-Settings', 'AAMAAABkAARAAAAAAAIAAAAA'),
        ('X-Normal', 'yes')]))
    r = get(sh.port, '/hop')
    assert r.status == 200 and r.body == b'hop' and r.complete
    for h in ('X-Secret', 'Keep-Alive', 'Upgrade', 'Trailer', 'Proxy-Authenticate',
              'Proxy-Connection', 'HTTP2-Settings'):
        assert not r.has(h), f'{h} passed to the viewer: {r.headers}'
    assert (r.header('Connection') or '').lower() in ('', 'keep-alive')
    assert r.header('X-Normal') == 'yes'


def test_origin_error_passes_through(sh, o):
    o.route('/gone', Reply(410, b'gone for good', content_type='text/plain'))
    r = get(sh.port, '/gone')
    assert (r.status, r.body) == (410, b'gone for good')
    assert r.header('Via') == f'1.1 {NODE} (shield)'


# ---- connection management -------------------------------------------------------------

def test_keepalive_sequential(sh, o):
    n0 = o.count()
    with Conn(sh.port) as c:
        for i in range(3):
            c.send(request_bytes('GET', f'/ka/{i}'))
            r = c.read_response()
            assert r.status == 200 and r.body == f'origin:/ka/{i}'.encode()
            assert r.version == 'HTTP/1.1'
            assert (r.header('Connection') or '').lower() != 'close'
        assert not c.closed_within(0.3)
    assert o.count() == n0 + 3


def test_pipelining_in_order(sh, o):
    o.route('/p/2', Reply(body=b'slow-second', stall_head=0.3))  # must not be overtaken
    with Conn(sh.port) as c:
        c.send(request_bytes('GET', '/p/1') + request_bytes('HEAD', '/p/2')
               + request_bytes('GET', '/p/3'))
        rs = [c.read_response(method=m) for m in ('GET', 'HEAD', 'GET')]
        assert [r.status for r in rs] == [200, 200, 200]
        assert rs[0].body == b'origin:/p/1'
        assert rs[1].body == b'' and rs[1].header('Content-Length') == str(len(b'slow-second'))
        assert rs[2].body == b'origin:/p/3'
        assert not c.closed_within(0.3)


def test_connection_close_honoured(sh, o):
    n0 = o.count()
    with Conn(sh.port) as c:
        c.send(request_bytes('GET', '/cc', {'Connection': 'close'}) + request_bytes('GET', '/cc2'))
        r = c.read_response()
        assert r.status == 200 and r.body == b'origin:/cc'
        assert c.closed_within(3), 'connection not closed after Connection: close'
    assert [q.path for q in o.requests[n0:]] == ['/cc']


def test_http10_closes_by_default(sh, o):
    with Conn(sh.port) as c:
        c.send(b'GET /ten HTTP/1.0\r\nHost: x\r\n\r\n' + request_bytes('GET', '/ten2'))
        r = c.read_response()
        assert r.status == 200 and r.body == b'origin:/ten'
        assert c.closed_within(3), 'HTTP/1.0 connection kept open'
    assert not o.seen('/ten2')


def test_http10_keepalive_on_request(sh, o):
    with Conn(sh.port) as c:
        c.send(b'GET /ten-ka HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n')
        r = c.read_response()
        assert r.status == 200 and r.header('Content-Length') == str(len(b'origin:/ten-ka'))
        assert 'keep-alive' in (r.header('Connection') or '').lower()
        c.send(b'GET /ten-ka2 HTTP/1.0\r\nHost: x\r\n\r\n')
        r = c.read_response()
        assert r.status == 200 and r.body == b'origin:/ten-ka2'
        assert c.closed_within(3)


def test_http10_without_host_is_fine(sh, o):
    r = fetch(sh.port, '/nohost', version='HTTP/1.0', host=None)
    assert r.status == 200 and r.body == b'origin:/nohost'


# ---- methods ---------------------------------------------------------------------------------

def _allow(r):
    return {m.strip() for m in (r.header('Allow') or '').split(',') if m.strip()}


def test_405_with_allow_default(sh, o):
    n0 = o.count()
    for m in ('DELETE', 'PUT', 'PATCH'):
        r = fetch(sh.port, '/m', method=m, body=b'' if m != 'DELETE' else None)
        assert r.status == 405, m
        assert _allow(r) == {'GET', 'HEAD', 'OPTIONS'}, r.headers
    r = fetch(sh.port, '/m', method='POST', body=b'abc')
    assert r.status == 405 and _allow(r) == {'GET', 'HEAD', 'OPTIONS'}
    assert o.count() == n0


def test_405_allow_per_behavior(sh, o):
    r = fetch(sh.port, '/ro/a', method='OPTIONS')
    assert r.status == 405 and _allow(r) == {'GET', 'HEAD'}


def test_unknown_method_refused(sh, o):
    n0 = o.count()
    r = fetch(sh.port, '/rw/a', method='PROPFIND')
    assert r.status in (400, 405, 501)
    assert o.count() == n0


def test_all_methods_forwarded_when_allowed(sh, o):
    n0 = o.count()
    for m in ALL_METHODS:
        body = b'payload-' + m.encode() if m in ('PUT', 'POST', 'PATCH') else None
        r = fetch(sh.port, '/rw/m', method=m, body=body)
        assert r.status == 200, (m, r)
        q = o.requests[-1]
        assert (q.method, q.path) == (m, '/rw/m')
        if body:
            assert q.body == body
    assert o.count() == n0 + len(ALL_METHODS)


def test_request_body_content_type_forwarded(sh, o):
    """Regression: the body's Content-Type reached the origin only if the request
    struct carried the body, which it did not."""
    r = fetch(sh.port, '/rw/form', method='POST', body=b'a=1&b=2',
              headers={'Content-Type': 'application/x-www-form-urlencoded'})
    assert r.status == 200, r
    q = o.requests[-1]
    assert (q.method, q.body) == ('POST', b'a=1&b=2')
    assert q.header('Content-Type') == 'application/x-www-form-urlencoded', q.headers


def test_options_allowed_by_default(sh, o):
    r = fetch(sh.port, '/opt', method='OPTIONS')
    assert r.status == 200 and o.last().method == 'OPTIONS'


# ---- limits ----------------------------------------------------------------------------------

def test_url_limit_414(sh, o):
    ok = '/' + 'a' * 8191
    r = get(sh.port, ok)
    assert r.status == 200, 'an 8,192-byte target must be accepted'
    n0 = o.count()
    with Conn(sh.port) as c:
        c.send(request_bytes('GET', ok + 'b'))
        r = c.read_response()
        assert r.status == 414
        assert c.closed_within(3)
    assert o.count() == n0


def test_header_section_limit_431(sh, o):
    r = get(sh.port, '/hs', headers={'X-Pad': 'a' * 19000})
    assert r.status == 200
    n0 = o.count()
    with Conn(sh.port) as c:
        c.send(request_bytes('GET', '/hs', {'X-Pad': 'a' * 21000}))
        r = c.read_response()
        assert r.status == 431
        assert c.closed_within(3)
    assert o.count() == n0


def test_header_count_limit_431(sh, o):
    r = get(sh.port, '/hc', headers=[(f'X-H{i}', 'v') for i in range(99)])  # + Host = 100
    assert r.status == 200
    n0 = o.count()
    with Conn(sh.port) as c:
        c.send(request_bytes('GET', '/hc', [(f'X-H{i}', 'v') for i in range(100)]))  # 101
        r = c.read_response()
        assert r.status == 431
        assert c.closed_within(3)
    assert o.count() == n0


def test_body_limit_413(sh, o):
    r = fetch(sh.port, '/rw/b', method='POST', body=b'z' * 1024)
    assert r.status == 200 and o.last().body == b'z' * 1024
    n0 = o.count()
    with Conn(sh.port) as c:
        c.send(request_bytes('POST', '/rw/b', body=b'z' * 1025))
        r = c.read_response()
        assert r.status == 413
    with Conn(sh.port) as c:
        c.send(request_bytes('POST', '/rw/b', {'Transfer-Encoding': 'chunked'},
                             body=b'401\r\n' + b'z' * 1025 + b'\r\n0\r\n\r\n'))
        r = c.read_response()
        assert r.status == 413
    assert o.count() == n0


# ---- Host ------------------------------------------------------------------------------------

@pytest.mark.parametrize('head', [
    b'GET /h HTTP/1.1\r\n\r\n',
    b'GET /h HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n',
    b'GET /h HTTP/1.1\r\nHost: a b\r\n\r\n',
    b'GET /h HTTP/1.1\r\nHost: a/b\r\n\r\n',
    b'GET /h HTTP/1.1\r\nHost: x:8o\r\n\r\n',
], ids=['missing', 'two', 'space', 'slash', 'bad-port'])
def test_host_errors_400(sh, o, head):
    n0 = o.count()
    with Conn(sh.port) as c:
        c.send(head)
        r = c.read_response()
        assert r.status == 400
        assert_shield_headers(r, error=True)
        assert c.closed_within(3)
    assert o.count() == n0


def test_host_with_port_ok(sh, o):
    assert get(sh.port, '/hp', host=f'127.0.0.1:{sh.port}').status == 200
    assert get(sh.port, '/hp', host='[::1]:80').status == 200


# ---- routing ------------------------------------------------------------------------------

def test_default_root_object_only_for_root(sh, o):
    n0 = o.count()
    r = get(sh.port, '/')
    assert r.status == 200 and r.body == b'origin:/index.html'
    assert o.requests[n0].path == '/index.html'
    r = get(sh.port, '/dir/')
    assert r.body == b'origin:/dir/', 'default root object applied below /'
    assert o.requests[-1].path == '/dir/'


@pytest.mark.parametrize('path,origin_name', [
    ('/books/a.epub', 'o2'),
    ('/books/deep/er/a.epub', 'o2'),
    ('/books/a.EPUB', 'o'),          # case-sensitive
    ('/books/a.epub.bak', 'o'),
    ('/x1.txt', 'o2'),               # ? is exactly one byte
    ('/x.txt', 'o'),
    ('/x12.txt', 'o'),
    ('/first/a', 'o2'),
    ('/first/sub/a', 'o2'),          # first match wins
    ('/other', 'o'),
])
def test_behavior_matching(sh, o, o2, path, origin_name):
    r = get(sh.port, path)
    want = b'from-o2' if origin_name == 'o2' else f'origin:{path}'.encode()
    assert r.status == 200 and r.body == want


def test_behavior_matching_ignores_query(sh, o, o2):
    r = get(sh.port, '/books/a.epub?x=.txt')
    assert r.body == b'from-o2'


def test_query_not_forwarded_by_default(sh, o):
    n0 = o.count()
    get(sh.port, '/plain?a=1&b=2')
    assert o.requests[n0].target == '/plain'


def test_query_forwarded_when_configured(sh, o):
    n0 = o.count()
    get(sh.port, '/q/a?b=2&a=1')
    assert o.requests[n0].target == '/q/a?b=2&a=1'


# ---- request headers to the origin --------------------------------------------------------

def test_forwarded_request_headers(sh, o):
    n0 = o.count()
    r = get(sh.port, '/fh/a', headers=[
        ('X-Custom', 'c1'), ('Range', 'bytes=0-9'), ('If-Match', '"a"'),
        ('If-None-Match', '"b"'), ('If-Modified-Since', 'Sat, 01 Jan 2000 00:00:00 GMT'),
        ('If-Unmodified-Since', 'Sat, 01 Jan 2050 00:00:00 GMT'), ('If-Range', '"c"'),
        ('X-Forwarded-For', '203.0.113.7')])
    assert r.status == 200
    q = last_req(o, n0)
    for k, v in [('X-Custom', 'c1'), ('Range', 'bytes=0-9'), ('If-Match', '"a"'),
                 ('If-None-Match', '"b"'), ('If-Modified-Since', 'Sat, 01 Jan 2000 00:00:00 GMT'),
                 ('If-Unmodified-Since', 'Sat, 01 Jan 2050 00:00:00 GMT'), ('If-Range', '"c"')]:
        assert q.headers_named(k) == [v], (k, q.headers)
    assert q.headers_named('X-Forwarded-For') == ['203.0.113.7, 127.0.0.1']
    assert NODE in (q.header('Via') or ''), q.headers


def test_range_response_passes_through(sh, o):
    o.route('/r', Reply(206, b'0123456789', headers=[('Content-Range', 'bytes 90-99/100')]))
    n0 = o.count()
    r = get(sh.port, '/r', headers={'Range': 'bytes=-10'})
    assert (r.status, r.body) == (206, b'0123456789')
    assert r.header('Content-Range') == 'bytes 90-99/100'
    assert last_req(o, n0).header('Range') == 'bytes=-10'


def test_xff_added_when_absent(sh, o):
    n0 = o.count()
    get(sh.port, '/xff')
    assert last_req(o, n0).headers_named('X-Forwarded-For') == ['127.0.0.1']


def test_hop_by_hop_request_headers_stripped(sh, o):
    n0 = o.count()
    r = get(sh.port, '/fh/hop', headers=[
        ('Connection', 'X-Hop, keep-alive'), ('X-Hop', 'secret'), ('Keep-Alive', 'timeout=9'),
        ('TE', 'trailers'), ('Trailer', 'X-T'), ('Upgrade', 'websocket'),
        ('Proxy-Authorization', 'Basic Zm9vOmJhcg=='), ('Proxy-Connection', 'keep-alive'),
        ('X-Custom', 'kept')])
    assert r.status == 200
    q = last_req(o, n0)
    for h in ('X-Hop', 'Keep-Alive', 'TE', 'Trailer', 'Upgrade', 'Proxy-Authorization',
              'Proxy-Connection'):
        assert not q.has(h), f'{h} forwarded: {q.headers}'
    assert 'x-hop' not in (q.header('Connection') or '').lower()
    assert q.header('X-Custom') == 'kept'


# ---- viewer timeouts -------------------------------------------------------------------------

def test_header_timeout_slowloris(sh, o):
    n0 = o.count()
    with Conn(sh.port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(b'GET /slow HTTP/1.1\r\nHost: x\r\n')
        closed = False
        while time.monotonic() - t0 < HEADER_TIMEOUT + 4:
            try:
                c.send(b'X')  # one byte every 200 ms: never finishes the head
            except OSError:
                closed = True
                break
            if c.closed_within(0.2) or c.buf:
                closed = True
                break
        took = time.monotonic() - t0
        assert closed, f'dribbling client still connected after {took:.1f}s'
        assert HEADER_TIMEOUT - 0.5 <= took <= HEADER_TIMEOUT + 3, took
        if c.buf:
            r = c.read_response()
            assert r.status in (400, 408), r
    assert o.count() == n0
    sh.assert_alive()


def test_keepalive_idle_timeout(sh, o):
    with Conn(sh.port, timeout=10) as c:
        c.send(request_bytes('GET', '/idle'))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert not c.closed_within(KEEPALIVE_TIMEOUT - 0.7), 'closed before the keep-alive timeout'
        assert c.closed_within(4), 'idle keep-alive connection not closed'
        took = time.monotonic() - t0
        assert KEEPALIVE_TIMEOUT - 0.7 <= took <= KEEPALIVE_TIMEOUT + 3, took


def test_send_timeout_closes_stuck_reader(sh, o):
    size = 64 << 20
    o.route('/stuck', Reply(size=size))
    with Conn(sh.port, timeout=20, rcvbuf=4096) as c:
        c.send(request_bytes('GET', '/stuck'))
        # never read: Shield makes no progress writing, and must give up after timeouts.send
        time.sleep(5)  # deliberate: the behaviour under test is "nothing happens for a while"
        got = len(c.read_all(timeout=10))
        assert c.eof, 'connection still open 15 s after the client stopped reading'
        assert got < size, 'client received the whole body although it never read'
    sh.assert_alive()
    assert get(sh.port, '/after-stuck').status == 200


def test_body_timeout_closes_stalled_upload(shield, origin):
    sh = shield([http_origin('o', origin)],
                [behavior('/rw/*', 'o', allowed_methods=ALL_METHODS), behavior('*', 'o')],
                timeouts={'body': '1s'})
    with Conn(sh.port, timeout=10) as c:
        c.send(b'POST /rw/up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello')
        t0 = time.monotonic()
        closed = c.closed_within(6) or (c.buf and c.read_response().status in (400, 408)
                                        and c.closed_within(3))
        took = time.monotonic() - t0
    assert closed, 'stalled upload not closed'
    assert 0.7 <= took <= 5, took
    assert origin.count() == 0, 'a partial body reached the origin'
