"""The hit path's shortcuts, checked for the bytes they send.

- Stored bodies live in a shared-memory arena and go out with sendfile on plain
  connections (proxy/cache/arena.c). A slot freed while its pages still sit in a
  slow viewer's socket queue is reused for another object; the viewer must still
  get its own bytes.
- Request-head buffers go back to the worker while a connection is idle and are
  lent to the next request (proxy/conn.c), also across a reload that raises the
  header limit.
- The response head is built in one buffer without printf (proxy/respond.c).
"""

import hashlib
import fcntl
import json
import socket
import struct
import termios
import re
import subprocess

from conftest import (MIB, Conn, base_config, behavior, curl, det_sha256, fetch, free_port,
                      http_origin, port_open, render_config, request_bytes, wait_until, xcache)
from origin import Reply

BIG = 3 * MIB + 12345  # several arena chunks, the last one partial
SO_RCVBUFFORCE = 33


def unread(sock):
    return struct.unpack('i', fcntl.ioctl(sock, termios.FIONREAD, b'\0' * 4))[0]


def start(shield, origin, **over):
    return shield([http_origin('o', origin)], [behavior('*', 'o', default_ttl='1d')], **over)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def test_arena_hits_are_byte_exact_with_ranges(shield, origin):
    origin.route('/big.bin', Reply(size=BIG, seed=7))
    sh = start(shield, origin)
    first = fetch(sh.port, '/big.bin')
    assert first.status == 200 and xcache(first) == 'Miss'
    hit = fetch(sh.port, '/big.bin')
    assert hit.status == 200 and xcache(hit) == 'Hit'
    assert sha(hit.body) == det_sha256(BIG, 7) == sha(first.body)
    assert hit.header('Content-Length') == str(BIG)

    # Across the 1 MiB chunk boundary, and the partial last chunk.
    full = hit.body
    for lo, hi in ((MIB - 100, MIB + 100), (BIG - 5000, BIG - 1), (0, 0)):
        r = fetch(sh.port, '/big.bin', headers={'Range': f'bytes={lo}-{hi}'})
        assert r.status == 206, r
        assert r.body == full[lo:hi + 1]
        assert r.header('Content-Range') == f'bytes {lo}-{hi}/{BIG}'
    r = fetch(sh.port, '/big.bin', headers={'Range': f'bytes=10-20,{2 * MIB - 3}-{2 * MIB + 3}'})
    assert r.status == 206 and r.header('Content-Type').startswith('multipart/byteranges')
    assert full[10:21] in r.body and full[2 * MIB - 3:2 * MIB + 4] in r.body
    assert origin.count('/big.bin') == 1


def test_slow_reader_keeps_its_bytes_while_slots_are_reused(shield, origin):
    """Viewer A stalls after its whole hit was handed to the kernel; A is invalidated,
    and the new version and other objects are filled into the freed slots; A must
    still read the bytes it was sent."""
    for i in range(6):
        origin.route(f'/o{i}.bin', Reply(size=BIG, seed=100 + i))
    admin_port = free_port()
    sh = start(shield, origin, cache={'memory_size': '64M'},
               admin={'address': f'127.0.0.1:{admin_port}'})
    assert fetch(sh.port, '/o0.bin').status == 200
    slow = socket.socket()
    # Room for the whole answer in the receive queue (root may exceed rmem_max):
    # Shield sends everything and lets go of o0 while this viewer reads nothing.
    slow.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 * MIB)
    slow.connect(('127.0.0.1', sh.port))
    with slow:
        slow.sendall(request_bytes('GET', '/o0.bin', None, None, 'HTTP/1.1', 'x'))
        wait_until(lambda: unread(slow) >= BIG, 15, what='the hit queued in the kernel')
        origin.route('/o0.bin', Reply(size=BIG, seed=200))  # the origin's new version
        inv = fetch(admin_port, '/invalidations', method='POST',
                    body=json.dumps({'paths': ['/o0.bin']}).encode(),
                    headers={'Content-Type': 'application/json'})
        assert inv.status in (200, 201), inv
        # The lookup drops the invalidated copy (its slots go back to the arena) and
        # the fill of the new version takes them; then more fills on top.
        r = fetch(sh.port, '/o0.bin')
        assert xcache(r) == 'Miss' and sha(r.body) == det_sha256(BIG, 200)
        for i in range(1, 6):
            r = fetch(sh.port, f'/o{i}.bin')
            assert r.status == 200 and sha(r.body) == det_sha256(BIG, 100 + i)
        data = b''
        while unread(slow):
            data += slow.recv(1 << 20)
        head, _, body = data.partition(b'\r\n\r\n')
        assert b' 200 ' in head.split(b'\r\n')[0] and b'X-Cache: Hit' in head, head
        assert sha(body) == det_sha256(BIG, 100), 'a reused slot changed bytes in flight'
    assert origin.count('/o0.bin') == 2
    sh.assert_alive()


