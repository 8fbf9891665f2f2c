"""WAF rate-based rule: per-client limits keyed on the client address (as the identity
module decided) or on the first address of a header (forwarded_ip), shared by all
workers, 403 by default or a custom status with Retry-After. Clients are told apart by
their loopback source address (127.0.0.x). Recovery after the window and the sliding
arithmetic are unit-tested with an explicit clock (tests/unit/test_ratelimit.c); here
the block must hold within the (60 s minimum) window."""

import json
import socket
import threading
import time
import urllib.request

import pytest

from conftest import (NODE, Conn, behavior, free_port, http_origin, port_open, request_bytes,
                      wait_until)

LIMIT = 10
# Windows are fixed intervals of CLOCK_MONOTONIC (the clock Python's monotonic() reads
# too); every window length used here is a multiple of 60 s.
WINDOW_EDGE_S = 60
TEST_SPAN_S = 8


@pytest.fixture(autouse=True)
def clear_of_window_edge():
    """The sliding estimate weights the previous window by the time left in it: a
    test that fills a budget just before a window boundary and checks the block just
    after it sees the estimate drop below the limit (correct, and covered by the unit
    tests with an explicit clock). Each test starts with at least TEST_SPAN_S left in
    the current window (deliberate timing, not a synchronisation)."""
    left = WINDOW_EDGE_S - time.monotonic() % WINDOW_EDGE_S
    if left < TEST_SPAN_S:
        time.sleep(left + 0.05)


