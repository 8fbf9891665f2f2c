"""Disk tier of the cache (TESTING.md "C" restart items and size caps; "F" kill -9 loop,
corrupt and stray files, disk full, write errors in /metrics; refused cache directories).

Every test runs the real binary with `cache = { disk = { path; size; } }` and an admin
listener, in front of a ScriptedOrigin, and asserts on what viewers received (status,
X-Cache, bytes by SHA-256, headers, Age), on what reached the origin, on /stats (disk
commits are asynchronous: tests poll `disk_objects`/`disk_pending` with a deadline), on
the start-up scan line in stderr and on the files in the cache directory.

A restart is a new Shield process on the very same config text (same ports, same cache
directory): see `restart()`. Each process gets its own stderr file and is stopped with
SIGTERM at teardown (exit 0, sanitizer-clean) unless the test killed it with SIGKILL.

SHIELD_KILL_ITERATIONS (default 50; the issue requires at least 50 in CI) sets the kill -9
loop's length for soak runs; SHIELD_KILL_SEED makes its random kill moments repeatable.
"""

import hashlib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest

from origin import det_chunks  # noqa: E402
from conftest import (MIB, SHIELD_BIN, Conn, ProtocolError, Reply, Shield, behavior,
                      det_body, det_sha256, fetch, free_port, get, http_origin, port_open,
                      request_bytes, wait_until, xcache)

KILL_ITERATIONS = int(os.environ.get('SHIELD_KILL_ITERATIONS', '50'))
KILL_SEED = int(os.environ.get('SHIELD_KILL_SEED', str(int(time.time()) % 100000)))
SCAN_RE = re.compile(r'cache: disk (.+?): (\d+) objects restored in ([0-9.]+) s '
                     r'\((\d+) corrupt, (\d+) temp, (\d+) stray files dropped\)')
OBJ_RE = re.compile(r'([0-9a-f])/([0-9a-f]{2})/([0-9a-f]{32})\.obj')
HDR_SIZE = 72
WRITE_FAILED = 'disk write failed'  # the error line of a write the filesystem failed
VOLATILE = {'date', 'age', 'x-request-id'}


# ---- helpers -----------------------------------------------------------------------------

def sha(b):
    return hashlib.sha256(b).hexdigest()


def md5_etag(body):
    return '"' + hashlib.md5(body).hexdigest() + '"'


def disk_shield(shield, origin, cache_dir, disk_size='1G', workers=2, cache=None, **over):
    """Shield with a disk tier at cache_dir and an admin listener (.admin_port)."""
    aport = free_port()
    c = {'disk': {'path': str(cache_dir), 'size': disk_size}}
    c.update(cache or {})
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')], cache=c,
                node={'workers': workers}, admin={'address': f'127.0.0.1:{aport}'}, **over)
    sh.admin_port = aport
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    return sh


def successor(shield, sh):
    """A new (not started) Shield on exactly sh's config text: same ports, same cache dir."""
    n = len(shield.all)
    new = Shield(shield.tmp / f'shield{n}', sh.conf.read_text(), env=sh.extra_env,
                 port=sh.port, name=f'shield{n}')
    new.admin_port = sh.admin_port
    shield.all.append(new)  # stopped (SIGTERM, exit 0, sanitizers) at teardown
    return new


def restart(shield, sh, kill=False):
    """Stop sh (SIGTERM and its exit checks, or SIGKILL) and start its successor."""
    if kill:
        sh.kill()
    else:
        sh.stop()
    new = successor(shield, sh).start()
    wait_until(lambda: port_open(new.admin_port), 10, what='the admin listener')
    return new


def scan_line(sh, timeout=30):
    """(dir, restored, seconds, corrupt, temp, stray) from the start-up scan log line, once
    the scan (which runs while Shield serves) has logged it."""
    wait_until(lambda: SCAN_RE.search(sh.stderr()), timeout, interval=0.02,
               what='the start-up scan line')
    lines = [m for m in SCAN_RE.finditer(sh.stderr())]
    assert len(lines) == 1, f'want one scan line in stderr, got {len(lines)}\n{sh.describe()}'
    m = lines[0]
    return (m.group(1), int(m.group(2)), float(m.group(3)), int(m.group(4)), int(m.group(5)),
            int(m.group(6)))


def stats(sh):
    r = get(sh.admin_port, '/stats')
    assert r.status == 200, r
    return json.loads(r.body)['cache']


def metric(sh, name):
    """The value of an unlabelled sample in /metrics."""
    r = get(sh.admin_port, '/metrics')
    assert r.status == 200, r
    m = re.search(rf'^{re.escape(name)} (\d+)$', r.body.decode(), re.M)
    assert m, f'{name} not in /metrics'
    return int(m.group(1))


def wait_disk(sh, objects, timeout=15):
    """Poll /stats until disk_objects == objects and nothing is queued; returns the stats."""
    last = {}

    def ok():
        last.update(stats(sh))
        return last['disk_objects'] == objects and last['disk_pending'] == 0
    try:
        wait_until(ok, timeout, interval=0.02, what=f'disk_objects == {objects}')
    except TimeoutError as e:
        raise AssertionError(f'{e}; last /stats cache: {last}') from None
    return dict(last)


def wait_idle(sh, timeout=15):
    """Poll /stats until the I/O queue is empty; returns the stats."""
    last = {}

    def ok():
        last.update(stats(sh))
        return last['disk_pending'] == 0
    wait_until(ok, timeout, interval=0.02, what='disk_pending == 0')
    return dict(last)


def invalidate(sh, paths):
    r = fetch(sh.admin_port, '/invalidations', method='POST',
              body=json.dumps({'paths': paths}).encode(),
              headers={'Content-Type': 'application/json'})
    assert r.status == 201, r
    return r


def tree(cache_dir):
    """{relative path: size} of every regular file under cache_dir."""
    out = {}
    for root, _, files in os.walk(cache_dir):
        for f in files:
            p = Path(root) / f
            out[str(p.relative_to(cache_dir))] = p.stat().st_size
    return out


def obj_files(cache_dir):
    return {p: s for p, s in tree(cache_dir).items() if OBJ_RE.fullmatch(p)}


def temp_files(cache_dir):
    return [p for p in tree(cache_dir) if '.tmp.' in p]


def file_key(path):
    """The cache key stored in an object file (its first NUL-separated part is the path)."""
    b = Path(path).read_bytes()[:HDR_SIZE + 4096]
    klen = int.from_bytes(b[16:20], 'little')
    return b[HDR_SIZE:HDR_SIZE + klen]


def files_by_path(cache_dir):
    """{request path: object file} for every committed object; checks the naming rule
    (first 128 bits of SHA-256(key), fanned out as a/bc/)."""
    out = {}
    for rel in obj_files(cache_dir):
        key = file_key(cache_dir / rel)
        h = hashlib.sha256(key).hexdigest()[:32]
        assert rel == f'{h[0]}/{h[1:3]}/{h}.obj', f'{rel} holds key {key!r} (hash {h})'
        path = key.split(b'\0')[0].decode('latin-1')
        assert path not in out, f'two files for {path}'
        out[path] = cache_dir / rel
    return out


