"""Scripted origins for Shield's integration tests.

ScriptedOrigin is a threaded raw-socket HTTP/1.1 server on 127.0.0.1: every byte it
sends is chosen by the test, so it can misbehave on purpose (truncate, reset, stall,
break chunked framing, drop the first connection). It records every request
(method, target, headers, body, connection number) and counts connections.

    origin = ScriptedOrigin().start()
    origin.route('/big', Reply(size=100 << 20))            # deterministic bytes
    origin.route('/slow', Reply(size=2 << 20, pieces=16, interval=0.2))
    origin.route('/cut', Reply(size=100_000, truncate=50_000))
    ...
    origin.count('/big'); origin.requests[-1].header('x-forwarded-for')

verify_sigv4=(access, secret[, token]) makes it an S3 stand-in that recomputes each
request's SigV4 signature with botocore and answers 403 SignatureDoesNotMatch when it
differs (Req.sigv4_ok records the verdict). FakeIMDS is an EC2 IMDSv2 endpoint.
"""

import hashlib
import hmac
import json
import random
import re
import socket
import struct
import threading
import time

BLOCK = 1 << 20
_blocks = {}
_sha_cache = {}


def det_block(seed=0):
    """A 1 MiB pseudorandom block, the period of det_body(seed)."""
    b = _blocks.get(seed)
    if b is None:
        b = _blocks[seed] = random.Random(seed).randbytes(BLOCK)
    return b


def det_chunks(size, seed=0, start=0, piece=BLOCK):
    """Yield the bytes [start, size) of the deterministic body as memoryviews."""
    block = memoryview(det_block(seed))
    pos = start
    while pos < size:
        off = pos % BLOCK
        n = min(BLOCK - off, size - pos, piece)
        yield block[off:off + n]
        pos += n


