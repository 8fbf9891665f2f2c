"""H — differential: what Shield forwards is what an independent parser reads.

Generated request streams (reqgen.py: valid ones, and mutations that target framing) go
to Shield on one connection each, a canary last, with an echo origin behind it. The
viewer's ORIGINAL bytes are also read by h11 (python3-h11, h11.Connection(h11.SERVER)),
and for every request Shield forwards the two readings must agree:

  - message boundaries: Shield's k-th response on the connection answers its k-th
    request, which must be h11's k-th request; Shield never forwards a request at or
    after the point where h11 found an error, an incomplete message or the end of a
    persistent connection;
  - method, target (the path and query Shield sends; absolute-form loses its authority),
    body, and every forwarded viewer header (X-A, X-B, X-Keep, Origin, Content-Type with
    a body, X-Forwarded-For as the viewer's values plus the peer) value for value, in
    order; no other viewer header reaches the origin.

Shield may be stricter than h11 (refuse what h11 accepts), but only for mutated
requests: every request of a valid case, and the requests before the first mutated one,
must be forwarded and answered 2xx, and the canary after a valid case answered (or the
connection closed, if the last request asked for that).

Attribution: the echo origin numbers every request it receives and returns the number in
X-Seen, so each forwarded response names the origin record it came from; an origin
record no viewer got an answer for fails the run (reported under the case its path
/rw/d/<case>/... names).

h11's own leniencies and strictnesses, handled in h11_read() (each says why):
  - it refuses empty lines before a request line; RFC 9112 §2.2 says a server SHOULD
    ignore at least one, Shield ignores up to four: the model skips CRLF pairs there;
  - it never keeps an HTTP/1.0 connection open; Shield honours `Connection: keep-alive`
    from HTTP/1.0 viewers (RFC 9112 §9.3), so the model reads on after such a request;
  - its buffer limit (16 KiB) is raised above Shield's 20 KiB head limit, so that only
    Shield's limit (431/414) can refuse a large head;
  - it reads each request on a fresh h11.Connection from the bytes the previous one
    left (trailing_data), so no response needs to be written to advance it;
  - it accepts bare LF line endings, obs-fold, control bytes other than NUL/CR/LF/VT/FF
    in values, OWS after a chunk size, `Content-Length: 5, 5`, CL with TE (TE wins),
    chunked in HTTP/1.0, versions like HTTP/1.2 and bodies on GET: Shield refuses all of
    these, which is allowed (they only come from the mutating generator);
  - it refuses obs-text (bytes >= 0x80) in the request-target, as Shield does.
Three disagreements this check found are pinned by their own tests: obs-text in the
target (Shield forwarded it, percent-encoded in the path only:
test_obs_text_target_is_read_alike), HTTP/1.0 with `Connection: keep-alive, close`
(Shield kept the connection and forwarded the next request:
test_http10_close_ends_the_connection), and a chunk-extension list `5;a=1;b=2` (refused
by llhttp 8.1; Shield now gives llhttp the body without extensions:
test_chunk_extension_list_is_served).
Shield drops a `?` with an empty query; the model does the same (not a framing matter).

Environment: SHIELD_DIFF_SEED (default: a fixed seed; `random` draws one, printed on failure),
SHIELD_DIFF_CASES (default 3000: about 5 s, release or sanitizer build), SHIELD_DIFF_ONLY=<n>
to replay one case of each test.
"""

import concurrent.futures
import itertools
import os
import random
import re
import socket
import time

import h11
import pytest

import reqgen
from conftest import (SAN, ALL_METHODS, Conn, ProtocolError, Reply, ScriptedOrigin, behavior,
                      http_origin)

# `make test` replays one fixed set of cases (a landing must not depend on the draw);
# `make fuzz-diff` draws a new seed each run (SHIELD_DIFF_SEED=random).
_seed = os.environ.get('SHIELD_DIFF_SEED') or '20261208'
SEED = random.SystemRandom().randrange(1 << 32) if _seed == 'random' else int(_seed)
CASES = int(os.environ.get('SHIELD_DIFF_CASES') or 3000)
ONLY = os.environ.get('SHIELD_DIFF_ONLY')
VALID_SHARE = 0.4      # of CASES: the valid test; the rest go to the mutated test
WORKERS = 16           # concurrent viewer connections
# Shield's header/body/keep-alive timeouts (s). A Shield waiting for bytes that never come
# (h11 says "incomplete" there too: about 1 mutated case in 200) closes after this; the
# header timeout runs from accept, so it must also outlast a client thread descheduled
# between connect and send on a loaded machine.
SHIELD_TIMEOUT = 2.0
READ_TIMEOUT = 20.0 if SAN else 8.0  # beyond this Shield neither answered nor closed: a hang
PEER = b'127.0.0.1'
H11_MAX_EVENT = 1 << 20  # above any head Shield accepts (20 KiB)
SHIELD_OWN = {b'host', b'via', b'x-request-id', b'user-agent', b'x-forwarded-for',
              b'content-length'}