def header_view(r):
    """The response headers that must survive a restart (all but Date, Age, X-Request-Id)."""
    return [(k.lower(), v) for k, v in r.headers if k.lower() not in VOLATILE]


def flip(path, offset, bit=0x10):
    with open(path, 'r+b') as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ bit]))


# ---- restart: identical bytes and headers ------------------------------------------------

def test_restart_serves_identical_bytes_and_headers(shield, origin, tmp_path):
    """Objects stored on disk come back after a restart as Hits with the same bytes and the
    same headers, without contacting the origin; a chunked (no Content-Length) response is
    not written; the files are named and fanned out as documented."""
    text = b'A small text object.\n' * 40
    big = det_body(2 * MIB + 12345, 21)  # three 1 MiB chunks, the last one short
    objs = {
        '/t/text.txt': Reply(body=text, content_type='text/plain; charset=utf-8', headers=[
            ('ETag', md5_etag(text)), ('Cache-Control', 'max-age=3600'),
            ('Last-Modified', 'Tue, 01 Oct 2024 10:00:00 GMT'), ('X-Book-Id', '42'),
            ('X-Multi', 'first'), ('X-Multi', 'second')]),
        '/t/big.epub': Reply(size=len(big), seed=21, content_type='application/epub+zip',
                             headers=[('ETag', md5_etag(big)),
                                      ('Cache-Control', 'public, max-age=86400')]),
        '/t/empty': Reply(body=b'', headers=[('Cache-Control', 'max-age=600')]),
        '/t/one-chunk': Reply(size=MIB, seed=22, headers=[('ETag', '"not-an-md5"')]),
        '/t/404': Reply(404, b'no such book', content_type='text/plain',
                        headers=[('Cache-Control', 'max-age=600')]),
    }
    bodies = {'/t/text.txt': text, '/t/big.epub': big, '/t/empty': b'',
              '/t/one-chunk': det_body(MIB, 22), '/t/404': b'no such book'}
    status = {p: (404 if p == '/t/404' else 200) for p in objs}
    for p, rep in objs.items():
        origin.route(p, rep)
    origin.route('/t/chunked', Reply(body=b'chunked bytes' * 100, chunked=True, chunk=300))
    cache_dir = tmp_path / 'cache'
    sh = disk_shield(shield, origin, cache_dir)
    for p in objs:
        r = get(sh.port, p)
        assert (r.status, xcache(r), r.body) == (status[p], 'Miss', bodies[p]), (p, r)
    r = get(sh.port, '/t/chunked')
    assert (r.status, r.body) == (200, b'chunked bytes' * 100), r
    st = wait_disk(sh, len(objs))
    assert st['disk_bytes'] >= sum(map(len, bodies.values())), st
    before = {}
    for p in objs:
        r = get(sh.port, p)
        assert (r.status, xcache(r), r.body) == (status[p], 'Hit', bodies[p]), (p, r)
        before[p] = r

    sh.stop()
    files = tree(cache_dir)
    assert (cache_dir / 'VERSION').read_bytes() == b'shield-disk-cache 1\n'
    assert 'LOCK' in files and not temp_files(cache_dir), files
    by_path = files_by_path(cache_dir)
    assert set(by_path) == set(objs), f'chunked or missing objects on disk: {sorted(by_path)}'
    assert set(obj_files(cache_dir)) == {str(f.relative_to(cache_dir)) for f in by_path.values()}
    n_origin = origin.count()

    sh = restart(shield, sh)
    d, restored, secs, corrupt, temp, stray = scan_line(sh)
    assert (d, restored, corrupt, temp, stray) == (str(cache_dir), len(objs), 0, 0, 0)
    assert secs < 5
    s0 = stats(sh)
    assert (s0['disk_objects'], s0['objects'], s0['bytes_from_disk']) == (len(objs), 0, 0), s0
    # HEAD of a disk-only object: its head is known without reading the body
    h = fetch(sh.port, '/t/big.epub', method='HEAD')
    assert (h.status, xcache(h), h.header('Content-Length')) == (200, 'Hit', str(len(big)))
    assert stats(sh)['bytes_from_disk'] == 0
    for p in objs:
        r = get(sh.port, p)
        assert (r.status, xcache(r), r.complete) == (status[p], 'Hit', True), (p, r)
        assert sha(r.body) == sha(bodies[p]), p
        assert header_view(r) == header_view(before[p]), p
        assert int(r.header('Age')) >= int(before[p].header('Age'))
    s1 = stats(sh)
    assert s1['bytes_from_disk'] == sum(map(len, bodies.values())), s1
    assert (s1['hits'], s1['misses'], s1['origin_fetches']) == (len(objs) + 1, 0, 0), s1
    # Those were sent from the files (sendfile). A second hit promotes an object to
    # memory (one more read of its file); after that, Ranges come from the loaded copy.
    r = get(sh.port, '/t/big.epub')
    assert (xcache(r), sha(r.body)) == ('Hit', sha(big))
    s1 = stats(sh)
    assert s1['objects'] >= 1, s1
    r = get(sh.port, '/t/big.epub', headers={'Range': 'bytes=1048570-1048585'})
    assert (r.status, xcache(r), r.body) == (206, 'Hit', big[1048570:1048586]), r
    assert stats(sh)['bytes_from_disk'] == s1['bytes_from_disk']
    r = get(sh.port, '/t/chunked')
    assert (xcache(r), r.body) == ('Miss', b'chunked bytes' * 100)
    assert origin.count() == n_origin + 1 and origin.count('/t/chunked') == 2


def test_age_keeps_counting_across_restart(shield, origin, tmp_path):
    """Age after a restart counts from the original store time (plus the origin's Age)."""
    origin.route('/aged', Reply(size=5000, seed=23, headers=[
        ('Cache-Control', 'max-age=3600'), ('Age', '30')]))
    sh = disk_shield(shield, origin, tmp_path / 'cache')
    t0 = time.time()
    r = get(sh.port, '/aged')
    assert xcache(r) == 'Miss' and r.header('Age') == '30', r.headers
    wait_disk(sh, 1)
    r = get(sh.port, '/aged')
    assert xcache(r) == 'Hit' and 30 <= int(r.header('Age')) <= 31, r.headers
    sh = restart(shield, sh)
    # Ages are whole seconds: let 2.2 s pass since the store (deliberate elapsed time,
    # not a synchronisation) so a reset store time would show as Age 30 or 31.
    left = t0 + 2.2 - time.time()
    if left > 0:
        time.sleep(left)
    r = get(sh.port, '/aged')
    elapsed = time.time() - t0
    assert xcache(r) == 'Hit' and r.body == det_body(5000, 23), r.headers
    assert 32 <= int(r.header('Age')) <= 30 + elapsed + 1, (r.header('Age'), elapsed)
    assert origin.count('/aged') == 1


