"""CloudFront signed URLs and signed cookies (modules/signed_url.c), behaviors with
signed = "cloudfront".

URLs are signed by the real signer, `aws cloudfront sign`, with an RSA key generated for
this module by `openssl genrsa -traditional`. What that CLI cannot do (Hash-Algorithm=SHA256,
ECDSA P-256 keys) is signed with `openssl dgst -sign` over the canned/custom policy bytes.
Requests go to Shield with Host = the authority of the signed URL, so the Resource Shield
rebuilds is the URL that was signed. Origin: scripted (type "http").
"""

import base64
import concurrent.futures
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import (Conn, Reply, behavior, curl, fetch, free_port, http_origin,
                      port_open, request_bytes, wait_until, xcache)

FAR = 2000000000      # 2033-05-18: "does not expire" for these tests
PAST = 1577836800     # 2020-01-01
XML = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{}</Code><Message>{}</Message></Error>'
MESSAGES = {
    'AccessDenied': 'Access denied',
    'MissingKey': 'Missing Key-Pair-Id query parameter or cookie value',
    'InvalidKey': 'Unknown Key',
    'MalformedSignature': 'Could not unencode Signature',
    'MalformedPolicy': 'Malformed Policy',
}


# ---- keys and signers ----------------------------------------------------------------------

def run(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, timeout=60, **kw)


