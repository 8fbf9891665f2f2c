"""Client identity (trusted proxies, X-Forwarded-For, CloudFront-Viewer-Address,
CloudFront-Viewer-Country) and geo restriction with a .mmdb generated at test time by
mkmmdb.pl (MaxMind::DB::Writer). Clients are told apart by their loopback source
address (127.0.0.x); the database maps:

    127.0.0.2 FR   127.0.0.3 US   127.0.0.4 FR (written as ::ffff:127.0.0.4)
    127.0.0.5 -    127.0.0.6 JP (registered_country only)   10.0.0.1 FR
    ::1 DE         2001:db8::/32 DE
"""

import json
import os
import signal
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from conftest import (NODE, SHIELD_BIN, Conn, behavior, free_port, http_origin, port_open,
                      request_bytes, wait_until)

MKMMDB = Path(__file__).resolve().with_name('mkmmdb.pl')
GEO = ['127.0.0.2=FR', '127.0.0.3=US', '::ffff:127.0.0.4=FR', '127.0.0.6=@JP', '10.0.0.1=FR',
       '::1=DE', '2001:db8::/32=DE']
GEO_V4 = ['127.0.0.2=FR', '127.0.0.3=US', '::ffff:127.0.0.4=FR', '127.0.0.6=@JP']
BLOCK = ['FR', 'DE', 'JP']
CVA = 'CloudFront-Viewer-Address'
CVC = 'CloudFront-Viewer-Country'


def mkmmdb(path, entries, v4only=False):
    subprocess.run(['perl', str(MKMMDB)] + (['-4'] if v4only else []) + [str(path)] + entries,
                   check=True, capture_output=True, timeout=60)
    return path


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(('::1', 0))
        s.close()
        return True
    except OSError:
        return False


class SrcConn(Conn):
    """A Conn whose socket is bound to a chosen source address before connecting."""

    def __init__(self, port, src, timeout=10.0, dst='127.0.0.1'):
        family = socket.AF_INET6 if ':' in dst else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.bind((src, 0))
        self.sock.connect((dst, port))
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.timeout = timeout


def get_from(port, src, path='/', headers=None, method='GET', dst='127.0.0.1'):
    with SrcConn(port, src, dst=dst) as c:
        c.send(request_bytes(method, path, headers))
        return c.read_response(method=method)


def stats(sh):
    with urllib.request.urlopen(f'http://127.0.0.1:{sh.admin_port}/stats', timeout=10) as r:
        return json.loads(r.read())['edge']


def start(factory, origin, db, mode, countries, admin=False, **over):
    admin_port = free_port()
    cfg = dict(geo={'database': str(db), 'mode': mode, 'countries': countries},
               cache={'enabled': False}, **over)
    if admin:
        cfg['admin'] = {'address': f'127.0.0.1:{admin_port}'}
    sh = factory([http_origin('o', origin)], [behavior('*', 'o')], **cfg)
    sh.admin_port = admin_port
    if admin:  # the admin listener opens after the workers' listeners
        wait_until(lambda: port_open(admin_port), 10, what='admin listener')
    return sh


def assert_geo_blocked(r):
    assert r is not None and r.status == 403, r
    assert r.header('X-Cache') == f'Error from {NODE}', r.headers
    assert r.header('Content-Type') == 'text/html', r.headers
    assert b'block access from your country' in r.body, r.body
    assert r.header('X-Request-Id').encode() in r.body


@pytest.fixture(scope='module')
def dbs(tmp_path_factory):
    d = tmp_path_factory.mktemp('geo')
    return {'v6': mkmmdb(d / 'geo.mmdb', GEO), 'v4': mkmmdb(d / 'geo4.mmdb', GEO_V4, True)}


@pytest.fixture(scope='module')
def v6port():
    return free_port() if ipv6_loopback() else None


@pytest.fixture(scope='module')
def blk(module_shield, module_origin, dbs, v6port):
    """Blocklist; nobody is trusted, even though a country header is configured."""
    port = free_port()
    listen = [{'address': f'127.0.0.1:{port}'}]
    if v6port:
        listen.append({'address': f'[::1]:{v6port}'})
    return start(module_shield, module_origin, dbs['v6'], 'blocklist', BLOCK, admin=True,
                 port=port, listen=listen, trusted_proxies={'country_header': CVC})


