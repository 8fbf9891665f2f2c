"""CloudFront real-time log (modules/realtime_log.c, proxy/logring.c).

Receivers are real sockets owned by the test: a UDP socket, an AF_UNIX datagram
socket, or the file target read back. A record is one line of tab-separated
values; the test maps it to names with the canonical order below, so a record
whose values came in the configured (non-canonical) order fails the value checks.
Records are matched to responses by x-edge-request-id = the X-Request-Id header.
"""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import SHIELD_BIN, Reply, ScriptedOrigin, behavior, http_origin, wait_until

CANON = ('timestamp c-ip time-to-first-byte sc-status sc-bytes cs-method cs-protocol cs-host '
         'cs-uri-stem cs-bytes x-edge-location x-edge-request-id x-host-header time-taken '
         'cs-protocol-version c-ip-version cs-user-agent cs-referer cs-cookie cs-uri-query '
         'x-edge-response-result-type x-forwarded-for ssl-protocol ssl-cipher '
         'x-edge-result-type fle-encrypted-fields fle-status sc-content-type sc-content-len '
         'sc-range-start sc-range-end c-port x-edge-detailed-result-type c-country '
         'cs-accept-encoding cs-accept cache-behavior-path-pattern cs-headers cs-header-names '
         'cs-headers-count origin-fbl origin-lbl asn').split()
assert len(CANON) == 43
POP = 'RT50-P1'
# deliberately not in canonical order
SUBSET = ['x-edge-result-type', 'sc-status', 'cs-uri-stem', 'c-ip', 'timestamp',
          'x-edge-request-id', 'cs-host', 'cs-method', 'c-ip-version', 'c-port',
          'x-edge-detailed-result-type', 'cache-behavior-path-pattern', 'sc-content-len',
          'cs-user-agent', 'cs-headers-count', 'x-edge-location']
SUBSET_CANON = [f for f in CANON if f in SUBSET]


def named(line, fields):
    vals = line.rstrip('\n').split('\t')
    assert len(vals) == len(fields), f'{len(vals)} values for {len(fields)} fields: {line!r}'
    assert all(v != '' for v in vals), line
    return dict(zip(fields, vals))


# ---- talking to Shield ------------------------------------------------------

def exchange(port, data):
    """Send raw request bytes, read to EOF: (response bytes, our source port)."""
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    cport = s.getsockname()[1]
    s.sendall(data)
    out = b''
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out, cport


def req(path, extra=b'', host='books.example'):
    return (f'GET {path} HTTP/1.1\r\nHost: {host}\r\n'.encode() + extra +
            b'Connection: close\r\n\r\n')


def head_of(resp):
    lines = resp.split(b'\r\n\r\n', 1)[0].decode('latin-1').split('\r\n')
    h = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(':')
        h[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), h


def rid(resp):
    return head_of(resp)[1]['x-request-id']


class Receiver:
    """A datagram socket (UDP or AF_UNIX) collecting records."""

    def __init__(self, family, addr):
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(addr)
        self.sock.settimeout(0.2)
        self.got = []

    def poll(self):
        while True:
            try:
                d = self.sock.recv(70000)
            except (socket.timeout, BlockingIOError):
                return
            self.got.append(d.decode('ascii'))
            self.sock.settimeout(0.01)  # drain what is queued, then go back to waiting
            continue

    def record(self, fields, request_id, timeout=10):
        box = []

        def found():
            self.sock.settimeout(0.2)
            self.poll()
            box[:] = [r for r in self.got if request_id in r.split('\t')]
            return box
        wait_until(found, timeout, interval=0, what=f'real-time record of {request_id}')
        assert len(box) == 1, box
        assert box[0].endswith('\n') and box[0].count('\n') == 1, box[0]
        return named(box[0], fields)

    def close(self):
        self.sock.close()


# ---- fixtures ---------------------------------------------------------------

@pytest.fixture(scope='module')
def o():
    srv = ScriptedOrigin().start()
    srv.route('/book.epub', Reply(body=b'E' * 1000, headers=[('Cache-Control', 'max-age=600')],
                                  content_type='application/epub+zip'))
    srv.route('/nocache', Reply(body=b'n' * 10, headers=[('Cache-Control', 'no-store')]))
    yield srv
    srv.stop()