@pytest.fixture(scope='module')
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp('cfkeys')
    k = {'rsa': d / 'k.pem', 'rsa_pub': d / 'pub.pem', 'ec': d / 'ec.pem', 'ec_pub': d / 'ecpub.pem'}
    run('openssl', 'genrsa', '-traditional', '-out', str(k['rsa']), '2048')
    run('openssl', 'rsa', '-in', str(k['rsa']), '-pubout', '-out', str(k['rsa_pub']))
    run('openssl', 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', str(k['ec']))
    run('openssl', 'ec', '-in', str(k['ec']), '-pubout', '-out', str(k['ec_pub']))
    return k


def aws_cli():
    """The aws executable and the Python it runs on (from its #! line)."""
    # Debian's /usr/bin/aws first: a pyenv shim in PATH costs a second per call
    aws = '/usr/bin/aws' if os.access('/usr/bin/aws', os.X_OK) else shutil.which('aws')
    assert aws, 'awscli is not installed'
    with open(aws, 'rb') as f:
        first = f.readline().decode('latin-1').strip()
    py = first[2:].split() if first.startswith('#!') and 'python' in first else None
    return aws, py


def aws_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
    env.update(AWS_ACCESS_KEY_ID='x', AWS_SECRET_ACCESS_KEY='y', AWS_DEFAULT_REGION='us-east-1',
               AWS_CONFIG_FILE='/dev/null', AWS_SHARED_CREDENTIALS_FILE='/dev/null')
    return env


def sign_args(key, url, key_id='KRSA', less=FAR, greater=None, ip=None):
    """argv of `aws cloudfront sign` (after `aws`)."""
    args = ['cloudfront', 'sign', '--url', url, '--key-pair-id', key_id,
            '--private-key', f'file://{key}', '--date-less-than', str(less)]
    if greater is not None:
        args += ['--date-greater-than', str(greater)]
    if ip is not None:
        args += ['--ip-address', ip]
    return args


def aws_sign(key, url, **kw):
    """`aws cloudfront sign` output: the signed URL."""
    aws, _ = aws_cli()
    out = run(aws, *sign_args(key, url, **kw), env=aws_env()).stdout.decode().strip()
    assert out.startswith(url.split('?')[0]), out
    return out


# Many `aws cloudfront sign` commands through awscli's own driver in one interpreter:
# the same command code, argument parsing and signer as the executable, without paying
# the CLI's start-up (about a second of CPU) once per URL.
_DRIVER = r"""
import contextlib, io, json, sys
from awscli.clidriver import create_clidriver
driver, out = create_clidriver(), {}
for name, argv in json.load(sys.stdin).items():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = driver.main(argv)
    out[name] = [rc, buf.getvalue()]
json.dump(out, sys.stdout)
"""


def aws_sign_many(key, jobs):
    """{name: signed URL} for {name: aws_sign keyword arguments}."""
    aws, py = aws_cli()
    argvs = {name: sign_args(key, **kw) for name, kw in jobs.items()}
    if py:
        p = run(*py, '-c', _DRIVER, input=json.dumps(argvs).encode(), env=aws_env())
        res = json.loads(p.stdout)
        for name, (rc, out) in res.items():
            assert rc == 0, (name, rc, out, p.stderr)
        urls = {name: out.strip() for name, (rc, out) in res.items()}
    else:  # not a Python script: one process per URL, in parallel
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = {name: ex.submit(aws_sign, key, **kw) for name, kw in jobs.items()}
            urls = {name: f.result() for name, f in futs.items()}
    for name, kw in jobs.items():
        assert urls[name].startswith(kw['url'].split('?')[0] + '?'), (name, urls[name])
    return urls


def cf_b64(b):
    return base64.b64encode(b).decode().translate(str.maketrans('+=/', '-_~'))


def cf_unb64(s):
    return base64.b64decode(s.translate(str.maketrans('-_~', '+=/')))


def canned_policy(url, expires):
    return ('{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}'
            % (url, expires)).encode()


def openssl_sign(keyfile, data, digest):
    """PKCS#1 v1.5 (RSA) or DER ECDSA (EC) signature of data, as CloudFront base64."""
    return cf_b64(run('openssl', 'dgst', f'-{digest}', '-sign', str(keyfile), input=data).stdout)


def query_of(signed_url):
    return signed_url.split('?', 1)[1]


def params(signed_url):
    """The signing parameters of a signed URL, in order, as a dict."""
    out = {}
    for kv in query_of(signed_url).split('&'):
        k, _, v = kv.partition('=')
        if k in ('Expires', 'Policy', 'Signature', 'Key-Pair-Id', 'Hash-Algorithm'):
            out[k] = v
    return out


def cookie_header(p):
    return '; '.join(f'CloudFront-{k}={v}' for k, v in p.items())


# ---- Shield ----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def sh(module_shield, module_origin, keys):
    aport = free_port()
    s = module_shield(
        [http_origin('o', module_origin)],
        [behavior('/books/*', 'o', signed='cloudfront', forward_query=True),
         behavior('/cookie/*', 'o', signed='cloudfront'),
         behavior('/open/*', 'o', forward_query=True),
         behavior('*', 'o')],
        signed_urls={'key_groups': [{'id': 'KRSA', 'public_key': str(keys['rsa_pub'])},
                                    {'id': 'KEC', 'public_key': str(keys['ec_pub'])}]},
        admin={'address': f'127.0.0.1:{aport}'})
    wait_until(lambda: port_open(aport), 10, what='the admin listener')
    s.admin_port = aport
    s.host = f'127.0.0.1:{s.port}'
    s.base = f'http://{s.host}'
    return s


@pytest.fixture(scope='module')
def signed(sh, keys):
    """Every URL the tests need from `aws cloudfront sign`."""
    b, k = sh.base, keys['rsa']
    jobs = {
        'canned': dict(url=b + '/books/canned.txt?x=1&y=2'),
        'expired': dict(url=b + '/books/canned.txt?x=1&y=2', less=PAST),
        # one object, signed twice: canned, and custom with an address range
        'shared': dict(url=b + '/books/shared.txt?v=1'),
        'ip_ok': dict(url=b + '/books/shared.txt?v=1', ip='127.0.0.0/24'),
        'ip_bad': dict(url=b + '/books/shared.txt?v=1', ip='192.0.2.0/24'),
        'future': dict(url=b + '/books/future.txt', greater=FAR - 86400),
        # a start date in the past only forces the custom policy the wildcard needs
        'wildcard': dict(url=b + '/books/w/*', greater=PAST),
        'cookie_custom': dict(url=b + '/cookie/*', greater=PAST),
        'cookie_canned': dict(url=b + '/cookie/canned.txt'),
    }
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        # one of them also through the aws executable itself: the same bytes
        # (RSA PKCS#1 v1.5 signatures are deterministic)
        direct = ex.submit(aws_sign, k, **jobs['canned'])
        urls = aws_sign_many(k, jobs)
        assert direct.result() == urls['canned']
    return urls


@pytest.fixture
def o(module_origin):
    module_origin.routes.clear()
    module_origin.default = None
    return module_origin


def target(sh, url):
    assert url.startswith(sh.base), url
    return url[len(sh.base):]


def req(sh, url_or_target, headers=None, method='GET', host=None):
    t = target(sh, url_or_target) if url_or_target.startswith('http') else url_or_target
    return fetch(sh.port, t, method=method, headers=headers, host=host or sh.host)


def stats(sh):
    r = fetch(sh.admin_port, '/stats')
    assert r.status == 200, r
    return json.loads(r.body)


def auth_failed(sh):
    return stats(sh)['edge']['auth_failed']


def assert_denied(r, code):
    assert r is not None and r.status == 403, r
    assert r.header('Content-Type') == 'text/xml', r.headers
    assert r.body.decode() == XML.format(code, MESSAGES[code]), r.body
    assert xcache(r) == 'Error'


def curl_get(url, *extra):
    p = curl('-g', '-i', *extra, url, timeout=30)
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b'\r\n\r\n')
    status = int(head.split(b' ', 2)[1])
    return status, head.decode('latin-1'), body


