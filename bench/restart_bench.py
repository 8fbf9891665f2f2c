#!/usr/bin/python3
"""Restart time with many cached objects: fill a disk cache with N small
objects through Shield, stop it, start it again and time how long until the
first Hit is served (process start -> first Hit), plus the scan line it logs.

    bench/restart_bench.py [N=100000] [--keep DIR]

Uses the scripted origin of the integration tests (no network beyond loopback).
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
from origin import Reply, ScriptedOrigin  # noqa: E402

SHIELD = os.environ.get('SHIELD_BIN', os.path.join(ROOT, 'build', 'shield'))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.005)
    return False


def stats(admin):
    c = http.client.HTTPConnection('127.0.0.1', admin, timeout=5)
    c.request('GET', '/stats')
    return json.loads(c.getresponse().read())['cache']


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    work = tempfile.mkdtemp(prefix='shield-restart-')
    origin = ScriptedOrigin().start()
    origin.default = Reply(body=b'x' * 300, headers=[('Cache-Control', 'max-age=86400')])
    port, admin = free_port(), free_port()
    conf = os.path.join(work, 'shield.conf')
    with open(conf, 'w') as f:
        f.write(f'''node = {{ name = "bench"; workers = 2; }};
listen = ( {{ address = "127.0.0.1:{port}"; }} );
admin = {{ address = "127.0.0.1:{admin}"; }};
origins = ( {{ name = "o"; type = "http"; endpoint = "{origin.endpoint}"; }} );
behaviors = ( {{ path = "*"; origin = "o"; }} );
cache = {{ memory_size = "1G"; disk = {{ path = "{work}/cache"; size = "20G"; }}; }};
''')
    log = open(os.path.join(work, 'shield.log'), 'w')
    p = subprocess.Popen([SHIELD, '-c', conf], stderr=log)
    assert wait_port(port, time.monotonic() + 10)

    def client(lo, hi):
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
        for i in range(lo, hi):
            c.request('GET', f'/obj/{i}')
            c.getresponse().read()
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k * n // 8, (k + 1) * n // 8)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while stats(admin)['disk_objects'] < n or stats(admin)['disk_pending']:
        time.sleep(0.2)
    fill_s = time.monotonic() - t0
    p.send_signal(signal.SIGTERM)
    p.wait(60)

    t0 = time.monotonic()
    p = subprocess.Popen([SHIELD, '-c', conf], stderr=log)
    assert wait_port(port, time.monotonic() + 60)
    ready_s = time.monotonic() - t0
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    c.request('GET', f'/obj/{n // 2}')
    r = c.getresponse()
    r.read()
    first_hit_s = time.monotonic() - t0
    xcache = r.getheader('X-Cache')
    p.send_signal(signal.SIGTERM)
    p.wait(60)
    origin.stop()
    log.close()
    scan = [line.strip() for line in open(os.path.join(work, 'shield.log')) if 'restored' in line]
    print(f'objects: {n}; filled through Shield in {fill_s:.1f} s')
    print(f'restart: listening after {ready_s:.3f} s, first hit ({xcache}) after {first_hit_s:.3f} s')
    print(f'scan: {scan[-1] if scan else "?"}')
    if '--keep' not in sys.argv:
        subprocess.run(['rm', '-rf', work])


if __name__ == '__main__':
    main()
