"""Compression (SPEC.md "Compression", CloudFront "Serving compressed files").

Shield (2 workers, cache on, admin listener) in front of a ScriptedOrigin, with a
`compress = true` behavior `*` and a `compress = false` behavior `/plain/*`. Viewers are
raw sockets (exact headers and framing) and curl --compressed (a real decoder). gzip
bodies are checked with Python's zlib, br bodies with the real libbrotlidec through
ctypes (the Python `brotli` module is not installed here).

What is asserted: which coding each Accept-Encoding gets; that bodies decode to the
origin's bytes; the head rewrite (weak ETag, Vary, no Content-Length up front); every
case that must stay identity; separate cached variants (X-Cache, origin fetch counts);
HEAD; ranges and conditionals; collapsing; streaming; the pass path; revalidation of a
compressed variant; the disk tier; invalidation; the `compressed` counter in /stats.
"""

import ctypes
import hashlib
import json
import random
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import (SAN, Conn, Reply, Shield, behavior, curl, fetch, free_port, get,
                      http_origin, port_open, request_bytes, wait_until, xcache)

# ---- helpers -----------------------------------------------------------------------------

_WORDS = [b'shield', b'edge', b'cache', b'<p>', b'</p>\n', b'book', b'epub', b'chapter',
          b'<div class="page">', b'</div>', b'the', b'of', b'and', b'reader', b'origin']