# ---- signed URLs from aws cloudfront sign ---------------------------------------------------

def test_canned_url_with_curl(sh, o, signed):
    n0 = o.count('/books/canned.txt')
    status, head, body = curl_get(signed['canned'])
    assert status == 200, head
    assert body == b'origin:/books/canned.txt'
    # the origin sees the viewer's own parameters, none of the signing ones
    last = o.last('/books/canned.txt')
    assert o.count('/books/canned.txt') == n0 + 1
    assert last.target == '/books/canned.txt?x=1&y=2', last.target


def test_differently_signed_urls_share_one_cache_entry(sh, o, signed):
    u1, u2 = signed['shared'], signed['ip_ok']
    assert 'Expires=' in u1 and 'Policy=' in u2
    r1 = req(sh, u1)
    r2 = req(sh, u2)
    assert r1.status == 200 and r2.status == 200
    assert r1.body == r2.body == b'origin:/books/shared.txt'
    assert (xcache(r1), xcache(r2)) == ('Miss', 'Hit')
    assert o.count('/books/shared.txt') == 1
    assert o.last('/books/shared.txt').target == '/books/shared.txt?v=1'


def test_cached_object_still_needs_a_valid_signature(sh, o, signed):
    assert req(sh, signed['canned']).status == 200  # cached now
    assert xcache(req(sh, signed['canned'])) == 'Hit'
    n = o.count()
    before = auth_failed(sh)
    assert_denied(req(sh, '/books/canned.txt?x=1&y=2'), 'MissingKey')
    assert_denied(req(sh, '/books/canned.txt'), 'MissingKey')
    assert_denied(req(sh, signed['expired']), 'AccessDenied')
    # signed with the RSA key, presented for the EC key
    assert_denied(req(sh, signed['canned'].replace('Key-Pair-Id=KRSA', 'Key-Pair-Id=KEC')),
                  'AccessDenied')
    assert o.count() == n, 'a rejected request reached the origin'
    wait_until(lambda: auth_failed(sh) == before + 4, 5, what='auth_failed == +4')


def test_custom_policy_ip_range(sh, o, signed):
    assert 'Policy=' in signed['ip_ok'] and 'Expires=' not in signed['ip_ok']
    pol = json.loads(cf_unb64(params(signed['ip_ok'])['Policy']))
    assert pol['Statement'][0]['Condition']['IpAddress'] == {'AWS:SourceIp': '127.0.0.0/24'}
    r = req(sh, signed['ip_ok'])
    assert r.status == 200 and r.body == b'origin:/books/shared.txt'
    assert_denied(req(sh, signed['ip_bad']), 'AccessDenied')


def test_custom_policy_start_date_in_future(sh, o, signed):
    assert_denied(req(sh, signed['future']), 'AccessDenied')


def test_wildcard_resource_for_two_paths(sh, o, signed):
    q = query_of(signed['wildcard'])
    for path in ('/books/w/a.epub', '/books/w/sub/b.pdf'):
        r = req(sh, f'{path}?{q}')
        assert r.status == 200 and r.body == f'origin:{path}'.encode(), r
    assert_denied(req(sh, f'/books/other.epub?{q}'), 'AccessDenied')


def test_expired_and_unknown_key(sh, o, signed):
    assert_denied(req(sh, signed['expired']), 'AccessDenied')
    # the key id is not covered by the signature: what `--key-pair-id KNOPE` would print
    unknown = signed['canned'].replace('&Key-Pair-Id=KRSA', '&Key-Pair-Id=KNOPE')
    assert_denied(req(sh, unknown), 'InvalidKey')
    assert_denied(req(sh, signed['canned'].replace('&Key-Pair-Id=KRSA', '&Key-Pair-Id=krsa')),
                  'InvalidKey')