COMPARED = {n.lower() for n in reqgen.FWD} | {b'content-type'}


# ---- the independent reading ----------------------------------------------------------

class Reading:
    """One request as h11 reads it, with its place in the stream."""

    def __init__(self, req, body, start, end):
        self.method = bytes(req.method)
        self.target = bytes(req.target)
        self.version = bytes(req.http_version)
        self.headers = [(bytes(n), bytes(v)) for n, v in req.headers.raw_items()]
        self.body = bytes(body)
        self.start, self.end = start, end

    def values(self, name):
        return [v for n, v in self.headers if n.lower() == name]

    def __repr__(self):
        return (f'{self.method.decode("latin-1")} {self.target!r} HTTP/{self.version.decode()} '
                f'bytes[{self.start}:{self.end}] headers={self.headers!r} body={_short(self.body)}')


class End:
    """Why h11 stopped reading: 'eof' (all bytes read), 'close' (the last request ends
    the connection), 'incomplete' (the bytes end inside a request), 'error'."""

    def __init__(self, kind, at, detail=''):
        self.kind, self.at, self.detail = kind, at, detail

    def __repr__(self):
        return f'{self.kind} at byte {self.at}' + (f': {self.detail}' if self.detail else '')


def _persistent(reading):
    tokens = {t.strip().lower() for v in reading.values(b'connection') for t in v.split(b',')}
    if b'close' in tokens:
        return False
    if reading.version < b'1.1':
        # h11 closes every HTTP/1.0 connection; RFC 9112 §9.3 lets a server keep one
        # open on "keep-alive", as Shield (llhttp) does: read on in that case.
        return reading.version == b'1.0' and b'keep-alive' in tokens
    return True


def h11_read(data):
    """h11's reading of a viewer's byte stream: ([Reading], End)."""
    out = []
    pos = 0
    while True:
        # h11 refuses an empty line before the request line; RFC 9112 §2.2 asks servers
        # to ignore at least one (Shield: up to 4, then 400). Skip CRLF pairs only.
        while data.startswith(b'\r\n', pos):
            pos += 2
        if pos >= len(data):
            return out, End('eof', pos)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=H11_MAX_EVENT)
        conn.receive_data(data[pos:])
        req, body = None, bytearray()
        try:
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    where = 'inside the body' if req else 'inside the head'
                    return out, End('incomplete', pos, where)
                if ev is h11.PAUSED:  # only after EndOfMessage, which ends the loop first
                    return out, End('error', pos, 'h11 paused before the end of a message')
                if isinstance(ev, h11.Request):
                    req = ev
                elif isinstance(ev, h11.Data):
                    body += ev.data
                elif isinstance(ev, h11.EndOfMessage):
                    break
        except h11.RemoteProtocolError as e:
            return out, End('error', pos, str(e))
        end = len(data) - len(conn.trailing_data[0])
        r = Reading(req, body, pos, end)
        out.append(r)
        pos = end
        if not _persistent(r):
            return out, End('close', pos)


def origin_form(target):
    """The path and query Shield sends for a target (absolute-form loses the authority,
    an empty query its `?`)."""
    m = re.match(rb'(?i)https?://[^/]*', target)
    t = target[m.end():] if m else target
    path, _, query = t.partition(b'?')
    return path + (b'?' + query if query else b'')


# ---- the echo origin and Shield -----------------------------------------------------------

