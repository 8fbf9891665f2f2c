"""SigV4 viewer auth (behaviors with signed = "sigv4"): real signers against build/shield.

Private-mirror layout used here, as an operator would run it:
  * path-style clients (`aws s3 presign`/SDKs with an IP or single-host endpoint) send
    /BUCKET/key: behavior "/ebooks/*" goes to the bucket's S3-compatible endpoint as a
    plain http origin (the path already names the bucket), here s3rver;
  * virtual-host clients (BUCKET.mirror-host) send /key: behavior "*" goes to a type s3
    origin that adds the bucket and re-signs with Shield's own credentials;
  * "/s3o/*" and "/plain/*" go to scripted origins that record what they receive, the
    first one an S3 stand-in that checks Shield's own signature with botocore.
The WAF is off in this Shield so the sigv4 module's canonicalisation rule is what is
tested; with the WAF on, traversal and "%2F" are refused even before auth.
"""

import datetime
import hashlib
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import (BUCKET, S3_KEYS, SMALL_TEXT, Reply, ScriptedOrigin, behavior, curl, fetch, free_port,
                      get, http_origin, port_open, s3_origin, wait_until, xcache)

VAK, VSK = 'AKIDVIEWER0001', 'viewer/Secret+key=1'      # accepted from viewers
VAK2, VSK2 = 'AKIDVIEWER0002', 'second-viewer-secret'   # from a secret_file
OAK, OSK = S3_KEYS['AWS_ACCESS_KEY_ID'], S3_KEYS['AWS_SECRET_ACCESS_KEY']  # Shield's own
# (s3rver checks the access key id; the scripted S3 stand-in checks the whole signature)
AWS_CLI = '/usr/bin/aws'
XML_RE = re.compile(r'<\?xml version="1.0" encoding="UTF-8"\?>\n<Error><Code>(\w+)</Code>'
                    r'<Message>([^<]*)</Message><RequestId>([^<]+)</RequestId></Error>$')


@pytest.fixture(scope='module')
def s3o():
    o = ScriptedOrigin(verify_sigv4=(OAK, OSK)).start()
    yield o
    o.stop()


@pytest.fixture(scope='module')
def plain():
    o = ScriptedOrigin().start()
    yield o
    o.stop()


@pytest.fixture(scope='module')
def sh(module_shield, s3, s3o, plain, tmp_path_factory):
    secret_file = tmp_path_factory.mktemp('sigv4') / 'viewer2.secret'
    secret_file.write_text(VSK2 + '\n')
    aport = free_port()
    sv = dict(signed='sigv4')
    s = module_shield(
        [s3_origin('books', s3), http_origin('books_path', s3.endpoint),
         s3_origin('s3o', s3o), http_origin('plain', plain)],
        [behavior('/ebooks/*', 'books_path', **sv),
         behavior('/s3o/*', 's3o', forward_query=True, **sv),
         behavior('/plain/*', 'plain', forward_query=True, **sv),
         behavior('/cors/*', 'plain', cors={'allow_origins': ['https://reader.example'],
                                            'allow_methods': ['GET', 'HEAD']}, **sv),
         behavior('/open/*', 'plain'),
         behavior('*', 'books', **sv)],
        env={'AWS_ACCESS_KEY_ID': OAK, 'AWS_SECRET_ACCESS_KEY': OSK},
        sigv4={'region': 'us-east-1', 'service': 's3', 'max_skew': '15m',
               'keys': [{'access_key': VAK, 'secret': VSK},
                        {'access_key': VAK2, 'secret_file': str(secret_file)}]},
        waf={'enabled': False},
        admin={'address': f'127.0.0.1:{aport}'})
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    s.admin_port = aport
    return s


# ---- signing with botocore ---------------------------------------------------------------

def _amz(when):
    return (when or datetime.datetime.utcnow()).strftime('%Y%m%dT%H%M%SZ')