# ---- invalidations -----------------------------------------------------------------------

INV_PATHS = ['/x', '/dir/a', '/dir/b/c', '/dirx', '/y', '/x/sub']


def test_invalidations_persist_across_restart(shield, origin, tmp_path):
    cache_dir = tmp_path / 'cache'
    sh = disk_shield(shield, origin, cache_dir)
    for p in INV_PATHS:
        assert xcache(get(sh.port, p)) == 'Miss'
    wait_disk(sh, len(INV_PATHS))
    s0 = stats(sh)
    invalidate(sh, ['/x', '/dir/*'])
    assert stats(sh)['invalidations'] - s0['invalidations'] == 2
    sh = restart(shield, sh)
    log = (cache_dir / 'invalidations.log').read_text().splitlines()
    # two I/O threads append: the order of the lines is free, the times are in them
    assert sorted(ln.split(' ', 2)[2] for ln in log) == ['/dir/*', '/x'], log
    want = {'/x': 'Miss', '/dir/a': 'Miss', '/dir/b/c': 'Miss', '/dirx': 'Hit', '/y': 'Hit',
            '/x/sub': 'Hit'}
    for p in INV_PATHS:
        r = get(sh.port, p)
        assert (r.status, xcache(r), r.body) == (200, want[p], f'origin:{p}'.encode()), p
    assert [origin.count(p) for p in INV_PATHS] == [2, 2, 2, 1, 1, 1]
    # The rules only cover what was stored before them: the copies fetched after the
    # invalidation are written to disk and are Hits after the next restart.
    wait_idle(sh)
    sh = restart(shield, sh)
    for p in INV_PATHS:
        r = get(sh.port, p)
        assert (r.status, xcache(r), r.body) == (200, 'Hit', f'origin:{p}'.encode()), p
    assert [origin.count(p) for p in INV_PATHS] == [2, 2, 2, 1, 1, 1]


def test_invalidation_survives_kill9_right_after_201(shield, origin, tmp_path):
    """The 201 says "Completed": an invalidation acknowledged and then lost to a crash
    brings withdrawn content back. The two I/O threads are kept busy with six loads of
    16 MiB disk objects (each verified whole before it is served) when the rule is
    posted, so a rule that is only queued when the 201 goes out is still queued when
    Shield is killed right after it."""
    cache_dir = tmp_path / 'cache'
    big = 16 * MIB
    bigs = [f'/big{i}' for i in range(6)]
    origin.route('/withdrawn', Reply(size=5000, seed=24))
    for i, p in enumerate(bigs):
        origin.route(p, Reply(size=big, seed=80 + i))
    sh = disk_shield(shield, origin, cache_dir)
    for p in ['/withdrawn'] + bigs:
        assert get(sh.port, p).status == 200
    wait_disk(sh, 1 + len(bigs))
    sh = restart(shield, sh)  # everything is disk-only now: a GET is a load on an I/O thread
    loads = [Conn(sh.port, timeout=20) for _ in bigs]
    try:
        for c, p in zip(loads, bigs):
            c.send(request_bytes('GET', p))
        wait_until(lambda: stats(sh)['disk_pending'] >= 4, 5, what='the loads queued')
        invalidate(sh, ['/withdrawn'])
        pending = stats(sh)['disk_pending']
        sh.kill()
    finally:
        for c in loads:
            c.close()
    log = cache_dir / 'invalidations.log'
    logged = log.read_bytes() if log.exists() else None
    sh = restart(shield, sh)
    r = get(sh.port, '/withdrawn')
    assert r.status == 200 and r.body == det_body(5000, 24)
    assert xcache(r) == 'Miss', (
        f'invalidated object served from disk after kill -9: the 201 was sent while the '
        f'rule was still queued (disk_pending {pending} after the 201; '
        f'invalidations.log after the kill: {logged!r})')


# ---- memory and disk tiers ---------------------------------------------------------------

def test_memory_eviction_keeps_disk_copies(shield, origin, tmp_path):
    """10 x 1 MiB through a 2 MiB memory tier (each written to disk before the next is
    fetched): all stay on disk, and all are Hits loaded back from disk, twice."""
    origin.default = lambda q: Reply(size=MIB, seed=int(q.path.rsplit('/', 1)[1]))
    sh = disk_shield(shield, origin, tmp_path / 'cache', cache={'memory_size': '2M'})
    paths = [f'/m/{i}' for i in range(10)]
    for i, p in enumerate(paths):
        r = get(sh.port, p)
        assert (xcache(r), sha(r.body)) == ('Miss', det_sha256(MIB, i)), p
        st0 = wait_disk(sh, i + 1)
    assert st0['objects'] <= 2, st0
    for rnd in range(2):
        for i, p in enumerate(paths):
            r = get(sh.port, p)
            assert r.status == 200 and sha(r.body) == det_sha256(MIB, i), p
            assert xcache(r) == 'Hit', (rnd, p, stats(sh))
    st = stats(sh)
    assert [origin.count(p) for p in paths] == [1] * 10
    assert st['origin_fetches'] - st0['origin_fetches'] == 0, st
    assert st['bytes_from_disk'] - st0['bytes_from_disk'] >= 16 * MIB, st  # >= 8 per round


def test_memory_eviction_before_disk_commit_keeps_disk_copy(shield, origin, tmp_path):
    """The same, but each object is evicted from memory while its disk write may still be
    queued (no pause between the fetches): once written it must be served from disk."""
    origin.default = lambda q: Reply(size=MIB, seed=int(q.path.rsplit('/', 1)[1]))
    sh = disk_shield(shield, origin, tmp_path / 'cache', cache={'memory_size': '2M'})
    paths = [f'/m/{i}' for i in range(10)]
    for p in paths:
        assert get(sh.port, p).status == 200
    wait_disk(sh, 10)
    kinds = [xcache(get(sh.port, p)) for p in paths]
    assert kinds == ['Hit'] * 10, (kinds, [origin.count(p) for p in paths], stats(sh))


def test_object_larger_than_memory_tier_goes_to_disk(shield, origin, tmp_path):
    """A storable object (<= max_object_size) that does not fit the memory tier is still
    written to the disk tier, and then served from it."""
    size = 3 * MIB
    origin.route('/huge', Reply(size=size, seed=25))
    sh = disk_shield(shield, origin, tmp_path / 'cache', cache={'memory_size': '2M'})
    r = get(sh.port, '/huge')
    assert (r.status, xcache(r), sha(r.body)) == (200, 'Miss', det_sha256(size, 25))
    wait_idle(sh)
    st = stats(sh)
    assert st['disk_objects'] == 1, f'not written to disk: {st}'
    r = get(sh.port, '/huge')
    assert (xcache(r), sha(r.body)) == ('Hit', det_sha256(size, 25))
    assert origin.count('/huge') == 1