class EchoOrigin(ScriptedOrigin):
    """Answers every request 200 `origin:<path>` with X-Seen: <its serial number>."""

    def __init__(self):
        super().__init__()
        self._serial = itertools.count(1)
        self.by_serial = {}

    def respond(self, req):
        with self._lock:
            n = next(self._serial)
            self.by_serial[n] = req
        return Reply(body=b'origin:' + req.path.encode('latin-1'), content_type='text/plain',
                     headers=[('X-Seen', str(n))])

    def _serve(self, c, conn_no):
        # The reply goes out as head then body: without TCP_NODELAY every request
        # waits out Nagle against Shield's delayed ACK (40 ms).
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super()._serve(c, conn_no)

    def record(self, n):
        with self._lock:
            return self.by_serial.get(n)

    def last_serial(self):
        with self._lock:
            return max(self.by_serial, default=0)


@pytest.fixture(scope='module')
def echo_origin():
    o = EchoOrigin().start()
    yield o
    o.stop()


@pytest.fixture(scope='module')
def sh(module_shield, echo_origin):
    to = f'{int(SHIELD_TIMEOUT * 1000)}ms'
    return module_shield(
        [http_origin('o', echo_origin)],
        # one behavior for every path: a target a mutation bends still gets the same
        # forwarding rules; all methods, no cache, so every request reaches the origin
        [behavior('*', 'o', allowed_methods=ALL_METHODS, forward_query=True,
                  forward_headers=[n.decode() for n in reqgen.FWD])],
        limits={'max_body_size': '64K'}, cache={'enabled': False},
        timeouts={'header': to, 'body': to, 'keepalive': to})


# ---- one case against Shield ------------------------------------------------------------

class Answer:
    def __init__(self, resp, rec, serial):
        self.status, self.interim = resp.status, resp.interim
        self.body = resp.body
        self.rec, self.serial = rec, serial  # the origin record (None: Shield answered itself)

    def __repr__(self):
        if self.rec is None:
            return f'{self.status} from Shield {_short(self.body, 80)}'
        r = self.rec
        return (f'{self.status} forwarded #{self.serial}: {r.method} {r.target!r} '
                f'headers={r.headers!r} body={_short(r.body)}')


class Outcome:
    def __init__(self):
        self.answers = []
        self.closed = False   # Shield closed the connection
        self.hung = False     # neither an answer nor a close within READ_TIMEOUT
        self.error = None     # an unreadable response
        self.canary = False
        self.extra = b''      # bytes after an answer with Connection: close


def run_case(port, origin, case, pieces, readings):
    out = Outcome()
    canary_path = (reqgen.case_prefix(case.no) + b'c').decode()
    with Conn(port, timeout=READ_TIMEOUT) as c:
        for p in pieces:
            try:
                c.send(p)
            except OSError:  # Shield refused and closed while we were still sending
                break
        while True:
            j = len(out.answers)
            method = readings[j].method.decode('latin-1') if j < len(readings) else 'GET'
            try:
                r = c.read_response(method=method)
            except TimeoutError:
                out.hung = True
                break
            except ProtocolError as e:
                out.error = str(e)
                break
            if r is None:
                out.closed = True
                break
            seen = r.header('X-Seen')
            rec = origin.record(int(seen)) if seen and seen.isdigit() else None
            out.answers.append(Answer(r, rec, int(seen) if rec else None))
            if rec is not None and rec.path == canary_path:
                out.canary = True
                break
            if 'close' in (r.header('Connection') or '').lower():
                # Shield closes after this answer. Read to the end rather than parse on:
                # an error answer to a request Shield could not parse carries a body even
                # when h11 read a HEAD there (Shield cannot know the method).
                out.extra = c.read_all(timeout=READ_TIMEOUT)
                out.closed = c.eof
                out.hung = not c.eof
                if out.extra and method != 'HEAD':
                    out.error = f'{len(out.extra)} bytes after a Connection: close answer'
                break
    return out


def _short(b, n=120):
    return repr(b) if len(b) <= n else f'{b[:n]!r}...({len(b)} bytes)'