def rt_conf(target, **kw):
    return {'realtime': {'target': target, **kw}}


@pytest.fixture(scope='module')
def udp(module_shield, o):
    rx = Receiver(socket.AF_INET, ('127.0.0.1', 0))
    port = rx.sock.getsockname()[1]
    sh = module_shield([http_origin('o', o)], [behavior('/book*', 'o'), behavior('*', 'o')],
                       node={'name': 'test-node', 'pop': POP, 'workers': 2},
                       log=rt_conf(f'udp:127.0.0.1:{port}', fields=SUBSET))
    sh.rx = rx
    yield sh
    rx.close()


@pytest.fixture(scope='module')
def unix(module_shield, o, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('rtu') / 'rt.sock')
    rx = Receiver(socket.AF_UNIX, path)
    sh = module_shield([http_origin('o', o)], [behavior('*', 'o')],
                       node={'name': 'test-node', 'pop': POP, 'workers': 2},
                       log=rt_conf(f'unix:{path}'))
    sh.rx = rx
    yield sh
    rx.close()


# ---- records -----------------------------------------------------------------

def test_udp_miss_then_hit_subset_in_canonical_order(udp):
    ua = b'User-Agent: Mozilla/5.0 "q"\r\n'
    for want in ('Miss', 'Hit'):
        t0 = time.time()
        resp, cport = exchange(udp.port, req('/book.epub?v=1&x=%41', extra=ua))
        st, h = head_of(resp)
        assert st == 200 and h['x-cache'].startswith(want)
        r = udp.rx.record(SUBSET_CANON, rid(resp))
        assert list(r) == SUBSET_CANON
        assert re.fullmatch(r'\d{10}\.\d{3}', r['timestamp'])
        assert abs(float(r['timestamp']) - t0) < 5
        assert r['c-ip'] == '127.0.0.1' and r['c-ip-version'] == 'IPv4'
        assert r['c-port'] == str(cport)
        assert r['sc-status'] == '200' and r['cs-method'] == 'GET'
        assert r['cs-host'] == 'books.example'
        assert r['cs-uri-stem'] == '/book.epub?v=1&x=%2541'  # with the query, escaped
        assert r['x-edge-result-type'] == want == r['x-edge-detailed-result-type']
        assert r['x-edge-location'] == POP
        assert r['cache-behavior-path-pattern'] == '/book*'
        assert r['sc-content-len'] == '1000'
        assert r['cs-user-agent'] == 'Mozilla/5.0%20%22q%22'
        assert r['cs-headers-count'] == '3'  # Host, User-Agent, Connection


def test_udp_error_record(udp):
    resp, _ = exchange(udp.port, req('/a/../b'))
    assert head_of(resp)[0] == 403
    r = udp.rx.record(SUBSET_CANON, rid(resp))
    assert r['sc-status'] == '403' and r['x-edge-result-type'] == 'Error'
    assert r['cs-uri-stem'] == '/a/../b'
    assert r['sc-content-len'] != ''


def test_unix_datagram_all_fields(unix):
    extra = (b'User-Agent: ua\ttab\r\nAccept: */*\r\nAccept-Encoding: gzip, br\r\n'
             b'Cookie: a=1\r\nReferer: https://r.example/\r\nX-Forwarded-For: 203.0.113.9\r\n')
    for want in ('Miss', 'Hit'):
        resp, cport = exchange(unix.port, req('/book.epub?q=1', extra=extra))
        assert head_of(resp)[0] == 200
        r = unix.rx.record(CANON, rid(resp))
        assert r['x-edge-result-type'] == want == r['x-edge-response-result-type']
        assert r['sc-status'] == '200' and r['sc-bytes'] == str(len(resp))
        assert r['cs-protocol'] == 'http' and r['cs-protocol-version'] == 'HTTP/1.1'
        assert r['cs-uri-stem'] == '/book.epub?q=1' and r['cs-uri-query'] == 'q=1'
        assert r['cs-user-agent'] == 'ua%09tab'  # a tab never splits a record
        assert r['cs-accept'] == '*/*' and r['cs-accept-encoding'] == 'gzip,%20br'
        assert r['cs-cookie'] == 'a=1' and r['cs-referer'] == 'https://r.example/'
        assert r['x-forwarded-for'] == '203.0.113.9'
        assert r['sc-content-type'] == 'application/epub+zip'
        assert r['c-port'] == str(cport) and r['c-ip-version'] == 'IPv4'
        assert r['ssl-protocol'] == '-' and r['fle-status'] == '-'
        assert r['cache-behavior-path-pattern'] == '*'
        assert r['cs-header-names'] == ('Host%0AUser-Agent%0AAccept%0AAccept-Encoding%0ACookie'
                                        '%0AReferer%0AX-Forwarded-For%0AConnection%0A')
        assert r['cs-headers'].startswith('Host:books.example%0AUser-Agent:ua%09tab%0A')
        assert r['cs-headers-count'] == '8'
        assert re.fullmatch(r'\d+\.\d{3}', r['time-taken'])
        if want == 'Miss':
            assert re.fullmatch(r'\d+\.\d{3}', r['origin-fbl'])
        else:
            assert r['origin-fbl'] == '-'