def header_signed(port, target, method='GET', headers=(), ak=VAK, sk=VSK, region='us-east-1',
                  service='s3', when=None, host=None):
    """Headers of a request header-signed by botocore's S3SigV4Auth at `when` (UTC).

    The target's path and query are signed exactly as given (S3 signers do not
    re-encode the path). Returns (host, [(name, value)...]) to send.
    """
    host = host or f'127.0.0.1:{port}'
    req = AWSRequest(method=method, url=f'http://{host}{target}', headers=dict(headers))
    req.context['timestamp'] = _amz(when)
    signer = S3SigV4Auth(Credentials(ak, sk), service, region)
    # add_auth() without its utcnow(): the timestamp is ours
    signer._modify_request_before_signing(req)
    creq = signer.canonical_request(req)
    signer._inject_signature_to_request(
        req, signer.signature(signer.string_to_sign(req, creq), req))
    return host, list(req.headers.items())


def presigned(port, target, expires=3600, ak=VAK, sk=VSK, region='us-east-1', when=None,
              host=None, headers=()):
    """A presigned target (path?query) from botocore's S3SigV4QueryAuth at `when`."""
    host = host or f'127.0.0.1:{port}'
    req = AWSRequest(method='GET', url=f'http://{host}{target}', headers=dict(headers))
    req.context['timestamp'] = _amz(when)
    signer = S3SigV4QueryAuth(Credentials(ak, sk), 's3', region, expires=expires)
    signer._modify_request_before_signing(req)
    creq = signer.canonical_request(req)
    signer._inject_signature_to_request(
        req, signer.signature(signer.string_to_sign(req, creq), req))
    return req.url.split(host, 1)[1]


def send_signed(port, target, method='GET', headers=(), send_headers=None, **kw):
    host, hs = header_signed(port, target, method=method, headers=headers, **kw)
    if send_headers is not None:
        hs = send_headers(hs)
    return fetch(port, target, method=method, headers=hs, host=host)


def assert_s3_error(r, code, status=403):
    assert r is not None, 'no response'
    assert r.status == status, (r, r.body)
    assert r.header('Content-Type') == 'application/xml', r.headers
    m = XML_RE.match(r.body.decode())
    assert m, r.body
    ET.fromstring(r.body)  # well-formed XML
    assert m.group(1) == code, (m.group(1), m.group(2))
    assert m.group(3) == r.header('X-Request-Id')
    assert xcache(r) == 'Error'
    return m.group(2)


def edge_stats(s):
    r = get(s.admin_port, '/stats')
    assert r.status == 200, r
    return json.loads(r.body)['edge']


def now():
    return datetime.datetime.utcnow()


# ---- real signers ------------------------------------------------------------------------

