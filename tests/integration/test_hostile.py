"""H — request sequences that once broke the front end, and variants of them.

Each test drives the real binary with raw sockets the way an attacker would: the same
bytes in one packet and split, repeated on one connection. Shield must answer each
request once or close cleanly, stay up, keep the sanitizers quiet (checked when the
fixture stops it), and never let the origin read a request differently.
"""

import json
import select
import ssl
import subprocess
import threading
import time

import pytest

from conftest import SAN, ALL_METHODS, Conn, behavior, free_port, get, http_origin, wait_until
from test_parsing import CANARY, CASES, REJECT, MAYBE, check_case

UPGRADE_WS = (b'GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n'
              b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
UPGRADE_H2C = (b'GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n'
               b'Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n')
PLAIN = b'GET / HTTP/1.1\r\nHost: x\r\n\r\n'


@pytest.fixture(scope='module')
def sh(module_shield, module_origin):
    o = http_origin('o', module_origin)
    aport = free_port()
    s = module_shield([o], [behavior('/rw/*', 'o', allowed_methods=ALL_METHODS,
                                     forward_headers=['X-Keep']),
                            behavior('*', 'o')],
                      limits={'max_body_size': '1K'}, cache={'enabled': False},
                      admin={'address': f'127.0.0.1:{aport}'})
    s.admin_port = aport
    return s


def stats(sh):
    r = get(sh.admin_port, '/stats', host='127.0.0.1')
    assert r.status == 200, r
    return json.loads(r.body)


def metric(sh, name):
    r = get(sh.admin_port, '/metrics', host='127.0.0.1')
    for ln in r.body.decode().splitlines():
        if ln.startswith(name + ' '):
            return float(ln.split()[1])
    raise AssertionError(f'{name} not in /metrics')


def _no_upgrade_forwarded(req):
    assert not req.has('upgrade'), req.headers
    assert not req.has('http2-settings'), req.headers
    conn = ','.join(req.headers_named('connection')).lower()
    assert 'upgrade' not in conn and 'http2-settings' not in conn, req.headers


# ---- 1. Upgrade is served as a plain request -------------------------------------

@pytest.mark.parametrize('first', [UPGRADE_WS, UPGRADE_H2C], ids=['websocket', 'h2c'])
def test_upgrade_then_request_in_second_packet(sh, module_origin, first):
    """Regression: the second request after an Upgrade request crashed the process
    (SIGSEGV in the release build, null pointer in memchr under UBSan)."""
    n0 = module_origin.count()
    with Conn(sh.port, timeout=5) as c:
        c.send(first)
        r1 = c.read_response()
        assert r1 is not None and r1.status == 200, r1
        assert r1.status != 101 and not r1.has('upgrade'), r1.headers
        c.send(PLAIN)
        r2 = c.read_response()
        assert r2 is not None and r2.status == 200 and r2.body == b'origin:/', r2
    sh.assert_alive()
    reqs = module_origin.requests[n0:]
    assert len(reqs) == 2, reqs
    _no_upgrade_forwarded(reqs[0])


@pytest.mark.parametrize('first', [UPGRADE_WS, UPGRADE_H2C], ids=['websocket', 'h2c'])
def test_upgrade_then_request_in_one_packet(sh, module_origin, first):
    """Regression: in one packet the valid second request got a 400."""
    n0 = module_origin.count()
    with Conn(sh.port, timeout=5) as c:
        c.send(first + PLAIN + CANARY)
        rs = [c.read_response() for _ in range(3)]
        assert [r.status for r in rs] == [200, 200, 200], rs
        assert rs[2].body == b'origin:/canary'
    sh.assert_alive()
    reqs = module_origin.requests[n0:]
    assert [q.path for q in reqs][1:] == ['/', '/canary'], reqs
    _no_upgrade_forwarded(reqs[0])


def test_upgrade_repeated_on_one_connection(sh, module_origin):
    """Many Upgrade requests, split at every awkward place, on one connection."""
    n0 = module_origin.count()
    with Conn(sh.port, timeout=5) as c:
        for i in range(20):
            data = UPGRADE_WS if i % 2 else UPGRADE_H2C
            cut = (i * 7) % len(data)
            c.send(data[:cut])
            c.send(data[cut:])
            r = c.read_response()
            assert r is not None and r.status == 200, (i, r)
    sh.assert_alive()
    assert module_origin.count() - n0 == 20


def test_upgrade_with_body_is_not_a_tunnel(sh, module_origin):
    """A POST asking to upgrade, with a body: the body is the POST's, never a tunnel,
    and the request after it is parsed as HTTP."""
    n0 = module_origin.count()
    with Conn(sh.port, timeout=5) as c:
        c.send(b'POST /rw/u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n'
               b'Content-Length: 5\r\n\r\nhello' + CANARY)
        r1 = c.read_response()
        r2 = c.read_response()
        assert (r1.status, r2.status, r2.body) == (200, 200, b'origin:/canary'), (r1, r2)
    reqs = module_origin.requests[n0:]
    assert reqs[0].body == b'hello' and not reqs[0].has('upgrade'), reqs[0].headers


def test_connect_is_refused_and_closes(sh, module_origin):
    """CONNECT would switch the connection to a tunnel: refused, closed, canary unanswered."""
    check_case(sh, module_origin, b'CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n', REJECT,
               {400, 405, 501})


# ---- 2. Chunked trailers never move what the request points into ----------------

def _trailers(n, size):
    return b''.join(b'X-T%d: ' % i + b'a' * size + b'\r\n' for i in range(n))


TRAILER_CASES = [
    ('options_3000', b'OPTIONS', _trailers(1, 3000)),
    ('post_ten_100', b'POST', _trailers(10, 100)),
    ('post_one_1200', b'POST', _trailers(1, 1200)),
    ('put_one_1200', b'PUT', _trailers(1, 1200)),
    ('patch_many_small', b'PATCH', _trailers(60, 10)),
]


@pytest.mark.parametrize('split', [False, True], ids=['one_packet', 'split'])
@pytest.mark.parametrize('case', TRAILER_CASES, ids=[t[0] for t in TRAILER_CASES])
def test_chunked_trailers_keep_the_request_intact(sh, module_origin, case, split):
    """Regression: trailer bytes went through the header callbacks into the head buffer,
    whose realloc moved the memory that the request's path and headers pointed into
    (heap use-after-free; the release build forwarded a path read from freed memory)."""
    _, method, trailers = case
    path = b'/rw/trailers-' + case[0].encode()
    data = (method + b' ' + path + b' HTTP/1.1\r\nHost: x\r\nX-Keep: kept-value\r\n'
            b'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n' + trailers + b'\r\n')
    n0 = module_origin.count()
    with Conn(sh.port, timeout=5) as c:
        if split:
            for i in range(0, len(data), 97):
                c.send(data[i:i + 97])
            c.send(CANARY)
        else:
            c.send(data + CANARY)
        r1 = c.read_response(method=method.decode())
        r2 = c.read_response()
        assert r1 is not None and r1.status == 200, r1
        assert r2 is not None and r2.body == b'origin:/canary', r2
    sh.assert_alive()
    reqs = module_origin.requests[n0:]
    assert [q.path for q in reqs] == [path.decode(), '/canary'], reqs
    assert reqs[0].method == method.decode() and reqs[0].body == b'hello'
    assert reqs[0].header('x-keep') == 'kept-value', reqs[0].headers
    assert not any(k.lower().startswith('x-t') for k, _ in reqs[0].headers), reqs[0].headers


def test_huge_trailer_section_is_refused(sh, module_origin):
    """A trailer section over the header limit (20 KiB) is refused like a huge head:
    431 (or 400), closed, nothing forwarded. Regression: 200 KB of trailers read freed
    memory in the popular-objects key hashing."""
    data = (b'POST /rw/big-trailer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
            b'5\r\nhello\r\n0\r\nX-T: ' + b'a' * 200_000 + b'\r\n\r\n')
    check_case(sh, module_origin, data, REJECT, {400, 431})


def test_trailers_cannot_smuggle_framing(sh, module_origin):
    """Framing or routing fields in the trailer section are refused."""
    for name in (b'Content-Length: 50', b'Host: evil', b'Transfer-Encoding: chunked'):
        data = (b'POST /rw/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
                b'5\r\nhello\r\n0\r\n' + name + b'\r\n\r\n')
        check_case(sh, module_origin, data, REJECT, {400})


# ---- 3. Parser differentials ------------------------------------------------------

P = b'POST /rw/p HTTP/1.1\r\nHost: x\r\n'
G = b'GET /h HTTP/1.1\r\nHost: x\r\n'
PC = P + b'Transfer-Encoding: chunked\r\n\r\n'
DIFF_CASES = [
    # obs-fold after an empty first value: llhttp joins it without a second value callback
    ('fold_te_empty', P + b'Transfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'),
    ('fold_te_space', P + b'Transfer-Encoding: \r\n\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'),
    ('fold_cl_empty', P + b'Content-Length:\r\n 5\r\n\r\nhello'),
    ('fold_host_empty', b'GET /h HTTP/1.1\r\nHost:\r\n x\r\n\r\n'),
    ('fold_any_empty', G + b'X-A:\r\n b\r\n\r\n'),
    ('fold_any_tab', G + b'X-A:\t\r\n\tb\r\n\r\n'),
    ('fold_twice', G + b'X-A: a\r\n b\r\n c\r\n\r\n'),
    ('fold_after_last', G + b'X-A: a\r\n \r\n\r\n'),
    # bare LF ending the trailer section, or a trailer line
    ('trailer_end_bare_lf', PC + b'5\r\nhello\r\n0\r\n\n'),
    ('trailer_line_bare_lf_end', PC + b'5\r\nhello\r\n0\r\nX-T: a\r\n\n'),
    ('trailer_line_bare_lf', PC + b'5\r\nhello\r\n0\r\nX-T: a\n\r\n'),
    ('trailer_bare_cr', PC + b'5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n'),
    ('trailer_obs_fold', PC + b'5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n'),
    ('trailer_space_before_colon', PC + b'5\r\nhello\r\n0\r\nX-T : a\r\n\r\n'),
    ('trailer_no_colon', PC + b'5\r\nhello\r\n0\r\nX-T a\r\n\r\n'),
    ('chunk_ext_bare_lf', PC + b'5;a=b\nhello\r\n0\r\n\r\n'),
    ('chunk_ext_ctl', PC + b'5;a=\x01\r\nhello\r\n0\r\n\r\n'),
    ('last_chunk_bare_lf', PC + b'5\r\nhello\r\n0\n\r\n'),
    # absolute-form without Host in HTTP/1.1 (RFC 9112 §3.2)
    ('absolute_form_no_host', b'GET http://x/h HTTP/1.1\r\n\r\n'),
    ('absolute_form_no_host_https', b'GET https://x/h HTTP/1.1\r\nX-A: b\r\n\r\n'),
    # empty lines before a request, past the limit, however they arrive
    ('many_empty_lines', b'\r\n' * 10 + b'GET /h HTTP/1.1\r\nHost: x\r\n\r\n'),
]


@pytest.mark.parametrize('case', DIFF_CASES, ids=[c[0] for c in DIFF_CASES])
def test_differential_rejected(sh, module_origin, case):
    check_case(sh, module_origin, case[1], REJECT, {400})


@pytest.mark.parametrize('case', DIFF_CASES, ids=[c[0] for c in DIFF_CASES])
def test_differential_rejected_byte_by_byte(sh, module_origin, case):
    """The same bytes one at a time: the verdict cannot depend on how they arrive."""
    n0 = module_origin.snapshot()
    with Conn(sh.port, timeout=5) as c:
        for b in case[1]:
            c.send(bytes([b]))
        c.send(CANARY)
        r = c.read_response()
        assert r is not None and r.status == 400, r
        assert c.closed_within(3), 'connection left open'
    sh.assert_alive()
    assert module_origin.snapshot() == n0, 'origin contacted'


@pytest.mark.parametrize('method', [b'M-SEARCH', b'FOO', b'PROPFIND', b'BREW', b'X_Y'])
def test_unknown_method_is_501(sh, module_origin, method):
    """A well-formed but unknown method token gets 501 (README), not 400."""
    check_case(sh, module_origin, method + b' /h HTTP/1.1\r\nHost: x\r\n\r\n', MAYBE, {501})


@pytest.mark.parametrize('line', [b'get /h HTTP/1.1', b'GE(T /h HTTP/1.1', b'G\x01T /h HTTP/1.1',
                                  b'\xffGET /h HTTP/1.1'])
def test_malformed_method_is_400(sh, module_origin, line):
    """A method that is not a token (or not upper case) is malformed: 400 and close."""
    check_case(sh, module_origin, line + b'\r\nHost: x\r\n\r\n', REJECT, {400, 501})


def test_valid_requests_after_each_hostile_case(sh, module_origin):
    """After every case above, on fresh connections, plain requests still work."""
    for _ in range(5):
        with Conn(sh.port, timeout=5) as c:
            c.send(PLAIN * 3)
            for _ in range(3):
                r = c.read_response()
                assert r is not None and r.status == 200 and r.body == b'origin:/', r


# ---- the property every hostile input keeps -----------------------------------------

def _all_hostile():
    yield from (c[1] for c in CASES)
    yield from (c[1] for c in DIFF_CASES)
    yield UPGRADE_WS + PLAIN
    yield UPGRADE_H2C + PLAIN
    for _, method, trailers in TRAILER_CASES:
        yield (method + b' /rw/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
               b'5\r\nhello\r\n0\r\n' + trailers + b'\r\n')


LAST = b'GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'


def _storm(sh, rounds):
    """Every hostile case on its own connection, from 8 threads, `rounds` times; each
    gets an answer or a close, never a hang."""
    cases = list(_all_hostile())
    errors = []

    def worker(k):
        for i in range(k, len(cases) * rounds, 8):
            data = cases[i % len(cases)]
            try:
                with Conn(sh.port, timeout=5) as c:
                    cut = (i * 13) % len(data)
                    c.send(data[:cut])
                    c.send(data[cut:] + CANARY + LAST)
                    c.read_all(timeout=5)
                    if not c.eof:
                        errors.append(f'connection left open: {data[:80]!r}')
            except OSError as e:  # a reset is a clean refusal too
                if not isinstance(e, (ConnectionResetError, BrokenPipeError)):
                    errors.append(f'{type(e).__name__} {e}: {data[:80]!r}')
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:5]


