"""How the memory tier (S3-FIFO) and the disk tier (SIEVE with frequency admission)
share a small budget: what the popular objects keep, and what objects asked for once
may displace.

Every test runs the real binary with a 2 MiB memory tier (one 1 MiB object fits) and
a 4 MiB disk tier (three 1 MiB files fit), an admin listener, and a ScriptedOrigin. Disk
commits are asynchronous: the tests wait for /stats `disk_pending` == 0 between steps.
"""

import hashlib
import json

from conftest import MIB, Reply, behavior, det_sha256, free_port, get, http_origin, \
    port_open, wait_until, xcache


def tiered_shield(shield, origin, tmp_path):
    aport = free_port()
    sh = shield([http_origin('o', origin)], [behavior('*', 'o')],
                cache={'memory_size': '2M', 'disk': {'path': str(tmp_path / 'cache'),
                                                     'size': '4M'}},
                node={'workers': 1}, admin={'address': f'127.0.0.1:{aport}'})
    sh.admin_port = aport
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    return sh


def stats(sh):
    r = get(sh.admin_port, '/stats')
    assert r.status == 200, r
    return json.loads(r.body)['cache']


def idle(sh):
    last = {}

    def ok():
        last.update(stats(sh))
        return last['disk_pending'] == 0
    wait_until(ok, 15, what='disk_pending == 0')
    return dict(last)


def fetch_ok(sh, path, want=None):
    r = get(sh.port, path)
    seed = int(path.rsplit('/', 1)[1])
    assert (r.status, r.body and len(r.body)) == (200, MIB), (path, r)
    assert hashlib.sha256(r.body).hexdigest() == det_sha256(MIB, seed), path
    if want:
        assert xcache(r) == want, (path, xcache(r), stats(sh))
    idle(sh)
    return r


def test_objects_asked_once_do_not_flush_popular_ones_from_disk(shield, origin, tmp_path):
    """Three books asked for three times each fill the disk tier; then ten books asked
    for once each stream through. Plain SIEVE let the stream push the popular files out
    (their memory copies were gone too: memory holds one book), so they were fetched
    again. With admission the stream is refused by the disk tier (each book lives in
    memory until the next one), and the popular books are still Hits from disk."""
    origin.default = lambda q: Reply(size=MIB, seed=int(q.path.rsplit('/', 1)[1]))
    sh = tiered_shield(shield, origin, tmp_path)
    hot = [f'/h/{i}' for i in (1, 2, 3)]
    for p in hot:
        fetch_ok(sh, p, 'Miss')
    for _ in range(2):
        for p in hot:
            fetch_ok(sh, p, 'Hit')
    st = stats(sh)
    assert st['disk_objects'] == 3
    writes, refusals = st['disk_writes'], st['disk_refusals']
    for i in range(100, 110):
        fetch_ok(sh, f'/c/{i}', 'Miss')
    st = idle(sh)
    assert st['disk_objects'] == 3, st
    # Refused before a byte is written (admission used to run at commit, after
    # writing and syncing a file it then deleted).
    assert (st['disk_writes'] - writes, st['disk_refusals'] - refusals) == (0, 10), st
    fetch_ok(sh, '/c/109', 'Hit')  # the memory tier still serves the latest one
    for p in hot:
        fetch_ok(sh, p, 'Hit')
    assert [origin.count(p) for p in hot] == [1, 1, 1]


def test_refused_object_asked_again_goes_to_disk_when_memory_evicts_it(
        shield, origin, tmp_path):
    """A book refused by the disk tier (asked for once, the disk full of more popular
    ones) that is then asked for again and again while in memory is written to the disk
    tier when the memory tier evicts it, instead of being lost."""
    origin.default = lambda q: Reply(size=MIB, seed=int(q.path.rsplit('/', 1)[1]))
    sh = tiered_shield(shield, origin, tmp_path)
    hot = [f'/h/{i}' for i in (1, 2, 3)]
    for _ in range(3):
        for p in hot:
            fetch_ok(sh, p)
    fetch_ok(sh, '/x/7', 'Miss')
    assert stats(sh)['disk_objects'] == 3
    for _ in range(5):
        fetch_ok(sh, '/x/7', 'Hit')  # from memory: it was refused by the disk tier
    fetch_ok(sh, '/y/8', 'Miss')  # evicts /x/7 from memory
    st = idle(sh)
    assert st['disk_objects'] == 3, st  # /x/7 in place of a book asked for less
    fetch_ok(sh, '/x/7', 'Hit')
    assert origin.count('/x/7') == 1, stats(sh)
