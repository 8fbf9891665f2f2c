"""Process lifecycle: graceful SIGTERM drain, drain timeout, and the demo self-test."""

import hashlib
import os
import signal
import socket
import subprocess
import time

from conftest import (MIB, ROOT, SHIELD_BIN, Conn, Reply, behavior, det_sha256, free_port, get,
                      http_origin, request_bytes, wait_until)


def _refuses_or_ignores(port):
    """After SIGTERM a new connection is refused, or accepted and never answered."""
    try:
        s = socket.create_connection(('127.0.0.1', port), timeout=1)
    except OSError:
        return True
    try:
        s.settimeout(1.5)
        s.sendall(request_bytes('GET', '/new-after-term'))
        data = s.recv(100)
        return not data.startswith(b'HTTP/1.1 200')
    except OSError:
        return True
    finally:
        s.close()


def test_sigterm_drains_in_flight_download(shield, origin):
    size = 2 * MIB
    origin.route('/slow', Reply(size=size, seed=11, pieces=12, interval=0.25))  # ~3 s
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')], timeouts={'drain': '20s'})
    h = hashlib.sha256()
    with Conn(sh.port, timeout=30) as c:
        c.send(request_bytes('GET', '/slow'))
        assert c.wait_bytes(b'\r\n\r\n', 10)
        t0 = time.monotonic()
        sh.signal(signal.SIGTERM)
        # The signal is asynchronous: a connection made in the same instant may still be
        # served, but Shield must stop accepting promptly.
        wait_until(lambda: _refuses_or_ignores(sh.port), 3,
                   what='new connections to be refused (or never answered) after SIGTERM')
        assert sh.alive(), 'Shield exited with a download in flight'
        r = c.read_response(sink=h.update)
        assert r.status == 200 and r.complete, r
        assert h.hexdigest() == det_sha256(size, 11)
    rc = sh.wait(15)
    assert rc == 0, f'exit {rc} after draining\n{sh.describe()}'
    assert time.monotonic() - t0 < 15
    sh.stop()  # sanitizer check of the stderr


def test_sigterm_drain_timeout(shield, origin):
    origin.route('/endless', Reply(size=8 * MIB, pieces=80, interval=0.25))  # ~20 s
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')], timeouts={'drain': '1s'})
    with Conn(sh.port, timeout=30) as c:
        c.send(request_bytes('GET', '/endless'))
        assert c.wait_bytes(b'\r\n\r\n', 10)
        t0 = time.monotonic()
        sh.signal(signal.SIGTERM)
        rc = sh.wait(10)
        took = time.monotonic() - t0
        assert rc == 0, f'rc {rc}\n{sh.describe()}'
        assert 0.5 <= took < 5, f'exited {took:.1f}s after SIGTERM with drain = 1s'
        r = c.read_response()
        assert not r.complete, 'an unfinished download looked complete'
    sh.stop()


def test_sigterm_with_idle_keepalive_connection_exits_promptly(shield, origin):
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')], timeouts={'drain': '20s'})
    with Conn(sh.port) as c:
        c.send(request_bytes('GET', '/a'))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        sh.signal(signal.SIGTERM)
        rc = sh.wait(10)
        assert rc == 0
        assert time.monotonic() - t0 < 3, 'an idle connection held up the shutdown'
        assert c.closed_within(3)
    sh.stop()


def test_sigint_also_stops(shield, origin):
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')])
    assert get(sh.port, '/a').status == 200
    sh.signal(signal.SIGINT)
    assert sh.wait(10) == 0
    sh.stop()


def test_demo_selftest():
    port, s3port = free_port(), free_port()
    env = dict(os.environ, DEMO_SELFTEST='1', DEMO_PORT=str(port), DEMO_S3_PORT=str(s3port),
               SHIELD_BIN=SHIELD_BIN)
    for k in [k for k in env if k.startswith('AWS_')]:
        del env[k]
    p = subprocess.run(['bash', str(ROOT / 'tests' / 'demo.sh')], capture_output=True,
                       timeout=150, env=env, stdin=subprocess.DEVNULL)
    out = (p.stdout + p.stderr).decode('utf-8', 'replace')
    assert p.returncode == 0, out
    assert 'demo: OK ' in out, out
    wait_until(lambda: not _listening(port) and not _listening(s3port), 10,
               what='demo processes to stop')


def _listening(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
        return True
    except OSError:
        return False