def test_host_is_part_of_the_resource(sh, o, signed):
    # the same bytes on the wire, but the viewer asked another authority
    assert_denied(req(sh, signed['canned'], host=f'localhost:{sh.port}'), 'AccessDenied')


def test_request_forms(sh, o, signed):
    # absolute-form: the authority in the target is the host that was signed
    t = target(sh, signed['canned'])
    r = fetch(sh.port, signed['canned'], host='elsewhere.example')
    assert r.status == 200, r
    assert_denied(fetch(sh.port, f'http://localhost:{sh.port}{t}', host=sh.host), 'AccessDenied')
    # HTTP/1.0 without Host: no host to rebuild the URL with, so nothing matches
    assert_denied(fetch(sh.port, t, version='HTTP/1.0', host=None), 'AccessDenied')
    assert_denied(fetch(sh.port, '/books/canned.txt', version='HTTP/1.0', host=None),
                  'MissingKey')


def test_tampered_urls(sh, o, signed):
    url = signed['canned']
    p = params(url)
    sig, exp = p['Signature'], p['Expires']
    # one base64 letter changed, still valid base64 (not the last, whose low bits are padding)
    flipped = sig[:10] + ('A' if sig[10] != 'A' else 'B') + sig[11:]
    cases = [
        (url.replace(sig, flipped), 'AccessDenied'),
        (url.replace(f'Expires={exp}', f'Expires={int(exp) + 1}'), 'AccessDenied'),
        (url.replace(f'Expires={exp}', 'Expires=soon'), 'AccessDenied'),
        (url.replace('&Key-Pair-Id=KRSA', ''), 'MissingKey'),
        (url + '&z=1', 'AccessDenied'),                      # added after signing
        (url.replace('?x=1&y=2&', '?x=1&y=2&z=3&'), 'AccessDenied'),  # inserted before them
        (url.replace('?x=1&y=2&', '?x=1&y=3&'), 'AccessDenied'),      # own parameter changed
        (url + '&Signature=' + sig, 'AccessDenied'),         # duplicated
        (url.replace(f'Expires={exp}&', f'Expires={exp}&Expires={exp}&'), 'AccessDenied'),
        (url.replace(sig, sig[:-4] + 'a.b_'), 'MalformedSignature'),
        (url.replace(sig, sig.translate(str.maketrans('-_~', '+=/'))), 'MalformedSignature'),
        (url.replace(f'Signature={sig}', 'Signature='), 'MalformedSignature'),
        (url.replace('&Key-Pair-Id=KRSA', '&Key-Pair-Id=KRSA&Hash-Algorithm=SHA256'),
         'AccessDenied'),
        (url.replace(f'Expires={exp}', 'Policy=!!!!'), 'MalformedPolicy'),
        (url.replace(f'Expires={exp}', 'Policy=' + cf_b64(b'{"Statement":[]}')), 'MalformedPolicy'),
    ]
    before = auth_failed(sh)
    for u, code in cases:
        r = req(sh, u)
        assert r.status == 403, (u, r)
        assert r.body.decode() == XML.format(code, MESSAGES[code]), (u, r.body)
    wait_until(lambda: auth_failed(sh) == before + len(cases), 5,
               what=f'auth_failed == +{len(cases)}')


def test_tampered_policy(sh, o, signed):
    url = signed['ip_ok']
    enc = params(url)['Policy']
    pol = json.loads(cf_unb64(enc))
    # widen the range: still a valid policy, no longer the one that was signed
    pol['Statement'][0]['Condition']['IpAddress']['AWS:SourceIp'] = '0.0.0.0/0'
    forged = cf_b64(json.dumps(pol, separators=(',', ':')).encode())
    assert_denied(req(sh, url.replace(enc, forged)), 'AccessDenied')
    # not JSON at all, and valid JSON of the wrong shape
    assert_denied(req(sh, url.replace(enc, cf_b64(b'not json'))), 'MalformedPolicy')
    bad = cf_b64(b'{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1}},"X":1}]}')
    assert_denied(req(sh, url.replace(enc, bad)), 'MalformedPolicy')
    assert_denied(req(sh, url.replace(enc, enc[:-1] + '.')), 'MalformedPolicy')


