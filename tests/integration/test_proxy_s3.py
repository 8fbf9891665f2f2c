"""S3 origins: byte-exact objects from s3rver through real clients, SigV4 checked by a
verifying origin, the three credential sources, and what reaches S3."""

import hashlib
import re
import subprocess

import pytest

from conftest import (MIB, NODE, S3_KEYS, SHIELD_BIN, SMALL_TEXT, Conn, FakeIMDS, Reply,
                      ScriptedOrigin, assert_shield_headers, behavior, curl, det_body, fetch,
                      get, port_open, request_bytes, s3_origin, sha256_file, wait_until)

AK, SK = 'AKIDSHIELDTEST', 'shield/test+secret'


@pytest.fixture(scope='module')
def sh(module_shield, s3):
    return module_shield([s3_origin('books', s3)],
                         [behavior('*.epub', 'books', forward_headers=['Origin']),
                          behavior('*', 'books')],
                         env=S3_KEYS, default_root_object='index.html')


# ---- s3rver, real bytes -----------------------------------------------------------------

def test_small_object(sh, s3):
    r = get(sh.port, '/hello.txt')
    assert r.status == 200 and r.body == SMALL_TEXT and r.complete
    assert r.header('Content-Type') == 'text/plain'
    assert r.header('ETag') == '"%s"' % hashlib.md5(SMALL_TEXT).hexdigest()
    assert r.header('Last-Modified')
    assert_shield_headers(r)
    assert not r.has('Keep-Alive'), 's3rver\'s Keep-Alive header passed to the viewer'


def test_2mib_byte_exact_curl(sh, s3, tmp_path):
    out = tmp_path / 'two.bin'
    res = curl('-o', str(out), '-w', '%{http_code}', f'http://127.0.0.1:{sh.port}/two.bin')
    assert res.returncode == 0, res.stderr
    assert res.stdout == b'200'
    assert sha256_file(out) == s3.objects['two.bin']


def test_big_object_byte_exact_curl(sh, s3_big, tmp_path):
    key, size, sha = s3_big
    out = tmp_path / 'big.bin'
    res = curl('-o', str(out), '-w', '%{http_code} %{size_download}',
               f'http://127.0.0.1:{sh.port}/{key}', timeout=150)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode() == f'200 {size}'
    assert sha256_file(out) == sha


def test_nested_key(sh, s3):
    r = get(sh.port, '/dir/book.epub')
    assert r.status == 200
    assert hashlib.sha256(r.body).hexdigest() == s3.objects['dir/book.epub']


def test_head(sh, s3):
    r = fetch(sh.port, '/two.bin', method='HEAD')
    assert r.status == 200 and r.body == b''
    assert r.header('Content-Length') == str(2 * MIB)
    assert r.header('ETag')
    assert_shield_headers(r)


def test_head_then_get_on_same_connection(sh, s3):
    with Conn(sh.port) as c:
        c.send(request_bytes('HEAD', '/hello.txt') + request_bytes('GET', '/hello.txt'))
        h = c.read_response(method='HEAD')
        g = c.read_response()
    assert h.status == 200 and h.body == b''
    assert g.status == 200 and g.body == SMALL_TEXT


# (s3rver 3.7.1 answers the suffix form `bytes=-10` as `0-10`, so it is not used here;
# suffix ranges are a pass-through like any other Range header, see test_http1.)
@pytest.mark.parametrize('rng,start,end', [('bytes=0-9', 0, 9), ('bytes=2097140-', 2097140, 2097151),
                                           ('bytes=1048570-1048579', 1048570, 1048579)])
def test_range(sh, s3, rng, start, end):
    full = det_body(2 * MIB, 2)
    r = get(sh.port, '/two.bin', headers={'Range': rng})
    assert r.status == 206
    assert r.header('Content-Range') == f'bytes {start}-{end}/{len(full)}'
    assert r.body == full[start:end + 1]


def test_conditional_304_passthrough(sh, s3):
    etag = get(sh.port, '/hello.txt').header('ETag')
    r = get(sh.port, '/hello.txt', headers={'If-None-Match': etag})
    assert r.status == 304 and r.body == b''


def test_404_xml_passthrough(sh, s3):
    r = get(sh.port, '/no-such-book.epub')
    assert r.status == 404
    assert 'xml' in (r.header('Content-Type') or '')
    assert b'<Code>NoSuchKey</Code>' in r.body
    assert r.header('Via') == f'1.1 {NODE} (shield)'


