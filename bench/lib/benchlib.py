"""Process control, /proc measurements and load clients for bench/run.

Standard library only. Everything binds to loopback, every loop is bounded
in count and time.
"""
import http.client
import json
import os
import re
import resource
import select
import signal
import socket
import ssl
import statistics
import subprocess
import threading
import time

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH)
CLK_TCK = os.sysconf('SC_CLK_TCK')
PAGE = os.sysconf('SC_PAGE_SIZE')


class BenchError(Exception):
    pass


# ---- small helpers -----------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def raise_nofile(n=65536):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def render(template, dest, **values):
    with open(os.path.join(BENCH, 'conf', template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace('@' + k + '@', str(v))
    left = re.findall(r'@[A-Z_]+@', text)
    if left:
        raise BenchError(f'{template}: unfilled placeholders {sorted(set(left))}')
    if dest:
        with open(dest, 'w') as f:
            f.write(text)
    return text


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


class Cpus:
    """Which CPUs the servers, the load generator and the origin run on."""

    def __init__(self):
        cpus = sorted(os.sched_getaffinity(0))
        self.all = cpus
        if len(cpus) >= 2:
            self.server = [cpus[0]]
            self.client = [cpus[1]]
            self.origin = [cpus[2]] if len(cpus) >= 3 else [cpus[1]]
            # The harness's own Python clients and samplers stay off the server CPU.
            self.harness = cpus[1:]
            self.pinned = True
        else:
            self.server = self.client = self.origin = self.harness = cpus
            self.pinned = False

    def prefix(self, which):
        if not self.pinned:
            return []
        return ['taskset', '-c', ','.join(str(c) for c in getattr(self, which))]

    def describe(self):
        if not self.pinned:
            return f'{len(self.all)} CPU: no pinning'
        return (f'{len(self.all)} CPUs: server on {self.server}, load generator on '
                f'{self.client}, origin on {self.origin}')


# ---- /proc -------------------------------------------------------------------

def _stat_fields(pid):
    with open(f'/proc/{pid}/stat') as f:
        s = f.read()
    # comm may contain spaces and parentheses: split after the last ')'.
    return s[s.rindex(')') + 2:].split()


def tree_pids(root):
    """root and all its descendants (nginx master + workers + cache manager)."""
    children = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            ppid = int(_stat_fields(d)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids):
    """utime + stime of each process (all its threads, live and exited)."""
    total = 0
    for p in pids:
        try:
            f = _stat_fields(p)
            total += int(f[11]) + int(f[12])
        except (OSError, ValueError, IndexError):
            pass
    return total / CLK_TCK


def mem_kib(pids, key):
    total = 0
    for p in pids:
        try:
            with open(f'/proc/{p}/status') as f:
                for line in f:
                    if line.startswith(key + ':'):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            pass
    return total


class _Sampler:
    """A background thread sampling until the `with` block ends, then once more."""

    def __init__(self, interval):
        self.interval = interval
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _last(self):
        pass

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()
        self._last()


class RssSampler(_Sampler):
    """Samples the summed VmRSS of a process tree every interval seconds."""

    def __init__(self, root, interval=0.1):
        super().__init__(interval)
        self.root = root
        self.peak_kib = 0
        self.samples = 0

    def _run(self):
        pids = tree_pids(self.root)
        n = 0
        while not self._stop.is_set():
            if n % 10 == 0:
                pids = tree_pids(self.root)
            self.peak_kib = max(self.peak_kib, mem_kib(pids, 'VmRSS'))
            self.samples += 1
            n += 1
            self._stop.wait(self.interval)

    def _last(self):
        self.peak_kib = max(self.peak_kib, mem_kib(tree_pids(self.root), 'VmRSS'))


class DirSampler(_Sampler):
    """Peak allocated bytes of a cache directory, every interval seconds."""

    def __init__(self, path, interval=0.5):
        super().__init__(interval)
        self.path, self.peak = path, 0

    def _run(self):
        while True:
            self.peak = max(self.peak, du(self.path))
            if self._stop.wait(self.interval):
                return

    def _last(self):
        self.peak = max(self.peak, du(self.path))


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass
    return total


class OriginLog:
    """Lines appended to one of the origin's per-proxy access logs."""

    def __init__(self, path):
        self.path = path

    def mark(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def since(self, offset):
        reqs = nbytes = 0
        uris = []
        try:
            with open(self.path, 'rb') as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            data = b''
        for line in data.decode('latin-1').splitlines():
            parts = line.split(' ', 2)
            if len(parts) < 3:
                continue
            reqs += 1
            nbytes += int(parts[1])
            uris.append((int(parts[0]), parts[2]))
        return reqs, nbytes, uris


# ---- servers -----------------------------------------------------------------

class Server:
    """One server process (Shield, nginx proxy or the origin)."""

    def __init__(self, name, argv, port, workdir, tls=False, log=None, env=None):
        self.name, self.argv, self.port, self.tls = name, argv, port, tls
        self.workdir = workdir
        self.log = log or os.path.join(workdir, f'{name}.stderr')
        self.env = env
        self.proc = None

    def start(self, timeout=30):
        with open(self.log, 'ab') as logf:
            self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=logf,
                                         stdin=subprocess.DEVNULL, env=self.env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f'{self.name} exited with {self.proc.returncode}: '
                                 f'{self.tail()}')
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.01)
        else:
            raise BenchError(f'{self.name} not listening on {self.port} after {timeout} s')
        # A real request, not just an open port.
        while time.monotonic() < deadline:
            try:
                st, _, _ = http_get(self.port, '/ready.txt', tls=self.tls, timeout=2)
                if st == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise BenchError(f'{self.name}: /ready.txt did not answer 200: {self.tail()}')

    @property
    def pid(self):
        return self.proc.pid

    def tail(self, n=1500):
        out = ''
        for p in (self.log,) + tuple(getattr(self, 'extra_logs', ())):
            try:
                with open(p, 'rb') as f:
                    f.seek(0, 2)
                    f.seek(max(0, f.tell() - n))
                    out += f.read().decode('utf-8', 'replace')
            except OSError:
                pass
        return out.strip()

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            # Our own process group (start_new_session): the server and its children.
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass


# ---- HTTP --------------------------------------------------------------------

def client_ssl_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# Shield keys its cache on Host (nginx's default key ignores it): every client
# of the harness sends the same one, so that warming fills the key measured.
HOST = 'bench'


def http_get(port, path, tls=False, timeout=10, headers=None):
    if tls:
        c = http.client.HTTPSConnection('127.0.0.1', port, timeout=timeout,
                                        context=client_ssl_context())
    else:
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        c.request('GET', path, headers=dict({'Host': HOST}, **(headers or {})))
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def is_hit(kind, headers):
    if kind == 'shield':
        return headers.get('x-cache', '').lower().startswith('hit')
    return headers.get('x-cache-status', '') == 'HIT'


def warm(kind, port, path, tls=False, tries=100, settled=3):
    """Requests path until the proxy has served it from its cache settled
    times in a row, 100 ms apart, so that a fill still completing (the disk
    tier's write) is not part of the measured run."""
    streak = 0
    for _ in range(tries):
        st, h, body = http_get(port, path, tls=tls)
        if st != 200:
            raise BenchError(f'{kind} {path}: status {st}')
        streak = streak + 1 if is_hit(kind, h) else 0
        if streak >= settled:
            return len(body)
        time.sleep(0.1)
    raise BenchError(f'{kind} {path}: not {settled} cache hits in a row after {tries} requests')


class RawConn:
    """A minimal keep-alive HTTP/1.1 client over one socket, for exact byte and
    first-byte timing (http.client buffers and hides both)."""

    def __init__(self, port, timeout=60, source=None):
        self.sock = socket.socket()
        if source:
            self.sock.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(('127.0.0.1', port))
        self.buf = bytearray(1 << 20)
        self.view = memoryview(self.buf)

    def get(self, path):
        """Returns (status, body_bytes, ttfb_s, total_s, headers_text)."""
        t0 = time.monotonic()
        self.sock.sendall(f'GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n'.encode())
        head = b''
        ttfb = None
        while b'\r\n\r\n' not in head:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BenchError(f'connection closed before the response head ({path})')
            if ttfb is None:
                ttfb = time.monotonic() - t0
            head += chunk
        h, rest = head.split(b'\r\n\r\n', 1)
        text = h.decode('latin-1')
        status = int(text.split(' ', 2)[1])
        m = re.search(r'(?im)^content-length:\s*(\d+)', text)
        if not m:
            raise BenchError(f'{path}: no Content-Length in the response')
        need = int(m.group(1)) - len(rest)
        got = len(rest)
        while need > 0:
            n = self.sock.recv_into(self.view, min(need, len(self.buf)))
            if n == 0:
                raise BenchError(f'{path}: connection closed in the body')
            need -= n
            got += n
        return status, got, ttfb, time.monotonic() - t0, text

    def close(self):
        self.sock.close()


# ---- load generators -----------------------------------------------------------

def run_wrk(cpus, url, conns, duration, timeout_s=10, extra=()):
    argv = cpus.prefix('client') + [
        'wrk', '-t1', f'-c{conns}', f'-d{duration}s', '--timeout', f'{timeout_s}s', '-H', f'Host: {HOST}',
        '-s', os.path.join(BENCH, 'lua', 'report.lua')] + list(extra) + [url]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    for line in p.stdout.splitlines():
        if line.startswith('BENCHJSON '):
            return json.loads(line[len('BENCHJSON '):])
    raise BenchError(f'wrk gave no summary (exit {p.returncode}): {p.stdout[-500:]} {p.stderr[-500:]}')


def run_s_time(cpus, port, path, duration, procs=4):
    """Full TLS handshakes: openssl s_time -new (a new session every connection,
    never resumed), procs processes in parallel so the server is kept busy."""
    argv = cpus.prefix('client') + [
        'openssl', 's_time', '-connect', f'127.0.0.1:{port}', '-new',
        '-time', str(duration), '-www', path]
    ps = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True) for _ in range(procs)]
    total = 0
    outs = []
    for p in ps:
        out, _ = p.communicate(timeout=duration + 60)
        outs.append(out)
        m = re.search(r'(\d+) connections in [\d.]+s;', out)
        if not m:
            raise BenchError(f's_time gave no count: {out[-400:]}')
        total += int(m.group(1))
    return total, outs