def test_hostile_storm_leaves_nothing_behind(sh, module_origin):
    """Every case above, thousands of times over many connections: the process stays
    up, the scanner and llhttp never disagree, every connection is closed again, and
    a second storm costs no more memory than the first left behind (no per-request
    or per-connection leak). Sanitizers are checked when the fixture stops Shield."""
    _storm(sh, 3)
    wait_until(lambda: metric(sh, 'shield_open_connections') == 0, 10,
               what='every connection closed after the first storm')
    with open(f'/proc/{sh.pid}/status') as f:
        rss1 = next(int(ln.split()[1]) for ln in f if ln.startswith('VmRSS:'))
    _storm(sh, 3)
    wait_until(lambda: metric(sh, 'shield_open_connections') == 0, 10,
               what='every connection closed after the second storm')
    with open(f'/proc/{sh.pid}/status') as f:
        rss2 = next(int(ln.split()[1]) for ln in f if ln.startswith('VmRSS:'))
    sh.assert_alive()
    assert stats(sh)['framing_disagreements'] == 0
    assert metric(sh, 'shield_framing_disagreements_total') == 0
    if not SAN:  # ASan's quarantine holds freed memory; LeakSanitizer checks at exit there
        assert rss2 - rss1 < 16 * 1024, f'RSS grew by {rss2 - rss1} KiB over the second storm'


