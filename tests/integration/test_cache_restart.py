"""Restart with a disk cache: Shield serves while the start-up scan rebuilds the index
(proxy/cache/persist.c), and disk writes are group-committed.

The scan is made slow and observable with the test hook SHIELD_TEST_SCAN_DELAY_US
(include/shield/cache_disk.h: the scan sleeps that long after each object), so requests
arrive while it runs; "during the scan" is checked by the scan's end line not being in
stderr yet when the response came. Helpers come from test_cache_disk.py.
"""

import json
import random
import threading
import time

from conftest import Reply, Shield, get, port_open, wait_until, xcache
from test_cache_disk import (SCAN_RE, disk_shield, files_by_path, invalidate, obj_files,
                             restart, scan_line, stats, successor, temp_files, wait_disk,
                             wait_idle)

N = 160            # objects filled before the restart
DELAY_US = 50000   # scan: 160 objects x 50 ms / 4 threads = about 2 s
CC = [('Cache-Control', 'max-age=86400')]


def body(path, version=1):
    return (f'v{version} {path} '.encode()) * 20


def v1_origin(q):
    return Reply(body=body(q.path), headers=CC)


def fill(sh, paths, conns=8):
    """GET every path (conns in parallel); all must be Misses with the v1 bytes."""
    bad = []

    def worker(part):
        for p in part:
            r = get(sh.port, p)
            if r is None or r.status != 200 or r.body != body(p) or xcache(r) != 'Miss':
                bad.append((p, r))
    ts = [threading.Thread(target=worker, args=(paths[k::conns],)) for k in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not bad, bad[:3]


def v1_disk_shield(shield, origin, tmp_path):
    """A Shield with a disk tier in tmp_path/cache, in front of an origin of v1 bodies."""
    origin.default = v1_origin
    cache_dir = tmp_path / 'cache'
    return disk_shield(shield, origin, cache_dir), cache_dir


def filled_disk_shield(shield, origin, tmp_path, prefix, n=N):
    """v1_disk_shield with n objects (prefix/0 ...) filled and all committed to disk."""
    sh, cache_dir = v1_disk_shield(shield, origin, tmp_path)
    paths = [f'{prefix}/{i}' for i in range(n)]
    fill(sh, paths)
    wait_disk(sh, n)
    return sh, cache_dir, paths


def restart_slow(shield, sh, delay_us=DELAY_US):
    """Stop sh (SIGTERM) and start a successor whose start-up scan is slowed down."""
    sh.stop()
    n = len(shield.all)
    env = dict(sh.extra_env, SHIELD_TEST_SCAN_DELAY_US=str(delay_us))
    new = Shield(shield.tmp / f'shield{n}', sh.conf.read_text(), env=env, port=sh.port,
                 name=f'shield{n}')
    new.admin_port = sh.admin_port
    shield.all.append(new)
    new.start()
    wait_until(lambda: port_open(new.admin_port), 10, what='the admin listener')
    return new


def scanning(sh):
    return not SCAN_RE.search(sh.stderr())


def footprints(cache_dir):
    return sum((s + 4095) // 4096 * 4096 for s in obj_files(cache_dir).values())


def last_scanned(cache_dir, paths, k=3):
    """The k paths whose files are in the fan-out leaves the scan reaches last."""
    by_path = files_by_path(cache_dir)
    return sorted(paths, key=lambda p: str(by_path[p].relative_to(cache_dir)))[-k:]


def test_requests_during_scan_are_disk_hits(shield, origin, tmp_path):
    """While the scan runs, stored objects the scan has not reached are Hits (found on disk
    by their key's hash) with the right bytes and no origin request; a new object is a Miss
    and is stored; after the scan the disk accounting equals what is on disk."""
    sh, cache_dir, paths = filled_disk_shield(shield, origin, tmp_path, '/o')
    asked = origin.count()
    sh = restart_slow(shield, sh)
    targets = last_scanned(cache_dir, paths) + random.Random(1).sample(paths, 3)
    for p in targets:
        r = get(sh.port, p)
        assert (r.status, xcache(r), r.body) == (200, 'Hit', body(p)), (p, r)
    assert origin.count() == asked, 'a stored object went to the origin during the scan'
    r = get(sh.port, '/new/1')
    assert (r.status, xcache(r), r.body) == (200, 'Miss', body('/new/1')), r
    r = get(sh.port, '/new/1')
    assert (r.status, xcache(r)) == (200, 'Hit'), r
    st = stats(sh)
    assert scanning(sh), f'the scan ended before the requests: {sh.stderr()[-500:]}'
    assert st['disk_objects'] < N + 1, st  # the scan really was still running

    _, restored, _, corrupt, temp, stray = scan_line(sh)
    assert restored in (N, N + 1) and (corrupt, temp, stray) == (0, 0, 0), scan_line(sh)
    st = wait_disk(sh, N + 1)
    assert st['disk_bytes'] == footprints(cache_dir), (st, footprints(cache_dir))
    assert len(obj_files(cache_dir)) == N + 1
    for p in targets + ['/new/1']:
        r = get(sh.port, p)
        assert (r.status, xcache(r), r.body) == (200, 'Hit', body(p)), (p, r)
    assert origin.count() == asked + 1


def test_object_replaced_during_scan_is_not_resurrected(shield, origin, tmp_path):
    """An object invalidated and fetched anew during the scan, before the scan reaches its
    file, stays the new version: after the scan, and after another restart."""
    sh, cache_dir, paths = filled_disk_shield(shield, origin, tmp_path, '/r')
    targets = last_scanned(cache_dir, paths, 2)
    sh = restart_slow(shield, sh)
    for p in targets:
        origin.route(p, Reply(body=body(p, 2), headers=CC))
    invalidate(sh, targets)
    for p in targets:
        r = get(sh.port, p)
        assert (r.status, xcache(r), r.body) == (200, 'Miss', body(p, 2)), (p, r)
    wait_idle(sh)  # the new versions are committed, in leaves not scanned yet
    assert scanning(sh), 'the scan ended before the replacement: make it slower'
    assert scan_line(sh)[1] == N
    st = wait_disk(sh, N)
    assert st['disk_bytes'] == footprints(cache_dir), (st, footprints(cache_dir))
    for p in targets:
        r = get(sh.port, p)
        assert (r.status, xcache(r), r.body) == (200, 'Hit', body(p, 2)), (p, r)
    asked = origin.count()
    sh = restart(shield, sh)
    for p in targets:
        r = get(sh.port, p)
        assert (r.status, xcache(r), r.body) == (200, 'Hit', body(p, 2)), (p, r)
    assert origin.count() == asked
    by_path = files_by_path(cache_dir)
    assert len(by_path) == N


def test_persisted_invalidation_applies_during_scan(shield, origin, tmp_path):
    """An invalidation made before the restart applies to an object looked up on disk
    directly during the scan (Miss, the origin's new bytes); others stay Hits."""
    sh, cache_dir, paths = filled_disk_shield(shield, origin, tmp_path, '/i')
    target, other = last_scanned(cache_dir, paths, 2)
    invalidate(sh, [target])
    origin.route(target, Reply(body=body(target, 2), headers=CC))
    sh = restart_slow(shield, sh)
    r = get(sh.port, other)
    assert (r.status, xcache(r), r.body) == (200, 'Hit', body(other)), r
    n = origin.count(target)
    r = get(sh.port, target)
    assert (r.status, xcache(r), r.body) == (200, 'Miss', body(target, 2)), r
    assert origin.count(target) == n + 1
    assert scanning(sh), 'the scan ended before the requests: make it slower'
    scan_line(sh)
    r = get(sh.port, target)
    assert (r.status, xcache(r), r.body) == (200, 'Hit', body(target, 2)), r


def test_head_during_scan_is_answered(shield, origin, tmp_path):
    """HEAD for a stored object during the scan gets the stored head (or the origin's):
    never an error, never a body."""
    sh, cache_dir, paths = filled_disk_shield(shield, origin, tmp_path, '/h', n=40)
    sh = restart_slow(shield, sh, delay_us=200000)
    p = last_scanned(cache_dir, paths, 1)[0]
    r = get(sh.port, p, method='HEAD')
    assert r.status == 200 and r.body == b'' and r.header('Content-Length') == str(
        len(body(p))), r
    scan_line(sh)


def test_kill9_during_group_commits_leaves_no_torn_object(shield, origin, tmp_path):
    """Many small objects written by 16 parallel clients (so commits are grouped in
    batches), kill -9 at a random moment: the restart finds no corrupt or stray file, the
    killed process's temp files are removed, and every object it restored is served as a
    Hit with its exact bytes. Several rounds.

    The clients are stopped and joined between the kill and the successor's start: a
    client still running then would have its next request served by the successor, whose
    new files the scan may already have passed (files on disk > objects restored)."""
    sh, cache_dir = v1_disk_shield(shield, origin, tmp_path)
    rng = random.Random(7)
    total_restored = 0
    for rnd in range(4):
        paths = [f'/k{rnd}/{i}' for i in range(400)]
        stop = threading.Event()
        port = sh.port

        def worker(part):
            for p in part:
                if stop.is_set():
                    return
                try:
                    get(port, p, timeout=5)
                except Exception:  # noqa: BLE001 - the kill cuts requests
                    return
        ts = [threading.Thread(target=worker, args=(paths[k::16],)) for k in range(16)]
        for t in ts:
            t.start()
        time.sleep(rng.uniform(0.2, 0.8))  # the random kill moment (the fault, not a wait)
        old_pid = sh.pid
        sh.kill()
        stop.set()
        for t in ts:  # nothing listens on the port now: every client ends at once
            t.join()
        sh = successor(shield, sh).start()
        wait_until(lambda: port_open(sh.admin_port), 10, what='the admin listener')
        _, restored, _, corrupt, temp, stray = scan_line(sh)
        assert stats(sh)['misses'] == 0, 'a request reached the successor'
        assert (corrupt, stray) == (0, 0), scan_line(sh)
        assert not [p for p in temp_files(cache_dir) if f'.tmp.{old_pid}.' in p]
        by_path = files_by_path(cache_dir)
        assert len(by_path) == restored, (len(by_path), restored)
        total_restored += restored
        asked = origin.count()
        for p in [p for p in by_path if p.startswith(f'/k{rnd}/')]:
            r = get(sh.port, p)
            assert (r.status, xcache(r), r.body) == (200, 'Hit', body(p)), (p, r)
        assert origin.count() == asked
        wait_idle(sh)
    assert total_restored > 0


def test_scan_progress_visible_in_log_and_stats(shield, origin, tmp_path):
    """The scan's end line carries objects, seconds and bytes; /stats disk_objects grows
    while it runs and ends at the number of objects."""
    sh, cache_dir, paths = filled_disk_shield(shield, origin, tmp_path, '/p')
    sh = restart_slow(shield, sh)
    seen, running = set(), []
    while scanning(sh):
        st = stats(sh)
        seen.add(st['disk_objects'])
        running.append(st['disk_scan']['running'])
        assert st['disk_scan']['leaves_done'] <= st['disk_scan']['leaves'], st
        time.sleep(0.05)
    assert len(seen) > 2 and min(seen) < N, seen
    assert True in running, 'the scan was never shown as running in /stats'
    done = stats(sh)['disk_scan']
    assert not done['running'] and done['objects'] == N, done
    line = SCAN_RE.search(sh.stderr()).group(0)
    tail = sh.stderr()[sh.stderr().index(line):].splitlines()[0]
    assert f'{footprints(cache_dir)} bytes' in tail, tail
    assert json.loads(json.dumps(wait_disk(sh, N)))['disk_bytes'] == footprints(cache_dir)