def text(n, seed=0):
    """n bytes of compressible, deterministic markup-like text."""
    rnd = random.Random(seed)
    block = b' '.join(rnd.choice(_WORDS) for _ in range(12_000))
    return (block * (n // len(block) + 1))[:n]


_brdec = ctypes.CDLL('libbrotlidec.so.1')
_brdec.BrotliDecoderDecompress.argtypes = [ctypes.c_size_t, ctypes.c_char_p,
                                           ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p]
_brdec.BrotliDecoderDecompress.restype = ctypes.c_int


def unbrotli(data, limit=16 << 20):
    out = ctypes.create_string_buffer(limit)
    n = ctypes.c_size_t(limit)
    rc = _brdec.BrotliDecoderDecompress(len(data), data, ctypes.byref(n), out)
    assert rc == 1, f'not a valid br stream ({len(data)} bytes, decoder result {rc})'
    return out.raw[:n.value]


def decode(r):
    """The body as the viewer's decoder sees it, by Content-Encoding."""
    ce = r.header('Content-Encoding')
    if ce == 'gzip':
        d = zlib.decompressobj(16 + 15)
        out = d.decompress(r.body) + d.flush()
        assert d.eof and not d.unused_data, 'gzip stream incomplete or with trailing bytes'
        return out
    if ce == 'br':
        return unbrotli(r.body)
    assert ce is None, f'unexpected Content-Encoding {ce!r}'
    return r.body


def req(port, path, ae=None, method='GET', headers=(), **kw):
    hs = list(headers)
    if ae is not None:
        hs.append(('Accept-Encoding', ae))
    return fetch(port, path, method=method, headers=hs, **kw)


def assert_compressed(r, coding, original, etag=None):
    assert r.status in (200, 403, 404), r
    assert r.header('Content-Encoding') == coding, r.headers
    assert 'Accept-Encoding' in (r.header('Vary') or ''), r.headers
    assert not r.has('Accept-Ranges'), r.headers
    if etag is not None:
        assert r.header('ETag') == 'W/' + etag, r.headers
    assert decode(r) == original


def assert_identity(r, original, status=200):
    assert r.status == status, r
    assert not r.has('Content-Encoding'), r.headers
    assert r.header('Content-Length') == str(len(original)), r.headers
    assert r.body == original


def stats(sh):
    r = get(sh.admin_port, '/stats')
    assert r.status == 200, r
    return json.loads(r.body)


# ---- the shared Shield ----------------------------------------------------------------------

@pytest.fixture(scope='module')
def env(module_shield, module_origin):
    aport = free_port()
    sh = module_shield([http_origin('o', module_origin)],
                       [behavior('/plain/*', 'o'), behavior('*', 'o', compress=True)],
                       admin={'address': f'127.0.0.1:{aport}'})
    sh.admin_port = aport
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    return sh, module_origin


HTML = text(50_000, 1)


def test_variants_negotiated_cached_and_counted(env):
    sh, origin = env
    origin.route('/v.html', Reply(body=HTML, content_type='text/html; charset=utf-8',
                                  headers=[('ETag', '"v1"'), ('Accept-Ranges', 'bytes')]))
    c0 = stats(sh)['edge']['compressed']

    r = req(sh.port, '/v.html', 'gzip, deflate, br')
    assert_compressed(r, 'br', HTML, '"v1"')
    assert xcache(r) == 'Miss'
    assert r.header('Transfer-Encoding') == 'chunked' and not r.has('Content-Length'), r.headers
    assert r.header('Vary') == 'Accept-Encoding'
    assert len(r.body) < len(HTML) / 3

    r = req(sh.port, '/v.html', 'gzip')
    assert_compressed(r, 'gzip', HTML, '"v1"')
    assert xcache(r) == 'Miss'

    r = req(sh.port, '/v.html')
    assert_identity(r, HTML)
    assert r.header('ETag') == '"v1"' and not r.has('Vary'), r.headers
    assert xcache(r) == 'Miss'
    assert origin.count('/v.html') == 3  # one fetch per variant
    # Accept-Encoding is not forwarded: the origin answers identity, Shield compresses
    assert all(not q.has('Accept-Encoding') for q in origin.requests if q.path == '/v.html')

    # each variant is its own cached object, with its size known once complete
    for ae, coding in (('br', 'br'), ('gzip;q=1, br;q=0.5', 'gzip'), ('br;q=0, gzip', 'gzip'),
                       ('GZIP , BR', 'br'), ('*', 'br')):
        r = req(sh.port, '/v.html', ae)
        assert_compressed(r, coding, HTML, '"v1"')
        assert xcache(r) == 'Hit', (ae, r.headers)
        assert r.header('Content-Length') == str(len(r.body)), r.headers
    for ae in ('deflate', 'identity', 'gzip;q=0, br;q=0', '*;q=0', 'compress, zstd'):
        r = req(sh.port, '/v.html', ae)
        assert_identity(r, HTML)
        assert xcache(r) == 'Hit', (ae, r.headers)
    assert origin.count('/v.html') == 3
    assert stats(sh)['edge']['compressed'] - c0 == 2 + 5  # responses sent compressed


def test_real_client_decodes(env):
    sh, origin = env
    origin.route('/c.css', Reply(body=HTML, content_type='text/css'))
    for coding in ('br', 'gzip'):
        p = curl('--compressed', '-D', '-', '-o', '/dev/null', '-H', f'Accept-Encoding: {coding}',
                 f'http://127.0.0.1:{sh.port}/c.css')
        assert p.returncode == 0, p.stderr
        assert f'content-encoding: {coding}' in p.stdout.decode().lower()
        p = curl('--compressed', '-H', f'Accept-Encoding: {coding}',
                 f'http://127.0.0.1:{sh.port}/c.css')
        assert p.returncode == 0 and p.stdout == HTML, p.stderr


@pytest.mark.parametrize('path,reply,why', [
    ('/n/book.epub', Reply(body=text(300_000, 2), content_type='application/epub+zip'), 'epub'),
    ('/n/epub-as-name', Reply(body=text(300_000, 2), content_type='application/epub+zip'),
     'epub type'),
    ('/n/doc.pdf', Reply(body=text(20_000, 3), content_type='application/pdf'), 'pdf'),
    ('/n/small.html', Reply(body=text(999, 4), content_type='text/html'), 'too small'),
    ('/n/big.txt', Reply(body=text(10_000_001, 5), content_type='text/plain'), 'too big'),
    ('/n/img.png', Reply(body=text(5000, 6), content_type='image/png'), 'type'),
    ('/n/err.html', Reply(500, body=text(5000, 7), content_type='text/html'), 'status 500'),
    ('/n/nt.html', Reply(body=text(5000, 8), content_type='text/html',
                         headers=[('Cache-Control', 'max-age=60, no-transform')]), 'no-transform'),
    ('/n/chunked.html', Reply(body=text(5000, 9), content_type='text/html', chunked=True),
     'no Content-Length'),
])
def test_not_compressed(env, path, reply, why):
    sh, origin = env
    origin.route(path, reply)
    r = req(sh.port, path, 'gzip, br')
    assert r.status == reply.status, (why, r)
    assert not r.has('Content-Encoding'), (why, r.headers)
    assert r.body == reply.body, why
    if not reply.chunked:
        assert r.header('Content-Length') == str(len(reply.body)), (why, r.headers)


def test_boundaries_and_error_statuses(env):
    sh, origin = env
    body = text(1000, 10)  # exactly the minimum
    origin.route('/b/min.txt', Reply(body=body, content_type='text/plain'))
    assert_compressed(req(sh.port, '/b/min.txt', 'gzip'), 'gzip', body)
    for status in (403, 404):
        body = text(4000, status)
        origin.route(f'/b/{status}.html', Reply(status, body=body, content_type='text/html'))
        r = req(sh.port, f'/b/{status}.html', 'br')
        assert r.status == status
        assert_compressed(r, 'br', body)


def test_already_encoded_passes_through(env):
    sh, origin = env
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + 15)
    gz = c.compress(HTML) + c.flush()
    origin.route('/e/pre.html', Reply(body=gz, content_type='text/html',
                                      headers=[('Content-Encoding', 'gzip'), ('ETag', '"pre"')]))
    r = req(sh.port, '/e/pre.html', 'gzip, br')
    assert r.status == 200 and r.header('Content-Encoding') == 'gzip', r.headers
    assert r.body == gz, 'an encoded body was recompressed'
    assert r.header('ETag') == '"pre"' and not r.has('Vary'), r.headers
    assert r.header('Content-Length') == str(len(gz))


def test_compress_false_behavior(env):
    sh, origin = env
    origin.route('/plain/p.html', Reply(body=HTML, content_type='text/html'))
    r = req(sh.port, '/plain/p.html', 'gzip, br')
    assert_identity(r, HTML)
    assert not r.has('Vary') and xcache(r) == 'Miss'
    r = req(sh.port, '/plain/p.html', 'gzip')
    assert_identity(r, HTML)
    assert xcache(r) == 'Hit'  # no variants without compression
    assert origin.count('/plain/p.html') == 1


def test_http10_viewer_gets_identity(env):
    """CloudFront: "If a request uses HTTP 1.0, CloudFront removes the Accept-Encoding
    header and serves uncompressed content"."""
    sh, origin = env
    origin.route('/h10.html', Reply(body=HTML, content_type='text/html'))
    r = req(sh.port, '/h10.html', 'gzip, br', version='HTTP/1.0')
    assert_identity(r, HTML)
    r = req(sh.port, '/h10.html', 'gzip, br')
    assert_compressed(r, 'br', HTML)


def test_head_gets_the_same_headers(env):
    sh, origin = env
    origin.route('/hd.html', Reply(body=HTML, content_type='text/html', headers=[('ETag', '"h"')]))
    same = ('Content-Type', 'Content-Encoding', 'ETag', 'Vary')
    head = req(sh.port, '/hd.html', 'br', method='HEAD')  # a HEAD miss asks the origin itself
    assert head.status == 200 and head.body == b'', head
    assert not head.has('Content-Length') and not head.has('Transfer-Encoding'), head.headers
    g = req(sh.port, '/hd.html', 'br')
    assert_compressed(g, 'br', HTML, '"h"')
    assert [head.header(h) for h in same] == [g.header(h) for h in same]
    # on hits both know the compressed length
    head = req(sh.port, '/hd.html', 'br', method='HEAD')
    g = req(sh.port, '/hd.html', 'br')
    assert xcache(head) == xcache(g) == 'Hit'
    assert [head.header(h) for h in same + ('Content-Length',)] == \
        [g.header(h) for h in same + ('Content-Length',)]
    assert origin.last('/hd.html').method == 'GET'


def test_range_and_conditionals(env):
    sh, origin = env
    origin.route('/rc.html', Reply(body=HTML, content_type='text/html', headers=[('ETag', '"rc"')]))
    assert_compressed(req(sh.port, '/rc.html', 'br'), 'br', HTML, '"rc"')
    # a range is served from the identity object, never from a compressed one
    r = req(sh.port, '/rc.html', 'gzip, br', headers=[('Range', 'bytes=100-199')])
    assert r.status == 206 and not r.has('Content-Encoding'), r.headers
    assert r.header('Content-Range') == f'bytes 100-199/{len(HTML)}'
    assert r.body == HTML[100:200]
    # weak comparison: the weak tag the viewer got, or the origin's strong one
    for inm in ('W/"rc"', '"rc"'):
        r = req(sh.port, '/rc.html', 'br', headers=[('If-None-Match', inm)])
        assert r.status == 304 and r.body == b'', (inm, r)
        assert xcache(r) == 'Hit'
    r = req(sh.port, '/rc.html', 'br', headers=[('If-None-Match', '"other"')])
    assert_compressed(r, 'br', HTML)


def test_collapsed_cold_gzip_requests_identical(env):
    sh, origin = env
    n = 100 if SAN else 200
    body = text(400_000, 11)
    origin.route('/many.js', Reply(body=body, content_type='application/javascript',
                                   pieces=8, interval=0.05))
    start = threading.Barrier(n)

    def one(_):
        with Conn(sh.port, timeout=60) as c:
            start.wait()
            c.send(request_bytes('GET', '/many.js', [('Accept-Encoding', 'gzip')]))
            r = c.read_response(timeout=60)
        assert r.status == 200 and r.complete, r
        assert r.header('Content-Encoding') == 'gzip', r.headers
        return hashlib.sha256(decode(r)).hexdigest(), hashlib.sha256(r.body).hexdigest()

    with ThreadPoolExecutor(n) as ex:
        results = list(ex.map(one, range(n)))
    assert {d for d, _ in results} == {hashlib.sha256(body).hexdigest()}
    assert len({c for _, c in results}) == 1, 'collapsed viewers got different compressed bytes'
    assert origin.count('/many.js') == 1


@pytest.mark.parametrize('coding', ['br', 'gzip'])
def test_large_body_streams(env, coding):
    """5 MB of text: the first compressed bytes reach the viewer while the origin still
    holds back the second half of the body."""
    sh, origin = env
    body = text(5_000_000, 12)
    stall = 3.0
    path = f'/stream-{coding}.txt'
    origin.route(path, Reply(body=body, content_type='text/plain', stall_at=2_500_000,
                             stall=stall))
    with Conn(sh.port, timeout=30) as c:
        t0 = time.monotonic()
        c.send(request_bytes('GET', path, [('Accept-Encoding', coding)]))
        assert c.wait_bytes(b'\r\n\r\n', 10)
        while len(c.buf) <= c.buf.index(b'\r\n\r\n') + 4:
            c._fill(t0 + 10)
        first = time.monotonic() - t0
        r = c.read_response(timeout=30)
        total = time.monotonic() - t0
    assert r.complete and r.header('Content-Encoding') == coding, r.headers
    assert decode(r) == body
    assert total > stall, f'origin stall not effective ({total:.2f}s)'
    assert first < stall, f'first body byte after {first:.2f}s of {total:.2f}s: not streamed'


def test_pass_path_compresses(env):
    """Answers that bypass the cache are compressed on the way: a request with
    Authorization (never shared), an answer that may not be stored (the fill's pass
    object), and collapsed viewers told to fetch on their own."""
    sh, origin = env
    origin.route('/p/auth.html', Reply(body=HTML, content_type='text/html',
                                       headers=[('ETag', '"a"')]))
    auth = [('Authorization', 'Bearer t')]
    for coding in ('gzip', 'br'):
        r = req(sh.port, '/p/auth.html', coding, headers=auth)
        assert_compressed(r, coding, HTML, '"a"')
        assert r.header('Transfer-Encoding') == 'chunked'
    r = req(sh.port, '/p/auth.html', 'gzip', method='HEAD', headers=auth)
    assert r.header('Content-Encoding') == 'gzip' and not r.has('Content-Length'), r.headers
    r = req(sh.port, '/p/auth.html', None, headers=auth)
    assert_identity(r, HTML)
    assert origin.count('/p/auth.html') == 4

    # the origin's own 304 on the pass path is not touched
    def cond(q):
        if q.header('if-none-match') == '"a"':
            return Reply(304, headers=[('ETag', '"a"')], content_type=None)
        return Reply(body=HTML, content_type='text/html', headers=[('ETag', '"a"')])
    origin.route('/p/cond.html', cond)
    r = req(sh.port, '/p/cond.html', 'gzip', headers=auth + [('If-None-Match', '"a"')])
    assert r.status == 304 and not r.has('Content-Encoding'), r.headers

    origin.route('/p/nostore.html', Reply(body=HTML, content_type='text/html', pieces=4,
                                          interval=0.05,
                                          headers=[('Cache-Control', 'no-store')]))
    with ThreadPoolExecutor(6) as ex:
        rs = list(ex.map(lambda _: req(sh.port, '/p/nostore.html', 'gzip', timeout=30), range(6)))
    for r in rs:
        assert_compressed(r, 'gzip', HTML)
        assert xcache(r) == 'Miss'
    assert origin.count('/p/nostore.html') == 6


def test_invalidation_covers_every_variant(env):
    sh, origin = env
    origin.route('/inv/a.html', Reply(body=HTML, content_type='text/html'))
    for ae in ('br', 'gzip', None):
        req(sh.port, '/inv/a.html', ae)
        assert xcache(req(sh.port, '/inv/a.html', ae)) == 'Hit'
    r = fetch(sh.admin_port, '/invalidations', method='POST',
              body=json.dumps({'paths': ['/inv/*']}).encode(),
              headers={'Content-Type': 'application/json'})
    assert r.status == 201, r
    for ae in ('br', 'gzip', None):
        assert xcache(req(sh.port, '/inv/a.html', ae)) == 'Miss', ae
    assert origin.count('/inv/a.html') == 6


def test_revalidated_variant_stays_compressed(env):
    """An expired compressed variant is revalidated with the origin's own (strong) ETag;
    the 304 keeps the stored compressed bytes and their weak ETag and Vary."""
    sh, origin = env

    def reval(q):
        hs = [('ETag', '"r1"'), ('Cache-Control', 'max-age=1')]
        if q.header('if-none-match') == '"r1"':
            return Reply(304, headers=hs + [('Vary', 'Origin')], content_type=None)
        return Reply(body=HTML, content_type='text/html', headers=hs)
    origin.route('/rv.html', reval)
    frac = time.time() % 1
    if frac > 0.3:  # stored times are whole seconds: start early in one
        time.sleep(1.02 - frac)
    assert_compressed(req(sh.port, '/rv.html', 'br'), 'br', HTML, '"r1"')
    time.sleep(2.1)  # max-age=1 must run out: nothing to poll for
    r = req(sh.port, '/rv.html', 'br')
    assert xcache(r) == 'RefreshHit', r.headers
    assert origin.last('/rv.html').header('if-none-match') == '"r1"'
    assert_compressed(r, 'br', HTML, '"r1"')
    assert 'Accept-Encoding' in r.header('Vary')
    assert origin.count('/rv.html') == 2


def test_disk_tier_keeps_compressed_variants(shield, module_origin, tmp_path):
    origin = module_origin
    origin.route('/d/x.html', Reply(body=HTML, content_type='text/html', headers=[('ETag', '"d"')]))
    aport = free_port()
    cfg = dict(cache={'disk': {'path': str(tmp_path / 'cache'), 'size': '64M'}},
               admin={'address': f'127.0.0.1:{aport}'})
    sh = shield([http_origin('o', origin)], [behavior('*', 'o', compress=True)], **cfg)
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    sh.admin_port = aport
    for ae in ('br', 'gzip'):
        assert_compressed(req(sh.port, '/d/x.html', ae), ae, HTML, '"d"')

    def on_disk():
        c = stats(sh)['cache']
        return c['disk_objects'] == 2 and c['disk_pending'] == 0
    wait_until(on_disk, 15, what='both variants on disk')
    sh.stop()
    again = Shield(shield.tmp / 'again', sh.conf.read_text(), port=sh.port, name='again')
    shield.all.append(again)
    again.start()
    n = origin.count('/d/x.html')
    for ae in ('br', 'gzip'):
        for _ in range(2):  # read from disk, then from memory
            r = req(again.port, '/d/x.html', ae)
            assert xcache(r) == 'Hit', r.headers
            assert_compressed(r, ae, HTML, '"d"')
    assert origin.count('/d/x.html') == n