def tls_session_probe(port):
    """Checks that a second connection without a session to resume is a full
    handshake (what s_time -new does), and reports what is negotiated."""
    ctx = client_ssl_context()
    with socket.create_connection(('127.0.0.1', port), timeout=5) as s:
        with ctx.wrap_socket(s) as t:
            return {'version': t.version(), 'cipher': t.cipher()[0],
                    'reused': t.session_reused}


def replay_trace(port, paths, conns=8, timeout=120):
    """Each of conns keep-alive connections takes the next path of the shared
    trace until it is exhausted. Returns totals and per-request statuses."""
    lock = threading.Lock()
    state = {'i': 0, 'bytes': 0, 'ok': 0, 'bad': 0, 'errors': [], 'lat': []}

    def worker():
        c = None
        try:
            c = RawConn(port, timeout=timeout)
            while True:
                with lock:
                    i = state['i']
                    if i >= len(paths):
                        return
                    state['i'] = i + 1
                st, n, _, total, _ = c.get(paths[i])
                with lock:
                    state['bytes'] += n
                    state['lat'].append(total)
                    if st == 200:
                        state['ok'] += 1
                    else:
                        state['bad'] += 1
        except (OSError, BenchError) as e:
            with lock:
                state['errors'].append(str(e))
        finally:
            if c:
                c.close()

    ts = [threading.Thread(target=worker) for _ in range(conns)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    state['elapsed'] = time.monotonic() - t0
    return state


def collapse_client(port, path, n=200, timeout=60):
    """n connections, all requests sent back to back, then every response read
    concurrently. Returns per connection the time to the first response byte
    and to the last one, both from the moment its own request was sent."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(('127.0.0.1', port), timeout=10)
        s.setblocking(False)
        socks.append(s)
    req = f'GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n'.encode()
    sent_at = {}
    for s in socks:
        s.send(req)
        sent_at[s.fileno()] = time.monotonic()
    st = {s.fileno(): {'sock': s, 'head': b'', 'need': None, 'got': 0, 'ttfb': None,
                       'total': None, 'status': None} for s in socks}
    poller = select.epoll()
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
    buf = bytearray(1 << 18)
    view = memoryview(buf)
    open_n = n
    deadline = time.monotonic() + timeout
    while open_n and time.monotonic() < deadline:
        for fd, _ in poller.poll(1.0):
            c = st[fd]
            now = time.monotonic()
            try:
                k = c['sock'].recv_into(view)
            except BlockingIOError:
                continue
            except OSError:
                k = 0
            if c['ttfb'] is None and k:
                c['ttfb'] = now - sent_at[fd]
            done = k == 0
            if k and c['need'] is None:
                c['head'] += bytes(view[:k])
                if b'\r\n\r\n' in c['head']:
                    h, rest = c['head'].split(b'\r\n\r\n', 1)
                    text = h.decode('latin-1')
                    c['status'] = int(text.split(' ', 2)[1])
                    m = re.search(r'(?im)^content-length:\s*(\d+)', text)
                    c['need'] = int(m.group(1)) if m else -1
                    c['got'] = len(rest)
                    c['hdr'] = text
            elif k:
                c['got'] += k
            if c['need'] is not None and c['need'] >= 0 and c['got'] >= c['need']:
                done = True
            if done:
                c['total'] = now - sent_at[fd]
                poller.unregister(fd)
                c['sock'].close()
                open_n -= 1
    for c in st.values():
        if c['total'] is None:
            c['sock'].close()
    poller.close()
    return list(st.values())


def idle_client(port, path, n, sources, batch=500, timeout=60):
    """Opens n keep-alive connections (source addresses spread over sources),
    sends one request on each and reads the whole answer. Returns the open
    sockets (the caller holds then closes them) and the count answered 200."""
    socks, ok = [], 0
    req = f'GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n'.encode()
    deadline = time.monotonic() + timeout
    i = 0
    while i < n:
        if time.monotonic() > deadline:
            raise BenchError(f'idle: only {len(socks)} connections after {timeout} s')
        group = []
        for _ in range(min(batch, n - i)):
            s = socket.socket()
            s.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
            s.bind((sources[i % len(sources)], 0))
            s.settimeout(10)
            s.connect(('127.0.0.1', port))
            s.sendall(req)
            group.append(s)
            i += 1
        for s in group:
            data = b''
            while b'\r\n\r\n' not in data:
                chunk = s.recv(65536)
                if not chunk:
                    raise BenchError('idle: connection closed before the answer')
                data += chunk
            h, rest = data.split(b'\r\n\r\n', 1)
            m = re.search(rb'(?im)^content-length:\s*(\d+)', h)
            need = int(m.group(1)) - len(rest)
            while need > 0:
                chunk = s.recv(need)
                if not chunk:
                    raise BenchError('idle: connection closed in the body')
                need -= len(chunk)
            if h.split(b' ', 2)[1] == b'200':
                ok += 1
        socks.extend(group)
    return socks, ok


def still_open(socks, port, path, sample=200):
    """Sends a second request on a sample of the idle connections: the server
    kept them if they answer."""
    step = max(1, len(socks) // sample)
    alive = 0
    req = f'GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n'.encode()
    checked = socks[::step]
    for s in checked:
        try:
            s.sendall(req)
            if s.recv(65536)[:12].startswith(b'HTTP/1.1 200'):
                alive += 1
        except OSError:
            pass
    return alive, len(checked)