def compare_reading(rd, rec):
    """Differences between h11's reading and what the origin received."""
    probs = []
    if rec.method != rd.method.decode('latin-1'):
        probs.append(f'method: h11 {rd.method!r}, origin {rec.method!r}')
    want_target = origin_form(rd.target)
    if rec.target.encode('latin-1') != want_target:
        probs.append(f'target: h11 {rd.target!r} (sent as {want_target!r}), origin {rec.target!r}')
    if rec.body != rd.body:
        probs.append(f'body: h11 {_short(rd.body)}, origin {_short(rec.body)}')
    got = [(n.lower().encode('latin-1'), v.encode('latin-1')) for n, v in rec.headers]
    for name in sorted({n for n, _ in got} - SHIELD_OWN - COMPARED):
        probs.append(f'header {name!r} reached the origin: {[v for n, v in got if n == name]!r}')
    for name in sorted(COMPARED):
        want = rd.values(name)
        if name == b'content-type' and not rd.body:
            want = []  # Shield forwards Content-Type only with a body
        have = [v for n, v in got if n == name]
        if have != want:
            probs.append(f'header {name!r}: h11 {want!r}, origin {have!r}')
    xff = b', '.join([v for v in rd.values(b'x-forwarded-for') if v] + [PEER])
    have = [v for n, v in got if n == b'x-forwarded-for']
    if have != [xff]:
        probs.append(f'X-Forwarded-For: h11 values give {xff!r}, origin {have!r}')
    return probs


def check_case(case, readings, end, out, unclaimed):
    """Every disagreement between Shield's reading (out) and h11's, as text; unclaimed:
    the case's origin requests (serial, Req) no viewer got an answer for."""
    probs = []
    if out.hung:
        probs.append(f'Shield neither answered nor closed within {READ_TIMEOUT} s')
    if out.error:
        probs.append(f'unreadable response from Shield: {out.error}')
    for j, a in enumerate(out.answers):
        if a.rec is None:
            continue
        if j >= len(readings):
            probs.append(f'Shield forwarded its request #{j} but h11 read only {len(readings)} '
                         f'request(s), then {end}')
            continue
        probs += [f'request #{j}: {p}' for p in compare_reading(readings[j], a.rec)]
    for serial, rec in unclaimed:
        probs.append(f'origin got {rec.method} {rec.target!r} (#{serial}) but the viewer got no '
                     f'answer for it')
    if case.kind == 'valid':
        if end.kind not in ('eof', 'close'):
            probs.append(f'generator: h11 refuses a valid case ({end})')
        must = len(readings)
    else:
        must = min(case.first_mut, len(readings))
    for j in range(must):
        a = out.answers[j] if j < len(out.answers) else None
        if a is None or a.rec is None or not 200 <= a.status < 300:
            why = 'valid case' if case.kind == 'valid' else 'before the first mutation'
            probs.append(f'request #{j} is valid ({why}) but Shield gave {a!r}')
            break
    if case.kind == 'valid' and not probs:
        if end.kind == 'close' and not out.closed:
            probs.append('the last request closes the connection, Shield kept it open')
        if end.kind == 'eof' and not out.canary:
            probs.append('canary not answered after a valid case')
    return probs


def describe(case, stream, pieces, readings, end, out, probs):
    cuts = list(itertools.accumulate(len(p) for p in pieces))[:-1]
    lines = [f'--- case {case.no} ({case.kind}: {", ".join(case.labels)}); seed {SEED}; replay: '
             f'SHIELD_DIFF_SEED={SEED} SHIELD_DIFF_ONLY={case.no}',
             f'bytes ({len(stream)}, sent in {len(pieces)} piece(s), cut at {cuts[:20]}):',
             f'  {stream[:4000]!r}' + (' ...' if len(stream) > 4000 else ''),
             f'h11 read {len(readings)} request(s), then {end}:']
    lines += [f'  #{j} {r!r}' for j, r in enumerate(readings)]
    lines.append(f'Shield answered {len(out.answers)} time(s)'
                 f'{", then closed" if out.closed else ""}{", then hung" if out.hung else ""}:')
    lines += [f'  #{j} {a!r}' for j, a in enumerate(out.answers)]
    lines.append('disagreements:')
    lines += [f'  - {p}' for p in probs]
    return '\n'.join(lines)