def aws_presign(tmp_path, url, style, expires=None):
    cfg = tmp_path / f'aws-{style}.cfg'
    cfg.write_text('[default]\nregion = us-east-1\ns3 =\n'
                   f'    addressing_style = {style}\n    signature_version = s3v4\n')
    env = {'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path), 'AWS_CONFIG_FILE': str(cfg),
           'AWS_SHARED_CREDENTIALS_FILE': str(tmp_path / 'none'),
           'AWS_ACCESS_KEY_ID': VAK, 'AWS_SECRET_ACCESS_KEY': VSK,
           'AWS_DEFAULT_REGION': 'us-east-1'}
    args = [AWS_CLI, 's3', 'presign', f's3://{BUCKET}/hello.txt', '--endpoint-url', url]
    if expires is not None:
        args += ['--expires-in', str(expires)]
    p = subprocess.run(args, capture_output=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode().strip()


def test_aws_cli_presign_path_style(sh, tmp_path):
    url = aws_presign(tmp_path, f'http://127.0.0.1:{sh.port}', 'path')
    assert url.startswith(f'http://127.0.0.1:{sh.port}/{BUCKET}/hello.txt?X-Amz-Algorithm=')
    res = curl('-w', '\n%{http_code}', url)
    assert res.returncode == 0, res.stderr
    body, code = res.stdout.rsplit(b'\n', 1)
    assert code == b'200' and body == SMALL_TEXT
    # the same URL with one byte of the signature changed
    bad = url[:-1] + ('0' if url[-1] != '0' else '1')
    res = curl('-w', '\n%{http_code}', bad)
    assert res.stdout.rsplit(b'\n', 1)[1] == b'403'
    assert b'<Code>SignatureDoesNotMatch</Code>' in res.stdout


def test_aws_cli_presign_virtual_host(sh, tmp_path):
    """BUCKET.host/key: the type s3 origin adds the bucket and signs with Shield's keys."""
    url = aws_presign(tmp_path, f'http://localhost:{sh.port}', 'virtual', expires=60)
    assert url.startswith(f'http://{BUCKET}.localhost:{sh.port}/hello.txt?'), url
    res = curl('--resolve', f'{BUCKET}.localhost:{sh.port}:127.0.0.1', '-w', '\n%{http_code}', url)
    assert res.returncode == 0, res.stderr
    body, code = res.stdout.rsplit(b'\n', 1)
    assert code == b'200' and body == SMALL_TEXT, res.stdout
    # the host is signed: the same URL sent to another name does not verify
    res = curl('-H', f'Host: other.localhost:{sh.port}', '-w', '\n%{http_code}', url)
    assert res.stdout.rsplit(b'\n', 1)[1] == b'403'


def test_botocore_client_through_shield(sh, s3):
    """An unmodified botocore S3 client pointed at Shield: GetObject and HeadObject."""
    import botocore.session
    from botocore.config import Config
    c = botocore.session.get_session().create_client(
        's3', region_name='us-east-1', endpoint_url=f'http://127.0.0.1:{sh.port}',
        aws_access_key_id=VAK2, aws_secret_access_key=VSK2,
        config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))
    o = c.get_object(Bucket=BUCKET, Key='dir/book.epub')
    assert hashlib.sha256(o['Body'].read()).hexdigest() == s3.objects['dir/book.epub']
    h = c.head_object(Bucket=BUCKET, Key='hello.txt')
    assert h['ContentLength'] == len(SMALL_TEXT)
    r = c.get_object(Bucket=BUCKET, Key='hello.txt', Range='bytes=0-4')
    assert r['Body'].read() == SMALL_TEXT[:5]
    bad = botocore.session.get_session().create_client(
        's3', region_name='us-east-1', endpoint_url=f'http://127.0.0.1:{sh.port}',
        aws_access_key_id=VAK2, aws_secret_access_key='not-the-secret',
        config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))
    with pytest.raises(Exception) as e:
        bad.get_object(Bucket=BUCKET, Key='hello.txt')
    assert 'SignatureDoesNotMatch' in str(e.value)


def test_botocore_header_auth_raw(sh, s3):
    r = send_signed(sh.port, f'/{BUCKET}/hello.txt', headers={'Range': 'bytes=6-9'})
    assert r.status == 206 and r.body == SMALL_TEXT[6:10], (r, r.body)
    r = send_signed(sh.port, f'/{BUCKET}/hello.txt', method='HEAD')
    assert r.status == 200 and r.header('Content-Length') == str(len(SMALL_TEXT))


def test_curl_aws_sigv4(sh):
    url = f'http://127.0.0.1:{sh.port}/{BUCKET}/hello.txt'
    res = curl('--aws-sigv4', 'aws:amz:us-east-1:s3', '--user', f'{VAK}:{VSK}',
               '-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD', '-w', '\n%{http_code}', url)
    assert res.returncode == 0, res.stderr
    body, code = res.stdout.rsplit(b'\n', 1)
    assert code == b'200' and body == SMALL_TEXT
    res = curl('--aws-sigv4', 'aws:amz:us-east-1:s3', '--user', f'{VAK}:wrong',
               '-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD', '-w', '\n%{http_code}', url)
    assert res.stdout.endswith(b'\n403') and b'SignatureDoesNotMatch' in res.stdout
    # without x-amz-content-sha256 (curl 7.88 does not add it): S3 refuses such requests too
    res = curl('--aws-sigv4', 'aws:amz:us-east-1:s3', '--user', f'{VAK}:{VSK}',
               '-w', '\n%{http_code}', url)
    assert res.stdout.endswith(b'\n403') and b'<Code>MissingSecurityHeader</Code>' in res.stdout