def test_concurrent_viewers_collapse_onto_one_disk_load(shield, origin, tmp_path):
    size = 3 * MIB + 5
    origin.route('/pop', Reply(size=size, seed=26))
    sh = disk_shield(shield, origin, tmp_path / 'cache')
    assert get(sh.port, '/pop').status == 200
    wait_disk(sh, 1)
    sh = restart(shield, sh)
    n = 20
    conns = [Conn(sh.port, timeout=20) for _ in range(n)]
    outs = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        try:
            barrier.wait(10)
            conns[i].send(request_bytes('GET', '/pop'))
            outs[i] = conns[i].read_response(timeout=20)
        finally:
            conns[i].close()
    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not any(t.is_alive() for t in ts)
    for r in outs:
        assert r is not None and (r.status, xcache(r), r.complete) == (200, 'Hit', True), r
        assert sha(r.body) == det_sha256(size, 26)
    st = stats(sh)
    # The first disk hit is sent from the file (sendfile); the next promotes the object,
    # i.e. one load into memory that every other viewer joins: two reads at most.
    assert size <= st['bytes_from_disk'] <= 2 * size, f'more than one disk load: {st}'
    assert (st['origin_fetches'], origin.count('/pop')) == (0, 1), st


def test_disk_objects_counts_each_key_once(shield, origin, tmp_path):
    """Storing a key again (here: re-fetched after an invalidation) replaces its file:
    disk_objects and disk_bytes still describe the files that are there."""
    cache_dir = tmp_path / 'cache'
    origin.route('/again', Reply(size=20_000, seed=29))
    origin.route('/other', Reply(size=20_000, seed=30))
    sh = disk_shield(shield, origin, cache_dir)
    assert get(sh.port, '/again').status == 200 and get(sh.port, '/other').status == 200
    st = wait_disk(sh, 2)
    for n in range(3):
        invalidate(sh, ['/again'])
        r = get(sh.port, '/again')
        assert (xcache(r), r.body) == ('Miss', det_body(20_000, 29))
        st = wait_idle(sh)
        files = obj_files(cache_dir)
        assert len(files) == 2, tree(cache_dir)
        footprint = sum(-(-size // 4096) * 4096 for size in files.values())
        assert (st['disk_objects'], st['disk_bytes']) == (2, footprint), (n, st)


def test_disk_cap_evicts_and_deletes_files(shield, origin, tmp_path):
    """40 x 1 MiB (10x the cap) through a 4 MiB disk tier: the bytes stay within the cap plus one object,
    evicted files are deleted, every request is byte-exact."""
    cache_dir = tmp_path / 'cache'
    origin.default = lambda q: Reply(size=MIB, seed=int(q.path.rsplit('/', 1)[1]))
    sh = disk_shield(shield, origin, cache_dir, disk_size='4M', cache={'memory_size': '2M'})
    peak = 0
    for i in range(40):
        r = get(sh.port, f'/c/{i}')
        assert sha(r.body) == det_sha256(MIB, i)
        st = wait_idle(sh)
        peak = max(peak, st['disk_bytes'])
    assert peak <= 4 * MIB + MIB + 8192, peak
    st = wait_idle(sh)
    assert 1 <= st['disk_objects'] <= 4, st
    assert len(obj_files(cache_dir)) == st['disk_objects'], (tree(cache_dir), st)
    assert sum(obj_files(cache_dir).values()) <= 4 * MIB + MIB + 8192
    for i in range(40):
        r = get(sh.port, f'/c/{i}')
        assert r.status == 200 and sha(r.body) == det_sha256(MIB, i), i
    sh = restart(shield, sh)
    assert scan_line(sh)[1] == len(obj_files(cache_dir))


# ---- corrupt, temp and stray files -------------------------------------------------------

def test_corrupt_temp_and_stray_files_dropped_at_start(shield, origin, tmp_path):
    cache_dir = tmp_path / 'cache'
    sizes = {'/f/magic': 3000, '/f/stamp': 3000, '/f/meta': 3000, '/f/trailer': 2 * MIB + 3,
             '/f/short': MIB + 100, '/f/zero': 3000, '/f/long': 3000, '/f/keep1': 7000,
             '/f/keep2': MIB + 1}
    seeds = {p: 30 + i for i, p in enumerate(sizes)}
    for p in sizes:
        origin.route(p, Reply(size=sizes[p], seed=seeds[p]))
    sh = disk_shield(shield, origin, cache_dir)
    for p in sizes:
        assert get(sh.port, p).status == 200
    wait_disk(sh, len(sizes))
    sh.stop()
    f = files_by_path(cache_dir)
    klen = len(file_key(f['/f/meta']))
    flip(f['/f/magic'], 0)
    flip(f['/f/stamp'], 41)  # stored-at, inside the header CRC
    flip(f['/f/meta'], HDR_SIZE + klen + 9)  # metadata region
    flip(f['/f/trailer'], f['/f/trailer'].stat().st_size - 20)  # chunk CRC table
    os.truncate(f['/f/short'], f['/f/short'].stat().st_size - 1)
    os.truncate(f['/f/zero'], 0)
    with open(f['/f/long'], 'ab') as fh:
        fh.write(b'\0')
    keep = f['/f/keep1']
    leaf = keep.parent
    impostor = leaf / (keep.name[:3] + 'f' * 29 + '.obj')  # valid file, wrong name
    shutil.copy(keep, impostor)
    elsewhere = cache_dir / '0' / '00'
    elsewhere.mkdir(parents=True, exist_ok=True)
    wrong_dir = elsewhere / keep.name if keep.name[:3] != '000' else cache_dir / '1/11' / keep.name
    wrong_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(keep, wrong_dir)  # a valid file outside its fan-out directory
    (leaf / (keep.name[:-4] + '.tmp.99999.7')).write_bytes(b'half a body')
    (leaf / 'notes.txt').write_text('not a cache file')
    (keep.parent.parent / 'junk').write_text('stray at level one')
    (cache_dir / 'README').write_text('outside the fan-out: left alone')

    sh = restart(shield, sh)
    _, restored, _, corrupt, temp, stray = scan_line(sh)
    assert (restored, corrupt, temp, stray) == (2, 8, 1, 3), scan_line(sh)
    left = tree(cache_dir)
    assert set(obj_files(cache_dir)) == {str(f[p].relative_to(cache_dir))
                                         for p in ('/f/keep1', '/f/keep2')}, left
    assert not temp_files(cache_dir) and not any('notes' in p or 'junk' in p for p in left)
    assert (cache_dir / 'README').exists()
    st = stats(sh)
    assert st['disk_objects'] == 2, st
    for p in sizes:
        r = get(sh.port, p)
        assert r.status == 200 and r.complete and sha(r.body) == det_sha256(sizes[p], seeds[p])
        assert xcache(r) == ('Hit' if p.startswith('/f/keep') else 'Miss'), (p, r.headers)
        assert origin.count(p) == (1 if p.startswith('/f/keep') else 2), p
    sh.assert_alive()


def _stored_book_with_flip(shield, origin, cache_dir, where):
    """Store /book (2 MiB + 777, three CRC chunks) and /other, stop, flip one body bit of
    /book's file ('forged-crcs' also recomputes the chunk CRC table and the trailer CRC,
    so only the MD5 in the header can tell), restart. Returns (shield, file, bytes of the
    tampered file)."""
    size = 2 * MIB + 777
    origin.route('/book', Reply(size=size, seed=40))
    origin.route('/other', Reply(size=9000, seed=41))
    sh = disk_shield(shield, origin, cache_dir)
    assert get(sh.port, '/book').status == 200 and get(sh.port, '/other').status == 200
    wait_idle(sh)
    sh.stop()
    path = files_by_path(cache_dir)['/book']
    data = bytearray(path.read_bytes())
    klen = int.from_bytes(data[16:20], 'little')
    mlen = int.from_bytes(data[20:24], 'little')
    body_off = HDR_SIZE + klen + mlen
    assert data[body_off:body_off + size] == det_body(size, 40)
    off = {'first-chunk': body_off + 1000, 'last-byte': body_off + size - 1,
           'forged-crcs': body_off + MIB + 5}[where]
    data[off] ^= 0x10
    if where == 'forged-crcs':
        chunk = int.from_bytes(data[32:36], 'little')
        nchunks = -(-size // chunk)
        tab = body_off + size
        for i in range(nchunks):
            c = data[body_off + i * chunk:body_off + min(size, (i + 1) * chunk)]
            data[tab + 4 * i:tab + 4 * i + 4] = zlib.crc32(c).to_bytes(4, 'little')
        assert int.from_bytes(data[tab + 4 * nchunks:tab + 4 * nchunks + 4], 'little') == nchunks
        hdr_crc = int.from_bytes(data[68:72], 'little')
        data[tab + 4 * nchunks + 4:tab + 4 * nchunks + 8] = zlib.crc32(
            bytes(data[tab:tab + 4 * nchunks + 4]), hdr_crc).to_bytes(4, 'little')
    path.write_bytes(bytes(data))
    sh = restart(shield, sh)
    assert scan_line(sh)[1:2] + scan_line(sh)[3:] == (2, 0, 0, 0), 'the scan reads no body'
    return sh, path, bytes(data)


@pytest.mark.parametrize('where', ['first-chunk', 'last-byte', 'forged-crcs'])
def test_body_bit_flip_caught_on_first_read(shield, origin, tmp_path, where):
    """A flipped body bit passes the scan; the first read verifies the whole file (chunk
    CRCs, then the MD5) before sending a byte, drops the file and answers from the
    origin; the origin's copy is stored again."""
    cache_dir = tmp_path / 'cache'
    size = 2 * MIB + 777
    sh, path, bad = _stored_book_with_flip(shield, origin, cache_dir, where)
    r = get(sh.port, '/book')
    assert (r.status, r.complete, xcache(r)) == (200, True, 'Miss'), r
    assert sha(r.body) == det_sha256(size, 40)
    assert origin.count('/book') == 2
    assert 'cache: disk object dropped: corrupt' in sh.stderr()
    st = wait_idle(sh)
    assert st['bytes_from_disk'] == 0, st
    assert len(obj_files(cache_dir)) == 2 and path.read_bytes() != bad  # replaced
    assert xcache(get(sh.port, '/other')) == 'Hit'
    sh = restart(shield, sh)
    r = get(sh.port, '/book')
    assert (xcache(r), sha(r.body)) == ('Hit', det_sha256(size, 40))
    assert origin.count('/book') == 2


def test_body_bit_flip_caught_when_a_disk_hit_is_loaded_into_memory(shield, origin, tmp_path):
    """The second disk hit loads the file into memory (one read checked against the MD5
    alone). A bit flipped after the first hit verified the file, in a chunk whose CRC is
    not looked at on that path, must still stop the load before a byte is sent."""
    cache_dir = tmp_path / 'cache'
    size = 2 * MIB + 777
    origin.route('/book', Reply(size=size, seed=42))
    sh = disk_shield(shield, origin, cache_dir)
    assert get(sh.port, '/book').status == 200
    wait_idle(sh)
    sh = restart(shield, sh)
    r = get(sh.port, '/book')  # first disk hit: the whole file verified, then sendfile
    assert (xcache(r), sha(r.body)) == ('Hit', det_sha256(size, 42))
    path = files_by_path(cache_dir)['/book']
    data = path.read_bytes()
    klen = int.from_bytes(data[16:20], 'little')
    mlen = int.from_bytes(data[20:24], 'little')
    flip(path, HDR_SIZE + klen + mlen + MIB + 5)
    r = get(sh.port, '/book')  # second: loaded into memory
    assert (r.status, r.complete, sha(r.body)) == (200, True, det_sha256(size, 42)), r
    assert xcache(r) == 'Miss'
    assert 'cache: disk object dropped: corrupt' in sh.stderr()
    assert origin.count('/book') == 2


def test_failed_disk_load_counted_as_one_miss(shield, origin, tmp_path):
    """/stats after a disk load that failed verification and fell back to the origin:
    the viewer saw one Miss, so one miss, no hit, and the dropped file is forgotten by
    the disk tier (disk_objects describes the files present)."""
    cache_dir = tmp_path / 'cache'
    sh, path, bad = _stored_book_with_flip(shield, origin, cache_dir, 'first-chunk')
    assert xcache(get(sh.port, '/book')) == 'Miss'
    st = wait_idle(sh)
    assert (st['hits'], st['misses'], st['origin_fetches']) == (0, 1, 1), st
    assert st['disk_objects'] == len(obj_files(cache_dir)) == 2, st


# ---- kill -9 loop ------------------------------------------------------------------------

KILL_OBJECTS = {  # path: (size, seed, pieces, interval, stall_head, md5 etag)
    '/k/tiny': (1, 50, 1, 0, 0, False),
    '/k/small': (10_000, 51, 1, 0, 0, True),
    '/k/mid': (300_000, 52, 1, 0, 0, False),
    '/k/two-chunks': (MIB + 12_345, 53, 1, 0, 0, True),
    '/k/slow': (600_000, 54, 6, 0.04, 0, True),
    '/k/slow-big': (2 * MIB + 7, 55, 8, 0.03, 0, False),
}
# Invalidated before every burst, so their fills and disk writes (renames over the
# previous file) happen again each time, spread over the kill window by stall_head.
GEN_OBJECTS = {
    '/g/0': (128 * 1024, 56, 1, 0, 0, True),
    '/g/1': (256 * 1024 + 1, 57, 2, 0.02, 0.05, False),
    '/g/2': (512 * 1024, 58, 1, 0, 0.1, True),
    '/g/3': (MIB + 1, 59, 2, 0.02, 0.15, False),
    '/g/4': (1536 * 1024, 60, 1, 0, 0.2, True),
    '/g/5': (2 * MIB + 3, 61, 2, 0.02, 0.25, False),
}
_md5s = {}


def _kill_spec(path):
    return KILL_OBJECTS.get(path) or GEN_OBJECTS[path]


def _kill_reply(q):
    size, seed, pieces, interval, stall, md5 = _kill_spec(q.path)
    hs = [('Cache-Control', 'max-age=86400')]
    if md5:
        if (size, seed) not in _md5s:
            _md5s[size, seed] = hashlib.md5(det_body(size, seed)).hexdigest()
        hs.append(('ETag', f'"{_md5s[size, seed]}"'))
    return Reply(size=size, seed=seed, pieces=pieces, interval=interval, stall_head=stall,
                 headers=hs)


class View:
    """One viewer's exchange: status, X-Cache, complete, SHA-256 of the bytes."""

    def __init__(self, path):
        self.path, self.resp, self.error, self.sha, self.n = path, None, None, None, 0

    def __repr__(self):
        return f'<View {self.path} {self.resp!r} err={self.error}>'


def fire(port, paths, timeout=15):
    """Connect one viewer per path, then send all at once; returns (views, threads)."""
    views = [View(p) for p in paths]
    conns = [Conn(port, timeout=timeout) for _ in paths]
    barrier = threading.Barrier(len(paths) + 1)

    def one(c, v):
        h = hashlib.sha256()

        def sink(b):
            v.n += len(b)
            h.update(b)
        try:
            barrier.wait(10)
            c.send(request_bytes('GET', v.path))
            v.resp = c.read_response(timeout=timeout, sink=sink)
        except (OSError, ProtocolError, TimeoutError) as e:
            v.error = repr(e)
        finally:
            v.sha = h.hexdigest()
            c.close()
    ts = [threading.Thread(target=one, args=(c, v), daemon=True) for c, v in zip(conns, views)]
    for t in ts:
        t.start()
    barrier.wait(10)
    return views, ts


def join(ts, timeout):
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.05, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in ts), 'a viewer thread hung'


def check_view(v, killed):
    """A complete 200 has the origin's bytes; anything else is a cut (only if killed)."""
    size, seed = _kill_spec(v.path)[:2]
    r = v.resp
    if r is not None and r.complete:
        assert r.status == 200, v
        kind = xcache(r)
        assert kind in ('Hit', 'Miss'), v
        assert v.sha == det_sha256(size, seed), (
            f'{kind} for {v.path} with wrong bytes ({v.n} of {size}): {r.headers}')
        return kind
    assert killed, f'{v} incomplete without a kill'
    return 'cut'


def test_kill9_loop(shield, origin, tmp_path):
    """Kill -9 at random moments (0-300 ms after a burst of requests starts: fills from a
    slow origin, disk writes replacing files, invalidation-log appends, loads from disk,
    evictions from the memory and the disk tier), restart on the same directory, and check
    that every complete response had the origin's bytes, the restart was clean (no LOCK
    left behind, no corrupt or stray file, the killed process's temp files gone, the
    accounting equal to the files) and that all objects are then served byte-exact."""
    rng = random.Random(KILL_SEED)
    cache_dir = tmp_path / 'cache'
    origin.default = _kill_reply
    # ~10 MiB of objects through an 8 MiB disk tier and a 2 MiB memory tier
    sh = disk_shield(shield, origin, cache_dir, disk_size='8M', cache={'memory_size': '2M'})
    objects = list(KILL_OBJECTS) + list(GEN_OBJECTS)
    totals = {'Hit': 0, 'Miss': 0, 'cut': 0, 'temp': 0, 'restored': 0, 'verify_hits': 0}
    for i in range(KILL_ITERATIONS):
        ctx = f'iteration {i} (SHIELD_KILL_SEED={KILL_SEED})'
        invalidate(sh, ['/g/*'])
        paths = objects + ['/k/slow', '/g/3']  # two viewers join fills
        rng.shuffle(paths)
        views, ts = fire(sh.port, paths)
        time.sleep(rng.uniform(0, 0.3))  # the random kill moment (the fault, not a wait)
        old_pid = sh.pid
        sh = restart(shield, sh, kill=True)  # fails the test if the start is not clean
        join(ts, 20)
        for v in views:
            totals[check_view(v, killed=True)] += 1
        _, restored, _, corrupt, temp, stray = scan_line(sh)
        assert (corrupt, stray) == (0, 0), f'{ctx}: {scan_line(sh)}'
        totals['temp'] += temp
        totals['restored'] += restored
        assert not [p for p in temp_files(cache_dir) if f'.tmp.{old_pid}.' in p], ctx
        st = wait_idle(sh)  # (a restore over the cap evicts, and deletes files)
        files = obj_files(cache_dir)
        footprint = sum(-(-size // 4096) * 4096 for size in files.values())
        assert (st['disk_objects'], st['disk_bytes']) == (len(files), footprint), (ctx, st)
        assert 0 < len(files) <= restored or i == 0, (ctx, restored, len(files))
        # verification pass on the restarted process, nobody killed
        views, ts = fire(sh.port, objects)
        join(ts, 20)
        for v in views:
            totals['verify_hits'] += check_view(v, killed=False) == 'Hit'
    sh.stop()
    print(f'kill -9 loop: {KILL_ITERATIONS} iterations, seed {KILL_SEED}: {totals}')
    if KILL_ITERATIONS >= 10:  # the loop exercised what it is meant to
        assert totals['cut'] > 0, totals  # kills landed while responses were in flight
        assert totals['verify_hits'] > KILL_ITERATIONS, totals  # restarts did restore hits
        assert totals['restored'] > KILL_ITERATIONS, totals


def test_lock_released_by_kill9(shield, origin, tmp_path):
    origin.route('/o', Reply(size=4000, seed=60))
    sh = disk_shield(shield, origin, tmp_path / 'cache')
    assert get(sh.port, '/o').status == 200
    wait_disk(sh, 1)
    sh = restart(shield, sh, kill=True)  # starts at once: the flock died with the process
    r = get(sh.port, '/o')
    assert (xcache(r), r.body) == ('Hit', det_body(4000, 60))


# ---- disk full ---------------------------------------------------------------------------

def test_disk_full_serves_from_origin(shield, origin, tmp_path):
    cache_dir = tmp_path / 'cache'
    cache_dir.mkdir()
    if os.geteuid() != 0:
        pytest.skip('disk-full test needs root to mount a 3 MiB tmpfs')
    p = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(cache_dir)],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs for the disk-full test: {p.stderr.strip()}')
    try:
        sizes = {'/full/a': MIB, '/full/b': MIB, '/full/big': 2 * MIB, '/full/small': 10_000,
                 '/full/big2': 1536 * 1024}
        seeds = {p: 70 + i for i, p in enumerate(sizes)}
        for p in sizes:
            origin.route(p, Reply(size=sizes[p], seed=seeds[p]))
        sh = disk_shield(shield, origin, cache_dir)  # 1G configured, 3 MiB real
        for p in ('/full/a', '/full/b'):
            assert get(sh.port, p).status == 200
        wait_disk(sh, 2)
        for p in ('/full/big', '/full/big2'):  # larger than the ~1 MiB left
            r = get(sh.port, p)
            assert (r.status, xcache(r), sha(r.body)) == (200, 'Miss',
                                                          det_sha256(sizes[p], seeds[p]))
        st = wait_idle(sh)
        assert (st['disk_objects'], st['disk_write_errors']) == (2, 2), st
        assert metric(sh, 'shield_cache_disk_write_errors_total') == 2
        failed = [ln for ln in sh.stderr().splitlines() if WRITE_FAILED in ln]
        assert len(failed) == 1 and 'No space left on device' in failed[0], failed  # rate-limited
        assert not temp_files(cache_dir), tree(cache_dir)  # the failed writes freed space
        r = get(sh.port, '/full/small')  # fits: the failed writes gave their space back
        assert r.status == 200 and sha(r.body) == det_sha256(10_000, seeds['/full/small'])
        wait_disk(sh, 3)
        for p in sizes:  # Shield keeps serving, byte-exact, from memory
            r = get(sh.port, p)
            assert (r.status, xcache(r), sha(r.body)) == (200, 'Hit',
                                                          det_sha256(sizes[p], seeds[p])), p
        sh.assert_alive()
        sh = restart(shield, sh)
        _, restored, _, corrupt, temp, stray = scan_line(sh)
        assert (restored, corrupt, temp, stray) == (3, 0, 0, 0), scan_line(sh)
        assert not temp_files(cache_dir)
        for p in sizes:
            r = get(sh.port, p)
            on_disk = p in ('/full/a', '/full/b', '/full/small')
            assert (r.status, xcache(r), sha(r.body)) == (
                200, 'Hit' if on_disk else 'Miss', det_sha256(sizes[p], seeds[p])), p
        assert [origin.count(p) for p in sizes] == [1, 1, 2, 1, 2]
        st = wait_idle(sh)
        assert st['disk_objects'] == 3 and not temp_files(cache_dir), st
        sh.stop()
    finally:
        try:
            for s in shield.all:
                if s.alive():
                    s.kill()
        finally:
            u = subprocess.run(['umount', str(cache_dir)], capture_output=True, text=True,
                               timeout=30)
            if u.returncode != 0:
                subprocess.run(['umount', '-l', str(cache_dir)], capture_output=True,
                               timeout=30)


# ---- the byte budget: eviction, not failure ------------------------------------------------

BUDGET = 16 * MIB


def budget_reply(q):
    """Books of 8-200 KB with a few KB of user metadata (stored with each object, so a
    file takes more than its body and key), fixed per object number."""
    i = int(q.path.rsplit('/', 1)[1])
    r = random.Random(i)
    meta = [('X-Amz-Meta-Description', 'd' * r.randint(1000, 6000))]
    return Reply(size=budget_size(i), seed=i, headers=meta)


def budget_size(i):
    return random.Random(i).randint(8_000, 200_000)


def on_disk_bytes(cache_dir):
    """Footprint (4 KiB blocks) of the object files there now."""
    return sum(-(-size // 4096) * 4096 for size in obj_files(cache_dir).values())


def fetch_all(sh, ids, conns=16):
    """GET /b/<i> for every i, conns clients in parallel; every body must be exact."""
    bad = []

    def worker(part):
        for i in part:
            r = get(sh.port, f'/b/{i}', timeout=30)
            if r is None or r.status != 200 or sha(r.body) != det_sha256(budget_size(i), i):
                bad.append((i, r))
    ts = [threading.Thread(target=worker, args=(ids[k::conns],)) for k in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not bad, bad[:3]


class BytesSampler:
    """Polls /stats disk_bytes (the store's count of the files there) on a thread until
    stopped; .peak. The cache directory itself cannot be summed at one instant."""

    def __init__(self, sh):
        self.sh, self.peak, self.samples = sh, 0, 0
        self.done = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, stats(self.sh)['disk_bytes'])
            self.samples += 1

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.t.join()


def test_full_budget_after_restart_evicts_without_write_errors(shield, origin, tmp_path):
    """A 16 MB disk budget filled, Shield restarted (the scan restores a full budget), then
    new objects fetched by 16 parallel clients: each new object takes the place of older
    files. Reaching the budget is no write failure: no "disk write failed" line, no write
    error, no object refused; the store stays within the budget while it happens, and its
    accounting matches the files afterwards.

    Two causes made admitted objects fail as "disk write failed (full)": the eviction
    policy was charged an estimate of each new file (body + key + 4 KiB) that left out the
    stored response headers, so with a few KB of metadata per object it kept more files
    than the budget holds and the store refused every commit once over it; and the files
    it evicted were deleted later, in the I/O queue behind other writes, while the store
    already refused commits over the budget."""
    cache_dir = tmp_path / 'cache'
    origin.default = budget_reply
    sh = disk_shield(shield, origin, cache_dir, disk_size='16M', cache={'memory_size': '4M'})
    fetch_all(sh, list(range(200)))
    st = wait_idle(sh)
    assert st['disk_bytes'] > BUDGET - 256 * 1024, f'the budget is not full: {st}'
    old = set(files_by_path(cache_dir))

    sh = restart(shield, sh)
    assert scan_line(sh)[1] == len(old)
    new = list(range(1000, 1300))
    with BytesSampler(sh) as sampler:
        fetch_all(sh, new)
        st = wait_idle(sh)
    err = sh.stderr()
    assert WRITE_FAILED not in err, [ln for ln in err.splitlines() if WRITE_FAILED in ln]
    assert st['disk_write_errors'] == 0 and st['disk_refusals'] == 0, st
    by_path = files_by_path(cache_dir)
    assert not old & set(by_path), 'older files did not make room for the new objects'
    assert (st['disk_objects'], st['disk_bytes']) == (len(by_path), on_disk_bytes(cache_dir))
    assert st['disk_bytes'] > BUDGET - 256 * 1024, f'the budget is not used: {st}'
    assert sampler.samples > 10 and sampler.peak <= BUDGET, (sampler.peak, BUDGET)
    for p in by_path:
        i = int(p.rsplit('/', 1)[1])
        r = get(sh.port, p)
        assert (r.status, xcache(r), sha(r.body)) == (200, 'Hit', det_sha256(budget_size(i), i))


def test_real_write_failure_counted_in_metrics_and_logged_once(shield, origin, tmp_path):
    """A write the filesystem refuses (here EFBIG: a 256 KiB file-size limit set on the
    running process, RLIMIT_FSIZE, which needs no privilege) is a write error: counted in
    /metrics and /stats, logged at most once a minute, the object served and kept in
    memory, no temp file left; objects that fit are still stored. Shield ignores SIGXFSZ,
    so the limit fails the write instead of killing the process."""
    cache_dir = tmp_path / 'cache'
    sizes = {'/w/small': 20_000, '/w/big1': 2 * MIB, '/w/big2': MIB + 7, '/w/small2': 30_000}
    for i, (p, n) in enumerate(sizes.items()):
        origin.route(p, Reply(size=n, seed=80 + i))
    sh = disk_shield(shield, origin, cache_dir)
    assert metric(sh, 'shield_cache_disk_write_errors_total') == 0
    resource.prlimit(sh.pid, resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))
    for i, (p, n) in enumerate(sizes.items()):
        r = get(sh.port, p)
        assert (r.status, xcache(r), sha(r.body)) == (200, 'Miss', det_sha256(n, 80 + i)), p
        wait_idle(sh)
    sh.assert_alive()
    assert metric(sh, 'shield_cache_disk_write_errors_total') == 2
    text = get(sh.admin_port, '/metrics').body
    p = subprocess.run(['promtool', 'check', 'metrics'], input=text, capture_output=True,
                       timeout=30)
    assert p.returncode == 0, f'promtool: {p.stdout.decode()} {p.stderr.decode()}'
    st = stats(sh)
    assert (st['disk_write_errors'], st['disk_objects'], st['disk_refusals']) == (2, 2, 0), st
    lines = [ln for ln in sh.stderr().splitlines() if WRITE_FAILED in ln]
    assert len(lines) == 1 and '[error]' in lines[0] and 'File too large' in lines[0], lines
    assert not temp_files(cache_dir), tree(cache_dir)
    assert set(files_by_path(cache_dir)) == {'/w/small', '/w/small2'}
    for i, (p, n) in enumerate(sizes.items()):  # the failed ones from memory
        r = get(sh.port, p)
        assert (r.status, xcache(r), sha(r.body)) == (200, 'Hit', det_sha256(n, 80 + i)), p
    assert [origin.count(p) for p in sizes] == [1, 1, 1, 1]


# ---- refused directories -----------------------------------------------------------------

def run_refused(sh, timeout=15):
    """Run sh's config expecting Shield to refuse to start; returns (rc, stderr)."""
    p = subprocess.Popen([SHIELD_BIN, '-c', str(sh.conf)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=Shield.base_env(sh.extra_env))
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate(timeout=5)
        pytest.fail(f'Shield started although it should have refused:\n{out.decode()[-2000:]}')
    text = out.decode('utf-8', 'replace')
    assert not [b for b in ('ERROR: AddressSanitizer', 'runtime error:', 'LeakSanitizer')
                if b in text], text
    return p.returncode, text


@pytest.mark.parametrize('kind', ['no-version', 'foreign-version', 'regular-file'])
def test_refuses_a_directory_that_is_not_a_shield_cache(shield, origin, tmp_path, kind):
    d = tmp_path / 'data'
    if kind == 'regular-file':
        d.write_text('a file, not a directory')
        want = str(d)
    else:
        d.mkdir()
        (d / 'important.txt').write_text('precious')
        (d / 'a').mkdir()
        (d / 'a' / 'bc').mkdir()
        (d / 'a' / 'bc' / 'thesis.docx').write_text('more precious')
        if kind == 'foreign-version':
            (d / 'VERSION').write_text('1.2.3\n')
            want = 'is not a Shield disk cache version file'
        else:
            want = 'is not empty and has no VERSION file'
    aport = free_port()
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')], start=False,
                cache={'disk': {'path': str(d), 'size': '1G'}},
                admin={'address': f'127.0.0.1:{aport}'})
    before = tree(d) if d.is_dir() else None
    rc, text = run_refused(sh)
    assert rc != 0 and want in text, (rc, text)
    assert 'cache:' in text and str(d) in text, text
    assert not port_open(sh.port)
    if before is not None:  # nothing deleted, changed or added (not even a LOCK)
        assert tree(d) == before, 'foreign files touched'
        assert (d / 'important.txt').read_text() == 'precious'


@pytest.mark.parametrize('size', ['banana', '-1G', '0'])
def test_bad_disk_size_rejected(shield, origin, tmp_path, size):
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')], start=False,
                cache={'disk': {'path': str(tmp_path / 'cache'), 'size': size}})
    p = subprocess.run([SHIELD_BIN, '-t', '-c', str(sh.conf)], capture_output=True, text=True,
                       timeout=30, env=Shield.base_env())
    assert p.returncode != 0 and 'size' in p.stdout + p.stderr, (p.returncode, p.stdout,
                                                                  p.stderr)


def test_second_shield_on_same_directory_refused(shield, origin, tmp_path):
    cache_dir = tmp_path / 'cache'
    origin.route('/o', Reply(size=4000, seed=61))
    sh = disk_shield(shield, origin, cache_dir)
    assert get(sh.port, '/o').status == 200
    wait_disk(sh, 1)
    twin = successor(shield, sh)  # the very same config: same ports, same directory
    rc, text = run_refused(twin)
    assert rc != 0 and f'{cache_dir} is in use by another cache store (LOCK held)' in text, text
    sh.assert_alive()
    r = get(sh.port, '/o')
    assert (xcache(r), r.body) == ('Hit', det_body(4000, 61))
    assert sorted(obj_files(cache_dir)) and not temp_files(cache_dir)
    sh = restart(shield, sh)  # once the first stops the directory is free again
    assert scan_line(sh)[1] == 1
    assert xcache(get(sh.port, '/o')) == 'Hit'


def test_first_disk_hit_is_sent_from_the_file_with_ranges(shield, origin, tmp_path):
    """After a restart the first hit of a stored object is sent straight from its file
    (sendfile, nothing loaded into memory): full body, single and multiple ranges and
    a 304 all come out right, and the second hit promotes the object to memory."""
    size = 3 * MIB + 123
    origin.route('/f/book.epub', Reply(size=size, seed=31, headers=[
        ('ETag', '"f1"'), ('Cache-Control', 'max-age=600')]))
    body = b''.join(det_chunks(size, 31))
    sh = disk_shield(shield, origin, tmp_path / 'cache')
    assert get(sh.port, '/f/book.epub').status == 200
    wait_disk(sh, 1)
    for req_headers, want_status, check in [
        ({}, 200, lambda r: r.body == body),
        ({'Range': 'bytes=1048570-1048585'}, 206, lambda r: r.body == body[1048570:1048586]),
        ({'Range': 'bytes=0-1,-3'}, 206,
         lambda r: body[0:2] in r.body and body[-3:] in r.body and b'multipart' not in r.body),
        ({'If-None-Match': '"f1"'}, 304, lambda r: r.body == b''),
    ]:
        sh = restart(shield, sh)
        r = get(sh.port, '/f/book.epub', headers=req_headers)
        assert (r.status, xcache(r)) == (want_status, 'Hit'), (req_headers, r)
        assert check(r), req_headers
        st = wait_idle(sh)
        assert st['objects'] == 0, f'the first disk hit was loaded into memory: {st}'
    r = get(sh.port, '/f/book.epub')  # second hit in this process: promoted
    assert (r.status, xcache(r), r.body == body) == (200, 'Hit', True)
    assert wait_idle(sh)['objects'] == 1
    assert origin.count('/f/book.epub') == 1