@pytest.fixture(scope='module')
def tr(module_shield, module_origin, dbs):
    """Blocklist behind trusted proxies: 127.0.0.1 and the 10/8 proxy tier."""
    return start(module_shield, module_origin, dbs['v6'], 'blocklist', BLOCK,
                 trusted_proxies={'cidrs': ['127.0.0.1', '10.0.0.0/8'], 'country_header': CVC})


@pytest.fixture(scope='module')
def first(module_shield, module_origin, dbs):
    return start(module_shield, module_origin, dbs['v6'], 'blocklist', BLOCK,
                 trusted_proxies={'cidrs': ['127.0.0.1/32'], 'position': 'first',
                                  'viewer_address': False})


@pytest.fixture(scope='module')
def allow(module_shield, module_origin, dbs):
    """Allowlist on an IPv4-only database."""
    return start(module_shield, module_origin, dbs['v4'], 'allowlist', ['US'],
                 trusted_proxies={'cidrs': ['127.0.0.1/32']})


# ---- geo by socket peer ------------------------------------------------------------------

def test_blocklist(blk, module_origin):
    n0 = module_origin.count('/geo/fr')
    assert_geo_blocked(get_from(blk.port, '127.0.0.2', '/geo/fr'))
    assert module_origin.count('/geo/fr') == n0, 'a geo-blocked request reached the origin'
    r = get_from(blk.port, '127.0.0.2', '/geo/fr', method='HEAD')
    assert r.status == 403 and r.body == b''
    for src in ('127.0.0.3', '127.0.0.5'):  # US, unknown
        r = get_from(blk.port, src, '/geo/ok')
        assert r.status == 200 and r.body == b'origin:/geo/ok', (src, r)
    # registered_country is the fallback when country is absent
    assert_geo_blocked(get_from(blk.port, '127.0.0.6', '/geo/jp'))


def test_blocked_requests_logged_and_counted(blk):
    before = stats(blk)['geo_blocked']
    for i in range(3):
        assert_geo_blocked(get_from(blk.port, '127.0.0.2', f'/geo/counted-{i}'))
    assert get_from(blk.port, '127.0.0.3', '/geo/counted-us').status == 200
    assert stats(blk)['geo_blocked'] == before + 3
    wait_until(lambda: '127.0.0.2: 403 GET /geo/counted-2' in blk.stderr(), 5,
               what='log line of the blocked request')


def test_untrusted_peer_headers_ignored(blk):
    # 127.0.0.1 is unknown to the database and not a trusted proxy here
    for h in ({'X-Forwarded-For': '127.0.0.2'}, {CVC: 'FR'}, {CVA: '127.0.0.2:4444'}):
        r = get_from(blk.port, '127.0.0.1', '/geo/spoof', headers=h)
        assert r.status == 200, (h, r)
    # a blocked client cannot talk itself out of it
    for h in ({'X-Forwarded-For': '127.0.0.3'}, {CVC: 'US'}, {CVA: '127.0.0.3:4444'}):
        assert_geo_blocked(get_from(blk.port, '127.0.0.2', '/geo/spoof', headers=h))


def test_ipv6_listener(blk, v6port):
    if not v6port:
        pytest.skip('no IPv6 loopback here')
    assert_geo_blocked(get_from(v6port, '::1', '/geo/v6', dst='::1'))


def test_allowlist_v4_database(allow):
    assert_geo_blocked(get_from(allow.port, '127.0.0.2', '/a/fr'))
    assert get_from(allow.port, '127.0.0.3', '/a/us').status == 200
    assert get_from(allow.port, '127.0.0.5', '/a/unknown').status == 200  # unknown is served
    assert_geo_blocked(get_from(allow.port, '127.0.0.6', '/a/jp'))
    assert_geo_blocked(get_from(allow.port, '127.0.0.4', '/a/fr-mapped'))


def test_allowlist_mapped_addresses_on_v4_database(allow):
    """IPv4-mapped client addresses are looked up as IPv4: an IPv4-only database
    answers for them (an IPv6 lookup there is an error)."""
    def via(xff):
        return get_from(allow.port, '127.0.0.1', '/a/mapped', headers={'X-Forwarded-For': xff})
    assert via('::ffff:127.0.0.3').status == 200
    assert_geo_blocked(via('::ffff:127.0.0.2'))
    assert_geo_blocked(via('::ffff:7f00:4'))
    assert via('2001:db8::1').status == 200  # IPv6 in an IPv4 database: unknown, served