# ---- cookies ---------------------------------------------------------------------------------

def test_cookies_custom_policy(sh, o, signed):
    p = params(signed['cookie_custom'])
    assert set(p) == {'Policy', 'Signature', 'Key-Pair-Id'}
    status, head, body = curl_get(sh.base + '/cookie/a.txt', '-b', cookie_header(p))
    assert status == 200 and body == b'origin:/cookie/a.txt', head
    # the behavior does not forward cookies: the origin never sees them
    assert o.last('/cookie/a.txt').header('cookie') is None
    # the same cookies spread over two Cookie headers, among other cookies
    items = [f'CloudFront-{k}={v}' for k, v in p.items()]
    r = req(sh, '/cookie/b.txt', headers=[('Cookie', 'theme=dark; ' + items[0]),
                                          ('Cookie', '; '.join(items[1:]))])
    assert r.status == 200 and r.body == b'origin:/cookie/b.txt'
    assert_denied(req(sh, '/cookie/c.txt'), 'MissingKey')
    assert_denied(req(sh, '/cookie/a.txt', headers={'Cookie': cookie_header(p) + '; '
                                                    + items[1]}), 'AccessDenied')
    forged = dict(p, Signature=p['Signature'][:10] + ('A' if p['Signature'][10] != 'A' else 'B')
                  + p['Signature'][11:])
    assert_denied(req(sh, '/cookie/a.txt', headers={'Cookie': cookie_header(forged)}),
                  'AccessDenied')
    nokey = {k: v for k, v in p.items() if k != 'Key-Pair-Id'}
    assert_denied(req(sh, '/cookie/a.txt', headers={'Cookie': cookie_header(nokey)}),
                  'MissingKey')


def test_cookies_canned_policy(sh, o, signed):
    p = params(signed['cookie_canned'])
    assert set(p) == {'Expires', 'Signature', 'Key-Pair-Id'}
    r = req(sh, '/cookie/canned.txt', headers={'Cookie': cookie_header(p)})
    assert r.status == 200 and r.body == b'origin:/cookie/canned.txt'
    # a canned cookie is for its exact URL, query included
    assert_denied(req(sh, '/cookie/canned.txt?v=2', headers={'Cookie': cookie_header(p)}),
                  'AccessDenied')
    assert_denied(req(sh, '/cookie/other.txt', headers={'Cookie': cookie_header(p)}),
                  'AccessDenied')


def test_signed_url_takes_precedence_over_cookies(sh, o, signed):
    bad = 'CloudFront-Policy=!!!!; CloudFront-Signature=x; CloudFront-Key-Pair-Id=KNOPE'
    r = req(sh, signed['canned'], headers={'Cookie': bad})
    assert r.status == 200
    # and good cookies do not rescue a bad URL
    good = cookie_header(params(signed['cookie_custom']))
    assert req(sh, '/cookie/p.txt', headers={'Cookie': good}).status == 200
    assert_denied(req(sh, '/cookie/p.txt?Expires=1&Signature=QQ__&Key-Pair-Id=KRSA',
                      headers={'Cookie': good}), 'AccessDenied')


# ---- what aws cloudfront sign cannot produce: SHA-256 and ECDSA -------------------------------

def test_rsa_sha256(sh, o, keys):
    url = sh.base + '/books/sha256.txt?v=1'
    pol = canned_policy(url, FAR)
    s256 = openssl_sign(keys['rsa'], pol, 'sha256')
    s1 = openssl_sign(keys['rsa'], pol, 'sha1')
    base = f'{url}&Expires={FAR}&Signature='
    r = req(sh, f'{base}{s256}&Key-Pair-Id=KRSA&Hash-Algorithm=SHA256')
    assert r.status == 200 and r.body == b'origin:/books/sha256.txt'
    assert req(sh, f'{base}{s1}&Key-Pair-Id=KRSA').status == 200
    assert_denied(req(sh, f'{base}{s256}&Key-Pair-Id=KRSA'), 'AccessDenied')
    assert_denied(req(sh, f'{base}{s1}&Key-Pair-Id=KRSA&Hash-Algorithm=SHA256'), 'AccessDenied')
    assert_denied(req(sh, f'{base}{s256}&Key-Pair-Id=KRSA&Hash-Algorithm=MD5'), 'AccessDenied')
    # cookies carry the algorithm in CloudFront-Hash-Algorithm
    curl_url = sh.base + '/cookie/sha256.txt'
    cpol = canned_policy(curl_url, FAR)
    c = {'Expires': str(FAR), 'Signature': openssl_sign(keys['rsa'], cpol, 'sha256'),
         'Key-Pair-Id': 'KRSA', 'Hash-Algorithm': 'SHA256'}
    status, head, _ = curl_get(curl_url, '-b', cookie_header(c))
    assert status == 200, head
    del c['Hash-Algorithm']
    assert_denied(req(sh, '/cookie/sha256.txt', headers={'Cookie': cookie_header(c)}),
                  'AccessDenied')


