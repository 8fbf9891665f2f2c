"""Fixtures for Shield's integration tests: the real binary, a scripted origin, s3rver.

Everything binds to 127.0.0.1, waits on readiness (a port that accepts, a condition)
with a deadline, and stops by itself. Shield is started by the `shield` factory:

    def test_x(shield, origin):
        sh = shield(behaviors=[behavior('*', 'o')], origins=[http_origin('o', origin)])
        r = get(sh.port, '/a')

Every Shield started by the factory is stopped at teardown with SIGTERM and must exit
0 with sanitizer-clean stderr (the stderr tail is printed when it is not).
"""

import hashlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from origin import FakeIMDS, HeaderAccess, Reply, ScriptedOrigin, det_body, det_chunks, det_sha256  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[2]
SHIELD_BIN = os.environ.get('SHIELD_BIN') or str(ROOT / 'build' / 'shield')
SAN = os.environ.get('SHIELD_SAN', '0') == '1'
S3RVER_BIN = ROOT / 'tests' / 'node_modules' / '.bin' / 's3rver'
NODE = 'test-node'
BUCKET = 'ebooks'
S3_KEYS = {'AWS_ACCESS_KEY_ID': 'S3RVER', 'AWS_SECRET_ACCESS_KEY': 'S3RVER'}
SAN_BAD = ('ERROR: AddressSanitizer', 'runtime error:', 'LeakSanitizer')
SECURITY_HEADERS = {
    'hsts': 'max-age=63072000; includeSubDomains; preload',
    'frame_options': 'DENY',
    'content_type_options': 'nosniff',
    'referrer_policy': 'strict-origin-when-cross-origin',
    'xss_protection': '1; mode=block',
}
ALL_METHODS = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'POST', 'PATCH', 'DELETE']


# ---- ports and waiting ----------------------------------------------------

_given_ports = set()


def free_port():
    """A loopback TCP port nobody listens on (never handed out twice per run)."""
    for _ in range(100):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        p = s.getsockname()[1]
        s.close()
        if p not in _given_ports:
            _given_ports.add(p)
            return p
    raise RuntimeError('no free port')