# ---- identity from trusted proxies ---------------------------------------------------------

XFF = 'X-Forwarded-For'


@pytest.mark.parametrize('headers,blocked', [
    ([], False),                                          # the peer itself: unknown
    ([(XFF, '127.0.0.2')], True),
    ([(XFF, '127.0.0.3')], False),
    ([(XFF, '127.0.0.2, 10.1.2.3')], True),               # trusted proxy tier skipped
    ([(XFF, '127.0.0.2,10.1.2.3 , 127.0.0.1')], True),
    ([(XFF, '127.0.0.2, 127.0.0.3')], False),             # right-most untrusted wins
    ([(XFF, '127.0.0.3, 127.0.0.2')], True),
    ([(XFF, '127.0.0.3'), (XFF, '127.0.0.2')], True),     # lines joined in order
    ([(XFF, '127.0.0.2'), (XFF, '127.0.0.3')], False),
    ([(XFF, '127.0.0.2, 10.0.0.5'), (XFF, '10.0.0.6')], True),
    ([(XFF, '10.0.0.1, 10.0.0.2')], True),                # all trusted: the left-most
    ([(XFF, '127.0.0.2,, ,')], True),                     # empty elements skipped
    ([(XFF, '127.0.0.2:5555')], True),                    # v4:port
    ([(XFF, '[::ffff:127.0.0.2]:5555')], True),           # [v6]:port
    ([(XFF, '[2001:db8::9]')], True),
    ([(XFF, '::ffff:127.0.0.4')], True),                  # v4-mapped
    ([(XFF, '2001:db8::1')], True),
    ([(XFF, '127.0.0.2, unknown')], False),               # invalid stops: the peer stays
    ([(XFF, 'unknown, 127.0.0.2')], True),                # ...only once reached
    ([(XFF, '127.0.0.2, 10.0.0.300')], False),
    ([(XFF, '127.0.0.2, 127.0.0.3:99999')], False),
    ([(XFF, '127.0.0.2, fe80::1%eth0')], False),
    ([(XFF, '')], False),
    ([(CVC, 'FR')], True),
    ([(CVC, ' fr ')], True),
    ([(CVC, 'US'), (XFF, '127.0.0.2')], False),           # the proxy's country wins
    ([(CVC, 'FRA'), (XFF, '127.0.0.3')], False),          # invalid code: ignored
    ([(CVC, 'F1')], False),
    ([(CVC, 'FR'), (CVC, 'FR')], False),                  # duplicated: ignored
    ([(CVA, '127.0.0.2:4444')], True),
    ([(CVA, '127.0.0.3:4444'), (XFF, '127.0.0.2')], False),  # Viewer-Address wins
    ([(CVA, '::ffff:127.0.0.2:4444')], True),             # CloudFront's bare v6 form
    ([(CVA, '2001:db8::1:443')], True),
    ([(CVA, '[2001:db8::1]:443')], True),
    ([(CVA, '127.0.0.2')], False),                        # no port: invalid, peer kept
    ([(CVA, '127.0.0.2'), (XFF, '127.0.0.2')], False),    # ...without falling back to XFF
    ([(CVA, '127.0.0.2:70000')], False),
    ([(CVA, '127.0.0.2:1'), (CVA, '127.0.0.2:2')], False),  # duplicated
])
def test_trusted_proxy(tr, module_origin, headers, blocked):
    r = get_from(tr.port, '127.0.0.1', '/t/x', headers=headers)
    if blocked:
        assert_geo_blocked(r)
    else:
        assert r.status == 200, (headers, r)


def test_trusted_proxy_origin_sees_socket_peer(tr, module_origin):
    n0 = len(module_origin.requests)
    r = get_from(tr.port, '127.0.0.1', '/t/xff', headers={XFF: '127.0.0.3'})
    assert r.status == 200
    req = module_origin.requests[n0]
    # CloudFront appends the peer it saw, not the client it decided on
    assert req.header('X-Forwarded-For') == '127.0.0.3, 127.0.0.1'