# ---- what reaches the origin ----------------------------------------------------------------

def test_s3_origin_is_resigned_without_viewer_credentials(sh, s3o):
    s3o.reset_log()
    r = send_signed(sh.port, '/s3o/a.txt?x=1&y=%2F')
    assert r.status == 200 and r.body == b'origin:/ebooks/s3o/a.txt', (r, r.body)
    q = s3o.last()
    assert q.target == '/ebooks/s3o/a.txt?x=1&y=%2F'
    assert q.sigv4_ok, q.sigv4_error  # Shield's own signature, checked by botocore
    assert q.header('authorization').startswith(f'AWS4-HMAC-SHA256 Credential={OAK}/')
    assert VAK not in q.raw_head.decode('latin-1')

    p = presigned(sh.port, '/s3o/b.txt?x=1')
    r = fetch(sh.port, p, host=f'127.0.0.1:{sh.port}')
    assert r.status == 200, (r, r.body)
    q = s3o.last()
    assert q.target == '/ebooks/s3o/b.txt?x=1', q.target
    assert 'X-Amz-' not in q.target and VAK not in q.raw_head.decode('latin-1')
    assert q.sigv4_ok, q.sigv4_error


def test_http_origin_gets_no_viewer_credentials(sh, plain):
    plain.reset_log()
    r = send_signed(sh.port, '/plain/c.txt?k=v')
    assert r.status == 200, (r, r.body)
    q = plain.last()
    assert q.target == '/plain/c.txt?k=v'
    assert not q.has('authorization') and not q.has('x-amz-date')
    assert not q.has('x-amz-content-sha256')
    p = presigned(sh.port, '/plain/d.txt?k=v&X-Amz-Security-Token=tok%2B1')
    r = fetch(sh.port, p, host=f'127.0.0.1:{sh.port}')
    assert r.status == 200, (r, r.body)
    q = plain.last()
    assert q.target == '/plain/d.txt?k=v', q.target
    assert not q.has('authorization')


def test_presigned_responses_are_cached_without_signature(sh, plain):
    """Two presigned URLs for one object differ only in signing parameters: one key."""
    plain.route('/plain/cached.bin', Reply(body=b'cached-bytes', headers=[
        ('Cache-Control', 'max-age=60')]))
    plain.reset_log()
    p1 = presigned(sh.port, '/plain/cached.bin', when=now() - datetime.timedelta(seconds=5))
    p2 = presigned(sh.port, '/plain/cached.bin')
    assert p1 != p2
    r1 = fetch(sh.port, p1, host=f'127.0.0.1:{sh.port}')
    r2 = fetch(sh.port, p2, host=f'127.0.0.1:{sh.port}')
    assert (r1.status, r2.status) == (200, 200)
    assert (xcache(r1), xcache(r2)) == ('Miss', 'Hit')
    assert plain.count('/plain/cached.bin') == 1
    # a cached object still needs a valid signature
    r = fetch(sh.port, p2[:-1] + ('0' if p2[-1] != '0' else '1'), host=f'127.0.0.1:{sh.port}')
    assert_s3_error(r, 'SignatureDoesNotMatch')
    r = get(sh.port, '/plain/cached.bin', host=f'127.0.0.1:{sh.port}')
    assert_s3_error(r, 'AccessDenied')