def port_open(port, host='127.0.0.1'):
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_until(cond, timeout, interval=0.02, what='condition'):
    """Poll cond() until truthy or the deadline; returns its value or raises."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f'timed out after {timeout}s waiting for {what}')
        time.sleep(interval)


# ---- libconfig rendering -----------------------------------------------------

class Raw(str):
    """Text inserted verbatim into a rendered config."""


def _cfg_str(s):
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n') + '"'


def cfg_value(v, ind=''):
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        return str(v) + ('L' if not -2**31 <= v < 2**31 else '')
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return _cfg_str(v)
    if isinstance(v, dict):
        inner = ind + '  '
        body = ''.join(f'{inner}{k} = {cfg_value(x, inner)};\n' for k, x in v.items())
        return '{\n' + body + ind + '}'
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, dict) for x in v):
            inner = ind + '  '
            return '(\n' + ',\n'.join(inner + cfg_value(x, inner) for x in v) + '\n' + ind + ')'
        return '[' + ', '.join(cfg_value(x, ind) for x in v) + ']'
    raise TypeError(f'cannot render {v!r}')


def render_config(d):
    """libconfig text for a dict (dict = group, list of dicts = list, list = array)."""
    return ''.join(f'{k} = {cfg_value(v)};\n' for k, v in d.items())


def deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def http_origin(name, origin, **kw):
    """Config of a type "http" origin pointing at a ScriptedOrigin (or an endpoint)."""
    ep = origin if isinstance(origin, str) else origin.endpoint
    return {'name': name, 'type': 'http', 'endpoint': ep, 'connect_timeout': '2s',
            'read_timeout': '5s', **kw}


def s3_origin(name, endpoint, bucket=BUCKET, **kw):
    ep = endpoint if isinstance(endpoint, str) else endpoint.endpoint
    return {'name': name, 'type': 's3', 'endpoint': ep, 'bucket': bucket,
            'region': 'us-east-1', 'path_style': True, 'credentials': 'env',
            'connect_timeout': '2s', 'read_timeout': '5s', **kw}


def behavior(path, origin, **kw):
    return {'path': path, 'origin': origin, **kw}


def base_config(port, origins, behaviors, **over):
    cfg = {
        'node': {'name': NODE, 'workers': 2},
        'listen': [{'address': f'127.0.0.1:{port}'}],
        'origins': origins,
        'behaviors': behaviors,
        'response_headers': dict(SECURITY_HEADERS),
        'timeouts': {'drain': '10s'},
    }
    return deep_merge(cfg, over)


# ---- Shield process ---------------------------------------------------------

class Shield:
    """One Shield process on a generated config."""

    def __init__(self, workdir, config, env=None, port=None, name='shield'):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = port
        self.conf = self.dir / f'{name}.conf'
        self.conf.write_text(config if isinstance(config, str) else render_config(config))
        self.errpath = self.dir / f'{name}.stderr'
        self.extra_env = dict(env or {})
        self.proc = None
        self.returncode = None
        self.checked = False

    @staticmethod
    def base_env(extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
        env['ASAN_OPTIONS'] = 'detect_leaks=1:abort_on_error=0:exitcode=23'
        env['UBSAN_OPTIONS'] = 'print_stacktrace=1:halt_on_error=1'
        for k, v in (extra or {}).items():
            if k == 'ASAN_OPTIONS_EXTRA':
                env['ASAN_OPTIONS'] += ':' + v
            elif v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def start(self, timeout=15):
        if not os.access(SHIELD_BIN, os.X_OK):
            pytest.fail(f'Shield binary {SHIELD_BIN} does not exist or is not executable')
        self.err = open(self.errpath, 'wb')
        self.proc = subprocess.Popen([SHIELD_BIN, '-c', str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err,
                                     env=self.base_env(self.extra_env))
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                self.checked = True
                pytest.fail(f'Shield exited with {self.proc.returncode} before listening\n'
                            f'{self.describe()}')
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f'Shield did not listen on {self.port} within {timeout}s\n'
                            f'{self.describe()}')
            time.sleep(0.02)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            return self.errpath.read_bytes().decode('utf-8', 'replace')
        except OSError:
            return ''

    def describe(self, lines=60):
        tail = '\n'.join(self.stderr().splitlines()[-lines:])
        return (f'--- {self.name} config ({self.conf}) ---\n{self.conf.read_text()}'
                f'--- {self.name} stderr (last {lines} lines) ---\n{tail}')

    def rss_kb(self):
        with open(f'/proc/{self.pid}/status') as f:
            for ln in f:
                if ln.startswith('VmRSS:'):
                    return int(ln.split()[1])
        return 0

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def sanitizer_report(self):
        err = self.stderr()
        return [p for p in SAN_BAD if p in err]

    def stop(self, timeout=30, expect=0):
        """SIGTERM, wait, assert exit code `expect` and a sanitizer-clean stderr."""
        if self.checked:
            return self.returncode
        self.checked = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait(5)
            self.err.close()
            pytest.fail(f'Shield did not exit within {timeout}s of SIGTERM\n{self.describe()}')
        self.err.close()
        bad = self.sanitizer_report()
        assert rc == expect and not bad, (
            f'Shield exit code {rc} (want {expect}), sanitizer findings {bad}\n{self.describe(120)}')
        return rc

    def kill(self):
        self.checked = True
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc:
            self.returncode = self.proc.returncode
            self.err.close()

    def assert_alive(self):
        assert self.alive(), f'Shield died (rc={self.proc.poll()})\n{self.describe()}'


class ShieldFactory:
    def __init__(self, tmpdir):
        self.tmp = Path(tmpdir)
        self.all = []

    def __call__(self, origins, behaviors, env=None, start=True, port=None, **over):
        port = port or free_port()
        cfg = base_config(port, origins, behaviors, **over)
        sh = Shield(self.tmp / f'shield{len(self.all)}', cfg, env=env, port=port,
                    name=f'shield{len(self.all)}')
        self.all.append(sh)
        return sh.start() if start else sh

    def stop_all(self):
        errors = []
        for sh in self.all:
            if sh.proc is None:
                continue
            try:
                sh.stop()
            except BaseException as e:  # report every Shield, not just the first
                errors.append(str(e))
        if errors:
            pytest.fail('\n\n'.join(errors))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On any failure, attach the config and stderr tail of the test's Shields."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    shields = []
    for v in getattr(item, 'funcargs', {}).values():
        if isinstance(v, ShieldFactory):
            shields += v.all
        elif isinstance(v, Shield):
            shields.append(v)
    for sh in dict.fromkeys(shields):
        if sh.proc is not None:
            rep.sections.append((f'{sh.name} (pid {sh.pid}, port {sh.port})', sh.describe(40)))


@pytest.fixture
def shield(tmp_path):
    f = ShieldFactory(tmp_path)
    yield f
    f.stop_all()


@pytest.fixture(scope='module')
def module_shield(tmp_path_factory):
    f = ShieldFactory(tmp_path_factory.mktemp('shield'))
    yield f
    f.stop_all()


@pytest.fixture
def origin():
    o = ScriptedOrigin().start()
    yield o
    o.stop()


@pytest.fixture
def origin2():
    o = ScriptedOrigin().start()
    yield o
    o.stop()


@pytest.fixture(scope='module')
def module_origin():
    o = ScriptedOrigin().start()
    yield o
    o.stop()


# ---- s3rver ---------------------------------------------------------------------

class S3rver:
    def __init__(self, tmpdir, port=None):
        self.dir = Path(tmpdir)
        self.port = port or free_port()
        self.proc = None
        self.objects = {}  # key -> sha256

    @property
    def endpoint(self):
        return f'http://127.0.0.1:{self.port}'

    def start(self, timeout=30):
        if not S3RVER_BIN.exists():
            pytest.fail(f'{S3RVER_BIN} missing: run `cd tests && npm ci`')
        data = self.dir / 'data'
        data.mkdir(parents=True, exist_ok=True)
        self.log = open(self.dir / 's3rver.log', 'wb')
        self.proc = subprocess.Popen(
            [str(S3RVER_BIN), '-d', str(data), '-a', '127.0.0.1', '-p', str(self.port),
             '--configure-bucket', BUCKET], stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f's3rver exited: {(self.dir / "s3rver.log").read_text()[-2000:]}')
            try:
                if port_open(self.port):
                    client.head_bucket(Bucket=BUCKET)
                    return self
            except Exception:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail('s3rver did not become ready')
            time.sleep(0.05)

    def client(self):
        import botocore.session
        from botocore.config import Config
        s = botocore.session.get_session()
        return s.create_client(
            's3', region_name='us-east-1', endpoint_url=self.endpoint,
            aws_access_key_id='S3RVER', aws_secret_access_key='S3RVER',
            config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1},
                          connect_timeout=5, read_timeout=60))

    def put(self, key, body, content_type='application/octet-stream'):
        """Upload bytes, a file path, or ('det', size, seed); returns the SHA-256."""
        c = self.client()
        if isinstance(body, tuple):
            _, size, seed = body
            data = det_body(size, seed)
        elif isinstance(body, Path):
            data = body.read_bytes()
        else:
            data = body
        c.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType=content_type)
        sha = hashlib.sha256(data).hexdigest()
        self.objects[key] = sha
        return sha

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


SMALL_TEXT = b'Hello from the ebooks bucket.\n' * 10
MIB = 1 << 20
BIG_SIZE = (32 if SAN else 100) * MIB


@pytest.fixture(scope='session')
def s3(tmp_path_factory):
    """s3rver with bucket `ebooks`, seeded with small objects (big ones via s3_big)."""
    srv = S3rver(tmp_path_factory.mktemp('s3rver')).start()
    srv.put('hello.txt', SMALL_TEXT, 'text/plain')
    srv.put('index.html', b'<html><body>root object</body></html>\n', 'text/html')
    srv.put('dir/book.epub', ('det', 300_000, 7), 'application/epub+zip')
    srv.put('two.bin', ('det', 2 * MIB, 2))
    yield srv
    srv.stop()


@pytest.fixture(scope='session')
def s3_big(s3):
    """The large object (100 MiB, 32 MiB under the sanitizer build) in s3rver."""
    if 'big.bin' not in s3.objects:
        s3.put('big.bin', ('det', BIG_SIZE, 9))
    return 'big.bin', BIG_SIZE, s3.objects['big.bin']


# ---- raw HTTP client ---------------------------------------------------------------

class Resp(HeaderAccess):
    def __init__(self, version, status, reason, headers, raw_head):
        self.version, self.status, self.reason = version, status, reason
        self.headers = headers
        self.raw_head = raw_head
        self.body = b''
        self.complete = False  # the body ended as its framing said (not cut short)
        self.interim = []      # 1xx statuses received before this response

    def __repr__(self):
        return f'<Resp {self.status} {self.reason!r} body={len(self.body)}B complete={self.complete}>'


class ProtocolError(Exception):
    pass


def parse_head(head):
    """A Resp from a response head (status line and header lines, no final CRLFs)."""
    lines = head.split(b'\r\n')
    m = re.match(rb'(HTTP/\d\.\d) (\d{3})(?: (.*))?$', lines[0])
    if not m:
        raise ProtocolError(f'bad status line {lines[0]!r}')
    headers = []
    for ln in lines[1:]:
        k, sep, v = ln.partition(b':')
        if not sep:
            raise ProtocolError(f'bad header line {ln!r}')
        headers.append((k.decode('latin-1'), v.strip(b' \t').decode('latin-1')))
    return Resp(m.group(1).decode(), int(m.group(2)), (m.group(3) or b'').decode('latin-1'),
                headers, head)


def xcache(r):
    """'Hit' / 'Miss' / 'Error'... from the X-Cache header (whose node name is checked)."""
    assert r is not None, 'no response'
    v = r.header('X-Cache') or ''
    m = re.fullmatch(r'(\w+) from ' + re.escape(NODE), v)
    assert m, f'X-Cache {v!r} in {r.headers}'
    return m.group(1)


class Conn:
    """A raw client connection with a receive buffer shared across responses."""

    def __init__(self, port, timeout=10.0, rcvbuf=None, host='127.0.0.1'):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.timeout = timeout

    def send(self, data):
        if isinstance(data, str):
            data = data.encode('latin-1')
        self.sock.sendall(data)
        return self

    def _fill(self, deadline):
        """Read more bytes; returns False at EOF/reset. Raises TimeoutError at deadline."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError('no data before deadline')
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise TimeoutError('no data before deadline')
        try:
            d = self.sock.recv(1 << 20)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def read_response(self, method='GET', timeout=None, sink=None):
        """Next final response (1xx collected in .interim). None if closed before a byte.

        sink(bytes) receives the body instead of .body when given (for huge bodies).
        A body cut short by the peer yields complete=False, never an exception.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        interim = []
        while True:
            while b'\r\n\r\n' not in self.buf:
                if not self._fill(deadline):
                    if not self.buf and not interim:
                        return None
                    raise ProtocolError(f'closed inside a response head: {bytes(self.buf[:200])!r}')
            i = self.buf.index(b'\r\n\r\n')
            head = bytes(self.buf[:i])
            del self.buf[:i + 4]
            r = parse_head(head)
            if 100 <= r.status < 200 and r.status != 101:
                interim.append(r.status)
                continue
            r.interim = interim
            break
        out = bytearray() if sink is None else None

        def emit(b):
            if sink is None:
                out.extend(b)
            else:
                sink(bytes(b))

        te = (r.header('transfer-encoding') or '').lower()
        if method == 'HEAD' or r.status in (204, 304):
            r.complete = True
        elif 'chunked' in te:
            r.complete = self._read_chunked(emit, deadline)
        elif r.header('content-length') is not None:
            n = int(r.header('content-length'))
            while n > 0:
                if not self.buf and not self._fill(deadline):
                    break
                take = min(n, len(self.buf))
                emit(self.buf[:take])
                del self.buf[:take]
                n -= take
            r.complete = n == 0
        else:  # close-delimited
            while True:
                if self.buf:
                    emit(self.buf)
                    self.buf.clear()
                if not self._fill(deadline):
                    break
            r.complete = not self.reset
        if sink is None:
            r.body = bytes(out)
        return r

    def _read_chunked(self, emit, deadline):
        while True:
            while b'\r\n' not in self.buf:
                if not self._fill(deadline):
                    return False
            j = self.buf.index(b'\r\n')
            try:
                n = int(bytes(self.buf[:j]).split(b';')[0], 16)
            except ValueError:
                raise ProtocolError(f'bad chunk size line {bytes(self.buf[:j])!r}')
            del self.buf[:j + 2]
            if n == 0:
                while True:  # trailers up to the empty line
                    while b'\r\n' not in self.buf:
                        if not self._fill(deadline):
                            return False
                    j = self.buf.index(b'\r\n')
                    del self.buf[:j + 2]
                    if j == 0:
                        return True
            while n > 0:
                if not self.buf and not self._fill(deadline):
                    return False
                take = min(n, len(self.buf))
                emit(self.buf[:take])
                del self.buf[:take]
                n -= take
            while len(self.buf) < 2:
                if not self._fill(deadline):
                    return False
            if self.buf[:2] != b'\r\n':
                raise ProtocolError('chunk not followed by CRLF')
            del self.buf[:2]

    def wait_bytes(self, marker, timeout):
        """Read until marker is in the buffer (True) or the deadline/EOF (False)."""
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            try:
                if not self._fill(deadline):
                    return False
            except TimeoutError:
                return False
        return True

    def closed_within(self, timeout=3.0):
        """True if the server closes (FIN or RST) within timeout with no further bytes.

        False if it stays open; bytes that arrive meanwhile stay in the buffer (and make
        this return False: the server said something more)."""
        if self.buf:
            return False
        deadline = time.monotonic() + timeout
        try:
            more = self._fill(deadline)
        except TimeoutError:
            return False
        return not more

    def read_all(self, timeout=5.0):
        """Everything until the server closes (or the deadline)."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def assert_aborted(c, max_body=None):
    """Read one response on c and assert the viewer saw an abort, never a clean end:
    reset/closed before a response, a 502/504 if nothing had been sent yet, or a
    2xx whose body is cut short and then the connection closed. Returns the Resp/None."""
    try:
        r = c.read_response()
    except ProtocolError:  # reset inside the head
        r = None
    if r is not None and not 200 <= r.status < 300:
        assert r.status in (502, 504), r
    elif r is not None:
        assert not r.complete, f'body ended cleanly after {len(r.body)} bytes: {r.headers}'
        if max_body is not None:
            assert len(r.body) < max_body
    assert c.eof or c.closed_within(3), 'connection left open after an aborted body'
    return r


