"""SIGHUP configuration reload: the new snapshot applies to new requests, requests in
flight finish on theirs, a bad or incompatible file changes nothing, and the systemd
notify protocol reports it."""

import os
import socket
import threading
import time

import pytest

from conftest import (Conn, Shield, base_config, behavior, free_port, get, http_origin,
                      render_config, request_bytes, wait_until)
from origin import Reply


def conf_text(port, origin, value, **over):
    b = behavior('*', 'o', response_headers={
        'custom': [{'name': 'X-Conf', 'value': value}]})
    return render_config(base_config(port, [http_origin('o', origin)], [b], **over))


def start(tmp_path, origin, value='one', env=None, **over):
    port = free_port()
    sh = Shield(tmp_path / 'sh', conf_text(port, origin, value, **over), env=env, port=port)
    sh.start()
    return sh


def reload_to(sh, text, generation=None):
    """Rewrite the file, SIGHUP, wait for the outcome line; returns the new stderr tail."""
    before = sh.stderr().count('reload')
    sh.conf.write_text(text)
    sh.signal(1)
    wait_until(lambda: sh.stderr().count('reload') > before, 15, what='a reload log line')
    return sh.stderr()


@pytest.fixture
def sh(tmp_path, origin):
    origin.route('/x', Reply(body=b'x', headers=[('Cache-Control', 'no-store')]))
    s = start(tmp_path, origin)
    yield s
    if s.proc is not None and s.alive():
        s.stop()


def test_reload_applies_to_new_requests(sh, origin):
    assert get(sh.port, '/x').header('x-conf') == 'one'
    out = reload_to(sh, conf_text(sh.port, origin, 'two'))
    assert 'reload: configuration 2 from' in out
    wait_until(lambda: get(sh.port, '/x').header('x-conf') == 'two', 10, what='the new header')
    out = reload_to(sh, conf_text(sh.port, origin, 'three'))
    assert 'reload: configuration 3 from' in out
    wait_until(lambda: get(sh.port, '/x').header('x-conf') == 'three', 10, what='the third')


def test_request_in_flight_finishes_on_its_snapshot(sh, origin):
    origin.route('/slow', Reply(body=b'slow', headers=[('Cache-Control', 'no-store')],
                                stall_head=1.5))
    result = {}

    def slow():
        result['r'] = get(sh.port, '/slow', timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    origin.wait_requests(1, path='/slow')  # the request is past routing, on snapshot 1
    reload_to(sh, conf_text(sh.port, origin, 'two'))
    wait_until(lambda: get(sh.port, '/x').header('x-conf') == 'two', 10, what='the new header')
    t.join(20)
    r = result['r']
    assert r.status == 200 and r.body == b'slow'
    assert r.header('x-conf') == 'one'


@pytest.mark.parametrize('bad,message', [
    ('broken = ;', 'syntax error'),
    ('node = { name = "x"; };', 'duplicate setting name'),
    ('tls = { certificates = ( { cert = "/nonexistent.crt"; key = "/x.key"; } ); };',
     'cannot open'),
    ('bogus_key = 1;', 'unknown top-level key "bogus_key"'),
])
def test_bad_config_keeps_the_running_one(sh, origin, bad, message):
    text = conf_text(sh.port, origin, 'two') + bad + '\n'
    out = reload_to(sh, text)
    line = [ln for ln in out.splitlines() if message in ln]
    assert line, out
    assert f'{sh.conf}:' in line[0]  # file:line
    assert 'keeping configuration 1' in out
    for _ in range(5):
        assert get(sh.port, '/x').header('x-conf') == 'one'
    # Fixing the file and reloading again works.
    reload_to(sh, conf_text(sh.port, origin, 'fixed'))
    wait_until(lambda: get(sh.port, '/x').header('x-conf') == 'fixed', 10, what='the fix')


def test_changes_that_need_a_restart_are_refused(sh, origin):
    other = free_port()
    text = conf_text(sh.port, origin, 'two').replace(f'127.0.0.1:{sh.port}',
                                                     f'127.0.0.1:{other}')
    text = text.replace('workers = 2', 'workers = 1')
    out = reload_to(sh, text)
    assert 'reload refused: listen changed; node.workers changed (restart to apply)' in out
    assert get(sh.port, '/x').header('x-conf') == 'one'


def test_reload_under_load_fails_no_request(sh, origin):
    stop = threading.Event()
    failures, seen = [], set()
    lock = threading.Lock()

    def keepalive_client():
        while not stop.is_set():
            try:
                with Conn(sh.port, timeout=10) as c:
                    for _ in range(20):
                        c.send(request_bytes('GET', '/x'))
                        r = c.read_response()
                        if r is None or r.status != 200:
                            raise AssertionError(f'bad answer {r}')
                        with lock:
                            seen.add(r.header('x-conf'))
            except Exception as e:  # noqa: BLE001 - every failure counts
                with lock:
                    failures.append(repr(e))

    def fresh_client():
        while not stop.is_set():
            try:
                r = get(sh.port, '/x', timeout=10)
                if r is None or r.status != 200:
                    raise AssertionError(f'bad answer {r}')
                with lock:
                    seen.add(r.header('x-conf'))
            except Exception as e:  # noqa: BLE001
                with lock:
                    failures.append(repr(e))

    threads = [threading.Thread(target=f) for f in (keepalive_client, keepalive_client,
                                                    fresh_client)]
    for t in threads:
        t.start()
    try:
        for i in range(2, 8):
            out = reload_to(sh, conf_text(sh.port, origin, f'v{i}'))
            assert f'reload: configuration {i} from' in out
            wait_until(lambda: f'v{i}' in seen, 10, what=f'v{i} served')
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:5]
    assert {f'v{i}' for i in range(2, 8)} <= seen


def test_systemd_notify(tmp_path, origin):
    origin.route('/x', Reply(body=b'x'))
    path = str(tmp_path / 'notify.sock')
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(path)
    ns.settimeout(15)
    try:
        sh = start(tmp_path, origin, env={'NOTIFY_SOCKET': path})
        assert ns.recv(256) == b'READY=1'
        reload_to(sh, conf_text(sh.port, origin, 'two'))
        assert ns.recv(256) == b'RELOADING=1'
        assert ns.recv(256) == b'READY=1'
        sh.stop()
        assert ns.recv(256) == b'STOPPING=1'
    finally:
        ns.close()


def test_systemd_unit_is_well_formed():
    unit = open(os.path.join(os.path.dirname(__file__), '..', '..', 'conf',
                             'shield.service')).read()
    assert 'Type=notify' in unit
    assert 'ExecReload=/bin/kill -HUP $MAINPID' in unit
    assert 'ExecStartPre=/usr/local/bin/shield -t' in unit
    assert 'KillSignal=SIGTERM' in unit