def test_header_signed_responses_are_shared_through_the_cache(sh, plain):
    """Verified mirror keys are Shield's own: the answer is the bucket's, for every key."""
    plain.route('/plain/hcached.bin', Reply(body=b'h-cached', headers=[
        ('Cache-Control', 'max-age=60')]))
    plain.reset_log()
    r1 = send_signed(sh.port, '/plain/hcached.bin')
    r2 = send_signed(sh.port, '/plain/hcached.bin', ak=VAK2, sk=VSK2)
    assert (r1.status, r2.status) == (200, 200)
    assert (xcache(r1), xcache(r2)) == ('Miss', 'Hit')
    assert r2.body == b'h-cached' and plain.count() == 1
    # and a hit still needs a valid signature
    assert_s3_error(send_signed(sh.port, '/plain/hcached.bin', sk='wrong'),
                    'SignatureDoesNotMatch')


# ---- refusals ------------------------------------------------------------------------------

def test_refusals_are_s3_errors_counted_and_never_reach_the_origin(sh, plain):
    plain.reset_log()
    before = edge_stats(sh)['auth_failed']
    r = get(sh.port, '/plain/x.txt', host=f'127.0.0.1:{sh.port}')
    msg = assert_s3_error(r, 'AccessDenied')
    assert msg == 'Access Denied'
    r = send_signed(sh.port, '/plain/x.txt', sk='wrong')
    assert_s3_error(r, 'SignatureDoesNotMatch')
    r = fetch(sh.port, '/plain/x.txt', method='HEAD', host=f'127.0.0.1:{sh.port}')
    assert r.status == 403 and r.body == b''
    assert edge_stats(sh)['auth_failed'] - before == 3
    assert plain.count() == 0
    # unsigned behaviors are not affected
    assert get(sh.port, '/open/x.txt').status == 200


@pytest.mark.parametrize('case,code', [
    ('wrong_secret', 'SignatureDoesNotMatch'),
    ('unknown_key', 'InvalidAccessKeyId'),
    ('skew_past', 'RequestTimeTooSkewed'),
    ('skew_future', 'RequestTimeTooSkewed'),
    ('scope_date', 'AuthorizationHeaderMalformed'),
    ('wrong_region', 'AuthorizationHeaderMalformed'),
    ('wrong_service', 'AuthorizationHeaderMalformed'),
    ('signed_header_missing', 'AccessDenied'),
    ('tampered_path', 'SignatureDoesNotMatch'),
    ('tampered_query', 'SignatureDoesNotMatch'),
    ('unsigned_range_changed', 'SignatureDoesNotMatch'),
    ('no_content_sha256', 'MissingSecurityHeader'),
    ('both_header_and_query', 'AccessDenied'),
    ('sigv2', 'AuthorizationHeaderMalformed'),
    ('malformed_credential', 'AuthorizationHeaderMalformed'),
])
def test_header_auth_refused(sh, plain, case, code):
    t = '/plain/r.txt'
    port = sh.port
    n0 = plain.count()
    if case == 'wrong_secret':
        r = send_signed(port, t, sk=VSK + 'x')
    elif case == 'unknown_key':
        r = send_signed(port, t, ak='AKIDNOBODY')
    elif case == 'skew_past':
        r = send_signed(port, t, when=now() - datetime.timedelta(minutes=16))
    elif case == 'skew_future':
        r = send_signed(port, t, when=now() + datetime.timedelta(minutes=16))
    elif case == 'scope_date':
        def f(hs):
            d = (now() - datetime.timedelta(days=1)).strftime('%Y%m%d')
            return [(k, re.sub(r'/\d{8}/', f'/{d}/', v) if k == 'Authorization' else v)
                    for k, v in hs]
        r = send_signed(port, t, send_headers=f)
    elif case == 'wrong_region':
        r = send_signed(port, t, region='eu-west-1')
    elif case == 'wrong_service':
        r = send_signed(port, t, service='execute-api')
    elif case == 'signed_header_missing':
        r = send_signed(port, t, headers={'X-Reader': 'r1'},
                        send_headers=lambda hs: [(k, v) for k, v in hs if k != 'X-Reader'])
    elif case == 'tampered_path':
        host, hs = header_signed(port, t)
        r = fetch(port, '/plain/R.txt', headers=hs, host=host)
    elif case == 'tampered_query':
        host, hs = header_signed(port, t + '?a=1')
        r = fetch(port, t + '?a=2', headers=hs, host=host)
    elif case == 'unsigned_range_changed':
        r = send_signed(port, t, headers={'Range': 'bytes=0-1'},
                        send_headers=lambda hs: [(k, 'bytes=0-2' if k == 'Range' else v)
                                                 for k, v in hs])
    elif case == 'no_content_sha256':
        r = send_signed(port, t, send_headers=lambda hs: [
            (k, v) for k, v in hs if k != 'X-Amz-Content-SHA256'])
    elif case == 'both_header_and_query':
        host, hs = header_signed(port, t)
        r = fetch(port, presigned(port, t), headers=hs, host=host)
    elif case == 'sigv2':
        r = get(port, t, headers={'Authorization': f'AWS {VAK}:frJIUN8DYpKDtOLCwo//yllqDzg=',
                                  'Date': 'Fri, 24 May 2013 00:00:00 GMT'})
    elif case == 'malformed_credential':
        r = send_signed(port, t, send_headers=lambda hs: [
            (k, v.replace('/aws4_request', '') if k == 'Authorization' else v) for k, v in hs])
    assert_s3_error(r, code)
    assert plain.count() == n0, 'a refused request reached the origin'