def test_ecdsa_p256(sh, o, keys):
    url = sh.base + '/books/ec.txt'
    pol = canned_policy(url, FAR)
    for digest, extra in (('sha1', ''), ('sha256', '&Hash-Algorithm=SHA256')):
        sig = openssl_sign(keys['ec'], pol, digest)
        r = req(sh, f'{url}?Expires={FAR}&Signature={sig}&Key-Pair-Id=KEC{extra}')
        assert r.status == 200 and r.body == b'origin:/books/ec.txt', (digest, r)
        # the EC signature is not accepted for the RSA key id
        assert_denied(req(sh, f'{url}?Expires={FAR}&Signature={sig}&Key-Pair-Id=KRSA{extra}'),
                      'AccessDenied')
    # a custom policy (pretty-printed, as in AWS's documentation) signed with the EC key
    custom = json.dumps({'Statement': [{'Resource': sh.base + '/books/ec/*',
                                        'Condition': {'DateLessThan': {'AWS:EpochTime': FAR},
                                                      'IpAddress': {'AWS:SourceIp':
                                                                    '127.0.0.1'}}}]},
                        indent=4).encode()
    q = f'Policy={cf_b64(custom)}&Signature={openssl_sign(keys["ec"], custom, "sha1")}' \
        '&Key-Pair-Id=KEC'
    r = req(sh, f'/books/ec/x.txt?{q}')
    assert r.status == 200 and r.body == b'origin:/books/ec/x.txt'


# ---- range requests, each checked on its own ----------------------------------------------

def test_each_range_request_is_checked(sh, o, keys):
    o.route('/books/range.bin', Reply(size=10000, seed=5, headers=[('Cache-Control',
                                                                    'max-age=3600')]))
    whole = b''.join(bytes(c) for c in Reply(size=10000, seed=5).chunks())
    # signed here (not by the slower CLI) so that it expires a moment after the ranges
    exp = int(time.time()) + 3
    url = sh.base + '/books/range.bin'
    sig = openssl_sign(keys['rsa'], canned_policy(url, exp), 'sha1')
    t = target(sh, f'{url}?Expires={exp}&Signature={sig}&Key-Pair-Id=KRSA')
    with Conn(sh.port) as c:
        for rng, want in (('bytes=0-9', whole[:10]), ('bytes=-10', whole[-10:]),
                          ('bytes=100-199', whole[100:200])):
            c.send(request_bytes('GET', t, {'Range': rng}, host=sh.host))
            r = c.read_response()
            assert r.status == 206 and r.body == want, (rng, r)
    # an unsigned range request for the object, now cached, is refused
    assert_denied(req(sh, '/books/range.bin', headers={'Range': 'bytes=0-9'}), 'MissingKey')
    # the same URL once its Expires has passed: every request is checked against the clock
    time.sleep(max(0.0, exp - time.time() + 0.05))
    with Conn(sh.port) as c:
        c.send(request_bytes('GET', t, {'Range': 'bytes=0-9'}, host=sh.host))
        assert_denied(c.read_response(), 'AccessDenied')
    assert o.count('/books/range.bin') == 1


# ---- behaviors without signed = "cloudfront" ------------------------------------------------

def test_unsigned_behavior_is_unaffected(sh, o):
    before = auth_failed(sh)
    r = req(sh, '/open/a.txt')
    assert r.status == 200 and r.body == b'origin:/open/a.txt'
    r = req(sh, '/open/b.txt?Expires=1&Signature=bogus&Key-Pair-Id=KNOPE',
            headers={'Cookie': 'CloudFront-Policy=!!!!'})
    assert r.status == 200 and r.body == b'origin:/open/b.txt'
    assert req(sh, '/elsewhere').status == 200
    assert auth_failed(sh) == before