# ---- file target, sampling, SIGUSR1 ------------------------------------------

def lines_of(p):
    return p.read_text().splitlines(keepends=True) if p.exists() else []


def test_file_target_and_reopen(shield, o, tmp_path):
    f = tmp_path / 'rt.log'
    sh = shield([http_origin('o', o)], [behavior('*', 'o')],
                log=rt_conf(f'file:{f}', fields=['x-edge-request-id', 'sc-status']))
    ids = [rid(exchange(sh.port, req('/book.epub'))[0]) for _ in range(5)]
    wait_until(lambda: len(lines_of(f)) == 5, 10, what='5 records in the file')
    assert [ln.split('\t')[0] for ln in lines_of(f)] == ['200'] * 5
    assert sorted(ln.rstrip('\n').split('\t')[1] for ln in lines_of(f)) == sorted(ids)
    moved = tmp_path / 'rt.log.1'
    f.rename(moved)  # logrotate, then SIGUSR1
    sh.signal(signal.SIGUSR1)
    more = [rid(exchange(sh.port, req('/book.epub'))[0]) for _ in range(3)]
    wait_until(lambda: len(lines_of(f)) == 3, 10, what='records in the reopened file')
    assert sorted(ln.rstrip('\n').split('\t')[1] for ln in lines_of(f)) == sorted(more)
    assert len(lines_of(moved)) == 5
    sh.stop()
    assert 'real-time log: 8 records sent, 0 dropped' in sh.stderr()


def pipelined(port, n, path='/book.epub'):
    data = b''.join(f'GET {path} HTTP/1.1\r\nHost: x\r\n\r\n'.encode() for _ in range(n - 1))
    data += req(path, host='x')
    resp, _ = exchange(port, data)
    assert resp.count(b'HTTP/1.1 200 ') == n


@pytest.mark.parametrize('pct,want', [(1, 3), (10, 30), (100, 300)])
def test_sampling(shield, o, tmp_path, pct, want):
    f = tmp_path / 'rt.log'
    # one worker: the per-worker counter makes the count exact
    sh = shield([http_origin('o', o)], [behavior('*', 'o')], node={'name': 'n', 'workers': 1},
                log=rt_conf(f'file:{f}', sampling=pct, fields=['sc-status']))
    pipelined(sh.port, 300)
    sh.stop()
    assert len(lines_of(f)) == want
    assert f'real-time log: {want} records sent, 0 dropped' in sh.stderr()


# ---- best effort: receiver down, back again ----------------------------------