def test_header_auth_skew_inside_window(sh):
    for minutes in (-14, 14):
        r = send_signed(sh.port, '/plain/skew.txt', when=now() + datetime.timedelta(minutes=minutes))
        assert r.status == 200, (minutes, r, r.body)


def test_repeated_signed_header_values_joined(sh):
    """A signed header sent twice: botocore and AWS join the values with ','."""
    host, hs = header_signed(sh.port, '/plain/multi.txt', headers={'X-Tag': 'a,b'})
    hs = [(k, v) for k, v in hs if k != 'X-Tag'] + [('X-Tag', 'a'), ('X-Tag', 'b')]
    r = fetch(sh.port, '/plain/multi.txt', headers=hs, host=host)
    assert r.status == 200, (r, r.body)
    hs = [(k, v) for k, v in hs if k != 'X-Tag'] + [('X-Tag', 'b'), ('X-Tag', 'a')]
    assert_s3_error(fetch(sh.port, '/plain/multi.txt', headers=hs, host=host),
                    'SignatureDoesNotMatch')


@pytest.mark.parametrize('case,code', [
    ('expired', 'AccessDenied'),
    ('not_yet_valid', 'AccessDenied'),
    ('expires_0', 'AuthorizationQueryParametersError'),
    ('expires_604801', 'AuthorizationQueryParametersError'),
    ('duplicate_signature', 'AuthorizationQueryParametersError'),
    ('duplicate_date', 'AuthorizationQueryParametersError'),
    ('lowercase_param', 'AuthorizationQueryParametersError'),
    ('missing_param', 'AuthorizationQueryParametersError'),
    ('added_param', 'SignatureDoesNotMatch'),
    ('longer_expiry', 'SignatureDoesNotMatch'),
    ('scope_date', 'AuthorizationQueryParametersError'),
    ('wrong_region', 'AuthorizationQueryParametersError'),
    ('unknown_key', 'InvalidAccessKeyId'),
    ('other_host', 'SignatureDoesNotMatch'),
])
def test_presigned_refused(sh, plain, case, code):
    t = '/plain/p.txt'
    port = sh.port
    n0 = plain.count()
    host = f'127.0.0.1:{port}'
    if case == 'expired':
        p = presigned(port, t, expires=1, when=now() - datetime.timedelta(seconds=30))
    elif case == 'not_yet_valid':
        p = presigned(port, t, when=now() + datetime.timedelta(minutes=20))
    elif case == 'expires_0':
        p = presigned(port, t, expires=0)
    elif case == 'expires_604801':
        p = presigned(port, t, expires=604801)
    elif case == 'duplicate_signature':
        p = presigned(port, t)
        p += '&X-Amz-Signature=' + p.rsplit('=', 1)[1]
    elif case == 'duplicate_date':
        p = presigned(port, t)
        p += '&X-Amz-Date=' + re.search(r'X-Amz-Date=(\w+)', p).group(1)
    elif case == 'lowercase_param':
        p = presigned(port, t).replace('X-Amz-Expires', 'x-amz-expires')
    elif case == 'missing_param':
        p = re.sub(r'&X-Amz-Expires=\d+', '', presigned(port, t))
    elif case == 'added_param':
        p = presigned(port, t) + '&response-content-type=text%2Fhtml'
    elif case == 'longer_expiry':
        p = presigned(port, t, expires=60).replace('X-Amz-Expires=60', 'X-Amz-Expires=600')
    elif case == 'scope_date':
        d = (now() - datetime.timedelta(days=1)).strftime('%Y%m%d')
        p = re.sub(r'(X-Amz-Credential=\w+%2F)\d{8}', r'\g<1>' + d, presigned(port, t))
    elif case == 'wrong_region':
        p = presigned(port, t, region='eu-west-1')
    elif case == 'unknown_key':
        p = presigned(port, t, ak='AKIDNOBODY')
    elif case == 'other_host':
        p = presigned(port, t, host=f'mirror.example:{port}')
    r = fetch(port, p, host=host)
    assert_s3_error(r, code)
    assert plain.count() == n0, 'a refused request reached the origin'


