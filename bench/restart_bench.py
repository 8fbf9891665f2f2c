#!/usr/bin/python3
"""Restart time with many cached objects: fill a disk cache with N small objects
through Shield, stop it (SIGTERM), start it again on the same directory and time
process start -> listening and process start -> first Hit, plus the start-up scan's
own line ("N objects restored in S s"), which Shield logs when the scan that runs
while it already serves has finished.

    bench/restart_bench.py [N=100000] [--json] [--keep] [--origin nginx|scripted]
                           [--body BYTES]

The fill goes through the real Shield (so its disk writes are the real group commit):
wrk with 64 keep-alive connections asks for /obj/0 .. /obj/N-1 (FILL_LUA below)
against a fast origin, a Debian nginx answering every /obj/ path with the same small
file (Cache-Control: max-age=86400). Without wrk or nginx it falls back to Python
clients and the integration tests' scripted origin (slower: GIL-bound).

--json prints one JSON object on the last stdout line:
  {"objects", "fill_s", "fill_objects_per_s", "first_listen_s", "first_hit_s",
   "scan_s", "hit_during_scan", "x_cache", "origin", "client"}
The page cache is warm (the files were just written); nothing is dropped, because that
would disturb everything else running on the machine.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
SHIELD = os.environ.get('SHIELD_BIN', os.path.join(ROOT, 'build', 'shield'))
SCAN_RE = re.compile(r'(\d+) objects restored in ([0-9.]+) s')

FILL_LUA = r'''
-- Each wrk thread walks its own residue class of 0 .. N-1, then starts over
-- (repeats are memory hits and do not slow the fill down).
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  n = tonumber(args[1])
  nthreads = tonumber(args[2])
end
function request()
  local i = (counter * nthreads + id) % n
  counter = counter + 1
  return wrk.format("GET", "/obj/" .. i)
end
'''


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_port(port, deadline):
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        time.sleep(0.002)
    return False


def stats(admin):
    c = http.client.HTTPConnection('127.0.0.1', admin, timeout=10)
    c.request('GET', '/stats')
    return json.loads(c.getresponse().read())['cache']


class NginxOrigin:
    """nginx answering GET /obj/<anything> with one small cacheable file."""

    def __init__(self, work, body):
        self.dir = os.path.join(work, 'origin')
        os.makedirs(os.path.join(self.dir, 'www'))
        with open(os.path.join(self.dir, 'www', 'obj.bin'), 'wb') as f:
            f.write(body)
        self.port = free_port()
        conf = os.path.join(self.dir, 'nginx.conf')
        user = 'user root;\n' if os.geteuid() == 0 else ''
        tmp = os.path.join(self.dir, 'tmp')
        with open(conf, 'w') as f:
            f.write(f'''{user}worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        root {self.dir}/www;
        location /obj/ {{
            default_type application/octet-stream;
            add_header Cache-Control "max-age=86400";
            try_files /obj.bin =404;
        }}
    }}
}}
''')
        os.makedirs(tmp)
        self.proc = subprocess.Popen(['nginx', '-c', conf, '-p', self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port, time.monotonic() + 10):
            self.stop()
            raise RuntimeError('nginx origin did not start')
        self.endpoint = f'http://127.0.0.1:{self.port}'

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ScriptedOriginWrap:
    def __init__(self, body):
        from origin import Reply, ScriptedOrigin
        self.o = ScriptedOrigin().start()
        self.o.default = Reply(body=body, headers=[('Cache-Control', 'max-age=86400')])
        self.endpoint = self.o.endpoint

    def stop(self):
        self.o.stop()


def fill_wrk(port, admin, n, work):
    """wrk until disk_objects reaches n and nothing is pending; returns seconds."""
    lua = os.path.join(work, 'fill.lua')
    with open(lua, 'w') as f:
        f.write(FILL_LUA)
    nthreads = 2
    t0 = time.monotonic()
    p = subprocess.Popen(['wrk', f'-t{nthreads}', '-c64', '-d3600s', '--timeout', '30s',
                          '-s', lua, f'http://127.0.0.1:{port}/', '--', str(n), str(nthreads)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            s = stats(admin)
            if s['disk_objects'] >= n and not s['disk_pending']:
                return time.monotonic() - t0
            if p.poll() is not None:
                raise RuntimeError(f'wrk exited ({p.returncode}) before the fill finished')
            time.sleep(0.05)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def fill_python(port, admin, n):
    def client(lo, hi):
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
        for i in range(lo, hi):
            c.request('GET', f'/obj/{i}')
            c.getresponse().read()
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k * n // 8, (k + 1) * n // 8))
               for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while True:
        s = stats(admin)
        if s['disk_objects'] >= n and not s['disk_pending']:
            return time.monotonic() - t0
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('n', nargs='?', type=int, default=100000)
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--keep', action='store_true', help='keep the work directory')
    ap.add_argument('--origin', choices=['nginx', 'scripted'],
                    default='nginx' if shutil.which('nginx') else 'scripted')
    ap.add_argument('--body', type=int, default=300, help='object size in bytes (300)')
    a = ap.parse_args()
    n = a.n
    work = tempfile.mkdtemp(prefix='shield-restart-')
    body = b'x' * a.body
    origin = NginxOrigin(work, body) if a.origin == 'nginx' else ScriptedOriginWrap(body)
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
    logpath = os.path.join(work, 'shield.log')
    log = open(logpath, 'w')
    procs = []
    try:
        p = subprocess.Popen([SHIELD, '-c', conf], stderr=log)
        procs.append(p)
        assert wait_port(admin, time.monotonic() + 30), 'shield did not start'
        use_wrk = bool(shutil.which('wrk'))
        fill_s = fill_wrk(port, admin, n, work) if use_wrk else fill_python(port, admin, n)
        p.send_signal(signal.SIGTERM)
        p.wait(120)
        log.flush()
        first_scan = len(SCAN_RE.findall(open(logpath).read()))

        t0 = time.monotonic()
        p = subprocess.Popen([SHIELD, '-c', conf], stderr=log)
        procs.append(p)
        assert wait_port(port, time.monotonic() + 60), 'shield did not restart'
        listen_s = time.monotonic() - t0
        # The first Hit: ask for stored objects until one answers from the cache.
        xcache, first_hit_s, k = None, None, 0
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
        while time.monotonic() - t0 < 60:
            c.request('GET', f'/obj/{(n // 2 + k * 7919) % n}')
            r = c.getresponse()
            r.read()
            xcache = r.getheader('X-Cache') or ''
            if xcache.startswith('Hit'):
                first_hit_s = time.monotonic() - t0
                break
            k += 1
        hit_log = open(logpath).read()
        hit_during_scan = len(SCAN_RE.findall(hit_log)) == first_scan
        deadline = time.monotonic() + 120
        while len(SCAN_RE.findall(open(logpath).read())) == first_scan:
            if time.monotonic() > deadline:
                raise RuntimeError('no scan line after restart')
            time.sleep(0.02)
        m = SCAN_RE.findall(open(logpath).read())[-1]
        scan_objects, scan_s = int(m[0]), float(m[1])
        p.send_signal(signal.SIGTERM)
        p.wait(120)
    finally:
        for q in procs:
            if q.poll() is None:
                q.kill()
                q.wait()
        origin.stop()
        log.close()
    scan_line = [ln.strip() for ln in open(logpath) if 'restored' in ln]
    res = {'objects': n, 'fill_s': round(fill_s, 3),
           'fill_objects_per_s': round(n / fill_s, 1) if fill_s > 0 else None,
           'first_listen_s': round(listen_s, 4),
           'first_hit_s': round(first_hit_s, 4) if first_hit_s is not None else None,
           'scan_s': scan_s, 'scan_objects': scan_objects, 'hit_during_scan': hit_during_scan,
           'x_cache': xcache, 'origin': a.origin, 'client': 'wrk' if use_wrk else 'python'}
    print(f'objects: {n}; filled through Shield in {fill_s:.1f} s '
          f'({res["fill_objects_per_s"]} objects/s, {res["client"]} -> {a.origin} origin)')
    print(f'restart: listening after {listen_s:.3f} s, first hit ({xcache}) after '
          f'{first_hit_s if first_hit_s is None else round(first_hit_s, 3)} s'
          f'{" (during the scan)" if hit_during_scan else ""}')
    print(f'scan: {scan_line[-1] if scan_line else "?"}')
    if a.keep:
        print(f'kept: {work}')
    else:
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(res))
    return 0 if first_hit_s is not None else 1


if __name__ == '__main__':
    sys.exit(main())