def test_unix_receiver_down_then_back(shield, o, tmp_path):
    path = str(tmp_path / 'rt.sock')
    sh = shield([http_origin('o', o)], [behavior('*', 'o')],
                log=rt_conf(f'unix:{path}', fields=['x-edge-request-id']))
    before = []
    for _ in range(20):  # nobody listens: every request still answered
        resp = exchange(sh.port, req('/book.epub'))[0]
        assert head_of(resp)[0] == 200
        before.append(rid(resp))
    wait_until(lambda: 'real-time log: cannot send to' in sh.stderr(), 10,
               what='the sender noticing the missing receiver')
    rx = Receiver(socket.AF_UNIX, path)
    try:
        after = []

        def delivered():
            after.append(rid(exchange(sh.port, req('/book.epub'))[0]))
            rx.poll()
            return set(after) & {g.rstrip('\n') for g in rx.got}
        wait_until(delivered, 10, interval=0.05, what='a record once the receiver is back')
        sh.stop()
        rx.poll()
        got = [g.rstrip('\n') for g in rx.got]
    finally:
        rx.close()
    m = re.search(r'real-time log: (\d+) records sent, (\d+) dropped', sh.stderr())
    assert m, sh.stderr()
    sent, dropped = int(m.group(1)), int(m.group(2))
    # nothing lost silently, nothing duplicated: every record was sent or counted
    assert dropped >= 1 and sent == len(got) and sent + dropped == len(before) + len(after)
    assert len(set(got)) == len(got) and set(got) <= set(before) | set(after)
    assert set(after) <= set(got)  # once back, every record arrives


def test_udp_unreachable_counts_drops(shield, o):
    from conftest import free_port
    port = free_port()  # nothing bound: ICMP port unreachable comes back on loopback
    sh = shield([http_origin('o', o)], [behavior('*', 'o')],
                log=rt_conf(f'udp:127.0.0.1:{port}', fields=['sc-status']))

    def refused():
        # the connected socket reports the previous datagram's ICMP error on a later send
        assert head_of(exchange(sh.port, req('/book.epub'))[0])[0] == 200
        return 'real-time log: cannot send to' in sh.stderr()
    wait_until(refused, 10, interval=0.02, what='a refused send to the UDP target')
    sh.stop()
    m = re.search(r'real-time log: (\d+) records sent, (\d+) dropped', sh.stderr())
    assert m and int(m.group(2)) > 0, sh.stderr()


def test_ring_full_drops_not_blocks(shield, o, tmp_path):
    f = tmp_path / 'rt.log'
    sh = shield([http_origin('o', o)], [behavior('*', 'o')], node={'name': 'n', 'workers': 1},
                log=rt_conf(f'file:{f}', ring_size=2, fields=['sc-status']))
    t0 = time.monotonic()
    pipelined(sh.port, 300)
    assert time.monotonic() - t0 < 10
    sh.stop()
    m = re.search(r'real-time log: (\d+) records sent, (\d+) dropped', sh.stderr())
    sent, dropped = int(m.group(1)), int(m.group(2))
    assert dropped > 0 and sent + dropped == 300 and len(lines_of(f)) == sent


# ---- config ------------------------------------------------------------------

def check_conf(tmp_path, realtime):
    p = tmp_path / 'bad.conf'
    p.write_text('listen = ( { address = "127.0.0.1:1"; } );\n'
                 'origins = ( { name = "o"; type = "http"; endpoint = "http://127.0.0.1:2"; } );\n'
                 'behaviors = ( { path = "*"; origin = "o"; } );\n'
                 'log = {\n  realtime = {\n' + realtime + '  };\n};\n')
    out = subprocess.run([SHIELD_BIN, '-t', '-c', str(p)], capture_output=True, timeout=10)
    return out.returncode, out.stderr.decode() + out.stdout.decode(), p


def test_config_errors(tmp_path):
    rc, err, p = check_conf(tmp_path, '    target = "udp:127.0.0.1:9";\n'
                                      '    fields = ["timestamp",\n'
                                      '              "c-ipp", "sc-status"];\n')
    assert rc != 0 and f'{p}:8:' in err and 'c-ipp' in err, err
    rc, err, p = check_conf(tmp_path, '    target = "tcp:1.2.3.4:5";\n')
    assert rc != 0 and f'{p}:6:' in err and 'target' in err, err
    rc, err, p = check_conf(tmp_path, '    target = "file:/tmp/x";\n    sampling = 0;\n')
    assert rc != 0 and f'{p}:7:' in err and 'sampling' in err, err
    rc, err, p = check_conf(tmp_path, '    target = "udp:127.0.0.1:9";\n    sampling = 1;\n'
                                      '    fields = ["asn", "timestamp"];\n')
    assert rc == 0, err
