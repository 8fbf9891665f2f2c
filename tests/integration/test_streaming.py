"""Streaming, backpressure and origin faults (TESTING.md F, origin side)."""

import hashlib
import time

import pytest

from conftest import (ALL_METHODS, MIB, SAN, Conn, Reply, assert_aborted, assert_shield_headers,
                      behavior, curl, det_sha256, fetch, free_port, get, http_origin, request_bytes)


def start(shield, origin, **okw):
    """Shield with one http origin `o` (POST allowed under /rw/)."""
    return shield([http_origin('o', origin, **okw)],
                  [behavior('/rw/*', 'o', allowed_methods=ALL_METHODS), behavior('*', 'o')])


# ---- streaming --------------------------------------------------------------------------

def test_first_bytes_before_origin_finishes(shield, origin):
    size = 2 * MIB
    origin.route('/slow', Reply(size=size, seed=4, pieces=16, interval=0.2))  # ~3 s
    sh = start(shield, origin)
    h = hashlib.sha256()
    with Conn(sh.port, timeout=20) as c:
        t0 = time.monotonic()
        c.send(request_bytes('GET', '/slow'))
        assert c.wait_bytes(b'\r\n\r\n', 10)
        while len(c.buf) <= c.buf.index(b'\r\n\r\n') + 4:
            c._fill(t0 + 10)
        first = time.monotonic() - t0
        r = c.read_response(sink=h.update)
        total = time.monotonic() - t0
    assert r.status == 200 and r.complete
    assert h.hexdigest() == det_sha256(size, 4)
    assert total > 2.0, f'origin pacing not effective ({total:.2f}s)'
    assert first < total / 2, f'first body byte after {first:.2f}s of {total:.2f}s: not streamed'


def test_chunked_origin_streamed_intact(shield, origin):
    origin.route('/ch', Reply(size=3 * MIB + 7, seed=5, chunked=True, chunk=10_000))
    sh = start(shield, origin)
    h = hashlib.sha256()
    with Conn(sh.port, timeout=30) as c:
        c.send(request_bytes('GET', '/ch'))
        r = c.read_response(sink=h.update)
    assert r.status == 200 and r.complete
    assert h.hexdigest() == det_sha256(3 * MIB + 7, 5)


def test_slow_reader_bounded_memory(shield, origin):
    size = 100 * MIB
    origin.route('/huge', Reply(size=size, seed=6))
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')],
                env={'ASAN_OPTIONS_EXTRA': 'quarantine_size_mb=16'})
    assert get(sh.port, '/warm').status == 200
    base = sh.rss_kb()
    peak = base
    h = hashlib.sha256()
    received = 0
    with Conn(sh.port, timeout=60, rcvbuf=8192) as c:
        c.send(request_bytes('GET', '/huge'))
        assert c.wait_bytes(b'\r\n\r\n', 10), 'no response head'
        head_end = c.buf.index(b'\r\n\r\n') + 4
        head = bytes(c.buf[:head_end])
        assert head.startswith(b'HTTP/1.1 200'), head
        h.update(c.buf[head_end:])
        received = len(c.buf) - head_end
        c.buf.clear()
        c.sock.settimeout(5)
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:  # slow reader: 16 KiB every 20 ms
            d = c.sock.recv(16384)
            assert d, 'connection closed early'
            h.update(d)
            received += len(d)
            peak = max(peak, sh.rss_kb())
            time.sleep(0.02)  # deliberate reader pacing, not synchronisation
        growth_mib = (peak - base) / 1024
        assert received < size // 2, 'reader was not slow enough to test backpressure'
        c.sock.settimeout(60)
        while received < size:  # now read the rest at full speed, byte-exact
            d = c.sock.recv(1 << 20)
            assert d, f'closed after {received} of {size} bytes'
            h.update(d)
            received += len(d)
    assert received == size
    assert h.hexdigest() == det_sha256(size, 6)
    assert growth_mib < 64, f'RSS grew {growth_mib:.1f} MiB for a slow reader of a 100 MiB object'


# ---- aborted bodies: never a clean end ---------------------------------------------------

@pytest.mark.parametrize('reply', [
    Reply(size=MIB, truncate=300_000),
    Reply(size=MIB, reset=300_000),
    Reply(size=MIB, broken_chunked=True),
    Reply(size=MIB, chunked=True, truncate=300_000),
], ids=['short-content-length', 'reset-mid-body', 'broken-chunked', 'chunked-eof'])
def test_origin_body_failure_aborts_viewer(shield, origin, reply):
    origin.route('/bad', reply)
    sh = start(shield, origin)
    with Conn(sh.port, timeout=15) as c:
        c.send(request_bytes('GET', '/bad'))
        assert_aborted(c, MIB)
    res = curl('-o', '/dev/null', f'http://127.0.0.1:{sh.port}/bad', timeout=30)
    assert res.returncode in (18, 56, 92), f'curl exit {res.returncode}: {res.stderr!r}'
    assert origin.count('/bad') == 2, 'a failed fill was cached'
    assert get(sh.port, '/ok').status == 200  # Shield is fine afterwards


