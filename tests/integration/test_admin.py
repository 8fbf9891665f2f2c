"""The admin API's bearer token, invalidation ids, POST /prefetch and build/shieldctl.

One module-scoped Shield with `admin = { token_file }` in front of the scripted origin;
shieldctl (next to SHIELD_BIN) is run as a subprocess, as an operator would.
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (SHIELD_BIN, Reply, Shield, base_config, behavior, fetch, free_port, get,
                      http_origin, port_open, render_config, wait_until, xcache)

SHIELDCTL = str(Path(SHIELD_BIN).resolve().parent / 'shieldctl')
TOKEN = 'kq8Zt-0dV_3xLw9.sJ~Rb4Yh'
HOST = 'books.example'
ISO = r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z'


@pytest.fixture(scope='module')
def tokfile(tmp_path_factory):
    p = tmp_path_factory.mktemp('token') / 'admin.token'
    p.write_text(f'  {TOKEN}  \nsecond line is ignored\n')
    return p


@pytest.fixture(scope='module')
def sh(module_shield, module_origin, tokfile):
    aport = free_port()
    s = module_shield([http_origin('o', module_origin)], [behavior('*', 'o')],
                      admin={'address': f'127.0.0.1:{aport}', 'token_file': str(tokfile)})
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    s.admin_port = aport
    s.tokfile = tokfile
    return s


@pytest.fixture(autouse=True)
def _shieldctl_built():
    if not os.access(SHIELDCTL, os.X_OK):
        pytest.fail(f'{SHIELDCTL} is not built (make all builds it)')


def auth(token=TOKEN):
    return {'Authorization': f'Bearer {token}'}


def admin(sh, path, method='GET', body=None, headers=None):
    hs = auth() if headers is None else headers
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hs = {**hs, 'Content-Type': 'application/json'}
    return fetch(sh.admin_port, path, method=method, body=data, headers=hs, host='127.0.0.1')


def stats(sh):
    r = admin(sh, '/stats')
    assert r.status == 200, r
    return json.loads(r.body)


def delta(a, b):
    return {'requests': b['requests'] - a['requests'],
            **{k: b['cache'][k] - a['cache'][k] for k in ('hits', 'misses', 'origin_fetches')}}


def ctl(sh, *args, token=True, stdin=None, addr=None, timeout=60):
    """Run shieldctl against sh's admin API (with its token file unless told otherwise)."""
    pre = ['-a', addr or f'127.0.0.1:{sh.admin_port}']
    if token is True:
        pre += ['-t', str(sh.tokfile)]
    elif token:
        pre += ['-t', str(token)]
    env = Shield.base_env({'SHIELDCTL_TOKEN_FILE': None, 'SHIELDCTL_ADDRESS': None})
    p = subprocess.run([SHIELDCTL, *pre, *args], input=stdin, capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert 'Sanitizer' not in p.stderr and 'runtime error' not in p.stderr, p.stderr
    return p


def wait_prefetch_idle(sh, timeout=30):
    return wait_until(lambda: not stats(sh)['prefetch']['running'], timeout,
                      what='the prefetch to finish')


# ---- bearer token ------------------------------------------------------------------------

# (method, path, body, the status with the right token; None = anything but 401)
ENDPOINTS = [
    ('GET', '/stats', None, 200),
    ('POST', '/invalidations', {'paths': ['/tok-inv']}, 201),
    ('GET', '/invalidations/INOSUCHID', None, 404),
    ('POST', '/prefetch', {'paths': ['/tok-pf'], 'host': HOST}, 202),
    ('GET', '/prefetch/PNOSUCHID', None, 404),
    ('GET', '/metrics', None, None),
    ('GET', '/healthz', None, None),
    ('GET', '/popular', None, None),
    ('GET', '/no/such/endpoint', None, 404),
]


@pytest.mark.parametrize('method,path,body,want', ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
def test_token_required_on_every_endpoint(sh, method, path, body, want):
    s0 = stats(sh)
    bad = [{}, auth('wrong'), auth(TOKEN[:-1]), auth(TOKEN + 'x'), auth(''),
           {'Authorization': f'Basic {TOKEN}'}, {'Authorization': TOKEN},
           {'Authorization': f'Bearer{TOKEN}'}]
    for h in bad:
        r = admin(sh, path, method, body, headers=h)
        assert r.status == 401, (h, r)
        assert (r.header('WWW-Authenticate') or '').startswith('Bearer'), r.headers
        assert 'error' in json.loads(r.body)
        if h.get('Authorization', '').startswith('Bearer '):
            assert 'invalid_token' in r.header('WWW-Authenticate')
    # The refused requests did nothing.
    s1 = stats(sh)
    assert s1['cache']['invalidations'] == s0['cache']['invalidations']
    assert s1['prefetch']['id'] == s0['prefetch']['id']
    r = admin(sh, path, method, body)
    assert r.status != 401, r
    if want is not None:
        assert r.status == want, r
    if method == 'POST' and path == '/prefetch':
        wait_prefetch_idle(sh)
    # The scheme is case-insensitive (RFC 7235).
    r = admin(sh, path, method, body, headers={'Authorization': f'bearer  {TOKEN}'})
    assert r.status != 401, r
    if method == 'POST' and path == '/prefetch':
        wait_prefetch_idle(sh)


def test_open_without_token_file(shield, origin):
    aport = free_port()
    shield([http_origin('o', origin)], [behavior('*', 'o')],
           admin={'address': f'127.0.0.1:{aport}', 'token_file': ''})
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    r = fetch(aport, '/stats')
    assert r.status == 200 and 'cache' in json.loads(r.body), r
    p = subprocess.run([SHIELDCTL, '-a', f'127.0.0.1:{aport}', 'stats', '--json'],
                       capture_output=True, text=True, timeout=30, env=Shield.base_env())
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)['requests'] == 0


@pytest.mark.parametrize('content,why', [
    (None, 'cannot open'), ('', 'empty'), ('   \n', 'empty'),
    ('two words\n', 'visible ASCII')], ids=['missing', 'empty', 'blank', 'space'])
def test_token_file_errors_fail_the_config_check(tmp_path, content, why):
    tf = tmp_path / 'tok'
    if content is not None:
        tf.write_text(content)
    conf = tmp_path / 'shield.conf'
    conf.write_text(render_config(base_config(
        free_port(), [http_origin('o', 'http://127.0.0.1:9')], [behavior('*', 'o')],
        admin={'address': f'127.0.0.1:{free_port()}', 'token_file': str(tf)})))
    p = subprocess.run([SHIELD_BIN, '-t', '-c', str(conf)], capture_output=True, text=True,
                       timeout=30, env=Shield.base_env())
    assert p.returncode != 0
    line = next((ln for ln in (p.stdout + p.stderr).splitlines() if 'token_file' in ln), '')
    assert re.match(re.escape(str(conf)) + r':\d+: admin\.token_file "', line), p.stderr
    assert why in line, line


# ---- invalidations ------------------------------------------------------------------------

def test_invalidate_with_shieldctl(sh, module_origin):
    for p in ('/inv/a.epub', '/inv/b.epub'):
        assert xcache(get(sh.port, p, host=HOST)) == 'Miss'
        assert xcache(get(sh.port, p, host=HOST)) == 'Hit'
    p = ctl(sh, 'invalidate', '/inv/a.epub')
    assert p.returncode == 0, p.stderr
    m = re.match(r'(I[A-Z0-9]{13}) Completed \(1 path, created (' + ISO + r')\)$', p.stdout.strip())
    assert m, p.stdout
    iid = m.group(1)
    assert xcache(get(sh.port, '/inv/a.epub', host=HOST)) == 'Miss'
    assert xcache(get(sh.port, '/inv/b.epub', host=HOST)) == 'Hit'
    assert module_origin.count('/inv/a.epub') == 2 and module_origin.count('/inv/b.epub') == 1

    r = admin(sh, f'/invalidations/{iid}')
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc == {'id': iid, 'status': 'Completed', 'paths': 1, 'create_time': m.group(2)}

    p = ctl(sh, '--json', 'invalidate', '/inv/*', '/inv/"quoted"')
    assert p.returncode == 0, p.stderr
    doc2 = json.loads(p.stdout)
    assert doc2['paths'] == 2 and doc2['status'] == 'Completed' and doc2['id'] != iid
    assert re.fullmatch(ISO, doc2['create_time'])
    assert json.loads(admin(sh, f'/invalidations/{doc2["id"]}').body) == doc2
    assert xcache(get(sh.port, '/inv/b.epub', host=HOST)) == 'Miss'
    # The first one is still retrievable.
    assert json.loads(admin(sh, f'/invalidations/{iid}').body)['id'] == iid


def test_invalidate_post_answers_201_with_id(sh):
    r = admin(sh, '/invalidations', 'POST', {'paths': ['/post/x', '/post/y/*']})
    assert r.status == 201, r
    doc = json.loads(r.body)
    assert set(doc) == {'id', 'status', 'paths', 'create_time'}
    assert re.fullmatch(r'I[A-Z0-9]{13}', doc['id']) and doc['paths'] == 2
    assert admin(sh, '/invalidations/' + doc['id'][:-1]).status == 404
    r = admin(sh, '/invalidations', 'POST', {'paths': ['no-slash']})
    assert r.status == 400, r
    assert 'error' in json.loads(r.body)


def test_invalidate_failure_exit_1(sh):
    p = ctl(sh, 'invalidate', '/a*b')  # '*' only at the end: the API answers 400
    assert p.returncode == 1
    assert 'HTTP 400' in p.stderr and "'*' only last" in p.stderr, p.stderr


# ---- prefetch -------------------------------------------------------------------------------

def test_warm_fills_the_cache_once_per_path(sh, module_origin, tmp_path):
    paths = [f'/warm/book-{i:02d}.epub' for i in range(12)]
    for i, p in enumerate(paths):
        module_origin.route(p, Reply(size=20_000 + i, seed=i))
    s0 = stats(sh)
    f = tmp_path / 'paths.txt'
    f.write_text('# warm the new releases\n\n' + '\n'.join(f'  {p}' for p in paths) + '\n')
    p = ctl(sh, 'warm', '--host', HOST, str(f))
    assert p.returncode == 0, p.stderr
    m = re.search(r'prefetch (P[A-Z0-9]{13}): 12 of 12 fetched, 0 failed', p.stdout)
    assert m, p.stdout
    pid = m.group(1)
    # stderr is not a tty here: plain progress lines, the last one complete.
    lines = p.stderr.strip().splitlines()
    assert lines and all(re.fullmatch(pid + r': \d+/12 done, \d+ failed', ln) for ln in lines), \
        p.stderr
    assert lines[-1] == f'{pid}: 12/12 done, 0 failed'
    # Through the viewer path: 12 viewer requests, 12 misses, 12 origin fetches.
    d = delta(s0, stats(sh))
    assert (d['requests'], d['misses'], d['origin_fetches']) == (12, 12, 12), d
    for path in paths:
        assert module_origin.count(path) == 1, path
        r = get(sh.port, path, host=HOST)
        assert r.status == 200 and xcache(r) == 'Hit', (path, r.headers)
        assert len(r.body) == 20_000 + int(path[-7:-5])
    assert all(module_origin.count(path) == 1 for path in paths)
    pf = stats(sh)['prefetch']
    assert pf == {'id': pid, 'total': 12, 'done': 12, 'failed': 0, 'running': False}
    doc = json.loads(admin(sh, f'/prefetch/{pid}').body)
    assert doc['id'] == pid and doc['total'] == 12 and doc['done'] == 12
    assert doc['failed'] == 0 and doc['running'] is False and doc['errors'] == []
    assert re.fullmatch(ISO, doc['create_time'])


def test_warm_from_stdin_reports_failures(sh, module_origin):
    module_origin.route('/warm2/missing.epub', Reply(status=404, body=b'no'))
    good = ['/warm2/a.epub', '/warm2/b.epub']
    p = ctl(sh, 'warm', '-H', HOST, '-', stdin='\n'.join(good + ['/warm2/missing.epub']) + '\n')
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert re.search(r'prefetch P[A-Z0-9]{13}: 2 of 3 fetched, 1 failed', p.stdout), p.stdout
    assert 'failed: /warm2/missing.epub (HTTP 404)' in p.stdout, p.stdout
    pf = stats(sh)['prefetch']
    assert (pf['total'], pf['done'], pf['failed'], pf['running']) == (3, 3, 1, False)
    for path in good:
        assert xcache(get(sh.port, path, host=HOST)) == 'Hit'


def test_warm_origin_errors_exit_1(sh, module_origin):
    module_origin.route('/fail/a', Reply(status=500, body=b'e'))
    p = ctl(sh, 'warm', '-H', HOST, '-', stdin='/fail/a\n')
    assert p.returncode == 1 and 'failed: /fail/a (HTTP 500)' in p.stdout, p.stdout
    assert stats(sh)['prefetch']['failed'] == 1


def test_prefetch_progress_and_conflict(sh, module_origin):
    slow = [f'/slow/{i}.epub' for i in range(6)]
    for p in slow:
        module_origin.route(p, Reply(size=64_000, pieces=4, interval=0.15))
    r = admin(sh, '/prefetch', 'POST', {'host': HOST, 'paths': slow})
    assert r.status == 202, r
    doc = json.loads(r.body)
    assert set(doc) == {'id', 'total'} and doc['total'] == 6
    pid = doc['id']
    pf = stats(sh)['prefetch']
    assert pf['id'] == pid and pf['running'] is True and pf['total'] == 6, pf
    # One at a time: a second prefetch is refused while the first runs.
    r2 = admin(sh, '/prefetch', 'POST', {'paths': ['/slow/other']})
    assert r2.status == 409, r2
    assert stats(sh)['prefetch']['id'] == pid
    seen = set()

    def finished():
        d = json.loads(admin(sh, f'/prefetch/{pid}').body)
        seen.add(d['done'])
        return not d['running']
    wait_until(finished, 30, interval=0.05, what='the prefetch')
    assert max(seen) == 6 and min(seen) < 6, seen  # progress was visible while it ran
    assert stats(sh)['prefetch'] == {'id': pid, 'total': 6, 'done': 6, 'failed': 0,
                                     'running': False}
    assert all(module_origin.count(p) == 1 for p in slow)
    assert admin(sh, '/prefetch', 'POST', {'paths': ['/slow/other'], 'host': HOST}).status == 202
    wait_prefetch_idle(sh)
    assert admin(sh, f'/prefetch/{pid}').status == 404  # only the last one is kept


@pytest.mark.parametrize('body', [
    b'{not json', {'paths': []}, {'paths': ['rel/a']}, {'paths': ['/a b']},
    {'paths': ['/a#frag']}, {'paths': ['/a'], 'hots': 'x'}, {'paths': ['/a'], 'host': 'a b'},
    {'paths': ['/a'], 'host': 'x' * 300}, {'host': 'x'}],
    ids=['not-json', 'empty', 'relative', 'space', 'fragment', 'unknown-key', 'bad-host',
         'long-host', 'no-paths'])
def test_prefetch_rejects_bad_bodies(sh, body):
    before = stats(sh)['prefetch']
    r = admin(sh, '/prefetch', 'POST', body)
    assert r.status == 400, r
    assert 'error' in json.loads(r.body)
    assert stats(sh)['prefetch']['id'] == before['id']


# ---- shieldctl ------------------------------------------------------------------------------

def test_stats_human_and_json(sh):
    for _ in range(2):
        get(sh.port, '/stats-probe', host=HOST)
    p = ctl(sh, 'stats', '--json')
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert {'requests', 'edge', 'cache', 'prefetch'} <= set(d)
    h = ctl(sh, 'stats')
    assert h.returncode == 0, h.stderr
    out = h.stdout
    c = d['cache']
    assert re.search(rf'^requests\s+{d["requests"]}$', out, re.M), out
    assert re.search(rf'hits {c["hits"]} .*misses {c["misses"]}', out), out
    ratio = 100.0 * (c['hits'] + c['refresh_hits']) / (c['hits'] + c['refresh_hits'] + c['misses'])
    assert f'hit ratio       {ratio:.1f}%' in out, out
    assert f'from_origin {c["bytes_from_origin"]} ' in out, out
    assert re.search(rf'^objects\s+{c["objects"]} in memory \({c["bytes"]} bytes', out, re.M), out
    assert re.search(rf'invalidations {c["invalidations"]}$', out, re.M), out
    assert re.search(r'^edge\s', out, re.M), out
    if d['prefetch']['id']:
        assert d['prefetch']['id'] in out, out
    p2 = ctl(sh, '--json', 'stats')  # --json before the command too
    assert p2.returncode == 0 and 'cache' in json.loads(p2.stdout)


def test_top(sh):
    for _ in range(5):
        get(sh.port, '/top/most.epub', host=HOST)
    get(sh.port, '/top/least.epub', host=HOST)
    r = admin(sh, '/popular')
    p = ctl(sh, 'top', '-n', '3')
    if r.status == 404:  # GET /popular not in this build: a clear error, exit 1
        assert p.returncode == 1, p.stdout
        assert 'GET /popular: 404' in p.stderr, p.stderr
        return
    assert r.status == 200, r
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert re.fullmatch(r'\s*requests\s+bytes\s+path', lines[0]), lines
    rows = [re.fullmatch(r'\s*(\d+)\s+(\d+)\s+(\S.*)', ln) for ln in lines[1:]]
    assert rows and all(rows) and len(rows) <= 3, lines
    assert any('/top/most.epub' in m.group(3) for m in rows), lines


@pytest.mark.parametrize('args', [
    [], ['frobnicate'], ['invalidate'], ['invalidate', 'no-slash'], ['top', '-n', '0'],
    ['top', 'extra'], ['warm'], ['warm', 'a', 'b'], ['--bogus', 'stats'], ['stats', 'extra']],
    ids=['no-command', 'unknown', 'invalidate-nothing', 'invalidate-relative', 'top-n0',
         'top-extra', 'warm-nofile', 'warm-two', 'bad-option', 'stats-extra'])
def test_usage_errors_exit_2(sh, args):
    s0 = stats(sh)
    p = ctl(sh, *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Try 'shieldctl --help'" in p.stderr, p.stderr
    assert stats(sh)['cache']['invalidations'] == s0['cache']['invalidations']


def test_help():
    p = subprocess.run([SHIELDCTL, '--help'], capture_output=True, text=True, timeout=10,
                       env=Shield.base_env())
    assert p.returncode == 0
    for word in ('stats', 'invalidate', 'top', 'warm', '--json', '-t', '-a', 'exit status'):
        assert word in p.stdout


def test_unreachable_admin_exit_1(sh):
    p = ctl(sh, 'stats', addr=f'127.0.0.1:{free_port()}')
    assert p.returncode == 1
    assert 'cannot reach the admin API at http://127.0.0.1:' in p.stderr, p.stderr


def test_token_problems_exit_1(sh, tmp_path):
    p = ctl(sh, 'stats', token=False)
    assert p.returncode == 1 and 'needs a token (-t TOKENFILE)' in p.stderr, p.stderr
    wrong = tmp_path / 'wrong'
    wrong.write_text('not-the-token\n')
    p = ctl(sh, 'invalidate', '/x', token=wrong)
    assert p.returncode == 1 and f'rejected the token in {wrong}' in p.stderr, p.stderr
    p = ctl(sh, 'stats', token=tmp_path / 'absent')
    assert p.returncode == 1 and 'absent' in p.stderr, p.stderr


def test_shutdown_during_prefetch(shield, origin, tmp_path):
    # SIGTERM while a prefetch is in flight: the prefetch is abandoned at once (the
    # workers' drain, 1 s here, bounds the fills it started), Shield exits 0 and is
    # sanitizer-clean under ASan.
    slow = [f'/stuck/{i}' for i in range(8)]
    for p in slow:
        origin.route(p, Reply(size=1 << 20, pieces=40, interval=0.25))
    aport = free_port()
    tf = tmp_path / 'tok'
    tf.write_text(TOKEN + '\n')
    s = shield([http_origin('o', origin, read_timeout='30s')], [behavior('*', 'o')],
               admin={'address': f'127.0.0.1:{aport}', 'token_file': str(tf)},
               timeouts={'drain': '1s'})
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    s.admin_port = aport
    r = admin(s, '/prefetch', 'POST', {'paths': slow})
    assert r.status == 202, r
    assert origin.wait_requests(4, 10), origin.count()
    assert stats(s)['prefetch']['running'] is True
    t = time.monotonic()
    s.stop(timeout=15)
    assert time.monotonic() - t < 8, 'shutdown waited for the prefetch'
    assert origin.count() < len(slow)
    log = s.stderr()
    assert re.search(r'prefetch P\w+: \d of 8 fetched, 0 failed \(aborted\)', log), log