def run_cases(sh, origin, kind, count):
    """Generate, send and compare `count` cases of `kind`; fail with every disagreement."""
    nos = [int(ONLY)] if ONLY is not None else range(count)
    first_serial = origin.last_serial() + 1

    def one(no):
        rng = random.Random(f'{SEED}/{kind}/{no}')
        case = reqgen.valid_case(rng, no) if kind == 'valid' else reqgen.mutated_case(rng, no)
        case.no = no
        stream = case.stream()
        pieces = case.pieces(rng)
        readings, end = h11_read(stream)
        out = run_case(sh.port, origin, case, pieces, readings)
        return case, stream, pieces, readings, end, out

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(one, nos))
    elapsed = time.monotonic() - t0
    with origin._lock:
        mine = {s: r for s, r in origin.by_serial.items() if s >= first_serial}
    # Origin requests no viewer got an answer for, attributed to a case by their path
    # when they have one (a mutated path may name another case: hence claimed first).
    claimed = {a.serial for *_, out in results for a in out.answers if a.rec is not None}
    unclaimed = {}
    for s, r in sorted(mine.items()):
        if s not in claimed:
            m = re.match(r'/rw/d/(\d+)/', r.path)
            unclaimed.setdefault(int(m.group(1)) if m else None, []).append((s, r))
    failures = []
    for case, stream, pieces, readings, end, out in results:
        probs = check_case(case, readings, end, out, unclaimed.pop(case.no, []))
        if probs:
            failures.append(describe(case, stream, pieces, readings, end, out, probs))
    stray = [f'#{s} {r.method} {r.target!r}' for rs in unclaimed.values() for s, r in rs]
    if stray:
        failures.append(f'origin requests no viewer got an answer for: {stray[:20]}')
    sh.assert_alive()
    log = sh.stderr().splitlines()
    bugs = [ln for ln in log if ' BUG: ' in ln]
    if bugs:
        failures.append('Shield logged internal disagreements:\n  ' + '\n  '.join(bugs[:20]))
    forwarded = sum(1 for *_, out in results for a in out.answers if a.rec is not None)
    summary = (f'{kind}: {len(results)} cases, {forwarded} requests forwarded, '
               f'{len(failures)} failing, {elapsed:.1f} s (seed {SEED})')
    print(summary)
    if failures:
        # a case cut short by Shield's own timeouts (a stalled client) shows here
        timeouts = sum(1 for ln in log if 'timeout' in ln)
        pytest.fail(f'{summary}; Shield logged {timeouts} timeout line(s) so far\n\n'
                    + '\n\n'.join(failures[:8])
                    + (f'\n\n... and {len(failures) - 8} more' if len(failures) > 8 else ''),
                    pytrace=False)
    return results


# ---- the tests ----------------------------------------------------------------------------

def test_valid_requests_are_forwarded_as_h11_reads_them(sh, echo_origin):
    """Every valid generated request (pipelined, split at random points) is forwarded and
    answered 2xx, with the method, target, headers and body h11 reads from the viewer's
    bytes, and the canary after it is answered."""
    results = run_cases(sh, echo_origin, 'valid', max(1, round(CASES * VALID_SHARE)))
    assert all(out.canary or out.closed for *_, out in results)


def test_mutated_requests_are_never_forwarded_differently(sh, echo_origin):
    """Framing mutations: Shield refuses or forwards exactly what h11 reads, never more
    requests than h11 found before its first error, never a request h11 calls malformed."""
    results = run_cases(sh, echo_origin, 'mutated', max(1, CASES - round(CASES * VALID_SHARE)))
    refused = sum(1 for *_, out in results if not out.canary)
    assert ONLY is not None or refused > len(results) // 4, 'the mutations hardly ever bite'


# ---- the model's documented leniencies, pinned ------------------------------------------