def test_presigned_valid_window(sh):
    # issued 30 s ago for 60 s: still valid; secret from secret_file
    p = presigned(sh.port, '/plain/w.txt', expires=60, ak=VAK2, sk=VSK2,
                  when=now() - datetime.timedelta(seconds=30))
    assert fetch(sh.port, p, host=f'127.0.0.1:{sh.port}').status == 200
    p = presigned(sh.port, '/plain/w.txt', expires=604800)
    assert fetch(sh.port, p, host=f'127.0.0.1:{sh.port}').status == 200


def test_cors_preflight_needs_no_signature(sh, plain):
    n0 = plain.count()
    r = fetch(sh.port, '/cors/book.epub', method='OPTIONS',
              headers={'Origin': 'https://reader.example', 'Access-Control-Request-Method': 'GET'})
    assert r.status == 200, (r, r.body)
    assert r.header('Access-Control-Allow-Origin') == 'https://reader.example'
    # any other OPTIONS is an ordinary request: signed or refused
    r = fetch(sh.port, '/cors/book.epub', method='OPTIONS',
              headers={'Origin': 'https://reader.example'})
    assert_s3_error(r, 'AccessDenied')
    assert plain.count() == n0


# ---- canonicalisation: verified bytes == cache key bytes == origin bytes, or 400 -----------

ACCEPTED = [
    '/s3o/a/../b',          # dot segments are key bytes in S3: sent as they are
    '/s3o//a',              # so are empty segments
    '/s3o/%252e',           # a literal "%2e" in the key
    '/s3o/a/b',
    '/s3o/a%20b',
    '/s3o/a%2Bb',           # '+' spelled the one canonical way
    '/s3o/%E2%82%AC.epub',
    '/s3o/a~b_c-d.e',
]
REFUSED = [
    '/s3o/%2e%2e/b',        # S3 would decode to "../b": refused, not reinterpreted
    '/s3o/%2E',
    '/s3o/a%2Fb',           # the same key as /s3o/a/b: only one spelling is accepted
    '/s3o/a%2fb',
    '/s3o/a+b',             # a space to some decoders, a plus to S3
    '/s3o/%00',             # NUL
    '/s3o/a%0Ab',
    '/s3o/a%2bb',           # lower-case hex: same key as %2B
    '/s3o/%41',             # "A" encoded
    '/s3o/a!b',             # reserved bytes must be encoded
    '/s3o/a(1).epub',
    '/s3o/a;b',
    '/s3o/a=b',
    "/s3o/a'b",
    '/s3o/a@b',
    '/s3o/a:b',
    '/s3o/a,b',
    '/s3o/a$b',
    '/s3o/a*b',
]