def test_origin_stall_mid_body_aborts_after_read_timeout(shield, origin):
    origin.route('/stall', Reply(size=MIB, stall_at=100_000, stall=8))
    sh = start(shield, origin, read_timeout='1s')
    with Conn(sh.port, timeout=15) as c:
        t0 = time.monotonic()
        c.send(request_bytes('GET', '/stall'))
        assert_aborted(c, 100_001)
        took = time.monotonic() - t0
    assert took < 5, f'viewer released only after {took:.1f}s (read_timeout 1s)'


# ---- origin failures before the head -------------------------------------------------------

def test_connection_refused_502(shield):
    sh = shield([http_origin('o', f'http://127.0.0.1:{free_port()}', connect_timeout='1s')],
                [behavior('*', 'o')])
    t0 = time.monotonic()
    r = get(sh.port, '/x')
    assert r.status == 502
    assert_shield_headers(r, error=True)
    assert time.monotonic() - t0 < 5


def test_no_first_byte_504(shield, origin):
    origin.route('/late', Reply(body=b'too late', stall_head=10))
    sh = start(shield, origin, read_timeout='1s', connect_timeout='1s', attempts=1)
    t0 = time.monotonic()
    r = get(sh.port, '/late')
    took = time.monotonic() - t0
    assert r.status == 504
    assert_shield_headers(r, error=True)
    assert 0.8 <= took < 4, took
    assert origin.count('/late') == 1


def test_timeout_before_head_is_retried(shield, origin):
    origin.route('/late2', Reply(body=b'too late', stall_head=10))
    sh = start(shield, origin, read_timeout='1s', connect_timeout='1s', attempts=2)
    r = get(sh.port, '/late2')
    assert r.status == 504
    assert origin.count('/late2') == 2


def test_invalid_origin_head_502(shield, origin):
    origin.route('/garbage', Reply(raw=b'HTTP/1.1 abc nonsense\r\n\r\n', close=True))
    sh = start(shield, origin, attempts=1)
    r = get(sh.port, '/garbage')
    assert r.status == 502


# ---- retries ---------------------------------------------------------------------------------

def test_get_retried_when_first_connection_dropped(shield, origin):
    origin.route('/flaky', Reply(body=b'second time lucky', fail_first=1))
    sh = start(shield, origin)
    r = get(sh.port, '/flaky')
    assert (r.status, r.body) == (200, b'second time lucky')
    assert origin.count('/flaky') == 2
    assert origin.connections == 2


def test_head_retried(shield, origin):
    origin.route('/flaky-head', Reply(body=b'abc', fail_first=1))
    sh = start(shield, origin)
    r = fetch(sh.port, '/flaky-head', method='HEAD')
    assert r.status == 200 and r.header('Content-Length') == '3'
    assert origin.count('/flaky-head') == 2


def test_retries_exhausted_502(shield, origin):
    origin.route('/dead', Reply(body=b'never', fail_first=10))
    sh = start(shield, origin)  # attempts default 3
    r = get(sh.port, '/dead')
    assert r.status == 502
    assert origin.count('/dead') == 3


def test_post_not_retried(shield, origin):
    origin.route('/rw/post', Reply(body=b'posted', fail_first=1))
    sh = start(shield, origin)
    r = fetch(sh.port, '/rw/post', method='POST', body=b'data')
    assert r.status == 502
    assert origin.count('/rw/post') == 1


def test_origin_5xx_not_retried(shield, origin):
    origin.route('/e500', Reply(500, b'boom', content_type='text/plain'))
    sh = start(shield, origin)
    r = get(sh.port, '/e500')
    assert (r.status, r.body) == (500, b'boom')
    assert origin.count('/e500') == 1


def test_no_retry_after_head(shield, origin):
    origin.route('/cut-once', Reply(size=MIB, truncate=1000))
    sh = start(shield, origin)
    with Conn(sh.port) as c:
        c.send(request_bytes('GET', '/cut-once'))
        assert_aborted(c, MIB)
    assert origin.count('/cut-once') == 1


def test_origin_connections_reused(shield, origin):
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')], node={'workers': 1})
    with Conn(sh.port) as c:
        for i in range(5):
            c.send(request_bytes('GET', f'/reuse/{i}'))
            assert c.read_response().status == 200
    assert origin.count() == 5
    assert origin.connections == 1, f'{origin.connections} origin connections for 5 requests'


@pytest.mark.skipif(SAN, reason='timing-only; covered on the normal build')
def test_concurrent_slow_downloads_do_not_block_each_other(shield, origin):
    origin.route('/slow-a', Reply(size=MIB, pieces=10, interval=0.2))
    origin.route('/fast', Reply(body=b'quick'))
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')], node={'workers': 1})
    with Conn(sh.port, timeout=10) as slow:
        slow.send(request_bytes('GET', '/slow-a'))
        assert slow.wait_bytes(b'\r\n\r\n', 5)
        t0 = time.monotonic()
        r = get(sh.port, '/fast')
        assert r.body == b'quick' and time.monotonic() - t0 < 1.0
        r = slow.read_response()
        assert r.complete and len(r.body) == MIB