class SrcConn(Conn):
    """A Conn whose socket is bound to a chosen source address before connecting."""

    def __init__(self, port, src, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.bind((src, 0))
        self.sock.connect(('127.0.0.1', port))
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.timeout = timeout


def get_from(port, src, path='/', headers=None):
    with SrcConn(port, src) as c:
        c.send(request_bytes('GET', path, headers))
        return c.read_response()


def statuses(port, src, n, path='/', headers=None):
    return [get_from(port, src, path, headers).status for _ in range(n)]


def stats(sh):
    with urllib.request.urlopen(f'http://127.0.0.1:{sh.admin_port}/stats', timeout=10) as r:
        return json.loads(r.read())['edge']


def start(factory, origin, rate_limit, **over):
    admin_port = free_port()
    sh = factory([http_origin('o', origin)], [behavior('*', 'o')], rate_limit=rate_limit,
                 cache={'enabled': False}, admin={'address': f'127.0.0.1:{admin_port}'}, **over)
    sh.admin_port = admin_port
    # the admin listener opens after the workers' listeners
    wait_until(lambda: port_open(admin_port), 10, what='admin listener')
    return sh


def assert_rate_blocked(r, status=403):
    assert r is not None and r.status == status, r
    assert r.header('X-Cache') == f'Error from {NODE}', r.headers
    assert b'Request blocked.' in r.body, r.body
    if status == 429:
        ra = r.header('Retry-After')
        # every request counts, so a client that keeps knocking waits longer; the
        # estimate is below two windows
        assert ra and ra.isdigit() and 1 <= int(ra) < 120, r.headers
    else:
        assert not r.has('Retry-After'), r.headers


@pytest.fixture(scope='module')
def ip_rule(module_shield, module_origin):
    """key = ip, 403; 127.0.0.1 is a trusted proxy (node.workers = 2)."""
    return start(module_shield, module_origin, {'limit': LIMIT, 'window': 60},
                 trusted_proxies={'cidrs': ['127.0.0.1/32']})


@pytest.fixture(scope='module')
def fwd_rule(module_shield, module_origin):
    return start(module_shield, module_origin,
                 {'limit': LIMIT, 'window': '1m', 'key': 'forwarded_ip', 'header': 'X-Client-IP',
                  'fallback': 'match', 'status': 429})


@pytest.fixture(scope='module')
def nomatch_rule(module_shield, module_origin):
    return start(module_shield, module_origin,
                 {'limit': LIMIT, 'window': 120, 'key': 'forwarded_ip'})


def test_limit_then_blocked_per_client(ip_rule, module_origin):
    before = stats(ip_rule)['rate_limited']
    assert statuses(ip_rule.port, '127.0.0.2', LIMIT, '/rl/a') == [200] * LIMIT
    n0 = module_origin.count('/rl/blocked')
    for _ in range(2):
        assert_rate_blocked(get_from(ip_rule.port, '127.0.0.2', '/rl/blocked'))
    assert module_origin.count('/rl/blocked') == n0, 'a rate-limited request reached the origin'
    # another client is unaffected
    assert statuses(ip_rule.port, '127.0.0.3', 3, '/rl/b') == [200] * 3
    assert stats(ip_rule)['rate_limited'] == before + 2
    # rejected requests are logged like any other
    wait_until(lambda: '127.0.0.2: 403 GET /rl/blocked' in ip_rule.stderr(), 5,
               what='log line of the rate-limited request')
    # the block holds within the window
    time.sleep(1)
    assert_rate_blocked(get_from(ip_rule.port, '127.0.0.2', '/rl/later'))


def test_keepalive_requests_count(ip_rule):
    with SrcConn(ip_rule.port, '127.0.0.4') as c:
        got = []
        for i in range(LIMIT + 3):
            c.send(request_bytes('GET', f'/rl/ka-{i}'))
            got.append(c.read_response().status)
    assert got == [200] * LIMIT + [403] * 3


def test_workers_share_counts(ip_rule):
    """30 simultaneous connections spread over both workers: exactly LIMIT pass."""
    results = []
    lock = threading.Lock()
    go = threading.Barrier(30)

    def one(i):
        c = SrcConn(ip_rule.port, '127.0.0.5')
        try:
            go.wait(10)
            c.send(request_bytes('GET', f'/rl/par-{i}'))
            s = c.read_response().status
        finally:
            c.close()
        with lock:
            results.append(s)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [200] * LIMIT + [403] * (30 - LIMIT)


def test_key_is_client_decided_by_identity(ip_rule):
    xff = {'X-Forwarded-For': '127.0.0.9'}
    assert statuses(ip_rule.port, '127.0.0.1', LIMIT, '/rl/fwd', xff) == [200] * LIMIT
    assert_rate_blocked(get_from(ip_rule.port, '127.0.0.1', '/rl/fwd', xff))
    # the proxy itself and its other clients have their own budgets
    assert get_from(ip_rule.port, '127.0.0.1', '/rl/fwd').status == 200
    assert get_from(ip_rule.port, '127.0.0.1', '/rl/fwd', {'X-Forwarded-For': '127.0.0.10'}
                    ).status == 200
    # an untrusted peer cannot borrow (or burn) someone else's key
    assert get_from(ip_rule.port, '127.0.0.6', '/rl/fwd', xff).status == 200


def test_forwarded_ip_key_and_429(fwd_rule):
    h = {'X-Client-IP': '192.0.2.1'}
    assert statuses(fwd_rule.port, '127.0.0.1', LIMIT, '/fw/a', h) == [200] * LIMIT
    r = get_from(fwd_rule.port, '127.0.0.1', '/fw/a', h)
    assert_rate_blocked(r, 429)
    # 11 requests now: allowed again once 11 * (60 - t) / 60 < 10 in the next window,
    # i.e. at most 60 s + 5.5 s away
    assert int(r.header('Retry-After')) <= 66
    # keyed by the header, not the socket: another source address is the same key
    assert_rate_blocked(get_from(fwd_rule.port, '127.0.0.7', '/fw/a', h), 429)
    # the first address of the header is the key
    assert_rate_blocked(get_from(fwd_rule.port, '127.0.0.1', '/fw/a',
                                 {'X-Client-IP': '192.0.2.1, 10.0.0.1'}), 429)
    assert get_from(fwd_rule.port, '127.0.0.1', '/fw/a',
                    {'X-Client-IP': '192.0.2.2, 192.0.2.1'}).status == 200
    assert get_from(fwd_rule.port, '127.0.0.1', '/fw/a', {'X-Client-IP': ' 192.0.2.3 '}
                    ).status == 200
    # X-Forwarded-For is not the configured header
    assert get_from(fwd_rule.port, '127.0.0.1', '/fw/a',
                    {'X-Forwarded-For': '192.0.2.1'}).status == 200


def test_forwarded_ip_header_absent_not_applied(fwd_rule):
    assert statuses(fwd_rule.port, '127.0.0.8', LIMIT + 5, '/fw/none') == [200] * (LIMIT + 5)


@pytest.mark.parametrize('value', ['junk', '192.0.2.1:80', '', '[2001:db8::1]', '300.1.1.1'])
def test_forwarded_ip_invalid_fallback_match(fwd_rule, value):
    assert_rate_blocked(get_from(fwd_rule.port, '127.0.0.1', '/fw/bad', {'X-Client-IP': value}),
                        429)


def test_forwarded_ip_invalid_fallback_no_match(nomatch_rule):
    bad = {'X-Forwarded-For': 'junk'}
    assert statuses(nomatch_rule.port, '127.0.0.1', LIMIT + 5, '/nm/bad', bad) == \
        [200] * (LIMIT + 5)
    ok = {'X-Forwarded-For': '2001:db8::7'}
    assert statuses(nomatch_rule.port, '127.0.0.1', LIMIT + 1, '/nm/v6', ok) == \
        [200] * LIMIT + [403]