@pytest.mark.parametrize('data, kinds, end', [
    (b'\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n', ['GET'], 'eof'),
    (b'GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n',
     ['GET', 'GET'], 'eof'),
    (b'GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n', ['GET'], 'close'),
    (b'GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n', ['GET'],
     'close'),
    (b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc', [], 'incomplete'),
    (b'GET / HTTP/1.1\nHost: x\n\n', ['GET'], 'eof'),                      # bare LF: h11 accepts
    (b'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n', ['GET'], 'eof'),  # obs-fold: joined
    (b'GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n', [], 'error'),                # obs-text target
    (b'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n',
     ['POST'], 'eof'),                                                     # bare LF ends trailers
    (b'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n',
     [], 'error'),                                                         # data longer than size
])
def test_h11_model(data, kinds, end):
    """h11_read() reads these streams as the module docstring says (pins h11's behaviour
    and the model's adjustments, so a different h11 cannot silently change the check)."""
    readings, e = h11_read(data)
    assert [r.method.decode() for r in readings] == kinds, (readings, e)
    assert e.kind == end, e


def test_checker_reports_a_disagreement(sh, echo_origin):
    """The comparison can fail: a valid request sent to Shield, judged against h11's
    reading of slightly different bytes (another header value, another body, one request
    fewer), is reported each time."""
    no = 10_000_000
    sent = (b'POST /rw/d/%d/0 HTTP/1.1\r\nHost: x\r\nX-A: one\r\nContent-Length: 5\r\n\r\nhello'
            % no + reqgen.canary(no))
    case = reqgen.Case(no, 'valid')
    readings, end = h11_read(sent)
    out = run_case(sh.port, echo_origin, case, [sent], readings)
    assert check_case(case, readings, end, out, []) == [], 'the honest comparison fails'
    for other in (sent.replace(b'X-A: one', b'X-A: two'),
                  sent.replace(b'5\r\n\r\nhello', b'4\r\n\r\nhell') + b'o',
                  sent.replace(b'X-A: one', b'X-A: one\r\nX-B: b'),
                  sent.replace(b'POST /rw/d/%d/0' % no, b'PUT /rw/d/%d/0' % no)):
        r2, e2 = h11_read(other)
        assert check_case(case, r2, e2, out, []), f'no disagreement found against {other!r}'
    r2, e2 = h11_read(sent[:40])
    assert any('forwarded' in p for p in check_case(case, r2, e2, out, []))
    rec = out.answers[0].rec  # an origin request nobody was answered for is reported
    assert any('no answer' in p for p in check_case(case, readings, end, out, [(0, rec)]))


@pytest.mark.parametrize('target', [b'/rw/d/%d/\x80x', b'/rw/d/%d/0?q=\xc3\xa9'])
def test_obs_text_target_is_read_alike(sh, echo_origin, target):
    """Raw bytes >= 0x80 in the target: h11 refuses the request as malformed, so Shield
    must refuse it too (it forwards `/rw/d/N/%80x`, and the query byte for byte)."""
    no = 10_000_001 + len(target)
    sent = b'GET ' + target % no + b' HTTP/1.1\r\nHost: x\r\n\r\n' + reqgen.canary(no)
    case, readings, end, out, probs = _judge(sh, echo_origin, no, sent, 'obs_text_target')
    assert end.kind == 'error' and not readings, (readings, end)
    assert not probs, describe(case, sent, [sent], readings, end, out, probs)


def _judge(sh, origin, no, sent, label):
    """Send `sent` (its canary included) on one connection; every disagreement with h11."""
    case = reqgen.Case(no, 'mutated')
    case.mutated(0, label)
    readings, end = h11_read(sent)
    out = run_case(sh.port, origin, case, [sent], readings)
    probs = check_case(case, readings, end, out, [])
    return case, readings, end, out, probs


@pytest.mark.parametrize('k, conn', enumerate([b'Connection: keep-alive, close',
                                                b'Connection: close, keep-alive',
                                                b'Connection: keep-alive\r\nConnection: close']))
def test_http10_close_ends_the_connection(sh, echo_origin, k, conn):
    """HTTP/1.0 with both keep-alive and close: close wins, nothing after it is read."""
    no = 10_000_100 + k
    sent = (b'GET /rw/d/%d/0 HTTP/1.0\r\n' % no + conn + b'\r\n\r\n'
            + b'GET /rw/d/%d/1 HTTP/1.1\r\nHost: x\r\n\r\n' % no + reqgen.canary(no))
    case, readings, end, out, probs = _judge(sh, echo_origin, no, sent, 'http10_keep_alive_close')
    assert end.kind == 'close' and len(readings) == 1, (readings, end)
    assert not probs, describe(case, sent, [sent], readings, end, out, probs)


@pytest.mark.parametrize('k, ext', enumerate([b';a=1;b=2', b';a=1;b', b'0;a=1;b=2']))
def test_chunk_extension_list_is_served(sh, echo_origin, k, ext):
    """A valid chunked POST whose chunk (or last chunk) carries `;a=1;b=2` is forwarded."""
    no = 10_000_200 + k
    first, last = (b'', ext[1:]) if ext[:1] == b'0' else (ext, b'')
    sent = (b'POST /rw/d/%d/0 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' % no
            + b'5' + first + b'\r\nhello\r\n0' + last + b'\r\n\r\n' + reqgen.canary(no))
    case, readings, end, out, probs = _judge(sh, echo_origin, no, sent, 'chunk_ext_list')
    assert [r.body for r in readings] == [b'hello', b''], readings
    case.kind = 'valid'  # a valid request: Shield must serve it
    probs = check_case(case, readings, end, out, [])
    assert not probs, describe(case, sent, [sent], readings, end, out, probs)
