"""Cache engine (TESTING.md "C"): collapsing, ranges and conditionals answered from the
stored object, freshness (CloudFront TTL rules), storability, negative caching, cache
keys, the memory bound and S3-FIFO eviction, and the admin /stats and /invalidations
endpoints.

Every test runs Shield (2 workers) in front of a ScriptedOrigin and asserts on what the
viewers received (status, X-Cache, Age, bytes) and on what reached the origin (request
counts, headers). Where the contract leaves a choice open the CloudFront behaviour from
SPEC.md "Cache behaviour" is expected; each such place says so.
"""

import hashlib
import json
import re
import socket
import struct
import subprocess
import threading
import time
from collections import Counter

import pytest

from conftest import (ALL_METHODS, MIB, SAN, SHIELD_BIN, Conn, ProtocolError, Reply,
                      Shield, assert_aborted, base_config, behavior, det_body, det_sha256, fetch,
                      free_port, get, http_origin, port_open, render_config, request_bytes,
                      parse_head, wait_until, xcache)
from origin import ScriptedOrigin

HTTP_DATE = '%a, %d %b %Y %H:%M:%S GMT'


# ---- helpers -----------------------------------------------------------------------------

def start(shield, origin, behaviors=None, origin_kw=None, **over):
    """Shield (2 workers) with one http origin `o`; behaviors default to a single `*`."""
    bs = behaviors or [behavior('*', 'o')]
    return shield([http_origin('o', origin, **(origin_kw or {}))], bs, **over)


def assert_hit(r, body=None, status=200):
    assert r.status == status, r
    assert xcache(r) == 'Hit', r.headers
    assert re.fullmatch(r'\d+', r.header('Age') or ''), f'no numeric Age on a hit: {r.headers}'
    if body is not None:
        assert r.body == body


def assert_miss(r, body=None, status=200):
    assert r.status == status, r
    assert xcache(r) == 'Miss', r.headers
    if body is not None:
        assert r.body == body


def http_date(t):
    return time.strftime(HTTP_DATE, time.gmtime(t))


def align_to_second(latest=0.3):
    """Stored times and ages are whole seconds (time(NULL)): an object stored at x.99 s
    with max-age=1 is already 1 s old 10 ms later. Tests that expect a hit right after a
    1-second TTL store begin early in a wall-clock second (deliberate timing, not a
    synchronisation)."""
    frac = time.time() % 1
    if frac > latest:
        time.sleep(1.02 - frac)


class Outcome:
    """What one of many concurrent viewers saw."""

    def __init__(self):
        self.resp = None       # Resp (body not kept: see sha/nbytes)
        self.error = None      # exception text if the exchange failed on the client side
        self.sha = None        # SHA-256 of the body bytes received
        self.nbytes = 0
        self.t_first = None    # monotonic time of the first body byte
        self.t_end = None
        self.closed = None     # for a cut body: the connection was closed afterwards
        self.body = None       # the body, when run_clients(keep=...) allows it

    @property
    def status(self):
        return self.resp.status if self.resp else None

    @property
    def xcache(self):
        return xcache(self.resp) if self.resp else None

    def __repr__(self):
        return (f'<Outcome {self.resp!r} err={self.error} bytes={self.nbytes} '
                f'closed={self.closed}>')


def _read_fast(c, sink, deadline, method):
    """Read one response; a plain Content-Length body is streamed with recv_into straight
    into the sink (200 viewers x 20 MiB would otherwise cost seconds of copies)."""
    while b'\r\n\r\n' not in c.buf:
        if not c._fill(deadline):
            raise ProtocolError('closed before a response head')
    i = c.buf.index(b'\r\n\r\n')
    r = parse_head(bytes(c.buf[:i]))
    cl = r.header('content-length')
    if (method != 'GET' or r.status < 200 or r.status in (204, 304) or cl is None
            or r.has('transfer-encoding')):
        return c.read_response(method=method, timeout=max(0.1, deadline - time.monotonic()),
                               sink=sink)
    del c.buf[:i + 4]
    left = int(cl)
    take = min(left, len(c.buf))
    if take:
        sink(bytes(c.buf[:take]))
        del c.buf[:take]
        left -= take
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    while left > 0:
        c.sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            k = c.sock.recv_into(mv, min(left, len(buf)))
        except ConnectionResetError:
            c.eof = c.reset = True
            break
        if k == 0:
            c.eof = True
            break
        sink(mv[:k])
        left -= k
    r.complete = left == 0
    return r