def test_default_root_object_s3(sh, s3):
    r = get(sh.port, '/')
    assert r.status == 200 and b'root object' in r.body


# ---- SigV4 against a verifying origin ---------------------------------------------------------

@pytest.fixture
def v_origin():
    o = ScriptedOrigin(verify_sigv4=(AK, SK)).start()
    o.route('/ebooks/a.epub', Reply(body=b'signed book', content_type='application/epub+zip'))
    yield o
    o.stop()


def s3_shield(shield, origin, env=None, obehav=None, **okw):
    return shield([s3_origin('v', origin, **okw)],
                  [behavior('*', 'v', **(obehav or {}))],
                  env=env if env is not None else {'AWS_ACCESS_KEY_ID': AK,
                                                   'AWS_SECRET_ACCESS_KEY': SK})


def test_sigv4_accepted(shield, v_origin):
    sh = s3_shield(shield, v_origin)
    r = get(sh.port, '/a.epub')
    assert (r.status, r.body) == (200, b'signed book')
    q = v_origin.last()
    assert q.path == '/ebooks/a.epub', 'path-style key not used'
    assert q.sigv4_ok, q.sigv4_error
    assert q.header('x-amz-content-sha256')
    assert not q.has('x-amz-security-token')


def test_sigv4_wrong_secret_rejected(shield, v_origin):
    sh = s3_shield(shield, v_origin, env={'AWS_ACCESS_KEY_ID': AK,
                                          'AWS_SECRET_ACCESS_KEY': 'not-the-secret'})
    r = get(sh.port, '/a.epub')
    assert r.status == 403
    assert b'<Code>SignatureDoesNotMatch</Code>' in r.body
    assert v_origin.last().sigv4_ok is False


def test_sigv4_env_session_token(shield, v_origin):
    v_origin.sigv4 = (AK, SK, 'ENV-SESSION-TOKEN')
    sh = s3_shield(shield, v_origin, env={'AWS_ACCESS_KEY_ID': AK, 'AWS_SECRET_ACCESS_KEY': SK,
                                          'AWS_SESSION_TOKEN': 'ENV-SESSION-TOKEN'})
    r = get(sh.port, '/a.epub')
    assert r.status == 200, v_origin.last().sigv4_error
    assert v_origin.last().header('x-amz-security-token') == 'ENV-SESSION-TOKEN'


def test_sigv4_signs_forwarded_query(shield, v_origin):
    """With forward_query the query is part of the canonical request: S3 sorts the
    parameters, so the signature must be computed over the sorted query."""
    sh = s3_shield(shield, v_origin, obehav={'forward_query': True})
    r = get(sh.port, '/a.epub?versionId=3&acl-test=1&a=')
    q = v_origin.last()
    assert sorted(q.query.split('&')) == sorted('versionId=3&acl-test=1&a='.split('&')), q.target
    assert q.sigv4_ok, q.sigv4_error
    assert r.status == 200


def test_query_not_forwarded_to_s3(shield, v_origin):
    sh = s3_shield(shield, v_origin)
    r = get(sh.port, '/a.epub?token=abc')
    assert r.status == 200
    assert v_origin.last().target == '/ebooks/a.epub'


def test_credentials_file(shield, v_origin, tmp_path):
    f = tmp_path / 'credentials'
    f.write_text(f'[default]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n\n'
                 '[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = other\n')
    sh = s3_shield(shield, v_origin, env={}, credentials='file', credentials_file=str(f))
    r = get(sh.port, '/a.epub')
    assert r.status == 200, v_origin.last().sigv4_error
    assert v_origin.last().sigv4_ok


def test_credentials_file_profile(shield, v_origin, tmp_path):
    f = tmp_path / 'credentials'
    f.write_text('[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n'
                 f'[shield]\naws_access_key_id={AK}\naws_secret_access_key={SK}\n')
    sh = s3_shield(shield, v_origin, env={}, credentials='file', credentials_file=str(f),
                   credentials_profile='shield')
    r = get(sh.port, '/a.epub')
    assert r.status == 200, v_origin.last().sigv4_error