@pytest.mark.parametrize('path', ACCEPTED)
def test_canonical_path_accepted_bytes_reach_cache_and_origin(sh, s3o, path):
    s3o.reset_log()
    p1 = presigned(sh.port, path, when=now() - datetime.timedelta(seconds=2))
    assert p1.startswith(path + '?'), 'botocore re-encoded the path'
    r = fetch(sh.port, p1, host=f'127.0.0.1:{sh.port}')
    assert r.status == 200, (path, r, r.body)
    q = s3o.last()
    assert q.target == f'/{BUCKET}{path}', (path, q.target)   # the signed bytes, as is
    assert q.sigv4_ok, q.sigv4_error
    # another signature over the same bytes is the same cache key
    p2 = presigned(sh.port, path)
    r2 = fetch(sh.port, p2, host=f'127.0.0.1:{sh.port}')
    assert r2.status == 200 and xcache(r2) == 'Hit', (path, r2)
    assert r2.body == r.body == f'origin:/{BUCKET}{path}'.encode()
    assert s3o.count() == 1
    # header auth over the same bytes verifies too
    assert send_signed(sh.port, path).status == 200


@pytest.mark.parametrize('path', REFUSED)
def test_canonical_path_refused(sh, s3o, path):
    s3o.reset_log()
    p = presigned(sh.port, path)
    assert p.startswith(path + '?'), 'botocore re-encoded the path'
    r = fetch(sh.port, p, host=f'127.0.0.1:{sh.port}')
    assert_s3_error(r, 'InvalidRequest', status=400)
    assert send_signed(sh.port, path).status == 400
    assert s3o.count() == 0


@pytest.mark.parametrize('query,ok', [
    ('q=a%20b', True),
    ('q=a%2Bb', True),
    ('b=2&a=1&a=0', True),  # order is free: the canonical query sorts
    ('flag&k=%2F', True),
    ('q=a+b', False),       # '+' in a query: space or plus depending on the reader
    ('q=%7e', False),       # botocore signs these raw, AWS decoded: one spelling only
    ('q=a%2fb', False),
    ('q=a/b', False),
    ('q=a=b', False),
    ('a=1&', False),
])
def test_canonical_query(sh, s3o, query, ok):
    s3o.reset_log()
    r = send_signed(sh.port, '/s3o/q.txt?' + query)
    if ok:
        assert r.status == 200, (query, r, r.body)
        q = s3o.last()
        assert q.target == f'/{BUCKET}/s3o/q.txt?{query}'   # sent as received
        assert q.sigv4_ok, q.sigv4_error                     # and re-signed for S3
    else:
        assert_s3_error(r, 'InvalidRequest', status=400)
        assert s3o.count() == 0


def test_fragment_in_target_refused(sh, s3o):
    """curl (the origin client) drops a '#fragment': a signed '#' would be reinterpreted."""
    s3o.reset_log()
    for target in ('/s3o/f.txt#x', '/s3o/f.txt?a=1#x'):
        host, hs = header_signed(sh.port, target.replace('#', '%23'))
        r = fetch(sh.port, target, headers=hs, host=host)
        # The core refuses a fragment for every behavior, before any module.
        assert r.status == 400, r
    assert s3o.count() == 0


def test_secrets_never_logged(sh):
    send_signed(sh.port, '/plain/log.txt', sk='wrong')
    err = sh.stderr()
    for s in (VSK, VSK2, OSK):
        assert s not in err and quote(s, safe='') not in err