# ---- a viewer that pipelines and never reads --------------------------------------

def test_pipelining_without_reading_is_bounded(sh, module_origin):
    """Regression: a viewer that pipelines requests and never reads had every answer
    queued in Shield's memory (77 MB after 150,000 small refused requests, growing
    until the send timeout). Now the next request waits until the output drains, so
    the viewer's own sends stall instead; and once it reads, every request it sent is
    answered, in order."""
    one = b'GET /a/../b HTTP/1.1\r\nHost: x\r\n\r\n'  # refused by the input rules: 403, kept open
    batch = one * 1000
    rss0 = sh.rss_kb()
    with Conn(sh.port, timeout=10) as c:
        c.sock.setblocking(False)
        sent, deadline = 0, time.monotonic() + 3
        view = memoryview(batch)
        while time.monotonic() < deadline and sent < 100_000 * len(one):
            try:
                k = c.sock.send(view[sent % len(batch):])
            except BlockingIOError:
                select.select([], [c.sock], [], 0.05)
                continue
            sent += k
        # Let Shield take in what it will (it stops when it should), then measure.
        seen = [stats(sh)['requests'], time.monotonic()]

        def settled():
            n = stats(sh)['requests']
            if n != seen[0]:
                seen[:] = [n, time.monotonic()]
            return time.monotonic() - seen[1] > 0.5
        wait_until(settled, 30, interval=0.05, what='Shield to stop taking requests in')
        grown = sh.rss_kb() - rss0
        # Read everything back while the rest is sent: the last request if a send
        # cut it, then one that closes.
        c.sock.setblocking(True)
        c.sock.settimeout(10)
        got = []

        def reader():
            while True:
                r = c.read_response(timeout=10)
                got.append(r)
                if r is None or r.status != 403:
                    return
        t = threading.Thread(target=reader)
        t.start()
        if sent % len(one):
            c.sock.sendall(one[sent % len(one):])
            sent += len(one) - sent % len(one)
        c.sock.sendall(b'GET /done HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        t.join(60)
        assert not t.is_alive(), 'answers stopped coming'
        last = got[-1]
        assert last is not None and last.status == 200 and last.body == b'origin:/done', last
    assert len(got) - 1 == sent // len(one), f'{len(got) - 1} answers to {sent // len(one)} requests'
    sh.assert_alive()
    if not SAN:
        assert grown < 12 * 1024, f'RSS grew by {grown} KiB while the viewer did not read'


# ---- the same sequences over TLS (the decrypted bytes arrive in other pieces) --------

@pytest.fixture(scope='module')
def tls_sh(module_shield, module_origin, tmp_path_factory):
    d = tmp_path_factory.mktemp('hostile-tls')
    crt, key = d / 'c.crt', d / 'c.key'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', str(key), '-out', str(crt),
                    '-days', '2', '-subj', '/CN=x'], check=True, capture_output=True)
    port = free_port()
    s = module_shield([http_origin('o', module_origin)],
                      [behavior('/rw/*', 'o', allowed_methods=ALL_METHODS,
                                forward_headers=['X-Keep']),
                       behavior('*', 'o')],
                      port=port, listen=[{'address': f'127.0.0.1:{port}', 'tls': True}],
                      tls={'certificates': [{'cert': str(crt), 'key': str(key)}]},
                      limits={'max_body_size': '1K'}, cache={'enabled': False})
    return s