def test_imds_credentials(shield, v_origin):
    imds = FakeIMDS('AKIDIMDS', 'imds/secret', 'IMDS-SESSION-TOKEN').start()
    try:
        v_origin.sigv4 = ('AKIDIMDS', 'imds/secret', 'IMDS-SESSION-TOKEN')
        sh = s3_shield(shield, v_origin, env={}, credentials='imds', imds_endpoint=imds.endpoint)
        r = get(sh.port, '/a.epub')
        assert r.status == 200, v_origin.last().sigv4_error
        q = v_origin.last()
        assert q.sigv4_ok and q.header('x-amz-security-token') == 'IMDS-SESSION-TOKEN'
        assert imds.log[0][:2] == ('PUT', '/latest/api/token'), imds.log
        assert imds.used_token_for_credentials(), imds.log
        assert all(ok for _, _, ok in imds.log), f'IMDS requests without a valid token: {imds.log}'
    finally:
        imds.stop()


def test_missing_env_credentials_fail_cleanly(shield, v_origin):
    """credentials = env with no AWS_* variables: either Shield refuses to start with a
    message naming the problem, or it runs and answers 502 without contacting S3."""
    sh = shield([s3_origin('v', v_origin)], [behavior('*', 'v')], env={}, start=False)
    sh.err = open(sh.errpath, 'wb')
    sh.proc = subprocess.Popen([SHIELD_BIN, '-c', str(sh.conf)], stdout=sh.err, stderr=sh.err,
                               env=sh.base_env({}))
    wait_until(lambda: sh.proc.poll() is not None or port_open(sh.port), 15,
               what='Shield to exit or listen')
    if sh.proc.poll() is not None:
        sh.checked = True
        sh.err.close()
        assert sh.proc.returncode != 0
        assert re.search(r'(?i)credential|AWS_ACCESS_KEY_ID', sh.stderr()), sh.stderr()
        return
    r = get(sh.port, '/a.epub')
    assert r.status == 502, r
    assert v_origin.count() == 0, 'an unsigned request reached S3'


# ---- what reaches S3 --------------------------------------------------------------------------

def test_viewer_credentials_and_hop_by_hop_never_reach_s3(shield, v_origin):
    sh = s3_shield(shield, v_origin, obehav={'forward_headers': ['Origin', 'X-Hop']})
    hdrs = [('Authorization', 'Bearer viewer-secret'), ('Cookie', 'session=viewer-cookie'),
            ('Connection', 'X-Hop'), ('X-Hop', 'hop'), ('Keep-Alive', 'timeout=5'),
            ('TE', 'trailers'), ('Trailer', 'X-T'), ('Upgrade', 'websocket'),
            ('Proxy-Authorization', 'Basic eDp5'), ('Proxy-Connection', 'keep-alive'),
            ('Origin', 'https://reader.example'), ('X-Forwarded-For', '198.51.100.4'),
            ('Range', 'bytes=0-3'), ('If-Match', '"m"'), ('If-None-Match', '"n"'),
            ('If-Modified-Since', 'Sat, 01 Jan 2000 00:00:00 GMT'),
            ('If-Unmodified-Since', 'Sat, 01 Jan 2050 00:00:00 GMT'), ('If-Range', '"r"')]
    n0 = v_origin.count()
    r = get(sh.port, '/a.epub', headers=hdrs)
    assert r.status == 200
    reqs = v_origin.requests[n0:]
    assert len(reqs) == 1
    q = reqs[0]
    assert q.sigv4_ok, q.sigv4_error
    raw = q.raw_head.decode('latin-1')
    assert 'viewer-secret' not in raw and 'viewer-cookie' not in raw, raw
    assert q.headers_named('Authorization')[0].startswith('AWS4-HMAC-SHA256 ')
    assert len(q.headers_named('Authorization')) == 1
    assert not q.has('Cookie')
    for h in ('X-Hop', 'Keep-Alive', 'TE', 'Trailer', 'Upgrade', 'Proxy-Authorization',
              'Proxy-Connection'):
        assert not q.has(h), f'{h} reached S3: {q.headers}'
    for k, v in hdrs[10:11] + hdrs[12:]:
        assert q.headers_named(k) == [v], (k, q.headers)
    assert q.headers_named('X-Forwarded-For') == ['198.51.100.4, 127.0.0.1']
    assert NODE in (q.header('Via') or '')