@pytest.mark.parametrize('src,headers', [
    ('127.0.0.3', {XFF: '127.0.0.2'}),
    ('127.0.0.3', {CVC: 'FR'}),
    ('127.0.0.3', {CVA: '127.0.0.2:1'}),
    ('127.0.0.5', {XFF: '10.0.0.1'}),
])
def test_untrusted_peer_behind_trusted_config(tr, src, headers):
    r = get_from(tr.port, src, '/t/untrusted', headers=headers)
    assert r.status == 200, (src, headers, r)


def test_untrusted_blocked_peer_behind_trusted_config(tr):
    for h in ({XFF: '127.0.0.3'}, {CVC: 'US'}, {CVA: '127.0.0.3:1'}):
        assert_geo_blocked(get_from(tr.port, '127.0.0.2', '/t/untrusted', headers=h))


@pytest.mark.parametrize('headers,blocked', [
    ({XFF: '127.0.0.2, 127.0.0.3'}, True),   # position = first: the left-most
    ({XFF: '127.0.0.3, 127.0.0.2'}, False),
    ({XFF: ' , 127.0.0.2'}, True),
    ({XFF: 'junk, 127.0.0.3'}, False),
    ({CVA: '127.0.0.2:1'}, False),           # viewer_address = false
])
def test_position_first(first, headers, blocked):
    r = get_from(first.port, '127.0.0.1', '/f/x', headers=headers)
    if blocked:
        assert_geo_blocked(r)
    else:
        assert r.status == 200, (headers, r)


# ---- reload ------------------------------------------------------------------------------

def test_sighup_swaps_database(shield, origin, tmp_path):
    """SIGHUP re-reads the database while requests keep flowing: the answer flips,
    no request fails meanwhile, and a broken file keeps the previous database."""
    db = mkmmdb(tmp_path / 'geo.mmdb', ['127.0.0.2=FR', '127.0.0.3=US'])
    sh = start(shield, origin, db, 'blocklist', ['FR'])
    assert_geo_blocked(get_from(sh.port, '127.0.0.2', '/r/before'))

    stop = threading.Event()
    lock = threading.Lock()
    seen = {'ok': 0, 'bad': []}

    def load():
        while not stop.is_set():
            try:
                r = get_from(sh.port, '127.0.0.3', '/r/load')
                bad = None if r is not None and r.status == 200 else r
            except Exception as e:  # noqa: BLE001 - every failure counts
                bad = repr(e)
            with lock:
                if bad is None:
                    seen['ok'] += 1
                else:
                    seen['bad'].append(bad)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: seen['ok'] >= 20, 10, what='load running')
        mkmmdb(db, ['127.0.0.2=US', '127.0.0.3=US'])
        sh.signal(signal.SIGHUP)
        wait_until(lambda: get_from(sh.port, '127.0.0.2', '/r/flip').status == 200, 10,
                   interval=0.05, what='the new database to answer')
        # every worker now uses the new one
        for i in range(10):
            assert get_from(sh.port, '127.0.0.2', f'/r/after-{i}').status == 200

        # a broken file: logged, the previous database stays in use
        tmp = tmp_path / 'broken.tmp'
        tmp.write_bytes(b'this is not a MaxMind database' * 10)
        os.replace(tmp, db)
        sh.signal(signal.SIGHUP)
        wait_until(lambda: 'keeping the previous geo database' in sh.stderr(), 10,
                   what='the reload error')
        assert str(db) in sh.stderr()
        for i in range(10):
            assert get_from(sh.port, '127.0.0.2', f'/r/kept-{i}').status == 200
        n = seen['ok']
        wait_until(lambda: seen['ok'] >= n + 20, 10, what='load still running')
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert seen['bad'] == [], seen['bad'][:5]
    assert seen['ok'] > 40


def test_unopenable_database_fails_start(shield, origin, tmp_path):
    db = tmp_path / 'bad.mmdb'
    db.write_bytes(b'not a database')
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')], start=False,
                geo={'database': str(db), 'mode': 'blocklist', 'countries': ['FR']})
    p = subprocess.run([SHIELD_BIN, '-c', str(sh.conf)], capture_output=True, timeout=30,
                       env=sh.base_env())
    assert p.returncode != 0
    err = p.stderr.decode()
    assert str(db) in err and 'geo.database' in err, err