def run_clients(port, n, path, headers=None, method='GET', timeout=30.0, reqs=None, keep=0):
    """n viewers connect first, then send the same request at once (barrier) and read
    their whole response in parallel threads; reqs=[(method, path, headers)] gives each
    viewer its own request instead. Bodies up to `keep` bytes are kept in Outcome.body.
    Bounded: every thread is joined by a deadline and a thread still running is a
    failure. Returns [Outcome] in request order."""
    reqs = reqs or [(method, path, headers)] * n
    n = len(reqs)
    conns = [Conn(port, timeout=timeout) for _ in range(n)]
    outs = [Outcome() for _ in range(n)]
    barrier = threading.Barrier(n)

    def one(c, o, req):
        h = hashlib.sha256()
        body = bytearray()

        def sink(b):
            if o.t_first is None and len(b):
                o.t_first = time.monotonic()
            o.nbytes += len(b)
            h.update(b)
            if o.nbytes <= keep:
                body.extend(b)
        try:
            barrier.wait(15)
            c.send(request_bytes(*req))
            o.resp = _read_fast(c, sink, time.monotonic() + timeout, req[0])
            if o.resp is not None and not o.resp.complete:
                o.closed = c.eof or c.closed_within(3)
        except Exception as e:  # recorded and asserted on by the test
            o.error = repr(e)
        finally:
            o.t_end = time.monotonic()
            o.sha = h.hexdigest()
            o.body = bytes(body) if o.nbytes <= keep else None
            c.close()

    ts = [threading.Thread(target=one, args=(c, o, q), daemon=True)
          for c, o, q in zip(conns, outs, reqs)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout + 20
    for t in ts:
        t.join(max(0.1, deadline - time.monotonic()))
    hung = sum(t.is_alive() for t in ts)
    assert hung == 0, f'{hung} of {n} viewers still running after {timeout + 20:.0f}s'
    return outs


def origin_on_port(port):
    """A ScriptedOrigin listening on a given port (for 'refused now, there later')."""
    o = ScriptedOrigin()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', port))
    s.listen(128)
    s.settimeout(0.2)
    o.sock, o.port = s, port
    t = threading.Thread(target=o._accept_loop, daemon=True, name=f'origin:{port}')
    t.start()
    o._threads.append(t)
    return o


def parse_byteranges(r, body=None):
    """[(content_range, content_type, data)] of a multipart/byteranges body (each part's
    length is taken from its Content-Range, so binary data cannot fool the parser)."""
    m = re.fullmatch(r'multipart/byteranges;\s*boundary=("?)([^";]+)\1', r.header('Content-Type'))
    assert m, r.header('Content-Type')
    delim = b'--' + m.group(2).encode()
    body, pos, parts = r.body if body is None else body, 0, []
    while True:
        j = body.index(delim, pos)
        assert body[pos:j] in (b'', b'\r\n'), f'junk before a delimiter: {body[pos:j][:80]!r}'
        pos = j + len(delim)
        if body[pos:pos + 2] == b'--':
            assert body[pos + 2:] in (b'', b'\r\n'), 'junk after the close delimiter'
            return parts
        assert body[pos:pos + 2] == b'\r\n'
        k = body.index(b'\r\n\r\n', pos + 2)
        hs = {}
        for ln in body[pos + 2:k].split(b'\r\n'):
            n, _, v = ln.decode('latin-1').partition(':')
            hs[n.strip().lower()] = v.strip()
        pos = k + 4
        cr = re.fullmatch(r'bytes (\d+)-(\d+)/(\d+)', hs.get('content-range', ''))
        assert cr, f'part without a valid Content-Range: {hs}'
        n = int(cr.group(2)) - int(cr.group(1)) + 1
        parts.append((hs['content-range'], hs.get('content-type'), body[pos:pos + n]))
        pos += n


# ---- collapsing --------------------------------------------------------------------------

N_VIEWERS = 100 if SAN else 200
BIG = (4 if SAN else 20) * MIB


def test_collapse_many_viewers_one_origin_fetch(shield, origin):
    # ~1 s fill: the viewers (all connected before they send) join it while it runs,
    # across both workers.
    origin.route('/big', Reply(size=BIG, seed=11, pieces=10, interval=0.1))
    sh = start(shield, origin)
    outs = run_clients(sh.port, N_VIEWERS, '/big', timeout=60)
    want = det_sha256(BIG, 11)
    bad = [o for o in outs if o.error or o.status != 200 or not o.resp.complete or o.sha != want]
    assert not bad, f'{len(bad)} of {N_VIEWERS} viewers got a bad answer, e.g. {bad[:3]}'
    assert origin.count('/big') == 1, f'{origin.count("/big")} origin fetches'
    assert Counter(o.xcache for o in outs) == {'Miss': 1, 'Hit': N_VIEWERS - 1}
    r = get(sh.port, '/big')
    assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == want
    assert_hit(r)
    assert origin.count('/big') == 1


def test_joiners_stream_before_fill_completes(shield, origin):
    size = (8 if SAN else 20) * MIB
    pieces, interval = 20, 0.2  # the origin's last piece leaves >= 3.8 s after its request
    origin.route('/slowbig', Reply(size=size, seed=12, pieces=pieces, interval=interval))
    sh = start(shield, origin)
    outs = run_clients(sh.port, 20, '/slowbig', timeout=30)
    assert origin.count('/slowbig') == 1
    want = det_sha256(size, 12)
    assert all(o.status == 200 and o.resp.complete and o.sha == want for o in outs), outs
    origin_done = origin.last('/slowbig').time + (pieces - 1) * interval  # lower bound
    joiners = [o for o in outs if o.xcache == 'Hit']
    assert len(joiners) == 19, Counter(o.xcache for o in outs)
    # Structural: every joiner had body bytes while the origin was still sending (with
    # a margin of > 1 s), and nobody could finish before the origin did.
    late = [round(o.t_first - origin_done, 2) for o in outs if o.t_first > origin_done - 1.0]
    assert not late, f'first body byte not streamed during the fill (s after origin end): {late}'
    assert min(o.t_end for o in outs) >= origin_done - 0.05


def test_joiners_leaving_midway_do_not_disturb_the_others(shield, origin):
    """Half of 20 viewers of a slow fill drop their connection after the first bytes
    (some with RST): the others still get every byte, and the object is stored."""
    size = 4 * MIB
    origin.route('/leave', Reply(size=size, seed=14, pieces=8, interval=0.1))
    sh = start(shield, origin)
    conns = [Conn(sh.port, timeout=15) for _ in range(20)]
    for c in conns:
        c.send(request_bytes('GET', '/leave'))
    for i, c in enumerate(conns[:10]):
        assert c.wait_bytes(b'\r\n\r\n', 5), i
        if i % 2:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        c.close()
    want = det_sha256(size, 14)
    for c in conns[10:]:
        h = hashlib.sha256()
        r = c.read_response(sink=h.update)
        c.close()
        assert r.status == 200 and r.complete and h.hexdigest() == want, r
    r = get(sh.port, '/leave')
    assert_hit(r)
    assert hashlib.sha256(r.body).hexdigest() == want
    assert origin.count('/leave') == 1


def test_fill_continues_after_first_viewer_disconnects(shield, origin):
    size = 4 * MIB
    origin.route('/abandon', Reply(size=size, seed=13, pieces=8, interval=0.15))  # ~1 s
    sh = start(shield, origin)
    c = Conn(sh.port, timeout=10)
    c.send(request_bytes('GET', '/abandon'))
    assert c.wait_bytes(b'\r\n\r\n', 5), 'no response head'
    assert b'\r\nX-Cache: Miss from ' in bytes(c.buf)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    c.close()  # RST: the only viewer is gone at once, mid-body

    # A HEAD is answered from the object while it is indexed (joined while filling, a hit
    # with Age once complete) and goes to the origin once it is gone: it observes the fill
    # without keeping it alive.
    def probe():
        r = fetch(sh.port, '/abandon', method='HEAD')
        if origin.count('/abandon') > 1:
            return 'abandoned'
        return 'complete' if r.has('Age') else None
    assert wait_until(probe, 15, interval=0.05, what='the fill to complete') == 'complete'
    r = get(sh.port, '/abandon')
    assert_hit(r)
    assert hashlib.sha256(r.body).hexdigest() == det_sha256(size, 13)
    assert [q.method for q in origin.requests] == ['GET']


# ---- ranges and conditionals, answered from the object -----------------------------------

R_SIZE = 1000
R_BODY = det_body(R_SIZE, 21)
R_ETAG = '"range-v1"'
R_LM_T = 1445412480  # Wed, 21 Oct 2015 07:28:00 GMT
R_LM = http_date(R_LM_T)


@pytest.fixture(scope='module')
def robj(module_shield, module_origin):
    """A cached 1000-byte object with ETag and Last-Modified: (shield, origin)."""
    module_origin.route('/r/obj', Reply(body=R_BODY, headers=[('ETag', R_ETAG),
                                                              ('Last-Modified', R_LM)]))
    sh = module_shield([http_origin('o', module_origin)], [behavior('*', 'o')])
    r = get(sh.port, '/r/obj')
    assert_miss(r, R_BODY)
    assert_hit(get(sh.port, '/r/obj'), R_BODY)
    return sh, module_origin


def _get_cached(robj, headers):
    sh, o = robj
    r = get(sh.port, '/r/obj', headers=headers)
    assert o.count('/r/obj') == 1, 'a request for the cached object reached the origin'
    return r


@pytest.mark.parametrize('rng,start_,end', [
    ('bytes=0-8', 0, 8),
    ('bytes=-10', 990, 999),
    ('bytes=990-', 990, 999),
    ('bytes=995-5000', 995, 999),     # past the end: clamped
    ('bytes=0-0', 0, 0),
    ('bytes=-5000', 0, 999),          # suffix longer than the object: all of it
], ids=['0-8', 'suffix-10', '990-', 'clamped', 'first-byte', 'long-suffix'])
def test_range_single(robj, rng, start_, end):
    r = _get_cached(robj, {'Range': rng})
    assert r.status == 206, r
    assert r.header('Content-Range') == f'bytes {start_}-{end}/{R_SIZE}'
    assert r.header('Content-Length') == str(end - start_ + 1)
    assert r.body == R_BODY[start_:end + 1]
    assert xcache(r) == 'Hit'


@pytest.mark.parametrize('rng', ['bytes=1000-', 'bytes=5000-6000', 'bytes=-0'])
def test_range_unsatisfiable_416(robj, rng):
    r = _get_cached(robj, {'Range': rng})
    assert r.status == 416, r
    assert r.header('Content-Range') == f'bytes */{R_SIZE}'
    assert R_BODY[:16] not in r.body


@pytest.mark.parametrize('rng', ['bytes=a-b', 'bytes=5-3', 'bytes=0-5,3-8', 'bytes=6-7,0-1',
                                 'items=0-8', 'bytes='],
                         ids=['non-numeric', 'descending', 'overlapping', 'out-of-order',
                              'other-unit', 'empty'])
def test_range_malformed_full_200(robj, rng):
    # CloudFront (SPEC.md): malformed, overlapping or descending ranges => 200 full body.
    r = _get_cached(robj, {'Range': rng})
    assert r.status == 200, r
    assert r.body == R_BODY
    assert not r.has('Content-Range')
    assert_hit(r)


def test_range_multiple_multipart(robj):
    r = _get_cached(robj, {'Range': 'bytes=0-1,5-6,990-'})
    assert r.status == 206, r
    assert r.header('Content-Type').startswith('multipart/byteranges; boundary=')
    assert r.header('Content-Length') == str(len(r.body))
    assert not r.has('Content-Range')
    parts = parse_byteranges(r)
    assert [(cr, ct) for cr, ct, _ in parts] == [
        (f'bytes 0-1/{R_SIZE}', 'application/octet-stream'),
        (f'bytes 5-6/{R_SIZE}', 'application/octet-stream'),
        (f'bytes 990-999/{R_SIZE}', 'application/octet-stream')]
    assert [d for _, _, d in parts] == [R_BODY[0:2], R_BODY[5:7], R_BODY[990:]]
    assert xcache(r) == 'Hit'


@pytest.mark.parametrize('if_range,ranged', [
    (R_ETAG, True),
    ('"other"', False),
    ('W/"range-v1"', False),          # a weak tag never matches for If-Range
    (R_LM, True),                     # the exact Last-Modified date
    (http_date(R_LM_T + 60), False),  # any other date
], ids=['etag', 'other-etag', 'weak-etag', 'date', 'other-date'])
def test_if_range(robj, if_range, ranged):
    r = _get_cached(robj, {'Range': 'bytes=0-8', 'If-Range': if_range})
    if ranged:
        assert r.status == 206 and r.body == R_BODY[:9], r
        assert r.header('Content-Range') == f'bytes 0-8/{R_SIZE}'
    else:
        assert r.status == 200 and r.body == R_BODY, r
    assert xcache(r) == 'Hit'


@pytest.mark.parametrize('headers,status', [
    ({'If-None-Match': R_ETAG}, 304),
    ({'If-None-Match': f'"a", {R_ETAG}'}, 304),
    ({'If-None-Match': '*'}, 304),
    ({'If-None-Match': '"other"'}, 200),
    ({'If-Modified-Since': http_date(R_LM_T + 3600)}, 304),
    ({'If-Modified-Since': R_LM}, 304),
    ({'If-Modified-Since': http_date(R_LM_T - 3600)}, 200),
    # If-None-Match that does not match wins over a matching If-Modified-Since
    ({'If-None-Match': '"other"', 'If-Modified-Since': http_date(R_LM_T + 3600)}, 200),
    ({'If-Match': '"other"'}, 412),
    ({'If-Match': R_ETAG}, 200),
    ({'If-Unmodified-Since': http_date(R_LM_T - 3600)}, 412),
    ({'If-Unmodified-Since': http_date(R_LM_T + 3600)}, 200),
], ids=['inm-etag', 'inm-list', 'inm-star', 'inm-other', 'ims-later', 'ims-equal', 'ims-earlier',
        'inm-beats-ims', 'im-other', 'im-etag', 'ius-earlier', 'ius-later'])
def test_conditionals_on_hit(robj, headers, status):
    r = _get_cached(robj, headers)
    assert r.status == status, r
    if status == 304:
        assert r.body == b''
        assert xcache(r) == 'Hit'
        assert r.header('ETag') == R_ETAG, 'a 304 must carry the validator'
    elif status == 200:
        assert r.body == R_BODY
        assert_hit(r)
    else:
        assert R_BODY[:16] not in r.body


def test_range_on_cold_key_fills_whole_object_without_validators(shield, origin):
    size = 3 * MIB
    origin.route('/cold', Reply(size=size, seed=22, headers=[('ETag', '"c1"')]))
    sh = start(shield, origin)
    lo, hi = 2 * MIB - 100, 2 * MIB + 99  # across a 1 MiB chunk boundary
    # Every precondition here passes against the object, so the viewer gets its 206;
    # none of them may reach the origin: the fill is for everybody.
    r = get(sh.port, '/cold', headers={
        'Range': f'bytes={lo}-{hi}', 'If-Range': '"c1"', 'If-Match': '"c1"',
        'If-None-Match': '"zzz"', 'If-Modified-Since': http_date(time.time() - 86400),
        'If-Unmodified-Since': http_date(time.time() + 86400)})
    assert r.status == 206, r
    assert r.header('Content-Range') == f'bytes {lo}-{hi}/{size}'
    assert r.body == det_body(size, 22)[lo:hi + 1]
    assert xcache(r) == 'Miss'
    q = origin.last('/cold')
    sent = [k for k, _ in q.headers if k.lower() in (
        'range', 'if-range', 'if-match', 'if-none-match', 'if-modified-since',
        'if-unmodified-since')]
    assert sent == [], f'the fill forwarded viewer validators: {q.headers}'
    r = get(sh.port, '/cold')
    assert_hit(r)
    assert hashlib.sha256(r.body).hexdigest() == det_sha256(size, 22)
    r = get(sh.port, '/cold', headers={'Range': 'bytes=-3'})
    assert (r.status, r.body) == (206, det_body(size, 22)[-3:])
    assert origin.count('/cold') == 1


def test_ranges_and_conditionals_of_joiners_on_a_fill(shield, origin):
    """Viewers that join a fill before its head arrived get their own Range and
    conditional answers computed from the object, bytes streamed as they arrive."""
    size = 3 * MIB
    body = det_body(size, 23)
    lm = http_date(R_LM_T)
    origin.route('/j', Reply(size=size, seed=23, stall_head=0.5, pieces=6, interval=0.1,
                             headers=[('ETag', '"j1"'), ('Last-Modified', lm)]))
    sh = start(shield, origin)
    with Conn(sh.port, timeout=20) as owner:
        owner.send(request_bytes('GET', '/j'))
        assert origin.wait_requests(1, 5, path='/j')  # the fill exists: the rest join it
        cases = [
            ({'Range': 'bytes=0-8'}, 206, body[:9]),
            ({'Range': 'bytes=-10'}, 206, body[-10:]),
            ({'Range': f'bytes={MIB - 5}-{MIB + 4}'}, 206, body[MIB - 5:MIB + 5]),
            ({'Range': f'bytes={size}-'}, 416, None),
            ({'Range': 'bytes=5-3'}, 200, body),
            ({'If-None-Match': '"j1"'}, 304, b''),
            ({'If-Modified-Since': lm}, 304, b''),
            ({'If-Match': '"other"'}, 412, None),
            ({'Range': 'bytes=0-8', 'If-Range': '"other"'}, 200, body),
            ({'Range': 'bytes=0-1,-2'}, 'multipart', None),
            ({}, 200, body),
        ]
        reqs = [('GET', '/j', h) for h, _, _ in cases] + [('HEAD', '/j', None)]
        outs = run_clients(sh.port, 0, None, reqs=reqs, timeout=20, keep=size)
        r = owner.read_response()
    assert r.status == 200 and r.body == body and xcache(r) == 'Miss'
    for (h, status, want), o in zip(cases, outs):
        assert o.error is None and o.resp is not None, (h, o)
        assert xcache(o.resp) == 'Hit', (h, o.resp.headers)
        if status == 'multipart':
            assert o.status == 206, (h, o)
            parts = parse_byteranges(o.resp, o.body)
            assert [(cr, d) for cr, _, d in parts] == [
                (f'bytes 0-1/{size}', body[:2]), (f'bytes {size - 2}-{size - 1}/{size}',
                                                  body[-2:])], h
            continue
        assert o.status == status, (h, o)
        if status == 416:
            assert o.resp.header('Content-Range') == f'bytes */{size}'
        if want is not None:
            assert o.body == want, (h, o.nbytes)
    head = outs[-1]
    assert head.status == 200 and head.resp.header('Content-Length') == str(size)
    assert xcache(head.resp) == 'Hit' and head.nbytes == 0
    assert origin.count('/j') == 1 and origin.requests[0].method == 'GET'


def test_empty_object_cached(shield, origin):
    origin.route('/empty', Reply(body=b'', headers=[('ETag', '"e0"')]))
    sh = start(shield, origin)
    r = get(sh.port, '/empty')
    assert_miss(r, b'')
    assert r.header('Content-Length') == '0'
    r = get(sh.port, '/empty')
    assert_hit(r, b'')
    assert r.header('Content-Length') == '0'
    r = get(sh.port, '/empty', headers={'Range': 'bytes=0-8'})
    assert r.status == 416 and r.header('Content-Range') == 'bytes */0', r
    r = get(sh.port, '/empty', headers={'If-None-Match': '"e0"'})
    assert r.status == 304
    assert origin.count('/empty') == 1


def test_keepalive_through_every_kind_of_cache_answer(shield, origin):
    """One connection, many answers from the cache: each one framed exactly (the next
    response parses), the connection stays usable, the origin sees two fetches."""
    origin.route('/k', Reply(body=R_BODY, headers=[('ETag', R_ETAG), ('Last-Modified', R_LM)]))
    origin.route('/nf', Reply(404, b'not here', content_type='text/plain'))
    sh = start(shield, origin)
    steps = [
        ('GET', '/k', {}, 200, R_BODY, 'Miss'),
        ('GET', '/k', {}, 200, R_BODY, 'Hit'),
        ('GET', '/k', {'If-None-Match': R_ETAG}, 304, b'', 'Hit'),
        ('GET', '/k', {'Range': 'bytes=0-8'}, 206, R_BODY[:9], 'Hit'),
        ('GET', '/k', {'Range': 'bytes=0-1,5-6'}, 206, None, 'Hit'),
        ('GET', '/k', {'Range': 'bytes=5000-'}, 416, None, None),
        ('GET', '/k', {'If-Match': '"nope"'}, 412, None, None),
        ('HEAD', '/k', {}, 200, b'', 'Hit'),
        ('GET', '/k', {'Range': 'bytes=a-b'}, 200, R_BODY, 'Hit'),
        ('GET', '/nf', {}, 404, b'not here', 'Miss'),
        ('GET', '/nf', {}, 404, b'not here', 'Hit'),
        ('HEAD', '/nf', {}, 404, b'', 'Hit'),
        ('GET', '/nf', {'Range': 'bytes=0-1'}, 404, b'not here', 'Hit'),
        ('GET', '/k', {}, 200, R_BODY, 'Hit'),
    ]
    with Conn(sh.port, timeout=10) as c:
        for method, path, h, status, body, xc in steps:
            c.send(request_bytes(method, path, h))
            r = c.read_response(method=method)
            assert r is not None and r.complete, (method, path, h, r)
            assert r.status == status, (method, path, h, r)
            if body is not None:
                assert r.body == body, (method, path, h)
            if xc:
                assert xcache(r) == xc, (method, path, h, r.headers)
            assert r.header('Connection') != 'close', (method, path, h, r.headers)
        # pipelined: three requests in one write, three answers in order
        c.send(request_bytes('GET', '/k', {'Range': 'bytes=-1'}) + request_bytes('HEAD', '/k')
               + request_bytes('GET', '/nf'))
        assert (c.read_response().body, c.read_response(method='HEAD').status,
                c.read_response().body) == (R_BODY[-1:], 200, b'not here')
    assert (origin.count('/k'), origin.count('/nf')) == (1, 1)


def test_conditional_on_cold_key_still_fills(shield, origin):
    """The viewer that starts a fill may get a 304 or a 9-byte 206 and leave at once;
    the fill goes on and stores the whole object."""
    origin.route('/c304', Reply(size=2 * MIB, seed=24, pieces=4, interval=0.1,
                                headers=[('ETag', '"c304"')]))
    origin.route('/c206', Reply(size=2 * MIB, seed=25, pieces=4, interval=0.1))
    sh = start(shield, origin)
    r = get(sh.port, '/c304', headers={'If-None-Match': '"c304"'})
    assert (r.status, r.body, xcache(r)) == (304, b'', 'Miss')
    r = get(sh.port, '/c206', headers={'Range': 'bytes=0-8'})
    assert (r.status, r.body, xcache(r)) == (206, det_body(9, 25), 'Miss')
    for p, seed in (('/c304', 24), ('/c206', 25)):
        r = get(sh.port, p)  # joins the fill or hits the stored object
        assert r.status == 200 and xcache(r) == 'Hit'
        assert hashlib.sha256(r.body).hexdigest() == det_sha256(2 * MIB, seed)
        assert origin.count(p) == 1


# ---- HEAD, Authorization, other methods --------------------------------------------------

def test_head_miss_goes_to_origin_as_head_and_stores_nothing(shield, origin):
    origin.route('/h', Reply(body=b'0123456789', headers=[('ETag', '"h1"')]))
    sh = start(shield, origin)
    r = fetch(sh.port, '/h', method='HEAD')
    assert r.status == 200 and r.header('Content-Length') == '10' and r.body == b''
    assert xcache(r) == 'Miss'
    assert [q.method for q in origin.requests] == ['HEAD']
    r = get(sh.port, '/h')  # HEAD stored nothing, certainly not an empty body for GET
    assert_miss(r, b'0123456789')
    r = fetch(sh.port, '/h', method='HEAD')
    assert_hit(r)
    assert r.header('Content-Length') == '10' and r.header('ETag') == '"h1"'
    assert_hit(get(sh.port, '/h'), b'0123456789')
    assert [q.method for q in origin.requests] == ['HEAD', 'GET']


def test_authorization_bypasses_cache(shield, origin):
    origin.route('/auth', Reply(body=b'secret', headers=[('Cache-Control', 'max-age=60')]))
    sh = start(shield, origin)
    auth = {'Authorization': 'Bearer abc'}
    assert_miss(get(sh.port, '/auth', headers=auth), b'secret')
    assert_miss(get(sh.port, '/auth', headers=auth), b'secret')
    assert origin.count('/auth') == 2
    assert_miss(get(sh.port, '/auth'), b'secret')  # nothing was stored for the others
    assert_hit(get(sh.port, '/auth'), b'secret')
    assert origin.count('/auth') == 3
    assert_miss(get(sh.port, '/auth', headers=auth), b'secret')  # never served from cache
    assert origin.count('/auth') == 4


@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE', 'PATCH'])
def test_other_methods_bypass_cache(shield, origin, method):
    origin.route('/m', Reply(body=b'stored', headers=[('Cache-Control', 'max-age=60')]))
    sh = start(shield, origin, behaviors=[behavior('*', 'o', allowed_methods=ALL_METHODS)])
    assert_miss(get(sh.port, '/m'), b'stored')
    for i in range(2):
        r = fetch(sh.port, '/m', method=method, body=b'x')
        assert r.status == 200 and xcache(r) != 'Hit', r.headers
        assert origin.count('/m') == 2 + i
    assert origin.requests[-1].method == method
    assert_hit(get(sh.port, '/m'), b'stored')  # the GET object is unaffected
    assert origin.count('/m') == 3


# ---- freshness ---------------------------------------------------------------------------

TTL_BEHAVIORS = [
    behavior('/d1/*', 'o', default_ttl=1),
    behavior('/mx/*', 'o', default_ttl=1, max_ttl=1),
    behavior('/m2/*', 'o', min_ttl=2),
    behavior('*', 'o')]


def _ttl_shield(shield, origin):
    return start(shield, origin, behaviors=TTL_BEHAVIORS)


# Objects stored once, then observed 1.1 s later (one sleep for every expiry test):
# path -> (reply headers, status, fresh after 1.1 s)
AGED = {
    '/ma1': ([('Cache-Control', 'max-age=1')], 200, False),
    '/ma60': ([('Cache-Control', 'public, max-age=60')], 200, True),
    '/s60': ([('Cache-Control', 'max-age=1, s-maxage=60')], 200, True),   # s-maxage wins
    '/s1': ([('Cache-Control', 's-maxage=1, max-age=60')], 200, False),
    '/d1/plain': ([], 200, False),                                          # DefaultTTL 1
    '/d1/ma': ([('Cache-Control', 'max-age=60')], 200, True),
    '/other': ([], 200, True),                                              # DefaultTTL 86400
    '/mx/big': ([('Cache-Control', 'max-age=3600')], 200, False),           # MaxTTL 1 clamps
    '/mx/exp': ([('Expires', http_date(time.time() + 3600))], 200, False),
    '/age': ([('Cache-Control', 'max-age=30')], 200, True),
    '/two-cc': ([('Cache-Control', 'max-age=1'), ('Cache-Control', 's-maxage=60')], 200, True),
    '/exp-ma': ([('Expires', http_date(time.time() - 60)), ('Cache-Control', 'max-age=60')],
                200, True),                                                 # max-age beats Expires
    '/herd': ([('Cache-Control', 'max-age=1')], 200, False),
    # errors are cached for max(10 s, max-age): max-age=1 does not shorten it
    '/e404': ([('Cache-Control', 'max-age=1')], 404, True),
    '/e500': ([('Cache-Control', 'max-age=1')], 500, True),
}


@pytest.fixture(scope='module')
def aged(module_shield, module_origin):
    """A Shield whose AGED objects were stored (Miss, then Hit) 1.1 s ago:
    (shield, origin, {path: the Age of the hit right after storing})."""
    for p, (hs, status, _) in AGED.items():
        # stall_head on the herd's refetch: the concurrent viewers join its fill
        module_origin.route(p, Reply(status, f'body of {p}'.encode(), hs,
                                     stall_head=0.3 if p == '/herd' else 0,
                                     content_type='text/plain'))
    sh = module_shield([http_origin('o', module_origin)], TTL_BEHAVIORS)
    align_to_second()
    ages = {}
    for p, (_, status, _) in AGED.items():
        assert_miss(get(sh.port, p), f'body of {p}'.encode(), status)
        r = get(sh.port, p)
        assert_hit(r, f'body of {p}'.encode(), status)
        ages[p] = int(r.header('Age'))
    time.sleep(1.1)  # let the 1 s TTLs pass
    return sh, module_origin, ages


def _check_aged(aged, paths):
    sh, o, _ = aged
    got = {}
    for p in paths:
        r = get(sh.port, p)
        assert r.status == AGED[p][1] and r.body == f'body of {p}'.encode(), (p, r)
        got[p] = (xcache(r), o.count(p))
    want = {p: ('Hit', 1) if AGED[p][2] else ('Miss', 2) for p in paths}
    assert got == want


def test_max_age_expiry(aged):
    _check_aged(aged, ['/ma1', '/ma60'])


def test_s_maxage_wins_over_max_age(aged):
    _check_aged(aged, ['/s60', '/s1', '/two-cc'])


def test_max_age_wins_over_expires(aged):
    _check_aged(aged, ['/exp-ma'])


def test_default_ttl_without_headers(aged):
    _check_aged(aged, ['/d1/plain', '/d1/ma', '/other'])


def test_max_ttl_clamps_max_age_and_expires(aged):
    _check_aged(aged, ['/mx/big', '/mx/exp'])


def test_error_caching_minimum_10s(aged):
    _check_aged(aged, ['/e404', '/e500'])


def test_age_increases_on_hits(aged):
    sh, o, ages = aged
    assert ages['/age'] == 0
    r = get(sh.port, '/age')
    assert_hit(r, b'body of /age')
    assert 1 <= int(r.header('Age')) <= 3, r.headers
    assert o.count('/age') == 1


def test_expired_key_refetched_once(aged):
    """50 viewers at once on an expired key: one refetch, the rest join it."""
    sh, o, _ = aged
    outs = run_clients(sh.port, 50, '/herd', timeout=10, keep=100)
    assert all(x.status == 200 and x.body == b'body of /herd' for x in outs), outs
    assert Counter(x.xcache for x in outs) == {'Miss': 1, 'Hit': 49}
    assert o.count('/herd') == 2


def test_origin_age_is_added(shield, origin):
    # RFC 9111 4.2.3 (what CloudFront does too): the origin's Age counts toward the age.
    origin.route('/oage', Reply(body=b'x', headers=[('Cache-Control', 'max-age=600'),
                                                    ('Age', '100')]))
    sh = start(shield, origin)
    align_to_second()
    get(sh.port, '/oage')
    r = get(sh.port, '/oage')
    assert_hit(r)
    assert int(r.header('Age')) in (100, 101)


def test_origin_age_beyond_max_age_not_fresh(shield, origin):
    origin.route('/oldage', Reply(body=b'x', headers=[('Cache-Control', 'max-age=60'),
                                                      ('Age', '120')]))
    sh = start(shield, origin)
    assert_miss(get(sh.port, '/oldage'))
    assert_miss(get(sh.port, '/oldage'))
    assert origin.count('/oldage') == 2


@pytest.mark.parametrize('cc', ['no-store', 'private', 'no-cache', 'private, max-age=60',
                                'no-cache, max-age=60'])
def test_uncacheable_directives_and_min_ttl(shield, origin, cc):
    # SPEC.md: not cached when MinTTL = 0; cached for MinTTL when MinTTL > 0.
    origin.route('/p0', Reply(body=b'zero', headers=[('Cache-Control', cc)]))
    origin.route('/m2/p', Reply(body=b'two', headers=[('Cache-Control', cc)]))
    sh = _ttl_shield(shield, origin)
    align_to_second()
    assert_miss(get(sh.port, '/p0'), b'zero')
    assert_miss(get(sh.port, '/p0'), b'zero')
    assert origin.count('/p0') == 2
    assert_miss(get(sh.port, '/m2/p'), b'two')
    assert_hit(get(sh.port, '/m2/p'), b'two')
    assert origin.count('/m2/p') == 1


def test_vary_star_never_cached(shield, origin):
    origin.route('/vs', Reply(body=b'v', headers=[('Cache-Control', 'max-age=60'), ('Vary', '*')]))
    origin.route('/m2/vs', Reply(body=b'v', headers=[('Vary', '*')]))
    sh = _ttl_shield(shield, origin)
    for p in ('/vs', '/m2/vs'):  # not even when MinTTL > 0
        assert_miss(get(sh.port, p), b'v')
        assert_miss(get(sh.port, p), b'v')
        assert origin.count(p) == 2


def test_expires_and_zero_ttl(shield, origin):
    now = time.time()
    past = [('Expires', http_date(now - 3600))]
    origin.route('/past', Reply(body=b'p', headers=past))
    origin.route('/bad', Reply(body=b'b', headers=[('Expires', '0')]))  # invalid => expired
    origin.route('/ma0', Reply(body=b'z', headers=[('Cache-Control', 'max-age=0')]))
    origin.route('/future', Reply(body=b'f', headers=[('Expires', http_date(now + 3600))]))
    origin.route('/m2/past', Reply(body=b'm', headers=past))
    sh = _ttl_shield(shield, origin)
    align_to_second()
    for p in ('/past', '/bad', '/ma0'):  # TTL 0: never served from cache
        assert_miss(get(sh.port, p))
        assert_miss(get(sh.port, p))
        assert origin.count(p) == 2, p
    assert_miss(get(sh.port, '/future'), b'f')
    assert_hit(get(sh.port, '/future'), b'f')
    assert origin.count('/future') == 1
    # SPEC.md: Expires is clamped to [MinTTL, MaxTTL], so MinTTL 2 keeps even a past one
    assert_miss(get(sh.port, '/m2/past'), b'm')
    assert_hit(get(sh.port, '/m2/past'), b'm')
    assert origin.count('/m2/past') == 1


# ---- responses that must not be shared ---------------------------------------------------

NOT_STORABLE = {
    'private': dict(headers=[('Cache-Control', 'private')]),
    'no-store': dict(headers=[('Cache-Control', 'no-store')]),
    'vary-star': dict(headers=[('Vary', '*')]),
    'chunked': dict(chunked=True, chunk=100_000),
    'close-delimited': dict(no_length=True),
    'too-large': dict(),  # 2 MiB with max_object_size 1M
    'larger-than-memory': dict(),  # 10 MiB: fits max_object_size, not the 8 MiB tier
}


@pytest.mark.parametrize('kind', list(NOT_STORABLE))
def test_not_storable_never_shared(shield, origin, kind):
    """10 viewers at once on a slow unstorable answer: each gets its own origin fetch
    (waiters that joined before the head are sent on their own) and exact bytes."""
    size = {'too-large': 2 * MIB, 'larger-than-memory': 10 * MIB}.get(kind, MIB)
    seed = 30 + list(NOT_STORABLE).index(kind)
    origin.route('/ns', Reply(size=size, seed=seed, stall_head=0.3, pieces=4, interval=0.05,
                              **NOT_STORABLE[kind]))
    cache = ({'memory_size': '8M', 'max_object_size': '64M'} if kind == 'larger-than-memory'
             else {'max_object_size': '1M'})
    sh = start(shield, origin, cache=cache)
    outs = run_clients(sh.port, 10, '/ns', timeout=20)
    want = det_sha256(size, seed)
    assert all(o.status == 200 and o.resp.complete and o.sha == want for o in outs), outs
    assert origin.count('/ns') == 10
    # CloudFront reports an uncacheable answer as a Miss to every viewer.
    assert Counter(o.xcache for o in outs) == {'Miss': 10}
    r = get(sh.port, '/ns')
    assert r.status == 200 and xcache(r) == 'Miss' and hashlib.sha256(r.body).hexdigest() == want
    assert origin.count('/ns') == 11


# ---- negative caching --------------------------------------------------------------------

@pytest.mark.parametrize('status,headers,cached', [
    (404, [], True),
    (500, [], True),
    (503, [], True),
    (502, [], True),
    (403, [], False),
    (403, [('Cache-Control', 'max-age=60')], True),
    (400, [], False),
    (400, [('Cache-Control', 's-maxage=60')], True),
    (503, [('Cache-Control', 'no-store')], True),  # SPEC: ignored for 5xx (10 s regardless)
    (404, [('Cache-Control', 'no-store')], False),  # ... but honoured for 404
], ids=['404', '500', '503', '502', '403', '403-max-age', '400', '400-s-maxage',
        '503-no-store', '404-no-store'])
def test_negative_caching(shield, origin, status, headers, cached):
    body = f'error {status}'.encode()
    origin.route('/e', Reply(status, body, headers, content_type='text/plain'))
    sh = start(shield, origin)
    r = get(sh.port, '/e')
    assert (r.status, r.body, xcache(r)) == (status, body, 'Miss')
    r = get(sh.port, '/e')
    assert (r.status, r.body) == (status, body)
    assert xcache(r) == ('Hit' if cached else 'Miss')
    assert origin.count('/e') == (1 if cached else 2)


# ---- origin failures through a fill ------------------------------------------------------

def test_connection_refused_502_not_cached(shield):
    port = free_port()
    sh = shield([http_origin('o', f'http://127.0.0.1:{port}', connect_timeout='1s')],
                [behavior('*', 'o')])
    t0 = time.monotonic()
    r = get(sh.port, '/x')
    assert r.status == 502 and xcache(r) == 'Error', r.headers
    outs = run_clients(sh.port, 10, '/x', timeout=10)
    assert [(o.status, o.xcache) for o in outs] == [(502, 'Error')] * 10, outs
    assert time.monotonic() - t0 < 8
    o = origin_on_port(port)
    try:
        r = get(sh.port, '/x')  # the 502 was not cached: this one reaches the origin
        assert_miss(r, b'origin:/x')
        assert o.count('/x') == 1
        assert_hit(get(sh.port, '/x'), b'origin:/x')
    finally:
        o.stop()


def test_truncated_body_not_cached(shield, origin):
    origin.route('/cut', Reply(size=MIB, seed=41, truncate=300_000))
    sh = start(shield, origin)
    for n in (1, 2):
        with Conn(sh.port, timeout=10) as c:
            c.send(request_bytes('GET', '/cut'))
            r = assert_aborted(c, MIB)
        assert r is None or r.status >= 500 or xcache(r) == 'Miss'
        assert origin.count('/cut') == n
    origin.route('/cut', Reply(size=MIB, seed=41))  # the origin recovers
    r = get(sh.port, '/cut')
    assert_miss(r, det_body(MIB, 41))
    assert_hit(get(sh.port, '/cut'), det_body(MIB, 41))
    assert origin.count('/cut') == 3


@pytest.mark.parametrize('fault', ['truncate', 'reset'])
def test_waiters_on_failing_fill_all_end(shield, origin, fault):
    size = 4 * MIB
    origin.route('/fail', Reply(size=size, seed=42, pieces=8, interval=0.1,
                                **{fault: 2 * MIB}))
    sh = start(shield, origin)
    t0 = time.monotonic()
    outs = run_clients(sh.port, 20, '/fail', timeout=10)
    took = time.monotonic() - t0
    assert origin.count('/fail') == 1
    for o in outs:
        assert o.error is None or 'Reset' in o.error or 'closed' in o.error, o
        if o.resp is None:
            continue
        if o.status != 200:
            assert o.status in (502, 504), o
        else:  # cut short, and the connection closed: never a clean end
            assert not o.resp.complete and o.nbytes < size and o.closed, o
    assert took < 8, f'viewers released only after {took:.1f}s'
    r = get(sh.port, '/fail', timeout=10)  # nothing cached: a new fill
    assert r.status == 200 and not r.complete and xcache(r) == 'Miss'
    assert origin.count('/fail') == 2


def test_origin_500_collapsed_and_cached(shield, origin):
    origin.route('/boom', Reply(500, b'boom', stall_head=0.3, content_type='text/plain'))
    sh = start(shield, origin)
    outs = run_clients(sh.port, 20, '/boom', timeout=10, keep=100)
    assert [(o.status, o.body) for o in outs] == [(500, b'boom')] * 20, outs
    assert Counter(o.xcache for o in outs) == {'Miss': 1, 'Hit': 19}
    assert origin.count('/boom') == 1
    r = get(sh.port, '/boom')
    assert (r.status, r.body, xcache(r)) == (500, b'boom', 'Hit')


def test_waiters_on_fill_without_first_byte_all_504(shield, origin):
    origin.route('/late', Reply(body=b'too late', stall_head=10))
    # the first-byte deadline is connect_timeout + read_timeout (proxy/origin.c)
    sh = start(shield, origin, origin_kw={'read_timeout': '1s', 'connect_timeout': '1s',
                                          'attempts': 1})
    t0 = time.monotonic()
    outs = run_clients(sh.port, 20, '/late', timeout=10)
    took = time.monotonic() - t0
    assert [(o.status, o.xcache) for o in outs] == [(504, 'Error')] * 20, outs
    assert took < 4, f'waiters released after {took:.1f}s with 1 s + 1 s timeouts'
    assert origin.count('/late') == 1
    r = get(sh.port, '/late', timeout=10)  # the 504 was not cached
    assert (r.status, xcache(r)) == (504, 'Error')
    assert origin.count('/late') == 2


def test_md5_etag_verified_before_storing(shield, origin):
    """An S3-style ETag (the body's MD5) is checked before the object is published:
    a mismatch is not stored (whatever this viewer got, the next one asks again)."""
    good = b'the real bytes of a book'
    origin.route('/md5ok', Reply(body=good, headers=[
        ('ETag', '"' + hashlib.md5(good).hexdigest() + '"')]))
    origin.route('/md5bad', Reply(body=good, headers=[
        ('ETag', '"' + hashlib.md5(b'other bytes').hexdigest() + '"')]))
    sh = start(shield, origin)
    assert_miss(get(sh.port, '/md5ok'), good)
    assert_hit(get(sh.port, '/md5ok'), good)
    for n in (1, 2):
        with Conn(sh.port) as c:
            c.send(request_bytes('GET', '/md5bad'))
            r = c.read_response()
        assert r is None or xcache(r) in ('Miss', 'Error'), r and r.headers
        assert origin.count('/md5bad') == n
    assert origin.count('/md5ok') == 1


@pytest.mark.parametrize('size,stored', [(MIB, True), (MIB + 1, False)],
                         ids=['exactly-max', 'one-over'])
def test_max_object_size_boundary(shield, origin, size, stored):
    origin.route('/sz', Reply(size=size, seed=43))
    sh = start(shield, origin, cache={'max_object_size': '1M'})
    body = det_body(size, 43)
    assert_miss(get(sh.port, '/sz'), body)
    r = get(sh.port, '/sz')
    assert r.status == 200 and r.body == body
    assert xcache(r) == ('Hit' if stored else 'Miss')
    assert origin.count('/sz') == (1 if stored else 2)


def test_replaced_object_stays_intact_for_its_slow_reader(shield, origin):
    """A viewer still reading an expired object while a new version is fetched and
    served: each gets its own version byte-exact (the old bytes live on while read)."""
    size = 4 * MIB
    seeds = iter([60, 61])
    origin.route('/swap', lambda q: Reply(size=size, seed=next(seeds),
                                          headers=[('Cache-Control', 'max-age=1')]))
    sh = start(shield, origin)
    align_to_second()
    with Conn(sh.port, timeout=20, rcvbuf=16384) as slow:
        slow.send(request_bytes('GET', '/swap'))
        assert slow.wait_bytes(b'\r\n\r\n', 5)
        time.sleep(1.2)  # let the 1 s TTL pass while the slow viewer reads nothing
        r = get(sh.port, '/swap')
        assert_miss(r)
        assert hashlib.sha256(r.body).hexdigest() == det_sha256(size, 61)
        r = get(sh.port, '/swap')
        assert_hit(r)
        assert hashlib.sha256(r.body).hexdigest() == det_sha256(size, 61)
        h = hashlib.sha256()
        old = slow.read_response(sink=h.update)
    assert old.status == 200 and old.complete and xcache(old) == 'Miss'
    assert h.hexdigest() == det_sha256(size, 60)
    assert origin.count('/swap') == 2


# ---- keys --------------------------------------------------------------------------------

def test_keys_are_exact_path_bytes(shield, origin):
    # The input rules would refuse "/a/./b" (test_waf.py); here the cache must
    # key whatever reaches it byte for byte.
    sh = start(shield, origin, waf={'block_traversal': False})
    paths = ['/A', '/a', '/a//b', '/a/b', '/a/b/', '/%41', '/a/./b']
    for p in paths:
        assert_miss(get(sh.port, p), f'origin:{p}'.encode())
    for p in paths:
        assert_hit(get(sh.port, p), f'origin:{p}'.encode())
    assert {p: origin.count(p) for p in paths} == {p: 1 for p in paths}


def test_key_host_is_case_insensitive(shield, origin):
    sh = start(shield, origin)
    assert_miss(get(sh.port, '/host', host='Books.Example.COM'))
    assert_hit(get(sh.port, '/host', host='books.example.com'))
    assert_miss(get(sh.port, '/host', host='other.example.com'))
    assert origin.count('/host') == 2


def test_query_ignored_when_not_forwarded(shield, origin):
    origin.route('/x', lambda q: Reply(body=f'q={q.query}'.encode()))
    origin.route('/q/x', lambda q: Reply(body=f'q={q.query}'.encode()))
    sh = start(shield, origin, behaviors=[behavior('/q/*', 'o', forward_query=True),
                                          behavior('*', 'o')])
    assert_miss(get(sh.port, '/x?a=1'), b'q=')
    assert_hit(get(sh.port, '/x?a=2'), b'q=')
    assert_hit(get(sh.port, '/x'), b'q=')
    assert origin.count('/x') == 1 and origin.last('/x').target == '/x'
    assert_miss(get(sh.port, '/q/x?a=1'), b'q=a=1')
    assert_miss(get(sh.port, '/q/x?a=2'), b'q=a=2')
    assert_hit(get(sh.port, '/q/x?a=1'), b'q=a=1')
    assert_hit(get(sh.port, '/q/x?a=2'), b'q=a=2')
    assert [q.target for q in origin.requests if q.path == '/q/x'] == ['/q/x?a=1', '/q/x?a=2']


def test_forwarded_header_keys_separately(shield, origin):
    origin.route('/v/x', lambda q: Reply(
        body=f'variant={q.header("x-variant")}'.encode(),
        headers=[('Vary', 'X-Variant'), ('Cache-Control', 'max-age=60')]))
    sh = start(shield, origin, behaviors=[behavior('/v/*', 'o', forward_headers=['X-Variant']),
                                          behavior('*', 'o')])
    cases = [({'X-Variant': 'a'}, b'variant=a'), ({'X-Variant': 'b'}, b'variant=b'),
             ({}, b'variant=None')]
    for h, body in cases:
        assert_miss(get(sh.port, '/v/x', headers=h), body)
    for h, body in cases:
        assert_hit(get(sh.port, '/v/x', headers=h), body)
    # a header that is not forwarded does not split the object
    assert_hit(get(sh.port, '/v/x', headers={'X-Variant': 'a', 'X-Other': '1'}), b'variant=a')
    assert origin.count('/v/x') == 3


@pytest.mark.parametrize('name,kw', [('X-Variant', {'forward_headers': ['X-Variant']}),
                                      ('Cookie', {'forward_cookies': True})],
                         ids=['forwarded-header', 'forwarded-cookie'])
def test_repeated_forwarded_header_cannot_poison_key(shield, origin, name, kw):
    """The key must cover everything forwarded that the origin may vary on. A request
    that repeats a forwarded header sends every copy to the origin: if only the first
    copy were keyed, its answer would be stored for viewers who sent just that one."""
    origin.route('/p/x', lambda q: Reply(
        body=('seen=' + '|'.join(q.headers_named(name))).encode(),
        headers=[('Cache-Control', 'max-age=60'), ('Vary', name)]))
    sh = start(shield, origin, behaviors=[behavior('/p/*', 'o', **kw), behavior('*', 'o')])
    with Conn(sh.port) as c:  # the attacker
        c.send(request_bytes('GET', '/p/x', [(name, 'v=a'), (name, 'v=evil')]))
        r = c.read_response()
    assert r.status == 200 and r.body == b'seen=v=a|v=evil'
    r = get(sh.port, '/p/x', headers={name: 'v=a'})  # an ordinary viewer
    assert r.status == 200
    assert r.body == b'seen=v=a', f'{xcache(r)}: served the answer to a different request'
    assert_hit(get(sh.port, '/p/x', headers={name: 'v=a'}), b'seen=v=a')


# ---- memory bound and eviction -----------------------------------------------------------

MEM_CACHE = {'memory_size': '8M', 'max_object_size': '4M'}
MEM_ENV = {'ASAN_OPTIONS_EXTRA': 'quarantine_size_mb=16'}


def _mem_shield(shield, origin):
    origin.default = lambda q: Reply(size=MIB, seed=5)
    return start(shield, origin, cache=MEM_CACHE, env=MEM_ENV)


def test_memory_bound_and_eviction(shield, origin):
    """96 different 1 MiB objects through an 8 MiB memory tier. Without eviction RSS
    would grow by >= 96 MiB; the bound allows the 8 MiB tier plus 48 MiB of slack:
    2 workers' libevent/libcurl buffers (a few MiB), chunks still referenced by output
    buffers or freed but not yet returned by the allocator (jemalloc decays dirty pages
    over ~10 s; ASan keeps a 16 MiB quarantine here), and page-granularity noise."""
    sh = _mem_shield(shield, origin)
    body = det_body(MIB, 5)
    for i in range(4):  # warm allocator arenas, threads and connection pools
        assert get(sh.port, f'/warm/{i}').body == body
    base = sh.rss_kb()
    peak = base
    n = 96
    for i in range(n):
        r = get(sh.port, f'/obj/{i}')
        assert r.status == 200 and r.body == body and xcache(r) == 'Miss', (i, r)
        peak = max(peak, sh.rss_kb())
    growth = (peak - base) / 1024
    assert growth < 8 + 48, f'RSS grew {growth:.1f} MiB for {n} MiB through an 8 MiB cache'
    # Which objects stay is the policy's choice (S3-FIFO keeps the first ones in its main
    # queue and lets one-hit objects pass through its small queue), but at most 8 of
    # them fit in 8 MiB: a second pass over all of them has at most 8 hits.
    kinds = Counter()
    for i in range(n):
        r = get(sh.port, f'/obj/{i}')
        assert r.status == 200 and r.body == body, (i, r)
        kinds[xcache(r)] += 1
    assert kinds['Hit'] <= 8 and kinds['Miss'] == n - kinds['Hit'], kinds
    assert origin.count() == 4 + n + kinds['Miss']


def test_hot_object_survives_scan(shield, origin):
    sh = _mem_shield(shield, origin)
    body = det_body(MIB, 5)
    assert_miss(get(sh.port, '/hot'), body)
    for _ in range(5):
        assert_hit(get(sh.port, '/hot'), body)
    for i in range(30):  # a scan of one-hit objects, 30 MiB through an 8 MiB tier
        assert_miss(get(sh.port, f'/scan/{i}'), body)
    assert_hit(get(sh.port, '/hot'), body)
    assert origin.count('/hot') == 1
    assert_miss(get(sh.port, '/scan/0'), body)  # the scan did evict
    assert origin.count('/scan/0') == 2


def test_fill_in_progress_survives_memory_pressure(shield, origin):
    """A fill in progress stays joinable while other objects are admitted to a full
    memory tier: eviction must not take a FILLING object out of the index (a second
    viewer would start a duplicate origin fetch)."""
    sh = _mem_shield(shield, origin)
    origin.route('/slow4', Reply(size=4 * MIB, seed=15, pieces=8, interval=0.2))
    for i in range(12):  # fill the 8 MiB tier once: eviction is now in play
        assert get(sh.port, f'/pre/{i}').status == 200
    with Conn(sh.port, timeout=15) as a:
        a.send(request_bytes('GET', '/slow4'))
        assert a.wait_bytes(b'\r\n\r\n', 5)
        assert_miss(get(sh.port, '/other/1'))  # admitted while /slow4 fills
        assert_miss(get(sh.port, '/other/2'))
        with Conn(sh.port, timeout=15) as b:
            b.send(request_bytes('GET', '/slow4'))
            rb = b.read_response()
        ra = a.read_response()
    want = det_body(4 * MIB, 15)
    assert ra.status == 200 and ra.body == want and xcache(ra) == 'Miss'
    assert rb.status == 200 and rb.body == want
    assert (xcache(rb), origin.count('/slow4')) == ('Hit', 1), 'the fill was not joined'


# ---- admin endpoint: /stats and /invalidations -------------------------------------------

STATS_KEYS = {'hits', 'misses', 'refresh_hits', 'collapsed', 'origin_fetches', 'passes',
              'bytes_from_memory', 'bytes_from_origin', 'evictions', 'objects', 'bytes',
              'invalidations', 'memory_size'}
_admin_support = {}


def _admin_missing(tmp_path):
    """None if this binary accepts an `admin` group, else why not (for the skip)."""
    if 'why' not in _admin_support:
        conf = tmp_path / 'admin-probe.conf'
        conf.write_text(render_config(base_config(
            free_port(), [http_origin('o', 'http://127.0.0.1:9')], [behavior('*', 'o')],
            admin={'address': f'127.0.0.1:{free_port()}'})))
        p = subprocess.run([SHIELD_BIN, '-t', '-c', str(conf)], capture_output=True, timeout=30,
                           env=Shield.base_env())
        out = (p.stdout + p.stderr).decode('utf-8', 'replace').strip()
        _admin_support['why'] = None if p.returncode == 0 else (out.splitlines() or ['?'])[0]
    return _admin_support['why']


@pytest.fixture
def admin(shield, origin, tmp_path):
    """Factory: Shield with an admin listener; the Shield has .admin_port."""
    why = _admin_missing(tmp_path)
    if why:
        pytest.skip(f'admin endpoint not in this binary: {why}')

    def make(**over):
        aport = free_port()
        sh = start(shield, origin, admin={'address': f'127.0.0.1:{aport}'}, **over)
        wait_until(lambda: port_open(aport), 10, what='the admin listener')
        sh.admin_port = aport
        return sh
    return make


def stats(sh):
    r = get(sh.admin_port, '/stats')
    assert r.status == 200, r
    assert (r.header('Content-Type') or '').startswith('application/json'), r.headers
    d = json.loads(r.body)
    assert set(d['cache']) >= STATS_KEYS, f'missing: {STATS_KEYS - set(d["cache"])}'
    assert all(isinstance(d['cache'][k], int) and d['cache'][k] >= 0 for k in STATS_KEYS), d
    assert isinstance(d['requests'], int)
    return d


def delta(a, b):
    return {k: b['cache'][k] - a['cache'][k] for k in STATS_KEYS} | {
        'requests': b['requests'] - a['requests']}


def invalidate(sh, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return fetch(sh.admin_port, '/invalidations', method='POST', body=data,
                 headers={'Content-Type': 'application/json'})


def test_admin_stats_counters(admin, origin):
    origin.route('/s', Reply(size=300_000, seed=50))
    sh = admin(cache={'memory_size': '8M'})
    s0 = stats(sh)
    assert s0['cache']['memory_size'] == 8 * MIB
    assert_miss(get(sh.port, '/s'))
    assert_hit(get(sh.port, '/s'))
    d = delta(s0, stats(sh))
    assert (d['misses'], d['hits'], d['origin_fetches'], d['collapsed'], d['passes']) == \
        (1, 1, 1, 0, 0), d
    assert d['objects'] == 1 and d['bytes'] >= 300_000, d
    assert d['bytes_from_origin'] == 300_000 and d['bytes_from_memory'] == 300_000, d
    assert d['requests'] == 2, d  # viewer requests; admin requests are not counted
    origin.route('/priv', Reply(body=b'p', headers=[('Cache-Control', 'private')]))
    s1 = stats(sh)
    get(sh.port, '/priv')
    assert delta(s1, stats(sh))['passes'] == 1


def test_admin_collapse_counters(admin, origin):
    origin.route('/c', Reply(size=2 * MIB, seed=51, pieces=8, interval=0.1))
    sh = admin()
    s0 = stats(sh)
    outs = run_clients(sh.port, 50, '/c', timeout=20)
    assert all(o.status == 200 and o.sha == det_sha256(2 * MIB, 51) for o in outs), outs
    d = delta(s0, stats(sh))
    assert origin.count('/c') == 1
    assert d['origin_fetches'] == 1 and d['misses'] == 1, d
    assert d['collapsed'] + d['misses'] == 50 - d['hits'], d
    assert d['collapsed'] == Counter(o.xcache for o in outs)['Hit'] - d['hits'], d
    assert d['bytes_from_origin'] == 2 * MIB, d


def test_admin_invalidation(admin, origin):
    sh = admin()
    paths = ['/books/a.epub', '/books/b.epub', '/books/sub/c.epub', '/other/d.epub', '/booksx']
    for p in paths:
        assert_miss(get(sh.port, p))
        assert_hit(get(sh.port, p))
    s0 = stats(sh)
    r = invalidate(sh, {'paths': ['/books/a.epub']})
    assert r.status == 201, r
    doc = json.loads(r.body)
    assert doc['status'] == 'Completed' and doc['paths'] == 1 and doc['id'], doc
    assert_miss(get(sh.port, '/books/a.epub'), b'origin:/books/a.epub')  # immediately
    assert_hit(get(sh.port, '/books/b.epub'))
    assert origin.count('/books/a.epub') == 2 and origin.count('/books/b.epub') == 1

    r = invalidate(sh, {'paths': ['/books/*', '/nothing/here']})
    assert r.status == 201, r
    doc2 = json.loads(r.body)
    assert doc2['paths'] == 2 and doc2['status'] == 'Completed' and doc2['id'] != doc['id']
    for p in ('/books/a.epub', '/books/b.epub', '/books/sub/c.epub'):
        assert_miss(get(sh.port, p))
        assert_hit(get(sh.port, p))  # re-cached after the invalidation
    assert_hit(get(sh.port, '/other/d.epub'))
    assert_hit(get(sh.port, '/booksx'))  # '/books/*' is a prefix of '/books/' only
    assert [origin.count(p) for p in paths] == [3, 2, 2, 1, 1]
    # counted per path, as the engine records one rule per path
    assert delta(s0, stats(sh))['invalidations'] == 3


def test_admin_invalidation_during_fill(admin, origin):
    # The bytes of a fill that began before the invalidation came from the origin as it
    # was then: once complete, the object must not be served as a hit afterwards.
    origin.route('/inflight', Reply(size=2 * MIB, seed=52, pieces=5, interval=0.15))
    sh = admin()
    with Conn(sh.port, timeout=10) as c:
        c.send(request_bytes('GET', '/inflight'))
        assert c.wait_bytes(b'\r\n\r\n', 5)
        r = invalidate(sh, {'paths': ['/inflight']})
        assert r.status == 201, r
        first = c.read_response()
    assert first.status == 200 and first.complete
    r = get(sh.port, '/inflight')
    assert_miss(r)
    assert hashlib.sha256(r.body).hexdigest() == det_sha256(2 * MIB, 52)
    assert origin.count('/inflight') == 2
    assert_hit(get(sh.port, '/inflight'))


def test_admin_invalidation_forms(admin, origin):
    sh = admin()
    paths = ['/dirx/a', '/dir/a', '/dir', '/x/y', '/z']
    for p in paths:
        assert_miss(get(sh.port, p))
    assert invalidate(sh, {'paths': ['/dir*']}).status == 201  # '/dir*': any path starting so
    assert [xcache(get(sh.port, p)) for p in paths] == ['Miss', 'Miss', 'Miss', 'Hit', 'Hit']
    assert invalidate(sh, {'paths': ['/X/y']}).status == 201  # case-sensitive
    assert xcache(get(sh.port, '/x/y')) == 'Hit'
    assert invalidate(sh, {'paths': ['/*']}).status == 201
    assert [xcache(get(sh.port, p)) for p in paths] == ['Miss'] * 5
    assert [origin.count(p) for p in paths] == [3, 3, 3, 2, 2]


@pytest.mark.parametrize('body', [
    {'paths': ['books/a.epub']}, {'paths': ['/a*b']}, {'paths': ['*']},
    {'paths': ['/ok', 'bad']}, b'{not json', {'nopaths': []}, {'paths': ['/' + 'a' * 4000]}],
    ids=['no-slash', 'inner-star', 'bare-star', 'one-bad', 'not-json', 'no-paths',
         'over-4000-chars'])
def test_admin_invalidation_rejects_bad_paths(admin, origin, body):
    sh = admin()
    assert_miss(get(sh.port, '/ok'))
    r = invalidate(sh, body)
    assert r.status == 400, r
    assert_hit(get(sh.port, '/ok'))  # nothing was invalidated, not even the valid path
    assert origin.count('/ok') == 1


def test_signature_parameters_never_keyed_nor_forwarded(shield, origin):
    """Signing parameters (CloudFront's and SigV4's) are stripped before the cache key
    and the origin request: two viewers with different signatures share one object;
    an unsigned query keeps its own parameters, even one called Expires."""
    origin.route('/q/book.epub', Reply(body=b'signed book', headers=[
        ('Cache-Control', 'max-age=60')]))
    sh = shield([http_origin('o', origin)], [behavior('/q/*', 'o', forward_query=True),
                                             behavior('*', 'o')])
    r = get(sh.port, '/q/book.epub?v=1&Expires=2000000000&Signature=AAA~&Key-Pair-Id=K1')
    assert (r.status, r.body) == (200, b'signed book')
    assert origin.requests[-1].target == '/q/book.epub?v=1'
    r = get(sh.port, '/q/book.epub?v=1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ff'
                     '&X-Amz-Credential=AK%2F20261123%2Fus-east-1%2Fs3%2Faws4_request')
    assert r.header('X-Cache').startswith('Hit'), r.headers
    assert origin.count('/q/book.epub') == 1
    r = get(sh.port, '/q/book.epub?v=1&Expires=5')  # unsigned: its own query, its own key
    assert r.header('X-Cache').startswith('Miss')
    assert origin.requests[-1].target == '/q/book.epub?v=1&Expires=5'