def test_tls_hits_from_the_arena(shield, origin, tmp_path):
    """TLS reads the arena's bytes to encrypt them (no sendfile): same bytes."""
    key, crt = tmp_path / 'k.pem', tmp_path / 'c.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout',
                    str(key), '-out', str(crt), '-days', '1', '-subj', '/CN=books.test',
                    '-addext', 'subjectAltName=DNS:books.test'], check=True,
                   capture_output=True)
    port, tport = free_port(), free_port()
    origin.route('/t.bin', Reply(size=BIG, seed=9))
    sh = shield([http_origin('o', origin)], [behavior('*', 'o', default_ttl='1d')], port=port,
                listen=[{'address': f'127.0.0.1:{port}'},
                        {'address': f'127.0.0.1:{tport}', 'tls': True}],
                tls={'certificates': [{'cert': str(crt), 'key': str(key)}]})
    wait_until(lambda: port_open(tport), 10, what='TLS listener')
    url = f'https://books.test:{tport}/t.bin'
    for want in ('Miss', 'Hit'):
        p = curl('-k', '--resolve', f'books.test:{tport}:127.0.0.1', '-D', '-', url)
        assert p.returncode == 0, p.stderr
        head, _, body = p.stdout.partition(b'\r\n\r\n')
        assert re.search(rb'X-Cache: ' + want.encode(), head), head
        assert sha(body) == det_sha256(BIG, 9)


def test_spare_buffers_follow_a_reload_that_raises_the_header_limit(shield, origin):
    origin.route('/h', Reply(body=b'ok'))
    sh = start(shield, origin, limits={'max_headers': 8}, node={'workers': 1})
    with Conn(sh.port) as c:  # buffers sized for 8 headers go back to the worker
        for _ in range(3):
            c.send(request_bytes('GET', '/h', None, None, 'HTTP/1.1', 'x'))
            assert c.read_response().status == 200
    many = {f'X-H{i}': 'v' * 20 for i in range(30)}
    assert fetch(sh.port, '/h', headers=many).status == 431
    before = sh.stderr().count('reload')
    cfg = base_config(sh.port, [http_origin('o', origin)],
                      [behavior('*', 'o', default_ttl='1d')], limits={'max_headers': 64},
                      node={'workers': 1})
    sh.conf.write_text(render_config(cfg))
    sh.signal(1)
    wait_until(lambda: sh.stderr().count('reload') > before, 15, what='a reload line')
    for _ in range(3):  # the spares from before the reload are too small: grown
        r = fetch(sh.port, '/h', headers=many)
        assert r.status == 200 and r.body == b'ok'
    sh.assert_alive()


def test_pipelined_requests_keep_their_heads(shield, origin):
    """Buffers are lent only when the input is empty: a pipelined batch reuses none
    mid-parse, and every answer matches its request."""
    for i in range(20):
        origin.route(f'/p{i}', Reply(body=f'body-{i}'.encode()))
    sh = start(shield, origin)
    with Conn(sh.port) as c:
        c.send(b''.join(request_bytes('GET', f'/p{i}', {'X-Pad': 'y' * (i * 50)}, None,
                                      'HTTP/1.1', 'x') for i in range(20)))
        for i in range(20):
            r = c.read_response()
            assert r.status == 200 and r.body == f'body-{i}'.encode()
            assert re.fullmatch(r'\d+', r.header('Content-Length'))
            assert r.header('Date') and r.header('Server') == 'shield'