def det_body(size, seed=0):
    """The whole deterministic body as bytes (fine up to a few hundred MiB)."""
    block = det_block(seed)
    return (block * (size // BLOCK + 1))[:size]


def det_sha256(size, seed=0):
    key = (size, seed)
    if key not in _sha_cache:
        h = hashlib.sha256()
        for c in det_chunks(size, seed):
            h.update(c)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


class HeaderAccess:
    """Case-insensitive look-ups over a list of (name, value) pairs in self.headers."""

    def header(self, name):
        v = self.headers_named(name)
        return v[0] if v else None

    def headers_named(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def has(self, name):
        return bool(self.headers_named(name))


class Req(HeaderAccess):
    """One request as the origin received it."""

    def __init__(self, method, target, version, headers, body, conn_no, raw_head):
        self.method, self.target, self.version = method, target, version
        self.path, _, self.query = target.partition('?')
        self.headers = headers  # list of (name, value) as received (value OWS-trimmed)
        self.body = body
        self.conn_no = conn_no
        self.raw_head = raw_head
        self.time = time.monotonic()
        self.sigv4_ok = None  # True/False when the origin verifies SigV4
        self.sigv4_error = None

    def __repr__(self):
        return f'<Req {self.method} {self.target} conn={self.conn_no}>'


class Reply:
    """What the origin sends for a path. Every option is a fault or a shape.

    status, reason, headers (list of pairs), body (bytes) or size=N (+seed) for the
    deterministic body; content_type; chunked (Transfer-Encoding: chunked, `chunk`
    bytes per chunk); no_length (close-delimited); pieces/interval (send the body in
    `pieces` parts with `interval` seconds between them); stall_head (seconds before
    the head); stall_at/stall (pause `stall` seconds after `stall_at` body bytes);
    truncate=K (announce the full length, send K body bytes, close);
    reset=K (send K body bytes then RST); broken_chunked (one good chunk, then a
    malformed size line, then close); fail_first=N (the first N requests for this path
    are answered by closing the connection without a byte); close (close after reply);
    raw (bytes sent verbatim instead of a generated response).
    """

    def __init__(self, status=200, body=b'', headers=(), *, size=None, seed=0,
                 content_type='application/octet-stream', reason=None, chunked=False,
                 chunk=64 * 1024, no_length=False, pieces=1, interval=0.0, stall_head=0.0,
                 stall_at=None, stall=0.0, truncate=None, reset=None, broken_chunked=False,
                 fail_first=0, close=False, raw=None):
        self.status, self.reason = status, reason
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = list(headers)
        self.size, self.seed = size, seed
        self.content_type = content_type
        self.chunked, self.chunk, self.no_length = chunked, chunk, no_length
        self.pieces, self.interval = pieces, interval
        self.stall_head, self.stall_at, self.stall = stall_head, stall_at, stall
        self.truncate, self.reset = truncate, reset
        self.broken_chunked = broken_chunked
        self.fail_first, self.close, self.raw = fail_first, close, raw

    @property
    def length(self):
        return self.size if self.size is not None else len(self.body)

    def chunks(self):
        if self.size is not None:
            yield from det_chunks(self.size, self.seed)
        elif self.body:
            yield memoryview(self.body)

    def sha256(self):
        if self.size is not None:
            return det_sha256(self.size, self.seed)
        return hashlib.sha256(self.body).hexdigest()


REASONS = {200: 'OK', 204: 'No Content', 206: 'Partial Content', 304: 'Not Modified',
           400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
           500: 'Internal Server Error', 503: 'Service Unavailable'}


class _Closed(Exception):
    pass


class ScriptedOrigin:
    """Threaded raw HTTP/1.1 origin. Thread-safe counters and request log."""

    def __init__(self, verify_sigv4=None, region='us-east-1', idle_timeout=30.0):
        self.routes = {}
        self.default = None  # Reply for unrouted paths; None = 200 "origin:<path>"
        self.requests = []
        self.connections = 0
        self.sigv4 = verify_sigv4
        self.region = region
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks = set()
        self._threads = []
        self._hits = {}
        self.sock = None
        self.port = None

    # ---- lifecycle -------------------------------------------------------
    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('127.0.0.1', 0))
        s.listen(128)
        s.settimeout(0.2)
        self.sock, self.port = s, s.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, daemon=True, name=f'origin:{self.port}')
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def endpoint(self):
        return f'http://127.0.0.1:{self.port}'

    # ---- scripting and inspection ----------------------------------------
    def route(self, path, reply):
        """Serve `reply` (a Reply, or a function Req -> Reply) for requests to path."""
        with self._lock:
            self.routes[path] = reply
            self._hits[path] = 0
        return reply

    def count(self, path=None):
        with self._lock:
            if path is None:
                return len(self.requests)
            return sum(1 for r in self.requests if r.path == path)

    def seen(self, path):
        return self.count(path) > 0

    def last(self, path=None):
        with self._lock:
            for r in reversed(self.requests):
                if path is None or r.path == path:
                    return r
        return None

    def snapshot(self):
        """(requests, connections) counters, to compare before/after an action."""
        with self._lock:
            return len(self.requests), self.connections

    def wait_requests(self, n, timeout=10.0, path=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(path) >= n:
                return True
            time.sleep(0.01)
        return False

    def reset_log(self):
        with self._lock:
            self.requests.clear()
            self.connections = 0
            for k in self._hits:
                self._hits[k] = 0

    # ---- server ----------------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                n = self.connections
                self._socks.add(c)
            t = threading.Thread(target=self._serve, args=(c, n), daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)

    def _recv(self, c, buf, idle_deadline):
        while True:
            if self._stop.is_set():
                raise _Closed()
            try:
                d = c.recv(65536)
            except socket.timeout:
                if time.monotonic() > idle_deadline:
                    raise _Closed()
                continue
            except OSError:
                raise _Closed()
            if not d:
                raise _Closed()
            buf += d
            return

    def _read_request(self, c, buf, conn_no):
        deadline = time.monotonic() + self.idle_timeout
        while b'\r\n\r\n' not in buf:
            self._recv(c, buf, deadline)
        i = buf.index(b'\r\n\r\n')
        head = bytes(buf[:i])
        del buf[:i + 4]
        lines = head.split(b'\r\n')
        method, target, version = lines[0].decode('latin-1').split(' ', 2)
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.decode('latin-1').partition(':')
            headers.append((k, v.strip(' \t')))
        req = Req(method, target, version, headers, b'', conn_no, head)
        if (req.header('expect') or '').lower() == '100-continue':
            c.sendall(b'HTTP/1.1 100 Continue\r\n\r\n')
        te = (req.header('transfer-encoding') or '').lower()
        if 'chunked' in te:
            body = bytearray()
            while True:
                while b'\r\n' not in buf:
                    self._recv(c, buf, deadline)
                j = buf.index(b'\r\n')
                n = int(bytes(buf[:j]).split(b';')[0], 16)
                del buf[:j + 2]
                if n == 0:
                    while b'\r\n' not in buf:
                        self._recv(c, buf, deadline)
                    # skip trailers
                    while not buf.startswith(b'\r\n'):
                        j = buf.index(b'\r\n')
                        del buf[:j + 2]
                        while b'\r\n' not in buf:
                            self._recv(c, buf, deadline)
                    del buf[:2]
                    break
                while len(buf) < n + 2:
                    self._recv(c, buf, deadline)
                body += buf[:n]
                del buf[:n + 2]
            req.body = bytes(body)
        elif req.header('content-length'):
            n = int(req.header('content-length'))
            while len(buf) < n:
                self._recv(c, buf, deadline)
            req.body = bytes(buf[:n])
            del buf[:n]
        return req

    def _serve(self, c, conn_no):
        c.settimeout(0.2)
        buf = bytearray()
        try:
            while not self._stop.is_set():
                req = self._read_request(c, buf, conn_no)
                reply = self.respond(req)
                with self._lock:
                    self.requests.append(req)
                if reply is None:  # drop the connection without answering
                    return
                keep = self._send(c, req, reply)
                c.settimeout(0.2)
                conn_hdr = (req.header('connection') or '').lower()
                if not keep or 'close' in conn_hdr or req.version == 'HTTP/1.0':
                    return
        except (_Closed, ValueError, OSError):
            return
        finally:
            with self._lock:
                self._socks.discard(c)
            try:
                c.close()
            except OSError:
                pass

    def respond(self, req):
        """Pick the Reply for req (None = close without answering)."""
        if self.sigv4 is not None:
            ok, why = verify_sigv4(req, *self.sigv4, region=self.region)
            req.sigv4_ok, req.sigv4_error = ok, why
            if not ok:
                return s3_error(403, 'SignatureDoesNotMatch',
                                'The request signature we calculated does not match the '
                                'signature you provided. ' + why)
        with self._lock:
            reply = self.routes.get(req.path)
            if reply is not None:
                self._hits[req.path] += 1
                hit = self._hits[req.path]
        if reply is None:
            reply = self.default or Reply(body=f'origin:{req.path}'.encode(),
                                          content_type='text/plain')
            hit = 1
        if callable(reply):
            reply = reply(req)
        if hit <= reply.fail_first:
            return None
        return reply

    def _wait(self, secs):
        if secs > 0:
            self._stop.wait(secs)
        if self._stop.is_set():
            raise _Closed()

    def _send(self, c, req, r):
        """Send reply r; returns whether the connection may be reused."""
        c.settimeout(None)
        if r.raw is not None:
            self._wait(r.stall_head)
            c.sendall(r.raw)
            return not r.close
        self._wait(r.stall_head)
        reason = r.reason or REASONS.get(r.status, 'Status')
        head = [f'HTTP/1.1 {r.status} {reason}']
        names = {k.lower() for k, _ in r.headers}
        if 'content-type' not in names and r.content_type:
            head.append(f'Content-Type: {r.content_type}')
        if 'date' not in names:
            head.append('Date: ' + time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime()))
        bodyless = req.method == 'HEAD' or r.status in (204, 304)
        chunked = (r.chunked or r.broken_chunked) and not bodyless
        if chunked:
            head.append('Transfer-Encoding: chunked')
        elif not r.no_length and 'content-length' not in names:
            head.append(f'Content-Length: {r.length}')
        for k, v in r.headers:
            head.append(f'{k}: {v}')
        if r.close or r.no_length:
            head.append('Connection: close')
        c.sendall(('\r\n'.join(head) + '\r\n\r\n').encode('latin-1'))
        if bodyless:
            return not r.close
        if r.broken_chunked:
            c.sendall(b'10\r\n' + b'x' * 16 + b'\r\nzz-not-hex\r\n' + b'y' * 64)
            return False
        limit = r.length
        for lim in (r.truncate, r.reset):
            if lim is not None:
                limit = min(limit, lim)
        piece = max(1, -(-r.length // max(1, r.pieces)))  # ceil
        sent = 0
        stalled = False
        for chunk in r.chunks():
            while len(chunk):
                n = min(len(chunk), piece - (sent % piece), limit - sent)
                if r.stall_at is not None and not stalled and sent < r.stall_at:
                    n = min(n, r.stall_at - sent)
                if n <= 0:
                    break
                part = chunk[:n]
                chunk = chunk[n:]
                if chunked:
                    for off in range(0, n, r.chunk):
                        p = part[off:off + r.chunk]
                        c.sendall(b'%x\r\n' % len(p) + bytes(p) + b'\r\n')
                else:
                    c.sendall(part)
                sent += n
                if r.stall_at is not None and not stalled and sent >= r.stall_at:
                    stalled = True
                    self._wait(r.stall)
                if r.pieces > 1 and sent % piece == 0 and sent < r.length:
                    self._wait(r.interval)
            if sent >= limit:
                break
        if r.reset is not None and sent >= r.reset:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            return False
        if r.truncate is not None and sent >= r.truncate:
            return False
        if chunked:
            c.sendall(b'0\r\n\r\n')
        return not (r.close or r.no_length)


# ---- S3 flavour -----------------------------------------------------------

def s3_error(status, code, message, resource='/'):
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Error><Code>{code}</Code><Message>{message}</Message>'
            f'<Resource>{resource}</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>')
    return Reply(status, body.encode(), content_type='application/xml')


_AUTH_RE = re.compile(
    r'AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*'
    r'SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$')


def verify_sigv4(req, access, secret, token=None, region='us-east-1'):
    """Recompute the SigV4 header signature of req with botocore.

    Returns (ok, reason). Uses the request's own x-amz-date and the signed-header
    list from its Authorization header; the payload hash is x-amz-content-sha256.
    When token is given, x-amz-security-token must equal it and be signed.
    """
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest, HTTPHeaders
    from botocore.credentials import Credentials

    auth = req.header('authorization')
    if not auth:
        return False, 'no Authorization header'
    m = _AUTH_RE.match(auth)
    if not m:
        return False, f'malformed Authorization: {auth!r}'
    ak, date, reg, service, signed, given = m.groups()
    if ak != access:
        return False, f'unknown access key {ak}'
    if reg != region or service != 's3':
        return False, f'scope {reg}/{service}'
    amz_date = req.header('x-amz-date')
    if not amz_date or not amz_date.startswith(date):
        return False, f'x-amz-date {amz_date!r} does not match scope date {date}'
    names = signed.split(';')
    if 'host' not in names:
        return False, 'host not signed'
    if not req.header('x-amz-content-sha256'):
        return False, 'no x-amz-content-sha256'
    if token is not None:
        if req.header('x-amz-security-token') != token:
            return False, 'x-amz-security-token missing or wrong'
        if 'x-amz-security-token' not in names:
            return False, 'x-amz-security-token not signed'
    hdrs = {}
    for n in names:
        vals = req.headers_named(n)
        if not vals:
            return False, f'signed header {n} missing'
        hdrs[n] = ','.join(vals)

    class _Exact(S3SigV4Auth):
        def headers_to_sign(self, request):
            h = HTTPHeaders()
            for n in names:
                h[n] = request.headers[n]
            return h

    areq = AWSRequest(method=req.method, url=f'http://{req.header("host")}{req.target}',
                      headers=hdrs)
    areq.context['timestamp'] = amz_date
    signer = _Exact(Credentials(access, secret, token), 's3', region)
    creq = signer.canonical_request(areq)
    want = signer.signature(signer.string_to_sign(areq, creq), areq)
    if not hmac.compare_digest(want, given):
        return False, 'signature mismatch; canonical request was:\n' + creq
    return True, None


class FakeIMDS(ScriptedOrigin):
    """EC2 instance metadata service, IMDSv2 only (token required on every GET)."""

    def __init__(self, access, secret, token, role='shield-test-role', expiration=None):
        super().__init__()
        self.role = role
        self.creds = {'access': access, 'secret': secret, 'token': token}
        self.expiration = expiration or time.strftime('%Y-%m-%dT%H:%M:%SZ',
                                                      time.gmtime(time.time() + 6 * 3600))
        self.tokens = set()
        self.log = []  # (method, path, token_ok)

    def respond(self, req):
        if req.method == 'PUT' and req.path == '/latest/api/token':
            ttl = req.header('x-aws-ec2-metadata-token-ttl-seconds')
            ok = bool(ttl) and ttl.isdigit() and 1 <= int(ttl) <= 21600
            self.log.append((req.method, req.path, ok))
            if not ok:
                return Reply(400, b'missing or bad token TTL', content_type='text/plain')
            tok = 'imds-tok-' + hashlib.sha1(str(time.monotonic()).encode()).hexdigest()[:16]
            self.tokens.add(tok)
            return Reply(body=tok.encode(), content_type='text/plain',
                         headers=[('X-aws-ec2-metadata-token-ttl-seconds', ttl)])
        ok = req.header('x-aws-ec2-metadata-token') in self.tokens
        self.log.append((req.method, req.path, ok))
        if req.method != 'GET':
            return Reply(405, b'', content_type=None)
        if not ok:
            return Reply(401, b'', content_type=None)
        base = '/latest/meta-data/iam/security-credentials/'
        if req.path in (base, base[:-1]):
            return Reply(body=self.role.encode(), content_type='text/plain')
        if req.path == base + self.role:
            doc = {'Code': 'Success',
                   'LastUpdated': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                   'Type': 'AWS-HMAC', 'AccessKeyId': self.creds['access'],
                   'SecretAccessKey': self.creds['secret'], 'Token': self.creds['token'],
                   'Expiration': self.expiration}
            return Reply(body=json.dumps(doc, indent=2).encode(), content_type='text/plain')
        return Reply(404, b'', content_type=None)

    def used_token_for_credentials(self):
        """Was a credentials document fetched with a valid token?"""
        return any(m == 'GET' and p.startswith('/latest/meta-data/iam/security-credentials/')
                   and p.rstrip('/') != '/latest/meta-data/iam/security-credentials' and ok
                   for m, p, ok in self.log)