def tls_conn(port):
    c = Conn(port, timeout=5)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.sock = ctx.wrap_socket(c.sock, server_hostname='x')
    return c


def test_tls_upgrade_then_request(tls_sh, module_origin):
    """The Upgrade crash, over TLS: served plainly, then the next request in a second
    record."""
    with tls_conn(tls_sh.port) as c:
        c.send(UPGRADE_WS)
        assert c.read_response().status == 200
        c.send(PLAIN)
        r = c.read_response()
        assert r is not None and r.status == 200 and r.body == b'origin:/', r
    tls_sh.assert_alive()


@pytest.mark.parametrize('case', TRAILER_CASES[:3], ids=[t[0] for t in TRAILER_CASES[:3]])
def test_tls_trailers_in_many_records(tls_sh, module_origin, case):
    """Trailers over TLS, one small record at a time: the request stays intact."""
    _, method, trailers = case
    data = (method + b' /rw/tls-trailers HTTP/1.1\r\nHost: x\r\nX-Keep: k\r\n'
            b'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n' + trailers + b'\r\n')
    n0 = module_origin.count()
    with tls_conn(tls_sh.port) as c:
        for i in range(0, len(data), 61):
            c.send(data[i:i + 61])
        c.send(CANARY)
        r1, r2 = c.read_response(method=method.decode()), c.read_response()
        assert (r1.status, r2.body) == (200, b'origin:/canary'), (r1, r2)
    reqs = module_origin.requests[n0:]
    assert [q.path for q in reqs] == ['/rw/tls-trailers', '/canary'], reqs
    assert reqs[0].body == b'hello' and reqs[0].header('x-keep') == 'k'


@pytest.mark.parametrize('case', DIFF_CASES, ids=[c[0] for c in DIFF_CASES])
def test_tls_differential_rejected(tls_sh, module_origin, case):
    """Every parser differential, over TLS: 400, closed, the origin untouched."""
    n0 = module_origin.snapshot()
    with tls_conn(tls_sh.port) as c:
        c.send(case[1] + CANARY)
        r = c.read_response()
        assert r is not None and r.status == 400, r
        assert c.closed_within(3), 'connection left open'
    assert module_origin.snapshot() == n0, 'origin contacted'


def test_head_error_after_empty_lines_has_no_body(sh, module_origin):
    """Regression: a HEAD refused before llhttp read it, after empty lines, got an error
    page with a body (the method was not recognised behind the CRLF)."""
    with Conn(sh.port, timeout=5) as c:
        c.send(b'\r\nHEAD /a HTTP/1.2\r\nHost: x\r\n\r\n')
        r = c.read_response(method='HEAD')
        assert r is not None and r.status == 505, r
        assert c.closed_within(3), f'bytes after the HEAD answer: {bytes(c.buf[:80])!r}'