def request_bytes(method, path, headers=None, body=None, version='HTTP/1.1', host='x'):
    """A request with Host first; headers: list of pairs or dict."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    lines = [f'{method} {path} {version}']
    if host is not None:
        lines.append(f'Host: {host}')
    lines += [f'{k}: {v}' for k, v in hs]
    if body is not None and not any(k.lower() in ('content-length', 'transfer-encoding')
                                    for k, _ in hs):
        lines.append(f'Content-Length: {len(body)}')
    data = ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')
    if body is not None:
        data += body if isinstance(body, bytes) else body.encode()
    return data


def fetch(port, path, method='GET', headers=None, body=None, timeout=15.0, version='HTTP/1.1',
          host='x'):
    """One request on a fresh connection; returns the Resp (None if closed without one)."""
    with Conn(port, timeout=timeout) as c:
        c.send(request_bytes(method, path, headers, body, version, host))
        return c.read_response(method=method, timeout=timeout)


def get(port, path, **kw):
    return fetch(port, path, **kw)


def curl(*args, timeout=120):
    """Run curl; returns CompletedProcess (text stderr, bytes stdout)."""
    return subprocess.run(['curl', '-sS', '--max-time', str(timeout - 5), *args],
                          capture_output=True, timeout=timeout)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def assert_shield_headers(r, error=False):
    """The headers Shield adds to every response on plain HTTP."""
    want_cache = f'{"Error" if error else "Miss"} from {NODE}'
    assert r.header('X-Cache') == want_cache, r.headers
    assert r.header('Via') == f'1.1 {NODE} (shield)', r.headers
    assert r.header('X-Request-Id'), r.headers
    assert r.header('Server') == 'shield', r.headers
    assert re.match(r'[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$',
                    r.header('Date') or ''), r.headers
    assert r.header('X-Frame-Options') == 'DENY', r.headers
    assert r.header('X-Content-Type-Options') == 'nosniff', r.headers
    assert r.header('Referrer-Policy') == 'strict-origin-when-cross-origin', r.headers
    assert r.header('X-XSS-Protection') == '1; mode=block', r.headers
    assert not r.has('Strict-Transport-Security'), 'HSTS sent over plain HTTP'
